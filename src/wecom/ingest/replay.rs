//! `quarantine retry`: store quarantined records once the cause is fixed.
//!
//! A quarantined item is the chatdata item exactly as received. Replaying it
//! runs the normal path (decrypt, parse, media) and stores it without a
//! fence or cursor move: inserts are idempotent on msgid, so this is safe
//! next to a running worker.

use crate::store::media_jobs::enqueue_statement;
use crate::store::{CorpId, StoreError};
use crate::wecom::envelope::{Reply, parse_reply};

use super::{CorpSpec, IngestContext, IngestError};

/// What a replay did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// Entries tried.
    pub attempted: u64,
    /// Entries now in the archive.
    pub stored: u64,
    /// Entries that failed again (kept, with the new error).
    pub failed: Vec<(u64, String)>,
}

/// Replays the held entries of one corp (or only entry `only`).
pub async fn replay_quarantined(
    ctx: &IngestContext,
    corpid: &CorpId,
    only: Option<u64>,
) -> Result<ReplayReport, IngestError> {
    let store_err = |source: StoreError| IngestError::Store { corpid: corpid.to_string(), source };
    let row = ctx.store.corp(corpid).await.map_err(store_err)?.ok_or_else(|| IngestError::Setup {
        corpid: corpid.to_string(),
        reason: "no such corp in corplist".into(),
    })?;
    let spec = CorpSpec::load(&ctx.store, &row, &ctx.config.secrets).await?;
    let mut report = ReplayReport::default();
    for entry in ctx.store.quarantined(Some(corpid), false).await.map_err(store_err)? {
        if only.is_some_and(|id| id != entry.id) {
            continue;
        }
        report.attempted += 1;
        let Some(raw) = ctx.store.quarantine_raw(entry.id).await.map_err(store_err)? else { continue };
        // The same envelope parser as a pull, around the one item.
        let body = [&b"{\"errcode\":0,\"chatdata\":["[..], &raw, b"]}"].concat();
        let item = match parse_reply(&body) {
            Ok(Reply::Items(mut items)) if items.len() == 1 => items.remove(0),
            _ => {
                report.failed.push((entry.id, "the kept item is not a chatdata item".into()));
                continue;
            }
        };
        let decrypted = ctx.pool.decrypt(ctx.lib, spec.keys.clone(), vec![item]).await;
        let Some(d) = decrypted.into_iter().next() else { continue };
        let extra = enqueue_statement(
            corpid,
            d.media.iter().map(|m| (d.message.msgid.as_str(), d.message.msgtime, m)),
        );
        match ctx.store.insert_messages(corpid, std::slice::from_ref(&d.message), &extra).await {
            Ok(_) => {
                ctx.store.quarantine_mark_replayed(entry.id).await.map_err(store_err)?;
                report.stored += 1;
            }
            Err(e) if e.is_connection() => return Err(store_err(e)),
            Err(e) => {
                let error = e.to_string();
                ctx.store
                    .quarantine_put(corpid, &d.message.msgid, d.message.seq, &raw, &error)
                    .await
                    .map_err(store_err)?;
                report.failed.push((entry.id, error));
            }
        }
    }
    Ok(report)
}
