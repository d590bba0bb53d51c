//! One inside host cannot take the table down (issue 16 §1): per-source limits of flows and NAT
//! ports, unanswered (embryonic) flows, early drop of the heaviest sources' unanswered flows, and
//! the per-source books kept right under any sequence of operations.

use super::*;
use std::collections::{BTreeSet, HashMap, HashSet};

/// One worker's table as the daemon sizes it by default: `limits.max_flows` 2^20 over 2 workers.
const DAEMON_TABLE: u32 = (1 << 20) / 2;

/// Worker 0 of 2, two gateways with NAT, `max_flows` flows and default limits.
fn worker_cfg(max_flows: u32) -> TableConfig {
    TableConfig {
        max_flows,
        nat: NatConfig {
            partition: PortPartition::new((1024, 65535), 64, 2, 0).unwrap(),
            cooldown_secs: 120,
        },
        ..two_gw((1, 1))
    }
}

/// A SYN from the inside: the existing flow's retransmission, or a new flow.
fn syn(t: &mut FlowTable, k: FlowKey, now: Time) -> Result<Hit, InsertError> {
    let h = match t.lookup(&k) {
        Some(h) => h,
        None => t.insert(k, now, true, SYN)?.0,
    };
    t.update(h, now, SYN, 60);
    Ok(h)
}

/// A connection opened and answered at once (SYN, SYN/ACK, ACK).
fn handshake(t: &mut FlowTable, k: FlowKey, now: Time) -> Result<Hit, InsertError> {
    let h = syn(t, k, now)?;
    let r = t
        .lookup(&reply_of(t, h))
        .expect("the reply key finds the flow");
    assert_eq!(t.update(r, now, SYN | ACK, 60), Update::Forward);
    t.update(h, now, ACK, 52);
    Ok(h)
}

/// A packet each way on an established connection, through the fast path; panics if the
/// connection is gone or no longer established.
fn keep_alive(t: &mut FlowTable, k: &FlowKey, now: Time) {
    let h = t
        .lookup(k)
        .unwrap_or_else(|| panic!("established {k} was evicted"));
    assert_eq!(t.flow(h.flow).unwrap().tcp(), TcpState::Established);
    assert!(t.established(h, ACK).is_some());
    t.touch(h, now, 1400);
    let r = t.lookup(&reply_of(t, h)).unwrap();
    assert!(t.established(r, ACK).is_some());
    t.touch(r, now, 1400);
}

fn host(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, 10 + i)
}

/// What a flood left behind.
struct Flooded {
    t: FlowTable,
    /// The well-behaved hosts' connections, all established.
    legit: Vec<FlowKey>,
    now: Time,
    /// The flooders' SYNs refused (each answered with ICMP 3/13 by the pipeline).
    refused: u64,
    /// Each flooder's (flows, ports, unanswered) after each second, the highest seen.
    peak: HashMap<Ipv4Addr, (u32, u32, u32)>,
}

/// `flooders` send `syns` unanswered SYNs in all over `secs` seconds, in turn, each counting its
/// source port up (as `hping3 -S --flood` does), to one server port; meanwhile 10 hosts each open
/// a connection every 100 ms, answered at once, and keep every one of them busy (a packet each
/// way every second); expiry runs every second. Asserts as it goes that each of the 10 hosts'
/// connections opens and stays established, and that every refusal is a resource limit.
fn flood(cfg: TableConfig, flooders: &[Ipv4Addr], syns: u32, secs: u32) -> Flooded {
    let mut t = table(cfg);
    let mut legit = Vec::new();
    let mut next_port = [40_000u16; 10];
    let mut refused = 0;
    let mut peak: HashMap<Ipv4Addr, (u32, u32, u32)> = HashMap::new();
    let per_ms = syns / (secs * 1000);
    let mut n = 0u32;
    let mut now = T0;
    for ms in 0..u64::from(secs) * 1000 {
        now = T0.plus_millis(ms);
        for _ in 0..per_ms {
            let who = flooders[n as usize % flooders.len()];
            let sport = 1024 + (n / flooders.len() as u32 % 64_512) as u16;
            let k = FlowKey::v4(who, SRV, proto::TCP, sport, 80);
            if let Err(e) = syn(&mut t, k, now) {
                assert!(e.is_resource_limit(), "{e}");
                refused += 1;
            }
            n += 1;
        }
        if ms % 100 == 0 {
            for (i, p) in next_port.iter_mut().enumerate() {
                let k = FlowKey::v4(host(i as u8), Ipv4Addr::new(203, 0, 113, 20), 6, *p, 443);
                *p += 1;
                handshake(&mut t, k, now)
                    .unwrap_or_else(|e| panic!("host {i} refused at {ms} ms: {e}"));
                legit.push(k);
            }
        }
        if ms % 1000 == 999 {
            for k in &legit {
                keep_alive(&mut t, k, now);
            }
            t.expire(now, usize::MAX, &mut Vec::new());
            for &f in flooders {
                let u = t.source_usage(f.into()).unwrap_or_default();
                let p = peak.entry(f).or_default();
                *p = (p.0.max(u.flows), p.1.max(u.ports), p.2.max(u.unanswered));
            }
        }
    }
    Flooded {
        t,
        legit,
        now,
        refused,
        peak,
    }
}

