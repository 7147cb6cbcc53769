//! [`Sdk`]: one corp's SDK handle, and the network calls made through it.

use std::ffi::CString;
use std::time::Duration;

use wework_finance_sys::WeWorkFinanceSdk_t;

use super::error::{Op, Refusal, SdkError};
use super::library::Library;
use super::owners::{MediaData, Slice};

/// The most records one `GetChatData` call may ask for (FORMAT.md §1.4).
pub const MAX_LIMIT: u32 = 1000;

/// How the SDK reaches the server: the proxy (a corp setting; tests point it at
/// the simulator), its credentials and the per-request timeout.
#[derive(Clone, PartialEq, Eq)]
pub struct NetOptions {
    /// `http://host:port` or `socks5://host:port`; empty = direct.
    pub proxy: String,
    /// `user:password` for the proxy; empty = none.
    pub passwd: String,
    /// Per HTTP request; the SDK applies it to connect and to the whole
    /// transfer, so a call that must refresh its token may take twice as long.
    pub timeout: Duration,
}

impl NetOptions {
    /// Direct connection with the given timeout.
    pub fn direct(timeout: Duration) -> NetOptions {
        NetOptions { proxy: String::new(), passwd: String::new(), timeout }
    }
}

impl std::fmt::Debug for NetOptions {
    // The proxy password is a secret: never print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetOptions")
            .field("proxy", &self.proxy)
            .field("passwd", &if self.passwd.is_empty() { "" } else { "<set>" })
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// One media chunk from `GetMediaData`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaChunk {
    /// Plaintext bytes of this chunk (at most 512 KiB).
    pub data: Vec<u8>,
    /// The index to pass for the next chunk (`Range:bytes=a-b`); persist it to resume.
    pub next_index: String,
    /// True on the last chunk.
    pub is_finish: bool,
}

/// Owns one `WeWorkFinanceSdk_t*` (NewSdk + Init); `DestroySdk` on drop.
///
/// `Send` but not `Sync`: a worker thread owns it for its whole life. The SDK
/// (v1.1+) documents concurrent calls and the prototype shared one handle across
/// 8 threads without error (RUST-NOTES.md §5), but its token cache is a plain
/// member, so we keep each handle on one thread at a time and make more
/// handles for more parallelism.
pub struct Sdk {
    raw: *mut WeWorkFinanceSdk_t,
    lib: &'static Library,
}

// SAFETY: the handle is heap state of the SDK with no thread affinity (no
// thread-locals, created and destroyed from any thread in the prototype's
// tests); moving it between threads is sound as long as only one thread uses
// it at a time, which `!Sync` guarantees.
unsafe impl Send for Sdk {}

fn c_arg(op: Op, arg: &'static str, value: &str) -> Result<CString, SdkError> {
    CString::new(value).map_err(|_| SdkError::Refused { op, reason: Refusal::InteriorNul { arg } })
}

fn timeout_secs(op: Op, timeout: Duration) -> Result<i32, SdkError> {
    // The SDK takes whole seconds; 0 would block forever (PROTOCOL.md §4).
    let secs = timeout.as_secs() + u64::from(timeout.subsec_nanos() > 0);
    if secs == 0 {
        return Err(SdkError::Refused { op, reason: Refusal::ZeroTimeout });
    }
    Ok(i32::try_from(secs).unwrap_or(i32::MAX))
}

impl Sdk {
    /// `NewSdk` + `Init(corpid, secret)`. Init does no I/O; a wrong secret
    /// surfaces on the first network call.
    pub fn new(lib: &'static Library, corpid: &str, secret: &str) -> Result<Sdk, SdkError> {
        let refuse = |reason| SdkError::Refused { op: Op::Init, reason };
        if corpid.is_empty() {
            return Err(refuse(Refusal::Empty { arg: "corpid" }));
        }
        if secret.is_empty() {
            return Err(refuse(Refusal::Empty { arg: "secret" }));
        }
        let corpid = c_arg(Op::Init, "corpid", corpid)?;
        let secret = c_arg(Op::Init, "secret", secret)?;
        // SAFETY: NewSdk has no preconditions.
        let raw = unsafe { lib.raw().NewSdk() };
        if raw.is_null() {
            return Err(SdkError::NullHandle { op: Op::Init });
        }
        // Owned from here on, so an Init failure still destroys it.
        let sdk = Sdk { raw, lib };
        // SAFETY: raw is live; the strings outlive the call (Init copies them).
        let rc = unsafe { lib.raw().Init(sdk.raw, corpid.as_ptr(), secret.as_ptr()) };
        SdkError::check(Op::Init, rc)?;
        Ok(sdk)
    }

