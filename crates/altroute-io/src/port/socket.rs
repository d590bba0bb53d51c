//! Opening one AF_PACKET socket of a [`Port`](crate::Port), one named step per function, in
//! the order the kernel requires: the socket and its first filter; the frame format (vnet
//! header, ring version, reserve); the ring geometry (with the spill setup of
//! [`RxMode::V2Spill`]); the rings and their mapping; the socket options; bind; promiscuous
//! membership; the fanout join with its cBPF program and final filter. Then the walk state of
//! the mapped rings.

use std::ffi::c_int;
use std::os::fd::{AsRawFd, OwnedFd};

use super::config::{
    DEFAULT_RING_BYTES, Fanout, FanoutMode, PortConfig, RxMode, TxMode, rx_reserve,
};
use crate::bpf::{BpfInsn, BpfProgram, op};
use crate::error::IoError;
use crate::geometry::{RingGeometry, RingVersion};
use crate::ring::{Mapping, RingState, SlotMap, Spill, TxKind, TxRing, V2Ring, V3Ring};
use crate::sys;
use crate::vnet::VNET_HDR_LEN;

/// Longest a blocking transmit waits for room before it drops and counts (`SO_SNDTIMEO`).
const TX_BLOCK_MAX_US: libc::suseconds_t = 20_000;

/// One socket of a port: what [`open_socket`] sets up.
pub(super) struct SockSpec<'a> {
    pub ifindex: u32,
    /// Largest frame a slot must hold whole.
    pub max_frame: usize,
    /// Bound protocol in host order (0: receive nothing).
    pub protocol: u16,
    pub rx: &'a RxMode,
    /// Whether this socket transmits (the TX ring, send buffer, qdisc bypass, blocking).
    pub transmit: bool,
    /// Fanout group to join (with `cfg.fanout`'s mode).
    pub group: Option<u16>,
    /// Attach [`drop_otherhost_filter`] (a socket bound to one EtherType).
    pub drop_otherhost: bool,
}

/// An open, bound socket with its rings mapped.
pub(super) struct Sock {
    pub fd: OwnedFd,
    pub map: Option<Mapping>,
    pub geometry: Option<RingGeometry>,
    pub tx_geometry: Option<RingGeometry>,
    /// The RX ring walk (`None`: not receiving).
    pub ring: Option<RingState>,
    pub tx_kind: TxKind,
}

/// Opens and configures one socket of a port: vnet header, ring version, reserve, rings and
/// mapping (in the order the kernel requires), ignore-outgoing, bind, promiscuous membership,
/// fanout.
pub(super) fn open_socket(cfg: &PortConfig, spec: &SockSpec<'_>) -> Result<Sock, IoError> {
    let name = cfg.iface.as_str();
    let fd = sys::socket(
        name,
        libc::AF_PACKET,
        libc::SOCK_RAW,
        0,
        "socket(AF_PACKET, SOCK_RAW)",
    )?;
    let receiving = *spec.rx != RxMode::None;
    let tx_mode = if spec.transmit {
        &cfg.tx
    } else {
        &TxMode::Sendmmsg
    };
    attach_first_filter(&fd, spec, name)?;
    let version = set_frame_format(&fd, cfg, spec, receiving)?;
    if matches!(tx_mode, TxMode::Ring { .. }) {
        // Drop malformed TX ring frames instead of stopping the ring; must precede the rings.
        enable(&fd, sys::PACKET_LOSS, name, "setsockopt(PACKET_LOSS)")?;
    }
    let (geometry, spill) = rx_geometry(&fd, cfg, spec)?;
    let tx_geometry = tx_geometry(cfg, spec, tx_mode)?;
    set_rings(&fd, spec, version, geometry, tx_geometry, name)?;
    let rx_bytes = geometry.map_or(0, |g| g.ring_bytes());
    let tx_bytes = tx_geometry.map_or(0, |g| g.ring_bytes());
    let map = if rx_bytes + tx_bytes > 0 {
        Some(Mapping::new(fd.as_raw_fd(), rx_bytes + tx_bytes, name)?)
    } else {
        None
    };
    set_options(&fd, cfg, spec, receiving)?;
    bind(&fd, spec, name)?;
    if receiving && cfg.promiscuous {
        join_promiscuous(&fd, spec.ifindex, name)?;
    }
    if let (Some(f), Some(group)) = (&cfg.fanout, spec.group) {
        join_fanout(&fd, cfg, f, group, spec.drop_otherhost)?;
    }
    let base = map.as_ref().map_or(std::ptr::null_mut(), |m| m.base());
    Ok(Sock {
        fd,
        map,
        geometry,
        tx_geometry,
        ring: geometry.map(|g| ring_state(base, &g, spill)),
        tx_kind: tx_kind(base, rx_bytes, tx_geometry),
    })
}

