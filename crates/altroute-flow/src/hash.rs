//! A small, fixed, portable hash for flow keys.
//!
//! Folded multiply (the core of wyhash and foldhash): fast on 64-bit machines, good avalanche for
//! structured keys such as sequential ports. The constants are part of the crate's contract:
//! changing them re-shuffles every load-balanced flow, so they never change within a major version.

const P0: u64 = 0xa076_1d64_78bd_642f;
const P1: u64 = 0xe703_7ed1_a0b4_28db;
const P2: u64 = 0x8ebc_6af0_9c88_c6e3;

#[inline(always)]
fn fold_mul(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

/// Hash a few 64-bit words with a seed.
#[inline]
pub(crate) fn hash_words(words: &[u64], seed: u64) -> u64 {
    let mut h = seed ^ P0;
    for (i, &w) in words.iter().enumerate() {
        let k = if i % 2 == 0 { P1 } else { P2 };
        h = fold_mul(h ^ w, k);
    }
    fold_mul(h, P0 ^ words.len() as u64)
}

/// Hash two words (used by rendezvous hashing: flow hash and gateway id).
#[inline]
pub(crate) fn hash2(a: u64, b: u64) -> u64 {
    fold_mul(fold_mul(a ^ P1, b ^ P2), P0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values_never_change() {
        // Pinned: a change here re-balances every deployed router's flows.
        assert_eq!(hash_words(&[0, 0, 0, 0, 0], 0), 0x04f9_a0de_e19c_e0ba);
        assert_eq!(hash_words(&[1, 2, 3, 4, 5], 7), 0xaed7_3a3f_652b_921f);
        assert_eq!(hash2(1, 2), 0x2429_5b0d_6ebf_4501);
        let k = crate::FlowKey::v4([10, 0, 0, 2].into(), [192, 0, 2, 1].into(), 6, 1000, 80);
        assert_eq!(k.hash64(), 0x7c56_7301_bca5_51fb);
    }

    #[test]
    fn low_bits_are_spread_for_sequential_ports() {
        // 4096 sequential inputs should fill most of 64 buckets on the low bits.
        let mut seen = [0u32; 64];
        for p in 0..4096u64 {
            seen[(hash_words(&[7, p], 0) & 63) as usize] += 1;
        }
        assert!(seen.iter().all(|&c| c > 30 && c < 100), "{seen:?}");
    }
}
