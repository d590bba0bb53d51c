//! Building a [`Context`]: the configuration's checks, the per-packet lookups precomputed from it,
//! and the lookups that read them (which port a frame arrived on, own / attached / private
//! addresses, gateways by NAT address and their MACs).

use core::net::Ipv4Addr;

use altroute_flow::{FlowTable, GatewayId, MAX_GATEWAYS, Time};

use super::{
    Bucket, Context, Counters, GwFast, MAX_PORTS, NO_GW_FAST, NO_PORT, NO_PORT_FAST,
    PipelineConfig, PipelineError, PortFast, PortId, Role, mask_of,
};
use crate::neigh::Neighbors;
use crate::wire::{MacAddr, VlanTci};

impl Context {
    /// A pipeline over `table`. The table's gateways and `cfg.gateways` correspond by index.
    ///
    /// The steps: check the configuration against the table, index the ports and the router's own
    /// addresses, read the gateways' NAT addresses, reserve the port forwards' external ports,
    /// then precompute the per-packet lookups (the port of a link, the attached networks, the
    /// private destinations, first-octet filters, gateways by NAT address) and the fast path's
    /// per-port and per-gateway arrays.
    pub fn new(cfg: PipelineConfig, mut table: FlowTable) -> Result<Context, PipelineError> {
        check_config(&cfg, &table)?;
        let (port_of, own) = index_ports(&cfg)?;
        let ext = nat_addresses(&table);
        reserve_port_forwards(&cfg, &mut table)?;
        let nets = attached_networks(&cfg);
        let (private4, private_first) = private_v4(&cfg);
        let special_first = special_first(private_first, &nets, &own, &ext);
        // What another pipeline precomputed per flow (the fast path's scratch) need not hold
        // under this configuration.
        table.clear_scratch();
        Ok(Context {
            counters: Counters::new(cfg.ports.len(), cfg.gateways.len()),
            icmp_bucket: Bucket::new(cfg.options.icmp_errors_per_sec),
            wan_echo_bucket: Bucket::new(cfg.options.wan_echo_replies_per_sec),
            lan_learn_bucket: Bucket::new(cfg.options.lan_learned_shared_per_sec),
            port_fast: fast_ports(&cfg),
            gw_fast: fast_gateways(&cfg),
            link_port: link_ports(&port_of),
            gw_ext: gateways_by_nat_address(&cfg, &ext),
            cfg,
            table,
            neighbors: Neighbors::new(4096),
            learned: Vec::with_capacity(super::LEARNED_MAX),
            arp_last_ms: Vec::new(),
            scratch: vec![0u8; 2048].into_boxed_slice(),
            port_of,
            own,
            ext,
            nets,
            private_first,
            private4,
            special_first,
            // (Not a version the neighbour table has yet: the first use fills the cache.)
            gw_macs_version: u64::MAX,
            fast_path: true,
        })
    }

    /// Turn the established-flow fast path of [`Context::process_batch`] on (the default) or off.
    /// Both paths give the same output for every frame; off is for A/B measurements and for
    /// ruling the fast path out when chasing a problem.
    pub fn set_fast_path(&mut self, on: bool) {
        self.fast_path = on;
    }

