//! The MySQL/MariaDB store: schema, corps and keys, pull state, per-corp message tables.
//!
//! One [`Store`] (a cheap clone over a connection pool) is passed to whoever
//! needs it. Corp ids are validated into [`CorpId`] before any table name is
//! derived from them.

pub mod access_log;
pub mod accounts;
pub mod browse;
pub mod chain;
pub mod corps;
pub mod ident;
pub mod media_jobs;
pub mod messages;
pub mod migrate;
pub mod state;

pub use ident::{CorpId, InvalidCorpId};

use mysql_async::prelude::*;
use mysql_async::{Opts, OptsBuilder, Pool};

/// Store errors, with the context a log line needs.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database said no.
    #[error("database: {0}")]
    Db(#[from] mysql_async::Error),
    /// A migration failed.
    #[error("migration {name}: {source}")]
    Migration {
        /// The migration file.
        name: String,
        /// The database error.
        source: mysql_async::Error,
    },
    /// A corp id is not an identifier.
    #[error(transparent)]
    CorpId(#[from] InvalidCorpId),
    /// The database URL is unusable.
    #[error("database URL: {0}")]
    Url(String),
    /// Another writer took over the corp (fencing token changed): nothing was committed.
    #[error("corp {corpid}: fencing token {mine} is stale (now {current}); another worker owns this corp")]
    FenceLost {
        /// The corp.
        corpid: String,
        /// The token this writer holds.
        mine: u64,
        /// The token in the database.
        current: u64,
    },
    /// Anything else invalid.
    #[error("{0}")]
    Invalid(String),
}

impl StoreError {
    /// Whether the error is a lost or refused connection (worth waiting and retrying).
    pub fn is_connection(&self) -> bool {
        match self {
            StoreError::Db(e) => matches!(e, mysql_async::Error::Io(_) | mysql_async::Error::Driver(_)),
            _ => false,
        }
    }
}

/// A pooled connection to the archive database.
#[derive(Clone, Debug)]
pub struct Store {
    pool: Pool,
    messages: messages::TableCache,
}

impl Store {
    /// Connects, creating the database named in the URL when it does not exist.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        let opts = Opts::from_url(url).map_err(|e| StoreError::Url(e.to_string()))?;
        if let Some(db) = opts.db_name() {
            if !db.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') || db.is_empty() {
                return Err(StoreError::Url(format!("database name {db:?} must be a plain identifier")));
            }
            let server = Pool::new(OptsBuilder::from_opts(opts.clone()).db_name(None::<String>));
            let mut conn = server.get_conn().await?;
            conn.query_drop(format!("CREATE DATABASE IF NOT EXISTS `{db}` CHARACTER SET utf8mb4")).await?;
            drop(conn);
            server.disconnect().await?;
        }
        let pool = Pool::new(opts);
        Ok(Store { pool, messages: messages::TableCache::default() })
    }

    /// Connects and applies pending migrations (what every command does on start).
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        let store = Store::connect(url).await?;
        migrate::migrate(&store).await?;
        Ok(store)
    }

    /// A connection from the pool.
    pub async fn conn(&self) -> Result<mysql_async::Conn, StoreError> {
        Ok(self.pool.get_conn().await?)
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> bool {
        match self.pool.get_conn().await {
            Ok(mut c) => c.ping().await.is_ok(),
            Err(_) => false,
        }
    }

    /// Closes the pool.
    pub async fn close(self) {
        let _ = self.pool.disconnect().await;
    }

    pub(crate) fn table_cache(&self) -> &messages::TableCache {
        &self.messages
    }
}
