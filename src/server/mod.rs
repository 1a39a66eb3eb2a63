//! The node's IO edge for clients: the TCP listener, one task per client
//! connection, and the background cron (active expiry, save rules).
//!
//! All shared state lives in [`Shared`]. The dataset is one `Mutex`: a
//! connection takes it once per batch of pipelined commands, so a pipeline
//! of N commands costs one lock acquisition, and every command sees a
//! consistent dataset (as Redis's single thread gives).

mod actions;
mod connection;
mod feed;
pub mod persistence;

use crate::config::{Settings, Sources};
use crate::keyspace::Keyspace;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tracing::Instrument;

use crate::node::stats::Stats;
pub use crate::node::{unix_ms, wait_shutdown, Data, Shared};

/// A running node: its listener is bound and its data loaded.
pub struct Node {
    pub shared: Arc<Shared>,
    listener: TcpListener,
    metrics: Option<TcpListener>,
    /// The log to replay once serving starts (clients get `-LOADING`).
    replay: Option<persistence::Replay>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Recovery(#[from] persistence::RecoveryError),
    #[error("cannot use data directory {path}: {source}")]
    Dir {
        path: String,
        source: std::io::Error,
    },
    #[error("replication: {0}")]
    Replication(String),
}

impl Node {
    /// Loads the snapshot and binds the client port; serving starts with
    /// [`Node::run`].
    pub async fn start(settings: Settings, sources: &Sources) -> Result<Node, StartError> {
        std::fs::create_dir_all(&settings.dir).map_err(|source| StartError::Dir {
            path: settings.dir.display().to_string(),
            source,
        })?;
        // Snapshots this node served in an earlier run cannot be resumed
        // from (their transfers' state is gone with that run)...
        crate::replication::fullsync::clear_dir(&settings.dir.join("repl-snapshots"));
        // ...but one it was receiving as a replica can: it asks for the rest.
        let incoming = if settings.replicaof.is_empty() {
            crate::replication::fullsync::discard_incoming(&settings.dir);
            None
        } else {
            crate::replication::fullsync::recover_incoming(&settings.dir)
        };
        let addr = format!("{}:{}", settings.bind, settings.port);
        let shared = Shared::new(settings, sources, crate::commands::stream_applier);
        if let Some(incoming) = incoming {
            tracing::info!(id = %incoming.id, at = incoming.received, size = incoming.size, "an interrupted full-sync transfer will be resumed");
            *shared.repl.incoming.lock() = Some(incoming);
        }
        let replay = persistence::load_at_startup(&shared)?;
        let listener = TcpListener::bind(&addr)
            .await
            .map_err(|source| StartError::Bind {
                addr: addr.clone(),
                source,
            })?;
        let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
        shared
            .tcp_port
            .store(port, std::sync::atomic::Ordering::Relaxed);
        shared.repl.refresh(&shared.settings.read());
        let epoch = crate::replication::failover::load_epoch(&shared.settings.read().dir);
        shared.repl.set_epoch(epoch);
        bind_replication(&shared)?;
        // A primary with peers takes no write before its first fencing
        // probe has answered; writes are refused from the first accepted
        // connection on (the fencing task starts once the log is replayed).
        {
            let s = shared.settings.read();
            let guarded = shared.repl.endpoint.lock().is_some()
                && !s.repl.peers.is_empty()
                && s.replicaof.is_empty();
            shared
                .repl
                .awaiting_fence_check
                .store(guarded, std::sync::atomic::Ordering::Release);
        }
        let metrics = {
            let s = shared.settings.read().clone();
            if s.metrics.port == 0 {
                None
            } else {
                let host = if s.metrics.bind.is_empty() {
                    s.bind.clone()
                } else {
                    s.metrics.bind.clone()
                };
                let addr = format!("{host}:{}", s.metrics.port);
                Some(
                    TcpListener::bind(&addr)
                        .await
                        .map_err(|source| StartError::Bind { addr, source })?,
                )
            }
        };
        if let Some(m) = &metrics {
            shared.metrics_port.store(
                m.local_addr().map(|a| a.port()).unwrap_or(0),
                std::sync::atomic::Ordering::Relaxed,
            );
        }
        Ok(Node {
            shared,
            listener,
            metrics,
            replay,
        })
    }

