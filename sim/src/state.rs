//! The running simulator's shared state: corps with their keys and records, the media index,
//! access tokens, fault decisions and counters.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use rand::Rng;

use crate::corpus::{CorpCorpus, Generator, MediaItem, Record, RecordFault};
use crate::fault::{FaultKind, FaultSpec};
use crate::format;
use crate::json::J;
use crate::keys::{PemForm, RsaKey};
use crate::seed::{mix, rng_for, str_hash, tag};
use crate::stats::{Endpoint, SimStats};

/// One key version of a corp.
pub(crate) struct CorpKey {
    pub version: u32,
    pub key: Arc<RsaKey>,
    pub pem: String,
}

impl CorpKey {
    pub fn new(version: u32, key: Arc<RsaKey>, form: PemForm) -> Self {
        let pem = key.private_pem(form);
        CorpKey { version, key, pem }
    }
}

pub(crate) struct Corp {
    pub index: usize,
    pub corpid: String,
    pub secret: String,
    pub corpname: String,
    /// Manifest keys, ascending version.
    pub keys: Vec<CorpKey>,
    /// The `unknown_ver` key, not in the manifest (only when that fault is on).
    pub withheld: Option<CorpKey>,
    pub records: RwLock<Vec<Arc<Record>>>,
    pub generator: Mutex<Generator>,
}

impl Corp {
    fn key(&self, version: u32) -> Option<&CorpKey> {
        self.keys.iter().chain(self.withheld.as_ref()).find(|k| k.version == version)
    }

    pub fn snapshot(&self) -> CorpCorpus {
        let records = self.records.read().expect("records").clone();
        let media = records.iter().flat_map(|r| r.media.iter().cloned()).collect();
        CorpCorpus { corpid: self.corpid.clone(), records, media }
    }
}

struct Token {
    corp: usize,
    expires: Instant,
}

#[derive(Default)]
struct Tokens {
    by_value: HashMap<String, Token>,
    current: HashMap<usize, String>,
    issued: u64,
}

/// Why a token was refused.
pub(crate) enum TokenError {
    Unknown,
    Expired,
}

pub(crate) struct Shared {
    pub seed: u64,
    pub faults: RwLock<FaultSpec>,
    pub slow: Duration,
    pub token_ttl: Duration,
    pub corps: Vec<Corp>,
    /// A key no corp has (`wrong_key` records; only when that fault is on).
    pub stranger: Option<Arc<RsaKey>>,
    media: RwLock<HashMap<String, Arc<MediaItem>>>,
    tokens: Mutex<Tokens>,
    attempts: Mutex<HashMap<u64, u64>>,
    stats: Mutex<SimStats>,
}

impl Shared {
    pub fn new(
        seed: u64,
        faults: FaultSpec,
        slow: Duration,
        token_ttl: Duration,
        corps: Vec<Corp>,
        stranger: Option<Arc<RsaKey>>,
    ) -> Self {
        let shared = Shared {
            seed,
            faults: RwLock::new(faults),
            slow,
            token_ttl,
            corps,
            stranger,
            media: RwLock::default(),
            tokens: Mutex::default(),
            attempts: Mutex::default(),
            stats: Mutex::default(),
        };
        for c in &shared.corps {
            let records = c.records.read().expect("records");
            shared.index_media(&records);
        }
        shared
    }

    pub fn index_media(&self, records: &[Arc<Record>]) {
        let mut m = self.media.write().expect("media index");
        for item in records.iter().flat_map(|r| r.media.iter()) {
            m.insert(item.fileid.clone(), item.clone());
        }
    }

    pub fn media(&self, fileid: &str) -> Option<Arc<MediaItem>> {
        self.media.read().expect("media index").get(fileid).cloned()
    }

    /// Appends `n` records to a corp (live mode / tests); generation runs on the caller's
    /// thread, so call from a blocking context.
    pub fn append(&self, corp: usize, n: usize) {
        let c = &self.corps[corp];
        let new: Vec<Arc<Record>> = {
            let mut g = c.generator.lock().expect("generator");
            (0..n).map(|_| g.next_record()).collect()
        };
        self.index_media(&new);
        c.records.write().expect("records").extend(new);
    }

