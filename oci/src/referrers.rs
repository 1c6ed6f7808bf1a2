// SPDX-License-Identifier: Apache-2.0
//! Referrers: pushing an artifact with a `subject`, keeping the `sha256-<hex>` fallback tag when the
//! registry has no referrers API, and listing referrers through either.
//!
//! Distribution spec v1.1, "Pushing Manifests with Subject" and "Referrers Tag Schema": a registry
//! without the referrers API answers `GET /v2/<name>/referrers/<digest>` with 404 (some with 405), and
//! the client must then maintain an image index under the tag `sha256-<hex>` of the subject itself.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::BuildHasher;
use std::time::Duration;

use bytes::Bytes;
use tracing::{debug, info, warn};

use crate::client::Client;
use crate::error::{Error, Operation, Result, Site};
use crate::manifest::{
    Descriptor, EMPTY_CONFIG, ImageIndex, ImageManifest, Layer, OCI_EMPTY, OCI_INDEX, OCI_MANIFEST,
    artifact_manifest, referrer_entry,
};
use crate::reference::{Digest, Reference};
use crate::transport::RetryClass;

/// How referrers of a subject are found in a repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReferrersMode {
    /// The registry implements `GET /v2/<name>/referrers/<digest>`.
    Api,
    /// The registry does not; the `sha256-<hex>` tag holds the referrers index.
    FallbackTag,
}

/// What `push_artifact` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    /// The referrers-list entry of the pushed manifest (digest, size, artifactType, annotations).
    pub descriptor: Descriptor,
    /// The subject's manifest digest.
    pub subject: Digest,
    /// Whether the referrers API or the fallback tag made it discoverable.
    pub mode: ReferrersMode,
}

/// Filters for `list_referrers`: an artifact type and annotations that must all be present with
/// these values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReferrerFilter {
    /// Keep only entries of this artifact type.
    pub artifact_type: Option<String>,
    /// Keep only entries carrying every one of these annotations with the same value.
    pub annotations: BTreeMap<String, String>,
}

impl ReferrerFilter {
    fn matches(&self, d: &Descriptor) -> bool {
        self.artifact_type
            .as_ref()
            .is_none_or(|t| d.artifact_type.as_ref() == Some(t))
            && self
                .annotations
                .iter()
                .all(|(k, v)| d.annotations.get(k) == Some(v))
    }
}

pub(crate) fn parse_image_manifest(site: &Site, what: &str, body: &[u8]) -> Result<ImageManifest> {
    let invalid = |reason: String| Error::InvalidManifest {
        site: Box::new(site.clone()),
        what: what.to_owned(),
        expected: "OCI image manifest",
        reason,
    };
    let m: ImageManifest = serde_json::from_slice(body).map_err(|e| invalid(e.to_string()))?;
    if m.schema_version != 2 {
        return Err(invalid(format!(
            "schemaVersion is {}, not 2",
            m.schema_version
        )));
    }
    if m.media_type.as_deref() != Some(OCI_MANIFEST) {
        return Err(invalid(format!(
            "mediaType is {:?}, not {OCI_MANIFEST}",
            m.media_type
        )));
    }
    for d in m.layers.iter().chain([&m.config]).chain(m.subject.as_ref()) {
        d.digest
            .parse::<Digest>()
            .map_err(|_| invalid(format!("descriptor digest `{}` is not sha256", d.digest)))?;
    }
    Ok(m)
}

fn parse_index(site: &Site, what: &str, body: &[u8]) -> Result<ImageIndex> {
    let invalid = |reason: String| Error::InvalidManifest {
        site: Box::new(site.clone()),
        what: what.to_owned(),
        expected: "OCI image index",
        reason,
    };
    let index: ImageIndex = serde_json::from_slice(body).map_err(|e| invalid(e.to_string()))?;
    if index.schema_version != 2 {
        return Err(invalid(format!(
            "schemaVersion is {}, not 2",
            index.schema_version
        )));
    }
    if index.media_type.as_deref().is_some_and(|t| t != OCI_INDEX) {
        return Err(invalid(format!(
            "mediaType is {:?}, not {OCI_INDEX}",
            index.media_type
        )));
    }
    Ok(index)
}

