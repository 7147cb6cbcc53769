//! Corp RSA key pairs: generation, PEM export in both forms real deployments use, and the
//! PKCS#1 v1.5 wrap that turns an `encrypt_key` into `encrypt_random_key` (FORMAT.md §1.1).
//!
//! Keys come from aws-lc-rs (RSA-2048 generation costs 50-200 ms each, far less than a pure-Rust
//! generator). They are cached per `(seed, label)` for the life of the process, so restarting a
//! simulator with the same seed inside one test binary keeps every key, and the records stay
//! decryptable with a manifest written earlier.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use aws_lc_rs::rsa::{KeySize, Pkcs1PrivateDecryptingKey, Pkcs1PublicEncryptingKey, PrivateDecryptingKey};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use rsa::pkcs1::{EncodeRsaPrivateKey, LineEnding};
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;

/// How a private key is written: both appear in practice (OpenSSL < 3 `genrsa` writes PKCS#1,
/// OpenSSL 3 writes PKCS#8; FORMAT.md §2.3), so the manifest mixes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PemForm {
    /// `-----BEGIN RSA PRIVATE KEY-----`
    Pkcs1,
    /// `-----BEGIN PRIVATE KEY-----`
    Pkcs8,
}

/// Key handling failed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// aws-lc-rs could not generate or use the key.
    #[error("RSA operation failed")]
    Rsa,
    /// The PEM text is not an RSA private key.
    #[error("not an RSA private key PEM: {0}")]
    Pem(String),
    /// `encrypt_random_key` is not valid base64.
    #[error("encrypt_random_key is not base64: {0}")]
    Base64(#[from] base64::DecodeError),
    /// RSA decryption failed (wrong key or corrupted ciphertext).
    #[error("RSA decryption failed")]
    Decrypt,
}

/// One RSA-2048 key pair.
pub struct RsaKey {
    pkcs8: Vec<u8>,
    public: Pkcs1PublicEncryptingKey,
}

impl std::fmt::Debug for RsaKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RsaKey").finish_non_exhaustive()
    }
}

impl RsaKey {
    /// Generates a fresh RSA-2048 key pair.
    pub fn generate() -> Result<Self, KeyError> {
        let private = PrivateDecryptingKey::generate(KeySize::Rsa2048).map_err(|_| KeyError::Rsa)?;
        let pkcs8 = private.as_der().map_err(|_| KeyError::Rsa)?.as_ref().to_vec();
        let public = Pkcs1PublicEncryptingKey::new(private.public_key()).map_err(|_| KeyError::Rsa)?;
        Ok(RsaKey { pkcs8, public })
    }

    /// The key for `(seed, label)`, generated once per process.
    pub fn cached(seed: u64, label: &str) -> Result<Arc<Self>, KeyError> {
        type Cache = Mutex<HashMap<(u64, String), Arc<RsaKey>>>;
        static CACHE: OnceLock<Cache> = OnceLock::new();
        let cache = CACHE.get_or_init(Default::default);
        let k = (seed, label.to_owned());
        if let Some(key) = cache.lock().expect("key cache").get(&k) {
            return Ok(key.clone());
        }
        // Generated outside the lock so parallel corps do not serialize on it; a lost race
        // only wastes one generation.
        let key = Arc::new(Self::generate()?);
        Ok(cache.lock().expect("key cache").entry(k).or_insert(key).clone())
    }

    /// The private key as PEM text in the requested form.
    pub fn private_pem(&self, form: PemForm) -> String {
        let key = rsa::RsaPrivateKey::from_pkcs8_der(&self.pkcs8).expect("aws-lc wrote PKCS#8");
        match form {
            PemForm::Pkcs1 => key.to_pkcs1_pem(LineEnding::LF).expect("encodable").to_string(),
            PemForm::Pkcs8 => key.to_pkcs8_pem(LineEnding::LF).expect("encodable").to_string(),
        }
    }

    /// `base64(RSA-PKCS#1-v1.5(public key, data))`: the `encrypt_random_key` of a record.
    pub fn wrap(&self, data: &[u8]) -> Result<String, KeyError> {
        let mut out = vec![0u8; self.public.ciphertext_size()];
        let c = self.public.encrypt(data, &mut out).map_err(|_| KeyError::Rsa)?;
        Ok(B64.encode(c))
    }
}

/// Decrypts an `encrypt_random_key` with a PEM private key (PKCS#1 or PKCS#8), returning the
/// `encrypt_key` bytes to hand to `DecryptData`. This is the application's half of the protocol,
/// provided for tests.
pub fn unwrap_with_pem(private_key_pem: &str, encrypt_random_key: &str) -> Result<Vec<u8>, KeyError> {
    let key = decrypting_key(private_key_pem)?;
    let ct = B64.decode(encrypt_random_key.trim())?;
    let mut out = vec![0u8; key.min_output_size()];
    let n = key.decrypt(&ct, &mut out).map_err(|_| KeyError::Decrypt)?.len();
    out.truncate(n);
    Ok(out)
}

/// Parses a PEM private key of either form into an aws-lc-rs PKCS#1 v1.5 decrypting key.
pub fn decrypting_key(private_key_pem: &str) -> Result<Pkcs1PrivateDecryptingKey, KeyError> {
    let pkcs8 = match PrivateKeyDer::from_pem_slice(private_key_pem.as_bytes())
        .map_err(|e| KeyError::Pem(e.to_string()))?
    {
        PrivateKeyDer::Pkcs8(k) => k.secret_pkcs8_der().to_vec(),
        PrivateKeyDer::Pkcs1(k) => {
            let key = aws_lc_rs::rsa::KeyPair::from_der(k.secret_pkcs1_der())
                .map_err(|e| KeyError::Pem(e.to_string()))?;
            AsDer::<Pkcs8V1Der>::as_der(&key).map_err(|_| KeyError::Rsa)?.as_ref().to_vec()
        }
        _ => return Err(KeyError::Pem("not an RSA key".into())),
    };
    let key = PrivateDecryptingKey::from_pkcs8(&pkcs8).map_err(|e| KeyError::Pem(e.to_string()))?;
    Pkcs1PrivateDecryptingKey::new(key).map_err(|_| KeyError::Rsa)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_unwrap_both_pem_forms() {
        let k = RsaKey::cached(1, "test").unwrap();
        let other = RsaKey::cached(1, "other").unwrap();
        let data =
            b"eFviNkolsxaILyfwWKhHiOxCN4o/qzf9mraCV5NzCWv9QEWofLB7/V6y5cnm1oUnyMjg9jpte1jrFB857PG72w==";
        let w = k.wrap(data).unwrap();
        assert_eq!(w.len(), 344);
        for form in [PemForm::Pkcs1, PemForm::Pkcs8] {
            let pem = k.private_pem(form);
            let head = match form {
                PemForm::Pkcs1 => "-----BEGIN RSA PRIVATE KEY-----",
                PemForm::Pkcs8 => "-----BEGIN PRIVATE KEY-----",
            };
            assert!(pem.starts_with(head), "{pem}");
            assert_eq!(unwrap_with_pem(&pem, &w).unwrap(), data);
            assert!(unwrap_with_pem(&other.private_pem(form), &w).is_err());
        }
        assert!(Arc::ptr_eq(&k, &RsaKey::cached(1, "test").unwrap()));
    }
}
