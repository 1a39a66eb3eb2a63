//! WAN emulation on loopback: a UDP relay between a replica and its
//! upstream that adds one-way delay, jitter, random loss, reordering, a
//! bandwidth cap with a bounded queue (tail drop), and outages switched on
//! and off at run time. Unprivileged: no tc/netem, just a process.
//!
//! [`LinkModel`] is the sans-IO core: given a datagram's size and the time,
//! it decides to drop it or when to deliver it. [`relay`] drives it with
//! tokio sockets.

pub mod relay;
pub mod tcp_relay;

use rand::{Rng, SeedableRng};
use std::time::{Duration, Instant};

/// One direction of an emulated link.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkParams {
    pub delay: Duration,
    /// Extra delay drawn uniformly from `[0, jitter]` per datagram.
    pub jitter: Duration,
    /// Probability a datagram is lost.
    pub loss: f64,
    /// Bits per second; `None` is unlimited.
    pub bandwidth_bps: Option<u64>,
    /// Bytes the bottleneck queue holds before tail drop.
    pub queue_bytes: usize,
    /// Let jitter reorder datagrams (otherwise delivery stays FIFO).
    pub reorder: bool,
}

impl Default for LinkParams {
    fn default() -> Self {
        LinkParams {
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            loss: 0.0,
            bandwidth_bps: None,
            queue_bytes: 4 << 20,
            reorder: false,
        }
    }
}

/// Named link profiles (one-way figures).
pub fn profile(name: &str) -> Option<LinkParams> {
    let mbit = |n: u64| Some(n * 1_000_000);
    let p = match name {
        "loopback" => LinkParams::default(),
        "transatlantic" => LinkParams {
            delay: Duration::from_millis(40),
            jitter: Duration::from_millis(2),
            loss: 0.001,
            bandwidth_bps: mbit(1000),
            queue_bytes: 8 << 20,
            reorder: false,
        },
        "transpacific" => LinkParams {
            delay: Duration::from_millis(90),
            jitter: Duration::from_millis(5),
            loss: 0.005,
            bandwidth_bps: mbit(200),
            queue_bytes: 8 << 20,
            reorder: false,
        },
        "transatlantic-lossy" => LinkParams {
            delay: Duration::from_millis(40),
            jitter: Duration::from_millis(2),
            loss: 0.005,
            bandwidth_bps: mbit(100),
            queue_bytes: 4 << 20,
            reorder: false,
        },
        "lossy" => LinkParams {
            delay: Duration::from_millis(40),
            jitter: Duration::from_millis(5),
            loss: 0.02,
            bandwidth_bps: mbit(100),
            queue_bytes: 4 << 20,
            reorder: true,
        },
        "intercontinental" => LinkParams {
            delay: Duration::from_millis(60),
            jitter: Duration::from_millis(3),
            loss: 0.002,
            bandwidth_bps: mbit(500),
            queue_bytes: 8 << 20,
            reorder: false,
        },
        _ => return None,
    };
    Some(p)
}

pub const PROFILES: &[&str] = &[
    "loopback",
    "transatlantic",
    "transatlantic-lossy",
    "transpacific",
    "lossy",
    "intercontinental",
];

/// The one-way delays one direction of a relay gave what it delivered
/// (queueing, jitter and in-order delivery included): the link's own share
/// of a measured lag.
#[derive(Default)]
pub struct DelayRecord {
    micros: parking_lot::Mutex<Vec<u32>>,
}

impl DelayRecord {
    /// Samples kept (a 10 s run at the default rate records ~10^4).
    const MAX_SAMPLES: usize = 1 << 20;

    pub fn record(&self, delay: Duration) {
        let mut v = self.micros.lock();
        if v.len() < Self::MAX_SAMPLES {
            v.push(delay.as_micros().min(u32::MAX as u128) as u32);
        }
    }

    /// Forgets what was recorded (e.g. the handshake and warm-up).
    pub fn clear(&self) {
        self.micros.lock().clear();
    }