/// Keeps entries that are image manifests with a sha256 digest, first occurrence of each digest
/// (ferro-oci-server lists a manifest that was PUT twice twice).
fn validated_entries(index: ImageIndex) -> Vec<Descriptor> {
    let mut seen = BTreeSet::new();
    index
        .manifests
        .into_iter()
        .filter(|d| {
            let ok = d.media_type == OCI_MANIFEST && d.digest.parse::<Digest>().is_ok();
            if !ok {
                warn!(digest = %d.digest, media_type = %d.media_type, "ignoring referrers entry that is not an OCI image manifest");
            }
            ok && seen.insert(d.digest.clone())
        })
        .collect()
}

/// Pages of a paginated referrers list read at most (each bounded by the manifest size limit).
const MAX_REFERRERS_PAGES: u32 = 64;

/// Manifests fetched per listing to learn the artifact type of entries that do not carry one.
const MAX_UNTYPED_FETCHES: usize = 256;

/// The artifact type of a manifest: its `artifactType`, else its config's media type (image-spec v1.1,
/// "Listing Referrers": the referrers list carries the config media type for a manifest without
/// `artifactType`).
fn artifact_type_of(manifest: &ImageManifest) -> String {
    manifest
        .artifact_type
        .clone()
        .unwrap_or_else(|| manifest.config.media_type.clone())
}

/// Rounds of blob + manifest upload when the registry reports a blob it has just accepted unknown.
const PUSH_ATTEMPTS: u32 = 4;

/// distribution 2.8 answers MANIFEST_BLOB_UNKNOWN (or 500, retried by the transport) while a
/// concurrent upload of the same blob (every artifact shares the empty config) is being committed.
fn is_concurrent_upload_race(e: &Error) -> bool {
    match e {
        Error::Rejected { detail, .. } => detail.contains("BLOB_UNKNOWN"),
        Error::RetriesExhausted { source, .. } => is_concurrent_upload_race(source),
        _ => false,
    }
}

/// Whether another read-modify-write round may get past `e` (a registry busy replacing the tag).
fn is_transient(e: &Error) -> bool {
    crate::client::error_class(e) != RetryClass::Permanent
}

/// A random-ish delay in `[base, 2*base)`: concurrent writers must not retry in lockstep.
fn jittered(base: Duration) -> Duration {
    let nanos = base.as_nanos() as u64;
    let r = std::collections::hash_map::RandomState::new().hash_one(std::time::SystemTime::now());
    base + Duration::from_nanos(if nanos == 0 { 0 } else { r % nanos })
}

