//! A corp's media workers: claim → download → verify → place → settle, with
//! retries, the IP pause and the voice transcode.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::download::{Fetcher, PartError, PartFile};
use super::layout::{ExtHints, ItemPaths, extension};
use super::queue::{CODE_CORRUPT, Job, Queue, Terminal};
use super::stats::MediaStats;
use super::transcode::TranscodeState;
use super::verify::{Expected, Mismatch, Verification, declared_type_matches};
use super::{ErrorClass, MediaContext, MediaError, MediaReport, classify};
use crate::backoff::Backoff;
use crate::store::{CorpId, StoreError};
use crate::wecom::ingest::CorpSpec;
use crate::wecom::media_refs::MediaKind;
use crate::wecom::sdk::{MediaChunk, NetOptions, SdkError};

mod ranges;

/// Most chunks written (and fsynced) together when the writer falls behind.
const MAX_BATCH: usize = 8;

/// How long a drain waits at most between looks at jobs it cannot claim yet.
const DRAIN_POLL: Duration = Duration::from_millis(200);

/// How often a long-running corp refreshes its job counts for metrics.
const COUNTS_EVERY: Duration = Duration::from_secs(5);

/// Stop or keep polling when the queue is empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Drain,
    Follow,
}

/// Why one attempt at a job stopped.
#[derive(Debug)]
enum Stop {
    /// A GetMediaData error (transient ones only after the in-claim retries).
    Sdk(SdkError),
    /// Every download mismatched its stated size or md5.
    Corrupt(Mismatch, u32),
    /// The `.part` file could not be used.
    Part(PartError),
    /// Another worker took the job over.
    LostClaim,
    /// Shutting down.
    Cancelled,
    /// The database failed mid-job (the claim expires and the job is taken up again).
    Store(StoreError),
    /// The fetch thread is gone.
    FetcherGone,
    /// The download does not converge: the index did not advance, or the file
    /// grew past its stated size (issue #9). Retrying would loop again.
    Runaway(String),
}

/// `media_code` (and `last_error_code`) of a download stopped as a runaway.
pub const CODE_RUNAWAY: i32 = -2;

/// Bytes a download may exceed its stated size by before it is stopped (the
/// size check after the last chunk then says exactly by how much it is off).
const SIZE_SLACK: u64 = 1 << 20;

/// The start offset of an SDK index buffer (`Range:bytes=a-b`); "" is the
/// first chunk, offset 0.
fn index_start(index: &str) -> Option<u64> {
    if index.is_empty() {
        return Some(0);
    }
    index.strip_prefix("Range:bytes=")?.split('-').next()?.trim().parse().ok()
}

/// Checks that a batch of chunks read from `index` moves forward and stays
/// within the limit: the stated size plus a small slack, or `max_unsized`
/// (`--media-max-unsized-mib`) for items that state none (meeting voice calls,
/// some emotions), so a looping download cannot fill the disk. The reason
/// otherwise.
fn check_progress(
    index: &str,
    chunks: &[MediaChunk],
    have: u64,
    size: Option<u64>,
    max_unsized: u64,
) -> Result<(), String> {
    let limit = size.map_or(max_unsized, |s| s.saturating_add(SIZE_SLACK));
    let mut prev = index_start(index).ok_or_else(|| format!("unreadable media index {index:?}"))?;
    let mut total = have;
    for c in chunks {
        total += c.data.len() as u64;
        if total > limit {
            return Err(match size {
                Some(s) => format!("download grew to {total} bytes, past the stated size {s}; stopped"),
                None => format!("download grew past {limit} bytes with no stated size; stopped"),
            });
        }
        if c.is_finish {
            break;
        }
        let next = index_start(&c.next_index)
            .ok_or_else(|| format!("the SDK returned an unreadable media index {:?}", c.next_index))?;
        if next <= prev {
            return Err(format!(
                "media index did not advance ({:?} after offset {prev}): the server's CONTENT-RANGE is malformed; stopped",
                c.next_index
            ));
        }
        prev = next;
    }
    Ok(())
}

