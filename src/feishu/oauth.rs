//! User authorization (OAuth v2, API.md §2) and user tokens.
//!
//! `/auth/start` makes a random, single-use, expiring `state` and sends the
//! browser to the authorize page; `/auth/callback` consumes the state, trades
//! the code on the v2 token endpoint, asks who the user is and saves the pair
//! sealed. Refresh tokens are single-use and rotate on every refresh, so a
//! refresh (1) holds a Redis lock per user, (2) re-reads the row after taking
//! it, (3) saves the new pair by compare-and-swap on the row's version before
//! anyone uses it, and (4) when Feishu refuses the refresh, looks again: if
//! another process saved a newer pair meanwhile the user is fine; only a row
//! still unchanged is marked `needs_reauth`.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use super::client::{ApiRequest, Auth, int_field, str_field};
use super::{Feishu, FeishuError, FeishuStats, USER_TOKEN_INVALID, now_ms, now_s};
use crate::store::feishu_apps::FeishuApp;
use crate::store::feishu_oauth_states::{OAuthState, StateRefusal};
use crate::store::feishu_users::{FeishuUser, UserState, UserTokens};

/// The v2 token endpoint.
pub const TOKEN_ROUTE: &str = "POST /open-apis/authen/v2/oauth/token";
/// Who the token belongs to.
pub const USER_INFO_ROUTE: &str = "GET /open-apis/authen/v1/user_info";

/// Refresh-token errors that mean the token is gone for good (API.md §2.2).
pub const REFRESH_DEAD: &[i64] = &[20026, 20037, 20064, 20073, 20010];

/// The authorize page for an app: Feishu serves it on `accounts.*` (the API
/// host's sibling); a fake or private deployment serves it on its base URL.
pub fn authorize_url(app: &FeishuApp, redirect_uri: &str, state: &str, scope: &str) -> String {
    let base = app.base_url.trim_end_matches('/');
    let host = match base {
        "https://open.feishu.cn" => "https://accounts.feishu.cn",
        "https://open.larksuite.com" => "https://accounts.larksuite.com",
        other => other,
    };
    let mut url = reqwest::Url::parse(&format!("{host}/open-apis/authen/v1/authorize")).expect("URL");
    url.query_pairs_mut()
        .append_pair("client_id", &app.app_id)
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("scope", scope)
        .append_pair("state", state);
    url.into()
}

/// Whether a user token is due for refresh at `now_s`: when 10 % of its lifetime is left.
pub fn needs_refresh(tokens: &UserTokens, now_s: i64) -> bool {
    let margin = (tokens.access_lifetime_s as i64 / 10).max(1);
    tokens.access_expires_at - now_s <= margin
}

/// A token answer as a pair. `previous_refresh` is kept when Feishu sends no
/// new refresh token (no `offline_access`).
pub fn grant_to_tokens(
    answer: &Value,
    now_s: i64,
    previous_refresh: Option<&str>,
) -> Result<UserTokens, FeishuError> {
    let access = str_field(answer, "access_token").filter(|t| !t.is_empty());
    let Some(access_token) = access else {
        return Err(FeishuError::Malformed { route: TOKEN_ROUTE, what: "no access_token".into() });
    };
    let lifetime = int_field(answer, "expires_in").filter(|e| *e > 0).unwrap_or(7200);
    let refresh_token = str_field(answer, "refresh_token")
        .filter(|t| !t.is_empty())
        .or_else(|| previous_refresh.map(str::to_owned))
        .unwrap_or_default();
    let refresh_expires_at = int_field(answer, "refresh_token_expires_in").map(|s| now_s + s);
    Ok(UserTokens {
        access_token,
        refresh_token,
        access_expires_at: now_s + lifetime,
        access_lifetime_s: lifetime.min(u32::MAX as i64) as u32,
        refresh_expires_at,
        scope: str_field(answer, "scope").unwrap_or_default(),
    })
}

/// How a callback ended, for the page and the metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallbackOutcome {
    /// Authorized: who.
    Authorized {
        /// The app.
        app_id: String,
        /// Who.
        open_id: String,
        /// Their name.
        name: String,
    },
    /// Not authorized, with the reason label and a sentence.
    Refused {
        /// Metric label.
        reason: &'static str,
        /// For the page.
        message: String,
    },
}

