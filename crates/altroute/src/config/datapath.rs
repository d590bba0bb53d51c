//! The `datapath:` and `logging:` sections: how frames are received and sent (backend, rings,
//! batches, fanout, offloads) and how much is logged.

use serde::{Deserialize, Serialize};

/// Packet I/O backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    /// AF_PACKET rings (altroute-io).
    #[default]
    AfPacket,
    /// pnet_datalink: a simple, slower fallback (one worker, no rings, no vnet header, no
    /// offload; see the module docs of `config` for what it needs).
    Pnet,
}

/// RX ring layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RxRing {
    /// TPACKET_V2; with `vnet_hdr` every slot holds a 64 KiB GSO super-frame (few slots per MiB).
    #[default]
    V2,
    /// TPACKET_V2 with MTU-sized slots; with `vnet_hdr`, frames larger than a slot (GSO
    /// super-frames) spill to the socket queue and are read whole with `recvmmsg`.
    V2Spill,
    /// TPACKET_V3 (blocks handed over when full or after a 1 ms retire timeout).
    V3,
}

/// How frames are spread over workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fanout {
    /// Kernel fanout with a classic-BPF program hashing the flow (both directions to one worker).
    #[default]
    Cbpf,
    /// One reader hands frames to workers.
    Handoff,
}

/// Kernel offload of established flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Offload {
    /// Every frame through user space.
    Off,
    /// A tc (tcx ingress) eBPF program forwards offloaded established TCP and answered UDP flows in the kernel.
    #[default]
    Tc,
}

/// Packet I/O settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Datapath {
    /// Backend.
    #[serde(default)]
    pub backend: Backend,
    /// Use PACKET_VNET_HDR (GSO super-frames + offload metadata).
    #[serde(default = "super::yes")]
    pub vnet_hdr: bool,
    /// Ring version.
    #[serde(default)]
    pub rx_ring: RxRing,
    /// RX ring slots per socket; `None`: the default of the ring layout.
    #[serde(default)]
    pub ring_frames: Option<u32>,
    /// Frames per batch.
    #[serde(default = "d_batch")]
    pub batch: u16,
    /// Worker distribution.
    #[serde(default)]
    pub fanout: Fanout,
    /// Verify checksums of received frames.
    #[serde(default = "super::yes")]
    pub verify_checksums: bool,
    /// With `vnet_hdr`: send runs of small datagrams of one flow (atomic IPv4/UDP, equal sizes,
    /// consecutive in a batch) as one UDP GSO frame that the kernel segments again.
    #[serde(default = "super::yes")]
    pub udp_coalesce: bool,
    /// Kernel offload of established flows.
    #[serde(default)]
    pub offload: Offload,
}

impl Default for Datapath {
    fn default() -> Self {
        Self {
            backend: Backend::default(),
            vnet_hdr: true,
            rx_ring: RxRing::default(),
            ring_frames: None,
            batch: d_batch(),
            fanout: Fanout::default(),
            verify_checksums: true,
            udp_coalesce: true,
            offload: Offload::Tc,
        }
    }
}

/// Logging settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Logging {
    /// `off|error|warn|info|debug|trace`.
    #[serde(default = "d_level")]
    pub level: String,
}

impl Default for Logging {
    fn default() -> Self {
        Self { level: d_level() }
    }
}

fn d_batch() -> u16 {
    64
}
fn d_level() -> String {
    "info".to_string()
}
