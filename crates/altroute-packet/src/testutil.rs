//! Helpers the unit tests of several modules share.

/// The RFC 1071 sum of `data` added to `init`, folded, not complemented: the textbook loop,
/// written independently of `crate::checksum` so that tests can check it.
pub(crate) fn ones(data: &[u8], init: u32) -> u16 {
    let mut s = init;
    for c in data.chunks(2) {
        s += u32::from(c[0]) << 8 | c.get(1).map_or(0, |&b| u32::from(b));
    }
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// The number of cases of a property test: `PROPTEST_CASES` when set (as for the tests that take
/// proptest's default configuration), else `default`. `ProptestConfig::with_cases(n)` alone
/// ignores the variable.
pub(crate) fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
