use super::*;
use crate::Pin;
use crate::tcp::flags::{ACK, FIN, RST, SYN};
use core::net::{Ipv4Addr, Ipv6Addr};
use proptest::prelude::*;

const LAN: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const SRV: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
const EXT1: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const EXT2: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);

fn two_gw(weights: (u32, u32)) -> TableConfig {
    TableConfig {
        gateways: vec![
            Gateway::new("isp1", Some(EXT1.into())).weight(weights.0),
            Gateway::new("isp2", Some(EXT2.into())).weight(weights.1),
        ],
        ..TableConfig::default()
    }
}

fn table(cfg: TableConfig) -> FlowTable {
    FlowTable::new(cfg).unwrap()
}

fn tcp(sport: u16, dport: u16) -> FlowKey {
    FlowKey::v4(LAN, SRV, proto::TCP, sport, dport)
}

fn ext_of(t: &FlowTable, h: Hit) -> (Ipv4Addr, u16) {
    let f = t.flow(h.flow).unwrap();
    let (a, p) = f.nat().unwrap();
    (Ipv4Addr::new(a[0], a[1], a[2], a[3]), p)
}

fn reply_of(t: &FlowTable, h: Hit) -> FlowKey {
    let k = t.flow(h.flow).unwrap().key();
    let (ext, port) = ext_of(t, h);
    FlowKey::v4(k.dst_v4().unwrap(), ext, k.proto, k.dport, port)
}

const T0: Time = Time::from_secs(1000);

#[test]
fn out_and_back() {
    let mut t = table(two_gw((1, 1)));
    let (h, _) = t.insert(tcp(40000, 443), T0, true, SYN).unwrap();
    assert_eq!(t.len(), 1);
    let (_, port) = ext_of(&t, h);
    assert_eq!(port, 40000);
    let r = reply_of(&t, h);
    assert_eq!(
        t.lookup(&r),
        Some(Hit {
            flow: h.flow,
            dir: Dir::Reply
        })
    );
    assert_eq!(t.lookup(&tcp(40000, 443)), Some(h));
    assert_eq!(
        t.insert(tcp(40000, 443), T0, true, SYN).unwrap_err(),
        InsertError::Exists
    );
    // The handshake.
    assert_eq!(
        t.update(
            Hit {
                flow: h.flow,
                dir: Dir::Reply
            },
            T0,
            SYN | ACK,
            60
        ),
        Update::Forward
    );
    assert_eq!(t.update(h, T0, ACK, 52), Update::Forward);
    assert_eq!(t.flow(h.flow).unwrap().tcp(), TcpState::Established);
    let info = t.iter().next().unwrap();
    assert_eq!(info.counters.packets, [1, 1]);
    assert_eq!(info.counters.bytes, [52, 60]);
    assert!(info.replied);
}

#[test]
fn endpoint_independent_mapping_and_sharing() {
    let mut t = table(TableConfig {
        gateways: vec![Gateway::new("isp1", Some(EXT1.into()))],
        ..TableConfig::default()
    });
    let a = t.insert(tcp(40000, 443), T0, true, SYN).unwrap().0;
    let b = t
        .insert(
            FlowKey::v4(LAN, Ipv4Addr::new(198, 51, 100, 77), proto::TCP, 40000, 80),
            T0,
            true,
            SYN,
        )
        .unwrap()
        .0;
    assert_eq!(ext_of(&t, a), ext_of(&t, b));
    // Another host with the same source port gets another port of the same parity.
    let c = t
        .insert(
            FlowKey::v4(Ipv4Addr::new(10, 0, 0, 3), SRV, proto::TCP, 40000, 443),
            T0,
            true,
            SYN,
        )
        .unwrap()
        .0;
    let (_, pc) = ext_of(&t, c);
    assert_ne!(pc, 40000);
    assert_eq!(pc % 2, 0);
    assert_eq!(
        t.mapping(EXT1.into(), proto::TCP, 40000),
        Some((LAN.into(), 40000))
    );
    // Removing one of the two sharing flows keeps the mapping; removing both frees it (after cooling).
    t.remove(a.flow, T0);
    assert_eq!(
        t.mapping(EXT1.into(), proto::TCP, 40000),
        Some((LAN.into(), 40000))
    );
    t.remove(b.flow, T0);
    assert_eq!(t.mapping(EXT1.into(), proto::TCP, 40000), None);
    let d = t
        .insert(
            FlowKey::v4(Ipv4Addr::new(10, 0, 0, 4), SRV, proto::TCP, 40000, 443),
            T0,
            true,
            SYN,
        )
        .unwrap()
        .0;
    assert_ne!(ext_of(&t, d).1, 40000, "cooling port is not reused");
    let mut out = Vec::new();
    t.remove(d.flow, T0);
    t.expire(T0.plus_secs(121), usize::MAX, &mut out);
    let e = t
        .insert(
            FlowKey::v4(Ipv4Addr::new(10, 0, 0, 5), SRV, proto::TCP, 40000, 443),
            T0.plus_secs(121),
            true,
            SYN,
        )
        .unwrap()
        .0;
    assert_eq!(ext_of(&t, e).1, 40000, "after 120 s the port is free again");
}

#[test]
fn icmp_echo_uses_the_id_as_port() {
    let mut t = table(two_gw((1, 0)));
    let req = FlowKey::v4(LAN, SRV, proto::ICMP, 0x1234, 0);
    let (h, _) = t.insert(req, T0, true, 0).unwrap();
    let (ext, id) = ext_of(&t, h);
    assert_eq!((ext, id), (EXT1, 0x1234));
    let reply = FlowKey::v4(SRV, EXT1, proto::ICMP, 0, 0x1234);
    assert_eq!(t.lookup(&reply).unwrap().dir, Dir::Reply);
    let mut out = Vec::new();
    t.expire(T0.plus_secs(59), usize::MAX, &mut out);
    assert!(out.is_empty());
    t.expire(T0.plus_secs(60), usize::MAX, &mut out);
    assert_eq!(out.len(), 1, "ICMP query timeout is 60 s");
}

