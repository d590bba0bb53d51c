//! The control thread: gateway probes and health, neighbour sharing between workers, hooks,
//! counters and the status file. Policy lives here; the workers only move frames.
//!
//! Probes are crafted here (ICMP echo to each target, ARP for the gateway's MAC) and sent by
//! worker 0 out of the gateway's own link to the gateway's MAC, whatever the policy says, from the
//! gateway's NAT address. Probe identifiers are below [`PROBE_ID_LIMIT`], a range NAT never hands
//! out, so the workers recognise the replies and pass them up.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use altroute_flow::{DownAction, Failback, GatewayId, GatewayState, Time};
use altroute_packet::build::{self, L2};
use altroute_packet::pipeline::{ControlReason, PROBE_ID_LIMIT};
use altroute_packet::wire::{
    ArpOp, ArpPacket, ArpRepr, EthernetFrame, Icmpv4Packet, Ipv4Packet, MacAddr, VlanTci,
};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use log::{info, warn};

use crate::config::{self, Config};
use crate::health::{Admin, Health, Settings, Transition};
use crate::worker::{FromWorker, ToWorker, WorkerStats};

/// What the control thread needs.
pub struct ControlSetup {
    /// The configuration.
    pub cfg: Config,
    /// Link index of each port (by port index).
    pub port_link: Vec<u8>,
    /// MAC of each port (by port index).
    pub port_mac: Vec<MacAddr>,
    /// One channel to each worker.
    pub to_workers: Vec<Sender<ToWorker>>,
    /// Events from the workers.
    pub from_workers: Receiver<FromWorker>,
    /// The daemon's clock origin.
    pub epoch: Instant,
    /// Set by the signal handler.
    pub stop: Arc<AtomicBool>,
    /// Write a JSON status here every second, if set.
    pub status_file: Option<PathBuf>,
    /// Log a status line this often.
    pub log_every: Duration,
}

struct Gw {
    name: String,
    port: usize,
    link: u8,
    vlan: Option<VlanTci>,
    src: Ipv4Addr,
    next_hop: Ipv4Addr,
    mac: Option<MacAddr>,
    static_mac: bool,
    targets: Vec<Ipv4Addr>,
    interval: Duration,
    timeout: Duration,
    next_round: Instant,
    round: u16,
    /// Outstanding rounds: (round number, sent at, replies per target).
    pending: Vec<(u16, Instant, Vec<Option<u32>>)>,
    health: Health,
    hooks: config::Hooks,
    last_rtt: Vec<Option<u32>>,
}

fn probe_id(g: usize, t: usize) -> u16 {
    // 16 targets per gateway, 63 gateways: always below PROBE_ID_LIMIT (1024).
    (1 + g * 16 + t.min(15)) as u16
}

fn now_of(epoch: Instant) -> Time {
    Time::from_millis(u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX))
}