    /// `GetChatData`: the raw reply body for records with seq > `seq`, at most
    /// `limit` (1..=1000). The SDK copies the HTTP body verbatim (PROTOCOL.md
    /// §5.2): parsing it, and its `errcode`, is the caller's job.
    ///
    /// Blocks for up to about twice `net.timeout`: call it off the async runtime.
    pub fn get_chat_data(&self, seq: u64, limit: u32, net: &NetOptions) -> Result<Vec<u8>, SdkError> {
        if !(1..=MAX_LIMIT).contains(&limit) {
            let reason = Refusal::LimitOutOfRange { limit };
            return Err(SdkError::Refused { op: Op::GetChatData, reason });
        }
        self.get_chat_data_unchecked_limit(seq, limit, net)
    }

    /// `GetChatData` without our range check on `limit`, so tests can show
    /// the SDK's own answer (10000) to the values we refuse.
    #[doc(hidden)]
    pub fn get_chat_data_unchecked_limit(
        &self,
        seq: u64,
        limit: u32,
        net: &NetOptions,
    ) -> Result<Vec<u8>, SdkError> {
        let op = Op::GetChatData;
        let timeout = timeout_secs(op, net.timeout)?;
        let proxy = c_arg(op, "proxy", &net.proxy)?;
        let passwd = c_arg(op, "passwd", &net.passwd)?;
        let slice = Slice::new(self.lib, op)?;
        // SAFETY: raw and slice are live and owned; strings outlive the call.
        let rc = unsafe {
            self.lib.raw().GetChatData(
                self.raw,
                seq,
                limit,
                proxy.as_ptr(),
                passwd.as_ptr(),
                timeout,
                slice.raw(),
            )
        };
        SdkError::check(op, rc)?;
        Ok(slice.as_bytes().to_vec())
    }

    /// `GetMediaData`: one chunk (≤ 512 KiB) of the media item `sdkfileid`.
    /// Pass `""` as `index` for the first chunk, then each returned
    /// [`MediaChunk::next_index`] until [`MediaChunk::is_finish`].
    ///
    /// Blocks for up to about twice `net.timeout`: call it off the async runtime.
    pub fn get_media_chunk(
        &self,
        index: &str,
        sdkfileid: &str,
        net: &NetOptions,
    ) -> Result<MediaChunk, SdkError> {
        let op = Op::GetMediaData;
        if sdkfileid.is_empty() {
            return Err(SdkError::Refused { op, reason: Refusal::Empty { arg: "sdkfileid" } });
        }
        if !index.is_empty() && !is_range_index(index) {
            return Err(SdkError::Refused { op, reason: Refusal::BadMediaIndex { index: index.to_owned() } });
        }
        let timeout = timeout_secs(op, net.timeout)?;
        let index_c = c_arg(op, "indexbuf", index)?;
        let fileid = c_arg(op, "sdkfileid", sdkfileid)?;
        let proxy = c_arg(op, "proxy", &net.proxy)?;
        let passwd = c_arg(op, "passwd", &net.passwd)?;
        let media = MediaData::new(self.lib)?;
        // SAFETY: raw and media are live and owned; strings outlive the call;
        // a fresh MediaData per chunk (RUST-NOTES.md §7.3).
        let rc = unsafe {
            self.lib.raw().GetMediaData(
                self.raw,
                index_c.as_ptr(),
                fileid.as_ptr(),
                proxy.as_ptr(),
                passwd.as_ptr(),
                timeout,
                media.raw(),
            )
        };
        SdkError::check(op, rc)?;
        Ok(MediaChunk {
            data: media.data().to_vec(),
            next_index: String::from_utf8_lossy(media.out_index()).into_owned(),
            is_finish: media.is_finish(),
        })
    }
}

/// `Range:bytes=a-b` with a ≤ b: the only index form the SDK produces, and one
/// it accepts (it answers 10000 to `b < a`, PROTOCOL.md §4).
fn is_range_index(index: &str) -> bool {
    let Some(range) = index.strip_prefix("Range:bytes=") else { return false };
    let Some((a, b)) = range.split_once('-') else { return false };
    matches!((a.parse::<u64>(), b.parse::<u64>()), (Ok(a), Ok(b)) if a <= b)
}

impl Drop for Sdk {
    fn drop(&mut self) {
        // SAFETY: raw came from NewSdk and is destroyed only here.
        unsafe { self.lib.raw().DestroySdk(self.raw) }
    }
}

impl std::fmt::Debug for Sdk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sdk").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_index_form() {
        assert!(is_range_index("Range:bytes=0-524287"));
        assert!(is_range_index("Range:bytes=524288-1048575"));
        assert!(!is_range_index("Range:bytes=100-50"));
        assert!(!is_range_index("bytes=0-1"));
        assert!(!is_range_index("Range:bytes=0-"));
        assert!(!is_range_index("Range:bytes=a-b"));
    }

    #[test]
    fn timeouts_round_up_and_refuse_zero() {
        assert_eq!(timeout_secs(Op::GetChatData, Duration::from_millis(1500)), Ok(2));
        assert_eq!(timeout_secs(Op::GetChatData, Duration::from_secs(5)), Ok(5));
        assert!(matches!(
            timeout_secs(Op::GetChatData, Duration::ZERO),
            Err(SdkError::Refused { reason: Refusal::ZeroTimeout, .. })
        ));
    }
}
