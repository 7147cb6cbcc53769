//! Settling media jobs, and keeping the seed's per-message media columns in step.
//!
//! The message row (`message_<corpid>`: `status`, `media_code`, `media_path`) is
//! derived from all of the message's jobs whenever one of them changes state:
//! - 4 (failed) when any job ended `failed`, `expired` or `corrupt`; `media_code` is
//!   that job's code (the SDK's, e.g. 10010; -1 when the file failed verification);
//! - else 3 (done) when every job is stored (`done`, or `unverified`: on disk,
//!   but the platform stated no md5 to check it against);
//! - else 2 (loading) when one is `downloading`;
//! - else 1 (not loaded: `pending` or `paused`).
//!
//! `media_path` is the path of the stored job with the lowest item index (the
//! message's own file for single-media messages), or "" when none is stored.
//! For a single-media message this is exactly the state of its index-0 job.
//! Every transaction that changes a job's state locks its message row first, so
//! the message's columns are derived from all of its jobs' latest outcomes.

use std::time::Duration;

use mysql_async::Transaction;
use mysql_async::prelude::*;

use super::{Job, JobState, Terminal, clip, micros, read_committed, retry_conflicts};
use crate::store::{CorpId, Store, StoreError};

/// The seed's per-message media columns, derived from a message's jobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageMedia {
    /// 1 not loaded, 2 loading, 3 done, 4 failed.
    pub status: i8,
    /// The failing job's code, else 0.
    pub code: i32,
    /// The first done file (lowest item index), else "".
    pub path: String,
}

/// The rule of this module's header, over a message's jobs in item order:
/// `(state, last_code, path)`.
pub fn message_media<'a>(jobs: impl IntoIterator<Item = (JobState, i32, &'a str)>) -> MessageMedia {
    let (mut n, mut done, mut busy) = (0, 0, 0);
    let (mut failed, mut path) = (None, None);
    for (state, code, p) in jobs {
        n += 1;
        match state {
            JobState::Done | JobState::Unverified => {
                done += 1;
                path.get_or_insert(p);
            }
            JobState::Downloading => busy += 1,
            JobState::Failed | JobState::Expired | JobState::Corrupt => {
                failed.get_or_insert(code);
            }
            JobState::Pending | JobState::Paused => {}
        }
    }
    let status = match failed {
        Some(_) => 4,
        None if n > 0 && done == n => 3,
        None if busy > 0 => 2,
        None => 1,
    };
    MessageMedia { status, code: failed.unwrap_or(0), path: path.unwrap_or("").to_owned() }
}

/// Locks the message row: every transaction that settles a job of a message
/// takes it first, so they run one at a time per message and each sees the
/// others' outcome when it derives the message's columns.
async fn lock_message(tx: &mut Transaction<'_>, corpid: &CorpId, msgid: &str) -> Result<(), StoreError> {
    let _: Option<u64> = tx
        .exec_first(format!("SELECT id FROM {} WHERE msgid = ? FOR UPDATE", corpid.message_table()), (msgid,))
        .await?;
    Ok(())
}

/// Writes the message's columns from its jobs (call with the message locked).
async fn refresh_message(tx: &mut Transaction<'_>, corpid: &CorpId, msgid: &str) -> Result<(), StoreError> {
    let jobs: Vec<(String, i32, String)> = tx
        .exec(
            "SELECT state, last_code, path FROM media_jobs WHERE corpid = ? AND msgid = ? ORDER BY item_index",
            (corpid.as_str(), msgid),
        )
        .await?;
    let m = message_media(
        jobs.iter().map(|(s, c, p)| (JobState::parse(s).unwrap_or(JobState::Pending), *c, p.as_str())),
    );
    tx.exec_drop(
        format!(
            "UPDATE {} SET status = ?, media_code = ?, media_path = ? WHERE msgid = ?",
            corpid.message_table()
        ),
        (m.status, m.code, m.path, msgid),
    )
    .await?;
    Ok(())
}

