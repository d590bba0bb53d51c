//! Gateway health and failover in the netns lab (root + netns; skipped with a printed reason
//! unless `ALTROUTE_REQUIRE_NETNS` is set, then missing root/tools is a failure).
//!
//! Each test builds its own lab (prefix `fo<pid><letter>-`), runs `altroute run` in the router
//! namespace with a status file, drives traffic from threads that entered the LAN namespace, and
//! tears everything down on every exit path (the `Lab` and the router are Drop guards). The tests
//! take a lock so that only one lab runs at a time (2 shared cores): the timings they assert are
//! loose (CPU contention); `crates/altroute/scripts/failover-times.sh` measures them precisely
//! (set `ALTROUTE_FAILOVER_MEASURE=1` and each test prints `MEASURE name key=value` lines).
//!
//! - (a) `probes_blackhole_*`: isp1 black-holed (link up) while a client opens a connection every
//!   50 ms (800 ms connect timeout): new connections succeed through isp2 soon (goal < 1 s);
//!   (b) meanwhile a UDP ping-pong pinned to isp2 loses nothing, through the black-hole and the
//!   recovery; (c) isp1 is preferred again only after the stable window; down/up hooks run.
//! - (a) `passive_syn_retry_*`: the same black-hole with probes effectively off (one round an
//!   hour): only SYN-retry rotation (threshold 2, the 3rd SYN) moves connections (goal < 3.5 s).
//! - `passive_signal_*`: slow probes (1 s); failing connections boost the probe rate and, with 3
//!   unanswered rounds, take isp1 down before the 6-round window of the slow probes could.
//! - (d) `loss_burst_*`: 30 % loss on isp1 for 2 s does not take it down.
//! - (e) `dead_second_target_*`: two targets, one not routed: isp1 stays usable, degraded.
//! - `wait_*`: with `on_gateway_down: wait` a flow of the dead gateway is not rejected and
//!   resumes with the same NAT mapping when the gateway is back.
//! - `operator_*`: the API (through the CLI) disables a gateway, holds one up in manual mode, and
//!   a reload puts the file's configuration back, without a restart.

// Helpers outside `#[test]` functions are test code too: a failed lab step must fail the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use altroute::config::Config;
use altroute_lab::tool::tcp_once;
use altroute_lab::{Forwarder, Isp, Lab};

const BIN: &str = env!("CARGO_BIN_EXE_altroute");
const ISP1: &str = "192.0.2.1";
const ISP2: &str = "198.51.100.1";
const SERVER: &str = "203.0.113.10:8000";

mod common;
use common::should_run;

/// What these tests need besides root.
const NETNS_TOOLS: &[(&str, &str)] = &[("ip", "-V"), ("nft", "--version")];

/// One lab at a time in this binary.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn measure(name: &str, kv: &[(&str, String)]) {
    let line: Vec<String> = kv.iter().map(|(k, v)| format!("{k}={v}")).collect();
    // Always on stderr (shown with --nocapture); the script greps these lines.
    eprintln!("MEASURE {name} {}", line.join(" "));
}

/// The example configuration, changed by `edit`.
fn example_config(edit: impl FnOnce(&mut Config)) -> Config {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/lab-dual-wan-failover.yaml");
    let mut cfg = Config::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    edit(&mut cfg);
    cfg
}

/// A directory removed when dropped (also when the test fails).
struct TempDir(PathBuf);

