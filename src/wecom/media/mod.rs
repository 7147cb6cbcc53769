//! Media: every file of every archived message, resumable, verified, transcoded.
//!
//! ```text
//!  media_jobs (one row per item, created with its message)
//!      │ claim (conditional UPDATE, token)                      queue
//!      ▼
//!  worker ×media_concurrency per corp ── Fetcher thread (own Sdk): GetMediaData chunk loop   download
//!      │  chunks (≤ 2 ahead)                   index "" → Range:bytes=0-524287 → … → is_finish
//!      ▼
//!  .part file: append + md5 + fsync ──▶ progress (next_index, bytes_done) in the database  download, queue
//!      (large files: parallel ranges, each stream its own Sdk, pwrite in place,
//!       durable ranges in media_ranges, md5 of the whole file at the end)           worker/ranges
//!      │ finish: size + md5 check (verify), fsync, rename into <corpid>/<yyyymm>/<msgid>[_n].<ext>  verify, layout
//!      ▼
//!  job done + message status in one transaction; voice → MP3 with ffmpeg                   queue, transcode
//! ```
//!
//! Durability rule: the `.part` data is fsynced before its progress is recorded, so
//! the database never claims bytes the disk does not have; a resume cuts the file to
//! the recorded length and continues from the recorded index (the index *is* a byte
//! range, FORMAT.md §1.4), so finished chunks are never fetched again.
//!
//! Errors (PROTOCOL.md §5.3, FORMAT.md §1.5): 10010 (server 301048) ends a job as
//! `expired`; 10009 (301042, IP not allowed) raises the corp's alarm and pauses its
//! media (`paused`) until a probe after [`MediaOptions::ip_pause`] succeeds;
//! 10001–10003 are retried with backoff; anything else is retried a bounded number
//! of times, then `failed` with the code in `last_code`. A download whose size or
//! md5 differs is discarded and fetched again from zero, up to
//! [`MediaOptions::max_verify_failures`] times, then `corrupt`.
//!
//! Entry points: [`drain_corp`] (one-shot: until the queue is empty) and
//! [`run_corp_media`] (long-running, beside the corp's puller).

pub mod download;
pub mod layout;
pub mod queue;
mod stats;
pub mod transcode;
pub mod verify;
mod worker;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

pub use queue::{JobState, backlog, requeue};
pub use stats::MediaStats;

use crate::config::Config;
use crate::store::{Store, StoreError};
use crate::wecom::ingest::CorpSpec;
use crate::wecom::sdk::{ErrorCode, Library, SdkError};
use download::PartError;
use transcode::Transcoder;

/// Errors that stop a corp's media workers (one job's failure never does: it is
/// recorded on the job).
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// The queue could not be read or written.
    #[error("corp {corpid}: media queue: {source}")]
    Store {
        /// The corp.
        corpid: String,
        /// The database error.
        source: StoreError,
    },
    /// An SDK instance could not be created.
    #[error("corp {corpid}: creating an SDK instance for media: {source}")]
    Sdk {
        /// The corp.
        corpid: String,
        /// Why.
        source: SdkError,
    },
    /// The media root is not writable (disk full, permissions…).
    #[error("corp {corpid}: media files: {source}")]
    Disk {
        /// The corp.
        corpid: String,
        /// The file error.
        source: PartError,
    },
    /// A fetch thread ended unexpectedly.
    #[error("corp {corpid}: a media fetch thread stopped unexpectedly")]
    FetcherGone {
        /// The corp.
        corpid: String,
    },
}

/// What a GetMediaData error means for its job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// 10010 (server 301048): the media is gone for good.
    Expired,
    /// 10009 (server 301042): this host's IP is not allowed; a corp-wide condition.
    IpBlocked,
    /// 10001–10003: network, parse, system; retry with backoff.
    Transient,
    /// Anything else: a bounded number of retries.
    Other,
}

/// Classifies a GetMediaData error.
pub fn classify(e: &SdkError) -> ErrorClass {
    match e.code() {
        Some(ErrorCode::Expired) => ErrorClass::Expired,
        Some(ErrorCode::IllegalIp) => ErrorClass::IpBlocked,
        _ if e.is_transient() => ErrorClass::Transient,
        _ => ErrorClass::Other,
    }
}

