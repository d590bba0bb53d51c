//! What a hostile or broken host cannot do: spoof a LAN source, poison the neighbour table from
//! off-link, source-route through the router, flood the router's WAN address with pings, or reach
//! a service the router does not run.

use super::*;

fn echo_request(
    src_mac: MacAddr,
    dst_mac: MacAddr,
    src: [u8; 4],
    dst: [u8; 4],
    id: u16,
) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(src_mac.0, dst_mac.0)
        .ipv4(src, dst, 64)
        .icmpv4_echo_request(id, 1)
        .write(&mut v, b"ping")
        .unwrap();
    v
}

/// `frame` (untagged IPv4, no options) with `opts` appended to its IPv4 header (IHL, total length
/// and header checksum fixed up).
fn with_ip_options(frame: &[u8], opts: &[u8]) -> Vec<u8> {
    assert_eq!(opts.len() % 4, 0);
    let mut f = frame[..34].to_vec();
    f.extend_from_slice(opts);
    f.extend_from_slice(&frame[34..]);
    f[14] = 0x45 + (opts.len() / 4) as u8;
    let total = u16::from_be_bytes([f[16], f[17]]) + opts.len() as u16;
    f[16..18].copy_from_slice(&total.to_be_bytes());
    f[24..26].copy_from_slice(&[0, 0]);
    let sum = checksum::checksum(&f[14..34 + opts.len()]);
    f[24..26].copy_from_slice(&sum.to_be_bytes());
    f
}

#[test]
fn spoofed_lan_sources_are_dropped_and_not_learned() {
    for fast in [true, false] {
        let mut c = ctx((1, 0), None);
        c.set_fast_path(fast);
        let spoofed = [198, 18, 0, 7];
        let f = tcp_frame(H_MAC, LAN_MAC, spoofed, SRV, 40000, 443, SYN, 64);
        assert_eq!(run(&mut c, &f, 0).0, Verdict::Drop(DropReason::Martian));
        let u = udp_frame(H_MAC, LAN_MAC, [10, 9, 0, 1], SRV, 5000, 53);
        assert_eq!(run(&mut c, &u, 0).0, Verdict::Drop(DropReason::Martian));
        assert_eq!(c.counters.drops.get(DropReason::Martian), 2);
        assert_eq!(
            c.table.len(),
            0,
            "no flow, no NAT port for a spoofed source"
        );
        assert_eq!(c.neighbors.get(Ipv4Addr::from(spoofed)), None);
        // The real host still gets through.
        let ok = tcp_frame(H_MAC, LAN_MAC, HOST, SRV, 40000, 443, SYN, 64);
        forwarded(&mut c, &ok, 0, 1);
    }
}

#[test]
fn a_dhcp_client_without_an_address_is_not_a_spoofer() {
    let mut c = ctx((1, 0), None);
    let mut v = Vec::new();
    PacketBuilder::ethernet2(H_MAC.0, [0xff; 6])
        .ipv4([0, 0, 0, 0], [255, 255, 255, 255], 64)
        .udp(68, 67)
        .write(&mut v, &[1; 240])
        .unwrap();
    assert_eq!(
        run(&mut c, &v, 0).0,
        Verdict::Drop(DropReason::LocalNoService)
    );
    // From 0.0.0.0 anywhere else it is spoofed.
    let f = udp_frame(H_MAC, LAN_MAC, [0, 0, 0, 0], SRV, 68, 67);
    assert_eq!(run(&mut c, &f, 0).0, Verdict::Drop(DropReason::Martian));
}

#[test]
fn source_routed_packets_are_neither_forwarded_nor_answered() {
    let mut c = ctx((1, 0), None);
    let lsrr = [wire::ipv4::OPT_LSRR, 7, 4, 192, 0, 2, 99, 0];
    let ssrr = [1, wire::ipv4::OPT_SSRR, 7, 4, 192, 0, 2, 99];
    let syn = tcp_frame(H_MAC, LAN_MAC, HOST, SRV, 40000, 443, SYN, 64);
    for opts in [&lsrr[..], &ssrr[..]] {
        let f = with_ip_options(&syn, opts);
        assert_eq!(
            run(&mut c, &f, 0).0,
            Verdict::Drop(DropReason::Ipv4OptionsRejected)
        );
        let ping = with_ip_options(&echo_request(G1_MAC, W1_MAC, SRV, EXT1, 9), opts);
        assert_eq!(
            run(&mut c, &ping, 1).0,
            Verdict::Drop(DropReason::Ipv4OptionsRejected)
        );
    }
    assert_eq!(c.table.len(), 0);
    // Other options (record route) are forwarded as before.
    let rr = [7, 7, 4, 0, 0, 0, 0, 0];
    forwarded(&mut c, &with_ip_options(&syn, &rr), 0, 1);
}

#[test]
fn a_ping_flood_to_a_wan_address_is_answered_at_a_bounded_rate() {
    let mut c = ctx((1, 0), None);
    let rate = c.config().options.wan_echo_replies_per_sec;
    let mut replies = 0;
    for i in 0..(rate + 50) {
        let f = echo_request(G1_MAC, W1_MAC, SRV, EXT1, 2000 + i as u16);
        match run(&mut c, &f, 1).0 {
            Verdict::Reply { .. } => replies += 1,
            Verdict::Drop(DropReason::EchoRateLimited) => {}
            v => panic!("{v:?}"),
        }
    }
    assert_eq!(replies, rate, "one second's worth at the same instant");
    assert_eq!(c.counters.drops.get(DropReason::EchoRateLimited), 50);
    // The LAN side is not limited.
    for i in 0..(rate + 50) {
        let f = echo_request(H_MAC, LAN_MAC, HOST, [10, 0, 0, 1], 3000 + i as u16);
        assert!(matches!(run(&mut c, &f, 0).0, Verdict::Reply { .. }));
    }
}

