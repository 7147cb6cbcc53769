//! Counters the ingest path keeps for progress bars, `status` and `/metrics`.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Process-wide ingest counters (cheap to update from any task).
#[derive(Debug, Default)]
pub struct IngestStats {
    /// Records received from GetChatData.
    pub fetched: AtomicU64,
    /// Rows newly inserted.
    pub stored: AtomicU64,
    /// Batches committed.
    pub batches: AtomicU64,
    /// Per (corp, decrypt status) of records committed.
    pub by_status: Mutex<BTreeMap<(String, String), u64>>,
    /// Per (corp, code) of failed pulls.
    pub pull_errors: Mutex<BTreeMap<(String, i64), u64>>,
    /// GetChatData latency: (count, total seconds) per corp.
    pub pull_latency: Mutex<BTreeMap<String, (u64, f64)>>,
    /// Committed cursor per corp.
    pub cursors: Mutex<BTreeMap<String, u64>>,
    /// Corps whose worker fails before pulling (a key or sealed value that
    /// does not open, a DDL that fails), with the reason: `/readyz` and
    /// `/metrics` show them, as the corp's alarm does in `status`.
    pub setup_failures: Mutex<BTreeMap<String, String>>,
}

impl IngestStats {
    pub(crate) fn record_fetch(&self, corpid: &str, n: usize, latency: Duration) {
        self.fetched.fetch_add(n as u64, Ordering::Relaxed);
        let mut l = self.pull_latency.lock().unwrap();
        let e = l.entry(corpid.to_owned()).or_default();
        e.0 += 1;
        e.1 += latency.as_secs_f64();
    }

    pub(crate) fn record_error(&self, corpid: &str, code: i64) {
        *self.pull_errors.lock().unwrap().entry((corpid.to_owned(), code)).or_default() += 1;
    }

    pub(crate) fn record_commit<'a>(
        &self,
        corpid: &str,
        inserted: u64,
        cursor: u64,
        statuses: impl Iterator<Item = &'a str>,
    ) {
        self.stored.fetch_add(inserted, Ordering::Relaxed);
        self.batches.fetch_add(1, Ordering::Relaxed);
        let mut by = self.by_status.lock().unwrap();
        for s in statuses {
            *by.entry((corpid.to_owned(), s.to_owned())).or_default() += 1;
        }
        self.cursors.lock().unwrap().insert(corpid.to_owned(), cursor);
    }

    /// Rows stored so far.
    pub fn stored(&self) -> u64 {
        self.stored.load(Ordering::Relaxed)
    }
}
