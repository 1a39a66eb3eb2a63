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

const G: &str = "pubsub";

pub use crate::node::pubsub::{Message, Outbox, PubSub, Subscriber, SUBSCRIBER_QUEUE};

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
        "ssubscribe",
        -2,
        PUBSUB | NOSCRIPT | LOADING | STALE | SUBSCRIBED_OK,
        (1, -1, 1),
        "Listens for messages published to shard channels.",
        "shardchannel [shardchannel ...]",
        ssubscribe
    ),
    spec!(
        "sunsubscribe",
        -1,
        PUBSUB | NOSCRIPT | LOADING | STALE | SUBSCRIBED_OK,
        (1, -1, 1),
        "Stops listening to messages posted to shard channels.",
        "[shardchannel [shardchannel ...]]",
        sunsubscribe
    ),
    spec!(
        "spublish",
        3,
        PUBSUB | LOADING | STALE | FAST,
        (1, 1, 1),
        "Post a message to a shard channel",
        "shardchannel message",
        spublish
    ),
    spec!(
        "monitor",
        1,
        ADMIN | NOSCRIPT | LOADING | STALE,
        "Listens for all requests received by the server in real-time.",
        "",
        monitor
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
    let n = ctx.session.subscriber.total();
    ctx.session.set_subscriptions(n);
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
    let n = ctx.session.subscriber.total();
    ctx.session.set_subscriptions(n);
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

fn ssubscribe(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let client = ctx.session.id();
    let mut replies = Vec::new();
    for name in &args[1..] {
        let sub = &mut ctx.session.subscriber;
        if sub.shard_channels.insert(name.clone()) {
            ctx.pubsub
                .shard_channels
                .entry(name.clone())
                .or_default()
                .insert(client, sub.outbox.clone());
        }
        replies.push(ack(
            "ssubscribe",
            Some(name.clone()),
            sub.shard_channels.len(),
        ));
    }
    let n = ctx.session.subscriber.total();
    ctx.session.set_subscriptions(n);
    Ok(Frame::Multiple(replies))
}

fn sunsubscribe(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let client = ctx.session.id();
    let names: Vec<Bytes> = if args.len() > 1 {
        args[1..].to_vec()
    } else {
        ctx.session
            .subscriber
            .shard_channels
            .iter()
            .cloned()
            .collect()
    };
    let mut replies = Vec::new();
    for name in &names {
        let sub = &mut ctx.session.subscriber;
        if sub.shard_channels.remove(name) {
            PubSub::remove(&mut ctx.pubsub.shard_channels, name, client);
        }
        replies.push(ack(
            "sunsubscribe",
            Some(name.clone()),
            sub.shard_channels.len(),
        ));
    }
    if names.is_empty() {
        replies.push(ack("sunsubscribe", None, 0));
    }
    let n = ctx.session.subscriber.total();
    ctx.session.set_subscriptions(n);
    Ok(Frame::Multiple(replies))
}

fn spublish(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let (delivered, slow) = ctx.pubsub.publish_shard(&args[1], &args[2]);
    close_slow(ctx, slow);
    Ok(Frame::Integer(delivered as i64))
}

fn monitor(ctx: &mut ExecCtx, _args: &[Bytes]) -> CmdResult {
    let id = ctx.session.id();
    let outbox = ctx.session.subscriber.outbox.clone();
    ctx.pubsub.monitors.insert(id, outbox);
    Ok(Frame::ok())
}

/// Sends the command about to run (EXEC: that ran) to the clients in
/// MONITOR mode, as Redis prints it: `TIME [DB SOURCE] "arg" ...`, the
/// source `lua` for a script's commands, secrets redacted.
pub(super) fn feed_monitors(ctx: &ExecCtx, args: &[Bytes]) {
    use std::fmt::Write as _;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let source = if ctx.session.in_script {
        "lua".to_string()
    } else {
        ctx.session.handle.addr.to_string()
    };
    let mut line = format!(
        "{}.{:06} [{} {source}]",
        now.as_secs(),
        now.subsec_micros(),
        ctx.session.db
    );
    for arg in super::slowlog::redacted(args) {
        line.push_str(" \"");
        for &b in arg.iter() {
            match b {
                b'\\' => line.push_str("\\\\"),
                b'"' => line.push_str("\\\""),
                b'\n' => line.push_str("\\n"),
                b'\r' => line.push_str("\\r"),
                b'\t' => line.push_str("\\t"),
                7 => line.push_str("\\a"),
                8 => line.push_str("\\b"),
                0x20..=0x7e => line.push(b as char),
                _ => {
                    let _ = write!(line, "\\x{b:02x}");
                }
            }
        }
        line.push('"');
    }
    let slow = ctx.pubsub.feed_monitors(Bytes::from(line));
    close_slow(ctx, slow);
}

fn close_slow(ctx: &ExecCtx, slow: Vec<u64>) {
    for id in slow {
        if let Some(client) = ctx.node.clients.by_id(id) {
            tracing::warn!(
                client = id,
                "closing pub/sub client: output buffer limit reached"
            );
            client.kill();
        }
    }
}

fn publish(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let (delivered, slow) = ctx.pubsub.publish(&args[1], &args[2]);
    for id in slow {
        if let Some(client) = ctx.node.clients.by_id(id) {
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
    } else if is(sub, "shardchannels") && args.len() <= 3 {
        let pattern = args.get(2);
        Ok(Frame::Array(
            ctx.pubsub
                .shard_channels
                .keys()
                .filter(|c| pattern.is_none_or(|p| glob_match(p, c, false)))
                .map(|c| Frame::Bulk(c.clone()))
                .collect(),
        ))
    } else if is(sub, "shardnumsub") {
        Ok(Frame::Array(
            args[2..]
                .iter()
                .flat_map(|c| {
                    let n = ctx.pubsub.shard_channels.get(c).map_or(0, |s| s.len());
                    [Frame::Bulk(c.clone()), Frame::Integer(n as i64)]
                })
                .collect(),
        ))
    } else {
        Err(super::keys::unknown_subcommand(sub, "PUBSUB"))
    }
}
