//! MIGRATE: moves keys to another Redis-protocol server (Redis, or
//! another Quire) as DUMP payloads restored there, then deletes them here
//! unless COPY. As in Redis the transfer is synchronous, bounded by the
//! command's timeout; the deletions replicate as DEL.

use super::args::*;
use super::flags::*;
use super::{CmdResult, CommandSpec, ExecCtx};
use crate::resp::Frame;
use bytes::Bytes;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

const G: &str = "generic";

pub(super) static COMMANDS: &[CommandSpec] = &[spec!(
    "migrate",
    -6,
    WRITE | MOVABLE_KEYS,
    (3, 3, 1),
    "Atomically transfers a key from one Redis instance to another.",
    "host port key|\"\" destination-db timeout [COPY] [REPLACE] [AUTH password | AUTH2 username password] [KEYS key [key ...]]",
    migrate
)];

struct Options {
    copy: bool,
    replace: bool,
    auth: Vec<Bytes>,
    keys: Vec<Bytes>,
}

fn parse(args: &[Bytes]) -> Result<Options, Frame> {
    let mut o = Options {
        copy: false,
        replace: false,
        auth: Vec::new(),
        keys: Vec::new(),
    };
    let mut i = 6;
    while i < args.len() {
        let left = args.len() - i - 1;
        if is(&args[i], "copy") {
            o.copy = true;
        } else if is(&args[i], "replace") {
            o.replace = true;
        } else if is(&args[i], "auth") && left >= 1 {
            o.auth = vec![args[i + 1].clone()];
            i += 1;
        } else if is(&args[i], "auth2") && left >= 2 {
            o.auth = vec![args[i + 1].clone(), args[i + 2].clone()];
            i += 2;
        } else if is(&args[i], "keys") {
            if !args[3].is_empty() {
                return Err(Frame::error("ERR When using MIGRATE KEYS option, the key argument must be set to the empty string"));
            }
            o.keys = args[i + 1..].to_vec();
            break;
        } else {
            return Err(ERR_SYNTAX);
        }
        i += 1;
    }
    if o.keys.is_empty() {
        o.keys = vec![args[3].clone()];
    }
    Ok(o)
}

fn encode(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// Reads one status or error line of the target's replies.
fn reply_line(reader: &mut BufReader<TcpStream>) -> Result<Result<(), String>, Frame> {
    let mut line = String::new();
    match reader.read_line(&mut line) {
        Ok(n) if n > 0 => {}
        _ => {
            return Err(Frame::error(
                "IOERR error or timeout reading to target instance",
            ))
        }
    }
    let line = line.trim_end();
    Ok(match line.strip_prefix('-') {
        Some(err) => Err(err.to_string()),
        None => Ok(()),
    })
}

fn migrate(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let o = parse(args)?;
    let port = int(&args[2])?;
    let db = int(&args[4])?;
    let timeout = match int(&args[5])? {
        t if t <= 0 => 1000,
        t => t,
    };
    let now = ctx.now_ms;
    // The keys that exist, with their payload and remaining TTL.
    let mut found = Vec::new();
    for key in &o.keys {
        if let Some(v) = ctx.db().peek(key, now) {
            let payload = crate::keyspace::rdb::dump(v);
            let ttl = ctx.db().expire_at(key).map_or(0, |at| (at - now).max(1));
            found.push((key.clone(), payload, ttl));
        }
    }
    if found.is_empty() {
        return Ok(Frame::simple("NOKEY"));
    }
    let timeout = Duration::from_millis(timeout as u64);
    let host = text(&args[1]);
    let connect_error = || Frame::error("IOERR error or timeout connecting to the client");
    let addr = (host.as_str(), port.clamp(0, 65535) as u16)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(connect_error)?;
    let stream = TcpStream::connect_timeout(&addr, timeout).map_err(|_| connect_error())?;
    let _ = stream.set_read_timeout(Some(timeout));
    let _ = stream.set_write_timeout(Some(timeout));
    let mut out = Vec::new();
    if !o.auth.is_empty() {
        let mut cmd: Vec<&[u8]> = vec![b"AUTH"];
        cmd.extend(o.auth.iter().map(|a| a.as_ref()));
        encode(&mut out, &cmd);
    }
    let db_text = db.to_string();
    encode(&mut out, &[b"SELECT", db_text.as_bytes()]);
    for (key, payload, ttl) in &found {
        let ttl = ttl.to_string();
        let mut cmd: Vec<&[u8]> = vec![b"RESTORE", key, ttl.as_bytes(), payload];
        if o.replace {
            cmd.push(b"REPLACE");
        }
        encode(&mut out, &cmd);
    }
    let mut writer = stream.try_clone().map_err(|_| connect_error())?;
    writer
        .write_all(&out)
        .map_err(|_| Frame::error("IOERR error or timeout writing to target instance"))?;
    let mut reader = BufReader::new(stream);
    let target_error =
        |e: String| Frame::error_owned(format!("ERR Target instance replied with error: {e}"));
    if !o.auth.is_empty() {
        reply_line(&mut reader)?.map_err(target_error)?;
    }
    reply_line(&mut reader)?.map_err(target_error)?;
    let mut first_error = None;
    let mut moved = Vec::new();
    for (key, _, _) in &found {
        match reply_line(&mut reader)? {
            Ok(()) => moved.push(key.clone()),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    if !o.copy && !moved.is_empty() {
        let mut del: Vec<Bytes> = vec![Bytes::from_static(b"DEL")];
        for key in &moved {
            ctx.db().remove(key);
            del.push(key.clone());
        }
        ctx.dirty(moved.len() as u64);
        ctx.propagate(&del);
    }
    match first_error {
        Some(e) => Err(target_error(e)),
        None => Ok(Frame::ok()),
    }
}
