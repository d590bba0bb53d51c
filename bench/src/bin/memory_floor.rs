//! The memory floor of the pipeline's access pattern on this machine: what one packet costs when
//! it does nothing but the memory accesses the steady-state pipeline must make, with no parsing,
//! hashing, checks or rewriting.
//!
//! `cargo run --release -p altroute-bench --bin memory_floor -- [SECS] [prefetch] [noframes]`
//!
//! Per packet, as the pipeline bench does at 1k, 64k and 1M flows: copy an 80-byte frame from a
//! streaming trace (the bench's ring refill), read one random 64-byte index bucket (the table's
//! index: 3 entries per flow at 7 per bucket and 80 % load), read and write one random 64-byte flow
//! slot, read one random neighbour entry (3,000 hosts), write back into the frame. Each batch of
//! 32 first loads every bucket and slot it will need (the same "touch" phase as
//! `FlowTable::lookup_batch`), then visits them. Whatever the pipeline costs above this figure is
//! instructions; this figure itself is the machine's (caches, TLB, memory, virtualisation).
//!
//! `prefetch` pipelines the accesses with prefetches as `Context::process_batch` does, instead of
//! touching them first; `noframes` leaves out the frame copy, so the figure is the flow state's
//! alone, as for frames already in the cache (`pipeline_ring`). At 64k flows on this machine the
//! copy from the streamed trace is most of the floor: 29–33 ns per packet with it, 4–6 without
//! (`bench/RESULTS.md`).

use std::hint::black_box;
use std::time::{Duration, Instant};

use altroute_bench::{Rng, thread_cpu_time};

#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([u64; 8]);

const FRAME_LINES: usize = 2; // 80 B frames occupy two lines

fn main() {
    let secs: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2);
    let prefetch = std::env::args().skip(2).any(|a| a == "prefetch");
    let frames_on = !std::env::args().skip(2).any(|a| a == "noframes");
    println!(
        "flows     ns/packet (on-CPU)   Mpps   (memory accesses only, batch 32, {}{})",
        if prefetch {
            "pipelined prefetch"
        } else {
            "touch loads"
        },
        if frames_on { "" } else { ", no frame copy" }
    );
    for (flows, name) in [(1usize << 10, "1k"), (1 << 16, "64k"), (1 << 20, "1M")] {
        let buckets = vec![Line([1; 8]); (flows * 3 * 10).div_ceil(7 * 8)];
        let mut slots = vec![Line([1; 8]); flows];
        let neighbours = vec![Line([1; 8]); 8192 / 2];
        // As the pipeline bench: every (flow, direction) pair once, at most 2^18 frames.
        let frames = (flows * 2).min(1 << 18);
        let trace = vec![Line([3; 8]); frames * FRAME_LINES];
        let mut ring = vec![Line([0; 8]); 1024 * FRAME_LINES];
        let mut rng = Rng::new(5);
        let order: Vec<(u32, u32, u32)> = (0..frames)
            .map(|_| {
                (
                    rng.below(buckets.len() as u64) as u32,
                    rng.below(flows as u64) as u32,
                    rng.below(3000) as u32,
                )
            })
            .collect();
        let (mut done, mut pos, mut sink) = (0usize, 0usize, 0u64);
        let start = Instant::now();
        let cpu0 = thread_cpu_time().unwrap_or_default();
        while start.elapsed() < Duration::from_secs(secs) {
            for (c, chunk) in order.chunks(32).enumerate() {
                for j in 0..chunk.len() {
                    let f = (c * 32 + j) % frames;
                    let r = (pos + j) % 1024;
                    if frames_on {
                        for l in 0..FRAME_LINES {
                            ring[r * FRAME_LINES + l] = trace[f * FRAME_LINES + l];
                        }
                    }
                }
                // The pipeline's software pipeline prefetches the bucket 2·AHEAD packets ahead
                // and the slot AHEAD ahead; the touch mode loads all of them first, as
                // `lookup_batch` once did.
                const AHEAD: usize = 4;
                if prefetch {
                    for &(b, _, _) in chunk.iter().take(2 * AHEAD) {
                        prefetch_index::prefetch_index(&buckets, b as usize);
                    }
                    for &(_, s, _) in chunk.iter().take(AHEAD) {
                        prefetch_index::prefetch_index(&slots, s as usize);
                    }
                } else {
                    let mut t = 0u64;
                    for &(b, s, _) in chunk {
                        t = t.wrapping_add(buckets[b as usize].0[0]);
                        t = t.wrapping_add(slots[s as usize].0[0]);
                    }
                    black_box(t);
                }
                for (j, &(b, s, n)) in chunk.iter().enumerate() {
                    if prefetch {
                        if let Some(&(b2, _, _)) = chunk.get(j + 2 * AHEAD) {
                            prefetch_index::prefetch_index(&buckets, b2 as usize);
                        }
                        if let Some(&(_, s2, _)) = chunk.get(j + AHEAD) {
                            prefetch_index::prefetch_index(&slots, s2 as usize);
                        }
                    }
                    let r = (pos + j) % 1024;
                    let frame = ring[r * FRAME_LINES].0[0];
                    let x = buckets[b as usize].0[(frame & 7) as usize];
                    let slot = &mut slots[s as usize].0[6];
                    *slot = slot.wrapping_add(x);
                    sink = sink.wrapping_add(neighbours[(n as usize * 7) % neighbours.len()].0[1]);
                    ring[r * FRAME_LINES].0[1] = x ^ sink;
                }
                pos = (pos + chunk.len()) % 1024;
                done += chunk.len();
            }
        }
        black_box(sink);
        let cpu = thread_cpu_time().unwrap_or_default() - cpu0;
        let ns = cpu.as_nanos() as f64 / done as f64;
        println!("{name:<6} {ns:>12.1} {:>14.2}", 1e3 / ns);
    }
}
