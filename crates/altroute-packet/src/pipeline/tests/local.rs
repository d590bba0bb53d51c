//! The router's own frames and the named drops: time exceeded, ARP answers and requests, RSTs for
//! flows of dead gateways, unsolicited and private traffic, generated frames without offload.

use super::*;

#[test]
fn ttl_expiry_answers_time_exceeded() {
    let mut c = ctx((1, 0), None);
    let f = tcp_frame(H_MAC, LAN_MAC, HOST, SRV, 40000, 443, SYN, 1);
    let (v, out) = run(&mut c, &f, 0);
    assert!(matches!(v, Verdict::Reply { .. }), "{v:?}");
    assert_eq!(&out[0..6], &H_MAC.0);
    assert_eq!(ips(&out).0, [10, 0, 0, 1]);
    assert_eq!(out[34], 11, "ICMP time exceeded");
    assert_checksums(&out);
}

#[test]
fn arp_reply_for_own_address() {
    let mut c = ctx((1, 0), None);
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&H_MAC.0);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&H_MAC.0);
    f.extend_from_slice(&HOST);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&[10, 0, 0, 1]);
    f.resize(60, 0);
    let (v, out) = run(&mut c, &f, 0);
    assert_eq!(v, Verdict::Reply { len: 60 });
    assert_eq!(&out[0..6], &H_MAC.0);
    assert_eq!(&out[20..22], &[0, 2], "is-at");
    assert_eq!(&out[22..28], &LAN_MAC.0);
    assert_eq!(c.neighbors.get(Ipv4Addr::from(HOST)), Some(H_MAC));
    // A request for someone else: learned, not answered.
    f[38..42].copy_from_slice(&[10, 0, 0, 77]);
    assert_eq!(run(&mut c, &f, 0).0, Verdict::Drop(DropReason::ArpNotForUs));
}

#[test]
fn unsolicited_and_private_are_dropped_and_counted() {
    let mut c = ctx((1, 0), None);
    let f = tcp_frame(G1_MAC, W1_MAC, SRV, EXT1, 443, 1234, SYN, 60);
    assert_eq!(run(&mut c, &f, 1).0, Verdict::Drop(DropReason::Unsolicited));
    let p = tcp_frame(H_MAC, LAN_MAC, HOST, [192, 168, 1, 1], 1, 80, SYN, 64);
    assert_eq!(
        run(&mut c, &p, 0).0,
        Verdict::Drop(DropReason::PrivateDestination)
    );
    assert_eq!(c.counters.drops.get(DropReason::Unsolicited), 1);
    assert_eq!(c.counters.drops.get(DropReason::PrivateDestination), 1);
    // Garbage never panics and is counted.
    let (v, _) = run(&mut c, &[1, 2, 3], 0);
    assert!(matches!(v, Verdict::Drop(_)));
}

#[test]
fn dead_gateway_flows_get_rst() {
    let mut c = ctx((1, 0), None);
    let syn = tcp_frame(H_MAC, LAN_MAC, HOST, SRV, 40000, 443, SYN, 64);
    run(&mut c, &syn, 0);
    let synack = tcp_frame(G1_MAC, W1_MAC, SRV, EXT1, 443, 40000, SYN | ACK, 50);
    run(&mut c, &synack, 1);
    c.table.gateway_down(GatewayId(0), T, DownAction::Reset);
    let data = tcp_frame(H_MAC, LAN_MAC, HOST, SRV, 40000, 443, ACK, 64);
    let (v, out) = run(&mut c, &data, 0);
    assert!(matches!(v, Verdict::Reply { .. }), "{v:?}");
    assert_eq!(ips(&out), (SRV, HOST, 64));
    assert_eq!(out[14 + 20 + 13] & RST, RST);
    assert_checksums(&out);
    // The retry goes out by the other link.
    c.table
        .set_gateway_state(GatewayId(1), altroute_flow::GatewayState::Up);
    let mut gws = c.table.gateways().to_vec();
    gws[1].weight = 1;
    c.table.set_gateways(gws).unwrap();
    let out = forwarded(&mut c, &syn, 0, 2);
    assert_eq!(ips(&out).0, EXT2);
}

