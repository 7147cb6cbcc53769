//! `feishu backup`: back up a user's cloud documents and wiki (issue 14).
//! Exit code 0 all done, 2 some documents failed, 1 the backup could not run.
//! `feishu backup schedule`: opt a user in to backups `run` makes on a period.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::config::Config;
use crate::feishu::Feishu;
use crate::feishu::backup::{self, BackupOptions, Progress, Source};
use crate::store::Store;
use crate::store::feishu_backup_schedules::BackupSchedule;

/// `feishu backup …`: one run, or `schedule`.
#[derive(Debug, Clone, clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub(crate) struct BackupArgs {
    /// `schedule`, or none for one run now.
    #[command(subcommand)]
    pub command: Option<BackupCommand>,
    /// The run.
    #[command(flatten)]
    pub run: BackupRunArgs,
}

/// Subcommands of `feishu backup`.
#[derive(Debug, Clone, clap::Subcommand)]
pub(crate) enum BackupCommand {
    /// Opt a user in to a backup `run` makes every period (`--every 24h`); `--list`, `--remove`.
    Schedule(ScheduleCmdArgs),
}

/// `feishu backup schedule`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ScheduleCmdArgs {
    /// The app.
    #[arg(long)]
    pub app_id: Option<String>,
    /// The user (`ou_…`); they must have authorized.
    #[arg(long)]
    pub user: Option<String>,
    /// The period: a number and s, m, h or d (`24h`).
    #[arg(long)]
    pub every: Option<String>,
    /// drive, my_library, wiki:<space_id> or all [default: all; with --remove: every source].
    #[arg(long)]
    pub source: Option<Source>,
    /// List the schedules (of --app-id, if given) with their next and last runs.
    #[arg(long, conflicts_with_all = ["remove", "every"])]
    pub list: bool,
    /// Remove the user's schedule (of --source, or all of theirs).
    #[arg(long, conflicts_with = "every")]
    pub remove: bool,
}

/// Options of one backup run.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct BackupRunArgs {
    /// The app.
    #[arg(long, env = "FEISHU_BACKUP_APP_ID", required = true)]
    pub app_id: Option<String>,
    /// The user (`ou_…`) whose documents to back up; they must have authorized.
    #[arg(long, env = "FEISHU_BACKUP_USER", required = true)]
    pub user: Option<String>,
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
        let app_id = self.app_id.clone().unwrap_or_default();
        let user = self.user.clone().unwrap_or_default();
        BackupOptions {
            out: self.out.clone().unwrap_or_else(|| backup::default_out(config, &app_id, &user)),
            app_id,
            open_id: user,
            source: self.source.clone(),
            full: self.full,
            concurrency: self.concurrency.clamp(1, 256),
            poll_initial: Duration::from_millis(self.poll_initial_ms.max(10)),
            poll_max: Duration::from_millis(self.poll_max_ms.max(self.poll_initial_ms).max(10)),
            export_timeout: Duration::from_secs(self.export_timeout_secs.max(1)),
            export_attempts: self.export_attempts.clamp(1, 20),
        }
    }
}

fn check_ids(app_id: Option<&str>, user: Option<&str>) -> anyhow::Result<()> {
    for (what, v) in [("--app-id", app_id), ("--user", user)] {
        match v {
            Some(v) if backup::walk::is_token(v) => {}
            Some(v) => anyhow::bail!("{what} {v:?} is not an identifier"),
            None => anyhow::bail!("{what} is required"),
        }
    }
    Ok(())
}

