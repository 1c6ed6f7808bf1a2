// SPDX-License-Identifier: Apache-2.0
//! The registry client: configuration, credentials per registry, bounded reads, `resolve` and
//! `pull_artifact`.
//!
//! Every request is our own on reqwest (the HTTP client oci-client uses) and goes through
//! `Client::send` (client/send.rs): the pull or push credentials of the request's registry, the
//! registry's `WWW-Authenticate` challenge answered (HTTP basic, or the bearer-token flow), and
//! transient failures retried per [`RetryPolicy`]. oci-client is not used on the wire because it
//! reads whole bodies without a size limit, hides the status and headers this crate needs
//! (the referrers-API probe, `Retry-After`, `OCI-Subject`), and keeps one credential per registry
//! where a push needs its own.

mod send;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use oci_client::secrets::RegistryAuth;
use reqwest::header::HeaderValue;

use crate::auth::dockerconfig::normalize_registry;
use crate::auth::{
    Access, AuthConfig, AuthError, CredentialSet, CredentialSource, Credentials,
    ResolvedCredentials, process_env,
};
use crate::error::{Error, Operation, Result, Site};
use crate::manifest::{Descriptor, ImageManifest, MANIFEST_MEDIA_TYPES, OCI_MANIFEST};
use crate::reference::{Digest, Reference};
use crate::transport::{InsecurePolicy, RetryPolicy, TransportConfig};

pub(crate) use send::{Call, error_class};

/// Manifests larger than this are refused (the limit distribution and most registries enforce).
pub const DEFAULT_MAX_MANIFEST_BYTES: u64 = 4 * 1024 * 1024;
/// Default limit for one artifact layer (reports and maps are kilobytes).
pub const DEFAULT_MAX_LAYER_BYTES: u64 = 64 * 1024 * 1024;

/// Client configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// Which registries are reached over plain HTTP (loopback by default; every other one HTTPS only).
    pub insecure: InsecurePolicy,
    /// Largest manifest or referrers index read, in bytes.
    pub max_manifest_bytes: u64,
    /// Largest artifact layer read, in bytes.
    pub max_layer_bytes: u64,
    /// Read-modify-write rounds for the fallback tag before giving up.
    pub fallback_attempts: u32,
    /// TCP + TLS connect timeout of every request.
    pub connect_timeout: Duration,
    /// Longest wait for the next bytes of a reply.
    pub read_timeout: Duration,
    /// Retries of transient failures: network errors, 429 and 5xx (never 4xx).
    pub retry: RetryPolicy,
}

impl Default for ClientConfig {
    /// Loopback-only plain HTTP, 4 MiB manifests, 64 MiB layers, the default transport timeouts and
    /// retry policy.
    fn default() -> Self {
        Self::from_transport(&TransportConfig::default())
    }
}

impl ClientConfig {
    /// The insecure policy and timeouts of `transport`, with the default limits and retries.
    pub fn from_transport(transport: &TransportConfig) -> Self {
        Self {
            insecure: transport.insecure.clone(),
            max_manifest_bytes: DEFAULT_MAX_MANIFEST_BYTES,
            max_layer_bytes: DEFAULT_MAX_LAYER_BYTES,
            fallback_attempts: 12,
            connect_timeout: transport.connect_timeout,
            read_timeout: transport.read_timeout,
            retry: RetryPolicy::default(),
        }
    }
}

/// Reads an environment variable.
type EnvLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Which credentials a registry gets.
enum CredentialProvider {
    /// [`Client::new`]: the same credentials for every registry, pull and push.
    Everywhere(RegistryAuth),
    /// Resolved from the sources on first use of each registry.
    Resolve {
        config: Box<AuthConfig>,
        env: EnvLookup,
    },
    /// Fixed per registry (keys normalized); anonymous elsewhere.
    Sets(BTreeMap<String, CredentialSet>),
}

/// The `Authorization` header earned by answering a challenge, per registry, repository and access.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct SessionKey {
    registry: String,
    repository: String,
    access: Access,
}

#[derive(Debug, Clone)]
struct Session {
    authorization: HeaderValue,
    /// `None` for basic credentials, which do not expire.
    expires: Option<Instant>,
}

