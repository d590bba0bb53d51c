//! What a pipeline is built from: ports ([`PortSpec`]), gateways ([`GatewaySpec`]), port
//! forwards and [`Options`], gathered in a [`PipelineConfig`], and why [`Context::new`](super::Context::new)
//! may refuse one ([`PipelineError`]).

use core::net::Ipv4Addr;

use altroute_flow::{GatewaySet, Prefix};

use super::MAX_PORTS;
use crate::wire::MacAddr;

/// A port of the router: a (link, VLAN) pair with a role and addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortId(pub u8);

/// Which side of the router a port is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Inside: hosts being translated.
    Lan,
    /// Outside: an ISP link.
    Wan,
}

/// One port's configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct PortSpec {
    /// Name, for counters and logs.
    pub name: String,
    /// LAN or WAN.
    pub role: Role,
    /// The I/O link (interface) it lives on, as numbered by the caller.
    pub link: u8,
    /// The 802.1Q VLAN id of the port, if it is a VLAN sub-interface.
    pub vlan: Option<u16>,
    /// The port's MAC address.
    pub mac: MacAddr,
    /// The router's own addresses on this port, with their prefixes (attached networks).
    pub addrs: Vec<(Ipv4Addr, u8)>,
    /// IP MTU of the port.
    pub mtu: u16,
}

/// One gateway: the pipeline's side of an [`altroute_flow::Gateway`] with the same index.
#[derive(Clone, Debug, PartialEq)]
pub struct GatewaySpec {
    /// The WAN port it is reached through.
    pub port: PortId,
    /// Its IPv4 address (the next hop).
    pub next_hop: Ipv4Addr,
    /// A static MAC; `None` resolves it by ARP.
    pub mac: Option<MacAddr>,
}

/// A port forward: connections to `port` on the listed gateways' addresses go to `to`.
#[derive(Clone, Debug, PartialEq)]
pub struct PortForward {
    /// TCP or UDP.
    pub proto: u8,
    /// The external port.
    pub port: u16,
    /// The inside address and port.
    pub to: (Ipv4Addr, u16),
    /// The gateways (links) it is open on.
    pub gateways: GatewaySet,
}

/// Pipeline settings.
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    /// Verify incoming IPv4 header checksums (drop `ipv4_bad_checksum`).
    pub verify_ipv4_checksum: bool,
    /// Answer packets of flows whose gateway died with a TCP RST or ICMP prohibited (else drop).
    pub reject: bool,
    /// ICMP errors the router may send per second (time exceeded, fragmentation needed, prohibited).
    pub icmp_errors_per_sec: u32,
    /// Echo requests to a WAN address the router answers per second (more are dropped as
    /// `echo_rate_limited`: a ping flood from the Internet costs a bounded share of a worker). The
    /// LAN side is not limited.
    pub wan_echo_replies_per_sec: u32,
    /// Destinations never sent out a WAN (RFC 1918, loopback, link-local, multicast, ...).
    pub private_destinations: Vec<Prefix>,
    /// The health probes' targets: an echo reply with a probe identifier goes to the control
    /// thread only from one of them (anything else is `unsolicited`), so a flood of forged
    /// replies cannot crowd the real ones out of its queue. Empty: from any source.
    pub probe_targets: Vec<Ipv4Addr>,
    /// New or changed neighbours learned on LAN ports that are shared with the other workers
    /// (through the control thread) per second; a flood of forged ARP or MACs from the LAN is
    /// learned by the worker that sees it but not passed on beyond this. ARP from WAN ports goes
    /// to the control thread whole, not limited.
    pub lan_learned_shared_per_sec: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            verify_ipv4_checksum: true,
            reject: true,
            icmp_errors_per_sec: 100,
            wan_echo_replies_per_sec: 100,
            private_destinations: default_private(),
            probe_targets: Vec::new(),
            lan_learned_shared_per_sec: 200,
        }
    }
}

/// The default private destinations: RFC 1918, shared space (RFC 6598), loopback, link-local,
/// multicast, reserved and "this network". The documentation ranges are not in it.
pub fn default_private() -> Vec<Prefix> {
    [
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "0.0.0.0/8",
    ]
    .iter()
    .filter_map(|s| s.parse().ok())
    .collect()
}

/// Everything the pipeline is built from (besides the flow table).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct PipelineConfig {
    /// Ports, indexed by [`PortId`].
    pub ports: Vec<PortSpec>,
    /// Gateways, indexed like the flow table's.
    pub gateways: Vec<GatewaySpec>,
    /// Port forwards.
    pub port_forwards: Vec<PortForward>,
    /// Settings.
    pub options: Options,
}

/// Why a pipeline configuration was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PipelineError {
    /// Too many ports.
    #[error("{0} ports: at most {MAX_PORTS}")]
    TooManyPorts(usize),
    /// A gateway names a port that does not exist or is not a WAN.
    #[error("gateway {gateway} uses port {port}, which is not a WAN port")]
    BadGatewayPort {
        /// Gateway index.
        gateway: usize,
        /// Port index.
        port: u8,
    },
    /// The flow table's gateways and the pipeline's differ in number.
    #[error("the flow table has {table} gateways, the pipeline {pipeline}")]
    GatewayCount {
        /// In the table.
        table: usize,
        /// In the pipeline.
        pipeline: usize,
    },
    /// Two ports on the same link and VLAN.
    #[error("ports {a} and {b} are on the same link and VLAN")]
    DuplicatePort {
        /// First port.
        a: String,
        /// Second port.
        b: String,
    },
    /// A port forward's external port is in use.
    #[error("port forward {proto}/{port}: {reason}")]
    PortForward {
        /// Protocol.
        proto: u8,
        /// Port.
        port: u16,
        /// Why.
        reason: String,
    },
}
