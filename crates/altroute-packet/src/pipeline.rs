//! The pipeline: one frame in, one [`Verdict`] out.
//!
//! [`Context::process`] works in place on the frame buffer; [`Context::process_batch`] takes many
//! frames, parses them all, looks their flows up as one batch (so the table's cache misses
//! overlap), then handles each. Where to look for what:
//!
//! - **parse**: [`crate::fast::parse`] (fixed offsets), else [`crate::slow::parse`] (etherparse);
//! - **classify**: [`Context::classify_lan`] and [`Context::classify_wan`];
//! - **choose the gateway**: [`altroute_flow::FlowTable::insert`] (its policy) on a flow miss;
//! - **rewrite bytes**: [`rewrite_l3l4`] (addresses, ports, TTL, RFC 1624 checksum deltas) and
//!   [`Context::finish_l2`] (MACs, VLAN tag).
//!
//! Decisions this module documents:
//! - Oversized packets (larger than the out port's MTU, not a GSO super-frame): with DF set, an ICMP
//!   "fragmentation needed" goes back to the sender; without DF the packet is **dropped** and
//!   counted (`too_long_for_egress`): the router does not fragment.
//! - IPv4 fragments: the first fragment (which carries the ports) is translated like any packet;
//!   later fragments are dropped and counted (`fragment_without_flow`): no reassembly yet.
//! - An unknown next-hop MAC: the frame is replaced by an ARP request for the next hop (rate
//!   limited per target) and the packet is dropped and counted (`neighbor_unresolved`); the daemon
//!   resolves gateways at start-up, so this happens only for new LAN hosts and after a flush.
//! - Direct delivery between two LAN ports is routed without translation or flow state; a host on a
//!   WAN's own subnet is reached through that WAN's gateway with its address (NAT), since it cannot
//!   route the LAN's private addresses back.

use core::net::Ipv4Addr;

use altroute_flow::{
    Dir, FlowKey, FlowTable, GatewayId, GatewaySet, Hit, InsertError, MAX_GATEWAYS, NoGateway,
    PendingLookup, Prefix, Time, Update, proto,
};

use crate::build::{self, L2};
use crate::checksum::{self, Delta};
use crate::drop::{DropCounters, DropReason};
use crate::fast::{self, FastOptions, FastParse, IcmpQuery};
use crate::neigh::{Learned, Neighbors};
use crate::slow::{self, Embedded, SlowKind, SlowL4};
use crate::wire::{self, ArpOp, EtherType, MacAddr, VlanTci};

mod fast_path;
pub mod offload;

/// Largest frame the pipeline accepts: a 64 KiB IP packet behind an Ethernet header and a tag.
pub const MAX_FRAME: usize = 65535 + 18;
/// ICMP echo identifiers below this, answered to the router's own address, are the router's own
/// health probes (NAT never hands them out: its ICMP pool starts at the NAT port range).
pub const PROBE_ID_LIMIT: u16 = 1024;

/// A port of the router: a (link, VLAN) pair with a role and addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortId(pub u8);

/// Which side of the router a port is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Inside: hosts being translated.
    Lan,
    /// Outside: an ISP link.
    Wan,
}

/// One port's configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct PortSpec {
    /// Name, for counters and logs.
    pub name: String,
    /// LAN or WAN.
    pub role: Role,
    /// The I/O link (interface) it lives on, as numbered by the caller.
    pub link: u8,
    /// The 802.1Q VLAN id of the port, if it is a VLAN sub-interface.
    pub vlan: Option<u16>,
    /// The port's MAC address.
    pub mac: MacAddr,
    /// The router's own addresses on this port, with their prefixes (attached networks).
    pub addrs: Vec<(Ipv4Addr, u8)>,
    /// IP MTU of the port.
    pub mtu: u16,
}

/// One gateway: the pipeline's side of an [`altroute_flow::Gateway`] with the same index.
#[derive(Clone, Debug, PartialEq)]
pub struct GatewaySpec {
    /// The WAN port it is reached through.
    pub port: PortId,
    /// Its IPv4 address (the next hop).
    pub next_hop: Ipv4Addr,
    /// A static MAC; `None` resolves it by ARP.
    pub mac: Option<MacAddr>,
}

/// A port forward: connections to `port` on the listed gateways' addresses go to `to`.
#[derive(Clone, Debug, PartialEq)]
pub struct PortForward {
    /// TCP or UDP.
    pub proto: u8,
    /// The external port.
    pub port: u16,
    /// The inside address and port.
    pub to: (Ipv4Addr, u16),
    /// The gateways (links) it is open on.
    pub gateways: GatewaySet,
}

/// Pipeline settings.
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    /// Verify incoming IPv4 header checksums (drop `ipv4_bad_checksum`).
    pub verify_ipv4_checksum: bool,
    /// Answer packets of flows whose gateway died with a TCP RST or ICMP prohibited (else drop).
    pub reject: bool,
    /// ICMP errors the router may send per second (time exceeded, fragmentation needed, prohibited).
    pub icmp_errors_per_sec: u32,
    /// Destinations never sent out a WAN (RFC 1918, loopback, link-local, multicast, ...).
    pub private_destinations: Vec<Prefix>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            verify_ipv4_checksum: true,
            reject: true,
            icmp_errors_per_sec: 100,
            private_destinations: default_private(),
        }
    }
}

/// The default private destinations: RFC 1918, shared space (RFC 6598), loopback, link-local,
/// multicast, reserved and "this network". The documentation ranges are not in it.
pub fn default_private() -> Vec<Prefix> {
    [
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "0.0.0.0/8",
    ]
    .iter()
    .filter_map(|s| s.parse().ok())
    .collect()
}

/// Everything the pipeline is built from (besides the flow table).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct PipelineConfig {
    /// Ports, indexed by [`PortId`].
    pub ports: Vec<PortSpec>,
    /// Gateways, indexed like the flow table's.
    pub gateways: Vec<GatewaySpec>,
    /// Port forwards.
    pub port_forwards: Vec<PortForward>,
    /// Settings.
    pub options: Options,
}

/// Why a pipeline configuration was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PipelineError {
    /// Too many ports.
    #[error("{0} ports: at most {MAX_PORTS}")]
    TooManyPorts(usize),
    /// A gateway names a port that does not exist or is not a WAN.
    #[error("gateway {gateway} uses port {port}, which is not a WAN port")]
    BadGatewayPort {
        /// Gateway index.
        gateway: usize,
        /// Port index.
        port: u8,
    },
    /// The flow table's gateways and the pipeline's differ in number.
    #[error("the flow table has {table} gateways, the pipeline {pipeline}")]
    GatewayCount {
        /// In the table.
        table: usize,
        /// In the pipeline.
        pipeline: usize,
    },
    /// Two ports on the same link and VLAN.
    #[error("ports {a} and {b} are on the same link and VLAN")]
    DuplicatePort {
        /// First port.
        a: String,
        /// Second port.
        b: String,
    },
    /// A port forward's external port is in use.
    #[error("port forward {proto}/{port}: {reason}")]
    PortForward {
        /// Protocol.
        proto: u8,
        /// Port.
        port: u16,
        /// Why.
        reason: String,
    },
}

