//! The `cmsgpack` library Redis loads into Lua (lua-cmsgpack): `pack`
//! encodes each argument as MessagePack and concatenates them, `unpack`
//! returns every object a string holds. Job queues (BullMQ) pass their
//! options this way.
//!
//! Encoding follows lua-cmsgpack: a table whose keys are exactly 1..n is
//! an array, any other table a map; integral numbers are integers, others
//! float 32 when exact, else float 64; nesting past 16 levels packs nil.
//! Decoding is rmpv's, depth-bounded, so hostile input is an error.

use mlua::{Lua, MultiValue, Value as LuaValue};

const MAX_NESTING: usize = 16;

pub(super) fn register(lua: &Lua) -> mlua::Result<()> {
    let t = lua.create_table()?;
    t.set(
        "pack",
        lua.create_function(|lua, args: MultiValue| {
            if args.is_empty() {
                return Err(mlua::Error::runtime("MessagePack pack needs input."));
            }
            let mut out = Vec::new();
            for v in args.iter() {
                encode(v, &mut out, 0);
            }
            lua.create_string(&out)
        })?,
    )?;
    t.set(
        "unpack",
        lua.create_function(|lua, s: mlua::String| {
            let (_, values) = unpack(lua, &s.as_bytes(), 0, 0)?;
            Ok(MultiValue::from_vec(values))
        })?,
    )?;
    // unpack_one(s[, offset]) and unpack_limit(s, limit[, offset]): the
    // byte offset to go on from (-1 at the end), then the objects.
    t.set(
        "unpack_one",
        lua.create_function(|lua, (s, offset): (mlua::String, Option<i64>)| {
            unpack_limited(lua, &s.as_bytes(), 1, offset.unwrap_or(0))
        })?,
    )?;
    t.set(
        "unpack_limit",
        lua.create_function(
            |lua, (s, limit, offset): (mlua::String, i64, Option<i64>)| {
                unpack_limited(lua, &s.as_bytes(), limit, offset.unwrap_or(0))
            },
        )?,
    )?;
    lua.globals().set("cmsgpack", t)
}

/// Decodes up to `limit` objects (0: all) from byte `offset`; the offset
/// after them (-1 when the input is used up) and the objects.
fn unpack(
    lua: &Lua,
    bytes: &[u8],
    limit: usize,
    offset: usize,
) -> mlua::Result<(i64, Vec<LuaValue>)> {
    let mut rest = bytes
        .get(offset..)
        .ok_or_else(|| mlua::Error::runtime("Start offset greater than input length."))?;
    let mut values = Vec::new();
    while !rest.is_empty() && (limit == 0 || values.len() < limit) {
        let v = rmpv::decode::read_value_with_max_depth(&mut rest, 64)
            .map_err(|_| mlua::Error::runtime("Missing bytes in input."))?;
        values.push(to_lua(lua, &v)?);
    }
    let next = if rest.is_empty() {
        -1
    } else {
        (bytes.len() - rest.len()) as i64
    };
    Ok((next, values))
}

fn unpack_limited(lua: &Lua, bytes: &[u8], limit: i64, offset: i64) -> mlua::Result<MultiValue> {
    if limit < 0 || offset < 0 {
        return Err(mlua::Error::runtime(
            "Invalid request to unpack with offset of -1 and limit of -1.",
        ));
    }
    let (next, values) = unpack(lua, bytes, limit as usize, offset as usize)?;
    let mut out = Vec::with_capacity(values.len() + 1);
    out.push(LuaValue::Integer(next));
    out.extend(values);
    Ok(MultiValue::from_vec(out))
}

fn encode(v: &LuaValue, out: &mut Vec<u8>, depth: usize) {
    match v {
        LuaValue::Boolean(b) => out.push(if *b { 0xc3 } else { 0xc2 }),
        LuaValue::Integer(n) => encode_int(*n, out),
        LuaValue::Number(n) => encode_number(*n, out),
        LuaValue::String(s) => encode_str(&s.as_bytes(), out),
        LuaValue::Table(t) if depth < MAX_NESTING => encode_table(t, out, depth),
        _ => out.push(0xc0),
    }
}

