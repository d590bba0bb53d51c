//! UDP coalescing (`datapath.udp_coalesce`, `altroute_packet::egress::coalesce`) end to end with the real kernel
//! in the netns lab (root + netns): the router merges runs of small equal-size DF datagrams of one
//! flow into UDP GSO frames and the kernel segments them back; every datagram must arrive exactly
//! once, intact and with its size.
//!
//! Skips with a printed reason when not root (or a tool is missing), unless
//! `ALTROUTE_REQUIRE_NETNS` is set, in which case that is a failure. The lab (prefix
//! `ar<pid>u-`), the router and the temp directory are torn down by Drop guards, also when an
//! assertion fails.
//!
//! The sender and the receiver are threads of this test moved into the LAN / Internet namespace
//! (`altroute_io::netns::enter`), with plain `std::net::UdpSocket`s. Each datagram carries its
//! sequence number and a pseudo-random body derived from it; the receiver checks size and every
//! byte, and counts duplicates. Datagrams leave in bursts of 50 with 2 ms pauses; up to 5 % loss
//! is tolerated (RX rings can overflow under load), corruption, duplication and size changes
//! are not. How many datagrams were merged comes from the status file (`udp_coalesced`) after
//! each phase, and from the workers' "udp coalesced N" log lines when the router stops.
//!
//! Both router runs have `datapath.offload: off`: with the kernel offload (the default), an
//! answered UDP flow's frames would be forwarded by the tc program and never reach the user-space
//! coalescing this test is about.
//!
//! With the lab failover config (coalescing on by default):
//! - A: lan → inet, DF, 16/64/200/512 B (coalescible): delivered, and merged > 0;
//! - B: lan → inet, DF, 513/1000/1472 B and a mix of sizes where no two neighbours are equal:
//!   delivered, merged == 0;
//! - C: lan → inet, 64 B without DF (`net.ipv4.ip_no_pmtu_disc=1` in the LAN namespace):
//!   delivered, merged == 0;
//! - D: inet → lan (un-NAT direction), DF, 64/512 B: delivered, merged > 0;
//! - E, F: A and D again with software checksums: the senders' TX checksum offload off, the GSO
//!   frames segmented and checksummed in software by the kernel before the next device (no UDP
//!   segmentation or TX checksum offload on isp1's `i1-inet` and the router's `r-lan`), the
//!   receivers verifying every checksum (RX offload off): delivered, merged > 0, no
//!   `*CsumErrors` counted in inet or lan (on veth a partial checksum is otherwise trusted end
//!   to end, so a wrong pseudo-header sum would go unnoticed);
//!
//! then the router is restarted in the same lab (offloads still off) with
//! `datapath.udp_coalesce: false` and A and D run again: delivered, merged == 0. The workers'
//! "udp coalesced" log lines must add up to the status file's count, per router run.

// Helpers outside `#[test]` functions are test code too: a failed lab step must fail the test.
#![allow(clippy::unwrap_used)]

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use altroute_lab::demo::RouterProcess;
use altroute_lab::tool::PseudoRandom;
use altroute_lab::{Forwarder, Lab};

mod common;
use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_altroute");
const SERVER: &str = "203.0.113.10";
/// Datagrams per burst and the pause between bursts.
const BURST: usize = 50;
const PAUSE: Duration = Duration::from_millis(2);
/// Bursts per size.
const BURSTS: usize = 20;
/// Minimum share delivered, in percent.
const MIN_DELIVERY_PCT: usize = 95;

/// Removes the temp directory (config copy, status file, router log) when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What one phase sends: datagram `seq` has `sizes[seq]` bytes; `salt` makes the bodies of
/// different phases differ.
struct Plan {
    name: &'static str,
    salt: u64,
    sizes: Vec<usize>,
}

impl Plan {
    /// `BURSTS` bursts of each size in turn.
    fn runs(name: &'static str, salt: u64, sizes: &[usize]) -> Plan {
        let sizes = sizes
            .iter()
            .flat_map(|&s| std::iter::repeat_n(s, BURST * BURSTS))
            .collect();
        Plan { name, salt, sizes }
    }

    /// `n` datagrams cycling through `pattern` (no two neighbours equal, first != last).
    fn cycle(name: &'static str, salt: u64, pattern: &[usize], n: usize) -> Plan {
        for w in pattern.windows(2) {
            assert_ne!(w[0], w[1]);
        }
        assert_ne!(pattern.first(), pattern.last());
        let sizes = pattern.iter().copied().cycle().take(n).collect();
        Plan { name, salt, sizes }
    }

