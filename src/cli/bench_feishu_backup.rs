//! `bench feishu-backup`: a whole docs backup of a seeded tree against the
//! fake Feishu at its default (documented) rate limits, against the
//! rate-limit bound of that tree, measured in one run (issue 14 item 7: goal
//! ≥ 0.8 of the bound).
//!
//! The bound is the fastest any client could finish the tree: from
//! `/_sim/tree` it counts the calls each node needs at the least (one listing
//! page per folder or parent node, create + poll once + download per exported
//! document, one download per file, nothing for types that cannot be
//! exported), per API, and gives each API the least time its limits allow for
//! that many calls ([`ratelimit::least_time`], from the client's limits
//! table); the slowest API is the bound. Latency and the fake's export time
//! are not in it, so the bound is one no client can beat.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};
use wework_archive_sim::feishu::{FeishuConfig, FeishuSim};

use crate::config::Config;
use crate::feishu::Feishu;
use crate::feishu::backup::{self, BackupOptions, Progress, Source, routes};
use crate::feishu::ratelimit;

#[derive(Debug, clap::Args)]
pub(crate) struct BenchFeishuBackupArgs {
    /// Grow the fake's tree to about this many nodes (at the documented limits the
    /// export APIs, 100/min, make a bigger tree take proportionally longer).
    #[arg(long, default_value_t = 600)]
    nodes: usize,
    /// Seed of the tree.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Documents fetched at once.
    #[arg(long, default_value_t = backup::DEFAULT_CONCURRENCY)]
    concurrency: usize,
}

/// Largest page of a Drive folder listing (what the backup asks for; API.md §6.1).
const DRIVE_PAGE: u64 = 200;
/// Largest page of wiki listings (API.md §7).
const WIKI_PAGE: u64 = 50;

/// The least calls per route a backup of everything `open_id` can reach in `tree` needs,
/// and the number of documents in it.
pub(crate) fn least_calls(tree: &Value, open_id: &str) -> (BTreeMap<&'static str, u64>, u64) {
    let empty = Vec::new();
    let nodes = tree["nodes"].as_array().unwrap_or(&empty);
    let s = |v: &Value, k: &str| v[k].as_str().unwrap_or("").to_owned();
    // Whose spaces: team spaces and this person's own library.
    let mut visible_spaces = HashSet::new();
    let mut team_spaces = 0u64;
    for n in nodes.iter().filter(|n| n["kind"] == "wiki_space") {
        match n["library_of"].as_str() {
            None => {
                team_spaces += 1;
                visible_spaces.insert(s(n, "space_id"));
            }
            Some(owner) if owner == open_id => {
                visible_spaces.insert(s(n, "space_id"));
            }
            Some(_) => {}
        }
    }
    let mut calls: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut add = |route: &'static str, n: u64| *calls.entry(route).or_default() += n;
    // Drive: the root meta, and every folder listed once, in pages (the root in one).
    let drive: Vec<&Value> = nodes.iter().filter(|n| n["kind"] == "drive").collect();
    let mut children: HashMap<String, u64> = HashMap::new();
    for n in &drive {
        *children.entry(s(n, "parent")).or_default() += 1;
    }
    let drive_tokens: HashSet<String> = drive.iter().map(|n| s(n, "token")).collect();
    if !drive.is_empty() {
        add(routes::ROOT_META, 1);
        // The root is the one parent that is not a node itself.
        let roots = children.keys().filter(|p| !drive_tokens.contains(*p)).count() as u64;
        add(routes::DRIVE_LIST, roots);
        for n in drive.iter().filter(|n| n["type"] == "folder") {
            let c = children.get(&s(n, "token")).copied().unwrap_or(0);
            add(routes::DRIVE_LIST, c.div_ceil(DRIVE_PAGE).max(1));
        }
    }
    // Wiki: the space list, then each visible space's top level and every parent node, in pages.
    add(routes::WIKI_SPACES, team_spaces.div_ceil(WIKI_PAGE).max(1));
    let wiki: Vec<&Value> = nodes
        .iter()
        .filter(|n| n["kind"] == "wiki" && visible_spaces.contains(n["space_id"].as_str().unwrap_or("")))
        .collect();
    let mut wiki_children: HashMap<(String, String), u64> = HashMap::new();
    for n in &wiki {
        *wiki_children.entry((s(n, "space_id"), s(n, "parent"))).or_default() += 1;
    }
    for space in &visible_spaces {
        let top = wiki_children.get(&(space.clone(), String::new())).copied().unwrap_or(0);
        add(routes::WIKI_NODES, top.div_ceil(WIKI_PAGE).max(1));
    }
    for n in wiki.iter().filter(|n| n["has_child"] == true) {
        let c = wiki_children.get(&(s(n, "space_id"), s(n, "node_token"))).copied().unwrap_or(0);
        add(routes::WIKI_NODES, c.div_ceil(WIKI_PAGE).max(1));
    }
    // Documents, each once however many nodes reach it.
    let mut docs: HashMap<String, &Value> = HashMap::new();
    for n in &drive {
        if n["type"] != "folder" && n["type"] != "shortcut" {
            docs.entry(s(n, "token")).or_insert(n);
        }
    }
    for n in &wiki {
        docs.entry(s(n, "obj_token")).or_insert(n);
    }
    for n in docs.values() {
        let ty = n["type"].as_str().or(n["obj_type"].as_str()).unwrap_or("");
        if ty == "file" {
            add(routes::DOWNLOAD, 1);
        } else if n["exportable"] == true {
            add(routes::EXPORT_CREATE, 1);
            add(routes::EXPORT_GET, 1);
            // A refused export (no sha256 to compare) ends at the poll.
            if n["sha256"].is_string() {
                add(routes::EXPORT_DOWNLOAD, 1);
            }
        }
    }
    (calls, docs.len() as u64)
}

