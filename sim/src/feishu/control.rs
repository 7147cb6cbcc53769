//! The `/_sim/` control surface of FAKE.md: JSON in and out, no auth; tests steer the fake with
//! it and no product code may call it.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::{auth, events, im};
use super::server::json_response;
use super::state::App;

/// Every `/_sim/` route.
pub(crate) fn router() -> Router<App> {
    Router::new()
        .route("/_sim/authorize", post(authorize))
        .route("/_sim/tokens/revoke", post(revoke))
        .route("/_sim/stats", get(stats))
        .route("/_sim/subscriptions", post(subscribe))
        .route("/_sim/events/redeliver", post(redeliver))
        .route("/_sim/deliveries", get(deliveries))
        .route("/_sim/messages", get(messages))
        .route("/_sim/card-actions", post(card_actions))
}

/// A 400 `{"ok": false, "error": …}`.
pub(crate) fn refuse(msg: impl std::fmt::Display) -> Response {
    json_response(StatusCode::BAD_REQUEST, &json!({"ok": false, "error": msg.to_string()}))
}

/// `{"ok": true}`.
pub(crate) fn done() -> Response {
    json_response(StatusCode::OK, &json!({"ok": true}))
}

/// Parses a JSON body or answers 400.
pub(crate) fn body<T: DeserializeOwned>(raw: &[u8]) -> Result<T, Response> {
    serde_json::from_slice(raw).map_err(|e| refuse(format!("bad JSON body: {e}")))
}

async fn authorize(State(app): State<App>, raw: Bytes) -> Response {
    let d: auth::Decision = match body(&raw) {
        Ok(d) => d,
        Err(r) => return r,
    };
    match auth::decide(&app, &d) {
        Ok(location) => json_response(StatusCode::OK, &json!({"location": location})),
        Err(e) => refuse(e.msg),
    }
}

#[derive(serde::Deserialize)]
struct Revoke {
    kind: String,
    open_id: Option<String>,
}

async fn revoke(State(app): State<App>, raw: Bytes) -> Response {
    let r: Revoke = match body(&raw) {
        Ok(r) => r,
        Err(r) => return r,
    };
    match auth::revoke(&mut app.lock(), &r.kind, r.open_id.as_deref()) {
        Ok(()) => done(),
        Err(e) => refuse(e),
    }
}

async fn stats(State(app): State<App>) -> Response {
    let s: Value = app.lock().limits.stats();
    json_response(StatusCode::OK, &s)
}

#[derive(serde::Deserialize)]
struct Url {
    url: String,
}

async fn subscribe(State(app): State<App>, raw: Bytes) -> Response {
    let u: Url = match body(&raw) {
        Ok(u) => u,
        Err(r) => return r,
    };
    match events::subscribe(&app, &u.url).await {
        Ok(()) => done(),
        Err(e) => refuse(e),
    }
}

#[derive(serde::Deserialize)]
struct EventId {
    event_id: String,
}

async fn redeliver(State(app): State<App>, raw: Bytes) -> Response {
    let e: EventId = match body(&raw) {
        Ok(e) => e,
        Err(r) => return r,
    };
    match events::redeliver(&app, &e.event_id) {
        Ok(()) => done(),
        Err(e) => refuse(e),
    }
}

/// Every push attempt (event id, target, attempt number, status or error): not in FAKE.md, for
/// tests of retries.
async fn deliveries(State(app): State<App>) -> Response {
    let v = json!({"attempts": app.lock().events.attempts});
    json_response(StatusCode::OK, &v)
}

async fn messages(State(app): State<App>) -> Response {
    json_response(StatusCode::OK, &im::all(&app))
}

#[derive(serde::Deserialize)]
struct CardAction {
    message_id: String,
    open_id: String,
    #[serde(default)]
    value: Value,
}

async fn card_actions(State(app): State<App>, raw: Bytes) -> Response {
    let c: CardAction = match body(&raw) {
        Ok(c) => c,
        Err(r) => return r,
    };
    match im::card_action(&app, &c.message_id, &c.open_id, c.value).await {
        Ok(answer) => json_response(StatusCode::OK, &json!({"ok": true, "response": answer})),
        Err(e) => refuse(e),
    }
}
