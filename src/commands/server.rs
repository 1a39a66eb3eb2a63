//! Server commands: introspection (INFO, COMMAND, CONFIG), persistence
//! (SAVE, BGSAVE, LASTSAVE, SHUTDOWN) and DEBUG helpers used by tests.

use super::args::*;
use super::flags::*;
use super::keys::unknown_subcommand;
use super::{CmdResult, CommandSpec, ExecCtx};
use crate::config::params;
use crate::keyspace::digest;
use crate::node::persistence;
use crate::node::stats::Stats;
use crate::node::NodeAction;
use crate::resp::Frame;
use bytes::Bytes;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;

const G: &str = "server";

pub(super) static COMMANDS: &[CommandSpec] = &[
    spec!(
        "cluster",
        -2,
        NOSCRIPT | LOADING | STALE,
        "A container for Redis Cluster commands.",
        "subcommand [arg ...]",
        cluster
    ),
    spec!(
        "info",
        -1,
        LOADING | STALE,
        "Returns information and statistics about the server.",
        "[section [section ...]]",
        info
    ),
    spec!(
        "config",
        -2,
        ADMIN | NOSCRIPT | LOADING | STALE,
        "A container for server configuration commands.",
        "subcommand [arguments ...]",
        config
    ),
    spec!(
        "command",
        -1,
        LOADING | STALE,
        "Returns detailed information about all commands.",
        "[subcommand [arguments ...]]",
        command
    ),
    spec!(
        "time",
        1,
        LOADING | STALE | FAST,
        "Returns the server time.",
        "",
        time
    ),
    spec!(
        "debug",
        -2,
        ADMIN | NOSCRIPT | LOADING | STALE,
        "A container for debugging commands.",
        "subcommand [arguments ...]",
        debug
    ),
    spec!(
        "save",
        1,
        ADMIN | NOSCRIPT | NO_MULTI,
        "Synchronously saves the database(s) to disk.",
        "",
        save
    ),
    spec!(
        "bgrewriteaof",
        1,
        ADMIN | NOSCRIPT,
        "Asynchronously rewrites the append-only file to disk.",
        "",
        bgrewriteaof
    ),
    spec!(
        "bgsave",
        -1,
        ADMIN | NOSCRIPT,
        "Asynchronously saves the database(s) to disk.",
        "[SCHEDULE]",
        bgsave
    ),
    spec!(
        "lastsave",
        1,
        LOADING | STALE | FAST,
        "Returns the Unix timestamp of the last successful save to disk.",
        "",
        lastsave
    ),
    spec!(
        "shutdown",
        -1,
        ADMIN | NOSCRIPT | LOADING | STALE | NO_MULTI,
        "Synchronously saves the database(s) to disk and shuts down the server.",
        "[NOSAVE | SAVE] [NOW] [FORCE] [ABORT]",
        shutdown
    ),
    spec!(
        "memory",
        -2,
        READONLY,
        "A container for memory diagnostics commands.",
        "subcommand [arguments ...]",
        memory
    ),
];

/// Resident set size of this process in bytes, from /proc.
fn cpu_times() -> (f64, f64) {
    // SAFETY: getrusage only writes into the struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return (0.0, 0.0);
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (secs(usage.ru_stime), secs(usage.ru_utime))
}

fn human_bytes(n: u64) -> String {
    let n = n as f64;
    if n >= 1024.0 * 1024.0 * 1024.0 {
        format!("{:.2}G", n / (1024.0 * 1024.0 * 1024.0))
    } else if n >= 1024.0 * 1024.0 {
        format!("{:.2}M", n / (1024.0 * 1024.0))
    } else if n >= 1024.0 {
        format!("{:.2}K", n / 1024.0)
    } else {
        format!("{n}B")
    }
}

/// INFO's sections in Redis's order; `INFO` alone and `default` give
/// the first group, `all` and `everything` every one.
const SECTIONS: &[&str] = &[
    "server",
    "clients",
    "memory",
    "persistence",
    "stats",
    "replication",
    "cpu",
    "modules",
    "commandstats",
    "errorstats",
    "latencystats",
    "cluster",
    "keyspace",
];
/// The sections `INFO` alone and `default` give: all but the per-command
/// ones, as Redis.
fn is_default_section(name: &str) -> bool {
    !matches!(name, "commandstats" | "latencystats")
}

fn info(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let mut wanted: Vec<String> = Vec::new();
    let mut all = false;
    for a in &args[1..] {
        let name = text(a).to_ascii_lowercase();
        match name.as_str() {
            "default" => wanted.extend(
                SECTIONS
                    .iter()
                    .filter(|s| is_default_section(s))
                    .map(|s| s.to_string()),
            ),
            "all" | "everything" => all = true,
            "module_list" => wanted.push("modules".into()),
            _ => wanted.push(name),
        }
    }
    if args.len() == 1 {
        wanted.extend(
            SECTIONS
                .iter()
                .filter(|s| is_default_section(s))
                .map(|s| s.to_string()),
        );
    }
    let mut out = String::new();
    for section in SECTIONS
        .iter()
        .filter(|s| all || wanted.iter().any(|w| w == *s))
    {
        if !out.is_empty() {
            out.push_str("\r\n");
        }
        info_section(ctx, section, &mut out);
    }
    Ok(Frame::Verbatim(out))
}

