//! Layered settings: built-in defaults < profile (`deploy/profiles/NAME.toml`)
//! < config file (`--config`) < `QUIRE_*` environment < command-line flags.
//!
//! Files are TOML read with the `config` crate. Unknown keys and bad values
//! are errors naming the key; a node refuses to start on them. At run time
//! `CONFIG GET/SET` works on the parameters in [`params`], under Redis's
//! names (`proto-max-bulk-len`), and `CONFIG REWRITE` writes the file back.

pub mod params;
pub use crate::keyspace::EncodingLimits;

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("config: {0}")]
    Load(#[from] config::ConfigError),
    #[error("config: invalid value for '{key}': {reason}")]
    Invalid { key: &'static str, reason: String },
    #[error("config: profile '{name}' not found (looked for {path})")]
    ProfileNotFound { name: String, path: String },
}

mod types;

pub use types::{optional_tolerance, MaxmemoryPolicy, OutageTolerance, SaveRule, SaveRules};

/// Congestion controller of replication links (`repl.congestion`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Congestion {
    Bbr,
    Cubic,
    Newreno,
}

impl Congestion {
    pub fn as_str(self) -> &'static str {
        match self {
            Congestion::Bbr => "bbr",
            Congestion::Cubic => "cubic",
            Congestion::Newreno => "newreno",
        }
    }
}

/// Whether datagram copies are sent (`repl.datagrams`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DatagramMode {
    Off,
    /// Copies whenever there is room for them, loss or not.
    On,
    /// Copies while the link has lost packets within
    /// `replication::fastpath::LOSS_MEMORY` (or is younger than that: a new
    /// link is presumed lossy until it has shown otherwise), its round trip
    /// is at least `fastpath::MIN_AUTO_RTT`, and there is room for them.
    Auto,
}

impl std::str::FromStr for DatagramMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "off" => Ok(DatagramMode::Off),
            "on" => Ok(DatagramMode::On),
            "auto" => Ok(DatagramMode::Auto),
            _ => Err(format!("'{s}' is not off, on or auto")),
        }
    }
}

impl DatagramMode {
    pub fn as_str(self) -> &'static str {
        match self {
            DatagramMode::Off => "off",
            DatagramMode::On => "on",
            DatagramMode::Auto => "auto",
        }
    }
}

