//! The `feishu_users` table: authorized users and their sealed token pairs.
//!
//! Feishu's refresh tokens are single-use, so a refreshed pair must be saved
//! before the access token is used, and never overwrite a newer pair: every
//! write after the first is a compare-and-swap on `version`.

use mysql_async::prelude::*;

use super::feishu_apps::{open, seal};
use super::{Store, StoreError};
use crate::secrets::{Binding, SecretBox};

/// A user's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserState {
    /// Tokens work (or can be refreshed).
    Active,
    /// A refresh failed for good: the person must authorize again.
    NeedsReauth,
}

impl UserState {
    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            UserState::Active => "active",
            UserState::NeedsReauth => "needs_reauth",
        }
    }

    fn parse(s: &str) -> UserState {
        if s == "active" { UserState::Active } else { UserState::NeedsReauth }
    }
}

/// A token pair as Feishu issued it (plaintext: sealed only in the table).
#[derive(Clone, PartialEq, Eq)]
pub struct UserTokens {
    /// `u-…`.
    pub access_token: String,
    /// Single-use refresh token.
    pub refresh_token: String,
    /// Unix seconds.
    pub access_expires_at: i64,
    /// Seconds the access token was issued for (the 10 % refresh margin is of this).
    pub access_lifetime_s: u32,
    /// Unix seconds, when Feishu said.
    pub refresh_expires_at: Option<i64>,
    /// Granted scopes.
    pub scope: String,
}

impl std::fmt::Debug for UserTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserTokens")
            .field("access_expires_at", &self.access_expires_at)
            .field("access_lifetime_s", &self.access_lifetime_s)
            .finish_non_exhaustive()
    }
}

/// One user row with its tokens opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeishuUser {
    /// The app.
    pub app_id: String,
    /// `ou_…`.
    pub open_id: String,
    /// Display name from user_info.
    pub name: String,
    /// Active or needs re-authorization.
    pub state: UserState,
    /// The current pair.
    pub tokens: UserTokens,
    /// CAS counter.
    pub version: u64,
}

type UserRow = (String, String, String, String, String, String, i64, u32, Option<i64>, String, u64);

const COLUMNS: &str = "app_id, open_id, name, state, access_token, refresh_token, access_expires_at, \
                       access_lifetime_s, refresh_expires_at, scope, version";

fn from_row(secrets: &SecretBox, r: UserRow) -> Result<FeishuUser, StoreError> {
    let access_token = open(secrets, &r.4, &Binding::row("feishu_users", "access_token", &[&r.0, &r.1]))?;
    let refresh_token = open(secrets, &r.5, &Binding::row("feishu_users", "refresh_token", &[&r.0, &r.1]))?;
    Ok(FeishuUser {
        app_id: r.0,
        open_id: r.1,
        name: r.2,
        state: UserState::parse(&r.3),
        tokens: UserTokens {
            access_token,
            refresh_token,
            access_expires_at: r.6,
            access_lifetime_s: r.7,
            refresh_expires_at: r.8,
            scope: r.9,
        },
        version: r.10,
    })
}

/// A user as listed (no tokens).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UserListing {
    /// The app.
    pub app_id: String,
    /// `ou_…`.
    pub open_id: String,
    /// Display name.
    pub name: String,
    /// `active` or `needs_reauth`.
    pub state: String,
    /// Unix seconds.
    pub access_expires_at: i64,
}

