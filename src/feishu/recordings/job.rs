//! One claimed job, from the owner's token to the archived file (issue 13,
//! items 2–4): the owner's token (or the auth card and `awaiting_auth`), the
//! recording (124002 → wait with backoff up to the maximum wait; 121004/404 →
//! `no_recording`), the minute token, the Minutes media URL (2091003 → wait),
//! and the resumable download. Every outcome is written back under the claim.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::Method;
use serde_json::Value;

use super::fetch::{FetchError, fetch, place};
use super::{layout, meeting, notify};
use crate::feishu::client::{ApiRequest, Auth, int_field, str_field};
use crate::feishu::{Feishu, FeishuError, now_s};
use crate::store::feishu_auth_sessions::SessionState;
use crate::store::feishu_recordings::{Recording, RecordingState};

/// The recording route (API.md §4).
pub const RECORDING_ROUTE: &str = "GET /open-apis/vc/v1/meetings/:meeting_id/recording";
/// The Minutes media route (API.md §5.2).
pub const MEDIA_ROUTE: &str = "GET /open-apis/minutes/v1/minutes/:minute_token/media";

/// 124002: the recording is still being generated.
pub const RECORD_PROCESSING: i64 = 124002;
/// 121004: no such data (no recording).
pub const DATA_NOT_EXIST: i64 = 121004;
/// 122002: no such meeting.
pub const MEETING_NOT_EXIST: i64 = 122002;
/// 2091003: the minutes are not finished.
pub const MINUTES_NOT_READY: i64 = 2091003;

/// Fresh download URLs fetched in one attempt when they keep being refused.
const URL_REFETCHES: u32 = 3;
/// Resumes within one attempt after a cut connection.
const RESUMES: u32 = 4;

/// How an attempt ended.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Archived.
    Done { path: String, bytes: u64, sha256: String, resumed_from: u64 },
    /// Not ready yet (124002 / 2091003).
    Wait { code: i64, why: String },
    /// The owner must authorize.
    AwaitAuth { why: String },
    /// There is no recording (final).
    NoRecording { code: i64, why: String },
    /// A failure worth another attempt.
    Retry { code: i64, why: String },
    /// A failure no retry will fix.
    Fatal { code: i64, why: String },
    /// Someone else holds the job now.
    ClaimLost,
}

fn classify(e: FeishuError) -> Outcome {
    let why = e.to_string();
    match &e {
        FeishuError::NoUser { .. } | FeishuError::NeedsReauth { .. } => Outcome::AwaitAuth { why },
        FeishuError::Api { code, .. } if *code == RECORD_PROCESSING || *code == MINUTES_NOT_READY => {
            Outcome::Wait { code: *code, why }
        }
        FeishuError::Api { code, .. } if *code == DATA_NOT_EXIST || *code == MEETING_NOT_EXIST => {
            Outcome::NoRecording { code: *code, why }
        }
        FeishuError::Api { status: 404, code, .. } => Outcome::NoRecording { code: *code, why },
        // No permission: the owner is not the owner (121005), or the minutes are someone else's.
        FeishuError::Api { code: code @ (121005 | 2091005), .. } => Outcome::Fatal { code: *code, why },
        FeishuError::Api { code, .. } => Outcome::Retry { code: *code, why },
        _ => Outcome::Retry { code: 0, why },
    }
}

/// Makes sure the owner has a live authorization card, and links it to the
/// job. One card per need: a card already out (sent for another job, by a
/// refused refresh in `oauth.rs`, or by an operator) is the one this job waits
/// on too. A card the owner declined for a recording is not sent again (an
/// operator's `retry` does).
async fn ensure_card(f: &Feishu, job: &Recording) {
    let sessions = match f.store.recording_auth_sessions(&job.app_id, &job.owner_open_id).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(meeting = %job.meeting_id, "reading authorization sessions: {e}");
            return;
        }
    };
    for id in &sessions {
        if let Ok(Some(s)) = f.store.auth_session(id).await
            && s.state == SessionState::Rejected
        {
            return;
        }
    }
    match f.ensure_auth_card(&job.app_id, &job.owner_open_id).await {
        Ok((s, sent)) => {
            if sent {
                tracing::info!(meeting = %job.meeting_id, owner = %job.owner_open_id, "authorization card sent for a recording");
            }
            if s.id != job.auth_session
                && let Err(e) = f.store.set_recording_auth_session(job.id, &s.id).await
            {
                tracing::warn!(meeting = %job.meeting_id, "recording the card session: {e}");
            }
        }
        Err(e) => tracing::warn!(meeting = %job.meeting_id, "authorization card not sent: {e}"),
    }
}

