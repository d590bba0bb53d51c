//! NAT port pools: which external ports are free, in use, reserved or cooling down.
//!
//! One pool per (external address, protocol class) — TCP, UDP, and ICMP query ids are separate
//! spaces. A pool tracks, per port, whether it may be handed out, how many flows share the mapping on
//! it (endpoint-independent mapping: one inside endpoint keeps one external port for every
//! destination, RFC 4787 REQ-1), and the inside endpoint it maps to (for hairpinning and
//! explanations).
//!
//! Allocation keeps the inside source port when it is free, and otherwise picks a free port of the
//! same parity (RFC 4787 REQ-6), starting from a point derived from the inside endpoint so that
//! successive allocations spread out. A released port cools down for a configurable time (120 s by
//! default, RFC 6888 REQ-8's "port reuse" guidance) before it is handed out again — unless no flow
//! on it was ever answered: then nothing ever came back to it, the cooldown protects no
//! conversation, and it is free at once (a host flooding unanswered SYNs would otherwise keep a
//! pool's worth of ports cooling: each of its mappings is held for the embryonic timeout, then
//! cools for longer than that). Exhaustion is `None` to the caller, which reports a typed error.
//!
//! Ports are partitioned between workers in blocks (see [`PortPartition`]): a pool only hands out
//! the ports its worker owns, so a reply to any mapping can be steered to the worker that owns it
//! from its destination port alone.

use std::collections::VecDeque;

use crate::ConfigError;

/// How the external port space is split between worker threads.
///
/// Port `p` belongs to worker `(p / block) % workers`. The same function must steer packets: a
/// packet arriving on a WAN goes to the owner of its destination port; a packet from the LAN to the
/// owner of its source port (which is where its mapping, if new, will be allocated).
///
/// ```
/// use altroute_flow::PortPartition;
/// let p = PortPartition::new((1024, 65535), 64, 2, 0).unwrap();
/// assert_eq!(p.owner(1024), 0);
/// assert_eq!(p.owner(1088), 1);
/// assert!(p.is_mine(1024) && !p.is_mine(1088));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortPartition {
    /// Inclusive range of external ports NAT may hand out.
    pub range: (u16, u16),
    /// Ports per block (a power of two keeps the steering program cheap).
    pub block: u16,
    /// Number of workers.
    pub workers: u16,
    /// This table's worker.
    pub worker: u16,
}

impl PortPartition {
    /// A partition; errors on an empty range, a zero block, or a worker out of range.
    pub fn new(
        range: (u16, u16),
        block: u16,
        workers: u16,
        worker: u16,
    ) -> Result<Self, ConfigError> {
        if range.0 > range.1 || range.0 == 0 {
            return Err(ConfigError::BadPortRange {
                lo: range.0,
                hi: range.1,
            });
        }
        if block == 0 || workers == 0 || worker >= workers {
            return Err(ConfigError::BadPartition {
                block,
                workers,
                worker,
            });
        }
        Ok(PortPartition {
            range,
            block,
            workers,
            worker,
        })
    }

    /// The worker that owns port `p`.
    #[inline]
    pub fn owner(&self, p: u16) -> u16 {
        (p / self.block) % self.workers
    }

    /// Whether this worker may hand out port `p`.
    #[inline]
    pub fn is_mine(&self, p: u16) -> bool {
        p >= self.range.0 && p <= self.range.1 && self.owner(p) == self.worker
    }
}

/// One pool: an external address and protocol class.
pub(crate) struct PortPool {
    /// Bit set: the port may be handed out.
    avail: Box<[u64; 1024]>,
    /// Bit set: reserved for a static mapping (port forward), never handed out nor cooled.
    reserved: Box<[u64; 1024]>,
    /// Bit set: a flow of the mapping on the port was answered (so, released, it cools down).
    heard: Box<[u64; 1024]>,
    /// Flows sharing the mapping on each port.
    refs: Box<[u32]>,
    /// Inside endpoint (IPv4 address, port) of each mapped port.
    inside: Box<[([u8; 4], u16)]>,
    cooling: VecDeque<(u16, u32)>,
    free: u32,
}

