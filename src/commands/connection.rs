//! Connection commands: authentication, protocol negotiation, database
//! selection and CLIENT introspection.

use super::args::*;
use super::flags::*;
use super::keys::unknown_subcommand;
use super::session::ReplyMode;
use super::{CmdResult, CommandSpec, ExecCtx};
use crate::resp::{Frame, Protocol};
use bytes::Bytes;
use std::sync::atomic::Ordering;

const G: &str = "connection";

pub(super) static COMMANDS: &[CommandSpec] = &[
    spec!(
        "auth",
        -2,
        NOSCRIPT | LOADING | STALE | FAST | NO_AUTH,
        "Authenticates the connection.",
        "[username] password",
        auth
    ),
    spec!(
        "hello",
        -1,
        NOSCRIPT | LOADING | STALE | FAST | NO_AUTH,
        "Handshakes with the Redis server.",
        "[protover [AUTH username password] [SETNAME clientname]]",
        hello
    ),
    spec!(
        "ping",
        -1,
        FAST | SUBSCRIBED_OK,
        "Returns the server's liveliness response.",
        "[message]",
        ping
    ),
    spec!(
        "echo",
        2,
        FAST | STALE | LOADING,
        "Returns the given string.",
        "message",
        echo
    ),
    spec!(
        "quit",
        -1,
        NOSCRIPT | LOADING | STALE | FAST | NO_AUTH | SUBSCRIBED_OK,
        "Closes the connection.",
        "",
        quit
    ),
    spec!(
        "reset",
        1,
        NOSCRIPT | LOADING | STALE | FAST | NO_AUTH | SUBSCRIBED_OK,
        "Resets the connection.",
        "",
        reset
    ),
    spec!(
        "select",
        2,
        LOADING | STALE | FAST,
        "Changes the selected database.",
        "index",
        select
    ),
    spec!(
        "client",
        -2,
        NOSCRIPT | LOADING | STALE,
        "A container for client connection commands.",
        "subcommand [arguments ...]",
        client
    ),
];

fn auth(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    if args.len() > 3 {
        return Err(ERR_SYNTAX);
    }
    if args.len() == 2 && !super::acl::new_clients_need_auth(ctx.node) {
        return Err(Frame::error("ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?"));
    }
    let (user, pass) = if args.len() == 3 {
        (text(&args[1]), &args[2])
    } else {
        ("default".to_string(), &args[1])
    };
    super::acl::authenticate(ctx, &user, pass)?;
    Ok(Frame::ok())
}

fn hello(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let mut proto = ctx.session.proto;
    let mut i = 1;
    if args.len() > 1 {
        let v = parse_i64(&args[1]).ok_or(Frame::error(
            "ERR Protocol version is not an integer or out of range",
        ))?;
        proto = match v {
            2 => Protocol::Resp2,
            3 => Protocol::Resp3,
            _ => return Err(Frame::error("NOPROTO unsupported protocol version")),
        };
        i = 2;
    }
    let mut name = None;
    while i < args.len() {
        if is(&args[i], "auth") && i + 2 < args.len() {
            super::acl::authenticate(ctx, &text(&args[i + 1]), &args[i + 2])?;
            i += 3;
        } else if is(&args[i], "setname") && i + 1 < args.len() {
            validate_name(&args[i + 1])?;
            name = Some(text(&args[i + 1]));
            i += 2;
        } else {
            return Err(Frame::error_owned(format!(
                "ERR Syntax error in HELLO option '{}'",
                text(&args[i])
            )));
        }
    }
    if !ctx.session.authenticated {
        return Err(Frame::error("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time"));
    }
    if let Some(name) = name {
        *ctx.session.handle.name.lock() = name;
    }
    ctx.session.proto = proto;
    ctx.session.handle.resp.store(
        if proto == Protocol::Resp3 { 3 } else { 2 },
        Ordering::Relaxed,
    );
    let role = if ctx.node.repl.is_replica() {
        "replica"
    } else {
        "master"
    };
    Ok(Frame::Map(vec![
        (Frame::bulk("server"), Frame::bulk("redis")),
        (
            Frame::bulk("version"),
            Frame::bulk(crate::REDIS_COMPAT_VERSION),
        ),
        (
            Frame::bulk("proto"),
            Frame::Integer(if proto == Protocol::Resp3 { 3 } else { 2 }),
        ),
        (Frame::bulk("id"), Frame::Integer(ctx.session.id() as i64)),
        (Frame::bulk("mode"), Frame::bulk("standalone")),
        (Frame::bulk("role"), Frame::bulk(role)),
        (Frame::bulk("modules"), Frame::Array(vec![])),
    ]))
}

