//! Gateway health: the state machine that turns probe rounds and passive signals into gateway
//! states. Pure: it is handed the results and the time, and does no I/O (the control thread in
//! [`crate::control`] sends the probes and runs the hooks).
//!
//! Semantics (the config's `probe:` section, see `config` docs):
//! - A probe **round** sends one ICMP echo to every target through the gateway's own link; a reply
//!   later than `timeout_ms` is lost.
//! - A **target fails** when, over its last `down.rounds` rounds, loss ≥ `down.loss_pct` or (if
//!   set) mean RTT ≥ `down.rtt_ms`. A failed target **recovers** when, over its last `up.rounds`
//!   rounds, loss ≤ `up.loss_pct` and (if set) mean RTT ≤ `up.rtt_ms`. The two windows give
//!   hysteresis: a short loss burst does not flap a gateway, and recovery needs a clean run.
//! - The gateway is **up** while at least `quorum` targets are healthy (one dead target of two
//!   does not take a link down), **degraded** while it is up with some target failed, and
//!   **down** otherwise.
//! - **Failback**: a gateway coming back is held down until it has stayed healthy for
//!   `failback_stable_ms`, so a link that flickers is not handed new flows at every flicker.
//! - **Passive signal**: the flow tables count connections that fail (SYN retried or reset). A
//!   gateway whose connections are failing at the redirect ratio *and* whose probes went
//!   unanswered for the last `max(1, down.rounds / 2)` rounds (on enough targets to break the
//!   quorum) is taken down at once, without waiting for the full loss window. Half the window, and
//!   in a row: random loss (a 30 % burst) rarely loses several rounds in a row, a black-hole always
//!   does.
//! - **Operator**: a gateway can be disabled (never used) or forced (used whatever the probes
//!   say); probes keep running and are reported.

use std::collections::VecDeque;
use std::fmt;

use altroute_flow::{GatewayState, Time};

use crate::config;

/// Probe thresholds of one gateway, from the config.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// Number of targets.
    pub targets: usize,
    /// Down thresholds.
    pub down: config::Threshold,
    /// Up thresholds.
    pub up: config::Threshold,
    /// Healthy targets needed.
    pub quorum: u32,
    /// Stable time before failback, ms.
    pub failback_stable_ms: u64,
}

impl Settings {
    /// From a gateway's config.
    pub fn of(g: &config::Gateway) -> Settings {
        Settings {
            targets: g.probe_targets().len(),
            down: g.probe.down.clone(),
            up: g.probe.up.clone(),
            quorum: g.probe_quorum(),
            failback_stable_ms: u64::from(g.probe.failback_stable_ms),
        }
    }
}

#[derive(Clone, Debug, Default)]
struct Target {
    /// Latest rounds first: `Some(rtt_ms)` answered, `None` lost.
    window: VecDeque<Option<u32>>,
    failed: bool,
}

fn loss_and_rtt(w: &VecDeque<Option<u32>>, rounds: usize) -> (u32, Option<u32>) {
    let n = w.len().min(rounds);
    if n == 0 {
        return (0, None);
    }
    let lost = w.iter().take(n).filter(|r| r.is_none()).count();
    let answered: Vec<u32> = w.iter().take(n).flatten().copied().collect();
    let rtt = if answered.is_empty() {
        None
    } else {
        Some(answered.iter().sum::<u32>() / answered.len() as u32)
    };
    ((lost * 100 / n) as u32, rtt)
}

/// A state change, with its time and reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    /// The state before.
    pub from: GatewayState,
    /// The state after.
    pub to: GatewayState,
    /// When.
    pub at: Time,
    /// Why, in words.
    pub reason: String,
}

impl fmt::Display for Transition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -> {} ({})", self.from, self.to, self.reason)
    }
}

/// An operator override.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admin {
    /// Follow the probes.
    Auto,
    /// Never use the gateway.
    Disabled,
    /// Use it whatever the probes say.
    Forced,
}

/// One gateway's health.
#[derive(Clone, Debug)]
pub struct Health {
    settings: Settings,
    targets: Vec<Target>,
    /// What the probes say (before the operator override).
    probed: GatewayState,
    /// Since when the gateway has been healthy again while held down for failback.
    healthy_since: Option<Time>,
    admin: Admin,
    /// The state in force.
    state: GatewayState,
    /// When it last changed.
    since: Time,
    /// Why.
    reason: String,
}

