//! Pub/sub: SUBSCRIBE/PSUBSCRIBE/PUBLISH and PUBSUB introspection.
//!
//! Subscribers are registered with a bounded channel to their connection
//! task. PUBLISH runs under the dataset lock like every command, so
//! messages are ordered with writes (replication will carry them too). A
//! subscriber whose channel is full is too slow to keep up: like Redis's
//! pubsub output buffer limit, it is disconnected rather than letting
//! memory grow without bound.

use super::args::*;
use super::flags::*;
use super::{CmdResult, CommandSpec, ExecCtx};
use crate::resp::Frame;
use bytes::Bytes;
use std::collections::{BTreeSet, HashMap};
use tokio::sync::mpsc;

const G: &str = "pubsub";

/// Messages buffered per subscriber before it counts as too slow.
pub const SUBSCRIBER_QUEUE: usize = 64 * 1024;

/// A message on its way to one subscriber.
#[derive(Debug, Clone)]
pub struct Message {
    pub pattern: Option<Bytes>,
    pub channel: Bytes,
    pub payload: Bytes,
}

impl Message {
    pub fn to_frame(&self) -> Frame {
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
}

impl Subscriber {
    pub fn new(outbox: Outbox) -> Subscriber {
        Subscriber {
            outbox,
            channels: BTreeSet::new(),
            patterns: BTreeSet::new(),
        }
    }

    pub fn count(&self) -> usize {
        self.channels.len() + self.patterns.len()
    }
}

#[derive(Default)]
pub struct PubSub {
    channels: HashMap<Bytes, HashMap<u64, Outbox>>,
    patterns: HashMap<Bytes, HashMap<u64, Outbox>>,
}

impl PubSub {
    /// Delivers a message; returns how many subscribers received it, and
    /// the ids of subscribers too slow to take it.
    pub fn publish(&self, channel: &Bytes, payload: &Bytes) -> (usize, Vec<u64>) {
        let mut delivered = 0;
        let mut slow = Vec::new();
        if let Some(subs) = self.channels.get(channel) {
            for (id, outbox) in subs {
                match outbox.try_send(Message {
                    pattern: None,
                    channel: channel.clone(),
                    payload: payload.clone(),
                }) {
                    Ok(()) => delivered += 1,
                    Err(mpsc::error::TrySendError::Full(_)) => slow.push(*id),
                    Err(mpsc::error::TrySendError::Closed(_)) => {}
                }
            }
        }
        for (pattern, subs) in &self.patterns {
            if !glob_match(pattern, channel, false) {
                continue;
            }
            for (id, outbox) in subs {
                match outbox.try_send(Message {
                    pattern: Some(pattern.clone()),
                    channel: channel.clone(),
                    payload: payload.clone(),
                }) {
                    Ok(()) => delivered += 1,
                    Err(mpsc::error::TrySendError::Full(_)) => slow.push(*id),
                    Err(mpsc::error::TrySendError::Closed(_)) => {}
                }
            }
        }
        (delivered, slow)
    }

    pub fn numpat(&self) -> usize {
        self.patterns.len()
    }

    fn remove(map: &mut HashMap<Bytes, HashMap<u64, Outbox>>, name: &Bytes, client: u64) {
        if let Some(subs) = map.get_mut(name) {
            subs.remove(&client);
            if subs.is_empty() {
                map.remove(name);
            }
        }
    }

