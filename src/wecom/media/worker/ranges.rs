//! Parallel ranges for one large file (issue #16): media at a distance.
//!
//! One page loop waits a full round trip per 512 KiB page, so at 40 ms it cannot
//! pass about 12 MiB/s whatever the bandwidth. The SDK's index is a plain
//! `Range:bytes=a-b` (PROTOCOL.md §5.3), so any aligned page can be asked for at
//! any time: a file of at least [`MediaOptions::parallel_min_bytes`] is cut into
//! ranges of [`MediaOptions::range_bytes`], and several *streams* fetch different
//! ranges at once, each page written in place (`pwrite`) into the `.part` file.
//!
//! - **One SDK instance per stream.** RUST-NOTES.md §5 proves one handle shared by
//!   8 threads only for GetChatData, and 16 separate handles working at the same
//!   instant; concurrent GetMediaData on one handle was never measured, and the
//!   handle's token cache is a plain member. A handle costs 0.2 µs to make
//!   (NewSdk + Init, no I/O) and one gettoken on first use, so every extra stream
//!   gets its own [`Fetcher`] (thread + `Sdk`), closed when the file is done.
//! - **Durable ranges.** Pages of a batch are written, the file is fsynced once,
//!   then the ranges' progress (`media_ranges.done_to`, 0014) is recorded in one
//!   transaction conditioned on the claim: the database never claims bytes the disk
//!   lacks, and a restart fetches nothing recorded — a finished range never again,
//!   a range in flight from its last durable page.
//! - **Verification.** Ranges finish out of order, so the md5 is computed once at
//!   the end, streaming over the whole file (page cache, no second download); a
//!   mismatch discards the whole file, as for the single loop.
//! - **Adaptive streams.** A download starts with two streams and, after each
//!   [`MediaOptions::adapt_window`], adds half as many again while the measured
//!   throughput grew by more than [`GROWTH`]; once a window shows no gain it stops
//!   growing. Every stream holds a permit of the corp
//!   ([`MediaOptions::streams_per_corp`]) and of the process
//!   ([`MediaOptions::streams_max`]); extra streams are only started when permits
//!   are free, so parallel ranges never exceed either limit.
//! - **Errors.** A transient error (10001–10003) puts its range back with a
//!   growing wait while the other streams go on; after
//!   [`MediaOptions::chunk_retries`] in a row on one range, or any other error,
//!   the attempt stops with that error and the job is settled as the single
//!   loop's would be. Stopping is orderly: no range is handed out any more, every
//!   stream ends after its call in progress, and the pages that still arrive are
//!   written and recorded, so the next attempt — in this process or after a
//!   restart — fetches nothing that was already received. A range that never
//!   succeeds ends the job `failed` at [`MediaOptions::max_attempts`] with the
//!   SDK's code; its finished ranges stay recorded for `media retry`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::super::download::{CHUNK, Fetcher, PartError, PartFile, RangeEvent, RangeEventKind};
use super::super::queue::Job;
use super::super::stats::MediaStats;
use super::super::verify::Mismatch;
use super::super::{ErrorClass, MediaOptions, classify};
use super::{CorpRun, MAX_BATCH, Stop, StreamPermit, blocking, still_ours};
use crate::store::media_jobs::MediaRange;
use crate::wecom::sdk::SdkError;

/// A window must beat the best one by this factor for the streams to grow again.
pub(super) const GROWTH: f64 = 1.10;

/// Streams a parallel download starts with.
const INITIAL_STREAMS: usize = 2;

/// Length of the AES-128-ECB ciphertext of a `size`-byte file: PKCS#7 always pads
/// (1..=16 bytes), so this is the `total` of the server's `CONTENT-RANGE`.
pub(super) fn cipher_len(size: u64) -> u64 {
    (size / 16 + 1) * 16
}

/// One range of a parallel download, in ciphertext offsets (which equal file
/// offsets: only the last page carries padding).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Unit {
    /// Its first byte (the row key in `media_ranges`).
    pub start: u64,
    /// One past its last byte.
    pub end: u64,
    /// Durable up to here.
    pub done: u64,
    /// The next page to ask for (≥ `done`: pages received but not yet durable).
    pub next: u64,
    /// The stream working on it.
    pub stream: Option<usize>,
    /// Errors in a row.
    pub failures: u32,
    /// Not to be asked for again before this (after an error).
    pub not_before: Option<Instant>,
}

