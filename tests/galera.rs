//! The archive on a 3-node MariaDB Galera cluster started by the test itself
//! (private `mariadbd` processes with `wsrep_on`, Debian's `galera-4`, rsync
//! state transfers, loopback ports; never the shared server on 3306).
//!
//! Two `wework-archive run` instances write through different nodes: `a`
//! through node 1 only, `b` through "node 2, then node 3". They split the corps
//! and the archive read back from node 3 equals the simulator's corpus. Then,
//! under live traffic:
//! 1. node 1 is SIGKILLed: `a` cannot write, gives its corps away, and `b`
//!    takes them within the lease time plus a few seconds (printed);
//! 2. node 1 restarts, rejoins through a state transfer and catches up; `a`
//!    takes its share again;
//! 3. node 2 is SIGKILLed: `b` moves to node 3 and keeps its corps;
//!
//! and the end state is exact on node 1 and node 3: every record once, byte for byte.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mysql_async::prelude::*;
use wework_archive::config::{Config, SettingsArgs};
use wework_archive::store::{CorpId, Store};
use wework_archive_sim::{SimConfig, Simulator};

use crate::common::harness::{Instance, PrivateRedis, Traffic, eventually};
use crate::common::{assert_table_equals_corpus, binary, sdk_lib};

const LEASE_SECS: f64 = 3.0;
const PREFIX: &str = "wwg";
const DB: &str = "wework_galera";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// One `mariadbd` of the cluster.
struct Node {
    name: String,
    dir: PathBuf,
    port: u16,
    gcomm: u16,
    sst: u16,
    ist: u16,
    child: Option<std::process::Child>,
}

/// Three Galera nodes on loopback; killed (whole process groups) when dropped.
struct Cluster {
    _root: tempfile::TempDir,
    nodes: Vec<Node>,
    user: String,
}