impl Feishu {
    /// Begins an authorization: a new state, and the authorize URL to send the browser to.
    pub async fn start_authorization(
        &self,
        app_id: &str,
        open_id: Option<&str>,
        session: Option<&str>,
    ) -> Result<String, FeishuError> {
        let app = self.app(app_id).await?;
        if let Some(s) = session {
            match self.store.auth_session(s).await? {
                Some(sess) if sess.app_id == app.app_id => {}
                _ => return Err(FeishuError::Invalid("unknown authorization session".into())),
            }
        }
        let state = super::crypto::random_token(24);
        let ttl_ms = self.config.feishu.oauth_state_ttl.as_millis() as i64;
        let bound = OAuthState {
            app_id: app.app_id.clone(),
            open_id: open_id.map(str::to_owned),
            session_id: session.map(str::to_owned),
            expires_at_ms: now_ms() + ttl_ms,
        };
        self.store.create_oauth_state(&state, &bound).await?;
        Ok(authorize_url(&app, &self.redirect_uri(), &state, &self.config.feishu.oauth_scope))
    }

    /// `PUBLIC_URL/auth/callback`.
    pub fn redirect_uri(&self) -> String {
        format!("{}/auth/callback", self.config.public_url)
    }

    /// Handles `/auth/callback`: consumes the state, then either records the
    /// refusal or trades the code and saves the user.
    pub async fn finish_authorization(
        &self,
        code: Option<&str>,
        state: Option<&str>,
        error: Option<&str>,
    ) -> CallbackOutcome {
        let outcome = self.finish_inner(code, state, error).await;
        match &outcome {
            CallbackOutcome::Authorized { .. } => {}
            CallbackOutcome::Refused { reason, .. } => FeishuStats::inc(&self.stats.auth_failure, reason),
        }
        outcome
    }

    async fn finish_inner(
        &self,
        code: Option<&str>,
        state: Option<&str>,
        error: Option<&str>,
    ) -> CallbackOutcome {
        let refused =
            |reason, message: &str| CallbackOutcome::Refused { reason, message: message.to_owned() };
        let Some(state) = state.filter(|s| !s.is_empty() && s.len() <= 64) else {
            return refused("missing_state", "The link has no valid state. Start the authorization again.");
        };
        let now = now_ms();
        let bound = match self.store.consume_oauth_state(state, now).await {
            Ok(Ok(b)) => b,
            Ok(Err(StateRefusal::Used)) => {
                return refused("reused_state", "This authorization link was already used. Start again.");
            }
            Ok(Err(StateRefusal::Expired)) => {
                return refused("expired_state", "This authorization link has expired. Start again.");
            }
            Ok(Err(StateRefusal::Unknown)) => {
                return refused("unknown_state", "This authorization link is not one we issued.");
            }
            Err(e) => {
                tracing::warn!("OAuth callback: {e}");
                return refused("internal", "The archive could not check this link. Try again later.");
            }
        };
        if let Some(err) = error.filter(|e| !e.is_empty()) {
            if let Some(s) = &bound.session_id {
                self.close_session(s, crate::store::feishu_auth_sessions::SessionState::Rejected, "declined")
                    .await;
            }
            tracing::info!(app = %bound.app_id, error = %err.chars().take(64).collect::<String>(), "authorization declined");
            return refused("rejected", "Authorization was declined.");
        }
        let Some(code) = code.filter(|c| !c.is_empty()) else {
            return refused("missing_code", "Feishu sent no authorization code.");
        };
        let app = match self.app(&bound.app_id).await {
            Ok(a) => a,
            Err(_) => return refused("unknown_app", "This app is not configured here."),
        };
        let body = json!({
            "grant_type": "authorization_code",
            "client_id": app.app_id,
            "client_secret": app.app_secret,
            "code": code,
            "redirect_uri": self.redirect_uri(),
        });
        let req = ApiRequest::new(
            Method::POST,
            &app.base_url,
            TOKEN_ROUTE,
            "/open-apis/authen/v2/oauth/token",
            Auth::None,
        )
        .json(body);
        let tokens =
            match self.api.send(&app.app_id, req).await.and_then(|a| grant_to_tokens(&a, now_s(), None)) {
                Ok(t) => t,
                Err(e) => {
                    tracing::info!(app = %app.app_id, "OAuth code exchange refused: {e}");
                    return refused(
                        "code_exchange",
                        "Feishu did not accept the authorization code (expired or used).",
                    );
                }
            };
        FeishuStats::inc(&self.stats.token_refreshes, "user");
        let (open_id, name) = match self.user_info(&app, &tokens.access_token).await {
            Ok(who) => who,
            Err(e) => {
                tracing::info!(app = %app.app_id, "user_info after authorization failed: {e}");
                return refused("user_info", "Feishu did not say who authorized.");
            }
        };
        if let Some(expected) = &bound.open_id
            && expected != &open_id
        {
            return refused("wrong_user", "This link was made for someone else.");
        }
        if let Err(e) =
            self.store.save_authorized_user(&app.app_id, &open_id, &name, &tokens, &self.config.secrets).await
        {
            tracing::warn!(app = %app.app_id, "saving an authorized user: {e}");
            return refused("internal", "The archive could not save the authorization. Try again later.");
        }
        if let Some(s) = &bound.session_id {
            self.close_session(s, crate::store::feishu_auth_sessions::SessionState::Completed, "authorized")
                .await;
        }
        // The state was made at /auth/start, its lifetime before its expiry.
        let started_ms = bound.expires_at_ms - self.config.feishu.oauth_state_ttl.as_millis() as i64;
        self.stats.auth_completed(&app.app_id, (now_ms() - started_ms) as f64 / 1000.0);
        tracing::info!(app = %app.app_id, open_id = %open_id, "user authorized");
        CallbackOutcome::Authorized { app_id: app.app_id, open_id, name }
    }

