//! [`FlowKey`]: the fixed-size identity of one direction of a connection.

use core::fmt;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// IP protocol numbers the table gives special meaning to.
pub mod proto {
    /// ICMP for IPv4.
    pub const ICMP: u8 = 1;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// ICMPv6.
    pub const ICMPV6: u8 = 58;
}

/// Address family of a [`FlowKey`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
#[repr(u8)]
pub enum Family {
    /// IPv4: the addresses occupy the first 4 bytes of their 16-byte fields, the rest is zero.
    V4 = 4,
    /// IPv6.
    V6 = 6,
}

/// One direction of a connection: addresses, protocol and ports.
///
/// The key is 40 bytes, `Copy`, and hashes and compares as plain bytes, so it can be built on the
/// packet path without allocation. IPv4 addresses occupy the first four bytes of the 16-byte address
/// fields and the other twelve are zero, so an IPv4 key never equals an IPv6 key.
///
/// Ports are in host byte order. For ICMP and ICMPv6 *query* messages (echo and friends) the
/// identifier stands in for the port, placed so that a request and its reply produce mirrored keys:
/// a request carries the id in [`sport`](Self::sport) and `0` in [`dport`](Self::dport); a reply
/// carries `0` in `sport` and the id in `dport`. Protocols without ports use `0` for both.
///
/// ```
/// use altroute_flow::{FlowKey, proto};
/// use std::net::Ipv4Addr;
///
/// let k = FlowKey::v4(Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(203, 0, 113, 10), proto::TCP, 40000, 443);
/// assert_eq!(k.reversed().reversed(), k);
/// assert_eq!(k.src_ip().to_string(), "10.0.0.2");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(C)]
pub struct FlowKey {
    src: [u8; 16],
    dst: [u8; 16],
    /// Source port (host order), or the ICMP query id of a request.
    pub sport: u16,
    /// Destination port (host order), or the ICMP query id of a reply.
    pub dport: u16,
    /// IP protocol number (see [`proto`]).
    pub proto: u8,
    family: Family,
    _pad: [u8; 2],
}

const _: () = assert!(core::mem::size_of::<FlowKey>() == 40);
const _: () = assert!(core::mem::align_of::<FlowKey>() == 2);

#[inline]
fn v4_field(a: Ipv4Addr) -> [u8; 16] {
    let mut f = [0u8; 16];
    f[..4].copy_from_slice(&a.octets());
    f
}

impl FlowKey {
    /// An all-zero IPv4 key (a placeholder for empty slots).
    pub const ZERO: FlowKey = FlowKey {
        src: [0; 16],
        dst: [0; 16],
        sport: 0,
        dport: 0,
        proto: 0,
        family: Family::V4,
        _pad: [0; 2],
    };

    /// Overwrite the source field (crate-internal: for the table's synthetic mapping keys).
    #[inline]
    pub(crate) fn set_src_bytes(&mut self, b: [u8; 16]) {
        self.src = b;
    }

    /// Mark the key as a synthetic one no packet can produce (real keys have zero padding).
    #[inline]
    pub(crate) fn mark(&mut self, m: u8) {
        self._pad[0] = m;
    }

    /// The key as a table slot stores it: `head` alone identifies an IPv4 key (the first 4 bytes
    /// of each address, the ports, protocol, family and padding); `tail` holds the other 12 bytes
    /// of each address, all zero for IPv4, so an IPv4 slot can lend those 24 bytes out.
    #[inline(always)]
    pub(crate) fn split(&self) -> ([u8; 16], [u8; 24]) {
        let mut head = [0u8; 16];
        head[..4].copy_from_slice(&self.src[..4]);
        head[4..8].copy_from_slice(&self.dst[..4]);
        head[8..10].copy_from_slice(&self.sport.to_ne_bytes());
        head[10..12].copy_from_slice(&self.dport.to_ne_bytes());
        head[12] = self.proto;
        head[13] = self.family as u8;
        head[14..16].copy_from_slice(&self._pad);
        let mut tail = [0u8; 24];
        tail[..12].copy_from_slice(&self.src[4..]);
        tail[12..].copy_from_slice(&self.dst[4..]);
        (head, tail)
    }

    /// Whether this is the key of the packets answering the IPv4 flow whose stored head is `head`
    /// ([`FlowKey::split`]), after translation to `ext`:`port`: the remote end as source, the
    /// translated address and port as destination. Compared field by field, without branches.
    #[inline(always)]
    pub(crate) fn is_reply_of(&self, head: &[u8; 16], ext: [u8; 4], port: u16) -> bool {
        let w = |b: &[u8]| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
        let rest = [self.proto, self.family as u8, self._pad[0], self._pad[1]];
        (w(&self.src) == w(&head[4..8]))
            & (w(&self.dst) == u32::from_ne_bytes(ext))
            & (self.sport == u16::from_ne_bytes([head[10], head[11]]))
            & (self.dport == port)
            & (u32::from_ne_bytes(rest) == w(&head[12..16]))
    }