/// After a flood: `secs` more seconds of the 10 hosts opening a connection each every second
/// and keeping all of theirs busy, expiry every second.
fn carry_on(f: &mut Flooded, secs: u64) {
    for port in (50_000u16..).take(secs as usize) {
        f.now = f.now.plus_secs(1);
        for i in 0..10 {
            let k = FlowKey::v4(host(i), Ipv4Addr::new(203, 0, 113, 21), 6, port, 443);
            handshake(&mut f.t, k, f.now).unwrap_or_else(|e| panic!("host {i} refused: {e}"));
            f.legit.push(k);
        }
        for k in &f.legit {
            keep_alive(&mut f.t, k, f.now);
        }
        f.t.expire(f.now, usize::MAX, &mut Vec::new());
    }
}

/// NAT ports free for TCP on both gateways.
fn free_tcp(t: &FlowTable) -> u32 {
    (0..2)
        .map(|g| t.nat_free_ports(GatewayId(g), proto::TCP).unwrap())
        .sum()
}

/// Issue 16: 70,000 unanswered SYNs from one host in 7 s, into a table of the daemon's default
/// size per worker, while 10 hosts open and keep connections.
#[test]
fn one_host_flooding_syns_is_held_at_its_limit_and_no_one_else_notices() {
    let flooder = Ipv4Addr::new(10, 0, 0, 66);
    let mut f = flood(worker_cfg(DAEMON_TABLE), &[flooder], 70_000, 7);
    let limits = f.t.limits();
    // Worker 0 of 2 owns 32,256 of the range's ports per pool: a quarter per host.
    assert_eq!(limits.ports_per_source, Some(8064));
    assert_eq!(limits.flows_per_source, Some(65_536));
    let held = f.t.source_usage(flooder.into()).unwrap();
    assert_eq!(
        held,
        SourceUsage {
            flows: 8064,
            ports: 8064,
            unanswered: 8064
        },
        "the flooder is held at its port limit"
    );
    assert_eq!(f.peak[&flooder], (8064, 8064, 8064), "and never beyond it");
    let st = *f.t.stats();
    assert_eq!(st.refused_source_ports, f.refused);
    assert!(f.refused > 55_000, "{} refused", f.refused);
    assert_eq!(st.refused_source_flows, 0);
    assert_eq!((st.refused_full, st.early_dropped), (0, 0));
    // The flooder's SYNs expire after the embryonic timeout; everyone else carries on.
    carry_on(&mut f, 125);
    assert_eq!(f.t.source_usage(flooder.into()), None, "flood gone");
    assert_eq!(f.t.stats().embryonic_expired, 8064);
    assert_eq!(f.t.len(), f.legit.len());
    // No NAT port leaked: the flood's (never answered) mappings went back at once...
    let legit_ports: u32 = f.t.sources().map(|(_, u)| u.ports).sum();
    assert_eq!(legit_ports as usize, f.legit.len());
    assert_eq!(free_tcp(&f.t), 2 * 32_256 - legit_ports);
    // ...and once the others close, theirs after the cooldown.
    for k in std::mem::take(&mut f.legit) {
        let h = f.t.lookup(&k).unwrap();
        f.t.remove(h.flow, f.now);
    }
    f.t.expire(f.now.plus_secs(119), usize::MAX, &mut Vec::new());
    assert_eq!(free_tcp(&f.t), 2 * 32_256 - legit_ports, "cooling down");
    f.t.expire(f.now.plus_secs(120), usize::MAX, &mut Vec::new());
    assert_eq!(free_tcp(&f.t), 2 * 32_256);
    assert!(f.t.is_empty());
    assert_eq!(f.t.sources().count(), 0, "no record left behind");
}

