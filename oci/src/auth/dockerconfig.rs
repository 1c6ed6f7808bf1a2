// SPDX-License-Identifier: Apache-2.0
//! Docker `config.json` and Kubernetes `dockerconfigjson` secrets.
//!
//! Both carry the same `auths` map (docker/cli `configfile.ConfigFile`): keys are registry
//! addresses in any of the forms `docker login` ever wrote (`host`, `host:port`,
//! `https://host/v1/`), values hold a base64 `auth` ("user:pass"), or `username`/`password`,
//! an `identitytoken` (OAuth2 refresh token) or a `registrytoken` (bearer token).
//! Every entry is decoded when the file is loaded, as docker does, so a malformed file is an
//! error naming the file and the entry, never a silent fallback to anonymous access.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use serde::Deserialize;

use super::{AuthError, Credentials};

/// The registry Docker Hub credentials are stored under by `docker login`.
const DOCKER_HUB: &str = "docker.io";
/// Addresses that all mean Docker Hub (docker/cli `registry.IndexServer` and friends).
const DOCKER_HUB_ALIASES: [&str; 3] = [
    "index.docker.io",
    "registry-1.docker.io",
    "registry.hub.docker.com",
];

/// Normalizes a registry address the way docker/cli `ConvertToHostname` does, plus Docker Hub
/// aliases and lower case (host names are case-insensitive): `https://Host:5000/v1/` -> `host:5000`.
pub fn normalize_registry(address: &str) -> String {
    let trimmed = address.trim();
    let without_scheme = trimmed
        .strip_prefix("https://")
        .or_else(|| trimmed.strip_prefix("http://"))
        .unwrap_or(trimmed);
    let host = without_scheme
        .split('/')
        .next()
        .unwrap_or(without_scheme)
        .to_ascii_lowercase();
    if DOCKER_HUB_ALIASES.contains(&host.as_str()) {
        DOCKER_HUB.to_owned()
    } else {
        host
    }
}

/// What kind of file the credentials came from (for messages only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A docker `config.json`.
    DockerConfig,
    /// A Kubernetes `kubernetes.io/dockerconfigjson` secret: the mounted `.dockerconfigjson`
    /// file, or the Secret manifest itself as JSON.
    KubernetesSecret,
}

/// One decoded `auths` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthEntry {
    /// The key exactly as written in the file.
    pub key: String,
    /// The key normalized with [`normalize_registry`].
    pub registry: String,
    /// The credentials it holds.
    pub credentials: EntryCredentials,
}

/// What an `auths` entry holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryCredentials {
    /// Usable credentials.
    Usable(Credentials),
    /// An OAuth2 refresh token (`identitytoken`), which oci-client cannot exchange.
    IdentityToken,
    /// Nothing: the secret lives in a credential helper (`credsStore`).
    Empty,
}

/// A loaded and fully decoded docker config file.
#[derive(Debug, Clone)]
pub struct DockerConfig {
    /// Where it was read from.
    pub path: PathBuf,
    /// Docker config or Kubernetes secret.
    pub kind: FileKind,
    /// Decoded entries, in key order.
    pub entries: Vec<AuthEntry>,
    /// `credsStore`: the default credential helper.
    pub creds_store: Option<String>,
    /// `credHelpers`: per-registry credential helpers, keys normalized.
    pub cred_helpers: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct RawConfig {
    #[serde(default)]
    auths: BTreeMap<String, RawEntry>,
    #[serde(rename = "credsStore", default)]
    creds_store: Option<String>,
    #[serde(rename = "credHelpers", default)]
    cred_helpers: BTreeMap<String, String>,
}

#[derive(Deserialize, Default)]
struct RawEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
    #[serde(default)]
    registrytoken: Option<String>,
}

