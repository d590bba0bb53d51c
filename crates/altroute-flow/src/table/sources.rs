//! Per-source accounting: for each inside host, how many flows and NAT mappings it holds and which
//! of its flows were never answered — for the per-source limits and for early drop.
//!
//! A *source* is the source address of a flow's original key: the LAN host of an outbound flow,
//! the inside server of a port forward. Its record lives in a slab and is found by address through
//! a hash map, on the slow path only (creating a flow, releasing a mapping); a flow keeps its
//! record's number in its [`Links`](super::slot::Links), so removing a flow does not hash, and the
//! packet fast path never comes here. A record exists while its source holds a flow or a mapping,
//! so there are never more records than live flows (a mapping is always held by a flow).
//!
//! The *unanswered* flows of a source (opened from the inside, nothing received yet) are on a
//! doubly linked list, oldest first, through a per-slot array of 8 bytes; a slot's `LISTED` mark
//! says it is on one. Sources with unanswered flows are on lists by their number of them
//! (`by_count[c]`), so the heaviest source and its oldest unanswered flow are found in O(1), and a
//! count moving by one moves its source between two lists in O(1); the highest non-empty list
//! (`top`) only ever moves by one step.
//!
//! The packet fast path never comes here, so a flow first answered there stays listed until the
//! table next looks at it: its expiry check (due within its embryonic timeout, since it was filed
//! as unanswered), or early drop, which passes over answered flows and takes them off. Every
//! unanswered flow is listed; a listed flow may have been answered that way since.

use core::hash::{BuildHasherDefault, Hasher};
use core::net::{IpAddr, Ipv6Addr};
use std::collections::HashMap;
use std::collections::hash_map::Entry;

use crate::hash::{hash_words, hash2};
use crate::{Family, FlowKey};

/// "No record", "no slot" in the lists.
pub(super) const NIL: u32 = u32::MAX;

/// A source's address as a map key: IPv4 as an IPv4-mapped IPv6 address.
pub(super) fn addr_key(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(v) => v.to_ipv6_mapped().to_bits(),
        IpAddr::V6(v) => v.to_bits(),
    }
}

/// The map key of a flow key's source address (as [`addr_key`] of it, without building an
/// `IpAddr`).
#[inline]
pub(super) fn source_key(k: &FlowKey) -> u128 {
    let b = u128::from_be_bytes(*k.src_bytes());
    match k.family() {
        Family::V4 => (0xffff << 32) | (b >> 96),
        Family::V6 => b,
    }
}

/// The address of a map key.
pub(super) fn key_addr(k: u128) -> IpAddr {
    let v6 = Ipv6Addr::from_bits(k);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

/// The crate's folded-multiply hash over an address (the map's only key type).
#[derive(Default)]
pub(super) struct AddrHasher(u64);

impl Hasher for AddrHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            self.0 = hash_words(&[self.0, u64::from_le_bytes(w)], 0);
        }
    }
    #[inline]
    fn write_u128(&mut self, v: u128) {
        self.0 = hash2(v as u64 ^ self.0, (v >> 64) as u64);
    }
}

/// What one source holds.
#[derive(Clone, Copy, Debug)]
pub(super) struct Source {
    pub(super) addr: u128,
    /// Live flows (including one being created, while it is).
    pub(super) flows: u32,
    /// NAT mappings (external ports) bound for it, reserved ports excepted.
    pub(super) ports: u32,
    /// Flows on its unanswered list.
    pub(super) unanswered: u32,
    /// Its oldest and newest unanswered flow (slots).
    first: u32,
    last: u32,
    /// Neighbours on the list of sources with as many unanswered flows.
    prev: u32,
    next: u32,
}

/// Every source of one table.
pub(super) struct Sources {
    map: HashMap<u128, u32, BuildHasherDefault<AddrHasher>>,
    recs: Vec<Source>,
    free: Vec<u32>,
    /// Per slot: the previous and next unanswered flow of the same source.
    order: Vec<[u32; 2]>,
    /// `by_count[c]`: the first source with `c` unanswered flows (`c` ≥ 1).
    by_count: Vec<u32>,
    /// The highest `c` whose list is not empty (0: no unanswered flow at all).
    top: usize,
}

impl Sources {
    /// Room for `slots` flows' list links (allocated as the slab grows, like the other arrays).
    pub(super) fn new(slots: usize) -> Sources {
        Sources {
            map: HashMap::default(),
            recs: Vec::new(),
            free: Vec::new(),
            order: Vec::with_capacity(slots),
            by_count: vec![NIL],
            top: 0,
        }
    }

    /// One more slot in the table's slab.
    pub(super) fn push_slot(&mut self) {
        self.order.push([NIL; 2]);
    }

