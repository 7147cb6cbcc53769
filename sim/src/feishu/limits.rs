//! Rate limits (API.md §0 and §9), call statistics and the per-request faults, as one middleware
//! in front of every `/open-apis/` route.
//!
//! Each route has a per-second and a per-minute window (fixed windows on the wall clock); hitting
//! either answers HTTP 429 with code 99991400 and numeric `x-ogw-ratelimit-limit` /
//! `x-ogw-ratelimit-reset` headers. Every answer carries those headers and `X-Tt-Logid`.
//! Where API.md names no limit the fake uses the common 1000/min & 50/s tier; the token
//! endpoints have none.

use std::collections::{BTreeMap, HashMap};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::faults::FeishuFaultKind;
use super::server::{ApiError, ConnDrop};
use super::state::{App, now_ms};

/// Drive downloads per day before 1061045.
const DOWNLOADS_PER_DAY: u64 = 10_000;

/// `(per second, per minute)` of a route key, multiplied by `scale` (`FeishuConfig::rate_scale`).
pub(crate) fn scaled_limits(key: &str, scale: f64) -> (Option<u64>, Option<u64>) {
    let (s, m) = limits_for(key);
    if scale <= 0.0 || scale == 1.0 {
        return (s, m);
    }
    let f = |l: u64| ((l as f64 * scale).ceil() as u64).max(1);
    (s.map(f), m.map(f))
}