    // ---- tokens -------------------------------------------------------------------------

    /// Returns the corp's valid token (with its remaining lifetime) or issues a new one, like
    /// qyapi, which hands out the same token until it expires.
    pub fn token_for(&self, corp: usize) -> (String, u64) {
        let now = Instant::now();
        let mut t = self.tokens.lock().expect("tokens");
        if let Some(cur) = t.current.get(&corp)
            && let Some(tok) = t.by_value.get(cur)
        {
            let left = tok.expires.saturating_duration_since(now).as_secs();
            if left >= 1 {
                return (cur.clone(), left);
            }
        }
        t.issued += 1;
        let mut rng = rng_for(&[self.seed, tag::TOKEN, corp as u64, t.issued]);
        const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let value: String = (0..128).map(|_| CHARS[rng.random_range(0..CHARS.len())] as char).collect();
        t.by_value.insert(value.clone(), Token { corp, expires: now + self.token_ttl });
        t.current.insert(corp, value.clone());
        drop(t);
        self.stats.lock().expect("stats").tokens_issued += 1;
        (value, self.token_ttl.as_secs())
    }

    pub fn check_token(&self, token: &str) -> Result<usize, TokenError> {
        let t = self.tokens.lock().expect("tokens");
        let tok = t.by_value.get(token).ok_or(TokenError::Unknown)?;
        if Instant::now() >= tok.expires {
            return Err(TokenError::Expired);
        }
        Ok(tok.corp)
    }

    // ---- faults and counters ------------------------------------------------------------

    /// Counts the request and picks the first of `kinds` whose roll hits, for this attempt of
    /// the request `identity` (see [`crate::fault`]).
    pub fn decide(&self, endpoint: Endpoint, identity: u64, kinds: &[FaultKind]) -> Option<FaultKind> {
        let attempt = self.next_attempt(mix(&[endpoint as u64, identity]));
        let spec = self.faults.read().expect("faults");
        let hit = kinds.iter().copied().find(|k| spec.roll(self.seed, *k, identity, attempt));
        drop(spec);
        if let Some(k) = hit {
            self.count_fault(k);
        }
        hit
    }

    /// Whether this download attempt of a file (counted by final-chunk requests) is corrupted.
    pub fn decide_md5_mismatch(&self, fileid: &str) -> bool {
        let identity = mix(&[0x004D_4435, str_hash(fileid)]);
        let attempt = self.next_attempt(identity);
        let hit =
            self.faults.read().expect("faults").roll(self.seed, FaultKind::Md5Mismatch, identity, attempt);
        if hit {
            self.count_fault(FaultKind::Md5Mismatch);
        }
        hit
    }

    fn next_attempt(&self, key: u64) -> u64 {
        let mut a = self.attempts.lock().expect("attempts");
        let n = a.entry(key).or_insert(0);
        *n += 1;
        *n - 1
    }

    /// Picks a status for an `http500` fault: 500, 502, 503 or 504, deterministically.
    pub fn fault_status(&self, identity: u64) -> u16 {
        [500, 502, 503, 504][(mix(&[self.seed, tag::STATUS, identity]) % 4) as usize]
    }

    pub fn count_fault(&self, k: FaultKind) {
        *self.stats.lock().expect("stats").faults.entry(k).or_insert(0) += 1;
    }

    pub fn with_stats<T>(&self, f: impl FnOnce(&mut SimStats) -> T) -> T {
        f(&mut self.stats.lock().expect("stats"))
    }

    pub fn stats(&self) -> SimStats {
        self.stats.lock().expect("stats").clone()
    }

    // ---- records ------------------------------------------------------------------------

