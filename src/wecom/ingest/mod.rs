//! Ingest: for each corp, pull → decrypt → store, exactly once.
//!
//! ```text
//!  puller thread (owns the Sdk)  ──batch──▶  decrypt task (all cores)  ──records──▶  writer task
//!  GetChatData(seq, limit)                   RSA unwrap + DecryptData                one transaction:
//!  continues from the batch's last seq        + parse + find media                   rows + media jobs + cursor
//! ```
//!
//! The cursor is the largest seq of a *committed* batch, advanced in the same
//! transaction as the rows, only while the writer holds its fencing token,
//! and passed to GetChatData as is (the API starts after it, FORMAT.md §1.1).
//! Records that cannot be decrypted are stored with their ciphertext and a
//! status, and the cursor moves on; `redecrypt` finishes them later.

mod backoff;
mod pool;
pub mod puller;
pub mod redecrypt;
pub mod runner;
mod stats;

pub use backoff::{Backoff, Pacer};
pub use pool::DecryptPool;
pub use puller::{PullEvent, PullMode};
pub use stats::IngestStats;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::secrets::{Binding, SecretBox};
use crate::store::corps::CorpRow;
use crate::store::media_jobs::enqueue_statement;
use crate::store::messages::NewMessage;
use crate::store::{CorpId, Store, StoreError};
use crate::wecom::decrypt::Decrypted;
use crate::wecom::keys::KeyRing;
use crate::wecom::sdk::{Library, NetOptions};

/// What every corp worker shares.
#[derive(Clone)]
pub struct IngestContext {
    /// The database.
    pub store: Store,
    /// The SDK.
    pub lib: &'static Library,
    /// Settings.
    pub config: Arc<Config>,
    /// Decrypt workers.
    pub pool: DecryptPool,
    /// Counters.
    pub stats: Arc<IngestStats>,
}

impl IngestContext {
    /// A context with a pool sized from the config.
    pub fn new(store: Store, lib: &'static Library, config: Arc<Config>) -> IngestContext {
        let pool = DecryptPool::new(config.decrypt_threads);
        IngestContext { store, lib, config, pool, stats: Arc::default() }
    }
}

/// Errors that end a corp's run.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The store failed in a way retrying did not fix.
    #[error("corp {corpid}: {source}")]
    Store {
        /// The corp.
        corpid: String,
        /// The error.
        source: StoreError,
    },
    /// Another worker took over (fencing token changed).
    #[error("corp {corpid}: another worker took over ({source})")]
    LostOwnership {
        /// The corp.
        corpid: String,
        /// The fence error.
        source: StoreError,
    },
    /// The corp could not be pulled (too many failures in a row).
    #[error("corp {corpid}: gave up after repeated failures; last: {last_error}")]
    GaveUp {
        /// The corp.
        corpid: String,
        /// The last error.
        last_error: String,
    },
    /// Setup failed (invalid corp, no keys…).
    #[error("corp {corpid}: {reason}")]
    Setup {
        /// The corp.
        corpid: String,
        /// Why.
        reason: String,
    },
}

/// A corp ready to pull: validated id, connection settings and keys.
#[derive(Clone)]
pub struct CorpSpec {
    /// The corp.
    pub corpid: CorpId,
    /// Display name.
    pub corpname: String,
    /// Archive secret.
    pub secret: String,
    /// Proxy and timeout.
    pub net: NetOptions,
    /// Records per call.
    pub limit: u32,
    /// Keys by version (+ fallback).
    pub keys: Arc<KeyRing>,
}

impl std::fmt::Debug for CorpSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CorpSpec")
            .field("corpid", &self.corpid)
            .field("net", &self.net)
            .finish_non_exhaustive()
    }
}

