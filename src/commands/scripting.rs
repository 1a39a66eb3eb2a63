//! Lua scripting as Redis 7 has it: EVAL, EVALSHA, EVAL_RO, EVALSHA_RO and
//! SCRIPT, in Lua 5.1 (vendored through mlua), with the `redis` API
//! (`call`, `pcall`, `error_reply`, `status_reply`, `sha1hex`, `log`,
//! `setresp`, `set_repl`, ...), `KEYS`/`ARGV`, protected globals, shebang
//! flags and Redis's reply conversions both ways.
//!
//! A script runs under the dataset lock like any command. The commands it
//! runs replicate as their effects, wrapped in one MULTI/EXEC, so replicas
//! never run Lua. Past `busy-reply-threshold` other clients get `-BUSY`
//! (checked by their connections without the lock) and SCRIPT KILL stops
//! a script that has not written yet.

use super::args::*;
use super::flags::*;
use super::{CmdResult, CommandSpec, ExecCtx};
use crate::node::scripts::{Script, ScriptFlags};
use crate::resp::{Frame, Protocol};
use bytes::Bytes;
use mlua::{Lua, MultiValue, Table, Value as LuaValue};
use std::borrow::Cow;

const G: &str = "scripting";

pub(super) static COMMANDS: &[CommandSpec] = &[
    spec!(
        "eval",
        -3,
        NOSCRIPT | STALE | MAY_REPLICATE | MOVABLE_KEYS,
        "Executes a server-side Lua script.",
        "script numkeys [key [key ...]] [arg [arg ...]]",
        eval
    ),
    spec!(
        "evalsha",
        -3,
        NOSCRIPT | STALE | MAY_REPLICATE | MOVABLE_KEYS,
        "Executes a server-side Lua script by SHA1 digest.",
        "sha1 numkeys [key [key ...]] [arg [arg ...]]",
        evalsha
    ),
    spec!(
        "eval_ro",
        -3,
        NOSCRIPT | STALE | READONLY | MOVABLE_KEYS,
        "Executes a read-only server-side Lua script.",
        "script numkeys [key [key ...]] [arg [arg ...]]",
        eval_ro
    ),
    spec!(
        "evalsha_ro",
        -3,
        NOSCRIPT | STALE | READONLY | MOVABLE_KEYS,
        "Executes a read-only server-side Lua script by SHA1 digest.",
        "sha1 numkeys [key [key ...]] [arg [arg ...]]",
        evalsha_ro
    ),
    spec!(
        "script",
        -2,
        NOSCRIPT,
        "A container for Lua scripts management commands.",
        "subcommand [arg ...]",
        script
    ),
];

/// What one interpreter (EVAL's, or the functions') may allocate.
pub(super) const LUA_MEMORY_LIMIT: usize = 512 << 20;

/// The error handler, in Lua: errors carry the script's source and line
/// (skipping C frames and Quire's helpers).
const PRELUDE: &str = r#"
local dbg = debug
local getinfo = dbg.getinfo
local match = string.match
function __quire_handler(err)
  local level = 2
  local i = getinfo(level, 'nSl')
  while i and (i.what == 'C' or i.source == '=quire') do
    level = level + 1
    i = getinfo(level, 'nSl')
  end
  if type(err) ~= 'table' then
    -- An error reply raised from Rust (redis.call, the kill hook) comes
    -- wrapped; its text is between \1 marks.
    local text = tostring(err)
    local reply = match(text, '\1(.-)\1')
    if reply then
      local counted = match(reply, '^\2(.*)$')
      if counted then
        err = {err = counted, ignore_error_stats_update = true}
      else
        err = {err = reply}
      end
    else
      err = {err = 'ERR ' .. text}
    end
  end
  if i then
    err['source'] = i.source
    err['line'] = i.currentline
  end
  return err
end
local unpack = unpack
local select = select
local xpcall = xpcall
function __quire_run(f, ...)
  local n = select('#', ...)
  if n == 0 then
    return xpcall(f, __quire_handler)
  end
  local args = {...}
  return xpcall(function() return f(unpack(args, 1, n)) end, __quire_handler)
end
debug = nil
"#;

pub fn sha1_hex(body: &[u8]) -> String {
    let mut h = sha1_smol::Sha1::new();
    h.update(body);
    h.digest().to_string()
}

/// The flags of a `#!lua flags=...` first line (None without a shebang:
/// Redis's compatibility mode for scripts that declare nothing) and the
/// code to compile.
fn shebang(body: &[u8]) -> Result<(Option<ScriptFlags>, &[u8]), Frame> {
    if !body.starts_with(b"#!") {
        return Ok((None, body));
    }
    let Some(end) = body.iter().position(|b| *b == b'\n') else {
        return Err(Frame::error("ERR Invalid script shebang"));
    };
    let parts = match crate::resp::split_args(&body[..end]) {
        Ok(parts) if !parts.is_empty() => parts,
        _ => return Err(Frame::error("ERR Invalid engine in script shebang")),
    };
    if parts[0].as_ref() != b"#!lua" {
        return Err(Frame::error_owned(format!(
            "ERR Unexpected engine in script shebang: {}",
            String::from_utf8_lossy(&parts[0])
        )));
    }
    let mut flags = ScriptFlags::default();
    for part in &parts[1..] {
        let part = String::from_utf8_lossy(part);
        let Some(list) = part.strip_prefix("flags=") else {
            return Err(Frame::error_owned(format!(
                "ERR Unknown lua shebang option: {part}"
            )));
        };
        if list.is_empty() {
            continue;
        }
        for flag in list.split(',') {
            // Case matters here (it does not in a function's flags).
            if !ScriptFlags::NAMES.contains(&flag) || !flags.set(flag) {
                return Err(Frame::error_owned(format!(
                    "ERR Unexpected flag in script shebang: {flag}"
                )));
            }
        }
    }
    // The shebang line stays (as a comment would) so line numbers hold.
    Ok((Some(flags), &body[end..]))
}

