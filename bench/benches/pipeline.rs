//! Pipeline benchmarks: the whole per-frame fast path (`Context::process_batch`) on established
//! flows, new connections per second through the pipeline, and the checksum primitives.
//!
//! `cargo bench -p altroute-bench --bench pipeline`
//!
//! # What is measured
//!
//! - `pipeline_steady/{flows}/b{batch}`: 1k, 64k and 1M flows, each established beforehand
//!   through the pipeline itself (TCP SYN, SYN-ACK, ACK; UDP out and back), so every frame takes
//!   the steady-state path: fast parse, batched lookup (a hit), the established-flow fast path
//!   (`established` + `touch` on the flow), NAT rewrite with RFC 1624
//!   checksums, TTL, MACs. The traffic (generated at bench time, see `altroute_bench::pipeline`)
//!   is 64–80 B frames, 3/4 TCP ACK with payload and 1/4 UDP, visiting every (flow, direction)
//!   pair once in shuffled order (at 1M flows, 256k of the 2M pairs), LAN→WAN and WAN→LAN mixed;
//!   at 1k flows, 32 such passes, each in a fresh order, so that the branch predictor cannot
//!   learn a 2 048-frame loop (it did: 29 ns per frame on one repeated pass, 39 on fresh ones).
//!   One iteration is 16 384 frames in batches of 32..256.
//! - `pipeline_ring/{flows}/b{32,64}`: the same replay with only `process_batch` timed (wall clock
//!   around each batch, see `Replay::run_ring`): the refill is left out, so the frames are in the
//!   cache as an RX ring's are after the kernel's copy, while the flows they visit still span the
//!   table. This is the pipeline's own cost per frame; `pipeline_steady` adds reading the frames
//!   from a trace of up to 32 MiB in memory, which at 64k and 1M flows streams from DRAM (the
//!   trace holds every (flow, direction) pair) and costs more than the refill's time alone
//!   (`pipeline_reset_only`) suggests, because it competes with the table for memory.
//! - `pipeline_variant/{flows}/{acct_off,full_path}_b32`: the same at batch 32 with one setting
//!   changed: per-flow accounting off (as Linux's `nf_conntrack_acct` defaults), or the
//!   established-flow fast path off (every frame through the full path), for A/B.
//! - Frames are rewritten in place, so each must be restored before it is processed again: before
//!   every batch its frames are copied (a fixed 80 B each) from the pristine trace into the next
//!   slots of a 1024-slot ring, as an RX ring would be filled. `pipeline_reset_only/{flows}` times
//!   that copy alone (same loop, no processing); subtract it from `pipeline_steady` for the
//!   pipeline's own cost (RESULTS.md reports both). The replay also counts forwarded verdicts, as
//!   an I/O layer must read them.
//! - `pipeline_new_flows/{flows}`: 64k TCP SYN / first UDP frames from the inside, each creating a
//!   flow (policy, NAT mapping, both index entries, timing wheel), into a table already holding
//!   0 or 1M established flows. Only the processing is timed; between iterations the new flows are
//!   removed, the clock moves on 130 s so their NAT ports leave the 120 s cooldown, and
//!   `FlowTable::expire` (budget 0) returns those ports to their pools.
//! - `checksum/*`: building and applying a NAT `Delta` (IP + TCP field), and full RFC 1071
//!   checksums of 64 and 1500 bytes.
//!
//! Throughput is in elements (frames, flows or checksums): criterion's "elem/s" is packets per
//! second per core.
//!
//! # Clock
//!
//! The machine these run on is shared (2 cores, other builds and tests running), so by default the
//! time reported is this thread's **on-CPU time** (`/proc/thread-self/schedstat`), not wall-clock
//! time, which would also count the time the thread sat waiting for a core. Cache pollution by
//! the other work is still in it. `ALTROUTE_BENCH_CLOCK=wall` switches to wall-clock time.

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::Duration;

use altroute_bench::pipeline::{
    NOW, RING, Replay, STRIDE, Trace, context, establish, steady_setup, syn_trace,
};
use altroute_bench::{BenchClock, Rng, lan_keys};
use altroute_flow::FlowKey;
use altroute_packet::checksum::{self, Delta};
use altroute_packet::pipeline::Context;
use criterion::measurement::WallTime;
use criterion::{
    BenchmarkGroup, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main,
};

