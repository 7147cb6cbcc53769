//! What a run reports: one [`Entry`] per node (documents with their
//! outcome, folders, wiki containers and shortcuts), the [`Summary`], and
//! `manifest.json` written atomically into the output directory.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

/// What became of a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Exported (docx/xlsx/pdf) and stored now.
    Exported,
    /// Downloaded as uploaded and stored now.
    Downloaded,
    /// Stored by an earlier run and not changed since.
    Unchanged,
    /// Feishu cannot export this type (slides, mindnote).
    NotExportable,
    /// Could not be stored; `reason` says why.
    Failed,
}

impl Status {
    /// As stored in `feishu_docs.status`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Exported => "exported",
            Status::Downloaded => "downloaded",
            Status::Unchanged => "unchanged",
            Status::NotExportable => "not_exportable",
            Status::Failed => "failed",
        }
    }
}

/// One node of the manifest.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// The node's token (drive token or wiki node token).
    pub token: String,
    /// `drive`, `wiki` or `wiki_space`.
    pub kind: &'static str,
    /// Feishu type: folder, shortcut, docx, sheet, file, … (wiki nodes: the resolved obj_type).
    #[serde(rename = "type")]
    pub node_type: String,
    /// Title as Feishu lists it.
    pub title: String,
    /// Relative to the output directory (directories for folders; for a
    /// shortcut, where its target is stored).
    pub path: String,
    /// Documents' outcome (none for folders, spaces and shortcuts to folders).
    pub status: Option<Status>,
    /// Why it failed, is not exportable, or what a shortcut points to.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// Bytes stored.
    pub bytes: Option<u64>,
    /// SHA-256 (hex) of the bytes stored.
    pub sha256: Option<String>,
    /// The document token a wiki node or shortcut resolves to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub obj_token: Option<String>,
}

/// Counts of a run.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Summary {
    /// Folders, wiki spaces and wiki nodes with children.
    pub folders: u64,
    /// Documents (every node that is not a folder, space or shortcut).
    pub files: u64,
    /// Exported now.
    pub exported: u64,
    /// Downloaded now.
    pub downloaded: u64,
    /// Skipped as unchanged.
    pub unchanged: u64,
    /// Not exportable.
    pub not_exportable: u64,
    /// Failed.
    pub failed: u64,
    /// Shortcuts (followed once).
    pub shortcuts: u64,
    /// Failure reasons and how often each occurred.
    pub failures: BTreeMap<String, u64>,
}

impl Summary {
    /// Counts `entries`.
    pub fn of(entries: &[Entry]) -> Summary {
        let mut s = Summary::default();
        for e in entries {
            match (e.node_type.as_str(), e.kind) {
                ("shortcut", _) => s.shortcuts += 1,
                ("folder", _) | (_, "wiki_space") => s.folders += 1,
                _ => s.files += 1,
            }
            if e.node_type == "shortcut" {
                continue;
            }
            match e.status {
                Some(Status::Exported) => s.exported += 1,
                Some(Status::Downloaded) => s.downloaded += 1,
                Some(Status::Unchanged) => s.unchanged += 1,
                Some(Status::NotExportable) => s.not_exportable += 1,
                Some(Status::Failed) => {
                    s.failed += 1;
                    *s.failures.entry(short_reason(&e.reason)).or_default() += 1;
                }
                None => {}
            }
        }
        s
    }

    /// The lines `feishu backup` prints.
    pub fn lines(&self) -> Vec<String> {
        let mut v = vec![format!(
            "folders {}, files {}, exported {}, downloaded {}, unchanged {}, not exportable {}, failed {} (shortcuts {})",
            self.folders,
            self.files,
            self.exported,
            self.downloaded,
            self.unchanged,
            self.not_exportable,
            self.failed,
            self.shortcuts
        )];
        for (reason, n) in &self.failures {
            v.push(format!("  failed {n}× {reason}"));
        }
        v
    }
}

/// A reason without the document-specific parts, for grouping.
fn short_reason(r: &str) -> String {
    r.split(" (").next().unwrap_or(r).chars().take(160).collect()
}

/// The whole manifest.
#[derive(Debug, Serialize)]
pub struct Manifest<'a> {
    /// The app.
    pub app_id: &'a str,
    /// The user.
    pub open_id: &'a str,
    /// `drive`, `my_library`, `wiki:<space_id>` or `all`.
    pub source: String,
    /// Unix ms.
    pub started_at: i64,
    /// Unix ms.
    pub finished_at: i64,
    /// Counts.
    pub summary: &'a Summary,
    /// Every node.
    pub nodes: &'a [Entry],
}

/// Writes `manifest.json` into `out` (temp file + rename).
pub fn write(out: &Path, m: &Manifest<'_>) -> std::io::Result<()> {
    let tmp = out.join(".manifest.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(m).map_err(std::io::Error::other)?)?;
    std::fs::rename(&tmp, out.join("manifest.json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(t: &str, kind: &'static str, status: Option<Status>, reason: &str) -> Entry {
        Entry {
            token: "x".into(),
            kind,
            node_type: t.into(),
            title: String::new(),
            path: String::new(),
            status,
            reason: reason.into(),
            bytes: None,
            sha256: None,
            obj_token: None,
        }
    }

    #[test]
    fn counts_and_groups_reasons() {
        let s = Summary::of(&[
            e("folder", "drive", None, ""),
            e("", "wiki_space", None, ""),
            e("docx", "drive", Some(Status::Exported), ""),
            e("file", "drive", Some(Status::Downloaded), ""),
            e("slides", "drive", Some(Status::NotExportable), "slides"),
            e("docx", "wiki", Some(Status::Failed), "export denied (job_status 122)"),
            e("sheet", "wiki", Some(Status::Failed), "export denied (job_status 122)"),
            e("shortcut", "drive", Some(Status::Exported), "shortcut"),
        ]);
        assert_eq!(
            (s.folders, s.files, s.exported, s.downloaded, s.not_exportable, s.failed, s.shortcuts),
            (2, 5, 1, 1, 1, 2, 1)
        );
        assert_eq!(s.failures["export denied"], 2);
        assert!(s.lines()[1].contains("2× export denied"));
    }
}
