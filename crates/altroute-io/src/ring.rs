//! The mmap'ed rings: walking a port's TPACKET_V2 / V3 RX rings (one per receiving socket) into
//! batches of in-place frames and handing slots back (with the spill buffers for frames larger
//! than a V2 slot), and the two transmit paths (sendmmsg from caller memory, or copying into a
//! TPACKET_V2 TX ring).

use std::ffi::c_int;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::error::IoError;
use crate::frame::{Desc, FrameMeta, PacketType, Release, RxBatch, TxFrame, TxOutcome, VlanTag};
use crate::sys::{self, Tpacket2Hdr, Tpacket3Hdr, TpacketBlockDesc};
use crate::vnet::{VNET_HDR_LEN, VnetHdr};

/// A shared, read-write mapping of a packet socket's rings.
pub(crate) struct Mapping {
    ptr: *mut u8,
    len: usize,
}

impl Mapping {
    pub(crate) fn new(fd: RawFd, len: usize, iface: &str) -> Result<Mapping, IoError> {
        // SAFETY: a fresh shared mapping of the socket's rings; the kernel validated `len` against
        // the ring setup (it fails with EINVAL otherwise). No existing memory is affected.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(sys::last_err(iface, "mmap(PACKET_RX_RING/PACKET_TX_RING)"));
        }
        Ok(Mapping { ptr: p.cast(), len })
    }

    /// Private anonymous memory of `len` bytes, populated up front (the spill buffers).
    pub(crate) fn anon(len: usize, iface: &str) -> Result<Mapping, IoError> {
        // SAFETY: a fresh private anonymous mapping; no existing memory is affected.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(sys::last_err(iface, "mmap(spill buffers)"));
        }
        Ok(Mapping { ptr: p.cast(), len })
    }

    pub(crate) fn base(&self) -> *mut u8 {
        self.ptr
    }
}

/// Frames larger than a V2 slot (`PACKET_COPY_THRESH`): the kernel puts a truncated copy in the
/// slot, marked `TP_STATUS_COPY`, and queues the whole frame on the socket, in slot order. The
/// walk reserves one of these buffers per such slot (ending the batch when none is left) and
/// reads the queued frames into them with one `recvmmsg` per batch.
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

    fn free(&self) -> bool {
        self.used < self.hdrs.len()
    }

    /// Start of buffer `i` (`i < n`).
    fn buf(&self, i: usize) -> *mut u8 {
        debug_assert!(i < self.hdrs.len());
        // SAFETY: `i * buf_size + buf_size <= len`: inside the mapping.
        unsafe { self.map.base().add(i * self.buf_size) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly what mmap returned; every view into the mapping borrows
        // the owning port, so none outlives this drop.
        unsafe {
            libc::munmap(self.ptr.cast(), self.len);
        }
    }
}

/// The status word at the start of a slot / block, shared with the kernel.
///
/// # Safety
/// `p` must point into a live ring mapping, 4-byte aligned.
unsafe fn status<'a>(p: *mut u8) -> &'a AtomicU32 {
    // SAFETY: guaranteed by the caller; the kernel accesses the word with its own barriers and we
    // only ever use atomic loads/stores on it.
    unsafe { AtomicU32::from_ptr(p.cast()) }
}

/// Where slot `i` of a V2 ring lives: slots never straddle blocks, so a block may end in
/// unused bytes and slot `i` is at `(i / per_block) * block_size + (i % per_block) * frame_size`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SlotMap {
    pub block_size: usize,
    pub frame_size: usize,
    pub per_block: usize,
    pub frame_nr: usize,
}

impl SlotMap {
    pub(crate) fn new(g: &crate::geometry::RingGeometry) -> SlotMap {
        SlotMap {
            block_size: g.block_size as usize,
            frame_size: g.frame_size as usize,
            per_block: g.frames_per_block().max(1) as usize,
            frame_nr: g.frame_nr as usize,
        }
    }

    /// Byte offset of slot `i` (`i < frame_nr`) from the ring start.
    pub(crate) fn offset(&self, i: usize) -> usize {
        (i / self.per_block) * self.block_size + (i % self.per_block) * self.frame_size
    }
}

/// Counters of the receive side.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct RxCounters {
    pub frames: u64,
    pub bytes: u64,
    pub outgoing_skipped: u64,
    pub truncated: u64,
    pub vlan_reinserted: u64,
    pub spilled: u64,
    pub otherhost_skipped: u64,
}

/// Most rings (sockets) one port receives from.
pub(crate) const MAX_RINGS: usize = 8;

