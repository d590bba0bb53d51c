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
//!   never O(table). A full table drops an unanswered flow due soon ([`evict`]).
//! - **Per-gateway lists** ([`gateways`]): each slot is on a doubly linked list of its gateway's
//!   flows, so a link event touches only that link's flows.
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
}

#[cfg(test)]
mod tests;
