//! One task per client connection: reads bytes, decodes requests, runs them
//! in batches under the dataset lock, writes replies.
//!
//! Requests are queued in arrival order; a blocking command that has to
//! wait stops the queue until it is served or times out, so pipelined
//! commands after it keep their order. Pub/sub messages are written as they
//! arrive. A malformed request gets Redis's `-ERR Protocol error: ...` and
//! closes this connection only; the replies to the well-formed requests
//! before it are sent first.

use super::{unix_ms, wait_shutdown, Shared};
use crate::commands::{self, pubsub, ExecCtx, Session};
use crate::resp::{self, DecodeLimits, Frame, RequestDecoder};
use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tracing::Instrument;

/// Most requests run per lock acquisition, so one deep pipeline cannot
/// starve other clients.
const MAX_BATCH: usize = 512;
/// Requests decoded ahead while the client is blocked, before reading pauses.
const MAX_PENDING: usize = 16 * 1024;

pub async fn serve(shared: Arc<Shared>, mut socket: TcpStream, addr: SocketAddr) {
    let laddr = socket.local_addr().unwrap_or(addr);
    let _ = socket.set_nodelay(true);
    shared
        .stats
        .connections_received
        .fetch_add(1, Ordering::Relaxed);
    let max = shared.settings.read().maxclients as usize;
    let Some(registration) = shared.clients.register(addr, laddr, max) else {
        shared
            .stats
            .rejected_connections
            .fetch_add(1, Ordering::Relaxed);
        let _ = socket
            .write_all(b"-ERR max number of clients reached\r\n")
            .await;
        return;
    };
    let handle = registration.handle.clone();
    // Every line this client's task logs carries its id and address.
    let span = tracing::info_span!("client", id = handle.id, peer = %addr);
    serve_registered(shared.clone(), socket, handle)
        .instrument(span)
        .await;
}

async fn serve_registered(
    shared: Arc<Shared>,
    mut socket: TcpStream,
    handle: Arc<crate::node::clients::ClientHandle>,
) {
    let needs_auth = crate::commands::new_clients_need_auth(&shared);
    let (outbox, inbox) = mpsc::channel(pubsub::SUBSCRIBER_QUEUE);
    let mut session = Session::new(handle.clone(), !needs_auth, outbox);
    match run(&shared, &mut socket, &mut session, inbox).await {
        Ok(reason) => tracing::debug!(reason, "client closed"),
        Err(e) => tracing::debug!(error = %e, "client connection error"),
    }
    // Off the runtime's threads: a busy script may hold the lock.
    let _ = tokio::task::spawn_blocking(move || {
        let mut data = shared.data.lock();
        commands::disconnect(&mut data, &mut session);
    })
    .await;
}

