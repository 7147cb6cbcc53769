//! The download of one recording (issue 13, item 4): streamed into a `.part`
//! file chunk by chunk (constant memory whatever the size), hashed as it is
//! written, fsynced and recorded every [`SYNC_EVERY`] bytes so a restart
//! resumes with `Range: bytes=N-` from the last durable byte, and checked
//! against the size the server announced before the caller renames it.

use std::future::Future;
use std::path::Path;

use aws_lc_rs::digest::{Context, SHA256};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_RANGE, RANGE};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use crate::store::StoreError;

/// Bytes between fsync + durable progress records.
pub const SYNC_EVERY: u64 = 8 << 20;

/// Why a download stopped.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The pre-signed URL is refused (expired or invalid): fetch a new one.
    #[error("the download URL was refused (HTTP {0}): expired")]
    Expired(u16),
    /// Another HTTP status.
    #[error("download answered HTTP {0}")]
    Http(u16),
    /// The connection failed or was cut.
    #[error("download interrupted: {0}")]
    Transport(#[source] reqwest::Error),
    /// The answer does not say how big the file is, or says it inconsistently.
    #[error("download answer unusable: {0}")]
    Malformed(String),
    /// More or fewer bytes than announced.
    #[error("download size mismatch: announced {expected} bytes, got {got}")]
    Size {
        /// Content-Length (or the Content-Range total).
        expected: u64,
        /// What arrived.
        got: u64,
    },
    /// The local file failed.
    #[error("writing the recording: {0}")]
    Io(#[from] std::io::Error),
    /// The job's claim was taken over: stop without touching anything else.
    #[error("claim lost")]
    ClaimLost,
    /// Recording progress failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A complete `.part`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// Its size.
    pub bytes: u64,
    /// Hex SHA-256.
    pub sha256: String,
    /// Where the transfer began (0 = a full download, else a resumed one).
    pub resumed_from: u64,
}

/// `bytes START-END/TOTAL` → (START, TOTAL).
fn content_range(v: &str) -> Option<(u64, u64)> {
    let rest = v.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (start, _) = range.split_once('-')?;
    Some((start.trim().parse().ok()?, total.trim().parse().ok()?))
}

/// Hashes the first `n` bytes of `file` (the durable prefix of a resume).
async fn hash_prefix(file: &mut tokio::fs::File, n: u64, ctx: &mut Context) -> std::io::Result<()> {
    file.seek(std::io::SeekFrom::Start(0)).await?;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = n;
    while left > 0 {
        let want = left.min(buf.len() as u64) as usize;
        file.read_exact(&mut buf[..want]).await?;
        ctx.update(&buf[..want]);
        left -= want as u64;
    }
    Ok(())
}

/// Downloads `url` into `part`, resuming after `durable` bytes when the file
/// holds them. `progress(bytes)` is called after each fsync; it answers false
/// when the claim is gone. `announced(total)` is called once the size is known.
pub async fn fetch<P, PF, A, AF>(
    http: &reqwest::Client,
    url: &str,
    part: &Path,
    durable: u64,
    mut announced: A,
    mut progress: P,
) -> Result<Fetched, FetchError>
where
    P: FnMut(u64) -> PF,
    PF: Future<Output = Result<bool, StoreError>>,
    A: FnMut(u64) -> AF,
    AF: Future<Output = Result<bool, StoreError>>,
{
    if let Some(dir) = part.parent() {
        tokio::fs::create_dir_all(dir).await?;
    }
    let mut file =
        tokio::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(part).await?;
    let on_disk = file.metadata().await?.len();
    let mut start = durable.min(on_disk);
    let mut ctx = Context::new(&SHA256);
    // Bytes past the last durable record may be torn: drop them.
    file.set_len(start).await?;
    if start > 0 {
        hash_prefix(&mut file, start, &mut ctx).await?;
    }
    let mut req = http.get(url);
    if start > 0 {
        req = req.header(RANGE, format!("bytes={start}-"));
    }
    let mut resp = req.send().await.map_err(FetchError::Transport)?;
    let status = resp.status();
    let total = match status {
        StatusCode::PARTIAL_CONTENT if start > 0 => {
            let range =
                resp.headers().get(CONTENT_RANGE).and_then(|v| v.to_str().ok()).and_then(content_range);
            match range {
                Some((s, total)) if s == start && total >= start => total,
                _ => {
                    return Err(FetchError::Malformed(
                        "206 without a Content-Range that starts where asked".into(),
                    ));
                }
            }
        }
        StatusCode::OK => {
            if start > 0 {
                // The server ignored the Range: start over.
                file.set_len(0).await?;
                ctx = Context::new(&SHA256);
                start = 0;
            }
            resp.content_length().ok_or_else(|| FetchError::Malformed("no Content-Length".into()))?
        }
        StatusCode::RANGE_NOT_SATISFIABLE => {
            // What we hold is not a prefix the server knows: start over next time.
            file.set_len(0).await?;
            progress(0).await?;
            return Err(FetchError::Http(416));
        }
        StatusCode::FORBIDDEN | StatusCode::NOT_FOUND | StatusCode::GONE | StatusCode::UNAUTHORIZED => {
            return Err(FetchError::Expired(status.as_u16()));
        }
        s => return Err(FetchError::Http(s.as_u16())),
    };
    if !announced(total).await? {
        return Err(FetchError::ClaimLost);
    }
    file.seek(std::io::SeekFrom::Start(start)).await?;
    let mut written = start;
    let mut synced = start;
    let outcome = loop {
        match resp.chunk().await {
            Ok(Some(bytes)) => {
                if written + bytes.len() as u64 > total {
                    break Err(FetchError::Size { expected: total, got: written + bytes.len() as u64 });
                }
                file.write_all(&bytes).await?;
                ctx.update(&bytes);
                written += bytes.len() as u64;
                if written - synced >= SYNC_EVERY {
                    file.sync_data().await?;
                    synced = written;
                    if !progress(written).await? {
                        return Err(FetchError::ClaimLost);
                    }
                }
            }
            Ok(None) => break Ok(()),
            Err(e) => break Err(FetchError::Transport(e)),
        }
    };
    // Keep what arrived durable, so the next attempt resumes after it.
    file.flush().await?;
    file.sync_data().await?;
    if let Err(e) = outcome {
        if let FetchError::Size { .. } = e {
            file.set_len(synced).await?;
            written = synced;
        }
        if written > synced {
            progress(written).await?;
        }
        return Err(e);
    }
    if written != total {
        progress(written).await?;
        return Err(FetchError::Size { expected: total, got: written });
    }
    let sha256 = hex::encode(ctx.finish().as_ref());
    Ok(Fetched { bytes: total, sha256, resumed_from: start })
}

/// Renames the finished `.part` into place and makes the rename durable.
pub async fn place(part: &Path, dest: &Path) -> std::io::Result<()> {
    tokio::fs::rename(part, dest).await?;
    if let Some(dir) = dest.parent() {
        let dir = dir.to_owned();
        tokio::task::spawn_blocking(move || std::fs::File::open(dir)?.sync_all())
            .await
            .map_err(std::io::Error::other)??;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges() {
        assert_eq!(content_range("bytes 100-199/1000"), Some((100, 1000)));
        assert_eq!(content_range("bytes */1000"), None);
        assert_eq!(content_range("items 1-2/3"), None);
    }
}
