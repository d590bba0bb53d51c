//! The established-flow offload: a tc (tcx ingress) program that forwards a flow's frames in the
//! kernel, a socket filter that keeps those frames out of an `ETH_P_ALL` tap's ring (a tap gets
//! every frame before tc ingress; sockets bound to an EtherType get frames after it, so the ones
//! the tc program redirects never reach them and need no filter), and the map that both read and
//! user space writes (one entry per flow and direction).
//!
//! Match (both programs, the same predicate): `pkt_type` host, no VLAN (metadata or ethertype),
//! IPv4 with IHL 5, not a fragment, TTL > 1, TCP without SYN/FIN/RST or UDP, at least 54 bytes
//! (Ethernet + IPv4 + TCP headers; shorter UDP frames stay in user space), a map hit on
//! `{ifindex, saddr, daddr, sport, dport, proto}`, and a non-GSO frame not longer than the out
//! link's MTU. On a hit the tc program rewrites MACs, addresses, ports and TTL (direct packet
//! writes, all reads done first), applies the entry's three precomputed checksum diffs with
//! `bpf_l3_csum_replace` (addresses + TTL) and `bpf_l4_csum_replace` (addresses with
//! `BPF_F_PSEUDO_HDR`, then ports without it — the kernel applies only the pseudo-header diff to
//! a `CHECKSUM_PARTIAL` skb, which is exactly right; the L4 checksum is at offset 16 of TCP and
//! 6 of UDP, and for UDP both replaces carry `BPF_F_MARK_MANGLED_0`: a zero checksum ("none")
//! stays zero and a result of zero is written as `0xffff`), stamps last-seen and adds to the entry's
//! packet and byte counters (atomic), and `bpf_redirect`s to the out port's egress: GSO
//! super-frames stay whole and are never copied. Anything else: `TC_ACT_OK`: the kernel goes on to
//! deliver it to the EtherType-bound AF_PACKET sockets (user space; an `ETH_P_ALL` tap had its
//! copy before tc ingress) and to its own stack, which, silent, drops it.

use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd};

use super::asm::{Alu, Asm, Cond, Label, Reg, Size};
use super::sys::{HashMap, ProgType, Program};
use super::{EbpfError, EbpfInsn};

/// Key size in bytes.
pub const KEY_SIZE: usize = 20;
/// Value size in bytes.
pub const VALUE_SIZE: usize = 72;

// `struct __sk_buff` offsets.
const SKB_PKT_TYPE: i16 = 4;
const SKB_VLAN_PRESENT: i16 = 20;
const SKB_IFINDEX: i16 = 40;
const SKB_DATA: i16 = 76;
const SKB_DATA_END: i16 = 80;
const SKB_GSO_SIZE: i16 = 176;

// Helpers (`enum bpf_func_id`).
const MAP_LOOKUP_ELEM: i32 = 1;
const KTIME_GET_NS: i32 = 5;
const L3_CSUM_REPLACE: i32 = 10;
const L4_CSUM_REPLACE: i32 = 11;
const REDIRECT: i32 = 23;
const SKB_LOAD_BYTES: i32 = 26;
const SKB_PULL_DATA: i32 = 39;
const BPF_F_PSEUDO_HDR: i32 = 1 << 4;
const BPF_F_MARK_MANGLED_0: i32 = 1 << 5;

const IPPROTO_TCP: i32 = 6;
const IPPROTO_UDP: i32 = 17;
/// Frame offsets of the TCP and UDP checksum fields.
const TCP_CSUM_AT: i32 = 14 + 20 + 16;
const UDP_CSUM_AT: i32 = 14 + 20 + 6;

const TC_ACT_OK: i32 = 0;
const TC_ACT_SHOT: i32 = 2;

/// Bytes of Ethernet + IPv4 (no options) + TCP headers the programs read (for UDP too: a UDP
/// frame shorter than this is not offloaded, by either program).
const HDR: i32 = 54;

// Value layout.
const V_ADDRS: i16 = 0;
const V_PORTS: i16 = 8;
const V_OUT_IFINDEX: i16 = 12;
const V_MACS: i16 = 16;
const V_L3_DIFF: i16 = 28;
const V_L4_ADDR_DIFF: i16 = 32;
const V_L4_PORT_DIFF: i16 = 36;
const V_MAX_LEN: i16 = 40;
const V_LAST_SEEN: i16 = 48;
const V_PACKETS: i16 = 56;
const V_BYTES: i16 = 64;

