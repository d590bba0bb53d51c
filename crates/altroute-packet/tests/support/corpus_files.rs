//! The capture files of the shared pcap corpus, for the corpus tests of `altroute-packet`
//! (`tests/corpus.rs`) and `altroute` (`tests/corpus_replay.rs`, which includes this file by path).

use std::path::{Path, PathBuf};

/// Where the corpus is: `$ALTROUTE_PCAP_CORPUS`, else `shared/pcap-corpus` beside the checkout.
pub fn corpus_dir() -> PathBuf {
    match std::env::var_os("ALTROUTE_PCAP_CORPUS") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/pcap-corpus"),
    }
}

/// Every `.pcap` and `.pcapng` file of the corpus, sorted. `None` (after printing why) when the
/// corpus is not there, which fails the test instead when `CI` is set.
pub fn corpus_files() -> Option<Vec<PathBuf>> {
    let dir = corpus_dir();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        let msg = format!("pcap corpus not found at {}", dir.display());
        assert!(std::env::var_os("CI").is_none(), "{msg} (CI is set)");
        eprintln!("skipping: {msg}; set ALTROUTE_PCAP_CORPUS");
        return None;
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("pcap" | "pcapng")
            )
        })
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no capture files in {}", dir.display());
    Some(paths)
}
