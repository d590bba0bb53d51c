//! The offload programs in a namespace: the verifier accepts both, they attach (tcx ingress,
//! `SO_ATTACH_BPF`) and detach, and a frame that matches a map entry is rewritten and redirected
//! by the kernel (fields and checksums checked on the far side) without reaching the packet
//! socket, while frames that do not match (other port, SYN) reach it and are not forwarded. The
//! same for UDP, with a checksum (updated, valid after the rewrite) and without one (zero: stays
//! zero). And without any socket filter: a port bound to IPv4, ARP and IPv6 (`RxBind::ip`) gets
//! frames after tc ingress, so the offloaded ones never reach it (the kernel does not even count
//! them for it) while ARP, IPv6 and other IPv4 frames do; an `ETH_P_ALL` tap on the same link
//! still sees the offloaded frames (it runs before tc ingress). And on random records and frames
//! (`BPF_PROG_TEST_RUN`), the C programs do what the pure Rust mirror in `altroute-packet` says.

mod common;

use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use altroute_io::ebpf::offload::TC_ACT_REDIRECT;
use altroute_io::ebpf::{Offload, OffloadAction, OffloadKey, TcxLink};
use altroute_io::{Port, PortConfig, RxBind, host};
use altroute_packet::pipeline::offload::{OffloadRecord as Record, apply, matches};
use common::{
    Lab, arp_request, in_ns, ipv4_header, ipv6_frame, lab_or_skip, mac_of, send_raw, spawn_in,
};

fn sum(bytes: &[u8]) -> u32 {
    bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum()
}

fn fold(mut s: u32) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// An Ethernet/IPv4/TCP frame with valid checksums.
fn tcp_frame(dst: [u8; 6], src: [u8; 6], t: (Ipv4Addr, Ipv4Addr, u16, u16), flags: u8) -> Vec<u8> {
    let payload: Vec<u8> = (0..200u32).map(|i| (i * 7) as u8).collect();
    let mut f = Vec::new();
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x08, 0x00]);
    let total = (20 + 20 + payload.len()) as u16;
    let ip = ipv4_header(total, 6, t.0.octets(), t.1.octets());
    let mut tcp = [0u8; 20];
    tcp[0..2].copy_from_slice(&t.2.to_be_bytes());
    tcp[2..4].copy_from_slice(&t.3.to_be_bytes());
    tcp[4..8].copy_from_slice(&1000u32.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = flags;
    tcp[14..16].copy_from_slice(&1000u16.to_be_bytes());
    let mut seg = tcp.to_vec();
    seg.extend_from_slice(&payload);
    let c = !fold(tcp_pseudo(&ip, seg.len()) + sum(&seg));
    seg[16..18].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&seg);
    f
}

fn tcp_pseudo(ip: &[u8], len: usize) -> u32 {
    sum(&ip[12..20]) + u32::from(ip[9]) + len as u32
}

/// An Ethernet/IPv4/UDP frame with a valid IPv4 checksum and a valid UDP checksum, or none
/// (zero) unless `checksum`.
fn udp_frame(
    dst: [u8; 6],
    src: [u8; 6],
    t: (Ipv4Addr, Ipv4Addr, u16, u16),
    checksum: bool,
) -> Vec<u8> {
    let payload: Vec<u8> = (0..120u32).map(|i| (i * 13 + 5) as u8).collect();
    let mut f = Vec::new();
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x08, 0x00]);
    let total = (20 + 8 + payload.len()) as u16;
    let ip = ipv4_header(total, 17, t.0.octets(), t.1.octets());
    let mut seg = Vec::new();
    seg.extend_from_slice(&t.2.to_be_bytes());
    seg.extend_from_slice(&t.3.to_be_bytes());
    seg.extend_from_slice(&(8 + payload.len() as u16).to_be_bytes());
    seg.extend_from_slice(&[0, 0]);
    seg.extend_from_slice(&payload);
    if checksum {
        let c = match !fold(tcp_pseudo(&ip, seg.len()) + sum(&seg)) {
            0 => 0xffff,
            c => c,
        };
        seg[6..8].copy_from_slice(&c.to_be_bytes());
    }
    f.extend_from_slice(&ip);
    f.extend_from_slice(&seg);
    f
}

