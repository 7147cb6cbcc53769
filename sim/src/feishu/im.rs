//! IM messages and interactive cards (API.md §8): sends and card updates are recorded for
//! `GET /_sim/messages`; `/_sim/card-actions` delivers `card.action.trigger`.
//!
//! Codes the fake picks where API.md has none: 230013 for a receiver not in the tenant, 230011 for
//! an unknown message, 230099 for a card update that breaks the `update_multi` rule.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use serde_json::{Value, json};

use super::auth::{Accept, Caller, check};
use super::server::{ApiError, ApiResult, ok};
use super::state::{App, now_ms};

/// Card/post content limit.
const CARD_MAX: usize = 30 * 1024;
/// Text content limit.
const TEXT_MAX: usize = 150 * 1024;
/// How long a `uuid` deduplicates sends.
const UUID_WINDOW_MS: u64 = 3_600_000;

/// One sent message with its card updates.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Sent {
    pub message_id: String,
    pub receive_id_type: String,
    pub receive_id: String,
    pub msg_type: String,
    pub content: String,
    pub updates: Vec<String>,
    #[serde(skip)]
    pub chat_id: String,
    #[serde(skip)]
    pub create_ms: u64,
    #[serde(skip)]
    pub update_ms: u64,
    #[serde(skip)]
    pub uuid: Option<String>,
    #[serde(skip)]
    pub sender: Caller,
}

/// Every message the app sent.
#[derive(Debug, Default)]
pub(crate) struct Messages {
    pub sent: Vec<Sent>,
}

impl Messages {
    pub fn find_mut(&mut self, message_id: &str) -> Option<&mut Sent> {
        self.sent.iter_mut().find(|m| m.message_id == message_id)
    }
}

fn message_json(app: &App, m: &Sent) -> Value {
    let sender = match &m.sender {
        Caller::Tenant => {
            json!({"id": app.world.app_id, "id_type": "app_id", "sender_type": "app", "tenant_key": app.world.tenant_key})
        }
        Caller::User(o) => {
            json!({"id": o, "id_type": "open_id", "sender_type": "user", "tenant_key": app.world.tenant_key})
        }
    };
    json!({
        "message_id": m.message_id, "root_id": "", "parent_id": "", "thread_id": "", "msg_type": m.msg_type,
        "create_time": m.create_ms.to_string(), "update_time": m.update_ms.to_string(), "deleted": false,
        "updated": !m.updates.is_empty(), "chat_id": m.chat_id, "sender": sender,
        "body": {"content": m.content}, "mentions": [],
    })
}

/// Whether a card's `config.update_multi` is true (a shared card, the only kind PATCH updates).
fn update_multi(content: &str) -> bool {
    serde_json::from_str::<Value>(content).ok().is_some_and(|c| c["config"]["update_multi"] == json!(true))
}

/// Validates `content` for `msg_type`.
fn check_content(msg_type: &str, content: &str) -> Result<(), ApiError> {
    let parsed: Value = serde_json::from_str(content).map_err(|_| {
        ApiError::bad(230001, "Your request contains an invalid request parameter: content is not JSON")
    })?;
    let max = if msg_type == "text" { TEXT_MAX } else { CARD_MAX };
    if content.len() > max {
        return Err(ApiError::bad(
            230022,
            format!("The content of the message exceeds the limit of {max} bytes"),
        ));
    }
    match msg_type {
        "text" if parsed["text"].is_string() => Ok(()),
        "interactive" if parsed.is_object() => Ok(()),
        "post" | "image" | "file" | "audio" | "media" | "sticker" | "share_chat" | "share_user"
            if parsed.is_object() =>
        {
            Ok(())
        }
        _ => Err(ApiError::bad(
            230001,
            format!("Your request contains an invalid request parameter: content for msg_type {msg_type:?}"),
        )),
    }
}

