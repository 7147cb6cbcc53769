//! The command line: clap definitions and dispatch. `main.rs` only calls [`main`].

mod admin;
mod bench;
mod bench_browse;
mod bench_feishu_backup;
mod bench_feishu_recording;
mod bench_ingest;
mod bench_media;
pub mod corp;
mod demo;
mod demo_feishu;
mod export;
mod feishu;
mod feishu_backup;
mod feishu_recordings;
mod ingest;
mod media;
mod quarantine;
mod seal;
mod search;
mod status;
mod verify;
mod wait_db;

use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, SettingsArgs};
use crate::store::Store;
use crate::wecom::sdk::Library;

/// wework-archive: archive WeCom chat records for compliance.
#[derive(Debug, Parser)]
#[command(name = "wework-archive", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    settings: SettingsArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Apply pending database migrations.
    Migrate,
    /// Add, change, list and import corps.
    #[command(subcommand)]
    Corp(corp::CorpCommand),
    /// Pull one corp once (`--until-caught-up`: stop at the first empty batch).
    Pull(ingest::PullArgs),
    /// Run every enabled corp's workers until SIGTERM/Ctrl-C.
    Run(ingest::RunArgs),
    /// Retry records stored undecrypted (after adding a missing key).
    Redecrypt(ingest::RedecryptArgs),
    /// Per corp: cursor, last success, undecryptable records, media backlog, alarms.
    Status(status::StatusArgs),
    /// Download media now, or requeue media that failed.
    #[command(subcommand)]
    Media(media::MediaCommand),
    /// Records that could not be stored: list them, or store them again.
    #[command(subcommand)]
    Quarantine(quarantine::QuarantineCommand),
    /// Load the SDK and check it works here (decrypts known vectors offline).
    SdkCheck,
    /// Run the whole pipeline against the built-in simulator (real SDK, MariaDB, Redis).
    Demo(demo::DemoArgs),
    /// Benchmarks measured against a ceiling in the same run: `ingest` (end to end
    /// vs. the RSA decrypt ceiling; goal ≥ 0.85) and `media` (download rate vs. the
    /// SDK's own chunk loop, and peak memory).
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Feishu apps, token hand-out keys, users, authorization cards and sessions.
    #[command(subcommand)]
    Feishu(feishu::FeishuCommand),
    /// Accounts of the archive browser (/ui/): add, list, remove.
    #[command(subcommand)]
    Admin(admin::AdminCommand),
    /// Recompute each corp's hash chain; name the first altered, deleted, inserted or reordered record.
    Verify(verify::VerifyArgs),
    /// An auditor's export (messages.jsonl, index.html, media, manifest.json with proofs).
    Export(export::ExportArgs),
    /// The full-text search index: rebuild it, update it, query it.
    #[command(subcommand)]
    Search(search::SearchCommand),
    /// The simulated WeCom service (for tests, demos and trying things by hand).
    #[command(subcommand)]
    Sim(SimCommand),
}

#[derive(Debug, Subcommand)]
enum SimCommand {
    /// Serve a fake qyapi.weixin.qq.com (HTTP CONNECT/SOCKS5 proxy + TLS) and write a manifest.
    Serve(wework_archive_sim::ServeArgs),
    /// Serve a fake Feishu Open Platform (API, OAuth pages, pushes, long connection) and write a
    /// manifest (shared/feishu/FAKE.md).
    Feishu(wework_archive_sim::feishu::FeishuArgs),
}

