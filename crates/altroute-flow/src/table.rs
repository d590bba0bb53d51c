//! [`FlowTable`]: one worker's connection table — the struct, its construction and configuration,
//! and the map of the files that implement it.
//!
//! Layout, for speed at a million flows:
//! - **Records** ([`slot`]): one 64-byte, cache-line-aligned slot per connection, in a slab that
//!   never moves (allocated up to `max_flows`, reused through a free list). The key is stored split
//!   ([`FlowKey::split`](crate::FlowKey::split)): 16 bytes identify an IPv4 key and are all a lookup compares; the other
//!   24 hold the rest of an IPv6 key's addresses or, for IPv4, the owner's **scratch**
//!   ([`FlowTable::set_scratch`]) — where a packet path keeps what it precomputed for the flow,
//!   so reading it costs no line beyond the lookup's.
//! - **Index hash**: IPv4 keys are filed under a two-word hash of those 16 bytes, cheaper than
//!   [`FlowKey::hash64`](crate::FlowKey::hash64) (which the load balancer keeps using: it must never change).
//! - **Index** ([`index`], read by [`lookup`]): both directions of every connection point at its
//!   slot; the original key and the reply key (after translation) are two entries.
//!   Endpoint-independent NAT mappings ([`mapping`]) are a third kind of entry in the same index,
//!   so creating a flow costs no other map.
//! - **Counters**: per-direction packets and bytes, optional (`accounting`), like Linux's
//!   `nf_conntrack_acct`. A packet adds to small counters inside its slot (16-bit packets, 32-bit
//!   bytes per direction), so counting costs no cache line beyond the one the lookup already
//!   read; they are folded into 64-bit totals in a parallel array of 32-byte cells when they
//!   would overflow (every 65,535 packets or 4 GiB at most), and readers add both.
//! - **Links**: what only flow creation, removal and link events read — the creation time and the
//!   per-gateway list pointers — sit in a parallel array of 16-byte cells, out of the slot.
//! - **Expiry** ([`expiry`]): a timing wheel of one-second ticks holding `(slot, generation)`
//!   words. A flow sits in the wheel once; when its tick comes, its real deadline is checked from
//!   `last_seen` and its state's timeout, and it either expires or is re-filed at that deadline.
//!   A sweep therefore touches only flows whose deadline passed or was re-filed — O(expired),
//!   never O(table). A flow never answered has a shorter (embryonic) timeout.
//! - **Per-gateway lists** ([`gateways`]): each slot is on a doubly linked list of its gateway's
//!   flows, so a link event touches only that link's flows.
//! - **Sources** ([`sources`]): per inside host, its flows, NAT mappings and unanswered flows
//!   (a list, oldest first, through 8 bytes per slot), for the per-source [`Limits`] and for
//!   early drop ([`evict`]: the oldest unanswered flow of the host with the most, in O(1)). Only
//!   creation, removal, expiry, early drop and a flow's first answer through
//!   [`FlowTable::update`] touch them — never the packet fast path.
//!
//! What the caller does, file by file: [`insert`] creates flows, [`update`] accounts packets and
//! runs the TCP state machine, [`gateways`] handles link events, [`view`] answers the control
//! plane (snapshots, sweeps, explain).
//!
//! A table belongs to one worker thread (no locks). Workers split the NAT port space (see
//! [`PortPartition`]) so each knows, from a port alone, which worker owns a mapping.

mod evict;
mod expiry;
mod gateways;
mod index;
mod insert;
mod live;
mod lookup;
mod mapping;
mod slot;
mod sources;
mod update;
mod view;

pub use gateways::{DownAction, Failback};
pub use insert::InsertError;
pub use lookup::{Dir, FlowId, Hit, PendingLookup};
pub use slot::{FlowCounters, FlowRef, ReasonKind, SCRATCH};
pub use update::Update;
pub use view::{Explanation, FlowInfo};

use core::net::IpAddr;

use crate::failure::FailureWindow;
use crate::nat::{PortPartition, PortPool};
use crate::policy::{Overrides, Policy};
use crate::{ConfigError, Gateway, GatewayId, MAX_GATEWAYS, Time, Timeouts};
use expiry::WHEEL;
use index::Index;
use mapping::{addr_bytes, proto_class};
use slot::{Links, NO_NAT, NONE, Slot};
use sources::{Sources, addr_key, key_addr};

/// The largest table: slot numbers share a 32-bit wheel word with an 8-bit generation.
pub const MAX_FLOWS: u32 = 1 << 24;

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

