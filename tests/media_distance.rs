//! Media at a distance (issue #16): large files as parallel ranges, against the
//! simulator with latency, through the real SDK, with the queue in real MariaDB.
//! Small files (8–24 MiB) and small latencies keep the wall time short; every
//! claim is checked against the simulator's own request counters.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use md5::{Digest, Md5};
use mysql_async::prelude::*;
use tokio_util::sync::CancellationToken;
use wework_archive::cli::corp::import_sim_manifest;
use wework_archive::config::Config;
use wework_archive::store::{CorpId, Store};
use wework_archive::wecom::ingest::{CorpSpec, RunOptions, pull_corp};
use wework_archive::wecom::media::queue::CODE_CORRUPT;
use wework_archive::wecom::media::{JobState, MediaContext, MediaOptions, MediaReport, drain_corp};
use wework_archive_sim::{MediaItem, Rotation, SimConfig, Simulator};

use crate::common::{TestDb, binary, ingest_context, sdk_lib, test_config};

const MIB: u64 = 1 << 20;
/// Bytes per GetMediaData page (PROTOCOL.md §5.3).
const CHUNK: u64 = 512 * 1024;

async fn start_sim(config: SimConfig) -> Simulator {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    Simulator::start(listener, config).await.unwrap()
}

/// A test's database, media root and its one corp, messages ingested.
struct Setup {
    db: TestDb,
    store: Store,
    config: Config,
    root: tempfile::TempDir,
    corpid: CorpId,
}

impl Setup {
    async fn new(tag: &str, sim: &Simulator) -> Setup {
        let (db, store) = TestDb::fresh(tag).await;
        let root = tempfile::tempdir().unwrap();
        let config = test_config(&db.url, root.path());
        let corps = import_sim_manifest(&store, &config, &sim.manifest()).await.unwrap();
        let corpid = corps[0].clone();
        let ctx = ingest_context(store.clone(), config.clone());
        let spec = spec(&store, &config, &corpid).await;
        pull_corp(&ctx, spec, RunOptions::until_caught_up(), CancellationToken::new()).await.unwrap();
        Setup { db, store, config, root, corpid }
    }

    /// Short waits; files from 8 MiB by ranges of 2 MiB.
    fn options(&self) -> MediaOptions {
        MediaOptions {
            poll: Duration::from_millis(100),
            retry_base: Duration::from_millis(20),
            retry_cap: Duration::from_millis(200),
            requeue_base: Duration::from_millis(100),
            requeue_cap: Duration::from_secs(1),
            parallel_min_bytes: 8 * MIB,
            range_bytes: 2 * MIB,
            adapt_window: Duration::from_millis(200),
            ..MediaOptions::from_config(&self.config)
        }
    }

    async fn drain(&self, opts: MediaOptions) -> (MediaContext, MediaReport) {
        let ctx = MediaContext::new(self.store.clone(), sdk_lib(), opts);
        let spec = spec(&self.store, &self.config, &self.corpid).await;
        let report = drain_corp(&ctx, &spec, CancellationToken::new()).await.unwrap();
        (ctx, report)
    }

    async fn cleanup(self) {
        let mut conn = self.store.conn().await.unwrap();
        conn.query_drop(format!("DROP DATABASE IF EXISTS `{}`", self.db.name)).await.unwrap();
        drop(conn);
        self.store.close().await;
    }
}

async fn spec(store: &Store, config: &Config, corpid: &CorpId) -> CorpSpec {
    let row = store.corp(corpid).await.unwrap().unwrap();
    CorpSpec::load(store, &row, &config.secrets).await.unwrap()
}

/// A job by sdkfileid: (id, state, path, attempts, verify_failures).
async fn job(store: &Store, sdkfileid: &str) -> (u64, String, String, u32, u32) {
    let mut conn = store.conn().await.unwrap();
    conn.exec_first(
        "SELECT id, state, path, attempts, verify_failures FROM media_jobs WHERE sdkfileid = ?",
        (sdkfileid,),
    )
    .await
    .unwrap()
    .unwrap()
}

/// Every job: (sdkfileid, state, verify_failures).
async fn jobs(store: &Store) -> Vec<(String, String, u32)> {
    let mut conn = store.conn().await.unwrap();
    conn.query("SELECT sdkfileid, state, verify_failures FROM media_jobs ORDER BY id").await.unwrap()
}