/// Parses the command line, runs it and maps errors to exit codes
/// (0 ok, 1 partial failure, 2 error).
pub fn main() -> ExitCode {
    let cli = parse_cli();
    let config = match Config::resolve(&cli.settings) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("wework-archive: {e:#}");
            return ExitCode::from(2);
        }
    };
    crate::logging::init(config.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("wework-archive: starting the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(dispatch(cli.command, Arc::new(config))) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("wework-archive: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn dispatch(command: Command, config: Arc<Config>) -> anyhow::Result<ExitCode> {
    match command {
        Command::Migrate => {
            let store = Store::connect(&config.database_url).await?;
            let applied = crate::store::migrate::migrate(&store).await?;
            println!("migrations applied: {applied:?} (database {})", config.database_url_redacted());
            // The Java tool's message tables, converted before any pull (src/store/seed.rs).
            for (corp, a) in store.adopt_seed_tables().await? {
                println!(
                    "took over message_{corp} from the Java tool: {} row(s), cursor after seq {}, {} tolist(s) converted; {}",
                    a.rows,
                    a.max_seq,
                    a.tolist_converted,
                    if a.changes.is_empty() { "schema unchanged".to_owned() } else { a.changes.join("; ") }
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Corp(cmd) => corp::run(cmd, &config).await,
        Command::Pull(args) => ingest::pull(args, config).await,
        Command::Run(args) => ingest::run(args, config).await,
        Command::Redecrypt(args) => ingest::redecrypt(args, config).await,
        Command::Status(args) => status::run(args, &config).await,
        Command::Media(cmd) => media::run(cmd, config).await,
        Command::Quarantine(cmd) => quarantine::run(cmd, config).await,
        Command::SdkCheck => sdk_check(&config),
        Command::Demo(args) => demo::run(args, config).await,
        Command::Bench(cmd) => {
            bench::run(cmd, config).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Feishu(cmd) => feishu::run(cmd, config).await,
        Command::Verify(args) => verify::run(args, &config).await,
        Command::Search(cmd) => search::run(cmd, &config).await,
        Command::Export(args) => export::run(args, &config).await,
        Command::Admin(cmd) => admin::run(cmd, &config).await,
        Command::Sim(SimCommand::Serve(args)) => {
            wework_archive_sim::serve_cli(args).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Sim(SimCommand::Feishu(args)) => {
            wework_archive_sim::feishu::serve_feishu_cli(args).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Parses the command line; each subcommand's `--help` lists only the
/// settings it reads ([`crate::config::hide_unused_settings`]).
fn parse_cli() -> Cli {
    use clap::{CommandFactory, FromArgMatches};
    let mut matches = crate::config::hide_unused_settings(Cli::command()).get_matches();
    Cli::from_arg_matches_mut(&mut matches).unwrap_or_else(|e| e.exit())
}

/// Opens the database and applies migrations (every command that uses the store).
pub(crate) async fn open_store(config: &Config) -> anyhow::Result<Store> {
    use anyhow::Context;
    Store::open(&config.database_url)
        .await
        .with_context(|| format!("opening the database {}", config.database_url_redacted()))
}

/// Loads the SDK from the configured path.
pub(crate) fn load_sdk(config: &Config) -> anyhow::Result<&'static Library> {
    Ok(Library::load(&config.sdk_lib)?)
}

/// A token cancelled on SIGTERM or Ctrl-C (a second signal exits at once).
pub(crate) fn shutdown_token() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        for n in 0.. {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            if n == 0 {
                tracing::info!("stopping: finishing the batches in hand (signal again to exit at once)");
                t.cancel();
            } else {
                std::process::exit(130);
            }
        }
    });
    token
}

fn sdk_check(config: &Config) -> anyhow::Result<ExitCode> {
    #[derive(serde::Deserialize)]
    struct Vector {
        plaintext: String,
        encrypt_key: String,
        encrypt_chat_msg: String,
    }
    let lib = load_sdk(config)?;
    println!("loaded {}", lib.path().display());
    // Known pairs that Tencent's real DecryptData decrypts exactly (shared/sdk/vectors.json).
    let vectors: Vec<Vector> = serde_json::from_str(include_str!("../../tests/data/vectors.json"))?;
    let good = vectors
        .iter()
        .filter(|v| {
            lib.decrypt(&v.encrypt_key, &v.encrypt_chat_msg).is_ok_and(|p| p == v.plaintext.as_bytes())
        })
        .count();
    println!("DecryptData: {good}/{} known vectors decrypt exactly", vectors.len());
    let sdk = lib.new_sdk("ww0000000000000000", "sdk-check")?;
    let net = crate::wecom::sdk::NetOptions::direct(std::time::Duration::from_secs(3));
    match sdk.get_chat_data(0, 1, &net) {
        Ok(_) => println!("GetChatData: qyapi.weixin.qq.com answered"),
        Err(e) => println!("GetChatData (no credentials, maybe no network): {e}"),
    }
    Ok(if good == vectors.len() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