/// One corp's media run: the queue, its SDK settings and the shared pause.
struct CorpRun {
    ctx: MediaContext,
    queue: Queue,
    corpid: CorpId,
    secret: String,
    net: NetOptions,
    /// Set after 10009: no claims until then.
    paused_until: Mutex<Option<Instant>>,
    /// Whether this corp may carry a media alarm we should clear on success.
    alarm_maybe_set: AtomicBool,
    files: AtomicU64,
    bytes: AtomicU64,
    chunks: AtomicU64,
    /// Permits for this corp's GetMediaData calls in flight
    /// ([`super::MediaOptions::streams_per_corp`]): every worker holds one while
    /// it has a job, every extra range stream one more.
    streams: Arc<Semaphore>,
}

/// One GetMediaData stream's right to run: a permit of its corp and one of the
/// process.
struct StreamPermit {
    _corp: OwnedSemaphorePermit,
    _global: OwnedSemaphorePermit,
}

/// Runs `f` on the blocking pool (file I/O), re-raising its panic.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

/// A write conditioned on the claim: Ok when it went through.
fn still_ours(written: Result<bool, StoreError>) -> Result<(), Stop> {
    match written {
        Ok(true) => Ok(()),
        Ok(false) => Err(Stop::LostClaim),
        Err(e) => Err(Stop::Store(e)),
    }
}

/// Sleeps unless cancelled first; true when cancelled.
async fn sleep_or_cancel(d: Duration, cancel: &CancellationToken) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = cancel.cancelled() => true,
    }
}

impl CorpRun {
    async fn new(ctx: &MediaContext, corp: &CorpSpec) -> Result<Arc<CorpRun>, MediaError> {
        let store_err = |source| MediaError::Store { corpid: corp.corpid.to_string(), source };
        // The message table is updated with each job; it exists once messages do,
        // but a queue may outlive a dropped table.
        ctx.store.ensure_message_table(&corp.corpid).await.map_err(store_err)?;
        // A claim outlives the slowest chunk: GetMediaData takes up to 2 × timeout.
        let claim_ttl = corp.net.timeout * 2 + ctx.opts.claim_margin;
        let queue = Queue::new(ctx.store.clone(), corp.corpid.clone(), ctx.opts.instance.clone(), claim_ttl);
        let reclaimed = queue.reclaim_own().await.map_err(store_err)?;
        if reclaimed > 0 {
            tracing::info!(corp = %corp.corpid, jobs = reclaimed, "resuming media downloads this instance left unfinished");
        }
        Ok(Arc::new(CorpRun {
            ctx: ctx.clone(),
            queue,
            corpid: corp.corpid.clone(),
            secret: corp.secret.clone(),
            net: corp.net.clone(),
            paused_until: Mutex::new(None),
            alarm_maybe_set: AtomicBool::new(true),
            files: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            chunks: AtomicU64::new(0),
            streams: Arc::new(Semaphore::new(ctx.opts.streams_per_corp.max(1))),
        }))
    }

    fn store_err(&self, source: StoreError) -> MediaError {
        MediaError::Store { corpid: self.corpid.to_string(), source }
    }

    /// Waits for a stream permit (corp, then process); None when cancelled first.
    async fn stream_permit(&self, cancel: &CancellationToken) -> Option<StreamPermit> {
        let acquire = async {
            let corp = self.streams.clone().acquire_owned().await.ok()?;
            let global = self.ctx.streams.clone().acquire_owned().await.ok()?;
            Some(StreamPermit { _corp: corp, _global: global })
        };
        tokio::select! {
            p = acquire => p,
            _ = cancel.cancelled() => None,
        }
    }

    /// A stream permit if one is free now (for one more range stream).
    fn try_stream_permit(&self) -> Option<StreamPermit> {
        let corp = self.streams.clone().try_acquire_owned().ok()?;
        let global = self.ctx.streams.clone().try_acquire_owned().ok()?;
        Some(StreamPermit { _corp: corp, _global: global })
    }

