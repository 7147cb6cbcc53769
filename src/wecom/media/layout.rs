//! Where a media file goes under the media root, built only from sanitised parts.
//!
//! `<corpid>/<yyyymm>/<msgid>[~<n>].<ext>`: `yyyymm` from `msgtime` (UTC), `~<n>`
//! the item index of nested media (mixed, chatrecord), the extension from the media
//! kind (or the file's own, sanitised). Everything that comes from a message — the
//! msgid, a file name or extension — passes through [`sanitize_stem`] or
//! [`sanitize_ext`]: the result is one plain path component of a bounded length,
//! never `.`/`..`, never absolute, free of separators and control characters, so a
//! hostile name (`../../x`, `/etc/passwd`, NUL, 300-byte names) cannot leave the root.
//! The corp id is a [`CorpId`], an identifier by construction.

use std::path::PathBuf;

use md5::{Digest, Md5};

use crate::store::CorpId;
use crate::wecom::media_refs::MediaKind;

/// Longest stem kept from a msgid before the disambiguating hash (bytes). With the
/// hash, the item suffix, the extension and the `.part` wrapper the file name stays
/// far below the 255-byte limit of common file systems.
pub const MAX_STEM_BYTES: usize = 120;

/// Longest extension kept (bytes).
pub const MAX_EXT_BYTES: usize = 10;

/// Extension of files whose type says nothing better.
pub const FALLBACK_EXT: &str = "bin";

/// The month directory (`yyyymm`, UTC) of a message time in ms; `000000` for a time
/// outside years 1..=9999.
pub fn month_dir(msgtime_ms: i64) -> String {
    use chrono::Datelike;
    match chrono::DateTime::from_timestamp_millis(msgtime_ms) {
        Some(t) if (1..=9999).contains(&t.year()) => format!("{:04}{:02}", t.year(), t.month()),
        _ => "000000".to_owned(),
    }
}

/// A msgid (or any server-given text) as a safe file stem: ASCII letters, digits,
/// `_`, `-` and `.` are kept, anything else becomes `_`; leading dots and dashes are
/// dropped (no hidden files, no `..`, nothing a tool reads as an option); the result
/// is cut at [`MAX_STEM_BYTES`]. When anything was changed, `~` and 12 hex digits of
/// the original's md5 are appended, so two different msgids never share a stem.
pub fn sanitize_stem(raw: &str) -> String {
    let mut out: String = raw
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') { c } else { '_' })
        .collect();
    let lead = out.len() - out.trim_start_matches(['.', '-']).len();
    out.drain(..lead);
    out.truncate(MAX_STEM_BYTES); // ASCII only: any byte index is a char boundary
    if out != raw || out.is_empty() {
        let digest = Md5::digest(raw.as_bytes());
        if out.is_empty() {
            out.push_str("msg");
        }
        out.push('~');
        out.push_str(&hex::encode(&digest[..6]));
    }
    out
}

/// The stem of an item's files: the sanitised msgid, plus `~<n>` for nested items.
///
/// `~` never survives [`sanitize_stem`] except before its 12 hex digits, so
/// msgid `X` item 1 (`X~1`) can never share a file with msgid `X_1` item 0
/// (`X_1`), as it did with a `_` separator (issue #9), nor with any other stem.
pub fn item_stem(msgid: &str, item_index: u32) -> String {
    let stem = sanitize_stem(msgid);
    if item_index == 0 { stem } else { format!("{stem}~{item_index}") }
}

/// An extension as given by a message (`fileext`, or the tail of a file name) made
/// safe: trimmed, leading dots dropped, lower-cased; only ASCII letters and digits,
/// 1..=[`MAX_EXT_BYTES`] of them, or None.
pub fn sanitize_ext(raw: &str) -> Option<String> {
    let e = raw.trim().trim_start_matches('.').to_ascii_lowercase();
    (!e.is_empty() && e.len() <= MAX_EXT_BYTES && e.bytes().all(|b| b.is_ascii_alphanumeric())).then_some(e)
}

/// The image type a file's first bytes announce: `png`, `gif` or `jpg`.
pub fn sniff_image(head: &[u8]) -> Option<&'static str> {
    if head.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("png")
    } else if head.starts_with(b"GIF87a") || head.starts_with(b"GIF89a") {
        Some("gif")
    } else if head.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("jpg")
    } else {
        None
    }
}

/// What decides an item's extension.
#[derive(Debug, Clone, Copy)]
pub struct ExtHints<'a> {
    /// The media kind.
    pub kind: MediaKind,
    /// `fileext` as the message gives it ("" when none).
    pub fileext: &'a str,
    /// `filename` as the message gives it ("" when none).
    pub filename: &'a str,
    /// Emotion type: 1 gif, 2 png.
    pub emotion_type: Option<i64>,
    /// The first bytes of the downloaded file (for images).
    pub head: &'a [u8],
}