/// Per-frame metadata from the I/O layer, updated by the pipeline for transmission.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FrameMeta {
    /// The L4 checksum is unfinished ("checksum not ready", virtio-net NEEDS_CSUM): the field holds
    /// the pseudo-header sum and `csum_start`/`csum_offset` say where. The pipeline keeps it so
    /// (updating the pseudo-header part) and shifts `csum_start` when it adds or removes a tag.
    pub partial: Option<(u16, u16)>,
    /// The frame is a GSO super-frame the kernel will segment on transmit (no MTU check).
    pub gso: bool,
}

/// Why a frame goes to the control plane.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ControlReason {
    /// An ICMP echo reply to one of the router's health probes.
    ProbeReply,
    /// An ARP reply (or gratuitous ARP) was learned; the health checker may want it.
    ArpReply,
    /// Addressed to the router itself, and not something the pipeline answers.
    Local,
}

/// What to do with a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Send the first `len` bytes of the buffer on `port`.
    Forward {
        /// The out port.
        port: PortId,
        /// The frame's new length.
        len: usize,
    },
    /// Send the first `len` bytes of the buffer back on the port the frame came from (it was
    /// replaced by an answer: ARP reply, ICMP echo reply or error, TCP RST).
    Reply {
        /// The answer's length.
        len: usize,
    },
    /// Drop it; the reason was counted.
    Drop(DropReason),
    /// Hand it, unchanged, to the control plane.
    Control(ControlReason),
}

/// Counters of one worker's pipeline (sum them across workers to export).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Counters {
    /// Drops by reason.
    pub drops: DropCounters,
    /// Frames received per port.
    pub rx_frames: Vec<u64>,
    /// Frames forwarded out of each port.
    pub tx_frames: Vec<u64>,
    /// Bytes forwarded out of each port.
    pub tx_bytes: Vec<u64>,
    /// Packets and bytes sent out through each gateway.
    pub gw_out: Vec<(u64, u64)>,
    /// Packets and bytes received back through each gateway.
    pub gw_in: Vec<(u64, u64)>,
    /// Answers generated (ARP, echo replies).
    pub replies: u64,
    /// ICMP errors generated.
    pub icmp_errors: u64,
    /// TCP RSTs and ICMP prohibited sent for flows of dead gateways.
    pub rejects: u64,
    /// ARP requests sent to resolve next hops.
    pub arp_requests: u64,
    /// Neighbours whose MAC changed (gratuitous ARP, replaced hardware).
    pub neighbor_changes: u64,
    /// Frames handed to the control plane.
    pub control: u64,
    /// Frames forwarded by the established-flow fast path (a subset of the forwarded frames; the
    /// rest took the full path).
    pub fast_path: u64,
}

impl Counters {
    fn new(ports: usize, gateways: usize) -> Counters {
        Counters {
            drops: DropCounters::new(),
            rx_frames: vec![0; ports],
            tx_frames: vec![0; ports],
            tx_bytes: vec![0; ports],
            gw_out: vec![(0, 0); gateways],
            gw_in: vec![(0, 0); gateways],
            replies: 0,
            icmp_errors: 0,
            rejects: 0,
            arp_requests: 0,
            neighbor_changes: 0,
            control: 0,
            fast_path: 0,
        }
    }
}

/// A token bucket for generated ICMP errors.
#[derive(Clone, Debug)]
struct Bucket {
    rate: u32,
    tokens: u32,
    last_ms: u64,
}

impl Bucket {
    fn take(&mut self, now: Time) -> bool {
        let elapsed = now.millis().saturating_sub(self.last_ms);
        if elapsed > 0 {
            let add = elapsed.saturating_mul(u64::from(self.rate)) / 1000;
            if add > 0 {
                self.tokens =
                    (u64::from(self.tokens) + add).min(u64::from(self.rate.max(1))) as u32;
                self.last_ms = now.millis();
            }
        }
        if self.tokens > 0 {
            self.tokens -= 1;
            true
        } else {
            false
        }
    }
}

/// One frame handed to [`Context::process_batch`].
#[derive(Debug)]
pub struct Packet<'a> {
    /// The buffer: the frame in its first `len` bytes, and room after it for a larger answer or a
    /// VLAN tag (a slot of the RX ring).
    pub buf: &'a mut [u8],
    /// The frame's length.
    pub len: usize,
    /// The link it arrived on.
    pub link: u8,
    /// Offload metadata, updated for transmit.
    pub meta: FrameMeta,
}

/// The L3/L4 view of an IPv4 packet being forwarded (from the fast or the slow parser).
#[derive(Clone, Copy, Debug)]
struct Ip4 {
    key: FlowKey,
    l3: usize,
    l4: usize,
    ip_end: usize,
    ttl: u8,
    flags: u8,
    icmp: IcmpQuery,
    df: bool,
    vlan: Option<VlanTci>,
}

/// One worker's pipeline: configuration, flow table, neighbour table, counters.
pub struct Context {
    cfg: PipelineConfig,
    /// The flow table (the daemon reaches it for link events, expiry and snapshots).
    pub table: FlowTable,
    /// The neighbour (ARP) table.
    pub neighbors: Neighbors,
    /// Counters.
    pub counters: Counters,
    icmp_bucket: Bucket,
    arp_last_ms: Vec<(u32, u64)>,
    scratch: Box<[u8]>,
    /// For each (link, vlan or 0): the port, if any.
    port_of: Vec<(u8, u16, PortId)>,
    /// Every own address and its port.
    own: Vec<(Ipv4Addr, PortId)>,
    /// Gateway NAT addresses, by gateway index.
    ext: Vec<Option<Ipv4Addr>>,
    // Per-packet lookups, precomputed from `cfg` (which never changes after `new`):
    /// The port of untagged (or VLAN 0) frames on each link, or `NO_PORT`.
    link_port: [u8; 256],
    /// Every attached network as (network, mask, port), in port order.
    nets: Vec<(u32, u32, PortId)>,
    /// For each first octet: whether any IPv4 private destination may contain it.
    private_first: [bool; 256],
    /// The IPv4 private destinations as (network, mask).
    private4: Vec<(u32, u32)>,
    /// (NAT address, WAN port, gateway) of every gateway with a NAT address, by gateway index.
    gw_ext: Vec<(Ipv4Addr, PortId, GatewayId)>,
    /// For each first octet: whether an address starting with it may be an own address, a NAT
    /// address, in an attached network or in a private destination (false: none of the four
    /// scans can match, so the fast path skips them).
    special_first: [bool; 256],
    /// What the fast path reads of each port, by port index.
    port_fast: [PortFast; MAX_PORTS],
    /// Each gateway's port and next-hop MAC as [`Context::gateway_mac`] gave it when the
    /// neighbour table was at version `gw_macs_version` (the fast path reads this instead of
    /// probing the table), by gateway index.
    gw_fast: [GwFast; MAX_GATEWAYS],
    gw_macs_version: u64,
    /// Whether [`Context::process_batch`] tries the established-flow fast path first.
    fast_path: bool,
}

const NO_PORT: u8 = 0xff;
/// The most ports a pipeline takes (a power of two: the fast path indexes by remainder).
const MAX_PORTS: usize = 64;

