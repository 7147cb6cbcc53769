//! Feishu meeting recordings into the archive (issue 13), against the fake
//! Feishu (in this process) and real MariaDB and Redis: the meeting ends, the
//! recording is not ready for a while, then it is downloaded once (two
//! instances, redelivered events), by its owner's authority (the card flow
//! when they never authorized), exactly (faults), resumably (SIGKILL).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lc_rs::digest::{Context, SHA256};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use wework_archive::config::{Config, SettingsArgs};
use wework_archive::feishu::Feishu;
use wework_archive::feishu::recordings::settings::RecordingArgs;
use wework_archive::store::Store;
use wework_archive::store::feishu_apps::FeishuApp;
use wework_archive::store::feishu_recordings::{Recording, RecordingState};
use wework_archive_sim::feishu::{FeishuConfig, FeishuManifest, FeishuSim};

use crate::common::{TestDb, binary};

const MASTER_KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const REDIS: &str = "redis://127.0.0.1:6379";

/// Short timers: polls every 300 ms, claims of 3 s.
fn recording_args() -> RecordingArgs {
    RecordingArgs {
        feishu_recording_poll_secs: Some(0.3),
        feishu_recording_max_poll_secs: Some(1.0),
        feishu_recording_claim_secs: Some(3.0),
        feishu_recording_workers: Some(2),
        ..Default::default()
    }
}

fn settings(db_url: &str, prefix: &str, public: SocketAddr, instance: &str, media: &Path) -> SettingsArgs {
    SettingsArgs {
        database_url: Some(db_url.to_owned()),
        redis_url: Some(REDIS.to_owned()),
        redis_prefix: Some(prefix.to_owned()),
        master_key: Some(MASTER_KEY.to_owned()),
        public_listen: Some(public.to_string()),
        public_url: Some(format!("http://{public}")),
        msgfile_dir: Some(media.to_owned()),
        instance: Some(instance.to_owned()),
        recordings: recording_args(),
        ..Default::default()
    }
}

/// One archive instance: its Feishu parts, its webhook, its recording worker.
struct Instance {
    feishu: Arc<Feishu>,
    public: SocketAddr,
    http: SocketAddr,
}

struct Env {
    db: TestDb,
    store: Store,
    sim: FeishuSim,
    manifest: FeishuManifest,
    media: tempfile::TempDir,
    prefix: String,
    instances: Vec<Instance>,
    cancel: CancellationToken,
    web: reqwest::Client,
}

async fn env(tag: &str, sim_config: FeishuConfig, instances: usize) -> Env {
    let (db, store) = TestDb::fresh(tag).await;
    let sim = FeishuSim::start(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(), sim_config)
        .await
        .unwrap();
    let manifest = sim.manifest();
    let media = tempfile::tempdir().unwrap();
    let prefix = format!("wwt-rec-{tag}-{}", std::process::id());
    let cancel = CancellationToken::new();
    let web = wework_archive::feishu::client::client_builder()
        .unwrap()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut e = Env { db, store, sim, manifest, media, prefix, instances: Vec::new(), cancel, web };
    for i in 0..instances {
        let inst = e.start_instance(&format!("rec-{tag}-{i}")).await;
        e.instances.push(inst);
    }
    e
}

impl Env {
    fn app_id(&self) -> &str {
        &self.manifest.app_id
    }

    async fn start_instance(&self, name: &str) -> Instance {
        let public_l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http_l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (public, http) = (public_l.local_addr().unwrap(), http_l.local_addr().unwrap());
        let config = Arc::new(
            Config::resolve(&settings(&self.db.url, &self.prefix, public, name, self.media.path())).unwrap(),
        );
        let app = FeishuApp {
            app_id: self.manifest.app_id.clone(),
            app_secret: self.manifest.app_secret.clone(),
            encrypt_key: self.manifest.encrypt_key.clone(),
            verification_token: self.manifest.verification_token.clone(),
            base_url: self.manifest.base_url.clone(),
            enabled: true,
        };
        self.store.upsert_feishu_app(&app, &config.secrets).await.unwrap();
        let feishu = Feishu::new(self.store.clone(), config.clone()).unwrap();
        tokio::spawn(wework_archive::http::public::serve(
            public_l,
            feishu.clone(),
            self.cancel.clone().cancelled_owned(),
        ));
        let state =
            wework_archive::http::AppState::new(self.store.clone(), Arc::default(), Arc::default(), config)
                .with_feishu(feishu.clone());
        tokio::spawn(wework_archive::http::serve(http_l, state, self.cancel.clone().cancelled_owned()));
        tokio::spawn(wework_archive::feishu::recordings::run(feishu.clone(), self.cancel.clone()));
        let hook = format!("http://{public}/feishu/events/{}", self.app_id());
        self.sim("/_sim/subscriptions", json!({"url": hook})).await;
        Instance { feishu, public, http }
    }

