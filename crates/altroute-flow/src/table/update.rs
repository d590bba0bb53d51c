//! Per packet: the fast path's read-only check ([`FlowTable::established`]) and accounting
//! ([`FlowTable::touch`]), the full [`FlowTable::update`] (TCP state machine, failure counting,
//! SYN-retry rotation), and accounting of packets forwarded elsewhere.

use super::FlowTable;
use super::lookup::{Dir, FlowId, Hit};
use super::slot::{
    FAIL_COUNTED, FIN_ORIG, FIN_REPLY, FlowRef, INBOUND, LIVE, NO_GW, NONE, OVERRIDE, REJECT,
    REPLIED, ReasonKind, count,
};
use crate::tcp::{TcpState, flags as tcpf};
use crate::{GatewayId, Time, policy, proto};

/// What [`FlowTable::update`] found and did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Update {
    /// Carry on: rewrite with the flow's current mapping.
    Forward,
    /// SYN-retry rotation moved the connection (and its NAT mapping) to another gateway before this
    /// packet: rewrite with the new mapping.
    Rotated {
        /// The gateway it left.
        from: GatewayId,
        /// The gateway it now uses.
        to: GatewayId,
    },
    /// The flow's gateway went down while the flow was active: answer the sender with a TCP RST or
    /// ICMP prohibited, then [`FlowTable::remove`] the flow so the next attempt starts afresh.
    Reject,
}

