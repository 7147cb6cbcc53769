//! The per-corp conversation summary (`conversations`, migration 0020) behind
//! the browser's conversation list.
//!
//! Grouping `message_<corpid>` on every list request costs a scan of the whole
//! table (seconds at a million messages), so each conversation's message count
//! and last time are kept in a row of their own, changed in the transaction
//! that changes the messages: an ingest batch ([`Store::commit_batch`]), a
//! quarantine replay ([`Store::insert_messages`]) and a redecrypt
//! ([`Store::complete_undecrypted`]), which moves a record out of the
//! undecrypted bucket into its room or pair.
//!
//! The deltas are computed in SQL by the same grouping the list used to run
//! over the whole table ([`summarize`]), only over the rows a transaction
//! wrote, so what counts as a room, a pair or an undecrypted record, and which
//! values are one conversation (the column collation: `Ab` and `ab ` are one
//! room, as they were in `GROUP BY roomid`), stays exactly what it was. A
//! conversation's row is keyed by a hash of the collation weights of its ids,
//! so the key is equal exactly when `GROUP BY` would have merged them.
//!
//! Every writer takes the corp's row in `conversation_summaries` FOR UPDATE
//! first, so summary writers of one corp run one at a time (ingest already
//! does, under the fence) and a plain read in such a transaction sees every
//! earlier writer's rows. A table with rows but no summary (an upgrade, an
//! adopted seed table) is summarized once under the same lock, by the first
//! process that uses it; writers that find no finished summary leave it to
//! that build, which then counts their rows.

use mysql_async::prelude::*;
use mysql_async::{Transaction, TxOpts, Value};

use super::browse::{Conversation, ConversationSummary};
use super::{CorpId, Store, StoreError};

/// `kind` of a group room (`a` is its roomid).
const ROOM: &str = "r";
/// `kind` of a one-to-one pair (`a` <= `b` in the column collation).
const PAIR: &str = "p";
/// `kind` of the undecrypted records (`a` and `b` empty).
const UNDECRYPTED: &str = "u";

/// Rows of one summary upsert (7 parameters each, far below any packet limit).
const UPSERT_ROWS: usize = 500;

/// One conversation's share of some message rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Part {
    key: Vec<u8>,
    kind: String,
    a: String,
    b: String,
    messages: u64,
    last_msgtime: i64,
}

/// The key of a conversation: the collation weights of its ids (trailing
/// spaces cut, as the PAD SPACE collations compare), hashed.
fn key_sql(kind: &str, a: &str, b: &str) -> String {
    let w = |col: &str| format!("HEX(WEIGHT_STRING(TRIM(TRAILING ' ' FROM {col})))");
    format!("UNHEX(SHA2(CONCAT('{kind}', ':', {}, ':', {}), 256))", w(a), w(b))
}

/// The conversations of the rows of `table` that `cond` (with `params`)
/// selects, grouped exactly as the list has always grouped them: rooms by
/// roomid; records outside rooms that decrypted (not switch records) by the
/// ordered pair of sender and first recipient; and every record whose status
/// is neither ok nor unparsed as the undecrypted bucket.
async fn summarize(
    tx: &mut Transaction<'_>,
    table: &str,
    cond: &str,
    params: &[Value],
) -> Result<Vec<Part>, StoreError> {
    let sql = format!(
        "SELECT '{ROOM}', roomid, '', COUNT(*), MAX(msgtime), {room_key}
         FROM {table} WHERE ({cond}) AND roomid <> '' GROUP BY roomid
         UNION ALL
         SELECT '{PAIR}', a, b, COUNT(*), MAX(msgtime), {pair_key} FROM (
             SELECT LEAST(msgfrom, r) AS a, GREATEST(msgfrom, r) AS b, msgtime FROM (
                 SELECT msgfrom, msgtime, JSON_UNQUOTE(JSON_EXTRACT(tolist, '$[0]')) AS r
                 FROM {table} WHERE ({cond}) AND roomid = '' AND decrypt_status = 'ok' AND action <> 'switch'
             ) t WHERE r IS NOT NULL
         ) p GROUP BY a, b
         UNION ALL
         SELECT '{UNDECRYPTED}', '', '', COUNT(*), MAX(msgtime), {undecrypted_key}
         FROM {table} WHERE ({cond}) AND decrypt_status NOT IN ('ok', 'unparsed') HAVING COUNT(*) > 0",
        room_key = key_sql(ROOM, "roomid", "''"),
        pair_key = key_sql(PAIR, "a", "b"),
        undecrypted_key = key_sql(UNDECRYPTED, "''", "''"),
    );
    let all: Vec<Value> = params.iter().chain(params).chain(params).cloned().collect();
    let rows: Vec<(String, String, String, u64, i64, Vec<u8>)> =
        if all.is_empty() { tx.query(sql).await? } else { tx.exec(sql, all).await? };
    let mut parts: Vec<Part> = rows
        .into_iter()
        .map(|(kind, a, b, messages, last_msgtime, key)| Part { key, kind, a, b, messages, last_msgtime })
        .collect();
    // One order for every writer's row locks.
    parts.sort_by(|x, y| x.key.cmp(&y.key));
    Ok(parts)
}

