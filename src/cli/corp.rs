//! `corp …`: manage corplist rows and keys; every change also notifies the
//! running service (Redis event, with the `update` flag as the fallback).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Subcommand;
use serde::Deserialize;

use crate::config::{Config, read_secret_file};
use crate::control::events::{Change, ChangeEvent, push};
use crate::secrets::Binding;
use crate::store::alarms::AlarmKind;
use crate::store::corps::CorpSettings;
use crate::store::{CorpId, Store};
use crate::wecom::keys::PrivateKey;

#[derive(Debug, Subcommand)]
pub(crate) enum CorpCommand {
    /// Add a corp (or replace its settings).
    Add(AddArgs),
    /// Change a corp's settings (same flags as add).
    Update(AddArgs),
    /// Stop archiving a corp (its data stays).
    Disable {
        /// The corp.
        corpid: String,
    },
    /// Resume archiving a corp.
    Enable {
        /// The corp.
        corpid: String,
    },
    /// Add or replace the private key of one key version.
    SetKey {
        /// The corp.
        corpid: String,
        /// VERSION=PEMFILE.
        key: String,
    },
    /// Register every corp of a simulator manifest (keys and proxy included).
    Import {
        /// The manifest JSON written by `wework-archive sim serve --manifest`.
        #[arg(long)]
        manifest: PathBuf,
    },
    /// List corps (never shows secrets or keys).
    List,
    /// Show a corp's alarms, one per cause; `--clear KIND` acknowledges one
    /// (setup, stall and media alarms also clear by themselves when their cause
    /// goes away; a records alarm stays until acknowledged here).
    Alarms {
        /// The corp.
        corpid: String,
        /// Clear the alarm of this kind: setup, stall, records or media.
        #[arg(long, value_name = "KIND")]
        clear: Option<String>,
    },
    /// Seal every plaintext secret, proxy and private key in place with the
    /// master key (WEWORK_MASTER_KEY), or re-seal under a new one
    /// (`--rotate-from OLD`); safe to run again.
    Seal(super::seal::SealArgs),
}

#[derive(Debug, clap::Args)]
pub(crate) struct AddArgs {
    /// Corp id (ww… ).
    #[arg(long)]
    corpid: String,
    /// The chat-archive secret. Prefer WEWORK_CORP_SECRET or --secret-file: a
    /// flag's value is visible to every user in /proc/*/cmdline.
    #[arg(long, env = "WEWORK_CORP_SECRET", hide_env_values = true, required_unless_present = "secret_file")]
    secret: Option<String>,
    /// File holding the chat-archive secret (`-` reads standard input).
    #[arg(long, value_name = "FILE", conflicts_with = "secret")]
    secret_file: Option<PathBuf>,
    /// Display name.
    #[arg(long, default_value = "")]
    name: String,
    /// Private key of a key version, VERSION=PEMFILE (repeatable).
    #[arg(long = "key", value_name = "VERSION=PEMFILE")]
    keys: Vec<String>,
    /// Proxy for the SDK (http://host:port or socks5://host:port).
    #[arg(long, env = "WEWORK_CORP_PROXY", default_value = "")]
    proxy: String,
    /// Proxy credentials USER:PASSWORD (prefer WEWORK_CORP_PROXY_PASSWD or --passwd-file).
    #[arg(
        long,
        env = "WEWORK_CORP_PROXY_PASSWD",
        hide_env_values = true,
        default_value = "",
        hide_default_value = true
    )]
    passwd: String,
    /// File holding the proxy credentials USER:PASSWORD (`-` reads standard input).
    #[arg(long, value_name = "FILE")]
    passwd_file: Option<PathBuf>,
    /// Records per GetChatData call (1..=1000).
    #[arg(long, default_value_t = 1000)]
    limits: i32,
    /// SDK timeout in seconds.
    #[arg(long, default_value_t = 10)]
    timeout: i32,
}

/// `VERSION=PEMFILE` → (version, validated PEM text).
fn read_key_arg(arg: &str) -> anyhow::Result<(u32, String)> {
    let (ver, path) = arg.split_once('=').context("--key takes VERSION=PEMFILE")?;
    let ver: u32 = ver.trim().parse().with_context(|| format!("key version {ver:?} is not a number"))?;
    let pem = std::fs::read_to_string(path.trim()).with_context(|| format!("reading key file {path}"))?;
    PrivateKey::parse(&pem).with_context(|| format!("key file {path}"))?;
    Ok((ver, pem))
}

/// Tells running services about a change: a Redis event, and when Redis is
/// unreachable the `update` flag that their poll notices.
pub(crate) async fn notify(store: &Store, config: &Config, event: ChangeEvent) {
    match push(&config.redis_url, &config.change_queue, &event).await {
        Ok(()) => tracing::debug!(corp = %event.corpid, "change event pushed"),
        Err(e) => {
            tracing::warn!(corp = %event.corpid, "could not push the change event to Redis ({e}); setting corplist.update = 1 for the poll instead");
            if let Err(e) = store.flag_for_update(&event.corpid).await {
                tracing::warn!(corp = %event.corpid, "setting corplist.update failed too ({e}): the services' poll still sees the change by its digest");
            }
        }
    }
}

