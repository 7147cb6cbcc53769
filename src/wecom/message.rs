//! Decrypted messages: lenient parsing, the fields we index, and a searchable
//! text rendering for every type (FORMAT.md §1.2–§1.3, §4).

use serde_json::Value;

/// Makes a copy of `raw` that strict JSON parsers accept: raw control bytes
/// (< 0x20) inside strings become `\u00XX` escapes. Real plaintexts carry them
/// (RUST-NOTES.md §7.5); the stored `msgdata` stays byte-for-byte, only this
/// copy is used to read fields.
pub fn escape_controls_in_strings(raw: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if !has_control_in_string(raw) {
        return std::borrow::Cow::Borrowed(raw);
    }
    let mut out = Vec::with_capacity(raw.len() + 16);
    let (mut in_string, mut escaped) = (false, false);
    for &b in raw {
        if in_string {
            if escaped {
                escaped = false;
                out.push(b);
            } else if b == b'\\' {
                escaped = true;
                out.push(b);
            } else if b == b'"' {
                in_string = false;
                out.push(b);
            } else if b < 0x20 {
                out.extend_from_slice(format!("\\u{b:04x}").as_bytes());
            } else {
                out.push(b);
            }
        } else {
            if b == b'"' {
                in_string = true;
            }
            out.push(b);
        }
    }
    std::borrow::Cow::Owned(out)
}

fn has_control_in_string(raw: &[u8]) -> bool {
    let (mut in_string, mut escaped) = (false, false);
    for &b in raw {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            } else if b < 0x20 {
                return true;
            }
        } else if b == b'"' {
            in_string = true;
        }
    }
    false
}

/// Parses a plaintext leniently; `None` when it is not a JSON object even so.
///
/// Strict first; then, for plaintexts a strict parser refuses although they
/// are JSON in every other way (issue #9), a lossy copy: invalid UTF-8 becomes
/// U+FFFD, and so do `\uD800`–`\uDFFF` escapes that are not a proper pair.
/// Only the columns are read from that copy; `msgdata` keeps the exact bytes.
pub fn parse_lenient(raw: &[u8]) -> Option<Value> {
    let fixed = escape_controls_in_strings(raw);
    match serde_json::from_slice::<Value>(&fixed) {
        Ok(v @ Value::Object(_)) => return Some(v),
        Ok(_) => return None,
        Err(_) => {}
    }
    let lossy = String::from_utf8_lossy(&fixed);
    let repaired = replace_lone_surrogates(&lossy);
    match serde_json::from_str::<Value>(&repaired) {
        Ok(v @ Value::Object(_)) => Some(v),
        _ => None,
    }
}

/// Replaces `\uXXXX` escapes of UTF-16 surrogates that do not form a
/// high-low pair with `\ufffd` (serde_json, rightly, refuses them), leaving
/// everything else, escaped backslashes included, as it is.
pub fn replace_lone_surrogates(text: &str) -> std::borrow::Cow<'_, str> {
    fn unit_at(b: &[u8], i: usize) -> Option<u16> {
        if b.get(i) != Some(&b'\\') || !matches!(b.get(i + 1), Some(b'u')) {
            return None;
        }
        let hex = std::str::from_utf8(b.get(i + 2..i + 6)?).ok()?;
        u16::from_str_radix(hex, 16).ok()
    }
    let b = text.as_bytes();
    let mut out: Option<String> = None;
    let (mut i, mut copied) = (0, 0);
    let (mut in_string, mut escaped) = (false, false);
    while i < b.len() {
        let c = b[i];
        if !in_string {
            in_string = c == b'"';
            i += 1;
            continue;
        }
        if escaped {
            escaped = false;
            i += 1;
            continue;
        }
        match c {
            b'"' => in_string = false,
            b'\\' => {
                if let Some(u) = unit_at(b, i) {
                    let paired = (0xD800..0xDC00).contains(&u)
                        && unit_at(b, i + 6).is_some_and(|l| (0xDC00..0xE000).contains(&l));
                    if paired {
                        i += 12;
                        continue;
                    }
                    if (0xD800..0xE000).contains(&u) {
                        let o = out.get_or_insert_with(|| String::with_capacity(text.len()));
                        o.push_str(&text[copied..i]);
                        o.push_str("\\ufffd");
                        i += 6;
                        copied = i;
                        continue;
                    }
                }
                escaped = true;
            }
            _ => {}
        }
        i += 1;
    }
    match out {
        Some(mut o) => {
            o.push_str(&text[copied..]);
            std::borrow::Cow::Owned(o)
        }
        None => std::borrow::Cow::Borrowed(text),
    }
}

/// The fields of a message we store in their own columns.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MessageFields {
    /// send / recall / switch.
    pub action: String,
    /// Sender; for switch records, the user.
    pub from: String,
    /// Recipients, as a JSON array text.
    pub tolist: String,
    /// Group id, "" for 1:1.
    pub roomid: String,
    /// Type; "switch" for switch records (which have none).
    pub msgtype: String,
    /// ms UTC; switch records use `time`.
    pub msgtime: i64,
    /// Searchable rendering.
    pub text: String,
}

