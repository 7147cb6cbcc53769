//! Sessions, CSRF tokens and the login rate limit of the archive browser.
//!
//! A session is a random token in an `HttpOnly; SameSite=Strict` cookie
//! scoped to `/ui`, stored as its sha256 with an expiry. Every state-changing
//! request (login, logout, export) carries a CSRF token in its form: the
//! session's token once logged in, and before that a double-submit token set
//! in a cookie of its own by the login page. Failed logins are limited per
//! remote address and per user name, so neither one address nor many
//! addresses can guess one account's password quickly.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Redirect, Response};

use super::UiState;
use crate::archive::accounts::{constant_time_eq, token_hash};
use crate::store::accounts::Session;

/// The session cookie.
pub const SESSION_COOKIE: &str = "wwa_session";
/// The login form's double-submit CSRF cookie.
pub const LOGIN_CSRF_COOKIE: &str = "wwa_login_csrf";
/// How long a session lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);

/// Failed logins allowed per key within [`LOGIN_WINDOW`].
pub const MAX_FAILURES: usize = 5;
/// The rate limit's window.
pub const LOGIN_WINDOW: Duration = Duration::from_secs(15 * 60);

/// Recent failed logins per key (`ip:<addr>` and `user:<name>`).
#[derive(Debug, Default)]
pub struct LoginLimiter {
    failures: Mutex<HashMap<String, Vec<Instant>>>,
}

impl LoginLimiter {
    /// Seconds until `keys` may try again (0: now).
    pub fn retry_after(&self, keys: &[String]) -> u64 {
        let mut map = self.failures.lock().unwrap();
        let now = Instant::now();
        let mut wait = 0;
        for k in keys {
            if let Some(v) = map.get_mut(k) {
                v.retain(|t| now.duration_since(*t) < LOGIN_WINDOW);
                if v.len() >= MAX_FAILURES {
                    let oldest = v[v.len() - MAX_FAILURES];
                    wait = wait.max((LOGIN_WINDOW - now.duration_since(oldest)).as_secs() + 1);
                }
            }
        }
        wait
    }

    /// Records a failure for every key.
    pub fn fail(&self, keys: &[String]) {
        let mut map = self.failures.lock().unwrap();
        // Bounded memory against address floods: forget everything old first.
        if map.len() > 100_000 {
            let now = Instant::now();
            map.retain(|_, v| v.iter().any(|t| now.duration_since(*t) < LOGIN_WINDOW));
        }
        for k in keys {
            map.entry(k.clone()).or_default().push(Instant::now());
        }
    }

    /// Forgets the failures of a user name after a successful login.
    pub fn succeed(&self, user_key: &str) {
        self.failures.lock().unwrap().remove(user_key);
    }
}

/// The value of cookie `name`.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// A `Set-Cookie` value for this app's cookies.
pub fn set_cookie(name: &str, value: &str, max_age: Duration) -> String {
    format!("{name}={value}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={}", max_age.as_secs())
}

/// The remote address of a request ("" when the server did not record it).
pub fn remote(parts: &Parts) -> String {
    parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string()).unwrap_or_default()
}

/// Whether a submitted CSRF token is the expected one.
pub fn csrf_ok(expected: &str, given: &str) -> bool {
    !expected.is_empty() && constant_time_eq(expected, given)
}

/// The remote address of a request, as an extractor.
pub struct Remote(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Remote {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Remote(remote(parts)))
    }
}

/// A logged-in request: its session and where it came from.
pub struct Authed {
    /// The session and user.
    pub session: Session,
    /// The remote address.
    pub remote: String,
}

impl FromRequestParts<UiState> for Authed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &UiState) -> Result<Self, Self::Rejection> {
        let to_login = || Redirect::to("/ui/login").into_response();
        let Some(token) = cookie(&parts.headers, SESSION_COOKIE) else { return Err(to_login()) };
        match state.app.store.session(&token_hash(&token)).await {
            Ok(Some(session)) => Ok(Authed { session, remote: remote(parts) }),
            Ok(None) => Err(to_login()),
            Err(e) => {
                tracing::warn!("ui: reading the session failed: {e}");
                Err(super::pages::error(
                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    "The database is unavailable.",
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_blocks_after_five_failures_per_key() {
        let l = LoginLimiter::default();
        let keys = vec!["ip:1".to_owned(), "user:a".to_owned()];
        for _ in 0..MAX_FAILURES {
            assert_eq!(l.retry_after(&keys), 0);
            l.fail(&keys);
        }
        assert!(l.retry_after(&keys) > 0);
        assert!(
            l.retry_after(&["ip:2".to_owned(), "user:a".to_owned()]) > 0,
            "the user is limited from anywhere"
        );
        assert_eq!(l.retry_after(&["ip:2".to_owned(), "user:b".to_owned()]), 0);
        l.succeed("user:a");
        assert!(l.retry_after(&["ip:1".to_owned()]) > 0, "the address stays limited");
    }

    #[test]
    fn cookies_parse() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, "a=1; wwa_session=abc; b=2".parse().unwrap());
        assert_eq!(cookie(&h, SESSION_COOKIE).as_deref(), Some("abc"));
        assert_eq!(cookie(&h, "zzz"), None);
        assert!(set_cookie("x", "y", SESSION_TTL).contains("HttpOnly; SameSite=Strict"));
        assert!(!csrf_ok("", ""));
    }
}