    fn paused_until(&self) -> Option<Instant> {
        *self.paused_until.lock().unwrap()
    }

    /// After the pause window: requeue the paused jobs (a probe; a new 10009 pauses again).
    async fn resume_after_pause(&self) {
        {
            let mut p = self.paused_until.lock().unwrap();
            match *p {
                Some(t) if t <= Instant::now() => *p = None,
                _ => return,
            }
        }
        match self.queue.resume_paused().await {
            Ok(n) => tracing::info!(corp = %self.corpid, jobs = n, "media pause over: trying again"),
            Err(e) => tracing::warn!(corp = %self.corpid, "resuming paused media: {e}"),
        }
    }

    async fn refresh_counts(&self) {
        match self.queue.counts().await {
            Ok(c) => self.ctx.stats.set_jobs(self.corpid.as_str(), &c),
            Err(e) => tracing::debug!(corp = %self.corpid, "counting media jobs: {e}"),
        }
    }

    /// One worker: its own SDK instance, claiming jobs until the queue is empty
    /// (drain) or until cancelled (follow).
    async fn worker(
        self: Arc<Self>,
        n: usize,
        mode: Mode,
        cancel: CancellationToken,
    ) -> Result<(), MediaError> {
        let fetcher = Fetcher::spawn(
            self.ctx.lib,
            self.corpid.as_str(),
            &self.secret,
            format!("media-{}-{n}", self.corpid),
        )
        .map_err(|source| MediaError::Sdk { corpid: self.corpid.to_string(), source })?;
        let result = self.work(&fetcher, n, mode, &cancel).await;
        fetcher.close().await;
        result
    }

    async fn work(
        &self,
        fetcher: &Fetcher,
        n: usize,
        mode: Mode,
        cancel: &CancellationToken,
    ) -> Result<(), MediaError> {
        let mut db = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
        let mut counted = Instant::now();
        while !cancel.is_cancelled() {
            if let Some(until) = self.paused_until() {
                if mode == Mode::Drain {
                    return Ok(());
                }
                if sleep_or_cancel(until.saturating_duration_since(Instant::now()), cancel).await {
                    break;
                }
                self.resume_after_pause().await;
                continue;
            }
            if n == 0 && mode == Mode::Follow && counted.elapsed() >= COUNTS_EVERY {
                self.refresh_counts().await;
                counted = Instant::now();
            }
            // The worker's own stream: taken before a claim, so a job never waits
            // for a permit while its claim runs out.
            let Some(permit) = self.stream_permit(cancel).await else { break };
            let claimed = self.queue.claim().await;
            let wait = match claimed {
                Ok(Some(job)) => {
                    db.reset();
                    let result = self.download(fetcher, &job, cancel).await;
                    drop(permit);
                    self.settle(job, result, mode).await?;
                    continue;
                }
                Ok(None) if mode == Mode::Drain => match self.queue.outstanding().await {
                    Ok(None) => return Ok(()),
                    Ok(Some(due)) => due.clamp(Duration::from_millis(10), DRAIN_POLL),
                    Err(e) => self.db_failed(&mut db, mode, e)?,
                },
                Ok(None) => {
                    if n == 0 {
                        self.transcode_backlog().await;
                    }
                    self.ctx.opts.poll
                }
                Err(e) => self.db_failed(&mut db, mode, e)?,
            };
            drop(permit);
            if sleep_or_cancel(wait, cancel).await {
                break;
            }
        }
        Ok(())
    }

    /// A database failure between jobs: wait and retry (a drain gives up after a while).
    fn db_failed(&self, db: &mut Backoff, mode: Mode, e: StoreError) -> Result<Duration, MediaError> {
        let delay = db.next_delay();
        tracing::warn!(corp = %self.corpid, failures = db.failures(), "media queue: {e}; retrying in {delay:?}");
        if mode == Mode::Drain && db.failures() > 12 {
            return Err(self.store_err(e));
        }
        Ok(delay)
    }

