//! Kernel offload records: for an established TCP or UDP flow, the two per-direction rewrites the
//! daemon hands to the kernel's tc program (`altroute-io`'s `ebpf::offload`), computed from the
//! same pipeline state the fast path uses, and [`apply`], a pure Rust reference of what the
//! kernel program does with one (the property test below holds the pipeline's own output to it).
//!
//! Pure: no I/O. Checksums follow VPP's precomputed per-direction deltas: each record carries
//! three 32-bit one's-complement partial sums over 16-bit words in network byte order — the
//! IPv4 header diff (addresses and the TTL decrement), the L4 pseudo-header diff (addresses)
//! and the L4 port diff. They are separate because a "checksum not ready" frame (what veth hands
//! over from a local sender: the L4 field holds the pseudo-header sum) takes only the
//! pseudo-header diff; its ports are summed later, by segmentation or the NIC. A UDP checksum of
//! zero means "none" and stays zero; an updated one that comes out zero is written as `0xffff`
//! (the kernel's `BPF_F_MARK_MANGLED_0`).

use core::net::Ipv4Addr;

use altroute_flow::{FlowId, ReasonKind, TcpState, proto};

use super::{Context, PortId, Role, ipv4_of};
use crate::wire::MacAddr;

/// One direction of an offloaded flow: how a frame arriving on `in_link` with the tuple
/// `src:sport -> dst:dport` leaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct OffloadRecord {
    /// The port the frame arrives on.
    pub in_port: PortId,
    /// Its link.
    pub in_link: u8,
    /// Match: IPv4 source as it arrives.
    pub src: Ipv4Addr,
    /// Match: IPv4 destination.
    pub dst: Ipv4Addr,
    /// Match: source port.
    pub sport: u16,
    /// Match: destination port.
    pub dport: u16,
    /// Match: IP protocol (TCP or UDP).
    pub proto: u8,
    /// The port it leaves by.
    pub out_port: PortId,
    /// Its link.
    pub out_link: u8,
    /// New destination MAC (the next hop).
    pub dst_mac: MacAddr,
    /// New source MAC (the out port's).
    pub src_mac: MacAddr,
    /// New IPv4 source.
    pub new_src: Ipv4Addr,
    /// New IPv4 destination.
    pub new_dst: Ipv4Addr,
    /// New source port.
    pub new_sport: u16,
    /// New destination port.
    pub new_dport: u16,
    /// IPv4 header checksum diff: addresses and the TTL decrement.
    pub l3_diff: u32,
    /// L4 checksum diff of the addresses (pseudo-header).
    pub l4_addr_diff: u32,
    /// L4 checksum diff of the ports.
    pub l4_port_diff: u32,
    /// The out port's MTU: a longer non-GSO frame is not offloaded (the full path decides).
    pub max_len: u16,
}

/// `~old + new` over the 16-bit words of two equal-length byte strings (network order).
fn diff(old: &[u8], new: &[u8]) -> u32 {
    let w = |c: &[u8]| match c {
        [a, b] => u32::from(u16::from_be_bytes([*a, *b])),
        _ => 0,
    };
    let neg: u32 = old.chunks(2).map(|c| 0xffff - w(c)).sum();
    neg + new.chunks(2).map(w).sum::<u32>()
}

/// `~0x0100`: the IPv4 header diff of a TTL decrement (the word `TTL << 8 | protocol`).
const TTL_DIFF: u32 = 0xfeff;

