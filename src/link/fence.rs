//! Fencing's edge: a node acting as primary probes its peers
//! (`repl.peers`) every second; when one reports a newer epoch, this node
//! has been replaced by a promotion. It then refuses writes (it becomes a
//! replica), reports what it took that the group never saw, and follows
//! the new primary. The decision itself is [`crate::replication::failover::decide`].

use super::primary::read_message;
use crate::config::parse_host_port;
use crate::node::{wait_shutdown, Shared};
use crate::replication::apply::UnitSplitter;
use crate::replication::failover::{self, FenceDecision, PeerView, SelfView};
use crate::replication::ids::Epoch;
use crate::replication::protocol::{self, MessageReader, PrimaryMessage, ReplicaMessage};
use crate::replication::{FencedReport, Upstream};
use std::sync::Arc;
use std::time::Duration;

const PROBE_INTERVAL: Duration = Duration::from_secs(1);
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Probes peers while this node is a primary, until shutdown.
pub async fn run(shared: Arc<Shared>) {
    use std::sync::atomic::Ordering;
    let mut shutdown = shared.shutdown_signal();
    let mut tick = tokio::time::interval(PROBE_INTERVAL);
    let guarded = !shared.settings.read().repl.peers.is_empty() && !shared.repl.is_replica();
    shared
        .repl
        .awaiting_fence_check
        .store(guarded, Ordering::Release);
    let mut first = true;
    loop {
        if !first {
            shared
                .repl
                .awaiting_fence_check
                .store(false, Ordering::Release);
        }
        first = false;
        tokio::select! {
            _ = tick.tick() => {}
            _ = wait_shutdown(&mut shutdown) => return,
        }
        let peers = shared.settings.read().repl.peers.clone();
        if peers.is_empty() || shared.repl.is_replica() {
            continue;
        }
        let Some(endpoint) = shared.repl.endpoint.lock().clone() else {
            return;
        };
        let my_epoch = shared.repl.epoch();
        let probes = peers.iter().map(|peer| probe(&endpoint, peer, my_epoch));
        let replies: Vec<PeerView> = futures_join(probes).await.into_iter().flatten().collect();
        let me = {
            let data = shared.data.lock();
            SelfView {
                epoch: my_epoch,
                is_primary: !shared.repl.is_replica(),
                replid: data.repl.replid.clone(),
                offset: data.repl.offset(),
            }
        };
        let decision = failover::decide(&me, &replies);
        if matches!(decision, FenceDecision::Demote { .. }) {
            demote(&shared, decision, my_epoch);
        }
    }
}

/// Runs the probes concurrently (a handful of peers; no crate needed).
async fn futures_join<F: std::future::Future<Output = Option<PeerView>> + Send + 'static>(
    futures: impl Iterator<Item = F>,
) -> Vec<Option<PeerView>> {
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.ok().flatten());
    }
    out
}

/// Asks one peer for its epoch and role; `None` if unreachable.
fn probe(
    endpoint: &quinn::Endpoint,
    peer: &str,
    epoch: Epoch,
) -> impl std::future::Future<Output = Option<PeerView>> + Send + 'static {
    let endpoint = endpoint.clone();
    let peer = peer.to_string();
    async move {
        let result = tokio::time::timeout(PROBE_TIMEOUT, async {
            let (host, port) = parse_host_port(&peer).ok()?;
            let addr = tokio::net::lookup_host((host.as_str(), port))
                .await
                .ok()?
                .next()?;
            let conn = endpoint.connect(addr, &host).ok()?.await.ok()?;
            let (mut send, mut recv) = conn.open_bi().await.ok()?;
            send.write_all(&protocol::encode(&ReplicaMessage::Probe { epoch }))
                .await
                .ok()?;
            let mut reader = MessageReader::new();
            let mut buf = vec![0u8; 4096];
            let reply = read_message::<PrimaryMessage>(&mut recv, &mut reader, &mut buf)
                .await
                .ok()??;
            conn.close(0u32.into(), b"probed");
            match reply {
                PrimaryMessage::ProbeReply {
                    epoch,
                    is_primary,
                    upstream,
                    replid,
                    replid2,
                    second_offset,
                } => Some(PeerView {
                    addr: peer.clone(),
                    epoch,
                    is_primary,
                    upstream,
                    replid,
                    replid2,
                    second_offset,
                }),
                _ => None,
            }
        })
        .await;
        result.ok().flatten()
    }
}

