//! The owner is told (issue 13, item 5): one interactive card per finished
//! job, sent as the app: the file name, size, meeting time and time taken, or
//! why there is no file. Topic and names are `plain_text`, never markdown (a
//! topic is whatever the meeting's creator typed).

use reqwest::Method;
use serde_json::{Value, json};

use crate::feishu::Feishu;
use crate::feishu::cards::SEND_ROUTE;
use crate::feishu::client::{ApiRequest, Auth};
use crate::store::feishu_recordings::{Recording, RecordingState};

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 { format!("{n} B") } else { format!("{v:.1} {}", UNITS[u]) }
}

fn field(label: &str, value: &str) -> Value {
    json!({"is_short": false, "text": {"tag": "plain_text", "content": format!("{label}: {value}")}})
}

/// The card for a finished job.
pub fn outcome_card(r: &Recording, zone: chrono::FixedOffset) -> Value {
    let when = |s: i64| {
        chrono::DateTime::from_timestamp(s, 0)
            .map(|t| t.with_timezone(&zone).format("%Y-%m-%d %H:%M %:z").to_string())
            .unwrap_or_default()
    };
    let topic = if r.topic.is_empty() { "(no topic)" } else { r.topic.as_str() };
    let mut fields = vec![
        field("Meeting", topic),
        field("Meeting time", &format!("{} – {}", when(r.start_time), when(r.end_time))),
    ];
    let (template, title) = match r.state {
        RecordingState::Done => {
            let name = r.path.rsplit('/').next().unwrap_or(&r.path);
            fields.push(field("File", name));
            fields.push(field("Size", &human_bytes(r.bytes.unwrap_or(0))));
            // From the meeting's end (or the job's creation, when Feishu sent no end) to the file.
            let since = if r.end_time > 0 { r.end_time } else { r.created_at };
            let taken = r.finished_at.unwrap_or(since) - since;
            fields.push(field("Archived after", &format!("{} s", taken.max(0))));
            ("green", "Meeting recording archived")
        }
        RecordingState::NoRecording => {
            fields.push(field("Result", "This meeting has no recording."));
            ("grey", "No meeting recording")
        }
        _ => {
            fields.push(field(
                "Result",
                &format!("Not archived: {}", r.last_error.chars().take(300).collect::<String>()),
            ));
            ("red", "Meeting recording not archived")
        }
    };
    json!({
        "config": {"update_multi": true, "wide_screen_mode": true},
        "header": {"template": template, "title": {"tag": "plain_text", "content": title}},
        "elements": [{"tag": "div", "fields": fields}]
    })
}

/// Sends the outcome card once per finished job (the row's `notified` flag,
/// and the message `uuid` for Feishu's own de-duplication).
pub async fn tell_owner(f: &Feishu, r: &Recording) {
    match f.store.mark_recording_notified(r.id).await {
        Ok(true) => {}
        Ok(false) => return,
        Err(e) => {
            tracing::warn!(meeting = %r.meeting_id, "marking a recording notified: {e}");
            return;
        }
    }
    let app = match f.app(&r.app_id).await {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(meeting = %r.meeting_id, "recording card not sent: {e}");
            return;
        }
    };
    let content = outcome_card(r, f.config.feishu.timezone).to_string();
    let uuid = format!("rec-{}-{}-{}", r.id, r.state.as_str(), r.finished_at.unwrap_or(0));
    let sent = f
        .call_as_app(&app, |token| {
            ApiRequest::new(Method::POST, &app.base_url, SEND_ROUTE, "/open-apis/im/v1/messages", Auth::Bearer(token.into()))
                .query("receive_id_type", "open_id")
                .json(json!({"receive_id": r.owner_open_id, "msg_type": "interactive", "content": content, "uuid": uuid}))
        })
        .await;
    match sent {
        Ok(_) => {
            tracing::info!(meeting = %r.meeting_id, state = r.state.as_str(), "owner told about the recording")
        }
        Err(e) => tracing::warn!(meeting = %r.meeting_id, "recording card not sent: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(3 << 20), "3.0 MiB");
        assert_eq!(human_bytes(1 << 30), "1.0 GiB");
    }
}
