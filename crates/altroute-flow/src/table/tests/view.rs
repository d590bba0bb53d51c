//! The control plane's view: explain, the sweeps, and load balancing as `explain` reports it.

use super::*;

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
