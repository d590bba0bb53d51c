//! The reply builders on arbitrary "offending packets" and buffer sizes: no panic; whatever is
//! built parses on the fast or slow path.
#![no_main]

use std::net::Ipv4Addr;

use altroute_packet::build::{self, L2};
use altroute_packet::wire::MacAddr;
use altroute_packet::{FastOptions, FastParse, fast, slow};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (u16, &[u8])| {
    let (cap, orig) = input;
    let mut buf = vec![0u8; usize::from(cap) % 2048];
    let l2 = L2 {
        src: MacAddr([2, 0, 0, 0, 0, 1]),
        dst: MacAddr([2, 0, 0, 0, 0, 2]),
        vlan: None,
    };
    let me = Ipv4Addr::new(192, 0, 2, 1);
    let results = [
        build::icmp_time_exceeded(&mut buf.clone(), &l2, me, orig),
        build::tcp_rst(&mut buf.clone(), &l2, orig),
        build::icmp_echo_reply(&mut buf.clone(), &l2, orig),
    ];
    let _ = build::may_send_icmp_error(orig);
    for r in results {
        if let Ok(n) = r {
            assert!(n <= buf.len());
        }
    }
    if let Ok(n) = build::tcp_rst(&mut buf, &l2, orig) {
        let f = &buf[..n];
        let ok = matches!(
            fast::parse(
                f,
                FastOptions {
                    verify_ipv4_checksum: true
                }
            ),
            FastParse::Fast(_)
        ) || slow::parse(f).is_ok();
        assert!(ok);
    }
});
