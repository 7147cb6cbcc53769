//! A message's downloadable media items, as data: what `wecom::media_refs` finds
//! in a message and `store::media_jobs` queues. Imports nothing of this crate.

/// The kinds of downloadable media.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaKind {
    /// jpg (or png/gif by content).
    Image,
    /// AMR.
    Voice,
    /// mp4.
    Video,
    /// Sticker: gif (type 1) or png (type 2).
    Emotion,
    /// Any file, with its own name and extension.
    File,
    /// Meeting voice call recording.
    MeetingVoiceCall,
    /// Document shared in a voice/video call.
    VoipDocShare,
}

impl MediaKind {
    /// The msgtype that carries this kind.
    pub fn as_str(self) -> &'static str {
        match self {
            MediaKind::Image => "image",
            MediaKind::Voice => "voice",
            MediaKind::Video => "video",
            MediaKind::Emotion => "emotion",
            MediaKind::File => "file",
            MediaKind::MeetingVoiceCall => "meeting_voice_call",
            MediaKind::VoipDocShare => "voip_doc_share",
        }
    }

    /// Parses a msgtype.
    pub fn from_msgtype(t: &str) -> Option<MediaKind> {
        Some(match t {
            "image" => MediaKind::Image,
            "voice" => MediaKind::Voice,
            "video" => MediaKind::Video,
            "emotion" => MediaKind::Emotion,
            "file" => MediaKind::File,
            "meeting_voice_call" => MediaKind::MeetingVoiceCall,
            "voip_doc_share" => MediaKind::VoipDocShare,
            _ => return None,
        })
    }
}

/// One media item of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaRef {
    /// 0 for the message's own media; 1, 2, … for nested items in document order.
    pub index: u32,
    /// Its kind.
    pub kind: MediaKind,
    /// The id to pass to GetMediaData.
    pub sdkfileid: String,
    /// Lowercase hex md5 as the message states it ("" when it gives none).
    pub md5sum: String,
    /// Size in bytes as stated (filesize / voice_size / imagesize).
    pub size: Option<u64>,
    /// The file name the message gives (file, voip_doc_share), unsanitised.
    pub filename: Option<String>,
    /// The extension the message gives (file), unsanitised.
    pub fileext: Option<String>,
    /// Emotion type: 1 gif, 2 png.
    pub emotion_type: Option<i64>,
}
