//! Shared test setup: the real SDK, test data, child processes.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, ExitStatus};

use wework_archive::wecom::sdk::Library;

/// Root of the repository.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The real SDK, loaded once per test process. `scripts/test.sh` fetches it;
/// a test run without it fails loudly rather than skipping.
pub fn sdk_lib() -> &'static Library {
    let path = std::env::var_os("WEWORK_SDK_LIB")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("lib/libWeWorkFinanceSdk_C.so"));
    Library::load(&path).unwrap_or_else(|e| panic!("{e}"))
}

/// One entry of tests/data/vectors.json (copied from shared/sdk/vectors.json).
#[derive(Debug, serde::Deserialize)]
pub struct Vector {
    pub plaintext: String,
    pub encrypt_key: String,
    pub encrypt_chat_msg: String,
    pub params: VectorParams,
}

#[derive(Debug, serde::Deserialize)]
pub struct VectorParams {
    pub k1: String,
    pub pre_len: i64,
    pub end_len: i64,
    pub s_len: i64,
}

pub fn vectors() -> Vec<Vector> {
    let text = std::fs::read_to_string(repo().join("tests/data/vectors.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Runs one test of this binary alone in a child process, with extra
/// environment, and returns its exit status. Used for what must not share a
/// process: RSS measurements and inputs that abort.
pub fn run_test_in_child(name: &str, env: &[(&str, &str)]) -> (ExitStatus, String) {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .args([name, "--exact", "--include-ignored", "--nocapture", "--test-threads=1"])
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status, text)
}

/// Resident set size of this process in KiB.
pub fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

use std::sync::Arc;

use wework_archive::config::{Config, SettingsArgs};
use wework_archive::store::Store;
use wework_archive::wecom::ingest::IngestContext;

/// A database of its own for one test, unique to this process (`wwt_<tag>_<pid>`,
/// so concurrent test runs on one server cannot drop each other's data), and
/// dropped again when the test ends.
pub struct TestDb {
    pub url: String,
    pub name: String,
    server: String,
}

/// The server the tests' databases live on: `TEST_DB_SERVER`, else root with
/// an empty password on 127.0.0.1:3306. scripts/test.sh sets it when
/// scripts/services.sh had to use a dedicated user on an existing server.
pub fn db_server() -> String {
    std::env::var("TEST_DB_SERVER").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".to_owned())
}

impl TestDb {
    pub async fn fresh(tag: &str) -> (TestDb, Store) {
        Self::fresh_on(&db_server(), tag).await
    }

    pub async fn fresh_on(server: &str, tag: &str) -> (TestDb, Store) {
        use mysql_async::prelude::*;
        let name = format!("wwt_{tag}_{}", std::process::id());
        let pool = mysql_async::Pool::new(server);
        let mut conn = pool
            .get_conn()
            .await
            .expect("the test MariaDB server (TEST_DB_SERVER; bash scripts/services.sh)");
        conn.query_drop(format!("DROP DATABASE IF EXISTS `{name}`")).await.unwrap();
        drop(conn);
        pool.disconnect().await.unwrap();
        let url = format!("{server}/{name}");
        let store = Store::open(&url).await.unwrap();
        (TestDb { url, name, server: server.to_owned() }, store)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        use mysql_async::prelude::*;
        let (server, name) = (self.server.clone(), self.name.clone());
        // Drop runs inside async tests: use a runtime of its own on another thread.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let pool = mysql_async::Pool::new(server.as_str());
                if let Ok(mut conn) = pool.get_conn().await {
                    let _ = conn.query_drop(format!("DROP DATABASE IF EXISTS `{name}`")).await;
                }
                let _ = pool.disconnect().await;
            });
        })
        .join();
    }
}

/// Settings for a test: its database, its media root, short timers.
pub fn test_config(db_url: &str, msgfile: &std::path::Path) -> Config {
    let args = SettingsArgs {
        database_url: Some(db_url.to_owned()),
        msgfile_dir: Some(msgfile.to_owned()),
        calls_per_minute: Some(60_000),
        instance: Some(format!("test-{}", std::process::id())),
        ..Default::default()
    };
    Config::resolve(&args).unwrap()
}

pub fn ingest_context(store: Store, config: Config) -> IngestContext {
    IngestContext::new(store, sdk_lib(), Arc::new(config))
}

/// The release or debug binary built for these tests.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_wework-archive"))
}

/// Stored (msgid → msgdata) of one corp's table.
pub async fn stored_messages(
    store: &Store,
    corpid: &str,
) -> std::collections::HashMap<String, Option<Vec<u8>>> {
    use mysql_async::prelude::*;
    let mut conn = store.conn().await.unwrap();
    let rows: Vec<(String, Option<Vec<u8>>)> =
        conn.query(format!("SELECT msgid, msgdata FROM `message_{corpid}`")).await.unwrap();
    let n = rows.len();
    let map: std::collections::HashMap<_, _> = rows.into_iter().collect();
    assert_eq!(map.len(), n, "duplicate msgids in message_{corpid}");
    map
}

/// Asserts that a corp's table holds exactly the simulator's good records,
/// byte for byte, and returns how many rows it has in all.
pub async fn assert_table_equals_corpus(store: &Store, corp: &wework_archive_sim::CorpCorpus) -> usize {
    let stored = stored_messages(store, &corp.corpid).await;
    let mut good = 0;
    for r in corp.good_records() {
        good += 1;
        match stored.get(&r.msgid) {
            Some(Some(data)) => {
                assert!(data == &r.plaintext, "{}: msgdata differs for {}", corp.corpid, r.msgid)
            }
            Some(None) => panic!("{}: {} stored without plaintext", corp.corpid, r.msgid),
            None => panic!("{}: {} (seq {}) missing", corp.corpid, r.msgid, r.seq),
        }
    }
    assert_eq!(stored.len(), corp.records.len(), "{}: rows vs corpus records ({good} good)", corp.corpid);
    stored.len()
}
pub mod harness;
pub mod prometheus;
pub mod servers;
