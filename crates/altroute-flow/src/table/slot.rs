//! One connection's record: the 64-byte [`Slot`] (split key, scratch, small per-direction
//! counters, TCP state and flags), the out-of-line [`Links`] and [`FlowCounters`], the slab's
//! free list, and [`FlowRef`], the packet path's read-only view of a slot.

use super::FlowTable;
use super::insert::InsertError;
use super::lookup::{Dir, FlowId};
use crate::policy::Reason;
use crate::tcp::TcpState;
use crate::{Family, FlowKey, GatewayId, Time};

/// "No slot" in the per-gateway lists.
pub(super) const NONE: u32 = u32::MAX;
/// "No gateway" in [`Slot::gateway`].
pub(super) const NO_GW: u8 = 0xff;
/// "Not translated" in [`Slot::nat_addr`].
pub(super) const NO_NAT: u8 = 0xff;

// Slot flags.
pub(super) const LIVE: u8 = 1;
pub(super) const REPLIED: u8 = 2;
pub(super) const INBOUND: u8 = 4;
pub(super) const REJECT: u8 = 8;
pub(super) const FAIL_COUNTED: u8 = 16;
pub(super) const FIN_ORIG: u8 = 32;
pub(super) const FIN_REPLY: u8 = 64;
pub(super) const OVERRIDE: u8 = 128;

/// In [`Slot::state`], beside the TCP state (bits 0..3) and the reason (bits 3..6): the flow is
/// on its source's unanswered flows ([`super::sources`]).
pub(super) const LISTED: u8 = 64;

/// How a flow's gateway was chosen (stored in 3 bits of the slot).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReasonKind {
    /// By the policy (load balance or failover).
    Policy,
    /// The operator forced the gateway.
    Forced,
    /// A rule matched.
    Rule,
    /// The client is pinned.
    Pin,
    /// SYN-retry rotation moved it.
    SynRetry,
    /// Opened from outside (port forward).
    Inbound,
    /// No gateway: not routed through a WAN.
    Direct,
    /// Sent by the caller to a given gateway without the policy: a LAN host reaching another
    /// through the router's own external address (hairpinning), or a host on a WAN's own subnet.
    Via,
}

impl ReasonKind {
    fn from_bits(b: u8) -> ReasonKind {
        match b {
            1 => ReasonKind::Forced,
            2 => ReasonKind::Rule,
            3 => ReasonKind::Pin,
            4 => ReasonKind::SynRetry,
            5 => ReasonKind::Inbound,
            6 => ReasonKind::Direct,
            7 => ReasonKind::Via,
            _ => ReasonKind::Policy,
        }
    }
    pub(super) fn of(r: &Reason) -> ReasonKind {
        match r {
            Reason::Forced => ReasonKind::Forced,
            Reason::Rule { .. } => ReasonKind::Rule,
            Reason::Pin { .. } => ReasonKind::Pin,
            Reason::Policy { .. } => ReasonKind::Policy,
            Reason::SynRetry { .. } => ReasonKind::SynRetry,
            Reason::Inbound => ReasonKind::Inbound,
        }
    }
}

/// One connection: exactly one cache line, holding everything a forwarded packet reads or writes.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub(super) struct Slot {
    /// The key from the inside host, split ([`FlowKey::split`]): `head` alone identifies an IPv4
    /// key, so the lookup compares 16 bytes.
    pub(super) head: [u8; 16],
    /// IPv6: the other 12 bytes of both addresses. IPv4: the caller's scratch
    /// ([`FlowTable::set_scratch`]), zero until set, zeroed whenever the flow's translation or
    /// gateway changes.
    pub(super) tail: [u8; 24],
    pub(super) nat_port: u16,
    pub(super) nat_addr: u8,
    pub(super) gateway: u8,
    /// Low 3 bits: [`TcpState`]; bits 3..6: [`ReasonKind`]; bit 6: [`LISTED`].
    pub(super) state: u8,
    pub(super) syns: u8,
    pub(super) flags: u8,
    pub(super) generation: u8,
    pub(super) last_seen: u32,
    /// Bytes per direction not yet folded into the flow's [`FlowCounters`] (with accounting on).
    pub(super) hot_bytes: [u32; 2],
    /// Packets per direction not yet folded into the flow's [`FlowCounters`].
    pub(super) hot_packets: [u16; 2],
}

const _: () = assert!(core::mem::size_of::<Slot>() == 64);

