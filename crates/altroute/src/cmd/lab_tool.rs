//! `altroute lab-tool serve|client|source|sink`: the lab's whoami server and counting client, and
//! a bulk-transfer pair that hashes a deterministic byte stream on both ends (hidden).

use std::io::Write as _;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::ExitCode;
use std::time::Duration;

use altroute_lab::tool::{self, Target};
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
        /// Local address to connect / send from, e.g. 10.0.0.9 (port chosen by the kernel).
        #[arg(long)]
        bind: Option<std::net::IpAddr>,
        /// Exit 1 unless at least this many attempts succeed.
        #[arg(long)]
        min_ok: Option<usize>,
    },
    /// Send BYTES of the pseudo-random stream for SEED over one TCP connection (accepted with
    /// --listen or opened with --connect), print a JSON report (bytes, StreamHash, seconds,
    /// Mbit/s) and exit.
    Source {
        #[command(flatten)]
        end: End,
        /// Bytes to send.
        #[arg(long, default_value_t = 100_000_000)]
        bytes: u64,
        /// Stream seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Read one TCP connection (accepted with --listen or opened with --connect) to the end and
    /// print a JSON report (bytes, StreamHash, seconds, Mbit/s).
    Sink {
        #[command(flatten)]
        end: End,
        /// Abort when no byte arrives for this many seconds.
        #[arg(long, default_value_t = 20)]
        idle_timeout_s: u64,
    },
}

/// One end of a bulk transfer: listen for one connection, or connect.
#[derive(clap::Args)]
struct End {
    /// Accept one connection on this address, e.g. 203.0.113.10:9000 (prints `listening tcp …`).
    #[arg(long, required_unless_present = "connect", conflicts_with = "connect")]
    listen: Option<SocketAddr>,
    /// Connect to this address.
    #[arg(long)]
    connect: Option<SocketAddr>,
    /// Local address to connect from (with --connect).
    #[arg(long)]
    from: Option<std::net::IpAddr>,
    /// Give up when the connection is not established within this many seconds.
    #[arg(long, default_value_t = 60)]
    wait_s: u64,
}

impl End {
    fn open(&self) -> anyhow::Result<TcpStream> {
        let wait = Duration::from_secs(self.wait_s.max(1));
        if let Some(dest) = self.connect {
            return tool::connect(dest, self.from, wait).with_context(|| format!("connect {dest}"));
        }
        let Some(listen) = self.listen else {
            anyhow::bail!("give --listen or --connect");
        };
        anyhow::ensure!(self.from.is_none(), "--from goes with --connect");
        let l = TcpListener::bind(listen).with_context(|| format!("bind tcp {listen}"))?;
        println!("listening tcp {listen}");
        let _ = std::io::stdout().flush();
        Ok(tool::accept_within(&l, wait)?)
    }
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
                let mut listeners = Vec::new();
                for a in tcp {
                    listeners.push(TcpListener::bind(a).with_context(|| format!("bind tcp {a}"))?);
                    println!("listening tcp {a}");
                }
                let mut sockets = Vec::new();
                for a in udp {
                    if a.ip().is_unspecified() {
                        eprintln!(
                            "warning: udp {a}: replies leave from the routing-chosen address; bind the served address"
                        );
                    }
                    sockets.push(UdpSocket::bind(a).with_context(|| format!("bind udp {a}"))?);
                    println!("listening udp {a}");
                    let _ = std::io::stdout().flush();
                }
                tool::serve(listeners, sockets)?;
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
                let target = match (tcp, udp) {
                    (Some(dest), _) => Target::Tcp(dest),
                    (None, Some(dest)) => Target::Udp(dest),
                    (None, None) => anyhow::bail!("give --tcp or --udp"),
                };
                let timeout = Duration::from_millis(timeout_ms);
                let tally = tool::client(target, bind, count, parallel, timeout);
                print!("{}", tally.render());
                Ok(if min_ok.is_some_and(|m| tally.ok() < m) {
                    ExitCode::FAILURE
                } else {
                    ExitCode::SUCCESS
                })
            }
            Action::Source { end, bytes, seed } => {
                let mut s = end.open()?;
                let report = tool::send_stream(&mut s, bytes, seed).context("sending")?;
                println!("{}", report.to_json());
                Ok(ExitCode::SUCCESS)
            }
            Action::Sink {
                end,
                idle_timeout_s,
            } => {
                let mut s = end.open()?;
                s.set_read_timeout(Some(Duration::from_secs(idle_timeout_s.max(1))))?;
                let report = tool::receive_stream(&mut s).context("receiving")?;
                println!("{}", report.to_json());
                Ok(ExitCode::SUCCESS)
            }
        }
    }
}
