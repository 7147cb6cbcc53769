//! `bench browse`: how fast the archive browser answers on a big corp (issue
//! 15's goal: conversation pages and searches in p95 < 200 ms at 1,000,000
//! messages), measured in one run on this machine.
//!
//! The corp is built the real way: the simulator serves it, the real SDK pulls
//! it, ingest stores it in a fresh database of the bench's own; then the
//! search index is built, and real HTTP requests with a real session ask for
//! conversation pages (random conversations, random starting points) and
//! searches (CJK substrings and words taken from the stored texts), and for
//! the corp's conversation list, timing each full response (query, render,
//! transfer).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use wework_archive_sim::{SimConfig, Simulator};

use crate::archive::accounts::{new_token, token_hash};
use crate::archive::search::SearchIndex;
use crate::archive::search::tokenizer::is_cjk;
use crate::config::Config;
use crate::http::ui::pages::urlencode;
use crate::store::accounts::Role;
use crate::store::browse::Conversation;
use crate::wecom::ingest::{CorpSpec, IngestContext, RunOptions, pull_corp};

/// The goal for every p95.
const GOAL: Duration = Duration::from_millis(200);

#[derive(Debug, clap::Args)]
pub(crate) struct BenchBrowseArgs {
    /// Messages of the corp.
    #[arg(long, default_value_t = 1_000_000)]
    messages: usize,
    /// Requests of each kind (pages, list, searches).
    #[arg(long, default_value_t = 300)]
    requests: usize,
}

/// One GET with the session cookie: (status, body bytes).
async fn get(addr: std::net::SocketAddr, path: &str, cookie: &str) -> anyhow::Result<(u16, usize)> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nCookie: wwa_session={cookie}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await?;
    let head = String::from_utf8_lossy(&buf[..buf.len().min(64)]).into_owned();
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).context("no HTTP status")?;
    Ok((status, buf.len()))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn report(name: &str, mut times: Vec<Duration>) -> Duration {
    times.sort();
    let (p50, p95, max) = (percentile(&times, 0.5), percentile(&times, 0.95), percentile(&times, 1.0));
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "  {name}: {} requests, p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms; p95 / goal {:.2} (goal ≤ 1.00)",
        times.len(),
        ms(p50),
        ms(p95),
        ms(max),
        p95.as_secs_f64() / GOAL.as_secs_f64()
    );
    p95
}

