//! ACL users as Redis 7.0 has them (root selector only): each user is on or
//! off, has SHA-256 hashed passwords or `nopass`, a set of commands it may
//! run (by command, `command|subcommand` and `@category`), key patterns
//! with read/write permissions (`~`, `%R~`, `%W~`) and channel patterns
//! (`&`). Rules are applied as `ACL SETUSER` gives them and described back
//! as `ACL LIST` prints them.
//!
//! Sans-IO: the command table is seen through [`CommandTable`], so this
//! module knows no command; the server keeps the users (`node::Shared`)
//! and checks each command against its client's user.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Redis's command categories, in its order (`ACL CAT`).
pub const CATEGORIES: [&str; 21] = [
    "keyspace",
    "read",
    "write",
    "set",
    "sortedset",
    "list",
    "hash",
    "string",
    "bitmap",
    "hyperloglog",
    "geo",
    "stream",
    "pubsub",
    "admin",
    "fast",
    "slow",
    "blocking",
    "dangerous",
    "connection",
    "transaction",
    "scripting",
];

/// The bit of category `name` in a command's category mask.
pub fn category_bit(name: &str) -> Option<u32> {
    CATEGORIES
        .iter()
        .position(|c| c.eq_ignore_ascii_case(name))
        .map(|i| 1 << i)
}

/// The command table as rules see it: commands by dense id.
pub trait CommandTable {
    fn count(&self) -> usize;
    /// The id of a command (lowercase name).
    fn id(&self, name: &str) -> Option<usize>;
    /// Its categories, as a mask of [`category_bit`]s.
    fn categories(&self, id: usize) -> u32;
    /// Whether it has subcommands (`command|sub` rules need one).
    fn has_subcommands(&self, id: usize) -> bool;
}

/// A key pattern and what it allows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyPattern {
    pub pattern: Vec<u8>,
    pub read: bool,
    pub write: bool,
}

/// What a command needs of the keys it names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyAccess {
    pub read: bool,
    pub write: bool,
}

/// Why a command is refused; the argument index of the key or channel
/// refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Denied {
    Command,
    Key(usize),
    Channel(usize),
}

/// One ACL LOG entry: a refusal, with how many times the same one
/// happened in a row.
#[derive(Clone, Debug)]
pub struct LogEntry {
    pub count: u64,
    /// `auth`, `command`, `key` or `channel`.
    pub reason: &'static str,
    /// `toplevel`, `multi` or `lua`.
    pub context: &'static str,
    pub object: String,
    pub username: String,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub client_info: String,
}

/// Recent refusals, newest first (Redis's ACL LOG). A refusal like the
/// newest similar one of the last 60 s (same reason, context, object and
/// user) counts on that entry instead of adding one, so a client retrying
/// a bad password cannot flood the log.
#[derive(Default)]
pub struct AclLog {
    entries: std::collections::VecDeque<LogEntry>,
}

/// How long similar refusals merge into one entry (ACL_LOG_GROUPING_MAX_TIME_DELTA).
const LOG_GROUPING_MS: i64 = 60_000;

impl AclLog {
    pub fn record(&mut self, entry: LogEntry, max_len: usize) {
        let similar = self.entries.iter_mut().find(|e| {
            e.reason == entry.reason
                && e.context == entry.context
                && e.object == entry.object
                && e.username == entry.username
                && entry.updated_ms - e.updated_ms < LOG_GROUPING_MS
        });
        match similar {
            Some(e) => {
                e.count += 1;
                e.updated_ms = entry.updated_ms;
                e.client_info = entry.client_info;
            }
            None => {
                self.entries.push_front(entry);
                self.entries.truncate(max_len);
            }
        }
    }

    pub fn newest(&self, count: usize) -> impl Iterator<Item = &LogEntry> {
        self.entries.iter().take(count)
    }

    pub fn reset(&mut self) {
        self.entries.clear();
    }
}

#[derive(Clone, Debug)]
pub struct User {
    pub name: String,
    pub enabled: bool,
    pub nopass: bool,
    /// Lowercase hex SHA-256 of each password.
    passwords: BTreeSet<String>,
    /// By command id.
    allowed: Vec<bool>,
    /// `command|subcommand` allowed though the command is not.
    allowed_subcommands: BTreeSet<String>,
    /// Whether the rules started from `+@all` (else `-@all`).
    all_commands: bool,
    /// The command rules after the first, as `ACL LIST` shows them.
    command_rules: Vec<String>,
    all_keys: bool,
    keys: Vec<KeyPattern>,
    all_channels: bool,
    channels: Vec<Vec<u8>>,
}

