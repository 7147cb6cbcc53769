//! A minimal pure-Rust client speaking the SDK's wire protocol through the simulator's proxy:
//! `CONNECT`, TLS (accepting any certificate, as the SDK's `SSL_VERIFYPEER=0` does), one
//! HTTP/1.0 request per connection. It exists to test the simulator without the native
//! library, and mirrors what the SDK does (PROTOCOL.md §5), including the media chunk loop.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::api::encrypt_sign;
use crate::crypto::{aes128_ecb_decrypt_in_place, pkcs7_unpad};
use crate::front::API_HOST;
use crate::media::CHUNK;
use crate::proto::MsgSdkFileId;

/// A raw reply.
#[derive(Debug, Clone)]
pub struct RawResponse {
    /// HTTP status.
    pub status: u16,
    /// Header fields as sent.
    pub headers: Vec<(String, String)>,
    /// Body bytes received (possibly fewer than announced).
    pub body: Vec<u8>,
    /// Whether the whole announced body arrived and the connection closed cleanly.
    pub complete: bool,
}

impl RawResponse {
    /// A header value by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> anyhow::Result<serde_json::Value> {
        serde_json::from_slice(&self.body).context("reply is not JSON")
    }
}

/// One decrypted media chunk and the range to ask next.
#[derive(Debug, Clone)]
pub struct Chunk {
    /// Plaintext bytes of this chunk.
    pub data: Vec<u8>,
    /// `Some((start, end))` of the next range, `None` when the file is complete.
    pub next: Option<(u64, u64)>,
}

/// Outcome of one API call that the SDK would map to a return code.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// Connection, TLS, non-2xx or truncated reply: the SDK's 10001.
    #[error("network error: {0}")]
    Network(String),
    /// A non-zero `errcode` in the reply (media: 301042 → SDK 10009, 301048 → 10010).
    #[error("errcode {0}")]
    Errcode(i64),
    /// The reply could not be decoded (the SDK's 10002/10003/10006).
    #[error("bad reply: {0}")]
    Decode(String),
}

/// The client.
#[derive(Clone)]
pub struct Client {
    proxy: SocketAddr,
    tls: TlsConnector,
    timeout: std::time::Duration,
}

#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

impl Client {
    /// A client going through the simulator listening at `proxy`; each request times out
    /// after 10 s.
    pub fn new(proxy: SocketAddr) -> Self {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("default versions")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
            .with_no_client_auth();
        Client {
            proxy,
            tls: TlsConnector::from(Arc::new(config)),
            timeout: std::time::Duration::from_secs(10),
        }
    }

    /// Sets the per-request timeout (like the SDK's `timeout` argument).
    pub fn with_timeout(mut self, t: std::time::Duration) -> Self {
        self.timeout = t;
        self
    }

