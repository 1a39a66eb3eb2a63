//! Replication over QUIC on loopback: a primary, two replicas and a
//! chained replica; partial resync after a replica restart; WAIT and
//! min-replicas; promotion; certificate failures.

mod common;

use common::{cmd, wait_caught_up, wait_until, Pki, Reply, TestNode};
use redis::Value;
use std::time::Duration;

const SYNC_LIMIT: Duration = Duration::from_secs(20);

fn replica_of(pki: &Pki, name: &str, upstream: &TestNode) -> TestNode {
    let addr = upstream.repl_addr();
    TestNode::start_with(|s| {
        pki.configure(name, s);
        s.replicaof = addr;
    })
}

/// Starts replica `name` again from its data directory.
fn restart_replica(pki: &Pki, name: &str, dir: tempfile::TempDir, upstream: &TestNode) -> TestNode {
    let addr = upstream.repl_addr();
    TestNode::try_start_in(dir, |s| {
        pki.configure(name, s);
        s.replicaof = addr;
    })
    .expect("replica restarts")
}

fn primary(pki: &Pki, name: &str) -> TestNode {
    TestNode::start_with(|s| pki.configure(name, s))
}

fn err_text(r: redis::RedisResult<Value>) -> String {
    match r {
        Err(e) => format!("{} {}", e.code().unwrap_or(""), e.detail().unwrap_or(""))
            .trim()
            .to_string(),
        Ok(v) => panic!("expected an error, got {v:?}"),
    }
}

