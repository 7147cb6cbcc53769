//! `/ui/corp/{corp}/search`: full-text search of one corp (Chinese too),
//! filtered by sender, room, type and days, newest first, each hit linking
//! into its conversation at that message.
//!
//! Only a corp the account was granted can be searched (the same check as
//! every page), and every search is written to the access log: the hits show
//! message content.

use axum::extract::{Path as UrlPath, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::html;
use serde::Deserialize;

use super::UiState;
use super::auth::Authed;
use super::pages::{UiMedia, conv_url, db_error, error, granted, html_response, page, parse_day};
use crate::archive::render;
use crate::archive::search::{SearchError, SearchQuery};
use crate::store::browse::Conversation;

/// Hits shown on one page.
pub const HITS: usize = 50;
/// Links a search indexes itself before it answers, so what was just stored is
/// found; a longer backlog is left to the background indexer.
const FRESHEN_LINKS: u64 = 5000;

/// The search form's fields (all optional).
#[derive(Deserialize, Default)]
pub struct SearchForm {
    #[serde(default)]
    q: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    room: String,
    #[serde(default, rename = "type")]
    msgtype: String,
    /// First day (YYYY-MM-DD, UTC).
    #[serde(default)]
    since: String,
    /// Last day (inclusive).
    #[serde(default)]
    until: String,
}

fn nonempty(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_owned())
}

/// The search page: the form, and the hits when there is a query.
pub async fn search(
    State(state): State<UiState>,
    auth: Authed,
    UrlPath(corp): UrlPath<String>,
    Query(f): Query<SearchForm>,
) -> Response {
    let corpid = match granted(&auth, &corp) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let form = html! {
        form.filters id="search" method="get" {
            input name="q" id="q" value=(f.q) placeholder="words or 中文" autofocus;
            input name="from" value=(f.from) placeholder="sender userid";
            input name="room" value=(f.room) placeholder="room id";
            input name="type" value=(f.msgtype) placeholder="type (text, file…)";
            label { "from " input type="date" name="since" value=(f.since); }
            label { "to " input type="date" name="until" value=(f.until); }
            button type="submit" id="search-go" { "Search" }
        }
    };
    let title = format!("Search {}", corpid.as_str());
    if f.q.trim().is_empty() {
        let body = html! { h1 { (title) } (form) p.muted { "Every word must occur; Chinese matches any part of a sentence." } };
        return html_response(page(&title, Some(&auth.session), body));
    }
    let bad_day = |s: &str| !s.trim().is_empty() && parse_day(s).is_none();
    if bad_day(&f.since) || bad_day(&f.until) {
        return error(StatusCode::BAD_REQUEST, "Days are YYYY-MM-DD.");
    }
    let query = SearchQuery {
        text: f.q.clone(),
        from: nonempty(&f.from),
        room: nonempty(&f.room),
        msgtype: nonempty(&f.msgtype),
        since_ms: parse_day(&f.since),
        until_ms: parse_day(&f.until).map(|d| d + 86_400_000),
    };
    let store = &state.app.store;
    let index = &state.search;
    let mut note = None;
    match index.catch_up(store, &corpid, FRESHEN_LINKS).await {
        Ok(_) => {}
        // Another process (a rebuild) writes the index: search what it committed.
        Err(SearchError::Busy(_)) => note = Some("The index is being rebuilt; results may be incomplete."),
        Err(e) => return db_error(e),
    }
    if let (Ok(head), Ok(pos)) = (store.chain_head(&corpid).await, index.indexed_pos(&corpid).await)
        && head.pos > pos
    {
        note = Some("The index is catching up with the archive; the newest messages may be missing.");
    }
    let found = match index.search(&corpid, &query, HITS).await {
        Ok(r) => r,
        Err(SearchError::EmptyQuery) => {
            return error(StatusCode::BAD_REQUEST, "The query has no words or characters to search for.");
        }
        Err(e) => return db_error(e),
    };
    let ids: Vec<u64> = found.hits.iter().map(|h| h.id).collect();
    let records = match store.records_by_id(&corpid, &ids).await {
        Ok(r) => r,
        Err(e) => return db_error(e),
    };
    let msgids: Vec<String> = records.iter().map(|r| r.msgid.clone()).collect();
    let media = match store.media_files(&corpid, &msgids).await {
        Ok(m) => UiMedia::new(corpid.as_str(), m),
        Err(e) => return db_error(e),
    };
    if let Err(e) =
        store.log_access(&auth.session.user.name, "search", corpid.as_str(), f.q.trim(), &auth.remote).await
    {
        // Reading without the access being logged is not allowed.
        return db_error(e);
    }
    let body = html! {
        h1 { (title) }
        (form)
        @if let Some(n) = note { p.muted { (n) } }
        p id="hit-count" { (found.total) " message(s)" @if found.total > records.len() { ", the newest " (records.len()) " shown" } }
        ol.messages id="hits" {
            @for r in &records {
                @let conv = Conversation::of(r);
                @let link = format!("{}&after={}.{}#m-{}", conv_url(corpid.as_str(), &conv), r.msgtime - 1, u64::MAX, r.seq);
                div.hit {
                    a.conv href=(link) { (conv.title()) }
                    (render::record(r, false, &media))
                }
            }
        }
    };
    html_response(page(&title, Some(&auth.session), body))
}