    /// Downloads, verifies and places one job's file; returns its path relative to
    /// the root and its size.
    async fn download(
        &self,
        fetcher: &Fetcher,
        job: &Job,
        cancel: &CancellationToken,
    ) -> Result<(String, u64, Verification), Stop> {
        let opts = &self.ctx.opts;
        let paths = ItemPaths::new(&self.corpid, job.msgtime, &job.msgid, job.item_index);
        let part_path = opts.root.join(paths.part());
        // Large files come as parallel ranges (issue #16), unless a download by the
        // single loop is already under way (its progress is an index, not ranges).
        let ranged = match job.size {
            Some(size) => size >= opts.parallel_min_bytes && job.next_index.is_empty(),
            None => false,
        };
        let mut part = if ranged {
            let rows = self.ctx.store.media_ranges(job.id).await.map_err(Stop::Store)?;
            let open_path = part_path.clone();
            blocking(move || PartFile::open_ranged(&open_path, !rows.is_empty())).await.map_err(Stop::Part)?
        } else {
            // Durable progress needs its index; without one, start over.
            let keep = if job.next_index.is_empty() { 0 } else { job.bytes_done };
            let open_path = part_path.clone();
            blocking(move || PartFile::open(&open_path, keep)).await.map_err(Stop::Part)?
        };
        let mut index = if !ranged && !part.is_empty() { job.next_index.clone() } else { String::new() };
        if !ranged && !part.is_empty() {
            tracing::info!(corp = %self.corpid, msgid = %job.msgid, item = job.item_index, bytes = part.len(), "resuming media download");
        }
        let expected = Expected::new(job.size, &job.md5sum);
        let mut verify_failures = job.verify_failures;
        let verification = loop {
            let fetched = if ranged {
                self.fetch_ranges(fetcher, job, part, cancel).await?
            } else {
                Ok(self.fetch_all(fetcher, job, part, index, cancel).await?)
            };
            let (p, checked) = match fetched {
                Ok(p) => {
                    let checked = p.verify(&expected).and_then(|_| {
                        if expected.md5.is_some() {
                            return Ok(Verification::Md5);
                        }
                        // Nothing to prove the bytes by: at least the declared type.
                        match p.head(16).ok().and_then(|h| declared_type_matches(job.kind, &h)) {
                            Some(false) => Err(Mismatch::Magic { kind: job.kind.as_str() }),
                            _ => Ok(Verification::Unverified),
                        }
                    });
                    (p, checked)
                }
                Err((p, m)) => (p, Err(m)),
            };
            part = p;
            let mismatch = match checked {
                Ok(v) => break v,
                Err(m) => m,
            };
            verify_failures += 1;
            MediaStats::add(&self.ctx.stats.verify_failures, 1);
            tracing::warn!(corp = %self.corpid, msgid = %job.msgid, item = job.item_index, tries = verify_failures, "downloaded media does not match its message: {mismatch}");
            if ranged {
                // Forgotten before the file is emptied: no row may claim bytes the
                // file does not have.
                self.ctx.store.clear_media_ranges(job.id).await.map_err(Stop::Store)?;
            }
            if verify_failures >= opts.max_verify_failures {
                let _ = blocking(move || part.discard()).await;
                return Err(Stop::Corrupt(mismatch, verify_failures));
            }
            part = blocking(move || part.restart().map(|()| part))
                .await
                .map_err(|source| Stop::Part(PartError::Io { path: part_path.clone(), source }))?;
            still_ours(self.queue.restart(job, verify_failures, &mismatch.to_string()).await)?;
            index = String::new();
        };
        // Verified: name it (images by their bytes) and move it into place.
        let (root, job2) = (opts.root.clone(), job.clone());
        let bytes = part.len();
        let placed = blocking(move || {
            let head = part.head(16)?;
            let ext = extension(&ExtHints {
                kind: job2.kind,
                fileext: &job2.fileext,
                filename: &job2.filename,
                emotion_type: job2.emotion_type,
                head: &head,
            });
            let rel = paths.file(&ext);
            part.persist(&root.join(&rel))?;
            Ok(rel.to_string_lossy().into_owned())
        })
        .await
        .map(|rel| (rel, bytes, verification))
        .map_err(|source| Stop::Part(PartError::Io { path: part_path, source }))?;
        if ranged && let Err(e) = self.ctx.store.clear_media_ranges(job.id).await {
            // Harmless: a later download of the job opens a new, empty .part, and
            // rows whose bytes the file lacks are dropped then (fetch_ranges).
            tracing::debug!(corp = %self.corpid, job = job.id, "forgetting the ranges of a placed file: {e}");
        }
        Ok(placed)
    }

