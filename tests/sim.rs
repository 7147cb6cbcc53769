//! The simulator (`sim/`) against Tencent's real SDK: the SDK reaches it through its `proxy`
//! argument, pulls and decrypts every record, downloads every media file chunk by chunk, and
//! turns each injected fault into the return code PROTOCOL.md predicts.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use md5::Digest as _;
use rand::{Rng, RngCore, SeedableRng};
use wework_archive::wecom::keys::PrivateKey;
use wework_archive::wecom::sdk::{ErrorCode, NetOptions, Refusal, Sdk, SdkError};
use wework_archive_sim::{
    CorpCorpus, Endpoint, FaultKind, FaultSpec, ManifestCorp, RecordFault, SimConfig, Simulator, format,
};

use crate::common::sdk_lib;

async fn start(config: SimConfig) -> Simulator {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    Simulator::start(listener, config).await.unwrap()
}

fn net(sim: &Simulator, timeout_secs: u64) -> NetOptions {
    NetOptions { proxy: sim.proxy_url(), passwd: String::new(), timeout: Duration::from_secs(timeout_secs) }
}

fn md5_hex(b: &[u8]) -> String {
    hex::encode(md5::Md5::digest(b))
}

/// One chatdata item of a GetChatData reply (the envelope is plain JSON).
#[derive(serde::Deserialize)]
struct Item {
    seq: u64,
    msgid: String,
    publickey_ver: u32,
    encrypt_random_key: String,
    encrypt_chat_msg: String,
}

fn page(body: &[u8]) -> Vec<Item> {
    #[derive(serde::Deserialize)]
    struct Reply {
        errcode: i64,
        chatdata: Vec<Item>,
    }
    let r: Reply = serde_json::from_slice(body).unwrap();
    assert_eq!(r.errcode, 0);
    r.chatdata
}

/// Pulls everything with limit 1000 through the real SDK.
fn pull_all(sdk: &Sdk, net: &NetOptions) -> Vec<Item> {
    let mut seq = 0;
    let mut out = Vec::new();
    loop {
        let items = page(&sdk.get_chat_data(seq, 1000, net).unwrap());
        let Some(last) = items.last() else { return out };
        seq = last.seq;
        out.extend(items);
    }
}

/// The real GetMediaData chunk loop.
fn download(sdk: &Sdk, sdkfileid: &str, net: &NetOptions) -> Result<(Vec<u8>, usize), SdkError> {
    let mut data = Vec::new();
    let mut index = String::new();
    let mut chunks = 0;
    loop {
        let c = sdk.get_media_chunk(&index, sdkfileid, net)?;
        data.extend_from_slice(&c.data);
        chunks += 1;
        if c.is_finish {
            return Ok((data, chunks));
        }
        index = c.next_index;
    }
}

fn keyring(corp: &ManifestCorp) -> HashMap<u32, PrivateKey> {
    corp.keys.iter().map(|k| (k.version, PrivateKey::parse(&k.private_key_pem).unwrap())).collect()
}

/// Pulls and checks one corp: every record decrypts to exactly the corpus plaintext, every
/// media file (nested ones included) has the stated md5. Runs on a blocking thread.
fn check_corp(corp: ManifestCorp, expected: CorpCorpus, net: NetOptions) -> (usize, usize, usize) {
    let lib = sdk_lib();
    let sdk = lib.new_sdk(&corp.corpid, &corp.secret).unwrap();
    let keys = keyring(&corp);
    let items = pull_all(&sdk, &net);
    assert_eq!(items.len(), expected.records.len(), "{}: every record served", corp.corpid);
    let mut versions = BTreeSet::new();
    for item in &items {
        let rec = expected.record(item.seq).unwrap();
        assert_eq!(item.msgid, rec.msgid);
        versions.insert(item.publickey_ver);
        let ek = keys[&item.publickey_ver].unwrap_random_key(&item.encrypt_random_key).unwrap();
        let plain = lib.decrypt(&ek, &item.encrypt_chat_msg).unwrap();
        assert!(plain == rec.plaintext, "{}: seq {} plaintext differs", corp.corpid, item.seq);
    }
    assert_eq!(versions, BTreeSet::from([1, 2]), "a full pull crosses the key rotation");
    let (mut nested, mut multi) = (0, 0);
    for m in &expected.media {
        let (bytes, chunks) = download(&sdk, &m.sdkfileid, &net).unwrap();
        assert_eq!(bytes.len() as u64, m.size, "{} {}", m.item_type, m.fileid);
        assert_eq!(md5_hex(&bytes), m.md5, "{} {}", m.item_type, m.fileid);
        if let Some(stated) = m.md5sum.as_deref().filter(|s| !s.is_empty()) {
            assert_eq!(stated, m.md5);
        }
        assert_eq!(chunks as u64, m.chunks());
        nested += usize::from(m.location != wework_archive_sim::MediaLocation::Message);
        multi += usize::from(chunks > 1);
    }
    (items.len(), nested, multi)
}

