//! Auditor exports: a folder an auditor can read and check offline.
//!
//! - `messages.jsonl`: the exact stored records, one JSON object a line, in
//!   seq order (`msgdata` as base64: the stored bytes, whatever they are);
//! - `index.html`: the records rendered as the browser renders them, with the
//!   stylesheet inline and media linked relatively, so it opens from disk;
//! - `media/`: the downloaded media files of the exported records;
//! - `manifest.json`: the sha256 of every file, and the hash-chain proof of
//!   every record: its link (position, record hash), the links that connect it
//!   to the chain head at export time, and that head.
//!
//! [`verify_export`] is the documented offline check (docs/TAMPER-EVIDENCE.md):
//! it needs nothing but the folder, and names the first thing that does not add up.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};

use aws_lc_rs::digest;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use maud::{DOCTYPE, PreEscaped, html};
use serde::{Deserialize, Serialize};

use super::chain::{GENESIS, Link, first_broken};
use super::render::{self, MediaLinks, MediaState};
use crate::store::browse::{Conversation, ExportSelection, MediaFile};
use crate::store::chain::{ChainHead, StoredRecord};
use crate::store::{CorpId, Store, StoreError};
use crate::wecom::media::JobState;

/// The manifest's format name.
pub const FORMAT: &str = "wwa-export-v1";
/// Records read (and rendered) at a time.
const PAGE: u32 = 2000;

/// Errors of writing or checking an export.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The archive.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A file of the export.
    #[error("{path}: {source}")]
    File {
        /// Which file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// The output folder is not empty.
    #[error("{0} exists and is not empty: exports go into a new folder")]
    NotEmpty(PathBuf),
    /// A record has no link in the chain (stored before the chain existed?).
    #[error("record seq {seq} msgid {msgid} has no link in the hash chain; run `verify`")]
    Unchained {
        /// Its msgid.
        msgid: String,
        /// Its seq.
        seq: u64,
    },
    /// The archive changed while the export was written.
    #[error("the archive changed while exporting ({0}); run the export again")]
    Changed(String),
    /// The manifest cannot be read.
    #[error("manifest.json: {0}")]
    Manifest(String),
}

fn file_err(path: &Path) -> impl FnOnce(std::io::Error) -> ExportError + '_ {
    move |source| ExportError::File { path: path.to_owned(), source }
}

/// One line of `messages.jsonl`: every stored (and hashed) field of a record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportedRecord {
    /// Message id.
    pub msgid: String,
    /// Key version.
    pub publickey_ver: u32,
    /// Sequence number.
    pub seq: u64,
    /// send / recall / switch.
    pub action: String,
    /// Sender.
    pub msgfrom: String,
    /// Recipients (the stored JSON array text).
    pub tolist: Option<String>,
    /// Message type.
    pub msgtype: String,
    /// Time in ms.
    pub msgtime: i64,
    /// Searchable rendering.
    pub text: Option<String>,
    /// sdkfileid column.
    pub sdkfield: Option<String>,
    /// The stored plaintext bytes (the decrypted JSON), base64.
    pub msgdata_base64: Option<String>,
    /// Group id.
    pub roomid: String,
    /// Decrypt outcome.
    pub decrypt_status: String,
    /// SDK code.
    pub decrypt_code: i32,
    /// As received, while undecrypted.
    pub encrypt_random_key: Option<String>,
    /// As received, while undecrypted.
    pub encrypt_chat_msg: Option<String>,
}

impl ExportedRecord {
    fn of(r: &StoredRecord) -> ExportedRecord {
        ExportedRecord {
            msgid: r.msgid.clone(),
            publickey_ver: r.publickey_ver,
            seq: r.seq,
            action: r.action.clone(),
            msgfrom: r.msgfrom.clone(),
            tolist: r.tolist.clone(),
            msgtype: r.msgtype.clone(),
            msgtime: r.msgtime,
            text: r.text.clone(),
            sdkfield: r.sdkfield.clone(),
            msgdata_base64: r.msgdata.as_ref().map(|d| B64.encode(d)),
            roomid: r.roomid.clone(),
            decrypt_status: r.decrypt_status.clone(),
            decrypt_code: r.decrypt_code,
            encrypt_random_key: r.encrypt_random_key.clone(),
            encrypt_chat_msg: r.encrypt_chat_msg.clone(),
        }
    }