/// Sets the `SOL_PACKET` option `opt` to 1; `op` names it in errors.
fn enable(fd: &OwnedFd, opt: c_int, name: &str, op: &'static str) -> Result<(), IoError> {
    sys::setsockopt(fd, libc::SOL_PACKET, opt, &1 as &c_int, name, op)
}

/// Sets the send (`send`) or receive buffer to `bytes` with the `*BUFFORCE` option, falling back
/// to the plain one (capped by the sysctl maximum) when that is refused.
fn set_buffer(fd: &OwnedFd, send: bool, bytes: usize, name: &str) -> Result<(), IoError> {
    let sz = c_int::try_from(bytes).unwrap_or(c_int::MAX);
    let (force, force_op, plain, plain_op) = if send {
        (
            libc::SO_SNDBUFFORCE,
            "setsockopt(SO_SNDBUFFORCE)",
            libc::SO_SNDBUF,
            "setsockopt(SO_SNDBUF)",
        )
    } else {
        (
            libc::SO_RCVBUFFORCE,
            "setsockopt(SO_RCVBUFFORCE)",
            libc::SO_RCVBUF,
            "setsockopt(SO_RCVBUF)",
        )
    };
    if sys::setsockopt(fd, libc::SOL_SOCKET, force, &sz, name, force_op).is_err() {
        sys::setsockopt(fd, libc::SOL_SOCKET, plain, &sz, name, plain_op)?;
    }
    Ok(())
}

/// The filter a socket starts with, before it can receive: a fanout member drops everything
/// until it has joined its group (then [`join_fanout`] sets the final filter); a socket bound to
/// one EtherType drops other hosts' frames from the start.
fn attach_first_filter(fd: &OwnedFd, spec: &SockSpec<'_>, name: &str) -> Result<(), IoError> {
    if spec.group.is_some() {
        // Nothing until the socket has joined its group (then the final filter, if any).
        attach_filter(fd, &drop_all_filter(), name)?;
    } else if spec.drop_otherhost {
        // Before bind: no other host's frame ever reaches the ring.
        attach_filter(fd, &drop_otherhost_filter(), name)?;
    }
    Ok(())
}

/// The layout of a frame in the rings: `PACKET_VNET_HDR` (vnet mode), `PACKET_VERSION` (V3 for
/// [`RxMode::V3`], else V2) and, on a receiving socket, `PACKET_RESERVE` for the headroom.
/// Returns the ring version.
fn set_frame_format(
    fd: &OwnedFd,
    cfg: &PortConfig,
    spec: &SockSpec<'_>,
    receiving: bool,
) -> Result<RingVersion, IoError> {
    let name = cfg.iface.as_str();
    if cfg.vnet_hdr {
        enable(
            fd,
            sys::PACKET_VNET_HDR,
            name,
            "setsockopt(PACKET_VNET_HDR)",
        )?;
    }
    let version = match spec.rx {
        RxMode::V3 { .. } => RingVersion::V3,
        _ => RingVersion::V2,
    };
    let v: c_int = match version {
        RingVersion::V2 => sys::TPACKET_V2,
        RingVersion::V3 => sys::TPACKET_V3,
    };
    sys::setsockopt(
        fd,
        libc::SOL_PACKET,
        sys::PACKET_VERSION,
        &v,
        name,
        "setsockopt(PACKET_VERSION)",
    )?;
    let reserve_c = c_int::try_from(rx_reserve(cfg))
        .map_err(|_| IoError::config(name, "headroom too large"))?;
    if receiving {
        sys::setsockopt(
            fd,
            libc::SOL_PACKET,
            sys::PACKET_RESERVE,
            &reserve_c,
            name,
            "setsockopt(PACKET_RESERVE)",
        )?;
    }
    Ok(version)
}

