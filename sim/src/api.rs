//! The three endpoints the SDK calls, answered the way qyapi does (PROTOCOL.md §5), with faults.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use crate::fault::FaultKind;
use crate::front::Link;
use crate::http::{Request, Response};
use crate::media::CHUNK;
use crate::seed::{mix, str_hash};
use crate::state::{Shared, TokenError};
use crate::stats::Endpoint;

/// How to deliver a reply.
pub(crate) enum Reply {
    /// Send it.
    Normal(Response),
    /// Send it after the configured delay (fault `slow`).
    Slow(Response),
    /// Send the head and half the body, then drop the connection (fault `cut`).
    Cut(Response),
}

/// The `encrypt_sign` of getchatdata: a BKDR hash (seed 1313) of the access token over signed
/// chars in 64 bits, folded to 32 (PROTOCOL.md §5.2).
pub fn encrypt_sign(token: &str) -> u32 {
    let h = token.bytes().fold(0u64, |h, c| h.wrapping_mul(1313).wrapping_add(c as i8 as i64 as u64));
    ((h & 0xffff_ffff) ^ (h >> 32)) as u32
}

pub(crate) async fn handle(shared: &Arc<Shared>, link: &Link, req: Request) -> Reply {
    let endpoint = match (req.method.as_str(), req.path()) {
        ("GET", "/cgi-bin/gettoken") => Endpoint::GetToken,
        ("POST", "/cgi-bin/message/getchatdata") => Endpoint::GetChatData,
        ("POST", "/cgi-bin/message/getchatmediadata") => Endpoint::GetChatMediaData,
        _ => Endpoint::Other,
    };
    shared.with_stats(|s| *s.requests.entry(endpoint).or_insert(0) += 1);
    tracing::debug!(?endpoint, target = %req.target, "request");
    let reply = match endpoint {
        Endpoint::GetToken => gettoken(shared, &req),
        Endpoint::GetChatData => getchatdata(shared, &req).await,
        Endpoint::GetChatMediaData => getchatmediadata(shared, link, &req).await,
        Endpoint::Other => Reply::Normal(Response::json(
            404,
            r#"{"errcode":-1,"errmsg":"not found"}"#.into(),
            -1,
            "not found",
        )),
    };
    if let Reply::Normal(r) | Reply::Slow(r) | Reply::Cut(r) = &reply
        && let Some(code) = errcode_of(r)
    {
        shared.with_stats(|s| *s.errcodes.entry(code).or_insert(0) += 1);
    }
    reply
}

fn errcode_of(r: &Response) -> Option<i64> {
    r.headers.iter().find(|(k, _)| k == "Error-Code").and_then(|(_, v)| v.parse().ok()).filter(|c| *c != 0)
}

/// Applies a network-level fault (`http500`, `cut`, `slow`) to a reply.
fn network(shared: &Shared, fault: Option<FaultKind>, identity: u64, r: Response) -> Reply {
    match fault {
        Some(FaultKind::Http500) => Reply::Normal(Response::status_page(shared.fault_status(identity))),
        Some(FaultKind::Cut) => Reply::Cut(r),
        Some(FaultKind::Slow) => Reply::Slow(r),
        _ => Reply::Normal(r),
    }
}

const NETWORK_FAULTS: [FaultKind; 3] = [FaultKind::Http500, FaultKind::Cut, FaultKind::Slow];

fn gettoken(shared: &Shared, req: &Request) -> Reply {
    let corpid = req.query("corpid").unwrap_or_default();
    let secret = req.query("corpsecret").unwrap_or_default();
    let identity = mix(&[1, str_hash(&corpid)]);
    let fault = shared.decide(Endpoint::GetToken, identity, &NETWORK_FAULTS);
    let r = if corpid.is_empty() {
        Response::errcode(41002, "corpid missing")
    } else if secret.is_empty() {
        Response::errcode(41004, "corpsecret missing")
    } else {
        match shared.corps.iter().find(|c| c.corpid == corpid) {
            None => Response::errcode(40013, "invalid corpid"),
            Some(c) if c.secret != secret => {
                Response::errcode(40001, "invalid credential, access_token is invalid or not latest")
            }
            Some(c) => {
                let (token, expires_in) = shared.token_for(c.index);
                Response::json(
                    200,
                    format!(
                        r#"{{"errcode":0,"errmsg":"ok","access_token":"{token}","expires_in":{expires_in}}}"#
                    ),
                    0,
                    "ok",
                )
            }
        }
    };
    network(shared, fault, identity, r)
}

/// Resolves the `access_token` query parameter to a corp, or the errcode reply.
fn authorize(shared: &Shared, req: &Request) -> Result<(usize, String), Response> {
    let Some(token) = req.query("access_token").filter(|t| !t.is_empty()) else {
        return Err(Response::errcode(41001, "access_token missing"));
    };
    match shared.check_token(&token) {
        Ok(corp) => Ok((corp, token)),
        Err(TokenError::Unknown) => Err(Response::errcode(40014, "invalid access_token")),
        Err(TokenError::Expired) => Err(Response::errcode(42001, "access_token expired")),
    }
}

