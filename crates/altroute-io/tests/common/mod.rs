//! Network-namespace lab for the integration tests: uniquely named namespaces and veth pairs,
//! torn down by a Drop guard on every exit path, plus helpers to run code or commands inside them.
//!
//! Tests call [`lab_or_skip`]: without root or the needed tools they print why and return `None`,
//! unless `ALTROUTE_REQUIRE_NETNS` is set, in which case that is a failure.
#![allow(dead_code)]

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::JoinHandle;

static SEQ: AtomicU32 = AtomicU32::new(0);

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Checks root and `tools`; returns a fresh lab or explains the skip.
pub fn lab_or_skip(test: &str, tools: &[&str]) -> Option<Lab> {
    let required = std::env::var_os("ALTROUTE_REQUIRE_NETNS").is_some();
    let mut missing = Vec::new();
    if !is_root() {
        missing.push("root".to_string());
    }
    for t in ["ip", "sysctl"].iter().chain(tools) {
        if !have(t) {
            missing.push((*t).to_string());
        }
    }
    if !missing.is_empty() {
        let msg = format!("{test}: skipped, missing {}", missing.join(", "));
        if required {
            panic!("{msg} (ALTROUTE_REQUIRE_NETNS is set)");
        }
        eprintln!("{msg}");
        return None;
    }
    Some(Lab::new(test))
}

/// A set of namespaces deleted on drop.
pub struct Lab {
    prefix: String,
    namespaces: Vec<String>,
}

/// Runs a command, panicking with its output if it fails.
pub fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("spawn {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Lab {
    fn new(test: &str) -> Lab {
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let tag: String = test
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .take(6)
            .collect();
        Lab {
            prefix: format!("ario{}-{n}{tag}-", std::process::id()),
            namespaces: Vec::new(),
        }
    }

    /// Creates namespace `short` (lo up, IPv6 off so the kernel stays quiet); returns its name.
    pub fn ns(&mut self, short: &str) -> String {
        let name = format!("{}{short}", self.prefix);
        sh(&["ip", "netns", "add", &name]);
        self.namespaces.push(name.clone());
        sh(&["ip", "-n", &name, "link", "set", "lo", "up"]);
        for key in ["all", "default"] {
            sh(&[
                "ip",
                "netns",
                "exec",
                &name,
                "sysctl",
                "-qw",
                &format!("net.ipv6.conf.{key}.disable_ipv6=1"),
            ]);
        }
        name
    }

    /// A veth pair `a`@`ns_a` <-> `b`@`ns_b`, both up.
    pub fn veth(&self, ns_a: &str, a: &str, ns_b: &str, b: &str) {
        sh(&[
            "ip", "link", "add", a, "netns", ns_a, "type", "veth", "peer", "name", b, "netns", ns_b,
        ]);
        sh(&["ip", "-n", ns_a, "link", "set", a, "up"]);
        sh(&["ip", "-n", ns_b, "link", "set", b, "up"]);
    }

    /// Runs `args` inside `ns` and returns whether it succeeded (output on stderr if not).
    pub fn exec_ok(&self, ns: &str, args: &[&str]) -> bool {
        let out = Command::new("ip")
            .args(["netns", "exec", ns])
            .args(args)
            .output()
            .expect("spawn ip netns exec");
        if !out.status.success() {
            eprintln!(
                "{args:?} in {ns}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        out.status.success()
    }

    /// Runs `args` inside `ns`, panicking on failure.
    pub fn exec(&self, ns: &str, args: &[&str]) -> String {
        let mut v = vec!["ip", "netns", "exec", ns];
        v.extend_from_slice(args);
        sh(&v)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in self.namespaces.drain(..).rev() {
            let _ = Command::new("ip").args(["netns", "del", &ns]).status();
        }
    }
}

/// Runs `f` on a new thread inside namespace `ns`.
pub fn spawn_in<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> JoinHandle<T> {
    let ns = ns.to_owned();
    std::thread::spawn(move || {
        altroute_io::netns::enter(&ns).unwrap_or_else(|e| panic!("enter {ns}: {e}"));
        f()
    })
}

/// Runs `f` inside namespace `ns` and waits for it.
pub fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    match spawn_in(ns, f).join() {
        Ok(v) => v,
        Err(p) => std::panic::resume_unwind(p),
    }
}

/// A deterministic byte pattern for transfers.
pub fn pattern(i: u64) -> u8 {
    let x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (x >> 56) as u8 ^ (i as u8)
}

/// An IPv4 header without options (DF, TTL 64) with a valid checksum.
pub fn ipv4_header(total_len: u16, proto: u8, src: [u8; 4], dst: [u8; 4]) -> [u8; 20] {
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&total_len.to_be_bytes());
    ip[6] = 0x40;
    ip[8] = 64;
    ip[9] = proto;
    ip[12..16].copy_from_slice(&src);
    ip[16..20].copy_from_slice(&dst);
    let mut s: u32 = 0;
    for c in ip.chunks(2) {
        s += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    ip[10..12].copy_from_slice(&(!(s as u16)).to_be_bytes());
    ip
}

/// An Ethernet/IPv4/UDP frame with `seq` in the payload (checksum 0: not checked on UDP/IPv4).
pub fn udp_frame(
    dst: [u8; 6],
    src: [u8; 6],
    vlan: Option<u16>,
    sport: u16,
    dport: u16,
    seq: u32,
    payload_len: usize,
) -> Vec<u8> {
    let mut f = Vec::with_capacity(64 + payload_len);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    if let Some(tci) = vlan {
        f.extend_from_slice(&0x8100u16.to_be_bytes());
        f.extend_from_slice(&tci.to_be_bytes());
    }
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    let total = (20 + 8 + 4 + payload_len) as u16;
    let ip = ipv4_header(total, 17, [10, 77, 0, 1], [10, 77, 0, 2]);
    f.extend_from_slice(&ip);
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&((8 + 4 + payload_len) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(&seq.to_be_bytes());
    f.extend((0..payload_len).map(|i| pattern(i as u64)));
    f
}

/// The sequence number of a frame built by [`udp_frame`] (after an optional tag).
pub fn udp_seq(frame: &[u8]) -> Option<u32> {
    let off = if frame.get(12..14)? == [0x81, 0x00] {
        4
    } else {
        0
    };
    if frame.get(12 + off..14 + off)? != [0x08, 0x00] || *frame.get(23 + off)? != 17 {
        return None;
    }
    let s = frame.get(42 + off..46 + off)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

/// A broadcast ARP request from `src` (10.77.0.1) for 10.77.0.2.
pub fn arp_request(src: [u8; 6]) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 1]);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[10, 77, 0, 1]);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&[10, 77, 0, 2]);
    f.resize(60, 0);
    f
}