async fn run(
    shared: &Arc<Shared>,
    socket: &mut TcpStream,
    session: &mut Session,
    mut inbox: mpsc::Receiver<pubsub::Message>,
) -> std::io::Result<&'static str> {
    let mut input = BytesMut::with_capacity(16 * 1024);
    let mut output = BytesMut::with_capacity(16 * 1024);
    let mut decoder = RequestDecoder::new();
    let mut pending: VecDeque<Vec<Bytes>> = VecDeque::new();
    let mut protocol_error = None;
    let mut shutdown = shared.shutdown_signal();
    let handle = session.handle.clone();
    let mut last_activity = std::time::Instant::now();
    let mut actions = Vec::new();
    loop {
        if protocol_error.is_none() && pending.len() < MAX_PENDING {
            let limits = decode_limits(shared, session);
            // Before AUTH the limits are tiny, so decode one request at a time
            // and re-derive the limits once it has run.
            while pending.len() < MAX_PENDING && (session.authenticated || pending.is_empty()) {
                match decoder.decode(&mut input, &limits) {
                    Ok(Some(args)) => pending.push_back(args),
                    Ok(None) => break,
                    Err(e) => {
                        protocol_error = Some(e);
                        break;
                    }
                }
            }
        }
        if session.blocked.is_none() && !pending.is_empty() {
            // One clock reading per batch: the commands of a pipeline run
            // within microseconds of each other under one lock.
            let now_ms = unix_ms();
            handle.last_interaction_ms.store(now_ms, Ordering::Relaxed);
            // A script past busy-reply-threshold holds the lock: answer
            // without it (BUSY, SCRIPT KILL) instead of waiting. Such a
            // script hands this runtime thread to the other tasks from its
            // hook (`script_state::leave_runtime_thread`).
            let mut run_batch = || match shared.lock_unless_busy() {
                None => None,
                Some(mut guard) => {
                    let data = &mut *guard;
                    let offset_before = data.repl.offset();
                    let mut ran = 0;
                    while let Some(args) = pending.pop_front() {
                        let mut ctx = ExecCtx {
                            keyspace: &mut data.keyspace,
                            blocking: &mut data.blocking,
                            pubsub: &mut data.pubsub,
                            cmdstats: &mut data.cmdstats,
                            scripts: &mut data.scripts,
                            node: shared,
                            session,
                            now_ms,
                            repl: &mut data.repl,
                            effects: None,
                            actions: &mut actions,
                        };
                        let reply = commands::execute(&mut ctx, &args);
                        session.write_reply(&reply, &mut output);
                        ran += 1;
                        if session.close_after_reply
                            || session.blocked.is_some()
                            || session.feed.is_some()
                            || ran == MAX_BATCH
                        {
                            break;
                        }
                        if !session.authenticated && !pending.is_empty() {
                            // Limits change with authentication: decode the rest anew.
                            break;
                        }
                    }
                    let offset_after = data.repl.offset();
                    Some((offset_after != offset_before, offset_after))
                }
            };
            let processed = run_batch();
            let Some((wrote, offset_after)) = processed else {
                while let Some(args) = pending.pop_front() {
                    let reply = busy_reply(shared, session, &args);
                    session.write_reply(&reply, &mut output);
                }
                write_out(shared, socket, &mut output).await?;
                continue;
            };
            // Tasks and threads the commands asked for, lock released.
            if !actions.is_empty() {
                super::actions::run(shared, &mut actions);
            }
            if wrote {
                // No reply to a write before the log has it (on the OS's
                // side, or fsynced under appendfsync always); senders ship
                // only what the log has handed to the OS, so wake them now.
                super::persistence::make_durable(shared, offset_after).await;
                shared.repl.stream_ready.notify_waiters();
            }
            session.flush_stats(&shared.stats);
            let limit = shared.settings.read().client_output_buffer_limit_normal;
            if limit > 0 && output.len() as u64 > limit && session.subscriptions == 0 {
                tracing::warn!(
                    bytes = output.len(),
                    limit,
                    "closing client: output buffer limit reached"
                );
                return Ok("output buffer limit reached");
            }
        }
        if session.blocked.is_none() && pending.is_empty() {
            if let Some(e) = protocol_error.take() {
                tracing::info!(error = %e, "closing client after protocol error");
                resp::encode(
                    &Frame::error_owned(format!("ERR {e}")),
                    session.proto,
                    &mut output,
                );
                write_out(shared, socket, &mut output).await?;
                return Ok("protocol error");
            }
        }
        if !output.is_empty() {
            write_out(shared, socket, &mut output).await?;
        }
        if session.close_after_reply {
            return Ok("quit");
        }
        if let Some(start) = session.feed.take() {
            // Requests pipelined after SYNC are not run (Redis's master
            // reads only REPLCONF from a replica).
            return super::feed::serve(shared, socket, start).await;
        }
        if session.blocked.is_none() && !pending.is_empty() {
            continue;
        }
        if let Some(wanted) = decoder.wanted_bytes(&input) {
            input.reserve(wanted.min(64 * 1024 * 1024));
        } else if input.capacity() - input.len() < 4096 {
            input.reserve(16 * 1024);
        }
        let idle_timeout = shared.settings.read().timeout;
        let never_idle =
            idle_timeout == 0 || session.blocked.is_some() || session.subscriptions > 0;
        // Idle is measured from the last byte received; the timeout is
        // re-read every second so CONFIG SET timeout reaches stalled clients.
        let idle = async {
            if never_idle {
                tokio::time::sleep(Duration::from_secs(1)).await;
                false
            } else {
                tokio::time::sleep_until(
                    (last_activity + Duration::from_secs(idle_timeout)).into(),
                )
                .await;
                true
            }
        };
        handle
            .blocked
            .store(session.blocked.is_some(), Ordering::Relaxed);
        let may_read = pending.len() < MAX_PENDING && protocol_error.is_none();
        let blocked = session.blocked.as_mut();
        let (deadline, reply_rx) = match blocked {
            Some(b) => (b.deadline, Some(&mut b.reply)),
            None => (None, None),
        };
        let block_reply = async {
            match reply_rx {
                Some(rx) => rx.await.ok(),
                None => std::future::pending().await,
            }
        };
        let block_timeout = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            read = socket.read_buf(&mut input), if may_read => {
                let n = read?;
                if n == 0 {
                    return Ok("eof");
                }
                last_activity = std::time::Instant::now();
                shared.stats.net_input_bytes.fetch_add(n as u64, Ordering::Relaxed);
            }
            Some(reply) = block_reply => {
                session.blocked = None;
                // Served by another client's write (a push, or the pop made
                // for us): no reply before that write is in the log.
                super::persistence::make_durable(shared, shared.log.end_offset()).await;
                session.write_reply(&reply, &mut output);
            }
            _ = block_timeout => {
                let mut data = shared.data.lock();
                let still_blocked = data.blocking.unblock(session.id());
                drop(data);
                if let Some(mut wait) = session.blocked.take() {
                    // Served in the same instant as the timeout: the reply wins.
                    let timeout_reply = match wait.on_timeout.take() {
                        Some(compute) => compute(shared),
                        None => wait.timeout_reply,
                    };
                    let reply = if still_blocked { timeout_reply } else { wait.reply.try_recv().unwrap_or(timeout_reply) };
                    session.write_reply(&reply, &mut output);
                }
            }
            Some(message) = inbox.recv() => {
                resp::encode(&message.to_frame(), session.proto, &mut output);
                while let Ok(message) = inbox.try_recv() {
                    resp::encode(&message.to_frame(), session.proto, &mut output);
                    if output.len() > 64 * 1024 {
                        break;
                    }
                }
            }
            _ = handle.killed() => return Ok("killed"),
            _ = wait_shutdown(&mut shutdown) => return Ok("server shutdown"),
            expired = idle => if expired {
                return Ok("idle timeout");
            },
        }
    }
}

