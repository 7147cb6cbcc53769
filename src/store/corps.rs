//! The `corplist` table (its keys per version are in [`super::corp_keys`]).

use mysql_async::Row;
use mysql_async::prelude::*;

use super::{CorpId, Store, StoreError};

/// One `corplist` row as stored. The corp id is kept raw: rows inserted by
/// hand may hold ids we refuse, and those are reported rather than used.
#[derive(Clone, PartialEq, Eq)]
pub struct CorpRow {
    /// Row id.
    pub id: u32,
    /// The corp id as stored.
    pub corpid: String,
    /// The archive secret (会话内容存档 Secret).
    pub secret: String,
    /// Display name.
    pub corpname: String,
    /// Fallback private key (PEM) for versions with no `corp_keys` row.
    pub prikey: Option<String>,
    /// Records per GetChatData call.
    pub limits: i32,
    /// SDK timeout in seconds.
    pub timeout: i32,
    /// 1 enabled, 0 disabled.
    pub status: i8,
    /// 1 when edited by hand and not yet reloaded.
    pub update: i8,
    /// Proxy URL for the SDK (empty = direct).
    pub proxy: String,
    /// Proxy credentials `user:password`.
    pub passwd: String,
}

impl std::fmt::Debug for CorpRow {
    // Secrets and keys never reach logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CorpRow")
            .field("id", &self.id)
            .field("corpid", &self.corpid)
            .field("corpname", &self.corpname)
            .field("limits", &self.limits)
            .field("timeout", &self.timeout)
            .field("status", &self.status)
            .field("proxy", &self.proxy)
            .finish_non_exhaustive()
    }
}

impl CorpRow {
    /// The validated corp id.
    pub fn corp_id(&self) -> Result<CorpId, StoreError> {
        Ok(CorpId::new(&self.corpid)?)
    }

    /// Whether the corp is enabled.
    pub fn enabled(&self) -> bool {
        self.status == 1
    }

    fn from_row(mut row: Row) -> CorpRow {
        CorpRow {
            id: row.take("id").unwrap_or_default(),
            corpid: row.take("corpid").unwrap_or_default(),
            secret: row.take("secret").unwrap_or_default(),
            corpname: row.take("corpname").unwrap_or_default(),
            prikey: row.take::<Option<String>, _>("prikey").flatten().filter(|k| !k.trim().is_empty()),
            limits: row.take("limits").unwrap_or(1000),
            timeout: row.take("timeout").unwrap_or(10),
            status: row.take("status").unwrap_or(0),
            update: row.take("update").unwrap_or(0),
            proxy: row.take("proxy").unwrap_or_default(),
            passwd: row.take("passwd").unwrap_or_default(),
        }
    }
}

const COLUMNS: &str =
    "id, corpid, secret, corpname, prikey, limits, timeout, status, `update`, proxy, passwd";

/// What `corp add` / `corp update` writes.
#[derive(Clone, Default)]
pub struct CorpSettings {
    /// Corp id.
    pub corpid: String,
    /// Secret (as it will be stored: plain, or sealed by the control plane).
    pub secret: String,
    /// Name.
    pub corpname: String,
    /// Proxy URL.
    pub proxy: String,
    /// Proxy credentials.
    pub passwd: String,
    /// Records per call (1..=1000).
    pub limits: i32,
    /// SDK timeout seconds.
    pub timeout: i32,
}

/// Tables whose rows belong to one corp (`corpid` column), removed by
/// [`Store::erase_corp_archive`]. Not the accounts' grants nor the access log:
/// who may read a corp, and who read it, outlive its data.
const PER_CORP_TABLES: [&str; 12] = [
    "corplist",
    "corp_keys",
    "corp_state",
    "corp_alarms",
    "media_jobs",
    "quarantine",
    "large_msgdata",
    "chain_links",
    "chain_heads",
    "seed_adoptions",
    "conversations",
    "conversation_summaries",
];

