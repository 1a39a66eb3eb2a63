//! Setting values with structure, parsed once when the settings are read
//! (serde) instead of kept as text and re-parsed at each use: save rules,
//! outage tolerances, the eviction policy. Each reads and writes the text
//! Redis and Quire's TOML use for it, so files and `CONFIG GET` are
//! unchanged.

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::time::Duration;

/// A `save` rule: snapshot after `seconds` if at least `changes` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SaveRule {
    pub seconds: u64,
    pub changes: u64,
}

/// Redis-style save rules, "SECONDS CHANGES ..." ("" disables).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SaveRules(Vec<SaveRule>);

impl SaveRules {
    pub fn rules(&self) -> &[SaveRule] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::str::FromStr for SaveRules {
    type Err = String;
    fn from_str(text: &str) -> Result<SaveRules, String> {
        let parts: Vec<&str> = text.split_whitespace().collect();
        if !parts.len().is_multiple_of(2) {
            return Err("save rules come in pairs: SECONDS CHANGES".into());
        }
        parts
            .chunks(2)
            .map(|pair| {
                let seconds = pair[0]
                    .parse()
                    .map_err(|_| format!("'{}' is not a number of seconds", pair[0]))?;
                let changes = pair[1]
                    .parse()
                    .map_err(|_| format!("'{}' is not a number of changes", pair[1]))?;
                Ok(SaveRule { seconds, changes })
            })
            .collect::<Result<_, String>>()
            .map(SaveRules)
    }
}

impl fmt::Display for SaveRules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text: Vec<String> = self
            .0
            .iter()
            .map(|r| format!("{} {}", r.seconds, r.changes))
            .collect();
        f.write_str(&text.join(" "))
    }
}

impl Serialize for SaveRules {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SaveRules {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<SaveRules, D::Error> {
        struct Rules;
        impl Visitor<'_> for Rules {
            type Value = SaveRules;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("save rules \"SECONDS CHANGES ...\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<SaveRules, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_str(Rules)
    }
}

/// A length of link outage to survive without a full resync ("90s",
/// "10m", "2h", "1d", "500ms" or a bare number of seconds).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OutageTolerance(Duration);

impl OutageTolerance {
    pub fn secs(self) -> f64 {
        self.0.as_secs_f64()
    }

    pub fn from_secs(secs: f64) -> OutageTolerance {
        OutageTolerance(Duration::from_secs_f64(secs))
    }
}

impl std::str::FromStr for OutageTolerance {
    type Err = String;
    fn from_str(text: &str) -> Result<OutageTolerance, String> {
        match super::parse_duration_secs(text)? {
            Some(secs) => Ok(OutageTolerance::from_secs(secs)),
            None => Err("an empty duration".into()),
        }
    }
}

impl fmt::Display for OutageTolerance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if ms.is_multiple_of(1000) {
            write!(f, "{}s", ms / 1000)
        } else {
            write!(f, "{ms}ms")
        }
    }
}

impl Serialize for OutageTolerance {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// `Option<OutageTolerance>` fields: absent or "" is unset; a duration
/// text or a number of seconds is set.
pub mod optional_tolerance {
    use super::*;

    pub fn serialize<S: Serializer>(v: &Option<OutageTolerance>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(t) => s.collect_str(t),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<OutageTolerance>, D::Error> {
        struct Tolerance;
        impl<'de> Visitor<'de> for Tolerance {
            type Value = Option<OutageTolerance>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration like 90s, 10m, 2h (or empty)")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                match super::super::parse_duration_secs(v).map_err(E::custom)? {
                    Some(secs) => Ok(Some(OutageTolerance::from_secs(secs))),
                    None => Ok(None),
                }
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Some(OutageTolerance::from_secs(v as f64)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                if v < 0 {
                    return Err(E::custom(format!("'{v}' must be a positive duration")));
                }
                Ok(Some(OutageTolerance::from_secs(v as f64)))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                if v < 0.0 || !v.is_finite() {
                    return Err(E::custom(format!("'{v}' must be a positive duration")));
                }
                Ok(Some(OutageTolerance::from_secs(v)))
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
                d.deserialize_any(Tolerance)
            }
        }
        d.deserialize_any(Tolerance)
    }
}

/// What happens at `maxmemory` (Redis's `maxmemory-policy`). The names are
/// Redis's; which ones a node accepts is checked by the settings'
/// validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum MaxmemoryPolicy {
    /// Refuse writes that may grow the data set (`-OOM`).
    #[default]
    Noeviction,
    AllkeysLru,
    AllkeysLfu,
    AllkeysRandom,
    VolatileLru,
    VolatileLfu,
    VolatileRandom,
    VolatileTtl,
}

impl MaxmemoryPolicy {
    pub const ALL: [MaxmemoryPolicy; 8] = [
        MaxmemoryPolicy::Noeviction,
        MaxmemoryPolicy::AllkeysLru,
        MaxmemoryPolicy::AllkeysLfu,
        MaxmemoryPolicy::AllkeysRandom,
        MaxmemoryPolicy::VolatileLru,
        MaxmemoryPolicy::VolatileLfu,
        MaxmemoryPolicy::VolatileRandom,
        MaxmemoryPolicy::VolatileTtl,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MaxmemoryPolicy::Noeviction => "noeviction",
            MaxmemoryPolicy::AllkeysLru => "allkeys-lru",
            MaxmemoryPolicy::AllkeysLfu => "allkeys-lfu",
            MaxmemoryPolicy::AllkeysRandom => "allkeys-random",
            MaxmemoryPolicy::VolatileLru => "volatile-lru",
            MaxmemoryPolicy::VolatileLfu => "volatile-lfu",
            MaxmemoryPolicy::VolatileRandom => "volatile-random",
            MaxmemoryPolicy::VolatileTtl => "volatile-ttl",
        }
    }
}

impl std::str::FromStr for MaxmemoryPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<MaxmemoryPolicy, String> {
        MaxmemoryPolicy::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("'{s}' is not a maxmemory policy"))
    }
}

impl fmt::Display for MaxmemoryPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_rules_read_and_print_redis_text() {
        let rules: SaveRules = "3600 1  300 100".parse().unwrap();
        assert_eq!(
            rules.rules()[1],
            SaveRule {
                seconds: 300,
                changes: 100
            }
        );
        assert_eq!(rules.to_string(), "3600 1 300 100");
        assert!("".parse::<SaveRules>().unwrap().is_empty());
        assert!("3600".parse::<SaveRules>().is_err());
        assert!("x 1".parse::<SaveRules>().is_err());
    }

    #[test]
    fn tolerances_print_what_they_read() {
        let t: OutageTolerance = "10m".parse().unwrap();
        assert_eq!(t.secs(), 600.0);
        assert_eq!(t.to_string(), "600s");
        assert_eq!(
            "250ms".parse::<OutageTolerance>().unwrap().to_string(),
            "250ms"
        );
        assert!("".parse::<OutageTolerance>().is_err());
    }

    #[test]
    fn policies_use_redis_names() {
        for p in MaxmemoryPolicy::ALL {
            assert_eq!(p.as_str().parse::<MaxmemoryPolicy>(), Ok(p));
        }
        assert_eq!(
            "ALLKEYS-LRU".parse::<MaxmemoryPolicy>(),
            Ok(MaxmemoryPolicy::AllkeysLru)
        );
        assert!("lru".parse::<MaxmemoryPolicy>().is_err());
    }
}
