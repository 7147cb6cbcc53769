//! The long-running service's corp workers: one task per enabled corp,
//! restarted after failures, stopped or reloaded one corp at a time.

use std::collections::HashMap;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{CorpSpec, Fence, IngestContext, IngestError, RunOptions, pull_corp};
use crate::backoff::Backoff;
use crate::store::CorpId;
use crate::store::alarms::AlarmKind;
use crate::wecom::media::{MediaContext, MediaStats, run_corp_media};

/// How long a worker waits after an empty batch before asking again.
pub const FOLLOW_IDLE: Duration = Duration::from_secs(2);

struct CorpTask {
    cancel: CancellationToken,
    handle: JoinHandle<()>,
}

/// Runs and supervises corp workers.
pub struct Supervisor {
    ctx: IngestContext,
    tasks: HashMap<CorpId, CorpTask>,
    shutdown: CancellationToken,
    idle: Duration,
    media: MediaContext,
}

impl Supervisor {
    /// A supervisor whose workers all stop when `shutdown` is cancelled.
    pub fn new(ctx: IngestContext, shutdown: CancellationToken) -> Supervisor {
        let media = MediaContext::from_config(ctx.store.clone(), ctx.lib, &ctx.config);
        Supervisor { ctx, tasks: HashMap::new(), shutdown, idle: FOLLOW_IDLE, media }
    }

    /// The media workers' counters (for metrics).
    pub fn media_stats(&self) -> std::sync::Arc<MediaStats> {
        self.media.stats.clone()
    }

    /// Changes the wait after an empty batch (tests use short ones).
    pub fn with_idle(mut self, idle: Duration) -> Supervisor {
        self.idle = idle;
        self
    }

    /// Corps with a running worker.
    pub fn running(&self) -> Vec<CorpId> {
        let mut v: Vec<_> =
            self.tasks.iter().filter(|(_, t)| !t.handle.is_finished()).map(|(c, _)| c.clone()).collect();
        v.sort();
        v
    }

    /// Starts `corpid`'s worker (if enabled and not running) with the fencing
    /// token the caller already claimed for this instance, or None to claim
    /// the database's next one.
    pub fn start(&mut self, corpid: CorpId, fence_token: Option<u64>) {
        if self.tasks.get(&corpid).is_some_and(|t| !t.handle.is_finished()) {
            return;
        }
        let cancel = self.shutdown.child_token();
        let (ctx, media) = (self.ctx.clone(), self.media.clone());
        let handle =
            tokio::spawn(corp_loop(ctx, media, corpid.clone(), fence_token, self.idle, cancel.clone()));
        self.tasks.insert(corpid, CorpTask { cancel, handle });
    }

    /// Stops `corpid`'s worker, waiting for the batch in hand to commit.
    pub async fn stop(&mut self, corpid: &CorpId) {
        if let Some(handle) = self.cancel(corpid) {
            let _ = handle.await;
        }
    }

    /// Tells `corpid`'s worker to stop and returns at once with its handle,
    /// which completes once the batch in hand is committed (the control plane
    /// stops a corp whose lease is lost without waiting for it).
    pub fn cancel(&mut self, corpid: &CorpId) -> Option<JoinHandle<()>> {
        let task = self.tasks.remove(corpid)?;
        task.cancel.cancel();
        Some(task.handle)
    }

    /// Stops and starts `corpid` with fresh settings and keys.
    pub async fn reload(&mut self, corpid: CorpId, fence_token: Option<u64>) {
        self.stop(&corpid).await;
        self.start(corpid, fence_token);
    }

    /// Starts every enabled corp without a worker and stops workers of corps
    /// that are gone or disabled. Invalid corp ids are reported, not started.
    pub async fn sync_with_corplist(&mut self) -> Result<(), crate::store::StoreError> {
        let rows = self.ctx.store.corps().await?;
        let mut wanted = Vec::new();
        for row in rows {
            match row.corp_id() {
                Ok(id) if row.enabled() => wanted.push(id),
                Ok(_) => {}
                Err(e) => tracing::error!("corplist row {}: {e}; not archived", row.id),
            }
        }
        let stale: Vec<CorpId> = self.tasks.keys().filter(|c| !wanted.contains(c)).cloned().collect();
        for c in stale {
            tracing::info!(corp = %c, "corp disabled or removed: stopping");
            self.stop(&c).await;
        }
        for c in wanted {
            self.start(c, None);
        }
        Ok(())
    }

    /// Stops every worker and waits for them.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        for (_, t) in self.tasks.drain() {
            let _ = t.handle.await;
        }
    }
}

