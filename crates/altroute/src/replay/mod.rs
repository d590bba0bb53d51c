//! Offline replay: the packet pipeline over pcap/pcapng captures, no root, no network.
//!
//! `altroute replay --config C --in FILE [--in-port NAME] [--in FILE2 --in-port NAME2 ...]
//! --out-dir D [--time-from-capture] [--down GATEWAY@N] [--up GATEWAY@N] [--batch N]
//! [--workers N]`
//!
//! - **Inputs.** Each `--in` capture arrives on the port named by its `--in-port` (give one per
//!   `--in`, paired in order, or none: then every file arrives on the first LAN port). A port
//!   names a (link, VLAN) pair; its link is what the pipeline sees, and a frame's own 802.1Q tag
//!   picks the VLAN port on that link. The files are merged by capture time (ties: the order of
//!   `--in`, then file order) and processed in that order.
//! - **Workers.** `--workers N` (default: the configuration's `limits.workers`, else 1 — not the
//!   number of CPUs, so that a replay gives the same result on every machine) runs N pipeline
//!   contexts as the daemon runs N workers: each has its own flow table and share of the NAT
//!   port range, and each frame goes to the context the daemon's default fanout (the cBPF
//!   steering program, [`crate::build::steering`] of its in-link's side) would deliver it to.
//!   A neighbour one context learned is shared with every context and gateway events reach all
//!   of them, as the daemon's control thread does. The outputs keep the input order. The
//!   `handoff` fanout is not modelled (it delivers every frame to the same owner, later).
//! - **Batches.** `--batch N` hands the pipeline up to N consecutive frames of one worker at a
//!   time (`process_batch`, as the daemon's workers run it), else one frame at a time
//!   (`process`).
//! - **Clock.** By default packet `i` of the merged stream (0-based) runs at `now = i` ms: replays
//!   of captures with odd timestamps stay deterministic. With `--time-from-capture`, `now` is the
//!   packet's capture time relative to the first packet (never going backwards). Flows are
//!   expired as the clock advances, as the daemon does.
//! - **Outputs.** `D/<port>.pcap` for every port (Ethernet, microsecond timestamps): the frames
//!   forwarded out of that port (including ARP requests the pipeline sends to resolve a
//!   neighbour) and the answers (`Reply` verdicts: ARP replies, echo replies, ICMP errors, TCP RST)
//!   sent back out of the port the frame came in on. Each output frame carries the capture time
//!   of the frame that caused it.
//! - **Frames cut by the capture's snaplen** (caplen < wire length) are counted as `truncated`
//!   and not processed: the pipeline would see a frame that never existed.
//! - **MACs.** A port without `mac:` in the configuration gets the placeholder
//!   [`placeholder_port_mac`] `02:00:00:00:ff:NN` (NN = port index + 1). A gateway without `mac:`
//!   starts with the placeholder [`placeholder_gateway_mac`] `02:00:A:B:C:D` (its next-hop address
//!   A.B.C.D) in the neighbour table, so traffic flows without ARP; an ARP reply from the gateway
//!   in the capture replaces it, as it would on a live router.
//! - **Gateway events.** `--down NAME@N` marks gateway NAME down just before packet N (1-based, of
//!   the merged stream) with the configured `on_gateway_down` (reset: its flows answer their next
//!   LAN packet with TCP RST / ICMP prohibited); `--up NAME@N` brings it back (`failback`).
//!
//! The summary lists per-gateway flows (live at the end), packets and bytes out and in, the
//! verdict counts, the frames each worker processed and the drops by reason
//! ([`altroute_packet::DropReason`]'s name), all workers added up.

pub mod capture;
mod engine;
mod progress;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use altroute_flow::{FlowTable, GatewayId, Time};
use altroute_packet::pipeline::{Context, Counters, Verdict};
use altroute_packet::wire::MacAddr;

use crate::build::{self, BuildError};
use crate::config::{self, Config, ConfigError};
pub use capture::{CapFrame, CaptureError, pcap_bytes, read_capture};
use engine::{Batch, Workers, run_end};
pub use progress::Progress;

