//! Shared test helpers: etherparse as the oracle for the fast and slow parsers.
#![allow(dead_code, clippy::unwrap_used)]

use altroute_flow::proto;
use altroute_packet::fast::{FastFrame, IcmpQuery};
use altroute_packet::slow::{SlowFrame, SlowKind, SlowL4};
use etherparse::{Icmpv4Type, LinkExtSlice, NetSlice, SlicedPacket, TransportSlice};

/// Offset of `inner` inside `outer` (both slices of the same frame).
fn offset_in(outer: &[u8], inner: &[u8]) -> usize {
    inner.as_ptr() as usize - outer.as_ptr() as usize
}

/// Checks that etherparse agrees on every field the fast path reported.
pub fn fast_agrees(frame: &[u8], m: &FastFrame) -> Result<(), String> {
    let sp = SlicedPacket::from_ethernet(frame)
        .map_err(|e| format!("fast path accepted, etherparse refused: {e:?}"))?;
    // VLAN
    match (sp.link_exts.as_slice(), m.vlan) {
        ([], None) => {}
        ([LinkExtSlice::Vlan(v)], Some(t)) => {
            let s = v.header_slice();
            let tci = u16::from_be_bytes([s[0], s[1]]);
            if tci != t.0 {
                return Err(format!("vlan tci {tci:#x} vs {:#x}", t.0));
            }
        }
        (e, t) => return Err(format!("link exts {e:?} vs vlan {t:?}")),
    }
    let Some(NetSlice::Ipv4(ip)) = &sp.net else {
        return Err(format!("etherparse net: {:?}", sp.net));
    };
    let h = ip.header();
    let k = &m.key;
    let checks = [
        (
            "l3 offset",
            offset_in(frame, h.slice()),
            usize::from(m.l3_offset),
        ),
        ("ihl", h.slice().len(), 20),
        (
            "total_len",
            usize::from(h.total_len()),
            usize::from(m.ip_total_len),
        ),
        ("ttl", usize::from(h.ttl()), usize::from(m.ttl)),
        ("proto", usize::from(h.protocol().0), usize::from(m.proto)),
        ("key proto", usize::from(k.proto), usize::from(m.proto)),
        (
            "l4 offset",
            offset_in(frame, ip.payload().payload),
            m.l4_offset(),
        ),
        ("fragmented", usize::from(sp.is_ip_payload_fragmented()), 0),
    ];
    for (what, a, b) in checks {
        if a != b {
            return Err(format!("{what}: etherparse {a} vs fast {b}"));
        }
    }
    if k.src_v4() != Some(h.source_addr()) || k.dst_v4() != Some(h.destination_addr()) {
        return Err(format!(
            "addresses: {:?}/{:?} vs {k}",
            h.source_addr(),
            h.destination_addr()
        ));
    }
    let (sport, dport, flags, icmp) = match &sp.transport {
        Some(TransportSlice::Tcp(t)) => (
            t.source_port(),
            t.destination_port(),
            t.slice()[13],
            IcmpQuery::None,
        ),
        Some(TransportSlice::Udp(u)) => (u.source_port(), u.destination_port(), 0, IcmpQuery::None),
        Some(TransportSlice::Icmpv4(i)) => match i.icmp_type() {
            Icmpv4Type::EchoRequest(e) => (e.id, 0, 0, IcmpQuery::Request),
            Icmpv4Type::EchoReply(e) => (0, e.id, 0, IcmpQuery::Reply),
            t => return Err(format!("fast accepted icmp {t:?}")),
        },
        t => return Err(format!("etherparse transport {t:?}")),
    };
    if (sport, dport, flags, icmp) != (k.sport, k.dport, m.tcp_flags.0, m.icmp) {
        return Err(format!(
            "l4: etherparse {sport} {dport} {flags:#x} {icmp:?} vs fast {k} {:?} {:?}",
            m.tcp_flags, m.icmp
        ));
    }
    Ok(())
}

/// Checks the slow path's key against etherparse for unfragmented TCP/UDP/echo it accepted.
pub fn slow_agrees(frame: &[u8], s: &SlowFrame) -> Result<(), String> {
    let SlowKind::Ipv4(ip) = &s.kind else {
        return Ok(());
    };
    if ip.is_fragment() {
        return Ok(());
    }
    let key = match ip.l4 {
        SlowL4::Tcp { key, .. } | SlowL4::Udp { key } | SlowL4::IcmpQuery { key, .. } => key,
        _ => return Ok(()),
    };
    let sp = SlicedPacket::from_ethernet(frame)
        .map_err(|e| format!("slow path accepted, etherparse refused: {e:?}"))?;
    let Some(NetSlice::Ipv4(v4)) = &sp.net else {
        return Err(format!("etherparse net: {:?}", sp.net));
    };
    if offset_in(frame, v4.header().slice()) != s.l3_offset
        || offset_in(frame, v4.payload().payload) != ip.l4_offset
    {
        return Err("offsets".into());
    }
    let (sp_, dp) = match &sp.transport {
        Some(TransportSlice::Tcp(t)) => (t.source_port(), t.destination_port()),
        Some(TransportSlice::Udp(u)) => (u.source_port(), u.destination_port()),
        Some(TransportSlice::Icmpv4(i)) => match i.icmp_type() {
            Icmpv4Type::EchoRequest(e) => (e.id, 0),
            Icmpv4Type::EchoReply(e) => (0, e.id),
            t => return Err(format!("icmp {t:?}")),
        },
        t => return Err(format!("etherparse transport {t:?}")),
    };
    if (sp_, dp) != (key.sport, key.dport)
        || key.src_v4() != Some(v4.header().source_addr())
        || key.dst_v4() != Some(v4.header().destination_addr())
        || (key.proto != proto::ICMP && key.proto != v4.header().protocol().0)
    {
        return Err(format!("slow key {key} vs etherparse {sp_} {dp}"));
    }
    Ok(())
}

/// The number of cases of a property test: `PROPTEST_CASES` when set (as for the tests that take
/// proptest's default configuration), else `default`. `ProptestConfig::with_cases(n)` alone
/// ignores the variable.
pub fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
