//! Counters of the Feishu modules, read by `/metrics`. Labelled counters
//! keep their label values in small maps (reasons and kinds are a fixed,
//! short vocabulary; hand-out keys are few).

use std::collections::BTreeMap;
use std::sync::Mutex;

/// Upper bounds (seconds) of the authorization-duration histogram buckets.
pub const AUTH_DURATION_BUCKETS: &[f64] = &[1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0];

/// A histogram: cumulative counts per bucket, sum and count.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    /// Observations at or below each bound of [`AUTH_DURATION_BUCKETS`].
    pub buckets: Vec<u64>,
    /// Sum of observations.
    pub sum: f64,
    /// Number of observations.
    pub count: u64,
}

impl Histogram {
    fn observe(&mut self, v: f64) {
        if self.buckets.len() != AUTH_DURATION_BUCKETS.len() {
            self.buckets = vec![0; AUTH_DURATION_BUCKETS.len()];
        }
        for (i, bound) in AUTH_DURATION_BUCKETS.iter().enumerate() {
            if v <= *bound {
                self.buckets[i] += 1;
            }
        }
        self.sum += v;
        self.count += 1;
    }
}

/// The counters.
#[derive(Debug, Default)]
pub struct FeishuStats {
    /// Authorizations completed, by app.
    pub auth_success: Mutex<BTreeMap<String, u64>>,
    /// Authorizations failed, by reason.
    pub auth_failure: Mutex<BTreeMap<String, u64>>,
    /// Seconds from `/auth/start` to a completed callback.
    pub auth_duration: Mutex<Histogram>,
    /// Tokens fetched or refreshed from Feishu, by kind (tenant, app, user).
    pub token_refreshes: Mutex<BTreeMap<String, u64>>,
    /// Token refreshes that failed, by kind.
    pub token_refresh_failures: Mutex<BTreeMap<String, u64>>,
    /// Events accepted, by type.
    pub events_accepted: Mutex<BTreeMap<String, u64>>,
    /// Pushes refused, by reason.
    pub events_refused: Mutex<BTreeMap<String, u64>>,
    /// Token hand-outs, by key name.
    pub handouts: Mutex<BTreeMap<String, u64>>,
    /// Calls answered 429, by route.
    pub throttled: Mutex<BTreeMap<String, u64>>,
    /// Long connections opened, by app.
    pub long_connections_opened: Mutex<BTreeMap<String, u64>>,
}

impl FeishuStats {
    /// Adds one to `label` of a labelled counter.
    pub fn inc(map: &Mutex<BTreeMap<String, u64>>, label: &str) {
        *map.lock().unwrap().entry(label.to_owned()).or_default() += 1;
    }

    /// The value of one label (0 when never counted).
    pub fn get(map: &Mutex<BTreeMap<String, u64>>, label: &str) -> u64 {
        map.lock().unwrap().get(label).copied().unwrap_or(0)
    }

    /// A copy of a labelled counter.
    pub fn snapshot(map: &Mutex<BTreeMap<String, u64>>) -> Vec<(String, u64)> {
        map.lock().unwrap().iter().map(|(k, v)| (k.clone(), *v)).collect()
    }

    /// Records a completed authorization that took `secs`.
    pub fn auth_completed(&self, app_id: &str, secs: f64) {
        Self::inc(&self.auth_success, app_id);
        self.auth_duration.lock().unwrap().observe(secs.max(0.0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative() {
        let s = FeishuStats::default();
        s.auth_completed("a", 3.0);
        s.auth_completed("a", 700.0);
        let h = s.auth_duration.lock().unwrap().clone();
        assert_eq!(h.count, 2);
        assert_eq!(h.buckets[0], 0);
        assert_eq!(h.buckets[1], 1);
        assert_eq!(*h.buckets.last().unwrap(), 1, "700 s is above every bound (only +Inf)");
        assert_eq!(FeishuStats::get(&s.auth_success, "a"), 2);
    }
}