/// Counters of the transmit side.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct TxCounters {
    pub frames: u64,
    pub bytes: u64,
    pub errors: u64,
    pub busy: u64,
    pub last_errno: i32,
}

/// Receive-side options fixed at open.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RxParams {
    pub vnet: bool,
    pub reinsert_vlan: bool,
    pub batch_max: usize,
    /// Skip `PACKET_OTHERHOST` frames (EtherType-bound sockets, see `crate::RxBind`).
    pub skip_otherhost: bool,
}

/// Which ring, and where the walk is.
pub(crate) enum RingState {
    V2 {
        base: *mut u8,
        slots: SlotMap,
        head: usize,
        held_from: usize,
        held: usize,
        /// Buffers for frames larger than a slot (`None`: such frames are counted as truncated).
        spill: Option<Spill>,
    },
    V3 {
        base: *mut u8,
        block_size: usize,
        block_nr: usize,
        cur: usize,
        /// Packets left and offset of the next one in the current (user-owned) block.
        cursor: Option<(u32, usize)>,
        /// Blocks fully walked by the current batch, to hand back when it is dropped.
        done: Vec<usize>,
    },
    /// Backend-owned buffers (pnet): nothing to hand back.
    Owned,
}

impl Release for RingState {
    fn release(&mut self) {
        match self {
            RingState::V2 {
                base,
                slots,
                held_from,
                held,
                spill,
                ..
            } => {
                if let Some(sp) = spill {
                    sp.used = 0;
                    sp.pending.clear();
                }
                for i in 0..*held {
                    let slot = (*held_from + i) % slots.frame_nr;
                    // SAFETY: `slot < frame_nr`, so the address is a slot start inside the live
                    // mapping (16-byte aligned). The batch borrowing these slots is being dropped,
                    // so no view into them remains.
                    unsafe {
                        status(base.add(slots.offset(slot)))
                            .store(sys::TP_STATUS_KERNEL, Ordering::Release)
                    };
                }
                *held_from = (*held_from + *held) % slots.frame_nr;
                *held = 0;
            }
            RingState::V3 {
                base,
                block_size,
                done,
                ..
            } => {
                for b in done.drain(..) {
                    // SAFETY: `b < block_nr` (pushed by the walk), so this is the block_status word
                    // (offset 8) of a block in the live mapping; the batch using it is being dropped.
                    unsafe {
                        status(base.add(b * *block_size + 8))
                            .store(sys::TP_STATUS_KERNEL, Ordering::Release)
                    };
                }
            }
            RingState::Owned => {}
        }
    }
}

/// One receiving socket's ring and where its walk is.
pub(crate) struct RxRing {
    pub state: RingState,
    /// The socket (spilled frames are read from its queue).
    pub fd: RawFd,
}

/// The rings of a port; what a batch hands back when it is dropped.
pub(crate) struct RxRings(pub Vec<RxRing>);

impl Release for RxRings {
    fn release(&mut self) {
        for r in &mut self.0 {
            r.state.release();
        }
    }
}

/// The receive side of a port: descriptors of the current batch plus the walk over its rings.
pub(crate) struct RxCore {
    pub descs: Vec<Desc>,
    pub rings: RxRings,
    pub counters: RxCounters,
    pub params: RxParams,
    /// The ring the next batch starts with: it rotates, so a busy ring cannot starve the others.
    pub next: usize,
}

/// Per-frame header fields common to V2 and V3.
struct Hdr {
    status: u32,
    len: u32,
    snaplen: u32,
    mac: u16,
    tci: u16,
    tpid: u16,
    sec: u32,
    nsec: u32,
}

