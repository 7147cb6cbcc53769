//! `feishu recordings list [--json] [--state S]` and `feishu recordings retry
//! [--meeting ID]` (issue 13, item 6), and the `status` alarm for recording
//! jobs stuck longer than the wait limit.

use std::process::ExitCode;

use anyhow::bail;

use crate::config::Config;
use crate::store::Store;
use crate::store::feishu_recordings::{Recording, RecordingState};

#[derive(Debug, clap::Subcommand)]
pub(crate) enum RecordingsCommand {
    /// Recording jobs, newest first.
    List {
        /// One JSON document instead of a table.
        #[arg(long)]
        json: bool,
        /// Only jobs in this state (pending, waiting, awaiting_auth, downloading, done,
        /// no_recording, failed).
        #[arg(long)]
        state: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 200)]
        limit: u32,
    },
    /// Makes failed, no_recording and waiting jobs due again (all, or one meeting's).
    Retry {
        /// Only this meeting.
        #[arg(long)]
        meeting: Option<String>,
    },
}

fn to_json(r: &Recording) -> serde_json::Value {
    serde_json::json!({
        "app_id": r.app_id, "meeting_id": r.meeting_id, "topic": r.topic, "owner_open_id": r.owner_open_id,
        "start_time": r.start_time, "end_time": r.end_time, "minute_token": r.minute_token,
        "state": r.state.as_str(), "path": r.path, "bytes": r.bytes, "bytes_done": r.bytes_done,
        "sha256": r.sha256, "attempts": r.attempts, "polls": r.polls, "last_code": r.last_code,
        "last_error": r.last_error, "created_at": r.created_at, "finished_at": r.finished_at,
    })
}

pub(crate) async fn run(cmd: RecordingsCommand, store: Store) -> anyhow::Result<ExitCode> {
    match cmd {
        RecordingsCommand::List { json, state, limit } => {
            let state = match state.as_deref() {
                None => None,
                Some(s) => match RecordingState::parse(s) {
                    Some(st) => Some(st),
                    None => bail!(
                        "unknown state {s:?} (one of: {})",
                        RecordingState::ALL.map(|s| s.as_str()).join(", ")
                    ),
                },
            };
            let rows = store.recordings(state, limit).await?;
            if json {
                let v: Vec<_> = rows.iter().map(to_json).collect();
                println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "recordings": v }))?);
            } else {
                println!(
                    "{:<20} {:<14} {:>12} {:>4} {:<24} {:<36} path / last error",
                    "meeting", "state", "bytes", "try", "owner", "topic"
                );
                for r in &rows {
                    let detail =
                        if r.state == RecordingState::Done { r.path.as_str() } else { r.last_error.as_str() };
                    let topic: String = r.topic.chars().filter(|c| !c.is_control()).take(36).collect();
                    println!(
                        "{:<20} {:<14} {:>12} {:>4} {:<24} {:<36} {}",
                        r.meeting_id,
                        r.state.as_str(),
                        r.bytes.map_or_else(|| r.bytes_done.to_string(), |b| b.to_string()),
                        r.attempts,
                        r.owner_open_id,
                        topic,
                        detail.chars().filter(|c| !c.is_control()).take(200).collect::<String>()
                    );
                }
            }
        }
        RecordingsCommand::Retry { meeting } => {
            if let Some(m) = &meeting
                && !crate::feishu::recordings::meeting::valid_meeting_id(m)
            {
                bail!("--meeting must be a meeting id (digits)");
            }
            let n = store.retry_recordings(meeting.as_deref()).await?;
            println!("{n} recording job(s) due again");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// For `status`: jobs unfinished for longer than the wait limit, as JSON, and how many.
pub(crate) async fn stuck(store: &Store, config: &Config) -> anyhow::Result<(serde_json::Value, usize)> {
    let stuck = store.stuck_recordings(config.recordings.max_wait).await?;
    let counts = store.recording_counts().await?;
    let by_state: serde_json::Map<String, serde_json::Value> =
        counts.by_state.iter().map(|(s, n)| (s.as_str().to_owned(), (*n).into())).collect();
    let v = serde_json::json!({
        "by_state": by_state,
        "bytes": counts.bytes_done,
        "stuck": stuck.iter().map(to_json).collect::<Vec<_>>(),
        "alarm": if stuck.is_empty() { String::new() } else {
            format!("{} recording job(s) unfinished for longer than {} s", stuck.len(), config.recordings.max_wait.as_secs())
        },
    });
    Ok((v, stuck.len()))
}
