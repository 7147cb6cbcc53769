//! `GET /feishu/app-token?app_id=A` on `HTTP_LISTEN`: hands a tenant access
//! token to other teams' clients that hold a key (`Authorization: Bearer
//! KEY`, made by `feishu token-key add`). Keys are compared by SHA-256; every
//! hand-out is audited (key name, peer, app; never the token).

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;
use crate::feishu::{FeishuError, FeishuStats, TokenKind, handout, now_ms};

#[derive(Debug, serde::Deserialize)]
pub(crate) struct AppTokenQuery {
    app_id: Option<String>,
}

fn error(status: StatusCode, msg: &str) -> Response {
    (status, axum::Json(json!({"error": msg}))).into_response()
}

pub(crate) async fn app_token(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(q): Query<AppTokenQuery>,
) -> Response {
    let Some(feishu) = state.feishu.clone() else {
        return error(StatusCode::NOT_FOUND, "the Feishu modules are not running here");
    };
    let key = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .filter(|k| !k.is_empty());
    let Some(key) = key else { return error(StatusCode::UNAUTHORIZED, "a hand-out key is required") };
    let key_name = match feishu.store.token_key_name(&crate::feishu::crypto::sha256_hex(key.as_bytes())).await
    {
        Ok(Some(name)) => name,
        Ok(None) => {
            FeishuStats::inc(&feishu.stats.handouts, "(refused)");
            tracing::warn!(peer = %peer, "token hand-out refused: unknown or revoked key");
            return error(StatusCode::UNAUTHORIZED, "unknown or revoked key");
        }
        Err(e) => {
            tracing::warn!("token hand-out: {e}");
            return error(StatusCode::SERVICE_UNAVAILABLE, "the database is unavailable");
        }
    };
    let Some(app_id) = q.app_id.filter(|a| crate::store::feishu_apps::valid_app_id(a)) else {
        return error(StatusCode::BAD_REQUEST, "app_id is required");
    };
    let app = match feishu.app(&app_id).await {
        Ok(a) => a,
        Err(FeishuError::NoApp(_)) => return error(StatusCode::NOT_FOUND, "no such enabled app"),
        Err(e) => {
            tracing::warn!("token hand-out: {e}");
            return error(StatusCode::SERVICE_UNAVAILABLE, "the database is unavailable");
        }
    };
    let token = match feishu.tokens.get(&feishu.api, &app, TokenKind::Tenant).await {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(app = %app.app_id, "token hand-out: {e}");
            return error(StatusCode::BAD_GATEWAY, "Feishu did not issue a token");
        }
    };
    if let Err(e) = feishu.store.audit_token_handout(&key_name, &app.app_id, &peer.to_string()).await {
        // No audit row, no token.
        tracing::warn!("token hand-out audit: {e}");
        return error(StatusCode::SERVICE_UNAVAILABLE, "the database is unavailable");
    }
    FeishuStats::inc(&feishu.stats.handouts, &key_name);
    tracing::info!(key = %key_name, app = %app.app_id, peer = %peer, "token handed out");
    axum::Json(handout::handout(&token, &feishu.config.feishu, now_ms())).into_response()
}