impl RxCore {
    /// Walks ready frames of every ring into `descs` (at most `max`), polling all the rings'
    /// sockets up to `timeout_ms` if none is ready.
    pub(crate) fn batch(
        &mut self,
        max: usize,
        timeout_ms: c_int,
        iface: &str,
    ) -> Result<RxBatch<'_>, IoError> {
        let max = max.clamp(1, self.params.batch_max);
        debug_assert!(self.descs.is_empty());
        self.descs.clear();
        self.walk(max);
        if self.descs.is_empty() && !self.has_held() && timeout_ms != 0 {
            let (mut set, n) = sys::pollin_set::<MAX_RINGS>(self.rings.0.iter().map(|r| r.fd));
            let pfd = &mut set[..n];
            sys::poll_in(pfd, timeout_ms, iface)?;
            for p in pfd.iter().filter(|p| p.revents & libc::POLLERR != 0) {
                // A pending socket error, e.g. ENETDOWN when the link went down: report it once
                // (reading SO_ERROR clears it) and let the caller carry on.
                let err: c_int = sys::getsockopt(
                    p.fd,
                    libc::SOL_SOCKET,
                    libc::SO_ERROR,
                    iface,
                    "getsockopt(SO_ERROR)",
                )?;
                if err != 0 {
                    return Err(IoError::os(
                        iface,
                        "poll(rx ring)",
                        std::io::Error::from_raw_os_error(err),
                    ));
                }
            }
            self.walk(max);
        }
        self.fill_spilled();
        self.next = (self.next + 1) % self.rings.0.len().max(1);
        Ok(RxBatch {
            descs: &mut self.descs,
            owner: &mut self.rings,
        })
    }

    fn has_held(&self) -> bool {
        self.rings.0.iter().any(|r| match &r.state {
            RingState::V2 { held, .. } => *held > 0,
            RingState::V3 { done, .. } => !done.is_empty(),
            RingState::Owned => false,
        })
    }

    /// Walks the rings in turn, starting with `next`, until `max` frames are taken.
    fn walk(&mut self, max: usize) {
        let n = self.rings.0.len();
        for k in 0..n {
            if self.descs.len() >= max {
                break;
            }
            if let Some(r) = self.rings.0.get_mut((self.next + k) % n) {
                walk_ring(
                    &mut r.state,
                    &mut self.descs,
                    &mut self.counters,
                    self.params,
                    max,
                );
            }
        }
    }
}

/// Walks one ring's ready frames into `descs` until it holds `max`.
fn walk_ring(
    ring: &mut RingState,
    descs: &mut Vec<Desc>,
    counters: &mut RxCounters,
    params: RxParams,
    max: usize,
) {
    match ring {
        RingState::V2 {
            base,
            slots,
            head,
            held,
            spill,
            ..
        } => {
            while descs.len() < max && *held < slots.frame_nr {
                // SAFETY: `head < frame_nr`: a slot start inside the live mapping.
                let slot = unsafe { base.add(slots.offset(*head)) };
                // SAFETY: slot starts are 16-byte aligned inside the mapping.
                let st = unsafe { status(slot) }.load(Ordering::Acquire);
                if st & sys::TP_STATUS_USER == 0 {
                    break;
                }
                let spilled = st & sys::TP_STATUS_COPY != 0;
                if spilled && spill.as_ref().is_some_and(|sp| !sp.free()) {
                    // Every spill buffer is taken: this slot starts the next batch.
                    break;
                }
                // SAFETY: the slot is ours (TP_STATUS_USER, acquired above) and holds a
                // `tpacket2_hdr` at its start; `read_unaligned` copies it out.
                let h = unsafe { slot.cast::<Tpacket2Hdr>().read_unaligned() };
                let hdr = Hdr {
                    status: st,
                    len: h.tp_len,
                    snaplen: h.tp_snaplen,
                    mac: h.tp_mac,
                    tci: h.tp_vlan_tci,
                    tpid: h.tp_vlan_tpid,
                    sec: h.tp_sec,
                    nsec: h.tp_nsec,
                };
                let hdr_al = sys::tpacket_align(size_of::<Tpacket2Hdr>());
                match spill.as_mut() {
                    Some(sp) if spilled => {
                        // The whole frame waits on the socket queue: reserve a buffer (the
                        // queued frame must be read even if this one is then skipped).
                        // SAFETY: the slot is user-owned and `frame_size` bytes long.
                        let d = unsafe {
                            take_spilled(slot, slots.frame_size, hdr_al, &hdr, sp, params, counters)
                        };
                        sp.pending.push(descs.len());
                        sp.used += 1;
                        descs.push(d);
                    }
                    _ => {
                        // SAFETY: the slot is user-owned and `frame_size` bytes long.
                        let d =
                            unsafe { take(slot, slots.frame_size, hdr_al, &hdr, params, counters) };
                        if let Some(d) = d {
                            descs.push(d);
                        }
                    }
                }
                *held += 1;
                *head = (*head + 1) % slots.frame_nr;
            }
        }
        RingState::V3 {
            base,
            block_size,
            block_nr,
            cur,
            cursor,
            done,
        } => {
            while descs.len() < max {
                // SAFETY: `cur < block_nr`: a block start inside the live mapping.
                let blk = unsafe { base.add(*cur * *block_size) };
                let (left, off) = match *cursor {
                    Some(c) => c,
                    None => {
                        if done.len() >= *block_nr {
                            break;
                        }
                        // SAFETY: block_status is at offset 8 of the 8-aligned block header.
                        let st = unsafe { status(blk.add(8)) }.load(Ordering::Acquire);
                        if st & sys::TP_STATUS_USER == 0 {
                            break;
                        }
                        // SAFETY: the block is ours (acquired above); copy its descriptor.
                        let bd = unsafe { blk.cast::<TpacketBlockDesc>().read_unaligned() };
                        (bd.num_pkts, bd.offset_to_first_pkt as usize)
                    }
                };
                if left == 0 || off >= *block_size {
                    done.push(*cur);
                    *cur = (*cur + 1) % *block_nr;
                    *cursor = None;
                    continue;
                }
                // SAFETY: `off < block_size`, inside the user-owned block.
                let pkt = unsafe { blk.add(off) };
                let room = *block_size - off;
                if room < size_of::<Tpacket3Hdr>() {
                    done.push(*cur);
                    *cur = (*cur + 1) % *block_nr;
                    *cursor = None;
                    continue;
                }
                // SAFETY: at least a header's worth of the user-owned block remains.
                let h = unsafe { pkt.cast::<Tpacket3Hdr>().read_unaligned() };
                let hdr = Hdr {
                    status: h.tp_status,
                    len: h.tp_len,
                    snaplen: h.tp_snaplen,
                    mac: h.tp_mac,
                    tci: h.tp_vlan_tci as u16,
                    tpid: h.tp_vlan_tpid,
                    sec: h.tp_sec,
                    nsec: h.tp_nsec,
                };
                // The frame may extend at most to the next packet (or the block end).
                let limit = if h.tp_next_offset == 0 {
                    room
                } else {
                    (h.tp_next_offset as usize).min(room)
                };
                let hdr_al = sys::tpacket_align(size_of::<Tpacket3Hdr>());
                // SAFETY: `[pkt, pkt + limit)` is inside the user-owned block.
                let d = unsafe { take(pkt, limit, hdr_al, &hdr, params, counters) };
                if let Some(d) = d {
                    descs.push(d);
                }
                let next = off + h.tp_next_offset as usize;
                if left == 1 || h.tp_next_offset == 0 {
                    done.push(*cur);
                    *cur = (*cur + 1) % *block_nr;
                    *cursor = None;
                } else {
                    *cursor = Some((left - 1, next));
                }
            }
        }
        RingState::Owned => {}
    }
}

