//! ACL users at the command layer: the `ACL` command, the check every
//! command passes (`NOPERM` with Redis's texts), AUTH's password check,
//! and the command table as `crate::acl` sees it (ids and categories).
//!
//! The users live in `node::Shared` (not the dataset: ACLs are a node's
//! own, as in Redis, and do not replicate). A client holds its user and
//! looks it up again when the users' version moved, so ACL SETUSER acts on
//! connected clients at their next command.

use super::args::*;
use super::flags::*;
use super::{CmdResult, CommandSpec, ExecCtx};
use crate::acl::{category_bit, CommandTable, Denied, KeyAccess, User, Users, CATEGORIES};
use crate::node::Shared;
use crate::resp::Frame;
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};

const G: &str = "server";

pub(super) static COMMANDS: &[CommandSpec] = &[spec!(
    "acl",
    -2,
    NOSCRIPT | LOADING | STALE,
    "A container for Access List Control commands.",
    "subcommand [arg ...]",
    acl
)];

/// Commands with subcommands (rules may name `command|subcommand`).
const CONTAINERS: &[&str] = &[
    "acl", "client", "cluster", "command", "config", "debug", "function", "latency", "memory",
    "module", "object", "pubsub", "script", "slowlog", "xgroup", "xinfo",
];

/// Whether `name` is a container (its statistics go by subcommand).
pub(super) fn is_container(name: &str) -> bool {
    CONTAINERS.contains(&name)
}

/// Administrative commands (`@admin`); all of them are `@dangerous` too.
const ADMIN: &[&str] = &[
    "acl",
    "bgrewriteaof",
    "bgsave",
    "client",
    "cluster",
    "config",
    "debug",
    "failover",
    "lastsave",
    "latency",
    "module",
    "monitor",
    "pfdebug",
    "pfselftest",
    "psync",
    "replconf",
    "replicaof",
    "role",
    "save",
    "shutdown",
    "slaveof",
    "slowlog",
    "sync",
];

/// Dangerous but not administrative.
const DANGEROUS: &[&str] = &[
    "flushall",
    "flushdb",
    "info",
    "keys",
    "migrate",
    "restore",
    "restore-asking",
    "sort",
    "sort_ro",
    "swapdb",
];

/// The command table in name order, as ACL rules see it.
pub(crate) struct Table {
    specs: Vec<&'static CommandSpec>,
    ids: HashMap<&'static str, usize>,
    categories: Vec<u32>,
}

fn categories_of(spec: &CommandSpec) -> u32 {
    let bit = |name| category_bit(name).unwrap_or(0);
    let mut mask = 0;
    if spec.has(READONLY) {
        mask |= bit("read");
    }
    if spec.has(WRITE) {
        mask |= bit("write");
    }
    mask |= if spec.has(FAST) {
        bit("fast")
    } else {
        bit("slow")
    };
    if spec.has(BLOCKING) {
        mask |= bit("blocking");
    }
    mask |= match spec.group {
        "string" => bit("string"),
        "list" => bit("list"),
        "hash" => bit("hash"),
        "set" => bit("set"),
        "sorted-set" => bit("sortedset"),
        "stream" => bit("stream"),
        "bitmap" => bit("bitmap"),
        "hyperloglog" => bit("hyperloglog"),
        "geo" => bit("geo"),
        "pubsub" => bit("pubsub"),
        "scripting" => bit("scripting"),
        "transactions" => bit("transaction"),
        "connection" => bit("connection"),
        "generic" => bit("keyspace"),
        _ => 0,
    };
    if ADMIN.contains(&spec.name) {
        mask |= bit("admin") | bit("dangerous");
    }
    if DANGEROUS.contains(&spec.name) {
        mask |= bit("dangerous");
    }
    mask
}

impl Table {
    fn build() -> Table {
        let specs = super::all_commands();
        let ids = specs.iter().enumerate().map(|(i, s)| (s.name, i)).collect();
        let categories = specs.iter().map(|s| categories_of(s)).collect();
        Table {
            specs,
            ids,
            categories,
        }
    }
}

