//! Scheduled backups (`feishu backup schedule`): `run` looks for due
//! schedules every `--feishu-backup-check-secs`, claims them (one instance
//! runs a schedule at a time, [`crate::store::feishu_backup_schedules`]),
//! runs each as `feishu backup` would into the default directory, renews the
//! claim while it runs and records how it ended and when the next is due.
//!
//! A run that loses its claim (the database thought this instance dead and
//! another took over) is stopped at once: two runs of one schedule must not
//! write the same directory. A run killed with its instance is due again as
//! soon as the claim is released (at that instance's restart) or expires.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{BackupOptions, Progress, Source};
use crate::feishu::Feishu;
use crate::store::feishu_backup_schedules::{BackupSchedule, RunStatus};

/// The shortest period a schedule may have.
pub const MIN_EVERY: Duration = Duration::from_secs(1);

/// Parses a period: a number with a unit `s`, `m`, `h` or `d` (`24h`, `90m`, `2s`, `1.5h`).
pub fn parse_every(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: f64 = n.parse().map_err(|_| format!("{s:?}: expected a number and a unit (24h, 90m, 2s)"))?;
    let unit = match unit.trim() {
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86_400.0,
        u => return Err(format!("{s:?}: unknown unit {u:?} (s, m, h or d)")),
    };
    let d = Duration::try_from_secs_f64(n * unit).map_err(|_| format!("{s:?} is out of range"))?;
    if d < MIN_EVERY || d > Duration::from_secs(366 * 86_400) {
        return Err(format!("{s:?}: the period must be between 1 s and a year"));
    }
    Ok(d)
}

/// The wait before a failed schedule is tried again: a minute, doubling with
/// each failure in a row, at most an hour and never more than its period.
pub fn retry_after(every: Duration, failures: u64) -> Duration {
    let backoff = Duration::from_secs(60u64 << failures.min(6)).min(Duration::from_secs(3600));
    backoff.min(every)
}

/// Runs due schedules until `cancel`.
pub async fn run(feishu: Arc<Feishu>, cancel: CancellationToken) {
    let settings = feishu.config.backup_schedule.clone();
    let owner = feishu.config.instance.clone();
    match feishu.store.release_own_backup_schedules(&owner).await {
        Ok(0) => {}
        Ok(n) => {
            tracing::info!("feishu backup: released {n} scheduled run(s) this instance left at its last stop")
        }
        Err(e) => tracing::warn!("feishu backup: releasing this instance's schedules: {e}"),
    }
    let mut running = tokio::task::JoinSet::new();
    loop {
        while running.try_join_next().is_some() {}
        let free = settings.workers.saturating_sub(running.len());
        if free > 0 {
            match feishu.store.claim_backup_schedules(&owner, settings.claim_ttl, free).await {
                Ok(claimed) => {
                    for (s, run_id) in claimed {
                        running.spawn(run_one(feishu.clone(), s, run_id, cancel.clone()));
                    }
                }
                Err(e) => tracing::warn!("feishu backup: looking for due schedules: {e}"),
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(settings.check) => {}
        }
    }
    // Runs stop with the process; their claims are released at the next start.
    running.shutdown().await;
}

/// One run of `s`, its claim renewed until it ends.
async fn run_one(feishu: Arc<Feishu>, s: BackupSchedule, run_id: u64, cancel: CancellationToken) {
    let ttl = feishu.config.backup_schedule.claim_ttl;
    tracing::info!(schedule = s.id, app = %s.app_id, source = %s.source, "feishu backup: scheduled run starts");
    let backup = backup_of(&feishu, &s);
    tokio::pin!(backup);
    let renew_every = ttl / 3;
    let (status, summary, error) = loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            r = &mut backup => break r,
            _ = tokio::time::sleep(renew_every) => {
                match feishu.store.renew_backup_schedule_claim(&s, ttl).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(schedule = s.id, "feishu backup: the schedule's claim was taken over; run stopped");
                        return;
                    }
                    // The claim may still be ours: keep going, the next renewal tells.
                    Err(e) => tracing::warn!(schedule = s.id, "feishu backup: renewing the claim: {e}"),
                }
            }
        }
    };
    let retry = retry_after(Duration::from_millis(s.every_ms), s.failures);
    match feishu.store.finish_backup_run(&s, run_id, status, &summary, &error, retry).await {
        Ok(true) => {
            tracing::info!(schedule = s.id, status = status.as_str(), "feishu backup: scheduled run ended")
        }
        Ok(false) => tracing::warn!(schedule = s.id, "feishu backup: the run ended after its claim was lost"),
        Err(e) => tracing::warn!(schedule = s.id, "feishu backup: recording the run: {e}"),
    }
}

/// The backup itself: `(status, summary, error)`.
async fn backup_of(feishu: &Arc<Feishu>, s: &BackupSchedule) -> (RunStatus, String, String) {
    let source: Source = match s.source.parse() {
        Ok(src) => src,
        Err(e) => return (RunStatus::Failed, String::new(), format!("source: {e}")),
    };
    if !(super::walk::is_token(&s.app_id) && super::walk::is_token(&s.open_id)) {
        return (RunStatus::Failed, String::new(), "app or user is not an identifier".into());
    }
    let out = super::default_out(&feishu.config, &s.app_id, &s.open_id);
    let opts = BackupOptions::new(&s.app_id, &s.open_id, source, out);
    match super::run(feishu.clone(), opts, Arc::new(Progress::default())).await {
        Ok(report) => {
            let status = if report.summary.failed > 0 { RunStatus::Partial } else { RunStatus::Ok };
            (status, report.summary.lines().join("; "), String::new())
        }
        Err(e) => (RunStatus::Failed, String::new(), e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods() {
        assert_eq!(parse_every("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_every("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_every(" 90m "), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_every("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_every("7d"), Ok(Duration::from_secs(7 * 86_400)));
        for bad in ["", "24", "h", "0s", "0.5s", "-1h", "1w", "999999999999d", "NaNh", "1e9s"] {
            assert!(parse_every(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn failed_runs_back_off_within_the_period() {
        let day = Duration::from_secs(86_400);
        assert_eq!(retry_after(day, 0), Duration::from_secs(60));
        assert_eq!(retry_after(day, 1), Duration::from_secs(120));
        assert_eq!(retry_after(day, 40), Duration::from_secs(3600));
        assert_eq!(retry_after(Duration::from_secs(2), 3), Duration::from_secs(2));
    }
}
