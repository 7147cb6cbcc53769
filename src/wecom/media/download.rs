//! The two halves of a download: [`Fetcher`], a thread that owns one SDK instance
//! and runs the GetMediaData chunk loop, and [`PartFile`], the `.part` file the
//! chunks are appended to.
//!
//! The fetcher runs ahead of the writer by at most [`PIPELINE_DEPTH`] chunks (a
//! bounded channel), so the next chunk is on the wire while the previous one is
//! written, hashed and fsynced, and memory stays at a few chunks whatever the file
//! size. GetMediaData blocks for up to twice the timeout (PROTOCOL.md §4), so it
//! never runs on an async worker thread.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;

use tokio::sync::mpsc;

use super::verify::{Expected, Mismatch, Verifier};
use crate::wecom::sdk::{Library, MediaChunk, NetOptions, Sdk, SdkError};

/// Chunks the fetcher may have fetched but the writer not yet taken: on a crash at
/// most these (and the one in hand) are fetched again.
pub const PIPELINE_DEPTH: usize = 2;

type ChunkResult = Result<MediaChunk, SdkError>;

struct FetchRequest {
    sdkfileid: String,
    index: String,
    net: NetOptions,
    out: mpsc::Sender<ChunkResult>,
}

/// Bytes per GetMediaData chunk: the SDK's own page (PROTOCOL.md §5.3); range
/// requests use the same aligned pages.
pub const CHUNK: u64 = 512 * 1024;

/// One range of a file for a range stream: pages at `from`, `from + CHUNK`, …
/// up to `until`, of a ciphertext `total` bytes long.
struct RangeRequest {
    sdkfileid: String,
    from: u64,
    until: u64,
    total: u64,
    net: NetOptions,
    stream: usize,
    out: mpsc::Sender<RangeEvent>,
    /// Set by the writer: stop after the call in progress (its page still comes).
    stop: Arc<AtomicBool>,
}

enum Request {
    Follow(FetchRequest),
    Range(RangeRequest),
}

/// What a range stream reports, in order: its pages, then at most one error, then
/// [`RangeEventKind::End`] (always, even if the fetch thread panics).
#[derive(Debug)]
pub struct RangeEvent {
    /// Which stream (as given to [`Fetcher::fetch_range`]).
    pub stream: usize,
    /// The file offset the page was asked for.
    pub offset: u64,
    /// The page, the error, or the end.
    pub kind: RangeEventKind,
}

/// See [`RangeEvent`].
#[derive(Debug)]
pub enum RangeEventKind {
    /// A page at `offset`.
    Chunk(MediaChunk),
    /// The call at `offset` failed; the stream stops.
    Failed(SdkError),
    /// The stream is idle again.
    End,
}

/// The SDK index of the page at `offset` of a ciphertext `total` bytes long: a
/// 16-aligned start and a length that is a multiple of 16 (PROTOCOL.md §4: the
/// SDK refuses anything else with 10000).
pub fn page_index(offset: u64, total: u64) -> String {
    let end = (offset + CHUNK).min(total) - 1;
    format!("Range:bytes={offset}-{end}")
}

/// Sends [`RangeEventKind::End`] when dropped, so the writer learns that a stream
/// is idle even when its thread unwinds.
struct EndGuard<'a> {
    out: &'a mpsc::Sender<RangeEvent>,
    stream: usize,
    offset: u64,
}

impl Drop for EndGuard<'_> {
    fn drop(&mut self) {
        let _ = self.out.blocking_send(RangeEvent {
            stream: self.stream,
            offset: self.offset,
            kind: RangeEventKind::End,
        });
    }
}

fn fetch_range(sdk: &Sdk, req: &RangeRequest) {
    let mut guard = EndGuard { out: &req.out, stream: req.stream, offset: req.from };
    let mut offset = req.from;
    while offset < req.until && offset < req.total {
        if req.out.is_closed() || req.stop.load(Ordering::Relaxed) {
            return;
        }
        guard.offset = offset;
        let event = |kind| RangeEvent { stream: req.stream, offset, kind };
        match sdk.get_media_chunk(&page_index(offset, req.total), &req.sdkfileid, &req.net) {
            Ok(chunk) => {
                let finished = chunk.is_finish;
                if req.out.blocking_send(event(RangeEventKind::Chunk(chunk))).is_err() || finished {
                    return;
                }
                offset += CHUNK;
            }
            Err(e) => {
                let _ = req.out.blocking_send(event(RangeEventKind::Failed(e)));
                return;
            }
        }
    }
}

/// A thread owning one SDK instance (`Sdk` is `Send`, not `Sync`: one thread uses
/// it for its whole life) that streams the chunks of one file at a time.
pub struct Fetcher {
    requests: Option<std_mpsc::Sender<Request>>,
    thread: Option<JoinHandle<()>>,
}

