//! Durability: the log is the write-ahead log. Real processes killed with
//! SIGKILL under write load come back with every acknowledged write, with
//! the same replication id and offset (a replica resumes partially); a torn
//! last record is cut back, a corrupt middle refuses the start; a node that
//! lost its log never erases a replica holding writes it acknowledged; a
//! full disk refuses writes with Redis's MISCONF error and recovers.

mod common;

use common::proc::{Group, Proc};
use common::{cmd, reserve_port, wait_until, Pki, TestNode};
use redis::Value;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Writers on `threads` connections: `SET w<t>:<i> <i>` as fast as they
/// can; every write whose OK came back is recorded.
struct Writers {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<(String, u64)>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Writers {
    fn start(port: u16, threads: usize) -> Writers {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let handles = (0..threads)
            .map(|t| {
                let (stop, acked) = (stop.clone(), acked.clone());
                std::thread::spawn(move || {
                    let Ok(client) = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
                    else {
                        return;
                    };
                    let Ok(mut con) = client.get_connection_with_timeout(Duration::from_secs(2))
                    else {
                        return;
                    };
                    let _ = con.set_read_timeout(Some(Duration::from_secs(5)));
                    let started = Instant::now();
                    let mut i = 0u64;
                    // Bounded: stops by itself after 30 s or 200k writes.
                    while !stop.load(Ordering::Relaxed)
                        && i < 200_000
                        && started.elapsed() < Duration::from_secs(30)
                    {
                        let key = format!("w{t}:{i}");
                        match redis::cmd("SET").arg(&key).arg(i).query::<String>(&mut con) {
                            Ok(_) => acked.lock().unwrap().push((key, i)),
                            Err(_) => return,
                        }
                        i += 1;
                    }
                })
            })
            .collect();
        Writers {
            stop,
            acked,
            threads: handles,
        }
    }

