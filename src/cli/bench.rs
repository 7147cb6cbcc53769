//! `bench …`: speed and memory measured against a ceiling in the same run.

use std::sync::Arc;

use clap::Subcommand;

use crate::config::Config;
use crate::store::Store;

#[derive(Debug, Subcommand)]
pub(crate) enum BenchCommand {
    /// End-to-end ingest rate vs. the RSA decrypt ceiling.
    Ingest(super::bench_ingest::BenchIngestArgs),
    /// Media download rate vs. the SDK's own chunk loop, and peak memory.
    Media(super::bench_media::BenchMediaArgs),
    /// Archive browser p50/p95 of conversation pages and searches on a big corp (goal p95 < 200 ms).
    Browse(super::bench_browse::BenchBrowseArgs),
    /// A 1 GiB Feishu meeting recording through the production path vs. a plain streaming read, and peak memory.
    FeishuRecording(super::bench_feishu_recording::BenchFeishuRecordingArgs),
    /// Feishu docs backup of a seeded tree at the documented limits vs. the tree's rate-limit bound.
    FeishuBackup(super::bench_feishu_backup::BenchFeishuBackupArgs),
}

pub(crate) async fn run(cmd: BenchCommand, config: Arc<Config>) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Ingest(args) => super::bench_ingest::run(args, config).await,
        BenchCommand::Media(args) => super::bench_media::run(args, config).await,
        BenchCommand::Browse(args) => super::bench_browse::run(args, config).await,
        BenchCommand::FeishuRecording(args) => super::bench_feishu_recording::run(args, config).await,
        BenchCommand::FeishuBackup(args) => super::bench_feishu_backup::run(args, config).await,
    }
}

/// A freshly created, migrated database of the benches' own (`<db>_bench`, next to
/// the configured one): benches never touch real data.
pub(super) async fn fresh_bench_store(config: &Config) -> anyhow::Result<Store> {
    let (url, name) = super::bench_ingest::bench_database_url(&config.database_url)?;
    Ok(Store::open_fresh(&url, &name).await?)
}
