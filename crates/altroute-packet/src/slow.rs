//! The slow-path parser: every frame the [fast path](crate::fast) does not take, parsed fully.
//!
//! It handles IPv4 options, fragments (first and later), ARP, ICMP queries other than plain
//! echo, and ICMP errors, whose data is the quoted, usually **truncated** offending datagram: its
//! IPv4 header and at least the first 8 bytes of its L4 header (RFC 792; RFC 1812 routers quote
//! more). For an error, [`Embedded`] gives the quoted datagram's [`FlowKey`] and the frame offsets
//! of every field an RFC 5508 translation rewrites (quoted addresses, ports or ICMP identifier,
//! quoted IP and L4 checksums, the outer ICMP checksum), so the pipeline can translate it with the
//! [`checksum`](crate::checksum) helpers without re-parsing.
//!
//! Validation of the outer Ethernet and IPv4 headers uses the [`wire`] views, so a
//! malformed frame gets the same [`DropReason`] here as on the fast path; the IPv4 header checksum
//! is always verified. The L4 headers and the quoted datagram are sliced with etherparse
//! (`TcpSlice`, `UdpSlice`, `Icmpv4Slice`, and the lax `LaxIpv4Slice` made for cut-off packets).
//!
//! Allocation-free, but it is not meant to be fast (≈ 50–100 ns per frame).

use altroute_flow::{FlowKey, proto};
use core::net::Ipv4Addr;
use etherparse::{Icmpv4Slice, LaxIpv4Slice, TcpSlice, UdpSlice};

use crate::drop::DropReason;
use crate::wire::{
    self, ArpPacket, ArpRepr, EtherType, EthernetFrame, Icmpv4Packet, Icmpv4Repr, Ipv4Packet,
    Ipv4Repr, TcpFlags, VlanTci, icmpv4::types,
};

/// A frame the slow path understood.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlowFrame {
    /// Offset of the L3 header (14, or 18 with a VLAN tag).
    pub l3_offset: usize,
    /// The 802.1Q tag, if any.
    pub vlan: Option<VlanTci>,
    /// What the frame carries.
    pub kind: SlowKind,
}

/// The L3 content of a [`SlowFrame`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlowKind {
    /// An Ethernet/IPv4 ARP packet.
    Arp(ArpRepr),
    /// An IPv6 packet: not parsed (altroute forwards IPv4 only for now).
    Ipv6,
    /// An IPv4 packet.
    Ipv4(SlowIpv4),
}

/// An IPv4 packet parsed by the slow path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlowIpv4 {
    /// The header, options and fragment fields included.
    pub ip: Ipv4Repr,
    /// Header length (IHL × 4).
    pub header_len: usize,
    /// Offset of the L4 header (or of the fragment's data) in the frame.
    pub l4_offset: usize,
    /// The IPv4 `total_len`.
    pub total_len: u16,
    /// The L4 content.
    pub l4: SlowL4,
}

impl SlowIpv4 {
    /// True for any fragment (first or later).
    #[inline]
    pub fn is_fragment(&self) -> bool {
        self.ip.more_frags || self.ip.frag_offset != 0
    }
    /// True for a first fragment (offset 0, MF set): it has the L4 header, later ones do not.
    #[inline]
    pub fn is_first_fragment(&self) -> bool {
        self.ip.more_frags && self.ip.frag_offset == 0
    }
    /// True when the header carries a loose or strict source route option.
    #[inline]
    pub fn is_source_routed(&self) -> bool {
        wire::ipv4::source_routed(self.ip.options.as_slice())
    }
}

/// The L4 content of a [`SlowIpv4`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlowL4 {
    /// A non-first fragment: no L4 header here; the flow is found through fragment tracking
    /// (source, destination, protocol, identification).
    LaterFragment,
    /// TCP (possibly a first fragment).
    Tcp {
        /// The flow key.
        key: FlowKey,
        /// The flags.
        flags: TcpFlags,
    },
    /// UDP (possibly a first fragment, whose length field covers the whole datagram).
    Udp {
        /// The flow key.
        key: FlowKey,
    },
    /// ICMP echo request or reply.
    IcmpQuery {
        /// The flow key (request: id in `sport`; reply: id in `dport`).
        key: FlowKey,
        /// True for a request.
        request: bool,
    },
    /// An ICMP error with its quoted datagram.
    IcmpError {
        /// The error's header (type, code, next-hop MTU).
        repr: Icmpv4Repr,
        /// The quoted datagram.
        inner: Embedded,
    },
    /// Any other ICMP message.
    IcmpOther {
        /// Its header.
        repr: Icmpv4Repr,
    },
    /// Another IP protocol: the key has ports 0.
    Other {
        /// The flow key (ports 0).
        key: FlowKey,
    },
}

