//! What operators look at: SLOWLOG (with secrets redacted), LATENCY and
//! per-subcommand statistics, through a real client, compared with
//! Debian's redis-server where the reply shape matters.

mod common;

use common::{RedisServer, Reply, TestNode};

fn entries(r: &mut common::RawClient) -> Vec<Vec<Reply>> {
    r.call(&["SLOWLOG", "GET", "-1"])
        .items()
        .into_iter()
        .map(|e| e.items())
        .collect()
}

#[test]
fn slowlog_logs_trims_and_redacts_like_redis() {
    let node = TestNode::start();
    let redis_server = RedisServer::start(&[]);
    for port in [node.port, redis_server.port] {
        let mut r = common::RawClient::connect(port);
        r.call(&["CONFIG", "SET", "slowlog-log-slower-than", "0"]);
        r.call(&["CONFIG", "SET", "slowlog-max-len", "4"]);
        r.call(&["SLOWLOG", "RESET"]);
        r.call(&["CLIENT", "SETNAME", "ops"]);
        r.call(&["CONFIG", "SET", "requirepass", "s3cret"]);
        r.call(&["AUTH", "s3cret"]);
        r.call(&["SET", "k", &"x".repeat(200)]);
        let got = entries(&mut r);
        assert_eq!(got.len(), 4, "port {port}: bounded by slowlog-max-len");
        let args = |e: &Vec<Reply>| e[3].strings();
        assert_eq!(
            args(&got[0])[2],
            format!("{}... (72 more bytes)", "x".repeat(128))
        );
        assert_eq!(args(&got[1]), ["AUTH", "(redacted)"], "port {port}");
        assert_eq!(
            args(&got[2]),
            ["CONFIG", "SET", "requirepass", "(redacted)"],
            "port {port}"
        );
        assert_eq!(got[0][5].text(), "ops");
        assert!(got[0][0].int() > got[1][0].int(), "ids grow, newest first");
        assert_eq!(
            r.call(&["SLOWLOG", "GET", "-2"]).err(),
            "ERR count should be greater than or equal to -1"
        );
        r.call(&["CONFIG", "SET", "requirepass", ""]);
        r.call(&["CONFIG", "SET", "slowlog-log-slower-than", "-1"]);
        r.call(&["SLOWLOG", "RESET"]);
        r.call(&["PING"]);
        assert_eq!(r.call(&["SLOWLOG", "LEN"]).int(), 0, "-1 disables it");
    }
}

#[test]
fn latency_monitor_records_spikes_and_histograms_by_subcommand() {
    let node = TestNode::start();
    let mut r = node.raw();
    assert_eq!(
        r.call(&["CONFIG", "SET", "latency-monitor-threshold", "50"]),
        Reply::Simple("OK".into())
    );
    r.call(&["DEBUG", "SLEEP", "0.1"]);
    let latest = r.call(&["LATENCY", "LATEST"]).items();
    assert_eq!(latest.len(), 1);
    let event = latest[0].items();
    assert_eq!(event[0].text(), "command");
    assert!(event[2].int() >= 100, "{event:?}");
    assert_eq!(r.call(&["LATENCY", "HISTORY", "command"]).items().len(), 1);
    assert!(r.call(&["LATENCY", "DOCTOR"]).text().contains("command"));
    assert!(r
        .call(&["LATENCY", "GRAPH", "command"])
        .text()
        .contains("#"));
    assert_eq!(
        r.call(&["LATENCY", "GRAPH", "nothing"]).err(),
        "ERR No samples available for event 'nothing'"
    );
    assert_eq!(r.call(&["LATENCY", "RESET"]).int(), 1);
    assert!(r.call(&["LATENCY", "LATEST"]).items().is_empty());

    r.call(&["CONFIG", "RESETSTAT"]);
    r.call(&["CLIENT", "ID"]);
    r.call(&["CLIENT", "ID"]);
    let histogram = r.call(&["LATENCY", "HISTOGRAM", "client"]).items();
    assert_eq!(histogram[0].text(), "client|id");
    let stat = histogram[1].items();
    assert_eq!((stat[0].text().as_str(), stat[1].int()), ("calls", 2));
    let info = r.call(&["INFO", "commandstats"]).text();
    assert!(info.contains("cmdstat_client|id:calls=2"), "{info}");
}

/// Reads one pub/sub message from a subscribed raw client as
/// (channel, payload).
fn message(r: &mut common::RawClient) -> (String, String) {
    let m = r.read().strings();
    (m[m.len() - 2].clone(), m[m.len() - 1].clone())
}