impl std::fmt::Display for DatagramMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything a node is configured with. Field names are the TOML keys;
/// nested tables map to `QUIRE_SECTION__KEY` environment variables.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Address the client (RESP) port binds. Loopback by default so a fresh
    /// node is never exposed by accident.
    pub bind: String,
    /// Client TCP port.
    pub port: u16,
    /// Data directory: snapshots, the log (`backlog/`), replication state.
    pub dir: PathBuf,
    /// Snapshot file name inside `dir`.
    pub dbfilename: String,
    /// Password for AUTH; empty means no authentication.
    pub requirepass: String,
    /// Redis-style save rules, "SECONDS CHANGES ..." ("" disables).
    pub save: SaveRules,
    /// The log is the write-ahead log: replayed on top of the newest
    /// snapshot at start-up and kept since that snapshot. `false`: the log
    /// is kept only for partial resyncs, and a crash loses the writes made
    /// since the last snapshot (Redis's `appendonly no`).
    pub appendonly: bool,
    /// Redis's `aof-use-rdb-preamble`. Quire's log always rebuilds from its
    /// snapshot plus the commands after it (what `yes` means in Redis), so
    /// the value is kept for CONFIG GET and REWRITE only.
    pub aof_use_rdb_preamble: bool,
    /// When log writes are fsynced (Redis's `appendfsync`).
    pub appendfsync: FsyncPolicy,
    /// Take a snapshot (compacting the log) once the log since the last one
    /// has grown by this percentage of the snapshot's size (0: never).
    pub auto_aof_rewrite_percentage: u64,
    /// ...and is at least this many bytes.
    pub auto_aof_rewrite_min_size: u64,
    /// A last record cut short by a crash is cut off at start-up with a
    /// warning; `false` refuses to start instead.
    pub aof_load_truncated: bool,
    /// Most clients connected at once; more are refused with Redis's error.
    pub maxclients: u32,
    /// Longest bulk string a client may send.
    pub proto_max_bulk_len: u64,
    /// Memory limit in bytes, compared with the allocator's count (INFO
    /// `used_memory`) less the log's in-memory tail; 0 = none. Above it,
    /// keys are evicted under `maxmemory_policy`; when none can be,
    /// commands that may grow the data set are refused with Redis's OOM
    /// error. Replicas never evict (`replica-ignore-maxmemory`).
    pub maxmemory: u64,
    /// Which keys go at `maxmemory`. The policy also chooses how keys'
    /// access is tracked (LRU idle time or LFU counter: OBJECT IDLETIME /
    /// FREQ).
    pub maxmemory_policy: MaxmemoryPolicy,
    /// Keys sampled per database per eviction round.
    pub maxmemory_samples: u32,
    /// How long one command may spend evicting (0-100; Redis's scale:
    /// 10 is 500 us, 100 is unbounded); the cron carries on after it.
    pub maxmemory_eviction_tenacity: u32,
    /// Replicas leave eviction to their primary (whose DELs they apply).
    pub replica_ignore_maxmemory: bool,
    /// Evictions replicate as UNLINK instead of DEL.
    pub lazyfree_lazy_eviction: bool,
    /// Commands taking at least this many microseconds go to the slow log
    /// (negative: none; 0: every command).
    pub slowlog_log_slower_than: i64,
    /// Keyspace notification classes (`notify-keyspace-events`, parsed:
    /// see `keyspace::notify`).
    #[serde(with = "notify_classes")]
    pub notify_keyspace_events: u32,
    /// Entries ACL LOG keeps.
    pub acllog_max_len: u64,
    /// Entries the slow log keeps.
    pub slowlog_max_len: u64,
    /// Events taking at least this many milliseconds go to the latency
    /// monitor (0: off).
    pub latency_monitor_threshold: u64,
    /// LFU counter growth (Redis's `lfu-log-factor`).
    pub lfu_log_factor: u32,
    /// Minutes per LFU counter decrement (Redis's `lfu-decay-time`).
    pub lfu_decay_time: u32,
    /// Seconds between the PINGs fed to Redis-protocol replicas.
    pub repl_ping_replica_period: u64,
    /// Milliseconds a script runs before other clients get `-BUSY` and
    /// SCRIPT KILL may stop it (Redis's `busy-reply-threshold`).
    pub busy_reply_threshold: u64,
    /// Replies a normal client has not read beyond this many bytes close
    /// the client (Redis's hard limit for the "normal" class; 0 = none).
    pub client_output_buffer_limit_normal: u64,
    /// Close clients idle this many seconds (0 = never).
    pub timeout: u64,
    /// Background task frequency (active expiry, save rules), per second.
    pub hz: u32,
    /// Worker threads serving clients and links (0 = from the machine, see
    /// [`Settings::worker_threads`]).
    pub threads: usize,
    /// Name of this node and its region, used in logs and INFO.
    pub node: NodeSettings,
    /// Upstream to replicate from, "host:port" of its replication port;
    /// empty for a primary.
    pub replicaof: String,
    /// Password this node sends when it asks an upstream's client port
    /// for its replication endpoint (`REPLICAOF host client-port` on a
    /// primary with `requirepass`). The link itself is authenticated by
    /// certificates.
    pub masterauth: String,
    /// Sentinel's preference among replicas for promotion: lower first,
    /// 0 never (INFO's `slave_priority`).
    pub replica_priority: u32,
    /// Redis's `sanitize-dump-payload` (yes|no|clients): RESTORE checks
    /// every payload in full whatever it says; kept for CONFIG.
    pub sanitize_dump_payload: String,
    /// Refuse writes from clients while a replica (Redis's default).
    pub replica_read_only: bool,
    /// Serve reads while the link to the upstream is down.
    pub replica_serve_stale_data: bool,
    /// Refuse writes unless this many replicas are connected with lag
    /// below `min_replicas_max_lag` seconds (0 disables).
    pub min_replicas_to_write: u32,
    pub min_replicas_max_lag: u64,
    /// Replication transport and stream.
    pub repl: ReplSettings,
    /// The WAN link to the upstream (or, on a primary, to its replicas):
    /// QUIC windows, batching and backlog size are derived from it.
    pub link: LinkSettings,
    /// Prometheus endpoint.
    pub metrics: MetricsSettings,
    /// Redis's compact-encoding thresholds (OBJECT ENCODING answers by
    /// them; CONFIG SET under Redis's names and their ziplist aliases).
    pub encoding: EncodingLimits,
}