/// A fresh interpreter with Redis's libraries and the `redis` table.
pub(super) fn new_lua() -> mlua::Result<Lua> {
    use mlua::StdLib;
    // SAFETY: `debug` (the one unsafe library loaded) is used by the
    // prelude's error handler only and removed from the globals before any
    // script runs; no C module loading is reachable (`require`, `package`
    // and `loadlib` are not loaded).
    let lua = unsafe {
        Lua::unsafe_new_with(
            StdLib::TABLE | StdLib::STRING | StdLib::MATH | StdLib::DEBUG,
            mlua::LuaOptions::default(),
        )
    };
    // A runaway script fails with "not enough memory" instead of taking
    // the node's memory (the interpreter stays usable: its garbage is
    // collected).
    lua.set_memory_limit(LUA_MEMORY_LIMIT)?;
    let g = lua.globals();
    for name in ["loadfile", "dofile", "require", "module", "load", "print"] {
        g.raw_set(name, LuaValue::Nil)?;
    }
    // Whether the running script was killed: the hook raises the kill,
    // and `pcall` (see PROTECT) raises it again, so a script cannot catch
    // its way out.
    g.raw_set(
        "__quire_killed",
        lua.create_function(|lua, ()| Ok(lua.app_data_ref::<Killed>().is_some()))?,
    )?;
    let redis = lua.create_table()?;
    redis.set(
        "sha1hex",
        lua.create_function(|_, args: MultiValue| match args.front() {
            Some(LuaValue::String(s)) if args.len() == 1 => Ok(sha1_hex(&s.as_bytes())),
            Some(v @ (LuaValue::Integer(_) | LuaValue::Number(_))) if args.len() == 1 => {
                Ok(sha1_hex(v.to_string()?.as_bytes()))
            }
            _ => Err(raised("ERR wrong number of arguments")),
        })?,
    )?;
    redis.set(
        "error_reply",
        lua.create_function(|lua, args: MultiValue| {
            let t = lua.create_table()?;
            match args.front() {
                Some(LuaValue::String(s)) if args.len() == 1 => {
                    t.set("err", error_reply_text(&s.to_string_lossy()))?
                }
                _ => t.set("err", "ERR wrong number or type of arguments")?,
            }
            Ok(t)
        })?,
    )?;
    redis.set(
        "status_reply",
        lua.create_function(|lua, s: mlua::String| {
            let t = lua.create_table()?;
            t.set("ok", s)?;
            Ok(t)
        })?,
    )?;
    redis.set(
        "log",
        lua.create_function(|_, (level, msg): (i64, MultiValue)| {
            let text: Vec<String> = msg
                .iter()
                .map(|v| v.to_string().unwrap_or_default())
                .collect();
            let text = text.join(" ");
            match level {
                0 => tracing::debug!(script_log = %text),
                1 | 2 => tracing::info!(script_log = %text),
                _ => tracing::warn!(script_log = %text),
            }
            Ok(())
        })?,
    )?;
    for (name, v) in [
        ("LOG_DEBUG", 0),
        ("LOG_VERBOSE", 1),
        ("LOG_NOTICE", 2),
        ("LOG_WARNING", 3),
    ] {
        redis.set(name, v)?;
    }
    redis.set("REDIS_VERSION", crate::REDIS_COMPAT_VERSION)?;
    redis.set("REDIS_VERSION_NUM", version_num())?;
    for (name, v) in [
        ("REPL_NONE", 0),
        ("REPL_AOF", 1),
        ("REPL_SLAVE", 2),
        ("REPL_REPLICA", 2),
        ("REPL_ALL", 3),
    ] {
        redis.set(name, v)?;
    }
    redis.set(
        "set_repl",
        lua.create_function(|_, flags: i64| {
            if !(0..=3).contains(&flags) {
                return Err(mlua::Error::runtime(
                    "Invalid replication flags. Use REPL_AOF, REPL_REPLICA, REPL_ALL or REPL_NONE.",
                ));
            }
            Ok(())
        })?,
    )?;
    redis.set("replicate_commands", lua.create_function(|_, ()| Ok(true))?)?;
    redis.set("breakpoint", lua.create_function(|_, ()| Ok(false))?)?;
    redis.set("debug", lua.create_function(|_, _: MultiValue| Ok(()))?)?;
    redis.set(
        "setresp",
        lua.create_function(|lua, v: i64| {
            if v != 2 && v != 3 {
                return Err(mlua::Error::runtime("RESP version must be 2 or 3."));
            }
            lua.set_named_registry_value("quire_resp", v)?;
            Ok(())
        })?,
    )?;
    // Filled for each script run (bound to the running command).
    redis.set(
        "pcall",
        lua.create_function(|_, _: MultiValue| -> mlua::Result<()> {
            Err(mlua::Error::runtime("redis.pcall outside a script"))
        })?,
    )?;
    g.set("redis", redis)?;
    register_bit(&lua)?;
    register_cjson(&lua)?;
    super::lua_msgpack::register(&lua)?;
    lua.load(PRELUDE).set_name("=quire").exec()?;
    // The real `redis` table, where each run binds `call` and `pcall`;
    // scripts see it through a read-only view.
    let real_redis: Table = g.raw_get("redis")?;
    lua.set_named_registry_value("quire_redis", real_redis)?;
    let protection: Table = lua.load(PROTECT).set_name("=quire").eval()?;
    lua.set_named_registry_value("quire_protection", protection)?;
    Ok(lua)
}

/// Redis runs scripts against read-only tables (a patched Lua); here the
/// same holds through views: the libraries' tables are read-only proxies,
/// the globals raise on a missing name, and scripts run in an empty
/// environment whose writes fail, so no script changes what the next one
/// sees. Returns the helpers the function engine builds its own views
/// with (`strict`, `env`).
const PROTECT: &str = r#"
local rawget, error, tostring, type = rawget, error, tostring, type
local raw_setmetatable = setmetatable
local protected = raw_setmetatable({}, {__mode = 'k'})
local function readonly_error()
  error("Attempt to modify a readonly table", 2)
end
-- What getmetatable gives for a protected table: nothing to change.
local fake = {}
raw_setmetatable(fake, {__newindex = readonly_error, __metatable = false})
local function protect(t, mt)
  mt.__metatable = fake
  raw_setmetatable(t, mt)
  protected[t] = true
  return t
end
local function missing(k)
  error("Script attempted to access nonexistent global variable '" .. tostring(k) .. "'", 3)
end
-- A read-only view of t; a missing key is nil.
local function view(t)
  return protect({}, {__index = t, __newindex = readonly_error})
end
-- A read-only view of t where a missing key is an error (globals).
local function strict(t)
  return protect({}, {
    __index = function(_, k)
      local v = rawget(t, k)
      if v == nil then missing(k) end
      return v
    end,
    __newindex = readonly_error,
  })
end
-- An empty environment reading through to `index`; returns it and its
-- metatable (the function engine points __index elsewhere while loading).
local function env(index)
  local mt = {__index = index, __newindex = readonly_error}
  return protect({}, mt), mt
end
setmetatable = function(t, mt)
  if protected[t] then
    error("Attempt to modify a readonly table", 2)
  end
  return raw_setmetatable(t, mt)
end
-- pcall gives an error reply's text as Redis 7's does, and lets a kill
-- through (the script must end).
local raw_pcall, raw_xpcall, killed = pcall, xpcall, __quire_killed
local match = string.match
local function caught(ok, ...)
  if ok then
    return ok, ...
  end
  local err = ...
  if killed() then
    error(err, 0)
  end
  if type(err) == 'userdata' then
    local text = match(tostring(err), '\1(.-)\1')
    if text then
      err = text
    end
  elseif type(err) == 'table' and type(rawget(err, 'err')) == 'string' then
    err = rawget(err, 'err')
  end
  return false, err
end
pcall = function(...)
  return caught(raw_pcall(...))
end
xpcall = function(f, handler)
  return caught(raw_xpcall(f, handler))
end
-- Compiled (binary) chunks could break the interpreter: refused.
local raw_loadstring = loadstring
loadstring = function(s, name)
  if type(s) == 'string' and s:byte(1) == 27 then
    return nil, 'binary chunks are not allowed'
  end
  return raw_loadstring(s, name)
end
local G = _G
for _, name in ipairs({'redis', 'cjson', 'cmsgpack', 'bit', 'string', 'math', 'table'}) do
  if type(rawget(G, name)) == 'table' then
    G[name] = view(rawget(G, name))
  end
