//! wework-archive: a compliance archive for WeCom (企业微信) chat records.
//!
//! The map, following the data:
//!
//! - [`wecom`]: Tencent's Finance SDK behind a safe layer ([`wecom::sdk`]),
//!   key handling, message parsing, the per-corp ingest workers and media.
//! - [`store`]: MySQL schema, migrations, corps, keys and per-corp message tables.
//! - [`model`]: plain data shared by the layers (media references), importing
//!   nothing of this crate, so [`store`] need not depend on [`wecom`].
//! - [`backoff`]: the capped, jittered retry waits everything shares.
//! - [`config`] and [`logging`]: settings (flag > env > file > default) and tracing.
//! - [`control`] and [`http`]: leases and change events across instances;
//!   `/healthz`, `/readyz` and `/metrics`.
//! - `sim` (the `wework-archive-sim` crate): the fake `qyapi.weixin.qq.com` that the
//!   real SDK talks to in tests and the demo.

pub mod archive;
pub mod backoff;
pub mod cli;
pub mod config;
pub mod control;
pub mod feishu;
pub mod hardening;
pub mod http;
pub mod logging;
pub mod model;
pub mod secrets;
pub mod store;
pub mod wecom;