/// Drops that used to share the catch-all reason have their own: a port forward's connection
/// whose inside key a live flow already holds, a packet to a NAT address that is none of the
/// ports' addresses, a frame longer than its buffer.
#[test]
fn named_drops_for_collisions_and_misuse() {
    let mut c = ctx((1, 0), None);
    // The forwarded host itself opened 10.0.0.3:80 -> SRV:5555 (out through isp1).
    forwarded(
        &mut c,
        &tcp_frame(H2_MAC, LAN_MAC, HOST2, SRV, 80, 5555, SYN, 64),
        0,
        1,
    );
    // The same remote end connects to the port forward: its inside key is taken.
    let syn = tcp_frame(G1_MAC, W1_MAC, SRV, EXT1, 5555, 8080, SYN, 50);
    let (v, _) = run(&mut c, &syn, 1);
    assert_eq!(v, Verdict::Drop(DropReason::FlowExists));
    assert_eq!(c.counters.drops.get(DropReason::FlowExists), 1);

    // isp1 translates to 192.0.2.9, on wan1's subnet but none of the router's addresses.
    let base = ctx((1, 0), None);
    let table = FlowTable::new(TableConfig {
        gateways: vec![
            Gateway::new("isp1", Some(Ipv4Addr::new(192, 0, 2, 9).into())).weight(1),
            Gateway::new("isp2", Some(Ipv4Addr::from(EXT2).into())).weight(0),
        ],
        ..TableConfig::default()
    })
    .unwrap();
    let mut c = Context::new(base.config().clone(), table).unwrap();
    let to_nat = tcp_frame(H_MAC, LAN_MAC, HOST, [192, 0, 2, 9], 40000, 80, SYN, 64);
    let (v, _) = run(&mut c, &to_nat, 0);
    assert_eq!(v, Verdict::Drop(DropReason::HairpinUnsupported));

    let f = udp_frame(H_MAC, LAN_MAC, HOST, SRV, 1, 53);
    let mut buf = f.clone();
    let v = c.process(&mut buf, f.len() + 1, 0, &mut TxOffload::default(), T);
    assert_eq!(v, Verdict::Drop(DropReason::FrameOverrunsBuffer));
    assert_eq!(Verdict::default(), Verdict::Drop(DropReason::Unprocessed));
    assert_eq!(c.counters.drops.get(DropReason::Unprocessed), 0);
}

#[test]
fn arp_request_from_a_group_sender_is_neither_answered_nor_learned() {
    let mut c = ctx((1, 0), None);
    // A request for the router's address whose sender hardware address is a multicast MAC
    // (seen in the tcpdump corpus): answering would send the reply to a multicast group.
    let group = MacAddr([0x37, 0x1f, 0x29, 0xda, 0x2d, 0x79]);
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&H_MAC.0);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&group.0);
    f.extend_from_slice(&HOST);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&[10, 0, 0, 1]);
    f.resize(60, 0);
    assert_eq!(run(&mut c, &f, 0).0, Verdict::Drop(DropReason::BadSrcMac));
    assert_eq!(c.neighbors.get(Ipv4Addr::from(HOST)), None);
    assert_eq!(c.counters.replies, 0);
}

#[test]
fn arp_requests_sent_to_resolve_count_their_bytes() {
    let mut c = ctx((1, 0), None);
    // The forwarded host's MAC is unknown: the inbound SYN becomes an ARP request on the LAN.
    let syn = tcp_frame(
        G1_MAC,
        W1_MAC,
        [203, 0, 113, 99],
        EXT1,
        55555,
        8080,
        SYN,
        50,
    );
    let (v, out) = run(&mut c, &syn, 1);
    assert_eq!(
        v,
        Verdict::Forward {
            port: PortId(0),
            len: 60
        }
    );
    assert_eq!(&out[12..14], &[0x08, 0x06]);
    assert_eq!(c.counters.arp_requests, 1);
    assert_eq!(c.counters.tx_frames[0], 1);
    assert_eq!(
        c.counters.tx_bytes[0], 60,
        "tx_bytes counts what tx_frames counts"
    );
}

