//! The two transmit paths of a port: `sendmmsg` straight from the caller's memory (up to
//! [`TX_BATCH`] frames per call), or copying frames into a TPACKET_V2 TX ring and asking the
//! kernel to send the queued slots with one zero-length `send`.

use std::ffi::c_int;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU32, Ordering};

use super::{SlotMap, status};
use crate::frame::{TxFrame, TxOutcome};
use crate::sys;
use crate::vnet::VNET_HDR_LEN;

/// Counters of the transmit side.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct TxCounters {
    pub frames: u64,
    pub bytes: u64,
    pub errors: u64,
    pub busy: u64,
    pub last_errno: i32,
}

/// Maximum frames per sendmmsg call.
pub(crate) const TX_BATCH: usize = 64;

/// What both transmit paths need of the socket, fixed at open.
pub(crate) struct TxSocket {
    pub fd: RawFd,
    pub vnet: bool,
    pub flags: c_int,
    pub blocking: bool,
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

/// The transmit side of a port.
pub(crate) struct TxCore {
    pub sock: TxSocket,
    pub kind: TxKind,
    pub counters: TxCounters,
}

/// The address a [`TxSocket`] bound to one EtherType sends other frames to: the interface with
/// `ETH_P_ALL`, which makes the kernel set `skb->protocol` from the frame.
pub(crate) fn retag_addr(ifindex: c_int) -> libc::sockaddr_ll {
    // SAFETY: sockaddr_ll is a plain C struct; all-zero is valid.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = sys::ETH_P_ALL.to_be();
    sll.sll_ifindex = ifindex;
    sll
}

/// The transmit path of a port.
pub(crate) enum TxKind {
    /// `sendmmsg` from the caller's frames.
    Mmsg(MmsgBatch),
    /// Copies into a TPACKET_V2 TX ring.
    Ring(TxRing),
}

impl TxKind {
    /// The sendmmsg path, with its message buffers allocated.
    pub(crate) fn mmsg() -> TxKind {
        TxKind::Mmsg(MmsgBatch {
            // SAFETY: mmsghdr/iovec are plain C structs for which all-zero is a valid value.
            hdrs: vec![unsafe { std::mem::zeroed() }; TX_BATCH],
            // SAFETY: as above.
            iovs: vec![unsafe { std::mem::zeroed() }; TX_BATCH * 2],
            vnets: vec![[0; VNET_HDR_LEN]; TX_BATCH],
            lens: vec![0; TX_BATCH],
        })
    }
}

/// The messages of one `sendmmsg` call: a header per frame, two iovecs each (vnet header,
/// frame), the vnet headers' bytes and the frame lengths.
pub(crate) struct MmsgBatch {
    hdrs: Vec<libc::mmsghdr>,
    iovs: Vec<libc::iovec>,
    vnets: Vec<[u8; VNET_HDR_LEN]>,
    lens: Vec<usize>,
}

/// A TPACKET_V2 TX ring and where the next frame goes.
pub(crate) struct TxRing {
    base: *mut u8,
    slots: SlotMap,
    head: usize,
    /// The last slot queued, to see whether the kernel has taken everything.
    last: Option<usize>,
}

impl TxRing {
    /// The ring at `base` (inside the socket's live mapping) with `slots`.
    pub(crate) fn new(base: *mut u8, slots: SlotMap) -> TxRing {
        TxRing {
            base,
            slots,
            head: 0,
            last: None,
        }
    }
}

impl TxCore {
    pub(crate) fn send<'f>(&mut self, frames: impl IntoIterator<Item = TxFrame<'f>>) -> TxOutcome {
        let mut out = TxOutcome::default();
        match &mut self.kind {
            TxKind::Mmsg(m) => m.send(&self.sock, frames, &mut self.counters, &mut out),
            TxKind::Ring(r) => r.send(&self.sock, frames, &mut self.counters, &mut out),
        }
        self.flush();
        out
    }

