//! SORT and SORT_RO on lists, sets and sorted sets: numeric or ALPHA
//! order, BY patterns (`weight_*`, hash fields `obj_*->w`, a constant for
//! no sorting), GET patterns (`#` for the element), LIMIT, ASC|DESC and
//! STORE, with Redis 7.0's rules, errors and replies. A STORE replicates as
//! its effect (the stored list), so replicas never sort themselves.

use super::args::*;
use super::flags::*;
use super::{CmdResult, CommandSpec, ExecCtx};
use crate::keyspace::{Blob, ListValue, Value};
use crate::resp::Frame;
use bytes::Bytes;
use std::cmp::Ordering;

const G: &str = "generic";

pub(super) static COMMANDS: &[CommandSpec] = &[
    spec!(
        "sort",
        -2,
        WRITE | DENYOOM,
        (1, 1, 1),
        "Sorts the elements in a list, a set, or a sorted set, optionally storing the result.",
        "key [BY pattern] [LIMIT offset count] [GET pattern [GET pattern ...]] [ASC | DESC] [ALPHA] [STORE destination]",
        sort
    ),
    spec!(
        "sort_ro",
        -2,
        READONLY,
        (1, 1, 1),
        "Returns the sorted elements of a list, a set, or a sorted set.",
        "key [BY pattern] [LIMIT offset count] [GET pattern [GET pattern ...]] [ASC | DESC] [ALPHA]",
        sort_ro
    ),
];

#[derive(Default)]
struct Options {
    desc: bool,
    alpha: bool,
    limit: Option<(i64, i64)>,
    by: Option<Bytes>,
    gets: Vec<Bytes>,
    store: Option<Bytes>,
}

fn parse(args: &[Bytes], read_only: bool) -> Result<Options, Frame> {
    let mut o = Options::default();
    let mut j = 2;
    while j < args.len() {
        let left = args.len() - j - 1;
        let a = &args[j];
        if is(a, "asc") {
            o.desc = false;
        } else if is(a, "desc") {
            o.desc = true;
        } else if is(a, "alpha") {
            o.alpha = true;
        } else if is(a, "limit") && left >= 2 {
            o.limit = Some((int(&args[j + 1])?, int(&args[j + 2])?));
            j += 2;
        } else if !read_only && is(a, "store") && left >= 1 {
            o.store = Some(args[j + 1].clone());
            j += 1;
        } else if is(a, "by") && left >= 1 {
            o.by = Some(args[j + 1].clone());
            j += 1;
        } else if is(a, "get") && left >= 1 {
            o.gets.push(args[j + 1].clone());
            j += 1;
        } else {
            return Err(ERR_SYNTAX);
        }
        j += 1;
    }
    Ok(o)
}

/// The value a BY or GET pattern names for `element`: `#` is the element;
/// `pre*post` is the string at that key; `pre*post->field` that field of
/// the hash there. `None` when there is no such value (or no `*`).
fn lookup(ctx: &mut ExecCtx, pattern: &[u8], element: &[u8]) -> Option<Bytes> {
    if pattern == b"#" {
        return Some(Bytes::copy_from_slice(element));
    }
    let star = pattern.iter().position(|b| *b == b'*')?;
    let after = &pattern[star + 1..];
    let (post, field) = match after.windows(2).position(|w| w == b"->") {
        Some(i) if i + 2 < after.len() => (&after[..i], Some(&after[i + 2..])),
        _ => (after, None),
    };
    let mut key = Vec::with_capacity(pattern.len() + element.len());
    key.extend_from_slice(&pattern[..star]);
    key.extend_from_slice(element);
    key.extend_from_slice(post);
    let now = ctx.now_ms;
    match (ctx.db().get(&key, now)?, field) {
        (Value::Hash(h), Some(field)) => h.get(field).map(|v| Bytes::copy_from_slice(v.as_bytes())),
        (v, None) => v.string_bytes(),
        _ => None,
    }
}

/// A weight as Redis's `strtod` reads it: leading spaces allowed, nothing
/// after the number, no NaN, no overflow or underflow.
fn weight(text: &[u8]) -> Option<f64> {
    let s = std::str::from_utf8(text).ok()?;
    let s = s.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    if s.is_empty() {
        return Some(0.0);
    }
    let v: f64 = s.parse().ok()?;
    let literal_inf = s
        .trim_start_matches(['+', '-'])
        .to_ascii_lowercase()
        .starts_with("inf");
    let nonzero_digits = s
        .bytes()
        .take_while(|b| !matches!(b, b'e' | b'E'))
        .any(|b| (b'1'..=b'9').contains(&b));
    if v.is_nan() || (v.is_infinite() && !literal_inf) || (v == 0.0 && nonzero_digits) {
        return None;
    }
    Some(v)
}

struct Item {
    element: Bytes,
    score: f64,
    by: Option<Bytes>,
}

fn sort(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    sort_generic(ctx, args, false)
}

fn sort_ro(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    sort_generic(ctx, args, true)
}

