//! Operations end to end: `run` started while MariaDB or Redis is down, a
//! corp that fails before pulling, sealing bound to rows and columns, key
//! rotation, and the process's core-dump settings. Private MariaDB and Redis
//! servers on free ports (tests/common/servers.rs), never the shared ones.

use std::process::Stdio;
use std::time::{Duration, Instant};

use mysql_async::prelude::*;
use wework_archive::cli::corp::import_sim_manifest;
use wework_archive::config::{Config, SettingsArgs};
use wework_archive::store::{CorpId, Store};
use wework_archive::wecom::ingest::CorpSpec;
use wework_archive_sim::{SimConfig, Simulator};

use crate::common::servers::{PrivateMariaDb, PrivateRedis};
use crate::common::{TestDb, assert_table_equals_corpus, binary, sdk_lib};

const KEY_A: &str = "a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0";
const KEY_B: &str = "0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20";

async fn sim(seed: u64, corps: usize, messages: usize) -> Simulator {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    Simulator::start(listener, SimConfig { seed, corps, messages, ..Default::default() }).await.unwrap()
}

fn config(db_url: &str, redis_url: &str, master_key: Option<&str>) -> Config {
    Config::resolve(&SettingsArgs {
        database_url: Some(db_url.to_owned()),
        redis_url: Some(redis_url.to_owned()),
        master_key: master_key.map(str::to_owned),
        ..Default::default()
    })
    .unwrap()
}

/// `wework-archive run` with its stderr in a file.
struct Run {
    child: tokio::process::Child,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Run {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- run log ----\n{}", self.log());
        }
    }
}

impl Run {
    fn spawn(db_url: &str, redis_url: &str, extra: &[(&str, &str)]) -> Run {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("run.log");
        let child = tokio::process::Command::new(binary())
            .args(["run", "--idle-secs", "0.2"])
            .env("DATABASE_URL", db_url)
            .env("REDIS_URL", redis_url)
            .env("WEWORK_REDIS_PREFIX", "wwops")
            .env("WEWORK_SDK_LIB", sdk_lib().path())
            .env("WEWORK_CALLS_PER_MINUTE", "60000")
            .env("WEWORK_DECRYPT_THREADS", "2")
            .env("WEWORK_LEASE_SECS", "2")
            .env("WEWORK_POLL_SECS", "0.5")
            .env("MSGFILE_DIR", dir.path().join("msgfile"))
            .env("SEARCH_INDEX_DIR", dir.path().join("search-index"))
            .env("HTTP_LISTEN", "127.0.0.1:0")
            .env("RUST_LOG", "info")
            .envs(extra.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        Run { child, log, _dir: dir }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn http(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = self.log();
            if let Some(rest) = text.split("http listening on ").nth(1) {
                return rest.chars().take_while(|c| !c.is_whitespace()).collect();
            }
            assert!(Instant::now() < deadline, "no HTTP endpoint:\n{text}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn get(&self, path: &str) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = self.http().await;
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut raw)).await.unwrap().unwrap();
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        (head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0), body.to_owned())
    }

    async fn terminate(mut self) {
        let pid = self.child.id().unwrap() as i32;
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let status = tokio::time::timeout(Duration::from_secs(40), self.child.wait())
            .await
            .map(|r| r.map(|s| s.success()));
        let log = self.log();
        assert!(matches!(status, Ok(Ok(true))), "{status:?}\n{log}");
        assert!(!log.contains('\u{1b}'), "ANSI colour codes in a log file:\n{log}");
    }
}

