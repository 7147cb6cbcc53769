//! The media queue in SQL: claiming jobs, recording progress, settling them, and
//! keeping the seed's per-message media columns in step.
//!
//! A job is claimed by one conditional UPDATE (`pending` and due, or `downloading`
//! with an expired claim), so two workers — in one process or in two — never hold
//! it at once. The claim carries a random token; every later write is conditioned
//! on it, so a worker whose claim expired and was taken over can no longer move the
//! job (it notices at its next write and stops).
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

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use mysql_async::prelude::*;
use mysql_async::{IsolationLevel, Row, Transaction, TxOpts};

use crate::store::alarms::AlarmKind;
use crate::store::{CorpId, Store, StoreError};
use crate::wecom::media_refs::MediaKind;

/// `media_code` of a file that failed verification (size or md5) every time.
pub const CODE_CORRUPT: i32 = -1;

/// A job's state (`media_jobs.state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum JobState {
    /// Waiting (possibly until `next_attempt_at`).
    Pending,
    /// Claimed by a worker.
    Downloading,
    /// On disk and verified: the stated md5 matched.
    Done,
    /// On disk, but the platform stated no md5 (meeting_voice_call, some
    /// emotions): only the stated size, if any, and the declared type's magic
    /// bytes were checked. A state of its own so an auditor can tell the two
    /// apart; everything that serves or counts stored files takes both.
    Unverified,
    /// Gave up after bounded retries.
    Failed,
    /// The server says the media expired (10010 / 301048).
    Expired,
    /// Never matched its stated size or md5.
    Corrupt,
    /// Held back while the corp's IP is refused (10009 / 301042).
    Paused,
}

impl JobState {
    /// Every state.
    pub const ALL: [JobState; 8] = [
        JobState::Pending,
        JobState::Downloading,
        JobState::Done,
        JobState::Unverified,
        JobState::Failed,
        JobState::Expired,
        JobState::Corrupt,
        JobState::Paused,
    ];

    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Downloading => "downloading",
            JobState::Done => "done",
            JobState::Unverified => "unverified",
            JobState::Failed => "failed",
            JobState::Expired => "expired",
            JobState::Corrupt => "corrupt",
            JobState::Paused => "paused",
        }
    }

    /// Parses the stored text.
    pub fn parse(s: &str) -> Option<JobState> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// The file is in place (verified or not).
    pub fn is_stored(self) -> bool {
        matches!(self, JobState::Done | JobState::Unverified)
    }

    /// `is_stored` on the stored text.
    pub fn is_stored_str(s: &str) -> bool {
        Self::parse(s).is_some_and(Self::is_stored)
    }

    /// `is_stored` as an SQL list, for `state IN …`.
    pub const STORED_SQL: &'static str = "('done', 'unverified')";

    /// States `media retry` puts back in the queue.
    pub const RETRYABLE: [JobState; 4] =
        [JobState::Failed, JobState::Corrupt, JobState::Expired, JobState::Paused];
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A claimed job: what the worker needs to download, verify and place the file.
#[derive(Debug, Clone)]
pub struct Job {
    /// Row id.
    pub id: u64,
    /// The message.
    pub msgid: String,
    /// 0 = the message's own media, 1.. nested.
    pub item_index: u32,
    /// The kind (unknown kinds are treated as files).
    pub kind: MediaKind,
    /// For GetMediaData.
    pub sdkfileid: String,
    /// Stated md5 (may be empty).
    pub md5sum: String,
    /// Stated size.
    pub size: Option<u64>,
    /// Stated file name (unsanitised).
    pub filename: String,
    /// Stated extension (unsanitised).
    pub fileext: String,
    /// Emotion type.
    pub emotion_type: Option<i64>,
    /// Message time, ms UTC.
    pub msgtime: i64,
    /// Failed attempts so far.
    pub attempts: u32,
    /// Downloads discarded for a size or md5 mismatch so far.
    pub verify_failures: u32,
    /// Index for the next chunk ("" = from the start).
    pub next_index: String,
    /// Bytes durable in the `.part` file.
    pub bytes_done: u64,
    /// The claim this worker holds.
    pub claim_token: u64,
}

