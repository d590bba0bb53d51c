//! The offload records against the pipeline: for established TCP and answered UDP flows the
//! pipeline's own output frame equals [`apply`] of the flow's record to the input (full
//! checksums, zero UDP checksums and "checksum not ready" frames), and every finished checksum
//! is valid. Checksums are recomputed here,
//! independently of `crate::checksum`.

use super::super::*;
use super::{OffloadRecord, apply, matches};
use crate::egress::PartialChecksum;
use crate::testutil::ones;
use altroute_flow::tcp::flags::{ACK, FIN, SYN};
use altroute_flow::{FlowId, proto};
use etherparse::PacketBuilder;

// The router of the pipeline's own tests (its port forward is inbound only: no outbound flow
// here is affected).
use crate::pipeline::tests::{G1_MAC, G2_MAC, LAN_MAC, SRV, T, W1_MAC, W2_MAC};

fn ctx(weights: (u32, u32)) -> Context {
    crate::pipeline::tests::ctx(weights, None)
}

#[allow(clippy::too_many_arguments)]
fn tcp(
    src_mac: MacAddr,
    dst_mac: MacAddr,
    src: [u8; 4],
    dst: [u8; 4],
    sp: u16,
    dp: u16,
    flags: u8,
    ttl: u8,
    payload: &[u8],
) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(src_mac.0, dst_mac.0)
        .ipv4(src, dst, ttl)
        .tcp(sp, dp, 1000, 64000);
    let b = if flags & SYN != 0 { b.syn() } else { b };
    let b = if flags & ACK != 0 { b.ack(77) } else { b };
    let b = if flags & FIN != 0 { b.fin() } else { b };
    let mut v = Vec::new();
    b.write(&mut v, payload).expect("build");
    v
}

fn udp(
    src_mac: MacAddr,
    dst_mac: MacAddr,
    (src, dst, sp, dp): ([u8; 4], [u8; 4], u16, u16),
    ttl: u8,
    payload: &[u8],
    zero_checksum: bool,
) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(src_mac.0, dst_mac.0)
        .ipv4(src, dst, ttl)
        .udp(sp, dp);
    let mut v = Vec::new();
    b.write(&mut v, payload).expect("build");
    if zero_checksum {
        v[40..42].copy_from_slice(&[0, 0]);
    }
    v
}

/// Offset of the L4 checksum field in an untagged option-less IPv4 frame.
fn l4_csum_at(f: &[u8]) -> usize {
    if f[23] == proto::UDP { 40 } else { 50 }
}

fn pseudo(f: &[u8]) -> u32 {
    let total = usize::from(u16::from_be_bytes([f[16], f[17]]));
    let mut s = u32::from(f[23]) + (total as u32 - 20);
    for w in f[26..34].chunks(2) {
        s += u32::from(w[0]) << 8 | u32::from(w[1]);
    }
    s
}

/// The frame as veth hands it over from a local sender: the TCP/UDP field holds the folded
/// pseudo-header sum.
fn make_partial(f: &mut [u8]) {
    let s = ones(&[], pseudo(f));
    let at = l4_csum_at(f);
    f[at..at + 2].copy_from_slice(&s.to_be_bytes());
}

/// Finishes a partial checksum as the NIC or segmentation would (UDP: a zero result is sent as
/// `0xffff`).
fn finish_partial(f: &mut [u8]) {
    let at = l4_csum_at(f);
    let init = u32::from(u16::from_be_bytes([f[at], f[at + 1]]));
    f[at..at + 2].copy_from_slice(&[0, 0]);
    let mut c = !ones(&f[34..], init);
    if c == 0 && f[23] == proto::UDP {
        c = 0xffff;
    }
    f[at..at + 2].copy_from_slice(&c.to_be_bytes());
}

/// IPv4 and L4 checksums valid (a zero UDP checksum: none, valid).
fn checksums_valid(f: &[u8]) -> bool {
    let at = l4_csum_at(f);
    ones(&f[14..34], 0) == 0xffff
        && ((f[23] == proto::UDP && f[at..at + 2] == [0, 0]) || ones(&f[34..], pseudo(f)) == 0xffff)
}

/// Same one's-complement value (0x0000 and 0xffff are both zero).
fn same_sum(a: u16, b: u16) -> bool {
    a == b || (a.is_multiple_of(0xffff) && b.is_multiple_of(0xffff))
}

fn process(c: &mut Context, frame: &[u8], link: u8, partial: bool) -> (Verdict, Vec<u8>) {
    let mut buf = frame.to_vec();
    buf.resize(frame.len() + 64, 0);
    let mut meta = TxOffload {
        partial: partial.then_some(PartialChecksum {
            start: 34,
            offset: if frame[23] == proto::UDP { 6 } else { 16 },
        }),
        gso: None,
    };
    let v = c.process(&mut buf, frame.len(), link, &mut meta, T);
    if let Verdict::Forward { len, .. } = v {
        buf.truncate(len);
    }
    (v, buf)
}

