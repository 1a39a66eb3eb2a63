//! Replication benchmark on loopback: a fixed JSON-document write load
//! against a primary alone and against a primary with two replicas, run
//! alternately; prints bytes on the wire per logical byte, the stream
//! compressor's speed, and the primary's throughput with replicas attached
//! relative to none.
//!
//! Run: `cargo bench --bench replication` (env: RUNS=5 WRITES=200000).
//! Uses the release `quire` binary cargo builds for benches.

use quire::bench::cpu_seconds;
use quire::replication::batch::{Compressor, Decompressor};
use rand::{Rng, SeedableRng};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CLIENTS: usize = 4;
const PIPELINE: usize = 32;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A JSON document like an application's user record: field names repeat,
/// values vary.
fn document(rng: &mut impl Rng, id: u64) -> String {
    const COUNTRIES: &[&str] = &["DE", "US", "FR", "IN", "BR", "JP", "GB", "ES", "IT", "NL"];
    const PLANS: &[&str] = &["free", "pro", "team", "enterprise"];
    const TAGS: &[&str] = &["alpha", "beta", "gamma", "delta", "omega", "sigma", "kappa"];
    format!(
        r#"{{"id":{id},"user":"user_{id}","email":"user{id}@example.com","country":"{}","plan":"{}","score":{},"balance":{}.{:02},"tags":["{}","{}"],"created":"2026-{:02}-{:02}T{:02}:{:02}:{:02}Z","active":{},"session":"{:016x}"}}"#,
        COUNTRIES[rng.random_range(0..COUNTRIES.len())],
        PLANS[rng.random_range(0..PLANS.len())],
        rng.random_range(0..100_000),
        rng.random_range(0..10_000),
        rng.random_range(0..100),
        TAGS[rng.random_range(0..TAGS.len())],
        TAGS[rng.random_range(0..TAGS.len())],
        rng.random_range(1..13),
        rng.random_range(1..29),
        rng.random_range(0..24),
        rng.random_range(0..60),
        rng.random_range(0..60),
        rng.random_bool(0.8),
        rng.random::<u64>(),
    )
}

fn encode(args: &[&[u8]], out: &mut Vec<u8>) {
    quire::resp::encode_request(args, out);
}

