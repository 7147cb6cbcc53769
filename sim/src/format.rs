//! The `DecryptData` message format, both directions, in pure Rust (PROTOCOL.md §2).
//!
//! ```text
//! encrypt_chat_msg = F1[pre_len+45] + A[:s_len] + F2[s_len] + A[s_len:] + F3[end_len]
//! A                = base64(IV' || AES-256-CBC-PKCS7(k1 zero-padded/truncated to 32, IV', plaintext))
//! K_E              = encrypt_chat_msg[13..45]           (32 ASCII characters used as key bytes)
//! encrypt_key      = base64(IV || AES-256-CBC-PKCS7(K_E, IV, SdkKeyInfo{k1, pre_len, end_len, s_len}))
//! ```
//!
//! [`encrypt`] is what the simulated server does for every record; [`decrypt`] re-implements the
//! real `DecryptData` step by step, including its lenient base64 decoder and its return codes, so
//! the simulator (and tests) can check records without loading the native library. Inputs the
//! real SDK would *abort the process* on are reported as [`DecryptError::WouldAbort`].

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use rand::{Rng, RngCore};

use crate::crypto::{CipherError, aes256_cbc_decrypt, aes256_cbc_encrypt};
use crate::proto::SdkKeyInfo;

/// Characters used for filler: the base64 alphabet, so a message looks like base64 (any
/// character would do; the SDK never reads filler outside `[13, 45)`).
const B64_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Where `K_E` starts inside `encrypt_chat_msg`.
pub const KE_OFFSET: usize = 13;
/// Length of `K_E`, and the fixed part of the first filler block (`pre_len + 45`).
pub const KE_END: usize = 45;

/// The free choices of one encryption (all but the IVs and the filler characters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    /// Body key, 1..=64 bytes in the simulator's corpus (any length works: the SDK zero-pads or
    /// truncates it to 32).
    pub k1: Vec<u8>,
    /// First filler block is `pre_len + 45` characters.
    pub pre_len: usize,
    /// Trailing filler length.
    pub end_len: usize,
    /// Split point of the body and length of the middle filler; `1..=len(A)`.
    pub s_len: usize,
}

/// The two strings a chatdata item carries (before RSA-wrapping the key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// What the application obtains after RSA-decrypting `encrypt_random_key`.
    pub encrypt_key: String,
    /// The message as served in `chatdata[].encrypt_chat_msg`.
    pub encrypt_chat_msg: String,
}

/// Parameters that cannot produce a message the SDK decrypts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamsError {
    /// `s_len` must be in `1..=len(A)` (PROTOCOL.md §2 step 6: otherwise the cut is wrong or
    /// the SDK aborts).
    #[error("s_len {s_len} outside 1..={body_len}")]
    SLen {
        /// The rejected value.
        s_len: usize,
        /// `len(A)` for this plaintext.
        body_len: usize,
    },
    /// A length does not fit the proto's `int32`.
    #[error("length {0} does not fit in int32")]
    TooLong(usize),
}

/// Why the real `DecryptData` would not return the plaintext (PROTOCOL.md §3).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecryptError {
    /// The real SDK throws an uncaught `std::out_of_range` here and the host process dies.
    #[error("the real SDK would abort the process: {0}")]
    WouldAbort(&'static str),
    /// `encrypt_key` does not decrypt under `encrypt_chat_msg[13..45]`: SDK code 10008.
    #[error("encrypt_key does not decrypt under K_E (SDK 10008)")]
    EncryptKey,
    /// `SdkKeyInfo` is unparsable or its lengths do not fit the message: SDK code 10005.
    #[error("SdkKeyInfo unparsable or inconsistent with the message (SDK 10005)")]
    KeyInfo,
    /// The body does not decrypt under `k1`: SDK code 10006.
    #[error("message body does not decrypt under k1 (SDK 10006)")]
    Body,
}

impl DecryptError {
    /// The return code the real `DecryptData` gives, or `None` when it kills the process.
    pub fn sdk_code(&self) -> Option<i32> {
        match self {
            DecryptError::WouldAbort(_) => None,
            DecryptError::EncryptKey => Some(10008),
            DecryptError::KeyInfo => Some(10005),
            DecryptError::Body => Some(10006),
        }
    }
}

/// `len(A)` for a plaintext of `n` bytes: base64 of IV (16) plus the padded ciphertext.
pub fn body_len(plaintext_len: usize) -> usize {
    let raw = 16 + (plaintext_len / 16 + 1) * 16;
    raw.div_ceil(3) * 4
}

/// Zero-pads or truncates a key to 32 bytes, as the SDK's AES helper does.
fn key32(k: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let n = k.len().min(32);
    out[..n].copy_from_slice(&k[..n]);
    out
}

