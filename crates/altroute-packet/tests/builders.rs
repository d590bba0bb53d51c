//! The builders' frames parse with etherparse and every checksum verifies with an independent
//! recompute (a plain 16-bit loop written here, not the crate's checksum module).
#![allow(clippy::unwrap_used)]

use std::net::Ipv4Addr;

use altroute_packet::build::{self, L2};
use altroute_packet::wire::{ArpOp, ArpRepr, MacAddr, VlanTci};
use etherparse::{Icmpv4Type, LinkSlice, NetSlice, SlicedPacket, TransportSlice};
use proptest::prelude::*;

/// Textbook RFC 1071: sum 16-bit big-endian words with end-around carry.
fn ones_sum(parts: &[&[u8]]) -> u16 {
    let mut bytes = Vec::new();
    for p in parts {
        bytes.extend_from_slice(p);
    }
    if bytes.len() % 2 == 1 {
        bytes.push(0);
    }
    let mut acc: u32 = 0;
    for w in bytes.chunks(2) {
        acc += u32::from(u16::from_be_bytes([w[0], w[1]]));
        while acc > 0xffff {
            acc = (acc & 0xffff) + (acc >> 16);
        }
    }
    acc as u16
}

fn verifies(parts: &[&[u8]]) -> bool {
    ones_sum(parts) == 0xffff
}

const ROUTER_MAC: MacAddr = MacAddr([0x02, 0xaa, 0, 0, 0, 1]);
const HOST_MAC: MacAddr = MacAddr([0x02, 0xbb, 0, 0, 0, 2]);
const ROUTER_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

fn l2(vlan: Option<u16>) -> L2 {
    L2 {
        src: ROUTER_MAC,
        dst: HOST_MAC,
        vlan: vlan.map(VlanTci::with_id),
    }
}

/// Checks L2 + IPv4 of a built frame and returns (ip header bytes, ip payload).
fn check_ip<'a>(f: &'a [u8], vlan: Option<u16>) -> (SlicedPacket<'a>, &'a [u8], &'a [u8]) {
    assert!(f.len() >= 60, "not padded: {}", f.len());
    let sp = SlicedPacket::from_ethernet(f).unwrap();
    let Some(LinkSlice::Ethernet2(e)) = &sp.link else {
        panic!("{:?}", sp.link)
    };
    assert_eq!(e.source(), ROUTER_MAC.0);
    assert_eq!(sp.vlan_ids().first().map(|v| v.value()), vlan);
    let Some(NetSlice::Ipv4(ip)) = &sp.net else {
        panic!("{:?}", sp.net)
    };
    let l3 = if vlan.is_some() { 18 } else { 14 };
    let hl = ip.header().slice().len();
    let tl = usize::from(ip.header().total_len());
    let (h, p) = (&f[l3..l3 + hl], &f[l3 + hl..l3 + tl]);
    assert_eq!(p, ip.payload().payload);
    assert!(verifies(&[h]), "IPv4 header checksum");
    (sp, h, p)
}

fn pseudo(h: &[u8], proto: u8, len: usize) -> Vec<u8> {
    let mut v = h[12..20].to_vec();
    v.extend_from_slice(&[0, proto]);
    v.extend_from_slice(&(len as u16).to_be_bytes());
    v
}

/// A TCP segment from a host to somewhere, as an IPv4 packet (built with etherparse).
fn tcp_segment(flags: u8, seq: u32, ack: u32, payload: &[u8]) -> Vec<u8> {
    let mut t = etherparse::TcpHeader::new(40000, 443, seq, 1024);
    t.syn = flags & 2 != 0;
    t.fin = flags & 1 != 0;
    t.rst = flags & 4 != 0;
    if flags & 16 != 0 {
        t.ack = true;
        t.acknowledgment_number = ack;
    }
    let mut out = Vec::new();
    etherparse::PacketBuilder::ipv4([10, 0, 0, 2], [203, 0, 113, 10], 64)
        .tcp_header(t)
        .write(&mut out, payload)
        .unwrap();
    out
}

