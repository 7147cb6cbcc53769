//! `corp seal`: seal every plaintext secret, proxy and private key in place,
//! re-seal values of the first (unbound) format, and rotate the master key.
//!
//! Admins may insert corps and keys by hand in plaintext; with a master key
//! configured this seals them (`wwenc:v2:`, bound to their row and column, see
//! [`crate::secrets`]). Each value is replaced with a compare-and-set
//! (`WHERE … = <the value read>`), so a row edited meanwhile is left for the
//! next run rather than overwritten. Running it again changes nothing.
//!
//! With `--rotate-from OLD` every value sealed under the old master key is
//! opened with it and sealed again under the configured one. Values that
//! already open with the new key are left alone, so an interrupted rotation
//! is finished by running it again. A value that opens with neither key is
//! reported, never overwritten.

use crate::secrets::{Binding, SecretBox, is_sealed, is_sealed_current};
use crate::store::corps::SecretColumn;
use crate::store::{Store, StoreError};

/// What a seal pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SealReport {
    /// Values sealed (or re-sealed) now.
    pub sealed: u64,
    /// Values that were sealed already (and open with this master key).
    pub already: u64,
    /// Values changed by someone else between read and write (left as they are).
    pub skipped: u64,
    /// Sealed values that do not open with this master key: where they are.
    pub unopenable: Vec<String>,
}

/// Why sealing could not start.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// Nothing to seal with.
    #[error(
        "no master key: set WEWORK_MASTER_KEY or WEWORK_MASTER_KEY_FILE (64 hex characters or base64 of 32 bytes) to seal secrets"
    )]
    NoMasterKey,
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One stored secret: where it is and what it holds.
struct Stored {
    place: String,
    binding: Binding,
    value: String,
    update: Update,
}

/// How to write a value back (compare-and-set on the value read).
enum Update {
    Corplist { id: u32, column: SecretColumn },
    Key { corpid: String, version: u32 },
}

/// Every secret-bearing value in the database (empty ones left out).
async fn stored_values(store: &Store) -> Result<Vec<Stored>, SealError> {
    let mut out = Vec::new();
    for row in store.corp_secrets().await? {
        for (column, value) in row.values {
            if value.is_empty() {
                continue;
            }
            out.push(Stored {
                place: format!("corplist.{} of {}", column.name(), row.corpid),
                binding: Binding::corplist(column.name(), &row.corpid),
                value,
                update: Update::Corplist { id: row.id, column },
            });
        }
    }
    for key in store.all_keys().await? {
        if key.pem.is_empty() {
            continue;
        }
        out.push(Stored {
            place: format!("corp_keys version {} of {}", key.version, key.corpid),
            binding: Binding::corp_key(&key.corpid, key.version),
            value: key.pem,
            update: Update::Key { corpid: key.corpid, version: key.version },
        });
    }
    Ok(out)
}

/// Seals every plaintext `corplist.secret`, `passwd`, `proxy`, `prikey` and
/// `corp_keys.private_key`, and re-seals first-format values bound to their place.
pub async fn seal_all(store: &Store, secrets: &SecretBox) -> Result<SealReport, SealError> {
    reseal(store, secrets, None).await
}

/// Re-seals every value under `secrets`, opening those that do not open with
/// it with `old` (`corp seal --rotate-from`).
pub async fn rotate(store: &Store, secrets: &SecretBox, old: &SecretBox) -> Result<SealReport, SealError> {
    if !old.has_master_key() {
        return Err(SealError::NoMasterKey);
    }
    reseal(store, secrets, Some(old)).await
}

async fn reseal(
    store: &Store,
    secrets: &SecretBox,
    old: Option<&SecretBox>,
) -> Result<SealReport, SealError> {
    if !secrets.has_master_key() {
        return Err(SealError::NoMasterKey);
    }
    let mut report = SealReport::default();
    let values = stored_values(store).await?;
    for s in values {
        let plain = if !is_sealed(&s.value) {
            s.value.clone()
        } else {
            match secrets.open(&s.value, &s.binding) {
                Ok(_) if is_sealed_current(&s.value) => {
                    report.already += 1;
                    continue;
                }
                Ok(plain) => plain,
                Err(_) => match old.map(|o| o.open(&s.value, &s.binding)) {
                    Some(Ok(plain)) => plain,
                    _ => {
                        report.unopenable.push(s.place.clone());
                        continue;
                    }
                },
            }
        };
        let sealed = secrets.seal(&plain, &s.binding);
        let replaced = match &s.update {
            Update::Corplist { id, column } => {
                store.replace_corp_secret(*id, *column, &s.value, &sealed).await?
            }
            Update::Key { corpid, version } => store.replace_key(corpid, *version, &s.value, &sealed).await?,
        };
        if replaced {
            report.sealed += 1;
        } else {
            report.skipped += 1;
        }
    }
    Ok(report)
}

/// Where sealed values do not open with `secrets` (a wrong master key, or no
/// master key while values are sealed). `corp add` and friends refuse to
/// write under such a key: one database would otherwise hold values sealed
/// under two keys, and no single key would open them all.
pub async fn unopenable(store: &Store, secrets: &SecretBox) -> Result<Vec<String>, SealError> {
    let values = stored_values(store).await?;
    Ok(values
        .into_iter()
        .filter(|s| is_sealed(&s.value) && secrets.open(&s.value, &s.binding).is_err())
        .map(|s| s.place)
        .collect())
}
