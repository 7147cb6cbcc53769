//! Whether this instance can write to its database, watched continuously.
//!
//! A Redis lease says "this instance pulls the corp"; it is only worth holding
//! while the instance can also *store* what it pulls. When the database (every
//! host of `DATABASE_URL`) stops answering, or answers but refuses writes (a
//! Galera node cut off from the primary component, a read-only server), the
//! lease keeper gives every lease back and leaves the membership, so healthy
//! instances see fewer peers, raise their share and take the corps over at
//! their next scan. Once the database is writable again the instance rejoins
//! and takes its share back through the usual balancing. The fence in
//! `corp_state` keeps this safe whatever the timing: a batch commits only
//! under the newest token.
//!
//! A single failed probe is not enough (a connection reset during a failover
//! between hosts is normal): the database counts as unwritable once probes
//! have failed for `grace` in a row.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::store::Store;

/// Probe timing.
#[derive(Debug, Clone, Copy)]
pub struct HealthTiming {
    /// Time between probes.
    pub period: Duration,
    /// Deadline of one probe.
    pub timeout: Duration,
    /// How long probes must fail in a row before the database counts as unwritable.
    pub grace: Duration,
}

impl HealthTiming {
    /// Timing for a lease time `ttl`: probes every ttl/10 (at least 100 ms),
    /// gives up after ttl/3 of failures, so corps move well within the lease time.
    pub fn for_lease(ttl: Duration) -> HealthTiming {
        HealthTiming {
            period: (ttl / 10).clamp(Duration::from_millis(100), Duration::from_secs(3)),
            timeout: (ttl / 4).clamp(Duration::from_millis(300), Duration::from_secs(5)),
            grace: (ttl / 3).clamp(Duration::from_millis(300), Duration::from_secs(10)),
        }
    }
}

/// Decides writable / not writable from probe outcomes (pure, for testing).
#[derive(Debug)]
pub struct Verdict {
    grace: Duration,
    failing_since: Option<Instant>,
    writable: bool,
}

impl Verdict {
    /// Starts writable (the caller connected and migrated before).
    pub fn new(grace: Duration) -> Verdict {
        Verdict { grace, failing_since: None, writable: true }
    }

    /// Records one probe at `now`; returns the verdict.
    pub fn record(&mut self, ok: bool, now: Instant) -> bool {
        if ok {
            self.failing_since = None;
            self.writable = true;
        } else {
            let since = *self.failing_since.get_or_insert(now);
            if now.duration_since(since) >= self.grace {
                self.writable = false;
            }
        }
        self.writable
    }

    /// How long probes have failed in a row.
    pub fn failing_for(&self, now: Instant) -> Option<Duration> {
        self.failing_since.map(|s| now.duration_since(s))
    }
}

/// Starts the watcher; the receiver says whether the database is writable now.
pub fn spawn(
    store: Store,
    timing: HealthTiming,
    stats: Arc<super::ControlStats>,
    cancel: CancellationToken,
) -> (watch::Receiver<bool>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = watch::channel(true);
    stats.db_writable.store(true, std::sync::atomic::Ordering::Relaxed);
    let task = tokio::spawn(async move {
        let mut verdict = Verdict::new(timing.grace);
        let mut down_at: Option<Instant> = None;
        let mut tick = tokio::time::interval(timing.period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            let probe = tokio::time::timeout(timing.timeout, store.writable()).await;
            let why = match &probe {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(_) => Some(format!("no answer within {:?}", timing.timeout)),
            };
            let now = Instant::now();
            let writable = verdict.record(why.is_none(), now);
            if writable == *tx.borrow() {
                continue;
            }
            stats.db_writable.store(writable, std::sync::atomic::Ordering::Relaxed);
            if writable {
                let after = down_at.take().map(|t| t.elapsed()).unwrap_or_default();
                tracing::info!(host = %store.active_host(), "the database is writable again after {after:.1?}: taking corps again");
            } else {
                down_at = Some(now);
                tracing::error!(
                    failing_for = ?verdict.failing_for(now),
                    "the database cannot be written to ({}): giving every corp away until it can",
                    why.unwrap_or_default()
                );
            }
            let _ = tx.send(writable);
        }
    });
    (rx, task)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_failure_is_not_enough_but_a_streak_is() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut v = Verdict::new(Duration::from_millis(1000));
        assert!(v.record(false, ms(0)));
        assert!(v.record(false, ms(900)));
        assert!(v.record(true, ms(1000)), "a success resets the streak");
        assert!(v.record(false, ms(1100)));
        assert!(!v.record(false, ms(2100)));
        assert_eq!(v.failing_for(ms(2600)), Some(Duration::from_millis(1500)));
        assert!(v.record(true, ms(2700)));
        assert_eq!(v.failing_for(ms(2800)), None);
    }

    #[test]
    fn timing_fits_in_the_lease() {
        let t = HealthTiming::for_lease(Duration::from_secs(3));
        assert_eq!(t.period, Duration::from_millis(300));
        assert_eq!(t.grace, Duration::from_secs(1));
        assert!(t.grace + t.timeout + t.period < Duration::from_secs(3));
        let t = HealthTiming::for_lease(Duration::from_secs(30));
        assert_eq!((t.period, t.grace), (Duration::from_secs(3), Duration::from_secs(10)));
    }
}
