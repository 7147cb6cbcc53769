//! The events webhook (issue 12, item 7): `POST /feishu/events/{app_id}`.
//!
//! Every push must be encrypted with the app's Encrypt Key, signed
//! (`X-Lark-Signature` over the raw body), carry the app's Verification Token
//! in `header.token`, be recent (signed timestamp within a few minutes) and be
//! new (`event_id` not seen: Redis first, the table's primary key as the
//! arbiter). Official SDKs accept plaintext or token-less pushes; we do not
//! (FAKE.md). A refused push changes nothing and costs one log line.
//! Accepted events are stored before the 200 and processed afterwards.

use std::time::Duration;

use serde_json::{Value, json};

use super::crypto::{constant_time_eq, decrypt, signature, signature_matches};
use super::{Feishu, FeishuStats, now_s, recordings};
use crate::store::feishu_apps::FeishuApp;
use crate::store::feishu_events::StoredEvent;

/// Why a push was refused (the metric label and the 4xx).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No such enabled app.
    UnknownApp,
    /// Not JSON, or JSON without the fields an envelope needs.
    Malformed,
    /// Plaintext (no `encrypt`).
    NotEncrypted,
    /// `encrypt` does not open with the Encrypt Key.
    Undecryptable,
    /// Signature headers missing.
    Unsigned,
    /// Signature does not match.
    BadSignature,
    /// `header.token` missing or wrong.
    BadToken,
    /// Timestamp too old (or too far in the future).
    Stale,
    /// `event_id` already received.
    Replayed,
}

impl Refusal {
    /// Metric label.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::UnknownApp => "unknown_app",
            Refusal::Malformed => "malformed",
            Refusal::NotEncrypted => "plaintext",
            Refusal::Undecryptable => "undecryptable",
            Refusal::Unsigned => "unsigned",
            Refusal::BadSignature => "bad_signature",
            Refusal::BadToken => "bad_token",
            Refusal::Stale => "stale",
            Refusal::Replayed => "replayed",
        }
    }

    /// HTTP status.
    pub fn status(self) -> u16 {
        match self {
            Refusal::UnknownApp => 404,
            Refusal::Unsigned | Refusal::BadSignature | Refusal::BadToken => 401,
            Refusal::Replayed => 409,
            Refusal::Malformed | Refusal::NotEncrypted | Refusal::Undecryptable | Refusal::Stale => 400,
        }
    }
}

/// The signature headers (read case-insensitively by the caller's header map).
#[derive(Debug, Clone, Default)]
pub struct SignatureHeaders {
    /// `X-Lark-Request-Timestamp`.
    pub timestamp: Option<String>,
    /// `X-Lark-Request-Nonce`.
    pub nonce: Option<String>,
    /// `X-Lark-Signature`.
    pub signature: Option<String>,
}

/// A verified push.
#[derive(Debug, Clone, PartialEq)]
pub enum Verified {
    /// `url_verification`: answer with the challenge.
    Challenge(String),
    /// An event to store and process.
    Event {
        /// `header.event_id` (v2) or `uuid` (v1).
        event_id: String,
        /// `header.event_type` (v2) or `event.type` (v1).
        event_type: String,
        /// The decrypted envelope text, exactly as received.
        plaintext: String,
        /// Parsed.
        envelope: Value,
    },
}