end
local scripts_env = env(G)
G._G = scripts_env
protect(G, {
  __index = function(_, k) missing(k) end,
  __newindex = readonly_error,
})
return {strict = strict, env = env, scripts_env = scripts_env}
"#;

/// `redis.REDIS_VERSION_NUM`: the version as 0x00MMmmpp.
pub(super) fn version_num() -> i64 {
    let mut parts = crate::REDIS_COMPAT_VERSION
        .split('.')
        .map(|p| p.parse::<i64>().unwrap_or(0));
    let mut next = || parts.next().unwrap_or(0);
    (next() << 16) | (next() << 8) | next()
}

/// Lua BitOp's `bit` library (Redis loads it), on 32-bit integers.
fn register_bit(lua: &Lua) -> mlua::Result<()> {
    let bit = lua.create_table()?;
    fn n(v: f64) -> i32 {
        (v as i64) as i32
    }
    bit.set("tobit", lua.create_function(|_, x: f64| Ok(n(x)))?)?;
    bit.set("bnot", lua.create_function(|_, x: f64| Ok(!n(x)))?)?;
    bit.set(
        "band",
        lua.create_function(|_, xs: mlua::Variadic<f64>| {
            Ok(xs.iter().fold(-1i32, |a, x| a & n(*x)))
        })?,
    )?;
    bit.set(
        "bor",
        lua.create_function(|_, xs: mlua::Variadic<f64>| {
            Ok(xs.iter().fold(0i32, |a, x| a | n(*x)))
        })?,
    )?;
    bit.set(
        "bxor",
        lua.create_function(|_, xs: mlua::Variadic<f64>| {
            Ok(xs.iter().fold(0i32, |a, x| a ^ n(*x)))
        })?,
    )?;
    bit.set(
        "lshift",
        lua.create_function(|_, (x, s): (f64, f64)| Ok(((n(x) as u32) << (n(s) & 31)) as i32))?,
    )?;
    bit.set(
        "rshift",
        lua.create_function(|_, (x, s): (f64, f64)| Ok(((n(x) as u32) >> (n(s) & 31)) as i32))?,
    )?;
    bit.set(
        "arshift",
        lua.create_function(|_, (x, s): (f64, f64)| Ok(n(x) >> (n(s) & 31)))?,
    )?;
    bit.set(
        "rol",
        lua.create_function(|_, (x, s): (f64, f64)| {
            Ok((n(x) as u32).rotate_left((n(s) & 31) as u32) as i32)
        })?,
    )?;
    bit.set(
        "ror",
        lua.create_function(|_, (x, s): (f64, f64)| {
            Ok((n(x) as u32).rotate_right((n(s) & 31) as u32) as i32)
        })?,
    )?;
    bit.set(
        "bswap",
        lua.create_function(|_, x: f64| Ok(n(x).swap_bytes()))?,
    )?;
    bit.set(
        "tohex",
        lua.create_function(|_, (x, digits): (f64, Option<f64>)| {
            let d = digits.map(n).unwrap_or(8);
            let upper = d < 0;
            let width = d.unsigned_abs().clamp(1, 8) as usize;
            let v = (n(x) as u32) as u64 & ((1u64 << (4 * width)) - 1);
            Ok(if upper {
                format!("{v:0width$X}")
            } else {
                format!("{v:0width$x}")
            })
        })?,
    )?;
    lua.globals().set("bit", bit)
}

/// lua-cjson's settings (its `encode_*`/`decode_*` functions set them for
/// the interpreter, as in Redis, where they persist across scripts).
#[derive(Clone, Copy)]
struct CjsonConfig {
    encode_max_depth: usize,
    decode_max_depth: usize,
    encode_invalid_numbers: bool,
    decode_invalid_numbers: bool,
}

impl Default for CjsonConfig {
    fn default() -> Self {
        CjsonConfig {
            encode_max_depth: 1000,
            decode_max_depth: 1000,
            encode_invalid_numbers: false,
            decode_invalid_numbers: true,
        }
    }
}

fn cjson_config(lua: &Lua) -> CjsonConfig {
    lua.app_data_ref::<CjsonConfig>()
        .map(|c| *c)
        .unwrap_or_default()
}

/// `cjson.encode` / `cjson.decode` (Redis loads lua-cjson), with its
/// settings functions.
fn register_cjson(lua: &Lua) -> mlua::Result<()> {
    lua.set_app_data(CjsonConfig::default());
    let cjson = lua.create_table()?;
    cjson.set(
        "encode",
        lua.create_function(|lua, v: LuaValue| {
            let mut out = String::new();
            json_encode(&v, &mut out, 1, &cjson_config(lua))?;
            Ok(out)
        })?,
    )?;
    cjson.set(
        "decode",
        lua.create_function(|lua, s: mlua::String| {
            let config = cjson_config(lua);
            let bytes = s.as_bytes();
            let parsed: serde_json::Value = match serde_json::from_slice(&bytes) {
                Ok(v) => v,
                Err(_) if config.decode_invalid_numbers => {
                    // lua-cjson reads nan/inf as numbers.
                    let text = String::from_utf8_lossy(&bytes);
                    match text.trim().to_ascii_lowercase().as_str() {
                        "nan" | "-nan" => return Ok(LuaValue::Number(f64::NAN)),
                        "inf" | "infinity" => return Ok(LuaValue::Number(f64::INFINITY)),
                        "-inf" | "-infinity" => return Ok(LuaValue::Number(f64::NEG_INFINITY)),
                        _ => {
                            return Err(mlua::Error::runtime(
                                "Expected value but found invalid token",
                            ))
                        }
                    }
                }
                Err(e) => {
                    return Err(mlua::Error::runtime(format!(
                        "Expected value but found invalid token: {e}"
                    )))
                }
            };
            json_to_lua(lua, &parsed, 1, config.decode_max_depth)
        })?,
    )?;
    cjson.set(
        "null",
        LuaValue::LightUserData(mlua::LightUserData(std::ptr::null_mut())),
    )?;
    // Settings: each sets (when given) and returns the value in force.
    fn depth_setting(
        lua: &Lua,
        v: Option<i64>,
        field: fn(&mut CjsonConfig) -> &mut usize,
    ) -> mlua::Result<i64> {
        let mut config = cjson_config(lua);
        if let Some(v) = v {
            if !(1..=i32::MAX as i64).contains(&v) {
                return Err(mlua::Error::runtime(
                    "bad argument #1 (expected integer between 1 and 2147483647)",
                ));
            }
            *field(&mut config) = v as usize;
            lua.set_app_data(config);
        }
        Ok(*field(&mut config) as i64)
    }
    cjson.set(
        "encode_max_depth",
        lua.create_function(|lua, v: Option<i64>| {
            depth_setting(lua, v, |c| &mut c.encode_max_depth)
        })?,
    )?;
    cjson.set(
        "decode_max_depth",
        lua.create_function(|lua, v: Option<i64>| {
            depth_setting(lua, v, |c| &mut c.decode_max_depth)
        })?,
    )?;
    fn flag_setting(
        lua: &Lua,
        v: LuaValue,
        field: fn(&mut CjsonConfig) -> &mut bool,
    ) -> mlua::Result<bool> {
        let mut config = cjson_config(lua);
        match v {
            LuaValue::Nil => {}
            LuaValue::Boolean(b) => {
                *field(&mut config) = b;
                lua.set_app_data(config);
            }
            LuaValue::String(s)
                if s.as_bytes().as_ref() == b"on" || s.as_bytes().as_ref() == b"off" =>
            {
                *field(&mut config) = s.as_bytes().as_ref() == b"on";
                lua.set_app_data(config);
            }
            _ => return Err(mlua::Error::runtime("bad argument #1 (invalid option)")),
        }
        Ok(*field(&mut config))
    }
    cjson.set(
        "encode_invalid_numbers",
        lua.create_function(|lua, v: LuaValue| {
            flag_setting(lua, v, |c| &mut c.encode_invalid_numbers)
        })?,
    )?;
    cjson.set(
        "decode_invalid_numbers",
        lua.create_function(|lua, v: LuaValue| {
            flag_setting(lua, v, |c| &mut c.decode_invalid_numbers)
        })?,
    )?;
    // Buffer reuse and number precision change nothing here.
    cjson.set(
        "encode_keep_buffer",
        lua.create_function(|_, v: LuaValue| Ok(!matches!(v, LuaValue::Boolean(false))))?,
    )?;
    cjson.set(
        "encode_number_precision",
        lua.create_function(|_, v: Option<i64>| Ok(v.unwrap_or(14)))?,
    )?;
    cjson.set(
        "encode_sparse_array",
        lua.create_function(|_, _: MultiValue| Ok(()))?,
    )?;
    lua.globals().set("cjson", cjson)
}

