//! Consuming the change queue: every instance sees every event, and none is
//! lost when an instance dies.
//!
//! Producers keep the seed tool's contract and `LPUSH` onto a list. Any
//! instance moves entries from the list's tail into a Redis stream (the
//! change log, `<queue>:log`) with one Lua script (`RPOP` + `XADD`, atomic in
//! Redis: an instance that dies mid-way has either moved an entry or not, never
//! dropped it). Each instance then reads the whole log with `XREAD BLOCK` from
//! its own position, so the event reaches whichever instance owns the corp,
//! and the others use `added`/`enabled` events to look for free corps at once.
//! Nothing is removed by readers; the log is capped (`MAXLEN ~ 10000`).
//!
//! An instance starts reading at the log's end: it has just loaded every corp
//! fresh from the database. After Redis was unreachable it continues from its
//! last position (the events pushed meanwhile wait in the list and in the
//! log), and asks the coordinator for a full reconcile with the database in
//! case the log was trimmed or Redis lost its data.

use std::time::Duration;

use redis::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::events::ChangeEvent;
use super::lease::RedisKeys;
use super::link::{LinkError, RedisLink};
use super::stats::ControlStats;
use crate::store::CorpId;

/// How many entries one log read takes.
const READ_COUNT: usize = 100;
/// How many list entries one pump call moves.
const PUMP_BATCH: usize = 100;
/// Approximate length the change log is trimmed to.
pub const LOG_MAXLEN: usize = 10_000;

/// What the reader tells the coordinator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueMsg {
    /// A change to one corp.
    Event(CorpId, ChangeEvent),
    /// Reconcile every corp with the database (after an outage, or for an
    /// entry that names no corp).
    Resync,
}

/// Moves up to ARGV[1] entries from the list (KEYS[1], oldest first) into the
/// log stream (KEYS[2]), trimming it to about ARGV[2] entries.
static PUMP: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"
local n = 0
while n < tonumber(ARGV[1]) do
  local v = redis.call('RPOP', KEYS[1])
  if not v then break end
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'e', v)
  n = n + 1
end
return n
",
    )
});

/// Moves pending list entries into the log; returns how many.
pub async fn pump(link: &RedisLink, keys: &RedisKeys) -> Result<usize, LinkError> {
    let (queue, log) = (keys.queue.clone(), keys.log.clone());
    link.run(|mut conn| async move {
        PUMP.key(queue).key(log).arg(PUMP_BATCH).arg(LOG_MAXLEN).invoke_async::<usize>(&mut conn).await
    })
    .await
}

/// The id of the log's last entry ("0-0" when empty or missing).
async fn log_end(link: &RedisLink, keys: &RedisKeys) -> Result<String, LinkError> {
    let log = keys.log.clone();
    let v: Value = link
        .run(|mut conn| async move {
            redis::cmd("XREVRANGE")
                .arg(log)
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(1)
                .query_async(&mut conn)
                .await
        })
        .await?;
    Ok(entries(v).into_iter().next().map_or_else(|| "0-0".to_owned(), |(id, _)| id))
}

/// Flattens an XRANGE-style reply into (id, value of field `e`).
fn entries(v: Value) -> Vec<(String, Option<String>)> {
    let Value::Array(items) = v else { return Vec::new() };
    items
        .into_iter()
        .filter_map(|item| {
            let Value::Array(mut parts) = item else { return None };
            if parts.len() != 2 {
                return None;
            }
            let fields = parts.pop()?;
            let id = text(parts.pop()?)?;
            let mut entry = None;
            if let Value::Array(kv) = fields {
                let mut it = kv.into_iter();
                while let (Some(k), Some(val)) = (it.next(), it.next()) {
                    if text(k).as_deref() == Some("e") {
                        entry = text(val);
                    }
                }
            }
            Some((id, entry))
        })
        .collect()
}

fn text(v: Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b).ok(),
        Value::SimpleString(s) => Some(s),
        Value::VerbatimString { text, .. } => Some(text),
        _ => None,
    }
}

