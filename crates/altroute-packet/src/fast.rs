//! The fast-path parser: one pass over fixed offsets for the frames that make up nearly all
//! traffic, classifying everything else for the [slow path](crate::slow) or a counted
//! [drop](crate::drop::DropReason).
//!
//! # What the fast path accepts
//!
//! Ethernet II, optionally one 802.1Q tag, then IPv4 with IHL 5 (no options) that is **not a
//! fragment at all** (MF clear and offset 0), carrying:
//!
//! * TCP with a data offset that fits inside `total_len`,
//! * UDP with `8 ≤ length ≤` the IP payload length (a shorter UDP length leaves trailing bytes
//!   inside the IP payload: legal, accepted),
//! * ICMP echo request or echo reply (code 0).
//!
//! First fragments go to the slow path too: translating a fragmented datagram needs fragment
//! tracking state (later fragments carry no ports), the UDP length of a first fragment exceeds
//! its IP payload, and fragments are rare enough that the fast path should not pay a branch for
//! them. So [`FastFrame::key`] always describes a whole datagram.
//!
//! # What it does not decide
//!
//! TTL expiry, martian or private addresses, zero ports, L4 checksums and TCP flag sanity are the
//! pipeline's decisions (they depend on the direction and on whether the frame is for the router
//! itself); the parser only reports the fields.
//!
//! # Checks, in order (the first failing one decides)
//!
//! | check | outcome |
//! |---|---|
//! | < 14 bytes (< 18 with a tag) | `Drop(Runt)` |
//! | 802.1ad/0x9100 outer TPID, or a second tag | `Drop(Qinq)` |
//! | EtherType ARP / IPv6 | `Slow(Arp)` / `Slow(Ipv6)` |
//! | any other EtherType | `Drop(UnsupportedEthertype)` |
//! | < 20 bytes of IP | `Drop(Ipv4Truncated)` |
//! | version ≠ 4 | `Drop(Ipv4BadVersion)` |
//! | IHL < 5 | `Drop(Ipv4BadIhl)` |
//! | IHL > 5 | `Slow(Ipv4Options)` |
//! | `total_len` 0 on a frame with more than 65535 bytes of IP | `Drop(TooBig)` |
//! | `total_len` < 20 | `Drop(Ipv4BadTotalLength)` |
//! | `total_len` > bytes present | `Drop(Ipv4Truncated)` |
//! | MF set or offset ≠ 0 | `Slow(Fragment)` |
//! | TCP/UDP/ICMP header shorter than its minimum | `Drop(L4Truncated)` |
//! | TCP data offset < 5 or past `total_len` | `Drop(TcpBadHeaderLength)` |
//! | UDP length < 8 or > IP payload | `Drop(UdpBadLength)` |
//! | ICMP error type / other ICMP | `Slow(IcmpError)` / `Slow(IcmpOther)` |
//! | other IP protocol | `Slow(OtherProtocol)` |
//! | header checksum wrong (only with [`FastOptions::verify_ipv4_checksum`]) | `Drop(Ipv4BadChecksum)` |
//!
//! The header checksum is checked last, on the 20 header bytes already loaded, so frames bound
//! for the slow path or a drop never pay for it (the slow path always verifies it), and callers
//! whose NIC already verified it (e.g. `TP_STATUS_CSUM_VALID`) can turn it off.

use altroute_flow::{FlowKey, proto};

use crate::drop::DropReason;
use crate::wire::{EtherType, TcpFlags, VlanTci};

/// Options of [`parse`]. The default verifies nothing beyond lengths.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FastOptions {
    /// Verify the IPv4 header checksum of accepted frames. It is summed from the 20 header
    /// bytes the parser already holds, so it costs well under a nanosecond per frame.
    pub verify_ipv4_checksum: bool,
}

/// The role of an ICMP query message in its exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IcmpQuery {
    /// Not ICMP.
    None,
    /// Echo request: the identifier is in [`FlowKey::sport`], `dport` is 0.
    Request,
    /// Echo reply: the identifier is in [`FlowKey::dport`], `sport` is 0.
    Reply,
}

