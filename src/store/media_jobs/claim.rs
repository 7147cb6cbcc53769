//! Claiming media jobs, and recording progress under a claim.
//!
//! A job is claimed by one conditional UPDATE (`pending` and due, or `downloading`
//! with an expired claim), so two workers — in one process or in two — never hold
//! it at once. The claim carries a random token; every later write is conditioned
//! on it, so a worker whose claim expired and was taken over can no longer move the
//! job (it notices at its next write and stops).

use std::time::Duration;

use mysql_async::Row;
use mysql_async::prelude::*;

use super::{CODE_CORRUPT, Job, clip, micros, retry_conflicts};
use crate::model::media::MediaKind;
use crate::store::{CorpId, Store, StoreError};

const JOB_COLUMNS: &str = "id, msgid, item_index, kind, sdkfileid, md5sum, size, filename, fileext, \
     emotion_type, msgtime, attempts, verify_failures, next_index, bytes_done, claim_token";

/// A job is claimable when it is pending and due, or claimed by someone whose claim expired.
const CLAIMABLE: &str = "((state = 'pending' AND next_attempt_at <= NOW(3)) \
     OR (state = 'downloading' AND (claimed_until IS NULL OR claimed_until < NOW(3))))";

fn job_from_row(mut r: Row) -> Job {
    let kind: String = r.take("kind").unwrap_or_default();
    Job {
        id: r.take("id").unwrap_or_default(),
        msgid: r.take("msgid").unwrap_or_default(),
        item_index: r.take("item_index").unwrap_or_default(),
        kind: MediaKind::from_msgtype(&kind).unwrap_or(MediaKind::File),
        sdkfileid: r.take("sdkfileid").unwrap_or_default(),
        md5sum: r.take("md5sum").unwrap_or_default(),
        size: r.take::<Option<u64>, _>("size").flatten(),
        filename: r.take("filename").unwrap_or_default(),
        fileext: r.take("fileext").unwrap_or_default(),
        emotion_type: r.take::<Option<i64>, _>("emotion_type").flatten(),
        msgtime: r.take("msgtime").unwrap_or_default(),
        attempts: r.take("attempts").unwrap_or_default(),
        verify_failures: r.take("verify_failures").unwrap_or_default(),
        next_index: r.take("next_index").unwrap_or_default(),
        bytes_done: r.take("bytes_done").unwrap_or_default(),
        claim_token: r.take("claim_token").unwrap_or_default(),
    }
}

impl Store {
    /// Puts `owner`'s own `downloading` jobs of the corp back in the queue: at
    /// start, no worker of that instance can still hold them (a crash or a kill
    /// left them behind). Returns how many.
    pub async fn reclaim_own_media_jobs(&self, corpid: &CorpId, owner: &str) -> Result<u64, StoreError> {
        retry_conflicts(|| async {
            let mut conn = self.conn().await?;
            conn.exec_drop(
                "UPDATE media_jobs SET state = 'pending', claimed_by = '', claim_token = 0, claimed_until = NULL
                 WHERE corpid = ? AND state = 'downloading' AND claimed_by = ?",
                (corpid.as_str(), owner),
            )
            .await?;
            Ok(conn.affected_rows())
        })
        .await
    }

