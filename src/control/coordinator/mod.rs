//! The coordinator: decides which corps this instance pulls, and restarts
//! exactly the corps that changed. It owns the ingest [`Supervisor`].
//!
//! Three tasks cooperate:
//! - the **lease keeper** heartbeats the instance and renews every held lease
//!   each `lease_ttl / 3`, and reports leases found lost; it never waits on
//!   the database, so a slow database cannot cost leases;
//! - the **queue reader** ([`super::queue`]) forwards change events;
//! - the **coordinator loop** (this file) reacts: it takes free corps up to its
//!   share, gives back extras, stops a corp's worker at once when its lease is
//!   lost, reloads a corp on an event, on its `update` flag or when its row or
//!   keys changed, and starts `redecrypt` when a key arrives for records that
//!   lacked it. Stopping a worker waits for the batch in hand to commit, so
//!   the loop never waits for it: the stop's handle is kept and the follow-up
//!   (release the lease, or start again) happens once it finished.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mysql_async::prelude::*;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::events::Change;
use super::lease::{self, Acquire, Lease, RedisKeys, Renewal};
use super::link::{LinkError, RedisLink};
use super::queue::{self, QueueMsg};
use super::stats::ControlStats;
use crate::config::Config;
use crate::store::corps::CorpRow;
use crate::store::{CorpId, StoreError};
use crate::wecom::ingest::IngestContext;
use crate::wecom::ingest::redecrypt::redecrypt_corp;
use crate::wecom::ingest::runner::Supervisor;

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

    fn ttl_ms(&self) -> u64 {
        self.ttl.as_millis() as u64
    }
}

/// A digest of what a worker loads: the row's settings and the keys (opened,
/// so sealing secrets in place does not count as a change).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fingerprint {
    settings: u64,
    keys: u64,
}

fn digest(parts: &[&[u8]]) -> u64 {
    use md5::{Digest, Md5};
    let mut h = Md5::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    u64::from_be_bytes(h.finalize()[..8].try_into().expect("16-byte digest"))
}

fn fingerprint(row: &CorpRow, keys: &[(u32, String)], secrets: &crate::secrets::SecretBox) -> Fingerprint {
    use crate::secrets::Binding;
    let open =
        |s: &str, place: &Binding| secrets.open(s, place).unwrap_or_else(|_| format!("!unopenable:{s}"));
    let column = |name: &str, value: &str| open(value, &Binding::corplist(name, &row.corpid));
    let settings = digest(&[
        column("secret", &row.secret).as_bytes(),
        row.corpname.as_bytes(),
        &row.limits.to_le_bytes(),
        &row.timeout.to_le_bytes(),
        &[row.status as u8],
        column("proxy", &row.proxy).as_bytes(),
        column("passwd", &row.passwd).as_bytes(),
    ]);
    let mut parts: Vec<Vec<u8>> = Vec::new();
    for (v, text) in keys {
        parts.push(v.to_le_bytes().to_vec());
        parts.push(open(text, &Binding::corp_key(&row.corpid, *v)).into_bytes());
    }
    parts.push(row.prikey.as_deref().map(|k| column("prikey", k)).unwrap_or_default().into_bytes());
    let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    Fingerprint { settings, keys: digest(&refs) }
}

/// What follows a worker's stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// Give the lease back.
    Release { balance: bool },
    /// Start again with fresh settings (and redecrypt when a key came).
    Restart { redecrypt: bool, reason: &'static str },
}

impl Next {
    fn merge(self, other: Next) -> Next {
        match (self, other) {
            (Next::Release { balance: a }, Next::Release { balance: b }) => Next::Release { balance: a && b },
            (r @ Next::Release { .. }, _) | (_, r @ Next::Release { .. }) => r,
            (Next::Restart { redecrypt: a, reason }, Next::Restart { redecrypt: b, .. }) => {
                Next::Restart { redecrypt: a || b, reason }
            }
        }
    }
}

enum SlotState {
    Running,
    Stopping { handle: JoinHandle<()>, next: Next },
}

