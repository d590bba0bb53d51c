//! The router as the API shows it: gateways with their probes, health and counters, flow-table
//! and worker totals, drops by reason, pins and the latest transitions, summed over the
//! workers' latest counters (each worker reports about once a second).

use altroute_packet::DropReason;

use super::requests::Snapshot;
use super::{Control, now_of};
use crate::api::model;
use crate::worker::WorkerStats;

impl Control {
    /// The snapshot the API serves.
    pub(super) fn snapshot(&self) -> Snapshot {
        let t = now_of(self.epoch);
        let stats: Vec<&WorkerStats> = {
            let mut v: Vec<&WorkerStats> = self.stats.values().collect();
            v.sort_by_key(|s| s.worker);
            v
        };
        let drops: Vec<(&'static str, u64)> = DropReason::ALL
            .iter()
            .map(|r| {
                (
                    r.name(),
                    stats.iter().map(|w| w.counters.drops.get(*r)).sum(),
                )
            })
            .collect();
        let status = model::Status {
            version: env!("CARGO_PKG_VERSION").to_string(),
            uptime_s: t.millis() as f64 / 1000.0,
            config_file: self.config_path.display().to_string(),
            workers: self.workers.to.len() as u16,
            mode: self.cfg.policy.mode.name().to_string(),
            forced: self.cfg.policy.force.clone(),
            flows: stats.iter().map(|w| w.flows as u64).sum(),
            max_flows: u64::from(self.cfg.limits.max_flows),
            table: table_totals(&stats),
            drops: drops
                .iter()
                .filter(|(_, n)| *n > 0)
                .map(|(r, n)| (r.to_string(), *n))
                .collect(),
            offload: offload_totals(&stats),
            worker_stats: stats.iter().map(|w| worker(w)).collect(),
            pins: self
                .cfg
                .pins
                .iter()
                .map(|p| model::Pin {
                    client: p.client.to_string(),
                    gateway: p.gateway.clone(),
                })
                .collect(),
            transitions: self
                .history
                .0
                .iter()
                .map(|l| model::Transition {
                    at_ms: l.tr.at.millis(),
                    gateway: l.gateway.clone(),
                    from: l.tr.from.to_string(),
                    to: l.tr.to.to_string(),
                    reason: l.tr.reason.clone(),
                })
                .collect(),
            last_reload: self.last_reload.clone(),
        };
        Snapshot {
            status,
            gateways: (0..self.gws.len())
                .map(|gi| self.gateway(gi, &stats))
                .collect(),
            drops,
        }
    }

    fn gateway(&self, gi: usize, stats: &[&WorkerStats]) -> model::Gateway {
        let mut m = model::Gateway::default();
        let (Some(g), Some(c)) = (self.gws.get(gi), self.cfg.gateways.get(gi)) else {
            return m;
        };
        let sum = |f: &dyn Fn(&WorkerStats) -> Option<u64>| -> u64 {
            stats.iter().filter_map(|w| f(w)).sum()
        };
        let (since, reason) = g.health.since();
        m.name = g.name.clone();
        m.state = g.health.state().to_string();
        m.reason = reason.to_string();
        m.since_ms = since.millis();
        m.probed = g.health.probed().to_string();
        m.enabled = c.enabled;
        m.forced = self.cfg.policy.force.as_deref() == Some(g.name.as_str());
        m.weight = c.weight;
        m.tier = c.tier;
        m.targets = g.targets.iter().map(ToString::to_string).collect();
        m.target_failed = g.health.failed_targets();
        m.rtt_ms = g.rtt_mean();
        m.loss_pct = g.loss_pct();
        m.probes_sent = g.probes_sent;
        m.probes_lost = g.probes_lost;
        m.flows = sum(&|w| w.flows_per_gateway.get(gi).copied());
        m.opened = sum(&|w| w.failures.get(gi).map(|f| u64::from(f.0)));
        m.failed = sum(&|w| w.failures.get(gi).map(|f| u64::from(f.1)));
        m.window_s = if self.cfg.policy.failure_redirect.enabled {
            u64::from(self.cfg.policy.failure_redirect.window_s)
        } else {
            60
        };
        m.out_packets = sum(&|w| w.counters.gw_out.get(gi).map(|c| c.0));
        m.out_bytes = sum(&|w| w.counters.gw_out.get(gi).map(|c| c.1));
        m.in_packets = sum(&|w| w.counters.gw_in.get(gi).map(|c| c.0));
        m.in_bytes = sum(&|w| w.counters.gw_in.get(gi).map(|c| c.1));
        m.mac = g.mac.map(|x| x.to_string());
        m
    }
}

fn table_totals(stats: &[&WorkerStats]) -> model::Table {
    let sum = |f: fn(&altroute_flow::TableStats) -> u64| stats.iter().map(|w| f(&w.table)).sum();
    model::Table {
        created: sum(|t| t.created),
        expired: sum(|t| t.expired),
        removed: sum(|t| t.removed),
        refused_full: sum(|t| t.refused_full),
        evicted: sum(|t| t.early_dropped),
        ports_exhausted: sum(|t| t.ports_exhausted),
        no_gateway: sum(|t| t.no_gateway),
        syn_rotations: sum(|t| t.syn_rotations),
    }
}

fn offload_totals(stats: &[&WorkerStats]) -> model::Offload {
    let sum =
        |f: fn(&crate::worker::OffloadCounters) -> u64| stats.iter().map(|w| f(&w.offload)).sum();
    model::Offload {
        installed: sum(|o| o.installed),
        removed: sum(|o| o.removed),
        active: sum(|o| o.active),
        kernel_frames: sum(|o| o.kernel_frames),
        kernel_bytes: sum(|o| o.kernel_bytes),
        errors: sum(|o| o.errors),
    }
}

fn worker(w: &WorkerStats) -> model::Worker {
    model::Worker {
        worker: w.worker,
        flows: w.flows as u64,
        rx_frames: w.counters.rx_frames.iter().sum(),
        tx_frames: w.counters.tx_frames.iter().sum(),
        fast_path_frames: w.counters.fast_path,
        drops: w.counters.drops.0.iter().sum(),
        ring_drops: w.ring_drops.iter().sum(),
        tx_failed: w.tx_failed.iter().sum(),
    }
}
