//! [`Port`]: the AF_PACKET `SOCK_RAW` sockets of one interface (one, or one per bound
//! EtherType), with their RX rings and a batched transmit path. See the crate documentation for
//! the design. What a port is opened with is in [`config`]; how one socket is opened, step by
//! step, in [`socket`]; this file assembles the sockets into a port and holds its API.

mod config;
mod socket;

use std::ffi::c_int;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::Duration;

pub use config::{
    AUX_RING_BYTES, DEFAULT_RING_BYTES, DEFAULT_SPILL_FRAMES, DEFAULT_SPILL_RCVBUF, ETH_P_ARP,
    ETH_P_IP, ETH_P_IPV6, Fanout, FanoutMode, GSO_MAX_FRAME, PortConfig, RxBind, RxMode, TxMode,
};

use crate::error::IoError;
use crate::frame::{RxBatch, TxFrame, TxOutcome};
use crate::geometry::{RingGeometry, RingVersion};
use crate::ring::{
    MAX_RINGS, Mapping, RxCore, RxCounters, RxParams, RxRing, RxRings, TxCore, TxCounters, TxSocket,
};
use crate::sys;
use config::rx_reserve;
use socket::{Sock, SockSpec, open_socket};

/// Counters of one port since it was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortStats {
    /// Frames handed to the caller.
    pub rx_frames: u64,
    /// Their wire bytes.
    pub rx_bytes: u64,
    /// Frames handed to the kernel for transmission.
    pub tx_frames: u64,
    /// Their bytes (without vnet header).
    pub tx_bytes: u64,
    /// Frames that could not be transmitted (all causes, including `tx_busy`).
    pub tx_errors: u64,
    /// Of those, dropped because the queue was full (`EAGAIN`/`ENOBUFS`, TX ring full).
    pub tx_busy: u64,
    /// errno of the last transmit failure (0 if none).
    pub last_tx_errno: i32,
    /// Frames we sent ourselves that the ring returned anyway (`PACKET_OUTGOING`), skipped.
    pub outgoing_skipped: u64,
    /// Frames the kernel dropped because the ring was full (`PACKET_STATISTICS` `tp_drops`).
    pub ring_drops: u64,
    /// Frames the kernel delivered to the socket (`tp_packets`, includes drops; not the
    /// frames a socket filter dropped).
    pub ring_packets: u64,
    /// V3 only: times the ring was frozen full (`tp_freeze_q_cnt`).
    pub ring_freezes: u64,
    /// Frames that did not fit a slot (`TP_STATUS_COPY`, snaplen < len), skipped.
    pub truncated: u64,
    /// Frames whose kernel-stripped VLAN tag was put back.
    pub vlan_reinserted: u64,
    /// [`RxMode::V2Spill`]: frames larger than a slot read whole from the socket queue.
    pub spilled: u64,
    /// [`RxBind::EtherTypes`]: `PACKET_OTHERHOST` frames (for another MAC address, or tagged
    /// with a VLAN id the kernel erased) that reached a ring and were skipped there. The
    /// sockets' filter drops such frames in the kernel first, so this stays 0 unless a frame
    /// slipped past it (a different filter attached to the socket). Frames the filter drops are
    /// not counted anywhere: the kernel counts neither `ring_packets` (`tp_packets`) nor
    /// `ring_drops` (`tp_drops`) for them.
    pub otherhost_skipped: u64,
}

impl PortStats {
    pub(crate) fn from_parts(rx: &RxCounters, tx: &TxCounters) -> PortStats {
        PortStats {
            rx_frames: rx.frames,
            rx_bytes: rx.bytes,
            tx_frames: tx.frames,
            tx_bytes: tx.bytes,
            tx_errors: tx.errors,
            tx_busy: tx.busy,
            last_tx_errno: tx.last_errno,
            outgoing_skipped: rx.outgoing_skipped,
            truncated: rx.truncated,
            vlan_reinserted: rx.vlan_reinserted,
            spilled: rx.spilled,
            otherhost_skipped: rx.otherhost_skipped,
            ..PortStats::default()
        }
    }
}

/// The receive half of a [`Port`].
pub struct Receiver {
    core: Option<RxCore>,
    iface: String,
    ring_drops: u64,
    ring_packets: u64,
    ring_freezes: u64,
}

