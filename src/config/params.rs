//! The parameters `CONFIG GET/SET` exposes, under Redis's names.
//!
//! One table row per parameter: how to read it from [`Settings`] and how to
//! change it at run time (`None` = immutable, as Redis's protected configs).

use super::{MaxmemoryPolicy, Settings};

pub struct Param {
    pub name: &'static str,
    pub get: fn(&Settings) -> String,
    pub set: Option<Setter>,
}

/// Applies a new value (text as CONFIG SET gives it) to the settings.
pub type Setter = fn(&mut Settings, &str) -> Result<(), String>;

fn parse_num<T: std::str::FromStr>(v: &str) -> Result<T, String> {
    parse_memory(v)
        .and_then(|n| n.to_string().parse::<T>().ok())
        .ok_or_else(|| "argument couldn't be parsed into an integer".to_string())
}

/// Parses integers with Redis's memory units (`1kb`, `5mb`, `1gb`, `100k`).
pub fn parse_memory(v: &str) -> Option<u64> {
    let lower = v.to_ascii_lowercase();
    let (digits, mult) = [
        ("gb", 1u64 << 30),
        ("mb", 1 << 20),
        ("kb", 1 << 10),
        ("g", 1_000_000_000),
        ("m", 1_000_000),
        ("k", 1000),
        ("b", 1),
    ]
    .iter()
    .find_map(|(suffix, mult)| lower.strip_suffix(suffix).map(|d| (d.to_string(), *mult)))
    .unwrap_or((lower.clone(), 1));
    digits.parse::<u64>().ok()?.checked_mul(mult)
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.into()
}

fn parse_bool(v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "yes" => Ok(true),
        "no" => Ok(false),
        _ => Err("argument must be 'yes' or 'no'".into()),
    }
}

/// A row for one of Redis's encoding thresholds (`EncodingLimits`), under
/// its name or its `ziplist` alias: sizes with memory units, or (`signed`)
/// plain integers that may be negative.
macro_rules! encoding_param {
    ($name:literal, $field:ident) => {
        Param {
            name: $name,
            get: |s| s.encoding.$field.to_string(),
            set: Some(|s, v| {
                let _: () = s.encoding.$field = parse_num(v)?;
                Ok(())
            }),
        }
    };
    ($name:literal, $field:ident, signed) => {
        Param {
            name: $name,
            get: |s| s.encoding.$field.to_string(),
            set: Some(|s, v| {
                s.encoding.$field = v
                    .parse()
                    .map_err(|_| "argument couldn't be parsed into an integer".to_string())?;
                Ok(())
            }),
        }
    };
}