/// The RX ring's geometry for `spec.rx` (`None`: not receiving), and for
/// [`RxMode::V2Spill`] with slots smaller than the largest frame the spill buffers, once the
/// socket queues large frames ([`enable_spill`]).
fn rx_geometry(
    fd: &OwnedFd,
    cfg: &PortConfig,
    spec: &SockSpec<'_>,
) -> Result<(Option<RingGeometry>, Option<Spill>), IoError> {
    let name = cfg.iface.as_str();
    let reserve = rx_reserve(cfg);
    let geometry = match spec.rx {
        RxMode::V2Spill {
            frames,
            slot_frame,
            spill_frames,
            rcvbuf,
        } => {
            let slot_frame = match *slot_frame {
                0 => (crate::host::mtu(name)? as usize + 18).max(1518),
                s => s,
            }
            .min(spec.max_frame);
            let g = RingGeometry::v2(reserve, cfg.vnet_hdr, slot_frame, *frames)
                .map_err(|e| IoError::config(name, e))?;
            let spill = if g.max_frame(reserve, cfg.vnet_hdr) < spec.max_frame {
                Some(enable_spill(fd, cfg, spec, *spill_frames, *rcvbuf)?)
            } else {
                None
            };
            return Ok((Some(g), spill));
        }
        RxMode::V2 { frames } => {
            let frames = if *frames == 0 {
                let slot =
                    RingGeometry::min_slot(RingVersion::V2, reserve, cfg.vnet_hdr, spec.max_frame);
                u32::try_from(DEFAULT_RING_BYTES / slot.max(1))
                    .unwrap_or(u32::MAX)
                    .max(64)
            } else {
                *frames
            };
            Some(
                RingGeometry::v2(reserve, cfg.vnet_hdr, spec.max_frame, frames)
                    .map_err(|e| IoError::config(name, e))?,
            )
        }
        RxMode::V3 {
            block_size, blocks, ..
        } => Some(
            RingGeometry::v3(reserve, cfg.vnet_hdr, spec.max_frame, *block_size, *blocks)
                .map_err(|e| IoError::config(name, e))?,
        ),
        RxMode::None => None,
    };
    Ok((geometry, None))
}

/// [`RxMode::V2Spill`]: makes the kernel queue frames larger than a slot whole on the socket
/// (`PACKET_COPY_THRESH`, up to `rcvbuf` bytes) and allocates `spill_frames` buffers to read
/// them into.
fn enable_spill(
    fd: &OwnedFd,
    cfg: &PortConfig,
    spec: &SockSpec<'_>,
    spill_frames: u32,
    rcvbuf: usize,
) -> Result<Spill, IoError> {
    let name = cfg.iface.as_str();
    enable(
        fd,
        sys::PACKET_COPY_THRESH,
        name,
        "setsockopt(PACKET_COPY_THRESH)",
    )?;
    set_buffer(fd, false, rcvbuf, name)?;
    let vnet_len = if cfg.vnet_hdr { VNET_HDR_LEN } else { 0 };
    Spill::new(
        spill_frames as usize,
        cfg.headroom,
        vnet_len,
        spec.max_frame,
        name,
    )
}

/// The TX ring's geometry for `tx_mode` (`None`: sendmmsg).
fn tx_geometry(
    cfg: &PortConfig,
    spec: &SockSpec<'_>,
    tx_mode: &TxMode,
) -> Result<Option<RingGeometry>, IoError> {
    match tx_mode {
        TxMode::Ring { frames } => {
            let vnet_len = if cfg.vnet_hdr { VNET_HDR_LEN } else { 0 };
            // TX slots: tpacket2_hdr, then data at tp_hdrlen - sizeof(sockaddr_ll).
            let slot = sys::tpacket_align(
                sys::TPACKET2_HDRLEN - sys::SOCKADDR_LL_LEN + vnet_len + spec.max_frame,
            );
            let g = RingGeometry::v2_slots(slot, *frames)
                .map_err(|e| IoError::config(&cfg.iface, e))?;
            Ok(Some(g))
        }
        TxMode::Sendmmsg => Ok(None),
    }
}

