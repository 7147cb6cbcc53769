//! `ui_users`, `ui_user_corps` and `ui_sessions`: who may use the archive
//! browser, which corps an auditor was granted, and live sessions.
//!
//! Passwords arrive here already hashed (argon2, [`crate::archive::accounts`]);
//! session tokens arrive as their sha256, so a database dump yields neither.

use mysql_async::prelude::*;

use super::{Store, StoreError};

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, every corp, the access log.
    Admin,
    /// Read and export the granted corps.
    Auditor,
}

impl Role {
    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Auditor => "auditor",
        }
    }

    /// Parses the stored text.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "auditor" => Some(Role::Auditor),
            _ => None,
        }
    }
}

/// One account.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct User {
    /// Row id.
    pub id: u64,
    /// Login name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Corps granted (auditors; admins see all).
    pub corps: Vec<String>,
}

impl User {
    /// Whether this user may read `corpid`.
    pub fn may_read(&self, corpid: &str) -> bool {
        self.role == Role::Admin || self.corps.iter().any(|c| c == corpid)
    }
}

/// A live session and its user.
#[derive(Debug, Clone)]
pub struct Session {
    /// The user.
    pub user: User,
    /// The CSRF token forms must echo.
    pub csrf: String,
}

impl Store {
    /// Creates or replaces an account (same name: new hash and role, grants replaced).
    pub async fn upsert_user(
        &self,
        name: &str,
        password_hash: &str,
        role: Role,
        corps: &[String],
    ) -> Result<u64, StoreError> {
        let mut conn = self.conn().await?;
        let mut tx = conn.start_transaction(mysql_async::TxOpts::default()).await?;
        tx.exec_drop(
            "INSERT INTO ui_users (name, password_hash, role) VALUES (?, ?, ?)
             ON DUPLICATE KEY UPDATE password_hash = VALUES(password_hash), role = VALUES(role)",
            (name, password_hash, role.as_str()),
        )
        .await?;
        let id: u64 = tx.exec_first("SELECT id FROM ui_users WHERE name = ?", (name,)).await?.unwrap_or(0);
        tx.exec_drop("DELETE FROM ui_user_corps WHERE user_id = ?", (id,)).await?;
        for c in corps {
            tx.exec_drop(
                "INSERT IGNORE INTO ui_user_corps (user_id, corpid) VALUES (?, ?)",
                (id, c.as_str()),
            )
            .await?;
        }
        // A changed password or role ends the account's sessions.
        tx.exec_drop("DELETE FROM ui_sessions WHERE user_id = ?", (id,)).await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Removes an account, its grants and sessions. False when there was none.
    pub async fn remove_user(&self, name: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn().await?;
        let id: Option<u64> = conn.exec_first("SELECT id FROM ui_users WHERE name = ?", (name,)).await?;
        let Some(id) = id else { return Ok(false) };
        conn.exec_drop("DELETE FROM ui_sessions WHERE user_id = ?", (id,)).await?;
        conn.exec_drop("DELETE FROM ui_user_corps WHERE user_id = ?", (id,)).await?;
        conn.exec_drop("DELETE FROM ui_users WHERE id = ?", (id,)).await?;
        Ok(true)
    }

    /// Every account, by name.
    pub async fn users(&self) -> Result<Vec<User>, StoreError> {
        let mut conn = self.conn().await?;
        let rows: Vec<(u64, String, String)> =
            conn.query("SELECT id, name, role FROM ui_users ORDER BY name").await?;
        let grants: Vec<(u64, String)> =
            conn.query("SELECT user_id, corpid FROM ui_user_corps ORDER BY corpid").await?;
        Ok(rows
            .into_iter()
            .filter_map(|(id, name, role)| {
                let corps = grants.iter().filter(|(u, _)| *u == id).map(|(_, c)| c.clone()).collect();
                Some(User { id, name, role: Role::parse(&role)?, corps })
            })
            .collect())
    }

    /// An account and its password hash, for a login.
    pub async fn user_for_login(&self, name: &str) -> Result<Option<(User, String)>, StoreError> {
        let mut conn = self.conn().await?;
        let row: Option<(u64, String, String)> =
            conn.exec_first("SELECT id, role, password_hash FROM ui_users WHERE name = ?", (name,)).await?;
        let Some((id, role, hash)) = row else { return Ok(None) };
        let Some(role) = Role::parse(&role) else { return Ok(None) };
        let corps =
            conn.exec("SELECT corpid FROM ui_user_corps WHERE user_id = ? ORDER BY corpid", (id,)).await?;
        Ok(Some((User { id, name: name.to_owned(), role, corps }, hash)))
    }

    /// Stores a new session.
    pub async fn create_session(
        &self,
        token_hash: &str,
        user_id: u64,
        csrf: &str,
        remote: &str,
        ttl_secs: u64,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        conn.exec_drop("DELETE FROM ui_sessions WHERE expires_at < NOW(3)", ()).await?;
        conn.exec_drop(
            "INSERT INTO ui_sessions (token_hash, user_id, csrf, remote, expires_at)
             VALUES (?, ?, ?, ?, NOW(3) + INTERVAL ? SECOND)",
            (token_hash, user_id, csrf, remote, ttl_secs),
        )
        .await?;
        Ok(())
    }

    /// The live (unexpired) session with this token hash.
    pub async fn session(&self, token_hash: &str) -> Result<Option<Session>, StoreError> {
        let mut conn = self.conn().await?;
        let row: Option<(u64, String, String, String)> = conn
            .exec_first(
                "SELECT u.id, u.name, u.role, s.csrf FROM ui_sessions s JOIN ui_users u ON u.id = s.user_id
                 WHERE s.token_hash = ? AND s.expires_at > NOW(3)",
                (token_hash,),
            )
            .await?;
        let Some((id, name, role, csrf)) = row else { return Ok(None) };
        let Some(role) = Role::parse(&role) else { return Ok(None) };
        let corps =
            conn.exec("SELECT corpid FROM ui_user_corps WHERE user_id = ? ORDER BY corpid", (id,)).await?;
        Ok(Some(Session { user: User { id, name, role, corps }, csrf }))
    }

    /// Ends a session.
    pub async fn delete_session(&self, token_hash: &str) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        conn.exec_drop("DELETE FROM ui_sessions WHERE token_hash = ?", (token_hash,)).await?;
        Ok(())
    }
}