/// The placeholder MAC of port `index` when the configuration gives none: `02:00:00:00:ff:NN`.
pub fn placeholder_port_mac(index: usize) -> MacAddr {
    MacAddr([2, 0, 0, 0, 0xff, (index + 1) as u8])
}

/// The placeholder MAC of a gateway without `mac:`: `02:00:` followed by its next-hop address.
pub fn placeholder_gateway_mac(via: Ipv4Addr) -> MacAddr {
    let o = via.octets();
    MacAddr([2, 0, o[0], o[1], o[2], o[3]])
}

/// A gateway state change at a packet number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Gateway name.
    pub gateway: String,
    /// Applied just before this packet (1-based, merged stream).
    pub packet: usize,
}

impl FromStr for Event {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let err = || format!("{s:?}: expected GATEWAY@PACKET, e.g. isp1@10");
        let (g, n) = s.rsplit_once('@').ok_or_else(err)?;
        let packet: usize = n.parse().map_err(|_| err())?;
        if g.is_empty() || packet == 0 {
            return Err(err());
        }
        Ok(Event {
            gateway: g.to_string(),
            packet,
        })
    }
}

/// The command line of `altroute replay` (also used by tests to run fixture argument files).
#[derive(Clone, Debug, clap::Args)]
pub struct ReplayArgs {
    /// The YAML configuration.
    #[arg(long)]
    pub config: PathBuf,
    /// A pcap or pcapng capture to replay (repeatable).
    #[arg(long = "in", value_name = "FILE", required = true)]
    pub inputs: Vec<PathBuf>,
    /// The port the matching `--in` arrives on (one per `--in`, in order; default: the first LAN
    /// port for every file).
    #[arg(long = "in-port", value_name = "NAME")]
    pub in_ports: Vec<String>,
    /// Where `<port>.pcap` files are written.
    #[arg(long, value_name = "DIR")]
    pub out_dir: PathBuf,
    /// Use capture timestamps (relative to the first packet) as the clock instead of 1 ms per
    /// packet.
    #[arg(long)]
    pub time_from_capture: bool,
    /// Mark a gateway down just before packet N of the merged stream (repeatable).
    #[arg(long, value_name = "GATEWAY@N")]
    pub down: Vec<Event>,
    /// Bring a gateway back up just before packet N (repeatable).
    #[arg(long, value_name = "GATEWAY@N")]
    pub up: Vec<Event>,
    /// Hand the pipeline up to N frames at a time (`process_batch`, as the daemon's workers do,
    /// one clock reading per batch: the first frame's time), instead of one frame at a time
    /// (`process`). A batch holds consecutive frames of one worker and never spans a
    /// `--down`/`--up` event.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub batch: usize,
    /// Run N workers, each with its own flow table and share of the NAT ports, every frame
    /// steered to one of them as the daemon's kernel fanout steers it (default: the
    /// configuration's `limits.workers`, else 1).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub workers: Option<u16>,
}

/// One capture and the port it arrives on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Input {
    /// The capture file.
    pub path: PathBuf,
    /// The port name.
    pub port: String,
}

/// What to replay.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// The captures.
    pub inputs: Vec<Input>,
    /// Use capture time as the clock.
    pub time_from_capture: bool,
    /// Gateways going down.
    pub down: Vec<Event>,
    /// Gateways coming back.
    pub up: Vec<Event>,
    /// Frames per `process_batch` call; 0 or 1: one `process` call per frame.
    pub batch: usize,
    /// Told how far the replay is, after each batch.
    pub progress: Option<Progress>,
    /// Workers; 0 means 1.
    pub workers: u16,
}

