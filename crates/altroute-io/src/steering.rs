//! The router's fanout steering: which worker gets a frame, as a classic BPF program for
//! `PACKET_FANOUT_CBPF` and as the same function in Rust.
//!
//! In a `PACKET_FANOUT_CBPF` group the kernel runs the group's program on every frame and
//! delivers it to member `ret % members` (members are numbered in the order they joined). The
//! router wants every frame of one NAT flow on the worker whose table holds it, in both
//! directions, without shared state. The NAT hands out external ports so that the owner of a
//! flow is `(port / BLOCK) % N` of one port of the frame, its *key*:
//!
//! | frame | LAN side | WAN side |
//! |---|---|---|
//! | TCP/UDP | source port; destination port if sent to one of the router's external addresses (hairpin); a port forward's outside port if sent from its inside endpoint | destination port |
//! | ICMP echo | request: identifier | reply: identifier |
//! | ICMP error (3, 4, 5, 11, 12) | the embedded packet's key as the LAN side would see it going back: its destination port (or the forward's outside port, or its source port if that is an external address) | the embedded packet's source port (echo: its identifier) |
//! | anything else (ARP, IPv6, fragments) | [`OtherTraffic`] | [`OtherTraffic`] |
//!
//! The port-forward and external-address rules make the three cases a bare port-block rule gets
//! wrong land where their flows are: the inside host's replies of a port forward (their source
//! port is the inside port, their flow lives with the outside port), hairpin traffic (its flows
//! live with the external port it is sent to and with the port the router translated it to), and
//! ICMP errors about any of them.
//!
//! [`Steering::program`] builds the program; [`Steering::worker`] computes the same choice in
//! Rust, with the same loads in the same order (a load past the end of the frame makes the
//! kernel's program return 0, and the Rust side returns worker 0 at the same point). The tests
//! run the program in a cBPF interpreter against the Rust function on random frames. Replay and
//! software handoff use [`Steering::worker`], so every place that decides an owner decides it
//! the same way.
//!
//! The program reads the frame relative to the MAC header (`SKF_LL_OFF`), so it sees the same bytes
//! whether or not the kernel moved an 802.1Q tag into the skb metadata, and handles one tag left
//! in the frame.

use std::net::Ipv4Addr;
use std::num::NonZeroU32;

use crate::bpf::{Asm, BpfProgram, Label, ll, op};

/// Which side of the router an interface is on; decides which port identifies the flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    /// LAN: TCP/UDP source port, ICMP echo-request identifier.
    Lan,
    /// WAN: TCP/UDP destination port, ICMP echo-reply identifier.
    Wan,
}

/// Where the steering program sends frames that carry no key (ARP, IPv6, fragments, other ICMP).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OtherTraffic {
    /// All to worker 0.
    Worker0,
    /// By `skb->hash` (`SKF_AD_RXHASH`; zero unless a driver or RPS computed it, in which case
    /// this also ends on worker 0).
    RxHash,
}

/// A port forward as the steering program sees it: frames from `inside` (its replies) belong to
/// the worker of `outside_port`, where the forward's flows live.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ForwardSteer {
    /// IP protocol (6 or 17).
    pub proto: u8,
    /// The inside host.
    pub inside: Ipv4Addr,
    /// The inside port.
    pub inside_port: u16,
    /// The outside (WAN) port.
    pub outside_port: u16,
}

/// Most port forwards one program checks (24 instructions each, outside and inside ICMP errors;
/// 4,096-instruction limit with room to spare).
pub const MAX_FORWARDS: usize = 128;
/// Most external addresses one program checks.
pub const MAX_EXTERNAL: usize = 64;

/// The router's fanout steering for one interface (see the module doc).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Steering {
    /// Interface side.
    pub side: Side,
    /// Ports per block (`BLOCK`).
    pub block: NonZeroU32,
    /// Number of workers (`N`, the number of sockets in the fanout group).
    pub workers: NonZeroU32,
    /// Policy for frames without a key.
    pub other: OtherTraffic,
    /// The router's external (NAT) addresses; used on the LAN side. At most [`MAX_EXTERNAL`].
    pub external: Vec<Ipv4Addr>,
    /// Port forwards; used on the LAN side. At most [`MAX_FORWARDS`].
    pub forwards: Vec<ForwardSteer>,
}

