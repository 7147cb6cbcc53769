//! `run` before the database answers: wait, retrying with backoff, instead of
//! exiting.
//!
//! supervisord (`startretries=10`, `startsecs=5`) and similar supervisors give
//! up on a program that keeps exiting within seconds, so an archive started
//! during a database outage would silently stop for good. Instead `run` says
//! once what it waits for, retries with capped backoff, answers `/readyz` with
//! 503 and the reason meanwhile (`/healthz` 200: the process is alive), and
//! starts archiving the moment the database answers.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::config::Config;
use crate::store::{Store, StoreError};

/// Longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Opens (and migrates) the store, waiting for as long as it takes. While
/// waiting, a small HTTP server answers on a duplicate of `listener`. Returns
/// None when `cancel` fired first; errors only for an unusable URL.
pub(super) async fn wait_for_database(
    config: &Config,
    listener: &std::net::TcpListener,
    cancel: &CancellationToken,
) -> anyhow::Result<Option<Store>> {
    let first = match Store::open(&config.database_url).await {
        Ok(store) => return Ok(Some(store)),
        Err(e @ StoreError::Url(_)) => return Err(e.into()),
        Err(e) => e,
    };
    let target = config.database_url_redacted();
    let reason = Arc::new(Mutex::new(first.to_string()));
    tracing::warn!(
        "waiting for the database {target}: {first}; retrying with backoff (up to {}s), /readyz answers 503 until it answers",
        MAX_BACKOFF.as_secs()
    );
    let stop_http = CancellationToken::new();
    let http = {
        let waiting = tokio::net::TcpListener::from_std(listener.try_clone()?)?;
        let router = Router::new()
            .route("/healthz", get(|| async { "ok\n" }))
            .route("/readyz", get(readyz))
            .route("/metrics", get(metrics))
            .with_state(reason.clone());
        let stop = stop_http.clone();
        tokio::spawn(async move {
            axum::serve(waiting, router).with_graceful_shutdown(stop.cancelled_owned()).await
        })
    };
    let started = Instant::now();
    let mut backoff = Backoff::new(Duration::from_millis(500), MAX_BACKOFF);
    let mut last_logged = first.to_string();
    let outcome = loop {
        let delay = backoff.next_delay();
        tokio::select! {
            _ = cancel.cancelled() => break None,
            _ = tokio::time::sleep(delay) => {}
        }
        match Store::open(&config.database_url).await {
            Ok(store) => break Some(store),
            Err(e) => {
                let now = e.to_string();
                // A different reason (the server came up but refuses us, a
                // migration fails) is news; the same one again is not.
                if now != last_logged {
                    tracing::warn!("still waiting for the database {target}: {now}");
                    last_logged = now.clone();
                } else {
                    tracing::debug!("database {target} still unreachable: {now}");
                }
                *reason.lock().unwrap() = now;
            }
        }
    };
    stop_http.cancel();
    if let Ok(Err(e)) = http.await {
        tracing::warn!("http server while waiting: {e}");
    }
    if outcome.is_some() {
        tracing::info!("the database {target} answers after {:.1?}: starting", started.elapsed());
    }
    Ok(outcome)
}

async fn readyz(State(reason): State<Arc<Mutex<String>>>) -> (StatusCode, String) {
    let why = reason.lock().unwrap().clone();
    (StatusCode::SERVICE_UNAVAILABLE, format!("database: waiting for it at start: {why}\n"))
}

async fn metrics() -> ([(header::HeaderName, &'static str); 1], String) {
    let body = "# HELP wework_database_reachable 1 when the archive database answers.\n\
                # TYPE wework_database_reachable gauge\n\
                wework_database_reachable 0\n"
        .to_owned();
    ([(header::CONTENT_TYPE, crate::http::metrics::CONTENT_TYPE)], body)
}
