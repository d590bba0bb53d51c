//! UDP coalescing at transmit: consecutive small datagrams of one flow, leaving on one link in one
//! batch, are sent as a single UDP GSO frame ([`GsoKind::UdpL4`]) that the kernel segments back
//! into the same datagrams at the last moment (at the receiving socket, or before a device without
//! UDP segmentation). One send, one skb and one pass through the next hops' forwarding per group
//! instead of per datagram.
//!
//! Only atomic datagrams are merged (RFC 6864: DF set, not a fragment), so the one field the
//! segments do not keep, the IPv4 identification (the kernel numbers them from the first one),
//! carries no meaning. Everything else is required to be identical: MACs, TOS, TTL, addresses,
//! ports and the payload length (every segment has the same size). The payloads are copied into
//! the tail room of the group's first frame (an RX ring slot), so a group is bounded by that room
//! and by [`MAX_SEGMENTS`].
//!
//! The caller (the daemon's worker) walks its batch and keeps the bookkeeping of which frame heads
//! a [`Group`]; every header byte is read and written here:
//!
//! ```
//! use altroute_packet::egress::coalesce::Group;
//! # let datagram = |id: u8| {
//! #     let mut v = Vec::new();
//! #     etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
//! #         .ipv4([192, 0, 2, 1], [203, 0, 113, 10], 63)
//! #         .udp(40000, 5201)
//! #         .write(&mut v, &[id; 100])
//! #         .unwrap();
//! #     v[20] = 0x40; // DF
//! #     v
//! # };
//! let (first, second) = (datagram(1), datagram(2));
//! // The first frame in a buffer with room after it, as in a ring slot.
//! let mut head = first.clone();
//! head.resize(4096, 0);
//! let mut len = first.len();
//! let mut g = Group::open(&first).expect("a small atomic UDP datagram");
//! let payload = g.next_payload(&second).expect("same flow, same size");
//! len = g.append(&mut head, len, payload).expect("room for it");
//! let offload = g.finish(&mut head[..len]).expect("two datagrams make a GSO frame");
//! assert_eq!(offload.gso.map(|s| s.size), Some(100));
//! ```

use altroute_flow::proto;

use super::{Gso, GsoKind, PartialChecksum, TxOffload};
use crate::checksum;
use crate::wire::{EtherType, EthernetFrame, Ipv4Packet, UdpPacket, ethernet, ipv4, udp};

/// Largest UDP payload that is coalesced (small datagrams are the point).
pub const MAX_PAYLOAD: usize = 512;
/// Most datagrams in one GSO frame (the kernel accepts up to `UDP_MAX_SEGMENTS`, 64 or more).
pub const MAX_SEGMENTS: u32 = 64;

/// Where the IPv4 header starts: after an untagged Ethernet header.
const L3: usize = ethernet::HEADER_LEN;
/// Where the UDP header starts: after an IPv4 header without options.
const L4: usize = L3 + ipv4::MIN_HEADER_LEN;
/// Ethernet + IPv4 (no options) + UDP: the headers every segment repeats.
pub const HDR_LEN: usize = L4 + udp::HEADER_LEN;

/// The UDP payload length of a frame that may be coalesced: Ethernet (no tag), IPv4 without
/// options, atomic (DF set, not a fragment), UDP, lengths that match the frame exactly (no
/// padding), and a payload of 1 to [`MAX_PAYLOAD`] bytes.
pub fn candidate(frame: &[u8]) -> Option<usize> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.is_tagged() || eth.ethertype() != EtherType::IPV4 {
        return None;
    }
    let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
    if ip.header_len() != ipv4::MIN_HEADER_LEN
        || ip.proto() != proto::UDP
        || !ip.is_atomic()
        || usize::from(ip.total_len()) != eth.payload().len()
    {
        return None;
    }
    let udp = UdpPacket::new_checked(ip.payload()).ok()?;
    if usize::from(udp.len()) != ip.payload().len() {
        return None;
    }
    let payload = udp.payload().len();
    (1..=MAX_PAYLOAD).contains(&payload).then_some(payload)
}

/// Whether `b` continues the group whose first frame's headers were `key`: everything but the
/// IPv4 identification and the checksums is equal (the total length too, so the payload size).
pub fn same_flow(key: &[u8; HDR_LEN], b: &[u8]) -> bool {
    let Some(b) = b.first_chunk::<HDR_LEN>() else {
        return false;
    };
    // MACs, EtherType, version/IHL, TOS, total length | identification (skipped)
    key[..L3 + 4] == b[..L3 + 4]
        // flags/fragment offset, TTL, protocol | header checksum (skipped)
        && key[L3 + 6..L3 + 10] == b[L3 + 6..L3 + 10]
        // addresses, ports, UDP length | UDP checksum (skipped)
        && key[L3 + 12..L4 + 6] == b[L3 + 12..L4 + 6]
}