#[test]
fn timeouts_follow_state_and_expiry_is_proportional_to_expired() {
    let mut t = table(two_gw((1, 1)));
    let udp = FlowKey::v4(LAN, SRV, proto::UDP, 5353, 53);
    let u = t.insert(udp, T0, true, 0).unwrap().0;
    let e = t.insert(tcp(1, 443), T0, true, SYN).unwrap().0;
    t.update(e, T0, SYN, 0);
    t.update(
        Hit {
            flow: e.flow,
            dir: Dir::Reply,
        },
        T0,
        SYN | ACK,
        0,
    );
    t.update(e, T0, ACK, 0);
    let s = t.insert(tcp(2, 443), T0, true, SYN).unwrap().0;
    t.update(s, T0, SYN, 0);
    let mut out = Vec::new();
    // UDP refreshed at +200 s lives until +500 s.
    t.update(u, T0.plus_secs(200), 0, 10);
    t.expire(T0.plus_secs(239), usize::MAX, &mut out);
    assert!(out.is_empty());
    t.expire(T0.plus_secs(240), usize::MAX, &mut out);
    assert_eq!(
        out.iter().map(|f| f.id).collect::<Vec<_>>(),
        vec![s.flow],
        "unanswered SYN: transitory 240 s"
    );
    out.clear();
    t.expire(T0.plus_secs(499), usize::MAX, &mut out);
    assert!(out.is_empty());
    t.expire(T0.plus_secs(500), usize::MAX, &mut out);
    assert_eq!(out[0].id, u.flow);
    out.clear();
    t.expire(T0.plus_secs(7439), usize::MAX, &mut out);
    assert!(out.is_empty());
    t.expire(T0.plus_secs(7440), usize::MAX, &mut out);
    assert_eq!(out[0].id, e.flow, "established: 7440 s");
    assert!(t.is_empty());
    assert_eq!(t.stats().expired, 3);
    // The SYN that expired unanswered counted as a failure on its gateway (the window slid by then,
    // so look at the time it expired).
    let mut t2 = table(two_gw((1, 1)));
    let s2 = t2.insert(tcp(2, 443), T0, true, SYN).unwrap().0;
    t2.update(s2, T0, SYN, 0);
    let g2 = t2.flow(s2.flow).unwrap().gateway().unwrap();
    t2.expire(T0.plus_secs(240), usize::MAX, &mut out);
    assert_eq!(t2.failure_totals(g2, T0.plus_secs(240)), (0, 1));
}

#[test]
fn expiry_work_is_bounded_by_budget_and_resumes() {
    let mut t = table(TableConfig {
        max_flows: 10_000,
        ..two_gw((1, 1))
    });
    for p in 0..5000u16 {
        t.insert(
            FlowKey::v4(LAN, SRV, proto::UDP, 10000 + p, 53),
            T0,
            true,
            0,
        )
        .unwrap();
    }
    let mut out = Vec::new();
    let later = T0.plus_secs(300);
    let mut calls = 0;
    while !t.expire(later, 1000, &mut out) {
        calls += 1;
        assert!(out.len() <= 1000 * calls);
    }
    assert_eq!(out.len(), 5000);
    assert!(calls >= 4);
    assert!(t.is_empty());
}

#[test]
fn full_table_early_drops_unanswered_then_refuses() {
    let mut t = table(TableConfig {
        max_flows: 4,
        ..two_gw((1, 1))
    });
    let mut hits = Vec::new();
    for p in 0..4 {
        let h = t.insert(tcp(1000 + p, 443), T0, true, SYN).unwrap().0;
        // Answer every flow so none can be dropped early.
        t.update(
            Hit {
                flow: h.flow,
                dir: Dir::Reply,
            },
            T0,
            SYN | ACK,
            0,
        );
        hits.push(h);
    }
    assert_eq!(
        t.insert(tcp(2000, 443), T0, true, SYN).unwrap_err(),
        InsertError::TableFull { max: 4 }
    );
    assert_eq!(t.stats().refused_full, 1);
    // An unanswered flow can make room.
    t.remove(hits[0].flow, T0);
    t.insert(tcp(3000, 443), T0, true, SYN).unwrap();
    let h = t.insert(tcp(3001, 443), T0, true, SYN).unwrap().0;
    assert_eq!(t.stats().early_dropped, 1);
    assert!(
        t.lookup(&tcp(3000, 443)).is_none(),
        "the unanswered flow was dropped"
    );
    assert!(t.flow(h.flow).is_some());
}

#[test]
fn ports_exhausted_is_an_error() {
    let mut t = table(TableConfig {
        nat: NatConfig {
            partition: PortPartition::new((5000, 5003), 64, 1, 0).unwrap(),
            cooldown_secs: 120,
        },
        ..two_gw((1, 0))
    });
    for p in 0..4 {
        t.insert(
            FlowKey::v4(Ipv4Addr::new(10, 0, 1, p), SRV, proto::UDP, 7000, 53),
            T0,
            true,
            0,
        )
        .unwrap();
    }
    let e = t
        .insert(
            FlowKey::v4(Ipv4Addr::new(10, 0, 1, 9), SRV, proto::UDP, 7000, 53),
            T0,
            true,
            0,
        )
        .unwrap_err();
    assert_eq!(
        e,
        InsertError::PortsExhausted {
            addr: EXT1.into(),
            proto: proto::UDP
        }
    );
    assert_eq!(t.stats().ports_exhausted, 1);
    assert_eq!(t.len(), 4, "nothing lost");
}

