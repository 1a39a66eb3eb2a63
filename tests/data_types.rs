//! Hashes, lists (blocking included), sets, sorted sets, transactions and
//! pub/sub through real sockets.

mod common;

use common::{wait_until, Reply, TestNode};
use std::time::{Duration, Instant};

fn ok() -> Reply {
    Reply::Simple("OK".into())
}

#[test]
fn hashes() {
    let node = TestNode::start();
    let mut r = node.raw();
    assert_eq!(r.call(&["HSET", "h", "a", "1", "b", "2"]).int(), 2);
    assert_eq!(r.call(&["HSET", "h", "a", "10", "c", "3"]).int(), 1);
    assert_eq!(
        r.call(&["HSET", "h", "a"]).err(),
        "ERR wrong number of arguments for 'hset' command"
    );
    assert_eq!(r.call(&["HMSET", "h", "d", "4"]), ok());
    assert_eq!(r.call(&["HSETNX", "h", "a", "x"]).int(), 0);
    assert_eq!(r.call(&["HGET", "h", "a"]), Reply::bulk("10"));
    assert_eq!(
        r.call(&["HMGET", "h", "a", "zz"]),
        Reply::Array(vec![Reply::bulk("10"), Reply::Nil])
    );
    assert_eq!(r.call(&["HLEN", "h"]).int(), 4);
    assert_eq!(r.call(&["HSTRLEN", "h", "a"]).int(), 2);
    assert_eq!(r.call(&["HEXISTS", "h", "zz"]).int(), 0);
    assert_eq!(r.call(&["HKEYS", "h"]).strings().len(), 4);
    assert_eq!(r.call(&["HVALS", "h"]).strings().len(), 4);
    assert_eq!(r.call(&["HGETALL", "h"]).items().len(), 8);
    assert_eq!(r.call(&["HINCRBY", "h", "a", "5"]).int(), 15);
    assert_eq!(
        r.call(&["HINCRBY", "h", "a", "x"]).err(),
        "ERR value is not an integer or out of range"
    );
    r.call(&["HSET", "h", "s", "str"]);
    assert_eq!(
        r.call(&["HINCRBY", "h", "s", "1"]).err(),
        "ERR hash value is not an integer"
    );
    assert_eq!(
        r.call(&["HINCRBYFLOAT", "h", "f", "1.5"]),
        Reply::bulk("1.5")
    );
    assert_eq!(
        r.call(&["HINCRBYFLOAT", "h", "s", "1"]).err(),
        "ERR hash value is not a float"
    );
    assert_eq!(r.call(&["HRANDFIELD", "h", "3"]).items().len(), 3);
    assert_eq!(r.call(&["HRANDFIELD", "h", "-20"]).items().len(), 20);
    assert_eq!(
        r.call(&["HRANDFIELD", "h", "2", "WITHVALUES"])
            .items()
            .len(),
        4
    );
    assert_eq!(r.call(&["HRANDFIELD", "nope"]), Reply::Nil);
    let mut fields = std::collections::HashSet::new();
    let mut cursor = "0".to_string();
    loop {
        let reply = r.call(&["HSCAN", "h", &cursor, "COUNT", "2"]).items();
        cursor = reply[0].text();
        for pair in reply[1].strings().chunks(2) {
            fields.insert(pair[0].clone());
        }
        if cursor == "0" {
            break;
        }
    }
    assert_eq!(fields.len(), 6);
    assert_eq!(
        r.call(&["HDEL", "h", "a", "b", "c", "d", "s", "f", "nope"])
            .int(),
        6
    );
    assert_eq!(r.call(&["EXISTS", "h"]).int(), 0, "empty hash is deleted");
    r.call(&["SET", "str", "x"]);
    assert_eq!(
        r.call(&["HGET", "str", "a"]).err(),
        "WRONGTYPE Operation against a key holding the wrong kind of value"
    );
}