const SIZES: [(usize, &str); 3] = [(1 << 10, "1k"), (1 << 16, "64k"), (1 << 20, "1M")];
const BATCHES: [usize; 4] = [32, 64, 128, 256];
/// Frames per iteration.
const PER_ITER: usize = 16_384;
const NEW_FLOWS: usize = 1 << 16;

/// An established context with `n` flows and its shuffled steady-state trace.
fn steady(n: usize) -> (Context, Trace) {
    steady_with(n, true)
}

/// [`steady`] with per-flow accounting on or off.
fn steady_with(n: usize, accounting: bool) -> (Context, Trace) {
    let (mut ctx, trace) = steady_setup(n, accounting);
    // Every frame must take the forwarding path, or the bench measures something else.
    let mut ring = vec![0u8; RING * STRIDE];
    let mut r = Replay::new(&mut ring);
    let len = trace.len();
    let fwd = r.run(&mut ctx, &trace, 32, len, NOW);
    assert_eq!(fwd, len, "every steady-state frame is forwarded");
    assert_eq!(ctx.counters.drops.total(), 0, "{:?}", ctx.counters.drops);
    (ctx, trace)
}

/// A group of replay benches: `PER_ITER` frames per iteration, 20 samples of `secs` seconds.
fn frames_group<'c>(c: &'c mut Criterion, name: &str, secs: u64) -> BenchmarkGroup<'c, WallTime> {
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Elements(PER_ITER as u64));
    g.sample_size(20)
        .measurement_time(Duration::from_secs(secs))
        .warm_up_time(Duration::from_secs(1));
    g
}

fn pipeline_steady(c: &mut Criterion) {
    let clock = BenchClock::from_env();
    let mut g = frames_group(c, "pipeline_steady", 3);
    for &(n, name) in &SIZES {
        let (mut ctx, trace) = steady(n);
        let mut ring = vec![0u8; RING * STRIDE];
        let mut r = Replay::new(&mut ring);
        for &b in &BATCHES {
            g.bench_function(BenchmarkId::new(name, format!("b{b}")), |bch| {
                bch.iter_custom(|iters| {
                    clock.iters(iters, || {
                        black_box(r.run(&mut ctx, &trace, b, PER_ITER, NOW));
                    })
                })
            });
        }
        let expected_drops = ctx.counters.drops.total();
        assert_eq!(expected_drops, 0, "{:?}", ctx.counters.drops);
    }
    g.finish();
    let mut g = frames_group(c, "pipeline_ring", 3);
    for &(n, name) in &SIZES {
        let (mut ctx, trace) = steady(n);
        let mut ring = vec![0u8; RING * STRIDE];
        let mut r = Replay::new(&mut ring);
        // Batch 32, as the other groups, and 64, the daemon's default (`datapath.batch`).
        for b in [32, 64] {
            g.bench_function(BenchmarkId::new(name, format!("b{b}")), |bch| {
                bch.iter_custom(|iters| {
                    let mut busy = Duration::ZERO;
                    for _ in 0..iters {
                        busy += r.run_ring(&mut ctx, &trace, b, PER_ITER, NOW).1;
                    }
                    busy
                })
            });
        }
        assert_eq!(ctx.counters.drops.total(), 0, "{:?}", ctx.counters.drops);
    }
    g.finish();
    // Batch 32, one setting changed at a time: per-flow accounting off (no counting; since the
    // counters moved into the slot it saves no cache line, only the arithmetic), and the
    // established-flow fast path off (every frame on the full path).
    let mut g = frames_group(c, "pipeline_variant", 3);
    for &(n, name) in &SIZES {
        for variant in ["acct_off", "full_path"] {
            let (mut ctx, trace) = steady_with(n, variant != "acct_off");
            ctx.set_fast_path(variant != "full_path");
            let mut ring = vec![0u8; RING * STRIDE];
            let mut r = Replay::new(&mut ring);
            g.bench_function(BenchmarkId::new(name, format!("{variant}_b32")), |bch| {
                bch.iter_custom(|iters| {
                    clock.iters(iters, || {
                        black_box(r.run(&mut ctx, &trace, 32, PER_ITER, NOW));
                    })
                })
            });
            assert_eq!(ctx.counters.drops.total(), 0, "{:?}", ctx.counters.drops);
        }
    }
    g.finish();
    let mut g = frames_group(c, "pipeline_reset_only", 2);
    for &(n, name) in &SIZES {
        let (ctx, trace) = steady_setup(n, true);
        drop(ctx);
        let mut ring = vec![0u8; RING * STRIDE];
        let mut r = Replay::new(&mut ring);
        g.bench_function(BenchmarkId::new(name, "b32"), |bch| {
            bch.iter_custom(|iters| {
                clock.iters(iters, || {
                    let mut left = PER_ITER;
                    while left > 0 {
                        let first = r.reset_batch(&trace, 32);
                        black_box(&mut r.pkts[first..first + 32]);
                        left -= 32;
                    }
                })
            })
        });
    }
    g.finish();
}

