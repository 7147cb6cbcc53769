//! The control plane end to end: real `wework-archive run` processes, the
//! simulator with live traffic, real MariaDB, and a private Redis server per
//! test (never the shared one on 6379: one test stops its Redis on purpose).
//!
//! Lease 3 s and poll 0.5–1 s keep the suite fast; every wait has a deadline.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mysql_async::prelude::*;
use wework_archive_sim::{FaultKind, FaultSpec, RecordFault, SimConfig};

use crate::common::harness::{
    Harness, Instance, LEASE_SECS, PREFIX, Traffic, eventually, http_get, metrics_at,
};
use crate::common::{assert_table_equals_corpus, stored_messages};

async fn no_key_count(h: &Harness, corp: &str) -> u64 {
    h.sql::<u64>(&format!("SELECT COUNT(*) FROM message_{corp} WHERE decrypt_status = 'no_key'")).await[0]
}

async fn update_flag(h: &Harness, corp: &str) -> i64 {
    h.sql::<i64>(&format!("SELECT `update` FROM corplist WHERE corpid = '{corp}'")).await[0]
}

/// Corps added, keyed, disabled and re-enabled while `run` runs: each change
/// reaches the running service and restarts only that corp.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corp_changes_reach_the_running_service() {
    let faults = FaultSpec::none().with(FaultKind::UnknownVer, 0.03);
    // A small backlog: what is measured is how fast a change reaches the
    // service, not how fast a large backlog decrypts.
    let h = Harness::new(
        "control_changes",
        SimConfig { seed: 61, corps: 3, messages: 60, faults, ..Default::default() },
    )
    .await;
    let manifest = h.sim.manifest();
    let ids: Vec<String> = manifest.corps.iter().map(|c| c.corpid.clone()).collect();
    // Corps 0 and 1 exist when the service starts; corp 2 comes later.
    let mut first_two = manifest.clone();
    first_two.corps.truncate(2);
    let file = h.write("manifest.json", &serde_json::to_string(&first_two).unwrap());
    let (code, out, err) = h.cli(&["corp", "import", "--manifest", &file], &[]).await;
    assert_eq!(code, 0, "{out}{err}");
    let traffic = Traffic::start(&h.sim, vec![0, 1], 1);
    let mut run = h.spawn("solo", 0.5);
    h.wait_caught_up(&ids[..2], Duration::from_secs(60)).await;

    // Added through the CLI: archived within 5 s.
    let c2 = &manifest.corps[2];
    let k1 = h.write("k1.pem", c2.key(1).unwrap());
    let k2 = h.write("k2.pem", c2.key(2).unwrap());
    let (key1, key2) = (format!("1={k1}"), format!("2={k2}"));
    let add = ["corp", "add", "--corpid", &c2.corpid, "--secret", &c2.secret, "--key", &key1, "--key", &key2];
    let (code, out, err) = h.cli(&[&add[..], &["--proxy", &manifest.proxy]].concat(), &[]).await;
    assert_eq!(code, 0, "{out}{err}");
    let cli_done = std::time::SystemTime::now();
    let t0 = Instant::now();
    while h.cursor(&c2.corpid).await == 0 {
        if t0.elapsed() > Duration::from_secs(5) {
            let log = run.log_text();
            let timeline: Vec<&str> = log
                .lines()
                .filter(|l| l.contains(c2.corpid.as_str()) || l.contains("change event"))
                .collect();
            panic!(
                "the added corp is not archived within 5 s (CLI done at {:?} since the epoch):\n{}",
                cli_done.duration_since(std::time::UNIX_EPOCH).unwrap(),
                timeline.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let added = t0.elapsed();
    eprintln!("corp added via the CLI: first batch stored after {added:?}");
    let traffic2 = Traffic::start(&h.sim, vec![2], 1);

    h.wait_caught_up(&ids, Duration::from_secs(60)).await;

    // A key for the version that corp 0's undecryptable records need.
    let withheld = h.sim.withheld_keys().into_iter().find(|k| k.corpid == ids[0]).unwrap();
    let missing = no_key_count(&h, &ids[0]).await;
    assert!(missing > 0, "corp 0 has records for the withheld key version");
    let k3 = h.write("k3.pem", &withheld.private_key_pem);
    let (code, out, err) =
        h.cli(&["corp", "set-key", &ids[0], &format!("{}={k3}", withheld.version)], &[]).await;
    assert_eq!(code, 0, "{out}{err}");
    let redecrypted =
        eventually(Duration::from_secs(10), "redecrypt completes the no_key records", || async {
            no_key_count(&h, &ids[0]).await == 0
        })
        .await;
    eprintln!("key added via the CLI: {missing} undecryptable record(s) completed after {redecrypted:?}");
    assert!(no_key_count(&h, &ids[2]).await > 0, "corp 2 still lacks its version-3 key (control)");

    // Disabled: its worker stops and its lease is given back.
    let (code, out, err) = h.cli(&["corp", "disable", &ids[1]], &[]).await;
    assert_eq!(code, 0, "{out}{err}");
    eventually(Duration::from_secs(5), "the disabled corp's lease is released", || async {
        h.leases(&ids[1..2]).await[0].is_none()
    })
    .await;
    let stopped_at = h.cursor(&ids[1]).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let served = h.sim.corpus().corp(&ids[1]).unwrap().records.last().unwrap().seq;
    assert!(served > stopped_at, "traffic continued for the disabled corp");
    assert_eq!(h.cursor(&ids[1]).await, stopped_at, "a disabled corp is not pulled");

    // Re-enabled by hand in SQL with the seed's update flag: the poll notices.
    h.exec(&format!("UPDATE corplist SET status = 1, `update` = 1 WHERE corpid = '{}'", ids[1])).await;
    let resumed = eventually(Duration::from_secs(10), "update = 1 picked up by the poll", || async {
        h.cursor(&ids[1]).await >= served && update_flag(&h, &ids[1]).await == 0
    })
    .await;
    eprintln!("update=1 by SQL: resumed and flag reset after {resumed:?}");

    // Fenced out: a newer token in the database (another writer claimed the
    // corp) stops this worker at once; the corp is then taken again with a
    // token above the intruder's, and archiving resumes from the cursor.
    let lease_token =
        |v: Option<String>| v.and_then(|v| v.split_once(':').map(|(t, _)| t.parse::<u64>().unwrap()));
    let before = lease_token(h.leases(&ids[..1]).await.remove(0)).unwrap();
    h.exec(&format!(
        "UPDATE corp_state SET fence = fence + 100, owner = 'intruder' WHERE corpid = '{}'",
        ids[0]
    ))
    .await;
    let fenced = eventually(
        Duration::from_secs(10),
        "the fenced-out corp is taken again above the new fence",
        || async { lease_token(h.leases(&ids[..1]).await.remove(0)).is_some_and(|t| t > before + 100) },
    )
    .await;
    eprintln!("fenced out by a newer token: stopped and re-taken above it after {fenced:?}");

    // The final tables equal the corpus; the service stops cleanly and gives its leases back.
    traffic.stop().await;
    traffic2.stop().await;
    h.wait_caught_up(&ids, Duration::from_secs(60)).await;
    // /metrics reflects all of it.
    let m = run.metrics().await;
    assert_eq!(m.value("wework_messages_stored_total", &[]) as u64, total_rows(&h, &ids).await);
    assert_eq!(m.value("wework_redis_connected", &[]), 1.0);
    assert!(m.value("wework_queue_events_total", &[("change", "added")]) >= 1.0);
    assert_eq!(m.value("wework_queue_events_total", &[("change", "key_added")]), 1.0);
    assert_eq!(m.value("wework_queue_events_total", &[("change", "disabled")]), 1.0);
    assert!(m.value("wework_update_flags_cleared_total", &[]) >= 1.0);
    assert!(m.value("wework_lease_lost_total", &[]) >= 1.0, "the fenced-out lease counts as lost");
    assert!(m.value("wework_redecrypt_completed_total", &[]) >= missing as f64);
    assert_eq!(m.by_label("wework_lease_owned", "corp").len(), 3);
    assert_eq!(m.value("wework_workers_running", &[]), 3.0);
    assert_eq!(m.get("wework_undecryptable_records", &[("corp", &ids[0]), ("reason", "no_key")]), None);
    assert_eq!(
        m.value("wework_undecryptable_records", &[("corp", &ids[2]), ("reason", "no_key")]) as u64,
        no_key_count(&h, &ids[2]).await
    );
    for c in &ids {
        assert_eq!(m.value("wework_corp_cursor", &[("corp", c)]) as u64, h.cursor(c).await);
        assert!(m.value("wework_pull_duration_seconds_count", &[("corp", c)]) > 0.0);
        assert!(m.get("wework_corp_cursor_age_seconds", &[("corp", c)]).is_some());
    }
    // Media: the queue by state (from the database) adds up, and the workers' counters are there.
    let jobs = h.sql::<(String, u64)>("SELECT corpid, COUNT(*) FROM media_jobs GROUP BY corpid").await;
    assert_eq!(jobs.len(), 3, "every corp has media jobs");
    for (corp, n) in jobs {
        let by_state: f64 = m.by_label_where("wework_media_jobs", "corp", &corp).values().sum();
        assert_eq!(by_state as u64, n, "{corp}: media jobs by state");
    }
    assert!(m.get("wework_media_chunks_total", &[]).is_some());
    let (status, body) = http_get(&run.http().await, "/readyz").await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = http_get(&run.http().await, "/healthz").await;
    assert_eq!(status, 200);

    run.terminate().await;
    assert!(h.leases(&ids).await.iter().all(Option::is_none), "leases given back on SIGTERM");
    let corpus = h.sim.corpus();
    for c in &corpus.corps[..2] {
        assert_table_equals_corpus(&h.store, c).await;
    }
    // Corp 2 never got its version-3 key: exactly those records stay undecrypted.
    let c = corpus.corp(&ids[2]).unwrap();
    let stored = stored_messages(&h.store, &ids[2]).await;
    assert_eq!(stored.len(), c.records.len());
    for r in &c.records {
        let want = (r.fault != Some(RecordFault::UnknownVer)).then_some(&r.plaintext);
        assert_eq!(stored[&r.msgid].as_ref(), want, "{}", r.msgid);
    }
}

async fn total_rows(h: &Harness, ids: &[String]) -> u64 {
    let mut n = 0;
    for c in ids {
        n += h.sql::<u64>(&format!("SELECT COUNT(*) FROM message_{c}")).await[0];
    }
    n
}

/// Watches the lease records: every sample must name one live (or just killed,
/// within its lease time) instance per corp, and tokens never go backwards.
struct LeaseWatch {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Result<usize, String>>,
}

impl LeaseWatch {
    fn start(
        url: String,
        ids: Vec<String>,
        killed: Arc<std::sync::Mutex<Option<(String, Instant)>>>,
    ) -> LeaseWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let task = tokio::spawn(async move {
            let mut conn =
                redis::Client::open(url).unwrap().get_multiplexed_async_connection().await.unwrap();
            let mut last_token: HashMap<String, u64> = HashMap::new();
            let mut samples = 0;
            while !s.load(Ordering::Relaxed) {
                let mut cmd = redis::cmd("MGET");
                for c in &ids {
                    cmd.arg(format!("{PREFIX}:lease:{c}"));
                }
                let values: Vec<Option<String>> = cmd.query_async(&mut conn).await.unwrap();
                let dead = killed.lock().unwrap().clone();
                for (corp, v) in ids.iter().zip(values) {
                    let Some(v) = v else { continue };
                    let (token, owner) = v.split_once(':').ok_or(format!("{corp}: bad lease {v}"))?;
                    let token: u64 = token.parse().map_err(|_| format!("{corp}: bad token {v}"))?;
                    if !["a", "b", "c"].contains(&owner) {
                        return Err(format!("{corp}: unknown owner {v}"));
                    }
                    if let Some((name, at)) = &dead
                        && owner == name
                        && at.elapsed() > Duration::from_secs_f64(LEASE_SECS + 0.5)
                    {
                        return Err(format!("{corp}: still leased to {name}, killed {:?} ago", at.elapsed()));
                    }
                    let prev = last_token.insert(corp.clone(), token).unwrap_or(0);
                    if token < prev {
                        return Err(format!("{corp}: token went back from {prev} to {token}"));
                    }
                }
                samples += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Ok(samples)
        });
        LeaseWatch { stop, task }
    }

    async fn finish(self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap().unwrap_or_else(|e| panic!("lease records: {e}"))
    }
}

/// Owners per instance from the lease records (only when every corp is owned).
async fn owners(h: &Harness, ids: &[String]) -> Option<BTreeMap<String, Vec<String>>> {
    let mut by: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (c, v) in ids.iter().zip(h.leases(ids).await) {
        let v = v?;
        by.entry(v.split_once(':').unwrap().1.to_owned()).or_default().push(c.clone());
    }
    Some(by)
}

/// Three instances share six corps under live traffic; one is SIGKILLed and
/// its corps move within the lease time; the tables end equal to the corpus.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_share_six_corps_and_survive_a_kill() {
    let h = Harness::new(
        "control_instances",
        SimConfig { seed: 62, corps: 6, messages: 150, ..Default::default() },
    )
    .await;
    let manifest = h.sim.manifest();
    let ids: Vec<String> = manifest.corps.iter().map(|c| c.corpid.clone()).collect();
    wework_archive::cli::corp::import_sim_manifest(&h.store, &h.config(), &manifest).await.unwrap();
    let killed = Arc::new(std::sync::Mutex::new(None));
    let watch = LeaseWatch::start(h.redis.url(), ids.clone(), killed.clone());
    let traffic = Traffic::start(&h.sim, (0..6).collect(), 1);
    let mut instances: BTreeMap<String, Instance> =
        ["a", "b", "c"].into_iter().map(|n| (n.to_owned(), h.spawn(n, 1.0))).collect();

    // Even spread: two corps each, each held under the token the database records.
    let spread = eventually(Duration::from_secs(30), "6 corps spread 2/2/2", || async {
        owners(&h, &ids).await.is_some_and(|o| o.len() == 3 && o.values().all(|v| v.len() == 2))
    })
    .await;
    eprintln!("three instances: 2/2/2 after {spread:?}");
    let by_owner = owners(&h, &ids).await.unwrap();
    // Each token reaches corp_state right after its lease is taken: the
    // database agrees with the lease records (same token, same owner).
    eventually(Duration::from_secs(5), "corp_state.fence/owner match the leases", || async {
        let mut all = true;
        for (c, v) in ids.iter().zip(h.leases(&ids).await) {
            let rows = h
                .sql::<(u64, String)>(&format!("SELECT fence, owner FROM corp_state WHERE corpid = '{c}'"))
                .await;
            all &= v.as_deref().and_then(|v| v.split_once(':')).is_some_and(|(token, owner)| {
                rows.first().is_some_and(|(f, o)| f.to_string() == token && o == owner)
            });
        }
        all
    })
    .await;
    assert_eq!(owners(&h, &ids).await.unwrap(), by_owner, "no corp moved meanwhile");
    for (name, inst) in &mut instances {
        let mut want = by_owner[name].clone();
        want.sort();
        // The gauges are refreshed after each coordinator turn, a moment
        // after the lease records; on a loaded 2-core machine a turn that
        // waits on the database can take seconds: allow that, not more.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let m = inst.metrics().await;
            let mut held: Vec<String> = m.by_label("wework_lease_owned", "corp").into_keys().collect();
            held.sort();
            let live = m.value("wework_instances_live", &[]);
            if (held == want && live == 3.0) || Instant::now() >= deadline {
                assert_eq!(held, want, "{name}'s /metrics agrees with the lease records");
                assert_eq!(live, 3.0);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    h.wait_caught_up(&ids, Duration::from_secs(60)).await;

    // SIGKILL the owner of the first corp: its corps move within the lease time.
    let victim = by_owner.iter().find(|(_, v)| v.contains(&ids[0])).unwrap().0.clone();
    let orphaned = by_owner[&victim].clone();
    *killed.lock().unwrap() = Some((victim.clone(), Instant::now()));
    instances.get_mut(&victim).unwrap().kill9().await;
    let t_kill = Instant::now();
    let takeover =
        eventually(Duration::from_secs(10), "the killed instance's corps are taken over", || async {
            let leases = h.leases(&orphaned).await;
            leases.iter().all(|v| v.as_deref().is_some_and(|v| !v.ends_with(&format!(":{victim}"))))
        })
        .await;
    eprintln!(
        "SIGKILL of {victim}: its {} corps taken over after {takeover:?} (lease {LEASE_SECS} s)",
        orphaned.len()
    );
    assert!(
        takeover <= Duration::from_secs_f64(LEASE_SECS + 1.5),
        "takeover took {takeover:?}, lease time is {LEASE_SECS} s"
    );
    eventually(Duration::from_secs(15), "6 corps spread 3/3", || async {
        owners(&h, &ids).await.is_some_and(|o| o.len() == 2 && o.values().all(|v| v.len() == 3))
    })
    .await;
    eprintln!("two instances: 3/3 after {:?}", t_kill.elapsed());
    // The survivors keep up with the traffic, then the traffic stops.
    h.wait_caught_up(&ids, Duration::from_secs(60)).await;
    traffic.stop().await;
    h.wait_caught_up(&ids, Duration::from_secs(60)).await;
    let samples = watch.finish().await;
    assert!(samples > 50, "lease records sampled {samples} times");
    for (_, mut inst) in instances.into_iter().filter(|(n, _)| *n != victim) {
        inst.terminate().await;
    }
    // Exactly the corpus: every record once, byte for byte.
    let corpus = h.sim.corpus();
    for c in &corpus.corps {
        assert_table_equals_corpus(&h.store, c).await;
        let (rows, seqs) = h
            .sql::<(u64, u64)>(&format!("SELECT COUNT(*), COUNT(DISTINCT seq) FROM message_{}", c.corpid))
            .await[0];
        assert_eq!(rows, seqs, "{}: no seq stored twice", c.corpid);
    }
}

/// Redis stops for 30 s: archiving goes on, the outage shows in /metrics, and
/// when Redis returns (empty) the leases are reclaimed and the queue works again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archiving_goes_on_while_redis_is_down() {
    let mut h = Harness::new(
        "control_redis_down",
        SimConfig { seed: 63, corps: 2, messages: 100, ..Default::default() },
    )
    .await;
    let manifest = h.sim.manifest();
    let ids: Vec<String> = manifest.corps.iter().map(|c| c.corpid.clone()).collect();
    wework_archive::cli::corp::import_sim_manifest(&h.store, &h.config(), &manifest).await.unwrap();
    let traffic = Traffic::start(&h.sim, vec![0, 1], 2);
    // A long poll: after the outage, changes must come through the queue.
    let mut a = h.spawn("a", 120.0);
    let mut b = h.spawn("b", 120.0);
    eventually(Duration::from_secs(30), "one corp each", || async {
        owners(&h, &ids).await.is_some_and(|o| o.len() == 2)
    })
    .await;
    h.wait_caught_up(&ids, Duration::from_secs(60)).await;
    let before = h.leases(&ids).await;

    h.redis.stop();
    let down = Instant::now();
    let mut cursors: Vec<u64> = Vec::new();
    for c in &ids {
        cursors.push(h.cursor(c).await);
    }
    let mut saw_down = false;
    while down.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_secs(5)).await;
        if !saw_down {
            let (ma, mb) = (a.metrics().await, b.metrics().await);
            saw_down = ma.value("wework_redis_connected", &[]) == 0.0
                && mb.value("wework_redis_connected", &[]) == 0.0;
        }
    }
    assert!(saw_down, "/metrics shows Redis down");
    for (c, before) in ids.iter().zip(&cursors) {
        let now = h.cursor(c).await;
        assert!(now > before + 50, "{c}: archiving went on while Redis was down ({before} → {now})");
    }
    assert!(a.log_text().contains("Redis is unreachable"), "the outage is logged");
    h.redis.restart();
    let (a_http, b_http) = (a.http().await, b.http().await);
    let t0 = Instant::now();
    loop {
        let (ma, mb) = (metrics_at(&a_http).await, metrics_at(&b_http).await);
        let leases = h.leases(&ids).await;
        let connected = (ma.value("wework_redis_connected", &[]), mb.value("wework_redis_connected", &[]));
        if connected == (1.0, 1.0) && leases == before {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "after Redis returned: connected {connected:?}, leases {leases:?} (before {before:?})\n\
             a:\n{}\nb:\n{}",
            a.log_text(),
            b.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let back = t0.elapsed();
    eprintln!("Redis back: reconnected and leases reclaimed with the same tokens after {back:?}");
    assert!(a.log_text().contains("Redis is reachable again"));

    // Everything pulled during and after the outage, exactly once.
    traffic.stop().await;
    h.wait_caught_up(&ids, Duration::from_secs(60)).await;
    let corpus = h.sim.corpus();
    for c in &corpus.corps {
        assert_table_equals_corpus(&h.store, c).await;
    }

    // The queue works again (the poll is 120 s: only an event can do this in time).
    let (code, out, err) = h.cli(&["corp", "disable", &ids[0]], &[]).await;
    assert_eq!(code, 0, "{out}{err}");
    let stopped =
        eventually(Duration::from_secs(5), "disable reaches the owner through the queue", || async {
            h.leases(&ids[..1]).await[0].is_none()
        })
        .await;
    eprintln!("disable after the outage: lease released after {stopped:?}");
    // An old tool's entry that names no corp (the seed's watcher restarted
    // everything on any entry) after a hand edit without the update flag:
    // every corp is reconciled with the database.
    h.exec(&format!("UPDATE corplist SET status = 0 WHERE corpid = '{}'", ids[1])).await;
    let mut conn = h.redis_conn().await;
    let _: i64 = redis::cmd("LPUSH")
        .arg("wework:corp:changes")
        .arg("restart please")
        .query_async(&mut conn)
        .await
        .unwrap();
    eventually(Duration::from_secs(5), "an unreadable entry reconciles every corp", || async {
        h.leases(&ids[1..]).await[0].is_none()
    })
    .await;
    let m = metrics_at(&a_http).await;
    assert_eq!(m.value("wework_queue_invalid_total", &[]), 1.0);
    a.terminate().await;
    b.terminate().await;
}

const MASTER_KEY: &str = "8f1e2d3c4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeeff0";

/// Rows inserted by hand in plaintext keep working; `corp seal` seals them in
/// place, is idempotent, refuses without a master key and reports a wrong one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corp_seal_seals_plaintext_rows_in_place() {
    let h =
        Harness::new("control_seal", SimConfig { seed: 64, corps: 1, messages: 120, ..Default::default() })
            .await;
    let m = h.sim.manifest();
    let c = &m.corps[0];
    // As an admin would, in plain SQL (the fallback prikey is version 1's key).
    {
        let mut conn = h.store.conn().await.unwrap();
        conn.exec_drop(
            "INSERT INTO corplist (corpid, secret, corpname, prikey, proxy) VALUES (?, ?, ?, ?, ?)",
            (&c.corpid, &c.secret, &c.corpname, c.key(1).unwrap(), &m.proxy),
        )
        .await
        .unwrap();
        for k in &c.keys {
            conn.exec_drop(
                "INSERT INTO corp_keys (corpid, publickey_ver, private_key) VALUES (?, ?, ?)",
                (&c.corpid, k.version, &k.private_key_pem),
            )
            .await
            .unwrap();
        }
    }
    let stored_values = || async {
        let mut v: Vec<String> = h
            .sql::<(String, Option<String>)>(&format!(
                "SELECT secret, prikey FROM corplist WHERE corpid = '{}'",
                c.corpid
            ))
            .await
            .into_iter()
            .flat_map(|(s, p)| [Some(s), p])
            .flatten()
            .collect();
        v.extend(h.sql::<String>("SELECT private_key FROM corp_keys ORDER BY publickey_ver").await);
        v
    };
    let plain = stored_values().await;

    let (code, _, err) = h.cli(&["corp", "seal"], &[]).await;
    assert_eq!(code, 2, "no master key: an error");
    assert!(err.contains("WEWORK_MASTER_KEY"), "{err}");
    assert_eq!(stored_values().await, plain, "nothing changed without a master key");

    let key = [("WEWORK_MASTER_KEY", MASTER_KEY)];
    let (code, out, err) = h.cli(&["corp", "seal"], &key).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("sealed 5 value(s); 0 already sealed"), "{out}");
    let sealed = stored_values().await;
    assert_eq!(sealed.len(), 4);
    for (s, p) in sealed.iter().zip(&plain) {
        assert!(s.starts_with("wwenc:v2:") && !s.contains(p.as_str()), "{s}");
    }
    let (code, out, _) = h.cli(&["corp", "seal"], &key).await;
    assert_eq!(code, 0);
    assert!(out.contains("sealed 0 value(s); 5 already sealed"), "idempotent: {out}");
    assert_eq!(stored_values().await, sealed, "a second run changes nothing");

    // A wrong master key is reported, not ignored.
    let wrong = [("WEWORK_MASTER_KEY", &"7".repeat(64)[..])];
    let (code, _, err) = h.cli(&["corp", "seal"], &wrong).await;
    assert_eq!(code, 1);
    assert!(err.contains("does not open") && err.contains(&c.corpid), "{err}");

    // A Redis that accepts connections but never answers cannot hang the CLI:
    // the change is committed, and the update flag stands in for the event.
    let mute = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mute_url = format!("redis://{}", mute.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((sock, _)) = mute.accept().await {
            open.push(sock);
        }
    });
    let t0 = Instant::now();
    let (code, out, err) = h
        .cli(&["corp", "enable", &c.corpid], &[("REDIS_URL", &mute_url), ("WEWORK_MASTER_KEY", MASTER_KEY)])
        .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(t0.elapsed() < Duration::from_secs(8), "the CLI waited {:?} for a mute Redis", t0.elapsed());
    assert!(err.contains("setting corplist.update = 1"), "{err}");
    assert_eq!(update_flag(&h, &c.corpid).await, 1);
    held.abort();

    // The sealed corp archives exactly as before.
    let (code, out, err) = h.cli(&["pull", "--corp", &c.corpid, "--until-caught-up"], &key).await;
    assert_eq!(code, 0, "{out}{err}");
    assert_table_equals_corpus(&h.store, &h.sim.corpus().corps[0]).await;
}

