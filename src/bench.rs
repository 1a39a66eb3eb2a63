//! `quire bench wan`: replication lag, bandwidth and catch-up over
//! emulated WAN links, Quire next to Redis.
//!
//! For each link profile a primary and a replica run as separate processes;
//! the replica reaches the primary through a relay that applies the
//! profile (UDP for Quire's QUIC; TCP for Redis's replication, where a
//! lost segment shows as TCP's fast recovery would deliver it — see
//! [`crate::wan::tcp_relay`]). A writer drives a fixed rate of SETs at
//! the primary and, every 10 ms, a PUBLISH probe carrying its send time;
//! a subscriber on the replica receives the probe once the stream got
//! there, so `receive − send` is the end-to-end replication lag of that
//! instant (one clock: the same process sends and receives).
//!
//! `WAN_BENCH_DEBUG=1` prints the fast-path counters of each Quire run
//! (copies sent and dropped, batches applied per copy, parity rebuilds).

use crate::transport::certs::{Authority, NodeCertSpec};
use crate::wan::relay::Relay;
use crate::wan::tcp_relay::TcpRelay;
use crate::wan::{profile, LinkParams};
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    Json,
    Bytes,
    Counter,
}

impl std::str::FromStr for ValueKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "json" => Ok(ValueKind::Json),
            "bytes" => Ok(ValueKind::Bytes),
            "counter" => Ok(ValueKind::Counter),
            _ => Err(format!("'{s}' is not json, bytes or counter")),
        }
    }
}

#[derive(Debug, Clone)]
pub struct WanBenchOptions {
    pub profiles: Vec<String>,
    pub rate: u64,
    pub seconds: u64,
    pub value: ValueKind,
    pub value_size: usize,
    pub keys: u64,
    /// Cut the link for this long, `seconds` / 3 into the run.
    pub outage_secs: Option<u64>,
    pub redis: bool,
    /// Replaces the profiles' loss rate.
    pub loss: Option<f64>,
    /// Replaces the profiles' jitter.
    pub jitter: Option<Duration>,
    pub congestion: String,
    /// `repl.datagrams` modes to run Quire with (one run each).
    pub datagrams: Vec<String>,
    pub json: Option<PathBuf>,
    pub plot: Option<PathBuf>,
    pub quire_bin: PathBuf,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    pub system: String,
    pub profile: String,
    pub probes: usize,
    pub lag_p50_ms: f64,
    /// The median one-way delay the emulated link itself gave the replica's
    /// incoming packets (jitter and in-order delivery included).
    pub link_p50_ms: Option<f64>,
    pub lag_p99_ms: f64,
    pub lag_p999_ms: f64,
    pub lag_max_ms: f64,
    pub logical_bytes: u64,
    pub wire_bytes: u64,
    pub wire_per_logical: f64,
    pub compression_ratio: f64,
    pub cpu_seconds_per_gb: f64,
    pub outage_secs: Option<u64>,
    pub catchup_secs: Option<f64>,
    pub full_syncs_after_start: Option<u64>,
    /// Quire's fast path: datagram copy bytes per stream wire byte, and
    /// the share of batches the replica applied from a datagram copy.
    pub datagram_overhead: Option<f64>,
    pub batches_via_datagram: Option<f64>,
    #[serde(skip)]
    pub lag_series: Vec<(f64, f64)>,
}

/// CPU seconds (user + system) process `pid` has used so far: fields 14
/// and 15 of /proc/PID/stat (11 and 12 after the command name).
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

