//! `corp seal`: seal plaintext secrets and keys in place (src/control/seal.rs).

use std::process::ExitCode;

use crate::config::Config;
use crate::control::seal::seal_all;
use crate::store::Store;

pub(crate) async fn run(store: &Store, config: &Config) -> anyhow::Result<ExitCode> {
    let report = seal_all(store, &config.secrets).await?;
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
