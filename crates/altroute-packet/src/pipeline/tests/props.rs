//! NAT reversibility and checksum validity as properties, frame for frame against frames built
//! independently with etherparse: a conversation between an inside host and a remote one — TCP,
//! UDP or ICMP echo from the inside, or a connection from the Internet to the port forward — on
//! a tagged or untagged LAN, with or without IP options, through either gateway; then ICMP errors
//! about it from both sides (port unreachable, fragmentation needed, time exceeded, host
//! unreachable; quoting the whole packet or its IP header and 8 bytes). Each frame the router
//! sends must be exactly the packet the other side would have sent, translated: addresses, ports
//! or identifier, TTL − 1, MACs, VLAN tag, every checksum (the quoted packet's too).

use super::traffic::{HOSTS, host_mac, icmp_error, quote_of};
use super::*;
use crate::testutil::cases;
use proptest::prelude::*;

/// What the conversation carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Tcp,
    Udp,
    /// ICMP echo from the inside host (its identifier is the "port" both ways).
    Echo,
    /// TCP from the Internet to the port forward (8080 → HOST2:80).
    Forward,
}

/// One conversation: the inside host (address, MAC, port), the remote one (address, port), and
/// the external address and port it uses on WAN port `wan`.
#[derive(Clone, Copy, Debug)]
struct Conv {
    kind: Kind,
    inside: ([u8; 4], MacAddr, u16),
    remote: ([u8; 4], u16),
    ext: ([u8; 4], u16),
    wan: u8,
}

/// A frame: Ethernet `macs`, IPv4 `src` → `dst` with `ttl` (and 4 bytes of options), then TCP
/// with `flags`, UDP, or an echo request or reply whose identifier is `sp` (request) or `dp`.
fn frame(
    kind: Kind,
    macs: (MacAddr, MacAddr),
    (src, dst, ttl): ([u8; 4], [u8; 4], u8),
    (sp, dp): (u16, u16),
    (flags, request, opts): (u8, bool, bool),
) -> Vec<u8> {
    let p = match kind {
        Kind::Tcp | Kind::Forward => etherparse::IpNumber::TCP,
        Kind::Udp => etherparse::IpNumber::UDP,
        Kind::Echo => etherparse::IpNumber::ICMP,
    };
    let mut h = etherparse::Ipv4Header::new(0, ttl, p, src, dst).unwrap();
    if opts {
        h.options = [148u8, 4, 0, 0].into();
    }
    let b = PacketBuilder::ethernet2(macs.0.0, macs.1.0)
        .ip(etherparse::IpHeaders::Ipv4(h, Default::default()));
    let payload = b"reversible";
    let mut v = Vec::new();
    match kind {
        Kind::Tcp | Kind::Forward => {
            let b = b.tcp(sp, dp, 1000, 64000);
            let b = if flags & SYN != 0 { b.syn() } else { b };
            let b = if flags & ACK != 0 { b.ack(77) } else { b };
            b.write(&mut v, payload).unwrap();
        }
        Kind::Udp => b.udp(sp, dp).write(&mut v, payload).unwrap(),
        Kind::Echo if request => b.icmpv4_echo_request(sp, 7).write(&mut v, payload).unwrap(),
        Kind::Echo => b.icmpv4_echo_reply(dp, 7).write(&mut v, payload).unwrap(),
    }
    v
}

/// The translated source port (or echo identifier) of a frame the router sent out of a WAN.
fn sent_port(kind: Kind, f: &[u8]) -> u16 {
    let l4 = 14 + usize::from(f[14] & 15) * 4;
    let at = if kind == Kind::Echo { l4 + 4 } else { l4 };
    u16::from_be_bytes([f[at], f[at + 1]])
}

fn wan_macs(wan: u8) -> (MacAddr, MacAddr, [u8; 4]) {
    if wan == 1 {
        (W1_MAC, G1_MAC, EXT1)
    } else {
        (W2_MAC, G2_MAC, EXT2)
    }
}

