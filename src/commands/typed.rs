//! Typed access to values for the collection families: read a key as a
//! hash/list/set/zset (WRONGTYPE otherwise), or get it for writing, created
//! on demand and un-shared from any snapshot (copy-on-write).

use super::args::ERR_WRONGTYPE;
use super::ExecCtx;
use crate::keyspace::stream::Stream;
use crate::keyspace::{HashValue, ListValue, SetValue, Value, ZSet};
use crate::resp::Frame;
use std::sync::Arc;

macro_rules! typed_access {
    ($read:ident, $write:ident, $variant:ident, $ty:ty) => {
        /// Reads the key as this type: `Ok(None)` when missing.
        pub fn $read<'a>(ctx: &'a mut ExecCtx, key: &[u8]) -> Result<Option<&'a $ty>, Frame> {
            let now = ctx.now_ms;
            match ctx.db().get(key, now) {
                None => Ok(None),
                Some(Value::$variant(v)) => Ok(Some(v)),
                Some(_) => Err(ERR_WRONGTYPE),
            }
        }

        /// Gets the key as this type for modification, creating an empty
        /// value if `create` and missing. The caller reports the change with
        /// [`ExecCtx::modified`] and removes the key if it became empty.
        pub fn $write<'a>(
            ctx: &'a mut ExecCtx,
            key: &[u8],
            create: bool,
        ) -> Result<Option<&'a mut $ty>, Frame> {
            let now = ctx.now_ms;
            let db = ctx.db();
            match db.get_mut(key, now) {
                Some(Value::$variant(_)) => {}
                Some(_) => return Err(ERR_WRONGTYPE),
                None if create => db.set(key, Value::$variant(Arc::new(Default::default())), true),
                None => return Ok(None),
            }
            match db.get_mut(key, now) {
                Some(Value::$variant(v)) => Ok(Some(Arc::make_mut(v))),
                _ => Err(ERR_WRONGTYPE),
            }
        }
    };
}

typed_access!(read_hash, write_hash, Hash, HashValue);
typed_access!(read_list, write_list, List, ListValue);
typed_access!(read_set, write_set, Set, SetValue);
typed_access!(read_zset, write_zset, ZSet, ZSet);
typed_access!(read_stream, write_stream, Stream, Stream);

/// Checks the key's type without borrowing its value.
pub fn check_type(
    ctx: &mut ExecCtx,
    key: &[u8],
    kind: crate::keyspace::ValueKind,
) -> Result<bool, Frame> {
    let now = ctx.now_ms;
    match ctx.db().peek(key, now) {
        None => Ok(false),
        Some(v) if v.kind() == kind => Ok(true),
        Some(_) => Err(ERR_WRONGTYPE),
    }
}
