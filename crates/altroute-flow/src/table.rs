//! [`FlowTable`]: one worker's connection table.
//!
//! Layout, for speed at a million flows:
//! - **Records**: one 64-byte, cache-line-aligned [`Slot`] per connection, in a slab that never
//!   moves (allocated up to `max_flows`, reused through a free list). The key is stored split
//!   ([`FlowKey::split`]): 16 bytes identify an IPv4 key and are all a lookup compares; the other
//!   24 hold the rest of an IPv6 key's addresses or, for IPv4, the owner's **scratch**
//!   ([`FlowTable::set_scratch`]) — where a packet path keeps what it precomputed for the flow,
//!   so reading it costs no line beyond the lookup's.
//! - **Index hash**: IPv4 keys are filed under a two-word hash of those 16 bytes, cheaper than
//!   [`FlowKey::hash64`] (which the load balancer keeps using: it must never change).
//! - **Index**: both directions of every connection point at its slot (see [`crate::index`]); the
//!   original key and the reply key (after translation) are two entries. Endpoint-independent NAT
//!   mappings are a third kind of entry in the same index, so creating a flow costs no other map.
//! - **Counters**: per-direction packets and bytes, optional (`accounting`), like Linux's
//!   `nf_conntrack_acct`. A packet adds to small counters inside its slot (16-bit packets, 32-bit
//!   bytes per direction), so counting costs no cache line beyond the one the lookup already
//!   read; they are folded into 64-bit totals in a parallel array of 32-byte cells when they
//!   would overflow (every 65,535 packets or 4 GiB at most), and readers add both.
//! - **Links**: what only flow creation, removal and link events read — the creation time and the
//!   per-gateway list pointers — sit in a parallel array of 16-byte cells, out of the slot.
//! - **Expiry**: a timing wheel of one-second ticks holding `(slot, generation)` words. A flow sits
//!   in the wheel once; when its tick comes, its real deadline is checked from `last_seen` and its
//!   state's timeout, and it either expires or is re-filed at that deadline. A sweep therefore
//!   touches only flows whose deadline passed or was re-filed — O(expired), never O(table).
//! - **Per-gateway lists**: each slot is on a doubly linked list of its gateway's flows, so a link
//!   event touches only that link's flows.
//!
//! A table belongs to one worker thread (no locks). Workers split the NAT port space (see
//! [`PortPartition`]) so each knows, from a port alone, which worker owns a mapping.

use core::fmt;
use core::net::IpAddr;

use crate::failure::FailureWindow;
use crate::index::Index;
use crate::key::head_words;
use crate::nat::{PortPartition, PortPool};
use crate::policy::{self, Choice, Inputs, NoGateway, Overrides, Policy, Reason};
use crate::tcp::{TcpState, flags as tcpf};
use crate::{
    ConfigError, Family, FlowKey, Gateway, GatewayId, GatewayState, MAX_GATEWAYS, Time, Timeouts,
    proto,
};

const NONE: u32 = u32::MAX;
const NO_GW: u8 = 0xff;
const NO_NAT: u8 = 0xff;
/// Index values with this bit are NAT mapping entries: `MAPPING | pool << 16 | port`.
const MAPPING: u32 = 1 << 31;
/// The largest table: slot numbers share a 32-bit wheel word with an 8-bit generation.
pub const MAX_FLOWS: u32 = 1 << 24;
const WHEEL: usize = 4096;
/// A mark in the (otherwise always zero) padding of keys used for mapping entries.
const MAPPING_KEY_MARK: u8 = 0xa5;

// Slot flags.
const LIVE: u8 = 1;
const REPLIED: u8 = 2;
const INBOUND: u8 = 4;
const REJECT: u8 = 8;
const FAIL_COUNTED: u8 = 16;
const FIN_ORIG: u8 = 32;
const FIN_REPLY: u8 = 64;
const OVERRIDE: u8 = 128;

/// Which side of a connection a packet came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dir {
    /// From the inside host (the key the flow was created with).
    Orig = 0,
    /// From the remote host (the translated, reversed key).
    Reply = 1,
}

/// A flow's handle: its slot number. Valid until the flow is removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowId(pub u32);

/// A successful lookup: which flow, and from which side the packet came.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Hit {
    /// The flow.
    pub flow: FlowId,
    /// The side.
    pub dir: Dir,
}

/// A lookup in flight, between [`FlowTable::lookup_start`] and [`FlowTable::lookup_finish`]:
/// the key's hash and the entry its home bucket most likely holds for it. Small and `Copy`, so a
/// batch keeps one per packet on the stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PendingLookup {
    hash: u64,
    cand: u32,
}

impl PendingLookup {
    /// No lookup (a slot in a batch without a key); finishing it hashes the key afresh.
    pub const NONE: PendingLookup = PendingLookup {
        hash: 0,
        cand: u32::MAX,
    };
}

/// The hash of `key`, from `p` when `p` carries one.
#[inline(always)]
fn key_hash(key: &FlowKey, p: PendingLookup) -> u64 {
    if p.hash == 0 {
        key.index_hash()
    } else {
        p.hash
    }
}

/// How a flow's gateway was chosen (stored in 3 bits of the slot).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReasonKind {
    /// By the policy (load balance or failover).
    Policy,
    /// The operator forced the gateway.
    Forced,
    /// A rule matched.
    Rule,
    /// The client is pinned.
    Pin,
    /// SYN-retry rotation moved it.
    SynRetry,
    /// Opened from outside (port forward).
    Inbound,
    /// No gateway: not routed through a WAN.
    Direct,
    /// Sent by the caller to a given gateway without the policy: a LAN host reaching another
    /// through the router's own external address (hairpinning), or a host on a WAN's own subnet.
    Via,
}

impl ReasonKind {
    fn from_bits(b: u8) -> ReasonKind {
        match b {
            1 => ReasonKind::Forced,
            2 => ReasonKind::Rule,
            3 => ReasonKind::Pin,
            4 => ReasonKind::SynRetry,
            5 => ReasonKind::Inbound,
            6 => ReasonKind::Direct,
            7 => ReasonKind::Via,
            _ => ReasonKind::Policy,
        }
    }
    fn of(r: &Reason) -> ReasonKind {
        match r {
            Reason::Forced => ReasonKind::Forced,
            Reason::Rule { .. } => ReasonKind::Rule,
            Reason::Pin { .. } => ReasonKind::Pin,
            Reason::Policy { .. } => ReasonKind::Policy,
            Reason::SynRetry { .. } => ReasonKind::SynRetry,
            Reason::Inbound => ReasonKind::Inbound,
        }
    }
}

/// One connection: exactly one cache line, holding everything a forwarded packet reads or writes.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Slot {
    /// The key from the inside host, split ([`FlowKey::split`]): `head` alone identifies an IPv4
    /// key, so the lookup compares 16 bytes.
    head: [u8; 16],
    /// IPv6: the other 12 bytes of both addresses. IPv4: the caller's scratch
    /// ([`FlowTable::set_scratch`]), zero until set, zeroed whenever the flow's translation or
    /// gateway changes.
    tail: [u8; 24],
    nat_port: u16,
    nat_addr: u8,
    gateway: u8,
    /// Low 3 bits: [`TcpState`]; bits 3..6: [`ReasonKind`].
    state: u8,
    syns: u8,
    flags: u8,
    generation: u8,
    last_seen: u32,
    /// Bytes per direction not yet folded into the flow's [`Counters`] (with accounting on).
    hot_bytes: [u32; 2],
    /// Packets per direction not yet folded into the flow's [`Counters`].
    hot_packets: [u16; 2],
}

const _: () = assert!(core::mem::size_of::<Slot>() == 64);

/// Bytes of [scratch](FlowTable::set_scratch) per IPv4 flow.
pub const SCRATCH: usize = 24;

/// The rest of a connection: what only creation, removal and link events touch.
#[derive(Clone, Copy)]
#[repr(C, align(16))]
struct Links {
    created: u32,
    gw_next: u32,
    gw_prev: u32,
}

