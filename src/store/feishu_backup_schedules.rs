//! The `feishu_backup_schedules` and `feishu_backup_runs` tables (migration
//! 0017): the docs backups users opted in to, and every run `run` made of them.
//!
//! A due schedule is claimed like the WeCom media jobs (0004) and the
//! recording jobs: one conditional UPDATE takes a due, unclaimed (or expired)
//! schedule and stamps a random token; the run's renewals and its end are
//! conditioned on that token, so a stalled instance whose claim was taken over
//! can no longer record anything. Times are the database's (`NOW(3)`), the one
//! clock every instance shares.

use std::time::Duration;

use mysql_async::Row;
use mysql_async::prelude::*;

use super::retry::with_retry;
use super::{Store, StoreError};

/// One opted-in backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupSchedule {
    /// Row id.
    pub id: u64,
    /// The app.
    pub app_id: String,
    /// The user.
    pub open_id: String,
    /// What to back up (`drive`, `my_library`, `wiki:<id>`, `all`).
    pub source: String,
    /// The period, in ms.
    pub every_ms: u64,
    /// Milliseconds until the next run is due (negative: overdue).
    pub next_run_in_ms: i64,
    /// Runs made.
    pub runs: u64,
    /// Unix ms the last run started, if one did.
    pub last_started_ms: Option<i64>,
    /// Unix ms the last run ended, if one did.
    pub last_finished_ms: Option<i64>,
    /// `''`, `ok`, `partial` or `failed`.
    pub last_status: String,
    /// The last run's summary line.
    pub last_summary: String,
    /// Why the last run failed.
    pub last_error: String,
    /// Failed runs in a row.
    pub failures: u64,
    /// Who holds the claim ('' when none).
    pub claimed_by: String,
    /// The claim's token (0 when none).
    pub claim_token: u64,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    /// Every document backed up.
    Ok,
    /// The backup ran, some documents failed.
    Partial,
    /// The backup could not run.
    Failed,
}

impl RunStatus {
    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Ok => "ok",
            RunStatus::Partial => "partial",
            RunStatus::Failed => "failed",
        }
    }
}

const COLUMNS: &str = "id, app_id, open_id, source, every_ms, \
     CAST(TIMESTAMPDIFF(MICROSECOND, NOW(3), next_run_at) DIV 1000 AS SIGNED) AS next_in_ms, runs, \
     CAST(UNIX_TIMESTAMP(last_started_at) * 1000 AS SIGNED) AS started_ms, \
     CAST(UNIX_TIMESTAMP(last_finished_at) * 1000 AS SIGNED) AS finished_ms, \
     last_status, last_summary, last_error, failures, claimed_by, claim_token";

/// Due and not held by a live claim.
const CLAIMABLE: &str = "next_run_at <= NOW(3) AND (claimed_until IS NULL OR claimed_until < NOW(3))";

/// The next due time after a run that started at `last_started_at`: a period
/// later, or the first period boundary still ahead when the run overran.
const NEXT_PERIOD: &str = "last_started_at + INTERVAL (every_ms * 1000 * GREATEST(1, \
     CEIL(TIMESTAMPDIFF(MICROSECOND, last_started_at, NOW(3)) / (every_ms * 1000)))) MICROSECOND";

