//! Several database hosts of one cluster behind one `DATABASE_URL`, and the
//! failover between them.
//!
//! `mysql://user:pw@db1:3306,db2:3306,db3/wework_archive?opts` names three
//! hosts of one cluster (MariaDB Galera, or anything MySQL-compatible that
//! replicates synchronously). Every connection of the process (the ingest
//! writer, the media queue, the control plane, `/metrics`) comes from the pool
//! of one *active* host: the first healthy one in the order given. When
//! getting a connection from it fails, or a health probe finds it unusable (a
//! Galera node that left the primary component answers every query with
//! "WSREP has not yet prepared node for application use"), the next healthy
//! host in order becomes active. It stays active until it fails in turn: moving
//! back as soon as an earlier host answers would move writers to a node that
//! may still be catching up.
//!
//! Healthy means: it accepts a connection within [`PROBE_TIMEOUT`], and, if it
//! is a Galera node, `wsrep_ready` is `ON` and its state is `Synced` (a joiner
//! or donor is not used while a synced node exists), and it is not
//! `read_only`. A single-host URL is used as it is, with no probing.

use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use mysql_async::prelude::*;
use mysql_async::{Conn, Opts, OptsBuilder, Pool};

use super::StoreError;

/// How long a probe (connect + health query) of one host may take.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// How often the active host of a multi-host URL is probed in the background.
pub const MONITOR_INTERVAL: Duration = Duration::from_millis(500);

/// After every host was found unusable, how long callers get that answer
/// without another round of probes (keeps a dead cluster from being probed by
/// every caller at once).
const ALL_DOWN_HOLD: Duration = Duration::from_millis(300);

/// One host of the URL.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// `host:port` as written in the URL (for logs; never the password).
    pub label: String,
    /// Connection options for this host alone.
    pub opts: Opts,
}

/// Splits a possibly multi-host `mysql://` URL into one set of options per host.
///
/// The user, password, database and query options apply to every host. Hosts
/// are separated by commas; each may carry its own port (`[::1]:3307` for IPv6).
pub fn parse(url: &str) -> Result<Vec<Endpoint>, StoreError> {
    let bad = |why: &str| StoreError::Url(why.to_owned());
    let rest = url.strip_prefix("mysql://").ok_or_else(|| bad("must start with mysql://"))?;
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (userinfo, hosts) = match authority.rfind('@') {
        Some(i) => (&authority[..=i], &authority[i + 1..]),
        None => ("", authority),
    };
    let mut out = Vec::new();
    for host in hosts.split(',') {
        let host = host.trim();
        if host.is_empty() {
            return Err(bad("empty host in the host list"));
        }
        let one = format!("mysql://{userinfo}{host}{tail}");
        let opts = Opts::from_url(&one).map_err(|e| StoreError::Url(format!("host {host}: {e}")))?;
        out.push(Endpoint { label: host.to_owned(), opts });
    }
    Ok(out)
}

/// What a health probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Usable for writes.
    Ready,
    /// A Galera node that accepts connections but is not synced (joining, donor).
    Lagging(String),
    /// Not usable: the reason.
    Down(String),
}

/// Asks an open connection whether its server may be written to now.
///
/// Only `SHOW` statements: a Galera node outside the primary component refuses
/// everything else, and so would fail the probe for the wrong reason.
pub async fn probe_conn(conn: &mut Conn) -> Result<Health, mysql_async::Error> {
    let status: Vec<(String, String)> = conn
        .query(
            "SHOW GLOBAL STATUS WHERE Variable_name IN ('wsrep_ready', 'wsrep_local_state_comment', 'wsrep_connected')",
        )
        .await?;
    let vars: Vec<(String, String)> =
        conn.query("SHOW GLOBAL VARIABLES WHERE Variable_name IN ('read_only', 'wsrep_on')").await?;
    let on = |name: &str| {
        vars.iter().any(|(k, v)| k.eq_ignore_ascii_case(name) && (v.eq_ignore_ascii_case("ON") || v == "1"))
    };
    let get = |name: &str| status.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str());
    if on("read_only") {
        return Ok(Health::Down("read_only = ON".into()));
    }
    // A plain MariaDB reports wsrep_ready = OFF too: only a server with
    // wsrep_on is a Galera node.
    if !on("wsrep_on") {
        return Ok(Health::Ready);
    }
    match get("wsrep_ready") {
        None => Ok(Health::Ready), // not a Galera node
        Some(v) if !v.eq_ignore_ascii_case("ON") => Ok(Health::Down(format!(
            "wsrep_ready = {v} (state {})",
            get("wsrep_local_state_comment").unwrap_or("?")
        ))),
        Some(_) => match get("wsrep_local_state_comment") {
            Some("Synced") | None => Ok(Health::Ready),
            Some(other) => Ok(Health::Lagging(format!("state {other}"))),
        },
    }
}

