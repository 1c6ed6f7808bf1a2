// SPDX-License-Identifier: Apache-2.0
//! The registry's `WWW-Authenticate` challenge and the token server's answer.
//!
//! RFC 9110 section 11.6.1: `challenge = auth-scheme [ 1*SP ( token68 / #auth-param ) ]`, with
//! `auth-param = token BWS "=" BWS ( token / quoted-string )`. Registries send `Basic realm="..."`
//! (distribution's htpasswd) or `Bearer realm="...",service="...",scope="..."` (the token flow of
//! the distribution "Token Authentication Specification"). Only the first challenge of a header is
//! read: registries send one.

use std::collections::BTreeMap;
use std::time::Duration;

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// HTTP basic authentication.
    Basic,
    /// The bearer-token flow: get a token from `realm`, then send it as `Bearer <token>`.
    Bearer {
        /// The token server URL.
        realm: String,
        /// The `service` parameter to pass to the token server.
        service: Option<String>,
        /// The scope the registry asked for, if it said.
        scope: Option<String>,
        /// `insufficient_scope`, `invalid_token`, ... when a token was refused.
        error: Option<String>,
    },
    /// Another scheme (`Negotiate`, `Digest`, ...), which linkguard cannot answer.
    Other(String),
}

/// Parses the first challenge of a `WWW-Authenticate` header value; `None` when it is empty or a
/// bearer challenge has no realm.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = match header.split_once(char::is_whitespace) {
        Some((scheme, rest)) => (scheme, rest),
        None => (header, ""),
    };
    if scheme.is_empty() {
        return None;
    }
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Some(Challenge::Basic),
        "bearer" => {
            let mut params = parse_params(rest);
            Some(Challenge::Bearer {
                realm: params.remove("realm").filter(|r| !r.is_empty())?,
                service: params.remove("service"),
                scope: params.remove("scope"),
                error: params.remove("error"),
            })
        }
        _ => Some(Challenge::Other(scheme.to_owned())),
    }
}

/// `key=value` and `key="quoted \"value\""` pairs separated by commas, keys lower-cased. Stops at
/// the first item that is not a parameter (the next challenge's scheme).
fn parse_params(text: &str) -> BTreeMap<String, String> {
    let mut params = BTreeMap::new();
    let mut rest = text.trim_start();
    while !rest.is_empty() {
        let Some(eq) = rest.find('=') else { break };
        let key = rest[..eq].trim();
        if key.is_empty() || key.contains(|c: char| c.is_whitespace() || c == ',') {
            break;
        }
        rest = rest[eq + 1..].trim_start();
        let value = if let Some(quoted) = rest.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, escaped)) = chars.next() {
                            value.push(escaped);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => value.push(c),
                }
            }
            rest = &quoted[end.min(quoted.len())..];
            value
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            let value = rest[..end].trim().to_owned();
            rest = &rest[end..];
            value
        };
        params.insert(key.to_ascii_lowercase(), value);
        rest = rest.trim_start();
        match rest.strip_prefix(',') {
            Some(after) => rest = after.trim_start(),
            None => break,
        }
    }
    params
}

/// The token server's JSON answer (distribution "Token Authentication Specification": `token`, or
/// the OAuth2 alias `access_token`, and an optional `expires_in` in seconds).
#[derive(Debug, serde::Deserialize)]
pub struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// Tokens without `expires_in` are valid for 60 seconds (the specification's default).
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);

/// The longest a token is kept, whatever `expires_in` claims (a hostile or buggy token server could
/// send u64::MAX, which would overflow `Instant + Duration`).
const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);

impl TokenResponse {
    /// The token and how long to use it (a little less than its lifetime, so it does not expire
    /// in flight); `None` when the answer holds no token.
    pub fn token(self) -> Option<(String, Duration)> {
        let lifetime = self
            .expires_in
            .map_or(DEFAULT_TOKEN_LIFETIME, Duration::from_secs)
            .clamp(DEFAULT_TOKEN_LIFETIME, MAX_TOKEN_LIFETIME);
        let token = self
            .token
            .filter(|t| !t.is_empty())
            .or(self.access_token.filter(|t| !t.is_empty()))?;
        Some((token, lifetime.saturating_sub(Duration::from_secs(10))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_expires_in_is_clamped() {
        let reply: TokenResponse =
            serde_json::from_str(&format!(r#"{{"token":"t","expires_in":{}}}"#, u64::MAX)).unwrap();
        let (token, lifetime) = reply.token().unwrap();
        assert_eq!(token, "t");
        assert!(lifetime <= MAX_TOKEN_LIFETIME);
        assert!(std::time::Instant::now().checked_add(lifetime).is_some());
    }

    #[test]
    fn parses_distribution_challenges() {
        assert_eq!(
            parse_challenge(r#"Basic realm="linkguard-test""#),
            Some(Challenge::Basic)
        );
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="http://127.0.0.1:4000/token",service="reg",scope="repository:a/b:pull,push""#
            ),
            Some(Challenge::Bearer {
                realm: "http://127.0.0.1:4000/token".into(),
                service: Some("reg".into()),
                scope: Some("repository:a/b:pull,push".into()),
                error: None,
            })
        );
        assert_eq!(
            parse_challenge(
                r#"bearer  Realm = "https://auth.example/t" , error="insufficient_scope", service=svc"#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.example/t".into(),
                service: Some("svc".into()),
                scope: None,
                error: Some("insufficient_scope".into()),
            })
        );
    }

    #[test]
    fn quoted_strings_unescape_and_keep_commas() {
        assert_eq!(
            parse_challenge(r#"Bearer realm="https://a.example/t?x=1,2",service="s\"q""#),
            Some(Challenge::Bearer {
                realm: "https://a.example/t?x=1,2".into(),
                service: Some("s\"q".into()),
                scope: None,
                error: None,
            })
        );
    }

    #[test]
    fn unusable_challenges() {
        assert_eq!(parse_challenge(""), None);
        assert_eq!(parse_challenge(r#"Bearer service="s""#), None, "no realm");
        assert_eq!(
            parse_challenge("Negotiate abc=="),
            Some(Challenge::Other("Negotiate".into()))
        );
        // Garbage after a parameter is ignored, not a panic.
        assert!(matches!(
            parse_challenge(r#"Bearer realm="r" junk, "#),
            Some(Challenge::Bearer { .. })
        ));
        assert!(matches!(
            parse_challenge(r#"Bearer realm="unterminated"#),
            Some(Challenge::Bearer { .. })
        ));
    }

    #[test]
    fn token_answers() {
        let parse = |s: &str| serde_json::from_str::<TokenResponse>(s).unwrap().token();
        assert_eq!(
            parse(r#"{"token":"t","expires_in":300}"#),
            Some(("t".into(), Duration::from_secs(290)))
        );
        assert_eq!(
            parse(r#"{"access_token":"a"}"#),
            Some(("a".into(), Duration::from_secs(50)))
        );
        assert_eq!(
            parse(r#"{"token":"","access_token":"a","expires_in":5}"#),
            Some(("a".into(), Duration::from_secs(50))),
            "short lifetimes are raised to the default"
        );
        assert_eq!(parse(r#"{"expires_in":5}"#), None);
    }
}
