//! `feishu …`: apps, hand-out keys, users, authorization cards and sessions,
//! and `feishu serve` (the Feishu side of `run` alone, for deployments and
//! tests without WeCom).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::config::Config;
use crate::feishu::Feishu;
use crate::store::feishu_apps::FeishuApp;

#[derive(Debug, clap::Subcommand)]
pub(crate) enum FeishuCommand {
    /// Feishu apps (one per tenant).
    #[command(subcommand)]
    App(AppCommand),
    /// Keys of the token hand-out (GET /feishu/app-token).
    #[command(subcommand, name = "token-key")]
    TokenKey(TokenKeyCommand),
    /// Authorized users.
    #[command(subcommand)]
    User(UserCommand),
    /// Send a person an interactive card asking them to authorize.
    AuthCard(AuthCardArgs),
    /// Card authorization sessions.
    #[command(subcommand, name = "auth-sessions")]
    AuthSessions(SessionsCommand),
    /// Meeting recording jobs (issue 13).
    #[command(subcommand)]
    Recordings(super::feishu_recordings::RecordingsCommand),
    /// Back up a user's cloud documents and wiki (Drive, My Library, wiki spaces)
    /// into a directory; exit code 0 all done, 2 some failed, 1 could not run.
    Backup(super::feishu_backup::BackupArgs),
    /// Serve only the Feishu side: PUBLIC_LISTEN (webhook, OAuth), HTTP_LISTEN
    /// (metrics, token hand-out) and the Feishu tasks, until SIGTERM.
    Serve,
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum AppCommand {
    /// Add or replace an app (secrets read from files, sealed under the master key).
    Add(AppAddArgs),
    /// Add the app a fake Feishu platform's manifest describes.
    Import {
        /// The manifest `sim feishu --manifest` wrote.
        #[arg(long)]
        manifest: PathBuf,
    },
    /// List apps (never their secrets).
    List,
}

#[derive(Debug, clap::Args)]
pub(crate) struct AppAddArgs {
    /// App ID (`cli_…`).
    #[arg(long)]
    app_id: String,
    /// File holding the App Secret.
    #[arg(long)]
    app_secret_file: PathBuf,
    /// File holding the event Encrypt Key.
    #[arg(long)]
    encrypt_key_file: PathBuf,
    /// File holding the event Verification Token.
    #[arg(long)]
    verification_token_file: PathBuf,
    /// API base URL [default: FEISHU_BASE_URL].
    #[arg(long)]
    base_url: Option<String>,
    /// Add it disabled.
    #[arg(long)]
    disabled: bool,
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum TokenKeyCommand {
    /// Make a new key; it is printed once, as the last line (only its hash is stored).
    Add {
        /// Name of the consumer.
        #[arg(long)]
        name: String,
    },
    /// List keys (names and dates).
    List,
    /// Revoke a key.
    Revoke {
        /// Name of the key.
        #[arg(long)]
        name: String,
    },
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum UserCommand {
    /// List users: app_id, open_id, name, state, access_expires_at (never a token).
    List {
        /// One JSON array instead of columns.
        #[arg(long)]
        json: bool,
    },
    /// Refresh a user's token now (the rotation is saved before anything uses it).
    Refresh {
        /// The app.
        #[arg(long)]
        app_id: String,
        /// The user.
        #[arg(long)]
        open_id: String,
    },
}

#[derive(Debug, clap::Args)]
pub(crate) struct AuthCardArgs {
    /// The app.
    #[arg(long)]
    app_id: String,
    /// The person (`ou_…`).
    #[arg(long)]
    open_id: String,
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum SessionsCommand {
    /// Expire overdue sessions, then delete finished ones older than the given age.
    Cleanup {
        /// Age like 30d, 12h, 90m or 3600s.
        #[arg(long, value_parser = parse_age)]
        older_than: Duration,
    },
}

/// Parses `30d`, `12h`, `90m`, `3600s` (or plain seconds).
pub(crate) fn parse_age(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (num, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: u64 = num.parse().map_err(|_| format!("{text:?} is not an age like 30d"))?;
    let mult = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return Err(format!("{text:?}: the unit must be s, m, h or d")),
    };
    Ok(Duration::from_secs(n * mult))
}

fn read_secret(path: &PathBuf) -> anyhow::Result<String> {
    let s = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let s = s.trim().to_owned();
    if s.is_empty() {
        bail!("{} is empty", path.display());
    }
    Ok(s)
}

#[derive(Debug, serde::Deserialize)]
struct Manifest {
    base_url: String,
    app_id: String,
    app_secret: String,
    encrypt_key: String,
    verification_token: String,
}

pub(crate) async fn run(cmd: FeishuCommand, config: Arc<Config>) -> anyhow::Result<ExitCode> {
    // Its own exit codes (1 = could not run), so it opens the store itself.
    let cmd = match cmd {
        FeishuCommand::Backup(args) => return Ok(super::feishu_backup::run(args, config).await),
        other => other,
    };
    let store = super::open_store(&config).await?;
    let secrets = &config.secrets;
    match cmd {
        FeishuCommand::App(AppCommand::Add(a)) => {
            let app = FeishuApp {
                app_id: a.app_id,
                app_secret: read_secret(&a.app_secret_file)?,
                encrypt_key: read_secret(&a.encrypt_key_file)?,
                verification_token: read_secret(&a.verification_token_file)?,
                base_url: a
                    .base_url
                    .unwrap_or_else(|| config.feishu.base_url.clone())
                    .trim_end_matches('/')
                    .to_owned(),
                enabled: !a.disabled,
            };
            check_base_url(&app.base_url)?;
            store.upsert_feishu_app(&app, secrets).await?;
            println!("app {} saved ({})", app.app_id, app.base_url);
        }
        FeishuCommand::App(AppCommand::Import { manifest }) => {
            let text = std::fs::read_to_string(&manifest)
                .with_context(|| format!("reading {}", manifest.display()))?;
            let m: Manifest =
                serde_json::from_str(&text).with_context(|| format!("parsing {}", manifest.display()))?;
            check_base_url(&m.base_url)?;
            let app = FeishuApp {
                app_id: m.app_id,
                app_secret: m.app_secret,
                encrypt_key: m.encrypt_key,
                verification_token: m.verification_token,
                base_url: m.base_url.trim_end_matches('/').to_owned(),
                enabled: true,
            };
            store.upsert_feishu_app(&app, secrets).await?;
            println!("app {} imported ({})", app.app_id, app.base_url);
        }
        FeishuCommand::App(AppCommand::List) => {
            println!("{:<24} {:<8} base_url", "app_id", "enabled");
            for app in store.feishu_apps(secrets).await? {
                println!("{:<24} {:<8} {}", app.app_id, if app.enabled { "yes" } else { "no" }, app.base_url);
            }
        }
        FeishuCommand::TokenKey(TokenKeyCommand::Add { name }) => {
            if name.is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
                bail!("the key name must be 1..=128 printable characters");
            }
            let key = format!("wwk_{}", crate::feishu::crypto::random_token(32));
            if !store.add_token_key(&name, &crate::feishu::crypto::sha256_hex(key.as_bytes())).await? {
                bail!("a key named {name:?} exists (revoke it, or choose another name)");
            }
            println!("key {name:?} added; it is shown only now:");
            println!("{key}");
        }
        FeishuCommand::TokenKey(TokenKeyCommand::List) => {
            println!("{:<32} {:<20} revoked_at", "name", "created_at");
            for k in store.token_keys().await? {
                println!("{:<32} {:<20} {}", k.name, k.created_at, k.revoked_at.as_deref().unwrap_or("-"));
            }
        }
        FeishuCommand::TokenKey(TokenKeyCommand::Revoke { name }) => {
            if !store.revoke_token_key(&name).await? {
                bail!("no active key named {name:?}");
            }
            println!("key {name:?} revoked");
        }
        FeishuCommand::User(UserCommand::List { json }) => {
            let users = store.feishu_user_list().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&users)?);
            } else {
                println!(
                    "{:<24} {:<40} {:<20} {:<13} access_expires_at",
                    "app_id", "open_id", "name", "state"
                );
                for u in users {
                    let at = crate::feishu::handout::format_time(u.access_expires_at, config.feishu.timezone);
                    println!("{:<24} {:<40} {:<20} {:<13} {at}", u.app_id, u.open_id, u.name, u.state);
                }
            }
        }
        FeishuCommand::User(UserCommand::Refresh { app_id, open_id }) => {
            let feishu = Feishu::new(store, config.clone())?;
            let app = feishu.app(&app_id).await?;
            let user = feishu.refresh_user(&app, &open_id, None).await?;
            let at =
                crate::feishu::handout::format_time(user.tokens.access_expires_at, config.feishu.timezone);
            println!("{open_id}: token valid until {at} (version {})", user.version);
        }
        FeishuCommand::AuthCard(a) => {
            let feishu = Feishu::new(store, config.clone())?;
            let session = feishu.send_auth_card(&a.app_id, &a.open_id).await?;
            println!("card sent: session {} message {}", session.id, session.message_id);
        }
        FeishuCommand::AuthSessions(SessionsCommand::Cleanup { older_than }) => {
            let feishu = Feishu::new(store.clone(), config.clone())?;
            let expired = feishu.expire_sessions().await?;
            let sessions = store.delete_old_auth_sessions(older_than.as_secs()).await?;
            let states = store.delete_old_oauth_states(older_than.as_secs()).await?;
            println!(
                "{expired} session(s) expired; deleted {sessions} finished session(s) and {states} OAuth state(s)"
            );
        }
        FeishuCommand::Serve => return serve(store, config).await,
        FeishuCommand::Recordings(c) => return super::feishu_recordings::run(c, store).await,
        // Dispatched before the store is opened; the same call if it ever gets here.
        FeishuCommand::Backup(args) => return Ok(super::feishu_backup::run(args, config).await),
    }
    Ok(ExitCode::SUCCESS)
}

