//! `wework-archive sim serve`: run a simulator in the foreground.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;

use crate::fault::FaultSpec;
use crate::sim::{Rotation, SimConfig, Simulator};

/// Command-line options of `sim serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on (proxy, TLS and plain HTTP on one port).
    #[arg(long, env = "WEWORK_SIM_LISTEN", default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Seed: the same seed gives the same corpus.
    #[arg(long, env = "WEWORK_SIM_SEED", default_value_t = 1)]
    pub seed: u64,
    /// Number of corps.
    #[arg(long, env = "WEWORK_SIM_CORPS", default_value_t = 2)]
    pub corps: usize,
    /// Records per corp at start.
    #[arg(long, env = "WEWORK_SIM_MESSAGES", default_value_t = 1000)]
    pub messages: usize,
    /// Live mode: new records per second per corp.
    #[arg(long, env = "WEWORK_SIM_RATE")]
    pub rate: Option<f64>,
    /// Fault rates, e.g. `http500=0.05,slow=0.01,cut=0.02,md5_mismatch=0.02`.
    #[arg(long, env = "WEWORK_SIM_FAULTS", default_value = "")]
    pub faults: FaultSpec,
    /// Delay of a `slow` reply, in milliseconds.
    #[arg(long, env = "WEWORK_SIM_SLOW_MS", default_value_t = 6000)]
    pub slow_ms: u64,
    /// Size of one extra-large video in the first corp, in bytes (suffixes K, M, G, KiB, MiB,
    /// GiB accepted).
    #[arg(long, env = "WEWORK_SIM_BIG_VIDEO", value_parser = parse_size)]
    pub big_video: Option<u64>,
    /// When the corps switch from key version 1 to 2: `middle` (of the initial corpus),
    /// `never`, or a record index.
    #[arg(long, env = "WEWORK_SIM_ROTATION", default_value = "middle", value_parser = parse_rotation)]
    pub rotation: Rotation,
    /// Access-token lifetime in seconds.
    #[arg(long, env = "WEWORK_SIM_TOKEN_TTL", default_value_t = 7200)]
    pub token_ttl: u64,
    /// Distance: delay every API reply by this many milliseconds (one round trip per
    /// request), deterministically.
    #[arg(long, env = "WEWORK_SIM_LATENCY_MS", default_value_t = 0)]
    pub latency_ms: u64,
    /// Pace reply bodies to this many megabits per second per connection (default:
    /// unlimited).
    #[arg(long, env = "WEWORK_SIM_BANDWIDTH_MBPS")]
    pub bandwidth_mbps: Option<f64>,
    /// Write the manifest (proxy URL, credentials, keys) to this file once listening.
    #[arg(long, env = "WEWORK_SIM_MANIFEST")]
    pub manifest: Option<PathBuf>,
}

impl ServeArgs {
    /// The simulator configuration these options describe.
    pub fn config(&self) -> SimConfig {
        SimConfig {
            seed: self.seed,
            corps: self.corps,
            messages: self.messages,
            rate: self.rate,
            faults: self.faults.clone(),
            slow: Duration::from_millis(self.slow_ms),
            big_video: self.big_video,
            token_ttl: Duration::from_secs(self.token_ttl),
            latency: Duration::from_millis(self.latency_ms),
            bandwidth_mbps: self.bandwidth_mbps,
            rotation: self.rotation,
            ..SimConfig::default()
        }
    }
}

/// Parses `never`, `middle` or a record index.
pub fn parse_rotation(s: &str) -> Result<Rotation, String> {
    match s.trim() {
        "never" => Ok(Rotation::Never),
        "middle" => Ok(Rotation::Middle),
        n => n
            .parse()
            .map(Rotation::AtMessage)
            .map_err(|_| format!("{s:?}: not never, middle or a record index")),
    }
}

/// Parses `1048576`, `512K`, `50MiB`, `1G`… (binary multiples either way).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("{s:?} is not a size"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        u => return Err(format!("unknown size unit {u:?}")),
    };
    n.checked_mul(mult).ok_or_else(|| format!("{s:?} is too large"))
}

/// Starts a simulator on `listener`, writes the manifest (atomically) once listening, and
/// serves until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    config: SimConfig,
    manifest: Option<&Path>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let sim = Simulator::start(listener, config).await?;
    if let Some(path) = manifest {
        sim.manifest().write_atomic(path).with_context(|| format!("writing manifest {}", path.display()))?;
    }
    eprintln!(
        "wework-archive sim: serving on {} (proxy {}){}",
        sim.local_addr(),
        sim.proxy_url(),
        manifest.map(|p| format!(", manifest {}", p.display())).unwrap_or_default()
    );
    shutdown.await;
    sim.shutdown().await;
    Ok(())
}

/// Runs `sim serve` in the foreground until Ctrl-C or SIGTERM.
pub async fn serve_cli(args: ServeArgs) -> anyhow::Result<()> {
    let listener =
        TcpListener::bind(args.listen).await.with_context(|| format!("binding {}", args.listen))?;
    serve(listener, args.config(), args.manifest.as_deref(), shutdown_signal()).await
}

/// Completes on Ctrl-C or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    #[test]
    fn parses_the_cli_contract() {
        let c = Cli::try_parse_from([
            "x",
            "--listen",
            "127.0.0.1:0",
            "--seed",
            "7",
            "--corps",
            "3",
            "--messages",
            "20000",
            "--rate",
            "2.5",
            "--faults",
            "http500=0.05,cut=0.02",
            "--slow-ms",
            "3000",
            "--big-video",
            "50MiB",
            "--manifest",
            "/tmp/m.json",
            "--latency-ms",
            "40",
            "--bandwidth-mbps",
            "100",
            "--rotation",
            "never",
        ])
        .unwrap();
        let cfg = c.serve.config();
        assert_eq!((cfg.seed, cfg.corps, cfg.messages, cfg.rate), (7, 3, 20_000, Some(2.5)));
        assert_eq!(cfg.faults.rate(crate::FaultKind::Cut), 0.02);
        assert_eq!(cfg.slow, Duration::from_secs(3));
        assert_eq!(cfg.big_video, Some(50 << 20));
        assert_eq!((cfg.latency, cfg.bandwidth_mbps), (Duration::from_millis(40), Some(100.0)));
        assert_eq!(cfg.rotation, Rotation::Never);
        assert!(Cli::try_parse_from(["x", "--faults", "bogus=1"]).is_err());
        assert_eq!(Cli::try_parse_from(["x"]).unwrap().serve.config().rotation, Rotation::Middle);
        let at = Cli::try_parse_from(["x", "--rotation", "12"]).unwrap().serve.config().rotation;
        assert_eq!(at, Rotation::AtMessage(12));
        assert!(Cli::try_parse_from(["x", "--rotation", "sometimes"]).is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("512k"), Ok(512 << 10));
        assert!(parse_size("12X").is_err());
        assert!(parse_size("").is_err());
    }
}
