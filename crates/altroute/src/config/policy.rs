//! The `policy:`, `rules:`, `pins:` and `port_forwards:` sections: how new connections choose a
//! gateway.
//!
//! The enums here ([`Mode`], [`Sticky`], [`OnDown`], [`OnGatewayDown`], [`Failback`]) are the
//! file's spelling (serde, kebab-case) of the flow table's own types, which know nothing of
//! serde; each converts into its engine twin with `From` (the impls are in [`crate::build`], the
//! one place that maps the configuration onto the engine).

use serde::{Deserialize, Serialize};

use super::types::{Cidr, PortRange, SocketV4};

/// Gateway selection mode (`policy.mode`): the file's spelling of
/// [`altroute_flow::policy::Mode`], converted with `From`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Weighted hash over the live gateways of the best tier.
    #[default]
    LoadBalance,
    /// The first live gateway (tier, then file order).
    Failover,
    /// Every new connection takes the forced gateway (`policy.force`), whatever its probes say:
    /// the operator switches links by hand.
    Manual,
}

impl Mode {
    /// How the file spells it.
    pub fn name(self) -> &'static str {
        match self {
            Mode::LoadBalance => "load-balance",
            Mode::Failover => "failover",
            Mode::Manual => "manual",
        }
    }
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Mode, String> {
        match s {
            "load-balance" => Ok(Mode::LoadBalance),
            "failover" => Ok(Mode::Failover),
            "manual" => Ok(Mode::Manual),
            _ => Err(format!(
                "unknown mode {s:?}: expected load-balance, failover or manual"
            )),
        }
    }
}

/// What the load-balancing hash keeps together (`policy.sticky`): the file's spelling of
/// [`altroute_flow::policy::Sticky`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Sticky {
    /// Each 5-tuple independently.
    #[default]
    Flow,
    /// All flows of one client address.
    Source,
}

/// What happens to flows of a gateway that went down (`policy.on_gateway_down`): converts into
/// [`altroute_flow::DownAction`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnGatewayDown {
    /// Reset / reject them so clients reconnect through a live gateway.
    #[default]
    Reset,
    /// Keep them; packets are dropped until the gateway returns or the flow times out.
    Wait,
}

/// What happens when a preferred gateway recovers (`policy.failback`): the file's spelling of
/// [`altroute_flow::Failback`].
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
    /// Force every new connection through this gateway while it is up (in `manual` mode,
    /// whatever its probes say).
    #[serde(default)]
    pub force: Option<String>,
}

/// Duplicate-SYN failover.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SynRetry {
    /// On/off.
    #[serde(default = "super::yes")]
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
    #[serde(default = "super::yes")]
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

/// What a rule does when its gateway is down (`rules[].on_down`): the file's spelling of
/// [`altroute_flow::OnDown`].
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

fn two() -> u32 {
    2
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
