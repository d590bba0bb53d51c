//! Spilled frames of [`crate::RxMode::V2Spill`]: frames larger than a V2 slot
//! (`PACKET_COPY_THRESH`). The kernel puts a truncated copy in the slot, marked
//! `TP_STATUS_COPY`, and queues the whole frame on the socket, in slot order. The walk reserves
//! one of a port's spill buffers per such slot (ending the batch when none is left) and the
//! batch reads the queued frames into them with one `recvmmsg` per ring.

use std::os::fd::RawFd;

use super::Mapping;
use super::rx::{
    Hdr, RingState, RxCore, RxCounters, RxParams, RxRing, meta, reinsert_vlan, skipped,
};
use crate::error::IoError;
use crate::frame::{Desc, PacketType};
use crate::sys;
use crate::vnet::VnetHdr;

/// The spill buffers of one ring and the `recvmmsg` messages that fill them.
pub(crate) struct Spill {
    map: Mapping,
    /// Bytes per buffer.
    buf_size: usize,
    /// Offset of the MAC header in a buffer (the vnet header sits just before it).
    head: usize,
    /// vnet header bytes the kernel puts before each frame.
    vnet_len: usize,
    /// Buffers reserved by the current batch.
    used: usize,
    /// Index into the batch's descriptors of each reserved buffer, in slot order.
    pending: Vec<usize>,
    hdrs: Vec<libc::mmsghdr>,
    iovs: Vec<libc::iovec>,
}

impl Spill {
    /// `n` buffers, each with `headroom` bytes (at least) before the MAC header and room for a
    /// `max_frame`-byte frame plus a little tail room.
    pub(crate) fn new(
        n: usize,
        headroom: usize,
        vnet_len: usize,
        max_frame: usize,
        iface: &str,
    ) -> Result<Spill, IoError> {
        let n = n.max(1);
        // The network header 16-byte aligned, as in the ring slots.
        let head = sys::tpacket_align(headroom + vnet_len + 14) - 14;
        let buf_size = (head + max_frame + 256).next_multiple_of(64);
        let len = (n * buf_size).next_multiple_of(crate::geometry::PAGE_SIZE);
        let map = Mapping::anon(len, iface)?;
        Ok(Spill {
            map,
            buf_size,
            head,
            vnet_len,
            used: 0,
            pending: Vec::with_capacity(n),
            // SAFETY: mmsghdr/iovec are plain C structs for which all-zero is a valid value.
            hdrs: vec![unsafe { std::mem::zeroed() }; n],
            // SAFETY: as above.
            iovs: vec![unsafe { std::mem::zeroed() }; n],
        })
    }

    /// Whether a buffer is left for this batch.
    pub(super) fn free(&self) -> bool {
        self.used < self.hdrs.len()
    }

    /// Takes the next buffer for the descriptor at index `desc` of the batch.
    pub(super) fn reserve(&mut self, desc: usize) {
        self.pending.push(desc);
        self.used += 1;
    }

    /// The batch is released: every buffer is free again.
    pub(super) fn reset(&mut self) {
        self.used = 0;
        self.pending.clear();
    }

    /// Start of buffer `i` (`i < n`).
    fn buf(&self, i: usize) -> *mut u8 {
        debug_assert!(i < self.hdrs.len());
        // SAFETY: `i * buf_size + buf_size <= len`: inside the mapping.
        unsafe { self.map.base().add(i * self.buf_size) }
    }

    /// Points message `i` (`i < n`) at the tail of buffer `i`, from the vnet header on.
    fn prepare(&mut self, i: usize) {
        let b = self.buf(i);
        self.iovs[i] = libc::iovec {
            // SAFETY: `head >= vnet_len` (see `Spill::new`): inside buffer `i`.
            iov_base: unsafe { b.add(self.head - self.vnet_len) }.cast(),
            iov_len: self.buf_size - self.head + self.vnet_len,
        };
        let h = &mut self.hdrs[i];
        h.msg_hdr.msg_name = std::ptr::null_mut();
        h.msg_hdr.msg_namelen = 0;
        // SAFETY: `i < n <= iovs.len()`.
        h.msg_hdr.msg_iov = unsafe { self.iovs.as_mut_ptr().add(i) };
        h.msg_hdr.msg_iovlen = 1;
        h.msg_hdr.msg_control = std::ptr::null_mut();
        h.msg_hdr.msg_controllen = 0;
        h.msg_hdr.msg_flags = 0;
        h.msg_len = 0;
    }

