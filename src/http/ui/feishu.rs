//! Feishu material in the archive browser, per person: meeting recordings
//! (issue 13) and backed-up documents (issue 14). Admins only: Feishu apps
//! are not corps, and auditors are granted corps.
//!
//! Recordings are served from their recorded path under the media root.
//! Documents are served when their backup went to the default folder
//! (`MSGFILE_DIR/feishu/<app>/<open_id>/docs`); a backup written elsewhere
//! (`feishu backup --out`) is listed, with its sha256, but not served.

use std::path::PathBuf;

use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::html;

use super::UiState;
use super::auth::Authed;
use super::pages::{db_error, error, html_response, page, safe_relative, urlencode};
use crate::archive::render::time_ms;
use crate::store::accounts::Role;

#[allow(clippy::result_large_err)]
fn admin_only(auth: &Authed) -> Result<(), Response> {
    if auth.session.user.role == Role::Admin {
        Ok(())
    } else {
        Err(error(StatusCode::FORBIDDEN, "Admins only."))
    }
}

fn person_url(app: &str, open_id: &str) -> String {
    format!("/ui/feishu/{}/{}", urlencode(app), urlencode(open_id))
}

fn size(bytes: Option<u64>) -> String {
    match bytes {
        Some(b) if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1 << 20) as f64),
        Some(b) if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        Some(b) => format!("{b} B"),
        None => "-".into(),
    }
}

/// `/ui/feishu`: everyone with archived recordings or documents.
pub async fn people(State(state): State<UiState>, auth: Authed) -> Response {
    if let Err(r) = admin_only(&auth) {
        return r;
    }
    let people = match state.app.store.feishu_people().await {
        Ok(p) => p,
        Err(e) => return db_error(e),
    };
    let body = html! {
        h1 { "Feishu: recordings and documents" }
        @if people.is_empty() { p.muted { "No Feishu recordings or documents are archived yet." } }
        div.table-wrap { table id="feishu-people" {
            thead { tr { th { "Person" } th { "App" } th { "Recordings (archived)" } th { "Documents" } } }
            tbody {
                @for p in &people {
                    tr {
                        td { a href=(person_url(&p.app_id, &p.open_id)) {
                            @if p.name.is_empty() { (p.open_id) } @else { (p.name) " (" (p.open_id) ")" }
                        } }
                        td { (p.app_id) }
                        td { (p.recordings) " (" (p.recordings_done) ")" }
                        td { (p.documents) }
                    }
                }
            }
        } }
    };
    html_response(page("Feishu", Some(&auth.session), body))
}

/// `/ui/feishu/{app}/{open_id}`: one person's recordings and documents (access-logged).
pub async fn person(
    State(state): State<UiState>,
    auth: Authed,
    UrlPath((app, open_id)): UrlPath<(String, String)>,
) -> Response {
    if let Err(r) = admin_only(&auth) {
        return r;
    }
    let store = &state.app.store;
    let (recordings, documents) = match tokio::try_join!(
        store.feishu_recordings_of(&app, &open_id),
        store.feishu_documents_of(&app, &open_id)
    ) {
        Ok(x) => x,
        Err(e) => return db_error(e),
    };
    if let Err(e) =
        store.log_access(&auth.session.user.name, "view_feishu", &app, &open_id, &auth.remote).await
    {
        return db_error(e);
    }
    let base = person_url(&app, &open_id);
    let body = html! {
        h1 { "Feishu: " (open_id) }
        p.muted { "App " (app) }
        h2 { "Meeting recordings" }
        @if recordings.is_empty() { p.muted { "None." } }
        div.table-wrap { table id="recordings" {
            thead { tr { th { "Meeting" } th { "Started" } th { "State" } th { "Size" } th { "sha256" } } }
            tbody {
                @for r in &recordings {
                    tr data-meeting=(r.meeting_id) {
                        td {
                            @if r.state == "done" && !r.path.is_empty() {
                                a.recording href=(format!("{base}/recording/{}", r.id)) { (r.topic) }
                            } @else { (r.topic) }
                            " " span.muted { (r.meeting_id) }
                        }
                        td { (time_ms(r.start_time.saturating_mul(1000))) }
                        td { (r.state) @if !r.last_error.is_empty() && r.state != "done" { " — " (r.last_error) } }
                        td { (size(r.bytes)) }
                        td.hash { (r.sha256) }
                    }
                }
            }
        } }
        h2 { "Documents" }
        @if documents.is_empty() { p.muted { "None." } }
        div.table-wrap { table id="documents" {
            thead { tr { th { "Document" } th { "Type" } th { "Status" } th { "Size" } th { "Backed up" } th { "sha256" } } }
            tbody {
                @for d in &documents {
                    tr {
                        td {
                            @if !d.path.is_empty() && matches!(d.status.as_str(), "exported" | "downloaded" | "unchanged") {
                                a.document href=(format!("{base}/doc/{}", urlencode(&d.token))) { (d.title) }
                            } @else { (d.title) }
                            " " span.muted { (d.path) }
                        }
                        td { (d.doc_type) }
                        td { (d.status) @if !d.reason.is_empty() { " — " (d.reason) } }
                        td { (size(d.size)) }
                        td { (d.last_backup_at.map(time_ms).unwrap_or_default()) }
                        td.hash { (d.sha256.clone().unwrap_or_default()) }
                    }
                }
            }
        } }
    };
    html_response(page(&format!("Feishu {open_id}"), Some(&auth.session), body))
}

