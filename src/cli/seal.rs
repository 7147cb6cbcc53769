//! `corp seal`: seal plaintext secrets and keys in place, or rotate the
//! master key (src/control/seal.rs).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::config::{Config, read_secret_file};
use crate::control::seal::{rotate, seal_all};
use crate::secrets::SecretBox;
use crate::store::Store;

#[derive(Debug, clap::Args)]
pub(crate) struct SealArgs {
    /// Re-seal every value sealed under the OLD master key with the configured
    /// one (WEWORK_MASTER_KEY / WEWORK_MASTER_KEY_FILE). OLD is a file holding
    /// the old key, or `-` to read it from standard input (a key given here
    /// directly works too, but shows in /proc/*/cmdline). Safe to run again.
    #[arg(long, env = "WEWORK_OLD_MASTER_KEY_FILE", value_name = "OLD")]
    rotate_from: Option<PathBuf>,
}

/// The old master key named by `--rotate-from`.
fn old_key(arg: &std::path::Path) -> anyhow::Result<SecretBox> {
    let text = if arg == std::path::Path::new("-") || arg.exists() {
        read_secret_file(arg).context("--rotate-from")?
    } else {
        let text = arg.to_string_lossy().into_owned();
        if SecretBox::from_master_key(&text).is_ok() {
            eprintln!(
                "warning: the old master key was given on the command line; prefer a file or `-` (standard input)"
            );
        }
        text
    };
    SecretBox::from_master_key(&text)
        .context("--rotate-from: not a file, and not a master key (64 hex characters or base64 of 32 bytes)")
}

pub(crate) async fn run(store: &Store, config: &Config, args: SealArgs) -> anyhow::Result<ExitCode> {
    let report = match &args.rotate_from {
        Some(old) => rotate(store, &config.secrets, &old_key(old)?).await?,
        None => seal_all(store, &config.secrets).await?,
    };
    println!(
        "sealed {} value(s); {} already sealed; {} changed meanwhile and left for the next run",
        report.sealed, report.already, report.skipped
    );
    for place in &report.unopenable {
        eprintln!("does not open with this master key (wrong key, or corrupted): {place}");
    }
    Ok(if report.unopenable.is_empty() && report.skipped == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