/// Whether the IPv4 and TCP/UDP checksums of `f` are valid (a zero UDP checksum is "none").
fn checksums_ok(f: &[u8]) -> bool {
    let ip = &f[14..34];
    let seg = &f[34..];
    if ip[9] == 17 && seg[6..8] == [0, 0] {
        return fold(sum(ip)) == 0xffff;
    }
    fold(sum(ip)) == 0xffff && fold(tcp_pseudo(ip, seg.len()) + sum(seg)) == 0xffff
}

/// One's-complement diff (network order) replacing `old` by `new` (equal lengths, even).
fn diff(old: &[u8], new: &[u8]) -> u32 {
    let neg: u32 = old
        .chunks(2)
        .map(|c| u32::from(!u16::from_be_bytes([c[0], c[1]])))
        .sum();
    neg + sum(new)
}

/// Addresses of the c - r - s lab: client, server, NAT address; r's in and out ports and the
/// MACs on the out link.
struct Topo {
    cli: Ipv4Addr,
    srv: Ipv4Addr,
    nat: Ipv4Addr,
    in_ifindex: u32,
    out_ifindex: u32,
    out_mac: [u8; 6],
    s_mac: [u8; 6],
}

impl Topo {
    /// The lab's topology as the router sees it: in on r0, out on r1 towards s0.
    fn of(r0: &host::InterfaceInfo, r1: &host::InterfaceInfo, s_mac: [u8; 6]) -> Topo {
        Topo {
            cli: CLI,
            srv: SRV,
            nat: NAT,
            in_ifindex: r0.ifindex,
            out_ifindex: r1.ifindex,
            out_mac: r1.mac.expect("r1 mac"),
            s_mac,
        }
    }

    /// The offload entry of `cli:sport -> srv:80`, which leaves as `nat:sport + 21000`.
    fn entry(&self, sport: u16, proto: u8) -> (OffloadKey, OffloadAction) {
        let (old, new) = (
            [self.cli.octets(), self.srv.octets()].concat(),
            [self.nat.octets(), self.srv.octets()].concat(),
        );
        let nport = sport + 21000;
        let old_p = [sport.to_be_bytes(), 80u16.to_be_bytes()].concat();
        let new_p = [nport.to_be_bytes(), 80u16.to_be_bytes()].concat();
        (
            OffloadKey {
                ifindex: self.in_ifindex,
                saddr: self.cli,
                daddr: self.srv,
                sport,
                dport: 80,
                proto,
            },
            OffloadAction {
                saddr: self.nat,
                daddr: self.srv,
                sport: nport,
                dport: 80,
                out_ifindex: self.out_ifindex,
                dst_mac: self.s_mac,
                src_mac: self.out_mac,
                l3_diff: diff(&old, &new) + 0xfeff,
                l4_addr_diff: diff(&old, &new),
                l4_port_diff: diff(&old_p, &new_p),
                max_len: 1500,
            },
        )
    }
}

/// The addresses of these tests: the client, the server, and the NAT address the offload entries
/// translate the client to.
const CLI: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 2);
const SRV: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
const NAT: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

/// The lab of these tests: client `c` (c0) – router `r` (r0, r1) – server `s` (s0). Returns the
/// three namespaces and s0's MAC.
fn client_router_server(lab: &mut Lab) -> (String, String, String, [u8; 6]) {
    let c = lab.ns("c");
    let r = lab.ns("r");
    let s = lab.ns("s");
    lab.veth(&c, "c0", &r, "r0");
    lab.veth(&r, "r1", &s, "s0");
    let s_mac = in_ns(&s, || mac_of("s0"));
    (c, r, s, s_mac)
}

/// In the router's namespace: load the programs and attach the tc one to tcx ingress of r0 and
/// r1 (the links detach when dropped).
fn load_and_attach() -> (
    Offload,
    host::InterfaceInfo,
    host::InterfaceInfo,
    [TcxLink; 2],
) {
    let mut off = Offload::load(64).unwrap_or_else(|e| panic!("load: {e}"));
    let (r0, r1) = (
        host::inspect("r0").expect("r0"),
        host::inspect("r1").expect("r1"),
    );
    let links = [
        off.attach_tc("r0").expect("tcx r0"),
        off.attach_tc("r1").expect("tcx r1"),
    ];
    (off, r0, r1, links)
}

