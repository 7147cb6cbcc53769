//! The network front: one listener that is at once an HTTP `CONNECT` proxy, a SOCKS5 proxy, a
//! TLS endpoint and a plain HTTP endpoint, told apart by the first byte a client sends.
//!
//! The SDK, given `proxy = "http://127.0.0.1:PORT"`, sends `CONNECT qyapi.weixin.qq.com:443`
//! and then TLS through the tunnel; libcurl checks the certificate's *name* but not its chain
//! (PROTOCOL.md §5.4, §5.5), so a self-signed certificate for `qyapi.weixin.qq.com` made at
//! start is enough. With a `socks5…` proxy string it speaks SOCKS5 instead (`socks5h://` sends
//! the host name; plain `socks5://` resolves it locally, which needs DNS).

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::api::{self, Reply};
use crate::http::{self, Request};
use crate::state::Shared;
use crate::stats::Tunnel;

/// The only host the simulator impersonates.
pub const API_HOST: &str = "qyapi.weixin.qq.com";

/// Limit for a client to complete the proxy handshake, TLS and its request: a stuck client
/// must not hold a task forever.
const CLIENT_DEADLINE: Duration = Duration::from_secs(30);

/// The distance model (issue #16): how far away the simulated server is.
#[derive(Debug, Clone, Default)]
pub(crate) struct Link {
    /// Added before every API reply.
    pub latency: Duration,
    /// Reply bodies are paced to this rate; None: unlimited.
    pub bytes_per_sec: Option<f64>,
    /// Media ranges starting at this offset fail (HTTP 500) this many times first.
    pub failing_media_offset: Option<(u64, u64)>,
    /// Media pages starting at this offset come corrupted this many times first.
    pub corrupt_media_offset: Option<(u64, u64)>,
}

/// Counts one getchatmediadata request in flight until dropped (for
/// [`crate::SimStats::media_max_in_flight`]).
struct InFlight<'a>(&'a Shared);

impl<'a> InFlight<'a> {
    fn new(shared: &'a Shared) -> Self {
        shared.with_stats(|s| {
            s.media_in_flight += 1;
            s.media_max_in_flight = s.media_max_in_flight.max(s.media_in_flight);
        });
        InFlight(shared)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.with_stats(|s| s.media_in_flight -= 1);
    }
}

/// Builds the TLS acceptor with a fresh self-signed certificate for [`API_HOST`]; returns the
/// acceptor and the certificate (DER).
pub fn tls_acceptor() -> anyhow::Result<(TlsAcceptor, Vec<u8>)> {
    let ck = rcgen::generate_simple_self_signed(vec![API_HOST.to_string()])?;
    let cert = ck.cert.der().clone();
    let key = rustls_pki_types::PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)?;
    Ok((TlsAcceptor::from(Arc::new(config)), cert.to_vec()))
}

/// Serves one accepted connection until its single request is answered.
pub(crate) async fn serve_connection(
    shared: Arc<Shared>,
    tls: TlsAcceptor,
    link: Arc<Link>,
    mut tcp: TcpStream,
    cancel: CancellationToken,
) {
    shared.with_stats(|s| s.connections += 1);
    let _ = tcp.set_nodelay(true);
    let work = async {
        let mut first = [0u8; 1];
        if tcp.peek(&mut first).await? == 0 {
            return Ok(());
        }
        match first[0] {
            0x05 => {
                if socks5_handshake(&mut tcp).await? {
                    count_tunnel(&shared, Tunnel::Socks5);
                    serve_tls(&shared, &tls, &link, tcp, &cancel).await?;
                }
            }
            0x16 => {
                count_tunnel(&shared, Tunnel::DirectTls);
                serve_tls(&shared, &tls, &link, tcp, &cancel).await?;
            }
            _ => {
                let head = http::read_head(&mut tcp).await?;
                let req = http::parse_head(&head)?;
                if req.method == "CONNECT" {
                    let host = req.target.rsplit_once(':').map_or(req.target.as_str(), |(h, _)| h);
                    if !host.eq_ignore_ascii_case(API_HOST) {
                        tcp.write_all(
                            b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                        )
                        .await?;
                        return Ok(());
                    }
                    tcp.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n").await?;
                    count_tunnel(&shared, Tunnel::Connect);
                    serve_tls(&shared, &tls, &link, tcp, &cancel).await?;
                } else {
                    count_tunnel(&shared, Tunnel::PlainHttp);
                    let req = read_body(&mut tcp, req).await?;
                    answer(&shared, &link, tcp, req, &cancel).await?;
                }
            }
        }
        anyhow::Ok(())
    };
    tokio::select! {
        _ = cancel.cancelled() => {}
        r = tokio::time::timeout(CLIENT_DEADLINE + shared.slow + link.latency, work) => match r {
            Ok(Err(e)) => tracing::debug!(error = %e, "connection ended with an error"),
            Err(_) => tracing::debug!("connection timed out"),
            Ok(Ok(())) => {}
        },
    }
}