    fn count(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    /// Waits for the writers to end (they do once their node dies).
    fn join(self) -> Vec<(String, u64)> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
        std::mem::take(&mut *self.acked.lock().unwrap())
    }
}

/// Every acknowledged write is on `port`, with its value.
fn assert_all_present(con: &mut redis::Connection, acked: &[(String, u64)], what: &str) {
    let mut pipe = redis::pipe();
    for (key, _) in acked {
        pipe.cmd("GET").arg(key);
    }
    let values: Vec<Option<u64>> = pipe.query(con).expect("read back");
    let missing: Vec<&String> = acked
        .iter()
        .zip(&values)
        .filter(|((_, v), got)| **got != Some(*v))
        .map(|((k, _), _)| k)
        .collect();
    assert!(
        missing.is_empty(),
        "{what}: {} of {} acknowledged writes missing or wrong, e.g. {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(5)]
    );
}

/// Kills the node while writers are mid-flight and restarts it.
fn kill_under_load(toml: &str) {
    let dir = tempfile::tempdir().unwrap();
    let port = reserve_port(false);
    let node = Proc::start(dir.path(), port, toml);
    let replid = node.info("replication", "master_replid");
    let writers = Writers::start(port, 6);
    assert!(
        wait_until(Duration::from_secs(20), || writers.count() >= 20_000),
        "writers got going"
    );
    node.kill9();
    let acked = writers.join();
    let node = Proc::restart(dir.path(), port);
    assert_all_present(&mut node.client(), &acked, "after SIGKILL");
    assert_eq!(
        node.info("replication", "master_replid"),
        replid,
        "the same history continues"
    );
    assert!(node.log().contains("log replayed"), "{}", node.log());
}

#[test]
fn sigkill_under_load_loses_no_acknowledged_write() {
    kill_under_load("");
}

#[test]
fn sigkill_with_appendfsync_always_loses_no_acknowledged_write() {
    kill_under_load("appendfsync = \"always\"\n");
}

fn wait_replica_caught_up(primary: &Proc, replica: &Proc) {
    assert!(
        wait_until(Duration::from_secs(30), || {
            let p = primary.info("replication", "master_repl_offset");
            // Attached to this primary process (a link to a killed one can
            // still read "up" until its death is noticed).
            primary.info("replication", "connected_slaves") == "1"
                && replica.info("replication", "master_link_status") == "up"
                && replica.info("replication", "master_repl_offset") == p
        }),
        "replica caught up; primary log:\n{}\nreplica log:\n{}",
        primary.log(),
        replica.log()
    );
}

#[test]
fn primary_killed_with_a_replica_attached_resumes_partially_with_every_write() {
    // Bound by name: the directories and certificates must outlive the test.
    let Group {
        _pki,
        pdir,
        rdir: _rdir,
        pport,
        rrepl: _,
        primary,
        replica,
    } = Group::start();
    assert!(wait_until(Duration::from_secs(30), || replica
        .info("replication", "master_link_status")
        == "up"));
    let writers = Writers::start(pport, 6);
    assert!(wait_until(Duration::from_secs(20), || writers.count() >= 20_000));
    primary.kill9();
    let acked = writers.join();
    let primary = Proc::restart(pdir.path(), pport);
    wait_replica_caught_up(&primary, &replica);
    assert_all_present(&mut primary.client(), &acked, "primary after SIGKILL");
    assert_all_present(
        &mut replica.client(),
        &acked,
        "replica after the primary's restart",
    );
    assert_eq!(primary.digest(), replica.digest());
    assert_eq!(
        replica.info("replication", "quire_full_syncs"),
        "1",
        "only the first sync was full: {}",
        replica.log()
    );
    assert_eq!(
        primary
            .info("stats", "sync_partial_ok")
            .parse::<u64>()
            .unwrap_or(0),
        1,
        "the replica resumed partially"
    );
}

/// A group whose primary was killed and restarted without its log while
/// its replica held 5000 keys; returns once the replica has been refused.
fn restarted_without_log() -> Group {
    let group = Group::start();
    let mut con = group.primary.client();
    for i in 0..5000 {
        let _: () = redis::cmd("SET")
            .arg(format!("k{i}"))
            .arg(i)
            .query(&mut con)
            .unwrap();
    }
    wait_replica_caught_up(&group.primary, &group.replica);
    // The node has recorded what it acknowledged (once a second).
    let state = group.pdir.path().join("replication-state.json");
    assert!(wait_until(Duration::from_secs(5), || {
        std::fs::read_to_string(&state).is_ok_and(|s| !s.contains("\"offset\":0,"))
    }));
    let Group {
        _pki,
        pdir,
        rdir,
        pport,
        rrepl,
        primary,
        replica,
    } = group;
    primary.kill9();
    std::fs::remove_dir_all(pdir.path().join("backlog")).unwrap();
    let primary = Proc::restart(pdir.path(), pport);
    assert_eq!(
        primary.info("persistence", "quire_behind_acknowledged"),
        "1",
        "{}",
        primary.log()
    );
    assert!(
        wait_until(Duration::from_secs(20), || primary
            .info("replication", "quire_resyncs_refused")
            .parse::<u64>()
            .unwrap_or(0)
            >= 2),
        "the replica was refused; primary log:\n{}",
        primary.log()
    );
    let size: u64 = redis::cmd("DBSIZE").query(&mut replica.client()).unwrap();
    assert_eq!(size, 5000, "the replica kept every write");
    assert!(
        primary.log().contains("came back behind"),
        "{}",
        primary.log()
    );
    assert!(
        replica
            .log()
            .contains("a full sync would erase acknowledged writes"),
        "{}",
        replica.log()
    );
    Group {
        _pki,
        pdir,
        rdir,
        pport,
        rrepl,
        primary,
        replica,
    }
}

#[test]
fn a_primary_restarted_without_its_log_does_not_erase_a_replica_ahead() {
    let group = restarted_without_log();
    let (primary, replica) = (&group.primary, &group.replica);
    // The runbook's way out: promote the replica, follow it.
    let _: () = redis::cmd("REPLICAOF")
        .arg("NO")
        .arg("ONE")
        .query(&mut replica.client())
        .unwrap();
    let _: Value = redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(group.rrepl)
        .query(&mut primary.client())
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || redis::cmd("DBSIZE")
            .query::<u64>(&mut primary.client())
            .unwrap_or(0)
            == 5000),
        "{}",
        primary.log()
    );
    assert_eq!(primary.digest(), replica.digest());
}