/// Runs one backup and prints the summary, or manages schedules.
pub(crate) async fn run(args: BackupArgs, config: Arc<Config>) -> ExitCode {
    let result = match args.command {
        Some(BackupCommand::Schedule(s)) => schedule(s, config).await,
        None => run_inner(args.run, config).await,
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("wework-archive feishu backup: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn run_inner(args: BackupRunArgs, config: Arc<Config>) -> anyhow::Result<ExitCode> {
    check_ids(args.app_id.as_deref(), args.user.as_deref())?;
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

/// `feishu backup schedule`: add or change, `--list`, `--remove`.
async fn schedule(args: ScheduleCmdArgs, config: Arc<Config>) -> anyhow::Result<ExitCode> {
    let store = super::open_store(&config).await?;
    if args.list {
        if let Some(a) = &args.app_id {
            check_ids(Some(a), Some("x"))?;
        }
        let all = store.backup_schedules(args.app_id.as_deref()).await?;
        if all.is_empty() {
            println!("no scheduled backups");
        }
        for s in &all {
            println!("{}", schedule_line(s));
        }
        return Ok(ExitCode::SUCCESS);
    }
    check_ids(args.app_id.as_deref(), args.user.as_deref())?;
    let (app_id, user) = (args.app_id.unwrap_or_default(), args.user.unwrap_or_default());
    if args.remove {
        let source = args.source.map(|s| s.to_string());
        let n = store.remove_backup_schedules(&app_id, &user, source.as_deref()).await?;
        println!("removed {n} scheduled backup(s) of {user}");
        return Ok(if n > 0 { ExitCode::SUCCESS } else { ExitCode::from(1) });
    }
    let every = args.every.as_deref().ok_or_else(|| anyhow::anyhow!("--every is required (e.g. 24h)"))?;
    let every = backup::schedule::parse_every(every).map_err(|e| anyhow::anyhow!("--every {e}"))?;
    match store.feishu_app(&app_id, &config.secrets).await? {
        Some(app) if app.enabled => {}
        _ => anyhow::bail!("no enabled Feishu app {app_id:?}"),
    }
    if store.feishu_user(&app_id, &user, &config.secrets).await?.is_none() {
        anyhow::bail!("user {user} of app {app_id} has not authorized (feishu auth)");
    }
    let source = args.source.unwrap_or(Source::All).to_string();
    store.put_backup_schedule(&app_id, &user, &source, every).await?;
    println!("scheduled: a backup of {user} ({source}) every {}", human(every.as_millis() as u64));
    Ok(ExitCode::SUCCESS)
}

/// `12h`, `90m`, `2s`, `1500ms`.
fn human(ms: u64) -> String {
    match ms {
        ms if ms % 86_400_000 == 0 => format!("{}d", ms / 86_400_000),
        ms if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
        ms if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        ms if ms % 1000 == 0 => format!("{}s", ms / 1000),
        ms => format!("{ms}ms"),
    }
}

fn schedule_line(s: &BackupSchedule) -> String {
    let next = if s.claimed_by.is_empty() {
        if s.next_run_in_ms <= 0 {
            "due now".to_owned()
        } else {
            format!("next in {}s", s.next_run_in_ms / 1000)
        }
    } else {
        format!("running on {}", s.claimed_by)
    };
    let last = match s.last_status.as_str() {
        "" => "never ran".to_owned(),
        "failed" => format!("last run FAILED ({} in a row): {}", s.failures, s.last_error),
        st => format!("last run {st}: {}", s.last_summary),
    };
    format!(
        "schedule {} app {} user {} source {} every {}: {next}, {} run(s), {last}",
        s.id,
        s.app_id,
        s.open_id,
        s.source,
        human(s.every_ms),
        s.runs
    )
}

/// For `status`: every schedule as JSON and lines, and how many failed their last run (alarms).
pub(crate) async fn schedule_status(store: &Store) -> anyhow::Result<(serde_json::Value, usize)> {
    let all = store.backup_schedules(None).await?;
    let failing = all.iter().filter(|s| s.last_status == "failed").count();
    let lines: Vec<String> = all
        .iter()
        .map(|s| {
            if s.last_status == "failed" { format!("ALARM: {}", schedule_line(s)) } else { schedule_line(s) }
        })
        .collect();
    let items: Vec<serde_json::Value> = all
        .iter()
        .map(|s| {
            serde_json::json!({
                "id": s.id, "app_id": s.app_id, "open_id": s.open_id, "source": s.source,
                "every_ms": s.every_ms, "next_run_in_ms": s.next_run_in_ms, "runs": s.runs,
                "last_status": s.last_status, "last_error": s.last_error, "failures": s.failures,
                "running_on": s.claimed_by,
            })
        })
        .collect();
    Ok((serde_json::json!({"schedules": items, "failing": failing, "lines": lines}), failing))
}
