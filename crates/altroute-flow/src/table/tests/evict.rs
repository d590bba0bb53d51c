//! Early drop when the table is full.

use super::*;

#[test]
fn full_table_early_drops_unanswered_then_refuses() {
    let mut t = table(TableConfig {
        max_flows: 4,
        limits: Limits {
            flows_per_source: Some(100),
            ..Limits::default()
        },
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