fn s(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(x)) => x.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

fn i(v: &Value, key: &str) -> i64 {
    match v.get(key) {
        Some(Value::Number(n)) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)).unwrap_or(0),
        Some(Value::String(x)) => x.parse().unwrap_or(0),
        _ => 0,
    }
}

/// The payload object of a message: named after its type, except where
/// Tencent chose otherwise (FORMAT.md §1.2).
pub fn payload<'a>(msg: &'a Value, msgtype: &str) -> Option<&'a Value> {
    let key = match msgtype {
        "docmsg" => "doc",
        "markdown" | "news" | "voiptext" | "qydiskfile" | "meeting_notification" => "info",
        "external_redpacket" => "redpacket",
        other => other,
    };
    msg.get(key).or_else(|| if key == "info" { msg.get(msgtype) } else { None })
}

/// Extracts the column fields from a parsed message.
pub fn fields(msg: &Value) -> MessageFields {
    let action = s(msg, "action");
    if action == "switch" {
        return MessageFields {
            action,
            from: s(msg, "user"),
            tolist: "[]".into(),
            roomid: String::new(),
            msgtype: "switch".into(),
            msgtime: i(msg, "time"),
            text: format!("[switch] {}", s(msg, "user")),
        };
    }
    let msgtype = s(msg, "msgtype");
    let tolist = match msg.get("tolist") {
        Some(v @ Value::Array(_)) => v.to_string(),
        _ => "[]".into(),
    };
    MessageFields {
        action,
        from: s(msg, "from"),
        tolist,
        roomid: s(msg, "roomid"),
        msgtime: i(msg, "msgtime"),
        text: render(msg, &msgtype, 0),
        msgtype,
    }
}

fn join(parts: impl IntoIterator<Item = String>) -> String {
    parts.into_iter().filter(|p| !p.is_empty()).collect::<Vec<_>>().join(" ")
}

/// A JSON string that holds JSON (mixed/chatrecord item content).
fn inner(content: &Value) -> Option<Value> {
    match content {
        Value::String(text) => parse_lenient(text.as_bytes()),
        v @ Value::Object(_) => Some(v.clone()),
        _ => None,
    }
}

/// Renders `msg` (or a nested item whose fields sit at the top level when
/// `msgtype` is given but no payload object exists) as searchable text.
fn render(msg: &Value, msgtype: &str, depth: usize) -> String {
    if depth > 8 {
        return String::new();
    }
    let empty = Value::Null;
    let p = payload(msg, msgtype).unwrap_or(msg);
    let p = if p.is_null() { &empty } else { p };
    match msgtype {
        "text" => s(p, "content"),
        "markdown" => s(p, "content"),
        "image" => "[image]".into(),
        "voice" => format!("[voice {}s]", i(p, "play_length")),
        "video" => format!("[video {}s]", i(p, "play_length")),
        "emotion" => "[emotion]".into(),
        "file" => join([s(p, "filename")]),
        "revoke" => format!("[recall] {}", s(p, "pre_msgid")),
        "agree" | "disagree" => format!("[{msgtype}] {}", s(p, "userid")),
        "card" => join(["[card]".into(), s(p, "corpname"), s(p, "userid")]),
        "location" => join([s(p, "title"), s(p, "address")]),
        "link" => join([s(p, "title"), s(p, "description"), s(p, "link_url")]),
        "weapp" => join([s(p, "title"), s(p, "description"), s(p, "displayname")]),
        "todo" => join([s(p, "title"), s(p, "content")]),
        "vote" => {
            let items = msg
                .get("voteitem")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect::<Vec<_>>().join(" "));
            let p = msg.get("vote").unwrap_or(msg);
            let items = items.or_else(|| {
                p.get("voteitem").and_then(Value::as_array).map(|a| {
                    a.iter().filter_map(Value::as_str).map(str::to_owned).collect::<Vec<_>>().join(" ")
                })
            });
            join([s(p, "votetitle"), items.unwrap_or_default()])
        }
        "collect" => {
            let ques = p
                .get("details")
                .and_then(Value::as_array)
                .map(|a| a.iter().map(|d| s(d, "ques")).collect::<Vec<_>>().join(" "));
            join([s(p, "room_name"), s(p, "title"), ques.unwrap_or_default()])
        }
        "redpacket" | "external_redpacket" => join(["[redpacket]".into(), s(p, "wish")]),
        "meeting" => join([s(p, "topic"), s(p, "address"), s(p, "remarks")]),
        "meeting_notification" => s(p, "content"),
        "docmsg" => join([s(p, "title"), s(p, "link_url")]),
        "news" => p
            .get("item")
            .and_then(Value::as_array)
            .map(|a| join(a.iter().map(|it| join([s(it, "title"), s(it, "description"), s(it, "url")]))))
            .unwrap_or_default(),
        "calendar" => join([s(p, "title"), s(p, "place"), s(p, "remarks")]),
        "mixed" | "chatrecord" => {
            let title = s(p, "title");
            let items = p.get("item").and_then(Value::as_array).map(|a| {
                join(a.iter().map(|it| {
                    let t = item_type(&s(it, "type"));
                    match it.get("content").and_then(inner) {
                        Some(c) => render_item(&c, &t, depth + 1),
                        None => String::new(),
                    }
                }))
            });
            join([title, items.unwrap_or_default()])
        }
        "meeting_voice_call" => {
            let files = p
                .get("demofiledata")
                .and_then(Value::as_array)
                .map(|a| join(a.iter().map(|d| s(d, "filename"))));
            join(["[meeting voice call]".into(), files.unwrap_or_default()])
        }
        "voip_doc_share" => join([s(p, "filename")]),
        "sphfeed" => join([s(p, "sph_name"), s(p, "feed_desc")]),
        "voiptext" => format!("[call {}s]", i(p, "callduration")),
        "qydiskfile" => s(p, "filename"),
        _ => String::new(),
    }
}

