//! Feishu: OAuth, user-token rotation, app tokens and the hand-out, the events
//! webhook, card authorization; against the fake Feishu platform (in this
//! process, `wework_archive_sim::feishu::FeishuSim`) and real MariaDB and Redis.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mysql_async::prelude::*;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use wework_archive::config::{Config, SettingsArgs};
use wework_archive::feishu::crypto::{encrypt, signature};
use wework_archive::feishu::{Feishu, TokenKind};
use wework_archive::store::Store;
use wework_archive::store::feishu_apps::FeishuApp;
use wework_archive_sim::feishu::{FeishuConfig, FeishuManifest, FeishuSim};

use crate::common::{TestDb, binary};

const MASTER_KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

/// One test's world: its database, a fake Feishu, our public and operations endpoints.
struct Env {
    db: TestDb,
    store: Store,
    sim: FeishuSim,
    manifest: FeishuManifest,
    config: Arc<Config>,
    feishu: Arc<Feishu>,
    public: SocketAddr,
    http: SocketAddr,
    cancel: CancellationToken,
    web: reqwest::Client,
}

fn settings(db_url: &str, redis_url: &str, prefix: &str, public: SocketAddr) -> SettingsArgs {
    SettingsArgs {
        database_url: Some(db_url.to_owned()),
        redis_url: Some(redis_url.to_owned()),
        redis_prefix: Some(prefix.to_owned()),
        master_key: Some(MASTER_KEY.to_owned()),
        public_listen: Some(public.to_string()),
        public_url: Some(format!("http://{public}")),
        instance: Some(format!("test-{}", std::process::id())),
        ..Default::default()
    }
}

async fn env_with(tag: &str, sim_config: FeishuConfig, redis_url: &str) -> Env {
    let (db, store) = TestDb::fresh(tag).await;
    let sim = FeishuSim::start(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(), sim_config)
        .await
        .unwrap();
    let manifest = sim.manifest();
    let public_l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http_l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (public, http) = (public_l.local_addr().unwrap(), http_l.local_addr().unwrap());
    let prefix = format!("wwt-feishu-{tag}-{}", std::process::id());
    let config = Arc::new(Config::resolve(&settings(&db.url, redis_url, &prefix, public)).unwrap());
    let app = FeishuApp {
        app_id: manifest.app_id.clone(),
        app_secret: manifest.app_secret.clone(),
        encrypt_key: manifest.encrypt_key.clone(),
        verification_token: manifest.verification_token.clone(),
        base_url: manifest.base_url.clone(),
        enabled: true,
    };
    store.upsert_feishu_app(&app, &config.secrets).await.unwrap();
    let feishu = Feishu::new(store.clone(), config.clone()).unwrap();
    let cancel = CancellationToken::new();
    tokio::spawn(wework_archive::http::public::serve(
        public_l,
        feishu.clone(),
        cancel.clone().cancelled_owned(),
    ));
    let state =
        wework_archive::http::AppState::new(store.clone(), Arc::default(), Arc::default(), config.clone())
            .with_feishu(feishu.clone());
    tokio::spawn(wework_archive::http::serve(http_l, state, cancel.clone().cancelled_owned()));
    let web = wework_archive::feishu::client::client_builder()
        .unwrap()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    Env { db, store, sim, manifest, config, feishu, public, http, cancel, web }
}

async fn env(tag: &str) -> Env {
    env_with(tag, FeishuConfig { seed: 7, ..Default::default() }, "redis://127.0.0.1:6379").await
}

impl Env {
    fn app_id(&self) -> &str {
        &self.manifest.app_id
    }

    async fn app(&self) -> FeishuApp {
        self.feishu.app(self.app_id()).await.unwrap()
    }

    /// GET on our public endpoint: (status, Location or body).
    async fn public_get(&self, path_and_query: &str) -> (u16, String) {
        let url = if path_and_query.starts_with("http") {
            path_and_query.to_owned()
        } else {
            format!("http://{}{path_and_query}", self.public)
        };
        let r = self.web.get(url).send().await.unwrap();
        let status = r.status().as_u16();
        let location = r.headers().get("location").map(|l| l.to_str().unwrap().to_owned());
        let body = r.text().await.unwrap();
        (status, location.unwrap_or(body))
    }

    /// A control call to the fake.
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

    /// `/auth/start` → the authorize URL's `state` and `redirect_uri`.
    async fn start(&self, query: &str) -> (String, String) {
        let (status, location) =
            self.public_get(&format!("/auth/start?app_id={}{query}", self.app_id())).await;
        assert_eq!(status, 302, "{location}");
        let url = reqwest::Url::parse(&location).unwrap();
        assert!(
            location.starts_with(&format!("{}/open-apis/authen/v1/authorize?", self.manifest.base_url)),
            "{location}"
        );
        let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
        assert_eq!(q["client_id"], self.app_id());
        assert_eq!(q["redirect_uri"], format!("http://{}/auth/callback", self.public));
        (q["state"].clone(), q["redirect_uri"].clone())
    }