const _: () = assert!(core::mem::size_of::<Links>() == 16);

const UNLINKED: Links = Links {
    created: 0,
    gw_next: NONE,
    gw_prev: NONE,
};

impl Slot {
    #[inline(always)]
    fn key(&self) -> FlowKey {
        FlowKey::join(&self.head, &self.tail)
    }
    #[inline(always)]
    fn proto(&self) -> u8 {
        self.head[12]
    }
    #[inline(always)]
    fn is_v4(&self) -> bool {
        self.head[13] == Family::V4 as u8
    }
    fn clear_scratch(&mut self) {
        if self.is_v4() {
            self.tail = [0; SCRATCH];
        }
    }
    fn tcp(&self) -> TcpState {
        TcpState::from_bits(self.state)
    }
    fn set_tcp(&mut self, s: TcpState) {
        self.state = (self.state & !7) | s as u8;
    }
    fn reason(&self) -> ReasonKind {
        ReasonKind::from_bits((self.state >> 3) & 7)
    }
    fn set_reason(&mut self, r: ReasonKind) {
        let bits = match r {
            ReasonKind::Policy => 0,
            ReasonKind::Forced => 1,
            ReasonKind::Rule => 2,
            ReasonKind::Pin => 3,
            ReasonKind::SynRetry => 4,
            ReasonKind::Inbound => 5,
            ReasonKind::Direct => 6,
            ReasonKind::Via => 7,
        };
        self.state = (self.state & 7) | (bits << 3);
    }
    fn has(&self, f: u8) -> bool {
        self.flags & f != 0
    }
}

const DEAD: Slot = Slot {
    head: [0; 16],
    tail: [0; 24],
    nat_port: 0,
    nat_addr: NO_NAT,
    gateway: NO_GW,
    state: 0,
    syns: 0,
    flags: 0,
    generation: 0,
    last_seen: 0,
    hot_bytes: [0; 2],
    hot_packets: [0; 2],
};

/// Per-direction packet and byte counters of one flow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C, align(32))]
pub struct Counters {
    /// Packets from the inside host, from the remote host.
    pub packets: [u64; 2],
    /// Bytes from the inside host, from the remote host.
    pub bytes: [u64; 2],
}

/// NAT settings of a table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NatConfig {
    /// The external port space and this worker's share of it.
    pub partition: PortPartition,
    /// Seconds a released port rests before reuse (RFC 6888: 120).
    pub cooldown_secs: u32,
}

impl Default for NatConfig {
    fn default() -> Self {
        NatConfig {
            partition: PortPartition {
                range: (1024, 65535),
                block: 64,
                workers: 1,
                worker: 0,
            },
            cooldown_secs: 120,
        }
    }
}

/// Everything a table is built from.
#[derive(Clone, Debug, PartialEq)]
pub struct TableConfig {
    /// Most flows held; a new flow beyond it is refused (after trying early drop). At most 2^24.
    pub max_flows: u32,
    /// Idle timeouts.
    pub timeouts: Timeouts,
    /// NAT port allocation.
    pub nat: NatConfig,
    /// Keep per-flow packet and byte counters.
    pub accounting: bool,
    /// Accept TCP flows first seen mid-stream (no SYN), e.g. after a restart. Default true.
    pub tcp_loose: bool,
    /// The gateways, indexed by [`GatewayId`].
    pub gateways: Vec<Gateway>,
    /// The selection policy.
    pub policy: Policy,
    /// Overrides of the policy.
    pub overrides: Overrides,
}

impl Default for TableConfig {
    fn default() -> Self {
        TableConfig {
            max_flows: 65536,
            timeouts: Timeouts::default(),
            nat: NatConfig::default(),
            accounting: true,
            tcp_loose: true,
            gateways: Vec::new(),
            policy: Policy::default(),
            overrides: Overrides::default(),
        }
    }
}

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
}

/// What [`FlowTable::update`] found and did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Update {
    /// Carry on: rewrite with the flow's current mapping.
    Forward,
    /// SYN-retry rotation moved the connection (and its NAT mapping) to another gateway before this
    /// packet: rewrite with the new mapping.
    Rotated {
        /// The gateway it left.
        from: GatewayId,
        /// The gateway it now uses.
        to: GatewayId,
    },
    /// The flow's gateway went down while the flow was active: answer the sender with a TCP RST or
    /// ICMP prohibited, then [`FlowTable::remove`] the flow so the next attempt starts afresh.
    Reject,
}

/// What happens to a gateway's flows when it goes down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DownAction {
    /// Release their NAT mappings and mark them, so the next packet from the inside host gets a
    /// TCP RST or ICMP prohibited and the client reconnects at once (seed 003's prohibit route).
    Reset,
    /// Leave them alone: they resume if the link comes back before they time out.
    Keep,
}

/// What happens when a gateway comes back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failback {
    /// Flows moved elsewhere stay there until they end.
    Stay,
    /// Flows that the policy now assigns to the returning gateway are removed (and rejected on
    /// their next packet), so they restart on it.
    Move,
}

/// Table-wide counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableStats {
    /// Flows created.
    pub created: u64,
    /// Flows expired by timeout.
    pub expired: u64,
    /// Flows removed by the caller or a link event.
    pub removed: u64,
    /// New flows refused because the table was full.
    pub refused_full: u64,
    /// Unanswered flows dropped early to make room.
    pub early_dropped: u64,
    /// New flows refused for lack of NAT ports.
    pub ports_exhausted: u64,
    /// New flows refused because no gateway could take them.
    pub no_gateway: u64,
    /// SYN-retry rotations.
    pub syn_rotations: u64,
}

/// A copy of one flow's state, for the control plane and for link events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowInfo {
    /// The handle (stale once the flow is gone).
    pub id: FlowId,
    /// The key from the inside host.
    pub key: FlowKey,
    /// The key of the remote host's packets (after translation).
    pub reply_key: FlowKey,
    /// The gateway, if the flow goes through one.
    pub gateway: Option<GatewayId>,
    /// The external address and port, if translated.
    pub nat: Option<(IpAddr, u16)>,
    /// TCP state.
    pub tcp: TcpState,
    /// SYNs seen from the opener.
    pub syns: u8,
    /// Whether the remote side ever answered.
    pub replied: bool,
    /// Whether it was opened from outside (port forward).
    pub inbound: bool,
    /// How the gateway was chosen.
    pub reason: ReasonKind,
    /// Creation time, seconds since the caller's epoch.
    pub created: u32,
    /// Last packet, seconds since the caller's epoch.
    pub last_seen: u32,
    /// Counters (zero when accounting is off).
    pub counters: Counters,
}

/// The answer of [`FlowTable::explain`].
#[derive(Clone, Debug, PartialEq)]
pub struct Explanation {
    /// The existing flow the key belongs to, if any.
    pub flow: Option<FlowInfo>,
    /// What selection decides for a new flow with this key now.
    pub choice: Result<Choice, NoGateway>,
    /// Gateway names, for display.
    pub names: Vec<String>,
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = |g: GatewayId| {
            self.names
                .get(g.index())
                .cloned()
                .unwrap_or_else(|| g.to_string())
        };
        if let Some(fl) = &self.flow {
            write!(f, "existing flow {}: ", fl.key)?;
            match fl.gateway {
                Some(g) => write!(f, "via {} ({:?})", name(g), fl.reason)?,
                None => write!(f, "direct")?,
            }
            if let Some((a, p)) = fl.nat {
                write!(f, ", translated to {a}:{p}")?;
            }
            write!(f, ", tcp {:?}, {} SYN(s); ", fl.tcp, fl.syns)?;
        }
        match &self.choice {
            Ok(c) => write!(f, "a new flow would take {}: {}", name(c.gateway), c.reason),
            Err(e) => write!(f, "a new flow would be refused: {e}"),
        }
    }
}

