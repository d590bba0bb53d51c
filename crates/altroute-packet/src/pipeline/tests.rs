//! Pipeline unit tests: frames built with etherparse, results checked with etherparse and with a
//! checksum recompute written here (independent of `crate::checksum`).
#![allow(clippy::too_many_arguments)]

use super::*;
use altroute_flow::tcp::flags::{ACK, RST, SYN};
use altroute_flow::{DownAction, Gateway, TableConfig};
use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TransportSlice};

const LAN_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
const W1_MAC: MacAddr = MacAddr([2, 0, 0, 0, 1, 1]);
const W2_MAC: MacAddr = MacAddr([2, 0, 0, 0, 2, 1]);
const G1_MAC: MacAddr = MacAddr([2, 0, 0, 0, 1, 2]);
const G2_MAC: MacAddr = MacAddr([2, 0, 0, 0, 2, 2]);
const H_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x22]);
const H2_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x33]);
const HOST: [u8; 4] = [10, 0, 0, 2];
const HOST2: [u8; 4] = [10, 0, 0, 3];
const SRV: [u8; 4] = [203, 0, 113, 10];
const EXT1: [u8; 4] = [192, 0, 2, 1];
const EXT2: [u8; 4] = [198, 51, 100, 1];
const T: Time = Time::from_secs(100);

fn ctx(weights: (u32, u32), lan_vlan: Option<u16>) -> Context {
    let table = FlowTable::new(TableConfig {
        gateways: vec![
            Gateway::new("isp1", Some(Ipv4Addr::from(EXT1).into())).weight(weights.0),
            Gateway::new("isp2", Some(Ipv4Addr::from(EXT2).into())).weight(weights.1),
        ],
        ..TableConfig::default()
    })
    .unwrap();
    let cfg = PipelineConfig {
        ports: vec![
            PortSpec {
                name: "lan".into(),
                role: Role::Lan,
                link: 0,
                vlan: lan_vlan,
                mac: LAN_MAC,
                addrs: vec![(Ipv4Addr::new(10, 0, 0, 1), 24)],
                mtu: 1500,
            },
            PortSpec {
                name: "wan1".into(),
                role: Role::Wan,
                link: 1,
                vlan: None,
                mac: W1_MAC,
                addrs: vec![(Ipv4Addr::from(EXT1), 24)],
                mtu: 1500,
            },
            PortSpec {
                name: "wan2".into(),
                role: Role::Wan,
                link: 2,
                vlan: None,
                mac: W2_MAC,
                addrs: vec![(Ipv4Addr::from(EXT2), 24)],
                mtu: 1500,
            },
        ],
        gateways: vec![
            GatewaySpec {
                port: PortId(1),
                next_hop: Ipv4Addr::new(192, 0, 2, 2),
                mac: Some(G1_MAC),
            },
            GatewaySpec {
                port: PortId(2),
                next_hop: Ipv4Addr::new(198, 51, 100, 2),
                mac: Some(G2_MAC),
            },
        ],
        port_forwards: vec![PortForward {
            proto: proto::TCP,
            port: 8080,
            to: (Ipv4Addr::from(HOST2), 80),
            gateways: {
                let mut s = GatewaySet::EMPTY;
                s.insert(GatewayId(0));
                s.insert(GatewayId(1));
                s
            },
        }],
        options: Options::default(),
    };
    Context::new(cfg, table).unwrap()
}

fn tcp_frame(
    src_mac: MacAddr,
    dst_mac: MacAddr,
    src: [u8; 4],
    dst: [u8; 4],
    sp: u16,
    dp: u16,
    flags: u8,
    ttl: u8,
) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(src_mac.0, dst_mac.0)
        .ipv4(src, dst, ttl)
        .tcp(sp, dp, 1000, 64000);
    let b = if flags & SYN != 0 { b.syn() } else { b };
    let b = if flags & ACK != 0 { b.ack(77) } else { b };
    let b = if flags & RST != 0 { b.rst() } else { b };
    let payload = [0xabu8; 10];
    let mut v = Vec::new();
    b.write(&mut v, &payload).unwrap();
    v
}

fn udp_frame(
    src_mac: MacAddr,
    dst_mac: MacAddr,
    src: [u8; 4],
    dst: [u8; 4],
    sp: u16,
    dp: u16,
) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(src_mac.0, dst_mac.0)
        .ipv4(src, dst, 64)
        .udp(sp, dp)
        .write(&mut v, b"hello udp")
        .unwrap();
    v
}

