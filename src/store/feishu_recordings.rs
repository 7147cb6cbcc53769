//! The `feishu_recordings` table (migration 0010): one durable job per
//! (app, meeting) that downloads the meeting's recording with its owner's
//! token (issue 13).
//!
//! Jobs are claimed like the WeCom media jobs (0004): one conditional UPDATE
//! takes a due, unclaimed (or expired) job and stamps a random token; every
//! later write is conditioned on that token, so an instance whose claim
//! expired and was taken over can no longer move the job.

use std::time::Duration;

use mysql_async::Row;
use mysql_async::prelude::*;

use super::retry::with_retry;
use super::{Store, StoreError};

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RecordingState {
    /// Due to be worked on.
    Pending,
    /// The recording or its minutes are still being produced (124002 / 2091003).
    Waiting,
    /// The owner has not authorized (or must authorize again): a card was sent.
    AwaitingAuth,
    /// Being downloaded (`.part` with `bytes_done` durable bytes).
    Downloading,
    /// Archived: path, bytes, sha256 set.
    Done,
    /// The meeting has no recording (121004 / 404): final.
    NoRecording,
    /// Given up (waited longer than the limit, or failed too often).
    Failed,
}

impl RecordingState {
    /// Every state.
    pub const ALL: [RecordingState; 7] = [
        RecordingState::Pending,
        RecordingState::Waiting,
        RecordingState::AwaitingAuth,
        RecordingState::Downloading,
        RecordingState::Done,
        RecordingState::NoRecording,
        RecordingState::Failed,
    ];

    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordingState::Pending => "pending",
            RecordingState::Waiting => "waiting",
            RecordingState::AwaitingAuth => "awaiting_auth",
            RecordingState::Downloading => "downloading",
            RecordingState::Done => "done",
            RecordingState::NoRecording => "no_recording",
            RecordingState::Failed => "failed",
        }
    }

    /// Parses a stored or typed state.
    pub fn parse(s: &str) -> Option<RecordingState> {
        RecordingState::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Whether the job is over (nothing more happens without `retry`).
    pub fn is_final(self) -> bool {
        matches!(self, RecordingState::Done | RecordingState::NoRecording | RecordingState::Failed)
    }
}

/// What an event says about a meeting (validated by the caller).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRecording {
    /// The app.
    pub app_id: String,
    /// Meeting id (digits).
    pub meeting_id: String,
    /// Topic as Feishu sent it (sanitised only for the file name).
    pub topic: String,
    /// The owner's open_id.
    pub owner_open_id: String,
    /// Unix seconds.
    pub start_time: i64,
    /// Unix seconds.
    pub end_time: i64,
    /// The event that created it.
    pub event_id: String,
    /// From `recording_ready_v1` (the fast path), else empty.
    pub minute_token: String,
}

/// One job row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recording {
    /// Row id.
    pub id: u64,
    /// The app.
    pub app_id: String,
    /// Meeting id.
    pub meeting_id: String,
    /// Topic.
    pub topic: String,
    /// Owner.
    pub owner_open_id: String,
    /// Unix seconds.
    pub start_time: i64,
    /// Unix seconds.
    pub end_time: i64,
    /// Minute token, once known.
    pub minute_token: String,
    /// Recording length in ms, once known.
    pub duration_ms: i64,
    /// Path relative to the media root, once chosen.
    pub path: String,
    /// Full size, once known.
    pub bytes: Option<u64>,
    /// Durable bytes of the `.part`.
    pub bytes_done: u64,
    /// Hex SHA-256 of the archived file (done only).
    pub sha256: String,
    /// State.
    pub state: RecordingState,
    /// Failed attempts.
    pub attempts: u32,
    /// Polls of a recording that was not ready.
    pub polls: u32,
    /// Last Feishu code (0 = none).
    pub last_code: i64,
    /// Last error.
    pub last_error: String,
    /// Card session sent for the owner.
    pub auth_session: String,
    /// Whether the owner was told the outcome.
    pub notified: bool,
    /// The claim this worker holds (0 when unclaimed).
    pub claim_token: u64,
    /// Who holds the claim.
    pub claimed_by: String,
    /// Unix seconds of creation.
    pub created_at: i64,
    /// Unix seconds the download began (first byte requested), if it did.
    pub download_started_at: Option<i64>,
    /// Unix seconds it ended, if it did.
    pub finished_at: Option<i64>,
}