fn user_get(base: &str, route: &'static str, path: String) -> impl Fn(&str) -> ApiRequest {
    let base = base.to_owned();
    move |token: &str| {
        ApiRequest::new(Method::GET, &base, route, path.clone(), Auth::Bearer(token.to_owned()))
    }
}

/// The minutes' pre-signed download URL.
async fn download_url(
    f: &Feishu,
    app: &crate::store::feishu_apps::FeishuApp,
    job: &Recording,
    token: &str,
) -> Result<String, Outcome> {
    let path = format!("/open-apis/minutes/v1/minutes/{token}/media");
    let answer = f
        .call_as_user(app, &job.owner_open_id, user_get(&app.base_url, MEDIA_ROUTE, path))
        .await
        .map_err(classify)?;
    let url = answer.pointer("/data/download_url").and_then(Value::as_str).unwrap_or("");
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return Err(Outcome::Retry {
            code: 0,
            why: "minutes media answer has no http(s) download_url".into(),
        });
    }
    Ok(url.to_owned())
}

/// Runs one attempt of `job` (claimed).
pub(crate) async fn attempt(f: &Arc<Feishu>, job: &Recording) -> Outcome {
    let app = match f.app(&job.app_id).await {
        Ok(a) => a,
        Err(e) => return Outcome::Retry { code: 0, why: e.to_string() },
    };
    if let Err(e) = f.user_token(&app, &job.owner_open_id).await {
        let o = classify(e);
        if matches!(o, Outcome::AwaitAuth { .. }) {
            ensure_card(f, job).await;
        }
        return o;
    }
    // The recording, then its minute token (unless the ready event brought it).
    let mut minute = job.minute_token.clone();
    if minute.is_empty() {
        let path = format!("/open-apis/vc/v1/meetings/{}/recording", job.meeting_id);
        let answer = match f
            .call_as_user(&app, &job.owner_open_id, user_get(&app.base_url, RECORDING_ROUTE, path))
            .await
        {
            Ok(a) => a,
            Err(e) => {
                let o = classify(e);
                if matches!(o, Outcome::AwaitAuth { .. }) {
                    ensure_card(f, job).await;
                }
                return o;
            }
        };
        let rec = answer.pointer("/data/recording").cloned().unwrap_or(Value::Null);
        let Some(token) = str_field(&rec, "url").as_deref().and_then(meeting::minute_token) else {
            return Outcome::Retry { code: 0, why: "recording answer has no Minutes URL".into() };
        };
        let duration = int_field(&rec, "duration").unwrap_or(0).max(0);
        match f.store.set_recording_minute(job, &token, duration).await {
            Ok(true) => {}
            Ok(false) => return Outcome::ClaimLost,
            Err(e) => return Outcome::Retry { code: 0, why: e.to_string() },
        }
        minute = token;
    }
    // Where the file goes: chosen once, kept in the row (a resume writes the same .part).
    let root = f.config.msgfile_dir.clone();
    let rel = if job.path.is_empty() {
        let mut suffix = 1;
        loop {
            let rel = layout::relative_path(
                &job.app_id,
                &job.owner_open_id,
                &job.meeting_id,
                &job.topic,
                if job.start_time > 0 { job.start_time } else { job.end_time },
                f.config.feishu.timezone,
                suffix,
            );
            let taken = tokio::fs::try_exists(root.join(&rel)).await.unwrap_or(false);
            if !taken || suffix >= 1000 {
                break rel;
            }
            suffix += 1;
        }
    } else {
        job.path.clone()
    };
    let dest: PathBuf = root.join(&rel);
    let part = PathBuf::from(format!("{}.part", dest.display()));
    let durable = Arc::new(AtomicU64::new(job.bytes_done));
    let ttl = f.config.recordings.claim_ttl;
    let mut refetches = 0;
    let mut resumes = 0;
    let mut url = match download_url(f, &app, job, &minute).await {
        Ok(u) => u,
        Err(o) => return o,
    };
    loop {
        let store = f.store.clone();
        let d = durable.clone();
        let got = fetch(
            &f.recordings.http,
            &url,
            &part,
            durable.load(Ordering::SeqCst),
            |total| {
                let (store, rel) = (store.clone(), rel.clone());
                async move { store.start_recording_download(job, &rel, total, ttl).await }
            },
            |n| {
                let (store, d) = (store.clone(), d.clone());
                d.store(n, Ordering::SeqCst);
                async move { store.recording_progress(job, n, ttl).await }
            },
        )
        .await;
        match got {
            Ok(done) => {
                if let Err(e) = place(&part, &dest).await {
                    return Outcome::Retry { code: 0, why: format!("placing the recording: {e}") };
                }
                f.recordings.downloaded_bytes.fetch_add(done.bytes - done.resumed_from, Ordering::Relaxed);
                return Outcome::Done {
                    path: rel,
                    bytes: done.bytes,
                    sha256: done.sha256,
                    resumed_from: done.resumed_from,
                };
            }
            Err(FetchError::ClaimLost) => return Outcome::ClaimLost,
            Err(FetchError::Expired(status)) if refetches < URL_REFETCHES => {
                refetches += 1;
                tracing::info!(meeting = %job.meeting_id, status, "download URL refused: fetching a new one");
                url = match download_url(f, &app, job, &minute).await {
                    Ok(u) => u,
                    Err(o) => return o,
                };
            }
            Err(FetchError::Transport(e)) if resumes < RESUMES => {
                resumes += 1;
                tracing::info!(meeting = %job.meeting_id, "download interrupted ({e}); resuming");
                tokio::time::sleep(Duration::from_millis(200 * u64::from(resumes))).await;
            }
            Err(e) => return Outcome::Retry { code: 0, why: e.to_string() },
        }
    }
}

