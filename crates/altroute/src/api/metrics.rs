//! `GET /metrics`: the router in the Prometheus text format (0.0.4), through the
//! `prometheus-client` crate. Every scrape encodes one [`Snapshot`] of the control thread (a
//! collector over constant metrics: the workers' counters are totals kept by the workers, not
//! incremented here). Counters are 64-bit.
//!
//! Series (all prefixed `altroute_`): per gateway (`gateway` label): `gateway_state` (1 for its
//! state, `state` label), `gateway_up` (1 when usable), `gateway_forced`, `gateway_weight`,
//! `gateway_{out,in}_{packets,bytes}_total`, `gateway_probes_sent_total`,
//! `gateway_probes_lost_total`, `gateway_rtt_seconds`, `gateway_loss_ratio`, `gateway_flows`,
//! `gateway_connections_{opened,failed}`; the flow table: `flows`, `max_flows`,
//! `flows_created_total` (inserts), `flows_expired_total`, `flows_removed_total`,
//! `flows_evicted_total`, `flows_refused_total` (`reason` label); `drops_total` (`reason`: every
//! `DropReason`, zero included); per worker (`worker` label): `worker_rx_frames_total`,
//! `worker_tx_frames_total`, `worker_fast_path_frames_total`, `worker_ring_drops_total`,
//! `worker_tx_failed_total`, `worker_flows`; the kernel offload: `offload_installed_total`,
//! `offload_removed_total`, `offload_active`, `offload_kernel_frames_total`,
//! `offload_kernel_bytes_total`, `offload_errors_total`; `uptime_seconds`, `info` (`version`,
//! `mode`).

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::control::Snapshot;

/// The `Content-Type` of the answer.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Every gateway state, for `gateway_state`.
const STATES: [&str; 5] = ["up", "degraded", "down", "disabled", "forced"];

/// The snapshot as Prometheus text.
pub fn render(s: &Snapshot) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::with_prefix("altroute");
    registry.register_collector(Box::new(SnapshotCollector(s.clone())));
    let mut out = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)?;
    Ok(out)
}

#[derive(Debug)]
struct SnapshotCollector(Snapshot);

type Labels = Vec<(&'static str, String)>;
/// A metric of each gateway: name, help, value.
type PerGateway<T> = (
    &'static str,
    &'static str,
    fn(&crate::api::model::Gateway) -> T,
);
/// A metric of each worker: name, help, value.
type PerWorker = (
    &'static str,
    &'static str,
    fn(&crate::api::model::Worker) -> u64,
);

/// One metric family: a name, its help, and one value per label set.
fn family<M: EncodeMetric>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: Vec<(Labels, M)>,
) -> Result<(), std::fmt::Error> {
    let Some(first) = rows.first() else {
        return Ok(());
    };
    let mut me = enc.encode_descriptor(name, help, None, first.1.metric_type())?;
    if let [(labels, m)] = rows.as_slice()
        && labels.is_empty()
    {
        return m.encode(me);
    }
    for (labels, m) in &rows {
        m.encode(me.encode_family(labels)?)?;
    }
    Ok(())
}

fn counter(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    v: u64,
) -> Result<(), std::fmt::Error> {
    family(enc, name, help, vec![(Vec::new(), ConstCounter::new(v))])
}

fn gauge(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    v: f64,
) -> Result<(), std::fmt::Error> {
    family(enc, name, help, vec![(Vec::new(), ConstGauge::new(v))])
}

