//! A real Redis replica (Debian's redis-server) follows a Quire primary
//! over Redis's own replication protocol on the client port: SYNC/PSYNC,
//! the RDB, then the stream; after its link drops it continues partially
//! (PSYNC → +CONTINUE). Both digest the data with Redis's algorithm, so
//! equal digests mean equal data.

mod common;

use common::{wait_until, RawClient, RedisServer, TestNode};
use std::time::Duration;

struct RedisReplica(RedisServer);

impl RedisReplica {
    fn start(primary_port: u16) -> RedisReplica {
        let port = primary_port.to_string();
        RedisReplica(RedisServer::start(&["--replicaof", "127.0.0.1", &port]))
    }

    fn port(&self) -> u16 {
        self.0.port
    }

    fn info(&self, field: &str) -> String {
        info(self.0.port, field)
    }
}

fn info(port: u16, field: &str) -> String {
    let text = RawClient::connect(port).call(&["INFO"]).text();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn digest(port: u16) -> String {
    RawClient::connect(port).call(&["DEBUG", "DIGEST"]).text()
}

fn same_data(primary: u16, replica: u16) -> bool {
    wait_until(Duration::from_secs(15), || {
        digest(primary) == digest(replica)
    })
}

#[test]
fn redis_replica_follows_quire_and_resumes_partially() {
    let quire = TestNode::start();
    let mut q = quire.raw();
    // Data before the replica exists travels in the RDB.
    for cmd in [
        vec!["SET", "s", "hello"],
        vec!["SET", "ttl", "v", "EX", "1000"],
        vec!["RPUSH", "l", "a", "1", "ccc"],
        vec!["SADD", "set", "1", "2", "x"],
        vec!["HSET", "h", "f", "v", "n", "12"],
        vec!["ZADD", "z", "1.5", "a", "-2", "b"],
        vec!["PFADD", "hll", "a", "b", "c"],
        vec!["SELECT", "3"],
        vec!["SET", "other-db", "1"],
    ] {
        q.call(&cmd);
    }
    let replica = RedisReplica::start(quire.port);
    assert!(
        wait_until(Duration::from_secs(15), || replica
            .info("master_link_status")
            == "up"),
        "the Redis replica's link came up"
    );
    assert!(
        same_data(quire.port, replica.port()),
        "the RDB carried the data"
    );
    // Writes after the sync travel in the stream, as the commands
    // Quire replicates (effects: INCRBYFLOAT as SET, EXPIRE absolute).
    let mut q = quire.raw();
    for cmd in [
        vec!["INCRBYFLOAT", "f", "94.455"],
        vec!["EXPIRE", "s", "500"],
        vec!["MULTI"],
        vec!["LPUSH", "l", "new"],
        vec!["HINCRBY", "h", "n", "5"],
        vec!["EXEC"],
        vec!["SPOP", "set"],
        vec!["GEOADD", "g", "13.361389", "38.115556", "Palermo"],
    ] {
        q.call(&cmd);
    }
    assert!(
        same_data(quire.port, replica.port()),
        "the stream carried the writes"
    );
    assert_eq!(
        RawClient::connect(replica.port())
            .call(&["GET", "f"])
            .text(),
        "94.455"
    );
    // The replica's link drops: it comes back with PSYNC at its offset
    // and continues partially.
    let partial_before: u64 = info(quire.port, "sync_partial_ok").parse().unwrap_or(0);
    let full_before: u64 = info(quire.port, "sync_full").parse().unwrap_or(0);
    RawClient::connect(replica.port()).call(&["CLIENT", "KILL", "TYPE", "master"]);
    q.call(&["SET", "after-drop", "1"]);
    assert!(
        wait_until(Duration::from_secs(15), || {
            info(quire.port, "sync_partial_ok")
                .parse::<u64>()
                .unwrap_or(0)
                > partial_before
        }),
        "the Redis replica resumed with a partial resync"
    );
    assert_eq!(
        info(quire.port, "sync_full").parse::<u64>().unwrap_or(0),
        full_before,
        "no second full sync"
    );
    assert!(
        same_data(quire.port, replica.port()),
        "the data is the same after resuming"
    );
}

#[test]
fn sync_is_refused_on_a_replica_without_a_link_and_needs_auth() {
    let quire = TestNode::start_with(|s| s.requirepass = "secret".into());
    let mut c = quire.raw();
    assert!(c.call(&["SYNC"]).err().starts_with("NOAUTH"));
    assert!(c.call(&["PSYNC", "?", "-1"]).err().starts_with("NOAUTH"));
}
