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
///
/// A key that does not decrypt under `K_E` goes through: the SDK fails at the
/// same step with 10008, before it looks at any length. A key that decrypts to
/// bytes we cannot parse completely as protobuf is refused: the SDK's parser
/// may read lengths out of them that we did not see.
pub fn decrypt_inputs(encrypt_key: &str, encrypt_chat_msg: &str) -> Result<(), Refusal> {
    let msg = encrypt_chat_msg.as_bytes();
    if msg.len() < 13 {
        return Err(Refusal::MessageTooShort { len: msg.len() });
    }
    let k_e = &msg[13..msg.len().min(45)];
    let Some(plain) = sdk_aes_decrypt(encrypt_key.as_bytes(), k_e) else {
        // The SDK fails safely at the same step (10008).
        return Ok(());
    };
    let Some(info) = parse_key_info(&plain) else {
        return Err(Refusal::KeyInfoUnparsable { len: plain.len() });
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
///
/// The SDK computes `2 * s_len` and `pre_len + 45` in 32-bit `int`; values for
/// which that overflows are refused, since the wrapped result could pass its
/// checks and reach the throwing `erase`.
fn cut_fits(info: KeyInfoLengths, len: usize) -> bool {
    let len = len as i64;
    let (pre, s) = (i64::from(info.pre_len), i64::from(info.s_len));
    if s <= 0 {
        return true; // 10005
    }
    if 2 * s > i64::from(i32::MAX) || pre + 45 > i64::from(i32::MAX) {
        return false;
    }
    if 2 * s >= len {
        return true; // 10005
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
/// int32 end_len = 3; int32 s_len = 4; }` exactly as the SDK's protobuf 2.x
/// generated code does, so the lengths we check are the lengths it will cut
/// with:
///
/// - tags are varints of up to 10 bytes of which the low 32 bits count
///   (`ReadVarint32`); a known field with an unexpected wire type is skipped
///   as an unknown field, its value ignored;
/// - unknown fields are skipped by wire type, groups (wire types 3/4)
///   included, nested to protobuf's recursion limit of 100, each group closed
///   by the end tag of its own field number;
/// - a repeated scalar field keeps the last value; `int32` keeps the low 32
///   bits of its varint; missing fields are 0.
///
/// Anything the parser cannot consume completely and unambiguously is `None`:
/// a truncated field, a length of 2^31 or more, a stray end-group tag, field
/// number 0, wire types 6/7, groups nested too deep. The caller refuses such
/// input rather than guessing what the SDK would make of it (issue #9: the
/// old parser gave up on groups, and the SDK, which skips them, aborted).
pub fn parse_key_info(buf: &[u8]) -> Option<KeyInfoLengths> {
    let mut r = Reader { buf };
    let mut info = KeyInfoLengths::default();
    while !r.buf.is_empty() {
        let tag = r.tag()?;
        let (field, wire) = (tag >> 3, tag & 7);
        match (field, wire) {
            (2, 0) => info.pre_len = r.varint()? as i32,
            (3, 0) => info.end_len = r.varint()? as i32,
            (4, 0) => info.s_len = r.varint()? as i32,
            // A stray end-group tag ends the SDK's parse early, which then
            // fails `ConsumedEntireMessage`; refuse it like any unparsable input.
            (_, 4) => return None,
            _ => r.skip(field, wire, 0)?,
        }
    }
    Some(info)
}

/// protobuf's default recursion limit (`CodedInputStream::kDefaultRecursionLimit`).
const RECURSION_LIMIT: u32 = 100;

/// A cursor over the wire bytes, failing (`None`) on anything protobuf would
/// reject or we could not reproduce exactly.
struct Reader<'a> {
    buf: &'a [u8],
}

impl Reader<'_> {
    /// A varint of at most 10 bytes, as a u64 (bits past 64 are dropped, as
    /// protobuf does).
    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for i in 0..10 {
            let (&b, rest) = self.buf.split_first()?;
            self.buf = rest;
            v |= u64::from(b & 0x7f).checked_shl(7 * i).unwrap_or(0);
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    /// A tag: protobuf reads it with `ReadVarint32` (low 32 bits). Field
    /// number 0 is never valid; the SDK's generated code treats a literal 0
    /// tag as the end of input and then fails the parse.
    fn tag(&mut self) -> Option<u32> {
        let tag = self.varint()? as u32;
        (tag >> 3 != 0).then_some(tag)
    }

    /// A length prefix: `ReadVarint32`, then refused when negative as an `int`.
    fn len(&mut self) -> Option<usize> {
        let n = self.varint()? as u32;
        i32::try_from(n).ok().and_then(|n| usize::try_from(n).ok())
    }

    fn advance(&mut self, n: usize) -> Option<()> {
        self.buf = self.buf.get(n..)?;
        Some(())
    }

    /// Skips one field's value (`WireFormatLite::SkipField`).
    fn skip(&mut self, field: u32, wire: u32, depth: u32) -> Option<()> {
        match wire {
            0 => self.varint().map(drop),
            1 => self.advance(8),
            2 => {
                let n = self.len()?;
                self.advance(n)
            }
            3 => {
                if depth + 1 > RECURSION_LIMIT {
                    return None;
                }
                loop {
                    let tag = self.tag()?;
                    let (inner, inner_wire) = (tag >> 3, tag & 7);
                    if inner_wire == 4 {
                        // Only the end tag of this group's own field closes it.
                        return (inner == field).then_some(());
                    }
                    self.skip(inner, inner_wire, depth + 1)?;
                }
            }
            5 => self.advance(4),
            _ => None,
        }
    }
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
    fn key_info_groups_are_skipped_like_protobuf() {
        let base = [0x0a, 2, b'a', b'b', 0x10, 100, 0x18, 0, 0x20, 56];
        let want = Some(KeyInfoLengths { pre_len: 100, end_len: 0, s_len: 56 });
        // The case: an empty group (field 5) after the lengths.
        assert_eq!(parse_key_info(&[&base[..], &[0x2b, 0x2c]].concat()), want);
        // Nested groups holding fields with our numbers, which do not count.
        let nested = [0x2b, 0x33, 0x20, 7, 0x34, 0x10, 9, 0x2c];
        assert_eq!(parse_key_info(&[&base[..], &nested[..]].concat()), want);
        // A known field number as a group is skipped too.
        assert_eq!(parse_key_info(&[&base[..], &[0x23, 0x10, 1, 0x24]].concat()), want);
        // Repeated: the last value wins.
        assert_eq!(parse_key_info(&[&base[..], &[0x20, 3]].concat()).unwrap().s_len, 3);
        // A known field with another wire type is skipped, its value ignored.
        assert_eq!(parse_key_info(&[&base[..], &[0x22, 1, 9]].concat()), want);
        // Unclosed, wrongly closed and stray end groups, wire types 6/7, depth.
        for bad in [&[0x2b][..], &[0x2b, 0x34], &[0x2c], &[0x2e], &[0x2f], &[0x2b, 0x20]] {
            assert_eq!(parse_key_info(&[&base[..], bad].concat()), None, "{bad:02x?}");
        }
        let deep = |n: usize| [vec![0x2b; n], vec![0x2c; n]].concat();
        assert_eq!(parse_key_info(&deep(100)), Some(KeyInfoLengths::default()));
        assert_eq!(parse_key_info(&deep(101)), None);
        // A length of 2^31 or more is refused, as protobuf refuses it.
        assert_eq!(parse_key_info(&[0x0a, 0x80, 0x80, 0x80, 0x80, 0x08]), None);
    }

    #[test]
    fn overflowing_lengths_are_refused() {
        let info = |pre_len, s_len| KeyInfoLengths { pre_len, end_len: 0, s_len };
        assert!(!cut_fits(info(0, 1 << 30), 200));
        assert!(!cut_fits(info(i32::MAX - 40, 10), 200));
        assert!(cut_fits(info(0, (1 << 30) - 1), 200));
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
