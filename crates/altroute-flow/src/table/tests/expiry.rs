//! Idle timeouts and the timing wheel.

use super::*;

#[test]
fn timeouts_follow_state_and_expiry_is_proportional_to_expired() {
    let mut t = table(two_gw((1, 1)));
    let udp = FlowKey::v4(LAN, SRV, proto::UDP, 5353, 53);
    let u = t.insert(udp, T0, true, 0).unwrap().0;
    // Answered: the UDP timeout, not the embryonic one.
    let ur = t.lookup(&reply_of(&t, u)).unwrap();
    t.update(ur, T0, 0, 10);
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
    t.expire(T0.plus_secs(119), usize::MAX, &mut out);
    assert!(out.is_empty());
    t.expire(T0.plus_secs(120), usize::MAX, &mut out);
    assert_eq!(
        out.iter().map(|f| f.id).collect::<Vec<_>>(),
        vec![s.flow],
        "unanswered SYN: embryonic 120 s"
    );
    assert_eq!(t.stats().embryonic_expired, 1);
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
    assert_eq!(
        t.stats().embryonic_expired,
        1,
        "answered flows are not embryonic"
    );
    // The SYN that expired unanswered counted as a failure on its gateway (the window slid by then,
    // so look at the time it expired).
    let mut t2 = table(two_gw((1, 1)));
    let s2 = t2.insert(tcp(2, 443), T0, true, SYN).unwrap().0;
    t2.update(s2, T0, SYN, 0);
    let g2 = t2.flow(s2.flow).unwrap().gateway().unwrap();
    t2.expire(T0.plus_secs(120), usize::MAX, &mut out);
    assert_eq!(t2.failure_totals(g2, T0.plus_secs(120)), (0, 1));
}

#[test]
fn unanswered_flows_expire_sooner_and_an_answer_lengthens_them() {
    let mut t = table(two_gw((1, 1)));
    let udp = |p| FlowKey::v4(LAN, SRV, proto::UDP, p, 53);
    let quiet = t.insert(udp(1000), T0, true, 0).unwrap().0;
    let answered = t.insert(udp(1001), T0, true, 0).unwrap().0;
    let late = t.insert(udp(1002), T0, true, 0).unwrap().0;
    // A first answer by the fast path: the books hear of it at the flow's expiry check.
    let r = t.lookup(&reply_of(&t, answered)).unwrap();
    assert!(t.established(r, 0).is_some());
    t.touch(r, T0.plus_secs(5), 10);
    assert_eq!(t.source_usage(LAN.into()).unwrap().unanswered, 3);
    // A flow answered after it was filed under its embryonic deadline is re-filed, not expired.
    let r2 = t.lookup(&reply_of(&t, late)).unwrap();
    t.update(r2, T0.plus_secs(29), 0, 10);
    let mut out = Vec::new();
    t.expire(T0.plus_secs(29), usize::MAX, &mut out);
    assert!(out.is_empty());
    t.expire(T0.plus_secs(30), usize::MAX, &mut out);
    assert_eq!(
        out.iter().map(|f| f.id).collect::<Vec<_>>(),
        vec![quiet.flow],
        "unanswered UDP: embryonic 30 s"
    );
    assert_eq!(t.stats().embryonic_expired, 1);
    assert_eq!(
        t.source_usage(LAN.into()).unwrap().unanswered,
        0,
        "reconciled at the check"
    );
    t.audit_sources().unwrap();
    t.expire(T0.plus_secs(304), usize::MAX, &mut out);
    assert_eq!(t.len(), 2, "answered UDP: 300 s from the last packet");
    t.expire(T0.plus_secs(329), usize::MAX, &mut out);
    assert_eq!(t.len(), 0);
    assert_eq!(t.stats().embryonic_expired, 1);
    // A reused TCP 4-tuple is unanswered again: its embryonic timeout applies from the new SYN.
    let t0 = T0.plus_secs(330);
    let h = t.insert(tcp(7, 443), t0, true, SYN).unwrap().0;
    t.update(h, t0, SYN, 0);
    let rh = t.lookup(&reply_of(&t, h)).unwrap();
    t.update(rh, t0, SYN | ACK, 0);
    t.update(h, t0, ACK, 0);
    t.update(h, t0, RST, 0);
    // Held 240 s after the RST (transitory); the 4-tuple is reused before that.
    let t1 = t0.plus_secs(200);
    t.update(h, t1, SYN, 0);
    assert_eq!(t.source_usage(LAN.into()).unwrap().unanswered, 1);
    t.expire(t1.plus_secs(119), usize::MAX, &mut out);
    assert_eq!(t.len(), 1);
    t.expire(t1.plus_secs(120), usize::MAX, &mut out);
    assert_eq!(t.len(), 0, "reopened and unanswered: 120 s, not 240 s");
}

#[test]
fn expiry_work_is_bounded_by_budget_and_resumes() {
    let mut t = table(TableConfig {
        max_flows: 10_000,
        ..two_gw((1, 1))
    });
    for p in 0..5000u16 {
        // Over 20 hosts, each under its limit of flows.
        let host = Ipv4Addr::new(10, 0, 1, (p % 20) as u8);
        t.insert(
            FlowKey::v4(host, SRV, proto::UDP, 10000 + p, 53),
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
