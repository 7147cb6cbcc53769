//! The safe SDK layer against Tencent's real library.

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use wework_archive::wecom::sdk::{ErrorCode, NetOptions, Refusal, SdkError};

use crate::common::{rss_kib, run_test_in_child, sdk_lib, vectors};

#[test]
fn decrypts_every_vector_exactly() {
    let lib = sdk_lib();
    let vectors = vectors();
    assert_eq!(vectors.len(), 10);
    for (i, v) in vectors.iter().enumerate() {
        let out =
            lib.decrypt(&v.encrypt_key, &v.encrypt_chat_msg).unwrap_or_else(|e| panic!("vector {i}: {e}"));
        assert_eq!(out, v.plaintext.as_bytes(), "vector {i}");
    }
}

#[test]
fn sdk_codes_for_mismatched_inputs_come_back_typed() {
    let lib = sdk_lib();
    let v = vectors();
    // The key of another message: K_E differs, so the key does not decrypt.
    let e = lib.decrypt(&v[1].encrypt_key, &v[0].encrypt_chat_msg).unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::EncryptKey), "{e}");
    // Empty key.
    let e = lib.decrypt("", &v[0].encrypt_chat_msg).unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::EncryptKey), "{e}");
    // Body truncated by one character: the SDK's own 10006.
    let msg = &v[0].encrypt_chat_msg[..v[0].encrypt_chat_msg.len() - 1];
    let e = lib.decrypt(&v[0].encrypt_key, msg).unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Decrypt), "{e}");
    // NUL inside an argument never reaches C.
    let e = lib.decrypt("a\0b", &v[0].encrypt_chat_msg).unwrap_err();
    assert!(matches!(e, SdkError::Refused { reason: Refusal::InteriorNul { .. }, .. }), "{e}");
}

/// The two inputs that abort the real SDK (PROTOCOL.md §3).
fn abort_inputs() -> [(&'static str, String, String); 2] {
    let v = vectors();
    let v0 = &v[0];
    // Exactly pre_len + 45 characters: nothing is left for erase(s_len, s_len).
    let cut = usize::try_from(v0.params.pre_len + 45).unwrap();
    assert!(2 * v0.params.s_len < cut as i64, "vector 0 must pass the SDK's length checks");
    [
        ("short", v0.encrypt_key.clone(), "0123456789ab".to_owned()),
        ("cut", v0.encrypt_key.clone(), v0.encrypt_chat_msg[..cut].to_owned()),
    ]
}

#[test]
fn abort_inputs_come_back_as_typed_errors() {
    let lib = sdk_lib();
    for (name, key, msg) in abort_inputs() {
        let e = lib.decrypt(&key, &msg).unwrap_err();
        match (name, &e) {
            ("short", SdkError::Refused { reason: Refusal::MessageTooShort { len: 12 }, .. }) => {}
            ("cut", SdkError::Refused { reason: Refusal::KeyInfoDoesNotFit { .. }, .. }) => {}
            _ => panic!("{name}: unexpected {e:?}"),
        }
        assert_eq!(e.raw_code(), 0, "refused before the call");
    }
    // Empty message too.
    let e = lib.decrypt("k", "").unwrap_err();
    assert!(matches!(e, SdkError::Refused { reason: Refusal::MessageTooShort { len: 0 }, .. }));
}

/// Child half of `raw_sdk_really_aborts_on_those_inputs`: calls the raw SDK
/// with an abort input. Ignored unless run by the parent.
#[test]
#[ignore = "run in a child process by raw_sdk_really_aborts_on_those_inputs"]
fn raw_abort_child() {
    let Ok(case) = std::env::var("WW_ABORT_CASE") else { return };
    let (_, key, msg) = abort_inputs().into_iter().find(|(n, ..)| *n == case).unwrap();
    let raw = unsafe { wework_finance_sys::open(sdk_lib().path()) }.unwrap();
    let key = std::ffi::CString::new(key).unwrap();
    let msg = std::ffi::CString::new(msg).unwrap();
    unsafe {
        let slice = raw.NewSlice();
        let rc = raw.DecryptData(key.as_ptr(), msg.as_ptr(), slice);
        println!("raw DecryptData returned {rc}");
        raw.FreeSlice(slice);
    }
}

#[test]
fn raw_sdk_really_aborts_on_those_inputs() {
    // Proves the refusals above guard real crashes, not hypothetical ones.
    for case in ["short", "cut"] {
        let (status, out) = run_test_in_child("sdk::raw_abort_child", &[("WW_ABORT_CASE", case)]);
        assert_eq!(status.signal(), Some(libc::SIGABRT), "{case}: child should abort, got {status:?}\n{out}");
    }
}

#[test]
fn decrypt_from_8_threads_is_correct() {
    let lib = sdk_lib();
    let vectors = std::sync::Arc::new(vectors());
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let vectors = vectors.clone();
            std::thread::spawn(move || {
                let mut ok = 0;
                for i in 0..1250 {
                    let v = &vectors[(t + i) % vectors.len()];
                    let out = lib.decrypt(&v.encrypt_key, &v.encrypt_chat_msg).unwrap();
                    assert_eq!(out, v.plaintext.as_bytes());
                    ok += 1;
                }
                ok
            })
        })
        .collect();
    let total: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(total, 10_000);
}

