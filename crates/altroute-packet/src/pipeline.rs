//! The pipeline: one frame in, one [`Verdict`] out.
//!
//! [`Context::process`] works in place on the frame buffer; [`Context::process_batch`] takes many
//! frames, parses them all, looks their flows up as one batch (so the table's cache misses
//! overlap), then handles each. Where to look for what, file by file (VPP's NAT plugin splits the
//! same way):
//!
//! | file | what |
//! |---|---|
//! | `pipeline.rs` (this one) | the types: [`Verdict`], [`Packet`], [`Counters`], [`Context`] |
//! | [`config`] | what a pipeline is built from ([`PipelineConfig`]) and why it may be refused |
//! | `setup.rs` | [`Context::new`] in named steps; the precomputed lookups and what reads them |
//! | `process.rs` | the entry points, parse (fast, else slow), dispatch by the port's role |
//! | `fast_path.rs` | the established-flow fast path [`Context::process_batch`] tries first |
//! | `lan.rs` | LAN side, outbound (in2out): `classify_lan`, `forward_flow` and `forward_out`, hairpin, LAN to LAN |
//! | `wan.rs` | WAN side, inbound (out2in): `classify_wan`, `forward_back`, port forwards, inbound ICMP errors |
//! | `local.rs` | frames for the router itself and the ones it generates: ARP, echo replies, ICMP errors, RSTs, next-hop resolution |
//! | `rewrite.rs` | every byte the pipeline writes: NAT with RFC 1624 checksums, TTL, MACs, VLAN tag |
//! | [`offload`] | the kernel (tc) offload records of established flows |
//!
//! After the verdict, [`crate::egress`] finishes what the out link cannot (checksums) and merges
//! UDP runs into GSO frames; the frame's [`TxOffload`] travels with it through the pipeline.
//!
//! - **parse**: [`crate::fast::parse`] (fixed offsets), else [`crate::slow::parse`] (etherparse);
//! - **classify**: `Context::classify_lan` and `Context::classify_wan`;
//! - **choose the gateway**: [`altroute_flow::FlowTable::insert`] (its policy) on a flow miss;
//! - **rewrite bytes**: `rewrite_l3l4` (addresses, ports, TTL, RFC 1624 checksum deltas) and
//!   `Context::finish_l2` (MACs, VLAN tag).
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

use altroute_flow::{FlowKey, FlowTable, GatewayId, MAX_GATEWAYS};

use crate::drop::{DropCounters, DropReason};
use crate::egress::TxOffload;
use crate::fast::IcmpQuery;
use crate::neigh::Neighbors;
use crate::wire::{self, MacAddr, VlanTci};

pub mod config;
mod fast_path;
mod lan;
mod local;
pub mod offload;
mod process;
mod rewrite;
mod setup;
mod wan;

pub use config::{
    GatewaySpec, Options, PipelineConfig, PipelineError, PortForward, PortId, PortSpec, Role,
    default_private,
};
use local::Bucket;

/// Largest frame the pipeline accepts: a 64 KiB IP packet behind an Ethernet header and a tag.
pub const MAX_FRAME: usize = 65535 + 18;
/// ICMP echo identifiers below this, answered to the router's own address, are the router's own
/// health probes (NAT never hands them out: its ICMP pool starts at the NAT port range).
pub const PROBE_ID_LIMIT: u16 = 1024;

/// Why a frame goes to the control plane.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ControlReason {
    /// An ICMP echo reply to one of the router's health probes.
    ProbeReply,
    /// An ARP reply (or gratuitous ARP) was learned; the health checker may want it.
    ArpReply,
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

impl Default for Verdict {
    /// A slot of a verdict buffer before the pipeline has written it:
    /// `Drop(DropReason::Unprocessed)`, which is never counted.
    fn default() -> Self {
        Verdict::Drop(DropReason::Unprocessed)
    }
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
    /// New or changed neighbours learned on a LAN port and not shared with the other workers
    /// (over `Options::lan_learned_shared_per_sec`, or the queue full): they learn them on their
    /// own, by ARP, when they need them.
    pub learned_unshared: u64,
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
            learned_unshared: 0,
            control: 0,
            fast_path: 0,
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
    /// Its checksum and segmentation offload state, kept in step with the rewrites for transmit
    /// (reset when the pipeline replaces the frame with one it built).
    pub offload: TxOffload,
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

impl Ip4 {
    /// The source address (both parsers build IPv4 keys: its first four bytes).
    #[inline]
    fn src(&self) -> Ipv4Addr {
        ipv4_of(self.key.src_bytes())
    }

    /// The destination address.
    #[inline]
    fn dst(&self) -> Ipv4Addr {
        ipv4_of(self.key.dst_bytes())
    }
}

/// What [`Context::forward_flow`] read of a packet's flow for the direction that forwards it.
#[derive(Clone, Copy, Debug)]
struct FlowView {
    /// The flow's key (its original direction: the inside host's).
    key: FlowKey,
    /// Its gateway.
    gw: Option<GatewayId>,
    /// Its translation of the inside host's address and port.
    nat: Option<(Ipv4Addr, u16)>,
    /// The packet's IPv4 length, for the gateway's counters.
    ip_len: u32,
}

/// One worker's pipeline: configuration, flow table, neighbour table, counters.
pub struct Context {
    cfg: PipelineConfig,
    /// The flow table (the daemon reaches it for link events, expiry and snapshots).
    pub table: FlowTable,
    /// The neighbour (ARP) table.
    pub neighbors: Neighbors,
    /// Neighbours learned from frames the control plane does not see, for
    /// [`Context::take_learned`] (capacity [`LEARNED_MAX`], allocated once).
    learned: Vec<(Ipv4Addr, MacAddr, u8)>,
    /// Counters.
    pub counters: Counters,
    icmp_bucket: Bucket,
    /// Echo replies on WAN ports.
    wan_echo_bucket: Bucket,
    /// Neighbours learned on LAN ports shared with the other workers.
    lan_learn_bucket: Bucket,
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
/// The most neighbours [`Context::take_learned`] holds between two calls (more are not shared;
/// a batch of frames teaches at most one each).
pub const LEARNED_MAX: usize = 256;
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

#[cfg(test)]
mod tests;
