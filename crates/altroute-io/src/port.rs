//! [`Port`]: the AF_PACKET `SOCK_RAW` sockets of one interface (one, or one per bound
//! EtherType), with their RX rings and a batched transmit path. See the crate documentation for
//! the design.

use std::ffi::c_int;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use crate::bpf::BpfProgram;
use crate::error::IoError;
use crate::frame::{RxBatch, TxFrame, TxOutcome};
use crate::geometry::{RingGeometry, RingVersion};
use crate::ring::{
    MAX_RINGS, Mapping, RingState, RxCore, RxCounters, RxParams, RxRing, RxRings, SlotMap, Spill,
    TxCore, TxCounters, TxKind, TxRing, TxSocket, V2Ring, V3Ring,
};
use crate::sys;
use crate::vnet::VNET_HDR_LEN;

/// Ring memory used by `RxMode::V2 { frames: 0 }` (the default).
pub const DEFAULT_RING_BYTES: usize = 16 << 20;

/// Ring memory of each receive-only socket of [`RxBind::EtherTypes`] (at least 16 slots).
pub const AUX_RING_BYTES: usize = 1 << 20;

/// EtherType of IPv4.
pub const ETH_P_IP: u16 = 0x0800;
/// EtherType of ARP.
pub const ETH_P_ARP: u16 = 0x0806;
/// EtherType of IPv6.
pub const ETH_P_IPV6: u16 = 0x86dd;

/// Which frames a receiving port's sockets are bound to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RxBind {
    /// One socket bound to `ETH_P_ALL`. The kernel treats it as a tap: it gets every frame of
    /// the interface, VLAN-tagged ones with their tag, *before* tc ingress runs (so also the
    /// frames a tc program then redirects, unless a socket filter drops them).
    All,
    /// One socket and ring per EtherType (at most 8). The first socket's ring is sized by
    /// [`PortConfig::rx`] and it transmits; the others are receive-only with a plain V2 ring of
    /// [`AUX_RING_BYTES`]. [`Port::rx_batch`] drains them all (starting with a different ring
    /// each batch). The kernel delivers to these sockets *after* tc ingress (and netfilter's
    /// netdev ingress hook), so a frame that a tc program redirects or drops never reaches them.
    ///
    /// The kernel has erased 802.1Q/802.1ad tags by then (no `TP_STATUS_VLAN_VALID`, no tag in
    /// the bytes) and marks a frame whose VLAN id is not 0 and has no kernel VLAN device
    /// `PACKET_OTHERHOST`. So that such a frame cannot pass for an untagged one, every one of
    /// these sockets carries a classic BPF socket filter that drops `PACKET_OTHERHOST` frames
    /// (`SKF_AD_PKTTYPE`) before they take a ring slot or a copy; the ring walk skips any that
    /// get through anyway (counted in [`PortStats::otherhost_skipped`]). They receive untagged
    /// (or priority-tagged, VLAN id 0, tag erased) frames for the interface's own MAC address,
    /// broadcast and multicast only. Use [`RxBind::All`] for VLAN trunks and for frames to other
    /// MAC addresses. Outgoing frames are never delivered to them. Attaching another socket
    /// filter to the port's socket (e.g. an eBPF one) replaces this one.
    ///
    /// The first socket transmits. The kernel gives a frame sent without an address the
    /// socket's bound protocol as `skb->protocol`, so frames of another EtherType than the first
    /// are sent with an `ETH_P_ALL` address (the kernel then reads the EtherType from the frame):
    /// per message with sendmmsg, on every kick of the TX ring.
    ///
    /// With [`PortConfig::fanout`], socket `k` (in this order) joins group `group + k`, so a
    /// port uses as many consecutive group ids as it binds EtherTypes.
    EtherTypes(Vec<u16>),
}

impl RxBind {
    /// The router's set: IPv4 (first: its ring is the big one), ARP and IPv6.
    pub fn ip() -> RxBind {
        RxBind::EtherTypes(vec![ETH_P_IP, ETH_P_ARP, ETH_P_IPV6])
    }
}

/// Largest frame a vnet port must take whole: a 64 KiB IP packet plus Ethernet and one VLAN tag.
pub const GSO_MAX_FRAME: usize = 65535 + 18;