impl Conv {
    /// The inside host's packet: on the LAN (`lan`) or, translated, on the WAN.
    fn by_inside(&self, lan: bool, ttl: u8, flags: u8, opts: bool) -> Vec<u8> {
        let (addr, mac, port) = self.inside;
        let (ra, rp) = self.remote;
        let (wmac, gmac, _) = wan_macs(self.wan);
        let (macs, src, sp) = if lan {
            ((mac, LAN_MAC), addr, port)
        } else {
            ((wmac, gmac), self.ext.0, self.ext.1)
        };
        let dp = if self.kind == Kind::Echo { sp } else { rp };
        let request = self.kind == Kind::Echo;
        frame(
            self.kind,
            macs,
            (src, ra, ttl),
            (sp, dp),
            (flags, request, opts),
        )
    }

    /// The remote host's packet: on the WAN or, translated, delivered on the LAN (`lan`).
    fn by_remote(&self, lan: bool, ttl: u8, flags: u8) -> Vec<u8> {
        let (addr, mac, port) = self.inside;
        let (ra, rp) = self.remote;
        let (wmac, gmac, _) = wan_macs(self.wan);
        let (macs, dst, dp) = if lan {
            ((LAN_MAC, mac), addr, port)
        } else {
            ((gmac, wmac), self.ext.0, self.ext.1)
        };
        let sp = if self.kind == Kind::Echo { dp } else { rp };
        frame(
            self.kind,
            macs,
            (ra, dst, ttl),
            (sp, dp),
            (flags, false, false),
        )
    }
}

/// Runs `f` on link `link`; it must be forwarded out of port `port`: the frame sent, whose
/// checksums must all hold.
fn through(c: &mut Context, f: &[u8], link: u8, port: u8) -> Result<Vec<u8>, TestCaseError> {
    let (v, out) = run(c, f, link);
    prop_assert!(
        matches!(v, Verdict::Forward { port: p, .. } if p == PortId(port)),
        "{v:?} for {:02x?}",
        f
    );
    assert_checksums(&out);
    Ok(out)
}

