//! Keyspace notification classes (`notify-keyspace-events`), as Redis
//! parses and prints them.

pub const KEYSPACE: u32 = 1 << 0; // K
pub const KEYEVENT: u32 = 1 << 1; // E
pub const GENERIC: u32 = 1 << 2; // g
pub const STRING: u32 = 1 << 3; // $
pub const LIST: u32 = 1 << 4; // l
pub const SET: u32 = 1 << 5; // s
pub const HASH: u32 = 1 << 6; // h
pub const ZSET: u32 = 1 << 7; // z
pub const EXPIRED: u32 = 1 << 8; // x
pub const EVICTED: u32 = 1 << 9; // e
pub const STREAM: u32 = 1 << 10; // t
pub const KEY_MISS: u32 = 1 << 11; // m
pub const MODULE: u32 = 1 << 12; // d
pub const NEW: u32 = 1 << 13; // n
/// `A`: every class but key misses and new keys.
pub const ALL: u32 =
    GENERIC | STRING | LIST | SET | HASH | ZSET | EXPIRED | EVICTED | STREAM | MODULE;

const CLASSES: &[(char, u32)] = &[
    ('g', GENERIC),
    ('$', STRING),
    ('l', LIST),
    ('s', SET),
    ('h', HASH),
    ('z', ZSET),
    ('x', EXPIRED),
    ('e', EVICTED),
    ('t', STREAM),
    ('d', MODULE),
];

/// Parses a `notify-keyspace-events` value.
pub fn parse(text: &str) -> Result<u32, String> {
    let mut flags = 0;
    for c in text.chars() {
        flags |= match c {
            'A' => ALL,
            'K' => KEYSPACE,
            'E' => KEYEVENT,
            'm' => KEY_MISS,
            'n' => NEW,
            _ => CLASSES
                .iter()
                .find(|(ch, _)| *ch == c)
                .map(|(_, f)| *f)
                .ok_or_else(|| {
                    "Invalid event class character. Use 'Ag$lshzxeKEtmdn'.".to_string()
                })?,
        };
    }
    Ok(flags)
}

/// Prints flags as Redis's CONFIG GET does (`AKE`, `gKE`, `$lshzxeKE`).
pub fn format(flags: u32) -> String {
    let mut out = String::new();
    if flags & ALL == ALL {
        out.push('A');
    } else {
        for (c, f) in CLASSES {
            if flags & f != 0 {
                out.push(*c);
            }
        }
    }
    for (c, f) in [
        ('K', KEYSPACE),
        ('E', KEYEVENT),
        ('m', KEY_MISS),
        ('n', NEW),
    ] {
        if flags & f != 0 {
            out.push(c);
        }
    }
    out
}

/// Whether an event of `class` is published under `flags`.
pub fn wanted(flags: u32, class: u32) -> bool {
    flags & (KEYSPACE | KEYEVENT) != 0 && flags & class != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_as_redis_prints_them() {
        for (input, shown) in [
            ("gKE", "gKE"),
            ("$lshzxeKE", "$lshzxeKE"),
            ("KA", "AK"),
            ("EA", "AE"),
            ("En", "En"),
            ("", ""),
        ] {
            assert_eq!(format(parse(input).unwrap()), shown, "{input}");
        }
        assert!(parse("Kq").is_err());
        assert!(!wanted(parse("A").unwrap(), GENERIC), "neither K nor E");
        assert!(wanted(parse("Kl").unwrap(), LIST));
        assert!(!wanted(parse("Kl").unwrap(), SET));
    }
}
