//! Classic BPF programs for `PACKET_FANOUT_CBPF`, and the router's steering program.
//!
//! In a `PACKET_FANOUT_CBPF` group the kernel runs the group's program on every frame and
//! delivers it to member `ret % members` (members are numbered in the order they joined). The
//! router wants all frames of one NAT flow on one worker, in both directions, without shared
//! state: the NAT picks external ports so that `(port / BLOCK) % N` of the LAN-side source port and
//! of the WAN-side destination port agree. [`Steering`] builds that program and
//! [`Steering::worker`] computes the same answer in Rust (the two are compared by a small cBPF
//! interpreter in the tests).
//!
//! The program reads the frame relative to the MAC header (`SKF_LL_OFF`), so it sees the same bytes
//! whether or not the kernel moved an 802.1Q tag into the skb metadata, and handles one tag left
//! in the frame.

use std::num::NonZeroU32;

/// One classic BPF instruction (`struct sock_filter`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct BpfInsn {
    /// Opcode (class | size | mode, or class | op | source).
    pub code: u16,
    /// Jump offset if true (conditional jumps).
    pub jt: u8,
    /// Jump offset if false (conditional jumps).
    pub jf: u8,
    /// Generic field: constant, offset, jump distance for `ja`.
    pub k: u32,
}

/// Opcode pieces from `linux/filter.h` / `linux/bpf_common.h`.
#[allow(missing_docs)]
pub mod op {
    pub const LD: u16 = 0x00;
    pub const LDX: u16 = 0x01;
    pub const ST: u16 = 0x02;
    pub const STX: u16 = 0x03;
    pub const ALU: u16 = 0x04;
    pub const JMP: u16 = 0x05;
    pub const RET: u16 = 0x06;
    pub const MISC: u16 = 0x07;
    pub const W: u16 = 0x00;
    pub const H: u16 = 0x08;
    pub const B: u16 = 0x10;
    pub const IMM: u16 = 0x00;
    pub const ABS: u16 = 0x20;
    pub const IND: u16 = 0x40;
    pub const MEM: u16 = 0x60;
    pub const LEN: u16 = 0x80;
    pub const MSH: u16 = 0xa0;
    pub const ADD: u16 = 0x00;
    pub const SUB: u16 = 0x10;
    pub const MUL: u16 = 0x20;
    pub const DIV: u16 = 0x30;
    pub const OR: u16 = 0x40;
    pub const AND: u16 = 0x50;
    pub const LSH: u16 = 0x60;
    pub const RSH: u16 = 0x70;
    pub const NEG: u16 = 0x80;
    pub const MOD: u16 = 0x90;
    pub const XOR: u16 = 0xa0;
    pub const JA: u16 = 0x00;
    pub const JEQ: u16 = 0x10;
    pub const JGT: u16 = 0x20;
    pub const JGE: u16 = 0x30;
    pub const JSET: u16 = 0x40;
    pub const K: u16 = 0x00;
    pub const X: u16 = 0x08;
    pub const A: u16 = 0x10;
    pub const TAX: u16 = 0x00;
    pub const TXA: u16 = 0x80;
    /// `SKF_AD_OFF`: base of the ancillary loads.
    pub const SKF_AD_OFF: i32 = -0x1000;
    /// `SKF_AD_PROTOCOL`.
    pub const SKF_AD_PROTOCOL: i32 = 0;
    /// `SKF_AD_PKTTYPE`: `skb->pkt_type` (`PACKET_HOST`, `PACKET_OTHERHOST`, ...).
    pub const SKF_AD_PKTTYPE: i32 = 4;
    /// `SKF_AD_RXHASH`.
    pub const SKF_AD_RXHASH: i32 = 32;
    /// `SKF_NET_OFF`: loads relative to the network header.
    pub const SKF_NET_OFF: i32 = -0x100000;
    /// `SKF_LL_OFF`: loads relative to the MAC header.
    pub const SKF_LL_OFF: i32 = -0x200000;
}

/// A validated classic BPF program (1..=4096 instructions, forward in-range jumps, ends in `ret`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BpfProgram {
    insns: Vec<BpfInsn>,
}

