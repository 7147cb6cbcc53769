//! Raw bindings to Tencent's WeCom Finance SDK (`libWeWorkFinanceSdk_C.so`).
//!
//! This crate is only the C ABI and one loader, in the style of `libgit2-sys`:
//! the bindgen output (a [`WeWorkFinanceSdk`] struct of function pointers backed
//! by `libloading`), [`open`] that dlopens the library the way it must be
//! opened, and the table of documented return codes ([`ErrorCode`]). Ownership,
//! input validation and typed errors live in the safe layer of the
//! `wework-archive` crate (`wecom::sdk`).
//!
//! Nothing links against the SDK at build time, so this crate builds on any
//! machine; the `.so` is needed only when [`open`] is called.

#![allow(non_snake_case, non_camel_case_types, non_upper_case_globals)]

// Generated code: its unsafe fns mirror C prototypes one to one.
#[cfg(not(feature = "buildtime-bindgen"))]
#[allow(clippy::missing_safety_doc, clippy::too_many_arguments)]
mod bindings;
#[cfg(feature = "buildtime-bindgen")]
#[allow(clippy::missing_safety_doc, clippy::too_many_arguments)]
mod bindings {
    include!(concat!(env!("OUT_DIR"), "/bindings.rs"));
}
mod error_code;

pub use bindings::*;
pub use error_code::ErrorCode;

use std::path::Path;

/// `dlopen` flags for the SDK.
///
/// - `RTLD_NOW`: resolve every symbol at load, so a broken file fails here.
/// - `RTLD_LOCAL`: do not publish the SDK's ~17,000 exported symbols (a static
///   OpenSSL 3.0.14, libcurl, libstdc++) to anything loaded later.
/// - `RTLD_DEEPBIND`: the SDK binds to its own OpenSSL/curl/libstdc++ first,
///   even if a system libssl or libstdc++ is in the process
///   (shared/sdk/RUST-NOTES.md §6). The price: a process-wide malloc
///   replacement (LD_PRELOAD jemalloc, unprefixed global allocators) crashes
///   the SDK, so the service never installs one.
pub const DLOPEN_FLAGS: i32 = libc::RTLD_NOW | libc::RTLD_LOCAL | libc::RTLD_DEEPBIND;

/// Opens the SDK at `path` with [`DLOPEN_FLAGS`] and resolves all 17 functions.
///
/// glibc never unloads this library (its static libstdc++ has `STB_GNU_UNIQUE`
/// symbols, which mark it NODELETE), so callers should open it once per process.
///
/// # Safety
/// Loading a shared library runs its initialisers. `path` must be a build of
/// the WeCom Finance SDK whose ABI matches `lib/WeWorkFinanceSdk_C.h`.
pub unsafe fn open(path: &Path) -> Result<WeWorkFinanceSdk, libloading::Error> {
    // SAFETY: forwarded to the caller (see above).
    unsafe {
        let lib = libloading::os::unix::Library::open(Some(path), DLOPEN_FLAGS)?;
        WeWorkFinanceSdk::from_library(lib)
    }
}
