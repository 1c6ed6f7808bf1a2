// SPDX-License-Identifier: Apache-2.0
//! The registry client: configuration, bounded reads, `resolve` and `pull_artifact`.
//!
//! Writes go through oci-client. Reads of manifests and of the referrers endpoint are our own GETs on
//! reqwest (the client oci-client itself uses) because oci-client reads whole bodies without a size
//! limit and hides the HTTP status the referrers-API probe needs.

use std::collections::BTreeMap;

use oci_client::client::{ClientConfig as OciClientConfig, ClientProtocol};
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use tokio::io::AsyncWrite;

use crate::error::{Error, Operation, Result, Site};
use crate::manifest::{Descriptor, ImageManifest, OCI_MANIFEST};
use crate::reference::{Digest, Reference};
use crate::transport::InsecurePolicy;

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
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            insecure: InsecurePolicy::default(),
            max_manifest_bytes: DEFAULT_MAX_MANIFEST_BYTES,
            max_layer_bytes: DEFAULT_MAX_LAYER_BYTES,
            fallback_attempts: 12,
        }
    }
}

/// A registry client. Cheap to share behind an `Arc`; every method takes `&self`.
pub struct Client {
    pub(crate) config: ClientConfig,
    pub(crate) auth: RegistryAuth,
    https: oci_client::Client,
    http: oci_client::Client,
    pub(crate) raw: reqwest::Client,
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

impl Client {
    /// A client with `auth` for every registry (auth per registry arrives with the auth module).
    pub fn new(config: ClientConfig, auth: RegistryAuth) -> Result<Self> {
        let oci = |protocol| {
            oci_client::Client::try_from(OciClientConfig {
                protocol,
                ..OciClientConfig::default()
            })
            .map_err(|source| Error::OciClient { source })
        };
        let raw = reqwest::Client::builder()
            .user_agent(concat!("linkguard-oci/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|source| Error::HttpClient { source })?;
        Ok(Self {
            https: oci(ClientProtocol::Https)?,
            http: oci(ClientProtocol::Http)?,
            raw,
            config,
            auth,
        })
    }

    /// Whether `registry` may be reached over plain HTTP.
    pub fn is_insecure(&self, registry: &str) -> bool {
        self.config.insecure.allows_plain_http(registry)
    }

    pub(crate) fn oci(&self, registry: &str) -> &oci_client::Client {
        if self.is_insecure(registry) {
            &self.http
        } else {
            &self.https
        }
    }

    pub(crate) fn base_url(&self, r: &Reference) -> String {
        let scheme = if self.is_insecure(r.registry()) {
            "http"
        } else {
            "https"
        };
        format!("{scheme}://{}/v2/{}", r.registry(), r.repository())
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
        let http = |source| Error::Http {
            site: Box::new(site.clone()),
            url: url.to_owned(),
            source,
        };
        let mut req = self.raw.get(url).header(reqwest::header::ACCEPT, accept);
        req = match &self.auth {
            RegistryAuth::Anonymous => req,
            RegistryAuth::Basic(user, password) => req.basic_auth(user, Some(password)),
            RegistryAuth::Bearer(token) => req.bearer_auth(token),
        };
        let mut resp = req.send().await.map_err(http)?;
        let status = resp.status().as_u16();
        if status == 404 || status == 405 {
            return Ok(None);
        }
        if !(200..300).contains(&status) {
            return Err(Error::UnexpectedStatus {
                site: Box::new(site.clone()),
                url: url.to_owned(),
                status,
            });
        }
        let too_large = || Error::TooLarge {
            site: Box::new(site.clone()),
            what: what.to_owned(),
            limit,
        };
        if resp.content_length().is_some_and(|n| n > limit) {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(http)? {
            if (body.len() + chunk.len()) as u64 > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Some(body))
    }

    /// A manifest's bytes and digest. A digest reference is checked against the bytes received.
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
        let Some(body) = self.get_bounded(&site, &url, accept, limit, &what).await? else {
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
        Ok(Some((body, actual)))
    }

    /// The descriptor of the manifest `r` names (media type, digest, size), as a subject needs it.
    pub(crate) async fn describe(&self, r: &Reference, operation: Operation) -> Result<Descriptor> {
        let accept = crate::manifest::MANIFEST_MEDIA_TYPES.join(", ");
        let (body, digest) = self
            .get_manifest(r, operation, &accept)
            .await?
            .ok_or_else(|| Error::NotFound {
                site: Self::site(r, operation),
                reference: r.manifest_ref(),
            })?;
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct MediaType {
            media_type: Option<String>,
        }
        let media_type = serde_json::from_slice::<MediaType>(&body)
            .map_err(|e| Error::InvalidManifest {
                site: Self::site(r, operation),
                what: format!("manifest {}", r.manifest_ref()),
                expected: "image manifest or index",
                reason: e.to_string(),
            })?
            .media_type
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

    async fn pull_blob(&self, r: &Reference, site: &Site, layer: &Descriptor) -> Result<Vec<u8>> {
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
        let descriptor = OciDescriptor {
            media_type: layer.media_type.clone(),
            digest: layer.digest.clone(),
            size: i64::try_from(layer.size).unwrap_or(i64::MAX),
            ..OciDescriptor::default()
        };
        let mut out = BoundedWriter {
            buf: Vec::new(),
            limit: layer.size,
            overflowed: false,
        };
        let pulled = self
            .oci(r.registry())
            .pull_blob(&r.to_oci(), &descriptor, &mut out)
            .await;
        if let Err(source) = pulled {
            if out.overflowed {
                return Err(Error::TooLarge {
                    site: Box::new(site.clone()),
                    what: format!("{what} (larger than the size its descriptor declares)"),
                    limit: layer.size,
                });
            }
            return Err(match source {
                oci_client::errors::OciDistributionError::DigestError(_) => Error::DigestMismatch {
                    site: Box::new(site.clone()),
                    what,
                    expected: expected.to_string(),
                    actual: Digest::of(&out.buf).to_string(),
                },
                source => Error::Registry {
                    site: Box::new(site.clone()),
                    source,
                },
            });
        }
        // oci-client checked the digest already; check again so this function's guarantee does not
        // rest on another crate's internals.
        let actual = Digest::of(&out.buf);
        if actual != expected {
            return Err(Error::DigestMismatch {
                site: Box::new(site.clone()),
                what,
                expected: expected.to_string(),
                actual: actual.to_string(),
            });
        }
        if out.buf.len() as u64 != layer.size {
            return Err(Error::SizeMismatch {
                site: Box::new(site.clone()),
                what,
                expected: layer.size,
                actual: out.buf.len() as u64,
            });
        }
        Ok(out.buf)
    }
}

/// Collects a blob in memory and fails the write that would pass `limit` bytes, so a registry
/// cannot make us buffer more than the descriptor declared.
struct BoundedWriter {
    buf: Vec<u8>,
    limit: u64,
    overflowed: bool,
}

impl AsyncWrite for BoundedWriter {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        if (self.buf.len() + data.len()) as u64 > self.limit {
            self.overflowed = true;
            return std::task::Poll::Ready(Err(std::io::Error::other(
                "blob larger than its descriptor",
            )));
        }
        self.buf.extend_from_slice(data);
        std::task::Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
