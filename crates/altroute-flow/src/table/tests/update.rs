//! Per-packet updates: the TCP state machine, failure counting, SYN-retry rotation, the fast
//! path's `established` + `touch`, and `account`.

use super::*;

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
