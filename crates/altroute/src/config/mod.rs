//! The router's YAML configuration: typed structs, defaults, loading with precise error locations,
//! and a `validate()` pass for cross-references and value ranges.
//!
//! # YAML library
//!
//! Parsing uses [`serde_norway`], a maintained fork of `serde_yaml` with the same API.
//! `serde_yaml` itself is archived upstream (0.9.34+deprecated); `serde_yml` declares itself
//! deprecated and `noyalib` is 0.0.x. serde_norway 0.9.42 builds here and round-trips the same
//! structs, and its errors carry a line/column ([`serde_norway::Error::location`]). Key paths of
//! parse errors come from [`serde_path_to_error`]; lines of `validate()` errors come from
//! [`locate::KeyLines`], a small indentation-aware scanner of the YAML text (the `Value` tree
//! has no spans).
//!
//! Every error is a [`Diagnostic`]: WHAT is wrong, WHERE (key path such as `gateways[1].port`)
//! and the line/column in the file.
//!
//! # Schema
//!
//! Unknown keys are errors everywhere (`deny_unknown_fields`). Times are in the unit their name
//! says (`_ms`, `_s`, plain seconds for `nat.timeouts`).
//!
//! ## `ports:` (required; at least one `lan` and one `wan`)
//! | key | meaning | default |
//! |---|---|---|
//! | `name` | unique port name referenced by gateways | required |
//! | `role` | `lan` or `wan` | required |
//! | `interface` | Linux interface the datapath opens (≤ 15 chars) | required |
//! | `vlan` | 802.1Q tag handled in userspace, 1..=4094 | untagged |
//! | `addresses` | the router's own addresses on this port, as CIDR (`192.0.2.1/24`). The kernel must NOT have them (`altroute setup`). A `wan` port needs one IPv4 address (NAT source); a `lan` port needs one IPv4 address (the clients' gateway). | required |
//! | `mac` | the port's MAC | read from the interface |
//! | `mtu` | 576..=9216 | 1500 |
//!
//! ## `gateways:` (required; at least one enabled)
//! | key | meaning | default |
//! |---|---|---|
//! | `name` | unique gateway name | required |
//! | `port` | name of a `wan` port | required |
//! | `via` | next-hop IPv4; must be inside one of the port's subnets | required |
//! | `mac` | next-hop MAC | resolved by ARP |
//! | `weight` | load-balance weight, > 0 (4 and 1 give a 4:1 split) | 1 |
//! | `tier` | failover tier 0..=255, lower is preferred (used by `policy.mode: failover`) | 0 |
//! | `enabled` | `false` keeps the gateway configured but unused | true |
//! | `comment` | free text | none |
//! | `nat_address` | IPv4 source for NAT; must be one of the port's addresses | the port's first IPv4 address |
//! | `probe.targets` | IPv4 addresses pinged through this gateway | the gateway (`via`) |
//! | `probe.interval_ms` | one probe round (one echo per target) every… (≥ 10) | 500 |
//! | `probe.timeout_ms` | a reply later than this counts as lost (> 0) | 1000 |
//! | `probe.down.loss_pct` / `rtt_ms` / `rounds` | a target fails when, over the last `rounds` rounds, loss ≥ `loss_pct` or (if set) mean RTT ≥ `rtt_ms` | 50 / none / 4 |
//! | `probe.up.loss_pct` / `rtt_ms` / `rounds` | a failed target recovers when, over the last `rounds` rounds, loss ≤ `loss_pct` and (if set) mean RTT ≤ `rtt_ms`; must be stricter than `down` | 0 / none / 6 |
//! | `probe.quorum` | the gateway is up while at least this many targets are healthy (1..=number of targets) | 1 |
//! | `probe.failback_stable_ms` | a recovered gateway must stay up this long before it is preferred again | 10000 |
//! | `hooks.up` / `hooks.down` | shell command run (`sh -c`) on state change; env `ALTROUTE_GATEWAY`, `ALTROUTE_STATE` | none |
//! | `hooks.timeout_ms` | a hook still running after this is killed | 5000 |
//!
//! ## `policy:`
//! | key | meaning | default |
//! |---|---|---|
//! | `mode` | `load-balance` (every usable gateway, in proportion to its weight) or `failover` (only the best tier that has a usable gateway; weights apply inside it) | `load-balance` |
//! | `sticky` | what the hash keeps on one gateway: `flow` (5-tuple) or `source` (client address) | `flow` |
//! | `syn_retry.enabled` / `threshold` | when a client repeats a TCP SYN more than `threshold` (1..=255) times, move that connection attempt to the next gateway (rotating) | true / 2 |
//! | `failure_redirect.enabled` / `window_s` / `min_samples` / `failed_ratio` | when at least `min_samples` new connections through a gateway ended in the last `window_s` seconds and the share that failed is ≥ `failed_ratio`, new connections avoid it | true / 60 / 10 / 0.5 |
//! | `on_gateway_down` | flows of a dead gateway: `reset` (answer them with TCP RST / ICMP prohibited so clients reconnect) or `wait` (keep the mapping; packets are dropped until the gateway returns or the flow times out) | `reset` |
//! | `failback` | when a preferred gateway comes back: `stay` (existing flows stay where they are; new ones go back) or `move` (flows on a backup are reset so clients reconnect via the preferred one) | `stay` |
//! | `force` | a gateway name: every new connection uses it while it is up (manual "force DSL") | none |
//!
//! ## `rules:` (ordered; first match wins; before pins and the policy)
//! `name` (unique), `src` (CIDR), `dst` (CIDR), `proto` (`tcp|udp|icmp|any`, default `any`),
//! `dport` (`443` or `"8000-8100"`; needs `proto: tcp` or `udp`), `gateway` (name), `on_down`
//! (`fallback`: use the policy when the gateway is down; `reject`: refuse the connection with
//! ICMP prohibited; default `fallback`). At least one of `src`, `dst`, `dport`, or a `proto`
//! other than `any` is required.
//!
//! ## `pins:`
//! `client` (CIDR), `gateway` (name): connections from these clients use that gateway while it is
//! up (per-machine gateway choice). Rules take precedence over pins.
//!
//! ## `port_forwards:`
//! `proto` (`tcp|udp`), `port` (the public port), `to` (`"IP:PORT"` inside a LAN subnet),
//! `gateways` (names whose NAT address accepts the forward; default all). Replies leave through the
//! gateway the connection came in on.
//!
//! ## `nat:`
//! `port_range: [lo, hi]` (default `[1024, 65535]`); `port_block` (default 64: NAT ports are
//! handed to workers in blocks of this many; the range must hold at least one block per worker);
//! `timeouts` in seconds, each with the floor the flow table enforces: `tcp_established` 7440
//! (≥ 7440, RFC 5382 REQ-5), `tcp_transitory` 240 (≥ 240, RFC 5382 REQ-5), `udp` 300 (≥ 120,
//! RFC 4787 REQ-5), `icmp` 60 (≥ 60, RFC 5508 REQ-1), `tcp_syn_inbound` 6 (≥ 6, RFC 5382 REQ-4).
//!
//! ## `limits:`
//! `max_flows` (1..=16777216, default 1048576), `workers` (default: number of CPUs).
//!
//! At most 64 gateways (the flow table's gateway set is a 64-bit mask).
//!
//! ## `private_destinations:`
//! CIDRs never sent out of a WAN (dropped with ICMP unreachable). Default: 10/8, 172.16/12,
//! 192.168/16, 127/8, 169.254/16, 224/4, 240/4, 0/8, 100.64/10. The documentation ranges
//! (192.0.2/24, 198.51.100/24, 203.0.113/24) are deliberately not in the default.
//!
//! ## `datapath:`
//! `backend` (`af-packet|pnet`, default `af-packet`), `vnet_hdr` (default true: receive GSO
//! super-frames with their offload metadata), `rx_ring` (`v2|v2-spill|v3`, default `v2`: TPACKET_V2,
//! with `vnet_hdr` every slot sized for a 64 KiB super-frame; `v2-spill`: MTU-sized slots, larger
//! GSO super-frames spilled to the socket queue and read whole, many more small frames per MiB
//! but measured ~0.8x TCP single-stream throughput; `v3`: TPACKET_V3 blocks, up to 1 ms added
//! latency when quiet), `ring_frames` (RX ring slots per socket, a power of two; default 128 for
//! `v2` with `vnet_hdr`, 4096 for `v2-spill` with `vnet_hdr`, else 1024; ignored by `v3`),
//! `batch` (1..=1024, default 64),
//! `fanout` (`cbpf|handoff`, default `cbpf`), `verify_checksums` (default true), `udp_coalesce`
//! (default true; vnet mode only: consecutive small datagrams of one flow in a batch, atomic
//! IPv4 with DF and equal sizes, leave as one UDP GSO frame that the kernel segments back into
//! the same datagrams; only their IPv4 identification is renumbered), `offload` (`off|tc`,
//! default `tc`: established TCP and answered UDP flows that carried a few packets are forwarded
//! by a tc (tcx ingress) eBPF program in the kernel, GSO super-frames whole and uncopied; their
//! frames never reach the IPv4/ARP/IPv6-bound AF_PACKET sockets (an eBPF socket filter keeps
//! them out of the `ETH_P_ALL` tap that a link keeps when it carries a VLAN port or a port MAC
//! other than the interface's, and every link with `--kernel-ingress-drop`); the flow table stays the
//! authority; falls back to plain AF_PACKET with a warning if the programs cannot be loaded).
//!
//! ## `logging:`
//! `level`: `off|error|warn|info|debug|trace` (default `info`; `RUST_LOG` overrides).

