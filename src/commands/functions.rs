//! Redis functions, as Redis 7.0 has them: libraries of Lua functions
//! loaded with `FUNCTION LOAD` (a `#!lua name=<lib>` first line, then code
//! that calls `redis.register_function`), called with `FCALL` and
//! `FCALL_RO`, listed, deleted, flushed, dumped and restored with the
//! rest of `FUNCTION`.
//!
//! The libraries' sources are data (`keyspace::Libraries`: snapshots,
//! full syncs and the SYNC RDB carry them); what they compile to lives in
//! an interpreter of their own (`node::scripts::FunctionEngine`), rebuilt
//! from the sources whenever they changed under it (a full sync, a
//! rewind, DEBUG RELOAD). `FUNCTION LOAD|DELETE|FLUSH|RESTORE` replicate
//! as themselves; what a function does replicates as its effects, as
//! EVAL's scripts do.

use super::args::*;
use super::flags::*;
use super::scripting::{new_lua, protection, run_script, Run};
use super::{CmdResult, CommandSpec, ExecCtx};
use crate::keyspace::Libraries;
use crate::node::script_state::Running;
use crate::node::scripts::{Function, FunctionEngine, ScriptFlags, Scripts};
use crate::resp::Frame;
use bytes::Bytes;
use mlua::{Lua, Table, Value as LuaValue};
use std::collections::BTreeMap;

const G: &str = "scripting";

pub(super) static COMMANDS: &[CommandSpec] = &[
    spec!(
        "fcall",
        -3,
        NOSCRIPT | STALE | MAY_REPLICATE | MOVABLE_KEYS,
        "Invokes a function.",
        "function numkeys [key [key ...]] [arg [arg ...]]",
        fcall
    ),
    spec!(
        "fcall_ro",
        -3,
        NOSCRIPT | STALE | READONLY | MOVABLE_KEYS,
        "Invokes a read-only function.",
        "function numkeys [key [key ...]] [arg [arg ...]]",
        fcall_ro
    ),
    spec!(
        "function",
        -2,
        NOSCRIPT | STALE | MAY_REPLICATE,
        "A container for function commands.",
        "subcommand [arg ...]",
        function
    ),
];

/// What `FUNCTION DELETE|FLUSH` are checked as (writes), and `LOAD` and
/// `RESTORE` (writes that grow memory), as Redis's subcommand table has
/// them; the container itself must also let `LIST` and `STATS` through.
static WRITE_SPEC: CommandSpec = spec!("function", -2, WRITE | NOSCRIPT, "", "", function);
static GROW_SPEC: CommandSpec = spec!("function", -2, WRITE | DENYOOM | NOSCRIPT, "", "", function);

/// How long a library's load may run (none for the stream, which must
/// apply what the primary accepted).
const LOAD_TIMEOUT_MS: i64 = 500;

const ENGINE: &str = "LUA";

const NAME_RULE: &str = "Library names can only contain letters, numbers, or underscores(_) and must be at least one character long";

/// A library's first line: `#!<engine> name=<name>`.
#[derive(Debug, PartialEq, Eq)]
struct Metadata<'a> {
    engine: String,
    name: String,
    /// The code from the first line's end (its newline included, so line
    /// numbers hold).
    code: &'a [u8],
}

fn metadata(source: &[u8]) -> Result<Metadata<'_>, String> {
    if !source.starts_with(b"#!") {
        return Err("Missing library metadata".into());
    }
    let Some(end) = source.iter().position(|b| *b == b'\n') else {
        return Err("Invalid library metadata".into());
    };
    let parts = match crate::resp::split_args(&source[..end]) {
        Ok(parts) if !parts.is_empty() => parts,
        _ => return Err("Invalid library metadata".into()),
    };
    let engine = String::from_utf8_lossy(parts[0].get(2..).unwrap_or_default()).into_owned();
    let mut name = None;
    for part in &parts[1..] {
        if part.len() >= 5 && part[..5].eq_ignore_ascii_case(b"name=") {
            if name.is_some() {
                return Err(
                    "Invalid metadata value, name argument was given multiple times".into(),
                );
            }
            name = Some(String::from_utf8_lossy(&part[5..]).into_owned());
            continue;
        }
        return Err(format!(
            "Invalid metadata value given: {}",
            String::from_utf8_lossy(part)
        ));
    }
    let Some(name) = name else {
        return Err("Library name was not given".into());
    };
    Ok(Metadata {
        engine,
        name,
        code: &source[end..],
    })
}

