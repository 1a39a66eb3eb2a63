//! SLOWLOG and LATENCY: what took long, as Redis reports it. Recording
//! happens in [`record`], called by `call` for every command past either
//! threshold; secrets are redacted first ([`redacted`]), as Redis keeps
//! passwords out of its slow log and MONITOR.

use super::args::*;
use super::flags::*;
use super::keys::help_reply as help;
use super::keys::unknown_subcommand;
use super::{CmdResult, CommandSpec, ExecCtx};
use crate::resp::Frame;
use bytes::Bytes;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;

const G: &str = "server";

pub(super) static COMMANDS: &[CommandSpec] = &[
    spec!(
        "slowlog",
        -2,
        ADMIN | LOADING | STALE,
        "A container for slow log commands.",
        "subcommand [argument]",
        slowlog
    ),
    spec!(
        "latency",
        -2,
        ADMIN | NOSCRIPT | LOADING | STALE,
        "A container for latency diagnostics commands.",
        "subcommand [argument ...]",
        latency
    ),
];

const REDACTED: &str = "(redacted)";

/// `args` with every secret replaced by `(redacted)`: AUTH's arguments,
/// HELLO's AUTH pair, ACL SETUSER's user and rules, CONFIG SET's
/// passwords, MIGRATE's AUTH/AUTH2 credentials.
pub fn redacted(args: &[Bytes]) -> Vec<Bytes> {
    let mut out = args.to_vec();
    let hide = |out: &mut Vec<Bytes>, i: usize| {
        if let Some(a) = out.get_mut(i) {
            *a = Bytes::from_static(REDACTED.as_bytes());
        }
    };
    let name = args[0].to_ascii_lowercase();
    match name.as_slice() {
        b"auth" => (1..args.len()).for_each(|i| hide(&mut out, i)),
        b"acl" if args.len() > 1 && is(&args[1], "setuser") => {
            (2..args.len()).for_each(|i| hide(&mut out, i))
        }
        b"config" if args.len() > 1 && is(&args[1], "set") => {
            let mut i = 2;
            while i + 1 < args.len() {
                if is(&args[i], "requirepass") || is(&args[i], "masterauth") {
                    hide(&mut out, i + 1);
                }
                i += 2;
            }
        }
        b"hello" | b"migrate" => {
            let mut i = 1;
            while i < args.len() {
                if is(&args[i], "auth") && name == b"hello" {
                    hide(&mut out, i + 1);
                    hide(&mut out, i + 2);
                    i += 3;
                } else if is(&args[i], "auth") {
                    hide(&mut out, i + 1);
                    i += 2;
                } else if is(&args[i], "auth2") {
                    hide(&mut out, i + 1);
                    hide(&mut out, i + 2);
                    i += 3;
                } else {
                    i += 1;
                }
            }
        }
        _ => {}
    }
    out
}

/// Whether a command that took `usec` goes to the slow log or the latency
/// monitor (two atomic loads: this runs for every command).
pub(super) fn is_slow(ctx: &ExecCtx, usec: u64) -> bool {
    let stats = &ctx.node.stats;
    let slow = stats.slowlog_slower_than.load(Ordering::Relaxed);
    let latency_ms = stats.latency_threshold_ms.load(Ordering::Relaxed);
    (slow >= 0 && usec >= slow as u64) || (latency_ms > 0 && usec >= latency_ms * 1000)
}

