//! Event delivery (API.md §3): subscriptions, schema-2.0 envelopes with `header.token`, every
//! push encrypted with the Encrypt Key (AES-256-CBC, random IV from the seed) and signed
//! (`X-Lark-Signature`), retried like Feishu on anything but a 200 within 3 s (after 15 s, 5 min,
//! 1 h, 6 h by default).
//!
//! Events also go to every open long connection ([`super::ws`]), in plaintext as Feishu sends
//! them there.

use std::collections::HashMap;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{Request, StatusCode};
use base64::Engine as _;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

use super::state::{App, Inner, Shared, now_ms, now_s};
use crate::crypto::aes256_cbc_encrypt;

/// Feishu's retry schedule.
pub(crate) const FEISHU_RETRY_DELAYS: [Duration; 4] = [
    Duration::from_secs(15),
    Duration::from_secs(300),
    Duration::from_secs(3600),
    Duration::from_secs(21600),
];

/// A push must be answered within this long.
const ANSWER_WITHIN: Duration = Duration::from_secs(3);

/// One delivery attempt, for `GET /_sim/deliveries`.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Attempt {
    pub event_id: String,
    pub event_type: String,
    pub target: String,
    pub attempt: usize,
    pub status: Option<u16>,
    pub error: Option<String>,
    pub at_ms: u64,
}

/// Subscriptions, every event sent (for redelivery) and every attempt.
#[derive(Debug, Default)]
pub(crate) struct EventLog {
    pub subscriptions: Vec<String>,
    events: HashMap<String, (String, Vec<u8>)>,
    pub attempts: Vec<Attempt>,
}

/// `base64(iv || AES-256-CBC(SHA-256(encrypt_key), iv, PKCS7(plaintext)))` (API.md §3.4).
pub(crate) fn encrypt(encrypt_key: &str, iv: &[u8; 16], plaintext: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, encrypt_key.as_bytes());
    let mut key = [0u8; 32];
    key.copy_from_slice(digest.as_ref());
    let mut raw = iv.to_vec();
    raw.extend_from_slice(&aes256_cbc_encrypt(&key, iv, plaintext));
    base64::engine::general_purpose::STANDARD.encode(raw)
}

/// `hex(SHA-256(timestamp + nonce + encrypt_key || body))` (API.md §3.5).
pub(crate) fn sign(timestamp: &str, nonce: &str, encrypt_key: &str, body: &[u8]) -> String {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    ctx.update(timestamp.as_bytes());
    ctx.update(nonce.as_bytes());
    ctx.update(encrypt_key.as_bytes());
    ctx.update(body);
    hex::encode(ctx.finish().as_ref())
}

/// A new schema-2.0 envelope; returns its event id and compact JSON text.
pub(crate) fn envelope(
    shared: &Shared,
    inner: &mut Inner,
    event_type: &str,
    event: Value,
) -> (String, Vec<u8>) {
    let event_id = inner.hex(32);
    let w = &shared.world;
    let v = json!({
        "schema": "2.0",
        "header": {
            "event_id": event_id, "event_type": event_type, "create_time": now_ms().to_string(),
            "token": w.verification_token, "app_id": w.app_id, "tenant_key": w.tenant_key,
        },
        "event": event,
    });
    let text = serde_json::to_vec(&v).unwrap_or_default();
    inner.events.events.insert(event_id.clone(), (event_type.to_string(), text.clone()));
    (event_id, text)
}

/// Sends a new event to every subscription and long connection; returns its event id.
pub(crate) fn emit(app: &App, event_type: &str, event: Value) -> String {
    let (event_id, text, urls, conns) = {
        let mut inner = app.lock();
        let (id, text) = envelope(app, &mut inner, event_type, event);
        (id, text, inner.events.subscriptions.clone(), inner.ws.ids())
    };
    fan_out(app, &event_id, event_type, &text, urls, conns);
    event_id
}

/// `/_sim/events/redeliver`: the same event, same id, delivered again.
pub(crate) fn redeliver(app: &App, event_id: &str) -> Result<(), String> {
    let (event_type, text, urls, conns) = {
        let inner = app.lock();
        let (t, text) =
            inner.events.events.get(event_id).cloned().ok_or_else(|| format!("no event {event_id:?}"))?;
        (t, text, inner.events.subscriptions.clone(), inner.ws.ids())
    };
    fan_out(app, event_id, &event_type, &text, urls, conns);
    Ok(())
}

fn fan_out(app: &App, event_id: &str, event_type: &str, text: &[u8], urls: Vec<String>, conns: Vec<String>) {
    let targets = urls.into_iter().map(Target::Webhook).chain(conns.into_iter().map(Target::Ws));
    for target in targets {
        let (app, id, ty, text) = (app.clone(), event_id.to_string(), event_type.to_string(), text.to_vec());
        tokio::spawn(async move {
            tokio::select! {
                _ = deliver_with_retries(&app, target, &id, &ty, &text) => {}
                _ = app.cancel.cancelled() => {}
            }
        });
    }
}

