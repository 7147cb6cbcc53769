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

use super::{CorpId, Store, StoreError, conversations};

/// Why a record is stored without (complete) plaintext. Stored as text in
/// `decrypt_status`; `redecrypt` retries every status but `Ok`, `Unparsed` and
/// `Incomplete` (see [`DecryptStatus::retryable`]).
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
    /// The key info inside `encrypt_key` cannot be parsed completely or
    /// describes a cut that would abort the SDK: refused, never sent to it.
    BadKeyInfo,
    /// The envelope item is missing fields (no seq or msgid is impossible: those
    /// are never stored; this covers missing ciphertext fields). Never retried:
    /// the ciphertext is not there, and no key can recover it.
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
            DecryptStatus::BadKeyInfo => "bad_key_info",
            DecryptStatus::Incomplete => "incomplete",
        }
    }

    /// Parses the stored text.
    pub fn parse(s: &str) -> Option<DecryptStatus> {
        Self::ALL.into_iter().find(|d| d.as_str() == s)
    }

    /// All statuses.
    pub const ALL: [DecryptStatus; 9] = [
        DecryptStatus::Ok,
        DecryptStatus::Unparsed,
        DecryptStatus::NoKey,
        DecryptStatus::BadRandomKey,
        DecryptStatus::WrongKey,
        DecryptStatus::BadMessage,
        DecryptStatus::SdkError,
        DecryptStatus::Incomplete,
        DecryptStatus::BadKeyInfo,
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
     msgdata, status, roomid, decrypt_status, decrypt_code, encrypt_random_key, encrypt_chat_msg, msgdata_parts";
const INSERT_WIDTH: usize = 18;

/// Longest msgid the tables hold (characters). Longer ones cannot be stored
/// without losing uniqueness and go to the quarantine.
pub const MSGID_WIDTH: usize = 512;
/// Width of `msgfrom` and `roomid` (characters); longer values are cut, the
/// full value stays in `msgdata`.
const PARTY_WIDTH: usize = 512;
/// Width of `action` and `msgtype` (characters).
const KIND_WIDTH: usize = 64;
/// Longest `text`/`tolist` kept in their MEDIUMTEXT columns (bytes).
const MAX_TEXT_BYTES: usize = 4 << 20;
/// Longest `sdkfield` (its TEXT column, bytes).
const MAX_SDKFIELD_BYTES: usize = 65_535;
/// Plaintexts above this are stored in `large_msgdata` rows instead of
/// `msgdata`, so no row comes near `max_allowed_packet` (16 MiB by default).
pub const MAX_INLINE_MSGDATA: usize = 8 << 20;

/// `s` cut to at most `max` characters.
fn cut_chars(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((at, _)) => &s[..at],
        None => s,
    }
}

/// `s` cut to at most `max` bytes, on a character boundary.
fn cut_bytes(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut at = max;
    while !s.is_char_boundary(at) {
        at -= 1;
    }
    &s[..at]
}

/// Keeps one INSERT statement well under the server's `max_allowed_packet`
/// (16 MiB by default): plaintexts can be ~100 KiB each.
const MAX_STATEMENT_BYTES: usize = 4 << 20;

