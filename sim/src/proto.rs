//! The two tiny proto2 messages the simulator has to produce and read (`wwmsgauditsdk.proto`,
//! PROTOCOL.md §1): `SdkKeyInfo` inside `encrypt_key`, and `MsgSdkFileId` behind every
//! `sdkfileid`. Hand-encoded: four fields do not justify a protobuf code generator.

/// Proto wire types used here.
const VARINT: u8 = 0;
const LEN: u8 = 2;

/// A proto message could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    /// The input ended inside a field.
    #[error("truncated protobuf")]
    Truncated,
    /// A varint ran over 10 bytes.
    #[error("overlong varint")]
    Varint,
    /// A wire type the messages never use (groups, fixed32/64 are skipped, 3/4/6/7 are errors).
    #[error("unsupported wire type {0}")]
    WireType(u8),
    /// Field number 0 is invalid in protobuf.
    #[error("field number 0")]
    FieldZero,
}

/// `wwmsgauditsdk.SdkKeyInfo`: how `DecryptData` cuts the filler out of `encrypt_chat_msg` and
/// which key decrypts the body (PROTOCOL.md §2).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SdkKeyInfo {
    /// Field 1, `string k1`: the body key (zero-padded or truncated to 32 bytes by the SDK).
    pub k1: Vec<u8>,
    /// Field 2, `int32 pre_len`: the first filler block is `pre_len + 45` characters.
    pub pre_len: i32,
    /// Field 3, `int32 end_len`: trailing filler length.
    pub end_len: i32,
    /// Field 4, `int32 s_len`: where the middle filler block sits, and its length.
    pub s_len: i32,
}

/// `wwmsgauditsdk.MsgSdkFileId`: what an `sdkfileid` is, base64-encoded (PROTOCOL.md §5.3).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MsgSdkFileId {
    /// Field 1: the server-side file id sent in the getchatmediadata body.
    pub fileid: String,
    /// Field 2: the per-file auth key sent alongside.
    pub authkey: String,
    /// Field 3: hex text; its first 16 decoded bytes are the AES-128-ECB key of the content.
    pub aeskey: String,
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_tag(out: &mut Vec<u8>, field: u32, wire: u8) {
    put_varint(out, (u64::from(field) << 3) | u64::from(wire));
}

fn put_bytes(out: &mut Vec<u8>, field: u32, b: &[u8]) {
    put_tag(out, field, LEN);
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// proto2 `int32` is a varint of the sign-extended 64-bit value (negative = 10 bytes).
fn put_int32(out: &mut Vec<u8>, field: u32, v: i32) {
    put_tag(out, field, VARINT);
    put_varint(out, i64::from(v) as u64);
}

fn get_varint(b: &[u8], i: &mut usize) -> Result<u64, ProtoError> {
    let mut v = 0u64;
    for shift in (0..70).step_by(7) {
        let byte = *b.get(*i).ok_or(ProtoError::Truncated)?;
        *i += 1;
        if shift == 63 && byte > 1 {
            return Err(ProtoError::Varint);
        }
        v |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Ok(v);
        }
    }
    Err(ProtoError::Varint)
}

/// One decoded field: number and either a varint or a length-delimited slice.
enum Field<'a> {
    Varint(u32, u64),
    Bytes(u32, &'a [u8]),
}

/// Walks the fields of a message, skipping fixed-width ones like protobuf's parser does.
fn fields(b: &[u8]) -> Result<Vec<Field<'_>>, ProtoError> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let tag = get_varint(b, &mut i)?;
        let field = (tag >> 3) as u32;
        if field == 0 {
            return Err(ProtoError::FieldZero);
        }
        match (tag & 7) as u8 {
            VARINT => out.push(Field::Varint(field, get_varint(b, &mut i)?)),
            LEN => {
                let n = get_varint(b, &mut i)? as usize;
                let end = i.checked_add(n).ok_or(ProtoError::Truncated)?;
                let s = b.get(i..end).ok_or(ProtoError::Truncated)?;
                i = end;
                out.push(Field::Bytes(field, s));
            }
            1 => i = i.checked_add(8).filter(|&e| e <= b.len()).ok_or(ProtoError::Truncated)?,
            5 => i = i.checked_add(4).filter(|&e| e <= b.len()).ok_or(ProtoError::Truncated)?,
            w => return Err(ProtoError::WireType(w)),
        }
    }
    Ok(out)
}

impl SdkKeyInfo {
    /// Serializes in field order 1..4, as the reference generator does.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.k1.len() + 24);
        put_bytes(&mut out, 1, &self.k1);
        put_int32(&mut out, 2, self.pre_len);
        put_int32(&mut out, 3, self.end_len);
        put_int32(&mut out, 4, self.s_len);
        out
    }

    /// Parses like proto2 `ParseFromString`: unknown fields are skipped, absent ones default to
    /// zero/empty, later occurrences win, `int32` keeps the low 32 bits.
    pub fn decode(b: &[u8]) -> Result<Self, ProtoError> {
        let mut k = SdkKeyInfo::default();
        for f in fields(b)? {
            match f {
                Field::Bytes(1, s) => k.k1 = s.to_vec(),
                Field::Varint(2, v) => k.pre_len = v as i32,
                Field::Varint(3, v) => k.end_len = v as i32,
                Field::Varint(4, v) => k.s_len = v as i32,
                _ => {}
            }
        }
        Ok(k)
    }
}

impl MsgSdkFileId {
    /// Serializes fields 1..3.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put_bytes(&mut out, 1, self.fileid.as_bytes());
        put_bytes(&mut out, 2, self.authkey.as_bytes());
        put_bytes(&mut out, 3, self.aeskey.as_bytes());
        out
    }

    /// The `sdkfileid` text messages carry: base64 of the serialized message.
    pub fn to_sdkfileid(&self) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(self.encode())
    }

    /// Parses the message; non-UTF-8 strings are replaced lossily (the sim only ever reads
    /// ids it produced itself).
    pub fn decode(b: &[u8]) -> Result<Self, ProtoError> {
        let mut m = MsgSdkFileId::default();
        for f in fields(b)? {
            if let Field::Bytes(n, s) = f {
                let s = String::from_utf8_lossy(s).into_owned();
                match n {
                    1 => m.fileid = s,
                    2 => m.authkey = s,
                    3 => m.aeskey = s,
                    _ => {}
                }
            }
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_info_matches_reference_bytes() {
        // make_vectors.py sdk_key_info(b"ab", 1, 2, 3)
        let k = SdkKeyInfo { k1: b"ab".to_vec(), pre_len: 1, end_len: 2, s_len: 3 };
        assert_eq!(k.encode(), b"\x0a\x02ab\x10\x01\x18\x02\x20\x03");
        assert_eq!(SdkKeyInfo::decode(&k.encode()).unwrap(), k);
    }

    #[test]
    fn negative_int32_round_trips() {
        let k = SdkKeyInfo { k1: vec![], pre_len: -45, end_len: -1, s_len: 300 };
        let e = k.encode();
        assert_eq!(SdkKeyInfo::decode(&e).unwrap(), k);
    }

    #[test]
    fn file_id_round_trips() {
        let m = MsgSdkFileId {
            fileid: "3069020102".into(),
            authkey: "abc".into(),
            aeskey: "00112233445566778899aabbccddeeff".into(),
        };
        assert_eq!(MsgSdkFileId::decode(&m.encode()).unwrap(), m);
        assert!(MsgSdkFileId::decode(&[0x0a, 0x05, b'a']).is_err());
    }
}
