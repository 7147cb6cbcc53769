//! Private keys per `publickey_ver`, and the RSA step that unwraps each
//! message's `encrypt_random_key`.
//!
//! Keys arrive as PKCS#1 (`BEGIN RSA PRIVATE KEY`, OpenSSL < 3 `genrsa`) or
//! PKCS#8 (`BEGIN PRIVATE KEY`, OpenSSL 3), pasted with or without the armour
//! lines, with `\r\n` or stray whitespace (FORMAT.md §2.3: every other tool
//! accepts a different subset). They are parsed and validated once with the
//! `rsa` crate, then held as aws-lc-rs keys for the hot path: aws-lc-rs is the
//! fastest constant-time RSA-2048 decrypt measured here (≈ 1,290 ops/s per core
//! against ≈ 480 for `rsa`), and its symbols are prefixed so they cannot clash
//! with the SDK's own OpenSSL. Key material is never logged.

use std::collections::HashMap;
use std::sync::Arc;

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use aws_lc_rs::rsa::{KeyPair, Pkcs1PrivateDecryptingKey, PrivateDecryptingKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::traits::PublicKeyParts;

/// Why a key was refused. Never contains key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Not base64 (after removing armour and whitespace).
    #[error("the private key is not PEM or base64 DER")]
    NotPem,
    /// Decodes, but is neither PKCS#1 nor PKCS#8 RSA.
    #[error("the private key is neither a PKCS#1 nor a PKCS#8 RSA private key")]
    NotRsa,
    /// Parses but fails validation.
    #[error("the RSA private key is invalid: {0}")]
    Invalid(String),
    /// Too small to be a WeCom archive key.
    #[error("the RSA key is {0} bits; WeCom archive keys are 2048 bits")]
    TooSmall(usize),
}

/// Which encoding a key came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFormat {
    /// RFC 8017 `RSAPrivateKey`.
    Pkcs1,
    /// RFC 5208 `PrivateKeyInfo`.
    Pkcs8,
}

/// A parsed private key, ready to decrypt.
pub struct PrivateKey {
    key: Pkcs1PrivateDecryptingKey,
    format: KeyFormat,
    bits: usize,
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivateKey")
            .field("format", &self.format)
            .field("bits", &self.bits)
            .finish_non_exhaustive()
    }
}

/// Why unwrapping `encrypt_random_key` failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UnwrapError {
    /// `encrypt_random_key` is not base64 of one RSA block.
    #[error("encrypt_random_key is not base64 of an RSA block")]
    Malformed,
    /// The key does not decrypt it (or decrypts to something that is not an
    /// `encrypt_key`): it was encrypted for another key.
    #[error("encrypt_random_key does not decrypt with this key version's private key")]
    WrongKey,
}

impl PrivateKey {
    /// Parses PKCS#1 or PKCS#8, PEM or bare base64, tolerant of whitespace.
    pub fn parse(text: &str) -> Result<PrivateKey, KeyError> {
        let body: String = text
            .lines()
            .filter(|l| !l.trim_start().starts_with("-----"))
            .flat_map(|l| l.chars())
            .filter(|c| !c.is_whitespace())
            .collect();
        let der = B64.decode(body.as_bytes()).map_err(|_| KeyError::NotPem)?;
        let (format, checked) = if let Ok(k) = rsa::RsaPrivateKey::from_pkcs8_der(&der) {
            (KeyFormat::Pkcs8, k)
        } else if let Ok(k) = rsa::RsaPrivateKey::from_pkcs1_der(&der) {
            (KeyFormat::Pkcs1, k)
        } else {
            return Err(KeyError::NotRsa);
        };
        checked.validate().map_err(|e| KeyError::Invalid(e.to_string()))?;
        let bits = checked.size() * 8;
        if bits < 1024 {
            return Err(KeyError::TooSmall(bits));
        }
        // aws-lc-rs takes PKCS#8 only; convert PKCS#1 with aws-lc-rs itself
        // (no hand-written DER; RUST-NOTES.md §4).
        let pkcs8 = match format {
            KeyFormat::Pkcs8 => der,
            KeyFormat::Pkcs1 => {
                let pair = KeyPair::from_der(&der).map_err(|e| KeyError::Invalid(e.to_string()))?;
                let doc: Pkcs8V1Der<'static> =
                    pair.as_der().map_err(|_| KeyError::Invalid("re-encoding".into()))?;
                doc.as_ref().to_vec()
            }
        };
        let key = PrivateDecryptingKey::from_pkcs8(&pkcs8).map_err(|e| KeyError::Invalid(e.to_string()))?;
        let key =
            Pkcs1PrivateDecryptingKey::new(key).map_err(|_| KeyError::Invalid("unsupported size".into()))?;
        Ok(PrivateKey { key, format, bits })
    }

