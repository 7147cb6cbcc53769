//! A faithful simulator of WeCom's chat-archive service (`qyapi.weixin.qq.com`) that Tencent's
//! real native SDK (`libWeWorkFinanceSdk_C.so`) talks to through its `proxy` argument.
//!
//! The SDK sends `CONNECT qyapi.weixin.qq.com:443` to the proxy and then speaks TLS; it checks
//! the certificate's name but not its chain (`shared/sdk/PROTOCOL.md` §5.5). The simulator is
//! that proxy: it terminates TLS with a self-signed certificate for the name and answers
//! `gettoken`, `getchatdata` and `getchatmediadata` the way the real service does, serving a
//! deterministic corpus of every message type with correctly encrypted records
//! ([`format`], PROTOCOL.md §2) and media (AES-128-ECB chunks, §5.3), with optional key
//! rotation, live traffic and deterministic faults ([`fault`]).
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use wework_archive_sim::{SimConfig, Simulator};
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let sim = Simulator::start(listener, SimConfig { corps: 2, messages: 5000, ..Default::default() }).await?;
//! let manifest = sim.manifest();          // proxy URL, corpids, secrets, private keys
//! let expected = sim.corpus();            // every record's plaintext, every media file's md5
//! // … point the SDK at manifest.proxy, pull, compare with `expected` …
//! println!("{:?}", sim.stats());
//! sim.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Map of the crate:
//! - [`sim`]: [`Simulator`] and [`SimConfig`]; [`cli`]: `sim serve`.
//! - `front`, `http`, `api`: proxy/TLS front, HTTP/1.x, the endpoints.
//! - [`corpus`]: message generation; [`media`]: seekable generated files.
//! - [`format`], [`keys`], [`proto`]: the cryptographic formats.
//! - [`fault`], [`stats`], [`manifest`], [`client`].
//! - [`feishu`]: the fake Feishu Open Platform (`sim feishu`).

#![deny(missing_docs)]

mod api;
pub mod cli;
pub mod client;
pub mod corpus;
mod crypto;
pub mod fault;
pub mod feishu;
pub mod format;
mod front;
mod http;
mod json;
pub mod keys;
pub mod manifest;
pub mod media;
pub mod proto;
mod seed;
pub mod sim;
mod state;
pub mod stats;

pub use api::encrypt_sign;
pub use cli::{ServeArgs, serve, serve_cli};
pub use corpus::{CorpCorpus, Corpus, MediaItem, MediaLocation, MsgKind, Record, RecordFault};
pub use fault::{FaultKind, FaultSpec, FaultSpecError};
pub use front::API_HOST;
pub use manifest::{Manifest, ManifestCorp, ManifestKey, WithheldKey};
pub use sim::{Rotation, SimConfig, Simulator};
pub use stats::{Endpoint, SimStats, Tunnel};
