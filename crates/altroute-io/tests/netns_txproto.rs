//! The `skb->protocol` the kernel gives frames a port transmits. A packet socket bound to one
//! EtherType sends every frame with that protocol unless the message names another one
//! (`packet_snd`/`tpacket_snd` only parse the frame's own EtherType when the protocol is 0 or
//! `ETH_P_ALL`), so a port bound with [`RxBind::ip`] (IPv4 first) must still send its ARP and
//! IPv6 frames marked as ARP and IPv6. An `ETH_P_ALL` socket on the same interface sees the
//! outgoing copies (`PACKET_OUTGOING`) with `sll_protocol` = `skb->protocol`. Every transmit path
//! is checked: sendmmsg and the TX ring, plain and with `PACKET_VNET_HDR`.

mod common;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use altroute_io::{Port, PortConfig, RxBind, TxFrame, TxMode};
use common::{arp_request, in_ns, ipv6_frame, lab_or_skip, mac_of, udp_frame};

const ETH_P_ALL: u16 = 0x0003;
const PACKET_OUTGOING: u8 = 4;

/// An `ETH_P_ALL` packet socket on `iface` with a 100 ms receive timeout.
fn tap(iface: &str) -> OwnedFd {
    // SAFETY: plain socket(2) call; the result is checked before it is wrapped.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW,
            libc::c_int::from(ETH_P_ALL.to_be()),
        )
    };
    assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
    // SAFETY: `fd` is a fresh socket nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let ifindex = altroute_io::host::inspect(iface).expect("inspect").ifindex;
    // SAFETY: sockaddr_ll is a plain C struct; all-zero is valid.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = ETH_P_ALL.to_be();
    sll.sll_ifindex = ifindex as i32;
    // SAFETY: `sll` is a valid sockaddr_ll and the length matches it.
    let r = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0, "bind: {}", std::io::Error::last_os_error());
    let tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 100_000,
    };
    // SAFETY: `tv` is a valid timeval and the length matches it.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0, "SO_RCVTIMEO: {}", std::io::Error::last_os_error());
    fd
}

/// One frame from the tap: (bytes, sll_protocol in host order, sll_pkttype); `None` on timeout.
fn recv(fd: &OwnedFd) -> Option<(Vec<u8>, u16, u8)> {
    let mut buf = vec![0u8; 2048];
    // SAFETY: sockaddr_ll is a plain C struct; all-zero is valid.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: `buf` and `sll` are valid for writes of the lengths passed.
    let n = unsafe {
        libc::recvfrom(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            0,
            (&mut sll as *mut libc::sockaddr_ll).cast(),
            &mut len,
        )
    };
    if n < 0 {
        return None;
    }
    buf.truncate(n as usize);
    Some((buf, u16::from_be(sll.sll_protocol), sll.sll_pkttype))
}

/// Sends ARP, IPv6 and IPv4 frames (source MAC ending in `tag`) through a port bound to
/// IPv4, ARP and IPv6 with `tx`/`vnet`, and returns (frame EtherType, `skb->protocol`) of each
/// outgoing copy the tap saw.
fn case(tx: TxMode, vnet: bool, tag: u8) -> Vec<(u16, u16)> {
    let peer = mac_of("t1");
    let src = [0x02, 0, 0, 0, 0x77, tag];
    let frames = [
        arp_request(src),
        ipv6_frame(peer, src, 1),
        udp_frame(peer, src, None, 1111, 2222, 2, 50),
    ];
    let t = tap("t0");
    let mut p = Port::open(&PortConfig {
        bind: RxBind::ip(),
        tx,
        vnet_hdr: vnet,
        ..PortConfig::new("t0")
    })
    .expect("open t0");
    let out = p.send(frames.iter().map(|f| TxFrame::new(f)));
    assert_eq!(out.sent, 3, "tag {tag}: {:?}", p.stats_cached());
    p.flush();
    let mut seen = Vec::new();
    let start = Instant::now();
    while seen.len() < frames.len() && start.elapsed() < Duration::from_secs(3) {
        let Some((f, proto, pkttype)) = recv(&t) else {
            continue;
        };
        if f.get(6..12) != Some(&src[..]) {
            continue;
        }
        assert_eq!(pkttype, PACKET_OUTGOING, "tag {tag}: our own frame");
        assert!(frames.contains(&f), "tag {tag}: frame unchanged");
        seen.push((u16::from_be_bytes([f[12], f[13]]), proto));
    }
    seen
}

#[test]
fn bound_port_transmits_each_frame_with_its_own_protocol() {
    let Some(mut lab) = lab_or_skip("txproto", &[]) else {
        return;
    };
    let t = lab.ns("t");
    lab.veth(&t, "t0", &t, "t1");
    let results = in_ns(&t, || {
        [
            ("sendmmsg", TxMode::Sendmmsg, false),
            ("sendmmsg+vnet", TxMode::Sendmmsg, true),
            ("tx ring", TxMode::Ring { frames: 16 }, false),
            ("tx ring+vnet", TxMode::Ring { frames: 16 }, true),
        ]
        .into_iter()
        .enumerate()
        .map(|(i, (name, tx, vnet))| (name, case(tx, vnet, i as u8)))
        .collect::<Vec<_>>()
    });
    let mut wrong = Vec::new();
    for (name, seen) in results {
        let mut types: Vec<u16> = seen.iter().map(|s| s.0).collect();
        types.sort_unstable();
        assert_eq!(
            types,
            vec![0x0800, 0x0806, 0x86dd],
            "{name}: all three sent"
        );
        for (ethertype, proto) in seen {
            if proto != ethertype {
                wrong.push(format!(
                    "{name}: frame {ethertype:#06x} left with skb->protocol {proto:#06x}"
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}
