//! Gateway selection: which gateway a new flow takes, and why.
//!
//! [`select`] is a pure function of the flow key, the gateways' states and weights, the failure
//! counters, the policy and the overrides. The order of precedence:
//!
//! 1. **Forced gateway** ("use only ISP2"), when usable.
//! 2. **Rules**, in order: the first whose source/destination prefix, protocol and destination port
//!    match. If its gateway is not usable the rule says what happens: fall through to the policy, or
//!    reject the flow.
//! 3. **Pins**: a client prefix bound to a gateway (falls through when that gateway is not usable).
//! 4. **Policy**, over the usable gateways that failure-rate redirect has not set aside:
//!    - *load balance*: weighted rendezvous hashing over all of them;
//!    - *failover*: only the lowest (best) tier that has a usable gateway, weighted rendezvous
//!      hashing inside that tier.
//!
//! Weighted rendezvous hashing gives each (flow, gateway) pair the score
//! `weight / -ln(u)` where `u ∈ (0,1)` is a hash of the flow and the gateway, and picks the highest.
//! A flow's choice depends only on its own hash, so every worker and every restart agrees; shares
//! follow the weights; and when a gateway leaves, only the flows that were on it move (each to the
//! gateway with its next-best score), so removing one of N gateways moves 1/N of the flows.
//!
//! With [`Sticky::Source`] the hash covers only the source address, so every flow of one LAN host
//! takes the same link (for services that check the client address across connections).

use core::fmt;
use core::net::IpAddr;

use crate::failure::FailureWindow;
use crate::hash::hash2;
use crate::{FlowKey, Gateway, GatewayId, GatewaySet, Prefix, Time};

/// How new flows are spread when no override applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Every usable gateway, in proportion to its weight.
    LoadBalance,
    /// Only the best (lowest-numbered) tier with a usable gateway; weights apply inside it.
    Failover,
}

/// What the load-balancing hash covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sticky {
    /// The whole flow key: each connection independently.
    Flow,
    /// The source address only: every flow of one LAN host on one link.
    Source,
}

/// Failure-rate redirect settings (seed 001).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FailureRedirect {
    /// The sliding window, in milliseconds (default 60 000).
    pub window_ms: u64,
    /// Below this many opened connections in the window, the ratio is not trusted (default 10).
    pub min_samples: u32,
    /// Failed / opened at or above which the gateway is skipped (default 0.5).
    pub failed_ratio: f32,
}

impl Default for FailureRedirect {
    fn default() -> Self {
        FailureRedirect {
            window_ms: 60_000,
            min_samples: 10,
            failed_ratio: 0.5,
        }
    }
}

/// The selection policy.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    /// Load balance or failover.
    pub mode: Mode,
    /// What the hash covers.
    pub sticky: Sticky,
    /// SYN-retry rotation: a connection whose SYN was seen more than this many times moves to the
    /// next usable gateway (seed 001's default is 2). `None` disables it.
    pub syn_retry: Option<u8>,
    /// Failure-rate redirect; `None` disables it.
    pub failure_redirect: Option<FailureRedirect>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            mode: Mode::LoadBalance,
            sticky: Sticky::Flow,
            syn_retry: Some(2),
            failure_redirect: Some(FailureRedirect::default()),
        }
    }
}

/// What a rule does when its gateway is not usable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnDown {
    /// Use the policy instead.
    Fallback,
    /// Refuse the flow (the pipeline rejects it), e.g. for traffic that must never leave by another link.
    Reject,
}

/// An ordered policy rule ("route to"): matching flows take `gateway`.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    /// A name for explanations.
    pub name: String,
    /// Source prefix to match, if any.
    pub src: Option<Prefix>,
    /// Destination prefix to match, if any.
    pub dst: Option<Prefix>,
    /// IP protocol to match, if any.
    pub proto: Option<u8>,
    /// Inclusive destination port range to match, if any.
    pub dports: Option<(u16, u16)>,
    /// The gateway.
    pub gateway: GatewayId,
    /// What happens when the gateway is not usable.
    pub on_down: OnDown,
}

