//! Creating flows: from the inside ([`FlowTable::insert`], gateway chosen by the policy), from
//! outside through a port forward, on a given gateway, or direct; and why creation can fail.

use core::net::IpAddr;

use super::FlowTable;
use super::lookup::{Dir, FlowId, Hit};
use super::mapping::proto_class;
use super::slot::{
    FlowCounters, INBOUND, LISTED, LIVE, Links, NO_GW, NO_NAT, OVERRIDE, ReasonKind, Slot, UNLINKED,
};
use super::sources::source_key;
use crate::policy::{self, Choice, Inputs, NoGateway};
use crate::tcp::flags as tcpf;
use crate::{Family, FlowKey, GatewayId, Time, proto};

/// Why a flow could not be created.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InsertError {
    /// The table holds `max` flows and none could be dropped early.
    #[error("flow table full ({max} flows)")]
    TableFull {
        /// The configured maximum.
        max: u32,
    },
    /// Every external port of `addr` for this protocol is in use or cooling down.
    #[error("NAT ports exhausted on {addr} for protocol {proto}")]
    PortsExhausted {
        /// The external address.
        addr: IpAddr,
        /// The IP protocol.
        proto: u8,
    },
    /// No gateway can take the flow.
    #[error(transparent)]
    NoGateway(#[from] NoGateway),
    /// A flow with this key, or with the same translated reply key, already exists.
    #[error("a flow with this key or reply key exists")]
    Exists,
    /// Source NAT was asked for an IPv6 flow (IPv6 is routed without NAT).
    #[error("NAT for IPv6 is not supported: IPv6 is routed, not translated")]
    NatV6,
    /// A TCP segment without SYN arrived for an unknown flow and loose pickup is off.
    #[error("TCP segment without SYN for an unknown flow")]
    NotSyn,
    /// A gateway id or NAT address out of range.
    #[error("unknown gateway {0}")]
    UnknownGateway(GatewayId),
    /// The inside host `host` holds `limit` flows in this table already
    /// ([`Limits::flows_per_source`](crate::Limits::flows_per_source)).
    #[error("{host} holds {limit} flows, its limit")]
    SourceFlowLimit {
        /// The inside host (the source of the flow's key).
        host: IpAddr,
        /// Its limit.
        limit: u32,
    },
    /// The inside host `host` holds `limit` NAT mappings in this table already and the flow would
    /// need a new one ([`Limits::ports_per_source`](crate::Limits::ports_per_source)).
    #[error("{host} holds {limit} NAT ports, its limit")]
    SourcePortLimit {
        /// The inside host.
        host: IpAddr,
        /// Its limit.
        limit: u32,
    },
}

impl InsertError {
    /// Whether the flow was refused for lack of resources — the table full, NAT ports
    /// exhausted, or the host over one of its limits — rather than by policy or for a bad
    /// packet. A NAT answers these with ICMP destination unreachable, code 13 "communication
    /// administratively prohibited" (RFC 5508 REQ-8), so the client fails at once instead of
    /// retrying into a full table.
    pub fn is_resource_limit(&self) -> bool {
        matches!(
            self,
            InsertError::TableFull { .. }
                | InsertError::PortsExhausted { .. }
                | InsertError::SourceFlowLimit { .. }
                | InsertError::SourcePortLimit { .. }
        )
    }
}