/// Library and function names: letters, digits and underscores.
fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The functions a load registered so far (the interpreter's app data
/// while a library loads; its absence means no load runs).
#[derive(Default)]
struct Registrations(BTreeMap<String, Registered>);

struct Registered {
    name: String,
    description: Option<String>,
    flags: ScriptFlags,
    callback: mlua::Function,
}

/// An error raised from Rust during a load: a Redis error text.
fn load_error(text: &str) -> mlua::Error {
    mlua::Error::runtime(format!("\u{1}ERR {text}\u{1}"))
}

/// `redis.register_function(name, callback)` or
/// `redis.register_function{function_name=, callback=, description=, flags=}`.
fn register_function(lua: &Lua, args: mlua::MultiValue) -> mlua::Result<()> {
    if lua.app_data_ref::<Registrations>().is_none() {
        return Err(load_error(
            "redis.register_function can only be called on FUNCTION LOAD command",
        ));
    }
    let args: Vec<LuaValue> = args.into_iter().collect();
    let registered = match args.as_slice() {
        [named] => named_registration(named)?,
        [name, callback] => {
            let name = match name {
                LuaValue::String(s) => s.to_string_lossy().to_string(),
                LuaValue::Integer(_) | LuaValue::Number(_) => name.to_string()?,
                _ => {
                    return Err(load_error(
                        "first argument to redis.register_function must be a string",
                    ))
                }
            };
            let LuaValue::Function(callback) = callback else {
                return Err(load_error(
                    "second argument to redis.register_function must be a function",
                ));
            };
            Registered {
                name,
                description: None,
                flags: ScriptFlags::default(),
                callback: callback.clone(),
            }
        }
        _ => {
            return Err(load_error(
                "wrong number of arguments to redis.register_function",
            ))
        }
    };
    if !valid_name(&registered.name) {
        return Err(load_error(NAME_RULE));
    }
    let mut regs = lua.app_data_mut::<Registrations>().ok_or_else(|| {
        load_error("redis.register_function can only be called on FUNCTION LOAD command")
    })?;
    if regs.0.contains_key(&registered.name) {
        return Err(load_error("Function already exists in the library"));
    }
    regs.0.insert(registered.name.clone(), registered);
    Ok(())
}

fn lua_string(v: &LuaValue) -> Option<String> {
    match v {
        LuaValue::String(s) => Some(s.to_string_lossy().to_string()),
        LuaValue::Integer(_) | LuaValue::Number(_) => v.to_string().ok(),
        _ => None,
    }
}

fn named_registration(named: &LuaValue) -> mlua::Result<Registered> {
    let LuaValue::Table(t) = named else {
        return Err(load_error("calling redis.register_function with a single argument is only applicable to Lua table (representing named arguments)."));
    };
    let (mut name, mut description, mut callback) = (None, None, None);
    let mut flags = ScriptFlags::default();
    for pair in t.clone().pairs::<LuaValue, LuaValue>() {
        let (k, v) = pair?;
        let Some(key) = lua_string(&k) else {
            return Err(load_error(
                "named argument key given to redis.register_function is not a string",
            ));
        };
        match key.to_ascii_lowercase().as_str() {
            "function_name" => {
                name = Some(lua_string(&v).ok_or_else(|| {
                    load_error(
                        "function_name argument given to redis.register_function must be a string",
                    )
                })?)
            }
            "description" => {
                description = Some(lua_string(&v).ok_or_else(|| {
                    load_error(
                        "description argument given to redis.register_function must be a string",
                    )
                })?)
            }
            "callback" => {
                let LuaValue::Function(f) = v else {
                    return Err(load_error(
                        "callback argument given to redis.register_function must be a function",
                    ));
                };
                callback = Some(f);
            }
            "flags" => {
                let LuaValue::Table(list) = v else {
                    return Err(load_error("flags argument to redis.register_function must be a table representing function flags"));
                };
                for i in 1.. {
                    match list.raw_get::<LuaValue>(i)? {
                        LuaValue::Nil => break,
                        flag => {
                            let known = lua_string(&flag).is_some_and(|f| flags.set(&f));
                            if !known {
                                return Err(load_error("unknown flag given"));
                            }
                        }
                    }
                }
            }
            _ => {
                return Err(load_error(
                    "unknown argument given to redis.register_function",
                ))
            }
        }
    }
    let Some(name) = name else {
        return Err(load_error(
            "redis.register_function must get a function name argument",
        ));
    };
    let Some(callback) = callback else {
        return Err(load_error(
            "redis.register_function must get a callback argument",
        ));
    };
    Ok(Registered {
        name,
        description,
        flags,
        callback,
    })
}

/// A fresh engine: its interpreter (Redis's libraries, protected as for
/// EVAL), the environment libraries run in, and the load API.
fn new_engine() -> mlua::Result<FunctionEngine> {
    let lua = new_lua()?;
    let protection = protection(&lua)?;
    let strict: mlua::Function = protection.raw_get("strict")?;
    let make_env: mlua::Function = protection.raw_get("env")?;
    let real_redis: Table = lua.named_registry_value("quire_redis")?;
    let api_redis = lua.create_table()?;
    api_redis.raw_set("register_function", lua.create_function(register_function)?)?;
    for key in [
        "log",
        "LOG_DEBUG",
        "LOG_VERBOSE",
        "LOG_NOTICE",
        "LOG_WARNING",
        "REDIS_VERSION",
        "REDIS_VERSION_NUM",
    ] {
        api_redis.raw_set(key, real_redis.raw_get::<LuaValue>(key)?)?;
    }
    let api = lua.create_table()?;
    api.raw_set("redis", strict.call::<Table>(api_redis)?)?;
    let load_api: Table = strict.call(api)?;
    let (env, env_meta): (Table, Table) = make_env.call(lua.globals())?;
    Ok(FunctionEngine {
        lua,
        version: 0,
        libraries: BTreeMap::new(),
        index: Default::default(),
        env,
        env_meta,
        load_api,
    })
}

/// The text of an error out of a load: a Redis error raised from Rust
/// (between marks), else Lua's message as an `ERR`.
fn error_text(e: &mlua::Error) -> String {
    let message = match e {
        mlua::Error::CallbackError { cause, .. } => return error_text(cause),
        mlua::Error::RuntimeError(m) => m.clone(),
        mlua::Error::SyntaxError { message, .. } => message.clone(),
        other => other.to_string(),
    };
    if let Some(start) = message.find('\u{1}') {
        if let Some(len) = message[start + 1..].find('\u{1}') {
            return message[start + 1..start + 1 + len].to_string();
        }
    }
    format!("ERR {}", message.lines().next().unwrap_or(""))
}

/// Runs a library's code with the load API as its globals; the functions
/// it registered. The engine is left as it was whatever happens.
fn compile(
    engine: &FunctionEngine,
    code: &[u8],
    timeout_ms: Option<i64>,
) -> Result<BTreeMap<String, Registered>, String> {
    let lua = &engine.lua;
    let function = lua
        .load(code)
        .set_name("@user_function")
        .set_environment(engine.env.clone())
        .into_function()
        .map_err(|e| {
            let text = error_text(&e);
            format!(
                "Error compiling function: {}",
                text.strip_prefix("ERR ").unwrap_or(&text)
            )
        })?;
    engine
        .env_meta
        .raw_set("__index", engine.load_api.clone())
        .map_err(|e| e.to_string())?;
    lua.set_app_data(Registrations::default());
    if let Some(timeout) = timeout_ms {
        let started = crate::node::unix_ms();
        lua.set_hook(
            mlua::HookTriggers::new().every_nth_instruction(100_000),
            move |_, _| {
                if crate::node::unix_ms() - started > timeout {
                    return Err(load_error("FUNCTION LOAD timeout"));
                }
                Ok(mlua::VmState::Continue)
            },
        )
        .map_err(|e| e.to_string())?;
    }
    let ran = function.call::<()>(());
    lua.remove_hook();
    let registrations = lua.remove_app_data::<Registrations>().unwrap_or_default();
    let restored = engine.env_meta.raw_set("__index", lua.globals());
    if let Err(e) = restored {
        return Err(format!("Error registering functions: {e}"));
    }
    ran.map_err(|e| format!("Error registering functions: {}", error_text(&e)))?;
    if registrations.0.is_empty() {
        return Err("No functions registered".into());
    }
    Ok(registrations.0)
}

/// A library checked and compiled, not yet linked.
struct Compiled {
    name: String,
    functions: BTreeMap<String, Function>,
}

/// Compiles library `source` for linking into `engine`: metadata, name,
/// engine, then the code. `replace` lets it take an existing library's
/// place; its functions may collide with no other library's.
fn prepare(
    engine: &FunctionEngine,
    source: &[u8],
    replace: bool,
    timeout_ms: Option<i64>,
) -> Result<Compiled, String> {
    let md = metadata(source)?;
    if !valid_name(&md.name) {
        return Err(NAME_RULE.into());
    }
    if !md.engine.eq_ignore_ascii_case(ENGINE) {
        return Err(format!("Engine '{}' not found", md.engine));
    }
    if engine.libraries.contains_key(&md.name) && !replace {
        return Err(format!("Library '{}' already exists", md.name));
    }
    let registered = compile(engine, md.code, timeout_ms)?;
    for name in registered.keys() {
        if engine.library_of(name).is_some_and(|lib| lib != md.name) {
            return Err(format!("Function {name} already exists"));
        }
    }
    let functions = registered
        .into_iter()
        .map(|(name, r)| {
            (
                name,
                Function {
                    name: r.name,
                    library: md.name.clone(),
                    description: r.description,
                    flags: r.flags,
                    callback: r.callback,
                },
            )
        })
        .collect();
    Ok(Compiled {
        name: md.name,
        functions,
    })
}

/// The engine, current with the keyspace's libraries: made on first use,
/// rebuilt when the libraries changed under it (a library that no longer
/// compiles is logged and left out; it stays in the data).
fn engine<'c>(
    scripts: &'c mut Scripts,
    libraries: &Libraries,
) -> Result<&'c mut FunctionEngine, Frame> {
    let version = libraries.version();
    let current = scripts
        .functions
        .as_ref()
        .is_some_and(|e| e.version == version);
    if !current {
        let mut engine =
            new_engine().map_err(|e| Frame::error_owned(format!("ERR cannot start Lua: {e}")))?;
        for (name, source) in libraries.iter() {
            match prepare(&engine, source, false, None) {
                Ok(compiled) => engine.link(compiled.name, compiled.functions),
                Err(error) => {
                    tracing::error!(library = name, %error, "function library does not compile; its functions are unavailable")
                }
            }
        }
        engine.version = version;
        scripts.functions = Some(engine);
    }
    scripts
        .functions
        .as_mut()
        .ok_or(Frame::error("ERR Lua is not available"))
}

