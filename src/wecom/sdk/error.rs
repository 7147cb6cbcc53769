//! Typed SDK errors: the raw code is kept, decisions are made on [`SdkError::code`].

use std::fmt;

use wework_finance_sys::ErrorCode;

/// Which SDK operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `NewSdk` + `Init`.
    Init,
    /// `GetChatData`.
    GetChatData,
    /// `DecryptData`.
    DecryptData,
    /// `GetMediaData`.
    GetMediaData,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::Init => "Init",
            Op::GetChatData => "GetChatData",
            Op::DecryptData => "DecryptData",
            Op::GetMediaData => "GetMediaData",
        })
    }
}

/// Why an input was refused before it reached the SDK.
///
/// Some inputs make the SDK's C++ code throw an exception nobody catches, which
/// aborts the whole process (PROTOCOL.md §3); others are simply invalid. These
/// never cross the FFI boundary.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// `encrypt_chat_msg` is shorter than 13 characters: `substr(13, 32)` would throw.
    #[error("encrypt_chat_msg is {len} characters long; at least 13 are needed (the SDK would abort)")]
    MessageTooShort {
        /// Its length.
        len: usize,
    },
    /// The key info inside `encrypt_key` describes a cut that does not fit the
    /// message (`erase` would throw, or the lengths are out of range).
    #[error(
        "the key info in encrypt_key does not fit the message (pre_len {pre_len}, s_len {s_len}, end_len {end_len}, message length {len}); the SDK would abort or reject it"
    )]
    KeyInfoDoesNotFit {
        /// `SdkKeyInfo.pre_len`.
        pre_len: i64,
        /// `SdkKeyInfo.s_len`.
        s_len: i64,
        /// `SdkKeyInfo.end_len`.
        end_len: i64,
        /// `len(encrypt_chat_msg)`.
        len: usize,
    },
    /// `encrypt_key` decrypts, but not to a protobuf message we can parse
    /// completely: the SDK's parser could find lengths in it that we cannot
    /// check, so the call is not made.
    #[error(
        "the key info in encrypt_key ({len} bytes) is not a protobuf message that can be parsed completely; refused so the SDK cannot abort on it"
    )]
    KeyInfoUnparsable {
        /// Length of the decrypted key info.
        len: usize,
    },
    /// A string argument holds a NUL byte; C would silently truncate it.
    #[error("{arg} contains a NUL byte")]
    InteriorNul {
        /// The argument's name.
        arg: &'static str,
    },
    /// A required string argument is empty.
    #[error("{arg} is empty")]
    Empty {
        /// The argument's name.
        arg: &'static str,
    },
    /// `limit` outside 1..=1000.
    #[error("limit {limit} is outside 1..=1000")]
    LimitOutOfRange {
        /// The limit asked for.
        limit: u32,
    },
    /// A zero timeout makes the SDK block forever (PROTOCOL.md §4).
    #[error("timeout must be at least one second (0 blocks forever)")]
    ZeroTimeout,
    /// The media index buffer is not of the form `Range:bytes=a-b` with `a <= b`.
    #[error("media index {index:?} is not a Range:bytes=a-b index")]
    BadMediaIndex {
        /// The index given.
        index: String,
    },
}

/// An SDK failure: a documented return code, an undocumented one, or an input
/// refused before the call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdkError {
    /// The SDK returned one of the documented codes 10000–10011.
    #[error("{op}: SDK error {code}")]
    Code {
        /// The operation.
        op: Op,
        /// The code.
        code: ErrorCode,
    },
    /// The SDK returned a code it does not document.
    #[error("{op}: SDK returned undocumented code {rc}")]
    Undocumented {
        /// The operation.
        op: Op,
        /// The raw return value.
        rc: i32,
    },
    /// The input was refused before the call.
    #[error("{op}: {reason}")]
    Refused {
        /// The operation.
        op: Op,
        /// Why.
        reason: Refusal,
    },
    /// `NewSdk`, `NewSlice` or `NewMediaData` returned NULL.
    #[error("{op}: the SDK could not allocate a handle")]
    NullHandle {
        /// The operation.
        op: Op,
    },
}

impl SdkError {
    /// Turns a return value into `Ok(())` or the matching error.
    pub(crate) fn check(op: Op, rc: i32) -> Result<(), SdkError> {
        match rc {
            0 => Ok(()),
            rc => Err(match ErrorCode::from_raw(rc) {
                Some(code) => SdkError::Code { op, code },
                None => SdkError::Undocumented { op, rc },
            }),
        }
    }

    /// The documented code, if the SDK returned one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            SdkError::Code { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// The raw numeric code for logs and the database: the SDK's return value,
    /// or 0 when the call never reached the SDK.
    pub fn raw_code(&self) -> i32 {
        match self {
            SdkError::Code { code, .. } => code.raw(),
            SdkError::Undocumented { rc, .. } => *rc,
            SdkError::Refused { .. } | SdkError::NullHandle { .. } => 0,
        }
    }

    /// The operation that failed.
    pub fn op(&self) -> Op {
        match self {
            SdkError::Code { op, .. }
            | SdkError::Undocumented { op, .. }
            | SdkError::Refused { op, .. }
            | SdkError::NullHandle { op } => *op,
        }
    }

    /// Whether retrying the same call later may succeed: network (10001),
    /// parse (10002) and system (10003) failures are transient in practice
    /// (FORMAT.md §1.5, §2.2).
    pub fn is_transient(&self) -> bool {
        matches!(self.code(), Some(ErrorCode::Network | ErrorCode::DataParse | ErrorCode::System))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_maps_codes() {
        assert_eq!(SdkError::check(Op::GetChatData, 0), Ok(()));
        let e = SdkError::check(Op::GetChatData, 10001).unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::Network));
        assert!(e.is_transient());
        assert_eq!(e.raw_code(), 10001);
        assert!(e.to_string().contains("10001 network error (网络错误)"), "{e}");
        let e = SdkError::check(Op::DecryptData, 42).unwrap_err();
        assert_eq!(e, SdkError::Undocumented { op: Op::DecryptData, rc: 42 });
        assert!(!e.is_transient());
        let e = SdkError::check(Op::DecryptData, 10008).unwrap_err();
        assert!(!e.is_transient());
    }
}