    /// Claims the corp's next due job, if any, as `owner`, for `claim_ttl`.
    pub async fn claim_media_job(
        &self,
        corpid: &CorpId,
        owner: &str,
        claim_ttl: Duration,
    ) -> Result<Option<Job>, StoreError> {
        let mut conn = self.conn().await?;
        let ids: Vec<u64> = conn
            .exec(
                format!("SELECT id FROM media_jobs WHERE corpid = ? AND {CLAIMABLE} ORDER BY id LIMIT 16"),
                (corpid.as_str(),),
            )
            .await?;
        if ids.is_empty() {
            return Ok(None);
        }
        // Workers start at different candidates so they rarely race for the same row.
        let start = rand::random_range(0..ids.len().min(4));
        for id in ids[start..].iter().chain(&ids[..start]) {
            let token = rand::random::<u64>() | 1;
            let won = retry_conflicts(|| async {
                let mut conn = self.conn().await?;
                conn.exec_drop(
                    format!(
                        "UPDATE media_jobs SET state = 'downloading', claimed_by = ?, claim_token = ?,
                             claimed_until = NOW(3) + INTERVAL ? MICROSECOND
                         WHERE id = ? AND {CLAIMABLE}"
                    ),
                    (owner, token, micros(claim_ttl), id),
                )
                .await?;
                Ok(conn.affected_rows() == 1)
            })
            .await?;
            if !won {
                continue; // another worker was faster
            }
            let row: Result<Option<Row>, _> =
                conn.exec_first(format!("SELECT {JOB_COLUMNS} FROM media_jobs WHERE id = ?"), (id,)).await;
            let job = match row {
                Ok(Some(row)) => job_from_row(row),
                Ok(None) => continue, // deleted under us
                Err(e) => {
                    // Do not leave the job claimed until the claim expires.
                    let _ = conn
                        .exec_drop(
                            "UPDATE media_jobs SET state = 'pending', claimed_by = '', claim_token = 0,
                                 claimed_until = NULL WHERE id = ? AND claim_token = ?",
                            (id, token),
                        )
                        .await;
                    return Err(e.into());
                }
            };
            // Best effort: the message is derived again when the job settles.
            if let Err(e) = self.refresh_message_media(corpid, &job.msgid).await {
                tracing::warn!(corp = %corpid, msgid = %job.msgid, "marking the message as loading: {e}");
            }
            return Ok(Some(job));
        }
        Ok(None)
    }

    /// Runs one statement conditioned on the job's claim; true when it matched.
    async fn claimed_update(&self, sql: &str, params: mysql_async::Params) -> Result<bool, StoreError> {
        retry_conflicts(|| async {
            let mut conn = self.conn().await?;
            conn.exec_drop(sql, params.clone()).await?;
            Ok(conn.affected_rows() == 1)
        })
        .await
    }

    /// Records durable progress of a claimed job (the `.part` file is fsynced up
    /// to `bytes_done`) and renews the claim for `claim_ttl`. False when the claim
    /// was lost: stop working on the job.
    pub async fn record_media_progress(
        &self,
        job: &Job,
        claim_ttl: Duration,
        next_index: &str,
        bytes_done: u64,
        chunks: u32,
    ) -> Result<bool, StoreError> {
        // `chunks` grows with every write, so a matched row always changes and
        // counts as affected.
        self.claimed_update(
            "UPDATE media_jobs SET next_index = ?, bytes_done = ?, chunks = chunks + ?,
                 claimed_until = NOW(3) + INTERVAL ? MICROSECOND
             WHERE id = ? AND claim_token = ? AND state = 'downloading'",
            (next_index, bytes_done, chunks.max(1), micros(claim_ttl), job.id, job.claim_token).into(),
        )
        .await
    }

    /// Starts a claimed job over from zero after a verification failure (the
    /// `.part` file is already emptied), renewing the claim for `claim_ttl`.
    /// False when the claim was lost.
    pub async fn restart_media_job(
        &self,
        job: &Job,
        claim_ttl: Duration,
        verify_failures: u32,
        error: &str,
    ) -> Result<bool, StoreError> {
        self.claimed_update(
            "UPDATE media_jobs SET next_index = '', bytes_done = 0, verify_failures = ?, last_code = ?,
                 last_error = ?, claimed_until = NOW(3) + INTERVAL ? MICROSECOND
             WHERE id = ? AND claim_token = ? AND state = 'downloading'",
            (verify_failures, CODE_CORRUPT, clip(error), micros(claim_ttl), job.id, job.claim_token).into(),
        )
        .await
    }
}