const ETH_P_8021Q: u32 = 0x8100;
const ETH_P_IP: u32 = 0x0800;
const IPPROTO_ICMP: u32 = 1;
const IPPROTO_TCP: u32 = 6;
const IPPROTO_UDP: u32 = 17;
const ICMP_ECHO_REPLY: u32 = 0;
const ICMP_ECHO_REQUEST: u32 = 8;
/// ICMP types whose body carries the packet they are about: destination unreachable, source
/// quench, redirect, time exceeded, parameter problem.
const ICMP_ERRORS: [u32; 5] = [3, 4, 5, 11, 12];

/// Scratch memory words of the program.
mod m {
    /// The 802.1Q tag's length (0 or 4): the IPv4 header is at `LL + 14 + TAG`.
    pub const TAG: u32 = 0;
    /// The outer IPv4 protocol.
    pub const PROTO: u32 = 1;
    /// `TAG + IHL * 4`: the outer L4 header is at `LL + 14 + L4`.
    pub const L4: u32 = 2;
    /// `L4 + 8`: an ICMP error's embedded IPv4 header is at `LL + 14 + IIP`.
    pub const IIP: u32 = 3;
    /// The embedded packet's protocol.
    pub const IPROTO: u32 = 4;
    /// `IIP + inner IHL * 4`: the embedded L4 header is at `LL + 14 + IL4`.
    pub const IL4: u32 = 5;
}

/// What the Rust mirror found: a key port, "other" traffic, or a load past the end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    Key(u16),
    Other,
    Short,
}

