//! Which database errors are worth running the transaction again for, and a
//! helper that does so with backoff.
//!
//! On MariaDB Galera a transaction that conflicts with one committed first on
//! another node fails *at commit* with a deadlock error (1213, certification
//! failure, or a brute-force abort by a replicated write), not at the
//! statement that conflicted; a joining or partitioned node answers 1047
//! ("WSREP has not yet prepared node for application use") until it is synced.
//! Both are like an InnoDB deadlock or lock wait timeout (1205): nothing was
//! committed and the same transaction may simply run again.

use std::future::Future;
use std::time::Duration;

use super::StoreError;

/// ER_LOCK_DEADLOCK: InnoDB deadlock, or a Galera certification conflict.
pub const ER_LOCK_DEADLOCK: u16 = 1213;
/// ER_LOCK_WAIT_TIMEOUT.
pub const ER_LOCK_WAIT_TIMEOUT: u16 = 1205;
/// ER_UNKNOWN_COM_ERROR: what Galera answers while the node is not ready
/// ("WSREP has not yet prepared node for application use").
pub const ER_WSREP_NOT_READY: u16 = 1047;
/// ER_QUERY_INTERRUPTED / ER_CONNECTION_KILLED: a node shutting down.
const ER_QUERY_INTERRUPTED: u16 = 1317;
const ER_CONNECTION_KILLED: u16 = 1927;
/// ER_SERVER_SHUTDOWN.
const ER_SERVER_SHUTDOWN: u16 = 1053;

/// TiDB's "rolled back, safe to run the whole transaction again" codes: 8002
/// (SELECT FOR UPDATE met a commit conflict), 8005 and 9007 (write
/// conflicts), 8022 (commit failed and rolled back), 8027/8028 (schema changed
/// under the transaction).
const TIDB_RETRY_WHOLE: [u16; 6] = [8002, 8005, 8022, 8027, 8028, 9007];
/// TiDB's storage unreachable for now: 9001 (PD), 9002 (TiKV timeout),
/// 9005 (region unavailable).
const TIDB_UNAVAILABLE: [u16; 3] = [9001, 9002, 9005];

/// Whether a server error code means "this node cannot serve now".
pub fn is_wsrep_not_ready_code(code: u16) -> bool {
    matches!(code, ER_WSREP_NOT_READY | ER_CONNECTION_KILLED | ER_SERVER_SHUTDOWN)
}

/// What kind of trouble an error is, for deciding whether to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Deadlock, certification conflict or lock wait timeout: run it again soon.
    Conflict,
    /// The node is not ready (joining, partitioned, shutting down) or the
    /// connection is gone: wait longer (another host may take over).
    Unavailable,
    /// Anything else: running it again gives the same answer.
    Permanent,
}

/// Classifies a database error.
pub fn classify(e: &mysql_async::Error) -> Retry {
    match e {
        mysql_async::Error::Server(s) => match s.code {
            ER_LOCK_DEADLOCK | ER_LOCK_WAIT_TIMEOUT => Retry::Conflict,
            c if TIDB_RETRY_WHOLE.contains(&c) => Retry::Conflict,
            ER_QUERY_INTERRUPTED => Retry::Unavailable,
            c if TIDB_UNAVAILABLE.contains(&c) => Retry::Unavailable,
            c if is_wsrep_not_ready_code(c) => Retry::Unavailable,
            _ => Retry::Permanent,
        },
        mysql_async::Error::Io(_) | mysql_async::Error::Driver(_) => Retry::Unavailable,
        _ => Retry::Permanent,
    }
}

impl StoreError {
    /// How to treat this error (see [`classify`]); only database errors retry.
    pub fn retry_class(&self) -> Retry {
        match self {
            StoreError::Db(e) => classify(e),
            StoreError::Migration { source, .. } => classify(source),
            _ => Retry::Permanent,
        }
    }

    /// Whether running the same transaction again may succeed.
    pub fn is_transient(&self) -> bool {
        self.retry_class() != Retry::Permanent
    }
}

/// Runs `f` again after transient errors, up to `attempts` times in all, with
/// jittered exponential backoff from 10 ms (conflicts) or 200 ms (unavailable)
/// capped at 2 s. Returns the last error when it gives up.
pub async fn with_retry<T, F, Fut>(attempts: u32, mut f: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let mut tried = 0u32;
    loop {
        match f().await {
            Err(e) if e.is_transient() && tried + 1 < attempts => {
                let base = if e.retry_class() == Retry::Conflict { 10 } else { 200 };
                let step = (base << tried.min(8)).min(2000);
                let ms = step / 2 + rand::random_range(0..=step / 2);
                tried += 1;
                tracing::debug!(attempt = tried, "database: {e}; retrying in {ms} ms");
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            r => return r,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(code: u16) -> mysql_async::Error {
        mysql_async::Error::Server(mysql_async::ServerError {
            code,
            message: "m".into(),
            state: "HY000".into(),
        })
    }

    #[test]
    fn errors_are_classified() {
        assert_eq!(classify(&server(1213)), Retry::Conflict);
        assert_eq!(classify(&server(1205)), Retry::Conflict);
        assert_eq!(classify(&server(1047)), Retry::Unavailable);
        assert_eq!(classify(&server(1062)), Retry::Permanent);
        assert_eq!(classify(&server(1146)), Retry::Permanent);
        assert_eq!(classify(&server(9007)), Retry::Conflict);
        assert_eq!(classify(&server(8004)), Retry::Permanent, "TiDB: transaction too large");
        assert_eq!(classify(&server(9005)), Retry::Unavailable);
        assert!(StoreError::Db(server(1213)).is_transient());
        assert!(!StoreError::Invalid("x".into()).is_transient());
    }

    #[tokio::test]
    async fn conflicts_are_retried_and_permanent_errors_are_not() {
        let mut calls = 0;
        let r = with_retry(5, || {
            calls += 1;
            let n = calls;
            async move { if n < 3 { Err(StoreError::Db(server(1213))) } else { Ok(n) } }
        })
        .await;
        assert_eq!(r.unwrap(), 3);
        let mut calls = 0;
        let r: Result<(), _> = with_retry(5, || {
            calls += 1;
            async { Err(StoreError::Db(server(1062))) }
        })
        .await;
        assert!(r.is_err());
        assert_eq!(calls, 1);
        let mut calls = 0;
        let r: Result<(), _> = with_retry(3, || {
            calls += 1;
            async { Err(StoreError::Db(server(1205))) }
        })
        .await;
        assert!(r.is_err());
        assert_eq!(calls, 3);
    }
}