/// The transmit half of a [`Port`].
pub struct Sender {
    core: TxCore,
}

/// The AF_PACKET socket(s) of one interface: one with [`RxBind::All`] or a transmit-only port,
/// one per EtherType with [`RxBind::EtherTypes`].
///
/// Frames come from [`Port::rx_batch`] as in-place views into the RX ring and are sent with
/// [`Port::send`] (or another port's). Use [`Port::split_mut`] to receive and send on the same
/// port at once. A port belongs to one thread at a time (it is `Send`, not `Sync`).
pub struct Port {
    rx: Receiver,
    tx: Sender,
    geometry: Option<RingGeometry>,
    tx_geometry: Option<RingGeometry>,
    _map: Option<Mapping>,
    fd: OwnedFd,
    /// The receive-only sockets of the other EtherTypes ([`RxBind::EtherTypes`]), with their
    /// ring mappings (unmapped before the socket closes).
    _aux: Vec<(Option<Mapping>, OwnedFd)>,
}

// SAFETY: the raw pointers inside a Port point into its own mmap'ed rings and its own
// heap buffers, which move with it; nothing is shared with other threads (no `Sync`), and the
// kernel side of the rings is synchronised through atomic status words.
unsafe impl Send for Port {}

impl Port {
    /// Opens and configures the socket(s), each: vnet header, ring version, reserve, rings and
    /// mapping (in the order the kernel requires), ignore-outgoing, bind (to `ETH_P_ALL` or one
    /// EtherType), promiscuous membership, fanout. A fanout member drops everything until it has
    /// joined the group, so no frame is seen twice during start-up.
    pub fn open(cfg: &PortConfig) -> Result<Port, IoError> {
        check(cfg)?;
        let name = cfg.iface.as_str();
        let ifindex = sys::ifindex(name)?;
        let max_frame = match cfg.max_frame {
            Some(m) => m,
            None if cfg.vnet_hdr => GSO_MAX_FRAME,
            None => (crate::host::mtu(name)? as usize + 18).max(1518),
        };
        let receiving = cfg.rx != RxMode::None;
        let protocols = bound_protocols(cfg, receiving)?;
        // Sockets bound to one EtherType: they drop other hosts' frames in a socket filter and
        // name the frame's own protocol when they send another EtherType.
        let bound_by_type = receiving && matches!(cfg.bind, RxBind::EtherTypes(_));
        let group = |k: usize| cfg.fanout.as_ref().map(|f| f.group.wrapping_add(k as u16));
        let mut main = open_socket(
            cfg,
            &SockSpec {
                ifindex,
                max_frame,
                protocol: protocols[0],
                rx: &cfg.rx,
                transmit: true,
                group: group(0),
                drop_otherhost: bound_by_type,
            },
        )?;
        // The other EtherTypes: receive-only sockets with a small plain V2 ring each.
        let slot =
            RingGeometry::min_slot(RingVersion::V2, rx_reserve(cfg), cfg.vnet_hdr, max_frame);
        let aux_rx = RxMode::V2 {
            frames: u32::try_from(AUX_RING_BYTES / slot.max(1))
                .unwrap_or(u32::MAX)
                .max(16),
        };
        let mut aux = Vec::new();
        for (k, &protocol) in protocols.iter().enumerate().skip(1) {
            aux.push(open_socket(
                cfg,
                &SockSpec {
                    ifindex,
                    max_frame,
                    protocol,
                    rx: &aux_rx,
                    transmit: false,
                    group: group(k),
                    drop_otherhost: bound_by_type,
                },
            )?);
        }
        let rx_core = receiving.then(|| rx_core(cfg, &mut main, &mut aux, bound_by_type));
        let tx_sock = tx_socket(cfg, &main, protocols[0], ifindex, bound_by_type);
        let mut port = Port {
            rx: Receiver {
                core: rx_core,
                iface: cfg.iface.clone(),
                ring_drops: 0,
                ring_packets: 0,
                ring_freezes: 0,
            },
            tx: Sender {
                core: TxCore {
                    sock: tx_sock,
                    kind: main.tx_kind,
                    counters: TxCounters::default(),
                },
            },
            geometry: main.geometry,
            tx_geometry: main.tx_geometry,
            _map: main.map,
            fd: main.fd,
            _aux: aux.into_iter().map(|s| (s.map, s.fd)).collect(),
        };
        if receiving {
            // Reading PACKET_STATISTICS resets the kernel's counters: start from zero.
            port.rx.refresh_ring_stats()?;
            port.rx.ring_drops = 0;
            port.rx.ring_packets = 0;
            port.rx.ring_freezes = 0;
        }
        Ok(port)
    }