    /// A person's click on the authorize page → where the browser goes next.
    async fn decide(&self, state: &str, redirect_uri: &str, open_id: &str, decision: &str) -> String {
        let v = self
            .sim(
                "/_sim/authorize",
                json!({"client_id": self.app_id(), "redirect_uri": redirect_uri, "state": state,
                       "open_id": open_id, "decision": decision}),
            )
            .await;
        v["location"].as_str().unwrap().to_owned()
    }

    /// Authorizes `open_id` end to end; returns the callback URL (to replay).
    async fn authorize(&self, open_id: &str) -> String {
        let (state, redirect) = self.start("").await;
        let location = self.decide(&state, &redirect, open_id, "approve").await;
        let (status, page) = self.public_get(&location).await;
        assert_eq!(status, 200, "{page}");
        assert!(page.contains("Authorized") && page.contains(open_id), "{page}");
        location
    }

    async fn count(&self, sql: &str) -> u64 {
        let mut c = self.store.conn().await.unwrap();
        c.query_first::<u64, _>(sql).await.unwrap().unwrap()
    }

    async fn stop(self) {
        self.cancel.cancel();
        self.sim.shutdown().await;
        drop(self.db);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_approve_reject_reused_state_and_used_code() {
    let e = env("fs_oauth").await;
    let alice = e.manifest.users[0].clone();
    // Approve: the user is saved with sealed tokens.
    let callback = e.authorize(&alice.open_id).await;
    let user = e.store.feishu_user(e.app_id(), &alice.open_id, &e.config.secrets).await.unwrap().unwrap();
    assert_eq!(user.name, alice.name);
    assert!(user.tokens.access_token.starts_with("u-") && !user.tokens.refresh_token.is_empty());
    let mut c = e.store.conn().await.unwrap();
    let raw: (String, String) =
        c.query_first("SELECT access_token, refresh_token FROM feishu_users").await.unwrap().unwrap();
    assert!(raw.0.starts_with("wwenc:v2:") && raw.1.starts_with("wwenc:v2:"), "tokens are sealed at rest");
    drop(c);

    // The same callback again: the state is single-use.
    let (status, page) = e.public_get(&callback).await;
    assert_eq!(status, 400);
    assert!(page.contains("already used"), "{page}");

    // The same (used) code with a fresh state: Feishu refuses it, nothing changes.
    let (state2, _) = e.start("").await;
    let code = reqwest::Url::parse(&callback)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    let (status, page) = e.public_get(&format!("/auth/callback?code={code}&state={state2}")).await;
    assert_eq!(status, 400);
    assert!(page.contains("did not accept"), "{page}");

    // A forged state.
    let (status, _) = e.public_get(&format!("/auth/callback?code={code}&state=forged")).await;
    assert_eq!(status, 400);

    // Reject: nobody is added.
    let bob = e.manifest.users[1].clone();
    let (state, redirect) = e.start(&format!("&open_id={}", bob.open_id)).await;
    let location = e.decide(&state, &redirect, &bob.open_id, "reject").await;
    let (status, page) = e.public_get(&location).await;
    assert_eq!(status, 400);
    assert!(page.contains("declined"), "{page}");
    assert!(e.store.feishu_user(e.app_id(), &bob.open_id, &e.config.secrets).await.unwrap().is_none());

    // A link made for Bob, approved by Carol, is refused.
    let carol = e.manifest.users[2].clone();
    let (state, redirect) = e.start(&format!("&open_id={}", bob.open_id)).await;
    let location = e.decide(&state, &redirect, &carol.open_id, "approve").await;
    let (status, _) = e.public_get(&location).await;
    assert_eq!(status, 400);
    assert!(e.store.feishu_user(e.app_id(), &carol.open_id, &e.config.secrets).await.unwrap().is_none());

    // Unknown app.
    let (status, _) = e.public_get("/auth/start?app_id=cli_nope").await;
    assert_eq!(status, 404);

    let s = &e.feishu.stats;
    use wework_archive::feishu::FeishuStats;
    assert_eq!(FeishuStats::get(&s.auth_success, e.app_id()), 1);
    assert_eq!(FeishuStats::get(&s.auth_failure, "reused_state"), 1);
    assert_eq!(FeishuStats::get(&s.auth_failure, "code_exchange"), 1);
    assert_eq!(FeishuStats::get(&s.auth_failure, "rejected"), 1);
    assert_eq!(FeishuStats::get(&s.auth_failure, "wrong_user"), 1);
    e.stop().await;
}

/// A code used after it expired (the fake's codes live 1 s here, Feishu's 5
/// minutes): Feishu refuses it, the page says so, nobody is added.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_authorization_code_adds_nobody() {
    let config = FeishuConfig { seed: 7, code_ttl: Duration::from_secs(1), ..Default::default() };
    let e = env_with("fs_expired_code", config, "redis://127.0.0.1:6379").await;
    let alice = e.manifest.users[0].clone();
    let (state, redirect) = e.start("").await;
    let location = e.decide(&state, &redirect, &alice.open_id, "approve").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, page) = e.public_get(&location).await;
    assert_eq!(status, 400, "{page}");
    assert!(page.contains("did not accept"), "{page}");
    assert!(e.store.feishu_user(e.app_id(), &alice.open_id, &e.config.secrets).await.unwrap().is_none());
    use wework_archive::feishu::FeishuStats;
    assert_eq!(FeishuStats::get(&e.feishu.stats.auth_failure, "code_exchange"), 1);
    assert_eq!(FeishuStats::get(&e.feishu.stats.auth_success, e.app_id()), 0);
    // A fresh code for the same person works at once.
    let (state, redirect) = e.start("").await;
    let location = e.decide(&state, &redirect, &alice.open_id, "approve").await;
    let (status, page) = e.public_get(&location).await;
    assert_eq!(status, 200, "{page}");
    assert!(e.store.feishu_user(e.app_id(), &alice.open_id, &e.config.secrets).await.unwrap().is_some());
    e.stop().await;
}

