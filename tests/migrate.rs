//! MIGRATE between Quire and Debian's redis-server, both ways.

mod common;

use common::{RawClient, RedisServer, Reply, TestNode};

#[test]
fn migrate_moves_keys_to_redis_and_back_with_their_ttl() {
    let node = TestNode::start();
    let redis_server = RedisServer::start(&[]);
    let mut q = node.raw();
    let mut r = RawClient::connect(redis_server.port);
    let port = redis_server.port.to_string();
    q.call(&["RPUSH", "list", "a", "b", "c"]);
    q.call(&["SET", "s", "v", "EX", "1000"]);
    q.call(&["HSET", "h", "f", "1"]);
    assert_eq!(
        q.call(&["MIGRATE", "127.0.0.1", &port, "missing", "0", "5000"]),
        Reply::Simple("NOKEY".into())
    );
    assert_eq!(
        q.call(&["MIGRATE", "127.0.0.1", &port, "list", "0", "5000"]),
        Reply::Simple("OK".into())
    );
    assert_eq!(q.call(&["EXISTS", "list"]).int(), 0, "moved away");
    assert_eq!(
        r.call(&["LRANGE", "list", "0", "-1"]).strings(),
        ["a", "b", "c"]
    );
    assert_eq!(
        q.call(&[
            "MIGRATE",
            "127.0.0.1",
            &port,
            "",
            "3",
            "5000",
            "COPY",
            "KEYS",
            "s",
            "h"
        ]),
        Reply::Simple("OK".into())
    );
    assert_eq!(q.call(&["EXISTS", "s", "h"]).int(), 2, "COPY keeps them");
    r.call(&["SELECT", "3"]);
    let ttl = r.call(&["TTL", "s"]).int();
    assert!((990..=1000).contains(&ttl), "{ttl}");
    assert_eq!(r.call(&["HGET", "h", "f"]), Reply::bulk("1"));
    // The target refuses an existing key without REPLACE: the key stays.
    let refused = q.call(&["MIGRATE", "127.0.0.1", &port, "s", "3", "5000"]);
    assert!(
        refused
            .err()
            .starts_with("ERR Target instance replied with error: BUSYKEY"),
        "{refused:?}"
    );
    assert_eq!(q.call(&["EXISTS", "s"]).int(), 1);
    assert_eq!(
        q.call(&["MIGRATE", "127.0.0.1", &port, "s", "3", "5000", "REPLACE"]),
        Reply::Simple("OK".into())
    );
    // And back from Redis into Quire (which still has its copy).
    q.call(&["DEL", "h"]);
    let qport = node.port.to_string();
    assert_eq!(
        r.call(&["MIGRATE", "127.0.0.1", &qport, "h", "0", "5000"]),
        Reply::Simple("OK".into())
    );
    assert_eq!(q.call(&["HGET", "h", "f"]), Reply::bulk("1"));
    assert_eq!(
        q.call(&["MIGRATE", "127.0.0.1", &port, "x", "0", "5000", "KEYS", "a"])
            .err(),
        "ERR When using MIGRATE KEYS option, the key argument must be set to the empty string"
    );
    let closed = common::reserve_port(false).to_string();
    assert!(q
        .call(&["MIGRATE", "127.0.0.1", &closed, "h", "0", "500"])
        .err()
        .starts_with("IOERR"));
}
