//! Corp change events on a Redis list (default key `wework:corp:changes`).
//!
//! Producers (`corp add/update/disable/enable/set-key`, or any admin tool)
//! `LPUSH` a JSON event; the running service pops them and reloads only the
//! named corp. The seed tool pushed to a list and restarted the whole process
//! through supervisord; here one corp's workers restart with fresh settings.
//! A bare corp id (not JSON) is accepted too, so shell one-liners work:
//! `redis-cli LPUSH wework:corp:changes ww0123456789abcdef`. Anything else
//! (an old tool's own format) makes every instance reconcile all its corps
//! with the database, which reloads whatever changed. How the list is
//! consumed by several instances is in [`super::queue`].

use serde::{Deserialize, Serialize};

/// What changed about a corp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// Settings changed (or unknown): reload.
    #[default]
    Updated,
    /// New corp.
    Added,
    /// Disabled: stop its workers.
    Disabled,
    /// Enabled again.
    Enabled,
    /// A private key was added or replaced: reload and redecrypt.
    KeyAdded,
}

/// One event on the queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeEvent {
    /// The corp.
    pub corpid: String,
    /// What changed.
    #[serde(default)]
    pub change: Change,
    /// The key version, for `key_added`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
}

impl ChangeEvent {
    /// Parses a queue entry: JSON, or a bare corp id.
    pub fn parse(raw: &str) -> Option<ChangeEvent> {
        let raw = raw.trim();
        if raw.starts_with('{') {
            return serde_json::from_str(raw).ok();
        }
        if raw.is_empty() {
            return None;
        }
        Some(ChangeEvent { corpid: raw.to_owned(), change: Change::Updated, version: None })
    }
}

/// Pushes an event. Errors are returned for the caller to report; the row
/// change itself is already committed, and the `update` flag poll is the
/// fallback when Redis is down. Connecting and pushing together take at most
/// [`PUSH_TIMEOUT`], so an unresponsive Redis cannot hang the CLI.
pub async fn push(redis_url: &str, queue: &str, event: &ChangeEvent) -> Result<(), redis::RedisError> {
    let client = redis::Client::open(redis_url)?;
    let payload = serde_json::to_string(event).expect("event serialises");
    let op = async {
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::cmd("LPUSH").arg(queue).arg(payload).query_async::<i64>(&mut conn).await
    };
    match tokio::time::timeout(PUSH_TIMEOUT, op).await {
        Ok(r) => r.map(drop),
        Err(_) => Err(redis::RedisError::from((
            redis::ErrorKind::IoError,
            "Redis did not answer in time",
            format!("{PUSH_TIMEOUT:?}"),
        ))),
    }
}

/// Deadline of [`push`].
pub const PUSH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_json_and_bare_ids() {
        let e = ChangeEvent::parse(r#"{"corpid":"ww1","change":"key_added","version":3}"#).unwrap();
        assert_eq!((e.corpid.as_str(), e.change, e.version), ("ww1", Change::KeyAdded, Some(3)));
        let e = ChangeEvent::parse("ww2\n").unwrap();
        assert_eq!((e.corpid.as_str(), e.change), ("ww2", Change::Updated));
        assert_eq!(ChangeEvent::parse(""), None);
        assert_eq!(ChangeEvent::parse("{broken"), None);
        let round = ChangeEvent { corpid: "ww3".into(), change: Change::Disabled, version: None };
        assert_eq!(ChangeEvent::parse(&serde_json::to_string(&round).unwrap()), Some(round));
    }
}
