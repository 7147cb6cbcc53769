//! App credentials (API.md §1), OAuth user authorization (§2) and the bearer check every API
//! runs.
//!
//! Tenant/app tokens behave as documented: one current token per kind; a call with ≥ 30 min left
//! returns the same token with its real remaining seconds, with < 30 min left a new one is minted
//! and the old one stays valid until its own expiry. Authorization codes are single-use and live
//! 5 minutes; refresh tokens are single-use and rotate on every refresh.
//!
//! OAuth error codes 20002/20003/20004/20065/20070/20071 are the fake's choice where API.md has
//! none (it lists 20026/20037/20064/20073 for refresh tokens, which are used as listed).

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::faults::FeishuFaultKind;
use super::server::{ApiError, ApiResult, bearer, json_response, ok};
use super::state::{App, Inner, Shared, now_ms};

/// Below this much remaining lifetime a token request mints a new tenant/app token.
const ROTATE_BELOW_MS: u64 = 30 * 60 * 1000;
/// The scopes the fake app has; granted when an authorization names none.
pub(crate) const APP_SCOPES: &str = "offline_access contact:user.base:readonly im:message im:message:send_as_bot \
vc:record:readonly minutes:minutes.media:export drive:drive:readonly wiki:wiki:readonly docs:document:export";

#[derive(Debug, Clone)]
struct AppToken {
    token: String,
    expires_ms: u64,
    revoked: bool,
}

#[derive(Debug, Clone)]
struct Code {
    client_id: String,
    redirect_uri: String,
    open_id: String,
    scope: String,
    expires_ms: u64,
    used: bool,
    challenge: Option<(String, String)>,
}

#[derive(Debug, Clone)]
struct UserToken {
    open_id: String,
    expires_ms: u64,
    revoked: bool,
}

#[derive(Debug, Clone)]
struct Refresh {
    open_id: String,
    scope: String,
    expires_ms: u64,
    used: bool,
}

/// Every token and code the fake has issued.
#[derive(Debug, Default)]
pub(crate) struct Tokens {
    tenant: Vec<AppToken>,
    app: Vec<AppToken>,
    codes: HashMap<String, Code>,
    user: HashMap<String, UserToken>,
    refresh: HashMap<String, Refresh>,
    latest_user: HashMap<String, String>,
}

/// Who a request is from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Caller {
    /// A tenant access token (the app as a bot).
    Tenant,
    /// A user access token of this person.
    User(String),
}

/// Which tokens an API takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Accept {
    TenantOrUser,
    User,
}

/// The bearer check: 99991661 without a token, 99991671 for a malformed one, 99991663 for a dead
/// tenant token, 99991668 for an unknown and 99991677 for an expired or revoked user token.
pub(crate) fn check(
    shared: &Shared,
    inner: &mut Inner,
    headers: &HeaderMap,
    accept: Accept,
) -> Result<Caller, ApiError> {
    let Some(token) = bearer(headers) else {
        return Err(ApiError::bad(
            99991661,
            "Missing access token for authorization. Please make a request with token attached.",
        ));
    };
    let now = now_ms();
    let seed = shared.config.seed;
    if token.starts_with("t-") {
        if accept == Accept::User {
            return Err(ApiError::bad(99991668, "this API takes a user_access_token"));
        }
        let t = inner.auth.tenant.iter_mut().find(|t| t.token == token);
        return match t {
            Some(t) if !t.revoked && t.expires_ms > now => {
                if shared.config.faults.roll(seed, FeishuFaultKind::TokenExpiry) {
                    t.revoked = true;
                    return Err(invalid_tenant());
                }
                Ok(Caller::Tenant)
            }
            _ => Err(invalid_tenant()),
        };
    }
    if token.starts_with("u-") {
        return match inner.auth.user.get_mut(token) {
            None => {
                Err(ApiError::bad(99991668, "Invalid access token for authorization (user_access_token)."))
            }
            Some(u) if u.revoked || u.expires_ms <= now => Err(expired_user()),
            Some(u) => {
                if shared.config.faults.roll(seed, FeishuFaultKind::TokenExpiry) {
                    u.revoked = true;
                    return Err(expired_user());
                }
                Ok(Caller::User(u.open_id.clone()))
            }
        };
    }
    Err(ApiError::bad(99991671, "Invalid access token format: must start with \"t-\" or \"u-\"."))
}

fn invalid_tenant() -> ApiError {
    ApiError::bad(
        99991663,
        "Invalid access token for authorization. Please make a request with token attached.",
    )
}

