//! Wiki (API.md §7): seeded team spaces with node trees (one node with more than 50 children, so
//! pagination at the maximum page size is exercised), a shortcut node, and a "My Library" per
//! person reachable only with that person's token.
//!
//! 131005 (not found) and 131006 (no permission, e.g. a bot asking for `my_library`) are the
//! fake's codes.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use rand::Rng;
use serde_json::{Value, json};

use super::auth::{Accept, Caller, check};
use super::docs::Docs;
use super::drive::new_doc;
use super::server::{ApiError, ApiResult, ok, page_offset, page_size, page_token};
use super::state::App;
use super::world::{World, digits, lower, tag};
use crate::seed::rng_for;

#[derive(Debug, Clone)]
pub(crate) struct Space {
    pub space_id: String,
    pub name: String,
    pub space_type: String,
    /// The person whose library this is (`space_type` person).
    pub library_of: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub space_id: String,
    pub node_token: String,
    pub obj_token: String,
    pub obj_type: String,
    pub parent: String,
    pub origin: Option<String>,
    pub created_s: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Wiki {
    pub spaces: Vec<Space>,
    pub nodes: Vec<Node>,
}

const OBJ_TYPES: [&str; 7] = ["docx", "sheet", "docx", "bitable", "mindnote", "file", "doc"];

impl Wiki {
    pub fn generate(seed: u64, world: &World, docs: &mut Docs) -> Wiki {
        let mut r = rng_for(&[seed, tag::WIKI]);
        let mut w = Wiki::default();
        let owner = world.users[0].open_id.clone();
        let mut n = 1000;
        let mut add =
            |w: &mut Wiki, r: &mut rand_chacha::ChaCha8Rng, space: &str, parent: &str, obj_type: &str| {
                n += 1;
                let obj_token = new_doc(r, docs, obj_type, n, &owner, false);
                let node_token = format!("wikcn{}", lower(r, 22));
                let created_s = 1_752_000_000 + r.random_range(0..1_000_000u64);
                w.nodes.push(Node {
                    space_id: space.into(),
                    node_token: node_token.clone(),
                    obj_token,
                    obj_type: obj_type.into(),
                    parent: parent.into(),
                    origin: None,
                    created_s,
                });
                node_token
            };
        for (name, top, runbooks) in [("Engineering", 8, true), ("Handbook", 5, false)] {
            let space_id = digits(&mut r, 19);
            w.spaces.push(Space {
                space_id: space_id.clone(),
                name: name.into(),
                space_type: "team".into(),
                library_of: None,
            });
            for i in 0..top {
                let node = add(&mut w, &mut r, &space_id, "", OBJ_TYPES[i % OBJ_TYPES.len()]);
                if i == 0 {
                    let count = if runbooks { 55 } else { 3 };
                    for j in 0..count {
                        let child = add(&mut w, &mut r, &space_id, &node, OBJ_TYPES[j % 4]);
                        if j == 0 {
                            add(&mut w, &mut r, &space_id, &child, "docx");
                        }
                    }
                }
            }
            let first = w.nodes.iter().find(|x| x.space_id == space_id && x.obj_type == "docx").cloned();
            if let Some(origin) = first {
                w.nodes.push(Node {
                    node_token: format!("wikcn{}", lower(&mut r, 22)),
                    parent: String::new(),
                    origin: Some(origin.node_token.clone()),
                    created_s: origin.created_s + 1,
                    ..origin
                });
            }
        }
        for u in &world.users {
            let space_id = digits(&mut r, 19);
            w.spaces.push(Space {
                space_id: space_id.clone(),
                name: "My Library".into(),
                space_type: "person".into(),
                library_of: Some(u.open_id.clone()),
            });
            add(&mut w, &mut r, &space_id, "", "docx");
            add(&mut w, &mut r, &space_id, "", "sheet");
        }
        w
    }