    /// Every socket of the port (the transmitting one first), for `poll`.
    pub(crate) fn raw_fds(&self) -> impl Iterator<Item = c_int> + '_ {
        std::iter::once(self.fd.as_raw_fd()).chain(self._aux.iter().map(|(_, fd)| fd.as_raw_fd()))
    }

    /// The interface name.
    pub fn iface(&self) -> &str {
        &self.rx.iface
    }

    /// The RX ring geometry (`None` for a transmit-only port).
    pub fn geometry(&self) -> Option<RingGeometry> {
        self.geometry
    }

    /// The TX ring geometry (`None` with sendmmsg).
    pub fn tx_geometry(&self) -> Option<RingGeometry> {
        self.tx_geometry
    }

    /// Receives up to `max` frames (capped at `batch_max`), waiting up to `timeout` if none is
    /// ready (`Duration::ZERO`: don't wait). The batch may be empty. Its slots go back to the
    /// kernel when it is dropped.
    pub fn rx_batch(&mut self, max: usize, timeout: Duration) -> Result<RxBatch<'_>, IoError> {
        self.rx.rx_batch(max, timeout)
    }

    /// Transmits `frames` (in vnet mode each with its header). Failures are counted in
    /// [`PortStats`] (`tx_errors`, `tx_busy`), never returned: one bad frame or a full queue must
    /// not stop a router.
    pub fn send<'f>(&mut self, frames: impl IntoIterator<Item = TxFrame<'f>>) -> TxOutcome {
        self.tx.send(frames)
    }

    /// TX ring only: pushes out slots the kernel could not take during the last `send` (no-op
    /// with sendmmsg). Call it when idle if the port is non-blocking.
    pub fn flush(&mut self) {
        self.tx.core.flush();
    }

    /// The receive and transmit halves, to send on the port while holding one of its batches.
    pub fn split_mut(&mut self) -> (&mut Receiver, &mut Sender) {
        (&mut self.rx, &mut self.tx)
    }

    /// Counters; also folds in the kernel's `PACKET_STATISTICS` (one `getsockopt`).
    pub fn stats(&mut self) -> Result<PortStats, IoError> {
        if self.rx.core.is_some() {
            self.rx.refresh_ring_stats()?;
        }
        Ok(self.stats_cached())
    }

    /// Counters without asking the kernel for ring drops (no syscall).
    pub fn stats_cached(&self) -> PortStats {
        let empty = RxCounters::default();
        let rx = self.rx.core.as_ref().map_or(&empty, |c| &c.counters);
        PortStats {
            ring_drops: self.rx.ring_drops,
            ring_packets: self.rx.ring_packets,
            ring_freezes: self.rx.ring_freezes,
            ..PortStats::from_parts(rx, &self.tx.core.counters)
        }
    }
}

/// The settings [`Port::open`] refuses before it looks at the interface.
fn check(cfg: &PortConfig) -> Result<(), IoError> {
    let name = cfg.iface.as_str();
    if cfg.batch_max == 0 {
        return Err(IoError::config(name, "batch_max must be at least 1"));
    }
    if matches!(cfg.rx, RxMode::V3 { .. }) && matches!(cfg.tx, TxMode::Ring { .. }) {
        return Err(IoError::config(
            name,
            "the TX ring needs TPACKET_V2 (use RxMode::V2 or TxMode::Sendmmsg)",
        ));
    }
    if cfg.fanout.is_some() && cfg.rx == RxMode::None {
        return Err(IoError::config(name, "fanout needs a receiving port"));
    }
    Ok(())
}