impl FlowTable {
    /// The packet fast path's half of [`FlowTable::update`], read only: the flow of `hit` if a
    /// packet with TCP flags `tcp_flags` is the common case (the flow is live and not marked for
    /// reject; not TCP, or an established TCP connection and no SYN, FIN or RST), for which
    /// `update` would only account it and return [`Update::Forward`]. `None` means: call
    /// `update` (nothing was changed). The caller makes its own checks on the returned view, then
    /// calls [`FlowTable::touch`] to account the packet.
    #[inline]
    pub fn established(&self, hit: Hit, tcp_flags: u8) -> Option<FlowRef<'_>> {
        let s = self.slots.get(hit.flow.0 as usize)?;
        if s.flags & (LIVE | REJECT) != LIVE {
            return None;
        }
        if s.proto() == proto::TCP
            && (tcp_flags & (tcpf::SYN | tcpf::FIN | tcpf::RST) != 0
                || s.tcp() != TcpState::Established)
        {
            return None;
        }
        Some(FlowRef { t: self, s })
    }

    /// Account a packet of `bytes` bytes on a flow that [`FlowTable::established`] accepted
    /// (for the same packet): exactly what [`FlowTable::update`] does in that case (last seen,
    /// counters, the replied mark), without the TCP state machine.
    ///
    /// (A flow's first answer may come this way. The per-source books hear of it later — when
    /// the table next looks at the flow: its expiry check, due within its embryonic timeout, or
    /// early drop — so that this stays as cheap as it was.)
    #[inline(always)]
    pub fn touch(&mut self, hit: Hit, now: Time, bytes: u32) {
        let i = hit.flow.0 as usize;
        let Some(s) = self.slots.get_mut(i) else {
            return;
        };
        // Store only what changes: most packets of a flow arrive within the second of the one
        // before, so without accounting the slot's cache line usually stays clean (no write-back
        // to memory); with it, the counters dirty this same line and no other.
        let secs = now.secs32();
        if s.last_seen != secs {
            s.last_seen = secs;
        }
        if hit.dir == Dir::Reply && s.flags & REPLIED == 0 {
            s.flags |= REPLIED;
        }
        if self.cfg.accounting {
            count(s, &mut self.acct, i, hit.dir, bytes);
        }
    }

    /// Account `packets` packets of `bytes` bytes in all, forwarded for `hit`'s flow elsewhere
    /// (by a kernel offload, say) since the last call: what `packets` calls of
    /// [`FlowTable::touch`] would do (last seen, counters, the replied mark). Nothing for 0
    /// packets, so an idle flow still expires.
    pub fn account(&mut self, hit: Hit, now: Time, packets: u64, bytes: u64) {
        if packets == 0 {
            return;
        }
        let i = hit.flow.0 as usize;
        let Some(s) = self.slots.get_mut(i) else {
            return;
        };
        s.last_seen = now.secs32();
        let reply = hit.dir == Dir::Reply;
        if reply {
            s.flags |= REPLIED;
        }
        if let Some(c) = self.acct.get_mut(i) {
            let d = hit.dir as usize;
            // Straight into the totals (the slot's small counters are for single packets).
            c.packets[d] = c.packets[d].saturating_add(packets);
            c.bytes[d] = c.bytes[d].saturating_add(bytes);
        }
        if reply {
            self.answered(i);
        }
    }

    /// Account a packet of `bytes` bytes with TCP flags `tcp_flags` (0 for other protocols) on a
    /// flow found by a lookup, advance its TCP state, and apply SYN-retry rotation.
    pub fn update(&mut self, hit: Hit, now: Time, tcp_flags: u8, bytes: u32) -> Update {
        let i = hit.flow.0 as usize;
        let Some(s) = self.slots.get_mut(i) else {
            return Update::Forward;
        };
        if !s.has(LIVE) {
            return Update::Forward;
        }
        let secs = now.secs32();
        s.last_seen = secs;
        if self.cfg.accounting {
            count(s, &mut self.acct, i, hit.dir, bytes);
        }
        if s.has(REJECT) {
            return Update::Reject;
        }
        if hit.dir == Dir::Reply {
            s.flags |= REPLIED;
            if s.listed() {
                return self.first_answer(hit, now, tcp_flags);
            }
        }
        if s.proto() != proto::TCP {
            return Update::Forward;
        }
        if tcp_flags & (tcpf::SYN | tcpf::FIN | tcpf::RST) == 0 && s.tcp() == TcpState::Established
        {
            // The common case: nothing below changes an established connection.
            return Update::Forward;
        }
        self.update_tcp(hit, now, tcp_flags)
    }

    /// [`FlowTable::update`] at a flow's first answer (once per flow, out of line): off its
    /// source's unanswered flows, then on as for any packet.
    #[cold]
    #[inline(never)]
    fn first_answer(&mut self, hit: Hit, now: Time, tcp_flags: u8) -> Update {
        let i = hit.flow.0 as usize;
        self.answered(i);
        match self.slots.get(i) {
            Some(s) if s.proto() == proto::TCP => self.update_tcp(hit, now, tcp_flags),
            _ => Update::Forward,
        }
    }

    /// The rest of [`FlowTable::update`] for a TCP segment that may change its connection's
    /// state (out of line: the common case above stays small).
    #[inline(never)]
    fn update_tcp(&mut self, hit: Hit, now: Time, tcp_flags: u8) -> Update {
        let i = hit.flow.0 as usize;
        let secs = now.secs32();
        let Some(s) = self.slots.get_mut(i) else {
            return Update::Forward;
        };
        let opener_dir = if s.has(INBOUND) {
            Dir::Reply
        } else {
            Dir::Orig
        };
        let from_opener = hit.dir == opener_dir;
        let fin_other = if hit.dir == Dir::Orig {
            s.has(FIN_REPLY)
        } else {
            s.has(FIN_ORIG)
        };
        let before = s.tcp();
        let after = before.next(from_opener, tcp_flags, fin_other);
        if tcp_flags & tcpf::FIN != 0 {
            s.flags |= if hit.dir == Dir::Orig {
                FIN_ORIG
            } else {
                FIN_REPLY
            };
        }
        if after != before {
            let old_timeout = self.timeout_of(&self.slots[i]);
            let s = &mut self.slots[i];
            s.set_tcp(after);
            let snap = *s;
            let new_timeout = self.timeout_of(&snap);
            if new_timeout < old_timeout {
                // The wheel only ever re-files later; a shorter timeout needs an earlier entry.
                self.schedule(
                    hit.flow.0,
                    snap.generation,
                    u64::from(secs) + u64::from(new_timeout),
                );
            }
        }
        let s = &mut self.slots[i];
        let is_syn = tcp_flags & (tcpf::SYN | tcpf::ACK | tcpf::RST) == tcpf::SYN;
        let outbound = !s.has(INBOUND) && s.gateway != NO_GW;
        let gw = s.gateway;
        let mut fail = false;
        let mut reopened = false;
        if from_opener && is_syn {
            if matches!(before, TcpState::TimeWait | TcpState::Closed) {
                // A new connection on a reused 4-tuple: unanswered again if it was opened from
                // the inside.
                reopened = s.has(REPLIED) && !s.has(INBOUND);
                s.syns = 0;
                s.flags &= !(REPLIED | FAIL_COUNTED | FIN_ORIG | FIN_REPLY);
            }
            s.syns = s.syns.saturating_add(1);
            if outbound && s.syns == 2 && !s.has(REPLIED) && !s.has(FAIL_COUNTED) {
                s.flags |= FAIL_COUNTED;
                fail = true;
            }
        } else if !from_opener
            && tcp_flags & tcpf::RST != 0
            && before == TcpState::SynSent
            && outbound
            && !s.has(FAIL_COUNTED)
        {
            s.flags |= FAIL_COUNTED;
            fail = true;
        }
        let syns = s.syns;
        let may_rotate = from_opener
            && is_syn
            && outbound
            && !s.has(OVERRIDE)
            && !s.has(REPLIED)
            && self.cfg.policy.syn_retry.is_some_and(|n| syns > n);
        if fail {
            self.record_fail(gw, now);
        }
        if reopened {
            self.list(i);
            // Its (embryonic) timeout is shorter than the one it was filed under.
            let snap = self.slots[i];
            let deadline = u64::from(secs) + u64::from(self.timeout_of(&snap));
            self.schedule(hit.flow.0, snap.generation, deadline);
        }
        if may_rotate {
            return self.rotate(hit.flow, now);
        }
        Update::Forward
    }

    fn window_ms(&self) -> u64 {
        self.cfg
            .policy
            .failure_redirect
            .map_or(60_000, |f| f.window_ms)
    }

    pub(super) fn record_fail(&mut self, gw: u8, now: Time) {
        let w = self.window_ms();
        if let Some(f) = self.failures.get_mut(usize::from(gw)) {
            f.record_fail(now, w);
        }
    }

    pub(super) fn record_open(&mut self, gw: u8, now: Time) {
        let w = self.window_ms();
        if let Some(f) = self.failures.get_mut(usize::from(gw)) {
            f.record_open(now, w);
        }
    }

    /// Move a flow whose SYN went unanswered to the next usable gateway, with a new NAT mapping.
    fn rotate(&mut self, id: FlowId, now: Time) -> Update {
        let i = id.0 as usize;
        let s = self.slots[i];
        let from = GatewayId(s.gateway);
        let Some(to) = policy::next_gateway(&self.cfg.gateways, from) else {
            return Update::Forward;
        };
        if to == from {
            return Update::Forward;
        }
        // Unbind from the old gateway, bind on the new one; on failure, stay.
        self.index
            .remove(self.reply_key(&s).index_hash(), (id.0 << 1) | 1);
        let src = self.links.get(i).map_or(NONE, |l| l.src);
        // The host's port limit holds unless the old mapping goes as the new one comes.
        let shared = self.mapping_shared(&s);
        let new_bind = self.nat_bind(&s.key(), to, src, shared);
        let (addr, port) = match new_bind {
            Ok(b) => b,
            Err(_) => {
                // (Counted by `nat_bind`.)
                self.index
                    .insert(self.reply_key(&s).index_hash(), (id.0 << 1) | 1);
                return Update::Forward;
            }
        };
        self.nat_unbind(&s, now, src);
        self.gw_unlink(i);
        let slot = &mut self.slots[i];
        slot.clear_scratch();
        slot.gateway = to.0;
        slot.nat_addr = addr;
        slot.nat_port = port;
        slot.set_reason(ReasonKind::SynRetry);
        slot.flags &= !FAIL_COUNTED;
        let snap = *slot;
        self.gw_link(i, to.0);
        if !self
            .index
            .insert(self.reply_key(&snap).index_hash(), (id.0 << 1) | 1)
        {
            // Cannot happen with the index sized for 3 entries per flow; be safe anyway.
            self.remove(id, now);
            return Update::Reject;
        }
        self.record_open(to.0, now);
        self.stats.syn_rotations += 1;
        self.epoch += 1;
        Update::Rotated { from, to }
    }
}
