//! Kernel ABI: constants and `repr(C)` layouts from `linux/if_packet.h`, `linux/filter.h`,
//! `linux/virtio_net.h` and `linux/ethtool.h`, plus thin syscall wrappers that turn `-1` into
//! [`IoError`]. Defined here rather than taken from `libc` so the exact layouts the rings rely on
//! are visible in one place (some, like `PACKET_FANOUT_FLAG_IGNORE_OUTGOING`, are missing from
//! older headers).

use std::ffi::c_int;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use crate::error::IoError;

// --- socket options (SOL_PACKET) -----------------------------------------------------------
pub const PACKET_ADD_MEMBERSHIP: c_int = 1;
pub const PACKET_RX_RING: c_int = 5;
pub const PACKET_STATISTICS: c_int = 6;
pub const PACKET_COPY_THRESH: c_int = 7;
pub const PACKET_VERSION: c_int = 10;
pub const PACKET_RESERVE: c_int = 12;
pub const PACKET_TX_RING: c_int = 13;
pub const PACKET_LOSS: c_int = 14;
pub const PACKET_VNET_HDR: c_int = 15;
pub const PACKET_FANOUT: c_int = 18;
pub const PACKET_QDISC_BYPASS: c_int = 20;
pub const PACKET_FANOUT_DATA: c_int = 22;
pub const PACKET_IGNORE_OUTGOING: c_int = 23;

pub const PACKET_MR_PROMISC: u16 = 1;

pub const TPACKET_V2: c_int = 1;
pub const TPACKET_V3: c_int = 2;

// --- frame status bits (tp_status) ----------------------------------------------------------
pub const TP_STATUS_KERNEL: u32 = 0;
pub const TP_STATUS_USER: u32 = 1;
pub const TP_STATUS_COPY: u32 = 1 << 1;
pub const TP_STATUS_CSUMNOTREADY: u32 = 1 << 3;
pub const TP_STATUS_VLAN_VALID: u32 = 1 << 4;
pub const TP_STATUS_VLAN_TPID_VALID: u32 = 1 << 6;
pub const TP_STATUS_CSUM_VALID: u32 = 1 << 7;

// TX ring status values.
pub const TP_STATUS_AVAILABLE: u32 = 0;
pub const TP_STATUS_SEND_REQUEST: u32 = 1;
pub const TP_STATUS_WRONG_FORMAT: u32 = 4;

// --- fanout -----------------------------------------------------------------------------------
pub const PACKET_FANOUT_HASH: u32 = 0;
pub const PACKET_FANOUT_CBPF: u32 = 6;
pub const PACKET_FANOUT_FLAG_IGNORE_OUTGOING: u32 = 0x4000;
pub const PACKET_FANOUT_FLAG_DEFRAG: u32 = 0x8000;

// --- sll_pkttype ------------------------------------------------------------------------------
pub const PACKET_HOST: u8 = 0;
pub const PACKET_BROADCAST: u8 = 1;
pub const PACKET_MULTICAST: u8 = 2;
pub const PACKET_OTHERHOST: u8 = 3;
pub const PACKET_OUTGOING: u8 = 4;
pub const PACKET_LOOPBACK: u8 = 5;

pub const ETH_P_ALL: u16 = 0x0003;

/// `TPACKET_ALIGNMENT`.
pub const TPACKET_ALIGNMENT: usize = 16;

/// `TPACKET_ALIGN(x)`.
pub const fn tpacket_align(x: usize) -> usize {
    (x + TPACKET_ALIGNMENT - 1) & !(TPACKET_ALIGNMENT - 1)
}

/// `struct sockaddr_ll` is 20 bytes.
pub const SOCKADDR_LL_LEN: usize = 20;

/// `struct tpacket2_hdr`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Tpacket2Hdr {
    pub tp_status: u32,
    pub tp_len: u32,
    pub tp_snaplen: u32,
    pub tp_mac: u16,
    pub tp_net: u16,
    pub tp_sec: u32,
    pub tp_nsec: u32,
    pub tp_vlan_tci: u16,
    pub tp_vlan_tpid: u16,
    pub tp_padding: [u8; 4],
}