/// The table was probably smaller (`max_flows: 65536`, 2 workers): there a dozen hosts
/// flooding at their limit fill it, and early drop must make room — taking only unanswered flows,
/// the heaviest hosts' first — for every new connection of the others.
#[test]
fn flooders_filling_the_table_lose_their_unanswered_flows_first() {
    let flooders: Vec<Ipv4Addr> = (1..=12).map(|i| Ipv4Addr::new(10, 0, 1, i)).collect();
    let mut f = flood(worker_cfg(32_768), &flooders, 70_000, 7);
    assert_eq!(f.t.limits().flows_per_source, Some(4096));
    let st = *f.t.stats();
    assert_eq!(
        st.refused_full, 0,
        "there was always an unanswered flow to drop"
    );
    assert!(
        st.early_dropped > 10_000,
        "{} dropped early",
        st.early_dropped
    );
    assert_eq!(f.t.len(), 32_768, "full, and still taking new connections");
    assert_eq!(st.refused_source_flows, f.refused);
    let counts: Vec<u32> = flooders
        .iter()
        .map(|&a| f.t.source_usage(a.into()).unwrap().unanswered)
        .collect();
    let (lo, hi) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
    assert!(hi - lo <= 2, "the heaviest lose first: {counts:?}");
    for a in &flooders {
        assert!(f.peak[a].0 <= 4096, "{a} held {:?}", f.peak[a]);
    }
    carry_on(&mut f, 125);
    assert!(
        flooders
            .iter()
            .all(|&a| f.t.source_usage(a.into()).is_none())
    );
    assert_eq!(f.t.len(), f.legit.len());
}

#[test]
fn early_drop_takes_the_oldest_of_the_heaviest_and_never_an_answered_flow() {
    let mut t = table(TableConfig {
        max_flows: 10,
        limits: Limits {
            flows_per_source: Some(10),
            ..Limits::default()
        },
        gateways: vec![Gateway::new("isp1", Some(EXT1.into()))],
        ..TableConfig::default()
    });
    let key = |h: u8, p: u16| FlowKey::v4(Ipv4Addr::new(10, 0, 0, h), SRV, proto::TCP, p, 443);
    for p in 0..5 {
        syn(&mut t, key(1, 100 + p), T0).unwrap();
    }
    for p in 0..2 {
        syn(&mut t, key(2, 200 + p), T0).unwrap();
    }
    for p in 0..3 {
        handshake(&mut t, key(3, 300 + p), T0).unwrap();
    }
    assert_eq!(t.len(), 10);
    let live = |t: &FlowTable| -> BTreeSet<(u8, u16)> {
        t.iter()
            .map(|f| (f.key.src_v4().unwrap().octets()[3], f.key.sport))
            .collect()
    };
    let mut gone = Vec::new();
    for p in 0..6 {
        let before = live(&t);
        syn(&mut t, key(4, 400 + p), T0).unwrap();
        let after = live(&t);
        gone.extend(before.difference(&after).copied());
    }
    // Host 1 (5 unanswered) loses its oldest until host 4, the newcomer, is the heaviest (3
    // against 2 and 2); from then on host 4 pays for its own new flows.
    assert_eq!(
        gone,
        vec![(1, 100), (1, 101), (1, 102), (4, 400), (4, 401), (4, 402)]
    );
    assert_eq!(t.stats().early_dropped, 6);
    t.audit_sources().unwrap();
    // Answered flows are never dropped: with only those left, the table is full.
    for f in t.iter().collect::<Vec<_>>() {
        if !f.replied {
            t.remove(f.id, T0);
        }
    }
    for p in 0..7 {
        handshake(&mut t, key(5, 500 + p), T0).unwrap();
    }
    assert_eq!(
        t.insert(key(6, 600), T0, true, SYN).unwrap_err(),
        InsertError::TableFull { max: 10 }
    );
    assert_eq!(t.stats().early_dropped, 6);
    assert_eq!(t.stats().refused_full, 1);
}

