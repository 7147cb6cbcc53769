//! Pacing of the backup's calls per API: each route gets the interval its
//! documented limits allow (API.md §9: the per-second *and* the per-minute
//! window, the stricter wins), times a scale, plus a little headroom so a
//! steady stream never lands one call too many in a window; a 429 closes the
//! route for the `x-ogw-ratelimit-reset` seconds Feishu named.
//!
//! Why not only the client's [`crate::feishu::ratelimit::RateLimiter`]: it
//! paces by the per-second rate only (so a 1000/min API would be driven at
//! 50/s into minute-long 429s) and cannot be scaled; a backup keeps every
//! budget busy for minutes, where both matter.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Extra spacing over the documented rate (3 %).
const HEADROOM: f64 = 1.03;

/// `(per second, per minute)` documented for a route template (API.md §9; the
/// common 50/s & 1000/min tier where the doc names none).
pub fn documented(route: &str) -> (Option<f64>, Option<f64>) {
    let r = route.split_once(' ').map_or(route, |(_, r)| r);
    if r.starts_with("/open-apis/drive/v1/files/") && r.ends_with("/download") {
        (Some(5.0), None)
    } else if (r.starts_with("/open-apis/drive/v1/export_tasks") && !r.contains("/file/"))
        || r.starts_with("/open-apis/wiki/")
    {
        (None, Some(100.0))
    } else {
        (Some(50.0), Some(1000.0))
    }
}

/// The steady interval between calls of `route` at `scale` × its limits, without headroom.
pub fn interval(route: &str, scale: f64) -> Duration {
    let (ps, pm) = documented(route);
    let per_s = ps.unwrap_or(f64::INFINITY).min(pm.map_or(f64::INFINITY, |m| m / 60.0)) * scale.max(1e-6);
    Duration::from_secs_f64(1.0 / per_s)
}

#[derive(Debug)]
struct Slot {
    next: Instant,
    blocked_until: Option<Instant>,
}

/// Every route's budget for one app.
#[derive(Debug)]
pub struct Budgets {
    scale: f64,
    slots: Mutex<HashMap<&'static str, Slot>>,
}

impl Budgets {
    /// Budgets at `scale` × the documented limits.
    pub fn new(scale: f64) -> Budgets {
        Budgets { scale: if scale > 0.0 { scale } else { 1.0 }, slots: Mutex::default() }
    }

    /// The scale in force.
    pub fn scale(&self) -> f64 {
        self.scale
    }

    /// Reserves the next place on `route` at `now`; how long to wait for it.
    pub fn reserve(&self, route: &'static str, now: Instant) -> Duration {
        let step = interval(route, self.scale).mul_f64(HEADROOM);
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let slot = slots.entry(route).or_insert(Slot { next: now, blocked_until: None });
        let mut start = slot.next.max(now);
        if let Some(until) = slot.blocked_until {
            if until > start {
                start = until;
            } else {
                slot.blocked_until = None;
            }
        }
        slot.next = start + step;
        start - now
    }

    /// Waits for a place on `route`.
    pub async fn acquire(&self, route: &'static str) {
        let wait = self.reserve(route, Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// Feishu answered 429 on `route`: nobody sends on it for `reset`.
    pub fn throttled(&self, route: &'static str, reset: Duration, now: Instant) {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let slot = slots.entry(route).or_insert(Slot { next: now, blocked_until: None });
        let until = now + reset;
        slot.blocked_until = Some(slot.blocked_until.map_or(until, |u| u.max(until)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stricter_window_wins_and_scale_applies() {
        assert_eq!(interval("POST /open-apis/drive/v1/export_tasks", 1.0), Duration::from_millis(600));
        assert_eq!(interval("GET /open-apis/drive/v1/export_tasks/:ticket", 1.0), Duration::from_millis(600));
        assert_eq!(
            interval("GET /open-apis/drive/v1/files/:file_token/download", 1.0),
            Duration::from_millis(200)
        );
        // 50/s & 1000/min: the minute window is the stricter one.
        assert_eq!(interval("GET /open-apis/drive/v1/files", 1.0), Duration::from_millis(60));
        assert_eq!(
            interval("GET /open-apis/drive/v1/export_tasks/file/:file_token/download", 1.0),
            Duration::from_millis(60)
        );
        assert_eq!(
            interval("GET /open-apis/wiki/v2/spaces/:space_id/nodes", 10.0),
            Duration::from_millis(60)
        );
    }

    #[test]
    fn callers_queue_and_a_429_closes_the_route() {
        let b = Budgets::new(1.0);
        let t = Instant::now();
        let r = "GET /open-apis/drive/v1/files/:file_token/download";
        assert_eq!(b.reserve(r, t), Duration::ZERO);
        assert_eq!(b.reserve(r, t), Duration::from_millis(200).mul_f64(HEADROOM));
        b.throttled("GET /x", Duration::from_secs(2), t);
        assert_eq!(b.reserve("GET /x", t), Duration::from_secs(2));
        assert_eq!(b.reserve("GET /y", t), Duration::ZERO);
    }
}
