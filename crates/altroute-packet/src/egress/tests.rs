//! Checksum completion against a full recompute: frames built with etherparse (checksums computed
//! by it) are turned into "checksum not ready" frames as a sending host's stack leaves them (the
//! L4 field holding the pseudo-header sum), then finished by [`complete_checksum`]; the result
//! must be the frame etherparse built, byte for byte.

use super::*;
use crate::testutil::ones;
use etherparse::{IpHeaders, IpNumber, Ipv4Extensions, Ipv4Header, PacketBuilder, VlanId};
use proptest::prelude::*;

#[derive(Clone, Debug)]
struct Spec {
    vlan: Option<u16>,
    udp: bool,
    src: [u8; 4],
    dst: [u8; 4],
    ports: (u16, u16),
    options: Vec<u8>,
    payload: Vec<u8>,
}

fn build(s: &Spec) -> Vec<u8> {
    let mut h = Ipv4Header::new(0, 64, IpNumber::TCP, s.src, s.dst).unwrap();
    h.options = s.options[..].try_into().unwrap();
    let ip = IpHeaders::Ipv4(h, Ipv4Extensions::default());
    let eth = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
    let step = match s.vlan {
        Some(v) => eth.single_vlan(VlanId::try_new(v).unwrap()).ip(ip),
        None => eth.ip(ip),
    };
    let mut out = Vec::new();
    if s.udp {
        step.udp(s.ports.0, s.ports.1)
            .write(&mut out, &s.payload)
            .unwrap();
    } else {
        step.tcp(s.ports.0, s.ports.1, 1, 65000)
            .ack(2)
            .write(&mut out, &s.payload)
            .unwrap();
    }
    out
}

/// `frame` as a sending host leaves it with the checksum offloaded: the L4 field holds the
/// folded pseudo-header sum (computed here from the frame's bytes, independently).
fn not_ready(frame: &[u8], vlan: bool, ihl: usize, udp: bool) -> Vec<u8> {
    let l3 = if vlan { 18 } else { 14 };
    let l4 = l3 + ihl;
    let l4_len = (frame.len() - l4) as u32;
    let proto = if udp { 17 } else { 6 };
    let sum = ones(&frame[l3 + 12..l3 + 20], proto + l4_len);
    let at = l4 + if udp { 6 } else { 16 };
    let mut f = frame.to_vec();
    f[at..at + 2].copy_from_slice(&sum.to_be_bytes());
    f
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        proptest::option::of(1u16..4095),
        any::<bool>(),
        any::<([u8; 4], [u8; 4])>(),
        any::<(u16, u16)>(),
        0usize..=10,
        proptest::collection::vec(any::<u8>(), 0..1400),
    )
        .prop_map(|(vlan, udp, (src, dst), ports, words, payload)| Spec {
            vlan,
            udp,
            src,
            dst,
            ports,
            // No-operation options, 4 bytes a word.
            options: vec![1; words * 4],
            payload,
        })
}

proptest! {
    /// Finding the field of a "checksum not ready" frame and finishing it gives the checksum a
    /// full recompute gives (UDP's zero rule included), and nothing else changes.
    #[test]
    fn completing_a_partial_checksum_equals_a_full_recompute(s in spec(), pad in 0usize..8) {
        let full = build(&s);
        let ihl = 20 + s.options.len();
        let mut f = not_ready(&full, s.vlan.is_some(), ihl, s.udp);
        let mut off = TxOffload::checksum_not_ready(&f);
        let l4 = if s.vlan.is_some() { 18 } else { 14 } + ihl;
        let want = PartialChecksum { start: l4 as u16, offset: if s.udp { 6 } else { 16 } };
        prop_assert_eq!(off, TxOffload { partial: Some(want), gso: None });
        // Ethernet padding after the IP packet stays out of the sum.
        f.extend(std::iter::repeat_n(0xa5, pad));
        prop_assert_eq!(complete_checksum(&mut f, &mut off), Ok(()));
        prop_assert_eq!(off, TxOffload::NONE);
        prop_assert_eq!(&f[..full.len()], &full[..]);
    }

    /// No input makes the field finder or the completion panic; a completion that fails changes
    /// neither the frame nor the metadata.
    #[test]
    fn any_bytes_and_offsets_are_handled(
        frame in proptest::collection::vec(any::<u8>(), 0..200),
        start in any::<u16>(),
        offset in any::<u16>(),
    ) {
        let _ = TxOffload::checksum_not_ready(&frame);
        let mut f = frame.clone();
        let mut off = TxOffload {
            partial: Some(PartialChecksum { start, offset }),
            gso: None,
        };
        let before = off;
        if complete_checksum(&mut f, &mut off).is_err() {
            prop_assert_eq!(off, before);
            prop_assert_eq!(f, frame);
        } else {
            prop_assert_eq!(off.partial, None);
        }
    }
}