/// Longest a blocking transmit waits for room before it drops and counts (`SO_SNDTIMEO`).
const TX_BLOCK_MAX_US: libc::suseconds_t = 20_000;

/// How a port receives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RxMode {
    /// TPACKET_V2 ring with at least `frames` slots (each holds the largest frame whole);
    /// `frames: 0` sizes the ring to [`DEFAULT_RING_BYTES`] (about 240 slots for 64 KiB GSO
    /// frames, about 8,000 for 1,518-byte frames).
    V2 {
        /// Minimum number of slots, or 0 for [`DEFAULT_RING_BYTES`].
        frames: u32,
    },
    /// TPACKET_V3 ring of `blocks` blocks of `block_size` bytes; a partly filled block is handed
    /// over after `retire_ms` milliseconds (the latency cost of V3 on a quiet link).
    V3 {
        /// Bytes per block (rounded up to pages; must hold the largest frame).
        block_size: usize,
        /// Number of blocks.
        blocks: u32,
        /// Block retire timeout in ms (0 lets the kernel pick from the link speed).
        retire_ms: u32,
    },
    /// TPACKET_V2 ring of at least `frames` slots sized for `slot_frame`-byte frames, with
    /// frames larger than a slot *spilled*: the kernel queues them whole on the socket
    /// (`PACKET_COPY_THRESH`, at most `rcvbuf` bytes queued, `SO_RCVBUFFORCE`) and leaves a
    /// truncated copy marked `TP_STATUS_COPY` in the slot; [`Port::rx_batch`] reads them in
    /// slot order with one `recvmmsg` per batch into `spill_frames` buffers of the port's largest
    /// frame (a batch ends early when they are all taken). MTU-sized slots hold ~35 times as many
    /// small frames per MiB as 64 KiB slots, while GSO super-frames still arrive whole (one copy,
    /// like a slot). A spilled frame that finds the queue full arrives truncated and is counted
    /// in `truncated`.
    V2Spill {
        /// Minimum number of slots.
        frames: u32,
        /// Largest frame a slot holds; 0: the interface MTU + 18 (at least 1,518).
        slot_frame: usize,
        /// Spill buffers per port (spilled frames per batch at most).
        spill_frames: u32,
        /// Receive buffer for queued spilled frames, bytes.
        rcvbuf: usize,
    },
    /// Transmit only: one socket bound without a protocol, receiving nothing ([`RxBind`] does
    /// not apply).
    None,
}

impl RxMode {
    /// [`RxMode::V2Spill`] with `frames` MTU-sized slots, [`DEFAULT_SPILL_FRAMES`] buffers and
    /// a [`DEFAULT_SPILL_RCVBUF`]-byte queue.
    pub fn spill(frames: u32) -> RxMode {
        RxMode::V2Spill {
            frames,
            slot_frame: 0,
            spill_frames: DEFAULT_SPILL_FRAMES,
            rcvbuf: DEFAULT_SPILL_RCVBUF,
        }
    }
}

/// Spill buffers per port of [`RxMode::spill`].
pub const DEFAULT_SPILL_FRAMES: u32 = 32;
/// Socket receive buffer of [`RxMode::spill`] (about 100–200 queued 64 KiB GSO frames).
pub const DEFAULT_SPILL_RCVBUF: usize = 16 << 20;

/// How a port transmits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxMode {
    /// `sendmmsg` straight from the caller's memory (e.g. the RX ring slot): one syscall per up
    /// to 64 frames, no copy in user space. Measured faster than the TX ring on veth (default).
    Sendmmsg,
    /// A TPACKET_V2 TX ring of at least `frames` slots: frames are copied into the ring and one
    /// `send(NULL, 0)` flushes them. Requires [`RxMode::V2`] or [`RxMode::None`].
    Ring {
        /// Minimum number of slots.
        frames: u32,
    },
}

/// Fanout mode of a group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FanoutMode {
    /// `PACKET_FANOUT_HASH`: by the kernel's flow hash (keeps each flow on one socket).
    Hash,
    /// `PACKET_FANOUT_CBPF`: by the return value of this classic BPF program, modulo the number
    /// of sockets in the group (e.g. [`crate::Steering::program`]).
    Cbpf(BpfProgram),
}

