//! The Feishu half of `demo` (issue 13, item 7): meeting recordings archived
//! beside the chat records, the real way round.
//!
//! The fake Feishu runs in this process (as in the tests); its app is added
//! to the database like `feishu app import` does; the Feishu side starts as
//! `run` starts it (webhook and OAuth callback on PUBLIC_LISTEN, the token,
//! clean-up and recording tasks). Then the demo plays the tenant and its
//! people through the fake's `/_sim/` controls: a meeting of someone who never
//! authorized ends, so its job waits and the archive sends her the
//! authorization card; she presses its button (our `/auth/start`), approves on
//! the fake's authorize page, and her browser lands on our `/auth/callback`,
//! which trades the code. A second meeting ends after that. Both recordings
//! must be archived with the bytes and sha256 the fake says it served.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use wework_archive_sim::feishu::{FeishuConfig, FeishuManifest, FeishuSim};

use crate::config::Config;
use crate::feishu::Feishu;
use crate::store::Store;
use crate::store::feishu_apps::FeishuApp;
use crate::store::feishu_recordings::{Recording, RecordingState};

/// How long one step may take before the demo gives up (the fake answers in seconds).
const STEP: Duration = Duration::from_secs(60);

/// What the demo checked about one recording.
struct Archived {
    row: Recording,
    /// The fake's word on what it served.
    fake_sha256: String,
    fake_bytes: u64,
    /// What is on disk.
    disk_sha256: String,
    disk_bytes: u64,
}

impl Archived {
    fn exact(&self) -> bool {
        self.row.sha256 == self.fake_sha256
            && self.disk_sha256 == self.fake_sha256
            && self.row.bytes == Some(self.fake_bytes)
            && self.disk_bytes == self.fake_bytes
    }
}

/// The fake tenant as the demo's people see it: its control surface.
struct Tenant {
    manifest: FeishuManifest,
    web: reqwest::Client,
}

impl Tenant {
    async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let r = self
            .web
            .post(format!("{}{path}", self.manifest.base_url))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .send()
            .await
            .with_context(|| format!("fake Feishu {path}"))?;
        let status = r.status();
        let text = r.text().await?;
        if !status.is_success() {
            bail!("fake Feishu {path}: HTTP {status}: {text}");
        }
        serde_json::from_str(&text).with_context(|| format!("fake Feishu {path}: not JSON"))
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let text = self.web.get(format!("{}{path}", self.manifest.base_url)).send().await?.text().await?;
        serde_json::from_str(&text).with_context(|| format!("fake Feishu {path}: not JSON"))
    }

    /// Cards the app sent to `open_id` (parsed), with their titles.
    async fn cards_to(&self, open_id: &str) -> anyhow::Result<Vec<Value>> {
        let all = self.get("/_sim/messages").await?;
        Ok(all["messages"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter(|m| m["receive_id"] == open_id && m["msg_type"] == "interactive")
            .filter_map(|m| serde_json::from_str(m["content"].as_str()?).ok())
            .collect())
    }

    /// What a person's press of the card's Authorize button leads to: our
    /// `/auth/start` sends the browser to the authorize page, the person
    /// approves there, and the browser follows the redirect to our callback.
    /// Returns the callback URL that answered.
    async fn approve(&self, start_url: &str, open_id: &str) -> anyhow::Result<String> {
        let r = self.web.get(start_url).send().await.context("opening the card's button URL")?;
        let authorize_page = match r.headers().get(reqwest::header::LOCATION) {
            Some(l) if r.status().is_redirection() => l.to_str()?.to_owned(),
            _ => bail!("/auth/start answered HTTP {} instead of the authorize page", r.status()),
        };
        let page = reqwest::Url::parse(&authorize_page).context("the authorize page URL")?;
        let q: std::collections::HashMap<String, String> = page.query_pairs().into_owned().collect();
        let field = |k: &str| q.get(k).cloned().unwrap_or_default();
        let choice = json!({"client_id": field("client_id"), "redirect_uri": field("redirect_uri"),
                            "state": field("state"), "open_id": open_id, "decision": "approve"});
        let answer = self.post("/_sim/authorize", choice).await?;
        let callback = answer["location"].as_str().context("the authorize page sent no redirect")?.to_owned();
        let r = self.web.get(&callback).send().await.context("following the redirect to our callback")?;
        let status = r.status();
        let body = r.text().await.unwrap_or_default();
        if !status.is_success() || !body.contains("Authorized") {
            bail!(
                "our OAuth callback answered HTTP {status}: {}",
                body.chars().take(200).collect::<String>()
            );
        }
        Ok(callback.split('?').next().unwrap_or(&callback).to_owned())
    }
}

