//! Renders stored records as readable HTML, every message type included.
//!
//! Shared by the browser (/ui/) and the auditor export's offline `index.html`,
//! so an auditor sees exactly what the compliance officer saw. The only
//! difference is where media lives, which the caller answers through
//! [`MediaLinks`]. Everything from a message is escaped by maud; links are
//! emitted only for `http(s)` URLs, so a hostile message cannot inject script.

use std::collections::HashSet;

use maud::{Markup, PreEscaped, html};
use serde_json::Value;

use crate::store::chain::StoredRecord;
use crate::wecom::media_refs::MediaKind;
use crate::wecom::message::{item_type, parse_lenient, payload};

/// Where a record's media can be fetched, as the page that shows it sees it.
pub trait MediaLinks {
    /// The URL of item `index` of `msgid` (0: the message's own media), and of
    /// its MP3 for a voice; None while it is not downloaded (with its state).
    fn media(&self, msgid: &str, index: u32) -> MediaState;
}

/// A media item as a page can show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaState {
    /// Downloaded: the file's URL, and the MP3 for a voice when transcoded.
    Ready {
        /// The file.
        url: String,
        /// The MP3 (voice only).
        mp3_url: Option<String>,
    },
    /// Not (yet) available, with the queue state (pending, failed, …).
    Missing(String),
}

/// The stylesheet of the browser and of exports (inline in exports).
pub const STYLE: &str = include_str!("style.css");

/// Renders a run of records of one conversation (in time order).
pub fn conversation(records: &[StoredRecord], media: &dyn MediaLinks) -> Markup {
    let revoked: HashSet<String> = records
        .iter()
        .filter(|r| r.msgtype == "revoke")
        .filter_map(parsed)
        .filter_map(|v| v.get("revoke")?.get("pre_msgid")?.as_str().map(str::to_owned))
        .collect();
    html! {
        ol.messages {
            @for r in records {
                (record(r, revoked.contains(&r.msgid), media))
            }
        }
    }
}

fn parsed(r: &StoredRecord) -> Option<Value> {
    r.msgdata.as_deref().and_then(parse_lenient)
}

/// Formats a time in ms as `YYYY-MM-DD HH:MM:SS` UTC.
pub fn time_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| ms.to_string())
}

/// Formats a time in seconds (as some payloads give them).
fn time_s(v: &Value) -> String {
    match v.as_i64().or_else(|| v.as_str().and_then(|s| s.parse().ok())) {
        Some(s) if s > 100_000_000_000 => time_ms(s),
        Some(s) => time_ms(s * 1000),
        None => text_of(v),
    }
}