    async fn sim(&self, path: &str, body: Value) -> Value {
        let r = self
            .web
            .post(format!("{}{path}", self.manifest.base_url))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        assert!(status.is_success(), "{path}: {status} {text}");
        serde_json::from_str(&text).unwrap()
    }

    async fn sim_get(&self, path: &str) -> Value {
        let r = self.web.get(format!("{}{path}", self.manifest.base_url)).send().await.unwrap();
        serde_json::from_str(&r.text().await.unwrap()).unwrap()
    }

    async fn get(&self, url: &str) -> (u16, String, String) {
        let r = self.web.get(url).send().await.unwrap();
        let status = r.status().as_u16();
        let location =
            r.headers().get("location").map(|l| l.to_str().unwrap().to_owned()).unwrap_or_default();
        (status, location, r.text().await.unwrap())
    }

    /// Follows an `/auth/start` URL through the fake's authorize page (approve) to our callback.
    async fn approve(&self, start_url: &str, open_id: &str) {
        let (status, location, body) = self.get(start_url).await;
        assert_eq!(status, 302, "{body}");
        let q: std::collections::HashMap<_, _> =
            reqwest::Url::parse(&location).unwrap().query_pairs().into_owned().collect();
        let v = self
            .sim(
                "/_sim/authorize",
                json!({"client_id": self.app_id(), "redirect_uri": q["redirect_uri"], "state": q["state"],
                       "open_id": open_id, "decision": "approve"}),
            )
            .await;
        let (status, _, page) = self.get(v["location"].as_str().unwrap()).await;
        assert_eq!(status, 200, "{page}");
        assert!(page.contains("Authorized"), "{page}");
    }

    /// Authorizes `open_id` directly (no card).
    async fn authorize(&self, open_id: &str) {
        let start = format!("http://{}/auth/start?app_id={}", self.instances[0].public, self.app_id());
        self.approve(&start, open_id).await;
    }

    async fn meeting(&self, body: Value) -> Value {
        self.sim("/_sim/meetings", body).await
    }