/// A card's title.
fn title(card: &Value) -> &str {
    card["header"]["title"]["content"].as_str().unwrap_or("")
}

/// Streams a file through SHA-256.
fn sha256_file(path: &Path) -> std::io::Result<(String, u64)> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf)?;
        if k == 0 {
            return Ok((hex::encode(ctx.finish().as_ref()), n));
        }
        ctx.update(&buf[..k]);
        n += k as u64;
    }
}

/// The demo's settings for the Feishu side: the configured ones, with
/// - PUBLIC_LISTEN as configured when it is free, else a free port (and the
///   public URL with it, unless one was given): a running `run` holds it;
/// - recordings polled every 0.5 s (the fake is ready in a second, not the
///   minutes a real recording takes);
/// - a Redis key prefix of this run: the fake tenant has the same ids and
///   event ids on every run, and a rerun must not find the last run's cached
///   tokens or event de-duplication marks.
async fn demo_config(config: &Config) -> anyhow::Result<(Config, tokio::net::TcpListener, Option<String>)> {
    let mut c = config.clone();
    let mut note = None;
    let listener = match tokio::net::TcpListener::bind(config.public_listen).await {
        Ok(l) => l,
        Err(e) => {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let addr = l.local_addr()?;
            note =
                Some(format!("PUBLIC_LISTEN {} is taken ({e}); the demo uses {addr}", config.public_listen));
            if config.public_url == format!("http://{}", config.public_listen) {
                c.public_url = format!("http://{addr}");
            }
            c.public_listen = addr;
            l
        }
    };
    c.recordings.poll = Duration::from_millis(500);
    c.recordings.max_poll = Duration::from_secs(2);
    c.recordings.claim_ttl = Duration::from_secs(10);
    let run_id =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
    c.redis_prefix = format!("{}:demo-{run_id}", config.redis_prefix);
    Ok((c, listener, note))
}

