//! `--faults SPEC`: random faults of the fake platform, deterministic under the seed.
//!
//! SPEC is `kind=rate,…` with rates in `[0, 1]`, e.g.
//! `throttle=0.05,export_slow=0.2,export_fail=0.1,drop=0.02,token_expiry=0.01,url_expiry=0.3`. Each decision
//! draws from its own stream (kind, n-th decision of that kind), so a run with the same seed and
//! the same sequence of calls sees the same faults.

use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::seed::{mix, unit};

/// One kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FeishuFaultKind {
    /// A 429 burst: the API answers 99991400 for the rest of the current second.
    Throttle,
    /// An export task takes ten times as long.
    ExportSlow,
    /// An export task ends with job_status 3 (internal error) or 108 (timeout).
    ExportFail,
    /// The connection is closed without an answer.
    Drop,
    /// A valid access token stops working early (99991663 / 99991677).
    TokenExpiry,
    /// A Minutes media `download_url` is handed out already past its day (as if the client
    /// had held it that long): its download is refused like any expired pre-signed URL.
    UrlExpiry,
}

impl FeishuFaultKind {
    const ALL: [FeishuFaultKind; 6] = [
        FeishuFaultKind::Throttle,
        FeishuFaultKind::ExportSlow,
        FeishuFaultKind::ExportFail,
        FeishuFaultKind::Drop,
        FeishuFaultKind::TokenExpiry,
        FeishuFaultKind::UrlExpiry,
    ];

    /// The name used in SPEC.
    pub fn name(self) -> &'static str {
        match self {
            FeishuFaultKind::Throttle => "throttle",
            FeishuFaultKind::ExportSlow => "export_slow",
            FeishuFaultKind::ExportFail => "export_fail",
            FeishuFaultKind::Drop => "drop",
            FeishuFaultKind::TokenExpiry => "token_expiry",
            FeishuFaultKind::UrlExpiry => "url_expiry",
        }
    }

    fn index(self) -> usize {
        Self::ALL.iter().position(|k| *k == self).unwrap_or(0)
    }
}

/// A SPEC that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FeishuFaultsError {
    /// Not `kind=rate`.
    #[error("fault {0:?} is not kind=rate")]
    Syntax(String),
    /// An unknown kind.
    #[error(
        "unknown fault kind {0:?} (known: throttle, export_slow, export_fail, drop, token_expiry, url_expiry)"
    )]
    Kind(String),
    /// A rate outside `[0, 1]`.
    #[error("fault rate {0:?} is not a number in [0, 1]")]
    Rate(String),
}

/// Fault rates plus the per-kind decision counters.
#[derive(Debug, Default)]
pub struct FeishuFaults {
    rates: [f64; 6],
    counters: [AtomicU64; 6],
}

impl Clone for FeishuFaults {
    fn clone(&self) -> Self {
        FeishuFaults { rates: self.rates, counters: Default::default() }
    }
}

impl FromStr for FeishuFaults {
    type Err = FeishuFaultsError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut faults = FeishuFaults::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (kind, rate) = part.split_once('=').ok_or_else(|| FeishuFaultsError::Syntax(part.into()))?;
            let kind = FeishuFaultKind::ALL
                .into_iter()
                .find(|k| k.name() == kind.trim())
                .ok_or_else(|| FeishuFaultsError::Kind(kind.into()))?;
            let rate: f64 = rate.trim().parse().map_err(|_| FeishuFaultsError::Rate(rate.into()))?;
            if !(0.0..=1.0).contains(&rate) {
                return Err(FeishuFaultsError::Rate(rate.to_string()));
            }
            faults.rates[kind.index()] = rate;
        }
        Ok(faults)
    }
}

impl FeishuFaults {
    /// The configured rate of `kind`.
    pub fn rate(&self, kind: FeishuFaultKind) -> f64 {
        self.rates[kind.index()]
    }

    /// Whether the next decision of `kind` is a fault (deterministic under `seed`).
    pub fn roll(&self, seed: u64, kind: FeishuFaultKind) -> bool {
        let rate = self.rates[kind.index()];
        if rate <= 0.0 {
            return false;
        }
        let n = self.counters[kind.index()].fetch_add(1, Ordering::Relaxed);
        unit(mix(&[seed, 0xFE15, kind.index() as u64, n])) < rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rolls_deterministically() {
        let f: FeishuFaults = "throttle=0.5, export_fail=1, url_expiry=0.25".parse().unwrap();
        assert_eq!(f.rate(FeishuFaultKind::Throttle), 0.5);
        assert_eq!(f.rate(FeishuFaultKind::UrlExpiry), 0.25);
        assert_eq!(f.rate(FeishuFaultKind::Drop), 0.0);
        assert!(f.roll(1, FeishuFaultKind::ExportFail));
        assert!(!f.roll(1, FeishuFaultKind::Drop));
        let a: Vec<bool> = (0..64).map(|_| f.roll(7, FeishuFaultKind::Throttle)).collect();
        let g = f.clone();
        let b: Vec<bool> = (0..64).map(|_| g.roll(7, FeishuFaultKind::Throttle)).collect();
        assert_eq!(a, b);
        assert!(a.iter().any(|x| *x) && a.iter().any(|x| !*x));
        assert!("bogus=1".parse::<FeishuFaults>().is_err());
        assert!("throttle=2".parse::<FeishuFaults>().is_err());
        assert!("throttle".parse::<FeishuFaults>().is_err());
    }
}
