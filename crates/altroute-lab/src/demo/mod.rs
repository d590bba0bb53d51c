//! The `altroute demo` scenario, and the pieces the lab integration tests share with it: a
//! netns lab, the whoami server, the router as a child process (`altroute run --netns`) with its
//! JSON status file, real TCP connections from the LAN's kernel stack, a black-holed ISP, its
//! recovery, and a teardown that always happens (also on error or Ctrl-C).
//!
//! Output is one line per step or event, numbered `[n/6]`, written to any [`Write`].

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use serde::Deserialize;

use crate::tool::Tally;
use crate::{Background, Forwarder, Isp, Lab, LabError};

/// `examples/lab-dual-wan-failover.yaml`, embedded so the demo runs from any directory.
pub const FAILOVER_YAML: &str = include_str!("../../../../examples/lab-dual-wan-failover.yaml");
/// `examples/lab-weighted-4to1.yaml`, embedded.
pub const WEIGHTED_YAML: &str = include_str!("../../../../examples/lab-weighted-4to1.yaml");

/// The whoami server's TCP address in the lab's `inet` namespace.
pub const SERVER_TCP: &str = "203.0.113.10:8000";
/// The whoami server's UDP address.
pub const SERVER_UDP: &str = "203.0.113.10:7000";

/// Demo and router-process failures.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// A lab step failed.
    #[error(transparent)]
    Lab(#[from] LabError),
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Cause.
        source: std::io::Error,
    },
    /// Something the demo needs is missing (root, a tool).
    #[error("cannot run: {0}")]
    Prerequisite(String),
    /// The configuration file is unusable.
    #[error("{0}")]
    Config(String),
    /// The router exited on its own.
    #[error("the router exited ({status}); last lines of its log {log}:\n{tail}")]
    RouterExited {
        /// Exit status.
        status: String,
        /// Log file.
        log: String,
        /// Its last lines.
        tail: String,
    },
    /// A step did not reach its goal in time.
    #[error("{0}")]
    Step(String),
    /// SIGINT/SIGTERM arrived.
    #[error("interrupted")]
    Interrupted,
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> DemoError {
    let what = what.into();
    move |source| DemoError::Io { what, source }
}

/// One gateway in the router's status file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct GatewayStatus {
    /// Gateway name.
    pub name: String,
    /// `up`, `down`, …
    pub state: String,
    /// Router time (ms since start) of the last state change.
    pub since_ms: u64,
    /// Why it is in this state.
    pub reason: String,
    /// Flows on this gateway.
    pub flows: u64,
    /// Packets sent out through it.
    pub out_packets: u64,
    /// Bytes sent out through it.
    pub out_bytes: u64,
    /// Packets received through it.
    pub in_packets: u64,
    /// Bytes received through it.
    pub in_bytes: u64,
}

/// The router's status file (`altroute run --status-file`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RouterStatus {
    /// Router time of this snapshot (ms since start).
    pub time_ms: u64,
    /// Gateways in configuration order.
    pub gateways: Vec<GatewayStatus>,
    /// Flows in all tables.
    pub flows: u64,
    /// Drop counters by reason (only non-zero ones).
    pub drops: BTreeMap<String, u64>,
}

impl RouterStatus {
    /// Parses a status document.
    pub fn parse(text: &str) -> Option<RouterStatus> {
        serde_json::from_str(text).ok()
    }

    /// The gateway called `name`.
    pub fn gateway(&self, name: &str) -> Option<&GatewayStatus> {
        self.gateways.iter().find(|g| g.name == name)
    }

    /// True when every gateway is up.
    pub fn all_up(&self) -> bool {
        !self.gateways.is_empty() && self.gateways.iter().all(|g| g.state == "up")
    }

    /// One line: `isp1 up flows 12 out 340 pkts in 320 pkts | … | drops: x 3`.
    pub fn summary(&self) -> String {
        let mut parts: Vec<String> = self
            .gateways
            .iter()
            .map(|g| {
                format!(
                    "{} {} flows {} out {} pkts in {} pkts",
                    g.name, g.state, g.flows, g.out_packets, g.in_packets
                )
            })
            .collect();
        let drops: Vec<String> = self.drops.iter().map(|(k, v)| format!("{k} {v}")).collect();
        parts.push(format!(
            "drops: {}",
            if drops.is_empty() {
                "none".to_string()
            } else {
                drops.join(", ")
            }
        ));
        parts.join(" | ")
    }
}

/// The router as a child process: `altroute run --config C --netns NS --status-file F`, its
/// output in a log file. Killed (by its own pid) when dropped; [`RouterProcess::stop`] asks it
/// to stop with SIGTERM and returns its exit status.
#[derive(Debug)]
pub struct RouterProcess {
    child: Child,
    status_file: PathBuf,
    log_file: PathBuf,
    exited: Option<ExitStatus>,
    signalled: bool,
}