    /// `(open_id, name)` of a user token's owner.
    pub async fn user_info(
        &self,
        app: &FeishuApp,
        access_token: &str,
    ) -> Result<(String, String), FeishuError> {
        let req = ApiRequest::new(
            Method::GET,
            &app.base_url,
            USER_INFO_ROUTE,
            "/open-apis/authen/v1/user_info",
            Auth::Bearer(access_token.to_owned()),
        );
        let answer = self.api.send(&app.app_id, req).await?;
        let data = answer.get("data").cloned().unwrap_or(Value::Null);
        let open_id = str_field(&data, "open_id")
            .filter(|o| !o.is_empty())
            .ok_or_else(|| FeishuError::Malformed { route: USER_INFO_ROUTE, what: "no open_id".into() })?;
        Ok((open_id, str_field(&data, "name").unwrap_or_default()))
    }

    /// A valid access token of a user, refreshed first when 10 % of its
    /// lifetime is left.
    pub async fn user_token(&self, app: &FeishuApp, open_id: &str) -> Result<String, FeishuError> {
        let user = self.load_user(app, open_id).await?;
        if !needs_refresh(&user.tokens, now_s()) {
            return Ok(user.tokens.access_token);
        }
        Ok(self.refresh_user(app, open_id, Some(user.version)).await?.tokens.access_token)
    }

    async fn load_user(&self, app: &FeishuApp, open_id: &str) -> Result<FeishuUser, FeishuError> {
        let user =
            self.store.feishu_user(&app.app_id, open_id, &self.config.secrets).await?.ok_or_else(|| {
                FeishuError::NoUser { app_id: app.app_id.clone(), open_id: open_id.to_owned() }
            })?;
        if user.state == UserState::NeedsReauth {
            return Err(FeishuError::NeedsReauth {
                app_id: app.app_id.clone(),
                open_id: open_id.to_owned(),
                why: "an earlier refresh failed".into(),
            });
        }
        Ok(user)
    }

