//! `demo`: the whole pipeline on an embedded default. Starts the simulator
//! in-process (Tencent's real SDK talks to it through its proxy argument, as
//! it would to qyapi.weixin.qq.com), migrates the real database, imports the
//! simulator's corps and archives a few thousand messages, then prints what
//! was stored. Then the Feishu half ([`super::demo_feishu`]): the fake Feishu,
//! one owner authorized through the card, two meetings' recordings archived.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use mysql_async::prelude::*;
use tokio_util::sync::CancellationToken;
use wework_archive_sim::{FaultSpec, SimConfig, Simulator};

use crate::config::Config;
use crate::store::{CorpId, Store};
use crate::wecom::ingest::{CorpSpec, IngestContext, RunOptions, pull_corp};

#[derive(Debug, clap::Args)]
pub(crate) struct DemoArgs {
    /// Simulated corps.
    #[arg(long, default_value_t = 3)]
    corps: usize,
    /// Messages per corp.
    #[arg(long, default_value_t = 1500)]
    messages: usize,
    /// Simulator seed (the same seed gives the same corps and messages).
    #[arg(long, default_value_t = 2026)]
    seed: u64,
    /// Simulator faults (see `sim serve --help`); the default shows how bad
    /// records are kept and retried calls recover.
    #[arg(
        long,
        default_value = "http500=0.03,short_msg=0.002,bad_base64=0.002,unknown_ver=0.004,wrong_key=0.002"
    )]
    faults: FaultSpec,
    /// Size of each of the two meeting recordings the fake Feishu serves, in KiB.
    #[arg(long, default_value_t = 2048)]
    recording_kib: u64,
}

/// Removes what an earlier demo stored for these corps, so every run starts clean.
async fn reset(store: &Store, config: &Config, corps: &[CorpId]) -> anyhow::Result<()> {
    let mut conn = store.conn().await?;
    for c in corps {
        conn.query_drop(format!("DROP TABLE IF EXISTS {}", c.message_table())).await?;
        for table in
            ["corplist", "corp_keys", "corp_state", "media_jobs", "conversations", "conversation_summaries"]
        {
            conn.exec_drop(format!("DELETE FROM {table} WHERE corpid = ?"), (c.as_str(),)).await?;
        }
        let dir = config.msgfile_dir.join(c.as_str());
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
        }
    }
    store.forget_message_tables();
    Ok(())
}

