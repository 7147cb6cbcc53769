//! `chain_links` and `chain_heads`: the per-corp hash chain's storage.
//!
//! The chain is extended inside the transactions that change message rows
//! (the batch commit and `redecrypt`), after the corp's head row is locked, so
//! links and rows commit or roll back together and two writers can never both
//! append at the same position. The arithmetic is in [`crate::archive::chain`].

use std::collections::{HashMap, HashSet};

use mysql_async::prelude::*;
use mysql_async::{Row, Transaction, Value};

use super::messages::NewMessage;
use super::{CorpId, Store, StoreError};
use crate::archive::chain::{GENESIS, Link, LinkKind, RecordView};

/// How many msgids one duplicate probe asks for.
const PROBE_CHUNK: usize = 1000;

/// Locks the corp's head row (creating it at the genesis) and returns (pos, head).
async fn lock_head(tx: &mut Transaction<'_>, corpid: &CorpId) -> Result<(u64, String), StoreError> {
    let sql = "SELECT pos, head FROM chain_heads WHERE corpid = ? FOR UPDATE";
    if let Some(h) = tx.exec_first(sql, (corpid.as_str(),)).await? {
        return Ok(h);
    }
    tx.exec_drop(
        "INSERT IGNORE INTO chain_heads (corpid, pos, head) VALUES (?, 0, ?)",
        (corpid.as_str(), GENESIS),
    )
    .await?;
    Ok(tx.exec_first(sql, (corpid.as_str(),)).await?.unwrap_or((0, GENESIS.to_owned())))
}

async fn append(tx: &mut Transaction<'_>, corpid: &CorpId, links: &[Link]) -> Result<(), StoreError> {
    let Some(last) = links.last() else { return Ok(()) };
    for chunk in links.chunks(PROBE_CHUNK) {
        let sql = format!(
            "INSERT INTO chain_links (corpid, pos, kind, msgid, seq, record_hash, link_hash) VALUES {}",
            vec!["(?,?,?,?,?,?,?)"; chunk.len()].join(",")
        );
        let mut params: Vec<Value> = Vec::with_capacity(chunk.len() * 7);
        for l in chunk {
            params.extend([
                corpid.as_str().into(),
                l.pos.into(),
                l.kind.as_str().into(),
                l.msgid.as_str().into(),
                l.seq.into(),
                l.record_hash.as_str().into(),
                l.link_hash.as_str().into(),
            ]);
        }
        tx.exec_drop(sql, params).await?;
    }
    tx.exec_drop(
        "UPDATE chain_heads SET pos = ?, head = ? WHERE corpid = ?",
        (last.pos, last.link_hash.as_str(), corpid.as_str()),
    )
    .await?;
    Ok(())
}

/// Appends an `insert` link for every record of a batch that is not stored yet,
/// in batch (seq) order. Runs inside the batch commit, before the inserts, while
/// the corp's state row is locked: a msgid absent now is inserted by this
/// transaction (the first of duplicates within the batch wins, as in the INSERT).
pub(crate) async fn extend_with_batch(
    tx: &mut Transaction<'_>,
    corpid: &CorpId,
    records: &[NewMessage],
) -> Result<(), StoreError> {
    if records.is_empty() {
        return Ok(());
    }
    let table = corpid.message_table();
    let mut stored: HashSet<String> = HashSet::new();
    for chunk in records.chunks(PROBE_CHUNK) {
        let sql = format!("SELECT msgid FROM {table} WHERE msgid IN ({})", vec!["?"; chunk.len()].join(","));
        let ids: Vec<String> =
            tx.exec(sql, chunk.iter().map(|r| r.msgid.as_str()).collect::<Vec<_>>()).await?;
        stored.extend(ids);
    }
    let (mut pos, mut head) = lock_head(tx, corpid).await?;
    let mut links = Vec::new();
    for r in records {
        if !stored.insert(r.msgid.clone()) {
            continue;
        }
        let link = Link::next(pos, &head, LinkKind::Insert, &r.msgid, r.seq, RecordView::of_new(r).hash());
        pos = link.pos;
        head.clone_from(&link.link_hash);
        links.push(link);
    }
    append(tx, corpid, &links).await
}

