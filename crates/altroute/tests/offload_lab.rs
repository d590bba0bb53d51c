//! Kernel offload of established flows (`datapath.offload: tc`) end to end in the netns lab
//! (root + netns): real TCP through the router with the tc program attached and the workers'
//! sockets bound to IPv4, ARP and IPv6 (no VLAN port in the lab: no `ETH_P_ALL` tap, no socket
//! filter attached).
//!
//! - A connection carries a little data in user space, then gets offloaded (status file
//!   `offload.active`); a bulk transfer both ways then arrives intact (every byte checked)
//!   while the workers' receive counter (`rx_frames`) hardly moves: the kernel forwarded the
//!   bulk (`offload.kernel_frames`), and EtherType-bound sockets only get frames after tc
//!   ingress, so the redirected ones never reached the AF_PACKET rings.
//! - Closing the connection (FIN, which the programs leave to user space) removes the entries.
//! - With software checksums (on veth a partial checksum is otherwise trusted end to end, so a
//!   wrong pseudo-header diff would pass unnoticed): the router's egress ports segment and
//!   checksum the offloaded GSO frames in software (`ethtool -K tx off tso off`) from what the
//!   tc program wrote, the receivers verify every checksum (`rx off`); no `*CsumErrors` and the
//!   data intact, both ways.
//! - UDP (still with software checksums): a flow answered both ways is offloaded after its
//!   warm-up (`offload.installed`); datagrams echoed both ways then arrive intact (each carries
//!   its sequence number and a pattern; up to 5 % loss tolerated, no corruption or duplicates),
//!   forwarded by the kernel while user space hardly sees a frame, and no checksum errors at
//!   the receivers. UDP has no FIN: once idle, the flow must stay offloaded until the UDP timeout
//!   (`nat.timeouts.udp: 120`, the RFC 4787 floor the config enforces) expires it, and its
//!   entries are removed then (not before ~120 s, not long after).
//! - A second connection is offloaded, then isp1 black-holes: the gateway goes down, the
//!   entries are flushed, and the connection's next frames reach user space again.
//!
//! Skips with a printed reason when not root (or a tool is missing), unless
//! `ALTROUTE_REQUIRE_NETNS` is set. Lab (prefix `ar<pid>o-`), router and temp directory are torn
//! down by Drop guards.
// Lab scenarios are read top to bottom; the 150-line rule is for code outside tests.
#![allow(clippy::too_many_lines)]
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use altroute_lab::demo::RouterProcess;
use altroute_lab::{Forwarder, Isp, Lab};

mod common;
use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_altroute");
const SERVER: &str = "203.0.113.10";
const UP_BYTES: usize = 128 << 20;
const DOWN_BYTES: usize = 32 << 20;
/// The UDP timeout of the test's config (the lowest the config accepts).
const UDP_TIMEOUT_S: u64 = 120;
const DATAGRAM: usize = 200;
const DATAGRAMS: u32 = 20_000;

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn pattern(i: usize, salt: u8) -> u8 {
    ((i.wrapping_mul(31) >> 3) as u8) ^ (i as u8) ^ salt
}

fn send(s: &mut TcpStream, from: usize, n: usize, salt: u8) {
    let mut buf = vec![0u8; 1 << 16];
    let mut at = from;
    while at < from + n {
        let k = buf.len().min(from + n - at);
        for (j, b) in buf[..k].iter_mut().enumerate() {
            *b = pattern(at + j, salt);
        }
        s.write_all(&buf[..k]).unwrap();
        at += k;
    }
}

/// Reads exactly `n` bytes and checks them.
fn recv(s: &mut TcpStream, from: usize, n: usize, salt: u8) {
    let mut buf = vec![0u8; 1 << 16];
    let mut at = from;
    while at < from + n {
        let k = buf.len().min(from + n - at);
        s.read_exact(&mut buf[..k]).unwrap();
        for (j, b) in buf[..k].iter().enumerate() {
            assert_eq!(*b, pattern(at + j, salt), "byte {} corrupted", at + j);
        }
        at += k;
    }
}

/// Sends `n` bytes (from offset `from`, pattern `salt`) from `tx` in a thread while `rx` reads
/// and checks them here; gives `tx` back.
fn transfer(mut tx: TcpStream, rx: &mut TcpStream, from: usize, n: usize, salt: u8) -> TcpStream {
    let sender = thread::spawn(move || {
        send(&mut tx, from, n, salt);
        tx
    });
    recv(rx, from, n, salt);
    sender.join().unwrap()
}