// Stack: the key at fp-24 (20 bytes); the socket filter's header copy at fp-82 (54 bytes, placed
// so that the addresses are 4-byte aligned: the verifier refuses misaligned stack access).
const KEY_AT: i16 = -24;
const HDR_AT: i16 = -82;

/// A frame as it arrives: the map key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct OffloadKey {
    /// Interface the frame arrives on.
    pub ifindex: u32,
    /// IPv4 source.
    pub saddr: Ipv4Addr,
    /// IPv4 destination.
    pub daddr: Ipv4Addr,
    /// L4 source port.
    pub sport: u16,
    /// L4 destination port.
    pub dport: u16,
    /// IP protocol (6: TCP, 17: UDP).
    pub proto: u8,
}

impl OffloadKey {
    /// The map's byte layout.
    pub fn to_bytes(&self) -> [u8; KEY_SIZE] {
        let mut b = [0u8; KEY_SIZE];
        b[0..4].copy_from_slice(&self.ifindex.to_ne_bytes());
        b[4..8].copy_from_slice(&self.saddr.octets());
        b[8..12].copy_from_slice(&self.daddr.octets());
        b[12..14].copy_from_slice(&self.sport.to_be_bytes());
        b[14..16].copy_from_slice(&self.dport.to_be_bytes());
        b[16] = self.proto;
        b
    }

    /// Parses the map's byte layout.
    pub fn from_bytes(b: &[u8; KEY_SIZE]) -> OffloadKey {
        let [
            i0,
            i1,
            i2,
            i3,
            s0,
            s1,
            s2,
            s3,
            d0,
            d1,
            d2,
            d3,
            p0,
            p1,
            q0,
            q1,
            proto,
            ..,
        ] = *b;
        OffloadKey {
            ifindex: u32::from_ne_bytes([i0, i1, i2, i3]),
            saddr: Ipv4Addr::new(s0, s1, s2, s3),
            daddr: Ipv4Addr::new(d0, d1, d2, d3),
            sport: u16::from_be_bytes([p0, p1]),
            dport: u16::from_be_bytes([q0, q1]),
            proto,
        }
    }
}

/// What to do with a matching frame. Checksum diffs are 32-bit one's-complement partial sums
/// over 16-bit words in **network byte order** (as RFC 1624 writes them); the encoding converts
/// them to the kernel's native-load domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct OffloadAction {
    /// New IPv4 source.
    pub saddr: Ipv4Addr,
    /// New IPv4 destination.
    pub daddr: Ipv4Addr,
    /// New source port.
    pub sport: u16,
    /// New destination port.
    pub dport: u16,
    /// Egress interface.
    pub out_ifindex: u32,
    /// Destination MAC (the next hop).
    pub dst_mac: [u8; 6],
    /// Source MAC (the out port's).
    pub src_mac: [u8; 6],
    /// IPv4 header checksum diff (addresses and the TTL decrement).
    pub l3_diff: u32,
    /// L4 checksum diff of the addresses (the pseudo-header).
    pub l4_addr_diff: u32,
    /// L4 checksum diff of the ports.
    pub l4_port_diff: u32,
    /// Longest IPv4 total length of a non-GSO frame the out link takes (its MTU).
    pub max_len: u32,
}

/// Folds a 32-bit one's-complement partial sum to 16 bits.
pub fn fold16(mut s: u32) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// A network-order partial sum as the kernel's helpers see it (16-bit words loaded natively).
fn native_diff(d: u32) -> u32 {
    u32::from(u16::from_ne_bytes(fold16(d).to_be_bytes()))
}