/// Waits for the meeting's job to end; its row.
async fn finished(store: &Store, app_id: &str, meeting_id: &str) -> anyhow::Result<Recording> {
    let deadline = Instant::now() + STEP;
    loop {
        if let Some(r) = store.recording(app_id, meeting_id).await?
            && r.state.is_final()
        {
            return Ok(r);
        }
        if Instant::now() > deadline {
            bail!("the recording of meeting {meeting_id} was not archived within {STEP:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs the Feishu half; true when both recordings are exact.
pub(crate) async fn run(
    store: &Store,
    config: &Config,
    seed: u64,
    recording_bytes: u64,
    cancel: &CancellationToken,
) -> anyhow::Result<bool> {
    let started = Instant::now();
    let sim = FeishuSim::start(
        tokio::net::TcpListener::bind("127.0.0.1:0").await?,
        FeishuConfig { seed, ..Default::default() },
    )
    .await?;
    let manifest = sim.manifest();
    let app = super::feishu::app_of_fake(&manifest);
    store.upsert_feishu_app(&app, &config.secrets).await?;
    store.forget_feishu_app_activity(&app.app_id).await?;
    let app_dir = config.msgfile_dir.join("feishu").join(&app.app_id);
    if app_dir.exists() {
        std::fs::remove_dir_all(&app_dir).with_context(|| format!("removing {}", app_dir.display()))?;
    }
    let (demo_config, listener, note) = demo_config(config).await?;
    // `feishu::start` binds PUBLIC_LISTEN itself, as `run` does: the probe lets go first.
    drop(listener);
    let demo_config = Arc::new(demo_config);
    let feishu = Feishu::new(store.clone(), demo_config.clone())?;
    let side_cancel = cancel.child_token();
    let side = super::feishu::start(feishu.clone(), &demo_config, side_cancel.clone()).await?;
    let outcome = play(&manifest, &app, store, &demo_config, recording_bytes, note, started).await;
    side_cancel.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), side).await;
    sim.shutdown().await;
    outcome
}

async fn play(
    manifest: &FeishuManifest,
    app: &FeishuApp,
    store: &Store,
    config: &Config,
    recording_bytes: u64,
    note: Option<String>,
    started: Instant,
) -> anyhow::Result<bool> {
    let tenant = Tenant {
        manifest: manifest.clone(),
        web: crate::feishu::client::client_builder()?
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()?,
    };
    println!(
        "\nfeishu recordings: fake Feishu at {} (app {}), our webhook and OAuth callback on {} (PUBLIC_LISTEN {})",
        manifest.base_url, app.app_id, config.public_url, config.public_listen
    );
    if let Some(n) = note {
        println!("  note: {n}");
    }
    let hook = format!("{}/feishu/events/{}", config.public_url, app.app_id);
    tenant.post("/_sim/subscriptions", json!({"url": hook})).await.context("subscribing our webhook")?;
    let owner = manifest.users.first().context("the fake tenant has no users")?;
    let who = format!("{} ({})", owner.name, owner.open_id);

    // Meeting 1 ends before its owner ever authorized the archive.
    let first = tenant
        .post(
            "/_sim/meetings",
            json!({"owner_open_id": owner.open_id, "topic": "Quarterly review", "ready_after_s": 1.0,
                   "bytes": recording_bytes}),
        )
        .await?;
    let first_id = first["meeting_id"].as_str().context("no meeting_id")?.to_owned();
    let deadline = Instant::now() + STEP;
    let card = loop {
        if let Some(c) =
            tenant.cards_to(&owner.open_id).await?.into_iter().find(|c| title(c) == "Authorize the archive")
        {
            break c;
        }
        if Instant::now() > deadline {
            bail!("no authorization card reached {who} within {STEP:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let waiting = store.recording(&app.app_id, &first_id).await?.map(|r| r.state);
    println!(
        "  meeting 1 ended; its owner {who} never authorized: job {}, authorization card sent",
        waiting.map_or("?", RecordingState::as_str)
    );
    let start_url =
        card["elements"][1]["actions"][0]["url"].as_str().context("the card has no button URL")?;
    let auth_started = Instant::now();
    let callback = tenant.approve(start_url, &owner.open_id).await?;
    println!(
        "  the owner pressed Authorize, approved on the authorize page, and {callback} traded the code ({:.1}s)",
        auth_started.elapsed().as_secs_f64()
    );

    // Meeting 2 ends with its owner authorized.
    let second = tenant
        .post(
            "/_sim/meetings",
            json!({"owner_open_id": owner.open_id, "topic": "Design review / 设计评审", "ready_after_s": 1.0,
                   "bytes": recording_bytes + 4099}),
        )
        .await?;
    println!("  meeting 2 ended");
    let mut archived = Vec::new();
    for m in [&first, &second] {
        let id = m["meeting_id"].as_str().context("no meeting_id")?;
        let row = finished(store, &app.app_id, id).await?;
        if row.state != RecordingState::Done {
            bail!("meeting {id}: the job ended {} ({})", row.state.as_str(), row.last_error);
        }
        let (disk_sha256, disk_bytes) = sha256_file(&config.msgfile_dir.join(&row.path))
            .with_context(|| format!("reading the archived {}", row.path))?;
        archived.push(Archived {
            fake_sha256: m["sha256"].as_str().unwrap_or_default().to_owned(),
            fake_bytes: m["bytes"].as_u64().unwrap_or(0),
            row,
            disk_sha256,
            disk_bytes,
        });
    }
    // The owner is told about each archived recording by a card.
    let deadline = Instant::now() + Duration::from_secs(10);
    let told = loop {
        let n = tenant
            .cards_to(&owner.open_id)
            .await?
            .iter()
            .filter(|c| title(c) == "Meeting recording archived")
            .count();
        if n >= archived.len() || Instant::now() > deadline {
            break n;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    println!("\n  {:<20} {:<5} {:>9}  {:<16} {:<5} path", "meeting", "state", "bytes", "sha256", "= fake");
    for a in &archived {
        println!(
            "  {:<20} {:<5} {:>9}  {:<16} {:<5} {}",
            a.row.meeting_id,
            a.row.state.as_str(),
            a.disk_bytes,
            format!("{}…", &a.disk_sha256[..a.disk_sha256.len().min(14)]),
            if a.exact() { "yes" } else { "NO" },
            config.msgfile_dir.join(&a.row.path).display()
        );
    }
    let all_exact = archived.iter().all(Archived::exact);
    let bytes: u64 = archived.iter().map(|a| a.disk_bytes).sum();
    println!(
        "  {} recordings, {:.1} MiB, {} under {} beside the chat records ({}/<corpid>/); owner told by {told} card(s); {:.1}s",
        archived.len(),
        bytes as f64 / (1024.0 * 1024.0),
        if all_exact {
            "sha256 and size equal to what the fake served,"
        } else {
            "NOT equal to what the fake served,"
        },
        config.msgfile_dir.join("feishu").display(),
        config.msgfile_dir.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(all_exact)
}
