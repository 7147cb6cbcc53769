//! The token hand-out JSON (issue 12, item 4), the shape other teams'
//! clients already consume: times as `YYYY-MM-DD HH:MM:SS` in the configured
//! zone plus unix seconds; `source`, `usage`, `platform` from settings.

use serde::Serialize;

use super::AppToken;
use crate::config::FeishuSettings;

/// The JSON answered on `GET /feishu/app-token` and POSTed in push mode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Handout {
    /// The token.
    pub access_token: String,
    /// Expiry, local time.
    pub expire_time: String,
    /// Expiry, unix seconds.
    pub expire_timestamp: i64,
    /// Seconds still valid at hand-out time.
    pub valid_duration_seconds: i64,
    /// When it was fetched, local time.
    pub generated_time: String,
    /// When it was fetched, unix seconds.
    pub generated_timestamp: i64,
    /// From settings.
    pub source: String,
    /// From settings.
    pub usage: String,
    /// From settings.
    pub platform: String,
}

/// Formats unix seconds in a fixed zone.
pub fn format_time(unix_s: i64, zone: chrono::FixedOffset) -> String {
    chrono::DateTime::from_timestamp(unix_s, 0)
        .map(|t| t.with_timezone(&zone).format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

/// The hand-out of `token` at `now_ms`.
pub fn handout(token: &AppToken, settings: &FeishuSettings, now_ms: i64) -> Handout {
    let expire = token.expires_at_ms / 1000;
    let generated = token.generated_at_ms / 1000;
    Handout {
        access_token: token.token.clone(),
        expire_time: format_time(expire, settings.timezone),
        expire_timestamp: expire,
        valid_duration_seconds: ((token.expires_at_ms - now_ms) / 1000).max(0),
        generated_time: format_time(generated, settings.timezone),
        generated_timestamp: generated,
        source: settings.handout_source.clone(),
        usage: settings.handout_usage.clone(),
        platform: settings.handout_platform.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_in_the_configured_zone() {
        let c = crate::config::Config::resolve(&Default::default()).unwrap();
        let t = AppToken {
            token: "t-1".into(),
            expires_at_ms: 1_763_714_400_000,
            generated_at_ms: 1_763_707_200_000,
            refresh_at_ms: 0,
        };
        let h = handout(&t, &c.feishu, 1_763_707_260_000);
        assert_eq!(h.generated_time, "2025-11-21 14:40:00", "+08:00 by default");
        assert_eq!(h.expire_time, "2025-11-21 16:40:00");
        assert_eq!((h.expire_timestamp, h.valid_duration_seconds), (1_763_714_400, 7140));
        let j = serde_json::to_value(&h).unwrap();
        for k in [
            "access_token",
            "expire_time",
            "expire_timestamp",
            "valid_duration_seconds",
            "generated_time",
            "generated_timestamp",
            "source",
            "usage",
            "platform",
        ] {
            assert!(j.get(k).is_some(), "{k}");
        }
    }
}
