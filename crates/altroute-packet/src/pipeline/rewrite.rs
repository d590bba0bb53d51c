//! Where the pipeline writes frame bytes: addresses, ports and TTL with RFC 1624 incremental
//! checksums ([`rewrite_l3l4`], and [`rewrite_fixed`] for the common TCP/UDP case without IP
//! options through an [`L4Window`]), the outer header and the quoted datagram of a translated ICMP
//! error ([`rewrite_outer_dst`] and [`translate_embedded`] from a WAN, [`rewrite_outer_src`] and
//! [`translate_embedded_dst`] from the inside), and the Ethernet header: MACs and the 802.1Q tag
//! of the out port ([`Context::finish_l2`], [`retag`]).

use core::net::Ipv4Addr;

use altroute_flow::proto;

use super::{Context, Ip4, PortId, TxOffload, Verdict, rd16, wr16};
use crate::checksum::{self, Delta};
use crate::drop::DropReason;
use crate::fast::IcmpQuery;
use crate::slow::Embedded;
use crate::wire::{self, EtherType, MacAddr, VlanTci};

impl Context {
    /// and out (nearly every frame) stays inline; tag work is out of line.
    #[inline(always)]
    pub(super) fn finish_l2(
        &mut self,
        buf: &mut [u8],
        len: usize,
        out: PortId,
        dst: MacAddr,
        vlan: Option<VlanTci>,
        offload: &mut TxOffload,
    ) -> Verdict {
        let spec = &self.cfg.ports[usize::from(out.0)];
        let out_vlan = spec.vlan;
        buf[0..6].copy_from_slice(&dst.0);
        buf[6..12].copy_from_slice(&spec.mac.0);
        let len = match (vlan, out_vlan) {
            (None, None) => len,
            _ => match retag(buf, len, vlan.is_some(), out_vlan, offload) {
                Some(len) => len,
                None => return self.drop(DropReason::TooLongForEgress),
            },
        };
        self.counters.tx_frames[usize::from(out.0)] += 1;
        self.counters.tx_bytes[usize::from(out.0)] += len as u64;
        Verdict::Forward { port: out, len }
    }
}

/// Rewrite addresses, ports and TTL of an IPv4 packet in place, with incremental checksums
/// (RFC 1624): `snat` replaces the source address and port, `dnat` the destination's. The TTL
/// drops by one. A partial L4 checksum (see [`TxOffload::partial`]) is updated as a pseudo-header
/// sum; a zero UDP checksum stays zero.
pub(super) fn rewrite_l3l4(
    buf: &mut [u8],
    ip: &Ip4,
    snat: Option<(Ipv4Addr, u16)>,
    dnat: Option<(Ipv4Addr, u16)>,
    offload: &TxOffload,
) {
    let l3 = ip.l3;
    let l4 = ip.l4;
    // TCP and UDP without IP options (nearly every packet): fixed offsets in one fixed-size
    // window, so the compiler checks the bounds once.
    if l4 == l3 + 20
        && ip.icmp == IcmpQuery::None
        && let Some(w) = L4Window::of(buf, l3, ip.key.proto)
    {
        return w.rewrite(offload.partial.is_some(), snat, dnat);
    }
    // Loads first.
    let old_src = Ipv4Addr::from(wire::rd32(buf, l3 + 12));
    let old_dst = Ipv4Addr::from(wire::rd32(buf, l3 + 16));
    let old_ttl_word = rd16(buf, l3 + 8);
    let old_ip_csum = rd16(buf, l3 + 10);
    let p = ip.key.proto;
    let is_echo = p == proto::ICMP && ip.icmp != IcmpQuery::None;
    let (sport_at, dport_at, csum_at) = match p {
        proto::TCP => (l4, l4 + 2, l4 + 16),
        proto::UDP => (l4, l4 + 2, l4 + 6),
        _ => (l4 + 4, l4 + 4, l4 + 2),
    };
    let has_ports = matches!(p, proto::TCP | proto::UDP) || is_echo;
    let old_sport = if has_ports { rd16(buf, sport_at) } else { 0 };
    let old_dport = if has_ports { rd16(buf, dport_at) } else { 0 };
    let old_l4_csum = if has_ports { rd16(buf, csum_at) } else { 0 };

    let mut d = Delta::NONE;
    let mut new_src = old_src;
    let mut new_dst = old_dst;
    let mut new_sport = old_sport;
    let mut new_dport = old_dport;
    // An echo carries one identifier: a request's plays the source port, a reply's the
    // destination port (the FlowKey convention), whichever side is being rewritten.
    let id_is_src = is_echo && ip.icmp == IcmpQuery::Request;
    let id_is_dst = is_echo && ip.icmp == IcmpQuery::Reply;
    if let Some((a, port)) = snat {
        new_src = a;
        if id_is_dst {
            d = d.then(Delta::new(old_src, a, new_dport, port));
            new_dport = port;
        } else {
            d = d.then(Delta::new(old_src, a, new_sport, port));
            new_sport = port;
        }
    }
    if let Some((a, port)) = dnat {
        new_dst = a;
        if id_is_src {
            d = d.then(Delta::new(old_dst, a, new_sport, port));
            new_sport = port;
        } else {
            d = d.then(Delta::new(old_dst, a, new_dport, port));
            new_dport = port;
        }
    }
    let new_ttl_word = old_ttl_word.wrapping_sub(0x0100);
    let ip_csum = checksum::update16(d.apply_ip(old_ip_csum), old_ttl_word, new_ttl_word);

    // Stores.
    wire::wr32(buf, l3 + 12, u32::from(new_src));
    wire::wr32(buf, l3 + 16, u32::from(new_dst));
    wr16(buf, l3 + 8, new_ttl_word);
    wr16(buf, l3 + 10, ip_csum);
    if has_ports {
        if is_echo {
            // One identifier field: whichever side changed it.
            let id = if ip.icmp == IcmpQuery::Request {
                new_sport
            } else {
                new_dport
            };
            wr16(buf, sport_at, id);
            wr16(buf, csum_at, d.apply_icmp(old_l4_csum));
        } else {
            wr16(buf, sport_at, new_sport);
            wr16(buf, dport_at, new_dport);
            let c = if offload.partial.is_some() {
                d.apply_partial(old_l4_csum)
            } else if p == proto::UDP {
                d.apply_udp(old_l4_csum)
            } else {
                d.apply_tcp(old_l4_csum)
            };
            wr16(buf, csum_at, c);
        }
    }
}