/// 2 corps × 2,500 records (5,000 in all), with a 50 MiB video in the first corp.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_sdk_pulls_decrypts_and_downloads_the_whole_archive() {
    let sim = start(SimConfig {
        seed: 31,
        corps: 2,
        messages: 2500,
        big_video: Some(50 << 20),
        ..Default::default()
    })
    .await;
    let manifest = sim.manifest();
    let corpus = sim.corpus();
    let tasks: Vec<_> = manifest
        .corps
        .iter()
        .zip(&corpus.corps)
        .map(|(mc, cc)| {
            let (mc, cc, net) = (mc.clone(), cc.clone(), net(&sim, 10));
            tokio::task::spawn_blocking(move || check_corp(mc, cc, net))
        })
        .collect();
    let mut records = 0;
    for t in tasks {
        let (n, nested, multi) = t.await.unwrap();
        assert!(nested > 0 && multi > 0, "nested {nested}, multi-chunk {multi}");
        records += n;
    }
    assert_eq!(records, 5000);
    let big = corpus.corps[0].media.iter().max_by_key(|m| m.size).unwrap();
    assert_eq!(big.size, 50 << 20);
    let stats = sim.stats();
    assert!(stats.repeated_media_ranges().is_empty(), "no chunk was fetched twice");
    let chunks: u64 = corpus.corps.iter().flat_map(|c| &c.media).map(|m| m.chunks()).sum();
    assert_eq!(stats.requests_to(Endpoint::GetChatMediaData), chunks);
    assert_eq!(stats.requests_to(Endpoint::GetToken), 2, "one token per SDK handle, cached");
    sim.shutdown().await;
}

/// A random plaintext: JSON-ish text with CJK, emoji, control characters and NULs, or raw
/// bytes; empty and exact block multiples included.
fn random_plaintext(rng: &mut impl RngCore, i: usize) -> Vec<u8> {
    let len = match i % 10 {
        0 => 0,
        1 => 16 * rng.random_range(1..20),
        2 => rng.random_range(5_000..60_000),
        _ => rng.random_range(1..2_000),
    };
    if i.is_multiple_of(7) {
        let mut b = vec![0u8; len];
        rng.fill_bytes(&mut b);
        return b;
    }
    const POOL: &[&str] =
        &["a", "Z", "0", "{", "\"", "\\", " ", "\n", "\u{1}", "\0", "中", "文", "😀", "é", "🇨🇳"];
    let mut s = String::new();
    while s.len() < len {
        s.push_str(POOL[rng.random_range(0..POOL.len())]);
    }
    s.into_bytes()
}

