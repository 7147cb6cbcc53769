//! Tamper evidence: the hash chain is extended by real ingest (real SDK,
//! simulator, MariaDB) and by `redecrypt`, and `verify` names the first record
//! that was altered, deleted, inserted or given another seq.

use mysql_async::prelude::*;
use tokio_util::sync::CancellationToken;
use wework_archive::archive::verify::{Finding, verify_corp};
use wework_archive::cli::corp::import_sim_manifest;
use wework_archive::store::CorpId;
use wework_archive::wecom::ingest::redecrypt::redecrypt_corp;
use wework_archive::wecom::ingest::{CorpSpec, IngestContext, RunOptions, pull_corp};
use wework_archive_sim::{FaultKind, FaultSpec, SimConfig, Simulator};

use crate::common::{TestDb, binary, ingest_context, test_config};

async fn ingested(
    tag: &str,
    config: SimConfig,
) -> (Simulator, TestDb, IngestContext, CorpId, tempfile::TempDir) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim = Simulator::start(listener, config).await.unwrap();
    let (db, store) = TestDb::fresh(tag).await;
    let media = tempfile::tempdir().unwrap();
    let config = test_config(&db.url, media.path());
    let corps = import_sim_manifest(&store, &config, &sim.manifest()).await.unwrap();
    let ctx = ingest_context(store, config);
    let corpid = corps[0].clone();
    pull(&ctx, &corpid).await;
    (sim, db, ctx, corpid, media)
}

async fn pull(ctx: &IngestContext, corpid: &CorpId) {
    let mut conn = ctx.store.conn().await.unwrap();
    // Several batches, so the chain spans commits.
    conn.exec_drop("UPDATE corplist SET limits = 300 WHERE corpid = ?", (corpid.as_str(),)).await.unwrap();
    let row = ctx.store.corp(corpid).await.unwrap().unwrap();
    let spec = CorpSpec::load(&ctx.store, &row, &ctx.config.secrets).await.unwrap();
    pull_corp(ctx, spec, RunOptions::until_caught_up(), CancellationToken::new()).await.unwrap();
}