impl Cluster {
    fn start() -> Cluster {
        let root = tempfile::tempdir().unwrap();
        // mariadbd runs as `mysql` when we are root (rsync's daemon drops to
        // an unprivileged user during state transfers and must reach the datadir).
        let as_root = unsafe { libc::geteuid() } == 0;
        let user = if as_root { "mysql".to_owned() } else { std::env::var("USER").unwrap_or_default() };
        if as_root {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let nodes: Vec<Node> = (1..=3)
            .map(|i| Node {
                name: format!("n{i}"),
                dir: root.path().join(format!("n{i}")),
                port: free_port(),
                gcomm: free_port(),
                sst: free_port(),
                ist: free_port(),
                child: None,
            })
            .collect();
        for n in &nodes {
            std::fs::create_dir_all(&n.dir).unwrap();
            if as_root {
                let st = Command::new("chown").args([&format!("{user}:"), n.dir.to_str().unwrap()]).status();
                assert!(st.unwrap().success(), "chown to {user}");
            }
            let st = Command::new("mariadb-install-db")
                .args([
                    "--no-defaults",
                    "--auth-root-authentication-method=normal",
                    &format!("--user={user}"),
                    "--skip-test-db",
                    &format!("--datadir={}", n.dir.join("data").display()),
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("mariadb-install-db (apt-get install mariadb-server galera-4 rsync)");
            assert!(st.success(), "mariadb-install-db for {}", n.name);
        }
        let mut c = Cluster { _root: root, nodes, user };
        c.run(0, true);
        c.wait_synced(0, Duration::from_secs(30));
        c.run(1, false);
        c.run(2, false);
        c.wait_synced(1, Duration::from_secs(60));
        c.wait_synced(2, Duration::from_secs(60));
        c
    }

    fn address(&self) -> String {
        let list: Vec<String> = self.nodes.iter().map(|n| format!("127.0.0.1:{}", n.gcomm)).collect();
        format!("gcomm://{}", list.join(","))
    }

    /// Starts node `i` (bootstrapping a new cluster with `new_cluster`).
    fn run(&mut self, i: usize, new_cluster: bool) {
        use std::os::unix::process::CommandExt;
        let address = self.address();
        let n = &self.nodes[i];
        let provider = ["/usr/lib/galera/libgalera_smm.so", "/usr/lib/libgalera_smm.so"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("the Galera provider (apt-get install galera-4)");
        let mut cmd = Command::new("mariadbd");
        cmd.args([
            "--no-defaults".to_owned(),
            format!("--user={}", self.user),
            format!("--datadir={}", n.dir.join("data").display()),
            format!("--port={}", n.port),
            "--bind-address=127.0.0.1".to_owned(),
            format!("--socket={}", n.dir.join("sock").display()),
            format!("--pid-file={}", n.dir.join("pid").display()),
            // Its own tmpdir: a starting mariadbd deletes every #sql* file in its
            // tmpdir, which would pull temp tables from under the shared server.
            format!("--tmpdir={}", n.dir.display()),
            format!("--log-error={}", n.dir.join("err.log").display()),
            "--innodb-buffer-pool-size=32M".to_owned(),
            "--skip-log-bin".to_owned(),
            "--binlog-format=ROW".to_owned(),
            "--innodb-autoinc-lock-mode=2".to_owned(),
            "--wsrep-on=ON".to_owned(),
            format!("--wsrep-provider={provider}"),
            format!("--wsrep-cluster-address={address}"),
            format!("--wsrep-node-address=127.0.0.1:{}", n.gcomm),
            format!("--wsrep-node-name={}", n.name),
            "--wsrep-sst-method=rsync".to_owned(),
            format!("--wsrep-sst-receive-address=127.0.0.1:{}", n.sst),
            format!(
                "--wsrep-provider-options=gmcast.listen_addr=tcp://127.0.0.1:{};ist.recv_addr=127.0.0.1:{};gcache.size=64M",
                n.gcomm, n.ist
            ),
        ]);
        if new_cluster {
            cmd.arg("--wsrep-new-cluster");
        }
        // A group of its own: SIGKILL takes its state-transfer helpers with it.
        let child =
            cmd.stdout(Stdio::null()).stderr(Stdio::null()).process_group(0).spawn().expect("mariadbd");
        self.nodes[i].child = Some(child);
    }

    /// SIGKILL of node `i` (and its helpers).
    fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            unsafe { libc::kill(-(c.id() as i32), libc::SIGKILL) };
            let _ = c.wait();
        }
    }

    fn server_url(&self, i: usize) -> String {
        format!("mysql://root@127.0.0.1:{}", self.nodes[i].port)
    }

    fn url(&self, nodes: &[usize]) -> String {
        let hosts: Vec<String> = nodes.iter().map(|&i| format!("127.0.0.1:{}", self.nodes[i].port)).collect();
        format!("mysql://root@{}/{DB}", hosts.join(","))
    }

    /// Waits until node `i` says it is Synced.
    fn wait_synced(&self, i: usize, within: Duration) -> Duration {
        let t0 = Instant::now();
        let port = self.nodes[i].port;
        loop {
            let out = Command::new("mariadb")
                .args([
                    "--no-defaults",
                    "-h127.0.0.1",
                    &format!("-P{port}"),
                    "-uroot",
                    "-N",
                    "-e",
                    "SHOW GLOBAL STATUS LIKE 'wsrep_local_state_comment'",
                ])
                .stderr(Stdio::null())
                .output()
                .unwrap();
            if String::from_utf8_lossy(&out.stdout).contains("Synced") {
                return t0.elapsed();
            }
            let log = std::fs::read_to_string(self.nodes[i].dir.join("err.log")).unwrap_or_default();
            assert!(
                t0.elapsed() < within,
                "{} not synced within {within:?}; its log ends:\n{}",
                self.nodes[i].name,
                log.lines()
                    .rev()
                    .take(30)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}

fn env(dir: &Path, db_url: &str, redis: &PrivateRedis) -> Vec<(&'static str, String)> {
    vec![
        ("DATABASE_URL", db_url.to_owned()),
        ("REDIS_URL", redis.url()),
        ("WEWORK_REDIS_PREFIX", PREFIX.into()),
        ("WEWORK_CHANGE_QUEUE", format!("{PREFIX}:changes")),
        ("WEWORK_SDK_LIB", sdk_lib().path().display().to_string()),
        ("WEWORK_CALLS_PER_MINUTE", "60000".into()),
        ("WEWORK_DECRYPT_THREADS", "1".into()),
        ("WEWORK_LEASE_SECS", LEASE_SECS.to_string()),
        ("WEWORK_POLL_SECS", "1".into()),
        ("MSGFILE_DIR", dir.join("msgfile").display().to_string()),
        ("SEARCH_INDEX_DIR", dir.join("search-index").display().to_string()),
        ("HTTP_LISTEN", "127.0.0.1:0".into()),
        ("NO_COLOR", "1".into()),
        ("RUST_LOG", "info".into()),
    ]
}

fn spawn(dir: &Path, name: &str, db_url: &str, redis: &PrivateRedis) -> Instance {
    let log = dir.join(format!("{name}.log"));
    let file = std::fs::File::create(&log).unwrap();
    let child = tokio::process::Command::new(binary())
        .args(["run", "--idle-secs", "0.2"])
        .envs(env(dir, db_url, redis))
        .env("WEWORK_INSTANCE", name)
        .stdout(Stdio::null())
        .stderr(file)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    Instance { name: name.to_owned(), child: Some(child), log, http: None }
}

/// Corps per owner from the lease records (None while some corp has no owner).
async fn owners(
    redis: &mut redis::aio::MultiplexedConnection,
    ids: &[String],
) -> Option<std::collections::BTreeMap<String, Vec<String>>> {
    let mut cmd = redis::cmd("MGET");
    for c in ids {
        cmd.arg(format!("{PREFIX}:lease:{c}"));
    }
    let values: Vec<Option<String>> = cmd.query_async(redis).await.unwrap();
    let mut by = std::collections::BTreeMap::<String, Vec<String>>::new();
    for (c, v) in ids.iter().zip(values) {
        by.entry(v?.split_once(':')?.1.to_owned()).or_default().push(c.clone());
    }
    Some(by)
}

/// Rows of every corp on one node, once it stops changing and holds `want`.
async fn wait_rows(store: &Store, ids: &[String], want: u64, within: Duration, what: &str) {
    eventually(within, what, || async {
        let mut n = 0;
        for c in ids {
            let Ok(mut conn) = store.conn().await else { return false };
            let r: Result<Option<u64>, _> =
                conn.query_first(format!("SELECT COUNT(*) FROM message_{c}")).await;
            n += r.ok().flatten().unwrap_or(0);
        }
        n == want
    })
    .await;
}

async fn assert_exact(store: &Store, corpus: &wework_archive_sim::Corpus, node: &str) {
    for c in &corpus.corps {
        assert_table_equals_corpus(store, c).await;
        let mut conn = store.conn().await.unwrap();
        let (rows, seqs): (u64, u64) = conn
            .query_first(format!("SELECT COUNT(*), COUNT(DISTINCT seq) FROM message_{}", c.corpid))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(rows, seqs, "{node}: {}: a seq stored twice", c.corpid);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn galera_node_loss_moves_corps_and_the_archive_stays_exact() {
    let t_start = Instant::now();
    let mut cluster = tokio::task::spawn_blocking(Cluster::start).await.unwrap();
    eprintln!("galera: 3 nodes synced after {:?}", t_start.elapsed());
    let dir = tempfile::tempdir().unwrap();
    let redis = PrivateRedis::start();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim =
        Simulator::start(listener, SimConfig { seed: 91, corps: 4, messages: 400, ..Default::default() })
            .await
            .unwrap();
    // Setup and all checks read node 3; `a` writes through node 1, `b` through node 2 (then 3).
    let check = Store::open(&cluster.url(&[2])).await.unwrap();
    let config = Config::resolve(&SettingsArgs {
        database_url: Some(cluster.url(&[2])),
        redis_url: Some(redis.url()),
        redis_prefix: Some(PREFIX.into()),
        ..Default::default()
    })
    .unwrap();
    let manifest = sim.manifest();
    let ids: Vec<String> = manifest.corps.iter().map(|c| c.corpid.clone()).collect();
    wework_archive::cli::corp::import_sim_manifest(&check, &config, &manifest).await.unwrap();
    {
        let mut conn = check.conn().await.unwrap();
        // Small batches: the pull lasts long enough to be interrupted.
        conn.query_drop("UPDATE corplist SET limits = 100").await.unwrap();
        let no_pk: Vec<String> = conn
            .query(format!(
                "SELECT t.TABLE_NAME FROM information_schema.TABLES t WHERE t.TABLE_SCHEMA = '{DB}'
                   AND NOT EXISTS (SELECT 1 FROM information_schema.TABLE_CONSTRAINTS k
                     WHERE k.TABLE_SCHEMA = t.TABLE_SCHEMA AND k.TABLE_NAME = t.TABLE_NAME
                       AND k.CONSTRAINT_TYPE = 'PRIMARY KEY')"
            ))
            .await
            .unwrap();
        assert!(no_pk.is_empty(), "tables without a primary key: {no_pk:?}");
        assert_eq!(check.write_set_limit().await.unwrap(), Some(2147483647), "Galera's default");
    }
    let mut rconn =
        redis::Client::open(redis.url()).unwrap().get_multiplexed_async_connection().await.unwrap();

    let mut a = spawn(dir.path(), "a", &cluster.url(&[0]), &redis);
    let mut b = spawn(dir.path(), "b", &cluster.url(&[1, 2]), &redis);
    eventually(Duration::from_secs(30), "4 corps spread 2/2 over a and b", || async {
        owners(&mut rconn.clone(), &ids)
            .await
            .is_some_and(|o| o.len() == 2 && o.values().all(|v| v.len() == 2))
    })
    .await;
    let total = sim.corpus().corps.iter().map(|c| c.records.len() as u64).sum();
    wait_rows(&check, &ids, total, Duration::from_secs(60), "the backlog archived (read on node 3)").await;
    assert_exact(&check, &sim.corpus(), "node 3").await;
    eprintln!("galera: backlog of {total} records exact on node 3 after {:?}", t_start.elapsed());

    // 1. Node 1 (a's only host) dies under live traffic: a's corps move to b.
    let traffic = Traffic::start(&sim, (0..4).collect(), 2);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = owners(&mut rconn, &ids).await.unwrap();
    let a_corps = before["a"].clone();
    cluster.kill(0);
    let t_kill = Instant::now();
    let takeover = eventually(
        Duration::from_secs_f64(LEASE_SECS + 6.0),
        "a's corps taken over by b after node 1 died",
        || async { owners(&mut rconn.clone(), &a_corps).await.is_some_and(|o| o.keys().all(|k| k == "b")) },
    )
    .await;
    eprintln!(
        "galera: node 1 SIGKILLed; a's {} corps taken over by b after {takeover:?} (lease {LEASE_SECS} s)",
        a_corps.len()
    );
    // Where the time went (timestamps of both logs): a's verdict and give-away, b's takeover.
    let wanted = |log: String, words: &[&str]| -> Vec<String> {
        log.lines().filter(|l| words.iter().any(|w| l.contains(w))).map(str::to_owned).collect()
    };
    for l in wanted(a.log_text(), &["cannot be written", "giving the corp away"]) {
        eprintln!("galera: a: {l}");
    }
    for l in wanted(b.log_text(), &["lease acquired"]).iter().rev().take(a_corps.len()) {
        eprintln!("galera: b: {l}");
    }
    let m = a.metrics().await;
    assert_eq!(m.value("wework_db_writable", &[]), 0.0, "a says it cannot write");
    assert!(m.value("wework_lease_given_away_total", &[]) >= a_corps.len() as f64);
    assert_eq!(m.value("wework_leases_held", &[]), 0.0);
    // b archives all four corps meanwhile.
    let corpus = sim.corpus();
    for c in &a_corps {
        let last = corpus.corp(c).unwrap().records.last().unwrap().seq;
        let corp = CorpId::new(c).unwrap();
        eventually(Duration::from_secs(30), "b pulls a's corps", || async {
            check.cursor(&corp).await.is_ok_and(|s| s >= last)
        })
        .await;
    }

    // 2. Node 1 restarts and catches up by state transfer; a takes its share again.
    cluster.run(0, false);
    let rejoin = tokio::task::block_in_place(|| cluster.wait_synced(0, Duration::from_secs(60)));
    eprintln!(
        "galera: node 1 rejoined and synced {rejoin:?} after its restart ({:?} after the kill)",
        t_kill.elapsed()
    );
    let back = eventually(Duration::from_secs(20), "a takes corps again (2/2)", || async {
        owners(&mut rconn.clone(), &ids)
            .await
            .is_some_and(|o| o.len() == 2 && o.values().all(|v| v.len() == 2))
    })
    .await;
    eprintln!("galera: a holds its share again {back:?} after node 1 synced");
    assert_eq!(a.metrics().await.value("wework_db_writable", &[]), 1.0);

    // 3. Node 2 (b's first host) dies: b moves to node 3 and keeps its corps.
    // (read when the spread is settled: a lease may be free for a moment while b hands one over)
    let t0 = Instant::now();
    let b_held = loop {
        if let Some(o) = owners(&mut rconn, &ids).await
            && o.len() == 2
            && o.values().all(|v| v.len() == 2)
        {
            break o["b"].clone();
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "the spread did not settle at 2/2");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let b_tokens: Vec<Option<String>> = {
        let mut cmd = redis::cmd("MGET");
        for c in &b_held {
            cmd.arg(format!("{PREFIX}:lease:{c}"));
        }
        cmd.query_async(&mut rconn).await.unwrap()
    };
    cluster.kill(1);
    eventually(Duration::from_secs(10), "b fails over to node 3", || async {
        b.log_text().contains("database host failover")
    })
    .await;
    tokio::time::sleep(Duration::from_secs_f64(LEASE_SECS)).await;
    let mut cmd = redis::cmd("MGET");
    for c in &b_held {
        cmd.arg(format!("{PREFIX}:lease:{c}"));
    }
    let now: Vec<Option<String>> = cmd.query_async(&mut rconn).await.unwrap();
    assert_eq!(now, b_tokens, "b kept its leases (same tokens) across the failover:\n{}", b.log_text());
    assert_eq!(b.metrics().await.value("wework_db_writable", &[]), 1.0);

    // The traffic stops; everything is archived exactly, on node 3 and on the rejoined node 1.
    traffic.stop().await;
    let corpus = sim.corpus();
    let total: u64 = corpus.corps.iter().map(|c| c.records.len() as u64).sum();
    wait_rows(&check, &ids, total, Duration::from_secs(60), "every record archived (node 3)").await;
    for c in &corpus.corps {
        let last = c.records.last().unwrap().seq;
        let corp = CorpId::new(&c.corpid).unwrap();
        eventually(Duration::from_secs(30), "cursors at the end", || async {
            check.cursor(&corp).await.is_ok_and(|s| s >= last)
        })
        .await;
    }
    assert_exact(&check, &corpus, "node 3").await;
    let node1 = Store::connect(&format!("{}/{DB}", cluster.server_url(0))).await.unwrap();
    wait_rows(&node1, &ids, total, Duration::from_secs(30), "node 1 caught up").await;
    assert_exact(&node1, &corpus, "node 1").await;
    eprintln!("galera: {total} records exact on node 1 and node 3; whole test {:?}", t_start.elapsed());
    a.terminate().await;
    b.terminate().await;
    node1.close().await;
    check.close().await;
}

/// A multi-host URL whose first host is dead connects to the next one, and
/// every connection of the store goes there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_first_host_is_skipped() {
    let (db, _store) = crate::common::TestDb::fresh("galera_hosts").await;
    let (scheme_user, rest) = db.url.split_once('@').expect("a user in TEST_DB_SERVER");
    let dead = free_port();
    let url = format!("{scheme_user}@127.0.0.1:{dead},{rest}");
    let store = Store::open(&url).await.unwrap();
    assert_ne!(store.active_host(), format!("127.0.0.1:{dead}"));
    assert!(store.ping().await);
    store.writable().await.unwrap();
    assert_eq!(store.write_set_limit().await.unwrap(), None, "not a Galera node");
    let n: Option<u64> =
        store.conn().await.unwrap().query_first("SELECT COUNT(*) FROM corplist").await.unwrap();
    assert_eq!(n, Some(0));
    // Only dead hosts: a clear error, not a hang.
    let url = format!("{scheme_user}@127.0.0.1:{dead},127.0.0.1:{}/x", free_port());
    let t0 = Instant::now();
    assert!(Store::open(&url).await.is_err());
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    store.close().await;
}

/// `migrate` serialises on a lock row (GET_LOCK only locks one Galera node):
/// concurrent runs all succeed, an expired lock is taken over, a live one is
/// waited for, and tables without a primary key get one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_lock_a_row_and_give_every_table_a_primary_key() {
    use wework_archive::store::migrate::migrate;
    let (_db, store) = crate::common::TestDb::fresh("galera_migrate").await;
    let runs: Vec<_> = (0..4)
        .map(|_| {
            let s = store.clone();
            tokio::spawn(async move { migrate(&s).await })
        })
        .collect();
    for r in runs {
        assert_eq!(r.await.unwrap().unwrap(), Vec::<u32>::new(), "nothing left to apply");
    }
    let mut conn = store.conn().await.unwrap();
    let left: Option<u64> = conn.query_first("SELECT COUNT(*) FROM schema_lock").await.unwrap();
    assert_eq!(left, Some(0), "the lock row is deleted after use");
    // A holder that died long ago: its lock has expired and is taken over.
    conn.query_drop("INSERT INTO schema_lock VALUES ('migrate', 'ghost', NOW(3) - INTERVAL 1 SECOND)")
        .await
        .unwrap();
    migrate(&store).await.unwrap();
    // A live holder: waited for until it expires (2 s).
    conn.query_drop("INSERT INTO schema_lock VALUES ('migrate', 'ghost', NOW(3) + INTERVAL 2 SECOND)")
        .await
        .unwrap();
    let t0 = Instant::now();
    migrate(&store).await.unwrap();
    assert!(
        t0.elapsed() >= Duration::from_millis(1500),
        "did not wait for the live lock: {:?}",
        t0.elapsed()
    );
    // Tables an older tool created without a primary key get one.
    conn.query_drop("CREATE TABLE legacy_plain (a INT, b VARCHAR(10))").await.unwrap();
    conn.query_drop("CREATE TABLE legacy_auto (id INT NOT NULL AUTO_INCREMENT, x INT, UNIQUE KEY (id))")
        .await
        .unwrap();
    conn.query_drop("INSERT INTO legacy_plain VALUES (1, 'x'), (1, 'x')").await.unwrap();
    migrate(&store).await.unwrap();
    let pk = |t: &'static str| {
        let store = store.clone();
        async move {
            let mut c = store.conn().await.unwrap();
            let cols: Vec<String> = c
                .query(format!(
                    "SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE
                     WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = '{t}' AND CONSTRAINT_NAME = 'PRIMARY'"
                ))
                .await
                .unwrap();
            cols
        }
    };
    assert_eq!(pk("legacy_plain").await, ["pk_id"]);
    assert_eq!(pk("legacy_auto").await, ["id"]);
    assert_eq!(pk("corp_state").await, ["corpid"]);
    let rows: Option<u64> = conn.query_first("SELECT COUNT(*) FROM legacy_plain").await.unwrap();
    assert_eq!(rows, Some(2), "rows kept");
    assert!(
        wework_archive::store::primary_keys::tables_without_primary_key(&store).await.unwrap().is_empty()
    );
}