    /// Streams the file from `index` until its last chunk is on disk. Every batch is
    /// fsynced before its progress is recorded; transient errors are retried here,
    /// from the last durable index, with backoff.
    async fn fetch_all(
        &self,
        fetcher: &Fetcher,
        job: &Job,
        mut part: PartFile,
        mut index: String,
        cancel: &CancellationToken,
    ) -> Result<PartFile, Stop> {
        let opts = &self.ctx.opts;
        let mut backoff = Backoff::new(opts.retry_base, opts.retry_cap);
        loop {
            let mut rx = fetcher.stream(&job.sdkfileid, &index, &self.net);
            let error = loop {
                let first = tokio::select! {
                    biased;
                    _ = cancel.cancelled() => return Err(Stop::Cancelled),
                    item = rx.recv() => item,
                };
                // Take whatever else is ready, so a writer that fell behind catches up
                // with one fsync and one database write.
                let mut items = vec![first];
                while items.len() < MAX_BATCH && matches!(items.last(), Some(Some(Ok(c))) if !c.is_finish) {
                    match rx.try_recv() {
                        Ok(item) => items.push(Some(item)),
                        Err(_) => break,
                    }
                }
                let mut chunks = Vec::with_capacity(items.len());
                let mut end = None;
                for item in items {
                    match item {
                        Some(Ok(c)) => chunks.push(c),
                        Some(Err(e)) => end = Some(Some(e)),
                        None => end = Some(None),
                    }
                }
                if let Some(last) = chunks.last() {
                    if let Err(why) =
                        check_progress(&index, &chunks, part.len(), job.size, opts.max_unsized_bytes)
                    {
                        let _ = blocking(move || part.discard()).await;
                        return Err(Stop::Runaway(why));
                    }
                    let finished = last.is_finish;
                    let next = last.next_index.clone();
                    let n = chunks.len();
                    let before = part.len();
                    let path = part.path().to_owned();
                    part = blocking(move || {
                        for c in &chunks {
                            part.append(&c.data)?;
                        }
                        part.sync()?;
                        Ok(part)
                    })
                    .await
                    .map_err(|source| Stop::Part(PartError::Io { path, source }))?;
                    let written = part.len() - before;
                    for counter in [&self.ctx.stats.bytes, &self.bytes] {
                        MediaStats::add(counter, written);
                    }
                    for counter in [&self.ctx.stats.chunks, &self.chunks] {
                        MediaStats::add(counter, n as u64);
                    }
                    backoff.reset();
                    if finished {
                        return Ok(part);
                    }
                    index = next;
                    still_ours(self.queue.progress(job, &index, part.len(), n as u32).await)?;
                }
                if let Some(end) = end {
                    break end;
                }
            };
            let Some(error) = error else { return Err(Stop::FetcherGone) };
            self.ctx.stats.record_error(self.corpid.as_str(), error.raw_code());
            if classify(&error) != ErrorClass::Transient || backoff.failures() >= opts.chunk_retries {
                return Err(Stop::Sdk(error));
            }
            let delay = backoff.next_delay();
            MediaStats::add(&self.ctx.stats.retries, 1);
            tracing::debug!(corp = %self.corpid, msgid = %job.msgid, "GetMediaData failed ({error}); retrying in {delay:?}");
            if sleep_or_cancel(delay, cancel).await {
                return Err(Stop::Cancelled);
            }
        }
    }

