//! Shared helpers for altroute's benchmarks: deterministic traffic generators and the DashMap
//! baseline the flow table is compared against.

pub mod pipeline;

use std::net::Ipv4Addr;

use altroute_flow::{FlowKey, FlowTable, Gateway, Hit, TableConfig, Time, proto};
use dashmap::DashMap;

/// Every bench binary puts large blocks (the flow table's arrays, the traces) on whole 2 MiB huge
/// pages ([`altroute_io::mem::HugePageAlloc`]), so that a table's speed does not depend on where
/// malloc placed it (it did, by up to 1.5x at 64k flows, between processes). The daemon does not
/// use this allocator (yet): it only advises the whole huge pages inside each array
/// (`bench/RESULTS.md`, session 7, says what that changes).
#[global_allocator]
static ALLOC: altroute_io::mem::HugePageAlloc = altroute_io::mem::HugePageAlloc;

/// A small deterministic PRNG (xorshift64*), so every run sees the same traffic.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed (0 is replaced by a fixed odd constant).
    pub fn new(seed: u64) -> Rng {
        Rng(if seed == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            seed
        })
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A value in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// `n` distinct LAN-side flow keys (TCP and UDP mixed), deterministic for a seed: 3000 hosts with
/// 16 source ports each talk to 256 servers on 4 ports, so that at a million flows the NAT needs
/// about 48 000 endpoint-independent mappings per protocol (what two external addresses can hold), not a
/// million.
pub fn lan_keys(n: usize, seed: u64) -> Vec<FlowKey> {
    let mut rng = Rng::new(seed);
    let mut seen = std::collections::HashSet::with_capacity(n);
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let host = rng.below(3000) as u32;
        let client = Ipv4Addr::from(0x0a00_0000 | host);
        let server = Ipv4Addr::from(0xcb00_7100 | rng.below(256) as u32);
        let p = if rng.below(4) == 0 {
            proto::UDP
        } else {
            proto::TCP
        };
        let sport = 40_000 + rng.below(16) as u16;
        let dport = [443, 80, 53, 8443][rng.below(4) as usize];
        let k = FlowKey::v4(client, server, p, sport, dport);
        if seen.insert(k) {
            out.push(k);
        }
    }
    out
}

/// A table holding `keys` (each inserted through two gateways with NAT), with room for them.
pub fn filled_table(keys: &[FlowKey], accounting: bool) -> FlowTable {
    filled_table_with_room(keys, keys.len(), accounting)
}

/// A table holding `keys` (as [`filled_table`]) with room for `max_flows` flows.
pub fn filled_table_with_room(keys: &[FlowKey], max_flows: usize, accounting: bool) -> FlowTable {
    let mut t = FlowTable::new(TableConfig {
        max_flows: (max_flows.max(keys.len()) as u32).max(16),
        accounting,
        gateways: vec![
            Gateway::new("isp1", Some(Ipv4Addr::new(192, 0, 2, 1).into())).weight(4),
            Gateway::new("isp2", Some(Ipv4Addr::new(198, 51, 100, 1).into())),
        ],
        ..TableConfig::default()
    })
    .expect("valid bench table config");
    // (Its arrays are on huge pages already: this crate's global allocator put them there.)
    let now = Time::from_secs(1);
    for k in keys {
        // Port exhaustion is impossible here: at most ~64k flows per (host, proto) and 4096 hosts.
        let _ = t.insert(*k, now, true, altroute_flow::tcp::flags::SYN);
    }
    t
}

/// The per-flow value a DashMap-based design would store (the "spec" baseline).
#[derive(Clone, Copy, Debug, Default)]
pub struct BaselineEntry {
    /// Gateway index.
    pub gateway: u8,
    /// External port.
    pub nat_port: u16,
    /// Last seen, seconds.
    pub last_seen: u32,
    /// Packets per direction.
    pub packets: [u64; 2],
    /// Bytes per direction.
    pub bytes: [u64; 2],
}

/// A DashMap + ahash table keyed by both directions, as the original spec suggested.
pub fn dashmap_table(keys: &[FlowKey]) -> DashMap<FlowKey, BaselineEntry, ahash::RandomState> {
    let m =
        DashMap::with_capacity_and_hasher(keys.len(), ahash::RandomState::with_seeds(1, 2, 3, 4));
    for (i, k) in keys.iter().enumerate() {
        m.insert(
            *k,
            BaselineEntry {
                gateway: (i % 2) as u8,
                nat_port: k.sport,
                ..BaselineEntry::default()
            },
        );
    }
    m
}

/// `n` lookups over the flows of `t` (whose original keys are `keys`) in a shuffled order, every one
/// a hit: even ones by original key, odd ones by reply key.
pub fn probe_order(t: &FlowTable, keys: &[FlowKey], n: usize, seed: u64) -> Vec<FlowKey> {
    let replies: Vec<FlowKey> = t.iter().map(|f| f.reply_key).collect();
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|i| {
            let j = rng.below(keys.len() as u64) as usize;
            if i % 2 == 0 {
                keys[j]
            } else {
                replies[j % replies.len()]
            }
        })
        .collect()
}

/// Look up every key of `order` in `t` in batches of 32, returning the number of hits.
pub fn batch_lookups(t: &FlowTable, order: &[FlowKey]) -> usize {
    let mut out = [None::<Hit>; 32];
    let mut hits = 0;
    for chunk in order.chunks(32) {
        t.lookup_batch(chunk, &mut out);
        hits += out[..chunk.len()].iter().filter(|h| h.is_some()).count();
    }
    hits
}

/// Resident set size of this process, in bytes (Linux).
pub fn rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = s.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// Time this thread has spent on a CPU (Linux `/proc/thread-self/schedstat`, nanoseconds), or
/// `None` where that file is missing. On a machine shared with other work, per-packet costs are
/// computed from this rather than from wall-clock time, which also counts the time the thread
/// waited for a core.
pub fn thread_cpu_time() -> Option<std::time::Duration> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = s.split_whitespace().next()?.parse().ok()?;
    Some(std::time::Duration::from_nanos(ns))
}

/// The clock the benches report: this thread's on-CPU time ([`thread_cpu_time`]) by default, or
/// wall-clock time with `ALTROUTE_BENCH_CLOCK=wall` (or where on-CPU time is unavailable).
#[derive(Clone, Copy, Debug)]
pub struct BenchClock(bool);

impl BenchClock {
    /// The clock chosen by the environment.
    pub fn from_env() -> BenchClock {
        let wall = std::env::var("ALTROUTE_BENCH_CLOCK").is_ok_and(|v| v == "wall");
        BenchClock(!wall && thread_cpu_time().is_some())
    }
    /// A reading.
    pub fn now(self) -> (std::time::Instant, std::time::Duration) {
        (
            std::time::Instant::now(),
            if self.0 {
                thread_cpu_time().unwrap_or_default()
            } else {
                std::time::Duration::ZERO
            },
        )
    }
    /// Time since a reading.
    pub fn since(self, t: (std::time::Instant, std::time::Duration)) -> std::time::Duration {
        if self.0 {
            thread_cpu_time().unwrap_or_default().saturating_sub(t.1)
        } else {
            t.0.elapsed()
        }
    }
    /// Time `iters` runs of `f` (one clock reading around all of them).
    pub fn iters(self, iters: u64, mut f: impl FnMut()) -> std::time::Duration {
        let t = self.now();
        for _ in 0..iters {
            f();
        }
        self.since(t)
    }
}
