//! Settings of the recording archive: each a flag, an environment variable
//! and a config-file key of the same name (DEVELOPERS.md), flattened into the
//! global settings; `src/config.rs` reads the file's keys and hands them to
//! [`RecordingArgs::or`], so the precedence is flag > environment > file > default.

use std::time::Duration;

/// As given on the command line or in the environment.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RecordingArgs {
    /// Longest wait for a meeting's recording to be produced, from when its job was created
    /// (the meeting-ended event) or last retried, in seconds; then the job fails as "gave up
    /// waiting" [default: 21600].
    #[arg(long, env = "FEISHU_RECORDING_MAX_WAIT_SECS", global = true)]
    pub feishu_recording_max_wait_secs: Option<f64>,
    /// First wait between polls of a recording that is not ready, in seconds; doubles
    /// up to --feishu-recording-max-poll-secs [default: 15].
    #[arg(long, env = "FEISHU_RECORDING_POLL_SECS", global = true)]
    pub feishu_recording_poll_secs: Option<f64>,
    /// Longest wait between polls, in seconds [default: 600].
    #[arg(long, env = "FEISHU_RECORDING_MAX_POLL_SECS", global = true)]
    pub feishu_recording_max_poll_secs: Option<f64>,
    /// Recordings downloaded at once by this instance [default: 2].
    #[arg(long, env = "FEISHU_RECORDING_WORKERS", global = true)]
    pub feishu_recording_workers: Option<usize>,
    /// Seconds a claim on a recording job lasts without renewal [default: 60].
    #[arg(long, env = "FEISHU_RECORDING_CLAIM_SECS", global = true)]
    pub feishu_recording_claim_secs: Option<f64>,
    /// Failed attempts (errors, not "not ready yet") before a job is `failed` [default: 12].
    #[arg(long, env = "FEISHU_RECORDING_MAX_ATTEMPTS", global = true)]
    pub feishu_recording_max_attempts: Option<u32>,
}

impl RecordingArgs {
    /// Each setting given here, else the one of `fallback` (the config file's).
    pub fn or(&self, fallback: RecordingArgs) -> RecordingArgs {
        RecordingArgs {
            feishu_recording_max_wait_secs: self
                .feishu_recording_max_wait_secs
                .or(fallback.feishu_recording_max_wait_secs),
            feishu_recording_poll_secs: self
                .feishu_recording_poll_secs
                .or(fallback.feishu_recording_poll_secs),
            feishu_recording_max_poll_secs: self
                .feishu_recording_max_poll_secs
                .or(fallback.feishu_recording_max_poll_secs),
            feishu_recording_workers: self.feishu_recording_workers.or(fallback.feishu_recording_workers),
            feishu_recording_claim_secs: self
                .feishu_recording_claim_secs
                .or(fallback.feishu_recording_claim_secs),
            feishu_recording_max_attempts: self
                .feishu_recording_max_attempts
                .or(fallback.feishu_recording_max_attempts),
        }
    }
}

/// Resolved.
#[derive(Debug, Clone)]
pub struct RecordingSettings {
    /// Longest wait for the recording (from the job's creation).
    pub max_wait: Duration,
    /// First poll interval.
    pub poll: Duration,
    /// Longest poll interval.
    pub max_poll: Duration,
    /// Concurrent jobs per instance.
    pub workers: usize,
    /// Claim lifetime.
    pub claim_ttl: Duration,
    /// Failed attempts before `failed`.
    pub max_attempts: u32,
}

impl Default for RecordingSettings {
    fn default() -> Self {
        RecordingSettings {
            max_wait: Duration::from_secs(6 * 3600),
            poll: Duration::from_secs(15),
            max_poll: Duration::from_secs(600),
            workers: 2,
            claim_ttl: Duration::from_secs(60),
            max_attempts: 12,
        }
    }
}

fn secs(name: &str, v: Option<f64>, default: Duration) -> anyhow::Result<Duration> {
    match v {
        None => Ok(default),
        Some(v) if v.is_finite() && v > 0.0 => Ok(Duration::from_secs_f64(v)),
        Some(v) => anyhow::bail!("{name} must be a positive number of seconds, got {v}"),
    }
}

impl RecordingSettings {
    /// Resolves the flags over the defaults.
    pub fn resolve(a: &RecordingArgs) -> anyhow::Result<RecordingSettings> {
        let d = RecordingSettings::default();
        let s = RecordingSettings {
            max_wait: secs("feishu_recording_max_wait_secs", a.feishu_recording_max_wait_secs, d.max_wait)?,
            poll: secs("feishu_recording_poll_secs", a.feishu_recording_poll_secs, d.poll)?,
            max_poll: secs("feishu_recording_max_poll_secs", a.feishu_recording_max_poll_secs, d.max_poll)?,
            workers: a.feishu_recording_workers.unwrap_or(d.workers),
            claim_ttl: secs("feishu_recording_claim_secs", a.feishu_recording_claim_secs, d.claim_ttl)?,
            max_attempts: a.feishu_recording_max_attempts.unwrap_or(d.max_attempts),
        };
        if s.workers == 0 || s.workers > 64 {
            anyhow::bail!("feishu_recording_workers must be within 1..=64");
        }
        if s.max_attempts == 0 {
            anyhow::bail!("feishu_recording_max_attempts must be at least 1");
        }
        if s.claim_ttl < Duration::from_secs(2) {
            anyhow::bail!("feishu_recording_claim_secs must be at least 2");
        }
        Ok(s)
    }

    /// The wait before poll number `polls + 1` of a recording that is not ready.
    pub fn poll_delay(&self, polls: u32) -> Duration {
        self.poll.saturating_mul(1u32 << polls.min(20)).min(self.max_poll).max(self.poll.min(self.max_poll))
    }

    /// The wait after failed attempt number `attempts` (capped like the polls).
    pub fn retry_delay(&self, attempts: u32) -> Duration {
        self.poll_delay(attempts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_backoff() {
        let s = RecordingSettings::resolve(&RecordingArgs::default()).unwrap();
        assert_eq!(s.max_wait, Duration::from_secs(21600));
        assert_eq!(s.poll_delay(0), Duration::from_secs(15));
        assert_eq!(s.poll_delay(1), Duration::from_secs(30));
        assert_eq!(s.poll_delay(10), Duration::from_secs(600), "capped");
        assert_eq!(s.poll_delay(1000), Duration::from_secs(600));
        let bad = RecordingArgs { feishu_recording_workers: Some(0), ..Default::default() };
        assert!(RecordingSettings::resolve(&bad).is_err());
        let bad = RecordingArgs { feishu_recording_poll_secs: Some(-1.0), ..Default::default() };
        assert!(RecordingSettings::resolve(&bad).is_err());
    }
}
