//! The `quire` command line.

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use quire::config::{Settings, Sources};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "quire",
    version,
    about = "Redis-protocol server with geo-replication over QUIC"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node.
    Server(ServerArgs),
    /// Three regions on loopback over emulated WAN links, a write load and
    /// a live table of replication (Ctrl-C stops).
    Demo {
        /// Client port of us-east (eu-west, ap-south: the next two).
        #[arg(long, default_value_t = 16379)]
        base_port: u16,
        /// Writes per second at us-east.
        #[arg(long, default_value_t = 2000)]
        rate: u64,
        /// Stop after this many seconds instead of waiting for Ctrl-C.
        #[arg(long)]
        duration: Option<u64>,
    },
    /// Inspect configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Check a node's log (its write-ahead log) offline, as redis-check-aof
    /// does; `--fix` cuts it back to the last whole unit before a problem.
    Log {
        #[command(subcommand)]
        command: LogCommand,
    },
    /// Size the replication backlog for a write rate and an outage.
    Backlog {
        #[command(subcommand)]
        command: BacklogCommand,
    },
    /// Disaster recovery: promote the replica at HOST:PORT (its client
    /// port) to primary (REPLICAOF NO ONE) and report when it takes writes.
    Promote {
        #[arg(long)]
        node: String,
        #[arg(long, env = "QUIRE_PASSWORD", default_value = "")]
        password: String,
    },
    /// Point the node at HOST:PORT (client port) at a new upstream
    /// replication endpoint (REPLICAOF), and wait for its link to come up.
    Repoint {
        #[arg(long)]
        node: String,
        /// The new upstream's replication address, HOST:REPL_PORT.
        #[arg(long)]
        to: String,
        #[arg(long, env = "QUIRE_PASSWORD", default_value = "")]
        password: String,
    },
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
    /// A UDP relay emulating a WAN link (delay, jitter, loss, bandwidth,
    /// outages) between a replica and its upstream; loopback only.
    WanEmu {
        /// Address the replica dials instead of the upstream.
        #[arg(long, default_value = "127.0.0.1:17379")]
        listen: std::net::SocketAddr,
        /// The upstream's replication endpoint.
        #[arg(long)]
        upstream: std::net::SocketAddr,
        /// transatlantic, transpacific, lossy, intercontinental, loopback.
        #[arg(long, default_value = "transatlantic")]
        profile: String,
        /// Cut the link for OUTAGE_FOR seconds every OUTAGE_EVERY seconds.
        #[arg(long)]
        outage_every: Option<u64>,
        #[arg(long, default_value_t = 15)]
        outage_for: u64,
    },
    /// Manage replication certificates.
    Certs {
        #[command(subcommand)]
        command: CertsCommand,
    },
}

#[derive(Subcommand)]
enum LogCommand {
    /// Walk DIR/backlog unit by unit and report what it holds.
    Check {
        /// The node's data directory (stop the node first).
        #[arg(long)]
        dir: PathBuf,
        /// Cut the log back to the last whole unit before a torn or corrupt
        /// record (what follows is lost).
        #[arg(long)]
        fix: bool,
    },
}

