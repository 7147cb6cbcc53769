//! Finding every downloadable media item in a message, nested ones included.
//!
//! Media ids (`sdkfileid`) sit in the payload of image, voice, video, emotion,
//! file, meeting_voice_call and voip_doc_share messages, and inside the
//! `item[].content` of `mixed` and `chatrecord` messages — a JSON *string*
//! that may itself be a mixed or chat record (FORMAT.md §1.3, §3.1: no other
//! tool downloads those). Only those item contents are walked: a text message
//! whose content merely looks like JSON with an `sdkfileid` is not media
//! (RUST-NOTES.md §7.6).

use serde_json::Value;

use super::message::{item_type, payload};

pub use crate::model::media::{MediaKind, MediaRef};

fn str_field(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_owned)
}

fn u64_field(v: &Value, key: &str) -> Option<u64> {
    match v.get(key)? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn media_from_payload(kind: MediaKind, p: &Value, index: u32) -> Option<MediaRef> {
    let sdkfileid = str_field(p, "sdkfileid").filter(|s| !s.is_empty())?;
    Some(MediaRef {
        index,
        kind,
        sdkfileid,
        md5sum: str_field(p, "md5sum").unwrap_or_default().to_ascii_lowercase(),
        size: u64_field(p, "filesize")
            .or_else(|| u64_field(p, "voice_size"))
            .or_else(|| u64_field(p, "imagesize")),
        filename: str_field(p, "filename"),
        fileext: str_field(p, "fileext"),
        emotion_type: p.get("type").and_then(Value::as_i64),
    })
}

/// Every media item in `msg`, the message's own first (index 0), then nested
/// ones numbered from 1.
pub fn media_refs(msg: &Value) -> Vec<MediaRef> {
    let mut out = Vec::new();
    let msgtype = msg.get("msgtype").and_then(Value::as_str).unwrap_or("");
    if let (Some(kind), Some(p)) = (MediaKind::from_msgtype(msgtype), payload(msg, msgtype))
        && let Some(m) = media_from_payload(kind, p, 0)
    {
        out.push(m);
    }
    if matches!(msgtype, "mixed" | "chatrecord")
        && let Some(p) = payload(msg, msgtype)
    {
        let mut next = 1;
        walk_items(p, &mut out, &mut next, 0);
    }
    out
}

fn walk_items(container: &Value, out: &mut Vec<MediaRef>, next: &mut u32, depth: usize) {
    if depth > 8 {
        return;
    }
    let Some(items) = container.get("item").and_then(Value::as_array) else { return };
    for item in items {
        let t = item_type(item.get("type").and_then(Value::as_str).unwrap_or(""));
        let content = match item.get("content") {
            Some(Value::String(text)) => super::message::parse_lenient(text.as_bytes()),
            Some(v @ Value::Object(_)) => Some(v.clone()),
            _ => None,
        };
        let Some(content) = content else { continue };
        if let Some(kind) = MediaKind::from_msgtype(&t) {
            // The item's fields sit at the top level of its content (or, in
            // some records, under a key named after the type).
            let p = content.get(kind.as_str()).unwrap_or(&content);
            if let Some(m) = media_from_payload(kind, p, *next) {
                out.push(m);
                *next += 1;
            }
        } else if matches!(t.as_str(), "mixed" | "chatrecord") {
            let inner = content.get(t.as_str()).unwrap_or(&content);
            walk_items(inner, out, next, depth + 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn examples() -> Value {
        serde_json::from_str(include_str!("../../tests/data/EXAMPLES.json")).unwrap()
    }

    #[test]
    fn finds_top_level_media_of_every_media_type() {
        let ex = examples();
        for (name, kind) in [
            ("image", MediaKind::Image),
            ("voice", MediaKind::Voice),
            ("video", MediaKind::Video),
            ("emotion", MediaKind::Emotion),
            ("file", MediaKind::File),
            ("meeting_voice_call", MediaKind::MeetingVoiceCall),
            ("voip_doc_share", MediaKind::VoipDocShare),
        ] {
            let refs = media_refs(&ex[name]);
            assert_eq!(refs.len(), 1, "{name}");
            assert_eq!((refs[0].index, refs[0].kind), (0, kind), "{name}");
            assert!(!refs[0].sdkfileid.is_empty());
        }
        assert_eq!(media_refs(&ex["meeting_voice_call"])[0].md5sum, "");
        let file = &media_refs(&ex["file"])[0];
        assert!(file.filename.is_some() && file.size.is_some());
    }

    #[test]
    fn finds_media_nested_in_mixed_and_chatrecord() {
        let ex = examples();
        let refs = media_refs(&ex["mixed"]);
        assert_eq!(refs.len(), 1);
        assert_eq!((refs[0].index, refs[0].kind), (1, MediaKind::Image));
        assert_eq!(refs[0].md5sum, "abc1335c48cc080a6f0c20f65bdacb28");
        let refs = media_refs(&ex["chatrecord"]);
        assert_eq!(refs.len(), 1);
        assert_eq!(refs[0].size, Some(10240));
        // A chat record holding a mixed item holding a file.
        let inner_mixed = serde_json::json!({"item": [
            {"type": "file", "content": "{\"filename\":\"a.pdf\",\"fileext\":\"pdf\",\"sdkfileid\":\"F1\",\"md5sum\":\"\",\"filesize\":3}"},
            {"type": "image", "content": "{\"sdkfileid\":\"F2\",\"md5sum\":\"AB\",\"filesize\":4}"}
        ]});
        let msg = serde_json::json!({"msgtype": "chatrecord", "chatrecord": {"title": "t", "item": [
            {"type": "ChatRecordText", "content": "{\"content\":\"{\\\"sdkfileid\\\":\\\"not-media\\\"}\"}"},
            {"type": "ChatRecordMixed", "content": inner_mixed.to_string()},
            {"type": "ChatRecordVideo", "content": "{\"sdkfileid\":\"F3\",\"md5sum\":\"cd\",\"filesize\":5}"}
        ]}});
        let refs = media_refs(&msg);
        let ids: Vec<_> = refs.iter().map(|r| (r.index, r.sdkfileid.as_str(), r.kind)).collect();
        assert_eq!(
            ids,
            vec![(1, "F1", MediaKind::File), (2, "F2", MediaKind::Image), (3, "F3", MediaKind::Video)]
        );
        assert_eq!(refs[1].md5sum, "ab");
    }

    #[test]
    fn text_that_looks_like_media_is_not_media() {
        let msg = serde_json::json!({"msgtype": "text", "text": {"content": "{\"sdkfileid\":\"x\"}"}});
        assert!(media_refs(&msg).is_empty());
    }
}