/// The datagram quoted inside an ICMP error, with the frame offsets an RFC 5508 translation
/// needs.
///
/// Every offset is absolute in the frame. Relative to the start of the ICMP message they are
/// all even, so [`checksum::update16`](crate::checksum::update16) /
/// [`update32`](crate::checksum::update32) apply to the outer ICMP checksum for each rewritten
/// field (the ICMP checksum covers the whole quote).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Embedded {
    /// The quoted datagram's key, in the direction it travelled (from the original sender to
    /// the original destination; the ICMP error travels the other way). Ports are 0 when the
    /// quote is of a non-first fragment or of a protocol without ports.
    pub key: FlowKey,
    /// Offset of the outer ICMP checksum.
    pub icmp_checksum_offset: usize,
    /// Offset of the quoted IPv4 header.
    pub l3_offset: usize,
    /// The quoted header's length (IHL × 4).
    pub header_len: usize,
    /// Offset of the quoted L4 header.
    pub l4_offset: usize,
    /// Bytes of the quoted L4 header present in the frame (at least 8).
    pub l4_len: usize,
    /// The quoted `total_len` (of the original datagram, not of the quote).
    pub total_len: u16,
    /// Offset of the quoted source port (TCP/UDP) or of the identifier of a quoted echo
    /// request; `None` otherwise.
    pub src_port_offset: Option<usize>,
    /// Offset of the quoted destination port (TCP/UDP) or of the identifier of a quoted echo
    /// reply; `None` otherwise.
    pub dst_port_offset: Option<usize>,
    /// Offset of the quoted L4 checksum when all of it is inside the quote (UDP and ICMP: always;
    /// TCP: only if the quote has at least 18 bytes of TCP header).
    pub l4_checksum_offset: Option<usize>,
}

impl Embedded {
    /// Offset of the quoted source address.
    #[inline]
    pub const fn ip_src_offset(&self) -> usize {
        self.l3_offset + wire::ipv4::SRC_OFFSET
    }
    /// Offset of the quoted destination address.
    #[inline]
    pub const fn ip_dst_offset(&self) -> usize {
        self.l3_offset + wire::ipv4::DST_OFFSET
    }
    /// Offset of the quoted IPv4 header checksum.
    #[inline]
    pub const fn ip_checksum_offset(&self) -> usize {
        self.l3_offset + wire::ipv4::CHECKSUM_OFFSET
    }
}

/// Maps a [`wire::Error`] from the outer headers to the drop reason the fast path would give: by
/// layer, a length error or the one kind of field each view rejects.
fn drop_for(e: &wire::Error, ip_len: usize) -> DropReason {
    use wire::{Error, Layer};
    let short = matches!(e, Error::Len(_));
    match e.layer() {
        // The Ethernet view rejects a short frame and a second (QinQ) tag, nothing else.
        Layer::Ethernet | Layer::Vlan if short => DropReason::Runt,
        Layer::Ethernet | Layer::Vlan => DropReason::Qinq,
        // The ARP view: too short, or hardware or protocol other than Ethernet and IPv4.
        Layer::Arp if short => DropReason::ArpTruncated,
        Layer::Arp => DropReason::ArpUnsupported,
        Layer::Ipv4 => match e {
            Error::Len(_) => DropReason::Ipv4Truncated,
            Error::Field {
                field: "version", ..
            } => DropReason::Ipv4BadVersion,
            Error::Field { field: "ihl", .. } => DropReason::Ipv4BadIhl,
            Error::Field { value: 0, .. } if ip_len > usize::from(u16::MAX) => DropReason::TooBig,
            // The total length, the one other field the IPv4 view checks.
            _ => DropReason::Ipv4BadTotalLength,
        },
        Layer::Tcp if !short => DropReason::TcpBadHeaderLength,
        Layer::Udp if !short => DropReason::UdpBadLength,
        Layer::Tcp | Layer::Udp | Layer::Icmpv4 => DropReason::L4Truncated,
    }
}

