//! The MySQL/MariaDB store: schema, corps and keys, pull state, per-corp message tables.
//!
//! One [`Store`] (a cheap clone over a connection pool) is passed to whoever
//! needs it. Corp ids are validated into [`CorpId`] before any table name is
//! derived from them.

pub mod access_log;
pub mod accounts;
pub mod alarms;
pub mod browse;
pub mod chain;
pub mod conversations;
pub mod corp_keys;
pub mod corps;
pub mod endpoints;
pub mod feishu_apps;
pub mod feishu_auth_sessions;
pub mod feishu_backup_schedules;
pub mod feishu_browse;
pub mod feishu_docs;
pub mod feishu_events;
pub mod feishu_oauth_states;
pub mod feishu_recordings;
pub mod feishu_token_keys;
pub mod feishu_users;
pub mod ident;
pub mod media_jobs;
pub mod messages;
pub mod metrics_facts;
pub mod migrate;
pub mod primary_keys;
pub mod quarantine;
pub mod retry;
pub mod search;
pub mod seed;
pub mod state;

pub use ident::{CorpId, InvalidCorpId};

use std::sync::Arc;

use mysql_async::Pool;
use mysql_async::prelude::*;

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
            // A Galera node that is not ready (joining, partitioned) is as
            // good as a refused connection: wait, or let another host serve.
            StoreError::Db(e) => endpoints::is_host_failure(e),
            _ => false,
        }
    }
}

/// Below this `wsrep_max_ws_size` a batch of 1000 large records (plaintexts
/// of ~100 KiB) may not fit one Galera write set: `open` warns.
pub const MIN_WRITE_SET_BYTES: u64 = 128 << 20;

/// A pooled connection to the archive database.
#[derive(Clone, Debug)]
pub struct Store {
    /// The host(s) of `DATABASE_URL` and the pool of the active one.
    endpoints: Arc<endpoints::Endpoints>,
    messages: messages::TableCache,
}

impl Store {
    /// Connects, creating the database named in the URL when it does not exist.
    /// The URL may name several hosts of one cluster (see [`endpoints`]).
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        let hosts = endpoints::parse(url)?;
        let first = &hosts[0].opts;
        if let Some(db) = first.db_name()
            && (!db.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') || db.is_empty())
        {
            return Err(StoreError::Url(format!("database name {db:?} must be a plain identifier")));
        }
        let db = first.db_name().map(str::to_owned);
        let endpoints = endpoints::Endpoints::new(hosts).await?;
        if let Some(db) = db {
            let active = endpoints.active_label();
            let ep = endpoints.hosts().iter().find(|h| h.label == active).unwrap_or(&endpoints.hosts()[0]);
            let server = Pool::new(endpoints::server_opts(ep));
            let created = retry::with_retry(3, || async {
                let mut conn = server.get_conn().await?;
                conn.query_drop(format!("CREATE DATABASE IF NOT EXISTS `{db}` CHARACTER SET utf8mb4"))
                    .await?;
                Ok(())
            })
            .await;
            server.disconnect().await?;
            created?;
        }
        Ok(Store { endpoints, messages: messages::TableCache::default() })
    }

    /// Drops database `name` on the server of `url`, whose database it is,
    /// then opens `url`, which creates and migrates it afresh. For the
    /// benchmarks' own databases (`<db>_bench`): never a real archive.
    pub async fn open_fresh(url: &str, name: &str) -> Result<Store, StoreError> {
        use mysql_async::prelude::*;
        if name.is_empty() || name.contains('`') {
            return Err(StoreError::Invalid(format!("{name:?} is not a database name")));
        }
        let server = mysql_async::Pool::new(url.rsplit_once('/').map(|(b, _)| b).unwrap_or(url));
        let mut conn = server.get_conn().await?;
        conn.query_drop(format!("DROP DATABASE IF EXISTS `{name}`")).await?;
        drop(conn);
        server.disconnect().await?;
        Store::open(url).await
    }