impl Unit {
    fn new(start: u64, end: u64, done: u64) -> Unit {
        Unit { start, end, done, next: done, stream: None, failures: 0, not_before: None }
    }

    fn finished(&self) -> bool {
        self.done >= self.end
    }
}

/// Whether recorded ranges can be trusted for a ciphertext of `total` bytes:
/// page-aligned, inside the file, not overlapping, progress within each range.
fn rows_valid(rows: &[MediaRange], total: u64) -> bool {
    let mut prev_end = 0;
    for r in rows {
        let aligned = |x: u64| x.is_multiple_of(CHUNK) || x == total;
        if !(r.start.is_multiple_of(CHUNK) && aligned(r.end) && aligned(r.done))
            || r.start < prev_end
            || r.start >= r.end
            || r.end > total
            || !(r.start..=r.end).contains(&r.done)
        {
            return false;
        }
        prev_end = r.end;
    }
    true
}

/// How long the `.part` file must be for `rows` to be true: the end of the last
/// recorded plaintext byte. A range that holds only the padding page (a file of
/// whole pages) is finished with no byte written, so it asks for nothing; counting
/// it as `size` made a file whose second-to-last range was unfinished look
/// truncated, and every finished range was fetched again.
pub(super) fn durable_len(rows: &[MediaRange], size: u64) -> u64 {
    rows.iter().filter(|r| r.done.min(size) > r.start).map(|r| r.done.min(size)).max().unwrap_or(0)
}

/// The ranges of a `size`-byte file: the recorded ones (sorted by start) as they
/// are, every gap between them cut at multiples of `range_bytes`.
pub(super) fn plan(size: u64, range_bytes: u64, rows: &[MediaRange]) -> Vec<Unit> {
    let total = cipher_len(size);
    let rows = if rows_valid(rows, total) { rows } else { &[] };
    let mut units = Vec::new();
    let gap = |from: u64, to: u64, units: &mut Vec<Unit>| {
        let mut at = from;
        while at < to {
            let end = ((at / range_bytes + 1) * range_bytes).min(to);
            units.push(Unit::new(at, end, at));
            at = end;
        }
    };
    let mut cursor = 0;
    for r in rows {
        gap(cursor, r.start, &mut units);
        units.push(Unit::new(r.start, r.end, r.done));
        cursor = r.end;
    }
    gap(cursor, total, &mut units);
    units
}

/// Checks a page against the stated size: every page but the last is a full
/// 512 KiB and not final, the last is final and ends the file exactly.
pub(super) fn check_page(size: u64, offset: u64, len: u64, is_finish: bool) -> Result<(), Mismatch> {
    let last = offset + CHUNK >= cipher_len(size);
    let want = if last { size - offset } else { CHUNK };
    if is_finish == last && len == want {
        return Ok(());
    }
    // The server's file is not the stated size: ended early, or goes on.
    let got = if is_finish { offset + len } else { (offset + len).max(size + 1) };
    Err(Mismatch::Size { expected: size, got })
}

/// Decides when a download gets more streams: while throughput grows.
#[derive(Debug)]
pub(super) struct Adapt {
    target: usize,
    cap: usize,
    best: f64,
    growing: bool,
    window: Duration,
    since: Instant,
    bytes: u64,
}

impl Adapt {
    pub(super) fn new(cap: usize, window: Duration, now: Instant) -> Adapt {
        let cap = cap.max(1);
        Adapt {
            target: INITIAL_STREAMS.min(cap),
            cap,
            best: 0.0,
            growing: true,
            window,
            since: now,
            bytes: 0,
        }
    }

    /// Streams wanted now.
    pub(super) fn target(&self) -> usize {
        self.target
    }

    /// Counts `bytes` made durable at `now` with `active` streams running. At the
    /// end of a window with every wanted stream running, grows the target if the
    /// window beat the best so far by [`GROWTH`], else stops growing for good.
    pub(super) fn observe(&mut self, now: Instant, bytes: u64, active: usize) {
        self.bytes += bytes;
        let elapsed = now.saturating_duration_since(self.since);
        if elapsed < self.window {
            return;
        }
        let rate = self.bytes as f64 / elapsed.as_secs_f64();
        if self.growing && active >= self.target {
            if rate > self.best * GROWTH {
                self.best = rate;
                self.target = (self.target + (self.target / 2).max(1)).min(self.cap);
            } else {
                self.growing = false;
            }
        }
        self.best = self.best.max(rate);
        self.since = now;
        self.bytes = 0;
    }
}

