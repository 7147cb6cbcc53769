//! The one HTTP client of the Feishu modules: reqwest over rustls
//! (aws-lc-rs, webpki roots; no system OpenSSL, see DEVELOPERS.md), JSON in
//! and out, Feishu's envelope checked, and every call paced by the
//! [`RateLimiter`]: a 429 waits `x-ogw-ratelimit-reset` and retries, a 5xx
//! or lost connection backs off and retries.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::FeishuError;
use super::ratelimit::{RateLimiter, reset_delay, server_error_backoff};

/// How a request authenticates.
#[derive(Clone)]
pub enum Auth {
    /// No Authorization header (token endpoints).
    None,
    /// `Authorization: Bearer <token>`.
    Bearer(String),
}

/// One API request.
#[derive(Clone)]
pub struct ApiRequest {
    /// Method.
    pub method: Method,
    /// The app's base URL (`https://open.feishu.cn`).
    pub base_url: String,
    /// Route template as in API.md (`PATCH /open-apis/im/v1/messages/:message_id`):
    /// the rate-limit budget and the name in errors and metrics.
    pub route: &'static str,
    /// The concrete path (`/open-apis/im/v1/messages/om_1`).
    pub path: String,
    /// Query parameters.
    pub query: Vec<(&'static str, String)>,
    /// JSON body.
    pub body: Option<Value>,
    /// Authentication.
    pub auth: Auth,
}

impl ApiRequest {
    /// A request without body or query.
    pub fn new(
        method: Method,
        base_url: &str,
        route: &'static str,
        path: impl Into<String>,
        auth: Auth,
    ) -> Self {
        ApiRequest {
            method,
            base_url: base_url.trim_end_matches('/').to_owned(),
            route,
            path: path.into(),
            query: Vec::new(),
            body: None,
            auth,
        }
    }

    /// With a JSON body.
    pub fn json(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }

    /// With a query parameter.
    pub fn query(mut self, k: &'static str, v: impl Into<String>) -> Self {
        self.query.push((k, v.into()));
        self
    }
}

/// Attempts on 429 before giving up.
const MAX_THROTTLED: u32 = 5;
/// Retries after a 5xx or a lost connection.
const MAX_SERVER_RETRIES: u32 = 3;

/// The client (cheap to clone).
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    limiter: Arc<RateLimiter>,
    /// Counts 429s by route.
    pub on_throttle: Option<Arc<super::FeishuStats>>,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api").finish_non_exhaustive()
    }
}

