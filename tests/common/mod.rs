//! Shared test setup: the real SDK, test data, child processes.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, ExitStatus};

use wework_archive::wecom::sdk::Library;

/// Root of the repository.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The real SDK, loaded once per test process. `scripts/test.sh` fetches it;
/// a test run without it fails loudly rather than skipping.
pub fn sdk_lib() -> &'static Library {
    let path = std::env::var_os("WEWORK_SDK_LIB")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("lib/libWeWorkFinanceSdk_C.so"));
    Library::load(&path).unwrap_or_else(|e| panic!("{e}"))
}

/// One entry of tests/data/vectors.json (copied from shared/sdk/vectors.json).
#[derive(Debug, serde::Deserialize)]
pub struct Vector {
    pub plaintext: String,
    pub encrypt_key: String,
    pub encrypt_chat_msg: String,
    pub params: VectorParams,
}

#[derive(Debug, serde::Deserialize)]
pub struct VectorParams {
    pub k1: String,
    pub pre_len: i64,
    pub end_len: i64,
    pub s_len: i64,
}

pub fn vectors() -> Vec<Vector> {
    let text = std::fs::read_to_string(repo().join("tests/data/vectors.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Runs one test of this binary alone in a child process, with extra
/// environment, and returns its exit status. Used for what must not share a
/// process: RSS measurements and inputs that abort.
pub fn run_test_in_child(name: &str, env: &[(&str, &str)]) -> (ExitStatus, String) {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .args([name, "--exact", "--include-ignored", "--nocapture", "--test-threads=1"])
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status, text)
}

/// Resident set size of this process in KiB.
pub fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}
