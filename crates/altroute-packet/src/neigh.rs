//! The neighbour (ARP) table of one worker: IPv4 address → MAC, learned from ARP and from the
//! source of LAN frames, with the second each entry was last confirmed.
//!
//! Small open-addressing map with linear probing and a fixed capacity (no allocation after
//! construction); when full, the stalest entry in the probe window is replaced.

use core::net::Ipv4Addr;

use altroute_flow::Time;

use crate::wire::MacAddr;

const WINDOW: usize = 8;

/// One slot: 16 bytes, four to a cache line (the fast path reads one per packet).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C, align(16))]
struct Entry {
    ip: u32,
    /// When it was last confirmed, in seconds (ordering for replacement; `iter` reports it).
    seen_s: u32,
    mac: MacAddr,
    port: u8,
    used: bool,
}

const _: () = assert!(core::mem::size_of::<Entry>() == 16);

const FREE: Entry = Entry {
    ip: 0,
    seen_s: 0,
    mac: MacAddr([0; 6]),
    port: 0,
    used: false,
};

/// An IPv4 neighbour table.
#[derive(Clone, Debug)]
pub struct Neighbors {
    slots: Box<[Entry]>,
    mask: usize,
    version: u64,
}

/// What [`Neighbors::learn`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Learned {
    /// A new neighbour.
    New,
    /// Known, same MAC (timestamp refreshed).
    Same,
    /// Known with another MAC, now replaced (e.g. a gateway whose hardware changed).
    Changed {
        /// The MAC it had before.
        old: MacAddr,
    },
}

#[inline]
fn slot_of(ip: u32, mask: usize) -> usize {
    (ip.wrapping_mul(0x9e37_79b1) >> 7) as usize & mask
}

impl Neighbors {
    /// A table for about `capacity` neighbours (rounded up to a power of two, at least 64).
    pub fn new(capacity: usize) -> Neighbors {
        let n = (capacity * 2).next_power_of_two().max(64);
        Neighbors {
            slots: vec![FREE; n].into_boxed_slice(),
            mask: n - 1,
            version: 0,
        }
    }

    /// The MAC of `ip`, if known.
    #[inline(always)]
    pub fn get(&self, ip: Ipv4Addr) -> Option<MacAddr> {
        self.find(ip).and_then(|i| self.at(i)).map(|(_, mac)| mac)
    }

    /// The slot holding `ip`, for a caller that remembers where a neighbour is and reads it back
    /// with [`Neighbors::at`] (entries never move; a replaced one shows another address there).
    #[inline(always)]
    pub fn find(&self, ip: Ipv4Addr) -> Option<u32> {
        let key = u32::from(ip);
        let start = slot_of(key, self.mask);
        for i in 0..WINDOW {
            let at = (start + i) & self.mask;
            let e = self.slots.get(at)?;
            if !e.used {
                return None;
            }
            if e.ip == key {
                return u32::try_from(at).ok();
            }
        }
        None
    }

    /// The address (as a big-endian number) and MAC in slot `i` ([`Neighbors::find`]), if in use.
    #[inline(always)]
    pub fn at(&self, i: u32) -> Option<(u32, MacAddr)> {
        match self.slots.get(i as usize) {
            Some(e) if e.used => Some((e.ip, e.mac)),
            _ => None,
        }
    }

    /// A number that changes whenever what [`Neighbors::get`] returns may have changed: a new
    /// entry, a changed MAC, an entry replaced (a refresh of a known entry leaves it alone). A
    /// caller that caches MACs from this table re-reads them when it changes.
    #[inline(always)]
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Record that `ip` is at `mac` on port `port`, at `now`.
    pub fn learn(&mut self, ip: Ipv4Addr, mac: MacAddr, port: u8, now: Time) -> Learned {
        let key = u32::from(ip);
        let start = slot_of(key, self.mask);
        let secs = u32::try_from(now.secs()).unwrap_or(u32::MAX);
        let mut victim = start;
        let mut oldest = u32::MAX;
        for i in 0..WINDOW {
            let at = (start + i) & self.mask;
            let e = &mut self.slots[at];
            if !e.used {
                victim = at;
                break;
            }
            if e.ip == key {
                e.seen_s = secs;
                e.port = port;
                if e.mac == mac {
                    return Learned::Same;
                }
                let old = e.mac;
                e.mac = mac;
                self.version += 1;
                return Learned::Changed { old };
            }
            if e.seen_s < oldest {
                oldest = e.seen_s;
                victim = at;
            }
        }
        self.slots[victim] = Entry {
            ip: key,
            seen_s: secs,
            mac,
            port,
            used: true,
        };
        self.version += 1;
        Learned::New
    }

    /// Every entry: (address, MAC, port, last confirmed).
    pub fn iter(&self) -> impl Iterator<Item = (Ipv4Addr, MacAddr, u8, Time)> + '_ {
        self.slots.iter().filter(|e| e.used).map(|e| {
            (
                Ipv4Addr::from(e.ip),
                e.mac,
                e.port,
                Time::from_secs(u64::from(e.seen_s)),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learn_get_change() {
        let mut n = Neighbors::new(4);
        let ip = Ipv4Addr::new(192, 0, 2, 2);
        let a = MacAddr([2, 0, 0, 0, 0, 1]);
        let b = MacAddr([2, 0, 0, 0, 0, 2]);
        assert_eq!(n.get(ip), None);
        assert_eq!(n.learn(ip, a, 1, Time::ZERO), Learned::New);
        assert_eq!(n.learn(ip, a, 1, Time::ZERO), Learned::Same);
        assert_eq!(n.get(ip), Some(a));
        assert_eq!(n.learn(ip, b, 1, Time::ZERO), Learned::Changed { old: a });
        assert_eq!(n.get(ip), Some(b));
    }

    #[test]
    fn full_table_replaces_stalest() {
        let mut n = Neighbors::new(1);
        for i in 0..1000u32 {
            n.learn(
                Ipv4Addr::from(0x0a00_0000 + i),
                MacAddr([2, 0, 0, 0, 0, 1]),
                0,
                Time::from_secs(u64::from(i)),
            );
        }
        // The newest is always findable.
        assert!(n.get(Ipv4Addr::from(0x0a00_0000 + 999)).is_some());
    }
}
