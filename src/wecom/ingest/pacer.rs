//! A per-corp call pacer for GetChatData.

use std::time::{Duration, Instant};

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
    fn pacer_spaces_calls() {
        let mut p = Pacer::per_minute(600);
        let t0 = Instant::now();
        assert_eq!(p.reserve(t0), Duration::ZERO);
        assert_eq!(p.reserve(t0), Duration::from_millis(100));
        assert_eq!(p.reserve(t0), Duration::from_millis(200));
        assert_eq!(p.reserve(t0 + Duration::from_secs(5)), Duration::ZERO);
    }
}
