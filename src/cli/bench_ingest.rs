//! `bench ingest`: end-to-end ingest rate against the RSA ceiling, measured in
//! one run on this machine (issue #4's goal: ≥ 0.85 of the ceiling).
//!
//! - End to end: simulator → real SDK (GetChatData through the proxy) → RSA
//!   unwrap → DecryptData → parse → one MariaDB transaction per batch.
//! - Ceiling: the same RSA backend (aws-lc-rs, [`PrivateKey::unwrap_random_key`])
//!   decrypting random keys in a loop on all decrypt threads, nothing else.
//!
//! The simulator runs in this process; it is warmed first (every record
//! encrypted and served once) so its own cost stays out of the measurement,
//! as a remote server's would.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use base64::Engine;
use tokio_util::sync::CancellationToken;
use wework_archive_sim::{SimConfig, Simulator};

use crate::config::Config;
use crate::wecom::ingest::{CorpSpec, IngestContext, RunOptions, pull_corp};
use crate::wecom::keys::PrivateKey;
use crate::wecom::sdk::NetOptions;

#[derive(Debug, clap::Args)]
pub(crate) struct BenchIngestArgs {
    /// Messages in all (split over the corps).
    #[arg(long, default_value_t = 50_000)]
    messages: usize,
    /// Simulated corps.
    #[arg(long, default_value_t = 2)]
    corps: usize,
    /// Seconds for the RSA ceiling loop.
    #[arg(long, default_value_t = 5.0)]
    ceiling_secs: f64,
}

/// `mysql://…/name` → `mysql://…/name_bench` (the bench never touches real data).
pub(super) fn bench_database_url(url: &str) -> anyhow::Result<(String, String)> {
    let (base, db) = url.rsplit_once('/').context("database URL without a database name")?;
    let db = db.split('?').next().unwrap_or(db);
    anyhow::ensure!(!db.is_empty() && !base.ends_with('/'), "database URL without a database name");
    let name = format!("{db}_bench");
    Ok((format!("{base}/{name}"), name))
}

pub(crate) async fn run(args: BenchIngestArgs, config: Arc<Config>) -> anyhow::Result<()> {
    let per_corp = args.messages.div_ceil(args.corps.max(1));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let sim = Simulator::start(
        listener,
        SimConfig { seed: 99, corps: args.corps, messages: per_corp, ..Default::default() },
    )
    .await?;
    let manifest = sim.manifest();
    let lib = super::load_sdk(&config)?;

    // Warm the simulator: every record encrypted and served once.
    let warm = Instant::now();
    for corp in &manifest.corps {
        let (corpid, secret, proxy) = (corp.corpid.clone(), corp.secret.clone(), manifest.proxy.clone());
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            let sdk = lib.new_sdk(&corpid, &secret)?;
            let net = NetOptions { proxy, passwd: String::new(), timeout: Duration::from_secs(30) };
            let mut seq = 0;
            loop {
                let body = sdk.get_chat_data(seq, 1000, &net)?;
                let v: serde_json::Value = serde_json::from_slice(&body)?;
                let Some(last) =
                    v["chatdata"].as_array().and_then(|a| a.last()).and_then(|i| i["seq"].as_u64())
                else {
                    return Ok(());
                };
                seq = last;
            }
        })
        .await??;
    }
    eprintln!("warmed the simulator in {:.1}s", warm.elapsed().as_secs_f64());

    // A fresh database of its own.
    let store = super::bench::fresh_bench_store(&config).await?;
    let corps = super::corp::import_sim_manifest(&store, &config, &manifest).await?;
    let ctx = IngestContext::new(store.clone(), lib, config.clone());

    let started = Instant::now();
    let mut tasks = Vec::new();
    for corpid in corps {
        let ctx = ctx.clone();
        tasks.push(tokio::spawn(async move {
            let row = ctx.store.corp(&corpid).await?.context("corp")?;
            let spec = CorpSpec::load(&ctx.store, &row, &ctx.config.secrets).await?;
            anyhow::Ok(pull_corp(&ctx, spec, RunOptions::until_caught_up(), CancellationToken::new()).await?)
        }));
    }
    let mut stored = 0;
    for t in tasks {
        stored += t.await??.stored;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let e2e = stored as f64 / elapsed;

    // The ceiling: the same RSA backend on the same threads, nothing else.
    let key = Arc::new(PrivateKey::parse(&manifest.corps[0].keys[0].private_key_pem)?);
    let ciphertexts = Arc::new(wrap_random_keys(&manifest.corps[0].keys[0].private_key_pem, 256)?);
    let ops = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs_f64(args.ceiling_secs);
    let threads: Vec<_> = (0..config.decrypt_threads)
        .map(|t| {
            let (key, cts, ops) = (key.clone(), ciphertexts.clone(), ops.clone());
            std::thread::spawn(move || {
                let mut i = t;
                while Instant::now() < deadline {
                    key.unwrap_random_key(&cts[i % cts.len()]).expect("own ciphertexts decrypt");
                    ops.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            })
        })
        .collect();
    let ceiling_start = Instant::now();
    for t in threads {
        t.join().expect("ceiling thread");
    }
    let ceiling = ops.load(Ordering::Relaxed) as f64 / ceiling_start.elapsed().as_secs_f64();

    println!(
        "bench ingest: {stored} messages, {} corps, {} decrypt threads",
        args.corps, config.decrypt_threads
    );
    println!(
        "  end to end (sim → real SDK → RSA → DecryptData → MariaDB): {e2e:.0} messages/s ({elapsed:.2}s)"
    );
    println!("  RSA ceiling (aws-lc-rs PKCS#1 v1.5 decrypt only, same threads): {ceiling:.0} ops/s");
    println!("  ratio: {:.3} (goal ≥ 0.85)", e2e / ceiling);
    sim.shutdown().await;
    store.close().await;
    Ok(())
}

/// `count` RSA-wrapped random encrypt_keys for the public half of `pem`.
fn wrap_random_keys(pem: &str, count: usize) -> anyhow::Result<Vec<String>> {
    use rsa::pkcs1::DecodeRsaPrivateKey;
    use rsa::pkcs8::DecodePrivateKey;
    let private =
        rsa::RsaPrivateKey::from_pkcs8_pem(pem).or_else(|_| rsa::RsaPrivateKey::from_pkcs1_pem(pem))?;
    let public = rsa::RsaPublicKey::from(&private);
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut rng = rsa::rand_core::OsRng;
    (0..count)
        .map(|i| {
            let plain = b64.encode(format!("bench-random-key-{i:08}-0123456789abcdef0123456789abcdef"));
            Ok(b64.encode(public.encrypt(&mut rng, rsa::Pkcs1v15Encrypt, plain.as_bytes())?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bench_database_is_separate() {
        assert_eq!(
            bench_database_url("mysql://root@127.0.0.1:3306/wework_archive").unwrap(),
            ("mysql://root@127.0.0.1:3306/wework_archive_bench".into(), "wework_archive_bench".into())
        );
        assert!(bench_database_url("mysql://root@h:1/").is_err());
    }
}
