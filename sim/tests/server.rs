//! The simulator end to end with the pure-Rust client: tokens, pulls, decryption with the
//! manifest keys, media downloads, API errors and every fault kind.

use std::collections::BTreeSet;
use std::time::Duration;

use md5::Digest as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wework_archive_sim::client::{CallError, Client};
use wework_archive_sim::{
    Endpoint, FaultKind, FaultSpec, Manifest, RecordFault, SimConfig, Simulator, Tunnel, format, keys,
};

async fn start(config: SimConfig) -> Simulator {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    Simulator::start(listener, config).await.unwrap()
}

fn client(sim: &Simulator) -> Client {
    Client::new(sim.local_addr())
}

/// Pulls a corp's whole archive, page by page; returns the chatdata items.
async fn pull_all(c: &Client, token: &str, limit: u32) -> Vec<serde_json::Value> {
    let mut seq = 0;
    let mut out = Vec::new();
    loop {
        let r = c.get_chat_data(token, seq, limit).await.unwrap();
        assert_eq!(r.status, 200);
        let j = r.json().unwrap();
        assert_eq!(j["errcode"], 0, "{j}");
        let items = j["chatdata"].as_array().unwrap().clone();
        if items.is_empty() {
            return out;
        }
        assert!(items.len() <= limit as usize);
        seq = items.last().unwrap()["seq"].as_u64().unwrap();
        out.extend(items);
    }
}

