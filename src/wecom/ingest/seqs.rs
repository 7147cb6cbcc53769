//! Which seq a batch may move the cursor to.
//!
//! The cursor is passed to GetChatData as is and only ever grows, so a single
//! forged item with `seq = 2^64-1` would end archiving for good: every later
//! call asks for records after it and gets none (issue #9). The rule:
//!
//! - The seqs of a batch are walked in ascending order from an anchor: the
//!   corp's cursor when it has history, else the batch's smallest seq (a new
//!   corp's first seq can be anything).
//! - Each step may be at most [`MAX_SEQ_STEP`] (1,000,000: a thousand times the
//!   largest batch; real seqs grow by one per record, with gaps where records
//!   expired). The cursor moves to the last seq reached this way.
//! - A seq past the first larger jump, or above [`MAX_PLAUSIBLE_SEQ`] (2^63), is
//!   implausible: its record is stored like any other, the corp is alarmed with
//!   its msgid, and the cursor stays below it, so the records it would have
//!   skipped are still pulled.
//! - Items without a seq or msgid are stored (marked `incomplete`) and alarmed;
//!   they never move the cursor.

use super::super::envelope::ChatItem;

/// The largest step from one seq to the next that still moves the cursor.
pub const MAX_SEQ_STEP: u64 = 1_000_000;

/// No real seq comes near this; anything above it is treated as forged.
pub const MAX_PLAUSIBLE_SEQ: u64 = 1 << 63;

/// What a batch's seqs allow.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SeqPlan {
    /// Where the cursor may move (never below the current one).
    pub last_seq: u64,
    /// One line per item that is stored but needs a human: implausible seqs,
    /// missing seqs or msgids.
    pub anomalies: Vec<String>,
}

fn name(item: &ChatItem) -> String {
    match &item.msgid {
        Some(m) => format!("msgid {}", m.chars().take(200).collect::<String>()),
        None => "an item without msgid".to_owned(),
    }
}

/// Applies the rule above to a batch pulled after `cursor`.
pub fn plan(cursor: u64, items: &[ChatItem]) -> SeqPlan {
    let mut anomalies = Vec::new();
    let mut seqs: Vec<u64> = items.iter().filter_map(|i| i.seq).filter(|&s| s > cursor).collect();
    seqs.sort_unstable();
    let mut last = cursor;
    let mut anchor = if cursor > 0 { Some(cursor) } else { None };
    for s in seqs {
        if s > MAX_PLAUSIBLE_SEQ {
            break;
        }
        match anchor {
            Some(prev) if s - prev > MAX_SEQ_STEP => break,
            _ => {
                anchor = Some(s);
                last = s;
            }
        }
    }
    for item in items {
        match item.seq {
            None => anomalies.push(format!("{} has no seq: stored as incomplete", name(item))),
            Some(s) if s > last => anomalies.push(format!(
                "{} has implausible seq {s} (cursor {cursor}, batch reaches {last}): stored, cursor not moved past it",
                name(item)
            )),
            Some(_) => {}
        }
        if item.msgid.is_none() && item.seq.is_some() {
            anomalies.push(format!(
                "the item with seq {} has no msgid: stored as incomplete",
                item.seq.unwrap_or(0)
            ));
        }
    }
    SeqPlan { last_seq: last, anomalies }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(seq: Option<u64>, msgid: Option<&str>) -> ChatItem {
        ChatItem {
            seq,
            msgid: msgid.map(str::to_owned),
            publickey_ver: Some(1),
            encrypt_random_key: Some("k".into()),
            encrypt_chat_msg: Some("m".into()),
            raw: serde_json::Value::Null,
        }
    }

    #[test]
    fn a_forged_seq_does_not_move_the_cursor() {
        let items =
            [item(Some(11), Some("a")), item(Some(u64::MAX), Some("forged")), item(Some(12), Some("b"))];
        let p = plan(10, &items);
        assert_eq!(p.last_seq, 12);
        assert_eq!(p.anomalies.len(), 1);
        assert!(p.anomalies[0].contains("forged") && p.anomalies[0].contains("18446744073709551615"));
        // Alone in its batch: the cursor stays.
        assert_eq!(plan(10, &items[1..2]).last_seq, 10);
        // A new corp anchors on its first seq, but not on a forged one.
        assert_eq!(plan(0, &[item(Some(5_000_000_000), Some("a"))]).last_seq, 5_000_000_000);
        assert_eq!(plan(0, &items).last_seq, 12);
        assert_eq!(plan(0, &items[1..2]).last_seq, 0);
    }

    #[test]
    fn normal_gaps_move_the_cursor() {
        let items = [item(Some(100), Some("a")), item(Some(100 + MAX_SEQ_STEP), Some("b"))];
        assert_eq!(plan(99, &items), SeqPlan { last_seq: 100 + MAX_SEQ_STEP, anomalies: vec![] });
        // Old seqs (already behind the cursor) neither move it nor alarm.
        assert_eq!(plan(500, &[item(Some(3), Some("a"))]).last_seq, 500);
    }

    #[test]
    fn missing_fields_are_reported() {
        let p = plan(1, &[item(None, Some("a")), item(Some(2), None)]);
        assert_eq!(p.last_seq, 2);
        assert_eq!(p.anomalies.len(), 2, "{:?}", p.anomalies);
    }
}