/// Opens a fresh connection to `ep` and probes it, within [`PROBE_TIMEOUT`].
pub async fn probe(ep: &Endpoint) -> Health {
    let attempt = async {
        let mut conn = Conn::new(ep.opts.clone()).await?;
        let h = probe_conn(&mut conn).await;
        let _ = conn.disconnect().await;
        h
    };
    match tokio::time::timeout(PROBE_TIMEOUT, attempt).await {
        Ok(Ok(h)) => h,
        Ok(Err(e)) => Health::Down(e.to_string()),
        Err(_) => Health::Down(format!("no answer within {PROBE_TIMEOUT:?}")),
    }
}

/// Whether `e` means the host itself is unusable (not the statement): worth
/// moving to another host.
pub fn is_host_failure(e: &mysql_async::Error) -> bool {
    match e {
        mysql_async::Error::Io(_) | mysql_async::Error::Driver(_) => true,
        mysql_async::Error::Server(s) => super::retry::is_wsrep_not_ready_code(s.code),
        _ => false,
    }
}

struct Active {
    index: usize,
    pool: Pool,
    /// Bumped on every switch, so concurrent failures switch once.
    generation: u64,
}

/// The hosts of one URL and the pool of the active one (see the module doc).
pub struct Endpoints {
    hosts: Vec<Endpoint>,
    active: Mutex<Active>,
    /// Serialises failovers.
    switching: tokio::sync::Mutex<Option<Instant>>,
}

impl std::fmt::Debug for Endpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let labels: Vec<&str> = self.hosts.iter().map(|h| h.label.as_str()).collect();
        f.debug_struct("Endpoints").field("hosts", &labels).field("active", &self.active_label()).finish()
    }
}

impl Endpoints {
    /// Endpoints for `hosts` (non-empty), the first one active. A multi-host
    /// set starts its background monitor and moves at once to the first
    /// healthy host.
    pub async fn new(hosts: Vec<Endpoint>) -> Result<Arc<Endpoints>, StoreError> {
        let first = hosts.first().ok_or_else(|| StoreError::Url("no host".into()))?;
        let pool = Pool::new(first.opts.clone());
        let eps = Arc::new(Endpoints {
            active: Mutex::new(Active { index: 0, pool, generation: 0 }),
            switching: tokio::sync::Mutex::new(None),
            hosts,
        });
        if eps.hosts.len() > 1 {
            if probe(&eps.hosts[0]).await != Health::Ready {
                let _ = eps.fail_over(0).await;
            }
            tokio::spawn(monitor(Arc::downgrade(&eps)));
        }
        Ok(eps)
    }

    /// The hosts, in preference order.
    pub fn hosts(&self) -> &[Endpoint] {
        &self.hosts
    }

    /// `host:port` of the active host.
    pub fn active_label(&self) -> String {
        let a = self.active.lock().unwrap();
        self.hosts[a.index].label.clone()
    }

    fn current(&self) -> (u64, Pool) {
        let a = self.active.lock().unwrap();
        (a.generation, a.pool.clone())
    }