fn encode_number(n: f64, out: &mut Vec<u8>) {
    if n.fract() == 0.0 && n >= i64::MIN as f64 && n < i64::MAX as f64 {
        return encode_int(n as i64, out);
    }
    if (n as f32) as f64 == n || n.is_nan() {
        out.push(0xca);
        out.extend_from_slice(&(n as f32).to_be_bytes());
    } else {
        out.push(0xcb);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

fn encode_int(n: i64, out: &mut Vec<u8>) {
    if n >= 0 {
        let u = n as u64;
        if u <= 127 {
            out.push(u as u8);
        } else if u <= u8::MAX as u64 {
            out.extend_from_slice(&[0xcc, u as u8]);
        } else if u <= u16::MAX as u64 {
            out.push(0xcd);
            out.extend_from_slice(&(u as u16).to_be_bytes());
        } else if u <= u32::MAX as u64 {
            out.push(0xce);
            out.extend_from_slice(&(u as u32).to_be_bytes());
        } else {
            out.push(0xcf);
            out.extend_from_slice(&u.to_be_bytes());
        }
    } else if n >= -32 {
        out.push(n as i8 as u8);
    } else if n >= i8::MIN as i64 {
        out.extend_from_slice(&[0xd0, n as i8 as u8]);
    } else if n >= i16::MIN as i64 {
        out.push(0xd1);
        out.extend_from_slice(&(n as i16).to_be_bytes());
    } else if n >= i32::MIN as i64 {
        out.push(0xd2);
        out.extend_from_slice(&(n as i32).to_be_bytes());
    } else {
        out.push(0xd3);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

fn encode_str(s: &[u8], out: &mut Vec<u8>) {
    let n = s.len();
    if n < 32 {
        out.push(0xa0 | n as u8);
    } else if n <= u8::MAX as usize {
        out.extend_from_slice(&[0xd9, n as u8]);
    } else if n <= u16::MAX as usize {
        out.push(0xda);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0xdb);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
    out.extend_from_slice(s);
}

fn encode_len(n: usize, fix: u8, b16: u8, b32: u8, out: &mut Vec<u8>) {
    if n < 16 {
        out.push(fix | n as u8);
    } else if n <= u16::MAX as usize {
        out.push(b16);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(b32);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
}

fn encode_table(t: &mlua::Table, out: &mut Vec<u8>, depth: usize) {
    // An array when the keys are exactly the integers 1..n. Counted in one
    // pass and written in another, never holding the pairs (a big table
    // would exhaust the interpreter's references).
    let (mut count, mut max, mut is_array) = (0usize, 0i64, true);
    for pair in t.pairs::<LuaValue, mlua::Value>() {
        let Ok((k, _)) = pair else { continue };
        count += 1;
        let i = match k {
            LuaValue::Integer(i) => i,
            LuaValue::Number(f) if f.fract() == 0.0 => f as i64,
            _ => {
                is_array = false;
                continue;
            }
        };
        max = max.max(i);
        is_array &= i >= 1;
    }
    if is_array && max as usize == count {
        encode_len(count, 0x90, 0xdc, 0xdd, out);
        for i in 1..=count {
            let v: LuaValue = t.raw_get(i).unwrap_or(LuaValue::Nil);
            encode(&v, out, depth + 1);
        }
    } else {
        encode_len(count, 0x80, 0xde, 0xdf, out);
        for pair in t.pairs::<LuaValue, LuaValue>() {
            let Ok((k, v)) = pair else { continue };
            encode(&k, out, depth + 1);
            encode(&v, out, depth + 1);
        }
    }
}

fn to_lua(lua: &Lua, v: &rmpv::Value) -> mlua::Result<LuaValue> {
    use rmpv::Value as M;
    Ok(match v {
        M::Nil | M::Ext(..) => LuaValue::Nil,
        M::Boolean(b) => LuaValue::Boolean(*b),
        M::Integer(i) => match i.as_i64() {
            Some(n) => LuaValue::Number(n as f64),
            None => LuaValue::Number(i.as_u64().unwrap_or(0) as f64),
        },
        M::F32(f) => LuaValue::Number(*f as f64),
        M::F64(f) => LuaValue::Number(*f),
        M::String(s) => LuaValue::String(lua.create_string(s.as_bytes())?),
        M::Binary(b) => LuaValue::String(lua.create_string(b)?),
        M::Array(items) => {
            let t = lua.create_table_with_capacity(items.len(), 0)?;
            for (i, item) in items.iter().enumerate() {
                t.raw_set(i + 1, to_lua(lua, item)?)?;
            }
            LuaValue::Table(t)
        }
        M::Map(pairs) => {
            let t = lua.create_table_with_capacity(0, pairs.len())?;
            for (k, val) in pairs {
                let k = to_lua(lua, k)?;
                if !matches!(k, LuaValue::Nil) {
                    t.raw_set(k, to_lua(lua, val)?)?;
                }
            }
            LuaValue::Table(t)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_as_lua_cmsgpack() {
        let lua = Lua::new();
        register(&lua).unwrap();
        let packed: mlua::String = lua
            .load("return cmsgpack.pack({1, 2, 'x'}, {a = 1.5}, true, -40, 300)")
            .eval()
            .unwrap();
        // fixarray [1, 2, "x"], fixmap {"a": 1.5 as float32}, true, int8, uint16
        assert_eq!(
            packed.as_bytes().as_ref(),
            b"\x93\x01\x02\xa1x\x81\xa1a\xca\x3f\xc0\x00\x00\xc3\xd0\xd8\xcd\x01\x2c"
        );
        let ok: bool = lua
            .load(
                "local a, b, c = cmsgpack.unpack(cmsgpack.pack({k = {1, 2}}, 'two', 3))
                 return a.k[2] == 2 and b == 'two' and c == 3",
            )
            .eval()
            .unwrap();
        assert!(ok);
        let bad: mlua::Result<LuaValue> = lua.load("return cmsgpack.unpack('\\220\\255')").eval();
        assert!(bad.is_err());
    }
}