/// Verifies one push at `now` (unix seconds). Pure: the crypto, the
/// signature, the token and the age; de-duplication is the caller's.
pub fn verify_push(
    app: &FeishuApp,
    headers: &SignatureHeaders,
    body: &[u8],
    now: i64,
    max_age: Duration,
) -> Result<Verified, Refusal> {
    let outer: Value = serde_json::from_slice(body).map_err(|_| Refusal::Malformed)?;
    let Some(outer) = outer.as_object() else { return Err(Refusal::Malformed) };
    let Some(encrypted) = outer.get("encrypt") else { return Err(Refusal::NotEncrypted) };
    let Some(encrypted) = encrypted.as_str() else { return Err(Refusal::Malformed) };
    let plaintext = decrypt(&app.encrypt_key, encrypted).map_err(|_| Refusal::Undecryptable)?;
    let envelope: Value = serde_json::from_str(&plaintext).map_err(|_| Refusal::Malformed)?;
    let signed = match (&headers.timestamp, &headers.nonce, &headers.signature) {
        (Some(ts), Some(nonce), Some(sig)) => Some((ts, nonce, sig)),
        _ => None,
    };
    let is_challenge = envelope.get("type").and_then(Value::as_str) == Some("url_verification");
    // Feishu's own SDK skips the signature on url_verification; we check it
    // when it is there, and require it on everything else.
    if let Some((ts, nonce, sig)) = signed {
        if !signature_matches(&signature(ts, nonce, &app.encrypt_key, body), sig) {
            return Err(Refusal::BadSignature);
        }
    } else if !is_challenge {
        return Err(Refusal::Unsigned);
    }
    let token_ok = |t: Option<&str>| {
        t.is_some_and(|t| constant_time_eq(t.as_bytes(), app.verification_token.as_bytes()))
    };
    if is_challenge {
        if !token_ok(envelope.get("token").and_then(Value::as_str)) {
            return Err(Refusal::BadToken);
        }
        let challenge = envelope.get("challenge").and_then(Value::as_str).ok_or(Refusal::Malformed)?;
        return Ok(Verified::Challenge(challenge.to_owned()));
    }
    let ts: i64 = signed.and_then(|(ts, _, _)| ts.trim().parse().ok()).ok_or(Refusal::Malformed)?;
    if (now - ts).unsigned_abs() > max_age.as_secs() {
        return Err(Refusal::Stale);
    }
    let (event_id, event_type, token) = identity(&envelope);
    if !token_ok(token) {
        return Err(Refusal::BadToken);
    }
    let (Some(event_id), Some(event_type)) = (event_id, event_type) else {
        return Err(Refusal::Malformed);
    };
    Ok(Verified::Event {
        event_id: event_id.to_owned(),
        event_type: event_type.to_owned(),
        plaintext,
        envelope,
    })
}

/// `(event_id, event_type, token)` of an envelope, schema 2.0 (`header`) or
/// 1.0 (`uuid`, `event.type`, top-level `token`); ids that are empty, longer
/// than 128 bytes or not printable ASCII count as absent.
fn identity(envelope: &Value) -> (Option<&str>, Option<&str>, Option<&str>) {
    let (event_id, event_type, token) = if let Some(header) = envelope.get("header") {
        (
            header.get("event_id").and_then(Value::as_str),
            header.get("event_type").and_then(Value::as_str),
            header.get("token").and_then(Value::as_str),
        )
    } else {
        (
            envelope.get("uuid").and_then(Value::as_str),
            envelope.pointer("/event/type").and_then(Value::as_str),
            envelope.get("token").and_then(Value::as_str),
        )
    };
    let valid_id = |s: &&str| !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic());
    (event_id.filter(valid_id), event_type.filter(valid_id), token)
}

/// Verifies one event that arrived over the long connection. The channel is
/// already authenticated (its URL came from the endpoint call made with the
/// app secret, over TLS), so there is no signature; the payload is the
/// envelope, or `{"encrypt": …}` when the app has an Encrypt Key. A
/// `header.token` that is present must still match the Verification Token.
pub fn verify_long_connection(app: &FeishuApp, payload: &[u8]) -> Result<Verified, Refusal> {
    let outer: Value = serde_json::from_slice(payload).map_err(|_| Refusal::Malformed)?;
    let (plaintext, envelope) = match outer.get("encrypt") {
        Some(Value::String(encrypted)) => {
            let plaintext = decrypt(&app.encrypt_key, encrypted).map_err(|_| Refusal::Undecryptable)?;
            let envelope: Value = serde_json::from_str(&plaintext).map_err(|_| Refusal::Malformed)?;
            (plaintext, envelope)
        }
        Some(_) => return Err(Refusal::Malformed),
        None => (String::from_utf8(payload.to_vec()).map_err(|_| Refusal::Malformed)?, outer),
    };
    if !envelope.is_object() {
        return Err(Refusal::Malformed);
    }
    let (event_id, event_type, token) = identity(&envelope);
    if token.is_some_and(|t| !constant_time_eq(t.as_bytes(), app.verification_token.as_bytes())) {
        return Err(Refusal::BadToken);
    }
    let (Some(event_id), Some(event_type)) = (event_id, event_type) else {
        return Err(Refusal::Malformed);
    };
    Ok(Verified::Event {
        event_id: event_id.to_owned(),
        event_type: event_type.to_owned(),
        plaintext,
        envelope,
    })
}

