//! `bench feishu-recording`: one big meeting recording from the fake Feishu
//! through the production path, against a plain streaming read of the same
//! URL, measured in one run on this machine (issue 13: a 1 GiB recording in
//! under 64 MiB RSS).
//!
//! - Ceiling: the Minutes media `download_url` read with a plain streaming
//!   GET, every chunk dropped: no disk, no hashing, no database.
//! - Pipeline: the meeting ends on the fake, its event reaches our webhook,
//!   the recording worker (`feishu::recordings::run`, as `run` starts it)
//!   claims the job and does the whole attempt with the owner's token:
//!   recording, minute token, media URL, the download into the `.part` with
//!   sha256 as it comes, fsync and a progress row every 8 MiB, size check,
//!   rename. Timed from the meeting's end to the `done` row.
//!
//! The fake runs in this process (it generates the MP4 bytes on the fly), so
//! both measurements pay for it alike. Peak RSS is the process's VmHWM, reset
//! just before the pipeline run, so it covers the download with the fake and
//! everything else resident.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use wework_archive_sim::feishu::{FeishuConfig, FeishuSim};

use crate::config::Config;
use crate::feishu::oauth::CallbackOutcome;
use crate::feishu::recordings::job::MEDIA_ROUTE;
use crate::feishu::{ApiRequest, Auth, Feishu};
use crate::store::feishu_apps::FeishuApp;
use crate::store::feishu_recordings::RecordingState;

#[derive(Debug, clap::Args)]
pub(crate) struct BenchFeishuRecordingArgs {
    /// Size of the recording in MiB.
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

/// POSTs to the fake's control surface (the bench plays the tenant).
async fn sim_post(web: &reqwest::Client, base: &str, path: &str, body: Value) -> anyhow::Result<Value> {
    let r = web
        .post(format!("{base}{path}"))
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body.to_string())
        .send()
        .await?;
    let status = r.status();
    let text = r.text().await?;
    if !status.is_success() {
        bail!("fake Feishu {path}: HTTP {status}: {text}");
    }
    Ok(serde_json::from_str(&text)?)
}