fn json_encode(
    v: &LuaValue,
    out: &mut String,
    depth: usize,
    config: &CjsonConfig,
) -> mlua::Result<()> {
    let nested = |depth: usize| -> mlua::Result<()> {
        if depth > config.encode_max_depth {
            return Err(mlua::Error::runtime(format!(
                "Cannot serialise, excessive nesting ({depth})"
            )));
        }
        Ok(())
    };
    match v {
        LuaValue::Nil => out.push_str("null"),
        LuaValue::LightUserData(u) if u.0.is_null() => out.push_str("null"),
        LuaValue::Boolean(b) => out.push_str(if *b { "true" } else { "false" }),
        LuaValue::Integer(i) => out.push_str(&i.to_string()),
        LuaValue::Number(n) => {
            if !n.is_finite() {
                if !config.encode_invalid_numbers {
                    return Err(mlua::Error::runtime(
                        "Cannot serialise number: must not be NaN or Inf",
                    ));
                }
                out.push_str(if n.is_nan() {
                    "nan"
                } else if *n > 0.0 {
                    "inf"
                } else {
                    "-inf"
                });
            } else {
                out.push_str(&lua_number(*n));
            }
        }
        LuaValue::String(s) => {
            out.push_str(&serde_json::to_string(&*s.to_string_lossy()).unwrap_or_default())
        }
        LuaValue::Table(t) => {
            nested(depth)?;
            let len = t.raw_len();
            let pairs = t.pairs::<LuaValue, LuaValue>().count();
            if len > 0 && pairs == len {
                out.push('[');
                for i in 1..=len {
                    if i > 1 {
                        out.push(',');
                    }
                    json_encode(&t.raw_get::<LuaValue>(i)?, out, depth + 1, config)?;
                }
                out.push(']');
            } else {
                out.push('{');
                let mut first = true;
                for pair in t.pairs::<LuaValue, LuaValue>() {
                    let (k, v) = pair?;
                    let key = match &k {
                        LuaValue::String(s) => s.to_string_lossy().to_string(),
                        LuaValue::Integer(i) => i.to_string(),
                        LuaValue::Number(n) => lua_number(*n),
                        _ => {
                            return Err(mlua::Error::runtime(
                                "Cannot serialise table: table key must be a number or string",
                            ))
                        }
                    };
                    if !first {
                        out.push(',');
                    }
                    first = false;
                    out.push_str(&serde_json::to_string(&key).unwrap_or_default());
                    out.push(':');
                    json_encode(&v, out, depth + 1, config)?;
                }
                out.push('}');
            }
        }
        other => {
            return Err(mlua::Error::runtime(format!(
                "Cannot serialise {}: type not supported",
                other.type_name()
            )))
        }
    }
    Ok(())
}

fn json_to_lua(
    lua: &Lua,
    v: &serde_json::Value,
    depth: usize,
    max_depth: usize,
) -> mlua::Result<LuaValue> {
    let nested = || -> mlua::Result<()> {
        if depth > max_depth {
            return Err(mlua::Error::runtime(format!(
                "Found too many nested data structures ({depth})"
            )));
        }
        Ok(())
    };
    Ok(match v {
        serde_json::Value::Null => {
            LuaValue::LightUserData(mlua::LightUserData(std::ptr::null_mut()))
        }
        serde_json::Value::Bool(b) => LuaValue::Boolean(*b),
        serde_json::Value::Number(n) => LuaValue::Number(n.as_f64().unwrap_or(0.0)),
        serde_json::Value::String(s) => LuaValue::String(lua.create_string(s)?),
        serde_json::Value::Array(items) => {
            nested()?;
            let t = lua.create_table()?;
            for (i, item) in items.iter().enumerate() {
                t.raw_set(i + 1, json_to_lua(lua, item, depth + 1, max_depth)?)?;
            }
            LuaValue::Table(t)
        }
        serde_json::Value::Object(map) => {
            nested()?;
            let t = lua.create_table()?;
            for (k, item) in map {
                t.raw_set(k.as_str(), json_to_lua(lua, item, depth + 1, max_depth)?)?;
            }
            LuaValue::Table(t)
        }
    })
}

