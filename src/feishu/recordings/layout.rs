//! Where a recording is stored under the media root (issue 13, item 4):
//! `feishu/<app_id>/<owner_open_id>/<yyyymm>/<date>_<topic>_<meeting_id>.mp4`.
//!
//! The ids are checked identifiers (see [`super::meeting`]); the topic is
//! free text from the server, so it is reduced to characters that are safe in
//! one path component on every file system we know, and cut to a length that
//! keeps the name under 255 bytes.

use chrono::{DateTime, FixedOffset};

/// Longest topic part of a file name, in bytes (UTF-8).
const TOPIC_BYTES: usize = 120;

/// The topic as one safe file-name component (never empty, never `.`/`..`).
pub fn sanitize_topic(topic: &str) -> String {
    let mut out = String::new();
    let mut last_sep = true;
    for c in topic.chars() {
        let keep = !(c.is_control()
            || matches!(c, '/' | '\\' | ':' | '*' | '?' | '"' | '<' | '>' | '|' | '\u{202a}'..='\u{202e}')
            || c.is_whitespace());
        let c = if keep { c } else { '_' };
        // No run of separators, and no dot right after one (no `..`, no hidden names).
        if (c == '_' || c == '.') && last_sep {
            continue;
        }
        last_sep = c == '_';
        if out.len() + c.len_utf8() > TOPIC_BYTES {
            break;
        }
        out.push(c);
    }
    let out = out.trim_matches(|c| c == '_' || c == '.').to_owned();
    if out.is_empty() { "meeting".to_owned() } else { out }
}

/// The path relative to the media root; `suffix` (2, 3, …) makes it unique
/// when a different file already has the name.
pub fn relative_path(
    app_id: &str,
    owner: &str,
    meeting_id: &str,
    topic: &str,
    start_s: i64,
    zone: FixedOffset,
    suffix: u32,
) -> String {
    let t = DateTime::from_timestamp(start_s, 0).unwrap_or_default().with_timezone(&zone);
    let extra = if suffix > 1 { format!("_{suffix}") } else { String::new() };
    format!(
        "feishu/{app_id}/{owner}/{}/{}_{}_{meeting_id}{extra}.mp4",
        t.format("%Y%m"),
        t.format("%Y%m%d"),
        sanitize_topic(topic)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_cannot_escape_or_hide() {
        assert_eq!(sanitize_topic("Weekly sync"), "Weekly_sync");
        assert_eq!(sanitize_topic("Weekly sync / ../../etc"), "Weekly_sync_etc");
        assert_eq!(sanitize_topic(".hidden"), "hidden");
        assert_eq!(sanitize_topic("../../etc/passwd"), "etc_passwd");
        assert_eq!(sanitize_topic(".."), "meeting");
        assert_eq!(sanitize_topic(""), "meeting");
        assert_eq!(sanitize_topic("a\0b\nc\\d"), "a_b_c_d");
        assert_eq!(sanitize_topic("周会 / 复盘"), "周会_复盘");
        assert_eq!(sanitize_topic("x\u{202e}gpj.exe"), "x_gpj.exe");
        let long = sanitize_topic(&"会".repeat(200));
        assert!(long.len() <= TOPIC_BYTES && long.chars().all(|c| c == '会'));
    }

    #[test]
    fn paths_follow_the_issue() {
        let zone = FixedOffset::east_opt(8 * 3600).unwrap();
        // 2020-12-25 08:02:02 UTC = 16:02 at +08:00.
        let p = relative_path("cli_a", "ou_b", "123", "Weekly sync", 1608883322, zone, 1);
        assert_eq!(p, "feishu/cli_a/ou_b/202012/20201225_Weekly_sync_123.mp4");
        let p = relative_path("cli_a", "ou_b", "123", "x", 1608883322, zone, 2);
        assert!(p.ends_with("_123_2.mp4"), "{p}");
    }
}
