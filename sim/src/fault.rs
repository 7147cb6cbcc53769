//! Fault injection: which faults exist, how a spec string is parsed, and how each request's fate
//! is decided deterministically.
//!
//! A request fault is decided from a hash of `(seed, fault kind, request identity, attempt n)`,
//! where the identity is what the request asks for (corp for gettoken; corp, seq and limit for
//! getchatdata; fileid and range start for media) and `n` counts earlier requests with the same
//! identity. The outcome therefore depends on what a client asks and how often, never on thread
//! timing. Record faults are baked into the corpus at deterministic records (see
//! [`crate::RecordFault`]); each kind with a positive rate appears at least once per corp.
//!
//! # What the real SDK makes of each fault
//!
//! Observed with the real `libWeWorkFinanceSdk_C.so` (md5 `f2db3dd1…5c698`) pulling from the
//! simulator through `proxy = "http://127.0.0.1:PORT"` (CONNECT), `timeout` = 1 s, each
//! kind at rate 0.5 and then 1.0 (root `tests/sim.rs` checks the same table):
//!
//! | fault | where | server does | real SDK returns |
//! |---|---|---|---|
//! | `http500` | every endpoint | HTTP 500/502/503/504 with an nginx-style HTML body | **10001** from GetChatData and GetMediaData (at once); also 10001 when it hits the token fetch |
//! | `slow` | every endpoint | answers after `slow_ms` | **10001** after `timeout` (1.0 s measured) when `slow_ms` exceeds it, rc 0 otherwise |
//! | `cut` | every endpoint | sends the head and half the body (Content-Length promises all), then closes without TLS close_notify | **10001** |
//! | `token_expired` | getchatdata | HTTP 200 `{"errcode":42001,…}` | **0**: GetChatData does not parse its reply and returns the body verbatim. The SDK does *not* refresh its cached token (no new gettoken seen; it refreshes only at `time() + expires_in`), so the caller must check `errcode` in the body and retry |
//! | `media_ip` | getchatmediadata | `{"errcode":301042,…}` | **10009** |
//! | `media_expired` | getchatmediadata | `{"errcode":301048,…}` | **10010** |
//! | `md5_mismatch` | getchatmediadata, the final chunk of a download attempt | one plaintext byte flipped before encryption | **0** on every chunk; the file has the right size and the wrong md5; the next attempt is decided afresh |
//! | `short_msg` | record | `encrypt_chat_msg` of 0..=12 characters (valid `encrypt_random_key`) | `DecryptData` **aborts the process** (PROTOCOL.md §3): never pass it to the SDK |
//! | `bad_base64` | record | `encrypt_random_key` with `*`/`!`/`.`/`~` inside, 2 characters short | no SDK call: the application's base64 decode fails |
//! | `unknown_ver` | record | `publickey_ver` = 3, a key missing from the manifest (see [`crate::Simulator::withheld_keys`]) | no key until it is added; with the withheld key the record decrypts normally (rc 0) |
//! | `wrong_key` | record | `encrypt_random_key` encrypted to a key nobody has | no SDK call: RSA decryption with every manifest key fails (aws-lc-rs `Unspecified`) |
//!
//! Other answers, not faults, with the real SDK: unknown corpid → gettoken `40013` and wrong
//! secret → `40001`, both **10001** (the SDK prints `WeWorkFinanceSdk:access:<body>` with a GBK
//! comma to stdout); a well-formed sdkfileid the server does not know → errcode `40058` →
//! **10002**; an undecodable sdkfileid → **10005** (SDK-side); an unknown or expired access
//! token → `40014` / `42001` in the getchatdata body (rc 0). With `socks5h://` the SDK
//! tunnels through the simulator's SOCKS5 side (rc 0); plain `socks5://` resolves the host
//! locally and fails without DNS (10001).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::seed::{mix, tag, unit};

/// A kind of fault the simulator can inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// Non-2xx HTTP status.
    Http500,
    /// Reply delayed by `slow_ms`.
    Slow,
    /// Connection closed mid-body.
    Cut,
    /// getchatdata answers errcode 42001.
    TokenExpired,
    /// getchatmediadata answers errcode 301042 (IP not allowed).
    MediaIp,
    /// getchatmediadata answers errcode 301048 (media expired).
    MediaExpired,
    /// Record: `encrypt_chat_msg` shorter than 13 characters.
    ShortMsg,
    /// Record: `encrypt_random_key` is not base64.
    BadBase64,
    /// Record: `publickey_ver` of a key missing from the manifest.
    UnknownVer,
    /// Record: random key encrypted to an unknown RSA key.
    WrongKey,
    /// Media: a download attempt gets corrupted bytes (md5 fails).
    Md5Mismatch,
    /// Record: a key info that aborts the real SDK, hidden behind an empty protobuf group.
    GroupKeyInfo,
    /// Record: a 400-character msgid.
    LongMsgid,
    /// Record: a plaintext with bytes that are not UTF-8.
    InvalidUtf8,
    /// Record: a plaintext with a lone surrogate escape.
    LoneSurrogate,
    /// Record: a 20 MB plaintext.
    HugeRecord,
    /// Record: served with `seq = 2^64-1`.
    ForgedSeq,
    /// Media: a chunk after the first is answered with `CONTENT-RANGE` of the first chunk,
    /// so the SDK returns rc 0, `is_finish = 0` and the same index again: a client that
    /// follows it loops forever and its file grows without bound.
    MediaRangeLoop,
}

