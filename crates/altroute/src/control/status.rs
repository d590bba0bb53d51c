//! What the control thread reports: a log line every `--log-every` seconds and the JSON status
//! document (gateways with state, reason, probes, flows and counters; the latest transitions;
//! worker totals; drops by reason), written atomically to the status file.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::time::Instant;

use altroute_flow::Time;
use log::{info, warn};

use super::gateway::Gw;
use crate::health::Transition;
use crate::worker::WorkerStats;

/// Transitions kept for the status file.
pub const HISTORY: usize = 32;

/// One line of the transition history.
pub(super) struct Logged {
    pub gateway: String,
    pub tr: Transition,
}

/// The latest [`HISTORY`] transitions, oldest first.
#[derive(Default)]
pub(super) struct History(pub VecDeque<Logged>);

impl History {
    /// Records a transition of `gateway`, forgetting the oldest beyond [`HISTORY`].
    pub fn push(&mut self, gateway: &str, tr: &Transition) {
        self.0.push_back(Logged {
            gateway: gateway.to_string(),
            tr: tr.clone(),
        });
        while self.0.len() > HISTORY {
            self.0.pop_front();
        }
    }
}

/// Writes the status document to `path` (through a temporary file renamed over it).
pub(super) fn write_status(
    path: &Path,
    gws: &[Gw],
    stats: &HashMap<u16, WorkerStats>,
    history: &History,
    t: Time,
) {
    let json = status_json(gws, stats, &history.0, t);
    let tmp = path.with_extension("tmp");
    if std::fs::write(&tmp, json)
        .and_then(|()| std::fs::rename(&tmp, path))
        .is_err()
    {
        warn!("cannot write the status file {}", path.display());
    }
}

pub(super) fn log_status(gws: &[Gw], stats: &HashMap<u16, WorkerStats>) {
    let mut line = String::new();
    for (gi, g) in gws.iter().enumerate() {
        let flows: u64 = stats
            .values()
            .filter_map(|s| s.flows_per_gateway.get(gi))
            .sum();
        let out: u64 = stats
            .values()
            .filter_map(|s| s.counters.gw_out.get(gi).map(|c| c.0))
            .sum();
        let inn: u64 = stats
            .values()
            .filter_map(|s| s.counters.gw_in.get(gi).map(|c| c.0))
            .sum();
        line.push_str(&format!(
            "{} {} flows={flows} out={out} in={inn}; ",
            g.name,
            g.health.state()
        ));
    }
    let drops: u64 = stats
        .values()
        .map(|s| s.counters.drops.0.iter().sum::<u64>())
        .sum();
    info!("{line}drops={drops}");
}

/// How an operator setting is spelled in the status file.
pub(super) fn admin_name(a: crate::health::Admin) -> &'static str {
    match a {
        crate::health::Admin::Auto => "auto",
        crate::health::Admin::Disabled => "disabled",
        crate::health::Admin::Forced => "forced",
    }
}

