//! Link events: a gateway going down, coming back, and failback.

use super::*;

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
