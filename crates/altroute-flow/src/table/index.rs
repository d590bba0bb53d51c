//! The hash index: 64-byte buckets of seven (tag, value) lanes, open addressing over buckets.
//!
//! A lookup touches one cache line in the common case: the home bucket holds up to seven entries,
//! each a 32-bit tag (the high half of the 64-bit hash, never 0) and a 32-bit value (what the entry
//! points at; the caller decides). When a bucket is full, inserts continue in the next bucket and
//! bump the home bucket's `overflow` count, so a lookup stops at the first bucket whose count is 0
//! (deletions decrement along the same path: no tombstones, no rehash).
//!
//! The table never grows: it is sized for a maximum number of entries at construction, at most 80 %
//! lane occupancy, which keeps the overflow chains short.

/// Values are opaque to the index, but 0 is not special: empty lanes are marked by tag 0.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Bucket {
    tags: [u32; 7],
    overflow: u32,
    vals: [u32; 7],
    _pad: u32,
}

const _: () = assert!(core::mem::size_of::<Bucket>() == 64);

impl Bucket {
    /// A bit per lane whose tag is `t`. All seven tags are compared at once (the compiler turns
    /// this into one vector compare and a mask), so a probe visits only matching lanes: usually
    /// exactly one.
    #[inline(always)]
    fn matches(&self, t: u32) -> u32 {
        let mut hits = 0u32;
        for (lane, &x) in self.tags.iter().enumerate() {
            hits |= u32::from(x == t) << lane;
        }
        hits
    }
}

const EMPTY: Bucket = Bucket {
    tags: [0; 7],
    overflow: 0,
    vals: [0; 7],
    _pad: 0,
};

pub(crate) struct Index {
    buckets: Vec<Bucket>,
    n: u64,
}

#[inline(always)]
fn tag_of(h: u64) -> u32 {
    ((h >> 32) as u32) | 1
}

impl Index {
    /// An index for at most `entries` entries.
    pub(crate) fn with_capacity(entries: usize) -> Index {
        // 7 lanes per bucket at <= 80 % occupancy, and at least 2 buckets.
        let n = (entries * 10).div_ceil(7 * 8).max(2);
        Index {
            buckets: vec![EMPTY; n],
            n: n as u64,
        }
    }

    /// Bytes of memory held.
    pub(crate) fn bytes(&self) -> usize {
        self.buckets.len() * 64
    }

    /// The buckets' address range (start, bytes); allocated once, never moved.
    pub(crate) fn region(&self) -> (usize, usize) {
        (self.buckets.as_ptr() as usize, self.bytes())
    }

    #[inline(always)]
    fn home(&self, h: u64) -> usize {
        (((h & 0xffff_ffff) * self.n) >> 32) as usize
    }

    #[inline(always)]
    fn next(&self, b: usize) -> usize {
        if b + 1 == self.buckets.len() {
            0
        } else {
            b + 1
        }
    }

    /// Start loading the home bucket of `h` into the cache (the batch lookups call this for a
    /// whole batch before probing). A prefetch never faults and changes nothing.
    #[inline(always)]
    pub(crate) fn prefetch(&self, h: u64) {
        prefetch_index::prefetch_index(&self.buckets, self.home(h));
    }

    /// The value of the first lane whose tag matches `h` and whose value has none of the bits of
    /// `skip`, in `h`'s home bucket or, when that has none and overflowed, the next one: the entry
    /// a lookup will most likely return (the batch lookups prefetch what it points at).
    #[inline(always)]
    pub(crate) fn candidate(&self, h: u64, skip: u32) -> Option<u32> {
        let t = tag_of(h);
        let mut b = self.home(h);
        for _ in 0..2 {
            let bucket = self.buckets.get(b)?;
            let mut hits = bucket.matches(t);
            while hits != 0 {
                let lane = hits.trailing_zeros() as usize;
                hits &= hits - 1;
                if let Some(&v) = bucket.vals.get(lane)
                    && v & skip == 0
                {
                    return Some(v);
                }
            }
            if bucket.overflow == 0 {
                return None;
            }
            b = self.next(b);
        }
        None
    }