#[inline]
fn bit(p: u16) -> (usize, u64) {
    (usize::from(p / 64), 1u64 << (p % 64))
}

impl PortPool {
    pub(crate) fn new(part: &PortPartition) -> PortPool {
        let mut avail = Box::new([0u64; 1024]);
        let mut free = 0;
        for p in part.range.0..=part.range.1 {
            if part.is_mine(p) {
                let (w, m) = bit(p);
                avail[w] |= m;
                free += 1;
            }
        }
        PortPool {
            avail,
            reserved: Box::new([0u64; 1024]),
            heard: Box::new([0u64; 1024]),
            refs: vec![0u32; 65536].into_boxed_slice(),
            inside: vec![([0u8; 4], 0u16); 65536].into_boxed_slice(),
            cooling: VecDeque::new(),
            free,
        }
    }

    /// Ports that can be handed out now.
    pub(crate) fn free(&self) -> u32 {
        self.free
    }

    #[inline]
    fn is_avail(&self, p: u16) -> bool {
        let (w, m) = bit(p);
        self.avail[w] & m != 0
    }

    fn take(&mut self, p: u16) {
        let (w, m) = bit(p);
        if self.avail[w] & m != 0 {
            self.avail[w] &= !m;
            self.free -= 1;
        }
    }

    /// Hand out a port for a new mapping: `preferred` when free, else one of the same parity near
    /// `salt`, else any. Returns `None` when the pool is exhausted.
    pub(crate) fn alloc(&mut self, preferred: u16, salt: u64) -> Option<u16> {
        if self.free == 0 {
            return None;
        }
        if self.is_avail(preferred) {
            self.take(preferred);
            return Some(preferred);
        }
        let parity = if preferred.is_multiple_of(2) {
            0x5555_5555_5555_5555u64
        } else {
            0xaaaa_aaaa_aaaa_aaaau64
        };
        let start = (salt % 1024) as usize;
        for mask in [parity, u64::MAX] {
            for i in 0..1024 {
                let w = (start + i) % 1024;
                let m = self.avail[w] & mask;
                if m != 0 {
                    let p = (w * 64) as u16 + m.trailing_zeros() as u16;
                    self.take(p);
                    return Some(p);
                }
            }
        }
        None
    }

    /// Reserve `p` for a static mapping. Returns false if it is in use by a dynamic mapping.
    pub(crate) fn reserve(&mut self, p: u16) -> bool {
        if self.refs[usize::from(p)] > 0 && !self.is_reserved(p) {
            return false;
        }
        self.take(p);
        let (w, m) = bit(p);
        self.reserved[w] |= m;
        true
    }

    pub(crate) fn is_reserved(&self, p: u16) -> bool {
        let (w, m) = bit(p);
        self.reserved[w] & m != 0
    }

    pub(crate) fn refs(&self, p: u16) -> u32 {
        self.refs[usize::from(p)]
    }

    pub(crate) fn inside(&self, p: u16) -> ([u8; 4], u16) {
        self.inside[usize::from(p)]
    }

    /// Record a new mapping on `p` (just allocated or reserved) for `inside`.
    pub(crate) fn bind(&mut self, p: u16, inside: ([u8; 4], u16)) {
        self.inside[usize::from(p)] = inside;
        self.refs[usize::from(p)] = 1;
    }

    /// One more flow shares the mapping on `p`.
    pub(crate) fn share(&mut self, p: u16) {
        let r = &mut self.refs[usize::from(p)];
        *r = r.saturating_add(1);
    }

    /// One flow less on `p` — a flow that was `answered` or not; returns true when the mapping
    /// is gone. A released port cools down until `cool_until` (seconds) if any flow on it was
    /// answered, and is free again at once otherwise (nothing ever came back to it).
    #[inline]
    pub(crate) fn unshare(&mut self, p: u16, answered: bool, cool_until: u32) -> bool {
        let (w, m) = bit(p);
        if answered {
            self.heard[w] |= m;
        }
        let r = &mut self.refs[usize::from(p)];
        *r = r.saturating_sub(1);
        if *r > 0 {
            return false;
        }
        let heard = self.heard[w] & m != 0;
        self.heard[w] &= !m;
        if !self.is_reserved(p) {
            if heard {
                self.cooling.push_back((p, cool_until));
            } else {
                self.give_back(p);
            }
        }
        true
    }

