//! Capped exponential backoff with full jitter, and a per-corp call pacer.

use std::time::{Duration, Instant};

use rand::Rng;

/// Exponential backoff: base·2ⁿ capped, each wait drawn uniformly from
/// [cap/2, cap] of that step so many corps do not retry in lockstep.
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

/// Spaces calls so a corp stays under its per-minute budget (Tencent
/// documents GetChatData as limited to 600 calls/minute, FORMAT.md §1.4).
#[derive(Debug, Clone)]
pub struct Pacer {
    interval: Duration,
    next: Option<Instant>,
}

impl Pacer {
    /// At most `per_minute` calls per minute.
    pub fn per_minute(per_minute: u32) -> Pacer {
        Pacer { interval: Duration::from_secs(60) / per_minute.max(1), next: None }
    }

    /// How long to wait before the next call may start (and books it).
    pub fn reserve(&mut self, now: Instant) -> Duration {
        let at = match self.next {
            Some(next) if next > now => next,
            _ => now,
        };
        self.next = Some(at + self.interval);
        at - now
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

    #[test]
    fn pacer_spaces_calls() {
        let mut p = Pacer::per_minute(600);
        let t0 = Instant::now();
        assert_eq!(p.reserve(t0), Duration::ZERO);
        assert_eq!(p.reserve(t0), Duration::from_millis(100));
        assert_eq!(p.reserve(t0), Duration::from_millis(200));
        assert_eq!(p.reserve(t0 + Duration::from_secs(5)), Duration::ZERO);
    }
}