fn filler(rng: &mut impl RngCore, n: usize, out: &mut String) {
    out.reserve(n);
    for _ in 0..n {
        out.push(B64_ALPHABET[(rng.next_u32() & 63) as usize] as char);
    }
}

fn i32_len(v: usize) -> Result<i32, ParamsError> {
    i32::try_from(v).map_err(|_| ParamsError::TooLong(v))
}

/// `base64(IV || AES-256-CBC-PKCS7(key, IV, data))`: the SDK's `AESdec` input format.
fn seal(key: &[u8; 32], data: &[u8], rng: &mut impl RngCore) -> String {
    let mut iv = [0u8; 16];
    rng.fill_bytes(&mut iv);
    let mut raw = iv.to_vec();
    raw.extend(aes256_cbc_encrypt(key, &iv, data));
    B64.encode(raw)
}

/// Encrypts `plaintext` into an `(encrypt_key, encrypt_chat_msg)` pair the real SDK decrypts
/// back to exactly `plaintext`. All randomness (IVs, filler) comes from `rng`, so a seeded rng
/// gives identical output.
pub fn encrypt(plaintext: &[u8], params: &Params, rng: &mut impl RngCore) -> Result<Sealed, ParamsError> {
    let a = seal(&key32(&params.k1), plaintext, rng);
    if params.s_len == 0 || params.s_len > a.len() {
        return Err(ParamsError::SLen { s_len: params.s_len, body_len: a.len() });
    }
    let info = SdkKeyInfo {
        k1: params.k1.clone(),
        pre_len: i32_len(params.pre_len)?,
        end_len: i32_len(params.end_len)?,
        s_len: i32_len(params.s_len)?,
    };
    let mut msg = String::with_capacity(params.pre_len + KE_END + a.len() + params.s_len * 2);
    filler(rng, params.pre_len + KE_END, &mut msg);
    msg.push_str(&a[..params.s_len]);
    filler(rng, params.s_len, &mut msg);
    msg.push_str(&a[params.s_len..]);
    filler(rng, params.end_len, &mut msg);
    let k_e = key32(&msg.as_bytes()[KE_OFFSET..KE_END]);
    let encrypt_key = seal_key_info(&k_e, &info, rng);
    Ok(Sealed { encrypt_key, encrypt_chat_msg: msg })
}

/// Encrypts an arbitrary (possibly inconsistent) `SdkKeyInfo` under `K_E`: used to build
/// deliberately broken keys in tests.
pub fn seal_key_info(k_e: &[u8; 32], info: &SdkKeyInfo, rng: &mut impl RngCore) -> String {
    seal(k_e, &info.encode(), rng)
}

/// Encrypts arbitrary key-info bytes (not necessarily a valid `SdkKeyInfo`: groups, unknown
/// fields, truncations) under `K_E`, as `encrypt_key`: used to build hostile keys that only the
/// SDK's protobuf parser decides about.
pub fn seal_key_bytes(k_e: &[u8; 32], key_info: &[u8], rng: &mut impl RngCore) -> String {
    seal(k_e, key_info, rng)
}

/// Picks varied parameters for a plaintext of `plaintext_len` bytes: `k1` of 1..=64 bytes
/// (mostly 32 printable ASCII, sometimes other lengths, sometimes multi-byte UTF-8), filler
/// lengths mostly small but sometimes up to 2000, `s_len` anywhere in `1..=len(A)`.
pub fn random_params(rng: &mut impl RngCore, plaintext_len: usize) -> Params {
    const K1_ASCII: &[u8] =
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$%&()*+,-./:;<=>?@[]^_{|}~";
    let k1_len = match rng.random_range(0..10) {
        0..=4 => 32,
        5..=7 => rng.random_range(1..=64),
        8 => rng.random_range(1..=8),
        _ => rng.random_range(33..=64),
    };
    let utf8 = rng.random_range(0..8) == 0;
    let mut k1 = Vec::with_capacity(k1_len);
    while k1.len() < k1_len {
        if utf8 && k1_len - k1.len() >= 3 && rng.random_range(0..3) == 0 {
            // A CJK character: valid UTF-8, so the SDK's protobuf does not complain.
            let c = char::from_u32(rng.random_range(0x4E00..0x9FA5)).unwrap_or('中');
            let mut b = [0u8; 4];
            k1.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
        } else {
            k1.push(K1_ASCII[rng.random_range(0..K1_ASCII.len())]);
        }
    }
    fn filler_len(rng: &mut impl RngCore) -> usize {
        match rng.random_range(0..20) {
            0 => rng.random_range(401..=2000),
            1..=3 => rng.random_range(65..=400),
            4 => 0,
            _ => rng.random_range(0..=64),
        }
    }
    let pre_len = filler_len(rng);
    let end_len = filler_len(rng);
    let a = body_len(plaintext_len);
    let s_len = match rng.random_range(0..10) {
        0 => a,
        1 => 1,
        2 | 3 => rng.random_range(1..=a),
        _ => rng.random_range(1..=a.min(64)),
    };
    Params { k1, pre_len, end_len, s_len }
}

