//! Link events and the per-gateway flow lists they walk: a gateway going down or coming back
//! touches only the flows on it (or, for failback, the flows the policy now gives it).

use super::FlowTable;
use super::slot::{INBOUND, LIVE, NO_GW, NO_NAT, NONE, OVERRIDE, REJECT};
use super::view::FlowInfo;
use crate::{GatewayId, GatewayState, Time};

/// What happens to a gateway's flows when it goes down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DownAction {
    /// Release their NAT mappings and mark them, so the next packet from the inside host gets a
    /// TCP RST or ICMP prohibited and the client reconnects at once (seed 003's prohibit route).
    Reset,
    /// Leave them alone: they resume if the link comes back before they time out.
    Keep,
}

/// What happens when a gateway comes back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failback {
    /// Flows moved elsewhere stay there until they end.
    Stay,
    /// Flows that the policy now assigns to the returning gateway are removed (and rejected on
    /// their next packet), so they restart on it.
    Move,
}

impl FlowTable {
    pub(super) fn gw_link(&mut self, i: usize, gw: u8) {
        let head = self.gw_head[usize::from(gw)];
        self.links[i].gw_prev = NONE;
        self.links[i].gw_next = head;
        if head != NONE {
            self.links[head as usize].gw_prev = i as u32;
        }
        self.gw_head[usize::from(gw)] = i as u32;
        self.gw_flows[usize::from(gw)] += 1;
    }

    pub(super) fn gw_unlink(&mut self, i: usize) {
        let gateway = self.slots[i].gateway;
        if gateway == NO_GW {
            return;
        }
        let l = self.links[i];
        if l.gw_prev != NONE {
            self.links[l.gw_prev as usize].gw_next = l.gw_next;
        } else if let Some(h) = self.gw_head.get_mut(usize::from(gateway))
            && *h == i as u32
        {
            *h = l.gw_next;
        }
        if l.gw_next != NONE {
            self.links[l.gw_next as usize].gw_prev = l.gw_prev;
        }
        if let Some(c) = self.gw_flows.get_mut(usize::from(gateway)) {
            *c = c.saturating_sub(1);
        }
        self.links[i].gw_next = NONE;
        self.links[i].gw_prev = NONE;
    }

    /// Set a gateway's state without touching any flow (degraded, forced, disabled, up).
    pub fn set_gateway_state(&mut self, g: GatewayId, state: GatewayState) {
        if let Some(gw) = self.cfg.gateways.get_mut(g.index()) {
            gw.state = state;
        }
    }

    /// Gateway `g` went down: new flows avoid it at once. With [`DownAction::Reset`] its flows — and
    /// only its flows — lose their NAT mappings and are marked to be rejected on their next packet
    /// from the inside; they are returned so the caller can log them or act sooner.
    pub fn gateway_down(&mut self, g: GatewayId, now: Time, action: DownAction) -> Vec<FlowInfo> {
        self.set_gateway_state(g, GatewayState::Down);
        let mut out = Vec::new();
        let mut cur = self.gw_head.get(g.index()).copied().unwrap_or(NONE);
        while cur != NONE {
            let i = cur as usize;
            let s = self.slots[i];
            cur = self.links[i].gw_next;
            if !s.has(LIVE) || s.has(REJECT) {
                continue;
            }
            out.push(self.info(i));
            if action == DownAction::Reset {
                self.mark_reject(i, now);
            }
        }
        out
    }

    /// Gateway `g` is back: new flows return to it as the policy says. With [`Failback::Move`], the
    /// flows on other gateways that the policy now assigns to `g` are marked for reject (returned);
    /// with [`Failback::Stay`] nothing else changes.
    pub fn gateway_up(&mut self, g: GatewayId, now: Time, failback: Failback) -> Vec<FlowInfo> {
        self.set_gateway_state(g, GatewayState::Up);
        let mut out = Vec::new();
        if failback == Failback::Stay {
            return out;
        }
        for other in 0..self.cfg.gateways.len() {
            if other == g.index() {
                continue;
            }
            let mut cur = self.gw_head[other];
            while cur != NONE {
                let i = cur as usize;
                let s = self.slots[i];
                cur = self.links[i].gw_next;
                if !s.has(LIVE) || s.has(REJECT) || s.has(OVERRIDE) || s.has(INBOUND) {
                    continue;
                }
                let choice = self.select(&s.key(), now);
                if choice.is_ok_and(|c| c.gateway == g) {
                    out.push(self.info(i));
                    self.mark_reject(i, now);
                }
            }
        }
        out
    }

    /// Release a flow's NAT mapping and reply entry, and mark it to be rejected on its next packet
    /// from the inside; it is then held for `reject_hold` seconds.
    pub(super) fn mark_reject(&mut self, i: usize, now: Time) {
        let s = self.slots[i];
        self.index
            .remove(self.reply_key(&s).index_hash(), ((i as u32) << 1) | 1);
        let src = self.links.get(i).map_or(NONE, |l| l.src);
        self.nat_unbind(&s, now, src);
        self.epoch += 1;
        let slot = &mut self.slots[i];
        slot.clear_scratch();
        slot.flags |= REJECT;
        slot.nat_addr = NO_NAT;
        slot.last_seen = now.secs32();
        let generation = slot.generation;
        let deadline = now.secs() + u64::from(self.cfg.timeouts.reject_hold);
        self.schedule(i as u32, generation, deadline);
    }
}
