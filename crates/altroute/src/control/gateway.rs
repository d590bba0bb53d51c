//! The control thread's view of one gateway: where its probes go, the rounds in flight, its
//! health state machine and its hooks.

use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use altroute_flow::Time;
use altroute_packet::wire::{MacAddr, VlanTci};
use log::info;

use crate::config::{self, Config};
use crate::health::{Admin, Health, Settings, Transition};

/// While connections through a gateway are failing, probe rounds go out at least this often, so
/// that the passive signal can be confirmed (or not) without waiting for a slow probe interval.
pub const BOOST_INTERVAL: Duration = Duration::from_millis(200);
/// How long a boost lasts after the last new failure.
pub const BOOST_FOR: Duration = Duration::from_secs(3);

/// Probe rounds kept for the RTT and loss the API and the metrics report.
pub const RECENT_ROUNDS: usize = 20;

/// The operator state a gateway's health starts from: disabled by `enabled: false`; forced
/// (usable whatever its probes say) when it is `policy.force` in `manual` mode; else following
/// its probes. (`policy.force` in the other modes is the flow table's forced gateway, which
/// takes new connections only while its probes say it is usable.)
pub(super) fn admin_of(cfg: &Config, g: &config::Gateway) -> Admin {
    if !g.enabled {
        Admin::Disabled
    } else if cfg.policy.mode == config::Mode::Manual
        && cfg.policy.force.as_deref() == Some(g.name.as_str())
    {
        Admin::Forced
    } else {
        Admin::Auto
    }
}

/// One probe round in flight: its number, when it was sent, the reply time per target (ms).
pub(super) struct Round {
    pub number: u16,
    pub sent: Instant,
    pub rtt: Vec<Option<u32>>,
}

/// One gateway as the control thread tracks it.
pub(super) struct Gw {
    pub name: String,
    /// Index of its port in the configuration.
    pub port: usize,
    /// Link its probes leave on.
    pub link: u8,
    pub vlan: Option<VlanTci>,
    /// Source address of its probes (its NAT address).
    pub src: Ipv4Addr,
    pub next_hop: Ipv4Addr,
    /// The next hop's MAC: configured, or learned from ARP replies.
    pub mac: Option<MacAddr>,
    pub static_mac: bool,
    pub targets: Vec<Ipv4Addr>,
    pub interval: Duration,
    pub timeout: Duration,
    pub next_round: Instant,
    pub round: u16,
    /// Outstanding rounds.
    pub pending: Vec<Round>,
    pub health: Health,
    pub hooks: config::Hooks,
    pub last_rtt: Vec<Option<u32>>,
    /// When the gateway last answered an ARP request (it is asked every round unless its MAC is
    /// configured).
    pub arp_seen: Option<Instant>,
    /// Failed connections through this gateway in the workers' latest counts (summed).
    pub failed_seen: u64,
    /// Until when rounds are sent at least every [`BOOST_INTERVAL`] (connections are failing).
    pub boost_until: Option<Instant>,
    /// The last [`RECENT_ROUNDS`] finished rounds, latest first (per target: RTT or lost).
    pub recent: VecDeque<Vec<Option<u32>>>,
    /// Probes sent (one per target and round) and lost, since start.
    pub probes_sent: u64,
    /// Probes that went unanswered.
    pub probes_lost: u64,
}

impl Gw {
    /// Gateway `g`, the `i`-th of the configuration; `port_link` is the link of each port. The
    /// first rounds of successive gateways are staggered.
    pub fn new(cfg: &Config, i: usize, g: &config::Gateway, port_link: &[u8], t0: Time) -> Gw {
        let port = cfg.ports.iter().position(|p| p.name == g.port).unwrap_or(0);
        let admin = admin_of(cfg, g);
        let targets = g.probe_targets();
        Gw {
            name: g.name.clone(),
            port,
            link: port_link.get(port).copied().unwrap_or(0),
            vlan: cfg
                .ports
                .get(port)
                .and_then(|p| p.vlan)
                .map(VlanTci::with_id),
            src: cfg.nat_address(g).unwrap_or(Ipv4Addr::UNSPECIFIED),
            next_hop: g.via,
            mac: g.mac.map(|m| MacAddr(m.0)),
            static_mac: g.mac.is_some(),
            last_rtt: vec![None; targets.len()],
            targets,
            interval: Duration::from_millis(u64::from(g.probe.interval_ms.max(10))),
            timeout: Duration::from_millis(u64::from(g.probe.timeout_ms.max(1))),
            next_round: Instant::now() + Duration::from_millis(50 + 37 * i as u64),
            round: 0,
            pending: Vec::new(),
            health: Health::new(Settings::of(g), admin, t0),
            hooks: g.hooks.clone(),
            arp_seen: None,
            failed_seen: 0,
            boost_until: None,
            recent: VecDeque::new(),
            probes_sent: 0,
            probes_lost: 0,
        }
    }