/// What INFO's memory section tells of the functions.
pub(super) struct Usage {
    pub libraries: usize,
    pub functions: usize,
    /// The functions' interpreter.
    pub vm_bytes: usize,
    /// The libraries' sources.
    pub source_bytes: usize,
}

pub(super) fn usage(ctx: &mut ExecCtx) -> Usage {
    let source_bytes = ctx
        .keyspace
        .functions
        .iter()
        .map(|(n, s)| n.len() + s.len())
        .sum();
    let (libraries, functions, vm_bytes) = match engine(ctx.scripts, &ctx.keyspace.functions) {
        Ok(e) => (e.libraries.len(), e.function_count(), e.lua.used_memory()),
        Err(_) => (0, 0, 0),
    };
    Usage {
        libraries,
        functions,
        vm_bytes,
        source_bytes,
    }
}

fn fcall(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    call_function(ctx, args, false)
}

fn fcall_ro(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    call_function(ctx, args, true)
}

fn call_function(ctx: &mut ExecCtx, args: &[Bytes], read_only_command: bool) -> CmdResult {
    let engine = engine(ctx.scripts, &ctx.keyspace.functions)?;
    let Some(f) = engine.function(&text(&args[1])) else {
        return Err(Frame::error("ERR Function not found"));
    };
    let (name, flags, callback) = (f.name.clone(), f.flags, f.callback.clone());
    let lua = engine.lua.clone();
    let nkeys = std::str::from_utf8(&args[2])
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or(Frame::error("ERR Bad number of keys provided"))?;
    if nkeys > args.len() as i64 - 3 {
        return Err(Frame::error(
            "ERR Number of keys can't be greater than number of args",
        ));
    }
    if nkeys < 0 {
        return Err(Frame::error("ERR Number of keys can't be negative"));
    }
    run_script(
        ctx,
        Run {
            lua,
            function: callback,
            name,
            flags: Some(flags),
            read_only_command,
            is_function: true,
            args,
            nkeys: nkeys as usize,
        },
    )
}