/// Inner items carry their fields at the top level of the content JSON.
fn render_item(content: &Value, msgtype: &str, depth: usize) -> String {
    if payload(content, msgtype).is_some() {
        render(content, msgtype, depth)
    } else {
        let wrapped = serde_json::json!({ msgtype: content });
        render(&wrapped, msgtype, depth)
    }
}

/// Maps an item `type` (`image`, `ChatRecordImage`, `ChatRecordMixed`…) to a msgtype.
pub fn item_type(t: &str) -> String {
    let t = t.strip_prefix("ChatRecord").unwrap_or(t);
    let lower = t.to_ascii_lowercase();
    match lower.as_str() {
        "doc" => "docmsg".into(),
        _ => lower,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_bytes_in_strings_are_escaped_for_parsing_only() {
        let raw = b"{\"msgtype\":\"text\",\"text\":{\"content\":\"a\x01b\x1fc\"}}";
        assert!(serde_json::from_slice::<Value>(raw).is_err());
        let v = parse_lenient(raw).unwrap();
        assert_eq!(v["text"]["content"], "a\u{1}b\u{1f}c");
        // Clean input is not copied.
        assert!(matches!(escape_controls_in_strings(b"{\"a\":\"b\"}"), std::borrow::Cow::Borrowed(_)));
        // Escaped quotes keep the string state right.
        let raw = b"{\"a\":\"x\\\"\x02\"}";
        assert_eq!(parse_lenient(raw).unwrap()["a"], "x\"\u{2}");
        assert_eq!(parse_lenient(b"[1,2]"), None);
        assert_eq!(parse_lenient(b"{not json"), None);
    }

    #[test]
    fn invalid_utf8_and_lone_surrogates_still_parse() {
        let raw = b"{\"msgtype\":\"text\",\"from\":\"a\xffb\",\"text\":{\"content\":\"x\\ud83dy\"}}";
        let v = parse_lenient(raw).expect("lossy parse");
        assert_eq!(v["from"], "a\u{fffd}b");
        assert_eq!(v["text"]["content"], "x\u{fffd}y");
        // A proper pair and an escaped backslash stay as they are.
        let t = r#"{"a":"\ud83d\ude00","b":"\\ud83d","c":"\udc00"}"#;
        assert_eq!(replace_lone_surrogates(t), r#"{"a":"\ud83d\ude00","b":"\\ud83d","c":"\ufffd"}"#);
        let v = parse_lenient(t.as_bytes()).unwrap();
        assert_eq!(v["a"], "\u{1f600}");
        assert_eq!(v["b"], "\\ud83d");
    }

    #[test]
    fn every_example_type_renders_and_has_fields() {
        let examples: Value =
            serde_json::from_str(include_str!("../../tests/data/EXAMPLES.json")).expect("examples parse");
        let mut rendered = 0;
        for (name, msg) in examples.as_object().unwrap() {
            if name.starts_with('_') {
                continue;
            }
            let f = fields(msg);
            assert!(!f.msgtype.is_empty(), "{name}");
            assert!(f.msgtime > 0, "{name}");
            assert!(!f.text.is_empty(), "{name}: no text rendering");
            rendered += 1;
        }
        assert_eq!(rendered, 32);
    }

    #[test]
    fn renders_the_searchable_parts() {
        let examples: Value = serde_json::from_str(include_str!("../../tests/data/EXAMPLES.json")).unwrap();
        let f = fields(&examples["switch"]);
        assert_eq!((f.msgtype.as_str(), f.from.as_str(), f.msgtime), ("switch", "carol.wu", 1741596096000));
        let f = fields(&examples["mixed"]);
        assert!(f.text.contains("whiteboard photo"), "{}", f.text);
        assert!(f.text.contains("[image]"), "{}", f.text);
        let f = fields(&examples["chatrecord"]);
        assert!(f.text.contains("Chat history") && f.text.contains("review to 3pm"), "{}", f.text);
        let f = fields(&examples["voip_doc_share"]);
        assert_eq!(f.text, "handout.pdf");
        assert_eq!(item_type("ChatRecordImage"), "image");
        assert_eq!(item_type("ChatRecordMixed"), "mixed");
    }
}
