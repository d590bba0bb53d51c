//! The userspace router end to end in the netns lab (root + netns), with real kernel TCP/UDP/ICMP
//! stacks in the LAN and "Internet" namespaces and `altroute run` as a child process.
//!
//! They skip with a printed reason when not root (or a tool is missing), unless
//! `ALTROUTE_REQUIRE_NETNS` is set, in which case that is a failure. Every test builds its own lab
//! with a unique prefix (`ar<pid><tag>-`), so they run in parallel; the lab, the server and the
//! router are torn down by Drop guards also when an assertion fails.
//!
//! - failover config: TCP, UDP and ping from lan to inet, replies arrive, the server sees isp1's
//!   address only, and the router's status agrees; SIGTERM → exit 0.
//! - a 100 MB pseudo-random TCP stream arrives intact inet → lan and lan → inet (hash on both
//!   ends), throughput printed.
//! - the same with software checksums (peers' TX offloads and receivers' RX checksum offload
//!   off), 50 MB each way: hashes equal and no checksum error counted by any receiver.
//! - policy rules: the rip-cord subnet 10.0.0.8/29 leaves via isp2 (UDP and TCP bound to
//!   10.0.0.8/.9), other clients to the same TCP port via isp1 (port rule), a pinned client
//!   via isp1.
//! - weighted 4:1: 250 connections split 80 % ± 8 % at the server.
//! - `altroute demo` runs through and leaves nothing behind; SIGINT mid-way tears down too.
//! - `datapath.backend: pnet` (one worker, plain frames): ping, TCP connections and 20 MB each
//!   way through the same pipeline.

// Helpers outside `#[test]` functions are test code too: a failed lab step must fail the test.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use altroute_lab::demo::{
    self, GatewayAddrs, RouterProcess, SERVER_TCP, SERVER_UDP, start_whoami, tcp_clients,
};
use altroute_lab::tool::{Tally, TransferReport};
use altroute_lab::{Background, Forwarder, Lab};

mod common;
use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_altroute");
const ISP1: &str = "192.0.2.1";
const ISP2: &str = "198.51.100.1";

const BASE_TOOLS: [(&str, &str); 3] = [("ip", "-V"), ("nft", "--version"), ("kill", "-l")];

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name)
}

/// A lab with the whoami server and the router running. Fields drop in order: router, server, lab.
struct Rig {
    router: RouterProcess,
    _server: Background,
    lab: Lab,
    dir: PathBuf,
    prefix: String,
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn rig(tag: &str, config: &str) -> Rig {
    rig_with(tag, |_, _| example(config))
}

/// A rig whose router configuration comes from `prepare`, which is given the lab and the rig's
/// directory before the router starts (to write a configuration there and set the lab up for it).
fn rig_with(tag: &str, prepare: impl FnOnce(&Lab, &Path) -> PathBuf) -> Rig {
    let prefix = format!("ar{}{tag}-", std::process::id());
    let dir = std::env::temp_dir().join(format!("altroute-test-{prefix}"));
    std::fs::create_dir_all(&dir).unwrap();
    let lab = Lab::up(&prefix, Forwarder::Router).expect("lab up");
    let config = prepare(&lab, &dir);
    let stop = AtomicBool::new(false);
    let server = start_whoami(&lab, Path::new(BIN), &stop).unwrap();
    let mut router = RouterProcess::start(Path::new(BIN), &config, &lab.ns("rtr"), &dir).unwrap();
    router
        .wait_ready(Duration::from_secs(30), &stop)
        .unwrap_or_else(|e| panic!("{prefix}: {e}"));
    Rig {
        router,
        _server: server,
        lab,
        dir,
        prefix,
    }
}

impl Rig {
    fn tcp(&self, n: usize) -> Tally {
        tcp_clients(&self.lab, Path::new(BIN), SERVER_TCP, n, 8, 3000).unwrap()
    }

    fn udp_from(&self, src: &str, n: usize) -> Tally {
        self.client(&["--udp", SERVER_UDP], src, n)
    }

    /// TCP connections bound to `src` (lab-tool binds before connecting, through socket2).
    fn tcp_from(&self, src: &str, n: usize) -> Tally {
        self.client(&["--tcp", SERVER_TCP], src, n)
    }