fn run(c: &mut Context, frame: &[u8], link: u8) -> (Verdict, Vec<u8>) {
    let mut buf = frame.to_vec();
    buf.resize(frame.len() + 2048, 0);
    let mut meta = FrameMeta::default();
    let v = c.process(&mut buf, frame.len(), link, &mut meta, T);
    let len = match v {
        Verdict::Forward { len, .. } | Verdict::Reply { len } => len,
        _ => frame.len(),
    };
    buf.truncate(len);
    (v, buf)
}

/// RFC 1071 sum, written independently of `crate::checksum`.
fn ones(data: &[u8], init: u32) -> u16 {
    let mut s = init;
    for c in data.chunks(2) {
        s += u32::from(c[0]) << 8 | c.get(1).map_or(0, |&b| u32::from(b));
    }
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// Checks every checksum of an Ethernet/IPv4 frame by full recompute.
fn assert_checksums(frame: &[u8]) {
    let l3 = if frame[12..14] == [0x81, 0x00] {
        18
    } else {
        14
    };
    let ip = &frame[l3..];
    let ihl = usize::from(ip[0] & 15) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    assert_eq!(ones(&ip[..ihl], 0), 0xffff, "IPv4 header checksum");
    let l4 = &ip[ihl..total];
    let pseudo = |p: u8| {
        let mut s = 0u32;
        for w in ip[12..20].chunks(2) {
            s += u32::from(w[0]) << 8 | u32::from(w[1]);
        }
        s + u32::from(p) + l4.len() as u32
    };
    match ip[9] {
        6 => assert_eq!(ones(l4, pseudo(6)), 0xffff, "TCP checksum"),
        17 if l4[6..8] != [0, 0] => assert_eq!(ones(l4, pseudo(17)), 0xffff, "UDP checksum"),
        1 => {
            assert_eq!(ones(l4, 0), 0xffff, "ICMP checksum");
            // An ICMP error quotes a packet: its header checksum must hold too.
            if matches!(l4[0], 3 | 11) && l4.len() >= 28 {
                let q = &l4[8..];
                let qihl = usize::from(q[0] & 15) * 4;
                assert_eq!(ones(&q[..qihl], 0), 0xffff, "quoted IPv4 header checksum");
            }
        }
        _ => {}
    }
}

fn ips(frame: &[u8]) -> ([u8; 4], [u8; 4], u8) {
    let s = SlicedPacket::from_ethernet(frame).unwrap();
    match s.net {
        Some(NetSlice::Ipv4(i)) => (
            i.header().source(),
            i.header().destination(),
            i.header().ttl(),
        ),
        _ => panic!("not ipv4"),
    }
}

fn ports(frame: &[u8]) -> (u16, u16) {
    let s = SlicedPacket::from_ethernet(frame).unwrap();
    match s.transport {
        Some(TransportSlice::Tcp(t)) => (t.source_port(), t.destination_port()),
        Some(TransportSlice::Udp(u)) => (u.source_port(), u.destination_port()),
        _ => panic!("no ports"),
    }
}

#[test]
fn nat_out_and_back() {
    let mut c = ctx((1, 0), None);
    let syn = tcp_frame(H_MAC, LAN_MAC, HOST, SRV, 40000, 443, SYN, 64);
    let (v, out) = run(&mut c, &syn, 0);
    assert_eq!(
        v,
        Verdict::Forward {
            port: PortId(1),
            len: syn.len()
        }
    );
    assert_eq!(&out[0..6], &G1_MAC.0);
    assert_eq!(&out[6..12], &W1_MAC.0);
    assert_eq!(ips(&out), (EXT1, SRV, 63));
    assert_eq!(ports(&out), (40000, 443));
    assert_checksums(&out);
    // The answer comes back to the host.
    let synack = tcp_frame(G1_MAC, W1_MAC, SRV, EXT1, 443, 40000, SYN | ACK, 50);
    let (v, back) = run(&mut c, &synack, 1);
    assert_eq!(
        v,
        Verdict::Forward {
            port: PortId(0),
            len: synack.len()
        }
    );
    assert_eq!(&back[0..6], &H_MAC.0);
    assert_eq!(&back[6..12], &LAN_MAC.0);
    assert_eq!(ips(&back), (SRV, HOST, 49));
    assert_eq!(ports(&back), (443, 40000));
    assert_checksums(&back);
    assert_eq!(c.counters.gw_out[0].0, 1);
    assert_eq!(c.counters.gw_in[0].0, 1);
}

#[test]
fn udp_translated_and_zero_checksum_stays_zero() {
    let mut c = ctx((0, 1), None);
    let f = udp_frame(H_MAC, LAN_MAC, HOST, SRV, 5353, 53);
    let (v, out) = run(&mut c, &f, 0);
    assert_eq!(
        v,
        Verdict::Forward {
            port: PortId(2),
            len: f.len()
        }
    );
    assert_eq!(ips(&out).0, EXT2);
    assert_checksums(&out);
    let mut z = udp_frame(H_MAC, LAN_MAC, HOST, SRV, 5354, 53);
    z[14 + 20 + 6] = 0;
    z[14 + 20 + 7] = 0;
    let (_, out) = run(&mut c, &z, 0);
    assert_eq!(&out[14 + 20 + 6..14 + 20 + 8], &[0, 0]);
}

#[test]
fn echo_out_and_back_uses_the_id() {
    let mut c = ctx((1, 0), None);
    let mut f = Vec::new();
    PacketBuilder::ethernet2(H_MAC.0, LAN_MAC.0)
        .ipv4(HOST, SRV, 64)
        .icmpv4_echo_request(5, 1)
        .write(&mut f, b"ping")
        .unwrap();
    let (v, out) = run(&mut c, &f, 0);
    assert!(matches!(
        v,
        Verdict::Forward {
            port: PortId(1),
            ..
        }
    ));
    assert_checksums(&out);
    let id = u16::from_be_bytes([out[38], out[39]]);
    assert!(
        id >= 1024,
        "NAT ids come from the pool, above the probe range: {id}"
    );
    let mut r = Vec::new();
    PacketBuilder::ethernet2(G1_MAC.0, W1_MAC.0)
        .ipv4(SRV, EXT1, 60)
        .icmpv4_echo_reply(id, 1)
        .write(&mut r, b"ping")
        .unwrap();
    let (v, back) = run(&mut c, &r, 1);
    assert!(matches!(
        v,
        Verdict::Forward {
            port: PortId(0),
            ..
        }
    ));
    assert_eq!(u16::from_be_bytes([back[38], back[39]]), 5);
    assert_eq!(ips(&back).1, HOST);
    assert_checksums(&back);
}

#[test]
fn ttl_expiry_answers_time_exceeded() {
    let mut c = ctx((1, 0), None);
    let f = tcp_frame(H_MAC, LAN_MAC, HOST, SRV, 40000, 443, SYN, 1);
    let (v, out) = run(&mut c, &f, 0);
    assert!(matches!(v, Verdict::Reply { .. }), "{v:?}");
    assert_eq!(&out[0..6], &H_MAC.0);
    assert_eq!(ips(&out).0, [10, 0, 0, 1]);
    assert_eq!(out[34], 11, "ICMP time exceeded");
    assert_checksums(&out);
}

#[test]
fn arp_reply_for_own_address() {
    let mut c = ctx((1, 0), None);
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&H_MAC.0);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&H_MAC.0);
    f.extend_from_slice(&HOST);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&[10, 0, 0, 1]);
    f.resize(60, 0);
    let (v, out) = run(&mut c, &f, 0);
    assert_eq!(v, Verdict::Reply { len: 60 });
    assert_eq!(&out[0..6], &H_MAC.0);
    assert_eq!(&out[20..22], &[0, 2], "is-at");
    assert_eq!(&out[22..28], &LAN_MAC.0);
    assert_eq!(c.neighbors.get(Ipv4Addr::from(HOST)), Some(H_MAC));
    // A request for someone else: learned, not answered.
    f[38..42].copy_from_slice(&[10, 0, 0, 77]);
    assert_eq!(run(&mut c, &f, 0).0, Verdict::Drop(DropReason::ArpNotForUs));
}

