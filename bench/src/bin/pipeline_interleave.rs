//! The pipeline bench's figures for comparing configurations on a noisy machine: for each flow
//! count, every configuration takes its turn, slice by slice (16 384 frames each), in one process,
//! so that a slow phase of the shared machine hits them all alike. (Seen here: the same binary,
//! run alone, 1.6× slower for minutes at a time, at 1k flows as much as at 1M: between separate
//! runs, only differences far above that mean anything.)
//!
//! `cargo run --release -p altroute-bench --bin pipeline_interleave -- [SECS] [FLOWS,...]`
//!
//! `SECS` (default 20) per flow count; flow counts default to 1024,65536,1048576. Configurations:
//! batch 32, 64 (the daemon's default `datapath.batch`) and 256, and batch 32 with the
//! established-flow fast path off. Each slice is timed as `pipeline_ring` times it (wall clock
//! around `process_batch` only, frames refilled into a 1024-slot ring before each batch). Printed
//! per configuration: the median and the 10th percentile of the slices' ns per frame, and the
//! median's ratio to batch 32's.

use std::time::{Duration, Instant};

use altroute_bench::pipeline::{NOW, RING, Replay, STRIDE, steady_setup};

/// (label, batch, fast path)
const CONFIGS: [(&str, usize, bool); 4] = [
    ("b32", 32, true),
    ("b64", 64, true),
    ("b256", 256, true),
    ("b32 full path", 32, false),
];
const SLICE: usize = 16_384;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let secs: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(20);
    let sizes: Vec<usize> = args.get(2).map_or(vec![1 << 10, 1 << 16, 1 << 20], |s| {
        s.split(',').filter_map(|x| x.parse().ok()).collect()
    });
    println!("flows    config          median ns  p10 ns   Mpps (median)  vs b32  slices");
    for n in sizes {
        let (mut ctx, trace) = steady_setup(n, true);
        let mut ring = vec![0u8; RING * STRIDE];
        let mut r = Replay::new(&mut ring);
        let mut samples = vec![Vec::new(); CONFIGS.len()];
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(secs) {
            for (&(_, b, fast), v) in CONFIGS.iter().zip(&mut samples) {
                ctx.set_fast_path(fast);
                let (fwd, busy) = r.run_ring(&mut ctx, &trace, b, SLICE, NOW);
                assert_eq!(
                    fwd, SLICE,
                    "every frame forwarded: {:?}",
                    ctx.counters.drops
                );
                v.push(busy.as_nanos() as f64 / SLICE as f64);
            }
        }
        let mut base = None;
        for (&(label, ..), v) in CONFIGS.iter().zip(&mut samples) {
            v.sort_by(f64::total_cmp);
            let med = v[v.len() / 2];
            let p10 = v[v.len() / 10];
            let b32 = *base.get_or_insert(med);
            println!(
                "{n:<8} {label:<15} {med:>9.1}  {p10:>6.1}   {:>12.2}  {:>6.3}  {}",
                1e3 / med,
                med / b32,
                v.len()
            );
        }
    }
}