/// One worker's connection table. See the [module docs](self).
pub struct FlowTable {
    cfg: TableConfig,
    slots: Vec<Slot>,
    links: Vec<Links>,
    acct: Vec<Counters>,
    free: Vec<u32>,
    index: Index,
    wheel: Vec<Vec<u32>>,
    /// The next wheel tick (second) to process.
    tick: u64,
    live: u32,
    /// External NAT addresses, and for each gateway the index of its address (or NO_NAT).
    ext_addrs: Vec<IpAddr>,
    ext_bytes: Vec<[u8; 16]>,
    gw_addr: Vec<u8>,
    /// Pools: 3 per external address (TCP, UDP, ICMP).
    pools: Vec<PortPool>,
    gw_head: Vec<u32>,
    gw_flows: Vec<u32>,
    failures: Vec<FailureWindow>,
    stats: TableStats,
    /// Bumped by every change that can alter what a lookup returns (see [`FlowTable::epoch`]).
    epoch: u64,
}

fn proto_class(p: u8) -> Option<usize> {
    match p {
        proto::TCP => Some(0),
        proto::UDP => Some(1),
        proto::ICMP => Some(2),
        _ => None,
    }
}

fn addr_bytes(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V4(v) => {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&v.octets());
            b
        }
        IpAddr::V6(v) => v.octets(),
    }
}

/// Count a packet of `bytes` bytes in slot `s` (number `i`): in its small counters, folded into
/// the totals in `acct` first when they would overflow.
#[inline(always)]
fn count(s: &mut Slot, acct: &mut [Counters], i: usize, dir: Dir, bytes: u32) {
    let d = dir as usize;
    let (p, b) = (s.hot_packets[d], s.hot_bytes[d]);
    match (p.checked_add(1), b.checked_add(bytes)) {
        (Some(p), Some(b)) => {
            s.hot_packets[d] = p;
            s.hot_bytes[d] = b;
        }
        _ => {
            if let Some(c) = acct.get_mut(i) {
                c.packets[d] = c.packets[d].saturating_add(u64::from(p) + 1);
                c.bytes[d] = c.bytes[d].saturating_add(u64::from(b) + u64::from(bytes));
            }
            s.hot_packets[d] = 0;
            s.hot_bytes[d] = 0;
        }
    }
}

impl FlowTable {
    /// A table, empty. Errors on a bad configuration (timeouts below the RFC floors, too many
    /// flows or gateways, a bad port partition).
    pub fn new(cfg: TableConfig) -> Result<FlowTable, ConfigError> {
        cfg.timeouts.validate()?;
        if cfg.max_flows == 0 || cfg.max_flows > MAX_FLOWS {
            return Err(ConfigError::TooManyFlows {
                max: cfg.max_flows,
                limit: MAX_FLOWS,
            });
        }
        let p = cfg.nat.partition;
        PortPartition::new(p.range, p.block, p.workers, p.worker)?;
        let max = cfg.max_flows as usize;
        let mut t = FlowTable {
            slots: Vec::with_capacity(max),
            links: Vec::with_capacity(max),
            acct: if cfg.accounting {
                Vec::with_capacity(max)
            } else {
                Vec::new()
            },
            free: Vec::new(),
            // Two entries per flow plus, at worst, one mapping entry per flow.
            index: Index::with_capacity(max * 3),
            wheel: vec![Vec::new(); WHEEL],
            tick: 0,
            live: 0,
            ext_addrs: Vec::new(),
            ext_bytes: Vec::new(),
            gw_addr: Vec::new(),
            pools: Vec::new(),
            gw_head: Vec::new(),
            gw_flows: Vec::new(),
            failures: Vec::new(),
            stats: TableStats::default(),
            epoch: 0,
            cfg: TableConfig {
                gateways: Vec::new(),
                ..cfg.clone()
            },
        };
        t.set_gateways(cfg.gateways)?;
        Ok(t)
    }

    /// Replace the gateway list (at start-up or on a configuration reload). Flows keep their
    /// gateway numbers; a gateway whose NAT address changed should be taken down first.
    pub fn set_gateways(&mut self, gateways: Vec<Gateway>) -> Result<(), ConfigError> {
        if gateways.len() > MAX_GATEWAYS {
            return Err(ConfigError::TooManyGateways {
                count: gateways.len(),
                limit: MAX_GATEWAYS,
            });
        }
        self.gw_addr.clear();
        for g in &gateways {
            let idx = match g.nat_addr {
                None => NO_NAT,
                Some(a) => match self.ext_addrs.iter().position(|&x| x == a) {
                    Some(i) => i as u8,
                    None => {
                        if !a.is_ipv4() {
                            return Err(ConfigError::NatAddress(a));
                        }
                        if self.ext_addrs.len() >= 40 {
                            return Err(ConfigError::TooManyGateways {
                                count: self.ext_addrs.len() + 1,
                                limit: 40,
                            });
                        }
                        self.ext_addrs.push(a);
                        self.ext_bytes.push(addr_bytes(a));
                        for _ in 0..3 {
                            self.pools.push(PortPool::new(&self.cfg.nat.partition));
                        }
                        (self.ext_addrs.len() - 1) as u8
                    }
                },
            };
            self.gw_addr.push(idx);
        }
        while self.gw_head.len() < gateways.len() {
            self.gw_head.push(NONE);
            self.gw_flows.push(0);
            self.failures.push(FailureWindow::default());
        }
        self.cfg.gateways = gateways;
        Ok(())
    }

    /// Replace the policy.
    pub fn set_policy(&mut self, p: Policy) {
        self.cfg.policy = p;
    }

    /// Replace the overrides (forced gateway, rules, pins).
    pub fn set_overrides(&mut self, o: Overrides) {
        self.cfg.overrides = o;
    }

    /// The configuration in force.
    pub fn config(&self) -> &TableConfig {
        &self.cfg
    }

    /// The gateways.
    pub fn gateways(&self) -> &[Gateway] {
        &self.cfg.gateways
    }

    /// Counters.
    pub fn stats(&self) -> &TableStats {
        &self.stats
    }

    /// Changes whenever what a lookup returns may have changed: a flow created, removed, re-mapped
    /// (SYN-retry rotation) or marked for reject. A caller that looked keys up earlier (a batch)
    /// compares it to know whether those answers still hold.
    #[inline]
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Live flows.
    pub fn len(&self) -> usize {
        self.live as usize
    }

    /// Whether no flow is live.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// The address ranges (start, length in bytes) of the table's four large arrays — flow
    /// slots, per-flow links, per-flow counters, index buckets — which are allocated at their
    /// full size when the table is built and never move. For an embedder that wants them backed by huge pages
    /// (`madvise`): at 64k–1M flows nearly every lookup misses the TLB on 4 KiB pages. The table
    /// itself does no I/O.
    pub fn memory_regions(&self) -> [(usize, usize); 4] {
        [
            (self.slots.as_ptr() as usize, self.slots.capacity() * 64),
            (self.links.as_ptr() as usize, self.links.capacity() * 16),
            (self.acct.as_ptr() as usize, self.acct.capacity() * 32),
            self.index.region(),
        ]
    }

    /// Bytes of memory the table's structures hold now (slots, links and counters as allocated,
    /// index, wheel, free list; the NAT pools' fixed 1.4 MiB per address are included).
    pub fn memory_bytes(&self) -> usize {
        self.slots.capacity() * 64
            + self.links.capacity() * 16
            + self.acct.capacity() * 32
            + self.free.capacity() * 4
            + self.index.bytes()
            + self
                .wheel
                .iter()
                .map(|v| v.capacity() * 4 + 24)
                .sum::<usize>()
            + self.pools.len() * (8192 * 2 + 65536 * 4 + 65536 * 6)
    }

    /// Live flows through gateway `g` (kept up to date: no scan).
    pub fn flows_on(&self, g: GatewayId) -> u32 {
        self.gw_flows.get(g.index()).copied().unwrap_or(0)
    }

