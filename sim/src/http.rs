//! Just enough HTTP/1.x for the SDK: one request per connection (libcurl is set to HTTP/1.0,
//! PROTOCOL.md §5.4), a `Content-Length` body, and a `Connection: close` reply.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest request head accepted.
const MAX_HEAD: usize = 16 * 1024;
/// Largest request body accepted (the SDK's bodies are under 1 KiB).
const MAX_BODY: usize = 1024 * 1024;

/// A request could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The socket failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The peer closed before a complete request.
    #[error("connection closed mid-request")]
    Eof,
    /// The head or body is malformed or too large.
    #[error("malformed request: {0}")]
    Malformed(&'static str),
}

/// A parsed request.
#[derive(Debug, Clone)]
pub struct Request {
    /// `GET`, `POST`, `CONNECT`…
    pub method: String,
    /// The request target as sent (origin-form path and query, or `host:port` for CONNECT).
    pub target: String,
    /// Header fields in order, names as sent.
    pub headers: Vec<(String, String)>,
    /// The body (`Content-Length` bytes).
    pub body: Vec<u8>,
}

impl Request {
    /// A header value by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The path without the query.
    pub fn path(&self) -> &str {
        self.target.split_once('?').map_or(&self.target, |(p, _)| p)
    }

    /// A query parameter, percent-decoded.
    pub fn query(&self, name: &str) -> Option<String> {
        let (_, q) = self.target.split_once('?')?;
        q.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k) == name).then(|| percent_decode(v))
        })
    }
}

/// Decodes `%XX` escapes and `+` (form encoding); invalid escapes are kept literally.
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads the head (up to the blank line) byte by byte, so nothing after it is consumed: a
/// CONNECT's tunnel bytes must stay in the socket for the TLS layer.
pub async fn read_head<S: AsyncRead + Unpin>(s: &mut S) -> Result<Vec<u8>, HttpError> {
    let mut head = Vec::with_capacity(256);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte).await? == 0 {
            return Err(HttpError::Eof);
        }
        head.push(byte[0]);
        if head.len() > MAX_HEAD {
            return Err(HttpError::Malformed("head too large"));
        }
    }
    Ok(head)
}

/// Parses a request head.
pub fn parse_head(head: &[u8]) -> Result<Request, HttpError> {
    let text = std::str::from_utf8(head).map_err(|_| HttpError::Malformed("head is not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let mut start = lines.next().unwrap_or_default().split(' ');
    let (Some(method), Some(target), Some(version)) = (start.next(), start.next(), start.next()) else {
        return Err(HttpError::Malformed("request line"));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(HttpError::Malformed("not HTTP/1.x"));
    }
    let mut headers = Vec::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let (k, v) = line.split_once(':').ok_or(HttpError::Malformed("header line"))?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    Ok(Request { method: method.to_string(), target: target.to_string(), headers, body: Vec::new() })
}

/// Reads one complete request: head, then `Content-Length` bytes of body.
pub async fn read_request<S: AsyncRead + Unpin>(s: &mut S) -> Result<Request, HttpError> {
    let head = read_head(s).await?;
    let mut req = parse_head(&head)?;
    if req.header("transfer-encoding").is_some() {
        return Err(HttpError::Malformed("chunked bodies are not supported"));
    }
    let len: usize = match req.header("content-length") {
        Some(v) => v.parse().map_err(|_| HttpError::Malformed("content-length"))?,
        None => 0,
    };
    if len > MAX_BODY {
        return Err(HttpError::Malformed("body too large"));
    }
    req.body = vec![0u8; len];
    s.read_exact(&mut req.body).await.map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => HttpError::Eof,
        _ => HttpError::Io(e),
    })?;
    Ok(req)
}

/// A reply.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Extra header fields (Content-Length and Connection are added when written).
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}

impl Response {
    /// A JSON reply with the headers qyapi sends (`Error-Code`/`Error-Msg` mirror the body).
    pub fn json(status: u16, body: String, errcode: i64, errmsg: &str) -> Self {
        Response {
            status,
            headers: vec![
                ("Server".into(), "nginx".into()),
                ("Content-Type".into(), "application/json; charset=UTF-8".into()),
                ("Error-Code".into(), errcode.to_string()),
                (
                    "Error-Msg".into(),
                    errmsg.chars().filter(|c| c.is_ascii() && !c.is_ascii_control()).collect(),
                ),
            ],
            body: body.into_bytes(),
        }
    }

