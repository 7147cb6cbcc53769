//! What `/metrics` reads from the database at a scrape: corplist counts,
//! each corp's pull state with its undecryptable records by reason, and the
//! media queue by corp and state. `http::metrics` caches it for a few
//! seconds and renders it; the SQL lives here, with the tables' other owners.

use mysql_async::prelude::*;

use super::{CorpId, Store, StoreError};

/// Per-corp numbers from the database.
#[derive(Debug, Clone, Default)]
pub struct CorpRowStats {
    /// Corp id.
    pub corpid: String,
    /// Committed cursor.
    pub seq: u64,
    /// Fencing token.
    pub fence: u64,
    /// Seconds since the cursor last moved.
    pub cursor_age: Option<f64>,
    /// Seconds since the last successful pull.
    pub success_age: Option<f64>,
    /// Alarm raised.
    pub alarm: bool,
    /// Stored records not (fully) decrypted, by reason.
    pub undecryptable: Vec<(String, u64)>,
}

/// The database side of a scrape.
#[derive(Debug, Clone, Default)]
pub struct MetricsFacts {
    /// corplist: (enabled, total).
    pub corps: (u64, u64),
    /// Per corp with pull state, by corp id.
    pub states: Vec<CorpRowStats>,
    /// media_jobs: (corp, state, count, sum of sizes).
    pub media: Vec<(String, String, u64, u64)>,
}

impl Store {
    /// Reads [`MetricsFacts`] on one connection.
    pub async fn metrics_facts(&self) -> Result<MetricsFacts, StoreError> {
        let mut conn = self.conn().await?;
        let corps: Option<(Option<u64>, u64)> =
            conn.query_first("SELECT SUM(status = 1), COUNT(*) FROM corplist").await?;
        let corps = corps.map_or((0, 0), |(e, t)| (e.unwrap_or(0), t));
        type StateRow = (String, u64, u64, Option<f64>, Option<f64>, i64);
        let rows: Vec<StateRow> = conn
            .query(
                "SELECT corpid, seq, fence,
                        TIMESTAMPDIFF(MICROSECOND, last_progress_at, NOW(3)) / 1e6,
                        TIMESTAMPDIFF(MICROSECOND, last_success_at, NOW(3)) / 1e6,
                        alarm <> ''
                 FROM corp_state ORDER BY corpid",
            )
            .await?;
        let mut states = Vec::with_capacity(rows.len());
        for (corpid, seq, fence, cursor_age, success_age, alarm) in rows {
            let mut undecryptable = Vec::new();
            if let Ok(id) = CorpId::new(&corpid) {
                // Uses the decrypt_status index: only undecrypted rows are read.
                let q = format!(
                    "SELECT decrypt_status, COUNT(*) FROM {} WHERE decrypt_status <> 'ok' GROUP BY decrypt_status",
                    id.message_table()
                );
                match conn.query::<(String, u64), _>(q).await {
                    Ok(v) => undecryptable = v,
                    // No table yet (state claimed, nothing stored): nothing undecryptable.
                    Err(mysql_async::Error::Server(e)) if e.code == 1146 => {}
                    Err(e) => return Err(e.into()),
                }
            }
            states.push(CorpRowStats {
                corpid,
                seq,
                fence,
                cursor_age,
                success_age,
                alarm: alarm != 0,
                undecryptable,
            });
        }
        let media: Vec<(String, String, u64, Option<u64>)> = conn
            .query(
                "SELECT corpid, state, COUNT(*), SUM(size) FROM media_jobs
                 GROUP BY corpid, state ORDER BY corpid, state",
            )
            .await?;
        let media = media.into_iter().map(|(c, s, n, b)| (c, s, n, b.unwrap_or(0))).collect();
        Ok(MetricsFacts { corps, states, media })
    }
}