struct Node {
    child: Child,
    port: u16,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(
    bin: &str,
    dir: &Path,
    name: &str,
    port: u16,
    repl_port: u16,
    replicaof: Option<u16>,
) -> Node {
    let data = dir.join(name);
    std::fs::create_dir_all(&data).unwrap();
    let mut cmd = Command::new(bin);
    cmd.args([
        "server",
        "--port",
        &port.to_string(),
        "--repl-port",
        &repl_port.to_string(),
        "--save",
        "",
        "--node",
        name,
    ]);
    cmd.arg("--dir")
        .arg(&data)
        .arg("--certs")
        .arg(dir.join("certs"));
    if let Some(up) = replicaof {
        cmd.args(["--replicaof", &format!("127.0.0.1:{up}")]);
    }
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start quire");
    let node = Node { child, port };
    wait(Duration::from_secs(20), || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    // Serving starts once the log is replayed (-LOADING before).
    wait(Duration::from_secs(60), || {
        quire::bench::info(port, "persistence").contains("loading:0")
    });
    node
}

fn wait(limit: Duration, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < limit, "timed out");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One field of the node's `INFO replication`.
fn info(port: u16, field: &str) -> String {
    quire::bench::field_text(&quire::bench::info(port, "replication"), field)
}

/// Writes `writes` documents from CLIENTS connections, PIPELINE deep;
/// returns ops/s and the logical bytes (keys + values) written.
fn load(port: u16, writes: usize, seed: u64) -> (f64, u64) {
    let per_client = writes / CLIENTS;
    let mut payloads = Vec::new();
    let mut logical = 0u64;
    for c in 0..CLIENTS {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed + c as u64);
        let mut batches = Vec::new();
        let mut buf = Vec::new();
        for i in 0..per_client {
            let id = (c * per_client + i) as u64;
            let key = format!("user:{id}");
            let doc = document(&mut rng, id);
            logical += (key.len() + doc.len()) as u64;
            encode(&[b"SET", key.as_bytes(), doc.as_bytes()], &mut buf);
            if (i + 1) % PIPELINE == 0 || i + 1 == per_client {
                batches.push((std::mem::take(&mut buf), (i % PIPELINE) + 1));
            }
        }
        payloads.push(batches);
    }
    let started = Instant::now();
    let threads: Vec<_> = payloads
        .into_iter()
        .map(|batches| {
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
                s.set_nodelay(true).unwrap();
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut line = String::new();
                for (bytes, n) in batches {
                    s.write_all(&bytes).unwrap();
                    for _ in 0..n {
                        line.clear();
                        r.read_line(&mut line).unwrap();
                        assert_eq!(line, "+OK\r\n");
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    (
        (per_client * CLIENTS) as f64 / started.elapsed().as_secs_f64(),
        logical,
    )
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// The stream compressor alone: the same documents as RESP SETs, cut into
/// 64 KiB batches through one streaming context.
fn compressor_speed(writes: usize, level: i32) -> (f64, f64, f64) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut stream = Vec::new();
    for id in 0..writes as u64 {
        let key = format!("user:{id}");
        let doc = document(&mut rng, id);
        encode(&[b"SET", key.as_bytes(), doc.as_bytes()], &mut stream);
    }
    let mut c = Compressor::new(level);
    let started = Instant::now();
    let mut wire = 0usize;
    let mut batches = Vec::new();
    for (i, chunk) in stream.chunks(64 * 1024).enumerate() {
        let b = c.compress((i * 64 * 1024) as u64, chunk);
        wire += b.payload.len();
        batches.push(b);
    }
    let compress_mbs = stream.len() as f64 / 1e6 / started.elapsed().as_secs_f64();
    let mut d = Decompressor::new(0);
    let started = Instant::now();
    for b in &batches {
        d.decompress(b).unwrap();
    }
    let decompress_mbs = stream.len() as f64 / 1e6 / started.elapsed().as_secs_f64();
    (
        compress_mbs,
        decompress_mbs,
        wire as f64 / stream.len() as f64,
    )
}

/// Time from REPLICAOF NO ONE to the first accepted write, on a replica
/// that follows a primary (median of `runs`).
fn promotion_ms(bin: &str, dir: &Path, runs: usize) -> f64 {
    let mut samples = Vec::new();
    // A fresh pair each time: once promoted, the replica's epoch is newer
    // than the old primary's, which fences itself and follows it (so the
    // pair cannot simply be put back as it was).
    for _ in 0..runs {
        let _ = std::fs::remove_dir_all(dir.join("p"));
        let _ = std::fs::remove_dir_all(dir.join("r1"));
        let p = start(bin, dir, "p", 17800, 17801, None);
        let r = start(bin, dir, "r1", 17802, 17803, Some(17801));
        wait(Duration::from_secs(20), || {
            info(r.port, "master_link_status") == "up"
        });
        let mut s = TcpStream::connect(("127.0.0.1", r.port)).unwrap();
        s.set_nodelay(true).unwrap();
        let mut reader = BufReader::new(s.try_clone().unwrap());
        let mut line = String::new();
        let started = Instant::now();
        s.write_all(b"*3\r\n$9\r\nREPLICAOF\r\n$2\r\nNO\r\n$3\r\nONE\r\n")
            .unwrap();
        reader.read_line(&mut line).unwrap();
        loop {
            line.clear();
            s.write_all(b"*3\r\n$3\r\nSET\r\n$5\r\nprobe\r\n$1\r\n1\r\n")
                .unwrap();
            reader.read_line(&mut line).unwrap();
            if line.starts_with("+OK") {
                break;
            }
        }
        samples.push(started.elapsed().as_secs_f64() * 1000.0);
        drop(r);
        drop(p);
    }
    median(&mut samples)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let runs = env_or("RUNS", 5);
    let writes = env_or("WRITES", 200_000);
    let bin = env!("CARGO_BIN_EXE_quire");
    let dir = std::env::temp_dir().join(format!("quire-bench-repl-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let status = Command::new(bin)
        .args([
            "certs",
            "init",
            "--node",
            "p",
            "--node",
            "r1",
            "--node",
            "r2",
            "--ip",
            "127.0.0.1",
            "--dir",
        ])
        .arg(dir.join("certs"))
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());

    let (mut alone, mut with) = (Vec::new(), Vec::new());
    let (mut cpu_alone, mut cpu_with, mut cpu_replica) = (Vec::new(), Vec::new(), Vec::new());
    let (mut wire_per_stream, mut wire_per_logical) = (Vec::new(), Vec::new());
    let mut compressions_per_batch = Vec::new();
    for run in 0..runs {
        let order: &[bool] = if run % 2 == 0 {
            &[false, true]
        } else {
            &[true, false]
        };
        for &replicas in order {
            let base = 17700 + (run as u16 % 2) * 10;
            let _ = std::fs::remove_dir_all(dir.join("p"));
            let p = start(bin, &dir, "p", base, base + 1, None);
            let mut attached = Vec::new();
            if replicas {
                for (i, name) in ["r1", "r2"].iter().enumerate() {
                    let _ = std::fs::remove_dir_all(dir.join(name));
                    attached.push(start(
                        bin,
                        &dir,
                        name,
                        base + 2 + 2 * i as u16,
                        base + 3 + 2 * i as u16,
                        Some(base + 1),
                    ));
                }
                wait(Duration::from_secs(20), || {
                    info(p.port, "connected_slaves") == "2"
                });
            }
            let cpu_before = cpu_seconds(p.child.id());
            let replica_cpu_before: f64 = attached.iter().map(|r| cpu_seconds(r.child.id())).sum();
            let (ops, logical) = load(p.port, writes, run as u64 * 100);
            let cpu_us_per_write = (cpu_seconds(p.child.id()) - cpu_before) * 1e6 / writes as f64;
            if replicas {
                with.push(ops);
                cpu_with.push(cpu_us_per_write);
                let target: u64 = info(p.port, "master_repl_offset").parse().unwrap();
                for r in &attached {
                    wait(Duration::from_secs(60), || {
                        info(r.port, "slave_repl_offset")
                            .parse::<u64>()
                            .unwrap_or(0)
                            >= target
                    });
                }
                let replica_cpu: f64 = attached
                    .iter()
                    .map(|r| cpu_seconds(r.child.id()))
                    .sum::<f64>()
                    - replica_cpu_before;
                cpu_replica.push(replica_cpu * 1e6 / (attached.len() * writes) as f64);
                let sent: f64 = info(p.port, "quire_batches_sent").parse().unwrap();
                let compressed: f64 = info(p.port, "quire_batches_compressed").parse().unwrap();
                compressions_per_batch.push(compressed / sent);
                let wire: f64 = info(p.port, "quire_sent_wire_bytes").parse().unwrap();
                let raw: f64 = info(p.port, "quire_sent_stream_bytes").parse().unwrap();
                wire_per_stream.push(wire / raw);
                wire_per_logical.push(wire / (2.0 * logical as f64));
            } else {
                alone.push(ops);
                cpu_alone.push(cpu_us_per_write);
            }
        }
        eprintln!("run {}/{runs} done", run + 1);
    }
    let promote = promotion_ms(bin, &dir, runs);
    let (cmbs1, dmbs, ratio1) = compressor_speed(writes, 1);
    let (cmbs, _, ratio) = compressor_speed(writes, 3);
    let (a, w) = (median(&mut alone), median(&mut with));
    println!("quire replication on loopback: {writes} SETs of ~300-byte JSON documents, {CLIENTS} clients x pipeline {PIPELINE}, median of {runs} runs\n");
    println!("| metric | value |");
    println!("|---|---|");
    println!("| primary alone, ops/s | {a:.0} |");
    println!("| primary + 2 replicas, ops/s | {w:.0} |");
    println!("| throughput with replicas / alone | {:.2}x |", w / a);
    let (ca, cw) = (median(&mut cpu_alone), median(&mut cpu_with));
    println!("| primary CPU per write, alone | {ca:.2} us |");
    println!("| primary CPU per write, 2 replicas | {cw:.2} us |");
    println!(
        "| primary CPU efficiency (alone / with replicas) | {:.2}x |",
        ca / cw
    );
    println!(
        "| replica CPU per write applied (each) | {:.2} us |",
        median(&mut cpu_replica)
    );
    println!(
        "| batches compressed per batch sent (2 links; 0.5 = all shared) | {:.2} |",
        median(&mut compressions_per_batch)
    );
    println!(
        "| wire bytes per stream byte (RESP) | {:.3} |",
        median(&mut wire_per_stream)
    );
    println!(
        "| wire bytes per logical byte (key+value) | {:.3} |",
        median(&mut wire_per_logical)
    );
    println!("| compressor, zstd level 1 (default), streaming, 64 KiB batches | {cmbs1:.0} MB/s, ratio {ratio1:.3} |");
    println!("| compressor, zstd level 3 | {cmbs:.0} MB/s, ratio {ratio:.3} |");
    println!("| decompressor | {dmbs:.0} MB/s |");
    println!("| promote (REPLICAOF NO ONE) to first accepted write | {promote:.2} ms |");
    let _ = std::fs::remove_dir_all(&dir);
}
