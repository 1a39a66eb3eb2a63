//! Server core through real sockets: strings, keys, expiry, server and
//! connection commands, protocol handling, snapshots across restarts.

mod common;

use common::{cmd, wait_until, Reply, TestNode};
use redis::Commands;
use std::time::Duration;

#[test]
fn strings_behave_like_redis() {
    let node = TestNode::start();
    let mut c = node.client();
    let _: () = c.set("k", "v").unwrap();
    assert_eq!(c.get::<_, String>("k").unwrap(), "v");
    let mut r = node.raw();
    assert_eq!(r.call(&["SET", "k", "v2", "NX"]), Reply::Nil);
    assert_eq!(r.call(&["SET", "k", "v2", "XX", "GET"]), Reply::bulk("v"));
    assert_eq!(
        r.call(&["SET", "k", "v", "NX", "XX"]).err(),
        "ERR syntax error"
    );
    assert_eq!(
        r.call(&["SET", "k", "v", "EX", "0"]).err(),
        "ERR invalid expire time in 'set' command"
    );
    assert_eq!(
        r.call(&["SET", "k", "v", "EX", "abc"]).err(),
        "ERR value is not an integer or out of range"
    );
    assert_eq!(
        r.call(&["SET", "k", "v", "PX", "100000", "KEEPTTL"]).err(),
        "ERR syntax error"
    );
    assert_eq!(
        r.call(&["SET", "k", "v", "EX", "100"]),
        Reply::Simple("OK".into())
    );
    assert_eq!(
        r.call(&["SET", "k", "w", "KEEPTTL"]),
        Reply::Simple("OK".into())
    );
    assert!(r.call(&["TTL", "k"]).int() > 90);
    assert_eq!(r.call(&["SETNX", "k", "x"]).int(), 0);
    assert_eq!(
        r.call(&["SETEX", "k", "-1", "x"]).err(),
        "ERR invalid expire time in 'setex' command"
    );
    assert_eq!(
        r.call(&["PSETEX", "p", "100000", "x"]),
        Reply::Simple("OK".into())
    );
    assert_eq!(
        r.call(&["MSET", "a", "1", "b", "2"]),
        Reply::Simple("OK".into())
    );
    assert_eq!(
        r.call(&["MSET", "a", "1", "b"]).err(),
        "ERR wrong number of arguments for 'mset' command"
    );
    assert_eq!(
        r.call(&["MGET", "a", "nope", "b"]),
        Reply::Array(vec![Reply::bulk("1"), Reply::Nil, Reply::bulk("2")])
    );
    assert_eq!(r.call(&["MSETNX", "a", "9", "c", "3"]).int(), 0);
    assert_eq!(r.call(&["MSETNX", "c", "3", "d", "4"]).int(), 1);
    assert_eq!(r.call(&["GETSET", "a", "10"]), Reply::bulk("1"));
    assert_eq!(r.call(&["GETDEL", "a"]), Reply::bulk("10"));
    assert_eq!(r.call(&["EXISTS", "a"]).int(), 0);
    assert_eq!(r.call(&["GETEX", "b", "PX", "50000"]), Reply::bulk("2"));
    assert!(r.call(&["PTTL", "b"]).int() > 40000);
    assert_eq!(r.call(&["GETEX", "b", "PERSIST"]), Reply::bulk("2"));
    assert_eq!(r.call(&["TTL", "b"]).int(), -1);
    assert_eq!(r.call(&["APPEND", "s", "Hello"]).int(), 5);
    assert_eq!(r.call(&["APPEND", "s", " World"]).int(), 11);
    assert_eq!(r.call(&["STRLEN", "s"]).int(), 11);
    assert_eq!(r.call(&["GETRANGE", "s", "0", "4"]), Reply::bulk("Hello"));
    assert_eq!(r.call(&["GETRANGE", "s", "-5", "-1"]), Reply::bulk("World"));
    assert_eq!(r.call(&["GETRANGE", "s", "5", "1"]), Reply::bulk(""));
    assert_eq!(r.call(&["SETRANGE", "s", "6", "Redis"]).int(), 11);
    assert_eq!(r.call(&["GET", "s"]), Reply::bulk("Hello Redis"));
    assert_eq!(r.call(&["SETRANGE", "z", "3", "x"]).int(), 4);
    assert_eq!(r.call(&["GET", "z"]), Reply::Bulk(vec![0, 0, 0, b'x']));
    assert_eq!(
        r.call(&["SETRANGE", "s", "-1", "x"]).err(),
        "ERR offset is out of range"
    );
    assert_eq!(
        r.call(&["SETRANGE", "s", "536870911", "xx"]).err(),
        "ERR string exceeds maximum allowed size (proto-max-bulk-len)"
    );
    assert_eq!(r.call(&["INCR", "n"]).int(), 1);
    assert_eq!(r.call(&["INCRBY", "n", "10"]).int(), 11);
    assert_eq!(r.call(&["DECR", "n"]).int(), 10);
    assert_eq!(r.call(&["DECRBY", "n", "20"]).int(), -10);
    assert_eq!(
        r.call(&["INCR", "s"]).err(),
        "ERR value is not an integer or out of range"
    );
    assert_eq!(
        r.call(&["SET", "big", "9223372036854775807"]),
        Reply::Simple("OK".into())
    );
    assert_eq!(
        r.call(&["INCR", "big"]).err(),
        "ERR increment or decrement would overflow"
    );
    assert_eq!(r.call(&["SET", "f", "10.50"]), Reply::Simple("OK".into()));
    assert_eq!(r.call(&["INCRBYFLOAT", "f", "0.1"]), Reply::bulk("10.6"));
    assert_eq!(r.call(&["INCRBYFLOAT", "f", "-5"]), Reply::bulk("5.6"));
    assert_eq!(r.call(&["SET", "e", "5.0e3"]), Reply::Simple("OK".into()));
    assert_eq!(r.call(&["INCRBYFLOAT", "e", "2.0e2"]), Reply::bulk("5200"));
    assert_eq!(
        r.call(&["INCRBYFLOAT", "e", "abc"]).err(),
        "ERR value is not a valid float"
    );
    assert_eq!(
        r.call(&["INCRBYFLOAT", "e", "inf"]).err(),
        "ERR increment would produce NaN or Infinity"
    );
    assert_eq!(r.call(&["LPUSH", "list", "x"]).int(), 1);
    assert_eq!(
        r.call(&["GET", "list"]).err(),
        "WRONGTYPE Operation against a key holding the wrong kind of value"
    );
    assert_eq!(
        r.call(&["GET"]).err(),
        "ERR wrong number of arguments for 'get' command"
    );
    assert_eq!(r.call(&["SUBSTR", "s", "0", "4"]), Reply::bulk("Hello"));
}