fn table_ddl(table: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {table} (
            id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
            msgid VARCHAR(512) NOT NULL,
            publickey_ver INT UNSIGNED NOT NULL DEFAULT 0,
            seq BIGINT UNSIGNED NOT NULL DEFAULT 0,
            action VARCHAR(64) NOT NULL DEFAULT '',
            msgfrom VARCHAR(512) NOT NULL DEFAULT '',
            tolist MEDIUMTEXT NULL,
            msgtype VARCHAR(64) NOT NULL DEFAULT '',
            msgtime BIGINT NOT NULL DEFAULT 0,
            text MEDIUMTEXT NULL,
            sdkfield TEXT NULL,
            msgdata LONGBLOB NULL,
            status TINYINT NOT NULL DEFAULT 0,
            media_code INT NOT NULL DEFAULT 0,
            media_path VARCHAR(1024) NOT NULL DEFAULT '',
            roomid VARCHAR(512) NOT NULL DEFAULT '',
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
        "ADD COLUMN IF NOT EXISTS msgdata_parts INT UNSIGNED NOT NULL DEFAULT 0",
        "ADD INDEX IF NOT EXISTS idx_seq (seq)",
        "ADD INDEX IF NOT EXISTS idx_msgtime (msgtime)",
        "ADD INDEX IF NOT EXISTS idx_room_time (roomid, msgtime)",
        "ADD INDEX IF NOT EXISTS idx_from_time (msgfrom, msgtime)",
        "ADD INDEX IF NOT EXISTS idx_decrypt_status (decrypt_status)",
        // A one-to-one record's one recipient, so a pair's page is a range of
        // an index (idx_pair_time) instead of every record of the sender
        // tested for the recipient (tens of thousands at a million messages).
        // '' where it cannot be named that way (switch records, none or
        // several recipients, not a JSON array of strings, longer than the
        // index takes); NULL in rooms. Virtual: nothing to write or convert.
        "ADD COLUMN IF NOT EXISTS peer VARCHAR(240) AS (CASE
             WHEN roomid <> '' THEN NULL
             WHEN action <> 'switch' AND JSON_VALID(tolist) AND JSON_LENGTH(tolist) = 1
                  AND JSON_TYPE(JSON_EXTRACT(tolist, '$[0]')) = 'STRING'
                  AND CHAR_LENGTH(JSON_UNQUOTE(JSON_EXTRACT(tolist, '$[0]'))) <= 240
                 THEN JSON_UNQUOTE(JSON_EXTRACT(tolist, '$[0]'))
             ELSE '' END) VIRTUAL",
        // msgfrom (512) + peer (240) + msgtime stay under InnoDB's 3072-byte key.
        "ADD INDEX IF NOT EXISTS idx_pair_time (msgfrom, peer, msgtime)",
        // The undecrypted records' last time, read again when a redecrypt
        // takes one out (one index entry per status instead of every row).
        "ADD INDEX IF NOT EXISTS idx_status_time (decrypt_status, msgtime)",
    ]
    .iter()
    .map(|clause| format!("ALTER TABLE {table} {clause}"))
    .collect()
}

/// The column definitions a message table must have at least: tables created
/// by the seed tool (or by earlier versions) have 191-character ids, a
/// 16-character action, utf8mb3 text or a TEXT msgdata, and records a platform
/// sends do not fit them (issue #9). Only columns that differ are modified, so
/// this is a no-op on every start after the first.
const WIDE_COLUMNS: [(&str, &str, u64, &str); 9] = [
    ("msgid", "varchar", 512, "VARCHAR(512) NOT NULL"),
    ("msgfrom", "varchar", 512, "VARCHAR(512) NOT NULL DEFAULT ''"),
    ("roomid", "varchar", 512, "VARCHAR(512) NOT NULL DEFAULT ''"),
    ("action", "varchar", 64, "VARCHAR(64) NOT NULL DEFAULT ''"),
    ("msgtype", "varchar", 64, "VARCHAR(64) NOT NULL DEFAULT ''"),
    ("tolist", "mediumtext", 0, "MEDIUMTEXT NULL"),
    ("text", "mediumtext", 0, "MEDIUMTEXT NULL"),
    ("sdkfield", "text", 0, "TEXT NULL"),
    ("msgdata", "longblob", 0, "LONGBLOB NULL"),
];

