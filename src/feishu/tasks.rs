//! The Feishu sibling tasks of `run`: keep app tokens fresh (and push them
//! in push mode), expire and clean up authorization sessions, and process
//! events a crash left stored but unprocessed, and (when configured) keep the
//! long connections open. Each loop stops on `cancel`.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Feishu, TokenKind, handout, now_ms};

/// How often app tokens are checked (a refresh happens when under 30 min remain).
const TOKEN_CHECK: Duration = Duration::from_secs(60);
/// How often sessions are expired and old rows cleaned up.
const CLEANUP: Duration = Duration::from_secs(300);
/// Finished sessions and OAuth states older than this are deleted by `run`.
pub const KEEP_FINISHED: Duration = Duration::from_secs(30 * 24 * 3600);

/// Runs every Feishu task until `cancel`.
pub async fn run(feishu: Arc<Feishu>, cancel: CancellationToken) {
    let push = feishu.config.feishu.token_push_url.clone().map(|url| {
        let (f, c) = (feishu.clone(), cancel.clone());
        tokio::spawn(push_tokens(f, url, c))
    });
    let long_connections = feishu
        .config
        .feishu
        .long_connection
        .then(|| tokio::spawn(super::longconn::run(feishu.clone(), cancel.clone())));
    let tokens = tokio::spawn(keep_tokens_fresh(feishu.clone(), cancel.clone()));
    let cleanup = tokio::spawn(clean_up(feishu.clone(), cancel.clone()));
    let recordings = tokio::spawn(super::recordings::run(feishu.clone(), cancel.clone()));
    if let Ok(events) = feishu.store.unprocessed_feishu_events(1000).await {
        for e in events {
            feishu.process_event(e).await;
        }
    }
    cancel.cancelled().await;
    let _ = tokens.await;
    let _ = cleanup.await;
    let _ = recordings.await;
    if let Some(p) = push {
        let _ = p.await;
    }
    if let Some(l) = long_connections {
        let _ = l.await;
    }
}

async fn keep_tokens_fresh(feishu: Arc<Feishu>, cancel: CancellationToken) {
    loop {
        match feishu.store.feishu_apps(&feishu.config.secrets).await {
            Ok(apps) => {
                for app in apps.iter().filter(|a| a.enabled) {
                    if let Err(e) = feishu.tokens.get(&feishu.api, app, TokenKind::Tenant).await {
                        tracing::warn!(app = %app.app_id, "tenant access token: {e}");
                    }
                }
            }
            Err(e) => tracing::warn!("listing Feishu apps: {e}"),
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(TOKEN_CHECK) => {}
        }
    }
}

/// Push mode: POSTs the hand-out JSON to `url` after each refresh this process made.
async fn push_tokens(feishu: Arc<Feishu>, url: String, cancel: CancellationToken) {
    let mut refreshed = feishu.tokens.subscribe();
    loop {
        let (app_id, kind, token) = tokio::select! {
            _ = cancel.cancelled() => return,
            got = refreshed.recv() => match got {
                Ok(t) => t,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => return,
            },
        };
        if kind != TokenKind::Tenant {
            continue;
        }
        let body = handout::handout(&token, &feishu.config.feishu, now_ms());
        for attempt in 1..=3u32 {
            let request = feishu
                .api
                .http()
                .post(&url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(serde_json::to_vec(&body).expect("JSON"));
            match request.send().await {
                Ok(r) if r.status().is_success() => {
                    tracing::info!(app = %app_id, "pushed the refreshed token");
                    break;
                }
                Ok(r) => {
                    tracing::warn!(app = %app_id, status = r.status().as_u16(), "token push refused (attempt {attempt})")
                }
                Err(e) => tracing::warn!(app = %app_id, "token push failed (attempt {attempt}): {e}"),
            }
            tokio::time::sleep(Duration::from_secs(attempt as u64)).await;
        }
    }
}

async fn clean_up(feishu: Arc<Feishu>, cancel: CancellationToken) {
    loop {
        match feishu.expire_sessions().await {
            Ok(0) => {}
            Ok(n) => tracing::info!("{n} authorization session(s) expired"),
            Err(e) => tracing::warn!("expiring authorization sessions: {e}"),
        }
        if let Err(e) = feishu.store.delete_old_auth_sessions(KEEP_FINISHED.as_secs()).await {
            tracing::warn!("deleting old authorization sessions: {e}");
        }
        if let Err(e) = feishu.store.delete_old_oauth_states(KEEP_FINISHED.as_secs()).await {
            tracing::warn!("deleting old OAuth states: {e}");
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(CLEANUP) => {}
        }
    }
}