impl CorpSpec {
    /// Builds the spec from a corplist row and its stored keys.
    pub async fn load(store: &Store, row: &CorpRow, secrets: &SecretBox) -> Result<CorpSpec, IngestError> {
        let setup = |reason: String| IngestError::Setup { corpid: row.corpid.clone(), reason };
        let corpid = row.corp_id().map_err(|e| setup(e.to_string()))?;
        let stored = store.keys(&corpid).await.map_err(|e| setup(e.to_string()))?;
        let mut versions = Vec::with_capacity(stored.len());
        // Sealed values open only at the row and column they were sealed for.
        let id = corpid.to_string();
        let column = |name: &str| Binding::corplist(name, &id);
        for (ver, text) in stored {
            let place = Binding::corp_key(corpid.as_str(), ver);
            versions.push((
                ver,
                secrets.open(&text, &place).map_err(|e| setup(format!("key version {ver}: {e}")))?,
            ));
        }
        let fallback = match &row.prikey {
            Some(k) => {
                Some(secrets.open(k, &column("prikey")).map_err(|e| setup(format!("corplist.prikey: {e}")))?)
            }
            None => None,
        };
        let keys = KeyRing::build(&versions, fallback.as_deref());
        for (ver, e) in &keys.rejected {
            tracing::warn!(corp = %corpid, version = ver, error = %e, "private key rejected");
        }
        let secret =
            secrets.open(&row.secret, &column("secret")).map_err(|e| setup(format!("secret: {e}")))?;
        let proxy = secrets.open(&row.proxy, &column("proxy")).map_err(|e| setup(format!("proxy: {e}")))?;
        Ok(CorpSpec {
            corpid,
            corpname: row.corpname.clone(),
            secret,
            net: NetOptions {
                proxy,
                passwd: secrets
                    .open(&row.passwd, &column("passwd"))
                    .map_err(|e| setup(format!("passwd: {e}")))?,
                timeout: Duration::from_secs(u64::try_from(row.timeout).unwrap_or(10).clamp(1, 600)),
            },
            limit: u32::try_from(row.limits).unwrap_or(1000).clamp(1, 1000),
            keys: Arc::new(keys),
        })
    }
}

/// The outcome of one corp run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PullReport {
    /// Records received.
    pub fetched: u64,
    /// Rows newly stored.
    pub stored: u64,
    /// The committed cursor at the end.
    pub cursor: u64,
    /// Failed calls along the way.
    pub failures: u64,
}

/// Options of one corp run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Stop when caught up, or follow.
    pub mode: PullMode,
    /// A fencing token from a lease service; None takes the next one from the database.
    pub fence_token: Option<u64>,
    /// First retry wait after a failed call or commit.
    pub backoff_base: Duration,
    /// Longest retry wait.
    pub backoff_cap: Duration,
}

impl RunOptions {
    /// One-shot pull until an empty batch.
    pub fn until_caught_up() -> RunOptions {
        RunOptions {
            mode: PullMode::UntilCaughtUp { max_failures: 12 },
            fence_token: None,
            backoff_base: Duration::from_millis(250),
            backoff_cap: Duration::from_secs(30),
        }
    }

    /// Long-running.
    pub fn follow(idle: Duration) -> RunOptions {
        RunOptions {
            mode: PullMode::Follow { idle },
            fence_token: None,
            backoff_base: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(60),
        }
    }
}