impl BpfProgram {
    /// Validates the structural rules the kernel's `bpf_check_classic` enforces on jumps, length
    /// and the final `ret` (opcode-level checks stay with the kernel).
    pub fn new(insns: Vec<BpfInsn>) -> Result<BpfProgram, String> {
        if insns.is_empty() || insns.len() > 4096 {
            return Err(format!("program length {} not in 1..=4096", insns.len()));
        }
        for (pc, i) in insns.iter().enumerate() {
            if i.code & 0x07 == op::JMP {
                let targets: &[usize] = if i.code & 0xf0 == op::JA {
                    &[pc + 1 + i.k as usize]
                } else {
                    &[pc + 1 + i.jt as usize, pc + 1 + i.jf as usize]
                };
                if targets.iter().any(|&t| t >= insns.len()) {
                    return Err(format!("jump at {pc} leaves the program"));
                }
            }
            if (i.code == op::ALU | op::DIV | op::K || i.code == op::ALU | op::MOD | op::K)
                && i.k == 0
            {
                return Err(format!("division by constant zero at {pc}"));
            }
        }
        match insns.last() {
            Some(l) if l.code & 0x07 == op::RET => Ok(BpfProgram { insns }),
            _ => Err("the last instruction must be a ret".into()),
        }
    }

    /// The instructions.
    pub fn insns(&self) -> &[BpfInsn] {
        &self.insns
    }
}

/// Which side of the router an interface is on; decides which port identifies the flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    /// LAN: TCP/UDP source port, ICMP echo-request identifier.
    Lan,
    /// WAN: TCP/UDP destination port, ICMP echo-reply identifier.
    Wan,
}

/// Where the steering program sends frames that carry no port (ARP, IPv6, fragments, other ICMP).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OtherTraffic {
    /// All to worker 0.
    Worker0,
    /// By `skb->hash` (`SKF_AD_RXHASH`; zero unless a driver or RPS computed it, in which case
    /// this also ends on worker 0).
    RxHash,
}

/// The router's fanout steering: `worker = (port / block) % workers` for IPv4 TCP/UDP (not
/// fragmented) and ICMP echo, optionally behind one 802.1Q tag; everything else per
/// [`OtherTraffic`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Steering {
    /// Interface side.
    pub side: Side,
    /// Ports per block (`BLOCK`).
    pub block: NonZeroU32,
    /// Number of workers (`N`, the number of sockets in the fanout group).
    pub workers: NonZeroU32,
    /// Policy for frames without a port.
    pub other: OtherTraffic,
}

const ETH_P_8021Q: u32 = 0x8100;
const ETH_P_IP: u32 = 0x0800;
const IPPROTO_ICMP: u32 = 1;
const IPPROTO_TCP: u32 = 6;
const IPPROTO_UDP: u32 = 17;
const ICMP_ECHO_REPLY: u32 = 0;
const ICMP_ECHO_REQUEST: u32 = 8;

/// Labels of the steering program.
#[derive(Clone, Copy)]
enum L {
    Next,
    Vlan,
    NoVlan,
    SetX4,
    SetX0,
    Ip,
    L4,
    Icmp,
    Compute,
    Other,
}
const NLABELS: usize = 10;

/// A tiny forward-only assembler: jumps name labels, resolved when the program is finished.
struct Asm {
    code: Vec<(BpfInsn, Option<(L, L)>)>,
    at: [Option<usize>; NLABELS],
}