/// The extension of an item's file (FORMAT.md §1.3): image jpg unless its bytes say
/// png or gif; voice amr; video mp4; emotion gif (type 1) or png (type 2); a meeting
/// voice call recording mp4 (what the service serves, and what the seed tool used);
/// file and voip_doc_share their own extension (`fileext`, else the file name's),
/// sanitised, else `bin`.
pub fn extension(h: &ExtHints<'_>) -> String {
    let fixed = match h.kind {
        MediaKind::Image => sniff_image(h.head).unwrap_or("jpg"),
        MediaKind::Voice => "amr",
        MediaKind::Video | MediaKind::MeetingVoiceCall => "mp4",
        MediaKind::Emotion => match h.emotion_type {
            Some(1) => "gif",
            Some(2) => "png",
            _ => sniff_image(h.head).unwrap_or("gif"),
        },
        MediaKind::File | MediaKind::VoipDocShare => {
            let from_name = h.filename.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
            return sanitize_ext(h.fileext)
                .or_else(|| sanitize_ext(from_name))
                .unwrap_or_else(|| FALLBACK_EXT.to_owned());
        }
    };
    fixed.to_owned()
}

/// An item's place relative to the media root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemPaths {
    /// `<corpid>/<yyyymm>`.
    pub dir: PathBuf,
    /// `<msgid>[_<n>]`, sanitised.
    pub stem: String,
}

impl ItemPaths {
    /// The paths of item `item_index` of message `msgid`.
    pub fn new(corpid: &CorpId, msgtime_ms: i64, msgid: &str, item_index: u32) -> ItemPaths {
        ItemPaths {
            dir: PathBuf::from(corpid.as_str()).join(month_dir(msgtime_ms)),
            stem: item_stem(msgid, item_index),
        }
    }

    /// The `.part` file a download is written to: hidden, so it never collides with a
    /// finished file (stems never start with a dot).
    pub fn part(&self) -> PathBuf {
        self.dir.join(format!(".{}.part", self.stem))
    }

