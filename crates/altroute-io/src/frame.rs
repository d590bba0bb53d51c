//! Frames handed to the caller: a received batch of mutable frames that live in the RX ring (or
//! in a backend buffer), each with headroom before its MAC header, and the frames handed back for
//! transmission.

use crate::vnet::VnetHdr;

/// `sll_pkttype` of a received frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PacketType {
    /// Addressed to this host (our MAC).
    Host,
    /// Link-layer broadcast.
    Broadcast,
    /// Link-layer multicast.
    Multicast,
    /// Addressed to another host (seen because the port is promiscuous).
    OtherHost,
    /// Sent by this host (never handed to the caller: counted and skipped).
    Outgoing,
    /// Looped back.
    Loopback,
    /// Unknown to this crate, or not reported by the backend.
    Unknown(u8),
}

impl PacketType {
    pub(crate) fn from_raw(v: u8) -> PacketType {
        use crate::sys::*;
        match v {
            PACKET_HOST => PacketType::Host,
            PACKET_BROADCAST => PacketType::Broadcast,
            PACKET_MULTICAST => PacketType::Multicast,
            PACKET_OTHERHOST => PacketType::OtherHost,
            PACKET_OUTGOING => PacketType::Outgoing,
            PACKET_LOOPBACK => PacketType::Loopback,
            o => PacketType::Unknown(o),
        }
    }
}

/// An 802.1Q/802.1ad tag the kernel took out of the frame (`TP_STATUS_VLAN_VALID`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VlanTag {
    /// Tag protocol identifier (0x8100 unless the kernel reported another).
    pub tpid: u16,
    /// Tag control information (PCP, DEI, VID).
    pub tci: u16,
}

/// What the kernel reported about a received frame besides its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameMeta {
    /// `sll_pkttype`.
    pub pkttype: PacketType,
    /// Length of the frame on the wire (`tp_len`), before any VLAN re-insertion.
    pub wire_len: u32,
    /// `TP_STATUS_CSUMNOTREADY`: the L4 checksum is partial (the sender offloaded it and the
    /// frame never left the host). In vnet mode the vnet header says the same with more detail.
    pub csum_not_ready: bool,
    /// `TP_STATUS_CSUM_VALID`: the checksum was already verified.
    pub csum_valid: bool,
    /// The VLAN tag the kernel stripped, if any (re-inserted into the frame unless disabled).
    pub vlan: Option<VlanTag>,
    /// True if [`FrameMeta::vlan`] was put back into the frame bytes.
    pub vlan_in_frame: bool,
    /// Receive timestamp, seconds and nanoseconds (`CLOCK_REALTIME`), zero if not available.
    pub ts_sec: u32,
    /// Nanoseconds part of the timestamp.
    pub ts_nsec: u32,
}

/// Internal descriptor of one frame: a buffer region `[ptr, ptr + cap)` of which
/// `[start, end)` is the frame and `[0, start)` the headroom.
#[derive(Debug)]
pub(crate) struct Desc {
    pub ptr: *mut u8,
    pub cap: usize,
    pub start: usize,
    pub end: usize,
    pub vnet: Option<VnetHdr>,
    pub meta: FrameMeta,
    pub dropped: bool,
}

impl Desc {
    fn buf(&self) -> &[u8] {
        // SAFETY: `ptr..ptr+cap` is memory owned by user space for the lifetime of the batch that
        // holds this descriptor (a ring slot in TP_STATUS_USER state, or a backend buffer), and
        // descriptors of one batch never overlap. The borrow of `self` ties the slice to the batch.
        unsafe { std::slice::from_raw_parts(self.ptr, self.cap) }
    }
    fn buf_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `buf`; `&mut self` guarantees this is the only live view of the region.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.cap) }
    }
}

/// One received frame, borrowed mutably from its [`RxBatch`]. The bytes are the ring slot itself:
/// edits are in place and the frame can be transmitted from there.
pub struct RxFrame<'b> {
    d: &'b mut Desc,
}

impl<'b> RxFrame<'b> {
    /// The frame, from the MAC header.
    pub fn data(&self) -> &[u8] {
        let (s, e) = (self.d.start, self.d.end);
        self.d.buf().get(s..e).unwrap_or(&[])
    }

    /// The frame, mutable.
    pub fn data_mut(&mut self) -> &mut [u8] {
        let (s, e) = (self.d.start, self.d.end);
        self.d.buf_mut().get_mut(s..e).unwrap_or(&mut [])
    }

