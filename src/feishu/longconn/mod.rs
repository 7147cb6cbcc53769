//! Events over Feishu's long connection (a WebSocket the service opens), for
//! deployments Feishu cannot reach with a webhook. It speaks what lark-oapi's
//! `ws.Client` speaks (lark_oapi/ws/client.py 1.7.5):
//!
//! 1. `POST {base}/callback/ws/endpoint {"AppID","AppSecret"}` answers
//!    `data.URL` (a single-use `ws[s]://` URL whose query names the
//!    `service_id`) and `data.ClientConfig` (ping and reconnect timing);
//! 2. the WebSocket carries binary protobuf [`frame::Frame`]s: we send `ping`
//!    control frames every `PingInterval`, Feishu sends events as data frames
//!    (headers `type`, `message_id`, `sum`/`seq` for payloads split in parts);
//! 3. each event is answered with the same frame whose payload is
//!    `{"code": <HTTP status>, "data": base64(<what the webhook would answer>)}`.
//!
//! Events then go through exactly the webhook's path
//! ([`Feishu::receive_long_connection`]): de-duplicated, stored before the
//! answer, processed by the same handlers. Nothing the server sends can stop
//! the process: an undecodable frame is logged and skipped, an oversized or
//! never-completed multi-part payload is dropped (Feishu redelivers what was
//! not answered), and a broken connection is reopened after the server's
//! reconnect interval or a backoff.

pub mod frame;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures_util::{SinkExt as _, StreamExt as _};
use prost::Message as _;
use rand::Rng as _;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_util::sync::CancellationToken;

use self::frame::{CONTROL, DATA, Frame, Header};
use super::events::PushAnswer;
use super::{Feishu, FeishuError};
use crate::backoff::Backoff;
use crate::store::feishu_apps::FeishuApp;