/// Run until `stop` is set. Returns the last statistics of each worker.
pub fn run(c: ControlSetup) -> Vec<WorkerStats> {
    let t0 = now_of(c.epoch);
    let mut gws: Vec<Gw> = c
        .cfg
        .gateways
        .iter()
        .enumerate()
        .map(|(i, g)| {
            let port = c
                .cfg
                .ports
                .iter()
                .position(|p| p.name == g.port)
                .unwrap_or(0);
            let p = &c.cfg.ports[port];
            let admin = if !g.enabled {
                Admin::Disabled
            } else if c.cfg.policy.force.as_deref() == Some(g.name.as_str()) {
                Admin::Forced
            } else {
                Admin::Auto
            };
            let targets = g.probe_targets();
            Gw {
                name: g.name.clone(),
                port,
                link: c.port_link.get(port).copied().unwrap_or(0),
                vlan: p.vlan.map(VlanTci::with_id),
                src: c.cfg.nat_address(g).unwrap_or(Ipv4Addr::UNSPECIFIED),
                next_hop: g.via,
                mac: g.mac.map(|m| MacAddr(m.0)),
                static_mac: g.mac.is_some(),
                last_rtt: vec![None; targets.len()],
                targets,
                interval: Duration::from_millis(u64::from(g.probe.interval_ms.max(10))),
                timeout: Duration::from_millis(u64::from(g.probe.timeout_ms.max(1))),
                next_round: Instant::now() + Duration::from_millis(50 + 37 * i as u64),
                round: 0,
                pending: Vec::new(),
                health: Health::new(Settings::of(g), admin, t0),
                hooks: g.hooks.clone(),
            }
        })
        .collect();
    let action = match c.cfg.policy.on_gateway_down {
        config::OnGatewayDown::Reset => DownAction::Reset,
        config::OnGatewayDown::Wait => DownAction::Keep,
    };
    let failback = match c.cfg.policy.failback {
        config::Failback::Stay => Failback::Stay,
        config::Failback::Move => Failback::Move,
    };
    // Tell the workers about gateways that start disabled or forced.
    for (i, g) in gws.iter().enumerate() {
        if g.health.state() != GatewayState::Up {
            broadcast_gateway(&c.to_workers, i, g.health.state(), action, failback);
        }
    }
    let mut stats: HashMap<u16, WorkerStats> = HashMap::new();
    let mut last_log = Instant::now();
    let mut last_status = Instant::now();
    let mut last_passive = Instant::now();
    let mut scratch = vec![0u8; 256];
    while !c.stop.load(Ordering::Relaxed) {
        match c.from_workers.recv_timeout(Duration::from_millis(5)) {
            Ok(FromWorker::Frame {
                worker,
                link,
                reason,
                frame,
            }) => {
                on_frame(&c, &mut gws, worker, link, reason, &frame);
            }
            Ok(FromWorker::Stats(s)) => {
                stats.insert(s.worker, *s);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        let now = Instant::now();
        let t = now_of(c.epoch);
        // Probe rounds: evaluate the ones whose timeout passed, send the ones that are due.
        for (gi, g) in gws.iter_mut().enumerate() {
            let timeout = g.timeout;
            let mut done = Vec::new();
            g.pending.retain(|(_, sent, res)| {
                if now.duration_since(*sent) >= timeout {
                    done.push(res.clone());
                    false
                } else {
                    true
                }
            });
            for res in done {
                g.last_rtt = res.clone();
                if let Some(tr) = g.health.round(t, &res) {
                    transition(&c, gi, g, &tr, action, failback);
                }
            }
            if now >= g.next_round {
                g.next_round = now + g.interval;
                g.round = g.round.wrapping_add(1);
                let frames = probe_frames(&c, gi, g, &mut scratch);
                g.pending.push((g.round, now, vec![None; g.targets.len()]));
                if !frames.is_empty()
                    && let Some(w0) = c.to_workers.first()
                {
                    let _ = w0.send(ToWorker::Transmit {
                        link: g.link,
                        frames,
                    });
                }
            }
        }
        // Passive signal: connections failing through a gateway (summed over workers).
        if last_passive.elapsed() >= Duration::from_millis(200) {
            last_passive = Instant::now();
            if let Some(fr) = c
                .cfg
                .policy
                .failure_redirect
                .enabled
                .then_some(&c.cfg.policy.failure_redirect)
            {
                for (gi, g) in gws.iter_mut().enumerate() {
                    let (mut opened, mut failed) = (0u64, 0u64);
                    for s in stats.values() {
                        if let Some(&(o, f)) = s.failures.get(gi) {
                            opened += u64::from(o);
                            failed += u64::from(f);
                        }
                    }
                    let failing = opened >= u64::from(fr.min_samples.max(1))
                        && failed as f64 >= opened as f64 * fr.failed_ratio;
                    if let Some(tr) = g.health.passive(t, failing) {
                        transition(&c, gi, g, &tr, action, failback);
                    }
                }
            }
        }
        if last_status.elapsed() >= Duration::from_secs(1) {
            last_status = Instant::now();
            if let Some(path) = &c.status_file {
                let json = status_json(&gws, &stats, t);
                let tmp = path.with_extension("tmp");
                if std::fs::write(&tmp, json)
                    .and_then(|()| std::fs::rename(&tmp, path))
                    .is_err()
                {
                    warn!("cannot write the status file {}", path.display());
                }
            }
        }
        if last_log.elapsed() >= c.log_every {
            last_log = Instant::now();
            log_status(&gws, &stats);
        }
    }
    for tx in &c.to_workers {
        let _ = tx.send(ToWorker::Stop);
    }
    let mut v: Vec<WorkerStats> = stats.into_values().collect();
    v.sort_by_key(|s| s.worker);
    v
}

fn broadcast_gateway(
    to: &[Sender<ToWorker>],
    gi: usize,
    state: GatewayState,
    action: DownAction,
    failback: Failback,
) {
    for tx in to {
        let _ = tx.send(ToWorker::Gateway {
            gateway: GatewayId(gi as u8),
            state,
            action,
            failback,
        });
    }
}

fn transition(
    c: &ControlSetup,
    gi: usize,
    g: &Gw,
    tr: &Transition,
    action: DownAction,
    failback: Failback,
) {
    info!("gateway {} {}", g.name, tr);
    broadcast_gateway(&c.to_workers, gi, tr.to, action, failback);
    let cmd = match tr.to {
        GatewayState::Up | GatewayState::Degraded | GatewayState::Forced => g.hooks.up.clone(),
        GatewayState::Down | GatewayState::Disabled => g.hooks.down.clone(),
    };
    // A degraded <-> up change is not an up event for the hooks.
    let edge = tr.from.is_usable() != tr.to.is_usable();
    if let Some(cmd) = cmd.filter(|_| edge) {
        run_hook(
            cmd,
            g.name.clone(),
            tr.to,
            tr.reason.clone(),
            Duration::from_millis(u64::from(g.hooks.timeout_ms)),
        );
    }
}

/// Run a hook in its own thread, killed after `timeout`; never blocks the caller.
pub fn run_hook(
    cmd: String,
    gateway: String,
    state: GatewayState,
    reason: String,
    timeout: Duration,
) {
    let spawned = std::thread::Builder::new()
        .name(format!("hook-{gateway}"))
        .spawn(move || {
            let child = Command::new("sh")
                .arg("-c")
                .arg(&cmd)
                .env("ALTROUTE_GATEWAY", &gateway)
                .env("ALTROUTE_STATE", state.to_string())
                .env("ALTROUTE_REASON", &reason)
                .spawn();
            let mut child = match child {
                Ok(c) => c,
                Err(e) => {
                    warn!("hook for {gateway} ({cmd}): cannot start: {e}");
                    return;
                }
            };
            let start = Instant::now();
            loop {
                match child.try_wait() {
                    Ok(Some(status)) => {
                        if !status.success() {
                            warn!("hook for {gateway} ({cmd}) exited with {status}");
                        }
                        return;
                    }
                    Ok(None) if start.elapsed() >= timeout => {
                        let _ = child.kill();
                        let _ = child.wait();
                        warn!(
                            "hook for {gateway} ({cmd}) killed after {} ms",
                            timeout.as_millis()
                        );
                        return;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                    Err(e) => {
                        warn!("hook for {gateway} ({cmd}): {e}");
                        return;
                    }
                }
            }
        });
    if let Err(e) = spawned {
        warn!("cannot start a hook thread: {e}");
    }
}

fn probe_frames(c: &ControlSetup, gi: usize, g: &Gw, scratch: &mut [u8]) -> Vec<Vec<u8>> {
    let Some(&our_mac) = c.port_mac.get(g.port) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    // ARP for the gateway: learns (and notices a change of) its MAC.
    if !g.static_mac
        && let Ok(n) = build::arp_request(scratch, g.vlan, our_mac, g.src, g.next_hop)
    {
        out.push(scratch[..n].to_vec());
    }
    let Some(gw_mac) = g.mac else {
        return out;
    };
    let l2 = L2 {
        src: our_mac,
        dst: gw_mac,
        vlan: g.vlan,
    };
    for (ti, &target) in g.targets.iter().enumerate() {
        let payload = *b"altroute-probe..";
        if let Ok(n) = build::icmp_echo_request(
            scratch,
            &l2,
            g.src,
            target,
            probe_id(gi, ti),
            g.round,
            64,
            &payload,
        ) {
            out.push(scratch[..n].to_vec());
        }
    }
    out
}

fn on_frame(
    c: &ControlSetup,
    gws: &mut [Gw],
    _worker: u16,
    link: u8,
    reason: ControlReason,
    frame: &[u8],
) {
    let Ok(eth) = EthernetFrame::new_checked(frame) else {
        return;
    };
    match reason {
        ControlReason::ArpReply => {
            let Ok(arp) = ArpPacket::new_checked(eth.payload()) else {
                return;
            };
            let a = ArpRepr::parse(&arp);
            if a.op != ArpOp::Reply && a.spa != a.tpa {
                return;
            }
            let port = c
                .port_link
                .iter()
                .enumerate()
                .find(|(pi, l)| {
                    **l == link
                        && c.cfg.ports[*pi].vlan.unwrap_or(0) == eth.vlan().map_or(0, |v| v.id())
                })
                .map_or(0, |(pi, _)| pi as u8);
            for tx in &c.to_workers {
                let _ = tx.send(ToWorker::Neighbor {
                    ip: a.spa,
                    mac: a.sha,
                    port,
                });
            }
            for g in gws.iter_mut() {
                if g.next_hop == a.spa && g.link == link && !g.static_mac && g.mac != Some(a.sha) {
                    if g.mac.is_some() {
                        info!("gateway {}: MAC changed to {}", g.name, a.sha);
                    } else {
                        info!("gateway {}: {} is at {}", g.name, a.spa, a.sha);
                    }
                    g.mac = Some(a.sha);
                }
            }
        }
        ControlReason::ProbeReply => {
            let Ok(ip) = Ipv4Packet::new_checked(eth.payload()) else {
                return;
            };
            let Ok(icmp) = Icmpv4Packet::new_checked(ip.payload()) else {
                return;
            };
            let (id, seq) = (icmp.ident(), icmp.seq());
            if id == 0 || id >= PROBE_ID_LIMIT {
                return;
            }
            let gi = usize::from((id - 1) / 16);
            let ti = usize::from((id - 1) % 16);
            let Some(g) = gws.get_mut(gi) else {
                return;
            };
            if g.targets.get(ti) != Some(&ip.src()) {
                return;
            }
            if let Some((_, sent, res)) = g.pending.iter_mut().find(|(r, _, _)| *r == seq)
                && let Some(slot) = res.get_mut(ti)
            {
                *slot = Some(u32::try_from(sent.elapsed().as_millis()).unwrap_or(u32::MAX));
            }
        }
        ControlReason::Local => {}
    }
}

fn log_status(gws: &[Gw], stats: &HashMap<u16, WorkerStats>) {
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

/// The status document: gateways with state, reason, flows and counters; drops by reason.
fn status_json(gws: &[Gw], stats: &HashMap<u16, WorkerStats>, t: Time) -> String {
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
        s.push_str(&format!(
            "    {{\"name\": {}, \"state\": \"{}\", \"since_ms\": {}, \"reason\": {}, \"mac\": {}, \"flows\": {flows}, \"out_packets\": {op}, \"out_bytes\": {ob}, \"in_packets\": {ip}, \"in_bytes\": {ib}, \"rtt_ms\": [{}]}}{}\n",
            json_str(&g.name),
            g.health.state(),
            since.millis(),
            json_str(reason),
            g.mac.map_or("null".into(), |m| json_str(&m.to_string())),
            rtt.join(", "),
            if gi + 1 < gws.len() { "," } else { "" }
        ));
    }
    s.push_str("  ],\n  \"flows\": ");
    s.push_str(
        &stats
            .values()
            .map(|w| w.flows as u64)
            .sum::<u64>()
            .to_string(),
    );
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
    use super::*;

    #[test]
    fn probe_ids_stay_below_the_nat_range() {
        assert!(probe_id(62, 15) < PROBE_ID_LIMIT);
        assert_eq!(probe_id(0, 0), 1);
        assert_eq!((probe_id(3, 5) - 1) / 16, 3);
        assert_eq!((probe_id(3, 5) - 1) % 16, 5);
    }

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_str("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
    }

    #[test]
    fn hooks_get_their_environment_and_are_killed_on_timeout() {
        let dir = std::env::temp_dir().join(format!("altroute-hook-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("env");
        run_hook(
            format!(
                "echo \"$ALTROUTE_GATEWAY $ALTROUTE_STATE $ALTROUTE_REASON\" > {}",
                out.display()
            ),
            "isp1".into(),
            GatewayState::Down,
            "probes lost".into(),
            Duration::from_secs(5),
        );
        let start = Instant::now();
        while !out.exists() && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(
            std::fs::read_to_string(&out).unwrap().trim(),
            "isp1 down probes lost"
        );
        // A hook that hangs is killed and does not block the caller.
        let t = Instant::now();
        run_hook(
            "sleep 30".into(),
            "isp1".into(),
            GatewayState::Up,
            "x".into(),
            Duration::from_millis(100),
        );
        assert!(t.elapsed() < Duration::from_millis(50));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
