//! The 32 record kinds of FORMAT.md §1.3 / EXAMPLES.json, with their JSON literals.

/// A message type (plus the `action=switch` record, which has no `msgtype`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum MsgKind {
    Text,
    Image,
    Revoke,
    Agree,
    Disagree,
    Voice,
    Video,
    Card,
    Location,
    Emotion,
    File,
    Link,
    Weapp,
    ChatRecord,
    Todo,
    Vote,
    Collect,
    RedPacket,
    Meeting,
    MeetingNotification,
    Switch,
    DocMsg,
    Markdown,
    News,
    Calendar,
    Mixed,
    MeetingVoiceCall,
    VoipDocShare,
    ExternalRedPacket,
    SphFeed,
    VoipText,
    QyDiskFile,
}

impl MsgKind {
    /// All kinds, in EXAMPLES.json order.
    pub const ALL: [MsgKind; 32] = [
        MsgKind::Text,
        MsgKind::Image,
        MsgKind::Revoke,
        MsgKind::Agree,
        MsgKind::Disagree,
        MsgKind::Voice,
        MsgKind::Video,
        MsgKind::Card,
        MsgKind::Location,
        MsgKind::Emotion,
        MsgKind::File,
        MsgKind::Link,
        MsgKind::Weapp,
        MsgKind::ChatRecord,
        MsgKind::Todo,
        MsgKind::Vote,
        MsgKind::Collect,
        MsgKind::RedPacket,
        MsgKind::Meeting,
        MsgKind::MeetingNotification,
        MsgKind::Switch,
        MsgKind::DocMsg,
        MsgKind::Markdown,
        MsgKind::News,
        MsgKind::Calendar,
        MsgKind::Mixed,
        MsgKind::MeetingVoiceCall,
        MsgKind::VoipDocShare,
        MsgKind::ExternalRedPacket,
        MsgKind::SphFeed,
        MsgKind::VoipText,
        MsgKind::QyDiskFile,
    ];

    /// The name used in EXAMPLES.json: the `msgtype` literal, or `switch`.
    pub fn name(self) -> &'static str {
        match self {
            MsgKind::Text => "text",
            MsgKind::Image => "image",
            MsgKind::Revoke => "revoke",
            MsgKind::Agree => "agree",
            MsgKind::Disagree => "disagree",
            MsgKind::Voice => "voice",
            MsgKind::Video => "video",
            MsgKind::Card => "card",
            MsgKind::Location => "location",
            MsgKind::Emotion => "emotion",
            MsgKind::File => "file",
            MsgKind::Link => "link",
            MsgKind::Weapp => "weapp",
            MsgKind::ChatRecord => "chatrecord",
            MsgKind::Todo => "todo",
            MsgKind::Vote => "vote",
            MsgKind::Collect => "collect",
            MsgKind::RedPacket => "redpacket",
            MsgKind::Meeting => "meeting",
            MsgKind::MeetingNotification => "meeting_notification",
            MsgKind::Switch => "switch",
            MsgKind::DocMsg => "docmsg",
            MsgKind::Markdown => "markdown",
            MsgKind::News => "news",
            MsgKind::Calendar => "calendar",
            MsgKind::Mixed => "mixed",
            MsgKind::MeetingVoiceCall => "meeting_voice_call",
            MsgKind::VoipDocShare => "voip_doc_share",
            MsgKind::ExternalRedPacket => "external_redpacket",
            MsgKind::SphFeed => "sphfeed",
            MsgKind::VoipText => "voiptext",
            MsgKind::QyDiskFile => "qydiskfile",
        }
    }

    /// The `msgtype` literal; `None` for switch records.
    pub fn msgtype(self) -> Option<&'static str> {
        (self != MsgKind::Switch).then(|| self.name())
    }

    /// The key of the payload object (FORMAT.md §1.2 exceptions: `doc`, `info`, `redpacket`);
    /// `None` for vote (top-level fields) and switch.
    pub fn payload_key(self) -> Option<&'static str> {
        match self {
            MsgKind::Switch | MsgKind::Vote => None,
            MsgKind::DocMsg => Some("doc"),
            MsgKind::Markdown
            | MsgKind::News
            | MsgKind::MeetingNotification
            | MsgKind::VoipText
            | MsgKind::QyDiskFile => Some("info"),
            MsgKind::ExternalRedPacket => Some("redpacket"),
            k => Some(k.name()),
        }
    }

    /// Relative frequency in generated traffic (per mille-ish weights).
    pub(crate) fn weight(self) -> u32 {
        match self {
            MsgKind::Text => 450,
            MsgKind::Image => 60,
            MsgKind::Revoke => 25,
            MsgKind::Agree => 10,
            MsgKind::Disagree => 5,
            MsgKind::Voice => 40,
            MsgKind::Video => 6,
            MsgKind::Card => 10,
            MsgKind::Location => 10,
            MsgKind::Emotion => 25,
            MsgKind::File => 20,
            MsgKind::Link => 20,
            MsgKind::Weapp => 10,
            MsgKind::ChatRecord => 15,
            MsgKind::Todo => 5,
            MsgKind::Vote => 5,
            MsgKind::Collect => 5,
            MsgKind::RedPacket => 10,
            MsgKind::Meeting => 5,
            MsgKind::MeetingNotification => 5,
            MsgKind::Switch => 10,
            MsgKind::DocMsg => 10,
            MsgKind::Markdown => 15,
            MsgKind::News => 10,
            MsgKind::Calendar => 5,
            MsgKind::Mixed => 20,
            MsgKind::MeetingVoiceCall => 5,
            MsgKind::VoipDocShare => 5,
            MsgKind::ExternalRedPacket => 5,
            MsgKind::SphFeed => 5,
            MsgKind::VoipText => 10,
            MsgKind::QyDiskFile => 5,
        }
    }
}

impl std::fmt::Display for MsgKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
