//! Reads of the search indexer: the stored records a run of chain links names.

use mysql_async::Row;
use mysql_async::prelude::*;

use super::chain::{RECORD_COLUMNS, StoredRecord};
use super::{CorpId, Store, StoreError};

/// How many msgids one query asks for.
const CHUNK: usize = 1000;

impl Store {
    /// The stored records with these msgids (those that exist), in no particular order.
    pub async fn records_by_msgids(
        &self,
        corpid: &CorpId,
        msgids: &[String],
    ) -> Result<Vec<StoredRecord>, StoreError> {
        if msgids.is_empty() {
            return Ok(Vec::new());
        }
        self.ensure_message_table(corpid).await?;
        let table = corpid.message_table();
        let mut conn = self.conn().await?;
        let mut out = Vec::with_capacity(msgids.len());
        for chunk in msgids.chunks(CHUNK) {
            let sql = format!(
                "SELECT {RECORD_COLUMNS} FROM {table} WHERE msgid IN ({})",
                vec!["?"; chunk.len()].join(",")
            );
            let rows: Vec<Row> = conn.exec(sql, chunk.iter().map(String::as_str).collect::<Vec<_>>()).await?;
            out.extend(rows.into_iter().map(StoredRecord::from_row));
        }
        Ok(out)
    }
}
