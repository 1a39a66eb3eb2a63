//! Seeded chaos: a primary, two replicas and a chained replica behind WAN
//! relays while a writer runs; random link outages, loss bursts, replica
//! crashes, a graceful primary restart, a full sync cut mid-way and a
//! planned failover. At the end every node has the same digest, every write
//! acknowledged by WAIT is present everywhere, and nothing panicked.
//!
//! CI runs the short variant. The long one:
//! `QUIRE_CHAOS_STEPS=60 QUIRE_CHAOS_SEED=7 cargo test --release --test chaos -- --nocapture`

mod common;

use common::{cmd, wait_until, Pki, TestNode};
use quire::config::Settings;
use quire::wan::relay::RelayThread;
use quire::wan::LinkParams;
use rand::{Rng, RngCore, SeedableRng};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(60);

static PANICS: AtomicUsize = AtomicUsize::new(0);

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn free_udp_port() -> u16 {
    common::reserve_port(true)
}

struct Member {
    name: &'static str,
    repl_port: u16,
    /// Where this node replicates from (a relay address), if anywhere.
    upstream: Option<String>,
    node: Option<TestNode>,
    dir: Option<tempfile::TempDir>,
}

fn configure(pki: &Pki, m: &Member, s: &mut Settings) {
    pki.configure(m.name, s);
    s.repl.port = m.repl_port;
    s.repl.keepalive_ms = 200;
    s.repl.idle_timeout_ms = 1000;
    s.repl.window_bytes = 1 << 20;
    if let Some(up) = &m.upstream {
        s.replicaof = up.clone();
    }
}

impl Member {
    fn start(&mut self, pki: &Pki) {
        let dir = self
            .dir
            .take()
            .unwrap_or_else(|| tempfile::tempdir().unwrap());
        let node = TestNode::try_start_in(dir, |s| configure(pki, self, s)).expect("node starts");
        self.node = Some(node);
    }

    fn node(&self) -> &TestNode {
        self.node.as_ref().expect("running")
    }

    /// A crash: no save; the node comes back from whatever it saved last.
    fn crash(&mut self) {
        if let Some(n) = self.node.take() {
            self.dir = Some(n.stop());
        }
    }

    /// A graceful stop: SHUTDOWN SAVE (snapshot + replication position).
    fn shutdown(&mut self) {
        if let Some(n) = self.node.take() {
            let mut raw = n.raw();
            raw.send(&["SHUTDOWN", "SAVE"]);
            let _ = raw.is_closed();
            self.dir = Some(n.stop());
        }
    }
}

fn offset(n: &TestNode) -> u64 {
    n.offset()
}