impl Health {
    /// A gateway assumed up at `now` (traffic flows from the start; probes take it down if not).
    pub fn new(settings: Settings, admin: Admin, now: Time) -> Health {
        let targets = vec![Target::default(); settings.targets.max(1)];
        let mut h = Health {
            settings,
            targets,
            probed: GatewayState::Up,
            healthy_since: None,
            admin,
            state: GatewayState::Up,
            since: now,
            reason: "start".into(),
        };
        h.state = h.effective();
        h
    }

    /// The state in force.
    pub fn state(&self) -> GatewayState {
        self.state
    }

    /// When it last changed, and why.
    pub fn since(&self) -> (Time, &str) {
        (self.since, &self.reason)
    }

    /// Per target: failed or not.
    pub fn failed_targets(&self) -> Vec<bool> {
        self.targets.iter().map(|t| t.failed).collect()
    }

    /// The operator override in force.
    pub fn admin(&self) -> Admin {
        self.admin
    }

    /// What the probes alone say (before the operator override).
    pub fn probed(&self) -> GatewayState {
        self.probed
    }

    /// Rounds in a row, most recent first, that must have gone unanswered for the passive signal
    /// to take the gateway down: half the down window, at least one.
    pub fn passive_rounds(&self) -> usize {
        (self.settings.down.rounds as usize / 2).max(1)
    }

    /// True when the last [`Health::passive_rounds`] rounds went unanswered on so many targets
    /// that the others cannot make the quorum.
    fn probes_silent(&self) -> bool {
        let k = self.passive_rounds();
        let silent = self
            .targets
            .iter()
            .filter(|t| t.window.len() >= k && t.window.iter().take(k).all(Option::is_none))
            .count();
        let quorum = self.settings.quorum.clamp(1, self.targets.len() as u32) as usize;
        self.targets.len() - silent < quorum
    }

    fn effective(&self) -> GatewayState {
        match self.admin {
            Admin::Disabled => GatewayState::Disabled,
            Admin::Forced => GatewayState::Forced,
            Admin::Auto => self.probed,
        }
    }

    fn settle(&mut self, now: Time, reason: String) -> Option<Transition> {
        let to = self.effective();
        if to == self.state {
            return None;
        }
        let t = Transition {
            from: self.state,
            to,
            at: now,
            reason: reason.clone(),
        };
        self.state = to;
        self.since = now;
        self.reason = reason;
        Some(t)
    }

    /// New probe thresholds (a configuration reload), keeping the state in force: a gateway
    /// that is down stays down until the new thresholds bring it back. With another number of
    /// targets the per-target windows start empty (every target healthy); otherwise they are
    /// kept and judged by the new thresholds from the next round on.
    pub fn set_settings(&mut self, settings: Settings) {
        if settings.targets.max(1) != self.targets.len() {
            self.targets = vec![Target::default(); settings.targets.max(1)];
        }
        self.settings = settings;
    }

    /// Set the operator override.
    pub fn set_admin(&mut self, admin: Admin, now: Time) -> Option<Transition> {
        self.admin = admin;
        let r = match admin {
            Admin::Auto => "operator: follow the probes",
            Admin::Disabled => "operator: disabled",
            Admin::Forced => "operator: forced",
        };
        self.settle(now, r.to_string())
    }

