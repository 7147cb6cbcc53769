//! The lease keeper: heartbeats the instance and renews every held lease
//! each `lease_ttl / 3`, and reports leases found lost. It never waits on the
//! database, so a slow database cannot cost leases; while the database cannot
//! be written to it gives every lease away instead (src/control/dbhealth.rs).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::Timing;
use crate::control::lease::{self, Lease, RedisKeys, Renewal};
use crate::control::link::{LinkError, RedisLink};
use crate::control::stats::ControlStats;
use crate::store::CorpId;

/// State shared with the lease keeper.
pub(super) struct Shared {
    /// Held leases; the keeper renews them. Taken for a whole renewal round,
    /// and for a release, so a release never races with a reclaim.
    pub(super) leases: tokio::sync::Mutex<BTreeMap<CorpId, Lease>>,
    /// Live instances of this deployment from the last heartbeat (None: none yet).
    pub(super) members: std::sync::Mutex<Option<Vec<(String, u64)>>>,
    /// Set on shutdown: no more heartbeats (we left the membership).
    pub(super) leaving: AtomicBool,
}

/// The lease keeper (see the module doc). An instance stays a member for two
/// renewal periods after its last heartbeat (2/3 of the lease time), so when a
/// dead instance's leases expire the others already count it out and have
/// room to take its corps at their next scan.
pub(super) struct LeaseKeeper {
    pub(super) link: RedisLink,
    pub(super) keys: RedisKeys,
    pub(super) instance: String,
    /// This instance's database (`Store::database_identity`): only
    /// instances of the same one are peers.
    pub(super) database: String,
    pub(super) timing: Timing,
    pub(super) shared: Arc<Shared>,
    /// Where leases found lost (or given away) are reported to the coordinator.
    pub(super) lost: mpsc::UnboundedSender<(CorpId, Lease)>,
    pub(super) stats: Arc<ControlStats>,
}

impl LeaseKeeper {
    /// Runs until `cancel`; `writable` says whether the database takes writes.
    pub(super) async fn run(self, mut writable: watch::Receiver<bool>, cancel: CancellationToken) {
        let LeaseKeeper { link, keys, instance, database, timing, shared, lost, stats } = self;
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
                    let given = link
                        .run(|conn| async move { lease::release(conn, &k, c.as_str(), &held).await })
                        .await;
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
            let results = match link.run(|conn| async move { lease::renew(conn, &k, &list, ttl).await }).await
            {
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
}
