//! Ordered, idempotent schema migrations embedded in the binary.
//!
//! Each `migrations/NNNN_name.sql` runs once, recorded in `schema_migrations`.
//! The statements themselves are written to be re-runnable (`IF NOT EXISTS`),
//! so a migration interrupted half-way (MySQL DDL is not transactional) is
//! simply run again.
//!
//! Concurrent starts are kept from racing by a lock *row* in `schema_lock`,
//! not `GET_LOCK`: on a Galera cluster `GET_LOCK` only locks on the node it
//! runs on, so two instances starting on two nodes would both migrate. A row
//! insert is certified cluster-wide (the loser gets a conflict and retries,
//! then sees the winner's row). The row expires, so a process killed while
//! migrating cannot block the others for longer than [`LOCK_SECS`]; the holder
//! renews it after every statement.

use std::time::{Duration, Instant};

use mysql_async::prelude::*;

use super::retry::with_retry;
use super::{Store, StoreError};

/// How long a migration lock lasts without renewal.
pub const LOCK_SECS: u32 = 120;

/// How long a start waits for another process's migration.
const LOCK_WAIT: Duration = Duration::from_secs(180);

const LOCK_NAME: &str = "migrate";

include!(concat!(env!("OUT_DIR"), "/migrations.rs"));

/// Splits a migration into statements: `;` at the end of a line ends one.
/// Comment lines are dropped.
fn statements(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in sql.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("--") || trimmed.is_empty() {
            continue;
        }
        cur.push_str(line);
        cur.push('\n');
        if trimmed.ends_with(';') {
            out.push(cur.trim().trim_end_matches(';').to_owned());
            cur.clear();
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_owned());
    }
    out
}

/// Creates the lock table (outside the numbered migrations: it guards them).
async fn ensure_lock_table(store: &Store) -> Result<(), StoreError> {
    with_retry(5, || async {
        let mut conn = store.conn().await?;
        conn.query_drop(
            "CREATE TABLE IF NOT EXISTS schema_lock (
                name VARCHAR(64) NOT NULL PRIMARY KEY,
                holder VARCHAR(255) NOT NULL,
                expires_at DATETIME(3) NOT NULL
            ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
        )
        .await?;
        Ok(())
    })
    .await
}

/// Takes the lock row if it is free or expired; true when it is ours now.
async fn try_lock(store: &Store, holder: &str) -> Result<bool, StoreError> {
    with_retry(8, || async {
        let mut conn = store.conn().await?;
        // The IFs read the row's old expires_at (holder is assigned first but
        // is not what they test), so an expired lock is taken whole.
        conn.exec_drop(
            format!(
                "INSERT INTO schema_lock (name, holder, expires_at)
                 VALUES (?, ?, NOW(3) + INTERVAL {LOCK_SECS} SECOND)
                 ON DUPLICATE KEY UPDATE
                   holder = IF(expires_at < NOW(3), VALUES(holder), holder),
                   expires_at = IF(expires_at < NOW(3), VALUES(expires_at), expires_at)"
            ),
            (LOCK_NAME, holder),
        )
        .await?;
        let now: Option<String> =
            conn.exec_first("SELECT holder FROM schema_lock WHERE name = ?", (LOCK_NAME,)).await?;
        Ok(now.as_deref() == Some(holder))
    })
    .await
}

async fn renew_lock(store: &Store, holder: &str) -> Result<(), StoreError> {
    with_retry(8, || async {
        let mut conn = store.conn().await?;
        conn.exec_drop(
            format!(
                "UPDATE schema_lock SET expires_at = NOW(3) + INTERVAL {LOCK_SECS} SECOND
                 WHERE name = ? AND holder = ?"
            ),
            (LOCK_NAME, holder),
        )
        .await?;
        Ok(())
    })
    .await
}

async fn unlock(store: &Store, holder: &str) -> Result<(), StoreError> {
    with_retry(8, || async {
        let mut conn = store.conn().await?;
        conn.exec_drop("DELETE FROM schema_lock WHERE name = ? AND holder = ?", (LOCK_NAME, holder)).await?;
        Ok(())
    })
    .await
}

/// Applies every pending migration; returns the versions applied.
pub async fn migrate(store: &Store) -> Result<Vec<u32>, StoreError> {
    ensure_lock_table(store).await?;
    let holder = format!("{}-{}-{:016x}", hostname(), std::process::id(), rand::random::<u64>());
    let deadline = Instant::now() + LOCK_WAIT;
    while !try_lock(store, &holder).await? {
        if Instant::now() >= deadline {
            return Err(StoreError::Invalid(format!(
                "could not take the migration lock within {LOCK_WAIT:?} (another process is migrating; \
                 a stale lock expires {LOCK_SECS} s after its holder stopped renewing it)"
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let result = apply(store, &holder).await;
    let unlocked = unlock(store, &holder).await;
    let applied = result?;
    unlocked?;
    Ok(applied)
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_owned()).unwrap_or_default()
}

async fn apply(store: &Store, holder: &str) -> Result<Vec<u32>, StoreError> {
    with_retry(5, || async {
        let mut conn = store.conn().await?;
        conn.query_drop(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version INT UNSIGNED NOT NULL PRIMARY KEY,
                name VARCHAR(255) NOT NULL,
                applied_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)
            ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
        )
        .await?;
        Ok(())
    })
    .await?;
    let done: Vec<u32> = with_retry(5, || async {
        let mut conn = store.conn().await?;
        Ok(conn.query("SELECT version FROM schema_migrations").await?)
    })
    .await?;
    let mut applied = Vec::new();
    for (version, name, sql) in MIGRATIONS {
        if done.contains(version) {
            continue;
        }
        for stmt in statements(sql) {
            // Statements are idempotent, so one that failed on a node that
            // went away (or lost a conflict) runs again.
            with_retry(5, || async {
                let mut conn = store.conn().await?;
                conn.query_drop(&stmt)
                    .await
                    .map_err(|e| StoreError::Migration { name: (*name).to_owned(), source: e })
            })
            .await?;
            renew_lock(store, holder).await?;
        }
        with_retry(5, || async {
            let mut conn = store.conn().await?;
            conn.exec_drop(
                "INSERT IGNORE INTO schema_migrations (version, name) VALUES (?, ?)",
                (version, name),
            )
            .await?;
            Ok(())
        })
        .await?;
        tracing::info!(migration = name, "applied");
        applied.push(*version);
    }
    super::primary_keys::ensure(store).await?;
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_statements_and_drops_comments() {
        let sql = "-- c\nCREATE TABLE a (\n x INT\n);\n\nALTER TABLE a ADD y INT;\n";
        assert_eq!(statements(sql), vec!["CREATE TABLE a (\n x INT\n)", "ALTER TABLE a ADD y INT"]);
    }

    #[test]
    fn migrations_are_embedded_in_order() {
        assert!(MIGRATIONS.len() >= 2);
        assert!(MIGRATIONS.windows(2).all(|w| w[0].0 < w[1].0));
    }
}
