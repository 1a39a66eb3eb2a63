//! Hostile input: each case gets a clear error (or is ignored), the node
//! stays up and keeps its data, and well-behaved clients and replicas are
//! not disturbed.

mod common;

use common::{cmd, wait_until, Pki, Reply, TestNode};
use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::time::Duration;

fn still_serving(node: &TestNode) {
    let mut c = node.client();
    assert_eq!(
        cmd(&mut c, &["GET", "canary"]).unwrap(),
        redis::Value::BulkString(b"alive".to_vec())
    );
}

#[test]
fn oversized_lengths_and_nesting_are_protocol_errors() {
    let node = TestNode::start();
    cmd(&mut node.client(), &["SET", "canary", "alive"]).unwrap();
    let cases: &[(&[u8], &str)] = &[
        (
            b"*1\r\n$2147483648\r\n",
            "Protocol error: invalid bulk length",
        ),
        (
            b"*2147483648\r\n",
            "Protocol error: invalid multibulk length",
        ),
        (
            b"*1\r\n*1\r\n*1\r\n*1\r\n$4\r\nPING\r\n",
            "Protocol error: expected '$', got '*'",
        ),
        (
            b"*-5\r\n*abc\r\n",
            "Protocol error: invalid multibulk length",
        ),
    ];
    for (input, expected) in cases {
        let mut raw = node.raw();
        raw.send_raw(input);
        match raw.read() {
            Reply::Error(e) => assert!(
                e.contains(expected),
                "{e:?} for {:?}",
                String::from_utf8_lossy(input)
            ),
            other => panic!("{other:?}"),
        }
        assert!(raw.is_closed(), "the offending connection is closed");
        still_serving(&node);
    }
}

#[test]
fn slowloris_clients_do_not_block_others_and_idle_ones_are_closed() {
    let node = TestNode::start();
    cmd(&mut node.client(), &["SET", "canary", "alive"]).unwrap();
    // 200 clients each send half a command and stall.
    let mut stalled: Vec<TcpStream> = (0..200)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", node.port)).unwrap();
            s.write_all(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$100000\r\nxx")
                .unwrap();
            s
        })
        .collect();
    still_serving(&node);
    // With an idle timeout they are disconnected.
    cmd(&mut node.client(), &["CONFIG", "SET", "timeout", "1"]).unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || node
            .info("clients", "connected_clients")
            == "1"),
        "stalled clients not closed"
    );
    for s in stalled.iter_mut() {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 16];
        assert!(
            matches!(s.read(&mut buf), Ok(0) | Err(_)),
            "a stalled client was closed"
        );
    }
    cmd(&mut node.client(), &["CONFIG", "SET", "timeout", "0"]).unwrap();
    still_serving(&node);
}

#[test]
fn two_thousand_connections_and_maxclients() {
    let node = TestNode::start_with(|s| s.maxclients = 2500);
    cmd(&mut node.client(), &["SET", "canary", "alive"]).unwrap();
    let mut conns: Vec<TcpStream> = (0..2000)
        .map(|_| TcpStream::connect(("127.0.0.1", node.port)).unwrap())
        .collect();
    for c in conns.iter_mut() {
        c.write_all(b"PING\r\n").unwrap();
    }
    for c in conns.iter_mut() {
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 7];
        c.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"+PONG\r\n");
    }
    cmd(&mut node.client(), &["CONFIG", "SET", "maxclients", "2000"]).unwrap();
    let mut extra = TcpStream::connect(("127.0.0.1", node.port)).unwrap();
    extra
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reply = String::new();
    let _ = extra.read_to_string(&mut reply);
    assert_eq!(reply, "-ERR max number of clients reached\r\n");
    drop(conns);
    assert!(wait_until(Duration::from_secs(10), || node
        .info("clients", "connected_clients")
        == "1"));
    still_serving(&node);
}

