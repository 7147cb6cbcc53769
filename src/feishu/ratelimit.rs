//! The per-API rate limiter: Feishu limits each API per app and tenant
//! (API.md §9), so every (app, route) pair has its own budget. Requests are
//! spaced to the documented per-second rate, and a 429 closes the pair for
//! the `x-ogw-ratelimit-reset` seconds Feishu named, for every caller in this
//! process at once (rather than each finding out with its own 429).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The documented per-second rate of a route template (API.md §9).
pub fn per_second(route: &str) -> f64 {
    if route.contains("/minutes/") || route.contains("/drive/v1/files/:file_token/download") {
        5.0
    } else if route.contains("/export_tasks") || route.contains("/wiki/") {
        // 100/min.
        100.0 / 60.0
    } else {
        50.0
    }
}

#[derive(Debug)]
struct Slot {
    /// Earliest time the next request may start.
    next: Instant,
    /// Closed by a 429 until then.
    blocked_until: Option<Instant>,
}

/// Rate budgets of every (app, route) pair.
#[derive(Debug, Default)]
pub struct RateLimiter {
    slots: Mutex<HashMap<(String, &'static str), Slot>>,
}

impl RateLimiter {
    /// How long a caller must wait before sending on (app, route) at `now`,
    /// reserving its place: callers queue behind each other, one interval apart.
    pub fn reserve(&self, app_id: &str, route: &'static str, now: Instant) -> Duration {
        let interval = Duration::from_secs_f64(1.0 / per_second(route));
        let mut slots = self.slots.lock().unwrap();
        let slot = slots.entry((app_id.to_owned(), route)).or_insert(Slot { next: now, blocked_until: None });
        let mut start = slot.next.max(now);
        if let Some(until) = slot.blocked_until {
            if until > start {
                start = until;
            } else {
                slot.blocked_until = None;
            }
        }
        slot.next = start + interval;
        start - now
    }

    /// Feishu said 429: close (app, route) for `reset`.
    pub fn throttled(&self, app_id: &str, route: &'static str, reset: Duration, now: Instant) {
        let mut slots = self.slots.lock().unwrap();
        let slot = slots.entry((app_id.to_owned(), route)).or_insert(Slot { next: now, blocked_until: None });
        let until = now + reset;
        slot.blocked_until = Some(slot.blocked_until.map_or(until, |u| u.max(until)));
    }

    /// Waits for a place on (app, route).
    pub async fn acquire(&self, app_id: &str, route: &'static str) {
        let wait = self.reserve(app_id, route, Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// The wait a 429 asks for: `x-ogw-ratelimit-reset` seconds (1 s when
/// missing or unreadable, at most 60 s so a wrong header cannot stall a worker).
pub fn reset_delay(header: Option<&str>) -> Duration {
    let secs = header.and_then(|h| h.trim().parse::<f64>().ok()).filter(|s| s.is_finite() && *s >= 0.0);
    Duration::from_secs_f64(secs.unwrap_or(1.0).clamp(0.05, 60.0))
}

/// The backoff before retry `attempt` (1-based) after a 5xx or lost connection.
pub fn server_error_backoff(attempt: u32) -> Duration {
    Duration::from_millis(200u64.saturating_mul(1 << attempt.min(6)).min(5_000))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTE: &str = "GET /open-apis/minutes/v1/minutes/:minute_token";

    #[test]
    fn spaces_requests_to_the_documented_rate() {
        let l = RateLimiter::default();
        let t = Instant::now();
        assert_eq!(l.reserve("a", ROUTE, t), Duration::ZERO);
        assert_eq!(l.reserve("a", ROUTE, t), Duration::from_millis(200));
        assert_eq!(l.reserve("a", ROUTE, t), Duration::from_millis(400));
        // Another app has its own budget.
        assert_eq!(l.reserve("b", ROUTE, t), Duration::ZERO);
    }

    #[test]
    fn a_429_closes_the_route_for_the_reset_time() {
        let l = RateLimiter::default();
        let t = Instant::now();
        l.throttled("a", "POST /x", reset_delay(Some("3")), t);
        assert_eq!(l.reserve("a", "POST /x", t), Duration::from_secs(3));
        assert_eq!(l.reserve("a", "POST /y", t), Duration::ZERO, "other routes are not closed");
        assert!(l.reserve("a", "POST /x", t + Duration::from_secs(10)).is_zero());
    }

    #[test]
    fn reset_header_and_backoff_are_bounded() {
        assert_eq!(reset_delay(Some("52")), Duration::from_secs(52));
        assert_eq!(reset_delay(None), Duration::from_secs(1));
        assert_eq!(reset_delay(Some("junk")), Duration::from_secs(1));
        assert_eq!(reset_delay(Some("99999")), Duration::from_secs(60));
        assert!(server_error_backoff(1) < server_error_backoff(2));
        assert_eq!(server_error_backoff(30), Duration::from_secs(5));
    }
}
