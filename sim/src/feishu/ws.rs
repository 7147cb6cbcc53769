//! The long connection, as lark-oapi's `ws.Client` speaks it (read from lark_oapi/ws/client.py
//! 1.7.5): `POST /callback/ws/endpoint {"AppID","AppSecret"}` answers `data.URL` (a `ws://` URL
//! whose query carries `device_id` and `service_id`) and `data.ClientConfig`; the client then
//! opens that WebSocket and exchanges binary protobuf [`Frame`]s. It sends `ping` control frames
//! (we answer `pong` with the client config); we send events as data frames (headers `type`
//! `event`, `message_id`, `trace_id`, `sum` `1`, `seq` `0`, payload = the plaintext event JSON)
//! and it answers each with the same frame whose payload is `{"code":200,"data":base64(answer)}`.

use std::collections::HashMap;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

use super::frame::{CONTROL, DATA, Frame};
use super::server::json_response;
use super::state::{App, now_ms};

/// Tickets of `data.URL` are single-use and live this long.
const TICKET_TTL_MS: u64 = 5 * 60 * 1000;
/// An event must be acknowledged within this long.
const ACK_WITHIN: Duration = Duration::from_secs(3);

struct Push {
    payload: Vec<u8>,
    answer: oneshot::Sender<Vec<u8>>,
}

struct Conn {
    tx: mpsc::UnboundedSender<Push>,
}

/// Open long connections and outstanding tickets.
#[derive(Default)]
pub(crate) struct Connections {
    conns: Vec<(String, Conn)>,
    tickets: HashMap<String, (String, i32, u64)>,
}

impl std::fmt::Debug for Connections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connections").field("open", &self.conns.len()).finish()
    }
}

impl Connections {
    /// Ids of the open connections, oldest first.
    pub fn ids(&self) -> Vec<String> {
        self.conns.iter().map(|(id, _)| id.clone()).collect()
    }

    /// Closes every connection (each one's loop ends when its sender is
    /// dropped); returns how many there were.
    pub fn drop_all(&mut self) -> usize {
        let n = self.conns.len();
        self.conns.clear();
        n
    }
}

fn client_config() -> Value {
    json!({"ReconnectCount": -1, "ReconnectInterval": 5, "ReconnectNonce": 1, "PingInterval": 120})
}

/// `POST /callback/ws/endpoint`.
pub(crate) async fn endpoint(State(app): State<App>, body: Bytes) -> Response {
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if v["AppID"] != json!(app.world.app_id) || v["AppSecret"] != json!(app.world.app_secret) {
        return json_response(
            StatusCode::OK,
            &json!({"code": 403, "msg": "app_id or app_secret is invalid"}),
        );
    }
    let (device_id, service_id, ticket) = {
        let mut inner = app.lock();
        let device_id = inner.digits(19);
        let service_id: i32 = inner.digits(6).parse().unwrap_or(100_000);
        let ticket = inner.hex(32);
        inner.ws.tickets.insert(ticket.clone(), (device_id.clone(), service_id, now_ms() + TICKET_TTL_MS));
        (device_id, service_id, ticket)
    };
    let host = app.base_url.trim_start_matches("http://");
    let url = format!("ws://{host}/ws/v2?device_id={device_id}&service_id={service_id}&ticket={ticket}");
    json_response(
        StatusCode::OK,
        &json!({"code": 0, "msg": "ok", "data": {"URL": url, "ClientConfig": client_config()}}),
    )
}

fn handshake_refused(msg: &str) -> Response {
    (StatusCode::FORBIDDEN, [("handshake-status", "403"), ("handshake-msg", msg)], msg.to_string())
        .into_response()
}

/// `GET /ws/v2?device_id&service_id&ticket`: the upgrade.
pub(crate) async fn upgrade(
    State(app): State<App>,
    Query(q): Query<HashMap<String, String>>,
    ws: WebSocketUpgrade,
) -> Response {
    let ticket = q.get("ticket").cloned().unwrap_or_default();
    let Some((device_id, service_id, expires)) = app.lock().ws.tickets.remove(&ticket) else {
        return handshake_refused("invalid or used ticket");
    };
    if expires <= now_ms() || q.get("device_id") != Some(&device_id) {
        return handshake_refused("expired ticket");
    }
    ws.on_upgrade(move |socket| run(app, socket, device_id, service_id))
}

async fn run(app: App, mut socket: WebSocket, conn_id: String, service_id: i32) {
    let (tx, mut rx) = mpsc::unbounded_channel::<Push>();
    app.lock().ws.conns.push((conn_id.clone(), Conn { tx }));
    let mut pending: HashMap<String, oneshot::Sender<Vec<u8>>> = HashMap::new();
    let mut seq = 0u64;
    loop {
        tokio::select! {
            _ = app.cancel.cancelled() => break,
            push = rx.recv() => {
                let Some(push) = push else { break };
                seq += 1;
                let message_id = app.lock().hex(32);
                let frame = Frame {
                    seq_id: seq,
                    log_id: seq,
                    service: service_id,
                    method: DATA,
                    headers: vec![
                        ("type".into(), "event".into()),
                        ("message_id".into(), message_id.clone()),
                        ("trace_id".into(), message_id.clone()),
                        ("sum".into(), "1".into()),
                        ("seq".into(), "0".into()),
                    ],
                    payload: push.payload,
                };
                pending.insert(message_id, push.answer);
                if socket.send(Message::Binary(frame.encode().into())).await.is_err() {
                    break;
                }
            }
            msg = socket.recv() => {
                let bytes = match msg {
                    Some(Ok(Message::Binary(b))) => b,
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => continue,
                };
                let Ok(frame) = Frame::decode(&bytes) else { continue };
                if frame.method == CONTROL && frame.header("type") == Some("ping") {
                    let pong = Frame {
                        method: CONTROL,
                        service: service_id,
                        headers: vec![("type".into(), "pong".into())],
                        payload: serde_json::to_vec(&client_config()).unwrap_or_default(),
                        ..Frame::default()
                    };
                    if socket.send(Message::Binary(pong.encode().into())).await.is_err() {
                        break;
                    }
                } else if frame.method == DATA
                    && let Some(tx) = frame.header("message_id").and_then(|id| pending.remove(id))
                {
                    let _ = tx.send(frame.payload);
                }
            }
        }
    }
    app.lock().ws.conns.retain(|(id, _)| *id != conn_id);
}

/// Sends `text` over connection `conn_id`; the client's answer as `(status, body)`.
pub(crate) async fn push(app: &App, conn_id: &str, text: &[u8]) -> Result<(u16, Vec<u8>), String> {
    let (answer, rx) = oneshot::channel();
    {
        let inner = app.lock();
        let conn = inner.ws.conns.iter().find(|(id, _)| id == conn_id).ok_or("long connection closed")?;
        conn.1.tx.send(Push { payload: text.to_vec(), answer }).map_err(|_| "long connection closed")?;
    }
    let payload = match tokio::time::timeout(ACK_WITHIN, rx).await {
        Ok(Ok(p)) => p,
        Ok(Err(_)) => return Err("long connection closed before the answer".into()),
        Err(_) => return Err("no answer within 3 s".into()),
    };
    let v: Value = serde_json::from_slice(&payload).map_err(|e| format!("answer frame is not JSON: {e}"))?;
    let status = v["code"].as_u64().unwrap_or(0) as u16;
    let body = match v["data"].as_str() {
        Some(b64) => {
            base64::engine::general_purpose::STANDARD.decode(b64).map_err(|e| format!("answer data: {e}"))?
        }
        None => Vec::new(),
    };
    Ok((status, body))
}