/// An accepted frame: everything the pipeline needs to look up the flow and rewrite the frame
/// in place, as offsets into the frame it came from. `Copy`, at most 56 bytes (offsets are `u16`: an
/// accepted frame's IP packet ends below 64 KiB + 18).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FastFrame {
    /// The flow key of this direction (ports in host order; the ICMP convention of
    /// [`FlowKey`] for echo).
    pub key: FlowKey,
    /// Offset of the IPv4 header: 14, or 18 with a VLAN tag.
    pub l3_offset: u16,
    /// The IPv4 `total_len` (the frame may be longer: Ethernet padding ends at
    /// `l3_offset + ip_total_len`).
    pub ip_total_len: u16,
    /// The 802.1Q tag, if any.
    pub vlan: Option<VlanTci>,
    /// The IPv4 TTL as received.
    pub ttl: u8,
    /// The IP protocol ([`proto::TCP`], [`proto::UDP`] or [`proto::ICMP`]).
    pub proto: u8,
    /// TCP flags (0 for UDP and ICMP).
    pub tcp_flags: TcpFlags,
    /// For ICMP: request or reply; [`IcmpQuery::None`] otherwise.
    pub icmp: IcmpQuery,
}

const _: () = assert!(core::mem::size_of::<FastFrame>() <= 56);

impl FastFrame {
    /// Offset of the L4 header: `l3_offset + 20` (frames with IP options take the slow path).
    #[inline]
    pub const fn l4_offset(&self) -> usize {
        self.l3_offset as usize + 20
    }
    /// Offset of the IPv4 header checksum.
    #[inline]
    pub const fn ip_checksum_offset(&self) -> usize {
        self.l3_offset as usize + 10
    }
    /// Offset of the IPv4 TTL.
    #[inline]
    pub const fn ttl_offset(&self) -> usize {
        self.l3_offset as usize + 8
    }
    /// Offset of the IPv4 source address.
    #[inline]
    pub const fn ip_src_offset(&self) -> usize {
        self.l3_offset as usize + 12
    }
    /// Offset of the IPv4 destination address.
    #[inline]
    pub const fn ip_dst_offset(&self) -> usize {
        self.l3_offset as usize + 16
    }
    /// Offset of the L4 checksum: TCP +16, UDP +6, ICMP +2.
    #[inline]
    pub const fn l4_checksum_offset(&self) -> usize {
        self.l4_offset()
            + match self.proto {
                proto::TCP => 16,
                proto::UDP => 6,
                _ => 2,
            }
    }
    /// Offset of the L4 source port (for ICMP: the identifier).
    #[inline]
    pub const fn src_port_offset(&self) -> usize {
        self.l4_offset()
            + match self.proto {
                proto::ICMP => 4,
                _ => 0,
            }
    }
    /// Offset of the L4 destination port (for ICMP: the identifier, same as the source).
    #[inline]
    pub const fn dst_port_offset(&self) -> usize {
        self.l4_offset()
            + match self.proto {
                proto::ICMP => 4,
                _ => 2,
            }
    }
    /// L4 length (header plus payload): `ip_total_len - 20`.
    #[inline]
    pub const fn l4_len(&self) -> u16 {
        self.ip_total_len.saturating_sub(20)
    }
    /// End of the IP packet in the frame (start of Ethernet padding, if any).
    #[inline]
    pub const fn ip_end(&self) -> usize {
        self.l3_offset as usize + self.ip_total_len as usize
    }
}

/// Why a frame needs the slow path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SlowReason {
    /// ARP.
    Arp,
    /// IPv6.
    Ipv6,
    /// IPv4 with options (IHL > 5).
    Ipv4Options,
    /// An IPv4 fragment (first or later).
    Fragment,
    /// An ICMP error (unreachable, time exceeded, parameter problem, redirect, source quench).
    IcmpError,
    /// Another ICMP message (timestamp, router advertisement, echo with a non-zero code, ...).
    IcmpOther,
    /// An IP protocol other than TCP, UDP and ICMP (GRE, ESP, SCTP, ...).
    OtherProtocol,
}

/// The outcome of [`parse`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FastParse {
    /// Accepted: handle on the fast path.
    Fast(FastFrame),
    /// Well-formed as far as the fast path looked, but not its business.
    Slow(SlowReason),
    /// Malformed: count and drop.
    Drop(DropReason),
}

#[inline(always)]
fn be16(b: &[u8], at: usize) -> u16 {
    crate::wire::rd16(b, at)
}

