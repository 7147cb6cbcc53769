//! Auditor exports from the browser: the folder `export` writes
//! ([`crate::archive::export`]), zipped and sent as a download.
//!
//! The export is written into a temporary folder and checked there
//! (`write_export` runs [`crate::archive::export::verify_export`] on what it
//! wrote), then zipped into a temporary file and streamed from disk, so memory
//! stays flat whatever the size. Entries are stored, not deflated: media, the
//! bulk of an export, is already compressed, and stored zips open everywhere.
//! The temporary folder lives as long as the response body and is removed
//! with it, also when the download is cut off.

use std::io::Write;
use std::path::Path;

use axum::Form;
use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use maud::{Markup, html};
use serde::Deserialize;

use super::UiState;
use super::auth::{Authed, csrf_ok};
use super::pages::{db_error, error, granted, parse_day};
use crate::archive::export::{ExportError, write_export};
use crate::store::browse::ExportSelection;

/// The export form's fields: one of `room`, `user` or `all`, and a day range.
#[derive(Deserialize)]
pub struct ExportForm {
    #[serde(default)]
    csrf: String,
    room: Option<String>,
    user: Option<String>,
    all: Option<String>,
    /// First day (YYYY-MM-DD, UTC); empty: from the first record.
    #[serde(default)]
    from: String,
    /// Last day, inclusive; empty: up to now.
    #[serde(default)]
    to: String,
}

impl ExportForm {
    fn selection(&self) -> Option<ExportSelection> {
        let given =
            |v: &Option<String>| v.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(String::from);
        match (given(&self.room), given(&self.user), self.all.is_some()) {
            (Some(r), None, false) => Some(ExportSelection::Room(r)),
            (None, Some(u), false) => Some(ExportSelection::User(u)),
            (None, None, true) => Some(ExportSelection::All),
            _ => None,
        }
    }

    /// `[from, to)` in ms; `None` when a day does not parse or the range is empty.
    fn range(&self) -> Option<(i64, i64)> {
        let day = |s: &str, empty: i64| if s.trim().is_empty() { Some(empty) } else { parse_day(s) };
        let from = day(&self.from, 0)?;
        let to = match day(&self.to, i64::MAX)? {
            i64::MAX => i64::MAX,
            t => t + 86_400_000,
        };
        (from < to).then_some((from, to))
    }
}

/// The export form for `selection` (hidden fields) on a page of `corp`.
pub fn form(corp: &str, csrf: &str, hidden: (&str, &str), label: &str) -> Markup {
    html! {
        form.export method="post" action=(format!("/ui/corp/{corp}/export")) {
            input type="hidden" name="csrf" value=(csrf);
            input type="hidden" name=(hidden.0) value=(hidden.1);
            label { "From " input type="date" name="from"; }
            label { "to " input type="date" name="to"; }
            button type="submit" { (label) }
        }
    }
}

/// A name for the download: the corp, what, and the days, in safe characters.
fn download_name(corp: &str, form: &ExportForm, selection: &ExportSelection) -> String {
    let what = match selection {
        ExportSelection::Room(r) => format!("room-{r}"),
        ExportSelection::User(u) => format!("user-{u}"),
        ExportSelection::All => "all".into(),
    };
    let days = format!("{}_{}", form.from.trim(), form.to.trim());
    let raw = format!("export-{corp}-{what}-{days}");
    let safe: String = raw
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' })
        .take(150)
        .collect();
    format!("{safe}.zip")
}

/// Zips `dir` (every file below it, relative names) into `zip_path`.
fn zip_folder(dir: &Path, zip_path: &Path) -> std::io::Result<u64> {
    let file = std::fs::File::create(zip_path)?;
    let mut zip = zip::ZipWriter::new(std::io::BufWriter::new(file));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .large_file(true);
    let mut pending = vec![dir.to_owned()];
    let mut files = 0;
    while let Some(d) = pending.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&d)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let path = e.path();
            // Never follow a link out of the export (write_export makes none).
            let kind = e.file_type()?;
            if kind.is_dir() {
                pending.push(path);
            } else if kind.is_file() {
                let rel = path.strip_prefix(dir).map_err(std::io::Error::other)?;
                let name =
                    rel.to_str().ok_or_else(|| std::io::Error::other("a file name that is not UTF-8"))?;
                zip.start_file(name, options).map_err(std::io::Error::other)?;
                std::io::copy(&mut std::fs::File::open(&path)?, &mut zip)?;
                files += 1;
            }
        }
    }
    zip.finish().map_err(std::io::Error::other)?.flush()?;
    Ok(files)
}