impl SnapshotCollector {
    fn gateways(&self, enc: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let gws = &self.0.gateways;
        let gl = |name: &str| -> Labels { vec![("gateway", name.to_string())] };
        let counters: [PerGateway<u64>; 6] = [
            (
                "gateway_out_packets",
                "Packets sent out through the gateway.",
                |g| g.out_packets,
            ),
            (
                "gateway_out_bytes",
                "Bytes sent out through the gateway.",
                |g| g.out_bytes,
            ),
            (
                "gateway_in_packets",
                "Packets received back through the gateway.",
                |g| g.in_packets,
            ),
            (
                "gateway_in_bytes",
                "Bytes received back through the gateway.",
                |g| g.in_bytes,
            ),
            (
                "gateway_probes_sent",
                "Probes sent (one per target and round).",
                |g| g.probes_sent,
            ),
            ("gateway_probes_lost", "Probes that went unanswered.", |g| {
                g.probes_lost
            }),
        ];
        for (name, help, f) in counters {
            let rows = gws
                .iter()
                .map(|g| (gl(&g.name), ConstCounter::new(f(g))))
                .collect();
            family(enc, name, help, rows)?;
        }
        let mut rows = Vec::new();
        for g in gws {
            for st in STATES {
                let mut l = gl(&g.name);
                l.push(("state", st.to_string()));
                rows.push((l, ConstGauge::new(i64::from(g.state == st))));
            }
        }
        family(
            enc,
            "gateway_state",
            "1 for the state the gateway is in.",
            rows,
        )?;
        let gauges: [PerGateway<f64>; 8] = [
            (
                "gateway_up",
                "1 when the gateway takes new connections (up, degraded or forced).",
                |g| {
                    f64::from(u8::from(matches!(
                        g.state.as_str(),
                        "up" | "degraded" | "forced"
                    )))
                },
            ),
            (
                "gateway_forced",
                "1 for the forced gateway (policy.force).",
                |g| f64::from(u8::from(g.forced)),
            ),
            ("gateway_weight", "Load-balance weight.", |g| {
                f64::from(g.weight)
            }),
            (
                "gateway_rtt_seconds",
                "Mean probe RTT over the recent rounds (NaN: no answer).",
                |g| g.rtt_ms.map_or(f64::NAN, |r| r / 1000.0),
            ),
            (
                "gateway_loss_ratio",
                "Probe loss over the recent rounds (0..1).",
                |g| g.loss_pct / 100.0,
            ),
            (
                "gateway_flows",
                "Live connections through the gateway.",
                |g| g.flows as f64,
            ),
            (
                "gateway_connections_opened",
                "TCP connections opened through the gateway over the failure window.",
                |g| g.opened as f64,
            ),
            (
                "gateway_connections_failed",
                "Of those, the ones that failed.",
                |g| g.failed as f64,
            ),
        ];
        for (name, help, f) in gauges {
            let rows = gws
                .iter()
                .map(|g| (gl(&g.name), ConstGauge::new(f(g))))
                .collect();
            family(enc, name, help, rows)?;
        }
        Ok(())
    }

    fn table(&self, enc: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let st = &self.0.status;
        let t = &st.table;
        gauge(enc, "flows", "Live flows, every worker.", st.flows as f64)?;
        gauge(enc, "max_flows", "limits.max_flows.", st.max_flows as f64)?;
        counter(enc, "flows_created", "Flows created (inserts).", t.created)?;
        counter(enc, "flows_expired", "Flows expired by timeout.", t.expired)?;
        counter(
            enc,
            "flows_removed",
            "Flows removed by link events or resets.",
            t.removed,
        )?;
        counter(
            enc,
            "flows_evicted",
            "Unanswered flows evicted early to make room.",
            t.evicted,
        )?;
        let refused = [
            ("table_full", t.refused_full),
            ("ports_exhausted", t.ports_exhausted),
            ("no_gateway", t.no_gateway),
        ];
        let rows = refused
            .iter()
            .map(|(r, n)| (vec![("reason", r.to_string())], ConstCounter::new(*n)))
            .collect();
        family(enc, "flows_refused", "New flows refused, by reason.", rows)?;
        counter(
            enc,
            "syn_rotations",
            "SYN-retry rotations.",
            t.syn_rotations,
        )?;
        let rows = self
            .0
            .drops
            .iter()
            .map(|(r, n)| (vec![("reason", r.to_string())], ConstCounter::new(*n)))
            .collect();
        family(enc, "drops", "Frames dropped, by reason.", rows)
    }

