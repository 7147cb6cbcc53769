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

    let cpu_before = CpuSample::take();
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
    let cpu = CpuSample::take().since(&cpu_before);
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
    print_cpu_account(&cpu, elapsed, stored, ceiling, config.decrypt_threads);
    sim.shutdown().await;
    store.close().await;
    Ok(())
}

/// Where the cores went during the end-to-end run: the bench's own process,
/// MariaDB's server process, and the rest of the machine
/// (from `/proc`). The RSA ceiling assumes every core decrypts keys and nothing
/// else; the account shows how much of the cores the other necessary work took
/// (the SDK's TLS and parsing on the puller threads, the simulator serving in
/// this process, MariaDB committing on the same cores), and so what ratio is
/// reachable on this machine at all.
#[derive(Debug, Clone, Default)]
struct CpuSample {
    /// CPU seconds of this whole process (threads that ended included, which
    /// per-thread counters in `/proc/self/task` would lose: the pullers and the
    /// blocking pool's threads come and go).
    ours: f64,
    /// CPU seconds of the MariaDB/MySQL server processes.
    database: f64,
    /// Busy and total CPU seconds of the whole machine (`/proc/stat`).
    machine_busy: f64,
    machine_total: f64,
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// utime + stime (seconds) from a `/proc/…/stat` line (the name may hold spaces
/// and parentheses, so fields are counted after the last `)`).
fn stat_cpu_secs(stat: &str) -> Option<f64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let (u, s): (f64, f64) = (f.get(11)?.parse().ok()?, f.get(12)?.parse().ok()?);
    Some((u + s) / clock_ticks())
}

impl CpuSample {
    fn take() -> CpuSample {
        let mut sample = CpuSample::default();
        let own = std::fs::read_to_string("/proc/self/stat").ok().and_then(|s| stat_cpu_secs(&s));
        sample.ours = own.unwrap_or(0.0);
        if let Ok(procs) = std::fs::read_dir("/proc") {
            for p in procs.flatten() {
                let comm = std::fs::read_to_string(p.path().join("comm")).unwrap_or_default();
                if matches!(comm.trim(), "mariadbd" | "mysqld") {
                    let stat = std::fs::read_to_string(p.path().join("stat")).unwrap_or_default();
                    sample.database += stat_cpu_secs(&stat).unwrap_or(0.0);
                }
            }
        }
        if let Some(line) =
            std::fs::read_to_string("/proc/stat").ok().and_then(|s| s.lines().next().map(String::from))
        {
            let v: Vec<f64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
            // user nice system idle iowait irq softirq steal …
            let idle = v.get(3).copied().unwrap_or(0.0) + v.get(4).copied().unwrap_or(0.0);
            let total: f64 = v.iter().take(8).sum();
            sample.machine_total = total / clock_ticks();
            sample.machine_busy = (total - idle) / clock_ticks();
        }
        sample
    }

    fn since(&self, before: &CpuSample) -> CpuSample {
        CpuSample {
            ours: self.ours - before.ours,
            database: self.database - before.database,
            machine_busy: self.machine_busy - before.machine_busy,
            machine_total: self.machine_total - before.machine_total,
        }
    }
}

fn print_cpu_account(cpu: &CpuSample, elapsed: f64, stored: u64, ceiling: f64, threads: usize) {
    if cpu.machine_total <= 0.0 {
        return; // no /proc: nothing to account
    }
    let cores = cpu.machine_total / elapsed;
    let ours = cpu.ours;
    // CPU seconds the RSA unwraps alone needed, at the ceiling's per-thread rate.
    let rsa = stored as f64 * threads as f64 / ceiling;
    let rest = (cpu.machine_busy - ours - cpu.database).max(0.0);
    let idle = (cpu.machine_total - cpu.machine_busy).max(0.0);
    println!(
        "  where the {cores:.1} cores' {:.1} CPU-seconds went during the end-to-end run:",
        cpu.machine_total
    );
    println!(
        "    {ours:>7.2}s  this process: SDK pullers (TLS, HTTP, JSON), RSA + DecryptData pool, parsing,"
    );
    println!("              SQL client, and the simulator serving in-process");
    println!("             (of these, RSA unwraps alone: {rsa:.2}s at the ceiling's rate)");
    println!("    {:>7.2}s  MariaDB server", cpu.database);
    println!("    {rest:>7.2}s  rest of the machine");
    println!("    {idle:>7.2}s  idle");
    // Everything but RSA that had to run on the same cores is capacity the
    // ceiling does not have to share: the reachable ratio is what is left.
    let necessary_other = (cpu.machine_busy - rest - rsa).max(0.0);
    let reachable = 1.0 - necessary_other / cpu.machine_total;
    println!(
        "  reachable ratio on this machine (cores minus the non-RSA work this pipeline needs): {reachable:.3}; \
         achieved {:.3} of it",
        (stored as f64 / elapsed / ceiling) / reachable.max(f64::EPSILON)
    );
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
    fn cpu_seconds_are_read_after_the_name() {
        let ticks = clock_ticks();
        // pid (comm) state ppid … utime=250 stime=50 (fields 14 and 15).
        let line = "42 (pull-a) b)) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0 1 2 3";
        assert_eq!(stat_cpu_secs(line), Some(300.0 / ticks));
        assert_eq!(stat_cpu_secs("garbage"), None);
    }

    #[test]
    fn bench_database_is_separate() {
        assert_eq!(
            bench_database_url("mysql://root@127.0.0.1:3306/wework_archive").unwrap(),
            ("mysql://root@127.0.0.1:3306/wework_archive_bench".into(), "wework_archive_bench".into())
        );
        assert!(bench_database_url("mysql://root@h:1/").is_err());
    }
}