impl Client {
    /// Pushes an artifact referring to `subject`: the empty config blob, the layers, then an OCI image
    /// manifest (mediaType, artifactType, empty config descriptor, layers, annotations, subject) PUT
    /// untagged by digest. When the registry has no referrers API, the subject's `sha256-<hex>`
    /// fallback index is updated and verified.
    pub async fn push_artifact(
        &self,
        subject: &Reference,
        artifact_type: &str,
        layers: Vec<Layer>,
        annotations: BTreeMap<String, String>,
    ) -> Result<Pushed> {
        let op = Operation::PushArtifact;
        let site = Self::site(subject, op);
        let subject_desc = self.describe(subject, op).await?;
        let subject_digest: Digest = subject_desc.digest.parse()?;
        let manifest = artifact_manifest(subject_desc, artifact_type, &layers, annotations);
        let body = serde_json::to_vec(&manifest).map_err(|e| Error::InvalidManifest {
            site: site.clone(),
            what: "artifact manifest".to_owned(),
            expected: "OCI image manifest",
            reason: e.to_string(),
        })?;
        let digest = Digest::of(&body);
        let target = subject.at_digest(digest.clone());

        // Blobs are shared by every attempt (`Bytes`), never copied: layers may be large.
        let blobs: Vec<(String, Digest, Bytes)> =
            std::iter::once((OCI_EMPTY.to_owned(), Bytes::from_static(EMPTY_CONFIG)))
                .chain(
                    layers
                        .into_iter()
                        .map(|l| (l.media_type, Bytes::from(l.data))),
                )
                .map(|(media_type, data)| (media_type, Digest::of(&data), data))
                .collect();
        let size = body.len() as u64;
        let body = Bytes::from(body);
        let mut backoff = Duration::from_millis(50);
        let mut oci_subject = None;
        for attempt in 1..=PUSH_ATTEMPTS {
            let round = async {
                for (media_type, blob_digest, data) in &blobs {
                    if self.blob_exists(&target, &site, blob_digest).await? {
                        continue;
                    }
                    debug!(%blob_digest, media_type, size = data.len(), "push blob");
                    self.push_blob(&target, &site, data.clone(), blob_digest)
                        .await?;
                }
                self.push_manifest(&target, &site, body.clone(), OCI_MANIFEST)
                    .await
            };
            match round.await {
                Ok(header) => {
                    oci_subject = header;
                    break;
                }
                Err(e) if attempt < PUSH_ATTEMPTS && is_concurrent_upload_race(&e) => {
                    debug!(%digest, attempt, error = %e, "blob upload raced with another writer; pushing again");
                    tokio::time::sleep(jittered(backoff)).await;
                    backoff *= 2;
                }
                Err(e) => return Err(e),
            }
        }
        let entry = referrer_entry(&manifest, &digest, size);

        // Registries with the referrers API answer the PUT with `OCI-Subject` (distribution spec
        // "Pushing Manifests with Subject"); without it, ask the referrers endpoint.
        let mode = if oci_subject.as_deref() == Some(subject_digest.as_str()) {
            ReferrersMode::Api
        } else {
            self.referrers_mode(subject, &subject_digest).await?
        };
        if mode == ReferrersMode::FallbackTag {
            self.add_to_fallback_index(subject, &subject_digest, &entry)
                .await?;
        }
        info!(%digest, subject = %subject_digest, ?mode, artifact_type, "pushed artifact");
        Ok(Pushed {
            descriptor: entry,
            subject: subject_digest,
            mode,
        })
    }

    /// Whether `subject`'s repository serves the referrers API (404/405 mean it does not).
    pub async fn referrers_mode(
        &self,
        repository: &Reference,
        subject: &Digest,
    ) -> Result<ReferrersMode> {
        Ok(
            match self
                .get_referrers_api(repository, subject, None, Operation::ProbeReferrersApi)
                .await?
            {
                Some(_) => ReferrersMode::Api,
                None => ReferrersMode::FallbackTag,
            },
        )
    }

    async fn get_referrers_api(
        &self,
        repository: &Reference,
        subject: &Digest,
        artifact_type: Option<&str>,
        op: Operation,
    ) -> Result<Option<ImageIndex>> {
        let site = Self::site(repository, op);
        let mut url = format!("{}/referrers/{subject}", self.base_url(repository));
        if let Some(t) = artifact_type {
            // Media types are `type/subtype+suffix` with `.`, `-`, `+`: only `+` needs escaping.
            url.push_str(&format!("?artifactType={}", t.replace('+', "%2B")));
        }
        let what = format!("referrers of {subject}");
        let limit = self.config.max_manifest_bytes;
        let mut pages = 0;
        let mut index: Option<ImageIndex> = None;
        let mut next = Some(url);
        while let Some(url) = next.take() {
            pages += 1;
            if pages > MAX_REFERRERS_PAGES {
                return Err(Error::Protocol {
                    site,
                    url,
                    detail: format!(
                        "the referrers list goes on for more than {MAX_REFERRERS_PAGES} pages; refusing to read further"
                    ),
                });
            }
            let Some(page) = self.get_page(&site, &url, OCI_INDEX, limit, &what).await? else {
                // A later page that disappeared: the list changed while it was read.
                return match index {
                    None => Ok(None),
                    Some(_) => Err(Error::NotFound {
                        site,
                        reference: url,
                    }),
                };
            };
            crate::client::check_manifest_type(
                &site,
                &what,
                OCI_INDEX,
                page.content_type.as_deref(),
                &page.body,
            )?;
            let parsed = parse_index(&site, &what, &page.body)?;
            match &mut index {
                None => index = Some(parsed),
                Some(index) => index.manifests.extend(parsed.manifests),
            }
            next = page.next;
        }
        Ok(index)
    }

