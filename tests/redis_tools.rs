//! Debian's `redis-cli` and `redis-benchmark` against a Quire node.
//! `.ci/run` installs redis-tools; without it these tests fail loudly.

mod common;

use common::TestNode;
use std::io::Write;
use std::process::{Command, Stdio};

fn redis_cli(port: u16, args: &[&str], stdin: Option<&str>) -> String {
    let mut child = Command::new("timeout")
        .arg("30")
        .arg("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("redis-cli is installed (apt-get install redis-tools)");
    {
        let mut input = child.stdin.take().unwrap();
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "redis-cli failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn redis_cli_scripts_and_commands() {
    let node = TestNode::start();
    assert_eq!(redis_cli(node.port, &["PING"], None).trim(), "PONG");
    // A script on stdin, as operators pipe files into redis-cli.
    let script = "SET greeting \"hello world\"\nGET greeting\nRPUSH l a b c\nLRANGE l 0 -1\nHSET h f v\nHGETALL h\nZADD z 1 one\nZRANGE z 0 -1 WITHSCORES\nINCR counter\nEXPIRE greeting 100\nTTL greeting\n";
    let out = redis_cli(node.port, &[], Some(script));
    assert_eq!(
        out,
        "OK\nhello world\n3\na\nb\nc\n1\nf\nv\n1\none\n1\n1\n1\n100\n"
    );
    // Errors print like Redis's.
    let out = redis_cli(node.port, &["LPUSH", "greeting", "x"], None);
    assert_eq!(
        out.trim(),
        "WRONGTYPE Operation against a key holding the wrong kind of value"
    );
    // Pipe mode (--pipe) for bulk loading.
    let mut bulk = String::new();
    for i in 0..1000 {
        bulk.push_str(&format!(
            "*3\r\n$3\r\nSET\r\n${}\r\nbulk:{i}\r\n$1\r\nv\r\n",
            format!("bulk:{i}").len()
        ));
    }
    let out = redis_cli(node.port, &["--pipe"], Some(&bulk));
    assert!(out.contains("errors: 0, replies: 1000"), "{out}");
    assert_eq!(redis_cli(node.port, &["DBSIZE"], None).trim(), "1005");
    assert!(redis_cli(node.port, &["INFO", "keyspace"], None).contains("db0:keys=1005"));
    // --scan walks the keyspace with SCAN.
    let scanned = redis_cli(node.port, &["--scan", "--pattern", "bulk:1*"], None);
    assert_eq!(scanned.lines().count(), 111);
}

#[test]
fn redis_benchmark_runs_to_completion() {
    let node = TestNode::start();
    let out = Command::new("timeout")
        .args([
            "120",
            "redis-benchmark",
            "-h",
            "127.0.0.1",
            "-p",
            &node.port.to_string(),
            "-t",
            "set,get,incr,mset,lpush,lpop,sadd,hset,zadd",
            "-n",
            "2000",
            "-c",
            "10",
            "-q",
        ])
        .output()
        .expect("redis-benchmark is installed (apt-get install redis-tools)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for test in [
        "SET", "GET", "INCR", "MSET", "LPUSH", "LPOP", "SADD", "HSET", "ZADD",
    ] {
        assert!(
            text.lines()
                .any(|l| l.contains(&test.to_string()) && l.contains("requests per second")),
            "{test} missing in:\n{text}"
        );
    }
}
