//! The control thread: gateway probes and health, neighbour sharing between workers, hooks,
//! counters, the operator's commands and configuration reloads. Policy lives here; the workers
//! only move frames.
//!
//! Probes are crafted here (ICMP echo to each target, ARP for the gateway's MAC) and sent by
//! worker 0 out of the gateway's own link to the gateway's MAC, whatever the policy says, from the
//! gateway's NAT address. Probe identifiers are below
//! [`PROBE_ID_LIMIT`](altroute_packet::pipeline::PROBE_ID_LIMIT), a range NAT never hands out, so
//! the workers recognise the replies and pass them up.
//!
//! The parts (private modules): `gateway` (per-gateway state and probe rounds), `probe` (probe
//! frames and the replies), `status` (log line, status file, transition history), `hooks`,
//! `requests` (what the API asks: snapshots, commands, reloads), `snapshot` (the router as the
//! API shows it), `reload` (what a reload may change live); this module holds the loop and
//! `Control::apply`, which brings a new configuration into force.
//!
//! When the workers report new failed connections through a usable gateway (SYN retried or
//! reset), its probe rounds go out at least every [`BOOST_INTERVAL`] for [`BOOST_FOR`], so the
//! passive signal (see [`crate::health`]) is confirmed by unanswered probes within a few hundred
//! milliseconds even when the configured interval is long.
//!
//! Every transition is logged, kept in a short history (the last [`HISTORY`]) and written to the
//! status file (`altroute run --status-file`) at once (as well as every second).
//!
//! # Operator commands and reloads (no restart)
//!
//! The API ([`crate::api`]) hands the control thread [`Request`]s: a snapshot, or a [`Command`]
//! (force, release, enable, disable, mode, pin, unpin, reload). SIGHUP is a reload too. A
//! command edits a copy of the configuration in force, which is validated like a file and
//! applied like a reload: the workers get their flow tables' new gateways, policy, overrides
//! and timeouts over their control channels (existing flows stay where they are), the gateways
//! their new probe settings and operator state. A reload re-reads the file: a file that does
//! not validate, or that changes what a running router cannot take (see `reload`), is refused
//! with the reason, and the configuration in force stays. A reload applies the file as it is,
//! so the operator's commands since the last one are undone.

mod gateway;
mod hooks;
mod probe;
mod reload;
mod requests;
mod snapshot;
mod status;

pub use gateway::{BOOST_FOR, BOOST_INTERVAL, RECENT_ROUNDS};
pub use hooks::run_hook;
pub use probe::arp_neighbor;
pub use reload::{changed_keys, is_live, restart_keys};
pub use requests::{Applied, Command, CommandError, Request, Snapshot};
pub use status::HISTORY;

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use altroute_flow::{DownAction, Failback, GatewayId, GatewayState, Time};
use altroute_packet::wire::MacAddr;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use log::{info, warn};

use crate::build;
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
    /// Set by SIGHUP: reload the configuration.
    pub reload: Arc<AtomicBool>,
    /// The configuration file (re-read on reload).
    pub config_path: PathBuf,
    /// Requests from the API.
    pub requests: Receiver<Request>,
    /// The API's bearer token (from `api.token_file`), replaced on reload.
    pub token: Arc<RwLock<Option<String>>>,
    /// Write a JSON status here every second, if set.
    pub status_file: Option<PathBuf>,
    /// Log a status line this often.
    pub log_every: Duration,
}

/// How long the loop waits for a worker event before it looks at its timers again.
const TICK: Duration = Duration::from_millis(5);
/// How often the workers' failure counts are turned into the passive signal.
const PASSIVE_EVERY: Duration = Duration::from_millis(200);
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
}

/// The control thread's state.
struct Control {
    /// The configuration in force: the file's, with the operator's commands applied.
    cfg: Config,
    /// The file as last loaded (reloads are compared with it).
    file: Config,
    config_path: PathBuf,
    requests: Receiver<Request>,
    reload_flag: Arc<AtomicBool>,
    token: Arc<RwLock<Option<String>>>,
    /// The last reload's outcome, for the status.
    last_reload: Option<String>,
    port_link: Vec<u8>,
    port_mac: Vec<MacAddr>,
    workers: Workers,
    from_workers: Receiver<FromWorker>,
    epoch: Instant,
    status_file: Option<PathBuf>,
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
    while !stop.load(Ordering::Relaxed) && ctl.tick() {
        crate::service::watchdog();
    }
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
            file: c.cfg.clone(),
            cfg: c.cfg,
            config_path: c.config_path,
            requests: c.requests,
            reload_flag: c.reload,
            token: c.token,
            last_reload: None,
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
            },
            scratch: vec![0u8; 256],
        }
    }

    /// One turn of the loop: a worker event (or a short wait for one), probe rounds, the
    /// passive signal, the API's requests, a reload on SIGHUP, status. `false` once the workers
    /// are gone.
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
        changed |= self.requests();
        if self.reload_flag.swap(false, Ordering::Relaxed) {
            changed |= self.reload().is_ok();
        }
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

    /// Brings `new` (validated) into force: the workers' flow tables (gateways' weights and
    /// tiers, policy, overrides, timeouts: existing flows stay), what they do with a dead or
    /// returning gateway's flows, the gateways' probes, hooks and operator state (with the
    /// transitions that follow), the log level.
    fn apply(&mut self, new: Config) {
        let t = now_of(self.epoch);
        let n = self.workers.to.len() as u16;
        for (w, tx) in self.workers.to.iter().enumerate() {
            match build::table_config(&new, w as u16, n) {
                Ok(tc) => {
                    let _ = tx.send(ToWorker::Table(Box::new(tc)));
                }
                Err(e) => warn!("worker {w}: the new configuration does not map: {e}"),
            }
        }
        self.workers.action = new.policy.on_gateway_down.into();
        self.workers.failback = new.policy.failback.into();
        for (gi, (g, c)) in self.gws.iter_mut().zip(&new.gateways).enumerate() {
            let old = self.cfg.gateways.get(gi);
            if old.is_none_or(|o| o.probe != c.probe || o.hooks != c.hooks) {
                g.reconfigure(c);
            }
            let admin = gateway::admin_of(&new, c);
            if admin != g.health.admin()
                && let Some(tr) = g.health.set_admin(admin, t)
            {
                announce(&self.workers, &mut self.history, gi, g, &tr);
            }
        }
        crate::logging::set_level(&new.logging.level);
        self.cfg = new;
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

/// The API's bearer token from `api.token_file` (its first line, trimmed), if set: an error
/// when the file cannot be read or holds no token.
pub fn read_token(cfg: &Config) -> Result<Option<String>, String> {
    let Some(path) = &cfg.api.token_file else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("api.token_file {}: {e}", path.display()))?;
    let token = text.lines().next().unwrap_or("").trim().to_string();
    if token.is_empty() {
        return Err(format!("api.token_file {}: no token in it", path.display()));
    }
    Ok(Some(token))
}
