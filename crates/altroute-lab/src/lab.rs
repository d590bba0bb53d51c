//! A network-namespace lab: one LAN, a router namespace, two ISPs and an "Internet", built and
//! torn down with `ip`, `nft` and `tc`, plus fault injection and a namespace exec helper.
//!
//! Namespaces (`P` is the prefix, default `ar-`): `Plan`, `Prtr`, `Pisp1`, `Pisp2`, `Pinet`.
//! Interfaces, addresses and MACs are listed in [`LINKS`] and in the `lab up` help; only
//! documentation ranges are used outside the LAN (10.0.0.0/24 exists only inside the lab).
//!
//! In [`Forwarder::Router`] the router namespace's ports hold no addresses, IPv6 is disabled and
//! forwarding is off, so a userspace router on `r-lan`, `r-wan1`, `r-wan2` owns 10.0.0.1,
//! 192.0.2.1 and 198.51.100.1. In [`Forwarder::Kernel`] the kernel routes instead (addresses, weighted
//! multipath default route with an L4 hash, nftables masquerade per WAN): the baseline to compare
//! against.
//!
//! A [`Lab`] deletes its namespaces when dropped, also when set-up failed half-way. Nothing outside
//! the namespaces the lab creates is ever touched.

use std::io::{Read, Write};
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Namespace roles, in creation order.
pub const NAMESPACES: [&str; 5] = ["lan", "rtr", "isp1", "isp2", "inet"];

/// The lab's veth pairs: (namespace, interface, MAC, namespace, interface, MAC).
pub const LINKS: [(&str, &str, &str, &str, &str, &str); 5] = [
    (
        "lan",
        "lan0",
        "02:a7:00:00:00:02",
        "rtr",
        "r-lan",
        "02:a7:00:00:00:01",
    ),
    (
        "rtr",
        "r-wan1",
        "02:a7:00:01:00:01",
        "isp1",
        "i1-rtr",
        "02:a7:00:01:00:02",
    ),
    (
        "rtr",
        "r-wan2",
        "02:a7:00:02:00:01",
        "isp2",
        "i2-rtr",
        "02:a7:00:02:00:02",
    ),
    (
        "isp1",
        "i1-inet",
        "02:a7:00:03:00:01",
        "inet",
        "n-i1",
        "02:a7:00:03:00:02",
    ),
    (
        "isp2",
        "i2-inet",
        "02:a7:00:04:00:01",
        "inet",
        "n-i2",
        "02:a7:00:04:00:02",
    ),
];

/// LAN client addresses on `lan0` (the first is the primary source address).
pub const LAN_CLIENTS: [&str; 8] = [
    "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6", "10.0.0.7", "10.0.0.8", "10.0.0.9",
];

/// Server addresses on the `inet` namespace's loopback.
pub const SERVERS: [&str; 3] = ["203.0.113.10", "203.0.113.11", "203.0.113.12"];

/// The router's addresses (owned by the userspace router in router mode, by the kernel in kernel mode).
pub const ROUTER_ADDRS: [(&str, &str); 3] = [
    ("r-lan", "10.0.0.1/24"),
    ("r-wan1", "192.0.2.1/24"),
    ("r-wan2", "198.51.100.1/24"),
];

/// The default namespace prefix.
pub const DEFAULT_PREFIX: &str = "ar-";

/// Who forwards in the router namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forwarder {
    /// The kernel stays silent; a userspace router owns the ports.
    Router,
    /// The kernel routes and masquerades (baseline), multipath weights isp1:isp2.
    Kernel {
        /// Weight of the isp1 next hop (1..=255).
        w1: u8,
        /// Weight of the isp2 next hop (1..=255).
        w2: u8,
    },
}

/// One of the two ISPs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isp {
    /// isp1 (192.0.2.0/24).
    One,
    /// isp2 (198.51.100.0/24).
    Two,
}

impl std::str::FromStr for Isp {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "isp1" | "1" => Ok(Isp::One),
            "isp2" | "2" => Ok(Isp::Two),
            _ => Err(format!("{s:?} is not isp1 or isp2")),
        }
    }
}