fn expired_user() -> ApiError {
    ApiError::bad(99991677, "user access token expired, please refresh")
}

/// Returns the current token of `list`, minting one when none is current or < 30 min remain.
fn current(inner_ids: &mut Inner, kind: &str, ttl_ms: u64) -> (String, u64) {
    let now = now_ms();
    let list = if kind == "tenant" { &inner_ids.auth.tenant } else { &inner_ids.auth.app };
    if let Some(t) =
        list.last().filter(|t| !t.revoked && t.expires_ms > now + ROTATE_BELOW_MS.min(ttl_ms / 2))
    {
        return (t.token.clone(), (t.expires_ms - now) / 1000);
    }
    let token = format!("t-g{}", inner_ids.alnum(40));
    let entry = AppToken { token: token.clone(), expires_ms: now + ttl_ms, revoked: false };
    if kind == "tenant" {
        inner_ids.auth.tenant.push(entry);
    } else {
        inner_ids.auth.app.push(entry);
    }
    (token, ttl_ms / 1000)
}

#[derive(Debug, Deserialize)]
pub(crate) struct Credentials {
    #[serde(default)]
    app_id: String,
    #[serde(default)]
    app_secret: String,
}

fn parse_credentials(shared: &Shared, body: &[u8]) -> Result<(), Box<Response>> {
    let c: Credentials = serde_json::from_slice(body).map_err(|_| {
        Box::new(json_response(
            StatusCode::BAD_REQUEST,
            &json!({"code": 99992402, "msg": "field validation failed: body is not JSON"}),
        ))
    })?;
    if c.app_id != shared.world.app_id || c.app_secret != shared.world.app_secret {
        return Err(Box::new(json_response(
            StatusCode::BAD_REQUEST,
            &json!({"code": 99991543, "msg": "app_id or app_secret is invalid"}),
        )));
    }
    Ok(())
}

/// `POST /open-apis/auth/v3/tenant_access_token/internal` (flat body).
pub(crate) async fn tenant_token(State(app): State<App>, body: Bytes) -> Response {
    if let Err(r) = parse_credentials(&app, &body) {
        return *r;
    }
    let ttl = app.config.token_ttl.as_millis() as u64;
    let (token, expire) = current(&mut app.lock(), "tenant", ttl);
    json_response(
        StatusCode::OK,
        &json!({"code": 0, "msg": "ok", "tenant_access_token": token, "expire": expire}),
    )
}

/// `POST /open-apis/auth/v3/app_access_token/internal` (flat body, also carries a tenant token).
pub(crate) async fn app_token(State(app): State<App>, body: Bytes) -> Response {
    if let Err(r) = parse_credentials(&app, &body) {
        return *r;
    }
    let ttl = app.config.token_ttl.as_millis() as u64;
    let mut inner = app.lock();
    let (app_token, expire) = current(&mut inner, "app", ttl);
    let (tenant, _) = current(&mut inner, "tenant", ttl);
    json_response(
        StatusCode::OK,
        &json!({"code": 0, "msg": "ok", "app_access_token": app_token, "tenant_access_token": tenant, "expire": expire}),
    )
}

/// What a person's click on the authorize page decides (`/_sim/authorize` and the HTML form).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Decision {
    pub client_id: String,
    pub redirect_uri: String,
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub open_id: String,
    pub decision: String,
    #[serde(default)]
    pub scope: Option<String>,
    #[serde(default)]
    pub code_challenge: Option<String>,
    #[serde(default)]
    pub code_challenge_method: Option<String>,
}

