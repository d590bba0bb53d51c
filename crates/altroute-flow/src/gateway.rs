//! Gateways as the table sees them: identity, weight, tier, state and the address NAT uses.

use core::fmt;
use core::net::IpAddr;

/// A gateway's index in the table's gateway list (0-based, at most 255 gateways; 255 is reserved).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GatewayId(pub u8);

impl GatewayId {
    /// The raw index.
    #[inline]
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

impl fmt::Display for GatewayId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "gw{}", self.0)
    }
}

/// The health state of a gateway, set by the caller (the daemon's health checker or an operator).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GatewayState {
    /// Healthy: takes new flows as the policy says.
    Up,
    /// Answering, but losing packets or slow: still takes new flows.
    Degraded,
    /// Not answering: takes no new flows.
    Down,
    /// Switched off by configuration or by an operator: takes no new flows.
    Disabled,
    /// Forced up by an operator whatever the probes say ("force DSL").
    Forced,
}

impl GatewayState {
    /// Whether new flows may use a gateway in this state.
    #[inline]
    pub fn is_usable(self) -> bool {
        matches!(
            self,
            GatewayState::Up | GatewayState::Degraded | GatewayState::Forced
        )
    }
}

impl fmt::Display for GatewayState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GatewayState::Up => "up",
            GatewayState::Degraded => "degraded",
            GatewayState::Down => "down",
            GatewayState::Disabled => "disabled",
            GatewayState::Forced => "forced",
        })
    }
}

/// One gateway (one ISP link's next hop).
#[derive(Clone, Debug, PartialEq)]
pub struct Gateway {
    /// Its name, for explanations and logs.
    pub name: String,
    /// Relative share of new flows under load balancing (0 takes none).
    pub weight: u32,
    /// Failover tier: lower tiers are preferred; a higher tier is used only when every lower one is down.
    pub tier: u8,
    /// Current state.
    pub state: GatewayState,
    /// The external address source NAT uses on this link (`None`: this link does not translate).
    pub nat_addr: Option<IpAddr>,
}

impl Gateway {
    /// An up gateway with weight 1, tier 0 and the given NAT address.
    pub fn new(name: impl Into<String>, nat_addr: Option<IpAddr>) -> Gateway {
        Gateway {
            name: name.into(),
            weight: 1,
            tier: 0,
            state: GatewayState::Up,
            nat_addr,
        }
    }

    /// The same gateway with another weight.
    pub fn weight(mut self, w: u32) -> Gateway {
        self.weight = w;
        self
    }

    /// The same gateway in another tier.
    pub fn tier(mut self, t: u8) -> Gateway {
        self.tier = t;
        self
    }
}

/// The most gateways a table holds.
pub const MAX_GATEWAYS: usize = 64;

/// A set of gateways, as a 64-bit mask (no allocation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct GatewaySet(u64);

impl GatewaySet {
    /// The empty set.
    pub const EMPTY: GatewaySet = GatewaySet(0);

    /// Add `g` (ignored beyond [`MAX_GATEWAYS`]).
    pub fn insert(&mut self, g: GatewayId) {
        if g.index() < MAX_GATEWAYS {
            self.0 |= 1 << g.0;
        }
    }

    /// Whether `g` is in the set.
    pub fn contains(self, g: GatewayId) -> bool {
        g.index() < MAX_GATEWAYS && self.0 & (1 << g.0) != 0
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The members, in order.
    pub fn iter(self) -> impl Iterator<Item = GatewayId> {
        (0..MAX_GATEWAYS as u8)
            .filter(move |i| self.0 & (1 << i) != 0)
            .map(GatewayId)
    }
}

impl fmt::Display for GatewaySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for g in self.iter() {
            if !first {
                f.write_str(",")?;
            }
            first = false;
            write!(f, "{g}")?;
        }
        Ok(())
    }
}
