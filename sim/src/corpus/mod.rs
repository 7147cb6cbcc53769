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

pub(crate) use generate::{CorpSpec, Generator};

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
        self.records
            .binary_search_by_key(&seq, |r| r.seq)
            .ok()
            .map(|i| &self.records[i])
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
