//! `quarantine list|retry`: records that could not be stored (issue #9).

use std::process::ExitCode;
use std::sync::Arc;

use clap::Subcommand;

use crate::config::Config;
use crate::store::CorpId;
use crate::wecom::ingest::replay::replay_quarantined;

#[derive(Debug, Subcommand)]
pub(crate) enum QuarantineCommand {
    /// List quarantined records (held ones; `--all` includes replayed).
    List(ListArgs),
    /// Store held records again, once the cause is fixed (a wider column, a
    /// bigger max_allowed_packet…); those that fail again stay, with the new error.
    Retry(RetryArgs),
}

#[derive(Debug, clap::Args)]
pub(crate) struct ListArgs {
    /// Only this corp.
    #[arg(long)]
    corp: Option<String>,
    /// Include replayed entries.
    #[arg(long)]
    all: bool,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
pub(crate) struct RetryArgs {
    /// Only this corp (default: every corp with held entries).
    #[arg(long)]
    corp: Option<String>,
    /// Only this entry (an id from `quarantine list`).
    #[arg(long)]
    id: Option<u64>,
}

pub(crate) async fn run(cmd: QuarantineCommand, config: Arc<Config>) -> anyhow::Result<ExitCode> {
    match cmd {
        QuarantineCommand::List(args) => list(args, &config).await,
        QuarantineCommand::Retry(args) => retry(args, config).await,
    }
}

async fn list(args: ListArgs, config: &Config) -> anyhow::Result<ExitCode> {
    let store = super::open_store(config).await?;
    let corp = args.corp.as_deref().map(CorpId::new).transpose()?;
    let entries = store.quarantined(corp.as_ref(), args.all).await?;
    if !args.json {
        println!(
            "{:>6} {:<22} {:>20} {:<9} {:>10} {:>3}  msgid / error",
            "id", "corp", "seq", "state", "bytes", "n"
        );
    }
    for e in &entries {
        if args.json {
            println!(
                "{}",
                serde_json::json!({
                    "id": e.id, "corpid": e.corpid, "msgid": e.msgid, "seq": e.seq, "state": e.state,
                    "bytes": e.bytes, "attempts": e.attempts, "error": e.error,
                })
            );
        } else {
            let msgid: String = e.msgid.chars().take(60).collect();
            println!(
                "{:>6} {:<22} {:>20} {:<9} {:>10} {:>3}  {msgid}\n{:>6} {}",
                e.id, e.corpid, e.seq, e.state, e.bytes, e.attempts, "", e.error
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn retry(args: RetryArgs, config: Arc<Config>) -> anyhow::Result<ExitCode> {
    let ctx = super::ingest::context(config).await?;
    let corps: Vec<CorpId> = match &args.corp {
        Some(c) => vec![CorpId::new(c)?],
        None => {
            let mut ids: Vec<String> =
                ctx.store.quarantined(None, false).await?.into_iter().map(|e| e.corpid).collect();
            ids.dedup();
            ids.iter().filter_map(|c| CorpId::new(c).ok()).collect()
        }
    };
    let mut failed = false;
    for corpid in corps {
        match replay_quarantined(&ctx, &corpid, args.id).await {
            Ok(r) => {
                println!(
                    "{corpid}: {} retried, {} stored, {} still failing",
                    r.attempted,
                    r.stored,
                    r.failed.len()
                );
                for (id, error) in &r.failed {
                    println!("  {id}: {error}");
                }
                failed |= !r.failed.is_empty();
            }
            Err(e) => {
                eprintln!("{corpid}: {e}");
                failed = true;
            }
        }
    }
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}
