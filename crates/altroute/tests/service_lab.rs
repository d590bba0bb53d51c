//! `altroute run` as systemd runs it, in the netns lab (root + netns; skips otherwise unless
//! `ALTROUTE_REQUIRE_NETNS` is set): with `NOTIFY_SOCKET` and `WATCHDOG_USEC` pointing at a
//! socket of the test, it sends `READY=1` once its workers run, `WATCHDOG=1` at least every half
//! interval, `STOPPING=1` on SIGTERM; every thread of the running daemon (offload on) holds
//! CAP_NET_ADMIN and CAP_NET_RAW only (effective, permitted and bounding; no ambient); and with
//! `JOURNAL_STREAM` naming its stderr it logs `<priority>target: message` lines with no time.

#![allow(clippy::unwrap_used)]

use std::os::unix::fs::MetadataExt as _;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use altroute::caps::{self, Capability};
use altroute_lab::{Forwarder, Lab};

mod common;
use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_altroute");

/// The router child, killed if the test fails before it stops it.
struct Router(Child);

impl Drop for Router {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The notifications received within `within`, until one equals `until` (then stops).
fn receive(sock: &UnixDatagram, until: &str, within: Duration) -> Vec<String> {
    let end = Instant::now() + within;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < end {
        sock.set_read_timeout(Some(
            end.saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1)),
        ))
        .unwrap();
        let Ok(n) = sock.recv(&mut buf) else { break };
        let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
        let done = msg.lines().any(|l| l == until);
        got.push(msg);
        if done {
            break;
        }
    }
    got
}

/// `(thread name, CapEff, CapPrm, CapBnd, CapAmb)` of every thread of `pid`.
fn thread_caps(pid: u32) -> Vec<(String, u64, u64, u64, u64)> {
    let mut out = Vec::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let status = std::fs::read_to_string(t.unwrap().path().join("status")).unwrap();
        let name = status
            .lines()
            .find_map(|l| l.strip_prefix("Name:"))
            .unwrap_or("?")
            .trim()
            .to_string();
        let (eff, prm, bnd, amb) = caps::parse_proc_status(&status).unwrap();
        out.push((name, eff, prm, bnd, amb));
    }
    out
}

#[test]
fn notifies_systemd_drops_capabilities_and_logs_for_the_journal() {
    if !should_run(
        "service_lab",
        &[("ip", "-V"), ("nft", "--version"), ("kill", "-l")],
    ) {
        return;
    }
    let prefix = format!("ar{}sv-", std::process::id());
    let dir = std::env::temp_dir().join(format!("altroute-test-{prefix}"));
    std::fs::create_dir_all(&dir).unwrap();
    let lab = Lab::up(&prefix, Forwarder::Router).expect("lab up");
    let config = dir.join("router.yaml");
    let base = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/lab-dual-wan-failover.yaml"),
    )
    .unwrap();
    std::fs::write(&config, format!("{base}\ndatapath:\n  offload: tc\n")).unwrap();
    let notify = dir.join("notify.sock");
    let sock = UnixDatagram::bind(&notify).unwrap();
    let log_path = dir.join("stderr.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let meta = log.metadata().unwrap();
    let started = Instant::now();
    let mut router = Router(
        Command::new(BIN)
            .args(["run", "--config"])
            .arg(&config)
            .args(["--netns", &lab.ns("rtr"), "--workers", "2"])
            .env("NOTIFY_SOCKET", &notify)
            .env("WATCHDOG_USEC", "200000")
            .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let pid = router.0.id();

    let got = receive(&sock, "READY=1", Duration::from_secs(20));
    let ready = got.last().cloned().unwrap_or_default();
    assert!(
        ready.lines().any(|l| l == "READY=1"),
        "no READY=1 within 20 s: {got:?}; log:\n{}",
        std::fs::read_to_string(&log_path).unwrap_or_default()
    );
    assert!(
        ready.contains("STATUS=2 worker(s), 2 gateway(s)"),
        "{ready}"
    );
    println!("READY=1 after {:?}", started.elapsed());
    // 200 ms interval: a ping every 100 ms (+ up to a 5 ms control tick): ~10 in 1 s, fewer
    // on a loaded machine, never a flood.
    let t = Instant::now();
    let pings = receive(&sock, "never", Duration::from_secs(1))
        .iter()
        .filter(|m| m.trim() == "WATCHDOG=1")
        .count();
    assert!(
        (5..=12).contains(&pings),
        "{pings} WATCHDOG=1 in {:?}",
        t.elapsed()
    );

    let runtime = caps::mask(&caps::RUNTIME);
    let threads = thread_caps(pid);
    assert!(
        threads.len() >= 3,
        "main, control and 2 workers: {threads:?}"
    );
    for (name, eff, prm, bnd, amb) in &threads {
        assert_eq!(
            (*eff, *prm, *bnd, *amb),
            (runtime, runtime, runtime, 0),
            "thread {name}: CapEff {eff:x} CapPrm {prm:x} CapBnd {bnd:x} CapAmb {amb:x}"
        );
    }
    assert_eq!(
        runtime,
        Capability::CAP_NET_ADMIN.bitmask() | Capability::CAP_NET_RAW.bitmask()
    );

    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    let got = receive(&sock, "STOPPING=1", Duration::from_secs(10));
    assert!(
        got.iter().any(|m| m.trim() == "STOPPING=1"),
        "no STOPPING=1: {got:?}"
    );
    let status = router.0.wait().unwrap();
    assert!(status.success(), "router exit: {status}");

    let text = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        text.lines()
            .any(|l| l.starts_with("<6>altroute::cmd::run: altroute running: ")),
        "{text}"
    );
    assert!(
        text.contains("<6>altroute::cmd::run: capabilities kept: CAP_NET_ADMIN CAP_NET_RAW; "),
        "{text}"
    );
    for l in text.lines() {
        assert!(
            l.starts_with('<') && !l.contains("Z INFO") && !l.starts_with("[20"),
            "not a journal line: {l}"
        );
    }
    drop(lab);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(leftovers(&prefix).is_empty(), "{:?}", leftovers(&prefix));
}
