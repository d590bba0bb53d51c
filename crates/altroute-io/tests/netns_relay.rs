//! An L2 relay built on altroute-io between two veths (client ns <-> relay ns <-> server ns, one
//! 10.77.0.0/24 subnet, no NAT) must carry ping and a kernel TCP transfer: in plain mode with
//! offloads off on the peers, and in vnet mode with offloads on, where GSO super-frames must pass
//! whole; with V2 and V3 RX rings, sendmmsg and the TX ring; and through the pnet fallback.
//! Needs root, `ip`, `ping`, `ethtool` (skips otherwise unless ALTROUTE_REQUIRE_NETNS is set).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use altroute_io::{PnetPort, Port, PortConfig, PortStats, RxMode, TxMode};
use common::{Lab, in_ns, lab_or_skip, pattern, spawn_in};

#[derive(Debug, Default, Clone)]
struct DirStats {
    frames: u64,
    max_len: usize,
    gso_frames: u64,
    csum_not_ready: u64,
    rx: PortStats,
    tx: PortStats,
}

/// A running relay: one thread per direction, each with a receiving port on one side and a
/// transmit-only port on the other.
struct Relay {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<DirStats>>,
}

#[derive(Clone, Copy, PartialEq)]
enum Backend {
    Packet,
    Pnet,
}

impl Relay {
    fn start(ns: &str, a: &str, b: &str, rx_cfg: PortConfig, backend: Backend) -> Relay {
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = mpsc::channel();
        let mut threads = Vec::new();
        for (from, to) in [(a, b), (b, a)] {
            let mut rc = rx_cfg.clone();
            rc.iface = from.to_owned();
            let mut tc = rx_cfg.clone();
            tc.iface = to.to_owned();
            tc.rx = RxMode::None;
            tc.fanout = None;
            let stop = stop.clone();
            let ready = ready_tx.clone();
            threads.push(spawn_in(ns, move || match backend {
                Backend::Packet => {
                    let mut rx = Port::open(&rc).expect("open rx port");
                    let mut tx = Port::open(&tc).expect("open tx port");
                    ready.send(()).expect("ready");
                    let mut st = DirStats::default();
                    while !stop.load(Ordering::Relaxed) {
                        let mut batch = rx
                            .rx_batch(64, Duration::from_millis(20))
                            .expect("rx_batch");
                        for f in batch.iter_mut() {
                            st.frames += 1;
                            st.max_len = st.max_len.max(f.len());
                            if f.vnet().is_some_and(|v| v.is_gso()) {
                                st.gso_frames += 1;
                            }
                            if f.meta().csum_not_ready {
                                st.csum_not_ready += 1;
                            }
                        }
                        tx.send(batch.tx_frames());
                    }
                    st.rx = rx.stats().expect("stats");
                    st.tx = tx.stats().expect("stats");
                    st
                }
                Backend::Pnet => {
                    let mut rx = PnetPort::open(&rc).expect("open pnet rx");
                    let mut tx = PnetPort::open(&tc).expect("open pnet tx");
                    ready.send(()).expect("ready");
                    let mut st = DirStats::default();
                    while !stop.load(Ordering::Relaxed) {
                        let batch = rx.rx_batch(1, Duration::from_millis(20)).expect("pnet rx");
                        st.frames += batch.len() as u64;
                        tx.send(batch.tx_frames());
                    }
                    st.rx = rx.stats().expect("stats");
                    st.tx = tx.stats().expect("stats");
                    st
                }
            }));
        }
        for _ in 0..2 {
            ready_rx
                .recv_timeout(Duration::from_secs(10))
                .expect("relay threads did not start");
        }
        Relay { stop, threads }
    }