impl Fetcher {
    /// Creates the corp's SDK instance (`NewSdk` + `Init`, no I/O) and its thread.
    pub fn spawn(
        lib: &'static Library,
        corpid: &str,
        secret: &str,
        name: String,
    ) -> Result<Fetcher, SdkError> {
        let sdk = lib.new_sdk(corpid, secret)?;
        let (tx, rx) = std_mpsc::channel::<Request>();
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || fetch_loop(sdk, rx))
            .expect("spawning a media fetch thread");
        Ok(Fetcher { requests: Some(tx), thread: Some(thread) })
    }

    /// Starts streaming `sdkfileid` from `index` ("" = the first chunk). The stream
    /// ends after the finishing chunk or the first error; dropping the receiver stops
    /// the fetcher after the call in progress.
    pub fn stream(&self, sdkfileid: &str, index: &str, net: &NetOptions) -> mpsc::Receiver<ChunkResult> {
        let (out, rx) = mpsc::channel(PIPELINE_DEPTH);
        let req =
            FetchRequest { sdkfileid: sdkfileid.to_owned(), index: index.to_owned(), net: net.clone(), out };
        // The thread only ends when `requests` is dropped, so sending cannot fail;
        // if it ever did, the receiver would just see the stream end.
        if let Some(tx) = &self.requests {
            let _ = tx.send(Request::Follow(req));
        }
        rx
    }

    /// Fetches the pages of `[from, until)` of a file whose ciphertext is `total`
    /// bytes long, each at its own aligned index, reporting to `out` as `stream`
    /// (see [`RangeEvent`]). Used by parallel ranges (issue #16): several fetchers,
    /// each with its own SDK instance, on different ranges of one file. Once `stop`
    /// is set the stream ends after the call in progress, its page still sent.
    #[allow(clippy::too_many_arguments)]
    pub fn fetch_range(
        &self,
        sdkfileid: &str,
        from: u64,
        until: u64,
        total: u64,
        net: &NetOptions,
        stream: usize,
        out: mpsc::Sender<RangeEvent>,
        stop: Arc<AtomicBool>,
    ) {
        let req = RangeRequest {
            sdkfileid: sdkfileid.to_owned(),
            from,
            until,
            total,
            net: net.clone(),
            stream,
            out,
            stop,
        };
        if let Some(tx) = &self.requests {
            let _ = tx.send(Request::Range(req));
        }
    }

    /// Stops the thread and waits for it (after its call in progress, if any), so
    /// the SDK instance is destroyed before this returns.
    pub async fn close(mut self) {
        self.requests.take();
        if let Some(t) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}

impl Drop for Fetcher {
    fn drop(&mut self) {
        // Without `close`, the thread still ends on its own once `requests` is gone.
        self.requests.take();
    }
}

fn fetch_loop(sdk: Sdk, requests: std_mpsc::Receiver<Request>) {
    for req in requests {
        let req = match req {
            Request::Follow(req) => req,
            Request::Range(req) => {
                fetch_range(&sdk, &req);
                continue;
            }
        };
        let mut index = req.index;
        loop {
            if req.out.is_closed() {
                break;
            }
            match sdk.get_media_chunk(&index, &req.sdkfileid, &req.net) {
                Ok(chunk) => {
                    let finished = chunk.is_finish;
                    let next = chunk.next_index.clone();
                    if req.out.blocking_send(Ok(chunk)).is_err() || finished {
                        break;
                    }
                    index = next;
                }
                Err(e) => {
                    let _ = req.out.blocking_send(Err(e));
                    break;
                }
            }
        }
    }
    drop(sdk); // DestroySdk, on this thread
}

/// The `.part` file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum PartError {
    /// Another live worker (this process or another) holds its lock.
    #[error("{} is being written by another worker", path.display())]
    Busy {
        /// The file.
        path: PathBuf,
    },
    /// A file-system error.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

/// A download in progress on disk: appended chunk by chunk, hashed as it is
/// written, fsynced before progress is recorded, held under an exclusive lock
/// (`flock`) so two workers can never write the same file even if a claim expires
/// under a stalled one. Dropping it closes the file and keeps it for a resume.
#[derive(Debug)]
pub struct PartFile {
    file: File,
    path: PathBuf,
    verifier: Verifier,
}

/// Re-hash buffer size.
const READ_BUF: usize = 1 << 20;