/// FUNCTION's subcommands and their arities (Redis's convention: negative
/// is a minimum).
const SUBCOMMANDS: &[(&str, i32)] = &[
    ("load", -3),
    ("delete", 3),
    ("flush", -2),
    ("list", -2),
    ("dump", 2),
    ("restore", -3),
    ("stats", 2),
    ("kill", 2),
    ("help", 2),
];

fn function(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let sub = args[1].to_ascii_lowercase();
    let Some(&(name, arity)) = SUBCOMMANDS.iter().find(|(n, _)| n.as_bytes() == sub) else {
        return Err(super::keys::unknown_subcommand(&args[1], "FUNCTION"));
    };
    let n = args.len() as i32;
    if (arity > 0 && n != arity) || (arity < 0 && n < -arity) {
        return Err(Frame::error_owned(format!(
            "ERR wrong number of arguments for 'function|{name}' command"
        )));
    }
    let syntax = || {
        Frame::error_owned(format!(
            "ERR unknown subcommand or wrong number of arguments for '{name}'. Try FUNCTION HELP."
        ))
    };
    match sub.as_slice() {
        b"load" => load(ctx, args),
        b"delete" => delete(ctx, args),
        b"flush" if args.len() > 3 => Err(syntax()),
        b"flush" => flush(ctx, args),
        b"list" => list(ctx, args),
        b"dump" => Ok(Frame::Bulk(Bytes::from(
            crate::keyspace::rdb::dump_functions(&ctx.keyspace.functions),
        ))),
        b"restore" if args.len() > 4 => Err(syntax()),
        b"restore" => restore(ctx, args),
        b"stats" => {
            let engine = engine(ctx.scripts, &ctx.keyspace.functions)?;
            let counts = (engine.libraries.len(), engine.function_count());
            Ok(stats_frame(None, counts))
        }
        // Under the lock no function runs; a busy one is killed by the
        // connection layer before it gets here.
        b"kill" => Err(Frame::error("NOTBUSY No scripts in execution right now.")),
        _ => Ok(help()),
    }
}