/// What keeps one inside host from taking the table, or a worker's NAT ports, for itself; and
/// where early drop begins. `None` derives a default from the table's size (below); the limits
/// in force are [`FlowTable::limits`].
///
/// They apply per table, that is per worker: a host's flows spread over the workers by source
/// port, so in all it may hold up to about `workers` times as much. A host is a source address
/// (an IPv6 host with many addresses is several sources; early drop still covers it).
///
/// - `flows_per_source`, default `max_flows / 8`, at least `min(1024, max_flows)`. At the
///   daemon's default size (2^20 flows over 2 workers: 524,288 per table) that is 65,536 per
///   host and worker — twenty times what a busy desktop or a torrent client holds (a few
///   thousand connections) — while eight hosts at their limit still cannot fill the table. A
///   table of 32,768 gives 4,096; the floor keeps tiny tables usable by one host.
/// - `ports_per_source`, default a quarter of the ports this worker owns in the NAT range (its
///   pool per external address and protocol), at least `min(256, pool)`: counted over all
///   addresses and protocols, reserved (port-forward) ports excepted. With the default range
///   (1024–65535) and 2 workers, 8,064 per host and worker: a host opening 20 connections a
///   second, each holding its port about 6 minutes (the 4-minute close plus the 2-minute
///   cooldown), needs about 7,200 in all; and it takes four hosts at their limit to exhaust a
///   pool. Flows sharing a mapping (same inside address and port) count it once.
/// - `high_water`, default `max_flows`: from this many live flows on, each new flow first drops
///   one unanswered flow — the oldest of the host with the most of them. Dropping is O(1)
///   (amortised) and never fails while an unanswered flow remains, unlike conntrack's bounded
///   scan, so waiting until the table is full loses nothing; a lower mark keeps room for bursts
///   at the price of unanswered flows dropped sooner.
///
/// ```
/// use altroute_flow::*;
/// let t = FlowTable::new(TableConfig { max_flows: 32_768, ..TableConfig::default() }).unwrap();
/// assert_eq!(t.limits().flows_per_source, Some(4096));
/// assert_eq!(t.limits().ports_per_source, Some(16_128)); // a quarter of 64,512 ports, 1 worker
/// assert_eq!(t.limits().high_water, Some(32_768));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// Most flows one inside host may hold in this table (1..).
    pub flows_per_source: Option<u32>,
    /// Most NAT mappings (external ports) one inside host may hold in this table (1..).
    pub ports_per_source: Option<u32>,
    /// Live flows from which a new flow first drops an unanswered one (1..=`max_flows`).
    pub high_water: Option<u32>,
}

impl Limits {
    /// Every field filled in, for a table of `max_flows` flows whose worker owns `pool` ports
    /// of the NAT range; errors on a zero or out-of-range value.
    fn resolve(&self, max_flows: u32, pool: u32) -> Result<Limits, ConfigError> {
        let check = |field, v: Option<u32>, max: u32, default: u32| match v {
            Some(v) if v == 0 || v > max => Err(ConfigError::BadLimit {
                field,
                value: v,
                max,
            }),
            Some(v) => Ok(v),
            None => Ok(default),
        };
        Ok(Limits {
            flows_per_source: Some(check(
                "flows_per_source",
                self.flows_per_source,
                u32::MAX,
                (max_flows / 8).max(max_flows.min(1024)),
            )?),
            ports_per_source: Some(check(
                "ports_per_source",
                self.ports_per_source,
                u32::MAX,
                (pool / 4).max(pool.min(256)).max(1),
            )?),
            high_water: Some(check("high_water", self.high_water, max_flows, max_flows)?),
        })
    }
}

/// Everything a table is built from.
#[derive(Clone, Debug, PartialEq)]
pub struct TableConfig {
    /// Most flows held; a new flow beyond it is refused (after trying early drop). At most 2^24.
    pub max_flows: u32,
    /// Per-source limits and the early-drop mark.
    pub limits: Limits,
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
            limits: Limits::default(),
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

/// Table-wide counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableStats {
    /// Flows created.
    pub created: u64,
    /// Flows expired by timeout.
    pub expired: u64,
    /// Flows removed by the caller or a link event.
    pub removed: u64,
    /// New flows refused because the table was full (and held no unanswered flow to drop).
    pub refused_full: u64,
    /// Unanswered flows dropped early to make room, heaviest sources first.
    pub early_dropped: u64,
    /// Flows that expired without ever being answered (their embryonic timeout; also in
    /// `expired`).
    pub embryonic_expired: u64,
    /// New flows refused because their host held its limit of flows.
    pub refused_source_flows: u64,
    /// New flows refused because their host held its limit of NAT ports.
    pub refused_source_ports: u64,
    /// New flows refused for lack of NAT ports.
    pub ports_exhausted: u64,
    /// New flows refused because no gateway could take them.
    pub no_gateway: u64,
    /// SYN-retry rotations.
    pub syn_rotations: u64,
}

/// One worker's connection table: see the [crate documentation](crate) for its use. Inside, one
/// 64-byte slot per flow, a bucketed hash index that finds it from either side and a timing wheel
/// for expiry, all allocated at `max_flows` when the table is built (the `table` module's source
/// documents the layout).
pub struct FlowTable {
    cfg: TableConfig,
    slots: Vec<Slot>,
    links: Vec<Links>,
    acct: Vec<FlowCounters>,
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
    /// Per inside host: flows, mappings, unanswered flows.
    sources: Sources,
    /// The limits in force (from `cfg.limits`, resolved).
    flow_limit: u32,
    port_limit: u32,
    high_water: u32,
}

