//! The summed RFC 1624 rewrite of TCP/UDP headers against `Delta`'s one-addition-at-a-time
//! arithmetic.

use super::*;
use proptest::prelude::Strategy;

/// What `rewrite_fixed` computed before it summed its terms once per field: `Delta`, one
/// ones'-complement addition at a time. The reference for the property below.
fn rewrite_by_delta(
    h: &mut [u8; 38],
    csum_at: usize,
    udp: bool,
    partial: bool,
    snat: Option<(Ipv4Addr, u16)>,
    dnat: Option<(Ipv4Addr, u16)>,
) {
    let r16 = |h: &[u8; 38], at: usize| u16::from_be_bytes([h[at], h[at + 1]]);
    let r32 = |h: &[u8; 38], at: usize| Ipv4Addr::new(h[at], h[at + 1], h[at + 2], h[at + 3]);
    let (old_src, old_dst) = (r32(h, 12), r32(h, 16));
    let (old_ttl, old_ip, old_l4) = (r16(h, 8), r16(h, 10), r16(h, csum_at));
    let (old_sport, old_dport) = (r16(h, 20), r16(h, 22));
    let mut d = Delta::NONE;
    let (mut src, mut dst, mut sport, mut dport) = (old_src, old_dst, old_sport, old_dport);
    if let Some((a, p)) = snat {
        d = d.then(Delta::new(old_src, a, old_sport, p));
        (src, sport) = (a, p);
    }
    if let Some((a, p)) = dnat {
        d = d.then(Delta::new(old_dst, a, old_dport, p));
        (dst, dport) = (a, p);
    }
    let new_ttl = old_ttl.wrapping_sub(0x0100);
    let ip = checksum::update16(d.apply_ip(old_ip), old_ttl, new_ttl);
    let l4 = if partial {
        d.apply_partial(old_l4)
    } else if udp {
        d.apply_udp(old_l4)
    } else {
        d.apply_tcp(old_l4)
    };
    h[8..10].copy_from_slice(&new_ttl.to_be_bytes());
    h[10..12].copy_from_slice(&ip.to_be_bytes());
    h[12..16].copy_from_slice(&src.octets());
    h[16..20].copy_from_slice(&dst.octets());
    h[20..22].copy_from_slice(&sport.to_be_bytes());
    h[22..24].copy_from_slice(&dport.to_be_bytes());
    h[csum_at..csum_at + 2].copy_from_slice(&l4.to_be_bytes());
}

/// 16-bit words rich in the values where ones'-complement carries happen.
fn edgy_word() -> impl Strategy<Value = u16> {
    proptest::prop_oneof![
        proptest::strategy::Just(0u16),
        proptest::strategy::Just(1),
        proptest::strategy::Just(0xfffe),
        proptest::strategy::Just(0xffff),
        proptest::prelude::any::<u16>(),
    ]
}

/// An IPv4 address and port for a NAT rewrite, from edgy words.
fn edgy_nat() -> impl Strategy<Value = Option<(Ipv4Addr, u16)>> {
    proptest::option::of((edgy_word(), edgy_word(), edgy_word()))
        .prop_map(|o| o.map(|(hi, lo, p)| (Ipv4Addr::from(u32::from(hi) << 16 | u32::from(lo)), p)))
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(crate::testutil::cases(8192)))]

    /// The fast path's rewrite (terms summed, one fold per field) writes exactly what the
    /// one-addition-at-a-time `Delta` arithmetic writes, for TCP and UDP (zero checksum
    /// included), full and partial checksums, source, destination or both translated. Every
    /// header word, address and port is drawn from a set rich in 0x0000, 0x0001, 0xfffe and
    /// 0xffff, where carries and the two representations of zero would show a difference.
    #[test]
    fn summed_rewrite_equals_delta_arithmetic(
        words in proptest::collection::vec(edgy_word(), 19),
        udp in proptest::prelude::any::<bool>(),
        partial in proptest::prelude::any::<bool>(),
        snat in edgy_nat(),
        dnat in edgy_nat(),
    ) {
        let mut h = [0u8; 38];
        for (c, w) in h.chunks_exact_mut(2).zip(&words) {
            c.copy_from_slice(&w.to_be_bytes());
        }
        let csum_at = if udp { 26 } else { 36 };
        let mut want = h;
        rewrite_by_delta(&mut want, csum_at, udp, partial, snat, dnat);
        let kind = if udp { L4Sum::Udp } else { L4Sum::Tcp };
        rewrite_fixed(&mut h, csum_at, kind, partial, snat, dnat);
        proptest::prop_assert_eq!(h, want);
    }
}
