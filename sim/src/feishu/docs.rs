//! Document bodies shared by Drive, Wiki and export tasks: every document (online doc or
//! uploaded file) by token, with a version that `/_sim/drive/touch` bumps, and the seeded bytes a
//! download or an export yields; plus serving such bytes with `Range`.

use std::collections::HashMap;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;

use super::auth::pct;
use super::world::tag;
use crate::media::{MediaBlob, MediaFormat};
use crate::seed::{mix, str_hash};

/// One document.
#[derive(Debug, Clone)]
pub(crate) struct Doc {
    pub obj_type: String,
    pub title: String,
    pub created_s: u64,
    pub modified_s: u64,
    pub version: u64,
    /// Uploaded files only.
    pub size: u64,
    pub owner: String,
    /// Export tasks of this document always end with this `job_status` (API.md §6.4: 107 size
    /// limit, 122 export denied, …): the "some failing exports" of a grown tree.
    pub export_block: Option<i64>,
}

/// Every document by token, and a cache of body digests.
#[derive(Debug, Default)]
pub(crate) struct Docs {
    pub map: HashMap<String, Doc>,
    sha: HashMap<MediaBlob, String>,
}

/// Types export tasks take (API.md §6.4).
pub(crate) fn exportable(obj_type: &str) -> bool {
    matches!(obj_type, "doc" | "docx" | "sheet" | "bitable")
}

/// Whether `ext` is a valid export of `obj_type`.
pub(crate) fn valid_export(obj_type: &str, ext: &str) -> bool {
    match obj_type {
        "doc" | "docx" => matches!(ext, "docx" | "pdf"),
        "sheet" | "bitable" => matches!(ext, "xlsx" | "csv"),
        _ => false,
    }
}

/// FAKE.md's `export_extension` of `/_sim/tree`.
pub(crate) fn default_export(obj_type: &str) -> Option<&'static str> {
    match obj_type {
        "doc" | "docx" => Some("docx"),
        "sheet" | "bitable" => Some("xlsx"),
        t if exportable(t) => Some("pdf"),
        _ => None,
    }
}

/// The MIME type of a file name or extension.
pub(crate) fn mime(name: &str) -> &'static str {
    match name.rsplit('.').next().unwrap_or("").to_ascii_lowercase().as_str() {
        "pdf" => "application/pdf",
        "docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "csv" => "text/csv",
        "txt" => "text/plain",
        "mp4" => "video/mp4",
        "zip" => "application/zip",
        "png" => "image/png",
        _ => "application/octet-stream",
    }
}

fn format_of(name: &str) -> MediaFormat {
    match name.rsplit('.').next().unwrap_or("").to_ascii_lowercase().as_str() {
        "pdf" => MediaFormat::Pdf,
        "docx" | "xlsx" | "zip" | "pptx" => MediaFormat::Zip,
        "mp4" => MediaFormat::Mp4,
        "png" => MediaFormat::Png,
        "txt" | "csv" | "md" => MediaFormat::Text,
        _ => MediaFormat::Binary,
    }
}

impl Docs {
    /// What a plain download of uploaded file `token` yields now.
    pub fn file_blob(&self, seed: u64, token: &str) -> Option<MediaBlob> {
        let d = self.map.get(token).filter(|d| d.obj_type == "file")?;
        Some(MediaBlob::new(mix(&[seed, tag::BODY, str_hash(token), d.version]), format_of(&d.title), d.size))
    }

    /// The export of `token` as `ext` at `version`.
    pub fn export_blob(seed: u64, token: &str, version: u64, ext: &str) -> MediaBlob {
        let key = mix(&[seed, tag::BODY, str_hash(token), version, str_hash(ext)]);
        let size = 4096 + key % (60 * 1024);
        MediaBlob::new(key, format_of(ext), size)
    }

    /// `(sha256, size, export_extension)` of what a backup of `token` stores now: the download of
    /// a file, the default export of an online document; `None` for neither (and for a document
    /// whose export is refused, so `/_sim/tree` shows `sha256: null` for it).
    pub fn backup_digest(&mut self, seed: u64, token: &str) -> Option<(String, u64, Option<&'static str>)> {
        let d = self.map.get(token)?;
        let (blob, ext) = if d.obj_type == "file" {
            (self.file_blob(seed, token)?, None)
        } else {
            if d.export_block.is_some() {
                return None;
            }
            let ext = default_export(&d.obj_type)?;
            (Docs::export_blob(seed, token, d.version, ext), Some(ext))
        };
        let sha = self.sha.entry(blob).or_insert_with(|| sha256_hex(&blob)).clone();
        Some((sha, blob.size, ext))
    }

