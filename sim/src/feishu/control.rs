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

use super::server::json_response;
use super::state::App;
use super::state::now_s;
use super::{auth, docs, events, im, vc};

/// Every `/_sim/` route.
pub(crate) fn router() -> Router<App> {
    Router::new()
        .route("/_sim/authorize", post(authorize))
        .route("/_sim/tokens/revoke", post(revoke))
        .route("/_sim/stats", get(stats))
        .route("/_sim/subscriptions", post(subscribe))
        .route("/_sim/events/redeliver", post(redeliver))
        .route("/_sim/deliveries", get(deliveries))
        .route("/_sim/long-connections/drop", post(drop_long_connections))
        .route("/_sim/messages", get(messages))
        .route("/_sim/card-actions", post(card_actions))
        .route("/_sim/meetings", post(meetings))
        .route("/_sim/drive/touch", post(touch))
        .route("/_sim/tree", get(tree))
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
pub(crate) fn body<T: DeserializeOwned>(raw: &[u8]) -> Result<T, Box<Response>> {
    serde_json::from_slice(raw).map_err(|e| Box::new(refuse(format!("bad JSON body: {e}"))))
}

async fn authorize(State(app): State<App>, raw: Bytes) -> Response {
    let d: auth::Decision = match body(&raw) {
        Ok(d) => d,
        Err(r) => return *r,
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
        Err(r) => return *r,
    };
    match auth::revoke(&mut app.lock(), &r.kind, r.open_id.as_deref()) {
        Ok(()) => done(),
        Err(e) => refuse(e),
    }
}

async fn stats(State(app): State<App>) -> Response {
    let inner = app.lock();
    let mut s: Value = inner.limits.stats();
    inner.vc.add_stats(&mut s);
    drop(inner);
    json_response(StatusCode::OK, &s)
}

#[derive(serde::Deserialize)]
struct Url {
    url: String,
}

async fn subscribe(State(app): State<App>, raw: Bytes) -> Response {
    let u: Url = match body(&raw) {
        Ok(u) => u,
        Err(r) => return *r,
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
        Err(r) => return *r,
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

/// Closes every open long connection, as a network cut or a Feishu restart does (not in
/// FAKE.md, for tests of reconnection) → `{"ok": true, "dropped": n}`.
async fn drop_long_connections(State(app): State<App>) -> Response {
    let dropped = app.lock().ws.drop_all();
    json_response(StatusCode::OK, &json!({"ok": true, "dropped": dropped}))
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
        Err(r) => return *r,
    };
    match im::card_action(&app, &c.message_id, &c.open_id, c.value).await {
        Ok(answer) => json_response(StatusCode::OK, &json!({"ok": true, "response": answer})),
        Err(e) => refuse(e),
    }
}

async fn meetings(State(app): State<App>, raw: Bytes) -> Response {
    let m: vc::NewMeeting = match body(&raw) {
        Ok(m) => m,
        Err(r) => return *r,
    };
    match vc::end_meeting(&app, m) {
        Ok(v) => json_response(StatusCode::OK, &v),
        Err(e) => refuse(e),
    }
}

#[derive(serde::Deserialize)]
struct Token {
    token: String,
}

async fn touch(State(app): State<App>, raw: Bytes) -> Response {
    let t: Token = match body(&raw) {
        Ok(t) => t,
        Err(r) => return *r,
    };
    if app.lock().docs.touch(&t.token, now_s()) {
        done()
    } else {
        refuse(format!("no document {:?}", t.token))
    }
}

/// Every drive node, wiki space and wiki node with what a complete backup must hold.
async fn tree(State(app): State<App>) -> Response {
    let seed = app.config.seed;
    let mut guard = app.lock();
    let inner = &mut *guard;
    let mut nodes = Vec::new();
    for n in &inner.drive.nodes {
        let (title, _, modified) = inner.drive.meta(n, &inner.docs);
        let digest = inner.docs.backup_digest(seed, &n.token);
        let mut v = json!({
            "kind": "drive", "token": n.token, "type": n.node_type, "title": title, "parent": n.parent,
            "modified_time": modified.to_string(), "size": digest.as_ref().map_or(0, |d| d.1),
            "exportable": docs::exportable(&n.node_type), "sha256": digest.as_ref().map(|d| d.0.clone()),
            "export_extension": digest.as_ref().and_then(|d| d.2),
        });
        if let Some((t, tok)) = &n.shortcut {
            v["shortcut_target"] = json!({"target_type": t, "target_token": tok});
        }
        nodes.push(v);
    }
    for s in &inner.wiki.spaces {
        // `library_of`: whose "My Library" this is (null for team spaces), so a test or
        // benchmark can tell which nodes a given person can reach.
        nodes.push(json!({"kind": "wiki_space", "space_id": s.space_id, "title": s.name, "library_of": s.library_of}));
    }
    for n in &inner.wiki.nodes {
        let title = inner.docs.map.get(&n.obj_token).map(|d| d.title.clone()).unwrap_or_default();
        let digest = inner.docs.backup_digest(seed, &n.obj_token);
        nodes.push(json!({
            "kind": "wiki", "space_id": n.space_id, "node_token": n.node_token, "obj_token": n.obj_token,
            "obj_type": n.obj_type, "title": title, "parent": n.parent, "has_child": inner.wiki.has_child(&n.node_token),
            "exportable": docs::exportable(&n.obj_type), "sha256": digest.as_ref().map(|d| d.0.clone()),
            "export_extension": digest.as_ref().and_then(|d| d.2),
        }));
    }
    json_response(StatusCode::OK, &json!({"nodes": nodes}))
}