/// Big-endian loads from a frame; `None` past its end.
#[derive(Clone, Copy)]
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn b8(self, o: usize) -> Option<u32> {
        self.0.get(o).map(|&b| u32::from(b))
    }
    fn b16(self, o: usize) -> Option<u32> {
        let b = self.0.get(o..o.checked_add(2)?)?;
        Some(u32::from(u16::from_be_bytes([b[0], b[1]])))
    }
    fn b32(self, o: usize) -> Option<u32> {
        let b = self.0.get(o..o.checked_add(4)?)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// Offsets of (the inside host's port, the external address, the external side's port, the
/// inside host's address) in an IPv4 + L4 header. Outside an error the inside host is the source
/// on the LAN and the external address the destination; inside an error, the reverse.
const fn port_offsets(inner: bool) -> (usize, usize, usize, usize) {
    if inner {
        (2, 12, 0, 16)
    } else {
        (0, 16, 2, 12)
    }
}

impl Steering {
    /// Steering for `side` with `block` ports per block over `workers` workers; frames without a
    /// key go to worker 0; no external addresses or port forwards.
    pub fn new(side: Side, block: NonZeroU32, workers: NonZeroU32) -> Steering {
        Steering {
            side,
            block,
            workers,
            other: OtherTraffic::Worker0,
            external: Vec::new(),
            forwards: Vec::new(),
        }
    }

    /// The same steering, also knowing the router's external addresses and port forwards (LAN
    /// side; the WAN side ignores them). Lists longer than [`MAX_EXTERNAL`] / [`MAX_FORWARDS`]
    /// are cut (the configuration check refuses them first).
    pub fn with_nat(mut self, external: &[Ipv4Addr], forwards: &[ForwardSteer]) -> Steering {
        self.external = external.iter().copied().take(MAX_EXTERNAL).collect();
        self.forwards = forwards.iter().copied().take(MAX_FORWARDS).collect();
        self
    }

    /// The classic BPF program for `PACKET_FANOUT_DATA`.
    pub fn program(&self) -> BpfProgram {
        // The program is built from fixed pieces and bounded lists, and tested; a failure here
        // is a bug in this function.
        match Emit::new(self).emit() {
            Ok(p) => p,
            Err(e) => panic!("steering program does not assemble: {e}"),
        }
    }

    /// The port (or ICMP identifier) the program steers `frame` by, or `None` if the frame is
    /// "other" traffic. `frame` starts at the MAC header.
    pub fn key(&self, frame: &[u8]) -> Option<u16> {
        match self.classify(frame) {
            Class::Key(k) => Some(k),
            Class::Other | Class::Short => None,
        }
    }

    /// The worker (fanout member index) the kernel delivers `frame` to, given the skb hash the
    /// kernel would see (only used with [`OtherTraffic::RxHash`]).
    pub fn worker(&self, frame: &[u8], rxhash: u32) -> u32 {
        let n = self.workers.get();
        match self.classify(frame) {
            Class::Key(k) => (u32::from(k) / self.block.get()) % n,
            // A load past the end makes the kernel's program return 0.
            Class::Short => 0,
            Class::Other => match self.other {
                OtherTraffic::Worker0 => 0,
                OtherTraffic::RxHash => rxhash % n,
            },
        }
    }

    fn classify(&self, f: &[u8]) -> Class {
        match self.try_classify(f) {
            Some(c) => c,
            None => Class::Short,
        }
    }

    /// The Rust mirror of [`Emit`]: the same loads in the same order; `None` is a load past the
    /// end.
    fn try_classify(&self, f: &[u8]) -> Option<Class> {
        let f = Bytes(f);
        let (b8, b16) = (|o| f.b8(o), |o| f.b16(o));
        let key = |v: u32| Some(Class::Key(v as u16));
        let lan = self.side == Side::Lan;

        let et = b16(12)?;
        let tag = if et == ETH_P_8021Q {
            if b16(16)? != ETH_P_IP {
                return Some(Class::Other);
            }
            4
        } else if et == ETH_P_IP {
            0
        } else {
            return Some(Class::Other);
        };
        let ip = 14 + tag;
        if b16(ip + 6)? & 0x3fff != 0 {
            return Some(Class::Other);
        }
        let proto = b8(ip + 9)?;
        let l4 = ip + (b8(ip)? & 0x0f) as usize * 4;
        match proto {
            IPPROTO_TCP | IPPROTO_UDP => self.ports_key(f, ip, proto, l4, false),
            IPPROTO_ICMP => {
                let ty = b8(l4)?;
                let echo = if lan {
                    ICMP_ECHO_REQUEST
                } else {
                    ICMP_ECHO_REPLY
                };
                if ty == echo {
                    return key(b16(l4 + 4)?);
                }
                if !ICMP_ERRORS.contains(&ty) {
                    return Some(Class::Other);
                }
                let iip = l4 + 8;
                let vihl = b8(iip)?;
                if vihl >> 4 != 4 {
                    return Some(Class::Other);
                }
                if b16(iip + 6)? & 0x1fff != 0 {
                    return Some(Class::Other);
                }
                let iproto = b8(iip + 9)?;
                let il4 = iip + (vihl & 0x0f) as usize * 4;
                match iproto {
                    IPPROTO_TCP | IPPROTO_UDP => self.ports_key(f, iip, iproto, il4, true),
                    IPPROTO_ICMP => {
                        // The embedded packet went the other way: on the WAN it is our
                        // translated echo request, on the LAN the host's echo reply.
                        let want = if lan {
                            ICMP_ECHO_REPLY
                        } else {
                            ICMP_ECHO_REQUEST
                        };
                        if b8(il4)? != want {
                            return Some(Class::Other);
                        }
                        key(b16(il4 + 4)?)
                    }
                    _ => Some(Class::Other),
                }
            }
            _ => Some(Class::Other),
        }
    }

    /// The key of TCP/UDP ports (mirror of [`Emit::ports`]): the IPv4 header at `ip`, its
    /// protocol, the L4 header at `l4`; `inner`: a packet embedded in an ICMP error.
    fn ports_key(
        &self,
        f: Bytes<'_>,
        ip: usize,
        proto: u32,
        l4: usize,
        inner: bool,
    ) -> Option<Class> {
        let (host_port, ext_addr, ext_port, host_addr) = port_offsets(inner);
        let key = |v: u32| Some(Class::Key(v as u16));
        if self.side == Side::Wan {
            return key(f.b16(l4 + ext_port)?);
        }
        if !self.external.is_empty() {
            let a = f.b32(ip + ext_addr)?;
            if self.external.iter().any(|e| u32::from(*e) == a) {
                return key(f.b16(l4 + ext_port)?);
            }
        }
        for fw in &self.forwards {
            if f.b32(ip + host_addr)? == u32::from(fw.inside)
                && proto == u32::from(fw.proto)
                && f.b16(l4 + host_port)? == u32::from(fw.inside_port)
            {
                return key(u32::from(fw.outside_port));
            }
        }
        key(f.b16(l4 + host_port)?)
    }
}

/// Builds the program of one [`Steering`]; each method emits one piece of it.
struct Emit<'a> {
    st: &'a Steering,
    a: Asm,
    /// Divide the key in `A` by the block, modulo the workers, return it.
    compute: Label,
    /// Return per [`OtherTraffic`].
    other: Label,
}

