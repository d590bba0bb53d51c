//! Kernel offload of established flows (`datapath.offload: tc`), one worker's side.
//!
//! The worker's flow table stays the authority. Every [`TICK`] the worker (not per packet):
//! 1. reads the kernel counters of each flow it offloaded and accounts them to the flow
//!    (last seen, per-flow packets/bytes) and to its gateway, so offloaded flows do not expire
//!    while the kernel forwards them nor vanish from the statistics (a flow the kernel forwarded
//!    nothing for is not touched: an idle offloaded UDP flow, which has no FIN, expires on the
//!    normal UDP timeout and step 2 then removes its entries);
//! 2. recomputes each offloaded flow's records from the pipeline state
//!    ([`Context::offload_records`]) and removes (or replaces) the map entries when they changed
//!    or the flow is no longer offloadable: it closed (FIN/RST go to user space, which moves the
//!    TCP state on), expired, was removed or rerouted, or a next-hop MAC changed;
//! 3. offloads established TCP flows and answered UDP flows (traffic seen both ways: what
//!    altroute-flow calls `replied`) that have carried [`MIN_PACKETS`] packets (short
//!    connections and one-shot queries stay in user space: no map churn).
//!
//! Gateway state changes and neighbour changes flush all of the worker's entries at once (the
//! frames come back to user space, which offloads again as appropriate). Map updates are per
//! flow, never per packet. Step 3 looks for candidates with an incremental sweep of the flow
//! table ([`FlowTable::scan`](altroute_flow::FlowTable::scan)), at most [`SCAN_SLOTS`] slots per
//! tick, so a tick costs the same at a million flows as at a hundred (a full sweep then takes
//! 100 ms per 16k slots); and it runs only in ticks in which the pipeline's fast path forwarded
//! frames (the frames of an established flow that is not offloaded yet go through it), so a
//! worker whose traffic is all offloaded or idle skips it.

use std::collections::HashMap;
use std::time::Duration;

use altroute_flow::{Dir, FlowId, FlowKey, Hit, TcpState, Time, proto};
use altroute_io::ebpf::{OffloadAction, OffloadKey, OffloadMap};
use altroute_packet::pipeline::Context;
use altroute_packet::pipeline::offload::OffloadRecord;

/// How often the worker syncs, checks and installs.
pub const TICK: Duration = Duration::from_millis(100);
/// Packets (both directions) a flow carries in user space before it is offloaded.
pub const MIN_PACKETS: u64 = 8;
/// Installs per tick at most (bounds the syscalls of one tick).
const MAX_INSTALLS: usize = 512;
/// Flow-table slots the candidate sweep looks at per tick (bounds the time of one tick).
pub const SCAN_SLOTS: usize = 16_384;

/// Offload counters of one worker.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OffloadCounters {
    /// Flows offloaded (both directions installed).
    pub installed: u64,
    /// Flows whose entries were removed again.
    pub removed: u64,
    /// Flows offloaded now.
    pub active: u64,
    /// Frames the kernel forwarded for this worker's flows (a GSO super-frame counts once).
    pub kernel_frames: u64,
    /// IPv4 bytes the kernel forwarded for this worker's flows.
    pub kernel_bytes: u64,
    /// Map operations that failed (map full, ...).
    pub errors: u64,
}

struct Installed {
    key: FlowKey,
    records: [OffloadRecord; 2],
    /// Kernel (packets, bytes) per direction already accounted.
    seen: [(u64, u64); 2],
}

/// One worker's offloaded flows and its handle on the shared map.
pub struct WorkerOffload {
    map: OffloadMap,
    /// Interface index of each link.
    ifindex: Vec<u32>,
    flows: HashMap<FlowId, Installed>,
    counters: OffloadCounters,
    neighbor_changes: u64,
    /// `Counters::fast_path` at the last candidate scan.
    fast_path_seen: u64,
    /// Where the candidate sweep continues.
    scan_from: u32,
}

impl WorkerOffload {
    /// A worker's offload over `map`; `ifindex[link]` is each link's interface index.
    pub fn new(map: OffloadMap, ifindex: Vec<u32>) -> WorkerOffload {
        WorkerOffload {
            map,
            ifindex,
            flows: HashMap::new(),
            counters: OffloadCounters::default(),
            neighbor_changes: 0,
            fast_path_seen: 0,
            scan_from: 0,
        }
    }

    /// The counters.
    pub fn counters(&self) -> OffloadCounters {
        OffloadCounters {
            active: self.flows.len() as u64,
            ..self.counters
        }
    }

    fn entry(&self, r: &OffloadRecord) -> Option<(OffloadKey, OffloadAction)> {
        let in_if = *self.ifindex.get(usize::from(r.in_link))?;
        let out_if = *self.ifindex.get(usize::from(r.out_link))?;
        Some((
            OffloadKey {
                ifindex: in_if,
                saddr: r.src,
                daddr: r.dst,
                sport: r.sport,
                dport: r.dport,
                proto: r.proto,
            },
            OffloadAction {
                saddr: r.new_src,
                daddr: r.new_dst,
                sport: r.new_sport,
                dport: r.new_dport,
                out_ifindex: out_if,
                dst_mac: r.dst_mac.0,
                src_mac: r.src_mac.0,
                l3_diff: r.l3_diff,
                l4_addr_diff: r.l4_addr_diff,
                l4_port_diff: r.l4_port_diff,
                max_len: u32::from(r.max_len),
            },
        ))
    }

