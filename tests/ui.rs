//! The archive browser in a real headless browser: Debian's chromium driven
//! through chromedriver (WebDriver, fantoccini) against the real HTTP server
//! and MariaDB. Screenshots of the main pages go to target/tmp/ui-screenshots/
//! (and to docs/ with UPDATE_SCREENSHOTS=1).

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use mysql_async::prelude::*;
use serde_json::{Value, json};
use wework_archive::archive::accounts::hash_password;
use wework_archive::archive::export::{verify_export, write_export};
use wework_archive::http::AppState;
use wework_archive::store::accounts::Role;
use wework_archive::store::browse::ExportSelection;
use wework_archive::store::media_jobs::enqueue_statement;
use wework_archive::store::messages::{DecryptStatus, NewMessage};
use wework_archive::store::{CorpId, Store};
use wework_archive::wecom::media_refs::media_refs;
use wework_archive::wecom::message::fields;

use crate::common::{TestDb, test_config};

const ROOM: &str = "wrAllTypesRoom0001";

/// chromedriver on a free port, killed on drop.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn browser(profile: &std::path::Path) -> (Driver, Client) {
    let port = free_port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver (bash scripts/services.sh chromium)");
    let driver = Driver(child);
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": "/usr/bin/chromium",
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--autoplay-policy=no-user-gesture-required", "--window-size=1280,900",
                     format!("--user-data-dir={}", profile.display())]
        }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let url = format!("http://127.0.0.1:{port}");
    for attempt in 0.. {
        match ClientBuilder::new(connector.clone()).capabilities(caps.clone()).connect(&url).await {
            Ok(c) => return (driver, c),
            Err(e) if attempt < 50 => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("chromedriver: {e}"),
        }
    }
    unreachable!()
}

/// One record per example type, all in one group room, plus an undecryptable one.
async fn seed(store: &Store, corpid: &CorpId, msgfile: &std::path::Path) -> Vec<String> {
    let ex: Value = serde_json::from_str(include_str!("data/EXAMPLES.json")).unwrap();
    let mut records = Vec::new();
    let mut types = Vec::new();
    let mut media = Vec::new();
    for (i, (name, v)) in ex.as_object().unwrap().iter().filter(|(k, _)| !k.starts_with('_')).enumerate() {
        let mut v = v.clone();
        let obj = v.as_object_mut().unwrap();
        obj.insert("roomid".into(), json!(ROOM));
        obj.insert("msgtime".into(), json!(1_741_596_000_000i64 + i as i64 * 60_000));
        if name == "switch" {
            obj.insert("time".into(), json!(1_741_596_000_000i64 + i as i64 * 60_000));
        }
        if name == "text" {
            obj.insert("text".into(), json!({"content": "您好，报价单已发到邮箱，请查收。"}));
        }
        let plain = serde_json::to_vec(&v).unwrap();
        let f = fields(&v);
        let refs = media_refs(&v);
        let msgid = v["msgid"].as_str().unwrap().to_owned();
        types.push(f.msgtype.clone());
        records.push(NewMessage {
            msgid: msgid.clone(),
            publickey_ver: 1,
            seq: i as u64 + 1,
            action: f.action,
            msgfrom: f.from,
            tolist: f.tolist,
            msgtype: f.msgtype,
            msgtime: f.msgtime,
            text: f.text,
            sdkfield: String::new(),
            msgdata: Some(plain),
            status: if refs.is_empty() { 0 } else { 1 },
            // Switch records carry no room; stored here with the room so one page shows every type.
            roomid: ROOM.to_owned(),
            decrypt_status: DecryptStatus::Ok,
            decrypt_code: 0,
            encrypt_random_key: None,
            encrypt_chat_msg: None,
        });
        media.push((msgid, f.msgtime, refs));
    }
    let n = records.len() as u64;
    records.push(NewMessage {
        msgid: "undecryptable-1".into(),
        seq: n + 1,
        decrypt_status: DecryptStatus::NoKey,
        msgdata: None,
        encrypt_random_key: Some("AAAA".into()),
        encrypt_chat_msg: Some("BBBB".into()),
        ..records[0].clone()
    });
    records.last_mut().unwrap().roomid = String::new();
    let extra: Vec<_> = enqueue_statement(
        corpid,
        media.iter().flat_map(|(id, t, refs)| refs.iter().map(move |r| (id.as_str(), *t, r))),
    )
    .into_iter()
    .collect();
    let fence = store.claim_fence(corpid, "ui-test", None).await.unwrap();
    store.commit_batch(corpid, fence, &records, n + 1, &extra).await.unwrap();
    // The voice as a downloaded, transcoded file; the images as real files.
    let dir = msgfile.join(corpid.as_str()).join("202503");
    std::fs::create_dir_all(&dir).unwrap();
    let st = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i", "sine=frequency=440:duration=2", "-ac", "1"])
        .arg(dir.join("voice.mp3"))
        .status()
        .expect("ffmpeg");
    assert!(st.success());
    std::fs::write(dir.join("voice.amr"), b"#!AMR\n").unwrap();
    let st = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i", "color=c=red:s=2x2", "-frames:v", "1"])
        .arg(dir.join("image.png"))
        .status()
        .unwrap();
    assert!(st.success());
    let rel = |f: &str| format!("{}/202503/{f}", corpid.as_str());
    let mut conn = store.conn().await.unwrap();
    conn.exec_drop(
        "UPDATE media_jobs SET state = 'done', path = ?, mp3_path = ? WHERE corpid = ? AND kind = 'voice'",
        (rel("voice.amr"), rel("voice.mp3"), corpid.as_str()),
    )
    .await
    .unwrap();
    conn.exec_drop(
        "UPDATE media_jobs SET state = 'done', path = ? WHERE corpid = ? AND kind = 'image'",
        (rel("image.png"), corpid.as_str()),
    )
    .await
    .unwrap();
    types
}

