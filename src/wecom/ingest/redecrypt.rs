//! `redecrypt`: finish records stored undecrypted, once their key is known.

use std::collections::BTreeMap;

use crate::store::media_jobs::enqueue_statement;
use crate::store::{CorpId, StoreError};
use crate::wecom::envelope::ChatItem;

use super::{CorpSpec, IngestContext, IngestError};

/// What a redecrypt pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedecryptReport {
    /// Records tried.
    pub attempted: u64,
    /// Records now decrypted.
    pub completed: u64,
    /// Records still undecrypted, by status.
    pub remaining: BTreeMap<String, u64>,
}

/// Retries every undecrypted record of one corp with its current keys.
pub async fn redecrypt_corp(ctx: &IngestContext, corpid: &CorpId) -> Result<RedecryptReport, IngestError> {
    let store_err = |source: StoreError| IngestError::Store { corpid: corpid.to_string(), source };
    let row = ctx.store.corp(corpid).await.map_err(store_err)?.ok_or_else(|| IngestError::Setup {
        corpid: corpid.to_string(),
        reason: "no such corp in corplist".into(),
    })?;
    let spec = CorpSpec::load(&ctx.store, &row, &ctx.config.secrets).await?;
    let mut report = RedecryptReport::default();
    let mut after = 0;
    loop {
        let page = ctx.store.undecrypted(corpid, after, 500).await.map_err(store_err)?;
        let Some(last) = page.last() else { break };
        after = last.id;
        let items: Vec<ChatItem> = page
            .iter()
            .map(|u| ChatItem {
                seq: Some(u.seq),
                msgid: Some(u.msgid.clone()),
                publickey_ver: Some(u.publickey_ver),
                encrypt_random_key: Some(u.encrypt_random_key.clone()),
                encrypt_chat_msg: Some(u.encrypt_chat_msg.clone()),
                raw: serde_json::Value::Null,
            })
            .collect();
        let decrypted = ctx.pool.decrypt(ctx.lib, spec.keys.clone(), items).await;
        for (row, d) in page.iter().zip(decrypted) {
            report.attempted += 1;
            let status = d.message.decrypt_status;
            let extra: Vec<_> = enqueue_statement(
                corpid,
                d.media.iter().map(|m| (d.message.msgid.as_str(), d.message.msgtime, m)),
            )
            .into_iter()
            .collect();
            let updated = ctx
                .store
                .complete_undecrypted(corpid, row.id, &d.message, &extra)
                .await
                .map_err(store_err)?;
            if updated && !status.retryable() {
                report.completed += 1;
            } else {
                *report.remaining.entry(status.as_str().to_owned()).or_default() += 1;
            }
        }
    }
    if report.attempted > 0 {
        tracing::info!(corp = %corpid, attempted = report.attempted, completed = report.completed, "redecrypt");
    }
    Ok(report)
}
