//! Media end to end: the real SDK downloads from the simulator through its proxy
//! argument, files land under a temporary media root, the queue lives in real
//! MariaDB. Checked against the simulator's own md5s and request counters.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use md5::{Digest, Md5};
use mysql_async::Row;
use mysql_async::prelude::*;
use tokio_util::sync::CancellationToken;
use wework_archive::cli::corp::import_sim_manifest;
use wework_archive::config::Config;
use wework_archive::store::{CorpId, Store};
use wework_archive::wecom::ingest::{CorpSpec, RunOptions, pull_corp};
use wework_archive::wecom::media::download::PIPELINE_DEPTH;
use wework_archive::wecom::media::layout::{item_stem, month_dir};
use wework_archive::wecom::media::queue::{CODE_CORRUPT, Queue};
use wework_archive::wecom::media::{
    JobState, MediaContext, MediaOptions, MediaReport, drain_corp, requeue, run_corp_media,
};
use wework_archive_sim::{FaultKind, FaultSpec, MediaItem, Rotation, SimConfig, Simulator};

use crate::common::{TestDb, binary, ingest_context, sdk_lib, test_config};

const MIB: u64 = 1 << 20;
/// Bytes per GetMediaData chunk (PROTOCOL.md §5.3).
const CHUNK: u64 = 512 * 1024;

async fn start_sim(config: SimConfig) -> Simulator {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    Simulator::start(listener, config).await.unwrap()
}

/// A test's database, media root and corps, with every corp's messages ingested.
struct Setup {
    db: TestDb,
    store: Store,
    config: Config,
    root: tempfile::TempDir,
    corps: Vec<CorpId>,
}

impl Setup {
    async fn new(tag: &str, sim: &Simulator) -> Setup {
        let (db, store) = TestDb::fresh(tag).await;
        let root = tempfile::tempdir().unwrap();
        let config = test_config(&db.url, root.path());
        let corps = import_sim_manifest(&store, &config, &sim.manifest()).await.unwrap();
        let ctx = ingest_context(store.clone(), config.clone());
        for corpid in &corps {
            let spec = spec(&store, &config, corpid).await;
            pull_corp(&ctx, spec, RunOptions::until_caught_up(), CancellationToken::new()).await.unwrap();
        }
        Setup { db, store, config, root, corps }
    }

    /// Media settings for tests: the production ones with short waits.
    fn media(&self) -> MediaContext {
        let opts = MediaOptions {
            poll: Duration::from_millis(100),
            ip_pause: Duration::from_millis(300),
            retry_base: Duration::from_millis(20),
            retry_cap: Duration::from_millis(200),
            requeue_base: Duration::from_millis(100),
            requeue_cap: Duration::from_secs(1),
            ..MediaOptions::from_config(&self.config)
        };
        MediaContext::new(self.store.clone(), sdk_lib(), opts)
    }

    async fn drain(&self, ctx: &MediaContext, corpid: &CorpId) -> MediaReport {
        let spec = spec(&self.store, &self.config, corpid).await;
        drain_corp(ctx, &spec, CancellationToken::new()).await.unwrap()
    }

    async fn exec(&self, sql: &str, params: impl Into<mysql_async::Params> + Send) {
        self.store.conn().await.unwrap().exec_drop(sql, params).await.unwrap();
    }

