//! The scripts a node runs, kept beside the data (under the dataset lock,
//! as scripts run there): the EVAL script cache and its interpreter, and
//! the compiled function libraries with theirs. What the scripts can do —
//! the `redis` API, conversions, limits, FUNCTION's rules — is
//! `commands::scripting` and `commands::functions`; this is only their
//! home. The libraries' sources are data (`keyspace::Libraries`); the
//! engine here is what was compiled from them.

use std::collections::{BTreeMap, HashMap};

/// A loaded script: its source and compiled function.
pub struct Script {
    pub body: bytes::Bytes,
    pub function: mlua::Function,
}

#[derive(Default)]
pub struct Scripts {
    /// The EVAL interpreter, made on first use (`SCRIPT FLUSH` drops it).
    pub lua: Option<mlua::Lua>,
    /// By lowercase SHA1 hex of the body.
    pub cache: HashMap<String, Script>,
    /// The function libraries, compiled (made on first use; rebuilt when
    /// the keyspace's libraries changed under it, as a full sync does).
    pub functions: Option<FunctionEngine>,
}

impl Scripts {
    /// SCRIPT FLUSH: the EVAL cache and interpreter; functions stay.
    pub fn flush(&mut self) {
        self.cache.clear();
        self.lua = None;
    }

    /// Bytes of script sources held (INFO `used_memory_scripts_eval`).
    pub fn source_bytes(&self) -> usize {
        self.cache.values().map(|s| s.body.len()).sum()
    }
}

/// How a script may run: its shebang's `flags=` or its registration's
/// `flags` (Redis's script flags).
#[derive(Default, Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScriptFlags {
    pub no_writes: bool,
    pub allow_oom: bool,
    pub allow_stale: bool,
    pub no_cluster: bool,
    pub allow_cross_slot_keys: bool,
}

impl ScriptFlags {
    /// Redis's names, in the order it lists them.
    pub const NAMES: [&'static str; 5] = [
        "no-writes",
        "allow-oom",
        "allow-stale",
        "no-cluster",
        "allow-cross-slot-keys",
    ];

    fn slot(&mut self, i: usize) -> &mut bool {
        match i {
            0 => &mut self.no_writes,
            1 => &mut self.allow_oom,
            2 => &mut self.allow_stale,
            3 => &mut self.no_cluster,
            _ => &mut self.allow_cross_slot_keys,
        }
    }

    /// Sets the flag `name` (case-insensitive); false if there is none.
    pub fn set(&mut self, name: &str) -> bool {
        match Self::NAMES
            .iter()
            .position(|n| n.eq_ignore_ascii_case(name))
        {
            Some(i) => {
                *self.slot(i) = true;
                true
            }
            None => false,
        }
    }

    /// The names of the flags set, in Redis's order.
    pub fn names(&self) -> Vec<&'static str> {
        let mut copy = *self;
        (0..Self::NAMES.len())
            .filter(|i| *copy.slot(*i))
            .map(|i| Self::NAMES[i])
            .collect()
    }
}

/// A registered function.
pub struct Function {
    /// As registered (lookups ignore case).
    pub name: String,
    pub library: String,
    pub description: Option<String>,
    pub flags: ScriptFlags,
    pub callback: mlua::Function,
}

/// The function libraries compiled in their own interpreter, as Redis
/// keeps them apart from EVAL's.
pub struct FunctionEngine {
    pub lua: mlua::Lua,
    /// The `keyspace::Libraries` version compiled.
    pub version: u64,
    /// Each library's functions, by library name then function name.
    pub libraries: BTreeMap<String, BTreeMap<String, Function>>,
    /// The library of each function, by lowercase function name.
    pub index: HashMap<String, String>,
    /// The (empty, protected) globals the libraries' code sees.
    pub env: mlua::Table,
    /// `env`'s metatable: its `__index` is the load API while a library
    /// loads and the interpreter's globals otherwise.
    pub env_meta: mlua::Table,
    /// What a library sees while it loads (`redis.register_function`,
    /// `redis.log`, the version).
    pub load_api: mlua::Table,
}

impl FunctionEngine {
    /// The function `name`, case-insensitively, as Redis finds functions.
    pub fn function(&self, name: &str) -> Option<&Function> {
        let library = self.index.get(&name.to_ascii_lowercase())?;
        self.libraries
            .get(library)?
            .values()
            .find(|f| f.name.eq_ignore_ascii_case(name))
    }

    pub fn function_count(&self) -> usize {
        self.index.len()
    }

    /// Links a compiled library in (replacing one of the same name).
    pub fn link(&mut self, library: String, functions: BTreeMap<String, Function>) {
        self.unlink(&library);
        for name in functions.keys() {
            self.index
                .insert(name.to_ascii_lowercase(), library.clone());
        }
        self.libraries.insert(library, functions);
    }

    /// Removes a library and its functions.
    pub fn unlink(&mut self, library: &str) -> bool {
        let Some(functions) = self.libraries.remove(library) else {
            return false;
        };
        for name in functions.keys() {
            self.index.remove(&name.to_ascii_lowercase());
        }
        true
    }

    /// The library a function name (any case) belongs to, if any.
    pub fn library_of(&self, function: &str) -> Option<&str> {
        self.index
            .get(&function.to_ascii_lowercase())
            .map(|s| s.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_by_name_in_redis_order() {
        let mut f = ScriptFlags::default();
        assert!(f.set("allow-stale"));
        assert!(f.set("NO-WRITES"));
        assert!(!f.set("bogus"));
        assert_eq!(f.names(), ["no-writes", "allow-stale"]);
        assert!(ScriptFlags::default().names().is_empty());
    }
}