#[test]
fn syn_retry_rotates_gateway_and_mapping() {
    let mut t = table(two_gw((1, 1)));
    let k = (0..100).map(|p| tcp(30000 + p, 443)).find(|k| {
        let probe = table(two_gw((1, 1)));
        probe.explain(k, T0).choice.unwrap().gateway == GatewayId(0)
    });
    let k = k.unwrap();
    let (h, c) = t.insert(k, T0, true, SYN).unwrap();
    assert_eq!(c.gateway, GatewayId(0));
    t.update(h, T0, SYN, 60); // the insert's SYN
    assert_eq!(
        t.update(h, T0.plus_secs(1), SYN, 60),
        Update::Forward,
        "2nd SYN: not more than 2 yet"
    );
    let u = t.update(h, T0.plus_secs(3), SYN, 60);
    assert_eq!(
        u,
        Update::Rotated {
            from: GatewayId(0),
            to: GatewayId(1)
        }
    );
    let (ext, port) = ext_of(&t, h);
    assert_eq!(ext, EXT2);
    assert_eq!(
        t.lookup(&FlowKey::v4(SRV, EXT2, proto::TCP, 443, port))
            .unwrap()
            .flow,
        h.flow
    );
    assert!(
        t.lookup(&FlowKey::v4(SRV, EXT1, proto::TCP, 443, k.sport))
            .is_none(),
        "old mapping gone"
    );
    assert_eq!(t.explain(&k, T0).flow.unwrap().reason, ReasonKind::SynRetry);
    // The next retry rotates back (seed 001: rotating through the list).
    assert_eq!(
        t.update(h, T0.plus_secs(7), SYN, 60),
        Update::Rotated {
            from: GatewayId(1),
            to: GatewayId(0)
        }
    );
    // An answer stops rotation.
    let back = FlowKey::v4(SRV, EXT1, proto::TCP, 443, ext_of(&t, h).1);
    let r = t.lookup(&back).unwrap();
    t.update(r, T0.plus_secs(7), SYN | ACK, 60);
    assert_eq!(t.update(h, T0.plus_secs(8), SYN, 60), Update::Forward);
    assert_eq!(t.stats().syn_rotations, 2);
    assert_eq!(
        t.failure_totals(GatewayId(0), T0.plus_secs(8)).1,
        1,
        "the unanswered attempt counted as failed"
    );
}

#[test]
fn rst_to_syn_counts_as_failure_and_redirect_kicks_in() {
    let mut t = table(two_gw((1, 1)));
    let now = T0;
    let mut on0 = 0;
    for p in 0..40u16 {
        let (h, c) = t.insert(tcp(20000 + p, 443), now, true, SYN).unwrap();
        t.update(h, now, SYN, 60);
        if c.gateway == GatewayId(0) {
            on0 += 1;
            let r = Hit {
                flow: h.flow,
                dir: Dir::Reply,
            };
            t.update(r, now, RST | ACK, 40);
        }
    }
    assert!(on0 >= 10);
    let (opened, failed) = t.failure_totals(GatewayId(0), now);
    assert_eq!((opened, failed), (on0, on0));
    // Now every new connection avoids gateway 0.
    for p in 0..50u16 {
        let (_, c) = t.insert(tcp(21000 + p, 443), now, true, SYN).unwrap();
        assert_eq!(c.gateway, GatewayId(1));
        assert!(
            c.reason
                .to_string()
                .contains("skipped for failure rate: gw0"),
            "{}",
            c.reason
        );
    }
    // After the window, gateway 0 is tried again.
    let later = now.plus_secs(61);
    assert!((0..50u16).any(|p| {
        t.insert(tcp(22000 + p, 443), later, true, SYN)
            .unwrap()
            .1
            .gateway
            == GatewayId(0)
    }));
}

#[test]
fn gateway_down_touches_only_its_flows() {
    let mut t = table(two_gw((1, 1)));
    let mut by_gw = [Vec::new(), Vec::new()];
    for p in 0..200u16 {
        let (h, c) = t.insert(tcp(10000 + p, 443), T0, true, SYN).unwrap();
        t.update(
            Hit {
                flow: h.flow,
                dir: Dir::Reply,
            },
            T0,
            SYN | ACK,
            0,
        );
        t.update(h, T0, ACK, 0);
        by_gw[c.gateway.index()].push(h);
    }
    assert_eq!(t.flows_on(GatewayId(0)) as usize, by_gw[0].len());
    assert_eq!(t.flows_on(GatewayId(1)) as usize, by_gw[1].len());
    let down = t.gateway_down(GatewayId(0), T0, DownAction::Reset);
    assert_eq!(down.len(), by_gw[0].len());
    assert!(down.iter().all(|f| f.gateway == Some(GatewayId(0))));
    for h in &by_gw[1] {
        assert_eq!(t.update(*h, T0, ACK, 0), Update::Forward);
        assert!(t.lookup(&reply_of(&t, *h)).is_some());
    }
    for h in &by_gw[0] {
        assert_eq!(t.update(*h, T0, ACK, 0), Update::Reject);
        t.remove(h.flow, T0);
    }
    assert_eq!(t.flows_on(GatewayId(0)), 0);
    // The client's reconnect goes to the live gateway.
    let first_down = down[0].key;
    let (_, c) = t.insert(first_down, T0, true, SYN).unwrap();
    assert_eq!(c.gateway, GatewayId(1));
    // Up again: new flows return, existing ones stay.
    let moved = t.gateway_up(GatewayId(0), T0, Failback::Stay);
    assert!(moved.is_empty());
    assert!((0..100u16).any(|p| {
        t.insert(tcp(50000 + p, 443), T0, true, SYN)
            .unwrap()
            .1
            .gateway
            == GatewayId(0)
    }));
}

#[test]
fn keep_waiting_leaves_flows_alone_and_failback_move_marks_them() {
    let mut t = table(two_gw((1, 1)));
    let mut hits = Vec::new();
    for p in 0..100u16 {
        hits.push(t.insert(tcp(10000 + p, 443), T0, true, SYN).unwrap());
    }
    let kept = t.gateway_down(GatewayId(0), T0, DownAction::Keep);
    assert!(!kept.is_empty());
    for (h, _) in &hits {
        assert_ne!(t.update(*h, T0, ACK, 0), Update::Reject);
    }
    // New flows go to gateway 1 while 0 is down; failback: move pulls back those the policy assigns to 0.
    let mut new_on_1 = Vec::new();
    for p in 0..100u16 {
        let (h, c) = t.insert(tcp(20000 + p, 443), T0, true, SYN).unwrap();
        assert_eq!(c.gateway, GatewayId(1));
        new_on_1.push(h);
    }
    let moved = t.gateway_up(GatewayId(0), T0, Failback::Move);
    assert!(!moved.is_empty() && moved.len() < 100, "{}", moved.len());
    let marked = new_on_1
        .iter()
        .filter(|h| t.update(**h, T0, ACK, 0) == Update::Reject)
        .count();
    assert_eq!(marked, moved.len());
}

