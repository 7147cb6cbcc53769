//! Feishu cloud documents and wiki backup (`feishu backup`, issue 14) against
//! the fake Feishu with a grown 2,000-node tree (nested folders, every type,
//! hostile and colliding titles, shortcuts including loops, refused exports,
//! slow exports, 429 bursts, failing export tasks), real MariaDB and Redis,
//! and the binary as a user runs it.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mysql_async::prelude::*;
use serde_json::{Value, json};
use wework_archive::config::{Config, SettingsArgs};
use wework_archive::feishu::Feishu;
use wework_archive::store::Store;
use wework_archive::store::feishu_apps::FeishuApp;
use wework_archive_sim::feishu::{FeishuConfig, FeishuManifest, FeishuSim};

use crate::common::{TestDb, binary, sdk_lib};

const MASTER_KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const REDIS: &str = "redis://127.0.0.1:6379";

struct Env {
    db: TestDb,
    store: Store,
    sim: FeishuSim,
    manifest: FeishuManifest,
    config: Arc<Config>,
    out: tempfile::TempDir,
    web: reqwest::Client,
}

async fn env(tag: &str, export_delay: Duration) -> Env {
    env_with(tag, export_delay, 2000).await
}

async fn env_with(tag: &str, export_delay: Duration, tree_nodes: usize) -> Env {
    let (db, store) = TestDb::fresh(tag).await;
    let sim_config = FeishuConfig {
        seed: 14,
        tree_nodes,
        // Fast limits: these tests are about completeness, not pacing.
        rate_scale: 40.0,
        export_delay,
        faults: "throttle=0.001,export_slow=0.05,export_fail=0.03".parse().unwrap(),
        ..Default::default()
    };
    let sim = FeishuSim::start(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(), sim_config)
        .await
        .unwrap();
    let manifest = sim.manifest();
    let prefix = format!("wwt-docs-{tag}-{}", std::process::id());
    let settings = SettingsArgs {
        database_url: Some(db.url.clone()),
        redis_url: Some(REDIS.to_owned()),
        redis_prefix: Some(prefix),
        master_key: Some(MASTER_KEY.to_owned()),
        public_url: Some("http://127.0.0.1:9".to_owned()),
        instance: Some(format!("test-{}", std::process::id())),
        ..Default::default()
    };
    let config = Arc::new(Config::resolve(&settings).unwrap());
    let app = FeishuApp {
        app_id: manifest.app_id.clone(),
        app_secret: manifest.app_secret.clone(),
        encrypt_key: manifest.encrypt_key.clone(),
        verification_token: manifest.verification_token.clone(),
        base_url: manifest.base_url.clone(),
        enabled: true,
    };
    store.upsert_feishu_app(&app, &config.secrets).await.unwrap();
    let web = wework_archive::feishu::client::client_builder().unwrap().build().unwrap();
    let e = Env { db, store, sim, manifest, config, out: tempfile::tempdir().unwrap(), web };
    e.authorize().await;
    e
}

impl Env {
    fn user(&self) -> &str {
        &self.manifest.users[0].open_id
    }

    /// The first person authorizes the app (the OAuth flow against the fake).
    async fn authorize(&self) {
        let feishu = Feishu::new(self.store.clone(), self.config.clone()).unwrap();
        let url = feishu.start_authorization(&self.manifest.app_id, Some(self.user()), None).await.unwrap();
        let q: HashMap<String, String> =
            reqwest::Url::parse(&url).unwrap().query_pairs().into_owned().collect();
        let v = self
            .sim_post(
                "/_sim/authorize",
                json!({"client_id": self.manifest.app_id, "redirect_uri": q["redirect_uri"], "state": q["state"],
                       "open_id": self.user(), "decision": "approve"}),
            )
            .await;
        let loc = reqwest::Url::parse(v["location"].as_str().unwrap()).unwrap();
        let lq: HashMap<String, String> = loc.query_pairs().into_owned().collect();
        let outcome = feishu
            .finish_authorization(
                lq.get("code").map(String::as_str),
                lq.get("state").map(String::as_str),
                None,
            )
            .await;
        assert!(
            matches!(outcome, wework_archive::feishu::oauth::CallbackOutcome::Authorized { .. }),
            "{outcome:?}"
        );
    }