    pub fn port(&self) -> u16 {
        self.shared
            .tcp_port
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Serves until shutdown. Replays the log first, answering `-LOADING`
    /// meanwhile; then starts the cron, metrics and replication. A log that
    /// cannot be replayed stops the node with the reason.
    pub async fn run(self) -> Result<(), StartError> {
        let Node {
            shared,
            listener,
            metrics,
            replay,
        } = self;
        let span = shared.span();
        // What the node takes before it holds data (used_memory_startup).
        shared
            .stats
            .startup_memory
            .store(crate::memory::used(), std::sync::atomic::Ordering::Relaxed);
        let log_thread = {
            let shared = shared.clone();
            let span = span.clone();
            std::thread::Builder::new()
                .name("quire-log".into())
                .spawn(move || span.in_scope(|| persistence::run_log_thread(shared)))
                .map_err(|source| StartError::Dir {
                    path: "log thread".into(),
                    source,
                })?
        };
        let background = {
            let (shared, task_span, span) = (shared.clone(), span.clone(), span.clone());
            tokio::spawn(
                async move {
                    let replayed = {
                        let shared = shared.clone();
                        let replay_span = span.clone();
                        tokio::task::spawn_blocking(move || {
                            replay_span.in_scope(|| {
                                replay.map_or(Ok(()), |plan| persistence::replay(&shared, plan))
                            })
                        })
                        .await
                    };
                    let result = match replayed {
                        Ok(r) => r.map_err(StartError::from),
                        Err(e) => Err(StartError::Replication(format!(
                            "recovery task failed: {e}"
                        ))),
                    };
                    if let Err(e) = result {
                        tracing::error!(error = %e, "cannot start");
                        shared.begin_shutdown();
                        return Err(e);
                    }
                    let cron = tokio::spawn(cron(shared.clone()).instrument(span.clone()));
                    if let Some(m) = metrics {
                        tokio::spawn(
                            crate::metrics::serve(shared.clone(), m).instrument(span.clone()),
                        );
                    }
                    start_replication(&shared);
                    shared
                        .persistence
                        .loading
                        .store(false, std::sync::atomic::Ordering::Release);
                    tracing::info!("ready to accept connections");
                    Ok(cron)
                }
                .instrument(task_span),
            )
        };
        let mut shutdown = shared.shutdown_signal();
        let _entered = span.enter();
        tracing::info!(
            port = shared.tcp_port.load(std::sync::atomic::Ordering::Relaxed),
            "listening (the dataset loads meanwhile)"
        );
        drop(_entered);
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((socket, addr)) => {
                        let shared = shared.clone();
                        tokio::spawn(async move { connection::serve(shared, socket, addr).await }.instrument(span.clone()));
                    }
                    Err(e) => {
                        // Out of file descriptors and similar: back off, keep serving.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                _ = wait_shutdown(&mut shutdown) => break,
            }
        }
        let started = match background.await {
            Ok(started) => started,
            Err(e) => Err(StartError::Replication(format!(
                "start-up task failed: {e}"
            ))),
        };
        if let Ok(cron) = &started {
            cron.abort();
        }
        drop(listener);
        // The log thread writes and fsyncs what is left, then stops.
        shared.persistence.wake_log_thread();
        let _ = tokio::task::spawn_blocking(move || log_thread.join()).await;
        tracing::info!("shut down");
        started.map(|_| ())
    }
}

/// Binds the QUIC replication endpoint when this node has certificates.
/// Without them a primary runs without replication (logged); a node
/// configured as a replica refuses to start.
fn bind_replication(shared: &Arc<Shared>) -> Result<(), StartError> {
    let settings = shared.settings.read().clone();
    let (dir, node) = (&settings.repl.certs, &settings.node.name);
    if !crate::transport::TlsIdentity::present(dir, node) {
        if !settings.replicaof.is_empty() {
            return Err(StartError::Replication(format!(
                "replicaof is set but there are no certificates for node '{node}' in {} (create them with `quire certs init`)",
                dir.display()
            )));
        }
        tracing::info!(certs = %dir.display(), node = %node, "replication disabled: no certificates for this node");
        return Ok(());
    }
    let identity = crate::transport::TlsIdentity::load(dir, node)
        .map_err(|e| StartError::Replication(e.to_string()))?;
    let addr = settings
        .repl_addr()
        .map_err(|e| StartError::Replication(e.to_string()))?;
    let endpoint = crate::transport::bind_endpoint(addr, &identity, &settings.repl, &settings.link)
        .map_err(|e| StartError::Replication(e.to_string()))?;
    let port = endpoint.local_addr().map(|a| a.port()).unwrap_or(0);
    shared
        .repl
        .port
        .store(port, std::sync::atomic::Ordering::Relaxed);
    *shared.repl.endpoint.lock() = Some(endpoint);
    Ok(())
}

/// Starts accepting replicas and, if configured, the upstream link.
fn start_replication(shared: &Arc<Shared>) {
    let Some(endpoint) = shared.repl.endpoint.lock().clone() else {
        return;
    };
    tracing::info!(
        port = shared.repl.port.load(std::sync::atomic::Ordering::Relaxed),
        "replication endpoint ready"
    );
    let allowed = shared.settings.read().repl.allowed_replicas.clone();
    if allowed.is_empty() {
        tracing::warn!(
            "repl.allowed_replicas is empty: ANY node with a certificate from this CA may replicate the whole dataset from this node; list the group's nodes (the region profiles do)"
        );
    } else {
        tracing::info!(?allowed, "replicas admitted by certificate name");
    }
    tokio::spawn(crate::link::primary::serve(shared.clone(), endpoint).instrument(shared.span()));
    let replicaof = shared.settings.read().replicaof.clone();
    if let Ok((host, port)) = crate::config::parse_host_port(&replicaof) {
        let upstream = crate::replication::Upstream { host, port };
        shared.data.lock().keyspace.set_delete_expired(false);
        let generation = shared.repl.set_upstream(Some(upstream.clone()));
        crate::link::replica::spawn_link(shared.clone(), upstream, generation);
    }
    tokio::spawn(crate::link::fence::run(shared.clone()).instrument(shared.span()));
}

/// Background work `hz` times a second: active expiry and save rules.
/// What the backlog may take on disk: `max_disk`, and no more than what
/// it holds now plus half the free space of its filesystem (an outage
/// tolerance must not fill the disk the log writes to).
fn disk_budget(shared: &Shared, max_disk: u64) -> u64 {
    let dir = shared.settings.read().dir.join("backlog");
    match free_bytes(&dir) {
        Some(free) => max_disk.min(shared.log.disk_bytes() + free / 2),
        None => max_disk,
    }
}

/// Free bytes on the filesystem holding `path` (statvfs), if it can tell.
fn free_bytes(path: &std::path::Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated path and a zeroed out-struct of the right type.
    if unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) } != 0 {
        return None;
    }
    Some(stat.f_bavail as u64 * stat.f_frsize as u64)
}

