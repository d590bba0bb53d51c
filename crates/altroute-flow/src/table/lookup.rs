//! Finding a flow from either side: what the index's values mean, single lookups, and batched
//! lookups in stages ([`FlowTable::lookup_start`], [`FlowTable::lookup_advance`],
//! [`FlowTable::lookup_finish`]) whose memory accesses overlap across a batch.
//!
//! Index values: a flow's two entries are `slot << 1` (its original key) and `slot << 1 | 1` (its
//! reply key); a NAT mapping's entry ([`super::mapping`]) is `MAPPING | pool << 16 | port`.

use super::FlowTable;
use super::slot::{LIVE, NO_NAT, Slot};
use crate::FlowKey;
use crate::key::head_words;

/// Index values with this bit are NAT mapping entries: `MAPPING | pool << 16 | port`.
pub(super) const MAPPING: u32 = 1 << 31;

/// Which side of a connection a packet came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dir {
    /// From the inside host (the key the flow was created with).
    Orig = 0,
    /// From the remote host (the translated, reversed key).
    Reply = 1,
}

/// A flow's handle: its slot number. Valid until the flow is removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowId(pub u32);

/// A successful lookup: which flow, and from which side the packet came.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Hit {
    /// The flow.
    pub flow: FlowId,
    /// The side.
    pub dir: Dir,
}

/// A lookup in flight, between [`FlowTable::lookup_start`] and [`FlowTable::lookup_finish`]:
/// the key's hash and the entry its home bucket most likely holds for it. Small and `Copy`, so a
/// batch keeps one per packet on the stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PendingLookup {
    hash: u64,
    cand: u32,
}

impl PendingLookup {
    /// No lookup (a slot in a batch without a key); finishing it hashes the key afresh.
    pub const NONE: PendingLookup = PendingLookup {
        hash: 0,
        cand: u32::MAX,
    };
}

/// The hash of `key`, from `p` when `p` carries one.
#[inline(always)]
fn key_hash(key: &FlowKey, p: PendingLookup) -> u64 {
    if p.hash == 0 {
        key.index_hash()
    } else {
        p.hash
    }
}

impl FlowTable {
    #[inline(always)]
    fn reply_matches(&self, s: &Slot, q: &FlowKey) -> bool {
        if !s.is_v4() {
            return self.reply_key(s) == *q;
        }
        let h = &s.head;
        let (ext, port) = if s.nat_addr == NO_NAT {
            ([h[0], h[1], h[2], h[3]], u16::from_ne_bytes([h[8], h[9]]))
        } else {
            match self.ext_bytes.get(usize::from(s.nat_addr)) {
                Some(e) => ([e[0], e[1], e[2], e[3]], s.nat_port),
                None => return false,
            }
        };
        q.is_reply_of(h, ext, port)
    }

    /// Whether index value `v` (not a mapping) is the entry of `key`.
    #[inline(always)]
    fn entry_matches(&self, v: u32, key: &FlowKey) -> bool {
        if v & MAPPING != 0 {
            return false;
        }
        let Some(s) = self.slots.get((v >> 1) as usize) else {
            return false;
        };
        // (A pipelined lookup's candidate may have been freed since its bucket was read.)
        if !s.has(LIVE) {
            return false;
        }
        if v & 1 == 0 {
            head_words(&s.head) == key.head_words() && (s.is_v4() || s.key() == *key)
        } else {
            self.reply_matches(s, key)
        }
    }

    #[inline]
    fn lookup_hashed(&self, key: &FlowKey, h: u64) -> Option<Hit> {
        let v = self.index.find(h, |v| self.entry_matches(v, key))?;
        Some(Hit {
            flow: FlowId(v >> 1),
            dir: if v & 1 == 0 { Dir::Orig } else { Dir::Reply },
        })
    }

    /// Find the flow a packet with `key` belongs to, from either side.
    #[inline]
    pub fn lookup(&self, key: &FlowKey) -> Option<Hit> {
        self.lookup_hashed(key, key.index_hash())
    }

    /// Look up a batch of keys, writing one result per key into `out` (which must be at least as
    /// long as `keys`; extra keys are ignored). Hashes every key first and loads each home bucket
    /// and candidate slot before probing, so the memory accesses of the batch overlap.
    #[inline]
    pub fn lookup_batch(&self, keys: &[FlowKey], out: &mut [Option<Hit>]) {
        self.lookup_batch_by(keys.len(), |i| keys.get(i), out);
    }