/// `POST /open-apis/im/v1/messages?receive_id_type=…`.
pub(crate) async fn send(
    State(app): State<App>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> ApiResult {
    let mut inner = app.lock();
    let caller = check(&app, &mut inner, &headers, Accept::TenantOrUser)?;
    let id_type = q.get("receive_id_type").map(String::as_str).unwrap_or("");
    if !["open_id", "user_id", "union_id", "email", "chat_id"].contains(&id_type) {
        return Err(ApiError::bad(99992402, "field validation failed: receive_id_type"));
    }
    let b: Value = serde_json::from_slice(&body)
        .map_err(|_| ApiError::bad(99992402, "field validation failed: body is not JSON"))?;
    let (receive_id, msg_type, content) =
        match (b["receive_id"].as_str(), b["msg_type"].as_str(), b["content"].as_str()) {
            (Some(r), Some(t), Some(c)) => (r.to_string(), t.to_string(), c.to_string()),
            _ => {
                return Err(ApiError::bad(
                    99992402,
                    "field validation failed: receive_id, msg_type and content (a string) are required",
                ));
            }
        };
    let user = app.world.users.iter().find(|u| match id_type {
        "open_id" => u.open_id == receive_id,
        "user_id" => u.user_id == receive_id,
        "union_id" => u.union_id == receive_id,
        "email" => u.email == receive_id,
        _ => false,
    });
    if user.is_none() && id_type != "chat_id" {
        return Err(ApiError::bad(230013, "Bot has NO availability to this user."));
    }
    check_content(&msg_type, &content)?;
    let uuid = b["uuid"].as_str().map(str::to_string);
    let now = now_ms();
    if let Some(u) = &uuid
        && let Some(prev) =
            inner.im.sent.iter().find(|m| m.uuid.as_ref() == Some(u) && now - m.create_ms < UUID_WINDOW_MS)
    {
        return Ok(ok(message_json(&app, prev)));
    }
    inner.limits.admit_keyed("POST /open-apis/im/v1/messages", &receive_id, 5)?;
    let message_id = format!("om_{}", inner.hex(32));
    let chat_id = if id_type == "chat_id" { receive_id.clone() } else { format!("oc_{}", inner.hex(32)) };
    let m = Sent {
        message_id,
        receive_id_type: id_type.to_string(),
        receive_id,
        msg_type,
        content,
        updates: Vec::new(),
        chat_id,
        create_ms: now,
        update_ms: now,
        uuid,
        sender: caller,
    };
    let out = message_json(&app, &m);
    inner.im.sent.push(m);
    Ok(ok(out))
}

/// `PATCH /open-apis/im/v1/messages/:message_id`: a shared card's new content.
pub(crate) async fn patch_card(
    State(app): State<App>,
    headers: HeaderMap,
    Path(message_id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let mut inner = app.lock();
    let caller = check(&app, &mut inner, &headers, Accept::TenantOrUser)?;
    let b: Value = serde_json::from_slice(&body)
        .map_err(|_| ApiError::bad(99992402, "field validation failed: body is not JSON"))?;
    let content = b["content"]
        .as_str()
        .ok_or_else(|| ApiError::bad(99992402, "field validation failed: content (a string) is required"))?
        .to_string();
    inner.limits.admit_keyed("PATCH /open-apis/im/v1/messages/:message_id", &message_id, 5)?;
    let m = inner
        .im
        .find_mut(&message_id)
        .ok_or_else(|| ApiError::bad(230011, "The message was not found or has been recalled."))?;
    if m.msg_type != "interactive" {
        return Err(ApiError::bad(230001, "Only interactive (card) messages can be updated with PATCH"));
    }
    if m.sender != caller {
        return Err(ApiError::bad(230001, "The message can only be updated by the identity that sent it"));
    }
    if now_ms() - m.create_ms > 14 * 86_400_000 {
        return Err(ApiError::bad(230001, "Messages older than 14 days cannot be updated"));
    }
    check_content("interactive", &content)?;
    let current = m.updates.last().unwrap_or(&m.content);
    if !update_multi(current) || !update_multi(&content) {
        return Err(ApiError::bad(
            230099,
            "Card content failed: config.update_multi must be true before and after the update",
        ));
    }
    m.updates.push(content);
    m.update_ms = now_ms();
    Ok(ok(json!({})))
}

/// `/_sim/card-actions`: delivers the click, records a card the answer replaces.
pub(crate) async fn card_action(
    app: &App,
    message_id: &str,
    open_id: &str,
    value: Value,
) -> Result<Value, String> {
    let event = {
        let mut inner = app.lock();
        let chat_id = inner
            .im
            .find_mut(message_id)
            .ok_or_else(|| format!("no message {message_id:?}"))?
            .chat_id
            .clone();
        let user = app.world.user(open_id).ok_or_else(|| format!("no user {open_id:?}"))?;
        let token = format!("c-{}", inner.hex(32));
        let event = json!({
            "operator": {"tenant_key": app.world.tenant_key, "user_id": user.user_id, "open_id": user.open_id, "union_id": user.union_id},
            "token": token,
            "action": {"value": value, "tag": "button"},
            "host": "im_message",
            "context": {"open_message_id": message_id, "open_chat_id": chat_id},
        });
        event
    };
    let answer = super::events::card_action(app, event).await?;
    if answer["card"]["type"] == json!("raw") && answer["card"]["data"].is_object() {
        let mut inner = app.lock();
        if let Some(m) = inner.im.find_mut(message_id) {
            m.updates.push(answer["card"]["data"].to_string());
            m.update_ms = now_ms();
        }
    }
    Ok(answer)
}

/// `GET /_sim/messages`.
pub(crate) fn all(app: &App) -> Value {
    json!({"messages": app.lock().im.sent})
}