/// A Lua number as Lua 5.1 prints it (`%.14g`).
fn lua_number(n: f64) -> String {
    if n == n.trunc() && n.abs() < 1e15 {
        return format!("{}", n as i64);
    }
    let s = format!("{n:.13e}");
    let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i32 = e.parse().unwrap_or(0);
    if (-4..14).contains(&exp) {
        let fixed = format!("{n:.prec$}", prec = (13 - exp).max(0) as usize);
        let fixed = if fixed.contains('.') {
            fixed
                .trim_end_matches('0')
                .trim_end_matches('.')
                .to_string()
        } else {
            fixed
        };
        return fixed;
    }
    let m = m.trim_end_matches('0').trim_end_matches('.');
    format!("{m}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs())
}

/// A command reply as a Lua value (Redis's `redisProtocolToLuaType`).
fn frame_to_lua(lua: &Lua, frame: Frame, resp3: bool) -> mlua::Result<LuaValue> {
    let table_with = |key: &str, v: LuaValue| -> mlua::Result<LuaValue> {
        let t = lua.create_table()?;
        t.raw_set(key, v)?;
        Ok(LuaValue::Table(t))
    };
    Ok(match frame {
        Frame::Integer(n) => LuaValue::Number(n as f64),
        Frame::Bulk(b) => LuaValue::String(lua.create_string(&b)?),
        Frame::Null | Frame::NullArray | Frame::NoReply => {
            if resp3 {
                LuaValue::Nil
            } else {
                LuaValue::Boolean(false)
            }
        }
        Frame::Simple(s) => table_with("ok", LuaValue::String(lua.create_string(s.as_bytes())?))?,
        Frame::Error(e) => table_with("err", LuaValue::String(lua.create_string(e.as_bytes())?))?,
        Frame::Array(items) | Frame::Push(items) => {
            let t = lua.create_table()?;
            for (i, item) in items.into_iter().enumerate() {
                t.raw_set(i + 1, frame_to_lua(lua, item, resp3)?)?;
            }
            LuaValue::Table(t)
        }
        Frame::Set(items) if resp3 => {
            let set = lua.create_table()?;
            for item in items {
                set.raw_set(frame_to_lua(lua, item, resp3)?, true)?;
            }
            table_with("set", LuaValue::Table(set))?
        }
        Frame::Set(items) => frame_to_lua(lua, Frame::Array(items), resp3)?,
        Frame::Map(pairs) if resp3 => {
            let map = lua.create_table()?;
            for (k, v) in pairs {
                map.raw_set(frame_to_lua(lua, k, resp3)?, frame_to_lua(lua, v, resp3)?)?;
            }
            table_with("map", LuaValue::Table(map))?
        }
        Frame::Map(pairs) => frame_to_lua(
            lua,
            Frame::Array(pairs.into_iter().flat_map(|(k, v)| [k, v]).collect()),
            resp3,
        )?,
        Frame::Double(d) if resp3 => table_with("double", LuaValue::Number(d))?,
        Frame::Double(d) => LuaValue::String(lua.create_string(crate::resp::format_double(d))?),
        Frame::Boolean(b) if resp3 => LuaValue::Boolean(b),
        Frame::Boolean(b) => LuaValue::Number(b as i64 as f64),
        Frame::Verbatim(s) if resp3 => {
            let v = lua.create_table()?;
            v.raw_set("format", "txt")?;
            v.raw_set("string", s)?;
            table_with("verbatim_string", LuaValue::Table(v))?
        }
        Frame::Verbatim(s) => LuaValue::String(lua.create_string(s)?),
        Frame::BigNumber(n) if resp3 => {
            table_with("big_number", LuaValue::String(lua.create_string(n)?))?
        }
        Frame::BigNumber(n) => LuaValue::String(lua.create_string(n)?),
        Frame::Attribute(_) => LuaValue::Nil,
        Frame::Multiple(mut frames) => match frames.pop() {
            Some(last) => frame_to_lua(lua, last, resp3)?,
            None => LuaValue::Nil,
        },
    })
}

/// A script's return value as a reply (Redis's `luaReplyToRedisReply`).
fn lua_to_frame(v: &LuaValue, resp3: bool, depth: usize) -> Frame {
    if depth > 100 {
        return Frame::error("ERR reached lua stack limit");
    }
    match v {
        LuaValue::String(s) => Frame::Bulk(Bytes::copy_from_slice(&s.as_bytes())),
        LuaValue::Integer(i) => Frame::Integer(*i),
        LuaValue::Number(n) => Frame::Integer(*n as i64),
        LuaValue::Boolean(b) if resp3 => Frame::Boolean(*b),
        LuaValue::Boolean(true) => Frame::Integer(1),
        LuaValue::Boolean(false) => Frame::Null,
        LuaValue::Table(t) => {
            if let Ok(LuaValue::String(e)) = t.raw_get::<LuaValue>("err") {
                return Frame::error_owned(e.to_string_lossy().to_string());
            }
            if let Ok(LuaValue::String(s)) = t.raw_get::<LuaValue>("ok") {
                return Frame::Simple(Cow::Owned(s.to_string_lossy().to_string()));
            }
            if let Ok(LuaValue::Number(d)) = t.raw_get::<LuaValue>("double") {
                return Frame::Double(d);
            }
            if let Ok(LuaValue::String(b)) = t.raw_get::<LuaValue>("big_number") {
                // Line breaks become spaces, as Redis writes a big number.
                return Frame::BigNumber(b.to_string_lossy().replace(['\r', '\n'], " "));
            }
            if let Ok(LuaValue::Table(v)) = t.raw_get::<LuaValue>("verbatim_string") {
                if let Ok(LuaValue::String(text)) = v.raw_get::<LuaValue>("string") {
                    return Frame::Verbatim(text.to_string_lossy().to_string());
                }
            }
            if let Ok(LuaValue::Table(m)) = t.raw_get::<LuaValue>("map") {
                return Frame::Map(
                    m.pairs::<LuaValue, LuaValue>()
                        .filter_map(|p| p.ok())
                        .map(|(k, v)| {
                            (
                                lua_to_frame(&k, resp3, depth + 1),
                                lua_to_frame(&v, resp3, depth + 1),
                            )
                        })
                        .collect(),
                );
            }
            if let Ok(LuaValue::Table(s)) = t.raw_get::<LuaValue>("set") {
                return Frame::Set(
                    s.pairs::<LuaValue, LuaValue>()
                        .filter_map(|p| p.ok())
                        .map(|(k, _)| lua_to_frame(&k, resp3, depth + 1))
                        .collect(),
                );
            }
            let mut items = Vec::new();
            for i in 1.. {
                match t.raw_get::<LuaValue>(i) {
                    Ok(LuaValue::Nil) | Err(_) => break,
                    Ok(v) => items.push(lua_to_frame(&v, resp3, depth + 1)),
                }
            }
            Frame::Array(items)
        }
        _ => Frame::Null,
    }
}

/// An argument of `redis.call`: strings as they are, numbers as Lua
/// prints them.
fn lua_arg(v: &LuaValue) -> Option<Bytes> {
    match v {
        LuaValue::String(s) => Some(Bytes::copy_from_slice(&s.as_bytes())),
        LuaValue::Integer(i) => Some(Bytes::from(i.to_string())),
        LuaValue::Number(n) => Some(Bytes::from(lua_number(*n))),
        _ => None,
    }
}

/// An error reply raised into Lua from Rust, marked so the handler can
/// recover its text from mlua's wrapping.
fn raised(text: &str) -> mlua::Error {
    mlua::Error::runtime(format!("\u{1}{text}\u{1}"))
}

/// The same for the error reply of a command the script ran: it was
/// counted in the error stats when it happened, so the script's failing
/// with it is not counted again (Redis's `ignore_error_stats_update`).
fn raised_counted(text: &str) -> mlua::Error {
    mlua::Error::runtime(format!("\u{1}\u{2}{text}\u{1}"))
}

/// The field that marks an error table as already counted.
const COUNTED: &str = "ignore_error_stats_update";

/// `redis.error_reply(text)`'s error: an error code first (`ERR` when
/// the text has none), as Redis builds it.
fn error_reply_text(text: &str) -> String {
    let text = text.strip_prefix('-').unwrap_or(text);
    let (code, msg) = match text.split_once(' ') {
        Some((code, msg)) => (code, msg),
        None => ("ERR", text),
    };
    format!("{code} {}", msg.trim_matches(['\r', '\n']))
}

/// A command the script called refused before it ran: counted as Redis
/// counts a rejected call, then given to the script as an error already
/// counted.
fn rejected(
    ctx: &mut ExecCtx,
    lua: &Lua,
    spec: Option<&CommandSpec>,
    text: &str,
) -> mlua::Result<LuaValue> {
    ctx.cmdstats.error(text);
    ctx.session.error_replies += 1;
    if let Some(spec) = spec {
        ctx.cmdstats.rejected(spec.name);
    }
    let t = lua.create_table()?;
    t.raw_set("err", text)?;
    t.raw_set(COUNTED, true)?;
    Ok(LuaValue::Table(t))
}

fn error_table(lua: &Lua, text: &str) -> mlua::Result<LuaValue> {
    let t = lua.create_table()?;
    t.raw_set("err", text)?;
    Ok(LuaValue::Table(t))
}

/// What `redis.pcall` does for one call from the script.
fn script_call(
    ctx: &mut ExecCtx,
    lua: &Lua,
    args: MultiValue,
    limits: CallLimits,
) -> mlua::Result<LuaValue> {
    if args.is_empty() {
        return error_table(
            lua,
            "ERR Please specify at least one argument for this redis lib call",
        );
    }
    let mut argv = Vec::with_capacity(args.len());
    for a in args.iter() {
        match lua_arg(a) {
            Some(b) => argv.push(b),
            None => {
                return error_table(
                    lua,
                    "ERR Lua redis lib command arguments must be strings or integers",
                )
            }
        }
    }
    let Some(spec) = super::lookup(&argv[0]) else {
        return rejected(
            ctx,
            lua,
            None,
            "ERR Unknown Redis command called from script",
        );
    };
    if spec.has(NOSCRIPT)
        && !ctx
            .node
            .stats
            .script_deny_off
            .load(std::sync::atomic::Ordering::Relaxed)
    {
        return rejected(
            ctx,
            lua,
            Some(spec),
            "ERR This Redis command is not allowed from script",
        );
    }
    if !spec.arity_ok(argv.len()) {
        return rejected(
            ctx,
            lua,
            Some(spec),
            "ERR Wrong number of args calling Redis command from script",
        );
    }
    if let Some(denial) = super::acl::script_denial(ctx, spec, &argv) {
        return rejected(ctx, lua, Some(spec), &denial);
    }
    let repl = &ctx.node.repl;
    if repl.is_replica()
        && !repl.link_up()
        && !ctx.node.settings.read().replica_serve_stale_data
        && !spec.has(STALE)
    {
        return rejected(
            ctx,
            lua,
            Some(spec),
            "ERR Can not execute the command on a stale replica",
        );
    }
    if limits.read_only && (spec.has(WRITE) || spec.has(MAY_REPLICATE)) {
        return rejected(
            ctx,
            lua,
            Some(spec),
            "ERR Write commands are not allowed from read-only scripts.",
        );
    }
    // Over maxmemory a script may not start growing the dataset, but one
    // that already wrote must go on (it cannot be undone), as may one
    // flagged allow-oom.
    let oom_exempt = limits.allow_oom || ctx.node.script.has_written();
    if spec.has(WRITE) {
        ctx.node.script.wrote();
    }
    let resp3 = lua.named_registry_value::<i64>("quire_resp").unwrap_or(2) == 3;
    let proto = std::mem::replace(
        &mut ctx.session.proto,
        if resp3 {
            Protocol::Resp3
        } else {
            Protocol::Resp2
        },
    );
    let was_exempt = std::mem::replace(&mut ctx.session.oom_exempt, oom_exempt);
    let reply = super::execute(ctx, &argv);
    ctx.session.oom_exempt = was_exempt;
    ctx.session.proto = proto;
    let counted = reply.is_error();
    let value = frame_to_lua(lua, reply, resp3)?;
    if let (true, LuaValue::Table(t)) = (counted, &value) {
        t.raw_set(COUNTED, true)?;
    }
    Ok(value)
}

/// Parses `numkeys`, checks it against the arguments.
fn numkeys(args: &[Bytes]) -> Result<usize, Frame> {
    let n = int(&args[2])?;
    if n < 0 {
        return Err(Frame::error("ERR Number of keys can't be negative"));
    }
    if n as usize > args.len() - 3 {
        return Err(Frame::error(
            "ERR Number of keys can't be greater than number of args",
        ));
    }
    Ok(n as usize)
}

fn lua_of(ctx: &mut ExecCtx) -> Result<Lua, Frame> {
    if ctx.scripts.lua.is_none() {
        let lua =
            new_lua().map_err(|e| Frame::error_owned(format!("ERR cannot start Lua: {e}")))?;
        ctx.scripts.lua = Some(lua);
    }
    ctx.scripts
        .lua
        .clone()
        .ok_or(Frame::error("ERR Lua is not available"))
}

/// The environment scripts run in (see [`PROTECT`]).
fn scripts_env(lua: &Lua) -> Result<Table, Frame> {
    protection(lua)
        .and_then(|p| p.raw_get("scripts_env"))
        .map_err(|e| Frame::error_owned(format!("ERR Lua is not available: {e}")))
}

/// The helpers [`PROTECT`] returned.
pub(super) fn protection(lua: &Lua) -> mlua::Result<Table> {
    lua.named_registry_value("quire_protection")
}

/// Compiles `body` into the cache (SCRIPT LOAD, EVAL); its SHA.
fn load(ctx: &mut ExecCtx, body: &Bytes) -> Result<String, Frame> {
    let sha = sha1_hex(body);
    if ctx.scripts.cache.contains_key(&sha) {
        return Ok(sha);
    }
    let (_, code) = shebang(body)?;
    let lua = lua_of(ctx)?;
    let function = lua
        .load(code)
        .set_name("@user_script")
        .set_environment(scripts_env(&lua)?)
        .into_function()
        .map_err(|e| {
            let msg = match &e {
                mlua::Error::SyntaxError { message, .. } => message.clone(),
                other => other.to_string(),
            };
            Frame::error_owned(format!(
                "ERR Error compiling script (new function): {}",
                msg.lines().next().unwrap_or("")
            ))
        })?;
    ctx.scripts.cache.insert(
        sha.clone(),
        Script {
            body: body.clone(),
            function,
        },
    );
    Ok(sha)
}

fn eval(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let sha = load(ctx, &args[1])?;
    eval_cached(ctx, args, &sha, false)
}

fn eval_ro(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let sha = load(ctx, &args[1])?;
    eval_cached(ctx, args, &sha, true)
}

fn evalsha(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let sha = text(&args[1]).to_ascii_lowercase();
    eval_cached(ctx, args, &sha, false)
}

fn evalsha_ro(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let sha = text(&args[1]).to_ascii_lowercase();
    eval_cached(ctx, args, &sha, true)
}

/// Runs the cached script `sha` with the command's keys and arguments.
fn eval_cached(ctx: &mut ExecCtx, args: &[Bytes], sha: &str, read_only_command: bool) -> CmdResult {
    let nkeys = numkeys(args)?;
    let Some(script) = ctx.scripts.cache.get(sha) else {
        return Err(Frame::error(
            "NOSCRIPT No matching script. Please use EVAL.",
        ));
    };
    let function = script.function.clone();
    let (flags, _) = shebang(&script.body)?;
    let lua = lua_of(ctx)?;
    run_script(
        ctx,
        Run {
            lua,
            function,
            name: sha.to_string(),
            flags,
            read_only_command,
            is_function: false,
            args,
            nkeys,
        },
    )
}

/// One script run: what runs, and how it was asked for.
pub(super) struct Run<'a> {
    pub lua: Lua,
    pub function: mlua::Function,
    /// The SHA1 of an EVAL script, else the function's name (errors and
    /// FUNCTION STATS give it).
    pub name: String,
    /// What the script declared; None for an EVAL script without a
    /// shebang (Redis's compatibility mode).
    pub flags: Option<ScriptFlags>,
    /// Called as EVAL_RO, EVALSHA_RO or FCALL_RO.
    pub read_only_command: bool,
    /// A function gets KEYS and ARGV as its parameters, an EVAL script as
    /// globals.
    pub is_function: bool,
    /// The whole command; keys and arguments start at 3.
    pub args: &'a [Bytes],
    pub nkeys: usize,
}

