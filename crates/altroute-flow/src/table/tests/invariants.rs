//! Whole-table invariants under random operations (NAT reversible, mappings
//! endpoint-independent, no shared external tuple, answered flows stay put).

use super::*;

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
    #![proptest_config(ProptestConfig { cases: cases(64), ..ProptestConfig::default() })]

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
                if let Some(g) = pinned.get(&f.key)
                    && t.gateways()[g.index()].state.is_usable() {
                        prop_assert_eq!(f.gateway, Some(*g), "an answered flow moved while its gateway was up");
                    }
            }
            pinned.retain(|k, _| live_keys.contains(k));
        }
    }
}