#[test]
fn arp_reply_and_request() {
    for vlan in [None, Some(42)] {
        let req = ArpRepr {
            op: ArpOp::Request,
            sha: HOST_MAC,
            spa: Ipv4Addr::new(192, 0, 2, 2),
            tha: MacAddr::ZERO,
            tpa: ROUTER_IP,
        };
        let mut b = [0u8; 128];
        let n = build::arp_reply(
            &mut b,
            vlan.map(VlanTci::with_id),
            ROUTER_MAC,
            ROUTER_IP,
            &req,
        )
        .unwrap();
        assert_eq!(n, 60);
        {
            let sp = SlicedPacket::from_ethernet(&b[..n]).unwrap();
            let Some(NetSlice::Arp(a)) = &sp.net else {
                panic!("{:?}", sp.net)
            };
            assert_eq!(a.operation(), etherparse::ArpOperation::REPLY);
            assert_eq!(a.sender_hw_addr(), ROUTER_MAC.0);
            assert_eq!(a.sender_protocol_addr(), ROUTER_IP.octets());
            assert_eq!(a.target_hw_addr(), HOST_MAC.0);
            assert_eq!(a.target_protocol_addr(), [192, 0, 2, 2]);
            assert_eq!(sp.vlan_ids().first().map(|v| v.value()), vlan);
            let Some(LinkSlice::Ethernet2(e)) = &sp.link else {
                panic!()
            };
            assert_eq!(e.destination(), HOST_MAC.0);
        }

        let n = build::arp_request(
            &mut b,
            vlan.map(VlanTci::with_id),
            ROUTER_MAC,
            ROUTER_IP,
            Ipv4Addr::new(192, 0, 2, 254),
        )
        .unwrap();
        let sp = SlicedPacket::from_ethernet(&b[..n]).unwrap();
        let Some(NetSlice::Arp(a)) = &sp.net else {
            panic!()
        };
        assert_eq!(a.operation(), etherparse::ArpOperation::REQUEST);
        assert_eq!(a.target_protocol_addr(), [192, 0, 2, 254]);
        assert_eq!(a.target_hw_addr(), [0; 6]);
        let Some(LinkSlice::Ethernet2(e)) = &sp.link else {
            panic!()
        };
        assert_eq!(e.destination(), [0xff; 6]);
    }
}

fn check_icmp_error(f: &[u8], vlan: Option<u16>, original: &[u8], ty: u8, code: u8) -> [u8; 4] {
    let (sp, h, p) = check_ip(f, vlan);
    assert_eq!(&h[12..16], &ROUTER_IP.octets());
    assert_eq!(
        &h[16..20],
        &original[12..16],
        "sent back to the original source"
    );
    assert!(verifies(&[p]), "ICMP checksum");
    assert_eq!((p[0], p[1]), (ty, code));
    let quote = &p[8..];
    assert!(quote.len() >= 28.min(original.len()));
    assert!(h.len() + p.len() <= 576);
    assert_eq!(quote, &original[..quote.len()]);
    assert_eq!(quote.len(), original.len().min(576 - 28));
    assert!(matches!(sp.transport, Some(TransportSlice::Icmpv4(_))));
    [p[4], p[5], p[6], p[7]]
}