/// Bytes of [scratch](FlowTable::set_scratch) per IPv4 flow.
pub const SCRATCH: usize = 24;

/// The rest of a connection: what only creation, removal and link events touch.
#[derive(Clone, Copy)]
#[repr(C, align(16))]
pub(super) struct Links {
    pub(super) created: u32,
    pub(super) gw_next: u32,
    pub(super) gw_prev: u32,
    /// Its source's record ([`super::sources`]), or `NONE` until the flow is complete.
    pub(super) src: u32,
}

const _: () = assert!(core::mem::size_of::<Links>() == 16);

pub(super) const UNLINKED: Links = Links {
    created: 0,
    gw_next: NONE,
    gw_prev: NONE,
    src: NONE,
};

impl Slot {
    #[inline(always)]
    pub(super) fn key(&self) -> FlowKey {
        FlowKey::join(&self.head, &self.tail)
    }
    #[inline(always)]
    pub(super) fn proto(&self) -> u8 {
        self.head[12]
    }
    #[inline(always)]
    pub(super) fn is_v4(&self) -> bool {
        self.head[13] == Family::V4 as u8
    }
    pub(super) fn clear_scratch(&mut self) {
        if self.is_v4() {
            self.tail = [0; SCRATCH];
        }
    }
    pub(super) fn tcp(&self) -> TcpState {
        TcpState::from_bits(self.state)
    }
    pub(super) fn set_tcp(&mut self, s: TcpState) {
        self.state = (self.state & !7) | s as u8;
    }
    pub(super) fn reason(&self) -> ReasonKind {
        ReasonKind::from_bits((self.state >> 3) & 7)
    }
    pub(super) fn set_reason(&mut self, r: ReasonKind) {
        let bits = match r {
            ReasonKind::Policy => 0,
            ReasonKind::Forced => 1,
            ReasonKind::Rule => 2,
            ReasonKind::Pin => 3,
            ReasonKind::SynRetry => 4,
            ReasonKind::Inbound => 5,
            ReasonKind::Direct => 6,
            ReasonKind::Via => 7,
        };
        self.state = (self.state & !(7 << 3)) | (bits << 3);
    }
    pub(super) fn listed(&self) -> bool {
        self.state & LISTED != 0
    }
    pub(super) fn has(&self, f: u8) -> bool {
        self.flags & f != 0
    }
}

const DEAD: Slot = Slot {
    head: [0; 16],
    tail: [0; 24],
    nat_port: 0,
    nat_addr: NO_NAT,
    gateway: NO_GW,
    state: 0,
    syns: 0,
    flags: 0,
    generation: 0,
    last_seen: 0,
    hot_bytes: [0; 2],
    hot_packets: [0; 2],
};

/// Per-direction packet and byte counters of one flow, as
/// [`FlowInfo::counters`](super::FlowInfo::counters) reports them (the table-wide counts are
/// [`TableStats`](super::TableStats)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C, align(32))]
pub struct FlowCounters {
    /// Packets from the inside host, from the remote host.
    pub packets: [u64; 2],
    /// Bytes from the inside host, from the remote host.
    pub bytes: [u64; 2],
}

/// Count a packet of `bytes` bytes in slot `s` (number `i`): in its small counters, folded into
/// the totals in `acct` first when they would overflow.
#[inline(always)]
pub(super) fn count(s: &mut Slot, acct: &mut [FlowCounters], i: usize, dir: Dir, bytes: u32) {
    let d = dir as usize;
    let (p, b) = (s.hot_packets[d], s.hot_bytes[d]);
    match (p.checked_add(1), b.checked_add(bytes)) {
        (Some(p), Some(b)) => {
            s.hot_packets[d] = p;
            s.hot_bytes[d] = b;
        }
        _ => {
            if let Some(c) = acct.get_mut(i) {
                c.packets[d] = c.packets[d].saturating_add(u64::from(p) + 1);
                c.bytes[d] = c.bytes[d].saturating_add(u64::from(b) + u64::from(bytes));
            }
            s.hot_packets[d] = 0;
            s.hot_bytes[d] = 0;
        }
    }
}

