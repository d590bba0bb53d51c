//! Taking flows out of the table: removal by the caller, and early drop of unanswered flows when
//! the table is full — the oldest of the source with the most of them first
//! ([`super::sources`]), one per new flow, in O(1) amortised.

use super::FlowTable;
use super::lookup::FlowId;
use super::slot::{INBOUND, LISTED, LIVE, NONE, REJECT, REPLIED, Slot};
use crate::Time;

/// Whether a live flow is on its source's unanswered list: opened from the inside (or direct)
/// and nothing received from the other side yet.
#[inline]
pub(super) fn unanswered(s: &Slot) -> bool {
    s.flags & (REPLIED | INBOUND) == 0
}

impl FlowTable {
    /// Remove a flow now (after a reject, or on the caller's decision). Its NAT mapping is released
    /// when no other flow shares it. Removing a flow that is already gone does nothing.
    pub fn remove(&mut self, id: FlowId, now: Time) {
        if self.unlink(id, now) {
            self.stats.removed += 1;
        }
    }

    /// Take a flow out of every structure; returns whether it was live.
    pub(super) fn unlink(&mut self, id: FlowId, now: Time) -> bool {
        let i = id.0 as usize;
        let Some(s) = self.slots.get(i).copied() else {
            return false;
        };
        if !s.has(LIVE) {
            return false;
        }
        let src = self.links.get(i).map_or(NONE, |l| l.src);
        self.index.remove(s.key().index_hash(), id.0 << 1);
        if !s.has(REJECT) {
            self.index
                .remove(self.reply_key(&s).index_hash(), (id.0 << 1) | 1);
            self.nat_unbind(&s, now, src);
        }
        self.gw_unlink(i);
        if src != NONE {
            self.sources.detach(src, id.0, s.listed());
            self.links[i].src = NONE;
        }
        let slot = &mut self.slots[i];
        slot.flags = 0;
        slot.state &= !LISTED;
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(id.0);
        self.live -= 1;
        self.epoch += 1;
        true
    }

    /// Drop the oldest unanswered flow of the source with the most unanswered flows (conntrack's
    /// early drop, but never an answered flow and never a scan). Returns whether one was dropped.
    ///
    /// A flow on the books as unanswered whose answer came by the fast path since
    /// ([`FlowTable::touch`]) is taken off them on the way, not dropped: each such flow once, so
    /// the work is O(1) per call amortised.
    pub(super) fn early_drop(&mut self, now: Time) -> bool {
        for _ in 0..=self.live {
            let Some(i) = self.sources.heaviest_oldest() else {
                return false;
            };
            let Some(s) = self.slots.get(i as usize) else {
                return false;
            };
            if s.has(LIVE) && !s.has(REPLIED) {
                let dropped = self.unlink(FlowId(i), now);
                if dropped {
                    self.stats.early_dropped += 1;
                }
                return dropped;
            }
            if !s.listed() {
                // (Cannot happen: the books and the flags agree. Stop rather than spin.)
                return false;
            }
            self.unlist(i as usize);
        }
        false
    }

    /// Put live flow `i` on its source's unanswered flows (as the newest), if it is not there.
    pub(super) fn list(&mut self, i: usize) {
        let src = self.links.get(i).map_or(NONE, |l| l.src);
        if let Some(s) = self.slots.get_mut(i)
            && src != NONE
            && !s.listed()
        {
            s.state |= LISTED;
            self.sources.push_unanswered(src, i as u32);
        }
    }

    /// Take flow `i` off its source's unanswered flows, if it is there.
    pub(super) fn unlist(&mut self, i: usize) {
        let src = self.links.get(i).map_or(NONE, |l| l.src);
        if let Some(s) = self.slots.get_mut(i)
            && s.listed()
        {
            s.state &= !LISTED;
            if src != NONE {
                self.sources.remove_unanswered(src, i as u32);
            }
        }
    }

    /// A listed flow was answered: off its source's unanswered flows. Out of line (the slow path
    /// calls it once per flow at most).
    #[inline(never)]
    pub(super) fn answered(&mut self, i: usize) {
        self.unlist(i);
    }
}
