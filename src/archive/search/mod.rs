//! Full-text search over a corp's stored records: an embedded tantivy index
//! per corp under `SEARCH_INDEX_DIR/<corpid>/`, tokenised for Chinese
//! ([`tokenizer`]).
//!
//! Why tantivy and not MariaDB's Mroonga: Mroonga is a storage engine plugin
//! that every MariaDB server of a deployment (and of a Galera cluster) would
//! have to load, and a FULLTEXT index on the message tables would make every
//! batch commit pay for indexing inside the transaction. An embedded index
//! needs nothing from the database, is kept beside the service and can be
//! thrown away and rebuilt from the archive at any time.
//!
//! The index follows the hash chain: every stored record and every record
//! `redecrypt` rewrote has a link, in commit order, so "index every link after
//! the last one indexed" picks up exactly what changed. The position of the
//! last indexed link is saved in the same tantivy commit as the documents (its
//! payload), so a crash or restart resumes where the last commit ended and
//! never indexes a record twice or skips one. `search rebuild` starts again
//! from position 0.
//!
//! Scope: an index holds one corp; callers check the account's grant for the
//! corp before they search it (`/ui/` does, through its `granted` check), so
//! an account never sees hits from a corp it may not read.

pub mod tokenizer;

use std::collections::{HashMap, HashSet};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use tantivy::collector::{Count, TopDocs};
use tantivy::directory::MmapDirectory;
use tantivy::query::{BooleanQuery, Occur, PhraseQuery, Query, RangeQuery, TermQuery};
use tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, STORED, STRING, Schema, TantivyDocument, TextFieldIndexing,
    TextOptions, Value,
};
use tantivy::{DocAddress, Index, IndexReader, IndexWriter, Order, ReloadPolicy, Term, doc};

use crate::store::chain::StoredRecord;
use crate::store::{CorpId, Store, StoreError};
use tokenizer::{BIGRAM, CjkTokenizer, Mode, UNIGRAM, is_cjk};

/// Links read (and records indexed) per tantivy commit.
const CATCH_UP_CHUNK: u32 = 5000;
/// Memory the writer may use before it flushes a segment.
const WRITER_HEAP: usize = 50_000_000;
/// What the index payload starts with; a different version means rebuild.
const PAYLOAD_VERSION: &str = "wwa-search-v1";

/// Errors of the search index.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// The index files.
    #[error("search index: {0}")]
    Index(#[from] tantivy::TantivyError),
    /// The index folder.
    #[error("search index folder {path}: {source}")]
    Folder {
        /// Which folder.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// Another process writes this index.
    #[error("the search index {0} is being written by another process (a running service?)")]
    Busy(PathBuf),
    /// The archive.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A query with nothing to look for.
    #[error("the query has no words or characters to search for")]
    EmptyQuery,
}

/// The filters of a search.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchQuery {
    /// Words and CJK substrings, all of which must occur (space separated).
    pub text: String,
    /// Sender (userid), exact.
    pub from: Option<String>,
    /// Group room id, exact.
    pub room: Option<String>,
    /// Message type, exact.
    pub msgtype: Option<String>,
    /// From this time (ms, inclusive).
    pub since_ms: Option<i64>,
    /// Before this time (ms, exclusive).
    pub until_ms: Option<i64>,
}

/// One hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    /// Row id in `message_<corpid>`.
    pub id: u64,
    /// Its time (ms).
    pub msgtime: i64,
}

/// The newest hits first and how many there are in all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchResult {
    /// Records matching.
    pub total: usize,
    /// Up to the limit asked, newest first.
    pub hits: Vec<Hit>,
}

/// What a catch-up did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CatchUp {
    /// Records (re)indexed.
    pub indexed: u64,
    /// Chain position the index now covers.
    pub pos: u64,
}

#[derive(Clone, Copy)]
struct Fields {
    id: Field,
    msgid: Field,
    msgtime: Field,
    msgfrom: Field,
    roomid: Field,
    msgtype: Field,
    text: Field,
    text1: Field,
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let text_with = |tok: &str| {
        TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(tok)
                .set_index_option(IndexRecordOption::WithFreqsAndPositions),
        )
    };
    let fields = Fields {
        id: b.add_u64_field("id", STORED | FAST),
        msgid: b.add_text_field("msgid", STRING),
        msgtime: b.add_i64_field("msgtime", INDEXED | STORED | FAST),
        msgfrom: b.add_text_field("msgfrom", STRING),
        roomid: b.add_text_field("roomid", STRING),
        msgtype: b.add_text_field("msgtype", STRING),
        text: b.add_text_field("text", text_with(BIGRAM)),
        text1: b.add_text_field("text1", text_with(UNIGRAM)),
    };
    (b.build(), fields)
}

