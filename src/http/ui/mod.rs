//! The archive browser at `/ui/` on `HTTP_LISTEN`: server-rendered HTML (maud)
//! for the people who must read the archive.
//!
//! - `/ui/login`, `/ui/logout`: sessions ([`auth`]).
//! - `/ui/`: corps with their pull state, backlog, quarantine and chain head.
//! - `/ui/corp/{corp}`: its conversations; `/ui/corp/{corp}/c?…`: one conversation;
//!   `/ui/corp/{corp}/media/{msgid}/{index}`: a media file;
//!   `/ui/corp/{corp}/search?q=…`: full-text search;
//!   `POST /ui/corp/{corp}/export`: an auditor export as a zip ([`export`]).
//! - `/ui/admin/access`: the access log (admins).
//! - `/ui/feishu`, `/ui/feishu/{app}/{open_id}`: Feishu recordings and backed-up
//!   documents per person, and their files (admins; [`feishu`]).
//!
//! Handlers are thin: queries live in `store::browse`, rendering in
//! `archive::render`, so the export renders exactly what the browser shows.

pub mod auth;
pub mod export;
pub mod feishu;
pub mod files;
pub mod pages;
pub mod search;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};

use crate::http::AppState;

/// What the UI handlers read.
#[derive(Clone)]
pub struct UiState {
    /// The service's state (store, settings).
    pub app: AppState,
    /// Failed-login counters.
    pub limiter: Arc<auth::LoginLimiter>,
    /// The search indexes (shared with the background indexer of this process).
    pub search: Arc<crate::archive::search::SearchIndex>,
}

/// The `/ui` routes.
pub fn router(app: AppState) -> Router {
    let search = crate::archive::search::SearchIndex::shared(&app.config.search_index_dir);
    let state = UiState { app, limiter: Arc::default(), search };
    Router::new()
        .route("/ui", get(pages::to_home))
        .route("/ui/", get(pages::corps))
        .route("/ui/style.css", get(pages::style))
        .route("/ui/login", get(pages::login_form).post(pages::login))
        .route("/ui/logout", post(pages::logout))
        .route("/ui/corp/{corp}", get(pages::conversations))
        .route("/ui/corp/{corp}/c", get(pages::conversation))
        .route("/ui/corp/{corp}/media/{msgid}/{index}", get(pages::media))
        .route("/ui/corp/{corp}/search", get(search::search))
        .route("/ui/corp/{corp}/export", post(export::export))
        .route("/ui/admin/access", get(pages::access_log))
        .route("/ui/feishu", get(feishu::people))
        .route("/ui/feishu/{app}/{open_id}", get(feishu::person))
        .route("/ui/feishu/{app}/{open_id}/recording/{id}", get(feishu::recording))
        .route("/ui/feishu/{app}/{open_id}/doc/{token}", get(feishu::document))
        .with_state(state)
}
