//! `quire demo`: three regions on loopback joined by emulated WAN links,
//! a modest write load, and a live table of what replication is doing.
//!
//! us-east is the primary; eu-west replicates from it over a
//! "transatlantic" link (40 ms one way, 0.1 % loss); ap-south is chained
//! through eu-west over an "intercontinental" link. Everything (certs,
//! data) lives in a temporary directory removed on exit.

use crate::config::{Settings, Sources};
use crate::server::{Node, Shared};
use crate::transport::certs::{Authority, NodeCertSpec};
use crate::wan::relay::Relay;
use rand::Rng;
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Options of the demo.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Client port of us-east; eu-west and ap-south use the next two, and
    /// replication ports are these + 1000, metrics + 3000.
    pub base_port: u16,
    /// Writes per second driven at us-east.
    pub rate: u64,
    /// Stop after this long (None: until Ctrl-C).
    pub duration: Option<Duration>,
}

struct Region {
    name: &'static str,
    shared: Arc<Shared>,
    port: u16,
    link: &'static str,
}

#[allow(clippy::too_many_arguments)]
fn settings(
    dir: &std::path::Path,
    certs: &std::path::Path,
    name: &str,
    region: &str,
    port: u16,
    replicaof: Option<SocketAddr>,
    rtt_ms: u64,
    mbit: u64,
) -> Settings {
    let mut s = Settings {
        port,
        dir: dir.join(name),
        ..Settings::default()
    };
    s.save = Default::default();
    s.node.name = name.into();
    s.node.region = region.into();
    s.repl.port = port + 1000;
    s.repl.certs = certs.to_path_buf();
    s.metrics.port = port + 3000;
    s.link.rtt_ms = rtt_ms;
    s.link.bandwidth_mbit = mbit;
    s.link.outage_tolerance = "10m".parse().ok();
    if let Some(up) = replicaof {
        s.replicaof = up.to_string();
    }
    s.apply_link(|_| false);
    s
}

async fn start(settings: Settings) -> anyhow::Result<Arc<Shared>> {
    let node = Node::start(settings, &Sources::default()).await?;
    let shared = node.shared.clone();
    tokio::spawn(async move {
        if let Err(e) = node.run().await {
            tracing::error!(error = %e, "demo node stopped");
        }
    });
    // Serving starts once the node has replayed its log and taken its role.
    while shared
        .persistence
        .loading
        .load(std::sync::atomic::Ordering::Acquire)
        && !shared.is_shutting_down()
    {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    Ok(shared)
}

/// Runs the demo until Ctrl-C (or the duration).
pub async fn run(options: DemoOptions) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("quire-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = run_in(&dir, options).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn run_in(dir: &std::path::Path, options: DemoOptions) -> anyhow::Result<()> {
    let certs = dir.join("certs");
    let ca = Authority::create(&certs)?;
    for name in ["us-east", "eu-west", "ap-south"] {
        ca.issue(
            &certs,
            &NodeCertSpec {
                ips: vec!["127.0.0.1".parse()?],
                ..NodeCertSpec::new(name)
            },
        )?;
    }
    let base = options.base_port;
    let loopback = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
    let atlantic = crate::wan::profile("transatlantic").expect("profile");
    let intercontinental = crate::wan::profile("intercontinental").expect("profile");

    let us = start(settings(
        dir,
        &certs,
        "us-east",
        "us-east-1",
        base,
        None,
        80,
        1000,
    ))
    .await?;
    let relay_eu = Relay::spawn(
        loopback(0),
        loopback(base + 1000),
        atlantic.clone(),
        atlantic,
        1,
    )
    .await?;
    let eu = start(settings(
        dir,
        &certs,
        "eu-west",
        "eu-west-1",
        base + 1,
        Some(relay_eu.addr),
        80,
        1000,
    ))
    .await?;
    let relay_ap = Relay::spawn(
        loopback(0),
        loopback(base + 1001),
        intercontinental.clone(),
        intercontinental,
        2,
    )
    .await?;
    let ap = start(settings(
        dir,
        &certs,
        "ap-south",
        "ap-south-1",
        base + 2,
        Some(relay_ap.addr),
        120,
        500,
    ))
    .await?;
    let regions = [
        Region {
            name: "us-east",
            shared: us.clone(),
            port: base,
            link: "primary",
        },
        Region {
            name: "eu-west",
            shared: eu.clone(),
            port: base + 1,
            link: "transatlantic 40 ms",
        },
        Region {
            name: "ap-south",
            shared: ap.clone(),
            port: base + 2,
            link: "via eu-west 60 ms",
        },
    ];

    let writes = Arc::new(AtomicU64::new(0));
    let load = tokio::spawn(drive_load(base, options.rate, writes.clone()));
    let started = Instant::now();
    let tty = std::io::stdout().is_terminal();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            _ = &mut ctrl_c => break,
            _ = tick.tick() => {
                let screen = render(&regions, started.elapsed(), writes.load(Ordering::Relaxed), options.rate);
                let mut out = std::io::stdout().lock();
                if tty {
                    let _ = write!(out, "\x1b[2J\x1b[H");
                }
                let _ = write!(out, "{screen}");
                let _ = out.flush();
                if options.duration.is_some_and(|d| started.elapsed() >= d) {
                    break;
                }
            }
        }
    }
    load.abort();
    println!("\nstopping the three regions...");
    for r in &regions {
        r.shared.begin_shutdown();
    }
    relay_eu.stop();
    relay_ap.stop();
    tokio::time::sleep(Duration::from_millis(300)).await;
    Ok(())
}

