//! Random traffic for the pipeline's property tests, through the two-WAN router of [`ctx`] (port
//! forward TCP 8080 → HOST2:80): connections from LAN hosts (some with IP options, some UDP
//! datagrams sent as fragments), the Internet's replies to what the router sent, connections to
//! the port forward from the Internet and from the LAN (hairpin), the inside hosts' answers to
//! what the router delivered, ICMP errors from both sides quoting what the router sent or
//! delivered, mangled frames, time passing and gateways going down and up. [`Traffic`] turns a
//! step into a frame from what the router sent so far.

use super::*;
use proptest::prelude::*;

/// One step of random traffic.
#[derive(Clone, Debug)]
pub(super) enum Step {
    /// A TCP segment from a LAN host: (host index, source port index, flags, TTL, other MAC).
    LanTcp(u8, u8, u8, u8, bool),
    /// A UDP datagram from a LAN host: (host index, source port index).
    LanUdp(u8, u8),
    /// A TCP (`false`) or UDP (`true`) packet from a LAN host with 4 bytes of IP options (router
    /// alert): (host index, source port index, UDP).
    LanOptions(u8, u8, bool),
    /// A UDP datagram from a LAN host sent as a fragment: the first (more fragments) or a later
    /// one: (host index, source port index, later).
    LanFragment(u8, u8, bool),
    /// The answer to the `n`th frame forwarded out of a WAN so far, with these TCP flags (ignored
    /// for UDP) and TTL.
    Reply(u16, u8, u8),
    /// A connection from the Internet to the port forward (TCP 8080): (client index, flags, on
    /// wan2 rather than wan1).
    Inbound(u8, u8, bool),
    /// A LAN host connecting to the port forward on isp1's external address (hairpin): (host
    /// index, source port index, flags).
    Hairpin(u8, u8, u8),
    /// The inside host's answer to the `n`th frame delivered to the LAN so far, with these TCP
    /// flags.
    LanAnswer(u16, u8),
    /// An ICMP error from the Internet about the `n`th frame sent out of a WAN: (n, kind, quote
    /// only the IP header and 8 bytes).
    WanError(u16, u8, bool),
    /// An ICMP error from the inside host about the `n`th frame delivered to the LAN: (n, kind,
    /// short quote).
    LanError(u16, u8, bool),
    /// A frame forwarded earlier, replayed with one byte changed (at offset `n % len`).
    Mangled(u16, u16, u8),
    /// Time passes (seconds).
    Wait(u8),
    /// Gateway `g` goes down (flows reset) or comes back.
    Link(u8, bool),
}

/// Mostly what makes connections established, some of what ends them.
fn lan_flags() -> impl Strategy<Value = u8> {
    prop_oneof![
        12 => Just(ACK),
        3 => Just(SYN),
        1 => Just(ACK | 0x01), // FIN
        1 => Just(RST),
    ]
}

fn reply_flags() -> impl Strategy<Value = u8> {
    prop_oneof![
        8 => Just(ACK),
        4 => Just(SYN | ACK),
        1 => Just(ACK | 0x01), // FIN
        1 => Just(RST),
    ]
}

/// A step: the traffic the fast path was first tested with (LAN TCP and UDP, replies, mangled
/// frames, time, gateways) and, weighted by `more` (0: none of it), IP options, fragments, port
/// forwards, hairpin, the inside hosts' answers and ICMP errors both ways.
pub(super) fn step(more: u32) -> impl Strategy<Value = Step> {
    let ttl = prop_oneof![8 => Just(64u8), 1 => Just(1u8)];
    let n = any::<u16>();
    prop_oneof![
        20 => (0u8..3, 0u8..6, lan_flags(), ttl.clone(), proptest::bool::weighted(0.05))
            .prop_map(|(h, p, f, t, m)| Step::LanTcp(h, p, f, t, m)),
        8 => (0u8..3, 0u8..6).prop_map(|(h, p)| Step::LanUdp(h, p)),
        24 => (n, reply_flags(), ttl).prop_map(|(n, f, t)| Step::Reply(n, f, t)),
        2 => (n, any::<u16>(), any::<u8>()).prop_map(|(n, o, b)| Step::Mangled(n, o, b)),
        2 => (0u8..40).prop_map(Step::Wait),
        1 => (0u8..2, any::<bool>()).prop_map(|(g, up)| Step::Link(g, up)),
        2 * more => (0u8..3, 0u8..6, any::<bool>()).prop_map(|(h, p, u)| Step::LanOptions(h, p, u)),
        more => (0u8..3, 0u8..6, any::<bool>()).prop_map(|(h, p, l)| Step::LanFragment(h, p, l)),
        3 * more => (0u8..4, prop_oneof![3 => Just(SYN), 2 => Just(ACK), 1 => Just(RST)], any::<bool>())
            .prop_map(|(c, f, w)| Step::Inbound(c, f, w)),
        more => (0u8..3, 0u8..4, prop_oneof![2 => Just(SYN), 1 => Just(ACK)])
            .prop_map(|(h, p, f)| Step::Hairpin(h, p, f)),
        4 * more => (n, reply_flags()).prop_map(|(n, f)| Step::LanAnswer(n, f)),
        3 * more => (n, 0u8..4, any::<bool>()).prop_map(|(n, k, s)| Step::WanError(n, k, s)),
        2 * more => (n, 0u8..4, any::<bool>()).prop_map(|(n, k, s)| Step::LanError(n, k, s)),
    ]
}

