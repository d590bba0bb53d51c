//! The capture reader of `altroute replay` (pcap and pcapng) on arbitrary files: no panic, no
//! frame larger than the file, frames numbered 1, 2, ...; and whatever it reads, written back as
//! pcap and read again, gives the same frames (times to the microsecond, clamped to what classic
//! pcap holds).
#![no_main]

use altroute::replay::capture::{PCAP_MAX_SECS, parse_capture, pcap_bytes};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(frames) = parse_capture("fuzz", data) else {
        return;
    };
    for (i, f) in frames.iter().enumerate() {
        assert_eq!(f.number, i + 1);
        assert!(f.data.len() <= data.len());
    }
    let written = pcap_bytes(frames.iter().map(|f| (f.ts_ns, f.data.as_slice())));
    let back = parse_capture("written", &written).expect("a written capture reads back");
    assert_eq!(back.len(), frames.len());
    for (b, f) in back.iter().zip(&frames) {
        assert_eq!(b.data, f.data);
        assert_eq!(b.orig_len as usize, f.data.len());
        let secs = (f.ts_ns / 1_000_000_000).min(PCAP_MAX_SECS);
        let micros = f.ts_ns % 1_000_000_000 / 1000;
        assert_eq!(b.ts_ns, secs * 1_000_000_000 + micros * 1000);
    }
});
