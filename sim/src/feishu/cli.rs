//! `wework-archive sim feishu --listen 127.0.0.1:0 --seed S --manifest FILE [--event-url URL]
//! [--faults SPEC]`: run a fake Feishu Open Platform in the foreground (FAKE.md "Start").

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;

use super::{FeishuConfig, FeishuFaults, FeishuSim};

/// Command-line options of `sim feishu`.
#[derive(Debug, Clone, clap::Args)]
pub struct FeishuArgs {
    /// Address to listen on.
    #[arg(long, env = "FEISHU_SIM_LISTEN", default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Seed: the same seed gives the same app, users, trees and ids.
    #[arg(long, env = "FEISHU_SIM_SEED", default_value_t = 1)]
    pub seed: u64,
    /// Write the manifest (base URL, app credentials, users) here once listening.
    #[arg(long, env = "FEISHU_SIM_MANIFEST")]
    pub manifest: PathBuf,
    /// Subscribe this webhook at start.
    #[arg(long, env = "FEISHU_SIM_EVENT_URL")]
    pub event_url: Option<String>,
    /// Random faults, e.g. `throttle=0.05,export_slow=0.2,export_fail=0.1,drop=0.02,token_expiry=0.01,url_expiry=0.3`
    /// (`url_expiry`: a Minutes media download_url handed out already expired).
    #[arg(long, env = "FEISHU_SIM_FAULTS", default_value = "")]
    pub faults: FeishuFaults,
    /// Tenant/app access-token lifetime in seconds (Feishu: 7200).
    #[arg(long, env = "FEISHU_SIM_TOKEN_TTL", default_value_t = 7200)]
    pub token_ttl: u64,
    /// User access-token lifetime in seconds (Feishu: 7200).
    #[arg(long, env = "FEISHU_SIM_USER_TOKEN_TTL", default_value_t = 7200)]
    pub user_token_ttl: u64,
    /// Authorization-code lifetime in seconds (Feishu: 300).
    #[arg(long, env = "FEISHU_SIM_CODE_TTL", default_value = "300", value_parser = parse_secs)]
    pub code_ttl: Duration,
    /// Seconds between push retries (Feishu: 15,300,3600,21600).
    #[arg(long, env = "FEISHU_SIM_RETRY_DELAYS", default_value = "15,300,3600,21600", value_parser = parse_delays)]
    pub retry_delays: RetryDelays,
    /// How long an export task takes, in milliseconds.
    #[arg(long, env = "FEISHU_SIM_EXPORT_DELAY_MS", default_value_t = 1500)]
    pub export_delay_ms: u64,
    /// Grow the drive/wiki tree to about this many nodes (0: the standard small tree).
    #[arg(long, env = "FEISHU_SIM_TREE_NODES", default_value_t = 0)]
    pub tree_nodes: usize,
    /// Multiply every rate limit by this (1 = the documented limits).
    #[arg(long, env = "FEISHU_SIM_RATE_SCALE", default_value_t = 1.0)]
    pub rate_scale: f64,
}

/// Push retry delays.
#[derive(Debug, Clone)]
pub struct RetryDelays(pub Vec<Duration>);

fn parse_secs(s: &str) -> Result<Duration, String> {
    s.trim()
        .parse::<f64>()
        .ok()
        .and_then(|v| Duration::try_from_secs_f64(v).ok())
        .ok_or_else(|| format!("{s:?} is not seconds"))
}

fn parse_delays(s: &str) -> Result<RetryDelays, String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| p.parse::<f64>().map(Duration::from_secs_f64).map_err(|_| format!("{p:?} is not seconds")))
        .collect::<Result<Vec<_>, _>>()
        .map(RetryDelays)
}

impl FeishuArgs {
    /// The configuration these options describe.
    pub fn config(&self) -> FeishuConfig {
        FeishuConfig {
            seed: self.seed,
            token_ttl: Duration::from_secs(self.token_ttl),
            user_token_ttl: Duration::from_secs(self.user_token_ttl),
            code_ttl: self.code_ttl,
            event_url: self.event_url.clone(),
            faults: self.faults.clone(),
            retry_delays: self.retry_delays.0.clone(),
            export_delay: Duration::from_millis(self.export_delay_ms),
            tree_nodes: self.tree_nodes,
            rate_scale: self.rate_scale,
            ..FeishuConfig::default()
        }
    }
}

/// Runs `sim feishu` until Ctrl-C or SIGTERM.
pub async fn serve_feishu_cli(args: FeishuArgs) -> anyhow::Result<()> {
    let listener =
        TcpListener::bind(args.listen).await.with_context(|| format!("binding {}", args.listen))?;
    let sim = FeishuSim::start(listener, args.config()).await?;
    sim.manifest()
        .write_atomic(&args.manifest)
        .with_context(|| format!("writing manifest {}", args.manifest.display()))?;
    eprintln!("wework-archive sim feishu: serving {} (manifest {})", sim.base_url(), args.manifest.display());
    crate::cli::shutdown_signal().await;
    sim.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: FeishuArgs,
    }

    #[test]
    fn parses_the_fake_md_contract() {
        let c = Cli::try_parse_from([
            "x",
            "--listen",
            "127.0.0.1:0",
            "--seed",
            "9",
            "--manifest",
            "/tmp/m.json",
            "--event-url",
            "http://127.0.0.1:1/feishu/events/cli_x",
            "--faults",
            "throttle=0.1",
            "--retry-delays",
            "0.5,1",
        ])
        .unwrap();
        let cfg = c.args.config();
        assert_eq!(cfg.seed, 9);
        assert_eq!(cfg.event_url.as_deref(), Some("http://127.0.0.1:1/feishu/events/cli_x"));
        assert_eq!(cfg.retry_delays, vec![Duration::from_millis(500), Duration::from_secs(1)]);
        assert!(Cli::try_parse_from(["x", "--manifest", "m", "--faults", "nope=1"]).is_err());
        assert!(Cli::try_parse_from(["x"]).is_err(), "--manifest is required");
    }
}