#[test]
fn lists() {
    let node = TestNode::start();
    let mut r = node.raw();
    assert_eq!(r.call(&["RPUSH", "l", "a", "b", "c"]).int(), 3);
    assert_eq!(r.call(&["LPUSH", "l", "z"]).int(), 4);
    assert_eq!(r.call(&["LPUSHX", "nope", "x"]).int(), 0);
    assert_eq!(
        r.call(&["LRANGE", "l", "0", "-1"]).strings(),
        vec!["z", "a", "b", "c"]
    );
    assert_eq!(
        r.call(&["LRANGE", "l", "-2", "100"]).strings(),
        vec!["b", "c"]
    );
    assert_eq!(r.call(&["LINDEX", "l", "-1"]), Reply::bulk("c"));
    assert_eq!(r.call(&["LINDEX", "l", "10"]), Reply::Nil);
    assert_eq!(r.call(&["LSET", "l", "1", "A"]), ok());
    assert_eq!(
        r.call(&["LSET", "l", "10", "A"]).err(),
        "ERR index out of range"
    );
    assert_eq!(r.call(&["LSET", "nope", "0", "A"]).err(), "ERR no such key");
    assert_eq!(r.call(&["LINSERT", "l", "BEFORE", "b", "x"]).int(), 5);
    assert_eq!(r.call(&["LINSERT", "l", "AFTER", "nope", "x"]).int(), -1);
    assert_eq!(r.call(&["RPUSH", "l", "x", "x"]).int(), 7);
    assert_eq!(r.call(&["LPOS", "l", "x"]).int(), 2);
    assert_eq!(r.call(&["LPOS", "l", "x", "RANK", "-1"]).int(), 6);
    assert_eq!(
        r.call(&["LPOS", "l", "x", "COUNT", "0"]).items(),
        vec![Reply::Int(2), Reply::Int(5), Reply::Int(6)]
    );
    assert!(r
        .call(&["LPOS", "l", "x", "RANK", "0"])
        .err()
        .starts_with("ERR RANK can't be zero"));
    assert_eq!(r.call(&["LREM", "l", "-1", "x"]).int(), 1);
    assert_eq!(r.call(&["LREM", "l", "0", "x"]).int(), 2);
    assert_eq!(r.call(&["LTRIM", "l", "1", "-1"]), ok());
    assert_eq!(
        r.call(&["LRANGE", "l", "0", "-1"]).strings(),
        vec!["A", "b", "c"]
    );
    assert_eq!(r.call(&["LPOP", "l"]), Reply::bulk("A"));
    assert_eq!(r.call(&["RPOP", "l", "5"]).strings(), vec!["c", "b"]);
    assert_eq!(r.call(&["EXISTS", "l"]).int(), 0);
    assert_eq!(r.call(&["LPOP", "l", "2"]), Reply::Nil);
    assert_eq!(
        r.call(&["LPOP", "l", "-1"]).err(),
        "ERR value is out of range, must be positive"
    );
    r.call(&["RPUSH", "src", "1", "2", "3"]);
    assert_eq!(
        r.call(&["LMOVE", "src", "dst", "LEFT", "RIGHT"]),
        Reply::bulk("1")
    );
    assert_eq!(r.call(&["RPOPLPUSH", "src", "dst"]), Reply::bulk("3"));
    assert_eq!(
        r.call(&["LRANGE", "dst", "0", "-1"]).strings(),
        vec!["3", "1"]
    );
    assert_eq!(
        r.call(&["LMOVE", "src", "src", "LEFT", "RIGHT"]),
        Reply::bulk("2")
    );
    assert_eq!(
        r.call(&["LMPOP", "2", "nope", "dst", "LEFT", "COUNT", "5"]),
        Reply::Array(vec![
            Reply::bulk("dst"),
            Reply::Array(vec![Reply::bulk("3"), Reply::bulk("1")])
        ])
    );
    assert_eq!(
        r.call(&["LMPOP", "0", "a", "LEFT"]).err(),
        "ERR numkeys should be greater than 0"
    );
    r.call(&["SET", "str", "v"]);
    assert_eq!(
        r.call(&["LMOVE", "src", "str", "LEFT", "LEFT"]).err(),
        "WRONGTYPE Operation against a key holding the wrong kind of value"
    );
    assert_eq!(
        r.call(&["LLEN", "src"]).int(),
        1,
        "a failed move loses nothing"
    );
}

