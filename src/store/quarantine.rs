//! The quarantine: envelope items the archive could not store, kept verbatim
//! with the reason, so one bad record never stalls its corp (issue #9) and
//! nothing it sent is lost. See migrations/0005_hostile_records.sql.

use mysql_async::prelude::*;
use mysql_async::{Row, TxOpts};

use super::{CorpId, Store, StoreError};

/// Hex sha256 of a msgid: the key of a quarantined item and of a big
/// plaintext's parts, whatever the msgid's length.
pub fn msgid_key(msgid: &str) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, msgid.as_bytes()))
}

/// Bytes of one part row: well under the default `max_allowed_packet` of
/// 16 MiB (and the 4 MiB of old MySQL servers).
pub const PART_BYTES: usize = 2 << 20;

/// Items up to this size are kept in one row.
const INLINE_BYTES: usize = 2 << 20;

/// A quarantined item, without its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantined {
    /// Row id (what `quarantine retry --id` takes).
    pub id: u64,
    /// The corp.
    pub corpid: String,
    /// The item's msgid ("" when it had none).
    pub msgid: String,
    /// Its seq (0 when it had none).
    pub seq: u64,
    /// Why it could not be stored.
    pub error: String,
    /// held | replayed.
    pub state: String,
    /// How often it was quarantined.
    pub attempts: u32,
    /// Size of the raw item.
    pub bytes: u64,
}

impl Store {
    /// Keeps `raw_item` (the chatdata item as received) with `error`; a
    /// second failure of the same msgid replaces the bytes and counts up.
    pub async fn quarantine_put(
        &self,
        corpid: &CorpId,
        msgid: &str,
        seq: u64,
        raw_item: &[u8],
        error: &str,
    ) -> Result<u64, StoreError> {
        let key = msgid_key(msgid);
        let error: String = error.chars().take(2000).collect();
        let inline = raw_item.len() <= INLINE_BYTES;
        let parts: Vec<&[u8]> = if inline { Vec::new() } else { raw_item.chunks(PART_BYTES).collect() };
        let mut conn = self.conn().await?;
        let mut tx = conn.start_transaction(TxOpts::default()).await?;
        tx.exec_drop(
            "INSERT INTO quarantine (corpid, msgid_sha256, msgid, seq, raw_item, raw_parts, error)
             VALUES (?, ?, ?, ?, ?, ?, ?)
             ON DUPLICATE KEY UPDATE seq = VALUES(seq), raw_item = VALUES(raw_item),
                 raw_parts = VALUES(raw_parts), error = VALUES(error), state = 'held', attempts = attempts + 1",
            (
                corpid.as_str(),
                &key,
                msgid,
                seq,
                inline.then_some(raw_item),
                parts.len() as u64,
                &error,
            ),
        )
        .await?;
        let id: u64 = tx
            .exec_first(
                "SELECT id FROM quarantine WHERE corpid = ? AND msgid_sha256 = ?",
                (corpid.as_str(), &key),
            )
            .await?
            .unwrap_or(0);
        tx.exec_drop("DELETE FROM quarantine_parts WHERE quarantine_id = ?", (id,)).await?;
        for (n, part) in parts.iter().enumerate() {
            tx.exec_drop(
                "INSERT INTO quarantine_parts (quarantine_id, part, data) VALUES (?, ?, ?)",
                (id, n as u64, *part),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(id)
    }

    /// Quarantined items, oldest first: of one corp or all, `held` only unless `all`.
    pub async fn quarantined(
        &self,
        corpid: Option<&CorpId>,
        all: bool,
    ) -> Result<Vec<Quarantined>, StoreError> {
        let mut conn = self.conn().await?;
        let rows: Vec<Row> = conn
            .exec(
                "SELECT id, corpid, msgid, seq, error, state, attempts,
                     IF(raw_parts = 0, LENGTH(raw_item),
                        (SELECT COALESCE(SUM(LENGTH(data)), 0) FROM quarantine_parts p WHERE p.quarantine_id = q.id)) AS bytes
                 FROM quarantine q WHERE (? IS NULL OR corpid = ?) AND (? OR state = 'held') ORDER BY id",
                (corpid.map(CorpId::as_str), corpid.map(CorpId::as_str), all),
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|mut r| Quarantined {
                id: r.take("id").unwrap_or_default(),
                corpid: r.take("corpid").unwrap_or_default(),
                msgid: r.take("msgid").unwrap_or_default(),
                seq: r.take("seq").unwrap_or_default(),
                error: r.take("error").unwrap_or_default(),
                state: r.take("state").unwrap_or_default(),
                attempts: r.take("attempts").unwrap_or_default(),
                bytes: r.take::<Option<u64>, _>("bytes").flatten().unwrap_or_default(),
            })
            .collect())
    }

    /// The raw item of a quarantined entry, exactly as it was kept.
    pub async fn quarantine_raw(&self, id: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let mut conn = self.conn().await?;
        let row: Option<(Option<Vec<u8>>, u64)> =
            conn.exec_first("SELECT raw_item, raw_parts FROM quarantine WHERE id = ?", (id,)).await?;
        let Some((inline, parts)) = row else { return Ok(None) };
        if parts == 0 {
            return Ok(Some(inline.unwrap_or_default()));
        }
        let chunks: Vec<Vec<u8>> = conn
            .exec("SELECT data FROM quarantine_parts WHERE quarantine_id = ? ORDER BY part", (id,))
            .await?;
        Ok(Some(chunks.concat()))
    }

    /// Marks an entry replayed (stored in the archive now); its bytes stay.
    pub async fn quarantine_mark_replayed(&self, id: u64) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        conn.exec_drop("UPDATE quarantine SET state = 'replayed' WHERE id = ?", (id,)).await?;
        Ok(())
    }

    /// Number of held entries of a corp (for `status`).
    pub async fn quarantine_held(&self, corpid: &CorpId) -> Result<u64, StoreError> {
        let mut conn = self.conn().await?;
        Ok(conn
            .exec_first(
                "SELECT COUNT(*) FROM quarantine WHERE corpid = ? AND state = 'held'",
                (corpid.as_str(),),
            )
            .await?
            .unwrap_or(0))
    }
}
