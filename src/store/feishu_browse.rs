//! What the archive browser shows of the Feishu modules: the people whose
//! meeting recordings or documents are archived, and those files.

use mysql_async::prelude::*;

use super::{Store, StoreError};

/// A person with archived Feishu material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeishuPerson {
    /// The app the person authorized.
    pub app_id: String,
    /// Their open_id.
    pub open_id: String,
    /// Their name as Feishu gave it ("" if they never authorized).
    pub name: String,
    /// Recording jobs, and how many are archived.
    pub recordings: u64,
    /// Archived recordings.
    pub recordings_done: u64,
    /// Backed-up document entries.
    pub documents: u64,
}

/// A meeting recording of one person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingRow {
    /// Row id (for links).
    pub id: u64,
    /// Meeting id.
    pub meeting_id: String,
    /// Topic.
    pub topic: String,
    /// Start, Unix seconds.
    pub start_time: i64,
    /// Job state.
    pub state: String,
    /// The file relative to the media root ("" until done).
    pub path: String,
    /// Its size.
    pub bytes: Option<u64>,
    /// Its sha256.
    pub sha256: String,
    /// Why it is not (yet) archived.
    pub last_error: String,
}

/// A backed-up document of one person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentRow {
    /// The document's token.
    pub token: String,
    /// Its type (docx, sheet, file, …).
    pub doc_type: String,
    /// Its title.
    pub title: String,
    /// The file relative to the backup's folder.
    pub path: String,
    /// Size and sha256 of the copy.
    pub size: Option<u64>,
    /// sha256 of the copy.
    pub sha256: Option<String>,
    /// exported, downloaded, unchanged, not_exportable, failed.
    pub status: String,
    /// Why, for the last two.
    pub reason: String,
    /// Last backup, ms.
    pub last_backup_at: Option<i64>,
}

impl Store {
    /// Everyone with recordings or documents, by app and name.
    pub async fn feishu_people(&self) -> Result<Vec<FeishuPerson>, StoreError> {
        let mut conn = self.conn().await?;
        let rows: Vec<(String, String, Option<String>, u64, u64, u64)> = conn
            .query(
                "SELECT p.app_id, p.open_id, MAX(u.name),
                        CAST(SUM(p.recordings) AS UNSIGNED), CAST(SUM(p.done) AS UNSIGNED),
                        CAST(SUM(p.documents) AS UNSIGNED)
                 FROM (
                     SELECT app_id, owner_open_id AS open_id, COUNT(*) AS recordings,
                            SUM(state = 'done') AS done, 0 AS documents
                     FROM feishu_recordings GROUP BY app_id, owner_open_id
                     UNION ALL
                     SELECT app_id, open_id, 0, 0, COUNT(*) FROM feishu_docs GROUP BY app_id, open_id
                 ) p
                 LEFT JOIN feishu_users u ON u.app_id = p.app_id AND u.open_id = p.open_id
                 GROUP BY p.app_id, p.open_id
                 ORDER BY p.app_id, MAX(u.name), p.open_id",
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|(app_id, open_id, name, recordings, recordings_done, documents)| FeishuPerson {
                app_id,
                open_id,
                name: name.unwrap_or_default(),
                recordings,
                recordings_done,
                documents,
            })
            .collect())
    }

    /// One person's recordings, newest first.
    pub async fn feishu_recordings_of(
        &self,
        app_id: &str,
        open_id: &str,
    ) -> Result<Vec<RecordingRow>, StoreError> {
        let mut conn = self.conn().await?;
        type Rec = (u64, String, String, i64, String, String, Option<u64>, String, String);
        let rows: Vec<Rec> = conn
            .exec(
                "SELECT id, meeting_id, topic, start_time, state, path, bytes, sha256, last_error
                 FROM feishu_recordings WHERE app_id = ? AND owner_open_id = ?
                 ORDER BY start_time DESC, id DESC LIMIT 1000",
                (app_id, open_id),
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|(id, meeting_id, topic, start_time, state, path, bytes, sha256, last_error)| RecordingRow {
                id,
                meeting_id,
                topic,
                start_time,
                state,
                path,
                bytes,
                sha256,
                last_error,
            })
            .collect())
    }

    /// One recording of one person (its path is checked against both).
    pub async fn feishu_recording(
        &self,
        app_id: &str,
        open_id: &str,
        id: u64,
    ) -> Result<Option<RecordingRow>, StoreError> {
        Ok(self.feishu_recordings_of(app_id, open_id).await?.into_iter().find(|r| r.id == id))
    }

    /// One person's backed-up documents, by path.
    pub async fn feishu_documents_of(
        &self,
        app_id: &str,
        open_id: &str,
    ) -> Result<Vec<DocumentRow>, StoreError> {
        let mut conn = self.conn().await?;
        type Doc = (String, String, String, String, Option<u64>, Option<String>, String, String, Option<i64>);
        let rows: Vec<Doc> = conn
            .exec(
                "SELECT token, doc_type, title, path, size, sha256, status, reason, last_backup_at
                 FROM feishu_docs WHERE app_id = ? AND open_id = ? ORDER BY path, token LIMIT 5000",
                (app_id, open_id),
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|(token, doc_type, title, path, size, sha256, status, reason, last_backup_at)| DocumentRow {
                token,
                doc_type,
                title,
                path,
                size,
                sha256,
                status,
                reason,
                last_backup_at,
            })
            .collect())
    }
}