#[test]
fn unsolicited_and_private_are_dropped_and_counted() {
    let mut c = ctx((1, 0), None);
    let f = tcp_frame(G1_MAC, W1_MAC, SRV, EXT1, 443, 1234, SYN, 60);
    assert_eq!(run(&mut c, &f, 1).0, Verdict::Drop(DropReason::Unsolicited));
    let p = tcp_frame(H_MAC, LAN_MAC, HOST, [192, 168, 1, 1], 1, 80, SYN, 64);
    assert_eq!(
        run(&mut c, &p, 0).0,
        Verdict::Drop(DropReason::PrivateDestination)
    );
    assert_eq!(c.counters.drops.get(DropReason::Unsolicited), 1);
    assert_eq!(c.counters.drops.get(DropReason::PrivateDestination), 1);
    // Garbage never panics and is counted.
    let (v, _) = run(&mut c, &[1, 2, 3], 0);
    assert!(matches!(v, Verdict::Drop(_)));
}

#[test]
fn dead_gateway_flows_get_rst() {
    let mut c = ctx((1, 0), None);
    let syn = tcp_frame(H_MAC, LAN_MAC, HOST, SRV, 40000, 443, SYN, 64);
    run(&mut c, &syn, 0);
    let synack = tcp_frame(G1_MAC, W1_MAC, SRV, EXT1, 443, 40000, SYN | ACK, 50);
    run(&mut c, &synack, 1);
    c.table.gateway_down(GatewayId(0), T, DownAction::Reset);
    let data = tcp_frame(H_MAC, LAN_MAC, HOST, SRV, 40000, 443, ACK, 64);
    let (v, out) = run(&mut c, &data, 0);
    assert!(matches!(v, Verdict::Reply { .. }), "{v:?}");
    assert_eq!(ips(&out), (SRV, HOST, 64));
    assert_eq!(out[14 + 20 + 13] & RST, RST);
    assert_checksums(&out);
    // The retry goes out by the other link.
    c.table
        .set_gateway_state(GatewayId(1), altroute_flow::GatewayState::Up);
    let mut gws = c.table.gateways().to_vec();
    gws[1].weight = 1;
    c.table.set_gateways(gws).unwrap();
    let (v, out) = run(&mut c, &syn, 0);
    assert!(
        matches!(
            v,
            Verdict::Forward {
                port: PortId(2),
                ..
            }
        ),
        "{v:?}"
    );
    assert_eq!(ips(&out).0, EXT2);
}