#[test]
fn topology_replicates_every_type_and_refuses_replica_writes() {
    let pki = Pki::new(&["us-east", "eu-west", "ap-south", "eu-chain"]);
    let p = primary(&pki, "us-east");
    let r1 = replica_of(&pki, "eu-west", &p);
    let r2 = replica_of(&pki, "ap-south", &p);
    let r3 = replica_of(&pki, "eu-chain", &r1);
    assert!(wait_until(SYNC_LIMIT, || p
        .info("replication", "connected_slaves")
        == "2"));
    assert!(wait_until(SYNC_LIMIT, || r1
        .info("replication", "connected_slaves")
        == "1"));

    // A subscriber on a replica receives what is published on the primary.
    let mut sub = r2.raw();
    sub.send(&["SUBSCRIBE", "news"]);
    let _ = sub.read();

    let mut c = p.client();
    let mut c2 = p.client();
    let ok = |r: redis::RedisResult<Value>| r.expect("command");
    ok(cmd(&mut c, &["SET", "plain", "v"]));
    ok(cmd(&mut c, &["SET", "ttl:ex", "v", "EX", "1000"]));
    ok(cmd(&mut c, &["SETEX", "ttl:setex", "500", "v"]));
    ok(cmd(&mut c, &["SET", "ttl:expire", "v"]));
    ok(cmd(&mut c, &["EXPIRE", "ttl:expire", "700"]));
    ok(cmd(&mut c, &["SET", "gone", "v", "PX", "1"]));
    ok(cmd(&mut c, &["INCRBYFLOAT", "float", "1.1"]));
    ok(cmd(&mut c, &["INCRBYFLOAT", "float", "2.2"]));
    ok(cmd(&mut c, &["HSET", "h", "a", "1", "b", "2"]));
    ok(cmd(&mut c, &["HINCRBYFLOAT", "h", "f", "0.3"]));
    ok(cmd(&mut c, &["RPUSH", "l", "a", "b", "c", "d"]));
    ok(cmd(&mut c, &["LMOVE", "l", "l2", "LEFT", "RIGHT"]));
    ok(cmd(
        &mut c,
        &["SADD", "s", "1", "2", "3", "4", "5", "6", "7", "8"],
    ));
    ok(cmd(&mut c, &["SPOP", "s", "3"]));
    ok(cmd(&mut c, &["SPOP", "s"]));
    ok(cmd(&mut c, &["ZADD", "z", "1", "a", "2", "b", "3", "c"]));
    ok(cmd(&mut c, &["ZPOPMIN", "z"]));
    ok(cmd(&mut c, &["SELECT", "5"]));
    ok(cmd(&mut c, &["SET", "in-db5", "x"]));
    ok(cmd(&mut c, &["SELECT", "0"]));
    // A transaction lands atomically.
    ok(cmd(&mut c, &["MULTI"]));
    ok(cmd(&mut c, &["INCR", "tx:a"]));
    ok(cmd(&mut c, &["INCR", "tx:b"]));
    ok(cmd(&mut c, &["EXEC"]));
    // A blocked pop served by a push from another connection replicates
    // as the pop that happened.
    let waiter = std::thread::spawn({
        let url = p.url();
        move || {
            let mut w = redis::Client::open(url).unwrap().get_connection().unwrap();
            cmd(&mut w, &["BLPOP", "queue", "10"]).unwrap()
        }
    });
    assert!(wait_until(SYNC_LIMIT, || p
        .info("clients", "blocked_clients")
        == "1"));
    ok(cmd(&mut c2, &["RPUSH", "queue", "job1", "job2"]));
    waiter.join().unwrap();
    ok(cmd(&mut c, &["PUBLISH", "news", "hello"]));

    let target = wait_caught_up(&p, &[&r1, &r2, &r3], SYNC_LIMIT);
    assert!(target > 0);
    let digest = p.digest();
    for r in [&r1, &r2, &r3] {
        assert_eq!(
            r.digest(),
            digest,
            "digest of {}",
            r.info("replication", "quire_node")
        );
    }
    let mut rc = r3.client();
    assert_eq!(
        cmd(&mut rc, &["LRANGE", "queue", "0", "-1"]).unwrap(),
        Value::Array(vec![Value::BulkString(b"job2".to_vec())])
    );
    let ttl: i64 = redis::cmd("TTL").arg("ttl:ex").query(&mut rc).unwrap();
    assert!((990..=1000).contains(&ttl), "ttl {ttl}");
    let pttl_primary: i64 = redis::cmd("PEXPIRETIME")
        .arg("ttl:expire")
        .query(&mut c)
        .unwrap();
    let pttl_replica: i64 = redis::cmd("PEXPIRETIME")
        .arg("ttl:expire")
        .query(&mut rc)
        .unwrap();
    assert_eq!(
        pttl_primary, pttl_replica,
        "absolute deadlines replicate exactly"
    );
    assert_eq!(cmd(&mut rc, &["EXISTS", "gone"]).unwrap(), Value::Int(0));

    // Published message arrived at the replica's subscriber.
    assert_eq!(
        sub.read(),
        Reply::Array(vec![
            Reply::bulk("message"),
            Reply::bulk("news"),
            Reply::bulk("hello")
        ])
    );

    // Replicas are read-only, with Redis's error; reads are served.
    let mut r1c = r1.client();
    assert_eq!(
        err_text(cmd(&mut r1c, &["SET", "k", "v"])),
        "READONLY You can't write against a read only replica."
    );
    assert_eq!(
        cmd(&mut r1c, &["GET", "plain"]).unwrap(),
        Value::BulkString(b"v".to_vec())
    );
    // ROLE on both sides.
    let role = cmd(&mut r1c, &["ROLE"]).unwrap();
    assert!(
        format!("{role:?}").contains("slave") && format!("{role:?}").contains("connected"),
        "{role:?}"
    );
    let role = cmd(&mut c, &["ROLE"]).unwrap();
    assert!(format!("{role:?}").contains("master"), "{role:?}");
    // WAIT counts the direct replicas that acked.
    ok(cmd(&mut c, &["SET", "after", "1"]));
    assert_eq!(cmd(&mut c, &["WAIT", "2", "5000"]).unwrap(), Value::Int(2));
    assert_eq!(r1.info("replication", "master_link_status"), "up");
    assert!(p.info("replication", "slave0").contains("state=online"));
    // The two replicas at the live tail were sent batches compressed once.
    let sent: u64 = p.info("replication", "quire_batches_sent").parse().unwrap();
    let compressed: u64 = p
        .info("replication", "quire_batches_compressed")
        .parse()
        .unwrap();
    assert!(
        sent > 0 && compressed < sent,
        "{compressed} batches compressed for {sent} sent"
    );
}

