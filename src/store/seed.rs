//! Taking over the message tables of the Java tool (`wework-msgaudit`).
//!
//! That tool creates `message_<corpid>` with the same column names but other
//! types and meanings: `tolist` comma-separated (ours: a JSON array), `msgdata`
//! the message type's sub-object as text (ours: the whole decrypted JSON as
//! bytes), often `TEXT` where we index (`msgfrom`, `roomid`, `msgid`), often
//! utf8 (3-byte) rather than utf8mb4, and no cursor but `MAX(seq)` of the
//! table. Left alone, `ensure_message_table`'s index DDL fails on a `TEXT
//! msgfrom` and the corp never starts.
//!
//! [`Store::adopt_seed_table`] converts such a table once, before the corp's
//! first pull, and records it in `seed_adoptions`:
//!
//! 1. the table is converted to utf8mb4 (lossless from utf8);
//! 2. NULLs are replaced with the column's default where ours is NOT NULL, and
//!    every column of ours is given our type (a value that does not fit stops
//!    the adoption with the column named; nothing is cut);
//! 3. `tolist` of every old row becomes a JSON array of the same ids, in order;
//! 4. a unique key on `msgid` is added (duplicates stop the adoption, named);
//! 5. the cursor (`corp_state.seq`) starts after the table's `MAX(seq)`.
//!
//! Old rows keep their `msgdata` (the Java tool's sub-object), `text`,
//! `media_path` (`/msgfile/<corpid>/<seq>.<ext>`) and `media_code`; rows with
//! `id <= seed_adoptions.seed_max_id` are the old ones.

use mysql_async::prelude::*;

use super::{CorpId, Store, StoreError};

/// Our definition of each column the Java tool also has (mirrors
/// `table_ddl` in messages.rs, which creates new tables), and whether values
/// must fit a length.
const COLUMNS: &[(&str, &str, Option<u32>)] = &[
    ("msgid", "VARCHAR(191) NOT NULL", Some(191)),
    ("publickey_ver", "INT UNSIGNED NOT NULL DEFAULT 0", None),
    ("seq", "BIGINT UNSIGNED NOT NULL DEFAULT 0", None),
    ("action", "VARCHAR(16) NOT NULL DEFAULT ''", Some(16)),
    ("msgfrom", "VARCHAR(191) NOT NULL DEFAULT ''", Some(191)),
    ("tolist", "MEDIUMTEXT NULL", None),
    ("msgtype", "VARCHAR(64) NOT NULL DEFAULT ''", Some(64)),
    ("msgtime", "BIGINT NOT NULL DEFAULT 0", None),
    ("text", "MEDIUMTEXT NULL", None),
    ("sdkfield", "TEXT NULL", None),
    ("msgdata", "LONGBLOB NULL", None),
    ("status", "TINYINT NOT NULL DEFAULT 0", None),
    ("media_code", "INT NOT NULL DEFAULT 0", None),
    ("media_path", "VARCHAR(1024) NOT NULL DEFAULT ''", Some(1024)),
    ("roomid", "VARCHAR(191) NOT NULL DEFAULT ''", Some(191)),
    ("created", "DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)", None),
];

/// What an adoption did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Adoption {
    /// Rows the table held.
    pub rows: u64,
    /// Their largest seq (the cursor starts after it).
    pub max_seq: u64,
    /// Their largest id.
    pub max_id: u64,
    /// Rows whose comma-separated `tolist` became a JSON array.
    pub tolist_converted: u64,
    /// The schema changes made, for the log and `seed_adoptions.changes`.
    pub changes: Vec<String>,
}

/// The Java tool's `tolist` (`a,b,c`) as a JSON array (`["a","b","c"]`);
/// values that are JSON arrays already are returned unchanged.
pub fn tolist_to_json(old: &str) -> String {
    let t = old.trim();
    if t.starts_with('[') && serde_json::from_str::<Vec<String>>(t).is_ok() {
        return t.to_owned();
    }
    let ids: Vec<&str> = t.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
    serde_json::to_string(&ids).expect("strings serialise")
}

fn invalid(table: &str, what: String) -> StoreError {
    StoreError::Invalid(format!("taking over the Java tool's table {table}: {what}"))
}

