//! Internet checksums: RFC 1071 full sums, pseudo-header sums, RFC 1624 incremental updates,
//! a precomputable NAT [`Delta`], and helpers for partial ("checksum not ready") frames.
//!
//! # Vocabulary
//!
//! * A **sum** is the 16-bit ones'-complement sum of some 16-bit big-endian words, folded but
//!   *not* complemented. Sums of disjoint byte ranges combine with [`add`] (each range must start at
//!   an even offset of the checksummed region, or be an even number of bytes long).
//! * A **checksum** is the complemented sum, as stored in IPv4/TCP/UDP/ICMP headers.
//! * A **partial** L4 field (Linux `CHECKSUM_PARTIAL`, virtio `VIRTIO_NET_HDR_F_NEEDS_CSUM`)
//!   holds the folded pseudo-header *sum*, not complemented; the NIC (or
//!   [`complete_partial`]) later adds the L4 header and payload and complements the result.
//!
//! All functions are pure, allocation-free and total (they never panic on any input).

use core::net::{Ipv4Addr, Ipv6Addr};

/// Ones'-complement addition of two 16-bit sums (end-around carry).
#[inline]
pub const fn add(a: u16, b: u16) -> u16 {
    let s = a as u32 + b as u32;
    ((s & 0xffff) + (s >> 16)) as u16
}

/// Folds a 64-bit accumulator of 16-bit (or 32-bit) words into a 16-bit ones'-complement sum.
#[inline]
pub const fn fold(mut acc: u64) -> u16 {
    acc = (acc & 0xffff_ffff) + (acc >> 32);
    acc = (acc & 0xffff_ffff) + (acc >> 32);
    acc = (acc & 0xffff) + (acc >> 16);
    acc = (acc & 0xffff) + (acc >> 16);
    acc = (acc & 0xffff) + (acc >> 16);
    acc as u16
}

/// Folds a 32-bit accumulator of 16-bit terms (at most 65,537 of them) into a 16-bit
/// ones'-complement sum: two end-around carries. Summing terms first and folding once gives the
/// same sum as adding them one at a time with [`add`] (the addition is associative, and neither
/// way yields 0 unless every term is 0), with fewer operations.
#[inline(always)]
pub const fn fold32(acc: u32) -> u16 {
    let acc = (acc & 0xffff) + (acc >> 16);
    ((acc & 0xffff) + (acc >> 16)) as u16
}

/// `~old + new` over the two halves of a 32-bit word, as terms not yet folded (for [`fold32`]).
#[inline(always)]
pub const fn diff32_terms(old: u32, new: u32) -> u32 {
    let (o, n) = (!old, new);
    (o >> 16) + (o & 0xffff) + (n >> 16) + (n & 0xffff)
}

/// Adds the bytes of `data` (as big-endian 16-bit words, an odd last byte padded with zero) to a
/// 64-bit accumulator. Eight bytes are loaded at a time and split into two 32-bit halves, so the
/// accumulator cannot overflow for any slice shorter than 2^33 bytes.
#[inline]
fn accumulate(data: &[u8], mut acc: u64) -> u64 {
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        let w = u64::from_be_bytes(w);
        acc += (w >> 32) + (w & 0xffff_ffff);
    }
    let rest = chunks.remainder();
    let mut tail = [0u8; 8];
    if let Some(t) = tail.get_mut(..rest.len()) {
        t.copy_from_slice(rest);
    }
    let w = u64::from_be_bytes(tail);
    acc + (w >> 32) + (w & 0xffff_ffff)
}

/// The RFC 1071 sum of `data` (folded, not complemented).
#[inline]
pub fn sum(data: &[u8]) -> u16 {
    fold(accumulate(data, 0))
}

/// The RFC 1071 checksum of `data`: the complement of [`sum`]. Writing it into a zeroed checksum
/// field inside `data` makes [`sum`] of the result `0xffff` (that is how to verify one).
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    !sum(data)
}

/// The RFC 1071 checksum of `data` started from an existing sum (for example a pseudo-header).
#[inline]
pub fn checksum_with(initial: u16, data: &[u8]) -> u16 {
    !fold(accumulate(data, u64::from(initial)))
}

/// True when `data`, checksum field included, sums to `0xffff` (the checksum verifies).
#[inline]
pub fn verify(data: &[u8]) -> bool {
    sum(data) == 0xffff
}

/// The sum of the IPv4 pseudo-header (RFC 793/768): source, destination, zero, protocol and the
/// L4 length (header plus payload).
#[inline]
pub fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, l4_len: u16) -> u16 {
    let s = u32::from(src);
    let d = u32::from(dst);
    fold(
        u64::from(s >> 16)
            + u64::from(s & 0xffff)
            + u64::from(d >> 16)
            + u64::from(d & 0xffff)
            + u64::from(proto)
            + u64::from(l4_len),
    )
}