#[test]
fn blocking_pops_wake_in_fifo_order() {
    let node = TestNode::start();
    let mut waiters = Vec::new();
    for i in 0..3 {
        let mut c = node.raw();
        c.send(&["BLPOP", "q", "other", "10"]);
        // Each waiter is registered before the next, so the order is known.
        let mut probe = node.raw();
        assert!(wait_until(Duration::from_secs(5), || probe
            .call(&["INFO", "clients"])
            .text()
            .contains(&format!("blocked_clients:{}", i + 1))));
        waiters.push(c);
    }
    let mut pusher = node.raw();
    assert_eq!(pusher.call(&["RPUSH", "q", "first", "second"]).int(), 2);
    assert_eq!(waiters[0].read().strings(), vec!["q", "first"]);
    assert_eq!(waiters[1].read().strings(), vec!["q", "second"]);
    assert_eq!(
        pusher.call(&["LLEN", "q"]).int(),
        0,
        "elements went to the waiters"
    );
    assert_eq!(pusher.call(&["LPUSH", "other", "third"]).int(), 1);
    assert_eq!(waiters[2].read().strings(), vec!["other", "third"]);
    // Timeout answers nil; a pipelined command after it still runs, in order.
    let mut t = node.raw();
    let start = Instant::now();
    t.send_raw(b"*3\r\n$5\r\nBRPOP\r\n$1\r\nx\r\n$3\r\n0.2\r\n*1\r\n$4\r\nPING\r\n");
    assert_eq!(t.read(), Reply::Nil);
    assert_eq!(t.read(), Reply::Simple("PONG".into()));
    assert!(start.elapsed() >= Duration::from_millis(150));
    assert_eq!(
        t.call(&["BLPOP", "x", "-1"]).err(),
        "ERR timeout is negative"
    );
    assert_eq!(
        t.call(&["BLPOP", "x", "abc"]).err(),
        "ERR timeout is not a float or out of range"
    );
    // BLMOVE woken by a push; inside MULTI blocking commands do not block.
    let mut m = node.raw();
    m.send(&["BLMOVE", "from", "to", "RIGHT", "LEFT", "10"]);
    assert!(wait_until(Duration::from_secs(5), || pusher
        .call(&["INFO", "clients"])
        .text()
        .contains("blocked_clients:1")));
    pusher.call(&["RPUSH", "from", "moved"]);
    assert_eq!(m.read(), Reply::bulk("moved"));
    assert_eq!(
        pusher.call(&["LRANGE", "to", "0", "-1"]).strings(),
        vec!["moved"]
    );
    assert_eq!(m.call(&["MULTI"]), ok());
    assert_eq!(
        m.call(&["BLPOP", "empty", "0"]),
        Reply::Simple("QUEUED".into())
    );
    assert_eq!(m.call(&["EXEC"]), Reply::Array(vec![Reply::Nil]));
    // Sorted-set blocking pops.
    let mut z = node.raw();
    z.send(&["BZPOPMIN", "zq", "10"]);
    assert!(wait_until(Duration::from_secs(5), || pusher
        .call(&["INFO", "clients"])
        .text()
        .contains("blocked_clients:1")));
    pusher.call(&["ZADD", "zq", "2", "b", "1", "a"]);
    assert_eq!(z.read().strings(), vec!["zq", "a", "1"]);
    // A disconnected waiter does not swallow elements.
    let mut gone = node.raw();
    gone.send(&["BLPOP", "lost", "10"]);
    assert!(wait_until(Duration::from_secs(5), || pusher
        .call(&["INFO", "clients"])
        .text()
        .contains("blocked_clients:1")));
    drop(gone);
    assert!(wait_until(Duration::from_secs(5), || pusher
        .call(&["INFO", "clients"])
        .text()
        .contains("blocked_clients:0")));
    pusher.call(&["RPUSH", "lost", "kept"]);
    assert_eq!(pusher.call(&["LLEN", "lost"]).int(), 1);
}