impl CommandTable for Table {
    fn count(&self) -> usize {
        self.specs.len()
    }
    fn id(&self, name: &str) -> Option<usize> {
        self.ids.get(name).copied()
    }
    fn categories(&self, id: usize) -> u32 {
        self.categories.get(id).copied().unwrap_or(0)
    }
    fn has_subcommands(&self, id: usize) -> bool {
        self.specs
            .get(id)
            .is_some_and(|s| CONTAINERS.contains(&s.name))
    }
}

pub(crate) fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(Table::build)
}

/// Reads the users (made on first use, the default user's password from
/// `requirepass`).
fn with_users<R>(node: &Shared, f: impl FnOnce(&Users) -> R) -> R {
    {
        let users = node.acl.read();
        if let Some(users) = users.as_ref() {
            return f(users);
        }
    }
    with_users_mut(node, |u| f(u))
}

fn with_users_mut<R>(node: &Shared, f: impl FnOnce(&mut Users) -> R) -> R {
    let mut guard = node.acl.write();
    let users = guard.get_or_insert_with(|| {
        let mut users = Users::new(table());
        users.set_default_password(&node.settings.read().requirepass, table());
        users
    });
    let result = f(users);
    node.acl_version.store(users.version(), Ordering::Release);
    result
}

/// CONFIG SET requirepass: the default user's password follows.
pub(crate) fn requirepass_changed(node: &Shared) {
    let password = node.settings.read().requirepass.clone();
    with_users_mut(node, |u| u.set_default_password(&password, table()));
}

/// Whether a new connection must authenticate (the default user has a
/// password or is off).
pub fn new_clients_need_auth(node: &Shared) -> bool {
    with_users(node, |u| {
        u.get("default").is_none_or(|d| !(d.enabled && d.nopass))
    })
}

/// Checks `user`'s password; Redis's single text for every failure.
pub(super) fn authenticate(ctx: &mut ExecCtx, user: &str, password: &[u8]) -> Result<(), Frame> {
    let found = with_users(ctx.node, |u| u.get(user));
    match found {
        Some(u) if u.password_ok(password) => {
            ctx.session.user_name = user.to_string();
            ctx.session.user = Some(u);
            ctx.session.acl_version = ctx.node.acl_version.load(Ordering::Acquire);
            ctx.session.authenticated = true;
            Ok(())
        }
        _ => {
            log_refusal(ctx, "auth", "AUTH".into(), user.to_string());
            Err(Frame::error(
                "WRONGPASS invalid username-password pair or user is disabled.",
            ))
        }
    }
}

/// The client's user, current with the users' version; None if it was
/// deleted (the client is then closed, as Redis disconnects it).
fn current_user(ctx: &mut ExecCtx) -> Option<Arc<User>> {
    let version = ctx.node.acl_version.load(Ordering::Acquire);
    if ctx.session.user.is_none() || ctx.session.acl_version != version {
        let name = ctx.session.user_name.clone();
        ctx.session.user = with_users(ctx.node, |u| u.get(&name));
        ctx.session.acl_version = ctx.node.acl_version.load(Ordering::Acquire);
    }
    ctx.session.user.clone()
}

