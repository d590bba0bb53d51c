//! Single-port behaviour in a namespace: VLAN tags the kernel strips come back in the frame
//! (V2 and V3, plain and vnet), the headroom is usable, host inspection reports what `ip` set,
//! and errors name the interface and the operation. A port bound to IPv4, ARP and IPv6
//! (`RxBind::ip`) gets those three, untagged, for its own MAC; the frames the kernel marks for
//! another host, which includes every frame tagged with a VLAN id, are dropped by the sockets'
//! filter before they reach a ring (with and without fanout).

mod common;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use altroute_io::{FrameMeta, Port, PortConfig, PortStats, RxBind, RxMode, TxFrame, VlanTag, host};
use common::{
    arp_request, in_ns, ipv6_frame, lab_or_skip, mac_of, send_raw, spawn_in, udp_frame, udp_seq,
};

/// Frames received on r0 while `frames` are sent from c0: (bytes, vlan meta, reinserted, headroom).
type Got = Vec<(Vec<u8>, Option<VlanTag>, bool, usize)>;

fn send_and_receive(test: &str, rx_cfg: PortConfig, frames: Vec<Vec<u8>>) -> Option<Got> {
    let mut lab = lab_or_skip(test, &[])?;
    let c = lab.ns("c");
    let r = lab.ns("r");
    lab.veth(&c, "c0", &r, "r0");
    let want = frames.len();
    let (ready_tx, ready_rx) = mpsc::channel();
    let rx = spawn_in(&r, move || {
        let mut p = Port::open(&rx_cfg).expect("open r0");
        ready_tx.send(()).expect("ready");
        let mut got = Vec::new();
        let start = Instant::now();
        while got.len() < want && start.elapsed() < Duration::from_secs(5) {
            let mut b = p.rx_batch(16, Duration::from_millis(50)).expect("rx");
            for mut f in b.iter_mut() {
                if udp_seq(f.data()).is_some() {
                    let m = *f.meta();
                    let headroom = f.headroom();
                    // The headroom is writable: push a tag and pop it again.
                    assert!(f.push_vlan(VlanTag {
                        tpid: 0x88a8,
                        tci: 7
                    }));
                    assert_eq!(
                        f.pop_vlan(),
                        Some(VlanTag {
                            tpid: 0x88a8,
                            tci: 7
                        })
                    );
                    got.push((f.data().to_vec(), m.vlan, m.vlan_in_frame, headroom));
                }
            }
        }
        got
    });
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("rx ready");
    in_ns(&c, send_raw(frames));
    let got = rx.join().expect("rx thread");
    assert_eq!(got.len(), want, "all frames received");
    Some(got)
}

fn vlan_case(test: &str, cfg: PortConfig) {
    let tagged = udp_frame(
        [0x02, 0, 0, 0, 0, 9],
        [0x02, 0, 0, 0, 0, 8],
        Some(0x2064),
        1111,
        2222,
        1,
        100,
    );
    let untagged = udp_frame(
        [0x02, 0, 0, 0, 0, 9],
        [0x02, 0, 0, 0, 0, 8],
        None,
        1111,
        2222,
        2,
        100,
    );
    let reinsert = cfg.reinsert_vlan;
    let Some(got) = send_and_receive(test, cfg, vec![tagged.clone(), untagged.clone()]) else {
        return;
    };
    let (t, u) = (&got[0], &got[1]);
    assert_eq!(
        t.1,
        Some(VlanTag {
            tpid: 0x8100,
            tci: 0x2064
        }),
        "kernel reported the tag"
    );
    if reinsert {
        assert!(t.2, "tag put back");
        assert_eq!(t.0, tagged, "caller sees the tag in the frame");
    } else {
        assert!(!t.2);
        let stripped = udp_frame(
            [0x02, 0, 0, 0, 0, 9],
            [0x02, 0, 0, 0, 0, 8],
            None,
            1111,
            2222,
            1,
            100,
        );
        assert_eq!(t.0, stripped, "tag only in metadata");
    }
    // The configured 32 bytes are there before the re-inserted tag took 4 of them.
    assert!(t.3 + if t.2 { 4 } else { 0 } >= 32, "headroom: {}", t.3);
    assert!(u.3 >= 32, "headroom: {}", u.3);
    assert_eq!(u.0, untagged);
    assert_eq!(u.1, None);
}

#[test]
fn vlan_tag_reinserted_v2_plain() {
    vlan_case("vlv2", PortConfig::new("r0"));
}

#[test]
fn vlan_tag_reinserted_v2_vnet() {
    vlan_case(
        "vlv2vn",
        PortConfig {
            vnet_hdr: true,
            ..PortConfig::new("r0")
        },
    );
}