fn ping(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    if args.len() > 2 {
        return Err(super::wrong_arity("ping"));
    }
    if ctx.session.in_subscribed_context() {
        let msg = args.get(1).cloned().unwrap_or_default();
        return Ok(Frame::Array(vec![Frame::bulk("pong"), Frame::Bulk(msg)]));
    }
    Ok(match args.get(1) {
        Some(msg) => Frame::Bulk(msg.clone()),
        None => Frame::simple("PONG"),
    })
}

fn echo(_ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    Ok(Frame::Bulk(args[1].clone()))
}

fn quit(ctx: &mut ExecCtx, _args: &[Bytes]) -> CmdResult {
    ctx.session.close_after_reply = true;
    Ok(Frame::ok())
}

fn reset(ctx: &mut ExecCtx, _args: &[Bytes]) -> CmdResult {
    ctx.session.multi = None;
    super::tx::unwatch_all(ctx.keyspace, ctx.session);
    ctx.pubsub
        .remove_client(ctx.session.id(), &mut ctx.session.subscriber);
    ctx.session.set_subscriptions(0);
    ctx.session.select(0);
    ctx.session.proto = Protocol::Resp2;
    ctx.session.handle.resp.store(2, Ordering::Relaxed);
    ctx.session.reply_mode = ReplyMode::On;
    ctx.session.no_touch = false;
    ctx.session.handle.name.lock().clear();
    ctx.session.user_name = "default".into();
    ctx.session.user = None;
    ctx.session.authenticated = !super::acl::new_clients_need_auth(ctx.node);
    Ok(Frame::simple("RESET"))
}

fn select(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let db = super::keys::parse_db_index(&args[1])?;
    ctx.session.select(db);
    Ok(Frame::ok())
}

fn validate_name(name: &[u8]) -> Result<(), Frame> {
    if name.iter().any(|&c| !(b'!'..=b'~').contains(&c)) {
        return Err(Frame::error(
            "ERR Client names cannot contain spaces, newlines or special characters.",
        ));
    }
    Ok(())
}

