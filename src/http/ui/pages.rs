//! The browser's pages. Each handler checks the session and the corp grant,
//! writes the access log where the issue asks for it, runs one store query and
//! renders with maud.

use std::collections::HashMap;
use std::path::{Component, Path};

use axum::Form;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use maud::{DOCTYPE, Markup, html};
use serde::Deserialize;

use super::UiState;
use super::auth::{
    Authed, LOGIN_CSRF_COOKIE, Remote, SESSION_COOKIE, SESSION_TTL, cookie, csrf_ok, set_cookie,
};
use crate::archive::accounts::{new_token, token_hash, verify_password};
use crate::archive::render::{self, MediaLinks, MediaState, time_ms};
use crate::store::CorpId;
use crate::store::accounts::{Role, Session};
use crate::store::browse::{Conversation, MediaFile, PageCursor};
use crate::wecom::media::JobState;

/// Messages per conversation page.
pub const PAGE_SIZE: u32 = 100;

/// A plain error page.
pub fn error(status: StatusCode, what: &str) -> Response {
    (status, Html(page("Error", None, html! { h1 { (status.as_u16()) } p { (what) } }).into_string()))
        .into_response()
}

pub(super) fn db_error(e: impl std::fmt::Display) -> Response {
    tracing::warn!("ui: database: {e}");
    error(StatusCode::SERVICE_UNAVAILABLE, "The database did not answer; try again.")
}

/// The page frame.
pub fn page(title: &str, session: Option<&Session>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · wework-archive" }
                link rel="stylesheet" href="/ui/style.css";
            }
            body {
                header.top {
                    a href="/ui/" { strong { "wework-archive" } }
                    @if let Some(s) = session {
                        @if s.user.role == Role::Admin {
                            a href="/ui/feishu" { "Feishu" }
                            a href="/ui/admin/access" { "Access log" }
                        }
                        span.who { (s.user.name) " (" (s.user.role.as_str()) ")" }
                        form method="post" action="/ui/logout" {
                            input type="hidden" name="csrf" value=(s.csrf);
                            button type="submit" id="logout" { "Log out" }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

pub(super) fn html_response(m: Markup) -> Response {
    let mut r = Html(m.into_string()).into_response();
    // Archived content is confidential: no caching, no framing, no third-party loads.
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, "no-store".parse().unwrap());
    h.insert("x-frame-options", "DENY".parse().unwrap());
    h.insert("x-content-type-options", "nosniff".parse().unwrap());
    h.insert(
        "content-security-policy",
        "default-src 'self'; img-src 'self'; media-src 'self'; style-src 'self'; script-src 'self'; frame-ancestors 'none'"
            .parse()
            .unwrap(),
    );
    r
}

/// `/ui` → `/ui/`.
pub async fn to_home() -> Redirect {
    Redirect::to("/ui/")
}

/// The stylesheet.
pub async fn style() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], render::STYLE)
}

/// The login form, with a fresh double-submit CSRF token.
pub async fn login_form() -> Response {
    login_page(None, StatusCode::OK)
}

fn login_page(message: Option<&str>, status: StatusCode) -> Response {
    let token = new_token();
    let body = html! {
        div.login {
            h1 { "Sign in" }
            @if let Some(m) = message { p.bad id="login-error" { (m) } }
            form method="post" action="/ui/login" {
                input type="hidden" name="csrf" value=(token);
                label for="user" { "User" }
                input id="user" name="user" autocomplete="username" required;
                label for="password" { "Password" }
                input id="password" name="password" type="password" autocomplete="current-password" required;
                button type="submit" id="login" { "Sign in" }
            }
        }
    };
    let mut r = html_response(page("Sign in", None, body));
    *r.status_mut() = status;
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(LOGIN_CSRF_COOKIE, &token, std::time::Duration::from_secs(3600)).parse().unwrap(),
    );
    r
}

/// The login form's fields.
#[derive(Deserialize)]
pub struct LoginForm {
    user: String,
    password: String,
    #[serde(default)]
    csrf: String,
}

