//! Record generation: one [`Generator`] per corp produces records in `seq` order, each from its
//! own seeded stream, so the n-th record is the same whether it was generated at start or
//! appended later in live mode.

use std::collections::VecDeque;
use std::sync::{Arc, OnceLock};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use rand::{Rng, RngCore};

use super::directory::{Conv, Directory};
use super::vocab::{self, pick};
use super::{MediaItem, MediaLocation, MsgKind, Record, RecordFault};
use crate::json::J;
use crate::media::{MediaBlob, MediaFormat};
use crate::proto::MsgSdkFileId;
use crate::seed::{mix, rng_for, tag, unit};

/// Key version used before the rotation point.
pub(crate) const FIRST_VERSION: u32 = 1;
/// Key version used from the rotation point on.
pub(crate) const SECOND_VERSION: u32 = 2;
/// The version of the key withheld from the manifest (`unknown_ver` records).
pub(crate) const WITHHELD_VERSION: u32 = 3;

/// Record fault kinds in the order they are rolled.
pub(crate) const RECORD_FAULTS: [RecordFault; 10] = [
    RecordFault::ShortMsg,
    RecordFault::BadBase64,
    RecordFault::UnknownVer,
    RecordFault::WrongKey,
    RecordFault::GroupKeyInfo,
    RecordFault::LongMsgid,
    RecordFault::InvalidUtf8,
    RecordFault::LoneSurrogate,
    RecordFault::HugeRecord,
    RecordFault::ForgedSeq,
];

/// Bytes of padding in a [`RecordFault::HugeRecord`] plaintext.
pub(crate) const HUGE_RECORD_PAD: usize = 20_000_000;

/// Reshapes a generated plaintext for the plaintext-level hostile faults: a field is added
/// before the closing brace, or the msgid replaced. Returns the new plaintext and msgid.
fn hostile_plaintext(fault: Option<RecordFault>, plain: Vec<u8>, msgid: String) -> (Vec<u8>, String) {
    let extra: Vec<u8> = match fault {
        Some(RecordFault::InvalidUtf8) => b",\"x_note\":\"bad \xff\xfe bytes\"".to_vec(),
        Some(RecordFault::LoneSurrogate) => b",\"x_note\":\"half \\ud83d a pair\"".to_vec(),
        Some(RecordFault::HugeRecord) => {
            let mut e = b",\"x_pad\":\"".to_vec();
            e.extend(std::iter::repeat_n(b'a', HUGE_RECORD_PAD));
            e.push(b'"');
            e
        }
        Some(RecordFault::LongMsgid) => {
            let mut long = msgid.clone();
            long.push('_');
            while long.len() < 400 {
                long.push('L');
            }
            let from = format!("\"msgid\":\"{msgid}\"");
            let to = format!("\"msgid\":\"{long}\"");
            let text = String::from_utf8(plain).expect("generated plaintexts are UTF-8");
            return (text.replacen(&from, &to, 1).into_bytes(), long);
        }
        _ => return (plain, msgid),
    };
    let mut plain = plain;
    match plain.iter().rposition(|&b| b == b'}') {
        Some(end) => {
            plain.splice(end..end, extra);
        }
        None => plain.extend(extra),
    }
    (plain, msgid)
}

/// The length of the block at the start of each corpus in which every kind appears once.
const COVERAGE: usize = MsgKind::ALL.len();

/// Everything that shapes one corp's records.
#[derive(Debug, Clone)]
pub(crate) struct CorpSpec {
    pub seed: u64,
    pub corp: usize,
    pub epoch_ms: i64,
    /// Records generated at start (the configured `messages`).
    pub initial: usize,
    /// First record index served with [`SECOND_VERSION`].
    pub rotate_at: Option<usize>,
    /// Rates of the record faults, in [`RECORD_FAULTS`] order.
    pub fault_rates: [f64; RECORD_FAULTS.len()],
    /// Size of the one big video (corp 0 only).
    pub big_video: Option<u64>,
    /// Put vote fields under a `vote` object instead of top level (FORMAT.md §4: sources disagree).
    pub vote_nested: bool,
    /// Write `chatrecord.item[].msgtime` in ms instead of seconds (FORMAT.md §4).
    pub chatrecord_ms: bool,
}

pub(crate) struct Generator {
    spec: CorpSpec,
    dir: Arc<Directory>,
    index: usize,
    next_seq: u64,
    last_time: i64,
    recent: VecDeque<String>,
    media_counter: u64,
    coverage: Vec<MsgKind>,
    forced: Vec<(usize, RecordFault)>,
    big_video_at: Option<usize>,
    kinds: Vec<(MsgKind, u32)>,
    total_weight: u32,
}