#[test]
fn icmp_error_is_translated_back() {
    let mut c = ctx((1, 0), None);
    let f = udp_frame(H_MAC, LAN_MAC, HOST, SRV, 5353, 53);
    let (_, out) = run(&mut c, &f, 0);
    // The server answers with port unreachable, quoting the translated datagram.
    let quoted = &out[14..];
    let mut e = Vec::new();
    PacketBuilder::ethernet2(G1_MAC.0, W1_MAC.0)
        .ipv4(SRV, EXT1, 60)
        .icmpv4(etherparse::Icmpv4Type::DestinationUnreachable(
            etherparse::icmpv4::DestUnreachableHeader::Port,
        ))
        .write(&mut e, quoted)
        .unwrap();
    let (v, back) = run(&mut c, &e, 1);
    assert!(
        matches!(
            v,
            Verdict::Forward {
                port: PortId(0),
                ..
            }
        ),
        "{v:?}"
    );
    assert_eq!(ips(&back).1, HOST);
    // The quoted datagram is the host's original again.
    let q = &back[14 + 20 + 8..];
    assert_eq!(&q[12..16], &HOST);
    assert_eq!(u16::from_be_bytes([q[20], q[21]]), 5353);
    assert_checksums(&back);
}

#[test]
fn port_forward_and_source_aware_reply() {
    let mut c = ctx((1, 0), None);
    // Learn the server's MAC first (it talks once).
    run(&mut c, &udp_frame(H2_MAC, LAN_MAC, HOST2, SRV, 1, 53), 0);
    // A connection arrives on wan2 (weight 0 for new outbound flows!) to its port 8080.
    let syn = tcp_frame(
        G2_MAC,
        W2_MAC,
        [203, 0, 113, 99],
        EXT2,
        55555,
        8080,
        SYN,
        50,
    );
    let (v, inb) = run(&mut c, &syn, 2);
    assert!(
        matches!(
            v,
            Verdict::Forward {
                port: PortId(0),
                ..
            }
        ),
        "{v:?}"
    );
    assert_eq!(ips(&inb).1, HOST2);
    assert_eq!(ports(&inb), (55555, 80));
    assert_checksums(&inb);
    // The answer leaves by wan2 with wan2's address, whatever the policy says.
    let synack = tcp_frame(
        H2_MAC,
        LAN_MAC,
        HOST2,
        [203, 0, 113, 99],
        80,
        55555,
        SYN | ACK,
        64,
    );
    let (v, out) = run(&mut c, &synack, 0);
    assert!(
        matches!(
            v,
            Verdict::Forward {
                port: PortId(2),
                ..
            }
        ),
        "{v:?}"
    );
    assert_eq!(ips(&out).0, EXT2);
    assert_eq!(ports(&out), (8080, 55555));
    assert_checksums(&out);
}

