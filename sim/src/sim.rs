//! [`Simulator`]: builds the corpus, then serves it on a listener until shut down.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::corpus::{CorpSpec, Corpus, FIRST_VERSION, Generator, SECOND_VERSION, WITHHELD_VERSION};
use crate::fault::{FaultKind, FaultSpec};
use crate::front;
use crate::keys::{PemForm, RsaKey};
use crate::manifest::{Manifest, ManifestCorp, ManifestKey, WithheldKey};
use crate::seed::{rng_for, tag};
use crate::state::{Corp, CorpKey, Shared};
use crate::stats::SimStats;

/// When corps switch from key version 1 to version 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Rotation {
    /// Only version 1 exists.
    Never,
    /// At the middle of the initial corpus (`messages / 2`): a full pull mixes both versions.
    #[default]
    Middle,
    /// From this record index (0-based position in the corp's archive) on.
    AtMessage(usize),
}

/// What to simulate. `Default` gives 2 corps × 1000 messages, no faults, no live traffic.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Everything (ids, texts, media bytes, fault placement) derives from it.
    pub seed: u64,
    /// Number of corps.
    pub corps: usize,
    /// Records per corp at start.
    pub messages: usize,
    /// Live mode: new records per second per corp, appended while running.
    pub rate: Option<f64>,
    /// Fault rates.
    pub faults: FaultSpec,
    /// How late a `slow` fault answers (make it exceed the caller's SDK timeout).
    pub slow: Duration,
    /// Size in bytes of one extra-large video in corp 0 (e.g. 50 MiB in tests, 1 GiB in
    /// benchmarks). Its md5 is computed once and cached on disk.
    pub big_video: Option<u64>,
    /// Key rotation point.
    pub rotation: Rotation,
    /// Lifetime of access tokens (qyapi: 7200 s).
    pub token_ttl: Duration,
    /// Timestamp (ms) just before the first record.
    pub epoch_ms: i64,
    /// Write vote fields under a `vote` object instead of top level (sources disagree,
    /// FORMAT.md §4).
    pub vote_nested: bool,
    /// Write `chatrecord.item[].msgtime` in ms instead of seconds (FORMAT.md §4).
    pub chatrecord_msgtime_ms: bool,
    /// Distance to the server (issue #16): every API reply is sent this long after its
    /// request was handled, one round trip per request (the SDK makes one request per
    /// connection). Zero: loopback speed.
    pub latency: Duration,
    /// Bandwidth of each connection in megabits per second: reply bodies are paced to it
    /// (after the latency). None: as fast as the socket takes them.
    pub bandwidth_mbps: Option<f64>,
    /// Test steering: getchatmediadata requests for a range starting at this byte offset
    /// (of any file) answer HTTP 500 this many times before they are served — a range that
    /// fails repeatedly, the same way in every run.
    pub failing_media_offset: Option<(u64, u64)>,
    /// Test steering: getchatmediadata pages starting at this byte offset (of any file
    /// that long) are served with one plaintext byte flipped before encryption, as
    /// `md5_mismatch` does, the first this many times they are asked for: a corrupted
    /// range of a large file (right size, wrong md5), the same in every run.
    pub corrupt_media_offset: Option<(u64, u64)>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 1,
            corps: 2,
            messages: 1000,
            rate: None,
            faults: FaultSpec::none(),
            slow: Duration::from_secs(6),
            big_video: None,
            rotation: Rotation::Middle,
            token_ttl: Duration::from_secs(7200),
            // 2025-03-10 00:00:00 UTC.
            epoch_ms: 1_741_564_800_000,
            vote_nested: false,
            chatrecord_msgtime_ms: false,
            latency: Duration::ZERO,
            bandwidth_mbps: None,
            failing_media_offset: None,
            corrupt_media_offset: None,
        }
    }
}

impl SimConfig {
    fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!((1..=64).contains(&self.corps), "corps must be 1..=64, got {}", self.corps);
        anyhow::ensure!(self.messages <= 5_000_000, "messages must be at most 5,000,000");
        if let Some(r) = self.rate {
            anyhow::ensure!(
                r.is_finite() && r > 0.0 && r <= 100_000.0,
                "rate must be in (0, 100000], got {r}"
            );
        }
        if let Some(b) = self.bandwidth_mbps {
            anyhow::ensure!(
                b.is_finite() && b > 0.0,
                "bandwidth must be a positive number of Mbit/s, got {b}"
            );
        }
        anyhow::ensure!(self.latency <= Duration::from_secs(60), "latency must be at most 60 s");
        Ok(())
    }

    fn rotate_at(&self) -> Option<usize> {
        match self.rotation {
            Rotation::Never => None,
            Rotation::Middle => Some(self.messages / 2),
            Rotation::AtMessage(i) => Some(i),
        }
    }
}

struct Inner {
    shared: Arc<Shared>,
    addr: SocketAddr,
    cert_der: Vec<u8>,
    config: SimConfig,
    cancel: CancellationToken,
    tracker: TaskTracker,
}