    /// Drops the test's database (the media root goes with its TempDir).
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

/// One `media_jobs` row.
#[derive(Debug, Clone)]
struct JobRow {
    corpid: String,
    msgid: String,
    item_index: u32,
    kind: String,
    sdkfileid: String,
    filename: String,
    state: String,
    path: String,
    mp3_path: String,
    transcode: String,
    verify_failures: u32,
    last_code: i32,
}

async fn job_rows(store: &Store) -> Vec<JobRow> {
    let mut conn = store.conn().await.unwrap();
    let rows: Vec<Row> = conn
        .query(
            "SELECT corpid, msgid, item_index, kind, sdkfileid, filename, state, path, mp3_path, transcode,
                    verify_failures, last_code
             FROM media_jobs ORDER BY id",
        )
        .await
        .unwrap();
    rows.into_iter()
        .map(|mut r| JobRow {
            corpid: r.take("corpid").unwrap(),
            msgid: r.take("msgid").unwrap(),
            item_index: r.take("item_index").unwrap(),
            kind: r.take("kind").unwrap(),
            sdkfileid: r.take("sdkfileid").unwrap(),
            filename: r.take("filename").unwrap(),
            state: r.take("state").unwrap(),
            path: r.take("path").unwrap(),
            mp3_path: r.take("mp3_path").unwrap(),
            transcode: r.take("transcode").unwrap(),
            verify_failures: r.take("verify_failures").unwrap(),
            last_code: r.take("last_code").unwrap(),
        })
        .collect()
}

fn by_state(jobs: &[JobRow]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for j in jobs {
        *m.entry(j.state.clone()).or_default() += 1;
    }
    m
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

/// Every media item of the corpus, by sdkfileid.
fn corpus_media(sim: &Simulator) -> HashMap<String, std::sync::Arc<MediaItem>> {
    sim.corpus().corps.iter().flat_map(|c| c.media.iter()).map(|m| (m.sdkfileid.clone(), m.clone())).collect()
}

/// The state a stored file must end in: `done` when the message stated an md5
/// to check it against, `unverified` when it stated none (or an empty one).
fn stored_state(item: &MediaItem) -> &'static str {
    match item.md5sum.as_deref() {
        Some(m) if !m.is_empty() => "done",
        _ => "unverified",
    }
}

/// Whether a job's state is one of the two stored ones.
fn is_stored(job: &JobRow) -> bool {
    JobState::is_stored_str(&job.state)
}

/// Asserts a stored job's file is where the layout says, inside the root, with
/// the corpus's bytes, and that its state says whether an md5 verified it.
fn assert_file_matches(root: &Path, job: &JobRow, item: &MediaItem, msgtime: i64) {
    assert_eq!(job.state, stored_state(item), "{job:?}");
    let rel = Path::new(&job.path);
    assert!(rel.components().all(|c| matches!(c, Component::Normal(_))), "{job:?}");
    let parts: Vec<_> = rel.iter().map(|p| p.to_str().unwrap()).collect();
    assert_eq!(parts.len(), 3, "{job:?}");
    assert_eq!(parts[0], job.corpid);
    assert_eq!(parts[1], month_dir(msgtime), "{job:?}");
    let stem = item_stem(&job.msgid, job.item_index);
    assert!(parts[2].starts_with(&format!("{stem}.")), "{} vs {stem}", parts[2]);
    let file = root.join(rel);
    let canonical = file.canonicalize().unwrap();
    assert!(canonical.starts_with(root.canonicalize().unwrap()), "{canonical:?}");
    assert_eq!(std::fs::metadata(&file).unwrap().len(), item.size, "{job:?}");
    assert_eq!(md5_file(&file), item.md5, "{job:?}");
}

/// Every file under `root`, relative.
fn files_under(root: &Path) -> BTreeSet<PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                walk(root, &p, out);
            } else {
                out.insert(p.strip_prefix(root).unwrap().to_owned());
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(root, root, &mut out);
    out
}

