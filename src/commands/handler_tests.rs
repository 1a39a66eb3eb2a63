//! Handler tests without a running node or an async runtime: a
//! [`Bench`] holds node state (settings, an empty dataset, a log in a
//! temporary directory) and one client session, and runs argument vectors
//! through [`execute`] exactly as a connection task does under the
//! dataset lock. One section per command family; each asserts Redis's
//! replies, the effects that go to the replication stream, and the node
//! actions a handler hands back instead of starting tasks itself.

use super::{execute, stream_applier, ExecCtx, Session};
use crate::config::{Settings, Sources};
use crate::node::{NodeAction, Shared};
use crate::replication::apply::UnitSplitter;
use crate::resp::Frame;
use bytes::Bytes;
use std::sync::Arc;

/// Node state and one client, no sockets, no runtime.
struct Bench {
    node: Arc<Shared>,
    session: Session,
    actions: Vec<NodeAction>,
    now_ms: i64,
    _dir: tempfile::TempDir,
}

impl Bench {
    fn new() -> Bench {
        Bench::with(|_| {})
    }

    fn with(configure: impl FnOnce(&mut Settings)) -> Bench {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut settings = Settings {
            dir: dir.path().to_path_buf(),
            save: Default::default(),
            ..Default::default()
        };
        configure(&mut settings);
        let node = Shared::new(settings, &Sources::default(), stream_applier);
        let session = session(&node, 1);
        Bench {
            node,
            session,
            actions: Vec::new(),
            now_ms: 1_700_000_000_000,
            _dir: dir,
        }
    }

    /// Runs one command for this bench's client and returns its reply.
    fn run(&mut self, args: &[&str]) -> Frame {
        let args: Vec<Bytes> = args
            .iter()
            .map(|a| Bytes::copy_from_slice(a.as_bytes()))
            .collect();
        let mut data = self.node.data.lock();
        let data = &mut *data;
        let mut ctx = ExecCtx {
            keyspace: &mut data.keyspace,
            blocking: &mut data.blocking,
            pubsub: &mut data.pubsub,
            cmdstats: &mut data.cmdstats,
            scripts: &mut data.scripts,
            node: &self.node,
            session: &mut self.session,
            now_ms: self.now_ms,
            repl: &mut data.repl,
            effects: None,
            actions: &mut self.actions,
        };
        execute(&mut ctx, &args)
    }

    /// The commands this node's replication stream carries, in order
    /// (SELECTs included), decoded from the log's bytes.
    fn stream(&self) -> Vec<Vec<String>> {
        self.units().into_iter().flatten().collect()
    }

    /// The same, unit by unit (a transaction is one unit).
    fn units(&self) -> Vec<Vec<Vec<String>>> {
        let bytes = {
            let data = self.node.data.lock();
            let end = data.repl.offset();
            let start = self.node.log.start_offset();
            self.node
                .log
                .read(self.node.log.history(), start, (end - start) as usize)
                .expect("log read")
        };
        let units = UnitSplitter::new()
            .handle_bytes(&bytes)
            .expect("whole units");
        units
            .units
            .iter()
            .map(|u| {
                u.commands
                    .iter()
                    .map(|c| {
                        c.iter()
                            .map(|a| String::from_utf8_lossy(a).into_owned())
                            .collect()
                    })
                    .collect()
            })
            .collect()
    }
}

fn session(node: &Shared, id: u64) -> Session {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 40000 + id as u16));
    let handle = Arc::new(crate::node::clients::ClientHandle::new(id, addr, addr));
    let (outbox, _) = tokio::sync::mpsc::channel(16);
    Session::new(handle, node.settings.read().requirepass.is_empty(), outbox)
}

fn bulk(s: &str) -> Frame {
    Frame::Bulk(Bytes::copy_from_slice(s.as_bytes()))
}

fn err(frame: &Frame) -> String {
    match frame {
        Frame::Error(e) => e.to_string(),
        other => panic!("expected an error, got {other:?}"),
    }
}

