//! The decrypt pool: RSA unwrapping and DecryptData on every core, shared by
//! all corps.
//!
//! RSA is ~90 % of the cost of a record (RUST-NOTES.md §5), so a batch is split
//! across `threads` blocking tasks; a semaphore with one permit per thread keeps
//! many corps from oversubscribing the cores.

use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::wecom::decrypt::{Decrypted, decrypt_item};
use crate::wecom::envelope::ChatItem;
use crate::wecom::keys::KeyRing;
use crate::wecom::sdk::Library;

/// Shared decrypt workers.
#[derive(Debug, Clone)]
pub struct DecryptPool {
    permits: Arc<Semaphore>,
    threads: usize,
}

impl DecryptPool {
    /// A pool of `threads` workers.
    pub fn new(threads: usize) -> DecryptPool {
        let threads = threads.max(1);
        DecryptPool { permits: Arc::new(Semaphore::new(threads)), threads }
    }

    /// Decrypts a batch, preserving order.
    pub async fn decrypt(
        &self,
        lib: &'static Library,
        ring: Arc<KeyRing>,
        items: Vec<ChatItem>,
    ) -> Vec<Decrypted> {
        self.decrypt_shared(lib, ring, Arc::new(items)).await
    }

    async fn decrypt_shared(
        &self,
        lib: &'static Library,
        ring: Arc<KeyRing>,
        items: Arc<Vec<ChatItem>>,
    ) -> Vec<Decrypted> {
        if items.is_empty() {
            return Vec::new();
        }
        let per = items.len().div_ceil(self.threads).max(16);
        let mut tasks = Vec::new();
        for start in (0..items.len()).step_by(per) {
            let end = (start + per).min(items.len());
            let permit = self.permits.clone().acquire_owned().await.expect("pool semaphore never closes");
            let (items, ring) = (items.clone(), ring.clone());
            tasks.push(tokio::task::spawn_blocking(move || {
                let _permit = permit;
                items[start..end].iter().map(|it| decrypt_item(lib, &ring, it)).collect::<Vec<_>>()
            }));
        }
        let mut out = Vec::with_capacity(items.len());
        for t in tasks {
            out.extend(t.await.expect("decrypt task panicked"));
        }
        out
    }

    /// [`DecryptPool::decrypt`], handing the items back too: the writer keeps
    /// them to quarantine any record that cannot be stored, verbatim.
    pub async fn decrypt_keeping_items(
        &self,
        lib: &'static Library,
        ring: Arc<KeyRing>,
        items: Vec<ChatItem>,
    ) -> (Vec<Decrypted>, Vec<ChatItem>) {
        let items = Arc::new(items);
        let shared = items.clone();
        let records = self.decrypt_shared(lib, ring, shared).await;
        let items = Arc::try_unwrap(items).unwrap_or_else(|a| a.as_ref().clone());
        (records, items)
    }
}
