//! Job queues as applications run them, unchanged, against Quire: BullMQ
//! (npm; Lua scripts with cmsgpack, streams for its events), python-rq
//! (results in a stream written inside MULTI) and Celery (Redis broker and
//! result backend). Each runs on a primary, then again on its replica
//! after the replica is promoted, so a DR region can run the application.
//!
//! Needs node with `npm ci` done in tests/js, and python3 with redis, rq
//! and celery (`.ci/run` installs them).

mod common;

use common::wait_caught_up;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

fn tests_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests")
}

/// Runs `program script port`; the script prints "ok" when its checks hold.
fn run_client(program: &str, script: &str, port: u16) {
    let path = tests_dir().join(script);
    let out = Command::new("timeout")
        .arg("180")
        .arg(program)
        .arg(&path)
        .arg(port.to_string())
        .current_dir(path.parent().expect("a directory"))
        .output()
        .unwrap_or_else(|e| panic!("{program} runs: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.lines().any(|l| l.trim() == "ok"),
        "{script} failed ({}):\n{stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

fn all_clients(port: u16) {
    run_client("node", "js/bullmq.cjs", port);
    run_client("python3", "clients/rq_run.py", port);
    run_client("python3", "clients/celery_run.py", port);
}

#[test]
fn job_queues_run_on_a_primary_and_on_its_promoted_replica() {
    let (_pki, primary, replica) = common::primary_and_replica();
    all_clients(primary.port);
    wait_caught_up(&primary, &[&replica], Duration::from_secs(30));
    assert_eq!(primary.digest(), replica.digest());
    drop(primary);
    let mut r = replica.raw();
    assert_eq!(r.call(&["REPLICAOF", "NO", "ONE"]).text(), "OK");
    all_clients(replica.port);
}