/// The sum of a 20-byte IPv4 header verifies. Summed in native byte order: the one's-complement
/// sum of byte-swapped words is the byte-swapped sum (RFC 1071, 2.B), and 0xffff swapped is
/// itself, so no word needs swapping.
#[inline(always)]
fn ipv4_header_ok(h: &[u8; 20]) -> bool {
    let mut acc = 0u64;
    let mut i = 0;
    while i < 20 {
        acc += u64::from(u32::from_ne_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]));
        i += 4;
    }
    crate::checksum::fold(acc) == 0xffff
}

/// Parses one Ethernet frame on the fast path. Never panics, never allocates; every length is
/// checked once and every later read is from a fixed-size copy or a checked sub-slice.
#[inline]
pub fn parse(frame: &[u8], opts: FastOptions) -> FastParse {
    parse_inline(frame, opts)
}

/// [`parse`] writing its result into `out` (a batch parses into an array in place: no copy of
/// the result, and no store-to-load stall on it).
#[inline(never)]
pub fn parse_into(frame: &[u8], opts: FastOptions, out: &mut FastParse) {
    *out = parse_inline(frame, opts);
}

/// [`parse_into`] with the common case — untagged IPv4 TCP or UDP without options, not a
/// fragment — decided inline, in one pass over fixed offsets, and everything else (tags, ICMP,
/// the slow path's frames, every drop) left to [`parse_into`]. Same result as [`parse`] for every
/// frame: the common case's checks are [`parse`]'s checks for it.
#[inline(always)]
pub fn parse_common_into(frame: &[u8], opts: FastOptions, out: &mut FastParse) {
    if let Some(ff) = common(frame, opts) {
        *out = FastParse::Fast(ff);
    } else {
        parse_into(frame, opts, out);
    }
}

/// The common case of [`parse`]; `None` for anything else (which may still be accepted, or
/// dropped, by [`parse`]).
#[inline(always)]
fn common(frame: &[u8], opts: FastOptions) -> Option<FastFrame> {
    // Ethernet, then the 20-byte IPv4 header and the first 8 bytes of L4 (ports, UDP length).
    let f = frame.first_chunk::<42>()?;
    // EtherType IPv4, version 4 with IHL 5 (no options); MF clear and offset 0 (no fragment).
    let (ty_ver, frag) = (
        u32::from_be_bytes([f[12], f[13], f[14], f[15]]),
        u16::from_be_bytes([f[20], f[21]]),
    );
    if ty_ver & 0xffff_ff00 != 0x0800_4500 || frag & 0x3fff != 0 {
        return None;
    }
    let total = u16::from_be_bytes([f[16], f[17]]);
    let l4_len = usize::from(total).checked_sub(20)?;
    if 34 + l4_len > frame.len() {
        return None;
    }
    let p = f[23];
    let flags = match p {
        proto::TCP => {
            // The TCP header's first 20 bytes lie inside the IP packet.
            let t = frame.get(34..54).filter(|_| l4_len >= 20)?;
            let doff = usize::from(t[12] >> 4) * 4;
            if doff < 20 || doff > l4_len {
                return None;
            }
            t[13]
        }
        proto::UDP => {
            let len = usize::from(u16::from_be_bytes([f[38], f[39]]));
            if l4_len < 8 || len < 8 || len > l4_len {
                return None;
            }
            0
        }
        _ => return None,
    };
    let h = f.last_chunk::<28>()?.first_chunk::<20>()?;
    if opts.verify_ipv4_checksum && !ipv4_header_ok(h) {
        return None;
    }
    Some(FastFrame {
        key: FlowKey::v4_raw(
            [f[26], f[27], f[28], f[29]],
            [f[30], f[31], f[32], f[33]],
            p,
            u16::from_be_bytes([f[34], f[35]]),
            u16::from_be_bytes([f[36], f[37]]),
        ),
        l3_offset: 14,
        ip_total_len: total,
        vlan: None,
        ttl: f[22],
        proto: p,
        tcp_flags: TcpFlags(flags),
        icmp: IcmpQuery::None,
    })
}

