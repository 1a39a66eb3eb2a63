//! Who may replicate: a certificate from the group's CA proves who a node
//! is; `repl.allowed_replicas` says whether that node may have the data.

mod common;

use common::{wait_caught_up, wait_until, Pki, TestNode};
use std::time::Duration;

#[test]
fn a_signed_certificate_with_a_name_not_allowed_gets_nothing() {
    let pki = Pki::new(&["p", "r", "intruder"]);
    let primary = TestNode::start_with(|s| {
        pki.configure("p", s);
        s.repl.allowed_replicas = vec!["r".into(), "dr-*".into()];
    });
    let mut con = primary.client();
    for i in 0..100 {
        let () = redis::cmd("SET")
            .arg(format!("secret:{i}"))
            .arg("v")
            .query(&mut con)
            .unwrap();
    }
    let addr = primary.repl_addr();
    let intruder = TestNode::start_with(|s| {
        pki.configure("intruder", s);
        s.replicaof = addr.clone();
    });
    assert!(
        wait_until(Duration::from_secs(20), || primary
            .info("replication", "quire_unauthorized_links")
            .parse::<u64>()
            .unwrap_or(0)
            >= 1),
        "the primary refused the link"
    );
    assert!(
        wait_until(Duration::from_secs(20), || intruder
            .info("replication", "quire_link_last_error")
            .contains("not an allowed replica")),
        "the intruder was told why: {}",
        intruder.info("replication", "quire_link_last_error")
    );
    let keys: u64 = redis::cmd("DBSIZE").query(&mut intruder.client()).unwrap();
    assert_eq!(keys, 0, "the intruder received nothing");
    assert_eq!(intruder.info("replication", "master_link_status"), "down");
    assert_eq!(primary.info("replication", "connected_slaves"), "0");
    assert_eq!(
        primary.info("replication", "quire_allowed_replicas"),
        "r,dr-*"
    );

    // The allowed replica gets everything.
    let replica = TestNode::start_with(|s| {
        pki.configure("r", s);
        s.replicaof = addr.clone();
    });
    wait_caught_up(&primary, &[&replica], Duration::from_secs(30));
    assert_eq!(replica.digest(), primary.digest());
    let keys: u64 = redis::cmd("DBSIZE").query(&mut intruder.client()).unwrap();
    assert_eq!(keys, 0, "still nothing for the intruder");
}
