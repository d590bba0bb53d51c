//! The control plane's view of the table: flow snapshots ([`FlowInfo`]), the full and the
//! incremental sweep, and [`FlowTable::explain`] (which gateway a key takes, and why).

use core::fmt;
use core::net::IpAddr;

use super::FlowTable;
use super::lookup::FlowId;
use super::slot::{FlowCounters, INBOUND, LIVE, NO_GW, NO_NAT, REPLIED, ReasonKind};
use crate::policy::{Choice, NoGateway};
use crate::tcp::TcpState;
use crate::{FlowKey, GatewayId, Time};

/// A copy of one flow's state, for the control plane and for link events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowInfo {
    /// The handle (stale once the flow is gone).
    pub id: FlowId,
    /// The key from the inside host.
    pub key: FlowKey,
    /// The key of the remote host's packets (after translation).
    pub reply_key: FlowKey,
    /// The gateway, if the flow goes through one.
    pub gateway: Option<GatewayId>,
    /// The external address and port, if translated.
    pub nat: Option<(IpAddr, u16)>,
    /// TCP state.
    pub tcp: TcpState,
    /// SYNs seen from the opener.
    pub syns: u8,
    /// Whether the remote side ever answered.
    pub replied: bool,
    /// Whether it was opened from outside (port forward).
    pub inbound: bool,
    /// How the gateway was chosen.
    pub reason: ReasonKind,
    /// Creation time, seconds since the caller's epoch.
    pub created: u32,
    /// Last packet, seconds since the caller's epoch.
    pub last_seen: u32,
    /// Counters (zero when accounting is off).
    pub counters: FlowCounters,
}

/// The answer of [`FlowTable::explain`].
#[derive(Clone, Debug, PartialEq)]
pub struct Explanation {
    /// The existing flow the key belongs to, if any.
    pub flow: Option<FlowInfo>,
    /// What selection decides for a new flow with this key now.
    pub choice: Result<Choice, NoGateway>,
    /// Gateway names, for display.
    pub names: Vec<String>,
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = |g: GatewayId| {
            self.names
                .get(g.index())
                .cloned()
                .unwrap_or_else(|| g.to_string())
        };
        if let Some(fl) = &self.flow {
            write!(f, "existing flow {}: ", fl.key)?;
            match fl.gateway {
                Some(g) => write!(f, "via {} ({:?})", name(g), fl.reason)?,
                None => write!(f, "direct")?,
            }
            if let Some((a, p)) = fl.nat {
                write!(f, ", translated to {a}:{p}")?;
            }
            write!(f, ", tcp {:?}, {} SYN(s); ", fl.tcp, fl.syns)?;
        }
        match &self.choice {
            Ok(c) => write!(f, "a new flow would take {}: {}", name(c.gateway), c.reason),
            Err(e) => write!(f, "a new flow would be refused: {e}"),
        }
    }
}

impl FlowTable {
    pub(super) fn info(&self, i: usize) -> FlowInfo {
        let s = &self.slots[i];
        FlowInfo {
            id: FlowId(i as u32),
            key: s.key(),
            reply_key: self.reply_key(s),
            gateway: (s.gateway != NO_GW).then_some(GatewayId(s.gateway)),
            nat: (s.nat_addr != NO_NAT)
                .then(|| (self.ext_addrs[usize::from(s.nat_addr)], s.nat_port)),
            tcp: s.tcp(),
            syns: s.syns,
            replied: s.has(REPLIED),
            inbound: s.has(INBOUND),
            reason: s.reason(),
            created: self.links.get(i).map_or(0, |l| l.created),
            last_seen: s.last_seen,
            counters: self
                .acct
                .get(i)
                .map_or_else(FlowCounters::default, |c| FlowCounters {
                    packets: [0, 1].map(|d| c.packets[d] + u64::from(s.hot_packets[d])),
                    bytes: [0, 1].map(|d| c.bytes[d] + u64::from(s.hot_bytes[d])),
                }),
        }
    }

    /// Part of an incremental sweep over the live flows: those in the `max` slots from slot
    /// `from` on, in slot order, and the slot the next call continues from (0 once the sweep has
    /// passed the last slot, so successive calls wrap around). For periodic control-plane work
    /// that must not hold up the packet path when the table is large (one [`FlowTable::iter`]
    /// over a million flows takes milliseconds). A flow created behind the cursor is seen on the
    /// next round.
    pub fn scan(&self, from: u32, max: usize) -> (impl Iterator<Item = FlowInfo> + '_, u32) {
        let len = self.slots.len();
        let start = (from as usize).min(len);
        let end = start.saturating_add(max).min(len);
        let next = if end >= len { 0 } else { end as u32 };
        let flows = (start..end)
            .filter(|&i| self.slots[i].has(LIVE))
            .map(|i| self.info(i));
        (flows, next)
    }

    /// Every live flow, in slot order (for the control plane: snapshots, listings, metrics).
    pub fn iter(&self) -> impl Iterator<Item = FlowInfo> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.has(LIVE))
            .map(|(i, _)| self.info(i))
    }

    /// Which gateway `key` uses or would use, and why.
    pub fn explain(&self, key: &FlowKey, now: Time) -> Explanation {
        let flow = self.lookup(key).map(|h| self.info(h.flow.0 as usize));
        let orig = flow.map_or(*key, |f| f.key);
        let choice = self.select(&orig, now);
        Explanation {
            flow,
            choice,
            names: self.cfg.gateways.iter().map(|g| g.name.clone()).collect(),
        }
    }
}