    pub fn has_child(&self, node_token: &str) -> bool {
        self.nodes.iter().any(|n| n.parent == node_token)
    }
}

fn node_json(app: &App, w: &Wiki, docs: &Docs, n: &Node) -> Value {
    let d = docs.map.get(&n.obj_token);
    let owner = d.map(|d| d.owner.clone()).unwrap_or_default();
    json!({
        "space_id": n.space_id, "node_token": n.node_token, "obj_token": n.obj_token, "obj_type": n.obj_type,
        "parent_node_token": n.parent, "node_type": if n.origin.is_some() { "shortcut" } else { "origin" },
        "origin_node_token": n.origin.clone().unwrap_or_else(|| n.node_token.clone()), "origin_space_id": n.space_id,
        "has_child": w.has_child(&n.node_token), "title": d.map(|d| d.title.clone()).unwrap_or_default(),
        "obj_create_time": d.map_or(0, |d| d.created_s).to_string(), "obj_edit_time": d.map_or(0, |d| d.modified_s).to_string(),
        "node_create_time": n.created_s.to_string(), "creator": owner, "owner": owner, "node_creator": owner,
        "url": format!("{}/wiki/{}", app.base_url, n.node_token),
    })
}

fn space_json(s: &Space) -> Value {
    json!({"name": s.name, "description": "", "space_id": s.space_id, "space_type": s.space_type, "visibility": if s.library_of.is_some() { "private" } else { "public" }, "open_sharing": "closed"})
}

/// Resolves `my_library` and checks the caller may read the space.
fn resolve<'a>(w: &'a Wiki, space_id: &str, caller: &Caller) -> Result<&'a Space, ApiError> {
    let s = if space_id == "my_library" {
        let Caller::User(o) = caller else {
            return Err(ApiError::bad(131006, "permission denied: my_library needs a user_access_token"));
        };
        w.spaces.iter().find(|s| s.library_of.as_deref() == Some(o.as_str()))
    } else {
        w.spaces.iter().find(|s| s.space_id == space_id)
    };
    let s = s.ok_or_else(|| ApiError::bad(131005, "not found"))?;
    match (&s.library_of, caller) {
        (None, _) => Ok(s),
        (Some(o), Caller::User(u)) if o == u => Ok(s),
        _ => Err(ApiError::bad(131006, "permission denied")),
    }
}

/// `GET /open-apis/wiki/v2/spaces` (team spaces; never "My Library").
pub(crate) async fn spaces(
    State(app): State<App>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    let mut inner = app.lock();
    check(&app, &mut inner, &headers, Accept::TenantOrUser)?;
    let size = page_size(q.get("page_size").map(String::as_str), 20, 50)?;
    let offset = page_offset(q.get("page_token").map(String::as_str))?;
    let all: Vec<&Space> = inner.wiki.spaces.iter().filter(|s| s.library_of.is_none()).collect();
    let end = (offset + size).min(all.len());
    let items: Vec<Value> = all[offset.min(end)..end].iter().copied().map(space_json).collect();
    let has_more = end < all.len();
    Ok(ok(
        json!({"items": items, "page_token": if has_more { page_token(end) } else { String::new() }, "has_more": has_more}),
    ))
}

/// `GET /open-apis/wiki/v2/spaces/:space_id` (also `my_library`).
pub(crate) async fn space(
    State(app): State<App>,
    headers: HeaderMap,
    Path(space_id): Path<String>,
) -> ApiResult {
    let mut inner = app.lock();
    let caller = check(&app, &mut inner, &headers, Accept::TenantOrUser)?;
    let s = resolve(&inner.wiki, &space_id, &caller)?;
    Ok(ok(json!({"space": space_json(s)})))
}