/// A rule `ACL SETUSER` refused, with Redis's reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Error in ACL SETUSER modifier '{rule}': {reason}")]
pub struct RuleError {
    pub rule: String,
    pub reason: &'static str,
}

pub fn sha256_hex(data: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, data);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Equal without an early exit, so the time taken tells nothing of where
/// two hashes differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl User {
    /// A new user as `ACL SETUSER` creates one: off, no password, no
    /// commands, keys or channels.
    pub fn new(name: &str, table: &dyn CommandTable) -> User {
        User {
            name: name.to_string(),
            enabled: false,
            nopass: false,
            passwords: BTreeSet::new(),
            allowed: vec![false; table.count()],
            allowed_subcommands: BTreeSet::new(),
            all_commands: false,
            command_rules: Vec::new(),
            all_keys: false,
            keys: Vec::new(),
            all_channels: false,
            channels: Vec::new(),
        }
    }

    /// The default user: on, no password, everything allowed.
    pub fn default_user(table: &dyn CommandTable) -> User {
        let mut u = User::new("default", table);
        for rule in ["on", "nopass", "~*", "&*", "+@all"] {
            // The rules are fixed and valid.
            let _ = u.apply(rule, table);
        }
        u
    }

    /// Whether nothing is restricted (no check needed per command).
    pub fn unrestricted(&self) -> bool {
        self.all_commands && self.command_rules.is_empty() && self.all_keys && self.all_channels
    }

    pub fn password_ok(&self, password: &[u8]) -> bool {
        if !self.enabled {
            return false;
        }
        if self.nopass {
            return true;
        }
        let hash = sha256_hex(password);
        // Every stored hash is compared, so timing does not tell which.
        self.passwords
            .iter()
            .fold(false, |ok, p| same(p.as_bytes(), hash.as_bytes()) | ok)
    }

    pub fn has_passwords(&self) -> bool {
        !self.passwords.is_empty()
    }

    /// Applies one `ACL SETUSER` rule.
    pub fn apply(&mut self, rule: &str, table: &dyn CommandTable) -> Result<(), RuleError> {
        let err = |reason| RuleError {
            rule: rule.to_string(),
            reason,
        };
        let lower = rule.to_ascii_lowercase();
        match lower.as_str() {
            "on" => self.enabled = true,
            "off" => self.enabled = false,
            "nopass" => {
                self.nopass = true;
                self.passwords.clear();
            }
            "resetpass" => {
                self.nopass = false;
                self.passwords.clear();
            }
            "allkeys" | "~*" => {
                self.all_keys = true;
                self.keys.clear();
            }
            "resetkeys" => {
                self.all_keys = false;
                self.keys.clear();
            }
            "allchannels" | "&*" => {
                self.all_channels = true;
                self.channels.clear();
            }
            "resetchannels" => {
                self.all_channels = false;
                self.channels.clear();
            }
            "allcommands" | "+@all" => self.set_all_commands(true),
            "nocommands" | "-@all" => self.set_all_commands(false),
            "reset" => {
                *self = User::new(&self.name, table);
                for rule in ["resetpass", "resetkeys", "resetchannels", "off", "-@all"] {
                    let _ = self.apply(rule, table);
                }
            }
            "sanitize-payload" | "skip-sanitize-payload" => {}
            _ => return self.apply_valued(rule, table).map_err(err),
        }
        Ok(())
    }

    fn set_all_commands(&mut self, on: bool) {
        self.all_commands = on;
        self.allowed.iter_mut().for_each(|a| *a = on);
        self.allowed_subcommands.clear();
        self.command_rules.clear();
    }

    fn apply_valued(&mut self, rule: &str, table: &dyn CommandTable) -> Result<(), &'static str> {
        let bytes = rule.as_bytes();
        match bytes.first() {
            Some(b'>') => {
                self.passwords.insert(sha256_hex(&bytes[1..]));
                self.nopass = false;
            }
            Some(b'<') => {
                if !self.passwords.remove(&sha256_hex(&bytes[1..])) {
                    return Err("no such password");
                }
            }
            Some(b'#') | Some(b'!') => {
                let hash = rule[1..].to_ascii_lowercase();
                if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err("The password hash must be exactly 64 characters and contain only lowercase hexadecimal characters");
                }
                if bytes[0] == b'#' {
                    self.passwords.insert(hash);
                    self.nopass = false;
                } else if !self.passwords.remove(&hash) {
                    return Err("no such password");
                }
            }
            Some(b'~') => self.add_keys(&bytes[1..], true, true)?,
            Some(b'%') => {
                let Some(tilde) = bytes.iter().position(|b| *b == b'~') else {
                    return Err("Syntax error");
                };
                let perms = &rule[1..tilde];
                let (mut read, mut write) = (false, false);
                for p in perms.chars() {
                    match p.to_ascii_uppercase() {
                        'R' => read = true,
                        'W' => write = true,
                        _ => return Err("Syntax error"),
                    }
                }
                if !read && !write {
                    return Err("Syntax error");
                }
                self.add_keys(&bytes[tilde + 1..], read, write)?
            }
            Some(b'&') => {
                if self.all_channels {
                    return Err("Adding a pattern after the * pattern (or the 'allchannels' flag) is not valid and does not have any effect. Try 'resetchannels' to start with an empty list of channels");
                }
                self.channels.push(bytes[1..].to_vec());
            }
            Some(b'+') | Some(b'-') => self.command_rule(rule, table)?,
            _ => return Err("Syntax error"),
        }
        Ok(())
    }

    fn add_keys(&mut self, pattern: &[u8], read: bool, write: bool) -> Result<(), &'static str> {
        if self.all_keys {
            return Err("Adding a pattern after the * pattern (or the 'allkeys' flag) is not valid and does not have any effect. Try 'resetkeys' to start with an empty list of patterns");
        }
        if pattern == b"*" && read && write {
            self.all_keys = true;
            self.keys.clear();
            return Ok(());
        }
        self.keys.push(KeyPattern {
            pattern: pattern.to_vec(),
            read,
            write,
        });
        Ok(())
    }

    fn command_rule(&mut self, rule: &str, table: &dyn CommandTable) -> Result<(), &'static str> {
        let allow = rule.starts_with('+');
        let what = rule[1..].to_ascii_lowercase();
        if let Some(category) = what.strip_prefix('@') {
            let bit = category_bit(category).ok_or("Unknown command or category name in ACL")?;
            for id in 0..table.count() {
                if table.categories(id) & bit != 0 {
                    self.allowed[id] = allow;
                }
            }
            self.allowed_subcommands.retain(|s| {
                s.split('|')
                    .next()
                    .and_then(|c| table.id(c))
                    .is_none_or(|id| table.categories(id) & bit == 0)
            });
        } else if let Some((command, sub)) = what.split_once('|') {
            let id = table
                .id(command)
                .ok_or("Unknown command or category name in ACL")?;
            if !table.has_subcommands(id) || sub.is_empty() || sub.contains('|') {
                return Err("Unknown command or category name in ACL");
            }
            if !allow {
                return Err("Denying a subcommand is not supported; allow the command's other subcommands instead");
            }
            if !self.allowed[id] {
                self.allowed_subcommands.insert(what.clone());
            }
        } else {
            let id = table
                .id(&what)
                .ok_or("Unknown command or category name in ACL")?;
            self.allowed[id] = allow;
            let prefix = format!("{what}|");
            self.allowed_subcommands.retain(|s| !s.starts_with(&prefix));
        }
        // The rule replaces an earlier one for the same command or category.
        let normalized = format!("{}{}", if allow { '+' } else { '-' }, what);
        self.command_rules.retain(|r| r[1..] != normalized[1..]);
        self.command_rules.push(normalized);
        Ok(())
    }

    /// Whether the user may run command `id` (with `subcommand`, lowercase,
    /// when the command has them).
    pub fn may_run(&self, id: usize, command: &str, subcommand: Option<&str>) -> bool {
        if self.allowed.get(id).copied().unwrap_or(false) {
            return true;
        }
        subcommand.is_some_and(|sub| {
            self.allowed_subcommands
                .contains(&format!("{command}|{sub}"))
        })
    }

    pub fn may_access_key(&self, key: &[u8], access: KeyAccess) -> bool {
        self.all_keys
            || self.keys.iter().any(|p| {
                (!access.read || p.read)
                    && (!access.write || p.write)
                    && crate::keyspace::glob_match(&p.pattern, key, false)
            })
    }

    /// A channel (PUBLISH, SUBSCRIBE), or a pattern (PSUBSCRIBE, which must
    /// be one of the user's patterns as written).
    pub fn may_access_channel(&self, channel: &[u8], is_pattern: bool) -> bool {
        self.all_channels
            || self.channels.iter().any(|p| {
                if is_pattern {
                    p == channel
                } else {
                    crate::keyspace::glob_match(p, channel, false)
                }
            })
    }

    /// The user as `ACL LIST` prints it.
    pub fn describe(&self) -> String {
        let mut out = vec![format!("user {}", self.name)];
        out.push(if self.enabled { "on" } else { "off" }.into());
        if self.nopass {
            out.push("nopass".into());
        }
        out.extend(self.passwords.iter().map(|p| format!("#{p}")));
        out.extend(self.selector_parts());
        out.join(" ")
    }

    fn selector_parts(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.all_keys {
            out.push("~*".into());
        } else {
            out.extend(self.keys.iter().map(describe_key));
        }
        if self.all_channels {
            out.push("&*".into());
        } else {
            out.push("resetchannels".into());
            out.extend(
                self.channels
                    .iter()
                    .map(|c| format!("&{}", String::from_utf8_lossy(c))),
            );
        }
        out.push(self.describe_commands());
        out
    }

    /// The command rules (`+@all -debug ...`).
    pub fn describe_commands(&self) -> String {
        let mut out = vec![if self.all_commands { "+@all" } else { "-@all" }.to_string()];
        out.extend(self.command_rules.iter().cloned());
        out.join(" ")
    }

    pub fn passwords(&self) -> impl Iterator<Item = &str> {
        self.passwords.iter().map(|s| s.as_str())
    }

    /// Key patterns as `ACL GETUSER` gives them (`~*` for all).
    pub fn describe_keys(&self) -> String {
        if self.all_keys {
            return "~*".into();
        }
        self.keys
            .iter()
            .map(describe_key)
            .collect::<Vec<_>>()
            .join(" ")
    }

    pub fn describe_channels(&self) -> String {
        if self.all_channels {
            return "&*".into();
        }
        self.channels
            .iter()
            .map(|c| format!("&{}", String::from_utf8_lossy(c)))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn describe_key(p: &KeyPattern) -> String {
    let pattern = String::from_utf8_lossy(&p.pattern);
    match (p.read, p.write) {
        (true, true) => format!("~{pattern}"),
        (true, false) => format!("%R~{pattern}"),
        _ => format!("%W~{pattern}"),
    }
}

/// The node's users, by name. Every change gets a new version, so a
/// client holding its user knows when to look it up again.
#[derive(Clone, Debug)]
pub struct Users {
    users: BTreeMap<String, Arc<User>>,
    version: u64,
}

impl Users {
    pub fn new(table: &dyn CommandTable) -> Users {
        let mut users = BTreeMap::new();
        users.insert("default".to_string(), Arc::new(User::default_user(table)));
        Users { users, version: 1 }
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn get(&self, name: &str) -> Option<Arc<User>> {
        self.users.get(name).cloned()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.users.keys().map(|s| s.as_str())
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<User>> {
        self.users.values()
    }

    /// `ACL SETUSER name rules...`: all rules apply or none does.
    pub fn set_user(
        &mut self,
        name: &str,
        rules: &[String],
        table: &dyn CommandTable,
    ) -> Result<(), RuleError> {
        let mut user = self
            .users
            .get(name)
            .map(|u| (**u).clone())
            .unwrap_or_else(|| User::new(name, table));
        for rule in rules {
            user.apply(rule, table)?;
        }
        self.users.insert(name.to_string(), Arc::new(user));
        self.version += 1;
        Ok(())
    }

    /// Removes users (never `default`); how many were removed.
    pub fn delete(&mut self, names: &[String]) -> usize {
        let removed = names
            .iter()
            .filter(|n| self.users.remove(n.as_str()).is_some())
            .count();
        if removed > 0 {
            self.version += 1;
        }
        removed
    }

    /// `requirepass`: the default user's one password (or none, `nopass`).
    pub fn set_default_password(&mut self, password: &str, table: &dyn CommandTable) {
        let rules: Vec<String> = if password.is_empty() {
            vec!["nopass".into()]
        } else {
            vec!["resetpass".into(), format!(">{password}")]
        };
        let _ = self.set_user("default", &rules, table);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(object: &str, at: i64) -> LogEntry {
        LogEntry {
            count: 1,
            reason: "auth",
            context: "toplevel",
            object: object.into(),
            username: "u".into(),
            created_ms: at,
            updated_ms: at,
            client_info: format!("at {at}"),
        }
    }

    #[test]
    fn acl_log_groups_repeated_refusals_and_stays_bounded() {
        let mut log = AclLog::default();
        for i in 0..1000 {
            log.record(entry("AUTH", i), 3);
        }
        let all: Vec<&LogEntry> = log.newest(10).collect();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].count, 1000);
        assert_eq!(all[0].client_info, "at 999");
        log.record(entry("AUTH", 999 + LOG_GROUPING_MS), 3);
        for o in ["a", "b", "c"] {
            log.record(entry(o, 200_000), 3);
        }
        let objects: Vec<&str> = log.newest(10).map(|e| e.object.as_str()).collect();
        assert_eq!(objects, ["c", "b", "a"]);
        log.reset();
        assert_eq!(log.newest(10).count(), 0);
    }

    /// get (read, string), set (write, string), config (admin, with
    /// subcommands), publish (pubsub).
    struct Table;

    const NAMES: [&str; 4] = ["get", "set", "config", "publish"];

    impl CommandTable for Table {
        fn count(&self) -> usize {
            NAMES.len()
        }
        fn id(&self, name: &str) -> Option<usize> {
            NAMES.iter().position(|n| *n == name)
        }
        fn categories(&self, id: usize) -> u32 {
            let c = |n| category_bit(n).unwrap();
            match id {
                0 => c("read") | c("string") | c("fast"),
                1 => c("write") | c("string") | c("slow"),
                2 => c("admin") | c("dangerous") | c("slow"),
                _ => c("pubsub") | c("fast"),
            }
        }
        fn has_subcommands(&self, id: usize) -> bool {
            id == 2
        }
    }

    fn user(rules: &[&str]) -> User {
        let mut u = User::new("u", &Table);
        for r in rules {
            u.apply(r, &Table).unwrap();
        }
        u
    }

    #[test]
    fn new_and_default_users_describe_as_redis() {
        assert_eq!(
            User::new("bob", &Table).describe(),
            "user bob off resetchannels -@all"
        );
        let d = User::default_user(&Table);
        assert_eq!(d.describe(), "user default on nopass ~* &* +@all");
        assert!(d.unrestricted());
    }

    #[test]
    fn passwords_are_hashed_and_checked() {
        let u = user(&["on", ">123"]);
        assert!(u.password_ok(b"123"));
        assert!(!u.password_ok(b"1234"));
        assert!(u.describe().contains(&format!("#{}", sha256_hex(b"123"))));
        assert!(
            !user(&[">123"]).password_ok(b"123"),
            "off users never log in"
        );
        let mut u = user(&["on", ">a", ">b"]);
        u.apply("<a", &Table).unwrap();
        assert!(!u.password_ok(b"a") && u.password_ok(b"b"));
        assert!(u.apply("<zzz", &Table).is_err());
    }

    #[test]
    fn commands_categories_and_subcommands() {
        let u = user(&["+@string", "-set", "+config|get"]);
        assert!(u.may_run(0, "get", None));
        assert!(!u.may_run(1, "set", None));
        assert!(u.may_run(2, "config", Some("get")));
        assert!(!u.may_run(2, "config", Some("set")));
        assert_eq!(u.describe_commands(), "-@all +@string -set +config|get");
        // A later rule for the same command replaces the earlier one.
        let u = user(&["+set", "-set"]);
        assert_eq!(u.describe_commands(), "-@all -set");
        let err = User::new("u", &Table).apply("+nosuch", &Table).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Error in ACL SETUSER modifier '+nosuch': Unknown command or category name in ACL"
        );
        assert!(User::new("u", &Table).apply("+get|x", &Table).is_err());
    }

    #[test]
    fn keys_and_channels() {
        let u = user(&["~x*", "%R~r*", "&news.*"]);
        let rw = KeyAccess {
            read: true,
            write: true,
        };
        let w = KeyAccess {
            read: false,
            write: true,
        };
        let r = KeyAccess {
            read: true,
            write: false,
        };
        assert!(u.may_access_key(b"xy", rw));
        assert!(u.may_access_key(b"ra", r));
        assert!(!u.may_access_key(b"ra", w));
        assert!(!u.may_access_key(b"zz", r));
        assert!(u.may_access_channel(b"news.eu", false));
        assert!(!u.may_access_channel(b"news.eu", true));
        assert!(u.may_access_channel(b"news.*", true));
        assert_eq!(u.describe_keys(), "~x* %R~r*");
        let mut all = user(&["allkeys"]);
        assert!(all.apply("~y", &Table).is_err());
    }

    #[test]
    fn users_change_atomically_and_are_versioned() {
        let mut users = Users::new(&Table);
        let v = users.version();
        let bad = users.set_user("bob", &["on".into(), "+nosuch".into()], &Table);
        assert!(bad.is_err());
        assert!(users.get("bob").is_none(), "a refused rule creates nothing");
        users
            .set_user("bob", &["on".into(), ">p".into()], &Table)
            .unwrap();
        assert!(users.version() > v);
        assert!(users.get("bob").unwrap().password_ok(b"p"));
        assert_eq!(users.delete(&["bob".into(), "nobody".into()]), 1);
        users.set_default_password("secret", &Table);
        let d = users.get("default").unwrap();
        assert!(d.password_ok(b"secret") && !d.password_ok(b""));
    }
}