/// What the webhook answers.
#[derive(Debug, Clone, PartialEq)]
pub enum PushAnswer {
    /// 200 with this JSON.
    Ok(Value),
    /// Refused (4xx).
    Refused(Refusal),
    /// Could not store it (5xx: Feishu retries later).
    Unavailable,
}

/// How long a seen `event_id` is remembered in Redis (Feishu retries for ~7 h).
const DEDUPE_TTL_S: u64 = 24 * 3600;

impl Feishu {
    /// Handles one push for `app_id`: verify, de-duplicate, store, answer;
    /// processing continues in the background after the answer.
    pub async fn receive_push(
        self: &std::sync::Arc<Self>,
        app_id: &str,
        headers: &SignatureHeaders,
        body: &[u8],
    ) -> PushAnswer {
        let answer = self.receive_inner(app_id, headers, body).await;
        match &answer {
            PushAnswer::Refused(r) => {
                FeishuStats::inc(&self.stats.events_refused, r.reason());
                let app: String = app_id.chars().filter(|c| c.is_ascii_graphic()).take(64).collect();
                tracing::warn!(app = %app, reason = r.reason(), "Feishu push refused");
            }
            PushAnswer::Unavailable => FeishuStats::inc(&self.stats.events_refused, "unavailable"),
            PushAnswer::Ok(_) => {}
        }
        answer
    }

    async fn receive_inner(
        self: &std::sync::Arc<Self>,
        app_id: &str,
        headers: &SignatureHeaders,
        body: &[u8],
    ) -> PushAnswer {
        if !crate::store::feishu_apps::valid_app_id(app_id) {
            return PushAnswer::Refused(Refusal::UnknownApp);
        }
        let app = match self.enabled_app(app_id).await {
            Ok(a) => a,
            Err(answer) => return answer,
        };
        let verified = match verify_push(&app, headers, body, now_s(), self.config.feishu.event_max_age) {
            Ok(v) => v,
            Err(r) => return PushAnswer::Refused(r),
        };
        self.accept(&app, verified).await
    }

    /// Handles one event that arrived over the long connection for `app_id`:
    /// the same de-duplication, storage and processing as a webhook push.
    pub async fn receive_long_connection(
        self: &std::sync::Arc<Self>,
        app_id: &str,
        payload: &[u8],
    ) -> PushAnswer {
        let answer = match self.enabled_app(app_id).await {
            Ok(app) => match verify_long_connection(&app, payload) {
                Ok(verified) => self.accept(&app, verified).await,
                Err(r) => PushAnswer::Refused(r),
            },
            Err(answer) => answer,
        };
        match &answer {
            PushAnswer::Refused(r) => {
                FeishuStats::inc(&self.stats.events_refused, r.reason());
                tracing::warn!(app = %app_id, reason = r.reason(), "Feishu long-connection event refused");
            }
            PushAnswer::Unavailable => FeishuStats::inc(&self.stats.events_refused, "unavailable"),
            PushAnswer::Ok(_) => {}
        }
        answer
    }

    async fn enabled_app(&self, app_id: &str) -> Result<FeishuApp, PushAnswer> {
        match self.store.feishu_app(app_id, &self.config.secrets).await {
            Ok(Some(a)) if a.enabled => Ok(a),
            Ok(_) => Err(PushAnswer::Refused(Refusal::UnknownApp)),
            Err(e) => {
                tracing::warn!("Feishu event: reading the app: {e}");
                Err(PushAnswer::Unavailable)
            }
        }
    }

