//! Feishu (Lark) Open Platform: what the meeting and document modules stand on.
//!
//! - [`client`]: one thin typed HTTP client (reqwest + rustls) every call goes
//!   through, with the per-API [`ratelimit`]er (429 `x-ogw-ratelimit-reset`,
//!   5xx backoff).
//! - [`tokens`]: tenant/app access tokens, fetched once and shared across
//!   instances through Redis, refreshed single-flight.
//! - [`oauth`]: user authorization (OAuth v2) and rotating user tokens.
//! - [`backup`]: cloud documents and wiki backup.
//! - [`cards`]: card authorization sessions.
//! - [`events`]: the webhook: decrypt, verify, de-duplicate, store, process.
//! - [`handout`]: the token hand-out JSON other teams consume.
//! - [`crypto`]: the event crypto and signature (pure functions).
//!
//! [`Feishu`] holds the shared parts (store, settings, client, token caches,
//! counters) and is passed explicitly to handlers and tasks.

pub mod backup;
pub mod cards;
pub mod client;
pub mod crypto;
pub mod events;
pub mod handout;
pub mod longconn;
pub mod oauth;
pub mod ratelimit;
pub mod recordings;
pub mod stats;
pub mod tasks;
pub mod tokens;

use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::control::link::RedisLink;
use crate::store::feishu_apps::FeishuApp;
use crate::store::{Store, StoreError};

pub use client::{Api, ApiRequest, Auth};
pub use stats::FeishuStats;
pub use tokens::{AppToken, AppTokens, TokenKind};

/// Errors of the Feishu modules (never carrying a secret or token).
#[derive(Debug, thiserror::Error)]
pub enum FeishuError {
    /// The request did not get an answer (connect, TLS, timeout).
    #[error("Feishu request {route} failed: {source}")]
    Transport {
        /// Route template.
        route: &'static str,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// Feishu answered with a non-zero code.
    #[error("Feishu {route}: HTTP {status}, code {code}: {msg}")]
    Api {
        /// Route template.
        route: &'static str,
        /// HTTP status.
        status: u16,
        /// Business code.
        code: i64,
        /// Feishu's message.
        msg: String,
    },
    /// Still throttled after every retry.
    #[error("Feishu {route}: rate limited after {attempts} attempt(s)")]
    RateLimited {
        /// Route template.
        route: &'static str,
        /// Attempts made.
        attempts: u32,
    },
    /// The answer is not what the contract says.
    #[error("Feishu {route}: unexpected answer: {what}")]
    Malformed {
        /// Route template.
        route: &'static str,
        /// What was wrong.
        what: String,
    },
    /// No such app, or it is disabled.
    #[error("no enabled Feishu app {0:?}")]
    NoApp(String),
    /// No such authorized user.
    #[error("user {open_id} of app {app_id} has not authorized")]
    NoUser {
        /// App.
        app_id: String,
        /// User.
        open_id: String,
    },
    /// The user's refresh failed for good; they must authorize again.
    #[error("user {open_id} of app {app_id} must authorize again ({why})")]
    NeedsReauth {
        /// App.
        app_id: String,
        /// User.
        open_id: String,
        /// Why.
        why: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Anything else invalid.
    #[error("{0}")]
    Invalid(String),
}

impl FeishuError {
    /// The business code, when Feishu gave one.
    pub fn code(&self) -> Option<i64> {
        match self {
            FeishuError::Api { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// Codes meaning "this tenant/app access token is no longer valid" (API.md §0).
pub const APP_TOKEN_INVALID: &[i64] = &[99991663, 99991664, 99991665, 99991666];
/// Codes meaning "refresh this user access token".
pub const USER_TOKEN_INVALID: &[i64] = &[99991677, 99991668];

/// The shared parts of the Feishu modules.
pub struct Feishu {
    /// The archive database.
    pub store: Store,
    /// Settings.
    pub config: Arc<Config>,
    /// The HTTP client every call goes through.
    pub api: Api,
    /// Tenant/app access tokens.
    pub tokens: AppTokens,
    /// Counters for `/metrics`.
    pub stats: Arc<FeishuStats>,
    /// Redis (locks, shared caches, event de-duplication); None = per process only.
    pub redis: Option<RedisLink>,
    /// The meeting-recording worker's shared parts (issue 13).
    pub recordings: Arc<recordings::RecordingRuntime>,
}

impl std::fmt::Debug for Feishu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Feishu").field("redis", &self.redis.is_some()).finish_non_exhaustive()
    }
}

impl Feishu {
    /// The Feishu parts over a store and settings. Redis is optional: without
    /// it, single-flight and de-duplication fall back to this process and the
    /// database.
    pub fn new(store: Store, config: Arc<Config>) -> Result<Arc<Feishu>, FeishuError> {
        let stats = Arc::new(FeishuStats::default());
        let redis = RedisLink::new(
            &config.redis_url,
            "feishu",
            Duration::from_secs(2),
            Duration::from_secs(10),
            Arc::new(crate::control::ControlStats::default()),
        )
        .map_err(|e| FeishuError::Invalid(format!("REDIS_URL: {e}")))
        .ok();
        let api = Api::new()?.with_stats(stats.clone()).with_rate_scale(config.feishu.rate_scale);
        let prefix = format!("{}:feishu", config.redis_prefix);
        let tokens = AppTokens::new(redis.clone(), prefix, stats.clone());
        let recordings = Arc::new(recordings::RecordingRuntime::new()?);
        Ok(Arc::new(Feishu { store, config, api, tokens, stats, redis, recordings }))
    }

    /// Redis key prefix of the Feishu modules.
    pub fn redis_prefix(&self) -> String {
        format!("{}:feishu", self.config.redis_prefix)
    }

    /// An enabled app.
    pub async fn app(&self, app_id: &str) -> Result<FeishuApp, FeishuError> {
        match self.store.feishu_app(app_id, &self.config.secrets).await? {
            Some(app) if app.enabled => Ok(app),
            _ => Err(FeishuError::NoApp(app_id.to_owned())),
        }
    }

    /// A valid tenant access token of `app` (cached, refreshed when due).
    pub async fn tenant_token(&self, app: &FeishuApp) -> Result<AppToken, FeishuError> {
        self.tokens.get(&self.api, app, TokenKind::Tenant).await
    }

    /// Calls an API as the app (tenant token). A token Feishu calls invalid
    /// (99991663 and kin) is dropped everywhere and the call made once more
    /// with a fresh one.
    pub async fn call_as_app(
        &self,
        app: &FeishuApp,
        req: impl Fn(&str) -> ApiRequest,
    ) -> Result<serde_json::Value, FeishuError> {
        let token = self.tenant_token(app).await?;
        match self.api.send(&app.app_id, req(&token.token)).await {
            Err(e) if e.code().is_some_and(|c| APP_TOKEN_INVALID.contains(&c)) => {
                tracing::info!(app = %app.app_id, "tenant access token refused by Feishu: fetching a new one");
                self.tokens.invalidate(app, TokenKind::Tenant, &token.token).await;
                let token = self.tenant_token(app).await?;
                self.api.send(&app.app_id, req(&token.token)).await
            }
            other => other,
        }
    }
}

/// Unix time in milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Unix time in seconds.
pub fn now_s() -> i64 {
    now_ms() / 1000
}