    /// TX ring: asks the kernel to transmit the queued slots. A non-blocking kick can leave
    /// slots queued (socket send buffer full); a blocking port then waits for them (bounded by
    /// `SO_SNDTIMEO`), a non-blocking one leaves them for the next `send`/`flush`.
    pub(crate) fn flush(&mut self) {
        let TxKind::Ring(TxRing {
            base, slots, last, ..
        }) = &self.kind
        else {
            return;
        };
        let Some(l) = *last else {
            return;
        };
        let sock = &self.sock;
        // SAFETY: `l < frame_nr`: a slot start inside the live TX ring mapping.
        let st = unsafe { status(base.add(slots.offset(l))) };
        if st.load(Ordering::Acquire) != sys::TP_STATUS_SEND_REQUEST {
            return;
        }
        kick(
            sock.fd,
            libc::MSG_DONTWAIT,
            sock.retag.as_ref(),
            &mut self.counters,
        );
        if sock.blocking && st.load(Ordering::Acquire) == sys::TP_STATUS_SEND_REQUEST {
            kick(sock.fd, 0, sock.retag.as_ref(), &mut self.counters);
        }
    }
}

impl MmsgBatch {
    /// Sends `frames` with one `sendmmsg` per [`TX_BATCH`] of them.
    fn send<'f>(
        &mut self,
        sock: &TxSocket,
        frames: impl IntoIterator<Item = TxFrame<'f>>,
        c: &mut TxCounters,
        out: &mut TxOutcome,
    ) {
        let mut n = 0;
        for f in frames {
            self.stage(n, sock, &f);
            n += 1;
            if n == TX_BATCH {
                flush_mmsg(sock.fd, sock.flags, &mut self.hdrs, &self.lens, n, c, out);
                n = 0;
            }
        }
        if n > 0 {
            flush_mmsg(sock.fd, sock.flags, &mut self.hdrs, &self.lens, n, c, out);
        }
    }

    /// Fills message `i` (`i < TX_BATCH`) for frame `f`: its vnet header (in vnet mode), the
    /// frame, and the retag address when `f` is of another EtherType than the bound one.
    #[inline]
    fn stage(&mut self, i: usize, sock: &TxSocket, f: &TxFrame<'_>) {
        let iov = self.iovs[2 * i..].as_mut_ptr();
        let mut cnt = 0;
        if sock.vnet {
            self.vnets[i] = f.vnet.unwrap_or_default().to_bytes();
            self.iovs[2 * i] = libc::iovec {
                iov_base: self.vnets[i].as_mut_ptr().cast(),
                iov_len: VNET_HDR_LEN,
            };
            cnt += 1;
        }
        self.iovs[2 * i + cnt] = libc::iovec {
            iov_base: f.data.as_ptr().cast_mut().cast(),
            iov_len: f.data.len(),
        };
        cnt += 1;
        let h = &mut self.hdrs[i];
        // Frames of another EtherType than the bound one name the interface with ETH_P_ALL (see
        // `retag`); the kernel only reads the address.
        match &sock.retag {
            Some(a) if f.data.get(12..14) != Some(&sock.bound[..]) => {
                h.msg_hdr.msg_name = (a as *const libc::sockaddr_ll)
                    .cast_mut()
                    .cast::<libc::c_void>();
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
        self.lens[i] = f.data.len();
    }
}

impl TxRing {
    /// Copies `frames` (with their vnet headers in vnet mode) into free slots and marks them
    /// `TP_STATUS_SEND_REQUEST` (the caller kicks the ring afterwards). When the ring is full it
    /// waits for a slot ([`wait_slot`]); a frame too big for a slot, or that finds no free slot,
    /// is dropped and counted.
    fn send<'f>(
        &mut self,
        sock: &TxSocket,
        frames: impl IntoIterator<Item = TxFrame<'f>>,
        c: &mut TxCounters,
        out: &mut TxOutcome,
    ) {
        let frame_size = self.slots.frame_size;
        let data_off = sys::TPACKET2_HDRLEN - sys::SOCKADDR_LL_LEN;
        let vnet_len = if sock.vnet { VNET_HDR_LEN } else { 0 };
        let mut pending = 0usize;
        let mut pending_bytes = 0u64;
        for f in frames {
            let need = vnet_len + f.data.len();
            if need > frame_size - data_off {
                c.errors += 1;
                c.last_errno = libc::EMSGSIZE;
                out.failed += 1;
                continue;
            }
            // SAFETY: `head < frame_nr`: a slot start inside the live TX ring mapping.
            let slot = unsafe { self.base.add(self.slots.offset(self.head)) };
            // SAFETY: slot starts are 16-byte aligned.
            let st = unsafe { status(slot) };
            let mut s = st.load(Ordering::Acquire);
            if s != sys::TP_STATUS_AVAILABLE && s != sys::TP_STATUS_WRONG_FORMAT {
                s = wait_slot(sock, st, c);
                if s != sys::TP_STATUS_AVAILABLE && s != sys::TP_STATUS_WRONG_FORMAT {
                    c.errors += 1;
                    c.busy += 1;
                    c.last_errno = libc::ENOBUFS;
                    out.failed += 1;
                    continue;
                }
            }
            if s == sys::TP_STATUS_WRONG_FORMAT {
                c.errors += 1;
                c.last_errno = libc::EINVAL;
            }
            // SAFETY: the slot is AVAILABLE, i.e. owned by user space, and
            // `data_off + need <= frame_size` was checked above.
            unsafe {
                let dst = slot.add(data_off);
                if sock.vnet {
                    let v = f.vnet.unwrap_or_default().to_bytes();
                    std::ptr::copy_nonoverlapping(v.as_ptr(), dst, VNET_HDR_LEN);
                }
                std::ptr::copy_nonoverlapping(f.data.as_ptr(), dst.add(vnet_len), f.data.len());
                // tp_len is the second u32 of tpacket2_hdr.
                slot.add(4).cast::<u32>().write(need as u32);
            }
            st.store(sys::TP_STATUS_SEND_REQUEST, Ordering::Release);
            self.last = Some(self.head);
            self.head = (self.head + 1) % self.slots.frame_nr;
            pending += 1;
            pending_bytes += f.data.len() as u64;
        }
        if pending > 0 {
            c.frames += pending as u64;
            c.bytes += pending_bytes;
            out.sent += pending;
        }
    }
}