    /// The results of one probe round, one per target: `Some(rtt_ms)` or `None` (lost).
    pub fn round(&mut self, now: Time, results: &[Option<u32>]) -> Option<Transition> {
        let keep = self
            .settings
            .down
            .rounds
            .max(self.settings.up.rounds)
            .max(1) as usize;
        let mut why = String::new();
        // Whether every healthy target also meets the up threshold now (a held-down gateway's
        // stable time restarts otherwise).
        let mut steady = true;
        for (i, t) in self.targets.iter_mut().enumerate() {
            let r = results.get(i).copied().flatten();
            t.window.push_front(r);
            t.window.truncate(keep);
            let d = &self.settings.down;
            let u = &self.settings.up;
            if t.failed {
                let (loss, rtt) = loss_and_rtt(&t.window, u.rounds as usize);
                let full = t.window.len() >= u.rounds as usize;
                if full
                    && loss <= u32::from(u.loss_pct)
                    && u.rtt_ms.is_none_or(|m| rtt.is_some_and(|x| x <= m))
                {
                    t.failed = false;
                }
            } else {
                let (loss, rtt) = loss_and_rtt(&t.window, d.rounds as usize);
                let (up_loss, up_rtt) = loss_and_rtt(&t.window, u.rounds as usize);
                if up_loss > u32::from(u.loss_pct)
                    || u.rtt_ms.is_some_and(|m| up_rtt.is_none_or(|x| x > m))
                {
                    steady = false;
                }
                let full = t.window.len() >= d.rounds as usize;
                let bad_loss = full && loss >= u32::from(d.loss_pct.max(1));
                let bad_rtt = d.rtt_ms.is_some_and(|m| rtt.is_some_and(|x| x >= m)) && full;
                if bad_loss || bad_rtt {
                    t.failed = true;
                    why = if bad_loss {
                        format!("target #{i}: {loss}% loss over {} rounds", d.rounds)
                    } else {
                        format!(
                            "target #{i}: mean RTT {} ms over {} rounds",
                            rtt.unwrap_or(0),
                            d.rounds
                        )
                    };
                }
            }
        }
        let healthy = self.targets.iter().filter(|t| !t.failed).count() as u32;
        let quorum = self.settings.quorum.clamp(1, self.targets.len() as u32);
        let ok = healthy >= quorum;
        let probed = match (self.probed, ok) {
            (GatewayState::Down, true) => {
                // Failback only after a stable period: every round since meeting the up
                // threshold (a lost probe in between starts the period again).
                let since = if steady {
                    *self.healthy_since.get_or_insert(now)
                } else {
                    self.healthy_since = None;
                    now
                };
                if steady
                    && now.millis().saturating_sub(since.millis())
                        >= self.settings.failback_stable_ms
                {
                    why = format!(
                        "{healthy}/{} targets healthy for {} ms",
                        self.targets.len(),
                        now.millis() - since.millis()
                    );
                    if healthy < self.targets.len() as u32 {
                        GatewayState::Degraded
                    } else {
                        GatewayState::Up
                    }
                } else {
                    GatewayState::Down
                }
            }
            (_, false) => {
                self.healthy_since = None;
                if why.is_empty() {
                    why = format!(
                        "{healthy}/{} targets healthy, quorum {quorum}",
                        self.targets.len()
                    );
                } else {
                    why = format!(
                        "{why}; {healthy}/{} targets healthy, quorum {quorum}",
                        self.targets.len()
                    );
                }
                GatewayState::Down
            }
            (_, true) => {
                if healthy < self.targets.len() as u32 {
                    let count = format!(
                        "{healthy}/{} targets healthy (quorum {quorum} met)",
                        self.targets.len()
                    );
                    why = if why.is_empty() {
                        count
                    } else {
                        format!("{why}; {count}")
                    };
                    GatewayState::Degraded
                } else {
                    if why.is_empty() {
                        why = "all targets healthy".into();
                    }
                    GatewayState::Up
                }
            }
        };
        self.probed = probed;
        self.settle(now, why)
    }