impl Drop for Inner {
    /// Dropping the last handle stops the server.
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// A running simulator. Cheap to clone; all clones share one server. The server stops on
/// [`Simulator::shutdown`] or when the last clone is dropped.
#[derive(Clone)]
pub struct Simulator {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Simulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulator").field("addr", &self.inner.addr).finish_non_exhaustive()
    }
}

/// Corp id, secret: `ww` + 16 hex like real corpids, a 43-character secret.
fn corp_identity(seed: u64, corp: usize) -> (String, String) {
    let mut rng = rng_for(&[seed, tag::CORP, corp as u64, 0]);
    let corpid = format!("ww{:016x}", rng.random::<u64>());
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let secret = (0..43).map(|_| CHARS[rng.random_range(0..CHARS.len())] as char).collect();
    (corpid, secret)
}

/// Generates (or fetches from the process cache) the keys with these labels, in parallel.
async fn keys(seed: u64, labels: Vec<String>) -> anyhow::Result<Vec<Arc<RsaKey>>> {
    let mut set = JoinSet::new();
    for (i, label) in labels.into_iter().enumerate() {
        set.spawn_blocking(move || RsaKey::cached(seed, &label).map(|k| (i, k)));
    }
    let mut out = Vec::new();
    while let Some(r) = set.join_next().await {
        out.push(r??);
    }
    out.sort_by_key(|(i, _)| *i);
    Ok(out.into_iter().map(|(_, k)| k).collect())
}

