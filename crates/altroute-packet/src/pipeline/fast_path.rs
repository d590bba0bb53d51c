//! The established-flow fast path: lookup only, as VPP's NAT plugin splits it.
//!
//! [`Context::process_batch`] sends every frame that the fixed-offset parser accepted and whose
//! flow the batched lookup found through [`Context::fast_forward`] first. It handles the packet
//! that makes up nearly all traffic — TCP or UDP without IP options or VLAN tag, on an existing,
//! established flow, from the side the flow expects, to a neighbour whose MAC is known — with
//! straight-line code: a handful of checks, the flow's NAT rewrite with RFC 1624 checksum deltas,
//! the TTL, the MACs, the counters. Anything else returns `None` **before any state has changed**
//! and goes down the full path ([`Context::process_parsed`]), which creates flows, answers ARP and
//! ICMP, runs the TCP state machine and counts every drop by its reason. The two paths give
//! byte-identical output for every packet the fast path takes (a property test in
//! `pipeline/tests.rs` replays random traffic through both and compares frames, verdicts and
//! counters).

use core::net::Ipv4Addr;

use altroute_flow::{Dir, Hit, ReasonKind, Time, proto};

use super::{Context, FrameMeta, L4Sum, MAX_FRAME, NO_PORT, Packet, Role, Verdict, rewrite_fixed};
use crate::fast::{FastFrame, IcmpQuery};
use crate::wire::MacAddr;