    /// The record as stored (row id unknown: 0), to hash it.
    pub fn to_stored(&self) -> Result<StoredRecord, String> {
        let msgdata = match &self.msgdata_base64 {
            Some(b) => Some(B64.decode(b).map_err(|e| format!("msgdata_base64 of {}: {e}", self.msgid))?),
            None => None,
        };
        Ok(StoredRecord {
            id: 0,
            msgid: self.msgid.clone(),
            publickey_ver: self.publickey_ver,
            seq: self.seq,
            action: self.action.clone(),
            msgfrom: self.msgfrom.clone(),
            tolist: self.tolist.clone(),
            msgtype: self.msgtype.clone(),
            msgtime: self.msgtime,
            text: self.text.clone(),
            sdkfield: self.sdkfield.clone(),
            msgdata,
            roomid: self.roomid.clone(),
            decrypt_status: self.decrypt_status.clone(),
            decrypt_code: self.decrypt_code,
            encrypt_random_key: self.encrypt_random_key.clone(),
            encrypt_chat_msg: self.encrypt_chat_msg.clone(),
        })
    }
}

/// A file of the export and its digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Path inside the export folder ('/' separated).
    pub path: String,
    /// Its size.
    pub bytes: u64,
    /// sha256, lowercase hex.
    pub sha256: String,
}

/// The proof of one record: the link that covers its exported state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordProof {
    /// Its msgid.
    pub msgid: String,
    /// Its seq.
    pub seq: u64,
    /// Its record hash (recomputable from `messages.jsonl`).
    pub record_hash: String,
    /// The position of the link with that hash.
    pub pos: u64,
}

/// The chain between the exported records and the head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainProof {
    /// The link hash before the first link given (64 zeros at the genesis).
    pub prev_link_hash: String,
    /// Every link from the first exported record's to the head, in order.
    pub links: Vec<Link>,
    /// The head when the export was written: compare it with an anchor kept
    /// elsewhere (the daily log line, `status` output, `/metrics`).
    pub head_pos: u64,
    /// Its hash.
    pub head: String,
}

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: String,
    /// The corp.
    pub corpid: String,
    /// What was exported.
    pub selection: ExportSelection,
    /// First time exported (ms, inclusive).
    pub from_ms: i64,
    /// End (ms, exclusive).
    pub to_ms: i64,
    /// When the export was written (UTC, RFC 3339).
    pub created_at: String,
    /// Who wrote it (account name or `cli`).
    pub exported_by: String,
    /// Every file but the manifest.
    pub files: Vec<FileEntry>,
    /// One per record of `messages.jsonl`, in the same order.
    pub records: Vec<RecordProof>,
    /// The chain that connects them to the head.
    pub chain: ChainProof,
}

/// What an export holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportSummary {
    /// Records written.
    pub records: u64,
    /// Media files copied.
    pub media_files: u64,
    /// Links in the proof.
    pub links: u64,
    /// The head the proof ends at.
    pub head: ChainHead,
}

/// Media links of the offline page: `media/<path>`.
struct OfflineMedia(HashMap<(String, u32), MediaFile>);

impl MediaLinks for OfflineMedia {
    fn media(&self, msgid: &str, index: u32) -> MediaState {
        match self.0.get(&(msgid.to_owned(), index)) {
            Some(f) if JobState::is_stored_str(&f.state) && !f.path.is_empty() => MediaState::Ready {
                url: format!("media/{}", f.path),
                mp3_url: (!f.mp3_path.is_empty()).then(|| format!("media/{}", f.mp3_path)),
            },
            Some(f) => MediaState::Missing(f.state.clone()),
            None => MediaState::Missing("not in the export".into()),
        }
    }
}

