//! The `quire` command line.

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use quire::config::{Settings, Sources};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "quire", version, about = "Redis-protocol server with geo-replication over QUIC")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node.
    Server(ServerArgs),
    /// Inspect configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the effective configuration (all layers applied) and exit;
    /// fails naming the key on any error.
    Check(SourceArgs),
}

#[derive(Args, Clone)]
struct SourceArgs {
    /// TOML config file.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Region profile: deploy/profiles/NAME.toml (or under --profile-dir).
    #[arg(long)]
    profile: Option<String>,
    /// Directory holding profiles.
    #[arg(long)]
    profile_dir: Option<PathBuf>,
}

#[derive(Args)]
struct ServerArgs {
    #[command(flatten)]
    sources: SourceArgs,
    /// Address the client port binds.
    #[arg(long)]
    bind: Option<String>,
    /// Client port.
    #[arg(long)]
    port: Option<u16>,
    /// Data directory (snapshots).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Password clients must AUTH with.
    #[arg(long)]
    requirepass: Option<String>,
    /// Save rules, e.g. "3600 1 300 100" ("" disables).
    #[arg(long)]
    save: Option<String>,
}

impl SourceArgs {
    fn sources(&self, overrides: Vec<(String, String)>) -> Sources {
        Sources { profile: self.profile.clone(), profile_dir: self.profile_dir.clone(), file: self.config.clone(), env: true, overrides }
    }
}

impl ServerArgs {
    fn overrides(&self) -> Vec<(String, String)> {
        let mut o = Vec::new();
        if let Some(v) = &self.bind {
            o.push(("bind".into(), v.clone()));
        }
        if let Some(v) = self.port {
            o.push(("port".into(), v.to_string()));
        }
        if let Some(v) = &self.dir {
            o.push(("dir".into(), v.display().to_string()));
        }
        if let Some(v) = &self.requirepass {
            o.push(("requirepass".into(), v.clone()));
        }
        if let Some(v) = &self.save {
            o.push(("save".into(), v.clone()));
        }
        o
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_target(false).init();
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Server(args) => {
            init_tracing();
            let sources = args.sources.sources(args.overrides());
            let settings = Settings::load(&sources)?;
            run_server(settings, sources)
        }
        Command::Config { command: ConfigCommand::Check(args) } => {
            let settings = Settings::load(&args.sources(Vec::new()))?;
            print!("{}", quire::config::toml_string(&settings));
            Ok(())
        }
    }
}

fn run_server(settings: Settings, sources: Sources) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    runtime.block_on(async move {
        let node = quire::server::Node::start(settings, &sources).await?;
        let shared = node.shared.clone();
        tokio::spawn(async move {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            tracing::info!("received shutdown signal");
            quire::server::shutdown_and_save(&shared);
        });
        node.run().await;
        Ok(())
    })
}
