//! The HTTP API, the CLI, the metrics, live reloads and the web page against a router in the
//! netns lab (root + netns; skipped with a printed reason unless `ALTROUTE_REQUIRE_NETNS` is
//! set, then missing root or tools is a failure).
//!
//! Each test builds its own lab (prefix `ap<pid><letter>-`) and runs `altroute run` in the
//! router namespace with `examples/lab-dual-wan-failover.yaml` (failover: isp1 preferred; two
//! workers), its API on a Unix socket in a temporary directory and on 127.0.0.1:9180 inside the
//! router namespace with a bearer token. Which ISP a connection left by is what the whoami
//! server in `inet` saw as its source: the NAT address of ISP1 or ISP2.
//!
//! - `cli_steers_and_reports`: `gateways` (both up), `force isp2` sends the next connection out
//!   by ISP2 (by ISP1 while isp2 is black-holed and down: `policy.force` holds while the
//!   gateway is up) and `release` back by ISP1; `pin`/`unpin` one LAN host; `mode load-balance` spreads
//!   connections over both, `mode manual` without a forced gateway is refused; `flows` and
//!   `explain` find a flow; `/metrics` parses as Prometheus text with the expected series; the
//!   TCP address asks for the token (the page does not).
//! - `reloads_keep_a_transfer_going`: a TCP transfer from the LAN keeps going, on one
//!   connection, across reloads: a good file (API), a broken file (refused with its line; the
//!   configuration in force stays), one that needs a restart (refused, naming the key) and a
//!   good one by SIGHUP.
//! - `browser_forces_isp2`: headless Chromium (Debian's `chromium` and `chromium-driver`,
//!   driven over the W3C WebDriver protocol) opens the page, gives the token when asked, shows
//!   both gateways, and a click on "force isp2" makes the next connection leave by ISP2.

// Helpers outside `#[test]` functions are test code too: a failed lab step must fail the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use altroute::api::client::{Endpoint, call};
use altroute::config::Config;
use altroute_lab::tool::{tcp_once, tcp_once_from};
use altroute_lab::{Forwarder, Isp, Lab};
use hyper::Method;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_altroute");
const ISP1: &str = "192.0.2.1";
const ISP2: &str = "198.51.100.1";
const SERVER: &str = "203.0.113.10:8000";
/// The bulk-transfer sink in `inet`.
const SINK: &str = "203.0.113.10:8001";
/// The API's TCP address inside the router namespace.
const API_TCP: &str = "127.0.0.1:9180";
const TOKEN: &str = "lab-token-0123456789";

mod common;
use common::should_run;

const NETNS_TOOLS: &[(&str, &str)] = &[("ip", "-V"), ("nft", "--version")];

/// One lab at a time in this binary.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The router as a child process, its directory (config, socket, token, log) removed when
/// dropped.
struct Router {
    child: Child,
    dir: PathBuf,
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

/// The lab's configuration with the API on [`API_TCP`] behind a token in `dir`.
fn config(dir: &Path) -> Config {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/lab-dual-wan-failover.yaml");
    let mut cfg = Config::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    cfg.api.listen = Some(API_TCP.parse().unwrap());
    cfg.api.token_file = Some(dir.join("token"));
    cfg
}

impl Router {
    fn start(lab: &Lab) -> Router {
        let dir = std::env::temp_dir().join(format!("altroute-{}", lab.prefix()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("token"), format!("{TOKEN}\n")).unwrap();
        std::fs::write(
            dir.join("config.yaml"),
            serde_norway::to_string(&config(&dir)).unwrap(),
        )
        .unwrap();
        Router {
            child: Command::new(BIN)
                .args(["run", "--config"])
                .arg(dir.join("config.yaml"))
                .args(["--netns", &lab.ns("rtr"), "--api-socket"])
                .arg(dir.join("api.sock"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(dir.join("router.log")).unwrap())
                .env("RUST_LOG", "info")
                .spawn()
                .inspect_err(|_| {
                    let _ = std::fs::remove_dir_all(&dir);
                })
                .unwrap(),
            dir,
        }
    }

    fn write_config(&self, cfg: &Config) {
        let text = serde_norway::to_string(cfg).unwrap();
        self.write_config_text(&text);
    }

    fn write_config_text(&self, text: &str) {
        let tmp = self.dir.join("config.yaml.new");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, self.dir.join("config.yaml")).unwrap();
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("api.sock")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("router.log")).unwrap_or_default()
    }