async fn log_in(c: &Client, base: &str, user: &str, password: &str) {
    c.goto(&format!("{base}/ui/login")).await.unwrap();
    el(c, Locator::Id("user")).await.send_keys(user).await.unwrap();
    el(c, Locator::Id("password")).await.send_keys(password).await.unwrap();
    submit(c, Locator::Id("login")).await;
}

/// Waits (up to 30 s) for an element: a click on a link or a submit button
/// can return before the next page has loaded, and a search indexes first.
async fn el(c: &Client, locator: Locator<'_>) -> fantoccini::elements::Element {
    c.wait().at_most(Duration::from_secs(30)).for_element(locator).await.unwrap()
}

/// Clicks a form's submit button and waits until the page it was on is gone
/// (the button's element goes stale), so the next step sees the answer page,
/// not a half-finished navigation (a logout landing after the next login).
async fn submit(c: &Client, button: Locator<'_>) {
    let b = el(c, button).await;
    b.click().await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while b.is_displayed().await.is_ok() {
        assert!(std::time::Instant::now() < deadline, "the form's answer never came");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Saves a screenshot under target/tmp/ui-screenshots/; with UPDATE_SCREENSHOTS=1
/// also into docs/ (the pictures the README shows), which a normal run leaves alone.
async fn screenshot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), &png).unwrap();
    if std::env::var("UPDATE_SCREENSHOTS").is_ok_and(|v| v == "1") {
        std::fs::write(crate::common::repo().join("docs").join(name), png).unwrap();
    }
}

/// A POST from the page's own origin, with the given body: its status.
async fn post_status(c: &Client, path: &str, body: &str) -> u64 {
    let script = "const [path, body, done] = arguments;
        fetch(path, {method: 'POST', headers: {'content-type': 'application/x-www-form-urlencoded'}, body, redirect: 'manual'})
            .then(r => done(r.status)).catch(e => done(-1));";
    c.execute_async(script, vec![json!(path), json!(body)]).await.unwrap().as_u64().unwrap_or(0)
}

/// Submits the page's (first) export form as the browser would, with the
/// session's cookie, and returns the answer: status, headers and the body in
/// base64 (a download cannot be read back through WebDriver otherwise).
async fn download_export(c: &Client) -> Value {
    let script = "const done = arguments[0];
        const f = document.querySelector('form.export');
        fetch(f.action, {method: 'POST', body: new URLSearchParams(new FormData(f))})
          .then(r => r.arrayBuffer().then(b => {
              const u = new Uint8Array(b); let s = '';
              for (let i = 0; i < u.length; i += 8192) s += String.fromCharCode.apply(null, u.subarray(i, i + 8192));
              done({status: r.status, type: r.headers.get('content-type'),
                    disposition: r.headers.get('content-disposition'), zip: btoa(s)});
          }))
          .catch(e => done({status: -1, error: String(e)}));";
    c.execute_async(script, vec![]).await.unwrap()
}