impl RouterProcess {
    /// Starts `bin run` in namespace `netns`, with the status file and log in `dir`.
    pub fn start(
        bin: &Path,
        config: &Path,
        netns: &str,
        dir: &Path,
    ) -> Result<RouterProcess, DemoError> {
        let status_file = dir.join("status.json");
        let log_file = dir.join("router.log");
        let _ = std::fs::remove_file(&status_file);
        let log =
            File::create(&log_file).map_err(io(format!("creating {}", log_file.display())))?;
        let log2 = log
            .try_clone()
            .map_err(io(format!("opening {}", log_file.display())))?;
        let child = Command::new(bin)
            .arg("run")
            .arg("--config")
            .arg(config)
            .args(["--netns", netns, "--status-file"])
            .arg(&status_file)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(io(format!("starting {} run", bin.display())))?;
        Ok(RouterProcess {
            child,
            status_file,
            log_file,
            exited: None,
            signalled: false,
        })
    }

    /// The router's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The log file (stdout and stderr).
    pub fn log_file(&self) -> &Path {
        &self.log_file
    }

    /// The status file.
    pub fn status_file(&self) -> &Path {
        &self.status_file
    }

    /// The last status written, if any.
    pub fn status(&self) -> Option<RouterStatus> {
        std::fs::read_to_string(&self.status_file)
            .ok()
            .and_then(|t| RouterStatus::parse(&t))
    }

    /// Estimated wall-clock time of router time 0 (from the status file's mtime and `time_ms`).
    pub fn epoch(&self) -> Option<SystemTime> {
        let st = self.status()?;
        let mtime = std::fs::metadata(&self.status_file).ok()?.modified().ok()?;
        mtime.checked_sub(Duration::from_millis(st.time_ms))
    }

    /// The last `n` lines of the log.
    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log_file).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines
            .get(lines.len().saturating_sub(n)..)
            .unwrap_or_default()
            .join("\n")
    }

    /// `Ok` while the router runs; its exit as an error otherwise.
    pub fn check_running(&mut self) -> Result<(), DemoError> {
        if self.exited.is_none() {
            match self.child.try_wait() {
                Ok(None) => return Ok(()),
                Ok(Some(s)) => self.exited = Some(s),
                Err(e) => return Err(io("waiting for the router")(e)),
            }
        }
        Err(DemoError::RouterExited {
            status: self.exited.map_or("?".into(), |s| s.to_string()),
            log: self.log_file.display().to_string(),
            tail: self.log_tail(15),
        })
    }

    /// Waits until a status file reports every gateway up.
    pub fn wait_ready(
        &mut self,
        timeout: Duration,
        stop: &AtomicBool,
    ) -> Result<RouterStatus, DemoError> {
        let deadline = Instant::now() + timeout;
        loop {
            self.check_running()?;
            if let Some(s) = self.status().filter(RouterStatus::all_up) {
                return Ok(s);
            }
            if Instant::now() >= deadline {
                return Err(DemoError::Step(format!(
                    "the router did not report every gateway up within {timeout:?} (status: {}); log {}:\n{}",
                    self.status()
                        .map_or("no status file".into(), |s| s.summary()),
                    self.log_file.display(),
                    self.log_tail(15)
                )));
            }
            nap(Duration::from_millis(50), stop)?;
        }
    }

    /// Waits for a status written after router time `after_ms`.
    pub fn fresh_status(
        &mut self,
        after_ms: u64,
        timeout: Duration,
        stop: &AtomicBool,
    ) -> Result<RouterStatus, DemoError> {
        let deadline = Instant::now() + timeout;
        loop {
            self.check_running()?;
            if let Some(s) = self.status().filter(|s| s.time_ms > after_ms) {
                return Ok(s);
            }
            if Instant::now() >= deadline {
                return Err(DemoError::Step(format!(
                    "no new router status within {timeout:?}"
                )));
            }
            nap(Duration::from_millis(50), stop)?;
        }
    }

    /// True when [`RouterProcess::stop`] sent SIGTERM (false: it had exited before).
    pub fn was_signalled(&self) -> bool {
        self.signalled
    }

    /// Sends SIGTERM and waits up to `timeout` for the exit (then SIGKILL). Returns the exit
    /// status of the SIGTERM'd process (or of its earlier exit: see [`RouterProcess::was_signalled`]).
    pub fn stop(&mut self, timeout: Duration) -> Result<ExitStatus, DemoError> {
        if let Some(s) = self.exited {
            return Ok(s);
        }
        if let Ok(Some(s)) = self.child.try_wait() {
            self.exited = Some(s);
            return Ok(s);
        }
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .map_err(io("running kill -TERM"))?;
        if !sent.success() {
            return Err(DemoError::Step(format!("kill -TERM {pid} failed: {sent}")));
        }
        self.signalled = true;
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(s)) => {
                    self.exited = Some(s);
                    return Ok(s);
                }
                Ok(None) if Instant::now() >= deadline => {
                    let _ = self.child.kill();
                    let s = self.child.wait().map_err(io("waiting for the router"))?;
                    self.exited = Some(s);
                    return Err(DemoError::Step(format!(
                        "the router did not exit within {timeout:?} of SIGTERM and was killed"
                    )));
                }
                Ok(None) => thread::sleep(Duration::from_millis(20)),
                Err(e) => return Err(io("waiting for the router")(e)),
            }
        }
    }
}