/// How a job ends for good (for now: `media retry` can requeue it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Terminal {
    /// Verified and in place.
    Done,
    /// In place; nothing stated to verify it against (see `JobState::Unverified`).
    Unverified,
    /// Bounded retries exhausted.
    Failed,
    /// 10010.
    Expired,
    /// Verification failed every time (this many times).
    Corrupt {
        /// Downloads discarded.
        verify_failures: u32,
    },
}

impl Terminal {
    fn state(self) -> JobState {
        match self {
            Terminal::Done => JobState::Done,
            Terminal::Unverified => JobState::Unverified,
            Terminal::Failed => JobState::Failed,
            Terminal::Expired => JobState::Expired,
            Terminal::Corrupt { .. } => JobState::Corrupt,
        }
    }
}

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

/// Transactions here read committed data and take no gap locks: workers settle
/// neighbouring jobs at the same time, and repeatable read's next-key locks on
/// `(corpid, msgid, …)` ranges made them deadlock.
fn read_committed() -> TxOpts {
    let mut o = TxOpts::default();
    o.with_isolation_level(IsolationLevel::ReadCommitted);
    o
}

/// A deadlock (1213) or lock wait timeout (1205): InnoDB rolled the statement or
/// transaction back; running it again is safe.
fn is_lock_conflict(e: &StoreError) -> bool {
    matches!(e, StoreError::Db(mysql_async::Error::Server(s)) if s.code == 1213 || s.code == 1205)
}