impl Isp {
    fn ns(self) -> &'static str {
        match self {
            Isp::One => "isp1",
            Isp::Two => "isp2",
        }
    }
    fn ifaces(self) -> [&'static str; 2] {
        match self {
            Isp::One => ["i1-rtr", "i1-inet"],
            Isp::Two => ["i2-rtr", "i2-inet"],
        }
    }
}

/// Lab failures.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// A command could not be started.
    #[error("cannot start `{cmd}`: {source}")]
    Spawn {
        /// Command line.
        cmd: String,
        /// Cause.
        source: std::io::Error,
    },
    /// A command failed.
    #[error("`{cmd}` failed ({status}): {stderr}")]
    Failed {
        /// Command line.
        cmd: String,
        /// Exit status.
        status: String,
        /// Its error output.
        stderr: String,
    },
    /// A command ran too long and was killed.
    #[error("`{cmd}` did not finish within {after:?} and was killed")]
    Timeout {
        /// Command line.
        cmd: String,
        /// Limit.
        after: Duration,
    },
    /// The prefix is unusable.
    #[error("invalid lab prefix {0:?}: use 1..=16 characters from [A-Za-z0-9_-]")]
    Prefix(String),
    /// A namespace of this lab is missing.
    #[error("namespace {0} does not exist: run `altroute lab up --prefix <prefix>` first")]
    Missing(String),
    /// A namespace of this lab already exists.
    #[error("namespace {0} already exists: run `altroute lab down --prefix <prefix>` first")]
    Exists(String),
}

/// One command of a lab plan: `ip netns exec NS argv…` when `ns` is set, with optional stdin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cmd {
    /// Namespace (full name) to run in, or `None` for the current one.
    pub ns: Option<String>,
    /// Program and arguments.
    pub argv: Vec<String>,
    /// Text fed to stdin (e.g. an nft script).
    pub stdin: Option<String>,
}

impl std::fmt::Display for Cmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(ns) = &self.ns {
            write!(f, "ip netns exec {ns} ")?;
        }
        let quoted: Vec<String> = self
            .argv
            .iter()
            .map(|a| {
                if a.contains([' ', '>', '"', '<']) {
                    format!("'{a}'")
                } else {
                    a.clone()
                }
            })
            .collect();
        f.write_str(&quoted.join(" "))?;
        if let Some(s) = &self.stdin {
            write!(f, " <<< {s:?}")?;
        }
        Ok(())
    }
}

fn cmd(ns: Option<&str>, argv: &[&str]) -> Cmd {
    Cmd {
        ns: ns.map(str::to_string),
        argv: argv.iter().map(|s| s.to_string()).collect(),
        stdin: None,
    }
}

fn sysctl(ns: &str, key: &str, value: &str) -> Cmd {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    cmd(Some(ns), &["sh", "-c", &format!("echo {value} > {path}")])
}

/// Checks that a prefix is safe to use in namespace names.
pub fn check_prefix(prefix: &str) -> Result<(), LabError> {
    let ok = !prefix.is_empty()
        && prefix.len() <= 16
        && prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(LabError::Prefix(prefix.to_string()))
    }
}