/// Refuses to write secrets under a master key that does not open the
/// values already stored: the database would end up with values sealed under
/// two keys (or sealed and plaintext next to each other), and no single
/// setting would open them all.
pub(crate) async fn refuse_mixed_keys(store: &Store, config: &Config) -> anyhow::Result<()> {
    let bad = crate::control::seal::unopenable(store, &config.secrets).await?;
    if bad.is_empty() {
        return Ok(());
    }
    let shown: Vec<&str> = bad.iter().take(5).map(String::as_str).collect();
    if config.secrets.has_master_key() {
        bail!(
            "the configured master key does not open {} stored value(s) ({}{}): refusing to mix master keys; \
             set the master key they were sealed with, or re-seal them with `corp seal --rotate-from OLD`",
            bad.len(),
            shown.join(", "),
            if bad.len() > shown.len() { ", …" } else { "" }
        )
    }
    bail!(
        "{} stored value(s) are sealed ({}{}) but no master key is configured: refusing to store new secrets \
         in plaintext next to them; set WEWORK_MASTER_KEY or WEWORK_MASTER_KEY_FILE",
        bad.len(),
        shown.join(", "),
        if bad.len() > shown.len() { ", …" } else { "" }
    )
}

async fn add_corp(store: &Store, config: &Config, a: &AddArgs, change: Change) -> anyhow::Result<()> {
    let corpid = CorpId::new(&a.corpid)?;
    let keys = a.keys.iter().map(|k| read_key_arg(k)).collect::<anyhow::Result<Vec<_>>>()?;
    let secret = match (&a.secret, &a.secret_file) {
        (_, Some(path)) => read_secret_file(path).context("--secret-file")?,
        (Some(s), None) => s.clone(),
        (None, None) => {
            bail!("give the secret with WEWORK_CORP_SECRET, --secret-file FILE or --secret-file -")
        }
    };
    if secret.trim().is_empty() {
        bail!("the corp secret is empty");
    }
    let passwd = match &a.passwd_file {
        Some(path) => read_secret_file(path).context("--passwd-file")?,
        None => a.passwd.clone(),
    };
    refuse_mixed_keys(store, config).await?;
    let sealed = &config.secrets;
    let id = corpid.as_str();
    let new = store
        .upsert_corp(&CorpSettings {
            corpid: corpid.to_string(),
            secret: sealed.seal(&secret, &Binding::corplist("secret", id)),
            corpname: a.name.clone(),
            proxy: sealed.seal(&a.proxy, &Binding::corplist("proxy", id)),
            passwd: sealed.seal(&passwd, &Binding::corplist("passwd", id)),
            limits: a.limits,
            timeout: a.timeout,
        })
        .await?;
    for (ver, pem) in &keys {
        store.set_key(&corpid, *ver, &sealed.seal(pem, &Binding::corp_key(id, *ver))).await?;
    }
    let change = if new { Change::Added } else { change };
    println!("{} corp {corpid} ({} key version(s))", if new { "added" } else { "updated" }, keys.len());
    notify(store, config, ChangeEvent { corpid: corpid.to_string(), change, version: None }).await;
    Ok(())
}

/// The simulator manifest (`sim serve --manifest`): a stable contract.
#[derive(Debug, Deserialize)]
struct Manifest {
    proxy: String,
    corps: Vec<ManifestCorp>,
}

#[derive(Debug, Deserialize)]
struct ManifestCorp {
    corpid: String,
    secret: String,
    #[serde(default)]
    corpname: String,
    #[serde(default)]
    keys: Vec<ManifestKey>,
}

#[derive(Debug, Deserialize)]
struct ManifestKey {
    version: u32,
    private_key_pem: String,
}

/// Registers every corp of a manifest; returns their ids.
pub async fn import_manifest(store: &Store, config: &Config, text: &str) -> anyhow::Result<Vec<CorpId>> {
    let manifest: Manifest =
        serde_json::from_str(text).context("the manifest is not the simulator's JSON")?;
    refuse_mixed_keys(store, config).await?;
    let mut ids = Vec::new();
    for c in &manifest.corps {
        let corpid = CorpId::new(&c.corpid)?;
        let id = corpid.as_str();
        for k in &c.keys {
            PrivateKey::parse(&k.private_key_pem)
                .with_context(|| format!("{corpid} key version {}", k.version))?;
        }
        let new = store
            .upsert_corp(&CorpSettings {
                corpid: corpid.to_string(),
                secret: config.secrets.seal(&c.secret, &Binding::corplist("secret", id)),
                corpname: c.corpname.clone(),
                proxy: config.secrets.seal(&manifest.proxy, &Binding::corplist("proxy", id)),
                passwd: String::new(),
                limits: 1000,
                timeout: 10,
            })
            .await?;
        for k in &c.keys {
            let sealed = config.secrets.seal(&k.private_key_pem, &Binding::corp_key(id, k.version));
            store.set_key(&corpid, k.version, &sealed).await?;
        }
        let change = if new { Change::Added } else { Change::Updated };
        notify(store, config, ChangeEvent { corpid: corpid.to_string(), change, version: None }).await;
        ids.push(corpid);
    }
    Ok(ids)
}