/// Runs `f` again after lock conflicts (a few times, with a short growing wait).
async fn retry_conflicts<T, F, Fut>(mut f: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let mut tries = 0u32;
    loop {
        match f().await {
            Err(e) if is_lock_conflict(&e) && tries < 8 => {
                tries += 1;
                let ms = 5 * u64::from(tries) + rand::random_range(0..10);
                tracing::debug!("media queue: {e}; retrying in {ms} ms");
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            r => return r,
        }
    }
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

/// One corp's queue, as seen by the workers of one process.
#[derive(Clone, Debug)]
pub struct Queue {
    store: Store,
    corpid: CorpId,
    owner: String,
    claim_ttl: Duration,
}

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

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl Queue {
    /// The queue of `corpid`; claims are made as `owner` (the instance name) and
    /// last `claim_ttl` after each write.
    pub fn new(store: Store, corpid: CorpId, owner: String, claim_ttl: Duration) -> Queue {
        Queue { store, corpid, owner, claim_ttl }
    }

    /// The corp.
    pub fn corpid(&self) -> &CorpId {
        &self.corpid
    }

    /// How long a claim lasts after each write.
    pub fn claim_ttl(&self) -> Duration {
        self.claim_ttl
    }

    /// The claim lifetime in microseconds, for SQL intervals.
    pub fn claim_ttl_micros(&self) -> u64 {
        micros(self.claim_ttl)
    }

    /// Puts this instance's own `downloading` jobs back in the queue: at start, no
    /// worker of ours can still hold them (a crash or a kill left them behind).
    pub async fn reclaim_own(&self) -> Result<u64, StoreError> {
        retry_conflicts(|| async {
            let mut conn = self.store.conn().await?;
            conn.exec_drop(
                "UPDATE media_jobs SET state = 'pending', claimed_by = '', claim_token = 0, claimed_until = NULL
                 WHERE corpid = ? AND state = 'downloading' AND claimed_by = ?",
                (self.corpid.as_str(), &self.owner),
            )
            .await?;
            Ok(conn.affected_rows())
        })
        .await
    }

    /// Claims the next due job, if any.
    pub async fn claim(&self) -> Result<Option<Job>, StoreError> {
        let mut conn = self.store.conn().await?;
        let ids: Vec<u64> = conn
            .exec(
                format!("SELECT id FROM media_jobs WHERE corpid = ? AND {CLAIMABLE} ORDER BY id LIMIT 16"),
                (self.corpid.as_str(),),
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
                let mut conn = self.store.conn().await?;
                conn.exec_drop(
                    format!(
                        "UPDATE media_jobs SET state = 'downloading', claimed_by = ?, claim_token = ?,
                             claimed_until = NOW(3) + INTERVAL ? MICROSECOND
                         WHERE id = ? AND {CLAIMABLE}"
                    ),
                    (&self.owner, token, micros(self.claim_ttl), id),
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
            if let Err(e) = self.refresh(&job.msgid).await {
                tracing::warn!(corp = %self.corpid, msgid = %job.msgid, "marking the message as loading: {e}");
            }
            return Ok(Some(job));
        }
        Ok(None)
    }

    /// Re-derives one message's columns.
    async fn refresh(&self, msgid: &str) -> Result<(), StoreError> {
        retry_conflicts(|| async {
            let mut conn = self.store.conn().await?;
            let mut tx = conn.start_transaction(read_committed()).await?;
            lock_message(&mut tx, &self.corpid, msgid).await?;
            refresh_message(&mut tx, &self.corpid, msgid).await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    /// Runs one job-changing statement in a transaction with the message locked
    /// first, and the message's columns derived after it; rolled back when the
    /// claim is no longer ours. True when it was.
    async fn settle_tx(&self, job: &Job, sql: &str, params: mysql_async::Params) -> Result<bool, StoreError> {
        retry_conflicts(|| async {
            let mut conn = self.store.conn().await?;
            let mut tx = conn.start_transaction(read_committed()).await?;
            lock_message(&mut tx, &self.corpid, &job.msgid).await?;
            tx.exec_drop(sql, params.clone()).await?;
            let ours = tx.affected_rows() == 1;
            if ours {
                refresh_message(&mut tx, &self.corpid, &job.msgid).await?;
                tx.commit().await?;
            } else {
                tx.rollback().await?;
            }
            Ok(ours)
        })
        .await
    }

    /// Runs one statement conditioned on the job's claim; true when it matched.
    async fn claimed_update(&self, sql: &str, params: mysql_async::Params) -> Result<bool, StoreError> {
        retry_conflicts(|| async {
            let mut conn = self.store.conn().await?;
            conn.exec_drop(sql, params.clone()).await?;
            Ok(conn.affected_rows() == 1)
        })
        .await
    }

    /// Records durable progress (the `.part` file is fsynced up to `bytes_done`) and
    /// renews the claim. False when the claim was lost: stop working on the job.
    pub async fn progress(
        &self,
        job: &Job,
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
            (next_index, bytes_done, chunks.max(1), micros(self.claim_ttl), job.id, job.claim_token).into(),
        )
        .await
    }

    /// Starts the job over from zero after a verification failure (the `.part` file
    /// is already emptied). False when the claim was lost.
    pub async fn restart(&self, job: &Job, verify_failures: u32, error: &str) -> Result<bool, StoreError> {
        self.claimed_update(
            "UPDATE media_jobs SET next_index = '', bytes_done = 0, verify_failures = ?, last_code = ?,
                 last_error = ?, claimed_until = NOW(3) + INTERVAL ? MICROSECOND
             WHERE id = ? AND claim_token = ? AND state = 'downloading'",
            (verify_failures, CODE_CORRUPT, clip(error), micros(self.claim_ttl), job.id, job.claim_token)
                .into(),
        )
        .await
    }

    /// Gives the job back to the queue, due again after `delay`; `failed_attempt`
    /// counts it against the job's bound. Progress is kept.
    pub async fn release(
        &self,
        job: &Job,
        delay: Duration,
        failed_attempt: bool,
        code: i32,
        error: &str,
    ) -> Result<bool, StoreError> {
        self.settle_tx(
            job,
            "UPDATE media_jobs SET state = 'pending', claimed_by = '', claim_token = 0, claimed_until = NULL,
                 next_attempt_at = NOW(3) + INTERVAL ? MICROSECOND, attempts = attempts + ?,
                 last_code = ?, last_error = ?
             WHERE id = ? AND claim_token = ?",
            (micros(delay), u32::from(failed_attempt), code, clip(error), job.id, job.claim_token).into(),
        )
        .await
    }

    /// Settles the job and its message in one transaction. `path` is the file
    /// relative to the media root (stored outcomes only). False when the claim
    /// was lost.
    pub async fn finish(
        &self,
        job: &Job,
        how: Terminal,
        path: &str,
        bytes: u64,
        code: i32,
        error: &str,
    ) -> Result<bool, StoreError> {
        if how.state().is_stored() {
            self.settle_tx(
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

    /// The corp's IP is refused: parks this job and every pending one as `paused`.
    /// Returns how many jobs are paused now.
    pub async fn pause_all(&self, job: &Job, code: i32, error: &str) -> Result<u64, StoreError> {
        self.settle_tx(
            job,
            "UPDATE media_jobs SET state = 'paused', claimed_by = '', claim_token = 0, claimed_until = NULL,
                 last_code = ?, last_error = ?
             WHERE id = ? AND claim_token = ?",
            (code, clip(error), job.id, job.claim_token).into(),
        )
        .await?;
        retry_conflicts(|| async {
            let mut conn = self.store.conn().await?;
            let mut tx = conn.start_transaction(read_committed()).await?;
            tx.exec_drop(
                "UPDATE media_jobs SET state = 'paused' WHERE corpid = ? AND state = 'pending'",
                (self.corpid.as_str(),),
            )
            .await?;
            let paused: u64 = tx
                .exec_first(
                    "SELECT COUNT(*) FROM media_jobs WHERE corpid = ? AND state = 'paused'",
                    (self.corpid.as_str(),),
                )
                .await?
                .unwrap_or(0);
            tx.commit().await?;
            Ok(paused)
        })
        .await
    }

    /// Puts paused jobs back in the queue (after the pause window: a probe).
    pub async fn resume_paused(&self) -> Result<u64, StoreError> {
        retry_conflicts(|| async {
            let mut conn = self.store.conn().await?;
            let mut tx = conn.start_transaction(read_committed()).await?;
            tx.exec_drop(
                "UPDATE media_jobs SET state = 'pending', next_attempt_at = NOW(3) WHERE corpid = ? AND state = 'paused'",
                (self.corpid.as_str(),),
            )
            .await?;
            let n = tx.affected_rows();
            tx.commit().await?;
            Ok(n)
        })
        .await
    }

    /// Whether work remains that is not claimable yet: None when nothing is pending
    /// or downloading, else how long until the earliest of it may become claimable.
    pub async fn outstanding(&self) -> Result<Option<Duration>, StoreError> {
        let mut conn = self.store.conn().await?;
        let row: Option<(u64, Option<i64>)> = conn
            .exec_first(
                "SELECT COUNT(*), TIMESTAMPDIFF(MICROSECOND, NOW(3),
                     MIN(IF(state = 'pending', next_attempt_at, COALESCE(claimed_until, NOW(3)))))
                 FROM media_jobs WHERE corpid = ? AND state IN ('pending', 'downloading')",
                (self.corpid.as_str(),),
            )
            .await?;
        Ok(match row {
            Some((n, wait)) if n > 0 => Some(Duration::from_micros(wait.unwrap_or(0).max(0) as u64)),
            _ => None,
        })
    }

    /// Jobs by state.
    pub async fn counts(&self) -> Result<BTreeMap<String, u64>, StoreError> {
        let mut conn = self.store.conn().await?;
        let rows: Vec<(String, u64)> = conn
            .exec(
                "SELECT state, COUNT(*) FROM media_jobs WHERE corpid = ? GROUP BY state",
                (self.corpid.as_str(),),
            )
            .await?;
        Ok(rows.into_iter().collect())
    }

    /// Records the voice transcode outcome.
    pub async fn set_transcode(&self, id: u64, state: &str, mp3_path: &str) -> Result<(), StoreError> {
        let mut conn = self.store.conn().await?;
        conn.exec_drop(
            "UPDATE media_jobs SET transcode = ?, mp3_path = ? WHERE id = ?",
            (state, mp3_path, id),
        )
        .await?;
        Ok(())
    }

    /// Stored voice files never transcoded (a crash between the two steps).
    pub async fn untranscoded(&self, limit: u32) -> Result<Vec<(u64, String)>, StoreError> {
        let mut conn = self.store.conn().await?;
        Ok(conn
            .exec(
                format!(
                    "SELECT id, path FROM media_jobs
                     WHERE corpid = ? AND kind = 'voice' AND state IN {} AND transcode = '' LIMIT ?",
                    JobState::STORED_SQL
                ),
                (self.corpid.as_str(), limit),
            )
            .await?)
    }

    /// Raises the corp's media alarm (its text starts with `media:`).
    pub async fn raise_alarm(&self, text: &str) -> Result<(), StoreError> {
        self.store.raise_alarm(&self.corpid, AlarmKind::Media, &clip(&format!("media: {text}"))).await
    }

    /// Clears the corp's media alarm (its other alarms stay).
    pub async fn clear_alarm(&self) -> Result<(), StoreError> {
        self.store.clear_alarm(&self.corpid, AlarmKind::Media).await
    }
}

fn clip(s: &str) -> String {
    s.chars().take(1000).collect()
}

/// Jobs by state for every corp: `corpid → state → count`.
pub async fn backlog(store: &Store) -> Result<BTreeMap<String, BTreeMap<String, u64>>, StoreError> {
    let mut conn = store.conn().await?;
    let rows: Vec<(String, String, u64)> =
        conn.query("SELECT corpid, state, COUNT(*) FROM media_jobs GROUP BY corpid, state").await?;
    let mut out: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for (corp, state, n) in rows {
        out.entry(corp).or_default().insert(state, n);
    }
    Ok(out)
}

/// `media retry`: puts jobs in `states` (of one corp, or all) back in the queue with
/// fresh retry bounds, keeping their progress, and updates their messages.
/// Returns how many jobs were requeued.
pub async fn requeue(store: &Store, corp: Option<&CorpId>, states: &[JobState]) -> Result<u64, StoreError> {
    if states.is_empty() {
        return Ok(0);
    }
    let list = states.iter().map(|s| format!("'{}'", s.as_str())).collect::<Vec<_>>().join(",");
    let mut conn = store.conn().await?;
    let corps: Vec<String> = match corp {
        Some(c) => {
            conn.exec(
                format!("SELECT DISTINCT corpid FROM media_jobs WHERE corpid = ? AND state IN ({list})"),
                (c.as_str(),),
            )
            .await?
        }
        None => conn.query(format!("SELECT DISTINCT corpid FROM media_jobs WHERE state IN ({list})")).await?,
    };
    drop(conn);
    let mut total = 0;
    for raw in corps {
        let Ok(corpid) = CorpId::new(&raw) else {
            tracing::warn!("media_jobs holds an invalid corp id {raw:?}; not requeued");
            continue;
        };
        store.ensure_message_table(&corpid).await?;
        let msgids = retry_conflicts(|| async {
            let mut conn = store.conn().await?;
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
        let queue = Queue::new(store.clone(), corpid.clone(), String::new(), Duration::ZERO);
        for msgid in &msgids.1 {
            queue.refresh(msgid).await?;
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip() {
        for s in JobState::ALL {
            assert_eq!(JobState::parse(s.as_str()), Some(s));
        }
        assert_eq!(JobState::parse("nope"), None);
        assert!(!JobState::RETRYABLE.contains(&JobState::Done));
        assert!(!JobState::RETRYABLE.contains(&JobState::Unverified));
        assert!(!JobState::RETRYABLE.contains(&JobState::Downloading));
        let stored: Vec<_> = JobState::ALL.into_iter().filter(|s| s.is_stored()).collect();
        assert_eq!(stored, [JobState::Done, JobState::Unverified]);
        // The SQL list names exactly the stored states.
        let listed = stored.iter().map(|s| format!("'{s}'")).collect::<Vec<_>>().join(", ");
        assert_eq!(JobState::STORED_SQL, format!("({listed})"));
        assert!(JobState::is_stored_str("unverified") && !JobState::is_stored_str("pending"));
    }

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
