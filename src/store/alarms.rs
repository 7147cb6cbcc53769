//! `corp_alarms`: what needs a human, per corp and per cause.
//!
//! Each cause has its own row, raised and cleared only by what detects it: a
//! media IP refusal clearing on the next download must not clear a quarantined
//! record's alarm, and the stall watchdog's recovery must not clear either.
//! `corp_state.alarm` is kept as the summary every reader already uses
//! (`status`, `/metrics`, the browser): the raised kinds in [`AlarmKind::ALL`]
//! order, joined by `" | "`. It is rewritten in the same transaction as the
//! change, after locking the corp's state row, so two causes changing at once
//! cannot leave a summary that misses one.

use mysql_async::TxOpts;
use mysql_async::prelude::*;

use super::{CorpId, Store, StoreError};

/// Width of `corp_alarms.alarm` and `corp_state.alarm` (characters).
const ALARM_CHARS: usize = 1024;

/// What raised an alarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AlarmKind {
    /// The corp's worker fails before pulling (key, secret, DDL).
    Setup,
    /// No successful pull for the configured time.
    Stall,
    /// Records stored but needing attention (forged seqs, missing fields) or
    /// kept in quarantine.
    Records,
    /// Media refused (the corp's IP is not allowed).
    Media,
}

impl AlarmKind {
    /// Every kind, in summary order (what stops archiving first).
    pub const ALL: [AlarmKind; 4] =
        [AlarmKind::Setup, AlarmKind::Stall, AlarmKind::Records, AlarmKind::Media];

    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            AlarmKind::Setup => "setup",
            AlarmKind::Stall => "stall",
            AlarmKind::Records => "records",
            AlarmKind::Media => "media",
        }
    }

    /// Parses the stored text.
    pub fn parse(s: &str) -> Option<AlarmKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl std::fmt::Display for AlarmKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The summary of a corp's raised alarms (`corp_state.alarm`): in kind order,
/// joined by `" | "`, cut to the column's width. Unknown kinds (written by a
/// newer version) come last, so nothing raised is hidden.
pub fn summary(alarms: &[(String, String)]) -> String {
    let mut sorted: Vec<(String, String)> =
        alarms.iter().filter(|(_, text)| !text.is_empty()).cloned().collect();
    sort_by_kind(&mut sorted);
    let joined = sorted.iter().map(|(_, text)| text.as_str()).collect::<Vec<_>>().join(" | ");
    clip(&joined)
}

/// `(kind, text)` rows in [`AlarmKind::ALL`] order; unknown kinds last, by name.
fn sort_by_kind(rows: &mut [(String, String)]) {
    let rank = |kind: &str| AlarmKind::parse(kind).map_or(AlarmKind::ALL.len(), |k| k as usize);
    rows.sort_by(|a, b| rank(&a.0).cmp(&rank(&b.0)).then_with(|| a.0.cmp(&b.0)));
}

fn clip(s: &str) -> String {
    s.chars().take(ALARM_CHARS).collect()
}

impl Store {
    /// Raises (or updates the text of) the corp's alarm of `kind`, for a corp
    /// that may have no state row yet (a corp that fails before its first pull
    /// still shows in `status` and `/metrics`).
    pub async fn raise_alarm(&self, corpid: &CorpId, kind: AlarmKind, text: &str) -> Result<(), StoreError> {
        self.ensure_state(corpid).await?;
        self.change_alarm(corpid, kind, Some(&clip(text))).await
    }

    /// Clears the corp's alarm of `kind` (the others stay).
    pub async fn clear_alarm(&self, corpid: &CorpId, kind: AlarmKind) -> Result<(), StoreError> {
        self.change_alarm(corpid, kind, None).await
    }

    /// The corp's raised alarms: `(kind, text)` in summary order.
    pub async fn alarms(&self, corpid: &CorpId) -> Result<Vec<(String, String)>, StoreError> {
        let mut conn = self.conn().await?;
        let mut rows: Vec<(String, String)> =
            conn.exec("SELECT kind, alarm FROM corp_alarms WHERE corpid = ?", (corpid.as_str(),)).await?;
        sort_by_kind(&mut rows);
        Ok(rows)
    }

    /// Sets (`Some`) or deletes (`None`) one alarm and rewrites the summary, in
    /// one transaction that first locks the corp's state row: changes to one
    /// corp's alarms are serialised, and the summary is computed from what is
    /// committed, with locking reads.
    async fn change_alarm(
        &self,
        corpid: &CorpId,
        kind: AlarmKind,
        text: Option<&str>,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        let mut tx = conn.start_transaction(TxOpts::default()).await?;
        let locked: Option<String> = tx
            .exec_first("SELECT corpid FROM corp_state WHERE corpid = ? FOR UPDATE", (corpid.as_str(),))
            .await?;
        match text {
            Some(text) => {
                tx.exec_drop(
                    "INSERT INTO corp_alarms (corpid, kind, alarm) VALUES (?, ?, ?)
                     ON DUPLICATE KEY UPDATE alarm = VALUES(alarm)",
                    (corpid.as_str(), kind.as_str(), text),
                )
                .await?
            }
            None => {
                tx.exec_drop(
                    "DELETE FROM corp_alarms WHERE corpid = ? AND kind = ?",
                    (corpid.as_str(), kind.as_str()),
                )
                .await?
            }
        }
        let rows: Vec<(String, String)> = tx
            .exec("SELECT kind, alarm FROM corp_alarms WHERE corpid = ? FOR UPDATE", (corpid.as_str(),))
            .await?;
        if locked.is_some() {
            tx.exec_drop(
                "UPDATE corp_state SET alarm = ? WHERE corpid = ?",
                (summary(&rows), corpid.as_str()),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(kind: &str, text: &str) -> (String, String) {
        (kind.to_owned(), text.to_owned())
    }

    #[test]
    fn kinds_round_trip() {
        for k in AlarmKind::ALL {
            assert_eq!(AlarmKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(AlarmKind::parse("nope"), None);
    }

    #[test]
    fn the_summary_shows_every_alarm_in_kind_order() {
        assert_eq!(summary(&[]), "");
        assert_eq!(summary(&[a("media", "media: ip refused")]), "media: ip refused");
        let all = [
            a("media", "media: ip refused"),
            a("records", "quarantined m1"),
            a("future", "from a newer version"),
            a("setup", "setup: no key"),
        ];
        assert_eq!(
            summary(&all),
            "setup: no key | quarantined m1 | media: ip refused | from a newer version"
        );
        // Empty texts are not alarms.
        assert_eq!(summary(&[a("stall", ""), a("media", "m")]), "m");
    }

    #[test]
    fn the_summary_fits_its_column() {
        let long = "x".repeat(900);
        let s = summary(&[a("setup", &long), a("media", &long)]);
        assert_eq!(s.chars().count(), ALARM_CHARS);
        assert!(s.starts_with(&long), "the first kind is kept whole");
    }
}