impl OffloadAction {
    /// The map's byte layout (counters zero).
    pub fn to_bytes(&self) -> [u8; VALUE_SIZE] {
        let mut b = [0u8; VALUE_SIZE];
        b[0..4].copy_from_slice(&self.saddr.octets());
        b[4..8].copy_from_slice(&self.daddr.octets());
        b[8..10].copy_from_slice(&self.sport.to_be_bytes());
        b[10..12].copy_from_slice(&self.dport.to_be_bytes());
        b[12..16].copy_from_slice(&self.out_ifindex.to_ne_bytes());
        b[16..22].copy_from_slice(&self.dst_mac);
        b[22..28].copy_from_slice(&self.src_mac);
        b[28..32].copy_from_slice(&native_diff(self.l3_diff).to_ne_bytes());
        b[32..36].copy_from_slice(&native_diff(self.l4_addr_diff).to_ne_bytes());
        b[36..40].copy_from_slice(&native_diff(self.l4_port_diff).to_ne_bytes());
        b[40..44].copy_from_slice(&self.max_len.to_ne_bytes());
        b
    }
}

/// The counters the tc program keeps in an entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OffloadStats {
    /// `bpf_ktime_get_ns()` of the last frame (0: none yet).
    pub last_seen_ns: u64,
    /// Frames forwarded (a GSO super-frame counts once).
    pub packets: u64,
    /// IPv4 bytes forwarded (total length as in the header).
    pub bytes: u64,
}

impl OffloadStats {
    fn from_value(b: &[u8; VALUE_SIZE]) -> OffloadStats {
        let u = |at: usize| {
            let mut w = [0u8; 8];
            if let Some(s) = b.get(at..at + 8) {
                w.copy_from_slice(s);
            }
            u64::from_ne_bytes(w)
        };
        OffloadStats {
            last_seen_ns: u(V_LAST_SEEN as usize),
            packets: u(V_PACKETS as usize),
            bytes: u(V_BYTES as usize),
        }
    }
}

/// The flow map: one entry per offloaded flow and direction.
#[derive(Debug)]
pub struct OffloadMap {
    map: HashMap,
}

impl OffloadMap {
    /// Creates the map with room for `max_entries` entries (two per flow).
    pub fn create(max_entries: u32) -> Result<OffloadMap, EbpfError> {
        Ok(OffloadMap {
            map: HashMap::create(
                "altroute_flows",
                KEY_SIZE as u32,
                VALUE_SIZE as u32,
                max_entries.max(2),
            )?,
        })
    }

    /// Another handle on the same map (for another worker thread).
    pub fn try_clone(&self) -> Result<OffloadMap, EbpfError> {
        Ok(OffloadMap {
            map: self.map.try_clone()?,
        })
    }

    /// Installs (or replaces, counters reset) one direction.
    pub fn insert(&self, key: &OffloadKey, action: &OffloadAction) -> Result<(), EbpfError> {
        self.map
            .update(&key.to_bytes(), &action.to_bytes(), super::sys::BPF_ANY)
    }

    /// Removes one direction; `false` if it was not there.
    pub fn remove(&self, key: &OffloadKey) -> Result<bool, EbpfError> {
        self.map.delete(&key.to_bytes())
    }

    /// The counters of one direction; `None` if absent.
    pub fn stats(&self, key: &OffloadKey) -> Result<Option<OffloadStats>, EbpfError> {
        let mut v = [0u8; VALUE_SIZE];
        Ok(self
            .map
            .lookup(&key.to_bytes(), &mut v)?
            .then(|| OffloadStats::from_value(&v)))
    }

    /// Every key in the map.
    pub fn keys(&self) -> Result<Vec<OffloadKey>, EbpfError> {
        Ok(self
            .map
            .keys()?
            .iter()
            .filter_map(|k| <&[u8; KEY_SIZE]>::try_from(k.as_slice()).ok())
            .map(OffloadKey::from_bytes)
            .collect())
    }

    /// Removes every entry; returns how many were removed.
    pub fn clear(&self) -> Result<usize, EbpfError> {
        let mut n = 0;
        for k in self.map.keys()? {
            if self.map.delete(&k)? {
                n += 1;
            }
        }
        Ok(n)
    }
}

fn ne16(b: [u8; 2]) -> i32 {
    i32::from(u16::from_ne_bytes(b))
}

