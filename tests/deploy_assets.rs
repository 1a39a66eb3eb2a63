//! The deploy assets agree with the region profiles: ports, paths,
//! upstreams and commands in the compose file, the Kubernetes manifests,
//! the Dockerfile and the systemd unit.

use quire::config::{parse_host_port, Settings, Sources};
use std::path::{Path, PathBuf};
use yaml_rust2::{Yaml, YamlLoader};

const REGIONS: &[&str] = &["us-east", "eu-west", "ap-south"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn profile(name: &str) -> Settings {
    Settings::load(&Sources {
        profile: Some(name.into()),
        profile_dir: Some(root().join("deploy/profiles")),
        ..Default::default()
    })
    .expect("profile loads")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The region an upstream address of a profile points at.
fn upstream_region(s: &Settings) -> Option<&'static str> {
    let (_, port) = parse_host_port(&s.replicaof).ok()?;
    REGIONS
        .iter()
        .copied()
        .find(|r| profile(r).repl.port == port)
}

fn strs(y: &Yaml) -> Vec<String> {
    y.as_vec()
        .map(|v| {
            v.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn profiles_are_valid_and_form_the_example_topology() {
    assert_eq!(upstream_region(&profile("us-east")), None);
    assert_eq!(upstream_region(&profile("eu-west")), Some("us-east"));
    assert_eq!(upstream_region(&profile("ap-south")), Some("eu-west"));
    let mut ports = std::collections::HashSet::new();
    for r in REGIONS {
        let s = profile(r);
        assert_eq!(s.node.name, *r);
        assert_eq!(s.dir, Path::new("data").join(r));
        for p in [s.port, s.repl.port, s.metrics.port] {
            assert!(ports.insert(p), "port {p} used twice");
        }
    }
}

#[test]
fn compose_matches_profiles() {
    let docs = YamlLoader::load_from_str(&read("deploy/compose/docker-compose.yml"))
        .expect("compose parses");
    let services = &docs[0]["services"];
    for r in REGIONS {
        let s = profile(r);
        let svc = &services[*r];
        assert!(!svc.is_badvalue(), "service {r}");
        assert_eq!(
            strs(&svc["command"]),
            [
                "server",
                "--profile",
                r,
                "--profile-dir",
                "/etc/quire/profiles"
            ]
        );
        let ports = strs(&svc["ports"]);
        for expected in [
            format!("{0}:{0}", s.port),
            format!("{0}:{0}/udp", s.repl.port),
            format!("{0}:{0}", s.metrics.port),
        ] {
            assert!(
                ports.contains(&expected),
                "{r}: {expected} not in {ports:?}"
            );
        }
        let env = &svc["environment"];
        assert_eq!(env["QUIRE_REPL__CERTS"].as_str(), Some("/certs"));
        assert!(strs(&svc["volumes"])
            .iter()
            .any(|v| v.ends_with(":/certs:ro")));
        match upstream_region(&s) {
            Some(up) => assert_eq!(
                env["QUIRE_REPLICAOF"].as_str().map(String::from),
                Some(format!("{up}:{}", profile(up).repl.port))
            ),
            None => assert!(env["QUIRE_REPLICAOF"].is_badvalue()),
        }
    }
}

#[test]
fn kubernetes_manifests_match_profiles() {
    for r in REGIONS {
        let s = profile(r);
        let text = read(&format!("deploy/k8s/{r}.yaml"));
        let docs = YamlLoader::load_from_str(&text).expect("manifest parses");
        let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
        assert_eq!(kinds, ["ConfigMap", "Service", "StatefulSet"]);
        // The ConfigMap carries the profile unchanged.
        let embedded = docs[0]["data"][format!("{r}.toml").as_str()]
            .as_str()
            .expect("profile in ConfigMap");
        assert_eq!(
            embedded.trim(),
            read(&format!("deploy/profiles/{r}.toml")).trim()
        );
        let service_ports: Vec<(i64, String)> = docs[1]["spec"]["ports"]
            .as_vec()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["port"].as_i64().unwrap(),
                    p["protocol"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        assert_eq!(
            service_ports,
            [
                (s.port as i64, "TCP".into()),
                (s.repl.port as i64, "UDP".into()),
                (s.metrics.port as i64, "TCP".into())
            ]
        );
        let pod = &docs[2]["spec"]["template"]["spec"];
        let container = &pod["containers"][0];
        assert_eq!(
            strs(&container["args"]),
            [
                "server",
                "--profile",
                r,
                "--profile-dir",
                "/etc/quire/profiles"
            ]
        );
        let container_ports: Vec<i64> = container["ports"]
            .as_vec()
            .unwrap()
            .iter()
            .map(|p| p["containerPort"].as_i64().unwrap())
            .collect();
        assert_eq!(
            container_ports,
            [s.port as i64, s.repl.port as i64, s.metrics.port as i64]
        );
        let env: Vec<(String, String)> = container["env"]
            .as_vec()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["name"].as_str().unwrap().to_string(),
                    e["value"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        assert_eq!(get("QUIRE_REPL__CERTS").as_deref(), Some("/certs"));
        match upstream_region(&s) {
            Some(up) => {
                assert_eq!(
                    get("QUIRE_REPLICAOF"),
                    Some(format!("quire-{up}:{}", profile(up).repl.port))
                );
                assert_eq!(get("QUIRE_REPL__UPSTREAM_NAME").as_deref(), Some(up));
            }
            None => assert_eq!(get("QUIRE_REPLICAOF"), None),
        }
        let mounts: Vec<String> = container["volumeMounts"]
            .as_vec()
            .unwrap()
            .iter()
            .map(|m| m["mountPath"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(mounts, ["/data", "/certs", "/etc/quire/profiles"]);
        assert_eq!(
            pod["volumes"][0]["secret"]["secretName"].as_str(),
            Some("quire-certs")
        );
        assert_eq!(
            pod["volumes"][1]["configMap"]["name"]
                .as_str()
                .map(String::from),
            Some(format!("quire-{r}-profile"))
        );
    }
}

#[test]
fn dockerfile_and_systemd_unit_use_the_profile_paths() {
    let dockerfile = read("deploy/docker/Dockerfile");
    assert!(dockerfile.contains("COPY deploy/profiles /etc/quire/profiles"));
    for r in REGIONS {
        let s = profile(r);
        assert!(
            dockerfile.contains(&format!(" {}/udp", s.repl.port)),
            "EXPOSE {}/udp",
            s.repl.port
        );
        assert!(dockerfile.contains(&format!(" {}", s.port)));
    }
    let unit = read("deploy/systemd/quire@.service");
    assert!(unit.contains(
        "ExecStart=/usr/local/bin/quire server --profile %i --profile-dir /etc/quire/profiles"
    ));
    assert!(unit.contains("WorkingDirectory=/var/lib/quire"));
    assert!(unit.contains("ReadWritePaths=/var/lib/quire"));
}