/// Why a replay could not run. Each message is complete (no separate source to print).
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The configuration file is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The configuration could not be mapped onto the engine.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// The pipeline refused its configuration.
    #[error(transparent)]
    Pipeline(#[from] altroute_packet::pipeline::PipelineError),
    /// The flow table refused its configuration.
    #[error(transparent)]
    Flow(#[from] altroute_flow::ConfigError),
    /// A capture could not be read.
    #[error(transparent)]
    Capture(#[from] CaptureError),
    /// A command-line problem.
    #[error("{0}")]
    Usage(String),
    /// An output file could not be written.
    #[error("{path}: {why}")]
    Write {
        /// The file.
        path: PathBuf,
        /// What failed.
        why: String,
    },
}

impl ReplayArgs {
    /// Loads the configuration and pairs inputs with ports.
    pub fn resolve(&self) -> Result<(Config, Options), ReplayError> {
        let cfg = Config::load(&self.config)?;
        let ports = if self.in_ports.is_empty() {
            let lan = cfg
                .ports
                .iter()
                .find(|p| p.role == config::Role::Lan)
                .map(|p| p.name.clone())
                .ok_or_else(|| ReplayError::Usage("the configuration has no LAN port".into()))?;
            vec![lan; self.inputs.len()]
        } else if self.in_ports.len() == self.inputs.len() {
            self.in_ports.clone()
        } else {
            return Err(ReplayError::Usage(format!(
                "{} --in but {} --in-port: give one --in-port per --in (in the same order), or none \
                 (every file then arrives on the first LAN port)",
                self.inputs.len(),
                self.in_ports.len()
            )));
        };
        let opts = Options {
            inputs: self
                .inputs
                .iter()
                .zip(ports)
                .map(|(path, port)| Input {
                    path: path.clone(),
                    port,
                })
                .collect(),
            time_from_capture: self.time_from_capture,
            batch: self.batch,
            workers: self.workers.or(cfg.limits.workers).unwrap_or(1),
            down: self.down.clone(),
            up: self.up.clone(),
            progress: None,
        };
        Ok((cfg, opts))
    }
}

/// A frame that left the router.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutFrame {
    /// Capture time of the frame that caused it (ns since the epoch).
    pub ts_ns: u64,
    /// The bytes.
    pub data: Vec<u8>,
}

/// Per-gateway figures of a replay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayReport {
    /// Gateway name.
    pub name: String,
    /// Flows on it at the end of the replay.
    pub flows: u32,
    /// Packets and bytes (IP) sent out through it.
    pub out: (u64, u64),
    /// Packets and bytes (IP) received back through it.
    pub back: (u64, u64),
}

/// The result of a replay.
#[derive(Clone, Debug)]
pub struct Report {
    /// Port names, by port index.
    pub ports: Vec<String>,
    /// Frames leaving each port (same index as `ports`).
    pub outputs: Vec<Vec<OutFrame>>,
    /// Frames read from the captures.
    pub frames: u64,
    /// Frames cut by the capture's snaplen (not processed).
    pub truncated: u64,
    /// `Forward` verdicts.
    pub forward: u64,
    /// `Reply` verdicts.
    pub reply: u64,
    /// `Drop` verdicts.
    pub drop: u64,
    /// `Control` verdicts.
    pub control: u64,
    /// `Drop` verdicts by reason name.
    pub drops: BTreeMap<&'static str, u64>,
    /// Per-gateway figures.
    pub gateways: Vec<GatewayReport>,
    /// Flows created during the replay.
    pub flows_created: u64,
    /// The pipeline's counters, all workers added up.
    pub counters: Counters,
    /// Frames processed by each worker.
    pub per_worker: Vec<u64>,
}

/// A pipeline context for `cfg` as replay runs it with one worker ([`worker_context`] 0 of 1).
pub fn context(cfg: &Config) -> Result<Context, ReplayError> {
    worker_context(cfg, 0, 1)
}