/// The sum of the IPv6 pseudo-header (RFC 8200 §8.1): addresses, 32-bit upper-layer length,
/// next header.
#[inline]
pub fn pseudo_header_v6(src: &Ipv6Addr, dst: &Ipv6Addr, next_header: u8, l4_len: u32) -> u16 {
    let acc = accumulate(&src.octets(), 0);
    let acc = accumulate(&dst.octets(), acc);
    fold(acc + u64::from(l4_len >> 16) + u64::from(l4_len & 0xffff) + u64::from(next_header))
}

/// The full TCP/UDP checksum of an IPv4 L4 segment (`segment` with its checksum field zeroed).
/// For UDP use [`udp_wire`] on the result to map a computed `0` to `0xffff`.
#[inline]
pub fn l4_checksum_v4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, segment: &[u8]) -> u16 {
    let len = u16::try_from(segment.len()).unwrap_or(u16::MAX);
    checksum_with(pseudo_header_v4(src, dst, proto, len), segment)
}

/// RFC 768: a UDP checksum that computes to `0` is transmitted as `0xffff` (zero means "none").
#[inline]
pub const fn udp_wire(csum: u16) -> u16 {
    if csum == 0 { 0xffff } else { csum }
}

/// RFC 1624 eqn. 3: the checksum `csum` after one covered 16-bit word changed from `old` to `new`.
#[inline]
pub const fn update16(csum: u16, old: u16, new: u16) -> u16 {
    !add(add(!csum, !old), new)
}

/// RFC 1624 for a 32-bit field (an IPv4 address): `csum` after the field changed from `old` to
/// `new`.
#[inline]
pub fn update32(csum: u16, old: Ipv4Addr, new: Ipv4Addr) -> u16 {
    !add(!csum, diff32(u32::from(old), u32::from(new)))
}

/// The sum `s` of a partial checksum field after one covered word changed from `old` to `new`
/// (non-complemented arithmetic: `s + ~old + new`).
#[inline]
pub const fn update16_partial(s: u16, old: u16, new: u16) -> u16 {
    add(add(s, !old), new)
}

/// The sum `s` of a partial checksum field after a covered IPv4 address changed from `old` to
/// `new` (non-complemented arithmetic).
#[inline]
pub fn update32_partial(s: u16, old: Ipv4Addr, new: Ipv4Addr) -> u16 {
    add(s, diff32(u32::from(old), u32::from(new)))
}

/// `~old + new` over the two halves of a 32-bit word.
#[inline(always)]
const fn diff32(old: u32, new: u32) -> u16 {
    fold32(diff32_terms(old, new))
}

/// A precomputed RFC 1624 checksum adjustment for one NAT rewrite of an IPv4 address and an L4
/// port (or ICMP query identifier).
///
/// Compute it once per NAT session and direction, then apply it to every packet of that
/// direction: two ones'-complement additions per checksum field instead of four. Deltas compose
/// with [`Delta::then`] (for example source and destination rewritten together).
///
/// Which part goes where:
///
/// | field | covers | method |
/// |---|---|---|
/// | IPv4 header checksum | addresses | [`apply_ip`](Self::apply_ip) |
/// | TCP checksum | pseudo-header addresses + ports | [`apply_tcp`](Self::apply_tcp) |
/// | UDP checksum (0 = none) | same as TCP | [`apply_udp`](Self::apply_udp) |
/// | ICMP checksum (no pseudo-header) | identifier only | [`apply_icmp`](Self::apply_icmp) |
/// | partial TCP/UDP field | pseudo-header addresses only | [`apply_partial`](Self::apply_partial) |
///
/// ```
/// use altroute_packet::checksum::{Delta, update32, update16};
/// use std::net::Ipv4Addr;
/// let (a, b) = (Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(192, 0, 2, 1));
/// let d = Delta::new(a, b, 40000, 61000);
/// let c = 0x1234;
/// assert_eq!(d.apply_tcp(c), update16(update32(c, a, b), 40000, 61000));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Delta {
    /// `~old + new` summed over the changed address words.
    addr: u16,
    /// `~old + new` of the changed port / identifier.
    port: u16,
}

impl Delta {
    /// The identity (no change).
    pub const NONE: Delta = Delta { addr: 0, port: 0 };

