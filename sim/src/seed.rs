//! Deterministic derivation of every random choice from the configured seed.
//!
//! Each decision draws from its own stream, named by a tag and the ids it concerns (corp,
//! record index, media number, request identity…), so results never depend on generation order
//! or thread timing.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Stream tags.
pub(crate) mod tag {
    pub const CORP: u64 = 1;
    pub const MSG: u64 = 2;
    pub const ENC: u64 = 3;
    pub const BLOB: u64 = 4;
    pub const MEDIA: u64 = 5;
    pub const RECORD_FAULT: u64 = 6;
    pub const FORCED_FAULT: u64 = 7;
    pub const REQUEST_FAULT: u64 = 8;
    pub const TOKEN: u64 = 9;
    pub const STATUS: u64 = 10;
}

/// splitmix64 finalizer.
pub(crate) fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Hashes a list of words into one (order-sensitive).
pub(crate) fn mix(parts: &[u64]) -> u64 {
    parts.iter().fold(0x243F_6A88_85A3_08D3, |h, &p| splitmix(h ^ splitmix(p)))
}

/// FNV-1a of a string, for request identities such as a fileid.
pub(crate) fn str_hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// A uniform number in `[0, 1)` from a hash.
pub(crate) fn unit(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// A seeded generator for the stream named by `parts`.
pub(crate) fn rng_for(parts: &[u64]) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(mix(parts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mix_is_order_sensitive_and_stable() {
        assert_ne!(mix(&[1, 2]), mix(&[2, 1]));
        assert_eq!(mix(&[1, 2]), mix(&[1, 2]));
        let u = unit(u64::MAX);
        assert!(u < 1.0 && u > 0.999);
    }
}
