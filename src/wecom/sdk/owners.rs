//! RAII owners of the SDK's buffers: one type per pointer, freed exactly once.

use super::error::{Op, SdkError};
use super::library::Library;
use wework_finance_sys::{MediaData_t, Slice_t};

/// Copies `len` bytes from an SDK buffer. Binary-safe: never treats it as a C string.
///
/// # Safety
/// `ptr` must be NULL or valid for `len` bytes.
unsafe fn copy_out<'a>(ptr: *const std::os::raw::c_char, len: i32) -> &'a [u8] {
    match usize::try_from(len) {
        Ok(len) if len > 0 && !ptr.is_null() => {
            // SAFETY: guaranteed by the caller.
            unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len) }
        }
        _ => &[],
    }
}

/// Owns a `Slice_t*` from `NewSlice`; `FreeSlice` on drop.
pub(crate) struct Slice {
    raw: *mut Slice_t,
    lib: &'static Library,
}

impl Slice {
    pub(crate) fn new(lib: &'static Library, op: Op) -> Result<Slice, SdkError> {
        // SAFETY: NewSlice has no preconditions.
        let raw = unsafe { lib.raw().NewSlice() };
        if raw.is_null() {
            return Err(SdkError::NullHandle { op });
        }
        Ok(Slice { raw, lib })
    }

    pub(crate) fn raw(&self) -> *mut Slice_t {
        self.raw
    }

    /// The bytes the SDK wrote, by pointer + length.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        // SAFETY: raw is a live slice owned by self; the SDK keeps buf valid
        // for len bytes until FreeSlice.
        unsafe {
            let lib = self.lib.raw();
            copy_out(lib.GetContentFromSlice(self.raw), lib.GetSliceLen(self.raw))
        }
    }
}

impl Drop for Slice {
    fn drop(&mut self) {
        // SAFETY: raw came from NewSlice and is freed only here.
        unsafe { self.lib.raw().FreeSlice(self.raw) }
    }
}

/// Owns a `MediaData_t*` from `NewMediaData`; `FreeMediaData` on drop.
pub(crate) struct MediaData {
    raw: *mut MediaData_t,
    lib: &'static Library,
}

impl MediaData {
    pub(crate) fn new(lib: &'static Library) -> Result<MediaData, SdkError> {
        // SAFETY: NewMediaData has no preconditions.
        let raw = unsafe { lib.raw().NewMediaData() };
        if raw.is_null() {
            return Err(SdkError::NullHandle { op: Op::GetMediaData });
        }
        Ok(MediaData { raw, lib })
    }

    pub(crate) fn raw(&self) -> *mut MediaData_t {
        self.raw
    }

    /// The chunk's plaintext bytes.
    pub(crate) fn data(&self) -> &[u8] {
        // SAFETY: as for Slice::as_bytes.
        unsafe {
            let lib = self.lib.raw();
            copy_out(lib.GetData(self.raw), lib.GetDataLen(self.raw))
        }
    }

    /// The index buffer to pass for the next chunk.
    pub(crate) fn out_index(&self) -> &[u8] {
        // SAFETY: as for Slice::as_bytes.
        unsafe {
            let lib = self.lib.raw();
            copy_out(lib.GetOutIndexBuf(self.raw), lib.GetIndexLen(self.raw))
        }
    }

    pub(crate) fn is_finish(&self) -> bool {
        // SAFETY: raw is live.
        unsafe { self.lib.raw().IsMediaDataFinish(self.raw) != 0 }
    }
}

impl Drop for MediaData {
    fn drop(&mut self) {
        // SAFETY: raw came from NewMediaData and is freed only here.
        unsafe { self.lib.raw().FreeMediaData(self.raw) }
    }
}
