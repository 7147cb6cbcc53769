//! Runs a simulator in the foreground, like `wework-archive sim serve`:
//!
//! ```text
//! cargo run -p wework-archive-sim --example serve -- --messages 500 --manifest /tmp/sim.json
//! ```

use clap::Parser;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    serve: wework_archive_sim::ServeArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    wework_archive_sim::serve_cli(Cli::parse().serve).await
}