fn decode_limits(shared: &Shared, session: &Session) -> DecodeLimits {
    let max_bulk = shared.settings.read().proto_max_bulk_len as usize;
    if session.authenticated {
        DecodeLimits {
            max_bulk_bytes: max_bulk,
            max_multibulk_len: 1024 * 1024 * 1024,
        }
    } else {
        // Redis keeps unauthenticated requests tiny.
        DecodeLimits {
            max_bulk_bytes: 16384,
            max_multibulk_len: 10,
        }
    }
}

async fn write_out(
    shared: &Shared,
    socket: &mut TcpStream,
    output: &mut BytesMut,
) -> std::io::Result<()> {
    shared
        .stats
        .net_output_bytes
        .fetch_add(output.len() as u64, Ordering::Relaxed);
    socket.write_all(output).await?;
    output.clear();
    if output.capacity() > 1024 * 1024 {
        *output = BytesMut::with_capacity(16 * 1024);
    }
    Ok(())
}

/// What a client gets while a script is busy: SCRIPT KILL / FUNCTION KILL
/// act on it, MULTI and DISCARD keep the transaction state, everything
/// else is refused with Redis's BUSY (and fails an open transaction).
fn busy_reply(shared: &Shared, session: &mut Session, args: &[Bytes]) -> Frame {
    use crate::node::script_state::KillOutcome;
    let name = args[0].to_ascii_lowercase();
    let sub = args.get(1).map(|a| a.to_ascii_lowercase());
    let function = shared.script.busy_is_function();
    let busy_text = if function {
        "BUSY Redis is busy running a script. You can only call FUNCTION KILL or SHUTDOWN NOSAVE."
    } else {
        "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE."
    };
    let busy = || Frame::error(busy_text);
    match (name.as_slice(), sub.as_deref()) {
        (b"script" | b"function", Some(b"kill")) if args.len() == 2 => {
            match shared.script.request_kill(name == b"function") {
                KillOutcome::Killing => Frame::ok(),
                KillOutcome::NotBusy => Frame::error("NOTBUSY No scripts in execution right now."),
                KillOutcome::Unkillable => Frame::error("UNKILLABLE Sorry the script already executed write commands against the dataset. You can either wait the script termination or kill the server in a hard way using the SHUTDOWN NOSAVE command."),
                KillOutcome::OtherKind => busy(),
            }
        }
        // What runs, told while it runs (a function only, as Redis).
        (b"function", Some(b"stats")) if args.len() == 2 && function => {
            crate::commands::functions::stats_reply(shared.script.current(crate::node::unix_ms()))
        }
        (b"shutdown", _) if args[1..].iter().any(|a| a.eq_ignore_ascii_case(b"nosave")) => {
            // The one way out of a script that wrote and will not end.
            tracing::warn!("SHUTDOWN NOSAVE while a script is busy: exiting now");
            std::process::exit(0);
        }
        (b"multi", _) if args.len() == 1 => {
            if session.multi.is_some() {
                return Frame::error("ERR MULTI calls can not be nested");
            }
            session.multi = Some(Default::default());
            Frame::ok()
        }
        (b"exec", _) if session.multi.is_some() => {
            session.multi = None;
            Frame::error_owned(format!(
                "EXECABORT Transaction discarded because of: {busy_text}"
            ))
        }
        (b"discard", _) if args.len() == 1 => match session.multi.take() {
            Some(_) => Frame::ok(),
            None => Frame::error("ERR DISCARD without MULTI"),
        },
        _ => {
            session.flag_multi_error();
            busy()
        }
    }
}