/// Media settings: from [`Config`], with tunables tests may shorten.
#[derive(Debug, Clone)]
pub struct MediaOptions {
    /// The media root (`msgfile_dir`).
    pub root: PathBuf,
    /// This instance's name: claims are made in it.
    pub instance: String,
    /// Concurrent downloads (and SDK instances) per corp.
    pub concurrency: usize,
    /// The ffmpeg binary.
    pub ffmpeg: PathBuf,
    /// Largest file accepted for an item without a stated size.
    pub max_unsized_bytes: u64,
    /// Longest an ffmpeg run may take.
    pub transcode_timeout: Duration,
    /// How often an idle worker looks for new jobs.
    pub poll: Duration,
    /// How long a corp's media stays paused after 10009 before a probe.
    pub ip_pause: Duration,
    /// Added to twice the SDK timeout to make a claim's lifetime (renewed per chunk).
    pub claim_margin: Duration,
    /// First wait before retrying a chunk after a transient error.
    pub retry_base: Duration,
    /// Longest such wait.
    pub retry_cap: Duration,
    /// Transient errors in a row on one claim before the job is given back.
    pub chunk_retries: u32,
    /// Failed attempts (given back after errors) before a job is `failed`.
    pub max_attempts: u32,
    /// Wait before a given-back job is due again (doubles per failed attempt).
    pub requeue_base: Duration,
    /// Longest such wait.
    pub requeue_cap: Duration,
    /// Size/md5 mismatches before a job is `corrupt`.
    pub max_verify_failures: u32,
    /// GetMediaData calls in flight per corp, parallel ranges included (issue #16).
    pub streams_per_corp: usize,
    /// GetMediaData calls in flight in the process, all corps together.
    pub streams_max: usize,
    /// Stated size from which a file is fetched as parallel ranges.
    pub parallel_min_bytes: u64,
    /// Bytes per range (a multiple of the 512 KiB page).
    pub range_bytes: u64,
    /// How long the range streams of one file are measured before deciding whether
    /// one more stream made it faster.
    pub adapt_window: Duration,
}

impl MediaOptions {
    /// The production defaults for `config`.
    pub fn from_config(config: &Config) -> MediaOptions {
        MediaOptions {
            root: config.msgfile_dir.clone(),
            instance: config.instance.clone(),
            concurrency: config.media_concurrency.max(1),
            ffmpeg: config.ffmpeg.clone(),
            max_unsized_bytes: config.media_max_unsized_bytes,
            transcode_timeout: Duration::from_secs(120),
            poll: Duration::from_secs(1),
            ip_pause: Duration::from_secs(600),
            claim_margin: Duration::from_secs(60),
            retry_base: Duration::from_millis(500),
            retry_cap: Duration::from_secs(16),
            chunk_retries: 6,
            max_attempts: 5,
            requeue_base: Duration::from_secs(30),
            requeue_cap: Duration::from_secs(3600),
            max_verify_failures: 3,
            streams_per_corp: config.media_streams_per_corp.max(1),
            streams_max: config.media_streams_max.max(1),
            parallel_min_bytes: config.media_parallel_min_bytes,
            range_bytes: config.media_range_bytes.div_ceil(download::CHUNK).max(1) * download::CHUNK,
            adapt_window: Duration::from_millis(500),
        }
    }
}

/// What every corp's media workers share. Cheap to clone.
#[derive(Clone, Debug)]
pub struct MediaContext {
    /// The database.
    pub store: Store,
    /// The SDK.
    pub lib: &'static Library,
    /// Settings.
    pub opts: Arc<MediaOptions>,
    /// Counters (export them as metrics).
    pub stats: Arc<MediaStats>,
    transcoder: Arc<Transcoder>,
    /// Permits for GetMediaData calls in flight, all corps together
    /// ([`MediaOptions::streams_max`]).
    streams: Arc<tokio::sync::Semaphore>,
}

