//! The listener (hyper HTTP/1 with title-case headers), the route table and the envelope
//! helpers every API area uses.

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::Service as _;

use super::state::App;
use super::{auth, control, drive, export, im, limits, minutes, vc, wiki, ws};

/// `Content-Type` of every JSON answer, as Feishu sends it.
pub(crate) const JSON_UTF8: &str = "application/json; charset=utf-8";

/// Closes the connection a request came on (the `drop` fault): the connection task watches it.
#[derive(Clone)]
pub(crate) struct ConnDrop(pub CancellationToken);

/// A JSON answer with Feishu's content type.
pub(crate) fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut r = Response::new(Body::from(serde_json::to_vec(body).unwrap_or_default()));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON_UTF8));
    r
}

/// `{"code":0,"msg":"success","data":…}`.
pub(crate) fn ok(data: Value) -> Response {
    json_response(StatusCode::OK, &json!({"code": 0, "msg": "success", "data": data}))
}

/// A business error: non-zero `code` with the HTTP status Feishu pairs it with.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub code: i64,
    pub msg: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: i64, msg: impl Into<String>) -> ApiError {
        ApiError { status, code, msg: msg.into() }
    }

    /// 400 with `code`.
    pub fn bad(code: i64, msg: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, msg)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        json_response(self.status, &json!({"code": self.code, "msg": self.msg, "data": {}}))
    }
}

/// What handlers return.
pub(crate) type ApiResult = Result<Response, ApiError>;

/// Every route of the real API, the OAuth pages, the long connection and `/_sim/`.
pub(crate) fn router(app: App) -> Router {
    let api = Router::new()
        .route("/open-apis/auth/v3/tenant_access_token/internal", post(auth::tenant_token))
        .route("/open-apis/auth/v3/app_access_token/internal", post(auth::app_token))
        .route("/open-apis/authen/v1/authorize", get(auth::authorize_page))
        .route("/open-apis/authen/v1/authorize/decide", post(auth::authorize_decide))
        .route("/open-apis/authen/v2/oauth/token", post(auth::oauth_token))
        .route("/open-apis/authen/v1/user_info", get(auth::user_info))
        .route("/open-apis/im/v1/messages", post(im::send))
        .route("/open-apis/im/v1/messages/{message_id}", patch(im::patch_card))
        .route("/open-apis/vc/v1/meetings/{meeting_id}/recording", get(vc::recording))
        .route("/open-apis/minutes/v1/minutes/{minute_token}", get(minutes::minute))
        .route("/open-apis/minutes/v1/minutes/{minute_token}/media", get(minutes::media))
        .route("/open-apis/drive/v1/files", get(drive::list))
        .route("/open-apis/drive/explorer/v2/root_folder/meta", get(drive::root_meta))
        .route("/open-apis/drive/v1/files/{file_token}/download", get(drive::download))
        .route("/open-apis/drive/v1/export_tasks", post(export::create))
        .route("/open-apis/drive/v1/export_tasks/{ticket}", get(export::get))
        .route("/open-apis/drive/v1/export_tasks/file/{file_token}/download", get(export::download))
        .route("/open-apis/wiki/v2/spaces", get(wiki::spaces))
        .route("/open-apis/wiki/v2/spaces/get_node", get(wiki::get_node))
        .route("/open-apis/wiki/v2/spaces/{space_id}", get(wiki::space))
        .route("/open-apis/wiki/v2/spaces/{space_id}/nodes", get(wiki::nodes))
        .route("/callback/ws/endpoint", post(ws::endpoint))
        .route_layer(axum::middleware::from_fn_with_state(app.clone(), limits::layer));
    Router::new()
        .merge(api)
        .route("/minutes-media/{minute_token}", get(minutes::download_media))
        .route("/ws/v2", get(ws::upgrade))
        .merge(control::router())
        .fallback(not_found)
        .with_state(app)
}

async fn not_found() -> Response {
    json_response(StatusCode::NOT_FOUND, &json!({"code": 404, "msg": "404 page not found"}))
}

/// Accepts connections until `cancel`; each is served by hyper with title-case headers and
/// upgrades (the long connection) enabled.
pub(crate) async fn serve(listener: TcpListener, router: Router, cancel: CancellationToken) {
    loop {
        let stream = tokio::select! {
            _ = cancel.cancelled() => return,
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!("fake feishu: accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let drop_conn = CancellationToken::new();
            let marker = ConnDrop(drop_conn.clone());
            let svc = tower::service_fn(move |mut req: Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(marker.clone());
                let mut router = router.clone();
                async move { router.call(req.map(Body::new)).await }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .title_case_headers(true)
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(svc))
                .with_upgrades();
            tokio::select! {
                _ = conn => {}
                _ = drop_conn.cancelled() => {}
                _ = cancel.cancelled() => {}
            }
        });
    }
}

/// Parses the bearer token of `Authorization`.
pub(crate) fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

/// `page_size` clamped to `[1, max]` (`default` when absent); `None` when out of range.
pub(crate) fn page_size(raw: Option<&str>, default: usize, max: usize) -> Result<usize, ApiError> {
    match raw {
        None | Some("") => Ok(default),
        Some(s) => match s.parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => {
                Err(ApiError::bad(99992402, format!("field validation failed: page_size must be 1..={max}")))
            }
        },
    }
}

/// Page tokens are opaque to clients; here they encode an offset.
pub(crate) fn page_offset(raw: Option<&str>) -> Result<usize, ApiError> {
    match raw {
        None | Some("") => Ok(0),
        Some(s) => s
            .strip_prefix("pt")
            .and_then(|n| usize::from_str_radix(n, 36).ok())
            .ok_or_else(|| ApiError::bad(99992402, "field validation failed: invalid page_token")),
    }
}

/// The page token that resumes at `offset`.
pub(crate) fn page_token(offset: usize) -> String {
    let mut n = offset;
    let mut digits = Vec::new();
    loop {
        digits.push(std::char::from_digit((n % 36) as u32, 36).unwrap_or('0'));
        n /= 36;
        if n == 0 {
            break;
        }
    }
    format!("pt{}", digits.iter().rev().collect::<String>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip() {
        for n in [0, 1, 35, 36, 1000] {
            assert_eq!(page_offset(Some(&page_token(n))).unwrap(), n);
        }
        assert!(page_offset(Some("zz")).is_err());
        assert_eq!(page_size(None, 20, 50).unwrap(), 20);
        assert!(page_size(Some("51"), 20, 50).is_err());
    }
}
