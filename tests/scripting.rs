//! Lua scripting through real clients: redis-py's `Lock` (its release and
//! extend are Lua scripts) and `register_script` (EVALSHA, falling back to
//! EVAL on NOSCRIPT), and scripts' writes reaching a replica as effects.

mod common;

use common::{wait_until, TestNode};
use std::time::Duration;

const REDIS_PY: &str = r#"
import sys, redis
r = redis.Redis(host="127.0.0.1", port=int(sys.argv[1]), socket_timeout=10)
lock = r.lock("resource", timeout=30)
assert lock.acquire(blocking=False)
assert r.exists("resource") == 1
assert not r.lock("resource", timeout=30).acquire(blocking=False)
lock.extend(10)
lock.release()
assert r.exists("resource") == 0
incr = r.register_script("return redis.call('INCRBY', KEYS[1], ARGV[1])")
r.script_flush()
assert incr(keys=["counter"], args=[5]) == 5
assert incr(keys=["counter"], args=[2]) == 7
multi = r.register_script("local a = redis.call('GET', KEYS[1]) return {a, ARGV[1], 3}")
assert multi(keys=["counter"], args=["x"]) == [b"7", b"x", 3]
try:
    r.eval("return redis.call('nosuchcommand')", 0)
    raise SystemExit("no error")
except redis.ResponseError as e:
    assert "Unknown Redis command called from script" in str(e), str(e)
print("ok")
"#;

#[test]
fn redis_py_lock_and_registered_scripts_work() {
    let node = TestNode::start();
    common::run_python(REDIS_PY, node.port);
}

#[test]
fn script_effects_replicate_and_replicas_need_no_script_cache() {
    let (_pki, primary, replica) = common::primary_and_replica();
    let mut p = primary.raw();
    // Randomness and time inside the script: the replica gets the effects.
    let sha = p
        .call(&[
            "SCRIPT",
            "LOAD",
            "redis.call('SET', KEYS[1], tostring(math.random())) redis.call('SADD', KEYS[2], 'a', 'b', 'c') redis.call('SPOP', KEYS[2]) return 1",
        ])
        .text();
    assert_eq!(p.call(&["EVALSHA", &sha, "2", "rnd", "set"]).int(), 1);
    let digest = |n: &TestNode| n.raw().call(&["DEBUG", "DIGEST"]).text();
    assert!(
        wait_until(Duration::from_secs(20), || digest(&primary)
            == digest(&replica)),
        "the replica holds the script's effects"
    );
    assert_eq!(
        replica.raw().call(&["SCRIPT", "EXISTS", &sha]).items()[0].int(),
        0
    );
    // A failing script replicates the writes it made before failing.
    let reply = p.call(&[
        "EVAL",
        "redis.call('SET','before','1') redis.call('INCR','rnd') return 1",
        "0",
    ]);
    assert!(reply.err().contains("not an integer"), "{reply:?}");
    assert!(wait_until(Duration::from_secs(20), || {
        replica.raw().call(&["GET", "before"]) == common::Reply::bulk("1")
    }));
}

#[test]
fn a_script_that_allocates_without_end_fails_and_the_node_goes_on() {
    let node = TestNode::start();
    let mut c = node.raw();
    let reply = c.call(&[
        "EVAL",
        "local t = {} for i = 1, 100000000 do t[i] = {i, i, i, i, i, i, i, i} end return #t",
        "0",
    ]);
    assert!(reply.err().contains("not enough memory"), "{reply:?}");
    assert_eq!(
        c.call(&["EVAL", "return 'still here'", "0"]),
        common::Reply::bulk("still here")
    );
    assert_eq!(c.call(&["PING"]), common::Reply::Simple("PONG".into()));
}