    /// Connects and applies pending migrations (what every command does on start).
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        let store = Store::connect(url).await?;
        migrate::migrate(&store).await?;
        if let Ok(Some(limit)) = store.write_set_limit().await
            && limit < MIN_WRITE_SET_BYTES
        {
            tracing::warn!(
                wsrep_max_ws_size = limit,
                "Galera's wsrep_max_ws_size is below {} MiB: a batch of large records may not commit; \
                 raise it or lower corplist.limits",
                MIN_WRITE_SET_BYTES >> 20
            );
        }
        Ok(store)
    }

    /// Galera's largest replicated transaction (`wsrep_max_ws_size`, bytes),
    /// or None when the server is not a Galera node.
    pub async fn write_set_limit(&self) -> Result<Option<u64>, StoreError> {
        let mut conn = self.conn().await?;
        let vars: Vec<(String, String)> = conn
            .query("SHOW GLOBAL VARIABLES WHERE Variable_name IN ('wsrep_on', 'wsrep_max_ws_size')")
            .await?;
        let get = |n: &str| vars.iter().find(|(k, _)| k.eq_ignore_ascii_case(n)).map(|(_, v)| v.as_str());
        if !get("wsrep_on").is_some_and(|v| v.eq_ignore_ascii_case("ON") || v == "1") {
            return Ok(None);
        }
        Ok(get("wsrep_max_ws_size").and_then(|v| v.parse().ok()))
    }

    /// Which database this is, as the server itself names it
    /// (`host:port/schema`), so instances that reach one database through
    /// different addresses agree on it (the control plane counts as peers
    /// only instances of the same database).
    ///
    /// On a Galera cluster every node is the same database: the identity is
    /// the cluster's state UUID (`galera:<uuid>/schema`), shared by all its
    /// nodes, so instances writing through different nodes (or moving between
    /// them) are peers.
    pub async fn database_identity(&self) -> Result<String, StoreError> {
        let mut conn = self.conn().await?;
        let cluster: Option<(String, String)> =
            conn.query_first("SHOW GLOBAL STATUS LIKE 'wsrep_cluster_state_uuid'").await?;
        let id: Option<String> = match cluster {
            Some((_, uuid)) if !uuid.is_empty() && !uuid.starts_with("00000000-") => {
                let uuid: String = uuid.chars().filter(|c| c.is_ascii_hexdigit() || *c == '-').collect();
                let db: Option<String> = conn.query_first("SELECT COALESCE(DATABASE(), '')").await?;
                Some(format!("galera:{uuid}/{}", db.unwrap_or_default()))
            }
            _ => {
                conn.query_first("SELECT CONCAT(@@hostname, ':', @@port, '/', COALESCE(DATABASE(), ''))")
                    .await?
            }
        };
        Ok(id.unwrap_or_default().replace(' ', "_"))
    }

    /// A connection from the pool.
    pub async fn conn(&self) -> Result<mysql_async::Conn, StoreError> {
        self.endpoints.conn().await
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> bool {
        match self.conn().await {
            Ok(mut c) => c.ping().await.is_ok(),
            Err(_) => false,
        }
    }

    /// Closes the pool.
    pub async fn close(self) {
        self.endpoints.close().await;
    }

    /// Whether the database can be written to now: the active host answers
    /// and is usable (a Galera node in the primary component and synced, not
    /// read-only); when it is not and the URL names other hosts, they are
    /// tried first. Used by the control plane to give corps away while this
    /// instance cannot store anything.
    pub async fn writable(&self) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        match endpoints::probe_conn(&mut conn).await? {
            endpoints::Health::Ready | endpoints::Health::Lagging(_) => Ok(()),
            endpoints::Health::Down(why) => {
                drop(conn);
                self.endpoints.check_active().await;
                let mut conn = self.conn().await?;
                match endpoints::probe_conn(&mut conn).await? {
                    endpoints::Health::Down(_) => {
                        Err(StoreError::Invalid(format!("database not writable: {why}")))
                    }
                    _ => Ok(()),
                }
            }
        }
    }

    /// `host:port` of the database host connections go to now.
    pub fn active_host(&self) -> String {
        self.endpoints.active_label()
    }

    pub(crate) fn table_cache(&self) -> &messages::TableCache {
        &self.messages
    }
}