/// The commands that build a lab (pure; `Lab::up` runs them, `lab up --dry-run` prints them).
pub fn plan_up(prefix: &str, forwarder: Forwarder) -> Vec<Cmd> {
    let ns = |n: &str| format!("{prefix}{n}");
    let mut v = Vec::new();
    for n in NAMESPACES {
        v.push(cmd(None, &["ip", "netns", "add", &ns(n)]));
        v.push(cmd(None, &["ip", "-n", &ns(n), "link", "set", "lo", "up"]));
    }
    // Before the router's ports exist, so they never get an IPv6 link-local address.
    let rtr = ns("rtr");
    v.push(sysctl(&rtr, "net.ipv6.conf.all.disable_ipv6", "1"));
    v.push(sysctl(&rtr, "net.ipv6.conf.default.disable_ipv6", "1"));
    for (a_ns, a_if, a_mac, b_ns, b_if, b_mac) in LINKS {
        let (a, b) = (ns(a_ns), ns(b_ns));
        v.push(cmd(
            None,
            &[
                "ip", "link", "add", a_if, "netns", &a, "address", a_mac, "type", "veth", "peer",
                "name", b_if, "netns", &b, "address", b_mac,
            ],
        ));
        v.push(cmd(None, &["ip", "-n", &a, "link", "set", a_if, "up"]));
        v.push(cmd(None, &["ip", "-n", &b, "link", "set", b_if, "up"]));
    }
    let addr = |v: &mut Vec<Cmd>, n: &str, a: &str, dev: &str| {
        v.push(cmd(
            None,
            &["ip", "-n", &ns(n), "addr", "add", a, "dev", dev],
        ));
    };
    let route = |v: &mut Vec<Cmd>, n: &str, dst: &str, via: &str| {
        v.push(cmd(
            None,
            &["ip", "-n", &ns(n), "route", "add", dst, "via", via],
        ));
    };
    // LAN clients.
    for c in LAN_CLIENTS {
        addr(&mut v, "lan", &format!("{c}/24"), "lan0");
    }
    route(&mut v, "lan", "default", "10.0.0.1");
    // ISPs.
    addr(&mut v, "isp1", "192.0.2.2/24", "i1-rtr");
    addr(&mut v, "isp1", "203.0.113.129/30", "i1-inet");
    route(&mut v, "isp1", "default", "203.0.113.130");
    v.push(sysctl(&ns("isp1"), "net.ipv4.ip_forward", "1"));
    addr(&mut v, "isp2", "198.51.100.2/24", "i2-rtr");
    addr(&mut v, "isp2", "203.0.113.133/30", "i2-inet");
    route(&mut v, "isp2", "default", "203.0.113.134");
    v.push(sysctl(&ns("isp2"), "net.ipv4.ip_forward", "1"));
    // Internet.
    addr(&mut v, "inet", "203.0.113.130/30", "n-i1");
    addr(&mut v, "inet", "203.0.113.134/30", "n-i2");
    for s in SERVERS {
        addr(&mut v, "inet", &format!("{s}/32"), "lo");
    }
    route(&mut v, "inet", "192.0.2.0/24", "203.0.113.129");
    route(&mut v, "inet", "198.51.100.0/24", "203.0.113.133");
    // Router.
    match forwarder {
        Forwarder::Router => {
            v.push(sysctl(&rtr, "net.ipv4.ip_forward", "0"));
            for (dev, _) in ROUTER_ADDRS {
                v.push(sysctl(
                    &rtr,
                    &format!("net.ipv4.conf.{dev}.forwarding"),
                    "0",
                ));
                v.push(sysctl(
                    &rtr,
                    &format!("net.ipv4.conf.{dev}.arp_ignore"),
                    "8",
                ));
                v.push(sysctl(
                    &rtr,
                    &format!("net.ipv6.conf.{dev}.disable_ipv6"),
                    "1",
                ));
            }
        }
        Forwarder::Kernel { w1, w2 } => {
            for (dev, a) in ROUTER_ADDRS {
                addr(&mut v, "rtr", a, dev);
            }
            v.push(sysctl(&rtr, "net.ipv4.ip_forward", "1"));
            v.push(sysctl(&rtr, "net.ipv4.fib_multipath_hash_policy", "1"));
            let (w1, w2) = (w1.max(1).to_string(), w2.max(1).to_string());
            v.push(cmd(
                None,
                &[
                    "ip",
                    "-n",
                    &rtr,
                    "route",
                    "add",
                    "default",
                    "nexthop",
                    "via",
                    "192.0.2.2",
                    "dev",
                    "r-wan1",
                    "weight",
                    &w1,
                    "nexthop",
                    "via",
                    "198.51.100.2",
                    "dev",
                    "r-wan2",
                    "weight",
                    &w2,
                ],
            ));
            let mut nft = cmd(Some(&rtr), &["nft", "-f", "-"]);
            nft.stdin = Some(
                "table ip altroute_lab {\n  chain postrouting {\n    type nat hook postrouting priority srcnat; policy accept;\n    oifname \"r-wan1\" masquerade\n    oifname \"r-wan2\" masquerade\n  }\n}\n"
                    .into(),
            );
            v.push(nft);
        }
    }
    v
}

