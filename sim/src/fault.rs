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
//! Observed with the real `libWeWorkFinanceSdk_C.so` through the simulator's proxy (CONNECT,
//! `timeout` = 2 s unless noted):
//!
//! | fault | where | server does | real SDK returns |
//! |---|---|---|---|
//! | `http500` | all endpoints | HTTP 500/502/503/504 with a small HTML body | **10001** (GetChatData and GetMediaData; also when it hits the token fetch) |
//! | `slow` | all endpoints | answers after `slow_ms` | **10001** after `timeout` s when `slow_ms` exceeds it; rc 0 otherwise |
//! | `cut` | all endpoints | sends the headers and about half the body, then closes without TLS close_notify | **10001** |
//! | `token_expired` | getchatdata | `{"errcode":42001,…}` with HTTP 200 | **0**: GetChatData does not parse its reply, the body comes back verbatim. The SDK keeps its cached token (it refreshes only at `time() + expires_in`), so the caller must check `errcode` in the body and retry |
//! | `media_ip` | getchatmediadata | `{"errcode":301042,…}` | **10009** |
//! | `media_expired` | getchatmediadata | `{"errcode":301048,…}` | **10010** |
//! | `md5_mismatch` | getchatmediadata, final chunk | one plaintext byte flipped before encryption | **0**: the file reassembles to the right length but its md5 differs from `md5sum` |
//! | `short_msg` | record | `encrypt_chat_msg` of 0..12 characters | `DecryptData` **aborts the process** (never call it; checked only in a child process) |
//! | `bad_base64` | record | `encrypt_random_key` with characters outside base64 | none: fails in the application's RSA step (base64 decode error) |
//! | `unknown_ver` | record | `publickey_ver` = 3, a key withheld from the manifest | none until the key is added: the application has no key of that version (its own "10007" situation); with the withheld key the record decrypts normally |
//! | `wrong_key` | record | `encrypt_random_key` made with a key nobody has | none: the application's RSA decryption fails (aws-lc-rs: `Unspecified`) |
//!
//! Other server-side answers, not faults: unknown corpid → `40013`, wrong secret → `40001`
//! (the SDK prints `WeWorkFinanceSdk:access:<body>` to stdout and returns 10001); an unknown or
//! expired access token → `40014` / `42001` in the body; a well-formed sdkfileid the server does
//! not know → errcode `40058`, which the SDK turns into 10002 (any non-zero errcode other than
//! 301042/301048).

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
}

impl FaultKind {
    /// Every kind, in spec order.
    pub const ALL: [FaultKind; 11] = [
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
        }
    }

    /// Whether the fault is baked into corpus records (as opposed to decided per request).
    pub fn is_record_fault(self) -> bool {
        matches!(
            self,
            FaultKind::ShortMsg | FaultKind::BadBase64 | FaultKind::UnknownVer | FaultKind::WrongKey
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
