//! `corp_state`: the committed cursor, the fencing token and health per corp.

use std::collections::HashMap;

use mysql_async::Row;
use mysql_async::prelude::*;

use super::{CorpId, Store, StoreError};

/// The fencing rule on what the database holds: `token` is ours when the
/// stored fence equals it and we are its recorded owner (see
/// [`Store::claim_fence`]).
pub fn fence_is_ours(token: u64, owner: &str, stored: u64, stored_owner: &str) -> bool {
    stored == token && stored_owner == owner
}

/// Signs of life of a corp's writer, from its state row.
#[derive(Debug, Clone, PartialEq)]
pub struct Activity {
    /// Who last claimed the corp.
    pub owner: String,
    /// Seconds since the row last changed.
    pub idle_secs: f64,
}

/// A corp's pull state as `status` shows it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CorpState {
    /// The corp.
    pub corpid: String,
    /// Largest committed seq.
    pub seq: u64,
    /// Current fencing token.
    pub fence: u64,
    /// Who holds the token.
    pub owner: String,
    /// Last successful GetChatData (even if empty), `YYYY-MM-DD HH:MM:SS`.
    pub last_success_at: Option<String>,
    /// Last time the cursor moved.
    pub last_progress_at: Option<String>,
    /// Last error code (0 = none).
    pub last_error_code: i32,
    /// Last error text.
    pub last_error: String,
    /// Alarm text, empty when healthy.
    pub alarm: String,
    /// Records stored so far by this service.
    pub stored_total: u64,
    /// Seconds since the last successful pull (None: never).
    pub secs_since_success: Option<i64>,
}

