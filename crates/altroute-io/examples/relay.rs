//! An L2 relay between two interfaces on altroute-io, for measuring the datapath (e.g. iperf3
//! through it): V2 vs V3 RX ring, sendmmsg vs TX ring, plain vs vnet, 1..N fanout workers.
//!
//! ```text
//! relay IF_A IF_B [--rx v2|v3] [--frames N] [--retire-ms N] [--tx mmsg|ring] [--vnet] [--workers N]
//!       [--fanout hash|cbpf] [--per-direction] [--bypass] [--blocking] [--backend pnet]
//!       [--pin] [--batch N] [--duration SECS] [--stats SECS]
//! ```
//!
//! By default each worker owns one port per interface (receive + transmit, the router's shape)
//! and serves both directions; `--per-direction` instead runs one thread per direction with a
//! receive-only port on one side and a transmit-only port on the other. `examples/relay-lab.sh`
//! builds a namespace lab and runs iperf3 through this relay.

use std::error::Error;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use altroute_io::{
    Fanout, FanoutMode, PnetPort, Port, PortConfig, PortStats, RxMode, Side, Steering, TxMode,
    wait_any,
};

#[derive(Clone)]
struct Opts {
    a: String,
    b: String,
    rx: RxMode,
    tx: TxMode,
    vnet: bool,
    workers: u32,
    cbpf: bool,
    per_direction: bool,
    bypass: bool,
    blocking: bool,
    pnet: bool,
    pin: bool,
    batch: usize,
    duration: Option<Duration>,
    stats: Duration,
}

fn parse() -> Result<Opts, String> {
    let mut args = std::env::args().skip(1);
    let mut pos = Vec::new();
    let mut o = Opts {
        a: String::new(),
        b: String::new(),
        rx: RxMode::V2 { frames: 0 },
        tx: TxMode::Sendmmsg,
        vnet: false,
        workers: 1,
        cbpf: false,
        per_direction: false,
        bypass: false,
        blocking: false,
        pnet: false,
        pin: false,
        batch: 64,
        duration: None,
        stats: Duration::from_secs(1),
    };
    let mut retire = 1;
    let mut frames = 0u32;
    let mut v3 = false;
    let num = |v: Option<String>, what: &str| -> Result<u64, String> {
        v.ok_or(format!("{what} needs a value"))?
            .parse()
            .map_err(|e| format!("{what}: {e}"))
    };
    while let Some(a) = args.next() {
        match a.as_str() {
            "--rx" => match args.next().as_deref() {
                Some("v2") => v3 = false,
                Some("v3") => v3 = true,
                other => return Err(format!("--rx v2|v3, not {other:?}")),
            },
            "--retire-ms" => retire = num(args.next(), "--retire-ms")? as u32,
            "--frames" => frames = num(args.next(), "--frames")? as u32,
            "--tx" => match args.next().as_deref() {
                Some("mmsg") => o.tx = TxMode::Sendmmsg,
                Some("ring") => o.tx = TxMode::Ring { frames: 128 },
                other => return Err(format!("--tx mmsg|ring, not {other:?}")),
            },
            "--vnet" => o.vnet = true,
            "--workers" => o.workers = num(args.next(), "--workers")? as u32,
            "--fanout" => match args.next().as_deref() {
                Some("hash") => o.cbpf = false,
                Some("cbpf") => o.cbpf = true,
                other => return Err(format!("--fanout hash|cbpf, not {other:?}")),
            },
            "--per-direction" => o.per_direction = true,
            "--bypass" => o.bypass = true,
            "--blocking" => o.blocking = true,
            "--pin" => o.pin = true,
            "--backend" => match args.next().as_deref() {
                Some("pnet") => o.pnet = true,
                Some("packet") => o.pnet = false,
                other => return Err(format!("--backend packet|pnet, not {other:?}")),
            },
            "--batch" => o.batch = num(args.next(), "--batch")? as usize,
            "--duration" => o.duration = Some(Duration::from_secs(num(args.next(), "--duration")?)),
            "--stats" => o.stats = Duration::from_secs(num(args.next(), "--stats")?.max(1)),
            s if s.starts_with("--") => return Err(format!("unknown option {s}")),
            _ => pos.push(a),
        }
    }
    o.rx = RxMode::V2 { frames };
    if v3 {
        o.rx = RxMode::V3 {
            block_size: 1 << 20,
            blocks: 32,
            retire_ms: retire,
        };
    }
    match pos.as_slice() {
        [a, b] => {
            o.a = a.clone();
            o.b = b.clone();
        }
        _ => return Err("usage: relay IF_A IF_B [options]".into()),
    }
    if o.workers == 0 {
        return Err("--workers must be at least 1".into());
    }
    Ok(o)
}

