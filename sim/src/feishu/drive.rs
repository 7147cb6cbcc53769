//! Drive (API.md §6.1–6.3): a seeded folder tree under the root "My Space", listing with
//! `next_page_token` pagination (none for the root), the root folder meta, and downloads of
//! uploaded files with `Range`.
//!
//! 1061003 (unknown folder or file) and 1061002 (not an uploaded file) are the fake's codes.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use rand::Rng;
use serde_json::{Value, json};

use super::auth::{Accept, check};
use super::docs::{Doc, Docs, serve_blob};
use super::server::{ApiError, ApiResult, ok, page_offset, page_size, page_token};
use super::state::App;
use super::world::{World, digits, lower, tag};
use crate::seed::rng_for;

/// One node of the tree (documents' titles and times live in [`Docs`]).
#[derive(Debug, Clone)]
pub(crate) struct DriveNode {
    pub token: String,
    pub node_type: String,
    pub parent: String,
    /// Folders and shortcuts.
    pub name: String,
    pub created_s: u64,
    pub shortcut: Option<(String, String)>,
}

/// The tree.
#[derive(Debug, Default)]
pub(crate) struct Drive {
    pub root: String,
    pub root_id: String,
    pub nodes: Vec<DriveNode>,
}

pub(crate) const TITLES: [&str; 12] = [
    "Quarterly report",
    "Roadmap",
    "Budget",
    "Meeting notes",
    "Design review",
    "Onboarding",
    "Release plan",
    "Customer list",
    "Contract",
    "周报",
    "项目计划",
    "Retrospective",
];

/// Token prefix of each type.
pub(crate) fn prefix(t: &str) -> &'static str {
    match t {
        "folder" => "fldcn",
        "docx" => "doxcn",
        "doc" => "doccn",
        "sheet" => "shtcn",
        "bitable" => "bascn",
        "mindnote" => "bmncn",
        "slides" => "sldcn",
        "file" => "boxcn",
        _ => "nodcn",
    }
}

/// Adds a seeded document of `obj_type` to `docs`; returns its token.
pub(crate) fn new_doc(
    r: &mut rand_chacha::ChaCha8Rng,
    docs: &mut Docs,
    obj_type: &str,
    n: usize,
    owner: &str,
    big: bool,
) -> String {
    let token = format!("{}{}", prefix(obj_type), lower(r, 22));
    let base = TITLES[n % TITLES.len()];
    let title = if obj_type == "file" {
        let ext = ["pdf", "zip", "txt", "png", "mp4"][n % 5];
        format!("{base} {n}.{ext}")
    } else {
        format!("{base} {n}")
    };
    let created_s = 1_750_000_000 + r.random_range(0..10_000_000u64);
    let size = if big { 2 * 1024 * 1024 + 12_345 } else { r.random_range(2_000..300_000) };
    docs.map.insert(
        token.clone(),
        Doc {
            obj_type: obj_type.to_string(),
            title,
            created_s,
            modified_s: created_s + r.random_range(0..1_000_000),
            version: 1,
            size,
            owner: owner.to_string(),
            export_block: None,
        },
    );
    token
}

const TYPES: [&str; 8] = ["docx", "sheet", "file", "bitable", "doc", "docx", "mindnote", "slides"];