    /// A connection from the active host's pool; on a host failure, one from
    /// the next healthy host's.
    pub async fn conn(&self) -> Result<Conn, StoreError> {
        let (generation, pool) = self.current();
        match pool.get_conn().await {
            Ok(c) => Ok(c),
            Err(e) if self.hosts.len() > 1 && is_host_failure(&e) => {
                self.fail_over(generation).await.map_err(|_| StoreError::Db(e))?;
                let (_, pool) = self.current();
                Ok(pool.get_conn().await?)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Moves to the first healthy host (a lagging one only when none is
    /// synced), unless another caller already switched since `seen`.
    /// Err when no host is usable (the active one stays).
    pub async fn fail_over(&self, seen: u64) -> Result<(), StoreError> {
        let mut last_all_down = self.switching.lock().await;
        if self.current().0 != seen {
            return Ok(());
        }
        if last_all_down.is_some_and(|t| t.elapsed() < ALL_DOWN_HOLD) {
            return Err(StoreError::Invalid("no database host is usable".into()));
        }
        let mut lagging = None;
        let mut reasons = Vec::new();
        for (i, ep) in self.hosts.iter().enumerate() {
            match probe(ep).await {
                Health::Ready => {
                    *last_all_down = None;
                    self.switch_to(i, "healthy");
                    return Ok(());
                }
                Health::Lagging(why) => {
                    reasons.push(format!("{}: {why}", ep.label));
                    lagging.get_or_insert(i);
                }
                Health::Down(why) => reasons.push(format!("{}: {why}", ep.label)),
            }
        }
        if let Some(i) = lagging {
            *last_all_down = None;
            self.switch_to(i, "not synced, but the only one answering");
            return Ok(());
        }
        *last_all_down = Some(Instant::now());
        tracing::warn!(hosts = %reasons.join("; "), "no database host is usable");
        Err(StoreError::Invalid(format!("no database host is usable ({})", reasons.join("; "))))
    }

    fn switch_to(&self, index: usize, why: &str) {
        let mut a = self.active.lock().unwrap();
        a.generation += 1;
        if a.index == index {
            return;
        }
        let from = self.hosts[a.index].label.clone();
        let old = std::mem::replace(&mut a.pool, Pool::new(self.hosts[index].opts.clone()));
        a.index = index;
        drop(a);
        tracing::warn!(from = %from, to = %self.hosts[index].label, "database host failover ({why})");
        // Connections still out finish (or fail) on their own; the old pool
        // closes once they are back.
        tokio::spawn(async move {
            let _ = old.disconnect().await;
        });
    }

    /// Probes the active host; fails over when it is unusable.
    pub async fn check_active(&self) {
        let (generation, pool) = self.current();
        let health = match tokio::time::timeout(PROBE_TIMEOUT, async {
            let mut c = pool.get_conn().await?;
            probe_conn(&mut c).await
        })
        .await
        {
            Ok(Ok(h)) => h,
            Ok(Err(e)) => Health::Down(e.to_string()),
            Err(_) => Health::Down("no answer in time".into()),
        };
        if !matches!(health, Health::Ready) {
            tracing::info!(host = %self.active_label(), ?health, "the active database host is not usable");
            let _ = self.fail_over(generation).await;
        }
    }

    /// Closes the active pool.
    pub async fn close(&self) {
        let (_, pool) = self.current();
        let _ = pool.disconnect().await;
    }
}

/// Probes the active host every [`MONITOR_INTERVAL`] while the endpoints are in use.
async fn monitor(eps: Weak<Endpoints>) {
    loop {
        tokio::time::sleep(MONITOR_INTERVAL).await;
        let Some(eps) = eps.upgrade() else { return };
        eps.check_active().await;
    }
}

/// Options of the first host without its database (to create the database).
pub fn server_opts(ep: &Endpoint) -> Opts {
    OptsBuilder::from_opts(ep.opts.clone()).db_name(None::<String>).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_host_parses_as_itself() {
        let eps = parse("mysql://root@127.0.0.1:3306/wework_archive").unwrap();
        assert_eq!(eps.len(), 1);
        assert_eq!(eps[0].label, "127.0.0.1:3306");
        assert_eq!(eps[0].opts.db_name(), Some("wework_archive"));
        assert_eq!(eps[0].opts.tcp_port(), 3306);
    }

    #[test]
    fn several_hosts_share_user_database_and_options() {
        let eps = parse("mysql://u:p%40w@db1:3307,db2,[::1]:3309/arch?stmt_cache_size=7").unwrap();
        let labels: Vec<&str> = eps.iter().map(|e| e.label.as_str()).collect();
        assert_eq!(labels, ["db1:3307", "db2", "[::1]:3309"]);
        assert_eq!(eps[0].opts.ip_or_hostname(), "db1");
        assert_eq!(eps[1].opts.tcp_port(), 3306);
        assert_eq!(eps[2].opts.tcp_port(), 3309);
        for e in &eps {
            assert_eq!(e.opts.user(), Some("u"));
            assert_eq!(e.opts.pass(), Some("p@w"));
            assert_eq!(e.opts.db_name(), Some("arch"));
            assert_eq!(e.opts.stmt_cache_size(), 7);
        }
        assert!(server_opts(&eps[0]).db_name().is_none());
    }

    #[test]
    fn malformed_host_lists_are_refused() {
        assert!(parse("mysql://u@db1,,db2/x").is_err());
        assert!(parse("mysql://u@/x").is_err());
        assert!(parse("postgres://u@db/x").is_err());
        assert!(parse("mysql://u@db1:notaport/x").is_err());
    }

    #[test]
    fn host_failures_are_told_from_statement_errors() {
        let server = |code| {
            mysql_async::Error::Server(mysql_async::ServerError {
                code,
                message: String::new(),
                state: String::new(),
            })
        };
        assert!(is_host_failure(&server(1047)));
        assert!(!is_host_failure(&server(1062)));
        assert!(!is_host_failure(&server(1213)));
        let io = mysql_async::Error::Io(mysql_async::IoError::Io(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused,
        )));
        assert!(is_host_failure(&io));
    }
}
