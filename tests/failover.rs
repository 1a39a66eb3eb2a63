//! Disaster recovery, planned failover and fencing, following
//! deploy/RUNBOOK.md's commands on loopback with three regions.

mod common;

use common::{cmd, wait_caught_up, wait_until, Pki, TestNode};
use quire::config::Settings;
use quire::wan::relay::RelayThread;
use quire::wan::LinkParams;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(30);

fn free_udp_port() -> u16 {
    common::reserve_port(true)
}

fn num(node: &TestNode, field: &str) -> u64 {
    node.info("replication", field).parse().unwrap_or(0)
}

/// Region settings: fast link timers, a fixed replication port, peers.
fn region<'a>(
    pki: &'a Pki,
    name: &str,
    repl_port: u16,
    peers: &[u16],
    replicaof: Option<u16>,
) -> impl FnOnce(&mut Settings) + 'a {
    let name = name.to_string();
    let peers: Vec<String> = peers.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    move |s: &mut Settings| {
        pki.configure(&name, s);
        s.repl.port = repl_port;
        s.repl.keepalive_ms = 200;
        s.repl.idle_timeout_ms = 1000;
        s.repl.peers = peers;
        if let Some(up) = replicaof {
            s.replicaof = format!("127.0.0.1:{up}");
        }
    }
}

fn start_in(dir: tempfile::TempDir, configure: impl FnOnce(&mut Settings)) -> TestNode {
    TestNode::try_start_in(dir, configure).expect("node starts")
}

