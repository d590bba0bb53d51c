//! The egress stage: what a frame needs between the pipeline's verdict and its out link, when the
//! link cannot do it, and the metadata that says what the link (the kernel) is to do.
//!
//! A frame may come in with work left for whoever sends it on (Linux `CHECKSUM_PARTIAL`, a GSO
//! super-frame): the I/O layer says so in its own terms (a virtio-net header, or the ring's
//! "checksum not ready" flag) and the daemon turns that into a [`TxOffload`], which the pipeline
//! keeps in step with its rewrites (a partial checksum field holds the pseudo-header sum, so NAT
//! updates it as one; an 802.1Q tag pushed or popped moves the offsets) and which goes back out
//! with the frame. This module does the byte work around it:
//!
//! - [`TxOffload::checksum_not_ready`]: where the unfinished L4 checksum of a frame is, when the
//!   ring only flagged it (no virtio-net header);
//! - [`complete_checksum`]: finishes that checksum in software, for an out link that cannot
//!   (no virtio-net header to hand the work to the kernel with);
//! - [`coalesce`]: UDP coalescing at transmit, runs of small datagrams of one flow merged into
//!   one UDP GSO frame that the kernel segments again at the last moment.
//!
//! Not to be confused with the kernel *flow* offload of
//! [`pipeline::offload`](crate::pipeline::offload) (tc records of established flows): this one is
//! the NIC-style checksum and segmentation offload of single frames.

use altroute_flow::proto;

use crate::checksum::{self, PartialError};
use crate::wire::{EtherType, EthernetFrame, Ipv4Packet, tcp, udp};

pub mod coalesce;

/// Where an unfinished ("partial") L4 checksum is: the field at `start + offset` holds the folded
/// pseudo-header sum, not complemented; the checksum covers `start..` (the L4 header and its
/// payload). Linux `csum_start`/`csum_offset`, virtio-net `NEEDS_CSUM`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PartialChecksum {
    /// Offset in the frame of the L4 header.
    pub start: u16,
    /// Offset of the checksum field from `start` (TCP 16, UDP 6).
    pub offset: u16,
}

/// What a GSO super-frame is split into.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GsoKind {
    /// TCP segments over IPv4 (TSO).
    TcpV4,
    /// TCP segments over IPv6.
    TcpV6,
    /// UDP datagrams of `size` payload bytes each (USO, `UDP_SEGMENT`).
    UdpL4,
}

/// A GSO super-frame: one frame the kernel segments on transmit (so the MTU does not apply to
/// it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Gso {
    /// What it is split into.
    pub kind: GsoKind,
    /// TCP only: the segments carry ECN's CWR (virtio-net `GSO_ECN`).
    pub ecn: bool,
    /// Payload bytes per segment (the MSS for TCP).
    pub size: u16,
    /// Bytes at the front the kernel may treat as headers, copied onto every segment (a hint;
    /// 0 when unknown).
    pub hdr_len: u16,
}

/// The checksum and segmentation offload state of one frame: what the pipeline received with it,
/// kept up to date through the rewrites, and what goes to the out link.
///
/// Converted from and to the I/O layer's virtio-net header by the daemon (virtio-net's
/// `DATA_VALID` flag is receive-only information the kernel ignores on transmit, so it is not
/// carried). The pipeline resets it to [`TxOffload::NONE`] when it replaces a frame with one it
/// built (an answer, an ARP request).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct TxOffload {
    /// The L4 checksum is unfinished: the field holds the pseudo-header sum. The pipeline keeps it
    /// so (updating the pseudo-header part when it translates addresses).
    pub partial: Option<PartialChecksum>,
    /// The frame is a GSO super-frame.
    pub gso: Option<Gso>,
}

impl TxOffload {
    /// Nothing to finish, a single frame.
    pub const NONE: TxOffload = TxOffload {
        partial: None,
        gso: None,
    };

    /// The offload state of a frame the ring flagged "checksum not ready" (`TP_STATUS_CSUMNOTREADY`)
    /// without a virtio-net header to say where: for TCP or UDP over IPv4 (tagged or not), the
    /// L4 checksum field; nothing for any other frame.
    pub fn checksum_not_ready(frame: &[u8]) -> TxOffload {
        TxOffload {
            partial: l4_checksum_field(frame),
            gso: None,
        }
    }

    /// Moves the offsets by `delta` bytes, after that many were inserted (positive) or removed
    /// (negative) in front of the L3 header (an 802.1Q tag pushed or popped). Offsets saturate at
    /// the ends of `u16`; an unknown (0) header length stays 0.
    #[inline]
    pub fn shift(&mut self, delta: i16) {
        if let Some(p) = self.partial.as_mut() {
            p.start = p.start.saturating_add_signed(delta);
        }
        if let Some(g) = self.gso.as_mut()
            && g.hdr_len != 0
        {
            g.hdr_len = g.hdr_len.saturating_add_signed(delta);
        }
    }
}

/// The L4 checksum field of a TCP or UDP over IPv4 frame, tagged or not.
fn l4_checksum_field(frame: &[u8]) -> Option<PartialChecksum> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EtherType::IPV4 {
        return None;
    }
    let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
    let offset = match ip.proto() {
        proto::TCP => tcp::CHECKSUM_OFFSET,
        proto::UDP => udp::CHECKSUM_OFFSET,
        _ => return None,
    };
    Some(PartialChecksum {
        start: u16::try_from(eth.header_len() + ip.header_len()).ok()?,
        offset: u16::try_from(offset).ok()?,
    })
}

/// Finishes the partial checksum `offload` names, in software, as a NIC would, and clears
/// `offload.partial`: for an out link that cannot take the work (no virtio-net header to hand it
/// to the kernel with). UDP over IPv4 gets RFC 768's zero rule; the sum stops at the end of an
/// IPv4 packet, so Ethernet padding stays out of it. Nothing to do (`Ok`) without a partial
/// checksum; `Err` (and `offload` unchanged) when the field lies outside the frame.
pub fn complete_checksum(frame: &mut [u8], offload: &mut TxOffload) -> Result<(), PartialError> {
    let Some(p) = offload.partial else {
        return Ok(());
    };
    let (start, offset) = (usize::from(p.start), usize::from(p.offset));
    let (is_udp, end) = match ipv4_extent(frame) {
        Some((ip_proto, end)) => (ip_proto == proto::UDP, end),
        None => (false, frame.len()),
    };
    let len = frame.len();
    let data = frame
        .get_mut(..end)
        .ok_or(PartialError::OutOfRange { start, offset, len })?;
    if is_udp {
        checksum::complete_partial_udp(data, start, offset)?;
    } else {
        checksum::complete_partial(data, start, offset)?;
    }
    offload.partial = None;
    Ok(())
}

/// The protocol and the end (in the frame) of the IPv4 packet an Ethernet frame carries.
fn ipv4_extent(frame: &[u8]) -> Option<(u8, usize)> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EtherType::IPV4 {
        return None;
    }
    let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
    Some((ip.proto(), eth.header_len() + usize::from(ip.total_len())))
}

#[cfg(test)]
mod tests;