async fn cron(shared: Arc<Shared>) {
    let mut last_ping_ms = unix_ms();
    loop {
        let hz = shared.settings.read().hz.max(1);
        tokio::time::sleep(Duration::from_millis(1000 / hz as u64)).await;
        let now = unix_ms();
        shared
            .stats
            .ops
            .sample(Stats::get(&shared.stats.commands_processed));
        let used = crate::memory::used();
        shared
            .stats
            .peak_memory
            .fetch_max(used, std::sync::atomic::Ordering::Relaxed);
        let (backlog, backlog_keep, is_replica) = {
            let s = shared.settings.read();
            (
                s.repl.backlog.clone(),
                s.repl.snapshot_keep_secs,
                shared.repl.is_replica(),
            )
        };
        let max_disk = disk_budget(&shared, backlog.max_disk);
        shared.pin_snapshot_transfers();
        // A busy script holds the lock: this round waits for the next.
        let Some(mut guard) = shared.lock_unless_busy() else {
            continue;
        };
        let data = &mut *guard;
        data.repl
            .tick(now, backlog.size, backlog.outage_secs(), max_disk);
        let offset_before = data.repl.offset();
        // A command's round of eviction stops at its time limit; the cron
        // carries on with a round of its own (Redis's eviction timeProc).
        let started = Instant::now();
        if crate::node::eviction::perform(
            &shared,
            &mut data.keyspace,
            &mut data.repl,
            &data.pubsub,
            now,
            Some(Duration::from_millis(250 / hz as u64)),
        ) != crate::node::eviction::Outcome::Under
        {
            crate::node::slowlog::record_event(&shared, "eviction-cycle", started.elapsed());
        }
        let active_expire = !shared
            .stats
            .active_expire_off
            .load(std::sync::atomic::Ordering::Relaxed);
        if !is_replica && active_expire {
            let started = Instant::now();
            let expired = active_expire_cycle(
                &mut data.keyspace,
                now,
                Duration::from_millis(250 / hz as u64),
            );
            crate::node::slowlog::record_event(&shared, "expire-cycle", started.elapsed());
            for (db, key) in expired {
                crate::node::pubsub::notify_keyspace_event(
                    &shared,
                    &data.pubsub,
                    crate::keyspace::notify::EXPIRED,
                    "expired",
                    db,
                    key.as_bytes(),
                );
                data.repl.emit(db, &[b"DEL".as_slice(), key.as_bytes()]);
            }
        }
        // Redis primaries feed their replicas a PING every
        // repl-ping-replica-period seconds: the Redis-protocol ones time
        // out without traffic.
        let feeds = shared
            .repl
            .counters
            .resp_feeds
            .load(std::sync::atomic::Ordering::Relaxed);
        let period_ms = shared.settings.read().repl_ping_replica_period.max(1) as i64 * 1000;
        if feeds > 0 && !is_replica && now - last_ping_ms >= period_ms {
            data.repl.emit_global(&[b"PING".as_slice()]);
            last_ping_ms = now;
        }
        let wrote = data.repl.offset() != offset_before;
        shared
            .repl
            .record_offset(data.repl.offset(), Instant::now());
        shared
            .repl
            .snapshots
            .sweep(Duration::from_secs(backlog_keep));
        let dirty = data.keyspace.dirty;
        let mut snapshot = None;
        if persistence::save_rule_due(&shared, dirty, now / 1000) {
            tracing::info!(changes = dirty, "save rule reached, saving in background");
            let position = data.repl.position();
            snapshot = persistence::start_background_save(&shared, &data.keyspace, position);
        } else if persistence::rewrite_due(&shared) {
            tracing::info!(
                log_bytes = shared.log.bytes_since_snapshot(),
                "log grew past auto-aof-rewrite-percentage: compacting it with a snapshot"
            );
            let position = data.repl.position();
            snapshot = persistence::start_rewrite(&shared, &data.keyspace, position);
        }
        drop(guard);
        if let Some(job) = snapshot {
            actions::run(
                &shared,
                &mut vec![crate::node::NodeAction::WriteSnapshot(job)],
            );
        }
        if wrote {
            let _ = shared.log.write_pending();
            shared.repl.stream_ready.notify_waiters();
        }
        shared.log.trim();
    }
}

