//! One corp's media queue as its workers see it: a handle that claims as this
//! instance, with this claim lifetime, over the store's `media_jobs` API.
//!
//! The SQL, the claim rules and the derivation of the message's media columns
//! live in [`crate::store::media_jobs`] ([`claim`](crate::store::media_jobs::claim),
//! [`settle`](crate::store::media_jobs::settle)); the types are re-exported here.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::store::alarms::AlarmKind;
use crate::store::media_jobs::{clip, micros};
use crate::store::{CorpId, Store, StoreError};

pub use crate::store::media_jobs::{CODE_CORRUPT, Job, JobState, MessageMedia, Terminal, message_media};

/// One corp's queue, as seen by the workers of one process.
#[derive(Clone, Debug)]
pub struct Queue {
    store: Store,
    corpid: CorpId,
    owner: String,
    claim_ttl: Duration,
}

impl Queue {
    /// The queue of `corpid`; claims are made as `owner` (the instance name) and
    /// last `claim_ttl` after each write.
    pub fn new(store: Store, corpid: CorpId, owner: String, claim_ttl: Duration) -> Queue {
        Queue { store, corpid, owner, claim_ttl }
    }

    /// The corp.
    pub fn corpid(&self) -> &CorpId {
        &self.corpid
    }

    /// How long a claim lasts after each write.
    pub fn claim_ttl(&self) -> Duration {
        self.claim_ttl
    }

    /// The claim lifetime in microseconds, for SQL intervals.
    pub fn claim_ttl_micros(&self) -> u64 {
        micros(self.claim_ttl)
    }

    /// Puts this instance's own `downloading` jobs back in the queue: at start, no
    /// worker of ours can still hold them (a crash or a kill left them behind).
    pub async fn reclaim_own(&self) -> Result<u64, StoreError> {
        self.store.reclaim_own_media_jobs(&self.corpid, &self.owner).await
    }

    /// Claims the next due job, if any.
    pub async fn claim(&self) -> Result<Option<Job>, StoreError> {
        self.store.claim_media_job(&self.corpid, &self.owner, self.claim_ttl).await
    }

    /// Records durable progress (the `.part` file is fsynced up to `bytes_done`) and
    /// renews the claim. False when the claim was lost: stop working on the job.
    pub async fn progress(
        &self,
        job: &Job,
        next_index: &str,
        bytes_done: u64,
        chunks: u32,
    ) -> Result<bool, StoreError> {
        self.store.record_media_progress(job, self.claim_ttl, next_index, bytes_done, chunks).await
    }

    /// Starts the job over from zero after a verification failure (the `.part` file
    /// is already emptied). False when the claim was lost.
    pub async fn restart(&self, job: &Job, verify_failures: u32, error: &str) -> Result<bool, StoreError> {
        self.store.restart_media_job(job, self.claim_ttl, verify_failures, error).await
    }

    /// Gives the job back to the queue, due again after `delay`; `failed_attempt`
    /// counts it against the job's bound. Progress is kept.
    pub async fn release(
        &self,
        job: &Job,
        delay: Duration,
        failed_attempt: bool,
        code: i32,
        error: &str,
    ) -> Result<bool, StoreError> {
        self.store.release_media_job(&self.corpid, job, delay, failed_attempt, code, error).await
    }

    /// Settles the job and its message in one transaction. `path` is the file
    /// relative to the media root (stored outcomes only). False when the claim
    /// was lost.
    pub async fn finish(
        &self,
        job: &Job,
        how: Terminal,
        path: &str,
        bytes: u64,
        code: i32,
        error: &str,
    ) -> Result<bool, StoreError> {
        self.store.finish_media_job(&self.corpid, job, how, path, bytes, code, error).await
    }

    /// The corp's IP is refused: parks this job and every pending one as `paused`.
    /// Returns how many jobs are paused now.
    pub async fn pause_all(&self, job: &Job, code: i32, error: &str) -> Result<u64, StoreError> {
        self.store.pause_media_jobs(&self.corpid, job, code, error).await
    }

    /// Puts paused jobs back in the queue (after the pause window: a probe).
    pub async fn resume_paused(&self) -> Result<u64, StoreError> {
        self.store.resume_paused_media_jobs(&self.corpid).await
    }

    /// Whether work remains that is not claimable yet: None when nothing is pending
    /// or downloading, else how long until the earliest of it may become claimable.
    pub async fn outstanding(&self) -> Result<Option<Duration>, StoreError> {
        self.store.media_outstanding(&self.corpid).await
    }

    /// Jobs by state.
    pub async fn counts(&self) -> Result<BTreeMap<String, u64>, StoreError> {
        self.store.media_job_counts(&self.corpid).await
    }

    /// Records the voice transcode outcome.
    pub async fn set_transcode(&self, id: u64, state: &str, mp3_path: &str) -> Result<(), StoreError> {
        self.store.set_media_transcode(id, state, mp3_path).await
    }

    /// Stored voice files never transcoded (a crash between the two steps).
    pub async fn untranscoded(&self, limit: u32) -> Result<Vec<(u64, String)>, StoreError> {
        self.store.untranscoded_media(&self.corpid, limit).await
    }

    /// Raises the corp's media alarm (its text starts with `media:`).
    pub async fn raise_alarm(&self, text: &str) -> Result<(), StoreError> {
        self.store.raise_alarm(&self.corpid, AlarmKind::Media, &clip(&format!("media: {text}"))).await
    }

    /// Clears the corp's media alarm (its other alarms stay).
    pub async fn clear_alarm(&self) -> Result<(), StoreError> {
        self.store.clear_alarm(&self.corpid, AlarmKind::Media).await
    }
}

/// Jobs by state for every corp: `corpid → state → count`.
pub async fn backlog(store: &Store) -> Result<BTreeMap<String, BTreeMap<String, u64>>, StoreError> {
    store.media_backlog().await
}

/// `media retry`: puts jobs in `states` (of one corp, or all) back in the queue with
/// fresh retry bounds, keeping their progress, and updates their messages.
/// Returns how many jobs were requeued.
pub async fn requeue(store: &Store, corp: Option<&CorpId>, states: &[JobState]) -> Result<u64, StoreError> {
    store.requeue_media_jobs(corp, states).await
}