/// When the log is fsynced. A process crash loses nothing under any of
/// them (bytes reach the OS before the write is acknowledged); they differ
/// on a power loss or kernel crash.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum FsyncPolicy {
    /// A write is acknowledged after its bytes are fsynced (group commit:
    /// one fsync covers every write that arrived while the last one ran).
    Always,
    /// Fsync once a second: a power loss loses at most about a second.
    #[default]
    Everysec,
    /// Leave flushing to the OS.
    No,
}

impl FsyncPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            FsyncPolicy::Always => "always",
            FsyncPolicy::Everysec => "everysec",
            FsyncPolicy::No => "no",
        }
    }
}

impl std::str::FromStr for FsyncPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "always" => Ok(FsyncPolicy::Always),
            "everysec" => Ok(FsyncPolicy::Everysec),
            "no" => Ok(FsyncPolicy::No),
            _ => Err(format!("'{s}' is not always, everysec or no")),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct LinkSettings {
    /// Expected round-trip time, milliseconds (0: unknown, keep defaults).
    pub rtt_ms: u64,
    /// Expected bandwidth, megabits per second (0: unknown).
    pub bandwidth_mbit: u64,
    /// Outage to survive without a full resync (sets
    /// `repl.backlog.outage_tolerance` unless that is set).
    #[serde(with = "optional_tolerance", skip_serializing_if = "Option::is_none")]
    pub outage_tolerance: Option<OutageTolerance>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
#[derive(Default)]
pub struct MetricsSettings {
    /// Address of the HTTP `/metrics` endpoint; empty means `bind`.
    pub bind: String,
    /// Port of the endpoint; 0 disables it.
    pub port: u16,
}

/// Values derived from the link parameters, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Derived {
    pub bdp_bytes: u64,
    pub window_bytes: u64,
    pub batch_max_bytes: usize,
    pub batch_max_delay_ms: u64,
    pub idle_timeout_ms: u64,
}

