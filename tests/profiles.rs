//! The shipped region profiles start a working three-region group: each
//! profile is loaded as an operator would (`--profile NAME`), with only its
//! addresses rewritten to free loopback ports, and replication is checked
//! end to end, including the metrics endpoint.

mod common;

use common::{cmd, wait_until, Pki, TestNode};
use quire::config::{Settings, Sources};
use std::io::{Read, Write};
use std::time::Duration;

fn free_tcp_port() -> u16 {
    common::reserve_port(false)
}

fn free_udp_port() -> u16 {
    common::reserve_port(true)
}

struct Ports {
    repl: u16,
    metrics: u16,
}

fn load_profile(name: &str, pki: &Pki, ports: &Ports, upstream_repl: Option<u16>) -> Settings {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/profiles");
    let mut overrides = vec![
        ("repl.port".to_string(), ports.repl.to_string()),
        ("metrics.port".to_string(), ports.metrics.to_string()),
        (
            "repl.certs".to_string(),
            pki.dir.path().display().to_string(),
        ),
    ];
    if let Some(up) = upstream_repl {
        overrides.push(("replicaof".to_string(), format!("127.0.0.1:{up}")));
    }
    let settings = Settings::load(&Sources {
        profile: Some(name.into()),
        profile_dir: Some(dir),
        overrides,
        ..Default::default()
    })
    .expect("profile loads");
    assert_eq!(settings.node.name, name);
    assert!(
        settings.link.derive().is_some(),
        "profile {name} carries link parameters"
    );
    assert_eq!(settings.repl.backlog.outage_secs(), Some(600.0));
    settings
}

fn start(settings: Settings) -> TestNode {
    TestNode::try_start_in(tempfile::tempdir().unwrap(), move |s| {
        let (port, dir) = (s.port, s.dir.clone());
        *s = settings;
        s.port = port;
        s.dir = dir;
        s.save = Default::default();
    })
    .expect("node starts from its profile")
}

fn scrape(port: u16) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    body
}

fn gauge(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(-1.0)
}

#[test]
fn shipped_profiles_replicate_end_to_end() {
    let pki = Pki::new(&["us-east", "eu-west", "ap-south"]);
    let ports: Vec<Ports> = (0..3)
        .map(|_| Ports {
            repl: free_udp_port(),
            metrics: free_tcp_port(),
        })
        .collect();
    let us = start(load_profile("us-east", &pki, &ports[0], None));
    let eu = start(load_profile(
        "eu-west",
        &pki,
        &ports[1],
        Some(ports[0].repl),
    ));
    let ap = start(load_profile(
        "ap-south",
        &pki,
        &ports[2],
        Some(ports[1].repl),
    ));
    let mut c = us.client();
    for i in 0..500 {
        cmd(
            &mut c,
            &[
                "HSET",
                &format!("user:{i}"),
                "name",
                &format!("n{i}"),
                "region",
                "us",
            ],
        )
        .unwrap();
    }
    let target = us.offset();
    assert!(
        wait_until(Duration::from_secs(30), || ap.offset() >= target
            && eu.offset() >= target),
        "chain did not catch up"
    );
    assert_eq!(ap.digest(), us.digest());
    // Pointed at eu-west's replication port, it reports eu-west's client
    // port (what Sentinel and Redis tools expect in master_port).
    assert_eq!(
        ap.info("replication", "master_port"),
        eu.info("server", "tcp_port"),
        "ap-south follows eu-west"
    );

    let primary = scrape(ports[0].metrics);
    assert!(
        primary.contains("quire_replica_lag_bytes{replica=\"eu-west\""),
        "{primary}"
    );
    assert_eq!(gauge(&primary, "quire_connected_replicas"), 1.0);
    for port in [ports[1].metrics, ports[2].metrics] {
        let text = scrape(port);
        assert_eq!(gauge(&text, "quire_upstream_link_up"), 1.0, "{text}");
        assert!(text.contains("quire_upstream_lag_bytes"));
        assert!(text.contains("quire_repl_compression_ratio{direction=\"received\"}"));
    }
    assert!(scrape(ports[1].metrics).contains("quire_replica_lag_bytes{replica=\"ap-south\""));
}

/// The README's first command: the demo brings up three replicating
/// regions (run briefly on free ports).
#[test]
fn demo_runs_three_replicating_regions() {
    // The demo uses base..base+2 (TCP), +1000 (UDP) and +3000 (TCP): pick
    // them below the ports other tests reserve and the ephemeral range.
    let base = (0..1000u16)
        .map(|i| 5_000 + ((std::process::id() as u16 % 1000 + i) % 1000) * 3)
        .find(|&b| {
            (0..3).all(|i| {
                std::net::TcpListener::bind(("127.0.0.1", b + i)).is_ok()
                    && std::net::UdpSocket::bind(("127.0.0.1", b + 1000 + i)).is_ok()
                    && std::net::TcpListener::bind(("127.0.0.1", b + 3000 + i)).is_ok()
            })
        })
        .expect("free ports for the demo");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_quire"))
        .args([
            "demo",
            "--duration",
            "6",
            "--rate",
            "500",
            "--base-port",
            &base.to_string(),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("demo runs");
    // Under the demo's load the metrics of every region move.
    let metrics = |i: u16| base + 3000 + i;
    let offset_of = |text: &str| gauge(text, "quire_repl_offset_bytes");
    assert!(wait_until(Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", metrics(2))).is_ok()
    }));
    std::thread::sleep(Duration::from_millis(1500));
    let first: Vec<String> = (0..3).map(|i| scrape(metrics(i))).collect();
    std::thread::sleep(Duration::from_millis(1500));
    let second: Vec<String> = (0..3).map(|i| scrape(metrics(i))).collect();
    for i in 0..3 {
        assert!(
            offset_of(&second[i]) > offset_of(&first[i]),
            "region {i} offset did not move:\n{}",
            second[i]
        );
    }
    assert!(
        second[0].contains("quire_replica_lag_bytes{replica=\"eu-west\""),
        "{}",
        second[0]
    );
    assert!(second[0].contains("quire_replica_lag_seconds{replica=\"eu-west\""));
    assert!(second[1].contains("quire_replica_lag_bytes{replica=\"ap-south\""));
    for text in &second[1..] {
        assert_eq!(gauge(text, "quire_upstream_link_up"), 1.0);
        assert!(text.contains("quire_upstream_lag_seconds"));
    }
    let out = child.wait_with_output().expect("demo ends");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = text.rsplit("Quire demo").next().unwrap();
    assert_eq!(
        last.matches("up, rtt").count(),
        2,
        "both replicas streaming:\n{last}"
    );
    assert!(last.contains(&format!("redis-cli -p {base}")));
}
