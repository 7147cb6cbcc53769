//! Build script for the raw bindings.
//!
//! Normal builds use the checked-in `src/bindings.rs`, so a clone builds without
//! libclang and without the SDK's `.so` (the library is loaded at run time).
//! With the `buildtime-bindgen` feature the bindings are generated from
//! `../lib/WeWorkFinanceSdk_C.h` into `$OUT_DIR/bindings.rs`;
//! `scripts/regen-bindings.sh` copies that over the checked-in file, and
//! `scripts/regen-bindings.sh --check` fails when the two differ.

fn main() {
    println!("cargo:rerun-if-changed=../lib/WeWorkFinanceSdk_C.h");
    println!("cargo:rerun-if-changed=build.rs");
    #[cfg(feature = "buildtime-bindgen")]
    generate();
}

#[cfg(feature = "buildtime-bindgen")]
fn generate() {
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("bindings.rs");
    bindgen::Builder::default()
        .header("../lib/WeWorkFinanceSdk_C.h")
        // A libloading-backed struct: nothing links against the .so at build time.
        .dynamic_library_name("WeWorkFinanceSdk")
        // Every symbol is resolved when the library is opened, so a wrong or
        // truncated .so fails at load time with its path, not at first call.
        .dynamic_link_require_all(true)
        .allowlist_function(
            "NewSdk|Init|GetChatData|DecryptData|GetMediaData|DestroySdk|NewSlice|FreeSlice|\
             GetContentFromSlice|GetSliceLen|NewMediaData|FreeMediaData|GetOutIndexBuf|GetData|\
             GetIndexLen|GetDataLen|IsMediaDataFinish",
        )
        .allowlist_type("Slice_t|MediaData_t|WeWorkFinanceSdk_t")
        .wrap_unsafe_ops(true)
        .layout_tests(true)
        .generate()
        .expect("bindgen failed on lib/WeWorkFinanceSdk_C.h")
        .write_to_file(&out)
        .expect("writing bindings");
}