/// A writer that hashes what goes through it.
struct Hashing<W: Write> {
    inner: W,
    digest: digest::Context,
    bytes: u64,
}

impl<W: Write> Hashing<W> {
    fn new(inner: W) -> Self {
        Hashing { inner, digest: digest::Context::new(&digest::SHA256), bytes: 0 }
    }

    fn finish(mut self, path: &str) -> std::io::Result<FileEntry> {
        self.inner.flush()?;
        Ok(FileEntry { path: path.to_owned(), bytes: self.bytes, sha256: hex::encode(self.digest.finish()) })
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.digest.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn sha256_file(path: &Path) -> std::io::Result<(u64, String)> {
    let mut f = std::fs::File::open(path)?;
    let mut ctx = digest::Context::new(&digest::SHA256);
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
        total += n as u64;
    }
    Ok((total, hex::encode(ctx.finish())))
}

/// A relative path that stays inside its root (no `..`, not absolute).
fn inside(rel: &str) -> Option<&Path> {
    let p = Path::new(rel);
    (!rel.is_empty() && p.components().all(|c| matches!(c, std::path::Component::Normal(_)))).then_some(p)
}

fn selection_title(corpid: &CorpId, s: &ExportSelection) -> String {
    match s {
        ExportSelection::Room(r) => format!("{corpid}: group {r}"),
        ExportSelection::User(u) => format!("{corpid}: messages of {u}"),
        ExportSelection::All => format!("{corpid}: all messages"),
    }
}

/// Writes an export of `selection` between `from_ms` and `to_ms` into `out`
/// (created; it must not hold files yet), then checks it with [`verify_export`].
#[allow(clippy::too_many_arguments)]
pub async fn write_export(
    store: &Store,
    msgfile_dir: &Path,
    corpid: &CorpId,
    selection: &ExportSelection,
    from_ms: i64,
    to_ms: i64,
    out: &Path,
    exported_by: &str,
) -> Result<ExportSummary, ExportError> {
    if std::fs::read_dir(out).is_ok_and(|mut d| d.next().is_some()) {
        return Err(ExportError::NotEmpty(out.to_owned()));
    }
    std::fs::create_dir_all(out.join("media")).map_err(file_err(out))?;
    let jsonl_path = out.join("messages.jsonl");
    let html_path = out.join("index.html");
    let mut jsonl = Hashing::new(std::io::BufWriter::new(
        std::fs::File::create(&jsonl_path).map_err(file_err(&jsonl_path))?,
    ));
    let mut page = Hashing::new(std::io::BufWriter::new(
        std::fs::File::create(&html_path).map_err(file_err(&html_path))?,
    ));
    let title = selection_title(corpid, selection);
    let head_html = html! {
        (DOCTYPE)
        html lang="en" { head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · wework-archive export" }
            style { (PreEscaped(render::STYLE)) }
        } }
    };
    // The document is streamed: head, then one block per run of records of one conversation.
    let mut html_buf = head_html.into_string();
    html_buf.truncate(html_buf.len().saturating_sub("</html>".len()));
    html_buf.push_str(&format!(
        "<body><header class=\"top\"><strong>wework-archive export</strong></header><main><h1>{}</h1>\
         <p class=\"muted\">{} to {} (UTC). Check it offline: <code>wework-archive verify --export .</code> \
         (docs/TAMPER-EVIDENCE.md).</p>",
        maud::html! { (title) }.into_string(),
        render::time_ms(from_ms),
        render::time_ms(to_ms - 1)
    ));
    page.write_all(html_buf.as_bytes()).map_err(file_err(&html_path))?;