fn wait_for(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// `INFO section` of the Redis-protocol server on a loopback port ("" if
/// it cannot be read). Shared by the benchmarks in `benches/`.
pub fn info(port: u16, section: &str) -> String {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let mut out = Vec::new();
    crate::resp::encode_request(&[b"INFO".as_slice(), section.as_bytes()], &mut out);
    if s.write_all(&out).is_err() {
        return String::new();
    }
    let mut r = BufReader::new(s);
    let mut line = String::new();
    if r.read_line(&mut line).is_err() {
        return String::new();
    }
    let len: usize = line.trim_start_matches('$').trim().parse().unwrap_or(0);
    let mut body = vec![0u8; len + 2];
    let _ = r.read_exact(&mut body);
    String::from_utf8_lossy(&body).to_string()
}

/// One `name:value` line of INFO text, as text ("" if absent).
pub fn field_text(text: &str, name: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
}

fn field(text: &str, name: &str) -> u64 {
    field_text(text, name).parse().unwrap_or(0)
}

fn value(kind: ValueKind, size: usize, rng: &mut impl Rng, id: u64) -> Vec<u8> {
    match kind {
        ValueKind::Counter => id.to_string().into_bytes(),
        ValueKind::Bytes => (0..size).map(|_| rng.random::<u8>()).collect(),
        ValueKind::Json => {
            let mut doc = format!(
                r#"{{"id":{id},"user":"user_{}","country":"{}","plan":"{}","score":{},"active":{},"ts":{}}}"#,
                id % 100_000,
                ["DE", "US", "IN", "JP", "BR", "FR"][rng.random_range(0..6)],
                ["free", "pro", "team"][rng.random_range(0..3)],
                rng.random_range(0..100_000),
                rng.random_bool(0.8),
                crate::node::unix_ms()
            );
            while doc.len() < size {
                doc.insert_str(
                    doc.len() - 1,
                    &format!(r#","f{}":{}"#, doc.len(), rng.random_range(0..1000)),
                );
            }
            doc.into_bytes()
        }
    }
}

/// The writer: `rate` SETs per second plus a probe every 10 ms, for
/// `seconds`; returns the logical bytes written. `outage` toggles the
/// link at its instants.
fn drive(
    port: u16,
    replica: u16,
    opts: &WanBenchOptions,
    started: Instant,
    outage: &dyn Fn(bool),
) -> (u64, Option<std::thread::JoinHandle<f64>>) {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return (0, None);
    };
    let _ = s.set_nodelay(true);
    let mut drain = s.try_clone().expect("clone");
    let stop = Arc::new(AtomicBool::new(false));
    let stop_reader = stop.clone();
    let reader = std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 16];
        let _ = drain.set_read_timeout(Some(Duration::from_millis(200)));
        while !stop_reader.load(Ordering::Relaxed) {
            if let Ok(0) = drain.read(&mut buf) {
                return;
            }
        }
    });
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let mut logical = 0u64;
    let mut sent = 0u64;
    let mut seq = 0u64;
    let tick = Duration::from_millis(1);
    let total = Duration::from_secs(opts.seconds);
    let outage_window = opts
        .outage_secs
        .map(|o| (total / 3, total / 3 + Duration::from_secs(o)));
    let mut in_outage = false;
    let mut catchup = None;
    let mut next = Instant::now();
    let begin = Instant::now();
    while begin.elapsed() < total {
        let elapsed = begin.elapsed();
        if let Some((from, to)) = outage_window {
            let want = elapsed >= from && elapsed < to;
            if want != in_outage {
                outage(want);
                in_outage = want;
                if !want {
                    catchup = Some(measure_catch_up(port, replica));
                }
            }
        }
        let due = (opts.rate as f64 * elapsed.as_secs_f64()) as u64;
        let mut buf = Vec::new();
        while sent < due {
            let id = sent % opts.keys.max(1);
            let key = format!("key:{id}");
            let v = value(opts.value, opts.value_size, &mut rng, sent);
            logical += (key.len() + v.len()) as u64;
            crate::resp::encode_request(&[b"SET".as_slice(), key.as_bytes(), &v], &mut buf);
            sent += 1;
        }
        if elapsed.as_millis() as u64 / 10 >= seq {
            let probe = format!("{seq} {}", started.elapsed().as_micros());
            crate::resp::encode_request(
                &[b"PUBLISH".as_slice(), b"quire:lag", probe.as_bytes()],
                &mut buf,
            );
            seq += 1;
        }
        if !buf.is_empty() && s.write_all(&buf).is_err() {
            break;
        }
        next += tick;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    if in_outage {
        outage(false);
        catchup = Some(measure_catch_up(port, replica));
    }
    stop.store(true, Ordering::Relaxed);
    let _ = reader.join();
    (logical, catchup)
}

