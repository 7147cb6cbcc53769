//! `pull`, `run`, `redecrypt`.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::config::Config;
use crate::store::CorpId;
use crate::wecom::ingest::redecrypt::redecrypt_corp;
use crate::wecom::ingest::{CorpSpec, IngestContext, RunOptions, pull_corp};

#[derive(Debug, clap::Args)]
pub(crate) struct PullArgs {
    /// The corp to pull.
    #[arg(long)]
    corp: String,
    /// Stop at the first empty batch (otherwise keep following until Ctrl-C).
    #[arg(long)]
    until_caught_up: bool,
}

#[derive(Debug, clap::Args)]
pub(crate) struct RunArgs {
    /// Seconds to wait after an empty batch before asking again.
    #[arg(long, env = "WEWORK_IDLE_SECS", default_value_t = 2.0)]
    idle_secs: f64,
}

#[derive(Debug, clap::Args)]
pub(crate) struct RedecryptArgs {
    /// Only this corp (default: every corp).
    #[arg(long)]
    corp: Option<String>,
}

pub(crate) async fn context(config: Arc<Config>) -> anyhow::Result<IngestContext> {
    let store = super::open_store(&config).await?;
    let lib = super::load_sdk(&config)?;
    Ok(IngestContext::new(store, lib, config))
}

pub(crate) async fn pull(args: PullArgs, config: Arc<Config>) -> anyhow::Result<ExitCode> {
    let corpid = CorpId::new(&args.corp)?;
    let ctx = context(config).await?;
    let Some(row) = ctx.store.corp(&corpid).await? else { bail!("no corp {corpid} in corplist") };
    let spec = CorpSpec::load(&ctx.store, &row, &ctx.config.secrets).await?;
    let opts = if args.until_caught_up {
        RunOptions::until_caught_up()
    } else {
        RunOptions::follow(Duration::from_secs(2))
    };
    let cancel = super::shutdown_token();
    let report = pull_corp(&ctx, spec, opts, cancel).await?;
    println!(
        "{corpid}: fetched {} record(s), stored {} new, cursor {}, {} failed call(s)",
        report.fetched, report.stored, report.cursor, report.failures
    );
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn run(args: RunArgs, config: Arc<Config>) -> anyhow::Result<ExitCode> {
    let idle = Duration::try_from_secs_f64(args.idle_secs).context("--idle-secs")?;
    // Mistakes in the settings fail at once; an unreachable database does not
    // (below): supervisord gives up on a program that keeps exiting, and the
    // archive would silently stop.
    let lib = super::load_sdk(&config)?;
    let listener = std::net::TcpListener::bind(config.http_listen)
        .with_context(|| format!("binding the HTTP endpoint {} (--http-listen)", config.http_listen))?;
    listener.set_nonblocking(true)?;
    tracing::info!("http listening on {}", listener.local_addr()?);
    let cancel = super::shutdown_token();
    let Some(store) = super::wait_db::wait_for_database(&config, &listener, &cancel).await? else {
        tracing::info!("stopped while waiting for the database");
        return Ok(ExitCode::SUCCESS);
    };
    let ctx = IngestContext::new(store, lib, config.clone());
    let listener = tokio::net::TcpListener::from_std(listener)?;
    crate::archive::anchor::spawn(ctx.store.clone(), cancel.clone());
    // The search index follows the archive while the service runs.
    super::search::spawn_service_indexer(ctx.store.clone(), &config, cancel.clone());
    // Leases, change events, reloads: the control plane decides which corps
    // this instance pulls (src/control/mod.rs).
    let control = Arc::new(crate::control::ControlStats::default());
    let state =
        crate::http::AppState::new(ctx.store.clone(), ctx.stats.clone(), control.clone(), config.clone());
    let ctx_store = ctx.store.clone();
    let coordinator = crate::control::Coordinator::new(ctx, idle, control, cancel.clone())?;
    let mut state = state.with_media(coordinator.media_stats());
    // Feishu: the public endpoint and its tasks run beside the WeCom workers
    // once any Feishu app is configured (so WeCom-only deployments bind no
    // second port), also when the first app is added while `run` runs.
    let feishu = crate::feishu::Feishu::new(ctx_store.clone(), config.clone())?;
    state = state.with_feishu(feishu.clone());
    // Scheduled docs backups (issue 14): due ones are claimed from MySQL, so any number of instances share them.
    let backups = tokio::spawn(crate::feishu::backup::schedule::run(feishu.clone(), cancel.clone()));
    let feishu_side = if ctx_store.feishu_apps(&config.secrets).await?.is_empty() {
        tokio::spawn(super::feishu::start_once_configured(feishu, config.clone(), cancel.clone()))
    } else {
        // Configured at start: a public port that cannot be bound is a
        // setting to fix, so `run` fails now rather than limp.
        super::feishu::start(feishu, &config, cancel.clone()).await?
    };
    let http = tokio::spawn(crate::http::serve(listener, state, cancel.clone().cancelled_owned()));
    let result = coordinator.run(cancel.clone()).await;
    cancel.cancel();
    match tokio::time::timeout(Duration::from_secs(5), http).await {
        Ok(Ok(Err(e))) => tracing::warn!("http server: {e}"),
        Ok(_) => {}
        Err(_) => tracing::warn!("http server: connections still open at exit"),
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), backups).await;
    if tokio::time::timeout(Duration::from_secs(5), feishu_side).await.is_err() {
        tracing::warn!("feishu: tasks still running at exit");
    }
    result?;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn redecrypt(args: RedecryptArgs, config: Arc<Config>) -> anyhow::Result<ExitCode> {
    let ctx = context(config).await?;
    let corps: Vec<CorpId> = match args.corp {
        Some(c) => vec![CorpId::new(&c)?],
        None => ctx.store.corps().await?.iter().filter_map(|r| r.corp_id().ok()).collect(),
    };
    let mut failed = false;
    for corpid in corps {
        match redecrypt_corp(&ctx, &corpid).await {
            Ok(r) => println!(
                "{corpid}: {} attempted, {} decrypted, still undecrypted: {:?}",
                r.attempted, r.completed, r.remaining
            ),
            Err(e) => {
                eprintln!("{corpid}: {e}");
                failed = true;
            }
        }
    }
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}
