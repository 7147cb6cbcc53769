//! A Redis connection that survives Redis going away: every operation has a
//! deadline, a failed connection is dropped, and reconnecting waits a capped,
//! jittered backoff (mini-redis style) so an outage costs one cheap failed
//! attempt per backoff step instead of a storm. Up/down transitions are logged
//! once each and shown in `/metrics` (`wework_redis_connected`).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RedisError};
// tokio's clock, so tests can pause it and step through the backoff.
use tokio::time::Instant;

use super::stats::ControlStats;
use crate::backoff::Backoff;

/// Why a Redis operation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// Not connected and the backoff has not elapsed (or connecting failed).
    #[error("Redis is unreachable ({0})")]
    Down(String),
    /// The operation did not answer in time.
    #[error("Redis did not answer within {0:?}")]
    Timeout(Duration),
    /// Redis answered with an error (a script error, a wrong type…).
    #[error("Redis: {0}")]
    Redis(RedisError),
}

struct State {
    conn: Option<MultiplexedConnection>,
    next_attempt: Instant,
    backoff: Backoff,
    down_since: Option<Instant>,
    /// When the link last came back after being down.
    reconnected_at: Option<Instant>,
    last_error: String,
}

/// A shared, self-healing connection. Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct RedisLink {
    client: redis::Client,
    name: &'static str,
    timeout: Duration,
    state: Arc<tokio::sync::Mutex<State>>,
    stats: Arc<ControlStats>,
}

impl std::fmt::Debug for RedisLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLink").field("name", &self.name).field("timeout", &self.timeout).finish()
    }
}

/// Whether an error means the connection is unusable (rather than a refused command).
fn is_connection_error(e: &RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_timeout()
}

impl RedisLink {
    /// A link to `url`; `timeout` bounds connecting and every operation, and
    /// reconnect attempts back off up to `max_backoff`.
    pub fn new(
        url: &str,
        name: &'static str,
        timeout: Duration,
        max_backoff: Duration,
        stats: Arc<ControlStats>,
    ) -> Result<RedisLink, RedisError> {
        let client = redis::Client::open(url)?;
        let base = Duration::from_millis(200).min(max_backoff);
        Ok(RedisLink {
            client,
            name,
            timeout,
            state: Arc::new(tokio::sync::Mutex::new(State {
                conn: None,
                next_attempt: Instant::now(),
                backoff: Backoff::new(base, max_backoff),
                down_since: None,
                reconnected_at: None,
                last_error: String::new(),
            })),
            stats,
        })
    }

    /// The operation deadline.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// A connection, connecting first if needed (and allowed by the backoff).
    async fn connection(&self, extra: Duration) -> Result<MultiplexedConnection, LinkError> {
        let mut st = self.state.lock().await;
        if let Some(c) = &st.conn {
            return Ok(c.clone());
        }
        if Instant::now() < st.next_attempt {
            return Err(LinkError::Down(st.last_error.clone()));
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(self.timeout)
            .set_response_timeout(self.timeout + extra);
        let attempt = tokio::time::timeout(
            self.timeout,
            self.client.get_multiplexed_async_connection_with_config(&config),
        )
        .await;
        match attempt {
            Ok(Ok(conn)) => {
                st.conn = Some(conn.clone());
                st.backoff.reset();
                if let Some(since) = st.down_since.take() {
                    tracing::info!(
                        link = self.name,
                        "Redis is reachable again after {:.1?}",
                        since.elapsed()
                    );
                    st.reconnected_at = Some(Instant::now());
                }
                ControlStats::add(&self.stats.redis_connects, 1);
                self.stats.set_redis(true);
                Ok(conn)
            }
            Ok(Err(e)) => Err(self.mark_down(&mut st, e.to_string())),
            Err(_) => Err(self.mark_down(&mut st, format!("connecting took over {:?}", self.timeout))),
        }
    }

    fn mark_down(&self, st: &mut State, why: String) -> LinkError {
        st.conn = None;
        let delay = st.backoff.next_delay();
        st.next_attempt = Instant::now() + delay;
        ControlStats::add(&self.stats.redis_errors, 1);
        self.stats.set_redis(false);
        if st.down_since.is_none() {
            st.down_since = Some(Instant::now());
            tracing::warn!(
                link = self.name,
                "Redis is unreachable ({why}): archiving goes on with the leases in hand; \
                 reconnecting with backoff"
            );
        } else {
            tracing::debug!(link = self.name, "Redis still unreachable ({why}); next attempt in {delay:?}");
        }
        st.last_error = why;
        LinkError::Down(st.last_error.clone())
    }

    /// Runs `op` on a connection with the link's deadline.
    pub async fn run<T, F, Fut>(&self, op: F) -> Result<T, LinkError>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        self.run_with(Duration::ZERO, op).await
    }

