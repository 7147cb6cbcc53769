//! `access_log`: every view of a conversation, search, export and login, with
//! who, what, when and from where. Appended to only; admins read it in the UI.

use mysql_async::prelude::*;

use super::{Store, StoreError};

/// One access.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Access {
    /// When (UTC, as stored).
    pub at: String,
    /// Who (the login name, or the name tried for a failed login).
    pub user: String,
    /// What kind of access.
    pub action: String,
    /// Which corp ("" when none).
    pub corpid: String,
    /// What exactly (conversation, query, export range).
    pub target: String,
    /// From where (remote address).
    pub remote: String,
}

/// The longest `target` stored.
const TARGET_MAX: usize = 1000;

impl Store {
    /// Appends one access.
    pub async fn log_access(
        &self,
        user: &str,
        action: &str,
        corpid: &str,
        target: &str,
        remote: &str,
    ) -> Result<(), StoreError> {
        let target: String = target.chars().take(TARGET_MAX).collect();
        let mut conn = self.conn().await?;
        conn.exec_drop(
            "INSERT INTO access_log (user_name, action, corpid, target, remote) VALUES (?, ?, ?, ?, ?)",
            (user, action, corpid, target, remote),
        )
        .await?;
        Ok(())
    }

    /// The newest accesses first.
    pub async fn recent_access(&self, limit: u32) -> Result<Vec<Access>, StoreError> {
        let mut conn = self.conn().await?;
        let rows: Vec<(String, String, String, String, String, String)> = conn
            .exec(
                "SELECT DATE_FORMAT(at, '%Y-%m-%d %H:%i:%s.%f'), user_name, action, corpid, target, remote
                 FROM access_log ORDER BY id DESC LIMIT ?",
                (limit,),
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|(at, user, action, corpid, target, remote)| Access {
                at,
                user,
                action,
                corpid,
                target,
                remote,
            })
            .collect())
    }
}