/// The shared predicate: the 54 header bytes are readable at `base + boff`, `ctx` is the skb.
/// Builds the key on the stack and looks it up; on a hit falls through with the value in `R9`,
/// otherwise jumps to `miss`. Clobbers `R0`..`R5`; `R6` (ctx) and `base` (if callee-saved) stay.
fn emit_match(a: &mut Asm, ctx: Reg, base: Reg, boff: i16, map_fd: i32, miss: Label) {
    let h = |o: i16| boff + o;
    let l4_ok = a.label();
    a.ldx(Size::W, Reg::R1, ctx, SKB_PKT_TYPE)
        .jmp_imm(Cond::Ne, Reg::R1, 0, miss)
        .ldx(Size::W, Reg::R1, ctx, SKB_VLAN_PRESENT)
        .jmp_imm(Cond::Ne, Reg::R1, 0, miss)
        .ldx(Size::H, Reg::R1, base, h(12))
        .jmp_imm(Cond::Ne, Reg::R1, ne16([0x08, 0x00]), miss)
        .ldx(Size::B, Reg::R1, base, h(14))
        .jmp_imm(Cond::Ne, Reg::R1, 0x45, miss)
        .ldx(Size::H, Reg::R1, base, h(20))
        .jmp_imm(Cond::Set, Reg::R1, ne16([0x3f, 0xff]), miss)
        .ldx(Size::B, Reg::R1, base, h(22))
        .jmp_imm(Cond::Le, Reg::R1, 1, miss)
        // R2 := protocol: UDP, or TCP without SYN/FIN/RST.
        .ldx(Size::B, Reg::R2, base, h(23))
        .jmp_imm(Cond::Eq, Reg::R2, IPPROTO_UDP, l4_ok)
        .jmp_imm(Cond::Ne, Reg::R2, IPPROTO_TCP, miss)
        .ldx(Size::B, Reg::R1, base, h(47))
        .jmp_imm(Cond::Set, Reg::R1, 0x07, miss);
    a.bind(l4_ok);
    // The key.
    a.ldx(Size::W, Reg::R1, ctx, SKB_IFINDEX)
        .stx(Size::W, Reg::R10, KEY_AT, Reg::R1)
        .ldx(Size::W, Reg::R1, base, h(26))
        .stx(Size::W, Reg::R10, KEY_AT + 4, Reg::R1)
        .ldx(Size::W, Reg::R1, base, h(30))
        .stx(Size::W, Reg::R10, KEY_AT + 8, Reg::R1)
        .ldx(Size::W, Reg::R1, base, h(34))
        .stx(Size::W, Reg::R10, KEY_AT + 12, Reg::R1)
        .st_imm(Size::W, Reg::R10, KEY_AT + 16, 0)
        .stx(Size::B, Reg::R10, KEY_AT + 16, Reg::R2)
        .ld_map_fd(Reg::R1, map_fd)
        .mov(Reg::R2, Reg::R10)
        .alu_imm(Alu::Add, Reg::R2, i32::from(KEY_AT))
        .call(MAP_LOOKUP_ELEM)
        .jmp_imm(Cond::Eq, Reg::R0, 0, miss)
        .mov(Reg::R9, Reg::R0)
        // A frame the kernel will not segment must fit the out link.
        .ldx(Size::W, Reg::R1, ctx, SKB_GSO_SIZE);
    let fits = a.label();
    a.jmp_imm(Cond::Ne, Reg::R1, 0, fits)
        .ldx(Size::H, Reg::R1, base, h(16))
        .be16(Reg::R1)
        .ldx(Size::W, Reg::R2, Reg::R9, V_MAX_LEN)
        .jmp(Cond::Gt, Reg::R1, Reg::R2, miss);
    a.bind(fits);
}

