//! What the meeting events say (API.md §3.6, §4), checked before anything is
//! stored: ids that become file names and SQL values must be identifiers.

use serde_json::Value;

use crate::feishu::client::{int_field, str_field};
use crate::store::feishu_recordings::NewRecording;

/// The meeting-ended event.
pub const MEETING_ENDED: &str = "vc.meeting.all_meeting_ended_v1";
/// The recording-ready event (the fast path: it carries the Minutes URL).
pub const RECORDING_READY: &str = "vc.meeting.recording_ready_v1";

/// Why an event cannot become a job (kept on the stored event).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MeetingError {
    /// A field is missing or not what the contract says.
    #[error("meeting event: {0}")]
    Invalid(String),
}

/// A meeting id: int64 digits (sent as a string).
pub fn valid_meeting_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 32 && s.bytes().all(|b| b.is_ascii_digit())
}

/// An open_id (`ou_…`): letters, digits, `_` and `-`, as a directory name.
pub fn valid_open_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The minute token of a Minutes URL: the path segment after `/minutes/`, without
/// query, fragment or trailing slash (API.md §5), lowercase letters and digits.
pub fn minute_token(url: &str) -> Option<String> {
    let (_, rest) = url.split_once("/minutes/")?;
    let end = rest.find(['?', '#', '/']).unwrap_or(rest.len());
    let token = &rest[..end];
    let ok = !token.is_empty()
        && token.len() <= 64
        && token.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    ok.then(|| token.to_owned())
}

/// The job an event asks for. `app_id` is the app the push came for.
pub fn parse(
    app_id: &str,
    event_id: &str,
    event_type: &str,
    envelope: &Value,
) -> Result<NewRecording, MeetingError> {
    let bad = |what: &str| MeetingError::Invalid(what.to_owned());
    let meeting = envelope.pointer("/event/meeting").ok_or_else(|| bad("no event.meeting"))?;
    let meeting_id = str_field(meeting, "id").ok_or_else(|| bad("no meeting.id"))?;
    if !valid_meeting_id(&meeting_id) {
        return Err(bad("meeting.id is not an int64 id"));
    }
    let owner = meeting
        .pointer("/owner/id/open_id")
        .or_else(|| meeting.pointer("/host_user/id/open_id"))
        .and_then(Value::as_str)
        .ok_or_else(|| bad("no meeting.owner.id.open_id"))?;
    if !valid_open_id(owner) {
        return Err(bad("meeting.owner.id.open_id is not an id"));
    }
    let topic: String =
        meeting.get("topic").and_then(Value::as_str).unwrap_or("").chars().take(512).collect();
    let start_time = int_field(meeting, "start_time").unwrap_or(0).max(0);
    let end_time = int_field(meeting, "end_time").unwrap_or(0).max(0);
    let minute = if event_type == RECORDING_READY {
        let url =
            envelope.pointer("/event/url").and_then(Value::as_str).ok_or_else(|| bad("no event.url"))?;
        minute_token(url).ok_or_else(|| bad("event.url is not a Minutes URL"))?
    } else {
        String::new()
    };
    Ok(NewRecording {
        app_id: app_id.to_owned(),
        meeting_id,
        topic,
        owner_open_id: owner.to_owned(),
        start_time,
        end_time,
        event_id: event_id.chars().take(128).collect(),
        minute_token: minute,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn minute_tokens() {
        assert_eq!(
            minute_token("https://meetings.feishu.cn/minutes/obcn37dxcftoc3656rgyejm7?from=share").as_deref(),
            Some("obcn37dxcftoc3656rgyejm7")
        );
        assert_eq!(minute_token("http://x/minutes/abc/").as_deref(), Some("abc"));
        assert_eq!(minute_token("http://x/minutes/abc#f").as_deref(), Some("abc"));
        assert_eq!(minute_token("http://x/minutes/../etc"), None);
        assert_eq!(minute_token("http://x/minutes/"), None);
        assert_eq!(minute_token("http://x/other/abc"), None);
    }

    #[test]
    fn parses_the_contract_and_refuses_hostile_ids() {
        let env = json!({"event": {"meeting": {"id": "6911188411934433028", "topic": "Weekly sync",
            "start_time": "1608883322", "end_time": "1608883899",
            "owner": {"id": {"open_id": "ou_abc"}}}}});
        let r = parse("cli_a", "ev1", MEETING_ENDED, &env).unwrap();
        assert_eq!((r.meeting_id.as_str(), r.owner_open_id.as_str()), ("6911188411934433028", "ou_abc"));
        assert_eq!((r.start_time, r.end_time, r.minute_token.as_str()), (1608883322, 1608883899, ""));
        let mut ready = env.clone();
        ready["event"]["url"] = json!("https://meetings.feishu.cn/minutes/obcn1");
        assert_eq!(parse("cli_a", "ev2", RECORDING_READY, &ready).unwrap().minute_token, "obcn1");
        let mut hostile = env.clone();
        hostile["event"]["meeting"]["owner"]["id"]["open_id"] = json!("../../etc");
        assert!(parse("cli_a", "e", MEETING_ENDED, &hostile).is_err());
        let mut hostile = env.clone();
        hostile["event"]["meeting"]["id"] = json!("12/34");
        assert!(parse("cli_a", "e", MEETING_ENDED, &hostile).is_err());
        assert!(parse("cli_a", "e", MEETING_ENDED, &json!({"event": {}})).is_err());
        assert!(parse("cli_a", "e", RECORDING_READY, &env).is_err(), "ready without url");
    }
}
