//! The steering program against its Rust mirror: hand-built cases with known owners, and random
//! frames (ICMP errors, tags, options, fragments, truncation, noise) through a cBPF interpreter.

use super::*;
use crate::bpf::interp::{Skb, run};
use proptest::prelude::*;

fn nz(v: u32) -> NonZeroU32 {
    NonZeroU32::new(v).unwrap()
}

const LAN_HOST: [u8; 4] = [10, 0, 0, 1];
const REMOTE: [u8; 4] = [198, 51, 100, 7];
const EXT: [u8; 4] = [192, 0, 2, 1];

/// A hand-built Ethernet frame: optional 802.1Q tag, IPv4 with `ihl` words, L4 bytes, and for
/// ICMP errors an embedded packet.
#[derive(Clone, Debug)]
struct Spec {
    vlan: Option<u16>,
    ethertype: u16,
    ihl: u8,
    frag: u16,
    proto: u8,
    src: [u8; 4],
    dst: [u8; 4],
    l4: [u8; 8],
    inner: Option<Box<Spec>>,
}

fn ip_header(s: &Spec) -> Vec<u8> {
    let hl = usize::from(s.ihl) * 4;
    let mut ip = vec![0u8; hl.max(20)];
    ip[0] = 0x40 | (s.ihl & 0x0f);
    ip[6..8].copy_from_slice(&s.frag.to_be_bytes());
    ip[8] = 64;
    ip[9] = s.proto;
    ip[12..16].copy_from_slice(&s.src);
    ip[16..20].copy_from_slice(&s.dst);
    ip
}

/// IPv4 header + L4 bytes (the L4 header starts where the IHL says, even inside a malformed
/// header with IHL < 5) + the embedded packet.
fn ip_packet(s: &Spec) -> Vec<u8> {
    let mut p = ip_header(s);
    let hl = usize::from(s.ihl) * 4;
    for (i, b) in s.l4.iter().enumerate() {
        match p.get_mut(hl + i) {
            Some(slot) => *slot = *b,
            None => p.push(*b),
        }
    }
    if let Some(inner) = &s.inner {
        p.extend_from_slice(&ip_packet(inner));
    }
    p
}

fn build(s: &Spec) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
    if let Some(tci) = s.vlan {
        f.extend_from_slice(&0x8100u16.to_be_bytes());
        f.extend_from_slice(&tci.to_be_bytes());
    }
    f.extend_from_slice(&s.ethertype.to_be_bytes());
    f.extend_from_slice(&ip_packet(s));
    f.extend_from_slice(b"payload");
    f
}

fn tcp(sport: u16, dport: u16) -> Spec {
    let mut l4 = [0u8; 8];
    l4[0..2].copy_from_slice(&sport.to_be_bytes());
    l4[2..4].copy_from_slice(&dport.to_be_bytes());
    Spec {
        vlan: None,
        ethertype: 0x0800,
        ihl: 5,
        frag: 0x4000,
        proto: 6,
        src: LAN_HOST,
        dst: REMOTE,
        l4,
        inner: None,
    }
}

fn udp(sport: u16, dport: u16) -> Spec {
    Spec {
        proto: 17,
        ..tcp(sport, dport)
    }
}

fn icmp(ty: u8, id: u16) -> Spec {
    let mut l4 = [0u8; 8];
    l4[0] = ty;
    l4[4..6].copy_from_slice(&id.to_be_bytes());
    Spec {
        proto: 1,
        l4,
        ..tcp(0, 0)
    }
}

/// An ICMP error of `ty` from `src` to `dst` about `about`.
fn error(ty: u8, src: [u8; 4], dst: [u8; 4], about: Spec) -> Spec {
    Spec {
        src,
        dst,
        inner: Some(Box::new(about)),
        ..icmp(ty, 0)
    }
}

fn with_addrs(s: Spec, src: [u8; 4], dst: [u8; 4]) -> Spec {
    Spec { src, dst, ..s }
}

fn kernel_choice(st: &Steering, frame: &[u8], rxhash: u32) -> u32 {
    let skb = Skb {
        frame,
        net_off: 14,
        protocol: 0x0800,
        rxhash,
    };
    let ret = run(st.program().insns(), &skb).expect("program runs");
    ret % st.workers.get()
}

fn both(st: &Steering, f: &[u8]) -> u32 {
    let w = st.worker(f, 0);
    assert_eq!(kernel_choice(st, f, 0), w, "cBPF and Rust disagree");
    w
}