/// Largest WebSocket message and largest reassembled event we accept.
const MAX_PAYLOAD: usize = 8 << 20;
/// Parts of a split payload that have not all arrived are dropped after this.
const PARTS_TTL: Duration = Duration::from_secs(30);
/// How often the set of enabled apps is re-read.
const APPS_CHECK: Duration = Duration::from_secs(60);
/// Connect and handshake deadline.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// What went wrong with one connection (never carries the app secret).
#[derive(Debug, thiserror::Error)]
pub enum LongConnError {
    /// The endpoint call failed or answered a non-zero code.
    #[error("endpoint: {0}")]
    Endpoint(String),
    /// The URL the endpoint gave is not usable.
    #[error("endpoint URL: {0}")]
    Url(String),
    /// TCP, TLS or WebSocket handshake.
    #[error("connecting: {0}")]
    Connect(String),
    /// The connection broke.
    #[error("connection: {0}")]
    Transport(#[from] tungstenite::Error),
    /// Setting up TLS.
    #[error(transparent)]
    Feishu(#[from] FeishuError),
}

/// The timing Feishu asks clients to keep (`ClientConfig`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClientConfig {
    /// Seconds between pings.
    pub ping_interval: Duration,
    /// Seconds to wait before reconnecting.
    pub reconnect_interval: Duration,
    /// Up to this much random extra wait before the first reconnect.
    pub reconnect_nonce: Duration,
}

impl Default for ClientConfig {
    /// lark-oapi's defaults.
    fn default() -> Self {
        ClientConfig {
            ping_interval: Duration::from_secs(120),
            reconnect_interval: Duration::from_secs(120),
            reconnect_nonce: Duration::from_secs(30),
        }
    }
}

impl ClientConfig {
    /// Reads `ClientConfig` fields present in `v` over `self`; absurd values
    /// (zero pings, waits over an hour) are clamped rather than trusted.
    fn merge(mut self, v: &Value) -> ClientConfig {
        let secs = |k: &str| v.get(k).and_then(Value::as_f64).filter(|s| s.is_finite() && *s >= 0.0);
        if let Some(s) = secs("PingInterval") {
            self.ping_interval = Duration::from_secs_f64(s.clamp(1.0, 3600.0));
        }
        if let Some(s) = secs("ReconnectInterval") {
            self.reconnect_interval = Duration::from_secs_f64(s.clamp(1.0, 3600.0));
        }
        if let Some(s) = secs("ReconnectNonce") {
            self.reconnect_nonce = Duration::from_secs_f64(s.min(3600.0));
        }
        self
    }
}

/// Keeps one long connection per enabled app open until `cancel`; apps added,
/// disabled or removed later are picked up within a minute.
pub async fn run(feishu: Arc<Feishu>, cancel: CancellationToken) {
    let mut open: BTreeMap<String, (CancellationToken, tokio::task::JoinHandle<()>)> = BTreeMap::new();
    loop {
        match feishu.store.feishu_apps(&feishu.config.secrets).await {
            Ok(apps) => {
                let enabled: Vec<String> =
                    apps.iter().filter(|a| a.enabled).map(|a| a.app_id.clone()).collect();
                open.retain(|app_id, (stop, _)| {
                    let keep = enabled.contains(app_id);
                    if !keep {
                        tracing::info!(app = %app_id, "Feishu long connection: the app is gone or disabled, closing");
                        stop.cancel();
                    }
                    keep
                });
                for app_id in enabled {
                    if let std::collections::btree_map::Entry::Vacant(slot) = open.entry(app_id) {
                        let stop = cancel.child_token();
                        let task = tokio::spawn(keep_open(feishu.clone(), slot.key().clone(), stop.clone()));
                        slot.insert((stop, task));
                    }
                }
            }
            Err(e) => tracing::warn!("Feishu long connection: listing apps: {e}"),
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(APPS_CHECK) => {}
        }
    }
    for (_, (stop, task)) in open {
        stop.cancel();
        let _ = task.await;
    }
}

/// One app's connection, reopened whenever it ends.
async fn keep_open(feishu: Arc<Feishu>, app_id: String, cancel: CancellationToken) {
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
    while !cancel.is_cancelled() {
        let app = match feishu.app(&app_id).await {
            Ok(app) => app,
            Err(e) => {
                tracing::warn!(app = %app_id, "Feishu long connection: {e}");
                sleep_or_cancel(backoff.next_delay(), &cancel).await;
                continue;
            }
        };
        let wait = match session(&feishu, &app, &cancel).await {
            // As lark-oapi does: the first reconnect after a close waits a
            // random part of `ReconnectNonce` (so a Feishu restart is not met
            // by every client at once); failed attempts then back off.
            Ok(Ended { config, served }) => {
                tracing::info!(app = %app_id, served, "Feishu long connection closed by the server; reconnecting");
                backoff.reset();
                let nonce = config.reconnect_nonce.as_secs_f64();
                Duration::from_secs_f64(rand::rng().random_range(0.0..=nonce))
            }
            Err(e) => {
                let wait = backoff.next_delay();
                tracing::warn!(app = %app_id, retry_in = ?wait, "Feishu long connection: {e}");
                wait
            }
        };
        sleep_or_cancel(wait, &cancel).await;
    }
}

async fn sleep_or_cancel(d: Duration, cancel: &CancellationToken) {
    tokio::select! {
        _ = cancel.cancelled() => {}
        _ = tokio::time::sleep(d) => {}
    }
}

/// How a connection ended normally.
struct Ended {
    config: ClientConfig,
    served: u64,
}

/// The endpoint's answer.
struct Endpoint {
    url: String,
    service_id: i32,
    config: ClientConfig,
}

async fn endpoint(feishu: &Feishu, app: &FeishuApp) -> Result<Endpoint, LongConnError> {
    let url = format!("{}/callback/ws/endpoint", app.base_url.trim_end_matches('/'));
    let answer = feishu
        .api
        .http()
        .post(&url)
        .header("locale", "zh")
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(json!({"AppID": app.app_id, "AppSecret": app.app_secret}).to_string())
        .send()
        .await
        .map_err(|e| LongConnError::Endpoint(e.without_url().to_string()))?;
    let status = answer.status().as_u16();
    let text = answer.text().await.map_err(|e| LongConnError::Endpoint(format!("HTTP {status}: {e}")))?;
    let body: Value = serde_json::from_str(&text)
        .map_err(|_| LongConnError::Endpoint(format!("HTTP {status}: the answer is not JSON")))?;
    let code = body.get("code").and_then(Value::as_i64).unwrap_or(-1);
    if code != 0 {
        let msg = body.get("msg").and_then(Value::as_str).unwrap_or("");
        return Err(LongConnError::Endpoint(format!("HTTP {status}, code {code}: {msg}")));
    }
    let data = body.get("data").cloned().unwrap_or(Value::Null);
    let url = data.get("URL").and_then(Value::as_str).ok_or_else(|| LongConnError::Url("missing".into()))?;
    let parsed = reqwest::Url::parse(url).map_err(|e| LongConnError::Url(e.to_string()))?;
    if !matches!(parsed.scheme(), "ws" | "wss") {
        return Err(LongConnError::Url(format!("scheme {:?}", parsed.scheme())));
    }
    let service_id = parsed
        .query_pairs()
        .find(|(k, _)| k == "service_id")
        .and_then(|(_, v)| v.parse().ok())
        .ok_or_else(|| LongConnError::Url("no numeric service_id".into()))?;
    let config = ClientConfig::default().merge(data.get("ClientConfig").unwrap_or(&Value::Null));
    Ok(Endpoint { url: url.to_owned(), service_id, config })
}

/// A byte stream, plain or TLS, for the WebSocket.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

async fn connect(url: &str) -> Result<Box<dyn Stream>, LongConnError> {
    let parsed = reqwest::Url::parse(url).map_err(|e| LongConnError::Url(e.to_string()))?;
    let host = parsed.host_str().ok_or_else(|| LongConnError::Url("no host".into()))?.to_owned();
    let tls = parsed.scheme() == "wss";
    let port = parsed.port().unwrap_or(if tls { 443 } else { 80 });
    let tcp = tokio::net::TcpStream::connect((host.trim_matches(['[', ']']), port))
        .await
        .map_err(|e| LongConnError::Connect(format!("{host}:{port}: {e}")))?;
    let _ = tcp.set_nodelay(true);
    if !tls {
        return Ok(Box::new(tcp));
    }
    let name = rustls_pki_types::ServerName::try_from(host.trim_matches(['[', ']']).to_owned())
        .map_err(|e| LongConnError::Url(format!("host {host:?}: {e}")))?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(super::client::tls_config()?));
    let stream =
        connector.connect(name, tcp).await.map_err(|e| LongConnError::Connect(format!("TLS: {e}")))?;
    Ok(Box::new(stream))
}