    /// The `head` half of [`FlowKey::split`] alone (what an IPv4 key is compared by), as two
    /// native-endian words ([`head_words`]).
    #[inline(always)]
    pub(crate) fn head_words(&self) -> [u64; 2] {
        head_words(&self.split().0)
    }

    /// The key [`FlowKey::split`] gave `head` and `tail` for; an IPv4 head ignores `tail`.
    #[inline]
    pub(crate) fn join(head: &[u8; 16], tail: &[u8; 24]) -> FlowKey {
        let family = if head[13] == Family::V6 as u8 {
            Family::V6
        } else {
            Family::V4
        };
        let (mut src, mut dst) = ([0u8; 16], [0u8; 16]);
        src[..4].copy_from_slice(&head[..4]);
        dst[..4].copy_from_slice(&head[4..8]);
        if family == Family::V6 {
            src[4..].copy_from_slice(&tail[..12]);
            dst[4..].copy_from_slice(&tail[12..]);
        }
        FlowKey {
            src,
            dst,
            sport: u16::from_ne_bytes([head[8], head[9]]),
            dport: u16::from_ne_bytes([head[10], head[11]]),
            proto: head[12],
            family,
            _pad: [head[14], head[15]],
        }
    }

    /// An IPv4 key.
    #[inline]
    pub fn v4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, sport: u16, dport: u16) -> Self {
        FlowKey {
            src: v4_field(src),
            dst: v4_field(dst),
            sport,
            dport,
            proto,
            family: Family::V4,
            _pad: [0; 2],
        }
    }

    /// An IPv4 key from raw network-order address words, as read off a packet.
    #[inline]
    pub fn v4_raw(src: [u8; 4], dst: [u8; 4], proto: u8, sport: u16, dport: u16) -> Self {
        Self::v4(
            Ipv4Addr::from(src),
            Ipv4Addr::from(dst),
            proto,
            sport,
            dport,
        )
    }

    /// An IPv6 key.
    #[inline]
    pub fn v6(src: Ipv6Addr, dst: Ipv6Addr, proto: u8, sport: u16, dport: u16) -> Self {
        FlowKey {
            src: src.octets(),
            dst: dst.octets(),
            sport,
            dport,
            proto,
            family: Family::V6,
            _pad: [0; 2],
        }
    }

    /// A key from generic addresses; `None` when the families differ.
    pub fn new(src: IpAddr, dst: IpAddr, proto: u8, sport: u16, dport: u16) -> Option<Self> {
        match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => Some(Self::v4(s, d, proto, sport, dport)),
            (IpAddr::V6(s), IpAddr::V6(d)) => Some(Self::v6(s, d, proto, sport, dport)),
            _ => None,
        }
    }

    /// The address family.
    #[inline]
    pub fn family(&self) -> Family {
        self.family
    }

    /// The source address.
    #[inline]
    pub fn src_ip(&self) -> IpAddr {
        ip_of(self.family, &self.src)
    }

    /// The destination address.
    #[inline]
    pub fn dst_ip(&self) -> IpAddr {
        ip_of(self.family, &self.dst)
    }

    /// The raw 16-byte source field (IPv4: 4 address bytes then zeros).
    #[inline]
    pub fn src_bytes(&self) -> &[u8; 16] {
        &self.src
    }

    /// The raw 16-byte destination field (IPv4: 4 address bytes then zeros).
    #[inline]
    pub fn dst_bytes(&self) -> &[u8; 16] {
        &self.dst
    }

    /// The IPv4 source address, if this is an IPv4 key.
    #[inline]
    pub fn src_v4(&self) -> Option<Ipv4Addr> {
        match self.family {
            Family::V4 => Some(Ipv4Addr::new(
                self.src[0],
                self.src[1],
                self.src[2],
                self.src[3],
            )),
            Family::V6 => None,
        }
    }

    /// The IPv4 destination address, if this is an IPv4 key.
    #[inline]
    pub fn dst_v4(&self) -> Option<Ipv4Addr> {
        match self.family {
            Family::V4 => Some(Ipv4Addr::new(
                self.dst[0],
                self.dst[1],
                self.dst[2],
                self.dst[3],
            )),
            Family::V6 => None,
        }
    }

    /// The key of the opposite direction without translation: addresses and ports swapped.
    #[inline]
    pub fn reversed(&self) -> Self {
        FlowKey {
            src: self.dst,
            dst: self.src,
            sport: self.dport,
            dport: self.sport,
            ..*self
        }
    }

    /// The same key with another source address and port (what source NAT does to it).
    #[inline]
    pub fn with_src(&self, src: IpAddr, sport: u16) -> Option<Self> {
        Self::new(src, self.dst_ip(), self.proto, sport, self.dport)
    }

    /// The key as 5 little-endian 64-bit words, for hashing.
    #[inline]
    pub(crate) fn words(&self) -> [u64; 5] {
        let mut w = [0u64; 5];
        let mut i = 0;
        while i < 2 {
            w[i] = u64::from_le_bytes(arr8(&self.src, i * 8));
            w[2 + i] = u64::from_le_bytes(arr8(&self.dst, i * 8));
            i += 1;
        }
        w[4] = u64::from(self.sport)
            | u64::from(self.dport) << 16
            | u64::from(self.proto) << 32
            | (self.family as u64) << 40
            | u64::from(self._pad[0]) << 48;
        w
    }

    /// The hash the table's index files the key under: for IPv4 keys a two-word hash of the
    /// 16 bytes that identify them ([`FlowKey::split`]'s head), cheaper than [`FlowKey::hash64`];
    /// for IPv6 keys `hash64`. Internal to a table (never persisted, never used to pick a
    /// gateway), so it may change between releases.
    #[inline(always)]
    pub(crate) fn index_hash(&self) -> u64 {
        if self.family == Family::V4 {
            let [a, b] = self.head_words();
            crate::hash::hash2(a, b)
        } else {
            self.hash64()
        }
    }

    /// The 64-bit hash the load balancer uses. It is stable across platforms,
    /// processes and releases (unlike `std` or `ahash` hashers), so every worker and every restart
    /// sends a flow the same way.
    #[inline]
    pub fn hash64(&self) -> u64 {
        crate::hash::hash_words(&self.words(), 0)
    }
}

