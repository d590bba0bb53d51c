//! `altroute lab-tool serve|client`: the lab's whoami server and counting client (hidden).

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::process::ExitCode;
use std::thread;
use std::time::Duration;

use altroute::lab::tool;
use anyhow::Context;

/// Arguments of `lab-tool`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(clap::Subcommand)]
enum Action {
    /// Answer each TCP connection / UDP datagram with the peer address seen. Runs until killed.
    Serve {
        /// TCP listen address, e.g. 0.0.0.0:7000 (repeatable).
        #[arg(long)]
        tcp: Vec<SocketAddr>,
        /// UDP listen address (repeatable). Bind a specific address such as 203.0.113.10:7000:
        /// replies leave from the bound address, and a NAT drops replies from another source.
        #[arg(long)]
        udp: Vec<SocketAddr>,
    },
    /// Open N connections (or send N datagrams) and print a tally of the addresses seen.
    Client {
        /// TCP server address.
        #[arg(long, conflicts_with = "udp")]
        tcp: Option<SocketAddr>,
        /// UDP server address.
        #[arg(long)]
        udp: Option<SocketAddr>,
        /// Number of attempts.
        #[arg(short = 'n', long, default_value_t = 10)]
        count: usize,
        /// Connect / reply timeout in milliseconds.
        #[arg(long, default_value_t = 1000)]
        timeout_ms: u64,
        /// Attempts in flight at once.
        #[arg(long, default_value_t = 8)]
        parallel: usize,
        /// UDP only: local address to send from (std TCP sockets cannot bind before connect).
        #[arg(long)]
        bind: Option<std::net::IpAddr>,
        /// Exit 1 unless at least this many attempts succeed.
        #[arg(long)]
        min_ok: Option<usize>,
    },
}

impl Args {
    /// Runs the command.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        match self.action {
            Action::Serve { tcp, udp } => {
                anyhow::ensure!(
                    !tcp.is_empty() || !udp.is_empty(),
                    "give --tcp and/or --udp"
                );
                let mut handles = Vec::new();
                for a in tcp {
                    let l = TcpListener::bind(a).with_context(|| format!("bind tcp {a}"))?;
                    println!("listening tcp {a}");
                    handles.push(thread::spawn(move || tool::serve_tcp(l)));
                }
                for a in udp {
                    if a.ip().is_unspecified() {
                        eprintln!(
                            "warning: udp {a}: replies leave from the routing-chosen address; bind the served address"
                        );
                    }
                    let s = UdpSocket::bind(a).with_context(|| format!("bind udp {a}"))?;
                    println!("listening udp {a}");
                    use std::io::Write as _;
                    let _ = std::io::stdout().flush();
                    handles.push(thread::spawn(move || tool::serve_udp(s)));
                }
                for h in handles {
                    match h.join() {
                        Ok(r) => r?,
                        Err(_) => anyhow::bail!("server thread panicked"),
                    }
                }
                Ok(ExitCode::SUCCESS)
            }
            Action::Client {
                tcp,
                udp,
                count,
                timeout_ms,
                parallel,
                bind,
                min_ok,
            } => {
                let timeout = Duration::from_millis(timeout_ms);
                let tally = match (tcp, udp) {
                    (Some(dest), _) => {
                        anyhow::ensure!(bind.is_none(), "--bind works with --udp only");
                        tool::run_many(count, parallel, || tool::tcp_once(dest, timeout))
                    }
                    (None, Some(dest)) => {
                        let ip = bind.unwrap_or(if dest.is_ipv4() {
                            std::net::Ipv4Addr::UNSPECIFIED.into()
                        } else {
                            std::net::Ipv6Addr::UNSPECIFIED.into()
                        });
                        let local = SocketAddr::new(ip, 0);
                        tool::run_many(count, parallel, || tool::udp_once(dest, local, timeout))
                    }
                    (None, None) => anyhow::bail!("give --tcp or --udp"),
                };
                print!("{}", tally.render());
                Ok(if min_ok.is_some_and(|m| tally.ok() < m) {
                    ExitCode::FAILURE
                } else {
                    ExitCode::SUCCESS
                })
            }
        }
    }
}
