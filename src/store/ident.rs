//! Corp ids, validated once, so a table name derived from one is always safe.

use std::fmt;

/// The longest corp id we accept: `message_` + id must fit MySQL's 64-character
/// identifier limit.
pub const MAX_CORPID_LEN: usize = 64 - "message_".len();

/// A corp id that is a plain identifier (ASCII letters, digits, `_`; 1–56
/// characters). Real ids look like `ww0123456789abcdef` (or older `wx…`).
///
/// Constructing one is the only way to get a message table name, so a hostile
/// id (``ww1`; DROP TABLE corplist; --``) can never reach SQL as an identifier.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CorpId(String);

/// Why a corp id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("corp id {shown:?} is not a plain identifier: {why}")]
pub struct InvalidCorpId {
    shown: String,
    why: &'static str,
}

impl CorpId {
    /// Validates `id`.
    pub fn new(id: &str) -> Result<CorpId, InvalidCorpId> {
        let err = |why| InvalidCorpId { shown: id.chars().take(80).collect(), why };
        if id.is_empty() {
            return Err(err("it is empty"));
        }
        if id.len() > MAX_CORPID_LEN {
            return Err(err("it is longer than 56 characters"));
        }
        if !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(err("only ASCII letters, digits and '_' are allowed"));
        }
        Ok(CorpId(id.to_owned()))
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The quoted name of this corp's message table, `` `message_<corpid>` ``.
    pub fn message_table(&self) -> String {
        // Safe to splice: the id is [A-Za-z0-9_]+ by construction.
        format!("`message_{}`", self.0)
    }
}

impl fmt::Display for CorpId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for CorpId {
    type Err = InvalidCorpId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CorpId::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_real_ids() {
        for id in ["ww0123456789abcdef", "wxABC123", "corp_1"] {
            assert_eq!(CorpId::new(id).unwrap().message_table(), format!("`message_{id}`"));
        }
    }

    #[test]
    fn refuses_hostile_ids() {
        for id in
            ["ww1`; DROP TABLE corplist; --", "", "a b", "ww-1", "../x", "ww1\0", "企业", &"a".repeat(57)]
        {
            assert!(CorpId::new(id).is_err(), "{id:?}");
        }
        let e = CorpId::new("ww1`; DROP TABLE corplist; --").unwrap_err();
        assert!(e.to_string().contains("not a plain identifier"), "{e}");
    }
}
