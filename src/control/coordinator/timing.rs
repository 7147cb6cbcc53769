//! How often the coordinator and the lease keeper act, all derived from the
//! lease time and the poll interval.

use std::time::Duration;

use crate::config::Config;

/// How often things happen, derived from the lease time and poll interval.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Lease time.
    pub ttl: Duration,
    /// Heartbeat and renewal period (ttl / 3).
    pub renew: Duration,
    /// How often free corps are looked for and finished stops are followed up.
    pub scan: Duration,
    /// Deadline of one Redis or database call made by the loop.
    pub op: Duration,
    /// corplist poll period.
    pub poll: Duration,
    /// Wait after start before taking corps, so instances started together see each other.
    pub settle: Duration,
    /// Longest wait of one change-log read (the event latency).
    pub block: Duration,
}

impl Timing {
    /// Timing for `config`.
    pub fn from_config(config: &Config) -> Timing {
        let ttl = config.lease_ttl.max(Duration::from_millis(300));
        let renew = ttl / 3;
        Timing {
            ttl,
            renew,
            scan: (ttl / 10).clamp(Duration::from_millis(100), Duration::from_secs(5)),
            op: (ttl / 4).clamp(Duration::from_millis(200), Duration::from_secs(5)),
            poll: config.poll_interval,
            settle: renew.min(Duration::from_secs(2)),
            block: Duration::from_millis(250),
        }
    }

    pub(super) fn ttl_ms(&self) -> u64 {
        self.ttl.as_millis() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timing_scales_with_the_lease() {
        let mut c = Config::resolve(&crate::config::SettingsArgs::default()).unwrap();
        let t = Timing::from_config(&c);
        assert_eq!(
            (t.ttl, t.renew, t.scan),
            (Duration::from_secs(30), Duration::from_secs(10), Duration::from_secs(3))
        );
        c.lease_ttl = Duration::from_secs(3);
        let t = Timing::from_config(&c);
        assert_eq!(
            (t.renew, t.scan, t.op),
            (Duration::from_secs(1), Duration::from_millis(300), Duration::from_millis(750))
        );
    }
}
