//! The fake platform's shared state: one lock around everything that changes.
//!
//! Why one `std::sync::Mutex`: every handler does a little bookkeeping and never awaits while
//! holding it, and a single lock makes "the n-th id minted" a fixed function of the seed and the
//! order of calls.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use rand_chacha::ChaCha8Rng;
use tokio_util::sync::CancellationToken;

use super::world::{self, World, tag};
use super::{FeishuConfig, FeishuManifest, ManifestUser};
use crate::seed::rng_for;

/// What every handler gets.
pub(crate) struct Shared {
    pub config: FeishuConfig,
    pub world: World,
    pub base_url: String,
    pub cancel: CancellationToken,
    inner: Mutex<Inner>,
}

/// The mutable part.
pub(crate) struct Inner {
    /// Mints ids, tokens, codes and IVs in call order.
    pub ids: ChaCha8Rng,
    pub auth: super::auth::Tokens,
    pub limits: super::limits::Limits,
    pub im: super::im::Messages,
    pub events: super::events::EventLog,
    pub ws: super::ws::Connections,
    pub docs: super::docs::Docs,
    pub drive: super::drive::Drive,
    pub wiki: super::wiki::Wiki,
    pub exports: super::export::Exports,
    pub vc: super::vc::Meetings,
    log_seq: u64,
}

impl Inner {
    pub fn hex(&mut self, n: usize) -> String {
        world::hex(&mut self.ids, n)
    }

    pub fn alnum(&mut self, n: usize) -> String {
        world::alnum(&mut self.ids, n)
    }

    pub fn digits(&mut self, n: usize) -> String {
        world::digits(&mut self.ids, n)
    }

    pub fn lower(&mut self, n: usize) -> String {
        world::lower(&mut self.ids, n)
    }

    /// A Feishu-looking log id (`X-Tt-Logid`): time plus a sequence number.
    pub fn log_id(&mut self) -> String {
        self.log_seq += 1;
        format!("{}{:06X}", now_ms() / 1000, self.log_seq)
    }
}

impl Shared {
    pub fn new(config: FeishuConfig, base_url: String, cancel: CancellationToken) -> Shared {
        let seed = config.seed;
        let world = World::generate(seed);
        let mut docs = super::docs::Docs::default();
        let mut drive = super::drive::Drive::generate(seed, &world, &mut docs);
        let mut wiki = super::wiki::Wiki::generate(seed, &world, &mut docs);
        super::drive::grow(seed, &world, &mut docs, &mut drive, &mut wiki, config.tree_nodes);
        let inner = Inner {
            ids: rng_for(&[seed, tag::IDS]),
            auth: Default::default(),
            limits: Default::default(),
            im: Default::default(),
            events: Default::default(),
            ws: Default::default(),
            docs,
            drive,
            wiki,
            exports: Default::default(),
            vc: Default::default(),
            log_seq: 0,
        };
        Shared { config, world, base_url, cancel, inner: Mutex::new(inner) }
    }

    /// The state, even if a handler panicked while holding it (the fake keeps serving).
    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn manifest(&self) -> FeishuManifest {
        let w = &self.world;
        FeishuManifest {
            base_url: self.base_url.clone(),
            app_id: w.app_id.clone(),
            app_secret: w.app_secret.clone(),
            encrypt_key: w.encrypt_key.clone(),
            verification_token: w.verification_token.clone(),
            users: w
                .users
                .iter()
                .map(|u| ManifestUser { open_id: u.open_id.clone(), name: u.name.clone() })
                .collect(),
        }
    }
}

/// Shorthand for handlers.
pub(crate) type App = Arc<Shared>;

/// Unix time in milliseconds.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Unix time in seconds.
pub(crate) fn now_s() -> u64 {
    now_ms() / 1000
}