#[derive(serde::Deserialize)]
struct ChatDataReq {
    seq: Option<u64>,
    limit: Option<u64>,
    encrypt_sign: Option<String>,
}

async fn getchatdata(shared: &Arc<Shared>, req: &Request) -> Reply {
    let auth = authorize(shared, req);
    let body: Option<ChatDataReq> = serde_json::from_slice(&req.body).ok();
    let (seq, limit) = body.as_ref().map_or((0, 0), |b| (b.seq.unwrap_or(0), b.limit.unwrap_or(0)));
    let who = match &auth {
        Ok((corp, _)) => *corp as u64,
        Err(_) => u64::MAX,
    };
    let identity = mix(&[2, who, seq, limit]);
    let fault = shared.decide(
        Endpoint::GetChatData,
        identity,
        &[FaultKind::Http500, FaultKind::Cut, FaultKind::Slow, FaultKind::TokenExpired],
    );
    if fault == Some(FaultKind::Http500) {
        return network(shared, fault, identity, Response::status_page(500));
    }
    let r = match (auth, body) {
        (Err(r), _) => r,
        (Ok(_), None) => Response::errcode(47001, "data format error"),
        (Ok((_, token)), Some(b)) if b.encrypt_sign.as_deref() != Some(&encrypt_sign(&token).to_string()) => {
            Response::errcode(40014, "invalid encrypt_sign")
        }
        (Ok(_), Some(_)) if !(1..=1000).contains(&limit) => {
            Response::errcode(40058, "invalid limit, must be 1-1000")
        }
        (Ok(_), Some(_)) if fault == Some(FaultKind::TokenExpired) => Response::errcode(
            42001,
            "access_token expired, hint: [simulated], more info at https://open.work.weixin.qq.com/devtool/query?e=42001",
        ),
        (Ok((corp, _)), Some(_)) => {
            let shared2 = shared.clone();
            let built =
                tokio::task::spawn_blocking(move || chatdata_body(&shared2, corp, seq, limit as usize)).await;
            match built {
                Ok(body) => Response::json(200, body, 0, "ok"),
                Err(e) => {
                    tracing::error!(error = %e, "building a chatdata page failed");
                    Response::errcode(-1, "system busy")
                }
            }
        }
    };
    network(shared, fault, identity, r)
}

/// `{"errcode":0,"errmsg":"ok","chatdata":[…]}` for records after `seq`.
fn chatdata_body(shared: &Shared, corp: usize, seq: u64, limit: usize) -> String {
    let page = shared.page(corp, seq, limit);
    let mut body = String::from(r#"{"errcode":0,"errmsg":"ok","chatdata":["#);
    for (i, r) in page.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&shared.chatdata_item(corp, r));
        if let Some(f) = r.fault {
            shared.count_fault(match f {
                crate::RecordFault::ShortMsg => FaultKind::ShortMsg,
                crate::RecordFault::BadBase64 => FaultKind::BadBase64,
                crate::RecordFault::UnknownVer => FaultKind::UnknownVer,
                crate::RecordFault::WrongKey => FaultKind::WrongKey,
                crate::RecordFault::GroupKeyInfo => FaultKind::GroupKeyInfo,
                crate::RecordFault::LongMsgid => FaultKind::LongMsgid,
                crate::RecordFault::InvalidUtf8 => FaultKind::InvalidUtf8,
                crate::RecordFault::LoneSurrogate => FaultKind::LoneSurrogate,
                crate::RecordFault::HugeRecord => FaultKind::HugeRecord,
                crate::RecordFault::ForgedSeq => FaultKind::ForgedSeq,
            });
        }
    }
    body.push_str("]}");
    shared.with_stats(|s| s.records_served += page.len() as u64);
    body
}

#[derive(serde::Deserialize)]
struct MediaReq {
    fileid: Option<String>,
    authkey: Option<String>,
}

/// Parses the SDK's `Range: bytes=a-b` header.
fn parse_range(v: &str) -> Option<(u64, u64)> {
    let r = v.trim().strip_prefix("bytes=")?;
    let (a, b) = r.split_once('-')?;
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
}