/// `(per second, per minute)` of a route key.
pub(crate) fn limits_for(key: &str) -> (Option<u64>, Option<u64>) {
    let route = key.split_once(' ').map(|(_, r)| r).unwrap_or(key);
    match route {
        r if r.starts_with("/open-apis/auth/v3/") => (None, None),
        r if r.starts_with("/open-apis/minutes/") => (Some(5), None),
        "/open-apis/drive/v1/files/:file_token/download" => (Some(5), None),
        r if r.starts_with("/open-apis/drive/v1/export_tasks") && !r.contains("/file/") => (None, Some(100)),
        r if r.starts_with("/open-apis/wiki/") => (None, Some(100)),
        _ => (Some(50), Some(1000)),
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Window {
    start: u64,
    count: u64,
}

impl Window {
    /// Counts one call in the window of `len` ms containing `now`; whether it is within `limit`.
    fn admit(&mut self, now: u64, len: u64, limit: u64) -> bool {
        let start = now - now % len;
        if self.start != start {
            *self = Window { start, count: 0 };
        }
        if self.count >= limit {
            return false;
        }
        self.count += 1;
        true
    }

    fn reset_s(&self, now: u64, len: u64) -> u64 {
        (self.start + len).saturating_sub(now).div_ceil(1000).max(1)
    }
}

#[derive(Debug, Default)]
struct RouteState {
    second: Window,
    minute: Window,
    day: Window,
    /// A throttle burst lasts until this time.
    burst_until: u64,
}

/// Counters and windows of every route.
#[derive(Debug, Default)]
pub(crate) struct Limits {
    routes: HashMap<String, RouteState>,
    calls: BTreeMap<String, u64>,
    throttled: BTreeMap<String, u64>,
    /// Extra windows (per message, per user) keyed by route and id.
    keyed: HashMap<String, Window>,
    /// `FeishuConfig::rate_scale` (0 = not set = 1).
    pub scale: f64,
}

/// Why a call is refused.
struct Refusal {
    limit: u64,
    reset_s: u64,
    code: i64,
}

impl Limits {
    fn admit(&mut self, key: &str, now: u64, burst: bool) -> Result<(u64, u64), Refusal> {
        *self.calls.entry(key.to_string()).or_default() += 1;
        let (ps, pm) = scaled_limits(key, self.scale);
        let r = self.routes.entry(key.to_string()).or_default();
        if burst {
            r.burst_until = now - now % 1000 + 1000;
        }
        let refused = if now < r.burst_until {
            Some(Refusal { limit: ps.or(pm).unwrap_or(50), reset_s: 1, code: 99991400 })
        } else if let Some(l) = ps.filter(|l| !r.second.admit(now, 1000, *l)) {
            Some(Refusal { limit: l, reset_s: r.second.reset_s(now, 1000), code: 99991400 })
        } else if let Some(l) = pm.filter(|l| !r.minute.admit(now, 60_000, *l)) {
            Some(Refusal { limit: l, reset_s: r.minute.reset_s(now, 60_000), code: 99991400 })
        } else if key.ends_with("/open-apis/drive/v1/files/:file_token/download")
            && !r.day.admit(now, 86_400_000, DOWNLOADS_PER_DAY)
        {
            Some(Refusal { limit: DOWNLOADS_PER_DAY, reset_s: r.day.reset_s(now, 86_400_000), code: 1061045 })
        } else {
            None
        };
        match refused {
            Some(f) => {
                *self.throttled.entry(key.to_string()).or_default() += 1;
                Err(f)
            }
            None => Ok(match (ps, pm) {
                (Some(l), _) => (l, r.second.reset_s(now, 1000)),
                (None, Some(l)) => (l, r.minute.reset_s(now, 60_000)),
                (None, None) => (0, 0),
            }),
        }
    }

    /// A per-id window (5 QPS per message for card updates, per user for sends): `Err` is a 429.
    pub fn admit_keyed(&mut self, route_key: &str, id: &str, per_second: u64) -> Result<(), ApiError> {
        let now = now_ms();
        if self.keyed.entry(format!("{route_key}#{id}")).or_default().admit(now, 1000, per_second) {
            return Ok(());
        }
        *self.throttled.entry(route_key.to_string()).or_default() += 1;
        Err(ApiError::new(StatusCode::TOO_MANY_REQUESTS, 99991400, "request trigger frequency limit"))
    }

    /// `GET /_sim/stats`.
    pub fn stats(&self) -> Value {
        let limits: BTreeMap<&String, Value> = self
            .calls
            .keys()
            .map(|k| {
                let (s, m) = scaled_limits(k, self.scale);
                (k, json!({"per_second": s, "per_minute": m}))
            })
            .collect();
        json!({"calls": self.calls, "throttled": self.throttled, "limits": limits})
    }
}

/// `METHOD /route/:param` from axum's `{param}` template.
pub(crate) fn route_key(method: &str, template: &str) -> String {
    let route: String = template
        .split('/')
        .map(|seg| match seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            Some(name) => format!(":{name}"),
            None => seg.to_string(),
        })
        .collect::<Vec<_>>()
        .join("/");
    format!("{method} {route}")
}

/// The middleware: drop fault, counting, throttling, then the handler; adds the headers.
pub(crate) async fn layer(State(app): State<App>, req: Request, next: Next) -> Response {
    let template = req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_string()).unwrap_or_default();
    let key = route_key(req.method().as_str(), &template);
    let seed = app.config.seed;
    if app.config.faults.roll(seed, FeishuFaultKind::Drop)
        && let Some(ConnDrop(token)) = req.extensions().get::<ConnDrop>()
    {
        token.cancel();
        std::future::pending::<()>().await;
    }
    let burst = app.config.faults.roll(seed, FeishuFaultKind::Throttle);
    let (admitted, log_id) = {
        let mut inner = app.lock();
        let log_id = inner.log_id();
        inner.limits.scale = app.config.rate_scale;
        (inner.limits.admit(&key, now_ms(), burst), log_id)
    };
    let (mut resp, limit, reset) = match admitted {
        Ok((limit, reset)) => (next.run(req).await, limit, reset),
        Err(f) => {
            let msg = if f.code == 1061045 {
                "download frequency limit, retry later"
            } else {
                "request trigger frequency limit"
            };
            (ApiError::new(StatusCode::TOO_MANY_REQUESTS, f.code, msg).into_response(), f.limit, f.reset_s)
        }
    };
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&log_id) {
        h.insert("x-tt-logid", v.clone());
        h.insert("x-request-id", v);
    }
    if limit > 0 {
        h.insert("x-ogw-ratelimit-limit", HeaderValue::from(limit));
        h.insert("x-ogw-ratelimit-reset", HeaderValue::from(reset));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_keys_use_api_md_templates() {
        assert_eq!(
            route_key("GET", "/open-apis/drive/v1/files/{file_token}/download"),
            "GET /open-apis/drive/v1/files/:file_token/download"
        );
    }

    #[test]
    fn windows_throttle_and_reset() {
        let mut l = Limits::default();
        let key = "GET /open-apis/drive/v1/files/:file_token/download";
        let t = 1_000_000_000u64;
        for _ in 0..5 {
            assert!(l.admit(key, t, false).is_ok());
        }
        let r = l.admit(key, t + 10, false).expect_err("sixth call in a second is throttled");
        assert_eq!((r.limit, r.code, r.reset_s), (5, 99991400, 1));
        assert!(l.admit(key, t + 1000, false).is_ok());
        let s = l.stats();
        assert_eq!(s["calls"][key], 7);
        assert_eq!(s["throttled"][key], 1);
        assert_eq!(s["limits"][key]["per_second"], 5);
        let w = "GET /open-apis/wiki/v2/spaces";
        for _ in 0..100 {
            assert!(l.admit(w, t, false).is_ok());
        }
        let r = l.admit(w, t + 1, false).expect_err("101st call in a minute is throttled");
        assert_eq!(r.limit, 100);
        assert!(r.reset_s > 1 && r.reset_s <= 60);
        assert!(l.admit("GET /open-apis/im/v1/messages", t, true).is_err(), "a burst throttles");
    }

    #[test]
    fn limits_scale() {
        let key = "POST /open-apis/drive/v1/export_tasks";
        assert_eq!(scaled_limits(key, 1.0), (None, Some(100)));
        assert_eq!(scaled_limits(key, 50.0), (None, Some(5000)));
        assert_eq!(scaled_limits("GET /open-apis/drive/v1/files/:file_token/download", 0.1), (Some(1), None));
        let mut l = Limits { scale: 2.0, ..Default::default() };
        let t = 1_000_000_000u64;
        for _ in 0..10 {
            assert!(l.admit("GET /open-apis/drive/v1/files/:file_token/download", t, false).is_ok());
        }
        assert!(l.admit("GET /open-apis/drive/v1/files/:file_token/download", t, false).is_err());
        assert_eq!(
            l.stats()["limits"]["GET /open-apis/drive/v1/files/:file_token/download"]["per_second"],
            10
        );
    }
}
