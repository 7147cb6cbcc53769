//! Read-only queries of the archive browser and exports over `message_<corpid>`
//! and `media_jobs`: pages of one conversation, media files (the conversation
//! list is in [`super::conversations`]).
//!
//! Every page query walks an index in order (`idx_room_time` for group rooms,
//! `idx_pair_time` for one-to-one pairs) and stops at the page size, so a
//! page costs the same on a corp of a thousand or a million messages.

use mysql_async::prelude::*;
use mysql_async::{Row, Value};

use super::chain::{RECORD_COLUMNS, StoredRecord};
use super::{CorpId, Store, StoreError};

/// A conversation of a corp.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Conversation {
    /// A group room.
    Room {
        /// Its roomid.
        roomid: String,
    },
    /// Two people writing one to one (a <= b).
    Pair {
        /// One of them.
        a: String,
        /// The other.
        b: String,
    },
    /// Records that could not be decrypted (they have no sender or room yet).
    Undecrypted,
}

impl Conversation {
    /// A pair in canonical order.
    pub fn pair(x: &str, y: &str) -> Conversation {
        let (a, b) = if x <= y { (x, y) } else { (y, x) };
        Conversation::Pair { a: a.to_owned(), b: b.to_owned() }
    }

    /// The conversation a stored record belongs to: its room, the pair of its
    /// sender and first recipient, or the undecrypted records.
    pub fn of(r: &StoredRecord) -> Conversation {
        if !r.roomid.is_empty() {
            return Conversation::Room { roomid: r.roomid.clone() };
        }
        if !matches!(r.decrypt_status.as_str(), "ok" | "unparsed") {
            return Conversation::Undecrypted;
        }
        let peer = r
            .tolist
            .as_deref()
            .and_then(|t| serde_json::from_str::<Vec<String>>(t).ok())
            .and_then(|v| v.into_iter().next())
            .unwrap_or_default();
        Conversation::pair(&r.msgfrom, &peer)
    }

    /// How it is named on a page.
    pub fn title(&self) -> String {
        match self {
            Conversation::Room { roomid } => format!("Group {roomid}"),
            Conversation::Pair { a, b } => format!("{a} ↔ {b}"),
            Conversation::Undecrypted => "Undecrypted records".to_owned(),
        }
    }
}

/// One line of a corp's conversation list.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConversationSummary {
    /// Which conversation.
    pub conversation: Conversation,
    /// Messages in it.
    pub messages: u64,
    /// Time of its last message (ms).
    pub last_msgtime: i64,
}

/// Where a page starts: after this (msgtime, id), in time order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PageCursor {
    /// Message time (ms).
    pub msgtime: i64,
    /// Row id (ties).
    pub id: u64,
}

/// Which records an export takes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExportSelection {
    /// One group room.
    Room(String),
    /// Everything a person sent or received (one-to-one and in rooms).
    User(String),
    /// The whole corp.
    All,
}

/// A media item's files, relative to the media root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaFile {
    /// Message id.
    pub msgid: String,
    /// Item index (0: the message's own).
    pub item_index: u32,
    /// Queue state.
    pub state: String,
    /// The file ('' until done).
    pub path: String,
    /// The MP3 of a voice ('' when none).
    pub mp3_path: String,
    /// The media kind.
    pub kind: String,
}

