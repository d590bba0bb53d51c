//! The fast-path parser on arbitrary frames: no panic, and an accepted frame's offsets and key
//! are consistent with the bytes.
#![no_main]

use altroute_packet::{FastOptions, FastParse, fast};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for verify in [false, true] {
        let r = fast::parse(
            data,
            FastOptions {
                verify_ipv4_checksum: verify,
            },
        );
        if let FastParse::Fast(m) = r {
            assert!(m.ip_end() <= data.len());
            assert!(m.l4_checksum_offset() + 2 <= m.ip_end());
            assert_eq!(
                data[m.ip_src_offset()..m.ip_src_offset() + 4],
                m.key.src_bytes()[..4]
            );
            assert_eq!(
                data[m.ip_dst_offset()..m.ip_dst_offset() + 4],
                m.key.dst_bytes()[..4]
            );
            // The slow path must accept whatever the fast path accepts (with a checked header).
            if verify {
                assert!(altroute_packet::slow::parse(data).is_ok());
            }
        }
    }
});
