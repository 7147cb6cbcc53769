//! Event crypto of the Feishu Open Platform (API.md §3.4, §3.5): the
//! `{"encrypt": …}` body is AES-256-CBC with PKCS#7 padding under
//! SHA-256(encrypt key), IV in the first 16 bytes; the request signature is
//! SHA-256 over timestamp ‖ nonce ‖ encrypt key ‖ the raw body bytes.
//!
//! Pure functions, so the §10 test vector pins them down exactly. aws-lc-rs
//! does the AES (no second crypto library next to the one rustls uses).

use aws_lc_rs::cipher::{
    AES_256, DecryptionContext, EncryptionContext, PaddedBlockDecryptingKey, PaddedBlockEncryptingKey,
    UnboundCipherKey,
};
use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::iv::FixedLength;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

/// Why an encrypted push could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// `encrypt` is not base64.
    #[error("the encrypted payload is not base64")]
    NotBase64,
    /// Shorter than IV plus one block, or not whole blocks.
    #[error("the encrypted payload has {0} bytes (needs 16 bytes of IV and whole 16-byte blocks)")]
    BadLength(usize),
    /// Wrong key or corrupted ciphertext (the padding does not check).
    #[error("the encrypted payload does not decrypt with this app's Encrypt Key")]
    Decrypt,
    /// The plaintext is not UTF-8.
    #[error("the decrypted payload is not UTF-8")]
    NotUtf8,
}

/// The AES-256 key: SHA-256 of the Encrypt Key's UTF-8 bytes.
pub fn aes_key(encrypt_key: &str) -> [u8; 32] {
    let d = digest(&SHA256, encrypt_key.as_bytes());
    let mut k = [0u8; 32];
    k.copy_from_slice(d.as_ref());
    k
}

/// Decrypts the `encrypt` field of a push into its plaintext JSON text.
pub fn decrypt(encrypt_key: &str, encrypted: &str) -> Result<String, CryptoError> {
    let raw = B64.decode(encrypted.trim()).map_err(|_| CryptoError::NotBase64)?;
    if raw.len() < 32 || raw.len() % 16 != 0 {
        return Err(CryptoError::BadLength(raw.len()));
    }
    let (iv, ct) = raw.split_at(16);
    let iv: [u8; 16] = iv.try_into().expect("16 bytes");
    let key = UnboundCipherKey::new(&AES_256, &aes_key(encrypt_key)).map_err(|_| CryptoError::Decrypt)?;
    let key = PaddedBlockDecryptingKey::cbc_pkcs7(key).map_err(|_| CryptoError::Decrypt)?;
    let mut buf = ct.to_vec();
    let plain = key
        .decrypt(&mut buf, DecryptionContext::Iv128(FixedLength::from(iv)))
        .map_err(|_| CryptoError::Decrypt)?;
    String::from_utf8(plain.to_vec()).map_err(|_| CryptoError::NotUtf8)
}

/// Encrypts a plaintext the way Feishu's sender does, with the given IV
/// (Feishu uses a random one; tests pass a fixed one to reproduce §10).
pub fn encrypt_with_iv(encrypt_key: &str, plaintext: &[u8], iv: [u8; 16]) -> String {
    let key = UnboundCipherKey::new(&AES_256, &aes_key(encrypt_key)).expect("32-byte key");
    let key = PaddedBlockEncryptingKey::cbc_pkcs7(key).expect("AES-256-CBC");
    let mut buf = plaintext.to_vec();
    key.less_safe_encrypt(&mut buf, EncryptionContext::Iv128(FixedLength::from(iv))).expect("CBC encrypt");
    let mut out = iv.to_vec();
    out.extend_from_slice(&buf);
    B64.encode(out)
}

/// Encrypts with a fresh random IV.
pub fn encrypt(encrypt_key: &str, plaintext: &[u8]) -> String {
    use aws_lc_rs::rand::{SecureRandom, SystemRandom};
    let mut iv = [0u8; 16];
    SystemRandom::new().fill(&mut iv).expect("system randomness");
    encrypt_with_iv(encrypt_key, plaintext, iv)
}

