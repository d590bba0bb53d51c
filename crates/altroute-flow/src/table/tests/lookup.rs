//! Lookups: single, batched and staged, and the epoch that says when their answers may change.

use super::*;

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