    /// A document changed: new version, new `modified_time` (strictly later).
    pub fn touch(&mut self, token: &str, now_s: u64) -> bool {
        match self.map.get_mut(token) {
            Some(d) => {
                d.version += 1;
                d.modified_s = now_s.max(d.modified_s + 1);
                true
            }
            None => false,
        }
    }
}

/// SHA-256 of a whole blob, streamed.
pub(crate) fn sha256_hex(blob: &MediaBlob) -> String {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let mut buf = vec![0u8; 1 << 20];
    let mut off = 0;
    while off < blob.size {
        let n = blob.read_at(off, &mut buf);
        ctx.update(&buf[..n]);
        off += n as u64;
    }
    hex::encode(ctx.finish().as_ref())
}

/// Parses a single `Range: bytes=…` against `total`: `Ok(None)` without one, `Err` if it cannot
/// be satisfied.
fn parse_range(headers: &HeaderMap, total: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(v) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else { return Ok(None) };
    let spec = v.trim().strip_prefix("bytes=").ok_or(())?;
    if spec.contains(',') {
        return Err(());
    }
    let (a, b) = spec.split_once('-').ok_or(())?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", n) => {
            let n: u64 = n.parse().map_err(|_| ())?;
            if n == 0 {
                return Err(());
            }
            (total.saturating_sub(n), total - 1)
        }
        (s, "") => (s.parse().map_err(|_| ())?, total.saturating_sub(1)),
        (s, e) => {
            (s.parse().map_err(|_| ())?, e.parse::<u64>().map_err(|_| ())?.min(total.saturating_sub(1)))
        }
    };
    if total == 0 || start >= total || end < start {
        return Err(());
    }
    Ok(Some((start, end)))
}

/// `Content-Disposition` with an ASCII fallback and the RFC 5987 UTF-8 name.
fn disposition(name: &str) -> String {
    let ascii: String = name
        .chars()
        .map(|c| if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' { c } else { '_' })
        .collect();
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{}", pct(name))
}

/// Serves `blob` (200, or 206 for a satisfiable `Range`, 416 otherwise), streamed in 256 KiB
/// pieces so big media cost no memory.
pub(crate) fn serve_blob(blob: MediaBlob, headers: &HeaderMap, name: &str) -> Response {
    let total = blob.size;
    let (status, start, end) = match parse_range(headers, total) {
        Ok(None) => (StatusCode::OK, 0, total.saturating_sub(1)),
        Ok(Some((s, e))) => (StatusCode::PARTIAL_CONTENT, s, e),
        Err(()) => {
            let mut r = Response::new(Body::empty());
            *r.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{total}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return r;
        }
    };
    let len = if total == 0 { 0 } else { end - start + 1 };
    let stream = futures_util::stream::unfold(start, move |off| async move {
        if total == 0 || off > end {
            return None;
        }
        let n = (end + 1 - off).min(256 * 1024) as usize;
        let mut buf = vec![0u8; n];
        blob.read_at(off, &mut buf);
        Some((Ok::<_, std::io::Error>(axum::body::Bytes::from(buf)), off + n as u64))
    });
    let mut r = Response::new(Body::from_stream(stream));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(mime(name)));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(v) = HeaderValue::from_str(&disposition(name)) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{total}"))
    {
        h.insert(header::CONTENT_RANGE, v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(v: &str, total: u64) -> Result<Option<(u64, u64)>, ()> {
        let mut h = HeaderMap::new();
        h.insert(header::RANGE, HeaderValue::from_str(v).unwrap());
        parse_range(&h, total)
    }

    #[test]
    fn ranges() {
        assert_eq!(range("bytes=0-1023", 5000), Ok(Some((0, 1023))));
        assert_eq!(range("bytes=4000-", 5000), Ok(Some((4000, 4999))));
        assert_eq!(range("bytes=-100", 5000), Ok(Some((4900, 4999))));
        assert_eq!(range("bytes=0-99999", 5000), Ok(Some((0, 4999))));
        assert!(range("bytes=5000-", 5000).is_err());
        assert!(range("bytes=0-1,5-6", 5000).is_err());
        assert!(range("items=0-1", 5000).is_err());
        assert_eq!(parse_range(&HeaderMap::new(), 10), Ok(None));
    }

    #[test]
    fn export_matrix() {
        assert!(valid_export("docx", "pdf") && valid_export("sheet", "csv"));
        assert!(
            !valid_export("slides", "pdf") && !valid_export("file", "pdf") && !valid_export("docx", "xlsx")
        );
        assert_eq!(default_export("bitable"), Some("xlsx"));
        assert_eq!(default_export("mindnote"), None);
    }
}
