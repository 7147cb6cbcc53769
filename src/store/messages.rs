//! Per-corp message tables `message_<corpid>` and the batch commit.
//!
//! The seed tool's columns are kept with their meaning so existing queries
//! keep working (`status`, `media_code`, `media_path` are the per-message media
//! state: 0 no media, 1 not loaded, 2 loading, 3 done, 4 failed). Our columns
//! add why a record could not be decrypted and the encrypted fields needed to
//! retry it.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use mysql_async::prelude::*;
use mysql_async::{Row, TxOpts, Value};

use super::{CorpId, Store, StoreError};

/// Why a record is stored without (complete) plaintext. Stored as text in
/// `decrypt_status`; everything but `Ok` and `Unparsed` is retried by `redecrypt`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DecryptStatus {
    /// Decrypted and parsed.
    Ok,
    /// Decrypted, but the plaintext is not a JSON object even leniently (kept as is).
    Unparsed,
    /// No private key for its `publickey_ver` (and no fallback key).
    NoKey,
    /// `encrypt_random_key` is not valid base64 of an RSA-2048 block.
    BadRandomKey,
    /// The private key we have does not decrypt `encrypt_random_key`.
    WrongKey,
    /// `encrypt_chat_msg` would crash the SDK or is malformed; refused.
    BadMessage,
    /// The SDK's DecryptData failed with a code (see `decrypt_code`).
    SdkError,
    /// The envelope item is missing fields (no seq or msgid is impossible: those
    /// are never stored; this covers missing ciphertext fields).
    Incomplete,
}

impl DecryptStatus {
    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            DecryptStatus::Ok => "ok",
            DecryptStatus::Unparsed => "unparsed",
            DecryptStatus::NoKey => "no_key",
            DecryptStatus::BadRandomKey => "bad_random_key",
            DecryptStatus::WrongKey => "wrong_key",
            DecryptStatus::BadMessage => "bad_message",
            DecryptStatus::SdkError => "sdk_error",
            DecryptStatus::Incomplete => "incomplete",
        }
    }

    /// Parses the stored text.
    pub fn parse(s: &str) -> Option<DecryptStatus> {
        Self::ALL.into_iter().find(|d| d.as_str() == s)
    }

    /// All statuses.
    pub const ALL: [DecryptStatus; 8] = [
        DecryptStatus::Ok,
        DecryptStatus::Unparsed,
        DecryptStatus::NoKey,
        DecryptStatus::BadRandomKey,
        DecryptStatus::WrongKey,
        DecryptStatus::BadMessage,
        DecryptStatus::SdkError,
        DecryptStatus::Incomplete,
    ];

    /// Statuses that `redecrypt` retries.
    pub fn retryable(self) -> bool {
        !matches!(self, DecryptStatus::Ok | DecryptStatus::Unparsed | DecryptStatus::Incomplete)
    }
}

/// One record ready to store.
#[derive(Clone, PartialEq)]
pub struct NewMessage {
    /// Unique message id.
    pub msgid: String,
    /// Key version it was encrypted for.
    pub publickey_ver: u32,
    /// Sequence number.
    pub seq: u64,
    /// send / recall / switch ("" when undecrypted).
    pub action: String,
    /// Sender (switch: the user).
    pub msgfrom: String,
    /// Recipients as a JSON array.
    pub tolist: String,
    /// Message type (switch records: "switch").
    pub msgtype: String,
    /// Time in ms UTC.
    pub msgtime: i64,
    /// Searchable rendering.
    pub text: String,
    /// sdkfileid of a single-media message (the seed's column).
    pub sdkfield: String,
    /// Decrypted JSON, byte for byte (None when undecrypted).
    pub msgdata: Option<Vec<u8>>,
    /// Media state (0 none, 1 not loaded).
    pub status: i8,
    /// Group id ("" for 1:1).
    pub roomid: String,
    /// Decrypt outcome.
    pub decrypt_status: DecryptStatus,
    /// SDK code when `decrypt_status` is `SdkError`, else 0.
    pub decrypt_code: i32,
    /// Kept while undecrypted, so `redecrypt` can retry.
    pub encrypt_random_key: Option<String>,
    /// Kept while undecrypted.
    pub encrypt_chat_msg: Option<String>,
}

