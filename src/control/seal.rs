//! `corp seal`: seal every plaintext secret and private key in place.
//!
//! Admins may insert corps and keys by hand in plaintext; with a master key
//! configured this seals them (`wwenc:v1:`, see [`crate::secrets`]). Each value
//! is replaced with a compare-and-set (`WHERE … = <the plaintext read>`), so a
//! row edited meanwhile is left for the next run rather than overwritten.
//! Running it again changes nothing. Values already sealed are checked to open
//! with the configured master key, so a wrong key is reported, not ignored.

use mysql_async::prelude::*;

use crate::secrets::{SecretBox, is_sealed};
use crate::store::{Store, StoreError};

/// What a seal pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SealReport {
    /// Values sealed now.
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
    #[error("no master key: set WEWORK_MASTER_KEY (64 hex characters or base64 of 32 bytes) to seal secrets")]
    NoMasterKey,
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<mysql_async::Error> for SealError {
    fn from(e: mysql_async::Error) -> Self {
        SealError::Store(StoreError::Db(e))
    }
}

/// Seals every plaintext `corplist.secret`, `passwd`, `prikey` and `corp_keys.private_key`.
pub async fn seal_all(store: &Store, secrets: &SecretBox) -> Result<SealReport, SealError> {
    if !secrets.has_master_key() {
        return Err(SealError::NoMasterKey);
    }
    let mut report = SealReport::default();
    let mut conn = store.conn().await?;
    let corps: Vec<(u32, String, String, String, Option<String>)> =
        conn.query("SELECT id, corpid, secret, passwd, prikey FROM corplist ORDER BY id").await?;
    for (id, corpid, secret, passwd, prikey) in corps {
        for (column, value) in [("secret", Some(secret)), ("passwd", Some(passwd)), ("prikey", prikey)] {
            let Some(value) = value else { continue };
            let place = format!("corplist.{column} of {corpid}");
            let Some(sealed) = check(secrets, &value, &place, &mut report) else { continue };
            conn.exec_drop(
                format!("UPDATE corplist SET `{column}` = ? WHERE id = ? AND `{column}` = ?"),
                (&sealed, id, &value),
            )
            .await?;
            count(conn.affected_rows(), &mut report);
        }
    }
    let keys: Vec<(String, u32, String)> = conn
        .query("SELECT corpid, publickey_ver, private_key FROM corp_keys ORDER BY corpid, publickey_ver")
        .await?;
    for (corpid, ver, pem) in keys {
        let place = format!("corp_keys version {ver} of {corpid}");
        let Some(sealed) = check(secrets, &pem, &place, &mut report) else { continue };
        conn.exec_drop(
            "UPDATE corp_keys SET private_key = ? WHERE corpid = ? AND publickey_ver = ? AND private_key = ?",
            (&sealed, &corpid, ver, &pem),
        )
        .await?;
        count(conn.affected_rows(), &mut report);
    }
    Ok(report)
}

/// The sealed form of `value` when it needs sealing; None when it is empty or
/// sealed already (counted, and checked to open).
fn check(secrets: &SecretBox, value: &str, place: &str, report: &mut SealReport) -> Option<String> {
    if value.is_empty() {
        return None;
    }
    if is_sealed(value) {
        match secrets.open(value) {
            Ok(_) => report.already += 1,
            Err(_) => report.unopenable.push(place.to_owned()),
        }
        return None;
    }
    Some(secrets.seal(value))
}

fn count(affected: u64, report: &mut SealReport) {
    if affected == 1 {
        report.sealed += 1;
    } else {
        report.skipped += 1;
    }
}