/// A key head's 16 bytes ([`FlowKey::split`]) as two native-endian words.
#[inline(always)]
pub(crate) fn head_words(h: &[u8; 16]) -> [u64; 2] {
    let (a, b) = h.split_at(8);
    let w = |x: &[u8]| {
        let mut o = [0u8; 8];
        o.copy_from_slice(x);
        u64::from_ne_bytes(o)
    };
    [w(a), w(b)]
}

#[inline]
fn arr8(b: &[u8; 16], at: usize) -> [u8; 8] {
    let mut o = [0u8; 8];
    o.copy_from_slice(&b[at..at + 8]);
    o
}

fn ip_of(f: Family, b: &[u8; 16]) -> IpAddr {
    match f {
        Family::V4 => IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3])),
        Family::V6 => IpAddr::V6(Ipv6Addr::from(*b)),
    }
}

impl fmt::Debug for FlowKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for FlowKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = match self.proto {
            proto::TCP => "tcp",
            proto::UDP => "udp",
            proto::ICMP => "icmp",
            proto::ICMPV6 => "icmp6",
            _ => "ip",
        };
        match self.family {
            Family::V4 => write!(
                f,
                "{p} {}:{} -> {}:{}",
                self.src_ip(),
                self.sport,
                self.dst_ip(),
                self.dport
            ),
            Family::V6 => write!(
                f,
                "{p} [{}]:{} -> [{}]:{}",
                self.src_ip(),
                self.sport,
                self.dst_ip(),
                self.dport
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_and_v6_never_collide() {
        let a = FlowKey::v4(
            Ipv4Addr::new(1, 2, 3, 4),
            Ipv4Addr::new(5, 6, 7, 8),
            proto::UDP,
            1,
            2,
        );
        let mut s = [0u8; 16];
        s[..4].copy_from_slice(&[1, 2, 3, 4]);
        let mut d = [0u8; 16];
        d[..4].copy_from_slice(&[5, 6, 7, 8]);
        let b = FlowKey::v6(Ipv6Addr::from(s), Ipv6Addr::from(d), proto::UDP, 1, 2);
        assert_ne!(a, b);
        assert_ne!(a.hash64(), b.hash64());
    }

    #[test]
    fn display_and_accessors() {
        let k = FlowKey::v4(
            Ipv4Addr::new(10, 0, 0, 2),
            Ipv4Addr::new(192, 0, 2, 1),
            proto::TCP,
            1000,
            80,
        );
        assert_eq!(k.to_string(), "tcp 10.0.0.2:1000 -> 192.0.2.1:80");
        assert_eq!(k.src_v4(), Some(Ipv4Addr::new(10, 0, 0, 2)));
        assert_eq!(k.reversed().src_v4(), Some(Ipv4Addr::new(192, 0, 2, 1)));
        assert_eq!(k.reversed().sport, 80);
        let n = k
            .with_src(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)), 5000)
            .unwrap();
        assert_eq!(n.to_string(), "tcp 198.51.100.1:5000 -> 192.0.2.1:80");
    }

    #[test]
    fn hash_is_stable() {
        // The hash is part of the load balancer's contract: a release must not move flows.
        let k = FlowKey::v4(
            Ipv4Addr::new(10, 0, 0, 2),
            Ipv4Addr::new(192, 0, 2, 1),
            proto::TCP,
            1000,
            80,
        );
        assert_eq!(k.hash64(), k.hash64());
        let k2 = FlowKey::v4(
            Ipv4Addr::new(10, 0, 0, 2),
            Ipv4Addr::new(192, 0, 2, 1),
            proto::TCP,
            1001,
            80,
        );
        assert_ne!(k.hash64(), k2.hash64());
    }
}
