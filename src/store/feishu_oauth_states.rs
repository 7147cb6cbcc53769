//! The `feishu_oauth_states` table: OAuth `state` values (CSRF protection).
//! Each is random, bound to an app (and optionally a person and a card
//! session), expires, and is consumed exactly once.

use mysql_async::prelude::*;

use super::{Store, StoreError};

/// What a consumed state was bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthState {
    /// The app the authorization is for.
    pub app_id: String,
    /// The person the link was made for, if any.
    pub open_id: Option<String>,
    /// The card session, if the link came from a card.
    pub session_id: Option<String>,
    /// When the state stops being accepted (unix milliseconds).
    pub expires_at_ms: i64,
}

/// Why a state was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateRefusal {
    /// Never issued.
    Unknown,
    /// Already consumed (a replayed callback).
    Used,
    /// Past its expiry.
    Expired,
}

/// (app_id, open_id, session_id, expires_at, used_at as text).
type StateRow = (String, Option<String>, Option<String>, i64, Option<String>);

impl Store {
    /// Records a new state.
    pub async fn create_oauth_state(&self, state: &str, bound: &OAuthState) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        conn.exec_drop(
            "INSERT INTO feishu_oauth_states (state, app_id, open_id, session_id, expires_at) VALUES (?, ?, ?, ?, ?)",
            (state, &bound.app_id, &bound.open_id, &bound.session_id, bound.expires_at_ms),
        )
        .await?;
        Ok(())
    }

    /// Consumes a state at `now` (unix milliseconds): exactly one caller ever gets
    /// `Ok`, even when two callbacks race (the UPDATE is the arbiter).
    pub async fn consume_oauth_state(
        &self,
        state: &str,
        now: i64,
    ) -> Result<Result<OAuthState, StateRefusal>, StoreError> {
        let mut conn = self.conn().await?;
        conn.exec_drop(
            "UPDATE feishu_oauth_states SET used_at = CURRENT_TIMESTAMP(3)
             WHERE state = ? AND used_at IS NULL AND expires_at > ?",
            (state, now),
        )
        .await?;
        let won = conn.affected_rows() == 1;
        let row: Option<StateRow> = conn
            .exec_first(
                "SELECT app_id, open_id, session_id, expires_at, DATE_FORMAT(used_at, '%Y') FROM feishu_oauth_states WHERE state = ?",
                (state,),
            )
            .await?;
        Ok(match row {
            None => Err(StateRefusal::Unknown),
            Some((app_id, open_id, session_id, expires_at_ms, _)) if won => {
                Ok(OAuthState { app_id, open_id, session_id, expires_at_ms })
            }
            Some((_, _, _, _, Some(_))) => Err(StateRefusal::Used),
            Some(_) => Err(StateRefusal::Expired),
        })
    }

    /// Deletes states created more than `older_than_s` seconds ago; returns how many.
    pub async fn delete_old_oauth_states(&self, older_than_s: u64) -> Result<u64, StoreError> {
        let mut conn = self.conn().await?;
        conn.exec_drop(
            "DELETE FROM feishu_oauth_states WHERE created_at < CURRENT_TIMESTAMP(3) - INTERVAL ? SECOND",
            (older_than_s,),
        )
        .await?;
        Ok(conn.affected_rows())
    }
}