/// `struct tpacket3_hdr` (with `tpacket_hdr_variant1` inlined).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Tpacket3Hdr {
    pub tp_next_offset: u32,
    pub tp_sec: u32,
    pub tp_nsec: u32,
    pub tp_snaplen: u32,
    pub tp_len: u32,
    pub tp_status: u32,
    pub tp_mac: u16,
    pub tp_net: u16,
    pub tp_rxhash: u32,
    pub tp_vlan_tci: u32,
    pub tp_vlan_tpid: u16,
    pub tp_padding_v1: u16,
    pub tp_padding: [u8; 8],
}

/// `struct tpacket_block_desc` with `tpacket_hdr_v1` inlined.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct TpacketBlockDesc {
    pub version: u32,
    pub offset_to_priv: u32,
    pub block_status: u32,
    pub num_pkts: u32,
    pub offset_to_first_pkt: u32,
    pub blk_len: u32,
    pub seq_num: u64,
    pub ts_first_sec: u32,
    pub ts_first_nsec: u32,
    pub ts_last_sec: u32,
    pub ts_last_nsec: u32,
}

/// `TPACKET2_HDRLEN`: aligned header plus `sockaddr_ll`; the kernel's `tp_hdrlen` for V2.
pub const TPACKET2_HDRLEN: usize = tpacket_align(size_of::<Tpacket2Hdr>()) + SOCKADDR_LL_LEN;
/// `TPACKET3_HDRLEN`.
pub const TPACKET3_HDRLEN: usize = tpacket_align(size_of::<Tpacket3Hdr>()) + SOCKADDR_LL_LEN;

/// `struct tpacket_req` (V2) / the first four fields of `tpacket_req3`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TpacketReq3 {
    pub tp_block_size: u32,
    pub tp_block_nr: u32,
    pub tp_frame_size: u32,
    pub tp_frame_nr: u32,
    pub tp_retire_blk_tov: u32,
    pub tp_sizeof_priv: u32,
    pub tp_feature_req_word: u32,
}

/// `struct tpacket_stats_v3` (the V2 `tpacket_stats` is its first two fields).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct TpacketStatsV3 {
    pub tp_packets: u32,
    pub tp_drops: u32,
    pub tp_freeze_q_cnt: u32,
}

/// `struct packet_mreq`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct PacketMreq {
    pub mr_ifindex: c_int,
    pub mr_type: u16,
    pub mr_alen: u16,
    pub mr_address: [u8; 8],
}

/// `struct sock_fprog`.
#[repr(C)]
#[derive(Debug)]
pub struct SockFprog {
    pub len: u16,
    pub filter: *const crate::bpf::BpfInsn,
}

/// `struct ifreq` with the union as raw bytes (40 bytes on 64-bit Linux).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct IfReq {
    pub name: [u8; libc::IFNAMSIZ],
    pub data: [u8; 24],
}

impl IfReq {
    /// An `ifreq` with the interface name filled in; `None` if the name does not fit.
    pub fn new(name: &str) -> Option<IfReq> {
        let bytes = name.as_bytes();
        if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
            return None;
        }
        let mut r = IfReq {
            name: [0; libc::IFNAMSIZ],
            data: [0; 24],
        };
        r.name[..bytes.len()].copy_from_slice(bytes);
        Some(r)
    }
}

/// `struct ethtool_value`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct EthtoolValue {
    pub cmd: u32,
    pub data: u32,
}

pub const ETHTOOL_GRXCSUM: u32 = 0x14;
pub const ETHTOOL_GTXCSUM: u32 = 0x16;
pub const ETHTOOL_GSG: u32 = 0x18;
pub const ETHTOOL_GTSO: u32 = 0x1e;
pub const ETHTOOL_GGSO: u32 = 0x23;
pub const ETHTOOL_GGRO: u32 = 0x2b;

// Compile-time layout checks against the kernel ABI.
const _: () = {
    assert!(size_of::<Tpacket2Hdr>() == 32);
    assert!(size_of::<Tpacket3Hdr>() == 48);
    assert!(size_of::<TpacketBlockDesc>() == 48);
    assert!(TPACKET2_HDRLEN == 52);
    assert!(TPACKET3_HDRLEN == 68);
    assert!(size_of::<TpacketReq3>() == 28);
    assert!(size_of::<PacketMreq>() == 16);
    assert!(size_of::<crate::bpf::BpfInsn>() == 8);
    assert!(size_of::<IfReq>() == 40);
};