#[test]
fn seeded_chaos_keeps_replicas_identical_and_acked_writes() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, Ordering::SeqCst);
        default_hook(info);
    }));
    let seed = env_or("QUIRE_CHAOS_SEED", 42);
    let steps = env_or("QUIRE_CHAOS_STEPS", 8);
    eprintln!("chaos seed {seed}, {steps} steps");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let pki = Pki::new(&["p", "r1", "r2", "r3"]);

    let ports: Vec<u16> = (0..4).map(|_| free_udp_port()).collect();
    let addr = |p: u16| format!("127.0.0.1:{p}").parse().unwrap();
    // Relays: r1 -> p, r2 -> p, r3 -> r1 (chained).
    let relays = [
        RelayThread::start(
            addr(ports[0]),
            LinkParams::default(),
            LinkParams::default(),
            seed,
        )
        .unwrap(),
        RelayThread::start(
            addr(ports[0]),
            LinkParams::default(),
            LinkParams::default(),
            seed + 1,
        )
        .unwrap(),
        RelayThread::start(
            addr(ports[1]),
            LinkParams::default(),
            LinkParams::default(),
            seed + 2,
        )
        .unwrap(),
    ];
    let mut members = vec![
        Member {
            name: "p",
            repl_port: ports[0],
            upstream: None,
            node: None,
            dir: None,
        },
        Member {
            name: "r1",
            repl_port: ports[1],
            upstream: Some(relays[0].addr.to_string()),
            node: None,
            dir: None,
        },
        Member {
            name: "r2",
            repl_port: ports[2],
            upstream: Some(relays[1].addr.to_string()),
            node: None,
            dir: None,
        },
        Member {
            name: "r3",
            repl_port: ports[3],
            upstream: Some(relays[2].addr.to_string()),
            node: None,
            dir: None,
        },
    ];
    for m in members.iter_mut() {
        m.start(&pki);
    }
    // Some bulk so that a full sync takes a while and can be cut.
    {
        let mut c = members[0].node().client();
        let mut value = vec![0u8; 1000];
        for batch in 0..10 {
            let mut pipe = redis::pipe();
            for i in 0..1000 {
                rng.fill_bytes(&mut value);
                pipe.cmd("SET")
                    .arg(format!("bulk:{batch}:{i}"))
                    .arg(&value[..])
                    .ignore();
            }
            pipe.query::<()>(&mut c).unwrap();
        }
    }
    for m in &members[1..] {
        assert!(
            wait_until(LIMIT, || m.node().info("replication", "master_link_status")
                == "up"),
            "{} never synced",
            m.name
        );
    }

    // The writer follows the current primary.
    let primary_port = Arc::new(AtomicU16::new(members[0].node().port));
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let writer = {
        let (primary_port, stop, acked) = (primary_port.clone(), stop.clone(), acked.clone());
        std::thread::spawn(move || {
            let mut i = 0u64;
            let mut con: Option<(u16, redis::Connection)> = None;
            while !stop.load(Ordering::Relaxed) {
                let port = primary_port.load(Ordering::Relaxed);
                if con.as_ref().is_none_or(|(p, _)| *p != port) {
                    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).unwrap();
                    con = client
                        .get_connection_with_timeout(Duration::from_secs(1))
                        .ok()
                        .map(|c| {
                            let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
                            (port, c)
                        });
                    if con.is_none() {
                        std::thread::sleep(Duration::from_millis(20));
                        continue;
                    }
                }
                let (_, c) = con.as_mut().unwrap();
                let written = redis::cmd("SET")
                    .arg(format!("w:{i}"))
                    .arg(i)
                    .query::<()>(c);
                match written {
                    Ok(()) => {
                        if let Ok(n) = redis::cmd("WAIT").arg(1).arg(200).query::<i64>(c) {
                            if n >= 1 {
                                acked.lock().unwrap().insert(i);
                            }
                        }
                        i += 1;
                    }
                    Err(e) => {
                        if e.is_io_error() || e.is_connection_dropped() {
                            con = None;
                        }
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
            }
        })
    };

    for step in 0..steps {
        let event = rng.random_range(0..6);
        match event {
            0 => {
                let k = rng.random_range(0..relays.len());
                let ms = rng.random_range(200..2500);
                eprintln!("step {step}: outage on relay {k} for {ms} ms");
                relays[k].control.set_outage(true);
                std::thread::sleep(Duration::from_millis(ms));
                relays[k].control.set_outage(false);
            }
            1 => {
                let k = rng.random_range(0..relays.len());
                let loss = rng.random_range(0.005..0.05);
                eprintln!("step {step}: {:.1} % loss on relay {k}", loss * 100.0);
                let lossy = LinkParams {
                    loss,
                    delay: Duration::from_millis(5),
                    ..LinkParams::default()
                };
                relays[k].control.set_params(lossy.clone(), lossy);
                std::thread::sleep(Duration::from_millis(1500));
                relays[k]
                    .control
                    .set_params(LinkParams::default(), LinkParams::default());
            }
            2 => {
                let k = rng.random_range(1..4);
                eprintln!("step {step}: crash and restart {}", members[k].name);
                members[k].crash();
                std::thread::sleep(Duration::from_millis(rng.random_range(100..1000)));
                members[k].start(&pki);
            }
            3 => {
                eprintln!("step {step}: graceful restart of the primary");
                members[0].shutdown();
                std::thread::sleep(Duration::from_millis(300));
                members[0].start(&pki);
                primary_port.store(members[0].node().port, Ordering::Relaxed);
            }
            4 => {
                // A full sync cut mid-way: r2 loses its data, its relay cuts
                // the snapshot transfer, then lets it finish.
                eprintln!("step {step}: r2 full sync cut mid-transfer");
                members[2].crash();
                members[2].dir = None;
                relays[1].control.cut_after_down_bytes(2 << 20);
                members[2].start(&pki);
                wait_until(Duration::from_secs(10), || relays[1].control.in_outage());
                std::thread::sleep(Duration::from_millis(1200));
                relays[1].control.set_outage(false);
            }
            _ => {
                eprintln!("step {step}: steady writes");
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }

    // A planned failover to r1 under load, last.
    let r1_port = members[1].node().port;
    assert!(wait_until(LIMIT, || members[1]
        .node()
        .info("replication", "master_link_status")
        == "up"));
    let failover = cmd(
        &mut members[0].node().client(),
        &[
            "FAILOVER",
            "TO",
            "127.0.0.1",
            &r1_port.to_string(),
            "TIMEOUT",
            "10000",
        ],
    );
    eprintln!("planned failover to r1: {failover:?}");
    assert!(failover.is_ok());
    assert!(
        wait_until(LIMIT, || members[1].node().info("replication", "role")
            == "master"),
        "r1 did not take over"
    );
    primary_port.store(r1_port, Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    for r in &relays {
        r.control.set_outage(false);
    }

    // Convergence: everyone reaches the new primary's offset.
    let primary = members[1].node();
    let target = offset(primary);
    for m in &members {
        if m.name == "r1" {
            continue;
        }
        assert!(
            wait_until(LIMIT, || offset(m.node()) >= target),
            "{} stuck at {} < {target}: {}",
            m.name,
            offset(m.node()),
            m.node().info("replication", "quire_link_last_error")
        );
    }
    let digest = primary.digest();
    for m in &members {
        assert_eq!(m.node().digest(), digest, "digest of {}", m.name);
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 50,
        "the writer made progress ({} acked)",
        acked.len()
    );
    for m in &members {
        let mut c = m.node().client();
        let keys: Vec<String> = acked.iter().map(|i| format!("w:{i}")).collect();
        for chunk in keys.chunks(500) {
            let values: Vec<Option<String>> = redis::cmd("MGET").arg(chunk).query(&mut c).unwrap();
            for (k, v) in chunk.iter().zip(values) {
                assert_eq!(
                    v.as_deref(),
                    Some(&k[2..]),
                    "acked write {k} missing on {}",
                    m.name
                );
            }
        }
    }
    assert_eq!(PANICS.load(Ordering::SeqCst), 0, "a node panicked");
    eprintln!(
        "chaos seed {seed}: {} acked writes verified on 4 nodes",
        acked.len()
    );
}
