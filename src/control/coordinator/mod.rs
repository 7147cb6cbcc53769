//! The coordinator: decides which corps this instance pulls, and restarts
//! exactly the corps that changed. It owns the ingest [`Supervisor`].
//!
//! Where each part lives: [`keeper`] (leases and heartbeats),
//! [`taking`] (carrying out [`crate::control::balance::plan`]), [`poll`]
//! (reconciling with `corplist`), [`redecrypt`], and the small state types
//! [`slots`], [`fingerprint`] and [`Timing`]. This file is the loop and what
//! happens to one corp: events, lost leases, stops and restarts.
//!
//! Three tasks cooperate:
//! - the **lease keeper** heartbeats the instance and renews every held lease
//!   each `lease_ttl / 3`, and reports leases found lost; it never waits on
//!   the database, so a slow database cannot cost leases;
//! - the **queue reader** ([`super::queue`]) forwards change events;
//! - the **coordinator loop** (this module) reacts: it takes free corps up to its
//!   share, gives back extras, stops a corp's worker at once when its lease is
//!   lost, reloads a corp on an event, on its `update` flag or when its row or
//!   keys changed, and starts `redecrypt` when a key arrives for records that
//!   lacked it. Stopping a worker waits for the batch in hand to commit, so
//!   the loop never waits for it: the stop's handle is kept and the follow-up
//!   (release the lease, or start again) happens once it finished.

mod fingerprint;
mod keeper;
mod poll;
mod redecrypt;
mod slots;
mod taking;
mod timing;

pub use timing::Timing;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use self::fingerprint::{Fingerprint, fingerprint};
use self::keeper::{LeaseKeeper, Shared};
use self::slots::{Next, Slot, SlotState};
use super::balance::Cooldowns;
use super::events::Change;
use super::lease::{self, Lease, RedisKeys};
use super::link::RedisLink;
use super::queue::{self, QueueMsg};
use super::stats::ControlStats;
use crate::store::corps::CorpRow;
use crate::store::{CorpId, StoreError};
use crate::wecom::ingest::IngestContext;
use crate::wecom::ingest::runner::Supervisor;

/// See the module doc.
pub struct Coordinator {
    ctx: IngestContext,
    supervisor: Supervisor,
    link: RedisLink,
    queue_link: RedisLink,
    keys: RedisKeys,
    instance: String,
    timing: Timing,
    stats: Arc<ControlStats>,
    shared: Arc<Shared>,
    slots: BTreeMap<CorpId, Slot>,
    /// Workers of lost leases that are still finishing.
    draining: HashMap<CorpId, JoinHandle<()>>,
    /// Enabled corps with valid ids, as last read.
    enabled: BTreeSet<CorpId>,
    /// Corps given back for balance (not to be taken again by us for a
    /// lease time) and the last time loads were evened out.
    cooldowns: Cooldowns,
    redecrypts: HashMap<CorpId, JoinHandle<()>>,
    /// Redecrypt requested while one ran (true: unconditional).
    redecrypt_pending: HashMap<CorpId, bool>,
    /// The database failed the previous poll (log once per streak).
    poll_failing: bool,
    started: tokio::time::Instant,
}