impl PartFile {
    /// Opens (creating its directory) and locks `path`. When the file holds at least
    /// `keep` bytes — the durable progress — it is cut to exactly `keep` (bytes past
    /// the recorded progress were never acknowledged) and those are hashed again;
    /// otherwise it is emptied and the download starts over. [`PartFile::len`] says
    /// which.
    pub fn open(path: &Path, keep: u64) -> Result<PartFile, PartError> {
        let io_err = |source| PartError::Io { path: path.to_owned(), source };
        let mut file = open_locked(path)?;
        let have = file.metadata().map_err(io_err)?.len();
        let keep = if have >= keep { keep } else { 0 };
        file.set_len(keep).map_err(io_err)?;
        let mut verifier = Verifier::new();
        hash_prefix(&mut file, keep, &mut verifier).map_err(io_err)?;
        file.seek(SeekFrom::Start(keep)).map_err(io_err)?;
        Ok(PartFile { file, path: path.to_owned(), verifier })
    }

    /// Opens and locks `path` for a download by parallel ranges, written in place
    /// ([`PartFile::writer`]). With `keep`, its bytes stay as they are (the ranges
    /// recorded durable are in it); otherwise it is emptied. Nothing is hashed until
    /// [`PartFile::rehash`].
    pub fn open_ranged(path: &Path, keep: bool) -> Result<PartFile, PartError> {
        let io_err = |source| PartError::Io { path: path.to_owned(), source };
        let file = open_locked(path)?;
        if !keep {
            file.set_len(0).map_err(io_err)?;
        }
        Ok(PartFile { file, path: path.to_owned(), verifier: Verifier::new() })
    }

    /// Bytes on disk (not the hashed length: see [`PartFile::len`]).
    pub fn disk_len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    /// A second handle on the same open, locked file, for positioned writes
    /// (`write_all_at`) and `sync_data` from blocking tasks.
    pub fn writer(&self) -> io::Result<File> {
        self.file.try_clone()
    }

    /// Cuts the file to `len` bytes and hashes all of them, in order: the md5 of a
    /// file written by ranges, computed once every range is durable.
    pub fn rehash(&mut self, len: u64) -> io::Result<()> {
        self.file.set_len(len)?;
        self.verifier = Verifier::new();
        hash_prefix(&mut self.file, len, &mut self.verifier)?;
        self.file.seek(SeekFrom::Start(len))?;
        Ok(())
    }

    /// Bytes in the file.
    pub fn len(&self) -> u64 {
        self.verifier.len()
    }

    /// Whether the file is empty.
    pub fn is_empty(&self) -> bool {
        self.verifier.is_empty()
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends bytes (not yet durable: see [`PartFile::sync`]).
    pub fn append(&mut self, data: &[u8]) -> io::Result<()> {
        self.file.write_all(data)?;
        self.verifier.update(data);
        Ok(())
    }

    /// Makes everything appended so far durable (data and length).
    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// Up to `n` bytes from the start (to tell image types apart).
    pub fn head(&self, n: usize) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; n.min(self.len() as usize)];
        self.file.read_exact_at(&mut buf, 0)?;
        Ok(buf)
    }

    /// Empties the file to download it again.
    pub fn restart(&mut self) -> io::Result<()> {
        self.file.set_len(0)?;
        self.file.seek(SeekFrom::Start(0))?;
        self.file.sync_data()?;
        self.verifier = Verifier::new();
        Ok(())
    }

    /// Checks size and md5 against `expected`; returns the md5.
    pub fn verify(&self, expected: &Expected) -> Result<String, Mismatch> {
        self.verifier.clone().check(expected)
    }

    /// Moves the (verified) file to `dest` atomically and durably: fsync the data,
    /// rename, fsync the directory.
    pub fn persist(self, dest: &Path) -> io::Result<()> {
        self.file.sync_all()?;
        std::fs::rename(&self.path, dest)?;
        if let Some(dir) = dest.parent() {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    }

    /// Deletes the file.
    pub fn discard(self) -> io::Result<()> {
        std::fs::remove_file(&self.path)
    }
}

/// Opens (creating its directory) and locks a `.part` file, refusing symlinks,
/// hard links and anything that is not a regular file.
fn open_locked(path: &Path) -> Result<File, PartError> {
    let io_err = |source| PartError::Io { path: path.to_owned(), source };
    if let Some(dir) = path.parent() {
        create_dir_durably(dir).map_err(io_err)?;
        refuse_symlinked_dirs(dir).map_err(io_err)?;
    }
    // A fresh download creates its .part itself (create-new), so nothing
    // planted at that path is ever written through; a resumed one opens the
    // existing file with O_NOFOLLOW (a symlink is refused) and refuses a
    // file with other hard links (one could point anywhere on the machine).
    let created =
        OpenOptions::new().read(true).write(true).create_new(true).custom_flags(libc::O_NOFOLLOW).open(path);
    let file = match created {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map_err(io_err)?,
        Err(e) => return Err(io_err(e)),
    };
    let meta = file.metadata().map_err(io_err)?;
    if !meta.is_file() {
        return Err(io_err(io::Error::new(io::ErrorKind::InvalidInput, "part path is not a regular file")));
    }
    if std::os::unix::fs::MetadataExt::nlink(&meta) != 1 {
        return Err(io_err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "part file has other hard links; refusing to write through it",
        )));
    }
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => return Err(PartError::Busy { path: path.to_owned() }),
        Err(std::fs::TryLockError::Error(e)) => return Err(io_err(e)),
    }
    Ok(file)
}