/// The simulator's pure-Rust format agrees with the real `DecryptData`, on clean pairs and
/// on corrupted ones (same plaintext, or same return code).
#[test]
fn differential_rust_format_vs_real_decrypt() {
    let lib = sdk_lib();
    let mut rng = rand::rngs::StdRng::seed_from_u64(2026);
    let mut corrupted_agree = 0;
    for i in 0..2000 {
        let plain = random_plaintext(&mut rng, i);
        let mut params = format::random_params(&mut rng, plain.len());
        if i.is_multiple_of(50) {
            params.pre_len = 2000;
            params.end_len = 2000;
        }
        let sealed = format::encrypt(&plain, &params, &mut rng).unwrap();
        let (k, m) = (&sealed.encrypt_key, &sealed.encrypt_chat_msg);
        assert_eq!(format::decrypt(k.as_bytes(), m.as_bytes()).unwrap(), plain, "case {i}: Rust");
        assert_eq!(lib.decrypt(k, m).unwrap(), plain, "case {i}: real SDK, params {params:?}");
        if !i.is_multiple_of(4) {
            continue;
        }
        // A corrupted variant: truncated, extended, a changed character, or another key.
        let (k2, m2) = match rng.random_range(0..4) {
            0 => (k.clone(), m[..rng.random_range(13..m.len())].to_string()),
            1 => (k.clone(), format!("{m}AAAA")),
            2 => {
                let mut b = m.clone().into_bytes();
                let at = rng.random_range(0..b.len());
                b[at] = if b[at] == b'A' { b'B' } else { b'A' };
                (k.clone(), String::from_utf8(b).unwrap())
            }
            _ => {
                let p = format::random_params(&mut rng, 1);
                let other = format::encrypt(b"x", &p, &mut rng).unwrap();
                (other.encrypt_key, m.clone())
            }
        };
        let ours = format::decrypt(k2.as_bytes(), m2.as_bytes());
        let real = lib.decrypt(&k2, &m2);
        match (&ours, &real) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "case {i}: both decrypt, to the same bytes"),
            (Err(format::DecryptError::WouldAbort(_)), Err(SdkError::Refused { .. })) => {}
            (Err(format::DecryptError::KeyInfo), Err(SdkError::Refused { reason, .. })) => {
                assert!(
                    matches!(reason, Refusal::KeyInfoDoesNotFit { .. } | Refusal::KeyInfoUnparsable { .. }),
                    "case {i}: {reason}"
                )
            }
            (Err(e), Err(r)) => assert_eq!(e.sdk_code(), Some(r.raw_code()), "case {i}: {e} vs {r}"),
            _ => panic!("case {i}: ours {ours:?}, real {real:?}"),
        }
        corrupted_agree += 1;
    }
    assert_eq!(corrupted_agree, 500);
}

/// Each fault kind gives the SDK return code PROTOCOL.md predicts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_faults_give_the_predicted_sdk_codes() {
    let sim = start(SimConfig {
        seed: 32,
        corps: 1,
        messages: 80,
        slow: Duration::from_millis(2500),
        ..Default::default()
    })
    .await;
    let corp = sim.manifest().corps[0].clone();
    let corpus = sim.corpus();
    let file =
        corpus.corps[0].media.iter().find(|m| m.md5sum.as_deref().is_some_and(|s| !s.is_empty())).unwrap();
    let (sdkfileid, md5) = (file.sdkfileid.clone(), file.md5.clone());
    let s = sim.clone();
    tokio::task::spawn_blocking(move || {
        let lib = sdk_lib();
        let net = net(&s, 1);
        let sdk = lib.new_sdk(&corp.corpid, &corp.secret).unwrap();
        // Token fetched and cached while the service is healthy.
        sdk.get_chat_data(0, 10, &net).unwrap();
        let tokens = s.stats().requests_to(Endpoint::GetToken);
        let only = |k| FaultSpec::none().with(k, 1.0);
        let code = |r: Result<Vec<u8>, SdkError>| r.unwrap_err().code();
        let media_code = |sdk: &Sdk| sdk.get_media_chunk("", &sdkfileid, &net).unwrap_err().code();

        s.set_faults(only(FaultKind::Http500));
        assert_eq!(code(sdk.get_chat_data(0, 10, &net)), Some(ErrorCode::Network));
        assert_eq!(media_code(&sdk), Some(ErrorCode::Network));

        s.set_faults(only(FaultKind::Cut));
        assert_eq!(code(sdk.get_chat_data(0, 10, &net)), Some(ErrorCode::Network));
        assert_eq!(media_code(&sdk), Some(ErrorCode::Network));

        s.set_faults(only(FaultKind::Slow));
        let t = Instant::now();
        assert_eq!(code(sdk.get_chat_data(0, 10, &net)), Some(ErrorCode::Network));
        let waited = t.elapsed();
        assert!(waited >= Duration::from_millis(900) && waited < Duration::from_millis(2400), "{waited:?}");

        // GetChatData does not parse its reply: rc 0, errcode in the body, token kept.
        s.set_faults(only(FaultKind::TokenExpired));
        let body: serde_json::Value =
            serde_json::from_slice(&sdk.get_chat_data(0, 10, &net).unwrap()).unwrap();
        assert_eq!(body["errcode"], 42001);
        s.set_faults(FaultSpec::none());
        sdk.get_chat_data(0, 10, &net).unwrap();
        assert_eq!(s.stats().requests_to(Endpoint::GetToken), tokens, "the SDK did not refresh its token");

        s.set_faults(only(FaultKind::MediaIp));
        assert_eq!(media_code(&sdk), Some(ErrorCode::IllegalIp));
        s.set_faults(only(FaultKind::MediaExpired));
        assert_eq!(media_code(&sdk), Some(ErrorCode::Expired));

        s.set_faults(only(FaultKind::Md5Mismatch));
        let (bytes, _) = download(&sdk, &sdkfileid, &net).unwrap();
        assert_ne!(md5_hex(&bytes), md5, "corrupted download, rc 0");
        s.set_faults(FaultSpec::none());
        assert_eq!(md5_hex(&download(&sdk, &sdkfileid, &net).unwrap().0), md5, "the retry is clean");

        // Server-side refusals.
        let wrong = lib.new_sdk(&corp.corpid, "wrong-secret").unwrap();
        assert_eq!(code(wrong.get_chat_data(0, 10, &net)), Some(ErrorCode::Network), "gettoken 40001");
        let unknown = wework_archive_sim::proto::MsgSdkFileId {
            fileid: "3069unknown".into(),
            authkey: "x".into(),
            aeskey: "00".repeat(16),
        }
        .to_sdkfileid();
        let e = sdk.get_media_chunk("", &unknown, &net).unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::DataParse), "unknown fileid (errcode 40058)");
    })
    .await
    .unwrap();
    for k in [FaultKind::Http500, FaultKind::Cut, FaultKind::Slow, FaultKind::MediaIp, FaultKind::Md5Mismatch]
    {
        assert!(sim.stats().faults_of(k) >= 1, "{k}");
    }
    sim.shutdown().await;
}

