//! The poll: reconciles the held corps with `corplist` every `poll_interval`
//! (and after a Redis outage): the seed's `update` flags, disabled or removed
//! corps, corps fenced by someone newer, and rows or keys that changed under
//! a running worker.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use super::Coordinator;
use super::fingerprint::fingerprint;
use super::slots::{Next, SlotState};
use crate::control::lease::{self, Lease};
use crate::control::stats::ControlStats;
use crate::store::corps::CorpRow;
use crate::store::{CorpId, StoreError};

impl Coordinator {
    /// Reconciles with corplist: the `update` flags, disabled corps, and
    /// settings or keys that changed under a running worker.
    pub(super) async fn poll(&mut self) {
        let store = self.ctx.store.clone();
        let held: Vec<CorpId> = self.slots.keys().cloned().collect();
        let read = async move {
            let rows = store.corps().await?;
            let mut keys = HashMap::new();
            for c in held {
                keys.insert(c.clone(), store.keys(&c).await?);
            }
            let fences = store.fences().await?;
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
        match tokio::time::timeout(self.timing.op, self.ctx.store.reset_update_flag(row.id)).await {
            Ok(Ok(())) => ControlStats::add(&self.stats.update_flags_cleared, 1),
            _ => tracing::warn!(row = row.id, "could not reset corplist.update; will try again"),
        }
    }
}