    fn finish(mut self) -> Vec<DirStats> {
        self.stop.store(true, Ordering::Relaxed);
        self.threads
            .drain(..)
            .map(|t| t.join().expect("relay thread panicked"))
            .collect()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

struct Topo {
    lab: Lab,
    client: String,
    relay: String,
    server: String,
}

fn topo(test: &str, offloads_off: bool) -> Option<Topo> {
    let mut lab = lab_or_skip(test, &["ping", "ethtool"])?;
    let client = lab.ns("c");
    let relay = lab.ns("r");
    let server = lab.ns("s");
    lab.veth(&client, "c0", &relay, "r0");
    lab.veth(&server, "s0", &relay, "r1");
    lab.exec(&client, &["ip", "addr", "add", "10.77.0.1/24", "dev", "c0"]);
    lab.exec(&server, &["ip", "addr", "add", "10.77.0.2/24", "dev", "s0"]);
    if offloads_off {
        for (ns, dev) in [(&client, "c0"), (&server, "s0")] {
            lab.exec(
                ns,
                &[
                    "ethtool", "-K", dev, "tx", "off", "tso", "off", "gso", "off",
                ],
            );
        }
    }
    Some(Topo {
        lab,
        client,
        relay,
        server,
    })
}

/// Sends `bytes` of a known pattern client -> server over kernel TCP; returns the elapsed time.
fn tcp_transfer(t: &Topo, bytes: u64) -> Duration {
    let (addr_tx, addr_rx) = mpsc::channel();
    let server = spawn_in(&t.server, move || {
        let l = TcpListener::bind("10.77.0.2:0").expect("bind");
        addr_tx
            .send(l.local_addr().expect("addr"))
            .expect("send addr");
        let (mut s, _) = l.accept().expect("accept");
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let mut buf = vec![0u8; 1 << 16];
        let (mut n, mut bad) = (0u64, 0u64);
        loop {
            let r = s.read(&mut buf).expect("read (relay stalled?)");
            if r == 0 {
                break;
            }
            for &b in &buf[..r] {
                if b != pattern(n) {
                    bad += 1;
                }
                n += 1;
            }
        }
        (n, bad)
    });
    let addr: SocketAddr = addr_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("server addr");
    let start = Instant::now();
    in_ns(&t.client, move || {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).expect("connect");
        s.set_write_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let mut chunk = vec![0u8; 1 << 16];
        let mut off = 0u64;
        while off < bytes {
            let n = (bytes - off).min(chunk.len() as u64) as usize;
            for (i, b) in chunk[..n].iter_mut().enumerate() {
                *b = pattern(off + i as u64);
            }
            s.write_all(&chunk[..n]).expect("write (relay stalled?)");
            off += n as u64;
        }
        s.shutdown(std::net::Shutdown::Write).expect("shutdown");
        // Wait for the server to close so the whole transfer is timed.
        let mut one = [0u8; 1];
        let _ = s.read(&mut one);
    });
    let (n, bad) = server.join().expect("server thread");
    let took = start.elapsed();
    assert_eq!(n, bytes, "server received all bytes");
    assert_eq!(bad, 0, "payload intact");
    took
}

fn ping(t: &Topo) {
    assert!(
        t.lab.exec_ok(
            &t.client,
            &["ping", "-c", "3", "-i", "0.2", "-W", "2", "10.77.0.2"]
        ),
        "ping through the relay"
    );
}

fn run_case(
    name: &str,
    offloads_off: bool,
    cfg: PortConfig,
    backend: Backend,
    bytes: u64,
) -> Option<Vec<DirStats>> {
    let t = topo(name, offloads_off)?;
    let relay = Relay::start(&t.relay, "r0", "r1", cfg, backend);
    ping(&t);
    let took = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| tcp_transfer(&t, bytes)));
    let stats = relay.finish();
    let took = match took {
        Ok(d) => d,
        Err(p) => {
            eprintln!("{name}: transfer failed; relay stats {stats:#?}");
            std::panic::resume_unwind(p)
        }
    };
    eprintln!(
        "{name}: {} MiB in {:?} ({:.2} Gbit/s, debug build); client->server {:?}; server->client {:?}",
        bytes >> 20,
        took,
        bytes as f64 * 8.0 / took.as_secs_f64() / 1e9,
        stats[0],
        stats[1]
    );
    for s in &stats {
        assert_eq!(s.rx.truncated, 0, "no frame cut: {s:?}");
        assert_eq!(s.rx.outgoing_skipped, 0, "PACKET_IGNORE_OUTGOING: {s:?}");
        assert!(s.tx.tx_frames > 0, "{s:?}");
    }
    Some(stats)
}