/// Checks the password (rate-limited), starts a session.
pub async fn login(
    State(state): State<UiState>,
    headers: HeaderMap,
    Remote(remote): Remote,
    Form(form): Form<LoginForm>,
) -> Response {
    let expected = cookie(&headers, LOGIN_CSRF_COOKIE).unwrap_or_default();
    if !csrf_ok(&expected, &form.csrf) {
        return error(
            StatusCode::FORBIDDEN,
            "The form's CSRF token is missing or wrong: reload the login page.",
        );
    }
    let user_key = format!("user:{}", form.user);
    let keys = [format!("ip:{remote}"), user_key.clone()];
    let wait = state.limiter.retry_after(&keys);
    if wait > 0 {
        let mut r = login_page(
            Some(&format!("Too many failed sign-ins. Try again in {} minute(s).", wait.div_ceil(60))),
            StatusCode::TOO_MANY_REQUESTS,
        );
        r.headers_mut().insert(header::RETRY_AFTER, wait.to_string().parse().unwrap());
        return r;
    }
    let store = &state.app.store;
    let found = match store.user_for_login(&form.user).await {
        Ok(f) => f,
        Err(e) => return db_error(e),
    };
    // argon2 runs on a blocking thread: it takes tens of milliseconds by design.
    let password = form.password.clone();
    let ok_user = tokio::task::spawn_blocking(move || match found {
        Some((user, hash)) if verify_password(&password, &hash) => Some(user),
        _ => None,
    })
    .await
    .ok()
    .flatten();
    let Some(user) = ok_user else {
        state.limiter.fail(&keys);
        let _ = store.log_access(&form.user, "login_failed", "", "", &remote).await;
        return login_page(Some("Wrong user name or password."), StatusCode::UNAUTHORIZED);
    };
    state.limiter.succeed(&user_key);
    let (token, csrf) = (new_token(), new_token());
    if let Err(e) =
        store.create_session(&token_hash(&token), user.id, &csrf, &remote, SESSION_TTL.as_secs()).await
    {
        return db_error(e);
    }
    let _ = store.log_access(&user.name, "login", "", "", &remote).await;
    let mut r = Redirect::to("/ui/").into_response();
    r.headers_mut()
        .append(header::SET_COOKIE, set_cookie(SESSION_COOKIE, &token, SESSION_TTL).parse().unwrap());
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(LOGIN_CSRF_COOKIE, "", std::time::Duration::ZERO).parse().unwrap(),
    );
    r
}

/// A form that only carries the CSRF token.
#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// Ends the session.
pub async fn logout(
    State(state): State<UiState>,
    auth: Authed,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    if !csrf_ok(&auth.session.csrf, &form.csrf) {
        return error(StatusCode::FORBIDDEN, "The form's CSRF token is missing or wrong.");
    }
    if let Some(token) = cookie(&headers, SESSION_COOKIE) {
        let _ = state.app.store.delete_session(&token_hash(&token)).await;
    }
    let _ = state.app.store.log_access(&auth.session.user.name, "logout", "", "", &auth.remote).await;
    let mut r = Redirect::to("/ui/login").into_response();
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(SESSION_COOKIE, "", std::time::Duration::ZERO).parse().unwrap(),
    );
    r
}

/// The corp of a URL, if the user may read it (403/400 otherwise).
// A Response in the Err is what the handler returns at once; boxing it buys nothing here.
#[allow(clippy::result_large_err)]
pub(super) fn granted(auth: &Authed, corp: &str) -> Result<CorpId, Response> {
    let id = CorpId::new(corp).map_err(|_| error(StatusCode::BAD_REQUEST, "Not a corp id."))?;
    if !auth.session.user.may_read(id.as_str()) {
        return Err(error(StatusCode::FORBIDDEN, "You were not granted this corp."));
    }
    Ok(id)
}

