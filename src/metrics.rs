//! Prometheus exposition: `GET /metrics` on `metrics.port`.
//!
//! The text format is rendered by hand from the same state INFO reads
//! (it is a dozen lines of formatting; a metrics registry would duplicate
//! the counters the node already keeps). The HTTP side answers one GET per
//! connection and closes it, which is all a scraper needs.

use crate::node::{wait_shutdown, Shared, Stats};
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Serves `/metrics` until shutdown.
pub async fn serve(shared: Arc<Shared>, listener: TcpListener) {
    let mut shutdown = shared.shutdown_signal();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((mut socket, _)) = accepted else { continue };
                let shared = shared.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    let n = match tokio::time::timeout(std::time::Duration::from_secs(5), socket.read(&mut buf)).await {
                        Ok(Ok(n)) => n,
                        _ => return,
                    };
                    let request = String::from_utf8_lossy(&buf[..n]);
                    let response = if request.starts_with("GET /metrics") {
                        let body = render(&shared);
                        format!("HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
                    } else {
                        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string()
                    };
                    let _ = socket.write_all(response.as_bytes()).await;
                });
            }
            _ = wait_shutdown(&mut shutdown) => return,
        }
    }
}

fn metric(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(String, f64)]) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, value) in samples {
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {value}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    }
}

fn one(value: f64) -> Vec<(String, f64)> {
    vec![(String::new(), value)]
}

