//! Redis's glob patterns (KEYS, SCAN MATCH, pub/sub patterns, CONFIG GET).

/// Glob-style matching as Redis's `stringmatchlen` (`*`, `?`, `[a-z]`,
/// `[^a]`, `\x`), optionally case-insensitive.
pub fn glob_match(pattern: &[u8], string: &[u8], nocase: bool) -> bool {
    fn eq(a: u8, b: u8, nocase: bool) -> bool {
        if nocase {
            a.eq_ignore_ascii_case(&b)
        } else {
            a == b
        }
    }
    /// `skip_longer`: set once the rest of the pattern after a `*` matched
    /// nowhere in the rest of the string; then no earlier `*` can help by
    /// matching longer, and the search ends (Redis's `skipLongerMatches`,
    /// which keeps `*a*a*a*...b` from taking exponential time).
    fn inner(p: &[u8], s: &[u8], nocase: bool, depth: usize, skip_longer: &mut bool) -> bool {
        if depth > 1000 {
            return false;
        }
        let (mut pi, mut si) = (0, 0);
        while pi < p.len() {
            match p[pi] {
                b'*' => {
                    while pi + 1 < p.len() && p[pi + 1] == b'*' {
                        pi += 1;
                    }
                    if pi + 1 == p.len() {
                        return true;
                    }
                    for start in si..=s.len() {
                        if inner(&p[pi + 1..], &s[start..], nocase, depth + 1, skip_longer) {
                            return true;
                        }
                        if *skip_longer {
                            return false;
                        }
                    }
                    *skip_longer = true;
                    return false;
                }
                b'?' => {
                    if si >= s.len() {
                        return false;
                    }
                    si += 1;
                }
                b'[' => {
                    if si >= s.len() {
                        return false;
                    }
                    pi += 1;
                    let not = pi < p.len() && p[pi] == b'^';
                    if not {
                        pi += 1;
                    }
                    let mut matched = false;
                    loop {
                        if pi >= p.len() {
                            pi -= 1;
                            break;
                        }
                        if p[pi] == b'\\' && pi + 2 < p.len() {
                            pi += 1;
                            if p[pi] == s[si] {
                                matched = true;
                            }
                        } else if p[pi] == b']' {
                            break;
                        } else if pi + 2 < p.len() && p[pi + 1] == b'-' {
                            let (mut lo, mut hi) = (p[pi], p[pi + 2]);
                            if lo > hi {
                                std::mem::swap(&mut lo, &mut hi);
                            }
                            let c = s[si];
                            let in_range = if nocase {
                                let c = c.to_ascii_lowercase();
                                c >= lo.to_ascii_lowercase() && c <= hi.to_ascii_lowercase()
                            } else {
                                c >= lo && c <= hi
                            };
                            if in_range {
                                matched = true;
                            }
                            pi += 2;
                        } else if eq(p[pi], s[si], nocase) {
                            matched = true;
                        }
                        pi += 1;
                    }
                    if not {
                        matched = !matched;
                    }
                    if !matched {
                        return false;
                    }
                    si += 1;
                }
                b'\\' if pi + 1 < p.len() => {
                    pi += 1;
                    if si >= s.len() || !eq(p[pi], s[si], nocase) {
                        return false;
                    }
                    si += 1;
                }
                c => {
                    if si >= s.len() || !eq(c, s[si], nocase) {
                        return false;
                    }
                    si += 1;
                }
            }
            pi += 1;
        }
        si == s.len()
    }
    inner(pattern, string, nocase, 0, &mut false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match(b"h?llo", b"hello", false));
        assert!(glob_match(b"h*llo", b"heeeello", false));
        assert!(glob_match(b"h[ae]llo", b"hallo", false));
        assert!(!glob_match(b"h[^e]llo", b"hello", false));
        assert!(glob_match(b"h[a-b]llo", b"hbllo", false));
        assert!(glob_match(b"*", b"", false));
        assert!(!glob_match(b"a*b", b"acd", false));
        assert!(glob_match(b"k\\*", b"k*", false));
        assert!(glob_match(b"HELLO", b"hello", true));
        assert!(glob_match(b"*a*b", b"xxaxxb", false));
        assert!(!glob_match(b"*a*b", b"xxaxxc", false));
    }

    #[test]
    fn nested_stars_end_quickly() {
        // Redis's "Regression for pattern matching long nested loops".
        let pattern = "a*".repeat(100) + "b";
        let string = "a".repeat(100);
        let started = std::time::Instant::now();
        assert!(!glob_match(pattern.as_bytes(), string.as_bytes(), false));
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }
}