    /// Waits until the meeting's job is in `want` (panics on another final state or the deadline).
    async fn wait_state(&self, meeting_id: &str, want: RecordingState, within: Duration) -> Recording {
        let deadline = Instant::now() + within;
        loop {
            if let Some(r) = self.store.recording(self.app_id(), meeting_id).await.unwrap() {
                if r.state == want {
                    return r;
                }
                assert!(!r.state.is_final(), "job ended {:?} ({}), not {want:?}", r.state, r.last_error);
            }
            assert!(Instant::now() < deadline, "meeting {meeting_id} not {want:?} in time");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Messages the app sent to `open_id`, as parsed cards.
    async fn cards_to(&self, open_id: &str) -> Vec<Value> {
        let m = self.sim_get("/_sim/messages").await;
        m["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["receive_id"] == open_id)
            .map(|m| serde_json::from_str(m["content"].as_str().unwrap()).unwrap())
            .collect()
    }

    async fn metrics(&self) -> String {
        let url = format!("http://{}/metrics", self.instances[0].http);
        self.web.get(url).send().await.unwrap().text().await.unwrap()
    }

    async fn stop(self) {
        self.cancel.cancel();
        self.sim.shutdown().await;
        drop(self.instances);
        drop(self.db);
    }
}

fn sha256_file(path: &Path) -> (String, u64) {
    use std::io::Read;
    let mut f = std::fs::File::open(path).unwrap();
    let mut ctx = Context::new(&SHA256);
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf).unwrap();
        if k == 0 {
            break;
        }
        ctx.update(&buf[..k]);
        n += k as u64;
    }
    (hex::encode(ctx.finish().as_ref()), n)
}

fn title(card: &Value) -> &str {
    card["header"]["title"]["content"].as_str().unwrap_or("")
}

/// Checks the archived file against what the fake says it served.
fn assert_archived(e: &Env, r: &Recording, meeting: &Value) {
    assert_eq!(r.sha256, meeting["sha256"].as_str().unwrap());
    assert_eq!(r.bytes, meeting["bytes"].as_u64());
    let prefix = format!("feishu/{}/{}/", r.app_id, r.owner_open_id);
    assert!(r.path.starts_with(&prefix) && r.path.ends_with(&format!("_{}.mp4", r.meeting_id)), "{}", r.path);
    let file = e.media.path().join(&r.path);
    assert_eq!(sha256_file(&file), (r.sha256.clone(), r.bytes.unwrap()));
    assert!(!Path::new(&format!("{}.part", file.display())).exists(), "the .part was renamed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_not_ready_for_a_while_is_downloaded_once_by_two_instances() {
    let e = env("rec_once", FeishuConfig { seed: 21, ..Default::default() }, 2).await;
    let alice = e.manifest.users[0].open_id.clone();
    e.authorize(&alice).await;
    let m = e
        .meeting(json!({"owner_open_id": alice, "topic": "Weekly sync / ../../etc", "ready_after_s": 2.5}))
        .await;
    let id = m["meeting_id"].as_str().unwrap().to_owned();
    // Delivered to both instances' webhooks, and once more.
    e.sim("/_sim/events/redeliver", json!({"event_id": m["event_id"]})).await;
    let waiting = e.wait_state(&id, RecordingState::Waiting, Duration::from_secs(20)).await;
    assert_eq!(waiting.last_code, 124002);
    let r = e.wait_state(&id, RecordingState::Done, Duration::from_secs(60)).await;
    assert_archived(&e, &r, &m);
    assert!(r.path.contains("_Weekly_sync_etc_"), "{}", r.path);
    assert!(r.polls >= 1, "the recording was polled while not ready");
    let rows: Vec<Recording> = e.store.recordings(None, 100).await.unwrap();
    assert_eq!(rows.len(), 1, "one job per meeting");
    let downloaded: u64 = e
        .instances
        .iter()
        .map(|i| i.feishu.recordings.downloaded_bytes.load(std::sync::atomic::Ordering::Relaxed))
        .sum();
    assert_eq!(downloaded, 3 << 20, "one instance downloaded it, once");
    let stats = e.sim_get("/_sim/stats").await;
    assert_eq!(stats["downloads"]["full"], 1, "{stats}");
    assert_eq!(stats["downloads"]["ranged"], 0, "{stats}");
    // The owner got the card, once.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let cards = e.cards_to(&alice).await;
        let done: Vec<_> = cards.iter().filter(|c| title(c) == "Meeting recording archived").collect();
        if done.len() == 1 {
            let text = done[0].to_string();
            assert!(text.contains(r.path.rsplit('/').next().unwrap()) && text.contains("3.0 MiB"), "{text}");
            break;
        }
        assert!(done.len() < 2, "told twice");
        assert!(Instant::now() < deadline, "the owner was not told");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let metrics = e.metrics().await;
    assert!(metrics.contains("wework_feishu_recordings{state=\"done\"} 1"), "{metrics}");
    assert!(metrics.contains(&format!("wework_feishu_recording_bytes {}", 3 << 20)), "{metrics}");
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_who_never_authorized_gets_the_card_and_the_recording_follows() {
    let e = env("rec_auth", FeishuConfig { seed: 22, ..Default::default() }, 1).await;
    let bob = e.manifest.users[1].open_id.clone();
    let m = e.meeting(json!({"owner_open_id": bob, "ready_after_s": 0.5, "bytes": 100_000})).await;
    let id = m["meeting_id"].as_str().unwrap().to_owned();
    e.wait_state(&id, RecordingState::AwaitingAuth, Duration::from_secs(20)).await;
    // One authorization card, however often the job looks again.
    let deadline = Instant::now() + Duration::from_secs(10);
    let card = loop {
        let cards = e.cards_to(&bob).await;
        if let Some(c) = cards.iter().find(|c| title(c) == "Authorize the archive") {
            break c.clone();
        }
        assert!(Instant::now() < deadline, "no authorization card");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let n = e.cards_to(&bob).await.iter().filter(|c| title(c) == "Authorize the archive").count();
    assert_eq!(n, 1, "the card is sent once");
    let start = card["elements"][1]["actions"][0]["url"].as_str().unwrap().to_owned();
    e.approve(&start, &bob).await;
    let r = e.wait_state(&id, RecordingState::Done, Duration::from_secs(30)).await;
    assert_archived(&e, &r, &m);
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_refresh_sends_the_owner_exactly_one_card_and_the_recording_follows_approval() {
    let e = env("rec_reauth", FeishuConfig { seed: 26, ..Default::default() }, 1).await;
    let alice = e.manifest.users[0].open_id.clone();
    e.authorize(&alice).await;
    // Alice's access token is revoked, and her refresh token is used up elsewhere: the
    // job's first call gets 99991677, the refresh 20073, and `oauth.rs` marks her
    // needs_reauth and asks her; the job waiting for her must not ask again.
    e.sim("/_sim/tokens/revoke", json!({"kind": "user", "open_id": alice})).await;
    let secrets = &e.instances[0].feishu.config.secrets;
    let user = e.store.feishu_user(e.app_id(), &alice, secrets).await.unwrap().unwrap();
    let grant = json!({"grant_type": "refresh_token", "client_id": e.app_id(),
                       "client_secret": e.manifest.app_secret, "refresh_token": user.tokens.refresh_token});
    let used = e.sim("/open-apis/authen/v2/oauth/token", grant).await;
    assert!(used["access_token"].is_string(), "{used}");
    let m = e.meeting(json!({"owner_open_id": alice, "ready_after_s": 0.3, "bytes": 200_000})).await;
    let id = m["meeting_id"].as_str().unwrap().to_owned();
    e.wait_state(&id, RecordingState::AwaitingAuth, Duration::from_secs(30)).await;
    let user = e.store.feishu_user(e.app_id(), &alice, secrets).await.unwrap().unwrap();
    assert_eq!(user.state, wework_archive::store::feishu_users::UserState::NeedsReauth);
    // Several more looks of the job (polls every 300 ms): still one card.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let asks: Vec<Value> =
        e.cards_to(&alice).await.into_iter().filter(|c| title(c) == "Authorize the archive").collect();
    assert_eq!(asks.len(), 1, "one card per need: {asks:?}");
    let now = e.store.recording(e.app_id(), &id).await.unwrap().unwrap();
    assert_eq!(now.state, RecordingState::AwaitingAuth, "{}", now.last_error);
    assert!(!now.auth_session.is_empty(), "the job is linked to a card");
    let start = asks[0]["elements"][1]["actions"][0]["url"].as_str().unwrap().to_owned();
    assert!(start.contains(&now.auth_session), "the job waits on the card that was sent: {start}");
    e.approve(&start, &alice).await;
    let r = e.wait_state(&id, RecordingState::Done, Duration::from_secs(30)).await;
    assert_archived(&e, &r, &m);
    let asks = e.cards_to(&alice).await.iter().filter(|c| title(c) == "Authorize the archive").count();
    assert_eq!(asks, 1, "no card after the approval either");
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_meeting_without_recording_ends_as_no_recording_without_endless_polling() {
    let e = env("rec_none", FeishuConfig { seed: 23, ..Default::default() }, 1).await;
    let alice = e.manifest.users[0].open_id.clone();
    e.authorize(&alice).await;
    let m = e.meeting(json!({"owner_open_id": alice, "recording": false})).await;
    let id = m["meeting_id"].as_str().unwrap().to_owned();
    let r = e.wait_state(&id, RecordingState::NoRecording, Duration::from_secs(20)).await;
    assert_eq!(r.last_code, 121004);
    let route = "GET /open-apis/vc/v1/meetings/:meeting_id/recording";
    let calls = e.sim_get("/_sim/stats").await["calls"][route].as_u64().unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        e.sim_get("/_sim/stats").await["calls"][route].as_u64().unwrap(),
        calls,
        "polled after no_recording"
    );
    assert!(e.media.path().join("feishu").read_dir().is_err(), "no file for a meeting without recording");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !e.cards_to(&alice).await.iter().any(|c| title(c) == "No meeting recording") {
        assert!(Instant::now() < deadline, "the owner was not told");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_bursts_and_dropped_connections_still_archive_exact_files() {
    let faults = "throttle=0.15,drop=0.4".parse().unwrap();
    let e = env("rec_faults", FeishuConfig { seed: 24, faults, ..Default::default() }, 1).await;
    let alice = e.manifest.users[0].open_id.clone();
    // Authorizing may itself hit a dropped connection: try again like a person would.
    let mut ok = false;
    for _ in 0..20 {
        let start = format!("http://{}/auth/start?app_id={}", e.instances[0].public, e.app_id());
        let web = e.web.clone();
        let (status, location) = match tokio::time::timeout(Duration::from_secs(10), web.get(&start).send())
            .await
        {
            Ok(Ok(r)) => {
                let s = r.status().as_u16();
                let l =
                    r.headers().get("location").map(|l| l.to_str().unwrap().to_owned()).unwrap_or_default();
                (s, l)
            }
            _ => continue,
        };
        if status != 302 {
            continue;
        }
        let q: std::collections::HashMap<_, _> =
            reqwest::Url::parse(&location).unwrap().query_pairs().into_owned().collect();
        let v = e
            .sim(
                "/_sim/authorize",
                json!({"client_id": e.app_id(), "redirect_uri": q["redirect_uri"], "state": q["state"],
                       "open_id": alice, "decision": "approve"}),
            )
            .await;
        if let Ok(Ok(r)) =
            tokio::time::timeout(Duration::from_secs(15), web.get(v["location"].as_str().unwrap()).send())
                .await
            && r.status().as_u16() == 200
            && r.text().await.unwrap_or_default().contains("Authorized")
        {
            ok = true;
            break;
        }
    }
    assert!(ok, "could not authorize through the faults");
    // Meetings end until both faults have hit (they are random per call, so how many it
    // takes depends on the order of calls); every recording must still be exact.
    let mut meetings = Vec::new();
    let mut stats = Value::Null;
    for i in 0..12u64 {
        let bytes = (1 << 20) + 7919 * i;
        let m = e.meeting(json!({"owner_open_id": alice, "ready_after_s": 0.5, "bytes": bytes})).await;
        let r = e
            .wait_state(m["meeting_id"].as_str().unwrap(), RecordingState::Done, Duration::from_secs(90))
            .await;
        assert_archived(&e, &r, &m);
        meetings.push(m);
        stats = e.sim_get("/_sim/stats").await;
        let throttled: u64 = stats["throttled"].as_object().unwrap().values().filter_map(Value::as_u64).sum();
        if throttled > 0 && stats["downloads"]["dropped"].as_u64().unwrap() > 0 {
            break;
        }
    }
    let throttled: u64 = stats["throttled"].as_object().unwrap().values().filter_map(Value::as_u64).sum();
    assert!(throttled > 0, "no 429 was sent: {stats}");
    assert!(stats["downloads"]["dropped"].as_u64().unwrap() > 0, "no download was cut: {stats}");
    assert!(stats["downloads"]["ranged"].as_u64().unwrap() > 0, "a cut download resumes with Range: {stats}");
    assert_eq!(e.store.recordings(Some(RecordingState::Done), 100).await.unwrap().len(), meetings.len());
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_download_url_is_fetched_again_within_the_attempt() {
    // `url_expiry`: some Minutes media answers hand out a URL already past its day.
    let faults = "url_expiry=0.4".parse().unwrap();
    let e = env("rec_urlexp", FeishuConfig { seed: 27, faults, ..Default::default() }, 1).await;
    let alice = e.manifest.users[0].open_id.clone();
    e.authorize(&alice).await;
    let media_route = "GET /open-apis/minutes/v1/minutes/:minute_token/media";
    let mut meetings = 0u64;
    let mut stats = Value::Null;
    // Meetings end until a refused URL was met (the fault is random per media call).
    for i in 0..8u64 {
        let m = e
            .meeting(json!({"owner_open_id": alice, "ready_after_s": 0.2, "bytes": 300_000 + 4099 * i}))
            .await;
        let r = e
            .wait_state(m["meeting_id"].as_str().unwrap(), RecordingState::Done, Duration::from_secs(30))
            .await;
        assert_archived(&e, &r, &m);
        assert_eq!(r.attempts, 0, "a refused URL is replaced inside the attempt, not by a retry");
        meetings += 1;
        stats = e.sim_get("/_sim/stats").await;
        if stats["downloads"]["expired"].as_u64().unwrap() > 0 {
            break;
        }
    }
    let expired = stats["downloads"]["expired"].as_u64().unwrap();
    assert!(expired > 0, "no URL expired: {stats}");
    let downloads =
        stats["downloads"]["full"].as_u64().unwrap() + stats["downloads"]["ranged"].as_u64().unwrap();
    assert_eq!(downloads, meetings, "one accepted download per recording: {stats}");
    let media_calls = stats["calls"][media_route].as_u64().unwrap();
    assert!(media_calls >= meetings + expired, "a new URL for every refused one: {stats}");
    e.stop().await;
}

/// `feishu serve` as its own process (so it can be SIGKILLed).
fn serve_process(e: &Env, public: SocketAddr, http: SocketAddr) -> tokio::process::Child {
    tokio::process::Command::new(binary())
        .args(["feishu", "serve"])
        .env("DATABASE_URL", &e.db.url)
        .env("REDIS_URL", REDIS)
        .env("WEWORK_REDIS_PREFIX", &e.prefix)
        .env("WEWORK_MASTER_KEY", MASTER_KEY)
        .env("PUBLIC_LISTEN", public.to_string())
        .env("PUBLIC_URL", format!("http://{public}"))
        .env("HTTP_LISTEN", http.to_string())
        .env("MSGFILE_DIR", e.media.path())
        .env("WEWORK_INSTANCE", "rec-killed")
        .env("FEISHU_RECORDING_POLL_SECS", "0.3")
        .env("FEISHU_RECORDING_CLAIM_SECS", "3")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_download_resumes_from_the_part_with_a_range_request() {
    let e = env("rec_kill", FeishuConfig { seed: 25, ..Default::default() }, 1).await;
    let alice = e.manifest.users[0].open_id.clone();
    e.authorize(&alice).await;
    // The in-process instance only authorized: its worker must not take the job.
    e.cancel.cancel();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (public, http) = (free_addr(), free_addr());
    let mut child = serve_process(&e, public, http);
    // Wait for its webhook, then subscribe it.
    let deadline = Instant::now() + Duration::from_secs(60);
    while tokio::net::TcpStream::connect(public).await.is_err() {
        assert!(Instant::now() < deadline, "feishu serve did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let hook = format!("http://{public}/feishu/events/{}", e.app_id());
    e.sim("/_sim/subscriptions", json!({"url": hook})).await;
    let size: u64 = 192 << 20;
    let m = e.meeting(json!({"owner_open_id": alice, "ready_after_s": 0.2, "bytes": size})).await;
    let id = m["meeting_id"].as_str().unwrap().to_owned();
    // Kill it once part of the file is durable.
    let deadline = Instant::now() + Duration::from_secs(60);
    let at = loop {
        if let Some(r) = e.store.recording(e.app_id(), &id).await.unwrap() {
            assert_ne!(r.state, RecordingState::Done, "finished before it could be killed");
            if r.bytes_done > 0 {
                child.start_kill().unwrap();
                let _ = child.wait().await;
                break r.bytes_done;
            }
        }
        assert!(Instant::now() < deadline, "no progress recorded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(at < size);
    let mut child = serve_process(&e, public, http);
    let r = e.wait_state(&id, RecordingState::Done, Duration::from_secs(120)).await;
    let _ = child.start_kill();
    let _ = child.wait().await;
    assert_archived(&e, &r, &m);
    let stats = e.sim_get("/_sim/stats").await;
    assert_eq!(stats["downloads"]["full"], 1, "one full download: {stats}");
    assert_eq!(stats["downloads"]["ranged"], 1, "then one ranged one: {stats}");
    let start = stats["downloads"]["range_starts"][0].as_u64().unwrap();
    assert!(start >= at && start < size, "resumed from the durable bytes ({at}), not {start}");
    e.stop().await;
}