fn check_base_url(url: &str) -> anyhow::Result<()> {
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        bail!("the base URL must start with https:// (or http:// for a local fake)");
    }
    Ok(())
}

/// Binds PUBLIC_LISTEN and starts the Feishu sibling tasks; returns their
/// join handle (what `run` and `feishu serve` share).
pub(crate) async fn start(
    feishu: Arc<Feishu>,
    config: &Config,
    cancel: tokio_util::sync::CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(config.public_listen)
        .await
        .with_context(|| format!("binding the public endpoint {} (--public-listen)", config.public_listen))?;
    tracing::info!(
        "public endpoint listening on {} (reached as {})",
        listener.local_addr()?,
        config.public_url
    );
    let public =
        tokio::spawn(crate::http::public::serve(listener, feishu.clone(), cancel.clone().cancelled_owned()));
    let tasks = tokio::spawn(crate::feishu::tasks::run(feishu, cancel));
    Ok(tokio::spawn(async move {
        let _ = tasks.await;
        match public.await {
            Ok(Err(e)) => tracing::warn!("public endpoint: {e}"),
            Err(e) => tracing::warn!("public endpoint: {e}"),
            Ok(Ok(())) => {}
        }
    }))
}

/// For `run` started before any Feishu app existed: checks every 30 s and
/// starts the Feishu side (public endpoint, tasks) once the first app is
/// added, so adding an app needs no restart. A public port that cannot be
/// bound then is logged and retried, never fatal to the WeCom archive.
pub(crate) async fn start_once_configured(
    feishu: Arc<Feishu>,
    config: Arc<Config>,
    cancel: tokio_util::sync::CancellationToken,
) {
    const CHECK: std::time::Duration = std::time::Duration::from_secs(30);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(CHECK) => {}
        }
        match feishu.store.feishu_apps(&config.secrets).await {
            Ok(apps) if apps.is_empty() => continue,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!("listing Feishu apps: {e}");
                continue;
            }
        }
        match start(feishu.clone(), &config, cancel.clone()).await {
            Ok(side) => {
                tracing::info!("a Feishu app was added: the Feishu side is running");
                let _ = side.await;
                return;
            }
            Err(e) => tracing::error!("starting the Feishu side: {e:#}; retrying in {CHECK:?}"),
        }
    }
}