#[test]
fn sets() {
    let node = TestNode::start();
    let mut r = node.raw();
    assert_eq!(r.call(&["SADD", "a", "1", "2", "3", "3"]).int(), 3);
    r.call(&["SADD", "b", "2", "3", "4"]);
    assert_eq!(r.call(&["SCARD", "a"]).int(), 3);
    assert_eq!(r.call(&["SISMEMBER", "a", "1"]).int(), 1);
    assert_eq!(
        r.call(&["SMISMEMBER", "a", "1", "9"]).items(),
        vec![Reply::Int(1), Reply::Int(0)]
    );
    let mut inter = r.call(&["SINTER", "a", "b"]).strings();
    inter.sort();
    assert_eq!(inter, vec!["2", "3"]);
    assert_eq!(r.call(&["SUNION", "a", "b"]).items().len(), 4);
    assert_eq!(r.call(&["SDIFF", "a", "b"]).strings(), vec!["1"]);
    assert_eq!(r.call(&["SINTERSTORE", "c", "a", "b"]).int(), 2);
    assert_eq!(r.call(&["SUNIONSTORE", "c", "a", "b"]).int(), 4);
    assert_eq!(r.call(&["SDIFFSTORE", "c", "a", "nope"]).int(), 3);
    assert_eq!(
        r.call(&["SINTERCARD", "2", "a", "b", "LIMIT", "1"]).int(),
        1
    );
    assert_eq!(
        r.call(&["SINTERCARD", "0", "a"]).err(),
        "ERR numkeys should be greater than 0"
    );
    assert_eq!(r.call(&["SMOVE", "a", "b", "1"]).int(), 1);
    assert_eq!(r.call(&["SMOVE", "a", "b", "nope"]).int(), 0);
    assert_eq!(r.call(&["SRANDMEMBER", "b", "-10"]).items().len(), 10);
    assert_eq!(r.call(&["SRANDMEMBER", "b", "10"]).items().len(), 4);
    assert_eq!(r.call(&["SPOP", "b", "2"]).items().len(), 2);
    assert_eq!(r.call(&["SCARD", "b"]).int(), 2);
    assert_eq!(
        r.call(&["SPOP", "b", "-1"]).err(),
        "ERR value is out of range, must be positive"
    );
    r.call(&["SREM", "b", "1", "2", "3", "4"]);
    assert_eq!(r.call(&["EXISTS", "b"]).int(), 0);
    for i in 0..100 {
        r.call(&["SADD", "big", &i.to_string()]);
    }
    assert_eq!(
        r.call(&["OBJECT", "ENCODING", "big"]),
        Reply::bulk("intset")
    );
    let mut seen = std::collections::HashSet::new();
    let mut cursor = "0".to_string();
    loop {
        let reply = r.call(&["SSCAN", "big", &cursor, "MATCH", "1*"]).items();
        cursor = reply[0].text();
        seen.extend(reply[1].strings());
        if cursor == "0" {
            break;
        }
    }
    assert_eq!(seen.len(), 11);
}

