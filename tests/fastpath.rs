//! The loss-resilient fast path end to end: batches travel both on the
//! stream and as QUIC datagrams through a lossy, reordering relay; the
//! replica applies each exactly once, in order, from whichever copy came
//! first, and ends with the primary's exact dataset.

mod common;

use common::{cmd, wait_caught_up, wait_until, Pki, TestNode};
use quire::wan::relay::RelayThread;
use quire::wan::LinkParams;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(60);

fn lossy() -> LinkParams {
    LinkParams {
        delay: Duration::from_millis(5),
        jitter: Duration::from_millis(3),
        loss: 0.05,
        reorder: true,
        ..LinkParams::default()
    }
}

fn num(node: &TestNode, field: &str) -> u64 {
    node.info("replication", field).parse().unwrap_or(0)
}

fn pair(pki: &Pki, mode: &str, link: LinkParams) -> (TestNode, RelayThread, TestNode) {
    let p = TestNode::start_with(|s| {
        pki.configure("p", s);
        s.repl.datagrams = mode.parse().expect("a datagram mode");
    });
    let relay =
        RelayThread::start(p.repl_addr().parse().unwrap(), link.clone(), link, 3).expect("relay");
    let addr = relay.addr.to_string();
    let r = TestNode::start_with(|s| {
        pki.configure("r", s);
        s.replicaof = addr;
    });
    assert!(
        wait_until(LIMIT, || r.info("replication", "master_link_status")
            == "up"),
        "replica did not connect"
    );
    (p, relay, r)
}

/// Mixed writes in small pipelines, so batches are cut often: counters
/// (applied twice would show), lists, hashes, sets, sorted sets, expiries
/// and transactions.
fn write_mix(node: &TestNode, rounds: u64) {
    let mut con = node.client();
    for i in 0..rounds {
        let mut pipe = redis::pipe();
        pipe.cmd("INCR").arg("count").ignore();
        pipe.cmd("SET")
            .arg(format!("k:{}", i % 300))
            .arg(format!(
                "{{\"i\":{i},\"pad\":\"{}\"}}",
                "x".repeat((i % 50) as usize)
            ))
            .ignore();
        pipe.cmd("RPUSH").arg("list").arg(i).ignore();
        pipe.cmd("HINCRBY")
            .arg("h")
            .arg(format!("f{}", i % 20))
            .arg(1)
            .ignore();
        pipe.cmd("SADD").arg("s").arg(i % 97).ignore();
        pipe.cmd("ZINCRBY")
            .arg("z")
            .arg(1)
            .arg(format!("m{}", i % 13))
            .ignore();
        if i % 10 == 0 {
            pipe.cmd("SET")
                .arg(format!("ttl:{i}"))
                .arg("v")
                .arg("EX")
                .arg(1000)
                .ignore();
            pipe.atomic();
        }
        pipe.query::<()>(&mut con).expect("pipeline");
        if i % 25 == 0 {
            std::thread::sleep(Duration::from_millis(3));
        }
    }
}

#[test]
fn lossy_link_applies_every_batch_once_from_either_copy() {
    let pki = Pki::new(&["p", "r"]);
    let (p, _relay, r) = pair(&pki, "on", lossy());
    write_mix(&p, 1500);
    wait_caught_up(&p, &[&r], LIMIT);
    assert_eq!(r.digest(), p.digest(), "datasets differ");
    let mut rc = r.client();
    assert_eq!(
        cmd(&mut rc, &["GET", "count"]).unwrap(),
        redis::Value::BulkString(b"1500".to_vec())
    );
    assert_eq!(
        cmd(&mut rc, &["LLEN", "list"]).unwrap(),
        redis::Value::Int(1500)
    );
    assert!(
        num(&p, "quire_datagram_sent_bytes") > 0,
        "primary sent no datagram copies"
    );
    assert!(
        num(&r, "quire_batches_via_datagram") > 0,
        "no batch was applied from a datagram copy"
    );
    assert!(num(&r, "quire_batches_via_stream") > 0);
    assert!(
        num(&r, "quire_batch_copies_discarded") > 0,
        "the second copies must have been discarded"
    );
    assert_eq!(num(&r, "quire_datagrams_rejected"), 0);
    assert!(
        p.info("replication", "slave0").contains("datagrams=on"),
        "{}",
        p.info("replication", "slave0")
    );
}

#[test]
fn datagrams_off_is_stream_only_and_config_set_switches_them_on() {
    let pki = Pki::new(&["p", "r"]);
    let (p, _relay, r) = pair(&pki, "off", LinkParams::default());
    write_mix(&p, 200);
    wait_caught_up(&p, &[&r], LIMIT);
    assert_eq!(num(&p, "quire_datagram_sent_bytes"), 0);
    assert_eq!(num(&r, "quire_batches_via_datagram"), 0);
    assert_eq!(r.digest(), p.digest());
    let mut pc = p.client();
    assert!(cmd(&mut pc, &["CONFIG", "SET", "repl-datagrams", "sometimes"]).is_err());
    cmd(&mut pc, &["CONFIG", "SET", "repl-datagrams", "on"]).unwrap();
    assert_eq!(
        cmd(&mut pc, &["CONFIG", "GET", "repl-datagrams"]).unwrap(),
        redis::Value::Array(vec![
            redis::Value::BulkString(b"repl-datagrams".to_vec()),
            redis::Value::BulkString(b"on".to_vec())
        ])
    );
    // Live links pick the mode up within a keep-alive period.
    let mut i = 0;
    assert!(
        wait_until(LIMIT, || {
            i += 1;
            cmd(&mut pc, &["SET", "after", &i.to_string()]).unwrap();
            num(&p, "quire_datagram_sent_bytes") > 0
        }),
        "no datagram copies after CONFIG SET repl-datagrams on"
    );
    wait_caught_up(&p, &[&r], LIMIT);
    assert_eq!(r.digest(), p.digest());
}