/// Corps: status, cursor, last success, alarms, media backlog, quarantine, chain head.
pub async fn corps(State(state): State<UiState>, auth: Authed) -> Response {
    let store = &state.app.store;
    let (corps, states, media, heads) = match tokio::try_join!(
        store.corps(),
        store.states(),
        crate::wecom::media::backlog(store),
        store.chain_heads()
    ) {
        Ok(x) => x,
        Err(e) => return db_error(e),
    };
    let mut rows = Vec::new();
    for c in corps.iter().filter(|c| auth.session.user.may_read(&c.corpid)) {
        let st = states.iter().find(|s| s.corpid == c.corpid).cloned().unwrap_or_default();
        let quarantine: u64 = match c.corp_id() {
            Ok(id) => match store.decrypt_status_counts(&id).await {
                Ok(v) => v.iter().filter(|(s, _)| s != "ok").map(|(_, n)| n).sum(),
                Err(e) => return db_error(e),
            },
            Err(_) => 0,
        };
        let m = media.get(&c.corpid).cloned().unwrap_or_default();
        let backlog: u64 = ["pending", "downloading", "paused"].iter().filter_map(|s| m.get(*s)).sum();
        let failed: u64 = ["failed", "corrupt", "expired"].iter().filter_map(|s| m.get(*s)).sum();
        let head = heads.iter().find(|h| h.corpid == c.corpid);
        rows.push((c.clone(), st, quarantine, backlog, failed, head.cloned()));
    }
    let body = html! {
        h1 { "Corps" }
        div.table-wrap { table id="corps" {
            thead { tr {
                th { "Corp" } th { "Status" } th { "Cursor" } th.wide { "Last success" } th { "Stored" }
                th { "Quarantine" } th { "Media backlog" } th.wide { "Chain head" } th { "Alarm" }
            } }
            tbody {
                @for (c, st, quarantine, backlog, failed, head) in &rows {
                    tr {
                        td { a href=(format!("/ui/corp/{}", c.corpid)) { (c.corpid) } br; span.muted { (c.corpname) } }
                        td { @if c.enabled() { "enabled" } @else { "disabled" } }
                        td { (st.seq) }
                        td.wide { (st.last_success_at.clone().unwrap_or_else(|| "never".into())) }
                        td { (st.stored_total) }
                        td class=(if *quarantine > 0 { "bad" } else { "" }) { (quarantine) }
                        td { (backlog) @if *failed > 0 { " " span.bad { "(" (failed) " failed)" } } }
                        td.wide { @if let Some(h) = head { code title=(h.head) { (&h.head[..12]) "…" } " (" (h.pos) ")" } @else { "—" } }
                        td.alarm { (st.alarm) }
                    }
                }
            }
        } }
        @if rows.is_empty() { p.muted { "No corps you may read." } }
    };
    html_response(page("Corps", Some(&auth.session), body))
}

/// Filters of the conversation list.
#[derive(Deserialize, Default)]
pub struct ListQuery {
    #[serde(default)]
    q: String,
}

pub(super) fn conv_url(corp: &str, c: &Conversation) -> String {
    let enc = |s: &str| urlencode(s);
    match c {
        Conversation::Room { roomid } => format!("/ui/corp/{corp}/c?room={}", enc(roomid)),
        Conversation::Pair { a, b } => format!("/ui/corp/{corp}/c?a={}&b={}", enc(a), enc(b)),
        Conversation::Undecrypted => format!("/ui/corp/{corp}/c?undecrypted=1"),
    }
}

/// Percent-encodes a query value.
pub fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A corp's conversations.
pub async fn conversations(
    State(state): State<UiState>,
    auth: Authed,
    UrlPath(corp): UrlPath<String>,
    Query(q): Query<ListQuery>,
) -> Response {
    let corpid = match granted(&auth, &corp) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let list = match state.app.store.conversations(&corpid, &q.q).await {
        Ok(l) => l,
        Err(e) => return db_error(e),
    };
    let body = html! {
        h1 { "Conversations of " (corpid.as_str()) }
        form.filters method="get" {
            input name="q" value=(q.q) placeholder="room or person";
            button type="submit" { "Filter" }
            a href=(format!("/ui/corp/{}/search", corpid.as_str())) { "Search messages" }
        }
        details.exports {
            summary { "Export for an auditor" }
            (super::export::form(corpid.as_str(), &auth.session.csrf, ("all", "1"), "Export everything"))
            form.export method="post" action=(format!("/ui/corp/{}/export", corpid.as_str())) {
                input type="hidden" name="csrf" value=(auth.session.csrf);
                label { "Person " input name="user" placeholder="userid or external id" required; }
                label { "From " input type="date" name="from"; }
                label { "to " input type="date" name="to"; }
                button type="submit" { "Export what this person sent or received" }
            }
        }
        div.table-wrap { table id="conversations" {
            thead { tr { th { "Conversation" } th { "Kind" } th { "Messages" } th { "Last message" } } }
            tbody {
                @for c in &list {
                    tr {
                        td { a href=(conv_url(corpid.as_str(), &c.conversation)) { (c.conversation.title()) } }
                        td { (match c.conversation { Conversation::Room { .. } => "group", Conversation::Pair { .. } => "one-to-one", Conversation::Undecrypted => "quarantine" }) }
                        td { (c.messages) }
                        td { (time_ms(c.last_msgtime)) }
                    }
                }
            }
        } }
    };
    html_response(page(&format!("{} conversations", corpid.as_str()), Some(&auth.session), body))
}