impl Drop for RouterProcess {
    fn drop(&mut self) {
        if self.exited.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Sleeps `d` in small slices; `Err(Interrupted)` as soon as `stop` is set.
pub fn nap(d: Duration, stop: &AtomicBool) -> Result<(), DemoError> {
    let end = Instant::now() + d;
    loop {
        if stop.load(Ordering::Relaxed) {
            return Err(DemoError::Interrupted);
        }
        let now = Instant::now();
        if now >= end {
            return Ok(());
        }
        thread::sleep((end - now).min(Duration::from_millis(25)));
    }
}

/// True when the effective user is root (from `/proc/self/status`).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// `Ok` when root and the tools `(program, version flag)` run; `Err(reason)` otherwise.
pub fn prerequisites(tools: &[(&str, &str)]) -> Result<(), String> {
    if !is_root() {
        return Err("not root (network namespaces need CAP_SYS_ADMIN)".into());
    }
    for (t, arg) in tools {
        let ok = Command::new(t)
            .arg(arg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return Err(format!("`{t}` is missing or does not run"));
        }
    }
    Ok(())
}

/// Runs the whoami client in the lab's LAN: `n` TCP connections to `dest`, `parallel` at a time.
pub fn tcp_clients(
    lab: &Lab,
    bin: &Path,
    dest: &str,
    n: usize,
    parallel: usize,
    timeout_ms: u64,
) -> Result<Tally, DemoError> {
    let bin = bin.to_string_lossy();
    let (n, p, t) = (n.to_string(), parallel.to_string(), timeout_ms.to_string());
    let limit = Duration::from_secs(30) + Duration::from_millis(timeout_ms.saturating_mul(4));
    let out = lab.exec(
        "lan",
        &[
            &bin,
            "lab-tool",
            "client",
            "--tcp",
            dest,
            "-n",
            &n,
            "--parallel",
            &p,
            "--timeout-ms",
            &t,
        ],
        limit,
    )?;
    let text = String::from_utf8_lossy(&out.stdout);
    Tally::parse(&text).ok_or_else(|| {
        DemoError::Step(format!(
            "the lab client printed no tally ({}): {text} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    })
}

/// Starts the whoami server in `inet` and waits until it answers there.
pub fn start_whoami(lab: &Lab, bin: &Path, stop: &AtomicBool) -> Result<Background, DemoError> {
    let b = bin.to_string_lossy();
    let server = lab.spawn(
        "inet",
        &[
            &b, "lab-tool", "serve", "--tcp", SERVER_TCP, "--udp", SERVER_UDP,
        ],
    )?;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let out = lab.exec(
            "inet",
            &[
                &b, "lab-tool", "client", "--tcp", SERVER_TCP, "-n", "1", "--min-ok", "1",
            ],
            Duration::from_secs(10),
        )?;
        if out.status.success() {
            return Ok(server);
        }
        if Instant::now() >= deadline {
            return Err(DemoError::Step(
                "the whoami server did not start within 15 s".into(),
            ));
        }
        nap(Duration::from_millis(50), stop)?;
    }
}

/// Gateway name ↔ NAT address (what the server sees), from the configuration.
#[derive(Debug, Clone)]
pub struct GatewayAddrs(pub Vec<(String, String)>);

impl GatewayAddrs {
    /// From a configuration: each gateway's NAT address.
    pub fn from_config(cfg: &DemoConfig) -> GatewayAddrs {
        GatewayAddrs(
            cfg.gateways
                .iter()
                .map(|g| (g.name.clone(), g.nat_address.clone()))
                .collect(),
        )
    }

    /// The gateway whose address the server saw.
    pub fn name_of(&self, ip: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(_, a)| a == ip)
            .map(|(n, _)| n.as_str())
    }

    /// The NAT address of a gateway.
    pub fn addr_of(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| a.as_str())
    }

    /// Connections through `gateway` in a tally.
    pub fn count(&self, t: &Tally, gateway: &str) -> usize {
        self.addr_of(gateway).map_or(0, |a| t.count(a))
    }

    /// The split as lines: gateway, address, count, percent, a bar; then failures and strangers.
    pub fn render_split(&self, t: &Tally) -> Vec<String> {
        let total = t.ok().max(1);
        let mut lines = Vec::new();
        for (name, addr) in &self.0 {
            let n = t.count(addr);
            let pct = n as f64 * 100.0 / total as f64;
            let bar = "#".repeat(((pct / 2.5).round() as usize).min(40));
            lines.push(format!("{name:<6} {addr:<15} {n:>5}  {pct:5.1} %  {bar}"));
        }
        for (ip, n) in &t.seen {
            if self.name_of(ip).is_none() {
                lines.push(format!("?      {ip:<15} {n:>5}  (not a gateway address)"));
            }
        }
        if t.failed > 0 {
            let kinds: Vec<String> = t.errors.iter().map(|(k, n)| format!("{k} {n}")).collect();
            lines.push(format!("failed {:>21}  ({})", t.failed, kinds.join(", ")));
        }
        lines
    }
}

/// Which embedded configuration, or a file.
#[derive(Debug, Clone)]
pub enum ConfigSource {
    /// An embedded example: (file name, YAML text).
    Embedded(&'static str, &'static str),
    /// A file on disk.
    File(PathBuf),
}

impl ConfigSource {
    /// `failover` / `weighted` name the embedded examples; anything else is a path.
    pub fn from_arg(arg: Option<&str>) -> ConfigSource {
        match arg {
            None | Some("failover") => {
                ConfigSource::Embedded("lab-dual-wan-failover.yaml", FAILOVER_YAML)
            }
            Some("weighted") => ConfigSource::Embedded("lab-weighted-4to1.yaml", WEIGHTED_YAML),
            Some(p) => ConfigSource::File(PathBuf::from(p)),
        }
    }
}

/// What the demo needs to know of the router's configuration. The daemon reads the file (with
/// [`DemoOptions::load_config`]): this crate does not parse the daemon's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoConfig {
    /// The policy mode as shown: `Failover` or `LoadBalance`.
    pub mode: String,
    /// The gateways, in configuration order.
    pub gateways: Vec<DemoGateway>,
}

/// One gateway of a [`DemoConfig`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoGateway {
    /// Gateway name.
    pub name: String,
    /// Its NAT source address (what the server sees), empty when it has none.
    pub nat_address: String,
    /// Its place in the policy as shown: `tier 0` (failover) or `weight 4` (load balance).
    pub rank: String,
    /// Clean probe rounds before a down gateway is up again.
    pub up_rounds: u32,
    /// How long a recovered gateway must stay up before flows fail back to it, in ms.
    pub failback_stable_ms: u32,
}

/// What the demo runs.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// The `altroute` binary (children run `BIN run` and `BIN lab-tool`).
    pub bin: PathBuf,
    /// The router configuration.
    pub config: ConfigSource,
    /// Reads a router configuration file into what the demo needs (an error is the reason).
    pub load_config: fn(&Path) -> Result<DemoConfig, String>,
    /// Lab namespace prefix.
    pub prefix: String,
    /// Connections in the first traffic step.
    pub connections: usize,
    /// Directory for the config copy, status file and router log (created, removed at the end).
    pub work_dir: PathBuf,
    /// Give up on failover / failback after this long.
    pub step_timeout: Duration,
}

