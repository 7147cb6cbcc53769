//! Minutes (API.md §5): metadata, the media endpoint (2091003 until the recording is ready,
//! then a pre-signed `download_url` valid one day) and the download itself (no Authorization,
//! `Content-Type` + `Content-Disposition`, `Range`).
//!
//! 2091002 (unknown minute) and 2091005 (not the owner) are the fake's choice of codes.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::auth::{Accept, Caller, check};
use super::docs::serve_blob;
use super::faults::FeishuFaultKind;
use super::server::{ApiError, ApiResult, ok};
use super::state::{App, Shared, now_ms, now_s};
use super::vc::{Meeting, minutes_url};

/// Pre-signed URLs live one day.
const URL_TTL_S: u64 = 86_400;

fn find(inner: &super::state::Inner, token: &str, caller: &Caller) -> Result<Meeting, ApiError> {
    let m = inner
        .vc
        .by_minute(token)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, 2091002, "minute not found"))?;
    if let Caller::User(o) = caller
        && *o != m.owner
    {
        return Err(ApiError::new(StatusCode::FORBIDDEN, 2091005, "permission denied"));
    }
    Ok(m.clone())
}

/// `GET /open-apis/minutes/v1/minutes/:minute_token`.
pub(crate) async fn minute(
    State(app): State<App>,
    headers: HeaderMap,
    Path(token): Path<String>,
) -> ApiResult {
    let mut inner = app.lock();
    let caller = check(&app, &mut inner, &headers, Accept::TenantOrUser)?;
    let m = find(&inner, &token, &caller)?;
    Ok(ok(json!({"minute": {
        "token": m.minute_token, "owner_id": m.owner, "create_time": m.create_ms.to_string(), "title": m.topic,
        "cover": "", "duration": m.duration_ms.to_string(), "url": minutes_url(&app, &m.minute_token),
    }})))
}

fn signature(app: &Shared, token: &str, expires: u64) -> String {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    ctx.update(app.world.url_secret.as_bytes());
    ctx.update(token.as_bytes());
    ctx.update(expires.to_string().as_bytes());
    hex::encode(&ctx.finish().as_ref()[..16])
}

/// `GET /open-apis/minutes/v1/minutes/:minute_token/media`.
pub(crate) async fn media(
    State(app): State<App>,
    headers: HeaderMap,
    Path(token): Path<String>,
) -> ApiResult {
    let mut inner = app.lock();
    let caller = check(&app, &mut inner, &headers, Accept::TenantOrUser)?;
    let m = find(&inner, &token, &caller)?;
    if now_ms() < m.ready_ms {
        return Err(ApiError::bad(2091003, "minutes not finished transcribing"));
    }
    // The `url_expiry` fault: a URL already past its day, signed like any other, so the download
    // refuses it through the ordinary expiry check.
    let expires = if app.config.faults.roll(app.config.seed, FeishuFaultKind::UrlExpiry) {
        now_s().saturating_sub(1)
    } else {
        now_s() + URL_TTL_S
    };
    let url = format!(
        "{}/minutes-media/{token}?expires={expires}&sign={}",
        app.base_url,
        signature(&app, &token, expires)
    );
    Ok(ok(json!({"download_url": url})))
}

/// `GET /minutes-media/:minute_token?expires&sign`: the pre-signed download.
pub(crate) async fn download_media(
    State(app): State<App>,
    headers: HeaderMap,
    Path(token): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let expires: u64 = q.get("expires").and_then(|e| e.parse().ok()).unwrap_or(0);
    let signed = q.get("sign").is_some_and(|s| *s == signature(&app, &token, expires));
    let expired = signed && expires < now_s();
    let meeting = {
        let mut inner = app.lock();
        if expired {
            inner.vc.downloads_expired += 1;
        }
        inner.vc.by_minute(&token).cloned()
    };
    let Some(m) = meeting.filter(|_| signed && !expired) else {
        return ApiError::new(StatusCode::FORBIDDEN, 403, "the download URL is invalid or expired")
            .into_response();
    };
    let resp = serve_blob(m.blob, &headers, &format!("{}.mp4", m.topic));
    let ranged = resp.status() == StatusCode::PARTIAL_CONTENT;
    let cut = resp.status().is_success() && app.config.faults.roll(app.config.seed, FeishuFaultKind::Drop);
    {
        let mut inner = app.lock();
        let vc = &mut inner.vc;
        if ranged {
            vc.downloads_ranged += 1;
            let start = resp
                .headers()
                .get(axum::http::header::CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("bytes ")?.split('-').next()?.parse::<u64>().ok())
                .unwrap_or(0);
            vc.range_starts.push(start);
        } else {
            vc.downloads_full += 1;
        }
        if cut {
            vc.downloads_dropped += 1;
        }
    }
    if cut { cut_half_way(resp) } else { resp }
}

/// The `drop` fault on a download: half of the body, then the connection is cut (the client sees
/// fewer bytes than `Content-Length`).
fn cut_half_way(resp: Response) -> Response {
    use futures_util::StreamExt;
    let len = resp
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let cut = len / 2;
    let (parts, body) = resp.into_parts();
    let stream = body.into_data_stream().scan(0u64, move |sent, chunk| {
        let out = match chunk {
            Ok(_) if *sent >= cut => Some(Err(std::io::Error::other("connection dropped (fault)"))),
            Ok(mut b) => {
                if *sent + b.len() as u64 > cut {
                    b.truncate((cut - *sent) as usize);
                }
                *sent += b.len() as u64;
                Some(Ok(b))
            }
            Err(e) => Some(Err(std::io::Error::other(e))),
        };
        std::future::ready(out)
    });
    Response::from_parts(parts, axum::body::Body::from_stream(stream))
}