pub mod locate;
pub mod types;
mod validate;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use serde::{Deserialize, Serialize};

pub use locate::{KeyLines, Pos};
pub use types::{Cidr, Mac, PortRange, SocketV4, ValueError};
pub use validate::Issue;

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Router ports (LAN and WAN).
    pub ports: Vec<Port>,
    /// Upstream gateways.
    pub gateways: Vec<Gateway>,
    /// Gateway selection policy.
    #[serde(default)]
    pub policy: Policy,
    /// Ordered policy-routing rules.
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// Per-client gateway pins.
    #[serde(default)]
    pub pins: Vec<Pin>,
    /// Inbound port forwards.
    #[serde(default)]
    pub port_forwards: Vec<PortForward>,
    /// NAT settings.
    #[serde(default)]
    pub nat: Nat,
    /// Resource limits.
    #[serde(default)]
    pub limits: Limits,
    /// Destinations never sent out of a WAN.
    #[serde(default = "default_private")]
    pub private_destinations: Vec<Cidr>,
    /// Packet I/O settings.
    #[serde(default)]
    pub datapath: Datapath,
    /// Logging settings.
    #[serde(default)]
    pub logging: Logging,
}

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
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Free text.
    #[serde(default)]
    pub comment: Option<String>,
    /// NAT source address; `None` means the port's first IPv4 address (see [`Config::nat_address`]).
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