/// The SDK's internal base64 decoder (PROTOCOL.md §2): whole groups of four only, characters
/// outside the alphabet count as zero bits, and the output is shortened by the number of
/// trailing `=` characters. It never fails.
pub fn sdk_base64_decode(s: &[u8]) -> Vec<u8> {
    fn val(c: u8) -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => 0,
        }
    }
    let groups = s.len() / 4;
    let mut out = Vec::with_capacity(groups * 3);
    for g in s.chunks_exact(4) {
        let v = g.iter().fold(0u32, |acc, &c| (acc << 6) | val(c));
        out.extend_from_slice(&v.to_be_bytes()[1..]);
    }
    let pad = s.iter().rev().take_while(|&&c| c == b'=').count();
    out.truncate(out.len().saturating_sub(pad));
    out
}

/// The SDK's `AESdec(data, key)` helper: lenient base64, at least IV + one block, AES-256-CBC
/// with the key zero-padded/truncated to 32 bytes, PKCS#7 checked.
fn aes_dec(data: &[u8], key: &[u8]) -> Result<Vec<u8>, CipherError> {
    let raw = sdk_base64_decode(data);
    if raw.len() < 32 || !raw.len().is_multiple_of(16) {
        return Err(CipherError::Length(raw.len()));
    }
    let iv: [u8; 16] = raw[..16].try_into().expect("16 bytes");
    aes256_cbc_decrypt(&key32(key), &iv, &raw[16..])
}