    /// Datagram `seq`: its sequence number (u32 LE), then bytes only it has.
    fn fill(&self, seq: usize, buf: &mut [u8]) {
        buf[..4].copy_from_slice(&(seq as u32).to_le_bytes());
        PseudoRandom::new(self.salt ^ (seq as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15))
            .fill(&mut buf[4..]);
    }
}

/// What a receiver saw.
#[derive(Debug, Default)]
struct Report {
    expected: usize,
    /// Distinct datagrams that arrived intact with their size.
    delivered: usize,
    duplicates: usize,
    wrong_size: usize,
    corrupt: usize,
    /// Datagrams that carry no sequence number of this phase.
    foreign: usize,
    /// Arrivals with a lower sequence number than the one before (reported, not asserted).
    reordered: usize,
}

/// Receiver state for one plan.
struct Rx<'a> {
    plan: &'a Plan,
    seen: Vec<bool>,
    last: Option<usize>,
    expect: Vec<u8>,
    r: Report,
}

impl<'a> Rx<'a> {
    fn new(plan: &'a Plan) -> Self {
        Rx {
            plan,
            seen: vec![false; plan.sizes.len()],
            last: None,
            expect: vec![0; 2048],
            r: Report {
                expected: plan.sizes.len(),
                ..Report::default()
            },
        }
    }

    fn record(&mut self, d: &[u8]) {
        let Some(seq) = d
            .get(..4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap()) as usize)
            .filter(|&s| s < self.plan.sizes.len())
        else {
            self.r.foreign += 1;
            return;
        };
        let size = self.plan.sizes[seq];
        if d.len() != size {
            self.r.wrong_size += 1;
            return;
        }
        self.plan.fill(seq, &mut self.expect[..size]);
        if d != &self.expect[..size] {
            self.r.corrupt += 1;
            return;
        }
        if std::mem::replace(&mut self.seen[seq], true) {
            self.r.duplicates += 1;
            return;
        }
        self.r.delivered += 1;
        if self.last.is_some_and(|l| seq < l) {
            self.r.reordered += 1;
        }
        self.last = Some(seq);
    }

    fn complete(&self) -> bool {
        self.r.delivered == self.r.expected
    }

    /// Receives until everything arrived, or the sender is `done` and 300 ms passed without a
    /// datagram, or 20 s passed.
    fn run(mut self, sock: &UdpSocket, done: &AtomicBool) -> Report {
        sock.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut buf = vec![0u8; 65536];
        while !self.complete() && Instant::now() < deadline {
            match sock.recv(&mut buf) {
                Ok(n) => {
                    if &buf[..n] != b"ok" {
                        self.record(&buf[..n]);
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    if done.load(Ordering::SeqCst) {
                        break;
                    }
                }
                Err(e) => panic!("recv: {e}"),
            }
        }
        self.r
    }
}

/// A UDP socket bound to `addr` in the calling thread's namespace, with a large receive buffer.
fn udp_socket(addr: SocketAddr) -> UdpSocket {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
    s.set_recv_buffer_size(4 << 20).unwrap();
    s.bind(&addr.into()).unwrap();
    s.into()
}

/// Sends the plan over a connected socket: bursts of `BURST`, `PAUSE` between them.
fn send_plan(sock: &UdpSocket, plan: &Plan) {
    let mut buf = vec![0u8; 2048];
    for (seq, &size) in plan.sizes.iter().enumerate() {
        if seq > 0 && seq % BURST == 0 {
            thread::sleep(PAUSE);
        }
        plan.fill(seq, &mut buf[..size]);
        let n = sock.send(&buf[..size]).unwrap();
        assert_eq!(n, size);
    }
}

fn addr(ip: &str, port: u16) -> SocketAddr {
    format!("{ip}:{port}").parse().unwrap()
}

/// Runs `f` on a thread inside namespace `ns`; a panic there is re-raised here.
fn in_ns<'s, T: Send + 's>(
    s: &'s thread::Scope<'s, '_>,
    ns: String,
    f: impl FnOnce() -> T + Send + 's,
) -> thread::ScopedJoinHandle<'s, T> {
    s.spawn(move || {
        altroute_io::netns::enter(&ns).unwrap();
        f()
    })
}

fn join<T>(h: thread::ScopedJoinHandle<'_, T>) -> T {
    h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
}