fn client(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let sub = &args[1];
    let n = args.len();
    let now = ctx.now_ms;
    if is(sub, "id") && n == 2 {
        Ok(Frame::Integer(ctx.session.id() as i64))
    } else if is(sub, "setname") && n == 3 {
        validate_name(&args[2])?;
        *ctx.session.handle.name.lock() = text(&args[2]);
        Ok(Frame::ok())
    } else if is(sub, "getname") && n == 2 {
        let name = ctx.session.handle.name.lock().clone();
        Ok(if name.is_empty() {
            Frame::Null
        } else {
            Frame::bulk(name)
        })
    } else if is(sub, "info") && n == 2 {
        Ok(Frame::Verbatim(format!(
            "{}\n",
            ctx.session.handle.info_line(now)
        )))
    } else if is(sub, "list") {
        let mut ids: Option<Vec<u64>> = None;
        let mut kind = None;
        let mut i = 2;
        while i < n {
            if is(&args[i], "type") && i + 1 < n {
                kind = Some(ClientType::parse(&args[i + 1])?);
                i += 2;
            } else if is(&args[i], "id") && i + 1 < n {
                let mut list = Vec::new();
                for a in &args[i + 1..] {
                    list.push(uint(a, Frame::error("ERR Invalid client ID"))?);
                }
                ids = Some(list);
                i = n;
            } else {
                return Err(ERR_SYNTAX);
            }
        }
        let mut out = String::new();
        for c in ctx.node.clients.all() {
            if ids.as_ref().is_some_and(|ids| !ids.contains(&c.id))
                || kind.is_some_and(|k| !k.matches(&c))
            {
                continue;
            }
            out.push_str(&c.info_line(now));
            out.push('\n');
        }
        Ok(Frame::Verbatim(out))
    } else if is(sub, "kill") && n >= 3 {
        client_kill(ctx, &args[2..])
    } else if is(sub, "unblock") && (n == 3 || n == 4) {
        let id = parse_i64(&args[2]).ok_or(ERR_NOT_INT)?;
        let error = match args.get(3) {
            None => false,
            Some(a) if is(a, "timeout") => false,
            Some(a) if is(a, "error") => true,
            Some(_) => {
                return Err(Frame::error(
                    "ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR",
                ))
            }
        };
        // A client waiting on keys is answered as if its wait ended (with
        // the timeout reply, or an UNBLOCKED error).
        Ok(Frame::Integer(match ctx.blocking.take_waiter(id as u64) {
            Some(waiter) => {
                let reply = if error {
                    Frame::error("UNBLOCKED client unblocked via CLIENT UNBLOCK")
                } else {
                    waiter.op.timeout_reply()
                };
                let _ = waiter.reply.send(reply);
                1
            }
            None => 0,
        }))
    } else if is(sub, "no-touch") && n == 3 {
        if is(&args[2], "on") || is(&args[2], "off") {
            ctx.session.no_touch = is(&args[2], "on");
            Ok(Frame::ok())
        } else {
            Err(ERR_SYNTAX)
        }
    } else if is(sub, "no-evict") && n == 3 {
        // There is no client eviction (maxmemory-clients): every client
        // is already exempt.
        if is(&args[2], "on") || is(&args[2], "off") {
            Ok(Frame::ok())
        } else {
            Err(ERR_SYNTAX)
        }
    } else if is(sub, "reply") && n == 3 {
        let mode = if is(&args[2], "on") {
            ReplyMode::On
        } else if is(&args[2], "off") {
            ReplyMode::Off
        } else if is(&args[2], "skip") {
            ReplyMode::Skip
        } else {
            return Err(ERR_SYNTAX);
        };
        ctx.session.reply_mode = mode;
        Ok(if mode == ReplyMode::On {
            Frame::ok()
        } else {
            Frame::NoReply
        })
    } else if is(sub, "setinfo") && n == 4 {
        let value = text(&args[3]);
        if value.contains([' ', '\n']) {
            return Err(Frame::error_owned(format!(
                "ERR {} cannot contain spaces, newlines or special characters.",
                text(&args[2]).to_ascii_lowercase()
            )));
        }
        if is(&args[2], "lib-name") {
            *ctx.session.handle.lib_name.lock() = value;
        } else if is(&args[2], "lib-ver") {
            *ctx.session.handle.lib_ver.lock() = value;
        } else {
            return Err(Frame::error_owned(format!(
                "ERR Unrecognized option '{}'",
                text(&args[2])
            )));
        }
        Ok(Frame::ok())
    } else if is(sub, "help") && n == 2 {
        let lines = [
            "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "GETNAME",
            "    Return the name of the current connection.",
            "ID",
            "    Return the ID of the current connection.",
            "INFO",
            "    Return information about the current client connection.",
            "KILL <ip:port>",
            "    Kill connection made from <ip:port>.",
            "KILL <option> <value> [<option> <value> [...]]",
            "    Kill connections. Options are: ID, ADDR, LADDR, SKIPME.",
            "LIST [options ...]",
            "    Return information about client connections. Options: TYPE, ID.",
            "NO-EVICT (ON|OFF)",
            "    Accepted for compatibility.",
            "REPLY (ON|OFF|SKIP)",
            "    Control the replies sent to the current connection.",
            "SETNAME <name>",
            "    Assign the name <name> to the current connection.",
            "SETINFO <option> <value>",
            "    Set client meta attr. Options are: LIB-NAME, LIB-VER.",
            "HELP",
            "    Print this help.",
        ];
        Ok(Frame::Array(
            lines.iter().map(|l| Frame::simple(l)).collect(),
        ))
    } else {
        Err(unknown_subcommand(sub, "CLIENT"))
    }
}