impl Rule {
    /// Whether the rule matches `key`.
    pub fn matches(&self, key: &FlowKey) -> bool {
        self.src.is_none_or(|p| p.contains(key.src_ip()))
            && self.dst.is_none_or(|p| p.contains(key.dst_ip()))
            && self.proto.is_none_or(|p| p == key.proto)
            && self
                .dports
                .is_none_or(|(lo, hi)| (lo..=hi).contains(&key.dport))
    }
}

/// A per-client pin: flows from `client` take `gateway` while it is usable.
#[derive(Clone, Debug, PartialEq)]
pub struct Pin {
    /// The client address or prefix.
    pub client: Prefix,
    /// The gateway.
    pub gateway: GatewayId,
}

/// Choices that win over the policy.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Overrides {
    /// Use only this gateway while it is usable ("force DSL").
    pub forced: Option<GatewayId>,
    /// Ordered rules; the first match wins.
    pub rules: Vec<Rule>,
    /// Per-client pins.
    pub pins: Vec<Pin>,
}

/// Why a gateway was chosen.
#[derive(Clone, Debug, PartialEq)]
pub enum Reason {
    /// The operator forced this gateway.
    Forced,
    /// Rule number `index` (named `name`) matched.
    Rule {
        /// Position in the rule list.
        index: usize,
    },
    /// The client is pinned.
    Pin {
        /// The pin's prefix.
        client: Prefix,
    },
    /// The policy chose it.
    Policy {
        /// The mode.
        mode: Mode,
        /// The tier used (failover) or the lowest tier among candidates (load balance).
        tier: u8,
        /// How many usable gateways were candidates.
        candidates: usize,
        /// Gateways set aside by failure-rate redirect.
        redirected_around: GatewaySet,
        /// Whether the source address alone was hashed.
        per_source: bool,
    },
    /// SYN-retry rotation moved the connection here from `from` after `syns` SYNs.
    SynRetry {
        /// The gateway it left.
        from: GatewayId,
        /// SYNs seen when it moved.
        syns: u8,
    },
    /// The connection came in from outside on this gateway (port forward): it is answered the same way.
    Inbound,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Forced => write!(f, "forced by the operator"),
            Reason::Rule { index } => write!(f, "rule #{index} matched"),
            Reason::Pin { client } => write!(f, "client pinned by {client}"),
            Reason::Policy {
                mode,
                tier,
                candidates,
                redirected_around,
                per_source,
            } => {
                let m = match mode {
                    Mode::LoadBalance => "load balance",
                    Mode::Failover => "failover",
                };
                write!(f, "{m}: weighted rendezvous hash of the ")?;
                f.write_str(if *per_source {
                    "source address"
                } else {
                    "flow"
                })?;
                write!(f, " over {candidates} usable gateway(s) in tier {tier}")?;
                if !redirected_around.is_empty() {
                    write!(f, "; skipped for failure rate: {redirected_around}")?;
                }
                Ok(())
            }
            Reason::SynRetry { from, syns } => {
                write!(f, "SYN-retry rotation from {from} after {syns} SYNs")
            }
            Reason::Inbound => write!(
                f,
                "arrived from outside on this link (source-aware routing)"
            ),
        }
    }
}

/// A selection: the gateway and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Choice {
    /// The chosen gateway.
    pub gateway: GatewayId,
    /// Why.
    pub reason: Reason,
}

impl Choice {
    /// Whether an override (forced, rule, pin) made this choice, so SYN-retry rotation leaves it alone.
    pub fn is_override(&self) -> bool {
        matches!(
            self.reason,
            Reason::Forced | Reason::Rule { .. } | Reason::Pin { .. }
        )
    }
}

/// Why no gateway could be chosen.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NoGateway {
    /// Every gateway is down or disabled (or has weight 0).
    #[error("no usable gateway")]
    NoneUsable,
    /// A rule with `on_down: reject` matched and its gateway is not usable.
    #[error("rule #{index} matched and its gateway is not usable")]
    RuleRejects {
        /// Position of the rule.
        index: usize,
    },
}

