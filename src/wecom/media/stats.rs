//! Counters the media workers keep for `status`, reports and `/metrics`.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Process-wide media counters (cheap to update from any task). Counters only
/// grow; `jobs` is a gauge refreshed from the database.
#[derive(Debug, Default)]
pub struct MediaStats {
    /// Files verified and placed.
    pub files: AtomicU64,
    /// Bytes written to disk (all attempts).
    pub bytes: AtomicU64,
    /// GetMediaData chunks received.
    pub chunks: AtomicU64,
    /// Downloads discarded for a size or md5 mismatch.
    pub verify_failures: AtomicU64,
    /// GetMediaData calls retried after a transient error.
    pub retries: AtomicU64,
    /// Files fetched as parallel ranges (issue #16).
    pub ranged_files: AtomicU64,
    /// Ranges finished (durable) by parallel downloads.
    pub ranges_done: AtomicU64,
    /// Finished ranges an attempt found recorded and did not fetch again (a
    /// resume after a give-back or a restart).
    pub ranges_reused: AtomicU64,
    /// The most range streams one file used at once.
    pub streams_peak: AtomicU64,
    /// Voice files transcoded to MP3.
    pub transcoded: AtomicU64,
    /// Voice transcodes that failed.
    pub transcode_failures: AtomicU64,
    /// Failed GetMediaData calls per (corp, SDK code; 0 when refused before the call).
    pub errors: Mutex<BTreeMap<(String, i32), u64>>,
    /// Jobs per (corp, state), as last counted.
    pub jobs: Mutex<BTreeMap<(String, String), u64>>,
}

impl MediaStats {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn record_error(&self, corpid: &str, code: i32) {
        *self.errors.lock().unwrap().entry((corpid.to_owned(), code)).or_default() += 1;
    }

    pub(crate) fn set_jobs(&self, corpid: &str, counts: &BTreeMap<String, u64>) {
        let mut jobs = self.jobs.lock().unwrap();
        jobs.retain(|(c, _), _| c != corpid);
        for (state, n) in counts {
            jobs.insert((corpid.to_owned(), state.clone()), *n);
        }
    }

    /// Bytes written so far.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Files placed so far.
    pub fn files(&self) -> u64 {
        self.files.load(Ordering::Relaxed)
    }

    /// Chunks received so far.
    pub fn chunks(&self) -> u64 {
        self.chunks.load(Ordering::Relaxed)
    }
}
