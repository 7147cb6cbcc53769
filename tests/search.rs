//! Full-text search over what real ingest stored (real SDK, simulator, MariaDB):
//! every term taken from the simulator's corpus is found, CJK substrings find
//! exactly the records that contain them, filters and corps are kept apart,
//! the index follows new and redecrypted records, survives a restart, and a
//! rebuild gives the same answers.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use mysql_async::prelude::*;
use tokio_util::sync::CancellationToken;
use wework_archive::archive::search::tokenizer::is_cjk;
use wework_archive::archive::search::{SearchIndex, SearchQuery};
use wework_archive::cli::corp::import_sim_manifest;
use wework_archive::store::chain::StoredRecord;
use wework_archive::store::messages::{DecryptStatus, NewMessage};
use wework_archive::store::{CorpId, Store};
use wework_archive::wecom::ingest::redecrypt::redecrypt_corp;
use wework_archive::wecom::ingest::{CorpSpec, IngestContext, RunOptions, pull_corp};
use wework_archive_sim::{FaultKind, FaultSpec, SimConfig, Simulator};

use crate::common::{TestDb, ingest_context, test_config};

async fn pull(ctx: &IngestContext, corpid: &CorpId) {
    let row = ctx.store.corp(corpid).await.unwrap().unwrap();
    let spec = CorpSpec::load(&ctx.store, &row, &ctx.config.secrets).await.unwrap();
    pull_corp(ctx, spec, RunOptions::until_caught_up(), CancellationToken::new()).await.unwrap();
}

async fn all_records(store: &Store, corpid: &CorpId) -> Vec<StoredRecord> {
    store.records_after(corpid, 0, 1_000_000).await.unwrap()
}

fn q(text: &str) -> SearchQuery {
    SearchQuery { text: text.to_owned(), ..Default::default() }
}

async fn hit_ids(index: &SearchIndex, corpid: &CorpId, query: &SearchQuery) -> BTreeSet<u64> {
    let r = index.search(corpid, query, 100_000).await.unwrap();
    assert_eq!(r.total, r.hits.len(), "every hit returned");
    assert!(r.hits.windows(2).all(|w| w[0].msgtime >= w[1].msgtime), "newest first");
    r.hits.iter().map(|h| h.id).collect()
}

/// CJK substrings (2–4 characters) and Latin words of every 7th text record:
/// the terms the test plants in its queries, with the record they came from.
fn planted_terms(records: &[StoredRecord]) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for (n, r) in records.iter().filter(|r| r.msgtype == "text").enumerate().filter(|(n, _)| n % 7 == 0) {
        let text = r.text.clone().unwrap_or_default();
        let chars: Vec<char> = text.chars().collect();
        // A CJK run of at least 2, and a substring of it whose length and place vary by record.
        let mut i = 0;
        while i < chars.len() {
            if !is_cjk(chars[i]) {
                i += 1;
                continue;
            }
            let start = i;
            while i < chars.len() && is_cjk(chars[i]) {
                i += 1;
            }
            let run = &chars[start..i];
            if run.len() >= 2 {
                let len = (2 + n % 3).min(run.len());
                let at = n % (run.len() - len + 1);
                out.push((run[at..at + len].iter().collect(), r.id));
                if n % 3 == 0 {
                    // A single character too.
                    out.push((run[at].to_string(), r.id));
                }
                break;
            }
        }
        if let Some(w) = text
            .split(|c: char| !c.is_alphanumeric() || is_cjk(c))
            .find(|w| w.chars().count() >= 3 && w.chars().all(|c| c.is_ascii_alphanumeric()))
        {
            out.push((w.to_owned(), r.id));
        }
    }
    out
}

/// Records whose text holds `term` as a substring (CJK) or as a word (Latin).
fn expected(records: &[StoredRecord], term: &str) -> BTreeSet<u64> {
    let cjk = term.chars().all(is_cjk);
    let lower = term.to_lowercase();
    records
        .iter()
        .filter(|r| {
            let text = r.text.as_deref().unwrap_or("");
            if cjk {
                text.contains(term)
            } else {
                text.split(|c: char| !c.is_alphanumeric() || is_cjk(c)).any(|w| w.to_lowercase() == lower)
            }
        })
        .map(|r| r.id)
        .collect()
}

