//! The pub/sub registry: channels and patterns to subscriber outboxes.
//! The commands are in `commands::pubsub`.

use crate::keyspace::glob_match;
use crate::resp::Frame;
use bytes::Bytes;
use std::collections::{BTreeSet, HashMap};
use tokio::sync::mpsc;

/// Messages buffered per subscriber before it counts as too slow.
pub const SUBSCRIBER_QUEUE: usize = 64 * 1024;

/// A message on its way to one subscriber.
#[derive(Debug, Clone)]
pub struct Message {
    pub kind: MessageKind,
    pub pattern: Option<Bytes>,
    pub channel: Bytes,
    pub payload: Bytes,
}

/// What a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// PUBLISH (or a keyspace notification): `message` / `pmessage`.
    Channel,
    /// SPUBLISH: `smessage`.
    Shard,
    /// A MONITOR line (the payload), sent as a status reply.
    Monitor,
}

impl Message {
    pub fn to_frame(&self) -> Frame {
        if self.kind == MessageKind::Monitor {
            return Frame::Simple(String::from_utf8_lossy(&self.payload).into_owned().into());
        }
        if self.kind == MessageKind::Shard {
            return Frame::Push(vec![
                Frame::bulk("smessage"),
                Frame::Bulk(self.channel.clone()),
                Frame::Bulk(self.payload.clone()),
            ]);
        }
        match &self.pattern {
            Some(p) => Frame::Push(vec![
                Frame::bulk("pmessage"),
                Frame::Bulk(p.clone()),
                Frame::Bulk(self.channel.clone()),
                Frame::Bulk(self.payload.clone()),
            ]),
            None => Frame::Push(vec![
                Frame::bulk("message"),
                Frame::Bulk(self.channel.clone()),
                Frame::Bulk(self.payload.clone()),
            ]),
        }
    }
}

pub type Outbox = mpsc::Sender<Message>;

/// A connection's pub/sub state: what it is subscribed to and its outbox.
pub struct Subscriber {
    pub outbox: Outbox,
    pub channels: BTreeSet<Bytes>,
    pub patterns: BTreeSet<Bytes>,
    /// Shard channels (SSUBSCRIBE), a namespace of their own.
    pub shard_channels: BTreeSet<Bytes>,
}

impl Subscriber {
    pub fn new(outbox: Outbox) -> Subscriber {
        Subscriber {
            outbox,
            channels: BTreeSet::new(),
            patterns: BTreeSet::new(),
            shard_channels: BTreeSet::new(),
        }
    }

    /// Channels and patterns (what SUBSCRIBE's replies count).
    pub fn count(&self) -> usize {
        self.channels.len() + self.patterns.len()
    }

    /// Every subscription, shard channels included (subscribed context).
    pub fn total(&self) -> usize {
        self.count() + self.shard_channels.len()
    }
}

#[derive(Default)]
pub struct PubSub {
    pub(crate) channels: HashMap<Bytes, HashMap<u64, Outbox>>,
    pub(crate) patterns: HashMap<Bytes, HashMap<u64, Outbox>>,
    pub(crate) shard_channels: HashMap<Bytes, HashMap<u64, Outbox>>,
    /// Clients in MONITOR mode.
    pub(crate) monitors: HashMap<u64, Outbox>,
}

impl PubSub {
    /// Delivers a message; returns how many subscribers received it, and
    /// the ids of subscribers too slow to take it.
    pub fn publish(&self, channel: &Bytes, payload: &Bytes) -> (usize, Vec<u64>) {
        let mut out = (0, Vec::new());
        let message = |pattern: Option<&Bytes>| Message {
            kind: MessageKind::Channel,
            pattern: pattern.cloned(),
            channel: channel.clone(),
            payload: payload.clone(),
        };
        if let Some(subs) = self.channels.get(channel) {
            deliver(subs, || message(None), &mut out);
        }
        for (pattern, subs) in &self.patterns {
            if glob_match(pattern, channel, false) {
                deliver(subs, || message(Some(pattern)), &mut out);
            }
        }
        out
    }