/// Writes an attempt's outcome back under the claim and tells the owner
/// when the job ended.
pub(crate) async fn settle(f: &Arc<Feishu>, job: &Recording, outcome: Outcome) {
    let s = &f.config.recordings;
    let store = &f.store;
    let waited = now_s() - job.created_at;
    let result = match outcome {
        Outcome::Done { path, bytes, sha256, resumed_from } => {
            tracing::info!(meeting = %job.meeting_id, path = %path, bytes, resumed_from, "recording archived");
            store.complete_recording(job, &path, bytes, &sha256).await
        }
        Outcome::Wait { code, why } if waited >= s.max_wait.as_secs() as i64 => {
            let why = format!("gave up waiting for the recording after {waited} s: {why}");
            store.finish_recording(job, RecordingState::Failed, code, &why).await
        }
        Outcome::Wait { code, why } => {
            let delay = s.poll_delay(job.polls);
            tracing::debug!(meeting = %job.meeting_id, ?delay, "recording not ready");
            store.release_recording(job, RecordingState::Waiting, delay, false, true, code, &why).await
        }
        Outcome::AwaitAuth { why } => {
            // Checked again at the first poll interval: an authorization resumes it.
            store.release_recording(job, RecordingState::AwaitingAuth, s.poll, false, false, 0, &why).await
        }
        Outcome::NoRecording { code, why } => {
            tracing::info!(meeting = %job.meeting_id, code, "the meeting has no recording");
            store.finish_recording(job, RecordingState::NoRecording, code, &why).await
        }
        Outcome::Retry { code, why } if job.attempts + 1 >= s.max_attempts => {
            tracing::warn!(meeting = %job.meeting_id, "recording failed for good: {why}");
            store.finish_recording(job, RecordingState::Failed, code, &why).await
        }
        Outcome::Retry { code, why } => {
            tracing::info!(meeting = %job.meeting_id, attempt = job.attempts + 1, "recording attempt failed: {why}");
            let state = if job.bytes_done > 0 || job.state == RecordingState::Downloading {
                RecordingState::Downloading
            } else {
                RecordingState::Pending
            };
            store.release_recording(job, state, s.retry_delay(job.attempts), true, false, code, &why).await
        }
        Outcome::Fatal { code, why } => {
            tracing::warn!(meeting = %job.meeting_id, "recording failed: {why}");
            store.finish_recording(job, RecordingState::Failed, code, &why).await
        }
        Outcome::ClaimLost => Ok(false),
    };
    match result {
        Ok(true) => {}
        Ok(false) => {
            tracing::info!(meeting = %job.meeting_id, "recording job was taken over by another instance");
            return;
        }
        Err(e) => {
            tracing::warn!(meeting = %job.meeting_id, "saving a recording outcome: {e}");
            return;
        }
    }
    if let Ok(Some(now)) = store.recording(&job.app_id, &job.meeting_id).await
        && now.state.is_final()
    {
        notify::tell_owner(f, &now).await;
    }
}
