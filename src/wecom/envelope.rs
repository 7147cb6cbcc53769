//! The GetChatData reply: `{"errcode","errmsg","chatdata":[{seq, msgid,
//! publickey_ver, encrypt_random_key, encrypt_chat_msg}]}` (FORMAT.md §1.1).
//!
//! The SDK hands the HTTP body over verbatim (PROTOCOL.md §5.2), so a server
//! errcode arrives here with rc 0, and so does anything malformed.

use serde_json::Value;

/// One item of `chatdata`, with every field optional: a malformed item is
/// stored and marked, never dropped.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatItem {
    /// Sequence number.
    pub seq: Option<u64>,
    /// Message id.
    pub msgid: Option<String>,
    /// Key version.
    pub publickey_ver: Option<u32>,
    /// RSA-encrypted key, base64.
    pub encrypt_random_key: Option<String>,
    /// The encrypted message.
    pub encrypt_chat_msg: Option<String>,
    /// The item as received, for records that cannot be read.
    pub raw: Value,
}

/// What a reply says.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// Records (possibly none: caught up).
    Items(Vec<ChatItem>),
    /// A server errcode (token expired, busy, rate limited…).
    ServerError {
        /// errcode.
        errcode: i64,
        /// errmsg.
        errmsg: String,
    },
}

/// A reply that is not the documented envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// Not JSON at all.
    #[error("GetChatData reply is not JSON ({len} bytes)")]
    NotJson {
        /// Body length.
        len: usize,
    },
    /// JSON, but no `chatdata` array with errcode 0.
    #[error("GetChatData reply has no chatdata array")]
    NoChatData,
}

fn u64_of(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// Parses a reply body.
pub fn parse_reply(body: &[u8]) -> Result<Reply, EnvelopeError> {
    let v: Value = serde_json::from_slice(body).map_err(|_| EnvelopeError::NotJson { len: body.len() })?;
    let errcode = v.get("errcode").and_then(Value::as_i64).unwrap_or(0);
    if errcode != 0 {
        let errmsg = v.get("errmsg").and_then(Value::as_str).unwrap_or("").chars().take(300).collect();
        return Ok(Reply::ServerError { errcode, errmsg });
    }
    let items = v.get("chatdata").and_then(Value::as_array).ok_or(EnvelopeError::NoChatData)?;
    Ok(Reply::Items(
        items
            .iter()
            .map(|it| ChatItem {
                seq: it.get("seq").and_then(u64_of),
                msgid: it.get("msgid").and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned),
                publickey_ver: it.get("publickey_ver").and_then(u64_of).and_then(|v| u32::try_from(v).ok()),
                encrypt_random_key: it.get("encrypt_random_key").and_then(Value::as_str).map(str::to_owned),
                encrypt_chat_msg: it.get("encrypt_chat_msg").and_then(Value::as_str).map(str::to_owned),
                raw: it.clone(),
            })
            .collect(),
    ))
}

/// Whether a server errcode is worth retrying after a pause (busy, rate
/// limits, token trouble the SDK refreshes itself); others still retry, but
/// are reported as configuration problems.
pub fn errcode_is_transient(errcode: i64) -> bool {
    matches!(errcode, -1 | 40014 | 41001 | 42001 | 45009 | 45033)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_envelope() {
        let examples: Value = serde_json::from_str(include_str!("../../tests/data/EXAMPLES.json")).unwrap();
        let body = examples["_getchatdata_response"].to_string();
        let Reply::Items(items) = parse_reply(body.as_bytes()).unwrap() else { panic!() };
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].seq, Some(2048));
        assert_eq!(items[0].publickey_ver, Some(2));
        assert!(items[0].msgid.as_deref().unwrap().ends_with("_external"));
    }

    #[test]
    fn errors_and_malformed_items() {
        assert_eq!(
            parse_reply(br#"{"errcode":45009,"errmsg":"api freq out of limit"}"#).unwrap(),
            Reply::ServerError { errcode: 45009, errmsg: "api freq out of limit".into() }
        );
        assert_eq!(parse_reply(b"<html>").unwrap_err(), EnvelopeError::NotJson { len: 6 });
        assert_eq!(parse_reply(br#"{"errcode":0}"#).unwrap_err(), EnvelopeError::NoChatData);
        let Reply::Items(items) =
            parse_reply(br#"{"errcode":0,"chatdata":[{"seq":"7","msgid":""}]}"#).unwrap()
        else {
            panic!()
        };
        assert_eq!((items[0].seq, items[0].msgid.as_deref()), (Some(7), None));
        assert!(errcode_is_transient(-1) && !errcode_is_transient(40001));
    }
}