/// A stream of this download: its fetcher (stream 0 is the worker's own) and the
/// range it works on.
struct Stream {
    fetcher: Option<(Fetcher, StreamPermit)>,
    unit: Option<usize>,
}

/// A page received, to be written.
struct Page {
    unit: usize,
    offset: u64,
    data: Vec<u8>,
    next: u64,
}

/// How one batch of events ends the attempt, if it does.
enum Verdict {
    Go,
    Fail(SdkError),
    Mismatch(Mismatch),
    Gone,
}

/// The wait before retrying a range after `failures` errors in a row.
fn retry_delay(opts: &MediaOptions, failures: u32) -> Duration {
    opts.retry_base.saturating_mul(1 << failures.saturating_sub(1).min(16)).min(opts.retry_cap)
}

impl CorpRun {
    /// Fetches a job's file as parallel ranges into `part` (opened with
    /// [`PartFile::open_ranged`]), then hashes it. `Ok(Err(..))`: the server's pages
    /// disagree with the stated size (a verification failure, like a wrong md5).
    pub(super) async fn fetch_ranges(
        &self,
        fetcher: &Fetcher,
        job: &Job,
        mut part: PartFile,
        cancel: &CancellationToken,
    ) -> Result<Result<PartFile, (PartFile, Mismatch)>, Stop> {
        let opts = &self.ctx.opts;
        let size = job.size.unwrap_or(0);
        let total = cipher_len(size);
        let mut rows = self.ctx.store.media_ranges(job.id).await.map_err(Stop::Store)?;
        let disk = part
            .disk_len()
            .map_err(|source| Stop::Part(PartError::Io { path: part.path().into(), source }))?;
        // Rows whose bytes the file lacks (it was replaced or removed): start over.
        if !rows.is_empty() && disk < durable_len(&rows, size) {
            tracing::warn!(corp = %self.corpid, job = job.id, "the .part file lacks recorded ranges; fetching it again");
            self.ctx.store.clear_media_ranges(job.id).await.map_err(Stop::Store)?;
            rows.clear();
        }
        let mut units = plan(size, opts.range_bytes, &rows);
        let kept: u64 = units.iter().map(|u| u.done - u.start).sum();
        if kept > 0 {
            tracing::info!(corp = %self.corpid, msgid = %job.msgid, item = job.item_index, bytes = kept, ranges = units.iter().filter(|u| u.finished()).count(), "resuming a media download by ranges");
        }
        MediaStats::add(&self.ctx.stats.ranged_files, 1);
        MediaStats::add(&self.ctx.stats.ranges_reused, units.iter().filter(|u| u.finished()).count() as u64);
        let writer =
            part.writer().map_err(|source| Stop::Part(PartError::Io { path: part.path().into(), source }))?;
        let writer = Arc::new(writer);
        let cap = opts.streams_per_corp.min(opts.streams_max).max(1);
        // Room for every stream's page in hand plus one each in the channel.
        let (tx, mut rx) = mpsc::channel::<RangeEvent>(2 * cap);
        let mut streams = vec![Stream { fetcher: None, unit: None }];
        let mut adapt = Adapt::new(cap, opts.adapt_window, Instant::now());
        // Set once an error ends the attempt: streams stop after their call in progress.
        let stop = Arc::new(AtomicBool::new(false));
        let mut stopping: Option<SdkError> = None;
        let result = 'run: loop {
            let now = Instant::now();
            if stopping.is_some() && streams.iter().all(|s| s.unit.is_none()) {
                break Err(Stop::Sdk(stopping.take().expect("checked")));
            }
            if units.iter().all(Unit::finished) {
                break Ok(None);
            }
            // More streams while the controller wants them, ranges wait and permits are free.
            let waiting = units.iter().filter(|u| !u.finished() && u.stream.is_none()).count();
            while stopping.is_none()
                && streams.len() < adapt.target()
                && waiting > streams.iter().filter(|s| s.unit.is_none()).count()
            {
                let Some(permit) = self.try_stream_permit() else { break };
                let name = format!("media-{}-r{}", self.corpid, streams.len());
                match Fetcher::spawn(self.ctx.lib, self.corpid.as_str(), &self.secret, name) {
                    Ok(f) => streams.push(Stream { fetcher: Some((f, permit)), unit: None }),
                    Err(e) => break 'run Err(Stop::Sdk(e)),
                }
            }
            let peak = streams.len() as u64;
            self.ctx.stats.streams_peak.fetch_max(peak, std::sync::atomic::Ordering::Relaxed);
            // Idle streams take the next due ranges, in file order.
            for (n, stream) in streams.iter_mut().enumerate() {
                if stream.unit.is_some() || stopping.is_some() {
                    continue;
                }
                let due = units.iter().position(|u| {
                    !u.finished() && u.stream.is_none() && u.not_before.is_none_or(|t| t <= now)
                });
                let Some(i) = due else { break };
                let u = &mut units[i];
                u.stream = Some(n);
                u.not_before = None;
                stream.unit = Some(i);
                let f = stream.fetcher.as_ref().map_or(fetcher, |(f, _)| f);
                f.fetch_range(&job.sdkfileid, u.next, u.end, total, &self.net, n, tx.clone(), stop.clone());
            }
            let wake = units
                .iter()
                .filter(|u| u.stream.is_none() && stopping.is_none())
                .filter_map(|u| u.not_before)
                .min();
            let first = tokio::select! {
                biased;
                _ = cancel.cancelled() => break Err(Stop::Cancelled),
                e = rx.recv() => e,
                _ = async {
                    match wake {
                        Some(t) => tokio::time::sleep_until(t.into()).await,
                        None => std::future::pending().await,
                    }
                } => continue,
            };
            // `tx` is held here, so the channel never closes.
            let Some(first) = first else { break Err(Stop::FetcherGone) };
            let mut events = vec![first];
            while events.len() < MAX_BATCH * 2 {
                match rx.try_recv() {
                    Ok(e) => events.push(e),
                    Err(_) => break,
                }
            }
            let mut pages = Vec::new();
            let mut verdict = Verdict::Go;
            for ev in events {
                let Some(i) = streams.get(ev.stream).and_then(|s| s.unit) else { continue };
                match ev.kind {
                    RangeEventKind::Chunk(chunk) => {
                        let u = &mut units[i];
                        if ev.offset != u.next {
                            // Cannot happen (one fetcher walks a range in order); never write out of place.
                            verdict = Verdict::Gone;
                            continue;
                        }
                        if let Err(m) = check_page(size, ev.offset, chunk.data.len() as u64, chunk.is_finish)
                        {
                            verdict = Verdict::Mismatch(m);
                            continue;
                        }
                        u.next = (ev.offset + CHUNK).min(u.end);
                        // A success ends a run of errors here, in stream order: reset
                        // when the batch is written, it would also forget an error
                        // that came after this page in the same batch.
                        u.failures = 0;
                        pages.push(Page { unit: i, offset: ev.offset, data: chunk.data, next: u.next });
                    }
                    RangeEventKind::Failed(e) => {
                        self.ctx.stats.record_error(self.corpid.as_str(), e.raw_code());
                        let u = &mut units[i];
                        u.failures += 1;
                        if classify(&e) != ErrorClass::Transient || u.failures > opts.chunk_retries {
                            if stopping.is_none() {
                                verdict = Verdict::Fail(e);
                            }
                            continue;
                        }
                        MediaStats::add(&self.ctx.stats.retries, 1);
                        tracing::debug!(corp = %self.corpid, msgid = %job.msgid, range = u.start, "GetMediaData failed ({e}); retrying the range");
                        u.not_before = Some(Instant::now() + retry_delay(opts, u.failures));
                    }
                    RangeEventKind::End => {
                        streams[ev.stream].unit = None;
                        let u = &mut units[i];
                        u.stream = None;
                        if stopping.is_none() && u.next < u.end && u.not_before.is_none() && u.failures == 0 {
                            // The stream stopped without an error and without being told
                            // to: a final page came early (caught by check_page) or the
                            // fetch thread died.
                            if matches!(verdict, Verdict::Go) {
                                verdict = Verdict::Gone;
                            }
                        }
                    }
                }
            }
            if !pages.is_empty() {
                let w = writer.clone();
                let path = part.path().to_owned();
                let written: u64 = pages.iter().map(|p| p.data.len() as u64).sum();
                let n = pages.len();
                let pages = blocking(move || {
                    for p in &pages {
                        std::os::unix::fs::FileExt::write_all_at(&*w, &p.data, p.offset)?;
                    }
                    w.sync_data()?;
                    Ok(pages)
                })
                .await
                .map_err(|source| Stop::Part(PartError::Io { path, source }));
                let pages = match pages {
                    Ok(p) => p,
                    Err(e) => break Err(e),
                };
                let mut touched = Vec::new();
                for p in &pages {
                    let u = &mut units[p.unit];
                    u.done = u.done.max(p.next);
                    if !touched.contains(&p.unit) {
                        touched.push(p.unit);
                    }
                }
                let rows: Vec<MediaRange> = touched
                    .iter()
                    .map(|&i| MediaRange { start: units[i].start, end: units[i].end, done: units[i].done })
                    .collect();
                let finished = rows.iter().filter(|r| r.is_finished()).count() as u64;
                // The job's bytes_done (what `status` and the admin UI show) counts the
                // durable plaintext bytes of every range; the single loop ignores it
                // without an index, so a ranged job never resumes from it.
                let durable: u64 = units.iter().map(|u| u.done.min(size) - u.start.min(size)).sum();
                let recorded = self
                    .ctx
                    .store
                    .record_media_ranges(
                        job.id,
                        job.claim_token,
                        self.queue.claim_ttl_micros(),
                        n as u32,
                        durable,
                        &rows,
                    )
                    .await;
                if let Err(stop) = still_ours(recorded) {
                    break Err(stop);
                }
                MediaStats::add(&self.ctx.stats.ranges_done, finished);
                for counter in [&self.ctx.stats.bytes, &self.bytes] {
                    MediaStats::add(counter, written);
                }
                for counter in [&self.ctx.stats.chunks, &self.chunks] {
                    MediaStats::add(counter, n as u64);
                }
                adapt.observe(Instant::now(), written, streams.len());
            }
            match verdict {
                Verdict::Go => {}
                Verdict::Fail(e) => {
                    // Let the pages in flight land before the job is given back.
                    stop.store(true, Ordering::Relaxed);
                    stopping = Some(e);
                }
                Verdict::Mismatch(m) => break Ok(Some(m)),
                Verdict::Gone => break Err(Stop::FetcherGone),
            }
        };
        // Stop the extra streams (each after its call in progress) and destroy their SDKs.
        drop(rx);
        drop(tx);
        for s in streams {
            if let Some((f, _permit)) = s.fetcher {
                f.close().await;
            }
        }
        drop(writer);
        let mismatch: Option<Mismatch> = result?;
        if let Some(m) = mismatch {
            return Ok(Err((part, m)));
        }
        let path = part.path().to_owned();
        let part = blocking(move || part.rehash(size).map(|()| part))
            .await
            .map_err(|source| Stop::Part(PartError::Io { path, source }))?;
        Ok(Ok(part))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn a_fresh_plan_cuts_the_ciphertext_into_aligned_ranges() {
        let size = 10 * MIB + 5;
        let units = plan(size, 4 * MIB, &[]);
        let total = cipher_len(size);
        assert_eq!(total, 10 * MIB + 16);
        let bounds: Vec<(u64, u64)> = units.iter().map(|u| (u.start, u.end)).collect();
        assert_eq!(bounds, vec![(0, 4 * MIB), (4 * MIB, 8 * MIB), (8 * MIB, total)]);
        assert!(units.iter().all(|u| u.done == u.start && u.next == u.start));
        // A file of exactly n pages still has its padding page to fetch.
        assert_eq!(plan(CHUNK, 4 * MIB, &[]).last().unwrap().end, CHUNK + 16);
    }

