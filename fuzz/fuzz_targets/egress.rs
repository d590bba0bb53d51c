//! The egress stage on arbitrary frames and offsets: no panic; a finished checksum clears the
//! partial state and a failed one changes nothing; UDP coalescing never grows a head past its
//! buffer, and a GSO frame it makes has consistent headers.
//!
//! Input: `start` (2 bytes), `offset` (2), `room` (2), `n` (1), `n` pairs (position, xor), then a
//! frame `a`. The second frame `b` is `a` with the pairs applied, so that from a seed holding one
//! UDP datagram the fuzzer reaches groups (equal headers) as easily as their refusals.
#![no_main]

use altroute_packet::checksum;
use altroute_packet::egress::{self, PartialChecksum, TxOffload, coalesce};
use altroute_packet::wire::{EthernetFrame, Ipv4Packet, UdpPacket};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((head, rest)) = data.split_first_chunk::<7>() else {
        return;
    };
    let start = u16::from_be_bytes([head[0], head[1]]);
    let offset = u16::from_be_bytes([head[2], head[3]]);
    let room = usize::from(u16::from_be_bytes([head[4], head[5]]));
    let n = usize::from(head[6]).min(rest.len() / 2);
    let (tweaks, a) = rest.split_at(n * 2);
    let mut b = a.to_vec();
    for t in tweaks.chunks_exact(2) {
        if !b.is_empty() {
            let at = usize::from(t[0]) % b.len();
            b[at] ^= t[1];
        }
    }

    // Checksum completion: the field found in the frame, then arbitrary offsets.
    let mut f = a.to_vec();
    let mut o = TxOffload::checksum_not_ready(&f);
    let _ = egress::complete_checksum(&mut f, &mut o);
    let mut f = a.to_vec();
    let mut o = TxOffload {
        partial: Some(PartialChecksum { start, offset }),
        gso: None,
    };
    let before = o;
    match egress::complete_checksum(&mut f, &mut o) {
        Ok(()) => assert_eq!(o.partial, None),
        Err(_) => {
            assert_eq!(o, before);
            assert_eq!(f, a);
        }
    }
    o.shift(start as i16);

    // Coalescing: `a` heads a group in a buffer of `room` bytes; `b`, then `a` again, may join.
    let _ = coalesce::candidate(&b);
    let Some(mut g) = coalesce::Group::open(a) else {
        return;
    };
    let mut buf = a.to_vec();
    buf.resize(a.len().max(room), 0);
    let mut len = a.len();
    for next in [&b[..], a] {
        if let Some(p) = g.next_payload(next) {
            let p = p.to_vec();
            if let Some(n) = g.append(&mut buf, len, &p) {
                assert!(n <= buf.len());
                len = n;
            }
        }
    }
    if let Some(off) = g.finish(&mut buf[..len]) {
        let gso = off.gso.expect("a GSO frame");
        let frame = &buf[..len];
        let eth = EthernetFrame::new_checked(frame).expect("a valid Ethernet header");
        let ip = Ipv4Packet::new_checked(eth.payload()).expect("a valid IPv4 header");
        assert!(ip.verify_checksum());
        assert_eq!(usize::from(ip.total_len()) + 14, len);
        let udp = UdpPacket::new_checked(ip.payload()).expect("a valid UDP header");
        assert_eq!(usize::from(udp.len()) + 34, len);
        assert_eq!(
            udp.checksum(),
            checksum::pseudo_header_v4(ip.src(), ip.dst(), 17, udp.len())
        );
        assert_eq!((len - usize::from(gso.hdr_len)) % usize::from(gso.size), 0);
    }
});
