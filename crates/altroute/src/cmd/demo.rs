//! `altroute demo`: the whole router in two minutes — a netns lab, the router as a child process,
//! real TCP connections, their split per gateway, a black-holed ISP with failover, the restore
//! with failback, and a teardown that always happens (also on error or Ctrl-C).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use altroute::config::{self, Config};
use altroute_lab::demo::{self, ConfigSource, DemoConfig, DemoError, DemoGateway, DemoOptions};
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
    /// Write the timeline (new connections per second per gateway, the black hole and the
    /// failback marked) as SVG here (default: altroute-demo-<pid>.svg in the temporary directory,
    /// beside the demo's work directory).
    #[arg(long, value_name = "PATH")]
    svg: Option<PathBuf>,
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
        let opts =
            DemoOptions {
                bin: std::env::current_exe().context("locating the altroute binary")?,
                config: ConfigSource::from_arg(self.config.as_deref()),
                load_config,
                prefix: self.prefix.unwrap_or_else(|| format!("dm{pid}-")),
                connections: self.connections.max(1),
                work_dir: std::env::temp_dir().join(format!("altroute-demo-{pid}")),
                step_timeout: Duration::from_secs(self.step_timeout_s.max(5)),
                svg: Some(self.svg.unwrap_or_else(|| {
                    std::env::temp_dir().join(format!("altroute-demo-{pid}.svg"))
                })),
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

/// Reads a router configuration into what the demo shows and waits for.
fn load_config(path: &Path) -> Result<DemoConfig, String> {
    let cfg = Config::load(path).map_err(|e| e.to_string())?;
    Ok(demo_config(&cfg))
}

fn demo_config(cfg: &Config) -> DemoConfig {
    let gateways = cfg
        .gateways
        .iter()
        .map(|g| DemoGateway {
            name: g.name.clone(),
            nat_address: cfg.nat_address(g).map_or(String::new(), |a| a.to_string()),
            rank: match cfg.policy.mode {
                config::Mode::Failover | config::Mode::Manual => format!("tier {}", g.tier),
                config::Mode::LoadBalance => format!("weight {}", g.weight),
            },
            up_rounds: g.probe.up.rounds,
            failback_stable_ms: g.probe.failback_stable_ms,
        })
        .collect();
    DemoConfig {
        mode: format!("{:?}", cfg.policy.mode),
        gateways,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use altroute_lab::demo::{FAILOVER_YAML, GatewayAddrs, WEIGHTED_YAML};

    #[test]
    fn embedded_examples_parse_and_map_addresses() {
        for text in [FAILOVER_YAML, WEIGHTED_YAML] {
            let cfg = Config::from_str_named(text, "embedded").unwrap();
            let g = GatewayAddrs::from_config(&demo_config(&cfg));
            assert_eq!(g.addr_of("isp1"), Some("192.0.2.1"));
            assert_eq!(g.name_of("198.51.100.1"), Some("isp2"));
        }
        let cfg = Config::from_str_named(FAILOVER_YAML, "embedded").unwrap();
        let d = demo_config(&cfg);
        assert_eq!(d.mode, "Failover");
        let ranks: Vec<&str> = d.gateways.iter().map(|g| g.rank.as_str()).collect();
        assert_eq!(ranks, ["tier 0", "tier 1"]);
        assert_eq!(d.gateways[0].up_rounds, 25);
        assert_eq!(d.gateways[0].failback_stable_ms, 3000);
        let cfg = Config::from_str_named(WEIGHTED_YAML, "embedded").unwrap();
        let d = demo_config(&cfg);
        assert_eq!(d.mode, "LoadBalance");
        let ranks: Vec<&str> = d.gateways.iter().map(|g| g.rank.as_str()).collect();
        assert_eq!(ranks, ["weight 4", "weight 1"]);
    }
}
