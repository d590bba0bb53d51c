//! The control thread: gateway probes and health, neighbour sharing between workers, hooks,
//! counters and the status file. Policy lives here; the workers only move frames.
//!
//! Probes are crafted here (ICMP echo to each target, ARP for the gateway's MAC) and sent by
//! worker 0 out of the gateway's own link to the gateway's MAC, whatever the policy says, from the
//! gateway's NAT address. Probe identifiers are below
//! [`PROBE_ID_LIMIT`](altroute_packet::pipeline::PROBE_ID_LIMIT), a range NAT never hands out, so
//! the workers recognise the replies and pass them up.
//!
//! The parts (private modules): `gateway` (per-gateway state and probe rounds), `probe` (probe
//! frames and the replies), `status` (log line, status file, transition history), `hooks`,
//! `commands` (the command file); this module holds the loop.
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

mod commands;
mod gateway;
mod hooks;
mod probe;
mod status;

pub use commands::{AdminCommand, command_file, parse_commands};
pub use gateway::{BOOST_FOR, BOOST_INTERVAL};
pub use hooks::run_hook;
pub use probe::arp_neighbor;
pub use status::HISTORY;

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use altroute_flow::{DownAction, Failback, GatewayId, GatewayState, Time};
use altroute_packet::wire::MacAddr;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use log::{info, warn};

use crate::config::Config;
use crate::health::Transition;
use crate::worker::{FromWorker, ToWorker, WorkerStats};
use gateway::Gw;
use status::History;

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

/// How long the loop waits for a worker event before it looks at its timers again.
const TICK: Duration = Duration::from_millis(5);
/// How often the workers' failure counts are turned into the passive signal.
const PASSIVE_EVERY: Duration = Duration::from_millis(200);
/// How often the command file is looked for.
const COMMANDS_EVERY: Duration = Duration::from_millis(100);
/// How often the status file is written when nothing changed.
const STATUS_EVERY: Duration = Duration::from_secs(1);

/// The channels to the workers, and what they are told about a gateway that changes state.
struct Workers {
    to: Vec<Sender<ToWorker>>,
    /// What happens to a dead gateway's flows (`policy.on_gateway_down`).
    action: DownAction,
    /// What happens to flows when a preferred gateway returns (`policy.failback`).
    failback: Failback,
}

impl Workers {
    /// Every worker learns gateway `gi`'s new state.
    fn gateway(&self, gi: usize, state: GatewayState) {
        for tx in &self.to {
            let _ = tx.send(ToWorker::Gateway {
                gateway: GatewayId(gi as u8),
                state,
                action: self.action,
                failback: self.failback,
            });
        }
    }

    /// Every worker learns a neighbour (ARP is steered to one worker only, and each worker hears
    /// only the LAN frames steered to it).
    fn neighbor(&self, ip: Ipv4Addr, mac: MacAddr, port: u8) {
        for tx in &self.to {
            let _ = tx.send(ToWorker::Neighbor { ip, mac, port });
        }
    }

    /// Worker 0 sends `frames` out of `link`.
    fn transmit(&self, link: u8, frames: Vec<Vec<u8>>) {
        if let Some(w0) = self.to.first() {
            let _ = w0.send(ToWorker::Transmit { link, frames });
        }
    }

    fn stop(&self) {
        for tx in &self.to {
            let _ = tx.send(ToWorker::Stop);
        }
    }
}

/// When each periodic step last ran.
struct Timers {
    log: Instant,
    status: Instant,
    passive: Instant,
    commands: Instant,
}

/// The control thread's state.
struct Control {
    cfg: Config,
    port_link: Vec<u8>,
    port_mac: Vec<MacAddr>,
    workers: Workers,
    from_workers: Receiver<FromWorker>,
    epoch: Instant,
    status_file: Option<PathBuf>,
    cmd_file: Option<PathBuf>,
    log_every: Duration,
    gws: Vec<Gw>,
    /// The latest counters of each worker.
    stats: HashMap<u16, WorkerStats>,
    history: History,
    last: Timers,
    /// Room to build one probe frame.
    scratch: Vec<u8>,
}

fn now_of(epoch: Instant) -> Time {
    Time::from_millis(u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX))
}

/// Announces a transition of gateway `gi`: logged, kept in the history, told to every worker,
/// and its hook run.
fn announce(workers: &Workers, history: &mut History, gi: usize, g: &Gw, tr: &Transition) {
    info!("gateway {} {}", g.name, tr);
    history.push(&g.name, tr);
    workers.gateway(gi, tr.to);
    hooks::on_transition(&g.hooks, &g.name, tr);
}

/// Run until `stop` is set. Returns the last statistics of each worker.
pub fn run(c: ControlSetup) -> Vec<WorkerStats> {
    let stop = Arc::clone(&c.stop);
    let mut ctl = Control::new(c);
    while !stop.load(Ordering::Relaxed) && ctl.tick() {}
    ctl.workers.stop();
    let mut v: Vec<WorkerStats> = ctl.stats.into_values().collect();
    v.sort_by_key(|s| s.worker);
    v
}

