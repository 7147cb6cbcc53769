//! The simulated archive: per corp, an ordered list of chat records (exact plaintext known) and
//! the media files they reference.
//!
//! Everything derives from the seed: the same [`crate::SimConfig`] gives byte-identical
//! plaintexts, `encrypt_chat_msg`s and media. Plaintexts are built eagerly at start (cheap); the
//! RSA/AES envelope of a record is built the first time it is served and then kept, so re-pulls
//! see identical bytes. Media bytes are never stored (see [`crate::media`]).

mod directory;
mod generate;
mod kinds;
pub(crate) mod vocab;

use std::sync::{Arc, OnceLock};

pub use kinds::MsgKind;

pub(crate) use generate::{
    CorpSpec, FIRST_VERSION, Generator, RECORD_FAULTS, SECOND_VERSION, WITHHELD_VERSION,
};

use crate::media::{MediaBlob, MediaFormat};

/// A deliberately broken record baked into the corpus (fault kinds `short_msg`, `bad_base64`,
/// `unknown_ver`, `wrong_key`; see [`crate::fault`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordFault {
    /// `encrypt_chat_msg` has fewer than 13 characters: the real `DecryptData` aborts the
    /// process on it (PROTOCOL.md §3). `encrypt_random_key` is valid.
    ShortMsg,
    /// `encrypt_random_key` is not valid base64.
    BadBase64,
    /// `publickey_ver` names a key the corp's manifest does not have; the key exists and is
    /// available from [`crate::Simulator::withheld_keys`], so the record becomes decryptable
    /// once that key is added.
    UnknownVer,
    /// `encrypt_random_key` was encrypted to an RSA key nobody has; `publickey_ver` is the
    /// normal one. Never decryptable.
    WrongKey,
    /// The key info inside `encrypt_key` asks for an `s_len` cut that overruns the message,
    /// followed by an empty protobuf group (`0x2b 0x2c`): the real `DecryptData` aborts on it
    /// (issue #9). Never decryptable; an archiver must refuse it before the SDK.
    GroupKeyInfo,
    /// A 400-character msgid (in the envelope and the plaintext). Decrypts normally.
    LongMsgid,
    /// The plaintext holds bytes that are not UTF-8 (`\xff\xfe` inside a string). Decrypts
    /// (rc 0) to exactly those bytes.
    InvalidUtf8,
    /// The plaintext holds a lone surrogate escape (`"\ud83d"`), which strict JSON parsers
    /// refuse. Decrypts normally.
    LoneSurrogate,
    /// A 20 MB text record (a 20,000,000-byte `x_pad` string field). Decrypts normally.
    HugeRecord,
    /// Served with `seq = 2^64-1` although it sits in the middle of the archive (its real
    /// position is [`Record::seq`]); decrypts normally. A client that moves its cursor to it
    /// never sees the records after it.
    ForgedSeq,
}

impl RecordFault {
    /// The fault kind that turns it on in a spec string.
    pub fn kind(self) -> crate::FaultKind {
        use crate::FaultKind as K;
        match self {
            RecordFault::ShortMsg => K::ShortMsg,
            RecordFault::BadBase64 => K::BadBase64,
            RecordFault::UnknownVer => K::UnknownVer,
            RecordFault::WrongKey => K::WrongKey,
            RecordFault::GroupKeyInfo => K::GroupKeyInfo,
            RecordFault::LongMsgid => K::LongMsgid,
            RecordFault::InvalidUtf8 => K::InvalidUtf8,
            RecordFault::LoneSurrogate => K::LoneSurrogate,
            RecordFault::HugeRecord => K::HugeRecord,
            RecordFault::ForgedSeq => K::ForgedSeq,
        }
    }

    /// Whether the record cannot be decrypted with the manifest's keys.
    pub fn undecryptable(self) -> bool {
        matches!(
            self,
            RecordFault::ShortMsg
                | RecordFault::BadBase64
                | RecordFault::UnknownVer
                | RecordFault::WrongKey
                | RecordFault::GroupKeyInfo
        )
    }
}