/// The ring is full at the slot whose status word is `st`: pushes out what is queued and waits
/// for the slot to be free (20 polls of 1 ms on a blocking port, one otherwise). Returns the
/// slot's status after the wait.
fn wait_slot(sock: &TxSocket, st: &AtomicU32, c: &mut TxCounters) -> u32 {
    kick(sock.fd, libc::MSG_DONTWAIT, sock.retag.as_ref(), c);
    let tries = if sock.blocking { 20 } else { 1 };
    for _ in 0..tries {
        let s = st.load(Ordering::Acquire);
        if s == sys::TP_STATUS_AVAILABLE || s == sys::TP_STATUS_WRONG_FORMAT {
            break;
        }
        let mut pfd = [libc::pollfd {
            fd: sock.fd,
            events: libc::POLLOUT,
            revents: 0,
        }];
        // SAFETY: `pfd` is a valid array of one pollfd.
        unsafe { libc::poll(pfd.as_mut_ptr(), 1, 1) };
    }
    st.load(Ordering::Acquire)
}

/// Asks the kernel to transmit every `TP_STATUS_SEND_REQUEST` slot of the TX ring, with
/// `addr` as the destination of all of them (see [`TxSocket::retag`]).
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

/// Sends messages `..n` of `hdrs` (frame lengths in `lens`) with as many `sendmmsg` calls as
/// the kernel needs; a full queue drops the rest, a bad frame is dropped and skipped.
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
        // vnet buffers, and whose `msg_name` is null or the socket's `retag` address (a
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