    async fn read_fallback_index(
        &self,
        tag_ref: &Reference,
        op: Operation,
    ) -> Result<Option<ImageIndex>> {
        let site = Self::site(tag_ref, op);
        let what = format!("fallback tag {}", tag_ref.manifest_ref());
        match self.get_manifest(tag_ref, op, OCI_INDEX).await? {
            Some((body, _)) => parse_index(&site, &what, &body).map(Some),
            None => Ok(None),
        }
    }

    /// Read-modify-write of the fallback index, then re-read after a pause to verify the entry is
    /// still there; another round with backoff when a concurrent writer overwrote it.
    ///
    /// Registries without the referrers API (distribution 2.8) offer no conditional PUT, so a lost
    /// update cannot be prevented, only detected and repaired. Each round writes every entry this
    /// writer has ever seen in the index, not just its own, so a writer that raced with us puts our
    /// entry back when it repairs its own; verification is done twice, the second time after a longer
    /// pause, to catch a writer that read before our write and wrote after our first check.
    pub(crate) async fn add_to_fallback_index(
        &self,
        subject: &Reference,
        subject_digest: &Digest,
        entry: &Descriptor,
    ) -> Result<()> {
        let op = Operation::UpdateFallbackIndex;
        let tag = subject_digest.fallback_tag();
        let tag_ref = subject.at_tag(&tag);
        let site = *Self::site(&tag_ref, op);
        let mut known: Vec<Descriptor> = vec![entry.clone()];
        let mut confirmations = 0;
        let mut backoff = Duration::from_millis(20);
        for attempt in 1..=self.config.fallback_attempts {
            // distribution's filesystem driver answers 500 while another writer replaces the tag's
            // link file: a lost round, not a failure.
            let current = match self.read_fallback_index(&tag_ref, op).await {
                Ok(index) => index.unwrap_or_else(ImageIndex::empty),
                Err(e) if is_transient(&e) && attempt < self.config.fallback_attempts => {
                    debug!(%tag, attempt, error = %e, "fallback tag unreadable during a concurrent write");
                    tokio::time::sleep(jittered(backoff)).await;
                    backoff = (backoff * 2).min(Duration::from_millis(800));
                    continue;
                }
                Err(e) => return Err(e),
            };
            let present: BTreeSet<&str> = current
                .manifests
                .iter()
                .map(|d| d.digest.as_str())
                .collect();
            let missing: Vec<Descriptor> = known
                .iter()
                .filter(|d| !present.contains(d.digest.as_str()))
                .cloned()
                .collect();
            for d in &current.manifests {
                if !known.iter().any(|k| k.digest == d.digest) {
                    known.push(d.clone());
                }
            }
            if missing.is_empty() && attempt > 1 {
                confirmations += 1;
                if confirmations >= 2 {
                    debug!(%tag, attempt, entries = current.manifests.len(), "fallback index verified");
                    return Ok(());
                }
                tokio::time::sleep(jittered(Duration::from_millis(150))).await;
                continue;
            }
            confirmations = 0;
            if !missing.is_empty() {
                let mut index = ImageIndex::empty();
                index.annotations = current.annotations;
                index.manifests = current.manifests;
                index.manifests.extend(missing);
                let body = serde_json::to_vec(&index).map_err(|e| Error::InvalidManifest {
                    site: Box::new(site.clone()),
                    what: format!("fallback tag {tag}"),
                    expected: "OCI image index",
                    reason: e.to_string(),
                })?;
                if attempt > 1 {
                    debug!(%tag, attempt, "fallback index lost an entry to a concurrent writer; rewriting");
                }
                let written = self
                    .push_manifest(&tag_ref, &site, Bytes::from(body), OCI_INDEX)
                    .await;
                match written {
                    Ok(_) => {}
                    Err(e) if attempt < self.config.fallback_attempts && is_transient(&e) => {
                        debug!(%tag, attempt, error = %e, "fallback tag write failed; retrying");
                    }
                    Err(e) => return Err(e),
                }
            }
            tokio::time::sleep(jittered(backoff)).await;
            backoff = (backoff * 2).min(Duration::from_millis(800));
        }
        Err(Error::FallbackIndexLost {
            site: Box::new(site),
            tag,
            digest: entry.digest.clone(),
            attempts: self.config.fallback_attempts,
        })
    }

