//! Per-gateway connection outcomes over a sliding window, for failure-rate redirect (seed 001:
//! "if half of the connections through a gateway have failed in the last minute, subsequent
//! connection requests will be redirected immediately").

use crate::Time;

const BUCKETS: usize = 6;

/// Opened and failed TCP connection counts of one gateway over a sliding window, kept in six
/// buckets of one sixth of the window each (so the window slides in steps of 10 s for 60 s).
#[derive(Clone, Debug, Default)]
pub struct FailureWindow {
    opened: [u32; BUCKETS],
    failed: [u32; BUCKETS],
    /// Bucket number (time / bucket width) of the newest bucket.
    head: u64,
}

impl FailureWindow {
    fn advance(&mut self, now: Time, bucket_ms: u64) {
        let b = now.millis() / bucket_ms.max(1);
        if b <= self.head {
            return;
        }
        let steps = (b - self.head).min(BUCKETS as u64);
        for i in 1..=steps {
            let slot = ((self.head + i) % BUCKETS as u64) as usize;
            self.opened[slot] = 0;
            self.failed[slot] = 0;
        }
        self.head = b;
    }

    fn slot(&self) -> usize {
        (self.head % BUCKETS as u64) as usize
    }

    /// Count a connection attempt.
    pub fn record_open(&mut self, now: Time, window_ms: u64) {
        self.advance(now, window_ms / BUCKETS as u64);
        let s = self.slot();
        self.opened[s] = self.opened[s].saturating_add(1);
    }

    /// Count a failed connection attempt (no answer to its SYN, or a RST answering it).
    pub fn record_fail(&mut self, now: Time, window_ms: u64) {
        self.advance(now, window_ms / BUCKETS as u64);
        let s = self.slot();
        self.failed[s] = self.failed[s].saturating_add(1);
    }

    /// (opened, failed) over the window ending at `now`.
    pub fn totals(&self, now: Time, window_ms: u64) -> (u32, u32) {
        let bucket_ms = (window_ms / BUCKETS as u64).max(1);
        let b = now.millis() / bucket_ms;
        let age = b.saturating_sub(self.head);
        if age >= BUCKETS as u64 {
            return (0, 0);
        }
        let mut o = 0u32;
        let mut f = 0u32;
        // Buckets older than the window (relative to `now`) no longer count.
        for i in 0..(BUCKETS as u64 - age) {
            let slot = ((self.head + BUCKETS as u64 - i) % BUCKETS as u64) as usize;
            o = o.saturating_add(self.opened[slot]);
            f = f.saturating_add(self.failed[slot]);
        }
        (o, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_slides() {
        let w = 60_000;
        let mut f = FailureWindow::default();
        for i in 0..10 {
            f.record_open(Time::from_secs(i), w);
        }
        for i in 0..6 {
            f.record_fail(Time::from_secs(i), w);
        }
        assert_eq!(f.totals(Time::from_secs(10), w), (10, 6));
        assert_eq!(f.totals(Time::from_secs(59), w), (10, 6));
        // The first bucket (0-9 s) has slid out at 60 s.
        assert_eq!(f.totals(Time::from_secs(60), w), (0, 0));
        assert_eq!(f.totals(Time::from_secs(500), w), (0, 0));
        f.record_open(Time::from_secs(500), w);
        assert_eq!(f.totals(Time::from_secs(501), w), (1, 0));
    }
}