/// Everything [`select`] reads besides the key.
#[derive(Clone, Copy)]
pub struct Inputs<'a> {
    /// All gateways, indexed by [`GatewayId`].
    pub gateways: &'a [Gateway],
    /// Failure windows, one per gateway (same order).
    pub failures: &'a [FailureWindow],
    /// The policy.
    pub policy: &'a Policy,
    /// The overrides.
    pub overrides: &'a Overrides,
    /// Now.
    pub now: Time,
}

fn usable(gws: &[Gateway], g: GatewayId) -> bool {
    gws.get(g.index()).is_some_and(|g| g.state.is_usable())
}

/// The rendezvous score of `(h, gateway)`; higher wins.
#[inline]
pub(crate) fn rendezvous_score(h: u64, g: GatewayId, weight: u32) -> f64 {
    if weight == 0 {
        return f64::NEG_INFINITY;
    }
    let x = hash2(h, u64::from(g.0) + 1);
    // u in (0, 1): 53 random bits, offset by half a step so it is never 0 or 1.
    let u = ((x >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    f64::from(weight) / -u.ln()
}

/// The policy hash of a flow: of the whole key, or of the source address alone.
pub(crate) fn policy_hash(key: &FlowKey, sticky: Sticky) -> u64 {
    match sticky {
        Sticky::Flow => key.hash64(),
        Sticky::Source => {
            let s = key.src_bytes();
            let mut a = [0u8; 8];
            let mut b = [0u8; 8];
            a.copy_from_slice(&s[..8]);
            b.copy_from_slice(&s[8..]);
            crate::hash::hash_words(&[u64::from_le_bytes(a), u64::from_le_bytes(b)], 0x5eed)
        }
    }
}

/// Whether failure-rate redirect sets gateway `g` aside now.
pub(crate) fn is_redirected(fw: &FailureWindow, fr: &FailureRedirect, now: Time) -> bool {
    let (opened, failed) = fw.totals(now, fr.window_ms);
    opened >= fr.min_samples.max(1)
        && f64::from(failed) >= f64::from(opened) * f64::from(fr.failed_ratio)
}

/// Choose the gateway for a new flow. Pure: the same inputs always give the same answer.
pub fn select(key: &FlowKey, inp: Inputs<'_>) -> Result<Choice, NoGateway> {
    let gws = inp.gateways;
    if let Some(g) = inp.overrides.forced
        && usable(gws, g)
    {
        return Ok(Choice {
            gateway: g,
            reason: Reason::Forced,
        });
    }
    for (index, r) in inp.overrides.rules.iter().enumerate() {
        if r.matches(key) {
            if usable(gws, r.gateway) {
                return Ok(Choice {
                    gateway: r.gateway,
                    reason: Reason::Rule { index },
                });
            }
            if r.on_down == OnDown::Reject {
                return Err(NoGateway::RuleRejects { index });
            }
            break;
        }
    }
    let src: IpAddr = key.src_ip();
    for p in &inp.overrides.pins {
        if p.client.contains(src) && usable(gws, p.gateway) {
            return Ok(Choice {
                gateway: p.gateway,
                reason: Reason::Pin { client: p.client },
            });
        }
    }
    select_policy(key, inp, None)
}

/// The policy step alone, optionally excluding one gateway (used by SYN-retry rotation's fallback).
pub(crate) fn select_policy(
    key: &FlowKey,
    inp: Inputs<'_>,
    exclude: Option<GatewayId>,
) -> Result<Choice, NoGateway> {
    let gws = inp.gateways;
    let policy = inp.policy;
    let live = |i: usize, g: &Gateway| {
        g.state.is_usable() && g.weight > 0 && Some(i) != exclude.map(|e| e.index())
    };
    // Failure-rate redirect: set aside gateways failing too often, unless that leaves nothing.
    let mut redirected = GatewaySet::EMPTY;
    if let Some(fr) = &policy.failure_redirect {
        for (i, g) in gws.iter().enumerate() {
            if live(i, g)
                && inp
                    .failures
                    .get(i)
                    .is_some_and(|w| is_redirected(w, fr, inp.now))
            {
                redirected.insert(GatewayId(i as u8));
            }
        }
    }
    let mut candidates = gws
        .iter()
        .enumerate()
        .filter(|(i, g)| live(*i, g) && !redirected.contains(GatewayId(*i as u8)))
        .count();
    if candidates == 0 {
        redirected = GatewaySet::EMPTY;
        candidates = gws.iter().enumerate().filter(|(i, g)| live(*i, g)).count();
    }
    if candidates == 0 {
        return Err(NoGateway::NoneUsable);
    }
    let eligible = |i: usize, g: &Gateway| live(i, g) && !redirected.contains(GatewayId(i as u8));
    let best_tier = gws
        .iter()
        .enumerate()
        .filter(|(i, g)| eligible(*i, g))
        .map(|(_, g)| g.tier)
        .min()
        .unwrap_or(0);
    let h = policy_hash(key, policy.sticky);
    let mut best: Option<(f64, usize)> = None;
    let mut n = 0;
    for (i, g) in gws.iter().enumerate() {
        if !eligible(i, g) || (policy.mode == Mode::Failover && g.tier != best_tier) {
            continue;
        }
        n += 1;
        let s = rendezvous_score(h, GatewayId(i as u8), g.weight);
        if best.is_none_or(|(bs, _)| s > bs) {
            best = Some((s, i));
        }
    }
    let (_, i) = best.ok_or(NoGateway::NoneUsable)?;
    Ok(Choice {
        gateway: GatewayId(i as u8),
        reason: Reason::Policy {
            mode: policy.mode,
            tier: best_tier,
            candidates: n,
            redirected_around: redirected,
            per_source: policy.sticky == Sticky::Source,
        },
    })
}

/// SYN-retry rotation: the next usable gateway after `current` in list order, wrapping around
/// (seed 001: "for each attempt after the 2nd, we rotate the gateway through the list").
/// In failover mode the rotation stays within usable gateways of any tier, in list order.
pub(crate) fn next_gateway(gws: &[Gateway], current: GatewayId) -> Option<GatewayId> {
    let n = gws.len();
    (1..n)
        .map(|d| (current.index() + d) % n)
        .find(|&i| gws[i].state.is_usable() && gws[i].weight > 0)
        .map(|i| GatewayId(i as u8))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{GatewayState, proto};
    use core::net::Ipv4Addr;

    fn key(i: u32) -> FlowKey {
        FlowKey::v4(
            Ipv4Addr::from(0x0a00_0000 | (i >> 16)),
            Ipv4Addr::new(203, 0, 113, 10),
            proto::TCP,
            (i & 0xffff) as u16,
            443,
        )
    }

    fn gws(weights: &[u32]) -> Vec<Gateway> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &w)| Gateway::new(format!("isp{}", i + 1), None).weight(w))
            .collect()
    }

    fn pick(k: &FlowKey, g: &[Gateway], p: &Policy, o: &Overrides) -> Result<Choice, NoGateway> {
        let f = vec![FailureWindow::default(); g.len()];
        select(
            k,
            Inputs {
                gateways: g,
                failures: &f,
                policy: p,
                overrides: o,
                now: Time::ZERO,
            },
        )
    }

    #[test]
    fn weighted_shares() {
        let g = gws(&[4, 1]);
        let p = Policy::default();
        let o = Overrides::default();
        let n = 50_000;
        let on0 = (0..n)
            .filter(|&i| pick(&key(i), &g, &p, &o).unwrap().gateway == GatewayId(0))
            .count();
        let share = on0 as f64 / f64::from(n);
        assert!((share - 0.8).abs() < 0.02, "share {share}");
    }

    #[test]
    fn failover_uses_best_live_tier() {
        let mut g = gws(&[1, 1, 1]);
        g[0].tier = 0;
        g[1].tier = 1;
        g[2].tier = 1;
        let p = Policy {
            mode: Mode::Failover,
            ..Policy::default()
        };
        let o = Overrides::default();
        for i in 0..100 {
            assert_eq!(pick(&key(i), &g, &p, &o).unwrap().gateway, GatewayId(0));
        }
        g[0].state = GatewayState::Down;
        let mut seen = [0; 3];
        for i in 0..1000 {
            seen[pick(&key(i), &g, &p, &o).unwrap().gateway.index()] += 1;
        }
        assert_eq!(seen[0], 0);
        assert!(seen[1] > 400 && seen[2] > 400, "{seen:?}");
        g[1].state = GatewayState::Down;
        g[2].state = GatewayState::Disabled;
        assert_eq!(pick(&key(1), &g, &p, &o), Err(NoGateway::NoneUsable));
    }

    #[test]
    fn overrides_win_in_order() {
        let g = gws(&[1, 1]);
        let p = Policy::default();
        let mut o = Overrides {
            rules: vec![Rule {
                name: "ripcord".into(),
                src: Some("10.0.0.8/29".parse().unwrap()),
                dst: None,
                proto: None,
                dports: None,
                gateway: GatewayId(1),
                on_down: OnDown::Reject,
            }],
            pins: vec![Pin {
                client: "10.0.0.0/24".parse().unwrap(),
                gateway: GatewayId(0),
            }],
            forced: None,
        };
        let rip = FlowKey::v4(
            Ipv4Addr::new(10, 0, 0, 9),
            Ipv4Addr::new(203, 0, 113, 10),
            proto::TCP,
            1,
            80,
        );
        let pinned = FlowKey::v4(
            Ipv4Addr::new(10, 0, 0, 2),
            Ipv4Addr::new(203, 0, 113, 10),
            proto::TCP,
            1,
            80,
        );
        let c = pick(&rip, &g, &p, &o).unwrap();
        assert_eq!(c.gateway, GatewayId(1));
        assert_eq!(c.reason.to_string(), "rule #0 matched");
        assert_eq!(pick(&pinned, &g, &p, &o).unwrap().gateway, GatewayId(0));
        o.forced = Some(GatewayId(1));
        assert_eq!(pick(&pinned, &g, &p, &o).unwrap().reason, Reason::Forced);
        // The rule's gateway goes down: the rule rejects.
        let mut g2 = g.clone();
        g2[1].state = GatewayState::Down;
        assert!(matches!(
            pick(&rip, &g2, &p, &o),
            Err(NoGateway::RuleRejects { .. })
        ));
        // The forced gateway is down, so the pin applies again.
        assert_eq!(pick(&pinned, &g2, &p, &o).unwrap().gateway, GatewayId(0));
    }

    #[test]
    fn per_source_stickiness() {
        let g = gws(&[1, 1, 1]);
        let p = Policy {
            sticky: Sticky::Source,
            ..Policy::default()
        };
        let o = Overrides::default();
        for host in 0..50u32 {
            let first = pick(&key(host << 16), &g, &p, &o).unwrap().gateway;
            for port in 1..20 {
                assert_eq!(
                    pick(&key(host << 16 | port), &g, &p, &o).unwrap().gateway,
                    first
                );
            }
        }
    }

    #[test]
    fn failure_redirect_sets_gateway_aside() {
        let g = gws(&[1, 1]);
        let p = Policy::default();
        let o = Overrides::default();
        let mut f = vec![FailureWindow::default(); 2];
        let now = Time::from_secs(100);
        for _ in 0..10 {
            f[0].record_open(now, 60_000);
        }
        for _ in 0..5 {
            f[0].record_fail(now, 60_000);
        }
        let inp = Inputs {
            gateways: &g,
            failures: &f,
            policy: &p,
            overrides: &o,
            now,
        };
        for i in 0..200 {
            let c = select(&key(i), inp).unwrap();
            assert_eq!(c.gateway, GatewayId(1));
        }
        // A minute later the failures have aged out and gateway 0 takes flows again.
        let later = Inputs {
            now: Time::from_secs(170),
            ..inp
        };
        assert!((0..200).any(|i| select(&key(i), later).unwrap().gateway == GatewayId(0)));
    }

    #[test]
    fn rotation_wraps_and_skips_down() {
        let mut g = gws(&[1, 1, 1]);
        assert_eq!(next_gateway(&g, GatewayId(0)), Some(GatewayId(1)));
        assert_eq!(next_gateway(&g, GatewayId(2)), Some(GatewayId(0)));
        g[1].state = GatewayState::Down;
        assert_eq!(next_gateway(&g, GatewayId(0)), Some(GatewayId(2)));
        g[2].state = GatewayState::Down;
        assert_eq!(next_gateway(&g, GatewayId(0)), None);
    }
}