/// Where a forwarded first packet `out` (sent by `port`) went: its NAT address and port, and the
/// gateway's and our MAC on that WAN, to build the answer from.
fn outside(out: &[u8], port: PortId) -> Option<([u8; 4], u16, MacAddr, MacAddr)> {
    let ext: [u8; 4] = out.get(26..30)?.try_into().ok()?;
    let eport = u16::from_be_bytes([*out.get(34)?, *out.get(35)?]);
    let (gw, wan) = if port.0 == 1 {
        (G1_MAC, W1_MAC)
    } else {
        (G2_MAC, W2_MAC)
    };
    Some((ext, eport, gw, wan))
}

/// An established flow from `host:sport` to the server: its id, NAT address, port, out link.
fn establish(c: &mut Context, host: [u8; 4], hmac: MacAddr, sport: u16) -> Option<(FlowId, u8)> {
    let syn = tcp(hmac, LAN_MAC, host, SRV, sport, 443, SYN, 64, &[]);
    let (v, out) = process(c, &syn, 0, false);
    let Verdict::Forward { port, .. } = v else {
        return None;
    };
    let (ext, eport, gw, wan) = outside(&out, port)?;
    let synack = tcp(gw, wan, SRV, ext, 443, eport, SYN | ACK, 64, &[]);
    assert!(matches!(
        process(c, &synack, port.0, false).0,
        Verdict::Forward { .. }
    ));
    let ack = tcp(hmac, LAN_MAC, host, SRV, sport, 443, ACK, 64, &[]);
    assert!(matches!(
        process(c, &ack, 0, false).0,
        Verdict::Forward { .. }
    ));
    let key = altroute_flow::FlowKey::v4(
        Ipv4Addr::from(host),
        Ipv4Addr::from(SRV),
        proto::TCP,
        sport,
        443,
    );
    let hit = c.table.lookup(&key)?;
    Some((hit.flow, port.0))
}

/// An answered UDP flow from `host:sport` to the server: its id and out link.
fn establish_udp(
    c: &mut Context,
    host: [u8; 4],
    hmac: MacAddr,
    sport: u16,
) -> Option<(FlowId, u8)> {
    let first = udp(hmac, LAN_MAC, (host, SRV, sport, 53), 64, b"q", false);
    let (v, out) = process(c, &first, 0, false);
    let Verdict::Forward { port, .. } = v else {
        return None;
    };
    let (ext, eport, gw, wan) = outside(&out, port)?;
    let key = altroute_flow::FlowKey::v4(
        Ipv4Addr::from(host),
        Ipv4Addr::from(SRV),
        proto::UDP,
        sport,
        53,
    );
    let id = c.table.lookup(&key)?.flow;
    let answer = udp(gw, wan, (SRV, ext, 53, eport), 64, b"a", false);
    assert!(matches!(
        process(c, &answer, port.0, false).0,
        Verdict::Forward { .. }
    ));
    assert!(c.table.iter().any(|f| f.id == id && f.replied));
    Some((id, port.0))
}

/// A data frame of direction `rec` (as it arrives); UDP with a zero checksum if `zero`.
fn data_frame(rec: &OffloadRecord, src_mac: MacAddr, ttl: u8, payload: &[u8]) -> Vec<u8> {
    data_frame_z(rec, src_mac, ttl, payload, false)
}

fn data_frame_z(
    rec: &OffloadRecord,
    src_mac: MacAddr,
    ttl: u8,
    payload: &[u8],
    zero: bool,
) -> Vec<u8> {
    let in_mac = match rec.in_port.0 {
        0 => LAN_MAC,
        1 => W1_MAC,
        _ => W2_MAC,
    };
    if rec.proto == proto::UDP {
        let t = (rec.src.octets(), rec.dst.octets(), rec.sport, rec.dport);
        return udp(src_mac, in_mac, t, ttl, payload, zero);
    }
    tcp(
        src_mac,
        in_mac,
        rec.src.octets(),
        rec.dst.octets(),
        rec.sport,
        rec.dport,
        ACK,
        ttl,
        payload,
    )
}