/// LAN client `from` → the server in inet, port `port`.
fn upload(lab: &Lab, from: &str, port: u16, plan: &Plan) -> Report {
    let server = addr(SERVER, port);
    let done = AtomicBool::new(false);
    thread::scope(|s| {
        let (ready_tx, ready_rx) = mpsc::channel();
        let done = &done;
        let rx = in_ns(s, lab.ns("inet"), move || {
            let sock = udp_socket(server);
            ready_tx.send(()).unwrap();
            Rx::new(plan).run(&sock, done)
        });
        if ready_rx.recv_timeout(Duration::from_secs(10)).is_err() {
            return join(rx);
        }
        let tx = in_ns(s, lab.ns("lan"), move || {
            let sock = udp_socket(addr(from, 0));
            sock.connect(server).unwrap();
            send_plan(&sock, plan);
        });
        let sent = tx.join();
        done.store(true, Ordering::SeqCst);
        let report = join(rx);
        sent.unwrap_or_else(|p| std::panic::resume_unwind(p));
        report
    })
}

/// The server in inet → LAN client `from` (through the NAT mapping the client opened with a
/// "hi" datagram; the server answers "ok", then sends the plan).
fn download(lab: &Lab, from: &str, port: u16, plan: &Plan) -> Report {
    let server = addr(SERVER, port);
    let done = AtomicBool::new(false);
    thread::scope(|s| {
        let (ready_tx, ready_rx) = mpsc::channel();
        let done = &done;
        let tx = in_ns(s, lab.ns("inet"), move || {
            let sock = udp_socket(server);
            ready_tx.send(()).unwrap();
            sock.set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let mut buf = [0u8; 16];
            let (n, peer) = sock.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"hi");
            sock.connect(peer).unwrap();
            sock.send(b"ok").unwrap();
            thread::sleep(Duration::from_millis(100));
            send_plan(&sock, plan);
            peer
        });
        if ready_rx.recv_timeout(Duration::from_secs(10)).is_err() {
            join(tx);
            unreachable!("the sender could not bind");
        }
        let rx = in_ns(s, lab.ns("lan"), move || {
            let sock = udp_socket(addr(from, 0));
            sock.connect(server).unwrap();
            sock.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            let mut rx = Rx::new(plan);
            let mut buf = vec![0u8; 65536];
            // "hi" until the server's "ok" (or its first data, should "ok" be lost) arrives.
            'hello: for _ in 0..50 {
                sock.send(b"hi").unwrap();
                if let Ok(n) = sock.recv(&mut buf) {
                    if &buf[..n] != b"ok" {
                        rx.record(&buf[..n]);
                    }
                    break 'hello;
                }
            }
            rx.run(&sock, done)
        });
        let peer = tx.join();
        done.store(true, Ordering::SeqCst);
        let report = join(rx);
        let peer = peer.unwrap_or_else(|p| std::panic::resume_unwind(p));
        eprintln!("  ({} seen by the server as {peer})", plan.name);
        report
    })
}

/// The status file's `udp_coalesced` once it includes everything sent so far (workers report
/// every second; the status is written every second).
fn settled_coalesced(router: &mut RouterProcess) -> u64 {
    let now = router.status().map_or(0, |s| s.time_ms);
    router
        .fresh_status(now + 1500, Duration::from_secs(10), &AtomicBool::new(false))
        .unwrap();
    coalesced_now(router)
}

/// The status file's `udp_coalesced` as it is.
fn coalesced_now(router: &RouterProcess) -> u64 {
    let text = std::fs::read_to_string(router.status_file()).unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    v["udp_coalesced"]
        .as_u64()
        .unwrap_or_else(|| panic!("no udp_coalesced in the status file: {text}"))
}

/// Checks delivery; returns the datagrams merged during the phase (from the status file).
fn phase(
    router: &mut RouterProcess,
    before: &mut u64,
    plan: &Plan,
    run: impl FnOnce(&Plan) -> Report,
) -> u64 {
    let t = Instant::now();
    let r = run(plan);
    let secs = t.elapsed().as_secs_f64();
    let now = settled_coalesced(router);
    let merged = now - *before;
    *before = now;
    eprintln!("{}: {r:?}, merged {merged} ({:.1} s)", plan.name, secs);
    assert_eq!(
        (r.duplicates, r.wrong_size, r.corrupt, r.foreign),
        (0, 0, 0, 0),
        "{}: datagrams duplicated, resized, corrupted or unknown: {r:?}",
        plan.name
    );
    assert!(
        r.delivered * 100 >= r.expected * MIN_DELIVERY_PCT,
        "{}: only {} of {} delivered: {r:?}",
        plan.name,
        r.delivered,
        r.expected
    );
    assert!(
        merged < r.expected as u64,
        "{}: merged {merged} of {} datagrams",
        plan.name,
        r.expected
    );
    merged
}

