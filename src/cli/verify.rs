//! `verify`: recompute each corp's hash chain and name the first altered,
//! deleted, inserted or reordered record.

use std::process::ExitCode;

use crate::archive::verify::verify_corp;
use crate::config::Config;
use crate::store::CorpId;

#[derive(Debug, clap::Args)]
pub(crate) struct VerifyArgs {
    /// Only this corp (default: every corp with a chain or in corplist).
    #[arg(long)]
    corp: Option<String>,
    /// Start at the first record with this seq or later (trusting the chain before it).
    #[arg(long, default_value_t = 0)]
    from: u64,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// Check an export folder offline instead (no database needed).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["corp", "from"])]
    export: Option<std::path::PathBuf>,
    /// With --export: a head recorded elsewhere, POS:HASH (the daily log line,
    /// `status`), which the export's chain must contain.
    #[arg(long, value_name = "POS:HASH", requires = "export")]
    anchor: Option<String>,
}

pub(crate) async fn run(args: VerifyArgs, config: &Config) -> anyhow::Result<ExitCode> {
    if let Some(dir) = &args.export {
        return verify_export_dir(dir, args.anchor.as_deref(), args.json);
    }
    let store = super::open_store(config).await?;
    let corps: Vec<CorpId> = match &args.corp {
        Some(c) => vec![CorpId::new(c)?],
        None => {
            let mut ids: Vec<CorpId> = store.corps().await?.iter().filter_map(|r| r.corp_id().ok()).collect();
            for h in store.chain_heads().await? {
                if let Ok(id) = CorpId::new(&h.corpid)
                    && !ids.contains(&id)
                {
                    ids.push(id);
                }
            }
            ids
        }
    };
    let mut reports = Vec::new();
    for corpid in &corps {
        reports.push(verify_corp(&store, corpid, args.from).await?);
    }
    let bad = reports.iter().filter(|r| r.finding.is_some()).count();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        for r in &reports {
            match &r.finding {
                None => println!(
                    "{}: ok, {} link(s), {} record(s) checked, head {} at {}",
                    r.corpid, r.links, r.records, r.head.head, r.head.pos
                ),
                Some(f) => println!("{}: TAMPERED: {f} ({} link(s) checked before it)", r.corpid, r.links),
            }
        }
    }
    Ok(if bad > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

fn verify_export_dir(dir: &std::path::Path, anchor: Option<&str>, json: bool) -> anyhow::Result<ExitCode> {
    let mut check = crate::archive::export::verify_export(dir)?;
    if let Some(a) = anchor
        && check.problem.is_none()
    {
        check.problem = crate::archive::export::check_anchor(dir, a)?;
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&check)?);
    } else {
        match &check.problem {
            None => println!(
                "{}: export ok, {} record(s) and {} file(s) match; chain links {}..{} end at head {}{}",
                check.corpid,
                check.records,
                check.files,
                check.first_pos,
                check.head_pos,
                check.head,
                if anchor.is_some() {
                    " (anchor found)"
                } else {
                    "; compare the head with an anchor kept elsewhere"
                }
            ),
            Some(p) => println!("{}: export TAMPERED: {p}", check.corpid),
        }
    }
    Ok(if check.problem.is_some() { ExitCode::from(1) } else { ExitCode::SUCCESS })
}
