//! Fetching one document: skip it when unchanged, else export (create the
//! task, poll with backoff up to a limit, download, size-check) or download
//! (with `Range` resume), falling back to a plain download when an export
//! fails; the file is written under a temporary name and renamed into place,
//! then the state row is saved. Nothing a server sends stops the run: every
//! failure becomes the document's `failed` status with a reason.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;

use super::manifest::{Entry, Status};
use super::walk::{DocJob, Plan, is_token, plan};
use super::wire::{DownloadError, Wire};
use super::{BackupError, BackupOptions, routes};
use crate::feishu::client::{int_field, str_field};
use crate::feishu::{FeishuError, now_ms};
use crate::store::Store;
use crate::store::feishu_docs::DocRow;

/// An export task older than this is not collected after a restart (Feishu keeps results a while; be safe).
const TICKET_REUSE_MS: i64 = 20 * 60 * 1000;

/// `job_status` values that will not change by asking again (API.md §6.4).
fn permanent_job(status: i64) -> bool {
    matches!(status, 107 | 109 | 110 | 111 | 122 | 123 | 6000)
}

fn job_reason(status: i64, msg: &str) -> String {
    let what = match status {
        3 => "internal error",
        107 => "export size limit",
        108 => "export timeout",
        109 => "export block not permitted",
        110 => "no permission",
        111 => "document deleted",
        122 => "export denied (copy/export disabled)",
        123 => "document does not exist",
        6000 => "too many images",
        _ => "export failed",
    };
    let msg: String = msg.chars().filter(|c| !c.is_control()).take(120).collect();
    format!("{what} (job_status {status}{}{msg})", if msg.is_empty() { "" } else { ": " })
}

/// How one export attempt ended.
enum ExportEnd {
    Stored {
        size: u64,
        sha: String,
    },
    /// Export refused for the type (99992402) or failed for good: the reason.
    Permanent(String),
    /// Worth another attempt.
    Transient(String),
}

/// Everything a fetcher needs.
pub struct Fetcher {
    /// Wire.
    pub wire: Arc<Wire>,
    /// Store.
    pub store: Store,
    /// Options.
    pub opts: Arc<BackupOptions>,
    /// Rows as the run started.
    pub rows: Arc<std::collections::HashMap<String, DocRow>>,
}

impl Fetcher {
    fn out(&self, rel: &str) -> PathBuf {
        self.opts.out.join(rel)
    }

    fn part(&self, token: &str, modified: i64, what: &str) -> PathBuf {
        self.opts.out.join(".partial").join(format!("{token}-{modified}.{what}.part"))
    }