/// The pipeline context of worker `worker` of `workers` as replay runs it: its own flow table
/// ([`build::table_config`]); links numbered as [`build::links`]; placeholder MACs; gateway
/// placeholders seeded into the neighbour table.
pub fn worker_context(cfg: &Config, worker: u16, workers: u16) -> Result<Context, ReplayError> {
    let links = build::links(cfg);
    let table = FlowTable::new(build::table_config(cfg, worker, workers)?)?;
    let port_mac = |iface: &str| {
        cfg.ports
            .iter()
            .position(|p| p.interface == iface)
            .map(placeholder_port_mac)
    };
    let mut pc = build::pipeline_config(cfg, &links, &port_mac)?;
    // Ports sharing an interface without a MAC each get their own index's placeholder.
    for (i, (spec, p)) in pc.ports.iter_mut().zip(&cfg.ports).enumerate() {
        if p.mac.is_none() {
            spec.mac = placeholder_port_mac(i);
        }
    }
    let seeds: Vec<(Ipv4Addr, u8)> = pc
        .gateways
        .iter()
        .filter(|g| g.mac.is_none())
        .map(|g| (g.next_hop, g.port.0))
        .collect();
    let mut ctx = Context::new(pc, table)?;
    for (via, port) in seeds {
        ctx.neighbors
            .learn(via, placeholder_gateway_mac(via), port, Time::ZERO);
    }
    Ok(ctx)
}

fn port_index(cfg: &Config, name: &str) -> Result<usize, ReplayError> {
    cfg.ports
        .iter()
        .position(|p| p.name == name)
        .ok_or_else(|| {
            let known: Vec<&str> = cfg.ports.iter().map(|p| p.name.as_str()).collect();
            ReplayError::Usage(format!(
                "unknown port {name:?} (ports: {})",
                known.join(", ")
            ))
        })
}

/// Replays the captures of `opts` through a pipeline built from `cfg`.
pub fn replay(cfg: &Config, opts: &Options) -> Result<Report, ReplayError> {
    let mut files = Vec::with_capacity(opts.inputs.len());
    for input in &opts.inputs {
        let port = port_index(cfg, &input.port)?;
        files.push((port, read_capture(&input.path)?));
    }
    replay_frames(cfg, files, opts)
}

/// The gateway events of `opts` as `(packet number, down, gateway)`, in packet order.
fn gateway_events(
    cfg: &Config,
    opts: &Options,
) -> Result<Vec<(usize, bool, GatewayId)>, ReplayError> {
    let mut events = Vec::new();
    for (list, down) in [(&opts.down, true), (&opts.up, false)] {
        for e in list {
            let g = cfg
                .gateway_index(&e.gateway)
                .and_then(|i| u8::try_from(i).ok())
                .ok_or_else(|| ReplayError::Usage(format!("unknown gateway {:?}", e.gateway)))?;
            events.push((e.packet, down, GatewayId(g)));
        }
    }
    events.sort_by_key(|e| e.0);
    Ok(events)
}

/// Every frame as `(capture time, file, index in file)`, merged by capture time; stable, so ties
/// keep the input order, then file order.
fn capture_order(files: &[(usize, Vec<CapFrame>)]) -> Vec<(u64, usize, usize)> {
    let mut order: Vec<(u64, usize, usize)> = files
        .iter()
        .enumerate()
        .flat_map(|(f, (_, frames))| {
            frames
                .iter()
                .enumerate()
                .map(move |(i, fr)| (fr.ts_ns, f, i))
        })
        .collect();
    order.sort_by_key(|&(ts, f, i)| (ts, f, i));
    order
}

