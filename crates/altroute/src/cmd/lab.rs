//! `altroute lab up|down|fault [--prefix P]`: build, break or remove the network-namespace lab.

use std::process::ExitCode;

use altroute_lab::{self as lab, DEFAULT_PREFIX, Forwarder, Isp, Lab};
use anyhow::Context;

/// Arguments of `lab`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(clap::Subcommand)]
enum Action {
    /// Create the namespaces <P>lan, <P>rtr, <P>isp1, <P>isp2, <P>inet.
    ///
    /// lan: lan0 10.0.0.2-9/24, default via 10.0.0.1. rtr: r-lan, r-wan1, r-wan2 (router mode: no
    /// addresses, IPv6 off, forwarding off; kernel mode: 10.0.0.1/24, 192.0.2.1/24,
    /// 198.51.100.1/24, weighted multipath + masquerade). isp1: i1-rtr 192.0.2.2/24, i1-inet
    /// 203.0.113.129/30. isp2: i2-rtr 198.51.100.2/24, i2-inet 203.0.113.133/30. inet: n-i1
    /// 203.0.113.130/30, n-i2 203.0.113.134/30, 203.0.113.10-12/32 on lo.
    Up {
        /// Namespace name prefix.
        #[arg(long, default_value = DEFAULT_PREFIX)]
        prefix: String,
        /// `router` (kernel silent, for the userspace router) or `kernel` (kernel baseline).
        #[arg(long, default_value = "router")]
        mode: String,
        /// Kernel mode multipath weights isp1:isp2, e.g. 4:1.
        #[arg(long, default_value = "1:1")]
        weights: String,
        /// Print the commands without running them.
        #[arg(long)]
        dry_run: bool,
    },
    /// Inject or clear a fault on one ISP of a running lab.
    Fault {
        /// Namespace name prefix.
        #[arg(long, default_value = DEFAULT_PREFIX)]
        prefix: String,
        /// `isp1` or `isp2`.
        isp: Isp,
        #[command(subcommand)]
        fault: Fault,
    },
    /// Delete this prefix's lab namespaces (also leftovers of a failed run).
    Down {
        /// Namespace name prefix.
        #[arg(long, default_value = DEFAULT_PREFIX)]
        prefix: String,
    },
}

#[derive(clap::Subcommand)]
enum Fault {
    /// Drop everything the ISP forwards (links stay up).
    Blackhole,
    /// Drop this percentage of what the ISP forwards, at random.
    Loss {
        /// 0..=100.
        pct: u8,
    },
    /// Limit the ISP to this many Mbit/s each way (tc tbf).
    Rate {
        /// Mbit/s.
        mbit: u32,
    },
    /// Remove every fault from the ISP.
    Restore,
}

fn parse_forwarder(mode: &str, weights: &str) -> anyhow::Result<Forwarder> {
    match mode {
        "router" => Ok(Forwarder::Router),
        "kernel" => {
            let (a, b) = weights
                .split_once(':')
                .context("--weights must look like 4:1")?;
            let w1: u8 = a
                .parse()
                .context("--weights: isp1 weight must be 1..=255")?;
            let w2: u8 = b
                .parse()
                .context("--weights: isp2 weight must be 1..=255")?;
            anyhow::ensure!(w1 > 0 && w2 > 0, "--weights must be > 0");
            Ok(Forwarder::Kernel { w1, w2 })
        }
        other => anyhow::bail!("--mode must be router or kernel, not {other:?}"),
    }
}

impl Args {
    /// Runs the command.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        match self.action {
            Action::Up {
                prefix,
                mode,
                weights,
                dry_run,
            } => {
                let forwarder = parse_forwarder(&mode, &weights)?;
                lab::check_prefix(&prefix)?;
                if dry_run {
                    for c in lab::plan_up(&prefix, forwarder) {
                        println!("{c}");
                    }
                    return Ok(ExitCode::SUCCESS);
                }
                let l = Lab::up(&prefix, forwarder)?;
                println!(
                    "lab {prefix} is up ({forwarder:?}): namespaces {}",
                    lab::NAMESPACES.map(|n| format!("{prefix}{n}")).join(" ")
                );
                l.persist();
                Ok(ExitCode::SUCCESS)
            }
            Action::Fault { prefix, isp, fault } => {
                // The forwarder only matters for building; faults live in the ISP namespaces.
                let l = Lab::attach(&prefix, Forwarder::Router)?;
                match fault {
                    Fault::Blackhole => l.blackhole(isp)?,
                    Fault::Loss { pct } => l.loss(isp, pct)?,
                    Fault::Rate { mbit } => l.rate_limit(isp, mbit)?,
                    Fault::Restore => l.restore(isp)?,
                }
                println!("ok");
                Ok(ExitCode::SUCCESS)
            }
            Action::Down { prefix } => {
                let gone = lab::teardown(&prefix)?;
                if gone.is_empty() {
                    println!("no lab namespaces with prefix {prefix}");
                } else {
                    println!("deleted {}", gone.join(" "));
                }
                Ok(ExitCode::SUCCESS)
            }
        }
    }
}