/// The checks Redis makes on a subcommand that changes the libraries.
fn check_change_allowed(ctx: &ExecCtx, spec: &CommandSpec) -> Result<(), Frame> {
    if ctx.session.replicated {
        return Ok(());
    }
    super::check_memory(ctx, spec)?;
    super::replication::check_write_allowed(ctx, spec)
}

/// The libraries changed: counted, and replicated as the command itself.
fn changed(ctx: &mut ExecCtx, args: &[Bytes]) {
    ctx.dirty(1);
    ctx.propagate(args);
}

fn load(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    check_change_allowed(ctx, &GROW_SPEC)?;
    let mut replace = false;
    let mut pos = 2;
    while pos < args.len() - 1 {
        if is(&args[pos], "replace") {
            replace = true;
            pos += 1;
            continue;
        }
        return Err(Frame::error_owned(format!(
            "ERR Unknown option given: {}",
            text(&args[pos])
        )));
    }
    let Some(source) = args.get(pos) else {
        return Err(Frame::error("ERR Function code is missing"));
    };
    let timeout = (!ctx.session.replicated).then_some(LOAD_TIMEOUT_MS);
    let engine = engine(ctx.scripts, &ctx.keyspace.functions)?;
    let compiled = prepare(engine, source, replace, timeout)
        .map_err(|e| Frame::error_owned(format!("ERR {e}")))?;
    let name = compiled.name.clone();
    engine.link(compiled.name, compiled.functions);
    ctx.keyspace.functions.insert(name.clone(), source.clone());
    sync_version(ctx);
    changed(ctx, args);
    Ok(Frame::bulk(name))
}

/// The engine now holds what the keyspace's libraries hold.
fn sync_version(ctx: &mut ExecCtx) {
    let version = ctx.keyspace.functions.version();
    if let Some(engine) = ctx.scripts.functions.as_mut() {
        engine.version = version;
    }
}