impl Asm {
    fn new() -> Asm {
        Asm {
            code: Vec::new(),
            at: [None; NLABELS],
        }
    }
    fn label(&mut self, l: L) {
        self.at[l as usize] = Some(self.code.len());
    }
    fn s(&mut self, code: u16, k: u32) {
        self.code.push((
            BpfInsn {
                code,
                jt: 0,
                jf: 0,
                k,
            },
            None,
        ));
    }
    fn j(&mut self, code: u16, k: u32, jt: L, jf: L) {
        self.code.push((
            BpfInsn {
                code,
                jt: 0,
                jf: 0,
                k,
            },
            Some((jt, jf)),
        ));
    }
    fn finish(self) -> Result<BpfProgram, String> {
        let mut out = Vec::with_capacity(self.code.len());
        for (pc, (mut i, j)) in self.code.into_iter().enumerate() {
            if let Some((jt, jf)) = j {
                let rel = |l: L| -> Result<usize, String> {
                    if let L::Next = l {
                        return Ok(0);
                    }
                    let t = self.at[l as usize].ok_or("undefined label")?;
                    t.checked_sub(pc + 1)
                        .ok_or_else(|| "backward jump".to_string())
                };
                if i.code == op::JMP | op::JA {
                    i.k = rel(jt)? as u32;
                } else {
                    i.jt = u8::try_from(rel(jt)?).map_err(|_| "jump too far")?;
                    i.jf = u8::try_from(rel(jf)?).map_err(|_| "jump too far")?;
                }
            }
            out.push(i);
        }
        BpfProgram::new(out)
    }
}

/// `SKF_LL_OFF + off` as the `k` of an absolute or indirect load.
const fn ll(off: i32) -> u32 {
    (op::SKF_LL_OFF + off) as u32
}

impl Steering {
    /// Steering for `side` with `block` ports per block over `workers` workers; frames without a
    /// port go to worker 0.
    pub fn new(side: Side, block: NonZeroU32, workers: NonZeroU32) -> Steering {
        Steering {
            side,
            block,
            workers,
            other: OtherTraffic::Worker0,
        }
    }

    /// The classic BPF program for `PACKET_FANOUT_DATA`.
    pub fn program(&self) -> BpfProgram {
        use op::*;
        let port_off: u32 = match self.side {
            Side::Lan => 0,
            Side::Wan => 2,
        };
        let icmp_type = match self.side {
            Side::Lan => ICMP_ECHO_REQUEST,
            Side::Wan => ICMP_ECHO_REPLY,
        };
        let mut a = Asm::new();
        a.s(LD | H | ABS, ll(12)); // A = ethertype
        a.j(JMP | JEQ | K, ETH_P_8021Q, L::Vlan, L::NoVlan);
        a.label(L::Vlan);
        a.s(LD | H | ABS, ll(16)); // A = inner ethertype
        a.j(JMP | JEQ | K, ETH_P_IP, L::SetX4, L::Other);
        a.label(L::SetX4);
        a.s(LDX | W | IMM, 4);
        a.j(JMP | JA, 0, L::Ip, L::Ip);
        a.label(L::NoVlan);
        a.j(JMP | JEQ | K, ETH_P_IP, L::SetX0, L::Other);
        a.label(L::SetX0);
        a.s(LDX | W | IMM, 0);
        a.label(L::Ip); // X = tag length; the IPv4 header is at LL + 14 + X
        a.s(LD | H | IND, ll(14 + 6)); // flags + fragment offset
        a.j(JMP | JSET | K, 0x3fff, L::Other, L::Next); // MF or offset: no ports
        a.s(LD | B | IND, ll(14 + 9)); // protocol
        a.j(JMP | JEQ | K, IPPROTO_TCP, L::L4, L::Next);
        a.j(JMP | JEQ | K, IPPROTO_UDP, L::L4, L::Next);
        a.j(JMP | JEQ | K, IPPROTO_ICMP, L::Icmp, L::Other);
        a.label(L::L4);
        a.s(LD | B | IND, ll(14)); // version/IHL
        a.s(ALU | AND | K, 0x0f);
        a.s(ALU | LSH | K, 2);
        a.s(ALU | ADD | X, 0);
        a.s(MISC | TAX, 0); // X = tag length + IHL * 4: L4 at LL + 14 + X
        a.s(LD | H | IND, ll(14) + port_off);
        a.j(JMP | JA, 0, L::Compute, L::Compute);
        a.label(L::Icmp);
        a.s(LD | B | IND, ll(14));
        a.s(ALU | AND | K, 0x0f);
        a.s(ALU | LSH | K, 2);
        a.s(ALU | ADD | X, 0);
        a.s(MISC | TAX, 0);
        a.s(LD | B | IND, ll(14)); // ICMP type
        a.j(JMP | JEQ | K, icmp_type, L::Next, L::Other);
        a.s(LD | H | IND, ll(14 + 4)); // echo identifier
        a.label(L::Compute);
        a.s(ALU | DIV | K, self.block.get());
        a.s(ALU | MOD | K, self.workers.get());
        a.s(RET | A, 0);
        a.label(L::Other);
        match self.other {
            OtherTraffic::Worker0 => a.s(RET | K, 0),
            OtherTraffic::RxHash => {
                a.s(LD | W | ABS, (SKF_AD_OFF + SKF_AD_RXHASH) as u32);
                a.s(RET | A, 0);
            }
        }
        // The program is fixed and tested; a failure here is a bug in this function.
        match a.finish() {
            Ok(p) => p,
            Err(e) => panic!("steering program does not assemble: {e}"),
        }
    }