    #[test]
    fn recorded_ranges_are_kept_and_only_the_gaps_are_planned() {
        let size = 12 * MIB;
        let total = cipher_len(size);
        let rows = [
            MediaRange { start: 0, end: 4 * MIB, done: 4 * MIB },
            MediaRange { start: 8 * MIB, end: 12 * MIB, done: 9 * MIB },
        ];
        let units = plan(size, 4 * MIB, &rows);
        let got: Vec<(u64, u64, u64)> = units.iter().map(|u| (u.start, u.end, u.done)).collect();
        assert_eq!(
            got,
            vec![
                (0, 4 * MIB, 4 * MIB),
                (4 * MIB, 8 * MIB, 4 * MIB),
                (8 * MIB, 12 * MIB, 9 * MIB),
                (12 * MIB, total, 12 * MIB),
            ]
        );
        assert!(units[0].finished() && !units[2].finished());
        // A different range size later: the recorded ranges still stand.
        let units = plan(size, MIB, &rows);
        assert_eq!(units.iter().filter(|u| u.finished()).count(), 1);
        assert_eq!(units.iter().map(|u| u.end - u.start).sum::<u64>(), total);
    }

    #[test]
    fn rows_that_make_no_sense_are_ignored() {
        let size = 8 * MIB;
        let bad = [
            [MediaRange { start: 1, end: 4 * MIB, done: 4 * MIB }],
            [MediaRange { start: 0, end: 4 * MIB, done: 5 * MIB }],
            [MediaRange { start: 0, end: 20 * MIB, done: 0 }],
            [MediaRange { start: 0, end: 4 * MIB, done: 1000 }],
        ];
        for rows in bad {
            assert!(plan(size, 4 * MIB, &rows).iter().all(|u| u.done == u.start), "{rows:?}");
        }
        let overlapping = [
            MediaRange { start: 0, end: 4 * MIB, done: 4 * MIB },
            MediaRange { start: 2 * MIB, end: 6 * MIB, done: 6 * MIB },
        ];
        assert!(plan(size, 4 * MIB, &overlapping).iter().all(|u| u.done == u.start));
    }