/// Redis's active expiry: sample 20 keys with a TTL per database, delete the
/// expired ones, repeat while more than a quarter were expired, within a
/// time budget.
/// Returns the keys deleted, for the replication stream.
pub fn active_expire_cycle(
    ks: &mut Keyspace,
    now_ms: i64,
    budget: Duration,
) -> Vec<(usize, crate::keyspace::Blob)> {
    let started = Instant::now();
    for db in ks.dbs.iter_mut() {
        loop {
            let (sampled, expired) = db.active_expire_round(now_ms, 20);
            if sampled == 0 || expired * 4 <= sampled || started.elapsed() > budget {
                break;
            }
        }
    }
    let expired = ks.drain_expired();
    ks.dirty += expired.len() as u64;
    expired
}

/// Shutdown on a signal: save if save rules are configured (as Redis does
/// on SIGTERM), then stop every task.
pub fn shutdown_and_save(shared: &Arc<Shared>) {
    let rules = !shared.settings.read().save.is_empty();
    // A node still replaying its log holds part of its data: saving it
    // would replace a good snapshot with a partial one.
    if rules
        && !shared
            .persistence
            .loading
            .load(std::sync::atomic::Ordering::Acquire)
    {
        let mut data = shared.data.lock();
        let position = data.repl.position();
        if let Err(e) = persistence::save_blocking(shared, &mut data.keyspace, position) {
            tracing::error!(error = %e, "error saving before shutdown");
        }
    }
    shared.begin_shutdown();
}