#[test]
fn hand_built_frames_go_where_the_spec_says() {
    let lan = Steering::new(Side::Lan, nz(1024), nz(4));
    let wan = Steering::new(Side::Wan, nz(1024), nz(4));
    let cases: Vec<(Spec, u32, u32)> = vec![
        // (frame, LAN worker, WAN worker)
        (tcp(5000, 80), (5000 / 1024) % 4, 0),
        (tcp(80, 3 * 1024 + 5), 0, 3),
        (udp(2 * 1024, 7 * 1024), 2, 3),
        (
            Spec {
                vlan: Some(100),
                ..tcp(1024, 2048)
            },
            1,
            2,
        ),
        (icmp(8, 3 * 1024), 3, 0),  // echo request: steered on the LAN only
        (icmp(0, 2 * 1024), 0, 2),  // echo reply: steered on the WAN only
        (icmp(3, 3 * 1024), 0, 0),  // an error about nothing: other
        (icmp(13, 3 * 1024), 0, 0), // timestamp: other
        (
            Spec {
                frag: 0x2000,
                ..tcp(3000, 3000)
            },
            0,
            0,
        ), // MF: other
        (
            Spec {
                frag: 0x0001,
                ..tcp(3000, 3000)
            },
            0,
            0,
        ), // offset: other
        (
            Spec {
                ethertype: 0x86dd,
                ..tcp(3000, 3000)
            },
            0,
            0,
        ),
        (
            Spec {
                ethertype: 0x0806,
                ..tcp(3000, 3000)
            },
            0,
            0,
        ),
        (
            Spec {
                vlan: Some(5),
                ethertype: 0x86dd,
                ..tcp(3000, 3000)
            },
            0,
            0,
        ),
        (
            Spec {
                ihl: 6,
                ..tcp(1024, 1024)
            },
            1,
            1,
        ), // IP options move L4
        (
            Spec {
                proto: 47,
                ..tcp(3000, 3000)
            },
            0,
            0,
        ),
    ];
    for (spec, want_lan, want_wan) in cases {
        let f = build(&spec);
        assert_eq!(lan.worker(&f, 0), want_lan, "LAN {spec:?}");
        assert_eq!(wan.worker(&f, 0), want_wan, "WAN {spec:?}");
        assert_eq!(kernel_choice(&lan, &f, 0), want_lan, "LAN cBPF {spec:?}");
        assert_eq!(kernel_choice(&wan, &f, 0), want_wan, "WAN cBPF {spec:?}");
    }
    // Truncated frames: the program's failed load returns 0.
    let f = build(&tcp(3 * 1024, 80));
    assert_eq!(kernel_choice(&lan, &f[..35], 0), 0);
    assert_eq!(lan.worker(&f[..35], 0), 0);
    assert_eq!(lan.key(&f), Some(3 * 1024));
    assert_eq!(lan.key(&build(&icmp(3, 1))), None);
}

/// ICMP errors land on the worker of the flow they are about, in both directions and for every
/// error type, whatever worker the flow's own frames were steered to.
#[test]
fn icmp_errors_follow_the_flow_they_are_about() {
    for workers in [1u32, 2, 3, 4] {
        let lan = Steering::new(Side::Lan, nz(64), nz(workers));
        let wan = Steering::new(Side::Wan, nz(64), nz(workers));
        for port in [1024u16, 1090, 1155, 40_000, 65_535] {
            for ty in ICMP_ERRORS {
                let ty = ty as u8;
                // An outbound UDP datagram after NAT (EXT:port -> REMOTE:53), and the reply
                // that would come back for it: the error about it comes back the same way.
                let out = with_addrs(udp(port, 53), EXT, REMOTE);
                let reply = with_addrs(udp(53, port), REMOTE, EXT);
                let err = error(ty, REMOTE, EXT, out);
                assert_eq!(both(&wan, &build(&err)), both(&wan, &build(&reply)));
                // An inbound datagram to the LAN host (REMOTE:53 -> host:port) it refuses.
                let inbound = with_addrs(udp(53, port), REMOTE, LAN_HOST);
                let outbound = udp(port, 53);
                let err = error(ty, LAN_HOST, REMOTE, inbound);
                assert_eq!(both(&lan, &build(&err)), both(&lan, &build(&outbound)));
                // Echo: an error about our translated echo request (WAN), about a host's echo
                // reply (LAN).
                let err = error(ty, REMOTE, EXT, with_addrs(icmp(8, port), EXT, REMOTE));
                assert_eq!(both(&wan, &build(&err)), both(&wan, &build(&icmp(0, port))));
                let err = error(ty, LAN_HOST, REMOTE, icmp(0, port));
                assert_eq!(both(&lan, &build(&err)), both(&lan, &build(&icmp(8, port))));
            }
        }
    }
    // An error about a later fragment has no ports: other.
    let wan = Steering::new(Side::Wan, nz(64), nz(4));
    let frag = Spec {
        frag: 0x0010,
        ..with_addrs(udp(1100, 53), EXT, REMOTE)
    };
    assert_eq!(wan.key(&build(&error(3, REMOTE, EXT, frag))), None);
    // Not IPv4 inside: other.
    let mut v6 = with_addrs(udp(1100, 53), EXT, REMOTE);
    v6.ihl = 5;
    let mut f = build(&error(3, REMOTE, EXT, v6));
    f[14 + 20 + 8] = 0x65;
    assert_eq!(wan.key(&f), None);
}