    /// The first value under hash `h` that `matches` accepts.
    #[inline(always)]
    pub(crate) fn find(&self, h: u64, mut matches: impl FnMut(u32) -> bool) -> Option<u32> {
        let t = tag_of(h);
        let mut b = self.home(h);
        for _ in 0..self.buckets.len() {
            let bucket = &self.buckets[b];
            let mut hits = bucket.matches(t);
            while hits != 0 {
                let lane = hits.trailing_zeros() as usize;
                hits &= hits - 1;
                if let Some(&v) = bucket.vals.get(lane)
                    && matches(v)
                {
                    return Some(v);
                }
            }
            if bucket.overflow == 0 {
                return None;
            }
            b = self.next(b);
        }
        None
    }

    /// Add an entry. Returns false only when every bucket is full (the caller sized the index so
    /// that this cannot happen, and treats it as "table full").
    pub(crate) fn insert(&mut self, h: u64, val: u32) -> bool {
        let t = tag_of(h);
        let home = self.home(h);
        let mut b = home;
        for _ in 0..self.buckets.len() {
            if let Some(lane) = self.buckets[b].tags.iter().position(|&x| x == 0) {
                self.buckets[b].tags[lane] = t;
                self.buckets[b].vals[lane] = val;
                // Every bucket passed on the way gets an overflow mark.
                let mut p = home;
                while p != b {
                    self.buckets[p].overflow += 1;
                    p = self.next(p);
                }
                return true;
            }
            b = self.next(b);
        }
        false
    }

    /// Remove the entry (h, val). Returns whether it was there.
    pub(crate) fn remove(&mut self, h: u64, val: u32) -> bool {
        let t = tag_of(h);
        let home = self.home(h);
        let mut b = home;
        for _ in 0..self.buckets.len() {
            if let Some(lane) =
                (0..7).find(|&l| self.buckets[b].tags[l] == t && self.buckets[b].vals[l] == val)
            {
                self.buckets[b].tags[lane] = 0;
                self.buckets[b].vals[lane] = 0;
                let mut p = home;
                while p != b {
                    self.buckets[p].overflow -= 1;
                    p = self.next(p);
                }
                return true;
            }
            if self.buckets[b].overflow == 0 {
                return false;
            }
            b = self.next(b);
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    #[test]
    fn overflow_chains_work() {
        // Force every hash into bucket 0 (low 32 bits 0) with distinct tags.
        let mut ix = Index::with_capacity(64);
        for i in 0..40u64 {
            assert!(ix.insert(i << 33, i as u32));
        }
        for i in 0..40u64 {
            assert_eq!(ix.find(i << 33, |v| v == i as u32), Some(i as u32));
        }
        for i in 0..40u64 {
            assert!(ix.remove(i << 33, i as u32));
        }
        assert!(
            ix.buckets
                .iter()
                .all(|b| b.overflow == 0 && b.tags == [0; 7])
        );
    }

    proptest! {
        #[test]
        fn behaves_like_a_multimap(ops in proptest::collection::vec((0u64..200, any::<bool>()), 1..600)) {
            let mut ix = Index::with_capacity(256);
            let mut model: HashMap<u64, bool> = HashMap::new();
            for (k, ins) in ops {
                // A poor hash on purpose, to exercise collisions and overflow.
                let h = (k % 7) | (k << 32);
                let present = model.get(&k).copied().unwrap_or(false);
                if ins && !present {
                    prop_assert!(ix.insert(h, k as u32));
                    model.insert(k, true);
                } else if !ins {
                    prop_assert_eq!(ix.remove(h, k as u32), present);
                    model.insert(k, false);
                }
                for (&mk, &mp) in &model {
                    let mh = (mk % 7) | (mk << 32);
                    prop_assert_eq!(ix.find(mh, |v| v == mk as u32).is_some(), mp);
                }
            }
        }
    }
}