impl OffloadRecord {
    fn new(
        proto: u8,
        (in_port, in_link): (PortId, u8),
        (src, dst, sport, dport): (Ipv4Addr, Ipv4Addr, u16, u16),
        (out_port, out_link, dst_mac, src_mac, max_len): (PortId, u8, MacAddr, MacAddr, u16),
        (new_src, new_dst, new_sport, new_dport): (Ipv4Addr, Ipv4Addr, u16, u16),
    ) -> OffloadRecord {
        let old_a = [src.octets(), dst.octets()].concat();
        let new_a = [new_src.octets(), new_dst.octets()].concat();
        let old_p = [sport.to_be_bytes(), dport.to_be_bytes()].concat();
        let new_p = [new_sport.to_be_bytes(), new_dport.to_be_bytes()].concat();
        let addr = diff(&old_a, &new_a);
        OffloadRecord {
            in_port,
            in_link,
            src,
            dst,
            sport,
            dport,
            proto,
            out_port,
            out_link,
            dst_mac,
            src_mac,
            new_src,
            new_dst,
            new_sport,
            new_dport,
            l3_diff: addr + TTL_DIFF,
            l4_addr_diff: addr,
            l4_port_diff: diff(&old_p, &new_p),
            max_len,
        }
    }
}

impl Context {
    /// The two records (original direction, then reply) of flow `id`, if the kernel may forward
    /// it: a live outbound TCP connection in state established or a live outbound UDP flow,
    /// through a gateway, translated or not, both ports untagged, both next-hop MACs known, and
    /// every check the fast path makes on its frames answered the same way for the whole flow.
    /// `None`: leave it to user space. A UDP flow has no state here: that it was answered
    /// (`FlowInfo::replied`, "established" for UDP) is for the caller to check.
    pub fn offload_records(&self, id: FlowId) -> Option<[OffloadRecord; 2]> {
        let flow = self.table.flow(id)?;
        let key = flow.key();
        let ok = match key.proto {
            proto::TCP => flow.tcp() == TcpState::Established,
            proto::UDP => true,
            _ => false,
        };
        if !ok
            || flow.is_rejected()
            || flow.is_inbound()
            || matches!(flow.reason(), ReasonKind::Via)
        {
            return None;
        }
        let (host, remote) = (key.src_v4()?, key.dst_v4()?);
        let g = flow.gateway()?;
        let (ext, eport) = flow
            .nat()
            .map_or((host, key.sport), |(a, p)| (ipv4_of(a), p));
        let port = |p: PortId| self.cfg.ports.get(usize::from(p.0));
        // The LAN side: where the host is attached, untagged, the link's untagged port.
        let lan = self.attached(host)?;
        let lan_spec = port(lan)?;
        if lan_spec.role != Role::Lan
            || lan_spec.vlan.is_some()
            || self.link_port[usize::from(lan_spec.link)] != lan.0
        {
            return None;
        }
        let host_mac = self.neighbors.get(host)?;
        // The original direction's destination checks (`fast_forward`, Dir::Orig).
        if self.is_own(remote).is_some()
            || self.attached(remote).is_some()
            || self.is_private(remote)
            || self.ext.contains(&Some(remote))
        {
            return None;
        }
        // The WAN side.
        let wan = self.cfg.gateways.get(g.index())?.port;
        let wan_spec = port(wan)?;
        if wan_spec.role != Role::Wan
            || wan_spec.vlan.is_some()
            || self.link_port[usize::from(wan_spec.link)] != wan.0
        {
            return None;
        }
        let gw_mac = self.gateway_mac(g)?;
        // The reply direction's checks (`fast_forward`, Dir::Reply).
        if self.is_own(ext) != Some(wan) && self.gateway_by_ext(ext, wan).is_none() {
            return None;
        }
        if self.is_private(remote) && self.attached(remote) != Some(wan) {
            return None;
        }
        let orig = OffloadRecord::new(
            key.proto,
            (lan, lan_spec.link),
            (host, remote, key.sport, key.dport),
            (wan, wan_spec.link, gw_mac, wan_spec.mac, wan_spec.mtu),
            (ext, remote, eport, key.dport),
        );
        let reply = OffloadRecord::new(
            key.proto,
            (wan, wan_spec.link),
            (remote, ext, key.dport, eport),
            (lan, lan_spec.link, host_mac, lan_spec.mac, lan_spec.mtu),
            (remote, host, key.dport, key.sport),
        );
        Some([orig, reply])
    }
}

/// 32-bit one's-complement addition (`csum_add`).
fn csum_add(a: u32, b: u32) -> u32 {
    let (s, c) = a.overflowing_add(b);
    s.wrapping_add(u32::from(c))
}