/// Turns a group's first frame, with the other payloads appended, into one UDP GSO frame of
/// `seg_payload`-byte segments: IPv4 total length and header checksum, UDP length, and the UDP
/// checksum field as the pseudo-header sum only (the kernel finishes each segment's checksum).
/// Returns its offload metadata, or `None` if the frame is not an untagged UDP over IPv4 frame
/// without options holding at least one segment; every check comes before the first write, so
/// `None` leaves the frame untouched.
pub fn finish_gso(frame: &mut [u8], seg_payload: usize) -> Option<TxOffload> {
    let n = frame.len();
    if seg_payload == 0 || n < HDR_LEN + seg_payload {
        return None;
    }
    let tot = u16::try_from(n - L3).ok()?;
    let udp_len = u16::try_from(n - L4).ok()?;
    let size = u16::try_from(seg_payload).ok()?;
    let mut eth = EthernetFrame::new_unchecked(&mut *frame);
    if eth.is_tagged() || eth.ethertype() != EtherType::IPV4 {
        return None;
    }
    let mut ip = Ipv4Packet::new_unchecked(eth.payload_mut());
    if ip.version() != 4 || ip.header_len() != ipv4::MIN_HEADER_LEN || ip.proto() != proto::UDP {
        return None;
    }
    ip.set_total_len(tot);
    ip.fill_checksum();
    let pseudo = checksum::pseudo_header_v4(ip.src(), ip.dst(), proto::UDP, udp_len);
    let mut udp = UdpPacket::new_unchecked(ip.payload_mut());
    udp.set_len(udp_len);
    udp.set_checksum(pseudo);
    Some(TxOffload {
        partial: Some(PartialChecksum {
            start: L4 as u16,
            offset: udp::CHECKSUM_OFFSET as u16,
        }),
        gso: Some(Gso {
            kind: GsoKind::UdpL4,
            ecn: false,
            size,
            hdr_len: HDR_LEN as u16,
        }),
    })
}

/// A group of datagrams being merged into its first frame (the head): the head's headers, the
/// payload size every member has, and how many there are.
#[derive(Clone, Debug)]
pub struct Group {
    key: [u8; HDR_LEN],
    payload: usize,
    segs: u32,
}

impl Group {
    /// A group headed by `frame`, if it is a [`candidate`].
    pub fn open(frame: &[u8]) -> Option<Group> {
        let payload = candidate(frame)?;
        Some(Group {
            key: *frame.first_chunk::<HDR_LEN>()?,
            payload,
            segs: 1,
        })
    }

    /// The payload of `frame` if it continues the group: a candidate of the same flow with the
    /// same payload size, while the group has fewer than [`MAX_SEGMENTS`] members.
    pub fn next_payload<'f>(&self, frame: &'f [u8]) -> Option<&'f [u8]> {
        if self.segs >= MAX_SEGMENTS
            || candidate(frame) != Some(self.payload)
            || !same_flow(&self.key, frame)
        {
            return None;
        }
        frame.get(HDR_LEN..HDR_LEN + self.payload)
    }

    /// Appends `payload` (from [`Group::next_payload`]) to the head: `head` is its buffer with
    /// the room after it, `head_len` its current length. Returns the head's new length, or `None`
    /// (nothing changed) when it does not fit the buffer, or the IPv4 total length, or the
    /// group.
    pub fn append(&mut self, head: &mut [u8], head_len: usize, payload: &[u8]) -> Option<usize> {
        if payload.len() != self.payload || self.segs >= MAX_SEGMENTS {
            return None;
        }
        let new_len = head_len.checked_add(payload.len())?;
        if new_len - L3 > usize::from(u16::MAX) {
            return None;
        }
        head.get_mut(head_len..new_len)?.copy_from_slice(payload);
        self.segs += 1;
        Some(new_len)
    }

    /// How many datagrams the group holds.
    pub fn segments(&self) -> u32 {
        self.segs
    }

    /// Turns the head (`head`: exactly the frame) into the group's GSO frame and returns its
    /// offload metadata; `None`, and the head unchanged, for a group of one.
    pub fn finish(&self, head: &mut [u8]) -> Option<TxOffload> {
        if self.segs < 2 {
            return None;
        }
        finish_gso(head, self.payload)
    }
}

#[cfg(test)]
mod tests;
