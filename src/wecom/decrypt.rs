//! One record: RSA-unwrap its random key, DecryptData, parse, classify.
//!
//! Every outcome yields a storable record: failures keep the encrypted fields
//! and say why in `decrypt_status`, so nothing is lost and `redecrypt` can
//! finish them once the missing key arrives (issue #4).

use super::envelope::ChatItem;
use super::keys::{KeyRing, UnwrapError};
use super::media_refs::{MediaRef, media_refs};
use super::message::{fields, parse_lenient};
use super::sdk::{Library, Refusal, SdkError};
use crate::store::messages::{DecryptStatus, NewMessage};

/// A record ready to store, with the media it references.
#[derive(Debug, Clone)]
pub struct Decrypted {
    /// The row.
    pub message: NewMessage,
    /// Media items to queue (empty unless decrypted).
    pub media: Vec<MediaRef>,
}

/// The encrypted inputs of one record.
#[derive(Debug, Clone, Copy)]
pub struct Encrypted<'a> {
    /// Sequence number.
    pub seq: u64,
    /// Message id.
    pub msgid: &'a str,
    /// Key version.
    pub publickey_ver: u32,
    /// RSA-wrapped key.
    pub encrypt_random_key: &'a str,
    /// Encrypted message.
    pub encrypt_chat_msg: &'a str,
}

fn undecrypted(e: &Encrypted<'_>, status: DecryptStatus, code: i32) -> Decrypted {
    Decrypted {
        message: NewMessage {
            msgid: e.msgid.to_owned(),
            publickey_ver: e.publickey_ver,
            seq: e.seq,
            action: String::new(),
            msgfrom: String::new(),
            tolist: "[]".into(),
            msgtype: String::new(),
            msgtime: 0,
            text: String::new(),
            sdkfield: String::new(),
            msgdata: None,
            status: 0,
            roomid: String::new(),
            decrypt_status: status,
            decrypt_code: code,
            encrypt_random_key: Some(e.encrypt_random_key.to_owned()),
            encrypt_chat_msg: Some(e.encrypt_chat_msg.to_owned()),
        },
        media: Vec::new(),
    }
}

/// Decrypts one record with the corp's keys and the SDK.
pub fn decrypt_record(lib: &'static Library, ring: &KeyRing, e: &Encrypted<'_>) -> Decrypted {
    let Some(key) = ring.get(e.publickey_ver) else {
        return undecrypted(e, DecryptStatus::NoKey, 0);
    };
    let encrypt_key = match key.unwrap_random_key(e.encrypt_random_key) {
        Ok(k) => k,
        Err(UnwrapError::Malformed) => return undecrypted(e, DecryptStatus::BadRandomKey, 0),
        Err(UnwrapError::WrongKey) => return undecrypted(e, DecryptStatus::WrongKey, 0),
    };
    let plain = match lib.decrypt(&encrypt_key, e.encrypt_chat_msg) {
        Ok(p) => p,
        Err(SdkError::Refused {
            reason: Refusal::KeyInfoUnparsable { .. } | Refusal::KeyInfoDoesNotFit { .. },
            ..
        }) => return undecrypted(e, DecryptStatus::BadKeyInfo, 0),
        Err(SdkError::Refused { .. }) => return undecrypted(e, DecryptStatus::BadMessage, 0),
        Err(err) => return undecrypted(e, DecryptStatus::SdkError, err.raw_code()),
    };
    from_plaintext(e, plain)
}

/// Builds the stored record from a plaintext.
fn from_plaintext(e: &Encrypted<'_>, plain: Vec<u8>) -> Decrypted {
    let Some(json) = parse_lenient(&plain) else {
        // Not JSON even leniently: the exact bytes, a lossy preview, and the
        // ciphertext too, since only `ok` records may drop it (issue #9).
        let text = String::from_utf8_lossy(&plain).chars().take(4000).collect();
        let mut d = undecrypted(e, DecryptStatus::Unparsed, 0);
        d.message.text = text;
        d.message.msgdata = Some(plain);
        return d;
    };
    let f = fields(&json);
    let media = media_refs(&json);
    let sdkfield = media.iter().find(|m| m.index == 0).map(|m| m.sdkfileid.clone()).unwrap_or_default();
    Decrypted {
        message: NewMessage {
            msgid: e.msgid.to_owned(),
            publickey_ver: e.publickey_ver,
            seq: e.seq,
            action: f.action,
            msgfrom: f.from,
            tolist: f.tolist,
            msgtype: f.msgtype,
            msgtime: f.msgtime,
            text: f.text,
            sdkfield,
            msgdata: Some(plain),
            status: if media.is_empty() { 0 } else { 1 },
            roomid: f.roomid,
            decrypt_status: DecryptStatus::Ok,
            decrypt_code: 0,
            encrypt_random_key: None,
            encrypt_chat_msg: None,
        },
        media,
    }
}

/// Turns an envelope item into a record, decrypting it when it is complete.
/// Items without a msgid get a stable synthetic one so they are stored (once)
/// rather than lost; items without ciphertext are marked `incomplete`.
pub fn decrypt_item(lib: &'static Library, ring: &KeyRing, item: &ChatItem) -> Decrypted {
    let seq = item.seq.unwrap_or(0);
    let msgid = match &item.msgid {
        Some(m) => m.clone(),
        None => {
            use md5::Digest;
            let digest = md5::Md5::digest(item.raw.to_string().as_bytes());
            format!("missing_msgid_{seq}_{}", hex::encode(digest))
        }
    };
    let e = Encrypted {
        seq,
        msgid: &msgid,
        publickey_ver: item.publickey_ver.unwrap_or(0),
        encrypt_random_key: item.encrypt_random_key.as_deref().unwrap_or(""),
        encrypt_chat_msg: item.encrypt_chat_msg.as_deref().unwrap_or(""),
    };
    if item.encrypt_random_key.is_none() || item.encrypt_chat_msg.is_none() {
        let mut d = undecrypted(&e, DecryptStatus::Incomplete, 0);
        d.message.text = format!("[incomplete envelope item] {}", item.raw).chars().take(4000).collect();
        return d;
    }
    let mut d = decrypt_record(lib, ring, &e);
    if (item.msgid.is_none() || item.seq.is_none()) && d.message.decrypt_status == DecryptStatus::Ok {
        // Readable, but its envelope was broken: keep the plaintext and say so.
        d.message.decrypt_status = DecryptStatus::Incomplete;
        d.media.clear();
        d.message.status = 0;
    }
    d
}