/// Writes JSON documents to us-east at about `rate` per second, in small
/// pipelines every 10 ms.
async fn drive_load(port: u16, rate: u64, writes: Arc<AtomicU64>) {
    let Ok(mut socket) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return;
    };
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let per_tick = (rate / 100).max(1);
    let mut id = 0u64;
    let mut reply = vec![0u8; 64 * 1024];
    loop {
        tick.tick().await;
        let mut buf = Vec::new();
        {
            let mut rng = rand::rng();
            for _ in 0..per_tick {
                id += 1;
                let key = format!("user:{}", id % 50_000);
                let doc = format!(
                    r#"{{"id":{id},"name":"user{}","country":"{}","score":{},"active":{},"updated_ms":{}}}"#,
                    id % 50_000,
                    ["DE", "US", "IN", "JP", "BR"][rng.random_range(0..5)],
                    rng.random_range(0..10_000),
                    rng.random_bool(0.7),
                    crate::node::unix_ms()
                );
                crate::resp::encode_request(
                    &[b"SET".as_slice(), key.as_bytes(), doc.as_bytes()],
                    &mut buf,
                );
            }
            crate::resp::encode_request(
                &[
                    b"INCRBY".as_slice(),
                    b"demo:writes",
                    per_tick.to_string().as_bytes(),
                ],
                &mut buf,
            );
        }
        if socket.write_all(&buf).await.is_err() {
            return;
        }
        // Replies are simple (+OK / :n); read what arrived to keep the
        // socket drained.
        match tokio::time::timeout(Duration::from_millis(5), socket.read(&mut reply)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return,
            _ => {}
        }
        writes.fetch_add(per_tick, Ordering::Relaxed);
    }
}

struct Row {
    role: String,
    offset: u64,
    lag_bytes: u64,
    lag_ms: u64,
    link: String,
    wire: u64,
    ratio: f64,
    keys: usize,
}

fn row(shared: &Shared, upstream: Option<&Shared>, me: &str) -> Row {
    let (offset, keys) = {
        let data = shared.data.lock();
        (
            data.repl.offset(),
            data.keyspace.dbs.iter().map(|d| d.len()).sum(),
        )
    };
    let c = &shared.repl.counters;
    // Wire bytes: the stream and the fast path's datagram copies.
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let (raw, wire) = if upstream.is_some() {
        (
            load(&c.received_raw_bytes),
            load(&c.received_wire_bytes) + load(&c.datagram_received_bytes),
        )
    } else {
        (
            load(&c.sent_raw_bytes),
            load(&c.sent_wire_bytes) + load(&c.datagram_sent_bytes),
        )
    };
    let (lag_bytes, lag_ms, link) = match upstream {
        Some(up) => {
            let up_offset = up.data.lock().repl.offset();
            let lag_ms = up
                .repl
                .replicas
                .lock()
                .replicas
                .values()
                .find(|r| r.node == me)
                .map(|r| up.repl.lag_ms_at(r.ack_offset, up_offset))
                .unwrap_or(0);
            let link = shared.repl.link.lock();
            let state = if shared.repl.link_up() {
                format!("up, rtt {} ms", link.rtt_ms)
            } else {
                link.state.to_string()
            };
            (up_offset.saturating_sub(offset), lag_ms, state)
        }
        None => (
            0,
            0,
            format!("{} replica(s)", shared.repl.replicas.lock().replicas.len()),
        ),
    };
    Row {
        role: if upstream.is_some() {
            "replica".into()
        } else {
            "primary".into()
        },
        offset,
        lag_bytes,
        lag_ms,
        link,
        wire,
        ratio: if wire > 0 {
            raw as f64 / wire as f64
        } else {
            0.0
        },
        keys,
    }
}

fn render(regions: &[Region], elapsed: Duration, writes: u64, rate: u64) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "Quire demo — three regions on loopback, emulated WAN links, {rate} writes/s at us-east — {:>4} s, {writes} writes (Ctrl-C stops)\n\n",
        elapsed.as_secs()
    ));
    out.push_str(&format!(
        "{:<9} {:<8} {:<20} {:>12} {:>10} {:>8} {:<18} {:>12} {:>6} {:>7}\n",
        "region",
        "role",
        "link",
        "offset",
        "lag bytes",
        "lag ms",
        "link state",
        "wire bytes",
        "ratio",
        "keys"
    ));
    for (i, r) in regions.iter().enumerate() {
        let upstream = if i == 0 {
            None
        } else {
            Some(&*regions[i - 1].shared)
        };
        let row = row(&r.shared, upstream, r.name);
        out.push_str(&format!(
            "{:<9} {:<8} {:<20} {:>12} {:>10} {:>8} {:<18} {:>12} {:>5.1}x {:>7}\n",
            r.name,
            row.role,
            r.link,
            row.offset,
            row.lag_bytes,
            row.lag_ms,
            row.link,
            row.wire,
            row.ratio,
            row.keys
        ));
    }
    out.push_str("\nPoke the regions (replicas are read-only and serve reads locally):\n");
    for r in regions {
        out.push_str(&format!(
            "  redis-cli -p {:<5}  # {}   metrics: curl -s http://127.0.0.1:{}/metrics\n",
            r.port,
            r.name,
            r.port + 3000
        ));
    }
    out
}