/// A port as the fast path sees it (copied from its [`PortSpec`]).
#[derive(Clone, Copy, Debug)]
struct PortFast {
    mac: MacAddr,
    mtu: u16,
    /// Whether frames leave it with an 802.1Q tag (the fast path leaves those to `finish_l2`).
    tagged: bool,
}

const NO_PORT_FAST: PortFast = PortFast {
    mac: MacAddr([0; 6]),
    mtu: 0,
    tagged: false,
};

/// A gateway as the fast path sees it.
#[derive(Clone, Copy, Debug)]
struct GwFast {
    port: PortId,
    /// The next hop's MAC, if known.
    mac: Option<MacAddr>,
}

const NO_GW_FAST: GwFast = GwFast {
    port: PortId(NO_PORT),
    mac: None,
};

fn mask_of(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len.min(32)))
    }
}

fn ipv4_of(b: &[u8; 16]) -> Ipv4Addr {
    Ipv4Addr::new(b[0], b[1], b[2], b[3])
}

fn in_prefix(a: Ipv4Addr, net: Ipv4Addr, len: u8) -> bool {
    let m = if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len.min(32)))
    };
    u32::from(a) & m == u32::from(net) & m
}

#[inline]
fn rd16(b: &[u8], at: usize) -> u16 {
    wire::rd16(b, at)
}

#[inline]
fn wr16(b: &mut [u8], at: usize, v: u16) {
    wire::wr16(b, at, v)
}