proptest! {
    #[test]
    fn icmp_errors(vlan in proptest::option::of(1u16..4095), plen in 0usize..1600, mtu in 576u16..9000) {
        let orig = tcp_segment(0x18, 1, 2, &vec![0xab; plen]);
        let mut b = vec![0u8; 2048];
        let n = build::icmp_time_exceeded(&mut b, &l2(vlan), ROUTER_IP, &orig).unwrap();
        check_icmp_error(&b[..n], vlan, &orig, 11, 0);
        let n = build::icmp_frag_needed(&mut b, &l2(vlan), ROUTER_IP, mtu, &orig).unwrap();
        let rest = check_icmp_error(&b[..n], vlan, &orig, 3, 4);
        prop_assert_eq!(u16::from_be_bytes([rest[2], rest[3]]), mtu);
        let n = build::icmp_admin_prohibited(&mut b, &l2(vlan), ROUTER_IP, &orig).unwrap();
        check_icmp_error(&b[..n], vlan, &orig, 3, 13);
    }

    #[test]
    fn tcp_rst(vlan in proptest::option::of(1u16..4095), flags in any::<u8>(), seq in any::<u32>(), ack in any::<u32>(), plen in 0usize..100) {
        let flags = flags & !4; // not a RST
        let seg = tcp_segment(flags, seq, ack, &vec![1; plen]);
        let mut b = [0u8; 256];
        let n = build::tcp_rst(&mut b, &l2(vlan), &seg).unwrap();
        let (sp, h, p) = check_ip(&b[..n], vlan);
        prop_assert!(verifies(&[&pseudo(h, 6, p.len()), p]), "TCP checksum");
        let Some(TransportSlice::Tcp(t)) = &sp.transport else { panic!() };
        prop_assert!(t.rst());
        prop_assert_eq!((t.source_port(), t.destination_port()), (443, 40000));
        prop_assert_eq!(&h[12..16], &[203, 0, 113, 10]);
        if flags & 16 != 0 {
            prop_assert_eq!(t.sequence_number(), ack);
            prop_assert!(!t.ack());
        } else {
            let len = plen as u32 + u32::from(flags & 2 != 0) + u32::from(flags & 1 != 0);
            prop_assert_eq!(t.sequence_number(), 0);
            prop_assert!(t.ack());
            prop_assert_eq!(t.acknowledgment_number(), seq.wrapping_add(len));
        }
    }

    #[test]
    fn echo_reply_and_request(vlan in proptest::option::of(1u16..4095), id in any::<u16>(), seq in any::<u16>(), data in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut b = [0u8; 512];
        let n = build::icmp_echo_request(&mut b, &l2(vlan), Ipv4Addr::new(10, 0, 0, 2), ROUTER_IP, id, seq, 64, &data).unwrap();
        let req_ip = {
            let (sp, h, p) = check_ip(&b[..n], vlan);
            prop_assert!(verifies(&[p]), "ICMP checksum");
            let Some(TransportSlice::Icmpv4(i)) = &sp.transport else { panic!() };
            prop_assert_eq!(i.icmp_type(), Icmpv4Type::EchoRequest(etherparse::IcmpEchoHeader { id, seq }));
            prop_assert_eq!(i.payload(), &data[..]);
            let mut v = h.to_vec();
            v.extend_from_slice(p);
            v
        };
        let mut r = [0u8; 512];
        let n = build::icmp_echo_reply(&mut r, &l2(vlan), &req_ip).unwrap();
        let (sp, h, p) = check_ip(&r[..n], vlan);
        prop_assert!(verifies(&[p]), "ICMP checksum");
        prop_assert_eq!(&h[12..16], &ROUTER_IP.octets());
        prop_assert_eq!(&h[16..20], &[10, 0, 0, 2]);
        let Some(TransportSlice::Icmpv4(i)) = &sp.transport else { panic!() };
        prop_assert_eq!(i.icmp_type(), Icmpv4Type::EchoReply(etherparse::IcmpEchoHeader { id, seq }));
        prop_assert_eq!(i.payload(), &data[..]);
    }

    #[test]
    fn builders_never_panic_on_garbage(orig in proptest::collection::vec(any::<u8>(), 0..100), cap in 0usize..200) {
        let mut b = vec![0u8; cap];
        let l = l2(None);
        let _ = build::icmp_time_exceeded(&mut b, &l, ROUTER_IP, &orig);
        let _ = build::tcp_rst(&mut b, &l, &orig);
        let _ = build::icmp_echo_reply(&mut b, &l, &orig);
        let _ = build::may_send_icmp_error(&orig);
    }
}

#[test]
fn small_buffers_are_errors() {
    let seg = tcp_segment(2, 1, 0, &[]);
    for cap in 0..60 {
        let mut b = vec![0u8; cap];
        assert!(matches!(
            build::tcp_rst(&mut b, &l2(None), &seg),
            Err(build::BuildError::BufferTooSmall { .. })
        ));
    }
}