/// Opens one connection and serves it until it ends or `cancel`.
async fn session(
    feishu: &Arc<Feishu>,
    app: &FeishuApp,
    cancel: &CancellationToken,
) -> Result<Ended, LongConnError> {
    let ep = endpoint(feishu, app).await?;
    let mut config = ep.config;
    let open = async {
        let stream = connect(&ep.url).await?;
        let ws_config =
            WebSocketConfig::default().max_message_size(Some(MAX_PAYLOAD)).max_frame_size(Some(MAX_PAYLOAD));
        tokio_tungstenite::client_async_with_config(ep.url.as_str(), stream, Some(ws_config)).await.map_err(
            |e| {
                match e {
                    // Feishu says why in `handshake-status`/`handshake-msg` headers.
                    tungstenite::Error::Http(r) => {
                        let h = |k: &str| {
                            r.headers().get(k).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned()
                        };
                        LongConnError::Connect(format!(
                            "handshake refused: HTTP {} {} {}",
                            r.status(),
                            h("handshake-status"),
                            h("handshake-msg")
                        ))
                    }
                    other => LongConnError::Connect(other.to_string()),
                }
            },
        )
    };
    let (mut ws, _) = tokio::time::timeout(CONNECT_TIMEOUT, open)
        .await
        .map_err(|_| LongConnError::Connect(format!("no handshake within {CONNECT_TIMEOUT:?}")))??;
    tracing::info!(app = %app.app_id, "Feishu long connection open");
    super::FeishuStats::inc(&feishu.stats.long_connections_opened, &app.app_id);
    let mut parts = Parts::default();
    let mut served = 0u64;
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now(), config.ping_interval);
    loop {
        let msg = tokio::select! {
            _ = cancel.cancelled() => {
                let _ = ws.close(None).await;
                return Ok(Ended { config, served });
            }
            _ = ping.tick() => {
                let bytes = Frame::control(ep.service_id, "ping").encode_to_vec();
                ws.send(Message::Binary(bytes.into())).await?;
                continue;
            }
            msg = ws.next() => msg,
        };
        let bytes = match msg {
            None | Some(Ok(Message::Close(_))) => return Ok(Ended { config, served }),
            Some(Err(e)) => return Err(e.into()),
            Some(Ok(Message::Binary(b))) => b,
            Some(Ok(_)) => continue, // text, ping, pong: tungstenite answers pings itself
        };
        let frame = match Frame::decode(bytes.as_ref()) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(app = %app.app_id, "Feishu long connection: undecodable frame skipped: {e}");
                continue;
            }
        };
        match frame.method {
            CONTROL => {
                if frame.header("type") == Some("pong")
                    && let Some(p) = &frame.payload
                    && let Ok(v) = serde_json::from_slice::<Value>(p)
                {
                    let merged = config.merge(&v);
                    if merged.ping_interval != config.ping_interval {
                        ping = tokio::time::interval_at(
                            tokio::time::Instant::now() + merged.ping_interval,
                            merged.ping_interval,
                        );
                    }
                    config = merged;
                }
            }
            DATA => {
                let started = Instant::now();
                let Some(payload) = parts.add(&frame, started) else { continue };
                let answer = feishu.receive_long_connection(&app.app_id, &payload).await;
                served += 1;
                let reply = answer_frame(frame, &answer, started.elapsed());
                ws.send(Message::Binary(reply.encode_to_vec().into())).await?;
            }
            _ => {}
        }
    }
}