/// One corp's index: its reader, and its writer once something is written.
struct CorpIndex {
    path: PathBuf,
    index: Index,
    reader: IndexReader,
    fields: Fields,
    writer: Mutex<Option<IndexWriter>>,
}

impl CorpIndex {
    fn open(path: PathBuf) -> Result<CorpIndex, SearchError> {
        std::fs::create_dir_all(&path)
            .map_err(|source| SearchError::Folder { path: path.clone(), source })?;
        let dir = MmapDirectory::open(&path).map_err(|e| SearchError::Index(e.into()))?;
        let (schema, fields) = schema();
        let index = Index::open_or_create(dir, schema)?;
        index.tokenizers().register(BIGRAM, CjkTokenizer(Mode::Bigram));
        index.tokenizers().register(UNIGRAM, CjkTokenizer(Mode::Unigram));
        // Commits of another process (a `search rebuild`) show up by themselves.
        let reader = index.reader_builder().reload_policy(ReloadPolicy::OnCommitWithDelay).try_into()?;
        Ok(CorpIndex { path, index, reader, fields, writer: Mutex::new(None) })
    }

    /// The chain position the committed index covers (0: nothing, or another version).
    fn pos(&self) -> Result<u64, SearchError> {
        let meta = self.index.load_metas()?;
        Ok(meta
            .payload
            .as_deref()
            .and_then(|p| p.strip_prefix(PAYLOAD_VERSION))
            .and_then(|p| p.strip_prefix(' '))
            .and_then(|p| p.parse().ok())
            .unwrap_or(0))
    }

    fn with_writer<T>(
        &self,
        f: impl FnOnce(&mut IndexWriter) -> Result<T, SearchError>,
    ) -> Result<T, SearchError> {
        let mut guard = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            let w = self.index.writer_with_num_threads(1, WRITER_HEAP).map_err(|e| match e {
                tantivy::TantivyError::LockFailure(..) => SearchError::Busy(self.path.clone()),
                e => SearchError::Index(e),
            })?;
            *guard = Some(w);
        }
        f(guard.as_mut().expect("writer just set"))
    }

    fn document(&self, r: &StoredRecord) -> TantivyDocument {
        let f = &self.fields;
        let text = r.text.as_deref().unwrap_or("");
        doc!(
            f.id => r.id,
            f.msgid => r.msgid.as_str(),
            f.msgtime => r.msgtime,
            f.msgfrom => r.msgfrom.as_str(),
            f.roomid => r.roomid.as_str(),
            f.msgtype => r.msgtype.as_str(),
            f.text => text,
            f.text1 => text,
        )
    }

    /// Replaces the documents of `msgids` by `records` (those still stored)
    /// and commits with the new position, atomically.
    fn apply(&self, msgids: &HashSet<String>, records: &[StoredRecord], pos: u64) -> Result<(), SearchError> {
        self.with_writer(|w| {
            for m in msgids {
                w.delete_term(Term::from_field_text(self.fields.msgid, m));
            }
            for r in records {
                w.add_document(self.document(r))?;
            }
            let mut c = w.prepare_commit()?;
            c.set_payload(&format!("{PAYLOAD_VERSION} {pos}"));
            c.commit()?;
            Ok(())
        })?;
        self.reader.reload()?;
        Ok(())
    }

    fn clear(&self) -> Result<(), SearchError> {
        self.with_writer(|w| {
            w.delete_all_documents()?;
            let mut c = w.prepare_commit()?;
            c.set_payload(&format!("{PAYLOAD_VERSION} 0"));
            c.commit()?;
            Ok(())
        })?;
        self.reader.reload()?;
        Ok(())
    }

    fn search(&self, q: &SearchQuery, limit: usize) -> Result<SearchResult, SearchError> {
        let f = &self.fields;
        let mut must: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for word in q.text.split_whitespace() {
            if let Some(query) = text_query(f, word) {
                must.push((Occur::Must, query));
            }
        }
        if must.is_empty() {
            return Err(SearchError::EmptyQuery);
        }
        let exact = |field: Field, v: &Option<String>| {
            v.as_deref().filter(|v| !v.is_empty()).map(|v| {
                Box::new(TermQuery::new(Term::from_field_text(field, v), IndexRecordOption::Basic))
                    as Box<dyn Query>
            })
        };
        for (field, v) in [(f.msgfrom, &q.from), (f.roomid, &q.room), (f.msgtype, &q.msgtype)] {
            if let Some(t) = exact(field, v) {
                must.push((Occur::Must, t));
            }
        }
        if q.since_ms.is_some() || q.until_ms.is_some() {
            let lo =
                q.since_ms.map_or(Bound::Unbounded, |t| Bound::Included(Term::from_field_i64(f.msgtime, t)));
            let hi =
                q.until_ms.map_or(Bound::Unbounded, |t| Bound::Excluded(Term::from_field_i64(f.msgtime, t)));
            must.push((Occur::Must, Box::new(RangeQuery::new(lo, hi))));
        }
        let query = BooleanQuery::new(must);
        let searcher = self.reader.searcher();
        let top = TopDocs::with_limit(limit.max(1)).order_by_fast_field::<i64>("msgtime", Order::Desc);
        let (total, docs): (usize, Vec<(i64, DocAddress)>) = searcher.search(&query, &(Count, top))?;
        let mut hits = Vec::with_capacity(docs.len());
        for (msgtime, addr) in docs.into_iter().take(limit) {
            let d: TantivyDocument = searcher.doc(addr)?;
            if let Some(id) = d.get_first(f.id).and_then(|v| v.as_u64()) {
                hits.push(Hit { id, msgtime });
            }
        }
        Ok(SearchResult { total, hits })
    }

    fn docs(&self) -> u64 {
        self.reader.searcher().num_docs()
    }
}