pub(crate) async fn run(args: BenchFeishuRecordingArgs, config: Arc<Config>) -> anyhow::Result<()> {
    anyhow::ensure!(args.size_mib >= 1, "--size-mib must be at least 1");
    let size = args.size_mib << 20;
    let sim = FeishuSim::start(
        tokio::net::TcpListener::bind("127.0.0.1:0").await?,
        FeishuConfig { seed: 13, ..Default::default() },
    )
    .await?;
    let manifest = sim.manifest();
    let base = manifest.base_url.clone();
    let store = super::bench::fresh_bench_store(&config).await?;
    let dir = args.dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("wework-bench-recording-{}", std::process::id()))
    });
    let scratch = args.dir.is_none();

    // The archive's side: its webhook on a free port, the recording worker.
    let public = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let public_addr = public.local_addr()?;
    let mut c = (*config).clone();
    c.msgfile_dir = dir.clone();
    c.public_listen = public_addr;
    c.public_url = format!("http://{public_addr}");
    c.recordings.poll = Duration::from_millis(200);
    c.recordings.max_poll = Duration::from_secs(1);
    let run_id =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
    c.redis_prefix = format!("{}:bench-{run_id}", config.redis_prefix);
    let c = Arc::new(c);
    let app = FeishuApp { base_url: base.clone(), ..super::feishu::app_of_fake(&manifest) };
    store.upsert_feishu_app(&app, &c.secrets).await?;
    let feishu = Feishu::new(store.clone(), c.clone())?;
    let cancel = CancellationToken::new();
    let public_task =
        tokio::spawn(crate::http::public::serve(public, feishu.clone(), cancel.clone().cancelled_owned()));
    let web = crate::feishu::client::client_builder()?.redirect(reqwest::redirect::Policy::none()).build()?;
    let worker = tokio::spawn(crate::feishu::recordings::run(feishu.clone(), cancel.clone()));

    // The owner authorizes (the authorize page's answer handed to our callback handler).
    let owner = manifest.users.first().context("the fake tenant has no users")?.open_id.clone();
    let page = reqwest::Url::parse(&feishu.start_authorization(&app.app_id, Some(&owner), None).await?)?;
    let q: std::collections::HashMap<String, String> = page.query_pairs().into_owned().collect();
    let field = |k: &str| q.get(k).cloned().unwrap_or_default();
    let answer = sim_post(
        &web,
        &base,
        "/_sim/authorize",
        json!({"client_id": field("client_id"), "redirect_uri": field("redirect_uri"), "state": field("state"),
               "open_id": owner, "decision": "approve"}),
    )
    .await?;
    let back =
        reqwest::Url::parse(answer["location"].as_str().context("no redirect from the authorize page")?)?;
    let back: std::collections::HashMap<String, String> = back.query_pairs().into_owned().collect();
    match feishu
        .finish_authorization(
            back.get("code").map(String::as_str),
            back.get("state").map(String::as_str),
            None,
        )
        .await
    {
        CallbackOutcome::Authorized { .. } => {}
        CallbackOutcome::Refused { message, .. } => bail!("authorization refused: {message}"),
    }

    // Ceiling: a meeting whose recording is read once with a plain streaming GET (ended
    // before our webhook is subscribed, so no job downloads it too).
    let t = Instant::now();
    let plain = sim_post(
        &web,
        &base,
        "/_sim/meetings",
        json!({"owner_open_id": owner, "ready_after_s": 0, "bytes": size}),
    )
    .await?;
    eprintln!("fake meeting ready in {:.1}s (sha256 of the recording included)", t.elapsed().as_secs_f64());
    let minute = plain["minute_token"].as_str().context("no minute_token")?.to_owned();
    let media = feishu
        .call_as_user(&app, &owner, |token| {
            ApiRequest::new(
                reqwest::Method::GET,
                &base,
                MEDIA_ROUTE,
                format!("/open-apis/minutes/v1/minutes/{minute}/media"),
                Auth::Bearer(token.to_owned()),
            )
        })
        .await?;
    let url =
        media.pointer("/data/download_url").and_then(Value::as_str).context("no download_url")?.to_owned();
    let t = Instant::now();
    let mut resp = web.get(&url).send().await?.error_for_status()?;
    let mut ceiling_bytes = 0u64;
    while let Some(chunk) = resp.chunk().await? {
        ceiling_bytes += chunk.len() as u64;
    }
    let ceiling_secs = t.elapsed().as_secs_f64();
    anyhow::ensure!(ceiling_bytes == size, "the plain read got {ceiling_bytes} bytes of {size}");
    let ceiling = ceiling_bytes as f64 / MIB / ceiling_secs;

    // The pipeline: a second meeting, from its end to the `done` row.
    let hook = format!("{}/feishu/events/{}", c.public_url, app.app_id);
    sim_post(&web, &base, "/_sim/subscriptions", json!({"url": hook})).await?;
    let deadline = Instant::now() + Duration::from_secs(1800);
    let rss_before = proc_status_kib("VmRSS:").unwrap_or(0);
    // Writing 5 to clear_refs resets VmHWM to the current RSS (Linux ≥ 4.0).
    let hwm_reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let m = sim_post(
        &web,
        &base,
        "/_sim/meetings",
        json!({"owner_open_id": owner, "ready_after_s": 0, "bytes": size}),
    )
    .await?;
    let t = Instant::now();
    let id = m["meeting_id"].as_str().context("no meeting_id")?.to_owned();
    let row = loop {
        if let Some(r) = store.recording(&app.app_id, &id).await?
            && r.state.is_final()
        {
            break r;
        }
        anyhow::ensure!(Instant::now() < deadline, "the recording did not finish");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let secs = t.elapsed().as_secs_f64();
    let peak = proc_status_kib("VmHWM:").unwrap_or(0);
    anyhow::ensure!(
        row.state == RecordingState::Done,
        "the job ended {} ({})",
        row.state.as_str(),
        row.last_error
    );
    anyhow::ensure!(
        row.sha256 == m["sha256"].as_str().unwrap_or_default() && row.bytes == Some(size),
        "the archived recording differs from what the fake served"
    );
    let rate = size as f64 / MIB / secs;

    println!(
        "bench feishu-recording: a {} MiB meeting recording from the in-process fake Feishu",
        args.size_mib
    );
    println!(
        "  plain streaming GET of the download_url (no disk, no sha256, no database): {ceiling:.1} MiB/s ({ceiling_secs:.2}s)"
    );
    println!(
        "  pipeline (event → job → owner's token → recording → media URL → .part + sha256 + fsync and progress row every 8 MiB → size check, rename): {rate:.1} MiB/s ({secs:.2}s)"
    );
    println!("  ratio: {:.3}", rate / ceiling);
    println!(
        "  peak RSS during the pipeline: {:.1} MiB{} (goal < 64 MiB; RSS before: {:.1} MiB, fake Feishu included)",
        peak as f64 / 1024.0,
        if hwm_reset { "" } else { " (VmHWM could not be reset: peak of the whole run)" },
        rss_before as f64 / 1024.0
    );
    cancel.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let _ = worker.await;
        let _ = public_task.await;
    })
    .await;
    sim.shutdown().await;
    store.close().await;
    if scratch {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    Ok(())
}