    fn workers(&self, enc: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let ws = &self.0.status.worker_stats;
        let wl = |w: u16| -> Labels { vec![("worker", w.to_string())] };
        let counters: [PerWorker; 5] = [
            ("worker_rx_frames", "Frames the worker received.", |w| {
                w.rx_frames
            }),
            ("worker_tx_frames", "Frames the worker sent.", |w| {
                w.tx_frames
            }),
            (
                "worker_fast_path_frames",
                "Frames forwarded by the established-flow fast path.",
                |w| w.fast_path_frames,
            ),
            (
                "worker_ring_drops",
                "Frames the kernel dropped for a full receive ring.",
                |w| w.ring_drops,
            ),
            ("worker_tx_failed", "Transmissions that failed.", |w| {
                w.tx_failed
            }),
        ];
        for (name, help, f) in counters {
            let rows = ws
                .iter()
                .map(|w| (wl(w.worker), ConstCounter::new(f(w))))
                .collect();
            family(enc, name, help, rows)?;
        }
        let rows = ws
            .iter()
            .map(|w| (wl(w.worker), ConstGauge::new(w.flows as f64)))
            .collect();
        family(
            enc,
            "worker_flows",
            "Live flows in the worker's table.",
            rows,
        )?;
        let o = &self.0.status.offload;
        counter(
            enc,
            "offload_installed",
            "Flows offloaded to the kernel.",
            o.installed,
        )?;
        counter(
            enc,
            "offload_removed",
            "Offloaded flows taken back.",
            o.removed,
        )?;
        gauge(
            enc,
            "offload_active",
            "Flows offloaded now.",
            o.active as f64,
        )?;
        counter(
            enc,
            "offload_kernel_frames",
            "Frames the kernel forwarded for offloaded flows.",
            o.kernel_frames,
        )?;
        counter(
            enc,
            "offload_kernel_bytes",
            "Bytes the kernel forwarded for offloaded flows.",
            o.kernel_bytes,
        )?;
        counter(
            enc,
            "offload_errors",
            "Offload map operations that failed.",
            o.errors,
        )
    }
}

impl Collector for SnapshotCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let st = &self.0.status;
        family(
            &mut enc,
            "info",
            "The router's version and mode.",
            vec![(
                vec![("version", st.version.clone()), ("mode", st.mode.clone())],
                ConstGauge::new(1i64),
            )],
        )?;
        gauge(
            &mut enc,
            "uptime_seconds",
            "Seconds since the router started.",
            st.uptime_s,
        )?;
        self.gateways(&mut enc)?;
        self.table(&mut enc)?;
        self.workers(&mut enc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::model;

    fn snapshot() -> Snapshot {
        let g = model::Gateway {
            name: "isp1".into(),
            state: "up".into(),
            out_bytes: 5_000_000_000,
            probes_sent: 10,
            probes_lost: 1,
            rtt_ms: Some(12.5),
            loss_pct: 10.0,
            ..model::Gateway::default()
        };
        Snapshot {
            status: model::Status {
                version: "0.1.0".into(),
                mode: "load-balance".into(),
                flows: 3,
                worker_stats: vec![model::Worker {
                    worker: 0,
                    rx_frames: 42,
                    ..model::Worker::default()
                }],
                ..model::Status::default()
            },
            gateways: vec![
                g,
                model::Gateway {
                    name: "isp2".into(),
                    state: "down".into(),
                    ..model::Gateway::default()
                },
            ],
            drops: altroute_packet::DropReason::ALL
                .iter()
                .map(|r| (r.name(), 7))
                .collect(),
        }
    }

    /// The value of the series `name{labels}` (labels as written, without braces).
    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
    }

    #[test]
    fn every_series_is_there_with_64_bit_counters() {
        let text = render(&snapshot()).unwrap();
        assert_eq!(
            value(&text, "altroute_gateway_out_bytes_total{gateway=\"isp1\"}"),
            Some(5e9),
            "{text}"
        );
        assert_eq!(
            value(
                &text,
                "altroute_gateway_state{gateway=\"isp2\",state=\"down\"}"
            ),
            Some(1.0)
        );
        assert_eq!(
            value(
                &text,
                "altroute_gateway_state{gateway=\"isp2\",state=\"up\"}"
            ),
            Some(0.0)
        );
        assert_eq!(
            value(&text, "altroute_gateway_up{gateway=\"isp1\"}"),
            Some(1.0)
        );
        assert_eq!(
            value(&text, "altroute_gateway_rtt_seconds{gateway=\"isp1\"}"),
            Some(0.0125)
        );
        assert_eq!(
            value(&text, "altroute_gateway_loss_ratio{gateway=\"isp1\"}"),
            Some(0.1)
        );
        assert_eq!(
            value(
                &text,
                "altroute_gateway_probes_lost_total{gateway=\"isp1\"}"
            ),
            Some(1.0)
        );
        assert_eq!(value(&text, "altroute_flows"), Some(3.0));
        assert_eq!(
            value(&text, "altroute_worker_rx_frames_total{worker=\"0\"}"),
            Some(42.0)
        );
        let drops = text
            .lines()
            .filter(|l| l.starts_with("altroute_drops_total{"))
            .count();
        assert_eq!(drops, altroute_packet::DropReason::ALL.len());
        assert!(
            text.contains("# TYPE altroute_drops_total counter"),
            "{text}"
        );
        assert!(
            text.contains("altroute_info{version=\"0.1.0\",mode=\"load-balance\"} 1"),
            "{text}"
        );
    }
}