    /// `altroute ARGS --socket S`.
    fn cli(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .arg("--socket")
            .arg(self.socket())
            .output()
            .unwrap()
    }

    /// `altroute ARGS --socket S`, which must succeed; its stdout.
    fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "altroute {args:?}: {}{}\nlog:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `GET path` over the Unix socket, as JSON.
    fn get(&self, path: &str) -> Value {
        let a = call(&Endpoint::Unix(self.socket()), Method::GET, path, None).unwrap();
        assert!(a.status.is_success(), "{path}: {}", a.error_text());
        serde_json::from_slice(&a.body).unwrap()
    }
}

/// A running lab with the whoami server, the sink and the router, ready for traffic.
struct Setup {
    // Field order is drop order: router, servers, then the namespaces.
    router: Router,
    _server: altroute_lab::Background,
    lab: Lab,
}

fn setup(letter: char) -> Setup {
    let prefix = format!("ap{}{letter}-", std::process::id());
    let lab = Lab::up(&prefix, Forwarder::Router).expect("lab up");
    let whoami = lab
        .spawn("inet", &[BIN, "lab-tool", "serve", "--tcp", SERVER])
        .unwrap();
    let router = Router::start(&lab);
    let s = Setup {
        router,
        _server: whoami,
        lab,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let up = call(
            &Endpoint::Unix(s.router.socket()),
            Method::GET,
            "/api/gateways",
            None,
        )
        .ok()
        .and_then(|a| serde_json::from_slice::<Value>(&a.body).ok())
        .is_some_and(|g| {
            g.as_array()
                .is_some_and(|g| g.len() == 2 && g.iter().all(|g| g["mac"].is_string()))
        });
        if up
            && in_ns(&s.lab, "lan", || {
                tcp_once(server(), Duration::from_millis(500))
            })
            .is_ok()
        {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "router not ready\n{}",
            s.router.log()
        );
        thread::sleep(Duration::from_millis(100));
    }
}

fn server() -> SocketAddr {
    SERVER.parse().unwrap()
}

/// Runs `f` on a thread inside the lab namespace `role`.
fn in_ns<T: Send + 'static>(lab: &Lab, role: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let ns = lab.ns(role);
    thread::spawn(move || {
        altroute_io::netns::enter(&ns).unwrap();
        f()
    })
    .join()
    .unwrap()
}

/// The ISP a new connection from the LAN's first address leaves by.
fn via(lab: &Lab) -> String {
    in_ns(lab, "lan", || tcp_once(server(), Duration::from_secs(2))).unwrap()
}

/// The ISP a new connection from `src` leaves by.
fn via_from(lab: &Lab, src: &'static str) -> String {
    in_ns(lab, "lan", move || {
        tcp_once_from(server(), src.parse().unwrap(), Duration::from_secs(2))
    })
    .unwrap()
}

/// Checks Prometheus text (format 0.0.4): every sample line is `name{labels} value` with a
/// number, of a family announced by `# TYPE`. Returns the samples.
fn parse_prometheus(text: &str) -> Vec<(String, f64)> {
    let mut typed = std::collections::HashSet::new();
    let mut out = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split(' ');
            typed.insert(it.next().unwrap().to_string());
            let kind = it.next().unwrap();
            assert!(
                ["counter", "gauge", "untyped", "histogram", "summary"].contains(&kind),
                "{line}"
            );
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line}"));
        let v: f64 = value.parse().unwrap_or_else(|_| panic!("value of {line}"));
        let name = series.split('{').next().unwrap();
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
                && !name.starts_with(|c: char| c.is_ascii_digit()),
            "{line}"
        );
        if let Some(labels) = series.strip_prefix(name)
            && !labels.is_empty()
        {
            {
                assert!(
                    labels.starts_with('{') && labels.ends_with('}'),
                    "labels of {line}"
                );
                for kv in labels[1..labels.len() - 1].split(',') {
                    let (k, v) = kv.split_once('=').unwrap_or_else(|| panic!("{line}"));
                    assert!(
                        !k.is_empty() && v.starts_with('"') && v.ends_with('"'),
                        "{line}"
                    );
                }
            }
        }
        let family = name
            .strip_suffix("_total")
            .map_or(name.to_string(), |f| format!("{f}_total"));
        assert!(
            typed.contains(name) || typed.contains(&family),
            "no # TYPE for {line}"
        );
        out.push((series.to_string(), v));
    }
    out
}