/// Percent-encodes a query value.
pub(crate) fn pct(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Applies a decision: the redirect location with a fresh single-use code, or `access_denied`.
pub(crate) fn decide(shared: &Shared, d: &Decision) -> Result<String, ApiError> {
    if d.client_id != shared.world.app_id {
        return Err(ApiError::bad(20001, "unknown client_id"));
    }
    if !(d.redirect_uri.starts_with("http://") || d.redirect_uri.starts_with("https://")) {
        return Err(ApiError::bad(20001, "redirect_uri must be an absolute http(s) URL"));
    }
    let sep = if d.redirect_uri.contains('?') { '&' } else { '?' };
    match d.decision.as_str() {
        "reject" => Ok(format!("{}{sep}error=access_denied&state={}", d.redirect_uri, pct(&d.state))),
        "approve" => {
            if shared.world.user(&d.open_id).is_none() {
                return Err(ApiError::bad(20008, "user does not exist"));
            }
            let mut inner = shared.lock();
            let code = inner.hex(32);
            let scope =
                d.scope.clone().filter(|s| !s.trim().is_empty()).unwrap_or_else(|| APP_SCOPES.to_string());
            let challenge = d
                .code_challenge
                .clone()
                .map(|c| (c, d.code_challenge_method.clone().unwrap_or("plain".into())));
            inner.auth.codes.insert(
                code.clone(),
                Code {
                    client_id: d.client_id.clone(),
                    redirect_uri: d.redirect_uri.clone(),
                    open_id: d.open_id.clone(),
                    scope,
                    expires_ms: now_ms() + shared.config.code_ttl.as_millis() as u64,
                    used: false,
                    challenge,
                },
            );
            Ok(format!("{}{sep}code={code}&state={}", d.redirect_uri, pct(&d.state)))
        }
        other => Err(ApiError::bad(20001, format!("decision must be approve or reject, not {other:?}"))),
    }
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// `GET /open-apis/authen/v1/authorize`: the consent page, one approve button per person.
pub(crate) async fn authorize_page(
    State(app): State<App>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let get = |k: &str| q.get(k).cloned().unwrap_or_default();
    if get("client_id") != app.world.app_id || get("redirect_uri").is_empty() {
        return (StatusCode::BAD_REQUEST, Html("<h1>Invalid authorization request</h1>".to_string()))
            .into_response();
    }
    let hidden: String =
        ["client_id", "redirect_uri", "state", "scope", "code_challenge", "code_challenge_method"]
            .iter()
            .filter(|k| q.contains_key(**k))
            .map(|k| format!("<input type=\"hidden\" name=\"{k}\" value=\"{}\">", html_escape(&get(k))))
            .collect();
    let options: String = app
        .world
        .users
        .iter()
        .map(|u| format!("<option value=\"{}\">{}</option>", u.open_id, html_escape(&u.name)))
        .collect();
    let page = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Authorize</title></head><body>\
         <h1>Authorize the app {app_id}</h1><p>Scopes: {scope}</p>\
         <form method=\"post\" action=\"/open-apis/authen/v1/authorize/decide\">{hidden}\
         <select name=\"open_id\">{options}</select>\
         <button name=\"decision\" value=\"approve\">Authorize</button>\
         <button name=\"decision\" value=\"reject\">Reject</button></form></body></html>",
        app_id = html_escape(&app.world.app_id),
        scope = html_escape(&get("scope")),
    );
    Html(page).into_response()
}

/// The consent page's form: 302 to the redirect URI.
pub(crate) async fn authorize_decide(State(app): State<App>, body: Bytes) -> Response {
    let d: Decision = match serde_urlencoded::from_bytes(&body) {
        Ok(d) => d,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                Html(format!("<h1>Bad form: {}</h1>", html_escape(&e.to_string()))),
            )
                .into_response();
        }
    };
    match decide(&app, &d) {
        Ok(location) => (StatusCode::FOUND, [(header::LOCATION, location)]).into_response(),
        Err(e) => {
            (StatusCode::BAD_REQUEST, Html(format!("<h1>{}</h1>", html_escape(&e.msg)))).into_response()
        }
    }
}

fn oauth_error(code: i64, error: &str, description: &str) -> Response {
    json_response(
        StatusCode::BAD_REQUEST,
        &json!({"code": code, "error": error, "error_description": description}),
    )
}