impl std::fmt::Debug for NewMessage {
    // Message bodies never reach logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewMessage")
            .field("msgid", &self.msgid)
            .field("seq", &self.seq)
            .field("publickey_ver", &self.publickey_ver)
            .field("msgtype", &self.msgtype)
            .field("decrypt_status", &self.decrypt_status)
            .finish_non_exhaustive()
    }
}

/// Which message tables this process already created or upgraded.
#[derive(Clone, Debug, Default)]
pub struct TableCache(Arc<Mutex<HashSet<CorpId>>>);

/// Column list of our inserts, in order.
const INSERT_COLUMNS: &str = "msgid, publickey_ver, seq, action, msgfrom, tolist, msgtype, msgtime, text, sdkfield, \
     msgdata, status, roomid, decrypt_status, decrypt_code, encrypt_random_key, encrypt_chat_msg";
const INSERT_WIDTH: usize = 17;

/// Keeps one INSERT statement well under the server's `max_allowed_packet`
/// (16 MiB by default): plaintexts can be ~100 KiB each.
const MAX_STATEMENT_BYTES: usize = 4 << 20;

fn table_ddl(table: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {table} (
            id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
            msgid VARCHAR(191) NOT NULL,
            publickey_ver INT UNSIGNED NOT NULL DEFAULT 0,
            seq BIGINT UNSIGNED NOT NULL DEFAULT 0,
            action VARCHAR(16) NOT NULL DEFAULT '',
            msgfrom VARCHAR(191) NOT NULL DEFAULT '',
            tolist MEDIUMTEXT NULL,
            msgtype VARCHAR(64) NOT NULL DEFAULT '',
            msgtime BIGINT NOT NULL DEFAULT 0,
            text MEDIUMTEXT NULL,
            sdkfield TEXT NULL,
            msgdata LONGBLOB NULL,
            status TINYINT NOT NULL DEFAULT 0,
            media_code INT NOT NULL DEFAULT 0,
            media_path VARCHAR(1024) NOT NULL DEFAULT '',
            roomid VARCHAR(191) NOT NULL DEFAULT '',
            created DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
            UNIQUE KEY uk_msgid (msgid)
        ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
    )
}

/// Columns and indexes added to the seed's table (idempotent, so a table the
/// seed tool created is upgraded in place).
fn table_upgrades(table: &str) -> Vec<String> {
    [
        "ADD COLUMN IF NOT EXISTS decrypt_status VARCHAR(24) NOT NULL DEFAULT 'ok'",
        "ADD COLUMN IF NOT EXISTS decrypt_code INT NOT NULL DEFAULT 0",
        "ADD COLUMN IF NOT EXISTS encrypt_random_key TEXT NULL",
        "ADD COLUMN IF NOT EXISTS encrypt_chat_msg LONGTEXT NULL",
        "ADD INDEX IF NOT EXISTS idx_seq (seq)",
        "ADD INDEX IF NOT EXISTS idx_msgtime (msgtime)",
        "ADD INDEX IF NOT EXISTS idx_room_time (roomid, msgtime)",
        "ADD INDEX IF NOT EXISTS idx_from_time (msgfrom, msgtime)",
        "ADD INDEX IF NOT EXISTS idx_decrypt_status (decrypt_status)",
    ]
    .iter()
    .map(|clause| format!("ALTER TABLE {table} {clause}"))
    .collect()
}

/// The result of committing one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Committed {
    /// Rows newly inserted (duplicates of stored msgids are not counted).
    pub inserted: u64,
    /// The cursor after the commit.
    pub cursor: u64,
}