fn config(o: &Opts, iface: &str, side: Side, group: u16) -> PortConfig {
    let fanout = (o.workers > 1).then(|| Fanout {
        group,
        mode: if o.cbpf {
            let n = NonZeroU32::new(o.workers).unwrap_or(NonZeroU32::MIN);
            FanoutMode::Cbpf(Steering::new(side, NonZeroU32::MIN.saturating_add(63), n).program())
        } else {
            FanoutMode::Hash
        },
        defrag: false,
    });
    PortConfig {
        rx: o.rx.clone(),
        tx: o.tx.clone(),
        vnet_hdr: o.vnet,
        fanout,
        qdisc_bypass: o.bypass,
        tx_blocking: o.blocking,
        batch_max: o.batch.max(1),
        ..PortConfig::new(iface)
    }
}

type Shared = Arc<Mutex<Vec<(String, PortStats)>>>;

fn publish(shared: &Shared, slot: usize, s: PortStats, name: &str) {
    if let Ok(mut v) = shared.lock() {
        if v.len() <= slot {
            v.resize(slot + 1, (String::new(), PortStats::default()));
        }
        v[slot] = (name.to_owned(), s);
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let o = parse()?;
    let stop = Arc::new(AtomicBool::new(false));
    let shared: Shared = Arc::new(Mutex::new(Vec::new()));
    let mut threads = Vec::new();
    let mut slot = 0;
    for w in 0..o.workers {
        if o.pnet || o.per_direction {
            for (from, to) in [(o.a.clone(), o.b.clone()), (o.b.clone(), o.a.clone())] {
                let (o2, stop, shared) = (o.clone(), stop.clone(), shared.clone());
                let my = slot;
                slot += 2;
                let side = if from == o.a { Side::Lan } else { Side::Wan };
                let group = if from == o.a { 0x5100 } else { 0x5101 };
                let rc = config(&o2, &from, side, group);
                let tc = PortConfig {
                    rx: RxMode::None,
                    fanout: None,
                    ..config(&o2, &to, side, group)
                };
                if o.pnet {
                    let mut rx = PnetPort::open(&rc)?;
                    let mut tx = PnetPort::open(&tc)?;
                    threads.push(std::thread::spawn(move || {
                        let mut last = Instant::now();
                        while !stop.load(Ordering::Relaxed) {
                            if let Ok(b) = rx.rx_batch(1, Duration::from_millis(50)) {
                                tx.send(b.tx_frames());
                            }
                            if last.elapsed() >= Duration::from_millis(500) {
                                last = Instant::now();
                                publish(&shared, my, rx.stats().unwrap_or_default(), rx.iface());
                                publish(
                                    &shared,
                                    my + 1,
                                    tx.stats().unwrap_or_default(),
                                    tx.iface(),
                                );
                            }
                        }
                    }));
                } else {
                    let mut rx = Port::open(&rc)?;
                    let mut tx = Port::open(&tc)?;
                    let pin = o.pin.then_some(my / 2 % altroute_io::cpu::available());
                    threads.push(std::thread::spawn(move || {
                        if let Some(c) = pin {
                            let _ = altroute_io::cpu::pin_current_thread(c);
                        }
                        let mut last = Instant::now();
                        while !stop.load(Ordering::Relaxed) {
                            match rx.rx_batch(o2.batch, Duration::from_millis(50)) {
                                Ok(b) => {
                                    tx.send(b.tx_frames());
                                }
                                Err(e) => eprintln!("worker {w}: {e}"),
                            }
                            if last.elapsed() >= Duration::from_millis(500) {
                                last = Instant::now();
                                publish(&shared, my, rx.stats().unwrap_or_default(), rx.iface());
                                publish(&shared, my + 1, tx.stats_cached(), tx.iface());
                            }
                        }
                    }));
                }
            }
        } else {
            let mut pa = Port::open(&config(&o, &o.a, Side::Lan, 0x5100))?;
            let mut pb = Port::open(&config(&o, &o.b, Side::Wan, 0x5101))?;
            let (stop, shared, batch) = (stop.clone(), shared.clone(), o.batch);
            let my = slot;
            slot += 2;
            let pin = o.pin.then_some(w as usize % altroute_io::cpu::available());
            threads.push(std::thread::spawn(move || {
                if let Some(c) = pin {
                    let _ = altroute_io::cpu::pin_current_thread(c);
                }
                let mut last = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    if let Err(e) = wait_any(&[&pa, &pb], Duration::from_millis(50)) {
                        eprintln!("worker {w}: {e}");
                    }
                    // Drain both sides before waiting again.
                    loop {
                        let mut moved = 0;
                        match pa.rx_batch(batch, Duration::ZERO) {
                            Ok(b) => {
                                moved += b.len();
                                pb.send(b.tx_frames());
                            }
                            Err(e) => eprintln!("worker {w}: {e}"),
                        }
                        match pb.rx_batch(batch, Duration::ZERO) {
                            Ok(b) => {
                                moved += b.len();
                                pa.send(b.tx_frames());
                            }
                            Err(e) => eprintln!("worker {w}: {e}"),
                        }
                        if moved == 0 {
                            break;
                        }
                    }
                    if last.elapsed() >= Duration::from_millis(500) {
                        last = Instant::now();
                        publish(&shared, my, pa.stats().unwrap_or_default(), pa.iface());
                        publish(&shared, my + 1, pb.stats().unwrap_or_default(), pb.iface());
                    }
                }
                publish(&shared, my, pa.stats().unwrap_or_default(), pa.iface());
                publish(&shared, my + 1, pb.stats().unwrap_or_default(), pb.iface());
            }));
        }
    }
    eprintln!(
        "relay {} <-> {}: rx {:?}, tx {:?}, vnet {}, {} worker(s){}{}",
        o.a,
        o.b,
        o.rx,
        o.tx,
        o.vnet,
        o.workers,
        if o.workers > 1 {
            if o.cbpf {
                ", cbpf fanout"
            } else {
                ", hash fanout"
            }
        } else {
            ""
        },
        if o.pnet { ", pnet backend" } else { "" }
    );
    report(&o, &shared);
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}