impl MediaContext {
    /// A context with fresh counters.
    pub fn new(store: Store, lib: &'static Library, opts: MediaOptions) -> MediaContext {
        let transcoder = Arc::new(Transcoder::new(opts.ffmpeg.clone(), opts.transcode_timeout));
        let streams = Arc::new(tokio::sync::Semaphore::new(opts.streams_max.max(1)));
        MediaContext { store, lib, opts: Arc::new(opts), stats: Arc::default(), transcoder, streams }
    }

    /// A context with the settings of `config`.
    pub fn from_config(store: Store, lib: &'static Library, config: &Config) -> MediaContext {
        MediaContext::new(store, lib, MediaOptions::from_config(config))
    }
}

/// What one [`drain_corp`] did, and the queue it left.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MediaReport {
    /// The corp.
    pub corpid: String,
    /// Files verified and placed by this run.
    pub files: u64,
    /// Bytes written by this run.
    pub bytes: u64,
    /// Chunks received by this run.
    pub chunks: u64,
    /// The corp's jobs by state at the end.
    pub by_state: BTreeMap<String, u64>,
    /// How long it took.
    pub elapsed: Duration,
}

impl MediaReport {
    /// Jobs in `state`.
    pub fn count(&self, state: JobState) -> u64 {
        self.by_state.get(state.as_str()).copied().unwrap_or(0)
    }

    /// Jobs that ended without a file (failed, expired, corrupt) or wait for an
    /// operator (paused): what `media retry` is for.
    pub fn unfinished(&self) -> u64 {
        JobState::RETRYABLE.iter().map(|s| self.count(*s)).sum()
    }
}

/// Downloads the corp's queue until it is empty: every job done or settled as
/// failed/expired/corrupt, or paused for an IP alarm (then it returns at once).
/// Waits for retries that are due later, and for jobs other processes hold.
pub async fn drain_corp(
    ctx: &MediaContext,
    corp: &CorpSpec,
    cancel: CancellationToken,
) -> Result<MediaReport, MediaError> {
    worker::drain(ctx, corp, cancel).await
}

/// Downloads the corp's media for as long as `cancel` is not cancelled, polling
/// for new jobs (every [`MediaOptions::poll`] when idle), resuming after IP pauses
/// and restarting its workers after failures. For `run`, beside `pull_corp`.
pub async fn run_corp_media(ctx: MediaContext, corp: CorpSpec, cancel: CancellationToken) {
    worker::follow(ctx, corp, cancel).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wecom::sdk::{Op, Refusal};

    #[test]
    fn errors_are_classified_as_the_protocol_says() {
        let code = |c| SdkError::Code { op: Op::GetMediaData, code: c };
        assert_eq!(classify(&code(ErrorCode::Expired)), ErrorClass::Expired);
        assert_eq!(classify(&code(ErrorCode::IllegalIp)), ErrorClass::IpBlocked);
        for c in [ErrorCode::Network, ErrorCode::DataParse, ErrorCode::System] {
            assert_eq!(classify(&code(c)), ErrorClass::Transient, "{c:?}");
        }
        for c in [ErrorCode::InvalidParam, ErrorCode::FileId, ErrorCode::Decrypt, ErrorCode::Certificate] {
            assert_eq!(classify(&code(c)), ErrorClass::Other, "{c:?}");
        }
        assert_eq!(classify(&SdkError::Undocumented { op: Op::GetMediaData, rc: 42 }), ErrorClass::Other);
        let refused = SdkError::Refused { op: Op::GetMediaData, reason: Refusal::Empty { arg: "sdkfileid" } };
        assert_eq!(classify(&refused), ErrorClass::Other);
    }

    #[test]
    fn report_counts() {
        let mut r = MediaReport::default();
        r.by_state.insert("done".into(), 5);
        r.by_state.insert("failed".into(), 1);
        r.by_state.insert("paused".into(), 2);
        assert_eq!(r.count(JobState::Done), 5);
        assert_eq!(r.count(JobState::Corrupt), 0);
        assert_eq!(r.unfinished(), 3);
    }
}
