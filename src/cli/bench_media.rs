//! `bench media`: one big video through the whole media path, against the SDK's
//! single page loop, measured in one run on this machine (issue #5: ≥ 0.8 of the
//! loop on loopback in < 64 MiB; issue #16: ≥ 4× the loop at 40 ms of distance).
//!
//! - Single page loop: a fresh SDK instance runs the GetMediaData chunk loop over
//!   the video and drops every chunk: no disk, no hashing, no database. At a
//!   distance it pays one round trip per 512 KiB page, the ceiling of any single
//!   loop.
//! - Pipeline: [`drain_corp`] on the corp's queue, as `media pull --until-done`
//!   runs it, with the production settings: the video (≥ 64 MiB) as parallel
//!   ranges into the `.part` file, fsync and range rows, md5 over the whole file,
//!   verification and the atomic rename. The corp's other (small) media ride along
//!   and count in the bytes.
//! - On loopback (no `--latency-ms`) also today's path for comparison: the same
//!   queue again with parallel ranges off (the single-loop pipeline), so "no slower
//!   than today" is a ratio from the same run.
//!
//! The simulator runs as a child process (`sim serve`, the same binary), as a
//! real server is somewhere else: it generates and encrypts every chunk on the
//! fly, on the same cores, so every measurement pays for it alike, but its
//! memory is its own. Peak RSS is this process's VmHWM, reset just before each
//! pipeline run, so it covers the download with the SDK, the store's pool and
//! everything else resident: what the archiver needs.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio_util::sync::CancellationToken;

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
    /// Simulated round-trip time to the server in milliseconds (0: loopback).
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Simulated bandwidth of each connection in Mbit/s (default: unlimited).
    #[arg(long)]
    bandwidth_mbps: Option<f64>,
}

/// One pipeline run: MiB/s, peak RSS in KiB, the report and the most streams.
struct PipelineRun {
    rate: f64,
    peak_kib: u64,
    hwm_reset: bool,
    report: crate::wecom::media::MediaReport,
    streams: u64,
}

async fn pipeline(ctx: &MediaContext, spec: &CorpSpec) -> anyhow::Result<PipelineRun> {
    // Writing 5 to clear_refs resets VmHWM to the current RSS (Linux ≥ 4.0).
    let hwm_reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let report = drain_corp(ctx, spec, CancellationToken::new()).await?;
    let peak_kib = proc_status_kib("VmHWM:").unwrap_or(0);
    anyhow::ensure!(
        report.unfinished() == 0 && report.count(JobState::Done) > 0,
        "not every file arrived: {:?}",
        report.by_state
    );
    let rate = report.bytes as f64 / MIB / report.elapsed.as_secs_f64();
    let streams = ctx.stats.streams_peak.load(std::sync::atomic::Ordering::Relaxed);
    Ok(PipelineRun { rate, peak_kib, hwm_reset, report, streams })
}

/// A `/proc/self/status` field in KiB.
fn proc_status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|l| l.strip_prefix(field))?.trim().trim_end_matches("kB").trim().parse().ok()
}

/// `sim serve` of this same binary, as a child process: the bench's server.
struct ChildSimulator {
    child: tokio::process::Child,
    manifest: wework_archive_sim::Manifest,
    dir: tempfile::TempDir,
}