/// Pulls one corp: until caught up, or until cancelled in follow mode.
///
/// On cancel the batch in hand is committed before returning, so a graceful
/// stop loses no work; an abrupt one loses none either (the cursor only moves
/// with committed rows).
pub async fn pull_corp(
    ctx: &IngestContext,
    spec: CorpSpec,
    opts: RunOptions,
    cancel: CancellationToken,
) -> Result<PullReport, IngestError> {
    let corp = spec.corpid.clone();
    let store_err = |source| IngestError::Store { corpid: corp.to_string(), source };
    ctx.store.ensure_message_table(&corp).await.map_err(store_err)?;
    let fence =
        ctx.store.claim_fence(&corp, &ctx.config.instance, opts.fence_token).await.map_err(store_err)?;
    let start_seq = ctx.store.cursor(&corp).await.map_err(store_err)?;
    tracing::info!(corp = %corp, cursor = start_seq, fence, "pulling");

    // The puller stops with the run (cancel), or on its own in until-caught-up mode.
    let stop = cancel.child_token();
    let (pull_tx, mut pull_rx) = mpsc::channel::<PullEvent>(2);
    let puller = puller::spawn(
        ctx.lib,
        puller::PullerSpec {
            corpid: corp.to_string(),
            secret: spec.secret.clone(),
            net: spec.net.clone(),
            limit: spec.limit,
            start_seq,
            calls_per_minute: ctx.config.calls_per_minute,
            mode: opts.mode,
            backoff_base: opts.backoff_base,
            backoff_cap: opts.backoff_cap,
        },
        stop.clone(),
        pull_tx,
    )
    .map_err(|e| IngestError::Setup {
        corpid: corp.to_string(),
        reason: format!("starting the puller: {e}"),
    })?;

    // Decrypt stage: overlaps with the writer committing the previous batch.
    enum Staged {
        Batch { records: Vec<Decrypted>, last_seq: u64 },
        CaughtUp,
        Failed { code: i64, error: String },
        GaveUp,
    }
    let (dec_tx, mut dec_rx) = mpsc::channel::<Staged>(1);
    let decrypter = {
        let (ctx, keys, corp) = (ctx.clone(), spec.keys.clone(), corp.clone());
        tokio::spawn(async move {
            while let Some(ev) = pull_rx.recv().await {
                let staged = match ev {
                    PullEvent::Batch { items, last_seq, latency } => {
                        ctx.stats.record_fetch(corp.as_str(), items.len(), latency);
                        let records = ctx.pool.decrypt(ctx.lib, keys.clone(), items).await;
                        Staged::Batch { records, last_seq }
                    }
                    PullEvent::CaughtUp => Staged::CaughtUp,
                    PullEvent::Failed { code, error, failures } => {
                        ctx.stats.record_error(corp.as_str(), code);
                        tracing::warn!(corp = %corp, code, failures, "GetChatData failed: {error}");
                        Staged::Failed { code, error }
                    }
                    PullEvent::GaveUp => Staged::GaveUp,
                };
                if dec_tx.send(staged).await.is_err() {
                    break;
                }
            }
        })
    };

    // Writer: commits in order; the stall watchdog reads `last_success`.
    let last_success = Arc::new(Mutex::new(Instant::now()));
    let watchdog =
        tokio::spawn(stall_watchdog(ctx.clone(), corp.clone(), last_success.clone(), stop.clone()));
    let mut report = PullReport { cursor: start_seq, ..Default::default() };
    let mut last_error = String::new();
    let mut outcome = Ok(());
    while let Some(staged) = dec_rx.recv().await {
        match staged {
            Staged::Batch { records, last_seq } => {
                report.fetched += records.len() as u64;
                match commit_with_retry(ctx, &corp, fence, &records, last_seq, &opts, &cancel).await {
                    Ok(Some(c)) => {
                        report.stored += c.inserted;
                        report.cursor = c.cursor;
                        *last_success.lock().unwrap() = Instant::now();
                    }
                    Ok(None) => break, // cancelled while the database was down: nothing committed
                    Err(e) => {
                        outcome = Err(e);
                        break;
                    }
                }
            }
            Staged::CaughtUp => {
                *last_success.lock().unwrap() = Instant::now();
                if let Err(e) = ctx.store.record_idle_success(&corp).await {
                    tracing::warn!(corp = %corp, "recording success: {e}");
                }
                if matches!(opts.mode, PullMode::UntilCaughtUp { .. }) {
                    break;
                }
            }
            Staged::Failed { code, error } => {
                report.failures += 1;
                if let Err(e) = ctx.store.record_pull_error(&corp, code as i32, &error).await {
                    tracing::warn!(corp = %corp, "recording error: {e}");
                }
                last_error = error;
            }
            Staged::GaveUp => {
                outcome =
                    Err(IngestError::GaveUp { corpid: corp.to_string(), last_error: last_error.clone() });
                break;
            }
        }
    }
    stop.cancel();
    drop(dec_rx);
    let _ = decrypter.await;
    let _ = watchdog.await;
    // The puller notices the cancel within 50 ms, or after its current call.
    let _ = tokio::task::spawn_blocking(move || puller.join()).await;
    outcome.map(|()| report)
}

