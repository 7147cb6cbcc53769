//! Taking and giving back leases: the effects of the balance decision
//! ([`crate::control::balance`]), with Redis, and without it under the
//! database fence alone.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;

use tokio::time::Instant;

use super::Coordinator;
use super::slots::{Next, SlotState};
use crate::control::balance::{self, Holdings, Members, Plan, Step};
use crate::control::lease::{self, Acquire, Lease};
use crate::control::stats::ControlStats;
use crate::store::{CorpId, StoreError};

impl Coordinator {
    /// Takes free corps up to this instance's share and gives back extras
    /// (the decision is [`balance::plan`]; this carries it out).
    pub(super) async fn balance(&mut self) {
        if !self.link.is_up().await {
            if self.link.down_for().await.is_some() {
                self.balance_without_redis().await;
            }
            return;
        }
        let Some(live) = self.shared.members.lock().unwrap().clone() else { return };
        let keeping: Vec<CorpId> = self
            .slots
            .iter()
            .filter(|(_, s)| !matches!(s.state, SlotState::Stopping { next: Next::Release { .. }, .. }))
            .map(|(c, _)| c.clone())
            .collect();
        let busy: BTreeSet<CorpId> = self.slots.keys().chain(self.draining.keys()).cloned().collect();
        let releasing = self.slots.len() - keeping.len();
        let now = Instant::now();
        let Some(plan) = balance::plan(
            Members { me: &self.instance, live: &live },
            Holdings { enabled: &self.enabled, keeping: &keeping, busy: &busy, releasing },
            &self.cooldowns,
            now,
        ) else {
            return;
        };
        self.stats.target.store(plan.target as u64, Ordering::Relaxed);
        match plan.step {
            Step::Hold => {}
            Step::GiveBack(extras) => {
                for corp in extras {
                    tracing::info!(corp = %corp, target = plan.target, instances = live.len(), "more than my share: giving the corp back");
                    self.begin_stop(&corp, Next::Release { balance: true });
                }
                // The peers' heartbeats lag behind these releases: no
                // evening-out until they have had a lease time to take them.
                self.cooldowns.spread(now);
            }
            Step::Spread(_) => {
                // The heartbeat loads can be a renewal period old: decide
                // again on what the lease records say now (see
                // balance::loads_from_leases).
                let enabled: Vec<CorpId> = self.enabled.iter().cloned().collect();
                let keys = self.keys.clone();
                let Ok(values) =
                    self.link.run(|conn| async move { lease::owners(conn, &keys, &enabled).await }).await
                else {
                    return;
                };
                let fresh = balance::loads_from_leases(&live, &values);
                let again = balance::plan(
                    Members { me: &self.instance, live: &fresh },
                    Holdings { enabled: &self.enabled, keeping: &keeping, busy: &busy, releasing },
                    &self.cooldowns,
                    now,
                );
                let Some(Plan { step: Step::Spread(corp), .. }) = again else { return };
                tracing::info!(corp = %corp, "evening out loads: giving one corp back");
                self.cooldowns.spread(now);
                self.begin_stop(&corp, Next::Release { balance: true });
            }
            Step::Take { want, candidates } => self.take(want, candidates).await,
        }
    }

    /// Takes up to `want` of `candidates` that nobody holds, in their order.
    async fn take(&mut self, mut want: usize, candidates: Vec<CorpId>) {
        // Back from a Redis outage (maybe a restart that lost every key): give
        // the other instances a lease time to reconnect and reclaim their
        // corps before counting those corps as free.
        if candidates.is_empty() || self.link.reconnected_within(self.timing.ttl).await {
            return;
        }
        let keys = self.keys.clone();
        let probe = candidates.clone();
        let owners = match self.link.run(|conn| async move { lease::owners(conn, &keys, &probe).await }).await
        {
            Ok(o) => o,
            Err(_) => return,
        };
        let free = candidates.into_iter().zip(owners).filter(|(_, o)| o.is_none()).map(|(c, _)| c);
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
    pub(super) async fn balance_without_redis(&mut self) {
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
                let activity = store.activity(&corp).await?;
                let fence = store.fence(&corp).await?;
                Ok::<_, StoreError>((activity, fence))
            })
            .await;
            let Ok(Ok((activity, fence))) = facts else { return };
            if let Some(a) = &activity
                && !a.owner.is_empty()
                && a.owner != self.instance
                && a.idle_secs < quiet
            {
                continue;
            }
            let token = fence + 1;
            let claim = tokio::time::timeout(
                self.timing.op * 2,
                store.claim_fence(&corp, &self.instance, Some(token)),
            )
            .await;
            if !matches!(claim, Ok(Ok(_))) {
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
        let floor = match tokio::time::timeout(self.timing.op, store.fence(&corp)).await {
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
            store.claim_fence(&corp, &self.instance, Some(lease.token)),
        )
        .await;
        match claim {
            Ok(Ok(_)) => {}
            Ok(Err(StoreError::FenceLost { current, .. })) => {
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

    pub(super) async fn give_back(&self, corp: &CorpId, held: &Lease) {
        let (keys, c, l) = (self.keys.clone(), corp.clone(), held.clone());
        let _ = self.link.run(|conn| async move { lease::release(conn, &keys, c.as_str(), &l).await }).await;
    }
}