#[test]
fn vlan_tag_reinserted_v3() {
    vlan_case(
        "vlv3",
        PortConfig {
            rx: RxMode::V3 {
                block_size: 1 << 20,
                blocks: 4,
                retire_ms: 1,
            },
            vnet_hdr: true,
            ..PortConfig::new("r0")
        },
    );
}

#[test]
fn vlan_tag_left_in_metadata_when_asked() {
    vlan_case(
        "vlmeta",
        PortConfig {
            reinsert_vlan: false,
            ..PortConfig::new("r0")
        },
    );
}

#[test]
fn host_inspection_reports_what_ip_configured() {
    let Some(mut lab) = lab_or_skip("inspect", &["ethtool"]) else {
        return;
    };
    let c = lab.ns("c");
    let r = lab.ns("r");
    lab.veth(&c, "c0", &r, "r0");
    lab.exec(&c, &["ip", "addr", "add", "10.77.9.1/24", "dev", "c0"]);
    lab.exec(&c, &["ip", "link", "set", "c0", "mtu", "1400"]);
    lab.exec(&c, &["sysctl", "-qw", "net.ipv6.conf.c0.disable_ipv6=0"]);
    lab.exec(
        &c,
        &["ip", "addr", "add", "2001:db8::1/64", "dev", "c0", "nodad"],
    );
    lab.exec(&c, &["ethtool", "-K", "c0", "tso", "off"]);
    lab.exec(&c, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    let info = in_ns(&c, || host::inspect("c0").expect("inspect c0"));
    assert_eq!(info.mtu, 1400);
    assert!(info.up && info.running, "{info:?}");
    assert!(info.mac.is_some());
    assert_eq!(info.ipv4.len(), 1);
    assert_eq!(info.ipv4[0].addr.to_string(), "10.77.9.1");
    assert_eq!(info.ipv4[0].prefix, 24);
    assert!(
        info.ipv6
            .iter()
            .any(|a| a.addr.to_string() == "2001:db8::1" && a.prefix == 64),
        "{info:?}"
    );
    assert_eq!(info.ipv6_disabled, Some(false));
    assert_eq!(info.ip_forward, Some(true));
    assert_eq!(info.ipv4_forwarding, Some(true));
    assert_eq!(info.offloads.tso, Some(false));
    assert_eq!(info.offloads.tx_csum, Some(true));
    let rinfo = in_ns(&r, || host::inspect("r0").expect("inspect r0"));
    assert_eq!(rinfo.ipv6_disabled, Some(true));
    assert_eq!(rinfo.ip_forward, Some(false));
    assert!(rinfo.ipv4.is_empty());
    assert_ne!(rinfo.mac, info.mac);
    let mac = in_ns(&c, || mac_of("c0"));
    assert_eq!(Some(mac), info.mac);
}

#[test]
fn errors_name_interface_and_operation() {
    let Some(mut lab) = lab_or_skip("errors", &[]) else {
        return;
    };
    let c = lab.ns("c");
    let e = in_ns(&c, || {
        Port::open(&PortConfig::new("ario-none0"))
            .err()
            .expect("must fail")
    });
    assert_eq!(e.iface(), "ario-none0");
    assert!(
        e.to_string()
            .starts_with("if_nametoindex on ario-none0: ENODEV"),
        "{e}"
    );
    // A TX ring with a V3 RX ring is a configuration error, caught before any syscall.
    let e = in_ns(&c, || {
        Port::open(&PortConfig {
            rx: RxMode::V3 {
                block_size: 1 << 20,
                blocks: 2,
                retire_ms: 1,
            },
            tx: altroute_io::TxMode::Ring { frames: 8 },
            ..PortConfig::new("lo")
        })
        .err()
        .expect("must fail")
    });
    assert!(e.to_string().contains("TX ring needs TPACKET_V2"), "{e}");
}

#[test]
fn hairpin_echo_in_place_via_split_mut() {
    // r0 swaps the MAC addresses of each frame inside its ring slot and sends it back out of the
    // same port from there; the client sees its frames come back, never its own transmissions.
    let Some(mut lab) = lab_or_skip("hairpin", &[]) else {
        return;
    };
    let c = lab.ns("c");
    let r = lab.ns("r");
    lab.veth(&c, "c0", &r, "r0");
    let (ready_tx, ready_rx) = mpsc::channel();
    let echo = spawn_in(&r, move || {
        let mut p = Port::open(&PortConfig::new("r0")).expect("open r0");
        ready_tx.send(()).expect("ready");
        let start = Instant::now();
        let mut echoed = 0;
        while echoed < 10 && start.elapsed() < Duration::from_secs(5) {
            let (rx, tx) = p.split_mut();
            let mut b = rx.rx_batch(16, Duration::from_millis(50)).expect("rx");
            for mut f in b.iter_mut() {
                if udp_seq(f.data()).is_none() {
                    f.drop_frame();
                    continue;
                }
                let d = f.data_mut();
                let mut dst = [0u8; 6];
                dst.copy_from_slice(&d[..6]);
                d.copy_within(6..12, 0);
                d[6..12].copy_from_slice(&dst);
                echoed += 1;
            }
            tx.send(b.tx_frames());
        }
        echoed
    });
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("echo ready");
    let back = in_ns(&c, move || {
        let mut p = Port::open(&PortConfig::new("c0")).expect("open c0");
        let me = mac_of("c0");
        let peer = [0x02, 0x77, 0, 0, 0, 1];
        let frames: Vec<Vec<u8>> = (0..10)
            .map(|i| udp_frame(peer, me, None, 5000, 6000, i, 32))
            .collect();
        assert_eq!(p.send(frames.iter().map(|f| TxFrame::new(f))).sent, 10);
        let mut back = Vec::new();
        let start = Instant::now();
        while back.len() < 10 && start.elapsed() < Duration::from_secs(5) {
            let b = p.rx_batch(16, Duration::from_millis(50)).expect("rx");
            for i in 0..b.len() {
                let f = b.data(i).expect("frame");
                if let Some(s) = udp_seq(f) {
                    assert_eq!(&f[..6], &me, "echo is addressed to the client");
                    assert_eq!(&f[6..12], &peer);
                    back.push(s);
                }
            }
        }
        assert_eq!(p.stats().expect("stats").outgoing_skipped, 0);
        back
    });
    assert_eq!(echo.join().expect("echo thread"), 10);
    assert_eq!(back, (0..10).collect::<Vec<u32>>());
}

/// Frames (bytes and metadata) read on r0, and its counters.
type Observed = (Vec<(Vec<u8>, FrameMeta)>, PortStats);

/// Opens `cfg` on r0 (relay ns), runs `client` in the client ns (c0, 10.77.5.1/24, offloads as
/// the kernel sets them up), and only then drains r0 for `drain`: frames wait in the ring meanwhile.
fn observe(
    test: &str,
    cfg: PortConfig,
    drain: Duration,
    client: impl FnOnce() + Send + 'static,
) -> Option<Observed> {
    let mut lab = lab_or_skip(test, &[])?;
    let c = lab.ns("c");
    let r = lab.ns("r");
    lab.veth(&c, "c0", &r, "r0");
    lab.exec(&c, &["ip", "addr", "add", "10.77.5.1/24", "dev", "c0"]);
    lab.exec(
        &c,
        &[
            "ip",
            "neigh",
            "add",
            "10.77.5.2",
            "lladdr",
            "02:77:00:00:05:02",
            "dev",
            "c0",
        ],
    );
    let (ready_tx, ready_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let rx = spawn_in(&r, move || {
        let mut p = Port::open(&cfg).expect("open r0");
        ready_tx.send(()).expect("ready");
        go_rx.recv().expect("go");
        let mut got = Vec::new();
        let start = Instant::now();
        while start.elapsed() < drain {
            let mut b = p.rx_batch(16, Duration::from_millis(20)).expect("rx");
            for f in b.iter_mut() {
                got.push((f.data().to_vec(), *f.meta()));
            }
        }
        (got, p.stats().expect("stats"))
    });
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("ready");
    in_ns(&c, client);
    go_tx.send(()).expect("go");
    Some(rx.join().expect("rx thread"))
}

#[test]
fn plain_mode_reports_checksum_not_ready() {
    // veth has TX checksum offload on by default: the client's TCP SYN leaves with a partial
    // checksum, which a plain (non-vnet) port must flag.
    let client = || {
        let addr: std::net::SocketAddr = "10.77.5.2:9".parse().expect("addr");
        let _ = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300));
    };
    let Some((got, _)) = observe(
        "csum",
        PortConfig::new("r0"),
        Duration::from_millis(200),
        client,
    ) else {
        return;
    };
    let syn = got
        .iter()
        .find(|(f, _)| f.len() >= 34 && f[12..14] == [0x08, 0x00] && f[23] == 6)
        .expect("a TCP SYN arrived");
    assert!(syn.1.csum_not_ready, "{:?}", syn.1);
    assert!(syn.1.vlan.is_none());
}

