//! The public endpoint (`PUBLIC_LISTEN`, reached as `PUBLIC_URL`): only what
//! Feishu and people's browsers must reach. Metrics, health and the token
//! hand-out stay on `HTTP_LISTEN`.
//!
//! - `GET /auth/start?app_id=A[&open_id=ou_…][&session=S]`: 302 to the
//!   authorize page with a fresh single-use `state`.
//! - `GET /auth/callback?code&state` (or `?error&state`): trades the code and
//!   answers a small page saying who was authorized, or why not.
//! - `POST /feishu/events/{app_id}`: the events webhook ([`crate::feishu::events`]).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use tokio::net::TcpListener;

use crate::feishu::events::{PushAnswer, SignatureHeaders};
use crate::feishu::oauth::CallbackOutcome;
use crate::feishu::{Feishu, FeishuError};

/// Feishu counts a push failed after 3 s; answer 503 (it retries) rather than late.
const PUSH_DEADLINE: Duration = Duration::from_millis(2500);

/// The routes.
pub fn router(feishu: Arc<Feishu>) -> Router {
    Router::new()
        .route("/auth/start", get(auth_start))
        .route("/auth/callback", get(auth_callback))
        .route("/feishu/events/{app_id}", post(events))
        .with_state(feishu)
}

/// Serves on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    feishu: Arc<Feishu>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(feishu)).with_graceful_shutdown(shutdown).await
}

#[derive(Debug, serde::Deserialize)]
struct StartQuery {
    app_id: Option<String>,
    open_id: Option<String>,
    session: Option<String>,
}

fn page(status: StatusCode, title: &str, text: &str) -> Response {
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title></head>\
         <body><h1>{t}</h1><p>{x}</p></body></html>\n",
        t = escape_html(title),
        x = escape_html(text)
    );
    (status, Html(body)).into_response()
}

/// Escapes text for HTML (names come from Feishu, reasons from us).
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

async fn auth_start(State(feishu): State<Arc<Feishu>>, Query(q): Query<StartQuery>) -> Response {
    let Some(app_id) = q.app_id.filter(|a| crate::store::feishu_apps::valid_app_id(a)) else {
        return page(StatusCode::BAD_REQUEST, "Not authorized", "The link names no valid app.");
    };
    let open_id = q.open_id.filter(|o| !o.is_empty() && o.len() <= 128);
    let session = q.session.filter(|s| !s.is_empty() && s.len() <= 64);
    match feishu.start_authorization(&app_id, open_id.as_deref(), session.as_deref()).await {
        Ok(url) => (StatusCode::FOUND, [(header::LOCATION, url), (header::CACHE_CONTROL, "no-store".into())])
            .into_response(),
        Err(FeishuError::NoApp(_)) => {
            page(StatusCode::NOT_FOUND, "Not authorized", "This app is not configured here.")
        }
        Err(FeishuError::Invalid(why)) => page(StatusCode::BAD_REQUEST, "Not authorized", &why),
        Err(e) => {
            tracing::warn!("/auth/start: {e}");
            page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Not authorized",
                "The archive cannot start an authorization now.",
            )
        }
    }
}

#[derive(Debug, serde::Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

async fn auth_callback(State(feishu): State<Arc<Feishu>>, Query(q): Query<CallbackQuery>) -> Response {
    match feishu.finish_authorization(q.code.as_deref(), q.state.as_deref(), q.error.as_deref()).await {
        CallbackOutcome::Authorized { name, open_id, .. } => {
            let who = if name.is_empty() { open_id } else { format!("{name} ({open_id})") };
            page(
                StatusCode::OK,
                "Authorized",
                &format!("{who} authorized the archive. You can close this page."),
            )
        }
        CallbackOutcome::Refused { reason, message } => {
            let status =
                if reason == "internal" { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::BAD_REQUEST };
            page(status, "Not authorized", &message)
        }
    }
}

fn header_text(h: &HeaderMap, name: &str) -> Option<String> {
    // HeaderMap lookups are case-insensitive.
    h.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

async fn events(
    State(feishu): State<Arc<Feishu>>,
    Path(app_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let sig = SignatureHeaders {
        timestamp: header_text(&headers, "x-lark-request-timestamp"),
        nonce: header_text(&headers, "x-lark-request-nonce"),
        signature: header_text(&headers, "x-lark-signature"),
    };
    let answer = match tokio::time::timeout(PUSH_DEADLINE, feishu.receive_push(&app_id, &sig, &body)).await {
        Ok(a) => a,
        Err(_) => {
            tracing::warn!("webhook: no answer within {PUSH_DEADLINE:?}; Feishu will retry");
            PushAnswer::Unavailable
        }
    };
    match answer {
        PushAnswer::Ok(json) => (StatusCode::OK, axum::Json(json)).into_response(),
        PushAnswer::Refused(r) => {
            let status = StatusCode::from_u16(r.status()).unwrap_or(StatusCode::BAD_REQUEST);
            (status, axum::Json(serde_json::json!({"msg": r.reason()}))).into_response()
        }
        PushAnswer::Unavailable => {
            (StatusCode::SERVICE_UNAVAILABLE, axum::Json(serde_json::json!({"msg": "unavailable"})))
                .into_response()
        }
    }
}
