//! Settings of the scheduled backups `run` makes: each a flag and an
//! environment variable (DEVELOPERS.md), flattened into the global settings.

use std::time::Duration;

/// As given on the command line or in the environment.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ScheduleArgs {
    /// How often `run` looks for scheduled docs backups that are due, in seconds [default: 30].
    #[arg(long, env = "FEISHU_BACKUP_CHECK_SECS", global = true)]
    pub feishu_backup_check_secs: Option<f64>,
    /// Seconds a claim on a scheduled backup lasts without renewal (a running backup renews
    /// it; an instance that died lets another take the schedule after this) [default: 120].
    #[arg(long, env = "FEISHU_BACKUP_CLAIM_SECS", global = true)]
    pub feishu_backup_claim_secs: Option<f64>,
    /// Scheduled backups this instance runs at once [default: 1].
    #[arg(long, env = "FEISHU_BACKUP_WORKERS", global = true)]
    pub feishu_backup_workers: Option<usize>,
}

/// Resolved.
#[derive(Debug, Clone)]
pub struct ScheduleSettings {
    /// Interval between looks for due schedules.
    pub check: Duration,
    /// Claim lifetime.
    pub claim_ttl: Duration,
    /// Concurrent scheduled backups per instance.
    pub workers: usize,
}

impl Default for ScheduleSettings {
    fn default() -> Self {
        ScheduleSettings { check: Duration::from_secs(30), claim_ttl: Duration::from_secs(120), workers: 1 }
    }
}

fn secs(name: &str, v: Option<f64>, default: Duration) -> anyhow::Result<Duration> {
    match v {
        None => Ok(default),
        Some(v) if v.is_finite() && v > 0.0 => Ok(Duration::from_secs_f64(v)),
        Some(v) => anyhow::bail!("{name} must be a positive number of seconds, got {v}"),
    }
}

impl ScheduleSettings {
    /// Resolves the flags over the defaults.
    pub fn resolve(a: &ScheduleArgs) -> anyhow::Result<ScheduleSettings> {
        let d = ScheduleSettings::default();
        let s = ScheduleSettings {
            check: secs("feishu_backup_check_secs", a.feishu_backup_check_secs, d.check)?,
            claim_ttl: secs("feishu_backup_claim_secs", a.feishu_backup_claim_secs, d.claim_ttl)?,
            workers: a.feishu_backup_workers.unwrap_or(d.workers).clamp(1, 64),
        };
        if s.claim_ttl < Duration::from_secs(1) {
            anyhow::bail!("feishu_backup_claim_secs must be at least 1 second");
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_bad_values() {
        let s = ScheduleSettings::resolve(&ScheduleArgs::default()).unwrap();
        assert_eq!((s.check, s.claim_ttl, s.workers), (Duration::from_secs(30), Duration::from_secs(120), 1));
        let bad = ScheduleArgs { feishu_backup_check_secs: Some(-1.0), ..Default::default() };
        assert!(ScheduleSettings::resolve(&bad).is_err());
        let short = ScheduleArgs { feishu_backup_claim_secs: Some(0.2), ..Default::default() };
        assert!(ScheduleSettings::resolve(&short).is_err());
    }
}