    /// The passive signal: the flow tables see connections through this gateway failing at the
    /// redirect ratio. With the probes also unanswered for the last [`Health::passive_rounds`]
    /// rounds (breaking the quorum), the gateway goes down now, before the loss window fills.
    pub fn passive(&mut self, now: Time, connections_failing: bool) -> Option<Transition> {
        if connections_failing && self.probed.is_usable() && self.probes_silent() {
            let k = self.passive_rounds();
            self.probed = GatewayState::Down;
            self.healthy_since = None;
            for t in &mut self.targets {
                if t.window.len() >= k && t.window.iter().take(k).all(Option::is_none) {
                    t.failed = true;
                }
            }
            return self.settle(
                now,
                format!("connections failing and probes unanswered for {k} rounds"),
            );
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(targets: usize, quorum: u32) -> Settings {
        Settings {
            targets,
            down: config::Threshold {
                loss_pct: 50,
                rtt_ms: None,
                rounds: 4,
            },
            up: config::Threshold {
                loss_pct: 0,
                rtt_ms: None,
                rounds: 4,
            },
            quorum,
            failback_stable_ms: 3000,
        }
    }

    fn at(ms: u64) -> Time {
        Time::from_millis(ms)
    }

    #[test]
    fn new_settings_keep_the_state_and_apply_from_the_next_round() {
        let mut h = Health::new(settings(1, 1), Admin::Auto, at(0));
        for i in 1..=4 {
            h.round(at(i * 500), &[None]);
        }
        assert_eq!(h.state(), GatewayState::Down);
        // Two targets now: the state stays, the windows start afresh.
        h.set_settings(settings(2, 1));
        assert_eq!(h.state(), GatewayState::Down);
        assert_eq!(h.failed_targets(), vec![false, false]);
        // One target lost for a whole window takes it down again from the next rounds on.
        let mut s = settings(1, 1);
        s.down.rounds = 1;
        let mut up = Health::new(settings(1, 1), Admin::Auto, at(0));
        up.set_settings(s);
        let tr = up
            .round(at(500), &[None])
            .expect("one lost round of one is down now");
        assert_eq!(tr.to, GatewayState::Down);
    }

    #[test]
    fn goes_down_after_the_window_and_fails_back_after_stable_time() {
        let mut h = Health::new(settings(1, 1), Admin::Auto, at(0));
        let mut t = 0;
        let mut step = |h: &mut Health, r: Option<u32>| {
            t += 500;
            h.round(at(t), &[r])
        };
        for _ in 0..4 {
            assert_eq!(step(&mut h, Some(10)), None);
        }
        assert_eq!(step(&mut h, None), None, "1 of 4 lost: 25 %");
        let tr = step(&mut h, None).expect("2 of 4 lost: 50 %: down");
        assert_eq!((tr.from, tr.to), (GatewayState::Up, GatewayState::Down));
        assert!(tr.reason.contains("50% loss"), "{}", tr.reason);
        // Answers again: the up window needs 4 clean rounds, then 3 s of stability.
        for _ in 0..3 {
            assert_eq!(step(&mut h, Some(10)), None);
        }
        let mut back = None;
        for _ in 0..12 {
            if let Some(tr) = step(&mut h, Some(10)) {
                back = Some((t, tr));
                break;
            }
        }
        let (when, tr) = back.expect("fails back");
        assert_eq!(tr.to, GatewayState::Up);
        // Healthy from the 4th clean round (t=5000), stable 3000 ms -> up at 8000.
        assert_eq!(when, 8000);
    }

    #[test]
    fn a_lost_probe_during_the_stable_time_restarts_it() {
        let mut h = Health::new(settings(1, 1), Admin::Auto, at(0));
        for i in 1..=4u64 {
            h.round(at(i * 500), &[None]);
        }
        assert_eq!(h.state(), GatewayState::Down);
        // 4 clean rounds (2500..4000): healthy from 4000, would be up at 7000.
        for i in 5..=12u64 {
            assert_eq!(h.round(at(i * 500), &[Some(5)]), None, "round {i}");
        }
        // One lost round at 6500 (not enough to fail the target again) restarts the stable time.
        assert_eq!(h.round(at(6500), &[None]), None);
        let mut up_at = None;
        for i in 14..=40u64 {
            if let Some(tr) = h.round(at(i * 500), &[Some(5)]) {
                up_at = Some((i * 500, tr.to));
                break;
            }
        }
        // The up window (4 rounds) is clean again at 8500; stable 3000 ms -> 11500.
        assert_eq!(up_at, Some((11_500, GatewayState::Up)));
    }

    #[test]
    fn short_loss_burst_does_not_flap() {
        let mut h = Health::new(settings(1, 1), Admin::Auto, at(0));
        // 30 % loss pattern: one lost in four rounds never reaches 50 % over 4 rounds.
        for i in 0..40u64 {
            let r = if i % 4 == 0 { None } else { Some(5) };
            assert_eq!(h.round(at(i * 500), &[r]), None, "round {i}");
        }
        assert_eq!(h.state(), GatewayState::Up);
    }

    #[test]
    fn quorum_keeps_a_gateway_with_one_dead_target_up() {
        let mut h = Health::new(settings(2, 1), Admin::Auto, at(0));
        let mut saw = Vec::new();
        for i in 0..20u64 {
            if let Some(tr) = h.round(at(i * 500), &[Some(5), None]) {
                saw.push(tr.to);
            }
        }
        assert_eq!(saw, vec![GatewayState::Degraded], "degraded, never down");
        assert!(h.state().is_usable());
        // Quorum 2: the same losses take it down.
        let mut h2 = Health::new(settings(2, 2), Admin::Auto, at(0));
        let downs = (0..20u64)
            .filter_map(|i| h2.round(at(i * 500), &[Some(5), None]))
            .count();
        assert_eq!(downs, 1);
        assert_eq!(h2.state(), GatewayState::Down);
    }

    #[test]
    fn passive_signal_needs_unanswered_probes() {
        // down.rounds 4: the passive signal needs 2 unanswered rounds in a row.
        let mut h = Health::new(settings(1, 1), Admin::Auto, at(0));
        h.round(at(500), &[Some(5)]);
        assert_eq!(h.passive(at(600), true), None, "probes answer: stay up");
        h.round(at(1000), &[None]);
        assert_eq!(
            h.passive(at(1100), true),
            None,
            "one lost round is not enough"
        );
        h.round(at(1500), &[None]);
        assert_eq!(
            h.passive(at(1600), false),
            None,
            "connections fine: stay up"
        );
        let tr = h.passive(at(1700), true).expect("down between rounds");
        assert_eq!(tr.to, GatewayState::Down);
        assert!(tr.reason.contains("connections failing"), "{}", tr.reason);
        assert_eq!(h.passive(at(1800), true), None);
        // The full window would only have said so at the 4th round.
        assert_eq!(h.state(), GatewayState::Down);
    }

    #[test]
    fn passive_signal_respects_the_quorum() {
        // Two targets, quorum 1: one silent target does not let the passive signal act.
        let mut h = Health::new(settings(2, 1), Admin::Auto, at(0));
        for i in 1..=3u64 {
            h.round(at(i * 500), &[Some(5), None]);
        }
        assert_eq!(h.passive(at(1600), true), None);
        h.round(at(2000), &[None, None]);
        assert_eq!(
            h.passive(at(2100), true),
            None,
            "one round in a row on target 0"
        );
        // Target 0 silent for 2 rounds in a row too: the quorum is broken.
        let mut s = settings(2, 1);
        s.down.rounds = 6;
        s.down.loss_pct = 100;
        let mut h = Health::new(s, Admin::Auto, at(0));
        for i in 1..=6u64 {
            h.round(at(i * 500), &[Some(5), None]);
        }
        assert_eq!(h.state(), GatewayState::Degraded);
        for i in 7..=8u64 {
            assert_eq!(h.round(at(i * 500), &[None, None]), None);
            assert_eq!(h.passive(at(i * 500 + 10), true), None, "round {i}");
        }
        assert_eq!(h.round(at(4500), &[None, None]), None);
        let tr = h
            .passive(at(4510), true)
            .expect("3 rounds in a row on both targets");
        assert_eq!(
            (tr.from, tr.to),
            (GatewayState::Degraded, GatewayState::Down)
        );
    }

    #[test]
    fn random_loss_rarely_silences_a_target_long_enough() {
        // Every other round lost (50 %): never two in a row, so the passive signal never acts,
        // and with down.loss_pct 100 the window never fails the target either.
        let mut s = settings(1, 1);
        s.down.loss_pct = 100;
        s.down.rounds = 6;
        let mut h = Health::new(s, Admin::Auto, at(0));
        for i in 0..100u64 {
            let r = if i % 2 == 0 { None } else { Some(5) };
            assert_eq!(h.round(at(i * 50), &[r]), None, "round {i}");
            assert_eq!(h.passive(at(i * 50 + 10), true), None, "round {i}");
        }
        // A black-hole: 6 rounds in a row, down at the 6th (passive at the 3rd).
        let mut downs = Vec::new();
        for i in 100..110u64 {
            if let Some(tr) = h.round(at(i * 50), &[None]) {
                downs.push((i, tr.to));
            }
        }
        assert_eq!(downs, vec![(105, GatewayState::Down)]);
    }

    #[test]
    fn operator_overrides() {
        let mut h = Health::new(settings(1, 1), Admin::Auto, at(0));
        assert_eq!(
            h.set_admin(Admin::Disabled, at(1)).unwrap().to,
            GatewayState::Disabled
        );
        for i in 0..10 {
            assert_eq!(
                h.round(at(i * 500), &[None]),
                None,
                "disabled hides probe changes"
            );
        }
        assert_eq!(
            h.set_admin(Admin::Forced, at(6000)).unwrap().to,
            GatewayState::Forced
        );
        let tr = h.set_admin(Admin::Auto, at(7000)).unwrap();
        assert_eq!(tr.to, GatewayState::Down, "probes said down meanwhile");
    }

    #[test]
    fn rtt_threshold_fails_a_slow_target() {
        let mut s = settings(1, 1);
        s.down.rtt_ms = Some(100);
        s.up.rtt_ms = Some(50);
        let mut h = Health::new(s, Admin::Auto, at(0));
        let mut last = None;
        for i in 0..4u64 {
            last = h.round(at(i * 500), &[Some(150)]).or(last);
        }
        assert_eq!(last.unwrap().to, GatewayState::Down);
    }
}