/// INFO's `persistence` section, with Redis's field names: `rdb_*` for
/// snapshots, `aof_*` for the log (Quire's append-only file), `loading*`
/// while start-up replays it.
fn persistence_section(ctx: &ExecCtx, out: &mut String) {
    let shared = ctx.node;
    let p = &shared.persistence;
    let loading = p.loading.load(Ordering::Acquire);
    let state = p.state.lock();
    let aof = p.aof.lock();
    let appendonly = shared.settings.read().appendonly;
    let log = &shared.log;
    let _ = write!(
        out,
        "# Persistence\r\nloading:{}\r\nasync_loading:0\r\ncurrent_cow_peak:0\r\ncurrent_cow_size:0\r\ncurrent_cow_size_age:0\r\ncurrent_fork_perc:0.00\r\ncurrent_save_keys_processed:0\r\ncurrent_save_keys_total:0\r\n",
        loading as u8
    );
    let write_ok = !log.is_failing();
    let _ = write!(
        out,
        "rdb_changes_since_last_save:{}\r\nrdb_bgsave_in_progress:{}\r\nrdb_last_save_time:{}\r\nrdb_last_bgsave_status:{}\r\nrdb_last_bgsave_time_sec:{}\r\nrdb_current_bgsave_time_sec:{}\r\nrdb_saves:{}\r\nrdb_last_cow_size:0\r\nrdb_last_load_keys_expired:0\r\nrdb_last_load_keys_loaded:0\r\nrdb_last_save_size_bytes:{}\r\n",
        ctx.keyspace.dirty,
        state.in_progress as u8,
        state.last_save_unix,
        if state.last_status_ok { "ok" } else { "err" },
        state.last_duration_secs,
        state.started.map(|s| s.elapsed().as_secs() as i64).unwrap_or(-1),
        state.saves,
        state.last_size_bytes,
    );
    let _ = write!(
        out,
        "aof_enabled:{}\r\naof_rewrite_in_progress:{}\r\naof_rewrite_scheduled:{}\r\naof_last_rewrite_time_sec:{}\r\naof_current_rewrite_time_sec:{}\r\naof_last_bgrewrite_status:{}\r\naof_rewrites:{}\r\naof_rewrites_consecutive_failures:{}\r\naof_last_write_status:{}\r\naof_last_cow_size:0\r\nmodule_fork_in_progress:0\r\nmodule_fork_last_cow_size:0\r\n",
        appendonly as u8,
        aof.rewrite_in_progress as u8,
        aof.rewrite_scheduled as u8,
        if aof.rewrites > 0 { aof.last_rewrite_secs } else { -1 },
        aof.rewrite_started.filter(|_| aof.rewrite_in_progress).map(|s| s.elapsed().as_secs() as i64).unwrap_or(-1),
        if aof.last_rewrite_ok || aof.rewrites == 0 { "ok" } else { "err" },
        aof.rewrites,
        aof.consecutive_failures,
        if write_ok { "ok" } else { "err" },
    );
    let base = aof.base_size;
    drop(aof);
    drop(state);
    let since = log.bytes_since_snapshot();
    let f = &p.fsync;
    if appendonly {
        let _ = write!(
            out,
            "aof_current_size:{}\r\naof_base_size:{base}\r\naof_pending_rewrite:0\r\naof_buffer_length:{}\r\naof_pending_bio_fsync:{}\r\naof_delayed_fsync:{}\r\n",
            base + since,
            log.end_offset() - log.written(),
            (log.written() > log.durable()) as u8,
            f.delayed.load(Ordering::Relaxed),
        );
    }
    let fsyncs = f.fsyncs.load(Ordering::Relaxed);
    let _ = write!(
        out,
        "quire_log_bytes:{}\r\nquire_log_since_snapshot_bytes:{}\r\nquire_log_segments:{}\r\nquire_log_end_offset:{}\r\nquire_log_written_offset:{}\r\nquire_log_durable_offset:{}\r\nquire_fsyncs:{fsyncs}\r\nquire_fsync_last_us:{}\r\nquire_fsync_avg_us:{}\r\nquire_fsync_max_us:{}\r\nquire_log_last_write_error:{}\r\n",
        log.disk_bytes(),
        since,
        log.segments(),
        log.end_offset(),
        log.written(),
        log.durable(),
        f.last_us.load(Ordering::Relaxed),
        f.total_us.load(Ordering::Relaxed).checked_div(fsyncs).unwrap_or(0),
        f.max_us.load(Ordering::Relaxed),
        log.write_error().unwrap_or_default(),
    );
    if loading {
        let l = p.loading_progress.lock().clone();
        let elapsed = l.started.map(|s| s.elapsed().as_secs_f64()).unwrap_or(0.0);
        let perc = if l.total_bytes > 0 {
            l.loaded_bytes as f64 * 100.0 / l.total_bytes as f64
        } else {
            0.0
        };
        let eta = if l.loaded_bytes > 0 {
            (elapsed * (l.total_bytes - l.loaded_bytes.min(l.total_bytes)) as f64
                / l.loaded_bytes as f64) as u64
        } else {
            1
        };
        let _ = write!(
            out,
            "loading_start_time:{}\r\nloading_total_bytes:{}\r\nloading_rdb_used_mem:0\r\nloading_loaded_bytes:{}\r\nloading_loaded_perc:{perc:.2}\r\nloading_eta_seconds:{eta}\r\n",
            l.started_unix, l.total_bytes, l.loaded_bytes
        );
    }
    match &ctx.repl.lost {
        Some(lost) => {
            let _ = write!(
                out,
                "quire_behind_acknowledged:1\r\nquire_lost_history:{}\r\nquire_lost_from_offset:{}\r\nquire_lost_to_offset:{}\r\n",
                lost.replid, lost.recovered, lost.acknowledged
            );
        }
        None => out.push_str("quire_behind_acknowledged:0\r\n"),
    }
}

