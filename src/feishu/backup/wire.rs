//! The backup's calls to Feishu as the user: paced by the client's shared
//! per-API [`RateLimiter`] (every window of each API's documented limit),
//! retried on 429 (waiting `x-ogw-ratelimit-reset`), on 5xx and on lost
//! connections, with the user's token refreshed when Feishu calls it invalid;
//! JSON calls and binary downloads that resume with `Range` after a break.
//!
//! Downloads use a client of their own without a total timeout (a large file
//! may take longer than any fixed limit) but with a read timeout, so a stalled
//! transfer is noticed and resumed.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::io::AsyncWriteExt;

use tokio::time::Instant;

use crate::feishu::ratelimit::{RateLimiter, reset_delay, server_error_backoff};
use crate::feishu::{Feishu, FeishuError, USER_TOKEN_INVALID};
use crate::store::feishu_apps::FeishuApp;

/// 429s in a row on one call before giving up (each waits what Feishu asked).
const MAX_THROTTLED: u32 = 40;
/// Retries after a 5xx, a lost connection or a broken transfer.
const MAX_FAILURES: u32 = 6;
/// How long a cached user token is used before asking the store again (which refreshes it when due).
const TOKEN_RECHECK: Duration = Duration::from_secs(60);

/// What went wrong with a download.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// Feishu refused (JSON envelope) or the call failed.
    #[error(transparent)]
    Feishu(#[from] FeishuError),
    /// Writing the file failed.
    #[error("writing {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
}

/// Calls made, for the summary and the benchmark.
#[derive(Debug, Default)]
pub struct CallCounts {
    /// Every request sent.
    pub requests: AtomicU64,
    /// 429s received.
    pub throttled: AtomicU64,
}

/// The user's side of the wire.
pub struct Wire {
    feishu: Arc<Feishu>,
    app: FeishuApp,
    open_id: String,
    limiter: Arc<RateLimiter>,
    http: reqwest::Client,
    token: tokio::sync::Mutex<Option<(String, Instant)>>,
    /// Counters.
    pub counts: CallCounts,
}

impl std::fmt::Debug for Wire {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wire")
            .field("app", &self.app.app_id)
            .field("open_id", &self.open_id)
            .finish_non_exhaustive()
    }
}

/// One answer before interpretation.
struct Answer {
    status: StatusCode,
    reset: Option<String>,
    resp: reqwest::Response,
}

enum Outcome {
    Retry(Duration),
    Done(Answer),
}

