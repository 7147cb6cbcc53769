//! Starting `redecrypt` for held corps when a key arrives for records that
//! lacked it (one run per corp at a time; a request during a run is kept).

use std::collections::HashSet;

use super::Coordinator;
use crate::control::stats::ControlStats;
use crate::store::{CorpId, StoreError};
use crate::wecom::ingest::IngestContext;
use crate::wecom::ingest::redecrypt::redecrypt_corp;

impl Coordinator {
    /// Runs `redecrypt` for a held corp: always when `force`, else only when
    /// records lack a key that is now stored.
    pub(super) fn redecrypt(&mut self, corp: CorpId, force: bool) {
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
}

/// Whether some records stored as `no_key` have a key version (or the
/// fallback key) that is stored now.
async fn keys_now_cover_missing(ctx: &IngestContext, corp: &CorpId) -> Result<bool, StoreError> {
    let missing = ctx.store.no_key_versions(corp).await?;
    if missing.is_empty() {
        return Ok(false);
    }
    if ctx.store.corp(corp).await?.is_some_and(|r| r.prikey.is_some()) {
        return Ok(true);
    }
    let have: HashSet<u32> = ctx.store.keys(corp).await?.into_iter().map(|(v, _)| v).collect();
    Ok(missing.iter().any(|v| have.contains(v)))
}
