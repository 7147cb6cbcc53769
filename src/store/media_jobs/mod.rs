//! `media_jobs` and `media_ranges`: everything that reads or writes the media
//! queue.
//!
//! - here: creating jobs in the message transaction, recording verification, the
//!   ranges of parallel downloads;
//! - [`state`]: a job's state and the claimed job's row;
//! - [`claim`]: claiming jobs and recording progress under a claim;
//! - [`settle`]: settling jobs, pausing, resuming and requeueing them, and
//!   deriving the message row's media columns from its jobs;
//! - [`report`]: counts, backlog, and the voice transcode bookkeeping.

pub mod claim;
pub mod report;
pub mod settle;
pub mod state;

use std::future::Future;
use std::time::Duration;

use mysql_async::{IsolationLevel, TxOpts, Value};

use super::messages::TxStatement;
use super::{CorpId, StoreError};
use crate::model::media::MediaRef;

pub use settle::{MessageMedia, message_media};
pub use state::{CODE_CORRUPT, Job, JobState, Terminal};

/// Transactions of the queue read committed data and take no gap locks: workers
/// settle neighbouring jobs at the same time, and repeatable read's next-key locks
/// on `(corpid, msgid, …)` ranges made them deadlock.
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

/// A duration in microseconds, for SQL intervals.
pub fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Error text as stored (`last_error`, alarm texts): its first 1000 characters.
pub fn clip(s: &str) -> String {
    s.chars().take(1000).collect()
}

/// Columns written when a job is created.
const COLUMNS: &str =
    "corpid, msgid, item_index, kind, sdkfileid, md5sum, size, filename, fileext, emotion_type, msgtime";
const WIDTH: usize = 11;

/// Rows per media INSERT: MySQL allows at most 65,535 placeholders in one
/// statement, and a batch of 1000 `mixed` messages can reference far more
/// media than 65,535 / 11 (issue #9).
const ROWS_PER_STATEMENT: usize = 1000;

/// Bytes of parameters per media INSERT, well under `max_allowed_packet`
/// (sdkfileids can be long).
const BYTES_PER_STATEMENT: usize = 4 << 20;

/// Widths of the text columns (0003); longer values are cut to fit, since the
/// message itself keeps the full reference in `msgdata`.
const KIND_WIDTH: usize = 32;
const MD5_WIDTH: usize = 64;

fn cut(s: &str, max_chars: usize) -> String {
    s.chars().take(max_chars).collect()
}

/// INSERTs for all media of a batch (idempotent on (corpid, msgid, item_index)),
/// to run inside the batch's transaction, chunked so no statement exceeds the
/// placeholder or packet limits. Empty when there is no media.
pub fn enqueue_statement<'a>(
    corpid: &CorpId,
    items: impl IntoIterator<Item = (&'a str, i64, &'a MediaRef)>,
) -> Vec<TxStatement> {
    let mut statements = Vec::new();
    let (mut params, mut rows, mut bytes): (Vec<Value>, usize, usize) = (Vec::new(), 0, 0);
    let flush = |params: &mut Vec<Value>, rows: &mut usize, bytes: &mut usize, out: &mut Vec<TxStatement>| {
        if *rows == 0 {
            return;
        }
        let row = format!("({})", ["?"; WIDTH].join(","));
        let sql = format!(
            "INSERT INTO media_jobs ({COLUMNS}) VALUES {} ON DUPLICATE KEY UPDATE id = id",
            vec![row.as_str(); *rows].join(",")
        );
        out.push(TxStatement { sql, params: std::mem::take(params) });
        (*rows, *bytes) = (0, 0);
    };
    for (msgid, msgtime, m) in items {
        let size = 256 + msgid.len() + m.sdkfileid.len() + m.filename.as_ref().map_or(0, String::len);
        if rows > 0 && (rows >= ROWS_PER_STATEMENT || bytes + size > BYTES_PER_STATEMENT) {
            flush(&mut params, &mut rows, &mut bytes, &mut statements);
        }
        params.extend([
            corpid.as_str().into(),
            msgid.into(),
            m.index.into(),
            cut(m.kind.as_str(), KIND_WIDTH).into(),
            m.sdkfileid.as_str().into(),
            cut(&m.md5sum, MD5_WIDTH).into(),
            m.size.into(),
            m.filename.clone().unwrap_or_default().chars().take(1000).collect::<String>().into(),
            m.fileext.clone().unwrap_or_default().chars().take(60).collect::<String>().into(),
            m.emotion_type.into(),
            msgtime.into(),
        ]);
        rows += 1;
        bytes += size;
    }
    flush(&mut params, &mut rows, &mut bytes, &mut statements);
    statements
}