fn quire(args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_quire"))
        .args(args)
        .output()
        .expect("quire runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "quire {args:?} failed: {text}");
    text
}

/// Writes `k:<i>` with `WAIT 2` after each; records the writes two
/// replicas acknowledged.
fn acked_writer(
    node: &TestNode,
    replicas: usize,
) -> (
    Arc<AtomicBool>,
    Arc<Mutex<BTreeSet<u64>>>,
    std::thread::JoinHandle<()>,
) {
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let mut con = node.client();
    let (flag, record) = (stop.clone(), acked.clone());
    let handle = std::thread::spawn(move || {
        let mut i = 0u64;
        while !flag.load(Ordering::Relaxed) {
            if cmd(&mut con, &["SET", &format!("k:{i}"), &i.to_string()]).is_err() {
                return;
            }
            match redis::cmd("WAIT")
                .arg(replicas)
                .arg(1000)
                .query::<i64>(&mut con)
            {
                Ok(n) if n as usize >= replicas => {
                    record.lock().unwrap().insert(i);
                }
                Ok(_) => {}
                Err(_) => return,
            }
            i += 1;
        }
    });
    (stop, acked, handle)
}

fn assert_all_present(node: &TestNode, acked: &BTreeSet<u64>) {
    let mut con = node.client();
    for i in acked {
        let v: Option<String> = redis::cmd("GET")
            .arg(format!("k:{i}"))
            .query(&mut con)
            .unwrap();
        assert_eq!(
            v.as_deref(),
            Some(i.to_string().as_str()),
            "acknowledged write k:{i} missing"
        );
    }
}

#[test]
fn region_loss_promote_repoint_and_fenced_return() {
    let pki = Pki::new(&["us-east", "eu-west", "ap-south"]);
    let (a, b, c) = (free_udp_port(), free_udp_port(), free_udp_port());
    let us = start_in(
        tempfile::tempdir().unwrap(),
        region(&pki, "us-east", a, &[b, c], None),
    );
    assert!(
        wait_until(LIMIT, || cmd(&mut us.client(), &["SET", "boot", "1"])
            .is_ok()),
        "primary accepts writes after its fence check"
    );
    let eu = TestNode::start_with(region(&pki, "eu-west", b, &[a, c], Some(a)));
    let ap = TestNode::start_with(region(&pki, "ap-south", c, &[a, b], Some(a)));
    assert!(wait_until(LIMIT, || us
        .info("replication", "connected_slaves")
        == "2"));

    // Load with acknowledged writes; a checkpoint on the primary midway.
    let (stop, acked, writer) = acked_writer(&us, 2);
    assert!(wait_until(LIMIT, || acked.lock().unwrap().len() > 100));
    cmd(&mut us.client(), &["SAVE"]).unwrap();
    assert!(wait_until(LIMIT, || acked.lock().unwrap().len() > 300));
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    wait_caught_up(&us, &[&eu, &ap], LIMIT);
    // us-east is lost.
    let us_offset = us.offset();
    let us_dir = us.stop();
    assert!(wait_until(LIMIT, || eu
        .info("replication", "master_link_status")
        == "down"));

    // Runbook: assess (offsets), promote the most advanced, re-point the rest.
    assert!(num(&eu, "slave_repl_offset") >= num(&ap, "slave_repl_offset"));
    assert_eq!(num(&eu, "slave_repl_offset"), us_offset);
    let out = quire(&["promote", "--node", &format!("127.0.0.1:{}", eu.port)]);
    assert!(out.contains("is primary (epoch 1"), "{out}");
    let out = quire(&[
        "repoint",
        "--node",
        &format!("127.0.0.1:{}", ap.port),
        "--to",
        &format!("127.0.0.1:{b}"),
    ]);
    assert!(
        out.contains("partial resyncs 1, full resyncs 1"),
        "re-point was partial: {out}"
    );
    cmd(&mut eu.client(), &["SET", "after-promotion", "eu"]).unwrap();
    assert_eq!(
        cmd(&mut eu.client(), &["WAIT", "1", "5000"]).unwrap(),
        redis::Value::Int(1)
    );

    // us-east comes back as it was configured (a primary): its first probe
    // finds the newer epoch, it is fenced and follows eu-west.
    let us = start_in(us_dir, region(&pki, "us-east", a, &[b, c], None));
    assert!(
        wait_until(LIMIT, || us.info("replication", "role") == "slave"),
        "old primary was not fenced"
    );
    wait_caught_up(&eu, &[&us, &ap], LIMIT);
    assert_eq!(us.info("replication", "quire_fenced"), "1");
    assert_eq!(us.info("replication", "quire_epoch"), "1");
    assert_eq!(
        num(&us, "quire_partial_syncs"),
        1,
        "the old primary rejoined with a partial resync"
    );
    assert_eq!(num(&us, "quire_full_syncs"), 0);
    assert!(
        cmd(&mut us.client(), &["SET", "x", "1"]).is_err(),
        "fenced node refuses writes"
    );
    let digest = eu.digest();
    assert_eq!(us.digest(), digest);
    assert_eq!(ap.digest(), digest);
    let acked = acked.lock().unwrap().clone();
    for node in [&eu, &ap, &us] {
        assert_all_present(node, &acked);
    }
}

#[test]
fn planned_failover_under_load_loses_no_acknowledged_write() {
    let pki = Pki::new(&["a", "b", "c"]);
    let (pa, pb, pc) = (free_udp_port(), free_udp_port(), free_udp_port());
    let a = TestNode::start_with(region(&pki, "a", pa, &[], None));
    let b = TestNode::start_with(region(&pki, "b", pb, &[], Some(pa)));
    let c = TestNode::start_with(region(&pki, "c", pc, &[], Some(pa)));
    assert!(wait_until(LIMIT, || a
        .info("replication", "connected_slaves")
        == "2"));

    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let writer = {
        let (stop, acked, errors) = (stop.clone(), acked.clone(), errors.clone());
        let mut con = a.client();
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                match cmd(&mut con, &["SET", &format!("k:{i}"), &i.to_string()]) {
                    Ok(_) => {
                        if let Ok(n) = redis::cmd("WAIT").arg(1).arg(1000).query::<i64>(&mut con) {
                            if n >= 1 {
                                acked.lock().unwrap().insert(i);
                            }
                        }
                        i += 1;
                    }
                    Err(e) => {
                        let code = e.code().unwrap_or("").to_string();
                        errors.lock().unwrap().push(code.clone());
                        if code == "READONLY" {
                            return;
                        }
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
            }
        })
    };
    assert!(wait_until(LIMIT, || acked.lock().unwrap().len() > 200));
    assert_eq!(
        cmd(
            &mut a.client(),
            &[
                "FAILOVER",
                "TO",
                "127.0.0.1",
                &b.port.to_string(),
                "TIMEOUT",
                "5000"
            ]
        )
        .unwrap(),
        redis::Value::Okay
    );
    assert!(
        wait_until(LIMIT, || b.info("replication", "role") == "master"),
        "target did not take over"
    );
    assert!(wait_until(LIMIT, || a.info("replication", "role")
        == "slave"
        && a.info("replication", "master_link_status") == "up"));
    writer.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    assert!(
        errors
            .lock()
            .unwrap()
            .iter()
            .all(|e| e == "TRYAGAIN" || e == "READONLY"),
        "{:?}",
        errors.lock().unwrap()
    );
    assert_eq!(
        a.info("replication", "master_failover_state"),
        "no-failover"
    );
    assert_eq!(
        num(&a, "quire_partial_syncs"),
        1,
        "old primary follows with a partial resync"
    );
    assert_eq!(num(&a, "quire_full_syncs"), 0);
    cmd(&mut b.client(), &["SET", "on-new-primary", "1"]).unwrap();
    wait_caught_up(&b, &[&a], LIMIT);
    assert!(
        wait_until(LIMIT, || c.offset() >= b.offset()),
        "chained replica follows through the old primary"
    );
    assert_eq!(a.digest(), b.digest());
    assert_eq!(c.digest(), b.digest());
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 200);
    assert_all_present(&b, &acked);
    // The new primary's epoch is above the old one.
    assert_eq!(b.info("replication", "quire_epoch"), "1");
}