impl Simulator {
    /// Builds the corpus and starts serving on `listener`, on the current tokio runtime.
    ///
    /// Start-up cost: RSA key generation (about 0.1 s per key, in parallel; keys are cached
    /// per process and seed) and the md5 of every media file (streamed; cached per process,
    /// and on disk for big files).
    pub async fn start(listener: TcpListener, config: SimConfig) -> anyhow::Result<Simulator> {
        config.validate()?;
        let addr = listener.local_addr()?;
        let started = Instant::now();
        let versions: Vec<u32> = match config.rotation {
            Rotation::Never => vec![FIRST_VERSION],
            _ => vec![FIRST_VERSION, SECOND_VERSION],
        };
        let withhold = config.faults.rate(FaultKind::UnknownVer) > 0.0;
        let strange = config.faults.rate(FaultKind::WrongKey) > 0.0;
        let mut labels = Vec::new();
        if strange {
            labels.push("stranger".to_string());
        }
        for c in 0..config.corps {
            labels.extend(versions.iter().map(|v| format!("corp{c}-v{v}")));
            if withhold {
                labels.push(format!("corp{c}-withheld"));
            }
        }
        let mut generated = keys(config.seed, labels).await?.into_iter();
        let stranger = if strange { generated.next() } else { None };

        let fault_rates = crate::corpus::RECORD_FAULTS.map(|f| config.faults.rate(f.kind()));
        let mut builds = JoinSet::new();
        for c in 0..config.corps {
            let spec = CorpSpec {
                seed: config.seed,
                corp: c,
                epoch_ms: config.epoch_ms,
                initial: config.messages,
                rotate_at: config.rotate_at(),
                fault_rates,
                big_video: config.big_video,
                vote_nested: config.vote_nested,
                chatrecord_ms: config.chatrecord_msgtime_ms,
            };
            builds.spawn_blocking(move || {
                let mut g = Generator::new(spec);
                let n = g.initial();
                let records: Vec<_> = (0..n).map(|_| g.next_record()).collect();
                (c, g, records)
            });
        }
        let mut built = Vec::new();
        while let Some(r) = builds.join_next().await {
            built.push(r?);
        }
        built.sort_by_key(|(c, ..)| *c);

        let mut corps = Vec::new();
        for (c, generator, records) in built {
            let (corpid, secret) = corp_identity(config.seed, c);
            let keys: Vec<CorpKey> = versions
                .iter()
                .map(|v| {
                    let form = if (c as u32 + v).is_multiple_of(2) { PemForm::Pkcs1 } else { PemForm::Pkcs8 };
                    CorpKey::new(*v, generated.next().expect("corp key"), form)
                })
                .collect();
            let withheld = withhold.then(|| {
                let form = if c % 2 == 0 { PemForm::Pkcs8 } else { PemForm::Pkcs1 };
                CorpKey::new(WITHHELD_VERSION, generated.next().expect("withheld key"), form)
            });
            corps.push(Corp {
                index: c,
                corpid,
                secret,
                corpname: generator.corpname().to_string(),
                keys,
                withheld,
                records: RwLock::new(records),
                generator: Mutex::new(generator),
            });
        }
        let shared = Arc::new(Shared::new(
            config.seed,
            config.faults.clone(),
            config.slow,
            config.token_ttl,
            corps,
            stranger,
        ));
        let (tls, cert_der) = front::tls_acceptor()?;
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let link = Arc::new(front::Link {
            latency: config.latency,
            bytes_per_sec: config.bandwidth_mbps.map(|m| m * 1e6 / 8.0),
            failing_media_offset: config.failing_media_offset,
            corrupt_media_offset: config.corrupt_media_offset,
        });
        tracker.spawn(accept_loop(listener, shared.clone(), tls, link, cancel.clone(), tracker.clone()));
        if let Some(rate) = config.rate {
            tracker.spawn(live(shared.clone(), rate, cancel.clone()));
        }
        tracing::info!(
            %addr,
            corps = config.corps,
            messages = config.messages,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "simulator listening"
        );
        Ok(Simulator { inner: Arc::new(Inner { shared, addr, cert_der, config, cancel, tracker }) })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// The proxy to give the SDK: `http://127.0.0.1:PORT` (loopback when bound to any address).
    pub fn proxy_url(&self) -> String {
        format!("http://{}", self.connect_addr())
    }

    /// The same listener as a SOCKS5 proxy with remote name resolution: `socks5h://…`.
    pub fn socks5_url(&self) -> String {
        format!("socks5h://{}", self.connect_addr())
    }

    fn connect_addr(&self) -> SocketAddr {
        let mut a = self.inner.addr;
        if a.ip().is_unspecified() {
            a.set_ip(if a.is_ipv4() { [127, 0, 0, 1].into() } else { std::net::Ipv6Addr::LOCALHOST.into() });
        }
        a
    }

    /// The self-signed server certificate (DER), for clients that want to pin it.
    pub fn certificate_der(&self) -> &[u8] {
        &self.inner.cert_der
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &SimConfig {
        &self.inner.config
    }

    /// Proxy URL, corp credentials and keys; `messages` is the current record count.
    pub fn manifest(&self) -> Manifest {
        let corps = self
            .inner
            .shared
            .corps
            .iter()
            .map(|c| ManifestCorp {
                corpid: c.corpid.clone(),
                secret: c.secret.clone(),
                corpname: c.corpname.clone(),
                keys: c
                    .keys
                    .iter()
                    .map(|k| ManifestKey { version: k.version, private_key_pem: k.pem.clone() })
                    .collect(),
                messages: c.records.read().expect("records").len(),
                undecryptable_msgids: c
                    .records
                    .read()
                    .expect("records")
                    .iter()
                    .filter(|r| r.fault.is_some_and(crate::RecordFault::undecryptable))
                    .map(|r| r.msgid.clone())
                    .collect(),
            })
            .collect();
        Manifest { proxy: self.proxy_url(), corps }
    }

    /// The expected archive: every record with its exact plaintext, and every media file.
    pub fn corpus(&self) -> Corpus {
        Corpus { corps: self.inner.shared.corps.iter().map(Corp::snapshot).collect() }
    }

    /// Counters so far.
    pub fn stats(&self) -> SimStats {
        self.inner.shared.stats()
    }

    /// Keys kept out of the manifest (one per corp when the `unknown_ver` fault is on).
    pub fn withheld_keys(&self) -> Vec<WithheldKey> {
        self.inner
            .shared
            .corps
            .iter()
            .filter_map(|c| {
                c.withheld.as_ref().map(|k| WithheldKey {
                    corpid: c.corpid.clone(),
                    version: k.version,
                    private_key_pem: k.pem.clone(),
                })
            })
            .collect()
    }

    /// Replaces the request-level fault rates (e.g. to let a client finish after a stormy
    /// phase). Record faults are baked into the corpus at start and are not affected.
    pub fn set_faults(&self, faults: FaultSpec) {
        *self.inner.shared.faults.write().expect("faults") = faults;
    }

    /// Appends `n` records to corp `corp` (deterministically: the same records live mode
    /// would have produced next).
    pub async fn append_messages(&self, corp: usize, n: usize) -> anyhow::Result<()> {
        anyhow::ensure!(corp < self.inner.shared.corps.len(), "no corp {corp}");
        let shared = self.inner.shared.clone();
        tokio::task::spawn_blocking(move || shared.append(corp, n)).await?;
        Ok(())
    }

    /// Stops accepting, cancels live traffic and in-flight replies, and waits for every task.
    pub async fn shutdown(self) {
        self.inner.cancel.cancel();
        self.inner.tracker.close();
        self.inner.tracker.wait().await;
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    tls: tokio_rustls::TlsAcceptor,
    link: Arc<front::Link>,
    cancel: CancellationToken,
    tracker: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((tcp, _)) => {
                tracker.spawn(front::serve_connection(
                    shared.clone(),
                    tls.clone(),
                    link.clone(),
                    tcp,
                    cancel.clone(),
                ));
            }
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Live mode: appends `rate` records per second to every corp until cancelled.
async fn live(shared: Arc<Shared>, rate: f64, cancel: CancellationToken) {
    let start = Instant::now();
    let mut added = 0usize;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let target = (start.elapsed().as_secs_f64() * rate) as usize;
        if target <= added {
            continue;
        }
        let n = target - added;
        added = target;
        let s = shared.clone();
        let done = tokio::task::spawn_blocking(move || {
            for c in 0..s.corps.len() {
                s.append(c, n);
            }
        })
        .await;
        if let Err(e) = done {
            tracing::error!(error = %e, "live append failed");
            return;
        }
    }
}