    async fn sim_post(&self, path: &str, body: Value) -> Value {
        let r = self
            .web
            .post(format!("{}{path}", self.manifest.base_url))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{path}");
        serde_json::from_str(&r.text().await.unwrap()).unwrap()
    }

    async fn sim_get(&self, path: &str) -> Value {
        let r = self.web.get(format!("{}{path}", self.manifest.base_url)).send().await.unwrap();
        serde_json::from_str(&r.text().await.unwrap()).unwrap()
    }

    async fn calls(&self, route: &str) -> u64 {
        self.sim_get("/_sim/stats").await["calls"][route].as_u64().unwrap_or(0)
    }

    fn command(&self) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(binary());
        c.args([
            "feishu",
            "backup",
            "--app-id",
            &self.manifest.app_id,
            "--user",
            self.user(),
            "--source",
            "all",
        ])
        .arg("--out")
        .arg(self.out.path())
        .args([
            "--rate-scale",
            "40",
            "--poll-initial-ms",
            "40",
            "--poll-max-ms",
            "400",
            "--export-attempts",
            "6",
        ])
        .args(["--concurrency", "16", "--quiet"])
        .env("DATABASE_URL", &self.db.url)
        .env("REDIS_URL", REDIS)
        .env("WEWORK_REDIS_PREFIX", &self.config.redis_prefix)
        .env("WEWORK_MASTER_KEY", MASTER_KEY)
        .env("PUBLIC_URL", &self.config.public_url)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
        c
    }

    /// Runs a backup to the end: (exit code, stdout).
    async fn backup(&self) -> (i32, String) {
        let out = self.command().output().await.unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        (out.status.code().unwrap_or(-1), text)
    }

    fn manifest_json(&self) -> Value {
        serde_json::from_slice(&std::fs::read(self.out.path().join("manifest.json")).unwrap()).unwrap()
    }
}

const CREATE: &str = "POST /open-apis/drive/v1/export_tasks";
const EXPORT_DL: &str = "GET /open-apis/drive/v1/export_tasks/file/:file_token/download";
const DL: &str = "GET /open-apis/drive/v1/files/:file_token/download";

fn sha256_of(path: &Path) -> String {
    wework_archive::feishu::crypto::sha256_hex(&std::fs::read(path).unwrap())
}