    /// Frame length.
    pub fn len(&self) -> usize {
        self.d.end - self.d.start
    }

    /// True for an empty frame (never produced by the backends).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes available before the MAC header.
    pub fn headroom(&self) -> usize {
        self.d.start
    }

    /// The whole buffer (headroom + frame) and the offset where the frame starts.
    pub fn buffer_mut(&mut self) -> (&mut [u8], usize) {
        let (s, e) = (self.d.start, self.d.end);
        let b = self.d.buf_mut();
        (b.get_mut(..e).unwrap_or(&mut []), s)
    }

    /// Moves the start of the frame by `delta` bytes: negative grows the frame into the
    /// headroom (the new bytes are unspecified), positive drops bytes from the front.
    /// Returns `false` and changes nothing if that leaves the buffer or empties the frame.
    #[must_use]
    pub fn adjust_front(&mut self, delta: isize) -> bool {
        match self.d.start.checked_add_signed(delta) {
            Some(s) if s < self.d.end => {
                self.d.start = s;
                true
            }
            _ => false,
        }
    }

    /// The frame and the free room after it, to the end of the buffer: a pipeline that may grow
    /// the frame (an answer longer than the question, a VLAN tag) writes here, then calls
    /// [`RxFrame::set_len`].
    pub fn frame_and_tail_mut(&mut self) -> &mut [u8] {
        let s = self.d.start;
        self.d.buf_mut().get_mut(s..).unwrap_or(&mut [])
    }

    /// Like [`RxFrame::frame_and_tail_mut`], but consumes the view and keeps the batch's
    /// borrow, so the buffers of several frames of one batch can be held at once (e.g. for a
    /// batched pipeline). Use [`RxBatch::get_mut`] afterwards to reach the frame again.
    pub fn into_frame_and_tail(self) -> &'b mut [u8] {
        let d = self.d;
        let s = d.start;
        // SAFETY: as in `Desc::buf_mut`: the region belongs to this descriptor for the batch's
        // lifetime `'b`, and consuming the only `&'b mut Desc` view hands that exclusivity on.
        let b = unsafe { std::slice::from_raw_parts_mut(d.ptr, d.cap) };
        b.get_mut(s..).unwrap_or(&mut [])
    }

    /// Sets the frame's length, growing it into the tail room or shortening it. Returns `false`
    /// and changes nothing if `len` is 0 or does not fit in the buffer.
    #[must_use]
    pub fn set_len(&mut self, len: usize) -> bool {
        match self.d.start.checked_add(len) {
            Some(end) if len > 0 && end <= self.d.cap => {
                self.d.end = end;
                true
            }
            _ => false,
        }
    }

    /// Shortens the frame to `len` bytes (no-op if it is not longer).
    pub fn truncate(&mut self, len: usize) {
        if len < self.len() {
            self.d.end = self.d.start + len;
        }
    }

    /// Inserts an 802.1Q/802.1ad tag after the MAC addresses, using 4 bytes of headroom, and
    /// shifts the vnet header offsets. Returns `false` if there is no room or the frame is
    /// shorter than the MAC addresses.
    #[must_use]
    pub fn push_vlan(&mut self, tag: VlanTag) -> bool {
        let ok = push_vlan(self.d, tag);
        if ok && let Some(v) = self.d.vnet.as_mut() {
            // Offsets of a 64 KiB frame cannot overflow by 4 in practice; on overflow the
            // header is left unchanged and the kernel will reject the frame.
            let _ = v.shift(4);
        }
        ok
    }

    /// Removes the 802.1Q/802.1ad tag after the MAC addresses, if there is one, and returns it.
    pub fn pop_vlan(&mut self) -> Option<VlanTag> {
        let d = &mut *self.d;
        let f = d.buf().get(d.start..d.end)?;
        let tpid = u16::from_be_bytes([*f.get(12)?, *f.get(13)?]);
        if tpid != 0x8100 && tpid != 0x88a8 {
            return None;
        }
        let tci = u16::from_be_bytes([*f.get(14)?, *f.get(15)?]);
        if f.len() < 18 {
            return None;
        }
        let s = d.start;
        d.buf_mut().copy_within(s..s + 12, s + 4);
        d.start += 4;
        if let Some(v) = d.vnet.as_mut() {
            let _ = v.shift(-4);
        }
        Some(VlanTag { tpid, tci })
    }

    /// The vnet header received with the frame (vnet mode only); edits are sent with it.
    pub fn vnet(&self) -> Option<&VnetHdr> {
        self.d.vnet.as_ref()
    }

    /// The vnet header, mutable.
    pub fn vnet_mut(&mut self) -> Option<&mut VnetHdr> {
        self.d.vnet.as_mut()
    }

    /// Replaces the vnet header transmitted with this frame.
    pub fn set_vnet(&mut self, v: Option<VnetHdr>) {
        self.d.vnet = v;
    }

    /// Kernel metadata.
    pub fn meta(&self) -> &FrameMeta {
        &self.d.meta
    }

    /// Marks the frame as dropped: [`RxBatch::tx_frames`] skips it.
    pub fn drop_frame(&mut self) {
        self.d.dropped = true;
    }

    /// True if [`RxFrame::drop_frame`] was called.
    pub fn is_dropped(&self) -> bool {
        self.d.dropped
    }

    /// The frame (with its vnet header) ready to pass to a sender.
    pub fn tx(&self) -> TxFrame<'_> {
        TxFrame {
            data: self.data(),
            vnet: self.d.vnet,
        }
    }
}