/// Records a command past a threshold. Commands a script runs are the
/// script's time (not logged), EXEC is logged as the commands it ran, and
/// the replication stream is not a client.
pub(super) fn record(ctx: &ExecCtx, spec: &CommandSpec, args: &[Bytes], usec: u64) {
    if ctx.session.in_script || ctx.session.replicated {
        return;
    }
    let stats = &ctx.node.stats;
    let now_secs = ctx.now_ms.div_euclid(1000);
    let slow = stats.slowlog_slower_than.load(Ordering::Relaxed);
    if slow >= 0 && usec >= slow as u64 && spec.name != "exec" {
        let max_len = ctx.node.settings.read().slowlog_max_len as usize;
        let handle = &ctx.session.handle;
        ctx.node.slowlog.lock().push(
            &redacted(args),
            usec,
            now_secs,
            handle.addr.to_string(),
            handle.name.lock().clone(),
            max_len,
        );
    }
    let latency_ms = stats.latency_threshold_ms.load(Ordering::Relaxed);
    if latency_ms > 0 && usec >= latency_ms * 1000 {
        let event = if spec.has(FAST) {
            "fast-command"
        } else {
            "command"
        };
        ctx.node.latency.lock().add(event, usec / 1000, now_secs);
    }
}

fn wrong_arity(container: &str, sub: &str) -> Frame {
    Frame::error_owned(format!(
        "ERR wrong number of arguments for '{container}|{sub}' command"
    ))
}

fn slowlog(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let sub = text(&args[1]).to_ascii_lowercase();
    match (sub.as_str(), args.len()) {
        ("get", 2 | 3) => {
            let count = match args.get(2) {
                None => Some(10),
                Some(a) => match int(a) {
                    Ok(-1) => None,
                    Ok(n) if n >= 0 => Some(n as usize),
                    _ => {
                        return Err(Frame::error(
                            "ERR count should be greater than or equal to -1",
                        ))
                    }
                },
            };
            let log = ctx.node.slowlog.lock();
            Ok(Frame::Array(
                log.newest(count)
                    .map(|e| {
                        Frame::Array(vec![
                            Frame::Integer(e.id as i64),
                            Frame::Integer(e.unix_secs),
                            Frame::Integer(e.usec as i64),
                            Frame::Array(e.args.iter().cloned().map(Frame::Bulk).collect()),
                            Frame::bulk(e.peer.clone()),
                            Frame::bulk(e.client_name.clone()),
                        ])
                    })
                    .collect(),
            ))
        }
        ("len", 2) => Ok(Frame::Integer(ctx.node.slowlog.lock().len() as i64)),
        ("reset", 2) => {
            ctx.node.slowlog.lock().reset();
            Ok(Frame::ok())
        }
        ("help", 2) => Ok(help(&[
            "SLOWLOG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "GET [<count>]",
            "    Return top <count> entries from the slowlog (default: 10, -1 mean all).",
            "    Entries are made of:",
            "    id, timestamp, time in microseconds, arguments array, client IP and port,",
            "    client name",
            "LEN",
            "    Return the length of the slowlog.",
            "RESET",
            "    Reset the slowlog.",
            "HELP",
            "    Print this help.",
        ])),
        ("get" | "len" | "reset" | "help", _) => Err(wrong_arity("slowlog", &sub)),
        _ => Err(unknown_subcommand(&args[1], "SLOWLOG")),
    }
}

