//! `status`: what an on-call admin needs per corp.

use std::process::ExitCode;

use crate::config::Config;

#[derive(Debug, clap::Args)]
pub(crate) struct StatusArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(args: StatusArgs, config: &Config) -> anyhow::Result<ExitCode> {
    let store = super::open_store(config).await?;
    let corps = store.corps().await?;
    let states = store.states().await?;
    let mut out = Vec::new();
    let mut alarms = 0;
    for row in &corps {
        let state = states.iter().find(|s| s.corpid == row.corpid).cloned().unwrap_or_default();
        let (undecryptable, by_status) = match row.corp_id() {
            Ok(id) => {
                let counts = store.decrypt_status_counts(&id).await?;
                let bad: u64 = counts
                    .iter()
                    .filter(|(s, _)| {
                        crate::store::messages::DecryptStatus::parse(s).is_none_or(|d| d.retryable())
                    })
                    .map(|(_, n)| n)
                    .sum();
                (bad, counts)
            }
            Err(_) => (0, Vec::new()),
        };
        if !state.alarm.is_empty() {
            alarms += 1;
        }
        out.push(serde_json::json!({
            "corpid": row.corpid,
            "corpname": row.corpname,
            "enabled": row.enabled(),
            "valid_corpid": row.corp_id().is_ok(),
            "cursor": state.seq,
            "owner": state.owner,
            "last_success_at": state.last_success_at,
            "last_error_code": state.last_error_code,
            "last_error": state.last_error,
            "stored_total": state.stored_total,
            "undecryptable": undecryptable,
            "by_decrypt_status": by_status.into_iter().collect::<std::collections::BTreeMap<_, _>>(),
            "alarm": state.alarm,
        }));
    }
    let warning = (!config.secrets.has_master_key()).then_some(
        "no master key (WEWORK_MASTER_KEY): corp secrets and private keys are stored in plaintext",
    );
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "corps": out, "warning": warning }))?
        );
    } else {
        if let Some(w) = warning {
            println!("WARNING: {w}");
        }
        println!(
            "{:<22} {:<8} {:>10} {:<20} {:>10} {:>8} {:<8} alarm",
            "corpid", "enabled", "cursor", "last success", "stored", "undecr", "error"
        );
        for c in &out {
            println!(
                "{:<22} {:<8} {:>10} {:<20} {:>10} {:>8} {:<8} {}",
                c["corpid"].as_str().unwrap_or(""),
                c["enabled"],
                c["cursor"],
                c["last_success_at"].as_str().unwrap_or("never"),
                c["stored_total"],
                c["undecryptable"],
                c["last_error_code"],
                c["alarm"].as_str().unwrap_or("")
            );
        }
    }
    Ok(if alarms > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}