/// The pipeline's output for `input` against `apply(rec, input)`.
fn check(c: &mut Context, rec: &OffloadRecord, input: &[u8], partial: bool) {
    let mut input = input.to_vec();
    if partial {
        make_partial(&mut input);
    }
    let mut expect = input.clone();
    assert!(apply(rec, &mut expect, partial), "record matches");
    let (v, mut got) = process(c, &input, rec.in_link, partial);
    assert!(
        matches!(v, Verdict::Forward { port, .. } if port == rec.out_port),
        "{v:?}"
    );
    assert_eq!(got.len(), expect.len());
    // Byte-identical except the checksum fields, which must be the same one's-complement value.
    let l4 = l4_csum_at(&input);
    let mask = |f: &[u8]| {
        let mut f = f.to_vec();
        f[24..26].copy_from_slice(&[0, 0]);
        f[l4..l4 + 2].copy_from_slice(&[0, 0]);
        f
    };
    assert_eq!(mask(&got), mask(&expect));
    if rec.proto == proto::UDP {
        // Zero ("no checksum") in, zero out; never zero otherwise.
        let zero = |f: &[u8]| f[l4..l4 + 2] == [0, 0];
        assert_eq!(zero(&got), zero(&input), "pipeline: UDP zero checksum rule");
        assert_eq!(
            zero(&expect),
            zero(&input),
            "record: UDP zero checksum rule"
        );
    }
    for at in [24, l4] {
        let (a, b) = (
            u16::from_be_bytes([got[at], got[at + 1]]),
            u16::from_be_bytes([expect[at], expect[at + 1]]),
        );
        assert!(
            same_sum(a, b),
            "checksum at {at}: pipeline {a:04x}, record {b:04x}"
        );
    }
    if partial {
        finish_partial(&mut got);
        finish_partial(&mut expect);
    }
    assert!(checksums_valid(&got), "pipeline output checksums");
    assert!(checksums_valid(&expect), "record output checksums");
}

#[test]
fn records_of_an_established_flow() {
    let mut c = ctx((1, 0));
    let hmac = MacAddr([2, 0, 0, 0, 0, 0x22]);
    let (id, wan) = establish(&mut c, [10, 0, 0, 2], hmac, 40000).expect("established");
    let [orig, reply] = c.offload_records(id).expect("offloadable");
    assert_eq!((orig.in_port, orig.out_port), (PortId(0), PortId(wan)));
    assert_eq!((reply.in_port, reply.out_port), (PortId(wan), PortId(0)));
    assert_eq!(orig.new_src, reply.dst);
    assert_eq!(orig.new_sport, reply.dport);
    assert_eq!(reply.new_dst, Ipv4Addr::new(10, 0, 0, 2));
    assert_eq!(reply.dst_mac, hmac);
    assert_eq!(orig.dst_mac, G1_MAC);
    check(&mut c, &orig, &data_frame(&orig, hmac, 64, b"abc"), false);
    check(
        &mut c,
        &reply,
        &data_frame(&reply, G1_MAC, 64, b"xyz--payload"),
        true,
    );
    // SYN/FIN/RST, TTL 1 and other tuples are not taken.
    let mut f = data_frame(&orig, hmac, 64, b"");
    assert!(matches(&orig, &f));
    f[47] |= 0x01;
    assert!(!matches(&orig, &f));
    assert!(!matches(&orig, &data_frame(&orig, hmac, 1, b"")));
    assert!(!matches(&reply, &data_frame(&orig, hmac, 64, b"")));
}

#[test]
fn records_of_an_answered_udp_flow() {
    let mut c = ctx((1, 0));
    let hmac = MacAddr([2, 0, 0, 0, 0, 0x23]);
    let (id, wan) = establish_udp(&mut c, [10, 0, 0, 4], hmac, 5353).expect("answered");
    let [orig, reply] = c.offload_records(id).expect("offloadable");
    assert_eq!((orig.proto, reply.proto), (proto::UDP, proto::UDP));
    assert_eq!((orig.in_port, orig.out_port), (PortId(0), PortId(wan)));
    assert_eq!(orig.new_sport, reply.dport);
    for partial in [false, true] {
        check(
            &mut c,
            &orig,
            &data_frame(&orig, hmac, 64, b"abcdefghijkl"),
            partial,
        );
        check(
            &mut c,
            &reply,
            &data_frame(&reply, G1_MAC, 9, b"xyz--payload"),
            partial,
        );
    }
    for rec in [&orig, &reply] {
        let src = if rec.in_port.0 == 0 { hmac } else { G1_MAC };
        check(
            &mut c,
            rec,
            &data_frame_z(rec, src, 64, b"zero checksum", true),
            false,
        );
    }
    // A TCP frame with the same tuple, TTL 1 and short frames are not taken.
    let mut f = data_frame(&orig, hmac, 64, b"0123456789ab");
    assert!(matches(&orig, &f));
    f[23] = proto::TCP;
    assert!(!matches(&orig, &f));
    assert!(!matches(
        &orig,
        &data_frame(&orig, hmac, 1, b"0123456789ab")
    ));
    assert!(!matches(&orig, &data_frame(&orig, hmac, 64, b"short")));
}