/// Checks a finished backup against `/_sim/tree`: every document the user can reach that the
/// fake can serve is on disk with the fake's sha256, refused exports are failed with a reason,
/// slides/mindnote are listed as not exportable; nothing is outside the output directory.
/// Returns the manifest's document entries by document token.
async fn check_complete(e: &Env) -> HashMap<String, Value> {
    let tree = e.sim_get("/_sim/tree").await;
    let m = e.manifest_json();
    let nodes = m["nodes"].as_array().unwrap();
    let mut by_doc: HashMap<String, Value> = HashMap::new();
    for n in nodes {
        assert!(
            !n["path"].as_str().unwrap().split('/').any(|c| c == ".." || c.is_empty()) || n["path"] == "",
            "{n}"
        );
        if n["type"] == "shortcut"
            || n["type"] == "folder"
            || n["kind"] == "wiki_space"
            || n["type"] == "wiki_node"
        {
            continue;
        }
        let doc = n["obj_token"].as_str().or(n["token"].as_str()).unwrap().to_owned();
        by_doc.entry(doc).or_insert_with(|| n.clone());
    }
    let libraries: HashSet<&str> = tree["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["kind"] == "wiki_space" && n["title"] == "My Library")
        .map(|n| n["space_id"].as_str().unwrap())
        .collect();
    let (mut checked, mut refused, mut listed) = (0, 0, 0);
    for t in tree["nodes"].as_array().unwrap() {
        let (token, ty) = match t["kind"].as_str().unwrap() {
            "drive" => (t["token"].as_str().unwrap(), t["type"].as_str().unwrap()),
            "wiki" => (t["obj_token"].as_str().unwrap(), t["obj_type"].as_str().unwrap()),
            _ => continue,
        };
        if ty == "folder" || ty == "shortcut" {
            continue;
        }
        let in_library = t["kind"] == "wiki" && libraries.contains(t["space_id"].as_str().unwrap());
        let Some(entry) = by_doc.get(token) else {
            // Other people's libraries are not the user's to see.
            assert!(in_library, "{token} ({ty}) is missing from the manifest");
            continue;
        };
        let status = entry["status"].as_str().unwrap();
        match t["sha256"].as_str() {
            Some(sha) => {
                assert!(matches!(status, "exported" | "downloaded" | "unchanged"), "{token}: {entry}");
                let file = e.out.path().join(entry["path"].as_str().unwrap());
                assert_eq!(sha256_of(&file), sha, "{token} at {}", file.display());
                assert_eq!(entry["sha256"].as_str(), Some(sha));
                checked += 1;
            }
            None if t["exportable"] == true => {
                assert_eq!(status, "failed", "{entry}");
                assert!(entry["reason"].as_str().unwrap().contains("job_status"), "{entry}");
                refused += 1;
            }
            None => {
                assert_eq!(status, "not_exportable", "{entry}");
                assert!(!entry["reason"].as_str().unwrap().is_empty());
                listed += 1;
            }
        }
    }
    assert!(
        checked > 1000 && refused > 5 && listed > 100,
        "checked {checked}, refused {refused}, listed {listed}"
    );
    assert_eq!(m["summary"]["failed"].as_u64().unwrap(), refused as u64, "{}", m["summary"]);
    // Every file on disk is inside the output directory and named by the manifest.
    let named: HashSet<PathBuf> =
        by_doc.values().filter_map(|n| n["path"].as_str()).map(|p| e.out.path().join(p)).collect();
    for f in walk_files(e.out.path()) {
        assert!(f.starts_with(e.out.path()));
        let rel = f.strip_prefix(e.out.path()).unwrap();
        if rel.starts_with(".partial") || rel == Path::new("manifest.json") {
            continue;
        }
        assert!(named.contains(&f), "{} is not in the manifest", f.display());
    }
    by_doc
}

fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_run_complete_second_run_no_fetches_touch_three_refetches_exactly_three() {
    let e = env("docs_incr", Duration::from_millis(60)).await;
    let (code, out) = e.backup().await;
    assert_eq!(code, 2, "refused exports make the exit code 2: {out}");
    assert!(out.contains("failed") && out.contains("export denied"), "{out}");
    let first = check_complete(&e).await;
    // Shortcut loops are followed once and listed.
    let m = e.manifest_json();
    let shortcuts: Vec<&Value> =
        m["nodes"].as_array().unwrap().iter().filter(|n| n["type"] == "shortcut").collect();
    assert!(
        shortcuts.iter().any(|s| s["reason"].as_str().unwrap().contains("followed once")),
        "{shortcuts:?}"
    );

    // Second run: nothing exported or downloaded.
    let before = (e.calls(CREATE).await, e.calls(EXPORT_DL).await, e.calls(DL).await);
    let (code, out) = e.backup().await;
    assert_eq!(code, 2, "{out}");
    assert_eq!((e.calls(CREATE).await, e.calls(EXPORT_DL).await, e.calls(DL).await), before, "{out}");
    let second = check_complete(&e).await;
    assert!(second.values().filter(|n| n["status"] == "unchanged").count() > 1000);

    // Touch two online documents and one file: exactly those are fetched again.
    let pick = |ty: &str, n: usize| -> Vec<String> {
        first
            .iter()
            .filter(|(_, v)| v["type"] == ty && v["status"] != "failed")
            .map(|(k, _)| k.clone())
            .take(n)
            .collect()
    };
    let touched: Vec<String> = pick("docx", 2).into_iter().chain(pick("file", 1)).collect();
    assert_eq!(touched.len(), 3);
    for t in &touched {
        e.sim_post("/_sim/drive/touch", json!({"token": t})).await;
    }
    let before = (e.calls(CREATE).await, e.calls(DL).await);
    let (code, out) = e.backup().await;
    assert_eq!(code, 2, "{out}");
    let after = (e.calls(CREATE).await, e.calls(DL).await);
    // Export tasks may fail at random (export_fail) and be asked again: at least two, each for a touched doc.
    assert!(after.0 - before.0 >= 2, "{before:?} {after:?}");
    assert_eq!(after.1 - before.1, 1, "one file downloaded again");
    let third = check_complete(&e).await;
    let fetched: HashSet<&String> = third
        .iter()
        .filter(|(_, v)| v["status"] == "exported" || v["status"] == "downloaded")
        .map(|(k, _)| k)
        .collect();
    assert_eq!(fetched, touched.iter().collect::<HashSet<_>>(), "exactly the touched documents");
    let mut c = e.store.conn().await.unwrap();
    let rows: u64 = c.query_first("SELECT COUNT(*) FROM feishu_docs").await.unwrap().unwrap();
    assert!(rows > 1200, "{rows}");
    drop(c);
    e.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_run_then_rerun_completes_without_re_exporting_finished_documents() {
    let e = env("docs_kill", Duration::from_millis(150)).await;
    let mut child = e.command().spawn().unwrap();
    // Wait until a good part is done, then SIGKILL.
    let deadline = Instant::now() + Duration::from_secs(120);
    let finished = loop {
        let mut c = e.store.conn().await.unwrap();
        let n: u64 = c
            .query_first("SELECT COUNT(*) FROM feishu_docs WHERE status = 'exported'")
            .await
            .unwrap()
            .unwrap();
        if n >= 150 {
            break n;
        }
        assert!(Instant::now() < deadline, "the backup made no progress");
        assert!(child.try_wait().unwrap().is_none(), "the backup ended before it could be killed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    let mut c = e.store.conn().await.unwrap();
    let done: Vec<(String, i64)> = c
        .query("SELECT token, last_backup_at FROM feishu_docs WHERE status IN ('exported', 'downloaded')")
        .await
        .unwrap();
    drop(c);
    assert!(done.len() as u64 >= finished);
    let exportable_total: u64 = {
        let tree = e.sim_get("/_sim/tree").await;
        tree["nodes"].as_array().unwrap().iter().filter(|n| n["exportable"] == true).count() as u64
    };
    let before = e.calls(CREATE).await;
    let (code, out) = e.backup().await;
    assert_eq!(code, 2, "{out}");
    check_complete(&e).await;
    // Finished documents were not fetched again.
    let mut c = e.store.conn().await.unwrap();
    for (token, at) in &done {
        let now: Option<i64> = c
            .exec_first("SELECT last_backup_at FROM feishu_docs WHERE token = ?", (token,))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(now, Some(*at), "{token} was fetched again");
    }
    drop(c);
    let exported_before_kill = done.len() as u64;
    let created = e.calls(CREATE).await - before;
    assert!(
        created + exported_before_kill <= exportable_total + created / 4 + 20,
        "created {created}, done {exported_before_kill}, total {exportable_total}"
    );
    e.sim.shutdown().await;
}

impl Env {
    /// The binary with this environment's settings.
    fn wework(&self, args: &[&str]) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(binary());
        c.args(args)
            .env("DATABASE_URL", &self.db.url)
            .env("REDIS_URL", REDIS)
            .env("WEWORK_REDIS_PREFIX", &self.config.redis_prefix)
            .env("WEWORK_MASTER_KEY", MASTER_KEY)
            .env("PUBLIC_URL", &self.config.public_url)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        c
    }

    async fn wework_out(&self, args: &[&str]) -> (i32, String) {
        let out = self.wework(args).output().await.unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        (out.status.code().unwrap_or(-1), text)
    }

    /// `run` as instance `name`, checking for due schedules every 0.2 s.
    fn run_instance(&self, name: &str, msgfile: &Path, scratch: &Path) -> tokio::process::Child {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let public = l.local_addr().unwrap();
        drop(l);
        let mut c = self.wework(&["run", "--idle-secs", "0.2"]);
        c.env("WEWORK_SDK_LIB", sdk_lib().path())
            .env("WEWORK_INSTANCE", name)
            .env("PUBLIC_LISTEN", public.to_string())
            .env("PUBLIC_URL", format!("http://{public}"))
            .env("HTTP_LISTEN", "127.0.0.1:0")
            .env("MSGFILE_DIR", msgfile)
            .env("SEARCH_INDEX_DIR", scratch.join(format!("search-{name}")))
            .env("FEISHU_RATE_SCALE", "40")
            .env("FEISHU_BACKUP_CHECK_SECS", "0.2")
            .env("FEISHU_BACKUP_CLAIM_SECS", "3")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        c.spawn().unwrap()
    }
}

/// `(instance, started ms, finished ms, status)` of every run of schedule `id`, in start order.
async fn runs_of(e: &Env, id: u64) -> Vec<(String, i64, Option<i64>, String)> {
    let mut c = e.store.conn().await.unwrap();
    let rows: Vec<(String, i64, Option<i64>, String)> = c
        .exec(
            "SELECT instance, CAST(UNIX_TIMESTAMP(started_at) * 1000 AS SIGNED),
                    CAST(UNIX_TIMESTAMP(finished_at) * 1000 AS SIGNED), status
             FROM feishu_backup_runs WHERE schedule_id = ? ORDER BY started_at, id",
            (id,),
        )
        .await
        .unwrap();
    rows
}

/// Once per period, never two at a time: a run that ended did so before the next began, and
/// the next began a period (2 s) after it started. (A run killed with its instance is redone
/// as soon as its claim is released or expires, not a period later.)
fn assert_once_per_period(runs: &[(String, i64, Option<i64>, String)]) {
    for w in runs.windows(2) {
        let (a, b) = (&w[0], &w[1]);
        if matches!(a.3.as_str(), "ok" | "partial" | "failed") {
            assert!(b.1 - a.1 >= 1990, "two runs within one period: {a:?} then {b:?} (all: {runs:?})");
            assert!(a.2.unwrap() <= b.1, "runs overlap: {a:?} and {b:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_backups_run_once_per_period_across_two_instances_and_restarts() {
    let e = env_with("docs_sched", Duration::from_millis(50), 0).await;
    let scratch = tempfile::tempdir().unwrap();
    let msgfile = scratch.path().join("msgfile");
    let (app, user) = (e.manifest.app_id.clone(), e.user().to_owned());

    // Opt-in: validated, stored, listed.
    let (code, out) = e
        .wework_out(&["feishu", "backup", "schedule", "--app-id", &app, "--user", &user, "--every", "0s"])
        .await;
    assert_eq!(code, 1, "{out}");
    let (code, out) = e
        .wework_out(&[
            "feishu",
            "backup",
            "schedule",
            "--app-id",
            &app,
            "--user",
            "ou_nobody",
            "--every",
            "2s",
        ])
        .await;
    assert!(code == 1 && out.contains("has not authorized"), "{out}");
    let (code, out) = e
        .wework_out(&["feishu", "backup", "schedule", "--app-id", &app, "--user", &user, "--every", "2s"])
        .await;
    assert_eq!(code, 0, "{out}");
    // A schedule that cannot run (no such wiki space): its failures are recorded and shown.
    let args = [
        "feishu",
        "backup",
        "schedule",
        "--app-id",
        &app,
        "--user",
        &user,
        "--every",
        "2s",
        "--source",
        "wiki:123456789",
    ];
    let (code, out) = e.wework_out(&args).await;
    assert_eq!(code, 0, "{out}");
    // And one removed again.
    let args = [
        "feishu", "backup", "schedule", "--app-id", &app, "--user", &user, "--every", "1h", "--source",
        "drive",
    ];
    assert_eq!(e.wework_out(&args).await.0, 0);
    let args =
        ["feishu", "backup", "schedule", "--app-id", &app, "--user", &user, "--remove", "--source", "drive"];
    let (code, out) = e.wework_out(&args).await;
    assert!(code == 0 && out.contains("removed 1"), "{out}");
    let (code, out) = e.wework_out(&["feishu", "backup", "schedule", "--list"]).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.lines().filter(|l| l.starts_with("schedule ")).count(), 2, "{out}");
    assert!(out.contains("never ran") && out.contains("every 2s"), "{out}");
    let schedules = e.store.backup_schedules(None).await.unwrap();
    let good = schedules.iter().find(|s| s.source == "all").unwrap().id;
    let bad = schedules.iter().find(|s| s.source != "all").unwrap().id;

    // Two instances share the schedules.
    let mut a = e.run_instance("sched-a", &msgfile, scratch.path());
    let mut b = e.run_instance("sched-b", &msgfile, scratch.path());
    // The first run fetches everything (export polls start after 2 s, slow and failing exports
    // are retried: several seconds); the later ones find everything unchanged.
    tokio::time::sleep(Duration::from_secs(20)).await;
    // Both die at once (SIGKILL), whatever they were doing; one comes back.
    a.start_kill().unwrap();
    b.start_kill().unwrap();
    a.wait().await.unwrap();
    b.wait().await.unwrap();
    let killed_at = wework_archive::feishu::now_ms();
    let before_restart = runs_of(&e, good).await.len();
    let mut a = e.run_instance("sched-a", &msgfile, scratch.path());
    tokio::time::sleep(Duration::from_secs(12)).await;
    a.start_kill().unwrap();
    a.wait().await.unwrap();

    let runs = runs_of(&e, good).await;
    assert_once_per_period(&runs);
    let finished: Vec<_> = runs.iter().filter(|r| matches!(r.3.as_str(), "ok" | "partial")).collect();
    // 32 s of two-second periods (less the first run and the restart): several runs before the kill and after it.
    assert!(finished.len() >= 5, "{runs:?}");
    assert!(before_restart >= 2, "{runs:?}");
    assert!(finished.iter().any(|r| r.1 > killed_at), "the schedule went on after the restart: {runs:?}");
    // Every run was a real backup into the default directory; the first fetched, the later
    // ones found everything unchanged.
    let out_dir = msgfile.join("feishu").join(&app).join(&user).join("docs");
    let m: Value = serde_json::from_slice(&std::fs::read(out_dir.join("manifest.json")).unwrap()).unwrap();
    assert!(m["summary"]["unchanged"].as_u64().unwrap() > 0, "{}", m["summary"]);
    assert!(e.calls("GET /open-apis/drive/explorer/v2/root_folder/meta").await >= finished.len() as u64);

    let bad_runs = runs_of(&e, bad).await;
    assert_once_per_period(&bad_runs);
    assert!(bad_runs.iter().filter(|r| r.3 == "failed").count() >= 3, "{bad_runs:?}");
    let s = e.store.backup_schedules(None).await.unwrap();
    let bad_row = s.iter().find(|s| s.id == bad).unwrap();
    assert_eq!(bad_row.last_status, "failed");
    assert!(bad_row.failures >= 3 && !bad_row.last_error.is_empty(), "{bad_row:?}");
    let good_row = s.iter().find(|s| s.id == good).unwrap();
    assert!(matches!(good_row.last_status.as_str(), "ok" | "partial"), "{good_row:?}");
    assert_eq!(good_row.failures, 0);
    assert!(good_row.next_run_in_ms <= 2000, "the next run time is recorded: {good_row:?}");

    // `status` shows the failing schedule as an alarm.
    let (code, out) = e.wework_out(&["status"]).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.lines().any(|l| l.starts_with("ALARM: schedule")
            && l.contains("FAILED")
            && l.contains("wiki:123456789")),
        "{out}"
    );
    e.sim.shutdown().await;
}
