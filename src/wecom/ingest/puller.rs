//! The puller: one OS thread per corp that owns the corp's SDK handle for its
//! whole life and calls GetChatData (a blocking call of up to ~2× the timeout,
//! which must never run on an async worker, RUST-NOTES.md §7.2).
//!
//! It fetches ahead of what is committed: it sends each batch downstream and
//! continues from that batch's last seq, while the cursor in the database moves
//! only when the batch is stored. After a crash, pulling restarts from the
//! committed cursor, and idempotent inserts absorb the overlap.

use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::pacer::Pacer;
use super::seqs::{self, SeqPlan};
use crate::backoff::Backoff;
use crate::wecom::envelope::{ChatItem, Reply, errcode_is_transient, parse_reply};
use crate::wecom::sdk::{Library, NetOptions, SdkError};

/// What the puller reports downstream, in order.
#[derive(Debug)]
pub enum PullEvent {
    /// A non-empty batch; `last_seq` is where the next call starts.
    Batch {
        /// The records.
        items: Vec<ChatItem>,
        /// Where the cursor moves once the batch is stored: its largest
        /// plausible seq ([`super::seqs`]).
        last_seq: u64,
        /// Items stored but alarmed (implausible or missing seq, no msgid).
        anomalies: Vec<String>,
        /// How long the GetChatData call took.
        latency: Duration,
    },
    /// An empty batch: everything up to now is fetched.
    CaughtUp,
    /// A failed call; the puller waits and retries.
    Failed {
        /// SDK code, server errcode, or 0.
        code: i64,
        /// What went wrong (no secrets).
        error: String,
        /// Consecutive failures so far.
        failures: u32,
    },
    /// The puller gave up (until-caught-up mode, too many failures in a row).
    GaveUp,
}

/// How the puller behaves when it catches up.
#[derive(Debug, Clone, Copy)]
pub enum PullMode {
    /// Stop at the first empty batch.
    UntilCaughtUp {
        /// Consecutive failures before giving up.
        max_failures: u32,
    },
    /// Keep polling, waiting `idle` after an empty batch.
    Follow {
        /// Wait after an empty batch.
        idle: Duration,
    },
}

/// Everything a puller needs; the secret is used once for Init.
pub struct PullerSpec {
    /// Corp id.
    pub corpid: String,
    /// Archive secret.
    pub secret: String,
    /// Proxy and timeout.
    pub net: NetOptions,
    /// Records per call.
    pub limit: u32,
    /// First call starts after this seq.
    pub start_seq: u64,
    /// Calls per minute.
    pub calls_per_minute: u32,
    /// Stop or follow.
    pub mode: PullMode,
    /// First retry wait.
    pub backoff_base: Duration,
    /// Longest retry wait.
    pub backoff_cap: Duration,
}

/// Sleeps up to `d`, waking early on cancel. Returns false if cancelled.
fn sleep_unless_cancelled(d: Duration, cancel: &CancellationToken) -> bool {
    let end = Instant::now() + d;
    while !cancel.is_cancelled() {
        let now = Instant::now();
        if now >= end {
            return true;
        }
        std::thread::sleep((end - now).min(Duration::from_millis(50)));
    }
    false
}

/// Starts the puller thread. It ends when cancelled, when the receiver is
/// dropped, or (until-caught-up) after `CaughtUp`/`GaveUp`.
pub fn spawn(
    lib: &'static Library,
    spec: PullerSpec,
    cancel: CancellationToken,
    tx: mpsc::Sender<PullEvent>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("pull-{}", spec.corpid))
        .spawn(move || run(lib, spec, cancel, tx))
}

fn run(lib: &'static Library, spec: PullerSpec, cancel: CancellationToken, tx: mpsc::Sender<PullEvent>) {
    let sdk = match lib.new_sdk(&spec.corpid, &spec.secret) {
        Ok(sdk) => sdk,
        Err(e) => {
            let _ = tx.blocking_send(PullEvent::Failed {
                code: e.raw_code().into(),
                error: e.to_string(),
                failures: 1,
            });
            let _ = tx.blocking_send(PullEvent::GaveUp);
            return;
        }
    };
    let mut seq = spec.start_seq;
    let mut pacer = Pacer::per_minute(spec.calls_per_minute);
    let mut backoff = Backoff::new(spec.backoff_base, spec.backoff_cap);
    loop {
        if cancel.is_cancelled() || !sleep_unless_cancelled(pacer.reserve(Instant::now()), &cancel) {
            return;
        }
        let started = Instant::now();
        let result = sdk.get_chat_data(seq, spec.limit, &spec.net);
        let latency = started.elapsed();
        let failure = match result.map(|body| parse_reply(&body)) {
            Ok(Ok(Reply::Items(items))) if items.is_empty() => {
                backoff.reset();
                if tx.blocking_send(PullEvent::CaughtUp).is_err() {
                    return;
                }
                match spec.mode {
                    PullMode::UntilCaughtUp { .. } => return,
                    PullMode::Follow { idle } => {
                        if !sleep_unless_cancelled(idle, &cancel) {
                            return;
                        }
                        continue;
                    }
                }
            }
            Ok(Ok(Reply::Items(items))) => {
                let SeqPlan { last_seq, anomalies } = seqs::plan(seq, &items);
                let progressed = last_seq > seq;
                if tx.blocking_send(PullEvent::Batch { items, last_seq, anomalies, latency }).is_err() {
                    return;
                }
                seq = last_seq;
                backoff.reset();
                if progressed {
                    continue;
                }
                // Nothing in the batch may move the cursor (no seqs, or only
                // implausible ones): it is stored and alarmed, and the same call
                // would return it again. Treat it as the end of the data for
                // now instead of looping on it.
                if tx.blocking_send(PullEvent::CaughtUp).is_err() {
                    return;
                }
                match spec.mode {
                    PullMode::UntilCaughtUp { .. } => return,
                    PullMode::Follow { idle } => {
                        if !sleep_unless_cancelled(idle, &cancel) {
                            return;
                        }
                        continue;
                    }
                }
            }
            Ok(Ok(Reply::ServerError { errcode, errmsg })) => {
                let kind =
                    if errcode_is_transient(errcode) { "transient" } else { "check the corp's settings" };
                (errcode, format!("server errcode {errcode} ({kind}): {errmsg}"))
            }
            Ok(Err(e)) => (0, e.to_string()),
            Err(e) => (i64::from(e.raw_code()), sdk_error_text(&e)),
        };
        let delay = backoff.next_delay();
        let failures = backoff.failures();
        let (code, error) = failure;
        if tx.blocking_send(PullEvent::Failed { code, error, failures }).is_err() {
            return;
        }
        if let PullMode::UntilCaughtUp { max_failures } = spec.mode
            && failures >= max_failures
        {
            let _ = tx.blocking_send(PullEvent::GaveUp);
            return;
        }
        if !sleep_unless_cancelled(delay, &cancel) {
            return;
        }
    }
}

fn sdk_error_text(e: &SdkError) -> String {
    let hint = if e.is_transient() { " (retrying)" } else { "" };
    format!("{e}{hint}")
}