#[test]
fn keys_rename_copy_move_scan() {
    let node = TestNode::start();
    let mut r = node.raw();
    for i in 0..50 {
        r.call(&["SET", &format!("key:{i}"), "v"]);
    }
    r.call(&["RPUSH", "mylist", "a"]);
    assert_eq!(r.call(&["DBSIZE"]).int(), 51);
    assert_eq!(r.call(&["EXISTS", "key:1", "key:1", "nope"]).int(), 2);
    assert_eq!(r.call(&["TYPE", "mylist"]), Reply::Simple("list".into()));
    assert_eq!(r.call(&["TYPE", "nope"]), Reply::Simple("none".into()));
    let mut keys = r.call(&["KEYS", "key:1*"]).strings();
    keys.sort();
    assert_eq!(keys.len(), 11);
    let mut seen = std::collections::HashSet::new();
    let mut cursor = "0".to_string();
    loop {
        let reply = r
            .call(&["SCAN", &cursor, "MATCH", "key:*", "COUNT", "7"])
            .items();
        cursor = reply[0].text();
        seen.extend(reply[1].strings());
        if cursor == "0" {
            break;
        }
    }
    assert_eq!(seen.len(), 50);
    let lists = r
        .call(&["SCAN", "0", "TYPE", "list", "COUNT", "1000"])
        .items();
    assert_eq!(lists[1].strings(), vec!["mylist"]);
    assert_eq!(r.call(&["SCAN", "abc"]).err(), "ERR invalid cursor");
    assert!(matches!(r.call(&["RANDOMKEY"]), Reply::Bulk(_)));
    assert_eq!(r.call(&["RENAME", "nope", "x"]).err(), "ERR no such key");
    r.call(&["SET", "ttlkey", "v", "EX", "1000"]);
    assert_eq!(
        r.call(&["RENAME", "ttlkey", "renamed"]),
        Reply::Simple("OK".into())
    );
    assert!(r.call(&["TTL", "renamed"]).int() > 900);
    assert_eq!(r.call(&["RENAMENX", "renamed", "key:1"]).int(), 0);
    assert_eq!(r.call(&["COPY", "key:1", "copy"]).int(), 1);
    assert_eq!(r.call(&["COPY", "key:1", "copy"]).int(), 0);
    assert_eq!(r.call(&["COPY", "key:1", "copy", "REPLACE"]).int(), 1);
    assert_eq!(
        r.call(&["COPY", "key:1", "key:1"]).err(),
        "ERR source and destination objects are the same"
    );
    assert_eq!(r.call(&["COPY", "mylist", "elsewhere", "DB", "3"]).int(), 1);
    assert_eq!(r.call(&["MOVE", "key:2", "1"]).int(), 1);
    assert_eq!(r.call(&["MOVE", "key:2", "1"]).int(), 0);
    assert_eq!(
        r.call(&["MOVE", "key:3", "0"]).err(),
        "ERR source and destination objects are the same"
    );
    assert_eq!(
        r.call(&["SELECT", "16"]).err(),
        "ERR DB index is out of range"
    );
    assert_eq!(r.call(&["SELECT", "1"]), Reply::Simple("OK".into()));
    assert_eq!(r.call(&["GET", "key:2"]), Reply::bulk("v"));
    assert_eq!(r.call(&["SWAPDB", "0", "1"]), Reply::Simple("OK".into()));
    // db 1 now holds db 0's keys: 50 + mylist + renamed + copy - key:2.
    assert_eq!(r.call(&["DBSIZE"]).int(), 52);
    assert_eq!(
        r.call(&["SWAPDB", "0", "x"]).err(),
        "ERR invalid second DB index"
    );
    assert_eq!(r.call(&["FLUSHDB", "ASYNC"]), Reply::Simple("OK".into()));
    assert_eq!(r.call(&["DBSIZE"]).int(), 0);
    assert_eq!(r.call(&["FLUSHALL", "BOGUS"]).err(), "ERR syntax error");
    assert_eq!(r.call(&["FLUSHALL"]), Reply::Simple("OK".into()));
    r.call(&["SELECT", "3"]);
    assert_eq!(r.call(&["DBSIZE"]).int(), 0);
    r.call(&["SET", "n", "12345"]);
    r.call(&["SET", "s", "short"]);
    r.call(&["SET", "long", &"x".repeat(100)]);
    assert_eq!(r.call(&["OBJECT", "ENCODING", "n"]), Reply::bulk("int"));
    assert_eq!(r.call(&["OBJECT", "ENCODING", "s"]), Reply::bulk("embstr"));
    assert_eq!(r.call(&["OBJECT", "ENCODING", "long"]), Reply::bulk("raw"));
    assert_eq!(r.call(&["OBJECT", "REFCOUNT", "s"]).int(), 1);
    assert_eq!(r.call(&["OBJECT", "IDLETIME", "s"]).int(), 0);
    assert_eq!(r.call(&["OBJECT", "ENCODING", "nope"]), Reply::Nil);
    assert!(r
        .call(&["OBJECT", "FREQ", "s"])
        .err()
        .starts_with("ERR An LFU maxmemory policy is not selected"));
    assert_eq!(r.call(&["TOUCH", "n", "s", "nope"]).int(), 2);
    assert_eq!(r.call(&["UNLINK", "n", "s", "nope"]).int(), 2);
}