/// A frame the pipeline replaces with one it built carries none of the packet's offload work:
/// an ARP request in place of a "checksum not ready" GSO segment, an ICMP error in place of one
/// whose TTL ran out.
#[test]
fn generated_frames_carry_no_offload() {
    let gso = |f: &mut Vec<u8>| {
        let mut o = make_partial(f).unwrap();
        o.gso = Some(crate::egress::Gso {
            kind: crate::egress::GsoKind::TcpV4,
            ecn: false,
            size: 1448,
            hdr_len: 66,
        });
        o
    };
    // The gateway's MAC is not known yet: the SYN becomes an ARP request for it.
    let mut c = ctx_gw_macs((1, 0), None, [None, None]);
    let mut f = tcp_frame(H_MAC, LAN_MAC, HOST, SRV, 40000, 443, SYN, 64);
    let mut o = gso(&mut f);
    let n = f.len();
    f.resize(n + 64, 0);
    let v = c.process(&mut f, n, 0, &mut o, T);
    assert_eq!(
        v,
        Verdict::Forward {
            port: PortId(1),
            len: 60
        }
    );
    assert_eq!(o, TxOffload::NONE);
    // TTL 1: answered with time exceeded.
    let mut c = ctx((1, 0), None);
    let mut f = tcp_frame(H_MAC, LAN_MAC, HOST, SRV, 40000, 443, SYN, 1);
    let mut o = gso(&mut f);
    let n = f.len();
    f.resize(n + 128, 0);
    let v = c.process(&mut f, n, 0, &mut o, T);
    assert!(matches!(v, Verdict::Reply { .. }), "{v:?}");
    assert_eq!(o, TxOffload::NONE);
}

/// What a context learns from frames the control plane never sees — a LAN host's IPv4 frames, an
/// ARP request to the router — it hands out once through `take_learned`, for the other workers;
/// an ARP reply goes to the control plane whole instead, and nothing already known is repeated.
#[test]
fn neighbours_heard_from_frames_are_handed_out_once() {
    let mut c = ctx((1, 0), None);
    assert_eq!(c.take_learned().count(), 0);
    let f = udp_frame(H_MAC, LAN_MAC, HOST, SRV, 5353, 53);
    run(&mut c, &f, 0);
    run(&mut c, &f, 0);
    let got: Vec<_> = c.take_learned().collect();
    assert_eq!(got, vec![(Ipv4Addr::from(HOST), H_MAC, 0)]);
    assert_eq!(c.take_learned().count(), 0, "handed out once");
    // A new MAC for the same host is handed out again.
    let moved = MacAddr([2, 0, 0, 0, 0, 0x77]);
    run(&mut c, &udp_frame(moved, LAN_MAC, HOST, SRV, 5353, 53), 0);
    assert_eq!(
        c.take_learned().collect::<Vec<_>>(),
        vec![(Ipv4Addr::from(HOST), moved, 0)]
    );
    // An ARP request to the router (answered: the control plane does not see it).
    let arp = |op: u8, tpa: [u8; 4]| {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&H2_MAC.0);
        f.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, op]);
        f.extend_from_slice(&H2_MAC.0);
        f.extend_from_slice(&HOST2);
        f.extend_from_slice(&[0; 6]);
        f.extend_from_slice(&tpa);
        f.resize(60, 0);
        f
    };
    assert!(matches!(
        run(&mut c, &arp(1, [10, 0, 0, 1]), 0).0,
        Verdict::Reply { .. }
    ));
    assert_eq!(
        c.take_learned().collect::<Vec<_>>(),
        vec![(Ipv4Addr::from(HOST2), H2_MAC, 0)]
    );
    // An ARP reply on a LAN port is handed out like any other frame's sender (only a WAN
    // port's go up whole: the gateways').
    let mut c = ctx((1, 0), None);
    let v = run(&mut c, &arp(2, [10, 0, 0, 1]), 0).0;
    assert_eq!(v, Verdict::Drop(DropReason::ArpLearned));
    assert_eq!(
        c.take_learned().collect::<Vec<_>>(),
        vec![(Ipv4Addr::from(HOST2), H2_MAC, 0)]
    );
    // Bounded: no allocation however many changes come between two calls (here a host whose
    // MAC flips on every frame; the rate limit raised out of the way).
    let mut cfg = c.config().clone();
    cfg.options.lan_learned_shared_per_sec = 100_000;
    let table = std::mem::replace(
        &mut c.table,
        FlowTable::new(TableConfig::default()).unwrap(),
    );
    let mut c = Context::new(cfg, table).unwrap();
    for i in 0..LEARNED_MAX + 10 {
        let mac = MacAddr([2, 0, 0, 1, 0, (i % 2) as u8]);
        run(&mut c, &udp_frame(mac, LAN_MAC, HOST, SRV, 5353, 53), 0);
    }
    assert_eq!(c.take_learned().count(), LEARNED_MAX);
}