    /// New probe settings and hooks from a reloaded configuration (the gateway's port, next hop
    /// and address do not change without a restart). The health keeps its state; a new list of
    /// targets starts a fresh record.
    pub fn reconfigure(&mut self, g: &config::Gateway) {
        let targets = g.probe_targets();
        if targets != self.targets {
            self.pending.clear();
            self.recent.clear();
            self.last_rtt = vec![None; targets.len()];
            self.targets = targets;
        }
        self.interval = Duration::from_millis(u64::from(g.probe.interval_ms.max(10)));
        self.timeout = Duration::from_millis(u64::from(g.probe.timeout_ms.max(1)));
        self.next_round = self.next_round.min(Instant::now() + self.interval);
        self.hooks = g.hooks.clone();
        self.health.set_settings(Settings::of(g));
    }

    /// Mean RTT of the answered probes over the recent rounds, in milliseconds.
    pub fn rtt_mean(&self) -> Option<f64> {
        let answered: Vec<u32> = self.recent.iter().flatten().flatten().copied().collect();
        (!answered.is_empty())
            .then(|| answered.iter().map(|&r| f64::from(r)).sum::<f64>() / answered.len() as f64)
    }

    /// Probe loss over the recent rounds, in percent (0 before the first round).
    pub fn loss_pct(&self) -> f64 {
        let all = self.recent.iter().flatten().count();
        let lost = self.recent.iter().flatten().filter(|r| r.is_none()).count();
        if all == 0 {
            0.0
        } else {
            lost as f64 * 100.0 / all as f64
        }
    }

    /// Feeds the rounds whose timeout has passed to the health state machine, oldest first;
    /// returns the transitions they caused.
    pub fn finish_rounds(&mut self, now: Instant, t: Time) -> Vec<Transition> {
        let timeout = self.timeout;
        let mut done = Vec::new();
        self.pending.retain(|r| {
            if now.duration_since(r.sent) >= timeout {
                done.push(r.rtt.clone());
                false
            } else {
                true
            }
        });
        let mut out = Vec::new();
        for res in done {
            self.last_rtt = res.clone();
            self.probes_sent += res.len() as u64;
            self.probes_lost += res.iter().filter(|r| r.is_none()).count() as u64;
            self.recent.push_front(res.clone());
            self.recent.truncate(RECENT_ROUNDS);
            if let Some(tr) = self.health.round(t, &res) {
                out.push(tr);
            }
        }
        out
    }

    /// Whether a probe round is due; if so, starts it (numbered, recorded as pending, the next
    /// one scheduled) and the caller sends its frames.
    pub fn start_round(&mut self, now: Instant) -> bool {
        if now < self.next_round {
            return false;
        }
        self.next_round = now
            + if self.is_boosted(now) {
                self.interval.min(BOOST_INTERVAL)
            } else {
                self.interval
            };
        self.round = self.round.wrapping_add(1);
        self.pending.push(Round {
            number: self.round,
            sent: now,
            rtt: vec![None; self.targets.len()],
        });
        true
    }

    /// Whether rounds go out at least every [`BOOST_INTERVAL`] now.
    pub fn is_boosted(&self, now: Instant) -> bool {
        self.boost_until.is_some_and(|b| now < b)
    }

