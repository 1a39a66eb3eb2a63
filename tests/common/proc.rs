//! Real `quire server` processes for tests that kill and restart them:
//! each with its own config file, data directory and log file.

use super::{reserve_port, wait_until, Pki};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A `quire server` process with its own config file and data directory.
pub struct Proc {
    pub child: Child,
    pub port: u16,
    pub dir: PathBuf,
    pub config: PathBuf,
}

impl Proc {
    /// Starts the binary with `toml` (port and dir are added) and waits
    /// until it answers PING (its log replayed).
    pub fn start(dir: &Path, port: u16, toml: &str) -> Proc {
        let config = dir.join("quire.toml");
        std::fs::write(
            &config,
            format!(
                "port = {port}\ndir = {:?}\nsave = \"\"\n{toml}",
                dir.display().to_string()
            ),
        )
        .expect("config");
        Self::spawn(dir, port, &config).until_up("came up")
    }

    /// Waits until the node answers PING (its log replayed); fails the test
    /// if it exits or does not, with its log.
    fn until_up(mut self, what: &str) -> Proc {
        let port = self.port;
        assert!(
            wait_until(Duration::from_secs(30), || self.ping() || self.exited()),
            "node on port {port} never {what}; log:\n{}",
            self.log()
        );
        assert!(
            !self.exited(),
            "node on port {port} exited instead of it {what}; log:\n{}",
            self.log()
        );
        self
    }

    pub fn spawn(dir: &Path, port: u16, config: &Path) -> Proc {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("node.log"))
            .expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_quire"))
            .args(["server", "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("quire starts");
        Proc {
            child,
            port,
            dir: dir.to_path_buf(),
            config: config.to_path_buf(),
        }
    }

    /// Starts the same node again on its directory.
    pub fn restart(dir: &Path, port: u16) -> Proc {
        Self::spawn(dir, port, &dir.join("quire.toml")).until_up("came back")
    }

    pub fn ping(&self) -> bool {
        let Ok(mut con) = self.try_client() else {
            return false;
        };
        matches!(redis::cmd("PING").query::<String>(&mut con), Ok(p) if p == "PONG")
    }

    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    pub fn try_client(&self) -> redis::RedisResult<redis::Connection> {
        let client = redis::Client::open(format!("redis://127.0.0.1:{}/", self.port))?;
        let con = client.get_connection_with_timeout(Duration::from_secs(2))?;
        con.set_read_timeout(Some(Duration::from_secs(10)))?;
        Ok(con)
    }

    pub fn client(&self) -> redis::Connection {
        self.try_client().expect("connect")
    }

    pub fn info(&self, section: &str, field: &str) -> String {
        super::info_field(&mut self.client(), section, field)
    }

    pub fn digest(&self) -> String {
        redis::cmd("DEBUG")
            .arg("DIGEST")
            .query(&mut self.client())
            .expect("digest")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("node.log")).unwrap_or_default()
    }

    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = &self.config;
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn repl_toml(pki: &Pki, name: &str, repl_port: u16, replicaof: Option<u16>) -> String {
    let mut toml = String::new();
    if let Some(up) = replicaof {
        toml.push_str(&format!("replicaof = \"127.0.0.1:{up}\"\n"));
    }
    // A restarted primary is noticed within the idle timeout (its new
    // endpoint cannot reset the old connection).
    toml.push_str(&format!("[node]\nname = \"{name}\"\n[repl]\nport = {repl_port}\ncerts = {:?}\nidle_timeout_ms = 3000\n", pki.dir.path().display().to_string()));
    toml
}

/// A primary and its replica, real processes, each in its own directory.
pub struct Group {
    pub _pki: Pki,
    pub pdir: tempfile::TempDir,
    pub rdir: tempfile::TempDir,
    pub pport: u16,
    pub rrepl: u16,
    pub primary: Proc,
    pub replica: Proc,
}

impl Group {
    pub fn start() -> Group {
        let pki = Pki::new(&["primary", "replica"]);
        let (pdir, rdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (pport, prepl, rport, rrepl) = (
            reserve_port(false),
            reserve_port(true),
            reserve_port(false),
            reserve_port(true),
        );
        let primary = Proc::start(pdir.path(), pport, &repl_toml(&pki, "primary", prepl, None));
        let replica = Proc::start(
            rdir.path(),
            rport,
            &repl_toml(&pki, "replica", rrepl, Some(prepl)),
        );
        Group {
            _pki: pki,
            pdir,
            rdir,
            pport,
            rrepl,
            primary,
            replica,
        }
    }
}
