//! What a [`Port`](crate::Port) is opened with: [`PortConfig`] and its parts (which frames the
//! sockets are bound to, the receive ring, the transmit path, fanout), with their defaults.

use crate::bpf::BpfProgram;
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
    /// [`AUX_RING_BYTES`]. [`Port::rx_batch`](crate::Port::rx_batch) drains them all (starting
    /// with a different ring each batch). The kernel delivers to these sockets *after* tc
    /// ingress (and netfilter's netdev ingress hook), so a frame that a tc program redirects or
    /// drops never reaches them.
    ///
    /// The kernel has erased 802.1Q/802.1ad tags by then (no `TP_STATUS_VLAN_VALID`, no tag in
    /// the bytes) and marks a frame whose VLAN id is not 0 and has no kernel VLAN device
    /// `PACKET_OTHERHOST`. So that such a frame cannot pass for an untagged one, every one of
    /// these sockets carries a classic BPF socket filter that drops `PACKET_OTHERHOST` frames
    /// (`SKF_AD_PKTTYPE`) before they take a ring slot or a copy; the ring walk skips any that
    /// get through anyway (counted in
    /// [`PortStats::otherhost_skipped`](crate::PortStats::otherhost_skipped)). They receive
    /// untagged (or priority-tagged, VLAN id 0, tag erased) frames for the interface's own MAC
    /// address, broadcast and multicast only. Use [`RxBind::All`] for VLAN trunks and for frames
    /// to other MAC addresses. Outgoing frames are never delivered to them. Attaching another socket
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
    /// truncated copy marked `TP_STATUS_COPY` in the slot;
    /// [`Port::rx_batch`](crate::Port::rx_batch) reads them in slot order with one `recvmmsg` per batch into `spill_frames` buffers of the port's largest
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

/// Everything [`Port::open`](crate::Port::open) needs.
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

/// The `PACKET_RESERVE` that puts `cfg.headroom` bytes before each received frame: the kernel
/// leaves 14 bytes before the MAC header on its own (see geometry), plus the vnet header once it
/// has been parsed.
pub(super) fn rx_reserve(cfg: &PortConfig) -> usize {
    let vnet_len = if cfg.vnet_hdr { VNET_HDR_LEN } else { 0 };
    cfg.headroom.saturating_sub(14 + vnet_len)
}