    /// Records how the attempt ended. Errors only for what stops the worker.
    async fn settle(
        &self,
        job: Job,
        result: Result<(String, u64, Verification), Stop>,
        mode: Mode,
    ) -> Result<(), MediaError> {
        let q = &self.queue;
        let outcome = match result {
            Ok((path, bytes, verification)) => {
                // Recorded before the job is stored, under this claim, so no
                // stored job ever lacks it.
                let recorded = self
                    .ctx
                    .store
                    .set_media_verification(job.id, job.claim_token, verification.as_str())
                    .await;
                let how = match verification {
                    Verification::Md5 => Terminal::Done,
                    Verification::Unverified => Terminal::Unverified,
                };
                let placed = match recorded {
                    Ok(_) => q.finish(&job, how, &path, bytes, 0, "").await,
                    Err(e) => Err(e),
                };
                if matches!(placed, Ok(true)) {
                    if verification == Verification::Unverified {
                        tracing::info!(corp = %self.corpid, msgid = %job.msgid, item = job.item_index, "media stored unverified: the message states no md5");
                    }
                    for counter in [&self.ctx.stats.files, &self.files] {
                        MediaStats::add(counter, 1);
                    }
                    if self.alarm_maybe_set.swap(false, Ordering::Relaxed)
                        && let Err(e) = q.clear_alarm().await
                    {
                        tracing::warn!(corp = %self.corpid, "clearing the media alarm: {e}");
                    }
                    if job.kind == MediaKind::Voice {
                        self.transcode(job.id, &path).await;
                    }
                }
                placed
            }
            Err(Stop::Sdk(e)) => {
                let (code, text) = (e.raw_code(), e.to_string());
                match classify(&e) {
                    ErrorClass::Expired => {
                        tracing::info!(corp = %self.corpid, msgid = %job.msgid, item = job.item_index, "media expired: {e}");
                        q.finish(&job, Terminal::Expired, "", 0, code, &text).await
                    }
                    ErrorClass::IpBlocked => return self.pause(&job, code, &text).await,
                    ErrorClass::Transient | ErrorClass::Other => self.failed_attempt(&job, code, &text).await,
                }
            }
            Err(Stop::Corrupt(m, verify_failures)) => {
                tracing::warn!(corp = %self.corpid, msgid = %job.msgid, item = job.item_index, "media corrupt after {verify_failures} downloads: {m}");
                q.finish(&job, Terminal::Corrupt { verify_failures }, "", 0, CODE_CORRUPT, &m.to_string())
                    .await
            }
            Err(Stop::Part(e @ PartError::Busy { .. })) => {
                // A stalled worker still holds the file: give the job back for later;
                // that worker stops at its next write (its claim is gone).
                tracing::info!(corp = %self.corpid, "{e}; trying later");
                q.release(&job, Duration::from_secs(10), false, 0, &e.to_string()).await
            }
            Err(Stop::Part(e)) => {
                tracing::error!(corp = %self.corpid, "media file error: {e}");
                let _ = q.release(&job, self.ctx.opts.requeue_base, false, 0, &e.to_string()).await;
                if mode == Mode::Drain {
                    return Err(MediaError::Disk { corpid: self.corpid.to_string(), source: e });
                }
                Ok(true)
            }
            Err(Stop::Runaway(why)) => {
                tracing::error!(corp = %self.corpid, msgid = %job.msgid, item = job.item_index, "media download stopped: {why}");
                q.finish(&job, Terminal::Failed, "", 0, CODE_RUNAWAY, &why).await
            }
            Err(Stop::Cancelled) => {
                q.release(&job, Duration::ZERO, false, 0, "interrupted by shutdown").await
            }
            Err(Stop::LostClaim) => Ok(false),
            Err(Stop::Store(e)) => Err(e),
            Err(Stop::FetcherGone) => {
                let _ = q.release(&job, Duration::ZERO, false, 0, "fetch thread stopped").await;
                return Err(MediaError::FetcherGone { corpid: self.corpid.to_string() });
            }
        };
        match outcome {
            Ok(true) => {}
            Ok(false) => {
                tracing::info!(corp = %self.corpid, job = job.id, "another worker took this media job over")
            }
            // The claim expires and the job is taken up again (by this instance at its next start).
            Err(e) => tracing::warn!(corp = %self.corpid, job = job.id, "recording a media job: {e}"),
        }
        Ok(())
    }