impl Store {
    /// Converts `message_<corpid>` if the Java tool created it (see the module
    /// doc). None: nothing to do (no such table, ours already, or adopted).
    pub async fn adopt_seed_table(&self, corpid: &CorpId) -> Result<Option<Adoption>, StoreError> {
        let table = corpid.message_table();
        let name = format!("message_{}", corpid.as_str());
        let mut conn = self.conn().await?;
        let done: Option<String> =
            conn.exec_first("SELECT corpid FROM seed_adoptions WHERE corpid = ?", (corpid.as_str(),)).await?;
        if done.is_some() {
            return Ok(None);
        }
        let columns: Vec<(String, String, String, Option<String>)> = conn
            .exec(
                "SELECT COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, CHARACTER_SET_NAME FROM information_schema.COLUMNS
                 WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
                (&name,),
            )
            .await?;
        // No table, or one this service created (it has our columns).
        if columns.is_empty() || columns.iter().any(|(c, ..)| c == "decrypt_status") {
            return Ok(None);
        }
        let has = |col: &str| columns.iter().find(|(c, ..)| c.eq_ignore_ascii_case(col));
        let mut report = Adoption::default();
        let (rows, max_seq, max_id): (u64, Option<u64>, Option<u64>) = conn
            .query_first(format!("SELECT COUNT(*), MAX(seq), MAX(id) FROM {table}"))
            .await?
            .unwrap_or((0, None, None));
        report.rows = rows;
        report.max_seq = max_seq.unwrap_or(0);
        report.max_id = max_id.unwrap_or(0);

        // 1. utf8mb4 (utf8mb3 values are a subset: nothing changes but the width).
        let table_charset: Option<String> = conn
            .exec_first(
                "SELECT CCSA.CHARACTER_SET_NAME FROM information_schema.TABLES T
                 JOIN information_schema.COLLATION_CHARACTER_SET_APPLICABILITY CCSA
                   ON CCSA.COLLATION_NAME = T.TABLE_COLLATION
                 WHERE T.TABLE_SCHEMA = DATABASE() AND T.TABLE_NAME = ?",
                (&name,),
            )
            .await?;
        let narrow = |cs: &Option<String>| cs.as_deref().is_some_and(|c| c != "utf8mb4" && c != "binary");
        if narrow(&table_charset) || columns.iter().any(|(_, _, _, cs)| narrow(cs)) {
            conn.query_drop(format!("ALTER TABLE {table} CONVERT TO CHARACTER SET utf8mb4")).await?;
            report.changes.push(format!("converted from {} to utf8mb4", table_charset.unwrap_or_default()));
        }

        // 2. Our types, column by column.
        for (col, def, max_len) in COLUMNS {
            let Some((_, ty, nullable, _)) = has(col) else {
                conn.query_drop(format!("ALTER TABLE {table} ADD COLUMN IF NOT EXISTS `{col}` {def}"))
                    .await?;
                report.changes.push(format!("added {col}"));
                continue;
            };
            if let Some(limit) = max_len {
                let longest: Option<u64> = conn
                    .query_first(format!("SELECT MAX(CHAR_LENGTH(`{col}`)) FROM {table}"))
                    .await?
                    .flatten();
                if let Some(n) = longest.filter(|n| n > &u64::from(*limit)) {
                    return Err(invalid(
                        &name,
                        format!("column {col} holds a value of {n} characters; ours holds {limit}"),
                    ));
                }
            }
            if def.contains("NOT NULL") && nullable == "YES" {
                let fill = if *col == "created" {
                    "CURRENT_TIMESTAMP(3)"
                } else if def.starts_with("VARCHAR") {
                    "''"
                } else {
                    "0"
                };
                conn.query_drop(format!("UPDATE {table} SET `{col}` = {fill} WHERE `{col}` IS NULL")).await?;
            }
            let wanted = def.split(' ').next().unwrap_or(def).to_ascii_lowercase();
            let same_type = ty.to_ascii_lowercase().replace(' ', "") == wanted.replace(' ', "")
                || (wanted == "int" && ty.starts_with("int(") && !ty.contains("unsigned"));
            let same_null = (nullable == "YES") != def.contains("NOT NULL");
            if same_type && same_null {
                continue;
            }
            conn.query_drop(format!("ALTER TABLE {table} MODIFY COLUMN `{col}` {def}")).await?;
            report.changes.push(format!("{col}: {ty} -> {def}"));
        }

        // 3. tolist: comma-separated -> JSON array, in id order, in pages.
        let mut after = 0u64;
        loop {
            let page: Vec<(u64, Option<String>)> = conn
                .exec(
                    format!(
                        "SELECT id, tolist FROM {table} WHERE id > ? AND id <= ? AND tolist IS NOT NULL
                         ORDER BY id LIMIT 1000"
                    ),
                    (after, report.max_id),
                )
                .await?;
            let Some(last) = page.last().map(|(id, _)| *id) else { break };
            for (id, old) in page {
                let Some(old) = old else { continue };
                let new = tolist_to_json(&old);
                if new != old {
                    conn.exec_drop(format!("UPDATE {table} SET tolist = ? WHERE id = ?"), (&new, id)).await?;
                    report.tolist_converted += 1;
                }
            }
            after = last;
        }

        // 4. Inserts are idempotent on msgid: a unique key on it.
        let unique: Option<String> = conn
            .exec_first(
                "SELECT INDEX_NAME FROM information_schema.STATISTICS
                 WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? AND COLUMN_NAME = 'msgid'
                   AND NON_UNIQUE = 0 AND SEQ_IN_INDEX = 1",
                (&name,),
            )
            .await?;
        if unique.is_none() {
            let dups: Option<u64> = conn
                .query_first(format!(
                    "SELECT COUNT(*) FROM (SELECT msgid FROM {table} GROUP BY msgid HAVING COUNT(*) > 1) d"
                ))
                .await?;
            if let Some(n) = dups.filter(|n| *n > 0) {
                return Err(invalid(
                    &name,
                    format!("{n} msgid(s) are stored more than once; remove the duplicates, then run again"),
                ));
            }
            conn.query_drop(format!("ALTER TABLE {table} ADD UNIQUE KEY uk_msgid (msgid)")).await?;
            report.changes.push("added a unique key on msgid".into());
        }

        // 5. The cursor starts after the old rows; record the adoption.
        let mut tx = conn.start_transaction(Default::default()).await?;
        tx.exec_drop(
            "INSERT INTO corp_state (corpid, seq) VALUES (?, ?) ON DUPLICATE KEY UPDATE seq = GREATEST(seq, VALUES(seq))",
            (corpid.as_str(), report.max_seq),
        )
        .await?;
        tx.exec_drop(
            "INSERT INTO seed_adoptions (corpid, seed_rows, seed_max_seq, seed_max_id, tolist_converted, changes)
             VALUES (?, ?, ?, ?, ?, ?)",
            (
                corpid.as_str(),
                report.rows,
                report.max_seq,
                report.max_id,
                report.tolist_converted,
                report.changes.join("; "),
            ),
        )
        .await?;
        tx.commit().await?;
        tracing::info!(
            corp = %corpid,
            rows = report.rows,
            max_seq = report.max_seq,
            tolist_converted = report.tolist_converted,
            changes = %report.changes.join("; "),
            "took over the Java tool's message table"
        );
        Ok(Some(report))
    }

    /// Adopts the Java tool's table of every corp in corplist (`migrate`).
    pub async fn adopt_seed_tables(&self) -> Result<Vec<(CorpId, Adoption)>, StoreError> {
        let mut out = Vec::new();
        for row in self.corps().await? {
            let Ok(id) = row.corp_id() else { continue };
            if let Some(a) = self.adopt_seed_table(&id).await? {
                out.push((id, a));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolist_becomes_a_json_array() {
        assert_eq!(tolist_to_json("zhangsan,lisi"), r#"["zhangsan","lisi"]"#);
        assert_eq!(tolist_to_json("wmXyz"), r#"["wmXyz"]"#);
        assert_eq!(tolist_to_json(""), "[]");
        assert_eq!(tolist_to_json(r#"["a","b"]"#), r#"["a","b"]"#);
        assert_eq!(tolist_to_json(r#"a"b,c\d"#), r#"["a\"b","c\\d"]"#);
    }
}