/// What the node's state allows a script that declared `flags` (Redis's
/// `scriptPrepareForRun`).
fn check_run_allowed(
    ctx: &ExecCtx,
    flags: Option<ScriptFlags>,
    read_only_command: bool,
) -> Result<(), Frame> {
    let obeyed = ctx.session.replicated;
    let repl = &ctx.node.repl;
    let stale =
        repl.is_replica() && !repl.link_up() && !ctx.node.settings.read().replica_serve_stale_data;
    let Some(flags) = flags else {
        if stale {
            return Err(Frame::error(
                "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
            ));
        }
        return Ok(());
    };
    if stale && !flags.allow_stale {
        return Err(Frame::error("MASTERDOWN Link with MASTER is down, replica-serve-stale-data is set to 'no' and 'allow-stale' flag is not set on the script."));
    }
    if !flags.no_writes {
        if repl.is_replica() && ctx.node.settings.read().replica_read_only && !obeyed {
            return Err(Frame::error(
                "READONLY Can not run script with write flag on readonly replica",
            ));
        }
        if ctx.node.log.is_failing() && !obeyed {
            return Err(Frame::error("MISCONF Redis is configured to persist data to AOF, but it's currently unable to persist to disk. Writable scripts are blocked. Use 'no-writes' flag for read only scripts."));
        }
        if read_only_command {
            return Err(Frame::error(
                "ERR Can not execute a script with write flag using *_ro command.",
            ));
        }
        if !repl.is_replica() && !super::replication::enough_good_replicas(ctx) {
            return Err(Frame::error(
                "NOREPLICAS Not enough good replicas to write.",
            ));
        }
    }
    if !flags.allow_oom
        && !flags.no_writes
        && !obeyed
        && ctx
            .node
            .stats
            .over_maxmemory
            .load(std::sync::atomic::Ordering::Acquire)
    {
        return Err(Frame::error("OOM allow-oom flag is not set on the script, can not run it when used memory > 'maxmemory'"));
    }
    Ok(())
}