/// Stops acting as primary: records what diverged, then follows `follow`.
pub fn demote(shared: &Arc<Shared>, decision: FenceDecision, old_epoch: Epoch) {
    let FenceDecision::Demote {
        follow,
        epoch,
        divergence,
    } = decision
    else {
        return;
    };
    let Ok((host, port)) = parse_host_port(&follow) else {
        tracing::error!(%follow, "cannot follow the new primary: bad address");
        return;
    };
    let mut guard = shared.data.lock();
    let data = &mut *guard;
    if shared.repl.is_replica() {
        return;
    }
    let commands = divergence
        .as_ref()
        .map(|d| count_commands(&mut data.repl, d.from, d.to))
        .unwrap_or(0);
    match &divergence {
        Some(d) => tracing::error!(
            %old_epoch,
            new_epoch = %epoch,
            follow = %follow,
            writes = commands,
            from_offset = d.from,
            to_offset = d.to,
            "FENCED: a newer primary exists; the writes this node took in [from_offset, to_offset) were never replicated: the resync sets them aside (a rewind keeps them in DIR/diverged-*.aof) or a full sync discards them"
        ),
        None => {
            tracing::warn!(%old_epoch, new_epoch = %epoch, follow = %follow, "FENCED: a newer primary exists; following it")
        }
    }
    *shared.repl.fenced.lock() = Some(FencedReport {
        old_epoch,
        new_epoch: epoch,
        follow: follow.clone(),
        divergence,
        commands,
    });
    super::replica::follow(
        shared,
        &mut data.keyspace,
        &mut data.repl,
        Upstream { host, port },
    );
}

/// Commands in the stream range `[from, to)`, as far as the backlog holds it.
pub(super) fn count_commands(
    log: &mut crate::replication::ReplicationLog,
    from: u64,
    to: u64,
) -> u64 {
    let mut splitter = UnitSplitter::new();
    let mut at = from;
    let mut commands = 0u64;
    while at < to {
        let Ok(bytes) = log.read(at, ((to - at) as usize).min(1 << 20)) else {
            break;
        };
        if bytes.is_empty() {
            break;
        }
        at += bytes.len() as u64;
        match splitter.handle_bytes(&bytes) {
            Ok(units) => {
                commands += units
                    .units
                    .iter()
                    .map(|u| {
                        u.commands
                            .iter()
                            .filter(|c| !c[0].eq_ignore_ascii_case(b"select"))
                            .count() as u64
                    })
                    .sum::<u64>()
            }
            Err(_) => break,
        }
    }
    commands
}

/// Drives a planned failover (FAILOVER) to completion or abort.
pub async fn drive_failover(shared: Arc<Shared>) {
    use std::sync::atomic::Ordering;
    let finish = |shared: &Shared, why: &str| {
        *shared.repl.failover.lock() = failover::FailoverState::None;
        shared.repl.writes_paused.store(false, Ordering::Release);
        tracing::info!(why, "failover finished");
    };
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    loop {
        tick.tick().await;
        let state = shared.repl.failover.lock().clone();
        match &state {
            failover::FailoverState::None => return,
            failover::FailoverState::WaitingForSync { target, .. } => {
                let acked = shared
                    .repl
                    .replicas
                    .lock()
                    .replicas
                    .values()
                    .find(|r| &r.repl_addr == target)
                    .map(|r| r.ack_offset);
                match failover::failover_step(&state, acked, crate::node::unix_ms()) {
                    failover::FailoverStep::Wait => {}
                    failover::FailoverStep::Abort(reason) => {
                        tracing::warn!(reason, "failover aborted");
                        finish(&shared, reason);
                        return;
                    }
                    failover::FailoverStep::Handover => {
                        *shared.repl.failover.lock() = failover::FailoverState::InProgress {
                            target: target.clone(),
                        };
                        shared.repl.handover.notify_waiters();
                    }
                }
            }
            failover::FailoverState::InProgress { target } => {
                // The target's link closes once it has taken over.
                let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
                loop {
                    let attached = shared
                        .repl
                        .replicas
                        .lock()
                        .replicas
                        .values()
                        .any(|r| &r.repl_addr == target);
                    if !attached || tokio::time::Instant::now() > deadline {
                        break;
                    }
                    shared.repl.handover.notify_waiters();
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                let Ok((host, port)) = parse_host_port(target) else {
                    finish(&shared, "bad target address");
                    return;
                };
                {
                    let mut guard = shared.data.lock();
                    let data = &mut *guard;
                    super::replica::follow(
                        &shared,
                        &mut data.keyspace,
                        &mut data.repl,
                        Upstream { host, port },
                    );
                }
                finish(&shared, "now a replica of the new primary");
                return;
            }
        }
    }
}