/// The fixed-size window over the IPv4 and L4 headers that the rewrite works in.
enum Header<'a> {
    Tcp(&'a mut [u8; 38]),
    Udp(&'a mut [u8; 28]),
}

impl Context {
    /// Forward `pkt` (parsed as `ff`, flow `hit`) if it is the common case, writing its verdict
    /// to `verdict`; `false` (with nothing changed) sends it down the full path.
    #[inline]
    pub(super) fn fast_forward(
        &mut self,
        pkt: &mut Packet<'_>,
        now: Time,
        ff: &FastFrame,
        hit: Hit,
        verdict: &mut Verdict,
    ) -> bool {
        match self.try_fast(pkt.buf, pkt.len, pkt.link, &mut pkt.meta, now, ff, hit) {
            Some(v) => {
                *verdict = v;
                true
            }
            None => false,
        }
    }

    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn try_fast(
        &mut self,
        buf: &mut [u8],
        len: usize,
        link: u8,
        meta: &mut FrameMeta,
        now: Time,
        ff: &FastFrame,
        hit: Hit,
    ) -> Option<Verdict> {
        if len > buf.len() || len > MAX_FRAME || ff.vlan.is_some() || ff.ttl <= 1 {
            return None;
        }
        let l3 = usize::from(ff.l3_offset);
        if usize::from(ff.l4_offset) != l3 + 20 || ff.icmp != IcmpQuery::None {
            return None;
        }
        let (kind, csum_at) = match ff.key.proto {
            proto::TCP => (L4Sum::Tcp, 36),
            proto::UDP => (L4Sum::Udp, 26),
            _ => return None,
        };
        let port = self.link_port[usize::from(link)];
        if port == NO_PORT {
            return None;
        }
        let in_spec = self.cfg.ports.get(usize::from(port))?;
        if buf.get(..6)? != in_spec.mac.0 {
            return None;
        }
        let ip_len = u32::from(ff.ip_total_len);
        let flow = self.table.established(hit, ff.tcp_flags.0)?;
        let key = *flow.key();
        let src = Ipv4Addr::from(u32::from_be_bytes(*key.src_bytes().first_chunk()?));
        let dst = Ipv4Addr::from(u32::from_be_bytes(*key.dst_bytes().first_chunk()?));
        let gw = flow.gateway();
        let (out, mac, snat, dnat) = match hit.dir {
            Dir::Orig => {
                // From the inside host, as `classify_lan` + `forward_flow` would take it.
                if in_spec.role != Role::Lan || matches!(flow.reason(), ReasonKind::Via) {
                    return None;
                }
                let src_mac = MacAddr(*buf.get(6..12)?.first_chunk()?);
                if self.neighbors.get(src) != Some(src_mac) {
                    return None; // the full path learns it
                }
                if self.special_first[usize::from(dst.octets()[0])]
                    && (self.is_own(dst).is_some()
                        || self.attached(dst).is_some()
                        || self.is_private(dst)
                        || self.ext.contains(&Some(dst)))
                {
                    return None;
                }
                let g = gw?;
                let out = self.cfg.gateways.get(g.index())?.port;
                let mac = self.gateway_mac(g)?;
                let nat = flow
                    .nat()
                    .and_then(|(a, p)| Some((Ipv4Addr::from(*a.first_chunk::<4>()?), p)));
                (out, mac, Some(nat.unwrap_or((src, key.sport))), None)
            }
            Dir::Reply => {
                // From the remote host, as `classify_wan` + `forward_flow` would take it.
                if in_spec.role != Role::Wan {
                    return None;
                }
                let pkt_dst = ff.key.dst_v4()?;
                let in_port = super::PortId(port);
                if self.is_own(pkt_dst) != Some(in_port)
                    && self.gateway_by_ext(pkt_dst, in_port).is_none()
                {
                    return None;
                }
                let pkt_src = ff.key.src_v4()?;
                if self.special_first[usize::from(pkt_src.octets()[0])]
                    && self.is_private(pkt_src)
                    && self.attached(pkt_src) != Some(in_port)
                {
                    return None;
                }
                let out = self.attached(src)?;
                let mac = self.neighbors.get(src)?;
                (out, mac, None, Some((src, key.sport)))
            }
        };
        let out_spec = self.cfg.ports.get(usize::from(out.0))?;
        let (out_mac, out_vlan) = (out_spec.mac, out_spec.vlan);
        if !meta.gso && ip_len > u32::from(out_spec.mtu) {
            return None;
        }
        let partial = meta.partial.is_some();
        let header = match kind {
            L4Sum::Tcp => Header::Tcp(buf.get_mut(l3..)?.first_chunk_mut::<38>()?),
            L4Sum::Udp => Header::Udp(buf.get_mut(l3..)?.first_chunk_mut::<28>()?),
        };
        // Committed: from here on the packet is forwarded; nothing below can fail.
        self.table.touch(hit, now, ip_len);
        match header {
            Header::Tcp(h) => rewrite_fixed(h, csum_at, kind, partial, snat, dnat),
            Header::Udp(h) => rewrite_fixed(h, csum_at, kind, partial, snat, dnat),
        }
        if let Some(c) = self.counters.rx_frames.get_mut(usize::from(port)) {
            *c += 1;
        }
        self.counters.fast_path += 1;
        if let Some(g) = gw {
            let c = match hit.dir {
                Dir::Orig => self.counters.gw_out.get_mut(g.index()),
                Dir::Reply => self.counters.gw_in.get_mut(g.index()),
            };
            if let Some(c) = c {
                c.0 += 1;
                c.1 += u64::from(ip_len);
            }
        }
        if out_vlan.is_some() {
            return Some(self.finish_l2(buf, len, out, mac, None, meta));
        }
        // `finish_l2` without a tag to push, inline: the verdict stays in registers.
        if let Some(l2) = buf.first_chunk_mut::<12>() {
            l2[..6].copy_from_slice(&mac.0);
            l2[6..].copy_from_slice(&out_mac.0);
        }
        let o = usize::from(out.0);
        if let (Some(f), Some(b)) = (
            self.counters.tx_frames.get_mut(o),
            self.counters.tx_bytes.get_mut(o),
        ) {
            *f += 1;
            *b += len as u64;
        }
        Some(Verdict::Forward { port: out, len })
    }
}