/// What the demo measured.
#[derive(Debug, Clone, Default)]
pub struct DemoSummary {
    /// Step 2: the split of the first connections.
    pub initial: Tally,
    /// Seconds from the black hole to new connections flowing again through another gateway.
    pub failover_s: Option<f64>,
    /// Seconds from the black hole to the router marking the gateway down (from its status).
    pub detect_s: Option<f64>,
    /// Seconds from the restore to new connections using the recovered gateway again.
    pub failback_s: Option<f64>,
    /// The split after failback.
    pub after: Tally,
    /// The router's exit after SIGTERM (`Some(true)` = exit 0).
    pub router_exit_ok: Option<bool>,
    /// Namespaces deleted at teardown.
    pub deleted: Vec<String>,
}

/// Everything the demo holds; dropped in field order… but torn down explicitly by `teardown`.
struct Held {
    router: Option<RouterProcess>,
    server: Option<Background>,
    lab: Option<Lab>,
}

/// A printer of numbered steps.
struct Out<'a> {
    w: &'a mut dyn Write,
    start: Instant,
}

impl Out<'_> {
    fn line(&mut self, step: u8, text: &str) {
        let t = self.start.elapsed().as_secs_f64();
        let _ = writeln!(self.w, "[{step}/6] {t:5.1}s  {text}");
        let _ = self.w.flush();
    }
    fn more(&mut self, text: &str) {
        let _ = writeln!(self.w, "              {text}");
        let _ = self.w.flush();
    }
}