/// Membership of a `PACKET_FANOUT` group: sockets of one interface with the same `group` id
/// share its frames; each frame goes to exactly one member. Members are numbered in join order,
/// so open worker `i`'s port `i`-th.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fanout {
    /// Group id (unique per interface and network namespace).
    pub group: u16,
    /// How frames are spread.
    pub mode: FanoutMode,
    /// `PACKET_FANOUT_FLAG_DEFRAG`: reassemble IP fragments before spreading.
    pub defrag: bool,
}

/// Everything [`Port::open`] needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortConfig {
    /// Interface name.
    pub iface: String,
    /// What the receiving sockets are bound to.
    pub bind: RxBind,
    /// Receive ring (of the first socket with [`RxBind::EtherTypes`]).
    pub rx: RxMode,
    /// Transmit path.
    pub tx: TxMode,
    /// `PACKET_VNET_HDR`: frames carry a [`crate::VnetHdr`] and may be 64 KiB GSO super-frames.
    pub vnet_hdr: bool,
    /// Largest frame to receive whole; `None`: [`GSO_MAX_FRAME`] with `vnet_hdr`, else MTU + 18.
    pub max_frame: Option<usize>,
    /// Minimum bytes of headroom before each received MAC header (before VLAN re-insertion).
    pub headroom: usize,
    /// Put kernel-stripped VLAN tags back into the frame bytes.
    pub reinsert_vlan: bool,
    /// Join `PACKET_MR_PROMISC` (receive frames for any MAC).
    pub promiscuous: bool,
    /// Fanout group to join (one per socket with [`RxBind::EtherTypes`]: `group`, `group + 1`, ...).
    pub fanout: Option<Fanout>,
    /// Ask the kernel not to deliver frames sent from this host (`PACKET_IGNORE_OUTGOING`, or
    /// `PACKET_FANOUT_FLAG_IGNORE_OUTGOING` in a group). Outgoing frames that arrive anyway are
    /// always dropped and counted in `outgoing_skipped`.
    pub ignore_outgoing: bool,
    /// `PACKET_QDISC_BYPASS`: transmit straight to the driver (no qdisc, no taps see it).
    pub qdisc_bypass: bool,
    /// Wait for room (at most 20 ms per call, `SO_SNDTIMEO`) when the socket send buffer or TX
    /// ring is full, instead of dropping at once. Either way a frame that cannot be sent is
    /// counted in `tx_errors`/`tx_busy`.
    pub tx_blocking: bool,
    /// `SO_SNDBUFFORCE` (falls back to `SO_SNDBUF`); `None` keeps the default.
    pub sndbuf: Option<usize>,
    /// Maximum frames per receive batch.
    pub batch_max: usize,
}

impl PortConfig {
    /// Defaults: one `ETH_P_ALL` socket ([`RxBind::All`]), V2 ring of [`DEFAULT_RING_BYTES`], sendmmsg, plain mode, 32 bytes headroom, VLAN tags put
    /// back, promiscuous, no fanout, non-blocking transmit (a full queue drops and counts rather
    /// than stalling the worker; measured as fast as blocking) with a 4 MiB send buffer, batches
    /// of 64.
    pub fn new(iface: impl Into<String>) -> PortConfig {
        PortConfig {
            iface: iface.into(),
            bind: RxBind::All,
            rx: RxMode::V2 { frames: 0 },
            tx: TxMode::Sendmmsg,
            vnet_hdr: false,
            max_frame: None,
            headroom: 32,
            reinsert_vlan: true,
            promiscuous: true,
            fanout: None,
            ignore_outgoing: true,
            qdisc_bypass: false,
            tx_blocking: false,
            sndbuf: Some(4 << 20),
            batch_max: 64,
        }
    }
}

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

fn drop_all_filter() -> [crate::bpf::BpfInsn; 1] {
    [crate::bpf::BpfInsn {
        code: crate::bpf::op::RET | crate::bpf::op::K,
        jt: 0,
        jf: 0,
        k: 0,
    }]
}

