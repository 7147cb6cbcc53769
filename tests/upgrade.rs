//! Upgrading from the Java tool (`wework-msgaudit`): its `corplist` and
//! `message_<corpid>` tables, created and filled exactly as it does (utf8 and
//! utf8mb4), then `migrate` and `pull`: old rows untouched or converted as
//! docs/OPERATIONS.md §8 says, the cursor after the old max seq, new rows
//! after the old ones, nothing pulled twice.

use base64::Engine;
use mysql_async::prelude::*;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use wework_archive_sim::{Rotation, SimConfig, Simulator};

use crate::common::{binary, db_server, sdk_lib};

/// The Java tool's fields of one decrypted message (Message.java saveMessage).
struct JavaRow {
    msgid: String,
    seq: u64,
    ver: u32,
    action: String,
    msgfrom: String,
    tolist: Vec<String>,
    roomid: String,
    msgtime: i64,
    msgtype: String,
    text: String,
    sdkfield: String,
    msgdata: String,
    media_path: String,
}

fn java_row(corpid: &str, seq: u64, msgid: &str, ver: u32, plaintext: &[u8]) -> JavaRow {
    let j: serde_json::Value = serde_json::from_slice(plaintext).unwrap();
    let s = |k: &str| j[k].as_str().unwrap_or("").to_owned();
    let msgtype = s("msgtype");
    let content = &j[msgtype.as_str()];
    let sdkfield = content["sdkfileid"].as_str().unwrap_or("").to_owned();
    JavaRow {
        msgid: msgid.to_owned(),
        seq,
        ver,
        action: s("action"),
        msgfrom: s("from"),
        tolist: j["tolist"]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
            .unwrap_or_default(),
        roomid: s("roomid"),
        msgtime: j["msgtime"].as_i64().unwrap_or(0),
        text: if msgtype == "text" {
            content["content"].as_str().unwrap_or("").to_owned()
        } else {
            String::new()
        },
        msgdata: if content.is_object() { content.to_string() } else { String::new() },
        media_path: if sdkfield.is_empty() { String::new() } else { format!("/msgfile/{corpid}/{seq}.dat") },
        sdkfield,
        msgtype,
    }
}