impl super::Store {
    /// Records how a job's file was verified (`md5` or `unverified`, see
    /// `wecom::media::verify::Verification`), while `claim_token` still holds it.
    pub async fn set_media_verification(
        &self,
        id: u64,
        claim_token: u64,
        how: &str,
    ) -> Result<bool, StoreError> {
        use mysql_async::prelude::*;
        let mut conn = self.conn().await?;
        conn.exec_drop(
            "UPDATE media_jobs SET verification = ? WHERE id = ? AND claim_token = ?",
            (how, id, claim_token),
        )
        .await?;
        Ok(conn.affected_rows() == 1)
    }

    /// The corp's largest media item with a stated size: `(sdkfileid, size)`
    /// (the benchmarks pick their big video this way, whoever serves it).
    pub async fn largest_media_item(&self, corpid: &CorpId) -> Result<Option<(String, u64)>, StoreError> {
        use mysql_async::prelude::*;
        let mut conn = self.conn().await?;
        Ok(conn
            .exec_first(
                "SELECT sdkfileid, size FROM media_jobs WHERE corpid = ? AND size IS NOT NULL
                 ORDER BY size DESC, id LIMIT 1",
                (corpid.as_str(),),
            )
            .await?)
    }
}

/// One range of a parallel media download (`media_ranges`, 0014): bytes
/// `[start, done)` of `[start, end)` are durable in the `.part` file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaRange {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
    /// One past the last durable byte (`start..=end`).
    pub done: u64,
}

impl MediaRange {
    /// Whether every byte of it is durable.
    pub fn is_finished(&self) -> bool {
        self.done >= self.end
    }
}

impl super::Store {
    /// The recorded ranges of a job's parallel download, by start.
    pub async fn media_ranges(&self, job_id: u64) -> Result<Vec<MediaRange>, StoreError> {
        use mysql_async::prelude::*;
        let mut conn = self.conn().await?;
        let rows: Vec<(u64, u64, u64)> = conn
            .exec(
                "SELECT range_start, range_end, done_to FROM media_ranges WHERE job_id = ? ORDER BY range_start",
                (job_id,),
            )
            .await?;
        Ok(rows.into_iter().map(|(start, end, done)| MediaRange { start, end, done }).collect())
    }

    /// Records durable progress of several ranges of one job and renews its claim,
    /// in one transaction conditioned on the claim: false (nothing written) when the
    /// claim is no longer `claim_token`'s. `claim_ttl_us` is the renewed claim's
    /// lifetime; `chunks` is added to the job's chunk count; `bytes_done` is the
    /// job's durable bytes over all its ranges.
    #[allow(clippy::too_many_arguments)]
    pub async fn record_media_ranges(
        &self,
        job_id: u64,
        claim_token: u64,
        claim_ttl_us: u64,
        chunks: u32,
        bytes_done: u64,
        ranges: &[MediaRange],
    ) -> Result<bool, StoreError> {
        use mysql_async::prelude::*;
        let mut conn = self.conn().await?;
        let mut opts = mysql_async::TxOpts::default();
        opts.with_isolation_level(mysql_async::IsolationLevel::ReadCommitted);
        let mut tx = conn.start_transaction(opts).await?;
        // `chunks` grows with every write, so a matched row always counts as affected.
        tx.exec_drop(
            "UPDATE media_jobs SET chunks = chunks + ?, bytes_done = ?,
                 claimed_until = NOW(3) + INTERVAL ? MICROSECOND
             WHERE id = ? AND claim_token = ? AND state = 'downloading'",
            (chunks.max(1), bytes_done, claim_ttl_us, job_id, claim_token),
        )
        .await?;
        if tx.affected_rows() != 1 {
            tx.rollback().await?;
            return Ok(false);
        }
        if !ranges.is_empty() {
            let row = "(?, ?, ?, ?)";
            let sql = format!(
                "INSERT INTO media_ranges (job_id, range_start, range_end, done_to) VALUES {}
                 ON DUPLICATE KEY UPDATE range_end = VALUES(range_end), done_to = GREATEST(done_to, VALUES(done_to))",
                vec![row; ranges.len()].join(",")
            );
            let params: Vec<mysql_async::Value> = ranges
                .iter()
                .flat_map(|r| [job_id.into(), r.start.into(), r.end.into(), r.done.into()])
                .collect();
            tx.exec_drop(sql, params).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Forgets a job's ranges (its `.part` file was placed, emptied or discarded).
    pub async fn clear_media_ranges(&self, job_id: u64) -> Result<(), StoreError> {
        use mysql_async::prelude::*;
        let mut conn = self.conn().await?;
        conn.exec_drop("DELETE FROM media_ranges WHERE job_id = ?", (job_id,)).await?;
        Ok(())
    }
}
