//! The script cache and the Lua interpreter it runs in, kept beside the
//! data (under the dataset lock, as scripts run there). What the scripts
//! can do — the `redis` API, conversions, limits — is
//! `commands::scripting`; this is only their home.

use std::collections::HashMap;

/// A loaded script: its source and compiled function.
pub struct Script {
    pub body: bytes::Bytes,
    pub function: mlua::Function,
}

#[derive(Default)]
pub struct Scripts {
    /// The interpreter, made on first use (`SCRIPT FLUSH` drops it).
    pub lua: Option<mlua::Lua>,
    /// By lowercase SHA1 hex of the body.
    pub cache: HashMap<String, Script>,
}

impl Scripts {
    pub fn flush(&mut self) {
        self.cache.clear();
        self.lua = None;
    }

    /// Bytes of script sources held (INFO `used_memory_scripts_eval`).
    pub fn source_bytes(&self) -> usize {
        self.cache.values().map(|s| s.body.len()).sum()
    }
}
