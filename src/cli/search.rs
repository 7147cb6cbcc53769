//! `search`: the full-text index of the archive (`SEARCH_INDEX_DIR`) —
//! rebuild it from the archive, bring it up to date, or query it from a shell.
//! `run` keeps it current by itself ([`service_indexer`]).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::archive::search::{SearchIndex, SearchQuery};
use crate::config::Config;
use crate::store::{CorpId, Store};

/// How often the service's indexer looks for new chain links.
const INDEX_EVERY: Duration = Duration::from_secs(2);

#[derive(Debug, clap::Subcommand)]
pub(crate) enum SearchCommand {
    /// Throw the index away and build it again from the archive (stop the service first).
    Rebuild(CorpArg),
    /// Index what was stored since the index was last brought up to date.
    Update(CorpArg),
    /// Search one corp: every word must occur; Chinese matches any part of a sentence.
    Query(QueryArgs),
}

#[derive(Debug, clap::Args)]
pub(crate) struct CorpArg {
    /// Only this corp (default: every corp with stored records).
    #[arg(long)]
    corp: Option<String>,
}

#[derive(Debug, clap::Args)]
pub(crate) struct QueryArgs {
    /// The corp.
    #[arg(long)]
    corp: String,
    /// Only messages of this sender.
    #[arg(long)]
    from: Option<String>,
    /// Only messages of this group room.
    #[arg(long)]
    room: Option<String>,
    /// Only messages of this type.
    #[arg(long = "type")]
    msgtype: Option<String>,
    /// At most this many hits (newest first).
    #[arg(long, default_value_t = 20)]
    limit: usize,
    /// What to look for.
    #[arg(required = true)]
    words: Vec<String>,
}

async fn corps(store: &Store, only: &Option<String>) -> anyhow::Result<Vec<CorpId>> {
    if let Some(c) = only {
        return Ok(vec![CorpId::new(c)?]);
    }
    Ok(store.chain_heads().await?.into_iter().filter_map(|h| CorpId::new(&h.corpid).ok()).collect())
}

pub(crate) async fn run(cmd: SearchCommand, config: &Config) -> anyhow::Result<ExitCode> {
    let store = super::open_store(config).await?;
    let index = SearchIndex::shared(&config.search_index_dir);
    match cmd {
        SearchCommand::Rebuild(ref a) | SearchCommand::Update(ref a) => {
            let rebuild = matches!(cmd, SearchCommand::Rebuild(_));
            for corpid in corps(&store, &a.corp).await? {
                let started = std::time::Instant::now();
                let done = if rebuild {
                    index.rebuild(&store, &corpid).await?
                } else {
                    index.catch_up(&store, &corpid, u64::MAX).await?
                };
                println!(
                    "{corpid}: {} record(s) indexed in {:.1} s, index at chain position {}, {} document(s)",
                    done.indexed,
                    started.elapsed().as_secs_f64(),
                    done.pos,
                    index.documents(&corpid).await?
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        SearchCommand::Query(q) => {
            let corpid = CorpId::new(&q.corp)?;
            let query = SearchQuery {
                text: q.words.join(" "),
                from: q.from,
                room: q.room,
                msgtype: q.msgtype,
                since_ms: None,
                until_ms: None,
            };
            let found = index.search(&corpid, &query, q.limit).await?;
            let ids: Vec<u64> = found.hits.iter().map(|h| h.id).collect();
            println!("{} message(s)", found.total);
            for r in store.records_by_id(&corpid, &ids).await? {
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    crate::archive::render::time_ms(r.msgtime),
                    r.msgid,
                    r.msgfrom,
                    if r.roomid.is_empty() { "-" } else { r.roomid.as_str() },
                    r.msgtype
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Starts the background indexer of `run` (it shares the index with `/ui/`)
/// on the store `run` opened once the database answered; it stops with `cancel`.
pub(crate) fn spawn_service_indexer(store: crate::store::Store, config: &Config, cancel: CancellationToken) {
    let index: Arc<SearchIndex> = SearchIndex::shared(&config.search_index_dir);
    tokio::spawn(index.run_indexer(store, INDEX_EVERY, cancel));
}
