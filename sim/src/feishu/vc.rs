//! VC meetings and recordings (API.md §3.6, §4): `/_sim/meetings` ends a meeting now, delivers
//! `vc.meeting.all_meeting_ended_v1`; the recording answers 400/124002 until it is ready, then
//! `vc.meeting.recording_ready_v1` is delivered and the recording URL (a Minutes page) served.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use super::auth::{Accept, Caller, check};
use super::docs::sha256_hex;
use super::events;
use super::server::{ApiError, ApiResult, ok};
use super::state::{App, now_ms, now_s};
use super::world::tag;
use crate::media::{MediaBlob, MediaFormat};
use crate::seed::mix;

/// One ended meeting.
#[derive(Debug, Clone)]
pub(crate) struct Meeting {
    pub meeting_id: String,
    pub topic: String,
    pub meeting_no: String,
    pub owner: String,
    pub start_s: u64,
    pub end_s: u64,
    pub ready_ms: u64,
    pub minute_token: String,
    pub blob: MediaBlob,
    pub duration_ms: u64,
    pub create_ms: u64,
    /// False: the meeting produced no recording (404/121004, no ready event, no minutes).
    pub has_recording: bool,
}

/// Every meeting that ended, and what was downloaded of their recordings.
#[derive(Debug, Default)]
pub(crate) struct Meetings {
    pub list: Vec<Meeting>,
    /// Pre-signed downloads answered, without and with `Range`.
    pub downloads_full: u64,
    pub downloads_ranged: u64,
    /// First byte of every ranged download, in order.
    pub range_starts: Vec<u64>,
    /// Downloads cut by the `drop` fault.
    pub downloads_dropped: u64,
    /// Downloads refused because their (correctly signed) URL had expired.
    pub downloads_expired: u64,
}

impl Meetings {
    /// The meeting of a minute token (only meetings that have a recording have minutes).
    pub fn by_minute(&self, token: &str) -> Option<&Meeting> {
        self.list.iter().find(|m| m.minute_token == token && m.has_recording)
    }

    /// Adds the download counters to `/_sim/stats`: the pre-signed download is counted under
    /// `calls` like an API route, and `downloads` tells full from ranged requests.
    pub fn add_stats(&self, stats: &mut Value) {
        let key = "GET /minutes-media/:minute_token";
        if let Some(calls) = stats.get_mut("calls").and_then(Value::as_object_mut) {
            calls.insert(key.into(), json!(self.downloads_full + self.downloads_ranged));
        }
        stats["downloads"] = json!({
            "full": self.downloads_full, "ranged": self.downloads_ranged,
            "range_starts": self.range_starts, "dropped": self.downloads_dropped,
            "expired": self.downloads_expired,
        });
    }
}

/// `/_sim/meetings` request.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct NewMeeting {
    pub owner_open_id: String,
    pub topic: Option<String>,
    pub ready_after_s: Option<f64>,
    pub bytes: Option<u64>,
    /// `false`: the meeting has no recording (not in FAKE.md's table; default true).
    pub recording: Option<bool>,
}

fn meeting_json(app: &App, m: &Meeting) -> Value {
    let u = app.world.user(&m.owner);
    let id = json!({
        "union_id": u.map(|u| u.union_id.clone()), "user_id": u.map(|u| u.user_id.clone()), "open_id": m.owner,
    });
    json!({
        "id": m.meeting_id, "topic": m.topic, "meeting_no": m.meeting_no, "meeting_source": 1,
        "start_time": m.start_s.to_string(), "end_time": m.end_s.to_string(),
        "host_user": {"id": id, "user_role": 1, "user_type": 1},
        "owner": {"id": id, "user_role": 1, "user_type": 1},
    })
}

/// The Minutes page URL of a meeting (`…/minutes/<token>`).
pub(crate) fn minutes_url(app: &App, token: &str) -> String {
    format!("{}/minutes/{token}", app.base_url)
}

/// `/_sim/meetings`.
pub(crate) fn end_meeting(app: &App, req: NewMeeting) -> Result<Value, String> {
    if app.world.user(&req.owner_open_id).is_none() {
        return Err(format!("no user {:?}", req.owner_open_id));
    }
    let ready_after = req.ready_after_s.unwrap_or(2.0);
    if !(0.0..=86_400.0).contains(&ready_after) {
        return Err("ready_after_s must be within 0..=86400".into());
    }
    let bytes = req.bytes.unwrap_or(3 << 20);
    let meeting = {
        let mut inner = app.lock();
        let meeting_id = inner.digits(19);
        let meeting_no = inner.digits(9);
        let minute_token = format!("obcn{}", inner.lower(20));
        let n = inner.vc.list.len() as u64;
        let blob = MediaBlob::new(mix(&[app.config.seed, tag::BODY, 0x4D, n]), MediaFormat::Mp4, bytes);
        let end_s = now_s();
        let duration_ms = 60_000 * (5 + n % 55);
        let m = Meeting {
            meeting_id,
            topic: req.topic.unwrap_or_else(|| format!("Weekly sync {}", n + 1)),
            meeting_no,
            owner: req.owner_open_id.clone(),
            start_s: end_s - duration_ms / 1000,
            end_s,
            ready_ms: now_ms() + (ready_after * 1000.0) as u64,
            minute_token,
            blob,
            duration_ms,
            create_ms: now_ms(),
            has_recording: req.recording.unwrap_or(true),
        };
        inner.vc.list.push(m.clone());
        m
    };
    let sha = sha256_hex(&meeting.blob);
    let event = json!({"meeting": meeting_json(app, &meeting), "operator": {"id": {"open_id": meeting.owner}, "user_role": 1, "user_type": 1}});
    let event_id = events::emit(app, "vc.meeting.all_meeting_ended_v1", event);
    let (app2, m2) = (app.clone(), meeting.clone());
    let ready_event = meeting.has_recording;
    tokio::spawn(async move {
        if !ready_event {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(m2.ready_ms.saturating_sub(now_ms()))).await;
        if app2.cancel.is_cancelled() {
            return;
        }
        let url = minutes_url(&app2, &m2.minute_token);
        let ev =
            json!({"meeting": meeting_json(&app2, &m2), "url": url, "duration": m2.duration_ms.to_string()});
        events::emit(&app2, "vc.meeting.recording_ready_v1", ev);
    });
    Ok(json!({
        "meeting_id": meeting.meeting_id, "event_id": event_id, "minute_token": meeting.minute_token,
        "sha256": sha, "bytes": meeting.blob.size,
    }))
}

/// `GET /open-apis/vc/v1/meetings/:meeting_id/recording`.
pub(crate) async fn recording(
    State(app): State<App>,
    headers: HeaderMap,
    Path(meeting_id): Path<String>,
) -> ApiResult {
    let mut inner = app.lock();
    let caller = check(&app, &mut inner, &headers, Accept::TenantOrUser)?;
    let m = inner
        .vc
        .list
        .iter()
        .find(|m| m.meeting_id == meeting_id)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, 122002, "meeting not exist"))?;
    if let Caller::User(o) = &caller
        && *o != m.owner
    {
        return Err(ApiError::new(StatusCode::FORBIDDEN, 121005, "no permission"));
    }
    if !m.has_recording {
        return Err(ApiError::new(StatusCode::NOT_FOUND, 121004, "data not exist"));
    }
    if now_ms() < m.ready_ms {
        return Err(ApiError::bad(124002, "record processing"));
    }
    Ok(ok(
        json!({"recording": {"url": minutes_url(&app, &m.minute_token), "duration": m.duration_ms.to_string()}}),
    ))
}