/// Replays frames already read: one `(in-port index, frames)` per capture.
pub fn replay_frames(
    cfg: &Config,
    files: Vec<(usize, Vec<CapFrame>)>,
    opts: &Options,
) -> Result<Report, ReplayError> {
    let links = build::links(cfg);
    let events = gateway_events(cfg, opts)?;
    let n_workers = opts.workers.max(1);
    let mut workers = Workers::new(cfg, n_workers)?;
    let file_link: Vec<u8> = files
        .iter()
        .map(|(port, _)| {
            links
                .iter()
                .position(|l| *l == cfg.ports[*port].interface)
                .unwrap_or(0) as u8
        })
        .collect();
    let order = capture_order(&files);
    let owners = workers.owners(&order, &files, &file_link);
    let mut report = Report {
        ports: cfg.ports.iter().map(|p| p.name.clone()).collect(),
        outputs: vec![Vec::new(); cfg.ports.len()],
        frames: order.len() as u64,
        truncated: 0,
        forward: 0,
        reply: 0,
        drop: 0,
        control: 0,
        drops: BTreeMap::new(),
        gateways: Vec::new(),
        flows_created: 0,
        counters: sum_counters(&workers.ctxs)?,
        per_worker: vec![0; usize::from(n_workers)],
    };
    let first_ts = order.first().map_or(0, |o| o.0);
    let mut last_ms = 0u64;
    let mut expired = Vec::new();
    let batch = opts.batch.max(1);
    let mut b = Batch::new(batch);
    let mut next_event = 0;
    let mut n = 0;
    while n < order.len() {
        // The clock and the gateway events of the run's first frame.
        let ms = if opts.time_from_capture {
            (order[n].0.saturating_sub(first_ts) / 1_000_000).max(last_ms)
        } else {
            n as u64
        };
        last_ms = ms;
        let now = Time::from_millis(ms);
        while let Some(&(at, down, g)) = events.get(next_event) {
            if at > n + 1 {
                break;
            }
            workers.gateway_event(g, down, now, cfg);
            next_event += 1;
        }
        workers.expire(now, &mut expired);
        // The run: up to `batch` frames of one worker, ending before the frame the next event
        // precedes.
        let mut end = (n + batch).min(order.len());
        if let Some(&(at, _, _)) = events.get(next_event) {
            end = end.min(at.saturating_sub(1).max(n + 1));
        }
        let (end, w) = run_end(&owners, n, end);
        last_ms = b.fill(
            (&order, n..end),
            &files,
            &file_link,
            &mut report,
            (first_ts, last_ms, opts.time_from_capture),
        );
        let Some(ctx) = workers.ctxs.get_mut(usize::from(w)) else {
            return Err(ReplayError::Usage(format!(
                "steering chose worker {w} of {n_workers}"
            )));
        };
        b.run(ctx, now);
        b.emit(&order, &files, &mut report);
        report.per_worker[usize::from(w)] += b.taken() as u64;
        workers.share_neighbors(usize::from(w), &b, cfg, now);
        n = end;
        if let Some(p) = &opts.progress {
            (p.0)(n as u64, order.len() as u64);
        }
    }
    let ctxs = &workers.ctxs;
    let names: Vec<String> = match ctxs.first() {
        Some(c) => c.table.gateways().iter().map(|g| g.name.clone()).collect(),
        None => Vec::new(),
    };
    report.gateways = names
        .into_iter()
        .enumerate()
        .map(|(g, name)| GatewayReport {
            name,
            flows: ctxs
                .iter()
                .map(|c| c.table.flows_on(GatewayId(g as u8)))
                .sum(),
            out: sum_pairs(ctxs.iter().map(|c| c.counters.gw_out.get(g))),
            back: sum_pairs(ctxs.iter().map(|c| c.counters.gw_in.get(g))),
        })
        .collect();
    report.flows_created = ctxs.iter().map(|c| c.table.stats().created).sum();
    report.counters = sum_counters(ctxs)?;
    Ok(report)
}

fn sum_pairs<'a>(it: impl Iterator<Item = Option<&'a (u64, u64)>>) -> (u64, u64) {
    it.flatten().fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
}

/// The pipeline counters of every worker, added up as the daemon's status does.
fn sum_counters(ctxs: &[Context]) -> Result<Counters, ReplayError> {
    let Some((first, rest)) = ctxs.split_first() else {
        return Err(ReplayError::Usage("no worker".into()));
    };
    let mut t = first.counters.clone();
    let add = |a: &mut Vec<u64>, b: &[u64]| {
        for (x, y) in a.iter_mut().zip(b) {
            *x += y;
        }
    };
    for c in rest {
        let o = &c.counters;
        t.drops.merge(&o.drops);
        add(&mut t.rx_frames, &o.rx_frames);
        add(&mut t.tx_frames, &o.tx_frames);
        add(&mut t.tx_bytes, &o.tx_bytes);
        for (x, y) in t.gw_out.iter_mut().zip(&o.gw_out) {
            *x = (x.0 + y.0, x.1 + y.1);
        }
        for (x, y) in t.gw_in.iter_mut().zip(&o.gw_in) {
            *x = (x.0 + y.0, x.1 + y.1);
        }
        t.replies += o.replies;
        t.icmp_errors += o.icmp_errors;
        t.rejects += o.rejects;
        t.arp_requests += o.arp_requests;
        t.neighbor_changes += o.neighbor_changes;
        t.learned_unshared += o.learned_unshared;
        t.control += o.control;
        t.fast_path += o.fast_path;
    }
    Ok(t)
}