/// `GET /open-apis/wiki/v2/spaces/:space_id/nodes?parent_node_token=`.
pub(crate) async fn nodes(
    State(app): State<App>,
    headers: HeaderMap,
    Path(space_id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    let mut inner = app.lock();
    let caller = check(&app, &mut inner, &headers, Accept::TenantOrUser)?;
    let space = resolve(&inner.wiki, &space_id, &caller)?.space_id.clone();
    let size = page_size(q.get("page_size").map(String::as_str), 20, 50)?;
    let offset = page_offset(q.get("page_token").map(String::as_str))?;
    let parent = q.get("parent_node_token").cloned().unwrap_or_default();
    if !parent.is_empty() && !inner.wiki.nodes.iter().any(|n| n.node_token == parent && n.space_id == space) {
        return Err(ApiError::bad(131005, "parent node not found"));
    }
    let all: Vec<&Node> =
        inner.wiki.nodes.iter().filter(|n| n.space_id == space && n.parent == parent).collect();
    let end = (offset + size).min(all.len());
    let items: Vec<Value> =
        all[offset.min(end)..end].iter().map(|n| node_json(&app, &inner.wiki, &inner.docs, n)).collect();
    let has_more = end < all.len();
    Ok(ok(
        json!({"items": items, "page_token": if has_more { page_token(end) } else { String::new() }, "has_more": has_more}),
    ))
}

/// `GET /open-apis/wiki/v2/spaces/get_node?token=&obj_type=`.
pub(crate) async fn get_node(
    State(app): State<App>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    let mut inner = app.lock();
    let caller = check(&app, &mut inner, &headers, Accept::TenantOrUser)?;
    let token = q.get("token").cloned().unwrap_or_default();
    let obj_type = q.get("obj_type").cloned().unwrap_or_else(|| "wiki".into());
    let node = inner
        .wiki
        .nodes
        .iter()
        .find(|n| {
            if obj_type == "wiki" {
                n.node_token == token
            } else {
                n.obj_token == token && n.obj_type == obj_type && n.origin.is_none()
            }
        })
        .ok_or_else(|| ApiError::bad(131005, "node not found"))?;
    resolve(&inner.wiki, &node.space_id, &caller)?;
    Ok(ok(json!({"node": node_json(&app, &inner.wiki, &inner.docs, node)})))
}

/// The wiki part of a grown tree (`drive::grow`): a team space "Knowledge base" of `count`
/// nodes nested up to 6 deep (one node with more children than the 50-item page), every type,
/// hostile titles, shortcut nodes to nodes of this and another space, and a deeper My Library
/// for the first person.
pub(crate) fn grow(
    r: &mut rand_chacha::ChaCha8Rng,
    docs: &mut Docs,
    w: &mut Wiki,
    world: &World,
    count: usize,
) {
    if count == 0 {
        return;
    }
    let owner = world.users[0].open_id.clone();
    let space_id = digits(r, 19);
    w.spaces.push(Space {
        space_id: space_id.clone(),
        name: "Knowledge base".into(),
        space_type: "team".into(),
        library_of: None,
    });
    let library =
        w.spaces.iter().find(|s| s.library_of.as_deref() == Some(owner.as_str())).map(|s| s.space_id.clone());
    let other = w.nodes.first().cloned();
    let mut mine: Vec<(String, usize)> = Vec::new();
    let mut lib: Vec<(String, usize)> = Vec::new();
    let count = count.saturating_sub(1);
    for i in 0..count {
        let in_library = library.is_some() && i % 10 == 9;
        let space = if in_library { library.clone().unwrap_or_default() } else { space_id.clone() };
        let pool = if in_library { &lib } else { &mine };
        let parent = if pool.is_empty() || i % 20 == 0 {
            (String::new(), 0)
        } else if !in_library && i < 70 {
            pool[0].clone()
        } else {
            let p = pool[r.random_range(0..pool.len())].clone();
            if p.1 >= 6 { (String::new(), 0) } else { p }
        };
        if i % 40 == 39 && !pool.is_empty() {
            let origin = if i % 80 == 79 {
                other.clone()
            } else {
                w.nodes.iter().find(|n| n.node_token == pool[r.random_range(0..pool.len())].0).cloned()
            };
            if let Some(o) = origin {
                w.nodes.push(Node {
                    space_id: space.clone(),
                    node_token: format!("wikcn{}", lower(r, 22)),
                    parent: parent.0.clone(),
                    origin: Some(o.node_token.clone()),
                    created_s: o.created_s + 1,
                    obj_token: o.obj_token.clone(),
                    obj_type: o.obj_type.clone(),
                });
                continue;
            }
        }
        let obj_type = OBJ_TYPES[i % OBJ_TYPES.len()];
        let obj_token = new_doc(r, docs, obj_type, 20_000 + i, &owner, false);
        if let Some(d) = docs.map.get_mut(&obj_token) {
            d.size = r.random_range(1_000..40_000);
            if i % 31 == 7 {
                d.title = super::drive::hostile_title(i / 31);
            }
            if super::docs::exportable(obj_type) && i % 89 == 21 {
                d.export_block = Some(122);
            }
        }
        let node_token = format!("wikcn{}", lower(r, 22));
        w.nodes.push(Node {
            space_id: space.clone(),
            node_token: node_token.clone(),
            obj_token,
            obj_type: obj_type.into(),
            parent: parent.0.clone(),
            origin: None,
            created_s: 1_752_000_000 + r.random_range(0..1_000_000u64),
        });
        let entry = (node_token, parent.1 + 1);
        if in_library { lib.push(entry) } else { mine.push(entry) }
    }
}
