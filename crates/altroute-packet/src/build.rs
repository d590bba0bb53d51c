//! Frames the router originates, written into a caller-provided scratch buffer (no allocation):
//! ARP request and reply, ICMP time exceeded, fragmentation needed and administratively
//! prohibited, ICMP echo request and reply, and a TCP RST answering a segment.
//!
//! Every builder returns the frame length. Frames shorter than the Ethernet minimum (60 bytes
//! without FCS) are zero-padded to 60, as a NIC would; the IPv4 `total_len` does not count the
//! padding. All checksums are complete (no partial checksums).
//!
//! ICMP errors quote the offending IP packet per RFC 1812 §4.3.2.3: as much of it as fits
//! without the error's IP packet exceeding 576 bytes (20 + 8 + 548 bytes of quote), which
//! includes the RFC 792 minimum of the IP header plus 64 bits of data. Whether an error may be
//! sent at all (RFC 1812 §4.3.2.7: never about an ICMP error, a non-first fragment, a broadcast or
//! multicast, or an invalid source) is checked by [`may_send_icmp_error`]; the builders do not
//! refuse on their own, so the pipeline can also apply its rate limit first.

use core::net::Ipv4Addr;

use crate::wire::{
    self, ArpOp, ArpRepr, EtherType, EthernetRepr, Icmpv4Packet, Icmpv4Repr, Ipv4Packet, Ipv4Repr,
    MacAddr, TcpFlags, TcpPacket, TcpRepr, UnreachableCode, VlanTci, icmpv4::types,
};

/// Minimum Ethernet frame length without FCS; shorter frames are zero-padded to it.
pub const MIN_FRAME_LEN: usize = 60;
/// Maximum IPv4 length of a generated ICMP error (RFC 1812 §4.3.2.3).
pub const ICMP_ERROR_MAX_IP_LEN: usize = 576;
/// TTL of the packets the router originates.
pub const DEFAULT_TTL: u8 = 64;

/// The Ethernet header of a generated frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct L2 {
    /// Source MAC (the router's port).
    pub src: MacAddr,
    /// Destination MAC (the next hop or the requester).
    pub dst: MacAddr,
    /// 802.1Q tag to add, if any.
    pub vlan: Option<VlanTci>,
}

impl L2 {
    fn repr(&self, ethertype: u16) -> EthernetRepr {
        EthernetRepr {
            src: self.src,
            dst: self.dst,
            vlan: self.vlan,
            ethertype,
        }
    }
}

