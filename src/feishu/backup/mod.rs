//! Cloud documents and wiki backup (issue 14): everything a user can see in
//! Drive, their personal library and the wiki, mirrored into a directory,
//! incrementally and concurrently within Feishu's per-API limits.
//!
//! - [`walk`]: traversal (both pagination styles, shortcuts followed once).
//! - [`fetch`]: export or download one document, with state in `feishu_docs`.
//! - [`wire`]: the paced (shared [`crate::feishu::ratelimit`]), retried calls as the user.
//! - [`schedule`]: the opted-in backups `run` makes on their schedule.
//! - [`names`]: safe, collision-free file names.
//! - [`manifest`]: `manifest.json` and the summary.
//!
//! The walk sends documents into a channel while it goes on; `concurrency`
//! fetchers take them, so listings, exports and downloads overlap and each
//! API's budget stays busy.

pub mod fetch;
pub mod manifest;
pub mod names;
pub mod schedule;
pub mod settings;
pub mod walk;
pub mod wire;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;

use self::manifest::{Entry, Status, Summary};
use super::{Feishu, FeishuError};
use crate::store::StoreError;

/// The route templates the backup calls (API.md §6, §7).
pub mod routes {
    /// Drive listing.
    pub const DRIVE_LIST: &str = "GET /open-apis/drive/v1/files";
    /// Root folder meta.
    pub const ROOT_META: &str = "GET /open-apis/drive/explorer/v2/root_folder/meta";
    /// Plain download.
    pub const DOWNLOAD: &str = "GET /open-apis/drive/v1/files/:file_token/download";
    /// Export task creation.
    pub const EXPORT_CREATE: &str = "POST /open-apis/drive/v1/export_tasks";
    /// Export task status.
    pub const EXPORT_GET: &str = "GET /open-apis/drive/v1/export_tasks/:ticket";
    /// Exported file download.
    pub const EXPORT_DOWNLOAD: &str = "GET /open-apis/drive/v1/export_tasks/file/:file_token/download";
    /// Wiki spaces.
    pub const WIKI_SPACES: &str = "GET /open-apis/wiki/v2/spaces";
    /// One wiki space.
    pub const WIKI_SPACE: &str = "GET /open-apis/wiki/v2/spaces/:space_id";
    /// Wiki nodes.
    pub const WIKI_NODES: &str = "GET /open-apis/wiki/v2/spaces/:space_id/nodes";
}

/// What to back up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Drive ("My Space") from the root folder.
    Drive,
    /// The personal library.
    MyLibrary,
    /// One wiki space.
    Wiki(String),
    /// Drive, the library and every wiki space the user sees.
    All,
}

impl std::str::FromStr for Source {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "drive" => Ok(Source::Drive),
            "my_library" => Ok(Source::MyLibrary),
            "all" => Ok(Source::All),
            s => match s.strip_prefix("wiki:") {
                Some(id) if walk::is_token(id) => Ok(Source::Wiki(id.to_owned())),
                _ => Err(format!("{s:?}: expected drive, my_library, wiki:<space_id> or all")),
            },
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Drive => f.write_str("drive"),
            Source::MyLibrary => f.write_str("my_library"),
            Source::Wiki(id) => write!(f, "wiki:{id}"),
            Source::All => f.write_str("all"),
        }
    }
}

/// Settings of one run.
#[derive(Debug, Clone)]
pub struct BackupOptions {
    /// The app.
    pub app_id: String,
    /// The user whose documents these are (they must have authorized).
    pub open_id: String,
    /// What to back up.
    pub source: Source,
    /// Output directory.
    pub out: PathBuf,
    /// Fetch everything again.
    pub full: bool,
    /// Documents fetched at once.
    pub concurrency: usize,
    /// First wait before polling an export task.
    pub poll_initial: Duration,
    /// Longest wait between polls.
    pub poll_max: Duration,
    /// Give up on an export task after this long.
    pub export_timeout: Duration,
    /// Export tasks tried per document before the fallback.
    pub export_attempts: u32,
}

/// Documents fetched at once unless told otherwise.
pub const DEFAULT_CONCURRENCY: usize = 16;
/// First wait before polling an export task, in ms (the fake's exports take 1.5 s;
/// an earlier poll would only spend the 100/min budget of the poll API).
pub const DEFAULT_POLL_INITIAL_MS: u64 = 2000;
/// Longest wait between polls, in ms.
pub const DEFAULT_POLL_MAX_MS: u64 = 15_000;
/// Give up on an export task after this many seconds.
pub const DEFAULT_EXPORT_TIMEOUT_SECS: u64 = 600;
/// Export tasks tried per document before the download fallback.
pub const DEFAULT_EXPORT_ATTEMPTS: u32 = 3;

impl BackupOptions {
    /// A run of `source` for `open_id` of `app_id` into `out` with the default settings.
    pub fn new(app_id: &str, open_id: &str, source: Source, out: PathBuf) -> BackupOptions {
        BackupOptions {
            app_id: app_id.to_owned(),
            open_id: open_id.to_owned(),
            source,
            out,
            full: false,
            concurrency: DEFAULT_CONCURRENCY,
            poll_initial: Duration::from_millis(DEFAULT_POLL_INITIAL_MS),
            poll_max: Duration::from_millis(DEFAULT_POLL_MAX_MS),
            export_timeout: Duration::from_secs(DEFAULT_EXPORT_TIMEOUT_SECS),
            export_attempts: DEFAULT_EXPORT_ATTEMPTS,
        }
    }
}