fn info_section(ctx: &mut ExecCtx, section: &str, out: &mut String) {
    let shared = ctx.node;
    let settings = shared.settings.read().clone();
    let uptime = shared.started.elapsed().as_secs();
    match section {
        "server" => {
            let _ = write!(
                out,
                "# Server\r\nredis_version:{}\r\nquire_version:{}\r\nredis_mode:standalone\r\nos:{} {}\r\narch_bits:64\r\nmultiplexing_api:epoll\r\nprocess_id:{}\r\nrun_id:{}\r\ntcp_port:{}\r\nserver_time_usec:{}\r\nuptime_in_seconds:{}\r\nuptime_in_days:{}\r\nhz:{}\r\nexecutable:{}\r\nconfig_file:{}\r\nnode_name:{}\r\nregion:{}\r\n",
                crate::REDIS_COMPAT_VERSION,
                env!("CARGO_PKG_VERSION"),
                std::env::consts::OS,
                std::env::consts::ARCH,
                std::process::id(),
                shared.run_id,
                shared.tcp_port.load(std::sync::atomic::Ordering::Relaxed),
                ctx.now_ms * 1000,
                uptime,
                uptime / 86400,
                settings.hz,
                std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_default(),
                shared.config_file.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
                settings.node.name,
                settings.node.region,
            );
        }
        "clients" => {
            let _ = write!(
                out,
                "# Clients\r\nconnected_clients:{}\r\nmaxclients:{}\r\nblocked_clients:{}\r\npubsub_patterns:{}\r\n",
                shared.clients.len(),
                settings.maxclients,
                ctx.blocking.blocked_clients(),
                ctx.pubsub.numpat()
            );
        }
        "memory" => {
            let used = crate::memory::used();
            let rss = crate::memory::rss();
            let stats = &shared.stats;
            let peak = stats
                .peak_memory
                .fetch_max(used, Ordering::Relaxed)
                .max(used);
            let startup = stats.startup_memory.load(Ordering::Relaxed).min(used);
            let backlog = shared.log.memory_footprint() as u64;
            let not_counted = crate::node::eviction::not_counted(shared);
            let overhead = (startup + not_counted).min(used);
            let dataset = used - overhead;
            let dataset_perc = if used > startup {
                dataset as f64 * 100.0 / (used - startup) as f64
            } else {
                0.0
            };
            let (maxmemory, policy) = (settings.maxmemory, settings.maxmemory_policy);
            let eval_vm = ctx.scripts.lua.as_ref().map_or(0, |l| l.used_memory());
            let eval_sources = ctx.scripts.source_bytes();
            let cached = ctx.scripts.cache.len();
            let functions = super::functions::usage(ctx);
            let _ = write!(
                out,
                "# Memory\r\nused_memory:{used}\r\nused_memory_human:{}\r\nused_memory_rss:{rss}\r\nused_memory_rss_human:{}\r\nused_memory_peak:{peak}\r\nused_memory_peak_human:{}\r\nused_memory_peak_perc:{:.2}%\r\nused_memory_overhead:{overhead}\r\nused_memory_startup:{startup}\r\nused_memory_dataset:{dataset}\r\nused_memory_dataset_perc:{dataset_perc:.2}%\r\n",
                human_bytes(used),
                human_bytes(rss),
                human_bytes(peak),
                used as f64 * 100.0 / peak.max(1) as f64,
            );
            let _ = write!(
                out,
                "used_memory_lua:{eval_vm}\r\nused_memory_vm_eval:{eval_vm}\r\nused_memory_lua_human:{}\r\nused_memory_scripts_eval:{eval_sources}\r\nnumber_of_cached_scripts:{cached}\r\nnumber_of_functions:{}\r\nnumber_of_libraries:{}\r\nused_memory_vm_functions:{}\r\nused_memory_vm_total:{}\r\nused_memory_vm_total_human:{}\r\nused_memory_functions:{}\r\nused_memory_scripts:{}\r\nused_memory_scripts_human:{}\r\nmaxmemory:{maxmemory}\r\nmaxmemory_human:{}\r\nmaxmemory_policy:{policy}\r\nmem_fragmentation_ratio:{:.2}\r\nmem_fragmentation_bytes:{}\r\nmem_not_counted_for_evict:{not_counted}\r\nmem_replication_backlog:{backlog}\r\nmem_clients_slaves:{}\r\nmem_clients_normal:0\r\nmem_aof_buffer:0\r\nmem_allocator:libc\r\nlazyfree_pending_objects:0\r\nlazyfreed_objects:0\r\n",
                human_bytes(eval_vm as u64),
                functions.functions,
                functions.libraries,
                functions.vm_bytes,
                eval_vm + functions.vm_bytes,
                human_bytes((eval_vm + functions.vm_bytes) as u64),
                functions.source_bytes,
                eval_sources + functions.source_bytes,
                human_bytes((eval_sources + functions.source_bytes) as u64),
                human_bytes(maxmemory),
                rss as f64 / used.max(1) as f64,
                rss as i64 - used as i64,
                not_counted - backlog,
            );
        }
        "persistence" => persistence_section(ctx, out),
        "stats" => {
            let s = &shared.stats;
            let c = &shared.repl.counters;
            let (hits, misses) = ctx
                .keyspace
                .dbs
                .iter()
                .fold((0, 0), |(h, m), db| (h + db.hits, m + db.misses));
            let repl_in = Stats::get(&c.received_raw_bytes);
            let repl_out = Stats::get(&c.sent_raw_bytes);
            let _ = write!(
                out,
                "# Stats\r\ntotal_connections_received:{}\r\ntotal_commands_processed:{}\r\ninstantaneous_ops_per_sec:{}\r\ntotal_net_input_bytes:{}\r\ntotal_net_output_bytes:{}\r\ntotal_net_repl_input_bytes:{repl_in}\r\ntotal_net_repl_output_bytes:{repl_out}\r\nrejected_connections:{}\r\nsync_full:{}\r\nsync_partial_ok:{}\r\nsync_partial_err:{}\r\nexpired_keys:{}\r\nexpired_stale_perc:0.00\r\nexpired_time_cap_reached_count:0\r\nevicted_keys:{}\r\nevicted_clients:0\r\nkeyspace_hits:{}\r\nkeyspace_misses:{}\r\npubsub_channels:{}\r\npubsub_patterns:{}\r\npubsubshard_channels:{}\r\nlatest_fork_usec:0\r\ntotal_forks:0\r\nmigrate_cached_sockets:0\r\nslave_expires_tracked_keys:0\r\ntracking_total_keys:0\r\ntracking_total_items:0\r\ntracking_total_prefixes:0\r\nunexpected_error_replies:0\r\ntotal_error_replies:{}\r\ndump_payload_sanitizations:0\r\n",
                Stats::get(&s.connections_received),
                Stats::get(&s.commands_processed),
                s.ops_per_sec(),
                Stats::get(&s.net_input_bytes),
                Stats::get(&s.net_output_bytes),
                Stats::get(&s.rejected_connections),
                Stats::get(&c.full_syncs_served),
                Stats::get(&c.partial_syncs_ok),
                Stats::get(&c.partial_syncs_err),
                ctx.keyspace.expired_keys,
                Stats::get(&s.evicted_keys),
                hits,
                misses,
                ctx.pubsub.numchannels(),
                ctx.pubsub.numpat(),
                ctx.pubsub.shard_channels.len(),
                Stats::get(&s.error_replies),
            );
        }
        "replication" => {
            super::replication::info_section(ctx, out);
        }
        "cpu" => {
            let (sys, user) = cpu_times();
            let _ = write!(
                out,
                "# CPU\r\nused_cpu_sys:{sys:.6}\r\nused_cpu_user:{user:.6}\r\nused_cpu_sys_children:0.000000\r\nused_cpu_user_children:0.000000\r\n"
            );
        }
        "keyspace" => {
            out.push_str("# Keyspace\r\n");
            for (i, db) in ctx.keyspace.dbs.iter().enumerate() {
                if !db.is_empty() {
                    let _ = write!(
                        out,
                        "db{i}:keys={},expires={},avg_ttl=0\r\n",
                        db.len(),
                        db.expires_len()
                    );
                }
            }
        }
        "modules" => out.push_str("# Modules\r\n"),
        "cluster" => out.push_str("# Cluster\r\ncluster_enabled:0\r\n"),
        "commandstats" => {
            out.push_str("# Commandstats\r\n");
            for (name, s) in ctx.cmdstats.commands() {
                let per_call = if s.calls == 0 {
                    0.0
                } else {
                    s.usec as f64 / s.calls as f64
                };
                let _ = write!(
                    out,
                    "cmdstat_{name}:calls={},usec={},usec_per_call={per_call:.2},rejected_calls={},failed_calls={}\r\n",
                    s.calls, s.usec, s.rejected, s.failed
                );
            }
        }
        "errorstats" => {
            out.push_str("# Errorstats\r\n");
            for (prefix, count) in ctx.cmdstats.errors() {
                let _ = write!(out, "errorstat_{prefix}:count={count}\r\n");
            }
        }
        "latencystats" => {
            out.push_str("# Latencystats\r\n");
            for (name, s) in ctx.cmdstats.commands() {
                if s.calls == 0 {
                    continue;
                }
                let h = &s.latency;
                let _ = write!(
                    out,
                    "latency_percentiles_usec_{name}:p50={:.3},p99={:.3},p99.9={:.3}\r\n",
                    h.percentile(50.0) as f64,
                    h.percentile(99.0) as f64,
                    h.percentile(99.9) as f64
                );
            }
        }
        _ => {}
    }
}