/// A corp this instance holds the lease of.
struct Slot {
    lease: Lease,
    /// What the worker was started with (None: not known yet, set at the next poll).
    fp: Option<Fingerprint>,
    state: SlotState,
}

/// State shared with the lease keeper.
struct Shared {
    /// Held leases; the keeper renews them. Taken for a whole renewal round,
    /// and for a release, so a release never races with a reclaim.
    leases: tokio::sync::Mutex<BTreeMap<CorpId, Lease>>,
    /// Live instances of this deployment from the last heartbeat (None: none yet).
    members: std::sync::Mutex<Option<Vec<(String, u64)>>>,
    /// Set on shutdown: no more heartbeats (we left the membership).
    leaving: AtomicBool,
}

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
    /// Corps given back for balance, not to be taken again by us for a lease time.
    cooldown: HashMap<CorpId, Instant>,
    /// Last time we gave a corp back to even out loads.
    last_spread: Option<Instant>,
    redecrypts: HashMap<CorpId, JoinHandle<()>>,
    /// Redecrypt requested while one ran (true: unconditional).
    redecrypt_pending: HashMap<CorpId, bool>,
    /// The database failed the previous poll (log once per streak).
    poll_failing: bool,
    started: Instant,
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
            cooldown: HashMap::new(),
            last_spread: None,
            redecrypts: HashMap::new(),
            redecrypt_pending: HashMap::new(),
            poll_failing: false,
            started: Instant::now(),
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
        let database = lease::database_identity(&self.ctx.store).await?;
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
        let keeper = tokio::spawn(keep_leases(
            self.link.clone(),
            self.keys.clone(),
            self.instance.clone(),
            database,
            self.timing,
            self.shared.clone(),
            lost_tx,
            self.stats.clone(),
            writable,
            background.clone(),
        ));
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
        self.cooldown.retain(|_, at| at.elapsed() < self.timing.ttl);
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
            let fence = lease::db_fence(&store, &c).await?;
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
            self.cooldown.insert(corp.clone(), Instant::now());
        }
        if let Some(r) = self.redecrypts.remove(corp) {
            r.abort();
        }
        self.redecrypt_pending.remove(corp);
        tracing::info!(corp = %corp, token = held.token, balance, "lease released");
    }

    /// Takes free corps up to this instance's share and gives back extras.
    async fn balance(&mut self) {
        if !self.link.is_up().await {
            if self.link.down_for().await.is_some() {
                self.balance_without_redis().await;
            }
            return;
        }
        let Some(members) = self.shared.members.lock().unwrap().clone() else { return };
        if !members.iter().any(|(m, _)| *m == self.instance) {
            return;
        }
        let n = self.enabled.len();
        let m = members.len().max(1);
        let target = n.div_ceil(m);
        self.stats.target.store(target as u64, Ordering::Relaxed);
        let names: Vec<String> = members.iter().map(|(m, _)| m.clone()).collect();
        let me = self.instance.clone();
        let keep_rank = move |corp: &CorpId| rank(&me, &names, corp);
        let holding: Vec<CorpId> = self
            .slots
            .iter()
            .filter(|(_, s)| !matches!(s.state, SlotState::Stopping { next: Next::Release { .. }, .. }))
            .map(|(c, _)| c.clone())
            .collect();
        // Corps no longer enabled are stopped by the poll; here only counts matter.
        if holding.len() > target {
            let mut extras = holding.clone();
            extras.sort_by_key(|c| keep_rank(c));
            for corp in extras.into_iter().take(holding.len() - target) {
                tracing::info!(corp = %corp, target, instances = m, "more than my share: giving the corp back");
                self.begin_stop(&corp, Next::Release { balance: true });
            }
            return;
        }
        // Even out loads beyond ceil(): the most loaded instance (first by name)
        // gives one corp back when it holds two more than the least loaded one.
        let min_load = members
            .iter()
            .map(|(name, load)| if *name == self.instance { holding.len() as u64 } else { *load })
            .min()
            .unwrap_or(0);
        let max_load = members
            .iter()
            .map(|(name, load)| if *name == self.instance { holding.len() as u64 } else { *load })
            .max()
            .unwrap_or(0);
        let first_max = members
            .iter()
            .find(|(name, load)| {
                (if *name == self.instance { holding.len() as u64 } else { *load }) == max_load
            })
            .is_some_and(|(name, _)| *name == self.instance);
        if holding.len() as u64 >= min_load + 2
            && first_max
            && self.last_spread.is_none_or(|t| t.elapsed() >= self.timing.ttl)
            && let Some(corp) = holding.iter().min_by_key(|c| keep_rank(c)).cloned()
        {
            tracing::info!(corp = %corp, "evening out loads: giving one corp back");
            self.last_spread = Some(Instant::now());
            self.begin_stop(&corp, Next::Release { balance: true });
            return;
        }
        if holding.len() >= target {
            return;
        }
        // Back from a Redis outage (maybe a restart that lost every key): give
        // the other instances a lease time to reconnect and reclaim their
        // corps before counting those corps as free.
        if self.link.reconnected_within(self.timing.ttl).await {
            return;
        }
        let candidates: Vec<CorpId> = self
            .enabled
            .iter()
            .filter(|c| {
                !self.slots.contains_key(*c)
                    && !self.draining.contains_key(*c)
                    && !self.cooldown.contains_key(*c)
            })
            .cloned()
            .collect();
        if candidates.is_empty() {
            return;
        }
        let keys = self.keys.clone();
        let probe = candidates.clone();
        let owners = match self.link.run(|conn| async move { lease::owners(conn, &keys, &probe).await }).await
        {
            Ok(o) => o,
            Err(_) => return,
        };
        let mut free: Vec<CorpId> =
            candidates.into_iter().zip(owners).filter(|(_, o)| o.is_none()).map(|(c, _)| c).collect();
        free.sort_by_key(|c| std::cmp::Reverse(keep_rank(c)));
        let mut want = target - holding.len();
        for corp in free {
            if want == 0 {
                break;
            }
            if self.acquire(corp).await {
                want -= 1;
            }
        }
    }

    /// Redis is unreachable (since start, or since a while): keep archiving
    /// under the database fence alone, which already makes double commits
    /// impossible. A corp is taken only when no other instance shows signs of
    /// pulling it (its state row untouched for two lease times, or ours), so
    /// instances that keep running through the outage are not fenced out;
    /// the token is the database's next one, taken with a compare-and-set,
    /// so two instances reaching for the same corp cannot both win. When
    /// Redis is back, the lease keeper reclaims these leases with the same
    /// token (if nobody was issued a newer one) and leases resume.
    async fn balance_without_redis(&mut self) {
        let quiet = (self.timing.ttl * 2).as_secs_f64();
        let candidates: Vec<CorpId> = self
            .enabled
            .iter()
            .filter(|c| !self.slots.contains_key(*c) && !self.draining.contains_key(*c))
            .cloned()
            .collect();
        for corp in candidates {
            let store = &self.ctx.store;
            let facts = tokio::time::timeout(self.timing.op * 2, async {
                let activity = lease::db_activity(store, &corp).await?;
                let fence = lease::db_fence(store, &corp).await?;
                Ok::<_, StoreError>((activity, fence))
            })
            .await;
            let Ok(Ok((activity, fence))) = facts else { return };
            if let Some((owner, age)) = &activity
                && !owner.is_empty()
                && *owner != self.instance
                && *age < quiet
            {
                continue;
            }
            let token = fence + 1;
            let claim = tokio::time::timeout(
                self.timing.op * 2,
                lease::claim_db_fence(store, &corp, &self.instance, token),
            )
            .await;
            if !matches!(claim, Ok(Ok(Ok(())))) {
                continue;
            }
            let lease = Lease::new(token, &self.instance);
            self.shared.leases.lock().await.insert(corp.clone(), lease.clone());
            ControlStats::add(&self.stats.leases_acquired, 1);
            tracing::warn!(corp = %corp, token, "Redis is unreachable: taking the corp under the database fence alone");
            self.start_worker(corp.clone(), lease).await;
            self.redecrypt(corp, false);
        }
    }

    /// Takes one corp's lease, records the token in the database and starts the worker.
    async fn acquire(&mut self, corp: CorpId) -> bool {
        let store = &self.ctx.store;
        let floor = match tokio::time::timeout(self.timing.op, lease::db_fence(store, &corp)).await {
            Ok(Ok(f)) => f,
            _ => return false,
        };
        let (keys, c, me, ttl) =
            (self.keys.clone(), corp.clone(), self.instance.clone(), self.timing.ttl_ms());
        let taken = self
            .link
            .run(|conn| async move { lease::acquire(conn, &keys, c.as_str(), &me, ttl, floor).await })
            .await;
        let lease = match taken {
            Ok(Acquire::Acquired(l)) => l,
            Ok(Acquire::Held(_)) => return false,
            Err(e) => {
                tracing::debug!(corp = %corp, "taking the lease failed: {e}");
                return false;
            }
        };
        let claim = tokio::time::timeout(
            self.timing.op * 2,
            lease::claim_db_fence(store, &corp, &self.instance, lease.token),
        )
        .await;
        match claim {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(current))) => {
                tracing::warn!(corp = %corp, token = lease.token, current, "the database fence is ahead of Redis's counter: raising it");
                let (keys, c) = (self.keys.clone(), corp.clone());
                let _ = self
                    .link
                    .run(|conn| async move { lease::raise_fence(conn, &keys, c.as_str(), current).await })
                    .await;
                self.give_back(&corp, &lease).await;
                return false;
            }
            _ => {
                self.give_back(&corp, &lease).await;
                return false;
            }
        }
        self.shared.leases.lock().await.insert(corp.clone(), lease.clone());
        ControlStats::add(&self.stats.leases_acquired, 1);
        tracing::info!(corp = %corp, token = lease.token, "lease acquired: starting the worker");
        self.start_worker(corp.clone(), lease).await;
        self.redecrypt(corp, false);
        true
    }

    async fn give_back(&self, corp: &CorpId, held: &Lease) {
        let (keys, c, l) = (self.keys.clone(), corp.clone(), held.clone());
        let _ = self.link.run(|conn| async move { lease::release(conn, &keys, c.as_str(), &l).await }).await;
    }

    /// Reconciles with corplist: the `update` flags, disabled corps, and
    /// settings or keys that changed under a running worker.
    async fn poll(&mut self) {
        let store = self.ctx.store.clone();
        let held: Vec<CorpId> = self.slots.keys().cloned().collect();
        let read = async move {
            let rows = store.corps().await?;
            let mut keys = HashMap::new();
            for c in held {
                keys.insert(c.clone(), store.keys(&c).await?);
            }
            let fences: HashMap<String, u64> = store
                .conn()
                .await?
                .query("SELECT corpid, fence FROM corp_state")
                .await?
                .into_iter()
                .collect();
            Ok::<_, StoreError>((rows, keys, fences))
        };
        let (rows, keys, fences) = match tokio::time::timeout(self.timing.op * 4, read).await {
            Ok(Ok(r)) => r,
            failed => {
                ControlStats::add(&self.stats.poll_errors, 1);
                let why = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => "no answer in time".to_owned(),
                };
                if !self.poll_failing {
                    tracing::warn!("polling corplist failed ({why}); workers keep running, retrying");
                }
                self.poll_failing = true;
                return;
            }
        };
        if self.poll_failing {
            tracing::info!("polling corplist works again");
            self.poll_failing = false;
        }
        self.enabled = rows.iter().filter(|r| r.enabled()).filter_map(|r| r.corp_id().ok()).collect();
        self.stats.corps_enabled.store(self.enabled.len() as u64, Ordering::Relaxed);
        for row in rows.iter().filter(|r| r.update != 0) {
            self.on_update_flag(row).await;
        }
        // Fenced out: someone newer claimed the corp in the database (we
        // missed it in Redis, e.g. while it was unreachable to us only).
        let fenced: Vec<(CorpId, Lease)> = self
            .slots
            .iter()
            .filter(|(c, slot)| fences.get(c.as_str()).is_some_and(|f| *f > slot.lease.token))
            .map(|(c, slot)| (c.clone(), slot.lease.clone()))
            .collect();
        for (corp, lease) in fenced {
            tracing::warn!(corp = %corp, mine = lease.token, current = fences[corp.as_str()], "another instance fenced this corp: stopping it at once");
            self.on_lost(corp.clone(), lease.clone());
            let mut leases = self.shared.leases.lock().await;
            if leases.get(&corp) == Some(&lease) {
                leases.remove(&corp);
            }
            drop(leases);
            self.give_back(&corp, &lease).await;
        }
        let by_id: HashMap<&str, &CorpRow> = rows.iter().map(|r| (r.corpid.as_str(), r)).collect();
        let secrets = self.ctx.config.secrets.clone();
        let held: Vec<CorpId> = self.slots.keys().cloned().collect();
        for corp in held {
            let row = by_id.get(corp.as_str()).copied();
            let Some(row) = row.filter(|r| r.enabled()) else {
                tracing::info!(corp = %corp, "corp disabled or removed in corplist: stopping");
                self.begin_stop(&corp, Next::Release { balance: false });
                continue;
            };
            let Some(corp_keys) = keys.get(&corp) else { continue };
            let now = fingerprint(row, corp_keys, &secrets);
            let Some(slot) = self.slots.get_mut(&corp) else { continue };
            if !matches!(slot.state, SlotState::Running) {
                continue;
            }
            match slot.fp {
                None => slot.fp = Some(now),
                Some(before) if before != now => {
                    tracing::info!(corp = %corp, "corplist row or keys changed: reloading the corp");
                    let redecrypt = before.keys != now.keys;
                    self.begin_stop(&corp, Next::Restart { redecrypt, reason: "changed" });
                }
                Some(_) => {}
            }
        }
    }

    /// The seed's `update = 1`: reload the corp, and reset the flag. The
    /// holder resets it (first, so a flag set again meanwhile is not lost);
    /// when nobody holds the corp, anyone may (whoever takes it loads it fresh).
    async fn on_update_flag(&mut self, row: &CorpRow) {
        let clear = match row.corp_id() {
            Err(e) => {
                tracing::error!("corplist row {} has update = 1 but {e}; resetting the flag", row.id);
                true
            }
            Ok(corp) if self.slots.contains_key(&corp) => {
                tracing::info!(corp = %corp, "corplist.update = 1: reloading the corp");
                self.begin_stop(&corp, Next::Restart { redecrypt: false, reason: "update_flag" });
                true
            }
            Ok(_) if !row.enabled() => true,
            Ok(corp) => {
                let keys = self.keys.clone();
                let probe = vec![corp.clone()];
                match self.link.run(|conn| async move { lease::owners(conn, &keys, &probe).await }).await {
                    Ok(o) => o.first().is_some_and(Option::is_none),
                    Err(_) => false,
                }
            }
        };
        if !clear {
            return;
        }
        let store = self.ctx.store.clone();
        let id = row.id;
        let reset = async move {
            let mut conn = store.conn().await?;
            conn.exec_drop("UPDATE corplist SET `update` = 0 WHERE id = ? AND `update` <> 0", (id,)).await?;
            Ok::<_, StoreError>(())
        };
        match tokio::time::timeout(self.timing.op, reset).await {
            Ok(Ok(())) => ControlStats::add(&self.stats.update_flags_cleared, 1),
            _ => tracing::warn!(row = row.id, "could not reset corplist.update; will try again"),
        }
    }

    /// Runs `redecrypt` for a held corp: always when `force`, else only when
    /// records lack a key that is now stored.
    fn redecrypt(&mut self, corp: CorpId, force: bool) {
        if self.redecrypts.get(&corp).is_some_and(|h| !h.is_finished()) {
            let p = self.redecrypt_pending.entry(corp).or_insert(false);
            *p |= force;
            return;
        }
        let (ctx, stats, c) = (self.ctx.clone(), self.stats.clone(), corp.clone());
        let task = tokio::spawn(async move {
            if !force {
                match keys_now_cover_missing(&ctx, &c).await {
                    Ok(true) => {}
                    Ok(false) => return,
                    Err(e) => {
                        tracing::warn!(corp = %c, "checking for records a new key decrypts: {e}");
                        return;
                    }
                }
            }
            match redecrypt_corp(&ctx, &c).await {
                Ok(r) => {
                    ControlStats::add(&stats.redecrypt_runs, 1);
                    ControlStats::add(&stats.redecrypt_completed, r.completed);
                    tracing::info!(corp = %c, attempted = r.attempted, completed = r.completed, remaining = ?r.remaining, "redecrypt done");
                }
                Err(e) => tracing::warn!(corp = %c, "redecrypt failed: {e}"),
            }
        });
        self.redecrypts.insert(corp, task);
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

/// How much `instance` wants to keep `corp`: first the corps whose
/// rendezvous home (among `members`) it is, then by its own score.
fn rank(instance: &str, members: &[String], corp: &CorpId) -> (bool, u64) {
    let home = members.iter().max_by_key(|m| lease::score(m, corp.as_str()));
    (home.is_some_and(|m| m == instance), lease::score(instance, corp.as_str()))
}

/// Whether some records stored as `no_key` have a key version (or the
/// fallback key) that is stored now.
async fn keys_now_cover_missing(ctx: &IngestContext, corp: &CorpId) -> Result<bool, StoreError> {
    ctx.store.ensure_message_table(corp).await?;
    let mut conn = ctx.store.conn().await?;
    let missing: Vec<u32> = conn
        .query(format!(
            "SELECT DISTINCT publickey_ver FROM {} WHERE decrypt_status = 'no_key'",
            corp.message_table()
        ))
        .await?;
    drop(conn);
    if missing.is_empty() {
        return Ok(false);
    }
    if ctx.store.corp(corp).await?.is_some_and(|r| r.prikey.is_some()) {
        return Ok(true);
    }
    let have: HashSet<u32> = ctx.store.keys(corp).await?.into_iter().map(|(v, _)| v).collect();
    Ok(missing.iter().any(|v| have.contains(v)))
}

/// The lease keeper (see the module doc). An instance stays a member for two
/// renewal periods after its last heartbeat (2/3 of the lease time), so when a
/// dead instance's leases expire the others already count it out and have
/// room to take its corps at their next scan.
#[allow(clippy::too_many_arguments)]
async fn keep_leases(
    link: RedisLink,
    keys: RedisKeys,
    instance: String,
    database: String,
    timing: Timing,
    shared: Arc<Shared>,
    lost: mpsc::UnboundedSender<(CorpId, Lease)>,
    stats: Arc<ControlStats>,
    mut writable: tokio::sync::watch::Receiver<bool>,
    cancel: CancellationToken,
) {
    let mut tick = tokio::time::interval(timing.renew);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let ttl = timing.ttl_ms();
    let mut foreign_seen = HashSet::new();
    let mut watching = true;
    let mut left_for_db = false;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
            changed = writable.changed(), if watching => watching = changed.is_ok(),
        }
        let mut leases = shared.leases.lock().await;
        if !*writable.borrow() && !shared.leaving.load(Ordering::Relaxed) {
            // The database cannot be written to: holding corps would only
            // stall them. Leave the membership (so the others' share grows)
            // and give every lease back (so they can take the corps at once).
            if !left_for_db {
                let (k, me) = (keys.clone(), instance.clone());
                let _ = link.run(|conn| async move { lease::leave(conn, &k, &me).await }).await;
                *shared.members.lock().unwrap() = None;
                left_for_db = true;
            }
            let held: Vec<(CorpId, Lease)> = std::mem::take(&mut *leases).into_iter().collect();
            for (corp, l) in held {
                let (k, c, held) = (keys.clone(), corp.clone(), l.clone());
                let given =
                    link.run(|conn| async move { lease::release(conn, &k, c.as_str(), &held).await }).await;
                ControlStats::add(&stats.leases_given_away, 1);
                tracing::warn!(corp = %corp, token = l.token, released = given.is_ok(), "database not writable: giving the corp away");
                let _ = lost.send((corp, l));
            }
            continue;
        }
        left_for_db = false;
        if !shared.leaving.load(Ordering::Relaxed) {
            let (k, me, load, db) = (keys.clone(), instance.clone(), leases.len(), database.clone());
            let member_ttl = 2 * timing.renew.as_millis() as u64;
            match link
                .run(|conn| async move { lease::heartbeat(conn, &k, &me, member_ttl, load, &db).await })
                .await
            {
                Ok(members) => {
                    let mut peers = Vec::new();
                    for m in members {
                        if m.database == database {
                            peers.push((m.name, m.load));
                        } else if foreign_seen.insert(m.name.clone()) {
                            tracing::warn!(
                                other = %m.name,
                                other_database = %m.database,
                                "an instance of another deployment uses the same Redis keys; \
                                 give each deployment its own --redis-prefix (and --change-queue)"
                            );
                        }
                    }
                    *shared.members.lock().unwrap() = Some(peers);
                }
                Err(LinkError::Redis(e)) => tracing::error!("heartbeat refused by Redis: {e}"),
                Err(_) => continue, // unreachable: logged by the link; leases stay as they are
            }
        }
        let held: Vec<(CorpId, Lease)> = leases.iter().map(|(c, l)| (c.clone(), l.clone())).collect();
        let k = keys.clone();
        let list = held.clone();
        let results = match link.run(|conn| async move { lease::renew(conn, &k, &list, ttl).await }).await {
            Ok(r) => r,
            Err(LinkError::Redis(e)) => {
                tracing::error!("lease renewal refused by Redis: {e}");
                continue;
            }
            Err(_) => continue,
        };
        for ((corp, l), result) in held.into_iter().zip(results) {
            match result {
                Renewal::Renewed => {}
                Renewal::Reclaimed => {
                    ControlStats::add(&stats.leases_reclaimed, 1);
                    tracing::info!(corp = %corp, token = l.token, "lease had expired while Redis was away; reclaimed with the same token");
                }
                Renewal::Lost => {
                    leases.remove(&corp);
                    let _ = lost.send((corp, l));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(secret: &str, status: i8) -> CorpRow {
        CorpRow {
            id: 1,
            corpid: "ww1".into(),
            secret: secret.into(),
            corpname: "n".into(),
            prikey: None,
            limits: 1000,
            timeout: 10,
            status,
            update: 0,
            proxy: String::new(),
            passwd: String::new(),
        }
    }

    #[test]
    fn fingerprints_see_changes_but_not_sealing() {
        let plain = crate::secrets::SecretBox::plaintext();
        let a = fingerprint(&row("s", 1), &[(1, "k1".into())], &plain);
        assert_eq!(a, fingerprint(&row("s", 1), &[(1, "k1".into())], &plain));
        let b = fingerprint(&row("t", 1), &[(1, "k1".into())], &plain);
        assert!(a.settings != b.settings && a.keys == b.keys);
        let c = fingerprint(&row("s", 1), &[(1, "k1".into()), (3, "k3".into())], &plain);
        assert!(a.settings == c.settings && a.keys != c.keys);
        let sealer = crate::secrets::SecretBox::from_master_key(&"ab".repeat(32)).unwrap();
        let corp = row("s", 1).corpid;
        let secret = sealer.seal("s", &crate::secrets::Binding::corplist("secret", &corp));
        let key = sealer.seal("k1", &crate::secrets::Binding::corp_key(&corp, 1));
        let sealed = fingerprint(&row(&secret, 1), &[(1, key)], &sealer);
        assert_eq!(a, sealed);
    }

    #[test]
    fn release_wins_over_restart() {
        let r = Next::Restart { redecrypt: true, reason: "event" };
        let rel = Next::Release { balance: false };
        assert_eq!(r.merge(rel), rel);
        assert_eq!(rel.merge(r), rel);
        assert_eq!(
            Next::Restart { redecrypt: false, reason: "x" }.merge(r),
            Next::Restart { redecrypt: true, reason: "x" }
        );
    }

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