impl Drive {
    pub fn generate(seed: u64, world: &World, docs: &mut Docs) -> Drive {
        let mut r = rng_for(&[seed, tag::DRIVE]);
        let owner = world.users[0].open_id.clone();
        let root = format!("nodcn{}", lower(&mut r, 22));
        let mut d = Drive { root: root.clone(), root_id: digits(&mut r, 19), nodes: Vec::new() };
        let mut n = 0;
        let folder = |d: &mut Drive, r: &mut rand_chacha::ChaCha8Rng, parent: &str, name: &str| {
            let token = format!("fldcn{}", lower(r, 22));
            let created_s = 1_749_000_000 + r.random_range(0..1_000_000u64);
            d.nodes.push(DriveNode {
                token: token.clone(),
                node_type: "folder".into(),
                parent: parent.into(),
                name: name.into(),
                created_s,
                shortcut: None,
            });
            token
        };
        let projects = folder(&mut d, &mut r, &root, "Projects");
        let archive = folder(&mut d, &mut r, &projects, "Archive 2025");
        let q1 = folder(&mut d, &mut r, &archive, "Q1");
        let shared = folder(&mut d, &mut r, &root, "Shared");
        let mut docs_in = |d: &mut Drive,
                           r: &mut rand_chacha::ChaCha8Rng,
                           parent: &str,
                           count: usize,
                           big_at: Option<usize>| {
            let mut tokens = Vec::new();
            for i in 0..count {
                let t = TYPES[(n + i) % TYPES.len()];
                let big = big_at == Some(i);
                let t = if big { "file" } else { t };
                let token = new_doc(r, docs, t, n + i, &owner, big);
                d.nodes.push(DriveNode {
                    token: token.clone(),
                    node_type: t.into(),
                    parent: parent.into(),
                    name: String::new(),
                    created_s: 0,
                    shortcut: None,
                });
                tokens.push(token);
            }
            n += count;
            tokens
        };
        let in_projects = docs_in(&mut d, &mut r, &projects, 24, None);
        docs_in(&mut d, &mut r, &archive, 5, None);
        docs_in(&mut d, &mut r, &q1, 3, None);
        docs_in(&mut d, &mut r, &shared, 4, None);
        docs_in(&mut d, &mut r, &root, 5, Some(2));
        let target = in_projects.iter().find(|t| t.starts_with("doxcn")).cloned().unwrap_or_default();
        d.nodes.push(DriveNode {
            token: format!("nodcn{}", lower(&mut r, 22)),
            node_type: "shortcut".into(),
            parent: root,
            name: "Link to roadmap".into(),
            created_s: 1_751_000_000,
            shortcut: Some(("docx".into(), target)),
        });
        d
    }

    /// `(title, created, modified)` of a node.
    pub fn meta(&self, node: &DriveNode, docs: &Docs) -> (String, u64, u64) {
        match docs.map.get(&node.token) {
            Some(doc) => (doc.title.clone(), doc.created_s, doc.modified_s),
            None => (node.name.clone(), node.created_s, node.created_s),
        }
    }
}

fn file_json(app: &App, node: &DriveNode, docs: &Docs, drive: &Drive) -> Value {
    let (title, created, modified) = drive.meta(node, docs);
    let owner = docs
        .map
        .get(&node.token)
        .map(|d| d.owner.clone())
        .unwrap_or_else(|| app.world.users[0].open_id.clone());
    let mut v = json!({
        "token": node.token, "name": title, "type": node.node_type, "parent_token": node.parent,
        "url": format!("{}/{}/{}", app.base_url, if node.node_type == "folder" { "drive/folder" } else { node.node_type.as_str() }, node.token),
        "created_time": created.to_string(), "modified_time": modified.to_string(), "owner_id": owner,
    });
    if let Some((t, tok)) = &node.shortcut {
        v["shortcut_info"] = json!({"target_type": t, "target_token": tok});
    }
    v
}

/// `GET /open-apis/drive/v1/files`.
pub(crate) async fn list(
    State(app): State<App>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    let mut inner = app.lock();
    check(&app, &mut inner, &headers, Accept::TenantOrUser)?;
    let folder = q.get("folder_token").filter(|f| !f.is_empty()).cloned();
    let is_root = folder.is_none() || folder.as_deref() == Some(inner.drive.root.as_str());
    let folder = folder.unwrap_or_else(|| inner.drive.root.clone());
    if !is_root && !inner.drive.nodes.iter().any(|n| n.token == folder && n.node_type == "folder") {
        return Err(ApiError::bad(1061003, "folder not found"));
    }
    let size = page_size(q.get("page_size").map(String::as_str), 100, 200)?;
    let offset = page_offset(q.get("page_token").map(String::as_str))?;
    let mut children: Vec<&DriveNode> = inner.drive.nodes.iter().filter(|n| n.parent == folder).collect();
    let key = |n: &&DriveNode| {
        let (_, c, m) = inner.drive.meta(n, &inner.docs);
        match q.get("order_by").map(String::as_str) {
            Some("CreatedTime") => c,
            _ => m,
        }
    };
    if q.contains_key("order_by") {
        children.sort_by_key(key);
        if q.get("direction").map(String::as_str) != Some("ASC") {
            children.reverse();
        }
    }
    let (page, has_more) = if is_root {
        (&children[..], false)
    } else {
        let end = (offset + size).min(children.len());
        (&children[offset.min(end)..end], end < children.len())
    };
    let files: Vec<Value> = page.iter().map(|n| file_json(&app, n, &inner.docs, &inner.drive)).collect();
    let mut data = json!({"files": files, "has_more": has_more});
    if has_more {
        data["next_page_token"] = json!(page_token(offset + size));
    }
    Ok(ok(data))
}

