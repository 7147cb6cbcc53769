//! Capped exponential backoff with equal jitter, shared by everything that
//! retries: the GetChatData puller and batch commits (`wecom::ingest`), media
//! downloads (`wecom::media`), the Redis link (`control::link`) and `wait-db`.
//!
//! "Equal jitter" (in the terms of the AWS Architecture Blog's "Exponential
//! Backoff And Jitter"): each wait is half the capped step plus a uniform
//! random part of the other half. Unlike full jitter (uniform in `[0, step]`)
//! a wait never collapses to almost nothing, so a failing server still gets
//! at least half a step of rest; the random half keeps many corps that failed
//! together from retrying in lockstep.

use std::time::Duration;

use rand::Rng;

/// Exponential backoff: the n-th consecutive failure's step is
/// `min(base·2ⁿ, cap)`, and its wait is drawn uniformly from `[step/2, step]`
/// (equal jitter, see the module doc).
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    failures: u32,
}

impl Backoff {
    /// A backoff starting at `base`, never waiting more than `cap`.
    pub fn new(base: Duration, cap: Duration) -> Backoff {
        Backoff { base, cap, failures: 0 }
    }

    /// Records a failure and returns how long to wait.
    pub fn next_delay(&mut self) -> Duration {
        let exp = self.base.saturating_mul(1u32 << self.failures.min(16));
        self.failures = self.failures.saturating_add(1);
        let step = exp.min(self.cap);
        let half = step / 2;
        half + Duration::from_nanos(rand::rng().random_range(0..=half.as_nanos().max(1) as u64))
    }

    /// Consecutive failures so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Records a success.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let d: Vec<_> = (0..8).map(|_| b.next_delay()).collect();
        assert!(d[0] >= Duration::from_millis(50) && d[0] <= Duration::from_millis(100));
        assert!(d[3] >= Duration::from_millis(400) && d[3] <= Duration::from_millis(800));
        assert!(d.iter().all(|x| *x <= Duration::from_secs(2)));
        assert!(d[7] >= Duration::from_secs(1));
        assert_eq!(b.failures(), 8);
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