fn md5_hex(b: &[u8]) -> String {
    hex::encode(md5::Md5::digest(b))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_decrypt_and_download_everything() {
    let sim = start(SimConfig { seed: 5, corps: 2, messages: 300, ..Default::default() }).await;
    let manifest = sim.manifest();
    let corpus = sim.corpus();
    assert_eq!(manifest.proxy, format!("http://{}", sim.local_addr()));
    let c = client(&sim);
    for (mc, cc) in manifest.corps.iter().zip(&corpus.corps) {
        assert_eq!(mc.corpid, cc.corpid);
        assert!(mc.corpid.starts_with("ww") && mc.corpid.len() == 18);
        assert_eq!(mc.messages, 300);
        let forms: BTreeSet<bool> =
            mc.keys.iter().map(|k| k.private_key_pem.contains("RSA PRIVATE")).collect();
        assert_eq!(forms.len(), 2, "both PEM forms in use");
        let token = c.gettoken(&mc.corpid, &mc.secret).await.unwrap();
        let items = pull_all(&c, &token, 100).await;
        assert_eq!(items.len(), 300);
        let mut versions = BTreeSet::new();
        for item in &items {
            let seq = item["seq"].as_u64().unwrap();
            let rec = cc.record(seq).unwrap();
            assert_eq!(item["msgid"], rec.msgid.as_str());
            let ver = item["publickey_ver"].as_u64().unwrap() as u32;
            versions.insert(ver);
            let pem = mc.key(ver).unwrap();
            let ek = keys::unwrap_with_pem(pem, item["encrypt_random_key"].as_str().unwrap()).unwrap();
            let msg = item["encrypt_chat_msg"].as_str().unwrap();
            assert_eq!(format::decrypt(&ek, msg.as_bytes()).unwrap(), rec.plaintext);
        }
        assert_eq!(versions, BTreeSet::from([1, 2]), "key rotation mid-corpus");
        for m in &cc.media {
            let bytes = c.download(&token, &m.sdkfileid).await.unwrap();
            assert_eq!(bytes.len() as u64, m.size);
            assert_eq!(md5_hex(&bytes), m.md5, "{}", m.item_type);
        }
    }
    let stats = sim.stats();
    assert!(stats.repeated_media_ranges().is_empty(), "no chunk fetched twice");
    let chunks: u64 = corpus.corps.iter().flat_map(|c| c.media.iter()).map(|m| m.chunks()).sum();
    assert_eq!(stats.requests_to(Endpoint::GetChatMediaData), chunks);
    assert!(
        chunks > corpus.corps.iter().map(|c| c.media.len() as u64).sum::<u64>(),
        "some multi-chunk files"
    );
    assert_eq!(stats.records_served, 600);
    assert_eq!(stats.tokens_issued, 2);
    assert!(stats.tunnels[&Tunnel::Connect] > 0);
    sim.shutdown().await;
}

#[tokio::test]
async fn api_errors_like_qyapi() {
    let sim = start(SimConfig { seed: 6, corps: 1, messages: 40, ..Default::default() }).await;
    let m = sim.manifest();
    let corp = &m.corps[0];
    let c = client(&sim);
    let j = |r: wework_archive_sim::client::RawResponse| r.json().unwrap();
    let target = format!("/cgi-bin/gettoken?corpid={}&corpsecret=nope", corp.corpid);
    assert_eq!(j(c.request("GET", &target, &[], b"").await.unwrap())["errcode"], 40001);
    let r = c.request("GET", "/cgi-bin/gettoken?corpid=ww0000000000000000&corpsecret=x", &[], b"");
    assert_eq!(j(r.await.unwrap())["errcode"], 40013);
    assert_eq!(j(c.get_chat_data("bogus", 0, 10).await.unwrap())["errcode"], 40014);
    let token = c.gettoken(&corp.corpid, &corp.secret).await.unwrap();
    assert_eq!(c.gettoken(&corp.corpid, &corp.secret).await.unwrap(), token, "same token while valid");
    assert_eq!(j(c.get_chat_data(&token, 0, 0).await.unwrap())["errcode"], 40058);
    assert_eq!(j(c.get_chat_data(&token, 0, 1001).await.unwrap())["errcode"], 40058);
    let bad_sign = c
        .request(
            "POST",
            &format!("/cgi-bin/message/getchatdata?access_token={token}"),
            &[],
            br#"{"seq":0,"limit":10,"version":3,"encrypt_sign":"1"}"#,
        )
        .await
        .unwrap();
    assert_eq!(j(bad_sign)["errcode"], 40014);
    // Past the end: an empty page.
    let last = sim.corpus().corps[0].records.last().unwrap().seq;
    let r = j(c.get_chat_data(&token, last, 10).await.unwrap());
    assert_eq!(r["chatdata"].as_array().unwrap().len(), 0);
    // A well-formed sdkfileid the server does not know.
    let fake = base64_sdkfileid("3069nope", "x", "00112233445566778899aabbccddeeff");
    assert!(matches!(c.get_media_chunk(&token, &fake, (0, 524_287)).await, Err(CallError::Errcode(40058))));
    sim.shutdown().await;
}

fn base64_sdkfileid(fileid: &str, authkey: &str, aeskey: &str) -> String {
    wework_archive_sim::proto::MsgSdkFileId {
        fileid: fileid.into(),
        authkey: authkey.into(),
        aeskey: aeskey.into(),
    }
    .to_sdkfileid()
}

#[tokio::test]
async fn tokens_expire() {
    let sim = start(SimConfig {
        seed: 7,
        corps: 1,
        messages: 10,
        token_ttl: Duration::from_secs(1),
        ..Default::default()
    })
    .await;
    let corp = &sim.manifest().corps[0];
    let c = client(&sim);
    let token = c.gettoken(&corp.corpid, &corp.secret).await.unwrap();
    assert_eq!(c.get_chat_data(&token, 0, 10).await.unwrap().json().unwrap()["errcode"], 0);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(c.get_chat_data(&token, 0, 10).await.unwrap().json().unwrap()["errcode"], 42001);
    let fresh = c.gettoken(&corp.corpid, &corp.secret).await.unwrap();
    assert_ne!(fresh, token);
    sim.shutdown().await;
}

/// Every request fault at rate 1, one at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_faults() {
    let sim = start(SimConfig {
        seed: 8,
        corps: 1,
        messages: 60,
        slow: Duration::from_millis(800),
        ..Default::default()
    })
    .await;
    let corp = sim.manifest().corps[0].clone();
    let media = sim.corpus().corps[0].media[0].clone();
    let c = client(&sim).with_timeout(Duration::from_millis(400));
    let token = c.gettoken(&corp.corpid, &corp.secret).await.unwrap();
    let only = |k| FaultSpec::none().with(k, 1.0);

    sim.set_faults(only(FaultKind::Http500));
    let r = c.get_chat_data(&token, 0, 10).await.unwrap();
    assert!((500..505).contains(&r.status), "{}", r.status);
    assert!(matches!(
        c.get_media_chunk(&token, &media.sdkfileid, (0, 524_287)).await,
        Err(CallError::Network(_))
    ));

    sim.set_faults(only(FaultKind::Cut));
    let r = c.get_chat_data(&token, 0, 10).await.unwrap();
    assert!(!r.complete && r.status == 200);

    sim.set_faults(only(FaultKind::Slow));
    let t = std::time::Instant::now();
    assert!(c.get_chat_data(&token, 0, 10).await.is_err(), "times out");
    assert!(t.elapsed() >= Duration::from_millis(390));
    let patient = client(&sim).with_timeout(Duration::from_secs(5));
    assert_eq!(patient.get_chat_data(&token, 0, 10).await.unwrap().json().unwrap()["errcode"], 0);

    sim.set_faults(only(FaultKind::TokenExpired));
    assert_eq!(c.get_chat_data(&token, 0, 10).await.unwrap().json().unwrap()["errcode"], 42001);

    sim.set_faults(only(FaultKind::MediaIp));
    assert!(matches!(
        c.get_media_chunk(&token, &media.sdkfileid, (0, 524_287)).await,
        Err(CallError::Errcode(301042))
    ));
    sim.set_faults(only(FaultKind::MediaExpired));
    assert!(matches!(
        c.get_media_chunk(&token, &media.sdkfileid, (0, 524_287)).await,
        Err(CallError::Errcode(301048))
    ));

    sim.set_faults(only(FaultKind::Md5Mismatch));
    let bytes = c.download(&token, &media.sdkfileid).await.unwrap();
    assert_eq!(bytes.len() as u64, media.size);
    assert_ne!(md5_hex(&bytes), media.md5);

    sim.set_faults(FaultSpec::none());
    assert_eq!(md5_hex(&c.download(&token, &media.sdkfileid).await.unwrap()), media.md5);
    let s = sim.stats();
    for k in [
        FaultKind::Http500,
        FaultKind::Cut,
        FaultKind::Slow,
        FaultKind::TokenExpired,
        FaultKind::MediaIp,
        FaultKind::MediaExpired,
        FaultKind::Md5Mismatch,
    ] {
        assert!(s.faults_of(k) >= 1, "{k}");
    }
    sim.shutdown().await;
}