#[test]
fn isolated_primary_is_fenced_and_reports_its_lost_writes() {
    let pki = Pki::new(&["a", "b"]);
    let (pa, pb) = (free_udp_port(), free_udp_port());
    // b reaches a through relay1 (replication); a reaches b through relay2
    // (fencing probes): cutting both isolates a.
    let relay1 = RelayThread::start(
        format!("127.0.0.1:{pa}").parse().unwrap(),
        LinkParams::default(),
        LinkParams::default(),
        1,
    )
    .unwrap();
    let relay2 = RelayThread::start(
        format!("127.0.0.1:{pb}").parse().unwrap(),
        LinkParams::default(),
        LinkParams::default(),
        2,
    )
    .unwrap();
    let a = TestNode::start_with(|s| {
        region(&pki, "a", pa, &[], None)(s);
        s.repl.peers = vec![relay2.addr.to_string()];
    });
    let b = TestNode::start_with(|s| {
        region(&pki, "b", pb, &[pa], None)(s);
        s.replicaof = relay1.addr.to_string();
    });
    assert!(wait_until(LIMIT, || cmd(
        &mut a.client(),
        &["SET", "before", "1"]
    )
    .is_ok()));
    wait_caught_up(&a, &[&b], LIMIT);
    // A snapshot on a: the rewind rebuilds from it (and the log after it).
    cmd(&mut a.client(), &["SET", "snapshotted", "1"]).unwrap();
    cmd(&mut a.client(), &["SAVE"]).unwrap();
    let saved_at = a.offset();
    cmd(&mut a.client(), &["SET", "after-save", "1"]).unwrap();
    wait_caught_up(&a, &[&b], LIMIT);
    relay1.control.set_outage(true);
    relay2.control.set_outage(true);
    assert!(wait_until(LIMIT, || b
        .info("replication", "master_link_status")
        == "down"));
    assert_eq!(
        cmd(&mut b.client(), &["REPLICAOF", "NO", "ONE"]).unwrap(),
        redis::Value::Okay
    );
    cmd(&mut b.client(), &["SET", "new", "1"]).unwrap();
    // The isolated old primary still takes writes: nobody can tell it yet.
    for i in 0..5 {
        cmd(&mut a.client(), &["SET", &format!("lost:{i}"), "x"]).unwrap();
    }
    relay1.control.set_outage(false);
    relay2.control.set_outage(false);
    assert!(
        wait_until(LIMIT, || a.info("replication", "quire_fenced") == "1"),
        "old primary not fenced"
    );
    assert_eq!(a.info("replication", "quire_fenced_writes"), "5");
    assert!(num(&a, "quire_fenced_to_offset") > num(&a, "quire_fenced_from_offset"));
    wait_caught_up(&b, &[&a], LIMIT);
    assert_eq!(a.digest(), b.digest());
    assert_eq!(
        cmd(&mut a.client(), &["EXISTS", "lost:0", "lost:4"]).unwrap(),
        redis::Value::Int(0),
        "diverged writes are not merged"
    );
    assert_eq!(
        cmd(&mut a.client(), &["GET", "new"]).unwrap(),
        redis::Value::BulkString(b"1".to_vec())
    );
    // Its own snapshot-less log rebuilds the data at the fork: a rewind
    // and a partial resync, not a full sync; the diverged writes are kept
    // aside in a file.
    assert_eq!(num(&a, "quire_full_syncs"), 0, "no full resync");
    assert_eq!(num(&a, "quire_rewinds"), 1, "rewound to the fork");
    assert!(
        a.info("replication", "quire_last_rewind")
            .contains(&format!(" from={saved_at} ")),
        "rebuilt from the snapshot: {}",
        a.info("replication", "quire_last_rewind")
    );
    assert_eq!(
        cmd(&mut a.client(), &["MGET", "snapshotted", "after-save"]).unwrap(),
        redis::Value::Array(vec![
            redis::Value::BulkString(b"1".to_vec()),
            redis::Value::BulkString(b"1".to_vec())
        ])
    );
    let aside = a
        .info("replication", "quire_last_rewind")
        .split("aside=")
        .nth(1)
        .expect("aside file named")
        .to_string();
    let kept = std::fs::read(&aside).expect("diverged writes kept");
    let kept = String::from_utf8_lossy(&kept);
    assert_eq!(kept.matches("lost:").count(), 5, "{kept}");
}