    #[test]
    fn a_finished_padding_range_asks_for_no_bytes_on_disk() {
        // 16 MiB of whole pages: the last range is the 16-byte padding page alone.
        let size = 16 * MIB;
        let total = cipher_len(size);
        let rows = [
            MediaRange { start: 12 * MIB, end: 14 * MIB, done: 12 * MIB + CHUNK },
            MediaRange { start: 14 * MIB, end: 16 * MIB, done: 15 * MIB },
            MediaRange { start: 16 * MIB, end: total, done: total },
        ];
        assert_eq!(durable_len(&rows, size), 15 * MIB);
        // A finished last range with data in it does reach the end of the file.
        let size = 16 * MIB + 100;
        let rows = [MediaRange { start: 16 * MIB, end: cipher_len(size), done: cipher_len(size) }];
        assert_eq!(durable_len(&rows, size), size);
        assert_eq!(durable_len(&[MediaRange { start: 0, end: 4 * MIB, done: 0 }], size), 0);
        assert_eq!(durable_len(&[], size), 0);
    }

    #[test]
    fn pages_must_agree_with_the_stated_size() {
        let size = 2 * CHUNK + 100;
        assert_eq!(check_page(size, 0, CHUNK, false), Ok(()));
        assert_eq!(check_page(size, 2 * CHUNK, 100, true), Ok(()));
        assert!(check_page(size, CHUNK, CHUNK, true).is_err(), "final too early");
        assert!(check_page(size, CHUNK, 10, false).is_err(), "short page");
        assert!(check_page(size, 2 * CHUNK, 100, false).is_err(), "goes on past the end");
        assert!(check_page(size, 2 * CHUNK, 99, true).is_err());
        // Exactly two pages: the third is the padding page, with no plaintext.
        assert_eq!(check_page(2 * CHUNK, CHUNK, CHUNK, false), Ok(()));
        assert_eq!(check_page(2 * CHUNK, 2 * CHUNK, 0, true), Ok(()));
    }