/// `X-Lark-Signature`: lowercase hex SHA-256 of timestamp ‖ nonce ‖ key ‖ body.
pub fn signature(timestamp: &str, nonce: &str, encrypt_key: &str, body: &[u8]) -> String {
    let mut input = Vec::with_capacity(timestamp.len() + nonce.len() + encrypt_key.len() + body.len());
    input.extend_from_slice(timestamp.as_bytes());
    input.extend_from_slice(nonce.as_bytes());
    input.extend_from_slice(encrypt_key.as_bytes());
    input.extend_from_slice(body);
    hex::encode(digest(&SHA256, &input))
}

/// Checks a signature in constant time (case-insensitive hex).
pub fn signature_matches(expected: &str, given: &str) -> bool {
    constant_time_eq(expected.as_bytes(), given.trim().to_ascii_lowercase().as_bytes())
}

/// Compares two secrets without leaking where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}

/// Lowercase hex SHA-256 (hand-out keys are stored this way).
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(digest(&SHA256, data))
}

/// `n` random bytes as unpadded base64url (states, session ids, keys).
pub fn random_token(n: usize) -> String {
    use aws_lc_rs::rand::{SecureRandom, SystemRandom};
    let mut b = vec![0u8; n];
    SystemRandom::new().fill(&mut b).expect("system randomness");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    // API.md §10.
    const EK: &str = "kudosEncryptKey-2026";
    const TS: &str = "1763707200";
    const NONCE: &str = "a1b2c3d4e5";
    const A_PLAIN: &str = r#"{"schema":"2.0","header":{"event_id":"5e3702a84e847582be8db7fb73283c02","event_type":"vc.meeting.all_meeting_ended_v1","create_time":"1763707200000","token":"vtok_kudos_test_0001","app_id":"cli_a1b2c3d4e5f6a7b8","tenant_key":"2ca1d211f64f6438"},"event":{"meeting":{"id":"6911188411934433028","topic":"Weekly sync","meeting_no":"235812466","start_time":"1763703600","end_time":"1763707200","host_user":{"id":{"open_id":"ou_84aad35d084aa403a838cf73ee18467"}},"owner":{"id":{"open_id":"ou_84aad35d084aa403a838cf73ee18467"}}},"operator":{"id":{"open_id":"ou_84aad35d084aa403a838cf73ee18467"}}}}"#;
    const A_BODY: &str = r#"{"encrypt":"AAECAwQFBgcICQoLDA0ODx+ti10TiIN5/c51ydDziqPlTPglg+13scfa8EBbllMXc/UMxjVdycFmUq12CKHBf9yD7a9zaTLEFJjvgDflpveVU0h6LGyH2Z7jHQNpuvpaaMY5cJf+XnM+kvOeuj0jmP2GZoBUyc8++xfEqgnsVdI0n992APHhdsOdmhHEksoIFC0ekORCqSNyZ+KP3F50y5H2csWskAhO1Wy7tHcqhuSRN/CX425PF1crFC+yzKMnN+ORXx6mU1T5hUDvbl7RMHBpvuwMxB48kXtMu5U8w3KLJFLby7inMeQDKGqxhM7E0Gj+fIusJ95UTPOBuSaHVbUbtbRAOX2SjcOYH/XtFnslOrjfdRBDtxqncUOlOMzegGNXcFwRbo/feRHIkHInQn2M5ArXFX2/LYgeo3Z/Fe9tgzUU/iP6yWhQju234YJdtQK8T/bAJvATBIrzBsTxgCfnVEVrKLuRgYtimdW/W+zKMS5ThTku0bOSd2JZNq6yNvAWYZtfpJQfG225Eh4Mqj6grA9vMtQqx+O1mDEtxqm++HR8rX2NTtXdNYHUfmTg0+CQOGnc/MMdW4IJxpGv5GTV6YJzw/TYkHGcbNS9a5rrgUVcFtPErMeVufthiUVDsjbYQfyBfEZ72Baxc5sBVAzxyTyu6eS+jYZwY6+BPOwUIs8SIW3ufnZOW4CmLPU7ZqhvRjqlhoR70Z+ZGvRs5Iwdbn2m1AENbjQF/XSuUyEPOERaj/cRxTNkZMBe+gi6rR6MNHvs9tga8Nv0sDzxqeOQfbTWJI0sFWnUx+/bImc="}"#;
    const A_SIG: &str = "ccb1b8383fb37649d9f4cb052aefa347f8bd2dcf1119cea8741ac4dd820f80e8";
    const B_PLAIN: &str =
        r#"{"challenge":"ajls384kdjx98XX","token":"vtok_kudos_test_0001","type":"url_verification"}"#;
    const B_BODY: &str = r#"{"encrypt":"AAECAwQFBgcICQoLDA0ODx0lnRNjoF80a4HmN4U/QBrO4VQyPFzcG303RdT3DDSXqxRgKGOdX7Lx3oHE2neLlySSl33qtGP+rwQ03ymi5QZVHpGf5+v02jDCIV715PhBHx6hVhaEPAZOTIoqN2dZ+A=="}"#;
    const B_SIG: &str = "2e000bf0d286a39c8fed8ea87127e1ac209300a509f115f4ac96171d9906465d";

    fn encrypt_field(body: &str) -> String {
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        v["encrypt"].as_str().unwrap().to_owned()
    }

    #[test]
    fn key_is_sha256_of_the_encrypt_key() {
        assert_eq!(
            hex::encode(aes_key(EK)),
            "7cb713356f07b53d6d42fc476ea5b23144b9a203ad8d874c1c3a63ad1f955b89"
        );
    }

    #[test]
    fn vector_a_and_b_decrypt_exactly() {
        assert_eq!(decrypt(EK, &encrypt_field(A_BODY)).unwrap(), A_PLAIN);
        assert_eq!(
            sha256_hex(A_PLAIN.as_bytes()),
            "d5bb83919512dc80a3444ac0e9dacfc3edf0b1ba14b7de2ceb15774d5b91f8de"
        );
        assert_eq!(decrypt(EK, &encrypt_field(B_BODY)).unwrap(), B_PLAIN);
    }

    #[test]
    fn vector_encryption_with_the_fixed_iv_reproduces_the_body() {
        let iv: [u8; 16] = std::array::from_fn(|i| i as u8);
        assert_eq!(encrypt_with_iv(EK, A_PLAIN.as_bytes(), iv), encrypt_field(A_BODY));
        assert_eq!(encrypt_with_iv(EK, B_PLAIN.as_bytes(), iv), encrypt_field(B_BODY));
        let random = encrypt(EK, A_PLAIN.as_bytes());
        assert_ne!(random, encrypt_field(A_BODY));
        assert_eq!(decrypt(EK, &random).unwrap(), A_PLAIN);
    }

    #[test]
    fn vector_signatures() {
        assert_eq!(signature(TS, NONCE, EK, A_BODY.as_bytes()), A_SIG);
        assert_eq!(signature(TS, NONCE, EK, B_BODY.as_bytes()), B_SIG);
        assert!(signature_matches(A_SIG, &A_SIG.to_ascii_uppercase()));
        assert!(!signature_matches(A_SIG, B_SIG));
        // One byte more in the body (a re-serialisation) changes the signature.
        assert_ne!(signature(TS, NONCE, EK, format!("{A_BODY} ").as_bytes()), A_SIG);
    }

    #[test]
    fn bad_payloads_are_refused() {
        assert_eq!(decrypt(EK, "not base64!"), Err(CryptoError::NotBase64));
        assert_eq!(decrypt(EK, &B64.encode([0u8; 20])), Err(CryptoError::BadLength(20)));
        assert_eq!(decrypt(EK, &B64.encode([0u8; 16])), Err(CryptoError::BadLength(16)));
        assert!(decrypt("another key", &encrypt_field(A_BODY)).is_err());
    }
}