    /// The port (or ICMP echo identifier) the program steers `frame` by, or `None` if the frame
    /// is "other" traffic. `frame` starts at the MAC header.
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
        let be16 =
            |o: usize| -> Option<u16> { Some(u16::from_be_bytes([*f.get(o)?, *f.get(o + 1)?])) };
        let step = || -> Result<Class, ()> {
            let et = be16(12).ok_or(())?;
            let x = if u32::from(et) == ETH_P_8021Q {
                if u32::from(be16(16).ok_or(())?) != ETH_P_IP {
                    return Ok(Class::Other);
                }
                4
            } else if u32::from(et) == ETH_P_IP {
                0
            } else {
                return Ok(Class::Other);
            };
            let ip = 14 + x;
            if be16(ip + 6).ok_or(())? & 0x3fff != 0 {
                return Ok(Class::Other);
            }
            let proto = u32::from(*f.get(ip + 9).ok_or(())?);
            let l4 = ip + usize::from(f.get(ip).ok_or(())? & 0x0f) * 4;
            match proto {
                IPPROTO_TCP | IPPROTO_UDP => {
                    let off = match self.side {
                        Side::Lan => 0,
                        Side::Wan => 2,
                    };
                    Ok(Class::Key(be16(l4 + off).ok_or(())?))
                }
                IPPROTO_ICMP => {
                    let want = match self.side {
                        Side::Lan => ICMP_ECHO_REQUEST,
                        Side::Wan => ICMP_ECHO_REPLY,
                    };
                    if u32::from(*f.get(l4).ok_or(())?) != want {
                        return Ok(Class::Other);
                    }
                    Ok(Class::Key(be16(l4 + 4).ok_or(())?))
                }
                _ => Ok(Class::Other),
            }
        };
        step().unwrap_or(Class::Short)
    }
}

enum Class {
    Key(u16),
    Other,
    Short,
}

#[cfg(test)]
pub(crate) mod interp {
    //! A classic BPF interpreter for tests, modelling the kernel's socket-filter semantics:
    //! a load past the end of the frame ends the program with 0; `SKF_LL_OFF` loads are relative to
    //! the MAC header, `SKF_NET_OFF` to `net_off`, non-negative offsets to the frame start (the
    //! fanout hook sees the MAC header there on transmit; our programs only use `SKF_LL_OFF`).
    use super::{BpfInsn, op::*};