/// Whether `user` may run `args` (Redis's ACLCheckAllUserCommandPerm).
pub(super) fn permitted(user: &User, spec: &CommandSpec, args: &[Bytes]) -> Result<(), Denied> {
    if user.unrestricted() || spec.has(NO_AUTH) {
        return Ok(());
    }
    let t = table();
    let Some(id) = t.id(spec.name) else {
        return Err(Denied::Command);
    };
    let sub = if t.has_subcommands(id) {
        args.get(1).map(|s| text(s).to_ascii_lowercase())
    } else {
        None
    };
    if !user.may_run(id, spec.name, sub.as_deref()) {
        return Err(Denied::Command);
    }
    let access = KeyAccess {
        read: !spec.has(WRITE) || spec.has(READONLY),
        write: spec.has(WRITE),
    };
    for i in spec.key_positions(args) {
        if !user.may_access_key(&args[i], access) {
            return Err(Denied::Key(i));
        }
    }
    let (channels, patterns): (&[Bytes], bool) = match spec.name {
        "publish" | "spublish" => (args.get(1..2).unwrap_or_default(), false),
        "subscribe" | "ssubscribe" => (&args[1..], false),
        "psubscribe" => (&args[1..], true),
        _ => (&[], false),
    };
    if let Some(i) = channels
        .iter()
        .position(|c| !user.may_access_channel(c, patterns))
    {
        return Err(Denied::Channel(i + 1));
    }
    Ok(())
}

/// The full name Redis gives a command in NOPERM (`config|set`).
fn full_name(spec: &CommandSpec, args: &[Bytes]) -> String {
    match args.get(1) {
        Some(sub) if CONTAINERS.contains(&spec.name) => {
            format!("{}|{}", spec.name, text(sub).to_ascii_lowercase())
        }
        _ => spec.name.to_string(),
    }
}

/// The check before a client's command runs.
pub(super) fn check(ctx: &mut ExecCtx, spec: &CommandSpec, args: &[Bytes]) -> Result<(), Frame> {
    if ctx.session.replicated {
        return Ok(());
    }
    let Some(user) = current_user(ctx) else {
        ctx.session.close_after_reply = true;
        return Err(Frame::error(
            "NOPERM this user has no permissions to run the command (it was deleted)",
        ));
    };
    permitted(&user, spec, args).map_err(|d| {
        log_denial(ctx, d, spec, args);
        match d {
            Denied::Command => Frame::error_owned(format!(
                "NOPERM this user has no permissions to run the '{}' command",
                full_name(spec, args)
            )),
            Denied::Key(_) => Frame::error(
                "NOPERM this user has no permissions to access one of the keys used as arguments",
            ),
            Denied::Channel(_) => Frame::error(
                "NOPERM this user has no permissions to access one of the channels used as arguments",
            ),
        }
    })
}

/// Adds a refusal to ACL LOG.
fn log_refusal(ctx: &ExecCtx, reason: &'static str, object: String, username: String) {
    let context = if ctx.session.in_script {
        "lua"
    } else if ctx.session.in_exec {
        "multi"
    } else {
        "toplevel"
    };
    let max_len = ctx.node.settings.read().acllog_max_len as usize;
    let entry = crate::acl::LogEntry {
        count: 1,
        reason,
        context,
        object,
        username,
        created_ms: ctx.now_ms,
        updated_ms: ctx.now_ms,
        client_info: ctx.session.handle.info_line(ctx.now_ms),
    };
    ctx.node.acl_log.lock().record(entry, max_len);
}

fn log_denial(ctx: &ExecCtx, denied: Denied, spec: &CommandSpec, args: &[Bytes]) {
    let (reason, object) = match denied {
        Denied::Command => ("command", full_name(spec, args)),
        Denied::Key(i) => ("key", text(&args[i])),
        Denied::Channel(i) => ("channel", text(&args[i])),
    };
    log_refusal(ctx, reason, object, ctx.session.user_name.clone());
}

/// What a script's call is refused with (Redis's script texts), if it is.
pub(super) fn script_denial(
    ctx: &mut ExecCtx,
    spec: &CommandSpec,
    args: &[Bytes],
) -> Option<String> {
    if ctx.session.replicated {
        return None;
    }
    let denied = current_user(ctx).map(|u| permitted(&u, spec, args));
    if let Some(Err(d)) = denied {
        log_denial(ctx, d, spec, args);
    }
    let reason = match denied {
        Some(Ok(())) => return None,
        None | Some(Err(Denied::Command)) => "can't run this command or subcommand",
        Some(Err(Denied::Key(_))) => {
            "can't access at least one of the keys mentioned in the command arguments"
        }
        Some(Err(Denied::Channel(_))) => "can't publish to the channel mentioned in the command",
    };
    Some(format!("NOPERM The user executing the script {reason}"))
}

