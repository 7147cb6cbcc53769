//! Files of the archive sent to the browser: streamed from disk with HTTP
//! ranges (tower-http's `ServeFile`), so a 2 GB meeting video is never read
//! into memory, can be sought in a `<video>`, and a cut download resumes.

use std::path::Path;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;

use super::pages::error;

/// Serves `path` (already known to be inside its root) as `content_type`,
/// named `name` for the browser's save dialog (`inline` display).
pub async fn serve(path: &Path, headers: &HeaderMap, content_type: &'static str, name: &str) -> Response {
    if !tokio::fs::metadata(path).await.is_ok_and(|m| m.is_file()) {
        return error(StatusCode::NOT_FOUND, "The file is missing on disk.");
    }
    let mut request = axum::http::Request::new(axum::body::Body::empty());
    for h in [header::RANGE, header::IF_RANGE, header::IF_MODIFIED_SINCE, header::IF_UNMODIFIED_SINCE] {
        if let Some(v) = headers.get(&h) {
            request.headers_mut().insert(h, v.clone());
        }
    }
    let served = match tower::ServiceExt::oneshot(tower_http::services::ServeFile::new(path), request).await {
        Ok(r) => r,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &format!("Reading the file: {e}")),
    };
    let mut response = served.map(axum::body::Body::new);
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(&format!("inline; filename=\"{}\"", header_safe(name))) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-store"));
    response
}

/// A file name fit for a quoted header parameter: ASCII without quotes,
/// backslashes or control characters (others become `_`).
fn header_safe(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' { c } else { '_' })
        .collect();
    if s.trim().is_empty() { "file".into() } else { s }
}

/// The content type of an archive file, by its extension.
pub fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("png") => "image/png",
        Some("gif") => "image/gif",
        Some("mp3") => "audio/mpeg",
        Some("amr") => "audio/amr",
        Some("mp4") => "video/mp4",
        Some("pdf") => "application/pdf",
        Some("docx") => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        Some("xlsx") => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_names_cannot_break_the_header() {
        assert_eq!(header_safe("周会_2025.mp4"), "___2025.mp4");
        assert_eq!(header_safe("a\"b\\c\r\nd.mp4"), "a_b_c__d.mp4");
        assert_eq!(header_safe(""), "file");
        assert_eq!(header_safe("report 1.pdf"), "report 1.pdf");
    }

    #[test]
    fn types_by_extension() {
        assert_eq!(content_type(Path::new("a/b.MP4")), "video/mp4");
        assert_eq!(content_type(Path::new("x.bin")), "application/octet-stream");
        assert_eq!(content_type(Path::new("noext")), "application/octet-stream");
    }
}