    /// A verified push or long-connection event: de-duplicate, store durably,
    /// answer; card callbacks are answered with their card.
    async fn accept(self: &std::sync::Arc<Self>, app: &FeishuApp, verified: Verified) -> PushAnswer {
        let (event_id, event_type, plaintext, envelope) = match verified {
            Verified::Challenge(c) => {
                tracing::info!(app = %app.app_id, "url_verification answered");
                return PushAnswer::Ok(json!({"challenge": c}));
            }
            Verified::Event { event_id, event_type, plaintext, envelope } => {
                (event_id, event_type, plaintext, envelope)
            }
        };
        // Fast path across instances: Redis SET NX. Its answer is only a
        // shortcut: the database insert below decides.
        let dedupe_key = format!("{}:event:{}:{event_id}", self.redis_prefix(), app.app_id);
        let claimed_in_redis = match &self.redis {
            Some(redis) => {
                let k = dedupe_key.clone();
                let r: Result<Option<String>, _> = redis
                    .run(|mut c| async move {
                        redis::cmd("SET")
                            .arg(k)
                            .arg("1")
                            .arg("NX")
                            .arg("EX")
                            .arg(DEDUPE_TTL_S)
                            .query_async(&mut c)
                            .await
                    })
                    .await;
                match r {
                    Ok(Some(_)) => true,
                    Ok(None) => return PushAnswer::Refused(Refusal::Replayed),
                    Err(_) => false,
                }
            }
            None => false,
        };
        let stored = StoredEvent {
            app_id: app.app_id.clone(),
            event_id: event_id.clone(),
            event_type: event_type.clone(),
            payload: plaintext,
        };
        match self.store.insert_feishu_event(&stored).await {
            Ok(true) => {}
            Ok(false) => return PushAnswer::Refused(Refusal::Replayed),
            Err(e) => {
                tracing::warn!(app = %app.app_id, "webhook: storing an event failed ({e}); Feishu will retry");
                if claimed_in_redis {
                    // Let the retry through.
                    if let Some(redis) = &self.redis {
                        let _ = redis
                            .run(|mut c| async move {
                                redis::cmd("DEL").arg(dedupe_key).query_async::<i64>(&mut c).await
                            })
                            .await;
                    }
                }
                return PushAnswer::Unavailable;
            }
        }
        FeishuStats::inc(&self.stats.events_accepted, &event_type);
        tracing::debug!(app = %app.app_id, event_id = %event_id, event_type = %event_type, "event stored");
        // Card callbacks must answer with the card, so they are handled
        // before the 200 (quickly: one row read and update).
        if event_type == "card.action.trigger" {
            let response = self.handle_card_action(&envelope).await;
            let _ = self.store.mark_feishu_event_processed(&app.app_id, &event_id, "").await;
            return PushAnswer::Ok(response);
        }
        let me = self.clone();
        tokio::spawn(async move { me.process_event(stored).await });
        PushAnswer::Ok(json!({"msg": "success"}))
    }