/// Which conversation, and where its page starts.
#[derive(Deserialize, Default)]
pub struct ConversationQuery {
    room: Option<String>,
    a: Option<String>,
    b: Option<String>,
    undecrypted: Option<String>,
    /// `msgtime.id` of the last record of the previous page.
    after: Option<String>,
    /// Start at this day (YYYY-MM-DD, UTC).
    from: Option<String>,
}

impl ConversationQuery {
    fn conversation(&self) -> Option<Conversation> {
        match (&self.room, &self.a, &self.b, &self.undecrypted) {
            (Some(r), _, _, _) if !r.is_empty() => Some(Conversation::Room { roomid: r.clone() }),
            (_, Some(a), Some(b), _) => Some(Conversation::pair(a, b)),
            (_, _, _, Some(_)) => Some(Conversation::Undecrypted),
            _ => None,
        }
    }

    fn cursor(&self) -> PageCursor {
        if let Some((t, id)) = self.after.as_deref().and_then(|a| a.split_once('.'))
            && let (Ok(msgtime), Ok(id)) = (t.parse(), id.parse())
        {
            return PageCursor { msgtime, id };
        }
        match self.from.as_deref().and_then(parse_day) {
            Some(ms) => PageCursor { msgtime: ms - 1, id: u64::MAX },
            None => PageCursor { msgtime: i64::MIN, id: 0 },
        }
    }
}

/// `YYYY-MM-DD` (UTC) as ms.
pub fn parse_day(s: &str) -> Option<i64> {
    let d = chrono::NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").ok()?;
    Some(d.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis())
}

/// Media links of the browser: `/ui/corp/{corp}/media/{msgid}/{index}`.
pub struct UiMedia {
    corp: String,
    files: HashMap<(String, u32), MediaFile>,
}

impl UiMedia {
    /// Over the media rows of a page.
    pub fn new(corp: &str, files: Vec<MediaFile>) -> UiMedia {
        UiMedia {
            corp: corp.to_owned(),
            files: files.into_iter().map(|f| ((f.msgid.clone(), f.item_index), f)).collect(),
        }
    }
}

impl MediaLinks for UiMedia {
    fn media(&self, msgid: &str, index: u32) -> MediaState {
        match self.files.get(&(msgid.to_owned(), index)) {
            Some(f) if JobState::is_stored_str(&f.state) && !f.path.is_empty() => {
                let url = format!("/ui/corp/{}/media/{}/{index}", self.corp, urlencode(msgid));
                let mp3_url = (!f.mp3_path.is_empty()).then(|| format!("{url}?mp3=1"));
                MediaState::Ready { url, mp3_url }
            }
            Some(f) => MediaState::Missing(f.state.clone()),
            None => MediaState::Missing("not queued".into()),
        }
    }
}