async fn count(ctx: &IngestContext, sql: String) -> u64 {
    let mut conn = ctx.store.conn().await.unwrap();
    conn.query_first(sql).await.unwrap().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_and_redecrypt_extend_a_chain_that_verifies() {
    let faults = FaultSpec::none().with(FaultKind::UnknownVer, 0.03).with(FaultKind::ShortMsg, 0.01);
    let (sim, _db, ctx, corpid, _media) =
        ingested("chain_ok", SimConfig { seed: 151, corps: 1, messages: 1500, faults, ..Default::default() })
            .await;
    let rows = count(&ctx, format!("SELECT COUNT(*) FROM {}", corpid.message_table())).await;
    assert_eq!(rows, 1500);
    let report = verify_corp(&ctx.store, &corpid, 0).await.unwrap();
    assert_eq!(report.finding, None, "{report:?}");
    assert_eq!((report.links, report.records, report.head.pos), (1500, 1500, 1500));

    // A second pull stores nothing and adds no links.
    pull(&ctx, &corpid).await;
    assert_eq!(ctx.store.chain_head(&corpid).await.unwrap().pos, 1500);

    // redecrypt appends one link per rewritten record; nothing is rewritten.
    let key = sim.withheld_keys().into_iter().find(|k| k.corpid == corpid.as_str()).unwrap();
    ctx.store.set_key(&corpid, key.version, &key.private_key_pem).await.unwrap();
    let before: Vec<_> = ctx.store.chain_links(&corpid, 0, 5000).await.unwrap();
    let r = redecrypt_corp(&ctx, &corpid).await.unwrap();
    assert!(r.completed > 10, "{r:?}");
    let after = ctx.store.chain_links(&corpid, 0, 5000).await.unwrap();
    assert_eq!(&after[..before.len()], &before[..], "earlier links are untouched");
    let added = &after[before.len()..];
    // One link per row it rewrote: at least every completed one, at most every attempt.
    assert!((r.completed..=r.attempted).contains(&(added.len() as u64)), "{r:?} {}", added.len());
    assert!(added.iter().all(|l| l.kind == "redecrypt"));
    let report = verify_corp(&ctx.store, &corpid, 0).await.unwrap();
    assert_eq!(report.finding, None, "{report:?}");
    // Verifying from a seq in the middle checks the rest only.
    let mid = before[700].seq;
    let part = verify_corp(&ctx.store, &corpid, mid).await.unwrap();
    assert_eq!(part.finding, None, "{part:?}");
    assert_eq!(part.records, 800);
    // `status --json` shows the head.
    let out = std::process::Command::new(binary())
        .args(["status", "--json"])
        .env("DATABASE_URL", &ctx.config.database_url)
        .output()
        .unwrap();
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let corp = &status["corps"][0];
    assert_eq!(corp["chain_length"], after.len() as u64);
    assert_eq!(corp["chain_head"], after.last().unwrap().link_hash.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_names_each_kind_of_tampering() {
    let (_sim, db, ctx, corpid, _media) =
        ingested("chain_tamper", SimConfig { seed: 152, corps: 1, messages: 900, ..Default::default() })
            .await;
    let table = corpid.message_table();
    let mut conn = ctx.store.conn().await.unwrap();
    let seqs: Vec<(u64, String)> =
        conn.query(format!("SELECT seq, msgid FROM {table} ORDER BY id")).await.unwrap();
    let clean = verify_corp(&ctx.store, &corpid, 0).await.unwrap();
    assert_eq!(clean.finding, None, "{clean:?}");
    let finding = || async { verify_corp(&ctx.store, &corpid, 0).await.unwrap().finding };

    // A changed msgdata.
    let (seq, msgid) = seqs[400].clone();
    let original: Option<Vec<u8>> = conn
        .exec_first(format!("SELECT msgdata FROM {table} WHERE msgid = ?"), (&msgid,))
        .await
        .unwrap()
        .unwrap();
    let mut edited = original.clone().unwrap();
    let at = edited.len() / 2;
    edited[at] ^= 0x01;
    conn.exec_drop(format!("UPDATE {table} SET msgdata = ? WHERE msgid = ?"), (&edited, &msgid))
        .await
        .unwrap();
    assert_eq!(finding().await, Some(Finding::Altered { msgid: msgid.clone(), seq }));
    conn.exec_drop(format!("UPDATE {table} SET msgdata = ? WHERE msgid = ?"), (&original, &msgid))
        .await
        .unwrap();
    assert_eq!(finding().await, None);

    // A reordered seq: two records swap their seqs.
    let ((s1, m1), (s2, m2)) = (seqs[200].clone(), seqs[201].clone());
    conn.exec_drop(format!("UPDATE {table} SET seq = ? WHERE msgid = ?"), (s2, &m1)).await.unwrap();
    conn.exec_drop(format!("UPDATE {table} SET seq = ? WHERE msgid = ?"), (s1, &m2)).await.unwrap();
    assert_eq!(
        finding().await,
        Some(Finding::Reordered { msgid: m1.clone(), chained_seq: s1, stored_seq: s2 })
    );
    conn.exec_drop(format!("UPDATE {table} SET seq = ? WHERE msgid = ?"), (s1, &m1)).await.unwrap();
    conn.exec_drop(format!("UPDATE {table} SET seq = ? WHERE msgid = ?"), (s2, &m2)).await.unwrap();
    assert_eq!(finding().await, None);

    // An inserted row (a copy of a real one under a new msgid).
    conn.query_drop(format!(
        "INSERT INTO {table} (msgid, publickey_ver, seq, action, msgfrom, tolist, msgtype, msgtime, text, sdkfield,
             msgdata, roomid, decrypt_status)
         SELECT 'forged-1', publickey_ver, seq + 1, action, msgfrom, tolist, msgtype, msgtime, text, sdkfield,
             msgdata, roomid, decrypt_status FROM {table} ORDER BY id DESC LIMIT 1"
    ))
    .await
    .unwrap();
    let last_seq = seqs.last().unwrap().0;
    assert_eq!(finding().await, Some(Finding::Inserted { msgid: "forged-1".into(), seq: last_seq + 1 }));
    conn.query_drop(format!("DELETE FROM {table} WHERE msgid = 'forged-1'")).await.unwrap();
    assert_eq!(finding().await, None);

    // An edited chain link is found even when the row is untouched.
    conn.exec_drop(
        "UPDATE chain_links SET record_hash = REPEAT('0', 64) WHERE corpid = ? AND pos = 300",
        (corpid.as_str(),),
    )
    .await
    .unwrap();
    assert_eq!(finding().await, Some(Finding::ChainBroken { pos: 300 }));
    let row = ctx.store.record_by_msgid(&corpid, &seqs[299].1).await.unwrap().unwrap();
    let recomputed = row.view().hash();
    conn.exec_drop(
        "UPDATE chain_links SET record_hash = ? WHERE corpid = ? AND pos = 300",
        (&recomputed, corpid.as_str()),
    )
    .await
    .unwrap();
    assert_eq!(finding().await, None);

    // A deleted row, found by the command line too (exit 1, the record named).
    let (seq, msgid) = seqs[650].clone();
    conn.exec_drop(format!("DELETE FROM {table} WHERE msgid = ?"), (&msgid,)).await.unwrap();
    assert_eq!(finding().await, Some(Finding::Deleted { msgid: msgid.clone(), seq }));
    let out = std::process::Command::new(binary())
        .args(["verify", "--corp", corpid.as_str()])
        .env("DATABASE_URL", &db.url)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains(&format!("record seq {seq} msgid {msgid} was deleted")), "{text}");

    // Removing the chain's last links (and their rows) is caught by the head.
    let (_, last_msgid) = seqs.last().unwrap().clone();
    conn.exec_drop(format!("DELETE FROM {table} WHERE msgid = ?"), (&last_msgid,)).await.unwrap();
    conn.exec_drop("DELETE FROM chain_links WHERE corpid = ? AND pos = 900", (corpid.as_str(),))
        .await
        .unwrap();
    let from = verify_corp(&ctx.store, &corpid, seqs[700].0).await.unwrap();
    assert_eq!(from.finding, Some(Finding::HeadMismatch { head_pos: 900, last_pos: 899 }));
}

/// Runs the binary with the test's database; (exit code, stdout).
fn cli(db_url: &str, args: &[&str]) -> (Option<i32>, String) {
    let out = std::process::Command::new(binary()).args(args).env("DATABASE_URL", db_url).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code(), text)
}