fn delete(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    check_change_allowed(ctx, &WRITE_SPEC)?;
    let name = text(&args[2]);
    let engine = engine(ctx.scripts, &ctx.keyspace.functions)?;
    engine.unlink(&name);
    if ctx.keyspace.functions.remove(&name).is_none() {
        return Err(Frame::error("ERR Library not found"));
    }
    sync_version(ctx);
    changed(ctx, args);
    Ok(Frame::ok())
}

fn flush(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    if let Some(mode) = args.get(2) {
        if !is(mode, "sync") && !is(mode, "async") {
            return Err(Frame::error(
                "ERR FUNCTION FLUSH only supports SYNC|ASYNC option",
            ));
        }
    }
    check_change_allowed(ctx, &WRITE_SPEC)?;
    ctx.keyspace.functions.clear();
    // A fresh interpreter, as the old one's memory goes with its libraries.
    ctx.scripts.functions = None;
    changed(ctx, args);
    Ok(Frame::ok())
}

fn restore(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    #[derive(PartialEq)]
    enum Policy {
        Append,
        Replace,
        Flush,
    }
    let policy =
        match args.get(3) {
            None => Policy::Append,
            Some(p) if is(p, "append") => Policy::Append,
            Some(p) if is(p, "replace") => Policy::Replace,
            Some(p) if is(p, "flush") => Policy::Flush,
            Some(_) => return Err(Frame::error(
                "ERR Wrong restore policy given, value should be either FLUSH, APPEND or REPLACE.",
            )),
        };
    check_change_allowed(ctx, &GROW_SPEC)?;
    let sources = crate::keyspace::rdb::restore_functions(&args[2])
        .map_err(|e| Frame::error_owned(format!("ERR {e}")))?;
    let err = |e: String| Frame::error_owned(format!("ERR {e}"));
    // Everything is compiled and checked before anything changes: a
    // payload that fails leaves the libraries as they were.
    let mut staging = new_engine().map_err(|e| err(e.to_string()))?;
    let mut restored = Vec::new();
    for source in sources {
        let compiled = prepare(&staging, &source, false, None).map_err(err)?;
        restored.push((compiled.name.clone(), Bytes::from(source)));
        staging.link(compiled.name, compiled.functions);
    }
    if policy == Policy::Flush {
        ctx.keyspace.functions.clear();
        for (name, source) in restored {
            ctx.keyspace.functions.insert(name, source);
        }
        // Compiled apart: rebuild in the live interpreter on next use.
        ctx.scripts.functions = None;
        changed(ctx, args);
        return Ok(Frame::ok());
    }
    let engine = engine(ctx.scripts, &ctx.keyspace.functions)?;
    for (library, functions) in &staging.libraries {
        if engine.libraries.contains_key(library) && policy == Policy::Append {
            return Err(err(format!("Library {library} already exists")));
        }
        for name in functions.keys() {
            let owner = engine.library_of(name);
            // Under REPLACE the library it replaces does not count.
            if owner
                .is_some_and(|o| !(policy == Policy::Replace && staging.libraries.contains_key(o)))
            {
                return Err(err(format!("Function {name} already exists")));
            }
        }
    }
    for (name, source) in restored {
        ctx.keyspace.functions.insert(name, source);
    }
    // Compiled apart: rebuild in the live interpreter on next use.
    ctx.scripts.functions = None;
    changed(ctx, args);
    Ok(Frame::ok())
}