const COLUMNS: &str = "id, app_id, meeting_id, topic, owner_open_id, start_time, end_time, minute_token, \
     duration_ms, path, bytes, bytes_done, sha256, state, attempts, polls, last_code, last_error, auth_session, \
     notified, claim_token, claimed_by, CAST(UNIX_TIMESTAMP(created_at) AS SIGNED) AS created_s, \
     CAST(UNIX_TIMESTAMP(download_started_at) AS SIGNED) AS started_s, \
     CAST(UNIX_TIMESTAMP(finished_at) AS SIGNED) AS finished_s";

/// Due and not held by a live claim.
const CLAIMABLE: &str = "state IN ('pending', 'waiting', 'awaiting_auth', 'downloading') \
     AND next_attempt_at <= NOW(3) AND (claimed_until IS NULL OR claimed_until < NOW(3))";

fn from_row(mut r: Row) -> Recording {
    let state: String = r.take("state").unwrap_or_default();
    Recording {
        id: r.take("id").unwrap_or_default(),
        app_id: r.take("app_id").unwrap_or_default(),
        meeting_id: r.take("meeting_id").unwrap_or_default(),
        topic: r.take("topic").unwrap_or_default(),
        owner_open_id: r.take("owner_open_id").unwrap_or_default(),
        start_time: r.take("start_time").unwrap_or_default(),
        end_time: r.take("end_time").unwrap_or_default(),
        minute_token: r.take("minute_token").unwrap_or_default(),
        duration_ms: r.take("duration_ms").unwrap_or_default(),
        path: r.take("path").unwrap_or_default(),
        bytes: r.take::<Option<u64>, _>("bytes").flatten(),
        bytes_done: r.take("bytes_done").unwrap_or_default(),
        sha256: r.take("sha256").unwrap_or_default(),
        state: RecordingState::parse(&state).unwrap_or(RecordingState::Failed),
        attempts: r.take("attempts").unwrap_or_default(),
        polls: r.take("polls").unwrap_or_default(),
        last_code: r.take("last_code").unwrap_or_default(),
        last_error: r.take("last_error").unwrap_or_default(),
        auth_session: r.take("auth_session").unwrap_or_default(),
        notified: r.take::<i64, _>("notified").unwrap_or_default() != 0,
        claim_token: r.take("claim_token").unwrap_or_default(),
        claimed_by: r.take("claimed_by").unwrap_or_default(),
        created_at: r.take::<Option<i64>, _>("created_s").flatten().unwrap_or_default(),
        download_started_at: r.take::<Option<i64>, _>("started_s").flatten(),
        finished_at: r.take::<Option<i64>, _>("finished_s").flatten(),
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn clip(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// Counts for `/metrics` and `status`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordingCounts {
    /// Jobs per state.
    pub by_state: Vec<(RecordingState, u64)>,
    /// Bytes of archived recordings.
    pub bytes_done: u64,
}

impl Store {
    /// Creates the job of a meeting, or (same app and meeting: a redelivery,
    /// another instance, the ready event after the ended one) only fills in
    /// what was missing: the minute token, and a waiting job becomes due now.
    /// True when this call created the row.
    pub async fn upsert_recording(&self, r: &NewRecording) -> Result<bool, StoreError> {
        with_retry(3, || async {
            let mut conn = self.conn().await?;
            conn.exec_drop(
                "INSERT INTO feishu_recordings
                     (app_id, meeting_id, topic, owner_open_id, start_time, end_time, event_id, minute_token)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                 ON DUPLICATE KEY UPDATE
                     next_attempt_at = IF(state = 'waiting' AND VALUES(minute_token) <> '',
                                          NOW(3), next_attempt_at),
                     minute_token = IF(minute_token = '', VALUES(minute_token), minute_token)",
                (
                    &r.app_id,
                    &r.meeting_id,
                    clip(&r.topic, 512),
                    &r.owner_open_id,
                    r.start_time,
                    r.end_time,
                    &r.event_id,
                    &r.minute_token,
                ),
            )
            .await?;
            Ok(conn.affected_rows() == 1)
        })
        .await
    }

    /// Releases the jobs `owner` holds (at start: no attempt of this
    /// instance can still be running; a kill left them claimed).
    pub async fn release_own_recordings(&self, owner: &str) -> Result<u64, StoreError> {
        let mut conn = self.conn().await?;
        conn.exec_drop(
            "UPDATE feishu_recordings SET claimed_by = '', claim_token = 0, claimed_until = NULL,
                 next_attempt_at = NOW(3)
             WHERE claimed_by = ? AND state NOT IN ('done', 'no_recording', 'failed')",
            (owner,),
        )
        .await?;
        Ok(conn.affected_rows())
    }

    /// Claims up to `n` due jobs as `owner` for `ttl`.
    pub async fn claim_recordings(
        &self,
        owner: &str,
        ttl: Duration,
        n: usize,
    ) -> Result<Vec<Recording>, StoreError> {
        let mut conn = self.conn().await?;
        let ids: Vec<u64> = conn
            .exec(
                format!(
                    "SELECT id FROM feishu_recordings WHERE {CLAIMABLE} ORDER BY next_attempt_at LIMIT ?"
                ),
                (n as u64 * 2,),
            )
            .await?;
        let mut out = Vec::new();
        for id in ids {
            if out.len() >= n {
                break;
            }
            let token = rand::random::<u64>() | 1;
            conn.exec_drop(
                format!(
                    "UPDATE feishu_recordings SET claimed_by = ?, claim_token = ?,
                         claimed_until = NOW(3) + INTERVAL ? MICROSECOND
                     WHERE id = ? AND {CLAIMABLE}"
                ),
                (owner, token, micros(ttl), id),
            )
            .await?;
            if conn.affected_rows() != 1 {
                continue; // another instance was faster
            }
            if let Some(row) = conn
                .exec_first::<Row, _, _>(
                    format!("SELECT {COLUMNS} FROM feishu_recordings WHERE id = ?"),
                    (id,),
                )
                .await?
            {
                out.push(from_row(row));
            }
        }
        Ok(out)
    }

    async fn claimed(&self, sql: &str, params: mysql_async::Params) -> Result<bool, StoreError> {
        with_retry(3, || async {
            let mut conn = self.conn().await?;
            conn.exec_drop(sql, params.clone()).await?;
            Ok(conn.affected_rows() == 1)
        })
        .await
    }

    /// Renews a claim; false when it is no longer ours.
    pub async fn renew_recording_claim(&self, job: &Recording, ttl: Duration) -> Result<bool, StoreError> {
        self.claimed(
            "UPDATE feishu_recordings SET claimed_until = NOW(3) + INTERVAL ? MICROSECOND
             WHERE id = ? AND claim_token = ?",
            (micros(ttl), job.id, job.claim_token).into(),
        )
        .await
    }

    /// Records the minute token (and the duration) found on the recording.
    pub async fn set_recording_minute(
        &self,
        job: &Recording,
        minute_token: &str,
        duration_ms: i64,
    ) -> Result<bool, StoreError> {
        self.claimed(
            "UPDATE feishu_recordings SET minute_token = ?, duration_ms = ? WHERE id = ? AND claim_token = ?",
            (minute_token, duration_ms, job.id, job.claim_token).into(),
        )
        .await
    }

    /// Starts (or resumes) the download: the path chosen and the full size.
    pub async fn start_recording_download(
        &self,
        job: &Recording,
        path: &str,
        bytes: u64,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        self.claimed(
            "UPDATE feishu_recordings SET state = 'downloading', path = ?, bytes = ?,
                 download_started_at = COALESCE(download_started_at, NOW(3)),
                 claimed_until = NOW(3) + INTERVAL ? MICROSECOND
             WHERE id = ? AND claim_token = ?",
            (path, bytes, micros(ttl), job.id, job.claim_token).into(),
        )
        .await
    }

    /// Durable progress (the `.part` is fsynced up to `bytes_done`); renews the claim.
    pub async fn recording_progress(
        &self,
        job: &Recording,
        bytes_done: u64,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        self.claimed(
            "UPDATE feishu_recordings SET bytes_done = ?, claimed_until = NOW(3) + INTERVAL ? MICROSECOND
             WHERE id = ? AND claim_token = ?",
            (bytes_done, micros(ttl), job.id, job.claim_token).into(),
        )
        .await
    }

    /// Puts a job back to `state`, due after `delay`, releasing the claim.
    /// `failed_attempt` counts an error; `poll` counts a not-ready answer.
    #[allow(clippy::too_many_arguments)]
    pub async fn release_recording(
        &self,
        job: &Recording,
        state: RecordingState,
        delay: Duration,
        failed_attempt: bool,
        poll: bool,
        code: i64,
        error: &str,
    ) -> Result<bool, StoreError> {
        self.claimed(
            "UPDATE feishu_recordings SET state = ?, next_attempt_at = NOW(3) + INTERVAL ? MICROSECOND,
                 attempts = attempts + ?, polls = polls + ?, last_code = ?, last_error = ?,
                 claimed_by = '', claim_token = 0, claimed_until = NULL
             WHERE id = ? AND claim_token = ?",
            (
                state.as_str(),
                micros(delay),
                u32::from(failed_attempt),
                u32::from(poll),
                code,
                clip(error, 1000),
                job.id,
                job.claim_token,
            )
                .into(),
        )
        .await
    }

    /// Ends a job in a final state other than done.
    pub async fn finish_recording(
        &self,
        job: &Recording,
        state: RecordingState,
        code: i64,
        error: &str,
    ) -> Result<bool, StoreError> {
        self.claimed(
            "UPDATE feishu_recordings SET state = ?, last_code = ?, last_error = ?, finished_at = NOW(3),
                 claimed_by = '', claim_token = 0, claimed_until = NULL
             WHERE id = ? AND claim_token = ?",
            (state.as_str(), code, clip(error, 1000), job.id, job.claim_token).into(),
        )
        .await
    }

    /// The file is in place: done.
    pub async fn complete_recording(
        &self,
        job: &Recording,
        path: &str,
        bytes: u64,
        sha256: &str,
    ) -> Result<bool, StoreError> {
        self.claimed(
            "UPDATE feishu_recordings SET state = 'done', path = ?, bytes = ?, bytes_done = ?, sha256 = ?,
                 last_code = 0, last_error = '', finished_at = NOW(3),
                 claimed_by = '', claim_token = 0, claimed_until = NULL
             WHERE id = ? AND claim_token = ?",
            (path, bytes, bytes, sha256, job.id, job.claim_token).into(),
        )
        .await
    }

    /// Records the card session sent for this job's owner.
    pub async fn set_recording_auth_session(&self, id: u64, session: &str) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        conn.exec_drop("UPDATE feishu_recordings SET auth_session = ? WHERE id = ?", (session, id)).await?;
        Ok(())
    }

    /// Card sessions already sent for an owner's jobs (newest first).
    pub async fn recording_auth_sessions(
        &self,
        app_id: &str,
        open_id: &str,
    ) -> Result<Vec<String>, StoreError> {
        let mut conn = self.conn().await?;
        Ok(conn
            .exec(
                "SELECT DISTINCT auth_session FROM feishu_recordings
                 WHERE app_id = ? AND owner_open_id = ? AND auth_session <> '' ORDER BY auth_session",
                (app_id, open_id),
            )
            .await?)
    }

    /// Marks the owner told; true the first time (so one card per outcome).
    pub async fn mark_recording_notified(&self, id: u64) -> Result<bool, StoreError> {
        let mut conn = self.conn().await?;
        conn.exec_drop("UPDATE feishu_recordings SET notified = 1 WHERE id = ? AND notified = 0", (id,))
            .await?;
        Ok(conn.affected_rows() == 1)
    }

    /// One job.
    pub async fn recording(&self, app_id: &str, meeting_id: &str) -> Result<Option<Recording>, StoreError> {
        let mut conn = self.conn().await?;
        let row: Option<Row> = conn
            .exec_first(
                format!("SELECT {COLUMNS} FROM feishu_recordings WHERE app_id = ? AND meeting_id = ?"),
                (app_id, meeting_id),
            )
            .await?;
        Ok(row.map(from_row))
    }

    /// Jobs, newest first, optionally of one state.
    pub async fn recordings(
        &self,
        state: Option<RecordingState>,
        limit: u32,
    ) -> Result<Vec<Recording>, StoreError> {
        let mut conn = self.conn().await?;
        let rows: Vec<Row> = match state {
            Some(s) => {
                conn.exec(
                    format!(
                        "SELECT {COLUMNS} FROM feishu_recordings WHERE state = ? ORDER BY id DESC LIMIT ?"
                    ),
                    (s.as_str(), limit),
                )
                .await?
            }
            None => {
                conn.exec(
                    format!("SELECT {COLUMNS} FROM feishu_recordings ORDER BY id DESC LIMIT ?"),
                    (limit,),
                )
                .await?
            }
        };
        Ok(rows.into_iter().map(from_row).collect())
    }

    /// Makes final or waiting jobs due again (all of them, or one meeting's):
    /// `failed` and `no_recording` start over with their attempts reset; a
    /// `done` job is left alone. Returns how many.
    pub async fn retry_recordings(&self, meeting_id: Option<&str>) -> Result<u64, StoreError> {
        let mut conn = self.conn().await?;
        let sql = "UPDATE feishu_recordings SET
                 state = IF(state IN ('failed', 'no_recording'), 'pending', state),
                 attempts = IF(state IN ('failed', 'no_recording'), 0, attempts),
                 notified = IF(state IN ('failed', 'no_recording'), 0, notified),
                 auth_session = IF(state = 'awaiting_auth', '', auth_session),
                 created_at = IF(state IN ('failed', 'no_recording'), NOW(3), created_at),
                 finished_at = NULL, next_attempt_at = NOW(3)
             WHERE state <> 'done' AND (? IS NULL OR meeting_id = ?)";
        conn.exec_drop(sql, (meeting_id, meeting_id)).await?;
        Ok(conn.affected_rows())
    }

    /// Jobs per state and the archived bytes.
    pub async fn recording_counts(&self) -> Result<RecordingCounts, StoreError> {
        let mut conn = self.conn().await?;
        let rows: Vec<(String, u64, Option<u64>)> = conn
            .query(
                "SELECT state, COUNT(*), CAST(SUM(IF(state = 'done', bytes, 0)) AS UNSIGNED)
                 FROM feishu_recordings GROUP BY state",
            )
            .await?;
        let mut c = RecordingCounts::default();
        for (s, n, b) in rows {
            if let Some(st) = RecordingState::parse(&s) {
                c.by_state.push((st, n));
            }
            c.bytes_done += b.unwrap_or(0);
        }
        c.by_state.sort();
        Ok(c)
    }

    /// Unfinished jobs older than `older_than` (the status alarm).
    pub async fn stuck_recordings(&self, older_than: Duration) -> Result<Vec<Recording>, StoreError> {
        let mut conn = self.conn().await?;
        let rows: Vec<Row> = conn
            .exec(
                format!(
                    "SELECT {COLUMNS} FROM feishu_recordings
                     WHERE state NOT IN ('done', 'no_recording', 'failed')
                       AND created_at < NOW(3) - INTERVAL ? MICROSECOND ORDER BY id LIMIT 100"
                ),
                (micros(older_than),),
            )
            .await?;
        Ok(rows.into_iter().map(from_row).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip() {
        for s in RecordingState::ALL {
            assert_eq!(RecordingState::parse(s.as_str()), Some(s));
        }
        assert_eq!(RecordingState::parse("bogus"), None);
        assert!(RecordingState::Done.is_final() && !RecordingState::Waiting.is_final());
    }
}
