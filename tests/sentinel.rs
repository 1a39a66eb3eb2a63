//! Automatic failover by real Redis Sentinel (Debian's `redis-sentinel`):
//! three sentinels monitor a Quire primary and two replicas, named by their
//! client ports as Sentinel does. The primary is SIGKILLed under load from
//! redis-py's Sentinel client; a replica is promoted, the other follows,
//! writes resume, no WAIT-acknowledged write is lost; the old primary
//! comes back, is demoted by Sentinel and resyncs partially (rewinding
//! what it took after the fork); digests agree. Then a planned
//! `SENTINEL FAILOVER`.

mod common;

use common::proc::{repl_toml, Proc};
use common::{reserve_port, wait_until, Pki};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const MASTER: &str = "mymaster";
const DOWN_AFTER_MS: u64 = 2000;

struct Sentinels {
    _dir: tempfile::TempDir,
    ports: Vec<u16>,
    children: Vec<Child>,
}

impl Sentinels {
    fn start(master_port: u16) -> Sentinels {
        let dir = tempfile::tempdir().expect("tempdir");
        let ports: Vec<u16> = (0..3).map(|_| reserve_port(false)).collect();
        let children = ports
            .iter()
            .map(|port| {
                let conf = dir.path().join(format!("sentinel-{port}.conf"));
                std::fs::write(
                    &conf,
                    format!(
                        "port {port}\nbind 127.0.0.1\ndaemonize no\nlogfile {log:?}\ndir {dir:?}\n\
                         sentinel monitor {MASTER} 127.0.0.1 {master_port} 2\n\
                         sentinel down-after-milliseconds {MASTER} {DOWN_AFTER_MS}\n\
                         sentinel failover-timeout {MASTER} 10000\n\
                         sentinel parallel-syncs {MASTER} 1\n",
                        log = dir.path().join(format!("sentinel-{port}.log")),
                        dir = dir.path(),
                    ),
                )
                .expect("sentinel config");
                Command::new("redis-sentinel")
                    .arg(&conf)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("redis-sentinel runs (apt install redis-sentinel)")
            })
            .collect();
        Sentinels {
            _dir: dir,
            ports,
            children,
        }
    }

    fn ask(&self, i: usize, args: &[&str]) -> redis::RedisResult<redis::Value> {
        let client = redis::Client::open(format!("redis://127.0.0.1:{}/", self.ports[i]))?;
        let mut con = client.get_connection_with_timeout(Duration::from_secs(1))?;
        let mut cmd = redis::cmd("SENTINEL");
        for a in args {
            cmd.arg(*a);
        }
        cmd.query(&mut con)
    }

    fn count(&self, i: usize, what: &str) -> usize {
        match self.ask(i, &[what, MASTER]) {
            Ok(redis::Value::Array(items)) => items.len(),
            _ => 0,
        }
    }

    /// The primary's client port as every sentinel reports it, if they agree.
    fn master_port(&self) -> Option<u16> {
        let ports: Vec<Option<u16>> = (0..3)
            .map(
                |i| match self.ask(i, &["get-master-addr-by-name", MASTER]) {
                    Ok(redis::Value::Array(v)) if v.len() == 2 => {
                        redis::from_redis_value::<String>(&v[1]).ok()?.parse().ok()
                    }
                    _ => None,
                },
            )
            .collect();
        ports[0].filter(|_| ports.iter().all(|p| *p == ports[0]))
    }

    fn logs(&self) -> String {
        self.ports
            .iter()
            .map(|p| {
                let path = self._dir.path().join(format!("sentinel-{p}.log"));
                format!(
                    "--- sentinel {p}\n{}",
                    std::fs::read_to_string(path).unwrap_or_default()
                )
            })
            .collect()
    }
}

impl Drop for Sentinels {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// redis-py's Sentinel client writing in a child process.
struct Writer {
    child: Child,
    stop: std::path::PathBuf,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Writer {
    fn start(sentinels: &Sentinels, dir: &std::path::Path) -> Writer {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sentinel_writer.py");
        let ports: Vec<String> = sentinels.ports.iter().map(|p| p.to_string()).collect();
        let stop = dir.join("stop-writer");
        let mut child = Command::new("python3")
            .arg(script)
            .arg(ports.join(","))
            .arg(MASTER)
            .arg(&stop)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs (pip install redis)");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().expect("stdout");
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Writer { child, stop, lines }
    }

    fn acked(&self) -> Vec<u64> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| l.strip_prefix("acked ")?.parse().ok())
            .collect()
    }

