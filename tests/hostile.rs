//! The WeCom core against a hostile platform (issue #9): records a broken,
//! compromised or man-in-the-middle server can send.

use std::io::Write as _;
use std::os::unix::process::ExitStatusExt;

use rand::{Rng, RngCore, SeedableRng};
use wework_archive::wecom::sdk::precheck::{self, KeyInfoLengths};
use wework_archive::wecom::sdk::{Refusal, SdkError};
use wework_archive_sim::format;

use crate::common::{run_test_in_child, sdk_lib};

// ---- the guard against the real SDK ------------------------------------------------------

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_tag(out: &mut Vec<u8>, field: u32, wire: u32) {
    put_varint(out, u64::from((field << 3) | wire));
}

/// An int32 as protobuf writes it: negative values sign-extended to 10 bytes.
fn put_int32(out: &mut Vec<u8>, field: u32, v: i32) {
    put_tag(out, field, 0);
    put_varint(out, i64::from(v) as u64);
}

/// An unknown field of a random wire type; groups may nest and may hold
/// fields with the key info's own numbers (which must not count).
fn put_unknown(out: &mut Vec<u8>, rng: &mut impl RngCore, depth: u32) {
    let field = *[5u32, 6, 7, 15, 16, 100, 2047, 1 << 20, 2, 4].get(rng.random_range(0..10)).unwrap();
    // Known numbers with a wrong wire type are skipped as unknown too.
    let wire = match field {
        2 | 4 => [1u32, 2, 3, 5][rng.random_range(0..4)],
        _ => [0u32, 1, 2, 3, 5][rng.random_range(0..5)],
    };
    put_tag(out, field, wire);
    match wire {
        0 => put_varint(out, rng.next_u64() >> rng.random_range(0..64)),
        1 => out.extend(rng.next_u64().to_le_bytes()),
        2 => {
            let n = rng.random_range(0..12);
            put_varint(out, n as u64);
            out.extend((0..n).map(|_| rng.random::<u8>()));
        }
        3 => {
            for _ in 0..rng.random_range(0..3) {
                if depth < 4 && rng.random_bool(0.4) {
                    put_unknown(out, rng, depth + 1);
                } else {
                    put_int32(out, [2, 3, 4][rng.random_range(0..3)], rng.random_range(-5..500));
                }
            }
            put_tag(out, field, 4);
        }
        _ => out.extend(rng.next_u32().to_le_bytes()),
    }
}

/// Lengths near every boundary of the SDK's checks for a message of `len`.
fn interesting(rng: &mut impl RngCore, len: i32) -> i32 {
    match rng.random_range(0..10) {
        0 => rng.random_range(-3..3),
        1 => len / 2 + rng.random_range(-2..3),
        2 => len - 45 + rng.random_range(-3..4),
        3 => (len - 45) / 2 + rng.random_range(-3..4),
        4 => [i32::MIN, -46, -45, i32::MAX, 1 << 30, (1 << 30) + 1, i32::MAX - 45][rng.random_range(0..7)],
        _ => rng.random_range(0..len.max(1)),
    }
}

/// A generated key info: its bytes, and the lengths protobuf must read from
/// them when they were not mutated afterwards.
struct KeyInfoCase {
    bytes: Vec<u8>,
    expected: Option<KeyInfoLengths>,
    has_group: bool,
}

fn key_info_case(rng: &mut impl RngCore, len: i32) -> KeyInfoCase {
    let mut bytes = Vec::new();
    let mut want = KeyInfoLengths::default();
    let k1: Vec<u8> = (0..32).map(|_| rng.random_range(b'a'..=b'z')).collect();
    put_tag(&mut bytes, 1, 2);
    put_varint(&mut bytes, k1.len() as u64);
    bytes.extend(&k1);
    for _ in 0..rng.random_range(3..8) {
        match rng.random_range(0..6) {
            0 => {
                want.pre_len = interesting(rng, len);
                put_int32(&mut bytes, 2, want.pre_len);
            }
            1 => {
                want.end_len = interesting(rng, len);
                put_int32(&mut bytes, 3, want.end_len);
            }
            2 | 3 => {
                want.s_len = interesting(rng, len);
                put_int32(&mut bytes, 4, want.s_len);
            }
            _ => put_unknown(&mut bytes, rng, 0),
        }
    }
    if rng.random_bool(0.3) {
        // The reproduction of issue #9: an empty group after the lengths.
        bytes.extend([0x2b, 0x2c]);
    }
    let has_group = bytes.windows(2).any(|w| w == [0x2b, 0x2c]) || bytes.iter().any(|b| b & 7 == 3);
    let mut expected = Some(want);
    if rng.random_bool(0.35) {
        expected = None;
        match rng.random_range(0..6) {
            0 => bytes.truncate(rng.random_range(0..bytes.len())),
            1 => {
                let at = rng.random_range(0..bytes.len());
                bytes[at] ^= 1 << rng.random_range(0..8);
            }
            2 => {
                let at = rng.random_range(0..=bytes.len());
                bytes.insert(at, rng.random());
            }
            3 => bytes.extend([0x2c]),                   // a stray end group
            4 => bytes.extend([0x2b, 0x34]),             // closed by another field's end tag
            _ => bytes.extend(std::iter::repeat_n(0x2b, 120)), // nested past the recursion limit
        }
    }
    KeyInfoCase { bytes, expected, has_group }
}

/// A message of exactly `len` base64 characters.
fn message(rng: &mut impl RngCore, len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    (0..len).map(|_| ALPHABET[rng.random_range(0..64)] as char).collect()
}