/// Every non-zero UDP checksum stays non-zero through `apply` (a result of zero is written as
/// `0xffff`, as `BPF_F_MARK_MANGLED_0` does) and verifies after the rewrite.
#[test]
fn udp_apply_never_writes_a_zero_checksum() {
    let mut c = ctx((1, 0));
    let hmac = MacAddr([2, 0, 0, 0, 0, 0x24]);
    let (id, _) = establish_udp(&mut c, [10, 0, 0, 5], hmac, 6000).expect("answered");
    let [orig, _] = c.offload_records(id).expect("offloadable");
    let base = data_frame(&orig, hmac, 64, b"0123456789abcdef");
    let valid = u16::from_be_bytes([base[40], base[41]]);
    let mut mangled = 0;
    for csum in 1..=0xffffu16 {
        let mut f = base.clone();
        f[40..42].copy_from_slice(&csum.to_be_bytes());
        assert!(apply(&orig, &mut f, false));
        let out = u16::from_be_bytes([f[40], f[41]]);
        assert_ne!(out, 0, "input checksum {csum:04x}");
        if out == 0xffff {
            mangled += 1;
        }
        if csum == valid {
            assert!(checksums_valid(&f));
        }
    }
    // The input whose result would be 0 was among them.
    assert!(mangled >= 1);
}

#[test]
fn no_records_before_established_or_after_fin() {
    let mut c = ctx((1, 1));
    let hmac = MacAddr([2, 0, 0, 0, 0, 0x22]);
    let syn = tcp(hmac, LAN_MAC, [10, 0, 0, 2], SRV, 40001, 443, SYN, 64, &[]);
    assert!(matches!(
        process(&mut c, &syn, 0, false).0,
        Verdict::Forward { .. }
    ));
    let key = altroute_flow::FlowKey::v4(
        Ipv4Addr::new(10, 0, 0, 2),
        Ipv4Addr::from(SRV),
        proto::TCP,
        40001,
        443,
    );
    let hit = c.table.lookup(&key).expect("flow");
    assert!(c.offload_records(hit.flow).is_none(), "SYN sent only");
    let (id, _) = establish(&mut c, [10, 0, 0, 3], hmac, 40002).expect("established");
    assert!(c.offload_records(id).is_some());
    let fin = tcp(
        hmac,
        LAN_MAC,
        [10, 0, 0, 3],
        SRV,
        40002,
        443,
        FIN | ACK,
        64,
        &[],
    );
    assert!(matches!(
        process(&mut c, &fin, 0, false).0,
        Verdict::Forward { .. }
    ));
    assert!(c.offload_records(id).is_none(), "closing");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(crate::testutil::cases(64)))]

    /// For established flows the pipeline's output equals `apply(record, input)`, with full
    /// checksums and with "checksum not ready" frames, and the checksums stay valid.
    #[test]
    fn pipeline_output_is_apply_of_the_record(
        weights in (0u32..4, 1u32..4),
        flows in proptest::collection::vec(
            (2u8..250, 1024u16..65535, proptest::bool::ANY),
            1..6,
        ),
        packets in proptest::collection::vec(
            (0usize..6, proptest::bool::ANY, 2u8..=255, 0u8..3,
             proptest::collection::vec(proptest::num::u8::ANY, 0..300)),
            1..40,
        ),
    ) {
        let mut c = ctx(weights);
        let mut recs = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (h, sport, is_udp) in flows {
            // One MAC per host: a host that changes its MAC invalidates its flows' records
            // (the daemon recomputes them; here it would just be a stale record).
            let hmac = MacAddr([2, 0, 0, 0, 1, h]);
            if !seen.insert((h, sport, is_udp)) {
                continue;
            }
            let flow = if is_udp {
                establish_udp(&mut c, [10, 0, 0, h], hmac, sport)
            } else {
                establish(&mut c, [10, 0, 0, h], hmac, sport)
            };
            if let Some((id, _)) = flow {
                let [o, r] = c.offload_records(id).expect("established flows are offloadable");
                let gw = if o.out_port.0 == 1 { G1_MAC } else { G2_MAC };
                recs.push((o, hmac));
                recs.push((r, gw));
            }
        }
        proptest::prop_assert!(!recs.is_empty());
        // Checksum: 0 full, 1 "not ready" (partial), 2 UDP without one (zero; TCP: full).
        for (n, reply, ttl, csum, payload) in packets {
            let (rec, src_mac) = recs[(n * 2 + usize::from(reply)) % recs.len()];
            let f = data_frame_z(&rec, src_mac, ttl, &payload, csum == 2);
            if f.len() < 54 {
                // A UDP frame shorter than the 54 bytes the programs read stays in user space.
                proptest::prop_assert!(!matches(&rec, &f));
                continue;
            }
            check(&mut c, &rec, &f, csum == 1);
        }
    }
}