/// Where an event goes.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    Webhook(String),
    Ws(String),
}

impl Target {
    fn name(&self) -> String {
        match self {
            Target::Webhook(u) => u.clone(),
            Target::Ws(c) => format!("ws:{c}"),
        }
    }
}

async fn deliver_with_retries(app: &App, target: Target, event_id: &str, event_type: &str, text: &[u8]) {
    let delays = app.config.retry_delays.clone();
    for attempt in 0..=delays.len() {
        if attempt > 0 {
            tokio::time::sleep(delays[attempt - 1]).await;
        }
        let r = deliver_once(app, &target, text).await;
        let delivered = matches!(r, Ok((200, _)));
        let (status, error) = match r {
            Ok((s, _)) => (Some(s), None),
            Err(e) => (None, Some(e)),
        };
        app.lock().events.attempts.push(Attempt {
            event_id: event_id.to_string(),
            event_type: event_type.to_string(),
            target: target.name(),
            attempt,
            status,
            error,
            at_ms: now_ms(),
        });
        if delivered {
            return;
        }
    }
}

/// One attempt: `(status, body)` of the answer.
pub(crate) async fn deliver_once(app: &App, target: &Target, text: &[u8]) -> Result<(u16, Vec<u8>), String> {
    match target {
        Target::Webhook(url) => push(app, url, text).await,
        Target::Ws(conn) => super::ws::push(app, conn, text).await,
    }
}

/// POSTs `plaintext` encrypted and signed to `url` (`http://` only); waits at most 3 s.
pub(crate) async fn push(app: &App, url: &str, plaintext: &[u8]) -> Result<(u16, Vec<u8>), String> {
    let (body, timestamp, nonce) = {
        let mut inner = app.lock();
        let mut iv = [0u8; 16];
        rand::RngCore::fill_bytes(&mut inner.ids, &mut iv);
        let nonce = inner.alnum(16);
        let enc = encrypt(&app.world.encrypt_key, &iv, plaintext);
        (serde_json::to_vec(&json!({"encrypt": enc})).unwrap_or_default(), now_s().to_string(), nonce)
    };
    let signature = sign(&timestamp, &nonce, &app.world.encrypt_key, &body);
    let headers = [
        ("x-lark-request-timestamp", timestamp),
        ("x-lark-request-nonce", nonce),
        ("x-lark-signature", signature),
    ];
    let send = post(url, body, &headers);
    match tokio::time::timeout(ANSWER_WITHIN, send).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {} s", ANSWER_WITHIN.as_secs())),
    }
}