/// What the message says about a file's md5.
enum Stated {
    Md5,
    None,
}

impl Generator {
    pub fn new(spec: CorpSpec) -> Self {
        let mut rng = rng_for(&[spec.seed, tag::CORP, spec.corp as u64, 1]);
        let dir = Arc::new(Directory::generate(&mut rng));
        let mut coverage = MsgKind::ALL.to_vec();
        for i in (1..coverage.len()).rev() {
            coverage.swap(i, rng.random_range(0..=i));
        }
        let big_video_at = match spec.big_video {
            Some(_) if spec.corp == 0 && spec.initial > 0 => {
                if spec.initial >= 3 * COVERAGE {
                    Some(spec.initial / 3)
                } else {
                    coverage.iter().position(|k| *k == MsgKind::Video).filter(|&p| p < spec.initial)
                }
            }
            _ => None,
        };
        // One record of every fault kind with a positive rate at a deterministic index, so small
        // corpora get each kind too; more come from the per-record roll.
        let mut forced: Vec<(usize, RecordFault)> = Vec::new();
        for (k, fault) in RECORD_FAULTS.iter().enumerate() {
            if spec.fault_rates[k] <= 0.0 || spec.initial == 0 {
                continue;
            }
            let (lo, span) = if spec.initial > COVERAGE + 8 {
                (COVERAGE, spec.initial - COVERAGE)
            } else {
                (0, spec.initial)
            };
            let mut at = lo
                + (mix(&[spec.seed, tag::FORCED_FAULT, spec.corp as u64, k as u64]) % span as u64) as usize;
            for _ in 0..spec.initial {
                if Some(at) != big_video_at && forced.iter().all(|(i, _)| *i != at) {
                    forced.push((at, *fault));
                    break;
                }
                at = lo + (at - lo + 1) % span;
            }
        }
        let first_seq = 1 + rng.random_range(0..50);
        let kinds: Vec<(MsgKind, u32)> = MsgKind::ALL.iter().map(|k| (*k, k.weight())).collect();
        let total_weight = kinds.iter().map(|(_, w)| w).sum();
        Generator {
            dir,
            index: 0,
            next_seq: first_seq,
            last_time: spec.epoch_ms,
            recent: VecDeque::new(),
            media_counter: 0,
            coverage,
            forced,
            big_video_at,
            kinds,
            total_weight,
            spec,
        }
    }

    /// Records to generate at start.
    pub fn initial(&self) -> usize {
        self.spec.initial
    }

    pub fn corpname(&self) -> &str {
        &self.dir.corpname
    }

    fn fault_for(&self, index: usize) -> Option<RecordFault> {
        if Some(index) == self.big_video_at {
            return None;
        }
        if let Some((_, f)) = self.forced.iter().find(|(i, _)| *i == index) {
            return Some(*f);
        }
        RECORD_FAULTS.iter().enumerate().find_map(|(k, f)| {
            let rate = self.spec.fault_rates[k];
            let roll = unit(mix(&[
                self.spec.seed,
                tag::RECORD_FAULT,
                self.spec.corp as u64,
                k as u64,
                index as u64,
            ]));
            (rate > 0.0 && roll < rate).then_some(*f)
        })
    }

    fn kind_for(&self, index: usize, rng: &mut impl RngCore) -> MsgKind {
        if Some(index) == self.big_video_at {
            return MsgKind::Video;
        }
        if index < COVERAGE {
            return self.coverage[index];
        }
        let mut r = rng.random_range(0..self.total_weight);
        for (k, w) in &self.kinds {
            if r < *w {
                return *k;
            }
            r -= w;
        }
        MsgKind::Text
    }