    let mut after = 0u64;
    let mut proofs_needed: Vec<(String, u64, String)> = Vec::new();
    let mut files: Vec<FileEntry> = Vec::new();
    let mut copied: HashSet<String> = HashSet::new();
    let mut last_conv: Option<Conversation> = None;
    loop {
        let records = store.export_page(corpid, selection, from_ms, to_ms, after, PAGE).await?;
        let Some(last) = records.last() else { break };
        after = last.id;
        for r in &records {
            let line = serde_json::to_string(&ExportedRecord::of(r))
                .map_err(|e| ExportError::Manifest(e.to_string()))?;
            jsonl
                .write_all(line.as_bytes())
                .and_then(|_| jsonl.write_all(b"\n"))
                .map_err(file_err(&jsonl_path))?;
            proofs_needed.push((r.msgid.clone(), r.seq, r.view().hash()));
        }
        // Media of this page: copy what was downloaded.
        let msgids: Vec<String> = records.iter().map(|r| r.msgid.clone()).collect();
        let media_rows = store.media_files(corpid, &msgids).await?;
        let mut media = HashMap::new();
        for f in media_rows {
            if JobState::is_stored_str(&f.state) {
                for rel in [&f.path, &f.mp3_path] {
                    let Some(p) = inside(rel) else { continue };
                    if !copied.insert(rel.clone()) {
                        continue;
                    }
                    let dest = out.join("media").join(p);
                    if let Some(parent) = dest.parent() {
                        std::fs::create_dir_all(parent).map_err(file_err(parent))?;
                    }
                    let src = msgfile_dir.join(p);
                    std::fs::copy(&src, &dest).map_err(file_err(&src))?;
                    let (bytes, sha256) = sha256_file(&dest).map_err(file_err(&dest))?;
                    files.push(FileEntry { path: format!("media/{rel}"), bytes, sha256 });
                }
            }
            media.insert((f.msgid.clone(), f.item_index), f);
        }
        let media = OfflineMedia(media);
        // Render runs of one conversation under its title.
        let mut start = 0;
        while start < records.len() {
            let conv = Conversation::of(&records[start]);
            let mut end = start + 1;
            while end < records.len() && Conversation::of(&records[end]) == conv {
                end += 1;
            }
            let block = html! {
                @if last_conv.as_ref() != Some(&conv) { h2 { (conv.title()) } }
                (render::conversation(&records[start..end], &media))
            };
            page.write_all(block.into_string().as_bytes()).map_err(file_err(&html_path))?;
            last_conv = Some(conv);
            start = end;
        }
    }
    if proofs_needed.is_empty() {
        page.write_all(b"<p class=\"muted\">No messages in this range.</p>").map_err(file_err(&html_path))?;
    }
    page.write_all(b"</main></body></html>\n").map_err(file_err(&html_path))?;
    files.insert(0, page.finish("index.html").map_err(file_err(&html_path))?);
    files.insert(0, jsonl.finish("messages.jsonl").map_err(file_err(&jsonl_path))?);

    // The proof: each record's latest link, and the chain from the first of them to the head.
    let head = store.chain_head(corpid).await?;
    let msgids: Vec<String> = proofs_needed.iter().map(|(m, _, _)| m.clone()).collect();
    let mut latest: HashMap<String, Link> = HashMap::new();
    for l in store.chain_links_of(corpid, &msgids).await? {
        if l.pos <= head.pos {
            latest.insert(l.msgid.clone(), l);
        }
    }
    let mut records = Vec::with_capacity(proofs_needed.len());
    for (msgid, seq, hash) in proofs_needed {
        let Some(l) = latest.get(&msgid) else { return Err(ExportError::Unchained { msgid, seq }) };
        if l.record_hash != hash {
            return Err(ExportError::Changed(format!("record {msgid} differs from its latest link")));
        }
        records.push(RecordProof { msgid, seq, record_hash: hash, pos: l.pos });
    }
    let first = records.iter().map(|p| p.pos).min().unwrap_or(head.pos + 1);
    let prev_link_hash = if first <= 1 {
        GENESIS.to_owned()
    } else {
        match store.chain_link(corpid, first - 1).await? {
            Some(l) => l.link_hash,
            None => return Err(ExportError::Changed(format!("chain link {} is missing", first - 1))),
        }
    };
    let mut links = Vec::new();
    let mut pos = first.saturating_sub(1);
    while pos < head.pos {
        let chunk = store.chain_links(corpid, pos, 10_000).await?;
        let Some(last) = chunk.last() else { break };
        pos = last.pos;
        links.extend(chunk.into_iter().filter(|l| l.pos <= head.pos));
    }
    let manifest = Manifest {
        format: FORMAT.to_owned(),
        corpid: corpid.to_string(),
        selection: selection.clone(),
        from_ms,
        to_ms,
        created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        exported_by: exported_by.to_owned(),
        files,
        records,
        chain: ChainProof { prev_link_hash, links, head_pos: head.pos, head: head.head.clone() },
    };
    let manifest_path = out.join("manifest.json");
    let text = serde_json::to_vec_pretty(&manifest).map_err(|e| ExportError::Manifest(e.to_string()))?;
    std::fs::write(&manifest_path, text).map_err(file_err(&manifest_path))?;
    let check = verify_export(out)?;
    if let Some(problem) = check.problem {
        return Err(ExportError::Changed(problem));
    }
    Ok(ExportSummary {
        records: manifest.records.len() as u64,
        media_files: manifest.files.len() as u64 - 2,
        links: manifest.chain.links.len() as u64,
        head,
    })
}