    /// `{"errcode":…,"errmsg":…}` with HTTP 200, as the API reports errors.
    pub fn errcode(errcode: i64, errmsg: &str) -> Self {
        let body = format!(r#"{{"errcode":{errcode},"errmsg":{}}}"#, serde_json::Value::from(errmsg));
        Self::json(200, body, errcode, errmsg)
    }

    /// A non-2xx reply with an HTML body, like a failing front-end proxy would send.
    pub fn status_page(status: u16) -> Self {
        let r = reason(status);
        Response {
            status,
            headers: vec![("Server".into(), "nginx".into()), ("Content-Type".into(), "text/html".into())],
            body: format!("<html>\r\n<head><title>{status} {r}</title></head>\r\n<body>\r\n<center><h1>{status} {r}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n").into_bytes(),
        }
    }

    /// The status line and headers.
    pub fn head_bytes(&self) -> Vec<u8> {
        let mut h = format!("HTTP/1.1 {} {}\r\n", self.status, reason(self.status));
        for (k, v) in &self.headers {
            h.push_str(&format!("{k}: {v}\r\n"));
        }
        h.push_str(&format!("Content-Length: {}\r\nConnection: close\r\n\r\n", self.body.len()));
        h.into_bytes()
    }

    /// Writes the reply; with `cut_at`, only that many body bytes (the connection is then
    /// dropped by the caller without a clean close).
    pub async fn write_to<S: AsyncWrite + Unpin>(
        &self,
        s: &mut S,
        cut_at: Option<usize>,
    ) -> std::io::Result<()> {
        let mut out = self.head_bytes();
        let n = cut_at.map_or(self.body.len(), |c| c.min(self.body.len()));
        out.extend_from_slice(&self.body[..n]);
        s.write_all(&out).await?;
        s.flush().await
    }

    /// [`Response::write_to`], with the body paced to `bytes_per_sec` when given (a link
    /// of limited bandwidth): written in small pieces, each sent no earlier than the rate
    /// allows, measured from the first body byte.
    pub async fn write_paced<S: AsyncWrite + Unpin>(
        &self,
        s: &mut S,
        cut_at: Option<usize>,
        bytes_per_sec: Option<f64>,
    ) -> std::io::Result<()> {
        let Some(rate) = bytes_per_sec else { return self.write_to(s, cut_at).await };
        /// Bytes per paced write: small enough to pace smoothly, large enough to be cheap.
        const PIECE: usize = 16 * 1024;
        s.write_all(&self.head_bytes()).await?;
        let n = cut_at.map_or(self.body.len(), |c| c.min(self.body.len()));
        let start = tokio::time::Instant::now();
        let mut sent = 0usize;
        for piece in self.body[..n].chunks(PIECE) {
            s.write_all(piece).await?;
            s.flush().await?;
            sent += piece.len();
            tokio::time::sleep_until(start + std::time::Duration::from_secs_f64(sent as f64 / rate)).await;
        }
        s.flush().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_sdk_style_request() {
        let raw = b"POST /cgi-bin/message/getchatdata?access_token=a%2Bb HTTP/1.0\r\nHost: qyapi.weixin.qq.com\r\nAccept: */*\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 5\r\n\r\nhelloEXTRA";
        let mut s = &raw[..];
        let r = read_request(&mut s).await.unwrap();
        assert_eq!(r.method, "POST");
        assert_eq!(r.path(), "/cgi-bin/message/getchatdata");
        assert_eq!(r.query("access_token").as_deref(), Some("a+b"));
        assert_eq!(r.header("content-type"), Some("application/x-www-form-urlencoded"));
        assert_eq!(r.body, b"hello");
        assert_eq!(s, b"EXTRA");
    }

    #[tokio::test]
    async fn rejects_garbage() {
        let mut s = &b"\x16\x03\x01\x00\r\n\r\n"[..];
        assert!(read_request(&mut s).await.is_err());
        let mut s = &b"GET / HTTP/1.0\r\n"[..];
        assert!(matches!(read_request(&mut s).await, Err(HttpError::Eof)));
    }

    #[test]
    fn percent() {
        assert_eq!(percent_decode("a%20b+c%zz%4"), "a b c%zz%4");
    }

    #[tokio::test]
    async fn paced_writes_take_the_time_the_rate_says() {
        let r = Response::json(200, "x".repeat(100_000), 0, "ok");
        let mut out = Vec::new();
        let t = std::time::Instant::now();
        // 1 MB/s: 100 kB of body take 0.1 s at least.
        r.write_paced(&mut out, None, Some(1e6)).await.unwrap();
        assert!(t.elapsed() >= std::time::Duration::from_millis(95), "{:?}", t.elapsed());
        let mut plain = Vec::new();
        r.write_to(&mut plain, None).await.unwrap();
        assert_eq!(out, plain, "pacing changes the timing, never the bytes");
    }

    #[test]
    fn response_head() {
        let r = Response::errcode(40001, "invalid credential");
        let h = String::from_utf8(r.head_bytes()).unwrap();
        assert!(h.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(h.contains("Connection: close\r\n"));
        assert_eq!(r.body, br#"{"errcode":40001,"errmsg":"invalid credential"}"#);
    }
}