/// `GET /open-apis/drive/explorer/v2/root_folder/meta`.
pub(crate) async fn root_meta(State(app): State<App>, headers: HeaderMap) -> ApiResult {
    let mut inner = app.lock();
    check(&app, &mut inner, &headers, Accept::TenantOrUser)?;
    Ok(ok(
        json!({"token": inner.drive.root, "id": inner.drive.root_id, "user_id": app.world.users[0].user_id}),
    ))
}

/// `GET /open-apis/drive/v1/files/:file_token/download`.
pub(crate) async fn download(
    State(app): State<App>,
    headers: HeaderMap,
    Path(token): Path<String>,
) -> Response {
    let found = {
        let mut inner = app.lock();
        if let Err(e) = check(&app, &mut inner, &headers, Accept::TenantOrUser) {
            return e.into_response();
        }
        match inner.docs.map.get(&token) {
            None => Err(ApiError::new(StatusCode::NOT_FOUND, 1061003, "file not found")),
            Some(d) if d.obj_type != "file" => {
                Err(ApiError::bad(1061002, "only uploaded files can be downloaded; export online documents"))
            }
            Some(d) => Ok((inner.docs.file_blob(app.config.seed, &token), d.title.clone())),
        }
    };
    match found {
        Ok((Some(blob), name)) => serve_blob(blob, &headers, &name),
        Ok((None, _)) => ApiError::new(StatusCode::NOT_FOUND, 1061003, "file not found").into_response(),
        Err(e) => e.into_response(),
    }
}

/// Stream tag of the bulk content of a grown tree.
const BULK: u64 = 0xF010;

/// Folder names of a grown tree: colliding (also by case), hostile and non-ASCII ones.
const FOLDER_NAMES: [&str; 12] = [
    "Reports",
    "reports",
    "Team A",
    "../escape",
    "a/b\\c",
    "CON",
    "  padded  ",
    "资料",
    ".hidden",
    "Drafts",
    "Team A",
    "2026",
];

/// Titles a compromised or careless tenant may hold: traversal, separators, control characters,
/// reserved characters, dots only, a very long one.
pub(crate) fn hostile_title(i: usize) -> String {
    match i % 8 {
        0 => "../../etc/passwd".into(),
        1 => "a/b/c".into(),
        2 => "..".into(),
        3 => "nul\u{0}byte".into(),
        4 => "tab\tand\nnewline".into(),
        5 => "<>:\"|?*".into(),
        6 => "長い".repeat(150),
        _ => "".into(),
    }
}