    /// Bytes held (map, records, per-slot links, count lists).
    pub(super) fn bytes(&self) -> usize {
        // hashbrown: a 16-byte key, a 4-byte value (padded to 16) and a control byte per bucket.
        self.map.capacity() * 33
            + self.recs.capacity() * core::mem::size_of::<Source>()
            + self.free.capacity() * 4
            + self.order.capacity() * 8
            + self.by_count.capacity() * 4
    }

    /// The record of `addr`, if it has one.
    pub(super) fn find(&self, addr: u128) -> Option<u32> {
        self.map.get(&addr).copied()
    }

    /// The record of `addr`, created (holding nothing) if it has none.
    fn entry(&mut self, addr: u128) -> u32 {
        match self.map.entry(addr) {
            Entry::Occupied(e) => *e.get(),
            Entry::Vacant(v) => {
                let rec = Source {
                    addr,
                    flows: 0,
                    ports: 0,
                    unanswered: 0,
                    first: NIL,
                    last: NIL,
                    prev: NIL,
                    next: NIL,
                };
                let id = match self.free.pop() {
                    Some(id) => {
                        self.recs[id as usize] = rec;
                        id
                    }
                    None => {
                        self.recs.push(rec);
                        (self.recs.len() - 1) as u32
                    }
                };
                *v.insert(id)
            }
        }
    }

    /// Count one more flow for `addr` (created, or being created) if it holds fewer than
    /// `limit`; returns its record, or `None` at the limit.
    pub(super) fn claim(&mut self, addr: u128, limit: u32) -> Option<u32> {
        let id = self.entry(addr);
        let r = &mut self.recs[id as usize];
        if r.flows >= limit {
            return None;
        }
        r.flows += 1;
        Some(id)
    }

    /// One flow less for record `id` (gone, or not created after all).
    pub(super) fn unclaim(&mut self, id: u32) {
        if let Some(r) = self.recs.get_mut(id as usize) {
            r.flows = r.flows.saturating_sub(1);
            if r.flows == 0 && r.ports == 0 {
                self.release_if_idle(id);
            }
        }
    }

    /// Flow `slot` of record `id` is gone; it was on its unanswered flows if `listed`.
    #[inline]
    pub(super) fn detach(&mut self, id: u32, slot: u32, listed: bool) {
        if listed {
            self.remove_unanswered(id, slot);
        }
        self.unclaim(id);
    }

    /// One NAT mapping less for the inside IPv4 address `inside`, whose record is most likely
    /// `hint` (the releasing flow's).
    #[inline]
    pub(super) fn port_released(&mut self, inside: [u8; 4], hint: u32) {
        let key = (0xffff << 32) | u128::from(u32::from_be_bytes(inside));
        if let Some(r) = self.recs.get_mut(hint as usize)
            && r.addr == key
        {
            // (The flow releasing it still counts: the record stays.)
            r.ports = r.ports.saturating_sub(1);
            return;
        }
        if let Some(id) = self.find(key) {
            if let Some(r) = self.recs.get_mut(id as usize) {
                r.ports = r.ports.saturating_sub(1);
            }
            self.release_if_idle(id);
        }
    }

    pub(super) fn get(&self, id: u32) -> Option<&Source> {
        self.recs.get(id as usize)
    }

    pub(super) fn get_mut(&mut self, id: u32) -> Option<&mut Source> {
        self.recs.get_mut(id as usize)
    }

    /// Forget record `id` if its source holds nothing any more.
    pub(super) fn release_if_idle(&mut self, id: u32) {
        if let Some(r) = self.recs.get(id as usize)
            && r.flows == 0
            && r.ports == 0
            && r.unanswered == 0
            && self.map.get(&r.addr) == Some(&id)
        {
            self.map.remove(&r.addr);
            self.free.push(id);
        }
    }