    fn install(&mut self, id: FlowId, key: FlowKey, records: [OffloadRecord; 2]) {
        let (Some(a), Some(b)) = (self.entry(&records[0]), self.entry(&records[1])) else {
            return;
        };
        if self.map.insert(&a.0, &a.1).is_err() {
            self.counters.errors += 1;
            return;
        }
        if self.map.insert(&b.0, &b.1).is_err() {
            self.counters.errors += 1;
            let _ = self.map.remove(&a.0);
            return;
        }
        self.counters.installed += 1;
        self.flows.insert(
            id,
            Installed {
                key,
                records,
                seen: [(0, 0); 2],
            },
        );
    }

    fn remove_entries(&mut self, inst: &Installed) {
        for r in &inst.records {
            if let Some((k, _)) = self.entry(r)
                && self.map.remove(&k).is_err()
            {
                self.counters.errors += 1;
            }
        }
        self.counters.removed += 1;
    }

    /// Removes every entry this worker installed (their frames come back to user space).
    pub fn flush(&mut self) {
        let flows = std::mem::take(&mut self.flows);
        for inst in flows.values() {
            self.remove_entries(inst);
        }
    }

    /// Accounts what the kernel forwarded for `id` since the last sync.
    fn sync(&mut self, ctx: &mut Context, id: FlowId, now: Time) -> bool {
        let Some(inst) = self.flows.get(&id) else {
            return false;
        };
        let same_flow = ctx.table.flow(id).is_some_and(|f| f.key() == inst.key);
        let keys = [self.entry(&inst.records[0]), self.entry(&inst.records[1])];
        let gw = ctx.table.flow(id).and_then(|f| f.gateway());
        let mut seen = inst.seen;
        let mut present = true;
        for (d, k) in keys.iter().enumerate() {
            let Some((k, _)) = k else {
                present = false;
                continue;
            };
            let st = match self.map.stats(k) {
                Ok(Some(st)) => st,
                Ok(None) => {
                    present = false;
                    continue;
                }
                Err(_) => {
                    self.counters.errors += 1;
                    continue;
                }
            };
            let (dp, db) = (
                st.packets.saturating_sub(seen[d].0),
                st.bytes.saturating_sub(seen[d].1),
            );
            seen[d] = (st.packets, st.bytes);
            if dp == 0 {
                continue;
            }
            self.counters.kernel_frames += dp;
            self.counters.kernel_bytes += db;
            if same_flow {
                let dir = if d == 0 { Dir::Orig } else { Dir::Reply };
                let hit = Hit { flow: id, dir };
                ctx.table.account(hit, now, dp, db);
                if let Some(g) = gw {
                    let c = if d == 0 {
                        &mut ctx.counters.gw_out
                    } else {
                        &mut ctx.counters.gw_in
                    };
                    if let Some(c) = c.get_mut(g.index()) {
                        c.0 += dp;
                        c.1 += db;
                    }
                }
            }
        }
        if let Some(inst) = self.flows.get_mut(&id) {
            inst.seen = seen;
        }
        same_flow && present
    }

    /// The periodic work (see the module documentation).
    pub fn tick(&mut self, ctx: &mut Context, now: Time) {
        if ctx.counters.neighbor_changes != self.neighbor_changes {
            self.neighbor_changes = ctx.counters.neighbor_changes;
            self.flush();
        }
        let ids: Vec<FlowId> = self.flows.keys().copied().collect();
        for id in ids {
            let alive = self.sync(ctx, id, now);
            let Some(inst) = self.flows.get(&id) else {
                continue;
            };
            let now_records = if alive { ctx.offload_records(id) } else { None };
            if now_records == Some(inst.records) {
                continue;
            }
            let key = inst.key;
            if let Some(inst) = self.flows.remove(&id) {
                self.remove_entries(&inst);
            }
            if let Some(r) = now_records {
                self.install(id, key, r);
            }
        }
        if ctx.counters.fast_path == self.fast_path_seen {
            return;
        }
        self.fast_path_seen = ctx.counters.fast_path;
        let (flows, next) = ctx.table.scan(self.scan_from, SCAN_SLOTS);
        let candidates: Vec<(FlowId, FlowKey)> = flows
            .filter(|f| {
                let established = match f.key.proto {
                    proto::TCP => f.tcp == TcpState::Established,
                    proto::UDP => f.replied,
                    _ => false,
                };
                established
                    && f.counters.packets[0] + f.counters.packets[1] >= MIN_PACKETS
                    && !self.flows.contains_key(&f.id)
            })
            .map(|f| (f.id, f.key))
            .take(MAX_INSTALLS)
            .collect();
        // When MAX_INSTALLS cut the step short, the next tick goes on after the last flow taken.
        self.scan_from = match candidates.last() {
            Some((id, _)) if candidates.len() == MAX_INSTALLS => id.0.saturating_add(1),
            _ => next,
        };
        for (id, key) in candidates {
            if let Some(r) = ctx.offload_records(id) {
                self.install(id, key, r);
            }
        }
    }
}
