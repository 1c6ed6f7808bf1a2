// SPDX-License-Identifier: Apache-2.0
//! The one glob dialect of the catalog and of `--hot-functions`: `*` matches any run of characters (including
//! `/`, so Go names such as `crypto/tls.(*Conn).Handshake` match `crypto/*`), `?` matches exactly one character,
//! everything else is literal. No character classes and no escapes: symbol names never need them.

/// Whether `pattern` matches the whole of `text`.
///
/// Iterative matching with a single backtrack point (the last `*` seen): O(len(pattern) * len(text)) in the
/// worst case, no recursion, so a hostile pattern such as `*a*a*a*a*b` cannot blow the stack or explode.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p = pattern.as_bytes();
    let t = text.as_bytes();
    let (mut pi, mut ti) = (0usize, 0usize);
    // (pattern index after the last '*', text index it is currently anchored at)
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            pi += 1;
            star = Some((pi, ti));
            continue;
        }
        if pi < p.len() && p[pi] == b'?' {
            pi += 1;
            ti += utf8_len(t[ti]);
            continue;
        }
        if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
            continue;
        }
        match star {
            // Let the last '*' swallow one more character and retry from just after it.
            Some((sp, st)) => {
                let next = st + utf8_len(t[st]);
                star = Some((sp, next));
                pi = sp;
                ti = next;
            }
            None => return false,
        }
    }
    // Text consumed: the rest of the pattern must be all '*'.
    p[pi..].iter().all(|&b| b == b'*')
}

/// Length of the UTF-8 sequence that starts with `lead` (1 for a stray continuation byte, so matching always
/// advances). `?` consumes one character, not one byte.
fn utf8_len(lead: u8) -> usize {
    match lead {
        0xF0..=0xF7 => 4,
        0xE0..=0xEF => 3,
        0xC0..=0xDF => 2,
        _ => 1,
    }
}

/// A glob prepared for matching many texts: the common shapes (`*`, `literal`, `prefix*`) skip the general
/// matcher. Symbol matching runs for every symbol of every library of a closure (libcrypto alone exports about
/// 5,000), so this matters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Glob {
    Any,
    Exact(String),
    Prefix(String),
    General(String),
}

impl Glob {
    pub(crate) fn new(pattern: &str) -> Self {
        let wild = |c: char| c == '*' || c == '?';
        if pattern == "*" {
            Glob::Any
        } else if !pattern.contains(wild) {
            Glob::Exact(pattern.to_owned())
        } else if let Some(prefix) = pattern.strip_suffix('*')
            && !prefix.contains(wild)
        {
            Glob::Prefix(prefix.to_owned())
        } else {
            Glob::General(pattern.to_owned())
        }
    }

    pub(crate) fn matches(&self, text: &str) -> bool {
        match self {
            Glob::Any => true,
            Glob::Exact(s) => s == text,
            Glob::Prefix(p) => text.starts_with(p.as_str()),
            Glob::General(p) => glob_match(p, text),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_star_and_question_mark() {
        assert!(glob_match("SSL_read", "SSL_read"));
        assert!(!glob_match("SSL_read", "SSL_read_ex"));
        assert!(glob_match("SSL_read*", "SSL_read_ex"));
        assert!(glob_match("SSL_read*", "SSL_read"));
        assert!(glob_match("*_read", "SSL_read"));
        assert!(glob_match("S?L_*", "SSL_write"));
        assert!(!glob_match("S?L_*", "SL_write"));
        assert!(glob_match("*", ""));
        assert!(!glob_match("?", ""));
        assert!(glob_match("", ""));
        assert!(!glob_match("", "a"));
        assert!(glob_match("a*b*c", "aXXbYYc"));
        assert!(!glob_match("a*b*c", "aXXbYY"));
        assert!(glob_match("**", "anything"));
    }

    #[test]
    fn star_crosses_slashes_for_go_names() {
        assert!(glob_match("crypto/*", "crypto/tls.(*Conn).Handshake"));
        assert!(glob_match("crypto/tls.*", "crypto/tls.(*Conn).Handshake"));
        assert!(glob_match(
            "*/x/crypto/*",
            "golang.org/x/crypto/chacha20.New"
        ));
        assert!(!glob_match("crypto/*", "vendor/golang.org/x/crypto/x.y"));
    }

    #[test]
    fn question_mark_is_one_character_not_one_byte() {
        assert!(glob_match("caf?", "café"));
        assert!(glob_match("?", "€"));
        assert!(!glob_match("??", "€"));
    }

    #[test]
    fn pathological_patterns_stay_fast() {
        let text = "a".repeat(10_000);
        let pattern = format!("{}b", "*a".repeat(50));
        let start = std::time::Instant::now();
        assert!(!glob_match(&pattern, &text));
        // Generous bound: only an exponential matcher would get near it.
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn prepared_globs_agree_with_glob_match() {
        let texts = [
            "",
            "SSL_read",
            "SSL_read_ex",
            "EVP_sha256",
            "crypto/tls.Dial",
            "x",
        ];
        for pattern in [
            "*", "SSL_read", "SSL_*", "*read*", "S?L_read", "crypto/*", "",
        ] {
            let g = Glob::new(pattern);
            for t in texts {
                assert_eq!(g.matches(t), glob_match(pattern, t), "{pattern} vs {t}");
            }
        }
        assert_eq!(Glob::new("SSL_*"), Glob::Prefix("SSL_".into()));
        assert_eq!(Glob::new("open"), Glob::Exact("open".into()));
        assert_eq!(Glob::new("*"), Glob::Any);
        assert_eq!(Glob::new("*_read"), Glob::General("*_read".into()));
    }
}