#[test]
fn truncated_frames_are_counted_and_skipped() {
    let small = udp_frame(
        [0x02, 0, 0, 0, 0, 9],
        [0x02, 0, 0, 0, 0, 8],
        None,
        1,
        2,
        1,
        100,
    );
    let big = udp_frame(
        [0x02, 0, 0, 0, 0, 9],
        [0x02, 0, 0, 0, 0, 8],
        None,
        1,
        2,
        2,
        900,
    );
    let cfg = PortConfig {
        max_frame: Some(512),
        ..PortConfig::new("r0")
    };
    let Some((got, stats)) = observe(
        "trunc",
        cfg,
        Duration::from_millis(200),
        send_raw(vec![small.clone(), big]),
    ) else {
        return;
    };
    let seqs: Vec<u32> = got.iter().filter_map(|(f, _)| udp_seq(f)).collect();
    assert_eq!(seqs, vec![1], "only the frame that fits is delivered");
    assert_eq!(
        got.iter()
            .find(|(f, _)| udp_seq(f) == Some(1))
            .map(|(f, _)| f),
        Some(&small)
    );
    assert_eq!(stats.truncated, 1, "{stats:?}");
}

#[test]
fn ring_overflow_shows_as_ring_drops() {
    let frames: Vec<Vec<u8>> = (0..200)
        .map(|i| {
            udp_frame(
                [0x02, 0, 0, 0, 0, 9],
                [0x02, 0, 0, 0, 0, 8],
                None,
                1,
                2,
                i,
                64,
            )
        })
        .collect();
    let cfg = PortConfig {
        rx: RxMode::V2 { frames: 8 },
        ..PortConfig::new("r0")
    };
    let Some((got, stats)) = observe("drops", cfg, Duration::from_millis(200), send_raw(frames))
    else {
        return;
    };
    let delivered = got.iter().filter(|(f, _)| udp_seq(f).is_some()).count() as u64;
    assert!(delivered < 200, "the small ring cannot hold them all");
    assert!(stats.ring_drops >= 200 - delivered, "{stats:?}");
    assert_eq!(stats.rx_frames, got.len() as u64);
}

