//! Fanout: two worker threads, each owning one port on each side of a relay (r0 and r1, both in
//! fanout groups), must together forward every frame exactly once, and must never read back the
//! frames they transmit. Checked in hash mode and with the cBPF steering program (where each frame
//! must also land on the worker `Steering::worker` names).

mod common;

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use altroute_io::{
    Fanout, FanoutMode, Port, PortConfig, PortStats, RxMode, Side, Steering, TxFrame, wait_any,
};
use common::{in_ns, lab_or_skip, mac_of, spawn_in, udp_frame, udp_seq};

const WORKERS: u32 = 2;
const FRAMES: u32 = 3000;

#[derive(Debug, Default)]
struct WorkerOut {
    seqs_from_lan: Vec<u32>,
    wrong_worker: u32,
    r0: PortStats,
    r1: PortStats,
}

fn run(test: &str, lan_mode: FanoutMode, wan_mode: FanoutMode, lan_steer: Option<Steering>) {
    let Some(mut lab) = lab_or_skip(test, &[]) else {
        return;
    };
    let client = lab.ns("c");
    let relay = lab.ns("r");
    let server = lab.ns("s");
    lab.veth(&client, "c0", &relay, "r0");
    lab.veth(&server, "s0", &relay, "r1");

    let stop = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = mpsc::channel();
    let mut workers = Vec::new();
    for w in 0..WORKERS {
        let (stop, ready) = (stop.clone(), ready_tx.clone());
        let (lan_mode, wan_mode) = (lan_mode.clone(), wan_mode.clone());
        let lan_steer = lan_steer.clone();
        // Join the groups in worker order so member index == worker index.
        let (go_tx, go_rx) = mpsc::channel::<()>();
        workers.push(spawn_in(&relay, move || {
            let cfg = |iface: &str, group: u16, mode: FanoutMode| PortConfig {
                rx: RxMode::V2 { frames: 1024 },
                fanout: Some(Fanout {
                    group,
                    mode,
                    defrag: false,
                }),
                ..PortConfig::new(iface)
            };
            let mut r0 = Port::open(&cfg("r0", 100, lan_mode)).expect("open r0");
            let mut r1 = Port::open(&cfg("r1", 101, wan_mode)).expect("open r1");
            ready.send(()).expect("ready");
            let _ = go_rx.recv();
            let mut out = WorkerOut::default();
            while !stop.load(Ordering::Relaxed) {
                wait_any(&[&r0, &r1], Duration::from_millis(20)).expect("poll");
                {
                    let batch = r0.rx_batch(64, Duration::ZERO).expect("rx r0");
                    for i in 0..batch.len() {
                        let f = batch.data(i).expect("frame");
                        if let Some(s) = udp_seq(f) {
                            out.seqs_from_lan.push(s);
                        }
                        if let Some(st) = &lan_steer
                            && st.worker(f, 0) != w
                        {
                            out.wrong_worker += 1;
                        }
                    }
                    r1.send(batch.tx_frames());
                }
                let batch = r1.rx_batch(64, Duration::ZERO).expect("rx r1");
                r0.send(batch.tx_frames());
            }
            out.r0 = r0.stats().expect("stats");
            out.r1 = r1.stats().expect("stats");
            out
        }));
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("worker started");
        go_tx.send(()).expect("go");
    }

    // The receiver behind r1.
    let (srv_ready_tx, srv_ready_rx) = mpsc::channel();
    let server_thread = spawn_in(&server, move || {
        let mut p = Port::open(&PortConfig {
            rx: RxMode::V2 { frames: 4096 },
            ..PortConfig::new("s0")
        })
        .expect("open s0");
        srv_ready_tx.send(mac_of("s0")).expect("ready");
        let mut seen: HashMap<u32, u32> = HashMap::new();
        let mut last = Instant::now();
        while last.elapsed() < Duration::from_millis(1500) {
            let b = p.rx_batch(64, Duration::from_millis(50)).expect("rx s0");
            for i in 0..b.len() {
                if let Some(s) = udp_seq(b.data(i).expect("frame")) {
                    *seen.entry(s).or_default() += 1;
                    last = Instant::now();
                }
            }
        }
        (seen, p.stats().expect("stats"))
    });
    let s0_mac = srv_ready_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("server");

    // The sender in front of r0: many flows (source ports), paced so no ring overflows.
    in_ns(&client, move || {
        let mut p = Port::open(&PortConfig {
            rx: RxMode::None,
            ..PortConfig::new("c0")
        })
        .expect("open c0");
        let src = mac_of("c0");
        let frames: Vec<Vec<u8>> = (0..FRAMES)
            .map(|i| {
                let sport = 1024 + ((i * 7919) % 60000) as u16;
                udp_frame(s0_mac, src, None, sport, 4000, i, 64)
            })
            .collect();
        for chunk in frames.chunks(32) {
            let out = p.send(chunk.iter().map(|f| TxFrame::new(f)));
            assert_eq!(out.sent, chunk.len(), "client send");
            std::thread::sleep(Duration::from_millis(2));
        }
    });

    let (seen, s0_stats) = server_thread.join().expect("server thread");
    stop.store(true, Ordering::Relaxed);
    let outs: Vec<WorkerOut> = workers
        .into_iter()
        .map(|w| w.join().expect("worker"))
        .collect();

    // Every frame reached the server exactly once.
    let dups: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        dups.is_empty(),
        "duplicates at the server: {:?}",
        &dups[..dups.len().min(10)]
    );
    assert_eq!(
        seen.len() as u32,
        FRAMES,
        "server got every frame once; s0 {s0_stats:?}"
    );
    // And the workers split them without overlap.
    let mut all: HashMap<u32, usize> = HashMap::new();
    for (w, o) in outs.iter().enumerate() {
        eprintln!(
            "{test}: worker {w}: {} frames from r0; r0 {:?}; r1 {:?}",
            o.seqs_from_lan.len(),
            o.r0,
            o.r1
        );
        assert!(!o.seqs_from_lan.is_empty(), "worker {w} got a share");
        for s in &o.seqs_from_lan {
            assert!(all.insert(*s, w).is_none(), "frame {s} read by two workers");
        }
        assert_eq!(o.wrong_worker, 0, "cBPF steering matches Steering::worker");
        // Never re-read transmitted frames: nothing arrives on r1 from the server side, so
        // anything read there would be our own transmissions.
        assert_eq!(o.r1.rx_frames, 0, "worker {w} re-read its own frames on r1");
        assert_eq!(
            o.r1.outgoing_skipped, 0,
            "FLAG_IGNORE_OUTGOING kept them out of the ring"
        );
        assert_eq!(o.r0.ring_drops, 0);
    }
    assert_eq!(all.len() as u32, FRAMES);
}

#[test]
fn fanout_hash_two_workers_exactly_once() {
    run("fohash", FanoutMode::Hash, FanoutMode::Hash, None);
}

#[test]
fn fanout_cbpf_steering_two_workers_exactly_once() {
    let nz = |v| NonZeroU32::new(v).expect("non-zero");
    let lan = Steering::new(Side::Lan, nz(64), nz(WORKERS));
    let wan = Steering::new(Side::Wan, nz(64), nz(WORKERS));
    run(
        "focbpf",
        FanoutMode::Cbpf(lan.program()),
        FanoutMode::Cbpf(wan.program()),
        Some(lan),
    );
}