/// The settings as CONFIG GET and CONFIG REWRITE show them: with the
/// role the node has now (REPLICAOF, a promotion, Sentinel), not the one it
/// started with, so a rewritten file restarts the node in its current role
/// (Redis rewrites `replicaof` the same way).
fn current_settings(ctx: &ExecCtx) -> crate::config::Settings {
    let mut settings = ctx.node.settings.read().clone();
    settings.replicaof = match ctx.node.repl.upstream() {
        Some(up) => format!("{}:{}", up.host, up.port),
        None => String::new(),
    };
    settings
}

fn config(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let sub = &args[1];
    if is(sub, "get") && args.len() >= 3 {
        let settings = current_settings(ctx);
        let mut pairs = Vec::new();
        for p in params::PARAMS {
            if args[2..]
                .iter()
                .any(|pat| glob_match(pat, p.name.as_bytes(), true))
            {
                pairs.push((Frame::bulk(p.name), Frame::bulk((p.get)(&settings))));
            }
        }
        Ok(Frame::Map(pairs))
    } else if is(sub, "set") && args.len() >= 4 && args.len().is_multiple_of(2) {
        let mut settings = ctx.node.settings.read().clone();
        for pair in args[2..].chunks(2) {
            let name = text(&pair[0]);
            let Some(param) = params::find(&name) else {
                return Err(Frame::error_owned(format!(
                    "ERR Unknown option or number of arguments for CONFIG SET - '{name}'"
                )));
            };
            let Some(set) = param.set else {
                return Err(Frame::error_owned(format!("ERR CONFIG SET failed (possibly related to argument '{name}') - can't set immutable config")));
            };
            set(&mut settings, &text(&pair[1])).map_err(|e| {
                Frame::error_owned(format!(
                    "ERR CONFIG SET failed (possibly related to argument '{name}') - {e}"
                ))
            })?;
        }
        ctx.node.repl.refresh(&settings);
        ctx.keyspace.set_access_policy(settings.access_policy());
        ctx.keyspace
            .set_track_changes(settings.notify_keyspace_events != 0);
        // A new limit applies to the next command, not the next cron tick.
        ctx.node.stats.apply_settings(&settings);
        ctx.node
            .slowlog
            .lock()
            .trim(settings.slowlog_max_len as usize);
        let was_appendonly = ctx.node.settings.read().appendonly;
        let appendonly = settings.appendonly;
        let password_changed = settings.requirepass != ctx.node.settings.read().requirepass;
        *ctx.node.settings.write() = settings;
        if password_changed {
            super::acl::requirepass_changed(ctx.node);
        }
        if appendonly != was_appendonly {
            if appendonly {
                // As Redis: turning the log on starts with a rewrite, the
                // snapshot the log continues from.
                if let Some(job) =
                    persistence::start_rewrite(ctx.node, ctx.keyspace, ctx.repl.position())
                {
                    ctx.actions.push(NodeAction::WriteSnapshot(job));
                }
            } else {
                ctx.node.log.set_retain_from(u64::MAX);
            }
        }
        Ok(Frame::ok())
    } else if is(sub, "resetstat") && args.len() == 2 {
        ctx.node.stats.reset();
        for db in ctx.keyspace.dbs.iter_mut() {
            db.hits = 0;
            db.misses = 0;
        }
        ctx.keyspace.expired_keys = 0;
        ctx.cmdstats.reset();
        Ok(Frame::ok())
    } else if is(sub, "rewrite") && args.len() == 2 {
        let Some(path) = ctx.node.config_file.clone() else {
            return Err(Frame::error(
                "ERR The server is running without a config file",
            ));
        };
        let settings = current_settings(ctx);
        settings
            .write_toml(&path)
            .map_err(|e| Frame::error_owned(format!("ERR Rewriting config file: {e}")))?;
        Ok(Frame::ok())
    } else if is(sub, "help") && args.len() == 2 {
        let lines = [
            "CONFIG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "GET <pattern>",
            "    Return parameters matching the glob-like <pattern> and their values.",
            "SET <directive> <value>",
            "    Set the configuration <directive> to <value>.",
            "RESETSTAT",
            "    Reset statistics reported by the INFO command.",
            "REWRITE",
            "    Rewrite the configuration file.",
            "HELP",
            "    Print this help.",
        ];
        Ok(Frame::Array(
            lines.iter().map(|l| Frame::simple(l)).collect(),
        ))
    } else {
        Err(unknown_subcommand(sub, "CONFIG"))
    }
}