/// Re-implements the real `DecryptData(encrypt_key, encrypt_msg)` (PROTOCOL.md §2 steps 2-7),
/// returning the plaintext or the outcome the real library would have.
///
/// Both arguments are byte strings as the C API sees them (`strlen`-terminated text): a NUL
/// inside either is treated as its end.
pub fn decrypt(encrypt_key: &[u8], encrypt_chat_msg: &[u8]) -> Result<Vec<u8>, DecryptError> {
    let c_str = |b: &[u8]| b.iter().position(|&c| c == 0).map_or(b.len(), |n| n);
    let key = &encrypt_key[..c_str(encrypt_key)];
    let msg = &encrypt_chat_msg[..c_str(encrypt_chat_msg)];
    let l = msg.len();
    // Step 2: K_E = msg.substr(13, 32); substr throws when 13 > size.
    if l < KE_OFFSET {
        return Err(DecryptError::WouldAbort("encrypt_chat_msg shorter than 13 characters"));
    }
    let k_e = &msg[KE_OFFSET..l.min(KE_END)];
    // Step 3.
    let info = aes_dec(key, k_e).map_err(|_| DecryptError::EncryptKey)?;
    // Step 4.
    let info = SdkKeyInfo::decode(&info).map_err(|_| DecryptError::KeyInfo)?;
    // Step 5 (signed int arithmetic as in the C++).
    let (pre, s, end) = (i64::from(info.pre_len), i64::from(info.s_len), info.end_len);
    let l64 = l as i64;
    if s <= 0 || 2 * s >= l64 || pre + 45 > l64 {
        return Err(DecryptError::KeyInfo);
    }
    // Step 6: erase(0, pre+45); a negative count converts to a huge size_t and erases all.
    let mut m: Vec<u8> = if pre + 45 < 0 { Vec::new() } else { msg[(pre + 45) as usize..].to_vec() };
    let s = s as usize;
    if s > m.len() {
        return Err(DecryptError::WouldAbort("s_len beyond the message after the prefix cut"));
    }
    let cut_end = (2 * s).min(m.len());
    m.drain(s..cut_end);
    // Unsigned comparison: a negative end_len is huge and fails.
    let end = end as u32 as usize;
    if end > m.len() {
        return Err(DecryptError::KeyInfo);
    }
    m.truncate(m.len() - end);
    aes_dec(&m, &info.k1).map_err(|_| DecryptError::Body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[derive(serde::Deserialize)]
    struct Vector {
        plaintext: String,
        encrypt_key: String,
        encrypt_chat_msg: String,
        params: VectorParams,
    }
    #[derive(serde::Deserialize)]
    struct VectorParams {
        pre_len: usize,
        end_len: usize,
        s_len: usize,
    }

    /// A copy of `shared/sdk/vectors.json`, pairs the real SDK decrypts (PROTOCOL.md §8).
    const VECTORS: &str = include_str!("../testdata/vectors.json");

    #[test]
    fn every_reference_vector_decrypts() {
        let v: Vec<Vector> = serde_json::from_str(VECTORS).unwrap();
        assert_eq!(v.len(), 10);
        for (i, v) in v.iter().enumerate() {
            let out = decrypt(v.encrypt_key.as_bytes(), v.encrypt_chat_msg.as_bytes())
                .unwrap_or_else(|e| panic!("vector {i}: {e}"));
            assert_eq!(out, v.plaintext.as_bytes(), "vector {i}");
            let expected_len = v.params.pre_len + 45 + v.params.s_len + v.params.end_len;
            assert_eq!(
                v.encrypt_chat_msg.len(),
                expected_len + body_len(v.plaintext.len()),
                "vector {i} layout"
            );
        }
    }

    #[test]
    fn random_round_trips() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for i in 0..500 {
            let n = match i % 5 {
                0 => 0,
                1 => rng.random_range(1..40),
                _ => rng.random_range(0..5000),
            };
            let mut pt = vec![0u8; n];
            rng.fill_bytes(&mut pt);
            let p = random_params(&mut rng, n);
            assert!(!p.k1.is_empty() && p.k1.len() <= 64);
            let s = encrypt(&pt, &p, &mut rng).unwrap();
            assert_eq!(
                s.encrypt_chat_msg.len(),
                p.pre_len + 45 + 2 * p.s_len + p.end_len + body_len(n) - p.s_len
            );
            assert_eq!(decrypt(s.encrypt_key.as_bytes(), s.encrypt_chat_msg.as_bytes()).unwrap(), pt);
        }
    }

    #[test]
    fn same_rng_same_bytes() {
        let p = Params { k1: b"k".to_vec(), pre_len: 3, end_len: 4, s_len: 5 };
        let a = encrypt(b"hello", &p, &mut ChaCha8Rng::seed_from_u64(9)).unwrap();
        let b = encrypt(b"hello", &p, &mut ChaCha8Rng::seed_from_u64(9)).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn error_codes_follow_the_sdk() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let p =
            Params { k1: b"0123456789abcdef0123456789abcdef".to_vec(), pre_len: 10, end_len: 8, s_len: 12 };
        let s = encrypt(b"{\"a\":1}", &p, &mut rng).unwrap();
        let (k, m) = (s.encrypt_key.as_bytes(), s.encrypt_chat_msg.as_bytes());
        assert_eq!(
            decrypt(k, &m[..12]),
            Err(DecryptError::WouldAbort("encrypt_chat_msg shorter than 13 characters"))
        );
        assert_eq!(decrypt(k, &m[..44]).unwrap_err().sdk_code(), Some(10008));
        assert_eq!(decrypt(b"", m).unwrap_err().sdk_code(), Some(10008));
        // Exactly pre_len+45 characters: nothing left for the s_len cut -> abort.
        assert!(matches!(decrypt(k, &m[..55]), Err(DecryptError::WouldAbort(_))));
        // Filler outside K_E is never read.
        let mut f = m.to_vec();
        f[0] = b'*';
        f[50] = b'*';
        let last = f.len() - 1;
        f[last] = b'*';
        assert_eq!(decrypt(k, &f).unwrap(), b"{\"a\":1}");
        // A char inside K_E breaks the key.
        let mut f = m.to_vec();
        f[20] = if f[20] == b'A' { b'B' } else { b'A' };
        assert_eq!(decrypt(k, &f).unwrap_err().sdk_code(), Some(10008));
        // Same K_E, different k1 -> 10006.
        let k_e = key32(&m[13..45]);
        let bad = SdkKeyInfo { k1: b"other".to_vec(), pre_len: 10, end_len: 8, s_len: 12 };
        let bk = seal_key_info(&k_e, &bad, &mut rng);
        assert_eq!(decrypt(bk.as_bytes(), m).unwrap_err().sdk_code(), Some(10006));
        // s_len = 0 and end_len = -1 -> 10005.
        for bad in [
            SdkKeyInfo { k1: p.k1.clone(), pre_len: 10, end_len: 8, s_len: 0 },
            SdkKeyInfo { k1: p.k1.clone(), pre_len: 10, end_len: -1, s_len: 12 },
        ] {
            let bk = seal_key_info(&k_e, &bad, &mut rng);
            assert_eq!(decrypt(bk.as_bytes(), m).unwrap_err().sdk_code(), Some(10005));
        }
        // Truncations -> 10006.
        assert_eq!(decrypt(k, &m[..m.len() - 9]).unwrap_err().sdk_code(), Some(10006));
    }

    #[test]
    fn lenient_base64() {
        assert_eq!(sdk_base64_decode(b"aGk="), b"hi");
        assert_eq!(sdk_base64_decode(b"aGkh"), b"hi!");
        assert_eq!(sdk_base64_decode(b"aGkhx"), b"hi!");
        assert_eq!(sdk_base64_decode(b"****"), [0, 0, 0]);
    }
}