    /// The adjustment for an address change `old_addr → new_addr` and a port change
    /// `old_port → new_port` (pass equal ports for an address-only rewrite).
    #[inline]
    pub fn new(old_addr: Ipv4Addr, new_addr: Ipv4Addr, old_port: u16, new_port: u16) -> Self {
        Delta {
            addr: diff32(u32::from(old_addr), u32::from(new_addr)),
            port: add(!old_port, new_port),
        }
    }

    /// The adjustment for an address change only.
    #[inline]
    pub fn addr(old_addr: Ipv4Addr, new_addr: Ipv4Addr) -> Self {
        Delta {
            addr: diff32(u32::from(old_addr), u32::from(new_addr)),
            port: 0,
        }
    }

    /// The adjustment for a port (or ICMP identifier) change only.
    #[inline]
    pub fn port(old_port: u16, new_port: u16) -> Self {
        Delta {
            addr: 0,
            port: add(!old_port, new_port),
        }
    }

    /// Both rewrites: `self` then `other`.
    #[inline]
    #[must_use]
    pub const fn then(self, other: Delta) -> Delta {
        Delta {
            addr: add(self.addr, other.addr),
            port: add(self.port, other.port),
        }
    }

    /// The IPv4 header checksum after the rewrite (covers the addresses only).
    #[inline]
    pub const fn apply_ip(self, csum: u16) -> u16 {
        !add(!csum, self.addr)
    }

    /// The TCP checksum after the rewrite (pseudo-header addresses and ports).
    #[inline]
    pub const fn apply_tcp(self, csum: u16) -> u16 {
        !add(add(!csum, self.addr), self.port)
    }

    /// The UDP checksum after the rewrite: `0` ("no checksum") stays `0`, and a result of `0` is
    /// sent as `0xffff` (RFC 768).
    #[inline]
    pub const fn apply_udp(self, csum: u16) -> u16 {
        if csum == 0 {
            0
        } else {
            udp_wire(self.apply_tcp(csum))
        }
    }

    /// The ICMPv4 checksum after the rewrite: ICMPv4 has no pseudo-header, so only the identifier
    /// change counts.
    #[inline]
    pub const fn apply_icmp(self, csum: u16) -> u16 {
        !add(!csum, self.port)
    }

    /// A partial (not complemented, pseudo-header-only) TCP/UDP field after the rewrite: only the
    /// addresses are in it; the ports are summed later with the rest of the segment.
    #[inline]
    pub const fn apply_partial(self, partial: u16) -> u16 {
        add(partial, self.addr)
    }
}

/// Why [`complete_partial`] could not finish a checksum.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PartialError {
    /// `csum_start + csum_offset + 2` is past the end of the frame, or the field lies before
    /// `csum_start`.
    #[error("partial checksum field out of range: start {start} + offset {offset} in {len} bytes")]
    OutOfRange {
        /// `csum_start` as given.
        start: usize,
        /// `csum_offset` as given.
        offset: usize,
        /// The frame length.
        len: usize,
    },
}

/// Finishes a partial checksum in software, as a NIC would: sums `frame[csum_start..]` (the field
/// at `csum_start + csum_offset` holds the pseudo-header sum) and stores the complement there.
///
/// `csum_start`/`csum_offset` are the virtio-net / `skb` values (for TCP over untagged IPv4
/// without options: 34 and 16; UDP: 34 and 6). The sum runs to the end of `frame`, as the
/// kernel's runs to the end of the skb: pass the frame cut at the end of the IP packet if it may
/// carry Ethernet padding or trailer bytes. The plain complement is stored and returned; use
/// [`complete_partial_udp`] for UDP, which applies the RFC 768 zero rule.
#[inline]
pub fn complete_partial(
    frame: &mut [u8],
    csum_start: usize,
    csum_offset: usize,
) -> Result<u16, PartialError> {
    let len = frame.len();
    let err = PartialError::OutOfRange {
        start: csum_start,
        offset: csum_offset,
        len,
    };
    let at = csum_start.checked_add(csum_offset).ok_or(err)?;
    let end = at.checked_add(2).ok_or(err)?;
    if end > len {
        return Err(err);
    }
    let c = frame.get(csum_start..).map(checksum).ok_or(err)?;
    frame
        .get_mut(at..end)
        .ok_or(err)?
        .copy_from_slice(&c.to_be_bytes());
    Ok(c)
}