    /// A failed attempt: due again later with a growing wait, or `failed` at the bound.
    async fn failed_attempt(&self, job: &Job, code: i32, text: &str) -> Result<bool, StoreError> {
        let opts = &self.ctx.opts;
        let attempts = job.attempts + 1;
        if attempts >= opts.max_attempts {
            tracing::warn!(corp = %self.corpid, msgid = %job.msgid, item = job.item_index, attempts, "media failed: {text}");
            return self.queue.finish(job, Terminal::Failed, "", 0, code, text).await;
        }
        let delay = opts.requeue_base.saturating_mul(1 << (attempts - 1).min(16)).min(opts.requeue_cap);
        tracing::info!(corp = %self.corpid, msgid = %job.msgid, attempts, "media attempt failed ({text}); again in {delay:?}");
        self.queue.release(job, delay, true, code, text).await
    }

    /// 10009: this host may not fetch the corp's media. Alarm, pause every pending
    /// job, and stop claiming until the pause window is over.
    async fn pause(&self, job: &Job, code: i32, text: &str) -> Result<(), MediaError> {
        let window = self.ctx.opts.ip_pause;
        *self.paused_until.lock().unwrap() = Some(Instant::now() + window);
        self.alarm_maybe_set.store(true, Ordering::Relaxed);
        let paused = self.queue.pause_all(job, code, text).await.map_err(|e| self.store_err(e))?;
        let alarm = format!(
            "GetMediaData refused this host's IP ({text}; server errcode 301042): {paused} media job(s) paused, \
             next try in {}s; add the IP to the archive's trusted IPs, then `wework-archive media retry --status paused`",
            window.as_secs()
        );
        tracing::error!(corp = %self.corpid, "ALARM: {alarm}");
        self.queue.raise_alarm(&alarm).await.map_err(|e| self.store_err(e))
    }

    /// Voice: AMR → MP3 beside it; records the outcome.
    async fn transcode(&self, id: u64, rel: &str) {
        let t = &self.ctx.transcoder;
        let (state, mp3) = if !t.available().await {
            (TranscodeState::Unavailable, String::new())
        } else {
            let rel_mp3 = Path::new(rel).with_extension("mp3");
            let root = &self.ctx.opts.root;
            match t.to_mp3(&root.join(rel), &root.join(&rel_mp3)).await {
                Ok(()) => {
                    MediaStats::add(&self.ctx.stats.transcoded, 1);
                    (TranscodeState::Done, rel_mp3.to_string_lossy().into_owned())
                }
                Err(e) => {
                    MediaStats::add(&self.ctx.stats.transcode_failures, 1);
                    tracing::warn!(corp = %self.corpid, file = rel, "voice transcode failed: {e}");
                    (TranscodeState::Failed, String::new())
                }
            }
        };
        if let Err(e) = self.queue.set_transcode(id, state.as_str(), &mp3).await {
            tracing::warn!(corp = %self.corpid, "recording a transcode: {e}");
        }
    }

    /// Voice files left done but not transcoded (a stop between the two steps).
    async fn transcode_backlog(&self) {
        match self.queue.untranscoded(20).await {
            Ok(rows) => {
                for (id, path) in rows {
                    self.transcode(id, &path).await;
                }
            }
            Err(e) => tracing::debug!(corp = %self.corpid, "listing untranscoded voice: {e}"),
        }
    }