impl FlowTable {
    /// A read-only view of a live flow, for the packet path.
    #[inline]
    pub fn flow(&self, id: FlowId) -> Option<FlowRef<'_>> {
        let s = self.slots.get(id.0 as usize)?;
        if !s.has(LIVE) {
            return None;
        }
        Some(FlowRef { t: self, s })
    }

    /// Store `data` in the scratch of IPv4 flow `id`: [`SCRATCH`] bytes of the caller's own,
    /// kept in the flow's slot (in the room an IPv4 key leaves), so reading them back through
    /// [`FlowRef::scratch`] costs no memory access beyond the lookup's. A packet path keeps what
    /// it precomputed for the flow there — its rewrite, checksum deltas, next hops — as VPP's NAT
    /// keeps them per session. The table never reads it; it zeroes it when the flow is created,
    /// re-mapped (SYN-retry rotation) or marked for reject, so all-zero must mean "nothing
    /// stored". Returns `false` (nothing stored) for a flow that is not live or is IPv6.
    #[inline]
    pub fn set_scratch(&mut self, id: FlowId, data: [u8; SCRATCH]) -> bool {
        match self.slots.get_mut(id.0 as usize) {
            Some(s) if s.has(LIVE) && s.is_v4() => {
                s.tail = data;
                true
            }
            _ => false,
        }
    }

    /// Zero every flow's scratch ([`FlowTable::set_scratch`]): for a new owner of the table, whose
    /// precomputed data would differ. O(max flows), once.
    pub fn clear_scratch(&mut self) {
        for s in self.slots.iter_mut() {
            s.clear_scratch();
        }
    }

    /// A free slot for a new flow. From the high-water mark on (by default: when the table is
    /// full), an unanswered flow is dropped first — the oldest of the source with the most of
    /// them — so one flow goes out for each that comes in: O(1), and the table stays at the mark
    /// while unanswered flows remain. Only when none remains is the table full.
    pub(super) fn alloc_slot(&mut self, now: Time) -> Result<u32, InsertError> {
        if self.live >= self.high_water {
            self.early_drop(now);
        }
        if let Some(i) = self.free.pop() {
            return Ok(i);
        }
        if self.slots.len() < self.cfg.max_flows as usize {
            self.slots.push(DEAD);
            self.links.push(UNLINKED);
            self.sources.push_slot();
            if self.cfg.accounting {
                self.acct.push(FlowCounters::default());
            }
            return Ok((self.slots.len() - 1) as u32);
        }
        self.stats.refused_full += 1;
        Err(InsertError::TableFull {
            max: self.cfg.max_flows,
        })
    }

    pub(super) fn free_slot(&mut self, i: usize) {
        self.slots[i].flags = 0;
        self.free.push(i as u32);
    }
}

/// A borrowed view of one live flow: what the packet path needs to rewrite a packet.
#[derive(Clone, Copy)]
pub struct FlowRef<'a> {
    pub(super) t: &'a FlowTable,
    pub(super) s: &'a Slot,
}

impl FlowRef<'_> {
    /// The key from the inside host.
    #[inline]
    pub fn key(&self) -> FlowKey {
        self.s.key()
    }

    /// The gateway, if the flow goes through one.
    #[inline]
    pub fn gateway(&self) -> Option<GatewayId> {
        (self.s.gateway != NO_GW).then_some(GatewayId(self.s.gateway))
    }

    /// The external address (16-byte field as in [`FlowKey`]) and port, if the flow is translated.
    #[inline]
    pub fn nat(&self) -> Option<(&[u8; 16], u16)> {
        if self.s.nat_addr == NO_NAT {
            return None;
        }
        self.t
            .ext_bytes
            .get(usize::from(self.s.nat_addr))
            .map(|a| (a, self.s.nat_port))
    }

    /// The flow's scratch ([`FlowTable::set_scratch`]); `None` for IPv6 flows, which have none.
    #[inline(always)]
    pub fn scratch(&self) -> Option<&[u8; SCRATCH]> {
        self.s.is_v4().then_some(&self.s.tail)
    }

    /// Whether it was opened from outside.
    #[inline]
    pub fn is_inbound(&self) -> bool {
        self.s.has(INBOUND)
    }

    /// Whether its gateway went down and its next packet must be rejected.
    #[inline]
    pub fn is_rejected(&self) -> bool {
        self.s.has(REJECT)
    }

    /// TCP state.
    #[inline]
    pub fn tcp(&self) -> TcpState {
        self.s.tcp()
    }

    /// SYNs seen from the opener.
    #[inline]
    pub fn syns(&self) -> u8 {
        self.s.syns
    }

    /// Why it takes its gateway (or why it has none).
    #[inline]
    pub fn reason(&self) -> ReasonKind {
        self.s.reason()
    }
}