impl FaultKind {
    /// Every kind, in spec order.
    pub const ALL: [FaultKind; 18] = [
        FaultKind::Http500,
        FaultKind::Slow,
        FaultKind::Cut,
        FaultKind::TokenExpired,
        FaultKind::MediaIp,
        FaultKind::MediaExpired,
        FaultKind::ShortMsg,
        FaultKind::BadBase64,
        FaultKind::UnknownVer,
        FaultKind::WrongKey,
        FaultKind::Md5Mismatch,
        FaultKind::GroupKeyInfo,
        FaultKind::LongMsgid,
        FaultKind::InvalidUtf8,
        FaultKind::LoneSurrogate,
        FaultKind::HugeRecord,
        FaultKind::ForgedSeq,
        FaultKind::MediaRangeLoop,
    ];

    /// The name used in spec strings.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Http500 => "http500",
            FaultKind::Slow => "slow",
            FaultKind::Cut => "cut",
            FaultKind::TokenExpired => "token_expired",
            FaultKind::MediaIp => "media_ip",
            FaultKind::MediaExpired => "media_expired",
            FaultKind::ShortMsg => "short_msg",
            FaultKind::BadBase64 => "bad_base64",
            FaultKind::UnknownVer => "unknown_ver",
            FaultKind::WrongKey => "wrong_key",
            FaultKind::Md5Mismatch => "md5_mismatch",
            FaultKind::GroupKeyInfo => "group_key_info",
            FaultKind::LongMsgid => "long_msgid",
            FaultKind::InvalidUtf8 => "invalid_utf8",
            FaultKind::LoneSurrogate => "lone_surrogate",
            FaultKind::HugeRecord => "huge_record",
            FaultKind::ForgedSeq => "forged_seq",
            FaultKind::MediaRangeLoop => "media_range_loop",
        }
    }

    /// Whether the fault is baked into corpus records (as opposed to decided per request).
    pub fn is_record_fault(self) -> bool {
        matches!(
            self,
            FaultKind::ShortMsg
                | FaultKind::BadBase64
                | FaultKind::UnknownVer
                | FaultKind::WrongKey
                | FaultKind::GroupKeyInfo
                | FaultKind::LongMsgid
                | FaultKind::InvalidUtf8
                | FaultKind::LoneSurrogate
                | FaultKind::HugeRecord
                | FaultKind::ForgedSeq
        )
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A fault spec string could not be parsed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FaultSpecError {
    /// The name is not a fault kind.
    #[error("unknown fault {name:?}; known faults: {}", FaultKind::ALL.map(FaultKind::name).join(", "))]
    UnknownFault {
        /// The unknown name.
        name: String,
    },
    /// An entry is not `name=rate`.
    #[error("fault entry {entry:?} is not of the form name=rate")]
    Syntax {
        /// The entry as written.
        entry: String,
    },
    /// The rate is not a number in `[0, 1]`.
    #[error("fault {name}: rate {value:?} is not a number between 0 and 1")]
    BadRate {
        /// The fault.
        name: String,
        /// The rate as written.
        value: String,
    },
    /// The same fault appears twice.
    #[error("fault {name} given twice")]
    Duplicate {
        /// The fault.
        name: String,
    },
}

/// Fault rates, e.g. parsed from `http500=0.05,slow=0.01,cut=0.02`. Kinds not mentioned have
/// rate 0. Rates are probabilities in `[0, 1]`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultSpec {
    rates: BTreeMap<FaultKind, f64>,
}

impl FaultSpec {
    /// No faults.
    pub fn none() -> Self {
        Self::default()
    }

    /// Sets one rate (builder style); panics on a rate outside `[0, 1]`.
    pub fn with(mut self, kind: FaultKind, rate: f64) -> Self {
        assert!((0.0..=1.0).contains(&rate), "fault rate {rate} outside [0, 1]");
        if rate > 0.0 {
            self.rates.insert(kind, rate);
        } else {
            self.rates.remove(&kind);
        }
        self
    }

    /// The rate of one kind (0 when absent).
    pub fn rate(&self, kind: FaultKind) -> f64 {
        self.rates.get(&kind).copied().unwrap_or(0.0)
    }

    /// Whether no fault has a positive rate.
    pub fn is_empty(&self) -> bool {
        self.rates.is_empty()
    }