/// `MSGFILE_DIR/feishu/<app_id>/<open_id>/docs`, the default output directory
/// (the ids must be identifiers, [`walk::is_token`]).
pub fn default_out(config: &crate::config::Config, app_id: &str, open_id: &str) -> PathBuf {
    config.msgfile_dir.join("feishu").join(app_id).join(open_id).join("docs")
}

/// Why a run could not run (exit code 1); document failures are not errors.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// Feishu refused what the run needs first (user, root folder).
    #[error(transparent)]
    Feishu(#[from] FeishuError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The output directory.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Anything else.
    #[error("{0}")]
    Invalid(String),
}

impl BackupError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> BackupError {
        BackupError::Io { path: path.display().to_string(), source }
    }
}

/// Progress, for a progress bar.
#[derive(Debug, Default)]
pub struct Progress {
    /// Documents found so far.
    pub found: AtomicU64,
    /// Documents finished.
    pub done: AtomicU64,
}

/// What a run did.
#[derive(Debug)]
pub struct BackupReport {
    /// Counts.
    pub summary: Summary,
    /// Every node, sorted by path.
    pub entries: Vec<Entry>,
    /// Requests sent.
    pub requests: u64,
    /// 429s received.
    pub throttled: u64,
}

impl BackupReport {
    /// 0 all done, 2 some failed.
    pub fn exit_code(&self) -> u8 {
        if self.summary.failed > 0 { 2 } else { 0 }
    }
}

/// Runs one backup.
pub async fn run(
    feishu: Arc<Feishu>,
    opts: BackupOptions,
    progress: Arc<Progress>,
) -> Result<BackupReport, BackupError> {
    let started_at = super::now_ms();
    let app = feishu.app(&opts.app_id).await?;
    // The user must exist and be active before anything is listed.
    feishu.user_token(&app, &opts.open_id).await?;
    std::fs::create_dir_all(opts.out.join(".partial")).map_err(|e| BackupError::io(&opts.out, e))?;
    let out = std::fs::canonicalize(&opts.out).map_err(|e| BackupError::io(&opts.out, e))?;
    let opts = Arc::new(BackupOptions { out, ..opts });
    let wire = Arc::new(wire::Wire::new(feishu.clone(), app, &opts.open_id)?);
    let rows = feishu.store.feishu_docs(&opts.app_id, &opts.open_id).await?;
    let rows = Arc::new(rows.into_iter().map(|r| (r.token.clone(), r)).collect());
    let (tx, rx) = mpsc::channel::<walk::DocJob>(4096);
    let walker = walk::Walker::new(wire.clone(), tx, progress.clone());
    let fetcher = Arc::new(fetch::Fetcher {
        wire: wire.clone(),
        store: feishu.store.clone(),
        opts: opts.clone(),
        rows,
    });
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let mut workers = Vec::new();
    for _ in 0..opts.concurrency.max(1) {
        let (rx, fetcher, progress) = (rx.clone(), fetcher.clone(), progress.clone());
        workers.push(tokio::spawn(async move {
            let mut out = Vec::new();
            loop {
                let job = rx.lock().await.recv().await;
                let Some(job) = job else { break };
                let entry = match fetcher.fetch(&job).await {
                    Ok(e) => e,
                    Err(e) => failed_entry(&job, format!("{e}")),
                };
                progress.done.fetch_add(1, Ordering::Relaxed);
                out.push(entry);
            }
            out
        }));
    }
    let walked = walker.run(&opts.source).await;
    let mut entries = walker.take_entries();
    drop(walker);
    let mut docs = Vec::new();
    for w in workers {
        docs.extend(w.await.map_err(|e| BackupError::Invalid(format!("a fetcher stopped: {e}")))?);
    }
    walked?;
    // Shortcuts and second sightings show the outcome of the document they point at.
    let by_token: std::collections::HashMap<String, Entry> =
        docs.iter().map(|d| (d.obj_token.clone().unwrap_or_else(|| d.token.clone()), d.clone())).collect();
    for e in &mut entries {
        if let Some(t) = &e.obj_token
            && let Some(d) = by_token.get(t)
        {
            e.status = d.status;
            e.bytes = d.bytes;
            e.sha256 = d.sha256.clone();
            e.path = d.path.clone();
        }
    }
    entries.extend(docs);
    entries.sort_by(|a, b| a.path.cmp(&b.path).then(a.token.cmp(&b.token)));
    let summary = Summary::of(&entries);
    manifest::write(
        &opts.out,
        &manifest::Manifest {
            app_id: &opts.app_id,
            open_id: &opts.open_id,
            source: opts.source.to_string(),
            started_at,
            finished_at: super::now_ms(),
            summary: &summary,
            nodes: &entries,
        },
    )
    .map_err(|e| BackupError::io(&opts.out, e))?;
    Ok(BackupReport {
        summary,
        entries,
        requests: wire.counts.requests.load(Ordering::Relaxed),
        throttled: wire.counts.throttled.load(Ordering::Relaxed),
    })
}

fn failed_entry(job: &walk::DocJob, reason: String) -> Entry {
    Entry {
        token: job.node_token.clone(),
        kind: job.kind,
        node_type: job.doc_type.clone(),
        title: job.title.clone(),
        path: job.path.clone(),
        status: Some(Status::Failed),
        reason,
        bytes: None,
        sha256: None,
        obj_token: (job.node_token != job.token).then(|| job.token.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_parse() {
        assert_eq!("drive".parse::<Source>().unwrap(), Source::Drive);
        assert_eq!("wiki:694684332".parse::<Source>().unwrap(), Source::Wiki("694684332".into()));
        assert_eq!(Source::Wiki("1".into()).to_string(), "wiki:1");
        assert!("wiki:../x".parse::<Source>().is_err());
        assert!("everything".parse::<Source>().is_err());
    }
}