/// Parses a frame the fast path did not accept. `Err` is the drop reason.
pub fn parse(frame: &[u8]) -> Result<SlowFrame, DropReason> {
    let eth = EthernetFrame::new_checked(frame).map_err(|e| drop_for(&e, 0))?;
    let l3_offset = eth.header_len();
    let vlan = eth.vlan();
    let l3 = eth.payload();
    let kind = match eth.ethertype() {
        EtherType::ARP => {
            let p = ArpPacket::new_checked(l3).map_err(|e| drop_for(&e, 0))?;
            SlowKind::Arp(ArpRepr::parse(&p))
        }
        EtherType::IPV6 => SlowKind::Ipv6,
        EtherType::IPV4 => SlowKind::Ipv4(parse_ipv4(l3, l3_offset)?),
        _ => return Err(DropReason::UnsupportedEthertype),
    };
    Ok(SlowFrame {
        l3_offset,
        vlan,
        kind,
    })
}

/// Parses an IPv4 packet found at `base` in the frame.
fn parse_ipv4(l3: &[u8], base: usize) -> Result<SlowIpv4, DropReason> {
    let p = Ipv4Packet::new_checked(l3).map_err(|e| drop_for(&e, l3.len()))?;
    if !p.verify_checksum() {
        return Err(DropReason::Ipv4BadChecksum);
    }
    let ip = Ipv4Repr::parse(&p);
    let header_len = p.header_len();
    let l4_offset = base + header_len;
    let payload = p.payload();
    let later_fragment = ip.frag_offset != 0;
    let first_fragment = ip.more_frags && !later_fragment;
    // A first fragment must hold the whole L4 header (RFC 1858 tiny-fragment rule).
    let short = || {
        if first_fragment {
            DropReason::BadFragment
        } else {
            DropReason::L4Truncated
        }
    };
    let key = |proto, s, d| FlowKey::v4(ip.src, ip.dst, proto, s, d);
    let l4 = if later_fragment {
        SlowL4::LaterFragment
    } else {
        match ip.proto {
            proto::TCP => {
                let t = TcpSlice::from_slice(payload).map_err(|e| match e {
                    etherparse::err::tcp::HeaderSliceError::Len(l) if l.len < 20 => short(),
                    _ if first_fragment => DropReason::BadFragment,
                    _ => DropReason::TcpBadHeaderLength,
                })?;
                let flags = payload.get(13).copied().unwrap_or(0);
                SlowL4::Tcp {
                    key: key(proto::TCP, t.source_port(), t.destination_port()),
                    flags: TcpFlags(flags),
                }
            }
            proto::UDP => {
                let u = if first_fragment {
                    UdpSlice::from_slice_lax(payload).map_err(|_| short())?
                } else {
                    let u = UdpSlice::from_slice(payload).map_err(|_| {
                        if payload.len() < 8 {
                            DropReason::L4Truncated
                        } else {
                            DropReason::UdpBadLength
                        }
                    })?;
                    if u.length() < 8 {
                        return Err(DropReason::UdpBadLength);
                    }
                    u
                };
                SlowL4::Udp {
                    key: key(proto::UDP, u.source_port(), u.destination_port()),
                }
            }
            proto::ICMP => {
                let m = Icmpv4Slice::from_slice(payload).map_err(|_| short())?;
                parse_icmp(&m, payload, &ip, l4_offset)?
            }
            p => SlowL4::Other { key: key(p, 0, 0) },
        }
    };
    Ok(SlowIpv4 {
        ip,
        header_len,
        l4_offset,
        total_len: p.total_len(),
        l4,
    })
}