    /// Delivers a shard channel's message (SPUBLISH); as [`PubSub::publish`].
    pub fn publish_shard(&self, channel: &Bytes, payload: &Bytes) -> (usize, Vec<u64>) {
        let mut out = (0, Vec::new());
        if let Some(subs) = self.shard_channels.get(channel) {
            let message = || Message {
                kind: MessageKind::Shard,
                pattern: None,
                channel: channel.clone(),
                payload: payload.clone(),
            };
            deliver(subs, message, &mut out);
        }
        out
    }

    pub fn numchannels(&self) -> usize {
        self.channels.len()
    }

    pub fn numpat(&self) -> usize {
        self.patterns.len()
    }

    pub(crate) fn remove(
        map: &mut HashMap<Bytes, HashMap<u64, Outbox>>,
        name: &Bytes,
        client: u64,
    ) {
        if let Some(subs) = map.get_mut(name) {
            subs.remove(&client);
            if subs.is_empty() {
                map.remove(name);
            }
        }
    }

    /// Whether any client is in MONITOR mode.
    pub fn has_monitors(&self) -> bool {
        !self.monitors.is_empty()
    }

    /// Sends a MONITOR line to every monitor; returns the ones too slow.
    pub fn feed_monitors(&self, line: Bytes) -> Vec<u64> {
        let mut out = (0, Vec::new());
        let message = || Message {
            kind: MessageKind::Monitor,
            pattern: None,
            channel: Bytes::new(),
            payload: line.clone(),
        };
        deliver(&self.monitors, message, &mut out);
        out.1
    }

    /// Drops every subscription of a client (disconnect, RESET).
    pub fn remove_client(&mut self, client: u64, sub: &mut Subscriber) {
        self.monitors.remove(&client);
        for ch in std::mem::take(&mut sub.channels) {
            PubSub::remove(&mut self.channels, &ch, client);
        }
        for p in std::mem::take(&mut sub.patterns) {
            PubSub::remove(&mut self.patterns, &p, client);
        }
        for ch in std::mem::take(&mut sub.shard_channels) {
            PubSub::remove(&mut self.shard_channels, &ch, client);
        }
    }
}

/// Sends one message to each subscriber, counting deliveries and noting
/// the subscribers too slow to take it.
fn deliver(
    subs: &HashMap<u64, Outbox>,
    message: impl Fn() -> Message,
    (delivered, slow): &mut (usize, Vec<u64>),
) {
    for (id, outbox) in subs {
        match outbox.try_send(message()) {
            Ok(()) => *delivered += 1,
            Err(mpsc::error::TrySendError::Full(_)) => slow.push(*id),
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
}

/// Publishes a keyspace notification (`__keyspace@DB__:KEY` → EVENT and
/// `__keyevent@DB__:EVENT` → KEY, as `notify-keyspace-events` asks). Not
/// replicated: every node, replicas included, notifies for the changes it
/// applies.
pub fn notify_keyspace_event(
    shared: &super::Shared,
    pubsub: &PubSub,
    class: u32,
    event: &str,
    db: usize,
    key: &[u8],
) {
    use crate::keyspace::notify;
    let flags = shared
        .stats
        .notify_flags
        .load(std::sync::atomic::Ordering::Relaxed);
    if !notify::wanted(flags, class) {
        return;
    }
    let mut slow = Vec::new();
    if flags & notify::KEYSPACE != 0 {
        let mut channel = format!("__keyspace@{db}__:").into_bytes();
        channel.extend_from_slice(key);
        let event = Bytes::copy_from_slice(event.as_bytes());
        slow.extend(pubsub.publish(&Bytes::from(channel), &event).1);
    }
    if flags & notify::KEYEVENT != 0 {
        let channel = Bytes::from(format!("__keyevent@{db}__:{event}"));
        slow.extend(pubsub.publish(&channel, &Bytes::copy_from_slice(key)).1);
    }
    for id in slow {
        if let Some(client) = shared.clients.by_id(id) {
            tracing::warn!(
                client = id,
                "closing pub/sub client: output buffer limit reached"
            );
            client.kill();
        }
    }
}