#[inline(always)]
fn parse_inline(frame: &[u8], opts: FastOptions) -> FastParse {
    use FastParse::{Drop, Slow};
    // --- L2 ---
    let Some(l2) = frame.get(..14) else {
        return Drop(DropReason::Runt);
    };
    let mut ethertype = be16(l2, 12);
    let mut l3 = 14usize;
    let mut vlan = None;
    if ethertype == EtherType::VLAN {
        let Some(tag) = frame.get(14..18) else {
            return Drop(DropReason::Runt);
        };
        vlan = Some(VlanTci(be16(tag, 0)));
        ethertype = be16(tag, 2);
        l3 = 18;
        if EtherType::is_qinq(ethertype) {
            return Drop(DropReason::Qinq);
        }
    }
    match ethertype {
        EtherType::IPV4 => {}
        EtherType::ARP => return Slow(SlowReason::Arp),
        EtherType::IPV6 => return Slow(SlowReason::Ipv6),
        EtherType::QINQ | EtherType::QINQ_OLD => return Drop(DropReason::Qinq),
        _ => return Drop(DropReason::UnsupportedEthertype),
    }
    // --- L3 ---
    let ip = frame.get(l3..).unwrap_or(&[]);
    let Some(h) = ip.first_chunk::<20>() else {
        return Drop(DropReason::Ipv4Truncated);
    };
    if h[0] >> 4 != 4 {
        return Drop(DropReason::Ipv4BadVersion);
    }
    match h[0] & 0x0f {
        5 => {}
        0..=4 => return Drop(DropReason::Ipv4BadIhl),
        _ => return Slow(SlowReason::Ipv4Options),
    }
    let total = u16::from_be_bytes([h[2], h[3]]);
    if total < 20 {
        if total == 0 && ip.len() > usize::from(u16::MAX) {
            return Drop(DropReason::TooBig);
        }
        return Drop(DropReason::Ipv4BadTotalLength);
    }
    let Some(l4) = ip.get(20..usize::from(total)) else {
        return Drop(DropReason::Ipv4Truncated);
    };
    if u16::from_be_bytes([h[6], h[7]]) & 0x3fff != 0 {
        return Slow(SlowReason::Fragment);
    }
    let src = [h[12], h[13], h[14], h[15]];
    let dst = [h[16], h[17], h[18], h[19]];
    let p = h[9];
    // --- L4 ---
    let (sport, dport, flags, icmp) = match p {
        proto::TCP => {
            let Some(t) = l4.first_chunk::<20>() else {
                return Drop(DropReason::L4Truncated);
            };
            let doff = usize::from(t[12] >> 4) * 4;
            if doff < 20 || doff > l4.len() {
                return Drop(DropReason::TcpBadHeaderLength);
            }
            (
                u16::from_be_bytes([t[0], t[1]]),
                u16::from_be_bytes([t[2], t[3]]),
                t[13],
                IcmpQuery::None,
            )
        }
        proto::UDP => {
            let Some(u) = l4.first_chunk::<8>() else {
                return Drop(DropReason::L4Truncated);
            };
            let len = usize::from(u16::from_be_bytes([u[4], u[5]]));
            if len < 8 || len > l4.len() {
                return Drop(DropReason::UdpBadLength);
            }
            (
                u16::from_be_bytes([u[0], u[1]]),
                u16::from_be_bytes([u[2], u[3]]),
                0,
                IcmpQuery::None,
            )
        }
        proto::ICMP => {
            let Some(m) = l4.first_chunk::<8>() else {
                return Drop(DropReason::L4Truncated);
            };
            let id = u16::from_be_bytes([m[4], m[5]]);
            match (m[0], m[1]) {
                (8, 0) => (id, 0, 0, IcmpQuery::Request),
                (0, 0) => (0, id, 0, IcmpQuery::Reply),
                (t, _) if crate::wire::icmpv4::types::is_error(t) => {
                    return Slow(SlowReason::IcmpError);
                }
                _ => return Slow(SlowReason::IcmpOther),
            }
        }
        _ => return Slow(SlowReason::OtherProtocol),
    };
    if opts.verify_ipv4_checksum && !ipv4_header_ok(h) {
        return Drop(DropReason::Ipv4BadChecksum);
    }
    FastParse::Fast(FastFrame {
        key: FlowKey::v4_raw(src, dst, p, sport, dport),
        l3_offset: l3 as u16,
        ip_total_len: total,
        vlan,
        ttl: h[8],
        proto: p,
        tcp_flags: TcpFlags(flags),
        icmp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::Ipv4Addr;

    /// A hand-made TCP SYN 10.0.0.2:40000 -> 203.0.113.10:443 (real captures: `real_captures`).
    fn syn() -> Vec<u8> {
        let mut f = vec![
            0x02, 0, 0, 0, 0, 1, 0x52, 0x54, 0, 0x12, 0x34, 0x56, 0x08, 0x00, // eth
            0x45, 0, 0, 40, 0x12, 0x34, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 2, 203, 0, 113,
            10, // ip
            0x9c, 0x40, 0x01, 0xbb, 0, 0, 0x03, 0xe8, 0, 0, 0, 0, 0x50, 0x02, 0xfa, 0xf0, 0, 0, 0,
            0, // tcp
        ];
        let c = crate::checksum::checksum(&f[14..34]);
        f[24..26].copy_from_slice(&c.to_be_bytes());
        f
    }

    const V: FastOptions = FastOptions {
        verify_ipv4_checksum: true,
    };

    #[test]
    fn tcp_syn() {
        let f = syn();
        let FastParse::Fast(m) = parse(&f, V) else {
            panic!("{:?}", parse(&f, V))
        };
        assert_eq!(
            m.key,
            FlowKey::v4(
                Ipv4Addr::new(10, 0, 0, 2),
                Ipv4Addr::new(203, 0, 113, 10),
                6,
                40000,
                443
            )
        );
        assert_eq!((m.l3_offset, m.l4_offset(), m.ip_total_len), (14, 34, 40));
        assert_eq!((m.ttl, m.proto, m.vlan), (64, 6, None));
        assert!(m.tcp_flags.syn());
        assert_eq!(m.l4_checksum_offset(), 50);
        assert_eq!(m.ip_end(), 54);
    }

    #[test]
    fn classification() {
        let f = syn();
        let mut bad = f.clone();
        bad[24] ^= 1;
        assert_eq!(parse(&bad, V), FastParse::Drop(DropReason::Ipv4BadChecksum));
        assert!(matches!(
            parse(&bad, FastOptions::default()),
            FastParse::Fast(_)
        ));
        let mut frag = f.clone();
        frag[20] = 0x20; // MF
        assert_eq!(parse(&frag, V), FastParse::Slow(SlowReason::Fragment));
        let mut opt = f.clone();
        opt[14] = 0x46;
        assert_eq!(parse(&opt, V), FastParse::Slow(SlowReason::Ipv4Options));
        let mut v6 = f.clone();
        v6[12..14].copy_from_slice(&[0x86, 0xdd]);
        assert_eq!(parse(&v6, V), FastParse::Slow(SlowReason::Ipv6));
        let mut q = f.clone();
        q[12..14].copy_from_slice(&[0x88, 0xa8]);
        assert_eq!(parse(&q, V), FastParse::Drop(DropReason::Qinq));
        let mut long = f.clone();
        long[17] = 60; // total_len > frame
        assert_eq!(parse(&long, V), FastParse::Drop(DropReason::Ipv4Truncated));
        for n in 0..f.len() {
            assert!(matches!(parse(&f[..n], V), FastParse::Drop(_)), "{n}");
        }
        let mut doff = f.clone();
        doff[46] = 0x40;
        assert_eq!(
            parse(&doff, V),
            FastParse::Drop(DropReason::TcpBadHeaderLength)
        );
    }

    #[test]
    fn vlan_and_padding() {
        let f = syn();
        let mut t = f[..12].to_vec();
        t.extend_from_slice(&[0x81, 0x00, 0x20, 0x0a]);
        t.extend_from_slice(&f[12..]);
        t.extend_from_slice(&[0; 6]); // padding
        let FastParse::Fast(m) = parse(&t, V) else {
            panic!()
        };
        assert_eq!(m.vlan, Some(VlanTci(0x200a)));
        assert_eq!((m.l3_offset, m.l4_offset()), (18, 38));
        let mut qq = t.clone();
        qq[16..18].copy_from_slice(&[0x81, 0x00]);
        assert_eq!(parse(&qq, V), FastParse::Drop(DropReason::Qinq));
    }

    #[test]
    fn real_captures() {
        use crate::wire::captured::{ARP_REQ, ECHO, HSRP, IGMP_RA, SYN, UNREACH, VLAN_BFD};
        let FastParse::Fast(m) = parse(&SYN, V) else {
            panic!()
        };
        assert_eq!(m.key.to_string(), "tcp 1.0.2.2:42741 -> 1.0.2.1:179");
        assert_eq!((m.ttl, m.ip_total_len, m.tcp_flags.0), (1, 60, 2));
        let FastParse::Fast(m) = parse(&VLAN_BFD, V) else {
            panic!()
        };
        assert_eq!(m.key.to_string(), "udp 11.11.11.2:49152 -> 11.11.11.1:3784");
        assert_eq!(
            (m.vlan, m.l3_offset, m.l4_offset()),
            (Some(VlanTci(0xe00b)), 18, 38)
        );
        let FastParse::Fast(m) = parse(&ECHO, V) else {
            panic!()
        };
        assert_eq!(m.key.to_string(), "icmp 10.40.2.3:16420 -> 10.30.4.4:0");
        assert_eq!(m.icmp, IcmpQuery::Request);
        assert!(matches!(parse(&HSRP, V), FastParse::Fast(_)));
        assert_eq!(parse(&ARP_REQ, V), FastParse::Slow(SlowReason::Arp));
        assert_eq!(parse(&IGMP_RA, V), FastParse::Slow(SlowReason::Ipv4Options));
        assert_eq!(parse(&UNREACH, V), FastParse::Slow(SlowReason::IcmpError));
    }

    /// A UDP datagram 10.0.0.2:5353 -> 203.0.113.10:53 with 4 bytes of payload.
    fn udp() -> Vec<u8> {
        let mut f = syn();
        f.truncate(34);
        f[23] = proto::UDP;
        f[16..18].copy_from_slice(&32u16.to_be_bytes());
        f.extend_from_slice(&[0x14, 0xe9, 0, 53, 0, 12, 0, 0, 1, 2, 3, 4]);
        f[24..26].copy_from_slice(&[0, 0]);
        let c = crate::checksum::checksum(&f[14..34]);
        f[24..26].copy_from_slice(&c.to_be_bytes());
        f
    }

    proptest::proptest! {
        /// The inline common case never disagrees with the full parser: on frames with any byte
        /// changed, cut short or padded, whatever `common` accepts `parse` accepts as the same
        /// frame, and `parse_common_into` always gives `parse`'s answer.
        #[test]
        fn common_case_agrees_with_parse(
            tcp in proptest::bool::ANY,
            at in 0usize..64,
            xor in proptest::num::u8::ANY,
            cut in 0usize..80,
            pad in 0usize..8,
            verify in proptest::bool::ANY,
        ) {
            let mut f = if tcp { syn() } else { udp() };
            if let Some(b) = f.get_mut(at) {
                *b ^= xor;
            }
            f.resize(f.len() + pad, 0);
            f.truncate(cut.max(1));
            let opts = FastOptions { verify_ipv4_checksum: verify };
            let full = parse(&f, opts);
            if let Some(ff) = common(&f, opts) {
                proptest::prop_assert_eq!(FastParse::Fast(ff), full);
            }
            let mut out = FastParse::Drop(DropReason::Unprocessed);
            parse_common_into(&f, opts, &mut out);
            proptest::prop_assert_eq!(out, full);
        }
    }

    proptest::proptest! {
        /// The native-order header sum agrees with RFC 1071's: random headers fail unless their
        /// checksum happens to hold, and any header with its checksum filled in passes.
        #[test]
        fn header_check_is_rfc1071(mut h in proptest::array::uniform20(proptest::num::u8::ANY)) {
            proptest::prop_assert_eq!(ipv4_header_ok(&h), crate::checksum::checksum(&h) == 0);
            h[10..12].copy_from_slice(&[0, 0]);
            let c = crate::checksum::checksum(&h);
            h[10..12].copy_from_slice(&c.to_be_bytes());
            proptest::prop_assert!(ipv4_header_ok(&h));
        }
    }

    #[test]
    fn common_case_takes_tcp_and_udp() {
        for f in [syn(), udp()] {
            assert!(common(&f, V).is_some(), "{f:02x?}");
        }
    }
}