/// Runs a script or function: its checks, then the Lua call with the
/// command's keys and arguments, its commands' effects wrapped in one
/// transaction, the reply converted as Redis does.
pub(super) fn run_script(ctx: &mut ExecCtx, run: Run) -> CmdResult {
    check_run_allowed(ctx, run.flags, run.read_only_command)?;
    let flags = run.flags.unwrap_or_default();
    let limits = CallLimits {
        read_only: run.read_only_command || flags.no_writes,
        allow_oom: flags.allow_oom,
    };
    let lua = &run.lua;
    let (keys, argv) = (&run.args[3..3 + run.nkeys], &run.args[3 + run.nkeys..]);
    let outer_tx = ctx.repl.in_tx();
    if !outer_tx {
        ctx.repl.begin_tx();
    }
    let was_in_exec = std::mem::replace(&mut ctx.session.in_exec, true);
    let was_in_script = std::mem::replace(&mut ctx.session.in_script, true);
    // A SELECT in the script is the script's own.
    let caller_db = ctx.session.db;
    let threshold = ctx.node.settings.read().busy_reply_threshold as i64;
    let (libraries, functions) = ctx
        .scripts
        .functions
        .as_ref()
        .map(|e| (e.libraries.len(), e.function_count()))
        .unwrap_or((0, 0));
    ctx.node.script.start(
        crate::node::unix_ms(),
        crate::node::script_state::Running {
            function: run.is_function,
            name: run.name.clone(),
            // FUNCTION STATS shows it; nothing shows an EVAL's.
            command: if run.is_function {
                run.args.to_vec()
            } else {
                Vec::new()
            },
            libraries,
            functions,
        },
    );
    let result = run_in_lua(
        ctx,
        lua,
        &run.function,
        keys,
        argv,
        run.is_function,
        limits,
        threshold,
    );
    ctx.node.script.finish();
    if !ctx.node.is_shutting_down() {
        ctx.node.script.clear_kill();
    }
    ctx.session.in_exec = was_in_exec;
    ctx.session.in_script = was_in_script;
    ctx.session.db = caller_db;
    if !outer_tx {
        ctx.repl.end_tx();
    }
    // What a script that ran out of memory left is garbage now: collected
    // at once, so the next script has room.
    if lua.used_memory() > LUA_MEMORY_LIMIT / 2 {
        let _ = lua.gc_collect();
    }
    // The script's reply protocol (redis.setresp) is read, then reset for
    // the next script.
    let resp3 = lua.named_registry_value::<i64>("quire_resp").unwrap_or(2) == 3;
    let _ = lua.set_named_registry_value("quire_resp", 2);
    // An error the script ends with that a command of it already gave was
    // counted then.
    let counted = match &result {
        Ok((_, LuaValue::Table(t))) => t.raw_get::<bool>(COUNTED).unwrap_or(false),
        _ => false,
    };
    ctx.session.error_counted = counted;
    match result {
        // Booleans follow the script's protocol; the client's own decides
        // how the rest is written, as in Redis.
        Ok((true, value)) => Ok(lua_to_frame(&value, resp3, 0)),
        Ok((false, err)) => Err(script_error(&err, &run.name)),
        Err(e) => Err(Frame::error_owned(format!(
            "ERR Error running script {}, {}",
            run.name,
            e.to_string().lines().next().unwrap_or("")
        ))),
    }
}

/// The reply for a script that raised `err` (the handler's table).
fn script_error(err: &LuaValue, funcname: &str) -> Frame {
    let LuaValue::Table(t) = err else {
        // Errors the handler never saw (out of memory): their text.
        let text = match err {
            LuaValue::String(s) => s.to_string_lossy().to_string(),
            _ => "execution failure".into(),
        };
        return Frame::error_owned(format!("ERR Error running script {funcname}, {text}"));
    };
    let msg = t
        .raw_get::<String>("err")
        .unwrap_or_else(|_| "ERR unknown error".into());
    let msg = msg.strip_prefix('-').unwrap_or(&msg).to_string();
    let (source, line) = (
        t.raw_get::<String>("source").ok(),
        t.raw_get::<i64>("line").ok(),
    );
    match (source, line) {
        (Some(source), Some(line)) if line > 0 => {
            Frame::error_owned(format!("{msg} script: {funcname}, on {source}:{line}."))
        }
        _ => Frame::error_owned(msg),
    }
}

/// Set (as the interpreter's app data) once the running script was
/// killed; cleared when it ends.
struct Killed;

/// What the commands a script calls are held to.
#[derive(Clone, Copy)]
struct CallLimits {
    /// No writes (a `_RO` command or a `no-writes` script).
    read_only: bool,
    /// Writes over `maxmemory` allowed (`allow-oom`).
    allow_oom: bool,
}