#[test]
fn traffic_for_a_service_the_router_does_not_run_is_dropped_by_name() {
    let mut c = ctx((1, 0), None);
    let ssh = tcp_frame(H_MAC, LAN_MAC, HOST, [10, 0, 0, 1], 40000, 22, SYN, 64);
    assert_eq!(
        run(&mut c, &ssh, 0).0,
        Verdict::Drop(DropReason::LocalNoService)
    );
    assert_eq!(c.counters.control, 0, "nothing goes to the control thread");
}

/// An ARP reply or gratuitous ARP from `src` (`mac`) on link `link`, to the router's `target`.
fn arp_frame(op: u16, mac: MacAddr, src: [u8; 4], target: [u8; 4]) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&mac.0);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, op as u8]);
    f.extend_from_slice(&mac.0);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target);
    f.resize(60, 0);
    f
}

#[test]
fn an_arp_flood_from_the_lan_is_shared_only_as_changes_at_a_bounded_rate() {
    let mut c = ctx((1, 0), None);
    let rate = c.config().options.lan_learned_shared_per_sec;
    // The same reply over and over: learned once, shared once, never sent to the control
    // thread whole.
    for _ in 0..100 {
        let v = run(&mut c, &arp_frame(2, H_MAC, HOST, [10, 0, 0, 1]), 0).0;
        assert_eq!(v, Verdict::Drop(DropReason::ArpLearned));
    }
    assert_eq!(c.counters.control, 0);
    assert_eq!(c.take_learned().count(), 1);
    // A MAC-flipping flood: every frame a change, but only `rate` a second are shared (the
    // first reply above took one of this second's tokens).
    for i in 0..(2 * rate) {
        let mac = MacAddr([2, 0, 0, 9, (i >> 8) as u8, i as u8]);
        run(&mut c, &arp_frame(2, mac, HOST2, [10, 0, 0, 1]), 0);
    }
    assert_eq!(c.take_learned().count(), rate as usize - 1);
    assert_eq!(c.counters.learned_unshared, u64::from(rate) + 1);
    assert_eq!(c.counters.control, 0);
    // Gratuitous ARP from a gateway on a WAN port always goes on whole (its liveness and MAC).
    for _ in 0..5 {
        let g = arp_frame(1, G1_MAC, [192, 0, 2, 2], [192, 0, 2, 2]);
        assert_eq!(
            run(&mut c, &g, 1).0,
            Verdict::Control(ControlReason::ArpReply)
        );
    }
    assert_eq!(c.counters.control, 5);
}

#[test]
fn probe_replies_go_to_the_control_thread_only_from_probe_targets() {
    let mut c = ctx((1, 0), None);
    let mut cfg = c.config().clone();
    cfg.options.probe_targets = vec![Ipv4Addr::new(192, 0, 2, 2), Ipv4Addr::from(SRV)];
    let mut c = Context::new(
        cfg,
        std::mem::replace(
            &mut c.table,
            FlowTable::new(TableConfig::default()).unwrap(),
        ),
    )
    .unwrap();
    let reply = |src: [u8; 4]| {
        let mut v = Vec::new();
        PacketBuilder::ethernet2(G1_MAC.0, W1_MAC.0)
            .ipv4(src, EXT1, 64)
            .icmpv4_echo_reply(17, 1)
            .write(&mut v, b"probe")
            .unwrap();
        v
    };
    assert_eq!(
        run(&mut c, &reply(SRV), 1).0,
        Verdict::Control(ControlReason::ProbeReply)
    );
    assert_eq!(
        run(&mut c, &reply([203, 0, 113, 66]), 1).0,
        Verdict::Drop(DropReason::Unsolicited)
    );
}

#[test]
fn a_host_over_its_limit_is_told_at_once_and_others_are_not_affected() {
    let c = ctx((1, 0), None);
    let cfg = c.config().clone();
    let table = FlowTable::new(TableConfig {
        gateways: c.table.gateways().to_vec(),
        limits: altroute_flow::Limits {
            flows_per_source: Some(3),
            ..Default::default()
        },
        ..TableConfig::default()
    })
    .unwrap();
    let mut c = Context::new(cfg, table).unwrap();
    for sp in 40000..40003 {
        forwarded(
            &mut c,
            &tcp_frame(H_MAC, LAN_MAC, HOST, SRV, sp, 443, SYN, 64),
            0,
            1,
        );
    }
    // The fourth connection of the host: ICMP 3/13 back to it, nothing out.
    let f = tcp_frame(H_MAC, LAN_MAC, HOST, SRV, 40003, 443, SYN, 64);
    let (v, out) = run(&mut c, &f, 0);
    assert!(matches!(v, Verdict::Reply { .. }), "{v:?}");
    assert_eq!(&out[0..6], &H_MAC.0);
    assert_eq!(
        (out[34], out[35]),
        (3, 13),
        "destination unreachable, prohibited"
    );
    assert_checksums(&out);
    assert_eq!(c.counters.drops.get(DropReason::HostLimit), 1);
    // Another host is not held back.
    forwarded(
        &mut c,
        &tcp_frame(H2_MAC, LAN_MAC, HOST2, SRV, 40000, 443, SYN, 64),
        0,
        1,
    );
}
