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

use crate::common::{TestDb, binary};

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
    let (db, store) = TestDb::fresh(tag).await;
    let sim_config = FeishuConfig {
        seed: 14,
        tree_nodes: 2000,
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