    /// Every source with a record, with its record.
    pub(super) fn iter(&self) -> impl Iterator<Item = &Source> + '_ {
        self.map
            .values()
            .filter_map(|&id| self.recs.get(id as usize))
    }

    /// Append `slot`, a flow of source `id` just created or no longer answered, to its unanswered
    /// flows (as the newest), and move the source up one count.
    #[inline(always)]
    pub(super) fn push_unanswered(&mut self, id: u32, slot: u32) {
        let Sources {
            recs,
            order,
            by_count,
            top,
            ..
        } = self;
        let Some(r) = recs.get_mut(id as usize) else {
            return;
        };
        let last = r.last;
        r.last = slot;
        if last == NIL {
            r.first = slot;
        }
        let c = r.unanswered as usize;
        r.unanswered += 1;
        let (prev, next) = (r.prev, r.next);
        if let Some(o) = order.get_mut(slot as usize) {
            *o = [last, NIL];
        }
        if let Some(o) = order.get_mut(last as usize) {
            o[1] = slot;
        }
        if c > 0 {
            unlist(recs, by_count, prev, next, c);
        }
        list(recs, by_count, id, c + 1);
        *top = (*top).max(c + 1);
    }

    /// Take `slot` off source `id`'s unanswered flows (answered, or gone), and move the source
    /// down one count; the top moves down a step if its list is left empty.
    #[inline(always)]
    pub(super) fn remove_unanswered(&mut self, id: u32, slot: u32) {
        let Sources {
            recs,
            order,
            by_count,
            top,
            ..
        } = self;
        let Some([prev_slot, next_slot]) = order.get(slot as usize).copied() else {
            return;
        };
        let Some(r) = recs.get_mut(id as usize) else {
            return;
        };
        match order.get_mut(prev_slot as usize) {
            Some(o) => o[1] = next_slot,
            None => r.first = next_slot,
        }
        match order.get_mut(next_slot as usize) {
            Some(o) => o[0] = prev_slot,
            None => r.last = prev_slot,
        }
        order[slot as usize] = [NIL; 2];
        let c = r.unanswered as usize;
        r.unanswered = r.unanswered.saturating_sub(1);
        let (prev, next) = (r.prev, r.next);
        unlist(recs, by_count, prev, next, c);
        if c > 1 {
            list(recs, by_count, id, c - 1);
        }
        if c == *top && by_count.get(c) == Some(&NIL) {
            *top = c - 1;
        }
    }

    /// The oldest unanswered flow of the source with the most unanswered flows, if any.
    pub(super) fn heaviest_oldest(&self) -> Option<u32> {
        let id = *self.by_count.get(self.top)?;
        let slot = self.recs.get(id as usize)?.first;
        (slot != NIL).then_some(slot)
    }

    /// Check every list against the counts (tests): the unanswered lists hold exactly
    /// `unanswered` slots each, and the count lists and `top` agree with the counts. Returns the
    /// slots on the unanswered lists, per source address.
    #[cfg(test)]
    pub(super) fn audit(&self) -> Result<HashMap<u128, Vec<u32>>, String> {
        let mut out = HashMap::new();
        let mut max = 0;
        for (&addr, &id) in &self.map {
            let r = self.recs[id as usize];
            if r.addr != addr {
                return Err(format!(
                    "record {id} has address {:x}, not {addr:x}",
                    r.addr
                ));
            }
            let mut slots = Vec::new();
            let (mut cur, mut prev) = (r.first, NIL);
            while cur != NIL {
                if self.order[cur as usize][0] != prev {
                    return Err(format!("slot {cur}: broken back link"));
                }
                slots.push(cur);
                if slots.len() > self.order.len() {
                    return Err("a cycle in an unanswered list".into());
                }
                prev = cur;
                cur = self.order[cur as usize][1];
            }
            if r.last != prev || slots.len() != r.unanswered as usize {
                return Err(format!(
                    "{}: {} on its list, count {}",
                    key_addr(addr),
                    slots.len(),
                    r.unanswered
                ));
            }
            max = max.max(r.unanswered as usize);
            out.insert(addr, slots);
        }
        if self.top != max {
            return Err(format!("top {} but the heaviest has {max}", self.top));
        }
        for (c, &head) in self.by_count.iter().enumerate().skip(1) {
            let (mut cur, mut prev) = (head, NIL);
            let mut n = 0;
            while cur != NIL {
                let r = self.recs[cur as usize];
                if r.unanswered as usize != c || r.prev != prev {
                    return Err(format!("count list {c} holds record {cur} wrongly"));
                }
                n += 1;
                if n > self.recs.len() {
                    return Err("a cycle in a count list".into());
                }
                prev = cur;
                cur = r.next;
            }
            let expect = self
                .map
                .values()
                .filter(|&&id| self.recs[id as usize].unanswered as usize == c)
                .count();
            if n != expect {
                return Err(format!("count list {c}: {n} records, {expect} expected"));
            }
        }
        Ok(out)
    }
}

/// Put source `id` first on the list of sources with `c` unanswered flows (so that of equally
/// heavy sources, the one that grew last is dropped from first). (`NIL` is never an index: the
/// bounds checks are the list-end checks.)
#[inline(always)]
fn list(recs: &mut [Source], by_count: &mut Vec<u32>, id: u32, c: usize) {
    if c >= by_count.len() {
        by_count.resize(c + 1, NIL);
    }
    let head = core::mem::replace(&mut by_count[c], id);
    if let Some(h) = recs.get_mut(head as usize) {
        h.prev = id;
    }
    if let Some(r) = recs.get_mut(id as usize) {
        r.prev = NIL;
        r.next = head;
    }
}

/// Take the source between `prev` and `next` off the list of sources with `c` unanswered flows.
#[inline(always)]
fn unlist(recs: &mut [Source], by_count: &mut [u32], prev: u32, next: u32, c: usize) {
    match recs.get_mut(prev as usize) {
        Some(p) => p.next = next,
        None => {
            if let Some(h) = by_count.get_mut(c) {
                *h = next;
            }
        }
    }
    if let Some(n) = recs.get_mut(next as usize) {
        n.prev = prev;
    }
}