/// What [`verify_export`] found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExportCheck {
    /// The corp.
    pub corpid: String,
    /// Records checked.
    pub records: u64,
    /// Files checked.
    pub files: u64,
    /// The head the proof ends at (compare with an anchor kept elsewhere).
    pub head_pos: u64,
    /// Its hash.
    pub head: String,
    /// Positions the proof covers (an anchor inside this range can be checked).
    pub first_pos: u64,
    /// The first problem, if any.
    pub problem: Option<String>,
}

/// Checks an export folder offline: every file against its sha256 (and no file
/// left out), every record of `messages.jsonl` against its proof, the proof's
/// links against each other up to the head. `Err` only when the manifest
/// cannot be read at all.
pub fn verify_export(dir: &Path) -> Result<ExportCheck, ExportError> {
    let manifest_path = dir.join("manifest.json");
    let text = std::fs::read(&manifest_path).map_err(file_err(&manifest_path))?;
    let m: Manifest = serde_json::from_slice(&text).map_err(|e| ExportError::Manifest(e.to_string()))?;
    let mut check = ExportCheck {
        corpid: m.corpid.clone(),
        records: 0,
        files: 0,
        head_pos: m.chain.head_pos,
        head: m.chain.head.clone(),
        first_pos: m.chain.links.first().map_or(m.chain.head_pos, |l| l.pos),
        problem: None,
    };
    check.problem = check_manifest(dir, &m, &mut check.records, &mut check.files).err();
    Ok(check)
}

