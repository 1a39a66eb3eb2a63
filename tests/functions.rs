//! Redis functions through real clients: redis-py's function API (LOAD,
//! FCALL, FCALL_RO, LIST, DUMP/RESTORE, DELETE, FLUSH) with Redis's reply
//! and error texts; libraries reaching a replica, serving it after its
//! promotion and surviving a restart; a busy function stopped by FUNCTION
//! KILL (and not by SCRIPT KILL).

mod common;

use common::{wait_caught_up, wait_until, Reply, TestNode};
use std::time::Duration;

const REDIS_PY: &str = r##"
import sys, redis
r = redis.Redis(host="127.0.0.1", port=int(sys.argv[1]), socket_timeout=10)
r.function_flush()
r.flushall()
lib = """#!lua name=counters
local function bump(keys, args)
  return redis.call('INCRBY', keys[1], args[1])
end
redis.register_function('bump', bump)
redis.register_function{function_name='peek', callback=function(keys) return redis.call('GET', keys[1]) end,
  flags={'no-writes'}, description='reads a counter'}
"""
assert r.function_load(lib) == b"counters"
assert r.fcall("bump", 1, "c", 5) == 5
assert r.fcall("BUMP", 1, "c", 2) == 7, "function names ignore case"
assert r.fcall_ro("peek", 1, "c") == b"7"
try:
    r.fcall_ro("bump", 1, "c", 1)
    raise SystemExit("a writing function ran as FCALL_RO")
except redis.ResponseError as e:
    assert "Can not execute a script with write flag using *_ro command." in str(e), str(e)
try:
    r.function_load(lib)
    raise SystemExit("loaded twice")
except redis.ResponseError as e:
    assert "Library 'counters' already exists" in str(e), str(e)
try:
    r.function_load("#!lua name=other\nredis.register_function('bump', function() return 1 end)")
    raise SystemExit("a function name taken twice")
except redis.ResponseError as e:
    assert "Function bump already exists" in str(e), str(e)
try:
    r.function_load("#!lua name=broken\nreturn math.random()")
    raise SystemExit("a load touched a runtime global")
except redis.ResponseError as e:
    assert "Script attempted to access nonexistent global variable 'math'" in str(e), str(e)
try:
    r.fcall("missing", 0)
    raise SystemExit("called a missing function")
except redis.ResponseError as e:
    assert str(e) == "Function not found", str(e)
listing = r.function_list(withcode=True)
assert len(listing) == 1
def as_map(x):
    return dict(zip(x[::2], x[1::2])) if isinstance(x, list) else x
entry = as_map(listing[0])
assert entry[b"library_name"] == b"counters" and entry[b"engine"] == b"LUA"
assert entry[b"library_code"] == lib.encode()
functions = {as_map(f)[b"name"]: as_map(f) for f in entry[b"functions"]}
assert functions[b"peek"][b"description"] == b"reads a counter"
assert functions[b"peek"][b"flags"] == [b"no-writes"]
assert functions[b"bump"][b"description"] is None
# A dump restores elsewhere (here: after a flush), and APPEND refuses a clash.
payload = r.function_dump()
r.function_flush()
assert r.function_list() == []
assert r.function_restore(payload) in (True, b"OK")
assert r.fcall("bump", 1, "c", 1) == 8
try:
    r.function_restore(payload, "APPEND")
    raise SystemExit("restored over an existing library")
except redis.ResponseError as e:
    assert "Library counters already exists" in str(e), str(e)
assert r.function_restore(payload, "REPLACE") in (True, b"OK")
try:
    r.function_restore(b"bad payload")
    raise SystemExit("restored garbage")
except redis.ResponseError as e:
    assert "payload version or checksum are wrong" in str(e), str(e)
assert len(r.function_list()) == 1, "a bad payload leaves the libraries"
# Functions are not keys: FLUSHALL keeps them.
r.flushall()
assert r.fcall("bump", 1, "c", 3) == 3
r.function_delete("counters")
assert r.function_list() == []
print("ok")
"##;

#[test]
fn redis_py_drives_the_function_api() {
    let node = TestNode::start();
    common::run_python(REDIS_PY, node.port);
}

const LIBRARY: &str = "#!lua name=app\n\
redis.register_function('stamp', function(keys, args) return redis.call('SET', keys[1], args[1] .. ':' .. redis.call('TIME')[1]) end)\n\
redis.register_function{function_name='read', callback=function(keys) return redis.call('GET', keys[1]) end, flags={'no-writes'}}";

fn libraries(node: &TestNode) -> Vec<String> {
    node.raw()
        .call(&["FUNCTION", "LIST"])
        .items()
        .iter()
        .map(|lib| lib.items()[1].text())
        .collect()
}