/// `/ui/feishu/{app}/{open_id}/recording/{id}`: the MP4 (access-logged).
pub async fn recording(
    State(state): State<UiState>,
    auth: Authed,
    UrlPath((app, open_id, id)): UrlPath<(String, String, u64)>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = admin_only(&auth) {
        return r;
    }
    let store = &state.app.store;
    let row = match store.feishu_recording(&app, &open_id, id).await {
        Ok(Some(r)) if r.state == "done" => r,
        Ok(_) => return error(StatusCode::NOT_FOUND, "No such archived recording."),
        Err(e) => return db_error(e),
    };
    let Some(rel) = safe_relative(&row.path) else { return error(StatusCode::NOT_FOUND, "No such file.") };
    let _ = store
        .log_access(&auth.session.user.name, "feishu_recording", &app, &row.meeting_id, &auth.remote)
        .await;
    let path = state.app.config.msgfile_dir.join(rel);
    let name = rel.file_name().and_then(|n| n.to_str()).unwrap_or("recording.mp4");
    super::files::serve(&path, &headers, super::files::content_type(rel), name).await
}

/// The default backup folder of a person (`feishu backup` without `--out`).
fn docs_root(state: &UiState, app: &str, open_id: &str) -> Option<PathBuf> {
    let app = safe_relative(app).filter(|p| p.components().count() == 1)?;
    let open_id = safe_relative(open_id).filter(|p| p.components().count() == 1)?;
    Some(state.app.config.msgfile_dir.join("feishu").join(app).join(open_id).join("docs"))
}

/// `/ui/feishu/{app}/{open_id}/doc/{token}`: a backed-up document (access-logged).
pub async fn document(
    State(state): State<UiState>,
    auth: Authed,
    UrlPath((app, open_id, token)): UrlPath<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = admin_only(&auth) {
        return r;
    }
    let store = &state.app.store;
    let docs = match store.feishu_documents_of(&app, &open_id).await {
        Ok(d) => d,
        Err(e) => return db_error(e),
    };
    let Some(doc) = docs.into_iter().find(|d| d.token == token) else {
        return error(StatusCode::NOT_FOUND, "No such document.");
    };
    let (Some(root), Some(rel)) = (docs_root(&state, &app, &open_id), safe_relative(&doc.path)) else {
        return error(StatusCode::NOT_FOUND, "No such file.");
    };
    let path = root.join(rel);
    if !path.is_file() {
        return error(
            StatusCode::NOT_FOUND,
            "This backup was written outside the media root (feishu backup --out).",
        );
    }
    let _ =
        store.log_access(&auth.session.user.name, "feishu_document", &app, &doc.token, &auth.remote).await;
    let name = rel.file_name().and_then(|n| n.to_str()).unwrap_or("document");
    super::files::serve(&path, &headers, super::files::content_type(rel), name).await
}
