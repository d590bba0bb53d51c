//! A small eBPF assembler: typed instructions, registers, labels for jumps (forward and
//! backward, resolved by [`Asm::finish`]), and the 16-byte `lddw` that loads a map by its file
//! descriptor (`BPF_PSEUDO_MAP_FD`). Encodings follow `linux/bpf.h` / `bpf_common.h`.

use super::EbpfError;

/// One eBPF instruction (`struct bpf_insn`): opcode, dst (low nibble) and src (high nibble)
/// registers, signed offset, signed immediate.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct EbpfInsn {
    /// Opcode: class | size | mode, or class | op | source.
    pub code: u8,
    /// `dst_reg` in bits 0..4, `src_reg` in bits 4..8.
    pub regs: u8,
    /// Offset (memory accesses, jumps).
    pub off: i16,
    /// Immediate.
    pub imm: i32,
}

impl EbpfInsn {
    /// Builds an instruction.
    pub const fn new(code: u8, dst: Reg, src: Reg, off: i16, imm: i32) -> EbpfInsn {
        EbpfInsn {
            code,
            regs: (dst as u8) | ((src as u8) << 4),
            off,
            imm,
        }
    }
    /// The destination register number.
    pub const fn dst(&self) -> u8 {
        self.regs & 0x0f
    }
    /// The source register number.
    pub const fn src(&self) -> u8 {
        self.regs >> 4
    }
}

/// eBPF registers. `R0` return value, `R1`..`R5` arguments (clobbered by calls), `R6`..`R9`
/// callee-saved, `R10` read-only frame pointer.
#[allow(missing_docs)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Reg {
    R0 = 0,
    R1,
    R2,
    R3,
    R4,
    R5,
    R6,
    R7,
    R8,
    R9,
    R10,
}

/// Opcode pieces from `linux/bpf.h`.
#[allow(missing_docs)]
pub mod op {
    pub const LD: u8 = 0x00;
    pub const LDX: u8 = 0x01;
    pub const ST: u8 = 0x02;
    pub const STX: u8 = 0x03;
    pub const ALU: u8 = 0x04;
    pub const JMP: u8 = 0x05;
    pub const ALU64: u8 = 0x07;
    pub const IMM: u8 = 0x00;
    pub const MEM: u8 = 0x60;
    pub const ATOMIC: u8 = 0xc0;
    pub const K: u8 = 0x00;
    pub const X: u8 = 0x08;
    pub const MOV: u8 = 0xb0;
    pub const END: u8 = 0xd0;
    pub const TO_BE: u8 = 0x08;
    pub const CALL: u8 = 0x80;
    pub const EXIT: u8 = 0x90;
    pub const JA: u8 = 0x00;
    /// `BPF_PSEUDO_MAP_FD`: the `lddw` immediate is a map file descriptor.
    pub const PSEUDO_MAP_FD: u8 = 1;
    /// `BPF_ADD` as the immediate of an atomic instruction.
    pub const ATOMIC_ADD: i32 = 0x00;
}

/// Access sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Size {
    /// 8 bits.
    B,
    /// 16 bits.
    H,
    /// 32 bits.
    W,
    /// 64 bits.
    DW,
}

impl Size {
    const fn bits(self) -> u8 {
        match self {
            Size::W => 0x00,
            Size::H => 0x08,
            Size::B => 0x10,
            Size::DW => 0x18,
        }
    }
}

/// Arithmetic operations (`BPF_ALU64`).
#[allow(missing_docs)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Alu {
    Add = 0x00,
    Sub = 0x10,
    Mul = 0x20,
    Or = 0x40,
    And = 0x50,
    Lsh = 0x60,
    Rsh = 0x70,
    Xor = 0xa0,
}

/// Conditional jumps (unsigned comparisons unless named otherwise).
#[allow(missing_docs)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Cond {
    Eq = 0x10,
    Gt = 0x20,
    Ge = 0x30,
    /// `dst & src != 0`.
    Set = 0x40,
    Ne = 0x50,
    Lt = 0xa0,
    Le = 0xb0,
}

/// A jump target, bound with [`Asm::bind`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Label(usize);

/// The assembler: append instructions, then [`Asm::finish`] resolves the labels.
#[derive(Debug, Default)]
pub struct Asm {
    insns: Vec<EbpfInsn>,
    labels: Vec<Option<usize>>,
    fixups: Vec<(usize, Label)>,
}

impl Asm {
    /// An empty program.
    pub fn new() -> Asm {
        Asm::default()
    }