fn sample(samples: &[(String, f64)], series: &str) -> f64 {
    samples
        .iter()
        .find(|(s, _)| s == series)
        .unwrap_or_else(|| panic!("no series {series}"))
        .1
}

/// Waits until gateway `gi` is in `state`, and a little more: the API shows the control
/// thread's state at once, and a worker asleep in poll() takes the change only after the batch
/// that wakes it.
fn wait_gateway(r: &Router, gi: usize, state: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    while r.get("/api/gateways")[gi]["state"] != state {
        assert!(
            Instant::now() < deadline,
            "gateway #{gi} never {state}: {}\n{}",
            r.get("/api/gateways"),
            r.log()
        );
        thread::sleep(Duration::from_millis(50));
    }
    thread::sleep(Duration::from_millis(300));
}

/// An HTTP request to the API's TCP address (inside the router namespace).
fn tcp_call(lab: &Lab, path: &'static str, token: Option<&'static str>) -> (u16, String) {
    in_ns(lab, "rtr", move || {
        let at = Endpoint::url(&format!("http://{API_TCP}"), token.map(str::to_string)).unwrap();
        let a = call(&at, Method::GET, path, None).unwrap();
        (
            a.status.as_u16(),
            String::from_utf8_lossy(&a.body).into_owned(),
        )
    })
}