fn parse_icmp(
    m: &Icmpv4Slice<'_>,
    payload: &[u8],
    ip: &Ipv4Repr,
    l4_offset: usize,
) -> Result<SlowL4, DropReason> {
    let repr = Icmpv4Repr::parse(&Icmpv4Packet::new_unchecked(m.slice()));
    Ok(match repr {
        Icmpv4Repr::EchoRequest { ident, .. } => SlowL4::IcmpQuery {
            key: FlowKey::v4(ip.src, ip.dst, proto::ICMP, ident, 0),
            request: true,
        },
        Icmpv4Repr::EchoReply { ident, .. } => SlowL4::IcmpQuery {
            key: FlowKey::v4(ip.src, ip.dst, proto::ICMP, 0, ident),
            request: false,
        },
        _ if types::is_error(m.type_u8()) => SlowL4::IcmpError {
            repr,
            inner: parse_embedded(payload.get(8..).unwrap_or(&[]), l4_offset)?,
        },
        _ => SlowL4::IcmpOther { repr },
    })
}

/// Parses the datagram quoted by an ICMP error. `quote` starts at ICMP byte 8, which is at
/// `icmp_offset + 8` in the frame.
fn parse_embedded(quote: &[u8], icmp_offset: usize) -> Result<Embedded, DropReason> {
    let (s, _) = LaxIpv4Slice::from_slice(quote).map_err(|_| DropReason::IcmpBadEmbedded)?;
    let h = s.header();
    let header_len = h.slice().len();
    let l4 = quote.get(header_len..).unwrap_or(&[]);
    if l4.len() < 8 {
        return Err(DropReason::IcmpBadEmbedded);
    }
    let l3_offset = icmp_offset + 8;
    let l4_offset = l3_offset + header_len;
    let (src, dst): (Ipv4Addr, Ipv4Addr) = (h.source_addr(), h.destination_addr());
    let p = h.protocol().0;
    let at = |o: usize| Some(l4_offset + o);
    let csum_if = |o: usize| (l4.len() >= o + 2).then_some(l4_offset + o);
    let rd16 = |o| wire::rd16(l4, o);
    let mut e = Embedded {
        key: FlowKey::v4(src, dst, p, 0, 0),
        icmp_checksum_offset: icmp_offset + wire::icmpv4::CHECKSUM_OFFSET,
        l3_offset,
        header_len,
        l4_offset,
        l4_len: l4.len(),
        total_len: h.total_len(),
        src_port_offset: None,
        dst_port_offset: None,
        l4_checksum_offset: None,
    };
    if h.fragments_offset().value() != 0 {
        return Ok(e);
    }
    match p {
        proto::TCP | proto::UDP => {
            e.key = FlowKey::v4(src, dst, p, rd16(0), rd16(2));
            e.src_port_offset = at(0);
            e.dst_port_offset = at(2);
            e.l4_checksum_offset = csum_if(if p == proto::TCP { 16 } else { 6 });
        }
        proto::ICMP => {
            let id = rd16(4);
            e.l4_checksum_offset = csum_if(2);
            match (wire::rd8(l4, 0), wire::rd8(l4, 1)) {
                (types::ECHO_REQUEST, 0) => {
                    e.key = FlowKey::v4(src, dst, p, id, 0);
                    e.src_port_offset = at(4);
                }
                (types::ECHO_REPLY, 0) => {
                    e.key = FlowKey::v4(src, dst, p, 0, id);
                    e.dst_port_offset = at(4);
                }
                _ => {}
            }
        }
        _ => {}
    }
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checksum;

    /// Time exceeded from 198.51.100.7 to 192.0.2.1 quoting a UDP datagram
    /// 192.0.2.1:61000 -> 203.0.113.10:33434 (traceroute), untagged.
    fn time_exceeded() -> Vec<u8> {
        let mut inner = vec![
            0x45, 0, 0, 60, 0x00, 0x01, 0, 0, 1, 17, 0, 0, 192, 0, 2, 1, 203, 0, 113,
            10, // ip
            0xee, 0x48, 0x82, 0x9a, 0, 40, 0x12, 0x34, // udp, first 8 bytes
        ];
        let c = checksum::checksum(&inner[..20]);
        inner[10..12].copy_from_slice(&c.to_be_bytes());
        let mut icmp = vec![11, 0, 0, 0, 0, 0, 0, 0];
        icmp.extend_from_slice(&inner);
        let c = checksum::checksum(&icmp);
        icmp[2..4].copy_from_slice(&c.to_be_bytes());
        let tl = (20 + icmp.len()) as u16;
        let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 8, 0];
        let mut ip = vec![
            0x45, 0xc0, 0, 0, 0, 0, 0, 0, 64, 1, 0, 0, 198, 51, 100, 7, 192, 0, 2, 1,
        ];
        ip[2..4].copy_from_slice(&tl.to_be_bytes());
        let c = checksum::checksum(&ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&ip);
        f.extend_from_slice(&icmp);
        f
    }

    #[test]
    fn icmp_error_embedded_udp() {
        let f = time_exceeded();
        let s = parse(&f).unwrap();
        let SlowKind::Ipv4(ip) = s.kind else { panic!() };
        let SlowL4::IcmpError { repr, inner } = ip.l4 else {
            panic!("{:?}", ip.l4)
        };
        assert_eq!(repr, Icmpv4Repr::TimeExceeded { code: 0 });
        assert_eq!(
            inner.key,
            FlowKey::v4(
                Ipv4Addr::new(192, 0, 2, 1),
                Ipv4Addr::new(203, 0, 113, 10),
                17,
                61000,
                33434
            )
        );
        assert_eq!(inner.icmp_checksum_offset, 36);
        assert_eq!(inner.l3_offset, 42);
        assert_eq!(inner.l4_offset, 62);
        assert_eq!(inner.src_port_offset, Some(62));
        assert_eq!(inner.dst_port_offset, Some(64));
        assert_eq!(inner.l4_checksum_offset, Some(68));
        assert_eq!(inner.ip_src_offset(), 54);
        assert_eq!(inner.total_len, 60);
        assert_eq!((inner.ip_src_offset() - 34) % 2, 0);

        // A truncated quote is a drop.
        let mut t = f[..f.len() - 1].to_vec();
        let tl = (t.len() - 14) as u16;
        t[16..18].copy_from_slice(&tl.to_be_bytes());
        t[24..26].copy_from_slice(&[0, 0]);
        let c = checksum::checksum(&t[14..34]);
        t[24..26].copy_from_slice(&c.to_be_bytes());
        assert_eq!(parse(&t), Err(DropReason::IcmpBadEmbedded));
    }

    /// An RFC 5508 translation done with nothing but the reported offsets and the checksum
    /// helpers: the inbound error for a NATed flow is rewritten back to the inside host, and
    /// every checksum verifies by full recompute afterwards.
    #[test]
    fn rfc5508_translation_with_offsets() {
        let mut f = time_exceeded();
        let SlowKind::Ipv4(ip) = parse(&f).unwrap().kind else {
            panic!()
        };
        let SlowL4::IcmpError { inner: e, .. } = ip.l4 else {
            panic!()
        };
        let (public, inside) = (Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(10, 0, 0, 2));
        let (pub_port, in_port) = (61000u16, 40000u16);
        let l3 = 14;
        let word = |f: &[u8], at: usize| wire::rd16(f, at);
        // Outer destination: public -> inside; outer IP checksum (addresses only).
        let d = checksum::Delta::addr(public, inside);
        wire::wr(&mut f, l3 + 16, &inside.octets());
        let c = d.apply_ip(word(&f, l3 + 10));
        wire::wr16(&mut f, l3 + 10, c);
        // Quoted source address + port, the quoted IP and UDP checksums, and for each rewritten
        // word the outer ICMP checksum (it covers the whole quote; no pseudo-header).
        let mut icmp = word(&f, e.icmp_checksum_offset);
        let old_ip_csum = word(&f, e.ip_checksum_offset());
        let new_ip_csum = d.apply_ip(old_ip_csum);
        let sp = e.src_port_offset.unwrap();
        let uc = e.l4_checksum_offset.unwrap();
        let old_udp = word(&f, uc);
        let new_udp = checksum::Delta::new(public, inside, pub_port, in_port).apply_udp(old_udp);
        icmp = checksum::update32(icmp, public, inside);
        icmp = checksum::update16(icmp, pub_port, in_port);
        icmp = checksum::update16(icmp, old_ip_csum, new_ip_csum);
        icmp = checksum::update16(icmp, old_udp, new_udp);
        wire::wr(&mut f, e.ip_src_offset(), &inside.octets());
        wire::wr16(&mut f, sp, in_port);
        wire::wr16(&mut f, e.ip_checksum_offset(), new_ip_csum);
        wire::wr16(&mut f, uc, new_udp);
        wire::wr16(&mut f, e.icmp_checksum_offset, icmp);
        // Full recomputes.
        assert!(checksum::verify(&f[l3..l3 + 20]), "outer IP");
        assert!(checksum::verify(&f[ip.l4_offset..]), "ICMP");
        assert!(checksum::verify(&f[e.l3_offset..e.l4_offset]), "quoted IP");
        let SlowKind::Ipv4(after) = parse(&f).unwrap().kind else {
            panic!()
        };
        let SlowL4::IcmpError { inner, .. } = after.l4 else {
            panic!()
        };
        assert_eq!(inner.key.src_v4(), Some(inside));
        assert_eq!(inner.key.sport, in_port);
        assert_eq!(after.ip.dst, inside);
    }

    #[test]
    fn drops_match_fast_path() {
        let f = time_exceeded();
        for n in 0..f.len() {
            let fast = crate::fast::parse(&f[..n], crate::FastOptions::default());
            let slow = parse(&f[..n]);
            if let crate::FastParse::Drop(r) = fast {
                assert_eq!(slow, Err(r), "{n}");
            }
        }
        let mut bad = f.clone();
        bad[25] ^= 1;
        assert_eq!(parse(&bad), Err(DropReason::Ipv4BadChecksum));
    }

    #[test]
    fn arp_and_fragments() {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&[2, 0, 0, 0, 0, 1, 8, 6]);
        f.extend_from_slice(&[
            0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 1, 10, 0, 0, 2, 0, 0, 0, 0, 0, 0, 10, 0, 0, 1,
        ]);
        let s = parse(&f).unwrap();
        assert!(matches!(s.kind, SlowKind::Arp(a) if a.tpa == Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(parse(&f[..41]), Err(DropReason::ArpTruncated));

        // A later fragment of a UDP datagram.
        let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 8, 0];
        let mut ip = vec![
            0x45, 0, 0, 28, 0, 9, 0, 185, 64, 17, 0, 0, 10, 0, 0, 2, 192, 0, 2, 1, 1, 2, 3, 4, 5,
            6, 7, 8,
        ];
        let c = checksum::checksum(&ip[..20]);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&ip);
        let SlowKind::Ipv4(i) = parse(&f).unwrap().kind else {
            panic!()
        };
        assert_eq!(i.l4, SlowL4::LaterFragment);
        assert!(i.is_fragment() && !i.is_first_fragment());
        assert_eq!(i.ip.frag_offset, 185);
    }

    #[test]
    fn real_captures() {
        use crate::wire::captured::{IGMP_RA, UNREACH};
        let SlowKind::Ipv4(ip) = parse(&UNREACH).unwrap().kind else {
            panic!()
        };
        let SlowL4::IcmpError { repr, inner } = ip.l4 else {
            panic!()
        };
        assert!(matches!(repr, Icmpv4Repr::DstUnreachable { .. }));
        assert_eq!(
            inner.key.to_string(),
            "udp 131.151.1.146:7002 -> 131.151.32.21:1799"
        );
        assert_eq!(
            (inner.l3_offset, inner.l4_offset, inner.l4_len),
            (42, 62, 44)
        );
        assert_eq!(inner.l4_checksum_offset, Some(68));
        assert_eq!(wire::rd16(&UNREACH, 68), 0x324f);
        let SlowKind::Ipv4(ip) = parse(&IGMP_RA).unwrap().kind else {
            panic!()
        };
        assert_eq!((ip.header_len, ip.l4_offset, ip.total_len), (24, 38, 32));
        assert!(matches!(ip.l4, SlowL4::Other { key } if key.proto == 2));
    }

    #[test]
    fn header_field_errors_map_like_the_fast_path() {
        let f = time_exceeded();
        for (at, v, want) in [
            (14, 0x55, DropReason::Ipv4BadVersion),
            (14, 0x44, DropReason::Ipv4BadIhl),
            (17, 19, DropReason::Ipv4BadTotalLength),
        ] {
            let mut b = f.clone();
            b[at] = v;
            if at == 17 {
                b[16] = 0;
            }
            assert_eq!(parse(&b), Err(want));
            assert_eq!(
                crate::fast::parse(&b, crate::FastOptions::default()),
                crate::FastParse::Drop(want)
            );
        }
    }
}