/// The tc (tcx ingress) program's instructions for the map with descriptor `map_fd`.
pub fn tc_program(map_fd: i32) -> Result<Vec<EbpfInsn>, EbpfError> {
    let mut a = Asm::new();
    let pass = a.label();
    let shot = a.label();
    let linear = a.label();
    a.mov(Reg::R6, Reg::R1)
        .ldx(Size::W, Reg::R7, Reg::R6, SKB_DATA)
        .ldx(Size::W, Reg::R8, Reg::R6, SKB_DATA_END)
        .mov(Reg::R0, Reg::R7)
        .alu_imm(Alu::Add, Reg::R0, HDR)
        .jmp(Cond::Le, Reg::R0, Reg::R8, linear)
        // Headers not all in the linear part: pull them in (the socket filter reads them with
        // bpf_skb_load_bytes, so both programs must see the same frame), then check again.
        .mov(Reg::R1, Reg::R6)
        .mov_imm(Reg::R2, HDR)
        .call(SKB_PULL_DATA)
        .ldx(Size::W, Reg::R7, Reg::R6, SKB_DATA)
        .ldx(Size::W, Reg::R8, Reg::R6, SKB_DATA_END)
        .mov(Reg::R0, Reg::R7)
        .alu_imm(Alu::Add, Reg::R0, HDR)
        .jmp(Cond::Gt, Reg::R0, Reg::R8, pass);
    a.bind(linear);
    emit_match(&mut a, Reg::R6, Reg::R7, 0, map_fd, pass);
    // R8 := IPv4 total length, for the byte counter.
    a.ldx(Size::H, Reg::R8, Reg::R7, 16)
        .be16(Reg::R8)
        // Rewrite: MACs, addresses, ports, TTL (direct writes, every read already done).
        .ldx(Size::W, Reg::R1, Reg::R9, V_MACS)
        .stx(Size::W, Reg::R7, 0, Reg::R1)
        .ldx(Size::W, Reg::R1, Reg::R9, V_MACS + 4)
        .stx(Size::W, Reg::R7, 4, Reg::R1)
        .ldx(Size::W, Reg::R1, Reg::R9, V_MACS + 8)
        .stx(Size::W, Reg::R7, 8, Reg::R1)
        .ldx(Size::W, Reg::R1, Reg::R9, V_ADDRS)
        .stx(Size::W, Reg::R7, 26, Reg::R1)
        .ldx(Size::W, Reg::R1, Reg::R9, V_ADDRS + 4)
        .stx(Size::W, Reg::R7, 30, Reg::R1)
        .ldx(Size::W, Reg::R1, Reg::R9, V_PORTS)
        .stx(Size::W, Reg::R7, 34, Reg::R1)
        .ldx(Size::B, Reg::R1, Reg::R7, 22)
        .alu_imm(Alu::Sub, Reg::R1, 1)
        .stx(Size::B, Reg::R7, 22, Reg::R1)
        // Accounting.
        .call(KTIME_GET_NS)
        .stx(Size::DW, Reg::R9, V_LAST_SEEN, Reg::R0)
        .mov_imm(Reg::R1, 1)
        .atomic_add64(Reg::R9, V_PACKETS, Reg::R1)
        .atomic_add64(Reg::R9, V_BYTES, Reg::R8)
        // R8 := the protocol (the packet pointers are still valid here).
        .ldx(Size::B, Reg::R8, Reg::R7, 23)
        // Checksums (by offset: these helpers invalidate packet pointers).
        .mov(Reg::R1, Reg::R6)
        .mov_imm(Reg::R2, 14 + 10)
        .mov_imm(Reg::R3, 0)
        .ldx(Size::W, Reg::R4, Reg::R9, V_L3_DIFF)
        .mov_imm(Reg::R5, 0)
        .call(L3_CSUM_REPLACE)
        .jmp_imm(Cond::Ne, Reg::R0, 0, shot);
    for (diff, flags) in [(V_L4_ADDR_DIFF, BPF_F_PSEUDO_HDR), (V_L4_PORT_DIFF, 0)] {
        // TCP: offset 16, plain; UDP: offset 6, a zero checksum ("none") left alone.
        let args = a.label();
        a.mov(Reg::R1, Reg::R6)
            .mov_imm(Reg::R2, TCP_CSUM_AT)
            .mov_imm(Reg::R5, flags)
            .jmp_imm(Cond::Ne, Reg::R8, IPPROTO_UDP, args)
            .mov_imm(Reg::R2, UDP_CSUM_AT)
            .mov_imm(Reg::R5, flags | BPF_F_MARK_MANGLED_0);
        a.bind(args);
        a.mov_imm(Reg::R3, 0)
            .ldx(Size::W, Reg::R4, Reg::R9, diff)
            .call(L4_CSUM_REPLACE)
            .jmp_imm(Cond::Ne, Reg::R0, 0, shot);
    }
    a.ldx(Size::W, Reg::R1, Reg::R9, V_OUT_IFINDEX)
        .mov_imm(Reg::R2, 0)
        .call(REDIRECT)
        .exit();
    a.bind(shot);
    a.mov_imm(Reg::R0, TC_ACT_SHOT).exit();
    a.bind(pass);
    a.mov_imm(Reg::R0, TC_ACT_OK).exit();
    a.finish()
}