/// A registry client. Cheap to share behind an `Arc`; every method takes `&self`, and concurrent
/// calls are fine.
pub struct Client {
    pub(crate) config: ClientConfig,
    pub(crate) raw: reqwest::Client,
    /// For requests with a body: reqwest's read timeout also runs while the body is being sent,
    /// so uploads get a deadline that grows with their size instead (client/send.rs).
    upload: reqwest::Client,
    provider: CredentialProvider,
    resolved: Mutex<BTreeMap<String, CredentialSet>>,
    sessions: Mutex<HashMap<SessionKey, Session>>,
}

impl std::fmt::Debug for Client {
    // oci_client::Client is not Debug, and the auth must never be printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// An artifact pulled by digest: its manifest and its layers' content, all digest-checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    /// The manifest's digest.
    pub digest: Digest,
    /// The manifest.
    pub manifest: ImageManifest,
    /// Each layer's descriptor and content, in manifest order.
    pub layers: Vec<(Descriptor, Vec<u8>)>,
}

/// The credentials an operation uses: writes (and the reads inside a push) use the push
/// credentials, every other read the pull credentials.
pub(crate) fn access_of(operation: Operation) -> Access {
    if matches!(
        operation,
        Operation::PushArtifact | Operation::UpdateFallbackIndex
    ) {
        Access::Push
    } else {
        Access::Pull
    }
}

impl Client {
    /// A client with `auth` for every registry, for pulls and pushes alike.
    pub fn new(config: ClientConfig, auth: RegistryAuth) -> Result<Self> {
        Self::build(config, CredentialProvider::Everywhere(auth))
    }

    /// A client that resolves each registry's pull and push credentials from `auth`'s sources
    /// (flags, the process environment, docker config, Kubernetes secret) on first use.
    pub fn with_credentials(config: ClientConfig, auth: AuthConfig) -> Result<Self> {
        Self::with_credentials_env(config, auth, process_env)
    }

    /// [`Client::with_credentials`] reading environment variables through `env` instead of the
    /// process environment.
    pub fn with_credentials_env(
        config: ClientConfig,
        auth: AuthConfig,
        env: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
    ) -> Result<Self> {
        Self::build(
            config,
            CredentialProvider::Resolve {
                config: Box::new(auth),
                env: Arc::new(env),
            },
        )
    }

    /// A client with resolved credential sets, one per registry; other registries are anonymous.
    pub fn with_credential_sets(
        config: ClientConfig,
        sets: impl IntoIterator<Item = CredentialSet>,
    ) -> Result<Self> {
        let sets = sets
            .into_iter()
            .map(|set| (normalize_registry(&set.pull.registry), set))
            .collect();
        Self::build(config, CredentialProvider::Sets(sets))
    }

    fn build(config: ClientConfig, provider: CredentialProvider) -> Result<Self> {
        let builder = || {
            reqwest::Client::builder()
                .user_agent(concat!("linkguard-oci/", env!("CARGO_PKG_VERSION")))
                .connect_timeout(config.connect_timeout)
        };
        let raw = builder()
            .read_timeout(config.read_timeout)
            .build()
            .map_err(|source| Error::HttpClient { source })?;
        let upload = builder()
            .build()
            .map_err(|source| Error::HttpClient { source })?;
        Ok(Self {
            raw,
            upload,
            config,
            provider,
            resolved: Mutex::new(BTreeMap::new()),
            sessions: Mutex::new(HashMap::new()),
        })
    }

    /// The pull and push credentials this client uses for `registry`, with their sources.
    pub fn credentials(&self, registry: &str) -> Result<CredentialSet, AuthError> {
        let key = normalize_registry(registry);
        let anonymous = || ResolvedCredentials {
            registry: registry.to_owned(),
            credentials: Credentials::Anonymous,
            source: CredentialSource::NoneConfigured,
        };
        match &self.provider {
            CredentialProvider::Everywhere(RegistryAuth::Anonymous) => Ok(CredentialSet {
                pull: anonymous(),
                push: anonymous(),
            }),
            CredentialProvider::Everywhere(auth) => {
                let credentials = match auth {
                    RegistryAuth::Basic(username, password) => Credentials::Basic {
                        username: username.clone(),
                        password: password.clone(),
                    },
                    RegistryAuth::Bearer(token) => Credentials::Bearer {
                        token: token.clone(),
                    },
                    RegistryAuth::Anonymous => Credentials::Anonymous,
                };
                let resolved = ResolvedCredentials {
                    registry: registry.to_owned(),
                    credentials,
                    source: CredentialSource::Programmatic,
                };
                Ok(CredentialSet {
                    pull: resolved.clone(),
                    push: resolved,
                })
            }
            CredentialProvider::Sets(sets) => {
                Ok(sets.get(&key).cloned().unwrap_or_else(|| CredentialSet {
                    pull: anonymous(),
                    push: anonymous(),
                }))
            }
            CredentialProvider::Resolve { config, env } => {
                if let Some(set) = self.lock_resolved().get(&key) {
                    return Ok(set.clone());
                }
                // Resolution reads files: done outside the lock; a concurrent first use resolves
                // twice and stores the same answer.
                let set = config.resolve(registry, env.as_ref())?;
                self.lock_resolved().insert(key, set.clone());
                Ok(set)
            }
        }
    }