pub(crate) fn push_vlan(d: &mut Desc, tag: VlanTag) -> bool {
    if d.start < 4 || d.end - d.start < 12 {
        return false;
    }
    let s = d.start;
    let b = d.buf_mut();
    b.copy_within(s..s + 12, s - 4);
    b[s + 8..s + 10].copy_from_slice(&tag.tpid.to_be_bytes());
    b[s + 10..s + 12].copy_from_slice(&tag.tci.to_be_bytes());
    d.start -= 4;
    true
}

/// Releases what a batch holds when it is dropped.
pub(crate) trait Release {
    fn release(&mut self);
}

/// A batch of received frames. The frames stay in the ring (owned by user space) until the batch
/// is dropped, which hands their slots back to the kernel. Transmit them (from the ring) before
/// dropping the batch.
pub struct RxBatch<'a> {
    pub(crate) descs: &'a mut Vec<Desc>,
    pub(crate) owner: &'a mut dyn Release,
}

impl RxBatch<'_> {
    /// Number of frames.
    pub fn len(&self) -> usize {
        self.descs.len()
    }

    /// True if no frame arrived within the timeout.
    pub fn is_empty(&self) -> bool {
        self.descs.is_empty()
    }

    /// The frames, mutable and in arrival order.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = RxFrame<'_>> {
        self.descs.iter_mut().map(|d| RxFrame { d })
    }

    /// Frame `i`.
    pub fn get_mut(&mut self, i: usize) -> Option<RxFrame<'_>> {
        self.descs.get_mut(i).map(|d| RxFrame { d })
    }

    /// Frame `i`'s bytes.
    pub fn data(&self, i: usize) -> Option<&[u8]> {
        let d = self.descs.get(i)?;
        d.buf().get(d.start..d.end)
    }

    /// Frame `i` ready for a sender, unless it was marked dropped.
    pub fn tx_frame(&self, i: usize) -> Option<TxFrame<'_>> {
        let d = self.descs.get(i).filter(|d| !d.dropped)?;
        Some(TxFrame {
            data: d.buf().get(d.start..d.end)?,
            vnet: d.vnet,
        })
    }

    /// The frames not marked dropped, ready for a sender.
    pub fn tx_frames(&self) -> impl Iterator<Item = TxFrame<'_>> + '_ {
        self.descs.iter().filter(|d| !d.dropped).map(|d| TxFrame {
            data: d.buf().get(d.start..d.end).unwrap_or(&[]),
            vnet: d.vnet,
        })
    }
}

impl Drop for RxBatch<'_> {
    fn drop(&mut self) {
        self.descs.clear();
        self.owner.release();
    }
}

/// A frame to transmit: the bytes from the MAC header, and in vnet mode the header the kernel
/// uses to segment / checksum it (`None` sends an all-zero header: no offload).
#[derive(Clone, Copy, Debug)]
pub struct TxFrame<'a> {
    /// The frame.
    pub data: &'a [u8],
    /// The vnet header (ignored by ports without vnet mode).
    pub vnet: Option<VnetHdr>,
}

