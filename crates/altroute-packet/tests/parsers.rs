//! Property tests of the fast and slow parsers against etherparse (the oracle).
#![allow(clippy::unwrap_used)]

mod common;

use altroute_packet::{FastOptions, FastParse, SlowReason, fast, slow};
use etherparse::{
    IpHeaders, IpNumber, Ipv4Extensions, Ipv4Header, Ipv4Options, PacketBuilder, VlanId,
};
use proptest::prelude::*;

const VERIFY: FastOptions = FastOptions {
    verify_ipv4_checksum: true,
};

#[derive(Debug, Clone)]
enum L4 {
    Tcp {
        sport: u16,
        dport: u16,
        seq: u32,
        flags: u8,
        window: u16,
        mss: Option<u16>,
    },
    Udp {
        sport: u16,
        dport: u16,
    },
    EchoRequest {
        id: u16,
        seq: u16,
    },
    EchoReply {
        id: u16,
        seq: u16,
    },
}

#[derive(Debug, Clone)]
struct Spec {
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    vlan: Option<u16>,
    src: [u8; 4],
    dst: [u8; 4],
    ttl: u8,
    ip_options: Vec<u8>,
    l4: L4,
    payload: Vec<u8>,
}

fn l4_strategy() -> impl Strategy<Value = L4> {
    prop_oneof![
        (
            any::<u16>(),
            any::<u16>(),
            any::<u32>(),
            any::<u8>(),
            any::<u16>(),
            proptest::option::of(any::<u16>())
        )
            .prop_map(|(sport, dport, seq, flags, window, mss)| L4::Tcp {
                sport,
                dport,
                seq,
                flags,
                window,
                mss
            }),
        (any::<u16>(), any::<u16>()).prop_map(|(sport, dport)| L4::Udp { sport, dport }),
        (any::<u16>(), any::<u16>()).prop_map(|(id, seq)| L4::EchoRequest { id, seq }),
        (any::<u16>(), any::<u16>()).prop_map(|(id, seq)| L4::EchoReply { id, seq }),
    ]
}

fn spec_strategy(with_options: bool) -> impl Strategy<Value = Spec> {
    let opts = if with_options {
        (1usize..=10)
            .prop_flat_map(|w| proptest::collection::vec(any::<u8>(), w * 4))
            .boxed()
    } else {
        Just(Vec::new()).boxed()
    };
    (
        any::<[u8; 6]>(),
        any::<[u8; 6]>(),
        proptest::option::of(0u16..4096),
        any::<[u8; 4]>(),
        any::<[u8; 4]>(),
        any::<u8>(),
        opts,
        l4_strategy(),
        proptest::collection::vec(any::<u8>(), 0..200),
    )
        .prop_map(
            |(src_mac, dst_mac, vlan, src, dst, ttl, ip_options, l4, payload)| Spec {
                src_mac,
                dst_mac,
                vlan,
                src,
                dst,
                ttl,
                ip_options,
                l4,
                payload,
            },
        )
}