/// Appends a `redecrypt` link for a record `redecrypt` just rewrote (same
/// transaction). The row is read back rather than hashed from `record`, so the
/// link covers exactly what is stored (the UPDATE keeps msgid, seq and key version).
pub(crate) async fn extend_with_redecrypt(
    tx: &mut Transaction<'_>,
    corpid: &CorpId,
    record: &NewMessage,
) -> Result<(), StoreError> {
    let row: Option<Row> = tx
        .exec_first(
            format!("SELECT {RECORD_COLUMNS} FROM {} WHERE msgid = ?", corpid.message_table()),
            (record.msgid.as_str(),),
        )
        .await?;
    let Some(stored) = row.map(StoredRecord::from_row) else {
        return Err(StoreError::Invalid(format!(
            "redecrypt: {} vanished inside its transaction",
            record.msgid
        )));
    };
    let (pos, head) = lock_head(tx, corpid).await?;
    let link = Link::next(pos, &head, LinkKind::Redecrypt, &stored.msgid, stored.seq, stored.view().hash());
    append(tx, corpid, &[link]).await
}

/// A message row as `verify` and exports read it: every hashed field, owned.
#[derive(Clone, PartialEq)]
pub struct StoredRecord {
    /// Row id (insertion order).
    pub id: u64,
    /// Message id.
    pub msgid: String,
    /// Key version.
    pub publickey_ver: u32,
    /// Sequence number.
    pub seq: u64,
    /// send / recall / switch.
    pub action: String,
    /// Sender.
    pub msgfrom: String,
    /// Recipients (JSON array text).
    pub tolist: Option<String>,
    /// Message type.
    pub msgtype: String,
    /// Time in ms.
    pub msgtime: i64,
    /// Searchable rendering.
    pub text: Option<String>,
    /// sdkfileid column.
    pub sdkfield: Option<String>,
    /// Decrypted JSON bytes.
    pub msgdata: Option<Vec<u8>>,
    /// Group id.
    pub roomid: String,
    /// Decrypt outcome text.
    pub decrypt_status: String,
    /// SDK code.
    pub decrypt_code: i32,
    /// As received, while undecrypted.
    pub encrypt_random_key: Option<String>,
    /// As received, while undecrypted.
    pub encrypt_chat_msg: Option<String>,
}

impl std::fmt::Debug for StoredRecord {
    // Message bodies never reach logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredRecord")
            .field("id", &self.id)
            .field("msgid", &self.msgid)
            .field("seq", &self.seq)
            .field("msgtype", &self.msgtype)
            .finish_non_exhaustive()
    }
}

impl StoredRecord {
    /// The hashed view.
    pub fn view(&self) -> RecordView<'_> {
        RecordView {
            msgid: &self.msgid,
            publickey_ver: self.publickey_ver,
            seq: self.seq,
            action: &self.action,
            msgfrom: &self.msgfrom,
            tolist: self.tolist.as_deref(),
            msgtype: &self.msgtype,
            msgtime: self.msgtime,
            text: self.text.as_deref(),
            sdkfield: self.sdkfield.as_deref(),
            msgdata: self.msgdata.as_deref(),
            roomid: &self.roomid,
            decrypt_status: &self.decrypt_status,
            decrypt_code: self.decrypt_code,
            encrypt_random_key: self.encrypt_random_key.as_deref(),
            encrypt_chat_msg: self.encrypt_chat_msg.as_deref(),
        }
    }

    pub(crate) fn from_row(mut r: Row) -> StoredRecord {
        StoredRecord {
            id: r.take("id").unwrap_or_default(),
            msgid: r.take("msgid").unwrap_or_default(),
            publickey_ver: r.take("publickey_ver").unwrap_or_default(),
            seq: r.take("seq").unwrap_or_default(),
            action: r.take("action").unwrap_or_default(),
            msgfrom: r.take("msgfrom").unwrap_or_default(),
            tolist: r.take::<Option<String>, _>("tolist").flatten(),
            msgtype: r.take("msgtype").unwrap_or_default(),
            msgtime: r.take("msgtime").unwrap_or_default(),
            text: r.take::<Option<String>, _>("text").flatten(),
            sdkfield: r.take::<Option<String>, _>("sdkfield").flatten(),
            msgdata: r.take::<Option<Vec<u8>>, _>("msgdata").flatten(),
            roomid: r.take("roomid").unwrap_or_default(),
            decrypt_status: r.take("decrypt_status").unwrap_or_default(),
            decrypt_code: r.take("decrypt_code").unwrap_or_default(),
            encrypt_random_key: r.take::<Option<String>, _>("encrypt_random_key").flatten(),
            encrypt_chat_msg: r.take::<Option<String>, _>("encrypt_chat_msg").flatten(),
        }
    }
}