    fn lock_resolved(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, CredentialSet>> {
        // A panic while holding the lock cannot leave the map half-updated (single inserts).
        self.resolved
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The credentials for `access` to `site`'s registry, or an error naming the site.
    pub(crate) fn resolved(&self, site: &Site, access: Access) -> Result<ResolvedCredentials> {
        let set = self
            .credentials(&site.registry)
            .map_err(|source| Error::Auth {
                site: Box::new(site.clone()),
                source,
            })?;
        Ok(match access {
            Access::Pull => set.pull,
            Access::Push => set.push,
        })
    }

    fn session_key(site: &Site, access: Access) -> SessionKey {
        SessionKey {
            registry: normalize_registry(&site.registry),
            repository: site.repository.clone(),
            access,
        }
    }

    /// The `Authorization` header for requests to `site` with `access`: a bearer token given as
    /// credentials, or what an earlier challenge earned (until it expires).
    pub(crate) fn authorization(
        &self,
        site: &Site,
        access: Access,
        credentials: &Credentials,
    ) -> Option<HeaderValue> {
        let key = Self::session_key(site, access);
        let mut sessions = self
            .sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match sessions.get(&key) {
            Some(s) if s.expires.is_none_or(|e| e > Instant::now()) => {
                return Some(s.authorization.clone());
            }
            Some(_) => {
                sessions.remove(&key);
            }
            None => {}
        }
        drop(sessions);
        match credentials {
            Credentials::Bearer { token } => HeaderValue::from_str(&format!("Bearer {token}")).ok(),
            _ => None,
        }
    }

    pub(crate) fn remember_authorization(
        &self,
        site: &Site,
        access: Access,
        authorization: HeaderValue,
        lifetime: Option<Duration>,
    ) {
        let mut authorization = authorization;
        authorization.set_sensitive(true);
        self.sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(
                Self::session_key(site, access),
                Session {
                    authorization,
                    // A lifetime too long to represent never expires in practice; treat it as
                    // "no expiry" rather than panicking on overflow.
                    expires: lifetime.and_then(|l| Instant::now().checked_add(l)),
                },
            );
    }

    /// Whether `registry` may be reached over plain HTTP.
    pub fn is_insecure(&self, registry: &str) -> bool {
        self.config.insecure.allows_plain_http(registry)
    }

    /// `<scheme>://<registry>/v2/<repository>`; Docker Hub's API lives at registry-1.docker.io.
    pub(crate) fn base_url(&self, r: &Reference) -> String {
        let scheme = if self.is_insecure(r.registry()) {
            "http"
        } else {
            "https"
        };
        let host = if normalize_registry(r.registry()) == "docker.io" {
            "registry-1.docker.io"
        } else {
            r.registry()
        };
        format!("{scheme}://{host}/v2/{}", r.repository())
    }

    pub(crate) fn site(r: &Reference, operation: Operation) -> Box<Site> {
        Box::new(Site {
            registry: r.registry().to_owned(),
            repository: r.repository().to_owned(),
            operation,
        })
    }

    /// GET `url`, reading at most `limit` bytes of body; `Ok(None)` when the registry answers 404/405.
    pub(crate) async fn get_bounded(
        &self,
        site: &Site,
        url: &str,
        accept: &str,
        limit: u64,
        what: &str,
    ) -> Result<Option<Vec<u8>>> {
        Ok(self
            .get_bounded_typed(site, url, accept, limit, what)
            .await?
            .map(|(body, _)| body))
    }

    /// [`Client::get_bounded`], with the reply's `Content-Type` (parameters dropped, lower case).
    pub(crate) async fn get_bounded_typed(
        &self,
        site: &Site,
        url: &str,
        accept: &str,
        limit: u64,
        what: &str,
    ) -> Result<Option<(Vec<u8>, Option<String>)>> {
        Ok(self
            .get_page(site, url, accept, limit, what)
            .await?
            .map(|page| (page.body, page.content_type)))
    }

    /// [`Client::get_bounded_typed`], with the URL of the next page when the reply has a
    /// `Link: <...>; rel="next"` header (distribution spec, "Listing Referrers": registries may
    /// paginate with RFC 8288 links), resolved against `url`.
    pub(crate) async fn get_page(
        &self,
        site: &Site,
        url: &str,
        accept: &str,
        limit: u64,
        what: &str,
    ) -> Result<Option<Page>> {
        let call = Call::new(reqwest::Method::GET, url, access_of(site.operation)).accept(accept);
        self.send_and_read(site, &call, self.config.retry, |resp| async move {
            let status = resp.status().as_u16();
            if status == 404 || status == 405 {
                return Ok(None);
            }
            if !(200..300).contains(&status) {
                return Err(send::rejected(site, url, resp).await);
            }
            let content_type = send::content_type(&resp);
            let next = resp
                .headers()
                .get_all(reqwest::header::LINK)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .find_map(next_link)
                .and_then(|link| reqwest::Url::parse(url).ok()?.join(&link).ok())
                .map(String::from);
            let body = send::read_limited(site, url, resp, limit, what).await?;
            Ok(Some(Page {
                body,
                content_type,
                next,
            }))
        })
        .await
    }

    /// A manifest's bytes and digest. A digest reference is checked against the bytes received, and
    /// a manifest served as (or declaring) a manifest media type other than `accept` is refused.
    pub(crate) async fn get_manifest(
        &self,
        r: &Reference,
        operation: Operation,
        accept: &str,
    ) -> Result<Option<(Vec<u8>, Digest)>> {
        let site = Self::site(r, operation);
        let reference = r.manifest_ref();
        let url = format!("{}/manifests/{reference}", self.base_url(r));
        let what = format!("manifest {reference}");
        let limit = self.config.max_manifest_bytes;
        let Some((body, content_type)) = self
            .get_bounded_typed(&site, &url, accept, limit, &what)
            .await?
        else {
            return Ok(None);
        };
        let actual = Digest::of(&body);
        if let Some(expected) = r.digest().filter(|e| **e != actual) {
            return Err(Error::DigestMismatch {
                site,
                what,
                expected: expected.to_string(),
                actual: actual.to_string(),
            });
        }
        check_manifest_type(&site, &what, accept, content_type.as_deref(), &body)?;
        Ok(Some((body, actual)))
    }

    /// The descriptor of the manifest `r` names (media type, digest, size), as a subject needs it.
    pub(crate) async fn describe(&self, r: &Reference, operation: Operation) -> Result<Descriptor> {
        let accept = MANIFEST_MEDIA_TYPES.join(", ");
        let (body, digest) = self
            .get_manifest(r, operation, &accept)
            .await?
            .ok_or_else(|| Error::NotFound {
                site: Self::site(r, operation),
                reference: r.manifest_ref(),
            })?;
        let media_type = body_media_type(&body)
            .map_err(|reason| Error::InvalidManifest {
                site: Self::site(r, operation),
                what: format!("manifest {}", r.manifest_ref()),
                expected: "image manifest or index",
                reason,
            })?
            .unwrap_or_else(|| OCI_MANIFEST.to_owned());
        Ok(Descriptor {
            media_type,
            digest: digest.to_string(),
            size: body.len() as u64,
            artifact_type: None,
            annotations: BTreeMap::new(),
        })
    }

    /// The manifest digest `reference` names: a digest reference as it is, a tag resolved by fetching
    /// the manifest and hashing the bytes received (not trusting a `Docker-Content-Digest` header).
    pub async fn resolve(&self, reference: &Reference) -> Result<Digest> {
        if let Some(d) = reference.digest() {
            return Ok(d.clone());
        }
        let descriptor = self.describe(reference, Operation::Resolve).await?;
        descriptor.digest.parse()
    }

    /// The artifact manifest `digest` in `repository`'s registry and every layer, each checked against
    /// its digest and size and against the configured limits.
    pub async fn pull_artifact(&self, repository: &Reference, digest: &Digest) -> Result<Artifact> {
        let op = Operation::PullArtifact;
        let r = repository.at_digest(digest.clone());
        let site = Self::site(&r, op);
        let (body, _) = self
            .get_manifest(&r, op, OCI_MANIFEST)
            .await?
            .ok_or_else(|| Error::NotFound {
                site: site.clone(),
                reference: digest.to_string(),
            })?;
        let manifest =
            crate::referrers::parse_image_manifest(&site, &format!("manifest {digest}"), &body)?;
        let mut layers = Vec::with_capacity(manifest.layers.len());
        for layer in &manifest.layers {
            let data = self.pull_blob(&r, &site, layer).await?;
            layers.push((layer.clone(), data));
        }
        Ok(Artifact {
            digest: digest.clone(),
            manifest,
            layers,
        })
    }

    /// The blob `layer` describes, checked against the layer limit, its declared size (never more
    /// is read) and its digest.
    pub(crate) async fn pull_blob(
        &self,
        r: &Reference,
        site: &Site,
        layer: &Descriptor,
    ) -> Result<Vec<u8>> {
        let what = format!("blob {}", layer.digest);
        let limit = self.config.max_layer_bytes;
        let expected: Digest = layer.digest.parse()?;
        if layer.size > limit {
            return Err(Error::TooLarge {
                site: Box::new(site.clone()),
                what,
                limit,
            });
        }
        let url = format!("{}/blobs/{expected}", self.base_url(r));
        let oversize = format!("{what} (larger than the size its descriptor declares)");
        let call = Call::new(reqwest::Method::GET, &url, access_of(site.operation));
        let (url_ref, oversize_ref, size, digest_ref) =
            (url.as_str(), oversize.as_str(), layer.size, &expected);
        let data = self
            .send_and_read(site, &call, self.config.retry, |resp| async move {
                match resp.status().as_u16() {
                    200..=299 => send::read_limited(site, url_ref, resp, size, oversize_ref).await,
                    404 => Err(Error::NotFound {
                        site: Box::new(site.clone()),
                        reference: digest_ref.to_string(),
                    }),
                    _ => Err(send::rejected(site, url_ref, resp).await),
                }
            })
            .await?;
        let actual = Digest::of(&data);
        if actual != expected {
            return Err(Error::DigestMismatch {
                site: Box::new(site.clone()),
                what,
                expected: expected.to_string(),
                actual: actual.to_string(),
            });
        }
        if data.len() as u64 != layer.size {
            return Err(Error::SizeMismatch {
                site: Box::new(site.clone()),
                what,
                expected: layer.size,
                actual: data.len() as u64,
            });
        }
        Ok(data)
    }
}

/// One reply of a paginated GET.
pub(crate) struct Page {
    /// The body, at most the limit asked for.
    pub(crate) body: Vec<u8>,
    /// `Content-Type` without parameters, lower case.
    pub(crate) content_type: Option<String>,
    /// The absolute URL of the next page.
    pub(crate) next: Option<String>,
}

/// The target of the `rel="next"` link in a `Link` header value (RFC 8288:
/// `<uri>; rel="next", <uri2>; rel="prev"`).
fn next_link(header: &str) -> Option<String> {
    let mut rest = header;
    while let Some(open) = rest.find('<') {
        let close = open + rest[open..].find('>')?;
        let target = &rest[open + 1..close];
        let params_end = rest[close..].find('<').map_or(rest.len(), |i| close + i);
        let is_next = rest[close + 1..params_end].split(';').any(|param| {
            let Some((key, value)) = param.split_once('=') else {
                return false;
            };
            key.trim().eq_ignore_ascii_case("rel")
                && value
                    .trim()
                    .trim_end_matches(',')
                    .trim()
                    .trim_matches('"')
                    .split_whitespace()
                    .any(|rel| rel.eq_ignore_ascii_case("next"))
        });
        if is_next {
            return Some(target.to_owned());
        }
        rest = &rest[params_end..];
    }
    None
}

/// Manifest media types, as opposed to generic ones (`application/json`, `octet-stream`) some
/// servers put on everything.
fn is_manifest_type(media_type: &str) -> bool {
    [
        "application/vnd.oci.image.manifest.",
        "application/vnd.oci.image.index.",
        "application/vnd.oci.artifact.manifest.",
        "application/vnd.docker.distribution.manifest.",
    ]
    .iter()
    .any(|prefix| media_type.starts_with(prefix))
}

/// The `mediaType` a manifest declares; `Err` when the bytes are not a JSON object.
fn body_media_type(body: &[u8]) -> Result<Option<String>, String> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct MediaType {
        media_type: Option<String>,
    }
    serde_json::from_slice::<MediaType>(body)
        .map(|m| m.media_type)
        .map_err(|e| e.to_string())
}

/// Refuses a manifest whose `Content-Type` or declared `mediaType` is a manifest type the caller
/// did not ask for (an index where a manifest was expected, a Docker list for an OCI index), or
/// whose `Content-Type` contradicts its `mediaType`. Generic content types are not held against
/// a registry; the body's `mediaType` is checked by the caller's parser.
pub(crate) fn check_manifest_type(
    site: &Site,
    what: &str,
    accept: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<()> {
    let accepted: Vec<&str> = accept.split(',').map(str::trim).collect();
    let invalid = |reason: String| Error::InvalidManifest {
        site: Box::new(site.clone()),
        what: what.to_owned(),
        expected: "manifest of the requested media type",
        reason,
    };
    let served = content_type.filter(|t| is_manifest_type(t));
    if let Some(served) = served
        && !accepted.contains(&served)
    {
        return Err(invalid(format!(
            "the registry served it as {served}, but {accept} was requested"
        )));
    }
    let declared = body_media_type(body).ok().flatten();
    if let Some(declared) = declared.as_deref().filter(|t| is_manifest_type(t)) {
        if !accepted.contains(&declared) {
            return Err(invalid(format!(
                "its mediaType is {declared}, but {accept} was requested"
            )));
        }
        if let Some(served) = served
            && served != declared
        {
            return Err(invalid(format!(
                "the registry served it as {served}, but its mediaType is {declared}"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_links() {
        assert_eq!(
            next_link(r#"</v2/a/referrers/sha256:1?n=2&last=x>; rel="next""#).as_deref(),
            Some("/v2/a/referrers/sha256:1?n=2&last=x")
        );
        assert_eq!(
            next_link(r#"<https://r/prev>; rel="prev", <https://r/next>; type="x"; rel=next"#)
                .as_deref(),
            Some("https://r/next")
        );
        assert_eq!(next_link(r#"<https://r/prev>; rel="prev""#), None);
        assert_eq!(next_link("garbage <unterminated; rel=next"), None);
    }

    #[test]
    fn manifest_types_must_match_what_was_asked() {
        let site = Site {
            registry: "r".into(),
            repository: "a".into(),
            operation: Operation::PullArtifact,
        };
        let manifest = format!(r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}"}}"#);
        let index = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json"}"#;
        let check = |ct: Option<&str>, body: &str| {
            check_manifest_type(&site, "m", OCI_MANIFEST, ct, body.as_bytes())
        };
        assert!(check(Some(OCI_MANIFEST), &manifest).is_ok());
        assert!(check(None, &manifest).is_ok());
        assert!(
            check(Some("application/json"), &manifest).is_ok(),
            "generic types are not held against a registry"
        );
        assert!(check(Some("application/vnd.oci.image.index.v1+json"), &manifest).is_err());
        assert!(check(Some(OCI_MANIFEST), index).is_err());
        assert!(check(None, index).is_err());
        let describe = MANIFEST_MEDIA_TYPES.join(", ");
        assert!(
            check_manifest_type(
                &site,
                "m",
                &describe,
                Some("application/vnd.docker.distribution.manifest.v2+json"),
                manifest.as_bytes()
            )
            .is_err(),
            "served type and mediaType disagree"
        );
    }

    #[test]
    fn plain_http_only_for_loopback_and_listed_registries() {
        let config = ClientConfig {
            insecure: InsecurePolicy::new(["reg.internal:5000", "mirror.lan"]).unwrap(),
            ..ClientConfig::default()
        };
        let c = Client::new(config, RegistryAuth::Anonymous).unwrap();
        for insecure in [
            "127.0.0.1:5000",
            "localhost:8080",
            "[::1]:5000",
            "reg.internal:5000",
            "mirror.lan:443",
        ] {
            assert!(c.is_insecure(insecure), "{insecure}");
        }
        for secure in [
            "ghcr.io",
            "reg.internal:5001",
            "reg.internal",
            "127.0.0.2:5000",
        ] {
            assert!(!c.is_insecure(secure), "{secure}");
        }
        let r: Reference = "ghcr.io/team/app:v1".parse().unwrap();
        assert_eq!(c.base_url(&r), "https://ghcr.io/v2/team/app");
    }
}
