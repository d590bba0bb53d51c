//! Lab integration tests (root + netns). They skip with a printed reason when not root or a tool is
//! missing, unless `ALTROUTE_REQUIRE_NETNS` is set, in which case that is a failure.
//!
//! - kernel mode: lan→inet TCP through the kernel router, both ISP addresses seen over 50
//!   connections (multipath), failures while isp1 is black-holed, recovery after restore, and
//!   nothing left behind after teardown.
//! - router mode: `altroute setup` + the start-up kernel check accept the lab's router namespace
//!   and the kernel there answers nothing for the router's addresses.

// Helpers outside `#[test]` functions are test code too: a failed lab step must fail the test.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use altroute_lab::tool::Tally;
use altroute_lab::{Forwarder, Isp, Lab, NAMESPACES};

mod common;
use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_altroute");

fn client(lab: &Lab, n: usize, timeout_ms: u64) -> Tally {
    let n = n.to_string();
    let t = timeout_ms.to_string();
    let out = lab
        .exec(
            "lan",
            &[
                BIN,
                "lab-tool",
                "client",
                "--tcp",
                "203.0.113.10:7000",
                "-n",
                &n,
                "--timeout-ms",
                &t,
                "--parallel",
                "10",
            ],
            Duration::from_secs(60),
        )
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    Tally::parse(&text).unwrap_or_else(|| {
        panic!(
            "no tally in client output: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn wait_for_server(lab: &Lab) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = lab
            .exec(
                "inet",
                &[
                    BIN,
                    "lab-tool",
                    "client",
                    "--tcp",
                    "203.0.113.10:7000",
                    "-n",
                    "1",
                    "--min-ok",
                    "1",
                ],
                Duration::from_secs(5),
            )
            .unwrap();
        if out.status.success() {
            return;
        }
        assert!(Instant::now() < deadline, "whoami server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn kernel_lab_multipath_blackhole_and_teardown() {
    if !should_run(
        "kernel lab",
        &[("ip", "-V"), ("nft", "--version"), ("tc", "-V")],
    ) {
        return;
    }
    let prefix = format!("ar{}k-", std::process::id());
    {
        let lab = Lab::up(&prefix, Forwarder::Kernel { w1: 1, w2: 1 }).expect("lab up");
        assert_eq!(leftovers(&prefix).len(), NAMESPACES.len());
        let _server = lab
            .spawn(
                "inet",
                &[
                    BIN,
                    "lab-tool",
                    "serve",
                    "--tcp",
                    "203.0.113.10:7000",
                    "--udp",
                    "203.0.113.10:7000",
                ],
            )
            .unwrap();
        wait_for_server(&lab);

        let t = client(&lab, 50, 1000);
        eprintln!("healthy: {t:?}");
        assert_eq!(t.failed, 0, "{t:?}");
        assert_eq!(t.ok(), 50);
        assert!(t.count("192.0.2.1") > 0, "isp1 never used: {t:?}");
        assert!(t.count("198.51.100.1") > 0, "isp2 never used: {t:?}");

        // UDP from several LAN client addresses (the lab gives lan0 10.0.0.2..=10.0.0.9).
        for src in ["10.0.0.3", "10.0.0.9"] {
            let out = lab
                .exec(
                    "lan",
                    &[
                        BIN,
                        "lab-tool",
                        "client",
                        "--udp",
                        "203.0.113.10:7000",
                        "--bind",
                        src,
                        "-n",
                        "10",
                        "--timeout-ms",
                        "1000",
                    ],
                    Duration::from_secs(30),
                )
                .unwrap();
            let t = Tally::parse(&String::from_utf8_lossy(&out.stdout)).unwrap();
            assert_eq!(t.ok(), 10, "udp from {src}: {t:?}");
        }

        // A second handle on the running lab (what `altroute lab fault` uses) does not tear it down.
        drop(Lab::attach(&prefix, Forwarder::Router).unwrap());
        assert_eq!(leftovers(&prefix).len(), NAMESPACES.len());

        lab.blackhole(Isp::One).unwrap();
        let t = client(&lab, 50, 500);
        eprintln!("isp1 black-holed: {t:?}");
        assert!(t.failed > 0, "no failures with isp1 black-holed: {t:?}");
        assert_eq!(t.count("192.0.2.1"), 0, "{t:?}");
        assert!(t.count("198.51.100.1") > 0, "{t:?}");

        lab.restore(Isp::One).unwrap();
        let t = client(&lab, 50, 1000);
        eprintln!("restored: {t:?}");
        assert_eq!(t.failed, 0, "{t:?}");
        assert!(t.count("192.0.2.1") > 0, "{t:?}");

        // 100 % loss on isp2 behaves like a black hole for it.
        lab.loss(Isp::Two, 100).unwrap();
        let t = client(&lab, 30, 500);
        assert_eq!(t.count("198.51.100.1"), 0, "{t:?}");
        assert!(t.count("192.0.2.1") > 0, "{t:?}");
        lab.restore(Isp::Two).unwrap();

        // The rate limit installs a tbf qdisc on both ISP links; restore removes it.
        lab.rate_limit(Isp::Two, 40).unwrap();
        let q = lab
            .exec_ok(
                "isp2",
                &["tc", "qdisc", "show", "dev", "i2-rtr"],
                Duration::from_secs(5),
            )
            .unwrap();
        assert!(String::from_utf8_lossy(&q.stdout).contains("tbf"));
        lab.restore(Isp::Two).unwrap();
        let q = lab
            .exec_ok(
                "isp2",
                &["tc", "qdisc", "show", "dev", "i2-rtr"],
                Duration::from_secs(5),
            )
            .unwrap();
        assert!(!String::from_utf8_lossy(&q.stdout).contains("tbf"));
        let t = client(&lab, 20, 1000);
        assert_eq!(t.failed, 0, "{t:?}");
        // `lab` and `_server` drop here: server killed, namespaces deleted.
    }
    assert_eq!(leftovers(&prefix), Vec::<String>::new());
}

#[test]
fn router_lab_kernel_is_silent_after_setup() {
    if !should_run("router lab", &[("ip", "-V"), ("ping", "-V")]) {
        return;
    }
    let prefix = format!("ar{}r-", std::process::id());
    {
        let lab = Lab::up(&prefix, Forwarder::Router).expect("lab up");
        let cfg =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/lab-dual-wan-failover.yaml");
        let cfg = cfg.to_str().unwrap();
        let out = lab
            .exec(
                "rtr",
                &[BIN, "setup", "--config", cfg],
                Duration::from_secs(30),
            )
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "setup failed: {stdout}\n{stderr}");
        assert!(stdout.contains("ip addr flush dev r-wan1"), "{stdout}");
        assert!(
            stdout.contains("ok: the kernel is silent on every port"),
            "{stdout}"
        );

        // Nobody answers for the router's LAN address until the userspace router runs.
        let ping = lab
            .exec(
                "lan",
                &["ping", "-c", "1", "-W", "1", "10.0.0.1"],
                Duration::from_secs(5),
            )
            .unwrap();
        assert!(!ping.status.success(), "the kernel answered for 10.0.0.1");

        // Give the kernel an address again: the start-up check names it and the fix.
        lab.exec_ok(
            "rtr",
            &["ip", "addr", "add", "192.0.2.1/24", "dev", "r-wan1"],
            Duration::from_secs(5),
        )
        .unwrap();
        let out = lab
            .exec(
                "rtr",
                &[BIN, "check-config", cfg, "--kernel"],
                Duration::from_secs(10),
            )
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(
            stderr.contains(&format!("interface r-wan1 has address 192.0.2.1/24: the kernel would answer ARP and ping for it beside the router; run `altroute setup --config {cfg}` or `ip addr flush dev r-wan1`")),
            "{stderr}"
        );
        let out = lab
            .exec(
                "rtr",
                &[BIN, "setup", "--config", cfg, "--dry-run"],
                Duration::from_secs(10),
            )
            .unwrap();
        assert!(out.status.success());
        let out = lab
            .exec(
                "rtr",
                &[BIN, "setup", "--config", cfg],
                Duration::from_secs(30),
            )
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let a = lab
            .exec_ok(
                "rtr",
                &["ip", "-j", "addr", "show", "dev", "r-wan1"],
                Duration::from_secs(5),
            )
            .unwrap();
        assert!(!String::from_utf8_lossy(&a.stdout).contains("192.0.2.1"));
    }
    assert_eq!(leftovers(&prefix), Vec::<String>::new());
}
