//! Pipeline unit tests: frames built with etherparse, results checked with etherparse and with a
//! checksum recompute written here (independent of `crate::checksum`).
#![allow(clippy::too_many_arguments)]

use super::*;
use altroute_flow::tcp::flags::{ACK, RST, SYN};
use altroute_flow::{DownAction, Gateway, TableConfig};
use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TransportSlice};

pub(crate) const LAN_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
pub(crate) const W1_MAC: MacAddr = MacAddr([2, 0, 0, 0, 1, 1]);
pub(crate) const W2_MAC: MacAddr = MacAddr([2, 0, 0, 0, 2, 1]);
pub(crate) const G1_MAC: MacAddr = MacAddr([2, 0, 0, 0, 1, 2]);
pub(crate) const G2_MAC: MacAddr = MacAddr([2, 0, 0, 0, 2, 2]);
const H_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x22]);
const H2_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x33]);
const HOST: [u8; 4] = [10, 0, 0, 2];
const HOST2: [u8; 4] = [10, 0, 0, 3];
pub(crate) const SRV: [u8; 4] = [203, 0, 113, 10];
pub(crate) const EXT1: [u8; 4] = [192, 0, 2, 1];
pub(crate) const EXT2: [u8; 4] = [198, 51, 100, 1];
pub(crate) const T: Time = Time::from_secs(100);

/// A two-WAN router (LAN 10.0.0.1/24, isp1 192.0.2.1, isp2 198.51.100.1), weighted `weights`,
/// with a port forward of TCP 8080 to 10.0.0.3:80 (also used by `offload/tests.rs`).
pub(crate) fn ctx(weights: (u32, u32), lan_vlan: Option<u16>) -> Context {
    ctx_gw_macs(weights, lan_vlan, [Some(G1_MAC), Some(G2_MAC)])
}