impl Store {
    /// Creates the state row if missing.
    pub async fn ensure_state(&self, corpid: &CorpId) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        conn.exec_drop("INSERT IGNORE INTO corp_state (corpid) VALUES (?)", (corpid.as_str(),)).await?;
        Ok(())
    }

    /// Claims `corpid` for `owner`: the one fencing rule, for every writer.
    ///
    /// With `token` (issued by the lease service, Redis), the claim succeeds
    /// when the stored fence is below it, or already equals it *and* `owner`
    /// is its recorded owner (claiming again what is ours changes nothing).
    /// An equal token recorded for someone else is refused: even two holders
    /// of one token (possible only if Redis lost its counter between issuing
    /// it and this write) cannot both commit. Without a token the database
    /// issues the next one itself (one-shot `ingest`, no lease service).
    ///
    /// From then on only commits carrying the token succeed
    /// (`Store::commit_batch` checks it under `SELECT … FOR UPDATE`). A
    /// refused claim is [`StoreError::FenceLost`] with the stored token, so a
    /// lease service whose counter fell behind can raise it.
    pub async fn claim_fence(
        &self,
        corpid: &CorpId,
        owner: &str,
        token: Option<u64>,
    ) -> Result<u64, StoreError> {
        self.ensure_state(corpid).await?;
        let mut conn = self.conn().await?;
        match token {
            Some(t) => {
                conn.exec_drop(
                    "UPDATE corp_state SET fence = ?, owner = ? WHERE corpid = ? AND fence < ?",
                    (t, owner, corpid.as_str(), t),
                )
                .await?;
                let row: Option<(u64, String)> = conn
                    .exec_first("SELECT fence, owner FROM corp_state WHERE corpid = ?", (corpid.as_str(),))
                    .await?;
                let (current, holder) = row.unwrap_or_default();
                if !fence_is_ours(t, owner, current, &holder) {
                    return Err(StoreError::FenceLost { corpid: corpid.to_string(), mine: t, current });
                }
                Ok(t)
            }
            None => {
                let mut tx = conn.start_transaction(Default::default()).await?;
                tx.exec_drop(
                    "UPDATE corp_state SET fence = fence + 1, owner = ? WHERE corpid = ?",
                    (owner, corpid.as_str()),
                )
                .await?;
                let t: u64 = tx
                    .exec_first("SELECT fence FROM corp_state WHERE corpid = ?", (corpid.as_str(),))
                    .await?
                    .unwrap_or(0);
                tx.commit().await?;
                Ok(t)
            }
        }
    }

    /// The corp's current fencing token (0 when it has no state yet).
    pub async fn fence(&self, corpid: &CorpId) -> Result<u64, StoreError> {
        let mut conn = self.conn().await?;
        Ok(conn
            .exec_first("SELECT fence FROM corp_state WHERE corpid = ?", (corpid.as_str(),))
            .await?
            .unwrap_or(0))
    }

    /// Every corp's current fencing token, by corp id as stored.
    pub async fn fences(&self) -> Result<HashMap<String, u64>, StoreError> {
        let mut conn = self.conn().await?;
        let rows: Vec<(String, u64)> = conn.query("SELECT corpid, fence FROM corp_state").await?;
        Ok(rows.into_iter().collect())
    }

    /// Who last claimed `corpid`, and how many seconds ago its state row last
    /// changed (a claim, a pull, an error: every worker touches it at least
    /// every idle period). None: no state row yet.
    pub async fn activity(&self, corpid: &CorpId) -> Result<Option<Activity>, StoreError> {
        let mut conn = self.conn().await?;
        let row: Option<(String, f64)> = conn
            .exec_first(
                "SELECT owner, TIMESTAMPDIFF(MICROSECOND, updated_at, NOW(3)) / 1e6 FROM corp_state WHERE corpid = ?",
                (corpid.as_str(),),
            )
            .await?;
        Ok(row.map(|(owner, idle_secs)| Activity { owner, idle_secs }))
    }

    /// The committed cursor: the largest seq already stored.
    pub async fn cursor(&self, corpid: &CorpId) -> Result<u64, StoreError> {
        let mut conn = self.conn().await?;
        Ok(conn
            .exec_first("SELECT seq FROM corp_state WHERE corpid = ?", (corpid.as_str(),))
            .await?
            .unwrap_or(0))
    }

    /// Records a successful call that returned nothing new.
    pub async fn record_idle_success(&self, corpid: &CorpId) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        conn.exec_drop(
            "UPDATE corp_state SET last_success_at = NOW(3), last_attempt_at = NOW(3), last_error_code = 0,
                 last_error = '' WHERE corpid = ?",
            (corpid.as_str(),),
        )
        .await?;
        Ok(())
    }

    /// Records a failed pull (code and text; never secrets).
    pub async fn record_pull_error(&self, corpid: &CorpId, code: i32, error: &str) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        let error: String = error.chars().take(1000).collect();
        conn.exec_drop(
            "UPDATE corp_state SET last_attempt_at = NOW(3), last_error_code = ?, last_error = ? WHERE corpid = ?",
            (code, error, corpid.as_str()),
        )
        .await?;
        Ok(())
    }

    /// State of every corp that has one.
    pub async fn states(&self) -> Result<Vec<CorpState>, StoreError> {
        let mut conn = self.conn().await?;
        let rows: Vec<Row> = conn
            .query(
                "SELECT corpid, seq, fence, owner,
                    DATE_FORMAT(last_success_at, '%Y-%m-%d %H:%i:%s') AS ls,
                    DATE_FORMAT(last_progress_at, '%Y-%m-%d %H:%i:%s') AS lp,
                    last_error_code, last_error, alarm, stored_total,
                    TIMESTAMPDIFF(SECOND, last_success_at, NOW(3)) AS since
                 FROM corp_state ORDER BY corpid",
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|mut r| CorpState {
                corpid: r.take("corpid").unwrap_or_default(),
                seq: r.take("seq").unwrap_or_default(),
                fence: r.take("fence").unwrap_or_default(),
                owner: r.take("owner").unwrap_or_default(),
                last_success_at: r.take::<Option<String>, _>("ls").flatten(),
                last_progress_at: r.take::<Option<String>, _>("lp").flatten(),
                last_error_code: r.take("last_error_code").unwrap_or_default(),
                last_error: r.take("last_error").unwrap_or_default(),
                alarm: r.take("alarm").unwrap_or_default(),
                stored_total: r.take("stored_total").unwrap_or_default(),
                secs_since_success: r.take::<Option<i64>, _>("since").flatten(),
            })
            .collect())
    }

    /// Seconds since the corp's cursor last moved or, failing that, since it
    /// last pulled successfully; None when it never did either.
    pub async fn secs_since_progress(&self, corpid: &CorpId) -> Result<Option<i64>, StoreError> {
        let mut conn = self.conn().await?;
        Ok(conn
            .exec_first(
                "SELECT TIMESTAMPDIFF(SECOND, GREATEST(COALESCE(last_progress_at, last_success_at),
                        COALESCE(last_success_at, last_progress_at)), NOW(3))
                 FROM corp_state WHERE corpid = ?",
                (corpid.as_str(),),
            )
            .await?
            .flatten())
    }
}

#[cfg(test)]
mod tests {
    use super::fence_is_ours;

    #[test]
    fn a_token_is_ours_only_with_our_name_on_it() {
        // (token, owner, stored fence, stored owner) → ours?
        let cases = [
            (5, "a", 5, "a", true),
            (5, "a", 5, "b", false), // same token, someone else's: refused
            (5, "a", 6, "a", false), // a newer token was issued
            (5, "a", 4, "a", false), // the write did not happen
            (5, "a", 0, "", false),  // no state row
        ];
        for (token, owner, stored, holder, ours) in cases {
            assert_eq!(
                fence_is_ours(token, owner, stored, holder),
                ours,
                "{token} {owner} {stored} {holder}"
            );
        }
    }
}
