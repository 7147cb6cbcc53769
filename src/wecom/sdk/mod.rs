//! The safe layer over Tencent's WeCom Finance SDK.
//!
//! `wework-finance-sys` gives raw function pointers; this module gives owners:
//!
//! | type | owns | freed by |
//! |---|---|---|
//! | [`Library`] | the dlopened `.so` (once per process, `'static`) | never: glibc cannot unload it |
//! | [`Sdk`] | `WeWorkFinanceSdk_t*` (NewSdk + Init) | `DestroySdk` on drop |
//! | `Slice` | `Slice_t*` (NewSlice) | `FreeSlice` on drop |
//! | `MediaData` | `MediaData_t*` (NewMediaData) | `FreeMediaData` on drop |
//!
//! Buffers are copied out by pointer + length (plaintexts and media are binary
//! and may hold NUL bytes), a fresh `Slice`/`MediaData` is used per call (the SDK
//! leaks a buffer left in a reused slice, PROTOCOL.md §2 step 7), and every input
//! that would make the C++ code throw and abort the process is refused here
//! first ([`precheck`]). Errors are [`SdkError`], which keeps the raw code.

mod error;
mod library;
mod owners;
pub mod precheck;
mod session;

pub use error::{Op, Refusal, SdkError};
pub use library::{Library, LoadError};
pub use session::{MAX_LIMIT, MediaChunk, NetOptions, Sdk};
pub use wework_finance_sys::ErrorCode;