    /// Calls an API as a user; on 99991677/99991668 the token is refreshed once and the call repeated.
    pub async fn call_as_user(
        &self,
        app: &FeishuApp,
        open_id: &str,
        req: impl Fn(&str) -> ApiRequest,
    ) -> Result<Value, FeishuError> {
        let token = self.user_token(app, open_id).await?;
        match self.api.send(&app.app_id, req(&token)).await {
            Err(e) if e.code().is_some_and(|c| USER_TOKEN_INVALID.contains(&c)) => {
                let seen = self.load_user(app, open_id).await?;
                let fresh = if seen.tokens.access_token == token {
                    self.refresh_user(app, open_id, Some(seen.version)).await?
                } else {
                    seen
                };
                self.api.send(&app.app_id, req(&fresh.tokens.access_token)).await
            }
            other => other,
        }
    }

    /// Refreshes a user's pair. `seen_version`: the version the caller judged
    /// stale; if the row moved past it meanwhile, another process already
    /// refreshed and its pair is returned. `None` forces a refresh.
    pub async fn refresh_user(
        &self,
        app: &FeishuApp,
        open_id: &str,
        seen_version: Option<u64>,
    ) -> Result<FeishuUser, FeishuError> {
        let lock = format!("{}:user-refresh:{}:{open_id}", self.redis_prefix(), app.app_id);
        let owner = super::crypto::random_token(12);
        let held = self.take_lock(&lock, &owner, Duration::from_secs(15)).await;
        let result = self.refresh_locked(app, open_id, seen_version).await;
        if held {
            self.release_lock(&lock, &owner).await;
        }
        result
    }

    async fn refresh_locked(
        &self,
        app: &FeishuApp,
        open_id: &str,
        seen_version: Option<u64>,
    ) -> Result<FeishuUser, FeishuError> {
        let user = self.load_user(app, open_id).await?;
        if let Some(seen) = seen_version
            && user.version != seen
            && !needs_refresh(&user.tokens, now_s())
        {
            return Ok(user);
        }
        let body = json!({
            "grant_type": "refresh_token",
            "client_id": app.app_id,
            "client_secret": app.app_secret,
            "refresh_token": user.tokens.refresh_token,
        });
        let req = ApiRequest::new(
            Method::POST,
            &app.base_url,
            TOKEN_ROUTE,
            "/open-apis/authen/v2/oauth/token",
            Auth::None,
        )
        .json(body);
        match self.api.send(&app.app_id, req).await {
            Ok(answer) => {
                let tokens = grant_to_tokens(&answer, now_s(), Some(&user.tokens.refresh_token))?;
                FeishuStats::inc(&self.stats.token_refreshes, "user");
                if self
                    .store
                    .swap_user_tokens(&app.app_id, open_id, user.version, &tokens, &self.config.secrets)
                    .await?
                {
                    tracing::info!(app = %app.app_id, open_id, "user token refreshed");
                    return self.load_user(app, open_id).await;
                }
                // Someone saved a newer pair (a new authorization): theirs wins.
                self.load_user(app, open_id).await
            }
            Err(e) => {
                FeishuStats::inc(&self.stats.token_refresh_failures, "user");
                if e.code() == Some(20073) {
                    // "Already used": someone else is refreshing this pair right
                    // now (no Redis, or its lock expired); give them a moment to save.
                    tokio::time::sleep(Duration::from_millis(1500)).await;
                }
                let after = self.store.feishu_user(&app.app_id, open_id, &self.config.secrets).await?;
                if let Some(after) =
                    after.filter(|a| a.version != user.version && a.state == UserState::Active)
                {
                    // Another process refreshed with the same refresh token first.
                    return Ok(after);
                }
                // A refusal (4xx with a code other than "server error, retry")
                // is final; a transport failure or 5xx is not.
                let dead =
                    matches!(&e, FeishuError::Api { status, code, .. } if *status < 500 && *code != 20050);
                if dead || e.code().is_some_and(|c| REFRESH_DEAD.contains(&c)) {
                    let why = format!("refresh refused: {e}");
                    if self.store.mark_user_needs_reauth(&app.app_id, open_id, user.version, &why).await? {
                        tracing::warn!(app = %app.app_id, open_id, "user token refresh refused: marked needs_reauth");
                        if let Err(card) = self.ensure_auth_card(&app.app_id, open_id).await {
                            tracing::warn!(app = %app.app_id, open_id, "re-authorization card not sent: {card}");
                        }
                    }
                    return Err(FeishuError::NeedsReauth {
                        app_id: app.app_id.clone(),
                        open_id: open_id.to_owned(),
                        why,
                    });
                }
                Err(e)
            }
        }
    }