fn list(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let mut with_code = false;
    let mut pattern: Option<&[u8]> = None;
    let mut i = 2;
    while i < args.len() {
        if !with_code && is(&args[i], "withcode") {
            with_code = true;
        } else if pattern.is_none() && is(&args[i], "libraryname") {
            let Some(p) = args.get(i + 1) else {
                return Err(Frame::error("ERR library name argument was not given"));
            };
            pattern = Some(p);
            i += 1;
        } else {
            return Err(Frame::error_owned(format!(
                "ERR Unknown argument {}",
                text(&args[i])
            )));
        }
        i += 1;
    }
    let engine = engine(ctx.scripts, &ctx.keyspace.functions)?;
    let mut out = Vec::new();
    for (library, functions) in &engine.libraries {
        if pattern.is_some_and(|p| !glob_match(p, library.as_bytes(), false)) {
            continue;
        }
        let functions = functions
            .values()
            .map(|f| {
                Frame::Map(vec![
                    (Frame::bulk("name"), Frame::bulk(f.name.clone())),
                    (
                        Frame::bulk("description"),
                        f.description
                            .clone()
                            .map(Frame::bulk)
                            .unwrap_or(Frame::Null),
                    ),
                    (
                        Frame::bulk("flags"),
                        Frame::Set(f.flags.names().into_iter().map(Frame::simple).collect()),
                    ),
                ])
            })
            .collect();
        let mut fields = vec![
            (Frame::bulk("library_name"), Frame::bulk(library.clone())),
            (Frame::bulk("engine"), Frame::bulk(ENGINE)),
            (Frame::bulk("functions"), Frame::Array(functions)),
        ];
        if with_code {
            let code = ctx
                .keyspace
                .functions
                .get(library)
                .cloned()
                .unwrap_or_default();
            fields.push((Frame::bulk("library_code"), Frame::Bulk(code)));
        }
        out.push(Frame::Map(fields));
    }
    Ok(Frame::Array(out))
}

/// FUNCTION STATS while a function runs (answered by the connection,
/// without the data the function holds).
pub fn stats_reply(running: Option<(Running, i64)>) -> Frame {
    let counts = running
        .as_ref()
        .map(|(r, _)| (r.libraries, r.functions))
        .unwrap_or((0, 0));
    stats_frame(running, counts)
}

fn stats_frame(running: Option<(Running, i64)>, (libraries, functions): (usize, usize)) -> Frame {
    let running = match running {
        Some((r, duration_ms)) => Frame::Map(vec![
            (Frame::bulk("name"), Frame::bulk(r.name)),
            (
                Frame::bulk("command"),
                Frame::Array(r.command.into_iter().map(Frame::Bulk).collect()),
            ),
            (Frame::bulk("duration_ms"), Frame::Integer(duration_ms)),
        ]),
        None => Frame::Null,
    };
    Frame::Map(vec![
        (Frame::bulk("running_script"), running),
        (
            Frame::bulk("engines"),
            Frame::Map(vec![(
                Frame::bulk(ENGINE),
                Frame::Map(vec![
                    (
                        Frame::bulk("libraries_count"),
                        Frame::Integer(libraries as i64),
                    ),
                    (
                        Frame::bulk("functions_count"),
                        Frame::Integer(functions as i64),
                    ),
                ]),
            )]),
        ),
    ])
}