/// [`complete_partial`] for UDP: a computed `0` is stored as `0xffff` (RFC 768).
#[inline]
pub fn complete_partial_udp(
    frame: &mut [u8],
    csum_start: usize,
    csum_offset: usize,
) -> Result<u16, PartialError> {
    let c = complete_partial(frame, csum_start, csum_offset)?;
    if c == 0 {
        let at = csum_start + csum_offset; // checked by complete_partial
        if let Some(f) = frame.get_mut(at..at + 2) {
            f.copy_from_slice(&0xffffu16.to_be_bytes());
        }
        return Ok(0xffff);
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Reference: the textbook 16-bit loop.
    fn slow_sum(data: &[u8]) -> u16 {
        let mut acc: u32 = 0;
        for pair in data.chunks(2) {
            let hi = u32::from(pair[0]) << 8;
            let lo = pair.get(1).map_or(0, |b| u32::from(*b));
            acc += hi | lo;
            acc = (acc & 0xffff) + (acc >> 16);
        }
        acc as u16
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3 example: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2.
        let d = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(sum(&d), 0xddf2);
        assert_eq!(checksum(&d), !0xddf2);
    }

    #[test]
    fn known_ipv4_header() {
        // The widely cited example IPv4 header (192.168.0.1 -> 192.168.0.199), checksum b861.
        let h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert!(verify(&h));
        let mut z = h;
        z[10] = 0;
        z[11] = 0;
        assert_eq!(checksum(&z), 0xb861);
    }

    #[test]
    fn udp_zero_stays_zero() {
        let d = Delta::new(
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(192, 0, 2, 1),
            1,
            2,
        );
        assert_eq!(d.apply_udp(0), 0);
    }

    #[test]
    fn partial_out_of_range_is_an_error() {
        let mut f = [0u8; 10];
        assert!(complete_partial(&mut f, 8, 1).is_err());
        assert!(complete_partial(&mut f, usize::MAX, 1).is_err());
        assert!(complete_partial(&mut f, 0, 8).is_ok());
    }

    /// Builds `[pseudo-less] ip header(20) + l4` for a property test: returns (frame, l4 proto).
    fn mk_segment(proto: u8, payload: &[u8], sport: u16, dport: u16) -> Vec<u8> {
        let mut s = Vec::new();
        match proto {
            6 => {
                s.extend_from_slice(&sport.to_be_bytes());
                s.extend_from_slice(&dport.to_be_bytes());
                s.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 2, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0]);
            }
            _ => {
                s.extend_from_slice(&sport.to_be_bytes());
                s.extend_from_slice(&dport.to_be_bytes());
                let l = (8 + payload.len()) as u16;
                s.extend_from_slice(&l.to_be_bytes());
                s.extend_from_slice(&[0, 0]);
            }
        }
        s.extend_from_slice(payload);
        s
    }

    fn csum_off(proto: u8) -> usize {
        if proto == 6 { 16 } else { 6 }
    }

    fn full(proto: u8, src: Ipv4Addr, dst: Ipv4Addr, seg: &mut [u8]) -> u16 {
        let o = csum_off(proto);
        seg[o] = 0;
        seg[o + 1] = 0;
        let c = l4_checksum_v4(src, dst, proto, seg);
        let c = if proto == 17 { udp_wire(c) } else { c };
        seg[o..o + 2].copy_from_slice(&c.to_be_bytes());
        c
    }

    fn ip_header(src: Ipv4Addr, dst: Ipv4Addr, id: u16) -> [u8; 20] {
        let mut h = [
            0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        h[4..6].copy_from_slice(&id.to_be_bytes());
        h[12..16].copy_from_slice(&src.octets());
        h[16..20].copy_from_slice(&dst.octets());
        let c = checksum(&h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        h
    }

    proptest! {
        #[test]
        fn fast_sum_matches_reference(data in proptest::collection::vec(any::<u8>(), 0..300), init in any::<u16>()) {
            prop_assert_eq!(sum(&data), fold(u64::from(slow_sum(&data))));
            prop_assert_eq!(checksum_with(init, &data), !add(init, slow_sum(&data)));
        }

        #[test]
        fn incremental_equals_full(
            proto in prop_oneof![Just(6u8), Just(17u8)],
            payload in proptest::collection::vec(any::<u8>(), 0..200),
            src in any::<u32>(), dst in any::<u32>(), nsrc in any::<u32>(),
            sport in any::<u16>(), dport in any::<u16>(), nsport in any::<u16>(),
            id in any::<u16>(),
        ) {
            let (src, dst, nsrc) = (Ipv4Addr::from(src), Ipv4Addr::from(dst), Ipv4Addr::from(nsrc));
            // L4
            let mut seg = mk_segment(proto, &payload, sport, dport);
            let old = full(proto, src, dst, &mut seg);
            let d = Delta::new(src, nsrc, sport, nsport);
            let inc = if proto == 17 { d.apply_udp(old) } else { d.apply_tcp(old) };
            let step = update16(update32(old, src, nsrc), sport, nsport);
            let step = if proto == 17 { udp_wire(step) } else { step };
            seg[0..2].copy_from_slice(&nsport.to_be_bytes());
            let want = full(proto, nsrc, dst, &mut seg);
            prop_assert_eq!(inc, want);
            prop_assert_eq!(step, want);
            // IP header
            let h = ip_header(src, dst, id);
            let hc = u16::from_be_bytes([h[10], h[11]]);
            let n = ip_header(nsrc, dst, id);
            prop_assert_eq!(d.apply_ip(hc), u16::from_be_bytes([n[10], n[11]]));
            prop_assert_eq!(update32(hc, src, nsrc), u16::from_be_bytes([n[10], n[11]]));
        }

        #[test]
        fn composed_deltas_equal_sequential_and_full(
            payload in proptest::collection::vec(any::<u8>(), 0..100),
            src in any::<u32>(), dst in any::<u32>(), nsrc in any::<u32>(), ndst in any::<u32>(),
            sport in any::<u16>(), dport in any::<u16>(), nsport in any::<u16>(), ndport in any::<u16>(),
        ) {
            let a = |x: u32| Ipv4Addr::from(x);
            let mut seg = mk_segment(6, &payload, sport, dport);
            let c = full(6, a(src), a(dst), &mut seg);
            let d1 = Delta::new(a(src), a(nsrc), sport, nsport);
            let d2 = Delta::new(a(dst), a(ndst), dport, ndport);
            seg[0..2].copy_from_slice(&nsport.to_be_bytes());
            seg[2..4].copy_from_slice(&ndport.to_be_bytes());
            let want = full(6, a(nsrc), a(ndst), &mut seg);
            prop_assert_eq!(d1.then(d2).apply_tcp(c), want);
            prop_assert_eq!(d2.apply_tcp(d1.apply_tcp(c)), want);
            prop_assert_eq!(Delta::NONE.apply_tcp(c), c);
        }

        #[test]
        fn icmp_identifier_delta(
            payload in proptest::collection::vec(any::<u8>(), 0..64),
            id in any::<u16>(), nid in any::<u16>(), seq in any::<u16>(),
        ) {
            let mut m = vec![8u8, 0, 0, 0];
            m.extend_from_slice(&id.to_be_bytes());
            m.extend_from_slice(&seq.to_be_bytes());
            m.extend_from_slice(&payload);
            let c = checksum(&m);
            m[4..6].copy_from_slice(&nid.to_be_bytes());
            let want = checksum(&m);
            let d = Delta::new(Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(192, 0, 2, 1), id, nid);
            prop_assert_eq!(d.apply_icmp(c), want);
        }

        #[test]
        fn partial_then_complete_equals_full(
            proto in prop_oneof![Just(6u8), Just(17u8)],
            payload in proptest::collection::vec(any::<u8>(), 0..200),
            src in any::<u32>(), dst in any::<u32>(), nsrc in any::<u32>(),
            sport in any::<u16>(), dport in any::<u16>(), nsport in any::<u16>(),
        ) {
            let (src, dst, nsrc) = (Ipv4Addr::from(src), Ipv4Addr::from(dst), Ipv4Addr::from(nsrc));
            let seg = mk_segment(proto, &payload, sport, dport);
            let len = seg.len() as u16;
            // A frame: 14 bytes of L2, 20 of IP (content irrelevant here), then the segment.
            let mut frame = vec![0u8; 34];
            frame.extend_from_slice(&seg);
            let o = csum_off(proto);
            let p = pseudo_header_v4(src, dst, proto, len);
            frame[34 + o..36 + o].copy_from_slice(&p.to_be_bytes());
            // NAT the partial frame: address (pseudo-header sum) and port (data, no fix needed).
            let d = Delta::new(src, nsrc, sport, nsport);
            let np = d.apply_partial(p);
            prop_assert_eq!(np, update16_partial(update16_partial(p, (u32::from(src) >> 16) as u16, (u32::from(nsrc) >> 16) as u16), u32::from(src) as u16, u32::from(nsrc) as u16));
            prop_assert_eq!(np, update32_partial(p, src, nsrc));
            frame[34 + o..36 + o].copy_from_slice(&np.to_be_bytes());
            frame[34..36].copy_from_slice(&nsport.to_be_bytes());
            let got = if proto == 17 {
                complete_partial_udp(&mut frame, 34, o).unwrap()
            } else {
                complete_partial(&mut frame, 34, o).unwrap()
            };
            let mut seg2 = frame[34..].to_vec();
            let want = full(proto, nsrc, dst, &mut seg2);
            prop_assert_eq!(got, want);
        }
    }
}
