//! Flow-table benchmarks: lookup (single and batched) and insert at 64k and 1M flows, on one and on
//! two threads, against the DashMap + ahash baseline.
//!
//! `cargo bench -p altroute-bench --bench flow_table`
//!
//! Lookups visit the table's flows in a shuffled order (every lookup a hit, no cache-friendly
//! order), half from the inside (original keys) and half from the Internet (reply keys).
//!
//! Single-thread benches report this thread's on-CPU time (see `altroute_bench::BenchClock`;
//! `ALTROUTE_BENCH_CLOCK=wall` for wall-clock); the two-thread ones are wall-clock by nature.

use std::hint::black_box;
use std::time::{Duration, Instant};

use altroute_bench::{
    BenchClock, Rng, batch_lookups, dashmap_table, filled_table, lan_keys, probe_order,
};
use altroute_flow::FlowKey;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

const SIZES: [usize; 2] = [65_536, 1 << 20];
const PROBES: usize = 1 << 16;

fn lookups(c: &mut Criterion) {
    let clk = BenchClock::from_env();
    let mut g = c.benchmark_group("flow_lookup");
    g.throughput(Throughput::Elements(PROBES as u64));
    g.sample_size(20)
        .measurement_time(Duration::from_secs(4))
        .warm_up_time(Duration::from_secs(1));
    for &n in &SIZES {
        let keys = lan_keys(n, 1);
        let t = filled_table(&keys, true);
        let order = probe_order(&t, &keys, PROBES, 2);
        g.bench_with_input(BenchmarkId::new("altroute_batch32", n), &order, |b, o| {
            b.iter_custom(|it| {
                clk.iters(it, || {
                    black_box(batch_lookups(&t, o));
                })
            })
        });
        g.bench_with_input(BenchmarkId::new("altroute_single", n), &order, |b, o| {
            b.iter_custom(|it| {
                clk.iters(it, || {
                    black_box(o.iter().filter(|k| t.lookup(k).is_some()).count());
                })
            })
        });
        // The baseline holds one direction; probe it with original keys only.
        let m = dashmap_table(&keys);
        let mut rng = Rng::new(3);
        let dorder: Vec<FlowKey> = (0..PROBES)
            .map(|_| keys[rng.below(n as u64) as usize])
            .collect();
        g.bench_with_input(BenchmarkId::new("dashmap_get_mut", n), &dorder, |b, o| {
            b.iter_custom(|it| {
                clk.iters(it, || {
                    let mut hits = 0;
                    for k in o {
                        if let Some(mut e) = m.get_mut(k) {
                            e.packets[0] += 1;
                            hits += 1;
                        }
                    }
                    black_box(hits);
                })
            })
        });
        // Two threads: two per-worker tables (the design) vs one shared DashMap.
        let keys2 = lan_keys(n, 11);
        let t2 = filled_table(&keys2, true);
        let order2 = probe_order(&t2, &keys2, PROBES, 4);
        g.throughput(Throughput::Elements(2 * PROBES as u64));
        g.bench_function(BenchmarkId::new("altroute_batch32_2threads", n), |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                std::thread::scope(|s| {
                    s.spawn(|| {
                        for _ in 0..iters {
                            black_box(batch_lookups(&t, &order));
                        }
                    });
                    s.spawn(|| {
                        for _ in 0..iters {
                            black_box(batch_lookups(&t2, &order2));
                        }
                    });
                });
                start.elapsed()
            })
        });
        g.bench_function(BenchmarkId::new("dashmap_get_mut_2threads", n), |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                std::thread::scope(|s| {
                    for _ in 0..2 {
                        s.spawn(|| {
                            for _ in 0..iters {
                                for k in &dorder {
                                    if let Some(mut e) = m.get_mut(k) {
                                        e.packets[0] += 1;
                                    }
                                }
                            }
                        });
                    }
                });
                start.elapsed()
            })
        });
        g.throughput(Throughput::Elements(PROBES as u64));
    }
    g.finish();
}

fn inserts(c: &mut Criterion) {
    let clk = BenchClock::from_env();
    let mut g = c.benchmark_group("flow_insert");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(4))
        .warm_up_time(Duration::from_secs(1));
    for &n in &SIZES {
        // Insert PROBES new flows into a table already holding n - PROBES flows.
        let keys = lan_keys(n, 5);
        let (old, new) = keys.split_at(n - PROBES);
        g.throughput(Throughput::Elements(PROBES as u64));
        // The table has room for all n flows, so every timed insert succeeds (checked, untimed).
        // Between iterations the new flows are removed, the clock moves on past the NAT port
        // cooldown and `expire` (budget 0: expires nothing) returns the released ports.
        let mut t = altroute_bench::filled_table_with_room(old, n, true);
        let mut now = altroute_flow::Time::from_secs(2);
        g.bench_function(BenchmarkId::new("altroute_insert", n), |b| {
            b.iter_custom(|it| {
                let mut total = Duration::ZERO;
                for _ in 0..it {
                    let t0 = clk.now();
                    let mut ok = 0;
                    for k in new {
                        ok += usize::from(
                            t.insert(*k, now, true, altroute_flow::tcp::flags::SYN)
                                .is_ok(),
                        );
                    }
                    total += clk.since(t0);
                    assert_eq!(ok, new.len(), "every insert succeeds");
                    for k in new {
                        if let Some(h) = t.lookup(k) {
                            t.remove(h.flow, now);
                        }
                    }
                    now = now.plus_secs(130);
                    t.expire(now, 0, &mut Vec::new());
                }
                total
            })
        });
        g.bench_function(BenchmarkId::new("dashmap_insert", n), |b| {
            b.iter_custom(|it| {
                let mut total = Duration::ZERO;
                for _ in 0..it {
                    let mut m = dashmap_table(old);
                    let t0 = clk.now();
                    for k in new {
                        m.insert(*k, altroute_bench::BaselineEntry::default());
                    }
                    total += clk.since(t0);
                    black_box(&mut m);
                }
                total
            })
        });
    }
    g.finish();
}

criterion_group!(benches, lookups, inserts);
criterion_main!(benches);