#[test]
fn early_drop_passes_over_flows_answered_on_the_fast_path() {
    let mut t = table(TableConfig {
        max_flows: 8,
        limits: Limits {
            flows_per_source: Some(8),
            ..Limits::default()
        },
        gateways: vec![Gateway::new("isp1", Some(EXT1.into()))],
        ..TableConfig::default()
    });
    // A host's DNS queries, answered through the fast path: still on its books as unanswered
    // until the table looks at them again, and the heaviest by them.
    let dns = |p| FlowKey::v4(LAN, SRV, proto::UDP, p, 53);
    for p in 0..5 {
        let h = t.insert(dns(5000 + p), T0, true, 0).unwrap().0;
        let r = t.lookup(&reply_of(&t, h)).unwrap();
        assert!(t.established(r, 0).is_some());
        t.touch(r, T0, 90);
    }
    assert_eq!(t.source_usage(LAN.into()).unwrap().unanswered, 5);
    let flooder = |p| FlowKey::v4(Ipv4Addr::new(10, 0, 0, 66), SRV, proto::TCP, p, 80);
    for p in 0..3 {
        syn(&mut t, flooder(1000 + p), T0).unwrap();
    }
    assert_eq!(t.len(), 8);
    // Full: the next flow passes over answered ones, taking them off the books, until the
    // flooder is the heaviest (3 against 3 left, then 2), and drops the flooder's oldest.
    syn(&mut t, flooder(2000), T0).unwrap();
    assert!(t.lookup(&flooder(1000)).is_none());
    for p in 0..5 {
        assert!(
            t.lookup(&dns(5000 + p)).is_some(),
            "an answered flow was dropped"
        );
    }
    assert_eq!(t.source_usage(LAN.into()).unwrap().unanswered, 2);
    assert_eq!(t.stats().early_dropped, 1);
    t.audit_sources().unwrap();
    // The rest go at their expiry check.
    t.expire(T0.plus_secs(30), usize::MAX, &mut Vec::new());
    assert_eq!(t.source_usage(LAN.into()).unwrap().unanswered, 0);
    t.audit_sources().unwrap();
}

#[test]
fn a_high_water_mark_drops_unanswered_flows_before_the_table_is_full() {
    let mut t = table(TableConfig {
        max_flows: 100,
        limits: Limits {
            flows_per_source: Some(100),
            high_water: Some(50),
            ..Limits::default()
        },
        ..two_gw((1, 1))
    });
    for p in 0..80 {
        syn(&mut t, tcp(1000 + p, 443), T0).unwrap();
    }
    assert_eq!(t.len(), 50, "one out for each in from the mark on");
    assert_eq!(t.stats().early_dropped, 30);
    // Answered flows still get in above the mark, and are not dropped.
    for p in 0..70 {
        handshake(
            &mut t,
            FlowKey::v4(Ipv4Addr::new(10, 0, 0, 9), SRV, 6, 2000 + p, 443),
            T0,
        )
        .unwrap();
    }
    assert_eq!(t.len(), 70, "past the mark with nothing left to drop");
    assert_eq!(t.source_usage(LAN.into()), None, "all its SYNs made room");
    assert_eq!(t.stats().early_dropped, 80);
    assert_eq!(
        t.source_usage(Ipv4Addr::new(10, 0, 0, 9).into())
            .unwrap()
            .flows,
        70
    );
}

#[test]
fn flows_per_source_limit_refuses_that_host_only() {
    let mut t = table(TableConfig {
        limits: Limits {
            flows_per_source: Some(5),
            ..Limits::default()
        },
        ..two_gw((1, 1))
    });
    for p in 0..5 {
        t.insert(tcp(1000 + p, 443), T0, true, SYN).unwrap();
    }
    let e = t.insert(tcp(2000, 443), T0, true, SYN).unwrap_err();
    assert_eq!(
        e,
        InsertError::SourceFlowLimit {
            host: LAN.into(),
            limit: 5
        }
    );
    assert!(e.is_resource_limit());
    assert_eq!(e.to_string(), "10.0.0.2 holds 5 flows, its limit");
    // Whatever the kind of flow.
    assert!(matches!(
        t.insert_direct(FlowKey::v4(LAN, Ipv4Addr::new(10, 0, 1, 2), 17, 1, 2), T0),
        Err(InsertError::SourceFlowLimit { .. })
    ));
    assert_eq!(t.stats().refused_source_flows, 2);
    // Another host is not concerned; and a flow gone makes room.
    let other = FlowKey::v4(Ipv4Addr::new(10, 0, 0, 3), SRV, 6, 1000, 443);
    t.insert(other, T0, true, SYN).unwrap();
    let h = t.lookup(&tcp(1000, 443)).unwrap();
    t.remove(h.flow, T0);
    t.insert(tcp(2000, 443), T0, true, SYN).unwrap();
    // IPv6 hosts (routed, not translated) are limited alike.
    let v6 = |p| {
        FlowKey::v6(
            "2001:db8::2".parse().unwrap(),
            "2001:db8:1::1".parse().unwrap(),
            6,
            p,
            443,
        )
    };
    for p in 0..5 {
        t.insert(v6(p), T0, false, SYN).unwrap();
    }
    assert!(matches!(
        t.insert(v6(9), T0, false, SYN),
        Err(InsertError::SourceFlowLimit { host, .. }) if host == "2001:db8::2".parse::<IpAddr>().unwrap()
    ));
    assert_eq!(
        t.source_usage("2001:db8::2".parse().unwrap()),
        Some(SourceUsage {
            flows: 5,
            ports: 0,
            unanswered: 5
        })
    );
    t.audit_sources().unwrap();
}

