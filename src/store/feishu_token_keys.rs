//! The `feishu_token_keys` table (keys of the token hand-out, stored as
//! SHA-256 only) and `feishu_token_audit` (one row per hand-out, never the token).

use mysql_async::prelude::*;

use super::{Store, StoreError};

/// A hand-out key as listed (never the key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenKeyInfo {
    /// Name given at `token-key add`.
    pub name: String,
    /// When it was created (`YYYY-MM-DD HH:MM:SS`, database time).
    pub created_at: String,
    /// When it was revoked, if it was.
    pub revoked_at: Option<String>,
}

impl Store {
    /// Stores a new key's hash under `name`; false when the name is taken.
    pub async fn add_token_key(&self, name: &str, key_hash: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn().await?;
        conn.exec_drop(
            "INSERT INTO feishu_token_keys (name, key_hash) VALUES (?, ?) ON DUPLICATE KEY UPDATE name = name",
            (name, key_hash),
        )
        .await?;
        Ok(conn.affected_rows() == 1)
    }

    /// Every key, by name.
    pub async fn token_keys(&self) -> Result<Vec<TokenKeyInfo>, StoreError> {
        let mut conn = self.conn().await?;
        let rows: Vec<(String, String, Option<String>)> = conn
            .query(
                "SELECT name, DATE_FORMAT(created_at, '%Y-%m-%d %H:%i:%s'),
                        DATE_FORMAT(revoked_at, '%Y-%m-%d %H:%i:%s')
                 FROM feishu_token_keys ORDER BY name",
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|(name, created_at, revoked_at)| TokenKeyInfo { name, created_at, revoked_at })
            .collect())
    }

    /// Revokes a key; false when there is no such active key.
    pub async fn revoke_token_key(&self, name: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn().await?;
        conn.exec_drop(
            "UPDATE feishu_token_keys SET revoked_at = CURRENT_TIMESTAMP(3) WHERE name = ? AND revoked_at IS NULL",
            (name,),
        )
        .await?;
        Ok(conn.affected_rows() == 1)
    }

    /// The name of the active key with this hash.
    pub async fn token_key_name(&self, key_hash: &str) -> Result<Option<String>, StoreError> {
        let mut conn = self.conn().await?;
        Ok(conn
            .exec_first(
                "SELECT name FROM feishu_token_keys WHERE key_hash = ? AND revoked_at IS NULL",
                (key_hash,),
            )
            .await?)
    }

    /// Records one hand-out.
    pub async fn audit_token_handout(
        &self,
        key_name: &str,
        app_id: &str,
        peer: &str,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        conn.exec_drop(
            "INSERT INTO feishu_token_audit (key_name, app_id, peer) VALUES (?, ?, ?)",
            (key_name, app_id, peer),
        )
        .await?;
        Ok(())
    }

    /// The last `n` hand-outs, newest first: (key name, app, peer, time).
    pub async fn token_audit(&self, n: u32) -> Result<Vec<(String, String, String, String)>, StoreError> {
        let mut conn = self.conn().await?;
        Ok(conn
            .exec(
                "SELECT key_name, app_id, peer, DATE_FORMAT(at, '%Y-%m-%d %H:%i:%s.%f') FROM feishu_token_audit
                 ORDER BY id DESC LIMIT ?",
                (n,),
            )
            .await?)
    }
}