    /// NAT ports this worker can still hand out on `g`'s address for `proto` (TCP, UDP or ICMP).
    pub fn nat_free_ports(&self, g: GatewayId, proto: u8) -> Option<u32> {
        let a = *self.gw_addr.get(g.index())?;
        if a == NO_NAT {
            return None;
        }
        Some(
            self.pools
                .get(usize::from(a) * 3 + proto_class(proto)?)?
                .free(),
        )
    }

    /// (opened, failed) TCP connections through `g` over the failure-redirect window.
    pub fn failure_totals(&self, g: GatewayId, now: Time) -> (u32, u32) {
        let w = self
            .cfg
            .policy
            .failure_redirect
            .map_or(60_000, |f| f.window_ms);
        self.failures
            .get(g.index())
            .map_or((0, 0), |f| f.totals(now, w))
    }

    // ----- lookups (the fast path) -----

    #[inline(always)]
    fn reply_matches(&self, s: &Slot, q: &FlowKey) -> bool {
        if !s.is_v4() {
            return self.reply_key(s) == *q;
        }
        let h = &s.head;
        let (ext, port) = if s.nat_addr == NO_NAT {
            ([h[0], h[1], h[2], h[3]], u16::from_ne_bytes([h[8], h[9]]))
        } else {
            match self.ext_bytes.get(usize::from(s.nat_addr)) {
                Some(e) => ([e[0], e[1], e[2], e[3]], s.nat_port),
                None => return false,
            }
        };
        q.is_reply_of(h, ext, port)
    }

    /// Whether index value `v` (not a mapping) is the entry of `key`.
    #[inline(always)]
    fn entry_matches(&self, v: u32, key: &FlowKey) -> bool {
        if v & MAPPING != 0 {
            return false;
        }
        let Some(s) = self.slots.get((v >> 1) as usize) else {
            return false;
        };
        // (A pipelined lookup's candidate may have been freed since its bucket was read.)
        if !s.has(LIVE) {
            return false;
        }
        if v & 1 == 0 {
            head_words(&s.head) == key.head_words() && (s.is_v4() || s.key() == *key)
        } else {
            self.reply_matches(s, key)
        }
    }

    #[inline]
    fn lookup_hashed(&self, key: &FlowKey, h: u64) -> Option<Hit> {
        let v = self.index.find(h, |v| self.entry_matches(v, key))?;
        Some(Hit {
            flow: FlowId(v >> 1),
            dir: if v & 1 == 0 { Dir::Orig } else { Dir::Reply },
        })
    }

    /// Find the flow a packet with `key` belongs to, from either side.
    #[inline]
    pub fn lookup(&self, key: &FlowKey) -> Option<Hit> {
        self.lookup_hashed(key, key.index_hash())
    }

    /// Look up a batch of keys, writing one result per key into `out` (which must be at least as
    /// long as `keys`; extra keys are ignored). Hashes every key first and loads each home bucket
    /// and candidate slot before probing, so the memory accesses of the batch overlap.
    #[inline]
    pub fn lookup_batch(&self, keys: &[FlowKey], out: &mut [Option<Hit>]) {
        self.lookup_batch_by(keys.len(), |i| keys.get(i), out);
    }

