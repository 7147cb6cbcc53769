//! Voice AMR → MP3 with ffmpeg, next to the original (which is kept).
//!
//! ffmpeg runs as a child process (tokio::process, never through a shell) with a
//! time limit; it writes to a hidden temporary name that is renamed into place, so
//! a half-written MP3 is never visible. Whether ffmpeg is installed is checked once
//! per process; without it this is said once in the log and each voice file's
//! `transcode` column records `unavailable`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;
use tokio::sync::OnceCell;

/// The `transcode` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TranscodeState {
    /// The MP3 is in place.
    Done,
    /// ffmpeg failed or timed out on this file.
    Failed,
    /// No usable ffmpeg.
    Unavailable,
}

impl TranscodeState {
    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            TranscodeState::Done => "done",
            TranscodeState::Failed => "failed",
            TranscodeState::Unavailable => "unavailable",
        }
    }
}

/// Why one transcode failed.
#[derive(Debug, thiserror::Error)]
pub enum TranscodeError {
    /// ffmpeg could not be started.
    #[error("starting {}: {source}", ffmpeg.display())]
    Spawn {
        /// The binary.
        ffmpeg: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// It ran too long and was killed.
    #[error("ffmpeg took longer than {0:?} and was killed")]
    Timeout(Duration),
    /// It exited with an error.
    #[error("ffmpeg failed ({status}): {stderr}")]
    Failed {
        /// Exit status.
        status: std::process::ExitStatus,
        /// The end of its error output.
        stderr: String,
    },
    /// Moving the result into place failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Runs ffmpeg.
#[derive(Debug)]
pub struct Transcoder {
    ffmpeg: PathBuf,
    timeout: Duration,
    available: OnceCell<bool>,
}

/// A path as an argument that can never be read as an option.
fn arg_path(p: &Path) -> PathBuf {
    if p.is_absolute() { p.to_owned() } else { Path::new(".").join(p) }
}

impl Transcoder {
    /// ffmpeg at `ffmpeg` (a path, or a name looked up in PATH), each run limited to `timeout`.
    pub fn new(ffmpeg: PathBuf, timeout: Duration) -> Transcoder {
        Transcoder { ffmpeg, timeout, available: OnceCell::new() }
    }

    /// Whether ffmpeg runs here (`ffmpeg -version`), checked once; logs once when not.
    pub async fn available(&self) -> bool {
        *self
            .available
            .get_or_init(|| async {
                let probe = Command::new(&self.ffmpeg)
                    .arg("-version")
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .kill_on_drop(true)
                    .status();
                match tokio::time::timeout(Duration::from_secs(10), probe).await {
                    Ok(Ok(s)) if s.success() => true,
                    outcome => {
                        let why = match outcome {
                            Ok(Ok(s)) => format!("it exited with {s}"),
                            Ok(Err(e)) => e.to_string(),
                            Err(_) => "it did not answer within 10 s".to_owned(),
                        };
                        tracing::warn!(
                            ffmpeg = %self.ffmpeg.display(),
                            "ffmpeg is not usable ({why}): voice messages are kept as AMR only, without MP3 \
                             (install ffmpeg, e.g. `bash scripts/services.sh ffmpeg`, or set --ffmpeg / FFMPEG)"
                        );
                        false
                    }
                }
            })
            .await
    }

    /// Transcodes `input` (AMR) to `output` (MP3).
    pub async fn to_mp3(&self, input: &Path, output: &Path) -> Result<(), TranscodeError> {
        let name = output.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp = output.with_file_name(format!(".{name}.tmp"));
        let child = Command::new(&self.ffmpeg)
            // The input is a file the platform sent: ffmpeg is told it is AMR
            // (no probing into HLS playlists, concat lists or other formats that
            // open further URLs) and may open local files only (issue #9).
            .args(["-nostdin", "-hide_banner", "-loglevel", "error", "-y"])
            .args(["-protocol_whitelist", "file", "-f", "amr", "-i"])
            .arg(arg_path(input))
            .args(["-vn", "-f", "mp3"])
            .arg(arg_path(&tmp))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| TranscodeError::Spawn { ffmpeg: self.ffmpeg.clone(), source })?;
        let out = match tokio::time::timeout(self.timeout, child.wait_with_output()).await {
            Ok(Ok(out)) => out,
            Ok(Err(source)) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(TranscodeError::Io { path: tmp, source });
            }
            Err(_) => {
                // The child was dropped with the future: kill_on_drop ends it.
                let _ = std::fs::remove_file(&tmp);
                return Err(TranscodeError::Timeout(self.timeout));
            }
        };
        if !out.status.success() {
            let _ = std::fs::remove_file(&tmp);
            let text = String::from_utf8_lossy(&out.stderr);
            let tail: String = text.chars().rev().take(300).collect::<Vec<_>>().into_iter().rev().collect();
            return Err(TranscodeError::Failed { status: out.status, stderr: tail.trim().to_owned() });
        }
        let moved =
            std::fs::File::open(&tmp).and_then(|f| f.sync_all()).and_then(|()| std::fs::rename(&tmp, output));
        moved.map_err(|source| TranscodeError::Io { path: output.to_owned(), source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A valid AMR-NB file: the magic, then 12.2 kbit/s frames (header 0x3C + 31 bytes).
    fn amr(frames: usize) -> Vec<u8> {
        let mut v = b"#!AMR\n".to_vec();
        for i in 0..frames {
            v.push(0x3C);
            v.extend((0..31).map(|j| ((i * 31 + j) * 7919 % 251) as u8));
        }
        v
    }

    #[tokio::test]
    async fn transcodes_amr_with_the_installed_ffmpeg() {
        // scripts/services.sh installs ffmpeg; the test environment must have it.
        let t = Transcoder::new("ffmpeg".into(), Duration::from_secs(60));
        assert!(t.available().await, "ffmpeg is not installed (bash scripts/services.sh ffmpeg)");
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("v.amr");
        std::fs::write(&input, amr(150)).unwrap();
        let output = dir.path().join("v.mp3");
        t.to_mp3(&input, &output).await.unwrap();
        let mp3 = std::fs::read(&output).unwrap();
        // An MP3 starts with an ID3 tag or a frame sync.
        assert!(mp3.starts_with(b"ID3") || (mp3[0] == 0xFF && mp3[1] & 0xE0 == 0xE0), "{:?}", &mp3[..4]);
        assert!(std::fs::read(&input).unwrap().starts_with(b"#!AMR\n"), "the original is kept");
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left.len(), 2, "no temporary file left: {left:?}");
    }

    #[tokio::test]
    async fn garbage_fails_cleanly_and_missing_ffmpeg_is_unavailable() {
        let t = Transcoder::new("ffmpeg".into(), Duration::from_secs(60));
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("bad.amr");
        std::fs::write(&input, b"not audio at all").unwrap();
        let e = t.to_mp3(&input, &dir.path().join("bad.mp3")).await.unwrap_err();
        assert!(matches!(e, TranscodeError::Failed { .. }), "{e}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "nothing but the input");

        let none = Transcoder::new(dir.path().join("no-such-ffmpeg"), Duration::from_secs(5));
        assert!(!none.available().await);
        assert!(matches!(
            none.to_mp3(&input, &dir.path().join("x.mp3")).await,
            Err(TranscodeError::Spawn { .. })
        ));
    }
}