#[test]
fn sorted_sets() {
    let node = TestNode::start();
    let mut r = node.raw();
    assert_eq!(
        r.call(&["ZADD", "z", "1", "a", "2", "b", "3", "c"]).int(),
        3
    );
    assert_eq!(
        r.call(&["ZADD", "z", "NX", "XX", "1", "a"]).err(),
        "ERR XX and NX options at the same time are not compatible"
    );
    assert_eq!(
        r.call(&["ZADD", "z", "GT", "LT", "1", "a"]).err(),
        "ERR GT, LT, and/or NX options at the same time are not compatible"
    );
    assert_eq!(
        r.call(&["ZADD", "z", "INCR", "1", "a", "2", "b"]).err(),
        "ERR INCR option supports a single increment-element pair"
    );
    assert_eq!(
        r.call(&["ZADD", "z", "x", "a"]).err(),
        "ERR value is not a valid float"
    );
    assert_eq!(
        r.call(&["ZADD", "z", "CH", "GT", "0", "a", "5", "b", "4", "d"])
            .int(),
        2
    );
    assert_eq!(
        r.call(&["ZADD", "z", "XX", "INCR", "1", "nope"]),
        Reply::Nil
    );
    assert_eq!(r.call(&["ZADD", "z", "INCR", "10", "a"]), Reply::bulk("11"));
    assert_eq!(r.call(&["ZINCRBY", "z", "-10", "a"]), Reply::bulk("1"));
    assert_eq!(
        r.call(&["ZRANGE", "z", "0", "-1", "WITHSCORES"]).strings(),
        vec!["a", "1", "c", "3", "d", "4", "b", "5"]
    );
    assert_eq!(
        r.call(&["ZRANGE", "z", "(1", "4", "BYSCORE"]).strings(),
        vec!["c", "d"]
    );
    assert_eq!(
        r.call(&["ZRANGE", "z", "+inf", "-inf", "BYSCORE", "REV", "LIMIT", "1", "2"])
            .strings(),
        vec!["d", "c"]
    );
    assert_eq!(
        r.call(&["ZRANGE", "z", "0", "1", "LIMIT", "0", "1"]).err(),
        "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX"
    );
    assert_eq!(r.call(&["ZREVRANGE", "z", "0", "0"]).strings(), vec!["b"]);
    assert_eq!(
        r.call(&["ZRANGEBYSCORE", "z", "-inf", "(3", "WITHSCORES"])
            .strings(),
        vec!["a", "1"]
    );
    assert_eq!(
        r.call(&["ZREVRANGEBYSCORE", "z", "5", "3", "LIMIT", "0", "2"])
            .strings(),
        vec!["b", "d"]
    );
    assert_eq!(
        r.call(&["ZRANGEBYSCORE", "z", "x", "1"]).err(),
        "ERR min or max is not a float"
    );
    assert_eq!(r.call(&["ZCARD", "z"]).int(), 4);
    assert_eq!(r.call(&["ZSCORE", "z", "c"]), Reply::bulk("3"));
    assert_eq!(
        r.call(&["ZMSCORE", "z", "c", "nope"]),
        Reply::Array(vec![Reply::bulk("3"), Reply::Nil])
    );
    assert_eq!(r.call(&["ZCOUNT", "z", "(1", "+inf"]).int(), 3);
    assert_eq!(r.call(&["ZRANK", "z", "d"]).int(), 2);
    assert_eq!(r.call(&["ZREVRANK", "z", "d"]).int(), 1);
    assert_eq!(
        r.call(&["ZRANK", "z", "d", "WITHSCORE"]).items(),
        vec![Reply::Int(2), Reply::bulk("4")]
    );
    assert_eq!(r.call(&["ZRANK", "z", "nope"]), Reply::Nil);
    r.call(&["ZADD", "lex", "0", "a", "0", "b", "0", "c", "0", "d"]);
    assert_eq!(
        r.call(&["ZRANGEBYLEX", "lex", "[b", "(d"]).strings(),
        vec!["b", "c"]
    );
    assert_eq!(
        r.call(&["ZREVRANGEBYLEX", "lex", "+", "-", "LIMIT", "0", "2"])
            .strings(),
        vec!["d", "c"]
    );
    assert_eq!(r.call(&["ZLEXCOUNT", "lex", "-", "+"]).int(), 4);
    assert_eq!(
        r.call(&["ZRANGEBYLEX", "lex", "b", "d"]).err(),
        "ERR min or max not valid string range item"
    );
    assert_eq!(r.call(&["ZREMRANGEBYLEX", "lex", "[a", "[b"]).int(), 2);
    assert_eq!(r.call(&["ZRANGESTORE", "dst", "z", "0", "1"]).int(), 2);
    assert_eq!(
        r.call(&["ZRANGE", "dst", "0", "-1"]).strings(),
        vec!["a", "c"]
    );
    assert_eq!(r.call(&["ZPOPMIN", "dst"]).strings(), vec!["a", "1"]);
    assert_eq!(
        r.call(&["ZPOPMAX", "z", "2"]).strings(),
        vec!["b", "5", "d", "4"]
    );
    r.call(&["ZADD", "z", "5", "b", "4", "d"]);
    assert_eq!(
        r.call(&["ZMPOP", "2", "nope", "z", "MIN", "COUNT", "1"]),
        Reply::Array(vec![
            Reply::bulk("z"),
            Reply::Array(vec![Reply::Array(vec![Reply::bulk("a"), Reply::bulk("1")])])
        ])
    );
    r.call(&["ZADD", "z", "1", "a"]);
    assert_eq!(r.call(&["ZREMRANGEBYRANK", "z", "0", "0"]).int(), 1);
    assert_eq!(r.call(&["ZREMRANGEBYSCORE", "z", "4", "(5"]).int(), 1);
    r.call(&["ZADD", "z1", "1", "a", "2", "b"]);
    r.call(&["ZADD", "z2", "10", "b", "20", "c"]);
    r.call(&["SADD", "s", "a"]);
    assert_eq!(
        r.call(&["ZUNION", "2", "z1", "z2", "WITHSCORES"]).strings(),
        vec!["a", "1", "b", "12", "c", "20"]
    );
    assert_eq!(
        r.call(&["ZINTER", "2", "z1", "z2", "AGGREGATE", "MAX", "WITHSCORES"])
            .strings(),
        vec!["b", "10"]
    );
    assert_eq!(
        r.call(&["ZUNION", "2", "z1", "s", "WEIGHTS", "2", "3", "WITHSCORES"])
            .strings(),
        vec!["b", "4", "a", "5"]
    );
    assert_eq!(r.call(&["ZDIFF", "2", "z1", "z2"]).strings(), vec!["a"]);
    assert_eq!(r.call(&["ZUNIONSTORE", "out", "2", "z1", "z2"]).int(), 3);
    assert_eq!(r.call(&["ZINTERSTORE", "out", "2", "z1", "z2"]).int(), 1);
    assert_eq!(r.call(&["ZDIFFSTORE", "out", "2", "z1", "z2"]).int(), 1);
    assert_eq!(r.call(&["ZINTERCARD", "2", "z1", "z2"]).int(), 1);
    assert_eq!(
        r.call(&["ZUNIONSTORE", "out", "0", "z1"]).err(),
        "ERR at least 1 input key is needed for 'zunionstore' command"
    );
    assert_eq!(r.call(&["ZRANDMEMBER", "z2", "-5"]).items().len(), 5);
    assert_eq!(
        r.call(&["ZRANDMEMBER", "z2", "5", "WITHSCORES"])
            .items()
            .len(),
        4
    );
    assert_eq!(r.call(&["ZSCAN", "z2", "0"]).items()[1].items().len(), 4);
    // Infinite scores and large sets stay ordered.
    r.call(&["ZADD", "inf", "-inf", "lo", "+inf", "hi", "0", "mid"]);
    assert_eq!(
        r.call(&["ZRANGE", "inf", "0", "-1", "WITHSCORES"])
            .strings(),
        vec!["lo", "-inf", "mid", "0", "hi", "inf"]
    );
    let mut wire = Vec::new();
    for i in 0..5000 {
        wire.extend_from_slice(
            format!(
                "*4\r\n$4\r\nZADD\r\n$3\r\nbig\r\n${}\r\n{i}\r\n${}\r\nm{i}\r\n",
                i.to_string().len(),
                format!("m{i}").len()
            )
            .as_bytes(),
        );
    }
    r.send_raw(&wire);
    for _ in 0..5000 {
        r.read();
    }
    assert_eq!(r.call(&["ZRANK", "big", "m4321"]).int(), 4321);
    assert_eq!(
        r.call(&["ZRANGE", "big", "2500", "2501"]).strings(),
        vec!["m2500", "m2501"]
    );
    assert_eq!(
        r.call(&["OBJECT", "ENCODING", "big"]),
        Reply::bulk("skiplist")
    );
    let mut r3 = node.raw();
    r3.call(&["HELLO", "3"]);
    assert_eq!(r3.call(&["ZSCORE", "z1", "a"]), Reply::Double("1".into()));
    assert_eq!(
        r3.call(&["ZRANGE", "z1", "0", "-1", "WITHSCORES"]),
        Reply::Array(vec![
            Reply::Array(vec![Reply::bulk("a"), Reply::Double("1".into())]),
            Reply::Array(vec![Reply::bulk("b"), Reply::Double("2".into())])
        ])
    );
}

