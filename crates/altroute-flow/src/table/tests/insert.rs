//! Creating flows: translation, endpoint-independent mappings, port forwards, direct and IPv6
//! flows, refusals.

use super::*;

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
    // Removing one of the two sharing flows keeps the mapping; removing both frees it (after
    // cooling, as one of them was answered).
    let ra = t.lookup(&reply_of(&t, a)).unwrap();
    t.update(ra, T0, SYN | ACK, 0);
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