#[derive(Subcommand)]
enum BacklogCommand {
    /// Print the backlog size needed to resume partially after an outage.
    Plan {
        /// Replication stream rate, bytes per second, with units (e.g. 5mb).
        #[arg(long)]
        write_rate: String,
        /// Outage to survive (e.g. 90s, 10m, 2h).
        #[arg(long)]
        outage: String,
        /// Headroom over the rate (the node uses 1.5 when sizing itself).
        #[arg(long, default_value_t = quire::replication::backlog::SAFETY_FACTOR)]
        safety: f64,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Replication lag, bandwidth and catch-up over emulated WAN links,
    /// Quire next to Redis (when redis-server is installed).
    Wan {
        /// Link profiles, comma separated, or "all".
        #[arg(long, default_value = "transatlantic,transpacific,lossy")]
        profile: String,
        /// Writes per second.
        #[arg(long, default_value_t = 10_000)]
        rate: u64,
        /// Seconds of load per run.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// json, bytes or counter.
        #[arg(long, default_value = "json")]
        value: quire::bench::ValueKind,
        #[arg(long, default_value_t = 150)]
        value_size: usize,
        /// Distinct keys written.
        #[arg(long, default_value_t = 100_000)]
        keys: u64,
        /// Cut the link for this many seconds a third of the way in.
        #[arg(long)]
        outage: Option<u64>,
        /// Skip the Redis side.
        #[arg(long)]
        no_redis: bool,
        /// Override the profiles' loss rate (e.g. 0 to compare with TCP,
        /// whose relay cannot drop segments).
        #[arg(long)]
        loss: Option<f64>,
        /// Override the profiles' jitter, in milliseconds (0: a fixed delay).
        #[arg(long)]
        jitter_ms: Option<f64>,
        /// Congestion controller for Quire's links (cubic, bbr, newreno).
        #[arg(long, default_value = "bbr")]
        congestion: String,
        /// Fast-path datagram copies for Quire's links (off, on, auto);
        /// several, comma separated, run side by side (e.g. "off,auto").
        #[arg(long, default_value = "auto")]
        datagrams: String,
        #[arg(long)]
        json: Option<PathBuf>,
        /// SVG plot of lag over time.
        #[arg(long)]
        plot: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum CertsCommand {
    /// Create a CA (or reuse the one in DIR) and a certificate/key pair per
    /// node, valid for both server and client authentication.
    Init(CertsInitArgs),
}

#[derive(Args)]
struct CertsInitArgs {
    /// Directory for ca.pem/ca.key and NODE.pem/NODE.key.
    #[arg(long, default_value = "certs")]
    dir: PathBuf,
    /// A node to issue a certificate for (repeat for several).
    #[arg(long = "node", required = true)]
    nodes: Vec<String>,
    /// An IP address every issued certificate names (repeatable).
    #[arg(long = "ip")]
    ips: Vec<std::net::IpAddr>,
    /// An extra DNS name every issued certificate names (repeatable).
    #[arg(long = "dns")]
    dns: Vec<String>,
    /// Validity of node certificates in days.
    #[arg(long, default_value_t = 825)]
    days: i64,
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
    /// UDP port of the QUIC replication endpoint (default 7379).
    #[arg(long)]
    repl_port: Option<u16>,
    /// Address the replication endpoint binds (default: --bind).
    #[arg(long)]
    repl_bind: Option<String>,
    /// Directory with the CA and this node's certificate.
    #[arg(long)]
    certs: Option<PathBuf>,
    /// This node's name (its certificate is NAME.pem in the certs dir).
    #[arg(long)]
    node: Option<String>,
    /// Region label for INFO and logs.
    #[arg(long)]
    region: Option<String>,
    /// Replicate from this upstream's replication endpoint, HOST:PORT.
    #[arg(long)]
    replicaof: Option<String>,
    /// Worker threads (0 = from the number of cores).
    #[arg(long)]
    threads: Option<usize>,
    /// The log is the write-ahead log (yes) or kept for replication only (no).
    #[arg(long, value_parser = ["yes", "no"])]
    appendonly: Option<String>,
    /// When the log is fsynced: always, everysec, no.
    #[arg(long, value_parser = ["always", "everysec", "no"])]
    appendfsync: Option<String>,
}

impl SourceArgs {
    fn sources(&self, overrides: Vec<(String, String)>) -> Sources {
        Sources {
            profile: self.profile.clone(),
            profile_dir: self.profile_dir.clone(),
            file: self.config.clone(),
            env: true,
            overrides,
        }
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
        if let Some(v) = self.repl_port {
            o.push(("repl.port".into(), v.to_string()));
        }
        if let Some(v) = &self.repl_bind {
            o.push(("repl.bind".into(), v.clone()));
        }
        if let Some(v) = &self.certs {
            o.push(("repl.certs".into(), v.display().to_string()));
        }
        if let Some(v) = &self.node {
            o.push(("node.name".into(), v.clone()));
        }
        if let Some(v) = &self.region {
            o.push(("node.region".into(), v.clone()));
        }
        if let Some(v) = &self.replicaof {
            o.push(("replicaof".into(), v.clone()));
        }
        if let Some(v) = self.threads {
            o.push(("threads".into(), v.to_string()));
        }
        if let Some(v) = &self.appendonly {
            o.push(("appendonly".into(), (v == "yes").to_string()));
        }
        if let Some(v) = &self.appendfsync {
            o.push(("appendfsync".into(), v.clone()));
        }
        o
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Server(args) => {
            init_tracing();
            let sources = args.sources.sources(args.overrides());
            let settings = Settings::load(&sources)?;
            run_server(settings, sources)
        }
        Command::Certs {
            command: CertsCommand::Init(args),
        } => certs_init(args),
        Command::Bench {
            command:
                BenchCommand::Wan {
                    profile,
                    rate,
                    seconds,
                    value,
                    value_size,
                    keys,
                    outage,
                    no_redis,
                    loss,
                    jitter_ms,
                    congestion,
                    datagrams,
                    json,
                    plot,
                },
        } => {
            let profiles = if profile == "all" {
                vec![
                    "transatlantic".into(),
                    "transpacific".into(),
                    "lossy".into(),
                ]
            } else {
                profile.split(',').map(|p| p.trim().to_string()).collect()
            };
            let quire_bin = std::env::current_exe().context("locating the quire binary")?;
            quire::bench::run(quire::bench::WanBenchOptions {
                profiles,
                rate,
                seconds,
                value,
                value_size,
                keys,
                outage_secs: outage,
                redis: !no_redis,
                loss,
                jitter: jitter_ms
                    .filter(|j| j.is_finite() && *j >= 0.0)
                    .map(|j| std::time::Duration::from_secs_f64(j / 1000.0)),
                congestion,
                datagrams: datagrams.split(',').map(|m| m.trim().to_string()).collect(),
                json,
                plot,
                quire_bin,
            })?;
            Ok(())
        }
        Command::WanEmu {
            listen,
            upstream,
            profile,
            outage_every,
            outage_for,
        } => {
            init_tracing();
            anyhow::ensure!(
                listen.ip().is_loopback() && upstream.ip().is_loopback(),
                "the WAN emulator relays on loopback only"
            );
            let params = quire::wan::profile(&profile).with_context(|| {
                format!(
                    "unknown profile '{profile}' (known: {:?})",
                    quire::wan::PROFILES
                )
            })?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async move {
                let relay = quire::wan::relay::Relay::spawn(
                    listen,
                    upstream,
                    params.clone(),
                    params.clone(),
                    1,
                )
                .await?;
                println!(
                    "relaying {} -> {upstream} as '{profile}': {params:?}",
                    relay.addr
                );
                println!("send SIGUSR1 to toggle an outage");
                let mut usr1 =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1())?;
                let mut schedule = tokio::time::interval(std::time::Duration::from_secs(
                    outage_every.unwrap_or(u64::MAX / 4).max(1),
                ));
                schedule.tick().await;
                loop {
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => break,
                        _ = usr1.recv() => {
                            let on = !relay.control.in_outage();
                            relay.control.set_outage(on);
                            println!("outage {}", if on { "on" } else { "off" });
                        }
                        _ = schedule.tick(), if outage_every.is_some() => {
                            relay.control.set_outage(true);
                            println!("scheduled outage for {outage_for} s");
                            tokio::time::sleep(std::time::Duration::from_secs(outage_for)).await;
                            relay.control.set_outage(false);
                            println!("outage over");
                        }
                    }
                }
                Ok::<(), anyhow::Error>(())
            })
        }
        Command::Promote { node, password } => {
            let mut client = admin::Client::connect(&node, &password)?;
            let started = std::time::Instant::now();
            let reply = client.command(&["REPLICAOF", "NO", "ONE"])?;
            anyhow::ensure!(reply.starts_with("+OK"), "REPLICAOF NO ONE failed: {reply}");
            let role = client.command(&["ROLE"])?;
            let elapsed = started.elapsed();
            anyhow::ensure!(role.contains("master"), "still not a primary: {role}");
            let info = client.info_field("quire_epoch")?;
            let offset = client.info_field("master_repl_offset")?;
            println!("{node} is primary (epoch {info}, offset {offset}); accepting writes {:.1} ms after the promote command", elapsed.as_secs_f64() * 1000.0);
            Ok(())
        }
        Command::Repoint { node, to, password } => {
            let (host, port) = quire::config::parse_host_port(&to).map_err(anyhow::Error::msg)?;
            let mut client = admin::Client::connect(&node, &password)?;
            let reply = client.command(&["REPLICAOF", &host, &port.to_string()])?;
            anyhow::ensure!(reply.starts_with("+OK"), "REPLICAOF failed: {reply}");
            let started = std::time::Instant::now();
            while client.info_field("master_link_status")? != "up" {
                anyhow::ensure!(
                    started.elapsed() < std::time::Duration::from_secs(60),
                    "link to {to} not up after 60 s: {}",
                    client.info_field("quire_link_last_error")?
                );
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            println!(
                "{node} follows {to}: link up, offset {}, partial resyncs {}, full resyncs {}",
                client.info_field("slave_repl_offset")?,
                client.info_field("quire_partial_syncs")?,
                client.info_field("quire_full_syncs")?
            );
            Ok(())
        }
        Command::Demo {
            base_port,
            rate,
            duration,
        } => {
            if std::env::var_os("RUST_LOG").is_some() {
                init_tracing();
            }
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the runtime")?;
            runtime.block_on(quire::demo::run(quire::demo::DemoOptions {
                base_port,
                rate,
                duration: duration.map(std::time::Duration::from_secs),
            }))
        }
        Command::Log {
            command: LogCommand::Check { dir, fix },
        } => log_check(&dir, fix),
        Command::Backlog {
            command:
                BacklogCommand::Plan {
                    write_rate,
                    outage,
                    safety,
                },
        } => {
            let rate = quire::config::params::parse_memory(write_rate.trim_end_matches("/s"))
                .with_context(|| {
                    format!("--write-rate: '{write_rate}' is not a byte count like 5mb")
                })? as f64;
            let secs = quire::config::parse_duration_secs(&outage)
                .map_err(anyhow::Error::msg)?
                .context("--outage is required")?;
            let bytes = quire::replication::backlog::plan_bytes(rate, secs, safety);
            println!("write rate        {rate:.0} bytes/s");
            println!("outage            {secs:.0} s");
            println!("safety factor     {safety}");
            println!(
                "backlog needed    {bytes} bytes ({:.1} MiB)",
                bytes as f64 / (1u64 << 20) as f64
            );
            println!("covers            {:.0} s at this rate (INFO quire_backlog_outage_seconds_covered)", bytes as f64 / rate.max(1.0));
            println!();
            println!("[repl.backlog]");
            println!("size = {bytes}");
            println!("# or let the node size itself from its measured peak rate:");
            println!("# outage_tolerance = \"{outage}\"");
            println!("max_disk = {}", bytes.max(10 << 30));
            Ok(())
        }
        Command::Config {
            command: ConfigCommand::Check(args),
        } => {
            let settings = Settings::load(&args.sources(Vec::new()))?;
            print!("{}", quire::config::toml_string(&settings));
            println!("\n# Derived");
            match settings.link.derive() {
                Some(d) => {
                    println!(
                        "# link: {} ms RTT x {} Mbit/s = bandwidth-delay product {} bytes",
                        settings.link.rtt_ms, settings.link.bandwidth_mbit, d.bdp_bytes
                    );
                    println!(
                        "# QUIC stream window {} bytes (2 x BDP), batches up to {} bytes / {} ms, idle timeout {} ms",
                        d.window_bytes, d.batch_max_bytes, d.batch_max_delay_ms, d.idle_timeout_ms
                    );
                }
                None => println!("# link: rtt_ms/bandwidth_mbit not set; transport defaults apply"),
            }
            let b = &settings.repl.backlog;
            match b.outage_secs() {
                Some(secs) => {
                    println!(
                        "# backlog: sized for a {secs:.0} s outage at the measured peak write rate x {}, between {} and {} bytes",
                        quire::replication::backlog::SAFETY_FACTOR,
                        b.size,
                        b.max_disk
                    );
                    for rate in [100_000u64, 1_000_000, 10_000_000] {
                        let need = quire::replication::backlog::effective_capacity(
                            b.size,
                            Some(secs),
                            rate as f64,
                            b.max_disk,
                        );
                        println!(
                            "#   at {:>5.1} MB/s of writes: {need} bytes, covering {:.0} s",
                            rate as f64 / 1e6,
                            need as f64 / rate as f64
                        );
                    }
                }
                None => println!("# backlog: fixed {} bytes", b.size),
            }
            Ok(())
        }
    }
}

fn certs_init(args: CertsInitArgs) -> Result<()> {
    use quire::transport::certs::{Authority, NodeCertSpec};
    let (ca, created) = Authority::open_or_create(&args.dir)?;
    println!(
        "{} CA in {}",
        if created { "created" } else { "reusing" },
        args.dir.display()
    );
    for node in &args.nodes {
        let spec = NodeCertSpec {
            ips: args.ips.clone(),
            dns: args.dns.clone(),
            valid_until_days: args.days,
            ..NodeCertSpec::new(node)
        };
        let (cert, key) = ca.issue(&args.dir, &spec)?;
        println!("issued {} and {}", cert.display(), key.display());
    }
    Ok(())
}

/// `quire log check`: exit 0 when the log is whole (or was fixed), 1 when
/// it has a problem left.
fn log_check(dir: &std::path::Path, fix: bool) -> Result<()> {
    use quire::replication::backlog::{check_dir, LogProblem};
    let log_dir = dir.join("backlog");
    let check = check_dir(&log_dir)?;
    println!("log        {}", log_dir.display());
    println!("segments   {}", check.segments);
    println!(
        "offsets    {} .. {} ({} bytes)",
        check.start,
        check.end,
        check.end - check.start
    );
    let walk = &check.walk;
    println!(
        "units      {} whole units up to offset {}",
        walk.units, walk.good_end
    );
    match &walk.problem {
        None => {
            println!("status     ok");
            return Ok(());
        }
        Some(LogProblem::Torn) => {
            println!("status     the last unit is cut short at offset {} ({} bytes; a node cuts this itself at start-up)", walk.good_end, check.end - walk.good_end)
        }
        Some(LogProblem::Corrupt {
            file,
            position,
            reason,
        }) => {
            println!(
                "status     corrupt after offset {} ({}, byte {position}): {reason}",
                walk.good_end,
                file.display()
            );
            println!(
                "           fixing loses the {} bytes after it",
                check.end - walk.good_end
            );
        }
    }
    if !fix {
        anyhow::bail!(
            "the log has a problem (run again with --fix to cut it back to offset {})",
            walk.good_end
        );
    }
    let backlog = quire::replication::backlog::Backlog::new(
        0,
        quire::replication::backlog::BacklogConfig {
            capacity: u64::MAX,
            memory_bytes: 0,
            segment_bytes: u64::MAX,
            dir: Some(log_dir),
        },
    );
    backlog.open_existing()?;
    backlog.truncate(walk.good_end).context("cutting the log")?;
    println!("fixed      the log now ends at offset {}", walk.good_end);
    Ok(())
}

fn run_server(settings: Settings, sources: Sources) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(settings.worker_threads())
        // The last woken task would otherwise run first: of two clients
        // whose requests arrive together, the later would be served first
        // (Redis serves them in arrival order; applications and Redis's
        // tests rely on it).
        .disable_lifo_slot()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async move {
        let node = quire::server::Node::start(settings, &sources).await?;
        let shared = node.shared.clone();
        tokio::spawn(async move {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            tracing::info!("received shutdown signal");
            quire::server::shutdown_and_save(&shared);
        });
        node.run().await?;
        Ok(())
    })
}