#[test]
fn outgoing_frames_are_dropped_defensively() {
    // With the kernel's filter off, frames another local socket (here a transmit-only port on the
    // same interface, as in a per-direction relay) sends reach the ring; the port must still never
    // hand them to the caller, and count them.
    let Some(mut lab) = lab_or_skip("outgo", &[]) else {
        return;
    };
    let c = lab.ns("c");
    let r = lab.ns("r");
    lab.veth(&c, "c0", &r, "r0");
    let (stats, seen) = in_ns(&r, || {
        let mut p = Port::open(&PortConfig {
            ignore_outgoing: false,
            ..PortConfig::new("r0")
        })
        .expect("open r0");
        let mut tx = Port::open(&PortConfig {
            rx: RxMode::None,
            ..PortConfig::new("r0")
        })
        .expect("open r0 tx");
        let frames: Vec<Vec<u8>> = (0..20)
            .map(|i| {
                udp_frame(
                    [0x02, 0, 0, 0, 0, 9],
                    [0x02, 0, 0, 0, 0, 8],
                    None,
                    1,
                    2,
                    i,
                    64,
                )
            })
            .collect();
        assert_eq!(tx.send(frames.iter().map(|f| TxFrame::new(f))).sent, 20);
        let mut seen = 0;
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(200) {
            let b = p.rx_batch(16, Duration::from_millis(20)).expect("rx");
            seen += (0..b.len())
                .filter(|&i| b.data(i).and_then(udp_seq).is_some())
                .count();
        }
        (p.stats().expect("stats"), seen)
    });
    assert_eq!(seen, 0, "own frames never reach the caller");
    assert_eq!(stats.outgoing_skipped, 20, "{stats:?}");
}