    #[test]
    fn streams_grow_only_while_throughput_grows() {
        let t0 = Instant::now();
        let w = Duration::from_millis(100);
        let mut a = Adapt::new(8, w, t0);
        assert_eq!(a.target(), 2);
        // Within a window: nothing decided.
        a.observe(t0 + Duration::from_millis(50), 1000, 2);
        assert_eq!(a.target(), 2);
        a.observe(t0 + w, 1000, 2); // 20 kB/s: first window always grows
        assert_eq!(a.target(), 3);
        // Not all wanted streams running yet: no judgement.
        a.observe(t0 + 2 * w, 100, 2);
        assert_eq!(a.target(), 3);
        a.observe(t0 + 3 * w, 4000, 3); // 40 kB/s: grew
        assert_eq!(a.target(), 4);
        a.observe(t0 + 4 * w, 6000, 4);
        assert_eq!(a.target(), 6);
        a.observe(t0 + 5 * w, 6100, 6); // flat: stop growing, for good
        assert_eq!(a.target(), 6);
        a.observe(t0 + 6 * w, 60_000, 6);
        assert_eq!(a.target(), 6);
        // The cap holds.
        let mut b = Adapt::new(3, w, t0);
        for i in 1..10 {
            b.observe(t0 + w * i, 1000 * u64::from(i) * u64::from(i), 3);
        }
        assert_eq!(b.target(), 3);
        assert_eq!(Adapt::new(1, w, t0).target(), 1);
    }
}
