//! Packet I/O for altroute: the one crate that makes syscalls and contains `unsafe`. It moves
//! Ethernet frames between network interfaces and the (pure) packet pipeline, in bytes and
//! metadata only.
//!
//! # Ports and rings
//!
//! A [`Port`] is the `AF_PACKET`/`SOCK_RAW` sockets of one interface, promiscuous, ignoring the
//! frames it (or any local socket) transmits. [`PortConfig::bind`] says which frames they get:
//!
//! * [`RxBind::All`] (default): one socket bound to `ETH_P_ALL`. The kernel treats it as a *tap*
//!   and hands it every frame, VLAN tags intact, *before* tc ingress.
//! * [`RxBind::EtherTypes`] ([`RxBind::ip`]: IPv4, ARP, IPv6; the router's choice): one socket
//!   and ring per EtherType, the first one sized by [`PortConfig::rx`] and transmitting, the
//!   others small. The kernel delivers to them *after* tc ingress, so a frame a tc program
//!   redirects never reaches them. It has erased VLAN tags by then, so these sockets drop the
//!   frames it marks for another host (which include every frame with a VLAN id) in a classic
//!   BPF socket filter, before they take a ring slot, and see frames for the interface's own
//!   MAC, broadcast and multicast only. The transmitting socket is bound to the first
//!   EtherType; a frame of another EtherType is sent with an address (`ETH_P_ALL`) that makes
//!   the kernel take `skb->protocol` from the frame instead of the binding (so taps, tc,
//!   nftables and drivers see ARP as ARP, IPv6 as IPv6), while frames of the first EtherType
//!   keep the address-less fast path.
//!
//! Frames arrive in `PACKET_MMAP` rings shared with the kernel:
//!
//! * **TPACKET_V2** ([`RxMode::V2`], default): fixed slots, each handed to user space as soon as
//!   the kernel filled it. Slots are sized by [`RingGeometry`] to hold a whole 64 KiB GSO frame
//!   plus the kernel's header, our headroom and the vnet header, packed into page-multiple blocks.
//! * **TPACKET_V2 with spill** ([`RxMode::V2Spill`], the daemon's `rx_ring: v2-spill`): slots
//!   sized for MTU frames, so the same memory holds ~35 times as many small frames; a frame
//!   larger than a slot (a GSO super-frame) is queued whole on the socket by the kernel
//!   (`PACKET_COPY_THRESH`) while its slot carries a truncated copy marked `TP_STATUS_COPY`, and
//!   the batch reads it with one `recvmmsg` per batch into a per-port spill buffer. That moves
//!   the 64 KiB copy from the sender's softirq to the reading thread: measured ~0.8x TCP
//!   single-stream throughput through the router, so it is not the default.
//! * **TPACKET_V3** ([`RxMode::V3`]): frames packed back to back in blocks; a block is handed over
//!   when full or when its retire timer fires, which saves memory and syscalls under load and
//!   adds up to `retire_ms` of latency when quiet.
//!
//! [`Port::rx_batch`] walks the ready frames of its rings (polling all its sockets with a timeout
//! when there are none) and returns an [`RxBatch`]: mutable views ([`RxFrame`]) **into the ring slots themselves**. The
//! pipeline edits frames in place; each has headroom before its MAC header (`PACKET_RESERVE`),
//! so an 802.1Q tag can be pushed by moving the MAC addresses left ([`RxFrame::push_vlan`]), and
//! tail room up to the end of its slot, so a frame can grow ([`RxFrame::frame_and_tail_mut`],
//! [`RxFrame::set_len`]). When
//! the kernel has stripped a VLAN tag into metadata (`TP_STATUS_VLAN_VALID`) it is put back into
//! the bytes, so the caller always sees the tag in the frame. Frames are then transmitted
//! straight from the slot with [`Port::send`] on any port (`sendmmsg`, up to 64 frames per call;
//! [`TxMode::Ring`] copies into a TPACKET_V2 TX ring instead, which measured slower on veth).
//! Dropping the batch hands its slots back to the kernel.
//!
//! Frames that could not be used are counted, never returned: our own transmissions seen again
//! (`PACKET_OUTGOING`), other hosts' frames that got past an EtherType-bound port's filter,
//! truncated frames,
//! transmit failures (`EAGAIN`/`ENOBUFS` included) and the kernel's ring drops all show up in
//! [`PortStats`].
//!
//! # The vnet header
//!
//! With [`PortConfig::vnet_hdr`] the socket uses `PACKET_VNET_HDR`: every received frame comes with
//! a [`VnetHdr`] (`virtio_net_hdr`) and every transmitted frame goes with one. That lets TCP/UDP
//! GSO super-frames (up to 64 KiB, e.g. from a veth peer with TSO on) pass through whole: the
//! header says how the kernel must segment them (`gso_type`, `gso_size`, `hdr_len`) and where a
//! partial checksum must be finished (`NEEDS_CSUM`, `csum_start`, `csum_offset`). A pipeline that
//! rewrites addresses of a `NEEDS_CSUM` frame updates the L4 checksum field as the pseudo-header
//! sum only. Without vnet mode the ports' offloads must be off (`ethtool -K`); a partial checksum
//! is still reported as [`FrameMeta::csum_not_ready`].
//!
//! # Fanout and the steering program
//!
//! Several worker threads can each open a port on the same interface with the same
//! [`Fanout::group`]; the kernel then delivers each frame to exactly one of them (members are
//! numbered in join order). A group takes one protocol only, so an EtherType-bound port's
//! sockets join groups `group`, `group + 1`, ... (one per EtherType). [`FanoutMode::Hash`] spreads by flow hash; [`FanoutMode::Cbpf`] runs
//! a classic BPF program whose return value (modulo the member count) picks the worker.
//! [`Steering`] builds the router's program: `worker = (port / BLOCK) % N`, where `port` is the
//! TCP/UDP source port on a LAN interface or destination port on a WAN interface (ICMP echo
//! request / reply identifiers likewise; ICMP errors by the packet they carry; port forwards and
//! hairpin traffic by the port their flows live with), so both directions of a NAT flow land on
//! the worker that owns its port block. [`Steering::worker`] computes the same choice in Rust. Fanout members
//! use `PACKET_FANOUT_FLAG_IGNORE_OUTGOING` (per-socket `PACKET_IGNORE_OUTGOING` does not work in a
//! group), and outgoing frames are dropped defensively anyway.
//!
//! # Kernel offload of established flows
//!
//! [`ebpf`] loads (with aya, from C compiled into a committed object) a tc (tcx ingress) program
//! that forwards offloaded flows inside the kernel (GSO super-frames whole, no copies); user
//! space installs one map entry per flow and direction. EtherType-bound ports never see those
//! frames; for an `ETH_P_ALL` tap, which sees them first, a socket filter doing the same lookup
//! keeps them out of its ring.
//!
//! # Also here
//!
//! [`thread`] lets one worker wake another ([`Notifier`], [`wait_ports`]) and waits on ports ([`wait_any`]). [`host::inspect`] reports what the host configured on an interface (addresses, forwarding and
//! IPv6 sysctls, MTU, MAC, link, offloads); [`netns::enter`] moves a thread into a named network
//! namespace; [`cpu::pin_current_thread`] pins a worker; [`mem::prefer_huge_pages`] backs the flow table with huge pages; [`PnetPort`] is a portable, slow fallback with the same shape as [`Port`].