#[test]
fn inbound_port_forward_is_answered_by_its_link() {
    let mut t = table(two_gw((1, 1)));
    t.reserve_port(GatewayId(1), proto::TCP, 8080).unwrap();
    let server = Ipv4Addr::new(10, 0, 0, 10);
    let remote = Ipv4Addr::new(203, 0, 113, 99);
    // Inside perspective: server:80 -> remote:55555, external EXT2:8080.
    let k = FlowKey::v4(server, remote, proto::TCP, 80, 55555);
    let h = t.insert_inbound(k, GatewayId(1), 8080, T0).unwrap();
    let incoming = FlowKey::v4(remote, EXT2, proto::TCP, 55555, 8080);
    let hit = t.lookup(&incoming).unwrap();
    assert_eq!(
        hit,
        Hit {
            flow: h.flow,
            dir: Dir::Reply
        }
    );
    assert_eq!(t.update(hit, T0, SYN, 60), Update::Forward);
    let f = t.flow(h.flow).unwrap();
    assert!(f.is_inbound());
    assert_eq!(f.gateway(), Some(GatewayId(1)));
    assert_eq!(t.update(h, T0, SYN | ACK, 60), Update::Forward);
    assert_eq!(t.update(hit, T0, ACK, 60), Update::Forward);
    assert_eq!(t.flow(h.flow).unwrap().tcp(), TcpState::Established);
    // Dynamic mappings never take the reserved port.
    let d = t
        .insert(FlowKey::v4(LAN, SRV, proto::TCP, 8080, 80), T0, true, SYN)
        .unwrap();
    if d.1.gateway == GatewayId(1) {
        assert_ne!(ext_of(&t, d.0).1, 8080);
    }
    // An unanswered inbound SYN is held 6 s.
    let k2 = FlowKey::v4(server, remote, proto::TCP, 80, 55556);
    t.insert_inbound(k2, GatewayId(1), 8080, T0).unwrap();
    let r2 = t
        .lookup(&FlowKey::v4(remote, EXT2, proto::TCP, 55556, 8080))
        .unwrap();
    t.update(r2, T0, SYN, 60);
    let mut out = Vec::new();
    t.expire(T0.plus_secs(5), usize::MAX, &mut out);
    assert!(out.is_empty());
    t.expire(T0.plus_secs(6), usize::MAX, &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].key, k2);
}

#[test]
fn direct_and_ipv6_flows_are_not_translated() {
    let mut t = table(two_gw((1, 1)));
    let k = FlowKey::v4(LAN, Ipv4Addr::new(10, 0, 1, 5), proto::UDP, 1, 2);
    let h = t.insert_direct(k, T0).unwrap();
    assert!(t.flow(h.flow).unwrap().nat().is_none());
    assert_eq!(t.lookup(&k.reversed()).unwrap().dir, Dir::Reply);
    let v6 = FlowKey::v6(
        "2001:db8:1::2".parse().unwrap(),
        "2001:db8:ff::1".parse().unwrap(),
        proto::TCP,
        1,
        443,
    );
    assert_eq!(t.insert(v6, T0, true, SYN).unwrap_err(), InsertError::NatV6);
    let (h6, _) = t.insert(v6, T0, false, SYN).unwrap();
    assert!(t.flow(h6.flow).unwrap().gateway().is_some());
    assert_eq!(t.lookup(&v6.reversed()).unwrap().flow, h6.flow);
}

#[test]
fn explain_names_the_reason() {
    let mut cfg = two_gw((1, 1));
    cfg.overrides.pins.push(Pin {
        client: "10.0.0.2/32".parse().unwrap(),
        gateway: GatewayId(1),
    });
    let mut t = table(cfg);
    let k = tcp(40001, 443);
    let e = t.explain(&k, T0);
    assert!(e.flow.is_none());
    assert_eq!(
        e.to_string(),
        "a new flow would take isp2: client pinned by 10.0.0.2/32"
    );
    t.insert(k, T0, true, SYN).unwrap();
    let e = t.explain(&k, T0);
    assert!(e.to_string().starts_with("existing flow tcp 10.0.0.2:40001 -> 203.0.113.10:443: via isp2 (Pin), translated to 198.51.100.1:40001"), "{e}");
}

#[test]
fn batch_lookup_matches_single() {
    let mut t = table(two_gw((3, 1)));
    let mut keys = Vec::new();
    for p in 0..300u16 {
        let k = tcp(p + 1, 443);
        let h = t.insert(k, T0, true, SYN).unwrap().0;
        keys.push(k);
        keys.push(reply_of(&t, h));
        keys.push(tcp(p + 1, 444)); // a miss
    }
    let mut out = vec![None; keys.len()];
    t.lookup_batch(&keys, &mut out);
    for (k, o) in keys.iter().zip(&out) {
        assert_eq!(*o, t.lookup(k));
    }
    assert_eq!(out.iter().filter(|o| o.is_none()).count(), 300);
}

#[test]
fn fin_fin_time_wait() {
    let mut t = table(two_gw((1, 1)));
    let (h, _) = t.insert(tcp(5, 443), T0, true, SYN).unwrap();
    let r = Hit {
        flow: h.flow,
        dir: Dir::Reply,
    };
    t.update(h, T0, SYN, 0);
    t.update(r, T0, SYN | ACK, 0);
    t.update(h, T0, ACK, 0);
    t.update(h, T0, FIN | ACK, 0);
    assert_eq!(t.flow(h.flow).unwrap().tcp(), TcpState::Closing);
    t.update(r, T0, FIN | ACK, 0);
    assert_eq!(t.flow(h.flow).unwrap().tcp(), TcpState::TimeWait);
    let mut out = Vec::new();
    t.expire(T0.plus_secs(240), usize::MAX, &mut out);
    assert_eq!(out.len(), 1);
}