pub(crate) async fn run(args: BenchBrowseArgs, config: Arc<Config>) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let sim = Simulator::start(
        listener,
        SimConfig { seed: 1515, corps: 1, messages: args.messages, ..Default::default() },
    )
    .await?;
    let lib = super::load_sdk(&config)?;
    let store = super::bench::fresh_bench_store(&config).await?;
    let corps = super::corp::import_sim_manifest(&store, &config, &sim.manifest()).await?;
    let corpid = corps.first().context("the simulator made no corp")?.clone();
    let ctx = IngestContext::new(store.clone(), lib, config.clone());
    let started = Instant::now();
    let row = store.corp(&corpid).await?.context("corp")?;
    let spec = CorpSpec::load(&store, &row, &config.secrets).await?;
    let pulled = pull_corp(&ctx, spec, RunOptions::until_caught_up(), CancellationToken::new()).await?;
    eprintln!("stored {} messages in {:.0}s", pulled.stored, started.elapsed().as_secs_f64());
    sim.shutdown().await;

    let index_dir = std::env::temp_dir().join(format!("wwa-bench-browse-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&index_dir);
    let mut config = (*config).clone();
    config.search_index_dir = index_dir.clone();
    let config = Arc::new(config);
    let index = SearchIndex::shared(&index_dir);
    let started = Instant::now();
    let built = index.catch_up(&store, &corpid, u64::MAX).await?;
    let index_secs = started.elapsed().as_secs_f64();
    eprintln!("indexed {} records in {index_secs:.0}s", built.indexed);

    // What to ask for: conversations and times, and terms from the stored texts.
    let mut rng = rand::rngs::StdRng::seed_from_u64(15);
    let conversations = store.conversations(&corpid, "").await?;
    let convs: Vec<&Conversation> = conversations
        .iter()
        .map(|c| &c.conversation)
        .filter(|c| !matches!(c, Conversation::Undecrypted))
        .collect();
    anyhow::ensure!(!convs.is_empty(), "no conversations");
    let sample = store.records_after(&corpid, 0, 20_000).await?;
    let (t0, t1) = (
        sample.first().map_or(0, |r| r.msgtime),
        conversations.iter().map(|c| c.last_msgtime).max().unwrap_or(0),
    );
    let mut terms = Vec::new();
    for r in sample.iter().filter(|r| r.msgtype == "text") {
        let chars: Vec<char> = r.text.as_deref().unwrap_or("").chars().collect();
        if let Some(i) =
            (0..chars.len().saturating_sub(2)).find(|&i| chars[i..i + 3].iter().all(|c| is_cjk(*c)))
        {
            let len = rng.random_range(2..=3);
            terms.push(chars[i..i + len].iter().collect::<String>());
        }
    }
    anyhow::ensure!(!terms.is_empty(), "no CJK text to search for");

    // The server and a session of an admin.
    let uid = store.upsert_user("bench-browse", "not-a-login", Role::Admin, &[]).await?;
    let token = new_token();
    store.create_session(&token_hash(&token), uid, &new_token(), "bench", 3600).await?;
    let state = crate::http::AppState::new(store.clone(), Arc::default(), Arc::default(), config.clone());
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = http.local_addr()?;
    let stop = CancellationToken::new();
    let server = tokio::spawn(crate::http::serve(http, state, stop.clone().cancelled_owned()));

    let corp = corpid.as_str();
    let conv_path = |c: &Conversation, after: i64| match c {
        Conversation::Room { roomid } => {
            format!("/ui/corp/{corp}/c?room={}&after={after}.0", urlencode(roomid))
        }
        Conversation::Pair { a, b } => {
            format!("/ui/corp/{corp}/c?a={}&b={}&after={after}.0", urlencode(a), urlencode(b))
        }
        Conversation::Undecrypted => format!("/ui/corp/{corp}/c?undecrypted=1&after={after}.0"),
    };
    // One warm-up request of each kind (first-touch costs are not the steady state).
    get(addr, &conv_path(convs[0], t0), &token).await?;
    get(addr, &format!("/ui/corp/{corp}/search?q={}", urlencode(&terms[0])), &token).await?;
    let mut page_times = Vec::with_capacity(args.requests);
    let mut bytes = 0usize;
    for _ in 0..args.requests {
        let c = convs.choose(&mut rng).expect("not empty");
        let after = rng.random_range(t0..=t1.max(t0));
        let path = conv_path(c, after);
        let t = Instant::now();
        let (status, n) = get(addr, &path, &token).await?;
        page_times.push(t.elapsed());
        anyhow::ensure!(status == 200, "{path}: HTTP {status}");
        bytes += n;
    }
    // The corp page: every conversation with its count and last time.
    let list_path = format!("/ui/corp/{corp}");
    let (status, list_bytes) = get(addr, &list_path, &token).await?;
    anyhow::ensure!(status == 200, "{list_path}: HTTP {status}");
    let mut list_times = Vec::with_capacity(args.requests);
    for _ in 0..args.requests {
        let t = Instant::now();
        let (status, _) = get(addr, &list_path, &token).await?;
        list_times.push(t.elapsed());
        anyhow::ensure!(status == 200, "{list_path}: HTTP {status}");
    }
    let mut search_times = Vec::with_capacity(args.requests);
    for _ in 0..args.requests {
        let term = terms.choose(&mut rng).expect("not empty");
        let path = format!("/ui/corp/{corp}/search?q={}", urlencode(term));
        let t = Instant::now();
        let (status, _) = get(addr, &path, &token).await?;
        search_times.push(t.elapsed());
        anyhow::ensure!(status == 200, "{path}: HTTP {status}");
    }
    stop.cancel();
    let _ = server.await;

    println!(
        "bench browse: corp of {} messages, {} conversations, index built in {index_secs:.1}s ({} documents)",
        pulled.stored,
        convs.len(),
        index.documents(&corpid).await?
    );
    let p = report("conversation pages (100 messages, random start)", page_times);
    let l = report("conversation list (the corp page, every conversation)", list_times);
    let s = report("searches (CJK substrings, newest 50 hits)", search_times);
    println!(
        "  average page size {} KiB, conversation list {} KiB",
        bytes / args.requests.max(1) / 1024,
        list_bytes / 1024
    );
    let verdict = |d: Duration| if d < GOAL { "met" } else { "NOT met" };
    println!(
        "  goal p95 < 200 ms: pages {}, conversation list {}, searches {}",
        verdict(p),
        verdict(l),
        verdict(s)
    );
    drop(index);
    let _ = std::fs::remove_dir_all(&index_dir);
    store.close().await;
    Ok(())
}