/// Reads entries after `after` (blocking up to `block`): the XREAD reply is
/// [[stream, [[id, [field, value…]]…]]] or nil.
async fn read_log(
    link: &RedisLink,
    keys: &RedisKeys,
    after: &str,
    block: Duration,
) -> Result<Vec<(String, Option<String>)>, LinkError> {
    let (log, after) = (keys.log.clone(), after.to_owned());
    let v: Value = link
        .run_with(block, |mut conn| async move {
            redis::cmd("XREAD")
                .arg("COUNT")
                .arg(READ_COUNT)
                .arg("BLOCK")
                .arg(block.as_millis().max(1) as u64)
                .arg("STREAMS")
                .arg(log)
                .arg(after)
                .query_async(&mut conn)
                .await
        })
        .await?;
    let streams = match v {
        Value::Array(s) => s,
        Value::Map(m) => m.into_iter().map(|(k, v)| Value::Array(vec![k, v])).collect(),
        _ => return Ok(Vec::new()),
    };
    Ok(streams
        .into_iter()
        .filter_map(|s| match s {
            Value::Array(mut kv) if kv.len() == 2 => kv.pop(),
            _ => None,
        })
        .flat_map(entries)
        .collect())
}

/// The reader: pumps the list, reads the log and forwards events until cancelled.
/// It uses its own link, because a blocking read holds its connection.
pub async fn run_reader(
    link: RedisLink,
    keys: RedisKeys,
    block: Duration,
    tx: mpsc::Sender<QueueMsg>,
    stats: std::sync::Arc<ControlStats>,
    cancel: CancellationToken,
) {
    let mut after: Option<String> = None;
    let mut failed = false;
    while !cancel.is_cancelled() {
        let turn = async {
            if after.is_none() {
                after = Some(log_end(&link, &keys).await?);
            }
            let moved = pump(&link, &keys).await?;
            ControlStats::add(&stats.queue_pumped, moved as u64);
            if failed {
                // Back after an outage: the log may have been trimmed or Redis
                // may have restarted empty; the database is the truth.
                failed = false;
                let _ = tx.send(QueueMsg::Resync).await;
            }
            let from = after.clone().unwrap_or_else(|| "0-0".into());
            for (id, entry) in read_log(&link, &keys, &from, block).await? {
                after = Some(id);
                let Some(raw) = entry else { continue };
                match ChangeEvent::parse(&raw).map(|e| (CorpId::new(&e.corpid), e)) {
                    Some((Ok(corp), e)) => {
                        if tx.send(QueueMsg::Event(corp, e)).await.is_err() {
                            return Ok(());
                        }
                    }
                    // The seed's watcher restarted everything on any entry; an
                    // entry we cannot read still means "something changed":
                    // reconcile every corp with the database.
                    Some((Err(err), _)) => {
                        ControlStats::add(&stats.queue_invalid, 1);
                        tracing::warn!(
                            "change queue: event for an invalid corp id ({err}); reconciling every corp"
                        );
                        if tx.send(QueueMsg::Resync).await.is_err() {
                            return Ok(());
                        }
                    }
                    None => {
                        ControlStats::add(&stats.queue_invalid, 1);
                        tracing::warn!(
                            "change queue: entry is neither a corp id nor a JSON event ({:?}); reconciling every corp",
                            raw.chars().take(200).collect::<String>()
                        );
                        if tx.send(QueueMsg::Resync).await.is_err() {
                            return Ok(());
                        }
                    }
                }
            }
            Ok::<(), LinkError>(())
        };
        let result = tokio::select! {
            r = turn => r,
            _ = cancel.cancelled() => return,
        };
        match result {
            Ok(()) => {}
            Err(LinkError::Redis(e)) => {
                // A refused command (e.g. the key holds another type): report and slow down.
                tracing::error!("change queue: {e}");
                failed = true;
                sleep_or_cancel(block.max(Duration::from_secs(1)), &cancel).await;
            }
            Err(_) => {
                failed = true;
                sleep_or_cancel(block, &cancel).await;
            }
        }
    }
}

async fn sleep_or_cancel(d: Duration, cancel: &CancellationToken) {
    tokio::select! {
        _ = tokio::time::sleep(d) => {}
        _ = cancel.cancelled() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn parses_stream_entries() {
        let v = Value::Array(vec![
            Value::Array(vec![bulk("1-0"), Value::Array(vec![bulk("e"), bulk("ww1")])]),
            Value::Array(vec![bulk("2-0"), Value::Array(vec![bulk("other"), bulk("x")])]),
            bulk("garbage"),
        ]);
        assert_eq!(entries(v), vec![("1-0".into(), Some("ww1".into())), ("2-0".into(), None)]);
        assert!(entries(Value::Nil).is_empty());
    }
}