/// The protocol each socket of the port binds to, the transmitting one first: 0 for a
/// transmit-only port, `ETH_P_ALL` for [`RxBind::All`], else the (1 to [`MAX_RINGS`] distinct)
/// EtherTypes.
fn bound_protocols(cfg: &PortConfig, receiving: bool) -> Result<&[u16], IoError> {
    let name = cfg.iface.as_str();
    let protocols: &[u16] = match (&cfg.bind, receiving) {
        (_, false) => &[0],
        (RxBind::All, true) => &[sys::ETH_P_ALL],
        (RxBind::EtherTypes(t), true) => t,
    };
    if protocols.is_empty() || protocols.len() > MAX_RINGS {
        return Err(IoError::config(
            name,
            format!("a port binds 1 to {MAX_RINGS} EtherTypes"),
        ));
    }
    let bound_by_type = receiving && matches!(cfg.bind, RxBind::EtherTypes(_));
    if bound_by_type
        && protocols
            .iter()
            .enumerate()
            .any(|(i, p)| *p == 0 || *p == sys::ETH_P_ALL || protocols[..i].contains(p))
    {
        return Err(IoError::config(
            name,
            "RxBind::EtherTypes takes distinct EtherTypes (not 0 or ETH_P_ALL)",
        ));
    }
    Ok(protocols)
}

/// The receive side over the rings of `main` and `aux` (taken out of them), in that order.
fn rx_core(cfg: &PortConfig, main: &mut Sock, aux: &mut [Sock], bound_by_type: bool) -> RxCore {
    let rings = RxRings(
        std::iter::once(main)
            .chain(aux)
            .filter_map(|s| {
                let fd = s.fd.as_raw_fd();
                s.ring.take().map(|state| RxRing { state, fd })
            })
            .collect(),
    );
    RxCore {
        descs: Vec::with_capacity(cfg.batch_max),
        rings,
        counters: RxCounters::default(),
        params: RxParams {
            vnet: cfg.vnet_hdr,
            reinsert_vlan: cfg.reinsert_vlan,
            batch_max: cfg.batch_max,
            skip_otherhost: bound_by_type,
        },
        next: 0,
    }
}

/// What the transmit path needs of `main`, the socket bound to `protocol` that transmits.
fn tx_socket(
    cfg: &PortConfig,
    main: &Sock,
    protocol: u16,
    ifindex: u32,
    bound_by_type: bool,
) -> TxSocket {
    TxSocket {
        fd: main.fd.as_raw_fd(),
        vnet: cfg.vnet_hdr,
        flags: if cfg.tx_blocking {
            0
        } else {
            libc::MSG_DONTWAIT
        },
        blocking: cfg.tx_blocking,
        bound: protocol.to_be_bytes(),
        retag: bound_by_type.then(|| crate::ring::retag_addr(ifindex as c_int)),
    }
}

impl Receiver {
    /// See [`Port::rx_batch`].
    pub fn rx_batch(&mut self, max: usize, timeout: Duration) -> Result<RxBatch<'_>, IoError> {
        let ms = if timeout.is_zero() {
            0
        } else {
            c_int::try_from(timeout.as_millis().max(1)).unwrap_or(c_int::MAX)
        };
        match self.core.as_mut() {
            Some(core) => core.batch(max, ms, &self.iface),
            None => Err(IoError::config(
                &self.iface,
                "port was opened with RxMode::None",
            )),
        }
    }

    fn refresh_ring_stats(&mut self) -> Result<(), IoError> {
        let Some(core) = &self.core else {
            return Ok(());
        };
        for r in &core.rings.0 {
            let s: sys::TpacketStatsV3 = sys::getsockopt(
                r.fd,
                libc::SOL_PACKET,
                sys::PACKET_STATISTICS,
                &self.iface,
                "getsockopt(PACKET_STATISTICS)",
            )?;
            self.ring_drops += u64::from(s.tp_drops);
            self.ring_packets += u64::from(s.tp_packets);
            self.ring_freezes += u64::from(s.tp_freeze_q_cnt);
        }
        Ok(())
    }
}

impl Sender {
    /// See [`Port::send`].
    pub fn send<'f>(&mut self, frames: impl IntoIterator<Item = TxFrame<'f>>) -> TxOutcome {
        self.core.send(frames)
    }

    /// See [`Port::flush`].
    pub fn flush(&mut self) {
        self.core.flush();
    }
}

/// The port's first socket: the one that transmits, and with [`RxBind::All`] the only one.
impl AsFd for Port {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