/// Where a media reference sits inside its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaLocation {
    /// The message payload itself (`image.sdkfileid`, `meeting_voice_call.sdkfileid`, …).
    Message,
    /// Inside the JSON string `mixed.item[index].content`.
    MixedItem(usize),
    /// Inside the JSON string `chatrecord.item[index].content`.
    ChatRecordItem(usize),
}

/// One downloadable file.
#[derive(Debug)]
pub struct MediaItem {
    /// What the message carries: `base64(MsgSdkFileId{fileid, authkey, aeskey})`.
    pub sdkfileid: String,
    /// The server-side id inside `sdkfileid` (the key of [`crate::SimStats::media_requests`]).
    pub fileid: String,
    /// The real md5 of the file, lowercase hex.
    pub md5: String,
    /// The `md5sum` the message states: `None` where the type has no such field
    /// (`meeting_voice_call`), `Some("")` for the few records that state it empty (as real
    /// data does), otherwise equal to [`MediaItem::md5`].
    pub md5sum: Option<String>,
    /// File size in bytes (what `filesize`/`voice_size`/`imagesize` state).
    pub size: u64,
    /// The message type or item type that references it: `image`, `voice`, `video`, `file`,
    /// `emotion`, `meeting_voice_call`, `voip_doc_share`, or a nested item type such as
    /// `ChatRecordImage`.
    pub item_type: String,
    /// The file name the message states, for types that have one.
    pub filename: Option<String>,
    /// Container format of the bytes.
    pub format: MediaFormat,
    /// `seq` of the referencing record.
    pub seq: u64,
    /// `msgid` of the referencing record.
    pub msgid: String,
    /// Nesting inside the message.
    pub location: MediaLocation,
    pub(crate) blob: MediaBlob,
    pub(crate) aeskey: [u8; 16],
    pub(crate) authkey: String,
}

impl MediaItem {
    /// The whole file (for tests; big files cost their size in memory).
    pub fn bytes(&self) -> Vec<u8> {
        let mut v = vec![0u8; self.size as usize];
        self.blob.read_at(0, &mut v);
        v
    }

    /// Bytes `offset..offset + len` of the file, clipped at its end.
    pub fn read_at(&self, offset: u64, out: &mut [u8]) -> usize {
        self.blob.read_at(offset, out)
    }

    /// Number of GetMediaData calls a clean download takes (512 KiB ciphertext chunks).
    pub fn chunks(&self) -> u64 {
        self.blob.cipher_len().div_ceil(crate::media::CHUNK)
    }
}

/// One chat record as the archive holds it.
#[derive(Debug)]
pub struct Record {
    /// Archive sequence number (strictly increasing, with occasional gaps).
    pub seq: u64,
    /// Message id, also inside the plaintext.
    pub msgid: String,
    /// The `publickey_ver` served with the record.
    pub publickey_ver: u32,
    /// Message type.
    pub kind: MsgKind,
    /// `send`, `recall` or `switch`.
    pub action: &'static str,
    /// `msgtime` (or the switch record's `time`), ms since the epoch.
    pub msgtime: i64,
    /// The exact bytes `DecryptData` yields: the message JSON. A few contain raw control
    /// characters inside strings and are therefore not strictly valid JSON.
    pub plaintext: Vec<u8>,
    /// `Some` for a deliberately broken record.
    pub fault: Option<RecordFault>,
    /// Media referenced by this record, top level and nested.
    pub media: Vec<Arc<MediaItem>>,
    pub(crate) served: OnceLock<Arc<str>>,
}

impl Record {
    /// The `msgtype` literal, `None` for switch records (which have no such field).
    pub fn msgtype(&self) -> Option<&'static str> {
        self.kind.msgtype()
    }

    /// Whether the plaintext contains raw control characters (invalid JSON on purpose).
    pub fn has_raw_controls(&self) -> bool {
        self.plaintext.iter().any(|&b| b < 0x20)
    }
}

