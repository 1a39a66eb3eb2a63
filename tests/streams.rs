//! Streams and consumer groups through real clients: two redis-py
//! consumers share a group, one crashes with entries unacknowledged and
//! the other takes them over with XAUTOCLAIM; the group state reaches a
//! replica as effects, survives its promotion and a restart; stream values
//! move between redis-server and Quire with DUMP/RESTORE.

mod common;

use common::{wait_caught_up, wait_until, RawClient, RedisServer, Reply, TestNode};
use std::time::Duration;

/// Two consumers in one group; `bob` crashes holding 5 entries; `alice`
/// claims them with XAUTOCLAIM once they are idle, processes and acks.
const TWO_CONSUMERS: &str = r#"
import sys, time, redis
r = redis.Redis(host="127.0.0.1", port=int(sys.argv[1]), socket_timeout=10)
r.delete("jobs")
r.xgroup_create("jobs", "workers", id="0", mkstream=True)
ids = [r.xadd("jobs", {"n": str(i)}) for i in range(20)]
alice = r.xreadgroup("workers", "alice", {"jobs": ">"}, count=5)[0][1]
bob = r.xreadgroup("workers", "bob", {"jobs": ">"}, count=5)[0][1]
assert [e[0] for e in alice] == ids[:5] and [e[0] for e in bob] == ids[5:10]
r.xack("jobs", "workers", *[e[0] for e in alice])
# bob crashes here: its 5 entries stay pending.
p = r.xpending("jobs", "workers")
assert p["pending"] == 5 and p["consumers"] == [{"name": b"bob", "pending": 5}], p
time.sleep(0.2)
cursor, claimed, deleted = r.xautoclaim("jobs", "workers", "alice", min_idle_time=100, start_id="0-0")
assert [e[0] for e in claimed] == ids[5:10], claimed
assert deleted == [] and cursor == b"0-0"
ext = r.xpending_range("jobs", "workers", "-", "+", 10)
assert all(x["consumer"] == b"alice" and x["times_delivered"] == 2 for x in ext), ext
r.xack("jobs", "workers", *[e[0] for e in claimed])
rest = r.xreadgroup("workers", "alice", {"jobs": ">"})[0][1]
assert [e[0] for e in rest] == ids[10:]
assert r.xpending("jobs", "workers")["pending"] == 10
# A blocked reader is woken by the next entry.
import threading
got = []
t = threading.Thread(target=lambda: got.append(redis.Redis(port=int(sys.argv[1])).xreadgroup("workers", "carol", {"jobs": ">"}, block=5000)))
t.start()
while int(r.info("clients")["blocked_clients"]) == 0:
    time.sleep(0.01)
new = r.xadd("jobs", {"n": "late"})
t.join(10)
assert got and got[0][0][1][0][0] == new, got
g = r.xinfo_groups("jobs")[0]
assert g["consumers"] == 3 and g["last-delivered-id"] == new and g["lag"] == 0, g
print("ok")
"#;

#[test]
fn two_consumers_and_a_crashed_ones_entries_claimed() {
    let node = TestNode::start();
    common::run_python(TWO_CONSUMERS, node.port);
}

/// A reply flattened to text, for comparing nested replies.
fn flat(reply: &Reply) -> Vec<String> {
    match reply {
        Reply::Array(v) | Reply::Set(v) => v.iter().flat_map(flat).collect(),
        Reply::Map(m) => m
            .iter()
            .flat_map(|(k, v)| [flat(k), flat(v)].concat())
            .collect(),
        Reply::Int(n) => vec![n.to_string()],
        Reply::Nil => vec!["nil".into()],
        other => vec![other.text()],
    }
}

/// The group's state as XINFO and XPENDING show it (times excluded).
fn group_state(node: &TestNode) -> Vec<String> {
    let mut c = node.raw();
    let mut out = flat(&c.call(&["XINFO", "GROUPS", "jobs"]));
    for item in c
        .call(&["XPENDING", "jobs", "workers", "-", "+", "100"])
        .items()
    {
        let fields = item.items();
        out.push(format!(
            "{} {} {}",
            fields[0].text(),
            fields[1].text(),
            fields[3].int()
        ));
    }
    out.push(c.call(&["XLEN", "jobs"]).int().to_string());
    out
}