/// A TLS configuration with aws-lc-rs and the webpki roots (no system store, no OpenSSL).
pub(crate) fn tls_config() -> Result<rustls::ClientConfig, FeishuError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| FeishuError::Invalid(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// A reqwest builder with this module's TLS (aws-lc-rs, webpki roots):
/// reqwest is built without a default provider, so every client starts here.
pub fn client_builder() -> Result<reqwest::ClientBuilder, FeishuError> {
    Ok(reqwest::Client::builder().use_preconfigured_tls(tls_config()?))
}

impl Api {
    /// A client with a 30 s timeout per request.
    pub fn new() -> Result<Api, FeishuError> {
        let http = client_builder()?
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("wework-archive/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| FeishuError::Invalid(format!("HTTP client setup: {e}")))?;
        Ok(Api { http, limiter: Arc::new(RateLimiter::default()), on_throttle: None })
    }

    /// The same client pacing at `scale` × the documented limits (`FEISHU_RATE_SCALE`).
    pub fn with_rate_scale(mut self, scale: f64) -> Api {
        self.limiter = Arc::new(RateLimiter::new(scale));
        self
    }

    /// The per-API limiter every call of this client waits on: other callers
    /// of the same APIs (the backup's downloads) share it, so one process
    /// never spends an app's budget twice.
    pub fn limiter(&self) -> &Arc<RateLimiter> {
        &self.limiter
    }

    /// The same client counting 429s in `stats`.
    pub fn with_stats(mut self, stats: Arc<super::FeishuStats>) -> Api {
        self.on_throttle = Some(stats);
        self
    }

    /// The raw reqwest client (plain downloads and pushes).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Sends `req` on `app_id`'s budget; returns the whole JSON answer when
    /// `code` is 0 (or absent, as on the flat OAuth bodies).
    pub async fn send(&self, app_id: &str, req: ApiRequest) -> Result<Value, FeishuError> {
        let route = req.route;
        let mut throttled = 0;
        let mut failures = 0;
        loop {
            self.limiter.acquire(app_id, route).await;
            let url = format!("{}{}", req.base_url, req.path);
            let mut url = reqwest::Url::parse(&url)
                .map_err(|e| FeishuError::Invalid(format!("Feishu base URL {:?}: {e}", req.base_url)))?;
            if !req.query.is_empty() {
                url.query_pairs_mut().extend_pairs(req.query.iter().map(|(k, v)| (*k, v.as_str())));
            }
            let mut builder = self.http.request(req.method.clone(), url);
            if let Auth::Bearer(token) = &req.auth {
                builder = builder.bearer_auth(token);
            }
            if let Some(body) = &req.body {
                builder = builder
                    .header(reqwest::header::CONTENT_TYPE, "application/json; charset=utf-8")
                    .body(serde_json::to_vec(body).expect("JSON"));
            }
            let resp = match builder.send().await {
                Ok(r) => r,
                Err(e)
                    if failures < MAX_SERVER_RETRIES
                        && (e.is_connect() || e.is_timeout() || e.is_request()) =>
                {
                    failures += 1;
                    tracing::debug!(route, "Feishu unreachable ({e}); retry {failures}");
                    tokio::time::sleep(server_error_backoff(failures)).await;
                    continue;
                }
                Err(source) => return Err(FeishuError::Transport { route, source }),
            };
            let status = resp.status();
            let reset =
                resp.headers().get("x-ogw-ratelimit-reset").and_then(|v| v.to_str().ok()).map(str::to_owned);
            let bytes = match resp.bytes().await {
                Ok(b) => b,
                Err(source) => return Err(FeishuError::Transport { route, source }),
            };
            let json: Option<Value> = serde_json::from_slice(&bytes).ok();
            let code = json.as_ref().and_then(|j| j.get("code")).and_then(Value::as_i64).unwrap_or(0);
            if status == StatusCode::TOO_MANY_REQUESTS || code == 99991400 {
                throttled += 1;
                if let Some(stats) = &self.on_throttle {
                    super::FeishuStats::inc(&stats.throttled, route);
                }
                let wait = reset_delay(reset.as_deref());
                self.limiter.throttled(app_id, route, wait, Instant::now());
                if throttled >= MAX_THROTTLED {
                    return Err(FeishuError::RateLimited { route, attempts: throttled });
                }
                tracing::debug!(route, "throttled by Feishu: waiting {wait:?}");
                continue;
            }
            if status.is_server_error() && failures < MAX_SERVER_RETRIES {
                failures += 1;
                tracing::debug!(route, status = status.as_u16(), "Feishu server error; retry {failures}");
                tokio::time::sleep(server_error_backoff(failures)).await;
                continue;
            }
            let Some(json) = json else {
                return Err(FeishuError::Malformed {
                    route,
                    what: format!(
                        "HTTP {} with a body that is not JSON ({} bytes)",
                        status.as_u16(),
                        bytes.len()
                    ),
                });
            };
            if code != 0 || !status.is_success() {
                let msg = json
                    .get("msg")
                    .or_else(|| json.get("error_description"))
                    .or_else(|| json.get("error"))
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .chars()
                    .take(300)
                    .collect();
                return Err(FeishuError::Api { route, status: status.as_u16(), code, msg });
            }
            return Ok(json);
        }
    }
}

/// A string field of a JSON answer (ids and times travel as strings; numbers are accepted too).
pub fn str_field(v: &Value, key: &str) -> Option<String> {
    match v.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// An integer field that may travel as a string.
pub fn int_field(v: &Value, key: &str) -> Option<i64> {
    match v.get(key)? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}