#[test]
fn accepting_the_loss_lets_the_refused_replica_take_a_full_sync() {
    let group = restarted_without_log();
    let (primary, replica) = (&group.primary, &group.replica);
    let mut con = primary.client();
    cmd(&mut con, &["SET", "after", "1"]).unwrap();
    cmd(
        &mut con,
        &["CONFIG", "SET", "repl-wipe-newer-replicas", "yes"],
    )
    .unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || replica
            .info("replication", "master_link_status")
            == "up"
            && redis::cmd("DBSIZE")
                .query::<u64>(&mut replica.client())
                .unwrap_or(0)
                == 1),
        "the replica took the primary's copy; replica log:\n{}",
        replica.log()
    );
    assert_eq!(primary.digest(), replica.digest());
}

/// Stops an in-process node and returns its directory and log segments.
fn stopped_node_with_writes(n: usize) -> (tempfile::TempDir, Vec<PathBuf>) {
    let node = TestNode::start();
    let mut con = node.client();
    for i in 0..n {
        cmd(&mut con, &["SET", &format!("k{i}"), &i.to_string()]).unwrap();
    }
    drop(con);
    let dir = node.stop();
    let mut segments: Vec<PathBuf> = std::fs::read_dir(dir.path().join("backlog"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segments.sort();
    (dir, segments)
}

#[test]
fn a_torn_last_record_is_cut_back_with_a_warning() {
    let (dir, segments) = stopped_node_with_writes(100);
    let last = segments.last().unwrap();
    let whole = std::fs::metadata(last).unwrap().len();
    let mut f = std::fs::OpenOptions::new().append(true).open(last).unwrap();
    std::io::Write::write_all(&mut f, b"*3\r\n$3\r\nSET\r\n$4\r\ntorn\r\n$5\r\nva").unwrap();
    drop(f);
    let node = TestNode::try_start_in(dir, |_| {}).expect("starts despite the torn tail");
    let mut con = node.client();
    assert_eq!(cmd(&mut con, &["DBSIZE"]).unwrap(), Value::Int(100));
    assert_eq!(cmd(&mut con, &["EXISTS", "torn"]).unwrap(), Value::Int(0));
    assert_eq!(
        std::fs::metadata(last).unwrap().len(),
        whole,
        "cut back to the last whole unit"
    );
    cmd(&mut con, &["SET", "after", "1"]).unwrap();
    drop(con);
    let node = TestNode::try_start_in(node.stop(), |_| {}).expect("restarts");
    assert_eq!(
        cmd(&mut node.client(), &["DBSIZE"]).unwrap(),
        Value::Int(101)
    );
}

#[test]
fn a_log_cut_at_any_byte_recovers_the_whole_units_before_the_cut() {
    // 40 SETs, one 3-command transaction, 40 more; then the log is cut at
    // positions all through it (a crash mid-write of any record).
    let node = TestNode::start();
    let mut con = node.client();
    for i in 0..40 {
        cmd(&mut con, &["SET", &format!("a{i}"), "1"]).unwrap();
    }
    let _: () = redis::pipe()
        .atomic()
        .cmd("SET")
        .arg("t1")
        .arg("1")
        .cmd("SET")
        .arg("t2")
        .arg("1")
        .cmd("SET")
        .arg("t3")
        .arg("1")
        .query(&mut con)
        .unwrap();
    for i in 0..40 {
        cmd(&mut con, &["SET", &format!("b{i}"), "1"]).unwrap();
    }
    drop(con);
    let dir = node.stop();
    let seg = std::fs::read_dir(dir.path().join("backlog"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "seg"))
        .unwrap();
    let whole = std::fs::read(&seg).unwrap();
    let mut dir = dir;
    let mut seen_partial_tx = false;
    let tx_start = whole
        .windows(5)
        .position(|w| w == b"MULTI")
        .expect("the transaction is in the log");
    let tx_end = tx_start
        + whole[tx_start..]
            .windows(4)
            .position(|w| w == b"EXEC")
            .expect("its EXEC")
        + 6;
    let cuts: Vec<usize> = (0..whole.len())
        .step_by(whole.len() / 12)
        .chain((tx_start..tx_end).step_by(13))
        .chain([whole.len() - 1])
        .collect();
    for cut in cuts {
        std::fs::write(&seg, &whole[..cut]).unwrap();
        let node = TestNode::try_start_in(dir, |_| {}).expect("a torn log still starts");
        let mut con = node.client();
        let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut con).unwrap();
        let tx = keys.iter().filter(|k| k.starts_with('t')).count();
        assert!(
            tx == 0 || tx == 3,
            "cut at {cut}: a transaction is applied whole or not at all ({keys:?})"
        );
        seen_partial_tx |= tx == 0 && keys.iter().any(|k| k.starts_with("a39"));
        // Exactly the units before the cut: a prefix of the writes.
        let a = keys.iter().filter(|k| k.starts_with('a')).count();
        let b = keys.iter().filter(|k| k.starts_with('b')).count();
        assert!(
            b == 0 || (a == 40 && tx == 3),
            "cut at {cut}: later writes only after all earlier ones"
        );
        for i in 0..a {
            assert!(
                keys.contains(&format!("a{i}")),
                "cut at {cut}: a prefix of the writes, missing a{i}"
            );
        }
        drop(con);
        dir = node.stop();
    }
    assert!(seen_partial_tx, "cuts fell inside the transaction");
}

#[test]
fn a_corrupt_middle_refuses_to_start_naming_the_file_and_leaves_it_untouched() {
    let (dir, segments) = stopped_node_with_writes(200);
    let seg = segments.first().unwrap();
    let mut bytes = std::fs::read(seg).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle..middle + 6].copy_from_slice(b"\x00junk\x00");
    std::fs::write(seg, &bytes).unwrap();
    let port = reserve_port(false);
    let mut proc = Proc::spawn(dir.path(), port, &{
        let config = dir.path().join("quire.toml");
        std::fs::write(
            &config,
            format!(
                "port = {port}\ndir = {:?}\nsave = \"\"\n",
                dir.path().display().to_string()
            ),
        )
        .unwrap();
        config
    });
    assert!(
        wait_until(Duration::from_secs(30), || proc.exited()),
        "a corrupt log stops the node"
    );
    let status = proc.child.wait().unwrap();
    assert!(!status.success());
    let log = proc.log();
    let name = seg.file_name().unwrap().to_string_lossy().to_string();
    assert!(
        log.contains("log is corrupt") && log.contains(&name),
        "names the file: {log}"
    );
    assert_eq!(
        std::fs::read(seg).unwrap(),
        bytes,
        "the file is left untouched"
    );

    // The operator's tool says the same, and --fix cuts the log back to the
    // last whole unit before the damage.
    let check = Command::new(env!("CARGO_BIN_EXE_quire"))
        .args(["log", "check", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&check.stdout).to_string();
    assert!(
        !check.status.success() && text.contains("corrupt after offset") && text.contains(&name),
        "{text}"
    );
    let fixed = Command::new(env!("CARGO_BIN_EXE_quire"))
        .args(["log", "check", "--fix", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        fixed.status.success(),
        "{}",
        String::from_utf8_lossy(&fixed.stdout)
    );
    assert!(
        std::fs::metadata(seg).unwrap().len() <= middle as u64,
        "cut before the damage"
    );
    let node = TestNode::try_start_in(dir, |_| {}).expect("starts after the fix");
    let mut c = node.client();
    let n = match cmd(&mut c, &["DBSIZE"]).unwrap() {
        Value::Int(n) => n,
        other => panic!("{other:?}"),
    };
    assert!(n > 50 && n < 200, "the writes before the damage: {n}");
    for i in 0..n {
        assert_eq!(
            cmd(&mut c, &["EXISTS", &format!("k{i}")]).unwrap(),
            Value::Int(1),
            "a prefix of the writes"
        );
    }
}

#[test]
fn waitaof_counts_local_and_replica_fsyncs() {
    let (_pki, p, r) = common::primary_and_replica();
    assert!(wait_until(Duration::from_secs(20), || p
        .info("replication", "connected_slaves")
        == "1"));
    let mut c = p.client();
    cmd(&mut c, &["SET", "a", "1"]).unwrap();
    assert_eq!(
        cmd(&mut c, &["WAITAOF", "1", "0", "5000"]).unwrap(),
        Value::Array(vec![Value::Int(1), Value::Int(0)])
    );
    cmd(&mut c, &["SET", "b", "2"]).unwrap();
    assert_eq!(
        cmd(&mut c, &["WAITAOF", "1", "1", "5000"]).unwrap(),
        Value::Array(vec![Value::Int(1), Value::Int(1)])
    );
    assert_eq!(
        cmd(&mut c, &["WAITAOF", "0", "2", "200"]).unwrap(),
        Value::Array(vec![Value::Int(1), Value::Int(1)]),
        "times out with what it has"
    );
    let mut rc = r.client();
    let err = cmd(&mut rc, &["WAITAOF", "0", "0", "0"]).unwrap_err();
    assert!(
        err.to_string()
            .contains("WAITAOF cannot be used with replica instances"),
        "{err}"
    );
    cmd(&mut c, &["CONFIG", "SET", "appendonly", "no"]).unwrap();
    let err = cmd(&mut c, &["WAITAOF", "1", "0", "0"]).unwrap_err();
    assert!(
        err.to_string()
            .contains("numlocal is set but appendonly is disabled"),
        "{err}"
    );
}

#[test]
fn bgrewriteaof_compacts_the_log_and_recovery_uses_the_snapshot() {
    let node = TestNode::start_with(|s| {
        s.repl.backlog.size = 16 * 1024;
        s.repl.backlog.outage_tolerance = None;
        s.repl.backlog.max_disk = 16 * 1024;
        s.repl.backlog.segment_bytes = 8 * 1024;
    });
    let mut c = node.client();
    let value = "v".repeat(1000);
    for round in 0..3 {
        for i in 0..300 {
            cmd(
                &mut c,
                &["SET", &format!("k{i}"), &format!("{round}{value}")],
            )
            .unwrap();
        }
    }
    let before: u64 = node.info("persistence", "quire_log_bytes").parse().unwrap();
    assert!(
        before > 900_000,
        "everything since the (absent) snapshot is kept: {before}"
    );
    assert_eq!(
        cmd(&mut c, &["BGREWRITEAOF"]).unwrap(),
        Value::SimpleString("Background append only file rewriting started".into())
    );
    assert!(wait_until(Duration::from_secs(20), || node
        .info("persistence", "aof_rewrites")
        == "1"));
    cmd(&mut c, &["SET", "late", "1"]).unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || node
            .info("persistence", "quire_log_bytes")
            .parse::<u64>()
            .unwrap()
            < 100_000),
        "the log shrank"
    );
    let digest = node.digest();
    drop(c);
    let node = TestNode::try_start_in(node.stop(), |s| {
        s.repl.backlog.size = 16 * 1024;
        s.repl.backlog.outage_tolerance = None;
        s.repl.backlog.max_disk = 16 * 1024;
        s.repl.backlog.segment_bytes = 8 * 1024;
    })
    .expect("restarts");
    assert_eq!(node.digest(), digest);
}