fn command_info(spec: &CommandSpec) -> Frame {
    let flags = super::flags::NAMES
        .iter()
        .filter(|(f, _)| spec.has(*f))
        .map(|(_, n)| Frame::simple(n))
        .collect();
    let category = format!("@{}", spec.group);
    let (first, last, step) = spec.keys;
    Frame::Array(vec![
        Frame::bulk(spec.name),
        Frame::Integer(spec.arity as i64),
        Frame::Set(flags),
        Frame::Integer(first as i64),
        Frame::Integer(last as i64),
        Frame::Integer(step as i64),
        Frame::Set(vec![
            Frame::simple(if spec.has(WRITE) { "@write" } else { "@read" }),
            Frame::Simple(category.into()),
        ]),
        Frame::Array(vec![]),
        Frame::Array(vec![]),
        Frame::Array(vec![]),
    ])
}

/// One argument of a command's syntax, as `COMMAND DOCS` describes it.
#[derive(Debug, Clone, PartialEq)]
struct DocArg {
    name: String,
    kind: &'static str,
    token: Option<String>,
    optional: bool,
    multiple: bool,
    args: Vec<DocArg>,
}

impl DocArg {
    fn leaf(word: &str) -> DocArg {
        let is_token = word
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '-' || c == '_')
            && word.chars().any(|c| c.is_ascii_uppercase());
        let kind = if is_token {
            "pure-token"
        } else if word == "key"
            || word.ends_with("key")
            || word == "source"
            || word == "destination"
        {
            "key"
        } else if word == "pattern" {
            "pattern"
        } else {
            "string"
        };
        DocArg {
            name: word.to_ascii_lowercase(),
            kind,
            token: is_token.then(|| word.to_string()),
            optional: false,
            multiple: false,
            args: Vec::new(),
        }
    }

    fn group(kind: &'static str, args: Vec<DocArg>) -> DocArg {
        let name = args
            .iter()
            .map(|a| a.name.clone())
            .collect::<Vec<_>>()
            .join("-");
        DocArg {
            name,
            kind,
            token: None,
            optional: false,
            multiple: false,
            args,
        }
    }

    fn to_frame(&self) -> Frame {
        let mut fields = vec![
            (Frame::bulk("name"), Frame::bulk(self.name.clone())),
            (Frame::bulk("type"), Frame::bulk(self.kind)),
        ];
        if let Some(t) = &self.token {
            fields.push((Frame::bulk("token"), Frame::bulk(t.clone())));
        }
        let mut flags = Vec::new();
        if self.optional {
            flags.push(Frame::simple("optional"));
        }
        if self.multiple {
            flags.push(Frame::simple("multiple"));
        }
        if !flags.is_empty() {
            fields.push((Frame::bulk("flags"), Frame::Array(flags)));
        }
        if !self.args.is_empty() {
            fields.push((
                Frame::bulk("arguments"),
                Frame::Array(self.args.iter().map(DocArg::to_frame).collect()),
            ));
        }
        Frame::Map(fields)
    }
}

/// Parses a syntax line such as `key [NX | XX] [EX seconds | PX ms] [key ...]`.
fn parse_syntax(syntax: &str) -> Vec<DocArg> {
    let spaced = syntax
        .replace('[', " [ ")
        .replace(']', " ] ")
        .replace('|', " | ");
    let tokens: Vec<&str> = spaced.split_whitespace().collect();
    let mut pos = 0;
    parse_sequence(&tokens, &mut pos)
}

fn parse_sequence(tokens: &[&str], pos: &mut usize) -> Vec<DocArg> {
    let mut alternatives: Vec<Vec<DocArg>> = vec![Vec::new()];
    while *pos < tokens.len() {
        let token = tokens[*pos];
        *pos += 1;
        let current = alternatives.last_mut().expect("at least one alternative");
        match token {
            "]" => break,
            "|" => alternatives.push(Vec::new()),
            "..." => {
                if let Some(last) = current.last_mut() {
                    last.multiple = true;
                }
            }
            "[" => {
                let inner = parse_sequence(tokens, pos);
                // `key [key ...]` is one repeated argument, not two.
                if inner.len() == 1
                    && inner[0].multiple
                    && current.last().is_some_and(|l| l.name == inner[0].name)
                {
                    if let Some(last) = current.last_mut() {
                        last.multiple = true;
                    }
                    continue;
                }
                let mut arg = if inner.len() == 1 {
                    inner.into_iter().next().expect("one")
                } else {
                    DocArg::group("block", inner)
                };
                arg.optional = true;
                current.push(arg);
            }
            word => current.push(DocArg::leaf(word)),
        }
    }
    if alternatives.len() == 1 {
        return alternatives.pop().unwrap_or_default();
    }
    let options = alternatives
        .into_iter()
        .filter(|a| !a.is_empty())
        .map(|alt| {
            if alt.len() == 1 {
                alt.into_iter().next().expect("one")
            } else {
                DocArg::group("block", alt)
            }
        })
        .collect();
    vec![DocArg::group("oneof", options)]
}