    /// Produces the next record.
    pub fn next_record(&mut self) -> Arc<Record> {
        let index = self.index;
        self.index += 1;
        let mut rng = rng_for(&[self.spec.seed, tag::MSG, self.spec.corp as u64, index as u64]);
        let kind = self.kind_for(index, &mut rng);
        // Occasional seq gaps, as in real archives.
        let seq = self.next_seq;
        self.next_seq += if rng.random_range(0..30) == 0 { rng.random_range(2..6) } else { 1 };
        let gap = match rng.random_range(0..100) {
            0..70 => rng.random_range(1_000..60_000),
            70..95 => rng.random_range(60_000..600_000),
            _ => rng.random_range(600_000..10_800_000),
        };
        self.last_time += gap;
        let msgtime = self.last_time;
        let fault = self.fault_for(index);
        let publickey_ver = match fault {
            Some(RecordFault::UnknownVer) => WITHHELD_VERSION,
            _ if self.spec.rotate_at.is_some_and(|r| index >= r) => SECOND_VERSION,
            _ => FIRST_VERSION,
        };
        let showcase = index < COVERAGE;
        let mut b = Builder {
            g: self,
            rng: &mut rng,
            seq,
            msgid: String::new(),
            msgtime,
            media: Vec::new(),
            showcase,
        };
        let (json, msgid, action) = b.message(kind, index);
        let media = std::mem::take(&mut b.media);
        let (plaintext, msgid) = hostile_plaintext(fault, json.to_bytes(), msgid);
        self.recent.push_back(msgid.clone());
        if self.recent.len() > 200 {
            self.recent.pop_front();
        }
        Arc::new(Record {
            seq,
            msgid,
            publickey_ver,
            kind,
            action,
            msgtime,
            plaintext,
            fault,
            media,
            served: OnceLock::new(),
        })
    }
}

/// Builds one message; holds the per-record stream.
struct Builder<'a, R: RngCore> {
    g: &'a mut Generator,
    rng: &'a mut R,
    seq: u64,
    msgid: String,
    msgtime: i64,
    media: Vec<Arc<MediaItem>>,
    /// The record is in the coverage block: make it show its features (nested media,
    /// multi-chunk video, raw control characters) so even small corpora have them.
    showcase: bool,
}

fn log_uniform(rng: &mut impl RngCore, lo: u64, hi: u64) -> u64 {
    let x: f64 = rng.random();
    (lo as f64 * (hi as f64 / lo as f64).powf(x)) as u64
}

/// Multi-chunk sizes: 512 KiB .. 1.5 MB.
fn big(rng: &mut impl RngCore) -> u64 {
    rng.random_range(530_000..1_500_000)
}