/// The LAN hosts: HOST, HOST2 (the port forward's target) and a third.
pub(super) const HOSTS: [[u8; 4]; 3] = [HOST, HOST2, [10, 0, 0, 4]];
/// Internet clients of the port forward.
const CLIENTS: [[u8; 4]; 4] = [
    [203, 0, 113, 50],
    [203, 0, 113, 51],
    [198, 51, 100, 77],
    [192, 0, 2, 99],
];
/// A router on the path that answers with ICMP errors.
const HOP: [u8; 4] = [203, 0, 113, 1];

/// LAN host `h`'s MAC (`other`: another MAC for the same address).
pub(super) fn host_mac(h: usize, other: bool) -> MacAddr {
    MacAddr([2, 0, 0, 0, 0, 0x40 + h as u8 + if other { 8 } else { 0 }])
}

/// The IPv4 header offset of an Ethernet frame (untagged or one 802.1Q tag), if IPv4.
pub(super) fn l3_of(f: &[u8]) -> Option<usize> {
    match f.get(12..14)? {
        [0x81, 0x00] if f.get(16..18)? == [0x08, 0x00] => Some(18),
        [0x08, 0x00] => Some(14),
        _ => None,
    }
}

/// Whether an IPv4 frame is a fragment.
fn is_fragment(f: &[u8], l3: usize) -> bool {
    f.get(l3 + 6..l3 + 8)
        .is_some_and(|w| u16::from_be_bytes([w[0], w[1]]) & 0x3fff != 0)
}

/// The TCP or UDP ports of an unfragmented IPv4 frame.
pub(super) fn l4_ports(f: &[u8]) -> Option<(u16, u16)> {
    let l3 = l3_of(f)?;
    if is_fragment(f, l3) || !matches!(f.get(l3 + 9)?, 6 | 17) {
        return None;
    }
    let l4 = l3 + usize::from(f.get(l3)? & 15) * 4;
    let p = f.get(l4..l4 + 4)?;
    Some((
        u16::from_be_bytes([p[0], p[1]]),
        u16::from_be_bytes([p[2], p[3]]),
    ))
}

/// Source, destination and protocol of an IPv4 frame.
fn addrs(f: &[u8]) -> Option<([u8; 4], [u8; 4], u8)> {
    let l3 = l3_of(f)?;
    Some((
        f.get(l3 + 12..l3 + 16)?.try_into().ok()?,
        f.get(l3 + 16..l3 + 20)?.try_into().ok()?,
        *f.get(l3 + 9)?,
    ))
}

