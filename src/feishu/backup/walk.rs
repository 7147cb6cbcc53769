//! Traversal: Drive from the root folder (both pagination styles), the
//! personal library and wiki spaces node by node (`has_child`), producing a
//! [`DocJob`] per document for the fetchers (sent while the walk goes on, so
//! fetching starts at once) and an [`Entry`] per folder and shortcut.
//!
//! Every token is claimed once (`visited`): a shortcut is followed only if
//! its target was not reached otherwise, so a shortcut to an ancestor or to
//! itself ends there. Shortcuts wait until the plain walk is done, so a
//! document reached both ways is stored at its own place, run after run.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use reqwest::Method;
use serde_json::Value;
use tokio::sync::mpsc;

use super::manifest::{Entry, Status};
use super::names::DirNames;
use super::wire::Wire;
use super::{Source, routes};
use crate::feishu::FeishuError;
use crate::feishu::client::{int_field, str_field};

/// Pages one listing may take before the walk assumes a server loop.
const MAX_PAGES: usize = 10_000;

/// A document to fetch.
#[derive(Debug, Clone)]
pub struct DocJob {
    /// The document token (wiki: obj_token).
    pub token: String,
    /// The node listed (drive token or wiki node token).
    pub node_token: String,
    /// `drive` or `wiki`.
    pub kind: &'static str,
    /// Feishu type.
    pub doc_type: String,
    /// Title.
    pub title: String,
    /// Relative path of the file to write (planned name).
    pub path: String,
    /// Relative path for a plain download when an export fails (types with no known export).
    pub fallback_path: Option<String>,
    /// Feishu's modified time (unix seconds; 0 unknown).
    pub modified: i64,
}

/// How a type is backed up (API.md §6.3/6.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Export as this extension.
    Export(&'static str),
    /// Plain download.
    Download,
    /// Try a pdf export, then a plain download.
    ExportOrDownload,
    /// Listed, never fetched.
    NotExportable,
}

/// The plan for a Feishu type.
pub fn plan(doc_type: &str) -> Plan {
    match doc_type {
        "doc" | "docx" => Plan::Export("docx"),
        "sheet" | "bitable" => Plan::Export("xlsx"),
        "file" => Plan::Download,
        "slides" | "mindnote" => Plan::NotExportable,
        _ => Plan::ExportOrDownload,
    }
}

/// Whether `s` may go into a URL path: tokens are ASCII letters, digits, `_` and `-`.
pub fn is_token(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A shortcut seen during the walk, resolved afterwards.
#[derive(Debug, Clone)]
struct Shortcut {
    kind: &'static str,
    token: String,
    title: String,
    dir: String,
    /// Names reserved for it in its directory: (as a document, as a directory).
    name_doc: String,
    name_dir: String,
    target_type: String,
    target_token: String,
    /// Wiki: the origin node and its space.
    origin: Option<(String, String)>,
    modified: i64,
}

/// The walk's shared state.
pub struct Walker {
    wire: Arc<Wire>,
    jobs: mpsc::Sender<DocJob>,
    visited: Mutex<HashSet<String>>,
    /// Where each document token is stored (for shortcut entries).
    placed: Mutex<HashMap<String, String>>,
    entries: Mutex<Vec<Entry>>,
    shortcuts: Mutex<Vec<Shortcut>>,
    /// Names of the space directories under `wiki/`.
    space_names: Mutex<DirNames>,
    progress: Arc<super::Progress>,
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() { name.to_owned() } else { format!("{dir}/{name}") }
}

fn ext_of(p: Plan) -> &'static str {
    match p {
        Plan::Export(e) => match e {
            "docx" => ".docx",
            "xlsx" => ".xlsx",
            _ => ".pdf",
        },
        Plan::ExportOrDownload => ".pdf",
        Plan::Download | Plan::NotExportable => "",
    }
}