impl Store {
    /// Up to `limit` records of a conversation after `after`, in time order.
    pub async fn conversation_page(
        &self,
        corpid: &CorpId,
        conv: &Conversation,
        after: PageCursor,
        until_ms: Option<i64>,
        limit: u32,
    ) -> Result<Vec<StoredRecord>, StoreError> {
        self.ensure_message_table(corpid).await?;
        let table = corpid.message_table();
        let until = until_ms.unwrap_or(i64::MAX);
        let order = "ORDER BY msgtime, id";
        let mut conn = self.conn().await?;
        let after_clause = "(msgtime > ? OR (msgtime = ? AND id > ?)) AND msgtime <= ?";
        let rows: Vec<Row> = match conv {
            Conversation::Room { roomid } => {
                conn.exec(
                    format!(
                        "SELECT {RECORD_COLUMNS} FROM {table} FORCE INDEX (idx_room_time)
                         WHERE roomid = ? AND {after_clause} {order} LIMIT ?"
                    ),
                    vec![
                        Value::from(roomid),
                        after.msgtime.into(),
                        after.msgtime.into(),
                        after.id.into(),
                        until.into(),
                        limit.into(),
                    ],
                )
                .await?
            }
            Conversation::Pair { a, b } => {
                // Per direction two ranges of idx_pair_time, each walked in
                // time order and stopped at `limit`: the sender's records whose
                // one recipient is the other (`peer`), and those `peer` cannot
                // name ('': switch records, several or unusual recipients). A
                // sender's other conversations are never read, and the JSON
                // test still decides, as it did when this walked all of the
                // sender's records.
                let side = |peer: &str| {
                    format!(
                        "(SELECT {RECORD_COLUMNS} FROM {table} FORCE INDEX (idx_pair_time)
                          WHERE msgfrom = ? AND {peer} AND roomid = '' AND {after_clause}
                            AND (JSON_CONTAINS(tolist, JSON_QUOTE(?)) OR action = 'switch') {order} LIMIT ?)"
                    )
                };
                let directions = if a == b { vec![(a, b)] } else { vec![(a, b), (b, a)] };
                let mut sides = Vec::new();
                let mut params: Vec<Value> = Vec::new();
                for (x, y) in directions {
                    // `peer <> ''` keeps the ranges apart whatever `y` is.
                    for peer in [Some(y), None] {
                        params.push(Value::from(x));
                        match peer {
                            Some(p) => {
                                sides.push(side("peer = ? AND peer <> ''"));
                                params.push(Value::from(p));
                            }
                            None => sides.push(side("peer = ''")),
                        }
                        params.extend([
                            after.msgtime.into(),
                            after.msgtime.into(),
                            after.id.into(),
                            until.into(),
                            Value::from(y),
                            limit.into(),
                        ]);
                    }
                }
                let sql = format!("SELECT * FROM ({}) u {order} LIMIT {limit}", sides.join(" UNION ALL "));
                conn.exec(sql, params).await?
            }
            Conversation::Undecrypted => {
                conn.exec(
                    format!(
                        "SELECT {RECORD_COLUMNS} FROM {table}
                         WHERE decrypt_status NOT IN ('ok', 'unparsed') AND {after_clause} {order} LIMIT ?"
                    ),
                    vec![
                        Value::from(after.msgtime),
                        after.msgtime.into(),
                        after.id.into(),
                        until.into(),
                        limit.into(),
                    ],
                )
                .await?
            }
        };
        Ok(rows.into_iter().map(StoredRecord::from_row).collect())
    }

    /// Records by row id (search hits), in the order asked.
    pub async fn records_by_id(&self, corpid: &CorpId, ids: &[u64]) -> Result<Vec<StoredRecord>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.ensure_message_table(corpid).await?;
        let mut conn = self.conn().await?;
        let rows: Vec<Row> = conn
            .exec(
                format!(
                    "SELECT {RECORD_COLUMNS} FROM {} WHERE id IN ({})",
                    corpid.message_table(),
                    vec!["?"; ids.len()].join(",")
                ),
                ids.iter().map(|i| Value::from(*i)).collect::<Vec<_>>(),
            )
            .await?;
        let mut by_id: std::collections::HashMap<u64, StoredRecord> =
            rows.into_iter().map(StoredRecord::from_row).map(|r| (r.id, r)).collect();
        Ok(ids.iter().filter_map(|id| by_id.remove(id)).collect())
    }

    /// Up to `limit` records of an export with row id > `after_id`, in row
    /// (= seq) order, with msgtime in `[from_ms, to_ms)`.
    pub async fn export_page(
        &self,
        corpid: &CorpId,
        selection: &ExportSelection,
        from_ms: i64,
        to_ms: i64,
        after_id: u64,
        limit: u32,
    ) -> Result<Vec<StoredRecord>, StoreError> {
        self.ensure_message_table(corpid).await?;
        let table = corpid.message_table();
        let mut params: Vec<Value> = vec![after_id.into(), from_ms.into(), to_ms.into()];
        let which = match selection {
            ExportSelection::Room(r) => {
                params.push(r.into());
                "AND roomid = ?"
            }
            ExportSelection::User(u) => {
                params.extend([Value::from(u), Value::from(u)]);
                "AND (msgfrom = ? OR JSON_CONTAINS(tolist, JSON_QUOTE(?)))"
            }
            ExportSelection::All => "",
        };
        params.push(limit.into());
        let mut conn = self.conn().await?;
        let rows: Vec<Row> = conn
            .exec(
                format!(
                    "SELECT {RECORD_COLUMNS} FROM {table} WHERE id > ? AND msgtime >= ? AND msgtime < ? {which}
                     ORDER BY id LIMIT ?"
                ),
                params,
            )
            .await?;
        Ok(rows.into_iter().map(StoredRecord::from_row).collect())
    }

    /// The media files of these messages.
    pub async fn media_files(
        &self,
        corpid: &CorpId,
        msgids: &[String],
    ) -> Result<Vec<MediaFile>, StoreError> {
        let mut out = Vec::new();
        let mut conn = self.conn().await?;
        for chunk in msgids.chunks(1000) {
            let sql = format!(
                "SELECT msgid, item_index, state, path, mp3_path, kind FROM media_jobs
                 WHERE corpid = ? AND msgid IN ({})",
                vec!["?"; chunk.len()].join(",")
            );
            let mut params: Vec<Value> = vec![corpid.as_str().into()];
            params.extend(chunk.iter().map(|m| Value::from(m.as_str())));
            let rows: Vec<(String, u32, String, String, String, String)> = conn.exec(sql, params).await?;
            out.extend(rows.into_iter().map(|(msgid, item_index, state, path, mp3_path, kind)| MediaFile {
                msgid,
                item_index,
                state,
                path,
                mp3_path,
                kind,
            }));
        }
        Ok(out)
    }
}