    /// [`FlowTable::lookup_batch`] over keys that live elsewhere (in the caller's parse results,
    /// say): `key(i)` is the `i`th of `n` keys, or `None` for a slot without one (its result is
    /// `None`). Saves copying the keys into an array first.
    pub fn lookup_batch_by<'k>(
        &self,
        n: usize,
        key: impl Fn(usize) -> Option<&'k FlowKey>,
        out: &mut [Option<Hit>],
    ) {
        const CHUNK: usize = 64;
        let n = n.min(out.len());
        let mut pending = [PendingLookup::NONE; CHUNK];
        let mut start = 0;
        while start < n {
            let end = (start + CHUNK).min(n);
            self.lookup_batch_start((start..end).map(&key), &mut pending);
            for (i, o) in out[start..end].iter_mut().enumerate() {
                *o = key(start + i).and_then(|k| self.lookup_finish(k, pending[i]));
            }
            start = end;
        }
    }

    /// The first two stages of the lookups of a batch, each over the whole batch before the next,
    /// so that their memory accesses overlap: every key is hashed and its home bucket prefetched
    /// ([`FlowTable::lookup_start`]), then every bucket is read and the flow it most likely
    /// points at prefetched ([`FlowTable::lookup_advance`]). `pending[i]` is left for the `i`th
    /// key (`None`: no lookup, [`PendingLookup::NONE`]), ready for [`FlowTable::lookup_finish`],
    /// which the caller may run later, frame by frame (the answer is checked then: see
    /// `lookup_start`). Only as many keys as `pending` holds are taken; returns how many.
    #[inline(always)]
    pub fn lookup_batch_start<'k>(
        &self,
        keys: impl IntoIterator<Item = Option<&'k FlowKey>>,
        pending: &mut [PendingLookup],
    ) -> usize {
        let mut n = 0;
        for (p, k) in pending.iter_mut().zip(keys) {
            *p = k.map_or(PendingLookup::NONE, |k| self.lookup_start(k));
            n += 1;
        }
        for p in &mut pending[..n] {
            self.lookup_advance(p);
        }
        n
    }

    /// Start a pipelined lookup of `key`: hash it and prefetch its home bucket. Then, some work
    /// later, [`FlowTable::lookup_advance`] reads the bucket and prefetches the flow it most
    /// likely points at, and, more work later, [`FlowTable::lookup_finish`] gives the answer.
    ///
    /// This is how a caller hides memory latency across a batch: run each stage over the whole
    /// batch before the next ([`FlowTable::lookup_batch_start`], which [`FlowTable::lookup_batch`]
    /// and altroute's pipeline use), or the
    /// stages a few packets apart (software pipelining), and the loads of many packets overlap.
    /// The stages only prefetch and read; the
    /// answer is always what [`FlowTable::lookup`] would give at the time of `lookup_finish`,
    /// whatever changed in between (a stale candidate is checked, then ignored).
    #[inline(always)]
    pub fn lookup_start(&self, key: &FlowKey) -> PendingLookup {
        let hash = key.index_hash();
        self.index.prefetch(hash);
        PendingLookup {
            hash,
            cand: u32::MAX,
        }
    }

    /// The middle stage of a pipelined lookup (see [`FlowTable::lookup_start`]): read the home
    /// bucket, remember the first entry whose tag matches and prefetch its slot (the one line a
    /// forwarded packet then reads and writes: the counters are in it).
    #[inline(always)]
    pub fn lookup_advance(&self, p: &mut PendingLookup) {
        if p.hash == 0 {
            return;
        }
        // (`u32::MAX`: no candidate; it has the MAPPING bit, which no candidate has.)
        if let Some(v) = self.index.candidate(p.hash, MAPPING) {
            p.cand = v;
            let i = (v >> 1) as usize;
            prefetch_index::prefetch_index(&self.slots, i);
        }
    }

    /// The last stage of a pipelined lookup (see [`FlowTable::lookup_start`]): the flow `key`
    /// belongs to. `key` must be the key `p` was started with.
    #[inline(always)]
    pub fn lookup_finish(&self, key: &FlowKey, p: PendingLookup) -> Option<Hit> {
        debug_assert!(
            p.hash == 0 || p.hash == key.index_hash(),
            "lookup_finish: another key"
        );
        // The candidate is the first lane `find` would try: when it matches, it is the answer
        // `find` would give, without scanning the bucket again.
        if p.cand != u32::MAX && self.entry_matches(p.cand, key) {
            return Some(Hit {
                flow: FlowId(p.cand >> 1),
                dir: if p.cand & 1 == 0 {
                    Dir::Orig
                } else {
                    Dir::Reply
                },
            });
        }
        self.lookup_hashed(key, key_hash(key, p))
    }
}