/// The reply to a data frame: the frame itself with `biz_rt` and the answer.
fn answer_frame(mut frame: Frame, answer: &PushAnswer, took: Duration) -> Frame {
    let (code, body) = match answer {
        PushAnswer::Ok(v) => (200, v.to_string()),
        // A replay was stored the first time: tell Feishu it arrived.
        PushAnswer::Refused(super::events::Refusal::Replayed) => (200, json!({"msg": "success"}).to_string()),
        PushAnswer::Refused(r) => (r.status(), json!({"msg": r.reason()}).to_string()),
        PushAnswer::Unavailable => (500, json!({"msg": "unavailable"}).to_string()),
    };
    let data = base64::engine::general_purpose::STANDARD.encode(body);
    frame.headers.push(Header { key: "biz_rt".into(), value: took.as_millis().to_string() });
    frame.payload = Some(json!({"code": code, "headers": {}, "data": data}).to_string().into_bytes());
    frame
}

/// The parts of one split payload received so far, and since when.
type Partial = (Instant, Vec<Option<Vec<u8>>>);

/// Payloads split over several frames (`sum` > 1), by `message_id`.
#[derive(Default)]
struct Parts {
    pending: HashMap<String, Partial>,
}

impl Parts {
    /// Adds one data frame; the whole payload once every part has arrived.
    fn add(&mut self, frame: &Frame, now: Instant) -> Option<Vec<u8>> {
        self.pending.retain(|_, (since, _)| now.duration_since(*since) < PARTS_TTL);
        let payload = frame.payload.clone().unwrap_or_default();
        let sum: usize = frame.header("sum").and_then(|s| s.parse().ok()).unwrap_or(1);
        let seq: usize = frame.header("seq").and_then(|s| s.parse().ok()).unwrap_or(0);
        if sum <= 1 {
            return Some(payload);
        }
        let id = frame.header("message_id").unwrap_or("").to_owned();
        if sum > 1024 || seq >= sum || id.is_empty() {
            tracing::warn!(
                sum,
                seq,
                "Feishu long connection: a part that cannot belong to a payload, skipped"
            );
            return None;
        }
        let (_, slots) = self.pending.entry(id.clone()).or_insert_with(|| (now, vec![None; sum]));
        if slots.len() != sum {
            self.pending.remove(&id);
            return None;
        }
        slots[seq] = Some(payload);
        let size: usize = slots.iter().flatten().map(Vec::len).sum();
        if size > MAX_PAYLOAD {
            tracing::warn!(size, "Feishu long connection: a split payload over the size limit, dropped");
            self.pending.remove(&id);
            return None;
        }
        if slots.iter().any(Option::is_none) {
            return None;
        }
        let (_, slots) = self.pending.remove(&id)?;
        Some(slots.into_iter().flatten().flatten().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(id: &str, sum: usize, seq: usize, body: &[u8]) -> Frame {
        Frame {
            method: DATA,
            headers: vec![
                Header { key: "message_id".into(), value: id.into() },
                Header { key: "sum".into(), value: sum.to_string() },
                Header { key: "seq".into(), value: seq.to_string() },
            ],
            payload: Some(body.to_vec()),
            ..Frame::default()
        }
    }

    #[test]
    fn split_payloads_are_joined_in_order_whatever_the_arrival() {
        let mut p = Parts::default();
        let t = Instant::now();
        assert_eq!(p.add(&part("m", 1, 0, b"whole"), t), Some(b"whole".to_vec()));
        assert_eq!(p.add(&part("m", 3, 2, b"c"), t), None);
        assert_eq!(p.add(&part("m", 3, 0, b"a"), t), None);
        assert_eq!(p.add(&part("m", 3, 1, b"b"), t), Some(b"abc".to_vec()));
        assert!(p.pending.is_empty());
    }

    #[test]
    fn hostile_parts_are_dropped() {
        let mut p = Parts::default();
        let t = Instant::now();
        assert_eq!(p.add(&part("m", 2, 5, b"x"), t), None, "seq beyond sum");
        assert_eq!(p.add(&part("", 2, 0, b"x"), t), None, "no message id");
        assert_eq!(p.add(&part("m", 1 << 20, 0, b"x"), t), None, "absurd sum");
        assert_eq!(p.add(&part("big", 2, 0, &vec![0; MAX_PAYLOAD + 1]), t), None);
        assert!(p.pending.is_empty());
        // A payload whose other parts never come is forgotten after the TTL.
        assert_eq!(p.add(&part("late", 2, 0, b"x"), t), None);
        assert_eq!(p.add(&part("other", 1, 0, b"y"), t + PARTS_TTL), Some(b"y".to_vec()));
        assert!(p.pending.is_empty());
    }

    #[test]
    fn client_config_is_read_and_clamped() {
        let c = ClientConfig::default()
            .merge(&json!({"PingInterval": 0, "ReconnectInterval": 5, "ReconnectNonce": 1e9}));
        assert_eq!(c.ping_interval, Duration::from_secs(1));
        assert_eq!(c.reconnect_interval, Duration::from_secs(5));
        assert_eq!(c.reconnect_nonce, Duration::from_secs(3600));
        assert_eq!(ClientConfig::default().merge(&json!("junk")), ClientConfig::default());
    }

    #[test]
    fn answers_carry_the_status_and_the_webhook_body() {
        let f = part("m", 1, 0, b"{}");
        let ok = answer_frame(f.clone(), &PushAnswer::Ok(json!({"toast": 1})), Duration::from_millis(3));
        let v: Value = serde_json::from_slice(ok.payload.as_deref().unwrap()).unwrap();
        assert_eq!(v["code"], 200);
        let data = base64::engine::general_purpose::STANDARD.decode(v["data"].as_str().unwrap()).unwrap();
        assert_eq!(serde_json::from_slice::<Value>(&data).unwrap(), json!({"toast": 1}));
        assert_eq!(ok.header("biz_rt"), Some("3"));
        assert_eq!(ok.header("message_id"), Some("m"));
        let bad =
            answer_frame(f, &PushAnswer::Refused(super::super::events::Refusal::BadToken), Duration::ZERO);
        let v: Value = serde_json::from_slice(bad.payload.as_deref().unwrap()).unwrap();
        assert_eq!(v["code"], 401);
    }
}