/// One conversation in time order, a page at a time.
pub async fn conversation(
    State(state): State<UiState>,
    auth: Authed,
    UrlPath(corp): UrlPath<String>,
    Query(q): Query<ConversationQuery>,
) -> Response {
    let corpid = match granted(&auth, &corp) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let Some(conv) = q.conversation() else { return error(StatusCode::BAD_REQUEST, "Which conversation?") };
    let store = &state.app.store;
    let records = match store.conversation_page(&corpid, &conv, q.cursor(), None, PAGE_SIZE).await {
        Ok(r) => r,
        Err(e) => return db_error(e),
    };
    let msgids: Vec<String> = records.iter().map(|r| r.msgid.clone()).collect();
    let media = match store.media_files(&corpid, &msgids).await {
        Ok(m) => UiMedia::new(corpid.as_str(), m),
        Err(e) => return db_error(e),
    };
    let target = format!("{} {}", conv.title(), q.after.as_deref().or(q.from.as_deref()).unwrap_or(""));
    if let Err(e) = store
        .log_access(&auth.session.user.name, "view_conversation", corpid.as_str(), &target, &auth.remote)
        .await
    {
        // Reading without the access being logged is not allowed.
        return db_error(e);
    }
    let base = conv_url(corpid.as_str(), &conv);
    let next = (records.len() == PAGE_SIZE as usize)
        .then(|| records.last().map(|l| format!("{base}&after={}.{}", l.msgtime, l.id)))
        .flatten();
    let body = html! {
        h1 { (conv.title()) }
        form.filters method="get" {
            @match &conv {
                Conversation::Room { roomid } => input type="hidden" name="room" value=(roomid);,
                Conversation::Pair { a, b } => { input type="hidden" name="a" value=(a); input type="hidden" name="b" value=(b); },
                Conversation::Undecrypted => input type="hidden" name="undecrypted" value="1";,
            }
            label { "From day " input type="date" name="from" value=(q.from.clone().unwrap_or_default()); }
            button type="submit" { "Go" }
        }
        @match &conv {
            Conversation::Room { roomid } => (super::export::form(corpid.as_str(), &auth.session.csrf, ("room", roomid), "Export this group")),
            Conversation::Pair { a, .. } => (super::export::form(corpid.as_str(), &auth.session.csrf, ("user", a), &format!("Export everything {a} sent or received"))),
            Conversation::Undecrypted => {},
        }
        (render::conversation(&records, &media))
        @if records.is_empty() { p.muted { "No messages here." } }
        div.pager { @if let Some(n) = next { a id="next" href=(n) { "Later messages →" } } }
    };
    html_response(page(&conv.title(), Some(&auth.session), body))
}

/// `?mp3=1` asks for the transcoded voice.
#[derive(Deserialize, Default)]
pub struct MediaQuery {
    mp3: Option<String>,
}

/// A path relative to the media root that stays inside it.
pub fn safe_relative(rel: &str) -> Option<&Path> {
    let p = Path::new(rel);
    (!rel.is_empty() && p.components().all(|c| matches!(c, Component::Normal(_)))).then_some(p)
}

/// A media file (access-logged).
pub async fn media(
    State(state): State<UiState>,
    auth: Authed,
    UrlPath((corp, msgid, index)): UrlPath<(String, String, u32)>,
    Query(q): Query<MediaQuery>,
    headers: HeaderMap,
) -> Response {
    let corpid = match granted(&auth, &corp) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let store = &state.app.store;
    let files = match store.media_files(&corpid, std::slice::from_ref(&msgid)).await {
        Ok(f) => f,
        Err(e) => return db_error(e),
    };
    let Some(f) = files.into_iter().find(|f| f.item_index == index && JobState::is_stored_str(&f.state))
    else {
        return error(StatusCode::NOT_FOUND, "No such media file (not downloaded yet?).");
    };
    let rel = if q.mp3.is_some() && !f.mp3_path.is_empty() { f.mp3_path } else { f.path };
    let Some(rel) = safe_relative(&rel) else { return error(StatusCode::NOT_FOUND, "No such media file.") };
    let path = state.app.config.msgfile_dir.join(rel);
    let _ = store
        .log_access(
            &auth.session.user.name,
            "media",
            corpid.as_str(),
            &format!("{msgid}/{index}"),
            &auth.remote,
        )
        .await;
    let name = rel.file_name().and_then(|n| n.to_str()).unwrap_or("media");
    super::files::serve(&path, &headers, super::files::content_type(rel), name).await
}

/// The access log (admins only).
pub async fn access_log(State(state): State<UiState>, auth: Authed) -> Response {
    if auth.session.user.role != Role::Admin {
        return error(StatusCode::FORBIDDEN, "Admins only.");
    }
    let rows = match state.app.store.recent_access(500).await {
        Ok(r) => r,
        Err(e) => return db_error(e),
    };
    let body = html! {
        h1 { "Access log" }
        div.table-wrap { table id="access" {
            thead { tr { th { "When (UTC)" } th { "Who" } th { "What" } th { "Corp" } th { "Target" } th { "From" } } }
            tbody { @for a in &rows { tr { td { (a.at) } td { (a.user) } td { (a.action) } td { (a.corpid) } td { (a.target) } td { (a.remote) } } } }
        } }
    };
    html_response(page("Access log", Some(&auth.session), body))
}