/// The query of one space-free query word: the phrase of its bigrams, or of
/// its single characters when it holds a lone CJK character (which the bigram
/// field only has where it stood alone).
fn text_query(f: &Fields, word: &str) -> Option<Box<dyn Query>> {
    let chars: Vec<char> = word.chars().collect();
    let lone_cjk = chars.iter().enumerate().any(|(i, c)| {
        is_cjk(*c) && !(i > 0 && is_cjk(chars[i - 1])) && !chars.get(i + 1).is_some_and(|n| is_cjk(*n))
    });
    let (field, mode) = if lone_cjk { (f.text1, Mode::Unigram) } else { (f.text, Mode::Bigram) };
    // The tokens' own positions (with the gaps after CJK runs) are the phrase's offsets.
    let mut terms: Vec<(usize, Term)> = tokenizer::tokens(word, mode)
        .into_iter()
        .map(|t| (t.position, Term::from_field_text(field, &t.text)))
        .collect();
    match terms.len() {
        0 => None,
        1 => Some(Box::new(TermQuery::new(terms.pop()?.1, IndexRecordOption::Basic))),
        _ => Some(Box::new(PhraseQuery::new_with_offset(terms))),
    }
}

/// The search indexes under one folder, one per corp, opened on first use.
///
/// One process holds one instance per folder ([`SearchIndex::shared`]): tantivy
/// allows one writer per index, and the background indexer and the `/ui/`
/// search of a service must share it.
pub struct SearchIndex {
    root: PathBuf,
    corps: Mutex<HashMap<String, Arc<CorpIndex>>>,
    /// Serialises catch-ups per process (the writer is per corp, the reads of
    /// links and records should not race each other's positions).
    catching_up: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for SearchIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SearchIndex").field("root", &self.root).finish_non_exhaustive()
    }
}

impl SearchIndex {
    /// The process's index under `root` (opened on first use, shared after).
    pub fn shared(root: &Path) -> Arc<SearchIndex> {
        static OPEN: OnceLock<Mutex<HashMap<PathBuf, Weak<SearchIndex>>>> = OnceLock::new();
        let mut open = OPEN.get_or_init(Mutex::default).lock().unwrap_or_else(|p| p.into_inner());
        open.retain(|_, w| w.strong_count() > 0);
        if let Some(i) = open.get(root).and_then(Weak::upgrade) {
            return i;
        }
        let i = Arc::new(SearchIndex {
            root: root.to_owned(),
            corps: Mutex::default(),
            catching_up: tokio::sync::Mutex::new(()),
        });
        open.insert(root.to_owned(), Arc::downgrade(&i));
        i
    }

    /// The folder of the indexes.
    pub fn root(&self) -> &Path {
        &self.root
    }