/// A tmpfs mounted for the test, unmounted when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> SmallDisk {
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "mounting a tmpfs needs root (CI runs as root)");
        SmallDisk { dir }
    }

    fn grow(&self, size: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(self.dir.path())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "remount");
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

#[test]
fn a_full_disk_refuses_writes_with_misconf_and_recovers() {
    let disk = SmallDisk::mount("2m");
    let data = disk.dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let port = reserve_port(false);
    let node = Proc::start(&data, port, "");
    let mut c = node.client();
    let value = "x".repeat(64 * 1024);
    let mut acked = Vec::new();
    let mut refusal = None;
    for i in 0..200 {
        match cmd(&mut c, &["SET", &format!("big{i}"), &value]) {
            Ok(_) => acked.push(format!("big{i}")),
            Err(e) => {
                refusal = Some(e.to_string());
                break;
            }
        }
    }
    let refusal = refusal.expect("the disk filled up");
    assert!(
        refusal.contains("MISCONF")
            && refusal.contains("Errors writing to the AOF file: No space left on device"),
        "{refusal}"
    );
    assert_eq!(node.info("persistence", "aof_last_write_status"), "err");
    // Reads still work; space comes back; writes are accepted again.
    assert_eq!(cmd(&mut c, &["EXISTS", &acked[0]]).unwrap(), Value::Int(1));
    disk.grow("64m");
    assert!(
        wait_until(Duration::from_secs(10), || cmd(
            &mut c,
            &["SET", "after", "1"]
        )
        .is_ok()),
        "writes resume"
    );
    assert_eq!(node.info("persistence", "aof_last_write_status"), "ok");
    drop(c);
    node.kill9();
    let node = Proc::restart(&data, port);
    let mut c = node.client();
    for key in &acked {
        assert_eq!(
            cmd(&mut c, &["STRLEN", key]).unwrap(),
            Value::Int(value.len() as i64),
            "{key} survived"
        );
    }
    assert_eq!(
        cmd(&mut c, &["GET", "after"]).unwrap(),
        Value::BulkString(b"1".to_vec())
    );
}

