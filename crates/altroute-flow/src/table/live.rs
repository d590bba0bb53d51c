//! Settings a running table takes without losing a flow (a configuration reload): the idle
//! timeouts. The gateways, policy and overrides have their setters beside the table
//! ([`FlowTable::set_gateways`], [`FlowTable::set_policy`], [`FlowTable::set_overrides`]).

use super::FlowTable;
use crate::{ConfigError, Timeouts};

impl FlowTable {
    /// Replace the idle timeouts (refused below their RFC floors, as at construction). A flow
    /// keeps the deadline it is filed under in the expiry wheel: a longer timeout applies when
    /// that deadline comes (the flow is re-filed), a shorter one from then on.
    pub fn set_timeouts(&mut self, t: Timeouts) -> Result<(), ConfigError> {
        t.validate()?;
        self.cfg.timeouts = t;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use core::net::Ipv4Addr;

    use crate::{FlowKey, FlowTable, Gateway, TableConfig, Time, Timeouts, proto};

    fn table() -> FlowTable {
        FlowTable::new(TableConfig {
            gateways: vec![Gateway::new("a", Some(Ipv4Addr::new(192, 0, 2, 1).into()))],
            ..TableConfig::default()
        })
        .unwrap()
    }

    #[test]
    fn timeouts_below_the_floor_are_refused_and_change_nothing() {
        let mut t = table();
        let before = t.config().timeouts;
        let bad = Timeouts {
            udp: 10,
            ..Timeouts::default()
        };
        assert!(t.set_timeouts(bad).is_err());
        assert_eq!(t.config().timeouts, before);
    }

    #[test]
    fn a_longer_udp_timeout_keeps_a_flow_past_the_old_one() {
        let mut t = table();
        let k = FlowKey::v4(
            Ipv4Addr::new(10, 0, 0, 2),
            Ipv4Addr::new(203, 0, 113, 10),
            proto::UDP,
            5000,
            53,
        );
        let (h, _) = t.insert(k, Time::from_secs(1), true, 0).unwrap();
        // Answered (an unanswered flow keeps the shorter embryonic timeout).
        let f = t.flow(h.flow).unwrap();
        let (ext, port) = f.nat().unwrap();
        let reply = FlowKey::v4(
            Ipv4Addr::new(203, 0, 113, 10),
            Ipv4Addr::new(ext[0], ext[1], ext[2], ext[3]),
            proto::UDP,
            53,
            port,
        );
        let r = t.lookup(&reply).expect("the reply's key");
        t.update(r, Time::from_secs(1), 0, 60);
        let udp = t.config().timeouts.udp;
        t.set_timeouts(Timeouts {
            udp: udp * 2,
            ..t.config().timeouts
        })
        .unwrap();
        let mut out = Vec::new();
        let mut now = Time::from_secs(1);
        for s in 2..=u64::from(udp) + 10 {
            now = Time::from_secs(s);
            t.expire(now, usize::MAX, &mut out);
        }
        assert!(out.is_empty(), "expired at the old timeout");
        assert_eq!(t.len(), 1);
        for s in now.secs()..=u64::from(udp) * 2 + 5 {
            t.expire(Time::from_secs(s), usize::MAX, &mut out);
        }
        assert_eq!(out.len(), 1, "expired at the new timeout");
    }
}
