//! The commands that talk to a running router through its API: `status`, `gateways`, `flows`,
//! `explain`, `force`, `release`, `enable`, `disable`, `pin`, `unpin`, `mode`, `reload`. By
//! default over the Unix socket (`--socket`, default `/run/altroute/altroute.sock`), or a TCP
//! address (`--url http://HOST:PORT`, with `--token-file`). Tables for people by default,
//! `--json` for the API's answer as it is.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use altroute::api::client::{Answer, Endpoint, call};
use altroute::api::model;
use altroute::config;
use anyhow::Context as _;
use hyper::Method;

/// How to reach the router, and how to print.
#[derive(clap::Args, Clone, Debug)]
pub struct Conn {
    /// The API's Unix socket.
    #[arg(long, default_value = config::DEFAULT_SOCKET)]
    socket: PathBuf,
    /// The API's TCP address instead, e.g. `http://192.0.2.1:9180`.
    #[arg(long)]
    url: Option<String>,
    /// With `--url`: a file holding the bearer token (`api.token_file` of the router).
    #[arg(long, requires = "url")]
    token_file: Option<PathBuf>,
    /// Print the API's JSON answer instead of a table.
    #[arg(long)]
    json: bool,
}

impl Conn {
    fn endpoint(&self) -> anyhow::Result<Endpoint> {
        match &self.url {
            Some(u) => {
                let token = match &self.token_file {
                    Some(f) => Some(
                        std::fs::read_to_string(f)
                            .with_context(|| format!("reading {}", f.display()))?
                            .lines()
                            .next()
                            .unwrap_or("")
                            .trim()
                            .to_string(),
                    ),
                    None => None,
                };
                Endpoint::url(u, token)
            }
            None => Ok(Endpoint::Unix(self.socket.clone())),
        }
    }

    fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> anyhow::Result<Answer> {
        call(&self.endpoint()?, method, path, body)
    }

    /// Prints the answer as JSON, or hands it to `table` (an error answer is an error).
    fn show<T: serde::de::DeserializeOwned>(
        &self,
        a: &Answer,
        table: impl FnOnce(T) -> String,
    ) -> anyhow::Result<ExitCode> {
        if self.json {
            if a.status.is_success() {
                println!("{}", String::from_utf8_lossy(&a.body).trim_end());
                return Ok(ExitCode::SUCCESS);
            }
            eprintln!("{}", String::from_utf8_lossy(&a.body).trim_end());
            return Ok(ExitCode::FAILURE);
        }
        match a.json::<T>() {
            Ok(v) => {
                print!("{}", table(v));
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprintln!("error: {e}");
                Ok(ExitCode::FAILURE)
            }
        }
    }

