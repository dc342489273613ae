//! Person pseudonyms: a keyed permutation of the person's index.
//!
//! A real extract's `person_id` is a keyed hash of the NHS number, unique and meaningless.
//! Here it is a bijection of `[0, 2^62)`, shifted by one, keyed by the seed, so identifiers are unique
//! without a lookup table, look random, and differ between seeds.

const MASK: u64 = (1 << 62) - 1;

/// The pseudonym of person number `index` in an extract generated with `seed`.
pub fn pseudonym(seed: u64, index: u64) -> i64 {
    // Each step is invertible on 62-bit values: xor with a constant, xor-shift right,
    // and multiplication by an odd constant modulo 2^62.
    let key = splitmix64(seed) & MASK;
    let mut x = (index & MASK) ^ key;
    for multiplier in [0xbf58_476d_1ce4_e5b9_u64, 0x94d0_49bb_1331_11eb] {
        x ^= x >> 31;
        x = x.wrapping_mul(multiplier | 1) & MASK;
    }
    x ^= x >> 29;
    // Shift off zero so no identifier looks like a placeholder; still unique.
    (x + 1) as i64
}

/// SplitMix64's output function: a fast, well-mixed 64-bit hash used to derive seeds.
pub fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn pseudonyms_are_unique_positive_and_keyed() {
        let ids: HashSet<i64> = (0..200_000).map(|i| pseudonym(7, i)).collect();
        assert_eq!(ids.len(), 200_000);
        assert!(ids.iter().all(|&id| id > 0));
        assert_ne!(pseudonym(7, 0), pseudonym(8, 0));
    }
}