#[test]
fn replica_restart_resumes_with_partial_resync() {
    let pki = Pki::new(&["p", "r"]);
    let p = primary(&pki, "p");
    let r = replica_of(&pki, "r", &p);
    let mut c = p.client();
    for i in 0..200 {
        cmd(&mut c, &["SET", &format!("k{i}"), &format!("v{i}")]).unwrap();
    }
    wait_caught_up(&p, &[&r], SYNC_LIMIT);
    // The replica saves its data with its replication position and stops.
    cmd(&mut r.client(), &["SAVE"]).unwrap();
    let dir = r.stop();
    for i in 200..400 {
        cmd(&mut c, &["SET", &format!("k{i}"), &format!("v{i}")]).unwrap();
    }
    cmd(&mut c, &["HSET", "while-away", "f", "v"]).unwrap();
    let r = restart_replica(&pki, "r", dir, &p);
    wait_caught_up(&p, &[&r], SYNC_LIMIT);
    assert_eq!(r.digest(), p.digest());
    assert_eq!(r.info("replication", "quire_partial_syncs"), "1");
    assert_eq!(r.info("replication", "quire_full_syncs"), "0");
    assert_eq!(p.info("stats", "sync_partial_ok"), "1");
    assert_eq!(
        p.info("stats", "sync_full"),
        "1",
        "only the first sync was full"
    );
}

#[test]
fn wait_min_replicas_replicaof_and_promotion() {
    let pki = Pki::new(&["a", "b"]);
    let a = primary(&pki, "a");
    let b = primary(&pki, "b");
    let mut ca = a.client();
    cmd(&mut ca, &["SET", "k", "1"]).unwrap();
    // No replica: WAIT times out with 0.
    assert_eq!(cmd(&mut ca, &["WAIT", "1", "100"]).unwrap(), Value::Int(0));
    cmd(&mut ca, &["CONFIG", "SET", "min-replicas-to-write", "1"]).unwrap();
    assert_eq!(
        err_text(cmd(&mut ca, &["SET", "k", "2"])),
        "NOREPLICAS Not enough good replicas to write."
    );
    // b becomes a replica at run time.
    let mut cb = b.client();
    cmd(&mut cb, &["SET", "only-on-b", "x"]).unwrap();
    let port = a.repl_port().to_string();
    assert_eq!(
        cmd(&mut cb, &["REPLICAOF", "127.0.0.1", &port]).unwrap(),
        Value::Okay
    );
    assert!(wait_until(SYNC_LIMIT, || a
        .info("replication", "connected_slaves")
        == "1"));
    assert!(wait_until(SYNC_LIMIT, || cmd(&mut ca, &["SET", "k", "3"]).is_ok()));
    wait_caught_up(&a, &[&b], SYNC_LIMIT);
    assert_eq!(
        cmd(&mut cb, &["EXISTS", "only-on-b"]).unwrap(),
        Value::Int(0),
        "full sync replaced b's data"
    );
    assert_eq!(
        cmd(&mut cb, &["GET", "k"]).unwrap(),
        Value::BulkString(b"3".to_vec())
    );
    // Promotion: b writable again, keeps a's history as replid2.
    let replid_a = a.info("replication", "master_replid");
    assert_eq!(
        cmd(&mut cb, &["REPLICAOF", "NO", "ONE"]).unwrap(),
        Value::Okay
    );
    assert_eq!(cmd(&mut cb, &["SET", "k", "4"]).unwrap(), Value::Okay);
    assert_eq!(b.info("replication", "role"), "master");
    assert_eq!(b.info("replication", "master_replid2"), replid_a);
    assert_ne!(b.info("replication", "master_replid"), replid_a);
    // a now follows b with a partial resync from the shared history.
    let port = b.repl_port().to_string();
    cmd(&mut ca, &["CONFIG", "SET", "min-replicas-to-write", "0"]).unwrap();
    cmd(&mut ca, &["REPLICAOF", "127.0.0.1", &port]).unwrap();
    wait_caught_up(&b, &[&a], SYNC_LIMIT);
    assert_eq!(a.info("replication", "quire_partial_syncs"), "1");
    assert_eq!(a.info("replication", "quire_full_syncs"), "0");
    assert_eq!(
        cmd(&mut a.client(), &["GET", "k"]).unwrap(),
        Value::BulkString(b"4".to_vec())
    );
    assert_eq!(a.digest(), b.digest());
}