/// Gateway selection mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Weighted hash over the live gateways of the best tier.
    #[default]
    LoadBalance,
    /// The first live gateway (tier, then file order).
    Failover,
}

/// What the load-balancing hash keeps together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Sticky {
    /// Each 5-tuple independently.
    #[default]
    Flow,
    /// All flows of one client address.
    Source,
}

/// What happens to flows of a gateway that went down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnGatewayDown {
    /// Reset / reject them so clients reconnect through a live gateway.
    #[default]
    Reset,
    /// Keep them; packets are dropped until the gateway returns or the flow times out.
    Wait,
}

/// What happens when a preferred gateway recovers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Failback {
    /// Existing flows stay; new flows use the preferred gateway.
    #[default]
    Stay,
    /// Flows on backups are reset so they reconnect through the preferred gateway.
    Move,
}

/// Gateway selection policy.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Load-balance or failover.
    #[serde(default)]
    pub mode: Mode,
    /// Hash key for load-balancing.
    #[serde(default)]
    pub sticky: Sticky,
    /// Duplicate-SYN failover.
    #[serde(default)]
    pub syn_retry: SynRetry,
    /// Redirect away from gateways whose connections fail.
    #[serde(default)]
    pub failure_redirect: FailureRedirect,
    /// Flows of a dead gateway.
    #[serde(default)]
    pub on_gateway_down: OnGatewayDown,
    /// Flows when a preferred gateway recovers.
    #[serde(default)]
    pub failback: Failback,
    /// Force every new connection through this gateway while it is up.
    #[serde(default)]
    pub force: Option<String>,
}

/// Duplicate-SYN failover.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SynRetry {
    /// On/off.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// SYN repeats tolerated before moving to the next gateway.
    #[serde(default = "two")]
    pub threshold: u32,
}

impl Default for SynRetry {
    fn default() -> Self {
        Self {
            enabled: true,
            threshold: 2,
        }
    }
}

/// Failure-ratio redirect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailureRedirect {
    /// On/off.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Sliding window in seconds.
    #[serde(default = "d_window")]
    pub window_s: u32,
    /// Connections needed in the window before judging.
    #[serde(default = "d_min_samples")]
    pub min_samples: u32,
    /// Failed share (0 < r ≤ 1) that triggers the redirect.
    #[serde(default = "d_ratio")]
    pub failed_ratio: f64,
}