fn help() -> Frame {
    const LINES: &[&str] = &[
        "FUNCTION <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "LOAD [REPLACE] <FUNCTION CODE>",
        "    Create a new library with the given library name and code.",
        "DELETE <LIBRARY NAME>",
        "    Delete the given library.",
        "LIST [LIBRARYNAME PATTERN] [WITHCODE]",
        "    Return general information on all the libraries:",
        "    * Library name",
        "    * The engine used to run the Library",
        "    * Library description",
        "    * Functions list",
        "    * Library code (if WITHCODE is given)",
        "    It also possible to get only function that matches a pattern using LIBRARYNAME argument.",
        "STATS",
        "    Return information about the current function running:",
        "    * Function name",
        "    * Command used to run the function",
        "    * Duration in MS that the function is running",
        "    If no function is running, return nil",
        "    In addition, returns a list of available engines.",
        "KILL",
        "    Kill the current running function.",
        "FLUSH [ASYNC|SYNC]",
        "    Delete all the libraries.",
        "    When called without the optional mode argument, the behavior is determined by the",
        "    lazyfree-lazy-user-flush configuration directive. Valid modes are:",
        "    * ASYNC: Asynchronously flush the libraries.",
        "    * SYNC: Synchronously flush the libraries.",
        "DUMP",
        "    Return a serialized payload representing the current libraries, can be restored using FUNCTION RESTORE command",
        "RESTORE <PAYLOAD> [FLUSH|APPEND|REPLACE]",
        "    Restore the libraries represented by the given payload, it is possible to give a restore policy to",
        "    control how to handle existing libraries (default APPEND):",
        "    * FLUSH: delete all existing libraries.",
        "    * APPEND: appends the restored libraries to the existing libraries. On collision, abort.",
        "    * REPLACE: appends the restored libraries to the existing libraries, On collision, replace the old",
        "      libraries with the new libraries (notice that even on this option there is a chance of failure",
        "      in case of functions name collision with another library).",
        "HELP",
        "    Prints this help.",
    ];
    Frame::Array(LINES.iter().map(|l| Frame::simple(l)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_as_redis_reads_it() {
        let md = metadata(b"#!lua name=mylib\nreturn 1").unwrap();
        assert_eq!(md.engine, "lua");
        assert_eq!(md.name, "mylib");
        assert_eq!(md.code, b"\nreturn 1");
        assert_eq!(metadata(b"#!lua name=\"foo\"\n").unwrap().name, "foo");
        assert_eq!(metadata(b"#! name=test\n").unwrap().engine, "");
        for (source, error) in [
            (&b"return 1"[..], "Missing library metadata"),
            (b"#!lua name=x", "Invalid library metadata"),
            (b"#!lua\n", "Library name was not given"),
            (
                b"#!lua name=test foo=bar\n",
                "Invalid metadata value given: foo=bar",
            ),
            (
                b"#!lua name=foo name=bar\n",
                "Invalid metadata value, name argument was given multiple times",
            ),
        ] {
            assert_eq!(metadata(source).unwrap_err(), error);
        }
    }

    #[test]
    fn names_are_letters_digits_underscores() {
        assert!(valid_name("lib_1"));
        assert!(!valid_name(""));
        assert!(!valid_name("bad\\0format"));
        assert!(!valid_name("a-b"));
    }

    #[test]
    fn a_library_compiles_to_its_functions() {
        let engine = new_engine().unwrap();
        let lib = prepare(
            &engine,
            b"#!lua name=lib\nredis.register_function{function_name='f', callback=function() return 1 end, flags={'no-writes', 'allow-stale'}, description='d'}\nredis.register_function('g', function() end)",
            false,
            Some(LOAD_TIMEOUT_MS),
        )
        .unwrap();
        assert_eq!(lib.name, "lib");
        let f = &lib.functions["f"];
        assert_eq!(f.description.as_deref(), Some("d"));
        assert_eq!(f.flags.names(), ["no-writes", "allow-stale"]);
        assert!(lib.functions.contains_key("g"));
    }

    #[test]
    fn load_errors_are_redis_texts() {
        let mut engine = new_engine().unwrap();
        let load = |engine: &FunctionEngine, source: &str| {
            prepare(engine, source.as_bytes(), false, Some(LOAD_TIMEOUT_MS))
                .err()
                .unwrap_or_default()
        };
        assert_eq!(
            load(&engine, "#!lua name=l\nredis.register_function('f1', 'x')"),
            "Error registering functions: ERR second argument to redis.register_function must be a function"
        );
        assert_eq!(
            load(&engine, "#!lua name=l\nreturn math.random()"),
            "Error registering functions: ERR user_function:2: Script attempted to access nonexistent global variable 'math'"
        );
        assert_eq!(
            load(&engine, "#!lua name=l\nbad script"),
            "Error compiling function: user_function:2: '=' expected near 'script'"
        );
        assert_eq!(
            load(&engine, "#!lua name=l\nreturn 1"),
            "No functions registered"
        );
        assert_eq!(load(&engine, "#!py name=l\n"), "Engine 'py' not found");
        assert!(load(&engine, "#!lua name=l\na = 1").contains("Attempt to modify a readonly table"));
        assert_eq!(
            load(
                &engine,
                "#!lua name=l\nlocal a = 1 while true do a = a + 1 end"
            ),
            "Error registering functions: ERR FUNCTION LOAD timeout"
        );
        let lib = prepare(
            &engine,
            b"#!lua name=a\nredis.register_function('f1', function() end)",
            false,
            None,
        )
        .unwrap();
        engine.link(lib.name, lib.functions);
        assert_eq!(
            load(
                &engine,
                "#!lua name=b\nredis.register_function('F1', function() end)"
            ),
            "Function F1 already exists"
        );
        assert_eq!(
            load(
                &engine,
                "#!lua name=a\nredis.register_function('f2', function() end)"
            ),
            "Library 'a' already exists"
        );
        // After all that, the environment reads the real globals again.
        assert!(engine.function("F1").is_some());
    }
}
