//! A media job's state, and the job a worker holds.

use crate::model::media::MediaKind;

/// `media_code` of a file that failed verification (size or md5) every time.
pub const CODE_CORRUPT: i32 = -1;

/// A job's state (`media_jobs.state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum JobState {
    /// Waiting (possibly until `next_attempt_at`).
    Pending,
    /// Claimed by a worker.
    Downloading,
    /// On disk and verified: the stated md5 matched.
    Done,
    /// On disk, but the platform stated no md5 (meeting_voice_call, some
    /// emotions): only the stated size, if any, and the declared type's magic
    /// bytes were checked. A state of its own so an auditor can tell the two
    /// apart; everything that serves or counts stored files takes both.
    Unverified,
    /// Gave up after bounded retries.
    Failed,
    /// The server says the media expired (10010 / 301048).
    Expired,
    /// Never matched its stated size or md5.
    Corrupt,
    /// Held back while the corp's IP is refused (10009 / 301042).
    Paused,
}

impl JobState {
    /// Every state.
    pub const ALL: [JobState; 8] = [
        JobState::Pending,
        JobState::Downloading,
        JobState::Done,
        JobState::Unverified,
        JobState::Failed,
        JobState::Expired,
        JobState::Corrupt,
        JobState::Paused,
    ];

    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Downloading => "downloading",
            JobState::Done => "done",
            JobState::Unverified => "unverified",
            JobState::Failed => "failed",
            JobState::Expired => "expired",
            JobState::Corrupt => "corrupt",
            JobState::Paused => "paused",
        }
    }

    /// Parses the stored text.
    pub fn parse(s: &str) -> Option<JobState> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// The file is in place (verified or not).
    pub fn is_stored(self) -> bool {
        matches!(self, JobState::Done | JobState::Unverified)
    }

    /// `is_stored` on the stored text.
    pub fn is_stored_str(s: &str) -> bool {
        Self::parse(s).is_some_and(Self::is_stored)
    }

    /// `is_stored` as an SQL list, for `state IN …`.
    pub const STORED_SQL: &'static str = "('done', 'unverified')";

    /// States `media retry` puts back in the queue.
    pub const RETRYABLE: [JobState; 4] =
        [JobState::Failed, JobState::Corrupt, JobState::Expired, JobState::Paused];
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A claimed job: what the worker needs to download, verify and place the file.
#[derive(Debug, Clone)]
pub struct Job {
    /// Row id.
    pub id: u64,
    /// The message.
    pub msgid: String,
    /// 0 = the message's own media, 1.. nested.
    pub item_index: u32,
    /// The kind (unknown kinds are treated as files).
    pub kind: MediaKind,
    /// For GetMediaData.
    pub sdkfileid: String,
    /// Stated md5 (may be empty).
    pub md5sum: String,
    /// Stated size.
    pub size: Option<u64>,
    /// Stated file name (unsanitised).
    pub filename: String,
    /// Stated extension (unsanitised).
    pub fileext: String,
    /// Emotion type.
    pub emotion_type: Option<i64>,
    /// Message time, ms UTC.
    pub msgtime: i64,
    /// Failed attempts so far.
    pub attempts: u32,
    /// Downloads discarded for a size or md5 mismatch so far.
    pub verify_failures: u32,
    /// Index for the next chunk ("" = from the start).
    pub next_index: String,
    /// Bytes durable in the `.part` file.
    pub bytes_done: u64,
    /// The claim this worker holds.
    pub claim_token: u64,
}

/// How a job ends for good (for now: `media retry` can requeue it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Terminal {
    /// Verified and in place.
    Done,
    /// In place; nothing stated to verify it against (see `JobState::Unverified`).
    Unverified,
    /// Bounded retries exhausted.
    Failed,
    /// 10010.
    Expired,
    /// Verification failed every time (this many times).
    Corrupt {
        /// Downloads discarded.
        verify_failures: u32,
    },
}

impl Terminal {
    /// The state it leaves the job in.
    pub(super) fn state(self) -> JobState {
        match self {
            Terminal::Done => JobState::Done,
            Terminal::Unverified => JobState::Unverified,
            Terminal::Failed => JobState::Failed,
            Terminal::Expired => JobState::Expired,
            Terminal::Corrupt { .. } => JobState::Corrupt,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip() {
        for s in JobState::ALL {
            assert_eq!(JobState::parse(s.as_str()), Some(s));
        }
        assert_eq!(JobState::parse("nope"), None);
        assert!(!JobState::RETRYABLE.contains(&JobState::Done));
        assert!(!JobState::RETRYABLE.contains(&JobState::Unverified));
        assert!(!JobState::RETRYABLE.contains(&JobState::Downloading));
        let stored: Vec<_> = JobState::ALL.into_iter().filter(|s| s.is_stored()).collect();
        assert_eq!(stored, [JobState::Done, JobState::Unverified]);
        // The SQL list names exactly the stored states.
        let listed = stored.iter().map(|s| format!("'{s}'")).collect::<Vec<_>>().join(", ");
        assert_eq!(JobState::STORED_SQL, format!("({listed})"));
        assert!(JobState::is_stored_str("unverified") && !JobState::is_stored_str("pending"));
    }
}
