//! `feishu backup`: back up a user's cloud documents and wiki (issue 14).
//! Exit code 0 all done, 2 some documents failed, 1 the backup could not run.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::config::Config;
use crate::feishu::Feishu;
use crate::feishu::backup::{self, BackupOptions, Progress, Source};

/// Options of one backup run.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct BackupRunArgs {
    /// The app.
    #[arg(long, env = "FEISHU_BACKUP_APP_ID")]
    pub app_id: String,
    /// The user (`ou_…`) whose documents to back up; they must have authorized.
    #[arg(long, env = "FEISHU_BACKUP_USER")]
    pub user: String,
    /// drive, my_library, wiki:<space_id> or all.
    #[arg(long, env = "FEISHU_BACKUP_SOURCE", default_value = "all")]
    pub source: Source,
    /// Output directory [default: MSGFILE_DIR/feishu/<app_id>/<open_id>/docs].
    #[arg(long, env = "FEISHU_BACKUP_OUT")]
    pub out: Option<PathBuf>,
    /// Fetch every document again, changed or not.
    #[arg(long, env = "FEISHU_BACKUP_FULL")]
    pub full: bool,
    /// Documents fetched at once (the per-API limits pace them).
    #[arg(long, env = "FEISHU_BACKUP_CONCURRENCY", default_value_t = backup::DEFAULT_CONCURRENCY)]
    pub concurrency: usize,
    /// Multiply every documented Feishu rate limit by this (below 1 leaves room for
    /// other clients of the app; above 1 only for tenants with raised limits or a fake)
    /// [default: --feishu-rate-scale, 1].
    #[arg(long)]
    pub rate_scale: Option<f64>,
    /// First wait before polling an export task, in ms.
    #[arg(long, env = "FEISHU_BACKUP_POLL_INITIAL_MS", default_value_t = backup::DEFAULT_POLL_INITIAL_MS)]
    pub poll_initial_ms: u64,
    /// Longest wait between polls of an export task, in ms.
    #[arg(long, env = "FEISHU_BACKUP_POLL_MAX_MS", default_value_t = backup::DEFAULT_POLL_MAX_MS)]
    pub poll_max_ms: u64,
    /// Give up on an export task after this many seconds.
    #[arg(long, env = "FEISHU_BACKUP_EXPORT_TIMEOUT_SECS", default_value_t = backup::DEFAULT_EXPORT_TIMEOUT_SECS)]
    pub export_timeout_secs: u64,
    /// Export tasks tried per document (internal errors, timeouts) before the download fallback.
    #[arg(long, env = "FEISHU_BACKUP_EXPORT_ATTEMPTS", default_value_t = backup::DEFAULT_EXPORT_ATTEMPTS)]
    pub export_attempts: u32,
    /// No progress bar even on a terminal.
    #[arg(long, env = "FEISHU_BACKUP_QUIET")]
    pub quiet: bool,
}

impl BackupRunArgs {
    /// The options these arguments describe.
    pub fn options(&self, config: &Config) -> BackupOptions {
        BackupOptions {
            app_id: self.app_id.clone(),
            open_id: self.user.clone(),
            source: self.source.clone(),
            out: self.out.clone().unwrap_or_else(|| backup::default_out(config, &self.app_id, &self.user)),
            full: self.full,
            concurrency: self.concurrency.clamp(1, 256),
            poll_initial: Duration::from_millis(self.poll_initial_ms.max(10)),
            poll_max: Duration::from_millis(self.poll_max_ms.max(self.poll_initial_ms).max(10)),
            export_timeout: Duration::from_secs(self.export_timeout_secs.max(1)),
            export_attempts: self.export_attempts.clamp(1, 20),
        }
    }
}


fn check_ids(a: &BackupRunArgs) -> anyhow::Result<()> {
    for (what, v) in [("--app-id", &a.app_id), ("--user", &a.user)] {
        if !backup::walk::is_token(v) {
            anyhow::bail!("{what} {v:?} is not an identifier");
        }
    }
    Ok(())
}

/// Runs one backup and prints the summary.
pub(crate) async fn run(args: BackupRunArgs, config: Arc<Config>) -> ExitCode {
    match run_inner(args, config).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("wework-archive feishu backup: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn run_inner(args: BackupRunArgs, config: Arc<Config>) -> anyhow::Result<ExitCode> {
    check_ids(&args)?;
    let config = match args.rate_scale {
        Some(s) if s.is_finite() && s > 0.0 => {
            let mut c = (*config).clone();
            c.feishu.rate_scale = s;
            Arc::new(c)
        }
        Some(s) => anyhow::bail!("--rate-scale must be a positive number, got {s}"),
        None => config,
    };
    let store = super::open_store(&config).await?;
    let feishu = Feishu::new(store, config.clone())?;
    let opts = args.options(&config);
    let progress = Arc::new(Progress::default());
    let bar = (!args.quiet && std::io::stderr().is_terminal()).then(|| spawn_bar(progress.clone()));
    let report = backup::run(feishu, opts.clone(), progress).await;
    if let Some((bar, task)) = bar {
        task.abort();
        bar.finish_and_clear();
    }
    let report = report?;
    println!("backup of {} ({}) into {}", opts.open_id, opts.source, opts.out.display());
    for line in report.summary.lines() {
        println!("{line}");
    }
    println!("requests {}, throttled {}", report.requests, report.throttled);
    Ok(ExitCode::from(report.exit_code()))
}

/// A progress bar on stderr, updated from the counters.
fn spawn_bar(progress: Arc<Progress>) -> (indicatif::ProgressBar, tokio::task::JoinHandle<()>) {
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {pos}/{len} documents [{elapsed_precise}] {wide_bar} {per_sec}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let b = bar.clone();
    let task = tokio::spawn(async move {
        loop {
            let done = progress.done.load(Ordering::Relaxed);
            b.set_length(progress.found.load(Ordering::Relaxed).max(done));
            b.set_position(done);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    (bar, task)
}
