//! `verify`: recompute a corp's hash chain and compare it with the stored rows.
//!
//! The chain's `insert` links are in the order the rows were stored (row id
//! order), so one pass walks both side by side: every link must follow its
//! predecessor, and every row must be the next link's record with the hash the
//! chain says (or, when `redecrypt` rewrote it, the hash of its latest
//! `redecrypt` link). The first difference is named: a row altered, deleted,
//! inserted, or given another seq.

use std::collections::VecDeque;

use crate::archive::chain::{GENESIS, LinkKind};
use crate::store::chain::{ChainHead, StoredRecord};
use crate::store::{CorpId, Store, StoreError};

/// Rows and links read per query.
const PAGE: u32 = 2000;

/// The first thing `verify` found wrong.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "finding", rename_all = "snake_case")]
pub enum Finding {
    /// The stored record differs from what was chained.
    Altered {
        /// Its msgid.
        msgid: String,
        /// Its seq.
        seq: u64,
    },
    /// A chained record is no longer stored.
    Deleted {
        /// Its msgid.
        msgid: String,
        /// Its seq when chained.
        seq: u64,
    },
    /// A stored record was never chained.
    Inserted {
        /// Its msgid.
        msgid: String,
        /// Its seq.
        seq: u64,
    },
    /// A record carries another seq than when it was chained.
    Reordered {
        /// Its msgid.
        msgid: String,
        /// The seq it was chained with.
        chained_seq: u64,
        /// The seq stored now.
        stored_seq: u64,
    },
    /// Stored rows are not in the order they were chained (a row deleted and stored again).
    OutOfOrder {
        /// The msgid the chain expects here.
        msgid: String,
        /// Its seq.
        seq: u64,
    },
    /// The chain itself was edited: this link does not follow its predecessor.
    ChainBroken {
        /// The link's position.
        pos: u64,
    },
    /// The head row does not match the last link (links removed at the end?).
    HeadMismatch {
        /// Position in `chain_heads`.
        head_pos: u64,
        /// Position of the last link.
        last_pos: u64,
    },
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Finding::Altered { msgid, seq } => write!(f, "record seq {seq} msgid {msgid} was altered"),
            Finding::Deleted { msgid, seq } => write!(f, "record seq {seq} msgid {msgid} was deleted"),
            Finding::Inserted { msgid, seq } => {
                write!(f, "record seq {seq} msgid {msgid} was inserted (not in the chain)")
            }
            Finding::Reordered { msgid, chained_seq, stored_seq } => {
                write!(f, "record msgid {msgid} was moved from seq {chained_seq} to seq {stored_seq}")
            }
            Finding::OutOfOrder { msgid, seq } => {
                write!(
                    f,
                    "record seq {seq} msgid {msgid} is not where it was stored (deleted and stored again?)"
                )
            }
            Finding::ChainBroken { pos } => write!(f, "chain link {pos} was altered, removed or inserted"),
            Finding::HeadMismatch { head_pos, last_pos } => {
                write!(f, "chain head says {head_pos} links but the chain ends at {last_pos}")
            }
        }
    }
}

/// What one corp's verification found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct VerifyReport {
    /// The corp.
    pub corpid: String,
    /// Links recomputed.
    pub links: u64,
    /// Rows compared.
    pub records: u64,
    /// The head as stored.
    pub head: ChainHead,
    /// The first problem, if any.
    pub finding: Option<Finding>,
}

/// Rows in insertion order, read a page at a time.
struct Rows<'a> {
    store: &'a Store,
    corpid: &'a CorpId,
    after_id: u64,
    buf: VecDeque<StoredRecord>,
    done: bool,
}

impl Rows<'_> {
    async fn next(&mut self) -> Result<Option<StoredRecord>, StoreError> {
        if self.buf.is_empty() && !self.done {
            let page = self.store.records_after(self.corpid, self.after_id, PAGE).await?;
            self.done = page.len() < PAGE as usize;
            if let Some(last) = page.last() {
                self.after_id = last.id;
            }
            self.buf.extend(page);
        }
        Ok(self.buf.pop_front())
    }
}

/// Verifies one corp from the first record with seq >= `from_seq` (0: all).
pub async fn verify_corp(store: &Store, corpid: &CorpId, from_seq: u64) -> Result<VerifyReport, StoreError> {
    let head = store.chain_head(corpid).await?;
    let mut report =
        VerifyReport { corpid: corpid.to_string(), links: 0, records: 0, head: head.clone(), finding: None };
    let redecrypted = store.chain_redecrypted(corpid).await?;
    let (mut prev_pos, mut prev_hash, after_id) = if from_seq == 0 {
        (0, GENESIS.to_owned(), 0)
    } else {
        match store.chain_first_at_seq(corpid, from_seq).await? {
            None => (head.pos, head.head.clone(), u64::MAX),
            Some(first) => {
                let prev = match first.pos {
                    1 => GENESIS.to_owned(),
                    p => match store.chain_link(corpid, p - 1).await? {
                        Some(l) => l.link_hash,
                        None => {
                            report.finding = Some(Finding::ChainBroken { pos: p - 1 });
                            return Ok(report);
                        }
                    },
                };
                let Some(row) = store.record_by_msgid(corpid, &first.msgid).await? else {
                    report.finding = Some(Finding::Deleted { msgid: first.msgid, seq: first.seq });
                    return Ok(report);
                };
                (first.pos - 1, prev, row.id - 1)
            }
        }
    };
    let mut rows = Rows { store, corpid, after_id, buf: VecDeque::new(), done: after_id == u64::MAX };
    loop {
        let links = store.chain_links(corpid, prev_pos, PAGE).await?;
        if links.is_empty() {
            break;
        }
        for link in links {
            report.links += 1;
            let kind = LinkKind::parse(&link.kind);
            if link.pos != prev_pos + 1 || kind.is_none() || !link.is_valid_after(&prev_hash) {
                report.finding = Some(Finding::ChainBroken { pos: prev_pos + 1 });
                return Ok(report);
            }
            prev_pos = link.pos;
            prev_hash.clone_from(&link.link_hash);
            if kind != Some(LinkKind::Insert) {
                continue;
            }
            let Some(row) = rows.next().await? else {
                report.finding = Some(Finding::Deleted { msgid: link.msgid, seq: link.seq });
                return Ok(report);
            };
            report.records += 1;
            if row.msgid != link.msgid {
                report.finding = Some(if !store.chain_has(corpid, &row.msgid).await? {
                    Finding::Inserted { msgid: row.msgid, seq: row.seq }
                } else if store.record_by_msgid(corpid, &link.msgid).await?.is_none() {
                    Finding::Deleted { msgid: link.msgid, seq: link.seq }
                } else {
                    Finding::OutOfOrder { msgid: link.msgid, seq: link.seq }
                });
                return Ok(report);
            }
            if row.seq != link.seq {
                report.finding =
                    Some(Finding::Reordered { msgid: row.msgid, chained_seq: link.seq, stored_seq: row.seq });
                return Ok(report);
            }
            let expected = redecrypted.get(&row.msgid).unwrap_or(&link.record_hash);
            if &row.view().hash() != expected {
                report.finding = Some(Finding::Altered { msgid: row.msgid, seq: row.seq });
                return Ok(report);
            }
        }
    }
    if let Some(row) = rows.next().await? {
        report.finding = Some(Finding::Inserted { msgid: row.msgid, seq: row.seq });
        return Ok(report);
    }
    if head.pos != prev_pos || head.head != prev_hash {
        report.finding = Some(Finding::HeadMismatch { head_pos: head.pos, last_pos: prev_pos });
    }
    Ok(report)
}
