//! Checking a download against what its message states: size and md5.
//!
//! The md5 is computed incrementally as chunks are written, so a file is never
//! read twice nor held in memory; after a resume the kept prefix of the `.part`
//! file is hashed again first (streaming), so the digest always covers the whole
//! file. `md5sum` may be empty (FORMAT.md §1.3) and `meeting_voice_call` states
//! neither md5 nor size: what is not stated is not checked.

use md5::{Digest, Md5};

use crate::wecom::media_refs::MediaKind;

/// What a finished file must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expected {
    /// Size in bytes, when the message states one.
    pub size: Option<u64>,
    /// md5 as lowercase hex, when the message states one.
    pub md5: Option<String>,
}

impl Expected {
    /// From the job's stored facts: an empty md5sum means "not stated".
    pub fn new(size: Option<u64>, md5sum: &str) -> Expected {
        let md5 = md5sum.trim().to_ascii_lowercase();
        Expected { size, md5: (!md5.is_empty()).then_some(md5) }
    }
}

/// A finished file does not match its message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Mismatch {
    /// Wrong length.
    #[error("size {got} differs from the stated {expected}")]
    Size {
        /// Stated.
        expected: u64,
        /// Downloaded.
        got: u64,
    },
    /// Wrong digest.
    #[error("md5 {got} differs from the stated {expected}")]
    Md5 {
        /// Stated.
        expected: String,
        /// Downloaded.
        got: String,
    },
    /// No md5 to check, and the bytes are not of the declared type.
    #[error("the file does not start like a {kind} file (no md5 stated to check instead)")]
    Magic {
        /// The declared media kind.
        kind: &'static str,
    },
}

/// How a finished file was checked, recorded in `media_jobs.verification`
/// (issue #9): an auditor can tell a file proven by the platform's md5 from
/// one that could only be checked for size and type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    /// The stated md5 matched.
    Md5,
    /// No md5 stated: the stated size (if any) and the declared type's magic
    /// bytes (where the type has them) were checked, nothing more.
    Unverified,
}

impl Verification {
    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            Verification::Md5 => "md5",
            Verification::Unverified => "unverified",
        }
    }
}

/// Whether `head` (the file's first bytes) fits the declared kind; None for
/// kinds without a fixed signature (files, documents, call recordings).
pub fn declared_type_matches(kind: MediaKind, head: &[u8]) -> Option<bool> {
    let jpg = head.starts_with(&[0xff, 0xd8, 0xff]);
    let png = head.starts_with(b"\x89PNG\r\n\x1a\n");
    let gif = head.starts_with(b"GIF87a") || head.starts_with(b"GIF89a");
    match kind {
        MediaKind::Image => Some(jpg || png || gif),
        MediaKind::Emotion => Some(png || gif),
        MediaKind::Voice => Some(head.starts_with(b"#!AMR")),
        MediaKind::Video => Some(head.get(4..8) == Some(b"ftyp")),
        MediaKind::File | MediaKind::MeetingVoiceCall | MediaKind::VoipDocShare => None,
    }
}

/// Running size and md5 of the bytes written so far.
#[derive(Clone, Default)]
pub struct Verifier {
    md5: Md5,
    len: u64,
}

impl Verifier {
    /// Nothing hashed yet.
    pub fn new() -> Verifier {
        Verifier::default()
    }

    /// Adds the next bytes.
    pub fn update(&mut self, data: &[u8]) {
        self.md5.update(data);
        self.len += data.len() as u64;
    }

    /// Bytes seen.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing was seen.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Compares with what is expected; returns the md5 (lowercase hex) on success.
    pub fn check(self, expected: &Expected) -> Result<String, Mismatch> {
        if let Some(size) = expected.size
            && size != self.len
        {
            return Err(Mismatch::Size { expected: size, got: self.len });
        }
        let got = hex::encode(self.md5.finalize());
        match &expected.md5 {
            Some(md5) if *md5 != got => Err(Mismatch::Md5 { expected: md5.clone(), got }),
            _ => Ok(got),
        }
    }
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier").field("len", &self.len).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole_md5(data: &[u8]) -> String {
        hex::encode(Md5::digest(data))
    }

    #[test]
    fn incremental_equals_whole() {
        let data: Vec<u8> = (0..1_000_003u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        let mut v = Verifier::new();
        for chunk in data.chunks(524_288) {
            v.update(chunk);
        }
        assert_eq!(v.len(), data.len() as u64);
        let expected = Expected::new(Some(data.len() as u64), &whole_md5(&data).to_uppercase());
        assert_eq!(v.check(&expected), Ok(whole_md5(&data)));
    }

    #[test]
    fn mismatches_are_reported() {
        let mut v = Verifier::new();
        v.update(b"hello");
        let e = v.clone().check(&Expected::new(Some(6), "")).unwrap_err();
        assert_eq!(e, Mismatch::Size { expected: 6, got: 5 });
        let e = v.clone().check(&Expected::new(Some(5), &whole_md5(b"hellp"))).unwrap_err();
        assert!(matches!(e, Mismatch::Md5 { .. }), "{e}");
        // Not stated: not checked.
        assert_eq!(v.clone().check(&Expected::new(None, "  ")), Ok(whole_md5(b"hello")));
        assert_eq!(v.check(&Expected::default()), Ok(whole_md5(b"hello")));
    }

    #[test]
    fn declared_types_are_recognised() {
        assert_eq!(declared_type_matches(MediaKind::Voice, b"#!AMR\n\x3c"), Some(true));
        assert_eq!(declared_type_matches(MediaKind::Voice, b"<html>"), Some(false));
        assert_eq!(declared_type_matches(MediaKind::Video, b"\0\0\0\x18ftypmp42"), Some(true));
        assert_eq!(declared_type_matches(MediaKind::Emotion, b"\xff\xd8\xff"), Some(false));
        assert_eq!(declared_type_matches(MediaKind::MeetingVoiceCall, b"anything"), None);
    }
}
