//! Secrets at rest: corp secrets, proxy passwords and private keys stored
//! sealed with AES-256-GCM under a master key from the environment.
//!
//! Sealed values carry a versioned prefix (`wwenc:v1:` + base64(nonce ‖
//! ciphertext ‖ tag)), so rows an admin inserts by hand in plaintext keep
//! working and can be sealed later (`corp seal`). Without a master key
//! everything still works in plaintext, and `status` warns.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

/// Prefix of values sealed with format version 1.
pub const SEALED_V1: &str = "wwenc:v1:";

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

    /// Seals `plain` (returns it unchanged without a master key, or when empty).
    pub fn seal(&self, plain: &str) -> String {
        let Some(key) = &self.key else { return plain.to_owned() };
        if plain.is_empty() || is_sealed(plain) {
            return plain.to_owned();
        }
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new().fill(&mut nonce).expect("system randomness");
        let mut buf = plain.as_bytes().to_vec();
        key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(SEALED_V1), &mut buf)
            .expect("AES-GCM seal");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        format!("{SEALED_V1}{}", B64.encode(out))
    }

    /// Opens a stored value: sealed values are decrypted, plaintext passes through.
    pub fn open(&self, stored: &str) -> Result<String, SecretError> {
        let Some(body) = stored.strip_prefix(SEALED_V1) else { return Ok(stored.to_owned()) };
        let key = self.key.as_ref().ok_or(SecretError::NoMasterKey)?;
        let raw = B64.decode(body.trim()).map_err(|_| SecretError::CannotOpen)?;
        if raw.len() < NONCE_LEN + 16 {
            return Err(SecretError::CannotOpen);
        }
        let (nonce, ct) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SecretError::CannotOpen)?;
        let mut buf = ct.to_vec();
        let plain =
            key.open_in_place(nonce, Aad::from(SEALED_V1), &mut buf).map_err(|_| SecretError::CannotOpen)?;
        String::from_utf8(plain.to_vec()).map_err(|_| SecretError::CannotOpen)
    }
}

/// Whether a stored value is sealed.
pub fn is_sealed(stored: &str) -> bool {
    stored.starts_with(SEALED_V1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn seals_and_opens() {
        let b = SecretBox::from_master_key(KEY).unwrap();
        let sealed = b.seal("s3cret");
        assert!(sealed.starts_with(SEALED_V1) && !sealed.contains("s3cret"));
        assert_ne!(sealed, b.seal("s3cret"), "fresh nonce each time");
        assert_eq!(b.open(&sealed).unwrap(), "s3cret");
        // Plaintext rows inserted by hand keep working.
        assert_eq!(b.open("plain").unwrap(), "plain");
        // Without the key, or with another key, sealed values do not open.
        assert_eq!(SecretBox::plaintext().open(&sealed), Err(SecretError::NoMasterKey));
        let other = SecretBox::from_master_key(&"11".repeat(32)).unwrap();
        assert_eq!(other.open(&sealed), Err(SecretError::CannotOpen));
        // No master key: pass-through.
        assert_eq!(SecretBox::plaintext().seal("x"), "x");
    }

    #[test]
    fn master_key_forms() {
        assert!(SecretBox::from_master_key(KEY).is_ok());
        assert!(SecretBox::from_master_key(&B64.encode([7u8; 32])).is_ok());
        assert_eq!(SecretBox::from_master_key("short").unwrap_err(), SecretError::BadMasterKey);
        assert!(!SecretBox::from_setting(None).unwrap().has_master_key());
    }
}