    /// Records with `seq > after`, at most `limit`.
    pub fn page(&self, corp: usize, after: u64, limit: usize) -> Vec<Arc<Record>> {
        let records = self.corps[corp].records.read().expect("records");
        let start = records.partition_point(|r| r.seq <= after);
        records[start..records.len().min(start.saturating_add(limit))].to_vec()
    }

    /// The chatdata item JSON of a record, built once (CPU: one RSA public operation).
    pub fn chatdata_item(&self, corp: usize, r: &Record) -> Arc<str> {
        r.served.get_or_init(|| self.seal_record(&self.corps[corp], r)).clone()
    }

    fn seal_record(&self, corp: &Corp, r: &Record) -> Arc<str> {
        let mut rng = rng_for(&[self.seed, tag::ENC, corp.index as u64, r.seq]);
        let params = format::random_params(&mut rng, r.plaintext.len());
        let sealed = format::encrypt(&r.plaintext, &params, &mut rng).expect("random_params are valid");
        let ek = sealed.encrypt_key.as_bytes();
        let normal = |v: u32| corp.key(v).expect("record version has a key").key.wrap(ek).expect("RSA wrap");
        let mut seq = r.seq;
        let (msg, erk) = match r.fault {
            None
            | Some(
                RecordFault::LongMsgid
                | RecordFault::InvalidUtf8
                | RecordFault::LoneSurrogate
                | RecordFault::HugeRecord,
            ) => (sealed.encrypt_chat_msg, normal(r.publickey_ver)),
            Some(RecordFault::ForgedSeq) => {
                seq = u64::MAX;
                (sealed.encrypt_chat_msg, normal(r.publickey_ver))
            }
            Some(RecordFault::GroupKeyInfo) => {
                // s_len fits the SDK's first checks (2*s_len < L, pre_len+45 <= L) but is
                // one more than what is left after the prefix cut: erase() throws.
                let msg = sealed.encrypt_chat_msg;
                let len = msg.len() as i32;
                let s_len = len / 4;
                let pre_len = len - 45 - (s_len - 1);
                let info = crate::proto::SdkKeyInfo { k1: b"group".to_vec(), pre_len, end_len: 0, s_len };
                let mut bytes = info.encode();
                bytes.extend([0x2b, 0x2c]);
                let mut k_e = [0u8; 32];
                k_e.copy_from_slice(&msg.as_bytes()[format::KE_OFFSET..format::KE_END]);
                let key = format::seal_key_bytes(&k_e, &bytes, &mut rng);
                let erk =
                    corp.key(r.publickey_ver).expect("record version has a key").key.wrap(key.as_bytes());
                (msg, erk.expect("RSA wrap"))
            }
            Some(RecordFault::ShortMsg) => {
                let n = rng.random_range(0..13);
                (sealed.encrypt_chat_msg[..n].to_string(), normal(r.publickey_ver))
            }
            Some(RecordFault::BadBase64) => {
                let mut erk: Vec<char> = normal(r.publickey_ver).chars().collect();
                for _ in 0..3 {
                    let at = rng.random_range(0..erk.len());
                    erk[at] = ['*', '!', '.', '~'][rng.random_range(0..4)];
                }
                erk.truncate(erk.len() - 2);
                (sealed.encrypt_chat_msg, erk.into_iter().collect())
            }
            Some(RecordFault::UnknownVer) => {
                let k = corp.withheld.as_ref().expect("unknown_ver records imply a withheld key");
                (sealed.encrypt_chat_msg, k.key.wrap(ek).expect("RSA wrap"))
            }
            Some(RecordFault::WrongKey) => {
                let k = self.stranger.as_ref().expect("wrong_key records imply a stranger key");
                (sealed.encrypt_chat_msg, k.wrap(ek).expect("RSA wrap"))
            }
        };
        J::Obj(vec![
            ("seq", J::UInt(seq)),
            ("msgid", J::s(&r.msgid)),
            ("publickey_ver", J::UInt(r.publickey_ver.into())),
            ("encrypt_random_key", J::Str(erk)),
            ("encrypt_chat_msg", J::Str(msg)),
        ])
        .render()
        .into()
    }
}