#[test]
fn ports_per_source_limit_counts_mappings_not_flows() {
    let mut t = table(TableConfig {
        limits: Limits {
            ports_per_source: Some(10),
            ..Limits::default()
        },
        gateways: vec![Gateway::new("isp1", Some(EXT1.into()))],
        ..TableConfig::default()
    });
    t.reserve_port(GatewayId(0), proto::TCP, 8080).unwrap();
    for p in 0..6 {
        t.insert(tcp(1000 + p, 443), T0, true, SYN).unwrap();
    }
    for p in 0..4 {
        let k = FlowKey::v4(LAN, SRV, proto::UDP, 5000 + p, 53);
        t.insert(k, T0, true, 0).unwrap();
    }
    let at_limit = SourceUsage {
        flows: 10,
        ports: 10,
        unanswered: 10,
    };
    assert_eq!(t.source_usage(LAN.into()), Some(at_limit));
    let e = t.insert(tcp(2000, 443), T0, true, SYN).unwrap_err();
    assert_eq!(
        e,
        InsertError::SourcePortLimit {
            host: LAN.into(),
            limit: 10
        }
    );
    assert!(e.is_resource_limit());
    assert_eq!(t.stats().refused_source_ports, 1);
    assert_eq!(t.stats().ports_exhausted, 0);
    assert_eq!(t.source_usage(LAN.into()), Some(at_limit), "nothing leaked");
    // A flow sharing one of its mappings (same inside port, another destination) needs none.
    let shared = FlowKey::v4(LAN, Ipv4Addr::new(198, 51, 100, 7), 6, 1000, 80);
    t.insert(shared, T0, true, SYN).unwrap();
    // A port forward's reserved port is not the host's.
    let inbound = FlowKey::v4(LAN, Ipv4Addr::new(198, 51, 100, 8), 6, 80, 33_000);
    t.insert_inbound(inbound, GatewayId(0), 8080, T0).unwrap();
    assert_eq!(t.source_usage(LAN.into()).unwrap().ports, 10);
    assert_eq!(t.source_usage(LAN.into()).unwrap().flows, 12);
    // Another host has its own.
    let other = FlowKey::v4(Ipv4Addr::new(10, 0, 0, 3), SRV, 6, 2000, 443);
    t.insert(other, T0, true, SYN).unwrap();
    // Releasing a mapping (its last flow gone) gives the host a port back.
    let h = t.lookup(&tcp(1001, 443)).unwrap();
    t.remove(h.flow, T0);
    assert_eq!(t.source_usage(LAN.into()).unwrap().ports, 9);
    t.insert(tcp(2000, 443), T0, true, SYN).unwrap();
    let h = t.lookup(&tcp(1000, 443)).unwrap();
    t.remove(h.flow, T0);
    assert_eq!(
        t.source_usage(LAN.into()).unwrap().ports,
        10,
        "still shared by another flow"
    );
    t.audit_sources().unwrap();
}

#[test]
fn unanswered_mappings_go_back_at_once_answered_ones_cool_down() {
    let mut t = table(TableConfig {
        gateways: vec![Gateway::new("isp1", Some(EXT1.into()))],
        ..TableConfig::default()
    });
    let base = t.nat_free_ports(GatewayId(0), proto::TCP).unwrap();
    let a = t.insert(tcp(40000, 443), T0, true, SYN).unwrap().0;
    let b = handshake(&mut t, tcp(40001, 443), T0).unwrap();
    assert_eq!(t.nat_free_ports(GatewayId(0), proto::TCP), Some(base - 2));
    t.remove(a.flow, T0);
    t.remove(b.flow, T0);
    assert_eq!(
        t.nat_free_ports(GatewayId(0), proto::TCP),
        Some(base - 1),
        "the unanswered one is free again at once"
    );
    let c = t
        .insert(
            FlowKey::v4(Ipv4Addr::new(10, 0, 0, 3), SRV, 6, 40000, 443),
            T0,
            true,
            SYN,
        )
        .unwrap()
        .0;
    assert_eq!(ext_of(&t, c).1, 40000, "and handed out again");
    let d = t
        .insert(
            FlowKey::v4(Ipv4Addr::new(10, 0, 0, 3), SRV, 6, 40001, 443),
            T0,
            true,
            SYN,
        )
        .unwrap()
        .0;
    assert_ne!(ext_of(&t, d).1, 40001, "the answered one cools down");
    t.remove(c.flow, T0);
    t.remove(d.flow, T0);
    t.expire(T0.plus_secs(120), usize::MAX, &mut Vec::new());
    assert_eq!(t.nat_free_ports(GatewayId(0), proto::TCP), Some(base));
}