/// Folds to 16 bits (not complemented).
fn fold(mut s: u32) -> u16 {
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    s as u16
}

/// `csum_replace_by_diff`: the checksum field `c` after a change whose diff is `d`.
fn replace_by_diff(c: u16, d: u32) -> u16 {
    !fold(csum_add(d, u32::from(!c)))
}

/// Whether the kernel programs take `frame` for `rec` (the bytes part of their predicate; the
/// metadata part — packet type host, no VLAN metadata, GSO or short enough — is the caller's):
/// at least 54 bytes (for UDP too), IPv4 without options, not a fragment, TTL > 1, TCP without
/// SYN/FIN/RST or UDP (the record's protocol), the record's tuple.
pub fn matches(rec: &OffloadRecord, frame: &[u8]) -> bool {
    let Some(h) = frame.first_chunk::<54>() else {
        return false;
    };
    let r16 = |at: usize| u16::from_be_bytes([h[at], h[at + 1]]);
    let r32 = |at: usize| Ipv4Addr::new(h[at], h[at + 1], h[at + 2], h[at + 3]);
    r16(12) == 0x0800
        && h[14] == 0x45
        && r16(20) & 0x3fff == 0
        && h[22] > 1
        && h[23] == rec.proto
        && match rec.proto {
            proto::TCP => h[47] & 0x07 == 0,
            proto::UDP => true,
            _ => false,
        }
        && r32(26) == rec.src
        && r32(30) == rec.dst
        && r16(34) == rec.sport
        && r16(36) == rec.dport
}

/// What the kernel's tc program does with a frame that [`matches()`] `rec`: MACs, addresses,
/// ports and TTL rewritten, the IPv4 checksum adjusted by `l3_diff`, the TCP/UDP checksum by
/// `l4_addr_diff` as a pseudo-header change and then by `l4_port_diff` — except that for a
/// "checksum not ready" frame (`partial`) only the pseudo-header diff is applied, to the
/// uncomplemented sum the field holds (`inet_proto_csum_replace_by_diff` for
/// `CHECKSUM_PARTIAL`). UDP (`BPF_F_MARK_MANGLED_0` on both replaces): a zero field is left
/// alone, a field that becomes zero is written as `0xffff`. Returns `false` (frame untouched) if
/// it does not match.
pub fn apply(rec: &OffloadRecord, frame: &mut [u8], partial: bool) -> bool {
    if !matches(rec, frame) {
        return false;
    }
    let Some(h) = frame.first_chunk_mut::<54>() else {
        return false;
    };
    h[0..6].copy_from_slice(&rec.dst_mac.0);
    h[6..12].copy_from_slice(&rec.src_mac.0);
    h[26..30].copy_from_slice(&rec.new_src.octets());
    h[30..34].copy_from_slice(&rec.new_dst.octets());
    h[34..36].copy_from_slice(&rec.new_sport.to_be_bytes());
    h[36..38].copy_from_slice(&rec.new_dport.to_be_bytes());
    h[22] -= 1;
    let ip_c = u16::from_be_bytes([h[24], h[25]]);
    h[24..26].copy_from_slice(&replace_by_diff(ip_c, rec.l3_diff).to_be_bytes());
    let (at, udp) = if rec.proto == proto::UDP {
        (40, true)
    } else {
        (50, false)
    };
    let c = u16::from_be_bytes([h[at], h[at + 1]]);
    if udp && c == 0 {
        return true;
    }
    // One `bpf_l4_csum_replace`: the partial or full update, then the UDP zero rule.
    let replace = |c: u16, d: u32, pseudo: bool| {
        let c = match (partial, pseudo) {
            (true, true) => fold(csum_add(d, u32::from(c))),
            (true, false) => c,
            (false, _) => replace_by_diff(c, d),
        };
        if udp && c == 0 { 0xffff } else { c }
    };
    let c = replace(replace(c, rec.l4_addr_diff, true), rec.l4_port_diff, false);
    h[at..at + 2].copy_from_slice(&c.to_be_bytes());
    true
}

#[cfg(test)]
mod tests;