/// Recomputes the IPv4 header checksum of the header at `l3`.
fn fix_ip_checksum(f: &mut [u8], l3: usize) {
    let ihl = usize::from(f[l3] & 15) * 4;
    f[l3 + 10..l3 + 12].copy_from_slice(&[0, 0]);
    let c = !ones(&f[l3..l3 + ihl], 0);
    f[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
}

/// A TCP or UDP packet with 4 bytes of IP options (router alert).
pub(super) fn with_options(
    macs: (MacAddr, MacAddr),
    (src, dst, ttl): ([u8; 4], [u8; 4], u8),
    (sp, dp): (u16, u16),
    udp: bool,
) -> Vec<u8> {
    let mut h = etherparse::Ipv4Header::new(
        0,
        ttl,
        if udp {
            etherparse::IpNumber::UDP
        } else {
            etherparse::IpNumber::TCP
        },
        src,
        dst,
    )
    .unwrap();
    h.options = [148u8, 4, 0, 0].into();
    let b = PacketBuilder::ethernet2(macs.0.0, macs.1.0)
        .ip(etherparse::IpHeaders::Ipv4(h, Default::default()));
    let mut v = Vec::new();
    if udp {
        b.udp(sp, dp).write(&mut v, b"options").unwrap();
    } else {
        b.tcp(sp, dp, 1000, 64000)
            .ack(77)
            .write(&mut v, b"options")
            .unwrap();
    }
    v
}

/// An ICMP error of `kind` (port unreachable, fragmentation needed, time exceeded, host
/// unreachable) from `src` to `dst` with TTL `ttl`, quoting `quote`.
pub(super) fn icmp_error(
    macs: (MacAddr, MacAddr),
    (src, dst, ttl): ([u8; 4], [u8; 4], u8),
    kind: u8,
    quote: &[u8],
) -> Vec<u8> {
    let (t, code, rest) = match kind % 4 {
        0 => (3, 3, [0; 4]),
        1 => (3, 4, [0, 0, 0x05, 0x00]),
        2 => (11, 0, [0; 4]),
        _ => (3, 1, [0; 4]),
    };
    let mut v = Vec::new();
    PacketBuilder::ethernet2(macs.0.0, macs.1.0)
        .ipv4(src, dst, ttl)
        .icmpv4_raw(t, code, rest)
        .write(&mut v, quote)
        .unwrap();
    v
}

/// The IPv4 packet of frame `f` an ICMP error quotes: all of it, or its header and 8 bytes.
pub(super) fn quote_of(f: &[u8], short: bool) -> Option<Vec<u8>> {
    let l3 = l3_of(f)?;
    let total = usize::from(u16::from_be_bytes([*f.get(l3 + 2)?, *f.get(l3 + 3)?]));
    let ip = f.get(l3..l3 + total)?;
    let ihl = usize::from(ip[0] & 15) * 4;
    let n = if short { ihl + 8 } else { total.min(548) };
    Some(ip.get(..n)?.to_vec())
}

/// What the router sent so far, to build answers from.
pub(super) struct Traffic {
    /// The LAN port's VLAN.
    pub vlan: Option<u16>,
    /// TCP/UDP frames forwarded out of a WAN (output bytes, out port).
    pub sent: Vec<(Vec<u8>, PortId)>,
    /// TCP/UDP frames delivered to the LAN (output bytes, as sent: tagged on a VLAN LAN).
    pub delivered: Vec<Vec<u8>>,
}

impl Traffic {
    pub fn new(vlan: Option<u16>) -> Traffic {
        Traffic {
            vlan,
            sent: Vec::new(),
            delivered: Vec::new(),
        }
    }

    /// A frame as it arrives on the LAN port (tagged if the port is a VLAN).
    pub fn lan_tag(&self, f: Vec<u8>) -> Vec<u8> {
        match self.vlan {
            None => f,
            Some(v) => {
                let mut t = f[..12].to_vec();
                t.extend_from_slice(&[0x81, 0x00, 0, v as u8]);
                t.extend_from_slice(&f[12..]);
                t
            }
        }
    }

    /// Remembers a frame the router forwarded out of `port`.
    pub fn record(&mut self, out: &[u8], port: PortId) {
        if l4_ports(out).is_none() {
            return;
        }
        if port.0 == 0 {
            self.delivered.push(out.to_vec());
        } else {
            self.sent.push((out.to_vec(), port));
        }
    }

    /// The gateway's and the WAN port's MACs of WAN port `port`.
    fn wan_macs(port: PortId) -> (MacAddr, MacAddr) {
        if port.0 == 1 {
            (G1_MAC, W1_MAC)
        } else {
            (G2_MAC, W2_MAC)
        }
    }

    /// The frame of `step` and the link it arrives on, and whether it is mangled; `None` for
    /// steps that are not frames or have nothing to answer yet.
    pub fn frame(&self, step: &Step) -> Option<(Vec<u8>, u8, bool)> {
        let lan = |f: Vec<u8>| Some((self.lan_tag(f), 0u8, false));
        match *step {
            Step::LanTcp(h, p, fl, ttl, other) => {
                let h = usize::from(h);
                let sp = 40000 + u16::from(p);
                lan(tcp_frame(
                    host_mac(h, other),
                    LAN_MAC,
                    HOSTS[h],
                    SRV,
                    sp,
                    443,
                    fl,
                    ttl,
                ))
            }
            Step::LanUdp(h, p) => {
                let h = usize::from(h);
                let sp = 50000 + u16::from(p);
                lan(udp_frame(
                    host_mac(h, false),
                    LAN_MAC,
                    HOSTS[h],
                    SRV,
                    sp,
                    53,
                ))
            }
            Step::LanOptions(h, p, udp) => {
                let h = usize::from(h);
                let sp = if udp { 50000 } else { 40000 } + u16::from(p);
                lan(with_options(
                    (host_mac(h, false), LAN_MAC),
                    (HOSTS[h], SRV, 64),
                    (sp, if udp { 53 } else { 443 }),
                    udp,
                ))
            }
            Step::LanFragment(h, p, later) => {
                let h = usize::from(h);
                let sp = 50000 + u16::from(p);
                let mut f = udp_frame(host_mac(h, false), LAN_MAC, HOSTS[h], SRV, sp, 53);
                // More fragments, or offset 185 × 8 (a later fragment).
                let w: u16 = if later { 185 } else { 0x2000 };
                f[20..22].copy_from_slice(&w.to_be_bytes());
                fix_ip_checksum(&mut f, 14);
                lan(f)
            }
            Step::Reply(n, fl, ttl) => {
                let (out, port) = self.sent.get(usize::from(n) % self.sent.len().max(1))?;
                let (src, dst, pr) = addrs(out)?;
                let (sp, dp) = l4_ports(out)?;
                let (gw, wan) = Self::wan_macs(*port);
                let f = if pr == proto::TCP {
                    tcp_frame(gw, wan, dst, src, dp, sp, fl, ttl)
                } else {
                    udp_frame(gw, wan, dst, src, dp, sp)
                };
                Some((f, port.0, false))
            }
            Step::Inbound(c, fl, on_wan2) => {
                let c = usize::from(c) % CLIENTS.len();
                let (port, ext) = if on_wan2 {
                    (PortId(2), EXT2)
                } else {
                    (PortId(1), EXT1)
                };
                let (gw, wan) = Self::wan_macs(port);
                let sp = 55000 + c as u16;
                let f = tcp_frame(gw, wan, CLIENTS[c], ext, sp, 8080, fl, 50);
                Some((f, port.0, false))
            }
            Step::Hairpin(h, p, fl) => {
                let h = usize::from(h);
                let sp = 41000 + u16::from(p);
                lan(tcp_frame(
                    host_mac(h, false),
                    LAN_MAC,
                    HOSTS[h],
                    EXT1,
                    sp,
                    8080,
                    fl,
                    64,
                ))
            }
            Step::LanAnswer(n, fl) => {
                let d = self
                    .delivered
                    .get(usize::from(n) % self.delivered.len().max(1))?;
                let (src, dst, pr) = addrs(d)?;
                let (sp, dp) = l4_ports(d)?;
                let h = HOSTS.iter().position(|x| *x == dst)?;
                let mac = host_mac(h, false);
                let f = if pr == proto::TCP {
                    tcp_frame(mac, LAN_MAC, dst, src, dp, sp, fl, 64)
                } else {
                    udp_frame(mac, LAN_MAC, dst, src, dp, sp)
                };
                lan(f)
            }
            Step::WanError(n, kind, short) => {
                let (out, port) = self.sent.get(usize::from(n) % self.sent.len().max(1))?;
                let (src, dst, _) = addrs(out)?;
                let from = if kind % 4 == 0 { dst } else { HOP };
                let f = icmp_error(
                    Self::wan_macs(*port),
                    (from, src, 60),
                    kind,
                    &quote_of(out, short)?,
                );
                Some((f, port.0, false))
            }
            Step::LanError(n, kind, short) => {
                let d = self
                    .delivered
                    .get(usize::from(n) % self.delivered.len().max(1))?;
                let (src, dst, _) = addrs(d)?;
                let h = HOSTS.iter().position(|x| *x == dst)?;
                let f = icmp_error(
                    (host_mac(h, false), LAN_MAC),
                    (dst, src, 64),
                    kind,
                    &quote_of(d, short)?,
                );
                lan(f)
            }
            Step::Mangled(n, at, b) => {
                let (out, port) = self.sent.get(usize::from(n) % self.sent.len().max(1))?;
                let (src, dst, pr) = addrs(out)?;
                let (sp, dp) = l4_ports(out)?;
                let (gw, wan) = Self::wan_macs(*port);
                let mut f = if pr == proto::TCP {
                    tcp_frame(gw, wan, dst, src, dp, sp, ACK, 64)
                } else {
                    udp_frame(gw, wan, dst, src, dp, sp)
                };
                let k = usize::from(at) % f.len();
                f[k] ^= b | 1;
                Some((f, port.0, true))
            }
            Step::Wait(_) | Step::Link(..) => None,
        }
    }
}