#[test]
fn config_errors_are_typed() {
    assert!(matches!(
        FlowTable::new(TableConfig {
            max_flows: 0,
            ..TableConfig::default()
        }),
        Err(ConfigError::TooManyFlows { .. })
    ));
    assert!(matches!(
        FlowTable::new(TableConfig {
            timeouts: Timeouts {
                udp: 30,
                ..Timeouts::default()
            },
            ..TableConfig::default()
        }),
        Err(ConfigError::TimeoutTooShort { field: "udp", .. })
    ));
    let many = (0..65)
        .map(|i| Gateway::new(format!("g{i}"), None))
        .collect();
    assert!(matches!(
        FlowTable::new(TableConfig {
            gateways: many,
            ..TableConfig::default()
        }),
        Err(ConfigError::TooManyGateways { .. })
    ));
}

// ----- properties -----

#[derive(Clone, Debug)]
enum Op {
    New {
        host: u8,
        sport: u16,
        dst: u8,
        dport: u16,
        udp: bool,
    },
    Reply(usize),
    Syn(usize),
    Remove(usize),
    Down(u8),
    Up(u8),
    Tick(u16),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..8, 1000u16..1040, 0u8..4, prop_oneof![Just(80u16), Just(443)], any::<bool>())
            .prop_map(|(host, sport, dst, dport, udp)| Op::New { host, sport, dst, dport, udp }),
        3 => (0usize..1000).prop_map(Op::Reply),
        2 => (0usize..1000).prop_map(Op::Syn),
        1 => (0usize..1000).prop_map(Op::Remove),
        1 => (0u8..3).prop_map(Op::Down),
        1 => (0u8..3).prop_map(Op::Up),
        1 => (1u16..200).prop_map(Op::Tick),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// NAT is reversible, mappings are endpoint-independent, no two live flows share an external
    /// tuple, and an answered flow never changes gateway while its gateway is up.
    #[test]
    fn table_invariants(ops in proptest::collection::vec(op(), 1..300)) {
        let cfg = TableConfig {
            max_flows: 512,
            nat: NatConfig {
                partition: PortPartition::new((1000, 1063), 64, 1, 0).unwrap(),
                cooldown_secs: 120,
            },
            gateways: vec![
                Gateway::new("a", Some(EXT1.into())).weight(2),
                Gateway::new("b", Some(EXT2.into())),
                Gateway::new("c", Some(Ipv4Addr::new(192, 0, 2, 77).into())).tier(1),
            ],
            ..TableConfig::default()
        };
        let mut t = FlowTable::new(cfg).unwrap();
        let mut now = T0;
        let mut keys: Vec<FlowKey> = Vec::new();
        // gateway of each answered flow when last checked, keyed by key
        let mut pinned: std::collections::HashMap<FlowKey, GatewayId> = Default::default();
        for o in ops {
            match o {
                Op::New { host, sport, dst, dport, udp } => {
                    let k = FlowKey::v4(
                        Ipv4Addr::new(10, 0, 0, host),
                        Ipv4Addr::new(203, 0, 113, dst),
                        if udp { proto::UDP } else { proto::TCP },
                        sport,
                        dport,
                    );
                    match t.insert(k, now, true, SYN) {
                        Ok(_) => keys.push(k),
                        Err(InsertError::Exists | InsertError::PortsExhausted { .. } | InsertError::NoGateway(_) | InsertError::TableFull { .. }) => {}
                        Err(e) => prop_assert!(false, "unexpected {e}"),
                    }
                }
                Op::Reply(i) | Op::Syn(i) if !keys.is_empty() => {
                    let k = keys[i % keys.len()];
                    if let Some(h) = t.lookup(&k) {
                        if matches!(o, Op::Reply(_)) {
                            let r = t.iter().find(|f| f.id == h.flow).unwrap().reply_key;
                            if let Some(rh) = t.lookup(&r) {
                                prop_assert_eq!(rh.flow, h.flow);
                                if t.update(rh, now, SYN | ACK, 1) == Update::Forward {
                                    pinned.insert(k, t.flow(h.flow).unwrap().gateway().unwrap());
                                }
                            }
                        } else if t.update(h, now, SYN, 1) == Update::Reject {
                            t.remove(h.flow, now);
                        }
                    }
                }
                Op::Remove(i) if !keys.is_empty() => {
                    let k = keys[i % keys.len()];
                    if let Some(h) = t.lookup(&k) {
                        t.remove(h.flow, now);
                    }
                }
                Op::Down(g) => {
                    for f in t.gateway_down(GatewayId(g), now, DownAction::Reset) {
                        pinned.remove(&f.key);
                    }
                }
                Op::Up(g) => { t.gateway_up(GatewayId(g), now, Failback::Stay); }
                Op::Tick(s) => {
                    now = now.plus_secs(u64::from(s));
                    let mut out = Vec::new();
                    t.expire(now, usize::MAX, &mut out);
                    for f in out { pinned.remove(&f.key); }
                }
                _ => {}
            }
            // Invariants over every live flow.
            let mut ext_seen = std::collections::HashSet::new();
            let mut eim: std::collections::HashMap<(FlowKey, u8), (IpAddr, u16)> = Default::default();
            let mut live_keys = std::collections::HashSet::new();
            for f in t.iter() {
                live_keys.insert(f.key);
                let rejected = t.flow(f.id).unwrap().is_rejected();
                prop_assert_eq!(t.lookup(&f.key).map(|h| (h.flow, h.dir)), Some((f.id, Dir::Orig)));
                if rejected { continue; }
                prop_assert_eq!(t.lookup(&f.reply_key).map(|h| (h.flow, h.dir)), Some((f.id, Dir::Reply)), "reversible");
                prop_assert!(ext_seen.insert(f.reply_key), "two flows share an external tuple");
                let (ext, port) = f.nat.unwrap();
                let inside = FlowKey::v4(f.key.src_v4().unwrap(), Ipv4Addr::UNSPECIFIED, f.key.proto, f.key.sport, 0);
                if let Some(prev) = eim.insert((inside, f.gateway.unwrap().0), (ext, port)) {
                    prop_assert_eq!(prev, (ext, port), "endpoint-independent mapping");
                }
                if let Some(g) = pinned.get(&f.key) {
                    if t.gateways()[g.index()].state.is_usable() {
                        prop_assert_eq!(f.gateway, Some(*g), "an answered flow moved while its gateway was up");
                    }
                }
            }
            pinned.retain(|k, _| live_keys.contains(k));
        }
    }
}

