//! Pipeline unit tests: frames built with etherparse, results checked with etherparse and with a
//! checksum recompute written here (independent of `crate::checksum`).
#![allow(clippy::too_many_arguments)]

use super::rewrite::{L4Sum, rewrite_fixed};
use super::*;
use crate::checksum::{self, Delta};
use crate::egress::PartialChecksum;
use crate::testutil::ones;
use altroute_flow::tcp::flags::{ACK, RST, SYN};
use altroute_flow::{DownAction, Gateway, GatewaySet, TableConfig, Time, proto};
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
    let mut meta = TxOffload::default();
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
    let with_meta: Vec<(Vec<u8>, u8, TxOffload)> = frames
        .iter()
        .map(|(f, l)| (f.clone(), *l, TxOffload::default()))
        .collect();
    let (v, o, _) = run_batch_meta(c, &with_meta, now);
    (v, o)
}

/// [`run_batch`] with each frame's offload metadata; also returns the metadata after processing.
fn run_batch_meta(
    c: &mut Context,
    frames: &[(Vec<u8>, u8, TxOffload)],
    now: Time,
) -> (Vec<Verdict>, Vec<Vec<u8>>, Vec<TxOffload>) {
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
            offload: *meta,
        })
        .collect();
    let mut verdicts = vec![Verdict::default(); pkts.len()];
    c.process_batch(&mut pkts, now, &mut verdicts);
    let metas = pkts.iter().map(|p| p.offload).collect();
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
fn make_partial(f: &mut [u8]) -> Option<TxOffload> {
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
    Some(TxOffload {
        partial: Some(PartialChecksum {
            start: l4 as u16,
            offset: off as u16,
        }),
        gso: None,
    })
}

/// Checks every checksum of an Ethernet/IPv4 frame by full recompute (other frames: nothing to
/// check).
fn assert_checksums(frame: &[u8]) {
    let l3 = if frame[12..14] == [0x81, 0x00] {
        18
    } else {
        14
    };
    if frame[l3 - 2..l3] != [0x08, 0x00] {
        return;
    }
    let ip = &frame[l3..];
    let ihl = usize::from(ip[0] & 15) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    assert_eq!(ones(&ip[..ihl], 0), 0xffff, "IPv4 header checksum");
    let l4 = &ip[ihl..total];
    if u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0 {
        return; // a fragment: its L4 checksum covers the whole datagram
    }
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

mod fast_path;
mod hostile;
mod local;
mod nat;
mod props;
mod rewrite;

/// Found by the `pipeline` fuzz target (fuzz/regressions/pipeline/answer-without-room): a TCP
/// segment with TTL 1 from the LAN in a buffer without room for its time-exceeded answer. The
/// frame was counted twice (`ttl_expired` and `no_buffer`) and the ICMP error counted as sent;
/// now it is one `no_buffer` drop, and with room the answer goes out and counts as before.
#[test]
fn an_answer_that_does_not_fit_is_one_no_buffer_drop() {
    let frame = tcp_frame(H_MAC, LAN_MAC, HOST, SRV, 40000, 443, ACK, 1);
    let mut c = ctx((1, 1), None);
    let mut buf = frame.clone();
    let v = c.process(&mut buf, frame.len(), 0, &mut TxOffload::default(), T);
    assert_eq!(v, Verdict::Drop(DropReason::NoBuffer));
    assert_eq!(c.counters.drops.total(), 1, "{:?}", c.counters.drops);
    assert_eq!(c.counters.icmp_errors, 0);
    let mut buf = frame.clone();
    buf.resize(2048, 0);
    let v = c.process(&mut buf, frame.len(), 0, &mut TxOffload::default(), T);
    assert!(
        matches!(v, Verdict::Reply { len } if len > frame.len()),
        "{v:?}"
    );
    assert_eq!(c.counters.drops.get(DropReason::TtlExpired), 1);
    assert_eq!(c.counters.drops.total(), 2);
    assert_eq!(c.counters.icmp_errors, 1);
}
mod traffic;
