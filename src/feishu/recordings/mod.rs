//! Meeting recordings into the archive (issue 13): every meeting's MP4, by
//! its owner's authority, exactly once.
//!
//! - [`meeting`]: the meeting events, checked (`all_meeting_ended_v1`, and
//!   `recording_ready_v1` as the fast path that brings the Minutes URL).
//! - `feishu_recordings` (in the store): one durable job per (app, meeting),
//!   claimed by one instance at a time like the WeCom media jobs.
//! - [`job`]: one attempt: owner token → recording → minute token → media URL
//!   → download; the outcome written back under the claim.
//! - [`fetch`]: the streamed, resumable, hashed download.
//! - [`layout`]: the file's place under `MSGFILE_DIR/feishu/…`.
//! - [`notify`]: the card telling the owner.
//! - [`settings`]: flags and environment variables.
//!
//! [`run`] is the worker loop started with the other Feishu tasks; an event
//! wakes it at once, otherwise it looks for due jobs every second.

pub mod fetch;
pub mod job;
pub mod layout;
pub mod meeting;
pub mod notify;
pub mod settings;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use super::{Feishu, FeishuError};
use crate::store::feishu_events::StoredEvent;
use crate::store::feishu_recordings::RecordingState;

/// What the worker loop shares with the event handler and `/metrics`.
#[derive(Debug)]
pub struct RecordingRuntime {
    /// Woken when an event created or hurried a job.
    pub wake: Notify,
    /// Plain downloads (pre-signed URLs): no total timeout, since a recording
    /// of any size must fit; a stalled read fails after a minute.
    pub http: reqwest::Client,
    /// Bytes downloaded by this process (resumed bytes counted once).
    pub downloaded_bytes: AtomicU64,
}

impl RecordingRuntime {
    /// The runtime with its download client.
    pub fn new() -> Result<RecordingRuntime, FeishuError> {
        let http = super::client::client_builder()?
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(60))
            .user_agent(concat!("wework-archive/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| FeishuError::Invalid(format!("HTTP client setup: {e}")))?;
        Ok(RecordingRuntime { wake: Notify::new(), http, downloaded_bytes: AtomicU64::new(0) })
    }
}

impl Feishu {
    /// A meeting event: creates (or hurries) the meeting's job. The answer is
    /// the stored event's processing error ("" when fine).
    pub async fn on_meeting_event(&self, e: &StoredEvent) -> String {
        let envelope: Value = match serde_json::from_str(&e.payload) {
            Ok(v) => v,
            Err(err) => return format!("payload is not JSON: {err}"),
        };
        let new = match meeting::parse(&e.app_id, &e.event_id, &e.event_type, &envelope) {
            Ok(n) => n,
            Err(err) => {
                tracing::warn!(event_id = %e.event_id, "meeting event refused: {err}");
                return err.to_string();
            }
        };
        match self.store.upsert_recording(&new).await {
            Ok(created) => {
                tracing::info!(app = %new.app_id, meeting = %new.meeting_id, created, event = %e.event_type, "recording job");
                self.recordings.wake.notify_one();
                String::new()
            }
            Err(err) => {
                tracing::warn!(meeting = %new.meeting_id, "storing a recording job: {err}");
                format!("storing the job: {err}")
            }
        }
    }
}

/// Works recording jobs until `cancel`: claims due ones (up to the worker
/// count), runs each attempt, settles it. On cancel, running attempts are
/// stopped and their jobs released (the `.part` keeps its durable bytes).
pub async fn run(feishu: Arc<Feishu>, cancel: CancellationToken) {
    let s = feishu.config.recordings.clone();
    let owner = feishu.config.instance.clone();
    match feishu.store.release_own_recordings(&owner).await {
        Ok(0) => {}
        Ok(n) => tracing::info!("{n} recording job(s) this instance held before a restart released"),
        Err(e) => tracing::warn!("releasing this instance's recording jobs: {e}"),
    }
    let slots = Arc::new(Semaphore::new(s.workers));
    let tick = s.poll.min(Duration::from_secs(1));
    loop {
        let free = slots.available_permits();
        if free > 0 {
            match feishu.store.claim_recordings(&owner, s.claim_ttl, free).await {
                Ok(jobs) => {
                    for job in jobs {
                        let Ok(permit) = slots.clone().acquire_owned().await else { break };
                        let (f, c) = (feishu.clone(), cancel.clone());
                        tokio::spawn(async move {
                            work(f, job, c).await;
                            drop(permit);
                        });
                    }
                }
                Err(e) => tracing::warn!("claiming recording jobs: {e}"),
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = feishu.recordings.wake.notified() => {}
            _ = tokio::time::sleep(tick) => {}
        }
    }
    // Let running attempts release their jobs.
    let _ = tokio::time::timeout(Duration::from_secs(5), slots.acquire_many(s.workers as u32)).await;
}

/// One claimed job: the attempt, with the claim renewed while it runs.
async fn work(f: Arc<Feishu>, job: crate::store::feishu_recordings::Recording, cancel: CancellationToken) {
    let ttl = f.config.recordings.claim_ttl;
    let renew = {
        let (f, job) = (f.clone(), job.clone());
        async move {
            loop {
                tokio::time::sleep(ttl / 3).await;
                match f.store.renew_recording_claim(&job, ttl).await {
                    Ok(true) => {}
                    Ok(false) => return,
                    Err(e) => tracing::warn!(meeting = %job.meeting_id, "renewing a recording claim: {e}"),
                }
            }
        }
    };
    let outcome = tokio::select! {
        o = job::attempt(&f, &job) => o,
        _ = renew => job::Outcome::ClaimLost,
        _ = cancel.cancelled() => {
            // Released as it was, due at once (for whichever instance runs next).
            let state = if job.state == RecordingState::Downloading || job.bytes_done > 0 {
                RecordingState::Downloading
            } else {
                job.state
            };
            let state = if state.is_final() { RecordingState::Pending } else { state };
            let _ = f.store.release_recording(&job, state, Duration::ZERO, false, false, 0, "stopped").await;
            return;
        }
    };
    job::settle(&f, &job, outcome).await;
}