#[test]
fn loading_answers_loading_and_info_shows_it() {
    // A log long enough that replaying it takes a moment.
    let node = TestNode::start();
    let mut c = node.client();
    for batch in 0..10 {
        let mut pipe = redis::pipe();
        for i in batch * 100_000..(batch + 1) * 100_000 {
            pipe.cmd("SET").arg(format!("k{i}")).arg(i).ignore();
        }
        let _: () = pipe.query(&mut c).unwrap();
    }
    drop(c);
    let dir = node.stop();
    let port = reserve_port(false);
    let config = dir.path().join("quire.toml");
    std::fs::write(
        &config,
        format!(
            "port = {port}\ndir = {:?}\nsave = \"\"\n",
            dir.path().display().to_string()
        ),
    )
    .unwrap();
    let proc = Proc::spawn(dir.path(), port, &config);
    let mut saw_loading = false;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        let Ok(mut con) = proc.try_client() else {
            std::thread::sleep(Duration::from_millis(2));
            continue;
        };
        match redis::cmd("GET")
            .arg("k1")
            .query::<Option<String>>(&mut con)
        {
            Err(e) if e.kind() == redis::ErrorKind::BusyLoadingError => {
                saw_loading = true;
                let info: String = redis::cmd("INFO")
                    .arg("persistence")
                    .query(&mut con)
                    .unwrap();
                if info.contains("loading:1") {
                    assert!(
                        info.contains("loading_total_bytes:")
                            && info.contains("loading_loaded_perc:"),
                        "{info}"
                    );
                }
            }
            Ok(v) => {
                assert_eq!(v.as_deref(), Some("1"));
                break;
            }
            Err(e) => panic!("{e}"),
        }
    }
    let size: u64 = redis::cmd("DBSIZE").query(&mut proc.client()).unwrap();
    assert_eq!(size, 1_000_000);
    assert!(
        saw_loading,
        "clients were answered -LOADING while the log replayed: {}",
        proc.log()
    );
}

