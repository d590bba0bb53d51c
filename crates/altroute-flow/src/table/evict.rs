//! Taking flows out of the table: removal by the caller, and early drop of an unanswered flow
//! when the table is full (like conntrack's).

use super::FlowTable;
use super::expiry::WHEEL;
use super::lookup::FlowId;
use super::slot::{LIVE, REJECT, REPLIED};
use crate::Time;

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
        self.index.remove(s.key().index_hash(), id.0 << 1);
        if !s.has(REJECT) {
            self.index
                .remove(self.reply_key(&s).index_hash(), (id.0 << 1) | 1);
            self.nat_unbind(&s, now);
        }
        self.gw_unlink(i);
        let slot = &mut self.slots[i];
        slot.flags = 0;
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(id.0);
        self.live -= 1;
        self.epoch += 1;
        true
    }

    /// Drop one unanswered flow, looking at the flows due soonest (like conntrack's early drop).
    pub(super) fn early_drop(&mut self, now: Time) -> bool {
        let mut examined = 0;
        let mut victim = None;
        'scan: for d in 0..WHEEL {
            let slot = (self.tick as usize + d) % WHEEL;
            for &e in &self.wheel[slot] {
                examined += 1;
                let (i, generation) = ((e >> 8) as usize, e as u8);
                if let Some(s) = self.slots.get(i)
                    && s.has(LIVE)
                    && s.generation == generation
                    && !s.has(REPLIED)
                {
                    victim = Some(i);
                    break 'scan;
                }
                if examined >= 256 {
                    break 'scan;
                }
            }
        }
        match victim {
            Some(i) => {
                self.unlink(FlowId(i as u32), now);
                self.stats.early_dropped += 1;
                true
            }
            None => false,
        }
    }
}
