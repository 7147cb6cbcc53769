//! Ordered, idempotent schema migrations embedded in the binary.
//!
//! Each `migrations/NNNN_name.sql` runs once, recorded in `schema_migrations`.
//! The statements themselves are written to be re-runnable (`IF NOT EXISTS`),
//! so a migration interrupted half-way (MySQL DDL is not transactional) is
//! simply run again. A lock (`GET_LOCK`) keeps concurrent starts from racing.

use mysql_async::prelude::*;

use super::{Store, StoreError};

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

/// Applies every pending migration; returns the versions applied.
pub async fn migrate(store: &Store) -> Result<Vec<u32>, StoreError> {
    let mut conn = store.conn().await?;
    let got: Option<i64> = conn.query_first("SELECT GET_LOCK('wework_archive_migrate', 60)").await?;
    if got != Some(1) {
        return Err(StoreError::Invalid("could not take the migration lock within 60 s".into()));
    }
    let result = async {
        conn.query_drop(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version INT UNSIGNED NOT NULL PRIMARY KEY,
                name VARCHAR(255) NOT NULL,
                applied_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)
            ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
        )
        .await?;
        let done: Vec<u32> = conn.query("SELECT version FROM schema_migrations").await?;
        let mut applied = Vec::new();
        for (version, name, sql) in MIGRATIONS {
            if done.contains(version) {
                continue;
            }
            for stmt in statements(sql) {
                conn.query_drop(&stmt)
                    .await
                    .map_err(|e| StoreError::Migration { name: (*name).to_owned(), source: e })?;
            }
            conn.exec_drop("INSERT INTO schema_migrations (version, name) VALUES (?, ?)", (version, name))
                .await?;
            tracing::info!(migration = name, "applied");
            applied.push(*version);
        }
        Ok::<_, StoreError>(applied)
    }
    .await;
    let _: Option<i64> = conn.query_first("SELECT RELEASE_LOCK('wework_archive_migrate')").await?;
    result
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