/// The exposition text for the node's current state.
pub fn render(shared: &Shared) -> String {
    let (offset, backlog_bytes, covered, rate, keys) = {
        let data = shared.data.lock();
        let log = &data.repl;
        let backlog_bytes = log.log().len();
        let keys: usize = data.keyspace.dbs.iter().map(|d| d.len()).sum();
        (
            log.offset(),
            backlog_bytes,
            log.outage_seconds_covered(),
            log.sizer.current_rate(),
            keys,
        )
    };
    let (node, region) = {
        let s = shared.settings.read();
        (s.node.name.clone(), s.node.region.clone())
    };
    let repl = &shared.repl;
    let c = &repl.counters;
    let mut out = String::new();
    metric(
        &mut out,
        "quire_info",
        "gauge",
        "Node identity.",
        &[(
            format!(
                "node=\"{node}\",region=\"{region}\",role=\"{}\"",
                if repl.is_replica() {
                    "replica"
                } else {
                    "primary"
                }
            ),
            1.0,
        )],
    );
    metric(
        &mut out,
        "quire_repl_offset_bytes",
        "gauge",
        "Replication stream offset (master_repl_offset).",
        &one(offset as f64),
    );
    metric(
        &mut out,
        "quire_backlog_bytes",
        "gauge",
        "Bytes of stream history in the backlog.",
        &one(backlog_bytes as f64),
    );
    metric(
        &mut out,
        "quire_backlog_outage_seconds_covered",
        "gauge",
        "Seconds of link outage the backlog covers at the current write rate.",
        &one(if covered.is_finite() {
            covered
        } else {
            f64::INFINITY
        }),
    );
    metric(
        &mut out,
        "quire_write_rate_bytes_per_second",
        "gauge",
        "Replication stream bytes per second (10 s average).",
        &one(rate),
    );
    let log = &shared.log;
    metric(
        &mut out,
        "quire_log_written_offset_bytes",
        "gauge",
        "Log bytes handed to the OS (survive a process crash).",
        &one(log.written() as f64),
    );
    metric(
        &mut out,
        "quire_log_durable_offset_bytes",
        "gauge",
        "Log bytes fsynced (survive a power loss).",
        &one(log.durable() as f64),
    );
    metric(
        &mut out,
        "quire_log_disk_bytes",
        "gauge",
        "Bytes in log segment files.",
        &one(log.disk_bytes() as f64),
    );
    metric(
        &mut out,
        "quire_log_write_failing",
        "gauge",
        "1 while log writes fail (writes are refused with MISCONF).",
        &one(log.is_failing() as u8 as f64),
    );
    {
        let f = &shared.persistence.fsync;
        let n = f.fsyncs.load(std::sync::atomic::Ordering::Relaxed);
        metric(
            &mut out,
            "quire_log_fsyncs_total",
            "counter",
            "Log fsyncs.",
            &one(n as f64),
        );
        metric(
            &mut out,
            "quire_log_fsync_seconds_total",
            "counter",
            "Time spent in log fsyncs.",
            &one(f.total_us.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1e6),
        );
        metric(
            &mut out,
            "quire_log_fsync_last_seconds",
            "gauge",
            "Duration of the last log fsync.",
            &one(f.last_us.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1e6),
        );
        metric(
            &mut out,
            "quire_log_fsync_max_seconds",
            "gauge",
            "Longest log fsync since start.",
            &one(f.max_us.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1e6),
        );
    }
    {
        let table = repl.replicas.lock();
        let mut lag_bytes = Vec::new();
        let mut lag_seconds = Vec::new();
        let mut rtt = Vec::new();
        for r in table.replicas.values() {
            let labels = format!("replica=\"{}\",replica_region=\"{}\"", r.node, r.region);
            lag_bytes.push((labels.clone(), offset.saturating_sub(r.ack_offset) as f64));
            lag_seconds.push((
                labels.clone(),
                repl.lag_ms_at(r.ack_offset, offset) as f64 / 1000.0,
            ));
            rtt.push((labels, r.rtt_ms as f64 / 1000.0));
        }
        metric(
            &mut out,
            "quire_connected_replicas",
            "gauge",
            "Replicas attached to this node.",
            &one(table.replicas.len() as f64),
        );
        metric(
            &mut out,
            "quire_replica_lag_bytes",
            "gauge",
            "Stream bytes a replica has not acknowledged.",
            &lag_bytes,
        );
        metric(
            &mut out,
            "quire_replica_lag_seconds",
            "gauge",
            "Age of the oldest write a replica has not acknowledged.",
            &lag_seconds,
        );
        metric(
            &mut out,
            "quire_replica_rtt_seconds",
            "gauge",
            "Round-trip time of the replica's QUIC link.",
            &rtt,
        );
    }
    if repl.is_replica() {
        let link = repl.link.lock().clone();
        metric(
            &mut out,
            "quire_upstream_link_up",
            "gauge",
            "1 when the link to the upstream is streaming.",
            &one(repl.link_up() as u8 as f64),
        );
        metric(
            &mut out,
            "quire_upstream_lag_seconds",
            "gauge",
            "Replication lag behind the upstream, from its keep-alives.",
            &one(link.lag_ms as f64 / 1000.0),
        );
        metric(
            &mut out,
            "quire_upstream_lag_bytes",
            "gauge",
            "Stream bytes the upstream has that this replica has not applied.",
            &one(link.upstream_offset.saturating_sub(offset) as f64),
        );
        metric(
            &mut out,
            "quire_upstream_rtt_seconds",
            "gauge",
            "Round-trip time to the upstream.",
            &one(link.rtt_ms as f64 / 1000.0),
        );
        metric(
            &mut out,
            "quire_upstream_full_syncs_total",
            "counter",
            "Full resyncs this replica loaded.",
            &one(link.full_syncs as f64),
        );
        metric(
            &mut out,
            "quire_upstream_partial_syncs_total",
            "counter",
            "Partial resyncs this replica made.",
            &one(link.partial_syncs as f64),
        );
    }
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed) as f64;
    metric(
        &mut out,
        "quire_sync_full_total",
        "counter",
        "Full resyncs served.",
        &one(load(&c.full_syncs_served)),
    );
    metric(
        &mut out,
        "quire_sync_partial_ok_total",
        "counter",
        "Partial resyncs accepted.",
        &one(load(&c.partial_syncs_ok)),
    );
    metric(
        &mut out,
        "quire_repl_wire_bytes_total",
        "counter",
        "Replication bytes on the wire.",
        &[
            ("direction=\"sent\"".into(), load(&c.sent_wire_bytes)),
            (
                "direction=\"received\"".into(),
                load(&c.received_wire_bytes),
            ),
        ],
    );
    metric(
        &mut out,
        "quire_repl_stream_bytes_total",
        "counter",
        "Replication stream bytes before compression.",
        &[
            ("direction=\"sent\"".into(), load(&c.sent_raw_bytes)),
            ("direction=\"received\"".into(), load(&c.received_raw_bytes)),
        ],
    );
    let ratio = |raw: f64, wire: f64| if wire > 0.0 { raw / wire } else { 0.0 };
    metric(
        &mut out,
        "quire_repl_compression_ratio",
        "gauge",
        "Stream bytes per wire byte.",
        &[
            (
                "direction=\"sent\"".into(),
                ratio(load(&c.sent_raw_bytes), load(&c.sent_wire_bytes)),
            ),
            (
                "direction=\"received\"".into(),
                ratio(load(&c.received_raw_bytes), load(&c.received_wire_bytes)),
            ),
        ],
    );
    metric(
        &mut out,
        "quire_repl_datagram_bytes_total",
        "counter",
        "Fast path: bytes of batch copies sent or received as QUIC datagrams.",
        &[
            ("direction=\"sent\"".into(), load(&c.datagram_sent_bytes)),
            (
                "direction=\"received\"".into(),
                load(&c.datagram_received_bytes),
            ),
        ],
    );
    metric(
        &mut out,
        "quire_repl_datagram_overhead_ratio",
        "gauge",
        "Fast path: datagram copy bytes per stream wire byte sent.",
        &one(ratio(
            load(&c.datagram_sent_bytes),
            load(&c.sent_wire_bytes),
        )),
    );
    metric(
        &mut out,
        "quire_repl_batches_applied_total",
        "counter",
        "Batches applied, by the copy that arrived first.",
        &[
            ("via=\"stream\"".into(), load(&c.batches_via_stream)),
            ("via=\"datagram\"".into(), load(&c.batches_via_datagram)),
        ],
    );
    metric(
        &mut out,
        "quire_repl_datagrams_recovered_total",
        "counter",
        "Fast path: lost datagrams rebuilt from parity.",
        &one(load(&c.datagrams_recovered)),
    );
    metric(
        &mut out,
        "quire_repl_datagrams_rejected_total",
        "counter",
        "Fast path: datagrams discarded (malformed, checksum, memory bound).",
        &one(load(&c.datagrams_rejected)),
    );
    metric(
        &mut out,
        "quire_ops_per_second",
        "gauge",
        "Commands per second.",
        &one(shared.stats.ops_per_sec() as f64),
    );
    metric(
        &mut out,
        "quire_commands_processed_total",
        "counter",
        "Commands processed.",
        &one(Stats::get(&shared.stats.commands_processed) as f64),
    );
    metric(
        &mut out,
        "quire_connected_clients",
        "gauge",
        "Client connections.",
        &one(shared.clients.len() as f64),
    );
    metric(
        &mut out,
        "quire_keys",
        "gauge",
        "Keys in all databases.",
        &one(keys as f64),
    );
    out
}