    /// The workers now count `failed` failed connections through this gateway in all: new
    /// failures on a usable gateway boost its probing for [`BOOST_FOR`], so the probes confirm
    /// or clear the passive signal soon even with a slow interval.
    pub fn note_failures(&mut self, failed: u64, now: Instant) {
        if failed > self.failed_seen && self.health.state().is_usable() {
            if self.boost_until.is_none_or(|b| now >= b) {
                info!(
                    "gateway {}: {} new failed connection(s), probing every {} ms",
                    self.name,
                    failed - self.failed_seen,
                    self.interval.min(BOOST_INTERVAL).as_millis()
                );
            }
            self.boost_until = Some(now + BOOST_FOR);
            self.next_round = self.next_round.min(now + BOOST_INTERVAL);
        }
        self.failed_seen = failed;
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A gateway named `name` on port 0 / link 0 probing `targets`, last RTTs `[3 ms, lost]`.
    pub(in crate::control) fn gw(name: &str, targets: Vec<Ipv4Addr>) -> Gw {
        let mut g: config::Gateway =
            serde_norway::from_str(&format!("{{name: {name}, port: wan1, via: 192.0.2.2}}"))
                .unwrap();
        g.probe.targets = targets.clone();
        Gw {
            name: name.into(),
            port: 0,
            link: 0,
            vlan: None,
            src: Ipv4Addr::new(192, 0, 2, 1),
            next_hop: g.via,
            mac: None,
            static_mac: false,
            last_rtt: vec![Some(3), None],
            targets,
            interval: Duration::from_millis(100),
            timeout: Duration::from_millis(100),
            next_round: Instant::now(),
            round: 0,
            pending: Vec::new(),
            health: Health::new(Settings::of(&g), Admin::Auto, Time::from_millis(0)),
            hooks: g.hooks.clone(),
            arp_seen: Some(Instant::now()),
            failed_seen: 0,
            boost_until: None,
            recent: VecDeque::new(),
            probes_sent: 0,
            probes_lost: 0,
        }
    }

    #[test]
    fn rounds_are_started_when_due_and_finished_after_their_timeout() {
        let mut g = gw("isp1", vec![Ipv4Addr::new(203, 0, 113, 10)]);
        let t0 = Instant::now();
        g.next_round = t0;
        assert!(g.start_round(t0));
        assert!(!g.start_round(t0), "the next round waits an interval");
        assert_eq!((g.round, g.pending.len()), (1, 1));
        assert!(g.finish_rounds(t0, Time::from_millis(0)).is_empty());
        assert_eq!(g.pending.len(), 1, "not timed out yet");
        g.finish_rounds(t0 + g.timeout, Time::from_millis(100));
        assert!(g.pending.is_empty());
        assert_eq!(g.last_rtt, vec![None]);
        assert_eq!((g.probes_sent, g.probes_lost), (1, 1));
        assert_eq!(g.loss_pct(), 100.0);
        assert_eq!(g.rtt_mean(), None);
    }

    #[test]
    fn rtt_and_loss_cover_the_recent_rounds() {
        let mut g = gw("isp1", vec![Ipv4Addr::new(203, 0, 113, 10)]);
        let t0 = Instant::now();
        for (i, rtt) in [Some(10), None, Some(30), Some(20)].into_iter().enumerate() {
            g.next_round = t0;
            assert!(g.start_round(t0));
            if let Some(r) = g.pending.last_mut() {
                r.rtt[0] = rtt;
            }
            g.finish_rounds(t0 + g.timeout, Time::from_millis(i as u64));
        }
        assert_eq!((g.probes_sent, g.probes_lost), (4, 1));
        assert_eq!(g.loss_pct(), 25.0);
        assert_eq!(g.rtt_mean(), Some(20.0));
        for _ in 0..RECENT_ROUNDS {
            g.next_round = t0;
            g.start_round(t0);
            if let Some(r) = g.pending.last_mut() {
                r.rtt[0] = Some(5);
            }
            g.finish_rounds(t0 + g.timeout, Time::from_millis(9));
        }
        assert_eq!(g.loss_pct(), 0.0, "the lost round fell out of the record");
        assert_eq!(g.rtt_mean(), Some(5.0));
        assert_eq!(g.probes_lost, 1, "the totals keep it");
    }

    #[test]
    fn force_holds_a_gateway_up_only_in_manual_mode() {
        let mut cfg = Config::from_str_named(
            "ports:\n  - {name: lan, role: lan, interface: r-lan, addresses: [10.0.0.1/24]}\n  - {name: wan1, role: wan, interface: r-wan1, addresses: [192.0.2.1/24]}\ngateways:\n  - {name: isp1, port: wan1, via: 192.0.2.2}\n  - {name: isp2, port: wan1, via: 192.0.2.3, enabled: false}\npolicy: {force: isp1}\n",
            "t",
        )
        .unwrap();
        assert_eq!(admin_of(&cfg, &cfg.gateways[0]), Admin::Auto);
        assert_eq!(admin_of(&cfg, &cfg.gateways[1]), Admin::Disabled);
        cfg.policy.mode = config::Mode::Manual;
        assert_eq!(admin_of(&cfg, &cfg.gateways[0]), Admin::Forced);
    }

    #[test]
    fn new_failures_boost_probing() {
        let mut g = gw("isp1", vec![Ipv4Addr::new(203, 0, 113, 10)]);
        let now = Instant::now();
        g.interval = Duration::from_secs(5);
        g.next_round = now + g.interval;
        g.note_failures(3, now);
        assert!(g.is_boosted(now));
        assert!(g.next_round <= now + BOOST_INTERVAL);
        assert_eq!(g.failed_seen, 3);
        let mut quiet = gw("isp2", Vec::new());
        quiet.note_failures(0, now);
        assert!(!quiet.is_boosted(now));
    }
}