    /// Unix ms of the first `resumed` line after an error.
    fn resumed_at(&self) -> Option<i64> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .find_map(|l| l.strip_prefix("resumed ")?.parse().ok())
    }

    fn stop(mut self) -> Vec<u64> {
        std::fs::write(&self.stop, b"").expect("stop file");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::thread::sleep(Duration::from_millis(50));
        self.acked()
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn node_toml(pki: &Pki, name: &str, repl_port: u16, replicaof: Option<u16>) -> String {
    // Replicas are pointed at the primary's client port, as Sentinel does.
    repl_toml(pki, name, repl_port, None).replacen(
        "[node]",
        &match replicaof {
            Some(port) => format!("replicaof = \"127.0.0.1:{port}\"\n[node]"),
            None => "[node]".into(),
        },
        1,
    )
}

fn role_of(p: &Proc) -> String {
    p.try_client()
        .ok()
        .and_then(|mut c| {
            redis::cmd("INFO")
                .arg("replication")
                .query::<String>(&mut c)
                .ok()
        })
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("role:").map(str::to_string))
        })
        .unwrap_or_default()
}

fn follows(p: &Proc, port: u16) -> bool {
    role_of(p) == "slave"
        && p.info("replication", "master_port") == port.to_string()
        && p.info("replication", "master_link_status") == "up"
}

/// Waits until all sentinels name a primary other than node `old`; its index.
fn moved_primary(sentinels: &Sentinels, ports: &[u16], old: usize, what: &str) -> usize {
    assert!(
        wait_until(Duration::from_secs(30), || sentinels
            .master_port()
            .is_some_and(|p| p != ports[old])),
        "{what}\n{}",
        sentinels.logs()
    );
    ports
        .iter()
        .position(|p| Some(*p) == sentinels.master_port())
        .expect("a known node")
}

fn node(nodes: &[Option<Proc>], i: usize) -> &Proc {
    nodes[i].as_ref().expect("running")
}

fn assert_all_present(node: &Proc, acked: &[u64]) {
    let mut con = node.client();
    for i in acked {
        let v: Option<u64> = redis::cmd("GET")
            .arg(format!("w:{i}"))
            .query(&mut con)
            .expect("get");
        assert_eq!(v, Some(*i), "WAIT-acknowledged write w:{i} lost");
    }
}

