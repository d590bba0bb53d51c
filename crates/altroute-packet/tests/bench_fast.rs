//! A quick ns/frame measurement of the fast path (and, for scale, etherparse and the slow path).
//! Ignored by default; run optimised:
//!
//! ```sh
//! cargo test --release -p altroute-packet --test bench_fast -- --ignored --nocapture
//! ```
#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::time::Instant;

use altroute_packet::{FastOptions, FastParse, fast, slow};
use etherparse::PacketBuilder;

/// 1024 distinct 64–80 byte TCP/UDP frames (as in the NOTES calibration), a tenth with a VLAN tag.
fn frames() -> Vec<Vec<u8>> {
    (0..1024u32)
        .map(|i| {
            let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
            let src = [10, 0, (i >> 8) as u8, i as u8];
            let dst = [203, 0, 113, (i % 7) as u8];
            let mut out = Vec::new();
            let payload = [0u8; 10];
            match (i % 10 == 0, i % 3 == 0) {
                (true, _) => b
                    .single_vlan(etherparse::VlanId::try_new(5).unwrap())
                    .ipv4(src, dst, 64)
                    .udp(1000 + i as u16, 53)
                    .write(&mut out, &payload)
                    .unwrap(),
                (false, true) => b
                    .ipv4(src, dst, 64)
                    .udp(1000 + i as u16, 53)
                    .write(&mut out, &payload)
                    .unwrap(),
                _ => b
                    .ipv4(src, dst, 64)
                    .tcp(1000 + i as u16, 443, i, 1000)
                    .ack(1)
                    .write(&mut out, &payload)
                    .unwrap(),
            }
            out
        })
        .collect()
}

fn measure(name: &str, frames: &[Vec<u8>], mut f: impl FnMut(&[u8]) -> u64) {
    let rounds = 2000;
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        let mut acc = 0u64;
        for _ in 0..rounds {
            for fr in frames {
                acc = acc.wrapping_add(f(black_box(fr)));
            }
        }
        black_box(acc);
        let ns = t.elapsed().as_nanos() as f64 / (rounds * frames.len()) as f64;
        best = best.min(ns);
    }
    eprintln!("{name:40} {best:6.1} ns/frame (best of 5)");
}

#[test]
#[ignore = "benchmark: run with --release -- --ignored --nocapture"]
fn fast_parse_ns_per_frame() {
    let fs = frames();
    for verify in [false, true] {
        let opts = FastOptions {
            verify_ipv4_checksum: verify,
        };
        measure(
            &format!("fast::parse (verify_ipv4_checksum={verify})"),
            &fs,
            |f| match fast::parse(f, opts) {
                FastParse::Fast(m) => {
                    u64::from(m.key.sport ^ m.key.dport) ^ m.l4_offset() as u64 ^ u64::from(m.ttl)
                }
                _ => 0,
            },
        );
    }
    measure("etherparse SlicedPacket::from_ethernet", &fs, |f| {
        etherparse::SlicedPacket::from_ethernet(f).map_or(0, |s| s.link_exts.len() as u64 + 1)
    });
    measure("slow::parse", &fs, |f| {
        slow::parse(f).map_or(0, |s| s.l3_offset as u64)
    });
}