/// Every writer claims a corp by one rule (`Store::claim_fence`): a token is
/// ours when the database holds exactly it with our name on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_fencing_rule_for_every_writer() {
    use wework_archive::store::{CorpId, StoreError};
    let (_db, store) = crate::common::TestDb::fresh("ctl_fence").await;
    let corp = CorpId::new("wwfence1").unwrap();
    let lost = |r: Result<u64, StoreError>| match r {
        Err(StoreError::FenceLost { mine, current, .. }) => (mine, current),
        other => panic!("expected FenceLost, got {other:?}"),
    };
    assert_eq!(store.claim_fence(&corp, "a", Some(5)).await.unwrap(), 5);
    assert_eq!(store.claim_fence(&corp, "a", Some(5)).await.unwrap(), 5, "claiming again what is ours");
    assert_eq!(lost(store.claim_fence(&corp, "b", Some(5)).await), (5, 5), "same token, other owner");
    assert_eq!(lost(store.claim_fence(&corp, "a", Some(4)).await), (4, 5), "an older token");
    assert_eq!(store.claim_fence(&corp, "b", Some(7)).await.unwrap(), 7, "a newer token wins");
    assert_eq!(lost(store.claim_fence(&corp, "a", Some(7)).await), (7, 7));
    // Without a lease service the database issues the next token itself.
    assert_eq!(store.claim_fence(&corp, "c", None).await.unwrap(), 8);
    assert_eq!(store.fence(&corp).await.unwrap(), 8);
    let activity = store.activity(&corp).await.unwrap().unwrap();
    assert_eq!(activity.owner, "c");
    assert!(activity.idle_secs >= 0.0 && activity.idle_secs < 60.0, "{activity:?}");
    assert_eq!(store.fences().await.unwrap().get("wwfence1"), Some(&8));
}

