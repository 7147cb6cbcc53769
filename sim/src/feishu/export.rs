//! Export tasks (API.md §6.4): create → ticket; poll → job_status 1/2 until done, then 0 with a
//! `file_token`; download the exported file. The export is a snapshot of the document's version
//! at creation. `export_slow` / `export_fail` faults make a task 10× slower or end it with
//! job_status 3 or 108; a task for an unknown document ends with 123.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::auth::{Accept, Caller, check};
use super::docs::{Docs, exportable, serve_blob, valid_export};
use super::faults::FeishuFaultKind;
use super::server::{ApiError, ApiResult, ok};
use super::state::{App, now_ms};
use crate::media::MediaBlob;

#[derive(Debug, Clone)]
struct Task {
    token: String,
    ext: String,
    doc_type: String,
    creator: Caller,
    created_ms: u64,
    ready_ms: u64,
    failure: Option<i64>,
    version: u64,
    title: String,
    file_token: Option<String>,
}

/// Tasks by ticket, exported files by file token.
#[derive(Debug, Default)]
pub(crate) struct Exports {
    tasks: HashMap<String, Task>,
    files: HashMap<String, (MediaBlob, String)>,
}

/// `POST /open-apis/drive/v1/export_tasks`.
pub(crate) async fn create(State(app): State<App>, headers: HeaderMap, body: Bytes) -> ApiResult {
    let mut inner = app.lock();
    let caller = check(&app, &mut inner, &headers, Accept::TenantOrUser)?;
    let b: Value = serde_json::from_slice(&body)
        .map_err(|_| ApiError::bad(99992402, "field validation failed: body is not JSON"))?;
    let (ext, token, doc_type) = match (b["file_extension"].as_str(), b["token"].as_str(), b["type"].as_str())
    {
        (Some(e), Some(t), Some(ty)) => (e.to_string(), t.to_string(), ty.to_string()),
        _ => {
            return Err(ApiError::bad(
                99992402,
                "field validation failed: file_extension, token and type are required",
            ));
        }
    };
    if !exportable(&doc_type) || !valid_export(&doc_type, &ext) {
        return Err(ApiError::bad(
            99992402,
            format!("field validation failed: cannot export type {doc_type:?} as {ext:?}"),
        ));
    }
    if ext == "csv" && b["sub_id"].as_str().is_none_or(str::is_empty) {
        return Err(ApiError::bad(99992402, "field validation failed: sub_id is required for csv"));
    }
    let seed = app.config.seed;
    let mut delay = app.config.export_delay.as_millis() as u64;
    if app.config.faults.roll(seed, FeishuFaultKind::ExportSlow) {
        delay *= 10;
    }
    let doc = inner.docs.map.get(&token).filter(|d| d.obj_type == doc_type).cloned();
    let failure = match &doc {
        None => Some(123),
        Some(d) if d.export_block.is_some() => d.export_block,
        Some(_) if app.config.faults.roll(seed, FeishuFaultKind::ExportFail) => {
            Some(if inner.digits(1).as_str() < "5" { 3 } else { 108 })
        }
        Some(_) => None,
    };
    let ticket = inner.digits(19);
    let now = now_ms();
    let task = Task {
        token,
        ext,
        doc_type,
        creator: caller,
        created_ms: now,
        ready_ms: now + delay,
        failure,
        version: doc.as_ref().map_or(0, |d| d.version),
        title: doc.map(|d| d.title).unwrap_or_default(),
        file_token: None,
    };
    inner.exports.tasks.insert(ticket.clone(), task);
    Ok(ok(json!({"ticket": ticket})))
}

fn job_message(status: i64) -> &'static str {
    match status {
        3 => "internal error",
        107 => "export size limit",
        110 => "no permission",
        122 => "export denied",
        108 => "export timeout",
        123 => "doc not exist",
        _ => "error",
    }
}

/// `GET /open-apis/drive/v1/export_tasks/:ticket?token=`.
pub(crate) async fn get(
    State(app): State<App>,
    headers: HeaderMap,
    Path(ticket): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    let mut inner = app.lock();
    let caller = check(&app, &mut inner, &headers, Accept::TenantOrUser)?;
    let task = inner
        .exports
        .tasks
        .get(&ticket)
        .cloned()
        .ok_or_else(|| ApiError::bad(99992402, "field validation failed: unknown ticket"))?;
    if q.get("token") != Some(&task.token) {
        return Err(ApiError::bad(99992402, "field validation failed: token does not match the ticket"));
    }
    if task.creator != caller {
        return Err(ApiError::new(StatusCode::FORBIDDEN, 1069902, "the task belongs to another identity"));
    }
    let now = now_ms();
    let mut result = json!({"file_extension": task.ext, "type": task.doc_type, "file_name": task.title, "job_error_msg": "", "file_size": 0});
    if now < task.ready_ms {
        let halfway = task.created_ms + (task.ready_ms - task.created_ms) / 2;
        result["job_status"] = json!(if now < halfway { 1 } else { 2 });
    } else if let Some(status) = task.failure {
        result["job_status"] = json!(status);
        result["job_error_msg"] = json!(job_message(status));
    } else {
        let file_token = match task.file_token {
            Some(t) => t,
            None => {
                let t = format!("boxcn{}", inner.lower(22));
                let blob = Docs::export_blob(app.config.seed, &task.token, task.version, &task.ext);
                inner.exports.files.insert(t.clone(), (blob, format!("{}.{}", task.title, task.ext)));
                if let Some(stored) = inner.exports.tasks.get_mut(&ticket) {
                    stored.file_token = Some(t.clone());
                }
                t
            }
        };
        let size = inner.exports.files.get(&file_token).map_or(0, |(b, _)| b.size);
        result["job_status"] = json!(0);
        result["job_error_msg"] = json!("success");
        result["file_token"] = json!(file_token);
        result["file_size"] = json!(size);
    }
    Ok(ok(json!({"result": result})))
}

/// `GET /open-apis/drive/v1/export_tasks/file/:file_token/download`.
pub(crate) async fn download(
    State(app): State<App>,
    headers: HeaderMap,
    Path(file_token): Path<String>,
) -> Response {
    let found = {
        let mut inner = app.lock();
        if let Err(e) = check(&app, &mut inner, &headers, Accept::TenantOrUser) {
            return e.into_response();
        }
        inner.exports.files.get(&file_token).cloned()
    };
    match found {
        Some((blob, name)) => serve_blob(blob, &headers, &name),
        None => ApiError::new(StatusCode::NOT_FOUND, 1061003, "export file not found").into_response(),
    }
}
