//! Walking a port's RX rings (one per receiving socket, TPACKET_V2 slots or TPACKET_V3 blocks)
//! into a batch of in-place frame descriptors, and handing the slots and blocks back to the
//! kernel when the batch is dropped.

use std::ffi::c_int;
use std::os::fd::RawFd;
use std::sync::atomic::Ordering;

use super::spill::{Spill, take_spilled};
use super::{MAX_RINGS, SlotMap, status};
use crate::error::IoError;
use crate::frame::{Desc, FrameMeta, PacketType, Release, RxBatch, VlanTag};
use crate::geometry::RingGeometry;
use crate::sys::{self, Tpacket2Hdr, Tpacket3Hdr, TpacketBlockDesc};
use crate::vnet::{VNET_HDR_LEN, VnetHdr};

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
    V2(V2Ring),
    V3(V3Ring),
    /// Backend-owned buffers (pnet): nothing to hand back.
    Owned,
}

/// A TPACKET_V2 ring: fixed slots, each handed over on its own.
pub(crate) struct V2Ring {
    base: *mut u8,
    slots: SlotMap,
    head: usize,
    held_from: usize,
    held: usize,
    /// Buffers for frames larger than a slot (`None`: such frames are counted as truncated).
    pub(super) spill: Option<Spill>,
}

/// A TPACKET_V3 ring: frames packed into blocks, each block handed over whole.
pub(crate) struct V3Ring {
    base: *mut u8,
    block_size: usize,
    block_nr: usize,
    cur: usize,
    /// Packets left and offset of the next one in the current (user-owned) block.
    cursor: Option<(u32, usize)>,
    /// Blocks fully walked by the current batch, to hand back when it is dropped.
    done: Vec<usize>,
}

impl V2Ring {
    /// The V2 ring of geometry `g` at `base` (the start of the socket's live mapping).
    pub(crate) fn new(base: *mut u8, g: &RingGeometry, spill: Option<Spill>) -> V2Ring {
        V2Ring {
            base,
            slots: SlotMap::new(g),
            head: 0,
            held_from: 0,
            held: 0,
            spill,
        }
    }
}

impl V3Ring {
    /// The V3 ring of geometry `g` at `base` (the start of the socket's live mapping).
    pub(crate) fn new(base: *mut u8, g: &RingGeometry) -> V3Ring {
        V3Ring {
            base,
            block_size: g.block_size as usize,
            block_nr: g.block_nr as usize,
            cur: 0,
            cursor: None,
            done: Vec::with_capacity(g.block_nr as usize),
        }
    }
}

impl Release for RingState {
    fn release(&mut self) {
        match self {
            RingState::V2(r) => r.release(),
            RingState::V3(r) => r.release(),
            RingState::Owned => {}
        }
    }
}

impl V2Ring {
    /// Hands the slots of the batch being dropped back to the kernel.
    fn release(&mut self) {
        if let Some(sp) = &mut self.spill {
            sp.reset();
        }
        for i in 0..self.held {
            let slot = (self.held_from + i) % self.slots.frame_nr;
            // SAFETY: `slot < frame_nr`, so the address is a slot start inside the live
            // mapping (16-byte aligned). The batch borrowing these slots is being dropped,
            // so no view into them remains.
            unsafe {
                status(self.base.add(self.slots.offset(slot)))
                    .store(sys::TP_STATUS_KERNEL, Ordering::Release)
            };
        }
        self.held_from = (self.held_from + self.held) % self.slots.frame_nr;
        self.held = 0;
    }
}

