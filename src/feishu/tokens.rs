//! Tenant and app access tokens (API.md §1).
//!
//! Feishu hands out the same token until under 30 minutes remain, then a new
//! one (the old stays valid until its own expiry). So a token is fetched
//! once, reused until under 30 minutes remain, and shared: every instance
//! reads the Redis cache first, and only the holder of a short Redis lock
//! fetches (single flight across instances); the others wait for the cache.
//! Inside one process a per-app mutex makes the same guarantee, which is all
//! there is without Redis. A token Feishu refuses (99991663) is dropped from
//! both caches so the next caller fetches a new one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::AsyncCommands;
use reqwest::Method;
use serde::{Deserialize, Serialize};

use super::client::{ApiRequest, Auth, int_field, str_field};
use super::{Api, FeishuError, FeishuStats, now_ms};
use crate::control::link::RedisLink;
use crate::store::feishu_apps::FeishuApp;

/// Which credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenKind {
    /// `tenant_access_token` (what API calls as the app use).
    Tenant,
    /// `app_access_token`.
    App,
}

impl TokenKind {
    /// Name in keys, metrics and the hand-out.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Tenant => "tenant",
            TokenKind::App => "app",
        }
    }

    fn route(self) -> &'static str {
        match self {
            TokenKind::Tenant => "POST /open-apis/auth/v3/tenant_access_token/internal",
            TokenKind::App => "POST /open-apis/auth/v3/app_access_token/internal",
        }
    }

    fn path(self) -> &'static str {
        &self.route()[5..]
    }

    fn field(self) -> &'static str {
        match self {
            TokenKind::Tenant => "tenant_access_token",
            TokenKind::App => "app_access_token",
        }
    }
}

/// A token with its times (unix milliseconds).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppToken {
    /// The token.
    pub token: String,
    /// When it stops working.
    pub expires_at_ms: i64,
    /// When it was fetched.
    pub generated_at_ms: i64,
    /// When to fetch again.
    pub refresh_at_ms: i64,
}

impl std::fmt::Debug for AppToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppToken")
            .field("expires_at_ms", &self.expires_at_ms)
            .field("generated_at_ms", &self.generated_at_ms)
            .finish_non_exhaustive()
    }
}

/// Feishu mints a new token once the current one has under this left.
pub const REFRESH_MARGIN_MS: i64 = 30 * 60 * 1000;

/// When a token fetched at `now_ms` with `expire_s` seconds left is due for
/// refresh: 30 minutes before expiry; a token that already arrives with less
/// (a platform with short lifetimes, a test) is used until 10 % of what it had
/// remains, rather than fetched again on every call.
pub fn refresh_at(now_ms: i64, expire_s: i64) -> i64 {
    let life = expire_s.max(0) * 1000;
    let margin = if life > REFRESH_MARGIN_MS + 5 * 60 * 1000 { REFRESH_MARGIN_MS } else { life / 10 };
    now_ms + life - margin
}

impl AppToken {
    /// Whether the token is still good to use at `now_ms`.
    pub fn fresh(&self, now_ms: i64) -> bool {
        now_ms < self.refresh_at_ms && now_ms < self.expires_at_ms
    }
}

/// How long a fetch may hold the cross-instance lock.
const LOCK_MS: u64 = 10_000;
/// How long a waiter polls the shared cache before fetching itself.
const WAIT_FOR_PEER: Duration = Duration::from_secs(5);

/// One fetch at a time per (app, kind) in this process.
type Flight = Arc<tokio::sync::Mutex<()>>;

/// The token caches (this process's and the shared one).
pub struct AppTokens {
    redis: Option<RedisLink>,
    prefix: String,
    stats: Arc<FeishuStats>,
    local: Mutex<HashMap<(String, TokenKind), AppToken>>,
    flights: Mutex<HashMap<(String, TokenKind), Flight>>,
    /// Told about every token this process fetched (push mode).
    refreshed: tokio::sync::broadcast::Sender<(String, TokenKind, AppToken)>,
}