impl FlowTable {
    /// Create a flow for a packet from the inside host with `key`, choosing its gateway by the
    /// overrides and the policy, and — when `translate` is true and the gateway has a NAT address —
    /// allocating its external port. `tcp_flags` is the first packet's (0 for other protocols): a
    /// SYN counts as a connection attempt on the chosen gateway, and a TCP segment without SYN is
    /// refused when loose pickup is off. Then pass the packet to [`FlowTable::update`] like any
    /// other (creation does not count it or advance the TCP state).
    pub fn insert(
        &mut self,
        key: FlowKey,
        now: Time,
        translate: bool,
        tcp_flags: u8,
    ) -> Result<(Hit, Choice), InsertError> {
        if key.proto == proto::TCP && tcp_flags & tcpf::SYN == 0 && !self.cfg.tcp_loose {
            return Err(InsertError::NotSyn);
        }
        let choice = self
            .select(&key, now)
            .inspect_err(|_| self.stats.no_gateway += 1)?;
        let hit = self.insert_with(
            key,
            choice.gateway,
            now,
            translate,
            ReasonKind::of(&choice.reason),
            false,
            None,
        )?;
        if key.proto == proto::TCP && tcp_flags & (tcpf::SYN | tcpf::ACK) == tcpf::SYN {
            self.record_open(choice.gateway.0, now);
        }
        Ok((hit, choice))
    }

    /// Create a flow opened from outside through a port forward: `key` is from the inside host's
    /// side (inside address and port → remote), `gateway` the link it arrived on and `ext_port` the
    /// forwarded external port (reserve it first with [`FlowTable::reserve_port`]). Replies leave by
    /// the same link with that link's address (source-aware routing).
    pub fn insert_inbound(
        &mut self,
        key: FlowKey,
        gateway: GatewayId,
        ext_port: u16,
        now: Time,
    ) -> Result<Hit, InsertError> {
        self.insert_with(
            key,
            gateway,
            now,
            true,
            ReasonKind::Inbound,
            true,
            Some(ext_port),
        )
    }

    /// Create a translated flow on a given gateway without consulting the policy: for a host on the
    /// gateway link's own subnet (the modem's web page), or the first half of a hairpinned
    /// connection (a LAN host sending to the router's own external address), which is
    /// source-translated on `gateway`'s address but never leaves by its link.
    pub fn insert_via(
        &mut self,
        key: FlowKey,
        gateway: GatewayId,
        now: Time,
    ) -> Result<Hit, InsertError> {
        self.insert_with(key, gateway, now, true, ReasonKind::Via, false, None)
    }