    /// A command: prints what was done.
    fn command(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> anyhow::Result<ExitCode> {
        let a = self.call(method, path, body)?;
        self.show::<model::Done>(&a, |d| format!("{}\n", d.message))
    }
}

/// Columns padded to their widest cell.
fn table(head: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut w: Vec<usize> = head.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(x) = w.get_mut(i) {
                *x = (*x).max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            let pad = w.get(i).copied().unwrap_or(0);
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<pad$}  "));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(head.iter().map(|h| h.to_string()).collect());
    for r in rows {
        out.push_str(&line(r));
    }
    out
}

/// Bytes for people.
fn bytes(n: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1000.0 && i + 1 < units.len() {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", units[i])
    }
}

fn gateways_table(gws: Vec<model::Gateway>) -> String {
    table(
        &[
            "GATEWAY",
            "STATE",
            "RTT",
            "LOSS",
            "FLOWS",
            "OPENED/FAILED",
            "OUT",
            "IN",
            "WHY",
        ],
        gws.into_iter()
            .map(|g| {
                vec![
                    g.name,
                    format!("{}{}", g.state, if g.forced { " (forced)" } else { "" }),
                    g.rtt_ms.map_or("-".into(), |r| format!("{r:.1} ms")),
                    format!("{:.0}%", g.loss_pct),
                    g.flows.to_string(),
                    format!("{}/{} ({} s)", g.opened, g.failed, g.window_s),
                    format!("{} / {} pkts", bytes(g.out_bytes), g.out_packets),
                    format!("{} / {} pkts", bytes(g.in_bytes), g.in_packets),
                    g.reason,
                ]
            })
            .collect(),
    )
}

fn status_text(s: model::Status) -> String {
    let mut o = format!(
        "altroute {} up {:.0} s, {} worker(s), config {}\nmode {}{}\nflows {} of {} (created {}, expired {}, evicted {}, refused: full {}, no ports {}, no gateway {})\n",
        s.version,
        s.uptime_s,
        s.workers,
        s.config_file,
        s.mode,
        s.forced.map_or(String::new(), |f| format!(", forced {f}")),
        s.flows,
        s.max_flows,
        s.table.created,
        s.table.expired,
        s.table.evicted,
        s.table.refused_full,
        s.table.ports_exhausted,
        s.table.no_gateway,
    );
    o.push_str(&format!(
        "offload: {} active, {} installed, {} kernel frames\n",
        s.offload.active, s.offload.installed, s.offload.kernel_frames
    ));
    if !s.pins.is_empty() {
        let pins: Vec<String> = s
            .pins
            .iter()
            .map(|p| format!("{} -> {}", p.client, p.gateway))
            .collect();
        o.push_str(&format!("pins: {}\n", pins.join(", ")));
    }
    if s.drops.is_empty() {
        o.push_str("drops: none\n");
    } else {
        let d: Vec<String> = s.drops.iter().map(|(r, n)| format!("{r} {n}")).collect();
        o.push_str(&format!("drops: {}\n", d.join(", ")));
    }
    if let Some(r) = s.last_reload {
        o.push_str(&format!("last reload {r}\n"));
    }
    for t in s.transitions.iter().rev().take(5) {
        o.push_str(&format!(
            "  {:>9.1} s  {} {} -> {} ({})\n",
            t.at_ms as f64 / 1000.0,
            t.gateway,
            t.from,
            t.to,
            t.reason
        ));
    }
    o
}

fn flows_table(p: model::FlowPage) -> String {
    let shown = p.flows.len();
    let mut o = table(
        &[
            "PROTO",
            "SOURCE",
            "DESTINATION",
            "GATEWAY",
            "NAT",
            "TCP",
            "AGE",
            "OUT",
            "IN",
            "WHY",
        ],
        p.flows
            .into_iter()
            .map(|f| {
                vec![
                    f.proto,
                    format!("{}:{}", f.src, f.sport),
                    format!("{}:{}", f.dst, f.dport),
                    f.gateway.unwrap_or_else(|| "-".into()),
                    f.nat.unwrap_or_else(|| "-".into()),
                    f.tcp,
                    format!("{} s", f.age_s),
                    bytes(f.out_bytes),
                    bytes(f.in_bytes),
                    f.reason,
                ]
            })
            .collect(),
    );
    o.push_str(&format!(
        "page {} ({} per page): {shown} of {} flow(s)\n",
        p.page, p.per_page, p.total
    ));
    o
}

/// `altroute status`.
#[derive(clap::Args)]
pub struct Status {
    #[command(flatten)]
    conn: Conn,
}

impl Status {
    /// Runs the command.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let a = self.conn.call(Method::GET, "/api/status", None)?;
        self.conn.show(&a, status_text)
    }
}

/// `altroute gateways`.
#[derive(clap::Args)]
pub struct Gateways {
    #[command(flatten)]
    conn: Conn,
}

impl Gateways {
    /// Runs the command.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let a = self.conn.call(Method::GET, "/api/gateways", None)?;
        self.conn.show(&a, gateways_table)
    }
}

/// `altroute flows`.
#[derive(clap::Args)]
pub struct Flows {
    /// Only the flows of this client (LAN host).
    #[arg(long)]
    client: Option<IpAddr>,
    /// Only the flows through this gateway.
    #[arg(long)]
    gateway: Option<String>,
    /// The page (from 0).
    #[arg(long, default_value_t = 0)]
    page: usize,
    /// Flows per page (at most 1000).
    #[arg(long, default_value_t = 100)]
    per_page: usize,
    #[command(flatten)]
    conn: Conn,
}

impl Flows {
    /// Runs the command.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let mut q = format!("/api/flows?page={}&per_page={}", self.page, self.per_page);
        if let Some(c) = self.client {
            q.push_str(&format!("&client={c}"));
        }
        if let Some(g) = &self.gateway {
            q.push_str(&format!("&gateway={}", encode(g)));
        }
        let a = self.conn.call(Method::GET, &q, None)?;
        self.conn.show(&a, flows_table)
    }
}

/// Percent-encodes a query value or path segment (names are plain in practice).
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// `altroute explain`.
#[derive(clap::Args)]
pub struct Explain {
    /// The LAN host's address (or the remote's, for the other direction).
    #[arg(long)]
    src: IpAddr,
    /// The destination address.
    #[arg(long)]
    dst: IpAddr,
    /// `tcp`, `udp`, `icmp` or a protocol number.
    #[arg(long, default_value = "tcp")]
    proto: String,
    /// Source port (or ICMP id).
    #[arg(long, default_value_t = 0)]
    sport: u16,
    /// Destination port.
    #[arg(long, default_value_t = 0)]
    dport: u16,
    #[command(flatten)]
    conn: Conn,
}