/// Adds parts to the corp's summary.
async fn add(tx: &mut Transaction<'_>, corpid: &CorpId, parts: &[Part]) -> Result<(), StoreError> {
    for chunk in parts.chunks(UPSERT_ROWS) {
        let sql = format!(
            "INSERT INTO conversations (corpid, key_hash, kind, a, b, messages, last_msgtime) VALUES {}
             ON DUPLICATE KEY UPDATE messages = messages + VALUES(messages),
                 last_msgtime = GREATEST(last_msgtime, VALUES(last_msgtime))",
            vec!["(?, ?, ?, ?, ?, ?, ?)"; chunk.len()].join(",")
        );
        let mut params: Vec<Value> = Vec::with_capacity(chunk.len() * 7);
        for p in chunk {
            params.extend([
                corpid.as_str().into(),
                p.key.clone().into(),
                p.kind.as_str().into(),
                p.a.as_str().into(),
                p.b.as_str().into(),
                p.messages.into(),
                p.last_msgtime.into(),
            ]);
        }
        tx.exec_drop(sql, params).await?;
    }
    Ok(())
}

/// Takes parts out of the corp's summary, after the rows they counted have
/// left (updated) in this transaction: the counts go down, and the last time
/// is read again from what remains (each read walks an index: the room's
/// `idx_room_time`, the pair's senders in `idx_from_time`, one entry per
/// status in `idx_status_time`).
async fn remove(
    tx: &mut Transaction<'_>,
    corpid: &CorpId,
    table: &str,
    parts: &[Part],
) -> Result<(), StoreError> {
    for p in parts {
        let last: Option<Option<i64>> = match p.kind.as_str() {
            ROOM => {
                tx.exec_first(format!("SELECT MAX(msgtime) FROM {table} WHERE roomid = ?"), (&p.a,)).await?
            }
            PAIR => {
                tx.exec_first(
                    format!(
                        "SELECT MAX(msgtime) FROM (
                             SELECT msgfrom, msgtime, JSON_UNQUOTE(JSON_EXTRACT(tolist, '$[0]')) AS r
                             FROM {table} WHERE msgfrom IN (?, ?) AND roomid = '' AND decrypt_status = 'ok'
                                 AND action <> 'switch'
                         ) t WHERE r IS NOT NULL AND LEAST(msgfrom, r) = ? AND GREATEST(msgfrom, r) = ?"
                    ),
                    (&p.a, &p.b, &p.a, &p.b),
                )
                .await?
            }
            _ => {
                tx.query_first(format!(
                    "SELECT MAX(m) FROM (
                         SELECT MAX(msgtime) AS m FROM {table}
                         WHERE decrypt_status NOT IN ('ok', 'unparsed') GROUP BY decrypt_status
                     ) s"
                ))
                .await?
            }
        };
        tx.exec_drop(
            "UPDATE conversations SET messages = messages - ?, last_msgtime = ?
             WHERE corpid = ? AND key_hash = ?",
            (p.messages, last.flatten().unwrap_or(0), corpid.as_str(), &p.key),
        )
        .await?;
    }
    if !parts.is_empty() {
        tx.exec_drop("DELETE FROM conversations WHERE corpid = ? AND messages = 0", (corpid.as_str(),))
            .await?;
    }
    Ok(())
}

/// Locks the corp's summary for this transaction; true when it is built (the
/// writer keeps it up to date), false when a later build will count the rows.
pub(super) async fn lock(tx: &mut Transaction<'_>, corpid: &CorpId) -> Result<bool, StoreError> {
    let built: Option<bool> = tx
        .exec_first(
            "SELECT built_at IS NOT NULL FROM conversation_summaries WHERE corpid = ? FOR UPDATE",
            (corpid.as_str(),),
        )
        .await?;
    Ok(built.unwrap_or(false))
}

