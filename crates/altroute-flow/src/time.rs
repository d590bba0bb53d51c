//! [`Time`]: the caller's clock, handed in. The table never reads a clock itself.

/// A point in time, in milliseconds since an epoch the caller chooses (for example the start of
/// the process). It must not go backwards; the table only compares and subtracts.
///
/// ```
/// use altroute_flow::Time;
/// let t = Time::from_secs(10);
/// assert_eq!(t.millis(), 10_000);
/// assert_eq!(t.plus_millis(500).secs(), 10);
/// ```
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct Time(u64);

impl Time {
    /// The epoch.
    pub const ZERO: Time = Time(0);

    /// `ms` milliseconds after the epoch.
    #[inline]
    pub const fn from_millis(ms: u64) -> Time {
        Time(ms)
    }

    /// `s` seconds after the epoch.
    #[inline]
    pub const fn from_secs(s: u64) -> Time {
        Time(s.saturating_mul(1000))
    }

    /// Milliseconds since the epoch.
    #[inline]
    pub const fn millis(self) -> u64 {
        self.0
    }

    /// Whole seconds since the epoch.
    #[inline]
    pub const fn secs(self) -> u64 {
        self.0 / 1000
    }

    /// Whole seconds since the epoch as stored in a flow (saturates after 136 years).
    #[inline]
    pub(crate) fn secs32(self) -> u32 {
        u32::try_from(self.secs()).unwrap_or(u32::MAX)
    }

    /// This time plus `ms` milliseconds.
    #[inline]
    pub const fn plus_millis(self, ms: u64) -> Time {
        Time(self.0.saturating_add(ms))
    }

    /// This time plus `s` seconds.
    #[inline]
    pub const fn plus_secs(self, s: u64) -> Time {
        Time(self.0.saturating_add(s.saturating_mul(1000)))
    }
}