/// The columns [`StoredRecord`] reads.
pub const RECORD_COLUMNS: &str = "id, msgid, publickey_ver, seq, action, msgfrom, tolist, msgtype, msgtime, text, \
     sdkfield, msgdata, roomid, decrypt_status, decrypt_code, encrypt_random_key, encrypt_chat_msg";

/// A corp's chain head.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ChainHead {
    /// The corp.
    pub corpid: String,
    /// Links in the chain.
    pub pos: u64,
    /// The last link's hash.
    pub head: String,
}

fn link_from_row(r: (u64, String, String, u64, String, String)) -> Link {
    let (pos, kind, msgid, seq, record_hash, link_hash) = r;
    Link { pos, kind, msgid, seq, record_hash, link_hash }
}

const LINK_COLUMNS: &str = "pos, kind, msgid, seq, record_hash, link_hash";

impl Store {
    /// Every corp's chain head.
    pub async fn chain_heads(&self) -> Result<Vec<ChainHead>, StoreError> {
        let mut conn = self.conn().await?;
        let rows: Vec<(String, u64, String)> =
            conn.query("SELECT corpid, pos, head FROM chain_heads ORDER BY corpid").await?;
        Ok(rows.into_iter().map(|(corpid, pos, head)| ChainHead { corpid, pos, head }).collect())
    }

    /// One corp's chain head (the genesis when it has no chain yet).
    pub async fn chain_head(&self, corpid: &CorpId) -> Result<ChainHead, StoreError> {
        let mut conn = self.conn().await?;
        let row: Option<(u64, String)> =
            conn.exec_first("SELECT pos, head FROM chain_heads WHERE corpid = ?", (corpid.as_str(),)).await?;
        let (pos, head) = row.unwrap_or((0, GENESIS.to_owned()));
        Ok(ChainHead { corpid: corpid.to_string(), pos, head })
    }

    /// Links after `after_pos`, in order.
    pub async fn chain_links(
        &self,
        corpid: &CorpId,
        after_pos: u64,
        limit: u32,
    ) -> Result<Vec<Link>, StoreError> {
        let mut conn = self.conn().await?;
        let rows: Vec<(u64, String, String, u64, String, String)> = conn
            .exec(
                format!(
                    "SELECT {LINK_COLUMNS} FROM chain_links WHERE corpid = ? AND pos > ? ORDER BY pos LIMIT ?"
                ),
                (corpid.as_str(), after_pos, limit),
            )
            .await?;
        Ok(rows.into_iter().map(link_from_row).collect())
    }

    /// The link at `pos`.
    pub async fn chain_link(&self, corpid: &CorpId, pos: u64) -> Result<Option<Link>, StoreError> {
        let mut conn = self.conn().await?;
        let row: Option<(u64, String, String, u64, String, String)> = conn
            .exec_first(
                format!("SELECT {LINK_COLUMNS} FROM chain_links WHERE corpid = ? AND pos = ?"),
                (corpid.as_str(), pos),
            )
            .await?;
        Ok(row.map(link_from_row))
    }