/// Builds the frame with etherparse's PacketBuilder (IP and L4 checksums computed by it).
fn build(s: &Spec) -> Vec<u8> {
    let eth = PacketBuilder::ethernet2(s.src_mac, s.dst_mac);
    let mut h = Ipv4Header::new(0, s.ttl, IpNumber::TCP, s.src, s.dst).unwrap();
    h.options = Ipv4Options::try_from(&s.ip_options[..]).unwrap();
    let ip = IpHeaders::Ipv4(h, Ipv4Extensions::default());
    let step = match s.vlan {
        Some(v) => eth.single_vlan(VlanId::try_new(v).unwrap()).ip(ip),
        None => eth.ip(ip),
    };
    let mut out = Vec::new();
    match &s.l4 {
        L4::Tcp {
            sport,
            dport,
            seq,
            flags,
            window,
            mss,
        } => {
            let mut t = etherparse::TcpHeader::new(*sport, *dport, *seq, *window);
            t.fin = flags & 1 != 0;
            t.syn = flags & 2 != 0;
            t.rst = flags & 4 != 0;
            t.psh = flags & 8 != 0;
            t.ack = flags & 16 != 0;
            t.urg = flags & 32 != 0;
            t.ece = flags & 64 != 0;
            t.cwr = flags & 128 != 0;
            if let Some(m) = mss {
                t.set_options(&[etherparse::TcpOptionElement::MaximumSegmentSize(*m)])
                    .unwrap();
            }
            let b = step.tcp_header(t);
            b.write(&mut out, &s.payload).unwrap();
        }
        L4::Udp { sport, dport } => step
            .udp(*sport, *dport)
            .write(&mut out, &s.payload)
            .unwrap(),
        L4::EchoRequest { id, seq } => step
            .icmpv4_echo_request(*id, *seq)
            .write(&mut out, &s.payload)
            .unwrap(),
        L4::EchoReply { id, seq } => step
            .icmpv4_echo_reply(*id, *seq)
            .write(&mut out, &s.payload)
            .unwrap(),
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(common::cases(512)))]

    /// Well-formed frames without IP options: the fast path accepts them and etherparse agrees
    /// on every field.
    #[test]
    fn fast_accepts_and_agrees(s in spec_strategy(false)) {
        let f = build(&s);
        match fast::parse(&f, VERIFY) {
            FastParse::Fast(m) => {
                if let Err(e) = common::fast_agrees(&f, &m) {
                    return Err(TestCaseError::fail(e));
                }
                // The slow path agrees with the fast path on the key.
                let sl = slow::parse(&f).map_err(|r| TestCaseError::fail(format!("slow: {r}")))?;
                if let Err(e) = common::slow_agrees(&f, &sl) {
                    return Err(TestCaseError::fail(e));
                }
            }
            other => prop_assert!(false, "{:?} for {:?}", other, s),
        }
    }

    /// With IP options: the fast path defers, the slow path accepts and agrees with etherparse.
    #[test]
    fn options_go_slow(s in spec_strategy(true)) {
        let f = build(&s);
        prop_assert_eq!(fast::parse(&f, VERIFY), FastParse::Slow(SlowReason::Ipv4Options));
        let sl = slow::parse(&f).map_err(|r| TestCaseError::fail(format!("slow: {r}")))?;
        if let Err(e) = common::slow_agrees(&f, &sl) {
            return Err(TestCaseError::fail(e));
        }
    }

    /// Truncating a valid frame anywhere gives a clean drop (never an accept).
    #[test]
    fn truncation_is_a_clean_drop(s in spec_strategy(false), cut in any::<prop::sample::Index>()) {
        let f = build(&s);
        let n = cut.index(f.len());
        let t = &f[..n];
        let r = fast::parse(t, VERIFY);
        prop_assert!(matches!(r, FastParse::Drop(_)), "{:?} at {}", r, n);
        let FastParse::Drop(reason) = r else { unreachable!() };
        prop_assert_eq!(slow::parse(t).err(), Some(reason));
    }

    /// Random corruption of valid frames: no panic, and whatever the fast path still accepts,
    /// etherparse agrees with.
    #[test]
    fn corrupted_frames(s in spec_strategy(false), flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6)) {
        let mut f = build(&s);
        for (i, v) in flips {
            let at = i.index(f.len());
            f[at] = v;
        }
        for opts in [VERIFY, FastOptions::default()] {
            if let FastParse::Fast(m) = fast::parse(&f, opts)
                && let Err(e) = common::fast_agrees(&f, &m) {
                    return Err(TestCaseError::fail(e));
                }
        }
        if let Ok(sl) = slow::parse(&f)
            && let Err(e) = common::slow_agrees(&f, &sl) {
                return Err(TestCaseError::fail(e));
            }
    }

    /// Arbitrary bytes: never a panic.
    #[test]
    fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = fast::parse(&b, VERIFY);
        let _ = slow::parse(&b);
    }

    /// Arbitrary bytes behind a plausible IPv4 Ethernet header: deeper paths, still no panic.
    #[test]
    fn arbitrary_ipv4_never_panics(vlan in any::<bool>(), mut b in proptest::collection::vec(any::<u8>(), 20..200)) {
        let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];
        if vlan {
            f.extend_from_slice(&[0x81, 0, 0, 5]);
        }
        f.extend_from_slice(&[8, 0]);
        b[0] = 0x40 | (b[0] & 0x0f);
        let len = b.len() as u16;
        b[2..4].copy_from_slice(&len.to_be_bytes());
        f.extend_from_slice(&b);
        if let FastParse::Fast(m) = fast::parse(&f, FastOptions::default())
            && let Err(e) = common::fast_agrees(&f, &m) {
                return Err(TestCaseError::fail(e));
            }
        let _ = slow::parse(&f);
    }
}