/// One conversation and the errors about it (see the module doc).
#[allow(clippy::too_many_arguments)]
fn reversible(
    kind: Kind,
    (h, remote, ports): (usize, [u8; 4], (u16, u16)),
    weights: (u32, u32),
    vlan: Option<u16>,
    opts: bool,
    (wan_kind, lan_kind, short): (u8, u8, bool),
    from_hop: bool,
) -> Result<(), TestCaseError> {
    let mut c = ctx(weights, vlan);
    let tag = |f: Vec<u8>| match vlan {
        None => f,
        Some(v) => {
            let mut t = f[..12].to_vec();
            t.extend_from_slice(&[0x81, 0x00]);
            t.extend_from_slice(&v.to_be_bytes());
            t.extend_from_slice(&f[12..]);
            t
        }
    };
    let (f_in, f_out) = match kind {
        Kind::Forward => (SYN | ACK, SYN),
        _ => (SYN, SYN | ACK),
    };
    let mut conv;
    let (out_in, delivered);
    if kind == Kind::Forward {
        // HOST2 talks once (the router learns its MAC); the client connects to the forward.
        run(
            &mut c,
            &tag(udp_frame(H2_MAC, LAN_MAC, HOST2, SRV, 1, 53)),
            0,
        );
        let wan = if weights.0 == 0 { 2 } else { 1 };
        conv = Conv {
            kind,
            inside: (HOST2, H2_MAC, 80),
            remote: (remote, ports.0.max(1)),
            ext: (wan_macs(wan).2, 8080),
            wan,
        };
        delivered = through(&mut c, &conv.by_remote(false, 50, f_out), wan, 0)?;
        prop_assert_eq!(&delivered, &tag(conv.by_remote(true, 49, f_out)));
        let f = conv.by_inside(true, 64, f_in, opts);
        out_in = through(&mut c, &tag(f), 0, wan)?;
        prop_assert_eq!(&out_in, &conv.by_inside(false, 63, f_in, opts));
    } else {
        let (addr, mac) = (HOSTS[h], host_mac(h, false));
        conv = Conv {
            kind,
            inside: (addr, mac, ports.0),
            remote: (remote, ports.1),
            ext: (EXT1, 0),
            wan: 1,
        };
        let f = tag(conv.by_inside(true, 64, f_in, opts));
        let (v, out) = run(&mut c, &f, 0);
        let Verdict::Forward { port, .. } = v else {
            return Err(TestCaseError::fail(format!("{v:?}")));
        };
        prop_assert!(port.0 == 1 || port.0 == 2);
        conv.wan = port.0;
        conv.ext = (wan_macs(port.0).2, sent_port(kind, &out));
        assert_checksums(&out);
        prop_assert_eq!(&out, &conv.by_inside(false, 63, f_in, opts));
        out_in = out;
        let back = through(&mut c, &conv.by_remote(false, 50, f_out), conv.wan, 0)?;
        prop_assert_eq!(&back, &tag(conv.by_remote(true, 49, f_out)));
        delivered = back;
    }
    let (wmac, gmac, ext) = wan_macs(conv.wan);
    let (inside, imac, _) = conv.inside;
    let remote = conv.remote.0;
    // From the Internet, about what the router sent: back to the inside host, quoting the packet
    // as it sent it (with the TTL the router left it).
    let from = if from_hop && wan_kind % 4 != 0 {
        [203, 0, 113, 1]
    } else {
        remote
    };
    let q = quote_of(&out_in, short).unwrap();
    let e = icmp_error((gmac, wmac), (from, ext, 60), wan_kind, &q);
    let back = through(&mut c, &e, conv.wan, 0)?;
    let q = quote_of(&conv.by_inside(true, 63, f_in, opts), short).unwrap();
    let want = tag(icmp_error(
        (LAN_MAC, imac),
        (from, inside, 59),
        wan_kind,
        &q,
    ));
    prop_assert_eq!(back, want);
    // From the inside host, about what the router delivered: out to the remote host from the
    // external address, quoting the packet as the remote host sent it.
    let q = quote_of(&delivered, short).unwrap();
    let e = tag(icmp_error(
        (imac, LAN_MAC),
        (inside, remote, 64),
        lan_kind,
        &q,
    ));
    let out = through(&mut c, &e, 0, conv.wan)?;
    let q = quote_of(&conv.by_remote(false, 49, f_out), short).unwrap();
    let want = icmp_error((wmac, gmac), (ext, remote, 63), lan_kind, &q);
    prop_assert_eq!(out, want);
    Ok(())
}

/// A remote address: in the documentation range beyond the gateways' networks, or a public one.
fn remote_addr() -> impl Strategy<Value = [u8; 4]> {
    prop_oneof![
        (2u8..=254).prop_map(|x| [203, 0, 113, x]),
        (1u8..=223, any::<u8>(), any::<u8>(), 1u8..=254)
            .prop_filter("not special", |(a, b, _, _)| {
                !matches!(
                    (a, b),
                    (10, _)
                        | (127, _)
                        | (100, 64..=127)
                        | (169, 254)
                        | (172, 16..=31)
                        | (192, 168)
                        | (192, 0)
                        | (198, 18..=19)
                        | (198, 51)
                )
            })
            .prop_map(|(a, b, c, d)| [a, b, c, d]),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(512)))]

    /// Through the NAT and back, and ICMP errors about it from both sides: every frame the router
    /// sends is exactly the other side's packet, translated (see the module doc).
    #[test]
    fn nat_is_reversible_and_checksums_hold(
        kind in prop_oneof![Just(Kind::Tcp), Just(Kind::Udp), Just(Kind::Echo), Just(Kind::Forward)],
        h in 0usize..3,
        remote in remote_addr(),
        ports in (1024u16.., 1u16..),
        weights in prop_oneof![Just((1, 0)), Just((0, 1)), Just((1, 1))],
        vlan in proptest::option::of(1u16..4095),
        opts: bool,
        kinds in (0u8..4, 0u8..4, any::<bool>()),
        from_hop: bool,
    ) {
        reversible(kind, (h, remote, ports), weights, vlan, opts, kinds, from_hop)?;
    }
}