/// A port forward's replies and hairpin traffic reach the worker that holds their flows.
#[test]
fn forwards_and_hairpin_follow_their_flows() {
    let workers = 4;
    let fw = ForwardSteer {
        proto: 6,
        inside: Ipv4Addr::from(LAN_HOST),
        inside_port: 8000,
        outside_port: 443,
    };
    let ext = [Ipv4Addr::new(203, 0, 113, 99), Ipv4Addr::from(EXT)];
    let lan = Steering::new(Side::Lan, nz(64), nz(workers)).with_nat(&ext, &[fw]);
    let wan = Steering::new(Side::Wan, nz(64), nz(workers));
    let owner = |p: u16| (u32::from(p) / 64) % workers;
    assert_ne!(owner(8000), owner(443), "the test needs different blocks");
    // Remote -> EXT:443 arrives on the WAN: owner(443). The inside server's reply and any
    // error it sends about the forward's packets go there too.
    let inbound = with_addrs(tcp(5555, 443), REMOTE, EXT);
    assert_eq!(both(&wan, &build(&inbound)), owner(443));
    let reply = with_addrs(tcp(8000, 5555), LAN_HOST, REMOTE);
    assert_eq!(both(&lan, &build(&reply)), owner(443));
    let about = with_addrs(tcp(5555, 8000), REMOTE, LAN_HOST);
    let err = error(3, LAN_HOST, REMOTE, about);
    assert_eq!(both(&lan, &build(&err)), owner(443));
    // UDP from the same endpoint is not the (TCP) forward: its own source port.
    let u = with_addrs(udp(8000, 5555), LAN_HOST, REMOTE);
    assert_eq!(both(&lan, &build(&u)), owner(8000));
    // Another host's port 8000 is not the forward either.
    let other = with_addrs(tcp(8000, 5555), [10, 0, 0, 2], REMOTE);
    assert_eq!(both(&lan, &build(&other)), owner(8000));
    // Hairpin: a LAN host to EXT:443 goes to owner(443); the server's answer to the address the
    // router translated the client to (EXT:snat) goes to owner(snat), where the hairpin flow
    // was made with a port of its own block.
    let client = with_addrs(tcp(40_000, 443), [10, 0, 0, 3], EXT);
    assert_eq!(both(&lan, &build(&client)), owner(443));
    let snat = 64 * 3 + 7;
    let answer = with_addrs(tcp(8000, snat), LAN_HOST, EXT);
    assert_eq!(both(&lan, &build(&answer)), owner(snat));
    // The other external address counts too.
    let client = with_addrs(tcp(40_000, 1000), [10, 0, 0, 3], [203, 0, 113, 99]);
    assert_eq!(both(&lan, &build(&client)), owner(1000));
    // An error from a LAN host about hairpinned traffic (inner source = external address).
    let about = with_addrs(udp(snat, 9999), EXT, [10, 0, 0, 3]);
    let err = error(3, [10, 0, 0, 3], EXT, about);
    assert_eq!(both(&lan, &build(&err)), owner(snat));
}

#[test]
fn rxhash_policy_for_other_traffic() {
    let st = Steering {
        other: OtherTraffic::RxHash,
        ..Steering::new(Side::Lan, nz(64), nz(3))
    };
    let arp = build(&Spec {
        ethertype: 0x0806,
        ..tcp(1, 1)
    });
    assert_eq!(st.worker(&arp, 7), 1);
    assert_eq!(kernel_choice(&st, &arp, 7), 1);
    assert_eq!(kernel_choice(&st, &build(&tcp(640, 0)), 7), 10 % 3);
}

#[test]
fn program_is_kernel_shaped() {
    let p = Steering::new(Side::Wan, nz(256), nz(2)).program();
    assert!(p.insns().len() < 128, "{} instructions", p.insns().len());
    assert_eq!(p.insns().last().map(|i| i.code), Some(op::RET | op::K));
    // The largest configuration stays within the kernel's limit.
    let ext: Vec<Ipv4Addr> = (0..MAX_EXTERNAL as u32).map(Ipv4Addr::from).collect();
    let fws: Vec<ForwardSteer> = (0..MAX_FORWARDS as u16)
        .map(|i| ForwardSteer {
            proto: 6,
            inside: Ipv4Addr::new(10, 0, 0, i as u8),
            inside_port: 1000 + i,
            outside_port: 2000 + i,
        })
        .collect();
    let big = Steering::new(Side::Lan, nz(64), nz(2)).with_nat(&ext, &fws);
    assert!(big.program().insns().len() <= 4096);
    // The last forward still matches.
    let last = fws[MAX_FORWARDS - 1];
    let f = build(&with_addrs(
        tcp(last.inside_port, 80),
        last.inside.octets(),
        REMOTE,
    ));
    assert_eq!(big.key(&f), Some(last.outside_port));
    assert_eq!(kernel_choice(&big, &f, 0), big.worker(&f, 0));
}