impl Control {
    /// The gateways as configured; the workers are told about those that start disabled or
    /// forced.
    fn new(c: ControlSetup) -> Control {
        let t0 = now_of(c.epoch);
        let gws: Vec<Gw> = c
            .cfg
            .gateways
            .iter()
            .enumerate()
            .map(|(i, g)| Gw::new(&c.cfg, i, g, &c.port_link, t0))
            .collect();
        let workers = Workers {
            to: c.to_workers,
            action: c.cfg.policy.on_gateway_down.into(),
            failback: c.cfg.policy.failback.into(),
        };
        for (i, g) in gws.iter().enumerate() {
            if g.health.state() != GatewayState::Up {
                workers.gateway(i, g.health.state());
            }
        }
        let now = Instant::now();
        Control {
            cmd_file: c.status_file.as_deref().map(command_file),
            cfg: c.cfg,
            port_link: c.port_link,
            port_mac: c.port_mac,
            workers,
            from_workers: c.from_workers,
            epoch: c.epoch,
            status_file: c.status_file,
            log_every: c.log_every,
            gws,
            stats: HashMap::new(),
            history: History::default(),
            last: Timers {
                log: now,
                status: now,
                passive: now,
                commands: now,
            },
            scratch: vec![0u8; 256],
        }
    }

    /// One turn of the loop: a worker event (or a short wait for one), probe rounds, the
    /// passive signal, operator commands, status. `false` once the workers are gone.
    fn tick(&mut self) -> bool {
        match self.from_workers.recv_timeout(TICK) {
            Ok(FromWorker::Frame {
                link,
                reason,
                frame,
                ..
            }) => self.on_frame(link, reason, &frame),
            Ok(FromWorker::Neighbor { ip, mac, port }) => self.workers.neighbor(ip, mac, port),
            Ok(FromWorker::Stats(s)) => {
                self.stats.insert(s.worker, *s);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return false,
        }
        let now = Instant::now();
        let t = now_of(self.epoch);
        // Set when something changed that the status file should show now.
        let mut changed = self.probe_rounds(now, t);
        changed |= self.passive_signal(t);
        changed |= self.operator_commands(t);
        self.report(changed, t);
        true
    }

    /// Evaluates the rounds whose timeout passed and sends the ones that are due. Returns
    /// whether a gateway changed state.
    fn probe_rounds(&mut self, now: Instant, t: Time) -> bool {
        let mut changed = false;
        for (gi, g) in self.gws.iter_mut().enumerate() {
            for tr in g.finish_rounds(now, t) {
                announce(&self.workers, &mut self.history, gi, g, &tr);
                changed = true;
            }
            if g.start_round(now)
                && let Some(&our_mac) = self.port_mac.get(g.port)
            {
                let frames = probe::probe_frames(gi, g, our_mac, &mut self.scratch);
                if !frames.is_empty() {
                    self.workers.transmit(g.link, frames);
                }
            }
        }
        changed
    }

    /// The passive signal: connections failing through a gateway (summed over workers), every
    /// [`PASSIVE_EVERY`] when `policy.failure_redirect` is on. Returns whether a gateway changed
    /// state.
    fn passive_signal(&mut self, t: Time) -> bool {
        if self.last.passive.elapsed() < PASSIVE_EVERY {
            return false;
        }
        self.last.passive = Instant::now();
        let fr = &self.cfg.policy.failure_redirect;
        if !fr.enabled {
            return false;
        }
        let mut changed = false;
        for (gi, g) in self.gws.iter_mut().enumerate() {
            let (mut opened, mut failed) = (0u64, 0u64);
            for s in self.stats.values() {
                if let Some(&(o, f)) = s.failures.get(gi) {
                    opened += u64::from(o);
                    failed += u64::from(f);
                }
            }
            let failing = opened >= u64::from(fr.min_samples.max(1))
                && failed as f64 >= opened as f64 * fr.failed_ratio;
            g.note_failures(failed, Instant::now());
            if let Some(tr) = g.health.passive(t, failing) {
                announce(&self.workers, &mut self.history, gi, g, &tr);
                changed = true;
            }
        }
        changed
    }

    /// Operator commands from the command file, every [`COMMANDS_EVERY`]. Returns whether one
    /// was applied.
    fn operator_commands(&mut self, t: Time) -> bool {
        let Some(cf) = &self.cmd_file else {
            return false;
        };
        if self.last.commands.elapsed() < COMMANDS_EVERY {
            return false;
        }
        self.last.commands = Instant::now();
        let mut changed = false;
        for cmd in commands::take_commands(cf) {
            let Some((gi, g)) = self
                .gws
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
                commands::admin_name(cmd.admin)
            );
            if let Some(tr) = g.health.set_admin(cmd.admin, t) {
                announce(&self.workers, &mut self.history, gi, g, &tr);
            }
            changed = true;
        }
        changed
    }

    /// The status file (at once after a change, else every [`STATUS_EVERY`]) and the periodic
    /// log line.
    fn report(&mut self, changed: bool, t: Time) {
        if changed || self.last.status.elapsed() >= STATUS_EVERY {
            self.last.status = Instant::now();
            if let Some(path) = &self.status_file {
                status::write_status(path, &self.gws, &self.stats, &self.history, t);
            }
        }
        if self.last.log.elapsed() >= self.log_every {
            self.last.log = Instant::now();
            status::log_status(&self.gws, &self.stats);
        }
    }
}
