//! The fake Feishu platform against Feishu's own Python SDK: `wework-archive sim feishu` runs as
//! a child exactly as FAKE.md starts it, and `tests/py/fake_feishu_lark.py` drives it with
//! lark-oapi (tokens, OAuth v2, encrypted pushes into its EventDispatcherHandler, recordings,
//! minutes, drive, exports, wiki, IM cards, ws.Client).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common;

/// Kills the fake when the test ends, however it ends.
struct Fake(Child);

impl Drop for Fake {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_fake(manifest: &Path, seed: u64) -> Fake {
    let child = Command::new(common::binary())
        .args(["sim", "feishu", "--listen", "127.0.0.1:0", "--seed", &seed.to_string(), "--manifest"])
        .arg(manifest)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start wework-archive sim feishu");
    let fake = Fake(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !manifest.exists() {
        assert!(Instant::now() < deadline, "sim feishu wrote no manifest within 20 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    fake
}

#[test]
fn lark_oapi_works_against_the_fake() {
    let python = common::repo().join(".venv/bin/python");
    assert!(python.exists(), "no test venv at {}: run bash scripts/services.sh python", python.display());
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("feishu.json");
    let _fake = start_fake(&manifest, 11);
    let out = Command::new(&python)
        .arg(common::repo().join("tests/py/fake_feishu_lark.py"))
        .arg(&manifest)
        .output()
        .expect("run the lark-oapi checks");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "lark-oapi checks failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("all lark-oapi checks passed"), "{stdout}");
}

#[test]
fn manifest_is_deterministic_under_the_seed() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (dir.path().join("a.json"), dir.path().join("b.json"), dir.path().join("c.json"));
    let read =
        |p: &Path| -> serde_json::Value { serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap() };
    let (_fa, _fb, _fc) = (start_fake(&a, 5), start_fake(&b, 5), start_fake(&c, 6));
    let (a, b, c) = (read(&a), read(&b), read(&c));
    for key in ["app_id", "app_secret", "encrypt_key", "verification_token", "users"] {
        assert_eq!(a[key], b[key], "{key} under the same seed");
        assert_ne!(a[key], c[key], "{key} under another seed");
    }
    assert_ne!(a["base_url"], b["base_url"], "each fake has its own port");
    assert!(a["base_url"].as_str().unwrap().starts_with("http://127.0.0.1:"));
}