#[test]
fn transactions_and_watch_races() {
    let node = TestNode::start();
    let mut a = node.raw();
    let mut b = node.raw();
    assert_eq!(a.call(&["MULTI"]), ok());
    assert_eq!(
        a.call(&["MULTI"]).err(),
        "ERR MULTI calls can not be nested"
    );
    assert_eq!(a.call(&["SET", "k", "1"]), Reply::Simple("QUEUED".into()));
    assert_eq!(a.call(&["INCR", "k"]), Reply::Simple("QUEUED".into()));
    assert_eq!(a.call(&["LPUSH", "k", "x"]), Reply::Simple("QUEUED".into()));
    assert_eq!(
        a.call(&["EXEC"]),
        Reply::Array(vec![
            ok(),
            Reply::Int(2),
            Reply::Error(
                "WRONGTYPE Operation against a key holding the wrong kind of value".into()
            )
        ])
    );
    assert_eq!(a.call(&["EXEC"]).err(), "ERR EXEC without MULTI");
    assert_eq!(a.call(&["DISCARD"]).err(), "ERR DISCARD without MULTI");
    // A queueing error aborts the whole transaction.
    a.call(&["MULTI"]);
    a.call(&["SET", "k", "5"]);
    assert!(a
        .call(&["NOSUCHCMD"])
        .err()
        .starts_with("ERR unknown command"));
    assert_eq!(
        a.call(&["EXEC"]).err(),
        "EXECABORT Transaction discarded because of previous errors."
    );
    assert_eq!(b.call(&["GET", "k"]), Reply::bulk("2"));
    // WATCH: another client's write aborts EXEC.
    assert_eq!(a.call(&["WATCH", "k"]), ok());
    b.call(&["SET", "k", "changed"]);
    a.call(&["MULTI"]);
    a.call(&["SET", "k", "mine"]);
    assert_eq!(a.call(&["EXEC"]), Reply::Nil);
    assert_eq!(b.call(&["GET", "k"]), Reply::bulk("changed"));
    // Untouched watch commits; UNWATCH forgets; FLUSHALL and expiry count as writes.
    a.call(&["WATCH", "k"]);
    a.call(&["MULTI"]);
    a.call(&["SET", "k", "mine"]);
    assert_eq!(a.call(&["EXEC"]), Reply::Array(vec![ok()]));
    a.call(&["WATCH", "k"]);
    b.call(&["FLUSHALL"]);
    a.call(&["MULTI"]);
    a.call(&["PING"]);
    assert_eq!(a.call(&["EXEC"]), Reply::Nil);
    b.call(&["SET", "e", "v", "PX", "50"]);
    a.call(&["WATCH", "e"]);
    std::thread::sleep(Duration::from_millis(80));
    a.call(&["MULTI"]);
    a.call(&["PING"]);
    assert_eq!(
        a.call(&["EXEC"]),
        Reply::Nil,
        "a watched key that expired aborts EXEC"
    );
    assert_eq!(a.call(&["MULTI"]), ok());
    assert_eq!(
        a.call(&["WATCH", "x"]).err(),
        "ERR WATCH inside MULTI is not allowed"
    );
    assert_eq!(a.call(&["DISCARD"]), ok());
    // Concurrent optimistic increments: every successful EXEC counts once.
    b.call(&["SET", "counter", "0"]);
    let port = node.port;
    let workers: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(move || {
                let mut c = common::RawClient::connect(port);
                let mut committed = 0;
                for _ in 0..50 {
                    loop {
                        c.call(&["WATCH", "counter"]);
                        let v: i64 = c.call(&["GET", "counter"]).text().parse().unwrap();
                        c.call(&["MULTI"]);
                        c.call(&["SET", "counter", &(v + 1).to_string()]);
                        if c.call(&["EXEC"]) != Reply::Nil {
                            committed += 1;
                            break;
                        }
                    }
                }
                committed
            })
        })
        .collect();
    let total: i64 = workers.into_iter().map(|w| w.join().unwrap()).sum();
    assert_eq!(total, 200);
    assert_eq!(b.call(&["GET", "counter"]), Reply::bulk("200"));
}