    /// A fresh, unbound label.
    pub fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }

    /// Binds `l` to the next instruction.
    pub fn bind(&mut self, l: Label) {
        if let Some(slot) = self.labels.get_mut(l.0) {
            *slot = Some(self.insns.len());
        }
    }

    fn push(&mut self, i: EbpfInsn) -> &mut Asm {
        self.insns.push(i);
        self
    }

    /// `dst = imm` (64-bit, sign-extended).
    pub fn mov_imm(&mut self, dst: Reg, imm: i32) -> &mut Asm {
        self.push(EbpfInsn::new(
            op::ALU64 | op::MOV | op::K,
            dst,
            Reg::R0,
            0,
            imm,
        ))
    }
    /// `dst = imm` (32-bit, zero-extended).
    pub fn mov32_imm(&mut self, dst: Reg, imm: i32) -> &mut Asm {
        self.push(EbpfInsn::new(
            op::ALU | op::MOV | op::K,
            dst,
            Reg::R0,
            0,
            imm,
        ))
    }
    /// `dst = src`.
    pub fn mov(&mut self, dst: Reg, src: Reg) -> &mut Asm {
        self.push(EbpfInsn::new(op::ALU64 | op::MOV | op::X, dst, src, 0, 0))
    }
    /// `dst op= imm` (64-bit).
    pub fn alu_imm(&mut self, o: Alu, dst: Reg, imm: i32) -> &mut Asm {
        self.push(EbpfInsn::new(
            op::ALU64 | o as u8 | op::K,
            dst,
            Reg::R0,
            0,
            imm,
        ))
    }
    /// `dst op= src` (64-bit).
    pub fn alu(&mut self, o: Alu, dst: Reg, src: Reg) -> &mut Asm {
        self.push(EbpfInsn::new(op::ALU64 | o as u8 | op::X, dst, src, 0, 0))
    }
    /// `dst = htobe16(dst)` (and clears the upper bits).
    pub fn be16(&mut self, dst: Reg) -> &mut Asm {
        self.push(EbpfInsn::new(
            op::ALU | op::END | op::TO_BE,
            dst,
            Reg::R0,
            0,
            16,
        ))
    }
    /// `dst = *(size *)(src + off)`.
    pub fn ldx(&mut self, size: Size, dst: Reg, src: Reg, off: i16) -> &mut Asm {
        self.push(EbpfInsn::new(
            op::LDX | op::MEM | size.bits(),
            dst,
            src,
            off,
            0,
        ))
    }
    /// `*(size *)(dst + off) = src`.
    pub fn stx(&mut self, size: Size, dst: Reg, off: i16, src: Reg) -> &mut Asm {
        self.push(EbpfInsn::new(
            op::STX | op::MEM | size.bits(),
            dst,
            src,
            off,
            0,
        ))
    }
    /// `*(size *)(dst + off) = imm`.
    pub fn st_imm(&mut self, size: Size, dst: Reg, off: i16, imm: i32) -> &mut Asm {
        self.push(EbpfInsn::new(
            op::ST | op::MEM | size.bits(),
            dst,
            Reg::R0,
            off,
            imm,
        ))
    }
    /// `lock *(u64 *)(dst + off) += src`.
    pub fn atomic_add64(&mut self, dst: Reg, off: i16, src: Reg) -> &mut Asm {
        self.push(EbpfInsn::new(
            op::STX | op::ATOMIC | Size::DW.bits(),
            dst,
            src,
            off,
            op::ATOMIC_ADD,
        ))
    }
    /// `dst = map` (the 16-byte `lddw` with `BPF_PSEUDO_MAP_FD`).
    pub fn ld_map_fd(&mut self, dst: Reg, fd: i32) -> &mut Asm {
        let mut first = EbpfInsn::new(op::LD | op::IMM | Size::DW.bits(), dst, Reg::R0, 0, fd);
        first.regs = (dst as u8) | (op::PSEUDO_MAP_FD << 4);
        self.push(first).push(EbpfInsn::default())
    }
    /// Calls helper number `helper`.
    pub fn call(&mut self, helper: i32) -> &mut Asm {
        self.push(EbpfInsn::new(
            op::JMP | op::CALL,
            Reg::R0,
            Reg::R0,
            0,
            helper,
        ))
    }
    /// Returns `r0`.
    pub fn exit(&mut self) -> &mut Asm {
        self.push(EbpfInsn::new(op::JMP | op::EXIT, Reg::R0, Reg::R0, 0, 0))
    }
    /// `goto l`.
    pub fn ja(&mut self, l: Label) -> &mut Asm {
        self.fixups.push((self.insns.len(), l));
        self.push(EbpfInsn::new(op::JMP | op::JA, Reg::R0, Reg::R0, 0, 0))
    }
    /// `if dst <cond> imm goto l`.
    pub fn jmp_imm(&mut self, c: Cond, dst: Reg, imm: i32, l: Label) -> &mut Asm {
        self.fixups.push((self.insns.len(), l));
        self.push(EbpfInsn::new(
            op::JMP | c as u8 | op::K,
            dst,
            Reg::R0,
            0,
            imm,
        ))
    }
    /// `if dst <cond> src goto l`.
    pub fn jmp(&mut self, c: Cond, dst: Reg, src: Reg, l: Label) -> &mut Asm {
        self.fixups.push((self.insns.len(), l));
        self.push(EbpfInsn::new(op::JMP | c as u8 | op::X, dst, src, 0, 0))
    }

    /// Resolves every jump; fails on an unbound label or an offset beyond `i16`.
    pub fn finish(self) -> Result<Vec<EbpfInsn>, EbpfError> {
        let mut insns = self.insns;
        for (at, l) in self.fixups {
            let target = self
                .labels
                .get(l.0)
                .copied()
                .flatten()
                .ok_or_else(|| EbpfError::Assemble(format!("label {} is not bound", l.0)))?;
            let rel = target as i64 - at as i64 - 1;
            let off = i16::try_from(rel)
                .map_err(|_| EbpfError::Assemble(format!("jump at {at} too far ({rel})")))?;
            if let Some(i) = insns.get_mut(at) {
                i.off = off;
            }
        }
        if insns.is_empty() {
            return Err(EbpfError::Assemble("empty program".into()));
        }
        Ok(insns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(i: &EbpfInsn) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[0] = i.code;
        b[1] = i.regs;
        b[2..4].copy_from_slice(&i.off.to_le_bytes());
        b[4..8].copy_from_slice(&i.imm.to_le_bytes());
        b
    }

    #[test]
    fn layout_is_the_kernel_struct() {
        assert_eq!(core::mem::size_of::<EbpfInsn>(), 8);
    }

    #[test]
    fn encodings_match_the_kernel_opcodes() {
        let mut a = Asm::new();
        a.mov_imm(Reg::R0, 0)
            .mov(Reg::R6, Reg::R1)
            .ldx(Size::W, Reg::R2, Reg::R6, 76)
            .stx(Size::DW, Reg::R10, -8, Reg::R1)
            .st_imm(Size::W, Reg::R10, -4, 7)
            .atomic_add64(Reg::R9, 56, Reg::R1)
            .be16(Reg::R1)
            .call(1)
            .exit();
        let p = a.finish().expect("assembles");
        // Bytes as clang/llvm-objdump print them.
        assert_eq!(raw(&p[0]), [0xb7, 0x00, 0, 0, 0, 0, 0, 0]);
        assert_eq!(raw(&p[1]), [0xbf, 0x16, 0, 0, 0, 0, 0, 0]);
        assert_eq!(raw(&p[2]), [0x61, 0x62, 76, 0, 0, 0, 0, 0]);
        assert_eq!(raw(&p[3]), [0x7b, 0x1a, 0xf8, 0xff, 0, 0, 0, 0]);
        assert_eq!(raw(&p[4]), [0x62, 0x0a, 0xfc, 0xff, 7, 0, 0, 0]);
        assert_eq!(raw(&p[5]), [0xdb, 0x19, 56, 0, 0, 0, 0, 0]);
        assert_eq!(raw(&p[6]), [0xdc, 0x01, 0, 0, 16, 0, 0, 0]);
        assert_eq!(raw(&p[7]), [0x85, 0x00, 0, 0, 1, 0, 0, 0]);
        assert_eq!(raw(&p[8]), [0x95, 0x00, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn ld_map_fd_is_two_slots_with_the_pseudo_flag() {
        let mut a = Asm::new();
        a.ld_map_fd(Reg::R1, 5).exit();
        let p = a.finish().expect("assembles");
        assert_eq!(p.len(), 3);
        assert_eq!(raw(&p[0]), [0x18, 0x11, 0, 0, 5, 0, 0, 0]);
        assert_eq!(raw(&p[1]), [0; 8]);
    }

    #[test]
    fn labels_resolve_forward_and_backward() {
        let mut a = Asm::new();
        let top = a.label();
        let out = a.label();
        a.bind(top);
        a.jmp_imm(Cond::Eq, Reg::R1, 0, out) // 0 -> 3
            .alu_imm(Alu::Sub, Reg::R1, 1) // 1
            .ja(top); // 2 -> 0
        a.bind(out);
        a.exit(); // 3
        let p = a.finish().expect("assembles");
        assert_eq!(p[0].off, 2);
        assert_eq!(p[0].code, 0x15);
        assert_eq!(p[2].off, -3);
        assert_eq!(p[2].code, 0x05);
        assert_eq!(p[1].code, 0x17);
    }

    #[test]
    fn unbound_label_is_an_error() {
        let mut a = Asm::new();
        let l = a.label();
        a.ja(l);
        assert!(matches!(a.finish(), Err(EbpfError::Assemble(_))));
    }
}
