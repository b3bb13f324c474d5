//! Glob-style pattern matching for SCAN MATCH, with Redis's syntax: `*`, `?`,
//! `[abc]`, `[^a-z]`, and `\` to escape.
//!
//! Matching backtracks only to the most recent `*` (every other element
//! matches exactly one byte), so it runs in O(pattern x subject) time even on
//! hostile patterns like `a*a*a*a*b`.

/// True when `subject` matches `pattern`.
pub fn matches(pattern: &[u8], subject: &[u8]) -> bool {
    let (mut p, mut s) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while s < subject.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            while p < pattern.len() && pattern[p] == b'*' {
                p += 1;
            }
            star = Some((p, s));
            continue;
        }
        if let Some(next_p) = match_one(pattern, p, subject[s]) {
            p = next_p;
            s += 1;
            continue;
        }
        match star {
            Some((star_p, star_s)) => {
                p = star_p;
                s = star_s + 1;
                star = Some((star_p, star_s + 1));
            }
            None => return false,
        }
    }
    pattern[p.min(pattern.len())..].iter().all(|&b| b == b'*')
}

/// If the element at `p` matches byte `c`, the index after that element.
fn match_one(pattern: &[u8], p: usize, c: u8) -> Option<usize> {
    match *pattern.get(p)? {
        b'?' => Some(p + 1),
        b'\\' if p + 1 < pattern.len() => (pattern[p + 1] == c).then_some(p + 2),
        b'[' => match_class(pattern, p + 1, c),
        b'*' => None,
        literal => (literal == c).then_some(p + 1),
    }
}

/// Matches a `[...]` class whose body starts at `p`; an unterminated class
/// runs to the end of the pattern, as in Redis.
fn match_class(pattern: &[u8], mut p: usize, c: u8) -> Option<usize> {
    let negate = pattern.get(p) == Some(&b'^');
    if negate {
        p += 1;
    }
    let mut hit = false;
    while p < pattern.len() && pattern[p] != b']' {
        if pattern[p] == b'\\' && p + 1 < pattern.len() {
            hit |= pattern[p + 1] == c;
            p += 2;
        } else if p + 2 < pattern.len() && pattern[p + 1] == b'-' && pattern[p + 2] != b']' {
            let (lo, hi) = (pattern[p].min(pattern[p + 2]), pattern[p].max(pattern[p + 2]));
            hit |= (lo..=hi).contains(&c);
            p += 3;
        } else {
            hit |= pattern[p] == c;
            p += 1;
        }
    }
    let after = (p + 1).min(pattern.len());
    (hit != negate).then_some(after)
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn globs_match_like_redis() {
        assert!(matches(b"*", b""));
        assert!(matches(b"user*", b"user123"));
        assert!(!matches(b"user*", b"use"));
        assert!(matches(b"h?llo", b"hello"));
        assert!(matches(b"h[ae]llo", b"hallo"));
        assert!(!matches(b"h[^e]llo", b"hello"));
        assert!(matches(b"h[a-c]llo", b"hbllo"));
        assert!(matches(b"a\\*b", b"a*b"));
        assert!(!matches(b"a\\*b", b"axb"));
        assert!(matches(b"*a*b*c", b"xxaxxbxxc"));
    }

    #[test]
    fn hostile_patterns_finish_quickly() {
        let subject = vec![b'a'; 5000];
        let pattern = b"a*a*a*a*a*a*a*a*a*a*a*a*b";
        assert!(!matches(pattern, &subject));
    }
}