/// China standard time (UTC+8) `YYYY-MM-DD HH:MM:SS` for a ms timestamp.
fn cst(ms: i64) -> String {
    let secs = ms / 1000 + 8 * 3600;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

impl<R: RngCore> Builder<'_, R> {
    fn new_msgid(&mut self, suffix: &str) -> String {
        let id = if self.rng.random_range(0..50) == 0 {
            // The oldest samples use a base64-like id with no time part.
            let mut raw = [0u8; 22];
            self.rng.fill_bytes(&mut raw);
            let mut s = B64.encode(&raw[..20]);
            s.replace_range(..4, "CAQQ");
            s
        } else {
            format!("{}_{}{suffix}", self.rng.random::<u64>(), self.msgtime)
        };
        self.msgid = id.clone();
        id
    }

    /// Creates a media file referenced from this record and returns its JSON facts.
    fn media(
        &mut self,
        item_type: &str,
        format: MediaFormat,
        size: u64,
        filename: Option<String>,
        location: MediaLocation,
        stated: Stated,
    ) -> Arc<MediaItem> {
        let g = &mut *self.g;
        let n = g.media_counter;
        g.media_counter += 1;
        let (seed, corp) = (g.spec.seed, g.spec.corp as u64);
        let mut mrng = rng_for(&[seed, tag::MEDIA, corp, n]);
        // Pixel size written into PNG/GIF headers; emotions state the same values.
        let (w, h) = (mrng.random_range(100..480), mrng.random_range(100..480));
        let blob = MediaBlob::new(mix(&[seed, tag::BLOB, corp, n]), format, size).with_dimensions(w, h);
        let mut aeskey = [0u8; 16];
        mrng.fill_bytes(&mut aeskey);
        let authkey = vocab::hex(&mut mrng, 32);
        // Real fileids are long hex strings that start like an ASN.1 structure.
        let fileid =
            format!("3069020102046230600201000204{corp:02x}{n:010x}0201{}", vocab::hex(&mut mrng, 96));
        let sdkfileid =
            MsgSdkFileId { fileid: fileid.clone(), authkey: authkey.clone(), aeskey: hex::encode(aeskey) }
                .to_sdkfileid();
        let md5 = blob.md5_hex();
        let md5sum = match stated {
            Stated::None => None,
            Stated::Md5 if mrng.random_range(0..50) == 0 => Some(String::new()),
            Stated::Md5 => Some(md5.clone()),
        };
        let item = Arc::new(MediaItem {
            sdkfileid,
            fileid,
            md5,
            md5sum,
            size: blob.size,
            item_type: item_type.to_string(),
            filename,
            format,
            seq: self.seq,
            msgid: self.msgid.clone(),
            location,
            blob,
            aeskey,
            authkey,
        });
        self.media.push(item.clone());
        item
    }

    fn md5sum(m: &MediaItem) -> J {
        J::s(m.md5sum.clone().unwrap_or_default())
    }

    fn header(
        &mut self,
        conv: &Conv,
        action: &'static str,
        kind: MsgKind,
        with_room: bool,
    ) -> Vec<(&'static str, J)> {
        let msgid = self.new_msgid(conv.suffix);
        let mut h = vec![
            ("msgid", J::s(msgid)),
            ("action", J::s(action)),
            ("from", J::s(&conv.from)),
            ("tolist", J::Arr(conv.tolist.iter().map(J::s).collect())),
        ];
        if with_room {
            h.push(("roomid", J::s(&conv.roomid)));
        }
        h.push(("msgtime", J::Int(self.msgtime)));
        h.push(("msgtype", J::s(kind.name())));
        h
    }

    fn text_content(&mut self, raw_controls: bool) -> J {
        let mut s = vocab::chat_text(self.rng);
        if raw_controls {
            const CONTROLS: &[char] =
                &['\u{1}', '\u{2}', '\u{7}', '\u{8}', '\u{b}', '\u{c}', '\u{1b}', '\u{1f}'];
            for _ in 0..self.rng.random_range(1..4) {
                let chars: Vec<char> = s.chars().collect();
                let at = self.rng.random_range(0..=chars.len());
                let c = *pick(self.rng, CONTROLS);
                s = chars[..at].iter().chain(std::iter::once(&c)).chain(&chars[at..]).collect();
            }
            J::Raw(s)
        } else {
            J::Str(s)
        }
    }

    fn image_fields(&mut self, loc: MediaLocation, item_type: &str) -> J {
        let size = if self.rng.random_range(0..200) == 0 {
            big(self.rng)
        } else {
            log_uniform(self.rng, 2_000, 60_000)
        };
        let m = self.media(item_type, MediaFormat::Jpeg, size, None, loc, Stated::Md5);
        J::Obj(vec![
            ("md5sum", Self::md5sum(&m)),
            ("filesize", J::UInt(m.size)),
            ("sdkfileid", J::s(&m.sdkfileid)),
        ])
    }

    fn emotion_fields(&mut self, loc: MediaLocation, item_type: &str) -> J {
        let gif = self.rng.random_range(0..2) == 0;
        let size = log_uniform(self.rng, 3_000, 60_000);
        let format = if gif { MediaFormat::Gif } else { MediaFormat::Png };
        let m = self.media(item_type, format, size, None, loc, Stated::Md5);
        J::Obj(vec![
            ("type", J::Int(if gif { 1 } else { 2 })),
            ("width", J::Int(m.blob.width.into())),
            ("height", J::Int(m.blob.height.into())),
            ("imagesize", J::UInt(m.size)),
            ("md5sum", Self::md5sum(&m)),
            ("sdkfileid", J::s(&m.sdkfileid)),
        ])
    }

    fn file_fields(&mut self, loc: MediaLocation, item_type: &str) -> J {
        let (name, format) = vocab::file_name(self.rng);
        let size = if self.rng.random_range(0..25) == 0 {
            big(self.rng)
        } else {
            log_uniform(self.rng, 1_000, 80_000)
        };
        let ext = vocab::file_ext(&name);
        let m = self.media(item_type, format, size, Some(name.clone()), loc, Stated::Md5);
        J::Obj(vec![
            ("md5sum", Self::md5sum(&m)),
            ("filename", J::Str(name)),
            ("fileext", J::Str(ext)),
            ("filesize", J::UInt(m.size)),
            ("sdkfileid", J::s(&m.sdkfileid)),
        ])
    }

    fn video_fields(&mut self, loc: MediaLocation, item_type: &str, size: Option<u64>) -> J {
        let size = size.unwrap_or_else(|| {
            if self.rng.random_range(0..100) < 15 {
                big(self.rng)
            } else {
                log_uniform(self.rng, 30_000, 400_000)
            }
        });
        let play_length = (size / 120_000).clamp(1, 3600) as i64;
        let m = self.media(item_type, MediaFormat::Mp4, size, None, loc, Stated::Md5);
        J::Obj(vec![
            ("md5sum", Self::md5sum(&m)),
            ("filesize", J::UInt(m.size)),
            ("play_length", J::Int(play_length)),
            ("sdkfileid", J::s(&m.sdkfileid)),
        ])
    }

    fn link_fields(&mut self) -> J {
        J::Obj(vec![
            ("title", J::s(*pick(self.rng, vocab::TITLES))),
            ("description", J::s(*pick(self.rng, vocab::PHRASES))),
            ("link_url", J::s(*pick(self.rng, vocab::URLS))),
            ("image_url", J::s("https://example.com/img/cover.png")),
        ])
    }

    fn location_fields(&mut self) -> J {
        let (addr, title, lon, lat) = *pick(self.rng, vocab::ADDRESSES);
        J::Obj(vec![
            ("longitude", J::Float(lon + self.rng.random_range(-0.01..0.01))),
            ("latitude", J::Float(lat + self.rng.random_range(-0.01..0.01))),
            ("address", J::s(addr)),
            ("title", J::s(title)),
            ("zoom", J::Int(self.rng.random_range(10..19))),
        ])
    }

    fn mixed_items(&mut self, nested_location: fn(usize) -> MediaLocation, text_only: bool) -> J {
        let n = self.rng.random_range(2..7);
        let mut items = Vec::new();
        for i in 0..n {
            let loc = nested_location(i);
            let roll = match (text_only, self.showcase && i == 1) {
                (true, _) => 0,
                (false, true) => 5,
                (false, false) => self.rng.random_range(0..10),
            };
            let (t, content) = match roll {
                0..5 => {
                    let c = self.text_content(false);
                    ("text", J::Obj(vec![("content", c)]))
                }
                5..8 => ("image", self.image_fields(loc, "image")),
                8 => ("emotion", self.emotion_fields(loc, "emotion")),
                _ => ("file", self.file_fields(loc, "file")),
            };
            items.push(J::Obj(vec![("type", J::s(t)), ("content", J::Nested(Box::new(content)))]));
        }
        J::Obj(vec![("item", J::Arr(items))])
    }

    fn chatrecord(&mut self) -> J {
        let n = self.rng.random_range(2..9);
        let mut items = Vec::new();
        let base_s = self.msgtime / 1000 - self.rng.random_range(600..864_000);
        for i in 0..n {
            let loc = MediaLocation::ChatRecordItem(i);
            let roll = if self.showcase && i == 1 { 45 } else { self.rng.random_range(0..100) };
            let (t, content) = match roll {
                0..45 => {
                    let c = self.text_content(false);
                    ("ChatRecordText", J::Obj(vec![("content", c)]))
                }
                45..65 => ("ChatRecordImage", self.image_fields(loc, "ChatRecordImage")),
                65..75 => ("ChatRecordFile", self.file_fields(loc, "ChatRecordFile")),
                75..82 => ("ChatRecordVideo", self.video_fields(loc, "ChatRecordVideo", None)),
                82..87 => ("ChatRecordEmotion", self.emotion_fields(loc, "ChatRecordEmotion")),
                87..92 => ("ChatRecordLink", self.link_fields()),
                92..96 => ("ChatRecordLocation", self.location_fields()),
                _ => ("ChatRecordMixed", self.mixed_items(|_| MediaLocation::Message, true)),
            };
            let t_s = base_s + 30 * i as i64;
            let msgtime = if self.g.spec.chatrecord_ms { t_s * 1000 } else { t_s };
            items.push(J::Obj(vec![
                ("type", J::s(t)),
                ("msgtime", J::Int(msgtime)),
                ("content", J::Nested(Box::new(content))),
                ("from_chatroom", J::Bool(self.rng.random_range(0..3) == 0)),
            ]));
        }
        let title = if self.rng.random_range(0..2) == 0 {
            "群聊的聊天记录".to_string()
        } else {
            format!(
                "{}和{}的聊天记录",
                pick(self.rng, vocab::DISPLAY_NAMES),
                pick(self.rng, vocab::DISPLAY_NAMES)
            )
        };
        J::Obj(vec![("title", J::Str(title)), ("item", J::Arr(items))])
    }

    fn revoke_target(&mut self) -> String {
        if self.g.recent.is_empty() {
            // Recall of a message older than what the archive still holds.
            format!("{}_{}", self.rng.random::<u64>(), self.msgtime - 3_600_000)
        } else {
            let i = self.rng.random_range(0..self.g.recent.len());
            self.g.recent[i].clone()
        }
    }

    /// The whole message: JSON tree, msgid, action.
    fn message(&mut self, kind: MsgKind, index: usize) -> (J, String, &'static str) {
        let dir = self.g.dir.clone();
        if kind == MsgKind::Switch {
            let msgid = format!(
                "{}{:02}",
                self.rng.random_range(10_000_000_000_000_000u64..99_999_999_999_999_999),
                self.rng.random_range(0..100)
            );
            self.msgid = msgid.clone();
            let user = dir.any_user(self.rng);
            let j = J::Obj(vec![
                ("msgid", J::s(&msgid)),
                ("action", J::s("switch")),
                ("time", J::Int(self.msgtime)),
                ("user", J::Str(user)),
            ]);
            return (j, msgid, "switch");
        }
        let conv = match kind {
            MsgKind::Agree | MsgKind::Disagree => dir.external_conv(self.rng, Some(true)),
            MsgKind::Markdown | MsgKind::News => dir.room_conv(self.rng, true),
            MsgKind::Todo
            | MsgKind::Vote
            | MsgKind::Collect
            | MsgKind::Meeting
            | MsgKind::Calendar
            | MsgKind::MeetingNotification
            | MsgKind::RedPacket => dir.room_conv(self.rng, false),
            MsgKind::ExternalRedPacket => {
                let mut c = dir.room_conv(self.rng, false);
                c.suffix = "_external";
                c
            }
            MsgKind::MeetingVoiceCall | MsgKind::VoipDocShare => {
                if self.rng.random_range(0..2) == 0 {
                    dir.internal_conv(self.rng)
                } else {
                    dir.external_conv(self.rng, Some(false))
                }
            }
            _ => dir.any_conv(self.rng),
        };
        let action = if kind == MsgKind::Revoke { "recall" } else { "send" };
        let with_room = !matches!(kind, MsgKind::MeetingVoiceCall | MsgKind::VoipDocShare);
        let mut obj = self.header(&conv, action, kind, with_room);
        let top = MediaLocation::Message;
        let payload = match kind {
            MsgKind::Text => {
                // The first text of the coverage block always carries raw control characters,
                // so even small corpora have one; later ones 1 in 100.
                let raw = self.showcase || self.rng.random_range(0..100) == 0;
                let mut content = self.text_content(raw);
                if !raw && self.rng.random_range(0..300) == 0 {
                    // A text that merely looks like media JSON: not a download (RUST-NOTES §7.6).
                    content =
                        J::s(r#"{"sdkfileid":"not-media","md5sum":"00000000000000000000000000000000"}"#);
                }
                J::Obj(vec![("content", content)])
            }
            MsgKind::Image => self.image_fields(top, "image"),
            MsgKind::Revoke => J::Obj(vec![("pre_msgid", J::Str(self.revoke_target()))]),
            MsgKind::Agree => {
                J::Obj(vec![("userid", J::s(&conv.from)), ("agree_time", J::Int(self.msgtime))])
            }
            MsgKind::Disagree => {
                J::Obj(vec![("userid", J::s(&conv.from)), ("disagree_time", J::Int(self.msgtime))])
            }
            MsgKind::Voice => {
                let secs = if self.rng.random_range(0..5) == 0 {
                    self.rng.random_range(15..60)
                } else {
                    self.rng.random_range(1..15)
                };
                let frames = secs * 50 + self.rng.random_range(0..50);
                let m = self.media(
                    "voice",
                    MediaFormat::Amr,
                    MediaBlob::amr_size(frames),
                    None,
                    top,
                    Stated::Md5,
                );
                J::Obj(vec![
                    ("md5sum", Self::md5sum(&m)),
                    ("voice_size", J::UInt(m.size)),
                    ("play_length", J::UInt(frames.div_ceil(50))),
                    ("sdkfileid", J::s(&m.sdkfileid)),
                ])
            }
            MsgKind::Video => {
                let size = if Some(index) == self.g.big_video_at {
                    self.g.spec.big_video
                } else if self.showcase {
                    Some(big(self.rng))
                } else {
                    None
                };
                self.video_fields(top, "video", size)
            }
            MsgKind::Card => J::Obj(vec![
                ("corpname", J::s(*pick(self.rng, vocab::COMPANIES))),
                ("userid", J::Str(dir.any_user(self.rng))),
            ]),
            MsgKind::Location => self.location_fields(),
            MsgKind::Emotion => self.emotion_fields(top, "emotion"),
            MsgKind::File => self.file_fields(top, "file"),
            MsgKind::Link => self.link_fields(),
            MsgKind::Weapp => {
                let mut f = vec![
                    ("title", J::s("预约服务时间")),
                    ("description", J::s("选择您方便的时间")),
                    ("username", J::Str(format!("gh_{}@app", vocab::hex(self.rng, 12)))),
                    ("displayname", J::s("示例预约")),
                ];
                if self.rng.random_range(0..2) == 0 {
                    f.push(("appid", J::Str(format!("wx{}", vocab::hex(self.rng, 16)))));
                    f.push(("pagepath", J::s("pages/booking/index?src=chat")));
                }
                J::Obj(f)
            }
            MsgKind::ChatRecord => self.chatrecord(),
            MsgKind::Todo => J::Obj(vec![
                ("title", J::s(*pick(self.rng, vocab::TITLES))),
                ("content", J::s(*pick(self.rng, vocab::PHRASES))),
            ]),
            MsgKind::Vote => {
                let fields = vec![
                    ("votetitle", J::s("团建地点投票")),
                    ("voteitem", J::Arr(vec![J::s("千岛湖"), J::s("莫干山"), J::s("Salad place 🥗")])),
                    ("votetype", J::Int(if self.rng.random_range(0..2) == 0 { 101 } else { 102 })),
                    (
                        "voteid",
                        J::Str(self.rng.random_range(1_000_000_000_000_000_000u64..u64::MAX).to_string()),
                    ),
                ];
                if self.g.spec.vote_nested {
                    obj.push(("vote", J::Obj(fields)));
                } else {
                    obj.extend(fields);
                }
                return (J::Obj(obj), self.msgid.clone(), action);
            }
            MsgKind::Collect => J::Obj(vec![
                ("room_name", J::s(*pick(self.rng, vocab::ROOM_NAMES))),
                ("creator", J::s(*pick(self.rng, vocab::DISPLAY_NAMES))),
                ("create_time", J::Str(cst(self.msgtime))),
                ("title", J::s("周末出游报名")),
                (
                    "details",
                    J::Arr(
                        [("姓名", "Text"), ("人数", "Number"), ("出发日期", "Date"), ("出发时间", "Time")]
                            .iter()
                            .enumerate()
                            .map(|(i, (q, t))| {
                                J::Obj(vec![
                                    ("id", J::UInt(i as u64 + 1)),
                                    ("ques", J::s(*q)),
                                    ("type", J::s(*t)),
                                ])
                            })
                            .collect(),
                    ),
                ),
            ]),
            MsgKind::RedPacket | MsgKind::ExternalRedPacket => {
                let cnt = self.rng.random_range(1..20);
                J::Obj(vec![
                    ("type", J::Int(self.rng.random_range(1..4))),
                    ("wish", J::s("恭喜发财，大吉大利🧧")),
                    ("totalcnt", J::Int(cnt)),
                    ("totalamount", J::Int(cnt * self.rng.random_range(1..20_000))),
                ])
            }
            MsgKind::Meeting => {
                let start = self.msgtime / 1000 + self.rng.random_range(3600..604_800);
                J::Obj(vec![
                    ("topic", J::s("周例会")),
                    ("starttime", J::Int(start)),
                    ("endtime", J::Int(start + 3600)),
                    ("address", J::s("3号会议室")),
                    ("remarks", J::s("请带上本周进展")),
                    ("meetingtype", J::Int(if self.rng.random_range(0..2) == 0 { 101 } else { 102 })),
                    // uint64 beyond 2^53 on purpose: readers must not go through a float.
                    ("meetingid", J::UInt(self.rng.random_range(1u64 << 53..u64::MAX))),
                    ("status", J::Int(self.rng.random_range(1..8))),
                ])
            }
            MsgKind::MeetingNotification => J::Obj(vec![
                ("meeting_id", J::UInt(self.rng.random_range(1u64 << 53..u64::MAX))),
                ("notification_type", J::Int(self.rng.random_range(1..4))),
                ("content", J::s("会议已开始")),
            ]),
            MsgKind::DocMsg => J::Obj(vec![
                ("title", J::s(*pick(self.rng, vocab::TITLES))),
                ("doc_creator", J::s(conv.tolist.first().cloned().unwrap_or_else(|| conv.from.clone()))),
                ("link_url", J::s(*pick(self.rng, vocab::URLS))),
            ]),
            MsgKind::Markdown => J::Obj(vec![(
                "content",
                J::Str(format!(
                    "**构建 #{} 通过** — 查看[报告](https://ci.example.com/{})\n> 耗时 {} 秒",
                    self.rng.random_range(100..999),
                    self.rng.random_range(100..999),
                    self.rng.random_range(10..999)
                )),
            )]),
            MsgKind::News => {
                let n = self.rng.random_range(1..4);
                let items = (0..n)
                    .map(|_| {
                        J::Obj(vec![
                            ("title", J::s(*pick(self.rng, vocab::TITLES))),
                            ("description", J::s(*pick(self.rng, vocab::PHRASES))),
                            ("url", J::s(*pick(self.rng, vocab::URLS))),
                            ("picurl", J::s("https://example.com/img/notice42.jpg")),
                        ])
                    })
                    .collect();
                J::Obj(vec![("item", J::Arr(items))])
            }
            MsgKind::Calendar => {
                let start = self.msgtime / 1000 + self.rng.random_range(3600..604_800);
                J::Obj(vec![
                    ("title", J::s("设计评审")),
                    ("creatorname", J::s(*pick(self.rng, vocab::DISPLAY_NAMES))),
                    (
                        "attendeename",
                        J::Arr(vec![
                            J::s(*pick(self.rng, vocab::DISPLAY_NAMES)),
                            J::s(*pick(self.rng, vocab::DISPLAY_NAMES)),
                        ]),
                    ),
                    ("starttime", J::Int(start)),
                    ("endtime", J::Int(start + 3600)),
                    ("place", J::s("5B会议室")),
                    ("remarks", J::s("")),
                ])
            }
            MsgKind::Mixed => self.mixed_items(MediaLocation::MixedItem, false),
            MsgKind::MeetingVoiceCall => {
                obj.push(("voiceid", J::Str(format!("gr{}", vocab::hex(self.rng, 32)))));
                let size = log_uniform(self.rng, 10_000, 300_000);
                let m = self.media("meeting_voice_call", MediaFormat::Mp4, size, None, top, Stated::None);
                let start = self.msgtime / 1000;
                let demo = (0..self.rng.random_range(0..3))
                    .map(|_| {
                        J::Obj(vec![
                            ("filename", J::Str(vocab::file_name(self.rng).0)),
                            ("demooperator", J::Str(dir.any_user(self.rng))),
                            ("starttime", J::Int(start + 10)),
                            ("endtime", J::Int(start + 70)),
                        ])
                    })
                    .collect();
                let share = (0..self.rng.random_range(0..3))
                    .map(|_| {
                        J::Obj(vec![
                            ("share", J::Str(dir.any_user(self.rng))),
                            ("starttime", J::Int(start + 80)),
                            ("endtime", J::Int(start + 120)),
                        ])
                    })
                    .collect();
                J::Obj(vec![
                    ("endtime", J::Int(start + self.rng.random_range(60..7200))),
                    ("sdkfileid", J::s(&m.sdkfileid)),
                    ("demofiledata", J::Arr(demo)),
                    ("sharescreendata", J::Arr(share)),
                ])
            }
            MsgKind::VoipDocShare => {
                obj.push(("voipid", J::Str(format!("gr{}", vocab::hex(self.rng, 32)))));
                let (name, format) = vocab::file_name(self.rng);
                let size = log_uniform(self.rng, 10_000, 400_000);
                let m = self.media("voip_doc_share", format, size, Some(name.clone()), top, Stated::Md5);
                J::Obj(vec![
                    ("filename", J::Str(name)),
                    ("md5sum", Self::md5sum(&m)),
                    ("filesize", J::UInt(m.size)),
                    ("sdkfileid", J::s(&m.sdkfileid)),
                ])
            }
            MsgKind::SphFeed => J::Obj(vec![
                ("feed_type", J::Int(*pick(self.rng, &[2, 4, 9]))),
                ("sph_name", J::s("示例视频号")),
                ("feed_desc", J::s("春季新品发布幕后花絮 🎬")),
            ]),
            MsgKind::VoipText => J::Obj(vec![
                ("callduration", J::Int(self.rng.random_range(0..3600))),
                ("invitetype", J::Int(self.rng.random_range(1..5))),
            ]),
            MsgKind::QyDiskFile => J::Obj(vec![("filename", J::Str(vocab::file_name(self.rng).0))]),
            MsgKind::Switch => unreachable!("handled above"),
        };
        obj.push((kind.payload_key().expect("payload kinds have a key"), payload));
        (J::Obj(obj), self.msgid.clone(), action)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cst_formats_china_time() {
        // 2025-03-10 08:41:16 UTC = 16:41:16 in China.
        assert_eq!(cst(1_741_596_076_000), "2025-03-10 16:41:16");
        assert_eq!(cst(0), "1970-01-01 08:00:00");
    }
}