pub static PARAMS: &[Param] = &[
    Param {
        name: "bind",
        get: |s| s.bind.clone(),
        set: None,
    },
    Param {
        name: "port",
        get: |s| s.port.to_string(),
        set: None,
    },
    Param {
        name: "dir",
        get: |s| s.dir.display().to_string(),
        set: None,
    },
    Param {
        name: "dbfilename",
        get: |s| s.dbfilename.clone(),
        set: Some(|s, v| {
            if v.contains('/') || v.is_empty() {
                return Err("dbfilename can't be a path, just a filename".into());
            }
            s.dbfilename = v.into();
            Ok(())
        }),
    },
    Param {
        name: "requirepass",
        get: |s| s.requirepass.clone(),
        set: Some(|s, v| {
            let _: () = s.requirepass = v.into();
            Ok(())
        }),
    },
    Param {
        name: "save",
        get: |s| s.save.to_string(),
        set: Some(|s, v| {
            s.save = v
                .parse()
                .map_err(|_| "Invalid save parameters".to_string())?;
            Ok(())
        }),
    },
    Param {
        name: "maxclients",
        get: |s| s.maxclients.to_string(),
        set: Some(|s, v| {
            let n: u32 = parse_num(v)?;
            if n == 0 {
                return Err("argument must be between 1 and 4294967295 inclusive".into());
            }
            s.maxclients = n;
            Ok(())
        }),
    },
    Param {
        name: "proto-max-bulk-len",
        get: |s| s.proto_max_bulk_len.to_string(),
        set: Some(|s, v| {
            let n: u64 = parse_num(v)?;
            if n < 1024 {
                return Err(
                    "argument must be between 1048576 and 9223372036854775807 inclusive".into(),
                );
            }
            s.proto_max_bulk_len = n;
            Ok(())
        }),
    },
    Param {
        name: "timeout",
        get: |s| s.timeout.to_string(),
        set: Some(|s, v| {
            let _: () = s.timeout = parse_num(v)?;
            Ok(())
        }),
    },
    Param {
        name: "hz",
        get: |s| s.hz.to_string(),
        set: Some(|s, v| {
            let n: u32 = parse_num(v)?;
            s.hz = n.clamp(1, 500);
            Ok(())
        }),
    },
    Param {
        name: "replicaof",
        get: |s| s.replicaof.replace(':', " "),
        set: None,
    },
    Param {
        name: "masterauth",
        get: |s| s.masterauth.clone(),
        set: Some(|s, v| {
            s.masterauth = v.to_string();
            Ok(())
        }),
    },
    Param {
        name: "replica-priority",
        get: |s| s.replica_priority.to_string(),
        set: Some(|s, v| {
            let _: () = s.replica_priority = parse_num(v)?;
            Ok(())
        }),
    },
    Param {
        name: "sanitize-dump-payload",
        get: |s| s.sanitize_dump_payload.clone(),
        set: Some(|s, v| {
            let v = v.to_ascii_lowercase();
            if !matches!(v.as_str(), "yes" | "no" | "clients") {
                return Err("argument(s) must be one of the following: no, yes, clients".into());
            }
            s.sanitize_dump_payload = v;
            Ok(())
        }),
    },
    Param {
        name: "slave-priority",
        get: |s| s.replica_priority.to_string(),
        set: Some(|s, v| {
            let _: () = s.replica_priority = parse_num(v)?;
            Ok(())
        }),
    },
    Param {
        name: "replica-read-only",
        get: |s| yes_no(s.replica_read_only),
        set: Some(|s, v| {
            let _: () = s.replica_read_only = parse_bool(v)?;
            Ok(())
        }),
    },
    Param {
        name: "replica-serve-stale-data",
        get: |s| yes_no(s.replica_serve_stale_data),
        set: Some(|s, v| {
            let _: () = s.replica_serve_stale_data = parse_bool(v)?;
            Ok(())
        }),
    },
    Param {
        name: "min-replicas-to-write",
        get: |s| s.min_replicas_to_write.to_string(),
        set: Some(|s, v| {
            let _: () = s.min_replicas_to_write = parse_num(v)?;
            Ok(())
        }),
    },
    Param {
        name: "min-replicas-max-lag",
        get: |s| s.min_replicas_max_lag.to_string(),
        set: Some(|s, v| {
            let _: () = s.min_replicas_max_lag = parse_num(v)?;
            Ok(())
        }),
    },
    Param {
        name: "repl-backlog-size",
        get: |s| s.repl.backlog.size.to_string(),
        set: Some(|s, v| {
            let n: u64 = parse_num(v)?;
            s.repl.backlog.size = n.max(16 * 1024);
            Ok(())
        }),
    },
    // Fixed facts clients and tools ask about (redis-benchmark reads these).
    Param {
        name: "appendonly",
        get: |s| yes_no(s.appendonly),
        set: Some(|s, v| {
            let _: () = s.appendonly = parse_bool(v)?;
            Ok(())
        }),
    },
    Param {
        name: "aof-use-rdb-preamble",
        get: |s| yes_no(s.aof_use_rdb_preamble),
        set: Some(|s, v| {
            let _: () = s.aof_use_rdb_preamble = parse_bool(v)?;
            Ok(())
        }),
    },
    Param {
        name: "appendfsync",
        get: |s| s.appendfsync.as_str().into(),
        set: Some(|s, v| {
            let _: () = s.appendfsync = v.parse().map_err(|_| {
                "argument(s) must be one of the following: always, everysec, no".to_string()
            })?;
            Ok(())
        }),
    },
    Param {
        name: "auto-aof-rewrite-percentage",
        get: |s| s.auto_aof_rewrite_percentage.to_string(),
        set: Some(|s, v| {
            let _: () = s.auto_aof_rewrite_percentage = parse_num(v)?;
            Ok(())
        }),
    },
    Param {
        name: "auto-aof-rewrite-min-size",
        get: |s| s.auto_aof_rewrite_min_size.to_string(),
        set: Some(|s, v| {
            let _: () = s.auto_aof_rewrite_min_size = parse_num(v)?;
            Ok(())
        }),
    },
    Param {
        name: "aof-load-truncated",
        get: |s| yes_no(s.aof_load_truncated),
        set: Some(|s, v| {
            let _: () = s.aof_load_truncated = parse_bool(v)?;
            Ok(())
        }),
    },
    Param {
        name: "appendfilename",
        get: |_| "appendonly.aof".into(),
        set: None,
    },
    Param {
        name: "appenddirname",
        get: |_| "backlog".into(),
        set: None,
    },
    Param {
        name: "repl-wipe-newer-replicas",
        get: |s| yes_no(s.repl.wipe_newer_replicas),
        set: Some(|s, v| {
            let _: () = s.repl.wipe_newer_replicas = parse_bool(v)?;
            Ok(())
        }),
    },
    Param {
        name: "databases",
        get: |_| crate::keyspace::DATABASES.to_string(),
        set: None,
    },
    Param {
        name: "maxmemory",
        get: |s| s.maxmemory.to_string(),
        set: Some(|s, v| {
            let _: () = s.maxmemory = parse_num(v)?;
            Ok(())
        }),
    },
    Param {
        name: "maxmemory-policy",
        get: |s| s.maxmemory_policy.to_string(),
        set: Some(|s, v| {
            s.maxmemory_policy = v.parse::<MaxmemoryPolicy>()?;
            Ok(())
        }),
    },
    Param {
        name: "maxmemory-samples",
        get: |s| s.maxmemory_samples.to_string(),
        set: Some(|s, v| {
            let n: u32 = parse_num(v)?;
            if !(1..=64).contains(&n) {
                return Err("argument must be between 1 and 64 inclusive".into());
            }
            s.maxmemory_samples = n;
            Ok(())
        }),
    },
    Param {
        name: "maxmemory-eviction-tenacity",
        get: |s| s.maxmemory_eviction_tenacity.to_string(),
        set: Some(|s, v| {
            let n: u32 = parse_num(v)?;
            if n > 100 {
                return Err("argument must be between 0 and 100 inclusive".into());
            }
            s.maxmemory_eviction_tenacity = n;
            Ok(())
        }),
    },
    Param {
        name: "replica-ignore-maxmemory",
        get: |s| yes_no(s.replica_ignore_maxmemory),
        set: Some(|s, v| {
            let _: () = s.replica_ignore_maxmemory = parse_bool(v)?;
            Ok(())
        }),
    },
    Param {
        name: "lazyfree-lazy-eviction",
        get: |s| yes_no(s.lazyfree_lazy_eviction),
        set: Some(|s, v| {
            let _: () = s.lazyfree_lazy_eviction = parse_bool(v)?;
            Ok(())
        }),
    },
    Param {
        name: "slowlog-log-slower-than",
        get: |s| s.slowlog_log_slower_than.to_string(),
        set: Some(|s, v| {
            s.slowlog_log_slower_than = v
                .parse()
                .map_err(|_| "argument couldn't be parsed into an integer".to_string())?;
            Ok(())
        }),
    },
    Param {
        name: "acllog-max-len",
        get: |s| s.acllog_max_len.to_string(),
        set: Some(|s, v| {
            let _: () = s.acllog_max_len = parse_num(v)?;
            Ok(())
        }),
    },
    Param {
        name: "slowlog-max-len",
        get: |s| s.slowlog_max_len.to_string(),
        set: Some(|s, v| {
            let _: () = s.slowlog_max_len = parse_num(v)?;
            Ok(())
        }),
    },
    Param {
        name: "latency-monitor-threshold",
        get: |s| s.latency_monitor_threshold.to_string(),
        set: Some(|s, v| {
            let _: () = s.latency_monitor_threshold = parse_num(v)?;
            Ok(())
        }),
    },
    Param {
        name: "notify-keyspace-events",
        get: |s| crate::keyspace::notify::format(s.notify_keyspace_events),
        set: Some(|s, v| {
            s.notify_keyspace_events = crate::keyspace::notify::parse(v)?;
            Ok(())
        }),
    },
    Param {
        name: "slave-ignore-maxmemory",
        get: |s| yes_no(s.replica_ignore_maxmemory),
        set: Some(|s, v| {
            let _: () = s.replica_ignore_maxmemory = parse_bool(v)?;
            Ok(())
        }),
    },
    Param {
        name: "repl-ping-replica-period",
        get: |s| s.repl_ping_replica_period.to_string(),
        set: Some(|s, v| {
            let _: () = s.repl_ping_replica_period = parse_num(v)?;
            Ok(())
        }),
    },
    Param {
        name: "repl-ping-slave-period",
        get: |s| s.repl_ping_replica_period.to_string(),
        set: Some(|s, v| {
            let _: () = s.repl_ping_replica_period = parse_num(v)?;
            Ok(())
        }),
    },
    Param {
        name: "busy-reply-threshold",
        get: |s| s.busy_reply_threshold.to_string(),
        set: Some(|s, v| {
            let _: () = s.busy_reply_threshold = parse_num(v)?;
            Ok(())
        }),
    },
    Param {
        name: "lua-time-limit",
        get: |s| s.busy_reply_threshold.to_string(),
        set: Some(|s, v| {
            let _: () = s.busy_reply_threshold = parse_num(v)?;
            Ok(())
        }),
    },
    Param {
        name: "lfu-log-factor",
        get: |s| s.lfu_log_factor.to_string(),
        set: Some(|s, v| {
            let _: () = s.lfu_log_factor = parse_num(v)?;
            Ok(())
        }),
    },
    Param {
        name: "lfu-decay-time",
        get: |s| s.lfu_decay_time.to_string(),
        set: Some(|s, v| {
            let _: () = s.lfu_decay_time = parse_num(v)?;
            Ok(())
        }),
    },
    Param {
        name: "client-output-buffer-limit",
        get: |s| {
            format!(
                "normal {} 0 0 replica 0 0 0 pubsub 0 0 0",
                s.client_output_buffer_limit_normal
            )
        },
        set: Some(|s, v| {
            let words: Vec<&str> = v.split_whitespace().collect();
            if !words.len().is_multiple_of(4) || words.is_empty() {
                return Err("Wrong number of arguments in buffer limit configuration.".into());
            }
            for class in words.chunks(4) {
                match class[0].to_ascii_lowercase().as_str() {
                    "normal" => s.client_output_buffer_limit_normal = parse_num(class[1])?,
                    "replica" | "slave" | "pubsub" => {}
                    _ => {
                        return Err(
                            "Invalid client class specified in buffer limit configuration.".into(),
                        )
                    }
                }
            }
            Ok(())
        }),
    },
    Param {
        name: "repl-snapshot-max-mbit",
        get: |s| s.repl.snapshot_max_mbit.to_string(),
        set: Some(|s, v| {
            let _: () = s.repl.snapshot_max_mbit = parse_num(v)?;
            Ok(())
        }),
    },
    Param {
        name: "repl-snapshot-link-max-mbit",
        get: |s| s.repl.snapshot_link_max_mbit.to_string(),
        set: Some(|s, v| {
            let _: () = s.repl.snapshot_link_max_mbit = parse_num(v)?;
            Ok(())
        }),
    },
    encoding_param!("hash-max-listpack-entries", hash_max_listpack_entries),
    encoding_param!("hash-max-ziplist-entries", hash_max_listpack_entries),
    encoding_param!("hash-max-listpack-value", hash_max_listpack_value),
    encoding_param!("hash-max-ziplist-value", hash_max_listpack_value),
    encoding_param!("list-max-listpack-size", list_max_listpack_size, signed),
    encoding_param!("list-max-ziplist-size", list_max_listpack_size, signed),
    encoding_param!("list-compress-depth", list_compress_depth),
    encoding_param!("set-max-intset-entries", set_max_intset_entries),
    encoding_param!("zset-max-listpack-entries", zset_max_listpack_entries),
    encoding_param!("zset-max-ziplist-entries", zset_max_listpack_entries),
    encoding_param!("zset-max-listpack-value", zset_max_listpack_value),
    encoding_param!("zset-max-ziplist-value", zset_max_listpack_value),
    encoding_param!("hll-sparse-max-bytes", hll_sparse_max_bytes),
    encoding_param!("stream-node-max-entries", stream_node_max_entries),
    encoding_param!("stream-node-max-bytes", stream_node_max_bytes),
    Param {
        name: "repl-datagrams",
        get: |s| s.repl.datagrams.as_str().to_string(),
        set: Some(|s, v| {
            s.repl.datagrams = v.to_ascii_lowercase().parse()?;
            Ok(())
        }),
    },
];

/// Glob match used by CONFIG GET and KEYS-style patterns.
pub fn find(name: &str) -> Option<&'static Param> {
    PARAMS.iter().find(|p| p.name.eq_ignore_ascii_case(name))
}
