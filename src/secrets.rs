//! Secrets at rest: corp secrets, proxy passwords and private keys stored
//! sealed with AES-256-GCM under a master key from the environment.
//!
//! Sealed values carry a versioned prefix (`wwenc:v2:` + base64(nonce ‖
//! ciphertext ‖ tag)), so rows an admin inserts by hand in plaintext keep
//! working and can be sealed later (`corp seal`). Without a master key
//! everything still works in plaintext, and `status` warns.
//!
//! # Bound to their place
//!
//! A v2 value is sealed with its place as AES-GCM associated data
//! ([`Binding`]: table, column, corp id and key version), so someone who can
//! write the database but not read the master key cannot move a sealed value
//! to another row or column (say, corp A's secret into corp B's row, or a
//! secret into the `proxy` column, where the SDK would send it to a proxy of
//! their choosing): it no longer opens there. Values of the first format
//! (`wwenc:v1:`, unbound) still open, and `corp seal` re-seals them as v2.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

/// Prefix of values sealed with format version 1 (no binding; read only).
pub const SEALED_V1: &str = "wwenc:v1:";
/// Prefix of values sealed with format version 2 (bound to their place).
pub const SEALED_V2: &str = "wwenc:v2:";

/// Where a sealed value lives: its table and column, the corp, and for
/// private keys the key version. It is the associated data of the seal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    aad: String,
}

impl Binding {
    /// A `corplist` column of one corp (`secret`, `passwd`, `proxy`, `prikey`).
    pub fn corplist(column: &str, corpid: &str) -> Binding {
        Binding { aad: format!("{SEALED_V2}corplist.{column}\0{corpid}") }
    }

    /// `corp_keys.private_key` of one corp's key version.
    pub fn corp_key(corpid: &str, version: u32) -> Binding {
        Binding { aad: format!("{SEALED_V2}corp_keys.private_key\0{corpid}\0{version}") }
    }
}

/// Secret handling errors (never include the secret).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// The master key is not 32 bytes of base64 or hex.
    #[error("the master key must be 32 bytes, given as 64 hex characters or base64")]
    BadMasterKey,
    /// A sealed value needs a master key that was not given.
    #[error("this value is sealed (wwenc:v1), but no master key is configured (WEWORK_MASTER_KEY)")]
    NoMasterKey,
    /// The value does not open with this master key (wrong key, or corrupted).
    #[error("a sealed value does not open with the configured master key (wrong key or corrupted)")]
    CannotOpen,
}

/// Seals and opens secrets; without a master key it passes plaintext through.
#[derive(Clone, Default)]
pub struct SecretBox {
    key: Option<std::sync::Arc<LessSafeKey>>,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretBox").field("master_key", &self.key.is_some()).finish()
    }
}

impl SecretBox {
    /// No master key: plaintext only.
    pub fn plaintext() -> SecretBox {
        SecretBox { key: None }
    }

    /// From a master key given as 64 hex characters or base64 of 32 bytes.
    pub fn from_master_key(text: &str) -> Result<SecretBox, SecretError> {
        let text = text.trim();
        let bytes = hex::decode(text).ok().filter(|b| b.len() == 32).or_else(|| B64.decode(text).ok());
        let bytes = bytes.filter(|b| b.len() == 32).ok_or(SecretError::BadMasterKey)?;
        let key = UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| SecretError::BadMasterKey)?;
        Ok(SecretBox { key: Some(std::sync::Arc::new(LessSafeKey::new(key))) })
    }

    /// From an optional master key setting.
    pub fn from_setting(master_key: Option<&str>) -> Result<SecretBox, SecretError> {
        match master_key {
            Some(k) if !k.trim().is_empty() => SecretBox::from_master_key(k),
            _ => Ok(SecretBox::plaintext()),
        }
    }

    /// Whether a master key is configured.
    pub fn has_master_key(&self) -> bool {
        self.key.is_some()
    }

    /// Seals `plain` for `place` (returns it unchanged without a master key,
    /// or when empty). A value that is sealed already is returned as it is.
    pub fn seal(&self, plain: &str, place: &Binding) -> String {
        let Some(key) = &self.key else { return plain.to_owned() };
        if plain.is_empty() || is_sealed(plain) {
            return plain.to_owned();
        }
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new().fill(&mut nonce).expect("system randomness");
        let mut buf = plain.as_bytes().to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(place.aad.as_bytes()),
            &mut buf,
        )
        .expect("AES-GCM seal");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        format!("{SEALED_V2}{}", B64.encode(out))
    }

    /// Opens a value stored at `place`: sealed values are decrypted (v2 only
    /// at the place they were sealed for), plaintext passes through.
    pub fn open(&self, stored: &str, place: &Binding) -> Result<String, SecretError> {
        let (body, aad) = if let Some(body) = stored.strip_prefix(SEALED_V2) {
            (body, place.aad.as_bytes())
        } else if let Some(body) = stored.strip_prefix(SEALED_V1) {
            (body, SEALED_V1.as_bytes())
        } else {
            return Ok(stored.to_owned());
        };
        let key = self.key.as_ref().ok_or(SecretError::NoMasterKey)?;
        let raw = B64.decode(body.trim()).map_err(|_| SecretError::CannotOpen)?;
        if raw.len() < NONCE_LEN + 16 {
            return Err(SecretError::CannotOpen);
        }
        let (nonce, ct) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SecretError::CannotOpen)?;
        let mut buf = ct.to_vec();
        let plain =
            key.open_in_place(nonce, Aad::from(aad), &mut buf).map_err(|_| SecretError::CannotOpen)?;
        String::from_utf8(plain.to_vec()).map_err(|_| SecretError::CannotOpen)
    }
}