/// Why a frame could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// The scratch buffer is too small.
    #[error("buffer too small: need {needed} bytes, have {got}")]
    BufferTooSmall {
        /// Bytes needed.
        needed: usize,
        /// Bytes available.
        got: usize,
    },
    /// The packet to answer is not what the builder answers (not IPv4, not TCP, a RST, not an
    /// echo request, ...).
    #[error("cannot answer this packet: {0}")]
    NotAnswerable(&'static str),
    /// The packet to answer is malformed.
    #[error("malformed input: {0}")]
    Malformed(#[from] wire::Error),
}

fn room(buf: &[u8], needed: usize) -> Result<(), BuildError> {
    if buf.len() < needed {
        Err(BuildError::BufferTooSmall {
            needed,
            got: buf.len(),
        })
    } else {
        Ok(())
    }
}

/// Zero-pads `buf[len..60]` and returns the padded length.
fn pad(buf: &mut [u8], len: usize) -> Result<usize, BuildError> {
    if len >= MIN_FRAME_LEN {
        return Ok(len);
    }
    room(buf, MIN_FRAME_LEN)?;
    if let Some(p) = buf.get_mut(len..MIN_FRAME_LEN) {
        p.fill(0);
    }
    Ok(MIN_FRAME_LEN)
}

fn arp(buf: &mut [u8], l2: &L2, a: &ArpRepr) -> Result<usize, BuildError> {
    let e = l2.repr(EtherType::ARP);
    let hl = e.header_len();
    room(buf, hl + wire::arp::PACKET_LEN)?;
    e.emit(buf).map_err(wire::Error::from)?;
    a.emit(buf.get_mut(hl..).unwrap_or(&mut []))
        .map_err(wire::Error::from)?;
    pad(buf, hl + wire::arp::PACKET_LEN)
}

/// An ARP reply (is-at) to `request`, from the router's `our_mac`/`our_ip`, sent unicast to
/// the requester. The caller checks that `request.tpa` is one of its addresses.
pub fn arp_reply(
    buf: &mut [u8],
    vlan: Option<VlanTci>,
    our_mac: MacAddr,
    our_ip: Ipv4Addr,
    request: &ArpRepr,
) -> Result<usize, BuildError> {
    let l2 = L2 {
        src: our_mac,
        dst: request.sha,
        vlan,
    };
    arp(
        buf,
        &l2,
        &ArpRepr {
            op: ArpOp::Reply,
            sha: our_mac,
            spa: our_ip,
            tha: request.sha,
            tpa: request.spa,
        },
    )
}

/// An ARP request (who-has `target` tell `our_ip`), broadcast.
pub fn arp_request(
    buf: &mut [u8],
    vlan: Option<VlanTci>,
    our_mac: MacAddr,
    our_ip: Ipv4Addr,
    target: Ipv4Addr,
) -> Result<usize, BuildError> {
    let l2 = L2 {
        src: our_mac,
        dst: MacAddr::BROADCAST,
        vlan,
    };
    arp(
        buf,
        &l2,
        &ArpRepr {
            op: ArpOp::Request,
            sha: our_mac,
            spa: our_ip,
            tha: MacAddr::ZERO,
            tpa: target,
        },
    )
}

/// Writes Ethernet + IPv4 headers for a packet with `payload_len` bytes of L4, returns the L4
/// offset.
fn eth_ip(buf: &mut [u8], l2: &L2, ip: &Ipv4Repr) -> Result<usize, BuildError> {
    let e = l2.repr(EtherType::IPV4);
    let l3 = e.header_len();
    let l4 = l3 + ip.header_len();
    room(buf, l4 + usize::from(ip.payload_len))?;
    e.emit(buf).map_err(wire::Error::from)?;
    ip.emit(buf.get_mut(l3..).unwrap_or(&mut []))?;
    Ok(l4)
}

/// True when RFC 1812 §4.3.2.7 allows an ICMP error about `original` (an IPv4 packet starting
/// at its header): it is not itself an ICMP error (or an ICMP message too short to tell), not a
/// non-first fragment, not addressed to a multicast or limited-broadcast address, and its source
/// is a unicast address (not 0.0.0.0, loopback, multicast, broadcast or class E). Directed
/// broadcasts of attached subnets are the pipeline's to check.
pub fn may_send_icmp_error(original: &[u8]) -> bool {
    let Ok(p) = Ipv4Packet::new_checked(original) else {
        return false;
    };
    let (s, d) = (p.src(), p.dst());
    if p.frag_offset() != 0
        || d.is_multicast()
        || d.is_broadcast()
        || s.is_unspecified()
        || s.is_loopback()
        || s.is_multicast()
        || s.is_broadcast()
        || s.octets()[0] >= 240
    {
        return false;
    }
    if p.proto() == altroute_flow::proto::ICMP {
        return match p.payload().first() {
            Some(t) => !types::is_error(*t),
            None => false,
        };
    }
    true
}

/// An ICMP error from `router_ip` to the source of `original` (the offending IPv4 packet,
/// starting at its header; Ethernet padding past its `total_len` is ignored), quoting as much of
/// it as fits in 576 bytes of IP.
pub fn icmp_error(
    buf: &mut [u8],
    l2: &L2,
    router_ip: Ipv4Addr,
    repr: &Icmpv4Repr,
    original: &[u8],
) -> Result<usize, BuildError> {
    let orig = Ipv4Packet::new_checked(original)?;
    let whole = original
        .get(..usize::from(orig.total_len()))
        .unwrap_or(original);
    let max_quote = ICMP_ERROR_MAX_IP_LEN - 20 - wire::icmpv4::HEADER_LEN;
    let quote = whole.get(..max_quote).unwrap_or(whole);
    let icmp_len = wire::icmpv4::HEADER_LEN + quote.len();
    let mut ip = Ipv4Repr::new(
        router_ip,
        orig.src(),
        altroute_flow::proto::ICMP,
        DEFAULT_TTL,
        icmp_len as u16,
    );
    ip.tos = 0xc0; // internetwork control (RFC 1812 §4.3.2.5)
    let l4 = eth_ip(buf, l2, &ip)?;
    let end = l4 + icmp_len;
    let msg = buf.get_mut(l4..end).ok_or(BuildError::BufferTooSmall {
        needed: end,
        got: 0,
    })?;
    repr.emit(msg)?;
    if let Some(d) = msg.get_mut(wire::icmpv4::HEADER_LEN..) {
        d.copy_from_slice(quote);
    }
    Icmpv4Packet::new_unchecked(msg).fill_checksum();
    pad(buf, end)
}

/// ICMP time exceeded in transit (type 11 code 0) about `original`.
pub fn icmp_time_exceeded(
    buf: &mut [u8],
    l2: &L2,
    router_ip: Ipv4Addr,
    original: &[u8],
) -> Result<usize, BuildError> {
    icmp_error(
        buf,
        l2,
        router_ip,
        &Icmpv4Repr::TimeExceeded { code: 0 },
        original,
    )
}

/// ICMP fragmentation needed and DF set (type 3 code 4) with the next-hop MTU (RFC 1191).
pub fn icmp_frag_needed(
    buf: &mut [u8],
    l2: &L2,
    router_ip: Ipv4Addr,
    next_hop_mtu: u16,
    original: &[u8],
) -> Result<usize, BuildError> {
    icmp_error(
        buf,
        l2,
        router_ip,
        &Icmpv4Repr::DstUnreachable {
            code: UnreachableCode::FragNeeded,
            next_hop_mtu,
        },
        original,
    )
}

/// ICMP destination unreachable, communication administratively prohibited (type 3 code 13).
pub fn icmp_admin_prohibited(
    buf: &mut [u8],
    l2: &L2,
    router_ip: Ipv4Addr,
    original: &[u8],
) -> Result<usize, BuildError> {
    icmp_error(
        buf,
        l2,
        router_ip,
        &Icmpv4Repr::DstUnreachable {
            code: UnreachableCode::AdminProhibited,
            next_hop_mtu: 0,
        },
        original,
    )
}

/// An ICMP echo reply to `request` (an IPv4 echo request addressed to the router, starting at
/// its IP header): addresses swapped, same identifier, sequence number and data. IP options of
/// the request are not echoed.
pub fn icmp_echo_reply(buf: &mut [u8], l2: &L2, request: &[u8]) -> Result<usize, BuildError> {
    let p = Ipv4Packet::new_checked(request)?;
    if p.proto() != altroute_flow::proto::ICMP || p.is_fragment() {
        return Err(BuildError::NotAnswerable("not an unfragmented ICMP packet"));
    }
    let m = Icmpv4Packet::new_checked(p.payload())?;
    let Icmpv4Repr::EchoRequest { ident, seq } = Icmpv4Repr::parse(&m) else {
        return Err(BuildError::NotAnswerable("not an echo request"));
    };
    let data = m.data();
    let icmp_len = wire::icmpv4::HEADER_LEN + data.len();
    let ip = Ipv4Repr::new(
        p.dst(),
        p.src(),
        altroute_flow::proto::ICMP,
        DEFAULT_TTL,
        u16::try_from(icmp_len).map_err(|_| BuildError::NotAnswerable("too long"))?,
    );
    let l4 = eth_ip(buf, l2, &ip)?;
    let end = l4 + icmp_len;
    let msg = buf.get_mut(l4..end).ok_or(BuildError::BufferTooSmall {
        needed: end,
        got: 0,
    })?;
    Icmpv4Repr::EchoReply { ident, seq }.emit(msg)?;
    if let Some(d) = msg.get_mut(wire::icmpv4::HEADER_LEN..) {
        d.copy_from_slice(data);
    }
    Icmpv4Packet::new_unchecked(msg).fill_checksum();
    pad(buf, end)
}

/// An ICMP echo request (for gateway health probes).
#[allow(clippy::too_many_arguments)]
pub fn icmp_echo_request(
    buf: &mut [u8],
    l2: &L2,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ident: u16,
    seq: u16,
    ttl: u8,
    payload: &[u8],
) -> Result<usize, BuildError> {
    let icmp_len = wire::icmpv4::HEADER_LEN + payload.len();
    let ip = Ipv4Repr::new(
        src,
        dst,
        altroute_flow::proto::ICMP,
        ttl,
        u16::try_from(icmp_len)
            .ok()
            .filter(|l| usize::from(*l) + 20 <= usize::from(u16::MAX))
            .ok_or(BuildError::NotAnswerable("payload too long"))?,
    );
    let l4 = eth_ip(buf, l2, &ip)?;
    let end = l4 + icmp_len;
    let msg = buf.get_mut(l4..end).ok_or(BuildError::BufferTooSmall {
        needed: end,
        got: 0,
    })?;
    Icmpv4Repr::EchoRequest { ident, seq }.emit(msg)?;
    if let Some(d) = msg.get_mut(wire::icmpv4::HEADER_LEN..) {
        d.copy_from_slice(payload);
    }
    Icmpv4Packet::new_unchecked(msg).fill_checksum();
    pad(buf, end)
}

/// A TCP RST answering `segment` (an IPv4 TCP packet starting at its IP header), per RFC 9293
/// §3.10.7.1 (RFC 793 "Reset Generation"):
///
/// * if the segment has ACK: `<SEQ=SEG.ACK><CTL=RST>`;
/// * otherwise: `<SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>`, where SEG.LEN counts SYN and FIN.
///
/// Addresses and ports are swapped; no options, window 0. A RST is never answered
/// ([`BuildError::NotAnswerable`]).
pub fn tcp_rst(buf: &mut [u8], l2: &L2, segment: &[u8]) -> Result<usize, BuildError> {
    let p = Ipv4Packet::new_checked(segment)?;
    if p.proto() != altroute_flow::proto::TCP || p.is_fragment() {
        return Err(BuildError::NotAnswerable("not an unfragmented TCP segment"));
    }
    let t = TcpPacket::new_checked(p.payload())?;
    let f = t.flags();
    if f.rst() {
        return Err(BuildError::NotAnswerable("segment is a RST"));
    }
    let (seq, ack, flags) = if f.ack() {
        (t.ack(), 0, TcpFlags::RST)
    } else {
        (
            0,
            t.seq().wrapping_add(t.segment_len()),
            TcpFlags::RST | TcpFlags::ACK,
        )
    };
    let r = TcpRepr {
        src_port: t.dst_port(),
        dst_port: t.src_port(),
        seq,
        ack,
        flags: TcpFlags(flags),
        window: 0,
        urgent: 0,
        options: wire::TcpOptions::EMPTY,
    };
    let tcp_len = r.header_len();
    let ip = Ipv4Repr::new(
        p.dst(),
        p.src(),
        altroute_flow::proto::TCP,
        DEFAULT_TTL,
        tcp_len as u16,
    );
    let l4 = eth_ip(buf, l2, &ip)?;
    let end = l4 + tcp_len;
    let seg = buf.get_mut(l4..end).ok_or(BuildError::BufferTooSmall {
        needed: end,
        got: 0,
    })?;
    r.emit(seg)?;
    TcpPacket::new_unchecked(seg).fill_checksum(ip.src, ip.dst);
    pad(buf, end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checksum;
    use crate::fast::{self, FastParse};

    const L: L2 = L2 {
        src: MacAddr([2, 0, 0, 0, 0, 1]),
        dst: MacAddr([2, 0, 0, 0, 0, 2]),
        vlan: None,
    };

    fn syn_ip() -> Vec<u8> {
        let mut ip = vec![
            0x45, 0, 0, 40, 0x12, 0x34, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 2, 203, 0, 113,
            10, // ip
            0x9c, 0x40, 0x01, 0xbb, 0, 0, 0x03, 0xe8, 0, 0, 0, 0, 0x50, 0x02, 0xfa, 0xf0, 0, 0, 0,
            0,
        ];
        let c = checksum::checksum(&ip[..20]);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        ip
    }

    #[test]
    fn rst_for_syn() {
        let mut b = [0u8; 128];
        let n = tcp_rst(&mut b, &L, &syn_ip()).unwrap();
        assert_eq!(n, 60);
        let FastParse::Fast(m) = fast::parse(
            &b[..n],
            fast::FastOptions {
                verify_ipv4_checksum: true,
            },
        ) else {
            panic!()
        };
        assert_eq!(m.key.sport, 443);
        assert_eq!(m.key.dport, 40000);
        assert_eq!(m.tcp_flags.0, TcpFlags::RST | TcpFlags::ACK);
        let t = TcpPacket::new_checked(&b[34..54]).unwrap();
        assert_eq!((t.seq(), t.ack()), (0, 1001));
        assert!(t.verify_checksum(Ipv4Addr::new(203, 0, 113, 10), Ipv4Addr::new(10, 0, 0, 2)));
        let mut rst = syn_ip();
        rst[33] = TcpFlags::RST;
        assert!(matches!(
            tcp_rst(&mut b, &L, &rst),
            Err(BuildError::NotAnswerable(_))
        ));
        assert!(matches!(
            tcp_rst(&mut b[..40], &L, &syn_ip()),
            Err(BuildError::BufferTooSmall { .. })
        ));
    }

    #[test]
    fn icmp_error_quotes_at_most_576() {
        let mut big = vec![0u8; 1500];
        big[..20].copy_from_slice(&syn_ip()[..20]);
        big[2..4].copy_from_slice(&1500u16.to_be_bytes());
        big[9] = 17;
        let mut b = [0u8; 2000];
        let n = icmp_frag_needed(&mut b, &L, Ipv4Addr::new(192, 0, 2, 1), 1400, &big).unwrap();
        assert_eq!(n, 14 + 576);
        assert!(may_send_icmp_error(&big));
        // Never about an ICMP error.
        let mut e = [0u8; 128];
        let m = icmp_time_exceeded(&mut e, &L, Ipv4Addr::new(192, 0, 2, 1), &syn_ip()).unwrap();
        assert!(!may_send_icmp_error(&e[14..m]));
    }
}