fn latency(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let sub = text(&args[1]).to_ascii_lowercase();
    let n = args.len();
    match sub.as_str() {
        "latest" if n == 2 => {
            let m = ctx.node.latency.lock();
            Ok(Frame::Array(
                m.events()
                    .filter_map(|(name, h)| {
                        let (time, ms) = *h.samples.back()?;
                        Some(Frame::Array(vec![
                            Frame::bulk(name),
                            Frame::Integer(time),
                            Frame::Integer(ms as i64),
                            Frame::Integer(h.max_ms as i64),
                        ]))
                    })
                    .collect(),
            ))
        }
        "history" if n == 3 => {
            let m = ctx.node.latency.lock();
            let samples = m
                .history(&text(&args[2]))
                .map(|h| {
                    h.samples
                        .iter()
                        .map(|&(t, ms)| {
                            Frame::Array(vec![Frame::Integer(t), Frame::Integer(ms as i64)])
                        })
                        .collect()
                })
                .unwrap_or_default();
            Ok(Frame::Array(samples))
        }
        "reset" => {
            let names: Vec<String> = args[2..].iter().map(text).collect();
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            Ok(Frame::Integer(ctx.node.latency.lock().reset(&names) as i64))
        }
        "graph" if n == 3 => {
            let name = text(&args[2]);
            let m = ctx.node.latency.lock();
            match m.history(&name).filter(|h| !h.samples.is_empty()) {
                Some(h) => Ok(Frame::Verbatim(graph(&name, h, ctx.now_ms / 1000))),
                None => Err(Frame::error_owned(format!(
                    "ERR No samples available for event '{name}'"
                ))),
            }
        }
        "doctor" if n == 2 => Ok(Frame::Verbatim(doctor(ctx))),
        "histogram" => Ok(histogram(ctx, &args[2..])),
        "help" if n == 2 => Ok(help(&[
            "LATENCY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "DOCTOR",
            "    Return a human readable latency analysis report.",
            "GRAPH <event>",
            "    Return an ASCII latency graph for the <event> class.",
            "HISTORY <event>",
            "    Return time-latency samples for the <event> class.",
            "LATEST",
            "    Return the latest latency samples for all events.",
            "RESET [<event> ...]",
            "    Reset latency data of one or more <event> classes.",
            "    (default: reset all data for all event classes)",
            "HISTOGRAM [COMMAND ...]",
            "    Return a cumulative distribution of latencies in the format of a histogram for the specified command names.",
            "    If no commands are specified then all histograms are replied.",
            "HELP",
            "    Print this help.",
        ])),
        "latest" | "history" | "graph" | "doctor" | "help" => Err(wrong_arity("latency", &sub)),
        _ => Err(unknown_subcommand(&args[1], "LATENCY")),
    }
}

/// LATENCY HISTOGRAM: per command, its calls and the cumulative count of
/// calls at or under each power of two of microseconds.
fn histogram(ctx: &ExecCtx, names: &[Bytes]) -> Frame {
    let wanted: Vec<String> = names.iter().map(|n| text(n).to_ascii_lowercase()).collect();
    let entries = ctx
        .cmdstats
        .commands()
        .into_iter()
        .filter(|(name, s)| {
            s.calls > 0
                && (wanted.is_empty()
                    || wanted.iter().any(|w| {
                        w == name
                            || (name.starts_with(w.as_str()) && name[w.len()..].starts_with('|'))
                    }))
        })
        .map(|(name, s)| {
            let buckets = s
                .latency
                .log2_cumulative()
                .into_iter()
                .map(|(bound, count)| (Frame::Integer(bound as i64), Frame::Integer(count as i64)))
                .collect();
            (
                Frame::bulk(name),
                Frame::Map(vec![
                    (Frame::bulk("calls"), Frame::Integer(s.calls as i64)),
                    (Frame::bulk("histogram_usec"), Frame::Map(buckets)),
                ]),
            )
        })
        .collect();
    Frame::Map(entries)
}

/// An ASCII chart of an event's samples, newest on the right, one column
/// per sample (as LATENCY GRAPH).
fn graph(name: &str, h: &crate::node::slowlog::EventHistory, now_secs: i64) -> String {
    const ROWS: u64 = 8;
    let high = h.samples.iter().map(|s| s.1).max().unwrap_or(0);
    let low = h.samples.iter().map(|s| s.1).min().unwrap_or(0);
    let mut out = format!(
        "{name} - high {high} ms, low {low} ms (all time high {} ms)\n",
        h.max_ms
    );
    out.push_str(&"-".repeat(80));
    out.push('\n');
    let span = (high - low).max(1);
    for row in (1..=ROWS).rev() {
        for &(_, ms) in &h.samples {
            let level = ((ms - low) * ROWS).div_ceil(span).max(1);
            out.push(if level >= row { '#' } else { ' ' });
        }
        out.push('\n');
    }
    // Age of each sample, in the largest unit that fits one character.
    for &(t, _) in &h.samples {
        let age = (now_secs - t).max(0);
        let c = match age {
            0..=9 => char::from(b'0' + age as u8),
            10..=59 => 's',
            60..=3599 => 'm',
            _ => 'h',
        };
        out.push(c);
    }
    out.push('\n');
    out
}