/// [`ctx`] with the gateways' MACs configured (`Some`) or to be learned (`None`).
fn ctx_gw_macs(weights: (u32, u32), lan_vlan: Option<u16>, macs: [Option<MacAddr>; 2]) -> Context {
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
                mac: macs[0],
            },
            GatewaySpec {
                port: PortId(2),
                next_hop: Ipv4Addr::new(198, 51, 100, 2),
                mac: macs[1],
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

/// [`run`], asserting that the frame is forwarded out of port `port`: the output frame.
fn forwarded(c: &mut Context, frame: &[u8], link: u8, port: u8) -> Vec<u8> {
    let (v, out) = run(c, frame, link);
    assert!(
        matches!(v, Verdict::Forward { port: p, .. } if p == PortId(port)),
        "{v:?}"
    );
    out
}

/// Process `frames` (frame, link) as one batch at `now`: each verdict, and each output (the buffer
/// cut to the verdict's length; empty for drops and control).
fn run_batch(c: &mut Context, frames: &[(Vec<u8>, u8)], now: Time) -> (Vec<Verdict>, Vec<Vec<u8>>) {
    let with_meta: Vec<(Vec<u8>, u8, FrameMeta)> = frames
        .iter()
        .map(|(f, l)| (f.clone(), *l, FrameMeta::default()))
        .collect();
    let (v, o, _) = run_batch_meta(c, &with_meta, now);
    (v, o)
}

/// [`run_batch`] with each frame's offload metadata; also returns the metadata after processing.
fn run_batch_meta(
    c: &mut Context,
    frames: &[(Vec<u8>, u8, FrameMeta)],
    now: Time,
) -> (Vec<Verdict>, Vec<Vec<u8>>, Vec<FrameMeta>) {
    let mut bufs: Vec<Vec<u8>> = frames
        .iter()
        .map(|(f, _, _)| {
            let mut v = f.clone();
            v.resize(f.len() + 64, 0);
            v
        })
        .collect();
    let mut pkts: Vec<Packet<'_>> = bufs
        .iter_mut()
        .zip(frames)
        .map(|(buf, (f, link, meta))| Packet {
            len: f.len(),
            buf: buf.as_mut_slice(),
            link: *link,
            meta: *meta,
        })
        .collect();
    let mut verdicts = vec![Verdict::Drop(DropReason::Other); pkts.len()];
    c.process_batch(&mut pkts, now, &mut verdicts);
    let metas = pkts.iter().map(|p| p.meta).collect();
    drop(pkts);
    let outs = bufs
        .into_iter()
        .zip(&verdicts)
        .map(|(mut b, v)| {
            b.truncate(match v {
                Verdict::Forward { len, .. } | Verdict::Reply { len } => *len,
                _ => 0,
            });
            b
        })
        .collect();
    (verdicts, outs, metas)
}

/// Turns a TCP or UDP frame (untagged or tagged, no IP options) into a "checksum not ready" frame
/// as veth hands them over: the L4 checksum field holds the folded pseudo-header sum. Returns the
/// metadata that says so, or `None` for other frames.
fn make_partial(f: &mut [u8]) -> Option<FrameMeta> {
    let l3 = if f.get(12..14)? == [0x81, 0x00] {
        18
    } else {
        14
    };
    if f.get(l3 - 2..l3)? != [0x08, 0x00] || *f.get(l3)? != 0x45 {
        return None;
    }
    let off: usize = match *f.get(l3 + 9)? {
        6 => 16,
        17 => 6,
        _ => return None,
    };
    let total = usize::from(u16::from_be_bytes([*f.get(l3 + 2)?, *f.get(l3 + 3)?]));
    let l4 = l3 + 20;
    let mut s = u32::from(*f.get(l3 + 9)?) + (total as u32 - 20);
    for w in f.get(l3 + 12..l3 + 20)?.chunks(2) {
        s += u32::from(w[0]) << 8 | u32::from(w[1]);
    }
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    f.get_mut(l4 + off..l4 + off + 2)?
        .copy_from_slice(&(s as u16).to_be_bytes());
    Some(FrameMeta {
        partial: Some((l4 as u16, off as u16)),
        gso: false,
    })
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
    let out = forwarded(&mut c, &f, 0, 1);
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
    let back = forwarded(&mut c, &r, 1, 0);
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
    let out = forwarded(&mut c, &syn, 0, 2);
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
    let back = forwarded(&mut c, &e, 1, 0);
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
    let inb = forwarded(&mut c, &syn, 2, 0);
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
    let out = forwarded(&mut c, &synack, 0, 2);
    assert_eq!(ips(&out).0, EXT2);
    assert_eq!(ports(&out), (8080, 55555));
    assert_checksums(&out);
}

#[test]
fn hairpin_reaches_the_forwarded_host() {
    let mut c = ctx((1, 0), None);
    run(&mut c, &udp_frame(H2_MAC, LAN_MAC, HOST2, SRV, 1, 53), 0);
    let syn = tcp_frame(H_MAC, LAN_MAC, HOST, EXT1, 40000, 8080, SYN, 64);
    let out = forwarded(&mut c, &syn, 0, 0);
    assert_eq!(&out[0..6], &H2_MAC.0);
    assert_eq!(ips(&out), (EXT1, HOST2, 63));
    let (sp, dp) = ports(&out);
    assert_eq!(dp, 80);
    assert_checksums(&out);
    // And back: the forwarded host answers the external address; the sender sees EXT1:8080.
    let synack = tcp_frame(H2_MAC, LAN_MAC, HOST2, EXT1, 80, sp, SYN | ACK, 64);
    let back = forwarded(&mut c, &synack, 0, 0);
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
    let batch: Vec<(Vec<u8>, u8)> = frames.iter().map(|f| (f.clone(), 0)).collect();
    let (verdicts, _) = run_batch(&mut a, &batch, T);
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
    let frames: Vec<(Vec<u8>, u8)> = (0..32u16)
        .map(|i| {
            let f = tcp_frame(H_MAC, LAN_MAC, HOST, SRV, 30000 + i % 5, 443, SYN, 64);
            (f, 0)
        })
        .collect();
    let (verdicts, outs) = run_batch(&mut a, &frames, T);
    assert!(
        verdicts
            .iter()
            .all(|v| matches!(v, Verdict::Forward { .. })),
        "{verdicts:?}"
    );
    assert_eq!(a.table.len(), 5);
    for (((f, _), v), got) in frames.iter().zip(&verdicts).zip(&outs) {
        let (single, out) = run(&mut b, f, 0);
        assert_eq!(*v, single);
        assert_eq!(got, &out);
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

// ----- the established-flow fast path against the full path -----

/// One step of random traffic for [`fast_path_is_invisible`].
#[derive(Clone, Debug)]
enum Step {
    /// A TCP segment from a LAN host: (host index, source port index, flags, TTL, other MAC).
    LanTcp(u8, u8, u8, u8, bool),
    /// A UDP datagram from a LAN host: (host index, source port index).
    LanUdp(u8, u8),
    /// The answer to the `n`th frame forwarded out of a WAN so far, with these TCP flags (ignored
    /// for UDP) and TTL.
    Reply(u16, u8, u8),
    /// A frame forwarded earlier, replayed with one byte changed (at offset `n % len`).
    Mangled(u16, u16, u8),
    /// Time passes (seconds).
    Wait(u8),
    /// Gateway `g` goes down (flows reset) or comes back.
    Link(u8, bool),
}

fn step() -> impl Strategy<Value = Step> {
    use proptest::prelude::*;
    // Mostly what makes connections established, some of what ends them.
    let flags = prop_oneof![
        12 => Just(ACK),
        3 => Just(SYN),
        1 => Just(ACK | 0x01), // FIN
        1 => Just(RST),
    ];
    let reply_flags = prop_oneof![
        8 => Just(ACK),
        4 => Just(SYN | ACK),
        1 => Just(ACK | 0x01), // FIN
        1 => Just(RST),
    ];
    let ttl = prop_oneof![8 => Just(64u8), 1 => Just(1u8)];
    prop_oneof![
        20 => (0u8..3, 0u8..6, flags, ttl.clone(), proptest::bool::weighted(0.05))
            .prop_map(|(h, p, f, t, m)| Step::LanTcp(h, p, f, t, m)),
        8 => (0u8..3, 0u8..6).prop_map(|(h, p)| Step::LanUdp(h, p)),
        24 => (any::<u16>(), reply_flags, ttl).prop_map(|(n, f, t)| Step::Reply(n, f, t)),
        2 => (any::<u16>(), any::<u16>(), any::<u8>()).prop_map(|(n, o, b)| Step::Mangled(n, o, b)),
        2 => (0u8..40).prop_map(Step::Wait),
        1 => (0u8..2, any::<bool>()).prop_map(|(g, up)| Step::Link(g, up)),
    ]
}

use proptest::strategy::Strategy;

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// The fast path only ever takes packets the full path would treat exactly the same way: two
    /// routers fed the same random traffic in the same batches, one with the fast path and one
    /// without, produce the same frames, verdicts, counters and flow tables.
    #[test]
    fn fast_path_is_invisible(
        steps in proptest::collection::vec(step(), 1..400),
        batch in 1usize..48,
        lan_vlan in proptest::bool::weighted(0.2),
        partial_every in 0usize..4,
    ) {
        let vlan = lan_vlan.then_some(7);
        let (mut fast, mut full) = (ctx((3, 1), vlan), ctx((3, 1), vlan));
        full.set_fast_path(false);
        let hosts = [HOST, HOST2, [10, 0, 0, 4]];
        let host_mac = |h: usize, other: bool| MacAddr([2, 0, 0, 0, 0, 0x40 + h as u8 + if other { 8 } else { 0 }]);
        // Frames sent out of a WAN so far (output bytes, out port), for replies.
        let mut sent: Vec<(Vec<u8>, PortId)> = Vec::new();
        let mut now = T;
        let lan_tag = |f: Vec<u8>| -> Vec<u8> {
            match vlan {
                None => f,
                Some(v) => {
                    let mut t = f[..12].to_vec();
                    t.extend_from_slice(&[0x81, 0x00, 0, v as u8]);
                    t.extend_from_slice(&f[12..]);
                    t
                }
            }
        };
        let mut i = 0;
        while i < steps.len() {
            // One batch of frames (other steps act between batches).
            let mut frames: Vec<(Vec<u8>, u8, bool)> = Vec::new();
            while i < steps.len() && frames.len() < batch {
                match steps[i] {
                    Step::LanTcp(h, p, fl, ttl, other) => {
                        let h = usize::from(h);
                        let f = tcp_frame(host_mac(h, other), LAN_MAC, hosts[h], SRV, 40000 + u16::from(p), 443, fl, ttl);
                        frames.push((lan_tag(f), 0, false));
                    }
                    Step::LanUdp(h, p) => {
                        let h = usize::from(h);
                        let f = udp_frame(host_mac(h, false), LAN_MAC, hosts[h], SRV, 50000 + u16::from(p), 53);
                        frames.push((lan_tag(f), 0, false));
                    }
                    Step::Reply(n, fl, ttl) => {
                        if sent.is_empty() {
                            i += 1;
                            continue;
                        }
                        let (out, port) = &sent[usize::from(n) % sent.len()];
                        let (src, dst, pr) = ips(out);
                        let (sp, dp) = ports(out);
                        let gw_mac = if port.0 == 1 { G1_MAC } else { G2_MAC };
                        let wan_mac = if port.0 == 1 { W1_MAC } else { W2_MAC };
                        let f = if pr == proto::TCP {
                            tcp_frame(gw_mac, wan_mac, dst, src, dp, sp, fl, ttl)
                        } else {
                            udp_frame(gw_mac, wan_mac, dst, src, dp, sp)
                        };
                        frames.push((f, port.0, false));
                    }
                    Step::Mangled(n, at, b) => {
                        if let Some((out, port)) = sent.get(usize::from(n) % sent.len().max(1)) {
                            let (src, dst, pr) = ips(out);
                            let (sp, dp) = ports(out);
                            let gw_mac = if port.0 == 1 { G1_MAC } else { G2_MAC };
                            let wan_mac = if port.0 == 1 { W1_MAC } else { W2_MAC };
                            let mut f = if pr == proto::TCP {
                                tcp_frame(gw_mac, wan_mac, dst, src, dp, sp, ACK, 64)
                            } else {
                                udp_frame(gw_mac, wan_mac, dst, src, dp, sp)
                            };
                            let k = usize::from(at) % f.len();
                            f[k] ^= b | 1;
                            frames.push((f, port.0, true));
                        }
                    }
                    _ => break,
                }
                i += 1;
            }
            if !frames.is_empty() {
                // Some frames arrive as veth hands them over: "checksum not ready".
                let batch: Vec<(Vec<u8>, u8, FrameMeta)> = frames
                    .iter()
                    .enumerate()
                    .map(|(k, (f, link, mangled))| {
                        let mut f = f.clone();
                        let meta = if partial_every != 0 && k % partial_every == 0 && !mangled {
                            make_partial(&mut f).unwrap_or_default()
                        } else {
                            FrameMeta::default()
                        };
                        (f, *link, meta)
                    })
                    .collect();
                let (v_fast, o_fast, m_fast) = run_batch_meta(&mut fast, &batch, now);
                let (v_full, o_full, m_full) = run_batch_meta(&mut full, &batch, now);
                proptest::prop_assert_eq!(&v_fast, &v_full);
                proptest::prop_assert_eq!(&o_fast, &o_full);
                proptest::prop_assert_eq!(&m_fast, &m_full);
                for (((out, v), meta), (_, _, mangled)) in
                    o_fast.iter().zip(&v_fast).zip(&m_fast).zip(&frames)
                {
                    if let Verdict::Forward { port, .. } = v
                        && !mangled
                    {
                        // Finish a partial checksum as the NIC (or the kernel) would.
                        let mut out = out.clone();
                        if let Some((start, off)) = meta.partial {
                            let (start, off) = (usize::from(start), usize::from(off));
                            let r = if off == 6 {
                                crate::checksum::complete_partial_udp(&mut out, start, off)
                            } else {
                                crate::checksum::complete_partial(&mut out, start, off)
                            };
                            proptest::prop_assert!(r.is_ok());
                        }
                        assert_checksums(&out);
                        if port.0 != 0 && out.len() > 14 && out[12..14] == [0x08, 0x00] {
                            sent.push((out, *port));
                        }
                    }
                }
            }
            match steps.get(i) {
                Some(&Step::Wait(s)) => {
                    now = now.plus_secs(u64::from(s));
                    let (mut a, mut b) = (Vec::new(), Vec::new());
                    fast.table.expire(now, 0, &mut a);
                    full.table.expire(now, 0, &mut b);
                    proptest::prop_assert_eq!(a, b);
                    i += 1;
                }
                Some(&Step::Link(g, up)) => {
                    let g = GatewayId(g);
                    if up {
                        let a = fast.table.gateway_up(g, now, altroute_flow::Failback::Stay);
                        let b = full.table.gateway_up(g, now, altroute_flow::Failback::Stay);
                        proptest::prop_assert_eq!(a, b);
                    } else {
                        let a = fast.table.gateway_down(g, now, DownAction::Reset);
                        let b = full.table.gateway_down(g, now, DownAction::Reset);
                        proptest::prop_assert_eq!(a, b);
                    }
                    i += 1;
                }
                _ => {}
            }
        }
        let fast_frames = fast.counters.fast_path;
        fast.counters.fast_path = 0;
        proptest::prop_assert_eq!(&fast.counters, &full.counters);
        proptest::prop_assert_eq!(fast.table.stats(), full.table.stats());
        let (a, b): (Vec<_>, Vec<_>) = (fast.table.iter().collect(), full.table.iter().collect());
        proptest::prop_assert_eq!(a, b);
        proptest::prop_assert_eq!(full.counters.fast_path, 0);
        let _ = fast_frames;
    }
}

/// Opens TCP HOST:40000 -> SRV:443 through isp1, one frame at a time (SYN, SYN|ACK, ACK: the
/// full path), and returns its external address and port and the inside host's ACK frame.
fn open_tcp(c: &mut Context) -> ([u8; 4], u16, Vec<u8>) {
    let syn = tcp_frame(H_MAC, LAN_MAC, HOST, SRV, 40000, 443, SYN, 64);
    let (_, out) = run(c, &syn, 0);
    let (src, _, _) = ips(&out);
    let (sp, _) = ports(&out);
    run(
        c,
        &tcp_frame(G1_MAC, W1_MAC, SRV, src, 443, sp, SYN | ACK, 60),
        1,
    );
    let ack = tcp_frame(H_MAC, LAN_MAC, HOST, SRV, 40000, 443, ACK, 64);
    run(c, &ack, 0);
    (src, sp, ack)
}

/// The fast path does take the common case (else the test above would prove nothing): an
/// established TCP connection and a UDP flow, both directions, all on the fast path.
#[test]
fn fast_path_takes_established_flows() {
    let mut c = ctx((1, 0), None);
    let (src, sp, ack) = open_tcp(&mut c);
    let udp = udp_frame(H_MAC, LAN_MAC, HOST, SRV, 50000, 53);
    let (_, uout) = run(&mut c, &udp, 0);
    let (usp, _) = ports(&uout);
    assert_eq!(c.counters.fast_path, 0, "single frames take the full path");
    let back = tcp_frame(G1_MAC, W1_MAC, SRV, src, 443, sp, ACK, 60);
    let uback = udp_frame(G1_MAC, W1_MAC, SRV, src, 53, usp);
    let frames = [(ack, 0u8), (back, 1), (udp, 0), (uback, 1)];
    let (v, outs) = run_batch(&mut c, &frames, T);
    assert!(
        v.iter().all(|v| matches!(v, Verdict::Forward { .. })),
        "{v:?}"
    );
    assert_eq!(c.counters.fast_path, 4);
    for out in &outs {
        assert_checksums(out);
    }
}

/// The fast path keeps the checks that depend only on the flow in the flow's scratch, both
/// sides' once they have been seen; a pipeline taking over the table starts from nothing, since
/// its configuration may decide differently.
#[test]
fn fast_path_prepares_each_side_once_and_a_new_pipeline_forgets() {
    let mut c = ctx((1, 0), None);
    let (src, sp, ack) = open_tcp(&mut c);
    let key = FlowKey::v4(HOST.into(), SRV.into(), proto::TCP, 40000, 443);
    let id = c.table.lookup(&key).unwrap().flow;
    let scratch = |c: &Context| *c.table.flow(id).unwrap().scratch().unwrap();
    assert_eq!(
        scratch(&c),
        [0; altroute_flow::SCRATCH],
        "the full path stores nothing"
    );
    run_batch(&mut c, &[(ack.clone(), 0u8)], T);
    assert_eq!(c.counters.fast_path, 1);
    assert_eq!(scratch(&c)[0], 1, "the inside host's side is prepared");
    let back = tcp_frame(G1_MAC, W1_MAC, SRV, src, 443, sp, ACK, 60);
    run_batch(&mut c, &[(ack, 0u8), (back, 1)], T);
    assert_eq!(c.counters.fast_path, 3);
    assert_eq!(scratch(&c)[0], 3, "both sides are prepared");
    let cfg = c.config().clone();
    let c2 = Context::new(cfg, c.table).unwrap();
    assert_eq!(
        c2.table.flow(id).unwrap().scratch(),
        Some(&[0; altroute_flow::SCRATCH])
    );
}

/// A host whose frames start arriving on another LAN port (it moved, or there are two paths to
/// it) keeps the fast path: that side is worked out again for the new port, and every frame
/// leaves as the full path sends it.
#[test]
fn fast_path_follows_a_host_to_another_lan_port() {
    const LAN2_MAC: MacAddr = MacAddr([2, 0, 0, 0, 3, 1]);
    let two_lans = |fast: bool| {
        let c = ctx((1, 0), None);
        let mut cfg = c.config().clone();
        cfg.ports.push(PortSpec {
            name: "lan2".into(),
            role: Role::Lan,
            link: 3,
            vlan: None,
            mac: LAN2_MAC,
            addrs: vec![(Ipv4Addr::new(10, 1, 0, 1), 24)],
            mtu: 1500,
        });
        let mut c = Context::new(cfg, c.table).unwrap();
        c.set_fast_path(fast);
        c
    };
    let (mut fast, mut full) = (two_lans(true), two_lans(false));
    let mut outs = Vec::new();
    for c in [&mut fast, &mut full] {
        let (_, _, ack) = open_tcp(c);
        let moved = tcp_frame(H_MAC, LAN2_MAC, HOST, SRV, 40000, 443, ACK, 64);
        let mut o = Vec::new();
        for (frame, link) in [(ack.clone(), 0u8), (moved.clone(), 3), (moved, 3), (ack, 0)] {
            let (v, out) = run_batch(c, &[(frame, link)], T);
            assert!(matches!(v[0], Verdict::Forward { .. }), "{v:?}");
            o.push(out);
        }
        outs.push(o);
    }
    assert_eq!(outs[0], outs[1]);
    assert_eq!(fast.counters.fast_path, 4, "every frame, from either port");
    assert_eq!(full.counters.fast_path, 0);
}

/// The first-octet filter of the fast path covers every own, NAT, attached and private address
/// (a miss there would let the fast path skip a check the full path makes).
#[test]
fn special_first_octets_cover_every_checked_address() {
    let c = ctx((1, 1), None);
    for o in 0..=255u32 {
        let a = Ipv4Addr::from(o << 24 | 0x0001_0203);
        let b = Ipv4Addr::from(o << 24);
        let c_ = Ipv4Addr::from(o << 24 | 0x00ff_ffff);
        for x in [a, b, c_] {
            if c.is_own(x).is_some()
                || c.attached(x).is_some()
                || c.is_private(x)
                || c.ext.contains(&Some(x))
            {
                assert!(c.special_first[o as usize], "{x}");
            }
        }
    }
    for x in [
        HOST,
        SRV,
        EXT1,
        EXT2,
        [224, 0, 0, 1],
        [239, 1, 2, 3],
        [127, 0, 0, 1],
    ] {
        let x = Ipv4Addr::from(x);
        let special = c.is_own(x).is_some()
            || c.attached(x).is_some()
            || c.is_private(x)
            || c.ext.contains(&Some(x));
        assert!(
            !special || c.special_first[usize::from(x.octets()[0])],
            "{x}"
        );
    }
    assert!(
        !c.special_first[203],
        "documentation range 203.0.113.0/24 is not special"
    );
}

/// A gateway whose MAC is learned, not configured, and then changes (new hardware): the fast
/// path's cached gateway MACs follow the neighbour table at once.
#[test]
fn fast_path_follows_a_learned_gateway_mac() {
    let mut c = ctx_gw_macs((1, 0), None, [None, None]);
    let g1 = Ipv4Addr::new(192, 0, 2, 2);
    c.neighbors.learn(g1, G1_MAC, 1, T);
    let syn = tcp_frame(H_MAC, LAN_MAC, HOST, SRV, 40000, 443, SYN, 64);
    let (_, out) = run(&mut c, &syn, 0);
    assert_eq!(&out[..6], &G1_MAC.0);
    let (src, _, _) = ips(&out);
    let (sp, _) = ports(&out);
    let synack = tcp_frame(G2_MAC, W1_MAC, SRV, src, 443, sp, SYN | ACK, 60);
    run(&mut c, &synack, 1);
    let ack = tcp_frame(H_MAC, LAN_MAC, HOST, SRV, 40000, 443, ACK, 64);
    run(&mut c, &ack, 0); // established now
    let frames = [(ack.clone(), 0u8), (ack.clone(), 0)];
    let (_, outs) = run_batch(&mut c, &frames, T);
    assert_eq!(c.counters.fast_path, 2);
    assert!(outs.iter().all(|o| o[..6] == G1_MAC.0));
    let moved = MacAddr([2, 0, 0, 0, 0x99, 0x99]);
    c.neighbors.learn(g1, moved, 1, T);
    let (_, outs) = run_batch(&mut c, &frames, T);
    assert_eq!(c.counters.fast_path, 4);
    assert!(outs.iter().all(|o| o[..6] == moved.0), "{:02x?}", outs[0]);
}

/// Found by the `pipeline` fuzz target (its regressions/pipeline/ input): a TCP segment with TTL
/// 1 from the LAN in a buffer without room for the 82-byte time-exceeded answer. The frame was
/// counted twice (`ttl_expired` and `no_buffer`) and the ICMP error counted as sent; now it is
/// one `no_buffer` drop, and with room the answer goes out and counts as before.
#[test]
fn an_answer_that_does_not_fit_is_one_no_buffer_drop() {
    let hex = "020000000001b0002000a920080045000028000040000106\
               7bc4cb00710ac000020101bb9c4100001388000003e95012fe88fdcf0000";
    let frame: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    assert_eq!(frame.len(), 54);
    let mut c = ctx((1, 1), None);
    let mut buf = frame.clone();
    let v = c.process(&mut buf, frame.len(), 0, &mut FrameMeta::default(), T);
    assert_eq!(v, Verdict::Drop(DropReason::NoBuffer));
    assert_eq!(c.counters.drops.total(), 1, "{:?}", c.counters.drops);
    assert_eq!(c.counters.icmp_errors, 0);
    let mut buf = frame.clone();
    buf.resize(2048, 0);
    let v = c.process(&mut buf, frame.len(), 0, &mut FrameMeta::default(), T);
    assert_eq!(v, Verdict::Reply { len: 82 });
    assert_eq!(c.counters.drops.get(DropReason::TtlExpired), 1);
    assert_eq!(c.counters.drops.total(), 2);
    assert_eq!(c.counters.icmp_errors, 1);
}

/// What `rewrite_fixed` computed before it summed its terms once per field: `Delta`, one
/// ones'-complement addition at a time. The reference for the property below.
fn rewrite_by_delta(
    h: &mut [u8; 38],
    csum_at: usize,
    udp: bool,
    partial: bool,
    snat: Option<(Ipv4Addr, u16)>,
    dnat: Option<(Ipv4Addr, u16)>,
) {
    let r16 = |h: &[u8; 38], at: usize| u16::from_be_bytes([h[at], h[at + 1]]);
    let r32 = |h: &[u8; 38], at: usize| Ipv4Addr::new(h[at], h[at + 1], h[at + 2], h[at + 3]);
    let (old_src, old_dst) = (r32(h, 12), r32(h, 16));
    let (old_ttl, old_ip, old_l4) = (r16(h, 8), r16(h, 10), r16(h, csum_at));
    let (old_sport, old_dport) = (r16(h, 20), r16(h, 22));
    let mut d = Delta::NONE;
    let (mut src, mut dst, mut sport, mut dport) = (old_src, old_dst, old_sport, old_dport);
    if let Some((a, p)) = snat {
        d = d.then(Delta::new(old_src, a, old_sport, p));
        (src, sport) = (a, p);
    }
    if let Some((a, p)) = dnat {
        d = d.then(Delta::new(old_dst, a, old_dport, p));
        (dst, dport) = (a, p);
    }
    let new_ttl = old_ttl.wrapping_sub(0x0100);
    let ip = checksum::update16(d.apply_ip(old_ip), old_ttl, new_ttl);
    let l4 = if partial {
        d.apply_partial(old_l4)
    } else if udp {
        d.apply_udp(old_l4)
    } else {
        d.apply_tcp(old_l4)
    };
    h[8..10].copy_from_slice(&new_ttl.to_be_bytes());
    h[10..12].copy_from_slice(&ip.to_be_bytes());
    h[12..16].copy_from_slice(&src.octets());
    h[16..20].copy_from_slice(&dst.octets());
    h[20..22].copy_from_slice(&sport.to_be_bytes());
    h[22..24].copy_from_slice(&dport.to_be_bytes());
    h[csum_at..csum_at + 2].copy_from_slice(&l4.to_be_bytes());
}

/// 16-bit words rich in the values where ones'-complement carries happen.
fn edgy_word() -> impl Strategy<Value = u16> {
    proptest::prop_oneof![
        proptest::strategy::Just(0u16),
        proptest::strategy::Just(1),
        proptest::strategy::Just(0xfffe),
        proptest::strategy::Just(0xffff),
        proptest::prelude::any::<u16>(),
    ]
}

/// An IPv4 address and port for a NAT rewrite, from edgy words.
fn edgy_nat() -> impl Strategy<Value = Option<(Ipv4Addr, u16)>> {
    proptest::option::of((edgy_word(), edgy_word(), edgy_word()))
        .prop_map(|o| o.map(|(hi, lo, p)| (Ipv4Addr::from(u32::from(hi) << 16 | u32::from(lo)), p)))
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(8192))]

    /// The fast path's rewrite (terms summed, one fold per field) writes exactly what the
    /// one-addition-at-a-time `Delta` arithmetic writes, for TCP and UDP (zero checksum
    /// included), full and partial checksums, source, destination or both translated. Every
    /// header word, address and port is drawn from a set rich in 0x0000, 0x0001, 0xfffe and
    /// 0xffff, where carries and the two representations of zero would show a difference.
    #[test]
    fn summed_rewrite_equals_delta_arithmetic(
        words in proptest::collection::vec(edgy_word(), 19),
        udp in proptest::prelude::any::<bool>(),
        partial in proptest::prelude::any::<bool>(),
        snat in edgy_nat(),
        dnat in edgy_nat(),
    ) {
        let mut h = [0u8; 38];
        for (c, w) in h.chunks_exact_mut(2).zip(&words) {
            c.copy_from_slice(&w.to_be_bytes());
        }
        let csum_at = if udp { 26 } else { 36 };
        let mut want = h;
        rewrite_by_delta(&mut want, csum_at, udp, partial, snat, dnat);
        let kind = if udp { L4Sum::Udp } else { L4Sum::Tcp };
        rewrite_fixed(&mut h, csum_at, kind, partial, snat, dnat);
        proptest::prop_assert_eq!(h, want);
    }
}