    /// Processes one stored event and marks it processed. Event types this
    /// issue has no consumer for (recordings, documents) are kept for the
    /// modules that handle them and marked as such.
    pub async fn process_event(&self, e: StoredEvent) {
        let outcome = match e.event_type.as_str() {
            "card.action.trigger" => {
                let envelope: Value = serde_json::from_str(&e.payload).unwrap_or(Value::Null);
                self.handle_card_action(&envelope).await;
                String::new()
            }
            recordings::meeting::MEETING_ENDED | recordings::meeting::RECORDING_READY => {
                self.on_meeting_event(&e).await
            }
            other => {
                tracing::debug!(event_type = other, "event stored for its module");
                String::new()
            }
        };
        if let Err(err) = self.store.mark_feishu_event_processed(&e.app_id, &e.event_id, &outcome).await {
            tracing::warn!(event_id = %e.event_id, "marking an event processed: {err}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feishu::crypto::encrypt;

    const EK: &str = "kudosEncryptKey-2026";
    const VT: &str = "vtok_kudos_test_0001";
    const A_BODY: &str = include_str!("testdata/vector_a_body.json");
    const A_SIG: &str = "ccb1b8383fb37649d9f4cb052aefa347f8bd2dcf1119cea8741ac4dd820f80e8";
    const B_BODY: &str = r#"{"encrypt":"AAECAwQFBgcICQoLDA0ODx0lnRNjoF80a4HmN4U/QBrO4VQyPFzcG303RdT3DDSXqxRgKGOdX7Lx3oHE2neLlySSl33qtGP+rwQ03ymi5QZVHpGf5+v02jDCIV715PhBHx6hVhaEPAZOTIoqN2dZ+A=="}"#;

    fn app() -> FeishuApp {
        FeishuApp {
            app_id: "cli_a1b2c3d4e5f6a7b8".into(),
            app_secret: "s".into(),
            encrypt_key: EK.into(),
            verification_token: VT.into(),
            base_url: "http://x".into(),
            enabled: true,
        }
    }

    fn headers(ts: &str, sig: &str) -> SignatureHeaders {
        SignatureHeaders {
            timestamp: Some(ts.into()),
            nonce: Some("a1b2c3d4e5".into()),
            signature: Some(sig.into()),
        }
    }

    const MAX: Duration = Duration::from_secs(300);

    #[test]
    fn vector_a_is_accepted() {
        let v = verify_push(&app(), &headers("1763707200", A_SIG), A_BODY.trim().as_bytes(), 1763707260, MAX)
            .unwrap();
        let Verified::Event { event_id, event_type, envelope, .. } = v else { panic!("{v:?}") };
        assert_eq!(event_id, "5e3702a84e847582be8db7fb73283c02");
        assert_eq!(event_type, "vc.meeting.all_meeting_ended_v1");
        assert_eq!(envelope["event"]["meeting"]["topic"], "Weekly sync");
    }

    #[test]
    fn vector_b_answers_the_challenge_signed_or_not() {
        let want = Verified::Challenge("ajls384kdjx98XX".into());
        let sig = "2e000bf0d286a39c8fed8ea87127e1ac209300a509f115f4ac96171d9906465d";
        assert_eq!(
            verify_push(&app(), &headers("1763707200", sig), B_BODY.as_bytes(), 0, MAX),
            Ok(want.clone())
        );
        assert_eq!(verify_push(&app(), &SignatureHeaders::default(), B_BODY.as_bytes(), 0, MAX), Ok(want));
        assert_eq!(
            verify_push(&app(), &headers("1763707200", A_SIG), B_BODY.as_bytes(), 0, MAX),
            Err(Refusal::BadSignature)
        );
    }

    #[test]
    fn every_refusal() {
        let a = app();
        let body = A_BODY.trim().as_bytes();
        let now = 1763707260;
        let check = |h: &SignatureHeaders, b: &[u8], now: i64| verify_push(&a, h, b, now, MAX).unwrap_err();
        assert_eq!(check(&headers("1763707200", &"0".repeat(64)), body, now), Refusal::BadSignature);
        assert_eq!(check(&SignatureHeaders::default(), body, now), Refusal::Unsigned);
        assert_eq!(check(&headers("1763707200", A_SIG), body, now + 3600), Refusal::Stale);
        assert_eq!(check(&headers("1763707200", A_SIG), b"{not json", now), Refusal::Malformed);
        assert_eq!(check(&headers("1763707200", A_SIG), b"[1]", now), Refusal::Malformed);
        // A plaintext push (even correctly signed) is refused.
        let plain = br#"{"schema":"2.0","header":{"event_id":"e","event_type":"t","token":"vtok_kudos_test_0001"},"event":{}}"#;
        let sig = signature("1763707200", "a1b2c3d4e5", EK, plain);
        assert_eq!(check(&headers("1763707200", &sig), plain, now), Refusal::NotEncrypted);
        // Wrong token, and no token, correctly encrypted and signed.
        for token in [Some("wrong"), None] {
            let mut env = json!({"schema":"2.0","header":{"event_id":"e1","event_type":"t"},"event":{}});
            if let Some(t) = token {
                env["header"]["token"] = json!(t);
            }
            let body = json!({"encrypt": encrypt(EK, env.to_string().as_bytes())}).to_string();
            let sig = signature("1763707200", "n", EK, body.as_bytes());
            let h = SignatureHeaders {
                timestamp: Some("1763707200".into()),
                nonce: Some("n".into()),
                signature: Some(sig),
            };
            assert_eq!(check(&h, body.as_bytes(), now), Refusal::BadToken);
        }
        // Encrypted with another key.
        let body = json!({"encrypt": encrypt("other", b"{}")}).to_string();
        let sig = signature("1763707200", "n", EK, body.as_bytes());
        let h = SignatureHeaders {
            timestamp: Some("1763707200".into()),
            nonce: Some("n".into()),
            signature: Some(sig),
        };
        assert!(matches!(check(&h, body.as_bytes(), now), Refusal::Undecryptable | Refusal::Malformed));
    }
}