    /// The finished file.
    pub fn file(&self, ext: &str) -> PathBuf {
        self.dir.join(format!("{}.{ext}", self.stem))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Component;

    use super::*;

    fn corp() -> CorpId {
        CorpId::new("ww0123456789abcdef").unwrap()
    }

    /// A relative path is confined when every component is a plain name.
    fn confined(p: &std::path::Path) -> bool {
        p.components().all(|c| matches!(c, Component::Normal(_)))
    }

    fn assert_safe_component(s: &str) {
        assert!(!s.is_empty());
        assert!(s.len() <= MAX_STEM_BYTES + 13, "{s:?} is {} bytes", s.len());
        assert!(!s.starts_with('.') && !s.starts_with('-'), "{s:?}");
        assert!(s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.~".contains(&b)), "{s:?}");
    }

    #[test]
    fn real_msgids_stay_readable() {
        for id in ["10923491273498213_1741564800123_external", "abc_123_updown_stream", "a-b.c"] {
            assert_eq!(sanitize_stem(id), id);
        }
        assert_eq!(item_stem("m1", 0), "m1");
        assert_eq!(item_stem("m1", 3), "m1~3");
        // Two items never share a file.
        assert_ne!(item_stem("X", 1), item_stem("X_1", 0));
        assert_ne!(item_stem("X~1", 0), item_stem("X", 1));
    }

    #[test]
    fn hostile_msgids_become_one_plain_component() {
        let long = "x".repeat(300);
        let cjk = "长".repeat(100);
        let hostile = [
            "../../x",
            "/etc/passwd",
            "..",
            ".",
            "",
            "a/b\\c",
            "nul\0byte",
            "bell\u{7}tab\tnew\nline\u{1b}[31m",
            "-rf",
            ".hidden",
            long.as_str(),
            cjk.as_str(),
            "emoji😀",
            "C:\\Windows\\System32",
            "%2e%2e%2f",
        ];
        let mut seen = std::collections::HashSet::new();
        for h in hostile {
            let s = sanitize_stem(h);
            assert_safe_component(&s);
            assert_ne!(s, "..");
            assert!(seen.insert(s.clone()), "{h:?} collides as {s:?}");
            let p = ItemPaths::new(&corp(), 0, h, 2);
            for path in [p.part(), p.file("jpg")] {
                assert!(confined(&path), "{h:?} -> {path:?}");
                assert_eq!(path.components().count(), 3, "{h:?} -> {path:?}");
                assert!(path.starts_with("ww0123456789abcdef"), "{path:?}");
                let name = path.file_name().unwrap().to_str().unwrap();
                assert!(name.len() < 200, "{name}");
            }
        }
        // Different inputs that sanitise alike stay distinct through the hash.
        assert_ne!(sanitize_stem("a/b"), sanitize_stem("a_b"));
        assert_ne!(sanitize_stem("a/b"), sanitize_stem("a\\b"));
        assert_eq!(sanitize_stem("a/b"), sanitize_stem("a/b"), "deterministic");
        assert_eq!(sanitize_stem(&long).len(), MAX_STEM_BYTES + 13);
    }

    #[test]
    fn months_are_utc() {
        assert_eq!(month_dir(1_741_564_800_000), "202503"); // 2025-03-10 00:00 UTC
        assert_eq!(month_dir(1_740_787_199_999), "202502"); // 2025-02-28 23:59:59.999 UTC
        assert_eq!(month_dir(0), "197001");
        assert_eq!(month_dir(-1), "196912");
        assert_eq!(month_dir(i64::MAX), "000000");
        assert_eq!(month_dir(i64::MIN), "000000");
    }

    fn ext(kind: MediaKind, fileext: &str, filename: &str, emotion: Option<i64>, head: &[u8]) -> String {
        extension(&ExtHints { kind, fileext, filename, emotion_type: emotion, head })
    }

    #[test]
    fn extensions_by_kind_and_content() {
        assert_eq!(ext(MediaKind::Image, "", "", None, &[0xFF, 0xD8, 0xFF, 0xE0]), "jpg");
        assert_eq!(ext(MediaKind::Image, "", "", None, b"\x89PNG\r\n\x1a\n...."), "png");
        assert_eq!(ext(MediaKind::Image, "", "", None, b"GIF89a.."), "gif");
        assert_eq!(ext(MediaKind::Image, "", "", None, b""), "jpg");
        assert_eq!(ext(MediaKind::Voice, "exe", "a.exe", None, b""), "amr");
        assert_eq!(ext(MediaKind::Video, "", "", None, b""), "mp4");
        assert_eq!(ext(MediaKind::MeetingVoiceCall, "", "", None, b""), "mp4");
        assert_eq!(ext(MediaKind::Emotion, "", "", Some(1), b"\x89PNG\r\n\x1a\n"), "gif");
        assert_eq!(ext(MediaKind::Emotion, "", "", Some(2), b""), "png");
        assert_eq!(ext(MediaKind::Emotion, "", "", None, b"\x89PNG\r\n\x1a\n"), "png");
        assert_eq!(ext(MediaKind::File, "PDF", "report.pdf", None, b""), "pdf");
        assert_eq!(ext(MediaKind::File, "", "report.DOCX", None, b""), "docx");
        assert_eq!(ext(MediaKind::VoipDocShare, "", "slides.pptx", None, b""), "pptx");
        assert_eq!(ext(MediaKind::File, " .txt ", "", None, b""), "txt");
    }

    #[test]
    fn hostile_extensions_fall_back() {
        let long = format!("{}.{}", "a".repeat(290), "b".repeat(20));
        for (fileext, filename) in [
            ("../../x", "../../x"),
            ("", "/etc/passwd"),
            ("", ".."),
            ("", ""),
            ("", "noext"),
            ("p/df", "a.p/df"),
            ("pdf\0", "a.pdf\0"),
            ("", "bell\u{7}tab\tnew\nline\u{1b}[31mred.t\u{1b}t"),
            ("", long.as_str()),
            ("文件", "文件名.文件"),
            ("", "C:\\Windows\\hosts.a\\b"),
        ] {
            let e = ext(MediaKind::File, fileext, filename, None, b"");
            assert_eq!(e, FALLBACK_EXT, "{fileext:?} {filename:?}");
        }
        // A hostile name with a harmless extension keeps the extension, never the name.
        assert_eq!(ext(MediaKind::File, "", "../../../etc/cron.d/evil.pdf", None, b""), "pdf");
        assert_eq!(ext(MediaKind::File, "", "/etc/passwd.txt", None, b""), "txt");
        assert_eq!(sanitize_ext(&"a".repeat(11)), None);
        assert_eq!(sanitize_ext(&"a".repeat(10)).as_deref(), Some("aaaaaaaaaa"));
    }

    #[test]
    fn part_and_final_names_never_collide() {
        let p = ItemPaths::new(&corp(), 1_741_564_800_000, "m", 0);
        assert_eq!(p.dir, PathBuf::from("ww0123456789abcdef/202503"));
        assert_eq!(p.part(), PathBuf::from("ww0123456789abcdef/202503/.m.part"));
        assert_eq!(p.file("part"), PathBuf::from("ww0123456789abcdef/202503/m.part"));
        assert_ne!(p.part(), p.file("part"));
    }
}