/// A node that has seen epoch 1 is pointed back at a primary still at
/// epoch 0 (a stale region): it refuses that upstream, and the stale
/// primary, seeing the newer epoch in the handshake, fences itself.
#[test]
fn replica_refuses_a_stale_primary_and_the_stale_primary_fences_itself() {
    let pki = Pki::new(&["old", "new", "r"]);
    let (po, pn, pr) = (free_udp_port(), free_udp_port(), free_udp_port());
    let old = TestNode::start_with(region(&pki, "old", po, &[], None));
    let new = TestNode::start_with(region(&pki, "new", pn, &[], Some(po)));
    assert!(wait_until(LIMIT, || new
        .info("replication", "master_link_status")
        == "up"));
    // Elsewhere, "new" is promoted (epoch 1) and "r" follows it.
    cmd(&mut new.client(), &["REPLICAOF", "NO", "ONE"]).unwrap();
    let r = TestNode::start_with(region(&pki, "r", pr, &[], Some(pn)));
    assert!(wait_until(LIMIT, || r.info("replication", "quire_epoch") == "1"));
    // Someone points r back at the stale "old" primary (epoch 0).
    cmd(
        &mut r.client(),
        &["REPLICAOF", "127.0.0.1", &po.to_string()],
    )
    .unwrap();
    assert!(
        wait_until(LIMIT, || old.info("replication", "quire_fenced") == "1"),
        "stale primary did not fence itself"
    );
    assert_eq!(
        old.info("replication", "role"),
        "slave",
        "the stale primary no longer takes writes"
    );
    assert!(cmd(&mut old.client(), &["SET", "x", "1"]).is_err());
    // It follows the node that showed it the newer epoch...
    let port = old.info("replication", "master_port");
    assert!(
        port == pr.to_string() || port == r.info("server", "tcp_port"),
        "follows {port}"
    );
    assert!(wait_until(LIMIT, || old.info("replication", "quire_epoch") == "1"));
    // ...which never applies the stale node's stream: first refused as
    // fenced, then as a cycle once the stale node follows it.
    std::thread::sleep(Duration::from_millis(500));
    let error = r.info("replication", "quire_link_last_error");
    assert!(
        error.contains("fenced") || error.contains("cycle"),
        "{error}"
    );
    assert_eq!(r.info("replication", "master_link_status"), "down");
}
