//! Serving clients blocked on keys: after a write marks a key ready,
//! [`serve_ready`] hands elements to waiters in the order they blocked
//! (FIFO per key), doing the pop on each waiter's behalf under the same
//! lock, so a woken client always gets its element and no other client can
//! steal it. The registry itself is `node::blocking`.

use super::{list, stream, zset, ExecCtx};
use crate::keyspace::Blob;
pub use crate::node::blocking::{BlockOp, BlockedWait, Blocking};

/// Serves waiters on every key marked ready, in blocking order. Serving a
/// move may make its destination ready; the loop continues until quiet.
pub fn serve_ready(ctx: &mut ExecCtx) {
    use crate::keyspace::notify::{LIST, ZSET};
    let saved_db = ctx.session.db;
    // Served after the command (an EXEC, a script) that made the keys
    // ready, at the time it ended: a key that expired meanwhile serves no
    // one, as in Redis.
    ctx.now_ms = ctx.now_ms.max(crate::node::unix_ms());
    while !ctx.blocking.ready.is_empty() {
        let ready = std::mem::take(&mut ctx.blocking.ready);
        ctx.blocking.ready_set.clear();
        for (db, key) in ready {
            serve_stream_waiters(ctx, db, &key);
            #[allow(clippy::while_let_loop)] // several exits, each with its own condition
            loop {
                let Some(client) = ctx
                    .blocking
                    .by_key
                    .get(&(db, key.clone()))
                    .and_then(|q| q.front().copied())
                else {
                    break;
                };
                let Some(waiter) = ctx.blocking.waiters.get(&client) else {
                    break;
                };
                let op = waiter.op.clone();
                if op.is_stream() {
                    break;
                }
                ctx.session.db = db;
                let kind_ok = if op.wants_list() {
                    super::typed::check_type(ctx, &key, crate::keyspace::ValueKind::List)
                } else {
                    super::typed::check_type(ctx, &key, crate::keyspace::ValueKind::ZSet)
                };
                if !matches!(kind_ok, Ok(true)) {
                    break;
                }
                let events = match &op {
                    BlockOp::ListPop { left, .. } => {
                        (if *left { "lpop" } else { "rpop" }, "", LIST)
                    }
                    BlockOp::ListMove {
                        from_left, to_left, ..
                    } => (
                        if *from_left { "lpop" } else { "rpop" },
                        if *to_left { "lpush" } else { "rpush" },
                        LIST,
                    ),
                    BlockOp::ZPop { min, .. } => {
                        (if *min { "zpopmin" } else { "zpopmax" }, "", ZSET)
                    }
                    BlockOp::XRead { .. } | BlockOp::XReadGroup { .. } => ("", "", 0),
                };
                let reply = match &op {
                    BlockOp::ListPop { left, count, mpop } => {
                        list::pop_for_waiter(ctx, &key, *left, *count, *mpop)
                    }
                    BlockOp::ListMove {
                        from_left,
                        dest,
                        to_left,
                    } => list::move_for_waiter(ctx, &key, *from_left, dest, *to_left),
                    BlockOp::ZPop { min, count, mpop } => {
                        zset::pop_for_waiter(ctx, &key, *min, *count, *mpop)
                    }
                    BlockOp::XRead { .. } | BlockOp::XReadGroup { .. } => None,
                };
                let Some(reply) = reply else {
                    ctx.effects = None;
                    break;
                };
                ctx.flush_effects();
                super::notify::after_served(ctx, &key, events.0, events.1, events.2);
                if let Some(waiter) = ctx.blocking.take_waiter(client) {
                    // Waiters are removed under this lock when their client
                    // disconnects, so the receiving side is alive here.
                    let _ = waiter.reply.send(reply);
                }
            }
        }
    }
    // Keys found expired while serving (a waiter's key that expired in
    // the meantime) are deleted: their DELs go to the stream now.
    ctx.propagate_expired();
    ctx.session.db = saved_db;
}

/// Tries every XREAD/XREADGROUP waiter on a ready key, in blocking order;
/// those with nothing new yet keep waiting.
fn serve_stream_waiters(ctx: &mut ExecCtx, db: usize, key: &Blob) {
    let Some(queue) = ctx.blocking.by_key.get(&(db, key.clone())) else {
        return;
    };
    let clients: Vec<u64> = queue.iter().copied().collect();
    for client in clients {
        let Some(waiter) = ctx.blocking.waiters.get(&client) else {
            continue;
        };
        if !waiter.op.is_stream() {
            continue;
        }
        let index = waiter.keys.iter().position(|k| k == key).unwrap_or(0);
        let op = waiter.op.clone();
        ctx.session.db = db;
        match stream::serve_waiter(ctx, key, index, &op) {
            Some(reply) => {
                if let crate::resp::Frame::Error(e) = &reply {
                    ctx.cmdstats.error(e);
                    ctx.cmdstats.failed_later(match op {
                        BlockOp::XRead { .. } => "xread",
                        _ => "xreadgroup",
                    });
                    ctx.node
                        .stats
                        .error_replies
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                ctx.flush_effects();
                // Group state a served XREADGROUP changed fires nothing.
                super::notify::after_served(ctx, key, "", "", 0);
                if let Some(waiter) = ctx.blocking.take_waiter(client) {
                    let _ = waiter.reply.send(reply);
                }
            }
            None => ctx.effects = None,
        }
    }
}