    /// The neighbours this context learned since the last call from frames the control plane
    /// does not see — the source of a LAN host's IPv4 frames, the sender of an ARP request — as
    /// (address, MAC, port index); only new neighbours and changed MACs. (ARP replies and
    /// gratuitous ARP go to the control plane whole, as [`super::ControlReason::ArpReply`].)
    ///
    /// With several workers each context learns only from the frames steered to it. The daemon
    /// hands these to its control thread, which teaches every worker: a worker forwarding to a
    /// LAN host that another worker has heard from then knows its MAC, as a single worker would,
    /// instead of dropping the frame to resolve it by ARP.
    pub fn take_learned(&mut self) -> impl Iterator<Item = (Ipv4Addr, MacAddr, u8)> + '_ {
        self.learned.drain(..)
    }

    /// Notes a new or changed neighbour for [`Context::take_learned`]: not if
    /// [`super::LEARNED_MAX`] are waiting (no allocation), and from LAN ports at most
    /// [`Options::lan_learned_shared_per_sec`](super::Options) (a flood of forged ARP or MACs
    /// from the LAN is learned by this worker but cannot crowd the control thread's queue).
    pub(super) fn note_learned(&mut self, ip: Ipv4Addr, mac: MacAddr, port: u8, now: Time) {
        let lan = self
            .cfg
            .ports
            .get(usize::from(port))
            .is_some_and(|p| p.role == Role::Lan);
        if self.learned.len() >= self.learned.capacity()
            || (lan && !self.lan_learn_bucket.take(now))
        {
            self.counters.learned_unshared += 1;
            return;
        }
        self.learned.push((ip, mac, port));
    }

    /// The configuration.
    pub fn config(&self) -> &PipelineConfig {
        &self.cfg
    }

    /// The MAC of gateway `g`'s next hop, if known (static or learned).
    #[inline]
    pub fn gateway_mac(&self, g: GatewayId) -> Option<MacAddr> {
        let spec = self.cfg.gateways.get(g.index())?;
        spec.mac.or_else(|| self.neighbors.get(spec.next_hop))
    }

    /// Re-read every gateway's MAC into the fast path's cache (`gw_fast`).
    #[cold]
    #[inline(never)]
    pub(super) fn refresh_gateway_macs(&mut self) {
        // In place: the cache is sized once in `new`, so a refresh allocates nothing.
        for g in 0..self.cfg.gateways.len() {
            let mac = self.gateway_mac(GatewayId(g as u8));
            if let Some(f) = self.gw_fast.get_mut(g) {
                f.mac = mac;
            }
        }
        self.gw_macs_version = self.neighbors.version();
    }

    #[inline]
    pub(super) fn port_for(&self, link: u8, vlan: Option<VlanTci>) -> Option<PortId> {
        let vid = vlan.map_or(0, |t| t.id());
        if vid == 0 {
            let p = self.link_port[usize::from(link)];
            return (p != NO_PORT).then_some(PortId(p));
        }
        self.port_of
            .iter()
            .find(|(l, v, _)| *l == link && *v == vid)
            .map(|&(_, _, p)| p)
    }

    #[inline]
    pub(super) fn is_own(&self, a: Ipv4Addr) -> Option<PortId> {
        self.own.iter().find(|(x, _)| *x == a).map(|&(_, p)| p)
    }

    /// The port whose attached network holds `a`, if any (the first in port order).
    #[inline]
    pub(super) fn attached(&self, a: Ipv4Addr) -> Option<PortId> {
        let a = u32::from(a);
        self.nets
            .iter()
            .find(|&&(net, m, _)| a & m == net)
            .map(|&(_, _, p)| p)
    }

    /// Whether `a` is on `port`'s attached networks (the reverse-path check of a LAN source: a
    /// prefix two ports carry is on both).
    #[inline]
    pub(super) fn on_link(&self, a: Ipv4Addr, port: PortId) -> bool {
        let a = u32::from(a);
        self.nets
            .iter()
            .any(|&(net, m, p)| p == port && a & m == net)
    }

    /// Whether `a` is in one of the private destinations.
    #[inline]
    pub(super) fn is_private(&self, a: Ipv4Addr) -> bool {
        let a = u32::from(a);
        self.private_first[(a >> 24) as usize] && self.private4.iter().any(|&(net, m)| a & m == net)
    }

    #[inline]
    pub(super) fn gateway_by_ext(&self, a: Ipv4Addr, port: PortId) -> Option<GatewayId> {
        self.gw_ext
            .iter()
            .find(|&&(x, p, _)| p == port && x == a)
            .map(|&(_, _, g)| g)
    }
}

/// The checks that need no index: the number of ports, the gateways against the table's, and that
/// every gateway is reached through a WAN port.
fn check_config(cfg: &PipelineConfig, table: &FlowTable) -> Result<(), PipelineError> {
    if cfg.ports.len() > MAX_PORTS {
        return Err(PipelineError::TooManyPorts(cfg.ports.len()));
    }
    if table.gateways().len() != cfg.gateways.len() {
        return Err(PipelineError::GatewayCount {
            table: table.gateways().len(),
            pipeline: cfg.gateways.len(),
        });
    }
    for (g, spec) in cfg.gateways.iter().enumerate() {
        match cfg.ports.get(usize::from(spec.port.0)) {
            Some(p) if p.role == Role::Wan => {}
            _ => {
                return Err(PipelineError::BadGatewayPort {
                    gateway: g,
                    port: spec.port.0,
                });
            }
        }
    }
    Ok(())
}

/// The ports by (link, VLAN id or 0), refusing two on the same pair, and every own address with
/// its port.
#[allow(clippy::type_complexity)]
fn index_ports(
    cfg: &PipelineConfig,
) -> Result<(Vec<(u8, u16, PortId)>, Vec<(Ipv4Addr, PortId)>), PipelineError> {
    let mut port_of: Vec<(u8, u16, PortId)> = Vec::new();
    let mut own = Vec::new();
    for (i, p) in cfg.ports.iter().enumerate() {
        let vid = p.vlan.unwrap_or(0);
        if let Some(&(_, _, other)) = port_of.iter().find(|(l, v, _)| *l == p.link && *v == vid) {
            return Err(PipelineError::DuplicatePort {
                a: cfg.ports[usize::from(other.0)].name.clone(),
                b: p.name.clone(),
            });
        }
        port_of.push((p.link, vid, PortId(i as u8)));
        for &(a, _) in &p.addrs {
            own.push((a, PortId(i as u8)));
        }
    }
    Ok((port_of, own))
}