impl Store {
    /// Re-derives one message's media columns from its jobs.
    pub async fn refresh_message_media(&self, corpid: &CorpId, msgid: &str) -> Result<(), StoreError> {
        retry_conflicts(|| async {
            let mut conn = self.conn().await?;
            let mut tx = conn.start_transaction(read_committed()).await?;
            lock_message(&mut tx, corpid, msgid).await?;
            refresh_message(&mut tx, corpid, msgid).await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    /// Runs one job-changing statement in a transaction with the message locked
    /// first, and the message's columns derived after it; rolled back when the
    /// claim is no longer ours. True when it was.
    async fn settle_tx(
        &self,
        corpid: &CorpId,
        job: &Job,
        sql: &str,
        params: mysql_async::Params,
    ) -> Result<bool, StoreError> {
        retry_conflicts(|| async {
            let mut conn = self.conn().await?;
            let mut tx = conn.start_transaction(read_committed()).await?;
            lock_message(&mut tx, corpid, &job.msgid).await?;
            tx.exec_drop(sql, params.clone()).await?;
            let ours = tx.affected_rows() == 1;
            if ours {
                refresh_message(&mut tx, corpid, &job.msgid).await?;
                tx.commit().await?;
            } else {
                tx.rollback().await?;
            }
            Ok(ours)
        })
        .await
    }

    /// Gives a claimed job of the corp back to the queue, due again after `delay`;
    /// `failed_attempt` counts it against the job's bound. Progress is kept.
    /// False when the claim was lost.
    #[allow(clippy::too_many_arguments)]
    pub async fn release_media_job(
        &self,
        corpid: &CorpId,
        job: &Job,
        delay: Duration,
        failed_attempt: bool,
        code: i32,
        error: &str,
    ) -> Result<bool, StoreError> {
        self.settle_tx(
            corpid,
            job,
            "UPDATE media_jobs SET state = 'pending', claimed_by = '', claim_token = 0, claimed_until = NULL,
                 next_attempt_at = NOW(3) + INTERVAL ? MICROSECOND, attempts = attempts + ?,
                 last_code = ?, last_error = ?
             WHERE id = ? AND claim_token = ?",
            (micros(delay), u32::from(failed_attempt), code, clip(error), job.id, job.claim_token).into(),
        )
        .await
    }

    /// Settles a claimed job of the corp and its message in one transaction.
    /// `path` is the file relative to the media root (stored outcomes only).
    /// False when the claim was lost.
    #[allow(clippy::too_many_arguments)]
    pub async fn finish_media_job(
        &self,
        corpid: &CorpId,
        job: &Job,
        how: Terminal,
        path: &str,
        bytes: u64,
        code: i32,
        error: &str,
    ) -> Result<bool, StoreError> {
        if how.state().is_stored() {
            self.settle_tx(
                corpid,
                job,
                "UPDATE media_jobs SET state = ?, path = ?, bytes_done = ?, next_index = '',
                     last_code = 0, last_error = '', claimed_by = '', claim_token = 0, claimed_until = NULL,
                     finished_at = NOW(3)
                 WHERE id = ? AND claim_token = ?",
                (how.state().as_str(), path, bytes, job.id, job.claim_token).into(),
            )
            .await
        } else {
            let verify_failures = match how {
                Terminal::Corrupt { verify_failures } => verify_failures,
                _ => 0,
            };
            self.settle_tx(
                corpid,
                job,
                "UPDATE media_jobs SET state = ?, attempts = attempts + 1, last_code = ?, last_error = ?,
                     verify_failures = GREATEST(verify_failures, ?),
                     claimed_by = '', claim_token = 0, claimed_until = NULL, finished_at = NOW(3)
                 WHERE id = ? AND claim_token = ?",
                (how.state().as_str(), code, clip(error), verify_failures, job.id, job.claim_token).into(),
            )
            .await
        }
    }

    /// The corp's IP is refused: parks the claimed `job` and every pending job of
    /// the corp as `paused`. Returns how many jobs are paused now.
    pub async fn pause_media_jobs(
        &self,
        corpid: &CorpId,
        job: &Job,
        code: i32,
        error: &str,
    ) -> Result<u64, StoreError> {
        self.settle_tx(
            corpid,
            job,
            "UPDATE media_jobs SET state = 'paused', claimed_by = '', claim_token = 0, claimed_until = NULL,
                 last_code = ?, last_error = ?
             WHERE id = ? AND claim_token = ?",
            (code, clip(error), job.id, job.claim_token).into(),
        )
        .await?;
        retry_conflicts(|| async {
            let mut conn = self.conn().await?;
            let mut tx = conn.start_transaction(read_committed()).await?;
            tx.exec_drop(
                "UPDATE media_jobs SET state = 'paused' WHERE corpid = ? AND state = 'pending'",
                (corpid.as_str(),),
            )
            .await?;
            let paused: u64 = tx
                .exec_first(
                    "SELECT COUNT(*) FROM media_jobs WHERE corpid = ? AND state = 'paused'",
                    (corpid.as_str(),),
                )
                .await?
                .unwrap_or(0);
            tx.commit().await?;
            Ok(paused)
        })
        .await
    }

    /// Puts the corp's paused jobs back in the queue (after the pause window: a
    /// probe). Returns how many.
    pub async fn resume_paused_media_jobs(&self, corpid: &CorpId) -> Result<u64, StoreError> {
        retry_conflicts(|| async {
            let mut conn = self.conn().await?;
            let mut tx = conn.start_transaction(read_committed()).await?;
            tx.exec_drop(
                "UPDATE media_jobs SET state = 'pending', next_attempt_at = NOW(3) WHERE corpid = ? AND state = 'paused'",
                (corpid.as_str(),),
            )
            .await?;
            let n = tx.affected_rows();
            tx.commit().await?;
            Ok(n)
        })
        .await
    }

    /// `media retry`: puts jobs in `states` (of one corp, or all) back in the queue
    /// with fresh retry bounds, keeping their progress, and updates their messages.
    /// Returns how many jobs were requeued.
    pub async fn requeue_media_jobs(
        &self,
        corp: Option<&CorpId>,
        states: &[JobState],
    ) -> Result<u64, StoreError> {
        if states.is_empty() {
            return Ok(0);
        }
        let list = states.iter().map(|s| format!("'{}'", s.as_str())).collect::<Vec<_>>().join(",");
        let mut conn = self.conn().await?;
        let corps: Vec<String> = match corp {
            Some(c) => {
                conn.exec(
                    format!("SELECT DISTINCT corpid FROM media_jobs WHERE corpid = ? AND state IN ({list})"),
                    (c.as_str(),),
                )
                .await?
            }
            None => {
                conn.query(format!("SELECT DISTINCT corpid FROM media_jobs WHERE state IN ({list})")).await?
            }
        };
        drop(conn);
        let mut total = 0;
        for raw in corps {
            let Ok(corpid) = CorpId::new(&raw) else {
                tracing::warn!("media_jobs holds an invalid corp id {raw:?}; not requeued");
                continue;
            };
            self.ensure_message_table(&corpid).await?;
            let msgids = retry_conflicts(|| async {
                let mut conn = self.conn().await?;
                let mut tx = conn.start_transaction(read_committed()).await?;
                let msgids: Vec<String> = tx
                    .exec(
                        format!("SELECT DISTINCT msgid FROM media_jobs WHERE corpid = ? AND state IN ({list})"),
                        (corpid.as_str(),),
                    )
                    .await?;
                tx.exec_drop(
                    format!(
                        "UPDATE media_jobs SET state = 'pending', claimed_by = '', claim_token = 0, claimed_until = NULL,
                             attempts = 0, verify_failures = 0, next_attempt_at = NOW(3), last_error = ''
                         WHERE corpid = ? AND state IN ({list})"
                    ),
                    (corpid.as_str(),),
                )
                .await?;
                let n = tx.affected_rows();
                tx.commit().await?;
                Ok((n, msgids))
            })
            .await?;
            total += msgids.0;
            // Their messages are no longer failed (one short transaction each, so
            // running workers are not held up).
            for msgid in &msgids.1 {
                self.refresh_message_media(&corpid, msgid).await?;
            }
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::media_jobs::CODE_CORRUPT;

    #[test]
    fn message_columns_follow_the_rule() {
        use JobState::*;
        let m = |jobs: &[(JobState, i32, &'static str)]| message_media(jobs.iter().copied());
        let row = |status, code, path: &str| MessageMedia { status, code, path: path.to_owned() };
        // Single-media messages mirror their one job.
        assert_eq!(m(&[(Pending, 0, "")]), row(1, 0, ""));
        assert_eq!(m(&[(Paused, 10009, "")]), row(1, 0, ""));
        assert_eq!(m(&[(Downloading, 0, "")]), row(2, 0, ""));
        assert_eq!(m(&[(Done, 0, "c/202503/m.jpg")]), row(3, 0, "c/202503/m.jpg"));
        assert_eq!(m(&[(Expired, 10010, "")]), row(4, 10010, ""));
        assert_eq!(m(&[(Corrupt, CODE_CORRUPT, "")]), row(4, -1, ""));
        // Several: done only when all are; failed as soon as one failed for good
        // (its code: the first failed item's); the path of the first done item.
        assert_eq!(m(&[(Done, 0, "a_1.jpg"), (Pending, 0, "")]), row(1, 0, "a_1.jpg"));
        assert_eq!(m(&[(Done, 0, "a_1.jpg"), (Downloading, 0, "")]), row(2, 0, "a_1.jpg"));
        assert_eq!(m(&[(Done, 0, "a_1.jpg"), (Done, 0, "a_2.pdf")]), row(3, 0, "a_1.jpg"));
        // An unverified file is stored like a verified one.
        assert_eq!(m(&[(Unverified, 0, "a_1.amr"), (Done, 0, "a_2.pdf")]), row(3, 0, "a_1.amr"));
        assert_eq!(m(&[(Unverified, 0, "a_1.amr"), (Pending, 0, "")]), row(1, 0, "a_1.amr"));
        assert_eq!(m(&[(Pending, 0, ""), (Failed, 10002, ""), (Expired, 10010, "")]), row(4, 10002, ""));
        assert_eq!(m(&[(Done, 0, "a.jpg"), (Downloading, 0, ""), (Corrupt, -1, "")]), row(4, -1, "a.jpg"));
        assert_eq!(m(&[]), row(1, 0, ""));
    }
}