    /// The encoding it came in.
    pub fn format(&self) -> KeyFormat {
        self.format
    }

    /// Modulus size in bits.
    pub fn bits(&self) -> usize {
        self.bits
    }

    /// RSA-decrypts `encrypt_random_key` (base64, PKCS#1 v1.5) into the
    /// `encrypt_key` text that DecryptData takes.
    ///
    /// The result must look like an `encrypt_key` (base64 text): PKCS#1 v1.5
    /// has no integrity check, so a wrong key very rarely yields "valid"
    /// padding, and this catches it before the SDK sees garbage.
    pub fn unwrap_random_key(&self, encrypt_random_key: &str) -> Result<String, UnwrapError> {
        let block = B64.decode(encrypt_random_key.trim().as_bytes()).map_err(|_| UnwrapError::Malformed)?;
        if block.len() != self.bits / 8 {
            return Err(UnwrapError::Malformed);
        }
        let mut out = vec![0u8; self.key.min_output_size()];
        let plain = self.key.decrypt(&block, &mut out).map_err(|_| UnwrapError::WrongKey)?;
        let looks_like_key = !plain.is_empty()
            && plain.iter().all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='));
        if !looks_like_key {
            return Err(UnwrapError::WrongKey);
        }
        Ok(String::from_utf8(plain.to_vec()).expect("checked ASCII"))
    }
}

/// All usable keys of one corp: per version, plus the `corplist.prikey`
/// fallback for versions without their own row.
#[derive(Debug, Default, Clone)]
pub struct KeyRing {
    by_version: HashMap<u32, Arc<PrivateKey>>,
    fallback: Option<Arc<PrivateKey>>,
    /// Versions whose stored key could not be parsed (reported by `status`).
    pub rejected: Vec<(u32, KeyError)>,
}

impl KeyRing {
    /// Builds the ring; unparsable keys are recorded in `rejected`, not fatal.
    pub fn build(versions: &[(u32, String)], fallback: Option<&str>) -> KeyRing {
        let mut ring = KeyRing::default();
        for (ver, pem) in versions {
            match PrivateKey::parse(pem) {
                Ok(k) => {
                    ring.by_version.insert(*ver, Arc::new(k));
                }
                Err(e) => ring.rejected.push((*ver, e)),
            }
        }
        if let Some(text) = fallback {
            match PrivateKey::parse(text) {
                Ok(k) => ring.fallback = Some(Arc::new(k)),
                Err(e) => ring.rejected.push((0, e)),
            }
        }
        ring
    }

    /// The key for `version`, or the fallback.
    pub fn get(&self, version: u32) -> Option<&Arc<PrivateKey>> {
        self.by_version.get(&version).or(self.fallback.as_ref())
    }

    /// Key versions with their own key.
    pub fn versions(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self.by_version.keys().copied().collect();
        v.sort_unstable();
        v
    }

