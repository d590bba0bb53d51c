//! A plain loop over the steady-state pipeline bench, for profilers (perf, callgrind): establishes
//! `FLOWS` flows, then replays the shuffled trace in batches of `BATCH` for `SECS` seconds and
//! prints ns/frame and Mpps.
//!
//! `cargo run --release -p altroute-bench --bin pipeline_profile -- [FLOWS] [BATCH] [SECS] [syn|noacct|full|ring]`
//!
//! `SECS` 0 replays exactly 2^17 frames once (for `valgrind --tool=callgrind
//! --toggle-collect='*Replay*run*'`).
//!
//! With `syn` as the fourth argument it replays 64k connection-opening frames into a table holding
//! `FLOWS` flows instead (one pass, then the new flows are removed, repeated). With `noacct` it
//! turns per-flow accounting off, with `full` the established-flow fast path. With `ring` it also
//! prints the time spent inside `process_batch` alone (`Replay::run_ring`: the frames are in the
//! cache, as in an RX ring, and the trace's streaming from memory is left out).

use std::time::{Duration, Instant};

use altroute_bench::pipeline::{
    NOW, RING, Replay, STRIDE, context, establish, steady_setup, syn_trace,
};
use altroute_bench::{lan_keys, thread_cpu_time};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize, d: usize| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let n = arg(1, 1 << 16);
    let b = arg(2, 32);
    let secs = arg(3, 5) as u64;
    let syn = args.get(4).is_some_and(|s| s == "syn");
    let accounting = args
        .get(4)
        .is_none_or(|s| s != "noacct" && s != "ring-noacct");
    let fast_path = args.get(4).is_none_or(|s| s != "full");
    let ring_mode = args
        .get(4)
        .is_some_and(|s| s == "ring" || s == "ring-noacct");
    let mut ring = vec![0u8; RING * STRIDE];
    let mut r = Replay::new(&mut ring);
    if syn {
        let new_n = 1 << 16;
        let keys = lan_keys(n + new_n, 7);
        let (old, new) = keys.split_at(n);
        let mut ctx = context((n + new_n) as u32);
        establish(&mut ctx, old);
        let trace = syn_trace(new, 8);
        let mut now = NOW;
        let (mut frames, mut busy) = (0usize, Duration::ZERO);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(secs) {
            r.pos = 0;
            let t0 = thread_cpu_time().unwrap_or_default();
            let fwd = r.run(&mut ctx, &trace, b, new_n, now);
            busy += thread_cpu_time().unwrap_or_default() - t0;
            frames += new_n;
            if fwd != new_n {
                eprintln!("only {fwd} of {new_n} forwarded: {:?}", ctx.counters.drops);
            }
            for k in new {
                if let Some(h) = ctx.table.lookup(k) {
                    ctx.table.remove(h.flow, now);
                }
            }
            now = now.plus_secs(130);
            ctx.table.expire(now, 0, &mut Vec::new());
        }
        let ns = busy.as_nanos() as f64 / frames as f64;
        println!(
            "new flows into {n}: on-CPU {ns:.1} ns/flow, {:.2} M flows/s",
            1e3 / ns
        );
        return;
    }
    // (Establishing goes through `process`, frame by frame, which the fast-path switch does not
    // touch: setting it afterwards changes nothing there.)
    let (mut ctx, trace) = steady_setup(n, accounting);
    ctx.set_fast_path(fast_path);
    let per = 16_384;
    let mut frames = 0usize;
    let start = Instant::now();
    let cpu0 = thread_cpu_time().unwrap_or_default();
    let mut fwd = 0;
    if secs == 0 {
        // One fixed pass (for instruction counting under callgrind).
        fwd += r.run(&mut ctx, &trace, b, 1 << 17, NOW);
        frames += 1 << 17;
    }
    let mut ring_busy = Duration::ZERO;
    while start.elapsed() < Duration::from_secs(secs) {
        if ring_mode {
            let (f, busy) = r.run_ring(&mut ctx, &trace, b, per, NOW);
            fwd += f;
            ring_busy += busy;
        } else {
            fwd += r.run(&mut ctx, &trace, b, per, NOW);
        }
        frames += per;
    }
    if ring_mode {
        let ns = ring_busy.as_nanos() as f64 / frames as f64;
        println!(
            "{n} flows, batch {b}, frames in the ring: {ns:.1} ns/frame in process_batch = {:.2} Mpps",
            1e3 / ns
        );
    }
    let wall = start.elapsed().as_nanos() as f64 / frames as f64;
    let cpu = thread_cpu_time().map_or(0.0, |c| (c - cpu0).as_nanos() as f64 / frames as f64);
    println!(
        "{n} flows, batch {b}: on-CPU {cpu:.1} ns/frame = {:.2} Mpps; wall {wall:.1} ns/frame ({fwd} of {frames} forwarded; drops {:?})",
        1e3 / cpu,
        ctx.counters.drops
    );
}