impl<'a> TxFrame<'a> {
    /// A plain frame without vnet header.
    pub fn new(data: &'a [u8]) -> TxFrame<'a> {
        TxFrame { data, vnet: None }
    }
}

/// What one `send` did. Failed frames are counted in the port's statistics, not returned as errors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TxOutcome {
    /// Frames handed to the kernel.
    pub sent: usize,
    /// Frames dropped (queue full, too big, link down, ...).
    pub failed: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Nop;
    impl Release for Nop {
        fn release(&mut self) {}
    }

    fn meta() -> FrameMeta {
        FrameMeta {
            pkttype: PacketType::Host,
            wire_len: 0,
            csum_not_ready: false,
            csum_valid: false,
            vlan: None,
            vlan_in_frame: false,
            ts_sec: 0,
            ts_nsec: 0,
        }
    }

    #[test]
    fn vlan_push_and_pop_in_place() {
        let mut buf = vec![0u8; 8];
        let frame: Vec<u8> = (0u8..30).collect();
        buf.extend_from_slice(&frame);
        let mut descs = vec![Desc {
            ptr: buf.as_mut_ptr(),
            cap: buf.len(),
            start: 8,
            end: buf.len(),
            vnet: Some(VnetHdr {
                flags: VnetHdr::F_NEEDS_CSUM,
                csum_start: 34,
                csum_offset: 16,
                hdr_len: 54,
                ..VnetHdr::default()
            }),
            meta: meta(),
            dropped: false,
        }];
        let mut nop = Nop;
        let mut b = RxBatch {
            descs: &mut descs,
            owner: &mut nop,
        };
        {
            let mut f = b.get_mut(0).unwrap();
            assert_eq!(f.headroom(), 8);
            assert!(f.push_vlan(VlanTag {
                tpid: 0x8100,
                tci: 0x0064
            }));
            assert_eq!(f.headroom(), 4);
            assert_eq!(&f.data()[..12], &frame[..12]);
            assert_eq!(&f.data()[12..16], &[0x81, 0x00, 0x00, 0x64]);
            assert_eq!(&f.data()[16..], &frame[12..]);
            assert_eq!(f.vnet().unwrap().csum_start, 38);
            assert!(f.push_vlan(VlanTag {
                tpid: 0x88a8,
                tci: 1
            }));
            assert!(
                !f.push_vlan(VlanTag {
                    tpid: 0x8100,
                    tci: 1
                }),
                "no headroom left"
            );
            assert_eq!(
                f.pop_vlan(),
                Some(VlanTag {
                    tpid: 0x88a8,
                    tci: 1
                })
            );
            assert_eq!(
                f.pop_vlan(),
                Some(VlanTag {
                    tpid: 0x8100,
                    tci: 0x64
                })
            );
            assert_eq!(f.pop_vlan(), None);
            assert_eq!(f.data(), &frame[..]);
            assert_eq!(f.vnet().unwrap().csum_start, 34);
            assert!(!f.adjust_front(-9));
            assert!(f.adjust_front(-8) && f.headroom() == 0);
            assert!(f.adjust_front(8));
            f.truncate(20);
            assert_eq!(f.len(), 20);
            f.drop_frame();
        }
        assert_eq!(b.tx_frames().count(), 0);
        drop(b);
        assert!(descs.is_empty());
    }

    #[test]
    fn grows_into_tail_room_and_reports_tx_frames() {
        let mut buf = vec![0u8; 4 + 20 + 10]; // headroom 4, frame 20, tail 10
        buf[4..24].copy_from_slice(&[7u8; 20]);
        let mut descs = vec![Desc {
            ptr: buf.as_mut_ptr(),
            cap: 34,
            start: 4,
            end: 24,
            vnet: None,
            meta: meta(),
            dropped: false,
        }];
        let mut nop = Nop;
        let mut b = RxBatch {
            descs: &mut descs,
            owner: &mut nop,
        };
        {
            let mut f = b.get_mut(0).unwrap();
            assert_eq!(f.frame_and_tail_mut().len(), 30);
            f.frame_and_tail_mut()[20..30].copy_from_slice(&[9u8; 10]);
            assert!(f.set_len(30));
            assert!(!f.set_len(31), "past the buffer");
            assert!(!f.set_len(0));
            assert_eq!(&f.data()[18..22], &[7, 7, 9, 9]);
            assert!(f.set_len(5));
            assert_eq!(f.len(), 5);
        }
        assert_eq!(b.tx_frame(0).map(|t| t.data.len()), Some(5));
        assert!(b.tx_frame(1).is_none());
        b.get_mut(0).unwrap().drop_frame();
        assert!(b.tx_frame(0).is_none());
    }
}