impl Context {
    /// A pipeline over `table`. The table's gateways and `cfg.gateways` correspond by index.
    pub fn new(cfg: PipelineConfig, mut table: FlowTable) -> Result<Context, PipelineError> {
        if cfg.ports.len() > MAX_PORTS {
            return Err(PipelineError::TooManyPorts(cfg.ports.len()));
        }
        if table.gateways().len() != cfg.gateways.len() {
            return Err(PipelineError::GatewayCount {
                table: table.gateways().len(),
                pipeline: cfg.gateways.len(),
            });
        }
        let mut port_of: Vec<(u8, u16, PortId)> = Vec::new();
        let mut own = Vec::new();
        for (i, p) in cfg.ports.iter().enumerate() {
            let vid = p.vlan.unwrap_or(0);
            if let Some(&(_, _, other)) = port_of.iter().find(|(l, v, _)| *l == p.link && *v == vid)
            {
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
        let ext: Vec<Option<Ipv4Addr>> = table
            .gateways()
            .iter()
            .map(|g| match g.nat_addr {
                Some(core::net::IpAddr::V4(a)) => Some(a),
                _ => None,
            })
            .collect();
        for pf in &cfg.port_forwards {
            for g in pf.gateways.iter() {
                table.reserve_port(g, pf.proto, pf.port).map_err(|e| {
                    PipelineError::PortForward {
                        proto: pf.proto,
                        port: pf.port,
                        reason: e.to_string(),
                    }
                })?;
            }
        }
        let counters = Counters::new(cfg.ports.len(), cfg.gateways.len());
        let rate = cfg.options.icmp_errors_per_sec;
        let mut link_port = [NO_PORT; 256];
        for &(l, v, p) in &port_of {
            if v == 0 {
                link_port[usize::from(l)] = p.0;
            }
        }
        let nets = cfg
            .ports
            .iter()
            .enumerate()
            .flat_map(|(i, p)| {
                p.addrs.iter().map(move |&(net, len)| {
                    let m = mask_of(len);
                    (u32::from(net) & m, m, PortId(i as u8))
                })
            })
            .collect();
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
        let mut special_first = private_first;
        let mut mark = |net: u32, mask: u32| {
            // Every first octet the prefix (net, mask) covers.
            let lo = net >> 24;
            let hi = (net | !mask) >> 24;
            for o in lo..=hi {
                special_first[o as usize] = true;
            }
        };
        for &(net, m, _) in &nets {
            mark(net, m);
        }
        for &(a, _) in &own {
            mark(u32::from(a), u32::MAX);
        }
        for a in ext.iter().flatten() {
            mark(u32::from(*a), u32::MAX);
        }
        let gw_ext = cfg
            .gateways
            .iter()
            .enumerate()
            .filter_map(|(i, g)| {
                ext.get(i)
                    .copied()
                    .flatten()
                    .map(|a| (a, g.port, GatewayId(i as u8)))
            })
            .collect();
        // What another pipeline precomputed per flow (the fast path's scratch) need not hold
        // under this configuration.
        table.clear_scratch();
        let mut port_fast = [NO_PORT_FAST; MAX_PORTS];
        for (f, p) in port_fast.iter_mut().zip(&cfg.ports) {
            *f = PortFast {
                mac: p.mac,
                mtu: p.mtu,
                tagged: p.vlan.is_some(),
            };
        }
        let mut gw_fast = [NO_GW_FAST; MAX_GATEWAYS];
        for (f, g) in gw_fast.iter_mut().zip(&cfg.gateways) {
            f.port = g.port;
        }
        Ok(Context {
            cfg,
            table,
            neighbors: Neighbors::new(4096),
            counters,
            icmp_bucket: Bucket {
                rate,
                tokens: rate,
                last_ms: 0,
            },
            arp_last_ms: Vec::new(),
            scratch: vec![0u8; 2048].into_boxed_slice(),
            port_of,
            own,
            ext,
            link_port,
            nets,
            private_first,
            private4,
            gw_ext,
            special_first,
            port_fast,
            gw_fast,
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
    fn port_for(&self, link: u8, vlan: Option<VlanTci>) -> Option<PortId> {
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

    fn drop(&mut self, r: DropReason) -> Verdict {
        self.counters.drops.inc(r);
        Verdict::Drop(r)
    }

    #[inline]
    fn is_own(&self, a: Ipv4Addr) -> Option<PortId> {
        self.own.iter().find(|(x, _)| *x == a).map(|&(_, p)| p)
    }

    /// The port whose attached network holds `a`, if any (the first in port order).
    #[inline]
    fn attached(&self, a: Ipv4Addr) -> Option<PortId> {
        let a = u32::from(a);
        self.nets
            .iter()
            .find(|&&(net, m, _)| a & m == net)
            .map(|&(_, _, p)| p)
    }

    /// Whether `a` is in one of the private destinations.
    #[inline]
    fn is_private(&self, a: Ipv4Addr) -> bool {
        let a = u32::from(a);
        self.private_first[(a >> 24) as usize] && self.private4.iter().any(|&(net, m)| a & m == net)
    }

    #[inline]
    fn gateway_by_ext(&self, a: Ipv4Addr, port: PortId) -> Option<GatewayId> {
        self.gw_ext
            .iter()
            .find(|&&(x, p, _)| p == port && x == a)
            .map(|&(_, _, g)| g)
    }

    /// Process one frame in place. `buf[..len]` is the frame; the rest of `buf` is room for a
    /// larger answer or a VLAN tag. `link` is the I/O link it arrived on.
    pub fn process(
        &mut self,
        buf: &mut [u8],
        len: usize,
        link: u8,
        meta: &mut FrameMeta,
        now: Time,
    ) -> Verdict {
        self.process_one(buf, len, link, meta, now, None)
    }

    /// Process a batch: parse every frame, look its flow up, handle it. `verdicts` receives one
    /// verdict per packet (it must be at least as long as `pkts`).
    ///
    /// The batch goes through in stages, up to 64 frames at a time, so that the memory accesses
    /// of all its lookups overlap: every frame is parsed, then the lookups of all of them are
    /// started ([`FlowTable::lookup_batch_start`]: buckets, then flows prefetched), then each
    /// frame's lookup is finished (`lookup_finish`) and the frame handled, in order. (Stages run a fixed distance apart, a frame's bucket 16 frames
    /// ahead and its flow 8, were 6–7 % slower at 64k flows and 19–22 % at 1M, batches of 32 to
    /// 256, interleaved in one process on a Zen 5 guest: each batch started with nothing in flight.)
    pub fn process_batch(&mut self, pkts: &mut [Packet<'_>], now: Time, verdicts: &mut [Verdict]) {
        const CHUNK: usize = 64;
        let opts = FastOptions {
            verify_ipv4_checksum: self.cfg.options.verify_ipv4_checksum,
        };
        let n = pkts.len().min(verdicts.len());
        let mut start = 0;
        while start < n {
            let end = (start + CHUNK).min(n);
            let m = end - start;
            let chunk = &mut pkts[start..end];
            let verdicts = &mut verdicts[start..end];
            // Each frame is parsed once, into place; a frame whose length does not fit its buffer
            // gets `Drop(Other)` here and is handled (and counted) by `process_one`.
            let mut parsed = [const { FastParse::Drop(DropReason::Other) }; CHUNK];
            let mut pending = [PendingLookup::NONE; CHUNK];
            // (Parsing all frames before starting any lookup also keeps a key's freshly stored
            // bytes out of the store buffer when the hash reads them.)
            for (p, r) in chunk.iter().zip(&mut parsed) {
                self.parse_ahead(p, opts, r);
            }
            let keys = parsed[..m].iter().map(|r| match r {
                FastParse::Fast(ff) => Some(&ff.key),
                _ => None,
            });
            self.table.lookup_batch_start(keys, &mut pending);
            // A flow created, removed or re-mapped by an earlier frame of the batch makes the
            // pending lookups stale (a freed slot may be reused): after that, frames take the
            // full path, which looks up afresh. The fast path never does any of that.
            let epoch = self.table.epoch();
            let mut fresh = true;
            for i in 0..m {
                let (r, p) = (&parsed[i], &mut chunk[i]);
                let hit = match r {
                    FastParse::Fast(ff) if fresh => self.table.lookup_finish(&ff.key, pending[i]),
                    _ => None,
                };
                if fresh
                    && self.fast_path
                    && let (FastParse::Fast(ff), Some(h)) = (r, hit)
                    && let Some(v) = self.fast_forward(p, now, ff, h)
                {
                    verdicts[i] = v;
                    continue;
                }
                verdicts[i] = if p.len <= p.buf.len() {
                    let pre = match r {
                        FastParse::Fast(_) if fresh => Some(hit),
                        _ => None,
                    };
                    self.process_parsed(p.buf, p.len, p.link, &mut p.meta, now, *r, pre)
                } else {
                    self.process_one(p.buf, p.len, p.link, &mut p.meta, now, None)
                };
                // Only the full path changes the table's flows.
                fresh = fresh && self.table.epoch() == epoch;
            }
            start = end;
        }
    }

    /// The first stage of [`Context::process_batch`] for one frame: parse it into `r`.
    #[inline(always)]
    fn parse_ahead(&self, p: &Packet<'_>, opts: FastOptions, r: &mut FastParse) {
        if let Some(f) = p.buf.get(..p.len) {
            fast::parse_common_into(f, opts, r);
        }
    }

    fn process_one(
        &mut self,
        buf: &mut [u8],
        len: usize,
        link: u8,
        meta: &mut FrameMeta,
        now: Time,
        pre: Option<Option<Hit>>,
    ) -> Verdict {
        if len > buf.len() {
            return self.drop(DropReason::Other);
        }
        if len > MAX_FRAME {
            return self.drop(DropReason::TooBig);
        }
        let opts = FastOptions {
            verify_ipv4_checksum: self.cfg.options.verify_ipv4_checksum,
        };
        let parsed = fast::parse(&buf[..len], opts);
        self.process_parsed(buf, len, link, meta, now, parsed, pre)
    }

    /// [`Context::process_one`] after the fast parse (`parsed` is `fast::parse(&buf[..len])`).
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn process_parsed(
        &mut self,
        buf: &mut [u8],
        len: usize,
        link: u8,
        meta: &mut FrameMeta,
        now: Time,
        parsed: FastParse,
        pre: Option<Option<Hit>>,
    ) -> Verdict {
        if len > buf.len() {
            return self.drop(DropReason::Other);
        }
        if len > MAX_FRAME {
            return self.drop(DropReason::TooBig);
        }
        let ip = match parsed {
            FastParse::Drop(r) => return self.drop(r),
            FastParse::Fast(ff) => Ip4 {
                key: ff.key,
                l3: usize::from(ff.l3_offset),
                l4: ff.l4_offset(),
                ip_end: ff.ip_end(),
                ttl: ff.ttl,
                flags: ff.tcp_flags.0,
                icmp: ff.icmp,
                df: buf
                    .get(usize::from(ff.l3_offset) + 6)
                    .is_some_and(|b| b & 0x40 != 0),
                vlan: ff.vlan,
            },
            FastParse::Slow(_) => return self.slow(buf, len, link, meta, now),
        };
        let Some(port) = self.port_for(link, ip.vlan) else {
            return self.drop(DropReason::WrongVlan);
        };
        self.counters.rx_frames[usize::from(port.0)] += 1;
        let spec = &self.cfg.ports[usize::from(port.0)];
        let dst_mac = MacAddr([buf[0], buf[1], buf[2], buf[3], buf[4], buf[5]]);
        if dst_mac != spec.mac && !dst_mac.is_broadcast() {
            return self.drop(DropReason::NotForUs);
        }
        let pre = pre.filter(|_| true);
        match spec.role {
            Role::Lan => self.classify_lan(buf, len, port, ip, meta, now, pre),
            Role::Wan => self.classify_wan(buf, len, port, ip, meta, now, pre),
        }
    }

    // ----- LAN side -----

    /// A packet from the inside: to the router, to another attached network, or out through a
    /// gateway (new or existing flow).
    #[allow(clippy::too_many_arguments)]
    fn classify_lan(
        &mut self,
        buf: &mut [u8],
        len: usize,
        port: PortId,
        ip: Ip4,
        meta: &mut FrameMeta,
        now: Time,
        pre: Option<Option<Hit>>,
    ) -> Verdict {
        let Some(src) = ip.key.src_v4() else {
            return self.drop(DropReason::Other);
        };
        let Some(dst) = ip.key.dst_v4() else {
            return self.drop(DropReason::Other);
        };
        // Learn the sender (cheap when unchanged).
        let src_mac = MacAddr([buf[6], buf[7], buf[8], buf[9], buf[10], buf[11]]);
        if self.attached(src) == Some(port) && self.neighbors.get(src) != Some(src_mac) {
            if let Learned::Changed { .. } = self.neighbors.learn(src, src_mac, port.0, now) {
                self.counters.neighbor_changes += 1;
            }
        }
        if self.is_own(dst).is_some() {
            if self.ext.contains(&Some(dst))
                && self.cfg.ports[usize::from(port.0)]
                    .addrs
                    .iter()
                    .all(|a| a.0 != dst)
            {
                return self.hairpin(buf, len, port, ip, meta, now);
            }
            return self.local(buf, len, port, ip, now);
        }
        if ip.ttl <= 1 {
            return self.time_exceeded(buf, port, ip, now);
        }
        match self.attached(dst) {
            Some(p) if p == port => return self.drop(DropReason::NotForUs),
            Some(p) if self.cfg.ports[usize::from(p.0)].role == Role::Lan => {
                return self.route_direct(buf, len, p, ip, meta, now);
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
                        Err(e) => return self.insert_failed(e),
                    },
                };
                return self.forward_flow(buf, len, port, ip, hit, meta, now);
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
                Err(e) => return self.insert_failed(e),
            },
        };
        self.forward_flow(buf, len, port, ip, hit, meta, now)
    }

    fn insert_failed(&mut self, e: InsertError) -> Verdict {
        self.drop(match e {
            InsertError::TableFull { .. } => DropReason::TableFull,
            InsertError::PortsExhausted { .. } => DropReason::PortsExhausted,
            InsertError::NoGateway(NoGateway::RuleRejects { .. }) => DropReason::Policy,
            InsertError::NoGateway(NoGateway::NoneUsable) => DropReason::GatewayDown,
            InsertError::NotSyn => DropReason::TcpNoFlowNoSyn,
            _ => DropReason::Other,
        })
    }

    /// Forward a packet that belongs to a flow, in either direction.
    #[allow(clippy::too_many_arguments)]
    fn forward_flow(
        &mut self,
        buf: &mut [u8],
        len: usize,
        in_port: PortId,
        ip: Ip4,
        hit: Hit,
        meta: &mut FrameMeta,
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
            return self.drop(DropReason::Other);
        };
        let key = flow.key();
        let gw = flow.gateway();
        let nat = flow.nat().map(|(a, p)| (ipv4_of(a), p));
        match hit.dir {
            Dir::Orig => {
                let Some(g) = gw else {
                    return self.drop(DropReason::NoRoute);
                };
                let Some(spec) = self.cfg.gateways.get(g.index()) else {
                    return self.drop(DropReason::Other);
                };
                let out = spec.port;
                let gw_hop = spec.next_hop;
                let src = ipv4_of(key.src_bytes());
                let (new_src, new_sport) = nat.unwrap_or((src, key.sport));
                let dst = ipv4_of(key.dst_bytes());
                if self.ext.contains(&Some(dst)) {
                    // Hairpin: handled by `hairpin`, never routed out.
                    return self.drop(DropReason::Other);
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
                    return self.resolve(buf, out, hop, now);
                };
                if let Some(v) = self.mtu_check(buf, in_port, out, ip, meta, now) {
                    return v;
                }
                rewrite_l3l4(buf, &ip, Some((new_src, new_sport)), None, meta);
                self.count_gateway(g, Dir::Orig, ip_len);
                self.finish_l2(buf, len, out, mac, ip.vlan, meta)
            }
            Dir::Reply => {
                // Back to the inside host: the original source.
                let inside = ipv4_of(key.src_bytes());
                let Some(out) = self.attached(inside) else {
                    return self.drop(DropReason::NoRoute);
                };
                let Some(mac) = self.neighbors.get(inside) else {
                    return self.resolve(buf, out, inside, now);
                };
                if let Some(v) = self.mtu_check(buf, in_port, out, ip, meta, now) {
                    return v;
                }
                rewrite_l3l4(buf, &ip, None, Some((inside, key.sport)), meta);
                if let Some(g) = gw {
                    self.count_gateway(g, Dir::Reply, ip_len);
                }
                self.finish_l2(buf, len, out, mac, ip.vlan, meta)
            }
        }
    }

    /// Between two LAN ports: routed, not translated, no flow state.
    fn route_direct(
        &mut self,
        buf: &mut [u8],
        len: usize,
        out: PortId,
        ip: Ip4,
        meta: &mut FrameMeta,
        now: Time,
    ) -> Verdict {
        let Some(dst) = ip.key.dst_v4() else {
            return self.drop(DropReason::Other);
        };
        let Some(mac) = self.neighbors.get(dst) else {
            return self.resolve(buf, out, dst, now);
        };
        rewrite_l3l4(buf, &ip, None, None, meta);
        self.finish_l2(buf, len, out, mac, ip.vlan, meta)
    }

    /// A LAN host sending to the router's own external address and port: the host mapped there
    /// (a port forward or any live mapping) is reached through the router (RFC 4787 REQ-9).
    fn hairpin(
        &mut self,
        buf: &mut [u8],
        len: usize,
        in_port: PortId,
        ip: Ip4,
        meta: &mut FrameMeta,
        now: Time,
    ) -> Verdict {
        let Some(ext) = ip.key.dst_v4() else {
            return self.drop(DropReason::Other);
        };
        let Some(g) = self
            .ext
            .iter()
            .position(|e| *e == Some(ext))
            .map(|i| GatewayId(i as u8))
        else {
            return self.drop(DropReason::Other);
        };
        if ip.ttl <= 1 {
            return self.time_exceeded(buf, in_port, ip, now);
        }
        // First half: the sender's flow, source-translated on the gateway's address.
        let first = match self.table.lookup(&ip.key) {
            Some(h) if h.dir == Dir::Orig => h,
            Some(_) => return self.drop(DropReason::Other),
            None => {
                if self.hairpin_target(g, ip.key.proto, ip.key.dport).is_none() {
                    return self.drop(DropReason::Unsolicited);
                }
                match self.table.insert_via(ip.key, g, now) {
                    Ok(h) => h,
                    Err(e) => return self.insert_failed(e),
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
            return self.drop(DropReason::Other);
        };
        // Second half: the same packet as seen arriving at the external address.
        let k2 = FlowKey::v4(snat_a, ext, ip.key.proto, snat_p, ip.key.dport);
        let second = match self.table.lookup(&k2) {
            Some(h) if h.dir == Dir::Reply => h,
            Some(_) => return self.drop(DropReason::Other),
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
                    Err(e) => return self.insert_failed(e),
                }
            }
        };
        self.table.update(second, now, ip.flags, ip_len);
        let Some(target) = self.table.flow(second.flow).map(|f| f.key()) else {
            return self.drop(DropReason::Other);
        };
        let to = ipv4_of(target.src_bytes());
        let Some(out) = self.attached(to) else {
            return self.drop(DropReason::NoRoute);
        };
        let Some(mac) = self.neighbors.get(to) else {
            return self.resolve(buf, out, to, now);
        };
        rewrite_l3l4(
            buf,
            &ip,
            Some((snat_a, snat_p)),
            Some((to, target.sport)),
            meta,
        );
        self.finish_l2(buf, len, out, mac, ip.vlan, meta)
    }

    fn hairpin_target(&self, g: GatewayId, proto: u8, port: u16) -> Option<(Ipv4Addr, u16)> {
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

    // ----- WAN side -----

    /// A packet from an ISP link: a reply to a flow, a port forward, an echo to the router, a probe
    /// reply — or unsolicited.
    #[allow(clippy::too_many_arguments)]
    fn classify_wan(
        &mut self,
        buf: &mut [u8],
        len: usize,
        port: PortId,
        ip: Ip4,
        meta: &mut FrameMeta,
        now: Time,
        pre: Option<Option<Hit>>,
    ) -> Verdict {
        let Some(dst) = ip.key.dst_v4() else {
            return self.drop(DropReason::Other);
        };
        if self.is_own(dst) != Some(port) && self.gateway_by_ext(dst, port).is_none() {
            return self.drop(DropReason::NotForUs);
        }
        if let Some(src) = ip.key.src_v4()
            && self.is_private(src)
            && self.attached(src) != Some(port)
        {
            return self.drop(DropReason::BogonSource);
        }
        if let Some(h) = pre.unwrap_or_else(|| self.table.lookup(&ip.key)) {
            if h.dir != Dir::Reply {
                return self.drop(DropReason::Other);
            }
            if ip.ttl <= 1 {
                return self.time_exceeded(buf, port, ip, now);
            }
            return self.forward_flow(buf, len, port, ip, h, meta, now);
        }
        if ip.key.proto == proto::ICMP {
            if ip.icmp == IcmpQuery::Reply && ip.key.dport < PROBE_ID_LIMIT {
                self.counters.control += 1;
                return Verdict::Control(ControlReason::ProbeReply);
            }
            if ip.icmp == IcmpQuery::Request {
                return self.echo_reply(buf, port, ip);
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
            let Some(remote) = ip.key.src_v4() else {
                return self.drop(DropReason::Other);
            };
            let inside = FlowKey::v4(pf.to.0, remote, ip.key.proto, pf.to.1, ip.key.sport);
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
                    meta,
                    now,
                ),
                Err(e) => self.insert_failed(e),
            };
        }
        self.drop(DropReason::Unsolicited)
    }

    // ----- the router itself -----

    fn local(&mut self, buf: &mut [u8], _len: usize, port: PortId, ip: Ip4, _now: Time) -> Verdict {
        if ip.icmp == IcmpQuery::Request {
            return self.echo_reply(buf, port, ip);
        }
        self.counters.control += 1;
        Verdict::Control(ControlReason::Local)
    }

    fn l2_back(&self, buf: &[u8], port: PortId, vlan: Option<VlanTci>) -> L2 {
        L2 {
            src: self.cfg.ports[usize::from(port.0)].mac,
            dst: MacAddr([buf[6], buf[7], buf[8], buf[9], buf[10], buf[11]]),
            vlan,
        }
    }

    fn port_ip(&self, port: PortId) -> Ipv4Addr {
        self.cfg.ports[usize::from(port.0)]
            .addrs
            .first()
            .map_or(Ipv4Addr::UNSPECIFIED, |a| a.0)
    }

    /// Copy the answer in `scratch[..n]` over the frame and `count` it. An answer larger than the
    /// frame's buffer is not sent: the frame counts as `NoBuffer` only (not also under the reason
    /// it was answering, nor as an answer sent).
    fn answer(&mut self, buf: &mut [u8], n: usize, count: impl FnOnce(&mut Counters)) -> Verdict {
        match buf.get_mut(..n) {
            Some(dst) => {
                dst.copy_from_slice(&self.scratch[..n]);
                count(&mut self.counters);
                Verdict::Reply { len: n }
            }
            None => self.drop(DropReason::NoBuffer),
        }
    }

    fn echo_reply(&mut self, buf: &mut [u8], port: PortId, ip: Ip4) -> Verdict {
        let l2 = self.l2_back(buf, port, ip.vlan);
        let Some(request) = buf.get(ip.l3..ip.ip_end) else {
            return self.drop(DropReason::Other);
        };
        match build::icmp_echo_reply(&mut self.scratch, &l2, request) {
            Ok(n) => self.answer(buf, n, |c| c.replies += 1),
            Err(_) => self.drop(DropReason::NoBuffer),
        }
    }

    fn time_exceeded(&mut self, buf: &mut [u8], port: PortId, ip: Ip4, now: Time) -> Verdict {
        let repr = wire::Icmpv4Repr::TimeExceeded { code: 0 };
        self.send_icmp_error(buf, port, ip, now, &repr, DropReason::TtlExpired)
    }

    /// Answer the packet with an ICMP error from `port`'s address (rate limited, and never about
    /// an ICMP error, a fragment or a broadcast: RFC 1812 §4.3.2.7). The packet itself is dropped
    /// and counted under `reason` either way.
    fn send_icmp_error(
        &mut self,
        buf: &mut [u8],
        port: PortId,
        ip: Ip4,
        now: Time,
        repr: &wire::Icmpv4Repr,
        reason: DropReason,
    ) -> Verdict {
        if !self.icmp_bucket.take(now) {
            self.counters.drops.inc(DropReason::IcmpRateLimited);
            return self.drop(reason);
        }
        let l2 = self.l2_back(buf, port, ip.vlan);
        let router = self.port_ip(port);
        let Some(original) = buf.get(ip.l3..ip.ip_end) else {
            return self.drop(DropReason::Other);
        };
        if !build::may_send_icmp_error(original) {
            return self.drop(reason);
        }
        match build::icmp_error(&mut self.scratch, &l2, router, repr, original) {
            Ok(n) => self.answer(buf, n, |c| {
                c.icmp_errors += 1;
                c.drops.inc(reason);
            }),
            Err(_) => self.drop(reason),
        }
    }

    /// A packet of a flow whose gateway died: RST for TCP, ICMP prohibited for the rest.
    fn reject(&mut self, buf: &mut [u8], port: PortId, ip: Ip4, now: Time) -> Verdict {
        if !self.cfg.options.reject {
            return self.drop(DropReason::GatewayDown);
        }
        let l2 = self.l2_back(buf, port, ip.vlan);
        let Some(original) = buf.get(ip.l3..ip.ip_end) else {
            return self.drop(DropReason::Other);
        };
        let built = if ip.key.proto == proto::TCP {
            build::tcp_rst(&mut self.scratch, &l2, original)
        } else if self.icmp_bucket.take(now) {
            let router = self.port_ip(port);
            build::icmp_admin_prohibited(&mut self.scratch, &l2, router, original)
        } else {
            return self.drop(DropReason::IcmpRateLimited);
        };
        match built {
            Ok(n) => self.answer(buf, n, |c| {
                c.rejects += 1;
                c.drops.inc(DropReason::GatewayDown);
            }),
            Err(_) => self.drop(DropReason::GatewayDown),
        }
    }

    #[inline]
    fn mtu_check(
        &mut self,
        buf: &mut [u8],
        in_port: PortId,
        out: PortId,
        ip: Ip4,
        meta: &FrameMeta,
        now: Time,
    ) -> Option<Verdict> {
        let mtu = self.cfg.ports.get(usize::from(out.0)).map_or(0, |p| p.mtu);
        if meta.gso || ip.ip_end - ip.l3 <= usize::from(mtu) {
            return None;
        }
        self.mtu_exceeded(buf, in_port, ip, now, usize::from(mtu))
    }

    /// The rest of [`Context::mtu_check`], for a packet larger than the out port's MTU.
    #[cold]
    #[inline(never)]
    fn mtu_exceeded(
        &mut self,
        buf: &mut [u8],
        in_port: PortId,
        ip: Ip4,
        now: Time,
        mtu: usize,
    ) -> Option<Verdict> {
        if !ip.df {
            return Some(self.drop(DropReason::TooLongForEgress));
        }
        let repr = wire::Icmpv4Repr::DstUnreachable {
            code: wire::UnreachableCode::FragNeeded,
            next_hop_mtu: u16::try_from(mtu).unwrap_or(u16::MAX),
        };
        Some(self.send_icmp_error(buf, in_port, ip, now, &repr, DropReason::FragNeeded))
    }

    /// Replace the frame by an ARP request for `target` on `out` (at most one per target per
    /// second) and count the packet as dropped.
    fn resolve(&mut self, buf: &mut [u8], out: PortId, target: Ipv4Addr, now: Time) -> Verdict {
        self.counters.drops.inc(DropReason::NeighborUnresolved);
        let t = u32::from(target);
        if let Some(e) = self.arp_last_ms.iter_mut().find(|(ip, _)| *ip == t) {
            if now.millis().saturating_sub(e.1) < 1000 {
                return Verdict::Drop(DropReason::NeighborUnresolved);
            }
            e.1 = now.millis();
        } else {
            if self.arp_last_ms.len() >= 256 {
                self.arp_last_ms.remove(0);
            }
            self.arp_last_ms.push((t, now.millis()));
        }
        let spec = &self.cfg.ports[usize::from(out.0)];
        let vlan = spec.vlan.map(VlanTci::with_id);
        let our_ip = spec
            .addrs
            .iter()
            .find(|(net, len)| in_prefix(target, *net, *len))
            .or(spec.addrs.first())
            .map_or(Ipv4Addr::UNSPECIFIED, |a| a.0);
        match build::arp_request(&mut self.scratch, vlan, spec.mac, our_ip, target) {
            Ok(n) => match buf.get_mut(..n) {
                Some(d) => {
                    d.copy_from_slice(&self.scratch[..n]);
                    self.counters.arp_requests += 1;
                    self.counters.tx_frames[usize::from(out.0)] += 1;
                    self.counters.tx_bytes[usize::from(out.0)] += n as u64;
                    Verdict::Forward { port: out, len: n }
                }
                None => Verdict::Drop(DropReason::NeighborUnresolved),
            },
            Err(_) => Verdict::Drop(DropReason::NeighborUnresolved),
        }
    }

    /// A packet of `ip_len` bytes sent out (`Dir::Orig`) or received back through gateway `g`.
    #[inline]
    fn count_gateway(&mut self, g: GatewayId, dir: Dir, ip_len: u32) {
        let c = match dir {
            Dir::Orig => self.counters.gw_out.get_mut(g.index()),
            Dir::Reply => self.counters.gw_in.get_mut(g.index()),
        };
        if let Some(c) = c {
            c.0 += 1;
            c.1 += u64::from(ip_len);
        }
    }

    /// MACs and the VLAN tag of the out port; the frame's length may change by 4. Untagged in
    /// and out (nearly every frame) stays inline; tag work is out of line.
    #[inline(always)]
    fn finish_l2(
        &mut self,
        buf: &mut [u8],
        len: usize,
        out: PortId,
        dst: MacAddr,
        vlan: Option<VlanTci>,
        meta: &mut FrameMeta,
    ) -> Verdict {
        let spec = &self.cfg.ports[usize::from(out.0)];
        let out_vlan = spec.vlan;
        buf[0..6].copy_from_slice(&dst.0);
        buf[6..12].copy_from_slice(&spec.mac.0);
        let len = match (vlan, out_vlan) {
            (None, None) => len,
            _ => match retag(buf, len, vlan.is_some(), out_vlan, meta) {
                Some(len) => len,
                None => return self.drop(DropReason::TooLongForEgress),
            },
        };
        self.counters.tx_frames[usize::from(out.0)] += 1;
        self.counters.tx_bytes[usize::from(out.0)] += len as u64;
        Verdict::Forward { port: out, len }
    }

    // ----- the slow path -----

    fn slow(
        &mut self,
        buf: &mut [u8],
        len: usize,
        link: u8,
        meta: &mut FrameMeta,
        now: Time,
    ) -> Verdict {
        let sf = match slow::parse(&buf[..len]) {
            Ok(f) => f,
            Err(r) => return self.drop(r),
        };
        let Some(port) = self.port_for(link, sf.vlan) else {
            return self.drop(DropReason::WrongVlan);
        };
        self.counters.rx_frames[usize::from(port.0)] += 1;
        let spec = &self.cfg.ports[usize::from(port.0)];
        let dst_mac = MacAddr([buf[0], buf[1], buf[2], buf[3], buf[4], buf[5]]);
        if dst_mac != spec.mac && !dst_mac.is_broadcast() {
            return self.drop(DropReason::NotForUs);
        }
        match sf.kind {
            SlowKind::Arp(a) => self.arp(buf, port, sf.vlan, a, now),
            SlowKind::Ipv6 => self.drop(DropReason::Ipv6Unsupported),
            SlowKind::Ipv4(v4) => {
                let (key, flags, icmp) = match v4.l4 {
                    SlowL4::LaterFragment => return self.drop(DropReason::FragmentWithoutFlow),
                    SlowL4::Tcp { key, flags } => (key, flags.0, IcmpQuery::None),
                    SlowL4::Udp { key } => (key, 0, IcmpQuery::None),
                    SlowL4::IcmpQuery { key, request } => (
                        key,
                        0,
                        if request {
                            IcmpQuery::Request
                        } else {
                            IcmpQuery::Reply
                        },
                    ),
                    SlowL4::IcmpError { inner, .. } => {
                        return self.icmp_error(
                            buf,
                            len,
                            port,
                            sf.vlan,
                            sf.l3_offset,
                            v4,
                            inner,
                            meta,
                            now,
                        );
                    }
                    SlowL4::IcmpOther { .. } => return self.drop(DropReason::IcmpUnsupported),
                    SlowL4::Other { .. } => return self.drop(DropReason::UnsupportedProtocol),
                };
                let ip = Ip4 {
                    key,
                    l3: sf.l3_offset,
                    l4: v4.l4_offset,
                    ip_end: sf.l3_offset + usize::from(v4.total_len),
                    ttl: v4.ip.ttl,
                    flags,
                    icmp,
                    df: v4.ip.dont_frag,
                    vlan: sf.vlan,
                };
                match self.cfg.ports[usize::from(port.0)].role {
                    Role::Lan => self.classify_lan(buf, len, port, ip, meta, now, None),
                    Role::Wan => self.classify_wan(buf, len, port, ip, meta, now, None),
                }
            }
        }
    }

    fn arp(
        &mut self,
        buf: &mut [u8],
        port: PortId,
        vlan: Option<VlanTci>,
        a: wire::ArpRepr,
        now: Time,
    ) -> Verdict {
        if a.sha.is_multicast() {
            // A group sender address is never valid (RFC 1812 §3.3.2): neither learned nor
            // answered (an answer would go to a multicast group).
            return self.drop(DropReason::BadSrcMac);
        }
        let spec = &self.cfg.ports[usize::from(port.0)];
        let on_link = spec.addrs.iter().any(|&(n, l)| in_prefix(a.spa, n, l));
        let ours = spec.addrs.iter().any(|&(x, _)| x == a.tpa);
        let mac = spec.mac;
        let mut learned = false;
        if on_link
            && !a.spa.is_unspecified()
            && !a.sha.is_multicast()
            && spec.addrs.iter().all(|&(x, _)| x != a.spa)
        {
            if let Learned::Changed { .. } = self.neighbors.learn(a.spa, a.sha, port.0, now) {
                self.counters.neighbor_changes += 1;
            }
            learned = true;
        }
        match a.op {
            ArpOp::Request if ours && a.spa != a.tpa => {
                match build::arp_reply(&mut self.scratch, vlan, mac, a.tpa, &a) {
                    Ok(n) => self.answer(buf, n, |c| c.replies += 1),
                    Err(_) => self.drop(DropReason::NoBuffer),
                }
            }
            ArpOp::Reply if learned => {
                self.counters.control += 1;
                Verdict::Control(ControlReason::ArpReply)
            }
            _ if learned && a.spa == a.tpa => {
                // Gratuitous ARP: learned above.
                self.counters.control += 1;
                Verdict::Control(ControlReason::ArpReply)
            }
            _ => self.drop(DropReason::ArpNotForUs),
        }
    }

    /// An ICMP error arriving on a WAN about a packet we translated (RFC 5508): find the flow by
    /// the quoted packet, and translate outer destination, quoted source and every checksum.
    #[allow(clippy::too_many_arguments)]
    fn icmp_error(
        &mut self,
        buf: &mut [u8],
        len: usize,
        port: PortId,
        vlan: Option<VlanTci>,
        l3: usize,
        v4: slow::SlowIpv4,
        inner: Embedded,
        meta: &mut FrameMeta,
        now: Time,
    ) -> Verdict {
        if self.cfg.ports[usize::from(port.0)].role != Role::Wan {
            return self.drop(DropReason::IcmpErrorNoFlow);
        }
        let Some(outer_dst) = Some(v4.ip.dst) else {
            return self.drop(DropReason::Other);
        };
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
            return self.resolve(buf, out, inside, now);
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
        self.finish_l2(buf, len, out, mac, vlan, meta)
    }
}

fn flow_gateway(t: &FlowTable, h: Hit) -> Option<GatewayId> {
    t.flow(h.flow).and_then(|f| f.gateway())
}

/// Rewrite addresses, ports and TTL of an IPv4 packet in place, with incremental checksums
/// (RFC 1624): `snat` replaces the source address and port, `dnat` the destination's. The TTL
/// drops by one. A partial L4 checksum (see [`FrameMeta::partial`]) is updated as a pseudo-header
/// sum; a zero UDP checksum stays zero.
fn rewrite_l3l4(
    buf: &mut [u8],
    ip: &Ip4,
    snat: Option<(Ipv4Addr, u16)>,
    dnat: Option<(Ipv4Addr, u16)>,
    meta: &FrameMeta,
) {
    let l3 = ip.l3;
    let l4 = ip.l4;
    // TCP and UDP without IP options (nearly every packet): fixed offsets in one fixed-size
    // window, so the compiler checks the bounds once.
    if l4 == l3 + 20
        && ip.icmp == IcmpQuery::None
        && let Some(w) = L4Window::of(buf, l3, ip.key.proto)
    {
        return w.rewrite(meta.partial.is_some(), snat, dnat);
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
            let c = if meta.partial.is_some() {
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
/// a tag. A partial checksum's `csum_start` moves with the tag.
#[cold]
#[inline(never)]
fn retag(
    buf: &mut [u8],
    len: usize,
    tagged: bool,
    out_vlan: Option<u16>,
    meta: &mut FrameMeta,
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
            if let Some((s, o)) = meta.partial {
                meta.partial = Some((s + 4, o));
            }
            Some(len + 4)
        }
        (true, None) => {
            buf.copy_within(16..len, 12);
            if let Some((s, o)) = meta.partial {
                meta.partial = Some((s.saturating_sub(4), o));
            }
            Some(len - 4)
        }
        (false, None) => Some(len),
    }
}

/// The fixed-size window over the IPv4 and L4 headers of a TCP or UDP packet without IP options,
/// where [`rewrite_fixed`] works.
enum L4Window<'a> {
    Tcp(&'a mut [u8; 38]),
    Udp(&'a mut [u8; 28]),
}

impl<'a> L4Window<'a> {
    /// The window of the IPv4 header at `l3` with protocol `p`, if it is TCP or UDP and the frame
    /// holds the whole window (the caller knows there are no IP options).
    #[inline]
    fn of(buf: &'a mut [u8], l3: usize, p: u8) -> Option<L4Window<'a>> {
        let b = buf.get_mut(l3..)?;
        match p {
            proto::TCP => b.first_chunk_mut::<38>().map(L4Window::Tcp),
            proto::UDP => b.first_chunk_mut::<28>().map(L4Window::Udp),
            _ => None,
        }
    }

    /// Addresses, ports, TTL and both checksums, as [`rewrite_l3l4`] does.
    #[inline]
    fn rewrite(self, partial: bool, snat: Option<(Ipv4Addr, u16)>, dnat: Option<(Ipv4Addr, u16)>) {
        match self {
            L4Window::Tcp(h) => rewrite_fixed(h, 36, L4Sum::Tcp, partial, snat, dnat),
            L4Window::Udp(h) => rewrite_fixed(h, 26, L4Sum::Udp, partial, snat, dnat),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum L4Sum {
    Tcp,
    Udp,
}

/// [`rewrite_l3l4`] for a TCP or UDP packet without IP options: `h` starts at the IPv4 header and
/// holds at least the L4 checksum at `csum_at` (the same arithmetic as the general case).
#[inline(always)]
fn rewrite_fixed<const N: usize>(
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
fn rewrite_outer_dst(buf: &mut [u8], ip: &Ip4, new_dst: Ipv4Addr) {
    let l3 = ip.l3;
    let old_dst = Ipv4Addr::from(wire::rd32(buf, l3 + 16));
    let old_ttl_word = rd16(buf, l3 + 8);
    let new_ttl_word = old_ttl_word.wrapping_sub(0x0100);
    let c = checksum::update16(
        checksum::update32(rd16(buf, l3 + 10), old_dst, new_dst),
        old_ttl_word,
        new_ttl_word,
    );
    wire::wr32(buf, l3 + 16, u32::from(new_dst));
    wr16(buf, l3 + 8, new_ttl_word);
    wr16(buf, l3 + 10, c);
}

/// Translate the datagram quoted in an ICMP error back to the inside host's view: its source
/// address and port (or echo id) become the inside ones; its IP checksum, its L4 checksum (when
/// quoted) and the ICMP checksum are updated incrementally (RFC 5508 REQ-3).
fn translate_embedded(
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

#[cfg(test)]
mod tests;
