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

use altroute_flow::{Dir, Hit, ReasonKind, Time, proto};

use super::{Context, L4Window, MAX_FRAME, NO_PORT, Packet, Role, Verdict, ipv4_of};
use crate::fast::{FastFrame, IcmpQuery};
use crate::wire::MacAddr;

impl Context {
    /// Forward `pkt` (parsed as `ff`, flow `hit`) if it is the common case; `None` (with nothing
    /// changed) sends it down the full path.
    #[inline(always)]
    pub(super) fn fast_forward(
        &mut self,
        pkt: &mut Packet<'_>,
        now: Time,
        ff: &FastFrame,
        hit: Hit,
    ) -> Option<Verdict> {
        let (buf, len, link, meta) = (&mut *pkt.buf, pkt.len, pkt.link, &mut pkt.meta);
        if len > buf.len() || len > MAX_FRAME || ff.vlan.is_some() || ff.ttl <= 1 {
            return None;
        }
        // The fast parser passes only option-less IPv4, so the L4 header is at `l3 + 20`.
        let l3 = usize::from(ff.l3_offset);
        if ff.icmp != IcmpQuery::None || !matches!(ff.key.proto, proto::TCP | proto::UDP) {
            return None;
        }
        if self.gw_macs_version != self.neighbors.version() {
            self.refresh_gateway_macs();
        }
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
        let (src, dst) = (key.src_v4()?, key.dst_v4()?);
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
                let mac = self.gw_macs.get(g.index()).copied().flatten()?;
                let nat = flow.nat().map(|(a, p)| (ipv4_of(a), p));
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
        if !meta.gso && ip_len > u32::from(self.cfg.ports.get(usize::from(out.0))?.mtu) {
            return None;
        }
        let window = L4Window::of(buf, l3, ff.key.proto)?;
        // Committed: nothing below hands the packet back to the full path (the full path would
        // do the same from here on, including a drop when a VLAN tag does not fit).
        self.table.touch(hit, now, ip_len);
        // One arm per direction, so each gets a rewrite specialised for it (no runtime `Option`s
        // in the checksum arithmetic).
        let partial = meta.partial.is_some();
        match (snat, dnat) {
            (Some(to), None) => window.rewrite(partial, Some(to), None),
            (None, Some(to)) => window.rewrite(partial, None, Some(to)),
            _ => window.rewrite(partial, snat, dnat),
        }
        if let Some(c) = self.counters.rx_frames.get_mut(usize::from(port)) {
            *c += 1;
        }
        self.counters.fast_path += 1;
        if let Some(g) = gw {
            self.count_gateway(g, hit.dir, ip_len);
        }
        Some(self.finish_l2(buf, len, out, mac, None, meta))
    }
}