/// One record.
pub fn record(r: &StoredRecord, revoked: bool, media: &dyn MediaLinks) -> Markup {
    let anchor = format!("m-{}", r.seq);
    let classes = if revoked { "msg revoked" } else { "msg" };
    let body = match (r.decrypt_status.as_str(), parsed(r)) {
        ("ok", Some(v)) => message_body(&v, &r.msgid, media),
        ("ok" | "unparsed", _) => html! {
            p.undecrypted { "Stored plaintext is not JSON; shown as received:" }
            pre { (String::from_utf8_lossy(r.msgdata.as_deref().unwrap_or_default())) }
        },
        (status, _) => html! {
            p.undecrypted {
                "Could not be decrypted (" (status)
                @if r.decrypt_code != 0 { ", SDK code " (r.decrypt_code) }
                "). Kept as received; `redecrypt` retries it once its key is added."
            }
        },
    };
    let sender = if r.action == "switch" { "" } else { r.msgfrom.as_str() };
    html! {
        li class=(classes) id=(anchor) data-msgtype=(r.msgtype) data-seq=(r.seq) {
            div.meta {
                span.from { (sender) }
                " "
                time { (time_ms(r.msgtime)) }
                " "
                span.type { (if r.msgtype.is_empty() { r.decrypt_status.as_str() } else { r.msgtype.as_str() }) }
                @if revoked { " " span.badge { "revoked by the sender" } }
                " " a.seq href=(format!("#m-{}", r.seq)) { "seq " (r.seq) }
            }
            div.body { (body) }
        }
    }
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Only http(s) URLs become links.
fn safe_url(u: &str) -> Option<&str> {
    let lower = u.trim_start().to_ascii_lowercase();
    (lower.starts_with("https://") || lower.starts_with("http://")).then_some(u.trim_start())
}

fn link(url: &str, label: &str) -> Markup {
    match safe_url(url) {
        Some(u) => html! { a href=(u) rel="noopener noreferrer" target="_blank" { (label) } },
        None => html! { span { (label) } },
    }
}

fn size(v: Option<&Value>) -> String {
    match v.and_then(|v| v.as_u64().or_else(|| v.as_str().and_then(|s| s.parse().ok()))) {
        Some(n) if n >= 1 << 20 => format!("{:.1} MB", n as f64 / (1u64 << 20) as f64),
        Some(n) if n >= 1 << 10 => format!("{:.1} KB", n as f64 / 1024.0),
        Some(n) => format!("{n} B"),
        None => String::new(),
    }
}

/// Numbers nested media the way the media queue does (wecom::media_refs).
struct Counter(u32);

fn message_body(msg: &Value, msgid: &str, media: &dyn MediaLinks) -> Markup {
    if s(msg, "action") == "switch" {
        let at = msg.get("time").map(time_s).unwrap_or_default();
        return html! { p.switch { "⇄ " (s(msg, "user")) " switched to another enterprise account at " (at) } };
    }
    let msgtype = s(msg, "msgtype");
    let mut counter = Counter(1);
    typed(msgtype, msg, payload(msg, msgtype), msgid, Some(0), &mut counter, media, 0)
}

/// Renders a payload of `msgtype`. `own_index` is the media index of this
/// payload (0 for the message itself, the counter's next value for nested items).
#[allow(clippy::too_many_arguments)]
fn typed(
    msgtype: &str,
    msg: &Value,
    p: Option<&Value>,
    msgid: &str,
    own_index: Option<u32>,
    counter: &mut Counter,
    media: &dyn MediaLinks,
    depth: usize,
) -> Markup {
    let empty = Value::Null;
    let p = p.unwrap_or(&empty);
    let index = own_index.unwrap_or(0);
    match msgtype {
        "text" => html! { p.text { (s(p, "content")) } },
        "markdown" => html! { div.markdown { (markdown(s(p, "content"))) } },
        "image" => media_block(MediaKind::Image, p, msgid, index, media),
        "voice" => media_block(MediaKind::Voice, p, msgid, index, media),
        "video" => media_block(MediaKind::Video, p, msgid, index, media),
        "emotion" => media_block(MediaKind::Emotion, p, msgid, index, media),
        "file" => media_block(MediaKind::File, p, msgid, index, media),
        "meeting_voice_call" => media_block(MediaKind::MeetingVoiceCall, p, msgid, index, media),
        "voip_doc_share" => media_block(MediaKind::VoipDocShare, p, msgid, index, media),
        "revoke" => html! { p.revoke { "↶ Revoked message " code { (s(p, "pre_msgid")) } } },
        "agree" => {
            html! { p.consent { "✓ Agreed to message archiving at " (p.get("agree_time").map(time_s).unwrap_or_default()) } }
        }
        "disagree" => {
            html! { p.consent { "✗ Declined message archiving at " (p.get("disagree_time").map(time_s).unwrap_or_default()) } }
        }
        "card" => {
            html! { div.card { "Contact card: " strong { (s(p, "userid")) } " (" (s(p, "corpname")) ")" } }
        }
        "location" => {
            let (lat, lon) =
                (text_of(p.get("latitude").unwrap_or(&empty)), text_of(p.get("longitude").unwrap_or(&empty)));
            html! { div.location { "📍 " strong { (s(p, "title")) } " " (s(p, "address")) " (" (lat) ", " (lon) ")" } }
        }
        "link" => html! {
            div.card {
                strong { (link(s(p, "link_url"), s(p, "title"))) }
                p { (s(p, "description")) }
            }
        },
        "weapp" => {
            html! { div.card { "Mini program " strong { (s(p, "displayname")) } ": " (s(p, "title")) p { (s(p, "description")) } } }
        }
        "docmsg" => {
            html! { div.card { "Document " strong { (link(s(p, "link_url"), s(p, "title"))) } " by " (s(p, "doc_creator")) } }
        }
        "news" => html! {
            div.card {
                @for item in p.get("item").and_then(Value::as_array).into_iter().flatten() {
                    div { strong { (link(s(item, "url"), s(item, "title"))) } p { (s(item, "description")) } }
                }
            }
        },
        "vote" => html! {
            div.card {
                "Vote: " strong { (s(msg, "votetitle")) }
                ul { @for i in msg.get("voteitem").and_then(Value::as_array).into_iter().flatten() { li { (text_of(i)) } } }
            }
        },
        "calendar" => html! {
            div.card {
                "Calendar: " strong { (s(p, "title")) } " "
                (p.get("starttime").map(time_s).unwrap_or_default()) " – " (p.get("endtime").map(time_s).unwrap_or_default())
                " " (s(p, "place"))
            }
        },
        "meeting" => html! {
            div.card {
                "Meeting: " strong { (s(p, "topic")) } " "
                (p.get("starttime").map(time_s).unwrap_or_default()) " – " (p.get("endtime").map(time_s).unwrap_or_default())
                " " (s(p, "address"))
            }
        },
        "mixed" | "chatrecord" => nested(msgtype, p, msgid, counter, media, depth),
        _ => generic(msgtype, p),
    }
}

fn nested(
    msgtype: &str,
    p: &Value,
    msgid: &str,
    counter: &mut Counter,
    media: &dyn MediaLinks,
    depth: usize,
) -> Markup {
    if depth > 8 {
        return html! { p { "(nested too deep)" } };
    }
    let items: Vec<&Value> =
        p.get("item").and_then(Value::as_array).map(|a| a.iter().collect()).unwrap_or_default();
    html! {
        div class=(if msgtype == "chatrecord" { "chatrecord" } else { "mixed" }) {
            @if msgtype == "chatrecord" { p.title { "Forwarded chat record: " (s(p, "title")) } }
            @for item in items {
                @let t = item_type(s(item, "type"));
                @let content = match item.get("content") {
                    Some(Value::String(text)) => parse_lenient(text.as_bytes()),
                    Some(v @ Value::Object(_)) => Some(v.clone()),
                    _ => None,
                };
                div.item {
                    @if msgtype == "chatrecord" {
                        span.meta { (item.get("msgtime").map(time_s).unwrap_or_default()) }
                    }
                    @match content {
                        None => p { (text_of(item.get("content").unwrap_or(&Value::Null))) },
                        Some(c) => {
                            @let inner = c.get(t.as_str()).unwrap_or(&c).clone();
                            @let own = match MediaKind::from_msgtype(&t) {
                                Some(_) if !s(&inner, "sdkfileid").is_empty() => {
                                    let i = counter.0;
                                    counter.0 += 1;
                                    Some(i)
                                }
                                _ => None,
                            };
                            @if matches!(t.as_str(), "mixed" | "chatrecord") {
                                (nested(&t, &inner, msgid, counter, media, depth + 1))
                            } @else {
                                (typed(&t, &c, Some(&inner), msgid, own.or(Some(u32::MAX)), counter, media, depth + 1))
                            }
                        }
                    }
                }
            }
        }
    }
}

fn media_block(kind: MediaKind, p: &Value, msgid: &str, index: u32, media: &dyn MediaLinks) -> Markup {
    let state =
        if index == u32::MAX { MediaState::Missing("no media id".into()) } else { media.media(msgid, index) };
    let label = match kind {
        MediaKind::File | MediaKind::VoipDocShare => s(p, "filename").to_owned(),
        MediaKind::Voice => format!("voice, {} s", text_of(p.get("play_length").unwrap_or(&Value::Null))),
        MediaKind::Video => format!("video, {} s", text_of(p.get("play_length").unwrap_or(&Value::Null))),
        MediaKind::MeetingVoiceCall => "meeting voice call recording".to_owned(),
        MediaKind::Image => "image".to_owned(),
        MediaKind::Emotion => "sticker".to_owned(),
    };
    let sz = size(p.get("filesize").or_else(|| p.get("voice_size")).or_else(|| p.get("imagesize")));
    html! {
        div.media data-kind=(kind.as_str()) {
            @match &state {
                MediaState::Ready { url, mp3_url } => {
                    @match kind {
                        MediaKind::Image | MediaKind::Emotion => a href=(url) target="_blank" { img src=(url) alt=(label) loading="lazy"; },
                        MediaKind::Voice => {
                            @if let Some(mp3) = mp3_url {
                                audio controls preload="none" src=(mp3) {}
                            } @else {
                                span { "(MP3 not available) " }
                            }
                            " " a href=(url) download { "AMR" }
                        },
                        MediaKind::Video => video controls preload="metadata" src=(url) {},
                        _ => {},
                    }
                    " " a.download href=(url) download { "⬇ " (label) } " " span.size { (sz) }
                }
                MediaState::Missing(why) => {
                    span.missing { (label) " " (sz) " — media not available (" (why) ")" }
                }
            }
        }
    }
}

/// A payload nobody wrote a view for: its fields, readable.
fn generic(msgtype: &str, p: &Value) -> Markup {
    html! {
        div.card.generic {
            span.type { (msgtype) }
            (fields(p, 0))
        }
    }
}

fn fields(v: &Value, depth: usize) -> Markup {
    match v {
        Value::Object(m) if depth < 4 => html! {
            dl { @for (k, val) in m { dt { (k) } dd { (fields(val, depth + 1)) } } }
        },
        Value::Array(a) if depth < 4 => html! { ul { @for x in a { li { (fields(x, depth + 1)) } } } },
        other => html! { (text_of(other)) },
    }
}

/// A small, safe markdown: paragraphs and line breaks, **bold**, `code` and
/// [text](http…) links. Everything else is shown as written.
pub fn markdown(src: &str) -> Markup {
    let mut out = String::new();
    for (i, line) in src.lines().enumerate() {
        if i > 0 {
            out.push_str("<br>");
        }
        out.push_str(&inline(line));
    }
    PreEscaped(out)
}

fn escape(s: &str) -> String {
    maud::html! { (s) }.into_string()
}

fn inline(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("**")
            && let Some(end) = after.find("**")
        {
            out.push_str(&format!("<strong>{}</strong>", inline(&after[..end])));
            rest = &after[end + 2..];
        } else if let Some(after) = rest.strip_prefix('`')
            && let Some(end) = after.find('`')
        {
            out.push_str(&format!("<code>{}</code>", escape(&after[..end])));
            rest = &after[end + 1..];
        } else if let Some(after) = rest.strip_prefix('[')
            && let Some(mid) = after.find("](")
            && let Some(end) = after[mid + 2..].find(')')
        {
            let (label, url) = (&after[..mid], &after[mid + 2..mid + 2 + end]);
            out.push_str(&link(url, label).into_string());
            rest = &after[mid + 3 + end..];
        } else {
            let c = rest.chars().next().unwrap_or_default();
            out.push_str(&escape(&c.to_string()));
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NoMedia;
    impl MediaLinks for NoMedia {
        fn media(&self, msgid: &str, index: u32) -> MediaState {
            MediaState::Ready {
                url: format!("m/{msgid}/{index}"),
                mp3_url: Some(format!("m/{msgid}/{index}.mp3")),
            }
        }
    }

    fn stored(v: &Value) -> StoredRecord {
        StoredRecord {
            id: 1,
            msgid: s(v, "msgid").to_owned(),
            publickey_ver: 1,
            seq: 1,
            action: s(v, "action").to_owned(),
            msgfrom: s(v, "from").to_owned(),
            tolist: None,
            msgtype: if s(v, "action") == "switch" { "switch".into() } else { s(v, "msgtype").to_owned() },
            msgtime: v.get("msgtime").and_then(Value::as_i64).unwrap_or(0),
            text: None,
            sdkfield: None,
            msgdata: Some(v.to_string().into_bytes()),
            roomid: s(v, "roomid").to_owned(),
            decrypt_status: "ok".into(),
            decrypt_code: 0,
            encrypt_random_key: None,
            encrypt_chat_msg: None,
        }
    }

    #[test]
    fn every_example_type_renders_its_content() {
        let ex: Value = serde_json::from_str(include_str!("../../tests/data/EXAMPLES.json")).unwrap();
        let checks: &[(&str, &str)] = &[
            ("text", "报价单"),
            ("markdown", "<strong>Build #512 passed</strong>"),
            ("image", "<img src=\"m/7991230170215432195_1741596004100_external/0\""),
            ("voice", "<audio controls"),
            ("video", "<video controls"),
            ("file", "季度计划-示例.xlsx"),
            ("link", "href=\"https://example.com/wiki/release-checklist\""),
            ("location", "Example Office Tower"),
            ("chatrecord", "Can we move the review to 3pm?"),
            ("mixed", "whiteboard photo"),
            ("switch", "switched to another enterprise account"),
            ("vote", "Dumpling house"),
            ("revoke", "Revoked message"),
            ("calendar", "Design review"),
            ("news", "Office closed on Friday"),
            ("sphfeed", "Example Channel"),
        ];
        for (name, want) in checks {
            let html = record(&stored(&ex[name]), false, &NoMedia).into_string();
            assert!(html.contains(want), "{name}: {want:?} not in {html}");
        }
        // Nested media get the queue's indexes.
        let html = record(&stored(&ex["mixed"]), false, &NoMedia).into_string();
        assert!(html.contains("/1\""), "{html}");
        // Every example renders without panicking.
        for (name, v) in ex.as_object().unwrap() {
            if !name.starts_with('_') {
                let _ = record(&stored(v), false, &NoMedia).into_string();
            }
        }
    }

    #[test]
    fn hostile_content_is_escaped_and_unsafe_links_are_not_links() {
        let v = serde_json::json!({"msgid": "x", "action": "send", "from": "<b>", "msgtype": "markdown", "msgtime": 0,
            "info": {"content": "<script>alert(1)</script> [x](javascript:alert(1)) **<i>**"}});
        let html = record(&stored(&v), false, &NoMedia).into_string();
        assert!(!html.contains("<script>") && !html.contains("<i>") && !html.contains("<b>"), "{html}");
        assert!(!html.contains("href=\"javascript"), "{html}");
        let undecrypted = StoredRecord { decrypt_status: "no_key".into(), msgdata: None, ..stored(&v) };
        assert!(
            record(&undecrypted, false, &NoMedia).into_string().contains("Could not be decrypted (no_key")
        );
    }
}
