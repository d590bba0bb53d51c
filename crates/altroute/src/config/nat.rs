//! The `nat:`, `limits:` and `private_destinations:` sections: NAT ports and timeouts, resource
//! limits, destinations never sent out of a WAN.

use serde::{Deserialize, Serialize};

use super::types::Cidr;

/// NAT settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Nat {
    /// Inclusive NAT source-port range.
    #[serde(default = "d_port_range")]
    pub port_range: [u16; 2],
    /// Ports per block handed to a worker.
    #[serde(default = "d_port_block")]
    pub port_block: u16,
    /// Flow timeouts.
    #[serde(default)]
    pub timeouts: Timeouts,
}

impl Default for Nat {
    fn default() -> Self {
        Self {
            port_range: d_port_range(),
            port_block: d_port_block(),
            timeouts: Timeouts::default(),
        }
    }
}

/// Flow timeouts in seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    /// Established TCP (RFC 5382: at least 2 h 4 min).
    #[serde(default = "d_tcp_est")]
    pub tcp_established: u32,
    /// TCP opening/closing.
    #[serde(default = "d_tcp_trans")]
    pub tcp_transitory: u32,
    /// UDP (RFC 4787 REQ-5: at least 120).
    #[serde(default = "d_udp")]
    pub udp: u32,
    /// ICMP queries.
    #[serde(default = "d_icmp")]
    pub icmp: u32,
    /// Unanswered inbound SYN (port forwards).
    #[serde(default = "d_syn_in")]
    pub tcp_syn_inbound: u32,
    /// An outbound TCP connection whose SYN was never answered (Linux conntrack's `syn_sent`);
    /// at least 10.
    #[serde(default = "d_tcp_embryonic")]
    pub tcp_embryonic: u32,
    /// A UDP (or other) flow that never had an answer (Linux conntrack's unreplied UDP); at
    /// least 10.
    #[serde(default = "d_udp_embryonic")]
    pub udp_embryonic: u32,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            tcp_established: d_tcp_est(),
            tcp_transitory: d_tcp_trans(),
            udp: d_udp(),
            icmp: d_icmp(),
            tcp_syn_inbound: d_syn_in(),
            tcp_embryonic: d_tcp_embryonic(),
            udp_embryonic: d_udp_embryonic(),
        }
    }
}

/// Resource limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Maximum number of flows (all workers together).
    #[serde(default = "d_max_flows")]
    pub max_flows: u32,
    /// Worker threads; `None` means one per CPU, at least 2 (see [`Limits::workers`]).
    #[serde(default)]
    pub workers: Option<u16>,
    /// Most flows one LAN host may hold (all workers together); `None`: an eighth of a worker's
    /// table, at least 1,024, in each worker. A host over it is answered with ICMP "prohibited".
    #[serde(default)]
    pub flows_per_host: Option<u32>,
    /// Most NAT ports one LAN host may hold (all workers together); `None`: a quarter of each
    /// worker's share of the port range, at least 256.
    #[serde(default)]
    pub ports_per_host: Option<u32>,
}

impl Limits {
    /// Worker count with the default applied: one per CPU, at least 2 (so that what users run
    /// by default is the multi-worker datapath, whatever the machine).
    pub fn workers(&self) -> u16 {
        self.workers.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| u16::try_from(n.get()).unwrap_or(u16::MAX))
                .unwrap_or(1)
                .max(2)
        })
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_flows: d_max_flows(),
            workers: None,
            flows_per_host: None,
            ports_per_host: None,
        }
    }
}

/// The default `private_destinations`.
pub fn default_private() -> Vec<Cidr> {
    [
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "0.0.0.0/8",
        "100.64.0.0/10",
    ]
    .iter()
    .filter_map(|s| s.parse().ok())
    .collect()
}

fn d_port_range() -> [u16; 2] {
    [1024, 65535]
}
fn d_port_block() -> u16 {
    64
}
fn d_tcp_embryonic() -> u32 {
    120
}
fn d_udp_embryonic() -> u32 {
    30
}
fn d_tcp_est() -> u32 {
    7440
}
fn d_tcp_trans() -> u32 {
    240
}
fn d_udp() -> u32 {
    300
}
fn d_icmp() -> u32 {
    60
}
fn d_syn_in() -> u32 {
    6
}
fn d_max_flows() -> u32 {
    1 << 20
}