#[test]
fn weighted_shares_over_100k_flows() {
    let t = table(two_gw((4, 1)));
    let mut on = [0u32; 2];
    for i in 0..100_000u32 {
        let k = FlowKey::v4(
            Ipv4Addr::from(0x0a00_0000 + (i >> 12)),
            SRV,
            proto::TCP,
            (i & 0xfff) as u16 + 1024,
            443,
        );
        on[t.explain(&k, T0).choice.unwrap().gateway.index()] += 1;
    }
    let share = f64::from(on[0]) / 100_000.0;
    assert!((share - 0.8).abs() <= 0.02, "4:1 gave {share}");
}

#[test]
fn removing_one_of_n_moves_only_its_share() {
    for n in [2usize, 3, 4, 5, 8] {
        let gws: Vec<Gateway> = (0..n)
            .map(|i| Gateway::new(format!("g{i}"), None))
            .collect();
        let before = table(TableConfig {
            gateways: gws.clone(),
            ..TableConfig::default()
        });
        let mut down = gws;
        down[n / 2].state = GatewayState::Down;
        let after = table(TableConfig {
            gateways: down,
            ..TableConfig::default()
        });
        let total = 20_000u32;
        let mut moved = 0;
        for i in 0..total {
            let k = FlowKey::v4(Ipv4Addr::from(0x0a00_0000 + i), SRV, proto::UDP, 5000, 53);
            let a = before.explain(&k, T0).choice.unwrap().gateway;
            let b = after.explain(&k, T0).choice.unwrap().gateway;
            if a != b {
                moved += 1;
                assert_eq!(
                    a.index(),
                    n / 2,
                    "a flow moved off a gateway that stayed up"
                );
            }
        }
        let frac = f64::from(moved) / f64::from(total);
        assert!(frac <= 1.0 / n as f64 + 0.02, "n={n}: moved {frac}");
    }
}

proptest! {
    /// `established` + `touch` (the packet fast path) leave a table exactly as `update` does,
    /// whenever `established` accepts the packet; whenever it refuses, nothing has changed.
    #[test]
    fn established_and_touch_equal_update(
        pkts in proptest::collection::vec((0u16..4, any::<bool>(), prop_oneof![
            6 => Just(ACK), 2 => Just(SYN), 2 => Just(SYN | ACK), 1 => Just(FIN | ACK), 1 => Just(RST), 1 => Just(0u8)
        ], 0u64..5, any::<bool>()), 1..200),
        accounting in any::<bool>(),
    ) {
        let cfg = TableConfig { accounting, ..two_gw((1, 1)) };
        let (mut a, mut b) = (table(cfg.clone()), table(cfg));
        let mut now = T0;
        for (port, from_remote, flags, wait, udp) in pkts {
            now = now.plus_secs(wait);
            let key = if udp {
                FlowKey::v4(LAN, SRV, proto::UDP, 50000 + port, 53)
            } else {
                tcp(40000 + port, 443)
            };
            let hit = match a.lookup(&key) {
                Some(h) => h,
                None => {
                    let ra = a.insert(key, now, true, flags);
                    let rb = b.insert(key, now, true, flags);
                    prop_assert_eq!(ra.is_ok(), rb.is_ok());
                    continue;
                }
            };
            let hit = if from_remote {
                let r = reply_of(&a, hit);
                match a.lookup(&r) { Some(h) => h, None => continue }
            } else {
                hit
            };
            let flags = if udp { 0 } else { flags };
            let ua = a.update(hit, now, flags, 100);
            let before: Vec<FlowInfo> = b.iter().collect();
            if b.established(hit, flags).is_some() {
                prop_assert_eq!(ua, Update::Forward);
                b.touch(hit, now, 100);
            } else {
                let after: Vec<FlowInfo> = b.iter().collect();
                prop_assert_eq!(&before, &after);
                let ub = b.update(hit, now, flags, 100);
                prop_assert_eq!(ua, ub);
            }
            let (fa, fb): (Vec<FlowInfo>, Vec<FlowInfo>) = (a.iter().collect(), b.iter().collect());
            prop_assert_eq!(fa, fb);
            prop_assert_eq!(a.stats(), b.stats());
        }
    }
}

/// TCP flows to port 443 from source port `p`: inserted (when `insert` and missing) or removed
/// (when not `insert` and present), in order.
fn churn(t: &mut FlowTable, ops: &[(u16, bool)]) {
    for &(p, insert) in ops {
        let k = tcp(p, 443);
        match t.lookup(&k) {
            Some(h) if !insert => t.remove(h.flow, T0),
            None if insert => {
                let _ = t.insert(k, T0, true, SYN);
            }
            _ => {}
        }
    }
}

proptest! {
    /// Batched lookups give exactly what single lookups give, also in a small, crowded table
    /// (full buckets, overflow chains, removed entries), for original, reply and missing keys.
    #[test]
    fn batch_lookup_matches_single_in_a_crowded_table(
        ops in proptest::collection::vec((1u16..200, any::<bool>()), 1..300),
    ) {
        let mut t = table(TableConfig { max_flows: 96, ..two_gw((1, 1)) });
        churn(&mut t, &ops);
        let mut keys = Vec::new();
        for p in 1..200u16 {
            let k = tcp(p, 443);
            keys.push(k);
            if let Some(h) = t.lookup(&k) {
                keys.push(reply_of(&t, h));
            }
        }
        let mut out = vec![None; keys.len()];
        t.lookup_batch(&keys, &mut out);
        for (k, o) in keys.iter().zip(&out) {
            prop_assert_eq!(*o, t.lookup(k));
        }
    }
}