    /// Whether any key is usable.
    pub fn is_empty(&self) -> bool {
        self.by_version.is_empty() && self.fallback.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::pkcs1::EncodeRsaPrivateKey;
    use rsa::pkcs8::EncodePrivateKey;

    fn keypair() -> rsa::RsaPrivateKey {
        use std::sync::OnceLock;
        static KEY: OnceLock<rsa::RsaPrivateKey> = OnceLock::new();
        KEY.get_or_init(|| {
            let pair = KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
            let der: Pkcs8V1Der<'static> = pair.as_der().unwrap();
            rsa::RsaPrivateKey::from_pkcs8_der(der.as_ref()).unwrap()
        })
        .clone()
    }

    fn wrap(key: &rsa::RsaPrivateKey, plain: &[u8]) -> String {
        let public = rsa::RsaPublicKey::from(key);
        let mut rng = rand::rng();
        let ct = public.encrypt(&mut rsa::rand_core::OsRng, rsa::Pkcs1v15Encrypt, plain).unwrap();
        let _ = &mut rng;
        B64.encode(ct)
    }

    #[test]
    fn accepts_every_encoding_admins_paste() {
        let k = keypair();
        let pkcs1 = k.to_pkcs1_pem(rsa::pkcs8::LineEnding::LF).unwrap().to_string();
        let pkcs8 = k.to_pkcs8_pem(rsa::pkcs8::LineEnding::CRLF).unwrap().to_string();
        let bare: String = pkcs8.lines().filter(|l| !l.starts_with("-----")).collect::<Vec<_>>().join("\n");
        let indented: String = pkcs1.lines().map(|l| format!("   {l}  \r\n")).collect();
        let ct = wrap(&k, b"QUJDREVGR0g=");
        for (name, text, format) in [
            ("pkcs1", &pkcs1, KeyFormat::Pkcs1),
            ("pkcs8 crlf", &pkcs8, KeyFormat::Pkcs8),
            ("bare", &bare, KeyFormat::Pkcs8),
            ("indented", &indented, KeyFormat::Pkcs1),
        ] {
            let key = PrivateKey::parse(text).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(key.format(), format, "{name}");
            assert_eq!(key.bits(), 2048);
            assert_eq!(key.unwrap_random_key(&ct).unwrap(), "QUJDREVGR0g=", "{name}");
        }
    }

    #[test]
    fn refuses_garbage_and_reports_wrong_keys() {
        assert_eq!(PrivateKey::parse("not a key !!").unwrap_err(), KeyError::NotPem);
        assert_eq!(
            PrivateKey::parse("-----BEGIN X-----\nAAAA\n-----END X-----").unwrap_err(),
            KeyError::NotRsa
        );
        let k = keypair();
        let key = PrivateKey::parse(&k.to_pkcs8_pem(Default::default()).unwrap()).unwrap();
        assert_eq!(key.unwrap_random_key("%%%"), Err(UnwrapError::Malformed));
        assert_eq!(key.unwrap_random_key("QUJD"), Err(UnwrapError::Malformed));
        // Encrypted for another key.
        let other = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 1024).unwrap();
        let other2048 = {
            let pair = KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
            let der: Pkcs8V1Der<'static> = pair.as_der().unwrap();
            rsa::RsaPrivateKey::from_pkcs8_der(der.as_ref()).unwrap()
        };
        let _ = other;
        let ct = wrap(&other2048, b"QUJDREVGR0g=");
        assert_eq!(key.unwrap_random_key(&ct), Err(UnwrapError::WrongKey));
    }

    #[test]
    fn ring_falls_back_and_records_rejects() {
        let k = keypair();
        let pem = k.to_pkcs1_pem(Default::default()).unwrap().to_string();
        let ring = KeyRing::build(&[(2, pem.clone()), (3, "junk".into())], Some(&pem));
        assert_eq!(ring.versions(), vec![2]);
        assert!(ring.get(2).is_some());
        assert!(ring.get(7).is_some(), "fallback");
        assert_eq!(ring.rejected.len(), 1);
        let ring = KeyRing::build(&[(2, pem)], None);
        assert!(ring.get(7).is_none());
    }
}