fn client_kill(ctx: &mut ExecCtx, opts: &[Bytes]) -> CmdResult {
    let me = ctx.session.id();
    let clients = ctx.node.clients.all();
    if opts.len() == 1 {
        // Old form: CLIENT KILL ip:port
        let addr = text(&opts[0]);
        let Some(c) = clients.iter().find(|c| c.addr.to_string() == addr) else {
            return Err(Frame::error("ERR No such client"));
        };
        if c.id == me {
            ctx.session.close_after_reply = true;
        } else {
            c.kill();
        }
        return Ok(Frame::ok());
    }
    if !opts.len().is_multiple_of(2) {
        return Err(ERR_SYNTAX);
    }
    let (mut id, mut addr, mut laddr, mut skipme) = (None, None, None, true);
    let (mut kind, mut maxage) = (None, None);
    for pair in opts.chunks(2) {
        let value = text(&pair[1]);
        if is(&pair[0], "id") {
            id = Some(uint(
                &pair[1],
                Frame::error("ERR client-id should be greater than 0"),
            )?);
        } else if is(&pair[0], "addr") {
            addr = Some(value);
        } else if is(&pair[0], "laddr") {
            laddr = Some(value);
        } else if is(&pair[0], "skipme") {
            skipme = match value.to_ascii_lowercase().as_str() {
                "yes" => true,
                "no" => false,
                _ => return Err(ERR_SYNTAX),
            };
        } else if is(&pair[0], "type") {
            kind = Some(ClientType::parse(&pair[1])?);
        } else if is(&pair[0], "maxage") {
            maxage = Some(uint(&pair[1], ERR_SYNTAX)?);
        } else if is(&pair[0], "user") {
            // Every client is the default user (no ACL users yet).
            if value != "default" {
                return Err(Frame::error_owned(format!("ERR No such user '{value}'")));
            }
        } else {
            return Err(ERR_SYNTAX);
        }
    }
    let mut killed = 0;
    // Replication links are the "replica" and "master" clients here.
    if addr.is_none() && laddr.is_none() && id.is_none() && maxage.is_none() {
        match kind {
            Some(ClientType::Replica) => {
                for r in ctx.node.repl.replicas.lock().replicas.values() {
                    r.kill.notify_one();
                    killed += 1;
                }
                return Ok(Frame::Integer(killed));
            }
            Some(ClientType::Master) => {
                if ctx.node.repl.link_up() {
                    ctx.node.repl.kill_link.notify_waiters();
                    killed += 1;
                }
                return Ok(Frame::Integer(killed));
            }
            _ => {}
        }
    }
    for c in clients {
        if id.is_some_and(|id| id != c.id)
            || addr.as_ref().is_some_and(|a| *a != c.addr.to_string())
            || laddr.as_ref().is_some_and(|a| *a != c.laddr.to_string())
            || kind.is_some_and(|k| !k.matches(&c))
            || maxage.is_some_and(|age| c.created.elapsed().as_secs() < age)
        {
            continue;
        }
        if c.id == me {
            if skipme {
                continue;
            }
            ctx.session.close_after_reply = true;
        } else {
            c.kill();
        }
        killed += 1;
    }
    Ok(Frame::Integer(killed))
}

/// The client classes of CLIENT LIST/KILL TYPE. Client connections are
/// `normal` or, while subscribed, `pubsub`; the replication links are the
/// `replica` and `master` ones (killed through the link, never listed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientType {
    Normal,
    Pubsub,
    Replica,
    Master,
}

impl ClientType {
    fn parse(arg: &Bytes) -> Result<ClientType, Frame> {
        Ok(match text(arg).to_ascii_lowercase().as_str() {
            "normal" => ClientType::Normal,
            "pubsub" => ClientType::Pubsub,
            "replica" | "slave" => ClientType::Replica,
            "master" => ClientType::Master,
            _ => {
                return Err(Frame::error_owned(format!(
                    "ERR Unknown client type '{}'",
                    text(arg)
                )))
            }
        })
    }

    fn matches(self, client: &crate::node::clients::ClientHandle) -> bool {
        let subscribed = client
            .subscriptions
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0;
        match self {
            ClientType::Normal => !subscribed,
            ClientType::Pubsub => subscribed,
            ClientType::Replica | ClientType::Master => false,
        }
    }
}