#[test]
fn expiry_options_and_reclamation() {
    let node = TestNode::start();
    let mut r = node.raw();
    r.call(&["SET", "k", "v"]);
    assert_eq!(r.call(&["TTL", "k"]).int(), -1);
    assert_eq!(r.call(&["TTL", "nope"]).int(), -2);
    assert_eq!(r.call(&["EXPIRE", "k", "100", "XX"]).int(), 0);
    assert_eq!(r.call(&["EXPIRE", "k", "100", "NX"]).int(), 1);
    assert_eq!(r.call(&["EXPIRE", "k", "200", "NX"]).int(), 0);
    assert_eq!(r.call(&["EXPIRE", "k", "50", "GT"]).int(), 0);
    assert_eq!(r.call(&["EXPIRE", "k", "200", "GT"]).int(), 1);
    assert_eq!(r.call(&["EXPIRE", "k", "300", "LT"]).int(), 0);
    assert_eq!(
        r.call(&["EXPIRE", "k", "100", "NX", "XX"]).err(),
        "ERR NX and XX, GT or LT options at the same time are not compatible"
    );
    assert_eq!(
        r.call(&["EXPIRE", "k", "100", "GT", "LT"]).err(),
        "ERR GT and LT options at the same time are not compatible"
    );
    assert_eq!(
        r.call(&["EXPIRE", "k", "100", "FOO"]).err(),
        "ERR Unsupported option FOO"
    );
    assert_eq!(
        r.call(&["EXPIRE", "k", "9223372036854775807"]).err(),
        "ERR invalid expire time in 'expire' command"
    );
    assert_eq!(r.call(&["PEXPIREAT", "k", "32503680000000"]).int(), 1);
    assert_eq!(r.call(&["PEXPIRETIME", "k"]).int(), 32503680000000);
    assert_eq!(r.call(&["EXPIRETIME", "k"]).int(), 32503680000);
    assert_eq!(r.call(&["PERSIST", "k"]).int(), 1);
    assert_eq!(r.call(&["PERSIST", "k"]).int(), 0);
    assert_eq!(r.call(&["EXPIREAT", "k", "1"]).int(), 1);
    assert_eq!(
        r.call(&["EXISTS", "k"]).int(),
        0,
        "a past deadline deletes the key"
    );
    // Lazy expiry on access.
    r.call(&["SET", "lazy", "v", "PX", "30"]);
    assert!(wait_until(Duration::from_secs(5), || r
        .call(&["GET", "lazy"])
        == Reply::Nil));
    // Active expiry reclaims keys nobody touches.
    for i in 0..500 {
        r.call(&["SET", &format!("t:{i}"), "v", "PX", "50"]);
    }
    r.call(&["SET", "keeper", "v"]);
    assert!(
        wait_until(Duration::from_secs(10), || r.call(&["DBSIZE"]).int() == 1),
        "active expiry did not reclaim keys"
    );
    let info = r.call(&["INFO", "stats"]).text();
    let expired: i64 = info
        .lines()
        .find_map(|l| l.strip_prefix("expired_keys:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(expired >= 500, "{info}");
}

#[test]
fn auth_hello_and_client_commands() {
    let node = TestNode::start_with(|s| s.requirepass = "secret".into());
    let mut r = node.raw();
    assert_eq!(
        r.call(&["GET", "k"]).err(),
        "NOAUTH Authentication required."
    );
    assert_eq!(
        r.call(&["AUTH", "wrong"]).err(),
        "WRONGPASS invalid username-password pair or user is disabled."
    );
    assert_eq!(r.call(&["AUTH", "secret"]), Reply::Simple("OK".into()));
    assert_eq!(r.call(&["PING"]), Reply::Simple("PONG".into()));
    let mut r3 = node.raw();
    assert!(r3
        .call(&["HELLO", "3"])
        .err()
        .starts_with("NOAUTH HELLO must be called with the client already authenticated"));
    let hello = r3.call(&["HELLO", "3", "AUTH", "default", "secret", "SETNAME", "me"]);
    let Reply::Map(fields) = hello else {
        panic!("HELLO 3 returns a map")
    };
    assert!(fields.contains(&(Reply::bulk("proto"), Reply::Int(3))));
    assert_eq!(r3.call(&["CLIENT", "GETNAME"]), Reply::bulk("me"));
    assert_eq!(
        r3.call(&["HELLO", "4"]).err(),
        "NOPROTO unsupported protocol version"
    );
    // RESP3 types on the wire.
    r3.call(&["HSET", "h", "f", "v"]);
    assert!(matches!(r3.call(&["HGETALL", "h"]), Reply::Map(_)));
    assert_eq!(r3.call(&["GET", "missing"]), Reply::Nil);
    let id = r.call(&["CLIENT", "ID"]).int();
    let list = r.call(&["CLIENT", "LIST"]).text();
    assert!(
        list.contains(&format!("id={id} ")) && list.contains("name=me"),
        "{list}"
    );
    assert_eq!(
        r.call(&["CLIENT", "SETNAME", "bad name"]).err(),
        "ERR Client names cannot contain spaces, newlines or special characters."
    );
    assert_eq!(
        r.call(&["CLIENT", "KILL", "ID", &id.to_string(), "SKIPME", "no"])
            .int(),
        1
    );
    assert!(r.is_closed());
    let mut r4 = node.raw();
    assert_eq!(
        r4.call(&["AUTH", "default", "secret"]),
        Reply::Simple("OK".into())
    );
    assert_eq!(r4.call(&["RESET"]), Reply::Simple("RESET".into()));
    assert_eq!(
        r4.call(&["GET", "k"]).err(),
        "NOAUTH Authentication required."
    );
    assert_eq!(r4.call(&["QUIT"]), Reply::Simple("OK".into()));
    assert!(r4.is_closed());
}

#[test]
fn server_introspection_and_config() {
    let node = TestNode::start();
    let mut r = node.raw();
    let info = r.call(&["INFO"]).text();
    for field in [
        "redis_version:",
        "connected_clients:",
        "used_memory:",
        "rdb_changes_since_last_save:",
        "total_commands_processed:",
        "role:master",
        "used_cpu_user:",
    ] {
        assert!(info.contains(field), "INFO lacks {field}");
    }
    let server_only = r.call(&["INFO", "server"]).text();
    assert!(server_only.starts_with("# Server") && !server_only.contains("# Clients"));
    assert_eq!(
        r.call(&["CONFIG", "GET", "maxclients"]).strings(),
        vec!["maxclients", "10000"]
    );
    assert_eq!(
        r.call(&["CONFIG", "SET", "maxclients", "100", "hz", "20"]),
        Reply::Simple("OK".into())
    );
    assert_eq!(r.call(&["CONFIG", "GET", "hz"]).strings(), vec!["hz", "20"]);
    assert_eq!(
        r.call(&["CONFIG", "SET", "port", "1"]).err(),
        "ERR CONFIG SET failed (possibly related to argument 'port') - can't set immutable config"
    );
    assert_eq!(
        r.call(&["CONFIG", "SET", "nope", "1"]).err(),
        "ERR Unknown option or number of arguments for CONFIG SET - 'nope'"
    );
    assert!(r
        .call(&["CONFIG", "SET", "hz", "abc"])
        .err()
        .starts_with("ERR CONFIG SET failed (possibly related to argument 'hz')"));
    assert_eq!(
        r.call(&["CONFIG", "REWRITE"]).err(),
        "ERR The server is running without a config file"
    );
    assert_eq!(r.call(&["CONFIG", "RESETSTAT"]), Reply::Simple("OK".into()));
    assert!(r.call(&["COMMAND", "COUNT"]).int() > 150);
    let info = r.call(&["COMMAND", "INFO", "get", "nosuch"]).items();
    assert_eq!(info[0].items()[0], Reply::bulk("get"));
    assert_eq!(info[0].items()[1], Reply::Int(2));
    assert_eq!(info[1], Reply::Nil);
    assert_eq!(
        r.call(&["COMMAND", "GETKEYS", "MSET", "a", "1", "b", "2"])
            .strings(),
        vec!["a", "b"]
    );
    let docs = r.call(&["COMMAND", "DOCS", "set"]).items();
    assert_eq!(docs[0], Reply::bulk("set"));
    assert_eq!(
        r.call(&["NOSUCH", "a"]).err(),
        "ERR unknown command 'NOSUCH', with args beginning with: 'a' "
    );
    assert_eq!(
        r.call(&["CONFIG", "BOGUS"]).err(),
        "ERR unknown subcommand 'BOGUS'. Try CONFIG HELP."
    );
    assert_eq!(r.call(&["TIME"]).items().len(), 2);
    assert_eq!(r.call(&["ECHO", "hi"]), Reply::bulk("hi"));
    assert_eq!(r.call(&["DEBUG", "DIGEST"]), Reply::Simple("0".repeat(40)));
    r.call(&["SET", "a", "1"]);
    let d1 = r.call(&["DEBUG", "DIGEST"]).text();
    assert_ne!(d1, "0".repeat(40));
    assert_eq!(r.call(&["DEBUG", "DIGEST-VALUE", "a"]).items().len(), 1);
    assert_eq!(r.call(&["DEBUG", "SLEEP", "0"]), Reply::Simple("OK".into()));
    assert!(r.call(&["LASTSAVE"]).int() > 0);
    assert_eq!(r.call(&["ROLE"]).items()[0], Reply::bulk("master"));
}

#[test]
fn protocol_errors_close_only_that_connection() {
    let node = TestNode::start();
    let mut bystander = node.raw();
    bystander.call(&["SET", "k", "v"]);
    // Pipelined valid commands before garbage are answered first.
    let mut r = node.raw();
    r.send_raw(b"*1\r\n$4\r\nPING\r\n*1\r\n$4\r\nPING\r\n*x\r\n");
    assert_eq!(r.read(), Reply::Simple("PONG".into()));
    assert_eq!(r.read(), Reply::Simple("PONG".into()));
    assert_eq!(
        r.read().err(),
        "ERR Protocol error: invalid multibulk length"
    );
    assert!(r.is_closed());
    let mut r = node.raw();
    r.send_raw(b"*1\r\n+PING\r\n");
    assert_eq!(r.read().err(), "ERR Protocol error: expected '$', got '+'");
    let mut r = node.raw();
    r.send_raw(b"*1\r\n$999999999999\r\n");
    assert_eq!(r.read().err(), "ERR Protocol error: invalid bulk length");
    let mut r = node.raw();
    r.send_raw(format!("{}\r\n", "a".repeat(70 * 1024)).as_bytes());
    assert_eq!(r.read().err(), "ERR Protocol error: too big inline request");
    let mut r = node.raw();
    r.send_raw(b"SET a \"unbalanced\r\n");
    assert_eq!(
        r.read().err(),
        "ERR Protocol error: unbalanced quotes in request"
    );
    // Inline commands, as telnet sends them, with quoting.
    let mut r = node.raw();
    r.send_raw(b"SET greeting \"hello world\"\r\nGET greeting\r\n\r\nPING\r\n");
    assert_eq!(r.read(), Reply::Simple("OK".into()));
    assert_eq!(r.read(), Reply::bulk("hello world"));
    assert_eq!(r.read(), Reply::Simple("PONG".into()));
    // A deep pipeline split at awkward places arrives whole.
    let mut r = node.raw();
    let mut wire = Vec::new();
    for i in 0..2000 {
        wire.extend_from_slice(
            format!(
                "*3\r\n$3\r\nSET\r\n${}\r\np{i}\r\n$1\r\nx\r\n",
                format!("p{i}").len()
            )
            .as_bytes(),
        );
    }
    for chunk in wire.chunks(333) {
        r.send_raw(chunk);
    }
    for _ in 0..2000 {
        assert_eq!(r.read(), Reply::Simple("OK".into()));
    }
    assert_eq!(bystander.call(&["DBSIZE"]).int(), 2002);
    // Oversized bulk after CONFIG SET proto-max-bulk-len.
    bystander.call(&["CONFIG", "SET", "proto-max-bulk-len", "2048"]);
    let mut r = node.raw();
    r.send_raw(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$4096\r\n");
    assert_eq!(r.read().err(), "ERR Protocol error: invalid bulk length");
    assert_eq!(bystander.call(&["PING"]), Reply::Simple("PONG".into()));
}

#[test]
fn snapshot_survives_restart_with_ttls() {
    let node = TestNode::start();
    let mut c = node.client();
    let _: () = c.set("plain", "value").unwrap();
    let _: () = redis::cmd("SET")
        .arg("ttl")
        .arg("v")
        .arg("EX")
        .arg(1000)
        .query(&mut c)
        .unwrap();
    let _: () = c.rpush("list", &["a", "b", "c"]).unwrap();
    let _: () = c
        .hset_multiple("hash", &[("f1", "v1"), ("f2", "v2")])
        .unwrap();
    let _: () = c.sadd("set", &["x", "y"]).unwrap();
    let _: () = c
        .zadd_multiple("zset", &[(1.5, "a"), (f64::NEG_INFINITY, "b")])
        .unwrap();
    let _: () = redis::cmd("SELECT").arg(5).query(&mut c).unwrap();
    let _: () = c.set("in-db5", "x").unwrap();
    for i in 0..3000 {
        let _: () = c.rpush("biglist", i).unwrap();
    }
    let digest: String = redis::cmd("DEBUG").arg("DIGEST").query(&mut c).unwrap();
    assert_eq!(cmd(&mut c, &["SAVE"]).unwrap(), redis::Value::Okay);
    drop(c);
    let dir = node.stop();
    let node = TestNode::try_start_in(dir, |_| {}).expect("restart");
    let mut c = node.client();
    let after: String = redis::cmd("DEBUG").arg("DIGEST").query(&mut c).unwrap();
    assert_eq!(after, digest);
    let ttl: i64 = c.ttl("ttl").unwrap();
    assert!(ttl > 900, "ttl {ttl}");
    assert_eq!(
        c.lrange::<_, Vec<String>>("list", 0, -1).unwrap(),
        vec!["a", "b", "c"]
    );
    let score: f64 = c.zscore("zset", "b").unwrap();
    assert_eq!(score, f64::NEG_INFINITY);
}

#[test]
fn bgsave_and_save_rules_write_snapshots() {
    let node = TestNode::start_with(|s| s.save = "1 1".parse().unwrap());
    let mut r = node.raw();
    r.call(&["SET", "a", "1"]);
    // The `save 1 1` rule fires within a couple of seconds.
    assert!(wait_until(Duration::from_secs(10), || r
        .call(&["INFO", "persistence"])
        .text()
        .contains("rdb_changes_since_last_save:0")));
    assert!(node
        .dir
        .as_ref()
        .unwrap()
        .path()
        .join("dump.quire")
        .exists());
    r.call(&["SET", "b", "2"]);
    assert_eq!(
        r.call(&["BGSAVE"]),
        Reply::Simple("Background saving started".into())
    );
    assert!(wait_until(Duration::from_secs(10), || r
        .call(&["INFO", "persistence"])
        .text()
        .contains("rdb_bgsave_in_progress:0")));
    let dir = node.stop();
    let node = TestNode::try_start_in(dir, |_| {}).expect("restart");
    assert_eq!(
        node.raw().call(&["MGET", "a", "b"]),
        Reply::Array(vec![Reply::bulk("1"), Reply::bulk("2")])
    );
}

#[test]
fn corrupt_or_truncated_snapshot_is_refused() {
    let node = TestNode::start();
    let mut r = node.raw();
    for i in 0..100 {
        r.call(&["SET", &format!("k{i}"), "v"]);
    }
    r.call(&["SAVE"]);
    let dir = node.stop();
    let path = dir.path().join("dump.quire");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 10]).unwrap();
    let err = TestNode::try_start_in(dir, |_| {})
        .err()
        .expect("truncated snapshot refused");
    assert!(err.contains("snapshot"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let mut corrupt = bytes.clone();
    let mid = corrupt.len() / 2;
    corrupt[mid] ^= 0xff;
    std::fs::write(dir.path().join("dump.quire"), &corrupt).unwrap();
    assert!(TestNode::try_start_in(dir, |_| {}).is_err());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("dump.quire"), b"REDIS0011 not ours").unwrap();
    let err = TestNode::try_start_in(dir, |_| {}).err().unwrap();
    assert!(err.contains("not a Quire snapshot"), "{err}");
}

#[test]
fn maxclients_is_enforced() {
    let node = TestNode::start_with(|s| s.maxclients = 2);
    let mut a = node.raw();
    let mut b = node.raw();
    a.call(&["PING"]);
    b.call(&["PING"]);
    let mut c = node.raw();
    assert_eq!(c.read().err(), "ERR max number of clients reached");
    drop(a);
    assert!(wait_until(Duration::from_secs(5), || {
        let mut d = node.raw();
        d.send(&["PING"]);
        d.read() == Reply::Simple("PONG".into())
    }));
}
