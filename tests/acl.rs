//! ACL users over real connections: a matrix of users, commands, keys and
//! channels answered with Redis's NOPERM texts; hostile AUTH input; rule
//! changes reaching connected clients; `requirepass` as the default
//! user's password.

mod common;

use common::{RawClient, Reply, TestNode};

fn login(node: &TestNode, user: &str, pass: &str) -> RawClient {
    let mut c = node.raw();
    assert_eq!(c.call(&["AUTH", user, pass]), Reply::Simple("OK".into()));
    c
}

fn setuser(c: &mut RawClient, args: &[&str]) {
    let mut cmd = vec!["ACL", "SETUSER"];
    cmd.extend_from_slice(args);
    assert_eq!(c.call(&cmd), Reply::Simple("OK".into()), "{args:?}");
}

const NO_KEY: &str =
    "NOPERM this user has no permissions to access one of the keys used as arguments";
const NO_CHANNEL: &str =
    "NOPERM this user has no permissions to access one of the channels used as arguments";

fn no_command(name: &str) -> String {
    format!("NOPERM this user has no permissions to run the '{name}' command")
}

#[test]
fn users_commands_keys_and_channels_form_a_matrix() {
    let node = TestNode::start();
    let mut admin = node.raw();
    setuser(&mut admin, &["reader", "on", ">r-pass", "~pub:*", "+@read"]);
    setuser(
        &mut admin,
        &[
            "writer", "on", ">w-pass", "%W~w:*", "%R~pub:*", "+set", "+get",
        ],
    );
    setuser(
        &mut admin,
        &[
            "news",
            "on",
            ">n-pass",
            "resetchannels",
            "&news.*",
            "+publish",
            "+subscribe",
            "+psubscribe",
        ],
    );
    setuser(
        &mut admin,
        &[
            "ops",
            "on",
            ">o-pass",
            "~*",
            "+@all",
            "-@dangerous",
            "+config|get",
        ],
    );
    admin.call(&["SET", "pub:1", "v"]);

    let mut reader = login(&node, "reader", "r-pass");
    assert_eq!(reader.call(&["GET", "pub:1"]), Reply::bulk("v"));
    assert_eq!(reader.call(&["GET", "secret"]).err(), NO_KEY);
    assert_eq!(reader.call(&["SET", "pub:1", "x"]).err(), no_command("set"));
    assert_eq!(
        reader.call(&["ACL", "WHOAMI"]).err(),
        no_command("acl|whoami")
    );

    let mut writer = login(&node, "writer", "w-pass");
    assert_eq!(
        writer.call(&["SET", "w:1", "a"]),
        Reply::Simple("OK".into())
    );
    // Write-only keys cannot be read; read-only ones cannot be written.
    assert_eq!(writer.call(&["GET", "w:1"]).err(), NO_KEY);
    assert_eq!(writer.call(&["GET", "pub:1"]), Reply::bulk("v"));
    assert_eq!(writer.call(&["SET", "pub:1", "x"]).err(), NO_KEY);
    assert_eq!(writer.call(&["DEL", "w:1"]).err(), no_command("del"));

    let mut news = login(&node, "news", "n-pass");
    assert_eq!(news.call(&["PUBLISH", "news.eu", "hi"]), Reply::Int(0));
    assert_eq!(news.call(&["PUBLISH", "sports", "hi"]).err(), NO_CHANNEL);
    // A pattern subscription must be one of the user's patterns as written.
    assert_eq!(news.call(&["PSUBSCRIBE", "news.e*"]).err(), NO_CHANNEL);

    let mut ops = login(&node, "ops", "o-pass");
    assert_eq!(ops.call(&["SET", "any", "1"]), Reply::Simple("OK".into()));
    assert_eq!(ops.call(&["FLUSHALL"]).err(), no_command("flushall"));
    assert!(matches!(
        ops.call(&["CONFIG", "GET", "maxmemory"]),
        Reply::Array(_) | Reply::Map(_)
    ));
    assert_eq!(
        ops.call(&["CONFIG", "SET", "maxmemory", "0"]).err(),
        no_command("config|set")
    );

    // DRYRUN tells without running; the listing is Redis's format.
    assert_eq!(
        admin.call(&["ACL", "DRYRUN", "reader", "GET", "pub:2"]),
        Reply::Simple("OK".into())
    );
    assert_eq!(
        admin.call(&["ACL", "DRYRUN", "reader", "SET", "pub:2", "x"]),
        Reply::bulk("This user has no permissions to run the 'set' command")
    );
    let list = admin.call(&["ACL", "LIST"]).strings();
    assert!(
        list.contains(&"user default on nopass ~* &* +@all".to_string()),
        "{list:?}"
    );
    assert!(
        list.iter().any(|u| u.starts_with("user writer on #")
            && u.ends_with("%W~w:* %R~pub:* resetchannels -@all +set +get")),
        "{list:?}"
    );
}

#[test]
fn rule_changes_reach_connected_clients_and_deleted_users_are_cut_off() {
    let node = TestNode::start();
    let mut admin = node.raw();
    setuser(&mut admin, &["temp", "on", ">t", "~*", "+get"]);
    let mut temp = login(&node, "temp", "t");
    assert_eq!(temp.call(&["GET", "k"]), Reply::Nil);
    setuser(&mut admin, &["temp", "-get"]);
    assert_eq!(temp.call(&["GET", "k"]).err(), no_command("get"));
    // A refused rule changes nothing.
    assert!(admin
        .call(&["ACL", "SETUSER", "temp", "+get", "+nosuchcommand"])
        .err()
        .contains("Unknown command or category name in ACL"));
    assert_eq!(temp.call(&["GET", "k"]).err(), no_command("get"));
    assert_eq!(admin.call(&["ACL", "DELUSER", "temp"]), Reply::Int(1));
    temp.call(&["GET", "k"]);
    assert!(temp.is_closed(), "a deleted user's connection is closed");
    assert!(admin
        .call(&["ACL", "DELUSER", "default"])
        .err()
        .contains("cannot be removed"));
}