impl Default for FailureRedirect {
    fn default() -> Self {
        Self {
            enabled: true,
            window_s: d_window(),
            min_samples: d_min_samples(),
            failed_ratio: d_ratio(),
        }
    }
}

/// Protocol selector of rules and port forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// ICMP.
    Icmp,
    /// Any protocol.
    #[default]
    Any,
}

/// What a rule does when its gateway is down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnDown {
    /// Fall back to the policy.
    #[default]
    Fallback,
    /// Refuse the connection (ICMP administratively prohibited).
    Reject,
}

/// A policy-routing rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Unique name.
    pub name: String,
    /// Source prefix.
    #[serde(default)]
    pub src: Option<Cidr>,
    /// Destination prefix.
    #[serde(default)]
    pub dst: Option<Cidr>,
    /// Protocol.
    #[serde(default)]
    pub proto: Proto,
    /// Destination port(s); TCP/UDP only.
    #[serde(default)]
    pub dport: Option<PortRange>,
    /// Gateway name.
    pub gateway: String,
    /// Behaviour when the gateway is down.
    #[serde(default)]
    pub on_down: OnDown,
}

/// A per-client gateway pin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pin {
    /// Client prefix.
    pub client: Cidr,
    /// Gateway name.
    pub gateway: String,
}

/// An inbound port forward.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortForward {
    /// `tcp` or `udp`.
    pub proto: Proto,
    /// Public port.
    pub port: u16,
    /// Internal `IP:PORT`.
    pub to: SocketV4,
    /// Gateways whose NAT address accepts it; empty means all.
    #[serde(default)]
    pub gateways: Vec<String>,
}

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
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            tcp_established: d_tcp_est(),
            tcp_transitory: d_tcp_trans(),
            udp: d_udp(),
            icmp: d_icmp(),
            tcp_syn_inbound: d_syn_in(),
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
    /// Worker threads; `None` means the number of CPUs (see [`Limits::workers`]).
    #[serde(default)]
    pub workers: Option<u16>,
}

impl Limits {
    /// Worker count with the default applied.
    pub fn workers(&self) -> u16 {
        self.workers.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| u16::try_from(n.get()).unwrap_or(u16::MAX))
                .unwrap_or(1)
        })
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_flows: d_max_flows(),
            workers: None,
        }
    }
}

/// Packet I/O backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    /// AF_PACKET rings (altroute-io).
    #[default]
    AfPacket,
    /// pnet_datalink (portable, slower).
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
    #[serde(default = "yes")]
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
    #[serde(default = "yes")]
    pub verify_checksums: bool,
    /// With `vnet_hdr`: send runs of small datagrams of one flow (atomic IPv4/UDP, equal sizes,
    /// consecutive in a batch) as one UDP GSO frame that the kernel segments again.
    #[serde(default = "yes")]
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

fn yes() -> bool {
    true
}
fn one_u32() -> u32 {
    1
}
fn two() -> u32 {
    2
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
fn d_window() -> u32 {
    60
}
fn d_min_samples() -> u32 {
    10
}
fn d_ratio() -> f64 {
    0.5
}
fn d_port_range() -> [u16; 2] {
    [1024, 65535]
}
fn d_port_block() -> u16 {
    64
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
fn d_batch() -> u16 {
    64
}
fn d_level() -> String {
    "info".to_string()
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

/// One problem in a configuration file: what, where (key path) and the line/column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Key path such as `gateways[1].port` (`.` for the document itself).
    pub path: String,
    /// 1-based line and column, when known.
    pub pos: Option<Pos>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.pos {
            Some(p) => write!(
                f,
                "line {} column {}: {}: {}",
                p.line, p.column, self.path, self.message
            ),
            None => write!(f, "{}: {}", self.path, self.message),
        }
    }
}

/// All problems found in one configuration file.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigError {
    /// File name as given (or `<string>`).
    pub file: String,
    /// The problems, in file order where known.
    pub diagnostics: Vec<Diagnostic>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for d in &self.diagnostics {
            if !first {
                writeln!(f)?;
            }
            first = false;
            match d.pos {
                Some(p) => write!(
                    f,
                    "{}:{}:{}: {}: {}",
                    self.file, p.line, p.column, d.path, d.message
                )?,
                None => write!(f, "{}: {}: {}", self.file, d.path, d.message)?,
            }
        }
        Ok(())
    }
}