impl Walker {
    /// A walker sending jobs into `jobs`.
    pub fn new(wire: Arc<Wire>, jobs: mpsc::Sender<DocJob>, progress: Arc<super::Progress>) -> Arc<Walker> {
        Arc::new(Walker {
            wire,
            jobs,
            visited: Mutex::default(),
            placed: Mutex::default(),
            entries: Mutex::default(),
            shortcuts: Mutex::default(),
            space_names: Mutex::default(),
            progress,
        })
    }

    fn claim(&self, token: &str) -> bool {
        self.visited.lock().unwrap_or_else(|e| e.into_inner()).insert(token.to_owned())
    }

    fn entry(&self, e: Entry) {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).push(e);
    }

    /// The folder, space and shortcut entries (after [`Walker::run`]).
    pub fn take_entries(&self) -> Vec<Entry> {
        std::mem::take(&mut *self.entries.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Where each document is stored.
    pub fn placed(&self) -> HashMap<String, String> {
        self.placed.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn failed(
        &self,
        kind: &'static str,
        token: &str,
        node_type: &str,
        title: &str,
        path: &str,
        reason: String,
    ) {
        self.entry(Entry {
            token: token.to_owned(),
            kind,
            node_type: node_type.to_owned(),
            title: title.to_owned(),
            path: path.to_owned(),
            status: Some(Status::Failed),
            reason,
            bytes: None,
            sha256: None,
            obj_token: None,
        });
    }

    fn container(&self, kind: &'static str, token: &str, node_type: &str, title: &str, path: &str) {
        self.entry(Entry {
            token: token.to_owned(),
            kind,
            node_type: node_type.to_owned(),
            title: title.to_owned(),
            path: path.to_owned(),
            status: None,
            reason: String::new(),
            bytes: None,
            sha256: None,
            obj_token: None,
        });
    }

    /// Queues a document (once per token) at `dir` under a name taken from `names`.
    #[allow(clippy::too_many_arguments)]
    async fn doc(
        &self,
        kind: &'static str,
        node_token: &str,
        token: &str,
        doc_type: &str,
        title: &str,
        path: String,
        fallback_path: Option<String>,
        modified: i64,
    ) {
        self.placed.lock().unwrap_or_else(|e| e.into_inner()).insert(token.to_owned(), path.clone());
        let job = DocJob {
            token: token.to_owned(),
            node_token: node_token.to_owned(),
            kind,
            doc_type: doc_type.to_owned(),
            title: title.to_owned(),
            path,
            fallback_path,
            modified,
        };
        self.progress.found.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let _ = self.jobs.send(job).await;
    }

    /// Walks `source`, then resolves the shortcuts found (which may walk more).
    pub async fn run(self: &Arc<Self>, source: &Source) -> Result<(), FeishuError> {
        let want_drive = matches!(source, Source::Drive | Source::All);
        let want_lib = matches!(source, Source::MyLibrary | Source::All);
        let (drive, wiki) =
            tokio::join!(async { if want_drive { self.drive("drive").await } else { Ok(()) } }, async {
                if want_lib {
                    self.wiki_space("my_library", "my_library", "My Library", false).await?;
                }
                match source {
                    Source::All => {
                        for (id, name) in self.spaces().await? {
                            self.wiki_space(&id, "wiki", &name, true).await?;
                        }
                        Ok(())
                    }
                    Source::Wiki(id) => {
                        let name = self.space_name(id).await?;
                        self.wiki_space(id, "wiki", &name, true).await
                    }
                    _ => Ok(()),
                }
            });
        drive?;
        wiki?;
        self.resolve_shortcuts().await;
        Ok(())
    }

    async fn drive(&self, dir: &str) -> Result<(), FeishuError> {
        let meta = self
            .wire
            .json(Method::GET, routes::ROOT_META, "/open-apis/drive/explorer/v2/root_folder/meta", &[], None)
            .await?;
        let root = str_field(&meta["data"], "token").filter(|t| is_token(t)).ok_or_else(|| {
            FeishuError::Malformed { route: routes::ROOT_META, what: "no usable root folder token".into() }
        })?;
        self.claim(&root);
        self.container("drive", &root, "folder", "My Space", dir);
        // The root is listed without a folder token (then Feishu does not paginate).
        let mut stack = vec![(String::new(), root, dir.to_owned())];
        while let Some((folder_token, token, dir)) = stack.pop() {
            match self.list_drive(&folder_token).await {
                Ok(children) => {
                    let mut names = DirNames::default();
                    for c in children {
                        if let Some(next) = self.drive_child(&c, &dir, &mut names).await {
                            stack.push(next);
                        }
                    }
                }
                Err(e) => self.failed(
                    "drive",
                    &token,
                    "folder",
                    "",
                    &dir,
                    format!("listing the folder failed ({e})"),
                ),
            }
        }
        Ok(())
    }

    /// Handles one listed drive item; a folder to walk comes back.
    async fn drive_child(
        &self,
        c: &Value,
        dir: &str,
        names: &mut DirNames,
    ) -> Option<(String, String, String)> {
        let token = str_field(c, "token").unwrap_or_default();
        let node_type = str_field(c, "type").unwrap_or_default();
        let title = str_field(c, "name").unwrap_or_default();
        if !is_token(&token) || node_type.is_empty() {
            let shown: String = token.chars().take(64).collect();
            self.failed(
                "drive",
                &shown,
                &node_type,
                &title,
                dir,
                "malformed listing item (token or type missing or not an identifier)".into(),
            );
            return None;
        }
        let modified = int_field(c, "modified_time").unwrap_or(0);
        match node_type.as_str() {
            "folder" => {
                if !self.claim(&token) {
                    return None;
                }
                let path = join(dir, &names.take(&title, "", &token));
                self.container("drive", &token, "folder", &title, &path);
                Some((token.clone(), token, path))
            }
            "shortcut" => {
                let info = &c["shortcut_info"];
                let target_type = str_field(info, "target_type").unwrap_or_default();
                let target_token = str_field(info, "target_token").unwrap_or_default();
                let p = plan(&target_type);
                let name_doc = names.take(&title, ext_of(p), &token);
                let name_dir = if target_type == "folder" { name_doc.clone() } else { String::new() };
                self.shortcuts.lock().unwrap_or_else(|e| e.into_inner()).push(Shortcut {
                    kind: "drive",
                    token,
                    title,
                    dir: dir.to_owned(),
                    name_doc,
                    name_dir,
                    target_type,
                    target_token,
                    origin: None,
                    modified,
                });
                None
            }
            _ => {
                if !self.claim(&token) {
                    return None;
                }
                let p = plan(&node_type);
                let path = join(dir, &names.take(&title, ext_of(p), &token));
                let fallback =
                    (p == Plan::ExportOrDownload).then(|| join(dir, &names.take(&title, "", &token)));
                self.doc("drive", &token, &token, &node_type, &title, path, fallback, modified).await;
                None
            }
        }
    }

    async fn list_drive(&self, folder_token: &str) -> Result<Vec<Value>, FeishuError> {
        let path = "/open-apis/drive/v1/files";
        let filter = ("folder_token", folder_token);
        self.list_pages(routes::DRIVE_LIST, path, 200, filter, "files", "next_page_token").await
    }

    /// Every item of a paged listing: `page_size`, an optional filter
    /// parameter (left out when empty), `items_key` in each page, the next
    /// page's token under `token_key` (Drive says `next_page_token`, Wiki
    /// `page_token`). A token seen twice or more than [`MAX_PAGES`] pages is a
    /// malformed answer, never an endless walk.
    async fn list_pages(
        &self,
        route: &'static str,
        path: &str,
        page_size: u32,
        (filter_key, filter): (&'static str, &str),
        items_key: &str,
        token_key: &str,
    ) -> Result<Vec<Value>, FeishuError> {
        let mut items = Vec::new();
        let mut page_token = String::new();
        let mut seen = HashSet::new();
        for _ in 0..MAX_PAGES {
            let mut q = vec![("page_size", page_size.to_string())];
            if !filter.is_empty() {
                q.push((filter_key, filter.to_owned()));
            }
            if !page_token.is_empty() {
                q.push(("page_token", page_token.clone()));
            }
            let v = self.wire.json(Method::GET, route, path, &q, None).await?;
            let data = &v["data"];
            if let Some(list) = data[items_key].as_array() {
                items.extend(list.iter().cloned());
            }
            let more = data["has_more"].as_bool().unwrap_or(false);
            match str_field(data, token_key).filter(|t| !t.is_empty()) {
                Some(t) if more => {
                    if !seen.insert(t.clone()) {
                        return Err(FeishuError::Malformed {
                            route,
                            what: "the same page token twice".into(),
                        });
                    }
                    page_token = t;
                }
                _ => return Ok(items),
            }
        }
        Err(FeishuError::Malformed { route, what: format!("more than {MAX_PAGES} pages") })
    }

    /// Team spaces `(space_id, name)`.
    async fn spaces(&self) -> Result<Vec<(String, String)>, FeishuError> {
        let mut out = Vec::new();
        let mut page_token = String::new();
        let mut seen = HashSet::new();
        for _ in 0..MAX_PAGES {
            let mut q = vec![("page_size", "50".to_owned())];
            if !page_token.is_empty() {
                q.push(("page_token", page_token.clone()));
            }
            let v = self
                .wire
                .json(Method::GET, routes::WIKI_SPACES, "/open-apis/wiki/v2/spaces", &q, None)
                .await?;
            let data = &v["data"];
            for s in data["items"].as_array().into_iter().flatten() {
                if let Some(id) = str_field(s, "space_id").filter(|i| is_token(i)) {
                    out.push((id, str_field(s, "name").unwrap_or_default()));
                }
            }
            match str_field(data, "page_token").filter(|t| !t.is_empty()) {
                Some(t) if data["has_more"].as_bool().unwrap_or(false) && seen.insert(t.clone()) => {
                    page_token = t
                }
                _ => return Ok(out),
            }
        }
        Ok(out)
    }

    async fn space_name(&self, space_id: &str) -> Result<String, FeishuError> {
        if !is_token(space_id) {
            return Err(FeishuError::Invalid(format!("{space_id:?} is not a wiki space id")));
        }
        let v = self
            .wire
            .json(
                Method::GET,
                routes::WIKI_SPACE,
                &format!("/open-apis/wiki/v2/spaces/{space_id}"),
                &[],
                None,
            )
            .await?;
        Ok(str_field(&v["data"]["space"], "name").unwrap_or_else(|| space_id.to_owned()))
    }

    async fn list_wiki(&self, space_id: &str, parent: &str) -> Result<Vec<Value>, FeishuError> {
        let path = format!("/open-apis/wiki/v2/spaces/{space_id}/nodes");
        let filter = ("parent_node_token", parent);
        self.list_pages(routes::WIKI_NODES, &path, 50, filter, "items", "page_token").await
    }

    /// Walks one space into `top_dir/<space name>` (or `top_dir` itself for the library).
    async fn wiki_space(
        &self,
        space_id: &str,
        top_dir: &str,
        title: &str,
        named: bool,
    ) -> Result<(), FeishuError> {
        let dir = if named {
            let n = self.space_names.lock().unwrap_or_else(|e| e.into_inner()).take(title, "", space_id);
            join(top_dir, &n)
        } else {
            top_dir.to_owned()
        };
        self.container_space(space_id, title, &dir);
        self.wiki_from(space_id, String::new(), dir).await;
        Ok(())
    }

    fn container_space(&self, space_id: &str, title: &str, dir: &str) {
        self.entry(Entry {
            token: space_id.to_owned(),
            kind: "wiki_space",
            node_type: "space".into(),
            title: title.to_owned(),
            path: dir.to_owned(),
            status: None,
            reason: String::new(),
            bytes: None,
            sha256: None,
            obj_token: None,
        });
    }

    /// Walks the nodes under `parent` (empty: the top level) of `space_id` into `dir`.
    async fn wiki_from(&self, space_id: &str, parent: String, dir: String) {
        let mut stack = vec![(parent, dir)];
        while let Some((parent, dir)) = stack.pop() {
            let items = match self.list_wiki(space_id, &parent).await {
                Ok(items) => items,
                Err(e) => {
                    self.failed(
                        "wiki",
                        if parent.is_empty() { space_id } else { &parent },
                        "wiki",
                        "",
                        &dir,
                        format!("listing the wiki nodes failed ({e})"),
                    );
                    continue;
                }
            };
            let mut names = DirNames::default();
            for n in items {
                if let Some(next) = self.wiki_node(&n, space_id, &dir, &mut names).await {
                    stack.push(next);
                }
            }
        }
    }

    /// Handles one wiki node; a node whose children to walk comes back.
    async fn wiki_node(
        &self,
        n: &Value,
        space_id: &str,
        dir: &str,
        names: &mut DirNames,
    ) -> Option<(String, String)> {
        let node_token = str_field(n, "node_token").unwrap_or_default();
        let obj_token = str_field(n, "obj_token").unwrap_or_default();
        let obj_type = str_field(n, "obj_type").unwrap_or_default();
        let title = str_field(n, "title").unwrap_or_default();
        let has_child = n["has_child"].as_bool().unwrap_or(false);
        let modified = int_field(n, "obj_edit_time").unwrap_or(0);
        if !is_token(&node_token) || !is_token(&obj_token) || obj_type.is_empty() {
            let shown: String = node_token.chars().take(64).collect();
            self.failed(
                "wiki",
                &shown,
                &obj_type,
                &title,
                dir,
                "malformed wiki node (node_token, obj_token or obj_type missing or not an identifier)".into(),
            );
            return None;
        }
        if str_field(n, "node_type").as_deref() == Some("shortcut") {
            let origin = str_field(n, "origin_node_token").filter(|o| is_token(o)).unwrap_or_default();
            let origin_space = str_field(n, "origin_space_id")
                .filter(|o| is_token(o))
                .unwrap_or_else(|| space_id.to_owned());
            let p = plan(&obj_type);
            let name_doc = names.take(&title, ext_of(p), &node_token);
            let name_dir = names.take(&title, "", &node_token);
            self.shortcuts.lock().unwrap_or_else(|e| e.into_inner()).push(Shortcut {
                kind: "wiki",
                token: node_token,
                title,
                dir: dir.to_owned(),
                name_doc,
                name_dir,
                target_type: obj_type,
                target_token: obj_token,
                origin: Some((origin, origin_space)),
                modified,
            });
            return None;
        }
        if !self.claim(&node_token) {
            return None;
        }
        let p = plan(&obj_type);
        let path = join(dir, &names.take(&title, ext_of(p), &node_token));
        if self.claim(&obj_token) {
            let fallback =
                (p == Plan::ExportOrDownload).then(|| join(dir, &names.take(&title, "", &node_token)));
            self.doc("wiki", &node_token, &obj_token, &obj_type, &title, path, fallback, modified).await;
        } else {
            self.link("wiki", &node_token, &obj_type, &title, &obj_token, "document also reached elsewhere");
        }
        if has_child {
            let sub = join(dir, &names.take(&title, "", &node_token));
            self.container("wiki", &node_token, "wiki_node", &title, &sub);
            return Some((node_token, sub));
        }
        None
    }

    /// An entry pointing at a document stored elsewhere (its outcome is joined in at the end).
    fn link(&self, kind: &'static str, token: &str, node_type: &str, title: &str, target: &str, why: &str) {
        let path =
            self.placed.lock().unwrap_or_else(|e| e.into_inner()).get(target).cloned().unwrap_or_default();
        self.entry(Entry {
            token: token.to_owned(),
            kind,
            node_type: node_type.to_owned(),
            title: title.to_owned(),
            path,
            status: None,
            reason: format!("{why}: {target}"),
            bytes: None,
            sha256: None,
            obj_token: Some(target.to_owned()),
        });
    }

    /// Follows each shortcut whose target was not reached otherwise (once; walking a
    /// followed folder may find more shortcuts).
    async fn resolve_shortcuts(&self) {
        loop {
            let batch = std::mem::take(&mut *self.shortcuts.lock().unwrap_or_else(|e| e.into_inner()));
            if batch.is_empty() {
                return;
            }
            for s in batch {
                self.follow(s).await;
            }
        }
    }

    async fn follow(&self, s: Shortcut) {
        let shortcut_entry = |path: String, reason: String, obj: Option<String>| Entry {
            token: s.token.clone(),
            kind: s.kind,
            node_type: "shortcut".into(),
            title: s.title.clone(),
            path,
            status: None,
            reason,
            bytes: None,
            sha256: None,
            obj_token: obj,
        };
        if !is_token(&s.target_token) {
            self.failed(
                s.kind,
                &s.token,
                "shortcut",
                &s.title,
                &s.dir,
                "shortcut without a usable target".into(),
            );
            return;
        }
        let folderish = s.target_type == "folder";
        // Wiki shortcuts are claimed by their origin node (children hang there), drive ones by target.
        let claim_key = match &s.origin {
            Some((origin, _)) if !origin.is_empty() => origin.clone(),
            _ => s.target_token.clone(),
        };
        if !self.claim(&claim_key) || (!folderish && !self.claim_doc_of(&s)) {
            let path = self
                .placed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&s.target_token)
                .cloned()
                .unwrap_or_default();
            let what = if folderish { "folder" } else { s.target_type.as_str() };
            self.entry(shortcut_entry(
                path,
                format!("shortcut to {what} {} (reached already, followed once)", s.target_token),
                Some(s.target_token.clone()),
            ));
            return;
        }
        if folderish {
            let path = join(&s.dir, &s.name_dir);
            self.entry(shortcut_entry(
                path.clone(),
                format!("shortcut to folder {} (followed here)", s.target_token),
                None,
            ));
            self.container("drive", &s.target_token, "folder", &s.title, &path);
            let mut stack = vec![(s.target_token.clone(), s.target_token.clone(), path)];
            while let Some((folder_token, token, dir)) = stack.pop() {
                match self.list_drive(&folder_token).await {
                    Ok(children) => {
                        let mut names = DirNames::default();
                        for c in children {
                            if let Some(next) = self.drive_child(&c, &dir, &mut names).await {
                                stack.push(next);
                            }
                        }
                    }
                    Err(e) => self.failed(
                        "drive",
                        &token,
                        "folder",
                        "",
                        &dir,
                        format!("listing the folder failed ({e})"),
                    ),
                }
            }
            return;
        }
        let path = join(&s.dir, &s.name_doc);
        self.entry(shortcut_entry(
            path.clone(),
            format!("shortcut to {} {} (stored here)", s.target_type, s.target_token),
            Some(s.target_token.clone()),
        ));
        let fallback = (plan(&s.target_type) == Plan::ExportOrDownload).then(|| join(&s.dir, &s.name_dir));
        let node = match &s.origin {
            Some((origin, _)) if !origin.is_empty() => origin.clone(),
            _ => s.target_token.clone(),
        };
        self.doc(s.kind, &node, &s.target_token, &s.target_type, &s.title, path, fallback, s.modified).await;
        if let Some((origin, space)) = &s.origin
            && !origin.is_empty()
        {
            // The origin's children, if any, live under it: walk them beside the document.
            let sub = join(&s.dir, &s.name_dir);
            self.wiki_from(space, origin.clone(), sub).await;
        }
    }

    /// For wiki shortcuts the document is claimed separately from the node.
    fn claim_doc_of(&self, s: &Shortcut) -> bool {
        if s.origin.is_some() { self.claim(&s.target_token) } else { true }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_and_tokens() {
        assert_eq!(plan("docx"), Plan::Export("docx"));
        assert_eq!(plan("bitable"), Plan::Export("xlsx"));
        assert_eq!(plan("file"), Plan::Download);
        assert_eq!(plan("slides"), Plan::NotExportable);
        assert_eq!(plan("whiteboard"), Plan::ExportOrDownload);
        assert!(is_token("doxcnAbc_12-3"));
        assert!(!is_token("../x") && !is_token("a/b") && !is_token("") && !is_token("a?b"));
    }
}
