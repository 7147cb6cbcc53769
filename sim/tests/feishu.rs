//! The fake Feishu platform over raw HTTP/1.1: wire details lark-oapi depends on (header case),
//! rate limits with their headers, `Range`, token revocation and push retries.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use wework_archive_sim::feishu::{FeishuConfig, FeishuSim};

/// `(status, raw head, body)` of one request on a fresh connection.
async fn http(
    sim: &FeishuSim,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(sim.local_addr()).await.unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a complete head");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status = head[9..12].parse().unwrap();
    (status, head, raw[split + 4..].to_vec())
}

fn json_of(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap_or(Value::Null)
}

async fn start(config: FeishuConfig) -> FeishuSim {
    FeishuSim::start(TcpListener::bind("127.0.0.1:0").await.unwrap(), config).await.unwrap()
}

async fn tenant_token(sim: &FeishuSim) -> String {
    let m = sim.manifest();
    let body = json!({"app_id": m.app_id, "app_secret": m.app_secret}).to_string();
    let (status, _, b) =
        http(sim, "POST", "/open-apis/auth/v3/tenant_access_token/internal", &[], &body).await;
    assert_eq!(status, 200);
    json_of(&b)["tenant_access_token"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn header_case_range_and_rate_limits() {
    let sim = start(FeishuConfig { seed: 4, ..Default::default() }).await;
    let auth = format!("Bearer {}", tenant_token(&sim).await);
    let (_, _, tree) = http(&sim, "GET", "/_sim/tree", &[], "").await;
    let tree = json_of(&tree);
    let big = tree["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["type"] == "file" && n["size"].as_u64() > Some(2_000_000))
        .unwrap();
    let (token, size) = (big["token"].as_str().unwrap(), big["size"].as_u64().unwrap());
    let path = format!("/open-apis/drive/v1/files/{token}/download");

    let (status, head, body) =
        http(&sim, "GET", &path, &[("Authorization", &auth), ("Range", "bytes=0-99")], "").await;
    assert_eq!(status, 206, "{head}");
    assert_eq!(body.len(), 100);
    assert!(head.contains(&format!("\r\nContent-Range: bytes 0-99/{size}")), "{head}");
    for name in
        ["Content-Type: ", "Content-Disposition: attachment", "X-Tt-Logid: ", "X-Ogw-Ratelimit-Limit: 5"]
    {
        assert!(head.contains(&format!("\r\n{name}")), "{name:?} in exactly this case:\n{head}");
    }
    let (status, head, _) =
        http(&sim, "GET", &path, &[("Authorization", &auth), ("Range", &format!("bytes={size}-"))], "").await;
    assert_eq!(status, 416, "{head}");

    // The download API allows 5 calls a second: a burst of 12 must see 429s with the headers.
    let mut throttled = 0;
    for _ in 0..12 {
        let (status, head, body) =
            http(&sim, "GET", &path, &[("Authorization", &auth), ("Range", "bytes=0-0")], "").await;
        if status == 429 {
            throttled += 1;
            assert_eq!(json_of(&body)["code"], 99991400);
            assert!(head.contains("\r\nX-Ogw-Ratelimit-Reset: "), "{head}");
            assert!(head.contains("\r\nContent-Type: application/json"), "{head}");
        }
    }
    assert!(throttled >= 3, "only {throttled} of 12 calls throttled");
    let (_, _, stats) = http(&sim, "GET", "/_sim/stats", &[], "").await;
    let stats = json_of(&stats);
    let key = "GET /open-apis/drive/v1/files/:file_token/download";
    assert_eq!(stats["calls"][key], 14);
    assert_eq!(stats["throttled"][key], throttled);
    assert_eq!(stats["limits"][key]["per_second"], 5);
    sim.shutdown().await;
}

#[tokio::test]
async fn revoked_tokens_stop_working_and_are_replaced() {
    let sim = start(FeishuConfig { seed: 5, ..Default::default() }).await;
    let t1 = tenant_token(&sim).await;
    let auth = format!("Bearer {t1}");
    let meta = "/open-apis/drive/explorer/v2/root_folder/meta";
    let (status, _, _) = http(&sim, "GET", meta, &[("Authorization", &auth)], "").await;
    assert_eq!(status, 200);
    let (status, _, b) = http(&sim, "POST", "/_sim/tokens/revoke", &[], r#"{"kind":"tenant"}"#).await;
    assert_eq!((status, json_of(&b)), (200, json!({"ok": true})));
    let (status, _, b) = http(&sim, "GET", meta, &[("Authorization", &auth)], "").await;
    assert_eq!((status, json_of(&b)["code"].clone()), (400, json!(99991663)));
    let t2 = tenant_token(&sim).await;
    assert_ne!(t1, t2);
    let (status, _, b) = http(&sim, "GET", meta, &[], "").await;
    assert_eq!((status, json_of(&b)["code"].clone()), (400, json!(99991661)));
    let (status, _, _) = http(&sim, "GET", meta, &[("Authorization", &format!("Bearer {t2}"))], "").await;
    assert_eq!(status, 200);
    sim.shutdown().await;
}

/// A webhook that answers 500 to its first `fail` requests, then 200.
async fn flaky_webhook(fail: usize) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            let mut buf = vec![0u8; 64 * 1024];
            let mut got = Vec::new();
            while !got.windows(4).any(|w| w == b"\r\n\r\n") || !got.ends_with(b"}") {
                let k = s.read(&mut buf).await.unwrap_or(0);
                if k == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..k]);
            }
            let status = if n < fail { "500 Internal Server Error" } else { "200 OK" };
            let _ = s
                .write_all(
                    format!("HTTP/1.1 {status}\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}")
                        .as_bytes(),
                )
                .await;
        }
    });
    (url, seen)
}

#[tokio::test]
async fn failed_pushes_are_retried_with_the_same_event_id() {
    let (url, seen) = flaky_webhook(2).await;
    let config = FeishuConfig {
        seed: 6,
        event_url: Some(url.clone()),
        retry_delays: vec![Duration::from_millis(200), Duration::from_millis(200)],
        ..Default::default()
    };
    let sim = start(config).await;
    // The start-up url_verification is the first request (answered 500, only logged).
    for _ in 0..100 {
        if seen.load(Ordering::SeqCst) >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let owner = sim.manifest().users[0].open_id.clone();
    let body = json!({"owner_open_id": owner, "ready_after_s": 60, "bytes": 1000}).to_string();
    let (status, _, b) = http(&sim, "POST", "/_sim/meetings", &[], &body).await;
    assert_eq!(status, 200);
    let event_id = json_of(&b)["event_id"].as_str().unwrap().to_string();
    let mut attempts = Vec::new();
    for _ in 0..100 {
        let (_, _, d) = http(&sim, "GET", "/_sim/deliveries", &[], "").await;
        attempts = json_of(&d)["attempts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["event_id"] == json!(event_id))
            .cloned()
            .collect();
        if attempts.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    assert_eq!((attempts[0]["attempt"].clone(), attempts[0]["status"].clone()), (json!(0), json!(500)));
    assert_eq!((attempts[1]["attempt"].clone(), attempts[1]["status"].clone()), (json!(1), json!(200)));
    assert!(
        attempts
            .iter()
            .all(|a| a["target"] == json!(url) && a["event_type"] == "vc.meeting.all_meeting_ended_v1")
    );
    sim.shutdown().await;
}