#[test]
fn ethertype_bound_port_gets_ip_arp_ipv6_for_its_mac_and_skips_vlans() {
    let Some(mut lab) = lab_or_skip("bind", &[]) else {
        return;
    };
    let c = lab.ns("c");
    let r = lab.ns("r");
    lab.veth(&c, "c0", &r, "r0");
    let r_mac = in_ns(&r, || mac_of("r0"));
    let c_mac = in_ns(&c, || mac_of("c0"));
    let udp = |dst, vlan, seq| udp_frame(dst, c_mac, vlan, 1111, 2222, seq, 100);
    let foreign = [0x02, 0, 0, 0, 0, 9];
    let frames = vec![
        udp(r_mac, None, 1),
        udp(r_mac, Some(0x2007), 2), // VLAN 7: the kernel erases the tag, marks it OTHERHOST
        udp(r_mac, Some(0x2000), 3), // priority tag (VLAN 0): erased, delivered
        udp(foreign, None, 4),       // another host's frame
        arp_request(c_mac),
        ipv6_frame(r_mac, c_mac, 5),
    ];
    let (ready_tx, ready_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let rx = spawn_in(&r, move || {
        // Several workers' ports: each EtherType joins its own group (group, group + 1, ...).
        let cfg = |bind| PortConfig {
            bind,
            fanout: Some(altroute_io::Fanout {
                group: 0x4a00,
                mode: altroute_io::FanoutMode::Hash,
                defrag: false,
            }),
            ..PortConfig::new("r0")
        };
        let mut ports = [
            Port::open(&cfg(RxBind::ip())).expect("open r0"),
            Port::open(&cfg(RxBind::ip())).expect("open r0 again"),
        ];
        // A port bound differently cannot join the same groups.
        assert!(Port::open(&cfg(RxBind::All)).is_err());
        // A port outside the groups gets its own copy of everything (its filter is attached
        // before bind rather than after the fanout join).
        let mut solo = Port::open(&PortConfig {
            bind: RxBind::ip(),
            ..PortConfig::new("r0")
        })
        .expect("open r0 without fanout");
        ready_tx.send(()).expect("ready");
        let mut got = Vec::new();
        let start = Instant::now();
        while done_rx.try_recv().is_err() && start.elapsed() < Duration::from_secs(10) {
            for p in &mut ports {
                let mut b = p.rx_batch(16, Duration::from_millis(10)).expect("rx");
                for f in b.iter_mut() {
                    got.push((f.data().to_vec(), *f.meta()));
                }
            }
        }
        // Drain what is left.
        for p in &mut ports {
            let mut b = p.rx_batch(16, Duration::from_millis(50)).expect("rx");
            for f in b.iter_mut() {
                got.push((f.data().to_vec(), *f.meta()));
            }
        }
        let mut solo_got = Vec::new();
        loop {
            let mut b = solo.rx_batch(16, Duration::from_millis(50)).expect("rx");
            if b.is_empty() {
                break;
            }
            for f in b.iter_mut() {
                solo_got.push(f.data().to_vec());
            }
        }
        let stats = ports.map(|mut p| p.stats().expect("stats"));
        (got, stats, solo_got, solo.stats().expect("stats"))
    });
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("rx ready");
    in_ns(&c, send_raw(frames.clone()));
    std::thread::sleep(Duration::from_millis(300));
    done_tx.send(()).expect("done");
    let (got, stats, solo_got, solo_stats) = rx.join().expect("rx thread");
    let mut seqs: Vec<u32> = got.iter().filter_map(|(f, _)| udp_seq(f)).collect();
    seqs.sort_unstable();
    assert_eq!(
        seqs,
        vec![1, 3],
        "untagged and priority-tagged IPv4 for our MAC"
    );
    let frame3 = got
        .iter()
        .find(|(f, _)| udp_seq(f) == Some(3))
        .expect("seq 3");
    assert_eq!(frame3.0, udp(r_mac, None, 3), "the priority tag is gone");
    assert!(got.iter().all(|(_, m)| m.vlan.is_none()));
    assert!(got.iter().any(|(f, _)| *f == frames[4]), "ARP arrived");
    assert!(got.iter().any(|(f, _)| *f == frames[5]), "IPv6 arrived");
    // VLAN 7 and the other host's frame were dropped by the socket filter: they never took a
    // ring slot (not in the kernel's tp_packets), so the user-space skip saw none of them.
    let skipped: u64 = stats.iter().map(|s| s.otherhost_skipped).sum();
    assert_eq!(skipped, 0, "{stats:?}");
    let rx_frames: u64 = stats.iter().map(|s| s.rx_frames).sum();
    let packets: u64 = stats.iter().map(|s| s.ring_packets).sum();
    assert_eq!(rx_frames, got.len() as u64);
    assert_eq!(rx_frames, 4, "{stats:?}");
    assert_eq!(packets, rx_frames, "{stats:?}");
    // The same without fanout.
    let mut solo_seqs: Vec<u32> = solo_got.iter().filter_map(|f| udp_seq(f)).collect();
    solo_seqs.sort_unstable();
    assert_eq!(solo_seqs, vec![1, 3], "{solo_stats:?}");
    assert_eq!(solo_got.len(), 4, "{solo_stats:?}");
    assert_eq!(solo_stats.otherhost_skipped, 0, "{solo_stats:?}");
    assert_eq!(solo_stats.ring_packets, 4, "{solo_stats:?}");
}