#[test]
fn libraries_reach_replicas_survive_promotion_and_restart() {
    let (pki, primary, replica) = common::primary_and_replica();
    let mut p = primary.raw();
    assert_eq!(p.call(&["FUNCTION", "LOAD", LIBRARY]).text(), "app");
    // The function's effects replicate, not the call: the replica holds
    // the value the primary computed (its clock).
    p.call(&["FCALL", "stamp", "1", "k", "v"]).text();
    wait_caught_up(&primary, &[&replica], Duration::from_secs(30));
    assert_eq!(libraries(&replica), ["app"]);
    let mut r = replica.raw();
    assert_eq!(
        r.call(&["FCALL_RO", "read", "1", "k"]),
        p.call(&["GET", "k"]),
        "a no-writes function serves reads on the replica"
    );
    // A read-only replica refuses a writing function, and FUNCTION LOAD.
    assert!(r
        .call(&["FCALL", "stamp", "1", "k", "x"])
        .err()
        .starts_with("READONLY"));
    assert!(r
        .call(&[
            "FUNCTION",
            "LOAD",
            "#!lua name=x\nredis.register_function('x', function() return 1 end)"
        ])
        .err()
        .starts_with("READONLY"));
    // DELETE and RESTORE replicate too.
    let payload = p.call_bytes(&[b"FUNCTION", b"DUMP"]);
    let Reply::Bulk(payload) = payload else {
        panic!("FUNCTION DUMP gave {payload:?}")
    };
    assert_eq!(p.call(&["FUNCTION", "DELETE", "app"]).text(), "OK");
    wait_caught_up(&primary, &[&replica], Duration::from_secs(30));
    assert!(libraries(&replica).is_empty());
    assert_eq!(
        p.call_bytes(&[b"FUNCTION", b"RESTORE", &payload]).text(),
        "OK"
    );
    wait_caught_up(&primary, &[&replica], Duration::from_secs(30));
    assert_eq!(libraries(&replica), ["app"]);
    drop(primary);

    // Promoted, the replica runs the application's functions.
    assert_eq!(r.call(&["REPLICAOF", "NO", "ONE"]).text(), "OK");
    assert_eq!(r.call(&["FCALL", "stamp", "1", "k2", "w"]).text(), "OK");
    // A restart keeps them (the log and snapshot carry libraries).
    let dir = replica.stop();
    let back = TestNode::try_start_in(dir, |s| pki.configure("r", s)).expect("restarts");
    assert_eq!(libraries(&back), ["app"]);
    let mut b = back.raw();
    assert!(b
        .call(&["FCALL_RO", "read", "1", "k2"])
        .text()
        .starts_with("w:"));
}

fn busy(c: &mut common::RawClient) -> bool {
    matches!(c.call(&["PING"]), Reply::Error(e) if e.starts_with("BUSY"))
}

#[test]
fn a_busy_function_is_stopped_by_function_kill() {
    let node = TestNode::start();
    let mut c = node.raw();
    c.call(&["CONFIG", "SET", "busy-reply-threshold", "50"]);
    c.call(&[
        "FUNCTION",
        "LOAD",
        "#!lua name=spin\nredis.register_function('spin', function() local a = 1 while true do a = a + 1 end end)",
    ]);
    let mut runner = node.raw();
    runner.send(&["FCALL", "spin", "0"]);
    assert!(
        wait_until(Duration::from_secs(10), || busy(&mut c)),
        "other clients see BUSY"
    );
    assert_eq!(
        c.call(&["PING"]).err(),
        "BUSY Redis is busy running a script. You can only call FUNCTION KILL or SHUTDOWN NOSAVE."
    );
    assert!(c.call(&["SCRIPT", "KILL"]).err().starts_with("BUSY"));
    let stats = c.call(&["FUNCTION", "STATS"]).items();
    let running = stats[1].items();
    assert_eq!(running[1].text(), "spin");
    assert_eq!(running[3].strings(), ["FCALL", "spin", "0"]);
    assert_eq!(c.call(&["FUNCTION", "KILL"]).text(), "OK");
    assert!(runner.read().err().contains("Script killed by user"));
    assert!(wait_until(Duration::from_secs(10), || !busy(&mut c)));
    // An EVAL script is SCRIPT KILL's, not FUNCTION KILL's.
    runner.send(&["EVAL", "local a = 1 while true do a = a + 1 end", "0"]);
    assert!(wait_until(Duration::from_secs(10), || busy(&mut c)));
    assert!(c
        .call(&["FUNCTION", "KILL"])
        .err()
        .ends_with("You can only call SCRIPT KILL or SHUTDOWN NOSAVE."));
    assert_eq!(c.call(&["SCRIPT", "KILL"]).text(), "OK");
    assert!(runner.read().err().contains("Script killed by user"));
}