#[test]
fn sentinel_fails_over_a_quire_group_and_the_old_primary_rejoins_partially() {
    let pki = Pki::new(&["n1", "n2", "n3"]);
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let ports: Vec<u16> = (0..3).map(|_| reserve_port(false)).collect();
    let repl: Vec<u16> = (0..3).map(|_| reserve_port(true)).collect();
    let names = ["n1", "n2", "n3"];
    let mut nodes: Vec<Option<Proc>> = (0..3)
        .map(|i| {
            let up = (i > 0).then_some(ports[0]);
            Some(Proc::start(
                dirs[i].path(),
                ports[i],
                &node_toml(&pki, names[i], repl[i], up),
            ))
        })
        .collect();
    for i in 1..3 {
        assert!(
            wait_until(Duration::from_secs(20), || follows(
                node(&nodes, i),
                ports[0]
            )),
            "replica {i} follows the primary's client port; log:\n{}",
            node(&nodes, i).log()
        );
    }
    let sentinels = Sentinels::start(ports[0]);
    assert!(
        wait_until(Duration::from_secs(30), || (0..3)
            .all(
                |i| sentinels.count(i, "replicas") == 2 && sentinels.count(i, "sentinels") == 2
            )),
        "sentinels discover both replicas and each other\n{}",
        sentinels.logs()
    );
    // No +fix-slave-config: the replicas report the client port.
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        !sentinels.logs().contains("+fix-slave-config"),
        "{}",
        sentinels.logs()
    );

    let writer = Writer::start(&sentinels, dirs[0].path());
    assert!(
        wait_until(Duration::from_secs(20), || writer.acked().len() >= 200),
        "writes through redis-py's Sentinel client"
    );
    let before_kill = writer.acked().len();
    let killed_at = unix_ms();
    nodes[0].take().expect("primary").kill9();

    let new = moved_primary(&sentinels, &ports, 0, "sentinels promote a replica");
    let other = 3 - new;
    assert!(
        wait_until(Duration::from_secs(20), || writer.acked().len()
            > before_kill + 50),
        "writes resume on the new primary"
    );
    let resumed_ms = writer.resumed_at().expect("a resumed line") - killed_at;
    eprintln!("writes resumed {resumed_ms} ms after the kill (down-after {DOWN_AFTER_MS} ms)");
    assert!(
        resumed_ms <= DOWN_AFTER_MS as i64 + 2000,
        "writes resumed {resumed_ms} ms after the kill\n{}",
        sentinels.logs()
    );
    assert!(
        wait_until(Duration::from_secs(20), || follows(
            node(&nodes, other),
            ports[new]
        )),
        "the other replica follows the new primary\n{}",
        node(&nodes, other).log()
    );
    // Sentinel's CONFIG REWRITE wrote each node's current role to its file.
    let config = |i: usize| std::fs::read_to_string(dirs[i].path().join("quire.toml")).unwrap();
    let follows_in_file = |i: usize, port: u16| {
        config(i)
            .lines()
            .any(|l| l.trim() == format!("replicaof = \"127.0.0.1:{port}\""))
    };
    assert!(
        wait_until(Duration::from_secs(10), || !config(new)
            .contains(&format!("127.0.0.1:{}", ports[0]))
            && follows_in_file(other, ports[new])),
        "rewritten configs:\n{}\n{}",
        config(new),
        config(other)
    );
    let epoch_new: u64 = node(&nodes, new)
        .info("replication", "quire_epoch")
        .parse()
        .unwrap_or(0);
    assert!(epoch_new >= 1, "Sentinel's promotion raised the epoch");
    let full_before = node(&nodes, new).info("stats", "sync_full");

    // The old primary comes back as a primary; Sentinel demotes it and it
    // resyncs partially (rewinding to the fork).
    nodes[0] = Some(Proc::restart(dirs[0].path(), ports[0]));
    assert!(
        wait_until(Duration::from_secs(40), || follows(
            node(&nodes, 0),
            ports[new]
        )),
        "Sentinel demotes the old primary\n{}\n{}",
        sentinels.logs(),
        node(&nodes, 0).log()
    );
    assert_eq!(
        node(&nodes, new).info("stats", "sync_full"),
        full_before,
        "the old primary resynced partially; its log:\n{}",
        node(&nodes, 0).log()
    );

    let acked = writer.stop();
    let primary = node(&nodes, new);
    assert_all_present(primary, &acked);
    let offset = primary.info("replication", "master_repl_offset");
    for i in [0, other] {
        assert!(
            wait_until(Duration::from_secs(20), || {
                node(&nodes, i).info("replication", "master_repl_offset") == offset
            }),
            "node {i} caught up"
        );
        assert_eq!(
            node(&nodes, i).digest(),
            primary.digest(),
            "node {i} digest"
        );
    }

    // A planned failover driven by Sentinel.
    let before = new;
    redis::cmd("SENTINEL")
        .arg("FAILOVER")
        .arg(MASTER)
        .query::<()>(
            &mut redis::Client::open(format!("redis://127.0.0.1:{}/", sentinels.ports[0]))
                .unwrap()
                .get_connection()
                .unwrap(),
        )
        .expect("SENTINEL FAILOVER");
    let now = moved_primary(
        &sentinels,
        &ports,
        before,
        "SENTINEL FAILOVER moves the primary",
    );
    for i in (0..3).filter(|i| *i != now) {
        assert!(
            wait_until(Duration::from_secs(30), || follows(
                node(&nodes, i),
                ports[now]
            )),
            "node {i} follows the new primary after SENTINEL FAILOVER\n{}\n{}",
            sentinels.logs(),
            node(&nodes, i).log()
        );
    }
    let mut con = node(&nodes, now).client();
    let _: () = redis::cmd("SET")
        .arg("after")
        .arg("planned")
        .query(&mut con)
        .unwrap();
    let n: u64 = redis::cmd("WAIT").arg(2).arg(5000).query(&mut con).unwrap();
    assert_eq!(n, 2, "both replicas acknowledge on the new primary");
    assert_all_present(node(&nodes, now), &acked);
    let digest = node(&nodes, now).digest();
    for i in (0..3).filter(|i| *i != now) {
        assert_eq!(
            node(&nodes, i).digest(),
            digest,
            "node {i} digest after the planned failover"
        );
    }
}
