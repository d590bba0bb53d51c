//! The slot: split keys, scratch, and the small counters folded into the totals.

use super::*;

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