    /// Drops every subscription of a client (disconnect, RESET).
    pub fn remove_client(&mut self, client: u64, sub: &mut Subscriber) {
        for ch in std::mem::take(&mut sub.channels) {
            PubSub::remove(&mut self.channels, &ch, client);
        }
        for p in std::mem::take(&mut sub.patterns) {
            PubSub::remove(&mut self.patterns, &p, client);
        }
    }
}

macro_rules! spec {
    ($name:literal, $arity:expr, $flags:expr, $summary:literal, $syntax:literal, $run:expr) => {
        CommandSpec {
            name: $name,
            arity: $arity,
            flags: $flags,
            keys: (0, 0, 0),
            group: G,
            summary: $summary,
            syntax: $syntax,
            run: $run,
        }
    };
}

pub(super) static COMMANDS: &[CommandSpec] = &[
    spec!(
        "subscribe",
        -2,
        PUBSUB | NOSCRIPT | LOADING | STALE | SUBSCRIBED_OK,
        "Listens for messages published to channels.",
        "channel [channel ...]",
        subscribe
    ),
    spec!(
        "unsubscribe",
        -1,
        PUBSUB | NOSCRIPT | LOADING | STALE | SUBSCRIBED_OK,
        "Stops listening to messages posted to channels.",
        "[channel [channel ...]]",
        unsubscribe
    ),
    spec!(
        "psubscribe",
        -2,
        PUBSUB | NOSCRIPT | LOADING | STALE | SUBSCRIBED_OK,
        "Listens for messages published to channels that match one or more patterns.",
        "pattern [pattern ...]",
        psubscribe
    ),
    spec!(
        "punsubscribe",
        -1,
        PUBSUB | NOSCRIPT | LOADING | STALE | SUBSCRIBED_OK,
        "Stops listening to messages published to channels that match one or more patterns.",
        "[pattern [pattern ...]]",
        punsubscribe
    ),
    spec!(
        "publish",
        3,
        PUBSUB | LOADING | STALE | FAST,
        "Posts a message to a channel.",
        "channel message",
        publish
    ),
    spec!(
        "pubsub",
        -2,
        PUBSUB | LOADING | STALE,
        "A container for Pub/Sub commands.",
        "subcommand [arguments ...]",
        pubsub
    ),
];

fn ack(kind: &'static str, name: Option<Bytes>, count: usize) -> Frame {
    Frame::Push(vec![
        Frame::bulk(kind),
        name.map(Frame::Bulk).unwrap_or(Frame::Null),
        Frame::Integer(count as i64),
    ])
}

fn subscribe_generic(ctx: &mut ExecCtx, args: &[Bytes], pattern: bool) -> CmdResult {
    let client = ctx.session.id();
    let mut replies = Vec::new();
    for name in &args[1..] {
        let sub = &mut ctx.session.subscriber;
        let (set, map) = if pattern {
            (&mut sub.patterns, &mut ctx.pubsub.patterns)
        } else {
            (&mut sub.channels, &mut ctx.pubsub.channels)
        };
        if set.insert(name.clone()) {
            map.entry(name.clone())
                .or_default()
                .insert(client, sub.outbox.clone());
        }
        replies.push(ack(
            if pattern { "psubscribe" } else { "subscribe" },
            Some(name.clone()),
            ctx.session.subscriber.count(),
        ));
    }
    ctx.session.subscriptions = ctx.session.subscriber.count();
    Ok(Frame::Multiple(replies))
}

fn unsubscribe_generic(ctx: &mut ExecCtx, args: &[Bytes], pattern: bool) -> CmdResult {
    let client = ctx.session.id();
    let kind = if pattern {
        "punsubscribe"
    } else {
        "unsubscribe"
    };
    let names: Vec<Bytes> = if args.len() > 1 {
        args[1..].to_vec()
    } else if pattern {
        ctx.session.subscriber.patterns.iter().cloned().collect()
    } else {
        ctx.session.subscriber.channels.iter().cloned().collect()
    };
    let mut replies = Vec::new();
    for name in &names {
        let sub = &mut ctx.session.subscriber;
        let (set, map) = if pattern {
            (&mut sub.patterns, &mut ctx.pubsub.patterns)
        } else {
            (&mut sub.channels, &mut ctx.pubsub.channels)
        };
        if set.remove(name) {
            PubSub::remove(map, name, client);
        }
        replies.push(ack(
            kind,
            Some(name.clone()),
            ctx.session.subscriber.count(),
        ));
    }
    if names.is_empty() {
        replies.push(ack(kind, None, ctx.session.subscriber.count()));
    }
    ctx.session.subscriptions = ctx.session.subscriber.count();
    Ok(Frame::Multiple(replies))
}

fn subscribe(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    subscribe_generic(ctx, args, false)
}

fn psubscribe(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    subscribe_generic(ctx, args, true)
}

fn unsubscribe(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    unsubscribe_generic(ctx, args, false)
}

fn punsubscribe(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    unsubscribe_generic(ctx, args, true)
}

fn publish(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let (delivered, slow) = ctx.pubsub.publish(&args[1], &args[2]);
    for id in slow {
        if let Some(client) = ctx.shared.clients.by_id(id) {
            tracing::warn!(
                client = id,
                "closing pub/sub client: output buffer limit reached"
            );
            client.kill();
        }
    }
    Ok(Frame::Integer(delivered as i64))
}

fn pubsub(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let sub = &args[1];
    if is(sub, "channels") && args.len() <= 3 {
        let pattern = args.get(2);
        let names = ctx
            .pubsub
            .channels
            .keys()
            .filter(|c| pattern.is_none_or(|p| glob_match(p, c, false)))
            .map(|c| Frame::Bulk(c.clone()))
            .collect();
        Ok(Frame::Array(names))
    } else if is(sub, "numsub") {
        let mut out = Vec::new();
        for ch in &args[2..] {
            out.push(Frame::Bulk(ch.clone()));
            out.push(Frame::Integer(
                ctx.pubsub.channels.get(ch).map_or(0, |s| s.len()) as i64,
            ));
        }
        Ok(Frame::Array(out))
    } else if is(sub, "numpat") && args.len() == 2 {
        Ok(Frame::Integer(ctx.pubsub.numpat() as i64))
    } else if is(sub, "shardchannels") {
        Ok(Frame::Array(vec![]))
    } else if is(sub, "shardnumsub") {
        Ok(Frame::Array(
            args[2..]
                .iter()
                .flat_map(|c| [Frame::Bulk(c.clone()), Frame::Integer(0)])
                .collect(),
        ))
    } else {
        Err(super::keys::unknown_subcommand(sub, "PUBSUB"))
    }
}
