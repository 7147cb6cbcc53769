//! Card authorization (issue 12, item 6): an interactive card asks a person
//! to authorize; its button opens `/auth/start?session=…` in the browser, a
//! second button declines (a `card.action.trigger` callback). The session
//! lives in MySQL (pending → completed | rejected | expired) and the card is
//! PATCHed to say how it ended. Cards carry `"update_multi": true`, which
//! Feishu requires before and after an update (API.md §8.2).

use reqwest::Method;
use serde_json::{Value, json};

use super::client::{ApiRequest, Auth, str_field};
use super::{Feishu, FeishuError, now_s};
use crate::store::feishu_auth_sessions::{AuthSession, SessionState};

/// `value.action` of the decline button.
pub const DECLINE_ACTION: &str = "decline_authorization";

/// The send route.
pub const SEND_ROUTE: &str = "POST /open-apis/im/v1/messages";
/// The update route.
pub const PATCH_ROUTE: &str = "PATCH /open-apis/im/v1/messages/:message_id";

/// The card asking for authorization.
pub fn request_card(start_url: &str, session_id: &str) -> Value {
    json!({
        "config": {"update_multi": true, "wide_screen_mode": true},
        "header": {"template": "blue", "title": {"tag": "plain_text", "content": "Authorize the archive"}},
        "elements": [
            {"tag": "div", "text": {"tag": "lark_md", "content":
                "The compliance archive needs your authorization to back up your meeting recordings and documents."}},
            {"tag": "action", "actions": [
                {"tag": "button", "type": "primary", "text": {"tag": "plain_text", "content": "Authorize"},
                 "url": start_url, "multi_url": {"url": start_url, "pc_url": start_url, "android_url": start_url, "ios_url": start_url}},
                {"tag": "button", "type": "default", "text": {"tag": "plain_text", "content": "Decline"},
                 "value": {"action": DECLINE_ACTION, "session": session_id}}
            ]}
        ]
    })
}

/// The card after the session ended.
pub fn outcome_card(state: SessionState) -> Value {
    let (template, title, text) = match state {
        SessionState::Completed => ("green", "Authorized", "Thank you: the archive is authorized."),
        SessionState::Rejected => {
            ("grey", "Declined", "You declined the authorization. Nothing will be backed up.")
        }
        SessionState::Expired => ("grey", "Expired", "This authorization request has expired."),
        SessionState::Pending => ("blue", "Authorize the archive", "Waiting for your answer."),
    };
    json!({
        "config": {"update_multi": true, "wide_screen_mode": true},
        "header": {"template": template, "title": {"tag": "plain_text", "content": title}},
        "elements": [{"tag": "div", "text": {"tag": "lark_md", "content": text}}]
    })
}

impl Feishu {
    /// Opens a session and sends the card; returns the session.
    pub async fn send_auth_card(&self, app_id: &str, open_id: &str) -> Result<AuthSession, FeishuError> {
        let app = self.app(app_id).await?;
        let id = super::crypto::random_token(18);
        let expires_at = now_s() + self.config.feishu.auth_session_ttl.as_secs() as i64;
        self.store.create_auth_session(&id, &app.app_id, open_id, expires_at).await?;
        let mut start = reqwest::Url::parse(&format!("{}/auth/start", self.config.public_url))
            .map_err(|e| FeishuError::Invalid(format!("PUBLIC_URL: {e}")))?;
        start
            .query_pairs_mut()
            .append_pair("app_id", &app.app_id)
            .append_pair("open_id", open_id)
            .append_pair("session", &id);
        let content = request_card(start.as_str(), &id).to_string();
        let answer = self
            .call_as_app(&app, |token| {
                ApiRequest::new(
                    Method::POST,
                    &app.base_url,
                    SEND_ROUTE,
                    "/open-apis/im/v1/messages",
                    Auth::Bearer(token.into()),
                )
                .query("receive_id_type", "open_id")
                .json(
                    json!({"receive_id": open_id, "msg_type": "interactive", "content": content, "uuid": id}),
                )
            })
            .await?;
        let message_id = answer
            .get("data")
            .and_then(|d| str_field(d, "message_id"))
            .ok_or_else(|| FeishuError::Malformed { route: SEND_ROUTE, what: "no data.message_id".into() })?;
        self.store.set_auth_session_message(&id, &message_id).await?;
        tracing::info!(app = %app.app_id, open_id, session = %id, "authorization card sent");
        Ok(self.store.auth_session(&id).await?.expect("just created"))
    }

