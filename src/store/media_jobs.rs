//! Creating media queue rows in the message transaction.

use mysql_async::Value;

use super::CorpId;
use super::messages::TxStatement;
use crate::wecom::media_refs::MediaRef;

/// Columns written when a job is created.
const COLUMNS: &str =
    "corpid, msgid, item_index, kind, sdkfileid, md5sum, size, filename, fileext, emotion_type, msgtime";
const WIDTH: usize = 11;

/// One INSERT for all media of a batch (idempotent on (corpid, msgid, item_index)),
/// to run inside the batch's transaction. None when there is no media.
pub fn enqueue_statement<'a>(
    corpid: &CorpId,
    items: impl IntoIterator<Item = (&'a str, i64, &'a MediaRef)>,
) -> Option<TxStatement> {
    let mut params: Vec<Value> = Vec::new();
    let mut rows = 0;
    for (msgid, msgtime, m) in items {
        params.extend([
            corpid.as_str().into(),
            msgid.into(),
            m.index.into(),
            m.kind.as_str().into(),
            m.sdkfileid.as_str().into(),
            m.md5sum.as_str().into(),
            m.size.into(),
            m.filename.clone().unwrap_or_default().chars().take(1000).collect::<String>().into(),
            m.fileext.clone().unwrap_or_default().chars().take(60).collect::<String>().into(),
            m.emotion_type.into(),
            msgtime.into(),
        ]);
        rows += 1;
    }
    if rows == 0 {
        return None;
    }
    let row = format!("({})", ["?"; WIDTH].join(","));
    let sql = format!(
        "INSERT INTO media_jobs ({COLUMNS}) VALUES {} ON DUPLICATE KEY UPDATE id = id",
        vec![row.as_str(); rows].join(",")
    );
    Some(TxStatement { sql, params })
}