#[test]
fn epoch_moves_exactly_when_lookups_may_change() {
    let mut t = table(two_gw((1, 1)));
    let e0 = t.epoch();
    let (h, _) = t.insert(tcp(40000, 443), T0, true, SYN).unwrap();
    let e1 = t.epoch();
    assert_ne!(e1, e0, "insert");
    let r = reply_of(&t, h);
    let back = t.lookup(&r).unwrap();
    t.update(back, T0, SYN | ACK, 60);
    t.update(h, T0, ACK, 60);
    assert!(t.established(h, ACK).is_some());
    t.touch(h, T0, 60);
    assert_eq!(
        t.epoch(),
        e1,
        "lookups, updates and touches change no answer"
    );
    let g = t.flow(h.flow).unwrap().gateway().unwrap();
    t.gateway_down(g, T0, DownAction::Reset);
    let e2 = t.epoch();
    assert_ne!(e2, e1, "a reject mark drops the reply entry");
    assert_eq!(t.lookup(&r), None);
    t.remove(h.flow, T0);
    assert_ne!(t.epoch(), e2, "remove");
}

proptest! {
    /// A pipelined lookup (`lookup_start`, `lookup_advance`, `lookup_finish`) answers what
    /// `lookup` answers when it finishes, even when flows were removed, inserted or re-created
    /// between its stages (a stale candidate, a freed slot, a slot reused for another key).
    #[test]
    fn pipelined_lookup_is_right_whatever_changed_between_stages(
        setup in proptest::collection::vec(1u16..120, 1..120),
        between in proptest::collection::vec((1u16..120, any::<bool>()), 0..40),
        probes in proptest::collection::vec((1u16..120, any::<bool>()), 1..40),
    ) {
        let mut t = table(TableConfig { max_flows: 64, ..two_gw((1, 1)) });
        for p in setup {
            if t.lookup(&tcp(p, 443)).is_none() {
                let _ = t.insert(tcp(p, 443), T0, true, SYN);
            }
        }
        // Probe original and reply keys of flows as they are now.
        let keys: Vec<FlowKey> = probes
            .iter()
            .map(|&(p, reply)| {
                let k = tcp(p, 443);
                match t.lookup(&k) {
                    Some(h) if reply => reply_of(&t, h),
                    _ => k,
                }
            })
            .collect();
        let mut pending: Vec<PendingLookup> = keys.iter().map(|k| t.lookup_start(k)).collect();
        let (first, second) = between.split_at(between.len() / 2);
        churn(&mut t, first);
        for p in &mut pending {
            t.lookup_advance(p);
        }
        churn(&mut t, second);
        for (k, p) in keys.iter().zip(pending) {
            prop_assert_eq!(t.lookup_finish(k, p), t.lookup(k));
        }
        // A slot without a key finishes like a plain lookup too.
        prop_assert_eq!(t.lookup_finish(&keys[0], PendingLookup::NONE), t.lookup(&keys[0]));
    }
}

proptest! {
    /// `account(n packets, b bytes)` leaves the table as `n` touches carrying `b` bytes in all.
    #[test]
    fn account_equals_that_many_touches(
        per_dir in proptest::collection::vec((any::<bool>(), 0u64..50, 0u32..3000), 1..8),
    ) {
        let mut a = table(two_gw((1, 1)));
        let (h, _) = a.insert(tcp(40000, 443), T0, true, SYN).unwrap();
        let r = reply_of(&a, h);
        let back = a.lookup(&r).unwrap();
        let mut b = table(two_gw((1, 1)));
        b.insert(tcp(40000, 443), T0, true, SYN).unwrap();
        for (i, &(reply, n, size)) in per_dir.iter().enumerate() {
            let hit = if reply { back } else { h };
            let now = T0.plus_secs(i as u64 + 1);
            a.account(hit, now, n, n * u64::from(size));
            for _ in 0..n {
                b.touch(hit, now, size);
            }
        }
        let (fa, fb): (Vec<FlowInfo>, Vec<FlowInfo>) = (a.iter().collect(), b.iter().collect());
        prop_assert_eq!(fa, fb);
    }
}

/// The slot's small counters fold into the 64-bit totals when either would overflow: past 65,535
/// packets, and past 4 GiB, the totals stay exact.
#[test]
fn counters_survive_the_fold() {
    let mut t = table(two_gw((1, 1)));
    let (h, _) = t.insert(tcp(40000, 443), T0, true, SYN).unwrap();
    let back = t.lookup(&reply_of(&t, h)).unwrap();
    // 70,000 small packets out (the packet counter folds once), 100,000 of 65,000 bytes back
    // (6.5 GB: the byte counter folds every ~66,000 packets).
    for _ in 0..70_000 {
        t.touch(h, T0, 40);
    }
    for _ in 0..100_000 {
        t.touch(back, T0, 65_000);
    }
    let info = t.iter().next().unwrap();
    assert_eq!(info.counters.packets, [70_000, 100_000]);
    assert_eq!(info.counters.bytes, [70_000 * 40, 100_000 * 65_000]);
}