#[test]
fn cli_steers_and_reports() {
    if !should_run("cli_steers_and_reports", NETNS_TOOLS) {
        return;
    }
    let _one = serial();
    let s = setup('c');
    let r = &s.router;

    // Both gateways up, in the table and as JSON.
    let table = r.cli_ok(&["gateways"]);
    assert!(table.contains("isp1") && table.contains("isp2"), "{table}");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let gws: Value = serde_json::from_str(&r.cli_ok(&["gateways", "--json"])).unwrap();
        let gws = gws.as_array().unwrap();
        assert!(gws.iter().all(|g| g["state"] == "up"), "{gws:?}");
        if gws
            .iter()
            .all(|g| g["probes_sent"].as_u64().unwrap() > 0 && g["rtt_ms"].as_f64().is_some())
        {
            break;
        }
        assert!(Instant::now() < deadline, "no probe finished: {gws:?}");
        thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(via(&s.lab), ISP1, "failover: isp1 first");

    // Force isp2, release.
    assert!(r.cli_ok(&["force", "isp2"]).contains("isp2"));
    assert_eq!(via(&s.lab), ISP2, "forced\n{}", r.log());
    let st: Value = serde_json::from_str(&r.cli_ok(&["status", "--json"])).unwrap();
    assert_eq!(st["forced"], "isp2");
    // policy.force holds while the gateway is up: down, the policy takes over; back, it is
    // forced again.
    s.lab.blackhole(Isp::Two).unwrap();
    wait_gateway(r, 1, "down", Duration::from_secs(10));
    assert_eq!(via(&s.lab), ISP1, "the forced gateway is down");
    s.lab.restore(Isp::Two).unwrap();
    wait_gateway(r, 1, "up", Duration::from_secs(20));
    assert_eq!(via(&s.lab), ISP2, "the forced gateway is back");
    r.cli_ok(&["release", "isp2"]);
    assert_eq!(via(&s.lab), ISP1, "released");
    let out = r.cli(&["release", "isp2"]);
    assert!(!out.status.success(), "releasing what is not forced");
    let out = r.cli(&["force", "isp9"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no gateway named"));

    // Pin one LAN host: the other hosts keep the policy's gateway.
    r.cli_ok(&["pin", "10.0.0.2", "isp2"]);
    assert_eq!(via_from(&s.lab, "10.0.0.2"), ISP2, "pinned");
    assert_eq!(via_from(&s.lab, "10.0.0.3"), ISP1, "not pinned");
    let clients = r.get("/api/clients");
    let c2 = clients["clients"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["ip"] == "10.0.0.2")
        .cloned()
        .unwrap_or_else(|| panic!("{clients}"));
    assert_eq!(c2["pinned"], "isp2", "{clients}");
    r.cli_ok(&["unpin", "10.0.0.2"]);
    assert_eq!(via_from(&s.lab, "10.0.0.2"), ISP1, "unpinned");

    // Modes: load balance spreads new connections over both; manual needs a forced gateway.
    r.cli_ok(&["mode", "load-balance"]);
    let seen: Vec<String> = (0..24).map(|_| via(&s.lab)).collect();
    assert!(
        seen.iter().any(|v| v == ISP1) && seen.iter().any(|v| v == ISP2),
        "{seen:?}"
    );
    let out = r.cli(&["mode", "manual"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("policy.force"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    r.cli_ok(&["mode", "failover"]);
    assert_eq!(via(&s.lab), ISP1);

    // Flows and explain.
    let page: Value = serde_json::from_str(&r.cli_ok(&[
        "flows",
        "--client",
        "10.0.0.3",
        "--json",
        "--per-page",
        "5",
    ]))
    .unwrap();
    assert!(page["total"].as_u64().unwrap() >= 1, "{page}");
    let f = &page["flows"][0];
    assert_eq!(f["src"], "10.0.0.3", "{page}");
    assert!(f["gateway"].is_string(), "{page}");
    let sport = f["sport"].as_u64().unwrap().to_string();
    let text = r.cli_ok(&[
        "explain",
        "--src",
        "10.0.0.3",
        "--dst",
        "203.0.113.10",
        "--sport",
        &sport,
        "--dport",
        "8000",
    ]);
    assert!(text.contains("existing flow"), "{text}");
    let by_gw = r.get("/api/flows?gateway=isp2&per_page=1000");
    assert!(
        by_gw["flows"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["gateway"] == "isp2"),
        "{by_gw}"
    );
    assert!(r.cli_ok(&["flows"]).contains("page 0"));
    assert!(r.cli_ok(&["status"]).contains("mode failover"));

    metrics_and_tcp(&s);
}

/// `/metrics` parses as Prometheus text with the expected series; the TCP address needs the
/// token for the API and the metrics, not for the page.
fn metrics_and_tcp(s: &Setup) {
    let r = &s.router;
    // Metrics (the workers report their counters every second).
    let deadline = Instant::now() + Duration::from_secs(5);
    let samples = loop {
        let m = call(&Endpoint::Unix(r.socket()), Method::GET, "/metrics", None).unwrap();
        assert!(m.status.is_success());
        let samples = parse_prometheus(&String::from_utf8_lossy(&m.body));
        if sample(&samples, "altroute_flows_created_total") >= 30.0 || Instant::now() > deadline {
            break samples;
        }
        thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(
        sample(&samples, "altroute_gateway_up{gateway=\"isp1\"}"),
        1.0
    );
    assert_eq!(
        sample(
            &samples,
            "altroute_gateway_state{gateway=\"isp2\",state=\"up\"}"
        ),
        1.0
    );
    assert!(sample(&samples, "altroute_flows_created_total") >= 30.0);
    assert!(
        sample(
            &samples,
            "altroute_gateway_out_bytes_total{gateway=\"isp2\"}"
        ) > 0.0
    );
    assert!(
        sample(
            &samples,
            "altroute_gateway_probes_sent_total{gateway=\"isp1\"}"
        ) > 0.0
    );
    assert!(sample(&samples, "altroute_worker_rx_frames_total{worker=\"1\"}") >= 0.0);
    let drops = samples
        .iter()
        .filter(|(s, _)| s.starts_with("altroute_drops_total{reason="))
        .count();
    assert_eq!(drops, altroute_packet::DropReason::ALL.len());

    // The TCP address: the API and the metrics need the token, the page does not.
    let (code, body) = tcp_call(&s.lab, "/api/status", None);
    assert_eq!(code, 401, "{body}");
    let (code, _) = tcp_call(&s.lab, "/metrics", Some("wrong"));
    assert_eq!(code, 401);
    let (code, body) = tcp_call(&s.lab, "/api/status", Some(TOKEN));
    assert_eq!(code, 200, "{body}");
    let (code, body) = tcp_call(&s.lab, "/", None);
    assert_eq!(code, 200);
    assert!(body.contains("/ui/app.js"), "{body}");
}

/// A TCP transfer from the LAN to the sink in `inet`: bytes sent so far, and the sink's count.
struct Transfer {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    client: Option<JoinHandle<Result<u64, String>>>,
    sink: Option<JoinHandle<u64>>,
}

impl Transfer {
    fn start(lab: &Lab) -> Transfer {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let inet = lab.ns("inet");
        let sink = thread::spawn(move || {
            altroute_io::netns::enter(&inet).unwrap();
            let l = TcpListener::bind(SINK).unwrap();
            ready_tx.send(()).unwrap();
            let (mut c, _) = l.accept().unwrap();
            let mut n = 0u64;
            let mut buf = vec![0u8; 1 << 16];
            loop {
                match c.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(k) => n += k as u64,
                }
            }
            let _ = c.write_all(format!("{n}\n").as_bytes());
            n
        });
        ready_rx.recv_timeout(Duration::from_secs(5)).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let (st, se) = (Arc::clone(&stop), Arc::clone(&sent));
        let lan = lab.ns("lan");
        let client = thread::spawn(move || -> Result<u64, String> {
            altroute_io::netns::enter(&lan).unwrap();
            let mut c = TcpStream::connect_timeout(&SINK.parse().unwrap(), Duration::from_secs(3))
                .map_err(|e| format!("connect: {e}"))?;
            c.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
            let chunk = vec![0x5au8; 16 << 10];
            while !st.load(Ordering::Relaxed) {
                c.write_all(&chunk).map_err(|e| {
                    format!("write after {} bytes: {e}", se.load(Ordering::Relaxed))
                })?;
                se.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                // About 16 MB/s: the router keeps up even on two loaded cores.
                thread::sleep(Duration::from_millis(1));
            }
            c.shutdown(std::net::Shutdown::Write)
                .map_err(|e| e.to_string())?;
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut answer = String::new();
            c.read_to_string(&mut answer)
                .map_err(|e| format!("read: {e}"))?;
            answer
                .trim()
                .parse()
                .map_err(|e| format!("{answer:?}: {e}"))
        });
        Transfer {
            stop,
            sent,
            client: Some(client),
            sink: Some(sink),
        }
    }

    fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Waits until at least `bytes` more have been sent (panics after 10 s).
    fn moves(&self, bytes: u64, what: &str) {
        let start = self.sent();
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.sent() < start + bytes {
            assert!(
                Instant::now() < deadline,
                "the transfer stalled after {what} ({} bytes)",
                self.sent()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops; returns (sent, received by the sink as the client heard it, as the sink counted).
    fn finish(mut self) -> (u64, Result<u64, String>, u64) {
        self.stop.store(true, Ordering::Relaxed);
        let acked = self.client.take().unwrap().join().unwrap();
        let counted = self.sink.take().unwrap().join().unwrap();
        (self.sent(), acked, counted)
    }
}

#[test]
fn reloads_keep_a_transfer_going() {
    if !should_run("reloads_keep_a_transfer_going", NETNS_TOOLS) {
        return;
    }
    let _one = serial();
    let s = setup('r');
    let r = &s.router;
    let base = config(&r.dir);
    let t = Transfer::start(&s.lab);
    t.moves(1 << 20, "the start");
    let reloads = |log: &str| log.matches("reload: ").count();

    // 1. A good file through the API: weights, a pin and the log level, live.
    let mut good = base.clone();
    good.gateways[0].weight = 3;
    good.logging.level = "debug".into();
    good.pins.push(altroute::config::Pin {
        client: "10.0.0.9/32".parse().unwrap(),
        gateway: "isp2".into(),
    });
    r.write_config(&good);
    let msg = r.cli_ok(&["reload"]);
    assert!(
        msg.contains("gateways[0].weight") && msg.contains("pins"),
        "{msg}"
    );
    t.moves(1 << 20, "reload 1");
    let gws = r.get("/api/gateways");
    assert_eq!(gws[0]["weight"], 3, "{gws}");
    assert_eq!(via_from(&s.lab, "10.0.0.9"), ISP2, "the reloaded pin");

    // 2. A broken file: refused with the line, the configuration in force stays.
    let mut text = serde_norway::to_string(&good).unwrap();
    text.push_str("bogus_key: 1\n");
    let line = text.lines().count();
    r.write_config_text(&text);
    let out = r.cli(&["reload"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(&format!("line {line}")) && err.contains("bogus_key"),
        "{err}"
    );
    let a = call(
        &Endpoint::Unix(r.socket()),
        Method::POST,
        "/api/reload",
        None,
    )
    .unwrap();
    assert_eq!(a.status.as_u16(), 422, "{}", a.error_text());
    let e: Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(e["problems"][0]["line"], line, "{e}");
    t.moves(1 << 20, "the broken file");
    assert_eq!(
        r.get("/api/gateways")[0]["weight"],
        3,
        "the old config stays"
    );

    // 3. A change that needs a restart: refused, naming the key.
    let mut restart = good.clone();
    restart.datapath.batch = 32;
    restart.gateways[1].weight = 7;
    r.write_config(&restart);
    let out = r.cli(&["reload"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("datapath.batch"), "{err}");
    assert_eq!(r.get("/api/gateways")[1]["weight"], 1, "nothing applied");

    // 4. A good file by SIGHUP.
    let before = reloads(&r.log());
    let mut last = good.clone();
    last.gateways[1].weight = 5;
    last.logging.level = "info".into();
    r.write_config(&last);
    let pid = r.child.id().to_string();
    let k = Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    assert!(k.success());
    let deadline = Instant::now() + Duration::from_secs(5);
    while r.get("/api/gateways")[1]["weight"] != 5 {
        assert!(Instant::now() < deadline, "SIGHUP not applied\n{}", r.log());
        thread::sleep(Duration::from_millis(50));
    }
    t.moves(1 << 20, "the SIGHUP reload");
    let log = r.log();
    assert!(reloads(&log) > before, "{log}");
    assert!(log.contains("reload refused"), "{log}");
    let st = r.get("/api/status");
    assert!(
        st["last_reload"].as_str().unwrap().contains("applied"),
        "{st}"
    );

    let (sent, acked, counted) = t.finish();
    assert_eq!(acked, Ok(sent), "one connection carried everything");
    assert_eq!(counted, sent);
    assert!(sent >= 4 << 20);
}

/// A W3C WebDriver session on chromedriver, from a thread inside the router namespace.
struct Browser {
    driver: Endpoint,
    session: String,
}

impl Browser {
    fn call(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let a = call(&self.driver, method, path, body).unwrap();
        let v: Value = serde_json::from_slice(&a.body).unwrap_or(Value::Null);
        assert!(a.status.is_success(), "webdriver {path}: {v}");
        v["value"].clone()
    }

    fn try_call(&self, method: Method, path: &str, body: Option<Value>) -> Option<Value> {
        let a = call(&self.driver, method, path, body).ok()?;
        let v: Value = serde_json::from_slice(&a.body).ok()?;
        a.status.is_success().then(|| v["value"].clone())
    }

    fn open(port: u16, profile: &Path) -> Browser {
        let driver = Endpoint::url(&format!("http://127.0.0.1:{port}"), None).unwrap();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"args": [
                "--headless", "--no-sandbox", "--disable-gpu",
                "--disable-background-networking", "--no-first-run", "--window-size=1280,1000",
                format!("--user-data-dir={}", profile.display()),
            ]},
        }}});
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(a) = call(&driver, Method::POST, "/session", Some(caps.clone()))
                && a.status.is_success()
            {
                let v: Value = serde_json::from_slice(&a.body).unwrap();
                let session = v["value"]["sessionId"].as_str().unwrap().to_string();
                return Browser { driver, session };
            }
            assert!(Instant::now() < deadline, "no WebDriver session");
            thread::sleep(Duration::from_millis(200));
        }
    }

    fn path(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    fn find(&self, css: &str) -> Option<String> {
        let v = self.try_call(
            Method::POST,
            &self.path("/element"),
            Some(json!({"using": "css selector", "value": css})),
        )?;
        v.as_object()?.values().next()?.as_str().map(str::to_string)
    }

    /// Waits for the element `css` (10 s at most).
    fn wait(&self, css: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(e) = self.find(css) {
                return e;
            }
            let page = self.try_call(Method::GET, &self.path("/source"), None);
            assert!(Instant::now() < deadline, "no {css} on the page: {page:?}");
            thread::sleep(Duration::from_millis(100));
        }
    }

    fn text(&self, element: &str) -> String {
        let v = self.call(
            Method::GET,
            &self.path(&format!("/element/{element}/text")),
            None,
        );
        v.as_str().unwrap_or_default().to_string()
    }

    fn click(&self, element: &str) {
        self.call(
            Method::POST,
            &self.path(&format!("/element/{element}/click")),
            Some(json!({})),
        );
    }

    /// Answers the page's prompt for the token, when it comes (10 s at most).
    fn give_token(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self
            .try_call(Method::GET, &self.path("/alert/text"), None)
            .is_none()
        {
            assert!(
                Instant::now() < deadline,
                "the page never asked for the token"
            );
            thread::sleep(Duration::from_millis(100));
        }
        self.call(
            Method::POST,
            &self.path("/alert/text"),
            Some(json!({"text": TOKEN})),
        );
        self.call(Method::POST, &self.path("/alert/accept"), Some(json!({})));
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = call(
            &self.driver,
            Method::DELETE,
            &format!("/session/{}", self.session),
            None,
        );
    }
}

#[test]
fn browser_forces_isp2() {
    let tools = [
        ("ip", "-V"),
        ("nft", "--version"),
        ("chromium", "--version"),
        ("chromedriver", "--version"),
    ];
    if !should_run("browser_forces_isp2", &tools) {
        return;
    }
    let _one = serial();
    let s = setup('b');
    assert_eq!(via(&s.lab), ISP1);
    // chromedriver and the browser it starts run in the router namespace, where the API listens
    // on the loopback; the WebDriver calls come from a thread in that namespace too.
    let port = 9515u16;
    let _driver = s
        .lab
        .spawn(
            "rtr",
            &[
                "chromedriver",
                &format!("--port={port}"),
                "--allowed-ips=127.0.0.1",
            ],
        )
        .unwrap();
    let profile = s.router.dir.join("chromium-profile");
    std::fs::create_dir_all(&profile).unwrap();
    // A picture of the page after the click (kept with the logs: ALTROUTE_KEEP_LOGS=1).
    let picture = s.router.dir.join("page.png");
    let seen = in_ns(&s.lab, "rtr", move || {
        let b = Browser::open(port, &profile);
        b.call(
            Method::POST,
            &b.path("/url"),
            Some(json!({"url": format!("http://{API_TCP}/")})),
        );
        b.give_token();
        let one = b.wait("#gw-isp1 .state");
        let two = b.wait("#gw-isp2 .state");
        let deadline = Instant::now() + Duration::from_secs(10);
        while b.text(&one) != "up" || b.text(&two) != "up" {
            assert!(
                Instant::now() < deadline,
                "{} / {}",
                b.text(&one),
                b.text(&two)
            );
            thread::sleep(Duration::from_millis(100));
        }
        let button = b.wait("#force-isp2");
        assert_eq!(b.text(&button), "force isp2");
        b.click(&button);
        // The page shows isp2 forced once the API has done it.
        let release = b.wait("#release-isp2");
        assert_eq!(b.text(&release), "release isp2");
        let msg = b.wait("#message");
        // Let a traffic plot or two draw before the picture.
        thread::sleep(Duration::from_millis(2500));
        if let Some(png) = b.try_call(Method::GET, &b.path("/screenshot"), None)
            && let Some(png) = png.as_str()
        {
            let _ = std::fs::write(&picture, base64_decode(png));
        }
        b.text(&msg)
    });
    assert!(seen.contains("isp2"), "{seen}");
    assert_eq!(via(&s.lab), ISP2, "after the click\n{}", s.router.log());
}

/// Standard base64 (the WebDriver screenshot), padding and bad characters skipped.
fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for v in s.bytes().filter_map(val) {
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}
