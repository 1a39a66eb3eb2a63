//! Timers with sub-millisecond precision.
//!
//! tokio's timer wheel has a 1 ms resolution and rounds every deadline up
//! to its next tick: a 2 ms wait lasts 2–3 ms. That is too coarse for the
//! replication sender (its batching delay is a promise about latency) and
//! for the WAN emulator (it would add 0–1 ms to every emulated packet). A
//! [`DelayLine`] keeps pending items on a thread of its own that waits with
//! the OS's high-resolution timer and releases each on time — into a tokio
//! channel, or through a closure — so IO stays on the runtime and only the
//! waiting moves off it. [`sleep_until`] is the async sleep built on one.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::OnceLock;
use std::time::Instant;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};
use tokio::sync::oneshot;

/// The sending end: schedule an item. Dropping it ends the thread once
/// nothing is pending.
pub struct DelayLine<T> {
    tx: mpsc::Sender<(Instant, T)>,
}

struct Due<T> {
    at: Instant,
    seq: u64,
    item: T,
}

impl<T> PartialEq for Due<T> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl<T> Eq for Due<T> {}
impl<T> PartialOrd for Due<T> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Due<T> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

impl<T: Send + 'static> DelayLine<T> {
    /// Starts the line's thread; items come out of the receiver at their
    /// due instants, in due order (ties in scheduling order).
    pub fn spawn(name: &str) -> std::io::Result<(DelayLine<T>, UnboundedReceiver<T>)> {
        let (out, released) = unbounded_channel();
        let line = DelayLine::spawn_with(name, move |item| out.send(item).is_ok())?;
        Ok((line, released))
    }

    /// Starts the line's thread; `release` gets each item at its due
    /// instant, and stops the thread by returning false.
    pub fn spawn_with(
        name: &str,
        release: impl FnMut(T) -> bool + Send + 'static,
    ) -> std::io::Result<DelayLine<T>> {
        let (tx, rx) = mpsc::channel::<(Instant, T)>();
        std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || run(rx, release))?;
        Ok(DelayLine { tx })
    }

    /// Releases `item` at `at` (at once when that has passed). False once
    /// the receiving side is gone.
    pub fn schedule(&self, at: Instant, item: T) -> bool {
        self.tx.send((at, item)).is_ok()
    }
}

/// Sleeps until `at`, to within the OS timer's precision (tens of
/// microseconds) rather than tokio's millisecond tick. Falls back to
/// tokio's timer if the timer thread cannot be started.
pub async fn sleep_until(at: Instant) {
    static LINE: OnceLock<Option<DelayLine<oneshot::Sender<()>>>> = OnceLock::new();
    let line = LINE.get_or_init(|| {
        DelayLine::spawn_with("quire-timer", |wake: oneshot::Sender<()>| {
            // The sleeper may have been dropped (a select! went another way).
            let _ = wake.send(());
            true
        })
        .ok()
    });
    if at <= Instant::now() {
        return;
    }
    let (wake, woken) = oneshot::channel();
    match line {
        Some(line) if line.schedule(at, wake) => {
            let _ = woken.await;
        }
        _ => tokio::time::sleep_until(at.into()).await,
    }
}

fn run<T>(rx: mpsc::Receiver<(Instant, T)>, mut release: impl FnMut(T) -> bool) {
    let mut pending: BinaryHeap<Reverse<Due<T>>> = BinaryHeap::new();
    let mut seq = 0u64;
    let mut senders_gone = false;
    loop {
        let now = Instant::now();
        while pending.peek().is_some_and(|d| d.0.at <= now) {
            let Reverse(due) = pending.pop().expect("peeked");
            if !release(due.item) {
                return;
            }
        }
        let next = pending.peek().map(|d| d.0.at);
        if senders_gone {
            match next {
                Some(at) => std::thread::sleep(at.saturating_duration_since(Instant::now())),
                None => return,
            }
            continue;
        }
        let received = match next {
            Some(at) => rx.recv_timeout(at.saturating_duration_since(now)),
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match received {
            Ok((at, item)) => {
                seq += 1;
                pending.push(Reverse(Due { at, seq, item }));
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => senders_gone = true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn releases_in_due_order_close_to_the_due_instant() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (line, mut out) = DelayLine::spawn("delay-line-test").unwrap();
            let t0 = Instant::now();
            // Scheduled out of order, with a tie.
            for (ms, id) in [(30u64, 3), (10, 1), (20, 2), (20, 22), (0, 0)] {
                assert!(line.schedule(t0 + Duration::from_millis(ms), id));
            }
            drop(line);
            let mut got = Vec::new();
            while let Some(id) = out.recv().await {
                got.push((id, t0.elapsed()));
            }
            assert_eq!(
                got.iter().map(|g| g.0).collect::<Vec<_>>(),
                vec![0, 1, 2, 22, 3]
            );
            for (id, at) in got {
                let due = Duration::from_millis(match id {
                    22 => 20,
                    other => other as u64 * 10,
                });
                // Never early; lateness is bounded loosely (a loaded CI
                // machine), the precision itself is measured by the bench.
                assert!(at >= due, "item {id} released at {at:?}, due {due:?}");
                assert!(
                    at < due + Duration::from_millis(200),
                    "item {id} released at {at:?}, due {due:?}"
                );
            }
        });
    }

    #[test]
    fn sleep_until_wakes_at_the_instant_and_survives_cancelled_sleeps() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            // A sleep dropped before its instant leaves nothing behind
            // that could wake someone else.
            let dropped = sleep_until(Instant::now() + Duration::from_millis(5));
            drop(dropped);
            tokio::select! {
                _ = sleep_until(Instant::now() + Duration::from_millis(50)) => panic!("the later sleep won"),
                _ = sleep_until(Instant::now() + Duration::from_millis(1)) => {}
            }
            let t0 = Instant::now();
            let due = t0 + Duration::from_millis(3);
            sleep_until(due).await;
            let woke = Instant::now();
            assert!(woke >= due, "woke {:?} early", due - woke);
            assert!(woke < due + Duration::from_millis(200));
            // Already past: returns at once.
            sleep_until(t0).await;
        });
    }
}
