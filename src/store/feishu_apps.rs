//! The `feishu_apps` table: one Feishu (Lark) app per tenant. The app secret,
//! Encrypt Key and Verification Token are sealed under the master key on the
//! way in and opened on the way out, so nothing above this module sees a
//! sealed value and nothing below it sees plaintext.

use mysql_async::prelude::*;

use super::{Store, StoreError};
use crate::secrets::{Binding, SecretBox};

/// An app with its secrets opened.
#[derive(Clone, PartialEq, Eq)]
pub struct FeishuApp {
    /// `cli_…`.
    pub app_id: String,
    /// App secret.
    pub app_secret: String,
    /// Encrypt Key of the event subscription.
    pub encrypt_key: String,
    /// Verification Token of the event subscription.
    pub verification_token: String,
    /// API base URL (`https://open.feishu.cn`, or a fake's).
    pub base_url: String,
    /// Whether the service uses the app.
    pub enabled: bool,
}

impl std::fmt::Debug for FeishuApp {
    // Secrets never reach logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeishuApp")
            .field("app_id", &self.app_id)
            .field("base_url", &self.base_url)
            .field("enabled", &self.enabled)
            .finish_non_exhaustive()
    }
}

/// Seals one secret for storage (the one place this module family seals).
/// Bound to its table, column and row, so a sealed value cannot be moved.
pub(crate) fn seal(secrets: &SecretBox, plain: &str, place: &Binding) -> String {
    secrets.seal(plain, place)
}

/// Opens one stored secret.
pub(crate) fn open(secrets: &SecretBox, stored: &str, place: &Binding) -> Result<String, StoreError> {
    secrets.open(stored, place).map_err(|e| StoreError::Invalid(e.to_string()))
}

/// Whether an app id looks like one (`cli_` and identifier characters): it ends
/// up in URLs, Redis keys and log lines.
pub fn valid_app_id(app_id: &str) -> bool {
    (3..=64).contains(&app_id.len())
        && app_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

type AppRow = (String, String, String, String, String, bool);

const COLUMNS: &str = "app_id, app_secret, encrypt_key, verification_token, base_url, enabled";

fn from_row(secrets: &SecretBox, r: AppRow) -> Result<FeishuApp, StoreError> {
    Ok(FeishuApp {
        app_secret: open(secrets, &r.1, &Binding::row("feishu_apps", "app_secret", &[&r.0]))?,
        encrypt_key: open(secrets, &r.2, &Binding::row("feishu_apps", "encrypt_key", &[&r.0]))?,
        verification_token: open(secrets, &r.3, &Binding::row("feishu_apps", "verification_token", &[&r.0]))?,
        app_id: r.0,
        base_url: r.4,
        enabled: r.5,
    })
}

impl Store {
    /// Adds or replaces an app (secrets sealed).
    pub async fn upsert_feishu_app(&self, app: &FeishuApp, secrets: &SecretBox) -> Result<(), StoreError> {
        if !valid_app_id(&app.app_id) {
            return Err(StoreError::Invalid(format!("app id {:?} is not an identifier", app.app_id)));
        }
        let mut conn = self.conn().await?;
        conn.exec_drop(
            format!(
                "INSERT INTO feishu_apps ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)
                 ON DUPLICATE KEY UPDATE app_secret = VALUES(app_secret), encrypt_key = VALUES(encrypt_key),
                 verification_token = VALUES(verification_token), base_url = VALUES(base_url),
                 enabled = VALUES(enabled)"
            ),
            (
                &app.app_id,
                seal(secrets, &app.app_secret, &Binding::row("feishu_apps", "app_secret", &[&app.app_id])),
                seal(secrets, &app.encrypt_key, &Binding::row("feishu_apps", "encrypt_key", &[&app.app_id])),
                seal(
                    secrets,
                    &app.verification_token,
                    &Binding::row("feishu_apps", "verification_token", &[&app.app_id]),
                ),
                &app.base_url,
                app.enabled,
            ),
        )
        .await?;
        Ok(())
    }

    /// One app, if it exists.
    pub async fn feishu_app(
        &self,
        app_id: &str,
        secrets: &SecretBox,
    ) -> Result<Option<FeishuApp>, StoreError> {
        let mut conn = self.conn().await?;
        let row: Option<AppRow> =
            conn.exec_first(format!("SELECT {COLUMNS} FROM feishu_apps WHERE app_id = ?"), (app_id,)).await?;
        row.map(|r| from_row(secrets, r)).transpose()
    }

    /// Deletes what an app's tenant left here (users and their tokens, OAuth
    /// states, card sessions, received events, recording jobs, document
    /// states), keeping the app and the token hand-out audit. For `demo`, whose
    /// fake tenant has the same ids on every run: a rerun must start clean.
    pub async fn forget_feishu_app_activity(&self, app_id: &str) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        for table in [
            "feishu_users",
            "feishu_oauth_states",
            "feishu_auth_sessions",
            "feishu_events",
            "feishu_recordings",
            "feishu_docs",
        ] {
            conn.exec_drop(format!("DELETE FROM {table} WHERE app_id = ?"), (app_id,)).await?;
        }
        Ok(())
    }

    /// Every app, by id.
    pub async fn feishu_apps(&self, secrets: &SecretBox) -> Result<Vec<FeishuApp>, StoreError> {
        let mut conn = self.conn().await?;
        let rows: Vec<AppRow> =
            conn.query(format!("SELECT {COLUMNS} FROM feishu_apps ORDER BY app_id")).await?;
        rows.into_iter().map(|r| from_row(secrets, r)).collect()
    }
}