impl V3Ring {
    /// Hands the blocks of the batch being dropped back to the kernel.
    fn release(&mut self) {
        for b in self.done.drain(..) {
            // SAFETY: `b < block_nr` (pushed by the walk), so this is the block_status word
            // (offset 8) of a block in the live mapping; the batch using it is being dropped.
            unsafe {
                status(self.base.add(b * self.block_size + 8))
                    .store(sys::TP_STATUS_KERNEL, Ordering::Release)
            };
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
pub(super) struct Hdr {
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
            self.wait(timeout_ms, iface)?;
            self.walk(max);
        }
        self.fill_spilled();
        self.next = (self.next + 1) % self.rings.0.len().max(1);
        Ok(RxBatch {
            descs: &mut self.descs,
            owner: &mut self.rings,
        })
    }

    /// Polls the rings' sockets up to `timeout_ms`; a pending socket error is returned.
    fn wait(&self, timeout_ms: c_int, iface: &str) -> Result<(), IoError> {
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
        Ok(())
    }

    fn has_held(&self) -> bool {
        self.rings.0.iter().any(|r| match &r.state {
            RingState::V2(r) => r.held > 0,
            RingState::V3(r) => !r.done.is_empty(),
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
                let (descs, counters) = (&mut self.descs, &mut self.counters);
                match &mut r.state {
                    RingState::V2(r) => r.walk(descs, counters, self.params, max),
                    RingState::V3(r) => r.walk(descs, counters, self.params, max),
                    RingState::Owned => {}
                }
            }
        }
    }
}

impl V2Ring {
    /// Walks the ready slots into `descs` until it holds `max`; a slot is held (until the batch
    /// is dropped) whether or not its frame was taken.
    fn walk(
        &mut self,
        descs: &mut Vec<Desc>,
        counters: &mut RxCounters,
        params: RxParams,
        max: usize,
    ) {
        let slots = self.slots;
        while descs.len() < max && self.held < slots.frame_nr {
            // SAFETY: `head < frame_nr`: a slot start inside the live mapping.
            let slot = unsafe { self.base.add(slots.offset(self.head)) };
            // SAFETY: slot starts are 16-byte aligned inside the mapping.
            let st = unsafe { status(slot) }.load(Ordering::Acquire);
            if st & sys::TP_STATUS_USER == 0 {
                break;
            }
            let spilled = st & sys::TP_STATUS_COPY != 0;
            if spilled && self.spill.as_ref().is_some_and(|sp| !sp.free()) {
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
            match self.spill.as_mut() {
                Some(sp) if spilled => {
                    // The whole frame waits on the socket queue: reserve a buffer (the
                    // queued frame must be read even if this one is then skipped).
                    // SAFETY: the slot is user-owned and `frame_size` bytes long.
                    let d = unsafe {
                        take_spilled(slot, slots.frame_size, hdr_al, &hdr, sp, params, counters)
                    };
                    sp.reserve(descs.len());
                    descs.push(d);
                }
                _ => {
                    // SAFETY: the slot is user-owned and `frame_size` bytes long.
                    let d = unsafe { take(slot, slots.frame_size, hdr_al, &hdr, params, counters) };
                    if let Some(d) = d {
                        descs.push(d);
                    }
                }
            }
            self.held += 1;
            self.head = (self.head + 1) % slots.frame_nr;
        }
    }
}

impl V3Ring {
    /// Walks the packets of the ready blocks into `descs` until it holds `max`; a block is
    /// held (until the batch is dropped) once its last packet was walked.
    fn walk(
        &mut self,
        descs: &mut Vec<Desc>,
        counters: &mut RxCounters,
        params: RxParams,
        max: usize,
    ) {
        let block_size = self.block_size;
        while descs.len() < max {
            // SAFETY: `cur < block_nr`: a block start inside the live mapping.
            let blk = unsafe { self.base.add(self.cur * block_size) };
            let (left, off) = match self.cursor {
                Some(c) => c,
                None => {
                    if self.done.len() >= self.block_nr {
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
            if left == 0 || off >= block_size {
                self.block_done();
                continue;
            }
            // SAFETY: `off < block_size`, inside the user-owned block.
            let pkt = unsafe { blk.add(off) };
            let room = block_size - off;
            if room < size_of::<Tpacket3Hdr>() {
                self.block_done();
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
                self.block_done();
            } else {
                self.cursor = Some((left - 1, next));
            }
        }
    }

    /// The current block is walked: hold it for the batch and move to the next one.
    fn block_done(&mut self) {
        self.done.push(self.cur);
        self.cur = (self.cur + 1) % self.block_nr;
        self.cursor = None;
    }
}

/// Whether a frame of `pkttype` is skipped rather than handed out: our own outgoing frames, and
/// on an EtherType-bound socket another host's (counted either way).
pub(super) fn skipped(pkttype: u8, params: RxParams, c: &mut RxCounters) -> bool {
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

/// The metadata of a frame from its ring header.
pub(super) fn meta(pkttype: u8, h: &Hdr) -> FrameMeta {
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
pub(super) fn reinsert_vlan(d: &mut Desc, params: RxParams, c: &mut RxCounters) {
    if let (Some(tag), true) = (d.meta.vlan, params.reinsert_vlan)
        && crate::frame::push_vlan(d, tag)
    {
        if let Some(v) = d.vnet.as_mut() {
            let _ = v.shift(4);
        }
        d.meta.vlan_in_frame = true;
        c.vlan_reinserted += 1;
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