fn arb_l4(proto: u8) -> impl Strategy<Value = [u8; 8]> {
    (proptest::array::uniform8(any::<u8>()), any::<u8>()).prop_map(move |(mut l4, pick)| {
        if proto == 1 {
            l4[0] = match pick % 4 {
                0 => 0,
                1 => 8,
                2 => [3, 4, 5, 11, 12][usize::from(pick / 4) % 5],
                _ => l4[0],
            };
        }
        l4
    })
}

fn addr() -> impl Strategy<Value = [u8; 4]> {
    prop_oneof![Just(LAN_HOST), Just(REMOTE), Just(EXT), any::<[u8; 4]>()]
}

fn arb_flat() -> impl Strategy<Value = Spec> {
    (
        proptest::option::of(any::<u16>()),
        prop_oneof![
            Just(0x0800u16),
            Just(0x86dd),
            Just(0x0806),
            Just(0x8100),
            any::<u16>()
        ],
        0u8..16,
        prop_oneof![
            Just(0u16),
            Just(0x4000),
            Just(0x2000),
            Just(0x1000),
            Just(0x0001),
            any::<u16>()
        ],
        prop_oneof![Just(6u8), Just(17), Just(1), any::<u8>()],
        addr(),
        addr(),
    )
        .prop_flat_map(|(vlan, ethertype, ihl, frag, proto, src, dst)| {
            arb_l4(proto).prop_map(move |l4| Spec {
                vlan,
                ethertype,
                ihl,
                frag,
                proto,
                src,
                dst,
                l4,
                inner: None,
            })
        })
}

/// Random frames, with an embedded packet half the time; and as often, a well-formed ICMP error
/// (untagged or tagged, any error type) about a random packet, so that every inner shape is
/// tried often.
fn arb_spec() -> impl Strategy<Value = Spec> {
    let random = (arb_flat(), proptest::option::of(arb_flat())).prop_map(|(mut s, inner)| {
        s.inner = inner.map(Box::new);
        s
    });
    let error = (
        arb_flat(),
        proptest::option::of(any::<u16>()),
        proptest::sample::select(ICMP_ERRORS.to_vec()),
        addr(),
        addr(),
    )
        .prop_map(|(inner, vlan, ty, src, dst)| Spec {
            vlan,
            ..error(ty as u8, src, dst, inner)
        });
    prop_oneof![random, error]
}

fn arb_steering() -> impl Strategy<Value = Steering> {
    (
        any::<bool>(),
        any::<bool>(),
        prop_oneof![Just(1u32), Just(64), Just(1024), Just(4096), 1u32..70000],
        1u32..9,
        proptest::collection::vec(addr(), 0..3),
        proptest::collection::vec(
            (
                prop_oneof![Just(6u8), Just(17)],
                addr(),
                any::<u16>(),
                any::<u16>(),
            ),
            0..3,
        ),
    )
        .prop_map(|(lan, rxhash, block, workers, ext, fws)| {
            let ext: Vec<Ipv4Addr> = ext.into_iter().map(Ipv4Addr::from).collect();
            let fws: Vec<ForwardSteer> = fws
                .into_iter()
                .map(|(proto, a, inside_port, outside_port)| ForwardSteer {
                    proto,
                    inside: Ipv4Addr::from(a),
                    inside_port,
                    outside_port,
                })
                .collect();
            Steering {
                other: if rxhash {
                    OtherTraffic::RxHash
                } else {
                    OtherTraffic::Worker0
                },
                ..Steering::new(
                    if lan { Side::Lan } else { Side::Wan },
                    nz(block),
                    nz(workers),
                )
                .with_nat(&ext, &fws)
            }
        })
}

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(3000)))]
    #[test]
    fn cbpf_program_equals_rust_reference(
        spec in arb_spec(),
        st in arb_steering(),
        cut in any::<prop::sample::Index>(),
        truncate: bool,
        rxhash: u32,
    ) {
        let mut f = build(&spec);
        if truncate {
            let n = cut.index(f.len() + 1);
            f.truncate(n);
        }
        prop_assert_eq!(kernel_choice(&st, &f, rxhash), st.worker(&f, rxhash));
    }

    #[test]
    fn cbpf_program_equals_rust_reference_on_noise(
        bytes in proptest::collection::vec(any::<u8>(), 0..120),
        st in arb_steering(),
    ) {
        prop_assert_eq!(kernel_choice(&st, &bytes, 0), st.worker(&bytes, 0));
    }
}