async fn widen_columns(conn: &mut mysql_async::Conn, table: &str) -> Result<(), StoreError> {
    let cols: Vec<(String, String, Option<u64>, Option<String>)> = conn
        .exec(
            "SELECT COLUMN_NAME, DATA_TYPE, CHARACTER_MAXIMUM_LENGTH, CHARACTER_SET_NAME
             FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?",
            (table,),
        )
        .await?;
    let rank = |t: &str| match t {
        "varchar" | "tinytext" | "tinyblob" => 0,
        "text" | "blob" => 1,
        "mediumtext" | "mediumblob" => 2,
        _ => 3,
    };
    let mut clauses = Vec::new();
    for (name, want_type, want_len, def) in WIDE_COLUMNS {
        let Some((_, ty, len, charset)) = cols.iter().find(|c| c.0.eq_ignore_ascii_case(name)) else {
            continue;
        };
        let ty = ty.to_ascii_lowercase();
        let narrow = if want_type == "varchar" {
            ty == "varchar" && len.unwrap_or(0) < want_len
        } else if want_type == "longblob" {
            ty != "longblob"
        } else {
            rank(&ty) < rank(want_type)
        };
        let mb3 = want_type != "longblob" && charset.as_deref().is_some_and(|c| c != "utf8mb4");
        if narrow || mb3 {
            let def =
                if want_type == "longblob" { def.to_owned() } else { format!("{def} CHARACTER SET utf8mb4") };
            // `CHARACTER SET` belongs right after the type.
            let def = match def.split_once(' ') {
                Some((ty, rest)) if want_type != "longblob" => {
                    format!("{ty} CHARACTER SET utf8mb4 {}", rest.trim_end_matches(" CHARACTER SET utf8mb4"))
                }
                _ => def,
            };
            clauses.push(format!("MODIFY COLUMN {name} {def}"));
        }
    }
    if !clauses.is_empty() {
        tracing::info!(table, changes = clauses.len(), "widening message table columns");
        conn.query_drop(format!("ALTER TABLE {table} {}", clauses.join(", "))).await?;
    }
    Ok(())
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
    /// Creates (or upgrades) `message_<corpid>` and builds its conversation
    /// summary if it has none; cached per process.
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
        widen_columns(&mut conn, &table).await?;
        drop(conn);
        self.ensure_conversation_summary(corpid).await?;
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
        let summary = summary_mark(&mut tx, corpid, &table).await?;
        super::chain::extend_with_batch(&mut tx, corpid, records).await?;
        let inserted = insert_records(&mut tx, corpid, &table, records).await?;
        if let Some(mark) = summary
            && inserted > 0
        {
            conversations::count_inserted(&mut tx, corpid, &table, mark).await?;
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
        let table = corpid.message_table();
        let mut conn = self.conn().await?;
        let mut tx = conn.start_transaction(TxOpts::default()).await?;
        // Where the row counts before it changes (read under the summary lock,
        // so no other writer changes it in between).
        let before = if conversations::lock(&mut tx, corpid).await? {
            Some(conversations::row_parts(&mut tx, &table, id).await?)
        } else {
            None
        };
        tx.exec_drop(
            format!(
                "UPDATE {table} SET action = ?, msgfrom = ?, tolist = ?, msgtype = ?, msgtime = ?, text = ?,
                     sdkfield = ?, msgdata = ?, status = ?, roomid = ?, decrypt_status = ?, decrypt_code = ?,
                     encrypt_random_key = ?, encrypt_chat_msg = ?
                 WHERE id = ? AND decrypt_status NOT IN ('ok', 'unparsed', 'incomplete')"
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
            if let Some(before) = &before {
                conversations::count_changed(&mut tx, corpid, &table, id, before).await?;
            }
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

/// Locks the corp's conversation summary for a transaction that inserts
/// messages: `Some(mark)` when the summary is built (the rows with ids above
/// the mark are then this transaction's, to count), None when a later build
/// counts them.
async fn summary_mark(
    tx: &mut mysql_async::Transaction<'_>,
    corpid: &CorpId,
    table: &str,
) -> Result<Option<u64>, StoreError> {
    if !conversations::lock(tx, corpid).await? {
        return Ok(None);
    }
    Ok(Some(conversations::insert_mark(tx, table).await?))
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

/// Inserts records (idempotent on msgid): normal ones in size-capped
/// multi-row INSERTs, plaintexts above [`MAX_INLINE_MSGDATA`] one by one with
/// their bytes in `large_msgdata`.
async fn insert_records(
    tx: &mut mysql_async::Transaction<'_>,
    corpid: &CorpId,
    table: &str,
    records: &[NewMessage],
) -> Result<u64, StoreError> {
    let is_big = |r: &NewMessage| r.msgdata.as_ref().is_some_and(|d| d.len() > MAX_INLINE_MSGDATA);
    let small: Vec<NewMessage> = records.iter().filter(|r| !is_big(r)).cloned().collect();
    let mut inserted = 0;
    for chunk in chunk_by_size(&small) {
        inserted += insert_chunk(tx, table, chunk).await?;
    }
    for r in records.iter().filter(|r| is_big(r)) {
        let data = r.msgdata.as_deref().unwrap_or_default();
        let parts: Vec<&[u8]> = data.chunks(super::quarantine::PART_BYTES).collect();
        let mut row = r.clone();
        row.msgdata = None;
        let n = insert_rows(tx, table, std::slice::from_ref(&row), parts.len() as u64).await?;
        if n == 1 {
            let key = super::quarantine::msgid_key(&r.msgid);
            for (i, part) in parts.iter().enumerate() {
                tx.exec_drop(
                    "INSERT INTO large_msgdata (corpid, msgid_sha256, part, data) VALUES (?, ?, ?, ?)
                     ON DUPLICATE KEY UPDATE data = VALUES(data)",
                    (corpid.as_str(), &key, i as u64, *part),
                )
                .await?;
            }
        }
        inserted += n;
    }
    Ok(inserted)
}

async fn insert_chunk(
    tx: &mut mysql_async::Transaction<'_>,
    table: &str,
    chunk: &[NewMessage],
) -> Result<u64, StoreError> {
    insert_rows(tx, table, chunk, 0).await
}

/// One multi-row INSERT. Column values are cut to their columns' widths (the
/// exact record is in `msgdata`); the msgid never is, since it is the key.
async fn insert_rows(
    tx: &mut mysql_async::Transaction<'_>,
    table: &str,
    chunk: &[NewMessage],
    msgdata_parts: u64,
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
            cut_chars(&r.action, KIND_WIDTH).into(),
            cut_chars(&r.msgfrom, PARTY_WIDTH).into(),
            cut_bytes(&r.tolist, MAX_TEXT_BYTES).into(),
            cut_chars(&r.msgtype, KIND_WIDTH).into(),
            r.msgtime.into(),
            cut_bytes(&r.text, MAX_TEXT_BYTES).into(),
            cut_bytes(&r.sdkfield, MAX_SDKFIELD_BYTES).into(),
            r.msgdata.clone().into(),
            r.status.into(),
            cut_chars(&r.roomid, PARTY_WIDTH).into(),
            r.decrypt_status.as_str().into(),
            r.decrypt_code.into(),
            r.encrypt_random_key.clone().into(),
            r.encrypt_chat_msg.clone().into(),
            msgdata_parts.into(),
        ]);
    }
    tx.exec_drop(sql, params).await?;
    // With ON DUPLICATE KEY UPDATE to the same value, an existing row counts 0.
    Ok(tx.affected_rows())
}

impl Store {
    /// Stores records outside the pull: no fence, no cursor (replaying the
    /// quarantine; inserts are idempotent on msgid, so this is safe next to a
    /// running worker). `extra` runs in the same transaction.
    pub async fn insert_messages(
        &self,
        corpid: &CorpId,
        records: &[NewMessage],
        extra: &[TxStatement],
    ) -> Result<u64, StoreError> {
        self.ensure_message_table(corpid).await?;
        let table = corpid.message_table();
        let mut conn = self.conn().await?;
        let mut tx = conn.start_transaction(TxOpts::default()).await?;
        let summary = summary_mark(&mut tx, corpid, &table).await?;
        let inserted = insert_records(&mut tx, corpid, &table, records).await?;
        if let Some(mark) = summary
            && inserted > 0
        {
            conversations::count_inserted(&mut tx, corpid, &table, mark).await?;
        }
        run_statements(&mut tx, extra).await?;
        tx.commit().await?;
        Ok(inserted)
    }

    /// The exact plaintext of a stored record (from `msgdata`, or from its
    /// parts when it was too big for one row); None when there is no such
    /// record, or it has no plaintext.
    pub async fn message_bytes(&self, corpid: &CorpId, msgid: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.ensure_message_table(corpid).await?;
        let mut conn = self.conn().await?;
        let row: Option<(Option<Vec<u8>>, u64)> = conn
            .exec_first(
                format!("SELECT msgdata, msgdata_parts FROM {} WHERE msgid = ?", corpid.message_table()),
                (msgid,),
            )
            .await?;
        let Some((inline, parts)) = row else { return Ok(None) };
        if parts == 0 {
            return Ok(inline);
        }
        let chunks: Vec<Vec<u8>> = conn
            .exec(
                "SELECT data FROM large_msgdata WHERE corpid = ? AND msgid_sha256 = ? ORDER BY part",
                (corpid.as_str(), super::quarantine::msgid_key(msgid)),
            )
            .await?;
        Ok(Some(chunks.concat()))
    }

    /// The key versions of the corp's records stored as `no_key` (what a key
    /// added later may decrypt: the control plane starts `redecrypt` then).
    pub async fn no_key_versions(&self, corpid: &CorpId) -> Result<Vec<u32>, StoreError> {
        self.ensure_message_table(corpid).await?;
        let mut conn = self.conn().await?;
        Ok(conn
            .query(format!(
                "SELECT DISTINCT publickey_ver FROM {} WHERE decrypt_status = 'no_key'",
                corpid.message_table()
            ))
            .await?)
    }
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