async fn serve(store: crate::store::Store, config: Arc<Config>) -> anyhow::Result<ExitCode> {
    let cancel = super::shutdown_token();
    let feishu = Feishu::new(store.clone(), config.clone())?;
    let http = tokio::net::TcpListener::bind(config.http_listen)
        .await
        .with_context(|| format!("binding the HTTP endpoint {} (--http-listen)", config.http_listen))?;
    tracing::info!("http listening on {}", http.local_addr()?);
    let state = crate::http::AppState::new(store, Arc::default(), Arc::default(), config.clone())
        .with_feishu(feishu.clone());
    let http = tokio::spawn(crate::http::serve(http, state, cancel.clone().cancelled_owned()));
    let feishu_side = start(feishu, &config, cancel.clone()).await?;
    cancel.cancelled().await;
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let _ = feishu_side.await;
        let _ = http.await;
    })
    .await;
    Ok(ExitCode::SUCCESS)
}

/// The app a fake Feishu's manifest describes, enabled (the demo and the
/// benches register the fake this way).
pub(super) fn app_of_fake(m: &wework_archive_sim::feishu::FeishuManifest) -> FeishuApp {
    FeishuApp {
        app_id: m.app_id.clone(),
        app_secret: m.app_secret.clone(),
        encrypt_key: m.encrypt_key.clone(),
        verification_token: m.verification_token.clone(),
        base_url: m.base_url.clone(),
        enabled: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages() {
        assert_eq!(parse_age("30d").unwrap(), Duration::from_secs(30 * 86400));
        assert_eq!(parse_age("90m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_age("15").unwrap(), Duration::from_secs(15));
        assert!(parse_age("3w").is_err());
        assert!(parse_age("d").is_err());
    }
}