impl Coordinator {
    /// A coordinator for the corps in `ctx`'s database; workers wait `idle`
    /// after an empty batch and stop when `shutdown` is cancelled.
    pub fn new(
        ctx: IngestContext,
        idle: Duration,
        stats: Arc<ControlStats>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Coordinator> {
        let config = ctx.config.clone();
        let timing = Timing::from_config(&config);
        let backoff_cap = (timing.ttl / 2).clamp(Duration::from_secs(1), Duration::from_secs(10));
        let link = RedisLink::new(&config.redis_url, "leases", timing.op, backoff_cap, stats.clone())?;
        let queue_link = RedisLink::new(&config.redis_url, "queue", timing.op, backoff_cap, stats.clone())?;
        let supervisor = Supervisor::new(ctx.clone(), shutdown).with_idle(idle);
        Ok(Coordinator {
            keys: RedisKeys::new(&config.redis_prefix, &config.change_queue),
            instance: config.instance.clone(),
            supervisor,
            link,
            queue_link,
            timing,
            stats,
            shared: Arc::new(Shared {
                leases: tokio::sync::Mutex::new(BTreeMap::new()),
                members: std::sync::Mutex::new(None),
                leaving: AtomicBool::new(false),
            }),
            slots: BTreeMap::new(),
            draining: HashMap::new(),
            enabled: BTreeSet::new(),
            cooldowns: Cooldowns::new(timing.ttl),
            redecrypts: HashMap::new(),
            redecrypt_pending: HashMap::new(),
            poll_failing: false,
            started: tokio::time::Instant::now(),
            ctx,
        })
    }

    /// The media workers' counters (for `/metrics`).
    pub fn media_stats(&self) -> Arc<crate::wecom::media::MediaStats> {
        self.supervisor.media_stats()
    }

    /// Runs until `shutdown` is cancelled, then stops every worker (each
    /// commits its batch in hand) and gives the leases back.
    pub async fn run(mut self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let database = self.ctx.store.database_identity().await?;
        let background = CancellationToken::new();
        let (lost_tx, mut lost_rx) = mpsc::unbounded_channel();
        // Whether the database takes writes: while it does not, the keeper
        // gives every lease away (src/control/dbhealth.rs).
        let (writable, db_watch) = super::dbhealth::spawn(
            self.ctx.store.clone(),
            super::dbhealth::HealthTiming::for_lease(self.timing.ttl),
            self.stats.clone(),
            background.clone(),
        );
        let keeper = LeaseKeeper {
            link: self.link.clone(),
            keys: self.keys.clone(),
            instance: self.instance.clone(),
            database,
            timing: self.timing,
            shared: self.shared.clone(),
            lost: lost_tx,
            stats: self.stats.clone(),
        };
        let keeper = tokio::spawn(keeper.run(writable, background.clone()));
        let (queue_tx, mut queue_rx) = mpsc::channel(256);
        let reader = tokio::spawn(queue::run_reader(
            self.queue_link.clone(),
            self.keys.clone(),
            self.timing.block,
            queue_tx,
            self.stats.clone(),
            background.clone(),
        ));
        tracing::info!(
            instance = %self.instance,
            lease_secs = self.timing.ttl.as_secs_f64(),
            poll_secs = self.timing.poll.as_secs_f64(),
            queue = %self.keys.queue,
            "coordinator running"
        );
        self.poll().await;
        let mut tick = tokio::time::interval(self.timing.scan);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut poll =
            tokio::time::interval_at(tokio::time::Instant::now() + self.timing.poll, self.timing.poll);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            self.stats.turned();
            tokio::select! {
                _ = shutdown.cancelled() => break,
                Some((corp, lease)) = lost_rx.recv() => self.on_lost(corp, lease),
                Some(msg) = queue_rx.recv() => match msg {
                    QueueMsg::Event(corp, event) => self.on_event(corp, event).await,
                    QueueMsg::Resync => {
                        tracing::info!("reconciling every corp with the database");
                        self.poll().await;
                    }
                },
                _ = tick.tick() => {
                    self.reap().await;
                    if self.started.elapsed() >= self.timing.settle {
                        self.balance().await;
                    }
                }
                _ = poll.tick() => self.poll().await,
            }
            // After every turn, not only on the scan tick: a lease taken by a
            // poll or a queue event shows in /metrics at once, so the gauges
            // never disagree with the lease records for a whole scan period.
            self.update_gauges().await;
        }
        self.stop_all(lost_rx).await;
        background.cancel();
        let _ = keeper.await;
        let _ = reader.await;
        let _ = db_watch.await;
        Ok(())
    }

    /// A lease turned out to be someone else's: stop its worker at once (the
    /// fence in the database keeps a slow stop harmless).
    fn on_lost(&mut self, corp: CorpId, lease: Lease) {
        let Some(slot) = self.slots.remove(&corp) else { return };
        if slot.lease != lease {
            self.slots.insert(corp, slot);
            return;
        }
        ControlStats::add(&self.stats.leases_lost, 1);
        tracing::warn!(corp = %corp, token = lease.token, "lease lost: stopping the worker at once");
        let handle = match slot.state {
            SlotState::Running => self.supervisor.cancel(&corp),
            SlotState::Stopping { handle, .. } => Some(handle),
        };
        if let Some(h) = handle {
            self.draining.insert(corp.clone(), h);
        }
        if let Some(r) = self.redecrypts.remove(&corp) {
            r.abort();
        }
        self.redecrypt_pending.remove(&corp);
    }