/// Creates the rings: `PACKET_RX_RING` (a `tpacket_req3` for V3, the 16-byte `tpacket_req` for
/// V2, with [`RxMode::V3`]'s retire timeout) and `PACKET_TX_RING`.
fn set_rings(
    fd: &OwnedFd,
    spec: &SockSpec<'_>,
    version: RingVersion,
    geometry: Option<RingGeometry>,
    tx_geometry: Option<RingGeometry>,
    name: &str,
) -> Result<(), IoError> {
    if let Some(g) = geometry {
        let retire = match spec.rx {
            RxMode::V3 { retire_ms, .. } => *retire_ms,
            _ => 0,
        };
        let req = g.to_req(retire);
        if version == RingVersion::V3 {
            sys::setsockopt(
                fd,
                libc::SOL_PACKET,
                sys::PACKET_RX_RING,
                &req,
                name,
                "setsockopt(PACKET_RX_RING)",
            )?;
        } else {
            // V2 takes the 16-byte `tpacket_req`.
            let r: [u32; 4] = [
                req.tp_block_size,
                req.tp_block_nr,
                req.tp_frame_size,
                req.tp_frame_nr,
            ];
            sys::setsockopt(
                fd,
                libc::SOL_PACKET,
                sys::PACKET_RX_RING,
                &r,
                name,
                "setsockopt(PACKET_RX_RING)",
            )?;
        }
    }
    if let Some(g) = tx_geometry {
        let r: [u32; 4] = [g.block_size, g.block_nr, g.frame_size, g.frame_nr];
        sys::setsockopt(
            fd,
            libc::SOL_PACKET,
            sys::PACKET_TX_RING,
            &r,
            name,
            "setsockopt(PACKET_TX_RING)",
        )?;
    }
    Ok(())
}

/// The options after the rings: qdisc bypass (transmitting socket), ignore-outgoing (receiving
/// socket), send buffer and bounded blocking sends (transmitting socket).
fn set_options(
    fd: &OwnedFd,
    cfg: &PortConfig,
    spec: &SockSpec<'_>,
    receiving: bool,
) -> Result<(), IoError> {
    let name = cfg.iface.as_str();
    if spec.transmit && cfg.qdisc_bypass {
        enable(
            fd,
            sys::PACKET_QDISC_BYPASS,
            name,
            "setsockopt(PACKET_QDISC_BYPASS)",
        )?;
    }
    if receiving && cfg.ignore_outgoing {
        enable(
            fd,
            sys::PACKET_IGNORE_OUTGOING,
            name,
            "setsockopt(PACKET_IGNORE_OUTGOING)",
        )?;
    }
    if let Some(sz) = cfg.sndbuf.filter(|_| spec.transmit) {
        set_buffer(fd, true, sz, name)?;
    }
    if spec.transmit && cfg.tx_blocking {
        // Bound every blocking transmit: a stuck queue costs at most this, then drops.
        let tv = libc::timeval {
            tv_sec: 0,
            tv_usec: TX_BLOCK_MAX_US,
        };
        sys::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_SNDTIMEO,
            &tv,
            name,
            "setsockopt(SO_SNDTIMEO)",
        )?;
    }
    Ok(())
}

/// Binds the socket to the interface and `spec.protocol`: with a protocol the socket starts
/// receiving; a transmit-only port binds with protocol 0 so it never does.
fn bind(fd: &OwnedFd, spec: &SockSpec<'_>, name: &str) -> Result<(), IoError> {
    // SAFETY: sockaddr_ll is a plain C struct; all-zero is valid.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = spec.protocol.to_be();
    sll.sll_ifindex = spec.ifindex as c_int;
    // SAFETY: `sll` is a valid sockaddr_ll and the length matches it.
    let r = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(sys::last_err(name, "bind(AF_PACKET)"));
    }
    Ok(())
}

/// Joins `PACKET_MR_PROMISC` on the interface: frames for any MAC address reach the socket.
fn join_promiscuous(fd: &OwnedFd, ifindex: u32, name: &str) -> Result<(), IoError> {
    let mreq = sys::PacketMreq {
        mr_ifindex: ifindex as c_int,
        mr_type: sys::PACKET_MR_PROMISC,
        ..Default::default()
    };
    sys::setsockopt(
        fd,
        libc::SOL_PACKET,
        sys::PACKET_ADD_MEMBERSHIP,
        &mreq,
        name,
        "setsockopt(PACKET_ADD_MEMBERSHIP, PACKET_MR_PROMISC)",
    )
}

