//! The Redis-protocol replication feed: a client that sent SYNC or PSYNC
//! on the client port (a Redis replica, or a tool reading the stream)
//! gets the data as an RDB file and then the log's bytes as they are
//! written — the same RESP commands at the same offsets the QUIC links
//! carry, so `+FULLRESYNC <replid> <offset>` and a later `PSYNC` line up
//! with this node's history.
//!
//! The RDB is built from a copy-on-write copy of the data taken under the
//! dataset lock at the stream offset it corresponds to, on a blocking
//! thread, and sent as one bulk string. What the replica sends while
//! streaming (`REPLCONF ACK`) is read and dropped.

use super::{wait_shutdown, Shared};
use crate::commands::replication::FeedStart;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Most stream bytes written per read of the log.
const READ_MAX: usize = 256 * 1024;

/// Counts the feed in `resp_feeds` while it lives.
struct Attached<'a>(&'a Shared);

impl Drop for Attached<'_> {
    fn drop(&mut self) {
        self.0
            .repl
            .counters
            .resp_feeds
            .fetch_sub(1, Ordering::Relaxed);
    }
}

pub async fn serve(
    shared: &Arc<Shared>,
    socket: &mut TcpStream,
    start: FeedStart,
) -> std::io::Result<&'static str> {
    shared
        .repl
        .counters
        .resp_feeds
        .fetch_add(1, Ordering::Relaxed);
    let _attached = Attached(shared);
    let counters = &shared.repl.counters;
    match start.full {
        Some(image) => {
            tracing::info!(offset = start.offset, "Redis-protocol replica: full sync");
            if start.psync {
                let line = format!("+FULLRESYNC {} {}\r\n", start.replid, start.offset);
                socket.write_all(line.as_bytes()).await?;
            }
            let aux = vec![
                ("redis-ver", crate::REDIS_COMPAT_VERSION.to_string()),
                ("redis-bits", "64".to_string()),
                ("ctime", (crate::node::unix_ms() / 1000).to_string()),
                ("repl-stream-db", start.db.to_string()),
                ("repl-id", start.replid.clone()),
                ("repl-offset", start.offset.to_string()),
            ];
            let now = crate::node::unix_ms();
            let rdb = tokio::task::spawn_blocking(move || {
                crate::keyspace::rdb::write_file(&image.dbs, &image.functions, now, &aux)
            })
            .await
            .map_err(std::io::Error::other)?;
            socket
                .write_all(format!("${}\r\n", rdb.len()).as_bytes())
                .await?;
            socket.write_all(&rdb).await?;
            counters.full_syncs_served.fetch_add(1, Ordering::Relaxed);
        }
        None => {
            tracing::info!(
                offset = start.offset,
                "Redis-protocol replica: partial resync"
            );
            let line = format!("+CONTINUE {}\r\n", start.replid);
            socket.write_all(line.as_bytes()).await?;
            counters.partial_syncs_ok.fetch_add(1, Ordering::Relaxed);
        }
    }
    stream(shared, socket, start.history, start.offset).await
}

/// Writes the log from `from` on as it grows, until the client goes, the
/// history changes (a promotion or a resync: the replica must sync again)
/// or the node stops.
async fn stream(
    shared: &Arc<Shared>,
    socket: &mut TcpStream,
    history: u64,
    mut from: u64,
) -> std::io::Result<&'static str> {
    let mut shutdown = shared.shutdown_signal();
    let mut discard = vec![0u8; 4096];
    loop {
        let notified = shared.repl.stream_ready.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if shared.log.history() != history {
            return Ok("the replication history changed");
        }
        // Only what the log has handed to the OS, as for QUIC replicas.
        while from < shared.log.written() {
            match shared.log.read(history, from, READ_MAX) {
                Ok(bytes) if bytes.is_empty() => break,
                Ok(bytes) => {
                    socket.write_all(&bytes).await?;
                    from += bytes.len() as u64;
                    counters_add(shared, bytes.len());
                }
                Err(compacted) => {
                    tracing::warn!(
                        requested = compacted.requested,
                        log_start = compacted.start,
                        "Redis-protocol replica fell behind the log; closing its feed"
                    );
                    return Ok("fell behind the log");
                }
            }
        }
        tokio::select! {
            _ = &mut notified => {}
            read = socket.read(&mut discard) => {
                if read? == 0 {
                    return Ok("eof");
                }
            }
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = wait_shutdown(&mut shutdown) => return Ok("shutdown"),
        }
    }
}

fn counters_add(shared: &Shared, n: usize) {
    let c = &shared.repl.counters;
    c.sent_raw_bytes.fetch_add(n as u64, Ordering::Relaxed);
    c.sent_wire_bytes.fetch_add(n as u64, Ordering::Relaxed);
}