#[test]
fn garbage_on_the_replication_port_is_ignored() {
    let pki = Pki::new(&["p", "r"]);
    let p = TestNode::start_with(|s| pki.configure("p", s));
    cmd(&mut p.client(), &["SET", "canary", "alive"]).unwrap();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut seed = 0x9e3779b97f4a7c15u64;
    for i in 0..2000 {
        let len = 1 + (i * 37) % 1400;
        let datagram: Vec<u8> = (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        socket.send_to(&datagram, p.repl_addr()).unwrap();
    }
    // Something that looks like a QUIC Initial but is not.
    let mut fake = vec![0xc0, 0, 0, 0, 1, 8];
    fake.extend_from_slice(&[0xaa; 1200]);
    socket.send_to(&fake, p.repl_addr()).unwrap();
    still_serving(&p);
    let r = TestNode::start_with(|s| {
        pki.configure("r", s);
        s.replicaof = p.repl_addr();
    });
    assert!(wait_until(Duration::from_secs(20), || r
        .info("replication", "master_link_status")
        == "up"));
    assert!(wait_until(Duration::from_secs(20), || r.offset() >= p.offset()));
    assert_eq!(
        cmd(&mut r.client(), &["GET", "canary"]).unwrap(),
        redis::Value::BulkString(b"alive".to_vec())
    );
}

#[test]
fn maxmemory_noeviction_and_output_buffer_limit() {
    let node = TestNode::start();
    let mut c = node.client();
    cmd(&mut c, &["SET", "canary", "alive"]).unwrap();
    cmd(&mut c, &["RPUSH", "big", &"x".repeat(1000)]).unwrap();
    for _ in 0..10 {
        cmd(&mut c, &["LPUSHX", "big", &"y".repeat(100_000)]).unwrap();
    }
    // Any process is above one byte: writes that grow the data are refused.
    cmd(&mut c, &["CONFIG", "SET", "maxmemory", "1"]).unwrap();
    assert!(wait_until(Duration::from_secs(10), || cmd(
        &mut c,
        &["SET", "k", "v"]
    )
    .is_err()));
    let err = cmd(&mut c, &["SET", "k", "v"]).unwrap_err();
    assert_eq!(err.code(), Some("OOM"));
    assert_eq!(
        err.detail(),
        Some("command not allowed when used memory > 'maxmemory'.")
    );
    assert_eq!(
        cmd(&mut c, &["DEL", "nothing"]).unwrap(),
        redis::Value::Int(0),
        "deletes still work"
    );
    still_serving(&node);
    assert_eq!(node.info("memory", "maxmemory"), "1");
    cmd(&mut c, &["CONFIG", "SET", "maxmemory", "0"]).unwrap();
    assert!(wait_until(Duration::from_secs(10), || cmd(
        &mut c,
        &["SET", "k", "v"]
    )
    .is_ok()));
    // Every Redis policy is accepted (tests/eviction.rs shows them evict).
    for policy in ["allkeys-lru", "volatile-ttl", "allkeys-lfu", "noeviction"] {
        cmd(&mut c, &["CONFIG", "SET", "maxmemory-policy", policy]).unwrap();
    }
    assert!(cmd(&mut c, &["CONFIG", "SET", "maxmemory-policy", "lru"])
        .is_err_and(|e| e.to_string().contains("not a maxmemory policy")));

    // A reply larger than the normal-class hard limit closes that client only.
    cmd(
        &mut c,
        &[
            "CONFIG",
            "SET",
            "client-output-buffer-limit",
            "normal 100000 0 0",
        ],
    )
    .unwrap();
    let mut greedy = node.raw();
    greedy.send(&["LRANGE", "big", "0", "-1"]);
    assert!(greedy.is_closed(), "client over its output limit is closed");
    still_serving(&node);
    assert_eq!(
        cmd(&mut c, &["LLEN", "big"]).unwrap(),
        redis::Value::Int(11)
    );
}