    /// Create a flow that uses no gateway and no translation (direct delivery between attached
    /// networks, or traffic to the router itself).
    pub fn insert_direct(&mut self, key: FlowKey, now: Time) -> Result<Hit, InsertError> {
        self.insert_with(
            key,
            GatewayId(NO_GW),
            now,
            false,
            ReasonKind::Direct,
            false,
            None,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn insert_with(
        &mut self,
        key: FlowKey,
        gw: GatewayId,
        now: Time,
        translate: bool,
        reason: ReasonKind,
        inbound: bool,
        fixed_port: Option<u16>,
    ) -> Result<Hit, InsertError> {
        if gw.0 != NO_GW && gw.index() >= self.cfg.gateways.len() {
            return Err(InsertError::UnknownGateway(gw));
        }
        if self.lookup(&key).is_some() {
            return Err(InsertError::Exists);
        }
        // The source's record, claimed for this flow from here on: counted before the flow
        // exists, so that dropping its other flows early cannot forget it meanwhile.
        let Some(src) = self.sources.claim(source_key(&key), self.flow_limit) else {
            self.stats.refused_source_flows += 1;
            return Err(InsertError::SourceFlowLimit {
                host: key.src_ip(),
                limit: self.flow_limit,
            });
        };
        let made = self.create(key, gw, now, translate, reason, inbound, fixed_port, src);
        if made.is_err() {
            self.sources.unclaim(src);
        }
        made
    }

    /// [`FlowTable::insert_with`] once the source's record `src` is claimed.
    #[allow(clippy::too_many_arguments)]
    fn create(
        &mut self,
        key: FlowKey,
        gw: GatewayId,
        now: Time,
        translate: bool,
        reason: ReasonKind,
        inbound: bool,
        fixed_port: Option<u16>,
        src: u32,
    ) -> Result<Hit, InsertError> {
        let id = self.alloc_slot(now)?;
        let i = id as usize;
        // Bind NAT.
        let (nat_addr, nat_port) =
            if translate && gw.0 != NO_GW && self.gw_addr[gw.index()] != NO_NAT {
                if key.family() == Family::V6 {
                    self.free_slot(i);
                    return Err(InsertError::NatV6);
                }
                match fixed_port {
                    Some(p) => {
                        let a = self.gw_addr[gw.index()];
                        if let Some(c) = proto_class(key.proto) {
                            let pi = usize::from(a) * 3 + c;
                            let pool = &mut self.pools[pi];
                            if pool.refs(p) == 0 {
                                let mut ia = [0u8; 4];
                                ia.copy_from_slice(&key.src_bytes()[..4]);
                                pool.bind(p, (ia, key.sport));
                                self.fixed_port_bound(pi, p, src);
                            } else {
                                pool.share(p);
                            }
                        }
                        (a, p)
                    }
                    None => match self.nat_bind(&key, gw, src, true) {
                        Ok(b) => b,
                        Err(e) => {
                            self.free_slot(i);
                            return Err(e);
                        }
                    },
                }
            } else {
                (NO_NAT, key.sport)
            };
        let secs = now.secs32();
        let (head, tail) = key.split();
        let mut s = Slot {
            head,
            tail,
            nat_port,
            nat_addr,
            gateway: gw.0,
            state: 0,
            syns: 0,
            flags: LIVE,
            generation: self.slots[i].generation,
            last_seen: secs,
            hot_bytes: [0; 2],
            hot_packets: [0; 2],
        };
        s.set_reason(reason);
        if inbound {
            s.flags |= INBOUND;
        }
        if matches!(
            reason,
            ReasonKind::Forced | ReasonKind::Rule | ReasonKind::Pin
        ) {
            s.flags |= OVERRIDE;
        }
        let reply = self.reply_key(&s);
        if self.lookup(&reply).is_some() {
            // Another flow already answers to this reply key (e.g. two inside hosts using a
            // port-less protocol to the same remote): refuse rather than shadow it.
            self.nat_unbind(&s, now, src);
            self.free_slot(i);
            return Err(InsertError::Exists);
        }
        self.slots[i] = s;
        if let Some(l) = self.links.get_mut(i) {
            *l = Links {
                created: secs,
                ..UNLINKED
            };
        }
        if let Some(c) = self.acct.get_mut(i) {
            *c = FlowCounters::default();
        }
        // Counted and linked first, so that a failed index insert is undone by `unlink` like any
        // flow (removing an index entry that is not there changes nothing).
        if gw.0 != NO_GW {
            self.gw_link(i, gw.0);
        }
        self.live += 1;
        let ok = self.index.insert(key.index_hash(), id << 1)
            && self.index.insert(reply.index_hash(), (id << 1) | 1);
        if !ok {
            self.unlink(FlowId(id), now);
            return Err(InsertError::TableFull {
                max: self.cfg.max_flows,
            });
        }
        // Complete: on its source's books (the claim becomes this flow's count).
        self.links[i].src = src;
        if !inbound {
            self.slots[i].state |= LISTED;
            self.sources.push_unanswered(src, id);
        }
        let deadline = u64::from(secs) + u64::from(self.timeout_of(&self.slots[i]));
        self.schedule(id, self.slots[i].generation, deadline);
        self.stats.created += 1;
        self.epoch += 1;
        Ok(Hit {
            flow: FlowId(id),
            dir: Dir::Orig,
        })
    }

    /// The policy's choice for a new flow with `key` now (overrides first).
    pub(super) fn select(&self, key: &FlowKey, now: Time) -> Result<Choice, NoGateway> {
        policy::select(
            key,
            Inputs {
                gateways: &self.cfg.gateways,
                failures: &self.failures,
                policy: &self.cfg.policy,
                overrides: &self.cfg.overrides,
                now,
            },
        )
    }
}