impl TempDir {
    fn new(what: &str) -> TempDir {
        let d = std::env::temp_dir().join(format!("altroute-fo{}-{what}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `altroute run` in the lab's router namespace; killed (by its pid) when dropped.
struct Router {
    child: Child,
    dir: PathBuf,
    status: PathBuf,
}

impl Drop for Router {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::env::var_os("ALTROUTE_KEEP_LOGS").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl Router {
    fn start(lab: &Lab, cfg: &Config) -> Router {
        let dir = std::env::temp_dir().join(format!("altroute-{}", lab.prefix()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let cfg_path = dir.join("config.yaml");
        std::fs::write(&cfg_path, serde_norway::to_string(cfg).unwrap()).unwrap();
        let status = dir.join("status.json");
        let log = std::fs::File::create(dir.join("router.log")).unwrap();
        let child = Command::new(BIN)
            .args(["run", "--config"])
            .arg(&cfg_path)
            .args(["--netns", &lab.ns("rtr"), "--status-file"])
            .arg(&status)
            .arg("--api-socket")
            .arg(dir.join("api.sock"))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Router { child, dir, status }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("router.log")).unwrap_or_default()
    }

    fn status(&self) -> Option<serde_json::Value> {
        let text = std::fs::read_to_string(&self.status).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// The state of gateway `gi` in the status file.
    fn state(&self, gi: usize) -> Option<String> {
        self.status()?["gateways"][gi]["state"]
            .as_str()
            .map(str::to_string)
    }

    /// Waits until `pred(state)` holds for gateway `gi`; returns when it was seen.
    fn wait_state(&self, gi: usize, limit: Duration, pred: impl Fn(&str) -> bool) -> Instant {
        let deadline = Instant::now() + limit;
        loop {
            if self.state(gi).is_some_and(|s| pred(&s)) {
                return Instant::now();
            }
            assert!(
                Instant::now() < deadline,
                "gateway #{gi} never reached the state; status {:?}\nlog:\n{}",
                self.status(),
                self.log()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs `altroute ARGS --socket <the router's API socket>`; panics unless it succeeds.
    fn cli(&self, args: &[&str]) {
        let out = Command::new(BIN)
            .args(args)
            .arg("--socket")
            .arg(self.dir.join("api.sock"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "altroute {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A running lab with the whoami server and the router, ready for traffic.
struct Setup {
    // Field order is drop order: router, server, then the namespaces.
    router: Router,
    _server: altroute_lab::Background,
    lab: Lab,
}

fn setup(letter: char, cfg: &Config) -> Setup {
    let prefix = format!("fo{}{letter}-", std::process::id());
    let lab = Lab::up(&prefix, Forwarder::Router).expect("lab up");
    let whoami = lab
        .spawn(
            "inet",
            &[BIN, "lab-tool", "serve", "--tcp", SERVER, "--udp", SERVER],
        )
        .unwrap();
    let router = Router::start(&lab, cfg);
    let s = Setup {
        router,
        _server: whoami,
        lab,
    };
    // Ready when both gateways' MACs are known and a connection goes through.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let macs = s.router.status().is_some_and(|v| {
            v["gateways"]
                .as_array()
                .is_some_and(|g| g.iter().all(|g| g["mac"].is_string()))
        });
        if macs && in_lan(&s.lab, || tcp_once(server(), Duration::from_millis(500))).is_ok() {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "router not ready: {:?}\n{}",
            s.router.status(),
            s.router.log()
        );
        thread::sleep(Duration::from_millis(100));
    }
}

fn server() -> SocketAddr {
    SERVER.parse().unwrap()
}

/// Runs `f` on a thread inside the lab's LAN namespace.
fn in_lan<T: Send + 'static>(lab: &Lab, f: impl FnOnce() -> T + Send + 'static) -> T {
    let ns = lab.ns("lan");
    thread::spawn(move || {
        altroute_io::netns::enter(&ns).unwrap();
        f()
    })
    .join()
    .unwrap()
}

/// One connection attempt of the continuous client.
#[derive(Clone, Debug)]
struct Attempt {
    start: Instant,
    end: Instant,
    result: Result<String, &'static str>,
}

/// Opens a TCP connection every `every` from the LAN namespace (each on its own thread, with
/// `timeout`) until stopped; the attempts are returned by [`Client::stop`].
struct Client {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Vec<Attempt>>>,
}

impl Client {
    fn start(lab: &Lab, every: Duration, timeout: Duration) -> Client {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let ns = lab.ns("lan");
        let handle = thread::spawn(move || {
            altroute_io::netns::enter(&ns).unwrap();
            let out = Arc::new(Mutex::new(Vec::new()));
            let mut workers = Vec::new();
            let mut next = Instant::now();
            while !flag.load(Ordering::Relaxed) {
                let out = Arc::clone(&out);
                // Threads started here inherit this thread's network namespace.
                workers.push(thread::spawn(move || {
                    let start = Instant::now();
                    let result = tcp_once(server(), timeout);
                    let a = Attempt {
                        start,
                        end: Instant::now(),
                        result,
                    };
                    out.lock().unwrap().push(a);
                }));
                next += every;
                let now = Instant::now();
                if next > now {
                    thread::sleep(next - now);
                } else {
                    next = now;
                }
            }
            for w in workers {
                let _ = w.join();
            }
            let mut v = out.lock().unwrap().clone();
            v.sort_by_key(|a| a.start);
            v
        });
        Client {
            stop,
            handle: Some(handle),
        }
    }

    fn stop(mut self) -> Vec<Attempt> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.take().unwrap().join().unwrap()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A UDP ping-pong from `bind` (one exchange at a time, 1 s to answer) until stopped.
struct PingPong {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<(u64, u64, Vec<String>)>>,
}

impl PingPong {
    fn start(lab: &Lab, bind: &str, every: Duration) -> PingPong {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let ns = lab.ns("lan");
        let bind: SocketAddr = format!("{bind}:0").parse().unwrap();
        let handle = thread::spawn(move || {
            altroute_io::netns::enter(&ns).unwrap();
            let s = UdpSocket::bind(bind).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
            let (mut sent, mut lost) = (0u64, 0u64);
            let mut seen = Vec::new();
            let mut buf = [0u8; 256];
            while !flag.load(Ordering::Relaxed) {
                sent += 1;
                s.send_to(format!("ping {sent}").as_bytes(), server())
                    .unwrap();
                match s.recv_from(&mut buf) {
                    Ok((n, _)) => {
                        let text = String::from_utf8_lossy(&buf[..n]).trim().to_string();
                        let ip = text
                            .rsplit_once(':')
                            .map_or(text.clone(), |(ip, _)| ip.into());
                        if !seen.contains(&ip) {
                            seen.push(ip);
                        }
                    }
                    Err(_) => lost += 1,
                }
                thread::sleep(every);
            }
            (sent, lost, seen)
        });
        PingPong {
            stop,
            handle: Some(handle),
        }
    }

    fn stop(mut self) -> (u64, u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.take().unwrap().join().unwrap()
    }
}

impl Drop for PingPong {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Replies seen (addresses, in order of change), and the first error with its time.
type UdpOutcome = (Vec<String>, Option<(std::io::ErrorKind, Instant)>);

/// A connected UDP ping-pong from `bind` (through the policy's gateway) that stops at the first
/// error other than a timeout: returns (replies seen, the error and when it came).
fn udp_until_error(lab: &Lab, bind: &str, limit: Duration) -> JoinHandle<UdpOutcome> {
    let ns = lab.ns("lan");
    let bind: SocketAddr = format!("{bind}:0").parse().unwrap();
    thread::spawn(move || {
        altroute_io::netns::enter(&ns).unwrap();
        let s = UdpSocket::bind(bind).unwrap();
        s.connect(server()).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let deadline = Instant::now() + limit;
        let mut seen = Vec::new();
        let mut buf = [0u8; 256];
        while Instant::now() < deadline {
            let r = s.send(b"ping").and_then(|_| s.recv(&mut buf));
            match r {
                Ok(n) => {
                    let text = String::from_utf8_lossy(&buf[..n]).trim().to_string();
                    let ip = text
                        .rsplit_once(':')
                        .map_or(text.clone(), |(ip, _)| ip.into());
                    if seen.last() != Some(&ip) {
                        seen.push(ip);
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return (seen, Some((e.kind(), Instant::now()))),
            }
            thread::sleep(Duration::from_millis(50));
        }
        (seen, None)
    })
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

/// Time from `t0` to the first successful connection through `via` among those started after
/// `t0`; and the start of the first attempt after which every attempt succeeded through `via`.
fn failover_times(attempts: &[Attempt], t0: Instant, via: &str) -> (Option<u64>, Option<u64>) {
    let after: Vec<&Attempt> = attempts.iter().filter(|a| a.start >= t0).collect();
    let first_ok = after
        .iter()
        .filter(|a| a.result.as_deref() == Ok(via))
        .map(|a| ms(a.end - t0))
        .min();
    let last_bad = after.iter().rposition(|a| a.result.as_deref() != Ok(via));
    let steady = match last_bad {
        None => after.first().map(|a| ms(a.start - t0)),
        Some(i) => after.get(i + 1).map(|a| ms(a.start - t0)),
    };
    (first_ok, steady)
}

fn summary(attempts: &[Attempt]) -> String {
    let mut by: std::collections::BTreeMap<String, usize> = Default::default();
    for a in attempts {
        let k = match &a.result {
            Ok(ip) => ip.clone(),
            Err(e) => (*e).to_string(),
        };
        *by.entry(k).or_default() += 1;
    }
    format!("{by:?}")
}

/// (a) with probes, (b) a flow pinned to isp2 loses nothing, (c) failback after the stable
/// window; the down and up hooks run with their environment.
#[test]
fn probes_blackhole_fails_over_fast_isp2_lossless_failback_after_stable_window() {
    if !should_run("probes_blackhole", NETNS_TOOLS) {
        return;
    }
    let _one = serial();
    let hooks = TempDir::new("hooks");
    let hooks = hooks.0.as_path();
    let hook = |what: &str| {
        format!(
            "echo \"$ALTROUTE_GATEWAY $ALTROUTE_STATE $ALTROUTE_REASON\" > {}/{what}",
            hooks.display()
        )
    };
    let cfg = example_config(|c| {
        c.pins = serde_norway::from_str("[{client: 10.0.0.9/32, gateway: isp2}]").unwrap();
        c.gateways[0].hooks.down = Some(hook("down"));
        c.gateways[0].hooks.up = Some(hook("up"));
    });
    let stable = u64::from(cfg.gateways[0].probe.failback_stable_ms);
    let s = setup('a', &cfg);
    let pp = PingPong::start(&s.lab, "10.0.0.9", Duration::from_millis(20));
    // A UDP flow on isp1: rejected (ICMP prohibited) once isp1 is down (on_gateway_down: reset).
    let on_isp1 = udp_until_error(&s.lab, "10.0.0.5", Duration::from_secs(8));
    let client = Client::start(
        &s.lab,
        Duration::from_millis(50),
        Duration::from_millis(800),
    );
    thread::sleep(Duration::from_secs(1));

    let t0 = Instant::now();
    s.lab.blackhole(Isp::One).unwrap();
    // The rule is in force somewhere between t0 and t0b; times are measured from t0.
    let t0b = Instant::now();
    let down_seen = s
        .router
        .wait_state(0, Duration::from_secs(10), |st| st == "down");
    // A flow that starts on isp2 during the outage stays there after failback (failback: stay).
    thread::sleep(Duration::from_millis(200));
    let moved = PingPong::start(&s.lab, "10.0.0.6", Duration::from_millis(50));
    thread::sleep(Duration::from_secs(2));
    let reason = s.router.status().unwrap()["gateways"][0]["reason"].clone();

    let t1 = Instant::now();
    s.lab.restore(Isp::One).unwrap();
    let up_seen = s
        .router
        .wait_state(0, Duration::from_secs(20), |st| st == "up");
    thread::sleep(Duration::from_millis(1500));
    let attempts = client.stop();
    let (sent, lost, seen) = pp.stop();
    let (isp1_seen, isp1_err) = on_isp1.join().unwrap();
    let (moved_sent, moved_lost, moved_seen) = moved.stop();

    let outage: Vec<Attempt> = attempts.iter().filter(|a| a.start < t1).cloned().collect();
    let (first_ok, steady) = failover_times(&outage, t0, ISP2);
    let failback = ms(up_seen - t1);
    measure(
        "probes_on",
        &[
            ("first_ok_ms", format!("{first_ok:?}")),
            ("all_ok_from_ms", format!("{steady:?}")),
            ("down_seen_ms", ms(down_seen - t0).to_string()),
            ("failback_ms", failback.to_string()),
            ("udp_sent", sent.to_string()),
            ("udp_lost", lost.to_string()),
        ],
    );
    eprintln!(
        "attempts: {}; isp1 down because {reason}",
        summary(&attempts)
    );
    let first_ok = first_ok.expect("no connection succeeded through isp2 after the black-hole");
    // Goal < 1 s (measured by the script); loose here for CPU contention.
    assert!(first_ok < 3000, "failover took {first_ok} ms");
    assert!(
        reason.as_str().is_some_and(|r| r.contains("loss")),
        "{reason}"
    );
    // The established flow of the dead link was rejected (reset), after the down transition.
    assert_eq!(isp1_seen, vec![ISP1.to_string()]);
    let (kind, when) = isp1_err.expect("the UDP flow on isp1 was never rejected");
    assert!(
        when >= down_seen - Duration::from_millis(300),
        "rejected before isp1 was down"
    );
    eprintln!("UDP flow on isp1: {kind:?} after {} ms", ms(when - t0));
    assert_eq!(
        moved_seen,
        vec![ISP2.to_string()],
        "a flow started during the outage"
    );
    assert_eq!(
        moved_lost, 0,
        "lost {moved_lost} of {moved_sent} on the moved flow"
    );
    // (b) The flow pinned to isp2 lost nothing, and never left isp2.
    assert_eq!(lost, 0, "UDP through isp2 lost {lost} of {sent}");
    assert_eq!(seen, vec![ISP2.to_string()]);
    // (c) Failback after the stable window, not before; nothing started meanwhile used isp1.
    assert!(
        failback >= stable,
        "isp1 preferred again {failback} ms after the restore (stable window {stable} ms)"
    );
    assert!(failback < stable + 10_000, "failback took {failback} ms");
    let early: Vec<&Attempt> = attempts
        .iter()
        .filter(|a| a.start > t0b && a.end < t1 + Duration::from_millis(stable))
        .filter(|a| a.result.as_deref() == Ok(ISP1))
        .collect();
    assert!(early.is_empty(), "isp1 used before failback: {early:?}");
    let after: Vec<&Attempt> = attempts
        .iter()
        .filter(|a| a.start > up_seen + Duration::from_millis(200))
        .collect();
    assert!(!after.is_empty());
    assert!(
        after.iter().all(|a| a.result.as_deref() == Ok(ISP1)),
        "after failback: {}",
        summary(&after.iter().map(|a| (*a).clone()).collect::<Vec<_>>())
    );
    // The transitions are in the status file, and the hooks ran with their environment.
    let st = s.router.status().unwrap();
    let tos: Vec<&str> = st["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["gateway"] == "isp1")
        .filter_map(|t| t["to"].as_str())
        .collect();
    assert_eq!(tos, vec!["down", "up"], "{st}");
    let down = std::fs::read_to_string(hooks.join("down")).unwrap_or_default();
    let up = std::fs::read_to_string(hooks.join("up")).unwrap_or_default();
    assert!(down.starts_with("isp1 down "), "{down:?}");
    assert!(up.starts_with("isp1 up "), "{up:?}");
}

/// (a) without probes: SYN-retry rotation alone moves new connections to isp2.
#[test]
fn passive_syn_retry_fails_over_without_probes() {
    if !should_run("passive_syn_retry", NETNS_TOOLS) {
        return;
    }
    let _one = serial();
    let cfg = example_config(|c| {
        for g in &mut c.gateways {
            // One round an hour: effectively no probes after the first one.
            g.probe.interval_ms = 3_600_000;
            g.probe.timeout_ms = 1000;
        }
        c.policy.syn_retry.enabled = true;
        c.policy.syn_retry.threshold = 2;
        // SYN-retry rotation alone: no failure-rate redirect, hence no passive health signal and
        // no probe boost either.
        c.policy.failure_redirect.enabled = false;
    });
    let s = setup('b', &cfg);
    // The client's SYN schedule: Linux ≥ 6.5 retransmits the first `tcp_syn_linear_timeouts`
    // (default 4) SYNs after 1 s each (1, 2, 3, 4 s), older kernels after 1 s then doubling
    // (1, 3, 7 s). ALTROUTE_CLASSIC_SYN=1 sets the LAN namespace to the old schedule.
    if std::env::var_os("ALTROUTE_CLASSIC_SYN").is_some_and(|v| v == "1") {
        let _ = s.lab.exec(
            "lan",
            &["sysctl", "-w", "net.ipv4.tcp_syn_linear_timeouts=0"],
            Duration::from_secs(5),
        );
    }
    let linear = s
        .lab
        .exec(
            "lan",
            &["sysctl", "-n", "net.ipv4.tcp_syn_linear_timeouts"],
            Duration::from_secs(5),
        )
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .parse::<u32>()
                .ok()
        })
        .unwrap_or(0);
    // The rotation happens on SYN number threshold + 1, i.e. retransmission number `threshold`.
    let retransmit_at = |k: u32| -> u64 {
        (1..=k)
            .map(|i| {
                if i <= linear {
                    1000
                } else {
                    1000 << (i - linear - 1).min(6)
                }
            })
            .sum()
    };
    let expected = retransmit_at(cfg.policy.syn_retry.threshold);
    let client = Client::start(&s.lab, Duration::from_millis(50), Duration::from_secs(5));
    thread::sleep(Duration::from_secs(1));
    let t0 = Instant::now();
    s.lab.blackhole(Isp::One).unwrap();
    let t0b = Instant::now();
    thread::sleep(Duration::from_secs(6));
    let attempts = client.stop();
    let (first_ok, steady) = failover_times(&attempts, t0, ISP2);
    // SYN-retry rotation alone: the attempts that started in the first 300 ms of the black-hole
    // (before the failure-rate redirect can have seen any failure) and how long they took.
    let rotated: Vec<u64> = attempts
        .iter()
        .filter(|a| a.start > t0b && a.start < t0b + Duration::from_millis(300))
        .map(|a| match &a.result {
            Ok(ip) if ip == ISP2 => ms(a.end - a.start),
            _ => u64::MAX,
        })
        .collect();
    let rotated_worst = rotated.iter().copied().max();
    let rotated_first = rotated.iter().copied().min();
    measure(
        "passive",
        &[
            ("first_ok_ms", format!("{first_ok:?}")),
            ("all_ok_from_ms", format!("{steady:?}")),
            ("syn_linear_timeouts", linear.to_string()),
            ("syn_retry_expected_ms", expected.to_string()),
            ("syn_retry_first_ms", format!("{rotated_first:?}")),
            ("syn_retry_worst_ms", format!("{rotated_worst:?}")),
        ],
    );
    eprintln!("attempts: {}; rotated: {rotated:?}", summary(&attempts));
    let first_ok = first_ok.expect("no connection succeeded through isp2 after the black-hole");
    // Goal < 3.5 s; loose here.
    assert!(
        first_ok < 6000,
        "first connection through isp2 after {first_ok} ms"
    );
    // Threshold 2 moves the attempt on its 3rd SYN (2nd retransmission: 2 s here with linear
    // timeouts, 3 s with the classic schedule): every attempt started at the black-hole succeeds
    // through isp2 then, none before.
    assert!(!rotated.is_empty());
    let worst = rotated_worst.unwrap_or(u64::MAX);
    let first = rotated_first.unwrap_or(0);
    assert!(
        first + 300 >= expected && worst < expected + 2000,
        "SYN-retry rotation took {rotated:?} ms, expected ~{expected} ms"
    );
    assert_eq!(
        s.router.state(0).as_deref(),
        Some("up"),
        "no probes: nothing takes isp1 down"
    );
}

/// The passive signal in the lab: with slow probes (1 s, down after 6 lost in a row), failing
/// connections (probe boost + passive signal) take isp1 down well before the probe window would.
#[test]
fn passive_signal_takes_gateway_down_before_the_probe_window() {
    if !should_run("passive_signal", NETNS_TOOLS) {
        return;
    }
    let _one = serial();
    let cfg = example_config(|c| {
        let g = &mut c.gateways[0];
        g.probe.interval_ms = 1000;
        g.probe.timeout_ms = 500;
        g.probe.down.rounds = 6;
        g.probe.up.rounds = 6;
    });
    let s = setup('p', &cfg);
    let client = Client::start(&s.lab, Duration::from_millis(50), Duration::from_secs(5));
    thread::sleep(Duration::from_secs(1));
    let t0 = Instant::now();
    s.lab.blackhole(Isp::One).unwrap();
    let down = s
        .router
        .wait_state(0, Duration::from_secs(15), |st| st == "down");
    let _ = client.stop();
    let reason = s.router.status().unwrap()["gateways"][0]["reason"].clone();
    measure(
        "passive_signal",
        &[("down_seen_ms", ms(down - t0).to_string())],
    );
    eprintln!("isp1 down after {} ms: {reason}", ms(down - t0));
    // Probes alone: the 6th lost round is sent ≥ 5 s after the black-hole and judged 0.5 s later.
    // Failing connections make the control thread probe every 200 ms and the passive signal needs
    // 3 unanswered rounds: either way, down well before that.
    assert!(
        s.router.log().contains("probing every 200 ms"),
        "no probe boost: {}",
        s.router.log()
    );
    assert!(down - t0 < Duration::from_millis(5500), "{:?}", down - t0);
}

/// `on_gateway_down: wait`: the flows of a dead gateway keep their mapping (no reject, packets
/// dropped) and carry on through it, with the same NAT port, once it is back.
#[test]
fn wait_keeps_the_flows_of_a_dead_gateway() {
    if !should_run("wait", NETNS_TOOLS) {
        return;
    }
    let _one = serial();
    let cfg = example_config(|c| {
        c.policy.on_gateway_down = altroute::config::OnGatewayDown::Wait;
    });
    let s = setup('w', &cfg);
    let ns = s.lab.ns("lan");
    let (sock, before) = thread::spawn(move || {
        altroute_io::netns::enter(&ns).unwrap();
        let u = UdpSocket::bind("10.0.0.5:0").unwrap();
        u.connect(server()).unwrap();
        u.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut buf = [0u8; 256];
        u.send(b"ping").unwrap();
        let n = u.recv(&mut buf).unwrap();
        let first = String::from_utf8_lossy(&buf[..n]).trim().to_string();
        (u, first)
    })
    .join()
    .unwrap();
    assert!(before.starts_with(&format!("{ISP1}:")), "{before}");
    s.lab.blackhole(Isp::One).unwrap();
    s.router
        .wait_state(0, Duration::from_secs(10), |st| st == "down");
    thread::sleep(Duration::from_millis(200));
    // While down: only timeouts (dropped), no ICMP prohibited.
    let mut buf = [0u8; 256];
    for _ in 0..4 {
        sock.send(b"ping").unwrap();
        let e = sock
            .recv(&mut buf)
            .expect_err("an answer through a black-hole");
        assert!(
            matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "wait mode answered {e}"
        );
    }
    s.lab.restore(Isp::One).unwrap();
    s.router
        .wait_state(0, Duration::from_secs(20), |st| st == "up");
    thread::sleep(Duration::from_millis(300));
    let mut after = None;
    for _ in 0..10 {
        let _ = sock.send(b"ping");
        if let Ok(n) = sock.recv(&mut buf) {
            after = Some(String::from_utf8_lossy(&buf[..n]).trim().to_string());
            break;
        }
    }
    assert_eq!(
        after.as_deref(),
        Some(before.as_str()),
        "same isp1 mapping after the outage"
    );
}

/// (d) a 30 % loss burst (each way) for 2 s does not take isp1 down.
#[test]
fn loss_burst_30pct_does_not_flap() {
    if !should_run("loss_burst", NETNS_TOOLS) {
        return;
    }
    let _one = serial();
    let cfg = example_config(|_| {});
    let s = setup('d', &cfg);
    let client = Client::start(&s.lab, Duration::from_millis(100), Duration::from_secs(3));
    thread::sleep(Duration::from_millis(500));
    s.lab.loss(Isp::One, 30).unwrap();
    let end = Instant::now() + Duration::from_secs(2);
    let mut states = Vec::new();
    while Instant::now() < end {
        if let Some(st) = s.router.state(0)
            && states.last() != Some(&st)
        {
            states.push(st);
        }
        thread::sleep(Duration::from_millis(20));
    }
    s.lab.restore(Isp::One).unwrap();
    thread::sleep(Duration::from_secs(1));
    let attempts = client.stop();
    let st = s.router.status().unwrap();
    let isp1: Vec<String> = st["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["gateway"] == "isp1")
        .map(|t| format!("{} ({})", t["to"], t["reason"]))
        .collect();
    measure("loss_burst", &[("transitions", isp1.len().to_string())]);
    eprintln!("states seen: {states:?}; attempts: {}", summary(&attempts));
    assert!(isp1.is_empty(), "isp1 flapped: {isp1:?}");
    assert_eq!(s.router.state(0).as_deref(), Some("up"));
    assert!(
        attempts
            .iter()
            .filter(|a| a.result.as_deref() == Ok(ISP1))
            .count()
            > 0,
        "{}",
        summary(&attempts)
    );
}

/// (e) two targets, one of them not routed: quorum 1 of 2 keeps isp1 usable, degraded.
#[test]
fn dead_second_target_keeps_gateway_up_degraded() {
    if !should_run("dead_second_target", NETNS_TOOLS) {
        return;
    }
    let _one = serial();
    let cfg = example_config(|c| {
        c.gateways[0].probe.targets = vec![
            "203.0.113.10".parse().unwrap(),
            // Inside 203.0.113.0/24 but on nobody's interface or route: never answers.
            "203.0.113.77".parse().unwrap(),
        ];
        c.gateways[0].probe.quorum = Some(1);
    });
    let s = setup('e', &cfg);
    let degraded = s
        .router
        .wait_state(0, Duration::from_secs(10), |st| st == "degraded");
    // Stays degraded (never down) for a while, and keeps carrying new connections.
    let mut states = Vec::new();
    while degraded.elapsed() < Duration::from_secs(2) {
        if let Some(st) = s.router.state(0)
            && states.last() != Some(&st)
        {
            states.push(st);
        }
        thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(states, vec!["degraded".to_string()]);
    let st = s.router.status().unwrap();
    let g = &st["gateways"][0];
    assert_eq!(g["target_failed"], serde_json::json!([false, true]), "{st}");
    assert!(g["reason"].as_str().unwrap().contains("1/2"), "{st}");
    let r = in_lan(&s.lab, || tcp_once(server(), Duration::from_secs(2)));
    assert_eq!(r.as_deref(), Ok(ISP1));
}

/// Operator commands through the API (the CLI), without a restart; a reload undoes them.
#[test]
fn operator_disable_force_auto_without_restart() {
    if !should_run("operator", NETNS_TOOLS) {
        return;
    }
    let _one = serial();
    let cfg = example_config(|_| {});
    let s = setup('o', &cfg);
    let via = |lab: &Lab| in_lan(lab, || tcp_once(server(), Duration::from_secs(2)));
    assert_eq!(via(&s.lab).as_deref(), Ok(ISP1));

    s.router.cli(&["disable", "isp1"]);
    s.router
        .wait_state(0, Duration::from_secs(5), |st| st == "disabled");
    // The status file is written as the change is sent to the workers; give them a moment (a
    // connection that raced the change through isp1 would be reset, as disabled flows are).
    thread::sleep(Duration::from_millis(300));
    assert_eq!(via(&s.lab).as_deref(), Ok(ISP2));
    let st = s.router.status().unwrap();
    assert_eq!(st["gateways"][0]["admin"], "disabled");
    assert_eq!(st["gateways"][0]["reason"], "operator: disabled");

    // Manual mode holds the forced gateway up whatever the probes say (here they say it is
    // dead).
    s.lab.blackhole(Isp::Two).unwrap();
    s.router.cli(&["force", "isp2"]);
    s.router.cli(&["mode", "manual"]);
    s.router
        .wait_state(1, Duration::from_secs(5), |st| st == "forced");
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.router.status().unwrap()["gateways"][1]["probed"] != "down" {
        assert!(Instant::now() < deadline, "{:?}", s.router.status());
        thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(s.router.state(1).as_deref(), Some("forced"));
    s.lab.restore(Isp::Two).unwrap();

    // A reload applies the file as it is: isp1 enabled, no force, the file's mode.
    s.router.cli(&["reload"]);
    s.router
        .wait_state(0, Duration::from_secs(5), |st| st == "up");
    s.router
        .wait_state(1, Duration::from_secs(20), |st| st == "up");
    thread::sleep(Duration::from_millis(300));
    assert_eq!(via(&s.lab).as_deref(), Ok(ISP1));
    let log = s.router.log();
    assert!(log.contains("operator: isp1 disabled"), "{log}");
    assert!(log.contains("reload: "), "{log}");
}