/// `--pull-limit` caps every corp's records per GetChatData call, under
/// `corplist.limits` (1000 here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_limit_caps_each_call() {
    use tokio_util::sync::CancellationToken;
    use wework_archive::wecom::ingest::{CorpSpec, RunOptions, pull_corp};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim = wework_archive_sim::Simulator::start(
        listener,
        SimConfig { seed: 47, corps: 1, messages: 95, ..Default::default() },
    )
    .await
    .unwrap();
    let (db, store) = crate::common::TestDb::fresh("ctl_pull_limit").await;
    let media = tempfile::tempdir().unwrap();
    let mut config = crate::common::test_config(&db.url, media.path());
    config.pull_limit = 30;
    let corps =
        wework_archive::cli::corp::import_sim_manifest(&store, &config, &sim.manifest()).await.unwrap();
    let ctx = crate::common::ingest_context(store, config);
    let row = ctx.store.corp(&corps[0]).await.unwrap().unwrap();
    assert_eq!(row.limits, 1000);
    let spec = CorpSpec::load(&ctx.store, &row, &ctx.config.secrets).await.unwrap();
    let report =
        pull_corp(&ctx, spec, RunOptions::until_caught_up(), CancellationToken::new()).await.unwrap();
    let corpus = sim.corpus();
    let records = corpus.corps[0].records.len() as u64;
    assert!(report.fetched >= records, "{report:?}");
    assert_table_equals_corpus(&ctx.store, &corpus.corps[0]).await;
    let calls = ctx.stats.pull_latency.lock().unwrap()[corps[0].as_str()].0;
    assert!(calls >= records.div_ceil(30), "{records} records in {calls} calls of at most 30");
}