/// `scan` visits every live flow once per round, in bounded steps, and wraps.
#[test]
fn scan_sweeps_in_steps_and_wraps() {
    let mut t = table(two_gw((1, 1)));
    let mut ids = Vec::new();
    for p in 0..10u16 {
        ids.push(t.insert(tcp(40000 + p, 443), T0, true, SYN).unwrap().0.flow);
    }
    t.remove(ids[3], T0);
    let mut seen = Vec::new();
    let mut cursor = 0;
    let mut steps = 0;
    loop {
        let (flows, next) = t.scan(cursor, 4);
        seen.extend(flows.map(|f| f.id));
        steps += 1;
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    assert_eq!(steps, 3, "10 slots in steps of 4");
    let mut want: Vec<FlowId> = ids.iter().copied().filter(|&i| i != ids[3]).collect();
    want.sort();
    seen.sort();
    assert_eq!(seen, want);
    // A cursor past the end (the table never shrinks, but be safe) restarts the round.
    let (flows, next) = t.scan(1_000, 4);
    assert_eq!((flows.count(), next), (0, 0));
}

/// A flow's scratch holds what its owner stored, in the slot an IPv4 key leaves room in, and is
/// zero whenever the flow is new, re-mapped or marked for reject; IPv6 flows have none.
#[test]
fn scratch_is_kept_per_flow_and_zeroed_on_change() {
    let mut t = table(two_gw((1, 1)));
    let data: [u8; SCRATCH] = core::array::from_fn(|i| i as u8 + 1);
    let k = tcp(40000, 443);
    let (h, _) = t.insert(k, T0, true, SYN).unwrap();
    assert_eq!(t.flow(h.flow).unwrap().scratch(), Some(&[0; SCRATCH]));
    assert!(t.set_scratch(h.flow, data));
    let f = t.flow(h.flow).unwrap();
    assert_eq!(f.scratch(), Some(&data));
    // The key is untouched by what shares its slot, and both sides still find the flow.
    assert_eq!(f.key(), k);
    assert_eq!(t.lookup(&k), Some(h));
    assert_eq!(t.lookup(&reply_of(&t, h)).unwrap().flow, h.flow);
    assert_eq!(t.iter().next().unwrap().key, k);
    // Removed, the slot's next flow starts with nothing.
    t.remove(h.flow, T0);
    let (h2, _) = t.insert(tcp(40001, 443), T0, true, SYN).unwrap();
    assert_eq!(h2.flow, h.flow, "the slot is reused");
    assert_eq!(t.flow(h2.flow).unwrap().scratch(), Some(&[0; SCRATCH]));
    // Marked for reject (its gateway went down): zeroed.
    assert!(t.set_scratch(h2.flow, data));
    let g = t.flow(h2.flow).unwrap().gateway().unwrap();
    t.gateway_down(g, T0, DownAction::Reset);
    assert_eq!(t.flow(h2.flow).unwrap().scratch(), Some(&[0; SCRATCH]));
    // Cleared for a new owner.
    let (h3, _) = t.insert(tcp(40002, 443), T0, true, SYN).unwrap();
    assert!(t.set_scratch(h3.flow, data));
    t.clear_scratch();
    assert_eq!(t.flow(h3.flow).unwrap().scratch(), Some(&[0; SCRATCH]));
    // IPv6: the rest of the addresses live there; nothing to lend.
    let v6 = FlowKey::v6(
        "2001:db8:1::2".parse().unwrap(),
        "2001:db8:ff::1".parse().unwrap(),
        proto::TCP,
        1,
        443,
    );
    let (h6, _) = t.insert(v6, T0, false, SYN).unwrap();
    assert_eq!(t.flow(h6.flow).unwrap().scratch(), None);
    assert!(!t.set_scratch(h6.flow, data));
    t.clear_scratch();
    assert_eq!(t.flow(h6.flow).unwrap().key(), v6);
    assert_eq!(t.lookup(&v6.reversed()).unwrap().flow, h6.flow);
}

/// SYN-retry rotation re-maps a flow: what was precomputed for the old mapping is gone.
#[test]
fn scratch_is_zeroed_when_syn_retry_moves_the_flow() {
    let mut t = table(two_gw((1, 1)));
    let (h, _) = t.insert(tcp(30000, 443), T0, true, SYN).unwrap();
    t.update(h, T0, SYN, 60);
    assert!(t.set_scratch(h.flow, [7; SCRATCH]));
    t.update(h, T0.plus_secs(1), SYN, 60);
    assert_eq!(t.flow(h.flow).unwrap().scratch(), Some(&[7; SCRATCH]));
    let u = t.update(h, T0.plus_secs(3), SYN, 60);
    assert!(matches!(u, Update::Rotated { .. }), "{u:?}");
    assert_eq!(t.flow(h.flow).unwrap().scratch(), Some(&[0; SCRATCH]));
}

proptest! {
    /// A slot's split key joins back to the key, for both families; an IPv4 key's tail is zero
    /// and ignored (it is the scratch).
    #[test]
    fn split_keys_join_back(
        a in any::<[u8; 16]>(), b in any::<[u8; 16]>(), p in any::<u8>(),
        sp in any::<u16>(), dp in any::<u16>(), scratch in any::<[u8; 24]>(),
    ) {
        let k6 = FlowKey::v6(a.into(), b.into(), p, sp, dp);
        let (h, tail) = k6.split();
        prop_assert_eq!(FlowKey::join(&h, &tail), k6);
        prop_assert_eq!(crate::key::head_words(&h), k6.head_words());
        let k4 = FlowKey::v4(
            Ipv4Addr::new(a[0], a[1], a[2], a[3]),
            Ipv4Addr::new(b[0], b[1], b[2], b[3]),
            p, sp, dp,
        );
        let (h, tail) = k4.split();
        prop_assert_eq!(tail, [0; 24]);
        prop_assert_eq!(FlowKey::join(&h, &scratch), k4);
        prop_assert_eq!(crate::key::head_words(&h), k4.head_words());
    }
}

proptest! {
    /// The reply side's field-by-field match is exactly equality with the reply key.
    #[test]
    fn reply_match_is_key_equality(
        a in any::<[u8; 4]>(), b in any::<[u8; 4]>(), ext in any::<[u8; 4]>(),
        p in any::<u8>(), sp in any::<u16>(), dp in any::<u16>(), port in any::<u16>(),
        flip in 0usize..6,
    ) {
        let k = FlowKey::v4(a.into(), b.into(), p, sp, dp);
        let (head, _) = k.split();
        let reply = FlowKey::v4(b.into(), ext.into(), p, dp, port);
        prop_assert!(reply.is_reply_of(&head, ext, port));
        let [x, y] = [Ipv4Addr::from(b), Ipv4Addr::from(ext)];
        let other = match flip {
            0 => FlowKey::v4(Ipv4Addr::from(u32::from(x) ^ 1), y, p, dp, port),
            1 => FlowKey::v4(x, Ipv4Addr::from(u32::from(y) ^ 0x100), p, dp, port),
            2 => FlowKey::v4(x, y, p ^ 1, dp, port),
            3 => FlowKey::v4(x, y, p, dp ^ 1, port),
            4 => FlowKey::v4(x, y, p, dp, port ^ 0x8000),
            _ => FlowKey::v6(
                Ipv6Addr::from(u128::from(u32::from(x))),
                Ipv6Addr::from(u128::from(u32::from(y))),
                p, dp, port,
            ),
        };
        prop_assert!(!other.is_reply_of(&head, ext, port), "{other:?}");
    }
}