    /// Return `p` to the free set (if it is not there already).
    fn give_back(&mut self, p: u16) {
        let (w, m) = bit(p);
        if self.avail[w] & m == 0 {
            self.avail[w] |= m;
            self.free += 1;
        }
    }

    /// Return cooled-down ports to the free set. O(ports released).
    pub(crate) fn sweep(&mut self, now_secs: u32) {
        while let Some(&(p, until)) = self.cooling.front() {
            if until > now_secs {
                break;
            }
            self.cooling.pop_front();
            // A reserved port never cools; a port re-bound meanwhile is not freed.
            if self.refs[usize::from(p)] == 0 && !self.is_reserved(p) {
                self.give_back(p);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(lo: u16, hi: u16) -> PortPool {
        PortPool::new(&PortPartition::new((lo, hi), 64, 1, 0).unwrap())
    }

    #[test]
    fn keeps_port_then_parity_then_any() {
        let mut p = pool(1024, 1031);
        assert_eq!(p.alloc(1025, 0), Some(1025));
        p.bind(1025, ([10, 0, 0, 2], 1025));
        // 1025 is taken: another odd port.
        let q = p.alloc(1025, 0).unwrap();
        assert_eq!(q % 2, 1);
        assert_ne!(q, 1025);
        // Out of range preferred port: any port in range with its parity.
        let r = p.alloc(40001, 7).unwrap();
        assert!((1024..=1031).contains(&r) && r % 2 == 1);
        let s = p.alloc(40001, 7).unwrap();
        assert!(s % 2 == 1);
        // Odd ports are gone (1025, 1027, 1029, 1031): parity gives way rather than failing.
        let t = p.alloc(40001, 7).unwrap();
        assert!(t.is_multiple_of(2));
        for _ in 0..3 {
            assert!(p.alloc(2, 0).is_some());
        }
        assert_eq!(p.alloc(2, 0), None, "exhausted");
        assert_eq!(p.free(), 0);
    }

    #[test]
    fn released_port_cools_down() {
        let mut p = pool(5000, 5000);
        assert_eq!(p.alloc(5000, 0), Some(5000));
        p.bind(5000, ([10, 0, 0, 2], 5000));
        p.share(5000);
        // One of the two flows was answered: the port cools down.
        assert!(!p.unshare(5000, true, 120));
        assert!(p.unshare(5000, false, 120));
        p.sweep(119);
        assert_eq!(p.alloc(5000, 0), None, "still cooling");
        p.sweep(120);
        assert_eq!(p.alloc(5000, 0), Some(5000));
        // No flow on it was answered: free at once, and counted once.
        p.bind(5000, ([10, 0, 0, 2], 5000));
        assert!(p.unshare(5000, false, 240));
        assert_eq!(p.free(), 1);
        p.sweep(240);
        assert_eq!(p.free(), 1);
        assert_eq!(p.alloc(5000, 0), Some(5000));
    }

    #[test]
    fn worker_partition_is_respected() {
        let part = PortPartition::new((1024, 65535), 64, 2, 1).unwrap();
        let mut p = PortPool::new(&part);
        let n = p.free();
        assert_eq!(n, 32256); // 64512 ports, half of the blocks
        for _ in 0..1000 {
            let got = p.alloc(1024, 99).unwrap();
            assert_eq!(part.owner(got), 1);
        }
    }

    #[test]
    fn reserved_ports_are_never_handed_out() {
        let mut p = pool(8080, 8081);
        assert!(p.reserve(8080));
        assert_eq!(p.alloc(8080, 0), Some(8081));
        assert_eq!(p.alloc(8080, 0), None);
    }
}
