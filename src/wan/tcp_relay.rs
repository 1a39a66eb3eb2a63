//! A TCP relay that adds one-way delay, jitter and a bandwidth cap, for
//! running Redis's own replication over the same emulated link as Quire.
//!
//! A user-space TCP relay terminates TCP on both sides, so it cannot drop
//! segments the way a lossy link does: loss is *not* emulated here (the
//! comparison is optimistic for TCP on lossy profiles). An outage holds
//! the bytes back until the link returns, as a stalled path would.

use super::LinkParams;
use rand::Rng;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

#[derive(Default)]
pub struct TcpRelayControl {
    outage: AtomicBool,
    pub down_bytes: AtomicU64,
    pub up_bytes: AtomicU64,
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
    pub async fn spawn(listen: SocketAddr, upstream: SocketAddr, params: LinkParams) -> std::io::Result<TcpRelay> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let control = Arc::new(TcpRelayControl::default());
        let c = control.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(upstream).await else { continue };
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

async fn pipe(mut from: tokio::net::tcp::OwnedReadHalf, mut to: tokio::net::tcp::OwnedWriteHalf, params: LinkParams, control: Arc<TcpRelayControl>, down: bool) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let writer_control = control.clone();
    let writer = tokio::spawn(async move {
        while let Some((at, data)) = rx.recv().await {
            tokio::time::sleep_until(at).await;
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
        let counter = if down { &control.down_bytes } else { &control.up_bytes };
        counter.fetch_add(n as u64, Ordering::Relaxed);
        let now = Instant::now();
        let mut depart = now;
        if let Some(bps) = params.bandwidth_bps.filter(|b| *b > 0) {
            depart = busy_until.max(now) + Duration::from_secs_f64(n as f64 * 8.0 / bps as f64);
            busy_until = depart;
        }
        let jitter = if params.jitter.is_zero() { Duration::ZERO } else { params.jitter.mul_f64(rand::rng().random::<f64>()) };
        // TCP delivers in order: jitter never reorders bytes.
        let at = (depart + params.delay + jitter).max(last);
        last = at;
        if tx.send((at, buf[..n].to_vec())).is_err() {
            break;
        }
    }
    drop(tx);
    let _ = writer.await;
}