impl Explain {
    /// Runs the command.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let q = format!(
            "/api/explain?src={}&dst={}&proto={}&sport={}&dport={}",
            self.src,
            self.dst,
            encode(&self.proto),
            self.sport,
            self.dport
        );
        let a = self.conn.call(Method::GET, &q, None)?;
        self.conn
            .show(&a, |e: model::Explain| format!("{}\n", e.text))
    }
}

/// A gateway command: `force`, `release`, `enable`, `disable`.
#[derive(clap::Args)]
pub struct Steer {
    /// The gateway.
    name: String,
    #[command(flatten)]
    conn: Conn,
}

impl Steer {
    fn post(self, action: &str) -> anyhow::Result<ExitCode> {
        let path = format!("/api/gateways/{}/{action}", encode(&self.name));
        self.conn.command(Method::POST, &path, None)
    }
}

macro_rules! steer {
    ($( $(#[$doc:meta])* $t:ident => $action:literal, )*) => {
        $(
            $(#[$doc])*
            #[derive(clap::Args)]
            pub struct $t {
                #[command(flatten)]
                s: Steer,
            }

            impl $t {
                /// Runs the command.
                pub fn run(self) -> anyhow::Result<ExitCode> {
                    self.s.post($action)
                }
            }
        )*
    };
}

steer! {
    /// `altroute force NAME`.
    Force => "force",
    /// `altroute release NAME`.
    Release => "release",
    /// `altroute enable NAME`.
    Enable => "enable",
    /// `altroute disable NAME`.
    Disable => "disable",
}

/// `altroute pin CLIENT GATEWAY`.
#[derive(clap::Args)]
pub struct Pin {
    /// The LAN host.
    client: IpAddr,
    /// The gateway.
    gateway: String,
    #[command(flatten)]
    conn: Conn,
}

impl Pin {
    /// Runs the command.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let body = serde_json::to_value(model::PinBody {
            gateway: self.gateway.clone(),
        })?;
        self.conn.command(
            Method::PUT,
            &format!("/api/clients/{}", self.client),
            Some(body),
        )
    }
}

/// `altroute unpin CLIENT`.
#[derive(clap::Args)]
pub struct Unpin {
    /// The LAN host.
    client: IpAddr,
    #[command(flatten)]
    conn: Conn,
}

impl Unpin {
    /// Runs the command.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        self.conn.command(
            Method::DELETE,
            &format!("/api/clients/{}", self.client),
            None,
        )
    }
}

/// `altroute mode load-balance|failover|manual`.
#[derive(clap::Args)]
pub struct Mode {
    /// `load-balance`, `failover` or `manual` (manual needs a forced gateway).
    #[arg(value_parser = ["load-balance", "failover", "manual"])]
    mode: String,
    #[command(flatten)]
    conn: Conn,
}

impl Mode {
    /// Runs the command.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let body = serde_json::to_value(model::ModeBody {
            mode: self.mode.clone(),
        })?;
        self.conn.command(Method::POST, "/api/mode", Some(body))
    }
}

/// `altroute reload`.
#[derive(clap::Args)]
pub struct Reload {
    #[command(flatten)]
    conn: Conn,
}

impl Reload {
    /// Runs the command.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        self.conn.command(Method::POST, "/api/reload", None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_line_up() {
        let t = table(
            &["A", "LONGER"],
            vec![
                vec!["xyz".into(), "1".into()],
                vec!["q".into(), "22".into()],
            ],
        );
        assert_eq!(t, "A    LONGER\nxyz  1\nq    22\n");
    }

    #[test]
    fn bytes_read_well() {
        assert_eq!(bytes(999), "999 B");
        assert_eq!(bytes(1_500), "1.5 kB");
        assert_eq!(bytes(5_000_000_000), "5.0 GB");
    }

    #[test]
    fn names_are_encoded() {
        assert_eq!(encode("isp 2/x"), "isp%202%2Fx");
        assert_eq!(encode("isp-2_a.b"), "isp-2_a.b");
    }

    #[test]
    fn urls_parse() {
        assert!(matches!(
            Endpoint::url("http://127.0.0.1:9180/", None),
            Ok(Endpoint::Tcp { authority, .. }) if authority == "127.0.0.1:9180"
        ));
        assert!(Endpoint::url("https://x:1", None).is_err());
    }
}