/// Listen on s0 for 1.5 s, from a thread in namespace `s` that is ready when this returns; the
/// thread returns the IPv4 frames it saw.
fn listen_on_s0(s: &str) -> JoinHandle<Vec<Vec<u8>>> {
    let (srx_tx, srx_rx) = mpsc::channel();
    let server = spawn_in(s, move || {
        let mut p = Port::open(&PortConfig::new("s0")).expect("open s0");
        srx_tx.send(()).expect("ready");
        let mut got = Vec::new();
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(1500) {
            let mut b = p.rx_batch(16, Duration::from_millis(20)).expect("rx s0");
            for f in b.iter_mut() {
                if f.data().get(12..14) == Some(&[0x08, 0x00]) {
                    got.push(f.data().to_vec());
                }
            }
        }
        got
    });
    srx_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("server ready");
    server
}

#[test]
fn offload_programs_load_attach_and_forward() {
    let Some(mut lab) = lab_or_skip("netns_ebpf", &[]) else {
        return;
    };
    let (c, r, s, s_mac) = client_router_server(&mut lab);
    let (cli, srv, nat) = (CLI, SRV, NAT);

    // The router namespace: load, attach, install one entry, watch r0's socket.
    let (ready_tx, ready_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let router = spawn_in(&r, move || {
        let (mut off, r0, r1, links) = load_and_attach();
        let mut port = Port::open(&PortConfig::new("r0")).expect("open r0");
        off.attach_filter(port.as_fd()).expect("attach filter");
        let topo = Topo::of(&r0, &r1, s_mac);
        let entries = [
            topo.entry(40000, 6),
            topo.entry(40002, 17),
            topo.entry(40003, 17),
        ];
        for (k, a) in &entries {
            off.map.insert(k, a).expect("insert");
        }
        let mut keys = off.map.keys().expect("keys");
        keys.sort_by_key(|k| k.sport);
        assert_eq!(keys, entries.map(|e| e.0).to_vec());
        ready_tx.send(r0.mac.expect("r0 mac")).expect("ready");
        // Collect what r0's socket sees until the sender is done.
        let mut seen = Vec::new();
        let start = Instant::now();
        while done_rx.try_recv().is_err() && start.elapsed() < Duration::from_secs(10) {
            let mut b = port.rx_batch(16, Duration::from_millis(20)).expect("rx r0");
            for f in b.iter_mut() {
                seen.push(f.data().to_vec());
            }
        }
        let stats = entries.map(|(k, _)| off.map.stats(&k).expect("stats").expect("entry"));
        assert_eq!(off.map.clear().expect("clear"), 3);
        assert!(off.map.keys().expect("keys").is_empty());
        drop(links);
        (seen, stats)
    });
    let r0_mac = ready_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("router ready");

    // The server side listens on s0.
    let server = listen_on_s0(&s);
    let c_mac = in_ns(&c, || mac_of("c0"));
    let hit = tcp_frame(r0_mac, c_mac, (cli, srv, 40000, 80), 0x10);
    let other = tcp_frame(r0_mac, c_mac, (cli, srv, 40001, 80), 0x10);
    let syn = tcp_frame(r0_mac, c_mac, (cli, srv, 40000, 80), 0x02);
    let udp = udp_frame(r0_mac, c_mac, (cli, srv, 40002, 80), true);
    let udp0 = udp_frame(r0_mac, c_mac, (cli, srv, 40003, 80), false);
    let udp_other = udp_frame(r0_mac, c_mac, (cli, srv, 40004, 80), true);
    assert_ne!(&udp[40..42], &[0, 0]);
    let frames = [
        hit.clone(),
        hit.clone(),
        hit.clone(),
        other.clone(),
        syn.clone(),
        udp.clone(),
        udp.clone(),
        udp0.clone(),
        udp_other.clone(),
    ];
    in_ns(&c, send_raw(frames.to_vec()));
    let got = server.join().expect("server");
    done_tx.send(()).expect("done");
    let (seen, stats) = router.join().expect("router");

    assert_eq!(got.len(), 6, "the six matching frames were forwarded");
    for f in &got {
        assert_eq!(&f[0..6], &s_mac);
        assert_eq!(f[22], 63, "TTL decremented");
        assert_eq!(&f[26..30], &nat.octets());
        assert_eq!(&f[30..34], &srv.octets());
        assert!(checksums_ok(f), "checksums valid: {f:02x?}");
    }
    let by_port = |p: u16| {
        got.iter()
            .filter(|f| f[34..36] == p.to_be_bytes())
            .collect::<Vec<_>>()
    };
    for f in by_port(61000) {
        assert_eq!(f[23], 6);
        assert_eq!(&f[54..], &hit[54..], "payload intact");
    }
    for f in by_port(61002) {
        assert_eq!(f[23], 17);
        assert_ne!(&f[40..42], &[0, 0], "UDP checksum kept");
        assert_eq!(&f[42..], &udp[42..], "payload intact");
    }
    for f in by_port(61003) {
        assert_eq!(f[23], 17);
        assert_eq!(&f[40..42], &[0, 0], "a zero UDP checksum stays zero");
        assert_eq!(&f[42..], &udp0[42..], "payload intact");
    }
    assert_eq!([61000, 61002, 61003].map(|p| by_port(p).len()), [3, 2, 1]);
    assert_eq!(stats.map(|s| s.packets), [3, 2, 1]);
    assert_eq!(stats[0].bytes, 3 * 240);
    assert_eq!(stats[1].bytes, 2 * 148);
    assert!(stats.iter().all(|s| s.last_seen_ns > 0));
    // The socket filter: r0's socket saw the non-matching and SYN frames, not the matches.
    for f in [&hit, &udp, &udp0] {
        assert!(!seen.contains(f), "matching frame reached the socket");
    }
    assert!(
        seen.contains(&other) && seen.contains(&syn) && seen.contains(&udp_other),
        "{}",
        seen.len()
    );
}

#[test]
fn offloaded_frames_never_reach_an_ethertype_bound_port() {
    let Some(mut lab) = lab_or_skip("ebpf_bind", &[]) else {
        return;
    };
    let (c, r, s, s_mac) = client_router_server(&mut lab);
    let (cli, srv) = (CLI, SRV);

    let (ready_tx, ready_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let router = spawn_in(&r, move || {
        let (mut off, r0, r1, links) = load_and_attach();
        let mut bound = Port::open(&PortConfig {
            bind: RxBind::ip(),
            ..PortConfig::new("r0")
        })
        .expect("open r0 (IPv4, ARP, IPv6)");
        // No socket filter anywhere.
        let mut tap = Port::open(&PortConfig::new("r0")).expect("open r0 (ETH_P_ALL)");
        let topo = Topo::of(&r0, &r1, s_mac);
        let entries = [topo.entry(40000, 6), topo.entry(40002, 17)];
        for (k, a) in &entries {
            off.map.insert(k, a).expect("insert");
        }
        ready_tx.send(r0.mac.expect("r0 mac")).expect("ready");
        let (mut seen, mut tapped) = (Vec::new(), Vec::new());
        let start = Instant::now();
        let mut last = false;
        while !last && start.elapsed() < Duration::from_secs(10) {
            last = done_rx.try_recv().is_ok();
            for (p, out) in [(&mut bound, &mut seen), (&mut tap, &mut tapped)] {
                let mut b = p.rx_batch(16, Duration::from_millis(20)).expect("rx r0");
                for f in b.iter_mut() {
                    out.push(f.data().to_vec());
                }
            }
        }
        let stats = entries.map(|(k, _)| off.map.stats(&k).expect("stats").expect("entry"));
        let bound_stats = bound.stats().expect("port stats");
        drop(links);
        (seen, tapped, stats, bound_stats)
    });
    let r0_mac = ready_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("router ready");
    let server = listen_on_s0(&s);
    let c_mac = in_ns(&c, || mac_of("c0"));
    let hit = tcp_frame(r0_mac, c_mac, (cli, srv, 40000, 80), 0x10);
    let udp = udp_frame(r0_mac, c_mac, (cli, srv, 40002, 80), true);
    let other = tcp_frame(r0_mac, c_mac, (cli, srv, 40001, 80), 0x10);
    let arp = arp_request(c_mac);
    let v6 = ipv6_frame(r0_mac, c_mac, 7);
    let frames = [
        hit.clone(),
        hit.clone(),
        hit.clone(),
        udp.clone(),
        udp.clone(),
        other.clone(),
        arp.clone(),
        v6.clone(),
    ];
    in_ns(&c, send_raw(frames.to_vec()));
    let got = server.join().expect("server");
    done_tx.send(()).expect("done");
    let (seen, tapped, stats, bound_stats) = router.join().expect("router");

    assert_eq!(got.len(), 5, "the offloaded frames were forwarded");
    assert_eq!(stats.map(|s| s.packets), [3, 2]);
    assert!(got.iter().all(|f| checksums_ok(f) && f[0..6] == s_mac));
    for f in [&hit, &udp] {
        assert!(
            !seen.contains(f),
            "an offloaded frame reached the bound port"
        );
        assert!(tapped.contains(f), "the tap sees it before tc ingress");
    }
    for (f, what) in [(&other, "other IPv4"), (&arp, "ARP"), (&v6, "IPv6")] {
        assert!(seen.contains(f), "{what} reached the bound port");
    }
    // The kernel never delivered the offloaded frames to the bound sockets at all.
    assert_eq!(
        bound_stats.ring_packets,
        bound_stats.rx_frames + bound_stats.otherhost_skipped,
        "{bound_stats:?}"
    );
    assert_eq!(bound_stats.rx_frames, seen.len() as u64);
}

/// The knobs of one random case: which way (if any) the frame differs from the record.
#[derive(Clone, Copy, Debug)]
enum Mutation {
    None,
    Tuple(u8),
    EtherType,
    VersionIhl,
    Fragment,
    OtherProtocol,
    NotForUs,
}

fn mutation() -> impl proptest::strategy::Strategy<Value = Mutation> {
    use proptest::prelude::*;
    prop_oneof![
        6 => Just(Mutation::None),
        1 => (0u8..5).prop_map(Mutation::Tuple),
        1 => Just(Mutation::EtherType),
        1 => Just(Mutation::VersionIhl),
        1 => Just(Mutation::Fragment),
        1 => Just(Mutation::OtherProtocol),
        1 => Just(Mutation::NotForUs),
    ]
}

type Tuple = ([u8; 4], [u8; 4], u16, u16);

/// An offload record for `proto` (arriving as `old`, leaving as `new`) as the pipeline makes it
/// (the checksum diffs of the addresses, with the TTL decrement for IPv4, and of the ports), and
/// the map entry the daemon makes of it for frames arriving on the loopback device (ifindex 1:
/// test skbs do).
fn record(
    proto: u8,
    old: Tuple,
    new: Tuple,
    macs: ([u8; 6], [u8; 6]),
    max_len: u16,
) -> (Record, OffloadKey, OffloadAction) {
    use altroute_packet::pipeline::PortId;
    use altroute_packet::wire::MacAddr;
    let addr = diff(&[old.0, old.1].concat(), &[new.0, new.1].concat());
    let ports = diff(
        &[old.2.to_be_bytes(), old.3.to_be_bytes()].concat(),
        &[new.2.to_be_bytes(), new.3.to_be_bytes()].concat(),
    );
    let rec = Record {
        in_port: PortId(0),
        in_link: 0,
        src: old.0.into(),
        dst: old.1.into(),
        sport: old.2,
        dport: old.3,
        proto,
        out_port: PortId(1),
        out_link: 1,
        dst_mac: MacAddr(macs.0),
        src_mac: MacAddr(macs.1),
        new_src: new.0.into(),
        new_dst: new.1.into(),
        new_sport: new.2,
        new_dport: new.3,
        l3_diff: addr + 0xfeff,
        l4_addr_diff: addr,
        l4_port_diff: ports,
        max_len,
    };
    let (saddr, daddr, sport, dport) = old;
    let key = OffloadKey {
        ifindex: 1,
        saddr: saddr.into(),
        daddr: daddr.into(),
        sport,
        dport,
        proto,
    };
    let action = OffloadAction {
        saddr: new.0.into(),
        daddr: new.1.into(),
        sport: new.2,
        dport: new.3,
        out_ifindex: 1,
        dst_mac: macs.0,
        src_mac: macs.1,
        l3_diff: rec.l3_diff,
        l4_addr_diff: rec.l4_addr_diff,
        l4_port_diff: rec.l4_port_diff,
        max_len: max_len.into(),
    };
    (rec, key, action)
}

/// A frame of `rec`'s flow, changed by `m`: TTL, TCP flags, both checksums (any values: the
/// programs only adjust them) and the payload as given; a zero UDP checksum when `udp_zero`.
#[allow(clippy::too_many_arguments)]
fn frame_of(
    rec: &Record,
    m: Mutation,
    ttl: u8,
    tcp_flags: u8,
    csums: (u16, u16),
    udp_zero: bool,
    payload: &[u8],
    other_host: [u8; 6],
) -> Vec<u8> {
    let tcp = rec.proto == 6;
    let l4 = if tcp { 20 } else { 8 };
    let mut f = vec![0u8; 14 + 20 + l4];
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 9]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    f[14] = 0x45;
    let total = (20 + l4 + payload.len()) as u16;
    f[16..18].copy_from_slice(&total.to_be_bytes());
    f[20] = 0x40; // DF: not a fragment
    f[22] = ttl;
    f[23] = rec.proto;
    f[24..26].copy_from_slice(&csums.0.to_be_bytes());
    f[26..30].copy_from_slice(&rec.src.octets());
    f[30..34].copy_from_slice(&rec.dst.octets());
    f[34..36].copy_from_slice(&rec.sport.to_be_bytes());
    f[36..38].copy_from_slice(&rec.dport.to_be_bytes());
    if tcp {
        f[46] = 5 << 4;
        f[47] = tcp_flags;
        f[50..52].copy_from_slice(&csums.1.to_be_bytes());
    } else {
        f[38..40].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        let c = if udp_zero { 0 } else { csums.1 };
        f[40..42].copy_from_slice(&c.to_be_bytes());
    }
    f.extend_from_slice(payload);
    match m {
        Mutation::None => {}
        Mutation::Tuple(i) => {
            let at = [26, 30, 34, 36, 29][usize::from(i)];
            f[at] ^= 0x10;
        }
        // VLAN or ARP (the kernel refuses to test-run an IPv6 frame shorter than its header).
        Mutation::EtherType => f[12..14].copy_from_slice(if ttl.is_multiple_of(2) {
            &[0x81, 0x00]
        } else {
            &[0x08, 0x06]
        }),
        Mutation::VersionIhl => f[14] = if ttl.is_multiple_of(2) { 0x46 } else { 0x65 },
        Mutation::Fragment => f[20..22].copy_from_slice(&[0x20 | (ttl & 0x1f), csums.0 as u8]),
        Mutation::OtherProtocol => f[23] = if tcp { 17 } else { 6 },
        Mutation::NotForUs => f[0..6].copy_from_slice(&other_host),
    }
    f
}

/// The C tc program and socket filter against the pure Rust mirror
/// (`altroute_packet::pipeline::offload::{matches, apply}`), on random records and frames run
/// through `BPF_PROG_TEST_RUN`: the program forwards (`TC_ACT_REDIRECT`) exactly the frames the
/// mirror matches (and that fit the out link unless GSO), leaves the bytes `apply` leaves
/// (MACs, addresses, ports, TTL, both checksums), counts the frame in the entry, and leaves
/// every other frame alone; the socket filter drops exactly the frames the tc program forwards.
/// Test skbs are `CHECKSUM_NONE`: the "checksum not ready" case (`BPF_F_PSEUDO_HDR` alone
/// applies) is the lab tests' (veth hands such frames over) and the packet crate's property test.
#[test]
fn the_c_programs_do_what_the_rust_mirror_does() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    let Some(mut lab) = lab_or_skip("ebpf_mirror", &[]) else {
        return;
    };
    let ns = lab.ns("m");
    in_ns(&ns, || {
        let off =
            std::cell::RefCell::new(Offload::load(16).unwrap_or_else(|e| panic!("load: {e}")));
        let addr = any::<[u8; 4]>();
        let tuple = (addr, addr, any::<u16>(), any::<u16>());
        // Edges weighted up: TTL 0..=2, ACK or PSH|ACK as TCP flags, checksums 0 and 0xffff,
        // an out link MTU around the frames' lengths (42..=214 bytes) and at them.
        let ttl = prop_oneof![3 => 2u8..=255, 1 => 0u8..=2];
        let flags = prop_oneof![any::<u8>(), Just(0x10u8), Just(0x18u8)];
        let csum = || prop_oneof![3 => any::<u16>(), 1 => Just(0u16), 1 => Just(0xffffu16)];
        let strategy = (
            (any::<bool>(), tuple, tuple),
            (
                any::<[u8; 6]>(),
                any::<[u8; 6]>(),
                (0u16..320, prop_oneof![Just(None), (0u16..3).prop_map(Some)]),
                any::<bool>(),
            ),
            (mutation(), ttl, flags, (csum(), csum()), any::<bool>()),
            proptest::collection::vec(any::<u8>(), 0..160),
            any::<[u8; 5]>(),
        );
        let mut runner = TestRunner::new(Config {
            cases: common::cases(2000),
            failure_persistence: None,
            ..Config::default()
        });
        let forwarded = std::cell::Cell::new(0u32);
        let result = runner.run(
            &strategy,
            |(
                (udp, old, new),
                (dmac, smac, (mtu, around), gso),
                (m, ttl, flags, csums, z),
                payload,
                oh,
            )| {
                let proto = if udp { 17 } else { 6 };
                // The MTU: as drawn, or one less, equal or one more than the frame's length.
                let total = 20 + if udp { 8 } else { 20 } + payload.len() as u16;
                let max_len = around.map_or(mtu, |d| total + d - 1);
                let (rec, key, action) = record(proto, old, new, (dmac, smac), max_len);
                let other_host = [0x02, oh[0], oh[1], oh[2], oh[3], oh[4]];
                let frame = frame_of(&rec, m, ttl, flags, csums, z, &payload, other_host);
                // Test skbs arrive on the namespace's loopback device: pkt_type host for the
                // destination MAC 00:00:00:00:00:00 (its address).
                let mut off = off.borrow_mut();
                off.map.insert(&key, &action).expect("insert");
                let gso_size = if gso { 1400 } else { 0 };
                let runs = off
                    .test_run_tc(&frame, gso_size)
                    .and_then(|(verdict, out)| {
                        let kept = off.test_run_filter(&frame, gso_size)?;
                        Ok((verdict, out, kept, off.map.stats(&key)?))
                    });
                off.map.remove(&key).expect("remove");
                let (verdict, out, kept, stats) = runs.unwrap_or_else(|e| {
                    panic!("test runs: {e} on {frame:02x?} (GSO size {gso_size})")
                });
                let stats = stats.expect("entry");

                let total = u32::from(total);
                let for_us = frame[0..6] == [0; 6];
                let fits = gso || total <= u32::from(max_len);
                let want = for_us && fits && matches(&rec, &frame);
                let mut expect = frame.clone();
                if want {
                    prop_assert!(apply(&rec, &mut expect, false));
                    forwarded.set(forwarded.get() + 1);
                }
                prop_assert_eq!(verdict, if want { TC_ACT_REDIRECT } else { 0 });
                prop_assert_eq!(&out, &expect);
                prop_assert_eq!(kept, if want { 0 } else { u32::MAX }, "socket filter");
                let counted = if want { (1, u64::from(total)) } else { (0, 0) };
                prop_assert_eq!((stats.packets, stats.bytes), counted);
                Ok(())
            },
        );
        if let Err(e) = result {
            panic!("{e}");
        }
        let forwarded = forwarded.get();
        assert!(forwarded > 300, "only {forwarded} of 2000 frames matched");
    });
}
