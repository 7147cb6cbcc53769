//! A fake Feishu (Lark) Open Platform, faithful to `shared/feishu/API.md` and started as
//! `shared/feishu/FAKE.md` says (`wework-archive sim feishu …`).
//!
//! It serves the real API under `/open-apis/…` (and the OAuth pages) with the same paths,
//! envelopes, string-typed ids, error codes, HTTP statuses and rate-limit headers, so official
//! clients (`lark-oapi` built with `domain = base_url`) work against it unchanged; tests steer it
//! through `/_sim/…`, which no product code may call.
//!
//! Why hyper directly instead of `axum::serve`: `lark-oapi` reads response headers
//! case-sensitively (`Content-Type`, `Content-Disposition`, `X-Tt-Logid`), so connections are
//! served by hyper's HTTP/1 builder with title-case headers on; event pushes go out the same way
//! (`X-Lark-Signature`…).
//!
//! Everything random (credentials, users, trees, document bodies, ids, tokens, IVs, faults) comes
//! from the seed; times are the real clock, because token lifetimes and retries are real.
//!
//! Map: [`cli`] (the subcommand), `server` (listener, envelope helpers), `state` (shared state and
//! id generation), `world` (the seeded tenant: app, users), `auth` (app/tenant tokens, OAuth),
//! `events` (subscriptions, encrypted signed pushes, retries), `im` (messages, cards), `vc` and
//! `minutes` (recordings, media), `docs` (document bodies), `drive`, `wiki`, `export`, `limits`
//! (rate limits, stats), `faults`, `control` (`/_sim/`), `ws` and `frame` (the long connection).

mod auth;
pub mod cli;
mod control;
mod docs;
mod drive;
mod events;
mod export;
pub mod faults;
mod frame;
mod im;
mod limits;
mod minutes;
mod server;
mod state;
mod vc;
mod wiki;
mod world;
mod ws;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use cli::{FeishuArgs, serve_feishu_cli};
pub use faults::{FeishuFaultKind, FeishuFaults};

/// How a fake platform is set up.
#[derive(Debug, Clone)]
pub struct FeishuConfig {
    /// Seeds every random choice.
    pub seed: u64,
    /// Lifetime of tenant/app access tokens (Feishu: 2 h).
    pub token_ttl: Duration,
    /// Lifetime of user access tokens (Feishu: about 2 h).
    pub user_token_ttl: Duration,
    /// Lifetime of refresh tokens (v2 fixture: 7 days).
    pub refresh_token_ttl: Duration,
    /// Lifetime of authorization codes (Feishu: 5 minutes).
    pub code_ttl: Duration,
    /// A webhook subscribed at start (FAKE.md `--event-url`).
    pub event_url: Option<String>,
    /// Random faults (FAKE.md `--faults`).
    pub faults: FeishuFaults,
    /// Waits before each retry of a failed push (Feishu: 15 s, 5 min, 1 h, 6 h).
    pub retry_delays: Vec<Duration>,
    /// How long an export task takes.
    pub export_delay: Duration,
    /// Drive and wiki nodes wanted in all: 0 keeps the standard small tree; more grows it with
    /// seeded bulk content (nested folders, every type, hostile and colliding titles, shortcuts
    /// including loops, documents whose export is refused) to about this many nodes.
    pub tree_nodes: usize,
    /// Multiplies every rate limit (1.0 = API.md §9), so tests of other things run fast.
    pub rate_scale: f64,
}

impl Default for FeishuConfig {
    fn default() -> Self {
        FeishuConfig {
            seed: 1,
            token_ttl: Duration::from_secs(7200),
            user_token_ttl: Duration::from_secs(7200),
            refresh_token_ttl: Duration::from_secs(604_800),
            code_ttl: Duration::from_secs(300),
            event_url: None,
            faults: FeishuFaults::default(),
            retry_delays: events::FEISHU_RETRY_DELAYS.to_vec(),
            export_delay: Duration::from_millis(1500),
            tree_nodes: 0,
            rate_scale: 1.0,
        }
    }
}

/// What FAKE.md's manifest holds: where the fake is and the app's credentials.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FeishuManifest {
    /// `http://127.0.0.1:PORT`: the `domain` official clients are built with.
    pub base_url: String,
    /// `cli_…`.
    pub app_id: String,
    /// The App Secret.
    pub app_secret: String,
    /// The Encrypt Key pushes are encrypted and signed with.
    pub encrypt_key: String,
    /// The Verification Token every push carries in `header.token`.
    pub verification_token: String,
    /// The tenant's people.
    pub users: Vec<ManifestUser>,
}

/// One person of the fake tenant.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ManifestUser {
    /// `ou_…`.
    pub open_id: String,
    /// Display name.
    pub name: String,
}

impl FeishuManifest {
    /// Writes the manifest atomically (temp file + rename), so a test polling for it never reads
    /// half a file.
    pub fn write_atomic(&self, path: &Path) -> std::io::Result<()> {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?)?;
        std::fs::rename(&tmp, path)
    }

    /// Reads a manifest written by [`FeishuManifest::write_atomic`].
    pub fn read(path: &Path) -> std::io::Result<Self> {
        serde_json::from_slice(&std::fs::read(path)?).map_err(std::io::Error::other)
    }
}

/// A running fake platform.
pub struct FeishuSim {
    shared: Arc<state::Shared>,
    addr: SocketAddr,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl FeishuSim {
    /// Starts serving on `listener`; the tenant is generated from `config.seed`.
    pub async fn start(listener: TcpListener, config: FeishuConfig) -> std::io::Result<FeishuSim> {
        let addr = listener.local_addr()?;
        let cancel = CancellationToken::new();
        let base_url = format!("http://{addr}");
        let shared = Arc::new(state::Shared::new(config, base_url, cancel.clone()));
        let router = server::router(shared.clone());
        let task = tokio::spawn(server::serve(listener, router, cancel.clone()));
        if let Some(url) = shared.config.event_url.clone() {
            events::subscribe_at_start(&shared, url);
        }
        Ok(FeishuSim { shared, addr, cancel, task })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> &str {
        &self.shared.base_url
    }

    /// The manifest FAKE.md describes.
    pub fn manifest(&self) -> FeishuManifest {
        self.shared.manifest()
    }

    /// Stops serving and every pending push.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        let _ = self.task.await;
    }
}