/// What one inside host holds in a table ([`FlowTable::source_usage`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SourceUsage {
    /// Live flows.
    pub flows: u32,
    /// NAT mappings (external ports), reserved ports excepted.
    pub ports: u32,
    /// Flows not answered yet (the ones early drop takes), as far as the table has seen: a flow
    /// first answered on the packet fast path ([`FlowTable::touch`]) counts until the table
    /// next looks at it (its expiry check, within its embryonic timeout).
    pub unanswered: u32,
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
        let pool = (p.range.0..=p.range.1).filter(|&q| p.is_mine(q)).count() as u32;
        let limits = cfg.limits.resolve(cfg.max_flows, pool)?;
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
            sources: Sources::new(max),
            flow_limit: limits.flows_per_source.unwrap_or(u32::MAX),
            port_limit: limits.ports_per_source.unwrap_or(u32::MAX),
            high_water: limits.high_water.unwrap_or(cfg.max_flows),
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

    /// The per-source limits and the early-drop mark in force (every field `Some`).
    pub fn limits(&self) -> Limits {
        Limits {
            flows_per_source: Some(self.flow_limit),
            ports_per_source: Some(self.port_limit),
            high_water: Some(self.high_water),
        }
    }

    /// What inside host `host` holds in this table (`None`: nothing).
    pub fn source_usage(&self, host: IpAddr) -> Option<SourceUsage> {
        let r = self.sources.get(self.sources.find(addr_key(host))?)?;
        Some(SourceUsage {
            flows: r.flows,
            ports: r.ports,
            unanswered: r.unanswered,
        })
    }

    /// Every inside host holding something in this table, in no particular order (for the
    /// control plane: the heaviest hosts, per-host counts). O(hosts).
    pub fn sources(&self) -> impl Iterator<Item = (IpAddr, SourceUsage)> + '_ {
        self.sources.iter().map(|r| {
            (
                key_addr(r.addr),
                SourceUsage {
                    flows: r.flows,
                    ports: r.ports,
                    unanswered: r.unanswered,
                },
            )
        })
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
    /// index, wheel, free list, per-source records; the NAT pools' fixed 1.4 MiB per address are
    /// included).
    pub fn memory_bytes(&self) -> usize {
        self.sources.bytes()
            + self.slots.capacity() * 64
            + self.links.capacity() * 16
            + self.acct.capacity() * 32
            + self.free.capacity() * 4
            + self.index.bytes()
            + self
                .wheel
                .iter()
                .map(|v| v.capacity() * 4 + 24)
                .sum::<usize>()
            + self.pools.len() * (8192 * 3 + 65536 * 4 + 65536 * 6)
    }

    /// Check the per-source books (tests): the lists agree with the counts and the flows' marks;
    /// every flow on an unanswered list is a live flow of that source, unanswered or answered on
    /// the fast path since (not reconciled yet); every unanswered flow is on its list. Returns
    /// each source's listed flows, oldest first.
    #[cfg(test)]
    pub(crate) fn audit_sources(
        &self,
    ) -> Result<std::collections::HashMap<IpAddr, Vec<FlowId>>, String> {
        let lists = self.sources.audit()?;
        let mut out = std::collections::HashMap::new();
        let mut on_lists = 0;
        for (addr, slots) in lists {
            let host = key_addr(addr);
            for &i in &slots {
                let s = &self.slots[i as usize];
                if !s.has(slot::LIVE)
                    || !s.listed()
                    || s.has(slot::INBOUND)
                    || s.key().src_ip() != host
                {
                    return Err(format!("slot {i} is on {host}'s unanswered list wrongly"));
                }
                if self.sources.find(addr) != Some(self.links[i as usize].src) {
                    return Err(format!("slot {i} names another record"));
                }
            }
            on_lists += slots.len();
            out.insert(host, slots.into_iter().map(FlowId).collect());
        }
        let marked = self
            .slots
            .iter()
            .filter(|s| s.has(slot::LIVE) && s.listed())
            .count();
        if marked != on_lists {
            return Err(format!(
                "{marked} flows marked listed, {on_lists} on the lists"
            ));
        }
        if let Some(i) = self
            .slots
            .iter()
            .position(|s| s.has(slot::LIVE) && evict::unanswered(s) && !s.listed())
        {
            return Err(format!("unanswered slot {i} is not listed"));
        }
        Ok(out)
    }

    /// Take every flow answered on the fast path off the unanswered lists now (tests: what the
    /// expiry checks do over time).
    #[cfg(test)]
    pub(crate) fn reconcile_all(&mut self) {
        for i in 0..self.slots.len() {
            let s = &self.slots[i];
            if s.has(slot::LIVE) && s.listed() && s.has(slot::REPLIED) {
                self.unlist(i);
            }
        }
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
}

#[cfg(test)]
mod tests;
