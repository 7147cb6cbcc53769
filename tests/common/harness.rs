//! The control-plane harness: real `wework-archive run` processes
//! ([`Instance`]) against one test's own database, Redis, temp dir and
//! simulator ([`Harness`]), live traffic, and waiting with deadlines.
//! Used by tests/control.rs and tests/galera.rs.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mysql_async::prelude::*;
use wework_archive::config::{Config, SettingsArgs};
use wework_archive::store::{CorpId, Store};
use wework_archive_sim::{SimConfig, Simulator};

use super::prometheus::{Metrics, parse_prometheus};
use super::{TestDb, binary, sdk_lib};

pub(crate) const LEASE_SECS: f64 = 3.0;
pub(crate) const PREFIX: &str = "wwt";

/// A Redis server of this test's own (shared with the Galera tests).
pub(crate) use super::servers::PrivateRedis;

/// One `wework-archive run` process; killed when dropped.
pub(crate) struct Instance {
    pub(crate) name: String,
    pub(crate) child: Option<tokio::process::Child>,
    pub(crate) log: PathBuf,
    pub(crate) http: Option<String>,
}

impl Instance {
    /// Its HTTP address, from its log.
    pub(crate) async fn http(&mut self) -> String {
        if let Some(a) = &self.http {
            return a.clone();
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            if let Some(rest) = text.split("http listening on ").nth(1) {
                let addr: String = rest.chars().take_while(|c| !c.is_whitespace()).collect();
                self.http = Some(addr.clone());
                return addr;
            }
            assert!(Instant::now() < deadline, "{} did not start its HTTP endpoint:\n{text}", self.name);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub(crate) async fn metrics(&mut self) -> Metrics {
        metrics_at(&self.http().await).await
    }

    fn pid(&self) -> i32 {
        self.child.as_ref().and_then(|c| c.id()).expect("running") as i32
    }

    /// SIGKILL: no chance to give leases back.
    pub(crate) async fn kill9(&mut self) {
        unsafe { libc::kill(self.pid(), libc::SIGKILL) };
        if let Some(mut c) = self.child.take() {
            let _ = c.wait().await;
        }
    }

    /// SIGTERM and wait: the graceful stop must exit 0.
    pub(crate) async fn terminate(&mut self) {
        unsafe { libc::kill(self.pid(), libc::SIGTERM) };
        let mut c = self.child.take().unwrap();
        let status = tokio::time::timeout(Duration::from_secs(40), c.wait()).await;
        let log = self.log_text();
        match status {
            Ok(Ok(s)) => assert!(s.success(), "{} exited with {s:?}:\n{log}", self.name),
            _ => panic!("{} did not stop within 40 s of SIGTERM:\n{log}", self.name),
        }
    }

    pub(crate) fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.start_kill();
        }
    }
}

/// A failing test shows what its instances warned about: their logs live in
/// the temp dir, which goes with the harness, and a CI log is all there is
/// to read afterwards.
impl Drop for Harness {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let Ok(entries) = std::fs::read_dir(self.dir.path()) else { return };
        let mut logs: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .collect();
        logs.sort();
        for log in logs {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let lines: Vec<&str> = text
                .lines()
                .filter(|l| [" WARN ", " ERROR ", "lease released"].iter().any(|k| l.contains(k)))
                .collect();
            let skip = lines.len().saturating_sub(60);
            eprintln!(
                "--- {} ({} warnings, errors and releases; last {}):",
                log.display(),
                lines.len(),
                lines.len() - skip
            );
            for l in &lines[skip..] {
                eprintln!("    {l}");
            }
        }
    }
}

/// Everything one test needs: its own database, Redis, temp dir and simulator.
pub(crate) struct Harness {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) db: TestDb,
    pub(crate) store: Store,
    pub(crate) redis: PrivateRedis,
    pub(crate) sim: Simulator,
}

impl Harness {
    pub(crate) async fn new(tag: &str, sim: SimConfig) -> Harness {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sim = Simulator::start(listener, sim).await.unwrap();
        let (db, store) = TestDb::fresh(tag).await;
        Harness { dir: tempfile::tempdir().unwrap(), db, store, redis: PrivateRedis::start(), sim }
    }

