//! Every frame of the shared pcap corpus through the fast and slow parsers, with etherparse as
//! the oracle for what they accept. Every file must be readable (by `altroute replay`'s reader).
//!
//! Corpus: `$ALTROUTE_PCAP_CORPUS`, default `../../../shared/pcap-corpus` relative to this
//! crate. Missing corpus: skipped with a printed reason, unless `CI` is set (then a failure).
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use altroute_packet::{FastOptions, FastParse, fast, slow};

mod support {
    pub mod corpus_files;
}
use support::corpus_files::corpus_files;

/// The capture reader of `altroute replay` (self-contained: std and thiserror), so that both
/// corpus tests read the same frames from every file.
#[path = "../../altroute/src/replay/capture.rs"]
#[allow(dead_code)]
mod capture;

/// Ethernet frames of one capture file, or why it could not be read.
fn read_frames(path: &Path) -> Result<Vec<Vec<u8>>, String> {
    capture::read_capture(path)
        .map(|frames| frames.into_iter().map(|f| f.data).collect())
        .map_err(|e| e.to_string())
}

#[test]
fn corpus_fast_and_slow_agree_with_etherparse() {
    let Some(paths) = corpus_files() else {
        return;
    };

    let (mut files, mut frames) = (0usize, 0usize);
    let (mut n_fast, mut n_slow, mut n_drop, mut n_slow_ok) = (0usize, 0usize, 0usize, 0usize);
    let mut failures = Vec::new();
    let mut unreadable = Vec::new();
    let mut drops = altroute_packet::DropCounters::new();
    for path in &paths {
        files += 1;
        let fs = match read_frames(path) {
            Ok(fs) => fs,
            Err(e) => {
                unreadable.push(e);
                continue;
            }
        };
        for (i, f) in fs.iter().enumerate() {
            frames += 1;
            for verify in [false, true] {
                let opts = FastOptions {
                    verify_ipv4_checksum: verify,
                };
                match fast::parse(f, opts) {
                    FastParse::Fast(m) => {
                        if verify {
                            n_fast += 1;
                        }
                        if let Err(e) = common::fast_agrees(f, &m) {
                            failures.push(format!("{} #{i}: {e}", path.display()));
                        }
                    }
                    FastParse::Slow(_) => {
                        if verify {
                            n_slow += 1;
                        }
                        if let Ok(s) = slow::parse(f) {
                            if verify {
                                n_slow_ok += 1;
                            }
                            if let Err(e) = common::slow_agrees(f, &s) {
                                failures.push(format!("{} #{i} (slow): {e}", path.display()));
                            }
                        }
                    }
                    FastParse::Drop(r) => {
                        if verify {
                            n_drop += 1;
                            drops.inc(r);
                        }
                        let _ = slow::parse(f);
                    }
                }
            }
        }
    }
    eprintln!(
        "corpus: {files} files, {frames} Ethernet frames: fast {n_fast}, slow {n_slow} (slow \
         parser accepted {n_slow_ok}), drop {n_drop} {drops:?}"
    );
    assert!(
        unreadable.is_empty(),
        "{} files unreadable:\n{}",
        unreadable.len(),
        unreadable.join("\n")
    );
    assert!(
        failures.is_empty(),
        "{} disagreements:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        n_fast > 0,
        "no frame took the fast path: is this the right corpus?"
    );
}
