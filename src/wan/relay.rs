//! The UDP relay that applies [`LinkModel`]s to real datagrams.
//!
//! The replica dials the relay's address instead of its upstream's; the
//! relay forwards each datagram through the model of its direction
//! ("up": replica → upstream, "down": upstream → replica) and delivers it
//! when the model says. Outages drop everything until switched off.

use super::{DelayRecord, LinkModel, LinkParams, Verdict};
use crate::timer::DelayLine;
use parking_lot::Mutex;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::net::UdpSocket;

/// Run-time switches and counters of a relay.
pub struct RelayControl {
    outage: AtomicBool,
    /// Start an outage once this many bytes went downstream (tests cut a
    /// transfer mid-way); `u64::MAX` = never.
    cut_after_down_bytes: AtomicU64,
    pub down_bytes: AtomicU64,
    pub up_bytes: AtomicU64,
    pub down_dropped: AtomicU64,
    pub up_dropped: AtomicU64,
    /// One-way delays of the datagrams delivered downstream.
    pub down_delays: DelayRecord,
    params: Mutex<Option<(LinkParams, LinkParams)>>,
    stop: AtomicBool,
}

impl RelayControl {
    fn new() -> RelayControl {
        RelayControl {
            outage: AtomicBool::new(false),
            cut_after_down_bytes: AtomicU64::new(u64::MAX),
            down_bytes: AtomicU64::new(0),
            up_bytes: AtomicU64::new(0),
            down_dropped: AtomicU64::new(0),
            up_dropped: AtomicU64::new(0),
            down_delays: DelayRecord::default(),
            params: Mutex::new(None),
            stop: AtomicBool::new(false),
        }
    }

    pub fn set_outage(&self, on: bool) {
        self.outage.store(on, Ordering::Release);
    }

    pub fn in_outage(&self) -> bool {
        self.outage.load(Ordering::Acquire)
    }

    /// Starts an outage after `bytes` more bytes went downstream.
    pub fn cut_after_down_bytes(&self, bytes: u64) {
        let at = self
            .down_bytes
            .load(Ordering::Relaxed)
            .saturating_add(bytes);
        self.cut_after_down_bytes.store(at, Ordering::Release);
    }

    /// Replaces both directions' parameters.
    pub fn set_params(&self, down: LinkParams, up: LinkParams) {
        *self.params.lock() = Some((down, up));
    }
}

/// A datagram on its way: which direction, and its bytes.
struct InFlight {
    down: bool,
    data: Vec<u8>,
}

/// A running relay.
pub struct Relay {
    pub addr: SocketAddr,
    pub control: Arc<RelayControl>,
}

impl Relay {
    /// Binds `listen` and relays to `upstream` on the current runtime.
    pub async fn spawn(
        listen: SocketAddr,
        upstream: SocketAddr,
        down: LinkParams,
        up: LinkParams,
        seed: u64,
    ) -> std::io::Result<Relay> {
        let front = UdpSocket::bind(listen).await?;
        let back = UdpSocket::bind(SocketAddr::new(listen.ip(), 0)).await?;
        let addr = front.local_addr()?;
        let control = Arc::new(RelayControl::new());
        let task_control = control.clone();
        tokio::spawn(async move {
            if let Err(e) = run(
                front,
                back,
                upstream,
                LinkModel::new(down, seed),
                LinkModel::new(up, seed ^ 0x5eed),
                task_control,
            )
            .await
            {
                tracing::warn!(error = %e, "wan relay stopped");
            }
        });
        Ok(Relay { addr, control })
    }

    pub fn stop(&self) {
        self.control.stop.store(true, Ordering::Release);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn run(
    front: UdpSocket,
    back: UdpSocket,
    upstream: SocketAddr,
    mut down: LinkModel,
    mut up: LinkModel,
    control: Arc<RelayControl>,
) -> std::io::Result<()> {
    let mut client: Option<SocketAddr> = None;
    let (line, mut released) = DelayLine::spawn("wan-relay-delay")?;
    let mut front_buf = vec![0u8; 65536];
    let mut back_buf = vec![0u8; 65536];
    let mut stop_check = tokio::time::interval(std::time::Duration::from_millis(100));
    loop {
        if control.stop.load(Ordering::Acquire) {
            return Ok(());
        }
        if let Some((d, u)) = control.params.lock().take() {
            down.set_params(d);
            up.set_params(u);
        }
        tokio::select! {
            r = front.recv_from(&mut front_buf) => {
                let (n, from) = r?;
                client = Some(from);
                control.up_bytes.fetch_add(n as u64, Ordering::Relaxed);
                admit(&mut up, &control, &line, false, &front_buf[..n]);
            }
            r = back.recv_from(&mut back_buf) => {
                let (n, _) = r?;
                let total = control.down_bytes.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
                if total >= control.cut_after_down_bytes.load(Ordering::Acquire) {
                    control.cut_after_down_bytes.store(u64::MAX, Ordering::Release);
                    control.set_outage(true);
                }
                admit(&mut down, &control, &line, true, &back_buf[..n]);
            }
            Some(p) = released.recv() => {
                // A cut also loses what was already on the wire.
                if control.in_outage() {
                    continue;
                }
                if p.down {
                    if let Some(c) = client {
                        let _ = front.send_to(&p.data, c).await;
                    }
                } else {
                    let _ = back.send_to(&p.data, upstream).await;
                }
            }
            _ = stop_check.tick() => {}
        }
    }
}

fn admit(
    model: &mut LinkModel,
    control: &RelayControl,
    line: &DelayLine<InFlight>,
    down: bool,
    data: &[u8],
) {
    let dropped = if down {
        &control.down_dropped
    } else {
        &control.up_dropped
    };
    if control.in_outage() {
        dropped.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let now = Instant::now();
    match model.handle_datagram(now, data.len()) {
        Verdict::Deliver(at) => {
            if down {
                control
                    .down_delays
                    .record(at.saturating_duration_since(now));
            }
            line.schedule(
                at,
                InFlight {
                    down,
                    data: data.to_vec(),
                },
            );
        }
        Verdict::Lost | Verdict::QueueFull => {
            dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A relay on its own runtime thread, for synchronous tests and tools.
pub struct RelayThread {
    pub addr: SocketAddr,
    pub control: Arc<RelayControl>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RelayThread {
    pub fn start(
        upstream: SocketAddr,
        down: LinkParams,
        up: LinkParams,
        seed: u64,
    ) -> std::io::Result<RelayThread> {
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            rt.block_on(async move {
                let listen = SocketAddr::new(upstream.ip(), 0);
                match Relay::spawn(listen, upstream, down, up, seed).await {
                    Ok(relay) => {
                        let control = relay.control.clone();
                        let _ = tx.send(Ok((relay.addr, control.clone())));
                        while !control.stop.load(Ordering::Acquire) {
                            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        }
                        drop(relay);
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            });
        });
        let (addr, control) = rx
            .recv()
            .map_err(|_| std::io::Error::other("relay thread died"))??;
        Ok(RelayThread {
            addr,
            control,
            thread: Some(thread),
        })
    }
}

impl Drop for RelayThread {
    fn drop(&mut self) {
        self.control.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