/// LATENCY DOCTOR: each event's figures and what usually causes them.
fn doctor(ctx: &ExecCtx) -> String {
    let m = ctx.node.latency.lock();
    let threshold = ctx.node.stats.latency_threshold_ms.load(Ordering::Relaxed);
    let mut out = String::new();
    if threshold == 0 {
        out.push_str("Latency monitoring is disabled in this instance: set latency-monitor-threshold to the number of milliseconds above which an event counts as a spike (CONFIG SET latency-monitor-threshold <ms>).\n");
        return out;
    }
    let events: Vec<_> = m.events().filter(|(_, h)| !h.samples.is_empty()).collect();
    if events.is_empty() {
        let _ = writeln!(
            out,
            "No latency spikes of {threshold} ms or more were observed in this instance."
        );
        return out;
    }
    let _ = writeln!(
        out,
        "Latency spikes of {threshold} ms or more were observed for {} event(s):\n",
        events.len()
    );
    for (i, (name, h)) in events.iter().enumerate() {
        let n = h.samples.len() as u64;
        let avg = h.samples.iter().map(|s| s.1).sum::<u64>() / n.max(1);
        let first = h.samples.front().map_or(0, |s| s.0);
        let last = h.samples.back().map_or(0, |s| s.0);
        let _ = writeln!(
            out,
            "{}. {name}: {n} latency spikes (average {avg}ms, mean deviation from it aside) over {} seconds; worst all time event {}ms.",
            i + 1,
            last - first,
            h.max_ms
        );
    }
    out.push_str("\nI have a few advices for you:\n\n");
    for (name, _) in &events {
        let advice = match *name {
            "command" => "- Check SLOWLOG GET for the slow commands: O(N) commands on big keys (KEYS, SMEMBERS, LRANGE 0 -1, SORT, big DEL) and long scripts block every client.",
            "fast-command" => "- Fast commands were slow: the host is probably overloaded or swapping (check CPU steal and free memory).",
            "expire-cycle" => "- Many keys expiring at the same time make the expiry cycle long: spread the TTLs with some randomness.",
            "eviction-cycle" => "- Eviction at maxmemory took long: big keys are costly to free, and a limit far below the working set evicts constantly.",
            "fork" => "- Copying the dataset's index for a snapshot took long: it grows with the number of keys.",
            _ => "- Log fsyncs were slow: the disk is slow or busy (consider appendfsync everysec).",
        };
        let _ = writeln!(out, "{advice}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<Bytes> {
        v.iter().map(|s| Bytes::from(s.to_string())).collect()
    }

    fn shown(v: &[&str]) -> Vec<String> {
        redacted(&args(v))
            .iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect()
    }

    #[test]
    fn secrets_are_redacted_as_redis() {
        assert_eq!(
            shown(&["acl", "setuser", "u", "+get", ">pw"]),
            ["acl", "setuser", "(redacted)", "(redacted)", "(redacted)"]
        );
        assert_eq!(
            shown(&["config", "set", "masterauth", "x", "maxmemory", "1"]),
            [
                "config",
                "set",
                "masterauth",
                "(redacted)",
                "maxmemory",
                "1"
            ]
        );
        assert_eq!(
            shown(&["AUTH", "u", "p"]),
            ["AUTH", "(redacted)", "(redacted)"]
        );
        assert_eq!(
            shown(&["migrate", "h", "1", "key", "9", "5000", "AUTH2", "u", "p"]),
            [
                "migrate",
                "h",
                "1",
                "key",
                "9",
                "5000",
                "AUTH2",
                "(redacted)",
                "(redacted)"
            ]
        );
        assert_eq!(
            shown(&["hello", "3", "AUTH", "u", "p", "SETNAME", "n"]),
            [
                "hello",
                "3",
                "AUTH",
                "(redacted)",
                "(redacted)",
                "SETNAME",
                "n"
            ]
        );
        assert_eq!(shown(&["get", "k"]), ["get", "k"]);
    }
}