/// Whether a stored value is sealed (either format).
pub fn is_sealed(stored: &str) -> bool {
    stored.starts_with(SEALED_V1) || stored.starts_with(SEALED_V2)
}

/// Whether a stored value is sealed in the current, bound format.
pub fn is_sealed_current(stored: &str) -> bool {
    stored.starts_with(SEALED_V2)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn seals_and_opens() {
        let b = SecretBox::from_master_key(KEY).unwrap();
        let here = Binding::corplist("secret", "wwA");
        let sealed = b.seal("s3cret", &here);
        assert!(sealed.starts_with(SEALED_V2) && !sealed.contains("s3cret"));
        assert_ne!(sealed, b.seal("s3cret", &here), "fresh nonce each time");
        assert_eq!(b.open(&sealed, &here).unwrap(), "s3cret");
        // Plaintext rows inserted by hand keep working.
        assert_eq!(b.open("plain", &here).unwrap(), "plain");
        // Without the key, or with another key, sealed values do not open.
        assert_eq!(SecretBox::plaintext().open(&sealed, &here), Err(SecretError::NoMasterKey));
        let other = SecretBox::from_master_key(&"11".repeat(32)).unwrap();
        assert_eq!(other.open(&sealed, &here), Err(SecretError::CannotOpen));
        // No master key: pass-through.
        assert_eq!(SecretBox::plaintext().seal("x", &here), "x");
    }

    #[test]
    fn sealed_values_do_not_move_between_rows_or_columns() {
        let b = SecretBox::from_master_key(KEY).unwrap();
        let sealed = b.seal("s3cret", &Binding::corplist("secret", "wwA"));
        for elsewhere in [
            Binding::corplist("secret", "wwB"),
            Binding::corplist("proxy", "wwA"),
            Binding::corplist("passwd", "wwA"),
            Binding::corp_key("wwA", 1),
        ] {
            assert_eq!(b.open(&sealed, &elsewhere), Err(SecretError::CannotOpen), "{elsewhere:?}");
        }
        let key = b.seal("pem", &Binding::corp_key("wwA", 1));
        assert_eq!(b.open(&key, &Binding::corp_key("wwA", 2)), Err(SecretError::CannotOpen));
        assert_eq!(b.open(&key, &Binding::corp_key("wwA", 1)).unwrap(), "pem");
    }

    #[test]
    fn first_format_values_still_open() {
        // A v1 value as the previous release wrote it: AAD = the prefix.
        let b = SecretBox::from_master_key(KEY).unwrap();
        let key = b.key.as_ref().unwrap();
        let nonce = [9u8; NONCE_LEN];
        let mut buf = b"old".to_vec();
        key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(SEALED_V1), &mut buf)
            .unwrap();
        let mut raw = nonce.to_vec();
        raw.extend_from_slice(&buf);
        let v1 = format!("{SEALED_V1}{}", B64.encode(raw));
        assert!(is_sealed(&v1) && !is_sealed_current(&v1));
        assert_eq!(b.open(&v1, &Binding::corplist("secret", "any")).unwrap(), "old");
    }

    #[test]
    fn master_key_forms() {
        assert!(SecretBox::from_master_key(KEY).is_ok());
        assert!(SecretBox::from_master_key(&B64.encode([7u8; 32])).is_ok());
        assert_eq!(SecretBox::from_master_key("short").unwrap_err(), SecretError::BadMasterKey);
        assert!(!SecretBox::from_setting(None).unwrap().has_master_key());
    }
}
