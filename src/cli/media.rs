//! `media …`: download a corp's media now, and requeue jobs that ended badly.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::bail;
use clap::Subcommand;

use crate::config::Config;
use crate::store::CorpId;
use crate::wecom::ingest::CorpSpec;
use crate::wecom::media::{JobState, MediaContext, MediaReport, drain_corp, requeue, run_corp_media};

#[derive(Debug, Subcommand)]
pub(crate) enum MediaCommand {
    /// Download one corp's media (`--until-done`: stop when its queue is empty).
    Pull(PullArgs),
    /// Put failed, corrupt, expired and paused jobs back in the queue.
    Retry(RetryArgs),
}

#[derive(Debug, clap::Args)]
pub(crate) struct PullArgs {
    /// The corp.
    #[arg(long)]
    corp: String,
    /// Stop when every job is done or settled (otherwise keep polling until Ctrl-C).
    #[arg(long)]
    until_done: bool,
}

fn retryable_state(s: &str) -> Result<JobState, String> {
    JobState::parse(s).filter(|st| JobState::RETRYABLE.contains(st)).ok_or_else(|| {
        let names: Vec<_> = JobState::RETRYABLE.iter().map(|s| s.as_str()).collect();
        format!("{s:?} is not one of {}", names.join(", "))
    })
}

#[derive(Debug, clap::Args)]
pub(crate) struct RetryArgs {
    /// Only this corp (default: every corp).
    #[arg(long)]
    corp: Option<String>,
    /// Only jobs in this state (repeatable; default: failed, corrupt, expired, paused).
    #[arg(long = "status", value_parser = retryable_state)]
    status: Vec<JobState>,
}

pub(crate) async fn run(cmd: MediaCommand, config: Arc<Config>) -> anyhow::Result<ExitCode> {
    match cmd {
        MediaCommand::Pull(args) => pull(args, config).await,
        MediaCommand::Retry(args) => retry(args, &config).await,
    }
}

async fn pull(args: PullArgs, config: Arc<Config>) -> anyhow::Result<ExitCode> {
    let corpid = CorpId::new(&args.corp)?;
    let store = super::open_store(&config).await?;
    let lib = super::load_sdk(&config)?;
    let Some(row) = store.corp(&corpid).await? else { bail!("no corp {corpid} in corplist") };
    let spec = CorpSpec::load(&store, &row, &config.secrets).await?;
    let ctx = MediaContext::from_config(store, lib, &config);
    let cancel = super::shutdown_token();
    if args.until_done {
        let report = drain_corp(&ctx, &spec, cancel).await?;
        print_report(&report);
        // 1: some files could not be fetched (see `status`, `media retry`).
        return Ok(if report.unfinished() == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) });
    }
    run_corp_media(ctx.clone(), spec, cancel).await;
    println!("{corpid}: {} file(s), {} bytes downloaded until stopped", ctx.stats.files(), ctx.stats.bytes());
    Ok(ExitCode::SUCCESS)
}

fn print_report(r: &MediaReport) {
    let secs = r.elapsed.as_secs_f64();
    let mib = r.bytes as f64 / (1 << 20) as f64;
    let states: Vec<String> = r.by_state.iter().map(|(s, n)| format!("{s} {n}")).collect();
    println!(
        "{}: {} file(s), {mib:.1} MiB in {secs:.1}s ({:.1} MiB/s); jobs: {}",
        r.corpid,
        r.files,
        if secs > 0.0 { mib / secs } else { 0.0 },
        if states.is_empty() { "none".to_owned() } else { states.join(", ") }
    );
}

async fn retry(args: RetryArgs, config: &Config) -> anyhow::Result<ExitCode> {
    let store = super::open_store(config).await?;
    let corp = args.corp.as_deref().map(CorpId::new).transpose()?;
    let states = if args.status.is_empty() { JobState::RETRYABLE.to_vec() } else { args.status };
    let n = requeue(&store, corp.as_ref(), &states).await?;
    let names: Vec<_> = states.iter().map(|s| s.as_str()).collect();
    println!(
        "requeued {n} media job(s) ({}) of {}",
        names.join(", "),
        corp.as_ref().map_or("every corp".to_owned(), |c| format!("corp {c}"))
    );
    Ok(ExitCode::SUCCESS)
}