/// The status file as JSON, once it includes everything up to now (workers report every
/// second, the file is written every second).
fn settled(router: &mut RouterProcess) -> serde_json::Value {
    let now = router.status().map_or(0, |s| s.time_ms);
    router
        .fresh_status(now + 2100, Duration::from_secs(10), &AtomicBool::new(false))
        .unwrap();
    let text = std::fs::read_to_string(router.status_file()).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn offload(v: &serde_json::Value, what: &str) -> u64 {
    v["offload"][what]
        .as_u64()
        .unwrap_or_else(|| panic!("no offload.{what} in {v}"))
}

fn rx_frames(v: &serde_json::Value) -> u64 {
    v["rx_frames"].as_u64().unwrap()
}

fn fast_path_frames(v: &serde_json::Value) -> u64 {
    v["fast_path_frames"].as_u64().unwrap()
}

/// Waits (up to 15 s) until `offload.active` satisfies `ok`; returns the status.
fn wait_active(router: &mut RouterProcess, ok: impl Fn(u64) -> bool) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let v = settled(router);
        if ok(offload(&v, "active")) || Instant::now() > deadline {
            return v;
        }
    }
}

/// Waits (up to 15 s) until the status satisfies `ok`; returns it.
fn wait_status(
    router: &mut RouterProcess,
    ok: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let v = settled(router);
        if ok(&v) || Instant::now() > deadline {
            return v;
        }
    }
}

/// Datagram `seq`: its sequence number, then a pattern derived from it.
fn datagram(seq: u32) -> [u8; DATAGRAM] {
    let mut d = [0u8; DATAGRAM];
    d[..4].copy_from_slice(&seq.to_be_bytes());
    for (j, b) in d[4..].iter_mut().enumerate() {
        *b = pattern(seq as usize * DATAGRAM + j, 9);
    }
    d
}

/// The sequence number of an intact datagram, `None` if it is corrupted.
fn check_datagram(d: &[u8]) -> Option<u32> {
    let seq = u32::from_be_bytes(d.get(..4)?.try_into().ok()?);
    (d == datagram(seq)).then_some(seq)
}

/// What one side received: intact datagrams (distinct), duplicates, corrupted ones.
#[derive(Debug, Default)]
struct UdpReport {
    got: u32,
    dups: u32,
    bad: u32,
}

/// Receives on `sock` until `stop` is set and nothing came for 300 ms; echoes each datagram to
/// its sender if `echo`.
fn udp_receiver(sock: UdpSocket, stop: Arc<AtomicBool>, echo: bool) -> UdpReport {
    sock.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut seen = vec![false; DATAGRAMS as usize + 64];
    let mut r = UdpReport::default();
    let mut buf = [0u8; 2048];
    loop {
        match sock.recv_from(&mut buf) {
            Ok((k, from)) => {
                match check_datagram(&buf[..k]) {
                    Some(seq) if seen.get(seq as usize) == Some(&true) => r.dups += 1,
                    Some(seq) => {
                        if let Some(x) = seen.get_mut(seq as usize) {
                            *x = true;
                        }
                        r.got += 1;
                    }
                    None => r.bad += 1,
                }
                if echo {
                    sock.send_to(&buf[..k], from).unwrap();
                }
            }
            Err(_) if stop.load(Ordering::Relaxed) => return r,
            Err(_) => {}
        }
    }
}

/// A UDP socket pair: the client in the LAN connected to the server's socket in inet.
fn udp_pair(lab: &Lab, port: u16) -> (UdpSocket, UdpSocket) {
    let server_addr: SocketAddr = format!("{SERVER}:{port}").parse().unwrap();
    let inet = lab.ns("inet");
    let server = thread::spawn(move || {
        altroute_io::netns::enter(&inet).unwrap();
        UdpSocket::bind(server_addr).unwrap()
    })
    .join()
    .unwrap();
    let lan = lab.ns("lan");
    let client = thread::spawn(move || {
        altroute_io::netns::enter(&lan).unwrap();
        let c = UdpSocket::bind("0.0.0.0:0").unwrap();
        c.connect(server_addr).unwrap();
        c
    })
    .join()
    .unwrap();
    (client, server)
}

