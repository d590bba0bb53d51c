//! The WAN side (VPP's out2in): a packet from an ISP link is a reply to a flow, a new connection
//! to a port forward, an echo request or a health-probe reply for the router, an ICMP error about
//! a translated packet ([`Context::icmp_error`], RFC 5508; one from the inside goes to
//! [`Context::icmp_error_from_lan`]) — or unsolicited, and dropped.

use core::net::Ipv4Addr;

use altroute_flow::{Dir, FlowKey, FlowTable, GatewayId, Hit, Time, proto};

use super::rewrite::{rewrite_l3l4, rewrite_outer_dst, translate_embedded};
use super::{
    Context, ControlReason, FlowView, Ip4, PROBE_ID_LIMIT, PortId, Role, TxOffload, Verdict,
    ipv4_of,
};
use crate::drop::DropReason;
use crate::fast::IcmpQuery;
use crate::slow::{self, Embedded};
use crate::wire::VlanTci;

impl Context {
    /// A packet from an ISP link: a reply to a flow, a port forward, an echo to the router, a probe
    /// reply — or unsolicited.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn classify_wan(
        &mut self,
        buf: &mut [u8],
        len: usize,
        port: PortId,
        ip: Ip4,
        offload: &mut TxOffload,
        now: Time,
        pre: Option<Option<Hit>>,
    ) -> Verdict {
        let (src, dst) = (ip.src(), ip.dst());
        if self.is_own(dst) != Some(port) && self.gateway_by_ext(dst, port).is_none() {
            return self.drop(DropReason::NotForUs);
        }
        if self.is_private(src) && self.attached(src) != Some(port) {
            return self.drop(DropReason::BogonSource);
        }
        if let Some(h) = pre.unwrap_or_else(|| self.table.lookup(&ip.key)) {
            if h.dir != Dir::Reply {
                return self.drop(DropReason::FlowWrongDirection);
            }
            if ip.ttl <= 1 {
                return self.time_exceeded(buf, port, ip, now);
            }
            return self.forward_flow(buf, len, port, ip, h, offload, now);
        }
        if ip.key.proto == proto::ICMP {
            if ip.icmp == IcmpQuery::Reply && ip.key.dport < PROBE_ID_LIMIT {
                let targets = &self.cfg.options.probe_targets;
                if !targets.is_empty() && !targets.contains(&ip.src()) {
                    return self.drop(DropReason::Unsolicited);
                }
                self.counters.control += 1;
                return Verdict::Control(ControlReason::ProbeReply);
            }
            if ip.icmp == IcmpQuery::Request {
                return self.local(buf, len, port, ip, now);
            }
        }
        // A port forward?
        if let Some(g) = self.gateway_by_ext(dst, port)
            && let Some(pf) = self.cfg.port_forwards.iter().find(|pf| {
                pf.proto == ip.key.proto && pf.port == ip.key.dport && pf.gateways.contains(g)
            })
        {
            if ip.ttl <= 1 {
                return self.time_exceeded(buf, port, ip, now);
            }
            let inside = FlowKey::v4(pf.to.0, src, ip.key.proto, pf.to.1, ip.key.sport);
            let port_fw = pf.port;
            return match self.table.insert_inbound(inside, g, port_fw, now) {
                Ok(h) => self.forward_flow(
                    buf,
                    len,
                    port,
                    ip,
                    Hit {
                        flow: h.flow,
                        dir: Dir::Reply,
                    },
                    offload,
                    now,
                ),
                Err(e) => self.insert_failed(e),
            };
        }
        self.drop(DropReason::Unsolicited)
    }

    /// A flow's packet from the remote end, back to the inside host (the flow's original source)
    /// with its destination translated back.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    pub(super) fn forward_back(
        &mut self,
        buf: &mut [u8],
        len: usize,
        in_port: PortId,
        ip: Ip4,
        f: &FlowView,
        offload: &mut TxOffload,
        now: Time,
    ) -> Verdict {
        let inside = ipv4_of(f.key.src_bytes());
        let Some(out) = self.attached(inside) else {
            return self.drop(DropReason::NoRoute);
        };
        let Some(mac) = self.neighbors.get(inside) else {
            return self.resolve(buf, out, inside, offload, now);
        };
        if let Some(v) = self.mtu_check(buf, in_port, out, ip, offload, now) {
            return v;
        }
        rewrite_l3l4(buf, &ip, None, Some((inside, f.key.sport)), offload);
        if let Some(g) = f.gw {
            self.count_gateway(g, Dir::Reply, f.ip_len);
        }
        self.finish_l2(buf, len, out, mac, ip.vlan, offload)
    }

    /// An ICMP error arriving on a WAN about a packet we translated (RFC 5508): find the flow by
    /// the quoted packet, and translate outer destination, quoted source and every checksum.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn icmp_error(
        &mut self,
        buf: &mut [u8],
        len: usize,
        port: PortId,
        vlan: Option<VlanTci>,
        l3: usize,
        v4: slow::SlowIpv4,
        inner: Embedded,
        offload: &mut TxOffload,
        now: Time,
    ) -> Verdict {
        if self.cfg.ports[usize::from(port.0)].role != Role::Wan {
            return self.icmp_error_from_lan(buf, len, port, vlan, l3, v4, inner, offload, now);
        }
        let outer_dst = v4.ip.dst;
        if self.gateway_by_ext(outer_dst, port).is_none() && self.is_own(outer_dst) != Some(port) {
            return self.drop(DropReason::NotForUs);
        }
        let Some(hit) = self.table.lookup(&inner.key.reversed()) else {
            return self.drop(DropReason::IcmpErrorNoFlow);
        };
        if hit.dir != Dir::Reply {
            return self.drop(DropReason::IcmpErrorNoFlow);
        }
        let Some(flow) = self.table.flow(hit.flow) else {
            return self.drop(DropReason::IcmpErrorNoFlow);
        };
        let key = flow.key();
        let inside = ipv4_of(key.src_bytes());
        let inside_port = key.sport;
        let ext = inner.key.src_v4().unwrap_or(Ipv4Addr::UNSPECIFIED);
        let ext_port = inner.key.sport;
        if v4.ip.ttl <= 1 {
            return self.drop(DropReason::TtlExpired);
        }
        let Some(out) = self.attached(inside) else {
            return self.drop(DropReason::NoRoute);
        };
        let Some(mac) = self.neighbors.get(inside) else {
            return self.resolve(buf, out, inside, offload, now);
        };
        translate_embedded(buf, l3, &inner, ext, inside, ext_port, inside_port);
        // Outer header: destination and TTL.
        let outer = Ip4 {
            key: FlowKey::v4(v4.ip.src, outer_dst, proto::ICMP, 0, 0),
            l3,
            l4: v4.l4_offset,
            ip_end: l3 + usize::from(v4.total_len),
            ttl: v4.ip.ttl,
            flags: 0,
            icmp: IcmpQuery::None,
            df: v4.ip.dont_frag,
            vlan,
        };
        rewrite_outer_dst(buf, &outer, inside);
        if let Some(g) = flow_gateway(&self.table, hit) {
            self.count_gateway(g, Dir::Reply, u32::from(v4.total_len));
        }
        self.finish_l2(buf, len, out, mac, vlan, offload)
    }
}

pub(super) fn flow_gateway(t: &FlowTable, h: Hit) -> Option<GatewayId> {
    t.flow(h.flow).and_then(|f| f.gateway())
}