async fn upgrade_with_charset(charset: &str) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim =
        // One key version throughout: the Java tool's corplist holds one key
        // (prikey), and every record after the takeover is to be decrypted.
        Simulator::start(
            listener,
            SimConfig { seed: 91, corps: 1, messages: 400, rotation: Rotation::Never, ..Default::default() },
        )
            .await
            .unwrap();
    let m = sim.manifest();
    let corp = &m.corps[0];
    let corpus = sim.corpus();
    let records = &corpus.corps[0].records;
    let old: Vec<_> = records
        .iter()
        .filter(|r| r.fault.is_none() && serde_json::from_slice::<serde_json::Value>(&r.plaintext).is_ok())
        // In utf8 (3 bytes) the Java tool's inserts of emoji fail: it never stored those.
        .filter(|r| {
            charset != "utf8" || !String::from_utf8_lossy(&r.plaintext).chars().any(|c| c as u32 > 0xFFFF)
        })
        .take(150)
        .cloned()
        .collect();
    let old_max = old.last().unwrap().seq;

    let name = format!("wwt_upgrade_{}_{}", charset, std::process::id());
    let server = mysql_async::Pool::new(db_server().as_str());
    let mut conn = server.get_conn().await.unwrap();
    conn.query_drop(format!("DROP DATABASE IF EXISTS `{name}`")).await.unwrap();
    conn.query_drop(format!("CREATE DATABASE `{name}` CHARACTER SET {charset}")).await.unwrap();
    conn.query_drop(format!("USE `{name}`")).await.unwrap();
    let t = format!("message_{}", corp.corpid);
    conn.query_drop(format!(
        "CREATE TABLE `corplist` (
            `id` INT(11) NOT NULL AUTO_INCREMENT,
            `corpid` VARCHAR(18) NOT NULL,
            `secret` VARCHAR(43) NOT NULL,
            `corpname` VARCHAR(100) NOT NULL,
            `prikey` VARCHAR(2048) NOT NULL,
            `limits` INT(11) NOT NULL DEFAULT 100,
            `timeout` INT(11) NOT NULL DEFAULT 5,
            `status` TINYINT(1) NOT NULL DEFAULT 1,
            `update` TINYINT(1) NOT NULL DEFAULT 0,
            PRIMARY KEY (`id`), UNIQUE INDEX `corpid` (`corpid`)
        ) ENGINE=InnoDB DEFAULT CHARSET={charset}"
    ))
    .await
    .unwrap();
    conn.query_drop(format!(
        "CREATE TABLE `{t}` (
            `id` INT(11) NOT NULL AUTO_INCREMENT,
            `msgid` VARCHAR(100) NOT NULL,
            `publickey_ver` INT(11) DEFAULT NULL,
            `seq` INT(11) DEFAULT NULL,
            `action` VARCHAR(20) DEFAULT NULL,
            `msgfrom` TEXT,
            `tolist` TEXT,
            `msgtype` VARCHAR(50) DEFAULT NULL,
            `msgtime` BIGINT(20) DEFAULT NULL,
            `text` TEXT,
            `sdkfield` TEXT,
            `msgdata` TEXT,
            `status` INT(11) DEFAULT 0,
            `media_code` INT(11) DEFAULT 0,
            `media_path` VARCHAR(255) DEFAULT NULL,
            `roomid` VARCHAR(100) DEFAULT NULL,
            `created` DATETIME DEFAULT NULL,
            PRIMARY KEY (`id`)
        ) ENGINE=InnoDB DEFAULT CHARSET={charset}"
    ))
    .await
    .unwrap();
    // The Java tool wants a PKCS#8 key with its armour stripped.
    let key = rsa::RsaPrivateKey::from_pkcs8_pem(corp.key(1).unwrap())
        .or_else(|_| {
            <rsa::RsaPrivateKey as rsa::pkcs1::DecodeRsaPrivateKey>::from_pkcs1_pem(corp.key(1).unwrap())
        })
        .unwrap();
    let bare = base64::engine::general_purpose::STANDARD.encode(key.to_pkcs8_der().unwrap().as_bytes());
    conn.exec_drop(
        "INSERT INTO corplist (corpid, secret, corpname, prikey) VALUES (?, ?, ?, ?)",
        (&corp.corpid, &corp.secret, &corp.corpname, &bare),
    )
    .await
    .unwrap();
    let rows: Vec<JavaRow> =
        old.iter().map(|r| java_row(&corp.corpid, r.seq, &r.msgid, r.publickey_ver, &r.plaintext)).collect();
    for r in &rows {
        conn.exec_drop(
            format!(
                "INSERT INTO `{t}` (msgid,seq,`action`,msgfrom,tolist,roomid,msgtime,msgtype,text,sdkfield,msgdata,created,media_path,publickey_ver)
                 VALUES (?,?,?,?,?,?,?,?,?,?,?,NOW(),?,?)"
            ),
            mysql_async::Params::Positional(vec![
                r.msgid.clone().into(),
                r.seq.into(),
                r.action.clone().into(),
                r.msgfrom.clone().into(),
                r.tolist.join(",").into(),
                r.roomid.clone().into(),
                r.msgtime.into(),
                r.msgtype.clone().into(),
                r.text.clone().into(),
                r.sdkfield.clone().into(),
                r.msgdata.clone().into(),
                r.media_path.clone().into(),
                r.ver.into(),
            ]),
        )
        .await
        .unwrap();
    }
    drop(conn);

    let url = format!("{}/{name}", db_server());
    let run = |args: Vec<String>| {
        let url = url.clone();
        async move {
            let out = tokio::process::Command::new(binary())
                .args(&args)
                .env("DATABASE_URL", &url)
                .env("REDIS_URL", "redis://127.0.0.1:1")
                .env("WEWORK_SDK_LIB", sdk_lib().path())
                .env("WEWORK_CALLS_PER_MINUTE", "60000")
                .env_remove("WEWORK_MASTER_KEY")
                .output()
                .await
                .unwrap();
            let text =
                String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "{args:?}: {text}");
            text
        }
    };
    let out = run(vec!["migrate".into()]).await;
    assert!(
        out.contains(&format!(
            "took over {t} from the Java tool: {} row(s), cursor after seq {old_max}",
            rows.len()
        )),
        "{out}"
    );
    let again = run(vec!["migrate".into()]).await;
    assert!(!again.contains("took over"), "once only: {again}");

    let store = wework_archive::store::Store::connect(&url).await.unwrap();
    let mut conn = store.conn().await.unwrap();
    conn.exec_drop("UPDATE corplist SET proxy = ? WHERE corpid = ?", (&m.proxy, &corp.corpid)).await.unwrap();
    let cs: String = conn
        .exec_first(
            "SELECT CHARACTER_SET_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND COLUMN_NAME = 'msgfrom'",
            (&name, &t),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cs, "utf8mb4");

    let out =
        run(vec!["pull".into(), "--corp".into(), corp.corpid.clone(), "--until-caught-up".into()]).await;
    let newer = records.iter().filter(|r| r.seq > old_max).count();
    assert!(out.contains(&format!("fetched {newer} record(s)")), "only what came after the old rows: {out}");

    // Old rows: the same values, tolist as a JSON array of the same ids.
    type Old = (u64, String, u64, String, Option<String>, Option<Vec<u8>>, String, String);
    let stored: Vec<Old> = conn
        .query(format!(
            "SELECT id, msgid, seq, msgfrom, tolist, msgdata, media_path, text FROM `{t}` ORDER BY id"
        ))
        .await
        .unwrap();
    assert_eq!(stored.len(), rows.len() + newer, "nothing stored twice");
    for ((id, msgid, seq, from, tolist, data, path, text), r) in stored.iter().zip(&rows) {
        assert!(*id as usize <= rows.len());
        assert_eq!((msgid, *seq, from, path, text), (&r.msgid, r.seq, &r.msgfrom, &r.media_path, &r.text));
        assert_eq!(tolist.as_deref(), Some(serde_json::to_string(&r.tolist).unwrap().as_str()), "{msgid}");
        assert_eq!(data.as_deref(), Some(r.msgdata.as_bytes()), "{msgid}: msgdata untouched");
    }
    // New rows continue the old ones, byte for byte as this service stores them.
    let max_old_id = stored[rows.len() - 1].0;
    for ((id, msgid, seq, _, _, data, _, _), r) in
        stored[rows.len()..].iter().zip(records.iter().filter(|r| r.seq > old_max))
    {
        assert!(*id > max_old_id);
        assert_eq!((msgid, *seq), (&r.msgid, r.seq));
        // The Java tool's corplist has one key (prikey): later key versions stay no_key.
        if r.fault.is_none() && r.publickey_ver == 1 {
            assert_eq!(data.as_deref(), Some(&r.plaintext[..]), "{msgid}");
        }
    }
    // The text columns of rows after the takeover hold 4-byte characters (emoji)
    // exactly: a utf8 (utf8mb3) table that was not widened would refuse them
    // (1366 in strict mode) and every such record would end in quarantine.
    let wide = |s: &str| s.chars().any(|c| c as u32 > 0xFFFF);
    let mut emoji_rows = 0;
    for (_, msgid, _, from, _, _, _, text) in &stored[rows.len()..] {
        let Some(r) = records.iter().find(|r| &r.msgid == msgid) else { continue };
        if r.fault.is_some() || r.publickey_ver != 1 {
            continue;
        }
        let Some(msg) = wework_archive::wecom::message::parse_lenient(&r.plaintext) else { continue };
        let fields = wework_archive::wecom::message::fields(&msg);
        assert_eq!(
            (from, text),
            (&fields.from, &fields.text),
            "{msgid}: columns as this service renders them"
        );
        emoji_rows += usize::from(wide(text));
    }
    assert!(emoji_rows > 0, "the corpus after the takeover has records with emoji in their text");
    let quarantined: u64 = conn.query_first("SELECT COUNT(*) FROM quarantine").await.unwrap().unwrap_or(0);
    assert_eq!(quarantined, 0, "nothing refused by the widened table");
    let cursor: u64 = conn
        .exec_first("SELECT seq FROM corp_state WHERE corpid = ?", (&corp.corpid,))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cursor, records.last().unwrap().seq);
    drop(conn);
    store.close().await;
    let mut conn = server.get_conn().await.unwrap();
    conn.query_drop(format!("DROP DATABASE IF EXISTS `{name}`")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn java_tool_tables_utf8_are_taken_over() {
    upgrade_with_charset("utf8").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn java_tool_tables_utf8mb4_are_taken_over() {
    upgrade_with_charset("utf8mb4").await;
}