#[test]
fn keyspace_notifications_fire_on_the_primary_and_on_its_replica() {
    let (_pki, primary, replica) = common::primary_and_replica();
    for node in [&primary, &replica] {
        node.raw()
            .call(&["CONFIG", "SET", "notify-keyspace-events", "KEA"]);
    }
    assert_eq!(
        replica
            .raw()
            .call(&["CONFIG", "GET", "notify-keyspace-events"])
            .strings()[1],
        "AKE"
    );
    let mut subs = Vec::new();
    for node in [&primary, &replica] {
        let mut sub = node.raw();
        sub.call(&["PSUBSCRIBE", "__keyspace@0__:*"]);
        subs.push(sub);
    }
    let mut w = primary.raw();
    w.call(&["SET", "foo", "bar", "EX", "100"]);
    w.call(&["RPUSH", "l", "a"]);
    w.call(&["LPOP", "l"]);
    w.call(&["SREM", "nothing", "x"]);
    w.call(&["RENAME", "foo", "bar"]);
    let expected = [
        ("__keyspace@0__:foo", "set"),
        ("__keyspace@0__:foo", "expire"),
        ("__keyspace@0__:l", "rpush"),
        ("__keyspace@0__:l", "lpop"),
        ("__keyspace@0__:l", "del"),
        ("__keyspace@0__:foo", "rename_from"),
        ("__keyspace@0__:bar", "rename_to"),
    ];
    for (i, sub) in subs.iter_mut().enumerate() {
        for (channel, event) in expected {
            assert_eq!(
                message(sub),
                (channel.to_string(), event.to_string()),
                "on {}",
                ["the primary", "the replica"][i]
            );
        }
    }
    // Keyevent channels and the `new` class, as configured per node.
    let mut ev = primary.raw();
    ev.call(&["CONFIG", "SET", "notify-keyspace-events", "En$"]);
    ev.call(&["SUBSCRIBE", "__keyevent@0__:new", "__keyevent@0__:set"]);
    ev.read(); // the second channel's confirmation
    w.call(&["SET", "fresh", "1"]);
    w.call(&["SET", "fresh", "2"]);
    assert_eq!(
        message(&mut ev),
        ("__keyevent@0__:new".into(), "fresh".into())
    );
    assert_eq!(
        message(&mut ev),
        ("__keyevent@0__:set".into(), "fresh".into())
    );
    assert_eq!(
        message(&mut ev),
        ("__keyevent@0__:set".into(), "fresh".into())
    );
}

#[test]
fn sharded_pubsub_is_its_own_namespace_and_reaches_replicas() {
    let (_pki, primary, replica) = common::primary_and_replica();
    let mut on_replica = replica.raw();
    let ack = on_replica.call(&["SSUBSCRIBE", "orders"]).items();
    assert_eq!(ack[0].text(), "ssubscribe");
    assert_eq!(ack[2].int(), 1);
    let mut plain = primary.raw();
    plain.call(&["SUBSCRIBE", "orders"]);
    let mut on_primary = primary.raw();
    on_primary.call(&["SSUBSCRIBE", "orders"]);
    let mut w = primary.raw();
    assert_eq!(w.call(&["PUBSUB", "SHARDCHANNELS"]).strings(), ["orders"]);
    assert_eq!(
        w.call(&["PUBSUB", "SHARDNUMSUB", "orders", "none"]),
        Reply::Array(vec![
            Reply::bulk("orders"),
            Reply::Int(1),
            Reply::bulk("none"),
            Reply::Int(0)
        ])
    );
    assert_eq!(w.call(&["SPUBLISH", "orders", "o-1"]).int(), 1);
    assert_eq!(w.call(&["PUBLISH", "orders", "plain"]).int(), 1);
    let expected = vec!["smessage".to_string(), "orders".into(), "o-1".into()];
    assert_eq!(on_primary.read().strings(), expected);
    assert_eq!(
        on_replica.read().strings(),
        expected,
        "carried by the stream"
    );
    assert_eq!(plain.read().strings(), ["message", "orders", "plain"]);
    assert_eq!(on_replica.call(&["SUNSUBSCRIBE"]).items()[2], Reply::Int(0));
}

#[test]
fn monitor_shows_commands_scripts_and_transactions_in_order_with_secrets_redacted() {
    let node = TestNode::start();
    let mut mon = node.raw();
    assert_eq!(mon.call(&["MONITOR"]), Reply::Simple("OK".into()));
    let mut r = node.raw();
    r.call(&["SET", "foo", "a\"b\n"]);
    r.call(&["EVAL", "return redis.call('get', KEYS[1])", "1", "foo"]);
    r.call(&["MULTI"]);
    r.call(&["INCR", "n"]);
    r.call(&["EXEC"]);
    r.call(&["AUTH", "nobody", "secret"]);
    r.call(&["CONFIG", "GET", "maxmemory"]); // admin: not shown
    r.call(&["PING"]);
    let mut lines = Vec::new();
    for _ in 0..8 {
        match mon.read() {
            Reply::Simple(line) => lines.push(line),
            other => panic!("a MONITOR line, got {other:?}"),
        }
    }
    let tail = |l: &str| l.split_once("] ").map(|(_, t)| t.to_string()).unwrap();
    let shown: Vec<String> = lines.iter().map(|l| tail(l)).collect();
    assert_eq!(
        shown,
        [
            r#""SET" "foo" "a\"b\n""#,
            r#""EVAL" "return redis.call('get', KEYS[1])" "1" "foo""#,
            r#""get" "foo""#,
            r#""MULTI""#,
            r#""INCR" "n""#,
            r#""EXEC""#,
            r#""AUTH" "(redacted)" "(redacted)""#,
            r#""PING""#,
        ]
    );
    assert!(lines[2].contains(" [0 lua] "), "{}", lines[2]);
    assert!(lines[0].contains(" [0 127.0.0.1:"), "{}", lines[0]);
}

#[test]
fn client_no_touch_reads_leave_the_idle_time_alone() {
    let node = TestNode::start();
    let mut r = node.raw();
    r.call(&["SET", "k", "v"]);
    r.call(&["DEBUG", "SLEEP", "2.1"]);
    r.call(&["CLIENT", "NO-TOUCH", "ON"]);
    r.call(&["GET", "k"]);
    assert!(
        r.call(&["OBJECT", "IDLETIME", "k"]).int() >= 2,
        "GET did not touch"
    );
    r.call(&["TOUCH", "k"]);
    assert_eq!(
        r.call(&["OBJECT", "IDLETIME", "k"]).int(),
        0,
        "TOUCH always does"
    );
    r.call(&["DEBUG", "SLEEP", "1.1"]);
    r.call(&["CLIENT", "NO-TOUCH", "OFF"]);
    r.call(&["GET", "k"]);
    assert_eq!(r.call(&["OBJECT", "IDLETIME", "k"]).int(), 0);
}