    /// Backs up one document; the manifest entry of its node.
    pub async fn fetch(&self, job: &DocJob) -> Result<Entry, BackupError> {
        let mut entry = Entry {
            token: job.node_token.clone(),
            kind: job.kind,
            node_type: job.doc_type.clone(),
            title: job.title.clone(),
            path: job.path.clone(),
            status: None,
            reason: String::new(),
            bytes: None,
            sha256: None,
            obj_token: (job.node_token != job.token).then(|| job.token.clone()),
        };
        let p = plan(&job.doc_type);
        let ext = match p {
            Plan::Export(e) => e,
            Plan::ExportOrDownload => "pdf",
            _ => "",
        };
        let row = self.rows.get(&job.token);
        if p == Plan::NotExportable {
            entry.status = Some(Status::NotExportable);
            entry.reason = format!(
                "{} cannot be exported (export tasks take doc, docx, sheet and bitable only)",
                job.doc_type
            );
            let mut r = self.base_row(job, "", "not_exportable");
            r.reason = entry.reason.clone();
            r.permanent = true;
            if row.is_none_or(|old| {
                old.status != "not_exportable" || old.modified_time != job.modified || old.path != job.path
            }) {
                self.store.put_feishu_doc(&self.opts.app_id, &self.opts.open_id, &r).await?;
            }
            return Ok(entry);
        }
        if !self.opts.full
            && let Some(old) = row
            && old.modified_time == job.modified
            && job.modified != 0
        {
            if matches!(old.status.as_str(), "exported" | "downloaded") && self.still_there(old, job).await? {
                entry.status = Some(Status::Unchanged);
                entry.bytes = old.size.map(|s| s as u64);
                entry.sha256 = old.sha256.clone();
                entry.path = if old.path.is_empty() { job.path.clone() } else { old.path.clone() };
                return Ok(entry);
            }
            if old.status == "failed" && old.permanent {
                entry.status = Some(Status::Failed);
                entry.reason =
                    format!("{} (not retried until the document changes; --full retries)", old.reason);
                return Ok(entry);
            }
        }
        let mut r = self.base_row(job, ext, "pending");
        if let Some(old) = row {
            r.export_ticket = old
                .export_ticket
                .clone()
                .filter(|_| old.modified_time == job.modified && old.export_ext == ext);
            r.export_ticket_at = old.export_ticket_at;
            r.last_backup_at = old.last_backup_at;
            r.sha256 = old.sha256.clone();
            r.size = old.size;
        }
        self.store.put_feishu_doc(&self.opts.app_id, &self.opts.open_id, &r).await?;
        let outcome = match p {
            Plan::Download => self
                .download(job, &job.path)
                .await
                .map(|(size, sha)| (Status::Downloaded, job.path.clone(), size, sha)),
            _ => self.export_then_fallback(job, ext, &mut r).await,
        };
        match outcome {
            Ok((status, path, size, sha)) => {
                r.status = status.as_str().to_owned();
                r.path = path.clone();
                r.size = Some(size as i64);
                r.sha256 = Some(sha.clone());
                r.reason.clear();
                r.permanent = false;
                r.export_ticket = None;
                r.export_ticket_at = None;
                r.last_backup_at = Some(now_ms());
                if status == Status::Downloaded {
                    r.export_ext.clear();
                }
                entry.status = Some(status);
                entry.path = path;
                entry.bytes = Some(size);
                entry.sha256 = Some(sha);
            }
            Err((reason, permanent)) => {
                r.status = "failed".into();
                r.reason = reason.clone();
                r.permanent = permanent;
                entry.status = Some(Status::Failed);
                entry.reason = reason;
            }
        }
        self.store.put_feishu_doc(&self.opts.app_id, &self.opts.open_id, &r).await?;
        Ok(entry)
    }

    fn base_row(&self, job: &DocJob, ext: &str, status: &str) -> DocRow {
        DocRow {
            token: job.token.clone(),
            doc_type: job.doc_type.clone(),
            title: job.title.clone(),
            path: job.path.clone(),
            modified_time: job.modified,
            size: None,
            sha256: None,
            status: status.to_owned(),
            reason: String::new(),
            permanent: false,
            export_ext: ext.to_owned(),
            export_ticket: None,
            export_ticket_at: None,
            last_backup_at: None,
        }
    }

    /// Whether the stored file is where it should be with its size; a file
    /// stored under an older name is moved to the current one.
    async fn still_there(&self, old: &DocRow, job: &DocJob) -> Result<bool, BackupError> {
        let want = old.size.unwrap_or(-1);
        let size_at = |p: PathBuf| async move {
            tokio::fs::metadata(&p).await.ok().filter(|m| m.is_file()).map(|m| m.len() as i64)
        };
        let target = if old.status == "downloaded" && job.fallback_path.is_some() {
            job.fallback_path.clone().unwrap_or_default()
        } else {
            job.path.clone()
        };
        if size_at(self.out(&target)).await == Some(want) && old.path == target {
            return Ok(true);
        }
        if old.path.is_empty() || size_at(self.out(&old.path)).await != Some(want) {
            return Ok(false);
        }
        if old.path != target {
            let to = self.out(&target);
            if let Some(dir) = to.parent() {
                tokio::fs::create_dir_all(dir).await.map_err(|e| BackupError::io(dir, e))?;
            }
            tokio::fs::rename(self.out(&old.path), &to).await.map_err(|e| BackupError::io(&to, e))?;
            let mut moved = old.clone();
            moved.path = target;
            self.store.put_feishu_doc(&self.opts.app_id, &self.opts.open_id, &moved).await?;
        }
        Ok(true)
    }