impl Config {
    /// Reads, parses and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            diagnostics: vec![Diagnostic {
                path: ".".into(),
                pos: None,
                message: format!("cannot read the file: {e}"),
            }],
        })?;
        Self::from_str_named(&text, &file)
    }

    /// Parses and validates configuration text; `name` is used in error messages.
    pub fn from_str_named(text: &str, name: &str) -> Result<Config, ConfigError> {
        let lines = KeyLines::scan(text);
        let de = serde_norway::Deserializer::from_str(text);
        let cfg: Config = match serde_path_to_error::deserialize(de) {
            Ok(c) => c,
            Err(e) => {
                let path = e.path().to_string();
                let inner = e.inner();
                let pos = inner
                    .location()
                    .map(|l| Pos {
                        line: l.line(),
                        column: l.column(),
                    })
                    .or_else(|| lines.find(&path));
                let message = strip_path(&strip_location(&inner.to_string()), &path);
                return Err(ConfigError {
                    file: name.to_string(),
                    diagnostics: vec![Diagnostic { path, pos, message }],
                });
            }
        };
        match cfg.validate() {
            Ok(()) => Ok(cfg),
            Err(issues) => {
                let mut diagnostics: Vec<Diagnostic> = issues
                    .into_iter()
                    .map(|i| Diagnostic {
                        pos: lines.find(&i.path),
                        path: i.path,
                        message: i.message,
                    })
                    .collect();
                diagnostics.sort_by_key(|d| d.pos.map_or((usize::MAX, 0), |p| (p.line, p.column)));
                Err(ConfigError {
                    file: name.to_string(),
                    diagnostics,
                })
            }
        }
    }

    /// Checks cross-references and values; every problem found, each with its key path.
    pub fn validate(&self) -> Result<(), Vec<Issue>> {
        validate::validate(self)
    }

    /// Looks up a port by name.
    pub fn port(&self, name: &str) -> Option<&Port> {
        self.ports.iter().find(|p| p.name == name)
    }

    /// Looks up a gateway by name.
    pub fn gateway(&self, name: &str) -> Option<&Gateway> {
        self.gateways.iter().find(|g| g.name == name)
    }

    /// Index of a gateway in `gateways` (the id the flow table and pipeline use).
    pub fn gateway_index(&self, name: &str) -> Option<usize> {
        self.gateways.iter().position(|g| g.name == name)
    }

    /// The NAT source address of a gateway, with the default (port's first IPv4 address) applied.
    pub fn nat_address(&self, gw: &Gateway) -> Option<Ipv4Addr> {
        gw.nat_address
            .or_else(|| self.port(&gw.port).and_then(Port::first_v4))
    }

    /// Short summary used by `check-config`.
    pub fn summary(&self) -> String {
        let lan = self.ports.iter().filter(|p| p.role == Role::Lan).count();
        let wan = self.ports.len() - lan;
        let enabled = self.gateways.iter().filter(|g| g.enabled).count();
        format!(
            "{} ports ({lan} lan, {wan} wan), {} gateways ({enabled} enabled), {} rules, {} pins, {} port forwards, policy {}",
            self.ports.len(),
            self.gateways.len(),
            self.rules.len(),
            self.pins.len(),
            self.port_forwards.len(),
            match self.policy.mode {
                Mode::LoadBalance => "load-balance",
                Mode::Failover => "failover",
            }
        )
    }
}

/// Removes serde_norway's leading "path: " (the path is reported separately).
fn strip_path(msg: &str, path: &str) -> String {
    match msg.split_once(": ") {
        Some((pre, rest)) if !pre.contains(' ') && path.starts_with(pre) => rest.to_string(),
        _ => msg.to_string(),
    }
}

/// Removes serde_norway's trailing " at line N column M" (the position is reported separately).
fn strip_location(msg: &str) -> String {
    if let Some(i) = msg.rfind(" at line ") {
        let tail = &msg[i + " at line ".len()..];
        let mut parts = tail.split(' ');
        let ok = parts.next().is_some_and(|n| n.parse::<usize>().is_ok())
            && parts.next() == Some("column")
            && parts.next().is_some_and(|n| n.parse::<usize>().is_ok())
            && parts.next().is_none();
        if ok {
            return msg[..i].to_string();
        }
    }
    msg.to_string()
}

#[cfg(test)]
mod tests;
