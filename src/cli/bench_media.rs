//! `bench media`: one big video through the whole media path, against the SDK's
//! own chunk loop as the ceiling, measured in one run on this machine (issue #5's
//! goals: ≥ 0.8 of the ceiling, peak RSS under 64 MiB).
//!
//! - Ceiling: a fresh SDK instance runs the GetMediaData chunk loop over the video
//!   and drops every chunk: no disk, no hashing, no database.
//! - Pipeline: [`drain_corp`] on the corp's queue, as `media pull --until-done`
//!   runs it — chunks appended to the `.part` file, md5 as they come, fsync and a
//!   progress row per chunk, verification and the atomic rename at the end. The
//!   corp's other (small) media ride along and count in the bytes.
//!
//! The simulator runs in this process (it generates and encrypts every chunk on
//! the fly), so both measurements pay for it alike. Peak RSS is the process's
//! VmHWM, reset just before the pipeline run, so it covers the download with the
//! simulator and everything else resident.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use wework_archive_sim::{Rotation, SimConfig, Simulator};

use crate::config::Config;
use crate::wecom::ingest::{CorpSpec, IngestContext, RunOptions, pull_corp};
use crate::wecom::media::{JobState, MediaContext, MediaOptions, drain_corp};
use crate::wecom::sdk::NetOptions;

#[derive(Debug, clap::Args)]
pub(crate) struct BenchMediaArgs {
    /// Size of the video in MiB.
    #[arg(long, default_value_t = 1024)]
    size_mib: u64,
    /// Media root for the run (default: a scratch directory under the system
    /// temp directory, removed afterwards).
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// A `/proc/self/status` field in KiB.
fn proc_status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|l| l.strip_prefix(field))?.trim().trim_end_matches("kB").trim().parse().ok()
}

const MIB: f64 = (1 << 20) as f64;

pub(crate) async fn run(args: BenchMediaArgs, config: Arc<Config>) -> anyhow::Result<()> {
    anyhow::ensure!(args.size_mib >= 1, "--size-mib must be at least 1");
    let size = args.size_mib << 20;
    let started = Instant::now();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    // 32 messages: the corpus's block of every message type, the video among them.
    let sim = Simulator::start(
        listener,
        SimConfig {
            seed: 5,
            corps: 1,
            messages: 32,
            big_video: Some(size),
            rotation: Rotation::Never,
            ..Default::default()
        },
    )
    .await?;
    eprintln!("simulator up in {:.1}s (md5 of the video included)", started.elapsed().as_secs_f64());
    let manifest = sim.manifest();
    let corpus = sim.corpus();
    let video = corpus.corps[0].media.iter().max_by_key(|m| m.size).context("the corpus has media")?.clone();
    anyhow::ensure!(video.size == size, "the simulator's big video is {} bytes, not {size}", video.size);
    let lib = super::load_sdk(&config)?;

    // Ceiling: the SDK's chunk loop alone.
    let (proxy, corp) = (manifest.proxy.clone(), manifest.corps[0].clone());
    let sdkfileid = video.sdkfileid.clone();
    let (ceiling_bytes, ceiling_secs) = tokio::task::spawn_blocking(move || -> anyhow::Result<(u64, f64)> {
        let sdk = lib.new_sdk(&corp.corpid, &corp.secret)?;
        let net = NetOptions { proxy, passwd: String::new(), timeout: Duration::from_secs(30) };
        let t = Instant::now();
        let (mut index, mut bytes) = (String::new(), 0u64);
        loop {
            let chunk = sdk.get_media_chunk(&index, &sdkfileid, &net)?;
            bytes += chunk.data.len() as u64;
            if chunk.is_finish {
                return Ok((bytes, t.elapsed().as_secs_f64()));
            }
            index = chunk.next_index;
        }
    })
    .await??;
    anyhow::ensure!(ceiling_bytes == size, "the ceiling loop got {ceiling_bytes} bytes of {size}");
    let ceiling = ceiling_bytes as f64 / MIB / ceiling_secs;

    // The pipeline, from a queue filled by a real ingest.
    let store = super::bench::fresh_bench_store(&config).await?;
    let ids = super::corp::import_sim_manifest(&store, &config, &manifest).await?;
    let row = store.corp(&ids[0]).await?.context("the imported corp")?;
    let spec = CorpSpec::load(&store, &row, &config.secrets).await?;
    let ingest = IngestContext::new(store.clone(), lib, config.clone());
    pull_corp(&ingest, spec.clone(), RunOptions::until_caught_up(), CancellationToken::new()).await?;

    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("wework-bench-media-{}", std::process::id())));
    let scratch = args.dir.is_none();
    let ctx = MediaContext::new(
        store.clone(),
        lib,
        MediaOptions { root: dir.clone(), ..MediaOptions::from_config(&config) },
    );
    let rss_before = proc_status_kib("VmRSS:").unwrap_or(0);
    // Writing 5 to clear_refs resets VmHWM to the current RSS (Linux ≥ 4.0).
    let hwm_reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let report = drain_corp(&ctx, &spec, CancellationToken::new()).await?;
    let peak = proc_status_kib("VmHWM:").unwrap_or(0);
    anyhow::ensure!(
        report.unfinished() == 0 && report.count(JobState::Done) > 0,
        "not every file arrived: {:?}",
        report.by_state
    );
    let secs = report.elapsed.as_secs_f64();
    let rate = report.bytes as f64 / MIB / secs;

    println!(
        "bench media: a {} MiB video (+ {} small files) through the real SDK from the in-process simulator",
        args.size_mib,
        report.files.saturating_sub(1)
    );
    println!(
        "  SDK chunk loop alone (no disk, no md5, no database): {ceiling:.1} MiB/s ({ceiling_secs:.2}s)"
    );
    println!(
        "  pipeline (chunks → .part + md5 + fsync + progress row, verify, rename): {rate:.1} MiB/s ({:.1} MiB in {secs:.2}s, {} chunks, concurrency {})",
        report.bytes as f64 / MIB,
        report.chunks,
        ctx.opts.concurrency
    );
    println!("  ratio: {:.3} (goal ≥ 0.8)", rate / ceiling);
    println!(
        "  peak RSS during the pipeline: {:.1} MiB{} (goal < 64 MiB; RSS before: {:.1} MiB, simulator included)",
        peak as f64 / 1024.0,
        if hwm_reset { "" } else { " (VmHWM could not be reset: peak of the whole run)" },
        rss_before as f64 / 1024.0
    );
    sim.shutdown().await;
    store.close().await;
    if scratch {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    Ok(())
}
