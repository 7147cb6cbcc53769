//! `corp_keys`: the private key of each key version of a corp (PEM text,
//! sealed in place under the master key when one is configured).

use mysql_async::prelude::*;

use super::{CorpId, Store, StoreError};

/// One stored key, as `corp seal` reads it.
#[derive(Clone)]
pub struct StoredKey {
    /// The corp id as stored.
    pub corpid: String,
    /// The key version (`publickey_ver`).
    pub version: u32,
    /// The PEM text, plain or sealed.
    pub pem: String,
}

impl Store {
    /// Stores (or replaces) the private key for one key version.
    pub async fn set_key(&self, corpid: &CorpId, version: u32, pem: &str) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        conn.exec_drop(
            "INSERT INTO corp_keys (corpid, publickey_ver, private_key) VALUES (?, ?, ?)
             ON DUPLICATE KEY UPDATE private_key = VALUES(private_key)",
            (corpid.as_str(), version, pem),
        )
        .await?;
        Ok(())
    }

    /// All key versions of a corp, as stored (PEM text).
    pub async fn keys(&self, corpid: &CorpId) -> Result<Vec<(u32, String)>, StoreError> {
        let mut conn = self.conn().await?;
        Ok(conn
            .exec(
                "SELECT publickey_ver, private_key FROM corp_keys WHERE corpid = ? ORDER BY publickey_ver",
                (corpid.as_str(),),
            )
            .await?)
    }

    /// Every stored key of every corp, in corp and version order.
    pub async fn all_keys(&self) -> Result<Vec<StoredKey>, StoreError> {
        let mut conn = self.conn().await?;
        let rows: Vec<(String, u32, String)> = conn
            .query("SELECT corpid, publickey_ver, private_key FROM corp_keys ORDER BY corpid, publickey_ver")
            .await?;
        Ok(rows.into_iter().map(|(corpid, version, pem)| StoredKey { corpid, version, pem }).collect())
    }

    /// Replaces a key's text with `new` if it still is `old` (compare-and-set);
    /// false when it changed meanwhile.
    pub async fn replace_key(
        &self,
        corpid: &str,
        version: u32,
        old: &str,
        new: &str,
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn().await?;
        conn.exec_drop(
            "UPDATE corp_keys SET private_key = ? WHERE corpid = ? AND publickey_ver = ? AND private_key = ?",
            (new, corpid, version, old),
        )
        .await?;
        Ok(conn.affected_rows() == 1)
    }
}