#[test]
fn plain_mode_offloads_off_v2_sendmmsg() {
    let cfg = PortConfig::new("");
    let Some(st) = run_case("plainv2", true, cfg, Backend::Packet, 16 << 20) else {
        return;
    };
    for s in &st {
        assert!(
            s.max_len <= 1514,
            "offloads off: no frame above the MTU: {s:?}"
        );
        assert_eq!(s.gso_frames, 0);
        assert_eq!(
            s.csum_not_ready, 0,
            "tx checksum offload is off on the peers"
        );
    }
}

fn vnet_case(name: &str, cfg: PortConfig) {
    let Some(st) = run_case(name, false, cfg, Backend::Packet, 64 << 20) else {
        return;
    };
    let c2s = &st[0];
    assert!(c2s.gso_frames > 0, "GSO super-frames seen: {c2s:?}");
    assert!(
        c2s.max_len > 1514,
        "frames above 1514 B passed whole: {c2s:?}"
    );
    assert!(c2s.tx.tx_bytes >= 64 << 20, "{c2s:?}");
    // Each received frame, super-frames included, went out whole as one frame.
    assert_eq!(c2s.tx.tx_frames, c2s.frames, "{c2s:?}");
    assert_eq!(c2s.tx.tx_errors, 0, "{c2s:?}");
}

#[test]
fn vnet_mode_offloads_on_v2_sendmmsg() {
    let cfg = PortConfig {
        vnet_hdr: true,
        ..PortConfig::new("")
    };
    vnet_case("vnetv2", cfg);
}

#[test]
fn vnet_mode_offloads_on_v2_spill() {
    // MTU-sized slots: the GSO super-frames spill to the socket queue and still pass whole
    // (`vnet_case`: every received frame went out as one frame, some above 1514 B).
    let cfg = PortConfig {
        vnet_hdr: true,
        rx: RxMode::V2Spill {
            frames: 512,
            slot_frame: 0,
            spill_frames: 8,
            rcvbuf: 4 << 20,
        },
        ..PortConfig::new("")
    };
    let Some(st) = run_case("vnetsp", false, cfg, Backend::Packet, 64 << 20) else {
        return;
    };
    let c2s = &st[0];
    assert!(c2s.gso_frames > 0, "GSO super-frames seen: {c2s:?}");
    assert!(c2s.max_len > 1514, "{c2s:?}");
    assert!(
        c2s.rx.spilled > 0,
        "super-frames came through the spill path: {c2s:?}"
    );
    assert_eq!(c2s.rx.truncated, 0, "{c2s:?}");
    assert!(c2s.tx.tx_bytes >= 64 << 20, "{c2s:?}");
    assert_eq!(c2s.tx.tx_frames, c2s.frames, "{c2s:?}");
    assert_eq!(c2s.tx.tx_errors, 0, "{c2s:?}");
}

#[test]
fn vnet_mode_offloads_on_v3_sendmmsg() {
    let cfg = PortConfig {
        vnet_hdr: true,
        rx: RxMode::V3 {
            block_size: 1 << 20,
            blocks: 16,
            retire_ms: 1,
        },
        ..PortConfig::new("")
    };
    vnet_case("vnetv3", cfg);
}

#[test]
fn vnet_mode_offloads_on_v2_tx_ring() {
    let cfg = PortConfig {
        vnet_hdr: true,
        tx: TxMode::Ring { frames: 64 },
        ..PortConfig::new("")
    };
    vnet_case("vnettxr", cfg);
}

#[test]
fn plain_mode_qdisc_bypass_blocking() {
    let cfg = PortConfig {
        qdisc_bypass: true,
        tx_blocking: true,
        ..PortConfig::new("")
    };
    run_case("bypass", true, cfg, Backend::Packet, 8 << 20);
}

#[test]
fn pnet_fallback_relays_ping_and_tcp() {
    let cfg = PortConfig {
        max_frame: Some(1518),
        ..PortConfig::new("")
    };
    run_case("pnet", true, cfg, Backend::Pnet, 1 << 20);
}