/// Prints the relay's throughput and counters every `o.stats` until `o.duration` has passed
/// (forever without one).
fn report(o: &Opts, shared: &Shared) {
    let start = Instant::now();
    let mut prev_tx = 0u64;
    let mut prev_t = Instant::now();
    loop {
        std::thread::sleep(o.stats);
        let v = shared.lock().map(|v| v.clone()).unwrap_or_default();
        let tx: u64 = v.iter().map(|(_, s)| s.tx_bytes).sum();
        let frames: u64 = v.iter().map(|(_, s)| s.tx_frames).sum();
        let errs: u64 = v.iter().map(|(_, s)| s.tx_errors).sum();
        let drops: u64 = v.iter().map(|(_, s)| s.ring_drops).sum();
        let skipped: u64 = v.iter().map(|(_, s)| s.outgoing_skipped).sum();
        let trunc: u64 = v.iter().map(|(_, s)| s.truncated).sum();
        let dt = prev_t.elapsed().as_secs_f64();
        eprintln!(
            "{:6.1}s  {:7.2} Gbit/s  tx {frames} frames {tx} B  tx_errors {errs}  ring_drops {drops}  outgoing_skipped {skipped}  truncated {trunc}",
            start.elapsed().as_secs_f64(),
            (tx - prev_tx.min(tx)) as f64 * 8.0 / dt / 1e9
        );
        prev_tx = tx;
        prev_t = Instant::now();
        if o.duration.is_some_and(|d| start.elapsed() >= d) {
            break;
        }
    }
}
