// SPDX-License-Identifier: Apache-2.0
//! Just enough purl parsing to compare an SBOM's purls with the dpkg database's packages. Real generators
//! disagree on the spelling of the same package: distro2sbom writes `curl@7.88.1-10+deb12u15?arch=amd64`, syft
//! `curl@7.88.1-10+deb12u15?arch=amd64&distro=debian-12`, packageurl-python `curl@7.88.1-10%2Bdeb12u15...`, trivy
//! moves the epoch to an `epoch=` qualifier. Comparison therefore decodes every component and compares the
//! package identity (type, name, version with epoch, arch), not the strings.

/// A parsed, percent-decoded purl.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Purl {
    pub ty: String,
    pub namespace: Option<String>,
    pub name: String,
    pub version: Option<String>,
    pub qualifiers: Vec<(String, String)>,
}

impl Purl {
    /// Parses `pkg:type/namespace/name@version?qualifiers#subpath`; None when it is not a purl.
    pub(crate) fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        let rest = s
            .get(..4)
            .filter(|p| p.eq_ignore_ascii_case("pkg:"))
            .map(|_| &s[4..])?;
        let rest = rest.trim_start_matches('/');
        let rest = rest.split_once('#').map_or(rest, |(r, _)| r);
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        let (ty, path) = rest.split_once('/')?;
        if ty.is_empty() {
            return None;
        }
        // The version separator is the '@' after the last '/' (npm namespaces start with '@').
        let last_slash = path.rfind('/').map_or(0, |i| i + 1);
        let (path, version) = match path[last_slash..].rfind('@') {
            Some(at) => (&path[..last_slash + at], Some(&path[last_slash + at + 1..])),
            None => (path, None),
        };
        let path = path.trim_matches('/');
        let (namespace, name) = match path.rsplit_once('/') {
            Some((ns, name)) => (Some(ns), name),
            None => (None, path),
        };
        if name.is_empty() {
            return None;
        }
        let qualifiers = query
            .map(|q| {
                q.split('&')
                    .filter_map(|kv| kv.split_once('='))
                    .filter(|(_, v)| !v.is_empty())
                    .map(|(k, v)| (k.to_ascii_lowercase(), percent_decode(v)))
                    .collect()
            })
            .unwrap_or_default();
        Some(Purl {
            ty: ty.to_ascii_lowercase(),
            namespace: namespace.map(percent_decode),
            name: percent_decode(name),
            version: version.filter(|v| !v.is_empty()).map(percent_decode),
            qualifiers,
        })
    }

    pub(crate) fn qualifier(&self, key: &str) -> Option<&str> {
        self.qualifiers
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The Debian version including the epoch, wherever the generator put it (in the version or, as trivy
    /// does, in an `epoch` qualifier).
    pub(crate) fn deb_version(&self) -> Option<String> {
        let version = self.version.as_deref()?;
        match self.qualifier("epoch") {
            Some(epoch) if !version.contains(':') && epoch != "0" => {
                Some(format!("{epoch}:{version}"))
            }
            _ => Some(version.to_owned()),
        }
    }
}

/// Decodes %XX sequences; invalid sequences are kept as they are. `+` is not a space in purls.
pub(crate) fn percent_decode(s: &str) -> String {
    if !s.contains('%') {
        return s.to_owned();
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex_value(bytes[i + 1]), hex_value(bytes[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Whether two Debian versions name the same package version. An epoch missing on one side (some tools drop
/// it from the version field) still matches; `0:` is the same as no epoch (deb-version(7)).
pub(crate) fn deb_versions_match(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    let split = |v: &str| -> (Option<String>, String) {
        match v.split_once(':') {
            Some((epoch, rest))
                if !epoch.is_empty() && epoch.bytes().all(|c| c.is_ascii_digit()) =>
            {
                let epoch = epoch.trim_start_matches('0');
                (
                    (!epoch.is_empty()).then(|| epoch.to_owned()),
                    rest.to_owned(),
                )
            }
            _ => (None, v.to_owned()),
        }
    };
    let ((ea, ra), (eb, rb)) = (split(a), split(b));
    ra == rb && (ea == eb || ea.is_none() || eb.is_none())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_real_world_deb_purls() {
        let p =
            Purl::parse("pkg:deb/debian/libgmp10@2:6.2.1%2Bdfsg1-1.1?arch=amd64&distro=debian-12")
                .unwrap();
        assert_eq!(p.ty, "deb");
        assert_eq!(p.namespace.as_deref(), Some("debian"));
        assert_eq!(p.name, "libgmp10");
        assert_eq!(p.deb_version().as_deref(), Some("2:6.2.1+dfsg1-1.1"));
        assert_eq!(p.qualifier("arch"), Some("amd64"));
        assert_eq!(p.qualifier("distro"), Some("debian-12"));

        // distro2sbom: raw '+', no distro.
        let d = Purl::parse("pkg:deb/debian/curl@7.88.1-10+deb12u15?arch=amd64").unwrap();
        assert_eq!(d.version.as_deref(), Some("7.88.1-10+deb12u15"));
        // trivy: epoch as a qualifier; %3A-encoded colon.
        let t = Purl::parse(
            "pkg:deb/debian/zlib1g@1.2.13.dfsg-1?arch=amd64&distro=debian-12.8&epoch=1",
        )
        .unwrap();
        assert_eq!(t.deb_version().as_deref(), Some("1:1.2.13.dfsg-1"));
        let e = Purl::parse("pkg:deb/debian/login@1%3A4.13%2Bdfsg1-1?arch=amd64").unwrap();
        assert_eq!(e.deb_version().as_deref(), Some("1:4.13+dfsg1-1"));
    }

    #[test]
    fn parses_other_shapes() {
        let npm = Purl::parse("pkg:npm/%40sigstore/verify@1.2.3").unwrap();
        assert_eq!(
            (npm.namespace.as_deref(), npm.name.as_str()),
            (Some("@sigstore"), "verify")
        );
        let scoped = Purl::parse("pkg:npm/@sigstore/verify@1.2.3#sub/path").unwrap();
        assert_eq!(
            (scoped.namespace.as_deref(), scoped.version.as_deref()),
            (Some("@sigstore"), Some("1.2.3"))
        );
        let pypi = Purl::parse("pkg:pypi/pyyaml@6.0.3").unwrap();
        assert_eq!((pypi.namespace, pypi.name.as_str()), (None, "pyyaml"));
        let noversion = Purl::parse("PKG://deb/debian/curl").unwrap();
        assert_eq!((noversion.ty.as_str(), noversion.version), ("deb", None));
        for bad in [
            "",
            "curl",
            "pkg:",
            "pkg:deb",
            "pkg:/name",
            "pkg:deb/",
            "http://x/y",
        ] {
            assert!(Purl::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn decoding_and_version_matching() {
        assert_eq!(percent_decode("a%2Bb%3a%zz%4"), "a+b:%zz%4");
        assert!(deb_versions_match("1:1.2.13.dfsg-1", "1.2.13.dfsg-1"));
        assert!(deb_versions_match("0:1.0", "1.0"));
        assert!(deb_versions_match("01:1.0", "1:1.0"));
        assert!(!deb_versions_match("1:1.0", "2:1.0"));
        assert!(!deb_versions_match("1.0-1", "1.0-2"));
    }
}