async fn msgtimes(store: &Store, corpid: &str) -> HashMap<String, (i64, i8, i32, String)> {
    let mut conn = store.conn().await.unwrap();
    let rows: Vec<(String, i64, i8, i32, String)> = conn
        .query(format!("SELECT msgid, msgtime, status, media_code, media_path FROM `message_{corpid}`"))
        .await
        .unwrap();
    rows.into_iter().map(|(id, t, s, c, p)| (id, (t, s, c, p))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_media_item_of_two_corps_lands_verified_inside_the_root() {
    let sim = start_sim(SimConfig {
        seed: 51,
        corps: 2,
        messages: 400,
        big_video: Some(50 * MIB),
        rotation: Rotation::Never,
        ..Default::default()
    })
    .await;
    let setup = Setup::new("media_all", &sim).await;
    let media = corpus_media(&sim);
    let jobs = job_rows(&setup.store).await;
    assert_eq!(jobs.len(), media.len(), "one job per media item, nested ones included");

    let ctx = setup.media();
    let (a, b) = tokio::join!(setup.drain(&ctx, &setup.corps[0]), setup.drain(&ctx, &setup.corps[1]));
    for r in [&a, &b] {
        assert_eq!(r.unfinished(), 0, "{r:?}");
        let stored = r.count(JobState::Done) + r.count(JobState::Unverified);
        assert_eq!(stored as usize, r.by_state.values().sum::<u64>() as usize, "{r:?}");
    }
    assert_eq!(a.files + b.files, media.len() as u64);

    let jobs = job_rows(&setup.store).await;
    let root = setup.root.path();
    let mut expected_files = BTreeSet::new();
    let mut kinds = BTreeSet::new();
    let mut nested = 0;
    let mut hostile = 0;
    let mut big = false;
    for corpid in &setup.corps {
        let messages = msgtimes(&setup.store, corpid.as_str()).await;
        let mut first_path: HashMap<&str, (u32, &str)> = HashMap::new();
        for job in jobs.iter().filter(|j| j.corpid == corpid.as_str()) {
            let item = &media[&job.sdkfileid];
            let (msgtime, ..) = messages[&job.msgid];
            assert_file_matches(root, job, item, msgtime);
            expected_files.insert(PathBuf::from(&job.path));
            kinds.insert(job.kind.clone());
            nested += usize::from(job.item_index > 0);
            big |= item.size == 50 * MIB;
            let f = &job.filename;
            if f.contains("..")
                || f.contains('/')
                || f.contains('\\')
                || f.chars().any(char::is_control)
                || f.len() >= 300
            {
                hostile += 1;
                assert!(!job.path.contains(".."), "{job:?}");
            }
            if job.kind == "voice" {
                assert_eq!(job.transcode, "done", "{job:?}");
                assert!(job.mp3_path.ends_with(".mp3"), "{job:?}");
                let mp3 = std::fs::read(root.join(&job.mp3_path)).unwrap();
                assert!(mp3.starts_with(b"ID3") || (mp3[0] == 0xFF && mp3[1] & 0xE0 == 0xE0), "{job:?}");
                assert!(std::fs::read(root.join(&job.path)).unwrap().starts_with(b"#!AMR\n"));
                expected_files.insert(PathBuf::from(&job.mp3_path));
            } else {
                assert_eq!(job.transcode, "");
            }
            let e = first_path.entry(job.msgid.as_str()).or_insert((job.item_index, job.path.as_str()));
            if job.item_index < e.0 {
                *e = (job.item_index, job.path.as_str());
            }
        }
        // The seed's per-message columns: done, with the first file's path.
        for (msgid, (_, path)) in &first_path {
            let (_, status, code, media_path) = &messages[*msgid];
            assert_eq!((*status, *code, media_path.as_str()), (3, 0, *path), "{msgid}");
        }
        let untouched = messages.iter().filter(|(id, _)| !first_path.contains_key(id.as_str()));
        assert!(untouched.into_iter().all(|(_, (_, status, _, path))| *status == 0 && path.is_empty()));
    }
    let all_kinds = ["emotion", "file", "image", "meeting_voice_call", "video", "voice", "voip_doc_share"];
    assert_eq!(kinds, all_kinds.into_iter().map(String::from).collect());
    assert!(nested >= 5, "{nested} nested items (mixed, chatrecord)");
    assert!(hostile >= 2, "the corpus has hostile file names ({hostile})");
    assert!(big, "the 50 MiB video");
    // Nothing else under the root: no stray .part files, nothing from a hostile name.
    assert_eq!(files_under(root), expected_files);
    let repeated = sim.stats().repeated_media_ranges();
    assert!(repeated.is_empty(), "a clean run fetches every chunk once: {repeated:?}");
    setup.cleanup().await;
}

fn media_pull(setup: &Setup, corpid: &CorpId, log: &Path) -> Command {
    let mut cmd = Command::new(binary());
    cmd.args(["media", "pull", "--corp", corpid.as_str(), "--until-done"])
        .env("DATABASE_URL", &setup.db.url)
        .env("MSGFILE_DIR", setup.root.path())
        .env("WEWORK_SDK_LIB", sdk_lib().path())
        // The same instance name both times: the second run takes over the
        // killed run's claim at once instead of waiting for it to expire.
        .env("WEWORK_INSTANCE", "media-kill-test")
        .env("WEWORK_MEDIA_CONCURRENCY", "2")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap());
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_download_resumes_without_fetching_finished_chunks_again() {
    let sim = start_sim(SimConfig {
        seed: 52,
        corps: 1,
        messages: 40,
        big_video: Some(50 * MIB),
        rotation: Rotation::Never,
        ..Default::default()
    })
    .await;
    let setup = Setup::new("media_kill", &sim).await;
    let corpid = setup.corps[0].clone();
    let video = sim.corpus().corps[0].media.iter().max_by_key(|m| m.size).unwrap().clone();
    assert_eq!(video.size, 50 * MIB);
    let progress = |store: Store, sdkfileid: String| async move {
        let mut conn = store.conn().await.unwrap();
        let row: Option<(u64, String, String)> = conn
            .exec_first(
                "SELECT bytes_done, state, claimed_by FROM media_jobs WHERE sdkfileid = ?",
                (sdkfileid,),
            )
            .await
            .unwrap();
        row.unwrap()
    };

    let log = setup.root.path().join("../media-kill-first.log");
    let mut child = media_pull(&setup, &corpid, &log).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (bytes, ..) = progress(setup.store.clone(), video.sdkfileid.clone()).await;
        if bytes >= 8 * MIB {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the child ended early: {}",
            std::fs::read_to_string(&log).unwrap()
        );
        assert!(Instant::now() < deadline, "no progress: {}", std::fs::read_to_string(&log).unwrap());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap(); // SIGKILL: no cleanup of any kind
    child.wait().unwrap();

    let (durable, state, owner) = progress(setup.store.clone(), video.sdkfileid.clone()).await;
    assert_eq!((state.as_str(), owner.as_str()), ("downloading", "media-kill-test"));
    assert!(durable >= 8 * MIB && durable < video.size && durable % CHUNK == 0, "{durable}");
    let before = sim.stats().media_requests_for(&video.fileid);
    // The part file holds at least what the database claims.
    // Other media of the corpus may be in flight too: the video's .part is the largest.
    let part = files_under(setup.root.path())
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".part"))
        .max_by_key(|p| std::fs::metadata(setup.root.path().join(p)).map(|m| m.len()).unwrap_or(0));
    let part = part.expect("the .part file survives the kill");
    assert!(std::fs::metadata(setup.root.path().join(&part)).unwrap().len() >= durable);
    for start in (0..durable).step_by(CHUNK as usize) {
        assert!(before.contains(&(start, 1)), "chunk at {start} fetched once before the kill: {before:?}");
    }

    let log2 = setup.root.path().join("../media-kill-second.log");
    let status = media_pull(&setup, &corpid, &log2).status().unwrap();
    assert!(status.success(), "{}", std::fs::read_to_string(&log2).unwrap());

    let after = sim.stats().media_requests_for(&video.fileid);
    let counts: BTreeMap<u64, u64> = after.iter().copied().collect();
    for start in (0..durable).step_by(CHUNK as usize) {
        assert_eq!(counts.get(&start), Some(&1), "durable chunk at {start} was fetched again");
    }
    let chunks = video.chunks();
    assert_eq!(counts.len() as u64, chunks, "every chunk requested");
    // Only chunks in flight at the kill (not yet durable) were fetched twice.
    let extra: u64 = counts.values().map(|n| n - 1).sum();
    assert!(extra <= PIPELINE_DEPTH as u64 + 2, "{extra} chunks fetched again: {after:?}");
    let jobs = job_rows(&setup.store).await;
    let job = jobs.iter().find(|j| j.sdkfileid == video.sdkfileid).unwrap();
    assert_eq!(job.state, "done");
    assert_eq!(md5_file(&setup.root.path().join(&job.path)), video.md5);
    assert!(jobs.iter().all(is_stored), "{:?}", by_state(&jobs));
    assert!(!files_under(setup.root.path()).iter().any(|p| p.to_string_lossy().ends_with(".part")));
    let _ = std::fs::remove_file(&log);
    let _ = std::fs::remove_file(&log2);
    setup.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_and_slow_replies_recover_md5_mismatches_retry_and_expired_media_ends_expired() {
    let sim = start_sim(SimConfig {
        seed: 53,
        corps: 1,
        messages: 200,
        slow: Duration::from_millis(1500),
        rotation: Rotation::Never,
        ..Default::default()
    })
    .await;
    let setup = Setup::new("media_faults", &sim).await;
    let corpid = setup.corps[0].clone();
    // A 1 s SDK timeout makes every slow (1.5 s) reply a 10001.
    setup.exec("UPDATE corplist SET timeout = 1 WHERE corpid = ?", (corpid.as_str(),)).await;
    sim.set_faults(
        FaultSpec::none()
            .with(FaultKind::Cut, 0.08)
            .with(FaultKind::Slow, 0.08)
            .with(FaultKind::Md5Mismatch, 0.4)
            .with(FaultKind::MediaExpired, 0.03),
    );
    let ctx = setup.media();
    let report = setup.drain(&ctx, &corpid).await;
    let stats = sim.stats();
    for k in [FaultKind::Cut, FaultKind::Slow, FaultKind::Md5Mismatch, FaultKind::MediaExpired] {
        assert!(stats.faults_of(k) > 0, "{k} injected: {:?}", stats.faults);
    }
    let jobs = job_rows(&setup.store).await;
    let states = by_state(&jobs);
    assert!(
        states.keys().all(|s| ["done", "unverified", "expired", "corrupt"].contains(&s.as_str())),
        "only stored, expired or corrupt: {states:?}"
    );
    assert_eq!(report.count(JobState::Done) as usize, states.get("done").copied().unwrap_or(0));
    assert_eq!(report.count(JobState::Unverified) as usize, states.get("unverified").copied().unwrap_or(0));
    // Each 301048 answer ends exactly one job, for good.
    let expired = jobs.iter().filter(|j| j.state == "expired").count() as u64;
    assert_eq!(expired, stats.errcodes.get(&301_048).copied().unwrap_or(0));
    assert!(expired > 0);
    assert!(jobs.iter().filter(|j| j.state == "expired").all(|j| j.last_code == 10010));
    // md5 mismatches: discarded and fetched again; after three, corrupt.
    let retried_ok = jobs.iter().filter(|j| j.state == "done" && j.verify_failures > 0).count();
    assert!(retried_ok > 0, "some files succeeded on a later try");
    for j in jobs.iter().filter(|j| j.state == "corrupt") {
        assert_eq!((j.verify_failures, j.last_code), (3, CODE_CORRUPT), "{j:?}");
    }
    let mismatches: u64 = jobs.iter().map(|j| u64::from(j.verify_failures)).sum();
    assert!(mismatches > 0 && mismatches <= stats.faults_of(FaultKind::Md5Mismatch));
    let media = corpus_media(&sim);
    let messages = msgtimes(&setup.store, corpid.as_str()).await;
    for j in &jobs {
        let (msgtime, status, code, _) = &messages[&j.msgid];
        match j.state.as_str() {
            "done" | "unverified" => {
                assert_file_matches(setup.root.path(), j, &media[&j.sdkfileid], *msgtime)
            }
            // A failed item fails its message, with the item's code (single-media: this one).
            _ => {
                assert_eq!(*status, 4, "{j:?}");
                if j.item_index == 0 {
                    assert_eq!(*code, j.last_code, "{j:?}");
                }
            }
        }
    }

    // `media retry`, then a clean service: everything arrives.
    sim.set_faults(FaultSpec::none());
    let requeued = requeue(&setup.store, Some(&corpid), &JobState::RETRYABLE).await.unwrap();
    let stored = states.get("done").unwrap_or(&0) + states.get("unverified").unwrap_or(&0);
    assert_eq!(requeued as usize, jobs.len() - stored);
    let messages = msgtimes(&setup.store, corpid.as_str()).await;
    assert!(
        messages.values().all(|(_, status, ..)| *status != 4),
        "requeued messages are not failed any more"
    );
    let report = setup.drain(&ctx, &corpid).await;
    assert_eq!(report.unfinished(), 0, "{report:?}");
    for j in job_rows(&setup.store).await {
        assert_file_matches(setup.root.path(), &j, &media[&j.sdkfileid], messages[&j.msgid].0);
    }
    setup.cleanup().await;
}

async fn alarm(store: &Store, corpid: &CorpId) -> String {
    let mut conn = store.conn().await.unwrap();
    conn.exec_first("SELECT alarm FROM corp_state WHERE corpid = ?", (corpid.as_str(),))
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_ip_raises_the_alarm_pauses_media_and_a_later_probe_resumes() {
    let sim = start_sim(SimConfig { seed: 54, corps: 1, messages: 60, ..Default::default() }).await;
    let setup = Setup::new("media_ip", &sim).await;
    let corpid = setup.corps[0].clone();
    sim.set_faults(FaultSpec::none().with(FaultKind::MediaIp, 1.0));
    let ctx = setup.media();
    let report = setup.drain(&ctx, &corpid).await;
    let total = job_rows(&setup.store).await.len() as u64;
    assert_eq!((report.count(JobState::Paused), report.files), (total, 0), "{report:?}");
    // One refusal per worker at most: the corp stops asking at once.
    let refusals = sim.stats().errcodes.get(&301_042).copied().unwrap_or(0);
    assert!((1..=ctx.opts.concurrency as u64).contains(&refusals), "{refusals}");
    let text = alarm(&setup.store, &corpid).await;
    assert!(text.starts_with("media: ") && text.contains("10009"), "{text}");

    // The IP is allowed again; the long-running loop probes after its pause and finishes.
    sim.set_faults(FaultSpec::none());
    let cancel = CancellationToken::new();
    let spec = spec(&setup.store, &setup.config, &corpid).await;
    let task = tokio::spawn(run_corp_media(ctx.clone(), spec, cancel.clone()));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let jobs = job_rows(&setup.store).await;
        if jobs.iter().all(is_stored) {
            break;
        }
        assert!(Instant::now() < deadline, "{:?}", by_state(&jobs));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(alarm(&setup.store, &corpid).await, "", "the media alarm clears after a success");
    cancel.cancel();
    task.await.unwrap();
    assert_eq!(ctx.stats.files(), total);
    setup.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_are_exclusive_expire_and_fence_out_the_old_holder() {
    let (db, store) = TestDb::fresh("media_claims").await;
    let corpid = CorpId::new("wwclaims0000000001").unwrap();
    store.ensure_message_table(&corpid).await.unwrap();
    let mut conn = store.conn().await.unwrap();
    for i in 0..40 {
        conn.exec_drop(
            "INSERT INTO media_jobs (corpid, msgid, item_index, kind, sdkfileid) VALUES (?, ?, 0, 'image', 'x')",
            (corpid.as_str(), format!("m{i}")),
        )
        .await
        .unwrap();
    }
    let ttl = Duration::from_secs(60);
    let a = Queue::new(store.clone(), corpid.clone(), "instance-a".into(), ttl);
    let b = Queue::new(store.clone(), corpid.clone(), "instance-b".into(), ttl);
    let take_all = |q: Queue| async move {
        let mut got = Vec::new();
        while let Some(job) = q.claim().await.unwrap() {
            got.push(job);
        }
        got
    };
    let (ja, jb) = tokio::join!(take_all(a.clone()), take_all(b.clone()));
    let ids_a: BTreeSet<u64> = ja.iter().map(|j| j.id).collect();
    let ids_b: BTreeSet<u64> = jb.iter().map(|j| j.id).collect();
    assert!(ids_a.is_disjoint(&ids_b), "a job claimed twice");
    assert_eq!(ids_a.len() + ids_b.len(), 40);
    assert_eq!(a.outstanding().await.unwrap().map(|d| d > Duration::from_secs(30)), Some(true));

    // A's claim on one job expires (a stalled or dead worker): B takes it over,
    // and A's writes are refused from then on.
    let old = ja.first().cloned().unwrap_or_else(|| jb[0].clone());
    let (holder, other) = if ids_a.contains(&old.id) { (&a, &b) } else { (&b, &a) };
    conn.exec_drop(
        "UPDATE media_jobs SET claimed_until = NOW(3) - INTERVAL 1 SECOND WHERE id = ?",
        (old.id,),
    )
    .await
    .unwrap();
    let taken = other.claim().await.unwrap().expect("the expired claim is claimable");
    assert_eq!(taken.id, old.id);
    assert!(!holder.progress(&old, "Range:bytes=524288-1048575", CHUNK, 1).await.unwrap());
    assert!(other.progress(&taken, "Range:bytes=524288-1048575", CHUNK, 1).await.unwrap());
    assert!(!holder.release(&old, Duration::ZERO, true, 10001, "late").await.unwrap());
    use wework_archive::wecom::media::queue::Terminal;
    assert!(!holder.finish(&old, Terminal::Done, "x", 1, 0, "").await.unwrap());

    // A restart of instance A puts A's own claims back at once; B's stay B's.
    let back =
        Queue::new(store.clone(), corpid.clone(), "instance-a".into(), ttl).reclaim_own().await.unwrap();
    let a_holds = if ids_a.contains(&old.id) { ids_a.len() - 1 } else { ids_a.len() + 1 };
    assert_eq!(back as usize, a_holds);
    let states: Vec<(String, String, u64)> = conn
        .exec(
            "SELECT state, claimed_by, COUNT(*) FROM media_jobs WHERE corpid = ? GROUP BY state, claimed_by",
            (corpid.as_str(),),
        )
        .await
        .unwrap();
    assert!(states.iter().all(|(s, by, _)| (s == "pending" && by.is_empty()) || (s == "downloading" && by == "instance-b")), "{states:?}");
    drop(conn);
    store.close().await;
    let pool = mysql_async::Pool::new(crate::common::db_server().as_str());
    pool.get_conn().await.unwrap().query_drop(format!("DROP DATABASE `{}`", db.name)).await.unwrap();
    pool.disconnect().await.unwrap();
}