    /// The referrers of `subject` (a tag is resolved first), from the referrers API or the fallback
    /// tag: checked to be an OCI image index, entries that are not image manifests dropped,
    /// deduplicated by digest, filtered client-side (registries may ignore the `artifactType` query).
    ///
    /// When filtering by artifact type, an entry without `artifactType` (a fallback index copied by a
    /// tool that drops the field, such as skopeo) is typed from its manifest, fetched bounded and
    /// digest-checked: its `artifactType`, else its config's media type (image-spec v1.1). At most
    /// 256 manifests are fetched per listing; untyped entries beyond that are left out with a warning.
    /// Other entries are not fetched here; `pull_referrer` checks that an entry's manifest names
    /// `subject`.
    pub async fn list_referrers(
        &self,
        subject: &Reference,
        filter: &ReferrerFilter,
    ) -> Result<Vec<Descriptor>> {
        let op = Operation::ListReferrers;
        let digest = self.resolve(subject).await?;
        let index = match self
            .get_referrers_api(subject, &digest, filter.artifact_type.as_deref(), op)
            .await?
        {
            Some(index) => index,
            None => self
                .read_fallback_index(&subject.at_tag(&digest.fallback_tag()), op)
                .await?
                .unwrap_or_else(ImageIndex::empty),
        };
        let mut entries = validated_entries(index);
        if filter.artifact_type.is_some() {
            self.type_untyped_entries(subject, &mut entries).await?;
        }
        Ok(entries.into_iter().filter(|d| filter.matches(d)).collect())
    }

    /// Gives entries without `artifactType` the type of their manifest (see `list_referrers`), and
    /// their manifest's annotations when the entry has none. A manifest the registry does not have
    /// leaves its entry untyped; a manifest that does not match its digest or is not an image
    /// manifest fails the listing.
    async fn type_untyped_entries(
        &self,
        subject: &Reference,
        entries: &mut [Descriptor],
    ) -> Result<()> {
        let op = Operation::ListReferrers;
        let mut fetched = 0;
        let mut not_inspected = 0;
        for entry in entries.iter_mut().filter(|d| d.artifact_type.is_none()) {
            if fetched == MAX_UNTYPED_FETCHES {
                not_inspected += 1;
                continue;
            }
            fetched += 1;
            let digest: Digest = entry.digest.parse()?;
            let r = subject.at_digest(digest.clone());
            let Some((body, _)) = self.get_manifest(&r, op, OCI_MANIFEST).await? else {
                warn!(%digest, "referrers entry names a manifest the registry does not have; left out");
                continue;
            };
            let what = format!("manifest {digest}");
            let manifest = parse_image_manifest(&Self::site(&r, op), &what, &body)?;
            let artifact_type = artifact_type_of(&manifest);
            debug!(%digest, %artifact_type, "referrers entry without artifactType: typed from its manifest");
            if entry.annotations.is_empty() {
                entry.annotations = manifest.annotations;
            }
            entry.artifact_type = Some(artifact_type);
        }
        if not_inspected > 0 {
            warn!(
                not_inspected,
                limit = MAX_UNTYPED_FETCHES,
                "untyped referrers entries beyond the limit were not inspected and are left out"
            );
        }
        Ok(())
    }