impl Store {
    /// Saves a freshly authorized user (a new authorization replaces any
    /// previous pair and makes the user active again). Returns the new version.
    pub async fn save_authorized_user(
        &self,
        app_id: &str,
        open_id: &str,
        name: &str,
        tokens: &UserTokens,
        secrets: &SecretBox,
    ) -> Result<u64, StoreError> {
        let mut conn = self.conn().await?;
        conn.exec_drop(
            "INSERT INTO feishu_users (app_id, open_id, name, state, access_token, refresh_token,
                 access_expires_at, access_lifetime_s, refresh_expires_at, scope, version, last_error)
             VALUES (?, ?, ?, 'active', ?, ?, ?, ?, ?, ?, 1, '')
             ON DUPLICATE KEY UPDATE name = VALUES(name), state = 'active',
                 access_token = VALUES(access_token), refresh_token = VALUES(refresh_token),
                 access_expires_at = VALUES(access_expires_at), access_lifetime_s = VALUES(access_lifetime_s),
                 refresh_expires_at = VALUES(refresh_expires_at), scope = VALUES(scope),
                 version = version + 1, last_error = '', authorized_at = CURRENT_TIMESTAMP(3)",
            (
                app_id,
                open_id,
                name,
                seal(
                    secrets,
                    &tokens.access_token,
                    &Binding::row("feishu_users", "access_token", &[app_id, open_id]),
                ),
                seal(
                    secrets,
                    &tokens.refresh_token,
                    &Binding::row("feishu_users", "refresh_token", &[app_id, open_id]),
                ),
                tokens.access_expires_at,
                tokens.access_lifetime_s,
                tokens.refresh_expires_at,
                &tokens.scope,
            ),
        )
        .await?;
        let v: Option<u64> = conn
            .exec_first(
                "SELECT version FROM feishu_users WHERE app_id = ? AND open_id = ?",
                (app_id, open_id),
            )
            .await?;
        Ok(v.unwrap_or(1))
    }

    /// One user.
    pub async fn feishu_user(
        &self,
        app_id: &str,
        open_id: &str,
        secrets: &SecretBox,
    ) -> Result<Option<FeishuUser>, StoreError> {
        let mut conn = self.conn().await?;
        let row: Option<UserRow> = conn
            .exec_first(
                format!("SELECT {COLUMNS} FROM feishu_users WHERE app_id = ? AND open_id = ?"),
                (app_id, open_id),
            )
            .await?;
        row.map(|r| from_row(secrets, r)).transpose()
    }

    /// Replaces the pair only if the row is still at `expected_version`
    /// (compare-and-swap); true when saved.
    pub async fn swap_user_tokens(
        &self,
        app_id: &str,
        open_id: &str,
        expected_version: u64,
        tokens: &UserTokens,
        secrets: &SecretBox,
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn().await?;
        conn.exec_drop(
            "UPDATE feishu_users SET access_token = ?, refresh_token = ?, access_expires_at = ?,
                 access_lifetime_s = ?, refresh_expires_at = ?, scope = ?, state = 'active',
                 version = version + 1, last_error = ''
             WHERE app_id = ? AND open_id = ? AND version = ?",
            (
                seal(
                    secrets,
                    &tokens.access_token,
                    &Binding::row("feishu_users", "access_token", &[app_id, open_id]),
                ),
                seal(
                    secrets,
                    &tokens.refresh_token,
                    &Binding::row("feishu_users", "refresh_token", &[app_id, open_id]),
                ),
                tokens.access_expires_at,
                tokens.access_lifetime_s,
                tokens.refresh_expires_at,
                &tokens.scope,
                app_id,
                open_id,
                expected_version,
            ),
        )
        .await?;
        Ok(conn.affected_rows() == 1)
    }

    /// Marks the user `needs_reauth` if still at `expected_version`; true when
    /// marked. The version is left as it is, so a concurrent refresher that
    /// read the same version and is about to save its new pair still can
    /// (its save makes the user active again).
    pub async fn mark_user_needs_reauth(
        &self,
        app_id: &str,
        open_id: &str,
        expected_version: u64,
        reason: &str,
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn().await?;
        let reason: String = reason.chars().take(500).collect();
        conn.exec_drop(
            "UPDATE feishu_users SET state = 'needs_reauth', last_error = ?
             WHERE app_id = ? AND open_id = ? AND version = ?",
            (reason, app_id, open_id, expected_version),
        )
        .await?;
        Ok(conn.affected_rows() == 1)
    }

    /// Every user (no tokens), by app and open id.
    pub async fn feishu_user_list(&self) -> Result<Vec<UserListing>, StoreError> {
        let mut conn = self.conn().await?;
        let rows: Vec<(String, String, String, String, i64)> = conn
            .query("SELECT app_id, open_id, name, state, access_expires_at FROM feishu_users ORDER BY app_id, open_id")
            .await?;
        Ok(rows
            .into_iter()
            .map(|(app_id, open_id, name, state, access_expires_at)| UserListing {
                app_id,
                open_id,
                name,
                state,
                access_expires_at,
            })
            .collect())
    }

    /// Active users whose access token has not expired at `now` (unix seconds).
    pub async fn count_active_user_tokens(&self, now: i64) -> Result<u64, StoreError> {
        let mut conn = self.conn().await?;
        let n: Option<u64> = conn
            .exec_first(
                "SELECT COUNT(*) FROM feishu_users WHERE state = 'active' AND access_expires_at > ?",
                (now,),
            )
            .await?;
        Ok(n.unwrap_or(0))
    }
}