/// Record faults: what the real SDK path makes of each bad record, and the withheld key
/// making `unknown_ver` records decryptable once added.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_faults_through_the_real_sdk() {
    let sim = start(SimConfig {
        seed: 33,
        corps: 1,
        messages: 400,
        faults: "short_msg=0.005,bad_base64=0.005,unknown_ver=0.005,wrong_key=0.005".parse().unwrap(),
        ..Default::default()
    })
    .await;
    let corp = sim.manifest().corps[0].clone();
    let expected = sim.corpus().corps[0].clone();
    let withheld = sim.withheld_keys().remove(0);
    let net = net(&sim, 5);
    tokio::task::spawn_blocking(move || {
        let lib = sdk_lib();
        let sdk = lib.new_sdk(&corp.corpid, &corp.secret).unwrap();
        let keys = keyring(&corp);
        assert!(!keys.contains_key(&withheld.version));
        let late = PrivateKey::parse(&withheld.private_key_pem).unwrap();
        let mut seen = BTreeSet::new();
        for item in pull_all(&sdk, &net) {
            let rec = expected.record(item.seq).unwrap();
            let unwrap = |k: &PrivateKey| k.unwrap_random_key(&item.encrypt_random_key);
            match rec.fault {
                None => {
                    let ek = unwrap(&keys[&item.publickey_ver]).unwrap();
                    assert!(lib.decrypt(&ek, &item.encrypt_chat_msg).unwrap() == rec.plaintext);
                }
                Some(f) => {
                    seen.insert(f);
                    match f {
                        RecordFault::ShortMsg => {
                            // The real DecryptData would abort the process; the safe layer refuses.
                            let ek = unwrap(&keys[&item.publickey_ver]).unwrap();
                            let e = lib.decrypt(&ek, &item.encrypt_chat_msg).unwrap_err();
                            assert!(matches!(
                                e,
                                SdkError::Refused { reason: Refusal::MessageTooShort { .. }, .. }
                            ));
                        }
                        RecordFault::BadBase64 => assert!(unwrap(&keys[&item.publickey_ver]).is_err()),
                        RecordFault::WrongKey => assert!(keys.values().all(|k| unwrap(k).is_err())),
                        RecordFault::UnknownVer => {
                            assert_eq!(item.publickey_ver, withheld.version);
                            let ek = unwrap(&late).unwrap();
                            assert!(lib.decrypt(&ek, &item.encrypt_chat_msg).unwrap() == rec.plaintext);
                        }
                        other => panic!("{other:?} is not enabled in this test"),
                    }
                }
            }
        }
        assert_eq!(seen.len(), 4, "{seen:?}");
    })
    .await
    .unwrap();
    sim.shutdown().await;
}
