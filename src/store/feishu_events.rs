//! The `feishu_events` table: webhook events stored durably before Feishu
//! gets its 200, processed afterwards. `(app_id, event_id)` is the primary
//! key, so a replay that slipped past Redis is still refused here.

use mysql_async::prelude::*;

use super::{Store, StoreError};

/// A stored event still to process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// The app.
    pub app_id: String,
    /// `header.event_id`.
    pub event_id: String,
    /// `header.event_type`.
    pub event_type: String,
    /// The decrypted envelope (JSON text).
    pub payload: String,
}

impl Store {
    /// Stores an event; false when `(app_id, event_id)` was already stored.
    pub async fn insert_feishu_event(&self, e: &StoredEvent) -> Result<bool, StoreError> {
        let mut conn = self.conn().await?;
        conn.exec_drop(
            "INSERT INTO feishu_events (app_id, event_id, event_type, payload) VALUES (?, ?, ?, ?)
             ON DUPLICATE KEY UPDATE app_id = app_id",
            (&e.app_id, &e.event_id, &e.event_type, &e.payload),
        )
        .await?;
        Ok(conn.affected_rows() == 1)
    }

    /// Whether an event is stored.
    pub async fn feishu_event_exists(&self, app_id: &str, event_id: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn().await?;
        let n: Option<u64> = conn
            .exec_first(
                "SELECT COUNT(*) FROM feishu_events WHERE app_id = ? AND event_id = ?",
                (app_id, event_id),
            )
            .await?;
        Ok(n.unwrap_or(0) > 0)
    }

    /// Marks an event processed (with the error, if processing failed).
    pub async fn mark_feishu_event_processed(
        &self,
        app_id: &str,
        event_id: &str,
        error: &str,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        let error: String = error.chars().take(500).collect();
        conn.exec_drop(
            "UPDATE feishu_events SET processed_at = CURRENT_TIMESTAMP(3), process_error = ?
             WHERE app_id = ? AND event_id = ?",
            (error, app_id, event_id),
        )
        .await?;
        Ok(())
    }

    /// Events stored but not processed (a crash between the 200 and the
    /// processing leaves them here), oldest first.
    pub async fn unprocessed_feishu_events(&self, limit: u32) -> Result<Vec<StoredEvent>, StoreError> {
        let mut conn = self.conn().await?;
        let rows: Vec<(String, String, String, String)> = conn
            .exec(
                "SELECT app_id, event_id, event_type, payload FROM feishu_events
                 WHERE processed_at IS NULL ORDER BY received_at LIMIT ?",
                (limit,),
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|(app_id, event_id, event_type, payload)| StoredEvent {
                app_id,
                event_id,
                event_type,
                payload,
            })
            .collect())
    }

    /// Number of stored events (all apps).
    pub async fn count_feishu_events(&self) -> Result<u64, StoreError> {
        let mut conn = self.conn().await?;
        let n: Option<u64> = conn.query_first("SELECT COUNT(*) FROM feishu_events").await?;
        Ok(n.unwrap_or(0))
    }
}