fn seal_for(msg: &str, key_info: &[u8], rng: &mut impl RngCore) -> String {
    let mut k_e = [0u8; 32];
    k_e.copy_from_slice(&msg.as_bytes()[13..45]);
    format::seal_key_bytes(&k_e, key_info, rng)
}

/// The issue's reproduction: `pre_len = 100, s_len = 56` cannot be cut from a
/// 200-character message, and an empty group `0x2b 0x2c` follows.
fn issue_case() -> (String, String) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    let msg = message(&mut rng, 200);
    let mut info = Vec::new();
    put_tag(&mut info, 1, 2);
    put_varint(&mut info, 4);
    info.extend(b"k1k1");
    put_int32(&mut info, 2, 100);
    put_int32(&mut info, 3, 0);
    put_int32(&mut info, 4, 56);
    info.extend([0x2b, 0x2c]);
    (seal_for(&msg, &info, &mut rng), msg)
}

/// Child half of the differential test: feeds every case in `WW_GUARD_CASES`
/// (one `key<TAB>msg` per line) to the raw SDK, announcing each first, so the
/// parent can name the one that aborted. Ignored unless run by the parent.
#[test]
#[ignore = "run in a child process by guard_lets_nothing_through_that_aborts_the_sdk"]
fn guard_child() {
    let Ok(path) = std::env::var("WW_GUARD_CASES") else { return };
    let raw = unsafe { wework_finance_sys::open(sdk_lib().path()) }.unwrap();
    let text = std::fs::read_to_string(path).unwrap();
    let mut codes = std::collections::BTreeMap::<i32, u32>::new();
    let mut out = std::io::stdout().lock();
    for (i, line) in text.lines().enumerate() {
        let (key, msg) = line.split_once('\t').unwrap();
        writeln!(out, "case {i}").unwrap();
        out.flush().unwrap();
        let key = std::ffi::CString::new(key).unwrap();
        let msg = std::ffi::CString::new(msg).unwrap();
        // SAFETY: NUL-terminated inputs, a fresh slice per call; aborting is
        // exactly what this child exists to observe.
        let rc = unsafe {
            let slice = raw.NewSlice();
            let rc = raw.DecryptData(key.as_ptr(), msg.as_ptr(), slice);
            raw.FreeSlice(slice);
            rc
        };
        *codes.entry(rc).or_default() += 1;
    }
    writeln!(out, "codes {codes:?}").unwrap();
    writeln!(out, "all cases returned").unwrap();
}

fn run_child(cases: &[(String, String)]) -> (std::process::ExitStatus, String) {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    for (k, m) in cases {
        writeln!(file, "{k}\t{m}").unwrap();
    }
    file.flush().unwrap();
    run_test_in_child("hostile::guard_child", &[("WW_GUARD_CASES", file.path().to_str().unwrap())])
}

/// Item 1: any key info the guard lets through, over thousands of generated
/// and mutated ones (groups, nested groups, unknown and repeated fields, wrong
/// wire types, truncations, lengths at every boundary), returns from the real
/// SDK; the issue's abort case is refused, and the real SDK does abort on it.
#[test]
fn guard_lets_nothing_through_that_aborts_the_sdk() {
    let lib = sdk_lib();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x9_2026);
    let (mut through, mut refused, mut parsed_groups) = (Vec::new(), 0, 0);
    for i in 0..4000 {
        let len = rng.random_range(45..400);
        let msg = message(&mut rng, len);
        let case = key_info_case(&mut rng, len as i32);
        if let Some(want) = case.expected {
            // Valid protobuf, as written: the guard reads exactly these lengths.
            assert_eq!(precheck::parse_key_info(&case.bytes), Some(want), "case {i}: {:02x?}", case.bytes);
        }
        let key = seal_for(&msg, &case.bytes, &mut rng);
        match precheck::decrypt_inputs(&key, &msg) {
            Ok(()) => {
                if case.has_group && case.expected.is_some() {
                    parsed_groups += 1;
                }
                through.push((key, msg));
            }
            Err(Refusal::KeyInfoDoesNotFit { .. } | Refusal::KeyInfoUnparsable { .. }) => refused += 1,
            Err(other) => panic!("case {i}: unexpected refusal {other}"),
        }
    }
    // The generator reaches both sides of the guard, groups included.
    assert!(through.len() > 1000 && refused > 500, "{} through, {refused} refused", through.len());
    assert!(parsed_groups > 100, "only {parsed_groups} key infos with groups were let through");

    let (status, out) = run_child(&through);
    if !out.contains("all cases returned") {
        let last = out.lines().rev().find_map(|l| l.strip_prefix("case ")).and_then(|n| n.parse::<usize>().ok());
        let case = last.map(|n| &through[n]);
        panic!("the SDK died ({status:?}) on a case the guard let through: {case:?}\n{out}");
    }
    println!("{} let through, {refused} refused; {}", through.len(), out.lines().find(|l| l.starts_with("codes")).unwrap_or(""));

    // The reproduction: refused by the guard (a typed error, never the SDK)…
    let (key, msg) = issue_case();
    let e = lib.decrypt(&key, &msg).unwrap_err();
    assert!(
        matches!(e, SdkError::Refused { reason: Refusal::KeyInfoDoesNotFit { pre_len: 100, s_len: 56, .. }, .. }),
        "{e:?}"
    );
    // …and a real abort when it reaches the SDK, so the test above can fail.
    let (status, out) = run_child(&[(key, msg)]);
    assert_eq!(status.signal(), Some(libc::SIGABRT), "the issue's case should abort the raw SDK\n{out}");
}