/// Each gateway's IPv4 NAT address, by gateway index.
fn nat_addresses(table: &FlowTable) -> Vec<Option<Ipv4Addr>> {
    table
        .gateways()
        .iter()
        .map(|g| match g.nat_addr {
            Some(core::net::IpAddr::V4(a)) => Some(a),
            _ => None,
        })
        .collect()
}

/// Takes each port forward's external port out of the NAT pools of its gateways.
fn reserve_port_forwards(cfg: &PipelineConfig, table: &mut FlowTable) -> Result<(), PipelineError> {
    for pf in &cfg.port_forwards {
        for g in pf.gateways.iter() {
            table
                .reserve_port(g, pf.proto, pf.port)
                .map_err(|e| PipelineError::PortForward {
                    proto: pf.proto,
                    port: pf.port,
                    reason: e.to_string(),
                })?;
        }
    }
    Ok(())
}

/// The port of untagged (or VLAN 0) frames on each link, or `NO_PORT`.
fn link_ports(port_of: &[(u8, u16, PortId)]) -> [u8; 256] {
    let mut link_port = [NO_PORT; 256];
    for &(l, v, p) in port_of {
        if v == 0 {
            link_port[usize::from(l)] = p.0;
        }
    }
    link_port
}

/// Every attached network as (network, mask, port), in port order.
fn attached_networks(cfg: &PipelineConfig) -> Vec<(u32, u32, PortId)> {
    cfg.ports
        .iter()
        .enumerate()
        .flat_map(|(i, p)| {
            p.addrs.iter().map(move |&(net, len)| {
                let m = mask_of(len);
                (u32::from(net) & m, m, PortId(i as u8))
            })
        })
        .collect()
}

/// (NAT address, WAN port, gateway) of every gateway with a NAT address.
fn gateways_by_nat_address(
    cfg: &PipelineConfig,
    ext: &[Option<Ipv4Addr>],
) -> Vec<(Ipv4Addr, PortId, GatewayId)> {
    cfg.gateways
        .iter()
        .enumerate()
        .filter_map(|(i, g)| {
            ext.get(i)
                .copied()
                .flatten()
                .map(|a| (a, g.port, GatewayId(i as u8)))
        })
        .collect()
}

/// The IPv4 private destinations as (network, mask), and for each first octet whether any of
/// them may contain it.
fn private_v4(cfg: &PipelineConfig) -> (Vec<(u32, u32)>, [bool; 256]) {
    let private4: Vec<(u32, u32)> = cfg
        .options
        .private_destinations
        .iter()
        .filter_map(|p| match p.addr() {
            core::net::IpAddr::V4(a) => {
                let m = mask_of(p.prefix_len());
                Some((u32::from(a) & m, m))
            }
            core::net::IpAddr::V6(_) => None,
        })
        .collect();
    let mut private_first = [false; 256];
    for (o, f) in private_first.iter_mut().enumerate() {
        let lo = (o as u32) << 24;
        *f = private4
            .iter()
            .any(|&(n, m)| lo & m & 0xff00_0000 == n & 0xff00_0000);
    }
    (private4, private_first)
}

/// For each first octet: whether an address starting with it may be private, in an attached
/// network, an own address or a NAT address.
fn special_first(
    private_first: [bool; 256],
    nets: &[(u32, u32, PortId)],
    own: &[(Ipv4Addr, PortId)],
    ext: &[Option<Ipv4Addr>],
) -> [bool; 256] {
    let mut special = private_first;
    let mut mark = |net: u32, mask: u32| {
        // Every first octet the prefix (net, mask) covers.
        let lo = net >> 24;
        let hi = (net | !mask) >> 24;
        for o in lo..=hi {
            special[o as usize] = true;
        }
    };
    for &(net, m, _) in nets {
        mark(net, m);
    }
    for &(a, _) in own {
        mark(u32::from(a), u32::MAX);
    }
    for a in ext.iter().flatten() {
        mark(u32::from(*a), u32::MAX);
    }
    special
}

/// What the fast path reads of each port, by port index.
fn fast_ports(cfg: &PipelineConfig) -> [PortFast; MAX_PORTS] {
    let mut port_fast = [NO_PORT_FAST; MAX_PORTS];
    for (f, p) in port_fast.iter_mut().zip(&cfg.ports) {
        *f = PortFast {
            mac: p.mac,
            mtu: p.mtu,
            tagged: p.vlan.is_some(),
        };
    }
    port_fast
}

/// Each gateway's port for the fast path (its MAC is filled in on first use).
fn fast_gateways(cfg: &PipelineConfig) -> [GwFast; MAX_GATEWAYS] {
    let mut gw_fast = [NO_GW_FAST; MAX_GATEWAYS];
    for (f, g) in gw_fast.iter_mut().zip(&cfg.gateways) {
        f.port = g.port;
    }
    gw_fast
}
