//! The control thread: gateway probes and health, neighbour sharing between workers, hooks,
//! counters and the status file. Policy lives here; the workers only move frames.
//!
//! Probes are crafted here (ICMP echo to each target, ARP for the gateway's MAC) and sent by
//! worker 0 out of the gateway's own link to the gateway's MAC, whatever the policy says, from the
//! gateway's NAT address. Probe identifiers are below [`PROBE_ID_LIMIT`], a range NAT never hands
//! out, so the workers recognise the replies and pass them up.
//!
//! When the workers report new failed connections through a usable gateway (SYN retried or
//! reset), its probe rounds go out at least every [`BOOST_INTERVAL`] for [`BOOST_FOR`], so the
//! passive signal (see [`crate::health`]) is confirmed by unanswered probes within a few hundred
//! milliseconds even when the configured interval is long.
//!
//! Every transition is logged, kept in a short history (the last [`HISTORY`]) and written to the
//! status file at once (as well as every second).
//!
//! # Operator commands (no restart)
//!
//! With a status file `S` (`altroute run --status-file S`), the control thread watches the file
//! `S.cmd` (the status file's name with `.cmd` appended). Each line is `GATEWAY force|disable|auto`:
//! `force` uses the gateway whatever the probes say, `disable` never uses it (its flows are treated
//! as on a dead gateway), `auto` follows the probes again. The file is consumed (removed) when
//! read; unknown gateways or words are logged and ignored; the result shows in the status file
//! (`admin`, `state`, `reason`). Example:
//!
//! ```text
//! echo "isp2 disable" > /run/altroute/status.json.cmd
//! ```

use std::collections::{HashMap, VecDeque};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
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
    /// When the gateway last answered an ARP request (it is asked every round unless its MAC is
    /// configured).
    arp_seen: Option<Instant>,
    /// Failed connections through this gateway in the workers' latest counts (summed).
    failed_seen: u64,
    /// Until when rounds are sent at least every [`BOOST_INTERVAL`] (connections are failing).
    boost_until: Option<Instant>,
}

/// While connections through a gateway are failing, probe rounds go out at least this often, so
/// that the passive signal can be confirmed (or not) without waiting for a slow probe interval.
pub const BOOST_INTERVAL: Duration = Duration::from_millis(200);
/// How long a boost lasts after the last new failure.
pub const BOOST_FOR: Duration = Duration::from_secs(3);

/// Transitions kept for the status file.
pub const HISTORY: usize = 32;

/// One line of the transition history.
struct Logged {
    gateway: String,
    tr: Transition,
}

/// An operator command from the command file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminCommand {
    /// The gateway's name.
    pub gateway: String,
    /// What to do.
    pub admin: Admin,
}

/// Parses the command file: one `GATEWAY force|disable|auto` per line; blank lines and `#`
/// comments are skipped. Returns the commands and one message per line that is not understood.
pub fn parse_commands(text: &str) -> (Vec<AdminCommand>, Vec<String>) {
    let mut ok = Vec::new();
    let mut bad = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let admin = match words.get(1).copied() {
            Some("force" | "forced") => Some(Admin::Forced),
            Some("disable" | "disabled") => Some(Admin::Disabled),
            Some("auto") => Some(Admin::Auto),
            _ => None,
        };
        match (words.first(), admin, words.len()) {
            (Some(g), Some(admin), 2) => ok.push(AdminCommand {
                gateway: (*g).to_string(),
                admin,
            }),
            _ => bad.push(format!(
                "line {}: `{line}`: expected `GATEWAY force|disable|auto`",
                n + 1
            )),
        }
    }
    (ok, bad)
}

/// The command file that goes with a status file: its name with `.cmd` appended.
pub fn command_file(status_file: &Path) -> PathBuf {
    let mut s = status_file.as_os_str().to_owned();
    s.push(".cmd");
    PathBuf::from(s)
}