#[test]
fn a_source_is_its_address_whatever_the_family() {
    use crate::table::sources::{addr_key, key_addr, source_key};
    for (src, dst) in [
        ("10.0.0.2", "203.0.113.1"),
        ("255.255.255.254", "203.0.113.1"),
        ("2001:db8::2", "2001:db8:1::1"),
        ("::ffff:0:1", "2001:db8:1::1"),
    ] {
        let (s, d): (IpAddr, IpAddr) = (src.parse().unwrap(), dst.parse().unwrap());
        let k = FlowKey::new(s, d, 6, 1, 2).unwrap();
        assert_eq!(source_key(&k), addr_key(s), "{s}");
        assert_eq!(key_addr(addr_key(s)), s.to_canonical());
    }
}

#[test]
fn limits_are_validated_and_derived_from_the_table() {
    for (limits, field) in [
        (
            Limits {
                flows_per_source: Some(0),
                ..Limits::default()
            },
            "flows_per_source",
        ),
        (
            Limits {
                ports_per_source: Some(0),
                ..Limits::default()
            },
            "ports_per_source",
        ),
        (
            Limits {
                high_water: Some(65_537),
                ..Limits::default()
            },
            "high_water",
        ),
    ] {
        assert!(matches!(
            FlowTable::new(TableConfig { limits, ..TableConfig::default() }),
            Err(ConfigError::BadLimit { field: f, .. }) if f == field
        ));
    }
    let small = table(TableConfig {
        max_flows: 100,
        nat: NatConfig {
            partition: PortPartition::new((1000, 1099), 64, 1, 0).unwrap(),
            cooldown_secs: 120,
        },
        ..TableConfig::default()
    });
    assert_eq!(
        small.limits(),
        Limits {
            flows_per_source: Some(100),
            ports_per_source: Some(100),
            high_water: Some(100),
        },
        "the floors, capped by the table and the pool"
    );
    assert_eq!(
        table(worker_cfg(DAEMON_TABLE)).limits(),
        Limits {
            flows_per_source: Some(65_536),
            ports_per_source: Some(8064),
            high_water: Some(DAEMON_TABLE),
        }
    );
}

#[derive(Clone, Debug)]
enum Op {
    New {
        host: u8,
        sport: u16,
        dst: u8,
        proto: u8,
    },
    Inbound {
        host: u8,
        remote_port: u16,
    },
    Direct {
        host: u8,
        dst: u8,
    },
    /// The remote side answers (full update).
    Reply(usize),
    /// The remote side answers through the fast path (UDP).
    ReplyFast(usize),
    /// An offload reports packets from the remote side.
    Account(usize),
    /// A SYN from the opener (a retry, or a reused 4-tuple).
    Syn(usize),
    Rst(usize),
    Remove(usize),
    Down(u8),
    Up(u8),
    Tick(u16),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        16 => (0u8..4, 1000u16..1016, 0u8..4, prop_oneof![3 => Just(6u8), 2 => Just(17), 1 => Just(1), 1 => Just(47)])
            .prop_map(|(host, sport, dst, proto)| Op::New { host, sport, dst, proto }),
        1 => (0u8..4, 30_000u16..30_004).prop_map(|(host, remote_port)| Op::Inbound { host, remote_port }),
        2 => (0u8..4, 0u8..8).prop_map(|(host, dst)| Op::Direct { host, dst }),
        3 => (0usize..1000).prop_map(Op::Reply),
        2 => (0usize..1000).prop_map(Op::ReplyFast),
        1 => (0usize..1000).prop_map(Op::Account),
        4 => (0usize..1000).prop_map(Op::Syn),
        1 => (0usize..1000).prop_map(Op::Rst),
        1 => (0usize..1000).prop_map(Op::Remove),
        1 => (0u8..2).prop_map(Op::Down),
        2 => (0u8..2).prop_map(Op::Up),
        1 => (1u16..60).prop_map(Op::Tick),
    ]
}

