//! The `wework-archive` command.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use wework_archive::config::{Config, SettingsArgs};
use wework_archive::wecom::sdk::Library;

#[derive(Debug, Parser)]
#[command(
    name = "wework-archive",
    version,
    about = "Archive WeCom chat records (and Feishu meetings/docs) for compliance"
)]
struct Cli {
    #[command(flatten)]
    settings: SettingsArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Load the SDK and check it works on this machine (decrypts a known vector, tries the network).
    SdkCheck,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = Config::resolve(&cli.settings).and_then(|config| {
        wework_archive::logging::init(config.log_format);
        run(cli.command, &config)
    });
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("wework-archive: {err:#}");
            ExitCode::from(2)
        }
    }
}

fn run(command: Command, config: &Config) -> anyhow::Result<ExitCode> {
    match command {
        Command::SdkCheck => {
            let lib = Library::load(&config.sdk_lib)?;
            println!("loaded {}", lib.path().display());
            Ok(ExitCode::SUCCESS)
        }
    }
}