#[test]
fn hostile_auth_input_is_answered_and_harmless() {
    let node = TestNode::start();
    let mut admin = node.raw();
    setuser(&mut admin, &["u", "on", ">right"]);
    let mut c = node.raw();
    let wrong = "WRONGPASS invalid username-password pair or user is disabled.";
    let huge = "x".repeat(1 << 20);
    assert_eq!(c.call(&["AUTH", "u", &huge]).err(), wrong);
    assert_eq!(c.call(&["AUTH", &huge, "right"]).err(), wrong);
    let binary: &[u8] = b"\x00\xff\r\n\x01right";
    assert_eq!(c.call_bytes(&[b"AUTH", b"u", binary]).err(), wrong);
    for _ in 0..200 {
        assert_eq!(c.call(&["AUTH", "u", "guess"]).err(), wrong);
    }
    assert_eq!(c.call(&["AUTH", "nobody", "right"]).err(), wrong);
    assert_eq!(c.call(&["AUTH", "u", "right"]), Reply::Simple("OK".into()));
    assert_eq!(c.call(&["ACL", "WHOAMI"]).err(), no_command("acl|whoami"));
    // An off user cannot log in even with its password.
    setuser(&mut admin, &["u", "off"]);
    assert_eq!(node.raw().call(&["AUTH", "u", "right"]).err(), wrong);
}

#[test]
fn requirepass_is_the_default_users_password() {
    let node = TestNode::start();
    let mut admin = node.raw();
    assert!(admin
        .call(&["AUTH", "x"])
        .err()
        .contains("without any password configured"));
    assert_eq!(
        admin.call(&["CONFIG", "SET", "requirepass", "s3cret"]),
        Reply::Simple("OK".into())
    );
    let mut fresh = node.raw();
    assert!(fresh.call(&["GET", "k"]).err().starts_with("NOAUTH"));
    assert_eq!(fresh.call(&["AUTH", "s3cret"]), Reply::Simple("OK".into()));
    assert_eq!(
        fresh.call(&["AUTH", "default", "s3cret"]),
        Reply::Simple("OK".into())
    );
    assert_eq!(fresh.call(&["ACL", "WHOAMI"]), Reply::bulk("default"));
    let mut hello = node.raw();
    let reply = hello.call(&["HELLO", "3", "AUTH", "default", "s3cret"]);
    assert!(matches!(reply, Reply::Map(_)), "{reply:?}");
}

#[test]
fn acl_log_records_refusals_as_redis_does() {
    let node = TestNode::start();
    let redis_server = common::RedisServer::start(&[]);
    for port in [node.port, redis_server.port] {
        let mut admin = common::RawClient::connect(port);
        admin.call(&["ACL", "LOG", "RESET"]);
        admin.call(&["ACL", "SETUSER", "reader", "on", ">pw", "~pub:*", "+get"]);
        let mut c = common::RawClient::connect(port);
        for _ in 0..5 {
            c.call(&["AUTH", "reader", "wrong"]);
        }
        c.call(&["AUTH", "reader", "pw"]);
        c.call(&["SET", "pub:x", "1"]);
        c.call(&["GET", "secret"]);
        let log = admin.call(&["ACL", "LOG"]).items();
        assert_eq!(log.len(), 3, "port {port}: {log:?}");
        let fields = |e: &common::Reply| -> Vec<(String, String)> {
            let items = e.items();
            items
                .chunks(2)
                .filter(|kv| kv[0].text() != "age-seconds" && kv[0].text() != "client-info")
                .map(|kv| {
                    let v = match &kv[1] {
                        common::Reply::Int(n) => n.to_string(),
                        other => other.text(),
                    };
                    (kv[0].text(), v)
                })
                .filter(|(k, _)| {
                    ["count", "reason", "context", "object", "username"].contains(&k.as_str())
                })
                .collect()
        };
        let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        assert_eq!(
            fields(&log[0]),
            pairs(&[
                ("count", "1"),
                ("reason", "key"),
                ("context", "toplevel"),
                ("object", "secret"),
                ("username", "reader")
            ]),
            "port {port}"
        );
        assert_eq!(
            fields(&log[1]),
            pairs(&[
                ("count", "1"),
                ("reason", "command"),
                ("context", "toplevel"),
                ("object", "set"),
                ("username", "reader")
            ]),
            "port {port}"
        );
        assert_eq!(
            fields(&log[2]),
            pairs(&[
                ("count", "5"),
                ("reason", "auth"),
                ("context", "toplevel"),
                ("object", "AUTH"),
                ("username", "reader")
            ]),
            "port {port}: repeated failures are one entry"
        );
        assert_eq!(admin.call(&["ACL", "LOG", "1"]).items().len(), 1);
        assert_eq!(
            admin.call(&["ACL", "LOG", "RESET"]),
            common::Reply::Simple("OK".into())
        );
        assert!(admin.call(&["ACL", "LOG"]).items().is_empty());
        admin.call(&["ACL", "DELUSER", "reader"]);
    }
}