/// Runs the demo: lab up, router, traffic, split, black hole, failover, restore, failback, and
/// teardown (always, also after an error or when `stop` is set). Progress goes to `w`.
pub fn run(
    opts: &DemoOptions,
    stop: &AtomicBool,
    w: &mut dyn Write,
) -> Result<DemoSummary, DemoError> {
    let mut out = Out {
        w,
        start: Instant::now(),
    };
    prerequisites(&[("ip", "-V"), ("nft", "--version")]).map_err(DemoError::Prerequisite)?;
    std::fs::create_dir_all(&opts.work_dir)
        .map_err(io(format!("creating {}", opts.work_dir.display())))?;
    let mut held = Held {
        router: None,
        server: None,
        lab: None,
    };
    let mut summary = DemoSummary::default();
    let mut result = scenario(opts, stop, &mut out, &mut held, &mut summary);
    if result.is_err() && stop.load(Ordering::Relaxed) {
        // Ctrl-C in a terminal reaches the whole process group: a lab command killed by it
        // fails with its own error, but the cause is the interrupt.
        result = Err(DemoError::Interrupted);
    }
    if let Err(e) = &result {
        out.line(6, &format!("stopping early: {e}"));
    }
    let down = teardown(opts, &mut out, held, &mut summary);
    let clean = down.is_ok() && matches!(result, Ok(()) | Err(DemoError::Interrupted));
    if clean {
        let _ = std::fs::remove_dir_all(&opts.work_dir);
    } else {
        out.line(
            6,
            &format!(
                "kept {} (router log, status, config) for a look",
                opts.work_dir.display()
            ),
        );
    }
    result?;
    down?;
    out.line(
        6,
        &format!("done in {:.1} s", out.start.elapsed().as_secs_f64()),
    );
    Ok(summary)
}