impl LinkSettings {
    /// Sizes for this link: flow-control windows of twice the
    /// bandwidth-delay product (so one lost packet's recovery does not
    /// stall the sender), batches that fill about a sixteenth of the BDP,
    /// a batching delay well under the RTT but never over 2 ms (it adds
    /// to every write's lag; longer delays on long links measured no fewer
    /// wire bytes — their batches split into more datagram fragments), and
    /// an idle timeout of at least 30 s or 20 RTTs.
    pub fn derive(&self) -> Option<Derived> {
        if self.rtt_ms == 0 || self.bandwidth_mbit == 0 {
            return None;
        }
        let bdp_bytes = self.bandwidth_mbit * 1_000_000 / 8 * self.rtt_ms / 1000;
        Some(Derived {
            bdp_bytes,
            window_bytes: (2 * bdp_bytes).clamp(1 << 20, 256 << 20),
            batch_max_bytes: ((bdp_bytes / 16) as usize).clamp(64 * 1024, 1 << 20),
            batch_max_delay_ms: (self.rtt_ms / 40).clamp(1, 2),
            idle_timeout_ms: (20 * self.rtt_ms).max(30_000),
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ReplSettings {
    /// Address of the QUIC replication endpoint; empty means the client
    /// `bind` address.
    pub bind: String,
    /// UDP port of the replication endpoint (0 picks a free one).
    pub port: u16,
    /// Directory with `ca.pem`, `NODE.pem`, `NODE.key`.
    pub certs: PathBuf,
    /// Name the upstream's certificate must carry; empty means the host of
    /// `replicaof`.
    pub upstream_name: String,
    /// Largest batch of stream bytes compressed and sent at once.
    pub batch_max_bytes: usize,
    /// Longest a written byte waits to be batched with later ones.
    pub batch_max_delay_ms: u64,
    /// zstd level for the stream (negative = faster and larger; 1 is the
    /// default: on JSON-like writes it compresses as well as 3, at twice
    /// the speed).
    pub compression_level: i32,
    /// Keep-alive interval on a replication link.
    pub keepalive_ms: u64,
    /// A link silent this long is declared dead (and redialled). Long
    /// enough to ride out short cuts; keep-alives keep quiet links up.
    pub idle_timeout_ms: u64,
    /// QUIC stream flow-control window (≥ bandwidth × RTT of the link).
    pub window_bytes: u64,
    /// How long a full-sync snapshot file is kept after its last use, so a
    /// cut transfer can resume and other replicas can reuse it.
    pub snapshot_keep_secs: u64,
    /// Bandwidth cap of all full-sync snapshot transfers together, in
    /// megabits per second (0: none), so a herd of full syncs after a
    /// network event cannot crowd out the live streams to the replicas
    /// that are streaming.
    pub snapshot_max_mbit: u64,
    /// Bandwidth cap of one snapshot transfer (0: none).
    pub snapshot_link_max_mbit: u64,
    /// Congestion controller of replication links: "bbr" (default),
    /// "cubic" or "newreno". BBR keeps the stream flowing on lossy links
    /// where Cubic's window collapses (benches/RESULTS.md has the numbers).
    pub congestion: Congestion,
    /// Loss-resilient fast path: "auto" (default) also sends each batch as
    /// QUIC datagrams while the link has lost packets in the last 30 s (a
    /// new link counts as lossy until then), has a round trip of 5 ms or
    /// more, and has room; "on" whenever there is room; "off" stream only.
    /// The
    /// replica applies whichever copy arrives first.
    pub datagrams: DatagramMode,
    /// Delay of a batch's datagram copy after its stream copy, so the two
    /// leave in different packets (one loss cannot take both).
    pub datagram_stagger_us: u64,
    /// Replication addresses of the other nodes of the group. A primary
    /// probes them every second; if one has seen a newer promotion epoch,
    /// this node has been replaced: it fences itself and follows it.
    pub peers: Vec<String>,
    /// Names (or globs, `eu-*`) a replica's certificate must carry to
    /// replicate from this node, checked after TLS has proved the CA
    /// signed it; the same list admits fencing probes. Empty admits every
    /// certificate of the CA, with a warning at start. The region profiles
    /// list the group's own nodes.
    pub allowed_replicas: Vec<String>,
    /// Serve a full sync even to a replica that holds writes of this
    /// node's history that this node lost (it came back behind what it had
    /// acknowledged). Off: such a replica is refused and keeps its data;
    /// see deploy/RUNBOOK.md.
    pub wipe_newer_replicas: bool,
    pub backlog: BacklogSettings,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BacklogSettings {
    /// Bytes of recent stream kept for partial resyncs (the minimum when
    /// `outage_tolerance` is set).
    pub size: u64,
    /// Length of link outage to survive without a full resync, e.g. "10m"
    /// (the default); the backlog grows to peak write rate × this × 1.5,
    /// within `max_disk` and half the disk's free space. Empty: off (the
    /// backlog is `size`).
    #[serde(with = "optional_tolerance", skip_serializing_if = "Option::is_none")]
    pub outage_tolerance: Option<OutageTolerance>,
    /// Upper bound of the backlog on disk.
    pub max_disk: u64,
    /// Bytes of the most recent stream also kept in memory.
    pub memory: u64,
    /// Size of one backlog segment file.
    pub segment_bytes: u64,
}

/// The outage a backlog is sized for unless configured: ten minutes of
/// the peak write rate (within `max_disk` and the disk's free space), so
/// a WAN cut of that long ends in a partial resync.
pub const DEFAULT_OUTAGE_TOLERANCE_SECS: f64 = 600.0;

impl Default for BacklogSettings {
    fn default() -> Self {
        BacklogSettings {
            size: 64 << 20,
            outage_tolerance: Some(OutageTolerance::from_secs(DEFAULT_OUTAGE_TOLERANCE_SECS)),
            max_disk: 10 << 30,
            memory: 16 << 20,
            segment_bytes: 16 << 20,
        }
    }
}

impl BacklogSettings {
    pub fn outage_secs(&self) -> Option<f64> {
        self.outage_tolerance.map(OutageTolerance::secs)
    }
}

/// Parses "500ms", "90s", "10m", "2h", "1d" or a bare number of seconds;
/// empty means unset.
pub fn parse_duration_secs(text: &str) -> Result<Option<f64>, String> {
    let t = text.trim();
    if t.is_empty() {
        return Ok(None);
    }
    let (digits, unit) = t
        .find(|c: char| c.is_ascii_alphabetic())
        .map(|i| t.split_at(i))
        .unwrap_or((t, "s"));
    let n: f64 = digits
        .trim()
        .parse()
        .map_err(|_| format!("'{text}' is not a duration like 90s, 10m, 2h"))?;
    let mult = match unit {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        _ => return Err(format!("'{text}' has an unknown unit (use ms, s, m, h, d)")),
    };
    if n < 0.0 || !n.is_finite() {
        return Err(format!("'{text}' must be a positive duration"));
    }
    Ok(Some(n * mult))
}

impl Default for ReplSettings {
    fn default() -> Self {
        ReplSettings {
            bind: String::new(),
            port: 7379,
            certs: PathBuf::from("certs"),
            upstream_name: String::new(),
            batch_max_bytes: 64 * 1024,
            batch_max_delay_ms: 2,
            compression_level: 1,
            keepalive_ms: 1000,
            idle_timeout_ms: 30_000,
            window_bytes: 16 << 20,
            peers: Vec::new(),
            allowed_replicas: Vec::new(),
            congestion: Congestion::Bbr,
            datagrams: DatagramMode::Auto,
            datagram_stagger_us: 1000,
            snapshot_keep_secs: 300,
            snapshot_max_mbit: 0,
            snapshot_link_max_mbit: 0,
            wipe_newer_replicas: false,
            backlog: BacklogSettings::default(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NodeSettings {
    /// Node name (its certificate's name in replication).
    pub name: String,
    /// Region label reported in INFO and logs.
    pub region: String,
}

impl Default for NodeSettings {
    fn default() -> Self {
        NodeSettings {
            name: "quire".into(),
            region: "local".into(),
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            bind: "127.0.0.1".into(),
            port: 6379,
            dir: PathBuf::from("."),
            dbfilename: "dump.quire".into(),
            requirepass: String::new(),
            save: "3600 1 300 100 60 10000"
                .parse()
                .expect("valid default rules"),
            appendonly: true,
            aof_use_rdb_preamble: true,
            appendfsync: FsyncPolicy::Everysec,
            auto_aof_rewrite_percentage: 100,
            auto_aof_rewrite_min_size: 64 << 20,
            aof_load_truncated: true,
            maxclients: 10000,
            proto_max_bulk_len: 512 * 1024 * 1024,
            maxmemory: 0,
            maxmemory_policy: MaxmemoryPolicy::Noeviction,
            maxmemory_samples: 5,
            maxmemory_eviction_tenacity: 10,
            replica_ignore_maxmemory: true,
            lazyfree_lazy_eviction: false,
            slowlog_log_slower_than: 10_000,
            slowlog_max_len: 128,
            acllog_max_len: 128,
            notify_keyspace_events: 0,
            latency_monitor_threshold: 0,
            lfu_log_factor: 10,
            lfu_decay_time: 1,
            repl_ping_replica_period: 10,
            busy_reply_threshold: 5000,
            client_output_buffer_limit_normal: 0,
            timeout: 0,
            hz: 10,
            threads: 0,
            node: NodeSettings::default(),
            replicaof: String::new(),
            masterauth: String::new(),
            replica_priority: 100,
            sanitize_dump_payload: "no".into(),
            replica_read_only: true,
            replica_serve_stale_data: true,
            min_replicas_to_write: 0,
            min_replicas_max_lag: 10,
            repl: ReplSettings::default(),
            link: LinkSettings::default(),
            metrics: MetricsSettings::default(),
            encoding: EncodingLimits::default(),
        }
    }
}

/// Where settings come from, lowest precedence first.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    pub profile: Option<String>,
    pub profile_dir: Option<PathBuf>,
    pub file: Option<PathBuf>,
    /// Read `QUIRE_*` variables (off in unit tests).
    pub env: bool,
    /// Command-line overrides as (TOML key path, value).
    pub overrides: Vec<(String, String)>,
}

impl Sources {
    pub fn profile_path(&self) -> Option<PathBuf> {
        let name = self.profile.as_ref()?;
        let dir = self
            .profile_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("deploy/profiles"));
        Some(dir.join(format!("{name}.toml")))
    }

    /// The profile, file, environment and command-line layers, in order
    /// of precedence, on top of `builder`.
    fn layers(
        &self,
        mut builder: config::ConfigBuilder<config::builder::DefaultState>,
    ) -> Result<config::ConfigBuilder<config::builder::DefaultState>, ConfigError> {
        if let Some(path) = self.profile_path() {
            if !path.exists() {
                return Err(ConfigError::ProfileNotFound {
                    name: self.profile.clone().unwrap_or_default(),
                    path: path.display().to_string(),
                });
            }
            builder = builder
                .add_source(config::File::from(path.as_path()).format(config::FileFormat::Toml));
        }
        if let Some(file) = &self.file {
            builder = builder.add_source(
                config::File::from(file.as_path())
                    .format(config::FileFormat::Toml)
                    .required(true),
            );
        }
        if self.env {
            builder = builder.add_source(
                config::Environment::with_prefix("QUIRE")
                    .prefix_separator("_")
                    .separator("__")
                    .try_parsing(true),
            );
        }
        for (key, value) in &self.overrides {
            builder = builder.set_override(key.as_str(), value.as_str())?;
        }
        Ok(builder)
    }
}

impl Settings {
    /// How keys' access is tracked under this maxmemory policy.
    pub fn access_policy(&self) -> crate::keyspace::AccessPolicy {
        if matches!(
            self.maxmemory_policy,
            MaxmemoryPolicy::AllkeysLfu | MaxmemoryPolicy::VolatileLfu
        ) {
            crate::keyspace::AccessPolicy::Lfu {
                log_factor: self.lfu_log_factor,
                decay_minutes: self.lfu_decay_time,
            }
        } else {
            crate::keyspace::AccessPolicy::Lru
        }
    }

    /// The keyspace's view of `maxmemory-policy`; None for noeviction.
    pub fn eviction_policy(&self) -> Option<crate::keyspace::EvictionPolicy> {
        use crate::keyspace::{EvictionPolicy, Rank, Victims};
        let (victims, rank) = match self.maxmemory_policy {
            MaxmemoryPolicy::Noeviction => return None,
            MaxmemoryPolicy::AllkeysLru => (Victims::AllKeys, Rank::Lru),
            MaxmemoryPolicy::AllkeysLfu => (Victims::AllKeys, Rank::Lfu),
            MaxmemoryPolicy::AllkeysRandom => (Victims::AllKeys, Rank::Random),
            MaxmemoryPolicy::VolatileLru => (Victims::Volatile, Rank::Lru),
            MaxmemoryPolicy::VolatileLfu => (Victims::Volatile, Rank::Lfu),
            MaxmemoryPolicy::VolatileRandom => (Victims::Volatile, Rank::Random),
            MaxmemoryPolicy::VolatileTtl => (Victims::Volatile, Rank::Ttl),
        };
        Some(EvictionPolicy { victims, rank })
    }

    /// The most time one command spends evicting (Redis's
    /// evictionTimeLimitUs); None = until under the limit.
    pub fn eviction_time_limit(&self) -> Option<std::time::Duration> {
        let t = self.maxmemory_eviction_tenacity;
        if t >= 100 {
            return None;
        }
        let us = if t <= 10 {
            50.0 * t as f64
        } else {
            500.0 * 1.15f64.powi(t as i32 - 10)
        };
        Some(std::time::Duration::from_micros(us as u64))
    }

    pub fn load(sources: &Sources) -> Result<Settings, ConfigError> {
        let defaults = config::Config::try_from(&Settings::default())?;
        let layered = sources
            .layers(config::Config::builder().add_source(defaults))?
            .build()?;
        // The same layers without the defaults: which keys someone set.
        let explicit = sources.layers(config::Config::builder())?.build()?;
        let mut settings: Settings = layered.try_deserialize()?;
        settings.apply_link(|key| explicit.get::<config::Value>(key).is_ok());
        settings.validate()?;
        Ok(settings)
    }

    /// Fills the transport, batching and backlog settings that no layer
    /// set (`is_set` says which were) from the link parameters: explicit
    /// values win, whatever they are.
    pub fn apply_link(&mut self, is_set: impl Fn(&str) -> bool) {
        if let Some(d) = self.link.derive() {
            if !is_set("repl.window_bytes") {
                self.repl.window_bytes = d.window_bytes;
            }
            if !is_set("repl.batch_max_bytes") {
                self.repl.batch_max_bytes = d.batch_max_bytes;
            }
            if !is_set("repl.batch_max_delay_ms") {
                self.repl.batch_max_delay_ms = d.batch_max_delay_ms;
            }
            if !is_set("repl.idle_timeout_ms") {
                self.repl.idle_timeout_ms = d.idle_timeout_ms;
            }
        }
        if !is_set("repl.backlog.outage_tolerance") && self.link.outage_tolerance.is_some() {
            self.repl.backlog.outage_tolerance = self.link.outage_tolerance;
        }
    }

    /// The runtime's worker threads: `threads`, or when 0 one per core
    /// but one (at most 8), and a single one on machines of two cores or
    /// fewer. The dataset is behind one lock, so more workers parallelize
    /// socket I/O and parsing, not commands; on a small machine the
    /// cross-thread wake-ups cost more than they give (RESULTS.md: on 2
    /// cores, pipelined INCR went from 0.89× to 0.98× of Redis's rate and
    /// SADD from 0.91× to 1.03× with one worker).
    pub fn worker_threads(&self) -> usize {
        if self.threads > 0 {
            return self.threads;
        }
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        if cores <= 2 {
            1
        } else {
            (cores - 1).min(8)
        }
    }

    /// Checks values serde cannot: rule syntax, ranges.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.maxmemory_samples == 0 || self.maxmemory_samples > 64 {
            return Err(ConfigError::Invalid {
                key: "maxmemory_samples",
                reason: "must be between 1 and 64".into(),
            });
        }
        if self.maxmemory_eviction_tenacity > 100 {
            return Err(ConfigError::Invalid {
                key: "maxmemory_eviction_tenacity",
                reason: "must be between 0 and 100".into(),
            });
        }
        if self.hz == 0 || self.hz > 500 {
            return Err(ConfigError::Invalid {
                key: "hz",
                reason: "must be between 1 and 500".into(),
            });
        }
        if self.threads > 256 {
            return Err(ConfigError::Invalid {
                key: "threads",
                reason: "must be between 0 (automatic) and 256".into(),
            });
        }
        if self.maxclients == 0 {
            return Err(ConfigError::Invalid {
                key: "maxclients",
                reason: "must be at least 1".into(),
            });
        }
        if self.proto_max_bulk_len < 1024 {
            return Err(ConfigError::Invalid {
                key: "proto_max_bulk_len",
                reason: "must be at least 1024".into(),
            });
        }
        if self.bind.parse::<std::net::IpAddr>().is_err() && self.bind != "localhost" {
            return Err(ConfigError::Invalid {
                key: "bind",
                reason: format!("'{}' is not an IP address", self.bind),
            });
        }
        if self.dbfilename.contains('/') {
            return Err(ConfigError::Invalid {
                key: "dbfilename",
                reason: "must be a file name, not a path".into(),
            });
        }
        if !self.replicaof.is_empty() {
            parse_host_port(&self.replicaof).map_err(|reason| ConfigError::Invalid {
                key: "replicaof",
                reason,
            })?;
        }
        if !self.repl.bind.is_empty() && self.repl.bind.parse::<std::net::IpAddr>().is_err() {
            return Err(ConfigError::Invalid {
                key: "repl.bind",
                reason: format!("'{}' is not an IP address", self.repl.bind),
            });
        }
        if !(1024..=(4 << 20)).contains(&self.repl.batch_max_bytes) {
            return Err(ConfigError::Invalid {
                key: "repl.batch_max_bytes",
                reason: "must be between 1024 and 4194304".into(),
            });
        }
        if !(-7..=22).contains(&self.repl.compression_level) || self.repl.compression_level == 0 {
            return Err(ConfigError::Invalid {
                key: "repl.compression_level",
                reason: "must be between -7 and 22, not 0".into(),
            });
        }
        if self.repl.backlog.size < 16 * 1024 {
            return Err(ConfigError::Invalid {
                key: "repl.backlog.size",
                reason: "must be at least 16384".into(),
            });
        }
        if self.repl.keepalive_ms == 0 || self.repl.idle_timeout_ms <= self.repl.keepalive_ms {
            return Err(ConfigError::Invalid {
                key: "repl.idle_timeout_ms",
                reason: "must be greater than repl.keepalive_ms (and keepalive_ms > 0)".into(),
            });
        }
        if self.repl.datagram_stagger_us > 100_000 {
            return Err(ConfigError::Invalid {
                key: "repl.datagram_stagger_us",
                reason: "must be at most 100000".into(),
            });
        }
        if let Some(bad) = self
            .repl
            .allowed_replicas
            .iter()
            .find(|p| p.trim().is_empty() || p.trim() != p.as_str())
        {
            return Err(ConfigError::Invalid {
                key: "repl.allowed_replicas",
                reason: format!("{bad:?} is not a name or pattern (empty or with spaces)"),
            });
        }
        for peer in &self.repl.peers {
            parse_host_port(peer).map_err(|reason| ConfigError::Invalid {
                key: "repl.peers",
                reason,
            })?;
        }
        if !(64 * 1024..=(1 << 30)).contains(&self.repl.window_bytes) {
            return Err(ConfigError::Invalid {
                key: "repl.window_bytes",
                reason: "must be between 65536 and 1073741824".into(),
            });
        }
        if !self.metrics.bind.is_empty() && self.metrics.bind.parse::<std::net::IpAddr>().is_err() {
            return Err(ConfigError::Invalid {
                key: "metrics.bind",
                reason: format!("'{}' is not an IP address", self.metrics.bind),
            });
        }
        if self.repl.backlog.max_disk < self.repl.backlog.size {
            return Err(ConfigError::Invalid {
                key: "repl.backlog.max_disk",
                reason: "must be at least repl.backlog.size".into(),
            });
        }
        if self.repl.backlog.memory < 64 * 1024 {
            return Err(ConfigError::Invalid {
                key: "repl.backlog.memory",
                reason: "must be at least 65536".into(),
            });
        }
        if self.repl.backlog.segment_bytes < 4096 {
            return Err(ConfigError::Invalid {
                key: "repl.backlog.segment_bytes",
                reason: "must be at least 4096".into(),
            });
        }
        Ok(())
    }

    /// The replication endpoint's address.
    pub fn repl_addr(&self) -> Result<std::net::SocketAddr, ConfigError> {
        let host = if self.repl.bind.is_empty() {
            self.bind.as_str()
        } else {
            self.repl.bind.as_str()
        };
        let host = if host == "localhost" {
            "127.0.0.1"
        } else {
            host
        };
        let ip: std::net::IpAddr = host.parse().map_err(|_| ConfigError::Invalid {
            key: "repl.bind",
            reason: format!("'{host}' is not an IP address"),
        })?;
        Ok(std::net::SocketAddr::new(ip, self.repl.port))
    }

    pub fn snapshot_path(&self) -> PathBuf {
        self.dir.join(&self.dbfilename)
    }

    /// Writes these settings as TOML to `path` atomically (CONFIG REWRITE).
    pub fn write_toml(&self, path: &Path) -> std::io::Result<()> {
        let text = toml_string(self);
        crate::persist::write_atomically(path, text.as_bytes())
    }
}

/// Splits "host:port" (IPv6 hosts in brackets).
pub fn parse_host_port(text: &str) -> Result<(String, u16), String> {
    let (host, port) = text
        .rsplit_once(':')
        .ok_or_else(|| format!("'{text}' is not host:port"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("'{port}' is not a port number"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || port == 0 {
        return Err(format!("'{text}' is not host:port"));
    }
    Ok((host.to_string(), port))
}

/// Serialises settings as TOML, the format [`Settings::load`] reads back.
pub fn toml_string(s: &Settings) -> String {
    // Every field is a string, number, bool, list or table of those, none
    // above i64::MAX (validated): serialising cannot fail.
    toml::to_string(s).unwrap_or_else(|e| format!("# cannot write settings as TOML: {e}\n"))
}

/// Parses save rules (see [`SaveRules`]).
pub fn parse_save_rules(text: &str) -> Result<Vec<SaveRule>, String> {
    text.parse::<SaveRules>().map(|r| r.rules().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn layers_and_errors_name_the_key() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        writeln!(file, "port = 7000\n[node]\nregion = \"eu-west\"").unwrap();
        let sources = Sources {
            file: Some(file.path().to_path_buf()),
            overrides: vec![("port".into(), "7001".into())],
            ..Default::default()
        };
        let s = Settings::load(&sources).unwrap();
        assert_eq!(s.port, 7001);
        assert_eq!(s.node.region, "eu-west");

        let mut bad = tempfile::NamedTempFile::new().unwrap();
        writeln!(bad, "prot = 7000").unwrap();
        let err = Settings::load(&Sources {
            file: Some(bad.path().to_path_buf()),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("prot"), "{err}");

        let mut bad = tempfile::NamedTempFile::new().unwrap();
        writeln!(bad, "port = \"many\"").unwrap();
        let err = Settings::load(&Sources {
            file: Some(bad.path().to_path_buf()),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("port"), "{err}");

        let err = Settings::load(&Sources {
            overrides: vec![("save".into(), "10".into())],
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("save"), "{err}");
    }

    #[test]
    fn toml_roundtrip() {
        let s = Settings {
            requirepass: "p\"w".into(),
            ..Settings::default()
        };
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(toml_string(&s).as_bytes()).unwrap();
        let back = Settings::load(&Sources {
            file: Some(file.path().to_path_buf()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(back, s);
    }
}

/// `notify_keyspace_events` in files as Redis writes it ("KEA").
mod notify_classes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(flags: &u32, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::keyspace::notify::format(*flags))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
        let text = String::deserialize(d)?;
        crate::keyspace::notify::parse(&text).map_err(serde::de::Error::custom)
    }
}