fn planted_record(template: &StoredRecord, msgid: &str, seq: u64, text: &str) -> NewMessage {
    let msgdata = serde_json::json!({
        "msgid": msgid, "action": "send", "from": template.msgfrom, "tolist": ["plantedpeer"],
        "roomid": "", "msgtime": template.msgtime + 1, "msgtype": "text", "text": {"content": text}
    });
    NewMessage {
        msgid: msgid.to_owned(),
        publickey_ver: template.publickey_ver,
        seq,
        action: "send".into(),
        msgfrom: template.msgfrom.clone(),
        tolist: "[\"plantedpeer\"]".into(),
        msgtype: "text".into(),
        msgtime: template.msgtime + 1,
        text: text.to_owned(),
        sdkfield: String::new(),
        msgdata: Some(serde_json::to_vec(&msgdata).unwrap()),
        status: 0,
        roomid: String::new(),
        decrypt_status: DecryptStatus::Ok,
        decrypt_code: 0,
        encrypt_random_key: None,
        encrypt_chat_msg: None,
    }
}

async fn plant(store: &Store, corpid: &CorpId, msgid: &str, text: &str) {
    let records = all_records(store, corpid).await;
    let last = records.iter().max_by_key(|r| r.seq).unwrap();
    let rec = planted_record(last, msgid, last.seq + 1, text);
    let fence = store.claim_fence(corpid, "search-test", None).await.unwrap();
    store.commit_batch(corpid, fence, &[rec], last.seq + 1, &[]).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_finds_the_corpus_in_chinese_within_its_corp_and_survives_restart_and_rebuild() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let faults = FaultSpec::none().with(FaultKind::UnknownVer, 0.03);
    let sim = Simulator::start(
        listener,
        SimConfig { seed: 415, corps: 2, messages: 700, faults, ..Default::default() },
    )
    .await
    .unwrap();
    let (db, store) = TestDb::fresh("search").await;
    let media = tempfile::tempdir().unwrap();
    let config = test_config(&db.url, media.path());
    let corps = import_sim_manifest(&store, &config, &sim.manifest()).await.unwrap();
    let ctx = ingest_context(store.clone(), config);
    for c in &corps {
        pull(&ctx, c).await;
    }
    let (a, b) = (corps[0].clone(), corps[1].clone());
    let dir = tempfile::tempdir().unwrap();
    let index = SearchIndex::shared(dir.path());
    for c in &corps {
        let done = index.catch_up(&store, c, u64::MAX).await.unwrap();
        assert_eq!(done.pos, store.chain_head(c).await.unwrap().pos);
        assert_eq!(done.indexed, 700, "every stored record indexed once");
        assert_eq!(index.documents(c).await.unwrap(), 700);
    }
    let records_a = all_records(&store, &a).await;
    let records_b = all_records(&store, &b).await;

    // Every planted term finds its record, and exactly the records containing it.
    let terms = planted_terms(&records_a);
    assert!(terms.len() >= 60, "{} terms", terms.len());
    assert!(terms.iter().filter(|(t, _)| t.chars().all(is_cjk) && t.chars().count() >= 2).count() >= 30);
    assert!(terms.iter().any(|(t, _)| t.chars().count() == 1), "single characters planted");
    let mut answers: HashMap<String, BTreeSet<u64>> = HashMap::new();
    for (term, id) in &terms {
        let hits = hit_ids(&index, &a, &q(term)).await;
        assert!(hits.contains(id), "{term:?} finds record {id}");
        assert_eq!(hits, expected(&records_a, term), "{term:?}: exactly the records containing it");
        answers.insert(term.clone(), hits);
    }
    // Two terms: both must occur.
    let (t1, id1) = &terms[0];
    let (t2, _) = terms.iter().find(|(t, id)| id == id1 && t != t1).unwrap_or(&terms[1]);
    let both = hit_ids(&index, &a, &q(&format!("{t1} {t2}"))).await;
    let expect: BTreeSet<u64> =
        expected(&records_a, t1).intersection(&expected(&records_a, t2)).copied().collect();
    assert_eq!(both, expect);

    // Filters: sender, type and time keep only what they name.
    let (term, _) = terms.iter().max_by_key(|(t, _)| answers[t].len()).unwrap();
    let sample = &records_a.iter().find(|r| answers[term].contains(&r.id)).unwrap();
    let by_id: HashMap<u64, &StoredRecord> = records_a.iter().map(|r| (r.id, r)).collect();
    let from = SearchQuery { from: Some(sample.msgfrom.clone()), ..q(term) };
    let got = hit_ids(&index, &a, &from).await;
    let want: BTreeSet<u64> =
        answers[term].iter().copied().filter(|i| by_id[i].msgfrom == sample.msgfrom).collect();
    assert_eq!(got, want);
    let typed = SearchQuery { msgtype: Some("file".into()), ..q(term) };
    let got = hit_ids(&index, &a, &typed).await;
    assert!(got.iter().all(|i| by_id[i].msgtype == "file"));
    let since = SearchQuery { since_ms: Some(sample.msgtime), until_ms: Some(sample.msgtime + 1), ..q(term) };
    let got = hit_ids(&index, &a, &since).await;
    assert!(got.contains(&sample.id) && got.iter().all(|i| by_id[i].msgtime == sample.msgtime));

    // Corp B's index holds only corp B: A's terms find there exactly B's records holding them
    // (the corps share a vocabulary; a term only A holds is checked below).
    for (t, _) in terms.iter().take(20) {
        assert_eq!(hit_ids(&index, &b, &q(t)).await, expected(&records_b, t), "{t:?} in corp B");
    }
    let b_ids: BTreeSet<u64> = records_b.iter().map(|r| r.id).collect();
    for (t, _) in planted_terms(&records_b).iter().take(20) {
        let hits = hit_ids(&index, &b, &q(t)).await;
        assert!(hits.is_subset(&b_ids) && hits == expected(&records_b, t), "{t:?} in corp B");
    }

    // Records arriving later are found once indexed, by the background indexer too.
    plant(&store, &a, "planted-1", "请把合规审计暗号七三九发给我 zebracorn").await;
    let done = index.catch_up(&store, &a, u64::MAX).await.unwrap();
    assert_eq!(done.indexed, 1, "only the new record");
    assert_eq!(hit_ids(&index, &a, &q("审计暗号")).await.len(), 1);
    assert_eq!(hit_ids(&index, &a, &q("ZebraCorn")).await.len(), 1, "Latin words ignore case");
    assert!(hit_ids(&index, &b, &q("审计暗号")).await.is_empty(), "not in the other corp");
    let stop = CancellationToken::new();
    let indexer =
        tokio::spawn(index.clone().run_indexer(store.clone(), Duration::from_millis(200), stop.clone()));
    plant(&store, &a, "planted-2", "第二条暗号八四一").await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while hit_ids(&index, &a, &q("暗号八四一")).await.is_empty() {
        assert!(Instant::now() < deadline, "the background indexer indexed the new record");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Records redecrypted after their key arrives become searchable (their redecrypt links).
    let undecrypted: Vec<String> = {
        let mut conn = store.conn().await.unwrap();
        conn.query(format!("SELECT msgid FROM {} WHERE decrypt_status <> 'ok'", a.message_table()))
            .await
            .unwrap()
    };
    assert!(!undecrypted.is_empty());
    let key = sim.withheld_keys().into_iter().find(|k| k.corpid == a.as_str()).unwrap();
    store.set_key(&a, key.version, &key.private_key_pem).await.unwrap();
    let r = redecrypt_corp(&ctx, &a).await.unwrap();
    assert!(r.completed > 5, "{r:?}");
    let head = store.chain_head(&a).await.unwrap().pos;
    let deadline = Instant::now() + Duration::from_secs(60);
    while index.indexed_pos(&a).await.unwrap() < head {
        assert!(Instant::now() < deadline, "the indexer reached the head");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.cancel();
    indexer.await.unwrap();
    let records_a = all_records(&store, &a).await;
    let redone: Vec<StoredRecord> = records_a
        .iter()
        .filter(|r| undecrypted.contains(&r.msgid) && r.decrypt_status == "ok" && r.msgtype == "text")
        .cloned()
        .collect();
    let redone_terms = planted_terms(&redone);
    assert!(!redone_terms.is_empty());
    for (term, id) in &redone_terms {
        assert!(hit_ids(&index, &a, &q(term)).await.contains(id), "redecrypted {term:?}");
    }

    // Restart: a new process's index (nothing shared) answers the same from disk.
    let terms = planted_terms(&records_a);
    let mut before: Vec<BTreeSet<u64>> = Vec::new();
    for (t, _) in &terms {
        before.push(hit_ids(&index, &a, &q(t)).await);
    }
    let pos = index.indexed_pos(&a).await.unwrap();
    drop(index);
    let index = SearchIndex::shared(dir.path());
    assert_eq!(index.indexed_pos(&a).await.unwrap(), pos, "the position survives");
    assert_eq!(index.catch_up(&store, &a, u64::MAX).await.unwrap().indexed, 0, "nothing indexed twice");
    for ((t, _), want) in terms.iter().zip(&before) {
        assert_eq!(&hit_ids(&index, &a, &q(t)).await, want, "{t:?} after restart");
    }
    // Rebuild from the archive: the same answers, the same documents.
    let docs = index.documents(&a).await.unwrap();
    let rebuilt = index.rebuild(&store, &a).await.unwrap();
    assert_eq!(rebuilt.pos, pos);
    assert_eq!(index.documents(&a).await.unwrap(), docs);
    assert_eq!(docs, records_a.len() as u64);
    for ((t, _), want) in terms.iter().zip(&before) {
        assert_eq!(&hit_ids(&index, &a, &q(t)).await, want, "{t:?} after rebuild");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_command_rebuilds_and_queries() {
    let (db, store) = TestDb::fresh("search_cli").await;
    let corpid = CorpId::new("wwsearchcli01").unwrap();
    let mut conn = store.conn().await.unwrap();
    conn.exec_drop("INSERT INTO corplist (corpid, corpname) VALUES (?, 'search cli')", (corpid.as_str(),))
        .await
        .unwrap();
    let template = StoredRecord {
        id: 0,
        msgid: String::new(),
        publickey_ver: 1,
        seq: 0,
        action: "send".into(),
        msgfrom: "zhangsan".into(),
        tolist: None,
        msgtype: "text".into(),
        msgtime: 1_741_596_000_000,
        text: None,
        sdkfield: None,
        msgdata: None,
        roomid: String::new(),
        decrypt_status: "ok".into(),
        decrypt_code: 0,
        encrypt_random_key: None,
        encrypt_chat_msg: None,
    };
    let recs = vec![
        planted_record(&template, "cli-1", 1, "合同的付款条件需要法务再看一遍"),
        planted_record(&template, "cli-2", 2, "明天下午三点开会 Quarterly review"),
    ];
    let fence = store.claim_fence(&corpid, "search-test", None).await.unwrap();
    store.commit_batch(&corpid, fence, &recs, 2, &[]).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(crate::common::binary())
            .args(args)
            .env("DATABASE_URL", &db.url)
            .env("SEARCH_INDEX_DIR", dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let built = run(&["search", "rebuild", "--corp", corpid.as_str()]);
    assert!(built.contains("2 record(s) indexed"), "{built}");
    let found = run(&["search", "query", "--corp", corpid.as_str(), "付款条件"]);
    assert!(
        found.starts_with("1 message(s)") && found.contains("cli-1") && !found.contains("cli-2"),
        "{found}"
    );
    let found = run(&["search", "query", "--corp", corpid.as_str(), "quarterly"]);
    assert!(found.contains("cli-2") && !found.contains("cli-1"), "{found}");
    let none = run(&["search", "query", "--corp", corpid.as_str(), "--from", "lisi", "付款"]);
    assert!(none.starts_with("0 message(s)"), "{none}");
    let updated = run(&["search", "update"]);
    assert!(updated.contains("0 record(s) indexed"), "{updated}");
}