fn pipeline_new_flows(c: &mut Criterion) {
    let clock = BenchClock::from_env();
    let mut g = c.benchmark_group("pipeline_new_flows");
    g.throughput(Throughput::Elements(NEW_FLOWS as u64));
    g.sample_size(10)
        .measurement_time(Duration::from_secs(5))
        .warm_up_time(Duration::from_secs(1));
    for &(n, name) in &[(0usize, "empty"), (1 << 20, "1M")] {
        let keys = lan_keys(n + NEW_FLOWS, 7);
        let (old, new) = keys.split_at(n);
        let mut ctx = context((n + NEW_FLOWS) as u32);
        establish(&mut ctx, old);
        let trace = syn_trace(new, 8);
        let mut ring = vec![0u8; RING * STRIDE];
        let mut r = Replay::new(&mut ring);
        let mut now = NOW;
        g.bench_function(BenchmarkId::new("syn_b32", name), |bch| {
            bch.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    r.pos = 0;
                    let t0 = clock.now();
                    let fwd = r.run(&mut ctx, &trace, 32, NEW_FLOWS, now);
                    total += clock.since(t0);
                    assert_eq!(fwd, NEW_FLOWS, "every SYN creates a flow and is forwarded");
                    remove_all(&mut ctx, new, now);
                    now = now.plus_secs(130);
                    // Return the cooled-down NAT ports to their pools (budget 0: expire nothing).
                    ctx.table.expire(now, 0, &mut Vec::new());
                }
                total
            })
        });
    }
    g.finish();
}

fn remove_all(ctx: &mut Context, keys: &[FlowKey], now: altroute_flow::Time) {
    for k in keys {
        if let Some(h) = ctx.table.lookup(k) {
            ctx.table.remove(h.flow, now);
        }
    }
}

fn checksums(c: &mut Criterion) {
    let clock = BenchClock::from_env();
    let mut g = c.benchmark_group("checksum");
    g.sample_size(20)
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_secs(1));
    let mut rng = Rng::new(9);
    const N: usize = 1024;
    let inputs: Vec<(Ipv4Addr, Ipv4Addr, u16, u16, u16, u16)> = (0..N)
        .map(|_| {
            let x = rng.next_u64();
            let y = rng.next_u64();
            (
                Ipv4Addr::from(x as u32),
                Ipv4Addr::from((x >> 32) as u32),
                y as u16,
                (y >> 16) as u16,
                (y >> 32) as u16,
                (y >> 48) as u16,
            )
        })
        .collect();
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("delta_new_apply_ip_tcp", |b| {
        b.iter_custom(|iters| {
            clock.iters(iters, || {
                let mut acc = 0u16;
                for &(a, na, p, np, ipc, l4c) in black_box(&inputs) {
                    let d = Delta::new(a, na, p, np);
                    acc ^= d.apply_ip(ipc) ^ d.apply_tcp(l4c);
                }
                black_box(acc);
            })
        })
    });
    for len in [64usize, 1500] {
        let data: Vec<u8> = (0..len * N).map(|_| rng.next_u64() as u8).collect();
        g.throughput(Throughput::Elements(N as u64));
        g.bench_function(BenchmarkId::new("full", len), |b| {
            b.iter_custom(|iters| {
                clock.iters(iters, || {
                    let mut acc = 0u16;
                    for chunk in black_box(&data).chunks_exact(len) {
                        acc ^= checksum::checksum(chunk);
                    }
                    black_box(acc);
                })
            })
        });
    }
    g.finish();
}

criterion_group!(benches, pipeline_steady, pipeline_new_flows, checksums);
criterion_main!(benches);
