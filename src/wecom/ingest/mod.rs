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

mod pacer;
mod pool;
pub mod puller;
pub mod redecrypt;
pub mod replay;
pub mod runner;
pub mod seqs;
mod stats;

pub use pacer::Pacer;
pub use pool::DecryptPool;
pub use puller::{PullEvent, PullMode};
pub use stats::IngestStats;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::config::Config;
use crate::secrets::{Binding, SecretBox};
use crate::store::alarms::AlarmKind;
use crate::store::corps::CorpRow;
use crate::store::media_jobs::enqueue_statement;
use crate::store::messages::NewMessage;
use crate::store::messages::{Committed, MSGID_WIDTH};
use crate::store::{CorpId, Store, StoreError};
use crate::wecom::decrypt::Decrypted;
use crate::wecom::envelope::ChatItem;
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
    /// Records that could not be stored and were quarantined (issue #9).
    pub quarantined: u64,
}

/// Where a run's fencing token comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fence {
    /// Claim the database's next token (one-shot runs, no lease service).
    Next,
    /// A token the control plane already claimed for this instance
    /// (`Store::claim_fence`, before it started the worker): `run` claims
    /// once, the worker only checks it is still current.
    Claimed(u64),
}

/// Options of one corp run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Stop when caught up, or follow.
    pub mode: PullMode,
    /// The fencing token.
    pub fence: Fence,
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
            fence: Fence::Next,
            backoff_base: Duration::from_millis(250),
            backoff_cap: Duration::from_secs(30),
        }
    }

    /// Long-running.
    pub fn follow(idle: Duration) -> RunOptions {
        RunOptions {
            mode: PullMode::Follow { idle },
            fence: Fence::Next,
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
    let fence = match opts.fence {
        Fence::Next => ctx.store.claim_fence(&corp, &ctx.config.instance, None).await.map_err(store_err)?,
        Fence::Claimed(token) => {
            let current = ctx.store.fence(&corp).await.map_err(store_err)?;
            if current != token {
                let source = StoreError::FenceLost { corpid: corp.to_string(), mine: token, current };
                return Err(IngestError::LostOwnership { corpid: corp.to_string(), source });
            }
            token
        }
    };
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
            // `--pull-limit` caps every corp; `corplist.limits` lowers it per corp.
            limit: spec.limit.min(ctx.config.pull_limit).max(1),
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
        Batch { records: Vec<Decrypted>, items: Vec<ChatItem>, last_seq: u64, anomalies: Vec<String> },
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
                    PullEvent::Batch { items, last_seq, anomalies, latency } => {
                        ctx.stats.record_fetch(corp.as_str(), items.len(), latency);
                        let (records, items) =
                            ctx.pool.decrypt_keeping_items(ctx.lib, keys.clone(), items).await;
                        Staged::Batch { records, items, last_seq, anomalies }
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
            Staged::Batch { records, items, last_seq, anomalies } => {
                report.fetched += records.len() as u64;
                match commit_with_retry(ctx, &corp, fence, &records, &items, last_seq, &opts, &cancel).await {
                    Ok(Some((c, quarantined))) => {
                        report.stored += c.inserted;
                        report.cursor = c.cursor;
                        report.quarantined += quarantined.len() as u64;
                        *last_success.lock().unwrap() = Instant::now();
                        let lines: Vec<String> = anomalies.into_iter().chain(quarantined).collect();
                        raise_alarm(ctx, &corp, &lines).await;
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

/// How one commit attempt series ended.
enum Attempt {
    Done(Committed),
    Cancelled,
    /// A failure that retrying did not fix.
    Deterministic(StoreError),
}

/// Commits `records` (indices into the batch), retrying while the database is
/// unreachable and up to `attempts` times for any other error.
#[allow(clippy::too_many_arguments)]
async fn commit_attempts(
    ctx: &IngestContext,
    corp: &CorpId,
    fence: u64,
    records: &[&Decrypted],
    last_seq: u64,
    attempts: u32,
    opts: &RunOptions,
    cancel: &CancellationToken,
) -> Result<Attempt, IngestError> {
    let rows: Vec<NewMessage> = records.iter().map(|d| d.message.clone()).collect();
    let extra = enqueue_statement(
        corp,
        records
            .iter()
            .flat_map(|d| d.media.iter().map(move |m| (d.message.msgid.as_str(), d.message.msgtime, m))),
    );
    let mut backoff = Backoff::new(opts.backoff_base, opts.backoff_cap.min(Duration::from_secs(10)));
    let mut failed = 0;
    loop {
        match ctx.store.commit_batch(corp, fence, &rows, last_seq, &extra).await {
            Ok(c) => return Ok(Attempt::Done(c)),
            Err(e @ StoreError::FenceLost { .. }) => {
                return Err(IngestError::LostOwnership { corpid: corp.to_string(), source: e });
            }
            Err(e) => {
                // A statement over max_allowed_packet makes the server drop the
                // connection: a "connection" error caused by the batch itself.
                // When the database answers a ping, it is not down.
                if !e.is_connection() || (backoff.failures() >= 2 && ctx.store.ping().await) {
                    failed += 1;
                    if failed >= attempts {
                        return Ok(Attempt::Deterministic(e));
                    }
                }
                let delay = backoff.next_delay();
                // A database that is down or restarting: wait and retry the same
                // batch; the cursor has not moved, so nothing is lost either way.
                tracing::warn!(corp = %corp, failures = backoff.failures(), "storing a batch failed, retrying in {delay:?}: {e}");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = cancel.cancelled() => return Ok(Attempt::Cancelled),
                }
            }
        }
    }
}

/// Commits a batch; a failure that retrying does not fix is isolated instead
/// of retried forever (issue #9): the batch is bisected, every part that
/// commits is stored, each record that still fails alone is quarantined
/// verbatim with its error, and only then does the cursor move on. Returns the
/// commit and one line per quarantined record.
#[allow(clippy::too_many_arguments)]
async fn commit_with_retry(
    ctx: &IngestContext,
    corp: &CorpId,
    fence: u64,
    records: &[Decrypted],
    items: &[ChatItem],
    last_seq: u64,
    opts: &RunOptions,
    cancel: &CancellationToken,
) -> Result<Option<(Committed, Vec<String>)>, IngestError> {
    let mut quarantine: Vec<(usize, String)> = Vec::new();
    let mut rest = Vec::with_capacity(records.len());
    for (i, d) in records.iter().enumerate() {
        let n = d.message.msgid.chars().count();
        if n > MSGID_WIDTH {
            quarantine
                .push((i, format!("msgid is {n} characters long; the archive holds at most {MSGID_WIDTH}")));
        } else {
            rest.push(i);
        }
    }
    let subset = |idx: &[usize]| idx.iter().map(|&i| &records[i]).collect::<Vec<_>>();
    let mut inserted = 0;
    let mut committed = None;
    if quarantine.is_empty() {
        match commit_attempts(ctx, corp, fence, &subset(&rest), last_seq, 3, opts, cancel).await? {
            Attempt::Done(c) => committed = Some(c),
            Attempt::Cancelled => return Ok(None),
            Attempt::Deterministic(e) => {
                tracing::error!(corp = %corp, records = rest.len(), "a batch keeps failing to commit; isolating the records that cause it: {e}");
            }
        }
    }
    if committed.is_none() {
        // Bisect: every part is committed without moving the cursor.
        let mut stack = vec![rest];
        while let Some(idx) = stack.pop() {
            if idx.is_empty() {
                continue;
            }
            match commit_attempts(ctx, corp, fence, &subset(&idx), 0, 1, opts, cancel).await? {
                Attempt::Done(c) => inserted += c.inserted,
                Attempt::Cancelled => return Ok(None),
                Attempt::Deterministic(e) if idx.len() == 1 => quarantine.push((idx[0], e.to_string())),
                Attempt::Deterministic(_) => {
                    let (a, b) = idx.split_at(idx.len() / 2);
                    stack.push(b.to_vec());
                    stack.push(a.to_vec());
                }
            }
        }
        let mut lines = Vec::with_capacity(quarantine.len());
        for (i, error) in &quarantine {
            let (d, item) = (&records[*i], &items[*i]);
            let raw = item.raw.to_string();
            let mut backoff = Backoff::new(opts.backoff_base, opts.backoff_cap.min(Duration::from_secs(10)));
            loop {
                match ctx
                    .store
                    .quarantine_put(corp, &d.message.msgid, d.message.seq, raw.as_bytes(), error)
                    .await
                {
                    Ok(id) => {
                        lines.push(format!(
                            "record quarantined (id {id}, seq {}, msgid {}): {error}",
                            d.message.seq,
                            d.message.msgid.chars().take(200).collect::<String>()
                        ));
                        break;
                    }
                    // The cursor must not pass a record that is neither stored
                    // nor quarantined: give up the run, the batch comes again.
                    Err(e) if !e.is_connection() && backoff.failures() >= 3 => {
                        return Err(IngestError::Store { corpid: corp.to_string(), source: e });
                    }
                    Err(e) => {
                        let delay = backoff.next_delay();
                        tracing::warn!(corp = %corp, "quarantining a record failed, retrying in {delay:?}: {e}");
                        tokio::select! {
                            _ = tokio::time::sleep(delay) => {}
                            _ = cancel.cancelled() => return Ok(None),
                        }
                    }
                }
            }
        }
        // Everything is stored or quarantined: move the cursor past the batch.
        match commit_attempts(ctx, corp, fence, &[], last_seq, 3, opts, cancel).await? {
            Attempt::Done(mut c) => {
                c.inserted += inserted;
                committed = Some(c);
            }
            Attempt::Cancelled => return Ok(None),
            Attempt::Deterministic(e) => {
                return Err(IngestError::Store { corpid: corp.to_string(), source: e });
            }
        }
        let c = committed.expect("set above");
        record_commit(ctx, corp, records, &quarantine, c);
        return Ok(Some((c, lines)));
    }
    let c = committed.expect("checked above");
    record_commit(ctx, corp, records, &quarantine, c);
    Ok(Some((c, Vec::new())))
}

fn record_commit(
    ctx: &IngestContext,
    corp: &CorpId,
    records: &[Decrypted],
    quarantined: &[(usize, String)],
    c: Committed,
) {
    let skip: std::collections::HashSet<usize> = quarantined.iter().map(|(i, _)| *i).collect();
    ctx.stats.record_commit(
        corp.as_str(),
        c.inserted,
        c.cursor,
        records
            .iter()
            .enumerate()
            .filter(|(i, _)| !skip.contains(i))
            .map(|(_, r)| r.message.decrypt_status.as_str()),
    );
    tracing::debug!(corp = %corp, inserted = c.inserted, cursor = c.cursor, "batch committed");
}

/// Says what needs a human, once per batch: every line in the log, and the
/// first (with the count) in the corp's alarm, which `status` and /metrics show.
async fn raise_alarm(ctx: &IngestContext, corp: &CorpId, lines: &[String]) {
    let Some(first) = lines.first() else { return };
    for line in lines {
        tracing::error!(corp = %corp, "ALARM: {line}");
    }
    let text = if lines.len() == 1 {
        first.clone()
    } else {
        format!("{} records need attention (see the log and `quarantine list`); first: {first}", lines.len())
    };
    let text: String = text.chars().take(1000).collect();
    if let Err(e) = ctx.store.raise_alarm(corp, AlarmKind::Records, &text).await {
        tracing::warn!(corp = %corp, "recording the alarm: {e}");
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
            alarmed = ctx.store.raise_alarm(&corp, AlarmKind::Stall, &text).await.is_ok();
        } else if elapsed < limit && alarmed {
            tracing::info!(corp = %corp, "stall alarm cleared");
            alarmed = ctx.store.clear_alarm(&corp, AlarmKind::Stall).await.is_err();
        }
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = stop.cancelled() => return,
        }
    }
}
