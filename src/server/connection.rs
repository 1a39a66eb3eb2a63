//! One task per client connection: reads bytes, decodes requests, runs them
//! in batches under the dataset lock, writes replies.
//!
//! A malformed request gets Redis's `-ERR Protocol error: ...` and closes
//! this connection only; the replies to the well-formed requests before it
//! are sent first.

use super::{unix_ms, wait_shutdown, Shared};
use crate::commands::{self, ExecCtx, Session};
use crate::resp::{self, DecodeLimits, Frame, RequestDecoder};
use bytes::BytesMut;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Most requests run per lock acquisition, so one deep pipeline cannot
/// starve other clients.
const MAX_BATCH: usize = 512;

pub async fn serve(shared: Arc<Shared>, mut socket: TcpStream, addr: SocketAddr) {
    let laddr = socket.local_addr().unwrap_or(addr);
    let _ = socket.set_nodelay(true);
    shared.stats.connections_received.fetch_add(1, Ordering::Relaxed);
    let max = shared.settings.read().maxclients as usize;
    let Some(registration) = shared.clients.register(addr, laddr, max) else {
        shared.stats.rejected_connections.fetch_add(1, Ordering::Relaxed);
        let _ = socket.write_all(b"-ERR max number of clients reached\r\n").await;
        return;
    };
    let handle = registration.handle.clone();
    let span = tracing::debug_span!("client", id = handle.id, peer = %addr);
    let _enter = span.enter();
    let needs_auth = !shared.settings.read().requirepass.is_empty();
    let mut session = Session::new(handle.clone(), !needs_auth);
    match run(&shared, &mut socket, &mut session).await {
        Ok(reason) => tracing::debug!(reason, "client closed"),
        Err(e) => tracing::debug!(error = %e, "client connection error"),
    }
    let mut data = shared.data.lock();
    commands::disconnect(&mut data.keyspace, &mut session);
}

async fn run(shared: &Arc<Shared>, socket: &mut TcpStream, session: &mut Session) -> std::io::Result<&'static str> {
    let mut input = BytesMut::with_capacity(16 * 1024);
    let mut output = BytesMut::with_capacity(16 * 1024);
    let mut decoder = RequestDecoder::new();
    let mut batch = Vec::with_capacity(16);
    let mut shutdown = shared.shutdown_signal();
    let handle = session.handle.clone();
    loop {
        let limits = decode_limits(shared, session);
        let mut protocol_error = None;
        let mut more_buffered = false;
        loop {
            if batch.len() == MAX_BATCH {
                more_buffered = true;
                break;
            }
            match decoder.decode(&mut input, &limits) {
                Ok(Some(args)) => batch.push(args),
                Ok(None) => break,
                Err(e) => {
                    protocol_error = Some(e);
                    break;
                }
            }
        }
        if !batch.is_empty() {
            let now = unix_ms();
            handle.last_interaction_ms.store(now, Ordering::Relaxed);
            let mut data = shared.data.lock();
            for args in batch.drain(..) {
                let mut ctx = ExecCtx { keyspace: &mut data.keyspace, shared, session, now_ms: unix_ms() };
                let reply = commands::execute(&mut ctx, &args);
                session.write_reply(&reply, &mut output);
                if session.close_after_reply {
                    break;
                }
            }
            drop(data);
            batch.clear();
        }
        if let Some(e) = protocol_error {
            tracing::info!(client = handle.id, error = %e, "closing client after protocol error");
            resp::encode(&Frame::error_owned(format!("ERR {e}")), session.proto, &mut output);
            write_out(shared, socket, &mut output).await?;
            return Ok("protocol error");
        }
        if !output.is_empty() {
            write_out(shared, socket, &mut output).await?;
        }
        if session.close_after_reply {
            return Ok("quit");
        }
        if more_buffered {
            // The batch limit was hit with requests still buffered: serve
            // them before reading again.
            continue;
        }
        if let Some(wanted) = decoder.wanted_bytes(&input) {
            input.reserve(wanted.min(64 * 1024 * 1024));
        } else if input.capacity() - input.len() < 4096 {
            input.reserve(16 * 1024);
        }
        let idle_timeout = shared.settings.read().timeout;
        let idle = async {
            if idle_timeout == 0 {
                std::future::pending::<()>().await
            } else {
                tokio::time::sleep(Duration::from_secs(idle_timeout)).await
            }
        };
        tokio::select! {
            read = socket.read_buf(&mut input) => {
                let n = read?;
                if n == 0 {
                    return Ok("eof");
                }
                shared.stats.net_input_bytes.fetch_add(n as u64, Ordering::Relaxed);
            }
            _ = handle.killed() => return Ok("killed"),
            _ = wait_shutdown(&mut shutdown) => return Ok("server shutdown"),
            _ = idle => return Ok("idle timeout"),
        }
    }
}

fn decode_limits(shared: &Shared, session: &Session) -> DecodeLimits {
    let max_bulk = shared.settings.read().proto_max_bulk_len as usize;
    if session.authenticated {
        DecodeLimits { max_bulk_bytes: max_bulk, max_multibulk_len: 1024 * 1024 * 1024 }
    } else {
        // Redis keeps unauthenticated requests tiny.
        DecodeLimits { max_bulk_bytes: 16384, max_multibulk_len: 10 }
    }
}

async fn write_out(shared: &Shared, socket: &mut TcpStream, output: &mut BytesMut) -> std::io::Result<()> {
    shared.stats.net_output_bytes.fetch_add(output.len() as u64, Ordering::Relaxed);
    socket.write_all(output).await?;
    output.clear();
    if output.capacity() > 1024 * 1024 {
        *output = BytesMut::with_capacity(16 * 1024);
    }
    Ok(())
}
