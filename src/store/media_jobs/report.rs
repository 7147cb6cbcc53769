//! What the media queue holds: counts, the backlog, what is left to wait for,
//! and the voice transcode bookkeeping.

use std::collections::BTreeMap;
use std::time::Duration;

use mysql_async::prelude::*;

use super::JobState;
use crate::store::{CorpId, Store, StoreError};

impl Store {
    /// Whether the corp has work that is not claimable yet: None when nothing is
    /// pending or downloading, else how long until the earliest of it may become
    /// claimable.
    pub async fn media_outstanding(&self, corpid: &CorpId) -> Result<Option<Duration>, StoreError> {
        let mut conn = self.conn().await?;
        let row: Option<(u64, Option<i64>)> = conn
            .exec_first(
                "SELECT COUNT(*), TIMESTAMPDIFF(MICROSECOND, NOW(3),
                     MIN(IF(state = 'pending', next_attempt_at, COALESCE(claimed_until, NOW(3)))))
                 FROM media_jobs WHERE corpid = ? AND state IN ('pending', 'downloading')",
                (corpid.as_str(),),
            )
            .await?;
        Ok(match row {
            Some((n, wait)) if n > 0 => Some(Duration::from_micros(wait.unwrap_or(0).max(0) as u64)),
            _ => None,
        })
    }

    /// The corp's jobs by state.
    pub async fn media_job_counts(&self, corpid: &CorpId) -> Result<BTreeMap<String, u64>, StoreError> {
        let mut conn = self.conn().await?;
        let rows: Vec<(String, u64)> = conn
            .exec(
                "SELECT state, COUNT(*) FROM media_jobs WHERE corpid = ? GROUP BY state",
                (corpid.as_str(),),
            )
            .await?;
        Ok(rows.into_iter().collect())
    }

    /// Jobs by state for every corp: `corpid → state → count`.
    pub async fn media_backlog(&self) -> Result<BTreeMap<String, BTreeMap<String, u64>>, StoreError> {
        let mut conn = self.conn().await?;
        let rows: Vec<(String, String, u64)> =
            conn.query("SELECT corpid, state, COUNT(*) FROM media_jobs GROUP BY corpid, state").await?;
        let mut out: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
        for (corp, state, n) in rows {
            out.entry(corp).or_default().insert(state, n);
        }
        Ok(out)
    }

    /// Records a job's voice transcode outcome.
    pub async fn set_media_transcode(&self, id: u64, state: &str, mp3_path: &str) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        conn.exec_drop(
            "UPDATE media_jobs SET transcode = ?, mp3_path = ? WHERE id = ?",
            (state, mp3_path, id),
        )
        .await?;
        Ok(())
    }

    /// The corp's stored voice files never transcoded (a crash between the two
    /// steps): `(id, path)`, at most `limit`.
    pub async fn untranscoded_media(
        &self,
        corpid: &CorpId,
        limit: u32,
    ) -> Result<Vec<(u64, String)>, StoreError> {
        let mut conn = self.conn().await?;
        Ok(conn
            .exec(
                format!(
                    "SELECT id, path FROM media_jobs
                     WHERE corpid = ? AND kind = 'voice' AND state IN {} AND transcode = '' LIMIT ?",
                    JobState::STORED_SQL
                ),
                (corpid.as_str(), limit),
            )
            .await?)
    }
}