async fn getchatmediadata(shared: &Arc<Shared>, link: &Link, req: &Request) -> Reply {
    let auth = authorize(shared, req);
    let body: Option<MediaReq> = serde_json::from_slice(&req.body).ok();
    let fileid = body.as_ref().and_then(|b| b.fileid.clone()).unwrap_or_default();
    let range = req.header("range").map(parse_range);
    let start = match range {
        Some(Some((a, _))) => a,
        _ => 0,
    };
    let asked = shared.with_stats(|s| {
        let n = s.media_requests.entry((fileid.clone(), start)).or_insert(0);
        *n += 1;
        *n
    });
    if matches!(link.failing_media_offset, Some((at, times)) if at == start && asked <= times) {
        shared.count_fault(FaultKind::Http500);
        return Reply::Normal(Response::status_page(500));
    }
    let forced_corrupt =
        matches!(link.corrupt_media_offset, Some((at, times)) if at == start && asked <= times);
    let identity = mix(&[3, str_hash(&fileid), start]);
    let fault = shared.decide(
        Endpoint::GetChatMediaData,
        identity,
        &[
            FaultKind::Http500,
            FaultKind::Cut,
            FaultKind::Slow,
            FaultKind::MediaIp,
            FaultKind::MediaExpired,
            FaultKind::MediaRangeLoop,
        ],
    );
    if fault == Some(FaultKind::Http500) {
        return network(shared, fault, identity, Response::status_page(500));
    }
    let item = shared.media(&fileid);
    let r = match (auth, body, range, item) {
        (Err(r), ..) => r,
        (Ok(_), None, ..) => Response::errcode(47001, "data format error"),
        (Ok(_), _, Some(None), _) => Response::errcode(40058, "invalid Range header"),
        (Ok(_), Some(b), _, Some(item)) if b.authkey.as_deref() == Some(item.authkey.as_str()) => match fault
        {
            Some(FaultKind::MediaIp) => Response::errcode(301042, "ip not in whitelist"),
            Some(FaultKind::MediaExpired) => Response::errcode(301048, "media data expired"),
            _ => {
                let end = match range {
                    Some(Some((_, b))) => b,
                    _ => start + CHUNK - 1,
                };
                let claim_first = fault == Some(FaultKind::MediaRangeLoop) && start > 0;
                media_chunk(shared, item, start, end, claim_first, forced_corrupt).await
            }
        },
        (Ok(_), ..) => Response::errcode(40058, "invalid fileid or authkey"),
    };
    network(shared, fault, identity, r)
}

/// One media chunk. `claim_first`: the `media_range_loop` fault, the header claims the first
/// chunk's range whatever was asked. `forced_corrupt`: this page is corrupted whatever the
/// `md5_mismatch` roll says (`corrupt_media_offset`).
async fn media_chunk(
    shared: &Arc<Shared>,
    item: Arc<crate::MediaItem>,
    start: u64,
    end: u64,
    claim_first: bool,
    forced_corrupt: bool,
) -> Response {
    let total = item.blob.cipher_len();
    let is_final = end.min(total.saturating_sub(1)) + 1 >= total;
    let rolled = is_final && start < total && shared.decide_md5_mismatch(&item.fileid);
    // Only a page with plaintext in it can carry the flipped byte.
    let forced = forced_corrupt && start < item.blob.size;
    if forced {
        shared.count_fault(FaultKind::Md5Mismatch);
    }
    let corrupt = rolled || forced;
    let built = tokio::task::spawn_blocking(move || {
        let (cipher, end) = item.blob.cipher_range(&item.aeskey, start, end, corrupt)?;
        let mut body = String::with_capacity(cipher.len() * 4 / 3 + 64);
        body.push_str(r#"{"errcode":0,"errmsg":"ok","content":""#);
        B64.encode_string(&cipher, &mut body);
        body.push_str("\"}");
        Ok::<_, crate::media::RangeError>((body, end))
    })
    .await;
    match built {
        Ok(Ok((body, end))) => {
            shared.with_stats(|s| s.media_chunks_served += 1);
            let mut r = Response::json(200, body, 0, "ok");
            // Upper case on purpose: the SDK searches for exactly this spelling (§5.3).
            let (start, end) = if claim_first { (0, CHUNK.min(total) - 1) } else { (start, end) };
            r.headers.push(("CONTENT-RANGE".into(), format!("BYTES {start}-{end}/{total}")));
            r
        }
        Ok(Err(e)) => Response::errcode(40058, &format!("invalid range: {e}")),
        Err(e) => {
            tracing::error!(error = %e, "building a media chunk failed");
            Response::errcode(-1, "system busy")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_matches_the_probe() {
        // PROTOCOL.md §5.2: token PROBE_TOKEN_abc123 gave 1046083587; an empty token gives 0.
        assert_eq!(encrypt_sign("PROBE_TOKEN_abc123"), 1_046_083_587);
        assert_eq!(encrypt_sign(""), 0);
    }

    #[test]
    fn range_header() {
        assert_eq!(parse_range("bytes=0-524287"), Some((0, 524_287)));
        assert_eq!(parse_range(" bytes=524288-1048575"), Some((524_288, 1_048_575)));
        assert_eq!(parse_range("bytes=x-1"), None);
    }
}