    async fn on_event(&mut self, corp: CorpId, event: super::events::ChangeEvent) {
        let change = serde_json::to_value(event.change).ok().and_then(|v| v.as_str().map(str::to_owned));
        let change = change.unwrap_or_else(|| "updated".into());
        self.stats.count_event(&change);
        let row = match tokio::time::timeout(self.timing.op * 2, self.ctx.store.corp(&corp)).await {
            Ok(Ok(row)) => row,
            Ok(Err(e)) => {
                tracing::warn!(corp = %corp, "change event: reading the corp failed ({e}); the poll will catch up");
                return;
            }
            Err(_) => {
                tracing::warn!(corp = %corp, "change event: the database is slow; the poll will catch up");
                return;
            }
        };
        let enabled = row.as_ref().is_some_and(CorpRow::enabled);
        if enabled {
            self.enabled.insert(corp.clone());
        } else {
            self.enabled.remove(&corp);
        }
        if let Some(started_with) = self.slots.get(&corp).map(|s| s.fp) {
            if enabled {
                // A worker started after the change (taken by the poll before
                // the event arrived) already runs with it. Only `updated` (or a
                // bare corp id) restarts regardless: e.g. to retry at once
                // after an outage was fixed, instead of waiting out a backoff.
                let now = self.read_fingerprint(&corp).await;
                let current = now.is_some() && now == started_with;
                if current && event.change != Change::Updated {
                    tracing::info!(corp = %corp, change = %change, "change event: the worker already runs with this change");
                    if event.change == Change::KeyAdded {
                        self.redecrypt(corp, true);
                    }
                    return;
                }
                tracing::info!(corp = %corp, change = %change, "change event: reloading the corp");
                let redecrypt = event.change == Change::KeyAdded;
                self.begin_stop(&corp, Next::Restart { redecrypt, reason: "event" });
            } else {
                tracing::info!(corp = %corp, change = %change, "change event: corp disabled or removed, stopping");
                self.begin_stop(&corp, Next::Release { balance: false });
            }
        } else if enabled && self.started.elapsed() >= self.timing.settle {
            self.balance().await;
        }
    }

    /// Cancels a held corp's worker; what follows happens in [`Coordinator::reap`].
    fn begin_stop(&mut self, corp: &CorpId, next: Next) {
        let Some(slot) = self.slots.get_mut(corp) else { return };
        match &mut slot.state {
            SlotState::Running => {
                let handle = self.supervisor.cancel(corp).unwrap_or_else(|| tokio::spawn(async {}));
                slot.state = SlotState::Stopping { handle, next };
            }
            SlotState::Stopping { next: n, .. } => *n = n.merge(next),
        }
    }

    /// Follows up finished stops, finished redecrypts and workers that ended on their own.
    async fn reap(&mut self) {
        self.draining.retain(|_, h| !h.is_finished());
        self.cooldowns.expire(tokio::time::Instant::now());
        let finished: Vec<CorpId> =
            self.redecrypts.iter().filter(|(_, h)| h.is_finished()).map(|(c, _)| c.clone()).collect();
        for corp in finished {
            self.redecrypts.remove(&corp);
            if let Some(force) = self.redecrypt_pending.remove(&corp)
                && self.slots.contains_key(&corp)
            {
                self.redecrypt(corp, force);
            }
        }
        let stopped: Vec<CorpId> = self
            .slots
            .iter()
            .filter(|(_, s)| matches!(&s.state, SlotState::Stopping { handle, .. } if handle.is_finished()))
            .map(|(c, _)| c.clone())
            .collect();
        for corp in stopped {
            let Some(slot) = self.slots.remove(&corp) else { continue };
            let SlotState::Stopping { next, .. } = slot.state else { continue };
            match next {
                Next::Release { balance } => self.release(&corp, &slot.lease, balance).await,
                Next::Restart { redecrypt, reason } => {
                    self.stats.count_reload(reason);
                    self.start_worker(corp.clone(), slot.lease).await;
                    self.redecrypt(corp, redecrypt);
                }
            }
        }
        let running: HashSet<CorpId> = self.supervisor.running().into_iter().collect();
        let ended: Vec<CorpId> = self
            .slots
            .iter()
            .filter(|(c, s)| matches!(s.state, SlotState::Running) && !running.contains(*c))
            .map(|(c, _)| c.clone())
            .collect();
        for corp in ended {
            self.investigate(corp).await;
        }
    }

    /// A worker ended by itself: the corp was disabled, another instance
    /// fenced it out, or it crashed.
    async fn investigate(&mut self, corp: CorpId) {
        let Some(token) = self.slots.get(&corp).map(|s| s.lease.token) else { return };
        let store = self.ctx.store.clone();
        let c = corp.clone();
        let facts = tokio::time::timeout(self.timing.op * 2, async move {
            let row = store.corp(&c).await?;
            let fence = store.fence(&c).await?;
            Ok::<_, StoreError>((row, fence))
        })
        .await;
        let Ok(Ok((row, fence))) = facts else { return };
        if !row.as_ref().is_some_and(CorpRow::enabled) {
            tracing::info!(corp = %corp, "corp disabled or removed: giving its lease back");
            self.enabled.remove(&corp);
            if let Some(slot) = self.slots.remove(&corp) {
                self.release(&corp, &slot.lease, false).await;
            }
        } else if fence != token {
            tracing::warn!(corp = %corp, mine = token, current = fence, "another instance fenced this corp: dropping it");
            ControlStats::add(&self.stats.leases_lost, 1);
            if let Some(slot) = self.slots.remove(&corp) {
                self.release(&corp, &slot.lease, false).await;
            }
        } else {
            tracing::warn!(corp = %corp, "the worker ended unexpectedly: starting it again");
            self.stats.count_reload("crashed");
            if let Some(slot) = self.slots.remove(&corp) {
                self.start_worker(corp, slot.lease).await;
            }
        }
    }