    /// The kinds with a positive rate.
    pub fn kinds(&self) -> impl Iterator<Item = (FaultKind, f64)> + '_ {
        self.rates.iter().map(|(k, r)| (*k, *r))
    }

    /// This spec without the request-level faults, keeping the record faults only.
    pub fn record_faults_only(&self) -> Self {
        FaultSpec {
            rates: self.rates.iter().filter(|(k, _)| k.is_record_fault()).map(|(k, r)| (*k, *r)).collect(),
        }
    }

    /// Rolls fault `kind` for attempt `attempt` of the request identified by `identity`.
    pub(crate) fn roll(&self, seed: u64, kind: FaultKind, identity: u64, attempt: u64) -> bool {
        let rate = self.rate(kind);
        rate > 0.0 && unit(mix(&[seed, tag::REQUEST_FAULT, kind as u64, identity, attempt])) < rate
    }
}

impl FromStr for FaultSpec {
    type Err = FaultSpecError;

    /// Parses `name=rate[,name=rate…]`; whitespace around entries is ignored, an empty string
    /// means no faults.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut spec = FaultSpec::default();
        let mut seen = Vec::new();
        for entry in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (name, value) =
                entry.split_once('=').ok_or_else(|| FaultSpecError::Syntax { entry: entry.to_string() })?;
            let (name, value) = (name.trim(), value.trim());
            let kind = FaultKind::ALL
                .into_iter()
                .find(|k| k.name() == name)
                .ok_or_else(|| FaultSpecError::UnknownFault { name: name.to_string() })?;
            if seen.contains(&kind) {
                return Err(FaultSpecError::Duplicate { name: name.to_string() });
            }
            seen.push(kind);
            let rate: f64 =
                value.parse().ok().filter(|r: &f64| r.is_finite() && (0.0..=1.0).contains(r)).ok_or_else(
                    || FaultSpecError::BadRate { name: name.to_string(), value: value.to_string() },
                )?;
            spec = spec.with(kind, rate);
        }
        Ok(spec)
    }
}

impl fmt::Display for FaultSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.rates.iter().map(|(k, r)| format!("{k}={r}")).collect();
        f.write_str(&parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_full_example() {
        let s = "http500=0.05,slow=0.01,cut=0.02,token_expired=0.01,media_ip=0.01,media_expired=0.01,\
                 short_msg=0.001,bad_base64=0.001,unknown_ver=0.001,wrong_key=0.001,md5_mismatch=0.02";
        let spec: FaultSpec = s.parse().unwrap();
        assert_eq!(spec.kinds().count(), 11);
        assert_eq!(spec.rate(FaultKind::Http500), 0.05);
        assert_eq!(spec.rate(FaultKind::Md5Mismatch), 0.02);
        assert_eq!(spec.to_string().parse::<FaultSpec>().unwrap(), spec);
        assert_eq!(spec.record_faults_only().kinds().count(), 4);
    }

    #[test]
    fn empty_and_whitespace() {
        assert!("".parse::<FaultSpec>().unwrap().is_empty());
        assert!(" , ".parse::<FaultSpec>().unwrap().is_empty());
        assert_eq!(" cut = 0.5 ".parse::<FaultSpec>().unwrap().rate(FaultKind::Cut), 0.5);
        assert!("cut=0".parse::<FaultSpec>().unwrap().is_empty());
    }

    #[test]
    fn clear_errors() {
        let e = "http404=0.1".parse::<FaultSpec>().unwrap_err();
        assert!(matches!(e, FaultSpecError::UnknownFault { ref name } if name == "http404"));
        assert!(e.to_string().contains("http500"), "{e}");
        assert!(matches!("cut".parse::<FaultSpec>(), Err(FaultSpecError::Syntax { .. })));
        for bad in ["cut=abc", "cut=1.5", "cut=-0.1", "cut=NaN", "cut=inf", "cut="] {
            assert!(matches!(bad.parse::<FaultSpec>(), Err(FaultSpecError::BadRate { .. })), "{bad}");
        }
        assert!(matches!("cut=0.1,cut=0.2".parse::<FaultSpec>(), Err(FaultSpecError::Duplicate { .. })));
    }

    #[test]
    fn rolls_are_deterministic_and_follow_the_rate() {
        let spec = FaultSpec::none().with(FaultKind::Cut, 0.25);
        let hits = (0..10_000).filter(|i| spec.roll(7, FaultKind::Cut, *i, 0)).count();
        assert!((2_200..2_800).contains(&hits), "{hits}");
        let again = (0..10_000).filter(|i| spec.roll(7, FaultKind::Cut, *i, 0)).count();
        assert_eq!(hits, again);
        assert!(!spec.roll(7, FaultKind::Slow, 1, 0));
        assert!((0..100).all(|i| FaultSpec::none().with(FaultKind::Cut, 1.0).roll(1, FaultKind::Cut, i, 0)));
    }
}