/// `POST /open-apis/authen/v2/oauth/token`: JSON or form body; authorization_code and
/// refresh_token grants.
pub(crate) async fn oauth_token(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let params: HashMap<String, String> = if is_form {
        serde_urlencoded::from_bytes(&body).unwrap_or_default()
    } else {
        match serde_json::from_slice::<HashMap<String, Value>>(&body) {
            Ok(m) => m.into_iter().filter_map(|(k, v)| v.as_str().map(|s| (k, s.to_string()))).collect(),
            Err(_) => return oauth_error(20001, "invalid_request", "body is neither JSON nor a form"),
        }
    };
    let get = |k: &str| params.get(k).map(String::as_str).unwrap_or("");
    if get("client_id") != app.world.app_id || get("client_secret") != app.world.app_secret {
        return oauth_error(20002, "invalid_client", "client_id or client_secret is invalid");
    }
    let now = now_ms();
    let mut inner = app.lock();
    let (open_id, scope) = match get("grant_type") {
        "authorization_code" => {
            let Some(code) = inner.auth.codes.get_mut(get("code")) else {
                return oauth_error(20003, "invalid_grant", "authorization code not found");
            };
            let was_used = std::mem::replace(&mut code.used, true);
            if was_used {
                return oauth_error(20065, "invalid_grant", "authorization code has been used");
            }
            if code.expires_ms <= now {
                return oauth_error(20004, "invalid_grant", "authorization code has expired");
            }
            if code.client_id != get("client_id")
                || (!get("redirect_uri").is_empty() && code.redirect_uri != get("redirect_uri"))
            {
                return oauth_error(
                    20071,
                    "invalid_grant",
                    "redirect_uri does not match the authorization request",
                );
            }
            if let Some((challenge, method)) = &code.challenge
                && !pkce_ok(challenge, method, get("code_verifier"))
            {
                return oauth_error(
                    20070,
                    "invalid_grant",
                    "code_verifier does not match the code_challenge",
                );
            }
            (code.open_id.clone(), code.scope.clone())
        }
        "refresh_token" => {
            let Some(r) = inner.auth.refresh.get_mut(get("refresh_token")) else {
                return oauth_error(20026, "invalid_grant", "refresh token is invalid");
            };
            if std::mem::replace(&mut r.used, true) {
                return oauth_error(20073, "invalid_grant", "refresh token has been used");
            }
            if r.expires_ms <= now {
                return oauth_error(20037, "invalid_grant", "refresh token has expired");
            }
            (r.open_id.clone(), r.scope.clone())
        }
        other => {
            return oauth_error(
                20001,
                "unsupported_grant_type",
                &format!("grant_type {other:?} is not supported"),
            );
        }
    };
    let access = format!("u-{}", inner.alnum(44));
    let ttl = app.config.user_token_ttl.as_millis() as u64;
    inner.auth.user.insert(
        access.clone(),
        UserToken { open_id: open_id.clone(), expires_ms: now + ttl, revoked: false },
    );
    inner.auth.latest_user.insert(open_id.clone(), access.clone());
    let mut out = json!({"code": 0, "access_token": access, "expires_in": ttl / 1000, "token_type": "Bearer", "scope": scope});
    if scope.split_whitespace().any(|s| s == "offline_access") {
        let refresh = format!("ur-{}", inner.alnum(44));
        let rttl = app.config.refresh_token_ttl.as_millis() as u64;
        inner
            .auth
            .refresh
            .insert(refresh.clone(), Refresh { open_id, scope, expires_ms: now + rttl, used: false });
        out["refresh_token"] = json!(refresh);
        out["refresh_token_expires_in"] = json!(rttl / 1000);
    }
    json_response(StatusCode::OK, &out)
}

fn pkce_ok(challenge: &str, method: &str, verifier: &str) -> bool {
    use base64::Engine as _;
    if verifier.is_empty() {
        return false;
    }
    if method.eq_ignore_ascii_case("S256") {
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(d.as_ref()) == challenge
    } else {
        verifier == challenge
    }
}

/// `GET /open-apis/authen/v1/user_info` (user token).
pub(crate) async fn user_info(State(app): State<App>, headers: HeaderMap) -> ApiResult {
    let caller = check(&app, &mut app.lock(), &headers, Accept::User)?;
    let Caller::User(open_id) = caller else {
        return Err(ApiError::bad(99991668, "this API takes a user_access_token"));
    };
    let u = app.world.user(&open_id).ok_or_else(|| ApiError::bad(20008, "user does not exist"))?;
    Ok(ok(json!({
        "name": u.name, "en_name": u.en_name, "avatar_url": "", "avatar_thumb": "", "avatar_middle": "", "avatar_big": "",
        "open_id": u.open_id, "union_id": u.union_id, "email": u.email, "enterprise_email": u.email,
        "user_id": u.user_id, "tenant_key": app.world.tenant_key, "employee_no": u.user_id,
    })))
}

/// `/_sim/tokens/revoke`: the current token of `kind` stops working.
pub(crate) fn revoke(inner: &mut Inner, kind: &str, open_id: Option<&str>) -> Result<(), String> {
    match kind {
        "tenant" | "app" => {
            let list = if kind == "tenant" { &mut inner.auth.tenant } else { &mut inner.auth.app };
            let t = list.last_mut().ok_or_else(|| format!("no {kind} token was issued"))?;
            t.revoked = true;
            Ok(())
        }
        "user" => {
            let open_id = open_id.ok_or("kind user needs open_id")?;
            let token = inner
                .auth
                .latest_user
                .get(open_id)
                .ok_or_else(|| format!("no user token was issued to {open_id}"))?;
            if let Some(u) = inner.auth.user.get_mut(token) {
                u.revoked = true;
            }
            Ok(())
        }
        other => Err(format!("kind must be tenant, app or user, not {other:?}")),
    }
}