    /// [`FlowTable::lookup_batch`] over keys that live elsewhere (in the caller's parse results,
    /// say): `key(i)` is the `i`th of `n` keys, or `None` for a slot without one (its result is
    /// `None`). Saves copying the keys into an array first.
    pub fn lookup_batch_by<'k>(
        &self,
        n: usize,
        key: impl Fn(usize) -> Option<&'k FlowKey>,
        out: &mut [Option<Hit>],
    ) {
        const CHUNK: usize = 64;
        let n = n.min(out.len());
        let mut pending = [PendingLookup::NONE; CHUNK];
        let mut start = 0;
        while start < n {
            let end = (start + CHUNK).min(n);
            self.lookup_batch_start((start..end).map(&key), &mut pending);
            for (i, o) in out[start..end].iter_mut().enumerate() {
                *o = key(start + i).and_then(|k| self.lookup_finish(k, pending[i]));
            }
            start = end;
        }
    }

    /// The first two stages of the lookups of a batch, each over the whole batch before the next,
    /// so that their memory accesses overlap: every key is hashed and its home bucket prefetched
    /// ([`FlowTable::lookup_start`]), then every bucket is read and the flow it most likely
    /// points at prefetched ([`FlowTable::lookup_advance`]). `pending[i]` is left for the `i`th
    /// key (`None`: no lookup, [`PendingLookup::NONE`]), ready for [`FlowTable::lookup_finish`],
    /// which the caller may run later, frame by frame (the answer is checked then: see
    /// `lookup_start`). Only as many keys as `pending` holds are taken; returns how many.
    #[inline(always)]
    pub fn lookup_batch_start<'k>(
        &self,
        keys: impl IntoIterator<Item = Option<&'k FlowKey>>,
        pending: &mut [PendingLookup],
    ) -> usize {
        let mut n = 0;
        for (p, k) in pending.iter_mut().zip(keys) {
            *p = k.map_or(PendingLookup::NONE, |k| self.lookup_start(k));
            n += 1;
        }
        for p in &mut pending[..n] {
            self.lookup_advance(p);
        }
        n
    }

    /// Start a pipelined lookup of `key`: hash it and prefetch its home bucket. Then, some work
    /// later, [`FlowTable::lookup_advance`] reads the bucket and prefetches the flow it most
    /// likely points at, and, more work later, [`FlowTable::lookup_finish`] gives the answer.
    ///
    /// This is how a caller hides memory latency across a batch: run each stage over the whole
    /// batch before the next ([`FlowTable::lookup_batch_start`], which [`FlowTable::lookup_batch`]
    /// and altroute's pipeline use), or the
    /// stages a few packets apart (software pipelining), and the loads of many packets overlap.
    /// The stages only prefetch and read; the
    /// answer is always what [`FlowTable::lookup`] would give at the time of `lookup_finish`,
    /// whatever changed in between (a stale candidate is checked, then ignored).
    #[inline(always)]
    pub fn lookup_start(&self, key: &FlowKey) -> PendingLookup {
        let hash = key.index_hash();
        self.index.prefetch(hash);
        PendingLookup {
            hash,
            cand: u32::MAX,
        }
    }

    /// The middle stage of a pipelined lookup (see [`FlowTable::lookup_start`]): read the home
    /// bucket, remember the first entry whose tag matches and prefetch its slot (the one line a
    /// forwarded packet then reads and writes: the counters are in it).
    #[inline(always)]
    pub fn lookup_advance(&self, p: &mut PendingLookup) {
        if p.hash == 0 {
            return;
        }
        // (`u32::MAX`: no candidate; it has the MAPPING bit, which no candidate has.)
        if let Some(v) = self.index.candidate(p.hash, MAPPING) {
            p.cand = v;
            let i = (v >> 1) as usize;
            prefetch_index::prefetch_index(&self.slots, i);
        }
    }

    /// The last stage of a pipelined lookup (see [`FlowTable::lookup_start`]): the flow `key`
    /// belongs to. `key` must be the key `p` was started with.
    #[inline(always)]
    pub fn lookup_finish(&self, key: &FlowKey, p: PendingLookup) -> Option<Hit> {
        debug_assert!(
            p.hash == 0 || p.hash == key.index_hash(),
            "lookup_finish: another key"
        );
        // The candidate is the first lane `find` would try: when it matches, it is the answer
        // `find` would give, without scanning the bucket again.
        if p.cand != u32::MAX && self.entry_matches(p.cand, key) {
            return Some(Hit {
                flow: FlowId(p.cand >> 1),
                dir: if p.cand & 1 == 0 {
                    Dir::Orig
                } else {
                    Dir::Reply
                },
            });
        }
        self.lookup_hashed(key, key_hash(key, p))
    }

    /// A read-only view of a live flow, for the packet path.
    #[inline]
    pub fn flow(&self, id: FlowId) -> Option<FlowRef<'_>> {
        let s = self.slots.get(id.0 as usize)?;
        if !s.has(LIVE) {
            return None;
        }
        Some(FlowRef { t: self, s })
    }

    // ----- updates (per packet) -----

    /// The packet fast path's half of [`FlowTable::update`], read only: the flow of `hit` if a
    /// packet with TCP flags `tcp_flags` is the common case (the flow is live and not marked for
    /// reject; not TCP, or an established TCP connection and no SYN, FIN or RST), for which
    /// `update` would only account it and return [`Update::Forward`]. `None` means: call
    /// `update` (nothing was changed). The caller makes its own checks on the returned view, then
    /// calls [`FlowTable::touch`] to account the packet.
    #[inline]
    pub fn established(&self, hit: Hit, tcp_flags: u8) -> Option<FlowRef<'_>> {
        let s = self.slots.get(hit.flow.0 as usize)?;
        if s.flags & (LIVE | REJECT) != LIVE {
            return None;
        }
        if s.proto() == proto::TCP
            && (tcp_flags & (tcpf::SYN | tcpf::FIN | tcpf::RST) != 0
                || s.tcp() != TcpState::Established)
        {
            return None;
        }
        Some(FlowRef { t: self, s })
    }

    /// Account a packet of `bytes` bytes on a flow that [`FlowTable::established`] accepted
    /// (for the same packet): exactly what [`FlowTable::update`] does in that case (last seen,
    /// counters, the replied mark), without the TCP state machine.
    #[inline(always)]
    pub fn touch(&mut self, hit: Hit, now: Time, bytes: u32) {
        let i = hit.flow.0 as usize;
        let Some(s) = self.slots.get_mut(i) else {
            return;
        };
        // Store only what changes: most packets of a flow arrive within the second of the one
        // before, so without accounting the slot's cache line usually stays clean (no write-back
        // to memory); with it, the counters dirty this same line and no other.
        let secs = now.secs32();
        if s.last_seen != secs {
            s.last_seen = secs;
        }
        if hit.dir == Dir::Reply && s.flags & REPLIED == 0 {
            s.flags |= REPLIED;
        }
        if self.cfg.accounting {
            count(s, &mut self.acct, i, hit.dir, bytes);
        }
    }

    /// Store `data` in the scratch of IPv4 flow `id`: [`SCRATCH`] bytes of the caller's own,
    /// kept in the flow's slot (in the room an IPv4 key leaves), so reading them back through
    /// [`FlowRef::scratch`] costs no memory access beyond the lookup's. A packet path keeps what
    /// it precomputed for the flow there — its rewrite, checksum deltas, next hops — as VPP's NAT
    /// keeps them per session. The table never reads it; it zeroes it when the flow is created,
    /// re-mapped (SYN-retry rotation) or marked for reject, so all-zero must mean "nothing
    /// stored". Returns `false` (nothing stored) for a flow that is not live or is IPv6.
    #[inline]
    pub fn set_scratch(&mut self, id: FlowId, data: [u8; SCRATCH]) -> bool {
        match self.slots.get_mut(id.0 as usize) {
            Some(s) if s.has(LIVE) && s.is_v4() => {
                s.tail = data;
                true
            }
            _ => false,
        }
    }

    /// Zero every flow's scratch ([`FlowTable::set_scratch`]): for a new owner of the table, whose
    /// precomputed data would differ. O(max flows), once.
    pub fn clear_scratch(&mut self) {
        for s in self.slots.iter_mut() {
            s.clear_scratch();
        }
    }

    /// Account `packets` packets of `bytes` bytes in all, forwarded for `hit`'s flow elsewhere
    /// (by a kernel offload, say) since the last call: what `packets` calls of
    /// [`FlowTable::touch`] would do (last seen, counters, the replied mark). Nothing for 0
    /// packets, so an idle flow still expires.
    pub fn account(&mut self, hit: Hit, now: Time, packets: u64, bytes: u64) {
        if packets == 0 {
            return;
        }
        let i = hit.flow.0 as usize;
        let Some(s) = self.slots.get_mut(i) else {
            return;
        };
        s.last_seen = now.secs32();
        if hit.dir == Dir::Reply {
            s.flags |= REPLIED;
        }
        if let Some(c) = self.acct.get_mut(i) {
            let d = hit.dir as usize;
            // Straight into the totals (the slot's small counters are for single packets).
            c.packets[d] = c.packets[d].saturating_add(packets);
            c.bytes[d] = c.bytes[d].saturating_add(bytes);
        }
    }

    /// Account a packet of `bytes` bytes with TCP flags `tcp_flags` (0 for other protocols) on a
    /// flow found by a lookup, advance its TCP state, and apply SYN-retry rotation.
    pub fn update(&mut self, hit: Hit, now: Time, tcp_flags: u8, bytes: u32) -> Update {
        let i = hit.flow.0 as usize;
        let Some(s) = self.slots.get_mut(i) else {
            return Update::Forward;
        };
        if !s.has(LIVE) {
            return Update::Forward;
        }
        let secs = now.secs32();
        s.last_seen = secs;
        if self.cfg.accounting {
            count(s, &mut self.acct, i, hit.dir, bytes);
        }
        if s.has(REJECT) {
            return Update::Reject;
        }
        if hit.dir == Dir::Reply {
            s.flags |= REPLIED;
        }
        if s.proto() != proto::TCP {
            return Update::Forward;
        }
        if tcp_flags & (tcpf::SYN | tcpf::FIN | tcpf::RST) == 0 && s.tcp() == TcpState::Established
        {
            // The common case: nothing below changes an established connection.
            return Update::Forward;
        }
        let opener_dir = if s.has(INBOUND) {
            Dir::Reply
        } else {
            Dir::Orig
        };
        let from_opener = hit.dir == opener_dir;
        let fin_other = if hit.dir == Dir::Orig {
            s.has(FIN_REPLY)
        } else {
            s.has(FIN_ORIG)
        };
        let before = s.tcp();
        let after = before.next(from_opener, tcp_flags, fin_other);
        if tcp_flags & tcpf::FIN != 0 {
            s.flags |= if hit.dir == Dir::Orig {
                FIN_ORIG
            } else {
                FIN_REPLY
            };
        }
        if after != before {
            let old_timeout = self.timeout_of(&self.slots[i]);
            let s = &mut self.slots[i];
            s.set_tcp(after);
            let snap = *s;
            let new_timeout = self.timeout_of(&snap);
            if new_timeout < old_timeout {
                // The wheel only ever re-files later; a shorter timeout needs an earlier entry.
                self.schedule(
                    hit.flow.0,
                    snap.generation,
                    u64::from(secs) + u64::from(new_timeout),
                );
            }
        }
        let s = &mut self.slots[i];
        let is_syn = tcp_flags & (tcpf::SYN | tcpf::ACK | tcpf::RST) == tcpf::SYN;
        let outbound = !s.has(INBOUND) && s.gateway != NO_GW;
        let gw = s.gateway;
        let mut fail = false;
        if from_opener && is_syn {
            if matches!(before, TcpState::TimeWait | TcpState::Closed) {
                // A new connection on a reused 4-tuple.
                s.syns = 0;
                s.flags &= !(REPLIED | FAIL_COUNTED | FIN_ORIG | FIN_REPLY);
            }
            s.syns = s.syns.saturating_add(1);
            if outbound && s.syns == 2 && !s.has(REPLIED) && !s.has(FAIL_COUNTED) {
                s.flags |= FAIL_COUNTED;
                fail = true;
            }
        } else if !from_opener
            && tcp_flags & tcpf::RST != 0
            && before == TcpState::SynSent
            && outbound
            && !s.has(FAIL_COUNTED)
        {
            s.flags |= FAIL_COUNTED;
            fail = true;
        }
        let syns = s.syns;
        let may_rotate = from_opener
            && is_syn
            && outbound
            && !s.has(OVERRIDE)
            && !s.has(REPLIED)
            && self.cfg.policy.syn_retry.is_some_and(|n| syns > n);
        if fail {
            self.record_fail(gw, now);
        }
        if may_rotate {
            return self.rotate(hit.flow, now);
        }
        Update::Forward
    }

    fn window_ms(&self) -> u64 {
        self.cfg
            .policy
            .failure_redirect
            .map_or(60_000, |f| f.window_ms)
    }

    fn record_fail(&mut self, gw: u8, now: Time) {
        let w = self.window_ms();
        if let Some(f) = self.failures.get_mut(usize::from(gw)) {
            f.record_fail(now, w);
        }
    }

    fn record_open(&mut self, gw: u8, now: Time) {
        let w = self.window_ms();
        if let Some(f) = self.failures.get_mut(usize::from(gw)) {
            f.record_open(now, w);
        }
    }

    /// Move a flow whose SYN went unanswered to the next usable gateway, with a new NAT mapping.
    fn rotate(&mut self, id: FlowId, now: Time) -> Update {
        let i = id.0 as usize;
        let s = self.slots[i];
        let from = GatewayId(s.gateway);
        let Some(to) = policy::next_gateway(&self.cfg.gateways, from) else {
            return Update::Forward;
        };
        if to == from {
            return Update::Forward;
        }
        // Unbind from the old gateway, bind on the new one; on failure, stay.
        self.index
            .remove(self.reply_key(&s).index_hash(), (id.0 << 1) | 1);
        let new_bind = self.nat_bind(&s.key(), to, now);
        let (addr, port) = match new_bind {
            Ok(b) => b,
            Err(_) => {
                self.index
                    .insert(self.reply_key(&s).index_hash(), (id.0 << 1) | 1);
                self.stats.ports_exhausted += 1;
                return Update::Forward;
            }
        };
        self.nat_unbind(&s, now);
        self.gw_unlink(i);
        let slot = &mut self.slots[i];
        slot.clear_scratch();
        slot.gateway = to.0;
        slot.nat_addr = addr;
        slot.nat_port = port;
        slot.set_reason(ReasonKind::SynRetry);
        slot.flags &= !FAIL_COUNTED;
        let snap = *slot;
        self.gw_link(i, to.0);
        if !self
            .index
            .insert(self.reply_key(&snap).index_hash(), (id.0 << 1) | 1)
        {
            // Cannot happen with the index sized for 3 entries per flow; be safe anyway.
            self.remove(id, now);
            return Update::Reject;
        }
        self.record_open(to.0, now);
        self.stats.syn_rotations += 1;
        self.epoch += 1;
        Update::Rotated { from, to }
    }

    // ----- creation (the slow path) -----

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
                            let pool = &mut self.pools[usize::from(a) * 3 + c];
                            if pool.refs(p) == 0 {
                                let mut ia = [0u8; 4];
                                ia.copy_from_slice(&key.src_bytes()[..4]);
                                pool.bind(p, (ia, key.sport));
                            } else {
                                pool.share(p);
                            }
                        }
                        (a, p)
                    }
                    None => match self.nat_bind(&key, gw, now) {
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
            self.nat_unbind(&s, now);
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
            *c = Counters::default();
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
        let deadline = u64::from(secs) + u64::from(self.timeout_of(&self.slots[i]));
        self.schedule(id, self.slots[i].generation, deadline);
        self.stats.created += 1;
        self.epoch += 1;
        Ok(Hit {
            flow: FlowId(id),
            dir: Dir::Orig,
        })
    }

    fn alloc_slot(&mut self, now: Time) -> Result<u32, InsertError> {
        if let Some(i) = self.free.pop() {
            return Ok(i);
        }
        if self.slots.len() < self.cfg.max_flows as usize {
            self.slots.push(DEAD);
            self.links.push(UNLINKED);
            if self.cfg.accounting {
                self.acct.push(Counters::default());
            }
            return Ok((self.slots.len() - 1) as u32);
        }
        if self.early_drop(now) {
            if let Some(i) = self.free.pop() {
                return Ok(i);
            }
        }
        self.stats.refused_full += 1;
        Err(InsertError::TableFull {
            max: self.cfg.max_flows,
        })
    }

    fn free_slot(&mut self, i: usize) {
        self.slots[i].flags = 0;
        self.free.push(i as u32);
    }

    /// Drop one unanswered flow, looking at the flows due soonest (like conntrack's early drop).
    fn early_drop(&mut self, now: Time) -> bool {
        let mut examined = 0;
        let mut victim = None;
        'scan: for d in 0..WHEEL {
            let slot = (self.tick as usize + d) % WHEEL;
            for &e in &self.wheel[slot] {
                examined += 1;
                let (i, generation) = ((e >> 8) as usize, e as u8);
                if let Some(s) = self.slots.get(i)
                    && s.has(LIVE)
                    && s.generation == generation
                    && !s.has(REPLIED)
                {
                    victim = Some(i);
                    break 'scan;
                }
                if examined >= 256 {
                    break 'scan;
                }
            }
        }
        match victim {
            Some(i) => {
                self.unlink(FlowId(i as u32), now);
                self.stats.early_dropped += 1;
                true
            }
            None => false,
        }
    }

    fn mapping_key(&self, pool: usize, inside: &FlowKey) -> FlowKey {
        let mut k = FlowKey::v4_raw([0; 4], [0; 4], inside.proto, inside.sport, pool as u16);
        k.set_src_bytes(*inside.src_bytes());
        k.mark(MAPPING_KEY_MARK);
        k
    }

    /// Find or create the endpoint-independent mapping of `key`'s source on `gw`'s address.
    fn nat_bind(
        &mut self,
        key: &FlowKey,
        gw: GatewayId,
        _now: Time,
    ) -> Result<(u8, u16), InsertError> {
        let a = self.gw_addr.get(gw.index()).copied().unwrap_or(NO_NAT);
        if a == NO_NAT {
            return Ok((NO_NAT, key.sport));
        }
        let Some(class) = proto_class(key.proto) else {
            // No ports to translate: address-only NAT (the reply-key check refuses collisions).
            return Ok((a, key.sport));
        };
        let pool = usize::from(a) * 3 + class;
        let mk = self.mapping_key(pool, key);
        let h = mk.index_hash();
        let mut inside = [0u8; 4];
        inside.copy_from_slice(&key.src_bytes()[..4]);
        let pools = &self.pools;
        let found = self.index.find(h, |v| {
            v & MAPPING != 0
                && ((v >> 16) & 0x7fff) as usize == pool
                && pools[pool].refs(v as u16) > 0
                && pools[pool].inside(v as u16) == (inside, key.sport)
        });
        if let Some(v) = found {
            self.pools[pool].share(v as u16);
            return Ok((a, v as u16));
        }
        let Some(port) = self.pools[pool].alloc(key.sport, h) else {
            self.stats.ports_exhausted += 1;
            return Err(InsertError::PortsExhausted {
                addr: self.ext_addrs[usize::from(a)],
                proto: key.proto,
            });
        };
        self.pools[pool].bind(port, (inside, key.sport));
        if !self
            .index
            .insert(h, MAPPING | (pool as u32) << 16 | u32::from(port))
        {
            self.pools[pool].unshare(port, 0);
            return Err(InsertError::TableFull {
                max: self.cfg.max_flows,
            });
        }
        Ok((a, port))
    }

    fn nat_unbind(&mut self, s: &Slot, now: Time) {
        if s.nat_addr == NO_NAT {
            return;
        }
        let Some(class) = proto_class(s.proto()) else {
            return;
        };
        let pool = usize::from(s.nat_addr) * 3 + class;
        let until = now.secs32().saturating_add(self.cfg.nat.cooldown_secs);
        if let Some(p) = self.pools.get_mut(pool)
            && p.unshare(s.nat_port, until)
            && !p.is_reserved(s.nat_port)
        {
            let mk = self.mapping_key(pool, &s.key());
            self.index.remove(
                mk.index_hash(),
                MAPPING | (pool as u32) << 16 | u32::from(s.nat_port),
            );
        }
    }

    /// Reserve an external port on `gateway`'s address for a port forward, so that dynamic mappings
    /// never take it. Errors if a dynamic mapping holds it now.
    pub fn reserve_port(
        &mut self,
        gateway: GatewayId,
        proto: u8,
        port: u16,
    ) -> Result<(), InsertError> {
        let a = *self
            .gw_addr
            .get(gateway.index())
            .ok_or(InsertError::UnknownGateway(gateway))?;
        let Some(class) = proto_class(proto) else {
            return Ok(());
        };
        if a == NO_NAT {
            return Ok(());
        }
        if self.pools[usize::from(a) * 3 + class].reserve(port) {
            Ok(())
        } else {
            Err(InsertError::Exists)
        }
    }

    /// The inside endpoint mapped to `ext:port` for `proto`, if any (for hairpinning: a LAN host
    /// that sends to the router's own external address and port reaches the host mapped there).
    pub fn mapping(&self, ext: IpAddr, proto: u8, port: u16) -> Option<(IpAddr, u16)> {
        let a = self.ext_addrs.iter().position(|&x| x == ext)?;
        let pool = self.pools.get(a * 3 + proto_class(proto)?)?;
        if pool.refs(port) == 0 {
            return None;
        }
        let (addr, p) = pool.inside(port);
        Some((IpAddr::from(addr), p))
    }

    /// The index of `addr` among the external addresses, if it is one of the router's.
    pub fn external_index(&self, addr: IpAddr) -> Option<usize> {
        self.ext_addrs.iter().position(|&x| x == addr)
    }

    fn reply_key(&self, s: &Slot) -> FlowKey {
        let key = s.key();
        if s.nat_addr == NO_NAT {
            return key.reversed();
        }
        let ext = self
            .ext_addrs
            .get(usize::from(s.nat_addr))
            .copied()
            .unwrap_or(key.src_ip());
        FlowKey::new(key.dst_ip(), ext, key.proto, key.dport, s.nat_port).unwrap_or(key.reversed())
    }

    fn gw_link(&mut self, i: usize, gw: u8) {
        let head = self.gw_head[usize::from(gw)];
        self.links[i].gw_prev = NONE;
        self.links[i].gw_next = head;
        if head != NONE {
            self.links[head as usize].gw_prev = i as u32;
        }
        self.gw_head[usize::from(gw)] = i as u32;
        self.gw_flows[usize::from(gw)] += 1;
    }

    fn gw_unlink(&mut self, i: usize) {
        let gateway = self.slots[i].gateway;
        if gateway == NO_GW {
            return;
        }
        let l = self.links[i];
        if l.gw_prev != NONE {
            self.links[l.gw_prev as usize].gw_next = l.gw_next;
        } else if let Some(h) = self.gw_head.get_mut(usize::from(gateway))
            && *h == i as u32
        {
            *h = l.gw_next;
        }
        if l.gw_next != NONE {
            self.links[l.gw_next as usize].gw_prev = l.gw_prev;
        }
        if let Some(c) = self.gw_flows.get_mut(usize::from(gateway)) {
            *c = c.saturating_sub(1);
        }
        self.links[i].gw_next = NONE;
        self.links[i].gw_prev = NONE;
    }

    // ----- removal and expiry -----

    /// Remove a flow now (after a reject, or on the caller's decision). Its NAT mapping is released
    /// when no other flow shares it. Removing a flow that is already gone does nothing.
    pub fn remove(&mut self, id: FlowId, now: Time) {
        if self.unlink(id, now) {
            self.stats.removed += 1;
        }
    }

    /// Take a flow out of every structure; returns whether it was live.
    fn unlink(&mut self, id: FlowId, now: Time) -> bool {
        let i = id.0 as usize;
        let Some(s) = self.slots.get(i).copied() else {
            return false;
        };
        if !s.has(LIVE) {
            return false;
        }
        self.index.remove(s.key().index_hash(), id.0 << 1);
        if !s.has(REJECT) {
            self.index
                .remove(self.reply_key(&s).index_hash(), (id.0 << 1) | 1);
            self.nat_unbind(&s, now);
        }
        self.gw_unlink(i);
        let slot = &mut self.slots[i];
        slot.flags = 0;
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(id.0);
        self.live -= 1;
        self.epoch += 1;
        true
    }

    fn timeout_of(&self, s: &Slot) -> u32 {
        let t = &self.cfg.timeouts;
        if s.has(REJECT) {
            return t.reject_hold;
        }
        match s.proto() {
            proto::TCP => match s.tcp() {
                TcpState::Established => t.tcp_established,
                TcpState::SynSent if s.has(INBOUND) => t.tcp_syn_inbound,
                TcpState::None if self.cfg.tcp_loose => t.tcp_established,
                _ => t.tcp_transitory,
            },
            proto::UDP => t.udp,
            proto::ICMP | proto::ICMPV6 => t.icmp,
            _ => t.other,
        }
    }

    fn schedule(&mut self, id: u32, generation: u8, deadline: u64) {
        let at = deadline.max(self.tick).min(self.tick + WHEEL as u64 - 1);
        self.wheel[(at % WHEEL as u64) as usize].push((id << 8) | u32::from(generation));
    }

    /// Expire flows idle past their timeout and return cooled-down NAT ports to their pools.
    /// Examines at most `budget` wheel entries (call again if it returns false); appends each expired
    /// flow to `out`. Call it about once a second; expiry is exact to the second then, and a flow's
    /// expiry may come up to one wheel turn (4096 s) late if calls stop for longer.
    pub fn expire(&mut self, now: Time, budget: usize, out: &mut Vec<FlowInfo>) -> bool {
        let target = now.secs();
        let secs = now.secs32();
        for p in &mut self.pools {
            p.sweep(secs);
        }
        if target >= self.tick + WHEEL as u64 {
            // Calls stopped for more than a wheel turn: look at every slot once, from now on.
            self.tick = target.saturating_sub(WHEEL as u64 - 1);
        }
        let mut examined = 0;
        while self.tick <= target {
            let slot = (self.tick % WHEEL as u64) as usize;
            let mut entries = core::mem::take(&mut self.wheel[slot]);
            while let Some(e) = entries.pop() {
                if examined >= budget {
                    entries.push(e);
                    // Put back what is left, keeping what was scheduled meanwhile.
                    let added = core::mem::replace(&mut self.wheel[slot], entries);
                    self.wheel[slot].extend(added);
                    return false;
                }
                examined += 1;
                let (i, generation) = ((e >> 8) as usize, e as u8);
                let Some(s) = self.slots.get(i).copied() else {
                    continue;
                };
                if !s.has(LIVE) || s.generation != generation {
                    continue;
                }
                let deadline = u64::from(s.last_seen) + u64::from(self.timeout_of(&s));
                if deadline <= target {
                    out.push(self.info(i));
                    if s.proto() == proto::TCP
                        && s.tcp().is_opening()
                        && !s.has(REPLIED)
                        && !s.has(INBOUND)
                        && !s.has(FAIL_COUNTED)
                        && s.gateway != NO_GW
                    {
                        self.record_fail(s.gateway, now);
                    }
                    self.unlink(FlowId(i as u32), now);
                    self.stats.expired += 1;
                } else {
                    let at = deadline
                        .min(self.tick + WHEEL as u64 - 1)
                        .max(self.tick + 1);
                    self.wheel[(at % WHEEL as u64) as usize].push(e);
                }
            }
            // Keep the allocation for the next turn.
            let added = core::mem::replace(&mut self.wheel[slot], entries);
            self.wheel[slot].extend(added);
            self.tick += 1;
        }
        true
    }

    // ----- link events -----

    /// Set a gateway's state without touching any flow (degraded, forced, disabled, up).
    pub fn set_gateway_state(&mut self, g: GatewayId, state: GatewayState) {
        if let Some(gw) = self.cfg.gateways.get_mut(g.index()) {
            gw.state = state;
        }
    }

    /// Gateway `g` went down: new flows avoid it at once. With [`DownAction::Reset`] its flows — and
    /// only its flows — lose their NAT mappings and are marked to be rejected on their next packet
    /// from the inside; they are returned so the caller can log them or act sooner.
    pub fn gateway_down(&mut self, g: GatewayId, now: Time, action: DownAction) -> Vec<FlowInfo> {
        self.set_gateway_state(g, GatewayState::Down);
        let mut out = Vec::new();
        let mut cur = self.gw_head.get(g.index()).copied().unwrap_or(NONE);
        while cur != NONE {
            let i = cur as usize;
            let s = self.slots[i];
            cur = self.links[i].gw_next;
            if !s.has(LIVE) || s.has(REJECT) {
                continue;
            }
            out.push(self.info(i));
            if action == DownAction::Reset {
                self.mark_reject(i, now);
            }
        }
        out
    }

    /// Gateway `g` is back: new flows return to it as the policy says. With [`Failback::Move`], the
    /// flows on other gateways that the policy now assigns to `g` are marked for reject (returned);
    /// with [`Failback::Stay`] nothing else changes.
    pub fn gateway_up(&mut self, g: GatewayId, now: Time, failback: Failback) -> Vec<FlowInfo> {
        self.set_gateway_state(g, GatewayState::Up);
        let mut out = Vec::new();
        if failback == Failback::Stay {
            return out;
        }
        for other in 0..self.cfg.gateways.len() {
            if other == g.index() {
                continue;
            }
            let mut cur = self.gw_head[other];
            while cur != NONE {
                let i = cur as usize;
                let s = self.slots[i];
                cur = self.links[i].gw_next;
                if !s.has(LIVE) || s.has(REJECT) || s.has(OVERRIDE) || s.has(INBOUND) {
                    continue;
                }
                let choice = self.select(&s.key(), now);
                if choice.is_ok_and(|c| c.gateway == g) {
                    out.push(self.info(i));
                    self.mark_reject(i, now);
                }
            }
        }
        out
    }

    /// Release a flow's NAT mapping and reply entry, and mark it to be rejected on its next packet
    /// from the inside; it is then held for `reject_hold` seconds.
    fn mark_reject(&mut self, i: usize, now: Time) {
        let s = self.slots[i];
        self.index
            .remove(self.reply_key(&s).index_hash(), ((i as u32) << 1) | 1);
        self.nat_unbind(&s, now);
        self.epoch += 1;
        let slot = &mut self.slots[i];
        slot.clear_scratch();
        slot.flags |= REJECT;
        slot.nat_addr = NO_NAT;
        slot.last_seen = now.secs32();
        let generation = slot.generation;
        let deadline = now.secs() + u64::from(self.cfg.timeouts.reject_hold);
        self.schedule(i as u32, generation, deadline);
    }

    // ----- the control plane's view -----

    fn info(&self, i: usize) -> FlowInfo {
        let s = &self.slots[i];
        FlowInfo {
            id: FlowId(i as u32),
            key: s.key(),
            reply_key: self.reply_key(s),
            gateway: (s.gateway != NO_GW).then_some(GatewayId(s.gateway)),
            nat: (s.nat_addr != NO_NAT)
                .then(|| (self.ext_addrs[usize::from(s.nat_addr)], s.nat_port)),
            tcp: s.tcp(),
            syns: s.syns,
            replied: s.has(REPLIED),
            inbound: s.has(INBOUND),
            reason: s.reason(),
            created: self.links.get(i).map_or(0, |l| l.created),
            last_seen: s.last_seen,
            counters: self
                .acct
                .get(i)
                .map_or_else(Counters::default, |c| Counters {
                    packets: [0, 1].map(|d| c.packets[d] + u64::from(s.hot_packets[d])),
                    bytes: [0, 1].map(|d| c.bytes[d] + u64::from(s.hot_bytes[d])),
                }),
        }
    }

    /// Part of an incremental sweep over the live flows: those in the `max` slots from slot
    /// `from` on, in slot order, and the slot the next call continues from (0 once the sweep has
    /// passed the last slot, so successive calls wrap around). For periodic control-plane work
    /// that must not hold up the packet path when the table is large (one [`FlowTable::iter`]
    /// over a million flows takes milliseconds). A flow created behind the cursor is seen on the
    /// next round.
    pub fn scan(&self, from: u32, max: usize) -> (impl Iterator<Item = FlowInfo> + '_, u32) {
        let len = self.slots.len();
        let start = (from as usize).min(len);
        let end = start.saturating_add(max).min(len);
        let next = if end >= len { 0 } else { end as u32 };
        let flows = (start..end)
            .filter(|&i| self.slots[i].has(LIVE))
            .map(|i| self.info(i));
        (flows, next)
    }

    /// Every live flow, in slot order (for the control plane: snapshots, listings, metrics).
    pub fn iter(&self) -> impl Iterator<Item = FlowInfo> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.has(LIVE))
            .map(|(i, _)| self.info(i))
    }

    /// The policy's choice for a new flow with `key` now (overrides first).
    fn select(&self, key: &FlowKey, now: Time) -> Result<Choice, NoGateway> {
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

    /// Which gateway `key` uses or would use, and why.
    pub fn explain(&self, key: &FlowKey, now: Time) -> Explanation {
        let flow = self.lookup(key).map(|h| self.info(h.flow.0 as usize));
        let orig = flow.map_or(*key, |f| f.key);
        let choice = self.select(&orig, now);
        Explanation {
            flow,
            choice,
            names: self.cfg.gateways.iter().map(|g| g.name.clone()).collect(),
        }
    }
}

