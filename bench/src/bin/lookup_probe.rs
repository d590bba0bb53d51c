//! Flow-table lookups alone, for profilers: `lookup_probe [FLOWS] [SECS] [acct 0|1]`.
//!
//! Fills a table with `FLOWS` flows, then looks up shuffled original and reply keys in batches of
//! 32 for `SECS` seconds and prints on-CPU ns per lookup.

use std::time::{Duration, Instant};

use altroute_bench::{filled_table, lan_keys, probe_order, thread_cpu_time};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize, d: usize| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let n = arg(1, 1 << 16);
    let secs = arg(2, 3) as u64;
    let acct = arg(3, 1) == 1;
    let keys = lan_keys(n, 1);
    let t = filled_table(&keys, acct);
    let order = probe_order(&t, &keys, 1 << 20, 2);
    let mut hits = vec![None; 32];
    let (mut done, mut found) = (0usize, 0usize);
    let start = Instant::now();
    let cpu0 = thread_cpu_time().unwrap_or_default();
    while start.elapsed() < Duration::from_secs(secs) {
        for c in order.chunks(32) {
            t.lookup_batch(c, &mut hits);
            found += hits.iter().filter(|h| h.is_some()).count();
        }
        done += order.len();
    }
    let cpu = thread_cpu_time().unwrap_or_default() - cpu0;
    println!(
        "{n} flows, acct {acct}: on-CPU {:.1} ns/lookup ({found} of {done} hits)",
        cpu.as_nanos() as f64 / done as f64
    );
}
