//! `export`: an auditor's copy of part of a corp's archive, with the files'
//! digests and the hash-chain proof of every record (src/archive/export.rs).

use std::path::PathBuf;
use std::process::ExitCode;

use crate::archive::export::write_export;
use crate::config::Config;
use crate::store::CorpId;
use crate::store::browse::ExportSelection;

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["room", "user", "all"])))]
pub(crate) struct ExportArgs {
    /// The corp.
    #[arg(long)]
    corp: String,
    /// One group room.
    #[arg(long)]
    room: Option<String>,
    /// Everything this person sent or received.
    #[arg(long)]
    user: Option<String>,
    /// The whole corp.
    #[arg(long)]
    all: bool,
    /// First day, YYYY-MM-DD (UTC).
    #[arg(long)]
    from: String,
    /// Last day, YYYY-MM-DD (UTC), inclusive.
    #[arg(long)]
    to: String,
    /// A new (or empty) folder for the export.
    #[arg(long)]
    out: PathBuf,
}

fn day_ms(s: &str) -> anyhow::Result<i64> {
    let d = chrono::NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
        .map_err(|e| anyhow::anyhow!("{s:?} is not a day YYYY-MM-DD: {e}"))?;
    Ok(d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc().timestamp_millis())
}

pub(crate) async fn run(args: ExportArgs, config: &Config) -> anyhow::Result<ExitCode> {
    let corpid = CorpId::new(&args.corp)?;
    let selection = match (args.room, args.user, args.all) {
        (Some(r), _, _) => ExportSelection::Room(r),
        (_, Some(u), _) => ExportSelection::User(u),
        _ => ExportSelection::All,
    };
    let (from_ms, to_ms) = (day_ms(&args.from)?, day_ms(&args.to)? + 86_400_000);
    anyhow::ensure!(from_ms < to_ms, "--from is after --to");
    let store = super::open_store(config).await?;
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    let who = format!("cli:{user}");
    let target = format!("{selection:?} {} .. {}", args.from, args.to);
    let summary =
        write_export(&store, &config.msgfile_dir, &corpid, &selection, from_ms, to_ms, &args.out, &who)
            .await?;
    store.log_access(&who, "export", corpid.as_str(), &target, "cli").await?;
    println!(
        "{}: {} record(s), {} media file(s), {} chain link(s) up to head {} at {} in {}",
        corpid,
        summary.records,
        summary.media_files,
        summary.links,
        summary.head.head,
        summary.head.pos,
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}