    /// Like [`RedisLink::run`] for operations that legitimately wait `extra`
    /// longer (blocking reads).
    pub async fn run_with<T, F, Fut>(&self, extra: Duration, op: F) -> Result<T, LinkError>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        let conn = self.connection(extra).await?;
        let deadline = self.timeout + extra;
        match tokio::time::timeout(deadline, op(conn)).await {
            Ok(Ok(v)) => {
                self.stats.set_redis(true);
                Ok(v)
            }
            Ok(Err(e)) if is_connection_error(&e) => {
                let mut st = self.state.lock().await;
                Err(self.mark_down(&mut st, e.to_string()))
            }
            Ok(Err(e)) => Err(LinkError::Redis(e)),
            Err(_) => {
                let mut st = self.state.lock().await;
                self.mark_down(&mut st, format!("no answer within {deadline:?}"));
                Err(LinkError::Timeout(deadline))
            }
        }
    }

    /// Whether the link is currently connected (no failure since the last success).
    pub async fn is_up(&self) -> bool {
        self.state.lock().await.conn.is_some()
    }

    /// How long the link has been down (None: connected, or never tried).
    pub async fn down_for(&self) -> Option<Duration> {
        self.state.lock().await.down_since.map(|t| t.elapsed())
    }

    /// Whether the link came back from an outage less than `d` ago.
    pub async fn reconnected_within(&self, d: Duration) -> bool {
        self.state.lock().await.reconnected_at.is_some_and(|t| t.elapsed() < d)
    }

    /// Whether the shared flag says Redis answered last time (any link).
    pub fn seems_up(&self) -> bool {
        self.stats.redis_connected.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(stats: &ControlStats) -> u64 {
        stats.redis_errors.load(Ordering::Relaxed)
    }

    async fn wait_left(link: &RedisLink) -> Duration {
        link.state.lock().await.next_attempt.saturating_duration_since(Instant::now())
    }

    /// Nothing listens on port 1: every attempt fails. With the clock
    /// paused, the test steps through the backoff: no attempt happens
    /// before a wait has passed, one does right after, and the waits grow
    /// (equal jitter: within [step/2, step]) up to the cap.
    #[tokio::test(start_paused = true)]
    async fn reconnects_wait_out_the_backoff() {
        let stats = Arc::new(ControlStats::default());
        let cap = Duration::from_secs(2);
        let link =
            RedisLink::new("redis://127.0.0.1:1/", "test", Duration::from_millis(500), cap, stats.clone())
                .unwrap();
        let ping = || link.run(|mut c| async move { redis::cmd("PING").query_async::<String>(&mut c).await });
        assert!(matches!(ping().await, Err(LinkError::Down(_))));
        assert_eq!(errors(&stats), 1);
        assert!(link.down_for().await.is_some());
        let mut step = Duration::from_millis(200);
        for n in 1..10 {
            let wait = wait_left(&link).await;
            assert!(wait >= step / 2 && wait <= step, "wait {n}: {wait:?} for a step of {step:?}");
            tokio::time::advance(wait - Duration::from_millis(1)).await;
            assert!(matches!(ping().await, Err(LinkError::Down(_))));
            assert_eq!(errors(&stats), n, "no attempt inside the backoff");
            tokio::time::advance(Duration::from_millis(1)).await;
            assert!(ping().await.is_err());
            assert_eq!(errors(&stats), n + 1, "one attempt once the wait is over");
            step = (step * 2).min(cap);
        }
        assert!(!link.is_up().await);
        assert!(!stats.redis_connected.load(Ordering::Relaxed));
    }
}