    /// Runs the workers until they all stop; the first error cancels the others.
    async fn run_workers(self: &Arc<Self>, mode: Mode, cancel: &CancellationToken) -> Result<(), MediaError> {
        let stop = cancel.child_token();
        let mut set = JoinSet::new();
        for n in 0..self.ctx.opts.concurrency {
            set.spawn(self.clone().worker(n, mode, stop.clone()));
        }
        let mut first_error = None;
        while let Some(joined) = set.join_next().await {
            let result = joined.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
            if let Err(e) = result {
                stop.cancel();
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

pub(super) async fn drain(
    ctx: &MediaContext,
    corp: &CorpSpec,
    cancel: CancellationToken,
) -> Result<MediaReport, MediaError> {
    let started = Instant::now();
    let run = CorpRun::new(ctx, corp).await?;
    run.run_workers(Mode::Drain, &cancel).await?;
    let by_state = run.queue.counts().await.map_err(|e| run.store_err(e))?;
    ctx.stats.set_jobs(corp.corpid.as_str(), &by_state);
    Ok(MediaReport {
        corpid: corp.corpid.to_string(),
        files: run.files.load(Ordering::Relaxed),
        bytes: run.bytes.load(Ordering::Relaxed),
        chunks: run.chunks.load(Ordering::Relaxed),
        by_state,
        elapsed: started.elapsed(),
    })
}

pub(super) async fn follow(ctx: MediaContext, corp: CorpSpec, cancel: CancellationToken) {
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
    while !cancel.is_cancelled() {
        let result = async {
            let run = CorpRun::new(&ctx, &corp).await?;
            // Jobs paused by an earlier process get a probe now rather than waiting
            // for an operator.
            if let Err(e) = run.queue.resume_paused().await {
                tracing::warn!(corp = %corp.corpid, "resuming paused media: {e}");
            }
            run.run_workers(Mode::Follow, &cancel).await
        }
        .await;
        match result {
            Ok(()) => backoff.reset(),
            Err(e) => {
                let delay = backoff.next_delay();
                tracing::error!(corp = %corp.corpid, "media workers stopped, restarting in {delay:?}: {e}");
                if sleep_or_cancel(delay, &cancel).await {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(len: usize, next: &str, finish: bool) -> MediaChunk {
        MediaChunk { data: vec![0; len], next_index: next.to_owned(), is_finish: finish }
    }

    #[test]
    fn a_non_advancing_index_or_runaway_size_stops_the_download() {
        const MAX: u64 = 4 << 30;
        let ok = [chunk(524288, "Range:bytes=524288-1048575", false), chunk(10, "", true)];
        assert_eq!(check_progress("", &ok, 0, Some(524298), MAX), Ok(()));
        let stuck = [chunk(524288, "Range:bytes=0-524287", false)];
        assert!(check_progress("", &stuck, 0, Some(2 << 20), MAX).unwrap_err().contains("did not advance"));
        let again = [chunk(100, "Range:bytes=524288-1048575", false)];
        assert!(check_progress("Range:bytes=524288-1048575", &again, 524288, None, MAX).is_err());
        let big = [chunk(524288, "Range:bytes=524288-1048575", false)];
        assert!(check_progress("", &big, 0, Some(1000), MAX).is_ok(), "within the slack");
        assert!(
            check_progress("", &big, SIZE_SLACK, Some(1000), MAX)
                .unwrap_err()
                .contains("past the stated size")
        );
        assert!(check_progress("", &big, MAX, None, MAX).unwrap_err().contains("no stated size"));
        assert!(check_progress("", &big, 0, None, MAX).is_ok());
        // The limit for unsized items is the configured one (--media-max-unsized-mib).
        assert!(check_progress("", &big, 0, None, 1 << 19).is_ok(), "exactly at the limit");
        assert!(check_progress("", &big, 1, None, 1 << 19).unwrap_err().contains("no stated size"));
        assert!(check_progress("garbage", &ok, 0, None, MAX).is_err());
    }
}
