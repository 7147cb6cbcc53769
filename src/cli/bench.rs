//! `bench …`: speed and memory measured against a ceiling in the same run.

use std::sync::Arc;

use clap::Subcommand;

use crate::config::Config;

#[derive(Debug, Subcommand)]
pub(crate) enum BenchCommand {
    /// End-to-end ingest rate vs. the RSA decrypt ceiling.
    Ingest(super::bench_ingest::BenchIngestArgs),
}

pub(crate) async fn run(cmd: BenchCommand, config: Arc<Config>) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Ingest(args) => super::bench_ingest::run(args, config).await,
    }
}