#[test]
fn get_chat_data_offline_is_a_typed_network_error() {
    let lib = sdk_lib();
    let sdk = lib.new_sdk("ww0123456789abcdef", "secret").unwrap();
    // A refused proxy: the SDK fails at once with 10001, whatever the machine's network.
    let net = NetOptions {
        proxy: "http://127.0.0.1:9".into(),
        passwd: String::new(),
        timeout: Duration::from_secs(2),
    };
    let e = sdk.get_chat_data(0, 10, &net).unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Network), "{e}");
    assert!(e.is_transient());
    // Direct: no network here, so 10001 as well.
    let e = sdk.get_chat_data(0, 1000, &NetOptions::direct(Duration::from_secs(2))).unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Network), "{e}");
}

#[test]
fn limits_outside_1_to_1000_are_refused_by_us_and_by_the_sdk() {
    let lib = sdk_lib();
    let sdk = lib.new_sdk("ww0123456789abcdef", "secret").unwrap();
    let net = NetOptions {
        proxy: "http://127.0.0.1:9".into(),
        passwd: String::new(),
        timeout: Duration::from_secs(1),
    };
    for limit in [0, 1001] {
        let e = sdk.get_chat_data(0, limit, &net).unwrap_err();
        assert!(matches!(e, SdkError::Refused { reason: Refusal::LimitOutOfRange { .. }, .. }), "{e}");
        let e = sdk.get_chat_data_unchecked_limit(0, limit, &net).unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::InvalidParam), "limit {limit}: {e}");
    }
    let e = sdk.get_chat_data(0, 10, &NetOptions { timeout: Duration::ZERO, ..net.clone() }).unwrap_err();
    assert!(matches!(e, SdkError::Refused { reason: Refusal::ZeroTimeout, .. }), "{e}");
}

#[test]
fn media_arguments_are_checked() {
    let lib = sdk_lib();
    let sdk = lib.new_sdk("ww0123456789abcdef", "secret").unwrap();
    let net = NetOptions {
        proxy: "http://127.0.0.1:9".into(),
        passwd: String::new(),
        timeout: Duration::from_secs(1),
    };
    let e = sdk.get_media_chunk("", "", &net).unwrap_err();
    assert!(matches!(e, SdkError::Refused { reason: Refusal::Empty { .. }, .. }), "{e}");
    let e = sdk.get_media_chunk("Range:bytes=100-50", "abc", &net).unwrap_err();
    assert!(matches!(e, SdkError::Refused { reason: Refusal::BadMediaIndex { .. }, .. }), "{e}");
    // Network is tried before the fileid is decoded (PROTOCOL.md §4).
    let e = sdk.get_media_chunk("", "bm90LWEtZmlsZWlk", &net).unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Network), "{e}");
}

#[test]
fn init_refuses_empty_arguments() {
    let lib = sdk_lib();
    assert!(matches!(
        lib.new_sdk("", "s"),
        Err(SdkError::Refused { reason: Refusal::Empty { arg: "corpid" }, .. })
    ));
    assert!(matches!(
        lib.new_sdk("c", ""),
        Err(SdkError::Refused { reason: Refusal::Empty { arg: "secret" }, .. })
    ));
}

/// Child half of `new_destroy_loop_does_not_grow_rss`.
#[test]
#[ignore = "run in a child process by new_destroy_loop_does_not_grow_rss"]
fn rss_child() {
    if std::env::var_os("WW_RSS_CHILD").is_none() {
        return;
    }
    let lib = sdk_lib();
    let cycle = |n: usize| {
        for _ in 0..n {
            drop(lib.new_sdk("ww0123456789abcdef", "secret").unwrap());
        }
    };
    cycle(1000); // warm-up: allocator arenas, one-time SDK state
    let before = rss_kib();
    cycle(1000);
    let after_1k = rss_kib();
    cycle(10_000);
    let after_11k = rss_kib();
    println!("RSS_KIB before={before} after_1000={after_1k} after_11000={after_11k}");
    // A leak of even 24 bytes per handle would add >256 KiB over 11,000 cycles.
    assert!(after_11k <= before + 256, "RSS grew from {before} KiB to {after_11k} KiB");
}

#[test]
fn new_destroy_loop_does_not_grow_rss() {
    // Measured in a child so other tests' allocations do not disturb the numbers.
    let (status, out) = run_test_in_child("sdk::rss_child", &[("WW_RSS_CHILD", "1")]);
    assert!(status.success(), "{out}");
    assert!(out.contains("RSS_KIB"), "{out}");
}

#[test]
fn loading_a_missing_or_wrong_file_says_how_to_get_the_sdk() {
    use wework_archive::wecom::sdk::{Library, LoadError};
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.so");
    let e = Library::load(&missing).unwrap_err();
    assert!(matches!(e, LoadError::NotFound { .. }));
    assert!(e.to_string().contains("scripts/fetch-sdk.sh"), "{e}");
    let html = dir.path().join("libWeWorkFinanceSdk_C.so");
    std::fs::write(&html, "<html>404</html>").unwrap();
    let e = Library::load(&html).unwrap_err();
    assert!(matches!(e, LoadError::WrongFormat { .. }), "{e}");
    assert!(e.to_string().contains("fetch-sdk.sh"), "{e}");
    // An aarch64 ELF header.
    let mut arm = vec![0u8; 64];
    arm[..4].copy_from_slice(b"\x7fELF");
    arm[4] = 2;
    arm[18] = 0xb7;
    std::fs::write(&html, &arm).unwrap();
    let e = Library::load(&html).unwrap_err();
    assert!(e.to_string().contains("aarch64"), "{e}");
}