/// The export's first record with its sender changed.
fn alter_first(t: String) -> String {
    let mut lines: Vec<String> = t.lines().map(str::to_owned).collect();
    let mut v: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    v["msgfrom"] = "someone-else".into();
    lines[0] = v.to_string();
    lines.iter().map(|l| format!("{l}\n")).collect()
}

/// Rewrites a file of an export and its digest in the manifest, as a forger would.
fn forge(dir: &std::path::Path, name: &str, edit: impl FnOnce(String) -> String) {
    use aws_lc_rs::digest;
    let text = edit(std::fs::read_to_string(dir.join(name)).unwrap());
    std::fs::write(dir.join(name), &text).unwrap();
    let mpath = dir.join("manifest.json");
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&mpath).unwrap()).unwrap();
    for f in m["files"].as_array_mut().unwrap() {
        if f["path"] == name {
            f["sha256"] = hex::encode(digest::digest(&digest::SHA256, text.as_bytes())).into();
            f["bytes"] = (text.len() as u64).into();
        }
    }
    std::fs::write(&mpath, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_verifies_offline_and_tampering_with_it_is_found() {
    let (_sim, db, ctx, corpid, _media) =
        ingested("chain_export", SimConfig { seed: 153, corps: 1, messages: 600, ..Default::default() })
            .await;
    let table = corpid.message_table();
    let mut conn = ctx.store.conn().await.unwrap();
    let (room, n): (String, u64) = conn
        .query_first(format!(
            "SELECT roomid, COUNT(*) FROM {table} WHERE roomid <> '' GROUP BY roomid ORDER BY 2 DESC LIMIT 1"
        ))
        .await
        .unwrap()
        .unwrap();
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("export");
    let d = dir.to_str().unwrap();
    let (code, text) = cli(
        &db.url,
        &[
            "export",
            "--corp",
            corpid.as_str(),
            "--room",
            &room,
            "--from",
            "2000-01-01",
            "--to",
            "2099-12-31",
            "--out",
            d,
        ],
    );
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains(&format!("{n} record(s)")), "{text}");
    let lines = std::fs::read_to_string(dir.join("messages.jsonl")).unwrap();
    assert_eq!(lines.lines().count() as u64, n);
    let html = std::fs::read_to_string(dir.join("index.html")).unwrap();
    assert!(html.contains(&format!("Group {room}")) && html.matches("class=\"msg").count() as u64 == n);
    let logged: u64 =
        conn.query_first("SELECT COUNT(*) FROM access_log WHERE action = 'export'").await.unwrap().unwrap();
    assert_eq!(logged, 1, "the export is in the access log");
    // A second export into the same folder is refused.
    let (code, text) = cli(
        &db.url,
        &[
            "export",
            "--corp",
            corpid.as_str(),
            "--all",
            "--from",
            "2000-01-01",
            "--to",
            "2099-12-31",
            "--out",
            d,
        ],
    );
    assert_eq!(code, Some(2), "{text}");

    // Offline (no database) it verifies, against the head recorded elsewhere too.
    let head = ctx.store.chain_head(&corpid).await.unwrap();
    let anchor = format!("{}:{}", head.pos, head.head);
    let offline = |args: &[&str]| cli("mysql://nobody@127.0.0.1:1/none", args);
    let (code, text) = offline(&["verify", "--export", d, "--anchor", &anchor]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains(&format!("export ok, {n} record(s)")) && text.contains("anchor found"), "{text}");
    let (code, text) =
        offline(&["verify", "--export", d, "--anchor", &format!("{}:{}", head.pos, "ab".repeat(32))]);
    assert_eq!(code, Some(1), "a head that is not the anchor: {text}");

    let pristine = out.path().join("pristine");
    std::process::Command::new("cp").args(["-a", d, pristine.to_str().unwrap()]).status().unwrap();
    let reset = || {
        std::fs::remove_dir_all(&dir).unwrap();
        std::process::Command::new("cp").args(["-a", pristine.to_str().unwrap(), d]).status().unwrap();
    };
    let first_line: serde_json::Value = serde_json::from_str(lines.lines().nth(1).unwrap()).unwrap();
    let msgid = first_line["msgid"].as_str().unwrap().to_owned();

    // 1. A changed byte in messages.jsonl.
    forge(&dir, "messages.jsonl", alter_first);
    let (code, text) = offline(&["verify", "--export", d]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("was altered"), "{text}");
    reset();
    // 2. The same without updating the digest.
    let body = std::fs::read_to_string(dir.join("index.html")).unwrap();
    std::fs::write(dir.join("index.html"), body.replacen("Group", "Groop", 1)).unwrap();
    let (code, text) = offline(&["verify", "--export", d]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("index.html was changed"), "{text}");
    reset();
    // 3. A record removed (line and its proof).
    forge(&dir, "messages.jsonl", |t| {
        t.lines().filter(|l| !l.contains(&msgid)).map(|l| format!("{l}\n")).collect()
    });
    let (code, text) = offline(&["verify", "--export", d]);
    assert_eq!(code, Some(1), "{text}");
    reset();
    // 4. An altered record whose proof and link are rewritten to match: the chain breaks.
    let mpath = dir.join("manifest.json");
    forge(&dir, "messages.jsonl", alter_first);
    let altered: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(dir.join("messages.jsonl")).unwrap().lines().next().unwrap(),
    )
    .unwrap();
    let rec: wework_archive::archive::export::ExportedRecord = serde_json::from_value(altered).unwrap();
    let new_hash = rec.to_stored().unwrap().view().hash();
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&mpath).unwrap()).unwrap();
    let pos = m["records"][0]["pos"].clone();
    m["records"][0]["record_hash"] = new_hash.clone().into();
    for l in m["chain"]["links"].as_array_mut().unwrap() {
        if l["pos"] == pos {
            l["record_hash"] = new_hash.clone().into();
        }
    }
    std::fs::write(&mpath, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    let (code, text) = offline(&["verify", "--export", d]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains(&format!("chain link {pos} does not follow")), "{text}");
    reset();
    // 5. A file slipped in.
    std::fs::write(dir.join("media").join("extra.jpg"), b"not exported").unwrap();
    let (code, text) = offline(&["verify", "--export", d]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("is not in the manifest"), "{text}");
    reset();
    let (code, text) = offline(&["verify", "--export", d]);
    assert_eq!(code, Some(0), "the pristine copy still verifies: {text}");
}
