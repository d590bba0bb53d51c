//! `altroute demo`: the whole router in two minutes — a netns lab, the router as a child process,
//! real TCP connections, their split per gateway, a black-holed ISP with failover, the restore
//! with failback, and a teardown that always happens (also on error or Ctrl-C).

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use altroute::demo::{self, ConfigSource, DemoError, DemoOptions};
use anyhow::Context;

/// Arguments of `demo`.
#[derive(clap::Args)]
pub struct Args {
    /// Router configuration: `failover` (embedded examples/lab-dual-wan-failover.yaml, the
    /// default), `weighted` (embedded examples/lab-weighted-4to1.yaml) or a file path.
    #[arg(long)]
    config: Option<String>,
    /// Lab namespace prefix (default: `dm<pid>-`, unique per run).
    #[arg(long)]
    prefix: Option<String>,
    /// TCP connections in the first traffic step.
    #[arg(short = 'n', long, default_value_t = 200)]
    connections: usize,
    /// Give up on failover or failback after this many seconds.
    #[arg(long, default_value_t = 40)]
    step_timeout_s: u64,
}

impl Args {
    /// Runs the demo.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let stop = Arc::new(AtomicBool::new(false));
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::flag::register(sig, Arc::clone(&stop))
                .context("installing the signal handlers")?;
        }
        let pid = std::process::id();
        let opts = DemoOptions {
            bin: std::env::current_exe().context("locating the altroute binary")?,
            config: ConfigSource::from_arg(self.config.as_deref()),
            prefix: self.prefix.unwrap_or_else(|| format!("dm{pid}-")),
            connections: self.connections.max(1),
            work_dir: std::env::temp_dir().join(format!("altroute-demo-{pid}")),
            step_timeout: Duration::from_secs(self.step_timeout_s.max(5)),
        };
        let mut stdout = std::io::stdout();
        match demo::run(&opts, &stop, &mut stdout) {
            Ok(_) => Ok(ExitCode::SUCCESS),
            Err(DemoError::Interrupted) => {
                eprintln!("interrupted; everything was torn down");
                Ok(ExitCode::from(130))
            }
            Err(e) => Err(e.into()),
        }
    }
}