#[test]
fn hairpin_reaches_the_forwarded_host() {
    let mut c = ctx((1, 0), None);
    run(&mut c, &udp_frame(H2_MAC, LAN_MAC, HOST2, SRV, 1, 53), 0);
    let syn = tcp_frame(H_MAC, LAN_MAC, HOST, EXT1, 40000, 8080, SYN, 64);
    let (v, out) = run(&mut c, &syn, 0);
    assert!(
        matches!(
            v,
            Verdict::Forward {
                port: PortId(0),
                ..
            }
        ),
        "{v:?}"
    );
    assert_eq!(&out[0..6], &H2_MAC.0);
    assert_eq!(ips(&out), (EXT1, HOST2, 63));
    let (sp, dp) = ports(&out);
    assert_eq!(dp, 80);
    assert_checksums(&out);
    // And back: the forwarded host answers the external address; the sender sees EXT1:8080.
    let synack = tcp_frame(H2_MAC, LAN_MAC, HOST2, EXT1, 80, sp, SYN | ACK, 64);
    let (v, back) = run(&mut c, &synack, 0);
    assert!(
        matches!(
            v,
            Verdict::Forward {
                port: PortId(0),
                ..
            }
        ),
        "{v:?}"
    );
    assert_eq!(&back[0..6], &H_MAC.0);
    assert_eq!(ips(&back), (EXT1, HOST, 63));
    assert_eq!(ports(&back), (8080, 40000));
    assert_checksums(&back);
}

#[test]
fn vlan_lan_port_pops_and_pushes_the_tag() {
    let mut c = ctx((1, 0), Some(10));
    let plain = tcp_frame(H_MAC, LAN_MAC, HOST, SRV, 40000, 443, SYN, 64);
    // Untagged on the VLAN port's link: no such port.
    assert_eq!(
        run(&mut c, &plain, 0).0,
        Verdict::Drop(DropReason::WrongVlan)
    );
    let mut tagged = plain[..12].to_vec();
    tagged.extend_from_slice(&[0x81, 0x00, 0x00, 10]);
    tagged.extend_from_slice(&plain[12..]);
    let (v, out) = run(&mut c, &tagged, 0);
    assert_eq!(
        v,
        Verdict::Forward {
            port: PortId(1),
            len: plain.len()
        }
    );
    assert_eq!(
        &out[12..14],
        &[0x08, 0x00],
        "tag removed towards the untagged WAN"
    );
    assert_checksums(&out);
    let synack = tcp_frame(G1_MAC, W1_MAC, SRV, EXT1, 443, 40000, SYN | ACK, 50);
    let (v, back) = run(&mut c, &synack, 1);
    assert_eq!(
        v,
        Verdict::Forward {
            port: PortId(0),
            len: synack.len() + 4
        }
    );
    assert_eq!(&back[12..16], &[0x81, 0x00, 0x00, 10]);
    assert_checksums(&back);
}

#[test]
fn partial_checksum_stays_a_valid_pseudo_header_sum() {
    let mut c = ctx((1, 0), None);
    let mut f = tcp_frame(H_MAC, LAN_MAC, HOST, SRV, 40000, 443, SYN, 64);
    // Make it a "checksum not ready" frame: the field holds the folded pseudo-header sum.
    let l4_len = (f.len() - 34) as u32;
    let mut s = 0u32;
    for w in f[26..34].chunks(2) {
        s += u32::from(w[0]) << 8 | u32::from(w[1]);
    }
    s += 6 + l4_len;
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    f[50..52].copy_from_slice(&(s as u16).to_be_bytes());
    let mut buf = f.clone();
    let mut meta = FrameMeta {
        partial: Some((34, 16)),
        gso: false,
    };
    let v = c.process(&mut buf, f.len(), 0, &mut meta, T);
    assert!(matches!(v, Verdict::Forward { .. }));
    // Finish it the way a NIC would and check the full sum.
    crate::checksum::complete_partial(&mut buf, 34, 16).unwrap();
    assert_checksums(&buf);
}

