//! The per-API rate limiter: Feishu limits each API per app and tenant
//! (API.md §9), often with two windows at once (1000/min & 50/s: hitting
//! either throttles), so every (app, route) pair has its own budget with every
//! window of its route.
//!
//! - Routes are looked up by their exact template (`GET /open-apis/drive/v1/
//!   export_tasks/:ticket`) in [`LIMITS`]; families (every wiki API) match by
//!   whole path segments, and the longest match wins, so the export download
//!   `…/export_tasks/file/:file_token/download` is never taken for the
//!   export-task APIs it shares a prefix with.
//! - Each window allows at most `calls` in *any* stretch of its period (a
//!   sliding log of reserved start times), which also keeps Feishu's fixed
//!   windows from ever seeing one call too many; a little slack on each
//!   period absorbs the jitter between our clock and the server's arrival
//!   times.
//! - A 429 closes the pair for the `x-ogw-ratelimit-reset` seconds Feishu
//!   named, for every caller in this process at once (rather than each finding
//!   out with its own 429); callers who reserved a place inside that time ask
//!   again when they wake.
//!
//! Time is `tokio::time::Instant`, so tests run it on a paused clock.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// At most `calls` requests in any `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Requests allowed.
    pub calls: u32,
    /// In this long.
    pub period: Duration,
}

const fn per_second(calls: u32) -> Window {
    Window { calls, period: Duration::from_secs(1) }
}

const fn per_minute(calls: u32) -> Window {
    Window { calls, period: Duration::from_secs(60) }
}

const fn per_day(calls: u32) -> Window {
    Window { calls, period: Duration::from_secs(86_400) }
}

/// The common tier (1000/min & 50/s): what API.md names for most APIs, and
/// what the client assumes where the documentation names no limit.
pub const COMMON: &[Window] = &[per_second(50), per_minute(1000)];

