//! The `feishu_docs` table: what the documents backup knows of each document
//! of a user (migration 0012), so a run skips what did not change and a
//! killed run redoes only what was unfinished.

use mysql_async::prelude::*;

use super::{Store, StoreError};

/// A document's state as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocRow {
    /// The document token (a wiki node's `obj_token`).
    pub token: String,
    /// Feishu type (`docx`, `sheet`, `file`, …).
    pub doc_type: String,
    /// Title as Feishu lists it.
    pub title: String,
    /// Where the backup stored it, relative to the output directory.
    pub path: String,
    /// Feishu's modified time (unix seconds) when it was fetched.
    pub modified_time: i64,
    /// Bytes stored.
    pub size: Option<i64>,
    /// SHA-256 (hex) of the bytes stored.
    pub sha256: Option<String>,
    /// `pending`, `exported`, `downloaded`, `not_exportable` or `failed`.
    pub status: String,
    /// Why it failed or is not exportable.
    pub reason: String,
    /// A failure that will not change until the document does.
    pub permanent: bool,
    /// Export format used (empty for downloads).
    pub export_ext: String,
    /// An export task asked for and not yet collected.
    pub export_ticket: Option<String>,
    /// When that task was created (unix ms).
    pub export_ticket_at: Option<i64>,
    /// Last successful fetch (unix ms).
    pub last_backup_at: Option<i64>,
}

const COLUMNS: &str = "token, doc_type, title, path, modified_time, size, sha256, status, reason, permanent, \
                       export_ext, export_ticket, export_ticket_at, last_backup_at";

/// A row in [`COLUMNS`] order (more columns than mysql_async's tuples take).
fn from_row(mut r: mysql_async::Row) -> Result<DocRow, StoreError> {
    fn col<T: FromValue>(r: &mut mysql_async::Row, i: usize) -> Result<T, StoreError> {
        r.take_opt(i)
            .ok_or_else(|| StoreError::Invalid(format!("feishu_docs: column {i} missing")))?
            .map_err(|e| StoreError::Invalid(format!("feishu_docs: column {i}: {e}")))
    }
    Ok(DocRow {
        token: col(&mut r, 0)?,
        doc_type: col(&mut r, 1)?,
        title: col(&mut r, 2)?,
        path: col(&mut r, 3)?,
        modified_time: col(&mut r, 4)?,
        size: col(&mut r, 5)?,
        sha256: col(&mut r, 6)?,
        status: col(&mut r, 7)?,
        reason: col(&mut r, 8)?,
        permanent: col(&mut r, 9)?,
        export_ext: col(&mut r, 10)?,
        export_ticket: col(&mut r, 11)?,
        export_ticket_at: col(&mut r, 12)?,
        last_backup_at: col(&mut r, 13)?,
    })
}

/// Truncates to `max` characters (titles and reasons come from the server).
fn cap(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

impl Store {
    /// Every document row of (app, user).
    pub async fn feishu_docs(&self, app_id: &str, open_id: &str) -> Result<Vec<DocRow>, StoreError> {
        let mut conn = self.conn().await?;
        let rows: Vec<mysql_async::Row> = conn
            .exec(
                format!("SELECT {COLUMNS} FROM feishu_docs WHERE app_id = ? AND open_id = ?"),
                (app_id, open_id),
            )
            .await?;
        rows.into_iter().map(from_row).collect()
    }

    /// One document row.
    pub async fn feishu_doc(
        &self,
        app_id: &str,
        open_id: &str,
        token: &str,
    ) -> Result<Option<DocRow>, StoreError> {
        let mut conn = self.conn().await?;
        let row: Option<mysql_async::Row> = conn
            .exec_first(
                format!("SELECT {COLUMNS} FROM feishu_docs WHERE app_id = ? AND open_id = ? AND token = ?"),
                (app_id, open_id, token),
            )
            .await?;
        row.map(from_row).transpose()
    }

    /// Inserts or replaces a document row.
    pub async fn put_feishu_doc(&self, app_id: &str, open_id: &str, d: &DocRow) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        conn.exec_drop(
            "INSERT INTO feishu_docs (app_id, open_id, token, doc_type, title, path, modified_time, size, sha256,
                 status, reason, permanent, export_ext, export_ticket, export_ticket_at, last_backup_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON DUPLICATE KEY UPDATE doc_type = VALUES(doc_type), title = VALUES(title), path = VALUES(path),
                 modified_time = VALUES(modified_time), size = VALUES(size), sha256 = VALUES(sha256),
                 status = VALUES(status), reason = VALUES(reason), permanent = VALUES(permanent),
                 export_ext = VALUES(export_ext), export_ticket = VALUES(export_ticket),
                 export_ticket_at = VALUES(export_ticket_at), last_backup_at = VALUES(last_backup_at)",
            vec![
                mysql_async::Value::from(app_id),
                open_id.into(),
                d.token.as_str().into(),
                cap(&d.doc_type, 32).into(),
                cap(&d.title, 1024).into(),
                cap(&d.path, 3072).into(),
                d.modified_time.into(),
                d.size.into(),
                d.sha256.clone().into(),
                d.status.as_str().into(),
                cap(&d.reason, 1024).into(),
                d.permanent.into(),
                d.export_ext.as_str().into(),
                d.export_ticket.clone().into(),
                d.export_ticket_at.into(),
                d.last_backup_at.into(),
            ],
        )
        .await?;
        Ok(())
    }

    /// Remembers an export task asked for `token` (so a killed run can collect it).
    pub async fn set_feishu_doc_ticket(
        &self,
        app_id: &str,
        open_id: &str,
        token: &str,
        ticket: Option<&str>,
        at_ms: i64,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        conn.exec_drop(
            "UPDATE feishu_docs SET export_ticket = ?, export_ticket_at = ? WHERE app_id = ? AND open_id = ? AND token = ?",
            (ticket, ticket.map(|_| at_ms), app_id, open_id, token),
        )
        .await?;
        Ok(())
    }
}