fn assert_link_refused(
    replica: &TestNode,
    primary: &TestNode,
    expect_primary_rejects: bool,
) -> String {
    assert!(
        wait_until(SYNC_LIMIT, || !replica
            .info("replication", "quire_link_last_error")
            .is_empty()),
        "replica reports no link error"
    );
    if expect_primary_rejects {
        assert!(wait_until(SYNC_LIMIT, || primary
            .info("replication", "quire_rejected_links")
            != "0"));
    }
    assert_eq!(replica.info("replication", "master_link_status"), "down");
    assert_eq!(primary.info("replication", "connected_slaves"), "0");
    replica.info("replication", "quire_link_last_error")
}

#[test]
fn certificate_failures_are_refused() {
    let pki = Pki::new(&["primary", "good"]);
    let p = primary(&pki, "primary");
    let ca = pki.authority();

    // 1. A replica whose certificate comes from another CA.
    let rogue = Pki::new(&["rogue"]);
    let r = replica_of(&rogue, "rogue", &p);
    let error = assert_link_refused(&r, &p, true);
    assert!(
        error.to_lowercase().contains("unknown")
            || error.to_lowercase().contains("issuer")
            || error.to_lowercase().contains("certificate"),
        "{error}"
    );
    drop(r);

    // 2. An expired replica certificate, signed by the right CA.
    pki.issue_with(&ca, "expired", |spec| {
        spec.valid_from_days = -30;
        spec.valid_until_days = -1;
    });
    let r = replica_of(&pki, "expired", &p);
    let before = p.info("replication", "quire_rejected_links");
    assert_link_refused(&r, &p, true);
    assert!(wait_until(SYNC_LIMIT, || p
        .info("replication", "quire_rejected_links")
        != before));
    drop(r);

    // 3. An upstream whose certificate does not name the address dialled.
    pki.issue_with(&ca, "nameless", |spec| spec.ips.clear());
    let wrong_name = primary(&pki, "nameless");
    let r = replica_of(&pki, "good", &wrong_name);
    let error = assert_link_refused(&r, &wrong_name, false);
    assert!(
        error.contains("NotValidForName") || error.to_lowercase().contains("name"),
        "{error}"
    );
    drop(r);

    // 4. A client that presents no certificate at all.
    let before: u64 = p
        .info("replication", "quire_rejected_links")
        .parse()
        .unwrap();
    no_certificate_handshake(&pki, p.repl_port());
    assert!(wait_until(SYNC_LIMIT, || p
        .info("replication", "quire_rejected_links")
        .parse::<u64>()
        .unwrap()
        > before));
    assert_eq!(p.info("replication", "connected_slaves"), "0");

    // The right certificate still works.
    let r = replica_of(&pki, "good", &p);
    assert!(wait_until(SYNC_LIMIT, || r
        .info("replication", "master_link_status")
        == "up"));
}

/// Dials the replication port with a TLS client that has no certificate;
/// the primary must refuse before any replication message is read.
fn no_certificate_handshake(pki: &Pki, port: u16) {
    use quinn::crypto::rustls::QuicClientConfig;
    use rustls::pki_types::pem::PemObject;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut roots = rustls::RootCertStore::empty();
        for c in
            rustls::pki_types::CertificateDer::pem_file_iter(pki.dir.path().join("ca.pem")).unwrap()
        {
            roots.add(c.unwrap()).unwrap();
        }
        let mut tls =
            rustls::ClientConfig::builder_with_protocol_versions(&[&rustls::version::TLS13])
                .with_root_certificates(roots)
                .with_no_client_auth();
        tls.alpn_protocols = vec![quire::replication::protocol::ALPN.to_vec()];
        let config = quinn::ClientConfig::new(std::sync::Arc::new(
            QuicClientConfig::try_from(tls).unwrap(),
        ));
        let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        let attempt = async {
            let conn = endpoint
                .connect_with(
                    config,
                    format!("127.0.0.1:{port}").parse().unwrap(),
                    "127.0.0.1",
                )
                .unwrap()
                .await?;
            let (mut send, mut recv) = conn.open_bi().await?;
            send.write_all(b"\0\0\0\x01\0").await?;
            let mut buf = [0u8; 16];
            recv.read(&mut buf).await?;
            Ok::<_, Box<dyn std::error::Error>>(())
        };
        let result = tokio::time::timeout(Duration::from_secs(10), attempt)
            .await
            .expect("bounded");
        assert!(
            result.is_err(),
            "a client without a certificate must be refused"
        );
    });
}