async fn eventually(within: Duration, what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "{what} within {within:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn cursor(store: &Store, corp: &str) -> u64 {
    store.cursor(&CorpId::new(corp).unwrap()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_started_while_mariadb_is_down_waits_then_archives() {
    let mut mariadb = tokio::task::spawn_blocking(PrivateMariaDb::start).await.unwrap();
    let sim = sim(81, 1, 800).await;
    let (db, store) = TestDb::fresh_on(&mariadb.server_url(), "ops_dbdown").await;
    let redis = PrivateRedis::start();
    import_sim_manifest(&store, &config(&db.url, &redis.url(), None), &sim.manifest()).await.unwrap();
    store.close().await;
    mariadb.kill();

    let run = Run::spawn(&db.url, &redis.url(), &[]);
    // No core files: the limit is 0 and the process is not dumpable.
    let pid = run.child.id().unwrap();
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let core = limits.lines().find(|l| l.starts_with("Max core file size")).unwrap();
    assert!(core.split_whitespace().nth(4) == Some("0"), "{core}");
    let (code, body) = run.get("/readyz").await;
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("database"), "{body}");
    tokio::time::sleep(Duration::from_secs(6)).await; // supervisord's startsecs=5
    let (code, _) = run.get("/healthz").await;
    assert_eq!(code, 200, "still alive while waiting:\n{}", run.log());
    assert_eq!(run.log().matches("waiting for the database").count(), 1, "said once:\n{}", run.log());

    let mariadb = tokio::task::spawn_blocking(move || {
        mariadb.run();
        mariadb
    })
    .await
    .unwrap();
    let store = Store::connect(&db.url).await.unwrap();
    let corp = sim.corpus().corps[0].clone();
    let last = corp.records.last().unwrap().seq;
    eventually(Duration::from_secs(90), "archived after the database came back", async || {
        cursor(&store, &corp.corpid).await >= last
    })
    .await;
    eventually(Duration::from_secs(20), "/readyz 200", async || run.get("/readyz").await.0 == 200).await;
    run.terminate().await;
    assert_table_equals_corpus(&store, &corp).await;
    store.close().await;
    drop(db);
    drop(mariadb);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_started_while_redis_is_down_archives_then_leases_resume() {
    let sim = sim(82, 2, 600).await;
    let (db, store) = TestDb::fresh("ops_redisdown").await;
    let mut redis = PrivateRedis::on_free_port(); // not running yet
    import_sim_manifest(&store, &config(&db.url, &redis.url(), None), &sim.manifest()).await.unwrap();
    let run = Run::spawn(&db.url, &redis.url(), &[("WEWORK_INSTANCE", "lone")]);
    let corpus = sim.corpus();
    for c in &corpus.corps {
        let last = c.records.last().unwrap().seq;
        eventually(Duration::from_secs(90), "a lone instance archives without Redis", async || {
            cursor(&store, &c.corpid).await >= last
        })
        .await;
    }
    redis.restart();
    let client = redis::Client::open(redis.url()).unwrap();
    for c in &corpus.corps {
        let key = format!("wwops:lease:{}", c.corpid);
        eventually(Duration::from_secs(30), "the lease resumes in Redis", async || {
            let Ok(mut conn) = client.get_multiplexed_async_connection().await else { return false };
            let v: Option<String> = redis::cmd("GET").arg(&key).query_async(&mut conn).await.unwrap_or(None);
            v.is_some_and(|v| v.ends_with(":lone"))
        })
        .await;
    }
    // Archiving continues under the resumed leases.
    sim.append_messages(0, 50).await.unwrap();
    let c0 = sim.corpus().corps[0].clone();
    let last = c0.records.last().unwrap().seq;
    eventually(Duration::from_secs(60), "new records after Redis returned", async || {
        cursor(&store, &c0.corpid).await >= last
    })
    .await;
    run.terminate().await;
    for c in &sim.corpus().corps {
        assert_table_equals_corpus(&store, c).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corp_that_fails_before_pulling_raises_its_alarm() {
    let sim = sim(83, 1, 50).await;
    let (db, store) = TestDb::fresh("ops_setup").await;
    let redis = PrivateRedis::start();
    import_sim_manifest(&store, &config(&db.url, &redis.url(), Some(KEY_A)), &sim.manifest()).await.unwrap();
    let corp = sim.manifest().corps[0].corpid.clone();
    // Started with another master key: the secret does not open.
    let run = Run::spawn(&db.url, &redis.url(), &[("WEWORK_MASTER_KEY", KEY_B)]);
    eventually(Duration::from_secs(60), "/readyz names the failing corp", async || {
        let (code, body) = run.get("/readyz").await;
        code == 503 && body.contains(&corp) && body.contains("does not open")
    })
    .await;
    // Database-derived numbers come with a 2 s deadline: scrape until they answer.
    eventually(Duration::from_secs(30), "/metrics shows the alarm", async || {
        let (_, metrics) = run.get("/metrics").await;
        metrics.contains(&format!("wework_corp_alarm{{corp=\"{corp}\"}} 1"))
            && metrics.contains(&format!("wework_corp_setup_failing{{corp=\"{corp}\"}} 1"))
    })
    .await;
    let status = tokio::process::Command::new(binary())
        .args(["status"])
        .env("DATABASE_URL", &db.url)
        .env("WEWORK_MASTER_KEY", KEY_B)
        .output()
        .await
        .unwrap();
    let out = String::from_utf8_lossy(&status.stdout);
    assert_eq!(status.status.code(), Some(1), "{out}");
    assert!(out.contains("setup: key version 1: a sealed value does not open"), "{out}");
    run.terminate().await;
}

/// `corp …` through the binary, with the master key in the environment.
async fn cli(db_url: &str, key: Option<&str>, args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    use tokio::io::AsyncWriteExt;
    let mut cmd = tokio::process::Command::new(binary());
    cmd.args(args)
        .env("DATABASE_URL", db_url)
        .env("REDIS_URL", "redis://127.0.0.1:1")
        .env_remove("WEWORK_MASTER_KEY")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(k) = key {
        cmd.env("WEWORK_MASTER_KEY", k);
    }
    let mut child = cmd.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).await.unwrap();
    }
    drop(input);
    let out = child.wait_with_output().await.unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_values_are_bound_rotated_and_never_mixed() {
    let sim = sim(84, 2, 30).await;
    let (db, store) = TestDb::fresh("ops_seal").await;
    let m = sim.manifest();
    let (a, b) = (m.corps[0].corpid.clone(), m.corps[1].corpid.clone());
    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("k1.pem");
    std::fs::write(&pem, m.corps[0].key(1).unwrap()).unwrap();
    let key_arg = format!("1={}", pem.display());
    // The secret from standard input, proxy credentials inside the proxy URL.
    let proxy = "http://proxyuser:proxy-pa55@127.0.0.1:3128";
    let (code, out, err) = cli(
        &db.url,
        Some(KEY_A),
        &["corp", "add", "--corpid", &a, "--secret-file", "-", "--key", &key_arg, "--proxy", proxy],
        Some(&format!("{}\n", m.corps[0].secret)),
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = cli(&db.url, Some(KEY_A), &["corp", "list"], None).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("proxyuser:***@127.0.0.1:3128") && !out.contains("proxy-pa55"), "{out}");
    let row: (String, String) = store
        .conn()
        .await
        .unwrap()
        .exec_first("SELECT secret, proxy FROM corplist WHERE corpid = ?", (&a,))
        .await
        .unwrap()
        .unwrap();
    assert!(row.0.starts_with("wwenc:v2:") && row.1.starts_with("wwenc:v2:"), "{row:?}");
    let secrets = config(&db.url, "redis://127.0.0.1:1", Some(KEY_A)).secrets;
    let spec =
        CorpSpec::load(&store, &store.corp(&CorpId::new(&a).unwrap()).await.unwrap().unwrap(), &secrets)
            .await
            .unwrap();
    assert_eq!(spec.secret, m.corps[0].secret, "one trailing newline dropped");
    assert_eq!(spec.net.proxy, proxy);

    // Under another master key, adding refuses instead of mixing keys.
    let (code, _, err) = cli(
        &db.url,
        Some(KEY_B),
        &["corp", "add", "--corpid", &b, "--secret-file", "-"],
        Some(&m.corps[1].secret),
    )
    .await;
    assert_eq!(code, 2);
    assert!(err.contains("refusing to mix master keys") && err.contains(&a), "{err}");
    let (code, _, err) =
        cli(&db.url, None, &["corp", "add", "--corpid", &b, "--secret-file", "-"], Some("s")).await;
    assert_eq!(code, 2);
    assert!(err.contains("no master key is configured"), "{err}");
    assert!(store.corp(&CorpId::new(&b).unwrap()).await.unwrap().is_none());

    // A sealed value moved to another row, or another column, does not open.
    let (code, _, err) = cli(
        &db.url,
        Some(KEY_A),
        &["corp", "add", "--corpid", &b, "--secret-file", "-"],
        Some(&m.corps[1].secret),
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let mut conn = store.conn().await.unwrap();
    conn.exec_drop(
        "UPDATE corplist dst JOIN corplist src ON src.corpid = ? SET dst.secret = src.secret, dst.proxy = src.secret WHERE dst.corpid = ?",
        (&a, &b),
    )
    .await
    .unwrap();
    let moved = store.corp(&CorpId::new(&b).unwrap()).await.unwrap().unwrap();
    let err = CorpSpec::load(&store, &moved, &secrets).await.unwrap_err().to_string();
    assert!(err.contains("secret") && err.contains("does not open"), "{err}");
    conn.exec_drop("DELETE FROM corplist WHERE corpid = ?", (&b,)).await.unwrap();

    // Rotation: everything re-sealed under B, opened with the old key A from stdin.
    let (code, out, err) =
        cli(&db.url, Some(KEY_B), &["corp", "seal", "--rotate-from", "-"], Some(KEY_A)).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("sealed 3 value(s)"), "secret, proxy, key 1: {out}");
    let (code, out, _) = cli(&db.url, Some(KEY_B), &["corp", "seal"], None).await;
    assert_eq!(code, 0);
    assert!(out.contains("sealed 0 value(s); 3 already sealed"), "{out}");
    let b_secrets = config(&db.url, "redis://127.0.0.1:1", Some(KEY_B)).secrets;
    let row = store.corp(&CorpId::new(&a).unwrap()).await.unwrap().unwrap();
    let spec = CorpSpec::load(&store, &row, &b_secrets).await.unwrap();
    assert_eq!(spec.secret, m.corps[0].secret);
    assert!(CorpSpec::load(&store, &row, &secrets).await.is_err(), "the old key no longer opens them");
}