/// Joins fanout group `group` in `f`'s mode (ignoring outgoing frames and defragmenting as
/// configured), hands the kernel the cBPF program of [`FanoutMode::Cbpf`], then replaces the
/// drop-all filter: by [`drop_otherhost_filter`] with `drop_otherhost`, else by none.
fn join_fanout(
    fd: &OwnedFd,
    cfg: &PortConfig,
    f: &Fanout,
    group: u16,
    drop_otherhost: bool,
) -> Result<(), IoError> {
    let name = cfg.iface.as_str();
    let ty = match f.mode {
        FanoutMode::Hash => sys::PACKET_FANOUT_HASH,
        FanoutMode::Cbpf(_) => sys::PACKET_FANOUT_CBPF,
    };
    let mut flags = 0;
    if cfg.ignore_outgoing {
        flags |= sys::PACKET_FANOUT_FLAG_IGNORE_OUTGOING;
    }
    if f.defrag {
        flags |= sys::PACKET_FANOUT_FLAG_DEFRAG;
    }
    let arg: u32 = u32::from(group) | ((ty | flags) << 16);
    sys::setsockopt(
        fd,
        libc::SOL_PACKET,
        sys::PACKET_FANOUT,
        &arg,
        name,
        "setsockopt(PACKET_FANOUT)",
    )?;
    if let FanoutMode::Cbpf(p) = &f.mode {
        set_fanout_program(fd, p, name)?;
    }
    if drop_otherhost {
        // Replaces the drop-all filter in one step.
        attach_filter(fd, &drop_otherhost_filter(), name)
    } else {
        sys::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_DETACH_FILTER,
            &0 as &c_int,
            name,
            "setsockopt(SO_DETACH_FILTER)",
        )
    }
}

/// `PACKET_FANOUT_DATA`: the classic BPF program whose return value picks the group member.
fn set_fanout_program(fd: &OwnedFd, p: &BpfProgram, name: &str) -> Result<(), IoError> {
    let prog = sys::SockFprog {
        len: p.insns().len() as u16,
        filter: p.insns().as_ptr(),
    };
    sys::setsockopt(
        fd,
        libc::SOL_PACKET,
        sys::PACKET_FANOUT_DATA,
        &prog,
        name,
        "setsockopt(PACKET_FANOUT_DATA)",
    )
}

/// The walk state of the RX ring of geometry `g` at `base` (the start of the mapping).
fn ring_state(base: *mut u8, g: &RingGeometry, spill: Option<Spill>) -> RingState {
    match g.version {
        RingVersion::V2 => RingState::V2(V2Ring::new(base, g, spill)),
        RingVersion::V3 => RingState::V3(V3Ring::new(base, g)),
    }
}

/// The transmit path: the TX ring right after the `rx_bytes` of the RX ring in the mapping at
/// `base` when there is one, else sendmmsg.
fn tx_kind(base: *mut u8, rx_bytes: usize, tx_geometry: Option<RingGeometry>) -> TxKind {
    match tx_geometry {
        Some(g) => TxKind::Ring(TxRing::new(
            // SAFETY: the TX ring follows the RX ring in the same mapping.
            unsafe { base.add(rx_bytes) },
            SlotMap::new(&g),
        )),
        None => TxKind::mmsg(),
    }
}

/// The filter of a fanout member until it has joined its group: drops every frame.
fn drop_all_filter() -> [BpfInsn; 1] {
    [BpfInsn {
        code: op::RET | op::K,
        jt: 0,
        jf: 0,
        k: 0,
    }]
}

/// The socket filter of an EtherType-bound socket: drops `PACKET_OTHERHOST` frames (for another
/// MAC address, or tagged with a VLAN id the kernel erased) before they take a ring slot, keeps
/// the rest whole.
fn drop_otherhost_filter() -> [BpfInsn; 4] {
    [
        // A = skb->pkt_type
        BpfInsn {
            code: op::LD | op::W | op::ABS,
            jt: 0,
            jf: 0,
            k: (op::SKF_AD_OFF + op::SKF_AD_PKTTYPE) as u32,
        },
        BpfInsn {
            code: op::JMP | op::JEQ | op::K,
            jt: 0,
            jf: 1,
            k: u32::from(sys::PACKET_OTHERHOST),
        },
        BpfInsn {
            code: op::RET | op::K,
            jt: 0,
            jf: 0,
            k: 0,
        },
        BpfInsn {
            code: op::RET | op::K,
            jt: 0,
            jf: 0,
            k: u32::MAX,
        },
    ]
}

/// Attaches (or replaces) the classic BPF socket filter of `fd`.
fn attach_filter(fd: &OwnedFd, insns: &[BpfInsn], name: &str) -> Result<(), IoError> {
    let prog = sys::SockFprog {
        len: insns.len() as u16,
        filter: insns.as_ptr(),
    };
    sys::setsockopt(
        fd,
        libc::SOL_SOCKET,
        libc::SO_ATTACH_FILTER,
        &prog,
        name,
        "setsockopt(SO_ATTACH_FILTER)",
    )
}