/// `POST /ui/corp/{corp}/export`: the export as a zip (access-logged).
pub async fn export(
    State(state): State<UiState>,
    auth: Authed,
    UrlPath(corp): UrlPath<String>,
    Form(form): Form<ExportForm>,
) -> Response {
    if !csrf_ok(&auth.session.csrf, &form.csrf) {
        return error(StatusCode::FORBIDDEN, "The form's CSRF token is missing or wrong.");
    }
    let corpid = match granted(&auth, &corp) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let Some(selection) = form.selection() else {
        return error(StatusCode::BAD_REQUEST, "Export what: one room, one person, or everything?");
    };
    let Some((from_ms, to_ms)) = form.range() else {
        return error(StatusCode::BAD_REQUEST, "The days must be YYYY-MM-DD, the first not after the last.");
    };
    let store = &state.app.store;
    let user = &auth.session.user.name;
    let target = format!("{selection:?} {} .. {}", form.from.trim(), form.to.trim());
    // Logged before anything is read: no export without its trace.
    if let Err(e) = store.log_access(user, "export", corpid.as_str(), &target, &auth.remote).await {
        return db_error(e);
    }
    let tmp = match tempfile::Builder::new().prefix("wwa-export-").tempdir() {
        Ok(t) => t,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &format!("A temporary folder: {e}")),
    };
    let folder = tmp.path().join("export");
    let who = format!("ui:{user}");
    let msgfile = &state.app.config.msgfile_dir;
    let summary = match write_export(store, msgfile, &corpid, &selection, from_ms, to_ms, &folder, &who).await
    {
        Ok(s) => s,
        Err(ExportError::Store(e)) => return db_error(e),
        Err(e) => {
            tracing::warn!(corp = %corpid, "export from the browser: {e}");
            return error(StatusCode::INTERNAL_SERVER_ERROR, &format!("The export failed: {e}"));
        }
    };
    let zip_path = tmp.path().join("export.zip");
    let (src, dst) = (folder.clone(), zip_path.clone());
    match tokio::task::spawn_blocking(move || zip_folder(&src, &dst)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return error(StatusCode::INTERNAL_SERVER_ERROR, &format!("Zipping the export: {e}")),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &format!("Zipping the export: {e}")),
    }
    let file = match tokio::fs::File::open(&zip_path).await {
        Ok(f) => f,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &format!("Reading the zip: {e}")),
    };
    let length = file.metadata().await.map(|m| m.len()).unwrap_or(0);
    tracing::info!(
        corp = %corpid, user = %user, records = summary.records, media = summary.media_files, bytes = length,
        "export sent to the browser"
    );
    // The stream owns the temporary folder: it is removed when the body is dropped.
    let body = tokio_util::io::ReaderStream::new(file).map(move |chunk| {
        let _folder = &tmp;
        chunk
    });
    (
        [
            (header::CONTENT_TYPE, "application/zip".to_owned()),
            (header::CONTENT_LENGTH, length.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{}\"", download_name(corpid.as_str(), &form, &selection)),
            ),
            (header::CACHE_CONTROL, "private, no-store".to_owned()),
        ],
        Body::from_stream(body),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(room: Option<&str>, user: Option<&str>, all: bool, from: &str, to: &str) -> ExportForm {
        ExportForm {
            csrf: String::new(),
            room: room.map(String::from),
            user: user.map(String::from),
            all: all.then(String::new),
            from: from.into(),
            to: to.into(),
        }
    }

    #[test]
    fn exactly_one_selection() {
        assert_eq!(
            form(Some("r1"), None, false, "", "").selection(),
            Some(ExportSelection::Room("r1".into()))
        );
        assert_eq!(form(None, Some("u"), false, "", "").selection(), Some(ExportSelection::User("u".into())));
        assert_eq!(form(None, None, true, "", "").selection(), Some(ExportSelection::All));
        assert_eq!(form(Some("r1"), Some("u"), false, "", "").selection(), None);
        assert_eq!(form(Some(" "), None, false, "", "").selection(), None);
        assert_eq!(form(None, None, false, "", "").selection(), None);
    }

    #[test]
    fn days_are_inclusive_and_checked() {
        assert_eq!(form(None, None, true, "", "").range(), Some((0, i64::MAX)));
        let (from, to) = form(None, None, true, "2025-03-01", "2025-03-01").range().unwrap();
        assert_eq!(to - from, 86_400_000, "the last day is included");
        assert_eq!(form(None, None, true, "2025-03-02", "2025-03-01").range(), None);
        assert_eq!(form(None, None, true, "March", "").range(), None);
    }

    #[test]
    fn download_names_are_plain() {
        let f = form(Some("../../etc \"x\""), None, false, "2025-03-01", "");
        let name = download_name("ww1", &f, &f.selection().unwrap());
        assert!(name.ends_with(".zip") && name.starts_with("export-ww1-room-"), "{name}");
        assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)), "{name}");
        assert!(!name.contains('/') && !name.contains('"'));
    }

    #[test]
    fn a_folder_zips_with_relative_names() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("src/media/a")).unwrap();
        std::fs::write(dir.path().join("src/index.html"), b"<html>").unwrap();
        std::fs::write(dir.path().join("src/media/a/x.jpg"), vec![7u8; 70_000]).unwrap();
        let zip_path = dir.path().join("out.zip");
        assert_eq!(zip_folder(&dir.path().join("src"), &zip_path).unwrap(), 2);
        let mut z = zip::ZipArchive::new(std::fs::File::open(&zip_path).unwrap()).unwrap();
        let mut names: Vec<String> =
            (0..z.len()).map(|i| z.by_index(i).unwrap().name().unwrap().into_owned()).collect();
        names.sort();
        assert_eq!(names, ["index.html", "media/a/x.jpg"]);
        let mut jpg = Vec::new();
        std::io::Read::read_to_end(&mut z.by_name("media/a/x.jpg").unwrap(), &mut jpg).unwrap();
        assert_eq!(jpg, vec![7u8; 70_000]);
    }
}