/// Hashes the first `len` bytes of `file` into `verifier`, streaming.
fn hash_prefix(file: &mut File, len: u64, verifier: &mut Verifier) -> io::Result<()> {
    file.seek(SeekFrom::Start(0))?;
    let mut buf = vec![0u8; READ_BUF.min(len.max(1) as usize)];
    let mut left = len;
    while left > 0 {
        let want = buf.len().min(left as usize);
        let n = file.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "part file shrank"));
        }
        verifier.update(&buf[..n]);
        left -= n as u64;
    }
    Ok(())
}

/// Refuses the corp and month directories (the two levels the layout creates
/// under the media root) when either is a symlink: a link there would send
/// every file of that corp or month outside the root. The root itself may be
/// a link, which is the admin's choice.
fn refuse_symlinked_dirs(dir: &Path) -> io::Result<()> {
    for d in dir.ancestors().take(2) {
        if std::fs::symlink_metadata(d)?.file_type().is_symlink() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is a symlink; media directories must be real directories", d.display()),
            ));
        }
    }
    Ok(())
}

/// `create_dir_all`, fsyncing the parent of each directory it creates so a new
/// directory (and so the files later renamed into it) survives a crash.
fn create_dir_durably(dir: &Path) -> io::Result<()> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        create_dir_durably(parent)?;
    }
    match std::fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(e),
    }
    let parent = dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    File::open(parent)?.sync_all()
}

#[cfg(test)]
mod tests {
    use md5::{Digest, Md5};

    use super::*;

    fn data(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[2]).collect()
    }

    #[test]
    fn resume_cuts_to_the_durable_length_and_rehashes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c/202503/.m.part");
        let all = data(3 * 100_000 + 17);
        let mut p = PartFile::open(&path, 0).unwrap();
        p.append(&all[..200_000]).unwrap();
        p.append(&all[200_000..250_000]).unwrap(); // written but "never recorded"
        p.sync().unwrap();
        drop(p);
        // The database says 200,000 bytes are durable: the extra 50,000 are dropped.
        let mut p = PartFile::open(&path, 200_000).unwrap();
        assert_eq!(p.len(), 200_000);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 200_000);
        p.append(&all[200_000..]).unwrap();
        let md5 = hex::encode(Md5::digest(&all));
        let expected = Expected::new(Some(all.len() as u64), &md5);
        assert_eq!(p.verify(&expected), Ok(md5.clone()));
        assert_eq!(p.head(4).unwrap(), all[..4]);
        let dest = dir.path().join("c/202503/m.bin");
        p.persist(&dest).unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), all);
        assert!(!path.exists());
    }

    #[test]
    fn a_short_part_file_starts_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".x.part");
        std::fs::write(&path, b"abc").unwrap();
        let p = PartFile::open(&path, 10).unwrap();
        assert!(p.is_empty());
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
        drop(p);
        // A missing file too.
        std::fs::remove_file(&path).unwrap();
        assert!(PartFile::open(&path, 5).unwrap().is_empty());
    }

    #[test]
    fn only_one_writer_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".x.part");
        let first = PartFile::open(&path, 0).unwrap();
        assert!(matches!(PartFile::open(&path, 0), Err(PartError::Busy { .. })));
        drop(first);
        PartFile::open(&path, 0).unwrap();
    }

    #[test]
    fn restart_empties_and_verify_reports_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".x.part");
        let mut p = PartFile::open(&path, 0).unwrap();
        p.append(b"corrupted").unwrap();
        let expected = Expected::new(Some(9), &hex::encode(Md5::digest(b"expected!")));
        assert!(matches!(p.verify(&expected), Err(Mismatch::Md5 { .. })));
        p.restart().unwrap();
        p.append(b"expected!").unwrap();
        assert!(p.verify(&expected).is_ok());
        p.discard().unwrap();
        assert!(!path.exists());
    }

    #[test]
    fn a_planted_symlink_or_hard_link_is_never_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"keep me").unwrap();
        let link = dir.path().join(".s.part");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        assert!(PartFile::open(&link, 0).is_err(), "symlink refused");
        let hard = dir.path().join(".h.part");
        std::fs::hard_link(&victim, &hard).unwrap();
        assert!(PartFile::open(&hard, 0).is_err(), "hard link refused");
        assert!(PartFile::open(&hard, 7).is_err(), "also when resuming");
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep me");
    }
}