    /// The links of the given msgids (all kinds), in chain order.
    pub async fn chain_links_of(&self, corpid: &CorpId, msgids: &[String]) -> Result<Vec<Link>, StoreError> {
        let mut out = Vec::new();
        let mut conn = self.conn().await?;
        for chunk in msgids.chunks(PROBE_CHUNK) {
            let sql = format!(
                "SELECT {LINK_COLUMNS} FROM chain_links WHERE corpid = ? AND msgid IN ({}) ORDER BY pos",
                vec!["?"; chunk.len()].join(",")
            );
            let mut params: Vec<Value> = vec![corpid.as_str().into()];
            params.extend(chunk.iter().map(|m| Value::from(m.as_str())));
            let rows: Vec<(u64, String, String, u64, String, String)> = conn.exec(sql, params).await?;
            out.extend(rows.into_iter().map(link_from_row));
        }
        out.sort_by_key(|l| l.pos);
        Ok(out)
    }

    /// The first `insert` link whose record has seq >= `seq`.
    pub async fn chain_first_at_seq(&self, corpid: &CorpId, seq: u64) -> Result<Option<Link>, StoreError> {
        let mut conn = self.conn().await?;
        let row: Option<(u64, String, String, u64, String, String)> = conn
            .exec_first(
                format!(
                    "SELECT {LINK_COLUMNS} FROM chain_links WHERE corpid = ? AND kind = 'insert' AND seq >= ?
                     ORDER BY pos LIMIT 1"
                ),
                (corpid.as_str(), seq),
            )
            .await?;
        Ok(row.map(link_from_row))
    }

    /// For every record `redecrypt` rewrote: the record hash of its latest link.
    pub async fn chain_redecrypted(&self, corpid: &CorpId) -> Result<HashMap<String, String>, StoreError> {
        let mut conn = self.conn().await?;
        let rows: Vec<(String, String)> = conn
            .exec(
                "SELECT msgid, record_hash FROM chain_links WHERE corpid = ? AND kind = 'redecrypt' ORDER BY pos",
                (corpid.as_str(),),
            )
            .await?;
        // Later links override earlier ones.
        Ok(rows.into_iter().collect())
    }

    /// Whether the chain has a link for `msgid`.
    pub async fn chain_has(&self, corpid: &CorpId, msgid: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn().await?;
        let n: Option<u64> = conn
            .exec_first(
                "SELECT COUNT(*) FROM chain_links WHERE corpid = ? AND msgid = ?",
                (corpid.as_str(), msgid),
            )
            .await?;
        Ok(n.unwrap_or(0) > 0)
    }

    /// Stored records with row id > `after_id`, in insertion order.
    pub async fn records_after(
        &self,
        corpid: &CorpId,
        after_id: u64,
        limit: u32,
    ) -> Result<Vec<StoredRecord>, StoreError> {
        self.ensure_message_table(corpid).await?;
        let mut conn = self.conn().await?;
        let rows: Vec<Row> = conn
            .exec(
                format!(
                    "SELECT {RECORD_COLUMNS} FROM {} WHERE id > ? ORDER BY id LIMIT ?",
                    corpid.message_table()
                ),
                (after_id, limit),
            )
            .await?;
        Ok(rows.into_iter().map(StoredRecord::from_row).collect())
    }

    /// The stored record with this msgid.
    pub async fn record_by_msgid(
        &self,
        corpid: &CorpId,
        msgid: &str,
    ) -> Result<Option<StoredRecord>, StoreError> {
        self.ensure_message_table(corpid).await?;
        let mut conn = self.conn().await?;
        let row: Option<Row> = conn
            .exec_first(
                format!("SELECT {RECORD_COLUMNS} FROM {} WHERE msgid = ?", corpid.message_table()),
                (msgid,),
            )
            .await?;
        Ok(row.map(StoredRecord::from_row))
    }
}