/// `ld [X + LL + 14 + off]` of `size` (`op::B`, `op::H`, `op::W`).
fn ld_ind(a: &mut Asm, size: u16, off: i32) {
    a.s(op::LD | size | op::IND, ll(14 + off));
}

impl<'a> Emit<'a> {
    fn new(st: &'a Steering) -> Emit<'a> {
        let mut a = Asm::new();
        let compute = a.label();
        let other = a.label();
        Emit {
            st,
            a,
            compute,
            other,
        }
    }

    fn lan(&self) -> bool {
        self.st.side == Side::Lan
    }

    fn emit(mut self) -> Result<BpfProgram, String> {
        use op::*;
        let (ports, icmp) = (self.a.label(), self.a.label());
        self.ethernet();
        // X = tag length: the IPv4 header is at LL + 14 + X.
        self.a.s(STX, m::TAG);
        // MF or an offset: no ports.
        self.ip_header(0x3fff, m::PROTO, m::L4, ports, icmp);

        self.a.bind(ports);
        self.ports(m::TAG, m::PROTO, m::L4, false);
        self.a.bind(icmp);
        self.icmp();
        self.tail();
        self.a.finish()
    }

    /// An IPv4 header at `LL + 14 + X`: "other" if a fragment bit of `frag_mask` is set; its
    /// protocol into `M[proto]`, `X + IHL * 4` into `M[l4]`; on to `ports` (TCP, UDP) or `icmp`.
    fn ip_header(&mut self, frag_mask: u32, proto: u32, l4: u32, ports: Label, icmp: Label) {
        use op::*;
        let a = &mut self.a;
        ld_ind(a, H, 6); // flags + fragment offset
        a.if_set(frag_mask, self.other);
        ld_ind(a, B, 9);
        a.s(ST, proto);
        ld_ind(a, B, 0); // version/IHL
        a.s(ALU | AND | K, 0x0f);
        a.s(ALU | LSH | K, 2);
        a.s(ALU | ADD | X, 0);
        a.s(ST, l4);
        a.s(LD | MEM, proto);
        a.if_eq(IPPROTO_TCP, ports);
        a.if_eq(IPPROTO_UDP, ports);
        a.if_eq(IPPROTO_ICMP, icmp);
        a.ja(self.other);
    }

    /// The EtherType and an optional 802.1Q tag: X = tag length, or "other".
    fn ethernet(&mut self) {
        use op::*;
        let (vlan, untagged, ip) = (self.a.label(), self.a.label(), self.a.label());
        let a = &mut self.a;
        a.s(LD | H | ABS, ll(12));
        a.if_eq(ETH_P_8021Q, vlan);
        a.ja(untagged);
        a.bind(vlan);
        a.s(LD | H | ABS, ll(16));
        a.if_ne(ETH_P_IP, self.other);
        a.s(LDX | W | IMM, 4);
        a.ja(ip);
        a.bind(untagged);
        a.if_ne(ETH_P_IP, self.other);
        a.s(LDX | W | IMM, 0);
        a.bind(ip);
    }

    /// TCP/UDP ports of an IPv4 header at `LL + 14 + M[ip]` whose protocol is `M[proto]` and
    /// whose L4 header is at `LL + 14 + M[l4]`. `inner`: the packet embedded in an ICMP error,
    /// which went the other way (its source port is the WAN key, its destination port the LAN
    /// key).
    fn ports(&mut self, ip: u32, proto: u32, l4: u32, inner: bool) {
        use op::*;
        let (host_port, ext_addr, ext_port, host_addr) = port_offsets(inner);
        let (host_port, ext_addr, ext_port, host_addr) = (
            host_port as i32,
            ext_addr as i32,
            ext_port as i32,
            host_addr as i32,
        );
        if !self.lan() {
            let a = &mut self.a;
            a.s(LDX | MEM, l4);
            // WAN: the external side's port (destination, or source inside an error).
            ld_ind(a, H, ext_port);
            a.ja(self.compute);
            return;
        }
        if !self.st.external.is_empty() {
            let (hit, miss) = (self.a.label(), self.a.label());
            let a = &mut self.a;
            a.s(LDX | MEM, ip);
            ld_ind(a, W, ext_addr);
            for e in &self.st.external {
                a.if_eq(u32::from(*e), hit);
            }
            a.ja(miss);
            a.bind(hit);
            a.s(LDX | MEM, l4);
            ld_ind(a, H, ext_port);
            a.ja(self.compute);
            a.bind(miss);
        }
        for fw in &self.st.forwards {
            let next = self.a.label();
            let a = &mut self.a;
            a.s(LDX | MEM, ip);
            ld_ind(a, W, host_addr);
            a.if_ne(u32::from(fw.inside), next);
            a.s(LD | MEM, proto);
            a.if_ne(u32::from(fw.proto), next);
            a.s(LDX | MEM, l4);
            ld_ind(a, H, host_port);
            a.if_ne(u32::from(fw.inside_port), next);
            a.s(LD | IMM, u32::from(fw.outside_port));
            a.ja(self.compute);
            a.bind(next);
        }
        let a = &mut self.a;
        a.s(LDX | MEM, l4);
        ld_ind(a, H, host_port);
        a.ja(self.compute);
    }

    /// ICMP: the echo identifier, or the key of the packet an error is about.
    fn icmp(&mut self) {
        use op::*;
        let (echo_id, error, inner_ports, inner_icmp) = (
            self.a.label(),
            self.a.label(),
            self.a.label(),
            self.a.label(),
        );
        let (echo, inner_echo) = if self.lan() {
            (ICMP_ECHO_REQUEST, ICMP_ECHO_REPLY)
        } else {
            (ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST)
        };
        let a = &mut self.a;
        a.s(LDX | MEM, m::L4);
        ld_ind(a, B, 0); // type
        a.if_eq(echo, echo_id);
        for t in ICMP_ERRORS {
            a.if_eq(t, error);
        }
        a.ja(self.other);
        a.bind(echo_id);
        ld_ind(a, H, 4);
        a.ja(self.compute);

        // The embedded IPv4 header at LL + 14 + M[L4] + 8.
        a.bind(error);
        a.s(LD | MEM, m::L4);
        a.s(ALU | ADD | K, 8);
        a.s(ST, m::IIP);
        a.s(MISC | TAX, 0);
        ld_ind(a, B, 0); // version/IHL
        a.s(ALU | RSH | K, 4);
        a.if_ne(4, self.other);
        // A later fragment: no ports (the first one carries them).
        self.ip_header(0x1fff, m::IPROTO, m::IL4, inner_ports, inner_icmp);

        self.a.bind(inner_ports);
        self.ports(m::IIP, m::IPROTO, m::IL4, true);

        let a = &mut self.a;
        a.bind(inner_icmp);
        a.s(LDX | MEM, m::IL4);
        ld_ind(a, B, 0);
        a.if_ne(inner_echo, self.other);
        ld_ind(a, H, 4);
        a.ja(self.compute);
    }

    /// The two exits: the block arithmetic, and "other" traffic.
    fn tail(&mut self) {
        use op::*;
        let a = &mut self.a;
        a.bind(self.compute);
        a.s(ALU | DIV | K, self.st.block.get());
        a.s(ALU | MOD | K, self.st.workers.get());
        a.s(RET | A, 0);
        a.bind(self.other);
        match self.st.other {
            OtherTraffic::Worker0 => a.s(RET | K, 0),
            OtherTraffic::RxHash => {
                a.s(LD | W | ABS, (op::SKF_AD_OFF + op::SKF_AD_RXHASH) as u32);
                a.s(RET | A, 0);
            }
        }
    }
}

#[cfg(test)]
mod tests;
