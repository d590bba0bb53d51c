//! The `altroute demo` scenario, and the pieces the lab integration tests share with it: a
//! netns lab, the whoami server, the router as a child process (`altroute run --netns`) with its
//! JSON status file, real TCP connections from the LAN's kernel stack, a black-holed ISP, its
//! recovery, and a teardown that always happens (also on error or Ctrl-C).
//!
//! Output is one line per step or event, numbered `[n/6]`, written to any [`Write`], and a
//! picture of the connections over time (SVG, [`Timeline`]). The steps are in `scenario.rs`, the
//! router process in `router.rs`, the lab traffic in `traffic.rs`, the printing in `report.rs`
//! and the picture in `timeline.rs`.

mod report;
mod router;
mod scenario;
mod timeline;
mod traffic;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

pub use report::GatewayAddrs;
pub use router::{GatewayStatus, RouterProcess, RouterStatus};
pub use timeline::{DrawError, Mark, Timeline};
pub use traffic::{start_whoami, tcp_clients};

use crate::tool::Tally;
use crate::{Background, Lab, LabError, prerequisites};
use report::Out;

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
    /// Where to write the timeline picture (SVG), if anywhere.
    pub svg: Option<PathBuf>,
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
    /// Every round of test connections, and the black hole, restore and failback.
    pub timeline: Timeline,
}

/// Everything the demo holds; dropped in field order… but torn down explicitly by `teardown`.
struct Held {
    router: Option<RouterProcess>,
    server: Option<Background>,
    lab: Option<Lab>,
}

impl Held {
    /// The lab and the router, once step 1 has started both.
    fn running(&mut self) -> Result<(&Lab, &mut RouterProcess), DemoError> {
        let lab = self
            .lab
            .as_ref()
            .ok_or_else(|| DemoError::Step("lab vanished".into()))?;
        let router = self
            .router
            .as_mut()
            .ok_or_else(|| DemoError::Step("router vanished".into()))?;
        Ok((lab, router))
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
    let mut result = scenario::scenario(opts, stop, &mut out, &mut held, &mut summary);
    if result.is_err() && stop.load(Ordering::Relaxed) {
        // Ctrl-C in a terminal reaches the whole process group: a lab command killed by it
        // fails with its own error, but the cause is the interrupt.
        result = Err(DemoError::Interrupted);
    }
    if let Err(e) = &result {
        out.line(6, &format!("stopping early: {e}"));
    }
    let down = teardown(opts, &mut out, held, &mut summary);
    if let Some(path) = &opts.svg
        && !summary.timeline.is_empty()
    {
        match write_svg(&summary.timeline, path) {
            Ok(()) => out.line(
                6,
                &format!(
                    "timeline (new connections per second per gateway): {}",
                    path.display()
                ),
            ),
            Err(e) => out.line(6, &format!("no timeline: {e}")),
        }
    }
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

/// Draws the timeline into `path`.
fn write_svg(timeline: &Timeline, path: &Path) -> Result<(), DemoError> {
    let svg = timeline
        .svg(
            "altroute demo: new connections per second per gateway",
            (960, 480),
        )
        .map_err(|e| DemoError::Step(e.to_string()))?;
    std::fs::write(path, svg).map_err(io(format!("writing {}", path.display())))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The weighted example as the daemon's loader describes it.
    pub(crate) fn weighted() -> DemoConfig {
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
