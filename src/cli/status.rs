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
    let media = crate::wecom::media::backlog(&store).await?;
    let heads = store.chain_heads().await?;
    let mut out = Vec::new();
    let mut alarms = 0;
    for row in &corps {
        let state = states.iter().find(|s| s.corpid == row.corpid).cloned().unwrap_or_default();
        let (undecryptable, by_status, quarantined) = match row.corp_id() {
            Ok(id) => {
                let held = store.quarantine_held(&id).await?;
                let counts = store.decrypt_status_counts(&id).await?;
                let bad: u64 = counts
                    .iter()
                    .filter(|(s, _)| {
                        crate::store::messages::DecryptStatus::parse(s).is_none_or(|d| d.retryable())
                    })
                    .map(|(_, n)| n)
                    .sum();
                (bad, counts, held)
            }
            Err(_) => (0, Vec::new(), 0),
        };
        if !state.alarm.is_empty() {
            alarms += 1;
        }
        let media_jobs = media.get(&row.corpid).cloned().unwrap_or_default();
        let chain = heads.iter().find(|h| h.corpid == row.corpid);
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
            "quarantined": quarantined,
            "by_decrypt_status": by_status.into_iter().collect::<std::collections::BTreeMap<_, _>>(),
            "media": media_jobs,
            "alarm": state.alarm,
            "chain_length": chain.map_or(0, |h| h.pos),
            "chain_head": chain.map(|h| h.head.clone()),
        }));
    }
    let (recordings, stuck_recordings) = super::feishu_recordings::stuck(&store, config).await?;
    alarms += stuck_recordings;
    let (backups, failing_backups) = super::feishu_backup::schedule_status(&store).await?;
    alarms += failing_backups;
    let warning = (!config.secrets.has_master_key()).then_some(
        "no master key (WEWORK_MASTER_KEY): corp secrets and private keys are stored in plaintext",
    );
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({ "corps": out, "warning": warning, "feishu_recordings": recordings,
                                    "feishu_backups": backups })
            )?
        );
    } else {
        if let Some(w) = warning {
            println!("WARNING: {w}");
        }
        println!(
            "{:<22} {:<8} {:>10} {:<20} {:>10} {:>8} {:>6} {:<8} {:<28} alarm",
            "corpid", "enabled", "cursor", "last success", "stored", "undecr", "quar", "error", "media"
        );
        for c in &out {
            println!(
                "{:<22} {:<8} {:>10} {:<20} {:>10} {:>8} {:>6} {:<8} {:<28} {}",
                c["corpid"].as_str().unwrap_or(""),
                c["enabled"],
                c["cursor"],
                c["last_success_at"].as_str().unwrap_or("never"),
                c["stored_total"],
                c["undecryptable"],
                c["quarantined"],
                c["last_error_code"],
                media_summary(&c["media"]),
                c["alarm"].as_str().unwrap_or("")
            );
        }
        if let Some(alarm) = recordings["alarm"].as_str().filter(|a| !a.is_empty()) {
            println!("ALARM: {alarm} (feishu recordings list)");
        }
        for line in backups["lines"].as_array().into_iter().flatten().filter_map(|l| l.as_str()) {
            println!("{line}");
        }
        for c in &out {
            if let Some(head) = c["chain_head"].as_str() {
                println!(
                    "chain head {}: {} at {}",
                    c["corpid"].as_str().unwrap_or(""),
                    head,
                    c["chain_length"]
                );
            }
        }
    }
    Ok(if alarms > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// `media` jobs by state as one table cell: what is queued, paused or lost.
fn media_summary(by_state: &serde_json::Value) -> String {
    let n = |states: &[&str]| states.iter().filter_map(|s| by_state[*s].as_u64()).sum::<u64>();
    let parts: Vec<String> = [
        ("queued", n(&["pending", "downloading"])),
        ("paused", n(&["paused"])),
        ("failed", n(&["failed", "corrupt", "expired"])),
    ]
    .into_iter()
    .filter(|(_, k)| *k > 0)
    .map(|(what, k)| format!("{k} {what}"))
    .collect();
    let (done, unverified) = (n(&["done"]), n(&["unverified"]));
    match (parts.is_empty(), done + unverified) {
        (false, _) => parts.join(", "),
        (true, 0) => "-".to_owned(),
        (true, _) if unverified == 0 => format!("{done} done"),
        (true, _) => format!("{done} done, {unverified} unverified"),
    }
}