pub(crate) async fn run(args: DemoArgs, config: Arc<Config>) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let sim = Simulator::start(
        listener,
        SimConfig {
            seed: args.seed,
            corps: args.corps,
            messages: args.messages,
            faults: args.faults,
            ..Default::default()
        },
    )
    .await?;
    let manifest = sim.manifest();
    println!(
        "simulator: {} corps x {} messages, serving as qyapi.weixin.qq.com through proxy {}",
        manifest.corps.len(),
        args.messages,
        manifest.proxy
    );
    let store = super::open_store(&config).await?;
    println!("database: {} (migrated)", config.database_url_redacted());
    let ids: Vec<CorpId> = manifest.corps.iter().map(|c| CorpId::new(&c.corpid)).collect::<Result<_, _>>()?;
    reset(&store, &config, &ids).await?;
    let corps = super::corp::import_sim_manifest(&store, &config, &manifest).await?;
    let lib = super::load_sdk(&config)?;
    println!("SDK: {} (Tencent's real library)", lib.path().display());
    let ctx = IngestContext::new(store.clone(), lib, config.clone());

    let total: u64 = manifest.corps.iter().map(|c| c.messages as u64).sum();
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("archiving {bar:40} {pos}/{len} messages {per_sec} {msg}")
            .expect("static template"),
    );
    let cancel = super::shutdown_token();
    let mut tasks = Vec::new();
    for corpid in &corps {
        let (ctx, corpid, cancel) = (ctx.clone(), corpid.clone(), cancel.clone());
        tasks.push(tokio::spawn(async move {
            let row = ctx.store.corp(&corpid).await?.context("imported corp is missing")?;
            let spec = CorpSpec::load(&ctx.store, &row, &ctx.config.secrets).await?;
            anyhow::Ok(pull_corp(&ctx, spec, RunOptions::until_caught_up(), cancel).await?)
        }));
    }
    let progress = {
        let (bar, stats) = (bar.clone(), ctx.stats.clone());
        let done = CancellationToken::new();
        let d = done.clone();
        let h = tokio::spawn(async move {
            while !d.is_cancelled() {
                bar.set_position(stats.fetched.load(std::sync::atomic::Ordering::Relaxed));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        (h, done)
    };
    let mut reports = Vec::new();
    for t in tasks {
        reports.push(t.await??);
    }
    progress.1.cancel();
    let _ = progress.0.await;
    bar.set_position(ctx.stats.fetched.load(std::sync::atomic::Ordering::Relaxed));
    bar.finish_with_message("done");

    println!("\nper corp:");
    println!("  {:<20} {:>8} {:>8} {:>10} {:>8}", "corpid", "stored", "cursor", "undecrypt", "retries");
    let mut by_type: BTreeMap<String, u64> = BTreeMap::new();
    let mut by_reason: BTreeMap<String, u64> = BTreeMap::new();
    for (corpid, report) in corps.iter().zip(&reports) {
        let statuses = store.decrypt_status_counts(corpid).await?;
        let bad: u64 = statuses.iter().filter(|(s, _)| s != "ok").map(|(_, n)| n).sum();
        for (s, n) in statuses.into_iter().filter(|(s, _)| s != "ok") {
            *by_reason.entry(s).or_default() += n;
        }
        for (t, n) in store.msgtype_counts(corpid).await? {
            *by_type.entry(t).or_default() += n;
        }
        println!(
            "  {:<20} {:>8} {:>8} {:>10} {:>8}",
            corpid, report.stored, report.cursor, bad, report.failures
        );
    }
    println!("\nmessages per type ({} types):", by_type.len());
    let mut line = String::new();
    for (i, (t, n)) in by_type.iter().enumerate() {
        line.push_str(&format!("  {t:<22}{n:>6}"));
        if i % 3 == 2 {
            println!("{line}");
            line.clear();
        }
    }
    if !line.is_empty() {
        println!("{line}");
    }
    println!("\nundecryptable, kept with their ciphertext (wework-archive redecrypt retries them):");
    if by_reason.is_empty() {
        println!("  none");
    }
    for (reason, n) in &by_reason {
        println!("  {reason:<16}{n:>6}");
    }
    // Media: every file of every message, nested ones included, verified.
    let media_ctx = crate::wecom::media::MediaContext::from_config(store.clone(), lib, &config);
    let media_started = Instant::now();
    let (mut files, mut bytes) = (0, 0);
    let mut media_states: BTreeMap<String, u64> = BTreeMap::new();
    for corpid in &corps {
        let row = store.corp(corpid).await?.context("imported corp is missing")?;
        let spec = CorpSpec::load(&store, &row, &config.secrets).await?;
        let report = crate::wecom::media::drain_corp(&media_ctx, &spec, cancel.clone()).await?;
        files += report.files;
        bytes += report.bytes;
        for (state, n) in report.by_state {
            *media_states.entry(state).or_default() += n;
        }
    }
    println!(
        "\nmedia: {files} files, {:.1} MiB stored under {} in {:.1}s; jobs by state (unverified: no md5 stated to check against): {media_states:?}",
        bytes as f64 / (1024.0 * 1024.0),
        config.msgfile_dir.display(),
        media_started.elapsed().as_secs_f64()
    );
    let recordings_exact =
        super::demo_feishu::run(&store, &config, args.seed, args.recording_kib.max(1) << 10, &cancel).await?;
    let stats = sim.stats();
    println!(
        "\nsimulator: {} GetChatData calls, {} faults injected; done in {:.1}s",
        stats.requests_to(wework_archive_sim::Endpoint::GetChatData),
        stats.faults.values().sum::<u64>(),
        started.elapsed().as_secs_f64()
    );
    sim.shutdown().await;
    Ok(if recordings_exact { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
