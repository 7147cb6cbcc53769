//! Every table of the archive's schema gets a primary key.
//!
//! Galera replicates rows by primary key: on a table without one, each
//! replicated UPDATE or DELETE is applied by scanning the table on every other
//! node, and certification can only compare whole rows. Our own tables all
//! have one (the migrations and `message_<corpid>`'s DDL); tables created by
//! older tools (the Java seed's message tables, upgraded in place) may not.
//! [`ensure`] runs with the migrations and adds one where it is missing:
//!
//! - a table with an `AUTO_INCREMENT` column (unique by construction) gets
//!   `PRIMARY KEY (that column)`;
//! - any other table gets a new `pk_id BIGINT UNSIGNED AUTO_INCREMENT PRIMARY
//!   KEY` column. Our statements name their columns, so an added column is
//!   invisible to them.

use mysql_async::prelude::*;

use super::{Store, StoreError};

/// What [`ensure`] did to one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Added {
    /// The table.
    pub table: String,
    /// The statement that gave it a primary key.
    pub statement: String,
}

/// Base tables of the current database without a primary key, with their
/// `AUTO_INCREMENT` column if they have one.
pub async fn tables_without_primary_key(store: &Store) -> Result<Vec<(String, Option<String>)>, StoreError> {
    let mut conn = store.conn().await?;
    let rows: Vec<(String, Option<String>)> = conn
        .query(
            "SELECT t.TABLE_NAME,
                    (SELECT c.COLUMN_NAME FROM information_schema.COLUMNS c
                      WHERE c.TABLE_SCHEMA = t.TABLE_SCHEMA AND c.TABLE_NAME = t.TABLE_NAME
                        AND c.EXTRA LIKE '%auto_increment%' LIMIT 1)
             FROM information_schema.TABLES t
             WHERE t.TABLE_SCHEMA = DATABASE() AND t.TABLE_TYPE = 'BASE TABLE'
               AND NOT EXISTS (SELECT 1 FROM information_schema.TABLE_CONSTRAINTS k
                                WHERE k.TABLE_SCHEMA = t.TABLE_SCHEMA AND k.TABLE_NAME = t.TABLE_NAME
                                  AND k.CONSTRAINT_TYPE = 'PRIMARY KEY')
             ORDER BY t.TABLE_NAME",
        )
        .await?;
    Ok(rows)
}

/// The statement that gives `table` a primary key.
fn statement(table: &str, auto_column: Option<&str>) -> String {
    let quote = |s: &str| format!("`{}`", s.replace('`', "``"));
    match auto_column {
        Some(col) => format!("ALTER TABLE {} ADD PRIMARY KEY ({})", quote(table), quote(col)),
        None => format!(
            "ALTER TABLE {} ADD COLUMN pk_id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY",
            quote(table)
        ),
    }
}

/// Adds a primary key to every table that lacks one (idempotent).
pub async fn ensure(store: &Store) -> Result<Vec<Added>, StoreError> {
    let missing = tables_without_primary_key(store).await?;
    let mut added = Vec::new();
    for (table, auto) in missing {
        let sql = statement(&table, auto.as_deref());
        let mut conn = store.conn().await?;
        conn.query_drop(&sql).await?;
        tracing::warn!(table = %table, statement = %sql, "table had no primary key (Galera needs one): added");
        added.push(Added { table, statement: sql });
    }
    Ok(added)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_reuse_an_auto_increment_column_or_add_one() {
        assert_eq!(statement("message_ww1", Some("id")), "ALTER TABLE `message_ww1` ADD PRIMARY KEY (`id`)");
        assert_eq!(
            statement("odd`name", None),
            "ALTER TABLE `odd``name` ADD COLUMN pk_id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY"
        );
    }
}