/// Fault decisions depend on the request and its attempt number only.
#[tokio::test]
async fn faults_are_deterministic() {
    let run = || async {
        let sim = start(SimConfig {
            seed: 9,
            corps: 1,
            messages: 30,
            faults: "http500=0.3,token_expired=0.3".parse().unwrap(),
            ..Default::default()
        })
        .await;
        let corp = sim.manifest().corps[0].clone();
        let c = client(&sim);
        let mut token = None;
        while token.is_none() {
            token = c.gettoken(&corp.corpid, &corp.secret).await.ok();
        }
        let token = token.unwrap();
        let mut outcomes = Vec::new();
        for seq in 0..20 {
            for _attempt in 0..3 {
                let r = c.get_chat_data(&token, seq, 5).await.unwrap();
                outcomes.push((r.status, r.json().map(|j| j["errcode"].as_i64()).ok().flatten()));
            }
        }
        sim.shutdown().await;
        outcomes
    };
    let a = run().await;
    assert_eq!(a, run().await);
    assert!(a.iter().any(|(s, _)| *s >= 500));
    assert!(a.iter().any(|(_, e)| *e == Some(42001)));
    assert!(a.iter().any(|(_, e)| *e == Some(0)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_faults_and_withheld_keys() {
    let sim = start(SimConfig {
        seed: 10,
        corps: 2,
        messages: 200,
        faults: "short_msg=0.01,bad_base64=0.01,unknown_ver=0.01,wrong_key=0.01".parse().unwrap(),
        ..Default::default()
    })
    .await;
    let manifest = sim.manifest();
    let withheld = sim.withheld_keys();
    assert_eq!(withheld.len(), 2);
    let c = client(&sim);
    for (mc, cc) in manifest.corps.iter().zip(&sim.corpus().corps) {
        assert!(mc.keys.iter().all(|k| k.version != 3), "withheld version not in the manifest");
        let w = withheld.iter().find(|w| w.corpid == mc.corpid).unwrap();
        assert_eq!(w.version, 3);
        let token = c.gettoken(&mc.corpid, &mc.secret).await.unwrap();
        let items = pull_all(&c, &token, 1000).await;
        let mut seen = BTreeSet::new();
        for item in items {
            let rec = cc.record(item["seq"].as_u64().unwrap()).unwrap();
            let ver = item["publickey_ver"].as_u64().unwrap() as u32;
            let erk = item["encrypt_random_key"].as_str().unwrap();
            let msg = item["encrypt_chat_msg"].as_str().unwrap();
            let Some(fault) = rec.fault else { continue };
            seen.insert(fault);
            match fault {
                RecordFault::ShortMsg => {
                    assert!(msg.len() < 13);
                    let ek = keys::unwrap_with_pem(mc.key(ver).unwrap(), erk).unwrap();
                    assert!(matches!(
                        format::decrypt(&ek, msg.as_bytes()),
                        Err(format::DecryptError::WouldAbort(_))
                    ));
                }
                RecordFault::BadBase64 => {
                    assert!(matches!(
                        keys::unwrap_with_pem(mc.key(ver).unwrap(), erk),
                        Err(keys::KeyError::Base64(_))
                    ));
                }
                RecordFault::UnknownVer => {
                    assert_eq!(ver, 3);
                    assert!(mc.key(ver).is_none());
                    let ek = keys::unwrap_with_pem(&w.private_key_pem, erk).unwrap();
                    assert_eq!(format::decrypt(&ek, msg.as_bytes()).unwrap(), rec.plaintext);
                }
                RecordFault::WrongKey => {
                    assert!(mc.key(ver).is_some());
                    assert!(mc.keys.iter().all(|k| keys::unwrap_with_pem(&k.private_key_pem, erk).is_err()));
                }
                other => panic!("{other:?} is not enabled in this test"),
            }
        }
        assert_eq!(seen.len(), 4, "every record fault in every corp");
    }
    assert!(sim.stats().faults_of(FaultKind::WrongKey) >= 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn same_seed_same_records_across_restarts() {
    let served = |sim: Simulator| async move {
        let corp = sim.manifest().corps[0].clone();
        let c = client(&sim);
        let token = c.gettoken(&corp.corpid, &corp.secret).await.unwrap();
        let items = pull_all(&c, &token, 1000).await;
        sim.shutdown().await;
        items
            .into_iter()
            .map(|i| (i["seq"].as_u64().unwrap(), i["msgid"].to_string(), i["encrypt_chat_msg"].to_string()))
            .collect::<Vec<_>>()
    };
    let cfg = SimConfig { seed: 12, corps: 1, messages: 150, ..Default::default() };
    let a = start(cfg.clone()).await;
    let (ma, pa) =
        (a.manifest(), a.corpus().corps[0].records.iter().map(|r| r.plaintext.clone()).collect::<Vec<_>>());
    let a = served(a).await;
    let b = start(cfg).await;
    let (mb, pb) =
        (b.manifest(), b.corpus().corps[0].records.iter().map(|r| r.plaintext.clone()).collect::<Vec<_>>());
    assert_eq!(a, served(b).await);
    assert_eq!(pa, pb);
    // Keys are cached per process and seed, so a restarted simulator keeps its manifest.
    assert_eq!(ma.corps, mb.corps);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_mode_and_appends() {
    let sim =
        start(SimConfig { seed: 13, corps: 2, messages: 20, rate: Some(40.0), ..Default::default() }).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let m = sim.manifest();
    assert!(
        m.corps.iter().all(|c| c.messages >= 30),
        "{:?}",
        m.corps.iter().map(|c| c.messages).collect::<Vec<_>>()
    );
    let before = sim.corpus().corps[1].records.len();
    sim.append_messages(1, 5).await.unwrap();
    assert!(sim.corpus().corps[1].records.len() >= before + 5);
    // New records are served and decrypt.
    let corp = &m.corps[0];
    let c = client(&sim);
    let token = c.gettoken(&corp.corpid, &corp.secret).await.unwrap();
    let items = pull_all(&c, &token, 1000).await;
    assert!(items.len() >= 30);
    let cc = sim.corpus();
    let last = items.last().unwrap();
    let rec = cc.corps[0].record(last["seq"].as_u64().unwrap()).unwrap();
    let ek = keys::unwrap_with_pem(
        corp.key(last["publickey_ver"].as_u64().unwrap() as u32).unwrap(),
        last["encrypt_random_key"].as_str().unwrap(),
    )
    .unwrap();
    assert_eq!(
        format::decrypt(&ek, last["encrypt_chat_msg"].as_str().unwrap().as_bytes()).unwrap(),
        rec.plaintext
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn socks5_and_plain_http_entry_points() {
    let sim = start(SimConfig { seed: 14, corps: 1, messages: 5, ..Default::default() }).await;
    let corp = sim.manifest().corps[0].clone();
    // SOCKS5 with a host name (socks5h): greeting, CONNECT, then TLS would follow.
    let mut s = tokio::net::TcpStream::connect(sim.local_addr()).await.unwrap();
    s.write_all(&[5, 1, 0]).await.unwrap();
    let mut r = [0u8; 2];
    s.read_exact(&mut r).await.unwrap();
    assert_eq!(r, [5, 0]);
    let host = b"qyapi.weixin.qq.com";
    let mut req = vec![5, 1, 0, 3, host.len() as u8];
    req.extend_from_slice(host);
    req.extend_from_slice(&443u16.to_be_bytes());
    s.write_all(&req).await.unwrap();
    let mut r = [0u8; 10];
    s.read_exact(&mut r).await.unwrap();
    assert_eq!(r[1], 0, "SOCKS5 CONNECT granted");
    drop(s);
    // CONNECT to another host is refused.
    let mut s = tokio::net::TcpStream::connect(sim.local_addr()).await.unwrap();
    s.write_all(b"CONNECT example.com:443 HTTP/1.1\r\n\r\n").await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    assert!(buf.starts_with(b"HTTP/1.1 403"));
    // Plain HTTP straight to the API, for debugging with curl.
    let mut s = tokio::net::TcpStream::connect(sim.local_addr()).await.unwrap();
    s.write_all(
        format!("GET /cgi-bin/gettoken?corpid={}&corpsecret={} HTTP/1.0\r\n\r\n", corp.corpid, corp.secret)
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8(buf).unwrap();
    assert!(text.contains("\"access_token\""), "{text}");
    let st = sim.stats();
    assert_eq!(st.tunnels[&Tunnel::Socks5], 1);
    assert_eq!(st.tunnels[&Tunnel::PlainHttp], 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn serve_writes_the_manifest_once_listening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("manifest.json");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let p = path.clone();
    let task = tokio::spawn(async move {
        let cfg = SimConfig { seed: 15, corps: 1, messages: 3, ..Default::default() };
        wework_archive_sim::serve(listener, cfg, Some(&p), async {
            let _ = rx.await;
        })
        .await
    });
    let manifest = loop {
        if let Ok(m) = Manifest::read(&path) {
            break m;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(manifest.proxy, format!("http://{addr}"));
    let text = std::fs::read_to_string(&path).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let keys: BTreeSet<&str> = v["corps"][0].as_object().unwrap().keys().map(|k| k.as_str()).collect();
    assert_eq!(
        keys,
        BTreeSet::from(["corpid", "secret", "corpname", "keys", "messages", "undecryptable_msgids"])
    );
    assert_eq!(v["corps"][0]["messages"], 3);
    // The server answers while the manifest exists.
    let c = Client::new(addr);
    c.gettoken(&manifest.corps[0].corpid, &manifest.corps[0].secret).await.unwrap();
    tx.send(()).unwrap();
    task.await.unwrap().unwrap();
}