/// The least time per route for `calls` under the client's limits table, and the slowest.
pub(crate) fn bound(calls: &BTreeMap<&'static str, u64>) -> (Vec<(&'static str, u64, Duration)>, Duration) {
    let per: Vec<_> =
        calls.iter().map(|(r, n)| (*r, *n, ratelimit::least_time(ratelimit::limits_for(r), *n))).collect();
    let slowest = per.iter().map(|(_, _, d)| *d).max().unwrap_or(Duration::ZERO);
    (per, slowest)
}

fn limits_text(w: &[ratelimit::Window]) -> String {
    if w.is_empty() {
        return "none".into();
    }
    w.iter()
        .map(|w| match w.period.as_secs() {
            1 => format!("{}/s", w.calls),
            60 => format!("{}/min", w.calls),
            86_400 => format!("{}/day", w.calls),
            s => format!("{}/{s}s", w.calls),
        })
        .collect::<Vec<_>>()
        .join(" & ")
}

pub(crate) async fn run(args: BenchFeishuBackupArgs, config: Arc<Config>) -> anyhow::Result<()> {
    anyhow::ensure!(args.nodes >= 50, "--nodes must be at least 50");
    // The documented limits on both sides: the fake's defaults, the client unscaled.
    let sim_config = FeishuConfig { seed: args.seed, tree_nodes: args.nodes, ..Default::default() };
    let sim = FeishuSim::start(tokio::net::TcpListener::bind("127.0.0.1:0").await?, sim_config).await?;
    let manifest = sim.manifest();
    let mut cfg = (*config).clone();
    cfg.feishu.rate_scale = 1.0;
    let config = Arc::new(cfg);
    let store = super::bench::fresh_bench_store(&config).await?;
    let app = super::feishu::app_of_fake(&manifest);
    store.upsert_feishu_app(&app, &config.secrets).await?;
    let feishu = Feishu::new(store, config.clone())?;
    let open_id = manifest.users.first().context("the fake has a user")?.open_id.clone();
    let web = crate::feishu::client::client_builder()?.build()?;
    authorize(&feishu, &web, &manifest.base_url, &manifest.app_id, &open_id).await?;

    let tree = sim_json(web.get(format!("{}/_sim/tree", manifest.base_url))).await?;
    let (calls, documents) = least_calls(&tree, &open_id);
    let (per_route, bound_time) = bound(&calls);
    anyhow::ensure!(
        !bound_time.is_zero(),
        "every API's calls fit in one window at this size: grow the tree (--nodes)"
    );

    let out = std::env::temp_dir().join(format!("wework-bench-feishu-backup-{}", std::process::id()));
    let opts = BackupOptions {
        concurrency: args.concurrency.clamp(1, 256),
        ..BackupOptions::new(&manifest.app_id, &open_id, Source::All, out.clone())
    };
    let t = Instant::now();
    let report = backup::run(feishu.clone(), opts, Arc::new(Progress::default())).await;
    let secs = t.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&out);
    let report = report?;
    let stats = sim_json(web.get(format!("{}/_sim/stats", manifest.base_url))).await?;
    sim.shutdown().await;

    let s = &report.summary;
    let handled = s.exported + s.downloaded + s.unchanged + s.not_exportable + s.failed;
    anyhow::ensure!(
        handled >= documents,
        "the backup handled {handled} documents of the {documents} in the tree: {:?}",
        s.lines()
    );
    let rate = documents as f64 / secs;
    let bound_rate = documents as f64 / bound_time.as_secs_f64();
    println!(
        "bench feishu-backup: {} nodes (seed {}), {documents} documents, fake and client at the documented limits, concurrency {}",
        tree["nodes"].as_array().map_or(0, Vec::len),
        args.seed,
        args.concurrency
    );
    println!("  least calls per API and the least time its limits allow:");
    for (route, n, d) in &per_route {
        let sent = stats["calls"][*route].as_u64().unwrap_or(0);
        let throttled = stats["throttled"][*route].as_u64().unwrap_or(0);
        println!(
            "    {route}: {n} calls at {} → {:.0}s (sent {sent}, 429 {throttled})",
            limits_text(ratelimit::limits_for(route)),
            d.as_secs_f64()
        );
        // The fake enforces its own table: say so when it differs from the client's.
        let fake = &stats["limits"][*route];
        let ours = ratelimit::limits_for(route);
        let of = |secs: u64| ours.iter().find(|w| w.period.as_secs() == secs).map(|w| u64::from(w.calls));
        if fake.is_object() && (fake["per_second"].as_u64() != of(1) || fake["per_minute"].as_u64() != of(60))
        {
            println!("      (the fake enforces {fake} on this API)");
        }
    }
    println!("  summary: {}", s.lines().join("; "));
    println!(
        "  backup: {rate:.2} documents/s ({documents} in {secs:.1}s, {} requests, {} throttled)",
        report.requests, report.throttled
    );
    println!("  rate-limit bound: {bound_rate:.2} documents/s ({:.0}s)", bound_time.as_secs_f64());
    println!("  ratio: {:.3} (goal ≥ 0.8)", rate / bound_rate);
    Ok(())
}