impl DockerConfig {
    /// Reads and decodes `path`.
    pub fn load(path: &Path, kind: FileKind) -> Result<Self, AuthError> {
        let text = std::fs::read(path).map_err(|source| AuthError::ReadConfig {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path, kind)
    }

    /// Decodes the contents of a docker config or Kubernetes secret file.
    pub fn parse(text: &[u8], path: &Path, kind: FileKind) -> Result<Self, AuthError> {
        let malformed = |problem: String| AuthError::MalformedConfig {
            path: path.to_owned(),
            problem,
        };
        let value: serde_json::Value =
            serde_json::from_slice(text).map_err(|e| malformed(format!("not valid JSON: {e}")))?;
        let value = unwrap_secret_manifest(value).map_err(malformed)?;
        // serde accepts a JSON array for a struct; a docker config is always an object.
        if !value.is_object() {
            return Err(malformed("not a JSON object".to_owned()));
        }
        let raw: RawConfig = serde_json::from_value(value)
            .map_err(|e| malformed(format!("not a docker config: {e}")))?;
        let entries = raw
            .auths
            .into_iter()
            .map(|(key, entry)| {
                decode_entry(&key, entry)
                    .map_err(|problem| malformed(format!("entry \"{key}\": {problem}")))
                    .map(|credentials| AuthEntry {
                        registry: normalize_registry(&key),
                        key,
                        credentials,
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            path: path.to_owned(),
            kind,
            entries,
            creds_store: raw.creds_store.filter(|s| !s.is_empty()),
            cred_helpers: raw
                .cred_helpers
                .into_iter()
                .map(|(k, v)| (normalize_registry(&k), v))
                .collect(),
        })
    }

    /// The entry for `registry`: an exact key match first, then the first key that normalizes to
    /// the same registry (docker/cli `GetAuthConfig` does the same two passes).
    pub fn find(&self, registry: &str) -> Option<&AuthEntry> {
        let wanted = normalize_registry(registry);
        self.entries
            .iter()
            .find(|e| e.key == registry)
            .or_else(|| self.entries.iter().find(|e| e.registry == wanted))
    }

    /// The credential helper that holds the credentials for `registry`, if any. Per-registry
    /// helpers win over inline entries (as in docker/cli); `credsStore` counts only for a registry
    /// with an empty entry, which is what `docker login` writes next to a store. A registry with
    /// no entry at all has no credentials here, store or not.
    pub fn helper_for(&self, registry: &str) -> Option<&str> {
        let wanted = normalize_registry(registry);
        if let Some(helper) = self.cred_helpers.get(&wanted) {
            return Some(helper);
        }
        match self.find(registry).map(|e| &e.credentials) {
            Some(EntryCredentials::Usable(_) | EntryCredentials::IdentityToken) | None => None,
            Some(EntryCredentials::Empty) => self.creds_store.as_deref(),
        }
    }
}

/// Accepts a whole `kind: Secret` manifest (JSON) as well as the mounted `.dockerconfigjson` file.
fn unwrap_secret_manifest(value: serde_json::Value) -> Result<serde_json::Value, String> {
    if value.get("kind").and_then(|k| k.as_str()) != Some("Secret") {
        return Ok(value);
    }
    let from_data = |field: &str| -> Result<Option<Vec<u8>>, String> {
        match value.get("data").and_then(|d| d.get(field)) {
            None => Ok(None),
            Some(encoded) => {
                let encoded = encoded
                    .as_str()
                    .ok_or_else(|| format!("Secret data.{field} is not a string"))?;
                decode_base64(encoded)
                    .map(Some)
                    .map_err(|e| format!("Secret data.{field} is not base64: {e}"))
            }
        }
    };
    let from_string_data = |field: &str| {
        value
            .get("stringData")
            .and_then(|d| d.get(field))
            .and_then(|v| v.as_str())
            .map(|s| s.as_bytes().to_vec())
    };
    if let Some(bytes) =
        from_data(".dockerconfigjson")?.or_else(|| from_string_data(".dockerconfigjson"))
    {
        return serde_json::from_slice(&bytes)
            .map_err(|e| format!("Secret .dockerconfigjson is not valid JSON: {e}"));
    }
    // The legacy `kubernetes.io/dockercfg` type holds the `auths` map itself.
    if let Some(bytes) = from_data(".dockercfg")?.or_else(|| from_string_data(".dockercfg")) {
        let auths: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| format!("Secret .dockercfg is not valid JSON: {e}"))?;
        return Ok(serde_json::json!({ "auths": auths }));
    }
    Err("a Secret without data.\".dockerconfigjson\" or data.\".dockercfg\"".to_owned())
}

fn decode_base64(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    let text = text.trim();
    STANDARD
        .decode(text)
        .or_else(|_| STANDARD_NO_PAD.decode(text))
}

fn decode_entry(key: &str, entry: RawEntry) -> Result<EntryCredentials, String> {
    let non_empty = |v: Option<String>| v.filter(|s| !s.is_empty());
    if key.trim().is_empty() {
        return Err("empty registry key".to_owned());
    }
    if let Some(token) = non_empty(entry.registrytoken) {
        return Ok(EntryCredentials::Usable(Credentials::Bearer { token }));
    }
    if non_empty(entry.identitytoken).is_some() {
        return Ok(EntryCredentials::IdentityToken);
    }
    // docker/cli `decodeAuth`: base64 of "user:pass", split at the first colon, `auth` wins
    // over `username`/`password`.
    if let Some(auth) = non_empty(entry.auth) {
        let decoded =
            decode_base64(&auth).map_err(|e| format!("\"auth\" is not valid base64: {e}"))?;
        let decoded = String::from_utf8(decoded)
            .map_err(|_| "\"auth\" does not decode to UTF-8 text".to_owned())?;
        let (username, password) = decoded.split_once(':').ok_or_else(|| {
            "\"auth\" decodes to text without a colon (expected base64 of \"user:password\")"
                .to_owned()
        })?;
        if username.is_empty() {
            return Err("\"auth\" decodes to an empty username".to_owned());
        }
        return Ok(EntryCredentials::Usable(Credentials::Basic {
            username: username.to_owned(),
            password: password.trim_end_matches('\0').to_owned(),
        }));
    }
    match (non_empty(entry.username), non_empty(entry.password)) {
        (Some(username), Some(password)) => Ok(EntryCredentials::Usable(Credentials::Basic {
            username,
            password,
        })),
        (Some(_), None) => Err("\"username\" without \"password\"".to_owned()),
        (None, Some(_)) => Err("\"password\" without \"username\"".to_owned()),
        (None, None) => Ok(EntryCredentials::Empty),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<DockerConfig, AuthError> {
        DockerConfig::parse(
            text.as_bytes(),
            Path::new("/cfg/config.json"),
            FileKind::DockerConfig,
        )
    }

    fn basic(u: &str, p: &str) -> EntryCredentials {
        EntryCredentials::Usable(Credentials::Basic {
            username: u.into(),
            password: p.into(),
        })
    }

    fn b64(s: &str) -> String {
        STANDARD.encode(s)
    }

    #[test]
    fn normalizes_like_docker() {
        assert_eq!(
            normalize_registry("https://index.docker.io/v1/"),
            "docker.io"
        );
        assert_eq!(normalize_registry("registry-1.docker.io"), "docker.io");
        assert_eq!(normalize_registry("docker.io"), "docker.io");
        assert_eq!(
            normalize_registry("http://Reg.Example.com:5000/v2/"),
            "reg.example.com:5000"
        );
        assert_eq!(normalize_registry("127.0.0.1:5000"), "127.0.0.1:5000");
        assert_eq!(normalize_registry("[::1]:5000"), "[::1]:5000");
    }

    #[test]
    fn decodes_auth_field_and_keeps_colons_in_password() {
        let cfg = parse(&format!(
            r#"{{"auths":{{"127.0.0.1:5000":{{"auth":"{}"}}}}}}"#,
            b64("alice:pa:ss")
        ))
        .unwrap();
        assert_eq!(
            cfg.find("127.0.0.1:5000").unwrap().credentials,
            basic("alice", "pa:ss")
        );
    }

    #[test]
    fn accepts_unpadded_base64_and_username_password_fields() {
        let unpadded = b64("bob:x").trim_end_matches('=').to_owned();
        let cfg = parse(&format!(
            r#"{{"auths":{{"a.example":{{"auth":"{unpadded}"}},"b.example":{{"username":"carol","password":"pw"}}}},"psFormat":"table"}}"#
        ))
        .unwrap();
        assert_eq!(
            cfg.find("a.example").unwrap().credentials,
            basic("bob", "x")
        );
        assert_eq!(
            cfg.find("b.example").unwrap().credentials,
            basic("carol", "pw")
        );
    }

    #[test]
    fn auth_field_wins_over_username_password() {
        let cfg = parse(&format!(
            r#"{{"auths":{{"r.example":{{"auth":"{}","username":"other","password":"other"}}}}}}"#,
            b64("alice:secret")
        ))
        .unwrap();
        assert_eq!(
            cfg.find("r.example").unwrap().credentials,
            basic("alice", "secret")
        );
    }

    #[test]
    fn matches_url_keys_ports_and_docker_hub_aliases() {
        let cfg = parse(&format!(
            r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{}"}},"https://reg.example.com/v1/":{{"auth":"{}"}},"reg.example.com:5000":{{"auth":"{}"}}}}}}"#,
            b64("hub:1"),
            b64("noport:2"),
            b64("port:3")
        ))
        .unwrap();
        for hub in ["docker.io", "index.docker.io", "registry-1.docker.io"] {
            assert_eq!(
                cfg.find(hub).unwrap().credentials,
                basic("hub", "1"),
                "{hub}"
            );
        }
        assert_eq!(
            cfg.find("reg.example.com").unwrap().credentials,
            basic("noport", "2")
        );
        assert_eq!(
            cfg.find("REG.example.com:5000").unwrap().credentials,
            basic("port", "3")
        );
        assert!(
            cfg.find("reg.example.com:5001").is_none(),
            "a port is part of the registry"
        );
        assert!(cfg.find("other.example").is_none());
    }

    #[test]
    fn exact_key_wins_over_normalized_match() {
        let cfg = parse(&format!(
            r#"{{"auths":{{"https://r.example/v1/":{{"auth":"{}"}},"r.example":{{"auth":"{}"}}}}}}"#,
            b64("url:1"),
            b64("exact:2")
        ))
        .unwrap();
        assert_eq!(
            cfg.find("r.example").unwrap().credentials,
            basic("exact", "2")
        );
    }

    #[test]
    fn tokens_are_recognized() {
        let cfg = parse(
            r#"{"auths":{"t.example":{"registrytoken":"tok"},"i.example":{"auth":"PHRva2VuPjp4","identitytoken":"refresh"}}}"#,
        )
        .unwrap();
        assert_eq!(
            cfg.find("t.example").unwrap().credentials,
            EntryCredentials::Usable(Credentials::Bearer {
                token: "tok".into()
            })
        );
        assert_eq!(
            cfg.find("i.example").unwrap().credentials,
            EntryCredentials::IdentityToken
        );
    }

    #[test]
    fn malformed_entries_name_the_file_entry_and_problem() {
        let cases = [
            (
                r#"{"auths":{"r.example":{"auth":"!!!not base64"}}}"#.to_owned(),
                "not valid base64",
            ),
            (
                format!(
                    r#"{{"auths":{{"r.example":{{"auth":"{}"}}}}}}"#,
                    b64("nocolon")
                ),
                "without a colon",
            ),
            (
                format!(r#"{{"auths":{{"r.example":{{"auth":"{}"}}}}}}"#, b64(":pw")),
                "empty username",
            ),
            (
                r#"{"auths":{"r.example":{"username":"u"}}}"#.to_owned(),
                "without \"password\"",
            ),
            (
                r#"{"auths":{"r.example":{"password":"p"}}}"#.to_owned(),
                "without \"username\"",
            ),
        ];
        for (text, problem) in cases {
            let err = parse(&text).unwrap_err().to_string();
            assert!(err.contains("/cfg/config.json"), "{err}");
            assert!(err.contains("r.example"), "{err}");
            assert!(err.contains(problem), "{err}");
        }
    }

    #[test]
    fn malformed_json_is_an_error_naming_the_file() {
        for text in [
            "{",
            "[]",
            r#"{"auths":"x"}"#,
            r#"{"auths":{"r":{"auth":5}}}"#,
        ] {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains("/cfg/config.json"), "{text}: {err}");
        }
    }

    #[test]
    fn credential_helpers_are_reported() {
        let cfg = parse(r#"{"auths":{"store.example":{}},"credsStore":"desktop","credHelpers":{"https://gcr.io":"gcloud"}}"#)
            .unwrap();
        assert_eq!(cfg.helper_for("gcr.io"), Some("gcloud"));
        assert_eq!(cfg.helper_for("store.example"), Some("desktop"));
        assert_eq!(
            cfg.helper_for("unlisted.example"),
            None,
            "never logged in there"
        );
        let inline = parse(&format!(
            r#"{{"auths":{{"r":{{"auth":"{}"}}}},"credsStore":"desktop"}}"#,
            b64("u:p")
        ))
        .unwrap();
        assert_eq!(inline.helper_for("r"), None);
    }

    #[test]
    fn kubernetes_secret_manifest_and_legacy_dockercfg() {
        let inner = format!(
            r#"{{"auths":{{"r.example":{{"auth":"{}"}}}}}}"#,
            b64("k8s:pw")
        );
        let manifest = format!(
            r#"{{"apiVersion":"v1","kind":"Secret","type":"kubernetes.io/dockerconfigjson","data":{{".dockerconfigjson":"{}"}}}}"#,
            b64(&inner)
        );
        let cfg = DockerConfig::parse(
            manifest.as_bytes(),
            Path::new("/s"),
            FileKind::KubernetesSecret,
        )
        .unwrap();
        assert_eq!(
            cfg.find("r.example").unwrap().credentials,
            basic("k8s", "pw")
        );

        let legacy_inner = format!(r#"{{"r.example":{{"auth":"{}"}}}}"#, b64("old:pw"));
        let legacy = format!(
            r#"{{"kind":"Secret","data":{{".dockercfg":"{}"}}}}"#,
            b64(&legacy_inner)
        );
        let cfg = DockerConfig::parse(
            legacy.as_bytes(),
            Path::new("/s"),
            FileKind::KubernetesSecret,
        )
        .unwrap();
        assert_eq!(
            cfg.find("r.example").unwrap().credentials,
            basic("old", "pw")
        );

        let string_data = format!(
            r#"{{"kind":"Secret","stringData":{{".dockerconfigjson":{}}}}}"#,
            serde_json::Value::String(inner)
        );
        let cfg = DockerConfig::parse(
            string_data.as_bytes(),
            Path::new("/s"),
            FileKind::KubernetesSecret,
        )
        .unwrap();
        assert_eq!(
            cfg.find("r.example").unwrap().credentials,
            basic("k8s", "pw")
        );

        let err = DockerConfig::parse(
            br#"{"kind":"Secret","data":{"token":"eA=="}}"#,
            Path::new("/s"),
            FileKind::KubernetesSecret,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains(".dockerconfigjson"), "{err}");
    }
}