/// One corp's life: load settings and keys, pull (follow) with its media
/// downloads beside, and after a failure wait and start over with fresh
/// settings. Ends when cancelled, when the corp is disabled, or when another
/// worker owns it.
async fn corp_loop(
    ctx: IngestContext,
    media: MediaContext,
    corpid: CorpId,
    fence: Option<u64>,
    idle: Duration,
    cancel: CancellationToken,
) {
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
    // Whether this worker raised the corp's setup alarm (it clears only its own).
    let mut setup_alarm = false;
    while !cancel.is_cancelled() {
        let result = async {
            let row = ctx
                .store
                .corp(&corpid)
                .await
                .map_err(|e| IngestError::Store { corpid: corpid.to_string(), source: e })?;
            let Some(row) = row.filter(|r| r.enabled()) else { return Ok(false) };
            let spec = CorpSpec::load(&ctx.store, &row, &ctx.config.secrets).await?;
            // The message table's DDL is the other step before pulling that
            // can fail for good (an old table of an unexpected shape): the
            // Java tool's table is converted first (src/store/seed.rs).
            let ddl = |e: crate::store::StoreError| IngestError::Setup {
                corpid: corpid.to_string(),
                reason: format!("message table: {e}"),
            };
            ctx.store.adopt_seed_table(&corpid).await.map_err(ddl)?;
            ctx.store.ensure_message_table(&corpid).await.map_err(ddl)?;
            setup_ok(&ctx, &corpid, &mut setup_alarm).await;
            let mut opts = RunOptions::follow(idle);
            // A restart after a failure keeps the lease's token: it still
            // commits while nobody newer claimed the corp, and fails with
            // LostOwnership (ending this loop) once someone did.
            opts.fence = fence.map_or(Fence::Next, Fence::Claimed);
            // Media downloads run beside the puller and stop with it.
            let media_cancel = cancel.child_token();
            let downloads = tokio::spawn(run_corp_media(media.clone(), spec.clone(), media_cancel.clone()));
            let pulled = pull_corp(&ctx, spec, opts, cancel.clone()).await.map(|_| true);
            media_cancel.cancel();
            let _ = downloads.await;
            pulled
        }
        .await;
        match result {
            Ok(false) => {
                tracing::info!(corp = %corpid, "corp is disabled or gone: worker stops");
                return;
            }
            Ok(true) => return, // cancelled after a clean stop
            Err(IngestError::LostOwnership { .. }) => {
                tracing::warn!(corp = %corpid, "another worker owns this corp: stopping");
                return;
            }
            Err(e) => {
                let delay = backoff.next_delay();
                tracing::error!(corp = %corpid, "worker failed, restarting in {delay:?}: {e}");
                if let IngestError::Setup { reason, .. } = &e {
                    setup_failed(&ctx, &corpid, reason, &mut setup_alarm).await;
                }
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = cancel.cancelled() => return,
                }
            }
        }
    }
}

/// Prefix of the alarms raised for failures before pulling.
pub const SETUP_ALARM: &str = "setup: ";

/// A failure before pulling (a key or secret that does not open, a DDL that
/// fails) does not heal by retrying alone: raise the corp's alarm with the
/// reason (so `status` exits 1 and `/metrics` shows it) and tell `/readyz`.
/// The worker keeps retrying with backoff, so a fix is picked up by itself.
async fn setup_failed(ctx: &IngestContext, corpid: &CorpId, reason: &str, alarmed: &mut bool) {
    ctx.stats.setup_failures.lock().unwrap().insert(corpid.to_string(), reason.to_owned());
    let text: String = format!("{SETUP_ALARM}{reason}").chars().take(1000).collect();
    match ctx.store.raise_alarm(corpid, AlarmKind::Setup, &text).await {
        Ok(()) => {
            if !*alarmed {
                tracing::error!(corp = %corpid, "ALARM: {text}");
            }
            *alarmed = true;
        }
        Err(e) => tracing::warn!(corp = %corpid, "raising the setup alarm: {e}"),
    }
}

/// Setup succeeded: clear what [`setup_failed`] raised.
async fn setup_ok(ctx: &IngestContext, corpid: &CorpId, alarmed: &mut bool) {
    ctx.stats.setup_failures.lock().unwrap().remove(corpid.as_str());
    if !*alarmed {
        return;
    }
    match ctx.store.clear_alarm(corpid, AlarmKind::Setup).await {
        Ok(()) => {
            tracing::info!(corp = %corpid, "setup works again: alarm cleared");
            *alarmed = false;
        }
        Err(e) => tracing::warn!(corp = %corpid, "clearing the setup alarm: {e}"),
    }
}
