//! Refusing the inputs that make `DecryptData` abort the process.
//!
//! The SDK's C++ code throws `std::out_of_range`, which nothing catches, in two
//! places (PROTOCOL.md §2–§3): `encrypt_msg.substr(13, 32)` when the message is
//! shorter than 13 bytes, and `erase(s_len, s_len)` when the key info's `s_len`
//! runs past what is left after the prefix cut. The second depends on values
//! hidden inside `encrypt_key`, so we repeat the SDK's first steps here
//! exactly — its lenient base64, AES-256-CBC under `K_E = msg[13..45]`, the
//! `SdkKeyInfo` proto — and refuse the call when the cut would not fit.
//! Whenever the SDK itself would fail safely (a key that does not decrypt, a
//! key info that does not parse), the call goes ahead and the SDK's own code is
//! returned, so results match the real library.

use aws_lc_rs::cipher::{AES_256, DecryptionContext, PaddedBlockDecryptingKey, UnboundCipherKey};
use aws_lc_rs::iv::FixedLength;

use super::error::Refusal;

/// The SDK's lengths from `SdkKeyInfo` (proto2 fields 2, 3, 4; field 1 is `k1`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct KeyInfoLengths {
    /// Filler before the body, beyond the 45-character header.
    pub pre_len: i32,
    /// Filler after the body.
    pub end_len: i32,
    /// Split point of the body, and the length of the filler inserted there.
    pub s_len: i32,
}

/// Checks that `DecryptData(encrypt_key, encrypt_chat_msg)` cannot abort.
pub fn decrypt_inputs(encrypt_key: &str, encrypt_chat_msg: &str) -> Result<(), Refusal> {
    let msg = encrypt_chat_msg.as_bytes();
    if msg.len() < 13 {
        return Err(Refusal::MessageTooShort { len: msg.len() });
    }
    let k_e = &msg[13..msg.len().min(45)];
    let Some(info) = sdk_aes_decrypt(encrypt_key.as_bytes(), k_e).and_then(|p| parse_key_info(&p)) else {
        // The SDK fails safely at the same step (10008 or 10005).
        return Ok(());
    };
    if cut_fits(info, msg.len()) {
        Ok(())
    } else {
        Err(Refusal::KeyInfoDoesNotFit {
            pre_len: info.pre_len.into(),
            s_len: info.s_len.into(),
            end_len: info.end_len.into(),
            len: msg.len(),
        })
    }
}

/// Whether the SDK's step 5–6 either rejects these lengths cleanly (10005) or
/// performs a cut that stays inside the message.
fn cut_fits(info: KeyInfoLengths, len: usize) -> bool {
    let len = len as i64;
    let (pre, s) = (i64::from(info.pre_len), i64::from(info.s_len));
    // Rejected with 10005 before any cut.
    if s <= 0 || 2 * s >= len {
        return true;
    }
    let cut = pre + 45;
    // A negative cut would be cast to a huge size_t; whether the SDK's compare
    // catches it depends on integer promotion we cannot observe. Refuse it.
    if cut < 0 {
        return false;
    }
    if cut > len {
        return true; // 10005
    }
    // erase(s_len, s_len) throws when s_len is past the end of what is left.
    s <= len - cut
}

/// The SDK's base64 decoder (PROTOCOL.md §2): `floor(len/4)` groups, any byte
/// outside the alphabet decodes as six zero bits, a trailing partial group is
/// ignored, and the output loses one byte per trailing `=`. It never fails.
pub fn sdk_base64_decode(input: &[u8]) -> Vec<u8> {
    fn sextet(c: u8) -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => 0,
        }
    }
    let groups = input.len() / 4;
    let mut out = Vec::with_capacity(groups * 3);
    for g in input[..groups * 4].chunks_exact(4) {
        let v = g.iter().fold(0u32, |acc, &c| (acc << 6) | sextet(c));
        out.extend_from_slice(&[(v >> 16) as u8, (v >> 8) as u8, v as u8]);
    }
    let pad = input.iter().rev().take_while(|&&c| c == b'=').count();
    out.truncate(out.len().saturating_sub(pad));
    out
}