/// How a [`LIMITS`] row matches a route template `METHOD /path`.
#[derive(Debug, Clone, Copy)]
pub enum Pattern {
    /// This one template.
    Exact(&'static str),
    /// This path and every path below it (whole segments), for any method
    /// when the method is `*`.
    Below(&'static str),
}

/// The documented limits (API.md §9), per route template.
pub const LIMITS: &[(Pattern, &[Window])] = &[
    // Token endpoints: none stated.
    (Pattern::Below("* /open-apis/auth/v3"), &[]),
    (Pattern::Exact("POST /open-apis/authen/v2/oauth/token"), COMMON),
    // v1 OIDC token/refresh are 1000/min & 50/s; user_info is "special" (unpublished): assume the same.
    (Pattern::Below("* /open-apis/authen/v1"), COMMON),
    (Pattern::Exact("GET /open-apis/vc/v1/meetings/:meeting_id/recording"), COMMON),
    // Minutes get and media: 5/s.
    (Pattern::Below("* /open-apis/minutes/v1/minutes"), &[per_second(5)]),
    // Plain downloads: 5 QPS and 10 000 a day (1061045 beyond).
    (Pattern::Exact("GET /open-apis/drive/v1/files/:file_token/download"), &[per_second(5), per_day(10_000)]),
    (Pattern::Exact("POST /open-apis/drive/v1/export_tasks"), &[per_minute(100)]),
    (Pattern::Exact("GET /open-apis/drive/v1/export_tasks/:ticket"), &[per_minute(100)]),
    // Not captured by API.md: the common tier.
    (Pattern::Exact("GET /open-apis/drive/v1/export_tasks/file/:file_token/download"), COMMON),
    (Pattern::Exact("GET /open-apis/drive/v1/files"), COMMON),
    (Pattern::Exact("GET /open-apis/drive/explorer/v2/root_folder/meta"), COMMON),
    // Every wiki API: 100/min.
    (Pattern::Below("* /open-apis/wiki"), &[per_minute(100)]),
    (Pattern::Exact("POST /open-apis/im/v1/messages"), COMMON),
    (Pattern::Exact("PATCH /open-apis/im/v1/messages/:message_id"), COMMON),
];

/// The documented windows of a route template: the longest matching row of
/// [`LIMITS`] (an exact row before a family of the same length), else [`COMMON`].
pub fn limits_for(route: &str) -> &'static [Window] {
    let (method, path) = route.split_once(' ').unwrap_or(("", route));
    let mut best: Option<(usize, bool, &'static [Window])> = None;
    for (pattern, windows) in LIMITS {
        let (exact, template) = match pattern {
            Pattern::Exact(t) => (true, *t),
            Pattern::Below(t) => (false, *t),
        };
        let (m, p) = template.split_once(' ').unwrap_or(("*", template));
        if m != "*" && m != method {
            continue;
        }
        let matches = path == p || (!exact && path.strip_prefix(p).is_some_and(|rest| rest.starts_with('/')));
        if !matches {
            continue;
        }
        let better = match best {
            None => true,
            Some((len, was_exact, _)) => p.len() > len || (p.len() == len && exact && !was_exact),
        };
        if better {
            best = Some((p.len(), exact, windows));
        }
    }
    best.map_or(COMMON, |(_, _, w)| w)
}

/// `windows` with every count multiplied by `scale` (rounded up, at least 1),
/// as the fake's `--rate-scale` does (tenants with raised limits, or a fake).
pub fn scaled(windows: &[Window], scale: f64) -> Vec<Window> {
    if !(scale.is_finite() && scale > 0.0) || scale == 1.0 {
        return windows.to_vec();
    }
    windows
        .iter()
        .map(|w| Window {
            calls: ((f64::from(w.calls) * scale).ceil().min(f64::from(u32::MAX)) as u32).max(1),
            period: w.period,
        })
        .collect()
}

/// The long-run rate (calls per second) the windows allow; infinite without windows.
pub fn steady_rate(windows: &[Window]) -> f64 {
    windows.iter().map(|w| f64::from(w.calls) / w.period.as_secs_f64()).fold(f64::INFINITY, f64::min)
}

/// The least time any client needs for `calls` requests under `windows`
/// (each window holding at most `calls` in any stretch of its period): the
/// first window's worth at once, each further one a period later.
pub fn least_time(windows: &[Window], calls: u64) -> Duration {
    windows
        .iter()
        .map(|w| {
            let batches = calls.div_ceil(u64::from(w.calls.max(1)));
            w.period.saturating_mul(u32::try_from(batches.saturating_sub(1)).unwrap_or(u32::MAX))
        })
        .max()
        .unwrap_or(Duration::ZERO)
}

/// Slack added to each window's period: 2 % and at least 25 ms (the spread
/// between when we start a request and when Feishu counts it).
fn slack(period: Duration) -> Duration {
    (period / 50).max(Duration::from_millis(25))
}

#[derive(Debug)]
struct Slot {
    windows: Vec<Window>,
    /// Reserved start times, oldest first (at most the largest window's count).
    log: VecDeque<Instant>,
    /// Closed by a 429 until then.
    blocked_until: Option<Instant>,
}

impl Slot {
    fn reserve(&mut self, now: Instant) -> Instant {
        let mut start = self.log.back().map_or(now, |last| (*last).max(now));
        if let Some(until) = self.blocked_until {
            if until > start {
                start = until;
            } else if until <= now {
                self.blocked_until = None;
            }
        }
        for w in &self.windows {
            let n = w.calls.max(1) as usize;
            if self.log.len() >= n {
                start = start.max(self.log[self.log.len() - n] + w.period + slack(w.period));
            }
        }
        self.log.push_back(start);
        let keep = self.windows.iter().map(|w| w.calls.max(1) as usize).max().unwrap_or(0);
        while self.log.len() > keep {
            self.log.pop_front();
        }
        start
    }
}

/// Rate budgets of every (app, route) pair.
#[derive(Debug)]
pub struct RateLimiter {
    scale: f64,
    slots: Mutex<HashMap<(String, &'static str), Slot>>,
}

impl Default for RateLimiter {
    fn default() -> Self {
        RateLimiter::new(1.0)
    }
}

impl RateLimiter {
    /// A limiter at `scale` × the documented limits (1 = as documented).
    pub fn new(scale: f64) -> RateLimiter {
        let scale = if scale.is_finite() && scale > 0.0 { scale } else { 1.0 };
        RateLimiter { scale, slots: Mutex::default() }
    }

    /// The scale in force.
    pub fn scale(&self) -> f64 {
        self.scale
    }

    /// The windows this limiter enforces on `route`.
    pub fn windows(&self, route: &str) -> Vec<Window> {
        scaled(limits_for(route), self.scale)
    }

    fn with_slot<T>(&self, app_id: &str, route: &'static str, f: impl FnOnce(&mut Slot) -> T) -> T {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let key = (app_id.to_owned(), route);
        let slot = slots.entry(key).or_insert_with(|| Slot {
            windows: scaled(limits_for(route), self.scale),
            log: VecDeque::new(),
            blocked_until: None,
        });
        f(slot)
    }

    /// How long a caller must wait before sending on (app, route) at `now`,
    /// reserving its place: callers queue behind each other in every window.
    pub fn reserve(&self, app_id: &str, route: &'static str, now: Instant) -> Duration {
        self.with_slot(app_id, route, |s| s.reserve(now)) - now
    }

    /// Feishu said 429: close (app, route) for `reset` from `now`.
    pub fn throttled(&self, app_id: &str, route: &'static str, reset: Duration, now: Instant) {
        let until = now + reset;
        self.with_slot(app_id, route, |s| {
            s.blocked_until = Some(s.blocked_until.map_or(until, |u| u.max(until)));
        });
    }

    fn blocked_at(&self, app_id: &str, route: &'static str, now: Instant) -> bool {
        self.with_slot(app_id, route, |s| s.blocked_until.is_some_and(|u| u > now))
    }

    /// Waits for a place on (app, route); asks again when a 429 closed the
    /// route while it waited.
    pub async fn acquire(&self, app_id: &str, route: &'static str) {
        loop {
            let wait = self.reserve(app_id, route, Instant::now());
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            if !self.blocked_at(app_id, route, Instant::now()) {
                return;
            }
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

    const EXPORT_CREATE: &str = "POST /open-apis/drive/v1/export_tasks";
    const EXPORT_GET: &str = "GET /open-apis/drive/v1/export_tasks/:ticket";
    const EXPORT_DL: &str = "GET /open-apis/drive/v1/export_tasks/file/:file_token/download";
    const DL: &str = "GET /open-apis/drive/v1/files/:file_token/download";
    const LIST: &str = "GET /open-apis/drive/v1/files";

    #[test]
    fn routes_match_exact_templates_and_the_longest_family() {
        assert_eq!(limits_for(EXPORT_CREATE), &[per_minute(100)]);
        assert_eq!(limits_for(EXPORT_GET), &[per_minute(100)]);
        // The bug this table replaced: the export download is not an export-task API.
        assert_eq!(limits_for(EXPORT_DL), COMMON);
        // A GET under the POST-only template is not it either.
        assert_eq!(limits_for("GET /open-apis/drive/v1/export_tasks"), COMMON);
        assert_eq!(limits_for(DL), &[per_second(5), per_day(10_000)]);
        // `files` is a prefix of the download's path, but not its template.
        assert_eq!(limits_for(LIST), COMMON);
        for wiki in [
            "GET /open-apis/wiki/v2/spaces",
            "GET /open-apis/wiki/v2/spaces/:space_id",
            "GET /open-apis/wiki/v2/spaces/:space_id/nodes",
            "GET /open-apis/wiki/v2/spaces/get_node",
        ] {
            assert_eq!(limits_for(wiki), &[per_minute(100)], "{wiki}");
        }
        // Whole segments only.
        assert_eq!(limits_for("GET /open-apis/wikiX/v2/spaces"), COMMON);
        assert_eq!(limits_for("GET /open-apis/minutes/v1/minutes/:minute_token/media"), &[per_second(5)]);
        assert_eq!(limits_for("GET /open-apis/minutes/v1/minutes/:minute_token"), &[per_second(5)]);
        assert!(limits_for("POST /open-apis/auth/v3/tenant_access_token/internal").is_empty());
        assert_eq!(limits_for("PATCH /open-apis/im/v1/messages/:message_id"), COMMON);
        assert_eq!(limits_for("GET /open-apis/unknown/v9/thing"), COMMON);
        assert_eq!(limits_for("garbage"), COMMON);
    }

    #[test]
    fn scaling_rates_and_least_times() {
        assert_eq!(scaled(&[per_minute(100)], 40.0), vec![per_minute(4000)]);
        assert_eq!(scaled(&[per_second(5)], 0.1), vec![per_second(1)]);
        assert_eq!(scaled(COMMON, f64::NAN), COMMON.to_vec());
        assert!((steady_rate(COMMON) - 1000.0 / 60.0).abs() < 1e-9, "the minute window is the stricter");
        // Over days the daily cap, not 5/s, is what downloads can keep up.
        assert!((steady_rate(&[per_second(5), per_day(10_000)]) - 10_000.0 / 86_400.0).abs() < 1e-9);
        assert!(steady_rate(&[]).is_infinite());
        let w = [per_minute(100)];
        assert_eq!(least_time(&w, 0), Duration::ZERO);
        assert_eq!(least_time(&w, 100), Duration::ZERO);
        assert_eq!(least_time(&w, 101), Duration::from_secs(60));
        assert_eq!(least_time(&w, 350), Duration::from_secs(180));
        assert_eq!(least_time(COMMON, 2001), Duration::from_secs(120));
        assert_eq!(least_time(&[], 5), Duration::ZERO);
    }

    #[test]
    fn both_windows_hold_and_apps_and_routes_are_apart() {
        let l = RateLimiter::default();
        let t = Instant::now();
        // 50 at once (the second window), then the next second (plus slack).
        for _ in 0..50 {
            assert_eq!(l.reserve("a", LIST, t), Duration::ZERO);
        }
        let next = l.reserve("a", LIST, t);
        assert_eq!(next, Duration::from_secs(1) + slack(Duration::from_secs(1)));
        // Another app and another route have their own budgets.
        assert_eq!(l.reserve("b", LIST, t), Duration::ZERO);
        assert_eq!(l.reserve("a", DL, t), Duration::ZERO);
        // Over a long stretch the minute window (1000) binds, not 50/s: count what
        // starts inside the first 60 s.
        let l = RateLimiter::default();
        let mut in_first_minute = 0;
        loop {
            let d = l.reserve("a", LIST, t);
            if d >= Duration::from_secs(60) {
                break;
            }
            in_first_minute += 1;
        }
        assert_eq!(in_first_minute, 1000);
    }

    #[test]
    fn any_stretch_of_a_period_holds_at_most_the_limit() {
        let l = RateLimiter::new(1.0);
        let t = Instant::now();
        let starts: Vec<Duration> = (0..450).map(|_| l.reserve("a", EXPORT_GET, t)).collect();
        for (i, s) in starts.iter().enumerate().skip(100) {
            assert!(*s >= starts[i - 100] + Duration::from_secs(60), "call {i}");
        }
        assert!(starts.windows(2).all(|p| p[0] <= p[1]), "first come, first served");
        // 450 calls need 4 more minutes after the first 100 (plus 2 % slack each).
        assert_eq!(starts[449], Duration::from_secs(4 * 60) + 4 * slack(Duration::from_secs(60)));
    }

    #[test]
    fn a_scaled_limiter_scales_every_window() {
        let l = RateLimiter::new(40.0);
        let t = Instant::now();
        for _ in 0..4000 {
            assert_eq!(l.reserve("a", EXPORT_CREATE, t), Duration::ZERO);
        }
        assert!(l.reserve("a", EXPORT_CREATE, t) >= Duration::from_secs(60));
        assert_eq!(l.windows(DL), vec![per_second(200), per_day(400_000)]);
    }

    #[test]
    fn a_429_closes_the_route_for_the_reset_time() {
        let l = RateLimiter::default();
        let t = Instant::now();
        l.throttled("a", EXPORT_CREATE, reset_delay(Some("3")), t);
        assert_eq!(l.reserve("a", EXPORT_CREATE, t), Duration::from_secs(3));
        assert_eq!(l.reserve("a", EXPORT_GET, t), Duration::ZERO, "other routes are not closed");
        assert_eq!(l.reserve("b", EXPORT_CREATE, t), Duration::ZERO, "nor other apps");
        assert!(l.reserve("a", EXPORT_CREATE, t + Duration::from_secs(10)).is_zero());
    }

    #[tokio::test(start_paused = true)]
    async fn acquire_waits_out_the_windows_and_a_429_on_a_paused_clock() {
        let l = std::sync::Arc::new(RateLimiter::default());
        let t0 = Instant::now();
        for _ in 0..5 {
            l.acquire("a", DL).await;
        }
        assert_eq!(t0.elapsed(), Duration::ZERO, "the first five of a second go at once");
        l.acquire("a", DL).await;
        assert_eq!(t0.elapsed(), Duration::from_secs(1) + slack(Duration::from_secs(1)));
        // A caller waiting for its place when a 429 arrives waits for the reset instead.
        let (l2, t1) = (l.clone(), Instant::now());
        for _ in 0..4 {
            l.acquire("a", DL).await;
        }
        let waiter = tokio::spawn(async move {
            l2.acquire("a", DL).await;
            t1.elapsed()
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        l.throttled("a", DL, reset_delay(Some("5")), Instant::now());
        let waited = waiter.await.unwrap();
        assert!(waited >= Duration::from_millis(5100), "{waited:?}");
        assert!(waited < Duration::from_secs(7), "{waited:?}");
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
