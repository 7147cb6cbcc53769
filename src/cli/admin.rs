//! `admin add/list/remove`: accounts of the archive browser (/ui/).

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};

use crate::archive::accounts::hash_password;
use crate::config::Config;
use crate::store::CorpId;
use crate::store::accounts::Role;

#[derive(Debug, clap::Subcommand)]
pub(crate) enum AdminCommand {
    /// Add an account (or replace its password, role and corps). The password is
    /// read from standard input (first line) unless --password-file is given.
    Add(AddArgs),
    /// List accounts, roles and granted corps.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove an account and end its sessions.
    Remove {
        /// Login name.
        #[arg(long)]
        user: String,
    },
}

#[derive(Debug, clap::Args)]
pub(crate) struct AddArgs {
    /// Login name.
    #[arg(long)]
    user: String,
    /// admin (everything) or auditor (read and export the --corp corps).
    #[arg(long, default_value = "admin")]
    role: String,
    /// A corp an auditor may read (repeat for more).
    #[arg(long = "corp")]
    corps: Vec<String>,
    /// Read the password from this file (first line) instead of standard input.
    #[arg(long)]
    password_file: Option<PathBuf>,
}

pub(crate) async fn run(cmd: AdminCommand, config: &Config) -> anyhow::Result<ExitCode> {
    let store = super::open_store(config).await?;
    match cmd {
        AdminCommand::Add(args) => {
            let Some(role) = Role::parse(&args.role) else { bail!("--role must be admin or auditor") };
            if args.user.is_empty() || args.user.len() > 191 || args.user.chars().any(char::is_control) {
                bail!("--user must be 1 to 191 characters without control characters");
            }
            let corps: Vec<String> =
                args.corps.iter().map(|c| CorpId::new(c).map(|c| c.to_string())).collect::<Result<_, _>>()?;
            if role == Role::Auditor && corps.is_empty() {
                bail!("an auditor needs at least one --corp");
            }
            let text = match &args.password_file {
                Some(p) => std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
                None => {
                    let mut s = String::new();
                    std::io::stdin()
                        .read_to_string(&mut s)
                        .context("reading the password from standard input")?;
                    s
                }
            };
            let password = text.lines().next().unwrap_or("");
            let hash = hash_password(password)?;
            store.upsert_user(&args.user, &hash, role, &corps).await?;
            println!("{}: {} account saved{}", args.user, role.as_str(), grants(&corps));
        }
        AdminCommand::List { json } => {
            let users = store.users().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&users)?);
            } else {
                for u in users {
                    println!("{:<24} {:<8}{}", u.name, u.role.as_str(), grants(&u.corps));
                }
            }
        }
        AdminCommand::Remove { user } => {
            if !store.remove_user(&user).await? {
                eprintln!("no account {user:?}");
                return Ok(ExitCode::from(1));
            }
            println!("{user}: removed");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn grants(corps: &[String]) -> String {
    if corps.is_empty() { String::new() } else { format!(" corps: {}", corps.join(", ")) }
}