fn count_tunnel(shared: &Shared, t: Tunnel) {
    shared.with_stats(|s| *s.tunnels.entry(t).or_insert(0) += 1);
}

/// Reads the body of a request whose head was already parsed.
async fn read_body<S: AsyncRead + Unpin>(s: &mut S, mut req: Request) -> anyhow::Result<Request> {
    let len: usize = req.header("content-length").map_or(Ok(0), str::parse)?;
    anyhow::ensure!(len <= 1024 * 1024, "body too large");
    req.body = vec![0u8; len];
    s.read_exact(&mut req.body).await?;
    // Absolute-form targets (`http://host/path`) become origin-form.
    if let Some(rest) = req.target.strip_prefix("http://").or_else(|| req.target.strip_prefix("https://")) {
        req.target = rest.find('/').map_or("/".to_string(), |i| rest[i..].to_string());
    }
    Ok(req)
}

async fn serve_tls(
    shared: &Arc<Shared>,
    tls: &TlsAcceptor,
    link: &Link,
    tcp: TcpStream,
    cancel: &CancellationToken,
) -> anyhow::Result<()> {
    let mut stream = tls.accept(tcp).await?;
    let req = http::read_request(&mut stream).await?;
    answer(shared, link, stream, req, cancel).await
}

/// Handles the request and writes the reply, applying the link's latency and pacing, and
/// `slow` and `cut`.
async fn answer<S: AsyncWrite + Unpin>(
    shared: &Arc<Shared>,
    link: &Link,
    mut s: S,
    req: Request,
    cancel: &CancellationToken,
) -> anyhow::Result<()> {
    let _in_flight = (req.path() == "/cgi-bin/message/getchatmediadata").then(|| InFlight::new(shared));
    let reply = api::handle(shared, link, req).await;
    let delay = match &reply {
        Reply::Slow(_) => shared.slow + link.latency,
        _ => link.latency,
    };
    if !delay.is_zero() {
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            _ = tokio::time::sleep(delay) => {}
        }
    }
    let pace = link.bytes_per_sec;
    match reply {
        Reply::Normal(r) => {
            r.write_paced(&mut s, None, pace).await?;
            s.shutdown().await?;
        }
        Reply::Slow(r) => {
            // The client has usually given up by now; a failed write is expected.
            if r.write_paced(&mut s, None, pace).await.is_ok() {
                let _ = s.shutdown().await;
            }
        }
        Reply::Cut(r) => {
            // Headers promise the full Content-Length; the connection dies half way, with no
            // TLS close_notify.
            let half = r.body.len() / 2;
            r.write_paced(&mut s, Some(half), pace).await?;
            drop(s);
        }
    }
    Ok(())
}

/// Minimal SOCKS5 server side (RFC 1928/1929): no-auth or any user/password, CONNECT only.
/// Returns false when the client was refused.
async fn socks5_handshake(s: &mut TcpStream) -> anyhow::Result<bool> {
    let mut hdr = [0u8; 2];
    s.read_exact(&mut hdr).await?;
    let mut methods = vec![0u8; hdr[1] as usize];
    s.read_exact(&mut methods).await?;
    if methods.contains(&0) {
        s.write_all(&[5, 0]).await?;
    } else if methods.contains(&2) {
        s.write_all(&[5, 2]).await?;
        let mut v = [0u8; 2];
        s.read_exact(&mut v).await?;
        let mut user = vec![0u8; v[1] as usize];
        s.read_exact(&mut user).await?;
        let mut plen = [0u8; 1];
        s.read_exact(&mut plen).await?;
        let mut pass = vec![0u8; plen[0] as usize];
        s.read_exact(&mut pass).await?;
        s.write_all(&[1, 0]).await?;
    } else {
        s.write_all(&[5, 0xFF]).await?;
        return Ok(false);
    }
    let mut req = [0u8; 4];
    s.read_exact(&mut req).await?;
    let host = match req[3] {
        1 => {
            let mut a = [0u8; 4];
            s.read_exact(&mut a).await?;
            None
        }
        3 => {
            let mut n = [0u8; 1];
            s.read_exact(&mut n).await?;
            let mut name = vec![0u8; n[0] as usize];
            s.read_exact(&mut name).await?;
            Some(String::from_utf8_lossy(&name).into_owned())
        }
        4 => {
            let mut a = [0u8; 16];
            s.read_exact(&mut a).await?;
            None
        }
        _ => anyhow::bail!("bad SOCKS5 address type"),
    };
    let mut port = [0u8; 2];
    s.read_exact(&mut port).await?;
    // Address given as an IP (local resolution): it cannot be checked, accept it.
    let refused = req[1] != 1 || host.is_some_and(|h| !h.eq_ignore_ascii_case(API_HOST));
    let code = if req[1] != 1 {
        7
    } else if refused {
        2
    } else {
        0
    };
    s.write_all(&[5, code, 0, 1, 0, 0, 0, 0, 0, 0]).await?;
    Ok(!refused)
}
