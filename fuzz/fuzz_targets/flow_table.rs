//! The flow table under any sequence of operations (create in all four ways, look up, update,
//! touch, remove, expire, gateways down and up, states, batched lookups, scans, explain), driven
//! by the fuzz bytes. After every operation the whole table is checked:
//! - the live count equals the flows `iter` yields, each gateway's count its flows, a full `scan`
//!   sweep the same flows; the creation/expiry/removal counters add up to the live count;
//! - every flow is found from its key (original direction) and, unless marked for reject, from
//!   its reply key (reply direction); no two flows share a reply key (external tuple);
//! - a translated TCP, UDP or ICMP flow's external port maps back to its inside endpoint
//!   (`mapping`), and two flows of one inside endpoint on one gateway share their external tuple
//!   (endpoint-independent mapping);
//! - a flow that was answered never changes gateway while that gateway is up, and forgets the
//!   answer only when a new connection reuses a closed one's 4-tuple.
#![no_main]

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use altroute_flow::tcp::flags::{ACK, FIN, RST, SYN};
use altroute_flow::{
    Dir, DownAction, Failback, FlowId, FlowKey, FlowTable, Gateway, GatewayId, GatewayState,
    NatConfig, Policy, PortPartition, ReasonKind, Sticky, TableConfig, TcpState, Time, proto,
};
use libfuzzer_sys::fuzz_target;

/// The fuzz bytes, read as needed; zeros once they run out.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
}

const GATEWAYS: u8 = 4;

/// Port forwards, reserved on every gateway: (protocol, external port, inside endpoint). One
/// external port is inside the dynamic range, one outside it.
const FORWARDS: [(u8, u16, Ipv4Addr, u16); 3] = [
    (proto::TCP, 1030, Ipv4Addr::new(10, 0, 0, 3), 80),
    (proto::UDP, 1031, Ipv4Addr::new(10, 0, 0, 4), 5060),
    (proto::TCP, 8080, Ipv4Addr::new(10, 0, 0, 5), 8080),
];

fn key(b: &mut Bytes<'_>) -> FlowKey {
    let sel = b.u8();
    let protos = [proto::TCP, proto::UDP, proto::ICMP, 47];
    let p = protos[usize::from(sel & 3)];
    // Few hosts, servers and ports, so that keys and mappings collide.
    let (sport, dport) = if sel & 0x10 != 0 {
        (b.u16(), b.u16())
    } else {
        (
            1000 + u16::from(b.u8() & 7),
            [80, 443, 53, 8080][usize::from(b.u8() & 3)],
        )
    };
    if sel & 0x20 != 0 {
        let h = b.u8();
        return FlowKey::v6(
            Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, u16::from(h & 3)),
            Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, u16::from(h >> 6)),
            p,
            sport,
            dport,
        );
    }
    let h = b.u8();
    // Mostly inside hosts; sometimes an outside one (a port forward's remote).
    let src = Ipv4Addr::new(10, 0, 0, 2 + (h & 7));
    let dst = Ipv4Addr::new(203, 0, 113, 10 + ((h >> 3) & 3));
    if sel & 0x40 != 0 {
        FlowKey::v4(dst, src, p, dport, sport)
    } else {
        FlowKey::v4(src, dst, p, sport, dport)
    }
}

fn tcp_flags(b: u8) -> u8 {
    [SYN, SYN | ACK, ACK, FIN | ACK, RST, 0, RST | ACK, b][usize::from(b & 7)]
}

fn table(b: &mut Bytes<'_>) -> FlowTable {
    let sel = b.u8();
    let workers = 1 + u16::from(sel & 1);
    let partition = PortPartition::new((1024, 1024 + 127), 64, workers, workers - 1)
        .expect("a valid partition");
    let cfg = TableConfig {
        max_flows: 8 + u32::from(b.u8() & 31),
        nat: NatConfig {
            partition,
            cooldown_secs: if sel & 2 != 0 { 0 } else { 120 },
        },
        accounting: sel & 4 != 0,
        tcp_loose: sel & 8 != 0,
        gateways: vec![
            Gateway::new("a", Some(Ipv4Addr::new(192, 0, 2, 1).into())).weight(2),
            Gateway::new("b", Some(Ipv4Addr::new(198, 51, 100, 1).into())),
            // Shares a's address (two links of one ISP behind one NAT address).
            Gateway::new("c", Some(Ipv4Addr::new(192, 0, 2, 1).into())).tier(1),
            // Routed, not translated.
            Gateway::new("d", None).tier(1),
        ],
        policy: Policy {
            sticky: if sel & 16 != 0 {
                Sticky::Source
            } else {
                Sticky::Flow
            },
            syn_retry: if sel & 32 != 0 { None } else { Some(2) },
            ..Policy::default()
        },
        ..TableConfig::default()
    };
    let mut t = FlowTable::new(cfg).expect("a valid table");
    for g in 0..GATEWAYS {
        for (proto, port, _, _) in FORWARDS {
            t.reserve_port(GatewayId(g), proto, port)
                .expect("a port forward on an empty table");
        }
    }
    t
}

