//! Classic BPF: instructions, a validated program, a small assembler and (for tests) an
//! interpreter with the kernel's socket-filter semantics.
//!
//! The router uses classic BPF in two places: the fanout steering program that picks a worker per
//! frame (`PACKET_FANOUT_CBPF`, built by [`crate::steering`]) and the socket filters of its ports
//! (built in `port::socket`). Building a program is pure; attaching it is a syscall elsewhere in
//! this crate.

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

/// A jump target in an [`Asm`] program, bound with [`Asm::bind`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Label(usize);

/// A forward-only assembler. Conditional jumps take small numeric offsets (0 or 1 in practice:
/// "skip the next instruction"), and every jump to a label is an unconditional `ja` with a 32-bit
/// offset, so no program built with it can hit the 255-instruction limit of `jt`/`jf`.
pub(crate) struct Asm {
    code: Vec<(BpfInsn, Option<Label>)>,
    at: Vec<Option<usize>>,
}

impl Asm {
    /// An empty program.
    pub(crate) fn new() -> Asm {
        Asm {
            code: Vec::new(),
            at: Vec::new(),
        }
    }

    /// A new, unbound label.
    pub(crate) fn label(&mut self) -> Label {
        self.at.push(None);
        Label(self.at.len() - 1)
    }

    /// Binds `l` to the next instruction.
    pub(crate) fn bind(&mut self, l: Label) {
        if let Some(slot) = self.at.get_mut(l.0) {
            *slot = Some(self.code.len());
        }
    }

    /// A non-jump instruction.
    pub(crate) fn s(&mut self, code: u16, k: u32) {
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

    /// A conditional jump by `jt` / `jf` instructions.
    pub(crate) fn jc(&mut self, code: u16, k: u32, jt: u8, jf: u8) {
        self.code.push((BpfInsn { code, jt, jf, k }, None));
    }

    /// `ja l`.
    pub(crate) fn ja(&mut self, l: Label) {
        self.code.push((
            BpfInsn {
                code: op::JMP | op::JA,
                ..BpfInsn::default()
            },
            Some(l),
        ));
    }

    /// Jumps to `l` when `A == k`.
    pub(crate) fn if_eq(&mut self, k: u32, l: Label) {
        self.jc(op::JMP | op::JEQ | op::K, k, 0, 1);
        self.ja(l);
    }

    /// Jumps to `l` when `A != k`.
    pub(crate) fn if_ne(&mut self, k: u32, l: Label) {
        self.jc(op::JMP | op::JEQ | op::K, k, 1, 0);
        self.ja(l);
    }

    /// Jumps to `l` when `A & k != 0`.
    pub(crate) fn if_set(&mut self, k: u32, l: Label) {
        self.jc(op::JMP | op::JSET | op::K, k, 0, 1);
        self.ja(l);
    }

    /// Resolves the labels and validates the program.
    pub(crate) fn finish(self) -> Result<BpfProgram, String> {
        let mut out = Vec::with_capacity(self.code.len());
        for (pc, (mut i, target)) in self.code.into_iter().enumerate() {
            if let Some(l) = target {
                let t = self
                    .at
                    .get(l.0)
                    .copied()
                    .flatten()
                    .ok_or("jump to an unbound label")?;
                let rel = t.checked_sub(pc + 1).ok_or("backward jump")?;
                i.k = u32::try_from(rel).map_err(|_| "jump too far")?;
            }
            out.push(i);
        }
        BpfProgram::new(out)
    }
}

/// `SKF_LL_OFF + off` as the `k` of an absolute or indirect load: `off` bytes from the MAC header.
pub(crate) const fn ll(off: i32) -> u32 {
    (op::SKF_LL_OFF + off) as u32
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
    use super::*;

    fn ret0() -> BpfInsn {
        BpfInsn {
            code: op::RET | op::K,
            ..Default::default()
        }
    }

    #[test]
    fn programs_are_checked_like_the_kernel_does() {
        assert!(BpfProgram::new(vec![]).is_err());
        let bad_jump = BpfInsn {
            code: op::JMP | op::JEQ | op::K,
            jt: 5,
            jf: 0,
            k: 0,
        };
        assert!(BpfProgram::new(vec![bad_jump, ret0()]).is_err());
        let no_ret = BpfInsn {
            code: op::LD | op::W | op::IMM,
            ..Default::default()
        };
        assert!(BpfProgram::new(vec![no_ret]).is_err());
        assert!(BpfProgram::new(vec![ret0()]).is_ok());
    }

    #[test]
    fn the_assembler_resolves_far_labels_with_ja() {
        let mut a = Asm::new();
        let end = a.label();
        a.s(op::LD | op::W | op::IMM, 7);
        a.if_eq(7, end);
        for _ in 0..1000 {
            a.s(op::ALU | op::ADD | op::K, 1);
        }
        a.bind(end);
        a.s(op::RET | op::A, 0);
        let p = a.finish().expect("assembles");
        assert_eq!(p.insns().len(), 1004);
        // `jeq 7` skips nothing when true and lands on `ja end`, whose offset spans the adds.
        assert_eq!(p.insns()[1].jt, 0);
        assert_eq!(p.insns()[1].jf, 1);
        assert_eq!(p.insns()[2].k, 1000);
        let skb = interp::Skb {
            frame: &[],
            net_off: 0,
            protocol: 0,
            rxhash: 0,
        };
        assert_eq!(interp::run(p.insns(), &skb), Some(7));
        let mut a = Asm::new();
        let l = a.label();
        a.ja(l);
        assert!(a.finish().is_err(), "unbound label");
    }
}
