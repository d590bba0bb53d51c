//! Idle timeouts and the timing wheel: each flow is filed once at its deadline tick, checked
//! against its real deadline when the tick comes, and either expired or re-filed.

use super::FlowTable;
use super::evict::unanswered;
use super::lookup::FlowId;
use super::slot::{FAIL_COUNTED, INBOUND, LIVE, NO_GW, REJECT, REPLIED, Slot};
use super::view::FlowInfo;
use crate::tcp::TcpState;
use crate::{Time, proto};

/// Ticks (seconds) in one turn of the wheel.
pub(super) const WHEEL: usize = 4096;

impl FlowTable {
    /// A flow's idle timeout now: by protocol and TCP state, shorter while it is unanswered
    /// (embryonic; see [`Timeouts`](crate::Timeouts)).
    pub(super) fn timeout_of(&self, s: &Slot) -> u32 {
        let t = &self.cfg.timeouts;
        if s.has(REJECT) {
            return t.reject_hold;
        }
        let embryonic = unanswered(s);
        match s.proto() {
            proto::TCP => {
                let state = match s.tcp() {
                    TcpState::Established => t.tcp_established,
                    TcpState::SynSent if s.has(INBOUND) => t.tcp_syn_inbound,
                    TcpState::None if self.cfg.tcp_loose => t.tcp_established,
                    _ => t.tcp_transitory,
                };
                if embryonic {
                    state.min(t.tcp_embryonic)
                } else {
                    state
                }
            }
            proto::ICMP | proto::ICMPV6 => t.icmp,
            p => {
                let idle = if p == proto::UDP { t.udp } else { t.other };
                if embryonic {
                    idle.min(t.udp_embryonic)
                } else {
                    idle
                }
            }
        }
    }

    pub(super) fn schedule(&mut self, id: u32, generation: u8, deadline: u64) {
        let at = deadline.max(self.tick).min(self.tick + WHEEL as u64 - 1);
        self.wheel[(at % WHEEL as u64) as usize].push((id << 8) | u32::from(generation));
    }

    /// Expire flows idle past their timeout and return cooled-down NAT ports to their pools.
    /// Examines at most `budget` wheel entries (call again if it returns false); appends each expired
    /// flow to `out`. Call it about once a second; expiry is exact to the second then, and a flow's
    /// expiry may come up to one wheel turn (4096 s) late if calls stop for longer.
    pub fn expire(&mut self, now: Time, budget: usize, out: &mut Vec<FlowInfo>) -> bool {
        let target = now.secs();
        let secs = now.secs32();
        for p in &mut self.pools {
            p.sweep(secs);
        }
        if target >= self.tick + WHEEL as u64 {
            // Calls stopped for more than a wheel turn: look at every slot once, from now on.
            self.tick = target.saturating_sub(WHEEL as u64 - 1);
        }
        let mut examined = 0;
        while self.tick <= target {
            let slot = (self.tick % WHEEL as u64) as usize;
            let mut entries = core::mem::take(&mut self.wheel[slot]);
            while let Some(e) = entries.pop() {
                if examined >= budget {
                    entries.push(e);
                    // Put back what is left, keeping what was scheduled meanwhile.
                    let added = core::mem::replace(&mut self.wheel[slot], entries);
                    self.wheel[slot].extend(added);
                    return false;
                }
                examined += 1;
                let (i, generation) = ((e >> 8) as usize, e as u8);
                let Some(s) = self.slots.get(i).copied() else {
                    continue;
                };
                if !s.has(LIVE) || s.generation != generation {
                    continue;
                }
                let deadline = u64::from(s.last_seen) + u64::from(self.timeout_of(&s));
                if deadline <= target {
                    out.push(self.info(i));
                    if s.proto() == proto::TCP
                        && s.tcp().is_opening()
                        && !s.has(REPLIED)
                        && !s.has(INBOUND)
                        && !s.has(FAIL_COUNTED)
                        && s.gateway != NO_GW
                    {
                        self.record_fail(s.gateway, now);
                    }
                    if unanswered(&s) && !s.has(REJECT) {
                        self.stats.embryonic_expired += 1;
                    }
                    self.unlink(FlowId(i as u32), now);
                    self.stats.expired += 1;
                } else {
                    if s.listed() && s.has(REPLIED) {
                        // Answered on the fast path since it was filed: off the books now.
                        self.unlist(i);
                    }
                    let at = deadline
                        .min(self.tick + WHEEL as u64 - 1)
                        .max(self.tick + 1);
                    self.wheel[(at % WHEEL as u64) as usize].push(e);
                }
            }
            // Keep the allocation for the next turn.
            let added = core::mem::replace(&mut self.wheel[slot], entries);
            self.wheel[slot].extend(added);
            self.tick += 1;
        }
        true
    }
}