    async fn corp(&self, corpid: &CorpId) -> Result<Arc<CorpIndex>, SearchError> {
        if let Some(c) = self.corps.lock().unwrap_or_else(|p| p.into_inner()).get(corpid.as_str()) {
            return Ok(c.clone());
        }
        let path = self.root.join(corpid.as_str());
        let opened = Arc::new(blocking(move || CorpIndex::open(path)).await?);
        let mut corps = self.corps.lock().unwrap_or_else(|p| p.into_inner());
        Ok(corps.entry(corpid.to_string()).or_insert(opened).clone())
    }

    /// The chain position the corp's index covers.
    pub async fn indexed_pos(&self, corpid: &CorpId) -> Result<u64, SearchError> {
        let c = self.corp(corpid).await?;
        blocking(move || c.pos()).await
    }

    /// Documents in the corp's index.
    pub async fn documents(&self, corpid: &CorpId) -> Result<u64, SearchError> {
        let c = self.corp(corpid).await?;
        blocking(move || Ok(c.docs())).await
    }

    /// Indexes every chain link after the index's position, in chunks, each
    /// committed with its position; `max_links` bounds the work of one call
    /// (`u64::MAX`: to the head).
    pub async fn catch_up(
        &self,
        store: &Store,
        corpid: &CorpId,
        max_links: u64,
    ) -> Result<CatchUp, SearchError> {
        let _one = self.catching_up.lock().await;
        let c = self.corp(corpid).await?;
        let cc = c.clone();
        let mut pos = blocking(move || cc.pos()).await?;
        let mut done = CatchUp { indexed: 0, pos };
        let mut budget = max_links;
        while budget > 0 {
            let want = u32::try_from(budget.min(u64::from(CATCH_UP_CHUNK))).unwrap_or(CATCH_UP_CHUNK);
            let links = store.chain_links(corpid, pos, want).await?;
            let Some(last) = links.last() else { break };
            let new_pos = last.pos;
            let msgids: HashSet<String> = links.iter().map(|l| l.msgid.clone()).collect();
            let list: Vec<String> = msgids.iter().cloned().collect();
            let records = store.records_by_msgids(corpid, &list).await?;
            let n = records.len() as u64;
            let cc = c.clone();
            blocking(move || cc.apply(&msgids, &records, new_pos)).await?;
            budget = budget.saturating_sub(links.len() as u64);
            pos = new_pos;
            done = CatchUp { indexed: done.indexed + n, pos };
        }
        Ok(done)
    }

    /// Empties the corp's index and indexes the whole chain again.
    pub async fn rebuild(&self, store: &Store, corpid: &CorpId) -> Result<CatchUp, SearchError> {
        {
            let _one = self.catching_up.lock().await;
            let c = self.corp(corpid).await?;
            blocking(move || c.clear()).await?;
        }
        self.catch_up(store, corpid, u64::MAX).await
    }

    /// Searches the corp's index as committed.
    pub async fn search(
        &self,
        corpid: &CorpId,
        q: &SearchQuery,
        limit: usize,
    ) -> Result<SearchResult, SearchError> {
        let c = self.corp(corpid).await?;
        let q = q.clone();
        blocking(move || c.search(&q, limit)).await
    }

    /// Keeps every corp's index current until `stop`: after each pass it
    /// waits `every` (or less when a pass had to stop at its budget).
    pub async fn run_indexer(
        self: Arc<Self>,
        store: Store,
        every: std::time::Duration,
        stop: tokio_util::sync::CancellationToken,
    ) {
        let mut reported_busy = HashSet::new();
        loop {
            let mut behind = false;
            match store.chain_heads().await {
                Ok(heads) => {
                    for h in heads {
                        let Ok(corpid) = CorpId::new(&h.corpid) else { continue };
                        match self.catch_up(&store, &corpid, 50_000).await {
                            Ok(c) => behind |= c.pos < h.pos,
                            Err(SearchError::Busy(p)) => {
                                if reported_busy.insert(corpid.to_string()) {
                                    tracing::warn!(
                                        "search: {} is written by another process; skipping",
                                        p.display()
                                    );
                                }
                            }
                            Err(e) => tracing::warn!(corp = %corpid, "search: indexing: {e}"),
                        }
                    }
                }
                Err(e) => tracing::warn!("search: reading chain heads: {e}"),
            }
            let wait = if behind { std::time::Duration::ZERO } else { every };
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, SearchError> + Send + 'static,
) -> Result<T, SearchError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => Err(SearchError::Index(tantivy::TantivyError::InternalError(format!("index task: {e}")))),
    }
}