/// Grows the standard tree to about `target` nodes (drive nodes, wiki nodes and spaces) with
/// seeded bulk content: about 70 % in Drive (nested folders up to 7 deep, one folder wider than
/// the 200-item page, every type, colliding and hostile titles, shortcuts to documents, a folder
/// shortcut to its own ancestor, one to itself and one to another branch; 2 % of exportable
/// documents refuse export with 122 or 107), the rest in the wiki (see `wiki::grow`).
pub(crate) fn grow(
    seed: u64,
    world: &World,
    docs: &mut Docs,
    drive: &mut Drive,
    wiki: &mut super::wiki::Wiki,
    target: usize,
) {
    let have = drive.nodes.len() + wiki.nodes.len() + wiki.spaces.len();
    if target <= have {
        return;
    }
    let extra = target - have;
    let mut r = rng_for(&[seed, BULK]);
    let owner = world.users[0].open_id.clone();
    let drive_n = extra * 7 / 10;
    let folder = |d: &mut Drive, r: &mut rand_chacha::ChaCha8Rng, parent: &str, name: &str| {
        let token = format!("fldcn{}", lower(r, 22));
        d.nodes.push(DriveNode {
            token: token.clone(),
            node_type: "folder".into(),
            parent: parent.into(),
            name: name.into(),
            created_s: 1_749_000_000 + r.random_range(0..1_000_000u64),
            shortcut: None,
        });
        token
    };
    let shortcut =
        |d: &mut Drive, r: &mut rand_chacha::ChaCha8Rng, parent: &str, name: &str, t: &str, tok: &str| {
            d.nodes.push(DriveNode {
                token: format!("nodcn{}", lower(r, 22)),
                node_type: "shortcut".into(),
                parent: parent.into(),
                name: name.into(),
                created_s: 1_751_000_000 + r.random_range(0..1_000_000u64),
                shortcut: Some((t.into(), tok.into())),
            });
        };
    let root = drive.root.clone();
    let bulk = folder(drive, &mut r, &root, "Bulk");
    let mut folders = vec![(bulk.clone(), 1usize)];
    let n_folders = (drive_n / 12).max(3);
    for i in 0..n_folders {
        let (parent, depth) = loop {
            let (p, d) = folders[r.random_range(0..folders.len())].clone();
            if d < 7 {
                break (p, d);
            }
        };
        let t = folder(drive, &mut r, &parent, FOLDER_NAMES[i % FOLDER_NAMES.len()]);
        folders.push((t, depth + 1));
    }
    let wide = folder(drive, &mut r, &bulk, "Wide");
    let deepest = folders.iter().max_by_key(|(_, d)| *d).map(|(t, _)| t.clone()).unwrap_or_default();
    let projects =
        drive.nodes.iter().find(|n| n.name == "Projects").map(|n| n.token.clone()).unwrap_or_default();
    shortcut(drive, &mut r, &deepest, "Back to Bulk", "folder", &bulk);
    shortcut(drive, &mut r, &wide, "Myself", "folder", &wide);
    shortcut(drive, &mut r, &bulk, "Projects again", "folder", &projects);
    let used = n_folders + 5;
    let count = drive_n.saturating_sub(used);
    let wide_n = if count > 600 { 230 } else { 0 };
    let mut tokens: Vec<String> = Vec::new();
    for i in 0..count {
        let parent =
            if i < wide_n { wide.clone() } else { folders[r.random_range(0..folders.len())].0.clone() };
        if i % 50 == 49 && !tokens.is_empty() {
            let target = tokens[r.random_range(0..tokens.len())].clone();
            let t = docs.map.get(&target).map(|d| d.obj_type.clone()).unwrap_or_default();
            shortcut(drive, &mut r, &parent, &format!("Link {i}"), &t, &target);
            continue;
        }
        let obj_type = TYPES[i % TYPES.len()];
        let token = new_doc(&mut r, docs, obj_type, 5000 + i, &owner, false);
        if let Some(d) = docs.map.get_mut(&token) {
            d.size = r.random_range(1_000..40_000);
            if i % 5 == 0 {
                // Same title as others in the folder: names must not collide on disk.
                d.title = if obj_type == "file" { "Budget.pdf".into() } else { "Budget".into() };
            } else if i % 37 == 3 {
                d.title = hostile_title(i / 37);
            }
            if super::docs::exportable(obj_type) && i % 97 == 13 {
                d.export_block = Some(if i % 2 == 0 { 122 } else { 107 });
            }
        }
        drive.nodes.push(DriveNode {
            token: token.clone(),
            node_type: obj_type.into(),
            parent,
            name: String::new(),
            created_s: 0,
            shortcut: None,
        });
        tokens.push(token);
    }
    super::wiki::grow(&mut r, docs, wiki, world, extra - drive_n);
}