async fn commit_with_retry(
    ctx: &IngestContext,
    corp: &CorpId,
    fence: u64,
    records: &[Decrypted],
    last_seq: u64,
    opts: &RunOptions,
    cancel: &CancellationToken,
) -> Result<Option<crate::store::messages::Committed>, IngestError> {
    let rows: Vec<NewMessage> = records.iter().map(|d| d.message.clone()).collect();
    let media = enqueue_statement(
        corp,
        records
            .iter()
            .flat_map(|d| d.media.iter().map(move |m| (d.message.msgid.as_str(), d.message.msgtime, m))),
    );
    let extra: Vec<_> = media.into_iter().collect();
    let mut backoff = Backoff::new(opts.backoff_base, opts.backoff_cap.min(Duration::from_secs(10)));
    loop {
        match ctx.store.commit_batch(corp, fence, &rows, last_seq, &extra).await {
            Ok(c) => {
                ctx.stats.record_commit(
                    corp.as_str(),
                    c.inserted,
                    c.cursor,
                    rows.iter().map(|r| r.decrypt_status.as_str()),
                );
                tracing::debug!(corp = %corp, inserted = c.inserted, cursor = c.cursor, "batch committed");
                return Ok(Some(c));
            }
            Err(e @ StoreError::FenceLost { .. }) => {
                return Err(IngestError::LostOwnership { corpid: corp.to_string(), source: e });
            }
            Err(e) => {
                let delay = backoff.next_delay();
                // A database that is down or restarting: wait and retry the same
                // batch; the cursor has not moved, so nothing is lost either way.
                tracing::warn!(corp = %corp, failures = backoff.failures(), "storing a batch failed, retrying in {delay:?}: {e}");
                if !e.is_connection() && backoff.failures() > 20 {
                    return Err(IngestError::Store { corpid: corp.to_string(), source: e });
                }
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = cancel.cancelled() => return Ok(None),
                }
            }
        }
    }
}

/// Raises the corp's alarm when it has not pulled successfully for the
/// configured time (records older than 5 days are gone for good), and clears it
/// when it recovers.
async fn stall_watchdog(
    ctx: IngestContext,
    corp: CorpId,
    last_success: Arc<Mutex<Instant>>,
    stop: CancellationToken,
) {
    let limit = ctx.config.stall_alarm;
    // Carry over a stall that began before this process started.
    if let Ok(Some(secs)) = ctx.store.secs_since_progress(&corp).await
        && let Some(then) = Instant::now().checked_sub(Duration::from_secs(secs.max(0) as u64))
    {
        *last_success.lock().unwrap() = then;
    }
    let tick = (limit / 4).clamp(Duration::from_millis(200), Duration::from_secs(60));
    let mut alarmed = false;
    loop {
        let elapsed = last_success.lock().unwrap().elapsed();
        if elapsed >= limit && !alarmed {
            let text = format!(
                "no successful pull for {}s (limit {}s); records older than 5 days can no longer be pulled",
                elapsed.as_secs(),
                limit.as_secs()
            );
            tracing::error!(corp = %corp, "ALARM: {text}");
            alarmed = ctx.store.set_alarm(&corp, &text).await.is_ok();
        } else if elapsed < limit && alarmed {
            tracing::info!(corp = %corp, "alarm cleared");
            alarmed = ctx.store.set_alarm(&corp, "").await.is_err();
        }
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = stop.cancelled() => return,
        }
    }
}