#[allow(clippy::too_many_arguments)]
fn run_in_lua(
    ctx: &mut ExecCtx,
    lua: &Lua,
    function: &mlua::Function,
    keys: &[Bytes],
    argv: &[Bytes],
    as_parameters: bool,
    limits: CallLimits,
    threshold_ms: i64,
) -> mlua::Result<(bool, LuaValue)> {
    let g = lua.globals();
    let array = |items: &[Bytes]| -> mlua::Result<Table> {
        let t = lua.create_table_with_capacity(items.len(), 0)?;
        for (i, item) in items.iter().enumerate() {
            t.raw_set(i + 1, lua.create_string(item)?)?;
        }
        Ok(t)
    };
    let (keys, argv) = (array(keys)?, array(argv)?);
    if !as_parameters {
        g.raw_set("KEYS", keys.clone())?;
        g.raw_set("ARGV", argv.clone())?;
    }
    // The hook runs on this thread while the script holds the lock; the
    // state it polls is the node's, so other clients see BUSY and can kill.
    let state = ctx.node.script.clone();
    // Redis's text for functions too.
    let killed = "ERR Script killed by user with SCRIPT KILL...";
    lua.set_hook(
        mlua::HookTriggers::new().every_nth_instruction(100_000),
        move |lua, _| {
            let now = crate::node::unix_ms();
            if state.poll(now, threshold_ms) {
                lua.set_app_data(Killed);
                return Err(raised(killed));
            }
            if state.should_leave_thread(now) {
                crate::node::script_state::leave_runtime_thread();
            }
            Ok(mlua::VmState::Continue)
        },
    )?;
    let redis: Table = lua.named_registry_value("quire_redis")?;
    let run: mlua::Function = g.raw_get("__quire_run")?;
    // Both functions run commands on the one context; a script cannot
    // re-enter Lua from a command, so the borrow never overlaps.
    let ctx = std::cell::RefCell::new(ctx);
    let result = lua.scope(|scope| {
        let pcall = scope.create_function(|lua, args: MultiValue| {
            let mut ctx = ctx
                .try_borrow_mut()
                .map_err(|_| mlua::Error::RecursiveMutCallback)?;
            script_call(&mut ctx, lua, args, limits)
        })?;
        redis.raw_set("pcall", pcall)?;
        // redis.call: the same, raising an error reply. A Rust function
        // (not a Lua wrapper), so `return redis.call(...)` keeps the
        // script's frame for the error's line, as in Redis.
        let call = scope.create_function(|lua, args: MultiValue| {
            let mut ctx = ctx
                .try_borrow_mut()
                .map_err(|_| mlua::Error::RecursiveMutCallback)?;
            let v = script_call(&mut ctx, lua, args, limits)?;
            if let LuaValue::Table(t) = &v {
                if let Ok(LuaValue::String(e)) = t.raw_get::<LuaValue>("err") {
                    let counted = t.raw_get::<bool>(COUNTED).unwrap_or(false);
                    let text = e.to_string_lossy();
                    return Err(if counted {
                        raised_counted(&text)
                    } else {
                        raised(&text)
                    });
                }
            }
            Ok(v)
        })?;
        redis.raw_set("call", call)?;
        let acl_check = scope.create_function(|_, args: MultiValue| {
            let mut ctx = ctx
                .try_borrow_mut()
                .map_err(|_| mlua::Error::RecursiveMutCallback)?;
            let argv: Option<Vec<Bytes>> = args.iter().map(lua_arg).collect();
            let Some(argv) = argv.filter(|a| !a.is_empty()) else {
                return Err(raised(
                    "ERR Please specify at least one argument for this redis lib call",
                ));
            };
            let Some(spec) = super::lookup(&argv[0]).filter(|s| s.arity_ok(argv.len())) else {
                return Err(raised(
                    "ERR Invalid command passed to redis.acl_check_cmd()",
                ));
            };
            Ok(super::acl::user_may_run(&mut ctx, spec, &argv))
        })?;
        redis.raw_set("acl_check_cmd", acl_check)?;
        if as_parameters {
            run.call::<(bool, LuaValue)>((function.clone(), keys, argv))
        } else {
            run.call::<(bool, LuaValue)>(function.clone())
        }
    });
    lua.remove_hook();
    lua.remove_app_data::<Killed>();
    result
}

fn script(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let sub = args[1].to_ascii_lowercase();
    match sub.as_slice() {
        b"load" if args.len() == 3 => Ok(Frame::bulk(load(ctx, &args[2])?)),
        b"exists" if args.len() >= 3 => Ok(Frame::Array(
            args[2..]
                .iter()
                .map(|s| {
                    let sha = text(s).to_ascii_lowercase();
                    Frame::Integer(ctx.scripts.cache.contains_key(&sha) as i64)
                })
                .collect(),
        )),
        b"flush" if args.len() <= 3 => {
            if let Some(mode) = args.get(2) {
                if !is(mode, "async") && !is(mode, "sync") {
                    return Err(Frame::error(
                        "ERR SCRIPT FLUSH only support SYNC|ASYNC option",
                    ));
                }
            }
            ctx.scripts.flush();
            Ok(Frame::ok())
        }
        // Under the lock no script runs; a busy one is killed by the
        // connection layer before it gets here.
        b"kill" if args.len() == 2 => {
            Err(Frame::error("NOTBUSY No scripts in execution right now."))
        }
        b"help" if args.len() == 2 => Ok(Frame::Array(
            [
                "SCRIPT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "DEBUG (YES|SYNC|NO)",
                "    Set the debug mode for subsequent scripts executed.",
                "EXISTS <sha1> [<sha1> ...]",
                "    Return information about the existence of the scripts in the script cache.",
                "FLUSH [ASYNC|SYNC]",
                "    Flush the Lua scripts cache. Very dangerous on replicas.",
                "KILL",
                "    Kill the currently executing Lua script.",
                "LOAD <script>",
                "    Load a script into the scripts cache without executing it.",
                "HELP",
                "    Prints this help.",
            ]
            .iter()
            .map(|l| Frame::simple(l))
            .collect(),
        )),
        _ => Err(super::keys::unknown_subcommand(&args[1], "SCRIPT")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lua_numbers_print_as_lua_does() {
        assert_eq!(lua_number(3.0), "3");
        assert_eq!(lua_number(0.1), "0.1");
        assert_eq!(lua_number(1e20), "1e+20");
        assert_eq!(lua_number(-2.5), "-2.5");
    }

    #[test]
    fn shebang_flags() {
        let (f, rest) = shebang(b"#!lua flags=no-writes\nreturn 1").unwrap();
        assert!(f.unwrap().no_writes);
        assert_eq!(rest, b"\nreturn 1");
        assert!(shebang(b"#!python\n").is_err());
        assert!(shebang(b"#!lua flags=bogus\n").is_err());
        assert!(shebang(b"#!lua flags=NO-WRITES\n").is_err());
        assert!(shebang(b"return 1").unwrap().0.is_none());
        assert_eq!(error_reply_text(""), "ERR ");
        assert_eq!(error_reply_text("MYERR"), "ERR MYERR");
        assert_eq!(error_reply_text("-X y"), "X y");
        assert_eq!(shebang(b"#!lua\n").unwrap().0, Some(ScriptFlags::default()));
    }
}
