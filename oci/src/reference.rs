// SPDX-License-Identifier: Apache-2.0
//! Image references (`registry/repository:tag`, `registry/repository@sha256:<hex>`) and digests.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};

/// A `sha256:<64 lowercase hex>` content digest, the only algorithm this crate accepts.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest(String);

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(format!("sha256:{}", hex::encode(Sha256::digest(bytes))))
    }

    /// The full text, `sha256:<hex>`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The hex part.
    pub fn hex(&self) -> &str {
        self.0.trim_start_matches("sha256:")
    }

    /// The referrers tag schema tag for this digest (`sha256-<hex>`), per the distribution spec's
    /// "Referrers Tag Schema".
    pub fn fallback_tag(&self) -> String {
        format!("sha256-{}", self.hex())
    }
}

impl FromStr for Digest {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let valid = s.strip_prefix("sha256:").is_some_and(|hex| {
            hex.len() == 64
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        });
        if valid {
            Ok(Self(s.to_owned()))
        } else {
            Err(Error::InvalidDigest {
                input: s.to_owned(),
            })
        }
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A reference to a manifest in a registry: a tag, a digest, or both (`repo:tag@sha256:...`, where
/// the digest wins).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// A reference to `digest` in `registry/repository`.
    pub fn with_digest(registry: &str, repository: &str, digest: Digest) -> Self {
        Self {
            registry: registry.to_owned(),
            repository: repository.to_owned(),
            tag: None,
            digest: Some(digest),
        }
    }

    /// The registry host, with port when one was given.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository inside the registry.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, if one was given.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if one was given.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// The same repository at another digest.
    pub fn at_digest(&self, digest: Digest) -> Self {
        Self::with_digest(&self.registry, &self.repository, digest)
    }

    /// The same repository at another tag.
    pub(crate) fn at_tag(&self, tag: &str) -> Self {
        Self {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            tag: Some(tag.to_owned()),
            digest: None,
        }
    }

    /// The path segment of a manifest URL: the digest when known, else the tag (`latest` when neither).
    pub(crate) fn manifest_ref(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_owned(),
        }
    }
}

fn invalid(input: &str, reason: &'static str) -> Error {
    Error::InvalidReference {
        input: input.to_owned(),
        reason,
    }
}

/// Repository path components per the distribution spec: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    !b.is_empty()
        && b.first().copied().is_some_and(alnum)
        && b.last().copied().is_some_and(alnum)
        && b.iter()
            .all(|&x| alnum(x) || matches!(x, b'.' | b'_' | b'-'))
}

fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    (1..=128).contains(&b.len())
        && b.first()
            .is_some_and(|&x| x.is_ascii_alphanumeric() || x == b'_')
        && b.iter()
            .all(|&x| x.is_ascii_alphanumeric() || matches!(x, b'_' | b'.' | b'-'))
}

impl FromStr for Reference {
    type Err = Error;

    /// Parses `registry/repository[:tag][@sha256:<hex>]`. The registry must be explicit (its first
    /// component contains `.` or `:`, or is `localhost`): a verifier must not guess Docker Hub.
    fn from_str(input: &str) -> Result<Self> {
        let (rest, digest) = match input.split_once('@') {
            Some((rest, d)) => (rest, Some(d.parse::<Digest>()?)),
            None => (input, None),
        };
        let (registry, path) = rest
            .split_once('/')
            .ok_or_else(|| invalid(input, "no registry host before the repository"))?;
        let explicit = registry.contains('.') || registry.contains(':') || registry == "localhost";
        if !explicit {
            return Err(invalid(input, "the first component is not a registry host"));
        }
        // A tag separator is a ':' after the last '/', so registry ports are not mistaken for tags.
        let (repository, tag) = match path.rsplit_once(':') {
            Some((repo, tag)) if !tag.contains('/') => (repo, Some(tag)),
            _ => (path, None),
        };
        if !repository.split('/').all(valid_component) || repository.len() > 255 {
            return Err(invalid(input, "the repository name is not valid"));
        }
        if tag.is_some_and(|t| !valid_tag(t)) {
            return Err(invalid(input, "the tag is not valid"));
        }
        if tag.is_none() && digest.is_none() {
            return Err(invalid(input, "neither a tag nor a digest was given"));
        }
        Ok(Self {
            registry: registry.to_owned(),
            repository: repository.to_owned(),
            tag: tag.map(str::to_owned),
            digest,
        })
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";

    #[test]
    fn digest_of_empty_json_object_is_the_spec_value() {
        assert_eq!(Digest::of(b"{}").as_str(), format!("sha256:{HEX}"));
        assert_eq!(Digest::of(b"{}").fallback_tag(), format!("sha256-{HEX}"));
    }

    #[test]
    fn digests_other_than_lowercase_sha256_are_refused() {
        for bad in [
            "sha256:abc",
            "sha512:00",
            &format!("sha256:{}", HEX.to_uppercase()),
            HEX,
        ] {
            assert!(bad.parse::<Digest>().is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_tag_digest_and_port() {
        let r: Reference = "127.0.0.1:5000/team/app:v1.2".parse().unwrap();
        assert_eq!(
            (r.registry(), r.repository(), r.tag()),
            ("127.0.0.1:5000", "team/app", Some("v1.2"))
        );
        assert_eq!(r.digest(), None);
        let r: Reference = format!("ghcr.io/app@sha256:{HEX}").parse().unwrap();
        assert_eq!(r.digest().map(Digest::hex), Some(HEX));
        assert_eq!(r.to_string(), format!("ghcr.io/app@sha256:{HEX}"));
        let r: Reference = "localhost:5000/app:latest".parse().unwrap();
        assert_eq!(r.to_string(), "localhost:5000/app:latest");
    }

    #[test]
    fn refuses_implicit_registry_bad_names_and_missing_tag() {
        for bad in [
            "app:latest",
            "library/app:1",
            "r.io/App:1",
            "r.io/app",
            "r.io/app:",
            "r.io/app@sha256:00",
        ] {
            assert!(bad.parse::<Reference>().is_err(), "{bad}");
        }
    }
}