impl AppTokens {
    /// Caches over an optional Redis link.
    pub fn new(redis: Option<RedisLink>, prefix: String, stats: Arc<FeishuStats>) -> AppTokens {
        AppTokens {
            redis,
            prefix,
            stats,
            local: Mutex::default(),
            flights: Mutex::default(),
            refreshed: tokio::sync::broadcast::channel(64).0,
        }
    }

    /// Tokens this process fetches from now on.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<(String, TokenKind, AppToken)> {
        self.refreshed.subscribe()
    }

    fn cache_key(&self, app_id: &str, kind: TokenKind) -> String {
        format!("{}:token:{}:{app_id}", self.prefix, kind.as_str())
    }

    fn local_fresh(&self, key: &(String, TokenKind), now: i64) -> Option<AppToken> {
        self.local.lock().unwrap().get(key).filter(|t| t.fresh(now)).cloned()
    }

    /// A token of `kind` for `app`, fresh at the time of the call.
    pub async fn get(&self, api: &Api, app: &FeishuApp, kind: TokenKind) -> Result<AppToken, FeishuError> {
        let key = (app.app_id.clone(), kind);
        if let Some(t) = self.local_fresh(&key, now_ms()) {
            return Ok(t);
        }
        let flight = self.flights.lock().unwrap().entry(key.clone()).or_default().clone();
        let _one_per_process = flight.lock().await;
        if let Some(t) = self.local_fresh(&key, now_ms()) {
            return Ok(t);
        }
        let token = match &self.redis {
            Some(redis) => self.get_shared(redis, api, app, kind).await?,
            None => self.fetch(api, app, kind).await?,
        };
        self.local.lock().unwrap().insert(key, token.clone());
        Ok(token)
    }

    async fn shared(&self, redis: &RedisLink, cache: &str) -> Option<AppToken> {
        let cache = cache.to_owned();
        let text: Option<String> = redis.run(|mut c| async move { c.get(cache).await }).await.ok()?;
        text.and_then(|t| serde_json::from_str::<AppToken>(&t).ok()).filter(|t| t.fresh(now_ms()))
    }

    async fn get_shared(
        &self,
        redis: &RedisLink,
        api: &Api,
        app: &FeishuApp,
        kind: TokenKind,
    ) -> Result<AppToken, FeishuError> {
        let cache = self.cache_key(&app.app_id, kind);
        if let Some(t) = self.shared(redis, &cache).await {
            return Ok(t);
        }
        let lock = format!("{cache}:lock");
        let owner = super::crypto::random_token(12);
        let (l, o) = (lock.clone(), owner.clone());
        let took: Result<Option<String>, _> = redis
            .run(|mut c| async move {
                redis::cmd("SET").arg(l).arg(o).arg("NX").arg("PX").arg(LOCK_MS).query_async(&mut c).await
            })
            .await;
        match took {
            Ok(Some(_)) => {
                // Another instance may have filled the cache between our read and the lock.
                let result = match self.shared(redis, &cache).await {
                    Some(t) => Ok(t),
                    None => {
                        let fetched = self.fetch(api, app, kind).await;
                        if let Ok(t) = &fetched {
                            self.store_shared(redis, &cache, t).await;
                        }
                        fetched
                    }
                };
                let script = redis::Script::new(
                    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0",
                );
                let _ = redis
                    .run(|mut c| async move { script.key(lock).arg(owner).invoke_async::<i64>(&mut c).await })
                    .await;
                result
            }
            Ok(None) => {
                // A peer is fetching: wait for its result in the shared cache.
                let deadline = tokio::time::Instant::now() + WAIT_FOR_PEER;
                while tokio::time::Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    if let Some(t) = self.shared(redis, &cache).await {
                        return Ok(t);
                    }
                }
                tracing::warn!(app = %app.app_id, "no token from the instance holding the refresh lock: fetching here");
                let t = self.fetch(api, app, kind).await?;
                self.store_shared(redis, &cache, &t).await;
                Ok(t)
            }
            // Redis is away: this process fetches on its own.
            Err(_) => self.fetch(api, app, kind).await,
        }
    }

    async fn store_shared(&self, redis: &RedisLink, cache: &str, t: &AppToken) {
        let ttl = (t.expires_at_ms - now_ms()).max(1000) as u64;
        let (cache, text) = (cache.to_owned(), serde_json::to_string(t).expect("JSON"));
        let _ = redis
            .run(|mut c| async move {
                redis::cmd("SET").arg(cache).arg(text).arg("PX").arg(ttl).query_async::<()>(&mut c).await
            })
            .await;
    }

    /// Asks Feishu for a token.
    async fn fetch(&self, api: &Api, app: &FeishuApp, kind: TokenKind) -> Result<AppToken, FeishuError> {
        let req = ApiRequest::new(Method::POST, &app.base_url, kind.route(), kind.path(), Auth::None)
            .json(serde_json::json!({"app_id": app.app_id, "app_secret": app.app_secret}));
        let answer = match api.send(&app.app_id, req).await {
            Ok(a) => a,
            Err(e) => {
                FeishuStats::inc(&self.stats.token_refresh_failures, kind.as_str());
                return Err(e);
            }
        };
        let now = now_ms();
        let token = str_field(&answer, kind.field()).filter(|t| !t.is_empty());
        let expire = int_field(&answer, "expire").filter(|e| *e > 0);
        let (Some(token), Some(expire)) = (token, expire) else {
            FeishuStats::inc(&self.stats.token_refresh_failures, kind.as_str());
            return Err(FeishuError::Malformed {
                route: kind.route(),
                what: format!("no {} and expire", kind.field()),
            });
        };
        FeishuStats::inc(&self.stats.token_refreshes, kind.as_str());
        tracing::info!(app = %app.app_id, kind = kind.as_str(), expire_s = expire, "fetched an access token");
        let t = AppToken {
            token,
            expires_at_ms: now + expire * 1000,
            generated_at_ms: now,
            refresh_at_ms: refresh_at(now, expire),
        };
        let _ = self.refreshed.send((app.app_id.clone(), kind, t.clone()));
        Ok(t)
    }

    /// Drops `token` (Feishu refused it) from both caches, unless a newer one
    /// already replaced it.
    pub async fn invalidate(&self, app: &FeishuApp, kind: TokenKind, token: &str) {
        let key = (app.app_id.clone(), kind);
        {
            let mut local = self.local.lock().unwrap();
            if local.get(&key).is_some_and(|t| t.token == token) {
                local.remove(&key);
            }
        }
        if let Some(redis) = &self.redis {
            let cache = self.cache_key(&app.app_id, kind);
            let needle = serde_json::to_string(token).expect("JSON");
            let script = redis::Script::new(
                "local v = redis.call('GET', KEYS[1]) \
                 if v and string.find(v, ARGV[1], 1, true) then return redis.call('DEL', KEYS[1]) end return 0",
            );
            let _ = redis
                .run(|mut c| async move { script.key(cache).arg(needle).invoke_async::<i64>(&mut c).await })
                .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_thirty_minutes_before_expiry() {
        let now = 1_000_000;
        assert_eq!(refresh_at(now, 7200), now + 5400 * 1000);
        let t = AppToken {
            token: "t".into(),
            expires_at_ms: now + 7_200_000,
            generated_at_ms: now,
            refresh_at_ms: refresh_at(now, 7200),
        };
        assert!(t.fresh(now + 5_399_000));
        assert!(!t.fresh(now + 5_400_000), "under 30 min left: fetch again");
    }

    #[test]
    fn short_lived_tokens_are_used_until_ten_percent_remain() {
        let now = 0;
        assert_eq!(refresh_at(now, 100), 90_000);
        assert_eq!(refresh_at(now, 0), 0);
    }
}
