//! Test harness: runs a Quire node in-process on an ephemeral loopback
//! port (its own runtime on a thread) and offers two clients: the `redis`
//! crate, and a raw RESP client that shows exact wire replies.

#![allow(dead_code)]

pub mod proc;

use quire::config::{Settings, Sources};
use quire::server::{Node, Shared};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub struct TestNode {
    pub port: u16,
    pub dir: Option<tempfile::TempDir>,
    pub shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl TestNode {
    pub fn start() -> TestNode {
        Self::start_with(|_| {})
    }

    pub fn start_with(configure: impl FnOnce(&mut Settings)) -> TestNode {
        Self::try_start_in(tempfile::tempdir().expect("tempdir"), configure).expect("node starts")
    }

    /// Starts a node whose data directory is `dir` (for restarts).
    pub fn try_start_in(
        dir: tempfile::TempDir,
        configure: impl FnOnce(&mut Settings),
    ) -> Result<TestNode, String> {
        let mut settings = Settings {
            port: 0,
            dir: dir.path().to_path_buf(),
            ..Settings::default()
        };
        settings.save = Default::default();
        configure(&mut settings);
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                match Node::start(settings, &Sources::default()).await {
                    Ok(node) => {
                        let _ = tx.send(Ok((node.port(), node.shared.clone())));
                        let _ = node.run().await;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                    }
                }
            });
        });
        match rx
            .recv_timeout(Duration::from_secs(30))
            .map_err(|e| e.to_string())?
        {
            Ok((port, shared)) => {
                // Serving starts once the log is replayed.
                let loaded = wait_until(Duration::from_secs(60), || {
                    !shared
                        .persistence
                        .loading
                        .load(std::sync::atomic::Ordering::Acquire)
                        || shared.is_shutting_down()
                });
                if !loaded || shared.is_shutting_down() {
                    let _ = thread.join();
                    return Err("the node stopped while loading its data".into());
                }
                Ok(TestNode {
                    port,
                    dir: Some(dir),
                    shared,
                    thread: Some(thread),
                })
            }
            Err(e) => {
                let _ = thread.join();
                Err(e)
            }
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// A synchronous `redis` crate connection with bounded timeouts.
    pub fn client(&self) -> redis::Connection {
        let client = redis::Client::open(self.url()).expect("client");
        let con = client
            .get_connection_with_timeout(Duration::from_secs(5))
            .expect("connect");
        con.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        con.set_write_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        con
    }

    pub fn raw(&self) -> RawClient {
        RawClient::connect(self.port)
    }

    /// Stops the node and hands back its data directory.
    pub fn stop(mut self) -> tempfile::TempDir {
        self.shutdown();
        self.dir.take().expect("dir")
    }

    fn shutdown(&mut self) {
        self.shared.begin_shutdown();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Runs a command through the `redis` crate, returning the raw value.
pub fn cmd(con: &mut redis::Connection, args: &[&str]) -> redis::RedisResult<redis::Value> {
    let mut c = redis::cmd(args[0]);
    for a in &args[1..] {
        c.arg(*a);
    }
    c.query(con)
}

/// Polls `check` every 10 ms until it holds or `limit` passes.
pub fn wait_until(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    check()
}

/// A decoded reply, for exact assertions.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Vec<u8>),
    Nil,
    Array(Vec<Reply>),
    Map(Vec<(Reply, Reply)>),
    Set(Vec<Reply>),
    Push(Vec<Reply>),
    Double(String),
    Bool(bool),
    Verbatim(String),
}

impl Reply {
    pub fn bulk(s: &str) -> Reply {
        Reply::Bulk(s.as_bytes().to_vec())
    }

    pub fn err(&self) -> &str {
        match self {
            Reply::Error(e) => e,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    pub fn text(&self) -> String {
        match self {
            Reply::Bulk(b) => String::from_utf8_lossy(b).into(),
            Reply::Simple(s) | Reply::Verbatim(s) | Reply::Double(s) => s.clone(),
            other => panic!("expected a string, got {other:?}"),
        }
    }

    pub fn int(&self) -> i64 {
        match self {
            Reply::Int(n) => *n,
            other => panic!("expected an integer, got {other:?}"),
        }
    }

    pub fn items(&self) -> Vec<Reply> {
        match self {
            Reply::Array(v) | Reply::Set(v) | Reply::Push(v) => v.clone(),
            other => panic!("expected an aggregate, got {other:?}"),
        }
    }

    /// Aggregate of bulk strings as Rust strings.
    pub fn strings(&self) -> Vec<String> {
        self.items().iter().map(Reply::text).collect()
    }
}

pub struct RawClient {
    reader: BufReader<TcpStream>,
}

impl RawClient {
    pub fn connect(port: u16) -> RawClient {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        RawClient {
            reader: BufReader::new(stream),
        }
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.reader.get_mut().write_all(bytes).expect("write");
    }

    pub fn send(&mut self, args: &[&str]) {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        self.send_raw(&out);
    }

    /// A request whose arguments are arbitrary bytes (DUMP payloads).
    pub fn call_bytes(&mut self, args: &[&[u8]]) -> Reply {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
        self.send_raw(&out);
        self.read()
    }

    pub fn call(&mut self, args: &[&str]) -> Reply {
        self.send(args);
        self.read()
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        let n = self.reader.read_line(&mut line).expect("read line");
        assert!(n > 0, "connection closed");
        line.trim_end_matches("\r\n").to_string()
    }

    /// True once the server has closed the connection.
    pub fn is_closed(&mut self) -> bool {
        let mut buf = [0u8; 1];
        matches!(self.reader.read(&mut buf), Ok(0))
    }

    pub fn read(&mut self) -> Reply {
        let line = self.line();
        let (kind, rest) = line.split_at(1);
        let n = || rest.parse::<i64>().expect("length");
        match kind {
            "+" => Reply::Simple(rest.into()),
            "-" => Reply::Error(rest.into()),
            ":" => Reply::Int(n()),
            "_" => Reply::Nil,
            "," => Reply::Double(rest.into()),
            "#" => Reply::Bool(rest == "t"),
            "$" | "=" => {
                if n() < 0 {
                    return Reply::Nil;
                }
                let mut buf = vec![0u8; n() as usize + 2];
                self.reader.read_exact(&mut buf).expect("bulk");
                buf.truncate(n() as usize);
                if kind == "=" {
                    Reply::Verbatim(String::from_utf8_lossy(&buf[4..]).into())
                } else {
                    Reply::Bulk(buf)
                }
            }
            "*" | "~" | ">" => {
                if n() < 0 {
                    return Reply::Nil;
                }
                let items = (0..n()).map(|_| self.read()).collect();
                match kind {
                    "*" => Reply::Array(items),
                    "~" => Reply::Set(items),
                    _ => Reply::Push(items),
                }
            }
            "%" => Reply::Map((0..n()).map(|_| (self.read(), self.read())).collect()),
            other => panic!("unexpected reply type {other:?} in {line:?}"),
        }
    }
}

/// One field of `INFO section` on a connection ("" when absent).
pub fn info_field(con: &mut redis::Connection, section: &str, field: &str) -> String {
    let text: String = redis::cmd("INFO").arg(section).query(con).expect("info");
    text.lines()
        .find_map(|l| {
            l.strip_prefix(&format!("{field}:"))
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_default()
}

/// A throwaway PKI: a CA and node certificates naming 127.0.0.1.
pub struct Pki {
    pub dir: tempfile::TempDir,
}

impl Pki {
    pub fn new(nodes: &[&str]) -> Pki {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = quire::transport::certs::Authority::create(dir.path()).expect("ca");
        let pki = Pki { dir };
        for node in nodes {
            pki.issue_with(&ca, node, |_| {});
        }
        pki
    }

    pub fn authority(&self) -> quire::transport::certs::Authority {
        quire::transport::certs::Authority::open(self.dir.path())
            .expect("ca")
            .expect("ca exists")
    }

    pub fn issue_with(
        &self,
        ca: &quire::transport::certs::Authority,
        node: &str,
        tweak: impl FnOnce(&mut quire::transport::certs::NodeCertSpec),
    ) {
        let mut spec = quire::transport::certs::NodeCertSpec::new(node);
        spec.ips = vec!["127.0.0.1".parse().unwrap()];
        tweak(&mut spec);
        ca.issue(self.dir.path(), &spec).expect("issue");
    }

    /// Settings for a node named `node` using this PKI.
    pub fn configure(&self, node: &str, s: &mut Settings) {
        s.repl.port = 0;
        s.repl.certs = self.dir.path().to_path_buf();
        s.node.name = node.to_string();
        s.node.region = format!("region-{node}");
    }
}

impl TestNode {
    /// The UDP port of the node's replication endpoint.
    pub fn repl_port(&self) -> u16 {
        self.shared
            .repl
            .port
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn repl_addr(&self) -> String {
        format!("127.0.0.1:{}", self.repl_port())
    }

    /// One field of `INFO section`.
    pub fn info(&self, section: &str, field: &str) -> String {
        info_field(&mut self.client(), section, field)
    }

    pub fn offset(&self) -> u64 {
        self.info("replication", "master_repl_offset")
            .parse()
            .unwrap_or(0)
    }

    pub fn digest(&self) -> String {
        let mut con = self.client();
        redis::cmd("DEBUG")
            .arg("DIGEST")
            .query(&mut con)
            .expect("digest")
    }
}

/// A port that is free now, outside the kernel's ephemeral range (so an
/// outgoing connection of another test cannot take it before the node
/// binds it), for tests that need to know a node's port in advance.
pub fn reserve_port(udp: bool) -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let _ = NEXT.compare_exchange(
        0,
        20_000 + (std::process::id() % 400) as u16 * 20,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    loop {
        let port = NEXT.fetch_add(1, Ordering::SeqCst);
        let port = 20_000 + (port - 20_000) % 12_000;
        let free = if udp {
            std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok()
        } else {
            std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
        };
        if free {
            return port;
        }
    }
}

/// Runs a redis-py script (`python3 -c SCRIPT PORT`) against `port`; it
/// prints "ok" when its assertions hold.
pub fn run_python(script: &str, port: u16) {
    let out = std::process::Command::new("python3")
        .args(["-c", script, &port.to_string()])
        .output()
        .expect("python3 runs (pip install redis)");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("ok"),
        "redis-py script failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A primary (node "p") and a replica ("r") following it, with their PKI
/// (kept alive with them: it holds the certificates' directory).
pub fn primary_and_replica() -> (Pki, TestNode, TestNode) {
    let pki = Pki::new(&["p", "r"]);
    let primary = TestNode::start_with(|s| pki.configure("p", s));
    let addr = primary.repl_addr();
    let replica = TestNode::start_with(|s| {
        pki.configure("r", s);
        s.replicaof = addr;
    });
    (pki, primary, replica)
}

/// Waits until every replica has applied what the primary had when called,
/// over a working link; returns that offset.
pub fn wait_caught_up(primary: &TestNode, replicas: &[&TestNode], limit: Duration) -> u64 {
    let target = primary.offset();
    for r in replicas {
        assert!(
            wait_until(limit, || r.offset() >= target
                && r.info("replication", "master_link_status") == "up"),
            "replica at {} < {target}; last error: {}",
            r.offset(),
            r.info("replication", "quire_link_last_error")
        );
    }
    target
}

/// Debian's redis-server on a free loopback port, in memory only, with
/// DEBUG enabled and `extra` arguments (e.g. `--replicaof`).
pub struct RedisServer {
    pub child: std::process::Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    pub fn start(extra: &[&str]) -> RedisServer {
        // A port another process took meanwhile makes redis-server exit at
        // once: try another.
        for _ in 0..5 {
            let mut server = Self::start_once(extra);
            std::thread::sleep(Duration::from_millis(50));
            if server.child.try_wait().ok().flatten().is_none() {
                return server;
            }
        }
        panic!("redis-server did not stay up on five ports");
    }

    fn start_once(extra: &[&str]) -> RedisServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = reserve_port(false);
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "no",
                "--enable-debug-command",
                "yes",
            ])
            .args(extra)
            .arg("--dir")
            .arg(dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("redis-server runs (apt install redis-server)");
        assert!(
            wait_until(Duration::from_secs(10), || TcpStream::connect((
                "127.0.0.1",
                port
            ))
            .is_ok()),
            "redis-server came up"
        );
        RedisServer {
            child,
            port,
            _dir: dir,
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