/// Registers every corp of a running simulator (the demo, benches and tests);
/// goes through the same JSON contract as `corp import --manifest`.
pub async fn import_sim_manifest(
    store: &Store,
    config: &Config,
    manifest: &wework_archive_sim::Manifest,
) -> anyhow::Result<Vec<CorpId>> {
    import_manifest(store, config, &serde_json::to_string(manifest)?).await
}

pub(crate) async fn run(cmd: CorpCommand, config: &Config) -> anyhow::Result<ExitCode> {
    let store = super::open_store(config).await?;
    match cmd {
        CorpCommand::Add(a) => add_corp(&store, config, &a, Change::Added).await?,
        CorpCommand::Update(a) => {
            let corpid = CorpId::new(&a.corpid)?;
            if store.corp(&corpid).await?.is_none() {
                bail!("no corp {corpid}; use `corp add`");
            }
            add_corp(&store, config, &a, Change::Updated).await?
        }
        CorpCommand::Disable { corpid } => set_enabled(&store, config, &corpid, false).await?,
        CorpCommand::Enable { corpid } => set_enabled(&store, config, &corpid, true).await?,
        CorpCommand::SetKey { corpid, key } => {
            let corpid = CorpId::new(&corpid)?;
            if store.corp(&corpid).await?.is_none() {
                bail!("no corp {corpid}");
            }
            let (ver, pem) = read_key_arg(&key)?;
            refuse_mixed_keys(&store, config).await?;
            let sealed = config.secrets.seal(&pem, &Binding::corp_key(corpid.as_str(), ver));
            store.set_key(&corpid, ver, &sealed).await?;
            println!("set key version {ver} for {corpid}");
            notify(
                &store,
                config,
                ChangeEvent { corpid: corpid.to_string(), change: Change::KeyAdded, version: Some(ver) },
            )
            .await;
        }
        CorpCommand::Import { manifest } => {
            let text = std::fs::read_to_string(&manifest)
                .with_context(|| format!("reading {}", manifest.display()))?;
            let ids = import_manifest(&store, config, &text).await?;
            println!(
                "imported {} corp(s): {}",
                ids.len(),
                ids.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(", ")
            );
        }
        CorpCommand::Seal(args) => return super::seal::run(&store, config, args).await,
        CorpCommand::Alarms { corpid, clear } => {
            let corpid = CorpId::new(&corpid)?;
            if let Some(kind) = clear {
                let Some(kind) = AlarmKind::parse(&kind) else {
                    let kinds: Vec<_> = AlarmKind::ALL.iter().map(|k| k.as_str()).collect();
                    bail!("no alarm kind {kind:?}; kinds: {}", kinds.join(", "));
                };
                store.clear_alarm(&corpid, kind).await?;
                println!("cleared the {kind} alarm of {corpid}");
            }
            let alarms = store.alarms(&corpid).await?;
            if alarms.is_empty() {
                println!("{corpid}: no alarms");
            }
            for (kind, text) in alarms {
                println!("{corpid} {kind:<8} {}", text.escape_debug());
            }
        }
        CorpCommand::List => {
            println!(
                "{:<4} {:<24} {:<8} {:<6} {:<8} {:<30} name",
                "id", "corpid", "status", "limit", "timeout", "proxy"
            );
            for row in store.corps().await? {
                let valid = if row.corp_id().is_ok() { "" } else { "  (INVALID corp id: not archived)" };
                println!(
                    "{:<4} {:<24} {:<8} {:<6} {:<8} {:<30} {}{valid}",
                    row.id,
                    row.corpid.escape_debug().to_string(),
                    if row.enabled() { "enabled" } else { "disabled" },
                    row.limits,
                    row.timeout,
                    shown_proxy(&row, &config.secrets),
                    row.corpname
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The proxy as `corp list` shows it: opened, and without credentials (a
/// proxy URL may carry `user:password@`); sealed values that do not open show
/// as such.
fn shown_proxy(row: &crate::store::corps::CorpRow, secrets: &crate::secrets::SecretBox) -> String {
    if row.proxy.is_empty() {
        return "-".to_owned();
    }
    match secrets.open(&row.proxy, &Binding::corplist("proxy", &row.corpid)) {
        Ok(proxy) => crate::config::redact_url(&proxy).escape_debug().to_string(),
        Err(_) => "(sealed; does not open)".to_owned(),
    }
}

async fn set_enabled(store: &Store, config: &Config, corpid: &str, enabled: bool) -> anyhow::Result<()> {
    let corpid = CorpId::new(corpid)?;
    if !store.set_corp_enabled(&corpid, enabled).await? {
        bail!("no corp {corpid}");
    }
    println!("{} {corpid}", if enabled { "enabled" } else { "disabled" });
    let change = if enabled { Change::Enabled } else { Change::Disabled };
    notify(store, config, ChangeEvent { corpid: corpid.to_string(), change, version: None }).await;
    Ok(())
}
