//! Loading the SDK: once per process, from a configurable path, with clear errors.

use std::ffi::CString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use wework_finance_sys::WeWorkFinanceSdk;

use super::error::{Op, Refusal, SdkError};
use super::owners::Slice;
use super::precheck;
use super::session::Sdk;

/// How to get the SDK, appended to every load error.
const HOW_TO_GET: &str = "get it with `scripts/fetch-sdk.sh` (it downloads the PyPI wheel \
pywecomarchive==0.1.0 and verifies md5 f2db3dd1372c516db6290afbd1b5c698), or point \
--sdk-lib / WEWORK_SDK_LIB at your copy of libWeWorkFinanceSdk_C.so";

/// Why the SDK could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// No file at the path.
    #[error("the WeCom Finance SDK was not found at {path}: {HOW_TO_GET}")]
    NotFound {
        /// The path tried.
        path: PathBuf,
    },
    /// The file is not a Linux x86-64 shared object.
    #[error(
        "{path} is not a Linux x86-64 ELF shared library ({what}); this build needs the Linux x86-64 SDK: {HOW_TO_GET}"
    )]
    WrongFormat {
        /// The path tried.
        path: PathBuf,
        /// What it is instead.
        what: String,
    },
    /// dlopen or symbol resolution failed.
    #[error("could not load the WeCom Finance SDK from {path}: {source}; {HOW_TO_GET}")]
    Dlopen {
        /// The path tried.
        path: PathBuf,
        /// The loader's error.
        source: libloading::Error,
    },
    /// The process already loaded the SDK from another path.
    #[error("the SDK is already loaded from {loaded}; a process loads it once (asked for {asked})")]
    AlreadyLoaded {
        /// Where it was loaded from.
        loaded: PathBuf,
        /// The other path asked for.
        asked: PathBuf,
    },
    /// The file could not be read.
    #[error("could not read {path}: {source}")]
    Io {
        /// The path tried.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// The loaded SDK: a table of function pointers that lives for the whole process.
///
/// Loaded at most once per process ([`Library::load`]): glibc can never unload
/// this `.so` (its static libstdc++ has `STB_GNU_UNIQUE` symbols), and loading
/// it twice would only hand back the same mapping.
pub struct Library {
    raw: WeWorkFinanceSdk,
    path: PathBuf,
}

static LOADED: OnceLock<Library> = OnceLock::new();
static LOADING: Mutex<()> = Mutex::new(());

impl Library {
    /// Loads the SDK from `path`, or returns the already loaded one when the
    /// path names the same file.
    pub fn load(path: &Path) -> Result<&'static Library, LoadError> {
        let _guard = LOADING.lock().unwrap_or_else(|e| e.into_inner());
        let canonical = std::fs::canonicalize(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => LoadError::NotFound { path: path.to_owned() },
            _ => LoadError::Io { path: path.to_owned(), source: e },
        })?;
        check_elf_x86_64(&canonical)?;
        if let Some(lib) = LOADED.get() {
            return if lib.path == canonical {
                Ok(lib)
            } else {
                Err(LoadError::AlreadyLoaded { loaded: lib.path.clone(), asked: canonical })
            };
        }
        // SAFETY: the file is an x86-64 ELF; loading runs the SDK's static
        // initialisers, which only set up its own globals. Its ABI is pinned by
        // lib/WeWorkFinanceSdk_C.h and the md5 check in scripts/fetch-sdk.sh.
        let raw = unsafe { wework_finance_sys::open(&canonical) }
            .map_err(|source| LoadError::Dlopen { path: canonical.clone(), source })?;
        Ok(LOADED.get_or_init(|| Library { raw, path: canonical }))
    }

    /// Where the library was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn raw(&self) -> &WeWorkFinanceSdk {
        &self.raw
    }

    /// Creates an SDK handle for one corp (`NewSdk` + `Init`).
    pub fn new_sdk(&'static self, corpid: &str, secret: &str) -> Result<Sdk, SdkError> {
        Sdk::new(self, corpid, secret)
    }

    /// `DecryptData`: turns `encrypt_chat_msg` into the message plaintext, given
    /// the `encrypt_key` the app obtained by RSA-decrypting `encrypt_random_key`.
    ///
    /// Inputs that would abort the process are refused first ([`precheck`]).
    /// Thread-safe: the SDK keeps no state for this call (tested from 8 threads).
    pub fn decrypt(&'static self, encrypt_key: &str, encrypt_chat_msg: &str) -> Result<Vec<u8>, SdkError> {
        let refuse = |reason| SdkError::Refused { op: Op::DecryptData, reason };
        precheck::decrypt_inputs(encrypt_key, encrypt_chat_msg).map_err(refuse)?;
        let key =
            CString::new(encrypt_key).map_err(|_| refuse(Refusal::InteriorNul { arg: "encrypt_key" }))?;
        let msg = CString::new(encrypt_chat_msg)
            .map_err(|_| refuse(Refusal::InteriorNul { arg: "encrypt_chat_msg" }))?;
        let slice = Slice::new(self, Op::DecryptData)?;
        // SAFETY: both strings are NUL-terminated and outlive the call; the
        // slice is fresh (a reused one would leak, PROTOCOL.md §2 step 7); the
        // abort inputs were refused above.
        let rc = unsafe { self.raw.DecryptData(key.as_ptr(), msg.as_ptr(), slice.raw()) };
        SdkError::check(Op::DecryptData, rc)?;
        Ok(slice.as_bytes().to_vec())
    }
}

impl std::fmt::Debug for Library {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Library").field("path", &self.path).finish_non_exhaustive()
    }
}

/// Checks the ELF header so a wrong download (an ARM build, a macOS dylib, an
/// HTML error page) gets a clear message rather than a cryptic dlerror.
fn check_elf_x86_64(path: &Path) -> Result<(), LoadError> {
    let mut head = [0u8; 20];
    let n = std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .map_err(|source| LoadError::Io { path: path.to_owned(), source })?;
    let wrong = |what: &str| Err(LoadError::WrongFormat { path: path.to_owned(), what: what.to_owned() });
    if n < 20 || &head[..4] != b"\x7fELF" {
        return wrong("not an ELF file");
    }
    if head[4] != 2 {
        return wrong("32-bit ELF");
    }
    let machine = u16::from_le_bytes([head[18], head[19]]);
    match machine {
        0x3e => Ok(()),
        0xb7 => wrong("ELF for aarch64 (the ARM build)"),
        other => wrong(&format!("ELF for machine type {other:#x}")),
    }
}