impl Store {
    /// Erases everything archived for `corpid`: its message table and its rows
    /// in every per-corp table (media ranges and quarantine parts through their
    /// parents), in one transaction after the DROP. For the demo, which starts
    /// each run clean; never called on a real archive.
    pub async fn erase_corp_archive(&self, corpid: &CorpId) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        conn.query_drop(format!("DROP TABLE IF EXISTS {}", corpid.message_table())).await?;
        let mut tx = conn.start_transaction(mysql_async::TxOpts::default()).await?;
        tx.exec_drop(
            "DELETE r FROM media_ranges r JOIN media_jobs j ON j.id = r.job_id WHERE j.corpid = ?",
            (corpid.as_str(),),
        )
        .await?;
        tx.exec_drop(
            "DELETE p FROM quarantine_parts p JOIN quarantine q ON q.id = p.quarantine_id WHERE q.corpid = ?",
            (corpid.as_str(),),
        )
        .await?;
        for table in PER_CORP_TABLES {
            tx.exec_drop(format!("DELETE FROM {table} WHERE corpid = ?"), (corpid.as_str(),)).await?;
        }
        tx.commit().await?;
        self.forget_message_tables();
        Ok(())
    }

    /// Every corplist row, in id order.
    pub async fn corps(&self) -> Result<Vec<CorpRow>, StoreError> {
        let mut conn = self.conn().await?;
        let rows: Vec<Row> = conn.query(format!("SELECT {COLUMNS} FROM corplist ORDER BY id")).await?;
        Ok(rows.into_iter().map(CorpRow::from_row).collect())
    }

    /// One corp by id.
    pub async fn corp(&self, corpid: &CorpId) -> Result<Option<CorpRow>, StoreError> {
        let mut conn = self.conn().await?;
        let row: Option<Row> = conn
            .exec_first(format!("SELECT {COLUMNS} FROM corplist WHERE corpid = ?"), (corpid.as_str(),))
            .await?;
        Ok(row.map(CorpRow::from_row))
    }

    /// Inserts or updates a corp (enabled). Returns true when it was new.
    pub async fn upsert_corp(&self, s: &CorpSettings) -> Result<bool, StoreError> {
        let corpid = CorpId::new(&s.corpid)?;
        if !(1..=1000).contains(&s.limits) {
            return Err(StoreError::Invalid(format!("limits must be 1..=1000, got {}", s.limits)));
        }
        if s.timeout < 1 {
            return Err(StoreError::Invalid("timeout must be at least 1 second".into()));
        }
        let mut conn = self.conn().await?;
        conn.exec_drop(
            "INSERT INTO corplist (corpid, secret, corpname, limits, timeout, status, proxy, passwd)
             VALUES (?, ?, ?, ?, ?, 1, ?, ?)
             ON DUPLICATE KEY UPDATE secret = VALUES(secret), corpname = VALUES(corpname),
                 limits = VALUES(limits), timeout = VALUES(timeout), proxy = VALUES(proxy),
                 passwd = VALUES(passwd)",
            (corpid.as_str(), &s.secret, &s.corpname, s.limits, s.timeout, &s.proxy, &s.passwd),
        )
        .await?;
        // MySQL reports 1 affected row for an insert, 2 for an update.
        Ok(conn.affected_rows() == 1)
    }

    /// Enables or disables a corp. Returns false when there is no such corp.
    pub async fn set_corp_enabled(&self, corpid: &CorpId, enabled: bool) -> Result<bool, StoreError> {
        let mut conn = self.conn().await?;
        conn.exec_drop(
            "UPDATE corplist SET status = ? WHERE corpid = ?",
            (i8::from(enabled), corpid.as_str()),
        )
        .await?;
        let exists: Option<u32> =
            conn.exec_first("SELECT id FROM corplist WHERE corpid = ?", (corpid.as_str(),)).await?;
        Ok(exists.is_some())
    }

    /// Sets the `update` flag (what the CLI does when the change queue is
    /// unreachable; the running services' poll notices it).
    pub async fn flag_for_update(&self, corpid: &str) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        conn.exec_drop("UPDATE corplist SET `update` = 1 WHERE corpid = ?", (corpid,)).await?;
        Ok(())
    }

    /// Resets row `id`'s `update` flag after its reload was started.
    pub async fn reset_update_flag(&self, id: u32) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        conn.exec_drop("UPDATE corplist SET `update` = 0 WHERE id = ? AND `update` <> 0", (id,)).await?;
        Ok(())
    }

    /// The secret-bearing columns of every row, as stored (for `corp seal`).
    pub async fn corp_secrets(&self) -> Result<Vec<CorpSecrets>, StoreError> {
        let mut conn = self.conn().await?;
        let rows: Vec<(u32, String, String, String, String, Option<String>)> =
            conn.query("SELECT id, corpid, secret, passwd, proxy, prikey FROM corplist ORDER BY id").await?;
        Ok(rows
            .into_iter()
            .map(|(id, corpid, secret, passwd, proxy, prikey)| CorpSecrets {
                id,
                corpid,
                values: vec![
                    (SecretColumn::Secret, secret),
                    (SecretColumn::Passwd, passwd),
                    (SecretColumn::Proxy, proxy),
                    (SecretColumn::Prikey, prikey.unwrap_or_default()),
                ],
            })
            .collect())
    }

    /// Replaces row `id`'s `column` with `new` if it still holds `old`
    /// (compare-and-set); false when the row changed meanwhile.
    pub async fn replace_corp_secret(
        &self,
        id: u32,
        column: SecretColumn,
        old: &str,
        new: &str,
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn().await?;
        let name = column.name();
        conn.exec_drop(
            format!("UPDATE corplist SET `{name}` = ? WHERE id = ? AND `{name}` = ?"),
            (new, id, old),
        )
        .await?;
        Ok(conn.affected_rows() == 1)
    }
}

/// A `corplist` column that holds a secret (sealed under the master key when
/// one is configured).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretColumn {
    /// The archive secret.
    Secret,
    /// Proxy credentials.
    Passwd,
    /// Proxy URL (it may carry credentials).
    Proxy,
    /// The fallback private key.
    Prikey,
}

impl SecretColumn {
    /// The column name (also the place a sealed value is bound to).
    pub fn name(self) -> &'static str {
        match self {
            SecretColumn::Secret => "secret",
            SecretColumn::Passwd => "passwd",
            SecretColumn::Proxy => "proxy",
            SecretColumn::Prikey => "prikey",
        }
    }
}

/// One row's secret-bearing values as stored (empty: none).
pub struct CorpSecrets {
    /// Row id.
    pub id: u32,
    /// The corp id as stored.
    pub corpid: String,
    /// Each column with its value.
    pub values: Vec<(SecretColumn, String)>,
}
