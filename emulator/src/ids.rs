//! Fresh identifiers in GuardDuty's style: 32 lowercase hex digits for findings and
//! detectors, a UUID for request ids.

use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// 64 unpredictable-enough bits: a per-process random hasher over a counter and the time.
fn random_u64() -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_i64(crate::time::now_ms());
    hasher.finish()
}

/// 32 lowercase hex digits, like a GuardDuty finding or detector id.
pub(crate) fn hex32() -> String {
    format!("{:016x}{:016x}", random_u64(), random_u64())
}

/// A version-4-shaped UUID, like the request ids AWS sends in `x-amzn-RequestId`.
pub(crate) fn uuid() -> String {
    let hex = hex32();
    format!(
        "{}-{}-4{}-a{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_32_hex_digits_and_distinct() {
        let (first, second) = (hex32(), hex32());
        assert_eq!(first.len(), 32);
        assert!(
            first
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_ne!(first, second);
        assert_eq!(uuid().len(), 36);
    }
}