    /// Pulls the referrer `digest` of `subject` (a digest reference) like `pull_artifact`, and refuses
    /// it unless its manifest's `subject` is that digest.
    pub async fn pull_referrer(
        &self,
        subject: &Reference,
        digest: &Digest,
    ) -> Result<crate::client::Artifact> {
        let subject_digest = self.resolve(subject).await?;
        let artifact = self.pull_artifact(subject, digest).await?;
        let named = artifact
            .manifest
            .subject
            .as_ref()
            .map(|s| s.digest.as_str());
        if named != Some(subject_digest.as_str()) {
            return Err(Error::InvalidManifest {
                site: Self::site(subject, Operation::PullArtifact),
                what: format!("manifest {digest}"),
                expected: "referrer of the requested subject",
                reason: format!("its subject is {named:?}, not {subject_digest}"),
            });
        }
        Ok(artifact)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(digest: &Digest, media_type: &str, artifact_type: &str) -> Descriptor {
        Descriptor {
            media_type: media_type.to_owned(),
            digest: digest.to_string(),
            size: 10,
            artifact_type: Some(artifact_type.to_owned()),
            annotations: BTreeMap::from([("k".to_owned(), artifact_type.to_owned())]),
        }
    }

    #[test]
    fn entries_are_deduplicated_and_non_manifests_dropped() {
        let (a, b) = (Digest::of(b"a"), Digest::of(b"b"));
        let mut index = ImageIndex::empty();
        index.manifests = vec![
            entry(&a, OCI_MANIFEST, "x"),
            entry(&a, OCI_MANIFEST, "x"),
            entry(&b, "application/octet-stream", "x"),
            Descriptor {
                digest: "md5:00".to_owned(),
                ..entry(&b, OCI_MANIFEST, "x")
            },
        ];
        let kept = validated_entries(index);
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].digest, a.as_str());
    }

    #[test]
    fn filter_needs_type_and_every_annotation() {
        let d = entry(&Digest::of(b"a"), OCI_MANIFEST, "x");
        assert!(ReferrerFilter::default().matches(&d));
        assert!(
            ReferrerFilter {
                artifact_type: Some("x".into()),
                annotations: BTreeMap::new()
            }
            .matches(&d)
        );
        assert!(
            !ReferrerFilter {
                artifact_type: Some("y".into()),
                annotations: BTreeMap::new()
            }
            .matches(&d)
        );
        let wrong = BTreeMap::from([("k".to_owned(), "y".to_owned())]);
        assert!(
            !ReferrerFilter {
                artifact_type: None,
                annotations: wrong
            }
            .matches(&d)
        );
    }

    #[test]
    fn artifact_type_is_the_manifests_or_else_its_config_media_type() {
        let config = Descriptor {
            media_type: "application/vnd.example.config+json".to_owned(),
            ..entry(&Digest::of(b"{}"), OCI_EMPTY, "x")
        };
        let mut m = ImageManifest {
            schema_version: 2,
            media_type: Some(OCI_MANIFEST.to_owned()),
            artifact_type: Some("application/x.report".to_owned()),
            config,
            layers: Vec::new(),
            subject: None,
            annotations: BTreeMap::new(),
        };
        assert_eq!(artifact_type_of(&m), "application/x.report");
        m.artifact_type = None;
        assert_eq!(artifact_type_of(&m), "application/vnd.example.config+json");
    }

    #[test]
    fn index_with_docker_list_media_type_is_refused() {
        let site = Site {
            registry: "r".into(),
            repository: "a".into(),
            operation: Operation::ListReferrers,
        };
        let body = br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","manifests":[]}"#;
        assert!(matches!(
            parse_index(&site, "x", body),
            Err(Error::InvalidManifest { .. })
        ));
        let manifest = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"a","digest":"sha256:00","size":1}}"#;
        assert!(parse_image_manifest(&site, "x", manifest).is_err());
    }
}