/// The recorded ranges of a job: (start, end, done).
async fn ranges(store: &Store, job_id: u64) -> Vec<(u64, u64, u64)> {
    let mut conn = store.conn().await.unwrap();
    conn.exec(
        "SELECT range_start, range_end, done_to FROM media_ranges WHERE job_id = ? ORDER BY range_start",
        (job_id,),
    )
    .await
    .unwrap()
}

fn md5_file(path: &Path) -> String {
    let mut f = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut h = Md5::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            return hex::encode(h.finalize());
        }
        h.update(&buf[..n]);
    }
}

fn big_video(sim: &Simulator) -> Arc<MediaItem> {
    sim.corpus().corps[0].media.iter().max_by_key(|m| m.size).unwrap().clone()
}

/// Page starts of a file and how often each was asked for.
fn page_counts(sim: &Simulator, item: &MediaItem) -> BTreeMap<u64, u64> {
    sim.stats().media_requests_for(&item.fileid).into_iter().collect()
}

fn pages_of(start: u64, end: u64) -> impl Iterator<Item = u64> {
    (start..end).step_by(CHUNK as usize)
}

fn media_pull(setup: &Setup, log: &Path) -> Command {
    let mut cmd = Command::new(binary());
    cmd.args(["media", "pull", "--corp", setup.corpid.as_str(), "--until-done"])
        .env("DATABASE_URL", &setup.db.url)
        .env("MSGFILE_DIR", setup.root.path())
        .env("WEWORK_SDK_LIB", sdk_lib().path())
        .env("WEWORK_INSTANCE", "media-distance-kill")
        .env("WEWORK_MEDIA_CONCURRENCY", "1")
        .env("WEWORK_MEDIA_STREAMS_PER_CORP", "4")
        .env("WEWORK_MEDIA_PARALLEL_MIN_MIB", "8")
        .env("WEWORK_MEDIA_RANGE_MIB", "2")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap());
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_with_ranges_in_flight_refetches_no_finished_range() {
    let sim = start_sim(SimConfig {
        seed: 161,
        corps: 1,
        messages: 32,
        big_video: Some(24 * MIB),
        rotation: Rotation::Never,
        latency: Duration::from_millis(40),
        ..Default::default()
    })
    .await;
    let setup = Setup::new("media_dist_kill", &sim).await;
    let video = big_video(&sim);
    assert_eq!(video.size, 24 * MIB);
    let log = setup.root.path().join("../media-distance-first.log");
    let mut child = media_pull(&setup, &log).spawn().unwrap();
    let total = (video.size / 16 + 1) * 16;
    // Ranges asked for (by the simulator's page counts) and not finished.
    let in_flight_of = |rows: &[(u64, u64, u64)], asked: &BTreeMap<u64, u64>| {
        (0..total)
            .step_by(2 * MIB as usize)
            .filter(|r| !rows.iter().any(|(s, e, d)| s == r && d >= e))
            .filter(|r| pages_of(*r, (*r + 2 * MIB).min(total)).any(|p| asked.contains_key(&p)))
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let job_id = loop {
        let (id, ..) = job(&setup.store, &video.sdkfileid).await;
        let rows = ranges(&setup.store, id).await;
        let finished = rows.iter().filter(|(_, e, d)| d >= e).count();
        let partial = rows.iter().filter(|(s, e, d)| d > s && d < e).count();
        // Kill only at a moment with two finished ranges and at least two asked
        // for but unfinished (between two ranges a stream has none in flight).
        if finished >= 2 && partial >= 1 && in_flight_of(&rows, &page_counts(&sim, &video)) >= 2 {
            break id;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "ended early: {}",
            std::fs::read_to_string(&log).unwrap()
        );
        assert!(Instant::now() < deadline, "no ranges: {rows:?} {}", std::fs::read_to_string(&log).unwrap());
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    child.kill().unwrap(); // SIGKILL: no cleanup of any kind
    child.wait().unwrap();

    let rows = ranges(&setup.store, job_id).await;
    // The job's bytes_done counts every durable byte of its ranges.
    let durable_bytes: u64 = rows.iter().map(|(s, _, d)| d.min(&video.size) - s.min(&video.size)).sum();
    let mut conn = setup.store.conn().await.unwrap();
    let bytes_done: Option<u64> =
        conn.exec_first("SELECT bytes_done FROM media_jobs WHERE id = ?", (job_id,)).await.unwrap();
    drop(conn);
    assert_eq!(bytes_done, Some(durable_bytes), "{rows:?}");
    let finished: Vec<(u64, u64)> =
        rows.iter().filter(|(_, e, d)| d >= e).map(|(s, e, _)| (*s, *e)).collect();
    let durable: BTreeSet<u64> = rows.iter().flat_map(|(s, _, d)| pages_of(*s, *d)).collect();
    let before = page_counts(&sim, &video);
    // Several ranges were in flight: asked for, not finished.
    let in_flight = in_flight_of(&rows, &before);
    assert!(in_flight >= 2, "ranges in flight at the kill: {in_flight} ({rows:?})");
    assert!(finished.len() >= 2, "{rows:?}");

    let log2 = setup.root.path().join("../media-distance-second.log");
    let status = media_pull(&setup, &log2).status().unwrap();
    assert!(status.success(), "{}", std::fs::read_to_string(&log2).unwrap());

    let after = page_counts(&sim, &video);
    for (s, e) in &finished {
        for p in pages_of(*s, *e) {
            assert_eq!(after.get(&p), Some(&1), "page {p} of the finished range {s}..{e} was fetched again");
        }
    }
    for p in &durable {
        assert_eq!(after.get(p), Some(&1), "durable page {p} was fetched again");
    }
    assert_eq!(after.len() as u64, total.div_ceil(CHUNK), "every page asked for");
    let (_, state, path, ..) = job(&setup.store, &video.sdkfileid).await;
    assert_eq!(state, "done");
    assert_eq!(md5_file(&setup.root.path().join(&path)), video.md5);
    assert!(ranges(&setup.store, job_id).await.is_empty(), "ranges are forgotten once the file is placed");
    assert!(jobs(&setup.store).await.iter().all(|(_, s, _)| s == "done" || s == "unverified"));
    let _ = std::fs::remove_file(&log);
    let _ = std::fs::remove_file(&log2);
    setup.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_ranges_stay_within_the_per_corp_stream_limit() {
    let sim = start_sim(SimConfig {
        seed: 164,
        corps: 1,
        messages: 32,
        big_video: Some(16 * MIB),
        rotation: Rotation::Never,
        latency: Duration::from_millis(20),
        ..Default::default()
    })
    .await;
    let setup = Setup::new("media_dist_limit", &sim).await;
    let video = big_video(&sim);
    let opts = MediaOptions { streams_per_corp: 3, concurrency: 2, range_bytes: MIB, ..setup.options() };
    let (ctx, report) = setup.drain(opts).await;
    assert_eq!(report.unfinished(), 0, "{report:?}");
    let peak = sim.stats().media_max_in_flight;
    assert!(peak <= 3, "at most 3 GetMediaData calls at once for the corp, saw {peak}");
    let streams = ctx.stats.streams_peak.load(std::sync::atomic::Ordering::Relaxed);
    assert!(streams >= 2, "the video used parallel streams ({streams})");
    let (_, state, path, ..) = job(&setup.store, &video.sdkfileid).await;
    assert_eq!(state, "done");
    assert_eq!(md5_file(&setup.root.path().join(&path)), video.md5);
    let counts = page_counts(&sim, &video);
    assert!(counts.values().all(|n| *n == 1), "a clean run asks for every page once: {counts:?}");
    setup.cleanup().await;
}

/// A job's attempts, last code and last error.
async fn job_error(store: &Store, sdkfileid: &str) -> (u32, i32, String) {
    let mut conn = store.conn().await.unwrap();
    conn.exec_first(
        "SELECT attempts, last_code, last_error FROM media_jobs WHERE sdkfileid = ?",
        (sdkfileid,),
    )
    .await
    .unwrap()
    .unwrap()
}

/// A 16 MiB video by 2 MiB ranges whose page at `failing` answers HTTP 500
/// `times` times; drained in one process with 2 errors in a row per range
/// allowed per attempt and 3 attempts per job.
async fn drain_with_a_failing_range(
    tag: &str,
    seed: u64,
    failing: u64,
    times: u64,
) -> (Simulator, Setup, MediaContext) {
    let sim = start_sim(SimConfig {
        seed,
        corps: 1,
        messages: 32,
        big_video: Some(16 * MIB),
        rotation: Rotation::Never,
        latency: Duration::from_millis(5),
        failing_media_offset: Some((failing, times)),
        ..Default::default()
    })
    .await;
    let setup = Setup::new(tag, &sim).await;
    let opts = MediaOptions { chunk_retries: 2, max_attempts: 3, ..setup.options() };
    let (ctx, report) = setup.drain(opts).await;
    // Settled: stored (done, or unverified where no md5 is stated), or failed at the attempt bound.
    let settled =
        report.count(JobState::Done) + report.count(JobState::Unverified) + report.count(JobState::Failed);
    assert_eq!(settled, report.by_state.values().sum::<u64>(), "{report:?}");
    (sim, setup, ctx)
}

/// No page of the video but `failing` was asked for twice, across all the
/// attempts of one process: no finished range, durable page or page in flight
/// at the give-back was fetched again. `every`: each page was asked for.
fn assert_no_page_fetched_twice(sim: &Simulator, video: &MediaItem, failing: u64, every: bool) {
    let counts = page_counts(sim, video);
    let total = (video.size / 16 + 1) * 16;
    for p in pages_of(0, total).filter(|p| *p != failing) {
        let n = counts.get(&p).copied().unwrap_or(0);
        assert!(n == 1 || (n == 0 && !every), "page {p} asked for {n} times: {counts:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_range_that_fails_repeatedly_is_resumed_without_refetching_finished_ranges() {
    // The page 12.5 MiB into the video (only it is that large) fails 4 times:
    // the first attempt gives the job back after 3 errors in a row on that
    // range, the second meets one more error, then gets it.
    let failing = 12 * MIB + CHUNK;
    let (sim, setup, ctx) = drain_with_a_failing_range("media_dist_flaky", 165, failing, 4).await;
    // The second attempt took over at least the six ranges before the failing one.
    let reused = ctx.stats.ranges_reused.load(std::sync::atomic::Ordering::Relaxed);
    assert!(reused >= 6, "finished ranges reused: {reused}");
    let video = big_video(&sim);
    let (_, state, path, attempts, _) = job(&setup.store, &video.sdkfileid).await;
    assert_eq!(state, "done");
    assert_eq!(attempts, 1, "one attempt given back");
    assert_eq!(md5_file(&setup.root.path().join(&path)), video.md5);
    assert_eq!(page_counts(&sim, &video).get(&failing), Some(&5), "4 errors, then served");
    assert_no_page_fetched_twice(&sim, &video, failing, true);
    assert!(jobs(&setup.store).await.iter().all(|(_, s, _)| s == "done" || s == "unverified"));
    setup.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_range_that_never_succeeds_ends_failed_and_keeps_its_finished_ranges() {
    let failing = 12 * MIB + CHUNK;
    let (sim, setup, _) = drain_with_a_failing_range("media_dist_dead", 166, failing, u64::MAX).await;
    let video = big_video(&sim);
    let (id, state, _, attempts, _) = job(&setup.store, &video.sdkfileid).await;
    assert_eq!((state.as_str(), attempts), ("failed", 3), "failed at the attempt bound");
    let (_, code, error) = job_error(&setup.store, &video.sdkfileid).await;
    assert_eq!(code, 10001, "the SDK's network error, as the server's 500 gives: {error}");
    assert!(!error.is_empty());
    // 3 attempts × 3 errors in a row each.
    assert_eq!(page_counts(&sim, &video).get(&failing), Some(&9));
    assert_no_page_fetched_twice(&sim, &video, failing, false);
    // The rest of the failing range was never asked for (it is walked in order).
    let counts = page_counts(&sim, &video);
    assert!(pages_of(failing + CHUNK, 14 * MIB).all(|p| !counts.contains_key(&p)), "{counts:?}");
    // Everything but the failing range stays durable for `media retry`.
    let rows = ranges(&setup.store, id).await;
    let finished: u64 = rows.iter().filter(|(_, e, d)| d >= e).map(|(s, e, _)| e - s).sum();
    let total = (video.size / 16 + 1) * 16;
    assert_eq!(finished, total - 2 * MIB, "{rows:?}");
    let others = jobs(&setup.store).await;
    assert!(
        others
            .iter()
            .filter(|(f, ..)| *f != video.sdkfileid)
            .all(|(_, s, _)| s == "done" || s == "unverified"),
        "{others:?}"
    );
    setup.cleanup().await;
}

/// A 16 MiB video by 2 MiB ranges whose page 8.5 MiB in comes with a flipped
/// byte the first `times` times it is served (right size, wrong md5), among the
/// corpus's small files; drained in one process.
async fn drain_with_a_corrupted_range(tag: &str, seed: u64, times: u64) -> (Simulator, Setup) {
    let sim = start_sim(SimConfig {
        seed,
        corps: 1,
        messages: 32,
        big_video: Some(16 * MIB),
        rotation: Rotation::Never,
        latency: Duration::from_millis(5),
        corrupt_media_offset: Some((8 * MIB + CHUNK, times)),
        ..Default::default()
    })
    .await;
    let setup = Setup::new(tag, &sim).await;
    let (_, report) = setup.drain(setup.options()).await;
    let settled =
        report.count(JobState::Done) + report.count(JobState::Unverified) + report.count(JobState::Corrupt);
    assert_eq!(settled, report.by_state.values().sum::<u64>(), "{report:?}");
    (sim, setup)
}

/// Every other file is done and each of its pages was asked for once.
async fn assert_other_files_untouched(sim: &Simulator, setup: &Setup, video: &MediaItem) {
    let corpus = sim.corpus();
    let others: Vec<_> = corpus.corps[0].media.iter().filter(|m| m.fileid != video.fileid).collect();
    assert!(!others.is_empty());
    for m in others {
        let counts = page_counts(sim, m);
        assert!(!counts.is_empty() && counts.values().all(|n| *n == 1), "{}: {counts:?}", m.fileid);
        let (_, state, ..) = job(&setup.store, &m.sdkfileid).await;
        // `unverified` where the message states no md5 to check against.
        let stated = m.md5sum.as_deref().is_some_and(|s| !s.is_empty());
        assert_eq!(state, if stated { "done" } else { "unverified" }, "{}", m.fileid);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_range_refetches_only_that_file() {
    let (sim, setup) = drain_with_a_corrupted_range("media_dist_corrupt", 167, 1).await;
    let video = big_video(&sim);
    let (id, state, path, _, verify_failures) = job(&setup.store, &video.sdkfileid).await;
    assert_eq!((state.as_str(), verify_failures), ("done", 1));
    assert_eq!(md5_file(&setup.root.path().join(&path)), video.md5);
    // The md5 covers the whole file, not a range: which range was bad cannot be
    // known, so the whole video is fetched again, once, and nothing else is.
    let counts = page_counts(&sim, &video);
    let total = (video.size / 16 + 1) * 16;
    assert_eq!(counts.len() as u64, total.div_ceil(CHUNK));
    assert!(counts.values().all(|n| *n == 2), "{counts:?}");
    assert_other_files_untouched(&sim, &setup, &video).await;
    assert!(ranges(&setup.store, id).await.is_empty());
    setup.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_range_corrupted_every_time_ends_the_file_corrupt() {
    // As many bad downloads as the bound (max_verify_failures, 3).
    let (sim, setup) = drain_with_a_corrupted_range("media_dist_corrupt3", 168, 3).await;
    let video = big_video(&sim);
    let (id, state, path, _, verify_failures) = job(&setup.store, &video.sdkfileid).await;
    assert_eq!((state.as_str(), verify_failures, path.as_str()), ("corrupt", 3, ""));
    let (_, code, error) = job_error(&setup.store, &video.sdkfileid).await;
    assert_eq!(code, CODE_CORRUPT, "{error}");
    assert!(error.contains("md5"), "{error}");
    let counts = page_counts(&sim, &video);
    assert!(counts.values().all(|n| *n == 3), "three whole downloads: {counts:?}");
    assert!(ranges(&setup.store, id).await.is_empty(), "no range claims bytes of a discarded file");
    let leftovers: Vec<_> = walk(setup.root.path()).into_iter().filter(|p| p.ends_with(".part")).collect();
    assert!(leftovers.is_empty(), "the bad file is discarded: {leftovers:?}");
    assert_other_files_untouched(&sim, &setup, &video).await;
    setup.cleanup().await;
}

/// Every file under `dir`, as strings.
fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p.to_string_lossy().into_owned());
        }
    }
    out
}
