//! The slow-path parser on arbitrary frames: no panic, and every offset it reports for an ICMP
//! error's quoted datagram is inside the frame.
#![no_main]

use altroute_packet::slow::{self, SlowKind, SlowL4};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(f) = slow::parse(data) else { return };
    let SlowKind::Ipv4(ip) = f.kind else { return };
    assert!(ip.l4_offset <= data.len());
    if let SlowL4::IcmpError { inner, .. } = ip.l4 {
        for o in [
            Some(inner.icmp_checksum_offset),
            Some(inner.ip_src_offset()),
            Some(inner.ip_dst_offset()),
            Some(inner.ip_checksum_offset()),
            inner.src_port_offset,
            inner.dst_port_offset,
            inner.l4_checksum_offset,
        ]
        .into_iter()
        .flatten()
        {
            assert!(o + 2 <= data.len(), "offset {o} in {}", data.len());
        }
    }
});