impl ChildSimulator {
    /// Starts it with the bench's corpus (seed 5, one corp, the 32-message
    /// block of every type with the video among them, no key rotation) and
    /// waits for its manifest.
    async fn start(args: &BenchMediaArgs, size: u64) -> anyhow::Result<ChildSimulator> {
        let dir = tempfile::tempdir()?;
        let manifest_path = dir.path().join("manifest.json");
        let log = std::fs::File::create(dir.path().join("sim.log"))?;
        let mut cmd = tokio::process::Command::new(std::env::current_exe()?);
        cmd.args(["sim", "serve", "--listen", "127.0.0.1:0", "--seed", "5", "--corps", "1"])
            .args(["--messages", "32", "--rotation", "never"])
            .arg("--big-video")
            .arg(size.to_string())
            .arg("--latency-ms")
            .arg(args.latency_ms.to_string())
            .arg("--manifest")
            .arg(&manifest_path)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .kill_on_drop(true);
        if let Some(b) = args.bandwidth_mbps {
            cmd.arg("--bandwidth-mbps").arg(b.to_string());
        }
        let mut child = cmd.spawn().context("starting `sim serve`")?;
        // Generating the corpus takes the md5 of the whole video: seconds per GiB.
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            if let Ok(manifest) = wework_archive_sim::Manifest::read(&manifest_path) {
                return Ok(ChildSimulator { child, manifest, dir });
            }
            if let Some(status) = child.try_wait()? {
                let log = std::fs::read_to_string(dir.path().join("sim.log")).unwrap_or_default();
                anyhow::bail!("`sim serve` exited ({status}) before it served:\n{log}");
            }
            anyhow::ensure!(Instant::now() < deadline, "`sim serve` wrote no manifest within 300 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn stop(mut self) {
        let _ = self.child.kill().await;
        drop(self.dir);
    }
}

const MIB: f64 = (1 << 20) as f64;

pub(crate) async fn run(args: BenchMediaArgs, config: Arc<Config>) -> anyhow::Result<()> {
    anyhow::ensure!(args.size_mib >= 1, "--size-mib must be at least 1");
    anyhow::ensure!(args.latency_ms <= 10_000, "--latency-ms must be at most 10000");
    let size = args.size_mib << 20;
    let started = Instant::now();
    let sim = ChildSimulator::start(&args, size).await?;
    eprintln!("simulator up in {:.1}s (md5 of the video included)", started.elapsed().as_secs_f64());
    let manifest = sim.manifest.clone();
    let lib = super::load_sdk(&config)?;

    // The pipeline's queue, filled by a real ingest; the video is its largest item.
    let store = super::bench::fresh_bench_store(&config).await?;
    let ids = super::corp::import_sim_manifest(&store, &config, &manifest).await?;
    let row = store.corp(&ids[0]).await?.context("the imported corp")?;
    let spec = CorpSpec::load(&store, &row, &config.secrets).await?;
    let ingest = IngestContext::new(store.clone(), lib, config.clone());
    pull_corp(&ingest, spec.clone(), RunOptions::until_caught_up(), CancellationToken::new()).await?;
    let (sdkfileid, video_size) =
        store.largest_media_item(&ids[0]).await?.context("the ingest queued no media with a size")?;
    anyhow::ensure!(video_size == size, "the simulator's big video is {video_size} bytes, not {size}");

    // The single page loop: the SDK's chunk loop alone.
    let (proxy, corp) = (manifest.proxy.clone(), manifest.corps[0].clone());
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

    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("wework-bench-media-{}", std::process::id())));
    let scratch = args.dir.is_none();
    let opts = MediaOptions { root: dir.clone(), ..MediaOptions::from_config(&config) };
    let rss_before = proc_status_kib("VmRSS:").unwrap_or(0);
    let ctx = MediaContext::new(store.clone(), lib, opts.clone());
    let ranged = pipeline(&ctx, &spec).await?;
    // Loopback: today's single-loop pipeline over the same queue, for "no slower
    // than today". At a distance it would take as long as the single loop again,
    // and its ratio to that loop is already known (issue #5: ≥ 0.8).
    let single = if args.latency_ms == 0 {
        crate::wecom::media::requeue(&store, Some(&ids[0]), &[JobState::Done]).await?;
        let ctx =
            MediaContext::new(store.clone(), lib, MediaOptions { parallel_min_bytes: u64::MAX, ..opts });
        Some(pipeline(&ctx, &spec).await?)
    } else {
        None
    };

    let distance = match (args.latency_ms, args.bandwidth_mbps) {
        (0, None) => "loopback".to_owned(),
        (l, None) => format!("{l} ms round trip"),
        (l, Some(b)) => format!("{l} ms round trip, {b} Mbit/s per connection"),
    };
    let r = &ranged.report;
    println!(
        "bench media: a {} MiB video (+ {} small files) through the real SDK from the simulator (a child process), {distance}",
        args.size_mib,
        r.files.saturating_sub(1)
    );
    println!(
        "  single page loop (SDK chunk loop alone: no disk, no md5, no database): {ceiling:.1} MiB/s ({ceiling_secs:.2}s)"
    );
    println!(
        "  pipeline (parallel ranges → .part + fsync + range rows, md5, verify, rename): {:.1} MiB/s ({:.1} MiB in {:.2}s, {} chunks, up to {} streams for the video, per corp ≤ {}, concurrency {})",
        ranged.rate,
        r.bytes as f64 / MIB,
        r.elapsed.as_secs_f64(),
        r.chunks,
        ranged.streams,
        ctx.opts.streams_per_corp,
        ctx.opts.concurrency
    );
    let ratio = ranged.rate / ceiling;
    let goal = if args.latency_ms > 0 { 4.0 } else { 0.8 };
    println!(
        "  ratio pipeline / single page loop: {ratio:.2} (goal ≥ {goal}{})",
        if ratio >= goal { ", met" } else { ", NOT met" }
    );
    if let Some(single) = &single {
        let today = ranged.rate / single.rate;
        println!(
            "  today's single-loop pipeline (parallel ranges off): {:.1} MiB/s; ratio parallel / today: {today:.2} (goal ≥ 1, no slower{})",
            single.rate,
            if today >= 0.95 { ", met within 5 % noise" } else { ", NOT met" }
        );
    }
    let peak = ranged.peak_kib.max(single.as_ref().map_or(0, |s| s.peak_kib));
    println!(
        "  peak RSS during the pipeline: {:.1} MiB{} (goal < 64 MiB{}; RSS before: {:.1} MiB; the simulator's memory is its own)",
        peak as f64 / 1024.0,
        if ranged.hwm_reset { "" } else { " (VmHWM could not be reset: peak of the whole run)" },
        if peak < 64 * 1024 { ", met" } else { ", NOT met" },
        rss_before as f64 / 1024.0
    );
    sim.stop().await;
    store.close().await;
    if scratch {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    Ok(())
}