impl Store {
    /// Creates (or upgrades) `message_<corpid>`; cached per process.
    pub async fn ensure_message_table(&self, corpid: &CorpId) -> Result<(), StoreError> {
        if self.table_cache().0.lock().unwrap().contains(corpid) {
            return Ok(());
        }
        let table = corpid.message_table();
        let mut conn = self.conn().await?;
        conn.query_drop(table_ddl(&table)).await?;
        for stmt in table_upgrades(&table) {
            conn.query_drop(stmt).await?;
        }
        self.table_cache().0.lock().unwrap().insert(corpid.clone());
        Ok(())
    }

    /// Forgets which message tables exist (after dropping some).
    pub fn forget_message_tables(&self) {
        self.table_cache().0.lock().unwrap().clear();
    }

    /// Stores a batch and advances the cursor to `last_seq` in one transaction,
    /// if and only if this writer still holds `fence`.
    ///
    /// Inserts are idempotent on `msgid` (an already stored record is left
    /// untouched), the cursor never moves backwards, and `extra` runs inside
    /// the same transaction (the media queue uses it).
    pub async fn commit_batch(
        &self,
        corpid: &CorpId,
        fence: u64,
        records: &[NewMessage],
        last_seq: u64,
        extra: &[TxStatement],
    ) -> Result<Committed, StoreError> {
        self.ensure_message_table(corpid).await?;
        let table = corpid.message_table();
        let mut conn = self.conn().await?;
        let mut tx = conn.start_transaction(TxOpts::default()).await?;
        // Lock the state row first: a concurrent fence claim waits for us, and
        // we see the token as of now.
        let current: Option<u64> = tx
            .exec_first("SELECT fence FROM corp_state WHERE corpid = ? FOR UPDATE", (corpid.as_str(),))
            .await?;
        let current = current.unwrap_or(0);
        if current != fence {
            tx.rollback().await?;
            return Err(StoreError::FenceLost { corpid: corpid.to_string(), mine: fence, current });
        }
        super::chain::extend_with_batch(&mut tx, corpid, records).await?;
        let mut inserted = 0;
        for chunk in chunk_by_size(records) {
            inserted += insert_chunk(&mut tx, &table, chunk).await?;
        }
        run_statements(&mut tx, extra).await?;
        tx.exec_drop(
            "UPDATE corp_state SET seq = GREATEST(seq, ?), stored_total = stored_total + ?,
                 last_success_at = NOW(3), last_progress_at = NOW(3), last_attempt_at = NOW(3),
                 last_error_code = 0, last_error = ''
             WHERE corpid = ?",
            (last_seq, inserted, corpid.as_str()),
        )
        .await?;
        let cursor: u64 = tx
            .exec_first("SELECT seq FROM corp_state WHERE corpid = ?", (corpid.as_str(),))
            .await?
            .unwrap_or(0);
        tx.commit().await?;
        Ok(Committed { inserted, cursor })
    }