fn check_manifest(dir: &Path, m: &Manifest, records: &mut u64, files: &mut u64) -> Result<(), String> {
    if m.format != FORMAT {
        return Err(format!("unknown format {:?}", m.format));
    }
    // 1. Files: each listed one has its digest; nothing unlisted besides the manifest.
    let mut listed = HashSet::new();
    for f in &m.files {
        let p = inside(&f.path).ok_or_else(|| format!("file path {:?} leaves the folder", f.path))?;
        let (bytes, sha) = sha256_file(&dir.join(p)).map_err(|e| format!("{}: {e}", f.path))?;
        if bytes != f.bytes || sha != f.sha256 {
            return Err(format!("{} was changed (sha256 {sha}, manifest says {})", f.path, f.sha256));
        }
        listed.insert(dir.join(p));
        *files += 1;
    }
    for name in ["messages.jsonl", "index.html"] {
        if !listed.contains(&dir.join(name)) {
            return Err(format!("{name} is not in the manifest"));
        }
    }
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).map_err(|e| format!("{}: {e}", d.display()))? {
            let p = e.map_err(|e| e.to_string())?.path();
            if p.is_dir() {
                stack.push(p);
            } else if p != dir.join("manifest.json") && !listed.contains(&p) {
                return Err(format!("{} is not in the manifest", p.display()));
            }
        }
    }
    // 2. The links follow each other and end at the head.
    let links = &m.chain.links;
    if let Some(pos) = first_broken(&m.chain.prev_link_hash, links) {
        return Err(format!("chain link {pos} does not follow the one before it"));
    }
    match links.last() {
        Some(l) if l.pos != m.chain.head_pos || l.link_hash != m.chain.head => {
            return Err(format!(
                "the links end at {} {}, not at the head {}",
                l.pos, l.link_hash, m.chain.head_pos
            ));
        }
        None if !m.records.is_empty() => return Err("records without chain links".into()),
        _ => {}
    }
    if links.first().is_some_and(|l| l.pos == 1) && m.chain.prev_link_hash != GENESIS {
        return Err("link 1 must follow the genesis".into());
    }
    let by_pos: HashMap<u64, &Link> = links.iter().map(|l| (l.pos, l)).collect();
    let mut latest: HashMap<&str, u64> = HashMap::new();
    for l in links {
        latest.insert(l.msgid.as_str(), l.pos);
    }
    // 3. Each record hashes to its proof, which is its latest link.
    let jsonl = dir.join("messages.jsonl");
    let file = std::fs::File::open(&jsonl).map_err(|e| format!("messages.jsonl: {e}"))?;
    let mut proofs = m.records.iter();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| format!("messages.jsonl: {e}"))?;
        let rec: ExportedRecord =
            serde_json::from_str(&line).map_err(|e| format!("messages.jsonl line {}: {e}", n + 1))?;
        let proof = proofs.next().ok_or_else(|| format!("messages.jsonl line {} has no proof", n + 1))?;
        let hash = rec.to_stored()?.view().hash();
        if proof.msgid != rec.msgid || proof.seq != rec.seq || proof.record_hash != hash {
            return Err(format!("record seq {} msgid {} (line {}) was altered", rec.seq, rec.msgid, n + 1));
        }
        let link = by_pos
            .get(&proof.pos)
            .ok_or_else(|| format!("record {}: link {} not in the proof", rec.msgid, proof.pos))?;
        if link.msgid != rec.msgid || link.seq != rec.seq || link.record_hash != hash {
            return Err(format!(
                "record seq {} msgid {}: its link {} covers another record",
                rec.seq, rec.msgid, proof.pos
            ));
        }
        if latest.get(rec.msgid.as_str()) != Some(&proof.pos) {
            return Err(format!(
                "record {} was rewritten later in the chain than this export shows",
                rec.msgid
            ));
        }
        *records += 1;
    }
    if proofs.next().is_some() {
        return Err(
            "the manifest proves more records than messages.jsonl holds (a record was deleted)".into()
        );
    }
    Ok(())
}

/// Checks that an export's proof contains a head recorded elsewhere
/// (`POS:HASH`): the link at POS must have that hash. `Ok(Some(problem))` when not.
pub fn check_anchor(dir: &Path, anchor: &str) -> Result<Option<String>, ExportError> {
    let (pos, hash) = anchor
        .split_once(':')
        .and_then(|(p, h)| Some((p.trim().parse::<u64>().ok()?, h.trim().to_ascii_lowercase())))
        .ok_or_else(|| ExportError::Manifest(format!("anchor {anchor:?} is not POS:HASH")))?;
    let manifest_path = dir.join("manifest.json");
    let text = std::fs::read(&manifest_path).map_err(file_err(&manifest_path))?;
    let m: Manifest = serde_json::from_slice(&text).map_err(|e| ExportError::Manifest(e.to_string()))?;
    let first = m.chain.links.first().map_or(m.chain.head_pos + 1, |l| l.pos);
    let found = if pos + 1 == first {
        Some(m.chain.prev_link_hash.clone())
    } else {
        m.chain.links.iter().find(|l| l.pos == pos).map(|l| l.link_hash.clone())
    };
    Ok(match found {
        Some(h) if h == hash => None,
        Some(h) => Some(format!("the chain has {h} at position {pos}, not the anchor {hash}")),
        None => Some(format!(
            "the anchor's position {pos} is outside the export's chain ({}..{})",
            first.saturating_sub(1),
            m.chain.head_pos
        )),
    })
}