    /// Sends one request through `CONNECT` + TLS and reads the reply to the end.
    pub async fn request(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> anyhow::Result<RawResponse> {
        tokio::time::timeout(self.timeout, self.request_inner(method, target, headers, body))
            .await
            .context("request timed out")?
    }

    async fn request_inner(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> anyhow::Result<RawResponse> {
        let mut tcp = TcpStream::connect(self.proxy).await?;
        tcp.write_all(format!("CONNECT {API_HOST}:443 HTTP/1.1\r\nHost: {API_HOST}:443\r\n\r\n").as_bytes())
            .await?;
        let head = crate::http::read_head(&mut tcp).await?;
        if !head.starts_with(b"HTTP/1.1 200") {
            bail!("proxy refused: {}", String::from_utf8_lossy(&head));
        }
        let name = ServerName::try_from(API_HOST).expect("valid name");
        let mut tls = self.tls.connect(name, tcp).await?;
        let mut req = format!("{method} {target} HTTP/1.0\r\nHost: {API_HOST}\r\nAccept: */*\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}:{v}\r\n"));
        }
        req.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        tls.write_all(req.as_bytes()).await?;
        tls.write_all(body).await?;
        tls.flush().await?;
        let mut raw = Vec::new();
        let clean = tls.read_to_end(&mut raw).await.is_ok();
        let end = raw.windows(4).position(|w| w == b"\r\n\r\n").context("no reply head")?;
        let head = std::str::from_utf8(&raw[..end]).context("reply head not UTF-8")?;
        let mut lines = head.split("\r\n");
        let status: u16 = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .context("bad status line")?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        let body = raw[end + 4..].to_vec();
        let announced = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse::<usize>().ok());
        let complete = clean && announced.is_none_or(|n| n == body.len());
        Ok(RawResponse { status, headers, body, complete })
    }

    /// `GET /cgi-bin/gettoken`; returns the access token.
    pub async fn gettoken(&self, corpid: &str, secret: &str) -> anyhow::Result<String> {
        let r = self
            .request("GET", &format!("/cgi-bin/gettoken?corpid={corpid}&corpsecret={secret}"), &[], b"")
            .await?;
        let j = r.json()?;
        match j["access_token"].as_str() {
            Some(t) if !t.is_empty() => Ok(t.to_string()),
            _ => bail!("gettoken failed: {j}"),
        }
    }

    /// `POST /cgi-bin/message/getchatdata` exactly as the SDK sends it; returns the raw reply
    /// (the SDK hands the body over verbatim).
    pub async fn get_chat_data(&self, token: &str, seq: u64, limit: u32) -> anyhow::Result<RawResponse> {
        let body = format!(
            r#"{{"seq":{seq},"limit":{limit},"version":3,"encrypt_sign":"{}"}}"#,
            encrypt_sign(token)
        );
        self.request(
            "POST",
            &format!("/cgi-bin/message/getchatdata?access_token={token}"),
            &[("Content-Type", "application/x-www-form-urlencoded")],
            body.as_bytes(),
        )
        .await
    }

    /// One GetMediaData step: requests `range` (`(0, 524287)` first) and decrypts the chunk.
    pub async fn get_media_chunk(
        &self,
        token: &str,
        sdkfileid: &str,
        range: (u64, u64),
    ) -> Result<Chunk, CallError> {
        let raw = B64.decode(sdkfileid).map_err(|e| CallError::Decode(format!("sdkfileid: {e}")))?;
        let id = MsgSdkFileId::decode(&raw).map_err(|e| CallError::Decode(format!("sdkfileid: {e}")))?;
        let key: [u8; 16] = hex::decode(id.aeskey.get(..32).unwrap_or_default())
            .ok()
            .and_then(|k| k.try_into().ok())
            .ok_or_else(|| CallError::Decode("aeskey".into()))?;
        let body = serde_json::json!({"fileid": id.fileid, "authkey": id.authkey, "version": 3}).to_string();
        let range_hdr = format!("bytes={}-{}", range.0, range.1);
        let r = self
            .request(
                "POST",
                &format!("/cgi-bin/message/getchatmediadata?access_token={token}"),
                &[("Content-Type", "application/x-www-form-urlencoded"), ("Range", &range_hdr)],
                body.as_bytes(),
            )
            .await
            .map_err(|e| CallError::Network(format!("{e:#}")))?;
        if !(200..300).contains(&r.status) || !r.complete {
            return Err(CallError::Network(format!("status {}, complete {}", r.status, r.complete)));
        }
        let j = r.json().map_err(|e| CallError::Decode(e.to_string()))?;
        let code = j["errcode"].as_i64().unwrap_or(0);
        if code != 0 {
            return Err(CallError::Errcode(code));
        }
        let mut data = B64
            .decode(j["content"].as_str().unwrap_or_default())
            .map_err(|e| CallError::Decode(format!("content: {e}")))?;
        aes128_ecb_decrypt_in_place(&key, &mut data).map_err(|e| CallError::Decode(e.to_string()))?;
        // Case-sensitive, like the SDK.
        let cr = r
            .headers
            .iter()
            .find(|(k, _)| k == "CONTENT-RANGE")
            .and_then(|(_, v)| v.strip_prefix("BYTES "))
            .and_then(|v| {
                let (ab, total) = v.split_once('/')?;
                let (_, b) = ab.split_once('-')?;
                Some((b.parse::<u64>().ok()?, total.parse::<u64>().ok()?))
            });
        match cr {
            Some((b, total)) if b + 1 < total => {
                Ok(Chunk { data, next: Some((b + 1, (b + CHUNK).min(total - 1))) })
            }
            _ => {
                let n = pkcs7_unpad(&data).map_err(|e| CallError::Decode(e.to_string()))?.len();
                data.truncate(n);
                Ok(Chunk { data, next: None })
            }
        }
    }

    /// The whole file, chunk by chunk.
    pub async fn download(&self, token: &str, sdkfileid: &str) -> Result<Vec<u8>, CallError> {
        let mut out = Vec::new();
        let mut range = (0, CHUNK - 1);
        loop {
            let c = self.get_media_chunk(token, sdkfileid, range).await?;
            out.extend_from_slice(&c.data);
            match c.next {
                Some(r) => range = r,
                None => return Ok(out),
            }
        }
    }
}