    /// Starts the worker of a held corp with its token.
    async fn start_worker(&mut self, corp: CorpId, lease: Lease) {
        let fp = self.read_fingerprint(&corp).await;
        self.supervisor.start(corp.clone(), Some(lease.token));
        self.slots.insert(corp, Slot { lease, fp, state: SlotState::Running });
    }

    async fn read_fingerprint(&self, corp: &CorpId) -> Option<Fingerprint> {
        let store = self.ctx.store.clone();
        let secrets = self.ctx.config.secrets.clone();
        let c = corp.clone();
        let read = async move {
            let Some(row) = store.corp(&c).await? else { return Ok(None) };
            let keys = store.keys(&c).await?;
            Ok::<_, StoreError>(Some(fingerprint(&row, &keys, &secrets)))
        };
        tokio::time::timeout(self.timing.op * 2, read).await.ok()?.ok()?
    }

    /// Gives a lease back (only if it is still ours).
    async fn release(&mut self, corp: &CorpId, held: &Lease, balance: bool) {
        let mut leases = self.shared.leases.lock().await;
        if leases.get(corp) == Some(held) {
            leases.remove(corp);
        }
        let (keys, c, l) = (self.keys.clone(), corp.clone(), held.clone());
        let released =
            self.link.run(|conn| async move { lease::release(conn, &keys, c.as_str(), &l).await }).await;
        drop(leases);
        if let Err(e) = released {
            tracing::debug!(corp = %corp, "giving the lease back failed ({e}); it expires by itself");
        }
        ControlStats::add(&self.stats.leases_released, 1);
        if balance {
            self.cooldowns.gave_back(corp.clone(), tokio::time::Instant::now());
        }
        if let Some(r) = self.redecrypts.remove(corp) {
            r.abort();
        }
        self.redecrypt_pending.remove(corp);
        tracing::info!(corp = %corp, token = held.token, balance, "lease released");
    }

    async fn update_gauges(&mut self) {
        let running: HashSet<CorpId> = self.supervisor.running().into_iter().collect();
        let missing = self
            .slots
            .iter()
            .filter(|(c, s)| matches!(s.state, SlotState::Running) && !running.contains(*c))
            .count();
        self.stats.workers_running.store(running.len() as u64, Ordering::Relaxed);
        self.stats.workers_missing.store(missing as u64, Ordering::Relaxed);
        *self.stats.leases.lock().unwrap() =
            self.slots.iter().map(|(c, s)| (c.to_string(), s.lease.token)).collect();
        if let Some(m) = self.shared.members.lock().unwrap().as_ref() {
            self.stats.live_instances.store(m.len() as u64, Ordering::Relaxed);
        }
    }

    /// Shutdown: leave the membership, let every worker commit its batch in
    /// hand, then give every lease back so others take over at once.
    async fn stop_all(mut self, mut lost_rx: mpsc::UnboundedReceiver<(CorpId, Lease)>) {
        self.shared.leaving.store(true, Ordering::Relaxed);
        let (keys, me) = (self.keys.clone(), self.instance.clone());
        let _ = self.link.run(|conn| async move { lease::leave(conn, &keys, &me).await }).await;
        for (_, r) in self.redecrypts.drain() {
            r.abort();
        }
        let mut handles: Vec<JoinHandle<()>> = self.draining.drain().map(|(_, h)| h).collect();
        for slot in std::mem::take(&mut self.slots).into_values() {
            if let SlotState::Stopping { handle, .. } = slot.state {
                handles.push(handle);
            }
        }
        tracing::info!(
            workers = self.supervisor.running().len(),
            "stopping: waiting for the batches in hand"
        );
        self.supervisor.shutdown().await;
        for h in handles {
            let _ = h.await;
        }
        while lost_rx.try_recv().is_ok() {}
        let mut leases = self.shared.leases.lock().await;
        let held: Vec<(CorpId, Lease)> = std::mem::take(&mut *leases).into_iter().collect();
        for (corp, l) in held {
            let (keys, c) = (self.keys.clone(), corp.clone());
            let _ =
                self.link.run(|conn| async move { lease::release(conn, &keys, c.as_str(), &l).await }).await;
            ControlStats::add(&self.stats.leases_released, 1);
        }
        self.stats.leases.lock().unwrap().clear();
        tracing::info!("all workers stopped, leases given back");
    }
}