/// A flow as last checked: (id, key, created) identifies it across operations.
type Ident = (FlowId, FlowKey, u32);

/// The gateway and TCP state of each answered flow when last checked.
type Pinned = HashMap<Ident, (GatewayId, TcpState)>;

fn check(t: &FlowTable, pinned: &mut Pinned) {
    let flows: Vec<_> = t.iter().collect();
    assert_eq!(t.len(), flows.len(), "live count");
    let s = t.stats();
    assert_eq!(
        s.created - s.expired - s.removed - s.early_dropped,
        t.len() as u64,
        "created - expired - removed - early dropped = live: {s:?}"
    );
    for g in 0..GATEWAYS {
        let on = flows
            .iter()
            .filter(|f| f.gateway == Some(GatewayId(g)))
            .count();
        assert_eq!(
            t.flows_on(GatewayId(g)) as usize,
            on,
            "flows on gateway {g}"
        );
    }
    // A full incremental sweep yields the same flows.
    let (mut from, mut swept) = (0u32, Vec::new());
    loop {
        let (it, next) = t.scan(from, 7);
        swept.extend(it.map(|f| f.id));
        if next == 0 {
            break;
        }
        assert!(next > from, "scan goes forward");
        from = next;
    }
    assert_eq!(
        swept,
        flows.iter().map(|f| f.id).collect::<Vec<_>>(),
        "scan"
    );

    let mut replies = HashSet::new();
    let mut eim: HashMap<(IpAddr, u16, u8, GatewayId), (IpAddr, u16)> = HashMap::new();
    let mut live = HashSet::new();
    for f in &flows {
        live.insert((f.id, f.key, f.created));
        let h = t.lookup(&f.key).expect("a flow is found from its key");
        assert_eq!((h.flow, h.dir), (f.id, Dir::Orig), "{f:?}");
        let view = t.flow(f.id).expect("a live flow has a view");
        assert_eq!(view.key(), f.key);
        if view.is_rejected() {
            continue;
        }
        let h = t
            .lookup(&f.reply_key)
            .expect("a flow is found from its reply key");
        assert_eq!((h.flow, h.dir), (f.id, Dir::Reply), "{f:?}");
        assert!(
            replies.insert(f.reply_key),
            "two flows share the reply key of {f:?}"
        );
        // (Protocols without ports are translated by address only: no mapping to check.)
        let ported = matches!(f.key.proto, proto::TCP | proto::UDP | proto::ICMP);
        if let (Some((ext, port)), Some(g), true) = (f.nat, f.gateway, ported) {
            let inside = (f.key.src_ip(), f.key.sport);
            assert_eq!(t.mapping(ext, f.key.proto, port), Some(inside), "{f:?}");
            if f.reason != ReasonKind::Inbound
                && let Some(prev) = eim.insert((inside.0, inside.1, f.key.proto, g), (ext, port))
            {
                assert_eq!(prev, (ext, port), "endpoint-independent mapping: {f:?}");
            }
        }
        let ident = (f.id, f.key, f.created);
        match (f.replied, f.gateway) {
            (true, Some(g)) => {
                let (was, _) = *pinned.entry(ident).or_insert((g, f.tcp));
                if t.gateways()[was.index()].state.is_usable() {
                    assert_eq!(
                        g, was,
                        "an answered flow moved while its gateway was up: {f:?}"
                    );
                }
                pinned.insert(ident, (was, f.tcp));
            }
            _ => {
                // Only a new connection on a closed flow's 4-tuple forgets the answer.
                if let Some((_, tcp)) = pinned.remove(&ident) {
                    assert!(
                        matches!(tcp, TcpState::Closed | TcpState::TimeWait),
                        "an answered flow in state {tcp:?} forgot its answer: {f:?}"
                    );
                }
            }
        }
    }
    pinned.retain(|k, _| live.contains(k));
}

/// `FUZZ_TRACE=1` prints every operation (to read a crasher).
fn trace() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("FUZZ_TRACE").is_some())
}

