//! Carries out the node actions command handlers hand back
//! ([`NodeAction`]), once the dataset lock is released: the tasks and
//! threads a handler may not start itself.

use crate::node::{NodeAction, Shared};
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

/// Runs `actions` in the order the handlers asked for them.
pub fn run(shared: &Arc<Shared>, actions: &mut Vec<NodeAction>) {
    for action in actions.drain(..) {
        tracing::debug!(?action, "node action");
        match action {
            NodeAction::Follow {
                upstream,
                generation,
            } => crate::link::replica::spawn_link(shared.clone(), upstream, generation),
            NodeAction::DriveFailover => {
                tokio::spawn(
                    crate::link::fence::drive_failover(shared.clone()).instrument(shared.span()),
                );
            }
            NodeAction::WriteSnapshot(job) => {
                let shared = shared.clone();
                let span = shared.span();
                tokio::task::spawn_blocking(move || span.in_scope(|| job.write(&shared)));
            }
            NodeAction::ReloadFromDisk { reply } => {
                let shared = shared.clone();
                let span = shared.span();
                tokio::task::spawn_blocking(move || {
                    span.in_scope(|| {
                        let answer = match super::persistence::reload_from_disk(&shared) {
                            Ok(()) => crate::resp::Frame::ok(),
                            Err(e) => crate::resp::Frame::error_owned(format!("ERR {e}")),
                        };
                        let _ = reply.send(answer);
                    })
                });
            }
            NodeAction::WaitAof {
                target,
                numlocal,
                numreplicas,
                reply,
            } => {
                tokio::spawn(
                    wait_aof(shared.clone(), target, numlocal, numreplicas, reply)
                        .in_current_span(),
                );
            }
        }
    }
}

/// WAITAOF's wait: until the counts reach what was asked, or the client
/// stops waiting (timeout, disconnect).
async fn wait_aof(
    shared: Arc<Shared>,
    target: u64,
    numlocal: bool,
    numreplicas: usize,
    mut reply: tokio::sync::oneshot::Sender<crate::resp::Frame>,
) {
    let mut durable = shared.log.watch_durable();
    loop {
        let acked = shared.repl.acked.notified();
        tokio::pin!(acked);
        acked.as_mut().enable();
        let now = shared.aof_acknowledged(target);
        if (now.0 || !numlocal) && now.1 >= numreplicas {
            let _ = reply.send(crate::commands::waitaof_reply(now));
            return;
        }
        if numlocal && !now.0 {
            shared.persistence.wake_log_thread();
        }
        tokio::select! {
            _ = durable.changed() => {}
            _ = &mut acked => {}
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = reply.closed() => return,
        }
    }
}