fn sort_generic(ctx: &mut ExecCtx, args: &[Bytes], read_only: bool) -> CmdResult {
    let mut o = parse(args, read_only)?;
    // A BY without '*' means: do not sort.
    let mut dontsort = o.by.as_ref().is_some_and(|b| !b.contains(&b'*'));
    let now = ctx.now_ms;
    let source = match ctx.db().get(&args[1], now) {
        None => None,
        Some(v @ (Value::List(_) | Value::Set(_) | Value::ZSet(_))) => Some(v.clone()),
        Some(_) => return Err(ERR_WRONGTYPE),
    };
    let is_set = matches!(source, Some(Value::Set(_)));
    // Stored results, and what a script sees, must not depend on a set's
    // iteration order.
    if dontsort && is_set && (o.store.is_some() || ctx.session.in_script) {
        dontsort = false;
        o.alpha = true;
        o.by = None;
    }
    let mut elements: Vec<Bytes> = match &source {
        None => Vec::new(),
        Some(Value::List(l)) => l
            .iter()
            .map(|b| Bytes::copy_from_slice(b.as_bytes()))
            .collect(),
        Some(Value::Set(s)) => s
            .iter()
            .map(|b| Bytes::copy_from_slice(b.as_bytes()))
            .collect(),
        Some(Value::ZSet(z)) => z
            .iter_from_rank(0)
            .map(|(m, _)| Bytes::copy_from_slice(m))
            .collect(),
        Some(_) => Vec::new(),
    };
    let len = elements.len() as i64;
    let (limit_start, limit_count) = o.limit.unwrap_or((0, -1));
    let mut start = limit_start.clamp(0, len);
    let count = limit_count.max(-1).min(len);
    let mut end = if count < 0 {
        len - 1
    } else {
        start + count - 1
    };
    if start >= len {
        start = len - 1;
        end = len - 2;
    }
    end = end.min(len - 1);
    if dontsort {
        // Native order: lists and sorted sets from the other end for DESC;
        // a set Redis keeps as an intset comes out in ascending order.
        if o.desc && !is_set {
            elements.reverse();
        }
        if is_set {
            let max = ctx.node.settings.read().encoding.set_max_intset_entries;
            let ints: Option<Vec<i64>> = elements
                .iter()
                .map(|e| crate::keyspace::canonical_i64(e))
                .collect();
            if let Some(mut ints) = ints.filter(|i| i.len() as u64 <= max) {
                ints.sort_unstable();
                elements = ints.iter().map(|i| Bytes::from(i.to_string())).collect();
            }
        }
    } else {
        let mut items = Vec::with_capacity(elements.len());
        let mut bad_weight = false;
        for element in elements {
            let by = match &o.by {
                Some(pattern) => lookup(ctx, pattern, &element),
                None => Some(element.clone()),
            };
            let score = match (&by, o.alpha) {
                (Some(v), false) => weight(v).unwrap_or_else(|| {
                    bad_weight = true;
                    0.0
                }),
                _ => 0.0,
            };
            items.push(Item {
                element,
                score,
                by: if o.by.is_some() { by } else { None },
            });
        }
        if bad_weight {
            return Err(Frame::error(
                "ERR One or more scores can't be converted into double",
            ));
        }
        let with_pattern = o.by.is_some();
        items.sort_by(|a, b| {
            let cmp = if !o.alpha {
                a.score
                    .partial_cmp(&b.score)
                    .unwrap_or(Ordering::Equal)
                    .then_with(|| a.element.cmp(&b.element))
            } else if with_pattern {
                // Missing weights first.
                a.by.cmp(&b.by)
            } else {
                a.element.cmp(&b.element)
            };
            if o.desc {
                cmp.reverse()
            } else {
                cmp
            }
        });
        elements = items.into_iter().map(|i| i.element).collect();
    }
    let picked: Vec<Bytes> = if end >= start {
        elements[start as usize..=end as usize].to_vec()
    } else {
        Vec::new()
    };
    let mut out: Vec<Option<Bytes>> = Vec::new();
    for element in &picked {
        if o.gets.is_empty() {
            out.push(Some(element.clone()));
        }
        for pattern in &o.gets {
            out.push(lookup(ctx, pattern, element));
        }
    }
    let Some(dest) = o.store else {
        return Ok(Frame::Array(
            out.into_iter()
                .map(|v| v.map(Frame::Bulk).unwrap_or(Frame::Null))
                .collect(),
        ));
    };
    let stored = out.len();
    let existed = ctx.db().remove(&dest).is_some();
    if stored > 0 {
        let list: ListValue = out
            .iter()
            .map(|v| Blob::new(v.as_deref().unwrap_or_default()))
            .collect();
        ctx.db()
            .set(&dest, Value::List(std::sync::Arc::new(list)), false);
        // Wakes clients blocked on the destination list.
        ctx.modified(&dest, stored as u64);
        let mut push: Vec<&[u8]> = vec![b"RPUSH", &dest];
        push.extend(out.iter().map(|v| v.as_deref().unwrap_or_default()));
        ctx.propagate(&[b"DEL".as_slice(), &dest]);
        ctx.propagate(&push);
    } else if existed {
        ctx.dirty(1);
        ctx.propagate(&[b"DEL".as_slice(), &dest]);
    }
    Ok(Frame::Integer(stored as i64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_as_strtod_reads_them() {
        assert_eq!(weight(b"1.5"), Some(1.5));
        assert_eq!(weight(b"  -3"), Some(-3.0));
        assert_eq!(weight(b""), Some(0.0));
        assert_eq!(weight(b"inf"), Some(f64::INFINITY));
        assert_eq!(weight(b"1e400"), None);
        assert_eq!(weight(b"1e-400"), None);
        assert_eq!(weight(b"abc"), None);
        assert_eq!(weight(b"1 "), None);
        assert_eq!(weight(b"nan"), None);
    }
}
