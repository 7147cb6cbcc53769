//! Ingest end to end: the real SDK pulls from the simulator through its proxy
//! argument, records are decrypted and stored in real MariaDB.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use mysql_async::prelude::*;
use rand::{Rng, SeedableRng};
use tokio_util::sync::CancellationToken;
use wework_archive::cli::corp::import_sim_manifest;
use wework_archive::store::CorpId;
use wework_archive::wecom::ingest::redecrypt::redecrypt_corp;
use wework_archive::wecom::ingest::{CorpSpec, IngestContext, RunOptions, pull_corp};
use wework_archive_sim::{FaultKind, FaultSpec, RecordFault, SimConfig, Simulator};

use crate::common::{TestDb, assert_table_equals_corpus, binary, ingest_context, test_config};

async fn start_sim(config: SimConfig) -> Simulator {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    Simulator::start(listener, config).await.unwrap()
}

async fn pull_all(ctx: &IngestContext, corps: &[CorpId]) {
    let mut tasks = Vec::new();
    for corpid in corps {
        let ctx = ctx.clone();
        let corpid = corpid.clone();
        tasks.push(tokio::spawn(async move {
            let row = ctx.store.corp(&corpid).await.unwrap().unwrap();
            let spec = CorpSpec::load(&ctx.store, &row, &ctx.config.secrets).await.unwrap();
            pull_corp(&ctx, spec, RunOptions::until_caught_up(), CancellationToken::new()).await.unwrap()
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

async fn setup(tag: &str, sim: &Simulator) -> (TestDb, IngestContext, Vec<CorpId>, tempfile::TempDir) {
    let (db, store) = TestDb::fresh(tag).await;
    let media = tempfile::tempdir().unwrap();
    let config = test_config(&db.url, media.path());
    let corps = import_sim_manifest(&store, &config, &sim.manifest()).await.unwrap();
    (db, ingest_context(store, config), corps, media)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_corps_of_20000_with_rotation_equal_the_corpus() {
    let sim = start_sim(SimConfig { seed: 41, corps: 3, messages: 20_000, ..Default::default() }).await;
    let (_db, ctx, corps, _media) = setup("ingest_full", &sim).await;
    pull_all(&ctx, &corps).await;
    let corpus = sim.corpus();
    let mut types = std::collections::BTreeSet::new();
    let mut versions = std::collections::BTreeSet::new();
    for corp in &corpus.corps {
        assert_eq!(assert_table_equals_corpus(&ctx.store, corp).await, 20_000);
        for r in &corp.records {
            types.insert(r.msgtype().unwrap_or("switch"));
            versions.insert(r.publickey_ver);
        }
    }
    assert!(types.len() >= 32, "corpus covers every type: {types:?}");
    assert!(versions.len() >= 2, "key rotation: {versions:?}");
    // Stored types match too, and every row decrypted.
    let mut conn = ctx.store.conn().await.unwrap();
    for corp in &corps {
        let bad: u64 = conn
            .query_first(format!(
                "SELECT COUNT(*) FROM {} WHERE decrypt_status <> 'ok'",
                corp.message_table()
            ))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(bad, 0, "{corp}");
        let cursor = ctx.store.cursor(corp).await.unwrap();
        let last = corpus.corp(corp.as_str()).unwrap().records.last().unwrap().seq;
        assert_eq!(cursor, last, "{corp}: cursor is the last stored seq");
    }
    // A second pull finds nothing new and stores nothing twice.
    let stored_before = ctx.stats.stored();
    pull_all(&ctx, &corps).await;
    assert_eq!(ctx.stats.stored(), stored_before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_records_are_kept_marked_and_redecrypted_once_the_key_arrives() {
    let faults = FaultSpec::none()
        .with(FaultKind::ShortMsg, 0.01)
        .with(FaultKind::BadBase64, 0.01)
        .with(FaultKind::UnknownVer, 0.02)
        .with(FaultKind::WrongKey, 0.01);
    let sim = start_sim(SimConfig { seed: 42, corps: 1, messages: 3000, faults, ..Default::default() }).await;
    let (_db, ctx, corps, _media) = setup("ingest_bad", &sim).await;
    pull_all(&ctx, &corps).await;
    let corpus = sim.corpus();
    let corp = &corpus.corps[0];
    let corpid = &corps[0];

    let mut conn = ctx.store.conn().await.unwrap();
    let rows: Vec<(String, String, Option<String>)> = conn
        .query(format!("SELECT msgid, decrypt_status, encrypt_chat_msg FROM {}", corpid.message_table()))
        .await
        .unwrap();
    let status: BTreeMap<String, (String, Option<String>)> =
        rows.into_iter().map(|(m, s, e)| (m, (s, e))).collect();
    assert_eq!(status.len(), corp.records.len(), "every record stored, bad ones too");
    let mut seen = BTreeMap::new();
    for r in &corp.records {
        let (st, enc) = &status[&r.msgid];
        let want = match r.fault {
            None => "ok",
            Some(RecordFault::ShortMsg) => "bad_message",
            Some(RecordFault::BadBase64) => "bad_random_key",
            Some(RecordFault::UnknownVer) => "no_key",
            Some(RecordFault::WrongKey) => "wrong_key",
            Some(other) => panic!("{other:?} is not enabled in this test"),
        };
        assert_eq!(st, want, "{} {:?}", r.msgid, r.fault);
        if r.fault.is_some() {
            assert!(enc.is_some(), "ciphertext kept for {}", r.msgid);
        }
        *seen.entry(want).or_insert(0) += 1;
    }
    for want in ["bad_message", "bad_random_key", "no_key", "wrong_key"] {
        assert!(seen.get(want).copied().unwrap_or(0) > 0, "fault {want} present: {seen:?}");
    }
    // The cursor moved past the bad records.
    assert_eq!(ctx.store.cursor(corpid).await.unwrap(), corp.records.last().unwrap().seq);

    // Add the withheld key, redecrypt: the no_key records complete.
    let withheld = sim.withheld_keys();
    let key = withheld.iter().find(|k| k.corpid == corpid.as_str()).expect("a withheld key");
    ctx.store.set_key(corpid, key.version, &key.private_key_pem).await.unwrap();
    let report = redecrypt_corp(&ctx, corpid).await.unwrap();
    assert_eq!(report.completed, seen["no_key"], "{report:?}");
    let stored = crate::common::stored_messages(&ctx.store, corpid.as_str()).await;
    for r in corp.records.iter().filter(|r| r.fault == Some(RecordFault::UnknownVer)) {
        assert_eq!(stored[&r.msgid].as_deref(), Some(&r.plaintext[..]), "{}", r.msgid);
    }
    let after: Vec<(String, u64)> = ctx.store.decrypt_status_counts(corpid).await.unwrap();
    assert!(!after.iter().any(|(s, _)| s == "no_key"), "{after:?}");
    // Running it again changes nothing.
    let again = redecrypt_corp(&ctx, corpid).await.unwrap();
    assert_eq!(again.completed, 0);
}

/// Runs `wework-archive pull` for one corp in a child process.
fn pull_command(db_url: &str, corpid: &str) -> Command {
    let mut cmd = Command::new(binary());
    cmd.args(["pull", "--corp", corpid, "--until-caught-up"])
        .env("DATABASE_URL", db_url)
        .env("WEWORK_SDK_LIB", crate::common::sdk_lib().path())
        .env("WEWORK_CALLS_PER_MINUTE", "60000")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_ten_random_moments_then_restart_matches_a_clean_run() {
    let sim = start_sim(SimConfig { seed: 43, corps: 1, messages: 8000, ..Default::default() }).await;
    let (db, ctx, corps, _media) = setup("ingest_crash", &sim).await;
    let corpid = corps[0].clone();
    // Small batches: many commits, so kills land before, inside and after them.
    let mut conn = ctx.store.conn().await.unwrap();
    conn.exec_drop("UPDATE corplist SET limits = 250 WHERE corpid = ?", (corpid.as_str(),)).await.unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut kills = 0;
    for _ in 0..10 {
        let mut child = pull_command(&db.url, corpid.as_str()).spawn().unwrap();
        let wait = Duration::from_millis(rng.random_range(150..1200));
        tokio::time::sleep(wait).await;
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            kills += 1;
        }
        child.wait().unwrap();
    }
    assert!(kills >= 5, "most runs were killed mid-way ({kills})");
    let status = pull_command(&db.url, corpid.as_str()).status().unwrap();
    assert!(status.success());
    let corpus = sim.corpus();
    assert_table_equals_corpus(&ctx.store, &corpus.corps[0]).await;
    assert_eq!(ctx.store.cursor(&corpid).await.unwrap(), corpus.corps[0].records.last().unwrap().seq);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_corpid_is_refused_and_nothing_changes() {
    let (db, store) = TestDb::fresh("ingest_hostile").await;
    let hostile = "ww1`; DROP TABLE corplist; --";
    let out = Command::new(binary())
        .args(["corp", "add", "--corpid", hostile, "--secret", "s"])
        .env("DATABASE_URL", &db.url)
        .env("REDIS_URL", "redis://127.0.0.1:6379")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a plain identifier"), "{err}");
    let mut conn = store.conn().await.unwrap();
    let n: u64 = conn.query_first("SELECT COUNT(*) FROM corplist").await.unwrap().unwrap();
    assert_eq!(n, 0);
    // The same id inserted by hand is listed as invalid and never archived.
    conn.exec_drop("INSERT INTO corplist (corpid, secret) VALUES (?, 's')", (hostile,)).await.unwrap();
    let out = Command::new(binary()).args(["corp", "list"]).env("DATABASE_URL", &db.url).output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("INVALID corp id"));
    let out = Command::new(binary())
        .args(["pull", "--corp", hostile, "--until-caught-up"])
        .env("DATABASE_URL", &db.url)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let tables: Vec<String> = conn
        .exec("SELECT table_name FROM information_schema.tables WHERE table_schema = ?", (&db.name,))
        .await
        .unwrap();
    assert!(tables.iter().any(|t| t == "corplist"), "{tables:?}");
    assert!(!tables.iter().any(|t| t.starts_with("message_")), "{tables:?}");
}

use crate::common::servers::PrivateMariaDb;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_restarted_mid_run_loses_nothing() {
    let mut mariadb = tokio::task::spawn_blocking(PrivateMariaDb::start).await.unwrap();
    let sim = start_sim(SimConfig { seed: 44, corps: 1, messages: 6000, ..Default::default() }).await;
    let (db, store) = TestDb::fresh_on(&mariadb.server_url(), "ingest_restart").await;
    let media = tempfile::tempdir().unwrap();
    let config = test_config(&db.url, media.path());
    let corps = import_sim_manifest(&store, &config, &sim.manifest()).await.unwrap();
    let corpid = corps[0].clone();
    let mut conn = store.conn().await.unwrap();
    conn.exec_drop("UPDATE corplist SET limits = 200 WHERE corpid = ?", (corpid.as_str(),)).await.unwrap();
    drop(conn);
    let ctx = ingest_context(store.clone(), config);
    let row = ctx.store.corp(&corpid).await.unwrap().unwrap();
    let spec = CorpSpec::load(&ctx.store, &row, &ctx.config.secrets).await.unwrap();
    let run = {
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let mut opts = RunOptions::until_caught_up();
            opts.backoff_cap = Duration::from_secs(1);
            pull_corp(&ctx, spec, opts, CancellationToken::new()).await
        })
    };
    // Let some batches land, then take the database away for a while.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while ctx.stats.stored() < 600 {
        assert!(std::time::Instant::now() < deadline, "no progress before the restart");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    mariadb.kill();
    let stored_at_kill = ctx.stats.stored();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!run.is_finished(), "the ingester waits for the database instead of failing");
    let mariadb = tokio::task::spawn_blocking(move || {
        mariadb.run();
        mariadb
    })
    .await
    .unwrap();
    let report = tokio::time::timeout(Duration::from_secs(180), run)
        .await
        .expect("pull finishes after the restart")
        .unwrap()
        .expect("pull succeeds after the restart");
    assert!(report.stored > 0 && ctx.stats.stored() > stored_at_kill);
    let corpus = sim.corpus();
    assert_table_equals_corpus(&ctx.store, &corpus.corps[0]).await;
    assert_eq!(ctx.store.cursor(&corpid).await.unwrap(), corpus.corps[0].records.last().unwrap().seq);
    drop(mariadb);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_archives_live_traffic_and_stops_gracefully_on_sigterm() {
    let sim =
        start_sim(SimConfig { seed: 45, corps: 2, messages: 1500, rate: Some(50.0), ..Default::default() })
            .await;
    let (db, ctx, corps, media) = setup("ingest_run", &sim).await;
    let index = tempfile::tempdir().unwrap();
    let mut child = Command::new(binary())
        .args(["run", "--idle-secs", "0.2"])
        .env("DATABASE_URL", &db.url)
        .env("MSGFILE_DIR", media.path())
        .env("SEARCH_INDEX_DIR", index.path())
        .env("WEWORK_SDK_LIB", crate::common::sdk_lib().path())
        .env("WEWORK_CALLS_PER_MINUTE", "60000")
        .env("HTTP_LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Live traffic keeps arriving; the service keeps up with it.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let mut behind = 0;
        for c in &sim.corpus().corps {
            let cursor = ctx.store.cursor(&CorpId::new(&c.corpid).unwrap()).await.unwrap();
            let served_seq = c.records.last().unwrap().seq;
            if cursor < served_seq.saturating_sub(200) || cursor < 1500 {
                behind += 1;
            }
        }
        if behind == 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "run did not keep up with live traffic");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap()).await.unwrap();
    assert!(status.success(), "graceful stop exits 0: {status:?}");
    // Everything stored so far is consistent with the corpus: no duplicates,
    // every stored record exact, nothing below the cursor missing.
    let corpus = sim.corpus();
    for (c, id) in corpus.corps.iter().zip(&corps) {
        let cursor = ctx.store.cursor(id).await.unwrap();
        let stored = crate::common::stored_messages(&ctx.store, &c.corpid).await;
        for r in c.records.iter().filter(|r| r.seq <= cursor) {
            assert_eq!(
                stored.get(&r.msgid).and_then(|d| d.as_deref()),
                Some(&r.plaintext[..]),
                "{}",
                r.msgid
            );
        }
    }
}

#[test]
fn envelope_items_with_missing_fields_are_kept_and_marked() {
    use wework_archive::store::messages::DecryptStatus;
    use wework_archive::wecom::decrypt::decrypt_item;
    use wework_archive::wecom::envelope::ChatItem;
    use wework_archive::wecom::keys::KeyRing;
    let lib = crate::common::sdk_lib();
    let ring = KeyRing::default();
    let item = ChatItem {
        seq: Some(5),
        msgid: None,
        publickey_ver: Some(1),
        encrypt_random_key: None,
        encrypt_chat_msg: Some("abc".into()),
        raw: serde_json::json!({"seq": 5, "encrypt_chat_msg": "abc"}),
    };
    let d = decrypt_item(lib, &ring, &item);
    assert_eq!(d.message.decrypt_status, DecryptStatus::Incomplete);
    assert!(d.message.msgid.starts_with("missing_msgid_5_"), "{}", d.message.msgid);
    assert!(d.message.text.contains("incomplete envelope item"));
    assert_eq!(decrypt_item(lib, &ring, &item).message.msgid, d.message.msgid, "stable synthetic id");
    // Complete item, but no key for its version.
    let item = ChatItem {
        msgid: Some("m1".into()),
        encrypt_random_key: Some("AAAA".into()),
        encrypt_chat_msg: Some("0123456789abcdef".into()),
        ..item
    };
    let d = decrypt_item(lib, &ring, &item);
    assert_eq!(d.message.decrypt_status, DecryptStatus::NoKey);
    assert_eq!(d.message.encrypt_chat_msg.as_deref(), Some("0123456789abcdef"));
}

/// The conversation list as it was computed before the summary (grouped over
/// the whole message table on every request), keyed by kind and ids folded the
/// way the column collation compares them (case, trailing spaces).
async fn grouped_conversations(
    store: &wework_archive::store::Store,
    corpid: &CorpId,
) -> BTreeMap<String, (u64, i64)> {
    let table = corpid.message_table();
    let mut conn = store.conn().await.unwrap();
    let fold = |s: &str| s.trim_end_matches(' ').to_lowercase();
    let mut out = BTreeMap::new();
    let rooms: Vec<(String, u64, i64)> = conn
        .query(format!(
            "SELECT roomid, COUNT(*), MAX(msgtime) FROM {table} WHERE roomid <> '' GROUP BY roomid"
        ))
        .await
        .unwrap();
    for (r, n, t) in rooms {
        out.insert(format!("room {}", fold(&r)), (n, t));
    }
    let pairs: Vec<(Option<String>, Option<String>, u64, i64)> = conn
        .query(format!(
            "SELECT LEAST(msgfrom, r), GREATEST(msgfrom, r), COUNT(*), MAX(msgtime) FROM (
                 SELECT msgfrom, msgtime, JSON_UNQUOTE(JSON_EXTRACT(tolist, '$[0]')) AS r
                 FROM {table} WHERE roomid = '' AND decrypt_status = 'ok' AND action <> 'switch'
             ) t WHERE r IS NOT NULL GROUP BY 1, 2"
        ))
        .await
        .unwrap();
    for (a, b, n, t) in pairs {
        out.insert(format!("pair {} {}", fold(&a.unwrap()), fold(&b.unwrap())), (n, t));
    }
    let (n, t): (u64, Option<i64>) = conn
        .query_first(format!(
            "SELECT COUNT(*), MAX(msgtime) FROM {table} WHERE decrypt_status NOT IN ('ok', 'unparsed')"
        ))
        .await
        .unwrap()
        .unwrap();
    if n > 0 {
        out.insert("undecrypted".to_owned(), (n, t.unwrap_or(0)));
    }
    out
}

/// The list the browser shows, keyed like [`grouped_conversations`].
async fn listed_conversations(
    store: &wework_archive::store::Store,
    corpid: &CorpId,
) -> BTreeMap<String, (u64, i64)> {
    use wework_archive::store::browse::Conversation;
    let fold = |s: &str| s.trim_end_matches(' ').to_lowercase();
    let list = store.conversations(corpid, "").await.unwrap();
    let mut out = BTreeMap::new();
    for c in &list {
        let key = match &c.conversation {
            Conversation::Room { roomid } => format!("room {}", fold(roomid)),
            Conversation::Pair { a, b } => format!("pair {} {}", fold(a), fold(b)),
            Conversation::Undecrypted => "undecrypted".to_owned(),
        };
        assert!(out.insert(key.clone(), (c.messages, c.last_msgtime)).is_none(), "{key} listed twice");
    }
    assert!(list.windows(2).all(|w| w[0].last_msgtime >= w[1].last_msgtime), "newest first");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_conversation_summary_equals_the_grouped_table_after_ingest_replay_redecrypt_and_rebuild() {
    use wework_archive::store::messages::{DecryptStatus, NewMessage};
    let faults = FaultSpec::none()
        .with(FaultKind::ShortMsg, 0.01)
        .with(FaultKind::BadBase64, 0.01)
        .with(FaultKind::UnknownVer, 0.03)
        .with(FaultKind::WrongKey, 0.01);
    let sim =
        start_sim(SimConfig { seed: 1520, corps: 1, messages: 3000, faults, ..Default::default() }).await;
    let (_db, ctx, corps, _media) = setup("ingest_convsum", &sim).await;
    let corpid = &corps[0];
    pull_all(&ctx, &corps).await;
    let grouped = grouped_conversations(&ctx.store, corpid).await;
    let count =
        |m: &BTreeMap<String, (u64, i64)>, prefix: &str| m.keys().filter(|k| k.starts_with(prefix)).count();
    assert!(count(&grouped, "room ") > 0 && count(&grouped, "pair ") > 0, "{grouped:?}");
    let undecrypted_before = grouped["undecrypted"].0;
    assert_eq!(listed_conversations(&ctx.store, corpid).await, grouped, "after the ingest");

    // Records outside the pull (the quarantine replay's path): ids the collation
    // folds into one room or one pair, a switch record, an unparsed one, one
    // without recipients, an undecrypted one newer than everything, and a
    // duplicate of a stored msgid (not counted twice).
    let record =
        |msgid: &str, roomid: &str, from: &str, to: &str, action: &str, status: DecryptStatus, t: i64| {
            NewMessage {
                msgid: msgid.to_owned(),
                publickey_ver: 1,
                seq: 0,
                action: action.to_owned(),
                msgfrom: from.to_owned(),
                tolist: to.to_owned(),
                msgtype: "text".to_owned(),
                msgtime: t,
                text: String::new(),
                sdkfield: String::new(),
                msgdata: Some(b"{}".to_vec()),
                status: 0,
                roomid: roomid.to_owned(),
                decrypt_status: status,
                decrypt_code: 0,
                encrypt_random_key: None,
                encrypt_chat_msg: None,
            }
        };
    let far = 4_000_000_000_000;
    let ok = DecryptStatus::Ok;
    let stored_msgid: String = {
        let mut conn = ctx.store.conn().await.unwrap();
        conn.query_first(format!("SELECT msgid FROM {} ORDER BY id LIMIT 1", corpid.message_table()))
            .await
            .unwrap()
            .unwrap()
    };
    let extra = vec![
        record("x1", "RoomX", "u1", "[]", "send", ok, far),
        record("x2", "roomx ", "u2", "[]", "send", ok, far + 1),
        record("x3", "", "Zed", "[\"amy\"]", "send", ok, far + 2),
        record("x4", "", "AMY", "[\"zed \"]", "send", ok, far + 3),
        record("x5", "", "zed", "[\"amy\"]", "switch", ok, far + 4),
        record("x6", "", "zed", "[\"amy\"]", "send", DecryptStatus::Unparsed, far + 5),
        record("x7", "", "zed", "[]", "send", ok, far + 6),
        record("x8", "", "", "", "", DecryptStatus::NoKey, far + 7),
        record(&stored_msgid, "RoomX", "u1", "[]", "send", ok, far + 8),
    ];
    let inserted = ctx.store.insert_messages(corpid, &extra, &[]).await.unwrap();
    assert_eq!(inserted, 8);
    let grouped = grouped_conversations(&ctx.store, corpid).await;
    assert_eq!(grouped["room roomx"], (2, far + 1));
    assert_eq!(grouped["pair amy zed"], (2, far + 3));
    assert_eq!(grouped["undecrypted"], (undecrypted_before + 1, far + 7));
    assert_eq!(listed_conversations(&ctx.store, corpid).await, grouped, "after the replay");

    // A record leaving the undecrypted bucket takes its time along: x8 is the
    // newest undecrypted record; completed through the redecrypt path, it joins
    // RoomX and the bucket's last time falls back to the newest one left.
    let x8_id: u64 = {
        let mut conn = ctx.store.conn().await.unwrap();
        conn.query_first(format!("SELECT id FROM {} WHERE msgid = 'x8'", corpid.message_table()))
            .await
            .unwrap()
            .unwrap()
    };
    let done = record("x8", "RoomX", "u3", "[]", "send", ok, far - 5);
    assert!(ctx.store.complete_undecrypted(corpid, x8_id, &done, &[]).await.unwrap());
    let grouped = grouped_conversations(&ctx.store, corpid).await;
    assert_eq!(grouped["room roomx"], (3, far + 1));
    assert_eq!(grouped["undecrypted"].0, undecrypted_before);
    assert!(grouped["undecrypted"].1 < far, "{:?}", grouped["undecrypted"]);
    assert_eq!(listed_conversations(&ctx.store, corpid).await, grouped, "after completing x8");

    // Redecrypt with the withheld key: the no_key records move from the
    // undecrypted bucket into their rooms and pairs; the other faults stay.
    let withheld = sim.withheld_keys();
    let key = withheld.iter().find(|k| k.corpid == corpid.as_str()).expect("a withheld key");
    ctx.store.set_key(corpid, key.version, &key.private_key_pem).await.unwrap();
    let report = redecrypt_corp(&ctx, corpid).await.unwrap();
    assert!(report.completed > 0, "{report:?}");
    let grouped = grouped_conversations(&ctx.store, corpid).await;
    assert!(grouped["undecrypted"].0 < undecrypted_before, "{report:?}");
    assert_eq!(listed_conversations(&ctx.store, corpid).await, grouped, "after the redecrypt");

    // Every pair's pages, walked to the end, hold exactly the records the
    // sender-wide scan selected (what a pair page always showed).
    use wework_archive::store::browse::{Conversation, PageCursor};
    let list = ctx.store.conversations(corpid, "").await.unwrap();
    let pairs: Vec<(String, String)> = list
        .iter()
        .filter_map(|c| match &c.conversation {
            Conversation::Pair { a, b } => Some((a.clone(), b.clone())),
            _ => None,
        })
        .take(40)
        .chain([("AMY".to_owned(), "Zed".to_owned()), ("zed".to_owned(), "zed".to_owned())])
        .collect();
    let mut conn = ctx.store.conn().await.unwrap();
    for (a, b) in &pairs {
        let want: Vec<u64> = conn
            .exec(
                format!(
                    "SELECT id FROM {} WHERE roomid = '' AND (
                         (msgfrom = ? AND (JSON_CONTAINS(tolist, JSON_QUOTE(?)) OR action = 'switch'))
                      OR (msgfrom = ? AND (JSON_CONTAINS(tolist, JSON_QUOTE(?)) OR action = 'switch')))
                     ORDER BY msgtime, id",
                    corpid.message_table()
                ),
                (a, b, b, a),
            )
            .await
            .unwrap();
        let conv = Conversation::pair(a, b);
        let (mut got, mut after) = (Vec::new(), PageCursor { msgtime: i64::MIN, id: 0 });
        loop {
            let page = ctx.store.conversation_page(corpid, &conv, after, None, 37).await.unwrap();
            let Some(last) = page.last() else { break };
            after = PageCursor { msgtime: last.msgtime, id: last.id };
            got.extend(page.iter().map(|r| r.id));
        }
        assert!(!want.is_empty(), "{a} {b}");
        assert_eq!(got, want, "pages of {a} ↔ {b}");
    }
    drop(conn);

    // An archive from before the summary: the first use builds it from the table.
    {
        let mut conn = ctx.store.conn().await.unwrap();
        conn.exec_drop("DELETE FROM conversations WHERE corpid = ?", (corpid.as_str(),)).await.unwrap();
        conn.exec_drop("DELETE FROM conversation_summaries WHERE corpid = ?", (corpid.as_str(),))
            .await
            .unwrap();
    }
    ctx.store.forget_message_tables();
    assert_eq!(listed_conversations(&ctx.store, corpid).await, grouped, "after the rebuild");
}