/// A JSON answer of the fake's control surface.
async fn sim_json(req: reqwest::RequestBuilder) -> anyhow::Result<Value> {
    let resp = req.send().await?.error_for_status()?;
    Ok(serde_json::from_slice(&resp.bytes().await?)?)
}

/// The person authorizes the app on the fake (the OAuth flow a click on the card starts).
async fn authorize(
    feishu: &Feishu,
    web: &reqwest::Client,
    base_url: &str,
    app_id: &str,
    open_id: &str,
) -> anyhow::Result<()> {
    let url = feishu.start_authorization(app_id, Some(open_id), None).await?;
    let q: HashMap<String, String> = reqwest::Url::parse(&url)?.query_pairs().into_owned().collect();
    let body = json!({"client_id": app_id, "redirect_uri": q.get("redirect_uri"), "state": q.get("state"),
                      "open_id": open_id, "decision": "approve"});
    let req = web
        .post(format!("{base_url}/_sim/authorize"))
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body.to_string());
    let v = sim_json(req).await?;
    let loc = reqwest::Url::parse(v["location"].as_str().context("the fake's authorize answer")?)?;
    let lq: HashMap<String, String> = loc.query_pairs().into_owned().collect();
    match feishu
        .finish_authorization(lq.get("code").map(String::as_str), lq.get("state").map(String::as_str), None)
        .await
    {
        crate::feishu::oauth::CallbackOutcome::Authorized { .. } => Ok(()),
        other => anyhow::bail!("authorization on the fake failed: {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn least_calls_of_a_small_tree() {
        let tree = json!({"nodes": [
            {"kind": "drive", "token": "fld1", "type": "folder", "parent": "root"},
            {"kind": "drive", "token": "d1", "type": "docx", "parent": "fld1", "exportable": true, "sha256": "a"},
            {"kind": "drive", "token": "d2", "type": "sheet", "parent": "root", "exportable": true, "sha256": null},
            {"kind": "drive", "token": "f1", "type": "file", "parent": "fld1", "exportable": false, "sha256": "b"},
            {"kind": "drive", "token": "s1", "type": "slides", "parent": "fld1", "exportable": false},
            {"kind": "drive", "token": "sc", "type": "shortcut", "parent": "fld1"},
            {"kind": "wiki_space", "space_id": "100", "library_of": null},
            {"kind": "wiki_space", "space_id": "200", "library_of": "ou_me"},
            {"kind": "wiki_space", "space_id": "300", "library_of": "ou_other"},
            {"kind": "wiki", "space_id": "100", "node_token": "w1", "obj_token": "o1", "obj_type": "docx",
             "parent": "", "has_child": true, "exportable": true, "sha256": "c"},
            {"kind": "wiki", "space_id": "100", "node_token": "w2", "obj_token": "d1", "obj_type": "docx",
             "parent": "w1", "has_child": false, "exportable": true, "sha256": "a"},
            {"kind": "wiki", "space_id": "300", "node_token": "w3", "obj_token": "o3", "obj_type": "docx",
             "parent": "", "has_child": false, "exportable": true, "sha256": "d"}
        ]});
        let (calls, docs) = least_calls(&tree, "ou_me");
        // d1 (twice reached), d2, f1, s1, o1; o3 is someone else's.
        assert_eq!(docs, 5);
        assert_eq!(calls[routes::ROOT_META], 1);
        assert_eq!(calls[routes::DRIVE_LIST], 2, "root and fld1");
        assert_eq!(calls[routes::WIKI_SPACES], 1);
        assert_eq!(calls[routes::WIKI_NODES], 3, "two spaces' top levels and w1");
        assert_eq!(calls[routes::EXPORT_CREATE], 3);
        assert_eq!(calls[routes::EXPORT_GET], 3);
        assert_eq!(calls[routes::EXPORT_DOWNLOAD], 2, "the refused export is not downloaded");
        assert_eq!(calls[routes::DOWNLOAD], 1);
    }

    #[test]
    fn the_slowest_api_is_the_bound() {
        let calls: BTreeMap<&'static str, u64> =
            [(routes::EXPORT_CREATE, 250), (routes::DOWNLOAD, 40), (routes::DRIVE_LIST, 30)].into();
        let (per, slowest) = bound(&calls);
        assert_eq!(slowest, Duration::from_secs(120), "250 creates at 100/min: now, +1 min, +2 min");
        let dl = per.iter().find(|(r, _, _)| *r == routes::DOWNLOAD).unwrap();
        assert_eq!(dl.2, Duration::from_secs(7), "40 downloads at 5/s");
    }
}