/// A client connection from the LAN to the server in inet: the client side is made in the LAN
/// namespace, the server side accepted in inet.
fn connect(lab: &Lab, port: u16) -> (TcpStream, TcpStream) {
    let (tx, rx) = mpsc::channel();
    let inet = lab.ns("inet");
    let server = thread::spawn(move || {
        altroute_io::netns::enter(&inet).unwrap();
        let l = TcpListener::bind((SERVER, port)).unwrap();
        tx.send(()).unwrap();
        l.accept().unwrap().0
    });
    rx.recv_timeout(Duration::from_secs(10)).unwrap();
    let lan = lab.ns("lan");
    let client = thread::spawn(move || {
        altroute_io::netns::enter(&lan).unwrap();
        TcpStream::connect((SERVER, port)).unwrap()
    })
    .join()
    .unwrap();
    let server = server.join().unwrap();
    for s in [&client, &server] {
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
    }
    (client, server)
}

#[test]
fn offloaded_tcp_flows_are_forwarded_by_the_kernel() {
    if !should_run(
        "offloaded_tcp_flows_are_forwarded_by_the_kernel",
        &[
            ("ip", "-V"),
            ("kill", "-l"),
            ("sysctl", "-V"),
            ("nft", "-v"),
            ("ethtool", "--version"),
            ("nstat", "-V"),
        ],
    ) {
        return;
    }
    let t0 = Instant::now();
    let prefix = format!("ar{}o-", std::process::id());
    let dir = TempDir(std::env::temp_dir().join(format!("altroute-test-{prefix}")));
    std::fs::create_dir_all(&dir.0).unwrap();
    let example =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/lab-dual-wan-failover.yaml");
    let config = dir.0.join("offload.yaml");
    let mut text = std::fs::read_to_string(&example).unwrap();
    text.push_str(&format!(
        "\ndatapath:\n  offload: tc\nnat:\n  timeouts:\n    udp: {UDP_TIMEOUT_S}\n"
    ));
    std::fs::write(&config, text).unwrap();
    {
        let lab = Lab::up(&prefix, Forwarder::Router).expect("lab up");
        let mut router =
            RouterProcess::start(Path::new(BIN), &config, &lab.ns("rtr"), &dir.0).unwrap();
        router
            .wait_ready(Duration::from_secs(30), &AtomicBool::new(false))
            .unwrap_or_else(|e| panic!("{}: {e}", lab.prefix()));
        let log = std::fs::read_to_string(router.log_file()).unwrap();
        assert!(log.contains("offload tc"), "offload not loaded:\n{log}");

        // 1. Warm-up in user space, then offloaded.
        let (c, mut s) = connect(&lab, 7201);
        let warm = 1 << 20;
        let c = transfer(c, &mut s, 0, warm, 1);
        let v = wait_active(&mut router, |a| a >= 1);
        assert!(offload(&v, "active") >= 1, "not offloaded: {v}");
        let (rx0, k0, f0) = (
            rx_frames(&v),
            offload(&v, "kernel_frames"),
            fast_path_frames(&v),
        );

        // 2. Bulk both ways, checked byte by byte.
        let t = Instant::now();
        let mut c = transfer(c, &mut s, warm, UP_BYTES, 1);
        let s = transfer(s, &mut c, 0, DOWN_BYTES, 2);
        let secs = t.elapsed().as_secs_f64();
        let v = settled(&mut router);
        let (rx, kernel, fast) = (
            rx_frames(&v) - rx0,
            offload(&v, "kernel_frames") - k0,
            fast_path_frames(&v) - f0,
        );
        let segments = (UP_BYTES + DOWN_BYTES) / 1448;
        eprintln!(
            "bulk {} MiB in {secs:.1} s ({:.2} Gbit/s, debug-build pattern checks): user-space frames {rx} (health probes included), of them fast path {fast}; kernel frames {kernel}, ~{segments} segments; {v}",
            (UP_BYTES + DOWN_BYTES) >> 20,
            (UP_BYTES + DOWN_BYTES) as f64 * 8.0 / secs / 1e9,
        );
        assert!(kernel > 1000, "the kernel forwarded only {kernel} frames");
        bypassed_user_space(rx, fast, kernel);
        assert!(offload(&v, "kernel_bytes") as usize > UP_BYTES);
        // The flow's accounting followed the kernel's counters.
        let out_bytes = v["gateways"][0]["out_bytes"].as_u64().unwrap();
        assert!(
            out_bytes as usize > UP_BYTES,
            "gateway out bytes {out_bytes}"
        );

        // 3. FIN: user space sees it, the entries go.
        let removed = offload(&v, "removed");
        c.shutdown(Shutdown::Write).unwrap();
        let mut s = s;
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty());
        s.shutdown(Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        c.read_to_end(&mut rest).unwrap();
        drop((c, s));
        let v = wait_active(&mut router, |a| a == 0);
        assert_eq!(offload(&v, "active"), 0, "entries left after FIN: {v}");
        assert!(offload(&v, "removed") > removed);

        // 4. Software checksums: the GSO frames the tc program rewrote are segmented and
        // checksummed by the router's egress ports in software, and verified by the receivers.
        for (role, dev, what) in [
            (
                "rtr",
                "r-wan1",
                &["tx", "off", "tso", "off", "gso", "off"][..],
            ),
            (
                "rtr",
                "r-lan",
                &["tx", "off", "tso", "off", "gso", "off"][..],
            ),
            ("inet", "n-i1", &["rx", "off"][..]),
            ("lan", "lan0", &["rx", "off"][..]),
        ] {
            let mut argv = vec!["ethtool", "-K", dev];
            argv.extend_from_slice(what);
            lab.exec_ok(role, &argv, Duration::from_secs(10)).unwrap();
        }
        let errors_before = checksum_errors(&lab, "inet") + checksum_errors(&lab, "lan");
        let (c, mut s) = connect(&lab, 7203);
        let c = transfer(c, &mut s, 0, warm, 4);
        let v = wait_active(&mut router, |a| a >= 1);
        assert!(offload(&v, "active") >= 1, "not offloaded: {v}");
        let k0 = offload(&v, "kernel_frames");
        let mut c = transfer(c, &mut s, warm, 32 << 20, 4);
        let s = transfer(s, &mut c, 0, 8 << 20, 5);
        let v = settled(&mut router);
        let kernel = offload(&v, "kernel_frames") - k0;
        let errors = checksum_errors(&lab, "inet") + checksum_errors(&lab, "lan");
        eprintln!(
            "software checksums: kernel frames {kernel}, checksum errors {errors_before} -> {errors}"
        );
        assert!(kernel > 100, "the kernel forwarded only {kernel} frames");
        assert_eq!(errors, errors_before, "checksum errors at the receivers");
        drop((c, s));

        // 5. UDP, still with software checksums on the router's egress ports and verification
        // at the receivers.
        let (client, server) = udp_pair(&lab, 7301);
        let stop = Arc::new(AtomicBool::new(false));
        let echo = {
            let stop = stop.clone();
            thread::spawn(move || udp_receiver(server, stop, true))
        };
        let installed = offload(&settled(&mut router), "installed");
        // Warm-up in user space: request and answer, 16 times (the flow is answered and carries
        // more than the 8 packets the daemon waits for).
        client
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let mut buf = [0u8; 2048];
        for seq in 0..16 {
            client.send(&datagram(seq)).unwrap();
            let k = client.recv(&mut buf).unwrap();
            assert_eq!(check_datagram(&buf[..k]), Some(seq));
        }
        let v = wait_status(&mut router, |v| offload(v, "installed") > installed);
        assert!(
            offload(&v, "installed") > installed && offload(&v, "active") >= 1,
            "UDP flow not offloaded: {v}"
        );
        let (rx0, k0, f0) = (
            rx_frames(&v),
            offload(&v, "kernel_frames"),
            fast_path_frames(&v),
        );
        let errors_before = checksum_errors(&lab, "inet") + checksum_errors(&lab, "lan");
        // Bulk: bursts of 50 with 1 ms pauses, every datagram echoed.
        let client_stop = Arc::new(AtomicBool::new(false));
        let echoes = {
            let (sock, stop) = (client.try_clone().unwrap(), client_stop.clone());
            thread::spawn(move || udp_receiver(sock, stop, false))
        };
        let t = Instant::now();
        for seq in 16..DATAGRAMS {
            client.send(&datagram(seq)).unwrap();
            if seq % 50 == 0 {
                thread::sleep(Duration::from_millis(1));
            }
        }
        thread::sleep(Duration::from_millis(500));
        stop.store(true, Ordering::Relaxed);
        client_stop.store(true, Ordering::Relaxed);
        let (at_server, at_client) = (echo.join().unwrap(), echoes.join().unwrap());
        let idle_since = Instant::now();
        let v = settled(&mut router);
        let (rx, kernel, fast) = (
            rx_frames(&v) - rx0,
            offload(&v, "kernel_frames") - k0,
            fast_path_frames(&v) - f0,
        );
        let errors = checksum_errors(&lab, "inet") + checksum_errors(&lab, "lan");
        let bulk = DATAGRAMS - 16;
        eprintln!(
            "udp: {bulk} datagrams of {DATAGRAM} B in {:.2} s; server {at_server:?}, client (echoes) {at_client:?}; user-space frames {rx}, fast path {fast}; kernel frames {kernel}; checksum errors {errors_before} -> {errors}",
            t.elapsed().as_secs_f64()
        );
        for (side, r) in [("server", &at_server), ("client", &at_client)] {
            assert_eq!((r.bad, r.dups), (0, 0), "{side}: corrupted or duplicated");
        }
        // The server also got the 16 warm-up datagrams.
        assert!(
            at_server.got >= 16 + bulk * 95 / 100,
            "server got {} of {}",
            at_server.got,
            bulk + 16
        );
        assert!(
            at_client.got >= bulk * 90 / 100,
            "client got {} echoes of {bulk}",
            at_client.got
        );
        assert!(
            kernel >= u64::from(at_server.got - 16 + at_client.got),
            "the kernel forwarded only {kernel} frames"
        );
        bypassed_user_space(rx, fast, kernel);
        assert_eq!(errors, errors_before, "checksum errors at the receivers");
        // Idle: offloaded until the UDP timeout expires the flow, then the entries go.
        let removed = offload(&v, "removed");
        let deadline = idle_since + Duration::from_secs(UDP_TIMEOUT_S + 30);
        let gone = loop {
            thread::sleep(Duration::from_secs(5));
            let v = settled(&mut router);
            if offload(&v, "active") == 0 {
                break v;
            }
            assert!(
                Instant::now() < deadline,
                "UDP entries still there {:.0} s after the flow went idle: {v}",
                idle_since.elapsed().as_secs_f64()
            );
        };
        let idle = idle_since.elapsed().as_secs();
        eprintln!("udp: entries removed {idle} s after the flow went idle");
        assert!(
            idle + 3 >= UDP_TIMEOUT_S,
            "UDP entries removed after {idle} s idle, before the {UDP_TIMEOUT_S} s timeout: {gone}"
        );
        assert!(offload(&gone, "removed") > removed);
        drop(client);

        // 6. A gateway going down flushes the entries; the flow comes back to user space.
        let (c, mut s) = connect(&lab, 7202);
        let mut c = transfer(c, &mut s, 0, warm, 3);
        let v = wait_active(&mut router, |a| a >= 1);
        assert!(offload(&v, "active") >= 1, "second flow not offloaded: {v}");
        let removed = offload(&v, "removed");
        lab.blackhole(Isp::One).unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        while router
            .status()
            .and_then(|st| st.gateway("isp1").map(|g| g.state == "up"))
            .unwrap_or(true)
        {
            assert!(Instant::now() < deadline, "isp1 never went down");
            thread::sleep(Duration::from_millis(100));
        }
        let v = settled(&mut router);
        assert_eq!(
            offload(&v, "active"),
            0,
            "entries left after gateway down: {v}"
        );
        assert!(offload(&v, "removed") > removed);
        let rx0 = rx_frames(&v);
        // The connection's next frames reach user space (which resets it: on_gateway_down).
        let _ = c.set_write_timeout(Some(Duration::from_secs(2)));
        let _ = c.write_all(&[7u8; 4096]);
        thread::sleep(Duration::from_millis(500));
        let v = settled(&mut router);
        assert!(
            rx_frames(&v) > rx0,
            "the flow's frames did not come back to user space: {v}"
        );
        assert_eq!(offload(&v, "active"), 0);
        lab.restore(Isp::One).unwrap();
        drop((c, s));

        let st = router.stop(Duration::from_secs(15)).unwrap();
        assert!(st.success(), "router exit: {st}\n{}", router.log_tail(20));
        eprintln!("router log tail:\n{}", router.log_tail(6));
    }
    assert_eq!(leftovers(&prefix), Vec::<String>::new());
    eprintln!("wall time {:.1} s", t0.elapsed().as_secs_f64());
}

/// The offloaded flows' frames went through the kernel, not user space: the workers received
/// `rx` frames (`fast` of them on the fast path) while the kernel forwarded `kernel`. User space
/// still receives the health probes' replies and ARP (~50 frames/s in this lab), but hardly any
/// frame of an offloaded connection: those would go through the fast path.
fn bypassed_user_space(rx: u64, fast: u64, kernel: u64) {
    assert!(
        fast < 100,
        "user space still saw {fast} frames of established flows (kernel {kernel})"
    );
    assert!(
        rx * 4 < kernel,
        "user space saw {rx} frames (kernel {kernel})"
    );
}
