//! The daily chain-head log line: an admin ships the log elsewhere (syslog,
//! SIEM), which anchors each corp's head outside the database, so a rewrite of
//! the whole chain by someone with database access is still detectable.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::store::Store;

/// How often the heads are logged.
pub const ANCHOR_EVERY: Duration = Duration::from_secs(24 * 3600);

/// Logs every corp's chain head now and then every [`ANCHOR_EVERY`] until cancelled.
pub fn spawn(store: Store, cancel: CancellationToken) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match store.chain_heads().await {
                Ok(heads) => {
                    for h in heads {
                        tracing::info!(corp = %h.corpid, pos = h.pos, head = %h.head, "chain head anchor");
                    }
                }
                Err(e) => tracing::warn!("chain head anchor: reading the heads failed: {e}"),
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(ANCHOR_EVERY) => {}
            }
        }
    })
}