/// Each host's (flows, ports, unanswered) and unanswered flows, recounted from the live flows.
/// Mappings are counted once per (address, protocol class, port), reserved port 8080 excepted.
fn recount(
    t: &FlowTable,
) -> (
    HashMap<IpAddr, SourceUsage>,
    HashMap<IpAddr, BTreeSet<FlowId>>,
) {
    let mut usage: HashMap<IpAddr, SourceUsage> = HashMap::new();
    let mut lists: HashMap<IpAddr, BTreeSet<FlowId>> = HashMap::new();
    let mut mappings = HashSet::new();
    for f in t.iter() {
        let host = f.key.src_ip();
        let u = usage.entry(host).or_default();
        u.flows += 1;
        if !f.replied && !f.inbound {
            u.unanswered += 1;
            lists.entry(host).or_default().insert(f.id);
        }
        let class = match f.key.proto {
            proto::TCP | proto::UDP | proto::ICMP => f.key.proto,
            _ => continue,
        };
        if let Some((ext, port)) = f.nat
            && !(f.inbound && port == 8080)
            && mappings.insert((ext, class, port))
        {
            usage.entry(host).or_default().ports += 1;
        }
    }
    (usage, lists)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Whatever happens — creation, answers (full update, fast path, offload), SYN retries and
    /// reused 4-tuples, resets, removal, expiry, early drop, a gateway going down — each host's
    /// books equal a recount from the live flows; every refusal is typed; creating a flow never
    /// takes an answered one; and once everything is gone, no NAT port and no record is left.
    #[test]
    fn per_source_books_equal_a_recount(ops in proptest::collection::vec(op(), 1..250)) {
        let cfg = TableConfig {
            max_flows: 40,
            limits: Limits {
                flows_per_source: Some(12),
                ports_per_source: Some(7),
                high_water: Some(36),
            },
            nat: NatConfig {
                // 20 ports per pool: fewer than 4 hosts' limits, so pools run out too.
                partition: PortPartition::new((1000, 1019), 64, 1, 0).unwrap(),
                cooldown_secs: 120,
            },
            gateways: vec![
                Gateway::new("a", Some(EXT1.into())),
                Gateway::new("b", Some(EXT2.into())),
            ],
            policy: Policy { syn_retry: Some(2), ..Policy::default() },
            ..TableConfig::default()
        };
        let mut t = FlowTable::new(cfg).unwrap();
        for g in 0..2 {
            t.reserve_port(GatewayId(g), proto::TCP, 8080).unwrap();
        }
        let base: Vec<Option<u32>> = (0..2u8)
            .flat_map(|g| [6u8, 17, 1].map(|p| t.nat_free_ports(GatewayId(g), p)))
            .collect();
        let mut now = T0;
        let mut keys: Vec<FlowKey> = Vec::new();
        let lan = |h: u8| Ipv4Addr::new(10, 0, 0, 10 + h);
        let remote = |d: u8| Ipv4Addr::new(203, 0, 113, d);
        for o in ops {
            let o2 = o.clone();
            let answered_before: HashSet<FlowKey> =
                t.iter().filter(|f| f.replied && !f.inbound).map(|f| f.key).collect();
            let mut created = false;
            let pick = |keys: &Vec<FlowKey>, i: usize, t: &FlowTable| {
                (!keys.is_empty()).then(|| keys[i % keys.len()]).and_then(|k| t.lookup(&k))
            };
            match o {
                Op::New { host, sport, dst, proto } => {
                    let k = FlowKey::v4(lan(host), remote(dst), proto, sport, 80);
                    if t.lookup(&k).is_none() {
                        let flags = if proto == 6 { SYN } else { 0 };
                        match t.insert(k, now, true, flags) {
                            Ok((h, _)) => {
                                created = true;
                                keys.push(k);
                                t.update(h, now, flags, 60);
                            }
                            Err(e) => prop_assert!(
                                e.is_resource_limit() || matches!(e, InsertError::Exists | InsertError::NoGateway(_)),
                                "unexpected {}", e
                            ),
                        }
                    }
                }
                Op::Inbound { host, remote_port } => {
                    let k = FlowKey::v4(lan(host), remote(9), 6, 80, remote_port);
                    if t.lookup(&k).is_none() {
                        match t.insert_inbound(k, GatewayId(0), 8080, now) {
                            Ok(h) => {
                                created = true;
                                keys.push(k);
                                let r = t.lookup(&reply_of(&t, h)).unwrap();
                                t.update(r, now, SYN, 60);
                            }
                            Err(e) => prop_assert!(
                                e.is_resource_limit() || e == InsertError::Exists,
                                "unexpected {}", e
                            ),
                        }
                    }
                }
                Op::Direct { host, dst } => {
                    let k = FlowKey::v4(lan(host), Ipv4Addr::new(10, 0, 1, dst), 17, 7, 7);
                    if t.lookup(&k).is_none() {
                        match t.insert_direct(k, now) {
                            Ok(_) => { created = true; keys.push(k); }
                            Err(e) => prop_assert!(e.is_resource_limit(), "unexpected {}", e),
                        }
                    }
                }
                Op::Reply(i) | Op::ReplyFast(i) | Op::Account(i) => {
                    if let Some(h) = pick(&keys, i, &t) {
                        let f = t.iter().find(|f| f.id == h.flow).unwrap();
                        if let Some(r) = t.lookup(&f.reply_key).filter(|r| r.flow == h.flow) {
                            let flags = if f.key.proto == 6 { SYN | ACK } else { 0 };
                            match o {
                                Op::ReplyFast(_) if t.established(r, 0).is_some() => t.touch(r, now, 60),
                                Op::Account(_) => t.account(r, now, 2, 120),
                                _ => { t.update(r, now, flags, 60); }
                            }
                        }
                    }
                }
                Op::Syn(i) | Op::Rst(i) => {
                    if let Some(h) = pick(&keys, i, &t) {
                        let flags = if matches!(o, Op::Syn(_)) { SYN } else { RST };
                        if t.update(h, now, flags, 60) == Update::Reject {
                            t.remove(h.flow, now);
                        }
                    }
                }
                Op::Remove(i) => {
                    if let Some(h) = pick(&keys, i, &t) {
                        t.remove(h.flow, now);
                    }
                }
                Op::Down(g) => { t.gateway_down(GatewayId(g), now, DownAction::Reset); }
                Op::Up(g) => { t.gateway_up(GatewayId(g), now, Failback::Stay); }
                Op::Tick(s) => {
                    now = now.plus_secs(u64::from(s));
                    t.expire(now, usize::MAX, &mut Vec::new());
                }
            }
            // Flows and ports exactly; unanswered flows as listed (flows answered on the fast
            // path may stay listed until the table next looks at them).
            t.audit_sources().map_err(TestCaseError::fail)?;
            let (usage, _) = recount(&t);
            let books: HashMap<IpAddr, SourceUsage> = t.sources().collect();
            let strip = |m: &HashMap<IpAddr, SourceUsage>| -> HashMap<IpAddr, (u32, u32)> {
                m.iter().map(|(h, u)| (*h, (u.flows, u.ports))).collect()
            };
            prop_assert_eq!(strip(&books), strip(&usage));
            for (h, u) in &books {
                prop_assert!(u.flows <= 12 && u.ports <= 7, "{} over its limits: {:?}", h, u);
                prop_assert!(u.unanswered >= usage[h].unanswered);
            }
            if !matches!(o2, Op::Tick(_)) {
                if created {
                    let live: HashSet<FlowKey> = t.iter().map(|f| f.key).collect();
                    prop_assert!(answered_before.is_subset(&live), "an answered flow was dropped");
                }
                continue;
            }
            // Once reconciled (as expiry checks do over time), the lists are exactly the
            // unanswered flows.
            t.reconcile_all();
            let lists = t.audit_sources().map_err(TestCaseError::fail)?;
            let (usage, expect_lists) = recount(&t);
            let books: HashMap<IpAddr, SourceUsage> = t.sources().collect();
            prop_assert_eq!(&books, &usage);
            let lists: HashMap<IpAddr, BTreeSet<FlowId>> = lists
                .into_iter()
                .filter(|(_, l)| !l.is_empty())
                .map(|(h, l)| (h, l.into_iter().collect()))
                .collect();
            prop_assert_eq!(lists, expect_lists);
            if created {
                let live: HashSet<FlowKey> = t.iter().map(|f| f.key).collect();
                prop_assert!(answered_before.is_subset(&live), "an answered flow was dropped");
            }
        }
        for f in t.iter().collect::<Vec<_>>() {
            t.remove(f.id, now);
        }
        t.expire(now.plus_secs(120), usize::MAX, &mut Vec::new());
        let after: Vec<Option<u32>> = (0..2u8)
            .flat_map(|g| [6u8, 17, 1].map(|p| t.nat_free_ports(GatewayId(g), p)))
            .collect();
        prop_assert_eq!(after, base, "NAT ports leaked");
        prop_assert_eq!(t.sources().count(), 0);
    }
}
