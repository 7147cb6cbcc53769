//! Counters and gauges of the control plane, read by `/metrics` and `/readyz`.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Process-wide control-plane state (cheap to update from any task).
#[derive(Debug, Default)]
pub struct ControlStats {
    /// Whether the last Redis operation succeeded.
    pub redis_connected: AtomicBool,
    /// Successful (re)connections to Redis.
    pub redis_connects: AtomicU64,
    /// Failed Redis operations (connection errors and timeouts).
    pub redis_errors: AtomicU64,
    /// Queue entries moved from the list into the change log by this instance.
    pub queue_pumped: AtomicU64,
    /// Change events read from the change log, by kind of change.
    pub queue_events: Mutex<BTreeMap<String, u64>>,
    /// Queue entries that are neither JSON events nor corp ids.
    pub queue_invalid: AtomicU64,
    /// Leases acquired.
    pub leases_acquired: AtomicU64,
    /// Leases found taken by someone else (or expired and taken).
    pub leases_lost: AtomicU64,
    /// Leases given back (balancing, disabled corps, shutdown).
    pub leases_released: AtomicU64,
    /// Leases re-created after they expired while Redis was unreachable.
    pub leases_reclaimed: AtomicU64,
    /// Held leases: corp → fencing token.
    pub leases: Mutex<BTreeMap<String, u64>>,
    /// Live instances in the last heartbeat.
    pub live_instances: AtomicU64,
    /// Corps this instance aims to hold (ceil(corps / instances)).
    pub target: AtomicU64,
    /// Enabled corps in the last corplist read.
    pub corps_enabled: AtomicU64,
    /// Workers running.
    pub workers_running: AtomicU64,
    /// Held corps whose worker is not running (should be 0).
    pub workers_missing: AtomicU64,
    /// Worker restarts with fresh settings, by reason (event, update_flag, changed, crashed).
    pub reloads: Mutex<BTreeMap<String, u64>>,
    /// `corplist.update` flags reset after a reload.
    pub update_flags_cleared: AtomicU64,
    /// Redecrypt passes run.
    pub redecrypt_runs: AtomicU64,
    /// Records completed by redecrypt passes.
    pub redecrypt_completed: AtomicU64,
    /// corplist polls that failed (database unreachable).
    pub poll_errors: AtomicU64,
    /// Unix time (ms) of the coordinator's last loop turn.
    pub last_turn_ms: AtomicU64,
    /// Whether the database can be written to (see `control::dbhealth`).
    pub db_writable: AtomicBool,
    /// Leases given back because the database could not be written to.
    pub leases_given_away: AtomicU64,
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl ControlStats {
    pub(crate) fn count_event(&self, change: &str) {
        *self.queue_events.lock().unwrap().entry(change.to_owned()).or_default() += 1;
    }

    pub(crate) fn count_reload(&self, reason: &str) {
        *self.reloads.lock().unwrap().entry(reason.to_owned()).or_default() += 1;
    }

    pub(crate) fn set_redis(&self, up: bool) {
        self.redis_connected.store(up, Ordering::Relaxed);
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn turned(&self) {
        self.last_turn_ms.store(unix_ms(), Ordering::Relaxed);
    }

    /// Change events handled so far, all kinds.
    pub fn events_total(&self) -> u64 {
        self.queue_events.lock().unwrap().values().sum()
    }
}