fn command_docs(spec: &CommandSpec) -> Frame {
    Frame::Map(vec![
        (Frame::bulk("summary"), Frame::bulk(spec.summary)),
        (Frame::bulk("since"), Frame::bulk("1.0.0")),
        (Frame::bulk("group"), Frame::bulk(spec.group)),
        (Frame::bulk("complexity"), Frame::bulk("")),
        (
            Frame::bulk("arguments"),
            Frame::Array(
                parse_syntax(spec.syntax)
                    .iter()
                    .map(DocArg::to_frame)
                    .collect(),
            ),
        ),
    ])
}

fn command(_ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    if args.len() == 1 {
        return Ok(Frame::Array(
            super::all_commands()
                .into_iter()
                .map(command_info)
                .collect(),
        ));
    }
    let sub = &args[1];
    if is(sub, "count") && args.len() == 2 {
        Ok(Frame::Integer(super::all_commands().len() as i64))
    } else if is(sub, "info") {
        if args.len() == 2 {
            return Ok(Frame::Array(
                super::all_commands()
                    .into_iter()
                    .map(command_info)
                    .collect(),
            ));
        }
        Ok(Frame::Array(
            args[2..]
                .iter()
                .map(|n| {
                    super::lookup(n)
                        .map(command_info)
                        .unwrap_or(Frame::NullArray)
                })
                .collect(),
        ))
    } else if is(sub, "docs") {
        let specs: Vec<_> = if args.len() == 2 {
            super::all_commands()
        } else {
            args[2..].iter().filter_map(|n| super::lookup(n)).collect()
        };
        Ok(Frame::Map(
            specs
                .into_iter()
                .map(|s| (Frame::bulk(s.name), command_docs(s)))
                .collect(),
        ))
    } else if is(sub, "list") && args.len() == 2 {
        Ok(Frame::Array(
            super::all_commands()
                .into_iter()
                .map(|s| Frame::bulk(s.name))
                .collect(),
        ))
    } else if is(sub, "getkeys") && args.len() >= 3 {
        let cmd_args = &args[2..];
        let Some(spec) = super::lookup(&cmd_args[0]) else {
            return Err(Frame::error("ERR Invalid command specified"));
        };
        if !spec.arity_ok(cmd_args.len()) {
            return Err(Frame::error(
                "ERR Invalid number of arguments specified for command",
            ));
        }
        let keys: Vec<_> = spec
            .key_positions(cmd_args)
            .into_iter()
            .map(|i| Frame::Bulk(cmd_args[i].clone()))
            .collect();
        if keys.is_empty() {
            return Err(Frame::error("ERR The command has no key arguments"));
        }
        Ok(Frame::Array(keys))
    } else if is(sub, "help") && args.len() == 2 {
        let lines = [
            "COMMAND <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "(no subcommand)",
            "    Return details about all commands.",
            "COUNT",
            "    Return the total number of commands in this server.",
            "LIST",
            "    Return a list of all commands in this server.",
            "INFO [<command-name> ...]",
            "    Return details about multiple commands.",
            "DOCS [<command-name> ...]",
            "    Return documentation details about multiple commands.",
            "GETKEYS <full-command>",
            "    Return the keys from a full command.",
            "HELP",
            "    Print this help.",
        ];
        Ok(Frame::Array(
            lines.iter().map(|l| Frame::simple(l)).collect(),
        ))
    } else {
        Err(unknown_subcommand(sub, "COMMAND"))
    }
}

fn time(ctx: &mut ExecCtx, _args: &[Bytes]) -> CmdResult {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(ctx.now_ms as u128 * 1000);
    Ok(Frame::Array(vec![
        Frame::bulk((micros / 1_000_000).to_string()),
        Frame::bulk((micros % 1_000_000).to_string()),
    ]))
}