    /// The median delay in milliseconds, if anything was delivered.
    pub fn median_ms(&self) -> Option<f64> {
        let mut v = self.micros.lock().clone();
        if v.is_empty() {
            return None;
        }
        let mid = v.len() / 2;
        Some(*v.select_nth_unstable(mid).1 as f64 / 1000.0)
    }
}

/// What happens to one datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Deliver(Instant),
    Lost,
    QueueFull,
}

/// The emulated bottleneck of one direction.
pub struct LinkModel {
    params: LinkParams,
    rng: rand::rngs::StdRng,
    /// When the bottleneck finishes sending what is queued.
    busy_until: Option<Instant>,
    last_delivery: Option<Instant>,
}

impl LinkModel {
    pub fn new(params: LinkParams, seed: u64) -> LinkModel {
        LinkModel {
            params,
            rng: rand::rngs::StdRng::seed_from_u64(seed),
            busy_until: None,
            last_delivery: None,
        }
    }

    pub fn params(&self) -> &LinkParams {
        &self.params
    }

    pub fn set_params(&mut self, params: LinkParams) {
        self.params = params;
    }

    /// Decides the fate of a datagram of `len` bytes sent at `now`.
    pub fn handle_datagram(&mut self, now: Instant, len: usize) -> Verdict {
        let mut depart = now;
        if let Some(bps) = self.params.bandwidth_bps.filter(|b| *b > 0) {
            let busy = self.busy_until.filter(|t| *t > now).unwrap_or(now);
            let queued_bytes = busy.duration_since(now).as_secs_f64() * bps as f64 / 8.0;
            if queued_bytes + len as f64 > self.params.queue_bytes as f64 {
                return Verdict::QueueFull;
            }
            depart = busy + Duration::from_secs_f64(len as f64 * 8.0 / bps as f64);
            self.busy_until = Some(depart);
        }
        if self.params.loss > 0.0 && self.rng.random_bool(self.params.loss.min(1.0)) {
            return Verdict::Lost;
        }
        let jitter = if self.params.jitter.is_zero() {
            Duration::ZERO
        } else {
            self.params.jitter.mul_f64(self.rng.random::<f64>())
        };
        let mut at = depart + self.params.delay + jitter;
        if !self.params.reorder {
            if let Some(last) = self.last_delivery {
                at = at.max(last);
            }
        }
        self.last_delivery = Some(at);
        Verdict::Deliver(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_and_fifo() {
        let t0 = Instant::now();
        let mut m = LinkModel::new(
            LinkParams {
                delay: Duration::from_millis(40),
                jitter: Duration::from_millis(10),
                ..Default::default()
            },
            1,
        );
        let mut last = t0;
        for i in 0..100 {
            let Verdict::Deliver(at) = m.handle_datagram(t0 + Duration::from_micros(i * 10), 1200)
            else {
                panic!()
            };
            assert!(at >= t0 + Duration::from_millis(40));
            assert!(at >= last, "FIFO without reorder");
            last = at;
        }
    }

    #[test]
    fn bandwidth_paces_and_tail_drops() {
        let t0 = Instant::now();
        // 8 Mbit/s = 1 byte/us; a 10 KB queue.
        let mut m = LinkModel::new(
            LinkParams {
                bandwidth_bps: Some(8_000_000),
                queue_bytes: 10_000,
                ..Default::default()
            },
            1,
        );
        let Verdict::Deliver(first) = m.handle_datagram(t0, 1000) else {
            panic!()
        };
        assert_eq!(first, t0 + Duration::from_micros(1000));
        let mut dropped = 0;
        for _ in 0..20 {
            if m.handle_datagram(t0, 1000) == Verdict::QueueFull {
                dropped += 1;
            }
        }
        assert_eq!(
            dropped, 11,
            "10 KB of queue holds 10 datagrams behind the first"
        );
    }

    #[test]
    fn loss_rate_is_close_to_configured() {
        let t0 = Instant::now();
        let mut m = LinkModel::new(
            LinkParams {
                loss: 0.02,
                ..Default::default()
            },
            42,
        );
        let lost = (0..100_000)
            .filter(|_| m.handle_datagram(t0, 100) == Verdict::Lost)
            .count();
        assert!((1500..2500).contains(&lost), "{lost}");
    }
}
