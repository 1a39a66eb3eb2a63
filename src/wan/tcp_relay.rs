//! A TCP relay that adds one-way delay, jitter, a bandwidth cap and the
//! effect of loss, for running Redis's own replication over the same
//! emulated link as Quire.
//!
//! A user-space relay terminates TCP on both sides, so it cannot drop a
//! segment and let TCP recover. It emulates what the receiver sees instead:
//! each 1448-byte segment is lost with the profile's probability, and a
//! lost one arrives after Linux's fast recovery would have resent it —
//! RACK declares it lost once a later segment is acknowledged and
//! RTT + RTT/4 have passed, and the resend takes one more one-way delay, so
//! 2.5 one-way delays late — with everything behind it held back (TCP
//! delivers in order). That is the *best* case of TCP recovery (a tail
//! loss waits for a probe timeout, a lost resend for a retransmission
//! timeout), so the comparison stays favourable to TCP. An outage holds the
//! bytes back until the link returns, as a stalled path would.

use super::{DelayRecord, LinkParams};
use crate::timer::DelayLine;
use rand::Rng;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Default)]
pub struct TcpRelayControl {
    outage: AtomicBool,
    pub down_bytes: AtomicU64,
    pub up_bytes: AtomicU64,
    /// One-way delays of the chunks delivered downstream.
    pub down_delays: DelayRecord,
}

impl TcpRelayControl {
    pub fn set_outage(&self, on: bool) {
        self.outage.store(on, Ordering::Release);
    }
}

pub struct TcpRelay {
    pub addr: SocketAddr,
    pub control: Arc<TcpRelayControl>,
}

impl TcpRelay {
    /// Relays connections on `listen` to `upstream`; "down" is upstream →
    /// client (a replica's incoming stream).
    pub async fn spawn(
        listen: SocketAddr,
        upstream: SocketAddr,
        params: LinkParams,
    ) -> std::io::Result<TcpRelay> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let control = Arc::new(TcpRelayControl::default());
        let c = control.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(upstream).await else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::spawn(pipe(sr, cw, params.clone(), c.clone(), true));
                tokio::spawn(pipe(cr, sw, params.clone(), c.clone(), false));
            }
        });
        Ok(TcpRelay { addr, control })
    }
}

/// Maximum segment size of the emulated path.
const MSS: usize = 1448;
/// How late a lost segment arrives after fast recovery, in one-way delays.
const RECOVERY_ONE_WAY_DELAYS: f64 = 2.5;

/// Whether any of the segments carrying `bytes` is lost.
fn segment_lost(loss: f64, bytes: usize) -> bool {
    if loss <= 0.0 {
        return false;
    }
    let segments = bytes.div_ceil(MSS).max(1) as i32;
    let any = 1.0 - (1.0 - loss.min(1.0)).powi(segments);
    rand::rng().random_bool(any.clamp(0.0, 1.0))
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    params: LinkParams,
    control: Arc<TcpRelayControl>,
    down: bool,
) {
    let Ok((line, mut released)) = DelayLine::<Vec<u8>>::spawn("wan-tcp-delay") else {
        return;
    };
    let writer_control = control.clone();
    let writer = tokio::spawn(async move {
        while let Some(data) = released.recv().await {
            while writer_control.outage.load(Ordering::Acquire) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            if to.write_all(&data).await.is_err() {
                return;
            }
        }
    });
    let mut buf = vec![0u8; 64 * 1024];
    let mut busy_until = Instant::now();
    let mut last = Instant::now();
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let counter = if down {
            &control.down_bytes
        } else {
            &control.up_bytes
        };
        counter.fetch_add(n as u64, Ordering::Relaxed);
        let now = Instant::now();
        let mut depart = now;
        if let Some(bps) = params.bandwidth_bps.filter(|b| *b > 0) {
            depart = busy_until.max(now) + Duration::from_secs_f64(n as f64 * 8.0 / bps as f64);
            busy_until = depart;
        }
        let jitter = if params.jitter.is_zero() {
            Duration::ZERO
        } else {
            params.jitter.mul_f64(rand::rng().random::<f64>())
        };
        let recovery = if segment_lost(params.loss, n) {
            params.delay.mul_f64(RECOVERY_ONE_WAY_DELAYS)
        } else {
            Duration::ZERO
        };
        // TCP delivers in order: jitter never reorders bytes, and a lost
        // segment holds back everything behind it.
        let at = (depart + params.delay + jitter + recovery).max(last);
        last = at;
        if down {
            control
                .down_delays
                .record(at.saturating_duration_since(now));
        }
        if !line.schedule(at, buf[..n].to_vec()) {
            break;
        }
    }
    drop(line);
    let _ = writer.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_loss_follows_the_rate_per_segment() {
        assert!(!(0..1000).any(|_| segment_lost(0.0, 64 * 1024)));
        assert!((0..1000).all(|_| segment_lost(1.0, 1)));
        // One segment at 10 %: about 10 % of chunks; 10 segments: about 65 %.
        let one = (0..20_000).filter(|_| segment_lost(0.1, 100)).count() as f64 / 20_000.0;
        let ten = (0..20_000).filter(|_| segment_lost(0.1, 10 * MSS)).count() as f64 / 20_000.0;
        assert!((0.08..0.12).contains(&one), "{one}");
        assert!((0.60..0.70).contains(&ten), "{ten}");
    }
}
