//! The SDK's documented return codes (10000–10011), beside the ABI they belong to.

use std::fmt;

/// A documented non-zero return code of the WeCom Finance SDK.
///
/// Meanings from Tencent's header and shared/sdk/PROTOCOL.md §3–§5, which also
/// records what actually produces each one in the real library.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// 10000: a parameter is invalid (NULL, empty, limit outside 1..=1000, bad index).
    InvalidParam,
    /// 10001: network error (connect/TLS failure, timeout, non-2xx reply, token failure).
    Network,
    /// 10002: the server reply could not be parsed (or a non-zero media errcode).
    DataParse,
    /// 10003: system failure (e.g. empty or undecodable media content).
    System,
    /// 10004: encryption failed because of a key error.
    Encrypt,
    /// 10005: bad fileid, or the key info inside `encrypt_key` is unusable.
    FileId,
    /// 10006: decryption of the message body or media chunk failed.
    Decrypt,
    /// 10007: no private key for this `publickey_ver`.
    NoPrivateKey,
    /// 10008: `encrypt_key` could not be parsed / does not match the message.
    EncryptKey,
    /// 10009: the caller's IP is not allowed (server errcode 301042).
    IllegalIp,
    /// 10010: the data has expired (server errcode 301048).
    Expired,
    /// 10011: certificate error.
    Certificate,
}

impl ErrorCode {
    /// All documented codes, in numeric order.
    pub const ALL: [ErrorCode; 12] = [
        ErrorCode::InvalidParam,
        ErrorCode::Network,
        ErrorCode::DataParse,
        ErrorCode::System,
        ErrorCode::Encrypt,
        ErrorCode::FileId,
        ErrorCode::Decrypt,
        ErrorCode::NoPrivateKey,
        ErrorCode::EncryptKey,
        ErrorCode::IllegalIp,
        ErrorCode::Expired,
        ErrorCode::Certificate,
    ];

    /// The code for a raw return value, if it is one of the documented ones.
    pub fn from_raw(rc: i32) -> Option<ErrorCode> {
        let i = rc.checked_sub(10000)?;
        Self::ALL.get(usize::try_from(i).ok()?).copied()
    }

    /// The raw numeric value (10000–10011).
    pub fn raw(self) -> i32 {
        10000 + Self::ALL.iter().position(|c| *c == self).expect("listed") as i32
    }

    /// Tencent's meaning, in English.
    pub fn description(self) -> &'static str {
        match self {
            ErrorCode::InvalidParam => "invalid parameter",
            ErrorCode::Network => "network error",
            ErrorCode::DataParse => "failed to parse data",
            ErrorCode::System => "system failure",
            ErrorCode::Encrypt => "encryption failed because of a key error",
            ErrorCode::FileId => "invalid fileid or key info",
            ErrorCode::Decrypt => "decryption failed",
            ErrorCode::NoPrivateKey => "no private key for this publickey_ver",
            ErrorCode::EncryptKey => "failed to parse encrypt_key",
            ErrorCode::IllegalIp => "caller IP not allowed",
            ErrorCode::Expired => "data expired",
            ErrorCode::Certificate => "certificate error",
        }
    }

    /// Tencent's meaning, in Chinese (as in the official header).
    pub fn description_zh(self) -> &'static str {
        match self {
            ErrorCode::InvalidParam => "参数错误",
            ErrorCode::Network => "网络错误",
            ErrorCode::DataParse => "数据解析失败",
            ErrorCode::System => "系统失败",
            ErrorCode::Encrypt => "密钥错误导致加密失败",
            ErrorCode::FileId => "fileid错误",
            ErrorCode::Decrypt => "解密失败",
            ErrorCode::NoPrivateKey => "找不到消息加密版本的私钥，需要重新传入私钥对",
            ErrorCode::EncryptKey => "解析encrypt_key出错",
            ErrorCode::IllegalIp => "ip非法",
            ErrorCode::Expired => "数据过期",
            ErrorCode::Certificate => "证书错误",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} ({})", self.raw(), self.description(), self.description_zh())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_round_trips_for_every_code() {
        for (i, code) in ErrorCode::ALL.iter().enumerate() {
            assert_eq!(code.raw(), 10000 + i as i32);
            assert_eq!(ErrorCode::from_raw(code.raw()), Some(*code));
        }
        assert_eq!(ErrorCode::from_raw(0), None);
        assert_eq!(ErrorCode::from_raw(9999), None);
        assert_eq!(ErrorCode::from_raw(10012), None);
        assert_eq!(ErrorCode::from_raw(i32::MIN), None);
    }
}