    pub(crate) fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("DATABASE_URL", self.db.url.clone()),
            ("REDIS_URL", self.redis.url()),
            ("WEWORK_REDIS_PREFIX", PREFIX.into()),
            ("WEWORK_SDK_LIB", sdk_lib().path().display().to_string()),
            ("WEWORK_CALLS_PER_MINUTE", "60000".into()),
            ("WEWORK_DECRYPT_THREADS", "2".into()),
            ("WEWORK_LEASE_SECS", LEASE_SECS.to_string()),
            ("MSGFILE_DIR", self.dir.path().join("msgfile").display().to_string()),
            ("NO_COLOR", "1".into()),
            ("RUST_LOG", "info".into()),
        ]
    }

    /// The settings the CLI would resolve (for library calls in setup).
    pub(crate) fn config(&self) -> Config {
        Config::resolve(&SettingsArgs {
            database_url: Some(self.db.url.clone()),
            redis_url: Some(self.redis.url()),
            redis_prefix: Some(PREFIX.into()),
            ..Default::default()
        })
        .unwrap()
    }

    pub(crate) fn spawn(&self, name: &str, poll_secs: f64) -> Instance {
        let log = self.dir.path().join(format!("{name}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let child = tokio::process::Command::new(binary())
            .args(["run", "--idle-secs", "0.2"])
            .envs(self.env())
            .env("WEWORK_INSTANCE", name)
            .env("WEWORK_POLL_SECS", poll_secs.to_string())
            .env("HTTP_LISTEN", "127.0.0.1:0")
            .env("SEARCH_INDEX_DIR", self.dir.path().join(format!("search-index-{name}")))
            .stdout(Stdio::null())
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        Instance { name: name.to_owned(), child: Some(child), log, http: None }
    }

    /// Runs a CLI command to completion (status, stdout, stderr).
    pub(crate) async fn cli(&self, args: &[&str], extra_env: &[(&str, &str)]) -> (i32, String, String) {
        let out = tokio::process::Command::new(binary())
            .args(args)
            .envs(self.env())
            .envs(extra_env.iter().copied())
            .output()
            .await
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    pub(crate) async fn redis_conn(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.redis.url()).unwrap().get_multiplexed_async_connection().await.unwrap()
    }

    /// Lease values of `corps` (None = free).
    pub(crate) async fn leases(&self, corps: &[String]) -> Vec<Option<String>> {
        let mut conn = self.redis_conn().await;
        let mut cmd = redis::cmd("MGET");
        for c in corps {
            cmd.arg(format!("{PREFIX}:lease:{c}"));
        }
        cmd.query_async(&mut conn).await.unwrap()
    }

    pub(crate) async fn cursor(&self, corp: &str) -> u64 {
        self.store.cursor(&CorpId::new(corp).unwrap()).await.unwrap()
    }

    pub(crate) async fn sql<T: FromRow + Send + 'static>(&self, q: &str) -> Vec<T> {
        self.store.conn().await.unwrap().query(q).await.unwrap()
    }

    pub(crate) async fn exec(&self, q: &str) {
        self.store.conn().await.unwrap().query_drop(q).await.unwrap()
    }

    /// Waits until each corp's cursor reaches the last record the simulator serves now.
    pub(crate) async fn wait_caught_up(&self, corps: &[String], within: Duration) {
        let corpus = self.sim.corpus();
        let deadline = Instant::now() + within;
        for c in corps {
            let last = corpus.corp(c).unwrap().records.last().unwrap().seq;
            loop {
                let cursor = self.cursor(c).await;
                if cursor >= last {
                    break;
                }
                assert!(Instant::now() < deadline, "{c}: cursor {cursor} did not reach {last} in {within:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    pub(crate) fn write(&self, name: &str, text: &str) -> String {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    }
}

/// Live traffic: appends records to some corps every 200 ms until stopped.
pub(crate) struct Traffic {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Traffic {
    pub(crate) fn start(sim: &Simulator, corps: Vec<usize>, per_tick: usize) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let (s, sim) = (stop.clone(), sim.clone());
        let task = tokio::spawn(async move {
            while !s.load(Ordering::Relaxed) {
                for &c in &corps {
                    sim.append_messages(c, per_tick).await.unwrap();
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        Traffic { stop, task }
    }

    pub(crate) async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap();
    }
}

/// Scrapes and strictly parses `/metrics`.
pub(crate) async fn metrics_at(addr: &str) -> Metrics {
    let (status, body) = http_get(addr, "/metrics").await;
    assert_eq!(status, 200, "{body}");
    parse_prometheus(&body).unwrap_or_else(|e| panic!("/metrics of {addr} is not valid: {e}\n{body}"))
}

pub(crate) async fn http_get(addr: &str, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut raw)).await.unwrap().unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        dechunk(body)
    } else {
        body.to_owned()
    };
    (status, body)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n").unwrap();
        let n = usize::from_str_radix(size.trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.push_str(&rest[..n]);
        body = &rest[n + 2..];
    }
}

/// Poll until `f` holds, or fail with `what` after `within`; returns how long it took.
pub(crate) async fn eventually<F, Fut>(within: Duration, what: &str, mut f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let t0 = Instant::now();
    while !f().await {
        assert!(t0.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    t0.elapsed()
}