#[test]
fn group_state_replicates_survives_promotion_and_restart() {
    let (pki, primary, replica) = common::primary_and_replica();
    common::run_python(TWO_CONSUMERS, primary.port);
    // Approximate trimming replicates as the exact trim it made.
    let mut p = primary.raw();
    for _ in 0..300 {
        p.call(&["XADD", "log", "MAXLEN", "~", "150", "*", "f", "v"]);
    }
    wait_caught_up(&primary, &[&replica], Duration::from_secs(30));
    assert_eq!(group_state(&primary), group_state(&replica));
    assert_eq!(primary.digest(), replica.digest());
    let log_len = p.call(&["XLEN", "log"]).int();
    assert!((150..300).contains(&log_len), "{log_len}");
    assert_eq!(replica.raw().call(&["XLEN", "log"]).int(), log_len);
    drop(primary);

    // Promoted, the replica goes on where the group was.
    let mut r = replica.raw();
    assert_eq!(r.call(&["REPLICAOF", "NO", "ONE"]).text(), "OK");
    let next = r.call(&["XADD", "jobs", "*", "n", "after"]).text();
    let read = r.call(&[
        "XREADGROUP",
        "GROUP",
        "workers",
        "dave",
        "STREAMS",
        "jobs",
        ">",
    ]);
    let entries = read.items()[0].items()[1].items();
    assert_eq!(
        entries.len(),
        1,
        "only the entry added after promotion is new"
    );
    assert_eq!(entries[0].items()[0].text(), next);
    let before = group_state(&replica);

    // A restart keeps entries, groups, consumers and pending entries.
    let dir = replica.stop();
    let back = TestNode::try_start_in(dir, |s| pki.configure("r", s)).expect("restarts");
    assert!(wait_until(Duration::from_secs(10), || back
        .raw()
        .call(&["PING"])
        .text()
        == "PONG"));
    assert_eq!(group_state(&back), before);
}

#[test]
fn stream_values_move_between_redis_and_quire_with_dump_restore() {
    let redis = RedisServer::start(&[]);
    let quire = TestNode::start();
    let mut rc = RawClient::connect(redis.port);
    let mut qc = quire.raw();
    for c in [&mut rc, &mut qc] {
        for i in 1..=300 {
            let big = "x".repeat(i % 50);
            c.call(&[
                "XADD",
                "s",
                &format!("{i}-1"),
                "a",
                &i.to_string(),
                "b",
                &big,
            ]);
        }
        c.call(&["XADD", "s", "400-0", "other", "fields"]);
        c.call(&["XDEL", "s", "7-1", "150-1"]);
        c.call(&["XGROUP", "CREATE", "s", "g", "0"]);
        c.call(&[
            "XREADGROUP",
            "GROUP",
            "g",
            "c1",
            "COUNT",
            "4",
            "STREAMS",
            "s",
            ">",
        ]);
        c.call(&[
            "XREADGROUP",
            "GROUP",
            "g",
            "c2",
            "COUNT",
            "3",
            "STREAMS",
            "s",
            ">",
        ]);
        c.call(&["XACK", "s", "g", "2-1"]);
    }
    assert_eq!(digest(&mut rc, "s"), digest(&mut qc, "s"));
    copy_value(&mut rc, &mut qc);
    copy_value(&mut qc, &mut rc);
    // A corrupt payload is refused, never loaded.
    let mut payload = bytes_of(&qc.call_bytes(&[b"DUMP", b"s"]));
    let mid = payload.len() / 2;
    payload[mid] ^= 0xff;
    assert!(qc
        .call_bytes(&[b"RESTORE", b"bad", b"0", &payload])
        .err()
        .contains("checksum"));
}

fn digest(c: &mut RawClient, key: &str) -> String {
    c.call(&["DEBUG", "DIGEST-VALUE", key]).items()[0].text()
}

fn bytes_of(reply: &Reply) -> Vec<u8> {
    match reply {
        Reply::Bulk(b) => b.clone(),
        other => panic!("expected a bulk string, got {other:?}"),
    }
}

/// DUMPs `s` on one server and RESTOREs it on the other as `copy`: same
/// digest, same pending entries.
fn copy_value(from: &mut RawClient, to: &mut RawClient) {
    let payload = bytes_of(&from.call_bytes(&[b"DUMP", b"s"]));
    assert_eq!(
        to.call_bytes(&[b"RESTORE", b"copy", b"0", &payload]).text(),
        "OK"
    );
    assert_eq!(digest(to, "copy"), digest(from, "s"));
    assert_eq!(
        flat(&to.call(&["XPENDING", "copy", "g"])),
        flat(&from.call(&["XPENDING", "s", "g"]))
    );
    assert_eq!(
        flat(&to.call(&["XINFO", "GROUPS", "copy"])),
        flat(&from.call(&["XINFO", "GROUPS", "s"]))
    );
    to.call(&["DEL", "copy"]);
}