#[test]
fn batch_agrees_with_single() {
    let mut a = ctx((3, 1), None);
    let mut b = ctx((3, 1), None);
    let frames: Vec<Vec<u8>> = (0..100u16)
        .map(|i| tcp_frame(H_MAC, LAN_MAC, HOST, SRV, 30000 + i % 40, 443, SYN, 64))
        .collect();
    let mut bufs: Vec<Vec<u8>> = frames
        .iter()
        .map(|f| {
            let mut v = f.clone();
            v.resize(f.len() + 64, 0);
            v
        })
        .collect();
    let mut pkts: Vec<Packet<'_>> = bufs
        .iter_mut()
        .zip(&frames)
        .map(|(buf, f)| Packet {
            len: f.len(),
            buf: buf.as_mut_slice(),
            link: 0,
            meta: FrameMeta::default(),
        })
        .collect();
    let mut verdicts = vec![Verdict::Drop(DropReason::Other); pkts.len()];
    a.process_batch(&mut pkts, T, &mut verdicts);
    for (f, v) in frames.iter().zip(&verdicts) {
        let (single, _) = run(&mut b, f, 0);
        assert_eq!(*v, single);
    }
}

/// A connection's retransmitted SYN in the same batch as its first SYN: the batch's lookups were
/// done before the first created the flow, so later frames must look up again (they used to miss
/// and be refused as duplicates).
#[test]
fn batch_sees_flows_created_earlier_in_the_batch() {
    let mut a = ctx((3, 1), None);
    let mut b = ctx((3, 1), None);
    let frames: Vec<Vec<u8>> = (0..32u16)
        .map(|i| tcp_frame(H_MAC, LAN_MAC, HOST, SRV, 30000 + i % 5, 443, SYN, 64))
        .collect();
    let mut bufs: Vec<Vec<u8>> = frames
        .iter()
        .map(|f| {
            let mut v = f.clone();
            v.resize(f.len() + 64, 0);
            v
        })
        .collect();
    let mut pkts: Vec<Packet<'_>> = bufs
        .iter_mut()
        .zip(&frames)
        .map(|(buf, f)| Packet {
            len: f.len(),
            buf: buf.as_mut_slice(),
            link: 0,
            meta: FrameMeta::default(),
        })
        .collect();
    let mut verdicts = vec![Verdict::Drop(DropReason::Other); pkts.len()];
    a.process_batch(&mut pkts, T, &mut verdicts);
    assert!(
        verdicts
            .iter()
            .all(|v| matches!(v, Verdict::Forward { .. })),
        "{verdicts:?}"
    );
    assert_eq!(a.table.len(), 5);
    for ((f, v), p) in frames.iter().zip(&verdicts).zip(&pkts) {
        let (single, out) = run(&mut b, f, 0);
        assert_eq!(*v, single);
        assert_eq!(&p.buf[..out.len()], &out[..]);
    }
}

#[test]
fn arp_request_from_a_group_sender_is_neither_answered_nor_learned() {
    let mut c = ctx((1, 0), None);
    // A request for the router's address whose sender hardware address is a multicast MAC
    // (seen in the tcpdump corpus): answering would send the reply to a multicast group.
    let group = MacAddr([0x37, 0x1f, 0x29, 0xda, 0x2d, 0x79]);
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&H_MAC.0);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&group.0);
    f.extend_from_slice(&HOST);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&[10, 0, 0, 1]);
    f.resize(60, 0);
    assert_eq!(run(&mut c, &f, 0).0, Verdict::Drop(DropReason::BadSrcMac));
    assert_eq!(c.neighbors.get(Ipv4Addr::from(HOST)), None);
    assert_eq!(c.counters.replies, 0);
}

#[test]
fn arp_requests_sent_to_resolve_count_their_bytes() {
    let mut c = ctx((1, 0), None);
    // The forwarded host's MAC is unknown: the inbound SYN becomes an ARP request on the LAN.
    let syn = tcp_frame(
        G1_MAC,
        W1_MAC,
        [203, 0, 113, 99],
        EXT1,
        55555,
        8080,
        SYN,
        50,
    );
    let (v, out) = run(&mut c, &syn, 1);
    assert_eq!(
        v,
        Verdict::Forward {
            port: PortId(0),
            len: 60
        }
    );
    assert_eq!(&out[12..14], &[0x08, 0x06]);
    assert_eq!(c.counters.arp_requests, 1);
    assert_eq!(c.counters.tx_frames[0], 1);
    assert_eq!(
        c.counters.tx_bytes[0], 60,
        "tx_bytes counts what tx_frames counts"
    );
}
