//! Every frame of the shared pcap corpus through the fast and slow parsers, with etherparse as
//! the oracle for what they accept.
//!
//! Corpus: `$ALTROUTE_PCAP_CORPUS`, default `../../../shared/pcap-corpus` relative to this
//! crate. Missing corpus: skipped with a printed reason, unless `CI` is set (then a failure).
#![allow(clippy::unwrap_used)]

mod common;

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use altroute_packet::{FastOptions, FastParse, fast, slow};
use pcap_file::DataLink;
use pcap_file::pcap::PcapReader;
use pcap_file::pcapng::{Block, PcapNgReader};

mod support {
    pub mod corpus_files;
}
use support::corpus_files::corpus_files;

/// Ethernet frames of one capture file, or the reason it could not be read. A read error ends
/// the file (frames read before it are kept).
fn read_frames(path: &Path) -> (Vec<Vec<u8>>, Option<String>) {
    let mut frames = Vec::new();
    let open = || File::open(path).map(BufReader::new);
    let Ok(f) = open() else {
        return (frames, Some("cannot open".into()));
    };
    if let Ok(mut r) = PcapReader::new(f) {
        // Like libpcap's LT_LINKTYPE(), only the low 16 bits name the link type (some captures
        // set upper bits, e.g. 0x30000001, and tcpdump decodes them as Ethernet).
        let lt: u32 = r.header().datalink.into();
        if lt & 0xffff != 1 {
            return (frames, Some(format!("link type {lt:#x}")));
        }
        // Raw packets: test captures often have orig_len > snaplen, which pcap-file's validated
        // reader refuses; the frame bytes are what matters here.
        while let Some(p) = r.next_raw_packet() {
            match p {
                Ok(p) => frames.push(p.data.into_owned()),
                Err(e) => return (frames, Some(format!("pcap: {e}"))),
            }
        }
        return (frames, None);
    }
    let Ok(f) = open() else {
        return (frames, Some("cannot open".into()));
    };
    let mut r = match PcapNgReader::new(f) {
        Ok(r) => r,
        Err(e) => return (frames, Some(format!("neither pcap nor pcapng: {e}"))),
    };
    let mut links = Vec::new();
    while let Some(b) = r.next_block() {
        match b {
            Ok(Block::InterfaceDescription(i)) => links.push(i.linktype),
            Ok(Block::EnhancedPacket(p)) => {
                if links.get(p.interface_id as usize) == Some(&DataLink::ETHERNET) {
                    frames.push(p.data.into_owned());
                }
            }
            Ok(Block::SimplePacket(p)) => {
                if links.first() == Some(&DataLink::ETHERNET) {
                    frames.push(p.data.into_owned());
                }
            }
            Ok(_) => {}
            Err(e) => return (frames, Some(format!("pcapng: {e}"))),
        }
    }
    (frames, None)
}

#[test]
fn corpus_fast_and_slow_agree_with_etherparse() {
    let Some(paths) = corpus_files() else {
        return;
    };

    let (mut files, mut unreadable, mut frames) = (0usize, 0usize, 0usize);
    let (mut n_fast, mut n_slow, mut n_drop, mut n_slow_ok) = (0usize, 0usize, 0usize, 0usize);
    let mut failures = Vec::new();
    let mut drops = altroute_packet::DropCounters::new();
    let mut other_link = 0usize;
    for path in &paths {
        files += 1;
        // pcap-file's own robustness is not under test: a panic inside it counts as unreadable.
        let (fs, err) = std::panic::catch_unwind(|| read_frames(path))
            .unwrap_or_else(|_| (Vec::new(), Some("pcap-file panicked".into())));
        match err {
            Some(e) if e.starts_with("link type") => other_link += 1,
            Some(e) => {
                unreadable += 1;
                if std::env::var_os("ALTROUTE_CORPUS_VERBOSE").is_some() {
                    eprintln!("{}: {e}", path.display());
                }
            }
            None => {}
        }
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
        "corpus: {files} files ({other_link} not Ethernet, {unreadable} unreadable or partly \
         readable), {frames} Ethernet frames: fast {n_fast}, slow {n_slow} (slow parser \
         accepted {n_slow_ok}), drop {n_drop} {drops:?}"
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