/// Where the rows a transaction is about to insert will start: every row id
/// above it is this transaction's (writers of the corp run one at a time under
/// [`lock`], and ids only grow).
pub(super) async fn insert_mark(tx: &mut Transaction<'_>, table: &str) -> Result<u64, StoreError> {
    Ok(tx.query_first(format!("SELECT COALESCE(MAX(id), 0) FROM {table}")).await?.unwrap_or(0))
}

/// Counts the rows this transaction inserted after `mark`.
pub(super) async fn count_inserted(
    tx: &mut Transaction<'_>,
    corpid: &CorpId,
    table: &str,
    mark: u64,
) -> Result<(), StoreError> {
    let parts = summarize(tx, table, "id > ?", &[mark.into()]).await?;
    add(tx, corpid, &parts).await
}

/// The conversations row `id` counts in now (read before it changes).
pub(super) async fn row_parts(
    tx: &mut Transaction<'_>,
    table: &str,
    id: u64,
) -> Result<Vec<Part>, StoreError> {
    summarize(tx, table, "id = ?", &[id.into()]).await
}

/// Moves row `id` from the conversations it counted in (`before`) to those it
/// counts in now.
pub(super) async fn count_changed(
    tx: &mut Transaction<'_>,
    corpid: &CorpId,
    table: &str,
    id: u64,
    before: &[Part],
) -> Result<(), StoreError> {
    let after = row_parts(tx, table, id).await?;
    if after == before {
        return Ok(());
    }
    add(tx, corpid, &after).await?;
    remove(tx, corpid, table, before).await
}

impl Store {
    /// Builds the corp's summary from its message table unless it is built
    /// (once per corp: on an upgrade, the first use summarizes what is stored).
    pub(super) async fn ensure_conversation_summary(&self, corpid: &CorpId) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        conn.exec_drop("INSERT IGNORE INTO conversation_summaries (corpid) VALUES (?)", (corpid.as_str(),))
            .await?;
        let mut tx = conn.start_transaction(TxOpts::default()).await?;
        if lock(&mut tx, corpid).await? {
            tx.commit().await?;
            return Ok(());
        }
        let started = std::time::Instant::now();
        // Rows of a message table dropped and created again are not its rows.
        tx.exec_drop("DELETE FROM conversations WHERE corpid = ?", (corpid.as_str(),)).await?;
        let parts = summarize(&mut tx, &corpid.message_table(), "TRUE", &[]).await?;
        add(&mut tx, corpid, &parts).await?;
        tx.exec_drop(
            "UPDATE conversation_summaries SET built_at = NOW(3) WHERE corpid = ?",
            (corpid.as_str(),),
        )
        .await?;
        tx.commit().await?;
        tracing::info!(
            corpid = corpid.as_str(),
            conversations = parts.len(),
            secs = started.elapsed().as_secs_f64(),
            "built the conversation summary"
        );
        Ok(())
    }

    /// Every conversation of a corp with its message count and last time,
    /// newest first. `filter` keeps those whose room id or participant
    /// contains it (case-insensitively; the undecrypted records only when
    /// there is no filter).
    pub async fn conversations(
        &self,
        corpid: &CorpId,
        filter: &str,
    ) -> Result<Vec<ConversationSummary>, StoreError> {
        self.ensure_message_table(corpid).await?;
        let mut conn = self.conn().await?;
        // Rooms by roomid, then pairs, then the undecrypted records: the
        // order the grouped queries gave, so equal last times keep it.
        let rows: Vec<(String, String, String, u64, i64)> = conn
            .exec(
                "SELECT kind, a, b, messages, last_msgtime FROM conversations
                 WHERE corpid = ? AND messages > 0 ORDER BY FIELD(kind, 'r', 'p', 'u'), a, b",
                (corpid.as_str(),),
            )
            .await?;
        let f = filter.trim().to_lowercase();
        let keep = |s: &str| f.is_empty() || s.to_lowercase().contains(&f);
        let mut out: Vec<ConversationSummary> = rows
            .into_iter()
            .filter_map(|(kind, a, b, messages, last_msgtime)| {
                let conversation = match kind.as_str() {
                    ROOM if keep(&a) => Conversation::Room { roomid: a },
                    PAIR if keep(&a) || keep(&b) => Conversation::Pair { a, b },
                    UNDECRYPTED if f.is_empty() => Conversation::Undecrypted,
                    _ => return None,
                };
                Some(ConversationSummary { conversation, messages, last_msgtime })
            })
            .collect();
        out.sort_by_key(|c| std::cmp::Reverse(c.last_msgtime));
        Ok(out)
    }
}