fuzz_target!(|data: &[u8]| {
    let mut b = Bytes(data);
    let mut t = table(&mut b);
    let mut now = Time::from_secs(1000);
    let mut keys: Vec<FlowKey> = Vec::new();
    let mut pinned = Pinned::new();
    let mut out = Vec::new();
    let mut ops = 0;
    while !b.0.is_empty() && ops < 400 {
        ops += 1;
        let op = b.u8();
        let known = |b: &mut Bytes<'_>, keys: &[FlowKey]| -> Option<FlowKey> {
            let i = usize::from(b.u8());
            (!keys.is_empty()).then(|| keys[i % keys.len()])
        };
        match op % 16 {
            0..=2 => {
                let k = key(&mut b);
                let flags = tcp_flags(b.u8());
                let translate = op & 0x80 == 0;
                if t.insert(k, now, translate, flags).is_ok() {
                    keys.push(k);
                }
            }
            3 => {
                // A connection from outside through a port forward.
                let (proto, ext_port, inside, inside_port) = FORWARDS[usize::from(op >> 4) % 3];
                let g = GatewayId(b.u8() % GATEWAYS);
                let remote = Ipv4Addr::new(203, 0, 113, 10 + (b.u8() & 3));
                let k = FlowKey::v4(
                    inside,
                    remote,
                    proto,
                    inside_port,
                    40000 + u16::from(b.u8() & 3),
                );
                if t.insert_inbound(k, g, ext_port, now).is_ok() {
                    keys.push(k);
                }
            }
            4 => {
                let k = key(&mut b);
                let g = GatewayId(b.u8() % (GATEWAYS + 1));
                if t.insert_via(k, g, now).is_ok() {
                    keys.push(k);
                }
            }
            5 => {
                let k = key(&mut b);
                if t.insert_direct(k, now).is_ok() {
                    keys.push(k);
                }
            }
            6 | 7 => {
                // A packet of a known flow, either way.
                let Some(k) = known(&mut b, &keys) else {
                    continue;
                };
                let flags = tcp_flags(b.u8());
                let bytes = u32::from(b.u16());
                let Some(h) = t.lookup(&k) else { continue };
                let h = if op & 0x80 != 0 {
                    let Some(f) = t.iter().find(|f| f.id == h.flow) else {
                        continue;
                    };
                    match t.lookup(&f.reply_key) {
                        Some(h) => h,
                        None => continue,
                    }
                } else {
                    h
                };
                if op & 0x40 != 0 && t.established(h, flags).is_some() {
                    t.touch(h, now, bytes);
                } else if t.update(h, now, flags, bytes) == altroute_flow::Update::Reject {
                    t.remove(h.flow, now);
                }
            }
            8 => {
                let Some(k) = known(&mut b, &keys) else {
                    continue;
                };
                if let Some(h) = t.lookup(&k) {
                    t.remove(h.flow, now);
                    // Removing twice does nothing.
                    let len = t.len();
                    t.remove(h.flow, now);
                    assert_eq!(t.len(), len);
                }
            }
            9 => {
                let step = b.u8();
                now = if step < 200 {
                    now.plus_millis(u64::from(step) * 10)
                } else {
                    now.plus_secs(u64::from(step - 199) * 60)
                };
                out.clear();
                t.expire(now, 1 + usize::from(b.u8()), &mut out);
                for f in &out {
                    assert!(
                        t.flow(f.id).is_none(),
                        "an expired flow is still live: {f:?}"
                    );
                }
            }
            10 => {
                let g = GatewayId(b.u8() % (GATEWAYS + 1));
                let action = if op & 0x80 != 0 {
                    DownAction::Keep
                } else {
                    DownAction::Reset
                };
                for f in t.gateway_down(g, now, action) {
                    assert_eq!(
                        f.gateway,
                        Some(g),
                        "gateway_down returned another gateway's flow"
                    );
                }
            }
            11 => {
                let g = GatewayId(b.u8() % (GATEWAYS + 1));
                let fb = if op & 0x80 != 0 {
                    Failback::Move
                } else {
                    Failback::Stay
                };
                for f in t.gateway_up(g, now, fb) {
                    assert_ne!(f.gateway, Some(g));
                }
            }
            12 => {
                let g = GatewayId(b.u8() % (GATEWAYS + 1));
                let states = [
                    GatewayState::Up,
                    GatewayState::Degraded,
                    GatewayState::Down,
                    GatewayState::Disabled,
                    GatewayState::Forced,
                ];
                t.set_gateway_state(g, states[usize::from(b.u8()) % states.len()]);
            }
            13 => {
                // Batched lookups agree with single ones (known keys, their replies, others).
                let mut batch: Vec<FlowKey> = Vec::new();
                for _ in 0..1 + (b.u8() & 15) {
                    match known(&mut b, &keys) {
                        Some(k) if op & 0x80 == 0 => batch.push(k),
                        _ => batch.push(key(&mut b)),
                    }
                }
                let mut got = vec![None; batch.len()];
                t.lookup_batch(&batch, &mut got);
                for (k, g) in batch.iter().zip(&got) {
                    assert_eq!(*g, t.lookup(k), "lookup_batch and lookup differ for {k:?}");
                }
            }
            14 => {
                let k = key(&mut b);
                let e = t.explain(&k, now);
                assert_eq!(e.flow.map(|f| f.id), t.lookup(&k).map(|h| h.flow));
                let _ = e.to_string();
            }
            _ => {
                let Some(k) = known(&mut b, &keys) else {
                    continue;
                };
                if let Some(h) = t.lookup(&k) {
                    let v = [b.u8(); altroute_flow::SCRATCH];
                    if t.set_scratch(h.flow, v) {
                        assert_eq!(t.flow(h.flow).and_then(|f| f.scratch().copied()), Some(v));
                    }
                }
            }
        }
        if trace() {
            eprintln!("op {op:#04x} ({}) at {now:?}: {} flows", op % 16, t.len());
            for f in t.iter() {
                eprintln!("  {f:?}");
            }
        }
        check(&t, &mut pinned);
    }
});