    /// What the kernel knows about the skb besides its bytes.
    pub struct Skb<'a> {
        pub frame: &'a [u8],
        pub net_off: usize,
        pub protocol: u16,
        pub rxhash: u32,
    }

    fn load(skb: &Skb<'_>, off: i32, size: usize) -> Option<u32> {
        let base = if off >= 0 {
            off as usize
        } else if off >= SKF_AD_OFF {
            return match off - SKF_AD_OFF {
                SKF_AD_PROTOCOL => Some(u32::from(skb.protocol)),
                SKF_AD_RXHASH => Some(skb.rxhash),
                _ => None,
            };
        } else if off >= SKF_NET_OFF {
            skb.net_off.checked_add((off - SKF_NET_OFF) as usize)?
        } else if off >= SKF_LL_OFF {
            (off - SKF_LL_OFF) as usize
        } else {
            return None;
        };
        let b = skb.frame.get(base..base.checked_add(size)?)?;
        Some(b.iter().fold(0u32, |a, &x| (a << 8) | u32::from(x)))
    }

    /// Runs `prog`; `None` if the program is malformed at run time (bad opcode, fell off the end).
    pub fn run(prog: &[BpfInsn], skb: &Skb<'_>) -> Option<u32> {
        let (mut a, mut x) = (0u32, 0u32);
        let mut mem = [0u32; 16];
        let mut pc = 0usize;
        loop {
            let i = *prog.get(pc)?;
            pc += 1;
            let size = match i.code & 0x18 {
                W => 4,
                H => 2,
                B => 1,
                _ => return None,
            };
            match i.code & 0x07 {
                LD => match i.code & 0xe0 {
                    IMM => a = i.k,
                    ABS => match load(skb, i.k as i32, size) {
                        Some(v) => a = v,
                        None => return Some(0),
                    },
                    IND => match load(skb, x.wrapping_add(i.k) as i32, size) {
                        Some(v) => a = v,
                        None => return Some(0),
                    },
                    MEM => a = *mem.get(i.k as usize)?,
                    LEN => a = skb.frame.len() as u32,
                    _ => return None,
                },
                LDX => match i.code & 0xe0 {
                    IMM => x = i.k,
                    MEM => x = *mem.get(i.k as usize)?,
                    LEN => x = skb.frame.len() as u32,
                    MSH => match load(skb, i.k as i32, 1) {
                        Some(v) => x = (v & 0xf) * 4,
                        None => return Some(0),
                    },
                    _ => return None,
                },
                ST => *mem.get_mut(i.k as usize)? = a,
                STX => *mem.get_mut(i.k as usize)? = x,
                ALU => {
                    let src = if i.code & X != 0 { x } else { i.k };
                    a = match i.code & 0xf0 {
                        ADD => a.wrapping_add(src),
                        SUB => a.wrapping_sub(src),
                        MUL => a.wrapping_mul(src),
                        DIV => a.checked_div(src).unwrap_or(0),
                        MOD => a.checked_rem(src).unwrap_or(0),
                        OR => a | src,
                        AND => a & src,
                        XOR => a ^ src,
                        LSH => a.checked_shl(src).unwrap_or(0),
                        RSH => a.checked_shr(src).unwrap_or(0),
                        NEG => a.wrapping_neg(),
                        _ => return None,
                    };
                }
                JMP => {
                    let src = if i.code & X != 0 { x } else { i.k };
                    let cond = match i.code & 0xf0 {
                        JA => {
                            pc += i.k as usize;
                            continue;
                        }
                        JEQ => a == src,
                        JGT => a > src,
                        JGE => a >= src,
                        JSET => a & src != 0,
                        _ => return None,
                    };
                    pc += usize::from(if cond { i.jt } else { i.jf });
                }
                RET => {
                    return Some(match i.code & 0x18 {
                        A => a,
                        K => i.k,
                        _ => return None,
                    });
                }
                MISC => match i.code & 0xf8 {
                    TAX => x = a,
                    TXA => a = x,
                    _ => return None,
                },
                _ => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::interp::{Skb, run};
    use super::*;
    use proptest::prelude::*;

    fn nz(v: u32) -> NonZeroU32 {
        NonZeroU32::new(v).unwrap()
    }

    /// A hand-built Ethernet frame: optional 802.1Q tag, IPv4 with `ihl` words, L4 bytes.
    #[derive(Clone, Debug)]
    struct Spec {
        vlan: Option<u16>,
        ethertype: u16,
        ihl: u8,
        frag: u16,
        proto: u8,
        l4: [u8; 8],
    }

    fn build(s: &Spec) -> Vec<u8> {
        let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
        if let Some(tci) = s.vlan {
            f.extend_from_slice(&0x8100u16.to_be_bytes());
            f.extend_from_slice(&tci.to_be_bytes());
        }
        f.extend_from_slice(&s.ethertype.to_be_bytes());
        let hl = usize::from(s.ihl) * 4;
        let ip_start = f.len();
        let mut ip = vec![0u8; hl.max(20)];
        ip[0] = 0x40 | (s.ihl & 0x0f);
        ip[6..8].copy_from_slice(&s.frag.to_be_bytes());
        ip[8] = 64;
        ip[9] = s.proto;
        ip[12..16].copy_from_slice(&[10, 0, 0, 1]);
        ip[16..20].copy_from_slice(&[198, 51, 100, 7]);
        f.extend_from_slice(&ip);
        // L4 starts where the IHL says, even if that overlaps a malformed (IHL < 5) header.
        for (i, b) in s.l4.iter().enumerate() {
            let p = ip_start + hl + i;
            match f.get_mut(p) {
                Some(slot) => *slot = *b,
                None => f.push(*b),
            }
        }
        f.extend_from_slice(b"payload");
        f
    }

    fn tcp(sport: u16, dport: u16) -> Spec {
        let mut l4 = [0u8; 8];
        l4[0..2].copy_from_slice(&sport.to_be_bytes());
        l4[2..4].copy_from_slice(&dport.to_be_bytes());
        Spec {
            vlan: None,
            ethertype: 0x0800,
            ihl: 5,
            frag: 0x4000,
            proto: 6,
            l4,
        }
    }

    fn icmp(ty: u8, id: u16) -> Spec {
        let mut l4 = [0u8; 8];
        l4[0] = ty;
        l4[4..6].copy_from_slice(&id.to_be_bytes());
        Spec {
            proto: 1,
            l4,
            ..tcp(0, 0)
        }
    }

    fn kernel_choice(st: &Steering, frame: &[u8], rxhash: u32) -> u32 {
        let skb = Skb {
            frame,
            net_off: 14,
            protocol: 0x0800,
            rxhash,
        };
        let ret = run(st.program().insns(), &skb).expect("program runs");
        ret % st.workers.get()
    }

    #[test]
    fn hand_built_frames_go_where_the_spec_says() {
        let lan = Steering::new(Side::Lan, nz(1024), nz(4));
        let wan = Steering::new(Side::Wan, nz(1024), nz(4));
        let cases: Vec<(Spec, u32, u32)> = vec![
            // (frame, LAN worker, WAN worker)
            (tcp(5000, 80), (5000 / 1024) % 4, 0),
            (tcp(80, 3 * 1024 + 5), 0, 3),
            (
                Spec {
                    proto: 17,
                    ..tcp(2 * 1024, 7 * 1024)
                },
                2,
                3,
            ),
            (
                Spec {
                    vlan: Some(100),
                    ..tcp(1024, 2048)
                },
                1,
                2,
            ),
            (icmp(8, 3 * 1024), 3, 0), // echo request: steered on the LAN only
            (icmp(0, 2 * 1024), 0, 2), // echo reply: steered on the WAN only
            (icmp(3, 3 * 1024), 0, 0), // unreachable: other
            (
                Spec {
                    frag: 0x2000,
                    ..tcp(3000, 3000)
                },
                0,
                0,
            ), // MF: other
            (
                Spec {
                    frag: 0x0001,
                    ..tcp(3000, 3000)
                },
                0,
                0,
            ), // offset: other
            (
                Spec {
                    ethertype: 0x86dd,
                    ..tcp(3000, 3000)
                },
                0,
                0,
            ),
            (
                Spec {
                    ethertype: 0x0806,
                    ..tcp(3000, 3000)
                },
                0,
                0,
            ),
            (
                Spec {
                    vlan: Some(5),
                    ethertype: 0x86dd,
                    ..tcp(3000, 3000)
                },
                0,
                0,
            ),
            (
                Spec {
                    ihl: 6,
                    ..tcp(1024, 1024)
                },
                1,
                1,
            ), // IP options move L4
            (
                Spec {
                    proto: 47,
                    ..tcp(3000, 3000)
                },
                0,
                0,
            ),
        ];
        for (spec, want_lan, want_wan) in cases {
            let f = build(&spec);
            assert_eq!(lan.worker(&f, 0), want_lan, "LAN {spec:?}");
            assert_eq!(wan.worker(&f, 0), want_wan, "WAN {spec:?}");
            assert_eq!(kernel_choice(&lan, &f, 0), want_lan, "LAN cBPF {spec:?}");
            assert_eq!(kernel_choice(&wan, &f, 0), want_wan, "WAN cBPF {spec:?}");
        }
        // Truncated frames: the program's failed load returns 0.
        let f = build(&tcp(3 * 1024, 80));
        assert_eq!(kernel_choice(&lan, &f[..35], 0), 0);
        assert_eq!(lan.worker(&f[..35], 0), 0);
        assert_eq!(lan.key(&f), Some(3 * 1024));
        assert_eq!(lan.key(&build(&icmp(3, 1))), None);
    }

    #[test]
    fn rxhash_policy_for_other_traffic() {
        let st = Steering {
            other: OtherTraffic::RxHash,
            ..Steering::new(Side::Lan, nz(64), nz(3))
        };
        let arp = build(&Spec {
            ethertype: 0x0806,
            ..tcp(1, 1)
        });
        assert_eq!(st.worker(&arp, 7), 1);
        assert_eq!(kernel_choice(&st, &arp, 7), 1);
        assert_eq!(kernel_choice(&st, &build(&tcp(640, 0)), 7), 10 % 3);
    }

    #[test]
    fn program_is_kernel_shaped() {
        let p = Steering::new(Side::Wan, nz(256), nz(2)).program();
        assert!(p.insns().len() < 64);
        assert_eq!(p.insns().last().map(|i| i.code), Some(op::RET | op::K));
        assert!(BpfProgram::new(vec![]).is_err());
        let bad_jump = BpfInsn {
            code: op::JMP | op::JEQ | op::K,
            jt: 5,
            jf: 0,
            k: 0,
        };
        assert!(
            BpfProgram::new(vec![
                bad_jump,
                BpfInsn {
                    code: op::RET | op::K,
                    ..Default::default()
                }
            ])
            .is_err()
        );
        assert!(
            BpfProgram::new(vec![BpfInsn {
                code: op::LD | op::W | op::IMM,
                ..Default::default()
            }])
            .is_err()
        );
    }

    fn arb_spec() -> impl Strategy<Value = Spec> {
        (
            proptest::option::of(any::<u16>()),
            prop_oneof![
                Just(0x0800u16),
                Just(0x86dd),
                Just(0x0806),
                Just(0x8100),
                any::<u16>()
            ],
            0u8..16,
            prop_oneof![Just(0u16), Just(0x4000), any::<u16>()],
            prop_oneof![Just(6u8), Just(17), Just(1), any::<u8>()],
            proptest::array::uniform8(any::<u8>()),
        )
            .prop_map(|(vlan, ethertype, ihl, frag, proto, mut l4)| {
                if proto == 1 && l4[0] % 2 == 0 {
                    l4[0] = if l4[1] % 2 == 0 { 0 } else { 8 };
                }
                Spec {
                    vlan,
                    ethertype,
                    ihl,
                    frag,
                    proto,
                    l4,
                }
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn cbpf_program_equals_rust_reference(
            spec in arb_spec(),
            cut in any::<prop::sample::Index>(),
            truncate: bool,
            lan: bool,
            rxhash_policy: bool,
            block in prop_oneof![Just(1u32), Just(64), Just(1024), Just(4096), 1u32..70000],
            workers in 1u32..9,
            rxhash: u32,
        ) {
            let mut f = build(&spec);
            if truncate {
                let n = cut.index(f.len() + 1);
                f.truncate(n);
            }
            let st = Steering {
                side: if lan { Side::Lan } else { Side::Wan },
                block: nz(block),
                workers: nz(workers),
                other: if rxhash_policy { OtherTraffic::RxHash } else { OtherTraffic::Worker0 },
            };
            prop_assert_eq!(kernel_choice(&st, &f, rxhash), st.worker(&f, rxhash));
        }

        #[test]
        fn cbpf_program_equals_rust_reference_on_noise(
            bytes in proptest::collection::vec(any::<u8>(), 0..80),
            lan: bool,
            workers in 1u32..5,
        ) {
            let st = Steering::new(if lan { Side::Lan } else { Side::Wan }, nz(16), nz(workers));
            prop_assert_eq!(kernel_choice(&st, &bytes, 0), st.worker(&bytes, 0));
        }
    }
}
