//! The `feishu_auth_sessions` table: card authorization sessions,
//! pending → completed | rejected | expired. Transitions happen only from
//! `pending` (a late click on an old card changes nothing).

use mysql_async::prelude::*;

use super::{Store, StoreError};

/// A session's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    /// Card sent, nobody answered yet.
    Pending,
    /// The person authorized.
    Completed,
    /// The person declined (card button or authorize page).
    Rejected,
    /// Nobody answered in time.
    Expired,
}

impl SessionState {
    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionState::Pending => "pending",
            SessionState::Completed => "completed",
            SessionState::Rejected => "rejected",
            SessionState::Expired => "expired",
        }
    }

    /// From the stored text.
    pub fn parse(s: &str) -> Option<SessionState> {
        Some(match s {
            "pending" => SessionState::Pending,
            "completed" => SessionState::Completed,
            "rejected" => SessionState::Rejected,
            "expired" => SessionState::Expired,
            _ => return None,
        })
    }
}

/// One session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthSession {
    /// Random id (in the card's button URL).
    pub id: String,
    /// The app.
    pub app_id: String,
    /// The person asked.
    pub open_id: String,
    /// Where it stands.
    pub state: SessionState,
    /// The card's IM message id (empty until sent).
    pub message_id: String,
    /// Unix seconds.
    pub expires_at: i64,
}

/// Session counts for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionCounts {
    /// All rows.
    pub total: u64,
    /// Pending and not past expiry.
    pub active: u64,
    /// Expired (marked, or pending past expiry).
    pub expired: u64,
}

impl Store {
    /// Creates a pending session.
    pub async fn create_auth_session(
        &self,
        id: &str,
        app_id: &str,
        open_id: &str,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        conn.exec_drop(
            "INSERT INTO feishu_auth_sessions (id, app_id, open_id, expires_at) VALUES (?, ?, ?, ?)",
            (id, app_id, open_id, expires_at),
        )
        .await?;
        Ok(())
    }

    /// Records the card's message id.
    pub async fn set_auth_session_message(&self, id: &str, message_id: &str) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        conn.exec_drop("UPDATE feishu_auth_sessions SET message_id = ? WHERE id = ?", (message_id, id))
            .await?;
        Ok(())
    }

    /// One session.
    pub async fn auth_session(&self, id: &str) -> Result<Option<AuthSession>, StoreError> {
        let mut conn = self.conn().await?;
        let row: Option<(String, String, String, String, String, i64)> = conn
            .exec_first(
                "SELECT id, app_id, open_id, state, message_id, expires_at FROM feishu_auth_sessions WHERE id = ?",
                (id,),
            )
            .await?;
        Ok(row.map(|(id, app_id, open_id, state, message_id, expires_at)| AuthSession {
            id,
            app_id,
            open_id,
            state: SessionState::parse(&state).unwrap_or(SessionState::Expired),
            message_id,
            expires_at,
        }))
    }

    /// The newest session of a person that can still be answered at `now`:
    /// pending, not past expiry, and its card sent (a session whose card never
    /// went out asks nobody).
    pub async fn live_auth_session(
        &self,
        app_id: &str,
        open_id: &str,
        now: i64,
    ) -> Result<Option<AuthSession>, StoreError> {
        let mut conn = self.conn().await?;
        let id: Option<String> = conn
            .exec_first(
                "SELECT id FROM feishu_auth_sessions
                 WHERE app_id = ? AND open_id = ? AND state = 'pending' AND expires_at > ? AND message_id <> ''
                 ORDER BY created_at DESC LIMIT 1",
                (app_id, open_id, now),
            )
            .await?;
        drop(conn);
        match id {
            Some(id) => self.auth_session(&id).await,
            None => Ok(None),
        }
    }

    /// Moves a pending session to `to`; true when this call made the change.
    pub async fn finish_auth_session(
        &self,
        id: &str,
        to: SessionState,
        reason: &str,
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn().await?;
        let reason: String = reason.chars().take(250).collect();
        conn.exec_drop(
            "UPDATE feishu_auth_sessions SET state = ?, reason = ?, finished_at = CURRENT_TIMESTAMP(3)
             WHERE id = ? AND state = 'pending'",
            (to.as_str(), reason, id),
        )
        .await?;
        Ok(conn.affected_rows() == 1)
    }

    /// Marks pending sessions past expiry at `now` as expired; returns them
    /// (so their cards can be updated).
    pub async fn expire_auth_sessions(&self, now: i64) -> Result<Vec<AuthSession>, StoreError> {
        let mut conn = self.conn().await?;
        let ids: Vec<String> = conn
            .exec(
                "SELECT id FROM feishu_auth_sessions WHERE state = 'pending' AND expires_at <= ? LIMIT 1000",
                (now,),
            )
            .await?;
        drop(conn);
        let mut out = Vec::new();
        for id in ids {
            if self.finish_auth_session(&id, SessionState::Expired, "expired").await?
                && let Some(s) = self.auth_session(&id).await?
            {
                out.push(s);
            }
        }
        Ok(out)
    }

    /// Deletes sessions created more than `older_than_s` seconds ago that are
    /// no longer pending; returns how many.
    pub async fn delete_old_auth_sessions(&self, older_than_s: u64) -> Result<u64, StoreError> {
        let mut conn = self.conn().await?;
        conn.exec_drop(
            "DELETE FROM feishu_auth_sessions
             WHERE state <> 'pending' AND created_at < CURRENT_TIMESTAMP(3) - INTERVAL ? SECOND",
            (older_than_s,),
        )
        .await?;
        Ok(conn.affected_rows())
    }

    /// Session counts at `now`.
    pub async fn auth_session_counts(&self, now: i64) -> Result<SessionCounts, StoreError> {
        let mut conn = self.conn().await?;
        let row: Option<(u64, Option<u64>, Option<u64>)> = conn
            .exec_first(
                "SELECT COUNT(*),
                        SUM(state = 'pending' AND expires_at > ?),
                        SUM(state = 'expired' OR (state = 'pending' AND expires_at <= ?))
                 FROM feishu_auth_sessions",
                (now, now),
            )
            .await?;
        let (total, active, expired) = row.unwrap_or((0, None, None));
        Ok(SessionCounts { total, active: active.unwrap_or(0), expired: expired.unwrap_or(0) })
    }
}
