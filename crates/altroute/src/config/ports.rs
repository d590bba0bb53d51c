//! The `ports:` and `gateways:` sections: the router's ports, its upstream gateways, their health
//! probes and state-change hooks.

use std::net::{IpAddr, Ipv4Addr};

use serde::{Deserialize, Serialize};

use super::types::{self, Cidr, Mac};

/// Role of a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Faces the clients.
    Lan,
    /// Faces an ISP.
    Wan,
}

/// One router port.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Port {
    /// Unique name.
    pub name: String,
    /// LAN or WAN.
    pub role: Role,
    /// Linux interface name.
    pub interface: String,
    /// Optional 802.1Q VLAN id (1..=4094).
    #[serde(default)]
    pub vlan: Option<u16>,
    /// The router's own addresses on this port (the kernel must not have them).
    pub addresses: Vec<Cidr>,
    /// MAC address; `None` means read it from the interface.
    #[serde(default)]
    pub mac: Option<Mac>,
    /// MTU.
    #[serde(default = "default_mtu")]
    pub mtu: u16,
}

impl Port {
    /// The first IPv4 address of this port (the NAT source / clients' gateway).
    pub fn first_v4(&self) -> Option<Ipv4Addr> {
        self.addresses.iter().find_map(Cidr::addr_v4)
    }

    /// The address/prefix on this port whose subnet holds `ip` (directly attached).
    pub fn subnet_of(&self, ip: IpAddr) -> Option<&Cidr> {
        self.addresses.iter().find(|c| c.contains(ip))
    }
}

/// One upstream gateway.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gateway {
    /// Unique name.
    pub name: String,
    /// Name of the WAN port it is reached through.
    pub port: String,
    /// Next-hop IPv4 address.
    #[serde(deserialize_with = "types::ipv4")]
    pub via: Ipv4Addr,
    /// Next-hop MAC; `None` means resolve with ARP.
    #[serde(default)]
    pub mac: Option<Mac>,
    /// Load-balance weight (> 0).
    #[serde(default = "one_u32")]
    pub weight: u32,
    /// Failover tier (0..=255); lower is preferred.
    #[serde(default)]
    pub tier: u32,
    /// Whether the gateway is used at all.
    #[serde(default = "super::yes")]
    pub enabled: bool,
    /// Free text.
    #[serde(default)]
    pub comment: Option<String>,
    /// NAT source address; `None` means the port's first IPv4 address (see [`crate::config::Config::nat_address`]).
    #[serde(default, deserialize_with = "types::opt_ipv4")]
    pub nat_address: Option<Ipv4Addr>,
    /// Health probing.
    #[serde(default)]
    pub probe: Probe,
    /// Commands run on state changes.
    #[serde(default)]
    pub hooks: Hooks,
}

impl Gateway {
    /// The probe targets, with the default (the gateway itself) applied.
    pub fn probe_targets(&self) -> Vec<Ipv4Addr> {
        if self.probe.targets.is_empty() {
            vec![self.via]
        } else {
            self.probe.targets.clone()
        }
    }

    /// The quorum, with the default (1) applied.
    pub fn probe_quorum(&self) -> u32 {
        self.probe.quorum.unwrap_or(1)
    }
}

/// Health-probe settings of one gateway.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Probe {
    /// Targets; empty means the gateway itself.
    #[serde(default, deserialize_with = "types::vec_ipv4")]
    pub targets: Vec<Ipv4Addr>,
    /// Time between probe rounds.
    #[serde(default = "d_interval")]
    pub interval_ms: u32,
    /// A reply later than this is lost.
    #[serde(default = "d_timeout")]
    pub timeout_ms: u32,
    /// When a target counts as failed.
    #[serde(default = "Threshold::down")]
    pub down: Threshold,
    /// When a failed target counts as recovered.
    #[serde(default = "Threshold::up")]
    pub up: Threshold,
    /// Healthy targets needed for the gateway to be up; `None` means 1.
    #[serde(default)]
    pub quorum: Option<u32>,
    /// How long a recovered gateway must stay up before it is preferred again.
    #[serde(default = "d_failback")]
    pub failback_stable_ms: u32,
}

impl Default for Probe {
    fn default() -> Self {
        Self {
            targets: Vec::new(),
            interval_ms: d_interval(),
            timeout_ms: d_timeout(),
            down: Threshold::down(),
            up: Threshold::up(),
            quorum: None,
            failback_stable_ms: d_failback(),
        }
    }
}

/// Loss/RTT threshold over a number of probe rounds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Threshold {
    /// Loss percentage (0..=100).
    pub loss_pct: u8,
    /// Mean RTT in milliseconds; `None` means RTT is not a criterion.
    #[serde(default)]
    pub rtt_ms: Option<u32>,
    /// Window length in probe rounds (> 0).
    pub rounds: u32,
}

impl Threshold {
    /// Default `down` threshold: 50 % loss over 4 rounds.
    pub fn down() -> Self {
        Self {
            loss_pct: 50,
            rtt_ms: None,
            rounds: 4,
        }
    }
    /// Default `up` threshold: no loss over 6 rounds.
    pub fn up() -> Self {
        Self {
            loss_pct: 0,
            rtt_ms: None,
            rounds: 6,
        }
    }
}

/// Commands run when a gateway changes state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hooks {
    /// Run when the gateway comes up.
    #[serde(default)]
    pub up: Option<String>,
    /// Run when the gateway goes down.
    #[serde(default)]
    pub down: Option<String>,
    /// Kill a hook after this long.
    #[serde(default = "d_hook_timeout")]
    pub timeout_ms: u32,
}

impl Default for Hooks {
    fn default() -> Self {
        Self {
            up: None,
            down: None,
            timeout_ms: d_hook_timeout(),
        }
    }
}

fn one_u32() -> u32 {
    1
}
fn default_mtu() -> u16 {
    1500
}
fn d_interval() -> u32 {
    500
}
fn d_timeout() -> u32 {
    1000
}
fn d_failback() -> u32 {
    10_000
}
fn d_hook_timeout() -> u32 {
    5000
}