/// The last OS error as an [`IoError`] for `op` on `iface`.
pub fn last_err(iface: &str, op: &'static str) -> IoError {
    IoError::os(iface, op, std::io::Error::last_os_error())
}

/// `socket(domain, ty | SOCK_CLOEXEC, protocol)`; `op` names it in errors.
pub fn socket(
    iface: &str,
    domain: c_int,
    ty: c_int,
    protocol: c_int,
    op: &'static str,
) -> Result<OwnedFd, IoError> {
    // SAFETY: plain syscall with integer arguments; the returned descriptor is checked and then
    // owned exclusively by the `OwnedFd`.
    let fd = unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC, protocol) };
    if fd < 0 {
        return Err(last_err(iface, op));
    }
    // SAFETY: `fd` is a fresh, valid descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `setsockopt(fd, level, name, &val, sizeof val)` for any plain-old-data `T`.
pub fn setsockopt<T>(
    fd: &impl AsRawFd,
    level: c_int,
    name: c_int,
    val: &T,
    iface: &str,
    op: &'static str,
) -> Result<(), IoError> {
    let len = size_of::<T>() as libc::socklen_t;
    // SAFETY: `val` points to `len` readable bytes for the duration of the call; the kernel only
    // reads them. `fd` is a valid open descriptor borrowed from its owner.
    let r = unsafe { libc::setsockopt(fd.as_raw_fd(), level, name, (val as *const T).cast(), len) };
    if r < 0 {
        return Err(last_err(iface, op));
    }
    Ok(())
}

/// `getsockopt` into a plain-old-data `T` (zero-initialised first).
pub fn getsockopt<T: Default>(
    fd: RawFd,
    level: c_int,
    name: c_int,
    iface: &str,
    op: &'static str,
) -> Result<T, IoError> {
    let mut val = T::default();
    let mut len = size_of::<T>() as libc::socklen_t;
    // SAFETY: `val` is a valid, writable `T` of `len` bytes; the kernel writes at most `len` bytes
    // and all our `T`s are integer-only `repr(C)` structs for which any bit pattern is valid.
    let r = unsafe { libc::getsockopt(fd, level, name, (&mut val as *mut T).cast(), &mut len) };
    if r < 0 {
        return Err(last_err(iface, op));
    }
    Ok(val)
}

/// `if_nametoindex`, with a typed error when the interface does not exist.
pub fn ifindex(iface: &str) -> Result<u32, IoError> {
    let Ok(c) = std::ffi::CString::new(iface) else {
        return Err(IoError::config(iface, "interface name contains a NUL byte"));
    };
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        return Err(last_err(iface, "if_nametoindex"));
    }
    Ok(idx)
}

/// A `POLLIN` poll set of the first `N` of `fds`, in a fixed array (no allocation): the array
/// and how many entries are in use (the rest have `fd: -1`).
pub fn pollin_set<const N: usize>(
    fds: impl IntoIterator<Item = RawFd>,
) -> ([libc::pollfd; N], usize) {
    let mut set = [libc::pollfd {
        fd: -1,
        events: libc::POLLIN,
        revents: 0,
    }; N];
    let mut n = 0;
    for (fd, p) in fds.into_iter().zip(set.iter_mut()) {
        p.fd = fd;
        n += 1;
    }
    (set, n)
}

/// `poll()` on a set of descriptors for `POLLIN`; returns the number of ready descriptors.
/// `EINTR` is reported as zero ready descriptors.
pub fn poll_in(fds: &mut [libc::pollfd], timeout_ms: c_int, iface: &str) -> Result<usize, IoError> {
    // SAFETY: `fds` is a valid, writable array of `fds.len()` pollfd structures.
    let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
    if r < 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EINTR) {
            return Ok(0);
        }
        return Err(IoError::os(iface, "poll", e));
    }
    Ok(r as usize)
}