/// The stream only SELECTs when the database changes: a replica that joins
/// (full sync) or resumes (restart) while the primary's stream is in
/// database 5 must apply what follows in database 5.
#[test]
fn replicas_resume_in_the_streams_current_database() {
    let pki = Pki::new(&["p", "r"]);
    let p = primary(&pki, "p");
    let warm = replica_of(&pki, "r", &p);
    let mut c = p.client();
    cmd(&mut c, &["SELECT", "5"]).unwrap();
    cmd(&mut c, &["SET", "a", "1"]).unwrap();
    wait_caught_up(&p, &[&warm], SYNC_LIMIT);
    drop(warm);
    // A fresh replica joins by full sync; the next write has no SELECT.
    let r = replica_of(&pki, "r", &p);
    assert!(wait_until(SYNC_LIMIT, || r
        .info("replication", "master_link_status")
        == "up"));
    cmd(&mut c, &["SET", "b", "2"]).unwrap();
    wait_caught_up(&p, &[&r], SYNC_LIMIT);
    assert_eq!(r.digest(), p.digest());
    // Restart: it resumes from its snapshot in database 5.
    cmd(&mut r.client(), &["SAVE"]).unwrap();
    let dir = r.stop();
    cmd(&mut c, &["SET", "c", "3"]).unwrap();
    let r = restart_replica(&pki, "r", dir, &p);
    wait_caught_up(&p, &[&r], SYNC_LIMIT);
    assert_eq!(r.info("replication", "quire_partial_syncs"), "1");
    assert_eq!(r.digest(), p.digest());
    let mut rc = r.client();
    cmd(&mut rc, &["SELECT", "5"]).unwrap();
    assert_eq!(
        cmd(&mut rc, &["MGET", "a", "b", "c"]).unwrap(),
        Value::Array(vec![
            Value::BulkString(b"1".to_vec()),
            Value::BulkString(b"2".to_vec()),
            Value::BulkString(b"3".to_vec())
        ])
    );
}

/// A writable replica's local writes stay local (Redis semantics): its
/// stream remains its upstream's, byte for byte, so a chained replica is
/// not corrupted by them.
#[test]
fn writable_replica_keeps_local_writes_out_of_the_stream() {
    let pki = Pki::new(&["p", "r", "c"]);
    let p = primary(&pki, "p");
    let r = replica_of(&pki, "r", &p);
    // r must hold p's history before c joins: a full sync of r from p
    // later would replace r's stream and send c a fresh snapshot of r's
    // keyspace, local writes included (as in Redis).
    assert!(wait_until(SYNC_LIMIT, || r
        .info("replication", "master_link_status")
        == "up"));
    wait_caught_up(&p, &[&r], SYNC_LIMIT);
    let c = replica_of(&pki, "c", &r);
    assert!(wait_until(SYNC_LIMIT, || c
        .info("replication", "master_link_status")
        == "up"));
    wait_caught_up(&p, &[&r, &c], SYNC_LIMIT);
    cmd(
        &mut r.client(),
        &["CONFIG", "SET", "replica-read-only", "no"],
    )
    .unwrap();
    cmd(&mut r.client(), &["SET", "local-only", "1"]).unwrap();
    cmd(&mut p.client(), &["SET", "from-primary", "1"]).unwrap();
    wait_caught_up(&p, &[&r, &c], SYNC_LIMIT);
    assert_eq!(
        r.offset(),
        p.offset(),
        "the replica's stream has only the primary's bytes"
    );
    assert_eq!(
        cmd(&mut c.client(), &["EXISTS", "local-only", "from-primary"]).unwrap(),
        Value::Int(1)
    );
    assert_eq!(c.digest(), p.digest());
}