fn from_row(mut r: Row) -> BackupSchedule {
    BackupSchedule {
        id: r.take("id").unwrap_or_default(),
        app_id: r.take("app_id").unwrap_or_default(),
        open_id: r.take("open_id").unwrap_or_default(),
        source: r.take("source").unwrap_or_default(),
        every_ms: r.take("every_ms").unwrap_or_default(),
        next_run_in_ms: r.take::<Option<i64>, _>("next_in_ms").flatten().unwrap_or_default(),
        runs: r.take("runs").unwrap_or_default(),
        last_started_ms: r.take::<Option<i64>, _>("started_ms").flatten(),
        last_finished_ms: r.take::<Option<i64>, _>("finished_ms").flatten(),
        last_status: r.take("last_status").unwrap_or_default(),
        last_summary: r.take("last_summary").unwrap_or_default(),
        last_error: r.take("last_error").unwrap_or_default(),
        failures: r.take("failures").unwrap_or_default(),
        claimed_by: r.take("claimed_by").unwrap_or_default(),
        claim_token: r.take("claim_token").unwrap_or_default(),
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn clip(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

impl Store {
    /// Opts (app, user, source) in to a backup every `every`: a new schedule is
    /// due now; a changed period takes effect from the next run.
    pub async fn put_backup_schedule(
        &self,
        app_id: &str,
        open_id: &str,
        source: &str,
        every: Duration,
    ) -> Result<(), StoreError> {
        let every_ms = u64::try_from(every.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut conn = self.conn().await?;
        conn.exec_drop(
            "INSERT INTO feishu_backup_schedules (app_id, open_id, source, every_ms) VALUES (?, ?, ?, ?)
             ON DUPLICATE KEY UPDATE every_ms = VALUES(every_ms),
                 next_run_at = IF(last_started_at IS NULL, next_run_at,
                     LEAST(next_run_at, last_started_at + INTERVAL (VALUES(every_ms) * 1000) MICROSECOND))",
            (app_id, open_id, clip(source, 160), every_ms),
        )
        .await?;
        Ok(())
    }

    /// Removes the schedules of (app, user), of one source or all; how many.
    pub async fn remove_backup_schedules(
        &self,
        app_id: &str,
        open_id: &str,
        source: Option<&str>,
    ) -> Result<u64, StoreError> {
        let mut conn = self.conn().await?;
        conn.exec_drop(
            "DELETE FROM feishu_backup_schedules WHERE app_id = ? AND open_id = ? AND (? IS NULL OR source = ?)",
            (app_id, open_id, source, source),
        )
        .await?;
        Ok(conn.affected_rows())
    }

    /// Every schedule (of one app, when given), oldest first.
    pub async fn backup_schedules(&self, app_id: Option<&str>) -> Result<Vec<BackupSchedule>, StoreError> {
        let mut conn = self.conn().await?;
        let rows: Vec<Row> = conn
            .exec(
                format!("SELECT {COLUMNS} FROM feishu_backup_schedules WHERE (? IS NULL OR app_id = ?) ORDER BY id"),
                (app_id, app_id),
            )
            .await?;
        Ok(rows.into_iter().map(from_row).collect())
    }

    /// Releases the schedules `owner` holds (at start: no run of this instance
    /// can still be going; a kill left them claimed). They stay due.
    pub async fn release_own_backup_schedules(&self, owner: &str) -> Result<u64, StoreError> {
        let mut conn = self.conn().await?;
        conn.exec_drop(
            "UPDATE feishu_backup_schedules SET claimed_by = '', claim_token = 0, claimed_until = NULL
             WHERE claimed_by = ?",
            (owner,),
        )
        .await?;
        conn.exec_drop(
            "UPDATE feishu_backup_runs SET status = 'abandoned', finished_at = NOW(3),
                 error = 'the instance stopped during the run'
             WHERE instance = ? AND status = ''",
            (owner,),
        )
        .await?;
        Ok(conn.affected_rows())
    }

    /// Claims up to `n` due schedules as `owner` for `ttl`, each with a run row
    /// started; `(schedule, run id)`.
    pub async fn claim_backup_schedules(
        &self,
        owner: &str,
        ttl: Duration,
        n: usize,
    ) -> Result<Vec<(BackupSchedule, u64)>, StoreError> {
        let mut conn = self.conn().await?;
        let ids: Vec<u64> = conn
            .exec(
                format!(
                    "SELECT id FROM feishu_backup_schedules WHERE {CLAIMABLE} ORDER BY next_run_at LIMIT ?"
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
                    "UPDATE feishu_backup_schedules SET claimed_by = ?, claim_token = ?,
                         claimed_until = NOW(3) + INTERVAL ? MICROSECOND, last_started_at = NOW(3)
                     WHERE id = ? AND {CLAIMABLE}"
                ),
                (owner, token, micros(ttl), id),
            )
            .await?;
            if conn.affected_rows() != 1 {
                continue; // another instance was faster
            }
            conn.exec_drop(
                "INSERT INTO feishu_backup_runs (schedule_id, instance, started_at)
                 SELECT id, ?, last_started_at FROM feishu_backup_schedules WHERE id = ? AND claim_token = ?",
                (owner, id, token),
            )
            .await?;
            let run_id = conn.last_insert_id().unwrap_or(0);
            if let Some(row) = conn
                .exec_first::<Row, _, _>(
                    format!("SELECT {COLUMNS} FROM feishu_backup_schedules WHERE id = ?"),
                    (id,),
                )
                .await?
            {
                out.push((from_row(row), run_id));
            }
        }
        Ok(out)
    }

    /// Renews a claim; false when it is no longer ours.
    pub async fn renew_backup_schedule_claim(
        &self,
        s: &BackupSchedule,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        with_retry(3, || async {
            let mut conn = self.conn().await?;
            conn.exec_drop(
                "UPDATE feishu_backup_schedules SET claimed_until = NOW(3) + INTERVAL ? MICROSECOND
                 WHERE id = ? AND claim_token = ?",
                (micros(ttl), s.id, s.claim_token),
            )
            .await?;
            Ok(conn.affected_rows() == 1)
        })
        .await
    }

    /// Records how run `run_id` of `s` ended and when the next is due (a
    /// period after this one started; after a failure at most `retry` from
    /// now), releasing the claim. False (and the run marked `lost`) when the
    /// claim was no longer ours.
    pub async fn finish_backup_run(
        &self,
        s: &BackupSchedule,
        run_id: u64,
        status: RunStatus,
        summary: &str,
        error: &str,
        retry: Duration,
    ) -> Result<bool, StoreError> {
        let (summary, error) = (clip(summary, 1000), clip(error, 1000));
        with_retry(3, || async {
            let mut conn = self.conn().await?;
            let failed = status == RunStatus::Failed;
            conn.exec_drop(
                format!(
                    "UPDATE feishu_backup_schedules SET
                         next_run_at = IF(?, LEAST({NEXT_PERIOD}, NOW(3) + INTERVAL ? MICROSECOND), {NEXT_PERIOD}),
                         runs = runs + 1, last_finished_at = NOW(3), last_status = ?, last_summary = ?,
                         last_error = ?, failures = IF(?, failures + 1, 0),
                         claimed_by = '', claim_token = 0, claimed_until = NULL
                     WHERE id = ? AND claim_token = ?"
                ),
                (failed, micros(retry), status.as_str(), &summary, &error, failed, s.id, s.claim_token),
            )
            .await?;
            let ours = conn.affected_rows() == 1;
            conn.exec_drop(
                "UPDATE feishu_backup_runs SET finished_at = NOW(3), status = ?, summary = ?, error = ?
                 WHERE id = ?",
                (if ours { status.as_str() } else { "lost" }, &summary, &error, run_id),
            )
            .await?;
            Ok(ours)
        })
        .await
    }
}