/// Runs `command` with an optional stdin text, killing it after `timeout`.
pub fn run_with_timeout(
    mut command: Command,
    stdin: Option<&str>,
    timeout: Duration,
) -> Result<Output, LabError> {
    let line = format!("{command:?}").replace('"', "");
    command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().map_err(|source| LabError::Spawn {
        cmd: line.clone(),
        source,
    })?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // A failed write shows up as the command's own error.
        let _ = pipe.write_all(text.as_bytes());
    }
    let out_reader = reader(child.stdout.take());
    let err_reader = reader(child.stderr.take());
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(LabError::Timeout {
                    cmd: line,
                    after: timeout,
                });
            }
            Ok(None) => thread::sleep(Duration::from_millis(5)),
            Err(source) => return Err(LabError::Spawn { cmd: line, source }),
        }
    };
    Ok(Output {
        status,
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
    })
}

fn reader<R: Read + Send + 'static>(pipe: Option<R>) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut buf);
        }
        buf
    })
}

/// Runs a plan command and fails on a non-zero exit.
pub fn run_cmd(c: &Cmd, timeout: Duration) -> Result<Output, LabError> {
    let mut command;
    if let Some(ns) = &c.ns {
        command = Command::new("ip");
        command.args(["netns", "exec", ns]).args(&c.argv);
    } else {
        let Some((prog, args)) = c.argv.split_first() else {
            return Err(LabError::Failed {
                cmd: String::new(),
                status: "empty".into(),
                stderr: String::new(),
            });
        };
        command = Command::new(prog);
        command.args(args);
    }
    let out = run_with_timeout(command, c.stdin.as_deref(), timeout)?;
    if !out.status.success() {
        return Err(LabError::Failed {
            cmd: c.to_string(),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(out)
}

/// Names of existing network namespaces (`ip netns list`).
pub fn list_namespaces() -> Result<Vec<String>, LabError> {
    let out = run_cmd(
        &cmd(None, &["ip", "netns", "list"]),
        Duration::from_secs(10),
    )?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect())
}

/// Deletes every lab namespace with this prefix (only the five lab names, nothing else).
/// Returns the names deleted.
pub fn teardown(prefix: &str) -> Result<Vec<String>, LabError> {
    check_prefix(prefix)?;
    let wanted: Vec<String> = NAMESPACES.iter().map(|n| format!("{prefix}{n}")).collect();
    let mut deleted = Vec::new();
    let mut first_err = None;
    for name in list_namespaces()? {
        if wanted.contains(&name) {
            match run_cmd(
                &cmd(None, &["ip", "netns", "del", &name]),
                Duration::from_secs(10),
            ) {
                Ok(_) => deleted.push(name),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(deleted),
    }
}

/// A running lab. Dropping it deletes its namespaces unless [`Lab::persist`] was called.
#[derive(Debug)]
pub struct Lab {
    prefix: String,
    forwarder: Forwarder,
    keep: bool,
}

/// A process started in a lab namespace; killed (by its own pid) when dropped.
#[derive(Debug)]
pub struct Background {
    child: Child,
    line: String,
}

impl Background {
    /// The command line.
    pub fn command_line(&self) -> &str {
        &self.line
    }
    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const STEP_TIMEOUT: Duration = Duration::from_secs(20);

impl Lab {
    /// Builds the lab. On failure everything created so far is deleted.
    pub fn up(prefix: &str, forwarder: Forwarder) -> Result<Lab, LabError> {
        check_prefix(prefix)?;
        let existing = list_namespaces()?;
        for n in NAMESPACES {
            let name = format!("{prefix}{n}");
            if existing.contains(&name) {
                return Err(LabError::Exists(name));
            }
        }
        let lab = Lab {
            prefix: prefix.to_string(),
            forwarder,
            keep: false,
        };
        for c in plan_up(prefix, forwarder) {
            run_cmd(&c, STEP_TIMEOUT)?;
        }
        Ok(lab)
    }

    /// A handle on a lab that already runs (e.g. made by `altroute lab up`); dropping it leaves the
    /// namespaces in place. Fails if one of the five namespaces is missing.
    pub fn attach(prefix: &str, forwarder: Forwarder) -> Result<Lab, LabError> {
        check_prefix(prefix)?;
        let existing = list_namespaces()?;
        for n in NAMESPACES {
            let name = format!("{prefix}{n}");
            if !existing.contains(&name) {
                return Err(LabError::Missing(name));
            }
        }
        Ok(Lab {
            prefix: prefix.to_string(),
            forwarder,
            keep: true,
        })
    }

    /// Keeps the namespaces after this value is dropped (for `altroute lab up`).
    pub fn persist(mut self) {
        self.keep = true;
    }

    /// Deletes the namespaces now, reporting errors.
    pub fn down(mut self) -> Result<Vec<String>, LabError> {
        self.keep = true;
        teardown(&self.prefix)
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Who forwards in the router namespace.
    pub fn forwarder(&self) -> Forwarder {
        self.forwarder
    }

    /// Full namespace name of a role (`"lan"`, `"rtr"`, `"isp1"`, `"isp2"`, `"inet"`).
    pub fn ns(&self, role: &str) -> String {
        format!("{}{role}", self.prefix)
    }

    /// Runs `argv` in namespace `role` with a timeout; returns its output whatever the exit status.
    pub fn exec(&self, role: &str, argv: &[&str], timeout: Duration) -> Result<Output, LabError> {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns(role)]).args(argv);
        run_with_timeout(c, None, timeout)
    }

    /// Like [`Lab::exec`] but a non-zero exit is an error.
    pub fn exec_ok(
        &self,
        role: &str,
        argv: &[&str],
        timeout: Duration,
    ) -> Result<Output, LabError> {
        run_cmd(&cmd(Some(&self.ns(role)), argv), timeout)
    }

    /// Starts `argv` in namespace `role` in the background (output discarded).
    pub fn spawn(&self, role: &str, argv: &[&str]) -> Result<Background, LabError> {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns(role)]).args(argv);
        let line = format!("ip netns exec {} {}", self.ns(role), argv.join(" "));
        let child = c
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| LabError::Spawn {
                cmd: line.clone(),
                source,
            })?;
        Ok(Background { child, line })
    }

    fn nft(&self, isp: Isp, script: String) -> Result<(), LabError> {
        let mut c = cmd(Some(&self.ns(isp.ns())), &["nft", "-f", "-"]);
        c.stdin = Some(script);
        run_cmd(&c, STEP_TIMEOUT).map(|_| ())
    }

    fn fault_chain(body: &str, policy: &str) -> String {
        // Create-then-delete makes the replacement idempotent and atomic.
        format!(
            "table inet altroute_fault {{}}\ndelete table inet altroute_fault\ntable inet altroute_fault {{\n  chain forward {{\n    type filter hook forward priority 0; policy {policy};\n{body}  }}\n}}\n"
        )
    }

    /// Drops everything the ISP forwards (its links stay up, ARP still answered).
    pub fn blackhole(&self, isp: Isp) -> Result<(), LabError> {
        self.nft(isp, Self::fault_chain("", "drop"))
    }

    /// Drops `pct` % of what the ISP forwards, at random.
    pub fn loss(&self, isp: Isp, pct: u8) -> Result<(), LabError> {
        // nft rejects `< 100` (the value must be inside `mod 100`): 100 % is a plain drop.
        let rule = match pct {
            0 => String::new(),
            1..=99 => format!("    numgen random mod 100 < {pct} drop\n"),
            _ => "    drop\n".to_string(),
        };
        self.nft(isp, Self::fault_chain(&rule, "accept"))
    }

    /// Limits the ISP to `mbit` Mbit/s in each direction (tc tbf on both of its links).
    pub fn rate_limit(&self, isp: Isp, mbit: u32) -> Result<(), LabError> {
        let rate = format!("{}mbit", mbit.max(1));
        // At least 10 ms worth of bytes per burst, and at least 32 KiB.
        let burst = (u64::from(mbit.max(1)) * 1_000_000 / 8 / 100)
            .max(32 * 1024)
            .to_string();
        for dev in isp.ifaces() {
            self.exec_ok(
                isp.ns(),
                &[
                    "tc", "qdisc", "replace", "dev", dev, "root", "tbf", "rate", &rate, "burst",
                    &burst, "latency", "50ms",
                ],
                STEP_TIMEOUT,
            )?;
        }
        Ok(())
    }

    /// Removes every fault (nft table and tc qdiscs) from the ISP.
    pub fn restore(&self, isp: Isp) -> Result<(), LabError> {
        self.nft(
            isp,
            "table inet altroute_fault {}\ndelete table inet altroute_fault\n".into(),
        )?;
        for dev in isp.ifaces() {
            // "No such file or directory" when there is no root qdisc: nothing to undo.
            let _ = self.exec(
                isp.ns(),
                &["tc", "qdisc", "del", "dev", dev, "root"],
                STEP_TIMEOUT,
            )?;
        }
        Ok(())
    }

    /// Turns TX checksum/TSO/GSO offloads on or off on the router's peers (`lan0`, `i1-rtr`,
    /// `i2-rtr`), so the router receives finished frames when its datapath runs without vnet_hdr.
    pub fn set_peer_offloads(&self, on: bool) -> Result<(), LabError> {
        let v = if on { "on" } else { "off" };
        for (role, dev) in [("lan", "lan0"), ("isp1", "i1-rtr"), ("isp2", "i2-rtr")] {
            self.exec_ok(
                role,
                &["ethtool", "-K", dev, "tx", v, "tso", v, "gso", v],
                STEP_TIMEOUT,
            )?;
        }
        Ok(())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if !self.keep {
            if let Err(e) = teardown(&self.prefix) {
                log::warn!("lab teardown for prefix {} failed: {e}", self.prefix);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        assert!(check_prefix("ar-").is_ok());
        assert!(check_prefix("ar1234k-").is_ok());
        assert!(check_prefix("").is_err());
        assert!(check_prefix("a b").is_err());
        assert!(check_prefix("../x").is_err());
    }

    #[test]
    fn router_plan_is_silent_and_prefixed() {
        let p = plan_up("t1-", Forwarder::Router);
        let text: Vec<String> = p.iter().map(|c| c.to_string()).collect();
        let all = text.join("\n");
        for n in NAMESPACES {
            assert!(all.contains(&format!("ip netns add t1-{n}")));
        }
        // No address is ever given to the router's ports in router mode.
        assert!(
            !text.iter().any(|l| l.contains("-n t1-rtr addr add")),
            "{all}"
        );
        assert!(
            all.contains("sh -c 'echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6'"),
            "{all}"
        );
        assert!(all.contains("echo 0 > /proc/sys/net/ipv4/conf/r-wan1/forwarding"));
        // Every namespace-scoped command names one of this lab's namespaces.
        for c in &p {
            if let Some(ns) = &c.ns {
                assert!(ns.starts_with("t1-"), "{c}");
            }
            if c.argv.first().is_some_and(|a| a == "ip") && c.argv.get(1).is_some_and(|a| a == "-n")
            {
                assert!(c.argv[2].starts_with("t1-"), "{c}");
            }
        }
        // IPv6 is disabled before the router's links are created.
        let v6 = text
            .iter()
            .position(|l| l.contains("default/disable_ipv6"))
            .unwrap();
        let link = text.iter().position(|l| l.contains("type veth")).unwrap();
        assert!(v6 < link);
    }

    #[test]
    fn kernel_plan_routes_and_masquerades() {
        let p = plan_up("t2-", Forwarder::Kernel { w1: 4, w2: 1 });
        let all: String = p.iter().map(|c| format!("{c}\n")).collect();
        assert!(all.contains("ip -n t2-rtr addr add 192.0.2.1/24 dev r-wan1"));
        assert!(all.contains(
            "nexthop via 192.0.2.2 dev r-wan1 weight 4 nexthop via 198.51.100.2 dev r-wan2 weight 1"
        ));
        assert!(all.contains("fib_multipath_hash_policy"));
        assert!(
            p.iter()
                .any(|c| c.stdin.as_deref().is_some_and(|s| s.contains("masquerade")))
        );
    }

    #[test]
    fn fault_scripts() {
        let s = Lab::fault_chain("    numgen random mod 100 < 30 drop\n", "accept");
        assert!(s.contains("delete table inet altroute_fault"));
        assert!(s.contains("numgen random mod 100 < 30 drop"));
    }

    #[test]
    fn timeout_kills() {
        let mut c = Command::new("sleep");
        c.arg("5");
        let t = Instant::now();
        let e = run_with_timeout(c, None, Duration::from_millis(100)).unwrap_err();
        assert!(matches!(e, LabError::Timeout { .. }));
        assert!(t.elapsed() < Duration::from_secs(2));
        let mut c = Command::new("cat");
        c.arg("-");
        let o = run_with_timeout(c, Some("hello"), Duration::from_secs(5)).unwrap();
        assert_eq!(o.stdout, b"hello");
    }
}