fn debug(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let sub = &args[1];
    if is(sub, "digest") && args.len() == 2 {
        Ok(Frame::Simple(
            digest::dataset_digest(ctx.keyspace, ctx.now_ms).into(),
        ))
    } else if is(sub, "digest-value") {
        let now = ctx.now_ms;
        let mut out = Vec::new();
        for key in &args[2..] {
            let has_ttl = ctx.db().expire_at(key).is_some();
            let d = match ctx.db().peek(key, now) {
                Some(v) => digest::hex(&digest::value_digest(v, has_ttl)),
                None => digest::hex(&[0; 20]),
            };
            out.push(Frame::Simple(d.into()));
        }
        Ok(Frame::Array(out))
    } else if is(sub, "sleep") && args.len() == 3 {
        let secs = float(&args[2])?;
        if secs > 0.0 {
            // Like Redis: the whole server is unresponsive meanwhile.
            std::thread::sleep(std::time::Duration::from_secs_f64(secs.min(3600.0)));
        }
        Ok(Frame::ok())
    } else if is(sub, "populate") && (3..=5).contains(&args.len()) {
        let count = uint(&args[2], ERR_NOT_INT)?;
        let prefix = args
            .get(3)
            .map(|p| p.to_vec())
            .unwrap_or_else(|| b"key".to_vec());
        let size = match args.get(4) {
            Some(s) => Some(uint(s, ERR_NOT_INT)? as usize),
            None => None,
        };
        let now = ctx.now_ms;
        let db = ctx.db();
        for i in 0..count {
            let mut key = prefix.clone();
            key.push(b':');
            key.extend_from_slice(i.to_string().as_bytes());
            if db.contains(&key, now) {
                continue;
            }
            let mut value = format!("value:{i}").into_bytes();
            if let Some(size) = size {
                value.resize(size, 0);
            }
            db.set(&key, crate::keyspace::Value::string(&value), false);
        }
        Ok(Frame::ok())
    } else if is(sub, "reload") {
        let (mut merge, mut noflush, mut nosave) = (false, false, false);
        for option in &args[2..] {
            match text(option).to_ascii_lowercase().as_str() {
                "merge" => merge = true,
                "noflush" => noflush = true,
                "nosave" => nosave = true,
                _ => {
                    return Err(Frame::error(
                        "ERR DEBUG RELOAD only supports the MERGE, NOFLUSH and NOSAVE options.",
                    ))
                }
            }
        }
        if !nosave {
            persistence::save_blocking(ctx.node, ctx.keyspace, ctx.repl.position())
                .map_err(|e| Frame::error_owned(format!("ERR Error trying to save the DB: {e}")))?;
        }
        let path = ctx.node.settings.read().snapshot_path();
        let load_error = |e: String| {
            Frame::error_owned(format!(
                "ERR Error trying to load the RDB dump, check server logs. ({e})"
            ))
        };
        let (_, image, _) =
            crate::persist::load_from_file(&path).map_err(|e| load_error(e.to_string()))?;
        if noflush {
            crate::persist::merge(ctx.keyspace, image, merge, ctx.now_ms).map_err(load_error)?;
        } else {
            crate::persist::install(ctx.keyspace, image);
        }
        Ok(Frame::ok())
    } else if is(sub, "protocol") && args.len() == 3 {
        debug_protocol(ctx.session.proto, &args[2])
    } else if is(sub, "set-disable-deny-scripts") && args.len() == 3 {
        let off = int(&args[2])? != 0;
        ctx.node
            .stats
            .script_deny_off
            .store(off, std::sync::atomic::Ordering::Relaxed);
        Ok(Frame::ok())
    } else if is(sub, "set-active-expire") && args.len() == 3 {
        let on = int(&args[2])? != 0;
        ctx.node
            .stats
            .active_expire_off
            .store(!on, std::sync::atomic::Ordering::Relaxed);
        Ok(Frame::ok())
    } else if is(sub, "loadaof") && args.len() == 2 {
        let (tx, rx) = tokio::sync::oneshot::channel();
        ctx.actions
            .push(crate::node::NodeAction::ReloadFromDisk { reply: tx });
        ctx.session.blocked = Some(super::blocking::BlockedWait {
            reply: rx,
            deadline: None,
            timeout_reply: Frame::error("ERR reload did not finish"),
            on_timeout: None,
        });
        Ok(Frame::NoReply)
    } else if is(sub, "quicklist-packed-threshold") && args.len() == 3 {
        // Where Redis stores big list elements unpacked. Quire's lists hold
        // every element on its own, so the value is checked as Redis
        // checks it and changes nothing.
        match crate::config::params::parse_memory(&text(&args[2])) {
            Some(sz) if sz <= (1u64 << 32) - (1 << 20) => Ok(Frame::ok()),
            _ => Err(Frame::error(
                "ERR argument must be a memory value bigger than 1 and smaller than 4gb",
            )),
        }
    } else if is(sub, "object") && args.len() == 3 {
        let limits = ctx.node.settings.read().encoding.clone();
        let Some(value) = ctx.db().peek_stored(&args[2]) else {
            return Err(Frame::error("ERR no such key"));
        };
        let encoding = value.encoding(&limits);
        let size = value.approx_bytes();
        let extra = match value {
            crate::keyspace::Value::List(l) => format!(
                " ql_nodes:1 ql_avg_node:{:.2} ql_listpack_max:{} ql_compressed:{} ql_uncompressed_size:{size}",
                l.len() as f64,
                limits.list_max_listpack_size,
                (limits.list_compress_depth != 0) as u8
            ),
            _ => String::new(),
        };
        Ok(Frame::Simple(std::borrow::Cow::Owned(format!(
            "Value at:0x0 refcount:1 encoding:{encoding} serializedlength:{size} lru:0 lru_seconds_idle:0{extra}"
        ))))
    } else if is(sub, "help") {
        let lines = [
            "DEBUG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "DIGEST",
            "DIGEST-VALUE <key> [<key> ...]",
            "SLEEP <seconds>",
            "POPULATE <count> [<prefix>] [<size>]",
            "RELOAD",
            "OBJECT <key>",
            "QUICKLIST-PACKED-THRESHOLD <size>",
            "SET-ACTIVE-EXPIRE <0|1>",
            "HELP",
        ];
        Ok(Frame::Array(
            lines.iter().map(|l| Frame::simple(l)).collect(),
        ))
    } else {
        Err(unknown_subcommand(sub, "DEBUG"))
    }
}

fn save(ctx: &mut ExecCtx, _args: &[Bytes]) -> CmdResult {
    if ctx.node.persistence.state.lock().in_progress {
        return Err(Frame::error("ERR Background save already in progress"));
    }
    persistence::save_blocking(ctx.node, ctx.keyspace, ctx.repl.position())
        .map_err(|_| Frame::error("ERR"))?;
    Ok(Frame::ok())
}

fn bgsave(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    if args.len() > 2 || (args.len() == 2 && !is(&args[1], "schedule")) {
        return Err(ERR_SYNTAX);
    }
    if let Some(job) =
        persistence::start_background_save(ctx.node, ctx.keyspace, ctx.repl.position())
    {
        ctx.actions.push(NodeAction::WriteSnapshot(job));
        Ok(Frame::simple("Background saving started"))
    } else {
        Err(Frame::error("ERR Background save already in progress"))
    }
}