fn teardown(
    opts: &DemoOptions,
    out: &mut Out<'_>,
    mut held: Held,
    summary: &mut DemoSummary,
) -> Result<(), DemoError> {
    let mut first_err = None;
    if let Some(mut r) = held.router.take() {
        match r.stop(Duration::from_secs(10)) {
            Ok(s) => {
                summary.router_exit_ok = Some(s.success());
                let how = if r.was_signalled() {
                    "router stopped with SIGTERM"
                } else {
                    "router had already exited"
                };
                out.line(6, &format!("{how}: {s}"));
                if !s.success() {
                    out.more(&r.log_tail(10));
                    first_err.get_or_insert(DemoError::Step(format!("{how}: {s}")));
                }
            }
            Err(e) => {
                summary.router_exit_ok = Some(false);
                out.line(6, &format!("router: {e}"));
                first_err.get_or_insert(e);
            }
        }
    }
    drop(held.server.take());
    if let Some(lab) = held.lab.take() {
        match lab.down() {
            Ok(gone) => {
                out.line(
                    6,
                    &format!("lab {} deleted: {}", opts.prefix, gone.join(" ")),
                );
                summary.deleted = gone;
            }
            Err(e) => {
                out.line(
                    6,
                    &format!(
                        "lab teardown failed: {e}; run `altroute lab down --prefix {}`",
                        opts.prefix
                    ),
                );
                first_err.get_or_insert(e.into());
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Between two rounds of test connections in a step that waits for the router: fails the step
/// (`what` within the timeout of `since_what`, with the router's status) once the step started at
/// `step` has run past `opts.step_timeout`, else sleeps out the rest of a 250 ms round that began
/// at `round`.
fn next_round(
    step: Instant,
    round: Instant,
    what: &str,
    since_what: &str,
    opts: &DemoOptions,
    router: &RouterProcess,
    stop: &AtomicBool,
) -> Result<(), DemoError> {
    if step.elapsed() > opts.step_timeout {
        return Err(DemoError::Step(format!(
            "{what} within {:?} of {since_what} (router: {})",
            opts.step_timeout,
            router.status().map_or("no status".into(), |s| s.summary())
        )));
    }
    nap(
        Duration::from_millis(250).saturating_sub(round.elapsed()),
        stop,
    )
}

fn scenario(
    opts: &DemoOptions,
    stop: &AtomicBool,
    out: &mut Out<'_>,
    held: &mut Held,
    summary: &mut DemoSummary,
) -> Result<(), DemoError> {
    // 1. Lab, server, router.
    let (cfg_path, cfg_name) = match &opts.config {
        ConfigSource::Embedded(name, text) => {
            let p = opts.work_dir.join(name);
            std::fs::write(&p, text).map_err(io(format!("writing {}", p.display())))?;
            (p, format!("{name} (embedded copy of examples/{name})"))
        }
        ConfigSource::File(p) => (p.clone(), p.display().to_string()),
    };
    let cfg = (opts.load_config)(&cfg_path).map_err(DemoError::Config)?;
    let gws = GatewayAddrs::from_config(&cfg);
    let names: Vec<String> = cfg.gateways.iter().map(|g| g.name.clone()).collect();
    let describe: Vec<String> = cfg
        .gateways
        .iter()
        .map(|g| format!("{} {}", g.name, g.rank))
        .collect();
    out.line(
        1,
        &format!(
            "config {cfg_name}: {} mode, {}",
            cfg.mode,
            describe.join(", ")
        ),
    );
    let lab_start = Instant::now();
    let lab = held.lab.insert(Lab::up(&opts.prefix, Forwarder::Router)?);
    out.line(
        1,
        &format!(
            "lab up in {:.1} s: namespaces {}",
            lab_start.elapsed().as_secs_f64(),
            crate::NAMESPACES
                .map(|n| format!("{}{n}", opts.prefix))
                .join(" ")
        ),
    );
    held.server = Some(start_whoami(lab, &opts.bin, stop)?);
    out.line(
        1,
        &format!(
            "whoami server in {}inet on tcp {SERVER_TCP}, udp {SERVER_UDP}",
            opts.prefix
        ),
    );
    let router = held.router.insert(RouterProcess::start(
        &opts.bin,
        &cfg_path,
        &lab.ns("rtr"),
        &opts.work_dir,
    )?);
    out.line(
        1,
        &format!(
            "router started (pid {}): altroute run --config {} --netns {}rtr --status-file {}",
            router.pid(),
            cfg_path.display(),
            opts.prefix,
            router.status_file().display()
        ),
    );
    let ready = Instant::now();
    let st = router.wait_ready(Duration::from_secs(20), stop)?;
    out.line(
        1,
        &format!(
            "router ready after {:.1} s: {}",
            ready.elapsed().as_secs_f64(),
            st.summary()
        ),
    );

    // 2. Traffic.
    let t0 = Instant::now();
    let before = router.status().map_or(0, |s| s.time_ms);
    let tally = tcp_clients(lab, &opts.bin, SERVER_TCP, opts.connections, 8, 2000)?;
    out.line(
        2,
        &format!(
            "{} TCP connections from {}lan (10.0.0.2) to {SERVER_TCP}: {} ok, {} failed in {:.1} s",
            opts.connections,
            opts.prefix,
            tally.ok(),
            tally.failed,
            t0.elapsed().as_secs_f64()
        ),
    );

    // 3. Split and router status.
    out.line(
        3,
        "split as the server saw it (source address of each connection):",
    );
    for l in gws.render_split(&tally) {
        out.more(&l);
    }
    // Workers report their counters every second: wait for a status that includes this traffic.
    let now_ms = router.status().map_or(before, |s| s.time_ms);
    let st = router.fresh_status(now_ms + 1500, Duration::from_secs(6), stop)?;
    out.line(3, &format!("router status: {}", st.summary()));
    summary.initial = tally;

    // 4. Black hole on the first gateway.
    let primary = names.first().cloned().unwrap_or_else(|| "isp1".into());
    let others: Vec<String> = names.iter().skip(1).cloned().collect();
    let lab = held
        .lab
        .as_ref()
        .ok_or_else(|| DemoError::Step("lab vanished".into()))?;
    let router = held
        .router
        .as_mut()
        .ok_or_else(|| DemoError::Step("router vanished".into()))?;
    let epoch = router.epoch();
    lab.blackhole(Isp::One)?;
    let hole = Instant::now();
    let hole_router_ms = epoch
        .and_then(|e| SystemTime::now().duration_since(e).ok())
        .map(|d| d.as_millis() as u64);
    out.line(
        4,
        &format!(
            "black-holing {primary}: nft drop-all in {}isp1's forward chain (link stays up, ARP still answered); clients keep connecting, 4 every 250 ms",
            opts.prefix
        ),
    );
    let mut watch = Watch::new(router, &names);
    let mut saw_fail = false;
    let mut saw_other = false;
    let mut clean_batches = 0;
    let (mut attempts, mut failed) = (0usize, 0usize);
    loop {
        let batch_start = Instant::now();
        let t = tcp_clients(lab, &opts.bin, SERVER_TCP, 4, 4, 700)?;
        attempts += 4;
        failed += t.failed;
        let since = hole.elapsed().as_secs_f64();
        if t.failed > 0 && !saw_fail {
            saw_fail = true;
            out.line(
                4,
                &format!(
                    "+{since:.1} s  {} of 4 new connections failed ({})",
                    t.failed,
                    kinds(&t)
                ),
            );
        }
        let via_other: usize = others.iter().map(|g| gws.count(&t, g)).sum();
        if via_other > 0 && !saw_other {
            saw_other = true;
            out.line(
                4,
                &format!(
                    "+{since:.1} s  new connections via {} ({via_other} of 4)",
                    others
                        .iter()
                        .map(|g| format!("{g} {}", gws.addr_of(g).unwrap_or("?")))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
        for ev in watch.poll(router)? {
            if ev.gateway == primary && ev.to != "up" {
                if let (Some(h), true) = (hole_router_ms, ev.since_ms > 0) {
                    summary.detect_s = Some(ev.since_ms.saturating_sub(h) as f64 / 1000.0);
                }
            }
            out.line(4, &format!("+{since:.1} s  router: {}", ev.text));
        }
        let primary_down = watch.state(&primary).is_some_and(|s| s != "up");
        if t.failed == 0 && gws.count(&t, &primary) == 0 && t.ok() == 4 && primary_down {
            if clean_batches == 0 {
                summary.failover_s = Some(since);
            }
            clean_batches += 1;
        } else {
            clean_batches = 0;
            summary.failover_s = None;
        }
        if clean_batches >= 3 {
            break;
        }
        next_round(
            hole,
            batch_start,
            "no failover",
            "the black hole",
            opts,
            router,
            stop,
        )?;
    }
    out.line(
        4,
        &format!(
            "failover: new connections flow again (none via {primary}) {:.1} s after the black hole; router detection {}; {failed} of {attempts} attempts failed meanwhile",
            summary.failover_s.unwrap_or_default(),
            summary
                .detect_s
                .map_or("n/a".into(), |d| format!("{d:.1} s"))
        ),
    );

    // 5. Restore and fail back.
    lab.restore(Isp::One)?;
    let restored = Instant::now();
    let stable = cfg.gateways.first().map_or(0, |g| g.failback_stable_ms);
    out.line(
        5,
        &format!(
            "restored {primary} (nft table removed); failback waits for {} clean probe rounds + a stable window of {stable} ms",
            cfg.gateways.first().map_or(0, |g| g.up_rounds)
        ),
    );
    loop {
        let batch_start = Instant::now();
        let t = tcp_clients(lab, &opts.bin, SERVER_TCP, 4, 4, 700)?;
        let since = restored.elapsed().as_secs_f64();
        for ev in watch.poll(router)? {
            out.line(5, &format!("+{since:.1} s  router: {}", ev.text));
        }
        let via_primary = gws.count(&t, &primary);
        if via_primary > 0 {
            summary.failback_s = Some(since);
            out.line(
                5,
                &format!(
                    "+{since:.1} s  failback: new connections via {primary} {} again ({via_primary} of 4)",
                    gws.addr_of(&primary).unwrap_or("?")
                ),
            );
            break;
        }
        next_round(
            restored,
            batch_start,
            "no failback",
            "the restore",
            opts,
            router,
            stop,
        )?;
    }
    let n = (opts.connections / 2).max(20);
    let t = tcp_clients(lab, &opts.bin, SERVER_TCP, n, 8, 2000)?;
    out.line(5, &format!("split of {n} new connections after failback:"));
    for l in gws.render_split(&t) {
        out.more(&l);
    }
    let now_ms = router.status().map_or(0, |s| s.time_ms);
    let st = router.fresh_status(now_ms + 1500, Duration::from_secs(6), stop)?;
    out.line(5, &format!("router status: {}", st.summary()));
    summary.after = t;
    Ok(())
}

fn kinds(t: &Tally) -> String {
    t.errors
        .iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A gateway state change seen in the status file.
struct StateEvent {
    gateway: String,
    to: String,
    since_ms: u64,
    text: String,
}

/// Follows gateway states in the status file.
struct Watch {
    states: BTreeMap<String, String>,
}

impl Watch {
    fn new(router: &RouterProcess, names: &[String]) -> Watch {
        let st = router.status();
        Watch {
            states: names
                .iter()
                .map(|n| {
                    (
                        n.clone(),
                        st.as_ref()
                            .and_then(|s| s.gateway(n))
                            .map_or("?".into(), |g| g.state.clone()),
                    )
                })
                .collect(),
        }
    }

    fn state(&self, name: &str) -> Option<&str> {
        self.states.get(name).map(String::as_str)
    }

    fn poll(&mut self, router: &mut RouterProcess) -> Result<Vec<StateEvent>, DemoError> {
        router.check_running()?;
        let mut evs = Vec::new();
        let Some(st) = router.status() else {
            return Ok(evs);
        };
        for g in &st.gateways {
            let old = self.states.insert(g.name.clone(), g.state.clone());
            if old.as_deref() != Some(g.state.as_str()) {
                evs.push(StateEvent {
                    gateway: g.name.clone(),
                    to: g.state.clone(),
                    since_ms: g.since_ms,
                    text: format!(
                        "{} {} -> {} ({})",
                        g.name,
                        old.unwrap_or_else(|| "?".into()),
                        g.state,
                        g.reason
                    ),
                });
            }
        }
        Ok(evs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = r#"{
  "time_ms": 11237,
  "gateways": [
    {"name": "isp1", "state": "down", "since_ms": 5119, "reason": "target #0: 66% loss", "mac": "02:a7:00:01:00:02", "flows": 24, "out_packets": 88, "out_bytes": 4780, "in_packets": 81, "in_bytes": 4692, "rtt_ms": [null]},
    {"name": "isp2", "state": "up", "since_ms": 210, "reason": "start", "mac": null, "flows": 64, "out_packets": 273, "out_bytes": 14708, "in_packets": 254, "in_bytes": 14936, "rtt_ms": [4]}
  ],
  "flows": 88,
  "drops": {"l2_not_for_us": 13}
}
"#;

    #[test]
    fn status_parses_and_summarises() {
        let s = RouterStatus::parse(STATUS).unwrap();
        assert_eq!(s.time_ms, 11237);
        assert_eq!(s.gateway("isp1").unwrap().state, "down");
        assert!(!s.all_up());
        assert_eq!(
            s.summary(),
            "isp1 down flows 24 out 88 pkts in 81 pkts | isp2 up flows 64 out 273 pkts in 254 pkts | drops: l2_not_for_us 13"
        );
        assert!(RouterStatus::parse("{\"time_ms\": 1").is_none());
    }

    fn weighted() -> DemoConfig {
        let gw = |name: &str, addr: &str, weight: u32| DemoGateway {
            name: name.into(),
            nat_address: addr.into(),
            rank: format!("weight {weight}"),
            up_rounds: 3,
            failback_stable_ms: 1000,
        };
        DemoConfig {
            mode: "LoadBalance".into(),
            gateways: vec![gw("isp1", "192.0.2.1", 4), gw("isp2", "198.51.100.1", 1)],
        }
    }

    #[test]
    fn config_sources_and_addresses() {
        let g = GatewayAddrs::from_config(&weighted());
        assert_eq!(g.addr_of("isp1"), Some("192.0.2.1"));
        assert_eq!(g.name_of("198.51.100.1"), Some("isp2"));
        assert_eq!(g.addr_of("isp3"), None);
        assert!(matches!(
            ConfigSource::from_arg(None),
            ConfigSource::Embedded("lab-dual-wan-failover.yaml", FAILOVER_YAML)
        ));
        assert!(matches!(
            ConfigSource::from_arg(Some("weighted")),
            ConfigSource::Embedded("lab-weighted-4to1.yaml", _)
        ));
        assert!(matches!(
            ConfigSource::from_arg(Some("x.yaml")),
            ConfigSource::File(_)
        ));
    }

    #[test]
    fn split_lines() {
        let g = GatewayAddrs::from_config(&weighted());
        let mut t = Tally::default();
        t.seen.insert("192.0.2.1".into(), 160);
        t.seen.insert("198.51.100.1".into(), 40);
        t.seen.insert("10.9.9.9".into(), 1);
        t.failed = 2;
        t.errors.insert("timeout".into(), 2);
        let lines = g.render_split(&t);
        assert!(
            lines[0].starts_with("isp1   192.0.2.1         160   79.6 %  "),
            "{lines:?}"
        );
        assert!(lines[1].contains("   40   19.9 %"), "{lines:?}");
        assert!(lines[2].contains("not a gateway address"));
        assert!(lines[3].contains("(timeout 2)"));
        assert_eq!(g.count(&t, "isp2"), 40);
    }

    #[test]
    fn nap_stops_early() {
        let stop = AtomicBool::new(true);
        let t = Instant::now();
        assert!(matches!(
            nap(Duration::from_secs(5), &stop),
            Err(DemoError::Interrupted)
        ));
        assert!(t.elapsed() < Duration::from_secs(1));
        assert!(nap(Duration::from_millis(1), &AtomicBool::new(false)).is_ok());
    }
}