fn cmd(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

// ---- strings

#[test]
fn strings_set_get_incr_and_errors() {
    let mut b = Bench::new();
    assert_eq!(b.run(&["SET", "k", "v"]), Frame::ok());
    assert_eq!(b.run(&["GET", "k"]), bulk("v"));
    assert_eq!(b.run(&["INCR", "n"]), Frame::Integer(1));
    assert_eq!(
        err(&b.run(&["INCR", "k"])),
        "ERR value is not an integer or out of range"
    );
    assert_eq!(
        err(&b.run(&["GET"])),
        "ERR wrong number of arguments for 'get' command"
    );
    assert_eq!(b.run(&["SET", "k", "w", "NX"]), Frame::Null);
}

#[test]
fn strings_relative_expiry_replicates_as_an_absolute_time() {
    let mut b = Bench::new();
    assert_eq!(b.run(&["SET", "k", "v", "EX", "10"]), Frame::ok());
    let at = (b.now_ms + 10_000).to_string();
    let stream = b.stream();
    assert!(
        stream.contains(&cmd(&["SET", "k", "v", "PXAT", &at])),
        "{stream:?}"
    );
}

// ---- keys

#[test]
fn keys_del_exists_type_and_expire() {
    let mut b = Bench::new();
    b.run(&["SET", "a", "1"]);
    b.run(&["RPUSH", "l", "x"]);
    assert_eq!(b.run(&["EXISTS", "a", "l", "nope"]), Frame::Integer(2));
    assert_eq!(b.run(&["TYPE", "l"]), Frame::simple("list"));
    assert_eq!(b.run(&["EXPIRE", "a", "100"]), Frame::Integer(1));
    assert_eq!(b.run(&["TTL", "a"]), Frame::Integer(100));
    assert_eq!(b.run(&["DEL", "a", "l", "nope"]), Frame::Integer(2));
    let at = (b.now_ms + 100_000).to_string();
    assert!(
        b.stream().contains(&cmd(&["PEXPIREAT", "a", &at])),
        "{:?}",
        b.stream()
    );
}

// ---- hash

#[test]
fn hash_fields() {
    let mut b = Bench::new();
    assert_eq!(b.run(&["HSET", "h", "f", "1", "g", "2"]), Frame::Integer(2));
    assert_eq!(b.run(&["HGET", "h", "f"]), bulk("1"));
    assert_eq!(b.run(&["HINCRBY", "h", "f", "5"]), Frame::Integer(6));
    assert_eq!(b.run(&["HLEN", "h"]), Frame::Integer(2));
    assert_eq!(b.run(&["HDEL", "h", "f", "g"]), Frame::Integer(2));
    assert_eq!(
        b.run(&["EXISTS", "h"]),
        Frame::Integer(0),
        "an emptied hash is deleted"
    );
}

// ---- list

#[test]
fn list_push_pop_range() {
    let mut b = Bench::new();
    assert_eq!(b.run(&["RPUSH", "l", "a", "b", "c"]), Frame::Integer(3));
    assert_eq!(
        b.run(&["LRANGE", "l", "0", "-1"]),
        Frame::Array(vec![bulk("a"), bulk("b"), bulk("c")])
    );
    assert_eq!(b.run(&["LPOP", "l"]), bulk("a"));
    b.run(&["SET", "s", "x"]);
    assert_eq!(
        err(&b.run(&["LPUSH", "s", "y"])),
        "WRONGTYPE Operation against a key holding the wrong kind of value"
    );
}

#[test]
fn list_blocking_pop_waits_then_another_clients_push_serves_it() {
    let mut b = Bench::new();
    assert_eq!(b.run(&["BLPOP", "q", "0"]), Frame::NoReply);
    let mut wait = b.session.blocked.take().expect("blocked");
    // Another client pushes: the pop is made for the waiter, under the lock.
    let mut other = session(&b.node, 2);
    std::mem::swap(&mut b.session, &mut other);
    assert_eq!(b.run(&["RPUSH", "q", "job"]), Frame::Integer(1));
    std::mem::swap(&mut b.session, &mut other);
    assert_eq!(
        wait.reply.try_recv().expect("served"),
        Frame::Array(vec![bulk("q"), bulk("job")])
    );
    assert_eq!(b.run(&["LLEN", "q"]), Frame::Integer(0));
    // The stream carries the pop that happened, not the BLPOP.
    let stream = b.stream();
    assert!(stream.contains(&cmd(&["LPOP", "q", "1"])), "{stream:?}");
}

// ---- set

#[test]
fn set_members_and_spop_replicates_what_it_removed() {
    let mut b = Bench::new();
    assert_eq!(b.run(&["SADD", "s", "a", "b", "a"]), Frame::Integer(2));
    assert_eq!(b.run(&["SISMEMBER", "s", "a"]), Frame::Integer(1));
    assert_eq!(b.run(&["SCARD", "s"]), Frame::Integer(2));
    let Frame::Bulk(popped) = b.run(&["SPOP", "s"]) else {
        panic!("a member")
    };
    let popped = String::from_utf8_lossy(&popped).into_owned();
    let stream = b.stream();
    assert!(
        stream.iter().any(|c| c[0] == "SREM" && c.contains(&popped)),
        "{stream:?}"
    );
    assert!(
        !stream.iter().any(|c| c[0].eq_ignore_ascii_case("spop")),
        "{stream:?}"
    );
}

// ---- zset

#[test]
fn zset_scores_and_ranges() {
    let mut b = Bench::new();
    assert_eq!(
        b.run(&["ZADD", "z", "1", "a", "2", "b", "3", "c"]),
        Frame::Integer(3)
    );
    assert_eq!(
        b.run(&["ZRANGE", "z", "0", "1"]),
        Frame::Array(vec![bulk("a"), bulk("b")])
    );
    assert_eq!(b.run(&["ZSCORE", "z", "b"]), Frame::Double(2.0));
    assert_eq!(b.run(&["ZRANK", "z", "c"]), Frame::Integer(2));
    assert_eq!(
        err(&b.run(&["ZADD", "z", "x", "a"])),
        "ERR value is not a valid float"
    );
}

// ---- tx

#[test]
fn tx_multi_exec_and_watch() {
    let mut b = Bench::new();
    assert_eq!(b.run(&["MULTI"]), Frame::ok());
    assert_eq!(b.run(&["SET", "a", "1"]), Frame::simple("QUEUED"));
    assert_eq!(b.run(&["INCR", "a"]), Frame::simple("QUEUED"));
    assert_eq!(
        b.run(&["EXEC"]),
        Frame::Array(vec![Frame::ok(), Frame::Integer(2)])
    );
    // A watched key changed by another client aborts the transaction.
    assert_eq!(b.run(&["WATCH", "a"]), Frame::ok());
    let mut other = session(&b.node, 2);
    std::mem::swap(&mut b.session, &mut other);
    b.run(&["SET", "a", "x"]);
    std::mem::swap(&mut b.session, &mut other);
    b.run(&["MULTI"]);
    b.run(&["SET", "a", "y"]);
    assert_eq!(b.run(&["EXEC"]), Frame::NullArray);
    // The transaction reached the stream as one MULTI/EXEC unit.
    let units = b.units();
    assert!(
        units
            .iter()
            .any(|u| u.ends_with(&[cmd(&["SET", "a", "1"]), cmd(&["INCR", "a"])])),
        "{units:?}"
    );
    assert!(
        !units
            .iter()
            .flatten()
            .any(|c| c == &cmd(&["SET", "a", "y"])),
        "{units:?}"
    );
}

// ---- pubsub

#[test]
fn pubsub_subscribe_then_publish_delivers_to_the_outbox() {
    let mut b = Bench::new();
    let (outbox, mut inbox) = tokio::sync::mpsc::channel(16);
    b.session.subscriber = crate::node::pubsub::Subscriber::new(outbox);
    let reply = b.run(&["SUBSCRIBE", "news"]);
    assert!(
        matches!(reply, Frame::Multiple(_) | Frame::Push(_) | Frame::Array(_)),
        "{reply:?}"
    );
    assert_eq!(
        err(&b.run(&["GET", "x"])),
        "ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"
    );
    let mut publisher = session(&b.node, 2);
    std::mem::swap(&mut b.session, &mut publisher);
    assert_eq!(b.run(&["PUBLISH", "news", "hello"]), Frame::Integer(1));
    let message = inbox.try_recv().expect("delivered");
    assert_eq!(&message.payload[..], b"hello");
}

// ---- connection

#[test]
fn connection_auth_ping_select_hello() {
    let mut b = Bench::with(|s| s.requirepass = "secret".into());
    assert_eq!(
        err(&b.run(&["GET", "k"])),
        "NOAUTH Authentication required."
    );
    assert_eq!(
        err(&b.run(&["AUTH", "wrong"])),
        "WRONGPASS invalid username-password pair or user is disabled."
    );
    assert_eq!(b.run(&["AUTH", "secret"]), Frame::ok());
    assert_eq!(b.run(&["PING"]), Frame::simple("PONG"));
    assert_eq!(b.run(&["SELECT", "3"]), Frame::ok());
    assert_eq!(b.session.db, 3);
    assert_eq!(
        err(&b.run(&["SELECT", "99"])),
        "ERR DB index is out of range"
    );
    assert!(matches!(b.run(&["HELLO", "3"]), Frame::Map(_)));
}

// ---- server

#[test]
fn server_config_get_set_and_dbsize() {
    let mut b = Bench::new();
    b.run(&["SET", "a", "1"]);
    assert_eq!(b.run(&["DBSIZE"]), Frame::Integer(1));
    assert_eq!(b.run(&["CONFIG", "SET", "maxclients", "77"]), Frame::ok());
    assert_eq!(b.node.settings.read().maxclients, 77);
    assert_eq!(
        b.run(&["CONFIG", "GET", "maxclients"]),
        Frame::Map(vec![(bulk("maxclients"), bulk("77"))])
    );
    assert!(
        err(&b.run(&["CONFIG", "SET", "maxclients", "lots"])).starts_with("ERR CONFIG SET failed")
    );
}

#[test]
fn server_bgsave_hands_back_the_snapshot_instead_of_writing_it() {
    let mut b = Bench::new();
    b.run(&["SET", "a", "1"]);
    assert_eq!(
        b.run(&["BGSAVE"]),
        Frame::simple("Background saving started")
    );
    assert_eq!(
        err(&b.run(&["BGSAVE"])),
        "ERR Background save already in progress"
    );
    let Some(NodeAction::WriteSnapshot(job)) = b.actions.pop() else {
        panic!("{:?}", b.actions)
    };
    let path = b.node.settings.read().snapshot_path();
    assert!(!path.exists(), "the handler wrote nothing itself");
    // Changes after BGSAVE are not in the copy it took.
    b.run(&["SET", "a", "2"]);
    job.write(&b.node);
    let (_, dbs, _) = crate::persist::load_from_file(&path).expect("snapshot written");
    let mut keyspace = crate::keyspace::Keyspace::new();
    crate::persist::install(&mut keyspace, dbs);
    let value = keyspace.dbs[0].peek(b"a", b.now_ms).expect("a").clone();
    assert_eq!(
        value.string_bytes().map(|s| s.to_vec()),
        Some(b"1".to_vec())
    );
}

// ---- replication

#[test]
fn replication_replicaof_changes_role_at_once_and_asks_for_the_link() {
    // A node needs certificates to replicate: without them REPLICAOF is
    // refused with the reason, and nothing is asked of the edge.
    let mut b = Bench::new();
    let refused = err(&b.run(&["REPLICAOF", "127.0.0.1", "7000"]));
    assert!(
        refused.starts_with("ERR replication is not available"),
        "{refused}"
    );
    assert!(b.actions.is_empty());
    assert!(matches!(&b.run(&["ROLE"]), Frame::Array(parts) if parts[0] == bulk("master")));
    assert_eq!(
        err(&b.run(&["REPLICAOF", "h", "70000"])),
        "ERR Invalid master port"
    );
    assert_eq!(
        err(&b.run(&["FAILOVER"])),
        "ERR FAILOVER requires connected replicas."
    );
    assert_eq!(b.run(&["WAIT", "0", "0"]), Frame::Integer(0));
}

#[test]
fn replication_waitaof_defers_to_the_edge_when_not_yet_fsynced() {
    let mut b = Bench::new();
    b.run(&["SET", "a", "1"]);
    assert_eq!(b.run(&["WAITAOF", "1", "0", "0"]), Frame::NoReply);
    assert!(matches!(
        b.actions.as_slice(),
        [NodeAction::WaitAof {
            numlocal: true,
            numreplicas: 0,
            ..
        }]
    ));
    assert!(b.session.blocked.is_some());
    // Once the log is fsynced the same call answers at once.
    b.session.blocked = None;
    b.actions.clear();
    b.node.log.write_pending().expect("write");
    b.node.log.sync().expect("fsync");
    assert_eq!(
        b.run(&["WAITAOF", "1", "0", "0"]),
        Frame::Array(vec![Frame::Integer(1), Frame::Integer(0)])
    );
    assert!(b.actions.is_empty());
}

#[test]
fn replicated_units_apply_through_the_node_entry_point() {
    let primary = {
        let mut b = Bench::new();
        b.run(&["SELECT", "2"]);
        b.run(&["SET", "k", "v"]);
        b.run(&["RPUSH", "l", "a", "b"]);
        b
    };
    let bytes = {
        let data = primary.node.data.lock();
        let end = data.repl.offset();
        primary
            .node
            .log
            .read(
                primary.node.log.history(),
                primary.node.log.start_offset(),
                end as usize,
            )
            .unwrap()
    };
    let replica = Bench::new();
    let units = UnitSplitter::new().handle_bytes(&bytes).unwrap();
    let mut applier = (replica.node.applier)(std::net::SocketAddr::from(([127, 0, 0, 1], 1)));
    applier.apply(&replica.node, &mut replica.node.data.lock(), &units);
    assert_eq!(applier.db(), 2);
    let mut data = replica.node.data.lock();
    assert!(data.keyspace.dbs[2].peek(b"k", 0).is_some());
    assert!(data.keyspace.dbs[2].peek(b"l", 0).is_some());
}