/// A minimal blocking RESP client for the admin commands.
mod admin {
    use anyhow::{bail, Context, Result};
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpStream;

    pub struct Client {
        reader: BufReader<TcpStream>,
        writer: TcpStream,
    }

    impl Client {
        pub fn connect(addr: &str, password: &str) -> Result<Client> {
            let stream =
                TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
            stream.set_read_timeout(Some(std::time::Duration::from_secs(30)))?;
            let mut client = Client {
                reader: BufReader::new(stream.try_clone()?),
                writer: stream,
            };
            if !password.is_empty() {
                let reply = client.command(&["AUTH", password])?;
                if !reply.starts_with("+OK") {
                    bail!("AUTH failed: {reply}");
                }
            }
            Ok(client)
        }

        /// Sends a command; returns the reply as text (bulk replies inline).
        pub fn command(&mut self, args: &[&str]) -> Result<String> {
            let mut out = Vec::new();
            quire::resp::encode_request(args, &mut out);
            self.writer.write_all(&out)?;
            self.read_reply()
        }

        fn read_reply(&mut self) -> Result<String> {
            let mut line = String::new();
            self.reader.read_line(&mut line)?;
            let line = line.trim_end().to_string();
            match line.as_bytes().first() {
                Some(b'$') => {
                    let len: i64 = line[1..].parse()?;
                    if len < 0 {
                        return Ok(String::new());
                    }
                    let mut body = vec![0u8; len as usize + 2];
                    self.reader.read_exact(&mut body)?;
                    Ok(String::from_utf8_lossy(&body[..len as usize]).to_string())
                }
                Some(b'*') => {
                    let n: i64 = line[1..].parse()?;
                    let mut parts = Vec::new();
                    for _ in 0..n.max(0) {
                        parts.push(self.read_reply()?);
                    }
                    Ok(parts.join(" "))
                }
                Some(_) => Ok(line),
                None => bail!("connection closed"),
            }
        }

        pub fn info_field(&mut self, field: &str) -> Result<String> {
            let text = self.command(&["INFO", "replication"])?;
            Ok(text
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{field}:")))
                .unwrap_or("")
                .trim()
                .to_string())
        }
    }
}
