//! The LAN side (VPP's in2out): a packet from an inside host goes to the router itself, to
//! another attached network ([`Context::route_direct`], untranslated), back in to a host mapped on
//! the router's own external address ([`Context::hairpin`]), or out through a gateway: a new flow
//! is created (the flow table's policy picks the gateway) or the existing one found, and
//! [`Context::forward_flow`] translates and sends it. An ICMP error from an inside host about a
//! packet it received through the NAT goes out translated ([`Context::icmp_error_from_lan`]).

use core::net::Ipv4Addr;

use altroute_flow::{Dir, FlowKey, GatewayId, Hit, InsertError, NoGateway, Time, Update, proto};

use super::rewrite::{rewrite_l3l4, rewrite_outer_src, translate_embedded_dst};
use super::{Context, FlowView, Ip4, PortId, Role, TxOffload, Verdict, ipv4_of};
use crate::drop::DropReason;
use crate::fast::IcmpQuery;
use crate::neigh::Learned;
use crate::slow::{Embedded, SlowIpv4};
use crate::wire::{Icmpv4Repr, MacAddr, UnreachableCode, VlanTci};

impl Context {
    /// A packet from the inside: to the router, to another attached network, or out through a
    /// gateway (new or existing flow).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn classify_lan(
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
        // Reverse-path check: a LAN host sends from its port's prefixes only (a DHCP client
        // without an address, 0.0.0.0, to the router or broadcast aside). Spoofed sources would
        // create flows (and take NAT ports) no reply can reach, and poison nothing else: only
        // on-link sources are learned below.
        if !self.on_link(src, port) {
            let dhcp = src.is_unspecified() && (dst.is_broadcast() || self.is_own(dst).is_some());
            if !dhcp {
                return self.drop(DropReason::Martian);
            }
        }
        if dst.is_broadcast() {
            return self.local(buf, len, port, ip, now);
        }
        // Learn the sender (cheap when unchanged).
        let src_mac = MacAddr([buf[6], buf[7], buf[8], buf[9], buf[10], buf[11]]);
        if !src.is_unspecified()
            && self.attached(src) == Some(port)
            && self.neighbors.get(src) != Some(src_mac)
        {
            if let Learned::Changed { .. } = self.neighbors.learn(src, src_mac, port.0, now) {
                self.counters.neighbor_changes += 1;
            }
            self.note_learned(src, src_mac, port.0, now);
        }
        if self.is_own(dst).is_some() {
            if let Some(g) = self.ext.iter().position(|e| *e == Some(dst))
                && self.cfg.ports[usize::from(port.0)]
                    .addrs
                    .iter()
                    .all(|a| a.0 != dst)
            {
                return self.hairpin(buf, len, port, ip, GatewayId(g as u8), offload, now);
            }
            return self.local(buf, len, port, ip, now);
        }
        if ip.ttl <= 1 {
            return self.time_exceeded(buf, port, ip, now);
        }
        match self.attached(dst) {
            Some(p) if p == port => return self.drop(DropReason::NotForUs),
            Some(p) if self.cfg.ports[usize::from(p.0)].role == Role::Lan => {
                return self.route_direct(buf, len, p, ip, offload, now);
            }
            Some(p) => {
                // A host on a WAN's own subnet: through that WAN's gateway, translated.
                let Some(g) = (0..self.cfg.gateways.len()).find(|&g| {
                    self.cfg.gateways[g].port == p && self.table.gateways()[g].state.is_usable()
                }) else {
                    return self.drop(DropReason::GatewayDown);
                };
                let hit = match self.table.lookup(&ip.key) {
                    Some(h) => h,
                    None => match self.table.insert_via(ip.key, GatewayId(g as u8), now) {
                        Ok(h) => h,
                        Err(e) => return self.refused(buf, port, ip, now, e),
                    },
                };
                return self.forward_flow(buf, len, port, ip, hit, offload, now);
            }
            None => {}
        }
        if self.is_private(dst) {
            return self.drop(DropReason::PrivateDestination);
        }
        let hit = match pre.unwrap_or_else(|| self.table.lookup(&ip.key)) {
            Some(h) => h,
            None => match self.table.insert(ip.key, now, true, ip.flags) {
                Ok((h, _)) => h,
                Err(e) => return self.refused(buf, port, ip, now, e),
            },
        };
        self.forward_flow(buf, len, port, ip, hit, offload, now)
    }

    /// A flow the table would not create, dropped by its reason.
    pub(super) fn insert_failed(&mut self, e: InsertError) -> Verdict {
        self.drop(insert_error_reason(&e))
    }

    /// A LAN host's new flow the table would not create: out of room (table, NAT ports, or the
    /// host's own limits) is answered with ICMP "communication administratively prohibited"
    /// (RFC 5508 REQ-8, rate limited) so the client gives up at once instead of retrying into
    /// the void; anything else is dropped by its reason.
    pub(super) fn refused(
        &mut self,
        buf: &mut [u8],
        port: PortId,
        ip: Ip4,
        now: Time,
        e: InsertError,
    ) -> Verdict {
        let reason = insert_error_reason(&e);
        if !e.is_resource_limit() {
            return self.drop(reason);
        }
        let repr = Icmpv4Repr::DstUnreachable {
            code: UnreachableCode::AdminProhibited,
            next_hop_mtu: 0,
        };
        self.send_icmp_error(buf, port, ip, now, &repr, reason)
    }

    /// Forward a packet that belongs to a flow, in either direction: the flow's state first (a
    /// flow whose gateway died answers with a reject), then out through its gateway
    /// ([`Context::forward_out`], here) or back to the inside host (`forward_back`, in `wan.rs`).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn forward_flow(
        &mut self,
        buf: &mut [u8],
        len: usize,
        in_port: PortId,
        ip: Ip4,
        hit: Hit,
        offload: &mut TxOffload,
        now: Time,
    ) -> Verdict {
        let ip_len = (ip.ip_end - ip.l3) as u32;
        match self.table.update(hit, now, ip.flags, ip_len) {
            Update::Reject => {
                let v = self.reject(buf, in_port, ip, now);
                self.table.remove(hit.flow, now);
                return v;
            }
            Update::Forward | Update::Rotated { .. } => {}
        }
        let Some(flow) = self.table.flow(hit.flow) else {
            return self.drop(DropReason::StaleFlow);
        };
        let f = FlowView {
            key: flow.key(),
            gw: flow.gateway(),
            nat: flow.nat().map(|(a, p)| (ipv4_of(a), p)),
            ip_len,
        };
        match hit.dir {
            Dir::Orig => self.forward_out(buf, len, in_port, ip, &f, offload, now),
            Dir::Reply => self.forward_back(buf, len, in_port, ip, &f, offload, now),
        }
    }

    /// A flow's packet from the inside host, out through the flow's gateway with its source
    /// translated (to a host on the WAN's own subnet directly, else to the gateway).
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn forward_out(
        &mut self,
        buf: &mut [u8],
        len: usize,
        in_port: PortId,
        ip: Ip4,
        f: &FlowView,
        offload: &mut TxOffload,
        now: Time,
    ) -> Verdict {
        let Some(g) = f.gw else {
            return self.drop(DropReason::NoRoute);
        };
        let Some(spec) = self.cfg.gateways.get(g.index()) else {
            return self.drop(DropReason::UnknownGateway);
        };
        let out = spec.port;
        let gw_hop = spec.next_hop;
        let src = ipv4_of(f.key.src_bytes());
        let (new_src, new_sport) = f.nat.unwrap_or((src, f.key.sport));
        let dst = ipv4_of(f.key.dst_bytes());
        if self.ext.contains(&Some(dst)) {
            // To a NAT address: `hairpin` takes those that are the ports' own addresses; this one
            // is not, and is never routed out.
            return self.drop(DropReason::HairpinUnsupported);
        }
        let hop = if self.attached(dst) == Some(out) {
            dst
        } else {
            gw_hop
        };
        let mac = if hop == gw_hop {
            self.gateway_mac(g)
        } else {
            self.neighbors.get(hop)
        };
        let Some(mac) = mac else {
            return self.resolve(buf, out, hop, offload, now);
        };
        if let Some(v) = self.mtu_check(buf, in_port, out, ip, offload, now) {
            return v;
        }
        rewrite_l3l4(buf, &ip, Some((new_src, new_sport)), None, offload);
        self.count_gateway(g, Dir::Orig, f.ip_len);
        self.finish_l2(buf, len, out, mac, ip.vlan, offload)
    }

    /// Between two LAN ports: routed, not translated, no flow state.
    pub(super) fn route_direct(
        &mut self,
        buf: &mut [u8],
        len: usize,
        out: PortId,
        ip: Ip4,
        offload: &mut TxOffload,
        now: Time,
    ) -> Verdict {
        let dst = ip.dst();
        let Some(mac) = self.neighbors.get(dst) else {
            return self.resolve(buf, out, dst, offload, now);
        };
        rewrite_l3l4(buf, &ip, None, None, offload);
        self.finish_l2(buf, len, out, mac, ip.vlan, offload)
    }

    /// A LAN host sending to the router's own external address and port (gateway `g`'s NAT
    /// address): the host mapped there (a port forward or any live mapping) is reached through
    /// the router (RFC 4787 REQ-9).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn hairpin(
        &mut self,
        buf: &mut [u8],
        len: usize,
        in_port: PortId,
        ip: Ip4,
        g: GatewayId,
        offload: &mut TxOffload,
        now: Time,
    ) -> Verdict {
        let ext = ip.dst();
        if ip.ttl <= 1 {
            return self.time_exceeded(buf, in_port, ip, now);
        }
        // First half: the sender's flow, source-translated on the gateway's address.
        let first = match self.table.lookup(&ip.key) {
            Some(h) if h.dir == Dir::Orig => h,
            Some(_) => return self.drop(DropReason::HairpinConflict),
            None => {
                if self.hairpin_target(g, ip.key.proto, ip.key.dport).is_none() {
                    return self.drop(DropReason::Unsolicited);
                }
                match self.table.insert_via(ip.key, g, now) {
                    Ok(h) => h,
                    Err(e) => return self.refused(buf, in_port, ip, now, e),
                }
            }
        };
        let ip_len = (ip.ip_end - ip.l3) as u32;
        if self.table.update(first, now, ip.flags, ip_len) == Update::Reject {
            self.table.remove(first.flow, now);
            return self.drop(DropReason::GatewayDown);
        }
        let Some((snat_a, snat_p)) = self
            .table
            .flow(first.flow)
            .and_then(|f| f.nat().map(|(a, p)| (ipv4_of(a), p)))
        else {
            return self.drop(DropReason::HairpinWithoutNat);
        };
        // Second half: the same packet as seen arriving at the external address.
        let k2 = FlowKey::v4(snat_a, ext, ip.key.proto, snat_p, ip.key.dport);
        let second = match self.table.lookup(&k2) {
            Some(h) if h.dir == Dir::Reply => h,
            Some(_) => return self.drop(DropReason::HairpinConflict),
            None => {
                let Some((to, to_port)) = self.hairpin_target(g, ip.key.proto, ip.key.dport) else {
                    return self.drop(DropReason::Unsolicited);
                };
                let inside = FlowKey::v4(to, snat_a, ip.key.proto, to_port, snat_p);
                match self.table.insert_inbound(inside, g, ip.key.dport, now) {
                    Ok(h) => Hit {
                        flow: h.flow,
                        dir: Dir::Reply,
                    },
                    Err(e) => return self.refused(buf, in_port, ip, now, e),
                }
            }
        };
        self.table.update(second, now, ip.flags, ip_len);
        let Some(target) = self.table.flow(second.flow).map(|f| f.key()) else {
            return self.drop(DropReason::StaleFlow);
        };
        let to = ipv4_of(target.src_bytes());
        let Some(out) = self.attached(to) else {
            return self.drop(DropReason::NoRoute);
        };
        let Some(mac) = self.neighbors.get(to) else {
            return self.resolve(buf, out, to, offload, now);
        };
        rewrite_l3l4(
            buf,
            &ip,
            Some((snat_a, snat_p)),
            Some((to, target.sport)),
            offload,
        );
        self.finish_l2(buf, len, out, mac, ip.vlan, offload)
    }

    /// An ICMP error from the inside about a packet of a flow that reached the inside host — a
    /// reply of one of its own connections, or a connection forwarded to it (RFC 5508, the other
    /// way): the quoted destination becomes the flow's external address and port, the outer
    /// source the external address, and it leaves through the flow's gateway. Errors about
    /// anything else, or addressed to one of the router's own addresses (hairpin), are dropped.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn icmp_error_from_lan(
        &mut self,
        buf: &mut [u8],
        len: usize,
        in_port: PortId,
        vlan: Option<VlanTci>,
        l3: usize,
        v4: SlowIpv4,
        inner: Embedded,
        offload: &mut TxOffload,
        now: Time,
    ) -> Verdict {
        let remote = v4.ip.dst;
        if self.is_own(remote).is_some() || self.ext.contains(&Some(remote)) {
            return self.drop(DropReason::HairpinUnsupported);
        }
        // The error goes back to the quoted packet's sender.
        if inner.key.src_v4() != Some(remote) {
            return self.drop(DropReason::IcmpErrorNoFlow);
        }
        let Some(hit) = self.table.lookup(&inner.key.reversed()) else {
            return self.drop(DropReason::IcmpErrorNoFlow);
        };
        if hit.dir != Dir::Orig {
            return self.drop(DropReason::IcmpErrorNoFlow);
        }
        let Some(flow) = self.table.flow(hit.flow) else {
            return self.drop(DropReason::IcmpErrorNoFlow);
        };
        let key = flow.key();
        let (ext, ext_port) = flow
            .nat()
            .map_or((ipv4_of(key.src_bytes()), key.sport), |(a, p)| {
                (ipv4_of(a), p)
            });
        let Some(g) = flow.gateway() else {
            return self.drop(DropReason::NoRoute);
        };
        if v4.ip.ttl <= 1 {
            return self.drop(DropReason::TtlExpired);
        }
        if !self
            .table
            .gateways()
            .get(g.index())
            .is_some_and(|s| s.state.is_usable())
        {
            return self.drop(DropReason::GatewayDown);
        }
        let Some(spec) = self.cfg.gateways.get(g.index()) else {
            return self.drop(DropReason::UnknownGateway);
        };
        let (out, gw_hop) = (spec.port, spec.next_hop);
        let hop = if self.attached(remote) == Some(out) {
            remote
        } else {
            gw_hop
        };
        let mac = if hop == gw_hop {
            self.gateway_mac(g)
        } else {
            self.neighbors.get(hop)
        };
        let Some(mac) = mac else {
            return self.resolve(buf, out, hop, offload, now);
        };
        let outer = Ip4 {
            key: FlowKey::v4(v4.ip.src, remote, proto::ICMP, 0, 0),
            l3,
            l4: v4.l4_offset,
            ip_end: l3 + usize::from(v4.total_len),
            ttl: v4.ip.ttl,
            flags: 0,
            icmp: IcmpQuery::None,
            df: v4.ip.dont_frag,
            vlan,
        };
        if let Some(v) = self.mtu_check(buf, in_port, out, outer, offload, now) {
            return v;
        }
        translate_embedded_dst(buf, &inner, ext, ext_port);
        rewrite_outer_src(buf, &outer, ext);
        self.count_gateway(g, Dir::Orig, u32::from(v4.total_len));
        self.finish_l2(buf, len, out, mac, vlan, offload)
    }

    pub(super) fn hairpin_target(
        &self,
        g: GatewayId,
        proto: u8,
        port: u16,
    ) -> Option<(Ipv4Addr, u16)> {
        if let Some(pf) = self
            .cfg
            .port_forwards
            .iter()
            .find(|pf| pf.proto == proto && pf.port == port && pf.gateways.contains(g))
        {
            return Some(pf.to);
        }
        let ext = self.ext.get(g.index()).copied().flatten()?;
        match self.table.mapping(ext.into(), proto, port)? {
            (core::net::IpAddr::V4(a), p) => Some((a, p)),
            _ => None,
        }
    }
}

/// Why the flow table would not create a flow, as a drop reason.
fn insert_error_reason(e: &InsertError) -> DropReason {
    match e {
        InsertError::TableFull { .. } => DropReason::TableFull,
        InsertError::PortsExhausted { .. } => DropReason::PortsExhausted,
        InsertError::SourceFlowLimit { .. } => DropReason::HostLimit,
        InsertError::SourcePortLimit { .. } => DropReason::HostPortLimit,
        InsertError::NoGateway(NoGateway::RuleRejects { .. }) => DropReason::Policy,
        InsertError::NoGateway(NoGateway::NoneUsable) => DropReason::GatewayDown,
        InsertError::NotSyn => DropReason::TcpNoFlowNoSyn,
        InsertError::Exists => DropReason::FlowExists,
        InsertError::NatV6 => DropReason::Ipv6Unsupported,
        InsertError::UnknownGateway(_) => DropReason::UnknownGateway,
    }
}