fn json_str(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for ch in s.chars() {
        match ch {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// The status document: gateways with state, reason, flows and counters; the latest
/// transitions; drops by reason.
fn status_json(
    gws: &[Gw],
    stats: &HashMap<u16, WorkerStats>,
    history: &VecDeque<Logged>,
    t: Time,
) -> String {
    let mut s = String::from("{\n  \"time_ms\": ");
    s.push_str(&t.millis().to_string());
    s.push_str(",\n  \"gateways\": [\n");
    for (gi, g) in gws.iter().enumerate() {
        let flows: u64 = stats
            .values()
            .filter_map(|w| w.flows_per_gateway.get(gi))
            .sum();
        let (mut op, mut ob, mut ip, mut ib) = (0u64, 0u64, 0u64, 0u64);
        for w in stats.values() {
            if let Some(c) = w.counters.gw_out.get(gi) {
                op += c.0;
                ob += c.1;
            }
            if let Some(c) = w.counters.gw_in.get(gi) {
                ip += c.0;
                ib += c.1;
            }
        }
        let (since, reason) = g.health.since();
        let rtt: Vec<String> = g
            .last_rtt
            .iter()
            .map(|r| r.map_or("null".into(), |v| v.to_string()))
            .collect();
        let failed: Vec<&str> = g
            .health
            .failed_targets()
            .iter()
            .map(|&f| if f { "true" } else { "false" })
            .collect();
        let targets: Vec<String> = g.targets.iter().map(|a| json_str(&a.to_string())).collect();
        let arp_age = g.arp_seen.map_or("null".into(), |a| {
            u64::try_from(a.elapsed().as_millis())
                .unwrap_or(u64::MAX)
                .to_string()
        });
        let boost = g.boost_until.is_some_and(|b| Instant::now() < b);
        s.push_str(&format!(
            "    {{\"name\": {}, \"state\": \"{}\", \"since_ms\": {}, \"reason\": {}, \"admin\": \"{}\", \"probed\": \"{}\", \"probe_boost\": {boost}, \"targets\": [{}], \"target_failed\": [{}], \"rtt_ms\": [{}], \"arp_reply_age_ms\": {arp_age}, \"mac\": {}, \"flows\": {flows}, \"out_packets\": {op}, \"out_bytes\": {ob}, \"in_packets\": {ip}, \"in_bytes\": {ib}}}{}\n",
            json_str(&g.name),
            g.health.state(),
            since.millis(),
            json_str(reason),
            admin_name(g.health.admin()),
            g.health.probed(),
            targets.join(", "),
            failed.join(", "),
            rtt.join(", "),
            g.mac.map_or("null".into(), |m| json_str(&m.to_string())),
            if gi + 1 < gws.len() { "," } else { "" }
        ));
    }
    s.push_str("  ],\n  \"transitions\": [");
    for (i, l) in history.iter().enumerate() {
        s.push_str(&format!(
            "{}\n    {{\"at_ms\": {}, \"gateway\": {}, \"from\": \"{}\", \"to\": \"{}\", \"reason\": {}}}",
            if i > 0 { "," } else { "" },
            l.tr.at.millis(),
            json_str(&l.gateway),
            l.tr.from,
            l.tr.to,
            json_str(&l.tr.reason)
        ));
    }
    s.push_str(if history.is_empty() {
        "],\n"
    } else {
        "\n  ],\n"
    });
    s.push_str("  \"flows\": ");
    s.push_str(
        &stats
            .values()
            .map(|w| w.flows as u64)
            .sum::<u64>()
            .to_string(),
    );
    s.push_str(",\n  \"fast_path_frames\": ");
    s.push_str(
        &stats
            .values()
            .map(|w| w.counters.fast_path)
            .sum::<u64>()
            .to_string(),
    );
    // Datagrams merged into UDP GSO frames at transmit (`datapath.udp_coalesce`), all workers:
    // lets the lab test see that coalescing happened without stopping the router.
    s.push_str(",\n  \"udp_coalesced\": ");
    s.push_str(&stats.values().map(|w| w.coalesced).sum::<u64>().to_string());
    // Frames the workers received (all ports): with the offload on, the frames the kernel
    // forwarded are not among them.
    s.push_str(",\n  \"rx_frames\": ");
    s.push_str(
        &stats
            .values()
            .map(|w| w.counters.rx_frames.iter().sum::<u64>())
            .sum::<u64>()
            .to_string(),
    );
    // Receive-side losses and skips, all workers and links: frames the kernel dropped because a
    // worker's ring was full (or cut short), and frames for other MACs that got past an
    // EtherType-bound port's kernel filter and were skipped in user space (normally 0).
    let per_link = |f: fn(&WorkerStats) -> &[u64]| -> u64 {
        stats.values().map(|w| f(w).iter().sum::<u64>()).sum()
    };
    s.push_str(",\n  \"ring_drops\": ");
    s.push_str(&per_link(|w| &w.ring_drops).to_string());
    s.push_str(",\n  \"otherhost_skipped\": ");
    s.push_str(&per_link(|w| &w.otherhost_skipped).to_string());
    // Kernel offload of established flows (`datapath.offload: tc`), all workers.
    let off = |f: fn(&crate::worker::OffloadCounters) -> u64| -> u64 {
        stats.values().map(|w| f(&w.offload)).sum()
    };
    s.push_str(&format!(
        ",\n  \"offload\": {{\"installed\": {}, \"removed\": {}, \"active\": {}, \"kernel_frames\": {}, \"kernel_bytes\": {}, \"errors\": {}}}",
        off(|o| o.installed),
        off(|o| o.removed),
        off(|o| o.active),
        off(|o| o.kernel_frames),
        off(|o| o.kernel_bytes),
        off(|o| o.errors),
    ));
    s.push_str(",\n  \"drops\": {");
    let mut first = true;
    for r in altroute_packet::DropReason::ALL {
        let n: u64 = stats.values().map(|w| w.counters.drops.get(*r)).sum();
        if n > 0 {
            if !first {
                s.push_str(", ");
            }
            first = false;
            s.push_str(&format!("{}: {n}", json_str(&r.to_string())));
        }
    }
    s.push_str("}\n}\n");
    s
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::control::gateway::tests::gw;
    use crate::health::Admin;

    #[test]
    fn status_is_json_with_states_and_history() {
        let mut a = gw(
            "isp\"1",
            vec![
                Ipv4Addr::new(203, 0, 113, 10),
                Ipv4Addr::new(203, 0, 113, 99),
            ],
        );
        let b = gw("isp2", Vec::new());
        let mut history = History::default();
        let tr = a
            .health
            .set_admin(Admin::Disabled, Time::from_millis(1234))
            .unwrap();
        history.push(&a.name, &tr);
        let text = status_json(
            &[a, b],
            &HashMap::new(),
            &history.0,
            Time::from_millis(2000),
        );
        let v: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        assert_eq!(v["gateways"][0]["name"], "isp\"1");
        assert_eq!(v["gateways"][0]["state"], "disabled");
        assert_eq!(v["gateways"][0]["admin"], "disabled");
        assert_eq!(v["gateways"][0]["probed"], "up");
        assert_eq!(v["gateways"][0]["since_ms"], 1234);
        assert_eq!(v["gateways"][0]["targets"][1], "203.0.113.99");
        assert_eq!(v["gateways"][0]["rtt_ms"][1], serde_json::Value::Null);
        assert_eq!(v["gateways"][1]["state"], "up");
        assert_eq!(v["transitions"][0]["to"], "disabled");
        assert_eq!(v["transitions"][0]["reason"], "operator: disabled");
        assert_eq!(v["fast_path_frames"], 0);
        assert_eq!(v["udp_coalesced"], 0);
        assert_eq!(v["ring_drops"], 0);
        assert_eq!(v["otherhost_skipped"], 0);
        let empty = status_json(&[], &HashMap::new(), &VecDeque::new(), Time::from_millis(1));
        serde_json::from_str::<serde_json::Value>(&empty)
            .unwrap_or_else(|e| panic!("{e}: {empty}"));
    }

    #[test]
    fn history_keeps_the_latest() {
        let mut a = gw("isp1", Vec::new());
        let mut h = History::default();
        for i in 0..(HISTORY as u64 + 5) {
            let admin = if i % 2 == 0 {
                Admin::Disabled
            } else {
                Admin::Auto
            };
            if let Some(tr) = a.health.set_admin(admin, Time::from_millis(i)) {
                h.push("isp1", &tr);
            }
        }
        assert_eq!(h.0.len(), HISTORY);
        assert_eq!(
            h.0.back().map(|l| l.tr.at.millis()),
            Some(HISTORY as u64 + 4)
        );
    }

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_str("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
    }
}
