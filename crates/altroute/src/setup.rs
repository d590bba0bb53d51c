//! Makes the kernel silent on the router's ports (`altroute setup`): brings each port up with its
//! MTU, flushes its addresses, disables IPv6, turns forwarding off, sets `arp_ignore=8`, and sets
//! offloads for the datapath mode. Builds a plan of [`Step`]s first so `--dry-run` prints exactly
//! what a real run would do.
//!
//! Reading host facts is the I/O crate's ([`altroute_io::host`], through [`crate::kernel`]);
//! changing them stays here as the same `ip`, `ethtool` and `/proc/sys` commands an operator
//! would type, so the dry-run plan is a script they can read, run or adapt.

use std::fmt;
use std::process::Command;

use altroute_io::host::sysctl_path;

use crate::config::Config;

/// One action of the set-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Run a program.
    Run {
        /// Program and arguments.
        argv: Vec<String>,
        /// A failure is only a warning (offload changes the device may not support).
        optional: bool,
    },
    /// Write a value to a `/proc/sys` file.
    Write {
        /// Path.
        path: String,
        /// Value.
        value: String,
    },
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Run { argv, .. } => f.write_str(&argv.join(" ")),
            Step::Write { path, value } => write!(f, "echo {value} > {path}"),
        }
    }
}

/// A set-up step that failed.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// A program failed.
    #[error("`{cmd}` failed: {why}")]
    Run {
        /// The command.
        cmd: String,
        /// Its error output or exit status.
        why: String,
    },
    /// A sysctl file could not be written.
    #[error("`{cmd}` failed: {source}")]
    Write {
        /// The equivalent shell command.
        cmd: String,
        /// Cause.
        source: std::io::Error,
    },
}

fn run(argv: &[&str]) -> Step {
    Step::Run {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        optional: false,
    }
}

/// The steps for every distinct port interface of `config`.
pub fn plan(config: &Config) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for port in &config.ports {
        let i = port.interface.as_str();
        if seen.contains(&i) {
            continue;
        }
        seen.push(i);
        let mtu = port.mtu.to_string();
        steps.push(run(&["ip", "link", "set", "dev", i, "mtu", &mtu, "up"]));
        steps.push(run(&["ip", "addr", "flush", "dev", i]));
        for (fam, key, val) in [
            ("ipv6", "disable_ipv6", "1"),
            ("ipv4", "forwarding", "0"),
            ("ipv4", "arp_ignore", "8"),
        ] {
            steps.push(Step::Write {
                path: sysctl_path(fam, i, key),
                value: val.into(),
            });
        }
        // With PACKET_VNET_HDR the datapath takes GSO/GRO super-frames and their checksum state;
        // only LRO (which merges without metadata) must go. Without it every frame must be a
        // finished, MTU-sized frame: no GRO/LRO on receive, no TSO/GSO/checksum offload on send.
        let mut argv: Vec<String> = ["ethtool", "-K", i].iter().map(|s| s.to_string()).collect();
        let features: &[&str] = if config.datapath.vnet_hdr {
            &["lro", "off"]
        } else {
            &[
                "gro", "off", "lro", "off", "tso", "off", "gso", "off", "tx", "off",
            ]
        };
        argv.extend(features.iter().map(|s| s.to_string()));
        steps.push(Step::Run {
            argv,
            optional: true,
        });
    }
    steps
}

/// Executes one step. `Ok(Some(warning))` when an optional step failed.
pub fn execute(step: &Step) -> Result<Option<String>, SetupError> {
    match step {
        Step::Run { argv, optional } => {
            let Some((prog, args)) = argv.split_first() else {
                return Ok(None);
            };
            let why = match Command::new(prog).args(args).output() {
                Ok(o) if o.status.success() => return Ok(None),
                Ok(o) => {
                    let err = String::from_utf8_lossy(&o.stderr).trim().to_string();
                    if err.is_empty() {
                        o.status.to_string()
                    } else {
                        err
                    }
                }
                Err(e) => format!("cannot start {prog}: {e}"),
            };
            if *optional {
                Ok(Some(format!("`{step}` failed (ignored): {why}")))
            } else {
                Err(SetupError::Run {
                    cmd: step.to_string(),
                    why,
                })
            }
        }
        Step::Write { path, value } => {
            if path.starts_with("/proc/sys/net/ipv6/") && !std::path::Path::new(path).exists() {
                return Ok(Some(format!(
                    "{path} does not exist (no IPv6 here): skipped"
                )));
            }
            std::fs::write(path, value).map_err(|source| SetupError::Write {
                cmd: step.to_string(),
                source,
            })?;
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: &str = "ports:\n  - {name: lan, role: lan, interface: r-lan, addresses: [10.0.0.1/24]}\n  - {name: wan1, role: wan, interface: r-wan1, addresses: [192.0.2.1/24], mtu: 1400}\n  - {name: wan1v, role: wan, interface: r-wan1, vlan: 7, addresses: [198.51.100.1/24]}\ngateways:\n  - {name: isp1, port: wan1, via: 192.0.2.2}\n";

    #[test]
    fn plan_covers_each_interface_once() {
        let c = Config::from_str_named(CFG, "t").unwrap();
        let text: Vec<String> = plan(&c).iter().map(|s| s.to_string()).collect();
        assert_eq!(
            text,
            [
                "ip link set dev r-lan mtu 1500 up",
                "ip addr flush dev r-lan",
                "echo 1 > /proc/sys/net/ipv6/conf/r-lan/disable_ipv6",
                "echo 0 > /proc/sys/net/ipv4/conf/r-lan/forwarding",
                "echo 8 > /proc/sys/net/ipv4/conf/r-lan/arp_ignore",
                "ethtool -K r-lan lro off",
                "ip link set dev r-wan1 mtu 1400 up",
                "ip addr flush dev r-wan1",
                "echo 1 > /proc/sys/net/ipv6/conf/r-wan1/disable_ipv6",
                "echo 0 > /proc/sys/net/ipv4/conf/r-wan1/forwarding",
                "echo 8 > /proc/sys/net/ipv4/conf/r-wan1/arp_ignore",
                "ethtool -K r-wan1 lro off",
            ]
        );
    }

    #[test]
    fn plan_without_vnet_hdr_turns_offloads_off() {
        let c =
            Config::from_str_named(&format!("{CFG}datapath: {{vnet_hdr: false}}\n"), "t").unwrap();
        let p = plan(&c);
        assert!(p.iter().any(|s| s.to_string() == "ethtool -K r-lan gro off lro off tso off gso off tx off"));
    }
}