/// BGREWRITEAOF: compacts the log. Quire's append-only file is the
/// newest snapshot plus the log after it, so a rewrite is a snapshot; once
/// it is on disk the log before its offset is kept only as long as
/// partial resyncs need it.
fn bgrewriteaof(ctx: &mut ExecCtx, _args: &[Bytes]) -> CmdResult {
    if ctx.node.persistence.aof.lock().rewrite_in_progress {
        return Err(Frame::error(
            "ERR Background append only file rewriting already in progress",
        ));
    }
    if let Some(job) = persistence::start_rewrite(ctx.node, ctx.keyspace, ctx.repl.position()) {
        ctx.actions.push(NodeAction::WriteSnapshot(job));
        Ok(Frame::simple(
            "Background append only file rewriting started",
        ))
    } else {
        Ok(Frame::simple(
            "Background append only file rewriting scheduled",
        ))
    }
}

fn lastsave(ctx: &mut ExecCtx, _args: &[Bytes]) -> CmdResult {
    Ok(Frame::Integer(
        ctx.node.persistence.state.lock().last_save_unix,
    ))
}

fn shutdown(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let (mut nosave, mut save, mut force) = (false, false, false);
    for a in &args[1..] {
        if is(a, "nosave") {
            nosave = true;
        } else if is(a, "save") {
            save = true;
        } else if is(a, "force") {
            force = true;
        } else if is(a, "now") {
        } else if is(a, "abort") {
            return Err(Frame::error("ERR No shutdown in progress."));
        } else {
            return Err(ERR_SYNTAX);
        }
    }
    if nosave && save {
        return Err(ERR_SYNTAX);
    }
    let rules = !ctx.node.settings.read().save.is_empty();
    if save || (rules && !nosave) {
        if let Err(e) = persistence::save_blocking(ctx.node, ctx.keyspace, ctx.repl.position()) {
            if !force {
                tracing::warn!(error = %e, "error saving on SHUTDOWN");
                return Err(Frame::error("ERR Errors trying to SHUTDOWN. Check logs."));
            }
        }
    }
    tracing::info!("SHUTDOWN requested by client {}", ctx.session.id());
    ctx.node.begin_shutdown();
    ctx.session.close_after_reply = true;
    Ok(Frame::NoReply)
}

fn memory(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let sub = &args[1];
    if is(sub, "usage") && (args.len() == 3 || args.len() == 5) {
        let now = ctx.now_ms;
        let key = args[2].clone();
        Ok(match ctx.db().peek(&key, now) {
            Some(v) => Frame::Integer(crate::keyspace::entry_bytes(&key, v) as i64),
            None => Frame::Null,
        })
    } else if is(sub, "help") {
        Ok(Frame::Array(vec![Frame::simple(
            "MEMORY USAGE <key> [SAMPLES <count>]",
        )]))
    } else {
        Err(unknown_subcommand(sub, "MEMORY"))
    }
}

/// DEBUG PROTOCOL: one reply of each RESP type, as Redis sends them (for
/// client library tests).
#[allow(clippy::approx_constant)] // Redis's own value, not π
fn debug_protocol(proto: crate::resp::Protocol, name: &[u8]) -> CmdResult {
    let real = |text: &'static str| Frame::bulk(text);
    Ok(match name.to_ascii_lowercase().as_slice() {
        b"string" => real("Hello World"),
        b"integer" => Frame::Integer(12345),
        b"double" => Frame::Double(3.141),
        b"bignum" => Frame::BigNumber("1234567999999999999999999999999999999".into()),
        b"null" => Frame::Null,
        b"array" => Frame::Array((0..3).map(Frame::Integer).collect()),
        b"set" => Frame::Set((0..3).map(Frame::Integer).collect()),
        b"map" => Frame::Map((0..3).map(|j| (Frame::Integer(j), Frame::Boolean(j == 1))).collect()),
        b"attrib" => Frame::Multiple(vec![
            Frame::Attribute(vec![(
                Frame::bulk("key-popularity"),
                Frame::Array(vec![Frame::bulk("key:123"), Frame::Integer(90)]),
            )]),
            real("Some real reply following the attribute"),
        ]),
        b"push" if proto == crate::resp::Protocol::Resp2 => {
            return Err(Frame::error("ERR RESP2 is not supported by this command"))
        }
        b"push" => Frame::Multiple(vec![
            Frame::Push(vec![Frame::bulk("server-cpu-usage"), Frame::Integer(42)]),
            real("Some real reply following the push reply"),
        ]),
        b"true" => Frame::Boolean(true),
        b"false" => Frame::Boolean(false),
        b"verbatim" => Frame::Verbatim("This is a verbatim\nstring".into()),
        _ => return Err(Frame::error("ERR Wrong protocol type name. Please use one of the following: string|integer|double|bignum|null|array|set|map|attrib|push|verbatim|true|false")),
    })
}

/// A standalone node, as Redis without `cluster-enabled` answers (clients
/// probe with CLUSTER INFO and fall back).
fn cluster(_ctx: &mut ExecCtx, _args: &[Bytes]) -> CmdResult {
    Err(Frame::error(
        "ERR This instance has cluster support disabled",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax_lines_become_nested_docs() {
        let args =
            parse_syntax("key value [NX | XX] [GET] [EX seconds | PX milliseconds | KEEPTTL]");
        assert_eq!(args.len(), 5);
        assert_eq!(args[0].kind, "key");
        assert!(args[2].optional && args[2].kind == "oneof" && args[2].args.len() == 2);
        assert_eq!(args[3].token.as_deref(), Some("GET"));
        assert_eq!(args[4].args[0].kind, "block");
        let keys = parse_syntax("key [key ...]");
        assert_eq!(keys.len(), 1);
        assert!(keys[0].multiple);
        // Every group carries the sub-arguments redis-cli walks into.
        fn check(a: &DocArg) {
            if a.kind == "oneof" || a.kind == "block" {
                assert!(!a.args.is_empty(), "{a:?}");
            }
            a.args.iter().for_each(check);
        }
        for spec in crate::commands::all_commands() {
            parse_syntax(spec.syntax).iter().for_each(check);
        }
    }
}