/// The SDK's AES helper: base64 (its way), IV = first 16 bytes, AES-256-CBC
/// with PKCS#7, the key's raw bytes zero-padded or cut to 32.
fn sdk_aes_decrypt(data: &[u8], key: &[u8]) -> Option<Vec<u8>> {
    let decoded = sdk_base64_decode(data);
    if decoded.len() < 32 || !decoded.len().is_multiple_of(16) {
        return None;
    }
    let mut key32 = [0u8; 32];
    let n = key.len().min(32);
    key32[..n].copy_from_slice(&key[..n]);
    let key = PaddedBlockDecryptingKey::cbc_pkcs7(UnboundCipherKey::new(&AES_256, &key32).ok()?).ok()?;
    let iv: [u8; 16] = decoded[..16].try_into().ok()?;
    let mut body = decoded[16..].to_vec();
    let plain = key.decrypt(&mut body, DecryptionContext::Iv128(FixedLength::from(iv))).ok()?;
    Some(plain.to_vec())
}

/// Parses the proto2 `SdkKeyInfo { string k1 = 1; int32 pre_len = 2;
/// int32 end_len = 3; int32 s_len = 4; }` as protobuf does: unknown fields are
/// skipped, the last value of a field wins, missing fields are 0. `None` when
/// the bytes are not a valid protobuf message.
pub fn parse_key_info(mut buf: &[u8]) -> Option<KeyInfoLengths> {
    fn varint(buf: &mut &[u8]) -> Option<u64> {
        let mut v = 0u64;
        for i in 0..10 {
            let (&b, rest) = buf.split_first()?;
            *buf = rest;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }
    let mut info = KeyInfoLengths::default();
    while !buf.is_empty() {
        let tag = varint(&mut buf)?;
        let (field, wire) = (tag >> 3, tag & 7);
        if field == 0 {
            return None;
        }
        match wire {
            0 => {
                // int32 is sign-extended to 64 bits on the wire; truncation is
                // what protobuf does when reading it back.
                let v = varint(&mut buf)? as i32;
                match field {
                    2 => info.pre_len = v,
                    3 => info.end_len = v,
                    4 => info.s_len = v,
                    _ => {}
                }
            }
            1 => buf = buf.get(8..)?,
            2 => {
                let n = usize::try_from(varint(&mut buf)?).ok()?;
                buf = buf.get(n..)?;
            }
            5 => buf = buf.get(4..)?,
            _ => return None,
        }
    }
    Some(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_is_lenient_like_the_sdk() {
        assert_eq!(sdk_base64_decode(b"aGVsbG8="), b"hello");
        assert_eq!(sdk_base64_decode(b"aGVsbG8h"), b"hello!");
        // Trailing partial group ignored.
        assert_eq!(sdk_base64_decode(b"aGVsbG8hYQ"), b"hello!");
        // Non-alphabet bytes decode as zero bits instead of failing.
        assert_eq!(sdk_base64_decode(b"****"), [0, 0, 0]);
        assert_eq!(sdk_base64_decode(b""), b"");
    }

    #[test]
    fn key_info_parses_like_protobuf() {
        // k1 = "ab", pre_len = 10, end_len = 8, s_len = 12
        let bytes = [0x0a, 2, b'a', b'b', 0x10, 10, 0x18, 8, 0x20, 12];
        assert_eq!(parse_key_info(&bytes), Some(KeyInfoLengths { pre_len: 10, end_len: 8, s_len: 12 }));
        // end_len = -1 as a 10-byte varint.
        let neg = [0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(parse_key_info(&neg).unwrap().end_len, -1);
        // Truncated length-delimited field.
        assert_eq!(parse_key_info(&[0x0a, 5, b'a']), None);
        // Field number 0 is invalid.
        assert_eq!(parse_key_info(&[0x00, 1]), None);
    }

    #[test]
    fn cut_rules() {
        let info = |pre_len, s_len| KeyInfoLengths { pre_len, end_len: 0, s_len };
        // Normal record: fits.
        assert!(cut_fits(info(10, 12), 200));
        // SDK rejects cleanly.
        assert!(cut_fits(info(10, 0), 200));
        assert!(cut_fits(info(10, 100), 200));
        assert!(cut_fits(info(300, 10), 200));
        // Exactly pre_len + 45 characters: nothing left for the s_len cut (abort).
        assert!(!cut_fits(info(10, 1), 55));
        // Negative cut: refused.
        assert!(!cut_fits(info(-46, 1), 200));
        assert!(cut_fits(info(-45, 1), 200));
    }

    #[test]
    fn short_messages_are_refused() {
        assert_eq!(decrypt_inputs("x", ""), Err(Refusal::MessageTooShort { len: 0 }));
        assert_eq!(decrypt_inputs("x", "123456789012"), Err(Refusal::MessageTooShort { len: 12 }));
        assert_eq!(decrypt_inputs("x", "1234567890123"), Ok(()));
    }
}