/// A borrowed view of one live flow: what the packet path needs to rewrite a packet.
#[derive(Clone, Copy)]
pub struct FlowRef<'a> {
    t: &'a FlowTable,
    s: &'a Slot,
}

impl FlowRef<'_> {
    /// The key from the inside host.
    #[inline]
    pub fn key(&self) -> FlowKey {
        self.s.key()
    }

    /// The gateway, if the flow goes through one.
    #[inline]
    pub fn gateway(&self) -> Option<GatewayId> {
        (self.s.gateway != NO_GW).then_some(GatewayId(self.s.gateway))
    }

    /// The external address (16-byte field as in [`FlowKey`]) and port, if the flow is translated.
    #[inline]
    pub fn nat(&self) -> Option<(&[u8; 16], u16)> {
        if self.s.nat_addr == NO_NAT {
            return None;
        }
        self.t
            .ext_bytes
            .get(usize::from(self.s.nat_addr))
            .map(|a| (a, self.s.nat_port))
    }

    /// The flow's scratch ([`FlowTable::set_scratch`]); `None` for IPv6 flows, which have none.
    #[inline(always)]
    pub fn scratch(&self) -> Option<&[u8; SCRATCH]> {
        self.s.is_v4().then_some(&self.s.tail)
    }

    /// Whether it was opened from outside.
    #[inline]
    pub fn is_inbound(&self) -> bool {
        self.s.has(INBOUND)
    }

    /// Whether its gateway went down and its next packet must be rejected.
    #[inline]
    pub fn is_rejected(&self) -> bool {
        self.s.has(REJECT)
    }

    /// TCP state.
    #[inline]
    pub fn tcp(&self) -> TcpState {
        self.s.tcp()
    }

    /// SYNs seen from the opener.
    #[inline]
    pub fn syns(&self) -> u8 {
        self.s.syns
    }

    /// Why it takes its gateway (or why it has none).
    #[inline]
    pub fn reason(&self) -> ReasonKind {
        self.s.reason()
    }
}

#[cfg(test)]
mod tests;