fn admin_name(a: Admin) -> &'static str {
    match a {
        Admin::Auto => "auto",
        Admin::Disabled => "disabled",
        Admin::Forced => "forced",
    }
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
                arp_seen: None,
                failed_seen: 0,
                boost_until: None,
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
    let mut history: VecDeque<Logged> = VecDeque::new();
    let mut last_log = Instant::now();
    let mut last_status = Instant::now();
    let mut last_passive = Instant::now();
    let mut last_cmd = Instant::now();
    let cmd_file = c.status_file.as_deref().map(command_file);
    let mut scratch = vec![0u8; 256];
    while !c.stop.load(Ordering::Relaxed) {
        // Set when something changed that the status file should show now.
        let mut changed = false;
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
                    transition(&c, gi, g, &tr, action, failback, &mut history);
                    changed = true;
                }
            }
            if now >= g.next_round {
                let boosted = g.boost_until.is_some_and(|b| now < b);
                g.next_round = now
                    + if boosted {
                        g.interval.min(BOOST_INTERVAL)
                    } else {
                        g.interval
                    };
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
                    // New failures: probe more often for a while, so the probes confirm or
                    // clear the passive signal soon even with a slow interval.
                    if failed > g.failed_seen && g.health.state().is_usable() {
                        let now = Instant::now();
                        if g.boost_until.is_none_or(|b| now >= b) {
                            info!(
                                "gateway {}: {} new failed connection(s), probing every {} ms",
                                g.name,
                                failed - g.failed_seen,
                                g.interval.min(BOOST_INTERVAL).as_millis()
                            );
                        }
                        g.boost_until = Some(now + BOOST_FOR);
                        g.next_round = g.next_round.min(now + BOOST_INTERVAL);
                    }
                    g.failed_seen = failed;
                    if let Some(tr) = g.health.passive(t, failing) {
                        transition(&c, gi, g, &tr, action, failback, &mut history);
                        changed = true;
                    }
                }
            }
        }
        // Operator commands.
        if let Some(cf) = &cmd_file
            && last_cmd.elapsed() >= Duration::from_millis(100)
        {
            last_cmd = Instant::now();
            for cmd in take_commands(cf) {
                let Some((gi, g)) = gws
                    .iter_mut()
                    .enumerate()
                    .find(|(_, g)| g.name == cmd.gateway)
                else {
                    warn!("command file: no gateway named {}", cmd.gateway);
                    continue;
                };
                info!(
                    "gateway {}: operator sets {}",
                    g.name,
                    admin_name(cmd.admin)
                );
                if let Some(tr) = g.health.set_admin(cmd.admin, t) {
                    transition(&c, gi, g, &tr, action, failback, &mut history);
                }
                changed = true;
            }
        }
        if changed || last_status.elapsed() >= Duration::from_secs(1) {
            last_status = Instant::now();
            if let Some(path) = &c.status_file {
                let json = status_json(&gws, &stats, &history, t);
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

/// Reads and removes the command file (renamed first, so a command written meanwhile waits for
/// the next turn instead of being lost).
fn take_commands(path: &Path) -> Vec<AdminCommand> {
    let mut taking = path.as_os_str().to_owned();
    taking.push(".taking");
    let taking = PathBuf::from(taking);
    if std::fs::rename(path, &taking).is_err() {
        return Vec::new();
    }
    let text = std::fs::read_to_string(&taking).unwrap_or_default();
    let _ = std::fs::remove_file(&taking);
    let (cmds, bad) = parse_commands(&text);
    for b in bad {
        warn!("command file {}: {b}", path.display());
    }
    cmds
}

fn transition(
    c: &ControlSetup,
    gi: usize,
    g: &Gw,
    tr: &Transition,
    action: DownAction,
    failback: Failback,
    history: &mut VecDeque<Logged>,
) {
    info!("gateway {} {}", g.name, tr);
    history.push_back(Logged {
        gateway: g.name.clone(),
        tr: tr.clone(),
    });
    while history.len() > HISTORY {
        history.pop_front();
    }
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
                if g.next_hop == a.spa && g.link == link {
                    g.arp_seen = Some(Instant::now());
                }
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
    use super::*;

    #[test]
    fn probe_ids_stay_below_the_nat_range() {
        assert!(probe_id(62, 15) < PROBE_ID_LIMIT);
        assert_eq!(probe_id(0, 0), 1);
        assert_eq!((probe_id(3, 5) - 1) / 16, 3);
        assert_eq!((probe_id(3, 5) - 1) % 16, 5);
    }

    #[test]
    fn commands_parse() {
        let (ok, bad) = parse_commands(
            "isp2 disable\n# comment\n\n isp1  force \nisp3 auto # x\nisp1\nisp1 reboot\n",
        );
        assert_eq!(
            ok,
            vec![
                AdminCommand {
                    gateway: "isp2".into(),
                    admin: Admin::Disabled
                },
                AdminCommand {
                    gateway: "isp1".into(),
                    admin: Admin::Forced
                },
                AdminCommand {
                    gateway: "isp3".into(),
                    admin: Admin::Auto
                },
            ]
        );
        assert_eq!(bad.len(), 2, "{bad:?}");
        assert!(bad[0].starts_with("line 6"), "{bad:?}");
        assert_eq!(
            command_file(Path::new("/run/altroute/status.json")),
            PathBuf::from("/run/altroute/status.json.cmd")
        );
    }

    #[test]
    fn command_file_is_consumed() {
        let dir = std::env::temp_dir().join(format!("altroute-cmd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = command_file(&dir.join("s.json"));
        assert!(take_commands(&f).is_empty(), "no file, no commands");
        std::fs::write(&f, "isp1 disable\n").unwrap();
        let got = take_commands(&f);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].admin, Admin::Disabled);
        assert!(!f.exists());
        assert!(take_commands(&f).is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn gw(name: &str, targets: Vec<Ipv4Addr>) -> Gw {
        let mut g: config::Gateway =
            serde_norway::from_str(&format!("{{name: {name}, port: wan1, via: 192.0.2.2}}"))
                .unwrap();
        g.probe.targets = targets.clone();
        Gw {
            name: name.into(),
            port: 0,
            link: 0,
            vlan: None,
            src: Ipv4Addr::new(192, 0, 2, 1),
            next_hop: g.via,
            mac: None,
            static_mac: false,
            last_rtt: vec![Some(3), None],
            targets,
            interval: Duration::from_millis(100),
            timeout: Duration::from_millis(100),
            next_round: Instant::now(),
            round: 0,
            pending: Vec::new(),
            health: Health::new(Settings::of(&g), Admin::Auto, Time::from_millis(0)),
            hooks: g.hooks.clone(),
            arp_seen: Some(Instant::now()),
            failed_seen: 0,
            boost_until: None,
        }
    }

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
        let mut history = VecDeque::new();
        let tr = a
            .health
            .set_admin(Admin::Disabled, Time::from_millis(1234))
            .unwrap();
        history.push_back(Logged {
            gateway: a.name.clone(),
            tr,
        });
        let text = status_json(&[a, b], &HashMap::new(), &history, Time::from_millis(2000));
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