/// The VLAN part of [`Context::finish_l2`]: a frame that came `tagged` leaves with `out_vlan`'s tag
/// (rewritten, pushed or popped). Returns the new length, or `None` when there is no room to push
/// a tag. The offload offsets ([`TxOffload::shift`]) move with the tag.
#[cold]
#[inline(never)]
pub(super) fn retag(
    buf: &mut [u8],
    len: usize,
    tagged: bool,
    out_vlan: Option<u16>,
    offload: &mut TxOffload,
) -> Option<usize> {
    match (tagged, out_vlan) {
        (true, Some(v)) => {
            let tci = rd16(buf, 14);
            wr16(buf, 14, (tci & 0xf000) | (v & 0x0fff));
            Some(len)
        }
        (false, Some(v)) => {
            if buf.len() < len + 4 {
                return None;
            }
            buf.copy_within(12..len, 16);
            wr16(buf, 12, EtherType::VLAN);
            wr16(buf, 14, v & 0x0fff);
            offload.shift(4);
            Some(len + 4)
        }
        (true, None) => {
            buf.copy_within(16..len, 12);
            offload.shift(-4);
            Some(len - 4)
        }
        (false, None) => Some(len),
    }
}

/// The fixed-size window over the IPv4 and L4 headers of a TCP or UDP packet without IP options,
/// where [`rewrite_fixed`] works.
pub(super) enum L4Window<'a> {
    Tcp(&'a mut [u8; 38]),
    Udp(&'a mut [u8; 28]),
}

impl<'a> L4Window<'a> {
    /// The window of the IPv4 header at `l3` with protocol `p`, if it is TCP or UDP and the frame
    /// holds the whole window (the caller knows there are no IP options).
    #[inline]
    pub(super) fn of(buf: &'a mut [u8], l3: usize, p: u8) -> Option<L4Window<'a>> {
        let b = buf.get_mut(l3..)?;
        match p {
            proto::TCP => b.first_chunk_mut::<38>().map(L4Window::Tcp),
            proto::UDP => b.first_chunk_mut::<28>().map(L4Window::Udp),
            _ => None,
        }
    }

    /// Addresses, ports, TTL and both checksums, as [`rewrite_l3l4`] does.
    #[inline]
    pub(super) fn rewrite(
        self,
        partial: bool,
        snat: Option<(Ipv4Addr, u16)>,
        dnat: Option<(Ipv4Addr, u16)>,
    ) {
        match self {
            L4Window::Tcp(h) => rewrite_fixed(h, 36, L4Sum::Tcp, partial, snat, dnat),
            L4Window::Udp(h) => rewrite_fixed(h, 26, L4Sum::Udp, partial, snat, dnat),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum L4Sum {
    Tcp,
    Udp,
}

/// [`rewrite_l3l4`] for a TCP or UDP packet without IP options: `h` starts at the IPv4 header and
/// holds at least the L4 checksum at `csum_at` (the same arithmetic as the general case).
#[inline(always)]
pub(super) fn rewrite_fixed<const N: usize>(
    h: &mut [u8; N],
    csum_at: usize,
    kind: L4Sum,
    partial: bool,
    snat: Option<(Ipv4Addr, u16)>,
    dnat: Option<(Ipv4Addr, u16)>,
) {
    let r16 = |h: &[u8; N], at: usize| u16::from_be_bytes([h[at], h[at + 1]]);
    let r32 = |h: &[u8; N], at: usize| [h[at], h[at + 1], h[at + 2], h[at + 3]];
    // Loads first.
    let old_src = Ipv4Addr::from(r32(h, 12));
    let old_dst = Ipv4Addr::from(r32(h, 16));
    let old_ttl_word = r16(h, 8);
    let old_ip_csum = r16(h, 10);
    let old_sport = r16(h, 20);
    let old_dport = r16(h, 22);
    let old_l4_csum = r16(h, csum_at);
    // RFC 1624 with the terms summed and folded once per field (`checksum::fold32`): the same
    // result as `Delta`'s one addition at a time, with fewer folds.
    use checksum::{diff32_terms, fold32 as fold};
    let (mut addr, mut ports) = (0u32, 0u32);
    let (mut new_src, mut new_dst) = (old_src, old_dst);
    let (mut new_sport, mut new_dport) = (old_sport, old_dport);
    if let Some((a, port)) = snat {
        addr += diff32_terms(u32::from(old_src), u32::from(a));
        ports += u32::from(!old_sport) + u32::from(port);
        new_src = a;
        new_sport = port;
    }
    if let Some((a, port)) = dnat {
        addr += diff32_terms(u32::from(old_dst), u32::from(a));
        ports += u32::from(!old_dport) + u32::from(port);
        new_dst = a;
        new_dport = port;
    }
    let new_ttl_word = old_ttl_word.wrapping_sub(0x0100);
    let ip_csum =
        !fold(u32::from(!old_ip_csum) + addr + u32::from(!old_ttl_word) + u32::from(new_ttl_word));
    let l4_csum = if partial {
        // A pseudo-header sum, not complemented: only the addresses are in it.
        fold(u32::from(old_l4_csum) + addr)
    } else if kind == L4Sum::Udp && old_l4_csum == 0 {
        0 // no checksum stays no checksum (RFC 768)
    } else {
        let c = !fold(u32::from(!old_l4_csum) + addr + ports);
        if kind == L4Sum::Udp {
            checksum::udp_wire(c)
        } else {
            c
        }
    };
    // Stores.
    h[8..10].copy_from_slice(&new_ttl_word.to_be_bytes());
    h[10..12].copy_from_slice(&ip_csum.to_be_bytes());
    h[12..16].copy_from_slice(&new_src.octets());
    h[16..20].copy_from_slice(&new_dst.octets());
    h[20..22].copy_from_slice(&new_sport.to_be_bytes());
    h[22..24].copy_from_slice(&new_dport.to_be_bytes());
    h[csum_at..csum_at + 2].copy_from_slice(&l4_csum.to_be_bytes());
}

/// Only the outer destination and the TTL of an ICMP error (its checksum has no pseudo-header).
pub(super) fn rewrite_outer_dst(buf: &mut [u8], ip: &Ip4, new_dst: Ipv4Addr) {
    rewrite_outer_addr(buf, ip.l3 + 16, ip, new_dst);
}

/// Only the outer source and the TTL of an ICMP error from the inside.
pub(super) fn rewrite_outer_src(buf: &mut [u8], ip: &Ip4, new_src: Ipv4Addr) {
    rewrite_outer_addr(buf, ip.l3 + 12, ip, new_src);
}

/// The outer address at `at` becomes `new` and the TTL drops by one; the IP checksum follows.
fn rewrite_outer_addr(buf: &mut [u8], at: usize, ip: &Ip4, new: Ipv4Addr) {
    let l3 = ip.l3;
    let old = Ipv4Addr::from(wire::rd32(buf, at));
    let old_ttl_word = rd16(buf, l3 + 8);
    let new_ttl_word = old_ttl_word.wrapping_sub(0x0100);
    let c = checksum::update16(
        checksum::update32(rd16(buf, l3 + 10), old, new),
        old_ttl_word,
        new_ttl_word,
    );
    wire::wr32(buf, at, u32::from(new));
    wr16(buf, l3 + 8, new_ttl_word);
    wr16(buf, l3 + 10, c);
}

/// Translate the datagram quoted in an ICMP error from an inside host (a packet it received) to
/// the outside's view: its destination address and port (or the identifier of a quoted echo
/// reply) become the external ones; its IP checksum, its L4 checksum (when quoted) and the ICMP
/// checksum are updated incrementally (RFC 5508 REQ-3, the other way).
pub(super) fn translate_embedded_dst(buf: &mut [u8], e: &Embedded, ext: Ipv4Addr, ext_port: u16) {
    let icmp_c_at = e.icmp_checksum_offset;
    let mut icmp_c = rd16(buf, icmp_c_at);
    let dst_at = e.ip_dst_offset();
    let old_dst = Ipv4Addr::from(wire::rd32(buf, dst_at));
    wire::wr32(buf, dst_at, u32::from(ext));
    icmp_c = checksum::update32(icmp_c, old_dst, ext);
    let ipc_at = e.ip_checksum_offset();
    let old_ipc = rd16(buf, ipc_at);
    let new_ipc = checksum::update32(old_ipc, old_dst, ext);
    wr16(buf, ipc_at, new_ipc);
    icmp_c = checksum::update16(icmp_c, old_ipc, new_ipc);
    if let Some(dp) = e.dst_port_offset {
        let old = rd16(buf, dp);
        wr16(buf, dp, ext_port);
        icmp_c = checksum::update16(icmp_c, old, ext_port);
        if let Some(c_at) = e.l4_checksum_offset {
            let old_c = rd16(buf, c_at);
            let d = if e.key.proto == proto::ICMP {
                Delta::port(old, ext_port)
            } else {
                Delta::new(old_dst, ext, old, ext_port)
            };
            let new_c = match e.key.proto {
                proto::UDP => d.apply_udp(old_c),
                proto::ICMP => d.apply_icmp(old_c),
                _ => d.apply_tcp(old_c),
            };
            wr16(buf, c_at, new_c);
            icmp_c = checksum::update16(icmp_c, old_c, new_c);
        }
    }
    wr16(buf, icmp_c_at, icmp_c);
}

/// Translate the datagram quoted in an ICMP error back to the inside host's view: its source
/// address and port (or echo id) become the inside ones; its IP checksum, its L4 checksum (when
/// quoted) and the ICMP checksum are updated incrementally (RFC 5508 REQ-3).
pub(super) fn translate_embedded(
    buf: &mut [u8],
    _l3: usize,
    e: &Embedded,
    ext: Ipv4Addr,
    inside: Ipv4Addr,
    ext_port: u16,
    inside_port: u16,
) {
    let icmp_c_at = e.icmp_checksum_offset;
    let mut icmp_c = rd16(buf, icmp_c_at);
    // Embedded source address.
    let src_at = e.ip_src_offset();
    let old_src = Ipv4Addr::from(wire::rd32(buf, src_at));
    let _ = ext;
    wire::wr32(buf, src_at, u32::from(inside));
    icmp_c = checksum::update32(icmp_c, old_src, inside);
    // Embedded IP header checksum.
    let ipc_at = e.ip_checksum_offset();
    let old_ipc = rd16(buf, ipc_at);
    let new_ipc = checksum::update32(old_ipc, old_src, inside);
    wr16(buf, ipc_at, new_ipc);
    icmp_c = checksum::update16(icmp_c, old_ipc, new_ipc);
    // Embedded source port / echo id, and the embedded L4 checksum when it was quoted.
    if let Some(sp) = e.src_port_offset {
        let old = rd16(buf, sp);
        let _ = ext_port;
        wr16(buf, sp, inside_port);
        icmp_c = checksum::update16(icmp_c, old, inside_port);
        if let Some(c_at) = e.l4_checksum_offset {
            let old_c = rd16(buf, c_at);
            let d = if e.key.proto == proto::ICMP {
                Delta::port(old, inside_port)
            } else {
                Delta::new(old_src, inside, old, inside_port)
            };
            let new_c = match e.key.proto {
                proto::UDP => d.apply_udp(old_c),
                proto::ICMP => d.apply_icmp(old_c),
                _ => d.apply_tcp(old_c),
            };
            wr16(buf, c_at, new_c);
            icmp_c = checksum::update16(icmp_c, old_c, new_c);
        }
    }
    wr16(buf, icmp_c_at, icmp_c);
}