impl RxCore {
    /// Reads the frames the walk reserved spill buffers for (one `recvmmsg` per ring for all of
    /// them) and completes their descriptors; descriptors that stay empty (skipped, or nothing
    /// queued) are removed from the batch.
    fn fill_spilled(&mut self) {
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
    let RingState::V2 {
        spill: Some(sp), ..
    } = &mut r.state
    else {
        return false;
    };
    if sp.pending.is_empty() {
        return false;
    }
    let n = sp.pending.len();
    for i in 0..n {
        let b = sp.buf(i);
        sp.iovs[i] = libc::iovec {
            // SAFETY: `head >= vnet_len` (see `Spill::new`): inside buffer `i`.
            iov_base: unsafe { b.add(sp.head - sp.vnet_len) }.cast(),
            iov_len: sp.buf_size - sp.head + sp.vnet_len,
        };
        let h = &mut sp.hdrs[i];
        h.msg_hdr.msg_name = std::ptr::null_mut();
        h.msg_hdr.msg_namelen = 0;
        // SAFETY: `i < n <= iovs.len()`.
        h.msg_hdr.msg_iov = unsafe { sp.iovs.as_mut_ptr().add(i) };
        h.msg_hdr.msg_iovlen = 1;
        h.msg_hdr.msg_control = std::ptr::null_mut();
        h.msg_hdr.msg_controllen = 0;
        h.msg_hdr.msg_flags = 0;
        h.msg_len = 0;
    }
    let mut got = 0usize;
    while got < n {
        // SAFETY: `hdrs[got..n]` are initialised mmsghdrs whose single iovec each covers the
        // tail of a distinct spill buffer, owned by this core and not viewed by anyone until
        // the batch is returned; the kernel writes at most `iov_len` bytes there and
        // `msg_len`/`msg_flags` in the headers.
        let res = unsafe {
            libc::recvmmsg(
                r.fd,
                sp.hdrs[got..].as_mut_ptr(),
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
    for (i, &di) in sp.pending.iter().enumerate() {
        let Some(d) = descs.get_mut(di) else {
            continue;
        };
        if d.cap == 0 {
            continue; // skipped by the walk (counted there); its queued copy is consumed
        }
        let h = &sp.hdrs[i];
        let m = h.msg_len as usize;
        if i >= got
            || h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0
            || m < sp.vnet_len
            || m - sp.vnet_len != d.meta.wire_len as usize
        {
            c.truncated += 1;
            d.cap = 0;
            continue;
        }
        d.end = d.start + (m - sp.vnet_len);
        if sp.vnet_len > 0 {
            // SAFETY: the vnet header was written just before the MAC header, inside the
            // buffer (`head >= vnet_len`), which this descriptor owns.
            let b = unsafe {
                std::slice::from_raw_parts(d.ptr.add(d.start - sp.vnet_len), sp.vnet_len)
            };
            d.vnet = VnetHdr::parse(b);
        }
        reinsert_vlan(d, params, c);
        c.frames += 1;
        c.bytes += u64::from(d.meta.wire_len);
        c.spilled += 1;
    }
    true
}

/// Whether a frame of `pkttype` is skipped rather than handed out: our own outgoing frames, and
/// on an EtherType-bound socket another host's (counted either way).
fn skipped(pkttype: u8, params: RxParams, c: &mut RxCounters) -> bool {
    if pkttype == sys::PACKET_OUTGOING {
        c.outgoing_skipped += 1;
        return true;
    }
    if pkttype == sys::PACKET_OTHERHOST && params.skip_otherhost {
        c.otherhost_skipped += 1;
        return true;
    }
    false
}

/// A `TP_STATUS_COPY` slot: the descriptor of a spill buffer, to be filled from the socket
/// queue; `cap == 0` marks a frame to skip (counted here) whose queued copy must still be read.
///
/// # Safety
/// `[p, p + limit)` must be user-owned ring memory.
unsafe fn take_spilled(
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

/// The metadata of a frame from its ring header.
fn meta(pkttype: u8, h: &Hdr) -> FrameMeta {
    let vlan = (h.status & sys::TP_STATUS_VLAN_VALID != 0).then_some(VlanTag {
        tpid: if h.status & sys::TP_STATUS_VLAN_TPID_VALID != 0 && h.tpid != 0 {
            h.tpid
        } else {
            0x8100
        },
        tci: h.tci,
    });
    FrameMeta {
        pkttype: PacketType::from_raw(pkttype),
        wire_len: h.len,
        csum_not_ready: h.status & sys::TP_STATUS_CSUMNOTREADY != 0,
        csum_valid: h.status & sys::TP_STATUS_CSUM_VALID != 0,
        vlan,
        vlan_in_frame: false,
        ts_sec: h.sec,
        ts_nsec: h.nsec,
    }
}

/// Puts a kernel-stripped VLAN tag back into the frame bytes if asked to.
fn reinsert_vlan(d: &mut Desc, params: RxParams, c: &mut RxCounters) {
    if let (Some(tag), true) = (d.meta.vlan, params.reinsert_vlan) {
        if crate::frame::push_vlan(d, tag) {
            if let Some(v) = d.vnet.as_mut() {
                let _ = v.shift(4);
            }
            d.meta.vlan_in_frame = true;
            c.vlan_reinserted += 1;
        }
    }
}

/// Turns one ring frame into a descriptor, or counts why it is skipped.
///
/// # Safety
/// `[p, p + limit)` must be user-owned ring memory that stays valid and unaliased until the
/// batch holding the descriptor is dropped.
unsafe fn take(
    p: *mut u8,
    limit: usize,
    hdr_al: usize,
    h: &Hdr,
    params: RxParams,
    c: &mut RxCounters,
) -> Option<Desc> {
    // sockaddr_ll follows the aligned tpacket header; sll_pkttype is its byte 10.
    if hdr_al + sys::SOCKADDR_LL_LEN > limit {
        c.truncated += 1;
        return None;
    }
    // SAFETY: checked just above that the byte is inside `[p, p + limit)`.
    let pkttype = unsafe { p.add(hdr_al + 10).read() };
    if skipped(pkttype, params, c) {
        return None;
    }
    let head = hdr_al + sys::SOCKADDR_LL_LEN; // headroom starts after sockaddr_ll
    let mac = usize::from(h.mac);
    let snap = h.snaplen as usize;
    let vnet_len = if params.vnet { VNET_HDR_LEN } else { 0 };
    if h.status & sys::TP_STATUS_COPY != 0
        || h.snaplen < h.len
        || mac < head + vnet_len
        || mac + snap > limit
        || snap == 0
    {
        c.truncated += 1;
        return None;
    }
    // SAFETY: `head <= mac < mac + snap <= limit`.
    let buf = unsafe { p.add(head) };
    let vnet = if params.vnet {
        // SAFETY: `[mac - 10, mac)` is inside the frame's own headroom (checked above).
        let b = unsafe { std::slice::from_raw_parts(p.add(mac - VNET_HDR_LEN), VNET_HDR_LEN) };
        VnetHdr::parse(b)
    } else {
        None
    };
    let mut d = Desc {
        ptr: buf,
        // The buffer runs to the end of the frame's room (the slot, or the next V3 packet), so the
        // pipeline can grow a frame in place (a longer answer, a VLAN tag).
        cap: limit - head,
        start: mac - head,
        end: mac - head + snap,
        vnet,
        meta: meta(pkttype, h),
        dropped: false,
    };
    reinsert_vlan(&mut d, params, c);
    c.frames += 1;
    c.bytes += u64::from(h.len);
    Some(d)
}

/// Maximum frames per sendmmsg call.
pub(crate) const TX_BATCH: usize = 64;

/// The transmit side of a port.
pub(crate) struct TxCore {
    pub fd: RawFd,
    pub vnet: bool,
    pub flags: c_int,
    pub blocking: bool,
    pub kind: TxKind,
    pub counters: TxCounters,
    /// The protocol the socket is bound to, as the two EtherType bytes of a frame.
    pub bound: [u8; 2],
    /// `Some` on a socket bound to one EtherType: the address (`ETH_P_ALL`, the interface)
    /// given to the kernel with every frame of another EtherType, so that it takes the frame's
    /// own EtherType as `skb->protocol` instead of the bound one (`packet_snd`/`tpacket_snd`
    /// only parse the frame when the protocol is 0 or `ETH_P_ALL`). sendmmsg passes it per
    /// message (frames of the bound EtherType go without, the kernel's fast path); the TX ring
    /// takes one address per `send`, so every kick passes it.
    pub retag: Option<libc::sockaddr_ll>,
}

/// The address a [`TxCore`] of a socket bound to one EtherType sends other frames to: the
/// interface with `ETH_P_ALL`, which makes the kernel set `skb->protocol` from the frame.
pub(crate) fn retag_addr(ifindex: c_int) -> libc::sockaddr_ll {
    // SAFETY: sockaddr_ll is a plain C struct; all-zero is valid.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = sys::ETH_P_ALL.to_be();
    sll.sll_ifindex = ifindex;
    sll
}

pub(crate) enum TxKind {
    Mmsg {
        hdrs: Vec<libc::mmsghdr>,
        iovs: Vec<libc::iovec>,
        vnets: Vec<[u8; VNET_HDR_LEN]>,
        lens: Vec<usize>,
    },
    Ring {
        base: *mut u8,
        slots: SlotMap,
        head: usize,
        /// The last slot queued, to see whether the kernel has taken everything.
        last: Option<usize>,
    },
}

impl TxKind {
    pub(crate) fn mmsg() -> TxKind {
        TxKind::Mmsg {
            // SAFETY: mmsghdr/iovec are plain C structs for which all-zero is a valid value.
            hdrs: vec![unsafe { std::mem::zeroed() }; TX_BATCH],
            // SAFETY: as above.
            iovs: vec![unsafe { std::mem::zeroed() }; TX_BATCH * 2],
            vnets: vec![[0; VNET_HDR_LEN]; TX_BATCH],
            lens: vec![0; TX_BATCH],
        }
    }
}

impl TxCore {
    pub(crate) fn send<'f>(&mut self, frames: impl IntoIterator<Item = TxFrame<'f>>) -> TxOutcome {
        let mut out = TxOutcome::default();
        match &mut self.kind {
            TxKind::Mmsg {
                hdrs,
                iovs,
                vnets,
                lens,
            } => {
                // Frames of another EtherType than the bound one name the interface with
                // ETH_P_ALL (see `retag`); the kernel only reads the address.
                let retag = self.retag.as_ref().map(|a| {
                    (a as *const libc::sockaddr_ll)
                        .cast_mut()
                        .cast::<libc::c_void>()
                });
                let mut n = 0;
                for f in frames {
                    let i = n;
                    let iov = iovs[2 * i..].as_mut_ptr();
                    let mut cnt = 0;
                    if self.vnet {
                        vnets[i] = f.vnet.unwrap_or_default().to_bytes();
                        iovs[2 * i] = libc::iovec {
                            iov_base: vnets[i].as_mut_ptr().cast(),
                            iov_len: VNET_HDR_LEN,
                        };
                        cnt += 1;
                    }
                    iovs[2 * i + cnt] = libc::iovec {
                        iov_base: f.data.as_ptr().cast_mut().cast(),
                        iov_len: f.data.len(),
                    };
                    cnt += 1;
                    let h = &mut hdrs[i];
                    match retag {
                        Some(a) if f.data.get(12..14) != Some(&self.bound[..]) => {
                            h.msg_hdr.msg_name = a;
                            h.msg_hdr.msg_namelen = sys::SOCKADDR_LL_LEN as libc::socklen_t;
                        }
                        _ => {
                            h.msg_hdr.msg_name = std::ptr::null_mut();
                            h.msg_hdr.msg_namelen = 0;
                        }
                    }
                    h.msg_hdr.msg_iov = iov;
                    h.msg_hdr.msg_iovlen = cnt as _;
                    h.msg_hdr.msg_control = std::ptr::null_mut();
                    h.msg_hdr.msg_controllen = 0;
                    h.msg_hdr.msg_flags = 0;
                    h.msg_len = 0;
                    lens[i] = f.data.len();
                    n += 1;
                    if n == TX_BATCH {
                        flush_mmsg(
                            self.fd,
                            self.flags,
                            hdrs,
                            lens,
                            n,
                            &mut self.counters,
                            &mut out,
                        );
                        n = 0;
                    }
                }
                if n > 0 {
                    flush_mmsg(
                        self.fd,
                        self.flags,
                        hdrs,
                        lens,
                        n,
                        &mut self.counters,
                        &mut out,
                    );
                }
            }
            TxKind::Ring {
                base,
                slots,
                head,
                last,
            } => {
                let frame_size = slots.frame_size;
                let data_off = sys::TPACKET2_HDRLEN - sys::SOCKADDR_LL_LEN;
                let vnet_len = if self.vnet { VNET_HDR_LEN } else { 0 };
                let mut pending = 0usize;
                let mut pending_bytes = 0u64;
                for f in frames {
                    let need = vnet_len + f.data.len();
                    if need > frame_size - data_off {
                        self.counters.errors += 1;
                        self.counters.last_errno = libc::EMSGSIZE;
                        out.failed += 1;
                        continue;
                    }
                    // SAFETY: `head < frame_nr`: a slot start inside the live TX ring mapping.
                    let slot = unsafe { base.add(slots.offset(*head)) };
                    // SAFETY: slot starts are 16-byte aligned.
                    let st = unsafe { status(slot) };
                    let mut s = st.load(Ordering::Acquire);
                    if s != sys::TP_STATUS_AVAILABLE && s != sys::TP_STATUS_WRONG_FORMAT {
                        // Ring full: push out what is queued and wait for a free slot.
                        kick(
                            self.fd,
                            libc::MSG_DONTWAIT,
                            self.retag.as_ref(),
                            &mut self.counters,
                        );
                        let tries = if self.blocking { 20 } else { 1 };
                        for _ in 0..tries {
                            s = st.load(Ordering::Acquire);
                            if s == sys::TP_STATUS_AVAILABLE || s == sys::TP_STATUS_WRONG_FORMAT {
                                break;
                            }
                            let mut pfd = [libc::pollfd {
                                fd: self.fd,
                                events: libc::POLLOUT,
                                revents: 0,
                            }];
                            // SAFETY: `pfd` is a valid array of one pollfd.
                            unsafe { libc::poll(pfd.as_mut_ptr(), 1, 1) };
                        }
                        s = st.load(Ordering::Acquire);
                        if s != sys::TP_STATUS_AVAILABLE && s != sys::TP_STATUS_WRONG_FORMAT {
                            self.counters.errors += 1;
                            self.counters.busy += 1;
                            self.counters.last_errno = libc::ENOBUFS;
                            out.failed += 1;
                            continue;
                        }
                    }
                    if s == sys::TP_STATUS_WRONG_FORMAT {
                        self.counters.errors += 1;
                        self.counters.last_errno = libc::EINVAL;
                    }
                    // SAFETY: the slot is AVAILABLE, i.e. owned by user space, and
                    // `data_off + need <= frame_size` was checked above.
                    unsafe {
                        let dst = slot.add(data_off);
                        if self.vnet {
                            let v = f.vnet.unwrap_or_default().to_bytes();
                            std::ptr::copy_nonoverlapping(v.as_ptr(), dst, VNET_HDR_LEN);
                        }
                        std::ptr::copy_nonoverlapping(
                            f.data.as_ptr(),
                            dst.add(vnet_len),
                            f.data.len(),
                        );
                        // tp_len is the second u32 of tpacket2_hdr.
                        slot.add(4).cast::<u32>().write(need as u32);
                    }
                    st.store(sys::TP_STATUS_SEND_REQUEST, Ordering::Release);
                    *last = Some(*head);
                    *head = (*head + 1) % slots.frame_nr;
                    pending += 1;
                    pending_bytes += f.data.len() as u64;
                }
                if pending > 0 {
                    self.counters.frames += pending as u64;
                    self.counters.bytes += pending_bytes;
                    out.sent += pending;
                }
            }
        }
        self.flush();
        out
    }

    /// TX ring: asks the kernel to transmit the queued slots. A non-blocking kick can leave
    /// slots queued (socket send buffer full); a blocking port then waits for them (bounded by
    /// `SO_SNDTIMEO`), a non-blocking one leaves them for the next `send`/`flush`.
    pub(crate) fn flush(&mut self) {
        let TxKind::Ring {
            base, slots, last, ..
        } = &self.kind
        else {
            return;
        };
        let Some(l) = *last else {
            return;
        };
        // SAFETY: `l < frame_nr`: a slot start inside the live TX ring mapping.
        let st = unsafe { status(base.add(slots.offset(l))) };
        if st.load(Ordering::Acquire) != sys::TP_STATUS_SEND_REQUEST {
            return;
        }
        kick(
            self.fd,
            libc::MSG_DONTWAIT,
            self.retag.as_ref(),
            &mut self.counters,
        );
        if self.blocking && st.load(Ordering::Acquire) == sys::TP_STATUS_SEND_REQUEST {
            kick(self.fd, 0, self.retag.as_ref(), &mut self.counters);
        }
    }
}

/// Asks the kernel to transmit every `TP_STATUS_SEND_REQUEST` slot of the TX ring, with
/// `addr` as the destination of all of them (see [`TxCore::retag`]).
fn kick(fd: RawFd, flags: c_int, addr: Option<&libc::sockaddr_ll>, c: &mut TxCounters) {
    let (name, name_len) = match addr {
        Some(a) => (
            (a as *const libc::sockaddr_ll).cast::<libc::sockaddr>(),
            sys::SOCKADDR_LL_LEN as libc::socklen_t,
        ),
        None => (std::ptr::null(), 0),
    };
    loop {
        // SAFETY: a zero-length send on a TX-ring socket only triggers the ring walk; `name` is
        // null or a valid sockaddr_ll of `name_len` bytes that outlives the call.
        let r = unsafe { libc::sendto(fd, std::ptr::null(), 0, flags, name, name_len) };
        if r >= 0 {
            return;
        }
        let e = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
        if e == libc::EINTR {
            continue;
        }
        if e != libc::EAGAIN && e != libc::ENOBUFS && e != libc::ETIMEDOUT {
            c.errors += 1;
        }
        c.last_errno = e;
        return;
    }
}

fn flush_mmsg(
    fd: RawFd,
    flags: c_int,
    hdrs: &mut [libc::mmsghdr],
    lens: &[usize],
    n: usize,
    c: &mut TxCounters,
    out: &mut TxOutcome,
) {
    let mut off = 0;
    while off < n {
        // SAFETY: `hdrs[off..n]` are initialised mmsghdrs whose iovecs point to caller frames and
        // vnet buffers, and whose `msg_name` is null or the core's `retag` address (a
        // `sockaddr_ll` of `msg_namelen` bytes), all borrowed for the duration of `send`; the
        // kernel only reads them (and writes `msg_len`).
        let r = unsafe { libc::sendmmsg(fd, hdrs[off..].as_mut_ptr(), (n - off) as u32, flags) };
        if r > 0 {
            let r = r as usize;
            for &l in &lens[off..off + r] {
                c.bytes += l as u64;
            }
            c.frames += r as u64;
            out.sent += r;
            off += r;
            continue;
        }
        let e = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
        if e == libc::EINTR {
            continue;
        }
        c.last_errno = e;
        if e == libc::EAGAIN || e == libc::ENOBUFS {
            // The queue is full: drop the rest of this batch rather than spin.
            let rest = (n - off) as u64;
            c.errors += rest;
            c.busy += rest;
            out.failed += n - off;
            return;
        }
        // This frame is bad (EMSGSIZE, EINVAL) or the link is down: drop it, try the next.
        c.errors += 1;
        out.failed += 1;
        off += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::RingGeometry;

    #[test]
    fn slot_map_agrees_with_the_geometry() {
        for (reserve, vnet, max) in [(18, false, 1518), (8, true, 65553), (0, false, 9018)] {
            let g = RingGeometry::v2(reserve, vnet, max, 100).unwrap();
            let m = SlotMap::new(&g);
            for i in 0..g.frame_nr {
                assert_eq!(m.offset(i as usize), g.slot_offset(i), "{g:?} slot {i}");
            }
        }
    }
}