/// RFC 768: a UDP checksum that computes to zero goes out as 0xffff (zero means "none").
#[test]
fn a_udp_checksum_that_computes_to_zero_is_sent_as_ffff() {
    let mut s = Spec {
        vlan: None,
        udp: true,
        src: [192, 0, 2, 1],
        dst: [203, 0, 113, 10],
        ports: (40000, 53),
        options: Vec::new(),
        payload: vec![7, 7, 7, 7, 0, 0],
    };
    // Choose the last payload word so that the sum over pseudo-header and datagram is 0xffff.
    let f = build(&s);
    let udp_len = (f.len() - 34) as u32;
    let mut d = f[34..].to_vec();
    d[6..8].fill(0);
    let sum = ones(&d, u32::from(ones(&f[26..34], 17 + udp_len)));
    s.payload[4..6].copy_from_slice(&(0xffff - sum).to_be_bytes());
    let full = build(&s);
    assert_eq!(
        full[40..42],
        [0xff, 0xff],
        "etherparse applies the zero rule"
    );
    let mut f = not_ready(&full, false, 20, true);
    let mut off = TxOffload::checksum_not_ready(&f);
    assert_eq!(complete_checksum(&mut f, &mut off), Ok(()));
    assert_eq!(f, full);
}

#[test]
fn frames_without_a_transport_checksum_have_no_partial_field() {
    let mut icmp = Vec::new();
    PacketBuilder::ethernet2([2; 6], [4; 6])
        .ipv4([10, 0, 0, 2], [203, 0, 113, 10], 64)
        .icmpv4_echo_request(1, 1)
        .write(&mut icmp, &[0; 8])
        .unwrap();
    assert_eq!(TxOffload::checksum_not_ready(&icmp), TxOffload::NONE);
    assert_eq!(TxOffload::checksum_not_ready(&[0u8; 10]), TxOffload::NONE);
    // Nothing to finish is not an error.
    let mut off = TxOffload::NONE;
    assert_eq!(complete_checksum(&mut icmp, &mut off), Ok(()));
}

#[test]
fn shifting_moves_both_offsets_and_keeps_an_unknown_header_length() {
    let mut o = TxOffload {
        partial: Some(PartialChecksum {
            start: 34,
            offset: 16,
        }),
        gso: Some(Gso {
            kind: GsoKind::TcpV4,
            ecn: false,
            size: 1448,
            hdr_len: 66,
        }),
    };
    o.shift(4);
    assert_eq!(o.partial.map(|p| (p.start, p.offset)), Some((38, 16)));
    assert_eq!(o.gso.map(|g| g.hdr_len), Some(70));
    o.shift(-4);
    assert_eq!(o.partial.map(|p| p.start), Some(34));
    if let Some(g) = o.gso.as_mut() {
        g.hdr_len = 0;
    }
    o.shift(4);
    assert_eq!(o.gso.map(|g| g.hdr_len), Some(0));
    o.shift(i16::MIN);
    assert_eq!(o.partial.map(|p| p.start), Some(0));
}