#[test]
fn pubsub_resp2_and_resp3() {
    let node = TestNode::start();
    let mut sub = node.raw();
    sub.send(&["SUBSCRIBE", "news", "sports"]);
    assert_eq!(
        sub.read(),
        Reply::Array(vec![
            Reply::bulk("subscribe"),
            Reply::bulk("news"),
            Reply::Int(1)
        ])
    );
    assert_eq!(
        sub.read(),
        Reply::Array(vec![
            Reply::bulk("subscribe"),
            Reply::bulk("sports"),
            Reply::Int(2)
        ])
    );
    assert_eq!(sub.call(&["GET", "x"]).err(), "ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context");
    assert_eq!(
        sub.call(&["PING"]),
        Reply::Array(vec![Reply::bulk("pong"), Reply::bulk("")])
    );
    let mut psub = node.raw();
    psub.call(&["HELLO", "3"]);
    assert_eq!(
        psub.call(&["PSUBSCRIBE", "n*"]),
        Reply::Push(vec![
            Reply::bulk("psubscribe"),
            Reply::bulk("n*"),
            Reply::Int(1)
        ])
    );
    // RESP3 clients may run normal commands while subscribed.
    assert_eq!(psub.call(&["SET", "k", "v"]), ok());
    let mut publisher = node.raw();
    assert_eq!(publisher.call(&["PUBLISH", "news", "hello"]).int(), 2);
    assert_eq!(
        sub.read(),
        Reply::Array(vec![
            Reply::bulk("message"),
            Reply::bulk("news"),
            Reply::bulk("hello")
        ])
    );
    assert_eq!(
        psub.read(),
        Reply::Push(vec![
            Reply::bulk("pmessage"),
            Reply::bulk("n*"),
            Reply::bulk("news"),
            Reply::bulk("hello")
        ])
    );
    assert_eq!(
        publisher
            .call(&["PUBSUB", "NUMSUB", "news", "none"])
            .items(),
        vec![
            Reply::bulk("news"),
            Reply::Int(1),
            Reply::bulk("none"),
            Reply::Int(0)
        ]
    );
    assert_eq!(publisher.call(&["PUBSUB", "NUMPAT"]).int(), 1);
    let mut channels = publisher.call(&["PUBSUB", "CHANNELS"]).strings();
    channels.sort();
    assert_eq!(channels, vec!["news", "sports"]);
    sub.send(&["UNSUBSCRIBE"]);
    let mut acks = [sub.read(), sub.read()];
    acks.sort_by_key(|r| format!("{r:?}"));
    assert_eq!(acks[0].items()[0], Reply::bulk("unsubscribe"));
    assert_eq!(
        sub.call(&["GET", "k"]),
        Reply::bulk("v"),
        "back to normal after unsubscribing from all"
    );
    drop(psub);
    assert!(wait_until(Duration::from_secs(5), || publisher
        .call(&["PUBSUB", "NUMPAT"])
        .int()
        == 0));
    assert_eq!(publisher.call(&["PUBLISH", "news", "nobody"]).int(), 0);
}