    /// Reads up to `n` queued frames of socket `fd` into messages `..n`; returns how many came.
    fn receive(&mut self, fd: RawFd, n: usize) -> usize {
        let mut got = 0usize;
        while got < n {
            // SAFETY: `hdrs[got..n]` are initialised mmsghdrs whose single iovec each covers the
            // tail of a distinct spill buffer, owned by this core and not viewed by anyone until
            // the batch is returned; the kernel writes at most `iov_len` bytes there and
            // `msg_len`/`msg_flags` in the headers.
            let res = unsafe {
                libc::recvmmsg(
                    fd,
                    self.hdrs[got..].as_mut_ptr(),
                    (n - got) as u32,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            if res > 0 {
                got += res as usize;
                continue;
            }
            if res < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            // Nothing queued although the slot said so: cannot happen unless another reader
            // shares the socket; the frames are counted as truncated below.
            break;
        }
        got
    }

    /// Completes the descriptors of the `got` frames read (the rest count as truncated and are
    /// marked empty, `cap == 0`).
    fn complete(&self, got: usize, descs: &mut [Desc], params: RxParams, c: &mut RxCounters) {
        for (i, &di) in self.pending.iter().enumerate() {
            let Some(d) = descs.get_mut(di) else {
                continue;
            };
            if d.cap == 0 {
                continue; // skipped by the walk (counted there); its queued copy is consumed
            }
            let h = &self.hdrs[i];
            let m = h.msg_len as usize;
            if i >= got
                || h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0
                || m < self.vnet_len
                || m - self.vnet_len != d.meta.wire_len as usize
            {
                c.truncated += 1;
                d.cap = 0;
                continue;
            }
            d.end = d.start + (m - self.vnet_len);
            if self.vnet_len > 0 {
                // SAFETY: the vnet header was written just before the MAC header, inside the
                // buffer (`head >= vnet_len`), which this descriptor owns.
                let b = unsafe {
                    std::slice::from_raw_parts(d.ptr.add(d.start - self.vnet_len), self.vnet_len)
                };
                d.vnet = VnetHdr::parse(b);
            }
            reinsert_vlan(d, params, c);
            c.frames += 1;
            c.bytes += u64::from(d.meta.wire_len);
            c.spilled += 1;
        }
    }
}

impl RxCore {
    /// Reads the frames the walk reserved spill buffers for (one `recvmmsg` per ring for all of
    /// them) and completes their descriptors; descriptors that stay empty (skipped, or nothing
    /// queued) are removed from the batch.
    pub(super) fn fill_spilled(&mut self) {
        let mut any = false;
        for r in &mut self.rings.0 {
            any |= fill_spilled_ring(r, &mut self.descs, self.params, &mut self.counters);
        }
        if any {
            self.descs.retain(|d| d.cap != 0);
        }
        // `used`/`pending` are reset when the batch is released.
    }
}

/// [`RxCore::fill_spilled`] for one ring; `false` if it had nothing spilled.
fn fill_spilled_ring(
    r: &mut RxRing,
    descs: &mut [Desc],
    params: RxParams,
    c: &mut RxCounters,
) -> bool {
    let RingState::V2(ring) = &mut r.state else {
        return false;
    };
    let Some(sp) = &mut ring.spill else {
        return false;
    };
    if sp.pending.is_empty() {
        return false;
    }
    let n = sp.pending.len();
    for i in 0..n {
        sp.prepare(i);
    }
    let got = sp.receive(r.fd, n);
    sp.complete(got, descs, params, c);
    true
}

/// A `TP_STATUS_COPY` slot: the descriptor of a spill buffer, to be filled from the socket
/// queue; `cap == 0` marks a frame to skip (counted here) whose queued copy must still be read.
///
/// # Safety
/// `[p, p + limit)` must be user-owned ring memory.
pub(super) unsafe fn take_spilled(
    p: *mut u8,
    limit: usize,
    hdr_al: usize,
    h: &Hdr,
    sp: &Spill,
    params: RxParams,
    c: &mut RxCounters,
) -> Desc {
    let mut d = Desc {
        ptr: sp.buf(sp.used),
        cap: sp.buf_size,
        start: sp.head,
        end: sp.head,
        vnet: None,
        meta: meta(sys::PACKET_HOST, h),
        dropped: false,
    };
    if hdr_al + sys::SOCKADDR_LL_LEN > limit {
        c.truncated += 1;
        d.cap = 0;
        return d;
    }
    // SAFETY: checked just above that the byte is inside `[p, p + limit)`.
    let pkttype = unsafe { p.add(hdr_al + 10).read() };
    if skipped(pkttype, params, c) {
        d.cap = 0;
        return d;
    }
    d.meta.pkttype = PacketType::from_raw(pkttype);
    d
}