/// From now (the link just came back): seconds until the replica has the
/// offset the primary had at this instant.
fn measure_catch_up(primary: u16, replica: u16) -> std::thread::JoinHandle<f64> {
    let restored = Instant::now();
    let target = field(&info(primary, "replication"), "master_repl_offset");
    std::thread::spawn(move || {
        wait_for(Duration::from_secs(600), || {
            field(&info(replica, "replication"), "slave_repl_offset") >= target
        });
        restored.elapsed().as_secs_f64()
    })
}

/// Probes in the first second are not counted: both systems' links get the
/// same warm-up at the load's rate before lag is measured.
const WARM_UP_SECS: f64 = 1.0;

/// Subscribes on the replica; records (time since start, lag) per probe.
fn subscribe(
    port: u16,
    started: Instant,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<(f64, f64)>> {
    std::thread::spawn(move || {
        let mut samples = Vec::new();
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
            return samples;
        };
        let _ = s.write_all(b"SUBSCRIBE quire:lag\r\n");
        let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
        let mut r = BufReader::new(s);
        let mut line = String::new();
        while !stop.load(Ordering::Relaxed) {
            line.clear();
            match r.read_line(&mut line) {
                Ok(0) => break,
                Ok(_) => {}
                Err(_) => continue,
            }
            // Probe payloads are "<seq> <micros>"; other lines are framing.
            let mut parts = line.trim().split(' ');
            if let (Some(a), Some(b), None) = (parts.next(), parts.next(), parts.next()) {
                if let (Ok(_), Ok(sent_us)) = (a.parse::<u64>(), b.parse::<u64>()) {
                    let now_us = started.elapsed().as_micros() as u64;
                    if sent_us as f64 / 1e6 >= WARM_UP_SECS {
                        samples.push((
                            now_us as f64 / 1e6,
                            now_us.saturating_sub(sent_us) as f64 / 1000.0,
                        ));
                    }
                }
            }
        }
        samples
    })
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[allow(clippy::too_many_arguments)]
fn summarize(
    system: &str,
    profile: &str,
    samples: Vec<(f64, f64)>,
    logical: u64,
    wire: u64,
    stream: u64,
    cpu: f64,
    outage: Option<u64>,
    catchup: Option<f64>,
    full_syncs: Option<u64>,
) -> RunResult {
    let mut lags: Vec<f64> = samples.iter().map(|s| s.1).collect();
    lags.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    RunResult {
        system: system.into(),
        profile: profile.into(),
        probes: lags.len(),
        lag_p50_ms: percentile(&lags, 0.5),
        link_p50_ms: None,
        lag_p99_ms: percentile(&lags, 0.99),
        lag_p999_ms: percentile(&lags, 0.999),
        lag_max_ms: lags.last().copied().unwrap_or(f64::NAN),
        logical_bytes: logical,
        wire_bytes: wire,
        wire_per_logical: if logical > 0 {
            wire as f64 / logical as f64
        } else {
            0.0
        },
        compression_ratio: if wire > 0 {
            stream as f64 / wire as f64
        } else {
            0.0
        },
        cpu_seconds_per_gb: if logical > 0 {
            cpu / (logical as f64 / 1e9)
        } else {
            0.0
        },
        outage_secs: outage,
        catchup_secs: catchup,
        full_syncs_after_start: full_syncs,
        datagram_overhead: None,
        batches_via_datagram: None,
        lag_series: samples,
    }
}

/// What one run observed, whichever system it ran.
struct Measured {
    samples: Vec<(f64, f64)>,
    logical: u64,
    catchup: Option<f64>,
    cpu: f64,
}

/// Drives the load and probes against a running primary/replica pair
/// (processes `pids`), waits for the replica to catch up, and collects lag
/// samples, logical bytes, catch-up time and CPU.
fn measure(
    pp: u16,
    rp: u16,
    opts: &WanBenchOptions,
    link: &LinkParams,
    pids: [u32; 2],
    outage: &dyn Fn(bool),
) -> Measured {
    let cpu_now = || pids.iter().map(|p| cpu_seconds(*p)).sum::<f64>();
    let cpu_before = cpu_now();
    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let sub = subscribe(rp, started, stop.clone());
    std::thread::sleep(Duration::from_millis(100));
    let (logical, catchup) = drive(pp, rp, opts, started, outage);
    let catchup = catchup.and_then(|h| h.join().ok());
    wait_for(Duration::from_secs(120), || {
        field(&info(rp, "replication"), "slave_repl_offset")
            >= field(&info(pp, "replication"), "master_repl_offset")
    });
    std::thread::sleep(Duration::from_millis(200) + link.delay * 2);
    stop.store(true, Ordering::Relaxed);
    let samples = sub.join().unwrap_or_default();
    Measured {
        samples,
        logical,
        catchup,
        cpu: cpu_now() - cpu_before,
    }
}

fn run_quire(
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    opts: &WanBenchOptions,
    name: &str,
    link: &LinkParams,
    datagrams: &str,
) -> anyhow::Result<RunResult> {
    let certs = dir.join("certs");
    let (pp, prp, rp, rrp) = (free_port(), free_udp_port(), free_port(), free_udp_port());
    let rtt = (link.delay.as_millis() * 2) as u64;
    let mbit = link.bandwidth_bps.map(|b| b / 1_000_000).unwrap_or(0);
    let spawn =
        |node: &str, port: u16, repl: u16, upstream: Option<SocketAddr>| -> anyhow::Result<Proc> {
            let data = dir.join(format!("quire-{name}-{node}"));
            let _ = std::fs::remove_dir_all(&data);
            let mut cmd = Command::new(&opts.quire_bin);
            cmd.args([
                "server",
                "--port",
                &port.to_string(),
                "--repl-port",
                &repl.to_string(),
                "--save",
                "",
                "--node",
                node,
            ]);
            cmd.arg("--dir").arg(&data).arg("--certs").arg(&certs);
            cmd.env("QUIRE_LINK__RTT_MS", rtt.max(1).to_string())
                .env("QUIRE_LINK__BANDWIDTH_MBIT", mbit.max(1).to_string());
            // The backlog on its default: sized for a 10-minute outage.
            cmd.env("QUIRE_REPL__CONGESTION", &opts.congestion)
                .env("QUIRE_REPL__DATAGRAMS", datagrams);
            if let Some(up) = upstream {
                cmd.args(["--replicaof", &up.to_string()]);
            }
            let child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn()?;
            anyhow::ensure!(
                wait_for(Duration::from_secs(20), || TcpStream::connect((
                    "127.0.0.1",
                    port
                ))
                .is_ok()),
                "quire {node} did not start"
            );
            anyhow::ensure!(
                wait_for(Duration::from_secs(60), || info(port, "persistence")
                    .contains("loading:0")),
                "quire {node} did not finish loading"
            );
            Ok(Proc(child))
        };
    let primary = spawn("p", pp, prp, None)?;
    let relay = rt.block_on(Relay::spawn(
        "127.0.0.1:0".parse()?,
        SocketAddr::from(([127, 0, 0, 1], prp)),
        link.clone(),
        link.clone(),
        7,
    ))?;
    let replica = spawn("r", rp, rrp, Some(relay.addr))?;
    anyhow::ensure!(
        wait_for(Duration::from_secs(30), || info(rp, "replication")
            .contains("master_link_status:up")),
        "quire replica did not connect"
    );
    let control = relay.control.clone();
    control.down_delays.clear();
    let m = measure(
        pp,
        rp,
        opts,
        link,
        [primary.0.id(), replica.0.id()],
        &|on| control.set_outage(on),
    );
    let link_p50 = control.down_delays.median_ms();
    let pinfo = info(pp, "replication");
    let rinfo = info(rp, "replication");
    if std::env::var_os("WAN_BENCH_DEBUG").is_some() {
        for f in [
            "slave0",
            "quire_datagram_sent_batches",
            "quire_datagram_dropped_batches",
            "quire_sent_wire_bytes",
            "quire_datagram_sent_bytes",
        ] {
            eprintln!("primary {f}: {}", field_text(&pinfo, f));
        }
        for f in [
            "quire_batches_via_stream",
            "quire_batches_via_datagram",
            "quire_batch_copies_discarded",
            "quire_datagrams_rejected",
            "quire_datagrams_recovered",
            "quire_datagram_received_bytes",
        ] {
            eprintln!("replica {f}: {}", field_text(&rinfo, f));
        }
    }
    let full = field(&info(pp, "stats"), "sync_full").saturating_sub(1);
    drop(replica);
    drop(primary);
    relay.stop();
    let (stream_wire, copies) = (
        field(&pinfo, "quire_sent_wire_bytes"),
        field(&pinfo, "quire_datagram_sent_bytes"),
    );
    let system = if opts.datagrams.len() > 1 {
        format!("quire dg={datagrams}")
    } else {
        "quire".to_string()
    };
    let mut result = summarize(
        &system,
        name,
        m.samples,
        m.logical,
        stream_wire + copies,
        field(&pinfo, "quire_sent_stream_bytes"),
        m.cpu,
        opts.outage_secs,
        m.catchup,
        Some(full),
    );
    let (via_stream, via_datagram) = (
        field(&rinfo, "quire_batches_via_stream"),
        field(&rinfo, "quire_batches_via_datagram"),
    );
    result.link_p50_ms = link_p50;
    result.datagram_overhead = Some(if stream_wire > 0 {
        copies as f64 / stream_wire as f64
    } else {
        0.0
    });
    result.batches_via_datagram = Some(if via_stream + via_datagram > 0 {
        via_datagram as f64 / (via_stream + via_datagram) as f64
    } else {
        0.0
    });
    Ok(result)
}

fn run_redis(
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    opts: &WanBenchOptions,
    name: &str,
    link: &LinkParams,
) -> anyhow::Result<RunResult> {
    let (pp, rp) = (free_port(), free_port());
    let spawn = |port: u16, upstream: Option<SocketAddr>| -> anyhow::Result<Proc> {
        let data = dir.join(format!("redis-{name}-{port}"));
        std::fs::create_dir_all(&data)?;
        let mut cmd = Command::new("redis-server");
        cmd.args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .arg("--dir")
        .arg(&data);
        if let Some(up) = upstream {
            cmd.args(["--replicaof", &up.ip().to_string(), &up.port().to_string()]);
        }
        let child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn()?;
        anyhow::ensure!(
            wait_for(Duration::from_secs(20), || TcpStream::connect((
                "127.0.0.1",
                port
            ))
            .is_ok()),
            "redis-server did not start"
        );
        Ok(Proc(child))
    };
    let primary = spawn(pp, None)?;
    let relay = rt.block_on(TcpRelay::spawn(
        "127.0.0.1:0".parse()?,
        SocketAddr::from(([127, 0, 0, 1], pp)),
        link.clone(),
    ))?;
    let replica = spawn(rp, Some(relay.addr))?;
    anyhow::ensure!(
        wait_for(Duration::from_secs(30), || info(rp, "replication")
            .contains("master_link_status:up")),
        "redis replica did not connect"
    );
    let wire_before = relay.control.down_bytes.load(Ordering::Relaxed);
    let stream_before = field(&info(pp, "replication"), "master_repl_offset");
    let control = relay.control.clone();
    control.down_delays.clear();
    let m = measure(
        pp,
        rp,
        opts,
        link,
        [primary.0.id(), replica.0.id()],
        &|on| control.set_outage(on),
    );
    let link_p50 = control.down_delays.median_ms();
    let wire = relay.control.down_bytes.load(Ordering::Relaxed) - wire_before;
    let pinfo = info(pp, "replication");
    let stream = field(&pinfo, "master_repl_offset") - stream_before;
    let full = field(&info(pp, "stats"), "sync_full").saturating_sub(1);
    drop(replica);
    drop(primary);
    let mut result = summarize(
        "redis",
        name,
        m.samples,
        m.logical,
        wire,
        stream,
        m.cpu,
        opts.outage_secs,
        m.catchup,
        Some(full),
    );
    result.link_p50_ms = link_p50;
    Ok(result)
}

/// Runs the benchmark; prints the table; writes JSON and the plot.
pub fn run(opts: WanBenchOptions) -> anyhow::Result<Vec<RunResult>> {
    let dir = std::env::temp_dir().join(format!("quire-bench-wan-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let ca = Authority::create(&dir.join("certs"))?;
    for n in ["p", "r"] {
        ca.issue(
            &dir.join("certs"),
            &NodeCertSpec {
                ips: vec!["127.0.0.1".parse()?],
                ..NodeCertSpec::new(n)
            },
        )?;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let redis = opts.redis
        && Command::new("redis-server")
            .arg("--version")
            .output()
            .is_ok();
    let mut results = Vec::new();
    for name in &opts.profiles {
        let mut link = profile(name).ok_or_else(|| {
            anyhow::anyhow!(
                "unknown profile '{name}' (known: {:?})",
                crate::wan::PROFILES
            )
        })?;
        if let Some(loss) = opts.loss {
            link.loss = loss;
        }
        if let Some(jitter) = opts.jitter {
            link.jitter = jitter;
        }
        for mode in &opts.datagrams {
            eprintln!("profile {name}: quire (datagrams {mode})...");
            results.push(run_quire(&rt, &dir, &opts, name, &link, mode)?);
        }
        if redis {
            eprintln!("profile {name}: redis...");
            results.push(run_redis(&rt, &dir, &opts, name, &link)?);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    print_table(&opts, &results);
    if let Some(path) = &opts.json {
        std::fs::write(path, serde_json::to_string_pretty(&results)?)?;
    }
    if let Some(path) = &opts.plot {
        std::fs::write(path, svg(&results))?;
    }
    Ok(results)
}

fn print_table(opts: &WanBenchOptions, results: &[RunResult]) {
    println!(
        "{} writes/s of {:?} values (~{} B), {} s per run{}, congestion {}\n",
        opts.rate,
        opts.value,
        opts.value_size,
        opts.seconds,
        opts.outage_secs
            .map(|o| format!(", {o} s outage at {} s", opts.seconds / 3))
            .unwrap_or_default(),
        opts.congestion
    );
    if opts.loss.is_some() || opts.jitter.is_some() {
        let loss = opts
            .loss
            .map(|l| format!(" loss {:.2} %", l * 100.0))
            .unwrap_or_default();
        let jitter = opts
            .jitter
            .map(|j| format!(" jitter {:.1} ms", j.as_secs_f64() * 1000.0))
            .unwrap_or_default();
        println!("profiles overridden:{loss}{jitter}\n");
    }
    println!("| profile | system | p50 ms | link p50 ms | p50 over link ms | p99 ms | p99.9 ms | max ms | wire/logical | compression | copies/stream | via datagram | CPU s/GB | catch-up s | full syncs |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in results {
        println!(
            "| {} | {} | {:.1} | {} | {} | {:.1} | {:.1} | {:.1} | {:.3} | {:.2}x | {} | {} | {:.1} | {} | {} |",
            r.profile,
            r.system,
            r.lag_p50_ms,
            r.link_p50_ms.map(|l| format!("{l:.1}")).unwrap_or("-".into()),
            r.link_p50_ms.map(|l| format!("{:+.1}", r.lag_p50_ms - l)).unwrap_or("-".into()),
            r.lag_p99_ms,
            r.lag_p999_ms,
            r.lag_max_ms,
            r.wire_per_logical,
            r.compression_ratio,
            r.datagram_overhead.map(|o| format!("{o:.2}")).unwrap_or("-".into()),
            r.batches_via_datagram.map(|v| format!("{:.0} %", v * 100.0)).unwrap_or("-".into()),
            r.cpu_seconds_per_gb,
            r.catchup_secs.map(|c| format!("{c:.2}")).unwrap_or("-".into()),
            r.full_syncs_after_start.map(|f| f.to_string()).unwrap_or("-".into()),
        );
    }
}

/// Lag over time, one line per run, as an SVG an operator can open.
fn svg(results: &[RunResult]) -> String {
    let (w, h, m) = (960.0, 480.0, 60.0);
    let max_t = results
        .iter()
        .flat_map(|r| r.lag_series.iter().map(|s| s.0))
        .fold(1.0f64, f64::max);
    let max_lag = results
        .iter()
        .flat_map(|r| r.lag_series.iter().map(|s| s.1))
        .fold(1.0f64, f64::max)
        .min(5000.0);
    let x = |t: f64| m + (w - 2.0 * m) * t / max_t;
    let y = |l: f64| h - m - (h - 2.0 * m) * (l.min(max_lag) / max_lag);
    let colors = [
        "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    ];
    let mut out =
        format!("<svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{h}' font-family='sans-serif' font-size='12'>\n<rect width='100%' height='100%' fill='white'/>\n");
    out.push_str(&format!(
        "<text x='{m}' y='20' font-size='14'>Replication lag per probe (ms) over time (s)</text>\n"
    ));
    out.push_str(&format!("<line x1='{m}' y1='{}' x2='{}' y2='{}' stroke='black'/>\n<line x1='{m}' y1='{m}' x2='{m}' y2='{}' stroke='black'/>\n", h - m, w - m, h - m, h - m));
    for i in 0..=5 {
        let l = max_lag * i as f64 / 5.0;
        out.push_str(&format!("<text x='5' y='{:.0}'>{l:.0}</text><line x1='{m}' y1='{:.1}' x2='{}' y2='{:.1}' stroke='#eee'/>\n", y(l) + 4.0, y(l), w - m, y(l)));
        let t = max_t * i as f64 / 5.0;
        out.push_str(&format!(
            "<text x='{:.0}' y='{}'>{t:.0}</text>\n",
            x(t) - 5.0,
            h - m + 18.0
        ));
    }
    for (i, r) in results.iter().enumerate() {
        let color = colors[i % colors.len()];
        let points: Vec<String> = r
            .lag_series
            .iter()
            .map(|(t, l)| format!("{:.1},{:.1}", x(*t), y(*l)))
            .collect();
        out.push_str(&format!(
            "<polyline fill='none' stroke='{color}' stroke-width='1' points='{}'/>\n",
            points.join(" ")
        ));
        out.push_str(&format!(
            "<text x='{}' y='{}' fill='{color}'>{} {} (p99 {:.0} ms)</text>\n",
            w - m - 250.0,
            m + 16.0 * i as f64,
            r.system,
            r.profile,
            r.lag_p99_ms
        ));
    }
    out.push_str("</svg>\n");
    out
}