/// `redis.acl_check_cmd`: whether the script's user may run `args`.
pub(super) fn user_may_run(ctx: &mut ExecCtx, spec: &CommandSpec, args: &[Bytes]) -> bool {
    current_user(ctx).is_some_and(|u| permitted(&u, spec, args).is_ok())
}

fn acl(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let sub = text(&args[1]).to_ascii_lowercase();
    let n = args.len();
    match sub.as_str() {
        "setuser" if n >= 3 => {
            let name = text(&args[2]);
            let rules: Vec<String> = args[3..].iter().map(text).collect();
            with_users_mut(ctx.node, |u| u.set_user(&name, &rules, table()))
                .map_err(|e| Frame::error_owned(format!("ERR {e}")))?;
            Ok(Frame::ok())
        }
        "deluser" if n >= 3 => {
            let names: Vec<String> = args[2..].iter().map(text).collect();
            if names.iter().any(|n| n == "default") {
                return Err(Frame::error("ERR The 'default' user cannot be removed"));
            }
            let removed = with_users_mut(ctx.node, |u| u.delete(&names));
            Ok(Frame::Integer(removed as i64))
        }
        "getuser" if n == 3 => {
            let name = text(&args[2]);
            let Some(u) = with_users(ctx.node, |users| users.get(&name)) else {
                return Ok(Frame::Null);
            };
            let mut flags = vec![Frame::bulk(if u.enabled { "on" } else { "off" })];
            if u.nopass {
                flags.push(Frame::bulk("nopass"));
            }
            Ok(Frame::Map(vec![
                (Frame::bulk("flags"), Frame::Array(flags)),
                (
                    Frame::bulk("passwords"),
                    Frame::Array(u.passwords().map(|p| Frame::bulk(p.to_string())).collect()),
                ),
                (Frame::bulk("commands"), Frame::bulk(u.describe_commands())),
                (Frame::bulk("keys"), Frame::bulk(u.describe_keys())),
                (Frame::bulk("channels"), Frame::bulk(u.describe_channels())),
                (Frame::bulk("selectors"), Frame::Array(Vec::new())),
            ]))
        }
        "list" if n == 2 => Ok(Frame::Array(with_users(ctx.node, |u| {
            u.iter().map(|u| Frame::bulk(u.describe())).collect()
        }))),
        "users" if n == 2 => Ok(Frame::Array(with_users(ctx.node, |u| {
            u.names().map(|n| Frame::bulk(n.to_string())).collect()
        }))),
        "whoami" if n == 2 => Ok(Frame::bulk(ctx.session.user_name.clone())),
        "cat" if n == 2 => Ok(Frame::Array(
            CATEGORIES.iter().map(|c| Frame::bulk(*c)).collect(),
        )),
        "cat" if n == 3 => {
            let Some(bit) = category_bit(&text(&args[2])) else {
                return Err(Frame::error_owned(format!(
                    "ERR Unknown category '{}'",
                    text(&args[2])
                )));
            };
            let t = table();
            Ok(Frame::Array(
                t.specs
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| t.categories(*i) & bit != 0)
                    .map(|(_, s)| Frame::bulk(s.name))
                    .collect(),
            ))
        }
        "log" if n <= 3 => {
            if let Some(arg) = args.get(2) {
                if is(arg, "reset") {
                    ctx.node.acl_log.lock().reset();
                    return Ok(Frame::ok());
                }
            }
            let count = match args.get(2) {
                None => 10,
                Some(a) => match int(a) {
                    Ok(n) if n >= 0 => n as usize,
                    _ => {
                        return Err(Frame::error(
                            "ERR value is out of range, must be positive",
                        ))
                    }
                },
            };
            let now = ctx.now_ms;
            let log = ctx.node.acl_log.lock();
            Ok(Frame::Array(
                log.newest(count)
                    .map(|e| {
                        let field = |k: &'static str, v: Frame| (Frame::bulk(k), v);
                        Frame::Map(vec![
                            field("count", Frame::Integer(e.count as i64)),
                            field("reason", Frame::bulk(e.reason)),
                            field("context", Frame::bulk(e.context)),
                            field("object", Frame::bulk(e.object.clone())),
                            field("username", Frame::bulk(e.username.clone())),
                            field(
                                "age-seconds",
                                Frame::Double((now - e.created_ms) as f64 / 1000.0),
                            ),
                            field("client-info", Frame::bulk(e.client_info.clone())),
                        ])
                    })
                    .collect(),
            ))
        }
        "genpass" if n <= 3 => {
            let bits = match args.get(2) {
                Some(b) => match parse_i64(b) {
                    Some(b) if (1..=4096).contains(&b) => b as usize,
                    _ => {
                        return Err(Frame::error(
                            "ERR ACL GENPASS argument must be the number of bits for the output password, a positive number up to 4096",
                        ))
                    }
                },
                None => 256,
            };
            let chars = bits.div_ceil(4);
            let mut bytes = vec![0u8; chars.div_ceil(2)];
            rand::Rng::fill(&mut rand::rng(), bytes.as_mut_slice());
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            Ok(Frame::bulk(hex[..chars].to_string()))
        }
        "dryrun" if n >= 4 => {
            let name = text(&args[2]);
            let Some(u) = with_users(ctx.node, |users| users.get(&name)) else {
                return Err(Frame::error_owned(format!("ERR User '{name}' not found")));
            };
            let command = &args[3..];
            let Some(spec) = super::lookup(&command[0]) else {
                return Err(Frame::error_owned(format!(
                    "ERR Command '{}' not found",
                    text(&command[0])
                )));
            };
            if !spec.arity_ok(command.len()) {
                return Err(Frame::error_owned(format!(
                    "ERR wrong number of arguments for '{}' command",
                    spec.name
                )));
            }
            Ok(match permitted(&u, spec, command) {
                Ok(()) => Frame::ok(),
                Err(Denied::Command) => Frame::bulk(format!(
                    "This user has no permissions to run the '{}' command",
                    full_name(spec, command)
                )),
                Err(Denied::Key(_)) => Frame::bulk(format!(
                    "This user has no permissions to access the '{}' key",
                    spec.key_positions(command)
                        .into_iter()
                        .map(|i| text(&command[i]))
                        .find(|k| !u.may_access_key(k.as_bytes(), KeyAccess { read: true, write: spec.has(WRITE) }))
                        .unwrap_or_default()
                )),
                Err(Denied::Channel(_)) => {
                    Frame::bulk("This user has no permissions to access one of the channels")
                }
            })
        }
        "help" if n == 2 => Ok(Frame::Array(
            [
                "ACL <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "CAT [<category>]",
                "    List all commands that belong to <category>, or all command categories",
                "    when no category is specified.",
                "DELUSER <username> [<username> ...]",
                "    Delete a list of users.",
                "DRYRUN <username> <command> [<arg> ...]",
                "    Returns whether the user can execute the given command without executing the command.",
                "GETUSER <username>",
                "    Get the user's details.",
                "GENPASS [<bits>]",
                "    Generate a secure 256-bit user password. The optional `bits` argument can",
                "    be used to specify a different size.",
                "LIST",
                "    Show users details in config file format.",
                "SETUSER <username> <attribute> [<attribute> ...]",
                "    Create or modify a user with the specified attributes.",
                "USERS",
                "    List all the registered usernames.",
                "WHOAMI",
                "    Return the current connection username.",
                "HELP",
                "    Prints this help.",
            ]
            .iter()
            .map(|l| Frame::simple(l))
            .collect(),
        )),
        _ => Err(super::keys::unknown_subcommand(&args[1], "ACL")),
    }
}