    /// The person's live authorization card, sent now only when they have
    /// none: every need of an authorization (a refused refresh, a recording
    /// job waiting for its owner) asks once. The check and the send hold a
    /// Redis lock per person, so two instances or two jobs that notice the
    /// need together still send one card. `.1` is true when this call sent it.
    pub async fn ensure_auth_card(
        &self,
        app_id: &str,
        open_id: &str,
    ) -> Result<(AuthSession, bool), FeishuError> {
        let lock = format!("{}:auth-card:{app_id}:{open_id}", self.redis_prefix());
        let owner = super::crypto::random_token(12);
        let held = self.take_lock(&lock, &owner, std::time::Duration::from_secs(15)).await;
        let result = async {
            if let Some(live) = self.store.live_auth_session(app_id, open_id, now_s()).await? {
                return Ok((live, false));
            }
            Ok((self.send_auth_card(app_id, open_id).await?, true))
        }
        .await;
        if held {
            self.release_lock(&lock, &owner).await;
        }
        result
    }

    /// Ends a pending session and updates its card; logs instead of failing
    /// (the person's authorization itself already succeeded or failed).
    pub async fn close_session(&self, session_id: &str, to: SessionState, reason: &str) {
        match self.store.finish_auth_session(session_id, to, reason).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                tracing::warn!(session = session_id, "closing an authorization session: {e}");
                return;
            }
        }
        if let Err(e) = self.update_session_card(session_id, to).await {
            tracing::warn!(session = session_id, "updating the authorization card: {e}");
        }
    }

    /// PATCHes a session's card to show `state`.
    pub async fn update_session_card(
        &self,
        session_id: &str,
        state: SessionState,
    ) -> Result<(), FeishuError> {
        let Some(session) = self.store.auth_session(session_id).await? else { return Ok(()) };
        if session.message_id.is_empty() {
            return Ok(());
        }
        let app = self.app(&session.app_id).await?;
        let content = outcome_card(state).to_string();
        let path = format!("/open-apis/im/v1/messages/{}", session.message_id);
        self.call_as_app(&app, |token| {
            ApiRequest::new(
                Method::PATCH,
                &app.base_url,
                PATCH_ROUTE,
                path.clone(),
                Auth::Bearer(token.into()),
            )
            .json(json!({"content": content}))
        })
        .await?;
        Ok(())
    }

    /// Handles a `card.action.trigger` event; returns the callback answer
    /// (`{}` = no change, or a toast and the replacement card).
    pub async fn handle_card_action(&self, envelope: &Value) -> Value {
        let event = envelope.get("event").cloned().unwrap_or(Value::Null);
        let value = event.pointer("/action/value").cloned().unwrap_or(Value::Null);
        let action = value.get("action").and_then(Value::as_str).unwrap_or("");
        let Some(session_id) = value.get("session").and_then(Value::as_str) else { return json!({}) };
        if action != DECLINE_ACTION {
            return json!({});
        }
        let operator = event.pointer("/operator/open_id").and_then(Value::as_str).unwrap_or("");
        let session = match self.store.auth_session(session_id).await {
            Ok(Some(s)) => s,
            _ => return json!({"toast": {"type": "error", "content": "Unknown authorization request"}}),
        };
        if session.open_id != operator {
            return json!({"toast": {"type": "error", "content": "This request is for someone else"}});
        }
        if session.state != SessionState::Pending {
            return json!({"toast": {"type": "info", "content": "Already answered"},
                          "card": {"type": "raw", "data": outcome_card(session.state)}});
        }
        match self.store.finish_auth_session(session_id, SessionState::Rejected, "declined on the card").await
        {
            Ok(_) => {
                super::FeishuStats::inc(&self.stats.auth_failure, "rejected");
                tracing::info!(session = session_id, "authorization declined on the card");
                json!({"toast": {"type": "info", "content": "Declined"},
                       "card": {"type": "raw", "data": outcome_card(SessionState::Rejected)}})
            }
            Err(e) => {
                tracing::warn!(session = session_id, "declining a session: {e}");
                json!({"toast": {"type": "error", "content": "Please try again"}})
            }
        }
    }

    /// Expires pending sessions past their time and updates their cards.
    pub async fn expire_sessions(&self) -> Result<usize, FeishuError> {
        let expired = self.store.expire_auth_sessions(now_s()).await?;
        for s in &expired {
            if let Err(e) = self.update_session_card(&s.id, SessionState::Expired).await {
                tracing::warn!(session = %s.id, "updating an expired card: {e}");
            }
        }
        Ok(expired.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cards_allow_updates_and_carry_the_session() {
        let c = request_card("http://x/auth/start?session=S", "S");
        assert_eq!(c["config"]["update_multi"], true);
        let actions = c["elements"][1]["actions"].as_array().unwrap();
        assert_eq!(actions[0]["url"], "http://x/auth/start?session=S");
        assert_eq!(actions[1]["value"]["session"], "S");
        for s in [SessionState::Completed, SessionState::Rejected, SessionState::Expired] {
            assert_eq!(outcome_card(s)["config"]["update_multi"], true);
        }
        assert_eq!(outcome_card(SessionState::Completed)["header"]["title"]["content"], "Authorized");
    }
}