impl Wire {
    /// A wire for `open_id` of `app`, paced by the limiter of `feishu`'s client
    /// (so a backup and the other Feishu work of this process share each app's budgets).
    pub fn new(feishu: Arc<Feishu>, app: FeishuApp, open_id: &str) -> Result<Wire, FeishuError> {
        let limiter = feishu.api.limiter().clone();
        let http = crate::feishu::client::client_builder()?
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(60))
            .user_agent(concat!("wework-archive/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| FeishuError::Invalid(format!("HTTP client setup: {e}")))?;
        Ok(Wire {
            feishu,
            app,
            open_id: open_id.to_owned(),
            limiter,
            http,
            token: Default::default(),
            counts: CallCounts::default(),
        })
    }

    /// The app's base URL.
    pub fn base_url(&self) -> &str {
        self.app.base_url.trim_end_matches('/')
    }

    /// The user's current access token (cached for a minute; the store refreshes it when due).
    async fn token(&self, stale: Option<&str>) -> Result<String, FeishuError> {
        let mut cached = self.token.lock().await;
        if let Some((t, at)) = cached.as_ref()
            && stale != Some(t.as_str())
            && at.elapsed() < TOKEN_RECHECK
        {
            return Ok(t.clone());
        }
        let token = match stale {
            Some(old) => {
                let user = self
                    .feishu
                    .store
                    .feishu_user(&self.app.app_id, &self.open_id, &self.feishu.config.secrets)
                    .await?
                    .ok_or_else(|| FeishuError::NoUser {
                        app_id: self.app.app_id.clone(),
                        open_id: self.open_id.clone(),
                    })?;
                if user.tokens.access_token == old {
                    self.feishu
                        .refresh_user(&self.app, &self.open_id, Some(user.version))
                        .await?
                        .tokens
                        .access_token
                } else {
                    user.tokens.access_token
                }
            }
            None => self.feishu.user_token(&self.app, &self.open_id).await?,
        };
        *cached = Some((token.clone(), Instant::now()));
        Ok(token)
    }

    /// Sends one request (after its place in the budget) and classifies the answer.
    async fn attempt(
        &self,
        route: &'static str,
        build: &(dyn Fn(&reqwest::Client, &str) -> reqwest::RequestBuilder + Sync),
        token: &str,
        failures: &mut u32,
        throttled: &mut u32,
    ) -> Result<Outcome, FeishuError> {
        self.limiter.acquire(&self.app.app_id, route).await;
        self.counts.requests.fetch_add(1, Ordering::Relaxed);
        let resp = match build(&self.http, token).send().await {
            Ok(r) => r,
            Err(e) if *failures < MAX_FAILURES => {
                *failures += 1;
                tracing::debug!(route, "Feishu unreachable ({e}); retry {failures}");
                return Ok(Outcome::Retry(server_error_backoff(*failures)));
            }
            Err(source) => return Err(FeishuError::Transport { route, source }),
        };
        let status = resp.status();
        let reset =
            resp.headers().get("x-ogw-ratelimit-reset").and_then(|v| v.to_str().ok()).map(str::to_owned);
        if status == StatusCode::TOO_MANY_REQUESTS {
            return self.on_throttle(route, reset.as_deref(), throttled);
        }
        if status.is_server_error() && *failures < MAX_FAILURES {
            *failures += 1;
            return Ok(Outcome::Retry(server_error_backoff(*failures)));
        }
        Ok(Outcome::Done(Answer { status, reset, resp }))
    }

    fn on_throttle(
        &self,
        route: &'static str,
        reset: Option<&str>,
        throttled: &mut u32,
    ) -> Result<Outcome, FeishuError> {
        *throttled += 1;
        self.counts.throttled.fetch_add(1, Ordering::Relaxed);
        crate::feishu::FeishuStats::inc(&self.feishu.stats.throttled, route);
        let wait = reset_delay(reset);
        self.limiter.throttled(&self.app.app_id, route, wait, Instant::now());
        if *throttled >= MAX_THROTTLED {
            return Err(FeishuError::RateLimited { route, attempts: *throttled });
        }
        Ok(Outcome::Retry(Duration::ZERO))
    }

    /// A JSON call; the whole answer when `code` is 0.
    pub async fn json(
        &self,
        method: Method,
        route: &'static str,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Value, FeishuError> {
        let url = self.url(path, query)?;
        let build = |http: &reqwest::Client, token: &str| {
            let mut b =
                http.request(method.clone(), url.clone()).bearer_auth(token).timeout(Duration::from_secs(30));
            if let Some(body) = body {
                b = b
                    .header(reqwest::header::CONTENT_TYPE, "application/json; charset=utf-8")
                    .body(serde_json::to_vec(body).unwrap_or_default());
            }
            b
        };
        let (mut failures, mut throttled, mut refreshed) = (0, 0, false);
        let mut token = self.token(None).await?;
        loop {
            let answer = match self.attempt(route, &build, &token, &mut failures, &mut throttled).await? {
                Outcome::Retry(d) => {
                    tokio::time::sleep(d).await;
                    continue;
                }
                Outcome::Done(a) => a,
            };
            let status = answer.status;
            let bytes = match answer.resp.bytes().await {
                Ok(b) => b,
                Err(_) if failures < MAX_FAILURES => {
                    failures += 1;
                    tokio::time::sleep(server_error_backoff(failures)).await;
                    continue;
                }
                Err(source) => return Err(FeishuError::Transport { route, source }),
            };
            let Ok(json) = serde_json::from_slice::<Value>(&bytes) else {
                return Err(FeishuError::Malformed {
                    route,
                    what: format!(
                        "HTTP {} with a body that is not JSON ({} bytes)",
                        status.as_u16(),
                        bytes.len()
                    ),
                });
            };
            match classify(route, status, &json) {
                Err(e) if e.code() == Some(99991400) => {
                    if let Outcome::Retry(d) =
                        self.on_throttle(route, answer.reset.as_deref(), &mut throttled)?
                    {
                        tokio::time::sleep(d).await;
                    }
                }
                Err(e) if !refreshed && e.code().is_some_and(|c| USER_TOKEN_INVALID.contains(&c)) => {
                    refreshed = true;
                    token = self.token(Some(&token)).await?;
                }
                other => return other.map(|()| json),
            }
        }
    }

    fn url(&self, path: &str, query: &[(&str, String)]) -> Result<reqwest::Url, FeishuError> {
        let mut url = reqwest::Url::parse(&format!("{}{path}", self.base_url()))
            .map_err(|e| FeishuError::Invalid(format!("Feishu base URL {:?}: {e}", self.app.base_url)))?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        Ok(url)
    }

    /// Downloads `path` into `part`, resuming from what `part` already holds
    /// with `Range` (after a break in this run or a kill of an earlier one).
    /// Returns the total size, checked against what the server announced.
    pub async fn download(&self, route: &'static str, path: &str, part: &Path) -> Result<u64, DownloadError> {
        let io = |source| DownloadError::Io { path: part.display().to_string(), source };
        let url = self.url(path, &[])?;
        let (mut failures, mut throttled, mut refreshed) = (0, 0, false);
        let mut token = self.token(None).await?;
        loop {
            let have = tokio::fs::metadata(part).await.map_or(0, |m| m.len());
            let build = |http: &reqwest::Client, token: &str| {
                let b = http.get(url.clone()).bearer_auth(token);
                if have > 0 { b.header(reqwest::header::RANGE, format!("bytes={have}-")) } else { b }
            };
            let answer = match self.attempt(route, &build, &token, &mut failures, &mut throttled).await? {
                Outcome::Retry(d) => {
                    tokio::time::sleep(d).await;
                    continue;
                }
                Outcome::Done(a) => a,
            };
            let status = answer.status;
            if status == StatusCode::RANGE_NOT_SATISFIABLE && have > 0 {
                // What we hold is not a prefix of the current file: start over.
                tokio::fs::remove_file(part).await.map_err(io)?;
                continue;
            }
            if status != StatusCode::OK && status != StatusCode::PARTIAL_CONTENT {
                let bytes = answer.resp.bytes().await.unwrap_or_default();
                let json: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                let err = match classify(route, status, &json) {
                    Err(e) => e,
                    Ok(()) => FeishuError::Malformed {
                        route,
                        what: format!("HTTP {} on a download", status.as_u16()),
                    },
                };
                match err.code() {
                    Some(99991400) | Some(1061045) => {
                        if let Outcome::Retry(d) =
                            self.on_throttle(route, answer.reset.as_deref(), &mut throttled)?
                        {
                            tokio::time::sleep(d).await;
                        }
                        continue;
                    }
                    Some(c) if !refreshed && USER_TOKEN_INVALID.contains(&c) => {
                        refreshed = true;
                        token = self.token(Some(&token)).await?;
                        continue;
                    }
                    _ => return Err(err.into()),
                }
            }
            let (start, total) = if status == StatusCode::PARTIAL_CONTENT {
                match content_range(answer.resp.headers()) {
                    Some((s, t)) if s == have => (s, t),
                    _ => {
                        return Err(FeishuError::Malformed {
                            route,
                            what: "206 with a Content-Range that does not continue the file".into(),
                        }
                        .into());
                    }
                }
            } else {
                (0, answer.resp.content_length().unwrap_or(u64::MAX))
            };
            let mut file = tokio::fs::OpenOptions::new()
                .create(true)
                .write(true)
                .append(start > 0)
                .truncate(start == 0)
                .open(part)
                .await
                .map_err(io)?;
            let mut written = start;
            let mut resp = answer.resp;
            let broke = loop {
                match resp.chunk().await {
                    Ok(Some(c)) => {
                        file.write_all(&c).await.map_err(io)?;
                        written += c.len() as u64;
                    }
                    Ok(None) => break false,
                    Err(e) => {
                        tracing::debug!(route, "download broke at {written} bytes: {e}");
                        break true;
                    }
                }
            };
            file.flush().await.map_err(io)?;
            file.sync_all().await.map_err(io)?;
            drop(file);
            if broke || (total != u64::MAX && written < total) {
                if failures >= MAX_FAILURES {
                    return Err(FeishuError::Malformed {
                        route,
                        what: format!("transfer broke {failures} times (at {written} of {total} bytes)"),
                    }
                    .into());
                }
                failures += 1;
                tokio::time::sleep(server_error_backoff(failures)).await;
                continue;
            }
            if total != u64::MAX && written != total {
                tokio::fs::remove_file(part).await.map_err(io)?;
                return Err(FeishuError::Malformed {
                    route,
                    what: format!("got {written} bytes, the server announced {total}"),
                }
                .into());
            }
            return Ok(written);
        }
    }
}

/// Feishu's envelope: `Ok` when the code is 0 and the status a success.
fn classify(route: &'static str, status: StatusCode, json: &Value) -> Result<(), FeishuError> {
    let code = json.get("code").and_then(Value::as_i64).unwrap_or(if status.is_success() { 0 } else { -1 });
    if code == 0 && status.is_success() {
        return Ok(());
    }
    let msg = json.get("msg").and_then(Value::as_str).unwrap_or("").chars().take(300).collect();
    Err(FeishuError::Api { route, status: status.as_u16(), code, msg })
}

/// `(start, total)` of `Content-Range: bytes start-end/total`.
fn content_range(h: &reqwest::header::HeaderMap) -> Option<(u64, u64)> {
    let v = h.get(reqwest::header::CONTENT_RANGE)?.to_str().ok()?;
    let rest = v.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (start, _) = range.split_once('-')?;
    Some((start.trim().parse().ok()?, total.trim().parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges_and_envelopes() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(reqwest::header::CONTENT_RANGE, "bytes 100-199/5000".parse().unwrap());
        assert_eq!(content_range(&h), Some((100, 5000)));
        h.insert(reqwest::header::CONTENT_RANGE, "bytes */5000".parse().unwrap());
        assert_eq!(content_range(&h), None);
        assert!(classify("GET /x", StatusCode::OK, &serde_json::json!({"code": 0})).is_ok());
        let e =
            classify("GET /x", StatusCode::BAD_REQUEST, &serde_json::json!({"code": 1061002, "msg": "no"}))
                .unwrap_err();
        assert_eq!(e.code(), Some(1061002));
        assert_eq!(classify("GET /x", StatusCode::FORBIDDEN, &Value::Null).unwrap_err().code(), Some(-1));
    }
}