/// An Ethernet/IPv6/UDP frame (2001:db8::1 to 2001:db8::2, checksum not computed) with `seq` in
/// its payload.
pub fn ipv6_frame(dst: [u8; 6], src: [u8; 6], seq: u32) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0, 0, 12, 17, 64]);
    for last in [1u8, 2] {
        f.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
        f.extend_from_slice(&[0; 11]);
        f.push(last);
    }
    f.extend_from_slice(&[0x9c, 0x40, 0x00, 0x35, 0, 12, 0, 0]);
    f.extend_from_slice(&seq.to_be_bytes());
    f
}

/// The MAC address of `iface` in the calling thread's namespace.
pub fn mac_of(iface: &str) -> [u8; 6] {
    altroute_io::host::inspect(iface)
        .expect("inspect")
        .mac
        .expect("ethernet interface")
}

/// A closure that sends `frames` out of `c0` (a TX-only port), 16 per batch, all of them; run it
/// in the client namespace with [`in_ns`].
pub fn send_raw(frames: Vec<Vec<u8>>) -> impl FnOnce() + Send + 'static {
    use altroute_io::{Port, PortConfig, RxMode, TxFrame};
    move || {
        let mut p = Port::open(&PortConfig {
            rx: RxMode::None,
            ..PortConfig::new("c0")
        })
        .expect("open c0");
        for chunk in frames.chunks(16) {
            assert_eq!(
                p.send(chunk.iter().map(|f| TxFrame::new(f))).sent,
                chunk.len()
            );
        }
    }
}

/// The number of cases of a property test: `PROPTEST_CASES` when set (as for the tests that take
/// proptest's default configuration), else `default`. `ProptestConfig::with_cases(n)` alone
/// ignores the variable.
pub fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
