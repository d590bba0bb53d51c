//! The offload programs in a namespace: the verifier accepts both, they attach (tcx ingress,
//! `SO_ATTACH_BPF`) and detach, and a frame that matches a map entry is rewritten and redirected
//! by the kernel (fields and checksums checked on the far side) without reaching the packet
//! socket, while frames that do not match (other port, SYN) reach it and are not forwarded.

mod common;

use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use altroute_io::ebpf::{Offload, OffloadAction, OffloadKey};
use altroute_io::{Port, PortConfig, RxMode, TxFrame, host};
use common::{in_ns, lab_or_skip, mac_of, spawn_in};

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
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip[6] = 0x40;
    ip[8] = 64;
    ip[9] = 6;
    ip[12..16].copy_from_slice(&t.0.octets());
    ip[16..20].copy_from_slice(&t.1.octets());
    let c = !fold(sum(&ip));
    ip[10..12].copy_from_slice(&c.to_be_bytes());
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
    sum(&ip[12..20]) + 6 + len as u32
}

/// Whether the IPv4 and TCP checksums of `f` are valid.
fn checksums_ok(f: &[u8]) -> bool {
    let ip = &f[14..34];
    let seg = &f[34..];
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

#[test]
fn offload_programs_load_attach_and_forward() {
    let Some(mut lab) = lab_or_skip("netns_ebpf", &[]) else {
        return;
    };
    let c = lab.ns("c");
    let r = lab.ns("r");
    let s = lab.ns("s");
    lab.veth(&c, "c0", &r, "r0");
    lab.veth(&r, "r1", &s, "s0");
    let (cli, srv) = (Ipv4Addr::new(10, 9, 0, 2), Ipv4Addr::new(203, 0, 113, 10));
    let nat = Ipv4Addr::new(192, 0, 2, 1);
    let s_mac = in_ns(&s, || mac_of("s0"));

    // The router namespace: load, attach, install one entry, watch r0's socket.
    let (ready_tx, ready_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let router = spawn_in(&r, move || {
        let off = Offload::load(64).unwrap_or_else(|e| panic!("load: {e}"));
        let (r0, r1) = (
            host::inspect("r0").expect("r0"),
            host::inspect("r1").expect("r1"),
        );
        let links = [
            off.tc.attach_tcx_ingress(r0.ifindex).expect("tcx r0"),
            off.tc.attach_tcx_ingress(r1.ifindex).expect("tcx r1"),
        ];
        let mut port = Port::open(&PortConfig::new("r0")).expect("open r0");
        off.filter
            .attach_socket(port.as_fd())
            .expect("attach filter");
        let (old, new) = (
            [cli.octets(), srv.octets()].concat(),
            [nat.octets(), srv.octets()].concat(),
        );
        let action = OffloadAction {
            saddr: nat,
            daddr: srv,
            sport: 61000,
            dport: 80,
            out_ifindex: r1.ifindex,
            dst_mac: s_mac,
            src_mac: r1.mac.expect("r1 mac"),
            l3_diff: diff(&old, &new) + 0xfeff,
            l4_addr_diff: diff(&old, &new),
            l4_port_diff: diff(&[0x9c, 0x40, 0, 80], &[0xee, 0x48, 0, 80]),
            max_len: 1500,
        };
        let key = OffloadKey {
            ifindex: r0.ifindex,
            saddr: cli,
            daddr: srv,
            sport: 40000,
            dport: 80,
            proto: 6,
        };
        off.map.insert(&key, &action).expect("insert");
        assert_eq!(off.map.keys().expect("keys"), vec![key]);
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
        let stats = off.map.stats(&key).expect("stats").expect("entry");
        assert_eq!(off.map.clear().expect("clear"), 1);
        assert!(off.map.keys().expect("keys").is_empty());
        drop(links);
        (seen, stats)
    });
    let r0_mac = ready_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("router ready");

    // The server side listens on s0.
    let (srx_tx, srx_rx) = mpsc::channel();
    let server = spawn_in(&s, move || {
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
    let c_mac = in_ns(&c, || mac_of("c0"));
    let hit = tcp_frame(r0_mac, c_mac, (cli, srv, 40000, 80), 0x10);
    let other = tcp_frame(r0_mac, c_mac, (cli, srv, 40001, 80), 0x10);
    let syn = tcp_frame(r0_mac, c_mac, (cli, srv, 40000, 80), 0x02);
    let frames = [
        hit.clone(),
        hit.clone(),
        hit.clone(),
        other.clone(),
        syn.clone(),
    ];
    in_ns(&c, move || {
        let mut p = Port::open(&PortConfig {
            rx: RxMode::None,
            ..PortConfig::new("c0")
        })
        .expect("open c0");
        let out = p.send(frames.iter().map(|f| TxFrame::new(f)));
        assert_eq!(out.sent, 5);
    });
    let got = server.join().expect("server");
    done_tx.send(()).expect("done");
    let (seen, stats) = router.join().expect("router");

    assert_eq!(got.len(), 3, "the three matching frames were forwarded");
    for f in &got {
        assert_eq!(&f[0..6], &s_mac);
        assert_eq!(f[22], 63, "TTL decremented");
        assert_eq!(&f[26..30], &nat.octets());
        assert_eq!(&f[30..34], &srv.octets());
        assert_eq!(&f[34..36], &61000u16.to_be_bytes());
        assert!(checksums_ok(f), "checksums valid: {f:02x?}");
        assert_eq!(&f[54..], &hit[54..], "payload intact");
    }
    assert_eq!(stats.packets, 3);
    assert_eq!(stats.bytes, 3 * 240);
    assert!(stats.last_seen_ns > 0);
    // The socket filter: r0's socket saw the non-matching and SYN frames, not the matches.
    assert!(!seen.contains(&hit), "matching frame reached the socket");
    assert!(
        seen.contains(&other) && seen.contains(&syn),
        "{}",
        seen.len()
    );
}