pub mod bpf;
pub mod cpu;
pub mod ebpf;
mod error;
mod frame;
pub mod geometry;
pub mod host;
pub mod mem;
pub mod netns;
mod pnet_port;
mod port;
mod ring;
pub mod steering;
mod sys;
pub mod thread;
mod vnet;

pub use bpf::{BpfInsn, BpfProgram};
pub use error::{IoError, errno_name};
pub use frame::{FrameMeta, PacketType, RxBatch, RxFrame, TxFrame, TxOutcome, VlanTag};
pub use geometry::{RingGeometry, RingVersion};
pub use pnet_port::{PnetPort, PnetReceiver, PnetSender, wait_pnet_ports};
pub use port::{
    AUX_RING_BYTES, DEFAULT_RING_BYTES, DEFAULT_SPILL_FRAMES, DEFAULT_SPILL_RCVBUF, ETH_P_ARP,
    ETH_P_IP, ETH_P_IPV6, Fanout, FanoutMode, GSO_MAX_FRAME, Port, PortConfig, PortStats, Receiver,
    RxBind, RxMode, Sender, TxMode,
};
pub use steering::{ForwardSteer, OtherTraffic, Side, Steering};
pub use thread::{Notifier, wait_any, wait_ports};
pub use vnet::{GsoType, VNET_HDR_LEN, VnetHdr};