/// The socket filter of an EtherType-bound socket: drops `PACKET_OTHERHOST` frames (for another
/// MAC address, or tagged with a VLAN id the kernel erased) before they take a ring slot, keeps
/// the rest whole.
fn drop_otherhost_filter() -> [crate::bpf::BpfInsn; 4] {
    use crate::bpf::{BpfInsn, op};
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
fn attach_filter(fd: &OwnedFd, insns: &[crate::bpf::BpfInsn], name: &str) -> Result<(), IoError> {
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

impl Port {
    /// Opens and configures the socket(s), each: vnet header, ring version, reserve, rings and
    /// mapping (in the order the kernel requires), ignore-outgoing, bind (to `ETH_P_ALL` or one
    /// EtherType), promiscuous membership, fanout. A fanout member drops everything until it has
    /// joined the group, so no frame is seen twice during start-up.
    pub fn open(cfg: &PortConfig) -> Result<Port, IoError> {
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
        let ifindex = sys::ifindex(name)?;
        let max_frame = match cfg.max_frame {
            Some(m) => m,
            None if cfg.vnet_hdr => GSO_MAX_FRAME,
            None => (crate::host::mtu(name)? as usize + 18).max(1518),
        };
        let receiving = cfg.rx != RxMode::None;
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
        // Sockets bound to one EtherType: they drop other hosts' frames in a socket filter and
        // name the frame's own protocol when they send another EtherType.
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
        let rings = RxRings(
            std::iter::once(&mut main)
                .chain(&mut aux)
                .filter_map(|s| {
                    let fd = s.fd.as_raw_fd();
                    s.ring.take().map(|state| RxRing { state, fd })
                })
                .collect(),
        );
        let core = receiving.then(|| RxCore {
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
        });
        let raw = main.fd.as_raw_fd();
        let mut port = Port {
            rx: Receiver {
                core,
                iface: cfg.iface.clone(),
                ring_drops: 0,
                ring_packets: 0,
                ring_freezes: 0,
            },
            tx: Sender {
                core: TxCore {
                    sock: TxSocket {
                        fd: raw,
                        vnet: cfg.vnet_hdr,
                        flags: if cfg.tx_blocking {
                            0
                        } else {
                            libc::MSG_DONTWAIT
                        },
                        blocking: cfg.tx_blocking,
                        bound: protocols[0].to_be_bytes(),
                        retag: bound_by_type.then(|| crate::ring::retag_addr(ifindex as c_int)),
                    },
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

/// The `PACKET_RESERVE` that puts `cfg.headroom` bytes before each received frame: the kernel
/// leaves 14 bytes before the MAC header on its own (see geometry), plus the vnet header once it
/// has been parsed.
fn rx_reserve(cfg: &PortConfig) -> usize {
    let vnet_len = if cfg.vnet_hdr { VNET_HDR_LEN } else { 0 };
    cfg.headroom.saturating_sub(14 + vnet_len)
}

/// One socket of a port: what [`open_socket`] sets up.
struct SockSpec<'a> {
    ifindex: u32,
    /// Largest frame a slot must hold whole.
    max_frame: usize,
    /// Bound protocol in host order (0: receive nothing).
    protocol: u16,
    rx: &'a RxMode,
    /// Whether this socket transmits (the TX ring, send buffer, qdisc bypass, blocking).
    transmit: bool,
    /// Fanout group to join (with `cfg.fanout`'s mode).
    group: Option<u16>,
    /// Attach [`drop_otherhost_filter`] (a socket bound to one EtherType).
    drop_otherhost: bool,
}

/// An open, bound socket with its rings mapped.
struct Sock {
    fd: OwnedFd,
    map: Option<Mapping>,
    geometry: Option<RingGeometry>,
    tx_geometry: Option<RingGeometry>,
    /// The RX ring walk (`None`: not receiving).
    ring: Option<RingState>,
    tx_kind: TxKind,
}

/// Opens and configures one socket of a port: vnet header, ring version, reserve, rings and
/// mapping (in the order the kernel requires), ignore-outgoing, bind, promiscuous membership,
/// fanout.
fn open_socket(cfg: &PortConfig, spec: &SockSpec<'_>) -> Result<Sock, IoError> {
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

    if spec.group.is_some() {
        // Nothing until the socket has joined its group (then the final filter, if any).
        attach_filter(&fd, &drop_all_filter(), name)?;
    } else if spec.drop_otherhost {
        // Before bind: no other host's frame ever reaches the ring.
        attach_filter(&fd, &drop_otherhost_filter(), name)?;
    }
    if cfg.vnet_hdr {
        sys::setsockopt(
            &fd,
            libc::SOL_PACKET,
            sys::PACKET_VNET_HDR,
            &1 as &c_int,
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
        &fd,
        libc::SOL_PACKET,
        sys::PACKET_VERSION,
        &v,
        name,
        "setsockopt(PACKET_VERSION)",
    )?;
    let vnet_len = if cfg.vnet_hdr { VNET_HDR_LEN } else { 0 };
    let reserve = rx_reserve(cfg);
    let reserve_c =
        c_int::try_from(reserve).map_err(|_| IoError::config(name, "headroom too large"))?;
    if receiving {
        sys::setsockopt(
            &fd,
            libc::SOL_PACKET,
            sys::PACKET_RESERVE,
            &reserve_c,
            name,
            "setsockopt(PACKET_RESERVE)",
        )?;
    }

    if matches!(tx_mode, TxMode::Ring { .. }) {
        // Drop malformed TX ring frames instead of stopping the ring; must precede the rings.
        sys::setsockopt(
            &fd,
            libc::SOL_PACKET,
            sys::PACKET_LOSS,
            &1 as &c_int,
            name,
            "setsockopt(PACKET_LOSS)",
        )?;
    }
    let mut spill = None;
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
            if g.max_frame(reserve, cfg.vnet_hdr) < spec.max_frame {
                sys::setsockopt(
                    &fd,
                    libc::SOL_PACKET,
                    sys::PACKET_COPY_THRESH,
                    &1 as &c_int,
                    name,
                    "setsockopt(PACKET_COPY_THRESH)",
                )?;
                let sz = c_int::try_from(*rcvbuf).unwrap_or(c_int::MAX);
                if sys::setsockopt(
                    &fd,
                    libc::SOL_SOCKET,
                    libc::SO_RCVBUFFORCE,
                    &sz,
                    name,
                    "setsockopt(SO_RCVBUFFORCE)",
                )
                .is_err()
                {
                    sys::setsockopt(
                        &fd,
                        libc::SOL_SOCKET,
                        libc::SO_RCVBUF,
                        &sz,
                        name,
                        "setsockopt(SO_RCVBUF)",
                    )?;
                }
                spill = Some(Spill::new(
                    *spill_frames as usize,
                    cfg.headroom,
                    vnet_len,
                    spec.max_frame,
                    name,
                )?);
            }
            Some(g)
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
    let tx_geometry = match tx_mode {
        TxMode::Ring { frames } => {
            // TX slots: tpacket2_hdr, then data at tp_hdrlen - sizeof(sockaddr_ll).
            let slot = sys::tpacket_align(
                sys::TPACKET2_HDRLEN - sys::SOCKADDR_LL_LEN + vnet_len + spec.max_frame,
            );
            Some(RingGeometry::v2_slots(slot, *frames).map_err(|e| IoError::config(name, e))?)
        }
        TxMode::Sendmmsg => None,
    };
    if let Some(g) = geometry {
        let retire = match spec.rx {
            RxMode::V3 { retire_ms, .. } => *retire_ms,
            _ => 0,
        };
        let req = g.to_req(retire);
        if version == RingVersion::V3 {
            sys::setsockopt(
                &fd,
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
                &fd,
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
            &fd,
            libc::SOL_PACKET,
            sys::PACKET_TX_RING,
            &r,
            name,
            "setsockopt(PACKET_TX_RING)",
        )?;
    }
    let rx_bytes = geometry.map_or(0, |g| g.ring_bytes());
    let tx_bytes = tx_geometry.map_or(0, |g| g.ring_bytes());
    let map = if rx_bytes + tx_bytes > 0 {
        Some(Mapping::new(fd.as_raw_fd(), rx_bytes + tx_bytes, name)?)
    } else {
        None
    };

    if spec.transmit && cfg.qdisc_bypass {
        sys::setsockopt(
            &fd,
            libc::SOL_PACKET,
            sys::PACKET_QDISC_BYPASS,
            &1 as &c_int,
            name,
            "setsockopt(PACKET_QDISC_BYPASS)",
        )?;
    }
    if receiving && cfg.ignore_outgoing {
        sys::setsockopt(
            &fd,
            libc::SOL_PACKET,
            sys::PACKET_IGNORE_OUTGOING,
            &1 as &c_int,
            name,
            "setsockopt(PACKET_IGNORE_OUTGOING)",
        )?;
    }
    if let Some(sz) = cfg.sndbuf.filter(|_| spec.transmit) {
        let sz = c_int::try_from(sz).unwrap_or(c_int::MAX);
        if sys::setsockopt(
            &fd,
            libc::SOL_SOCKET,
            libc::SO_SNDBUFFORCE,
            &sz,
            name,
            "setsockopt(SO_SNDBUFFORCE)",
        )
        .is_err()
        {
            sys::setsockopt(
                &fd,
                libc::SOL_SOCKET,
                libc::SO_SNDBUF,
                &sz,
                name,
                "setsockopt(SO_SNDBUF)",
            )?;
        }
    }

    if spec.transmit && cfg.tx_blocking {
        // Bound every blocking transmit: a stuck queue costs at most this, then drops.
        let tv = libc::timeval {
            tv_sec: 0,
            tv_usec: TX_BLOCK_MAX_US,
        };
        sys::setsockopt(
            &fd,
            libc::SOL_SOCKET,
            libc::SO_SNDTIMEO,
            &tv,
            name,
            "setsockopt(SO_SNDTIMEO)",
        )?;
    }

    // Bind: with a protocol the socket starts receiving; a transmit-only port binds with
    // protocol 0 so it never does.
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
    if receiving && cfg.promiscuous {
        let mreq = sys::PacketMreq {
            mr_ifindex: spec.ifindex as c_int,
            mr_type: sys::PACKET_MR_PROMISC,
            ..Default::default()
        };
        sys::setsockopt(
            &fd,
            libc::SOL_PACKET,
            sys::PACKET_ADD_MEMBERSHIP,
            &mreq,
            name,
            "setsockopt(PACKET_ADD_MEMBERSHIP, PACKET_MR_PROMISC)",
        )?;
    }
    if let (Some(f), Some(group)) = (&cfg.fanout, spec.group) {
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
            &fd,
            libc::SOL_PACKET,
            sys::PACKET_FANOUT,
            &arg,
            name,
            "setsockopt(PACKET_FANOUT)",
        )?;
        if let FanoutMode::Cbpf(p) = &f.mode {
            let prog = sys::SockFprog {
                len: p.insns().len() as u16,
                filter: p.insns().as_ptr(),
            };
            sys::setsockopt(
                &fd,
                libc::SOL_PACKET,
                sys::PACKET_FANOUT_DATA,
                &prog,
                name,
                "setsockopt(PACKET_FANOUT_DATA)",
            )?;
        }
        if spec.drop_otherhost {
            // Replaces the drop-all filter in one step.
            attach_filter(&fd, &drop_otherhost_filter(), name)?;
        } else {
            sys::setsockopt(
                &fd,
                libc::SOL_SOCKET,
                libc::SO_DETACH_FILTER,
                &0 as &c_int,
                name,
                "setsockopt(SO_DETACH_FILTER)",
            )?;
        }
    }
    let base = map.as_ref().map_or(std::ptr::null_mut(), |m| m.base());
    let ring = match geometry {
        Some(g) if g.version == RingVersion::V2 => {
            Some(RingState::V2(V2Ring::new(base, &g, spill)))
        }
        Some(g) => Some(RingState::V3(V3Ring::new(base, &g))),
        None => None,
    };
    let tx_kind = match tx_geometry {
        Some(g) => TxKind::Ring(TxRing::new(
            // SAFETY: the TX ring follows the RX ring in the same mapping.
            unsafe { base.add(rx_bytes) },
            SlotMap::new(&g),
        )),
        None => TxKind::mmsg(),
    };
    Ok(Sock {
        fd,
        map,
        geometry,
        tx_geometry,
        ring,
        tx_kind,
    })
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