#[test]
fn a_replica_whose_disk_fills_pauses_and_catches_up_when_space_returns() {
    let disk = SmallDisk::mount("3m");
    let pki = Pki::new(&["p", "r"]);
    let p = TestNode::start_with(|s| pki.configure("p", s));
    let addr = p.repl_addr();
    let r = TestNode::try_start_in(tempfile::tempdir_in(disk.dir.path()).unwrap(), |s| {
        pki.configure("r", s);
        s.replicaof = addr;
    })
    .expect("replica starts");
    assert!(wait_until(Duration::from_secs(20), || r
        .info("replication", "master_link_status")
        == "up"));
    let mut c = p.client();
    let value = "y".repeat(64 * 1024);
    // 10 MB for a 3 MB disk.
    for i in 0..160 {
        cmd(&mut c, &["SET", &format!("big{i}"), &value]).unwrap();
    }
    assert!(
        wait_until(Duration::from_secs(20), || r
            .info("persistence", "aof_last_write_status")
            == "err"),
        "the replica's disk filled up"
    );
    assert!(
        wait_until(Duration::from_secs(20), || r
            .info("replication", "quire_link_last_error")
            .contains("replication paused")),
        "the replica stops taking the stream: {}",
        r.info("replication", "quire_link_last_error")
    );
    let pending: u64 = r.info("persistence", "aof_buffer_length").parse().unwrap();
    assert!(
        pending < 2 << 20,
        "what waits in memory stays bounded (not the 7 MB the disk had no room for): {pending}"
    );
    disk.grow("64m");
    common::wait_caught_up(&p, &[&r], Duration::from_secs(30));
    assert_eq!(r.digest(), p.digest());
    assert_eq!(r.info("persistence", "aof_last_write_status"), "ok");
    assert_eq!(
        r.info("replication", "quire_full_syncs"),
        "1",
        "resumed partially"
    );
}