/// Runs `wework-archive feishu user refresh` as its own process.
fn refresh_process(e: &Env, redis_url: &str, open_id: &str) -> tokio::process::Child {
    tokio::process::Command::new(binary())
        .args(["feishu", "user", "refresh", "--app-id", e.app_id(), "--open-id", open_id])
        .env("DATABASE_URL", &e.db.url)
        .env("REDIS_URL", redis_url)
        .env("WEWORK_REDIS_PREFIX", &e.config.redis_prefix)
        .env("WEWORK_MASTER_KEY", MASTER_KEY)
        .env("PUBLIC_URL", &e.config.public_url)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

async fn two_concurrent_refreshers(e: &Env, redis_url: &str, open_id: &str) {
    let before = e.store.feishu_user(e.app_id(), open_id, &e.config.secrets).await.unwrap().unwrap();
    let a = refresh_process(e, redis_url, open_id);
    let b = refresh_process(e, redis_url, open_id);
    let (a, b) = tokio::join!(a.wait_with_output(), b.wait_with_output());
    for out in [a.unwrap(), b.unwrap()] {
        let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "a refresher failed: {text}");
        assert!(!text.contains(&before.tokens.refresh_token), "a token reached the output");
    }
    let after = e.store.feishu_user(e.app_id(), open_id, &e.config.secrets).await.unwrap().unwrap();
    assert_eq!(after.state, wework_archive::store::feishu_users::UserState::Active);
    assert!(after.version > before.version);
    assert_ne!(after.tokens.refresh_token, before.tokens.refresh_token, "the refresh token rotated");
    // The saved pair is the live one: it refreshes again, and its access token works.
    let app = e.app().await;
    let again = e.feishu.refresh_user(&app, open_id, None).await.unwrap();
    let (who, _) = e.feishu.user_info(&app, &again.tokens.access_token).await.unwrap();
    assert_eq!(who, open_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_rotation_with_two_processes_never_loses_the_user() {
    let e = env("fs_rotate").await;
    let alice = e.manifest.users[0].open_id.clone();
    e.authorize(&alice).await;
    // With Redis: the lock serialises the two processes.
    two_concurrent_refreshers(&e, "redis://127.0.0.1:6379", &alice).await;
    // Without Redis (nothing listens there): the database compare-and-swap decides.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("redis://{}", dead.local_addr().unwrap());
    drop(dead);
    two_concurrent_refreshers(&e, &dead_url, &alice).await;
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_token_expiry_and_revocation_recover_by_refresh_and_a_dead_refresh_marks_needs_reauth() {
    let sim = FeishuConfig { seed: 11, user_token_ttl: Duration::from_secs(2), ..Default::default() };
    let e = env_with("fs_usertok", sim, "redis://127.0.0.1:6379").await;
    let alice = e.manifest.users[0].open_id.clone();
    e.authorize(&alice).await;
    let app = e.app().await;
    let info = |token: &str| {
        wework_archive::feishu::ApiRequest::new(
            reqwest::Method::GET,
            &app.base_url,
            "GET /open-apis/authen/v1/user_info",
            "/open-apis/authen/v1/user_info",
            wework_archive::feishu::Auth::Bearer(token.to_owned()),
        )
    };
    let first = e.store.feishu_user(e.app_id(), &alice, &e.config.secrets).await.unwrap().unwrap();
    // 2 s lifetime: 10 % left after 1.8 s, so after 2 s the next call refreshes first.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let v = e.feishu.call_as_user(&app, &alice, info).await.unwrap();
    assert_eq!(v["data"]["open_id"], alice.as_str());
    let second = e.store.feishu_user(e.app_id(), &alice, &e.config.secrets).await.unwrap().unwrap();
    assert!(second.version > first.version && second.tokens.access_token != first.tokens.access_token);

    // Revoked while valid: the call gets 99991677, refreshes once and succeeds.
    e.sim("/_sim/tokens/revoke", json!({"kind": "user", "open_id": alice})).await;
    let v = e.feishu.call_as_user(&app, &alice, info).await.unwrap();
    assert_eq!(v["data"]["open_id"], alice.as_str());

    // The stored refresh token is used up elsewhere: the refresh fails for good.
    let cur = e.store.feishu_user(e.app_id(), &alice, &e.config.secrets).await.unwrap().unwrap();
    let body = json!({"grant_type": "refresh_token", "client_id": app.app_id, "client_secret": app.app_secret,
                      "refresh_token": cur.tokens.refresh_token});
    let r = e
        .web
        .post(format!("{}/open-apis/authen/v2/oauth/token", app.base_url))
        .body(body.to_string())
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let err = e.feishu.refresh_user(&app, &alice, None).await.unwrap_err();
    assert!(matches!(err, wework_archive::feishu::FeishuError::NeedsReauth { .. }), "{err}");
    let users = e.store.feishu_user_list().await.unwrap();
    assert_eq!(users[0].state, "needs_reauth");
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_tokens_are_fetched_once_shared_across_instances_and_refreshed_when_short() {
    let sim = FeishuConfig { seed: 5, token_ttl: Duration::from_secs(3), ..Default::default() };
    let e = env_with("fs_apptok", sim, "redis://127.0.0.1:6379").await;
    let app = e.app().await;
    let route = "POST /open-apis/auth/v3/tenant_access_token/internal";
    let calls = |s: Value| s["calls"][route].as_u64().unwrap_or(0);
    // Three instances at once (each its own caches, one Redis): one fetch.
    let others: Vec<_> = (0..2).map(|_| Feishu::new(e.store.clone(), e.config.clone()).unwrap()).collect();
    let (a, b, c) =
        tokio::join!(e.feishu.tenant_token(&app), others[0].tenant_token(&app), others[1].tenant_token(&app));
    let (a, b, c) = (a.unwrap(), b.unwrap(), c.unwrap());
    assert!(a.token == b.token && b.token == c.token);
    assert_eq!(calls(e.sim_get("/_sim/stats").await), 1, "single flight across instances");
    // Reused while fresh.
    assert_eq!(e.feishu.tenant_token(&app).await.unwrap().token, a.token);
    assert_eq!(calls(e.sim_get("/_sim/stats").await), 1);
    // 3 s lifetime: due after 2.7 s; then one new fetch, a new token.
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let fresh = e.feishu.tenant_token(&app).await.unwrap();
    assert_ne!(fresh.token, a.token);
    assert_eq!(calls(e.sim_get("/_sim/stats").await), 2);
    let fetched: u64 = std::iter::once(&e.feishu)
        .chain(others.iter())
        .map(|f| wework_archive::feishu::FeishuStats::get(&f.stats.token_refreshes, "tenant"))
        .sum();
    assert_eq!(fetched, 2, "token_refreshes counts the fetches");
    // Invalidation drops it everywhere: the next caller on another instance fetches.
    e.feishu.tokens.invalidate(&app, TokenKind::Tenant, &fresh.token).await;
    let other = Feishu::new(e.store.clone(), e.config.clone()).unwrap();
    let _ = other.tenant_token(&app).await.unwrap();
    assert_eq!(calls(e.sim_get("/_sim/stats").await), 3);
    // Revoked mid-flow (Feishu answers 99991663 on the next call): the call
    // that meets it drops the token, fetches one new one and succeeds.
    let cached = e.feishu.tenant_token(&app).await.unwrap();
    e.sim("/_sim/tokens/revoke", json!({"kind": "tenant"})).await;
    let bob = e.manifest.users[1].open_id.clone();
    let session = e.feishu.send_auth_card(e.app_id(), &bob).await.unwrap();
    assert!(!session.message_id.is_empty(), "the card went out after the revocation");
    assert_eq!(calls(e.sim_get("/_sim/stats").await), 4, "exactly one new fetch");
    assert_ne!(e.feishu.tenant_token(&app).await.unwrap().token, cached.token);
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_handout_needs_a_key_and_is_audited() {
    let e = env("fs_handout").await;
    let url = format!("http://{}/feishu/app-token?app_id={}", e.http, e.app_id());
    // No key, a wrong key: 401 and no audit row.
    let r = e.web.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = e.web.get(&url).bearer_auth("wwk_wrong").send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(e.count("SELECT COUNT(*) FROM feishu_token_audit").await, 0);

    // A key made by the CLI (printed once, last line).
    let out = std::process::Command::new(binary())
        .args(["feishu", "token-key", "add", "--name", "reports-team"])
        .env("DATABASE_URL", &e.db.url)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let key = stdout.lines().last().unwrap().trim().to_owned();
    assert!(key.starts_with("wwk_"));
    assert_eq!(e.count("SELECT COUNT(*) FROM feishu_token_keys WHERE key_hash <> ''").await, 1);
    let mut c = e.store.conn().await.unwrap();
    let stored: String = c.query_first("SELECT key_hash FROM feishu_token_keys").await.unwrap().unwrap();
    assert_ne!(stored, key, "only the hash is stored");
    drop(c);

    let r = e.web.get(&url).bearer_auth(&key).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let j: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    for k in [
        "access_token",
        "expire_time",
        "expire_timestamp",
        "valid_duration_seconds",
        "generated_time",
        "generated_timestamp",
        "source",
        "usage",
        "platform",
    ] {
        assert!(j.get(k).is_some(), "{k} missing in {j}");
    }
    let token = j["access_token"].as_str().unwrap();
    assert!(token.starts_with("t-"));
    assert!(j["valid_duration_seconds"].as_i64().unwrap() > 7000);
    assert_eq!(j["platform"], "feishu");
    assert_eq!(j["expire_time"].as_str().unwrap().len(), 19, "YYYY-MM-DD HH:MM:SS");
    // The token works on Feishu.
    let app = e.app().await;
    assert_eq!(e.feishu.tenant_token(&app).await.unwrap().token, token);
    // Audited: key, app, peer; never the token.
    let audit = e.store.token_audit(10).await.unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!((audit[0].0.as_str(), audit[0].1.as_str()), ("reports-team", e.app_id()));
    assert!(audit[0].2.starts_with("127.0.0.1:"));
    let mut c = e.store.conn().await.unwrap();
    let dump: Vec<(String, String, String)> =
        c.query("SELECT key_name, app_id, peer FROM feishu_token_audit").await.unwrap();
    assert!(dump.iter().all(|(a, b, p)| !a.contains(token) && !b.contains(token) && !p.contains(token)));
    drop(c);
    // Unknown app, then a revoked key.
    let r = e
        .web
        .get(format!("http://{}/feishu/app-token?app_id=cli_nope", e.http))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(e.store.revoke_token_key("reports-team").await.unwrap());
    let r = e.web.get(&url).bearer_auth(&key).send().await.unwrap();
    assert_eq!(r.status(), 401);
    // Metrics count hand-outs by key.
    let m = e.web.get(format!("http://{}/metrics", e.http)).send().await.unwrap().text().await.unwrap();
    assert!(m.contains("wework_feishu_token_handouts_total{key=\"reports-team\"} 1"), "{m}");
    e.stop().await;
}

/// Request headers of a push.
type Headers = Vec<(&'static str, String)>;

/// A push as Feishu sends it: encrypted, signed, with the token.
fn push(ek: &str, envelope: &Value, ts: i64) -> (Vec<u8>, Headers) {
    let body = json!({"encrypt": encrypt(ek, envelope.to_string().as_bytes())}).to_string().into_bytes();
    let ts = ts.to_string();
    let nonce = "n0nce".to_owned();
    let sig = signature(&ts, &nonce, ek, &body);
    // Header names in odd case: the webhook must read them case-insensitively.
    (body, vec![("x-LARK-request-timestamp", ts), ("X-Lark-Request-Nonce", nonce), ("x-lark-signature", sig)])
}

fn event(token: &str, event_id: &str) -> Value {
    json!({"schema": "2.0",
           "header": {"event_id": event_id, "event_type": "vc.meeting.all_meeting_ended_v1",
                      "create_time": "1763707200000", "token": token, "app_id": "cli_x", "tenant_key": "t"},
           "event": {"meeting": {"id": "6911188411934433028", "topic": "Weekly sync"}}})
}

impl Env {
    async fn post_push(
        &self,
        app_id: &str,
        body: Vec<u8>,
        headers: &[(&'static str, String)],
    ) -> (u16, String) {
        let mut r = self.web.post(format!("http://{}/feishu/events/{app_id}", self.public)).body(body);
        for (k, v) in headers {
            r = r.header(*k, v);
        }
        let r = r.send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_accepts_once_and_refuses_every_bad_push_without_side_effects() {
    let e = env("fs_webhook").await;
    let (ek, vt) = (e.manifest.encrypt_key.clone(), e.manifest.verification_token.clone());
    let now = wework_archive::feishu::now_s();
    let id = e.app_id().to_owned();

    // url_verification (encrypted, as Feishu sends it).
    let challenge = json!({"challenge": "ajls384kdjx98XX", "token": vt, "type": "url_verification"});
    let (body, h) = push(&ek, &challenge, now);
    assert_eq!(e.post_push(&id, body, &h).await, (200, r#"{"challenge":"ajls384kdjx98XX"}"#.to_owned()));

    // A good event: stored, 200.
    let (good, good_h) = push(&ek, &event(&vt, "ev-1"), now);
    let (status, text) = e.post_push(&id, good.clone(), &good_h).await;
    assert_eq!((status, text.as_str()), (200, r#"{"msg":"success"}"#));
    assert_eq!(e.count("SELECT COUNT(*) FROM feishu_events").await, 1);

    let mut refusals: Vec<(&str, Vec<u8>, Headers, u16)> = Vec::new();
    // The same push again (a replay), and the same event re-encrypted and re-signed.
    refusals.push(("replayed", good.clone(), good_h.clone(), 409));
    let (b, h) = push(&ek, &event(&vt, "ev-1"), now);
    refusals.push(("replayed again", b, h, 409));
    // Plaintext, even signed.
    let plain = event(&vt, "ev-2").to_string().into_bytes();
    let sig = signature(&now.to_string(), "n", &ek, &plain);
    refusals.push((
        "plaintext",
        plain,
        vec![
            ("X-Lark-Request-Timestamp", now.to_string()),
            ("X-Lark-Request-Nonce", "n".into()),
            ("X-Lark-Signature", sig),
        ],
        400,
    ));
    // Bad signature, and none.
    let (b, mut h) = push(&ek, &event(&vt, "ev-3"), now);
    h[2].1 = "0".repeat(64);
    refusals.push(("bad signature", b.clone(), h, 401));
    refusals.push(("unsigned", b, vec![], 401));
    // Wrong token, no token.
    let (b, h) = push(&ek, &event("wrong-token", "ev-4"), now);
    refusals.push(("wrong token", b, h, 401));
    let mut no_token = event(&vt, "ev-5");
    no_token["header"].as_object_mut().unwrap().remove("token");
    let (b, h) = push(&ek, &no_token, now);
    refusals.push(("no token", b, h, 401));
    // Stale.
    let (b, h) = push(&ek, &event(&vt, "ev-6"), now - 3600);
    refusals.push(("stale", b, h, 400));
    // Malformed: not JSON; encrypted garbage; an envelope without event_id.
    refusals.push(("not json", b"{\"encrypt\":".to_vec(), good_h.clone(), 400));
    let garbage = json!({"encrypt": "AAAA"}).to_string().into_bytes();
    let sig = signature(&now.to_string(), "n", &ek, &garbage);
    refusals.push((
        "garbage",
        garbage,
        vec![
            ("X-Lark-Request-Timestamp", now.to_string()),
            ("X-Lark-Request-Nonce", "n".into()),
            ("X-Lark-Signature", sig),
        ],
        400,
    ));
    let mut no_id = event(&vt, "x");
    no_id["header"].as_object_mut().unwrap().remove("event_id");
    let (b, h) = push(&ek, &no_id, now);
    refusals.push(("no event_id", b, h, 400));

    for (what, body, headers, want) in refusals {
        let (status, _) = e.post_push(&id, body, &headers).await;
        assert_eq!(status, want, "{what}");
        assert_eq!(e.count("SELECT COUNT(*) FROM feishu_events").await, 1, "{what} changed the store");
    }
    // Unknown app.
    let (b, h) = push(&ek, &event(&vt, "ev-7"), now);
    assert_eq!(e.post_push("cli_unknown", b, &h).await.0, 404);

    // Without Redis another instance still refuses the replay (the database decides).
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut args = settings(&e.db.url, &format!("redis://{}", dead.local_addr().unwrap()), "x", e.public);
    drop(dead);
    args.public_url = Some(e.config.public_url.clone());
    let lonely = Feishu::new(e.store.clone(), Arc::new(Config::resolve(&args).unwrap())).unwrap();
    let sig = wework_archive::feishu::events::SignatureHeaders {
        timestamp: Some(good_h[0].1.clone()),
        nonce: Some(good_h[1].1.clone()),
        signature: Some(good_h[2].1.clone()),
    };
    let answer = lonely.receive_push(&id, &sig, &good).await;
    assert_eq!(
        answer,
        wework_archive::feishu::events::PushAnswer::Refused(
            wework_archive::feishu::events::Refusal::Replayed
        )
    );
    // And accepts a new one.
    let (b, h) = push(&ek, &event(&vt, "ev-8"), now);
    let sig = wework_archive::feishu::events::SignatureHeaders {
        timestamp: Some(h[0].1.clone()),
        nonce: Some(h[1].1.clone()),
        signature: Some(h[2].1.clone()),
    };
    assert!(matches!(
        lonely.receive_push(&id, &sig, &b).await,
        wework_archive::feishu::events::PushAnswer::Ok(_)
    ));
    assert_eq!(e.count("SELECT COUNT(*) FROM feishu_events").await, 2);

    // Processed after the answer.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while e.count("SELECT COUNT(*) FROM feishu_events WHERE processed_at IS NULL").await > 0 {
        assert!(std::time::Instant::now() < deadline, "events not processed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let m = e.web.get(format!("http://{}/metrics", e.http)).send().await.unwrap().text().await.unwrap();
    assert!(m.contains("wework_feishu_events_refused_total{reason=\"replayed\"} 2"), "{m}");
    assert!(m.contains("wework_feishu_events_refused_total{reason=\"bad_signature\"} 1"), "{m}");
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn card_flow_end_to_end_and_events_from_the_fake() {
    use wework_archive::store::feishu_auth_sessions::SessionState;
    let e = env("fs_card").await;
    let hook = format!("http://{}/feishu/events/{}", e.public, e.app_id());
    // Subscribing makes the fake send an encrypted url_verification first.
    e.sim("/_sim/subscriptions", json!({"url": hook})).await;

    // Card sent → button → approve → card updated.
    let bob = e.manifest.users[1].open_id.clone();
    let session = e.feishu.send_auth_card(e.app_id(), &bob).await.unwrap();
    let messages = e.sim_get("/_sim/messages").await;
    let sent = messages["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["message_id"] == session.message_id.as_str())
        .unwrap()
        .clone();
    assert_eq!(
        (sent["receive_id"].as_str(), sent["msg_type"].as_str()),
        (Some(bob.as_str()), Some("interactive"))
    );
    let card: Value = serde_json::from_str(sent["content"].as_str().unwrap()).unwrap();
    let button = card["elements"][1]["actions"][0]["url"].as_str().unwrap().to_owned();
    assert!(
        button.starts_with(&format!("http://{}/auth/start?", e.public)) && button.contains(&session.id),
        "{button}"
    );
    let (status, location) = e.public_get(&button).await;
    assert_eq!(status, 302);
    let q: std::collections::HashMap<_, _> =
        reqwest::Url::parse(&location).unwrap().query_pairs().into_owned().collect();
    let back = e.decide(&q["state"], &q["redirect_uri"], &bob, "approve").await;
    let (status, page) = e.public_get(&back).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(e.store.auth_session(&session.id).await.unwrap().unwrap().state, SessionState::Completed);
    let messages = e.sim_get("/_sim/messages").await;
    let m = messages["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["message_id"] == session.message_id.as_str())
        .unwrap()
        .clone();
    let last: Value =
        serde_json::from_str(m["updates"].as_array().unwrap().last().unwrap().as_str().unwrap()).unwrap();
    assert_eq!(last["header"]["title"]["content"], "Authorized");

    // Another card declined with its button (card.action.trigger through the webhook).
    let carol = e.manifest.users[2].open_id.clone();
    let s2 = e.feishu.send_auth_card(e.app_id(), &carol).await.unwrap();
    let v = e
        .sim(
            "/_sim/card-actions",
            json!({"message_id": s2.message_id, "open_id": carol,
              "value": {"action": "decline_authorization", "session": s2.id}}),
        )
        .await;
    assert_eq!(v["response"]["card"]["data"]["header"]["title"]["content"], "Declined", "{v}");
    assert_eq!(e.store.auth_session(&s2.id).await.unwrap().unwrap().state, SessionState::Rejected);
    assert!(e.store.feishu_user(e.app_id(), &carol, &e.config.secrets).await.unwrap().is_none());

    // An event pushed by the fake is stored once; its redelivery is refused.
    let meeting = e.sim("/_sim/meetings", json!({"owner_open_id": bob, "bytes": 1024})).await;
    let event_id = meeting["event_id"].as_str().unwrap().to_owned();
    let stored = format!("SELECT COUNT(*) FROM feishu_events WHERE event_id = '{event_id}'");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while e.count(&stored).await == 0 {
        assert!(std::time::Instant::now() < deadline, "the fake's push was not stored");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    e.sim("/_sim/events/redeliver", json!({"event_id": event_id})).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(e.count(&stored).await, 1);
    assert!(wework_archive::feishu::FeishuStats::get(&e.feishu.stats.events_refused, "replayed") >= 1);
    e.stop().await;
}

/// Events over the long connection (no webhook subscription at all): the
/// service opens the WebSocket itself, card clicks are answered with their
/// card, an ended meeting is stored once (its redelivery acknowledged, not
/// stored twice), and a connection the fake drops is reopened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_connection_receives_events_and_card_clicks_without_a_webhook() {
    use wework_archive::store::feishu_auth_sessions::SessionState;
    let e = env("fs_longconn").await;
    let stop = CancellationToken::new();
    let task = tokio::spawn(wework_archive::feishu::longconn::run(e.feishu.clone(), stop.clone()));
    let carol = e.manifest.users[2].open_id.clone();
    let session = e.feishu.send_auth_card(e.app_id(), &carol).await.unwrap();
    let click = json!({"message_id": session.message_id, "open_id": carol,
                       "value": {"action": "decline_authorization", "session": session.id}});
    // The click reaches us once the connection is open (the fake refuses it before).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let answer = loop {
        let r = e
            .web
            .post(format!("{}/_sim/card-actions", e.manifest.base_url))
            .header("content-type", "application/json")
            .body(click.to_string())
            .send()
            .await
            .unwrap();
        if r.status().is_success() {
            break serde_json::from_str::<Value>(&r.text().await.unwrap()).unwrap();
        }
        assert!(std::time::Instant::now() < deadline, "no long connection: {}", r.text().await.unwrap());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(answer["response"]["card"]["data"]["header"]["title"]["content"], "Declined", "{answer}");
    assert_eq!(e.store.auth_session(&session.id).await.unwrap().unwrap().state, SessionState::Rejected);

    // A meeting ends: its event arrives over the connection and is stored once.
    let bob = e.manifest.users[1].open_id.clone();
    let meeting = e.sim("/_sim/meetings", json!({"owner_open_id": bob, "bytes": 1024})).await;
    let event_id = meeting["event_id"].as_str().unwrap().to_owned();
    let stored = format!("SELECT COUNT(*) FROM feishu_events WHERE event_id = '{event_id}'");
    let delivered = |e: &Env, id: String| {
        let web = e.web.clone();
        let url = format!("{}/_sim/deliveries", e.manifest.base_url);
        async move {
            let v: Value =
                serde_json::from_str(&web.get(url).send().await.unwrap().text().await.unwrap()).unwrap();
            v["attempts"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|a| a["event_id"] == id.as_str() && a["status"] == 200)
                .count()
        }
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while e.count(&stored).await == 0 || delivered(&e, event_id.clone()).await == 0 {
        assert!(std::time::Instant::now() < deadline, "the meeting's event did not arrive");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A redelivery is acknowledged (code 200, so Feishu stops retrying) and not stored again.
    e.sim("/_sim/events/redeliver", json!({"event_id": event_id})).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while delivered(&e, event_id.clone()).await < 2 {
        assert!(std::time::Instant::now() < deadline, "the redelivery was not acknowledged");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(e.count(&stored).await, 1);
    let replayed = wework_archive::feishu::FeishuStats::get(&e.feishu.stats.events_refused, "replayed");
    assert!(replayed >= 1, "the replay was recognised ({replayed})");
    let opened = |e: &Env| {
        wework_archive::feishu::FeishuStats::get(&e.feishu.stats.long_connections_opened, e.app_id())
    };
    assert_eq!(opened(&e), 1, "one connection so far");

    // The connection drops (a network cut): it is reopened, and the next
    // meeting's event arrives over the new one.
    let dropped = e.sim("/_sim/long-connections/drop", json!({})).await;
    assert_eq!(dropped["dropped"], 1, "{dropped}");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while opened(&e) < 2 {
        assert!(std::time::Instant::now() < deadline, "the long connection was not reopened");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let again = e.sim("/_sim/meetings", json!({"owner_open_id": bob, "bytes": 1024})).await;
    let again_id = again["event_id"].as_str().unwrap().to_owned();
    let stored = format!("SELECT COUNT(*) FROM feishu_events WHERE event_id = '{again_id}'");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while e.count(&stored).await == 0 {
        assert!(std::time::Instant::now() < deadline, "no event over the reopened connection");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(opened(&e), 2, "reopened once");
    stop.cancel();
    task.await.unwrap();
    e.stop().await;
}