fn count(r: &mut Report, v: Verdict) {
    match v {
        Verdict::Forward { .. } => r.forward += 1,
        Verdict::Reply { .. } => r.reply += 1,
        Verdict::Drop(reason) => {
            r.drop += 1;
            *r.drops.entry(reason.name()).or_default() += 1;
        }
        Verdict::Control(_) => r.control += 1,
    }
}

impl Report {
    /// Writes `dir/<port>.pcap` for every port (creating `dir`); returns the files written.
    pub fn write(&self, dir: &Path) -> Result<Vec<PathBuf>, ReplayError> {
        std::fs::create_dir_all(dir).map_err(|e| ReplayError::Write {
            path: dir.to_path_buf(),
            why: e.to_string(),
        })?;
        let mut written = Vec::new();
        for (name, frames) in self.ports.iter().zip(&self.outputs) {
            let path = dir.join(format!("{name}.pcap"));
            let bytes = pcap_bytes(frames.iter().map(|f| (f.ts_ns, f.data.as_slice())));
            std::fs::write(&path, bytes).map_err(|e| ReplayError::Write {
                path: path.clone(),
                why: e.to_string(),
            })?;
            written.push(path);
        }
        Ok(written)
    }

    /// The frames leaving port `name`.
    pub fn output(&self, name: &str) -> Option<&[OutFrame]> {
        let i = self.ports.iter().position(|p| p == name)?;
        self.outputs.get(i).map(Vec::as_slice)
    }

    /// A human-readable summary.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "frames: {} read, {} truncated by the capture's snaplen (not processed)",
            self.frames, self.truncated
        );
        let _ = writeln!(
            s,
            "verdicts: forward {}, reply {}, drop {}, control {}",
            self.forward, self.reply, self.drop, self.control
        );
        let _ = writeln!(
            s,
            "fast path: {} of the forwarded frames (established flows; only `--batch` uses it)",
            self.counters.fast_path
        );
        let _ = writeln!(s, "flows created: {}", self.flows_created);
        let per: Vec<String> = self.per_worker.iter().map(u64::to_string).collect();
        let _ = writeln!(
            s,
            "workers: {} (frames processed by each: {})",
            self.per_worker.len(),
            per.join(", ")
        );
        let _ = writeln!(
            s,
            "{:<16} {:>8} {:>10} {:>12} {:>10} {:>12}",
            "gateway", "flows", "out pkts", "out bytes", "in pkts", "in bytes"
        );
        for g in &self.gateways {
            let _ = writeln!(
                s,
                "{:<16} {:>8} {:>10} {:>12} {:>10} {:>12}",
                g.name, g.flows, g.out.0, g.out.1, g.back.0, g.back.1
            );
        }
        let counted: Vec<_> = self.counters.drops.iter().filter(|(_, n)| *n > 0).collect();
        if counted.is_empty() {
            let _ = writeln!(s, "drops: none");
        } else {
            let _ = writeln!(
                s,
                "drops by reason (the pipeline's counters; they include packets answered with an ICMP error or a RST):"
            );
            for (r, n) in counted {
                let _ = writeln!(s, "  {:<28} {n}", r.name());
            }
        }
        let _ = writeln!(
            s,
            "generated: {} replies, {} ICMP errors, {} rejects, {} ARP requests",
            self.counters.replies,
            self.counters.icmp_errors,
            self.counters.rejects,
            self.counters.arp_requests
        );
        let _ = write!(s, "out:");
        for (name, frames) in self.ports.iter().zip(&self.outputs) {
            let _ = write!(s, " {name} {}", frames.len());
        }
        s.push('\n');
        s
    }
}