/// The expected archive of one corp.
#[derive(Debug, Clone)]
pub struct CorpCorpus {
    /// The corp's id.
    pub corpid: String,
    /// Records in `seq` order.
    pub records: Vec<Arc<Record>>,
    /// Every media file of every record, in record order.
    pub media: Vec<Arc<MediaItem>>,
}

impl CorpCorpus {
    /// The record with this `seq`.
    pub fn record(&self, seq: u64) -> Option<&Arc<Record>> {
        self.records.binary_search_by_key(&seq, |r| r.seq).ok().map(|i| &self.records[i])
    }

    /// Records that decrypt with the manifest keys (no [`RecordFault`]).
    pub fn good_records(&self) -> impl Iterator<Item = &Arc<Record>> {
        self.records.iter().filter(|r| r.fault.is_none())
    }
}

/// A snapshot of every corp's expected archive.
#[derive(Debug, Clone)]
pub struct Corpus {
    /// One entry per corp, in manifest order.
    pub corps: Vec<CorpCorpus>,
}

impl Corpus {
    /// The corp with this id.
    pub fn corp(&self, corpid: &str) -> Option<&CorpCorpus> {
        self.corps.iter().find(|c| c.corpid == corpid)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn spec(seed: u64, initial: usize) -> CorpSpec {
        CorpSpec {
            seed,
            corp: 0,
            epoch_ms: 1_741_564_800_000,
            initial,
            rotate_at: Some(initial / 2),
            fault_rates: [0.01, 0.01, 0.01, 0.01, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
            big_video: None,
            vote_nested: false,
            chatrecord_ms: false,
        }
    }

    fn generate(seed: u64, n: usize) -> Vec<Arc<Record>> {
        let mut g = Generator::new(spec(seed, n));
        (0..n).map(|_| g.next_record()).collect()
    }

    /// Parses a plaintext, escaping the raw control characters some records carry on purpose.
    fn lenient(b: &[u8]) -> serde_json::Value {
        let mut s = String::new();
        for c in String::from_utf8(b.to_vec()).unwrap().chars() {
            if (c as u32) < 0x20 {
                s.push_str(&format!("\\u{:04x}", c as u32));
            } else {
                s.push(c);
            }
        }
        serde_json::from_str(&s).unwrap()
    }

    /// Every `sdkfileid` inside a JSON value, descending into `item[].content` strings.
    fn sdkfileids(v: &serde_json::Value, out: &mut Vec<(String, serde_json::Value)>) {
        match v {
            serde_json::Value::Object(m) => {
                if let Some(serde_json::Value::String(id)) = m.get("sdkfileid") {
                    out.push((id.clone(), v.clone()));
                }
                for (k, x) in m {
                    if k == "content"
                        && let serde_json::Value::String(s) = x
                        && let Ok(inner) = serde_json::from_str::<serde_json::Value>(s)
                        && inner.is_object()
                    {
                        sdkfileids(&inner, out);
                    }
                    sdkfileids(x, out);
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| sdkfileids(x, out)),
            _ => {}
        }
    }

    #[test]
    fn same_seed_same_bytes() {
        let a = generate(11, 400);
        let b = generate(11, 400);
        let c = generate(12, 400);
        assert!(
            a.iter().zip(&b).all(|(x, y)| x.plaintext == y.plaintext && x.seq == y.seq && x.fault == y.fault)
        );
        assert!(a.iter().zip(&c).filter(|(x, y)| x.plaintext == y.plaintext).count() < 5);
        let ma: Vec<_> =
            a.iter().flat_map(|r| r.media.iter().map(|m| (m.sdkfileid.clone(), m.md5.clone()))).collect();
        let mb: Vec<_> =
            b.iter().flat_map(|r| r.media.iter().map(|m| (m.sdkfileid.clone(), m.md5.clone()))).collect();
        assert_eq!(ma, mb);
    }

    #[test]
    fn every_kind_and_consistent_media_facts() {
        let records = generate(3, 3000);
        let first: BTreeSet<MsgKind> = records[..32].iter().map(|r| r.kind).collect();
        assert_eq!(first.len(), 32, "the coverage block has every kind");
        let mut seqs = records.iter().map(|r| r.seq);
        let mut prev = seqs.next().unwrap();
        for s in seqs {
            assert!(s > prev);
            prev = s;
        }
        let mut raw = 0;
        let mut suffixes = BTreeSet::new();
        let mut nested = 0;
        let mut empty_md5 = 0;
        for r in &records {
            raw += usize::from(r.has_raw_controls());
            let v = lenient(&r.plaintext);
            assert_eq!(v["msgid"], r.msgid.as_str());
            if r.kind == MsgKind::Switch {
                assert!(v.get("msgtype").is_none() && v.get("from").is_none());
                assert_eq!(v["action"], "switch");
                assert!(v["time"].is_i64() && v["user"].is_string());
                continue;
            }
            assert_eq!(v["msgtype"], r.kind.name());
            assert_eq!(v["action"], r.action);
            if let Some(k) = r.kind.payload_key() {
                assert!(v[k].is_object(), "{} lacks {k}: {v}", r.kind);
            } else {
                assert!(v["votetitle"].is_string() && v["voteitem"].is_array());
            }
            for s in ["_external", "_updown_stream"] {
                if r.msgid.ends_with(s) {
                    suffixes.insert(s);
                }
            }
            let mut found = Vec::new();
            sdkfileids(&v, &mut found);
            found.retain(|(id, _)| id != "not-media");
            assert_eq!(found.len(), r.media.len(), "{}: {v}", r.kind);
            for (m, (id, facts)) in r.media.iter().zip(&found) {
                assert_eq!(&m.sdkfileid, id);
                assert_eq!(m.seq, r.seq);
                let size = ["filesize", "voice_size", "imagesize"].iter().find_map(|k| facts[k].as_u64());
                if m.item_type != "meeting_voice_call" {
                    assert_eq!(size, Some(m.size), "{facts}");
                    let stated = facts["md5sum"].as_str().unwrap();
                    assert_eq!(Some(stated), m.md5sum.as_deref());
                    empty_md5 += usize::from(stated.is_empty());
                    assert!(stated.is_empty() || stated == m.md5);
                } else {
                    assert!(facts.get("md5sum").is_none() && m.md5sum.is_none());
                }
                nested += usize::from(m.location != MediaLocation::Message);
            }
        }
        assert!(raw >= 1, "raw control characters present");
        assert!(raw < records.len() / 20);
        assert_eq!(suffixes.len(), 2);
        assert!(nested > 10, "{nested} nested media");
        assert!(empty_md5 >= 1);
        let media: Vec<_> = records.iter().flat_map(|r| r.media.iter()).collect();
        assert!(media.iter().any(|m| m.chunks() > 1), "some files span several chunks");
        assert!(media.iter().all(|m| m.size <= 1_500_000));
        let names: Vec<_> = media.iter().filter_map(|m| m.filename.as_deref()).collect();
        assert!(names.iter().any(|n| n.contains("..")), "hostile names");
        assert!(names.iter().any(|n| n.len() == 300), "300-byte names");
        for f in
            [RecordFault::ShortMsg, RecordFault::BadBase64, RecordFault::UnknownVer, RecordFault::WrongKey]
        {
            assert!(records.iter().any(|r| r.fault == Some(f)), "{f:?} present");
        }
        let versions: BTreeSet<u32> = records.iter().map(|r| r.publickey_ver).collect();
        assert_eq!(versions, BTreeSet::from([1, 2, 3]));
    }

    #[test]
    fn voice_is_amr_and_md5_is_real() {
        let records = generate(5, 500);
        let voice = records.iter().flat_map(|r| r.media.iter()).find(|m| m.item_type == "voice").unwrap();
        let bytes = voice.bytes();
        assert!(bytes.starts_with(b"#!AMR\n"));
        assert_eq!((bytes.len() - 6) % 32, 0);
        use md5::Digest as _;
        assert_eq!(hex::encode(md5::Md5::digest(&bytes)), voice.md5);
    }
}