/// The socket filter's instructions: 0 (not copied to the socket) for exactly the frames the tc
/// program forwards, the whole frame otherwise. On a `SOCK_RAW` packet socket the skb data
/// starts at the MAC header when the filter runs.
pub fn socket_filter(map_fd: i32) -> Result<Vec<EbpfInsn>, EbpfError> {
    let mut a = Asm::new();
    let keep = a.label();
    a.mov(Reg::R6, Reg::R1)
        .mov(Reg::R1, Reg::R6)
        .mov_imm(Reg::R2, 0)
        .mov(Reg::R3, Reg::R10)
        .alu_imm(Alu::Add, Reg::R3, i32::from(HDR_AT))
        .mov_imm(Reg::R4, HDR)
        .call(SKB_LOAD_BYTES)
        .jmp_imm(Cond::Ne, Reg::R0, 0, keep);
    emit_match(&mut a, Reg::R6, Reg::R10, HDR_AT, map_fd, keep);
    a.mov_imm(Reg::R0, 0).exit();
    a.bind(keep);
    a.mov32_imm(Reg::R0, -1).exit();
    a.finish()
}

/// The loaded offload: the map and both programs.
#[derive(Debug)]
pub struct Offload {
    /// The flow map.
    pub map: OffloadMap,
    /// The tc program (attach with [`Program::attach_tcx_ingress`] on every router port).
    pub tc: Program,
    /// The socket filter (attach with [`Program::attach_socket`] on every `ETH_P_ALL` RX socket
    /// of a port the tc program is attached to; EtherType-bound sockets need none).
    pub filter: Program,
}

impl Offload {
    /// Creates the map (`max_entries`) and loads both programs; the error carries the verifier
    /// log when a program is refused.
    pub fn load(max_entries: u32) -> Result<Offload, EbpfError> {
        let map = OffloadMap::create(max_entries)?;
        let fd = map.map.as_fd().as_raw_fd();
        let tc = Program::load(ProgType::SchedCls, "altroute_tc", &tc_program(fd)?)?;
        let filter = Program::load(ProgType::SocketFilter, "altroute_sock", &socket_filter(fd)?)?;
        Ok(Offload { map, tc, filter })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_round_trips() {
        let k = OffloadKey {
            ifindex: 7,
            saddr: Ipv4Addr::new(10, 0, 0, 2),
            daddr: Ipv4Addr::new(203, 0, 113, 10),
            sport: 40000,
            dport: 5201,
            proto: 6,
        };
        let b = k.to_bytes();
        assert_eq!(&b[4..8], &[10, 0, 0, 2]);
        assert_eq!(&b[12..14], &40000u16.to_be_bytes());
        assert_eq!(&b[16..20], &[6, 0, 0, 0]);
        assert_eq!(OffloadKey::from_bytes(&b), k);
    }

    #[test]
    fn diffs_are_folded_into_the_native_domain() {
        assert_eq!(fold16(0x1_fffe), 0xffff);
        assert_eq!(fold16(0x0001_0001), 2);
        // A network-order diff of 0x1234 is the word [0x12, 0x34] loaded natively.
        assert_eq!(
            native_diff(0x1234),
            u32::from(u16::from_ne_bytes([0x12, 0x34]))
        );
    }

    #[test]
    fn programs_assemble() {
        let tc = tc_program(3).expect("tc");
        let sf = socket_filter(3).expect("filter");
        assert!(tc.len() > 40 && tc.len() < 200, "{}", tc.len());
        assert!(sf.len() > 30 && sf.len() < 200, "{}", sf.len());
        // Both end in exit and reference the map by fd.
        for p in [&tc, &sf] {
            assert!(
                p.iter()
                    .any(|i| i.code == 0x18 && i.src() == 1 && i.imm == 3)
            );
            assert_eq!(p.last().map(|i| i.code), Some(0x95));
        }
    }
}