/// A plain HTTP/1.1 POST with title-case header names (`X-Lark-Signature` on the wire).
async fn post(url: &str, body: Vec<u8>, extra: &[(&'static str, String)]) -> Result<(u16, Vec<u8>), String> {
    let rest =
        url.strip_prefix("http://").ok_or_else(|| format!("only http:// webhooks are supported: {url}"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = if authority.contains(':') { authority.to_string() } else { format!("{authority}:80") };
    let stream = tokio::net::TcpStream::connect(&addr).await.map_err(|e| format!("connect {addr}: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
        .title_case_headers(true)
        .handshake::<_, Full<Bytes>>(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(conn);
    let mut req = Request::post(path)
        .header("host", authority)
        .header("content-type", "application/json; charset=utf-8")
        .header("user-agent", "Feishu-Event-Push/fake");
    for (k, v) in extra {
        req = req.header(*k, v.as_str());
    }
    let req = req.body(Full::new(Bytes::from(body))).map_err(|e| format!("request: {e}"))?;
    let resp = sender.send_request(req).await.map_err(|e| format!("send: {e}"))?;
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.map_err(|e| format!("body: {e}"))?.to_bytes();
    Ok((status, bytes.to_vec()))
}

/// `/_sim/subscriptions`: the url_verification challenge first (encrypted), then subscribed.
pub(crate) async fn subscribe(app: &App, url: &str) -> Result<(), String> {
    verify_url(app, url).await?;
    let mut inner = app.lock();
    if !inner.events.subscriptions.iter().any(|u| u == url) {
        inner.events.subscriptions.push(url.to_string());
    }
    Ok(())
}

async fn verify_url(app: &App, url: &str) -> Result<(), String> {
    let challenge = app.lock().alnum(20);
    let plain =
        json!({"challenge": challenge, "token": app.world.verification_token, "type": "url_verification"});
    let (status, body) = push(app, url, &serde_json::to_vec(&plain).unwrap_or_default()).await?;
    let answer: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if status != StatusCode::OK.as_u16() || answer["challenge"] != json!(challenge) {
        return Err(format!(
            "url_verification failed: HTTP {status}, answer {}",
            String::from_utf8_lossy(&body)
        ));
    }
    Ok(())
}

/// `--event-url`: subscribed at once (the product may start after the fake); the challenge is
/// sent in the background and its outcome logged.
pub(crate) fn subscribe_at_start(app: &App, url: String) {
    app.lock().events.subscriptions.push(url.clone());
    let app = app.clone();
    tokio::spawn(async move {
        if let Err(e) = verify_url(&app, &url).await {
            tracing::info!("fake feishu: --event-url {url}: {e}");
        }
    });
}

/// `/_sim/card-actions`: `card.action.trigger` delivered once to the first subscription (or long
/// connection); returns the answer's JSON.
pub(crate) async fn card_action(app: &App, event: Value) -> Result<Value, String> {
    let (text, target) = {
        let mut inner = app.lock();
        let target = match (inner.events.subscriptions.first(), inner.ws.ids().first()) {
            (Some(url), _) => Target::Webhook(url.clone()),
            (None, Some(c)) => Target::Ws(c.clone()),
            (None, None) => return Err("no subscription or long connection to deliver to".into()),
        };
        (envelope(app, &mut inner, "card.action.trigger", event).1, target)
    };
    let (status, body) = deliver_once(app, &target, &text).await?;
    if status != 200 {
        return Err(format!("card callback answered HTTP {status}: {}", String::from_utf8_lossy(&body)));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    serde_json::from_slice(&body).map_err(|e| format!("card callback answer is not JSON: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// API.md §10, vector A: exact ciphertext and signature with the fixed IV.
    #[test]
    fn api_md_vector_a() {
        let plain = br#"{"schema":"2.0","header":{"event_id":"5e3702a84e847582be8db7fb73283c02","event_type":"vc.meeting.all_meeting_ended_v1","create_time":"1763707200000","token":"vtok_kudos_test_0001","app_id":"cli_a1b2c3d4e5f6a7b8","tenant_key":"2ca1d211f64f6438"},"event":{"meeting":{"id":"6911188411934433028","topic":"Weekly sync","meeting_no":"235812466","start_time":"1763703600","end_time":"1763707200","host_user":{"id":{"open_id":"ou_84aad35d084aa403a838cf73ee18467"}},"owner":{"id":{"open_id":"ou_84aad35d084aa403a838cf73ee18467"}}},"operator":{"id":{"open_id":"ou_84aad35d084aa403a838cf73ee18467"}}}}"#;
        let iv: [u8; 16] = std::array::from_fn(|i| i as u8);
        let enc = encrypt("kudosEncryptKey-2026", &iv, plain);
        assert!(enc.starts_with(
            "AAECAwQFBgcICQoLDA0ODx+ti10TiIN5/c51ydDziqPlTPglg+13scfa8EBbllMXc/UMxjVdycFmUq12CKHBf9yD"
        ));
        assert!(enc.ends_with("FWnUx+/bImc="));
        let body = serde_json::to_vec(&json!({"encrypt": enc})).unwrap();
        assert_eq!(
            sign("1763707200", "a1b2c3d4e5", "kudosEncryptKey-2026", &body),
            "ccb1b8383fb37649d9f4cb052aefa347f8bd2dcf1119cea8741ac4dd820f80e8"
        );
    }

    /// API.md §10, vector B (url_verification), whole body and signature.
    #[test]
    fn api_md_vector_b() {
        let plain =
            br#"{"challenge":"ajls384kdjx98XX","token":"vtok_kudos_test_0001","type":"url_verification"}"#;
        let iv: [u8; 16] = std::array::from_fn(|i| i as u8);
        let body =
            serde_json::to_vec(&json!({"encrypt": encrypt("kudosEncryptKey-2026", &iv, plain)})).unwrap();
        assert_eq!(
            String::from_utf8(body.clone()).unwrap(),
            r#"{"encrypt":"AAECAwQFBgcICQoLDA0ODx0lnRNjoF80a4HmN4U/QBrO4VQyPFzcG303RdT3DDSXqxRgKGOdX7Lx3oHE2neLlySSl33qtGP+rwQ03ymi5QZVHpGf5+v02jDCIV715PhBHx6hVhaEPAZOTIoqN2dZ+A=="}"#
        );
        assert_eq!(
            sign("1763707200", "a1b2c3d4e5", "kudosEncryptKey-2026", &body),
            "2e000bf0d286a39c8fed8ea87127e1ac209300a509f115f4ac96171d9906465d"
        );
    }
}