    /// Records stored undecrypted (retryable statuses), oldest first.
    pub async fn undecrypted(
        &self,
        corpid: &CorpId,
        after_id: u64,
        limit: u32,
    ) -> Result<Vec<Undecrypted>, StoreError> {
        self.ensure_message_table(corpid).await?;
        let mut conn = self.conn().await?;
        let rows: Vec<Row> = conn
            .exec(
                format!(
                    "SELECT id, msgid, publickey_ver, seq, encrypt_random_key, encrypt_chat_msg
                     FROM {} WHERE decrypt_status NOT IN ('ok', 'unparsed', 'incomplete') AND id > ? ORDER BY id LIMIT ?",
                    corpid.message_table()
                ),
                (after_id, limit),
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|mut r| Undecrypted {
                id: r.take("id").unwrap_or_default(),
                msgid: r.take("msgid").unwrap_or_default(),
                publickey_ver: r.take("publickey_ver").unwrap_or_default(),
                seq: r.take("seq").unwrap_or_default(),
                encrypt_random_key: r
                    .take::<Option<String>, _>("encrypt_random_key")
                    .flatten()
                    .unwrap_or_default(),
                encrypt_chat_msg: r
                    .take::<Option<String>, _>("encrypt_chat_msg")
                    .flatten()
                    .unwrap_or_default(),
            })
            .collect())
    }

    /// Replaces an undecrypted row with its decrypted form (or a new failure
    /// status), in one transaction with `extra` (the media queue).
    /// Returns false when the row was already completed by someone else.
    pub async fn complete_undecrypted(
        &self,
        corpid: &CorpId,
        id: u64,
        msg: &NewMessage,
        extra: &[TxStatement],
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn().await?;
        let mut tx = conn.start_transaction(TxOpts::default()).await?;
        tx.exec_drop(
            format!(
                "UPDATE {} SET action = ?, msgfrom = ?, tolist = ?, msgtype = ?, msgtime = ?, text = ?,
                     sdkfield = ?, msgdata = ?, status = ?, roomid = ?, decrypt_status = ?, decrypt_code = ?,
                     encrypt_random_key = ?, encrypt_chat_msg = ?
                 WHERE id = ? AND decrypt_status NOT IN ('ok', 'unparsed', 'incomplete')",
                corpid.message_table()
            ),
            vec![
                Value::from(&msg.action),
                Value::from(&msg.msgfrom),
                Value::from(&msg.tolist),
                Value::from(&msg.msgtype),
                Value::from(msg.msgtime),
                Value::from(&msg.text),
                Value::from(&msg.sdkfield),
                Value::from(msg.msgdata.clone()),
                Value::from(msg.status),
                Value::from(&msg.roomid),
                Value::from(msg.decrypt_status.as_str()),
                Value::from(msg.decrypt_code),
                Value::from(msg.encrypt_random_key.clone()),
                Value::from(msg.encrypt_chat_msg.clone()),
                Value::from(id),
            ],
        )
        .await?;
        let updated = tx.affected_rows() == 1;
        if updated {
            super::chain::extend_with_redecrypt(&mut tx, corpid, msg).await?;
            run_statements(&mut tx, extra).await?;
        }
        tx.commit().await?;
        Ok(updated)
    }

    /// Counts of stored records by decrypt status for one corp.
    pub async fn decrypt_status_counts(&self, corpid: &CorpId) -> Result<Vec<(String, u64)>, StoreError> {
        self.ensure_message_table(corpid).await?;
        let mut conn = self.conn().await?;
        Ok(conn
            .query(format!(
                "SELECT decrypt_status, COUNT(*) FROM {} GROUP BY decrypt_status ORDER BY decrypt_status",
                corpid.message_table()
            ))
            .await?)
    }

    /// Counts of stored records by msgtype for one corp.
    pub async fn msgtype_counts(&self, corpid: &CorpId) -> Result<Vec<(String, u64)>, StoreError> {
        self.ensure_message_table(corpid).await?;
        let mut conn = self.conn().await?;
        Ok(conn
            .query(format!(
                "SELECT msgtype, COUNT(*) FROM {} WHERE decrypt_status = 'ok' GROUP BY msgtype ORDER BY msgtype",
                corpid.message_table()
            ))
            .await?)
    }
}

/// A stored record that still needs decrypting.
#[derive(Clone)]
pub struct Undecrypted {
    /// Row id.
    pub id: u64,
    /// Message id.
    pub msgid: String,
    /// Key version.
    pub publickey_ver: u32,
    /// Sequence number.
    pub seq: u64,
    /// As received.
    pub encrypt_random_key: String,
    /// As received.
    pub encrypt_chat_msg: String,
}

