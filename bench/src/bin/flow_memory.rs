//! Measures the resident memory per flow of the flow table and of the DashMap baseline.
//!
//! `cargo run --release -p altroute-bench --bin flow_memory -- [FLOWS]` (default 1 048 576).

use altroute_bench::{dashmap_table, filled_table, lan_keys, rss_bytes};

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1 << 20);
    let keys = lan_keys(n, 7);
    for accounting in [false, true] {
        let before = rss_bytes().unwrap_or(0);
        let t = filled_table(&keys, accounting);
        let after = rss_bytes().unwrap_or(0);
        println!(
            "altroute-flow (accounting {}): {} flows, RSS +{:.1} MiB = {:.1} B/flow (structures: {:.1} B/flow)",
            if accounting { "on " } else { "off" },
            t.len(),
            (after - before) as f64 / 1048576.0,
            (after - before) as f64 / t.len() as f64,
            t.memory_bytes() as f64 / t.len() as f64
        );
        drop(t);
    }
    let before = rss_bytes().unwrap_or(0);
    let m = dashmap_table(&keys);
    let after = rss_bytes().unwrap_or(0);
    println!(
        "dashmap+ahash baseline (one direction only): {} flows, RSS +{:.1} MiB = {:.1} B/flow",
        m.len(),
        (after - before) as f64 / 1048576.0,
        (after - before) as f64 / m.len() as f64
    );
}