    fn client(&self, dest: &[&str], src: &str, n: usize) -> Tally {
        let n = n.to_string();
        let mut argv = vec![BIN, "lab-tool", "client"];
        argv.extend_from_slice(dest);
        argv.extend_from_slice(&[
            "--bind",
            src,
            "-n",
            &n,
            "--parallel",
            "4",
            "--timeout-ms",
            "2000",
        ]);
        let out = self
            .lab
            .exec("lan", &argv, Duration::from_secs(60))
            .unwrap();
        Tally::parse(&String::from_utf8_lossy(&out.stdout)).unwrap_or_else(|| {
            panic!(
                "client {dest:?} from {src} printed no tally: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
    }

    /// Waits for a router status that includes the traffic so far (workers report every second).
    fn settled_status(&mut self) -> demo::RouterStatus {
        let now = self.router.status().map_or(0, |s| s.time_ms);
        self.router
            .fresh_status(now + 1500, Duration::from_secs(10), &AtomicBool::new(false))
            .unwrap()
    }

    /// SIGTERM → exit 0, then everything is torn down.
    fn finish(mut self) {
        let st = self.router.stop(Duration::from_secs(15)).unwrap();
        assert!(
            st.success(),
            "router exit after SIGTERM: {st}; log:\n{}",
            self.router.log_tail(20)
        );
        let prefix = self.prefix.clone();
        drop(self);
        assert_eq!(leftovers(&prefix), Vec::<String>::new());
    }
}

/// Three pings from the LAN client to `dst`, all answered.
fn ping3(lab: &Lab, dst: &str) {
    let out = lab
        .exec(
            "lan",
            &["ping", "-c", "3", "-i", "0.2", "-W", "2", dst],
            Duration::from_secs(20),
        )
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("3 received"),
        "ping {dst}: {text}"
    );
}

#[test]
fn failover_config_tcp_udp_ping_via_isp1_only() {
    if !should_run(
        "failover_config_tcp_udp_ping_via_isp1_only",
        &[BASE_TOOLS[0], BASE_TOOLS[1], BASE_TOOLS[2], ("ping", "-V")],
    ) {
        return;
    }
    let t0 = Instant::now();
    let mut r = rig("f", "lab-dual-wan-failover.yaml");

    let t = r.tcp(60);
    eprintln!("tcp: {t:?}");
    assert_eq!(t.failed, 0, "{t:?}");
    assert_eq!(
        t.count(ISP1),
        60,
        "failover config must use isp1 only: {t:?}"
    );

    for src in ["10.0.0.2", "10.0.0.7"] {
        let t = r.udp_from(src, 10);
        eprintln!("udp from {src}: {t:?}");
        assert_eq!(t.count(ISP1), 10, "udp from {src}: {t:?}");
    }

    // ICMP echo through the NAT to the server, and to the router's own LAN address.
    for dst in ["203.0.113.10", "10.0.0.1"] {
        ping3(&r.lab, dst);
    }

    let st = r.settled_status();
    eprintln!("router: {}", st.summary());
    let (g1, g2) = (st.gateway("isp1").unwrap(), st.gateway("isp2").unwrap());
    assert!(g1.out_packets >= 60 * 3, "{}", st.summary());
    assert!(g1.in_packets >= 60 * 3, "{}", st.summary());
    assert_eq!(
        (g2.out_packets, g2.in_packets),
        (0, 0),
        "nothing may leave via the backup: {}",
        st.summary()
    );
    r.finish();
    eprintln!("wall time {:.1} s", t0.elapsed().as_secs_f64());
}

/// Kills a child process by its own handle when dropped.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const BULK_BYTES: u64 = 100_000_000;

/// One transfer of `bytes` between a LAN client and the server address in inet: the inet end
/// listens on 203.0.113.10:`port`, the LAN end connects (from `from` when given). `download`:
/// inet sends; otherwise the LAN sends. Returns (source report, sink report).
fn bulk(
    lab: &Lab,
    download: bool,
    port: u16,
    from: Option<&str>,
    bytes: u64,
) -> (TransferReport, TransferReport) {
    let (listen_ns, connect_ns) = ("inet", "lan");
    let (listener, connector) = if download {
        ("source", "sink")
    } else {
        ("sink", "source")
    };
    let addr = format!("203.0.113.10:{port}");
    let addr = addr.as_str();
    let mut connect_extra = Vec::new();
    if let Some(ip) = from {
        connect_extra.extend(["--from", ip]);
    }
    let seed = "24301";
    let bytes = bytes.to_string();
    let role_args = |role: &str| -> Vec<String> {
        if role == "source" {
            vec![
                "--bytes".into(),
                bytes.clone(),
                "--seed".into(),
                seed.into(),
            ]
        } else {
            vec!["--idle-timeout-s".into(), "20".into()]
        }
    };
    let mut child = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.ns(listen_ns),
            BIN,
            "lab-tool",
            listener,
        ])
        .args(["--listen", addr, "--wait-s", "60"])
        .args(role_args(listener))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut child = KillOnDrop(child);
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert!(
        line.starts_with("listening tcp"),
        "{listener} said {line:?}"
    );
    let mut argv: Vec<String> = vec![
        BIN.into(),
        "lab-tool".into(),
        connector.into(),
        "--connect".into(),
        addr.into(),
    ];
    argv.extend(connect_extra.iter().map(|a| a.to_string()));
    argv.extend(role_args(connector));
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let other = lab
        .exec(connect_ns, &argv, Duration::from_secs(120))
        .unwrap();
    let other_text = String::from_utf8_lossy(&other.stdout);
    assert!(
        other.status.success(),
        "{connector} failed: {other_text} {}",
        String::from_utf8_lossy(&other.stderr)
    );
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    assert!(child.0.wait().unwrap().success(), "{listener}: {rest}");
    let a = TransferReport::parse(&rest).unwrap();
    let b = TransferReport::parse(&other_text).unwrap();
    if listener == "source" { (a, b) } else { (b, a) }
}

#[test]
fn bulk_100mb_both_directions_arrive_intact() {
    if !should_run("bulk_100mb_both_directions_arrive_intact", &BASE_TOOLS) {
        return;
    }
    let t0 = Instant::now();
    let mut r = rig("b", "lab-dual-wan-failover.yaml");
    // Download: the server in inet sends, a LAN client receives (un-NAT path, GSO super-frames).
    let (sent, got) = bulk(&r.lab, true, 9000, None, BULK_BYTES);
    eprintln!(
        "100 MB inet -> lan through the router: sent {} B hash {}, received {} B hash {}, {:.2} s, {:.0} Mbit/s",
        sent.bytes, sent.hash, got.bytes, got.hash, got.secs, got.mbit_s
    );
    assert_eq!(got.bytes, BULK_BYTES);
    assert_eq!(got.hash, sent.hash, "the download was corrupted on the way");
    // Upload: a LAN client (from 10.0.0.5) sends, the server in inet receives (SNAT path).
    let (sent, got) = bulk(&r.lab, false, 9001, Some("10.0.0.5"), BULK_BYTES);
    eprintln!(
        "100 MB lan -> inet through the router: sent {} B hash {}, received {} B hash {}, {:.2} s, {:.0} Mbit/s",
        sent.bytes, sent.hash, got.bytes, got.hash, got.secs, got.mbit_s
    );
    assert_eq!(got.bytes, BULK_BYTES);
    assert_eq!(got.hash, sent.hash, "the upload was corrupted on the way");
    let st = r.settled_status();
    eprintln!("router: {}", st.summary());
    let g1 = st.gateway("isp1").unwrap();
    assert!(g1.in_bytes >= BULK_BYTES, "{}", st.summary());
    assert!(g1.out_bytes >= BULK_BYTES, "{}", st.summary());
    r.finish();
    eprintln!("wall time {:.1} s", t0.elapsed().as_secs_f64());
}

#[test]
fn bulk_with_software_checksums_verified_by_receivers() {
    if !should_run(
        "bulk_with_software_checksums_verified_by_receivers",
        &[
            BASE_TOOLS[0],
            BASE_TOOLS[1],
            BASE_TOOLS[2],
            ("ethtool", "--version"),
            ("nstat", "-V"),
        ],
    ) {
        return;
    }
    let t0 = Instant::now();
    // On veth a partial checksum is trusted end to end, so wrong NAT checksum maths can pass
    // unnoticed. Here the router's peers send finished frames (no TX checksum offload, no
    // TSO/GSO) and every receiver verifies checksums in software (RX checksum offload off).
    let r = rig("c", "lab-dual-wan-failover.yaml");
    r.lab.set_peer_offloads(false).unwrap();
    for (role, dev) in [
        ("lan", "lan0"),
        ("isp1", "i1-rtr"),
        ("isp1", "i1-inet"),
        ("isp2", "i2-rtr"),
        ("inet", "n-i1"),
        ("inet", "n-i2"),
    ] {
        r.lab
            .exec_ok(
                role,
                &["ethtool", "-K", dev, "rx", "off"],
                Duration::from_secs(10),
            )
            .unwrap();
    }
    const BYTES: u64 = 50_000_000;
    let down = bulk(&r.lab, true, 9002, None, BYTES);
    let up = bulk(&r.lab, false, 9003, Some("10.0.0.6"), BYTES);
    for (what, (sent, got)) in [("inet -> lan", down), ("lan -> inet", up)] {
        eprintln!(
            "50 MB {what}, software checksums: {} B, hashes {} / {}, {:.0} Mbit/s",
            got.bytes, sent.hash, got.hash, got.mbit_s
        );
        assert_eq!(got.bytes, BYTES, "{what}");
        assert_eq!(got.hash, sent.hash, "{what}: corrupted");
    }
    // UDP too (the whoami replies), then no checksum error anywhere.
    let t = r.udp_from("10.0.0.6", 10);
    assert_eq!(t.count(ISP1), 10, "{t:?}");
    for role in ["lan", "isp1", "inet"] {
        assert_eq!(
            checksum_errors(&r.lab, role),
            0,
            "checksum errors in {role}"
        );
    }
    r.finish();
    eprintln!("wall time {:.1} s", t0.elapsed().as_secs_f64());
}

#[test]
fn policy_rules_rip_cord_via_isp2_port_rule_and_pin_via_isp1() {
    if !should_run(
        "policy_rules_rip_cord_via_isp2_port_rule_and_pin_via_isp1",
        &BASE_TOOLS,
    ) {
        return;
    }
    let t0 = Instant::now();
    let r = rig("p", "lab-policy-rules.yaml");

    // rip-cord (src 10.0.0.8/29 → isp2) over UDP from both lab addresses in the subnet.
    for src in ["10.0.0.8", "10.0.0.9"] {
        let t = r.udp_from(src, 10);
        eprintln!("udp from {src}: {t:?}");
        assert_eq!(
            t.count(ISP2),
            10,
            "rip-cord {src} must leave via isp2: {t:?}"
        );
    }
    // The same over TCP to port 8000: rip-cord comes before the "8000-8100 via isp1" rule.
    let t = r.tcp_from("10.0.0.9", 20);
    eprintln!("tcp from 10.0.0.9: {t:?}");
    assert_eq!(
        t.count(ISP2),
        20,
        "rip-cord over TCP must leave via isp2: {t:?}"
    );
    // Everyone else to TCP 8000 matches the port rule → isp1.
    let t = r.tcp(30);
    eprintln!("tcp from 10.0.0.2: {t:?}");
    assert_eq!(t.count(ISP1), 30, "{t:?}");
    // 10.0.0.3 is pinned to isp1 (UDP 7000 matches no rule).
    let t = r.udp_from("10.0.0.3", 10);
    assert_eq!(t.count(ISP1), 10, "pinned client: {t:?}");
    // A client without rule or pin is load-balanced: over 30 UDP exchanges from one address
    // (30 source ports) both gateways show up.
    let t = r.udp_from("10.0.0.4", 30);
    eprintln!("udp from 10.0.0.4 (load-balanced): {t:?}");
    assert_eq!(t.ok(), 30, "{t:?}");
    assert!(t.count(ISP1) > 0 && t.count(ISP2) > 0, "{t:?}");
    r.finish();
    eprintln!("wall time {:.1} s", t0.elapsed().as_secs_f64());
}

#[test]
fn weighted_4to1_split_over_250_connections() {
    if !should_run("weighted_4to1_split_over_250_connections", &BASE_TOOLS) {
        return;
    }
    let t0 = Instant::now();
    let mut r = rig("w", "lab-weighted-4to1.yaml");
    const N: usize = 250;
    let t = r.tcp(N);
    let share = t.count(ISP1) as f64 / t.ok().max(1) as f64;
    eprintln!("weighted: {t:?}, isp1 share {:.1} %", share * 100.0);
    assert_eq!(t.failed, 0, "{t:?}");
    assert_eq!(t.count(ISP1) + t.count(ISP2), N, "{t:?}");
    assert!(
        (0.72..=0.88).contains(&share),
        "isp1 share {:.1} % is outside 80 % ± 8 %: {t:?}",
        share * 100.0
    );
    // The router's per-gateway flow counters agree with the server's view.
    let st = r.settled_status();
    eprintln!("router: {}", st.summary());
    let cfg = altroute::config::Config::load(&example("lab-weighted-4to1.yaml")).unwrap();
    let gws = GatewayAddrs(
        cfg.gateways
            .iter()
            .map(|g| (g.name.clone(), cfg.nat_address(g).unwrap().to_string()))
            .collect(),
    );
    assert_eq!(gws.name_of(ISP1), Some("isp1"));
    let (g1, g2) = (st.gateway("isp1").unwrap(), st.gateway("isp2").unwrap());
    assert!(g1.out_packets > g2.out_packets, "{}", st.summary());
    r.finish();
    eprintln!("wall time {:.1} s", t0.elapsed().as_secs_f64());
}

/// Runs `altroute demo` and returns (exit code, stdout).
fn demo_cmd(prefix: &str, extra: &[&str]) -> Child {
    Command::new(BIN)
        .args(["demo", "--prefix", prefix, "-n", "50"])
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn demo_runs_through_and_leaves_nothing_behind() {
    if !should_run("demo_runs_through_and_leaves_nothing_behind", &BASE_TOOLS) {
        return;
    }
    let t0 = Instant::now();
    let prefix = format!("ar{}d-", std::process::id());
    let child = KillOnDrop(demo_cmd(&prefix, &[]));
    let mut child = child;
    let mut stdout = String::new();
    std::io::Read::read_to_string(child.0.stdout.as_mut().unwrap(), &mut stdout).unwrap();
    let status = child.0.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.0.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    eprintln!("{stdout}");
    assert!(
        status.success(),
        "demo failed: {status}\n{stdout}\n{stderr}"
    );
    for needle in [
        "[2/6]",
        "split as the server saw it",
        "failover: new connections flow again (none via isp1)",
        "failback: new connections via isp1 192.0.2.1 again",
        "router stopped with SIGTERM: exit status: 0",
        &format!("lab {prefix} deleted"),
    ] {
        assert!(stdout.contains(needle), "missing {needle:?} in:\n{stdout}");
    }
    assert_eq!(leftovers(&prefix), Vec::<String>::new());
    eprintln!("wall time {:.1} s", t0.elapsed().as_secs_f64());
}

#[test]
fn demo_interrupted_tears_everything_down() {
    if !should_run("demo_interrupted_tears_everything_down", &BASE_TOOLS) {
        return;
    }
    // SIGINT to the demo alone once traffic ran, then to its whole process group (what Ctrl-C in
    // a terminal does: the router and the lab commands get it too) while isp1 is black-holed.
    interrupt_demo("i", "[2/6]", false);
    interrupt_demo("g", "[4/6]", true);
}

fn interrupt_demo(tag: &str, at: &str, whole_group: bool) {
    use std::os::unix::process::CommandExt;
    let t0 = Instant::now();
    let prefix = format!("ar{}{tag}-", std::process::id());
    let mut cmd = Command::new(BIN);
    cmd.args(["demo", "--prefix", &prefix, "-n", "50"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if whole_group {
        cmd.process_group(0);
    }
    let mut child = KillOnDrop(cmd.spawn().unwrap());
    let pid = child.0.id().to_string();
    let mut lines = BufReader::new(child.0.stdout.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut l = String::new();
        assert!(
            lines.read_line(&mut l).unwrap() > 0,
            "demo ended early:\n{seen}"
        );
        seen.push_str(&l);
        if l.starts_with(at) {
            break;
        }
    }
    let router_pid = seen
        .split("router started (pid ")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .unwrap()
        .to_string();
    let target = if whole_group {
        format!("-{pid}")
    } else {
        pid.clone()
    };
    assert!(
        Command::new("kill")
            .args(["-INT", "--", &target])
            .status()
            .unwrap()
            .success()
    );
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut lines, &mut rest).unwrap();
    let status = child.0.wait().unwrap();
    eprintln!("{seen}{rest}");
    assert_eq!(status.code(), Some(130), "{seen}{rest}");
    assert!(rest.contains("stopping early: interrupted"), "{rest}");
    assert!(rest.contains(": exit status: 0"), "router exit: {rest}");
    assert!(rest.contains(&format!("lab {prefix} deleted")), "{rest}");
    assert_eq!(leftovers(&prefix), Vec::<String>::new());
    assert!(
        !Path::new(&format!("/proc/{router_pid}")).exists(),
        "router {router_pid} still runs"
    );
    eprintln!(
        "interrupt ({}) wall time {:.1} s",
        if whole_group {
            "process group"
        } else {
            "demo only"
        },
        t0.elapsed().as_secs_f64()
    );
}

/// `datapath.backend: pnet`: the same pipeline fed by pnet instead of AF_PACKET rings. The
/// failover config (it asks for two workers; pnet runs one) with plain frames: the peers' TX
/// offloads off (pnet reports no "checksum not ready" mark) and `altroute setup` for the
/// router's ports (GRO off without vnet_hdr). Ping through the NAT and to the router, TCP
/// connections, and 20 MB each way intact.
#[test]
fn pnet_backend_ping_tcp_and_bulk_both_ways() {
    if !should_run(
        "pnet_backend_ping_tcp_and_bulk_both_ways",
        &[
            BASE_TOOLS[0],
            BASE_TOOLS[1],
            BASE_TOOLS[2],
            ("ping", "-V"),
            ("ethtool", "--version"),
        ],
    ) {
        return;
    }
    let t0 = Instant::now();
    let mut r = rig_with("n", |lab, dir| {
        let base = std::fs::read_to_string(example("lab-dual-wan-failover.yaml")).unwrap();
        let cfg = dir.join("pnet.yaml");
        std::fs::write(
            &cfg,
            format!("{base}\ndatapath:\n  backend: pnet\n  vnet_hdr: false\n"),
        )
        .unwrap();
        lab.set_peer_offloads(false).unwrap();
        let c = cfg.to_str().unwrap();
        lab.exec_ok(
            "rtr",
            &[BIN, "setup", "--config", c],
            Duration::from_secs(30),
        )
        .unwrap();
        cfg
    });
    let log = r.router.log_tail(40);
    assert!(log.contains("through pnet"), "{log}");
    assert!(log.contains("pnet runs one worker"), "{log}");

    for dst in ["203.0.113.10", "10.0.0.1"] {
        ping3(&r.lab, dst);
    }
    let t = r.tcp(30);
    assert_eq!((t.failed, t.count(ISP1)), (0, 30), "{t:?}");

    const BYTES: u64 = 20_000_000;
    let down = bulk(&r.lab, true, 9010, None, BYTES);
    let up = bulk(&r.lab, false, 9011, Some("10.0.0.5"), BYTES);
    for (what, (sent, got)) in [("inet -> lan", down), ("lan -> inet", up)] {
        eprintln!(
            "20 MB {what} through pnet: {} B, hashes {} / {}, {:.0} Mbit/s",
            got.bytes, sent.hash, got.hash, got.mbit_s
        );
        assert_eq!(got.bytes, BYTES, "{what}");
        assert_eq!(got.hash, sent.hash, "{what}: corrupted");
    }
    let st = r.settled_status();
    eprintln!("router: {}", st.summary());
    let g1 = st.gateway("isp1").unwrap();
    assert!(
        g1.in_bytes >= BYTES && g1.out_bytes >= BYTES,
        "{}",
        st.summary()
    );
    r.finish();
    eprintln!("wall time {:.1} s", t0.elapsed().as_secs_f64());
}