    /// Takes a Redis lock, waiting up to its lifetime for a holder to let go.
    /// False without Redis (the database compare-and-swap still protects the pair).
    pub(crate) async fn take_lock(&self, key: &str, owner: &str, ttl: Duration) -> bool {
        let Some(redis) = &self.redis else { return false };
        let deadline = tokio::time::Instant::now() + ttl;
        loop {
            let (k, o) = (key.to_owned(), owner.to_owned());
            let took: Result<Option<String>, _> = redis
                .run(|mut c| async move {
                    redis::cmd("SET")
                        .arg(k)
                        .arg(o)
                        .arg("NX")
                        .arg("PX")
                        .arg(ttl.as_millis() as u64)
                        .query_async(&mut c)
                        .await
                })
                .await;
            match took {
                Ok(Some(_)) => return true,
                Ok(None) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                _ => return false,
            }
        }
    }

    pub(crate) async fn release_lock(&self, key: &str, owner: &str) {
        let Some(redis) = &self.redis else { return };
        let script = redis::Script::new(
            "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0",
        );
        let (k, o) = (key.to_owned(), owner.to_owned());
        let _ =
            redis.run(|mut c| async move { script.key(k).arg(o).invoke_async::<i64>(&mut c).await }).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(base: &str) -> FeishuApp {
        FeishuApp {
            app_id: "cli_x".into(),
            app_secret: "s".into(),
            encrypt_key: "e".into(),
            verification_token: "v".into(),
            base_url: base.into(),
            enabled: true,
        }
    }

    #[test]
    fn authorize_url_goes_to_the_accounts_host_or_the_fake() {
        let u = authorize_url(
            &app("https://open.feishu.cn"),
            "http://127.0.0.1:29091/auth/callback",
            "st",
            "offline_access",
        );
        assert!(
            u.starts_with("https://accounts.feishu.cn/open-apis/authen/v1/authorize?client_id=cli_x&"),
            "{u}"
        );
        assert!(u.contains("redirect_uri=http%3A%2F%2F127.0.0.1%3A29091%2Fauth%2Fcallback"), "{u}");
        assert!(u.contains("state=st") && u.contains("scope=offline_access"), "{u}");
        let u = authorize_url(&app("http://127.0.0.1:5000/"), "r", "st", "s");
        assert!(u.starts_with("http://127.0.0.1:5000/open-apis/authen/v1/authorize?"), "{u}");
    }

    #[test]
    fn refresh_when_ten_percent_of_the_lifetime_is_left() {
        let t = UserTokens {
            access_token: "u".into(),
            refresh_token: "r".into(),
            access_expires_at: 10_000,
            access_lifetime_s: 7200,
            refresh_expires_at: None,
            scope: String::new(),
        };
        assert!(!needs_refresh(&t, 10_000 - 721));
        assert!(needs_refresh(&t, 10_000 - 720));
        assert!(needs_refresh(&t, 20_000), "expired");
    }

    #[test]
    fn grants_parse_and_keep_the_old_refresh_token_when_none_is_sent() {
        let a = json!({"code":0,"access_token":"u-1","expires_in":7200,"refresh_token":"r-2",
                       "refresh_token_expires_in":604800,"token_type":"Bearer","scope":"offline_access"});
        let t = grant_to_tokens(&a, 100, Some("r-1")).unwrap();
        assert_eq!((t.access_token.as_str(), t.refresh_token.as_str()), ("u-1", "r-2"));
        assert_eq!((t.access_expires_at, t.refresh_expires_at), (7300, Some(604_900)));
        let t = grant_to_tokens(&json!({"access_token":"u-3","expires_in":"60"}), 0, Some("r-1")).unwrap();
        assert_eq!((t.refresh_token.as_str(), t.access_lifetime_s), ("r-1", 60));
        assert!(grant_to_tokens(&json!({"code":20073}), 0, None).is_err());
    }
}