    /// Exports (with retries of transient failures); when the export fails
    /// for good, tries a plain download; `Err((reason, permanent))`.
    async fn export_then_fallback(
        &self,
        job: &DocJob,
        ext: &'static str,
        r: &mut DocRow,
    ) -> Result<(Status, String, u64, String), (String, bool)> {
        let mut last = String::new();
        let mut permanent = None;
        for attempt in 0..self.opts.export_attempts.max(1) {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(500 * (1 << attempt.min(4)))).await;
            }
            match self.export_once(job, ext, r).await {
                ExportEnd::Stored { size, sha } => {
                    return Ok((Status::Exported, job.path.clone(), size, sha));
                }
                ExportEnd::Permanent(why) => {
                    permanent = Some(why);
                    break;
                }
                ExportEnd::Transient(why) => last = why,
            }
        }
        let export_reason = permanent.clone().unwrap_or(last);
        // The fallback: a plain download (what uploaded files need; online documents refuse it).
        let fallback_path = job.fallback_path.clone().unwrap_or_else(|| job.path.clone());
        match self.download(job, &fallback_path).await {
            Ok((size, sha)) => Ok((Status::Downloaded, fallback_path, size, sha)),
            Err((why, _)) => {
                let reason = format!("export: {export_reason}; download fallback: {why}");
                Err((reason, permanent.is_some()))
            }
        }
    }

    async fn export_once(&self, job: &DocJob, ext: &'static str, r: &mut DocRow) -> ExportEnd {
        let (app, user) = (&self.opts.app_id, &self.opts.open_id);
        let reusable = r
            .export_ticket
            .clone()
            .filter(|_| r.export_ticket_at.is_some_and(|at| now_ms() - at < TICKET_REUSE_MS));
        let (ticket, resumed) = match reusable {
            Some(t) if is_token(&t) => (t, true),
            _ => {
                let body = json!({"file_extension": ext, "token": job.token, "type": job.doc_type});
                let created = self
                    .wire
                    .json(
                        Method::POST,
                        routes::EXPORT_CREATE,
                        "/open-apis/drive/v1/export_tasks",
                        &[],
                        Some(&body),
                    )
                    .await;
                let ticket = match created {
                    Ok(v) => match str_field(&v["data"], "ticket").filter(|t| is_token(t)) {
                        Some(t) => t,
                        None => {
                            return ExportEnd::Transient("export task answer without a usable ticket".into());
                        }
                    },
                    Err(e @ FeishuError::Api { code: 99992402, .. }) => {
                        return ExportEnd::Permanent(format!(
                            "Feishu refused to export {} as {ext} ({e})",
                            job.doc_type
                        ));
                    }
                    Err(e) => return ExportEnd::Transient(format!("creating the export task: {e}")),
                };
                let at = now_ms();
                r.export_ticket = Some(ticket.clone());
                r.export_ticket_at = Some(at);
                if let Err(e) =
                    self.store.set_feishu_doc_ticket(app, user, &job.token, Some(&ticket), at).await
                {
                    return ExportEnd::Transient(format!("saving the export ticket: {e}"));
                }
                (ticket, false)
            }
        };
        let ready = self.poll(&ticket, &job.token, resumed).await;
        let forget = |r: &mut DocRow| {
            r.export_ticket = None;
            r.export_ticket_at = None;
        };
        let (file_token, file_size) = match ready {
            Ok(t) => t,
            Err(end) => {
                forget(r);
                let _ = self.store.set_feishu_doc_ticket(app, user, &job.token, None, 0).await;
                return end;
            }
        };
        let part = self.part(&job.token, job.modified, ext);
        let path = format!("/open-apis/drive/v1/export_tasks/file/{file_token}/download");
        let got = self.wire.download(routes::EXPORT_DOWNLOAD, &path, &part).await;
        match got {
            Ok(size) if file_size > 0 && size != file_size => {
                let _ = tokio::fs::remove_file(&part).await;
                forget(r);
                ExportEnd::Transient(format!("export file has {size} bytes, the task said {file_size}"))
            }
            Ok(size) => match self.place(&part, &job.path).await {
                Ok(sha) => ExportEnd::Stored { size, sha },
                Err(e) => ExportEnd::Transient(e.to_string()),
            },
            Err(e) => {
                forget(r);
                ExportEnd::Transient(format!("downloading the export: {e}"))
            }
        }
    }

    /// Polls an export task with backoff until it is done, failed, or the limit passed.
    async fn poll(&self, ticket: &str, token: &str, resumed: bool) -> Result<(String, u64), ExportEnd> {
        let started = Instant::now();
        let mut wait = if resumed { Duration::ZERO } else { self.opts.poll_initial };
        let path = format!("/open-apis/drive/v1/export_tasks/{ticket}");
        loop {
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            let v = match self
                .wire
                .json(Method::GET, routes::EXPORT_GET, &path, &[("token", token.to_owned())], None)
                .await
            {
                Ok(v) => v,
                Err(e) => return Err(ExportEnd::Transient(format!("polling the export task: {e}"))),
            };
            let res = &v["data"]["result"];
            let status = int_field(res, "job_status").unwrap_or(-1);
            let file_token = str_field(res, "file_token").filter(|t| !t.is_empty());
            match (status, file_token) {
                (0, Some(ft)) if is_token(&ft) => {
                    let size = int_field(res, "file_size").filter(|s| *s >= 0).unwrap_or(0) as u64;
                    return Ok((ft, size));
                }
                (0, Some(_)) => {
                    return Err(ExportEnd::Transient(
                        "export task named a file token that is not an identifier".into(),
                    ));
                }
                (0..=2, _) => {}
                (s, _) => {
                    let msg = str_field(res, "job_error_msg").unwrap_or_default();
                    let reason = job_reason(s, &msg);
                    return Err(if permanent_job(s) {
                        ExportEnd::Permanent(reason)
                    } else {
                        ExportEnd::Transient(reason)
                    });
                }
            }
            if started.elapsed() >= self.opts.export_timeout {
                return Err(ExportEnd::Transient(format!(
                    "export not finished after {} s (--export-timeout)",
                    self.opts.export_timeout.as_secs()
                )));
            }
            wait = if wait.is_zero() {
                self.opts.poll_initial
            } else {
                (wait.mul_f64(1.5)).min(self.opts.poll_max)
            };
        }
    }

    /// A plain download into `rel`: `(size, sha256)` or `Err((reason, permanent))`.
    async fn download(&self, job: &DocJob, rel: &str) -> Result<(u64, String), (String, bool)> {
        let part = self.part(&job.token, job.modified, "download");
        let path = format!("/open-apis/drive/v1/files/{}/download", job.token);
        match self.wire.download(routes::DOWNLOAD, &path, &part).await {
            Ok(size) => match self.place(&part, rel).await {
                Ok(sha) => Ok((size, sha)),
                Err(e) => Err((e.to_string(), false)),
            },
            Err(DownloadError::Feishu(e @ FeishuError::Api { status, code, .. })) => {
                // 1061002: not an uploaded file; 403: no download permission; 404: gone.
                let permanent = code == 1061002 || status == 403 || status == 404;
                Err((e.to_string(), permanent))
            }
            Err(e) => Err((e.to_string(), false)),
        }
    }

    /// Hashes `part` and renames it to `rel` under the output directory.
    async fn place(&self, part: &Path, rel: &str) -> Result<String, BackupError> {
        let to = self.out(rel);
        if !to.starts_with(&self.opts.out) || rel.split('/').any(|c| c == ".." || c.is_empty()) {
            return Err(BackupError::Invalid(format!(
                "refusing to write outside the output directory: {rel:?}"
            )));
        }
        let sha = sha256_file(part).await.map_err(|e| BackupError::io(part, e))?;
        if let Some(dir) = to.parent() {
            tokio::fs::create_dir_all(dir).await.map_err(|e| BackupError::io(dir, e))?;
        }
        tokio::fs::rename(part, &to).await.map_err(|e| BackupError::io(&to, e))?;
        Ok(sha)
    }
}

/// SHA-256 (hex) of a file, streamed.
pub async fn sha256_file(path: &Path) -> std::io::Result<String> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut f = std::fs::File::open(&path)?;
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            ctx.update(&buf[..n]);
        }
        Ok(hex::encode(ctx.finish().as_ref()))
    })
    .await
    .map_err(std::io::Error::other)?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_statuses() {
        assert!(permanent_job(122) && permanent_job(107) && !permanent_job(3) && !permanent_job(108));
        assert_eq!(
            job_reason(122, "export denied"),
            "export denied (copy/export disabled) (job_status 122: export denied)"
        );
        assert_eq!(job_reason(3, ""), "internal error (job_status 3)");
    }
}