fn hex_sha256(b: &[u8]) -> String {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b)
        .as_ref()
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// Every file below `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().unwrap().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browse_a_conversation_with_every_type_as_admin_and_auditor() {
    let (db, store) = TestDb::fresh("ui_browse").await;
    let msgfile = tempfile::tempdir().unwrap();
    let index_dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&db.url, msgfile.path());
    config.search_index_dir = index_dir.path().to_owned();
    let config = Arc::new(config);
    let corpid = CorpId::new("wwuitest0001").unwrap();
    let other = CorpId::new("wwuitest0002").unwrap();
    let mut conn = store.conn().await.unwrap();
    for c in [&corpid, &other] {
        conn.exec_drop("INSERT INTO corplist (corpid, corpname) VALUES (?, 'UI test corp')", (c.as_str(),))
            .await
            .unwrap();
    }
    let types = seed(&store, &corpid, msgfile.path()).await;
    store
        .upsert_user("root-admin", &hash_password("admin password 1").unwrap(), Role::Admin, &[])
        .await
        .unwrap();
    store
        .upsert_user(
            "auditor2",
            &hash_password("auditor password 2").unwrap(),
            Role::Auditor,
            &[other.to_string()],
        )
        .await
        .unwrap();

    let state = AppState::new(store.clone(), Arc::default(), Arc::default(), config.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(wework_archive::http::serve(listener, state, std::future::pending()));

    let profile = tempfile::tempdir().unwrap();
    let (_driver, c) = browser(profile.path()).await;

    // A login without the form's CSRF token is refused.
    c.goto(&format!("{base}/ui/login")).await.unwrap();
    assert_eq!(post_status(&c, "/ui/login", "user=root-admin&password=admin+password+1").await, 403);

    // Wrong passwords are rate-limited per user after five tries.
    log_in(&c, &base, "root-admin", "admin password 1").await;
    let corps = el(&c, Locator::Id("corps")).await.text().await.unwrap();
    assert!(corps.contains(corpid.as_str()) && corps.contains(other.as_str()), "{corps}");
    screenshot(&c, "ui-corps.png").await;
    // A state-changing request without the session's CSRF token is refused (and does not log out).
    assert_eq!(post_status(&c, "/ui/logout", "csrf=wrong").await, 403);
    assert_eq!(post_status(&c, "/ui/logout", "").await, 403);

    el(&c, Locator::LinkText(corpid.as_str())).await.click().await.unwrap();
    let list = el(&c, Locator::Id("conversations")).await.text().await.unwrap();
    assert!(list.contains(ROOM) && list.contains("Undecrypted records"), "{list}");
    screenshot(&c, "ui-conversations.png").await;

    el(&c, Locator::LinkText(&format!("Group {ROOM}"))).await.click().await.unwrap();
    for t in &types {
        let found = c.find_all(Locator::Css(&format!("li.msg[data-msgtype='{t}']"))).await.unwrap();
        assert_eq!(found.len(), 1, "message type {t} shown once");
    }
    let page = c.source().await.unwrap();
    assert!(page.contains("报价单已发到邮箱"), "Chinese text shown");
    assert!(page.contains("revoked by the sender"), "the revoked message is marked");
    assert!(page.contains("switched to another enterprise account"));
    assert!(page.contains("Can we move the review to 3pm?"), "chatrecord expanded");
    let img_ok = c
        .execute_async(
            "const done = arguments[0]; const i = document.querySelector(\"li[data-msgtype='image'] img\");
             let n = 0; const poll = () => (i.complete && i.naturalWidth) || n++ > 50 ? done(i.naturalWidth) : setTimeout(poll, 100);
             poll();",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(img_ok, json!(2), "the image loads inline");
    screenshot(&c, "ui-conversation.png").await;

    // The voice message plays (its MP3).
    let played = c
        .execute_async(
            "const done = arguments[0]; const a = document.querySelector(\"li[data-msgtype='voice'] audio\");
             a.play().then(() => setTimeout(() => done(a.currentTime), 700)).catch(e => done('error: ' + e));",
            vec![],
        )
        .await
        .unwrap();
    assert!(played.as_f64().is_some_and(|t| t > 0.0), "voice played: {played}");

    // Search Chinese text (a substring of a sentence), filter it, follow the hit into its conversation.
    c.goto(&format!("{base}/ui/corp/{}/search", corpid.as_str())).await.unwrap();
    el(&c, Locator::Id("q")).await.send_keys("报价单").await.unwrap();
    submit(&c, Locator::Id("search-go")).await;
    // The form's answer is a new page (and a search first indexes what arrived
    // since): wait for it instead of racing the navigation.
    let count = c
        .wait()
        .at_most(Duration::from_secs(30))
        .for_element(Locator::Id("hit-count"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(count.starts_with("1 message(s)"), "{count}");
    let hits = el(&c, Locator::Id("hits")).await.text().await.unwrap();
    assert!(hits.contains("报价单已发到邮箱"), "{hits}");
    screenshot(&c, "ui-search.png").await;
    c.goto(&format!("{base}/ui/corp/{}/search?q=%E9%82%AE%E7%AE%B1&type=image", corpid.as_str()))
        .await
        .unwrap();
    let count = el(&c, Locator::Id("hit-count")).await.text().await.unwrap();
    assert!(count.starts_with("0 message(s)"), "the type filter applies: {count}");
    c.goto(&format!("{base}/ui/corp/{}/search?q=%E9%82%AE%E7%AE%B1&type=text", corpid.as_str()))
        .await
        .unwrap();
    el(&c, Locator::Css("#hits a.conv")).await.click().await.unwrap();
    let target = c
        .wait()
        .at_most(Duration::from_secs(30))
        .for_element(Locator::Css("li.msg:target"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(target.contains("报价单已发到邮箱"), "the hit opens its conversation at the message: {target}");

    // An auditor's export of the conversation, made from its page: a zip that
    // unpacks into a folder that verifies offline and renders like the browser.
    c.goto(&format!("{base}/ui/corp/{}/c?room={ROOM}", corpid.as_str())).await.unwrap();
    let export_path = format!("/ui/corp/{}/export", corpid.as_str());
    assert_eq!(
        post_status(&c, &export_path, &format!("room={ROOM}")).await,
        403,
        "an export needs the CSRF token"
    );
    let download = download_export(&c).await;
    assert_eq!(download["status"], 200, "{download}");
    assert_eq!(download["type"], "application/zip");
    let disposition = download["disposition"].as_str().unwrap();
    assert!(disposition.starts_with("attachment; filename=\"export-wwuitest0001-room-"), "{disposition}");
    let zip_bytes =
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, download["zip"].as_str().unwrap())
            .unwrap();
    let exports = tempfile::tempdir().unwrap();
    let out = exports.path().join("room");
    zip::ZipArchive::new(std::io::Cursor::new(zip_bytes)).unwrap().extract(&out).unwrap();
    let check = verify_export(&out).unwrap();
    assert_eq!(check.problem, None);
    assert_eq!(check.records as usize, types.len(), "every record of the group");
    let media: Vec<_> = walk(&out.join("media"));
    assert!(media.len() >= 2, "the image and the voice (and its MP3) are in the export: {media:?}");
    // The same selection written by the command line holds the same records.
    let cli_out = exports.path().join("cli");
    let selection = ExportSelection::Room(ROOM.to_owned());
    let summary = write_export(&store, msgfile.path(), &corpid, &selection, 0, i64::MAX, &cli_out, "ui-test")
        .await
        .unwrap();
    assert_eq!(summary.records, check.records);
    assert_eq!(
        std::fs::read(cli_out.join("messages.jsonl")).unwrap(),
        std::fs::read(out.join("messages.jsonl")).unwrap(),
        "the browser's export holds exactly the stored records the command line's does"
    );
    c.goto(&format!("file://{}", out.join("index.html").display())).await.unwrap();
    let offline = c.source().await.unwrap();
    assert!(offline.contains("报价单已发到邮箱") && offline.contains("revoked by the sender"));
    for t in &types {
        let found = c.find_all(Locator::Css(&format!("li.msg[data-msgtype='{t}']"))).await.unwrap();
        assert_eq!(found.len(), 1, "message type {t} in the offline page");
    }
    let img_ok = c
        .execute_async(
            "const done = arguments[0]; const i = document.querySelector(\"li[data-msgtype='image'] img\");
             let n = 0; const poll = () => (i.complete && i.naturalWidth) || n++ > 50 ? done(i.naturalWidth) : setTimeout(poll, 100);
             poll();",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(img_ok, json!(2), "the exported image loads from disk");
    screenshot(&c, "ui-export.png").await;

    // Undecryptable records are shown as such.
    c.goto(&format!("{base}/ui/corp/{}/c?undecrypted=1", corpid.as_str())).await.unwrap();
    assert!(c.source().await.unwrap().contains("Could not be decrypted (no_key"));

    // Views are in the access log, which admins see.
    c.goto(&format!("{base}/ui/admin/access")).await.unwrap();
    let log = el(&c, Locator::Id("access")).await.text().await.unwrap();
    assert!(log.contains("view_conversation") && log.contains(&format!("Group {ROOM}")), "{log}");
    assert!(log.contains("search") && log.contains("报价单"), "searches are logged: {log}");
    assert!(log.contains("export") && log.contains(ROOM), "exports are logged: {log}");
    screenshot(&c, "ui-access-log.png").await;

    // Feishu material per person: a recording (served with ranges) and a
    // backed-up document, as the recordings and backup modules record them.
    let (app, owner) = ("cli_uitest0001", "ou_uitest_owner");
    let mp4: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let rec_rel = format!("feishu/{app}/{owner}/202503/2025-03-04_Weekly_sync_m1.mp4");
    let doc_rel = "Specs/方案.docx";
    let doc_bytes = b"PK\x03\x04 a docx".to_vec();
    std::fs::create_dir_all(msgfile.path().join(&rec_rel).parent().unwrap()).unwrap();
    std::fs::write(msgfile.path().join(&rec_rel), &mp4).unwrap();
    let docs_dir = msgfile.path().join(format!("feishu/{app}/{owner}/docs"));
    std::fs::create_dir_all(docs_dir.join("Specs")).unwrap();
    std::fs::write(docs_dir.join(doc_rel), &doc_bytes).unwrap();
    let sha = |b: &[u8]| hex_sha256(b);
    conn.exec_drop(
        "INSERT INTO feishu_users (app_id, open_id, name, access_token, refresh_token, access_expires_at,
            access_lifetime_s, scope) VALUES (?, ?, '王小明', '', '', 0, 0, '')",
        (app, owner),
    )
    .await
    .unwrap();
    conn.exec_drop(
        "INSERT INTO feishu_recordings (app_id, meeting_id, topic, owner_open_id, start_time, path, bytes, sha256, state)
         VALUES (?, 'm1', 'Weekly sync', ?, 1741082400, ?, ?, ?, 'done'),
                (?, 'm2', 'No recording here', ?, 1741168800, '', NULL, '', 'no_recording')",
        (app, owner, &rec_rel, mp4.len() as u64, sha(&mp4), app, owner),
    )
    .await
    .unwrap();
    conn.exec_drop(
        "INSERT INTO feishu_docs (app_id, open_id, token, doc_type, title, path, size, sha256, status, last_backup_at)
         VALUES (?, ?, 'doxcn1', 'docx', '方案', ?, ?, ?, 'exported', 1741082400000),
                (?, ?, 'sld1', 'slides', 'Deck', '', NULL, NULL, 'not_exportable', 1741082400000)",
        (app, owner, doc_rel, doc_bytes.len() as u64, sha(&doc_bytes), app, owner),
    )
    .await
    .unwrap();
    el(&c, Locator::LinkText("Feishu")).await.click().await.unwrap();
    let people = el(&c, Locator::Id("feishu-people")).await.text().await.unwrap();
    assert!(people.contains("王小明") && people.contains("2 (1)"), "{people}");
    el(&c, Locator::Css("#feishu-people a")).await.click().await.unwrap();
    let recordings = el(&c, Locator::Id("recordings")).await.text().await.unwrap();
    assert!(recordings.contains("Weekly sync") && recordings.contains("no_recording"), "{recordings}");
    let documents = el(&c, Locator::Id("documents")).await.text().await.unwrap();
    assert!(documents.contains("方案") && documents.contains("not_exportable"), "{documents}");
    screenshot(&c, "ui-feishu-person.png").await;
    let fetch = "const [sel, range, done] = arguments;
        const a = document.querySelector(sel);
        fetch(a.href, {headers: range ? {range} : {}}).then(r => r.arrayBuffer().then(b => {
            const u = new Uint8Array(b); let s = '';
            for (let i = 0; i < u.length; i += 8192) s += String.fromCharCode.apply(null, u.subarray(i, i + 8192));
            done({status: r.status, type: r.headers.get('content-type'), body: btoa(s)});
        })).catch(e => done({status: -1, error: String(e)}));";
    let b64 = |v: &Value| {
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, v["body"].as_str().unwrap())
            .unwrap()
    };
    let whole = c.execute_async(fetch, vec![json!("a.recording"), Value::Null]).await.unwrap();
    assert_eq!((whole["status"].clone(), whole["type"].clone()), (json!(200), json!("video/mp4")));
    assert_eq!(b64(&whole), mp4, "the recording's bytes");
    let part = c.execute_async(fetch, vec![json!("a.recording"), json!("bytes=1000-1999")]).await.unwrap();
    assert_eq!(part["status"], 206, "a range of the recording");
    assert_eq!(b64(&part), &mp4[1000..2000]);
    let doc = c.execute_async(fetch, vec![json!("a.document"), Value::Null]).await.unwrap();
    assert_eq!(doc["status"], 200);
    assert_eq!(b64(&doc), doc_bytes);
    c.goto(&format!("{base}/ui/admin/access")).await.unwrap();
    let log = el(&c, Locator::Id("access")).await.text().await.unwrap();
    assert!(log.contains("view_feishu") && log.contains("feishu_recording"), "{log}");
    submit(&c, Locator::Id("logout")).await;

    // The auditor sees only the granted corp.
    log_in(&c, &base, "auditor2", "auditor password 2").await;
    let corps = el(&c, Locator::Id("corps")).await.text().await.unwrap();
    assert!(corps.contains(other.as_str()) && !corps.contains(corpid.as_str()), "{corps}");
    c.goto(&format!("{base}/ui/corp/{}/c?room={ROOM}", corpid.as_str())).await.unwrap();
    assert!(c.source().await.unwrap().contains("You were not granted this corp."));
    c.goto(&format!("{base}/ui/admin/access")).await.unwrap();
    assert!(c.source().await.unwrap().contains("Admins only."));
    c.goto(&format!("{base}/ui/feishu")).await.unwrap();
    assert!(c.source().await.unwrap().contains("Admins only."), "Feishu pages are for admins");
    // With the auditor's own CSRF token, an export of a corp not granted is refused.
    c.goto(&format!("{base}/ui/")).await.unwrap();
    let csrf =
        c.execute("return document.querySelector(\"input[name='csrf']\").value", vec![]).await.unwrap();
    let body = format!("csrf={}&all=1", csrf.as_str().unwrap());
    assert_eq!(post_status(&c, &export_path, &body).await, 403, "not granted");
    let granted_path = format!("/ui/corp/{}/export", other.as_str());
    assert_eq!(post_status(&c, &granted_path, &body).await, 200, "the granted corp exports");
    // Search is scoped the same way: the other corp cannot be searched, its own holds nothing of it.
    c.goto(&format!("{base}/ui/corp/{}/search?q=%E6%8A%A5%E4%BB%B7", corpid.as_str())).await.unwrap();
    assert!(c.source().await.unwrap().contains("You were not granted this corp."));
    c.goto(&format!("{base}/ui/corp/{}/search?q=%E6%8A%A5%E4%BB%B7", other.as_str())).await.unwrap();
    let count = el(&c, Locator::Id("hit-count")).await.text().await.unwrap();
    assert!(count.starts_with("0 message(s)"), "{count}");
    c.goto(&format!("{base}/ui/")).await.unwrap();
    submit(&c, Locator::Id("logout")).await;

    // Five wrong passwords lock the account out, even with the right one next.
    for _ in 0..5 {
        log_in(&c, &base, "auditor2", "wrong password!").await;
    }
    log_in(&c, &base, "auditor2", "auditor password 2").await;
    assert!(c.source().await.unwrap().contains("Too many failed sign-ins"));

    c.close().await.unwrap();
    server.abort();
    let rows: u64 = conn
        .query_first(
            "SELECT COUNT(*) FROM access_log WHERE action = 'login_failed' AND user_name = 'auditor2'",
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rows, 5, "failed logins are logged; the locked-out try is not even checked");
}