/// A statement that must run in the same transaction as the messages it
/// belongs to (the media queue: a media job exists if and only if its message
/// does). Built by the caller, so the store stays ignorant of media.
#[derive(Debug, Clone)]
pub struct TxStatement {
    /// SQL with `?` placeholders.
    pub sql: String,
    /// Parameters.
    pub params: Vec<Value>,
}

async fn run_statements(
    tx: &mut mysql_async::Transaction<'_>,
    extra: &[TxStatement],
) -> Result<(), StoreError> {
    for st in extra {
        tx.exec_drop(st.sql.as_str(), st.params.clone()).await?;
    }
    Ok(())
}

fn chunk_by_size(records: &[NewMessage]) -> Vec<&[NewMessage]> {
    let mut chunks = Vec::new();
    let (mut start, mut size) = (0, 0);
    for (i, r) in records.iter().enumerate() {
        let n = 512
            + r.msgdata.as_ref().map_or(0, Vec::len)
            + r.text.len()
            + r.tolist.len()
            + r.encrypt_chat_msg.as_ref().map_or(0, String::len);
        if i > start && size + n > MAX_STATEMENT_BYTES {
            chunks.push(&records[start..i]);
            (start, size) = (i, 0);
        }
        size += n;
    }
    if start < records.len() {
        chunks.push(&records[start..]);
    }
    chunks
}

async fn insert_chunk(
    tx: &mut mysql_async::Transaction<'_>,
    table: &str,
    chunk: &[NewMessage],
) -> Result<u64, StoreError> {
    let row = format!("({})", vec!["?"; INSERT_WIDTH].join(","));
    let sql = format!(
        "INSERT INTO {table} ({INSERT_COLUMNS}) VALUES {} ON DUPLICATE KEY UPDATE msgid = msgid",
        vec![row.as_str(); chunk.len()].join(",")
    );
    let mut params: Vec<Value> = Vec::with_capacity(chunk.len() * INSERT_WIDTH);
    for r in chunk {
        params.extend([
            r.msgid.clone().into(),
            r.publickey_ver.into(),
            r.seq.into(),
            r.action.clone().into(),
            r.msgfrom.clone().into(),
            r.tolist.clone().into(),
            r.msgtype.clone().into(),
            r.msgtime.into(),
            r.text.clone().into(),
            r.sdkfield.clone().into(),
            r.msgdata.clone().into(),
            r.status.into(),
            r.roomid.clone().into(),
            r.decrypt_status.as_str().into(),
            r.decrypt_code.into(),
            r.encrypt_random_key.clone().into(),
            r.encrypt_chat_msg.clone().into(),
        ]);
    }
    tx.exec_drop(sql, params).await?;
    // With ON DUPLICATE KEY UPDATE to the same value, an existing row counts 0.
    Ok(tx.affected_rows())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip() {
        for s in DecryptStatus::ALL {
            assert_eq!(DecryptStatus::parse(s.as_str()), Some(s));
        }
        assert!(!DecryptStatus::Ok.retryable());
        assert!(DecryptStatus::NoKey.retryable());
    }

    #[test]
    fn chunks_respect_the_size_cap() {
        let big = NewMessage {
            msgid: "m".into(),
            publickey_ver: 1,
            seq: 1,
            action: String::new(),
            msgfrom: String::new(),
            tolist: String::new(),
            msgtype: String::new(),
            msgtime: 0,
            text: String::new(),
            sdkfield: String::new(),
            msgdata: Some(vec![0; 1 << 20]),
            status: 0,
            roomid: String::new(),
            decrypt_status: DecryptStatus::Ok,
            decrypt_code: 0,
            encrypt_random_key: None,
            encrypt_chat_msg: None,
        };
        let records = vec![big; 10];
        let chunks = chunk_by_size(&records);
        assert_eq!(chunks.iter().map(|c| c.len()).sum::<usize>(), 10);
        assert!(chunks.iter().all(|c| c.len() <= 4));
        assert!(chunk_by_size(&[]).is_empty());
    }
}
