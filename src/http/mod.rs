//! The operations endpoint of `run` (default `127.0.0.1:29090`):
//!
//! - `GET /healthz`: the process answers (liveness).
//! - `GET /readyz`: the database answers, the coordinator loop turns, and every
//!   corp this instance holds has a running worker (readiness); 503 otherwise,
//!   with the reasons in the body.
//! - `GET /metrics`: Prometheus text format ([`metrics`]).
//!
//! Like mini-redis's server, [`serve`] takes its listener and a shutdown
//! future; handlers are thin and get their state explicitly ([`AppState`]).

mod app_token;
pub mod metrics;
pub mod public;
pub mod ui;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::control::ControlStats;
use crate::control::stats::unix_ms;
use crate::store::Store;
use crate::wecom::ingest::IngestStats;
use crate::wecom::media::MediaStats;

/// How long a scrape waits for the database.
pub const DB_TIMEOUT: Duration = Duration::from_secs(2);

/// What the handlers read.
#[derive(Clone)]
pub struct AppState {
    /// The database (readiness and the numbers derived from it).
    pub store: Store,
    /// Ingest counters.
    pub ingest: Arc<IngestStats>,
    /// Control-plane counters.
    pub control: Arc<ControlStats>,
    /// Settings (instance name, lease time).
    pub config: Arc<Config>,
    /// Media download counters, when media workers run in this process.
    pub media: Option<Arc<MediaStats>>,
    /// Recent database-derived numbers, so frequent scrapes do not each scan tables.
    pub db_cache: Arc<tokio::sync::Mutex<Option<metrics::DbSnapshot>>>,
    /// The Feishu modules (token hand-out, their metrics), when they run in this process.
    pub feishu: Option<Arc<crate::feishu::Feishu>>,
}

impl AppState {
    /// State over the given parts.
    pub fn new(
        store: Store,
        ingest: Arc<IngestStats>,
        control: Arc<ControlStats>,
        config: Arc<Config>,
    ) -> AppState {
        AppState { store, ingest, control, config, media: None, db_cache: Arc::default(), feishu: None }
    }

    /// Adds the media workers' counters.
    pub fn with_media(mut self, media: Arc<MediaStats>) -> AppState {
        self.media = Some(media);
        self
    }

    /// Adds the Feishu modules (the token hand-out route and their metrics).
    pub fn with_feishu(mut self, feishu: Arc<crate::feishu::Feishu>) -> AppState {
        self.feishu = Some(feishu);
        self
    }
}

/// The routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_handler))
        .route("/feishu/app-token", get(app_token::app_token))
        .with_state(state.clone())
        .merge(ui::router(state))
}

/// Serves on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Connect info: the browser's access log and login rate limit need the remote address.
    let app = router(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let mut problems = Vec::new();
    if !tokio::time::timeout(DB_TIMEOUT, state.store.ping()).await.unwrap_or(false) {
        problems.push("database: unreachable".to_owned());
    }
    let stale_ms = state.config.lease_ttl.max(Duration::from_secs(10)).as_millis() as u64;
    let last = state.control.last_turn_ms.load(Ordering::Relaxed);
    if last == 0 || unix_ms().saturating_sub(last) > stale_ms {
        problems.push("coordinator: not running".to_owned());
    }
    let missing = state.control.workers_missing.load(Ordering::Relaxed);
    if missing > 0 {
        problems.push(format!("workers: {missing} held corp(s) without a running worker"));
    }
    for (corp, reason) in state.ingest.setup_failures.lock().unwrap().iter() {
        problems.push(format!("corp {corp}: fails before pulling: {reason}"));
    }
    if problems.is_empty() {
        let held = state.control.leases.lock().unwrap().len();
        (StatusCode::OK, format!("ready: {held} corp(s) held\n"))
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, problems.join("\n") + "\n")
    }
}

async fn metrics_handler(State(state): State<AppState>) -> impl IntoResponse {
    let body = metrics::render(&state).await;
    ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], body)
}