/// Starts the router with `config` and waits until both gateways are up.
fn start_router(lab: &Lab, config: &Path, dir: &Path) -> RouterProcess {
    let mut router = RouterProcess::start(Path::new(BIN), config, &lab.ns("rtr"), dir).unwrap();
    router
        .wait_ready(Duration::from_secs(30), &AtomicBool::new(false))
        .unwrap_or_else(|e| panic!("{}: {e}", lab.prefix()));
    router
}

/// SIGTERM → exit 0; returns the sum of the workers' "udp coalesced N" log lines.
fn stop_router(mut router: RouterProcess) -> u64 {
    let st = router.stop(Duration::from_secs(15)).unwrap();
    assert!(
        st.success(),
        "router exit after SIGTERM: {st}; log:\n{}",
        router.log_tail(20)
    );
    let log = std::fs::read_to_string(router.log_file()).unwrap();
    let counts: Vec<u64> = log
        .lines()
        .filter_map(|l| l.split("udp coalesced ").nth(1))
        .map(|n| n.trim().parse().unwrap())
        .collect();
    assert!(
        !counts.is_empty(),
        "no 'udp coalesced' in the worker summaries:\n{}",
        router.log_tail(20)
    );
    counts.iter().sum()
}

#[test]
// One scenario read top to bottom: three phases of one lab (the 150-line rule is for code
// outside tests).
#[allow(clippy::too_many_lines)]
fn udp_coalescing_delivers_every_datagram_once_intact() {
    if !should_run(
        "udp_coalescing_delivers_every_datagram_once_intact",
        &[
            ("ip", "-V"),
            ("kill", "-l"),
            ("sysctl", "-V"),
            ("ethtool", "--version"),
            ("nstat", "-V"),
        ],
    ) {
        return;
    }
    let t0 = Instant::now();
    let prefix = format!("ar{}u-", std::process::id());
    let dir = TempDir(std::env::temp_dir().join(format!("altroute-test-{prefix}")));
    std::fs::create_dir_all(&dir.0).unwrap();
    let example =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/lab-dual-wan-failover.yaml");
    let text = std::fs::read_to_string(&example).unwrap();
    let on = dir.0.join("coalesce.yaml");
    std::fs::write(&on, format!("{text}\ndatapath:\n  offload: off\n")).unwrap();
    let off = dir.0.join("no-coalesce.yaml");
    std::fs::write(
        &off,
        format!("{text}\ndatapath:\n  offload: off\n  udp_coalesce: false\n"),
    )
    .unwrap();

    let coalescible = Plan::runs("A lan->inet DF 16/64/200/512 B", 1, &[16, 64, 200, 512]);
    let too_big = Plan::runs("B1 lan->inet DF 513/1000/1472 B", 2, &[513, 1000, 1472]);
    let mixed = Plan::cycle(
        "B2 lan->inet DF mixed sizes",
        3,
        &[64, 65, 16, 512, 64, 100, 511, 8, 64, 1200],
        BURST * BURSTS * 2,
    );
    let no_df = Plan::runs("C lan->inet no DF 64 B", 4, &[64]);
    let down = Plan::runs("D inet->lan DF 64/512 B", 5, &[64, 512]);
    let sw_up = Plan::runs(
        "E lan->inet DF 16/64/512 B, software csum",
        6,
        &[16, 64, 512],
    );
    let sw_down = Plan::runs("F inet->lan DF 64/512 B, software csum", 7, &[64, 512]);
    {
        let lab = Lab::up(&prefix, Forwarder::Router).expect("lab up");
        eprintln!("lab up after {:.1} s", t0.elapsed().as_secs_f64());

        // Coalescing on (the default).
        let mut router = start_router(&lab, &on, &dir.0);
        eprintln!(
            "router ready after {:.1} s (coalescing on)",
            t0.elapsed().as_secs_f64()
        );
        // The LAN sends DF datagrams (ip_no_pmtu_disc=0: sockets default to IP_PMTUDISC_WANT).
        let pmtu = lab
            .exec_ok(
                "lan",
                &["sysctl", "-n", "net.ipv4.ip_no_pmtu_disc"],
                Duration::from_secs(5),
            )
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&pmtu.stdout).trim(), "0");
        let mut total = coalesced_now(&router);
        let merged = phase(&mut router, &mut total, &coalescible, |p| {
            upload(&lab, "10.0.0.2", 7101, p)
        });
        assert!(merged > 0, "nothing was coalesced in phase A");
        let merged = phase(&mut router, &mut total, &too_big, |p| {
            upload(&lab, "10.0.0.3", 7102, p)
        });
        assert_eq!(merged, 0, "datagrams over 512 B were coalesced");
        let merged = phase(&mut router, &mut total, &mixed, |p| {
            upload(&lab, "10.0.0.4", 7103, p)
        });
        assert_eq!(merged, 0, "datagrams of different sizes were coalesced");
        lab.exec_ok(
            "lan",
            &["sysctl", "-qw", "net.ipv4.ip_no_pmtu_disc=1"],
            Duration::from_secs(5),
        )
        .unwrap();
        let merged = phase(&mut router, &mut total, &no_df, |p| {
            upload(&lab, "10.0.0.5", 7104, p)
        });
        assert_eq!(merged, 0, "datagrams without DF were coalesced");
        lab.exec_ok(
            "lan",
            &["sysctl", "-qw", "net.ipv4.ip_no_pmtu_disc=0"],
            Duration::from_secs(5),
        )
        .unwrap();
        let merged = phase(&mut router, &mut total, &down, |p| {
            download(&lab, "10.0.0.6", 7105, p)
        });
        assert!(merged > 0, "nothing was coalesced in phase D (inet -> lan)");

        // On veth a partial checksum is trusted end to end, so a wrong pseudo-header sum in the
        // GSO frames would pass unnoticed above. Now the kernel segments them in software before
        // the next device (no UDP segmentation, no TX checksum offload: i1-inet after isp1
        // forwards, r-lan right at the router) and computes every checksum, the senders send
        // finished checksums, and the receivers verify them in software (RX offload off).
        for (role, dev, what) in [
            ("lan", "lan0", &["tx", "off", "rx", "off"][..]),
            ("isp1", "i1-rtr", &["tx", "off"][..]),
            (
                "isp1",
                "i1-inet",
                &["tx", "off", "tx-udp-segmentation", "off"][..],
            ),
            ("inet", "n-i1", &["tx", "off", "rx", "off"][..]),
            (
                "rtr",
                "r-lan",
                &["tx", "off", "tx-udp-segmentation", "off"][..],
            ),
        ] {
            let mut argv = vec!["ethtool", "-K", dev];
            argv.extend_from_slice(what);
            lab.exec_ok(role, &argv, Duration::from_secs(10)).unwrap();
        }
        let errors_before = checksum_errors(&lab, "inet") + checksum_errors(&lab, "lan");
        let merged = phase(&mut router, &mut total, &sw_up, |p| {
            upload(&lab, "10.0.0.7", 7106, p)
        });
        assert!(merged > 0, "nothing was coalesced in phase E");
        let merged = phase(&mut router, &mut total, &sw_down, |p| {
            download(&lab, "10.0.0.8", 7107, p)
        });
        assert!(merged > 0, "nothing was coalesced in phase F");
        for role in ["inet", "lan"] {
            eprintln!("checksum errors in {role}: {}", checksum_errors(&lab, role));
        }
        assert_eq!(
            checksum_errors(&lab, "inet") + checksum_errors(&lab, "lan"),
            errors_before,
            "checksum errors at the receivers"
        );
        let logged = stop_router(router);
        assert_eq!(
            logged, total,
            "worker summaries and status file disagree on udp coalesced"
        );
        eprintln!(
            "coalescing on: {total} datagrams merged in all ({:.1} s)",
            t0.elapsed().as_secs_f64()
        );

        // Coalescing off: the same traffic, nothing merged.
        let mut router = start_router(&lab, &off, &dir.0);
        let mut total = coalesced_now(&router);
        for (plan, port) in [(&coalescible, 7111), (&down, 7112)] {
            let merged = phase(&mut router, &mut total, plan, |p| {
                if port == 7111 {
                    upload(&lab, "10.0.0.7", port, p)
                } else {
                    download(&lab, "10.0.0.8", port, p)
                }
            });
            assert_eq!(merged, 0, "coalesced with udp_coalesce: false");
        }
        assert_eq!(total, 0);
        assert_eq!(stop_router(router), 0);
        // Router, lab and temp directory drop here.
    }
    assert_eq!(leftovers(&prefix), Vec::<String>::new());
    eprintln!("wall time {:.1} s", t0.elapsed().as_secs_f64());
}
