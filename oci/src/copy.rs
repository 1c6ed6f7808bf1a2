// SPDX-License-Identifier: Apache-2.0
//! Copying an image with everything that refers to it: from one registry to another (`mirror`), from
//! a registry into an OCI image layout and from a layout into a registry (`bundle export|import`).
//!
//! One walk serves all three. The image's manifest is copied byte for byte (so every digest stays the
//! same), after its blobs and, for an image index, after every child manifest; then the referrers of
//! every manifest copied so far are listed and copied the same way, breadth first, so referrers of
//! referrers follow (distribution spec v1.1, "Listing Referrers"). On a target without the referrers
//! API each referrer is added to its subject's `sha256-<hex>` fallback index. Everything read is
//! digest-checked and size-bounded; content the target already has is not sent again, which makes a
//! second run copy nothing.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;
use serde::Deserialize;
use tracing::{debug, info};

use crate::client::Client;
use crate::error::{Error, Operation, Result};
use crate::manifest::{Descriptor, MANIFEST_MEDIA_TYPES, OCI_INDEX, OCI_MANIFEST};
use crate::reference::{Digest, Reference};
use crate::referrers::{ReferrerFilter, ReferrersMode};

/// Default limit for one blob copied (image layers can be large; each is held in memory once).
pub const DEFAULT_MAX_BLOB_BYTES: u64 = 1024 * 1024 * 1024;

/// Limits of one copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyOptions {
    /// Largest blob copied, in bytes; a larger one fails the copy before it is read.
    pub max_blob_bytes: u64,
    /// Most manifests (image, children, referrers) one copy may visit.
    pub max_manifests: usize,
    /// Deepest chain of referrers of referrers followed.
    pub max_referrer_depth: usize,
}

impl Default for CopyOptions {
    /// 1 GiB per blob, 10,000 manifests, referrer chains of 16.
    fn default() -> Self {
        Self {
            max_blob_bytes: DEFAULT_MAX_BLOB_BYTES,
            max_manifests: 10_000,
            max_referrer_depth: 16,
        }
    }
}

/// How many items were sent to the target, and how many it had already.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Written to the target by this copy.
    pub copied: usize,
    /// Already there; not sent again.
    pub present: usize,
}

/// A referrer found and copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopiedReferrer {
    /// The manifest it refers to.
    pub subject: Digest,
    /// Its referrers-list entry (digest, size, artifactType, annotations).
    pub descriptor: Descriptor,
    /// Whether this copy wrote its manifest or its listing (false: the target had both).
    pub copied: bool,
}

/// What a copy did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopySummary {
    /// The image's manifest (or index): media type, digest, size.
    pub image: Descriptor,
    /// Manifests: the image's, its children's, the referrers'.
    pub manifests: Tally,
    /// Blobs: configs and layers.
    pub blobs: Tally,
    /// Every referrer found, recursively, in the order copied.
    pub referrers: Vec<CopiedReferrer>,
    /// Bytes of blobs and manifests written to the target.
    pub bytes_copied: u64,
    /// How the target lists referrers (`None` for an image layout, where index.json lists them).
    pub referrers_mode: Option<ReferrersMode>,
}

impl CopySummary {
    /// Referrers this copy wrote (manifest or listing).
    pub fn referrers_copied(&self) -> usize {
        self.referrers.iter().filter(|r| r.copied).count()
    }
}

/// Copies `from` (a tag or digest in `source`'s registry) with its blobs, child manifests and
/// referrers, recursively, to `to` in `target`'s registry. A tag in `to` is set to the image; a digest
/// in `to` must be the image's. Idempotent: content the target has is not sent again.
pub async fn copy_image(
    source: &Client,
    from: &Reference,
    target: &Client,
    to: &Reference,
    options: &CopyOptions,
) -> Result<CopySummary> {
    let source = RegistrySource {
        client: source,
        reference: from.clone(),
    };
    let mut sink = RegistrySink::new(target, to.clone());
    run(&source, &mut sink, options).await
}

/// Where content is copied from.
pub(crate) trait Source {
    /// For logs: the registry repository or the archive.
    fn name(&self) -> String;
    /// The image's manifest (or index) descriptor and bytes.
    async fn root(&self) -> Result<(Descriptor, Vec<u8>)>;
    /// The manifest `descriptor` names, checked against its digest and size.
    async fn manifest(&self, descriptor: &Descriptor) -> Result<Vec<u8>>;
    /// The blob `descriptor` names, checked against its digest and size; larger than `limit` fails.
    async fn blob(&self, descriptor: &Descriptor, limit: u64) -> Result<Vec<u8>>;
    /// The manifests listed as referrers of `subject`.
    async fn referrers(&self, subject: &Digest) -> Result<Vec<Descriptor>>;
    /// The error for a manifest read here that is not what it must be.
    fn invalid(&self, what: String, expected: &'static str, reason: String) -> Error;
}

/// Where content is copied to.
pub(crate) trait Sink {
    /// For logs: the registry repository or the archive.
    fn name(&self) -> String;
    async fn has_blob(&mut self, digest: &Digest) -> Result<bool>;
    async fn put_blob(&mut self, descriptor: &Descriptor, data: Vec<u8>) -> Result<()>;
    async fn has_manifest(&mut self, digest: &Digest) -> Result<bool>;
    async fn put_manifest(&mut self, descriptor: &Descriptor, body: Vec<u8>) -> Result<()>;
    /// Stores and names the image's manifest once its tree is complete; true when it wrote something.
    async fn put_root(&mut self, descriptor: &Descriptor, body: Vec<u8>) -> Result<bool>;
    /// How the target lists referrers of `image`.
    async fn referrers_mode(&mut self, image: &Digest) -> Result<Option<ReferrersMode>>;
    /// Makes `entry` (already stored) listed as a referrer of `subject`; true when it wrote a listing.
    async fn add_referrer(&mut self, subject: &Digest, entry: &Descriptor) -> Result<bool>;
}

/// The parts of an image manifest or index a copy needs (image-spec manifest.md and image-index.md;
/// Docker's v2 manifest and manifest list have the same shape).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Parsed {
    /// The manifest's media type (from its `mediaType`, else from its shape).
    pub media_type: String,
    /// Child manifests of an index.
    pub children: Vec<Descriptor>,
    /// Config and layers of an image manifest.
    pub blobs: Vec<Descriptor>,
    /// The manifest's subject.
    pub subject: Option<Digest>,
    /// Its artifactType, else its config's media type (the referrers-list rule).
    pub artifact_type: Option<String>,
    pub annotations: BTreeMap<String, String>,
}

impl Parsed {
    /// The referrers-list entry for this manifest (image-spec "Listing Referrers": artifactType,
    /// annotations).
    pub fn entry(&self, digest: &Digest, size: u64) -> Descriptor {
        Descriptor {
            media_type: self.media_type.clone(),
            digest: digest.to_string(),
            size,
            artifact_type: self.artifact_type.clone(),
            annotations: self.annotations.clone(),
        }
    }
}

/// Parses `body` as an image manifest or index; `Err(reason)` when it is neither or names content by
/// anything but a sha256 digest.
pub(crate) fn parse_manifest(body: &[u8]) -> std::result::Result<Parsed, String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Any {
        schema_version: u32,
        media_type: Option<String>,
        artifact_type: Option<String>,
        config: Option<Descriptor>,
        #[serde(default)]
        layers: Vec<Descriptor>,
        manifests: Option<Vec<Descriptor>>,
        subject: Option<Descriptor>,
        #[serde(default)]
        annotations: BTreeMap<String, String>,
    }
    let m: Any = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    if m.schema_version != 2 {
        return Err(format!("schemaVersion is {}, not 2", m.schema_version));
    }
    let (media_type, is_index) = match (&m.manifests, &m.config) {
        (Some(_), None) => (m.media_type.unwrap_or_else(|| OCI_INDEX.to_owned()), true),
        (None, Some(_)) => (
            m.media_type.unwrap_or_else(|| OCI_MANIFEST.to_owned()),
            false,
        ),
        _ => {
            return Err(
                "it has neither `manifests` (an index) nor only `config` (a manifest)".into(),
            );
        }
    };
    if !MANIFEST_MEDIA_TYPES.contains(&media_type.as_str()) {
        return Err(format!(
            "mediaType {media_type:?} is not an image manifest or index"
        ));
    }
    if is_index != (media_type == OCI_INDEX || media_type.contains("manifest.list")) {
        return Err(format!(
            "mediaType {media_type:?} does not match its content"
        ));
    }
    let children = m.manifests.unwrap_or_default();
    for child in &children {
        if !MANIFEST_MEDIA_TYPES.contains(&child.media_type.as_str()) {
            return Err(format!(
                "index entry {} has mediaType {:?}, not a manifest",
                child.digest, child.media_type
            ));
        }
    }
    let blobs: Vec<Descriptor> = m.config.iter().cloned().chain(m.layers).collect();
    for d in children.iter().chain(&blobs).chain(m.subject.as_ref()) {
        d.digest
            .parse::<Digest>()
            .map_err(|_| format!("descriptor digest `{}` is not sha256:<hex>", d.digest))?;
    }
    let subject = m
        .subject
        .map(|s| s.digest.parse())
        .transpose()
        .map_err(|_| "bad subject")?;
    let artifact_type = m
        .artifact_type
        .or_else(|| m.config.as_ref().map(|c| c.media_type.clone()));
    Ok(Parsed {
        media_type,
        children,
        blobs,
        subject,
        artifact_type,
        annotations: m.annotations,
    })
}

/// The walk: the image's tree, then referrers breadth first.
struct Walk<'a, S, T> {
    source: &'a S,
    sink: &'a mut T,
    options: &'a CopyOptions,
    seen_manifests: BTreeSet<Digest>,
    seen_blobs: BTreeSet<Digest>,
    /// Manifests whose referrers are still to be listed, with their referrer depth.
    subjects: VecDeque<(Digest, usize)>,
    manifests: Tally,
    blobs: Tally,
    referrers: Vec<CopiedReferrer>,
    bytes: u64,
}

/// Copies the image `source` names, with its referrers, into `sink`.
pub(crate) async fn run<S: Source, T: Sink>(
    source: &S,
    sink: &mut T,
    options: &CopyOptions,
) -> Result<CopySummary> {
    let (mut image, body) = source.root().await?;
    let image_digest: Digest = image.digest.parse()?;
    // The content says what it is; a descriptor (index.json's, a listing's) only claims it.
    if let Ok(parsed) = parse_manifest(&body) {
        image.media_type = parsed.media_type;
    }
    info!(from = %source.name(), to = %sink.name(), image = %image_digest, media_type = %image.media_type, "copying image with its referrers");
    let mut walk = Walk {
        source,
        sink,
        options,
        seen_manifests: BTreeSet::from([image_digest.clone()]),
        seen_blobs: BTreeSet::new(),
        subjects: VecDeque::new(),
        manifests: Tally::default(),
        blobs: Tally::default(),
        referrers: Vec::new(),
        bytes: 0,
    };
    walk.copy_tree(image.clone(), body, 0, true).await?;
    let referrers_mode = walk.sink.referrers_mode(&image_digest).await?;
    walk.copy_referrers().await?;
    let summary = CopySummary {
        image,
        manifests: walk.manifests,
        blobs: walk.blobs,
        bytes_copied: walk.bytes,
        referrers_mode,
        referrers: walk.referrers,
    };
    info!(
        image = %image_digest,
        manifests_copied = summary.manifests.copied,
        manifests_present = summary.manifests.present,
        blobs_copied = summary.blobs.copied,
        blobs_present = summary.blobs.present,
        referrers = summary.referrers.len(),
        referrers_copied = summary.referrers_copied(),
        bytes = summary.bytes_copied,
        "copy finished"
    );
    Ok(summary)
}

impl<S: Source, T: Sink> Walk<'_, S, T> {
    fn check_manifest_budget(&self) -> Result<()> {
        if self.seen_manifests.len() > self.options.max_manifests {
            return Err(Error::CopyLimit {
                image: self.source.name(),
                what: "manifests",
                limit: self.options.max_manifests,
            });
        }
        Ok(())
    }

    /// Copies the manifest `top` and everything below it: children of an index (recursively) and the
    /// blobs of each image manifest, each manifest after its content. Every manifest of the tree is
    /// queued for referrer listing at `depth`. Returns whether `top` was written.
    async fn copy_tree(
        &mut self,
        top: Descriptor,
        body: Vec<u8>,
        depth: usize,
        is_root: bool,
    ) -> Result<bool> {
        // Pre-order discovery; written in reverse, so every manifest follows all of its descendants.
        let mut order: Vec<(Descriptor, Vec<u8>, Parsed)> = Vec::new();
        let mut stack = vec![(top, body)];
        while let Some((mut descriptor, body)) = stack.pop() {
            let parsed = parse_manifest(&body).map_err(|reason| {
                self.source.invalid(
                    format!("manifest {}", descriptor.digest),
                    "image manifest or index",
                    reason,
                )
            })?;
            // Stored with the media type its content declares (the descriptor's is a claim).
            descriptor.media_type.clone_from(&parsed.media_type);
            for child in &parsed.children {
                let digest: Digest = child.digest.parse()?;
                if self.seen_manifests.insert(digest) {
                    self.check_manifest_budget()?;
                    let child_body = self.source.manifest(child).await?;
                    stack.push((child.clone(), child_body));
                }
            }
            order.push((descriptor, body, parsed));
        }
        let mut top_written = false;
        let count = order.len();
        for (i, (descriptor, body, parsed)) in order.into_iter().rev().enumerate() {
            for blob in &parsed.blobs {
                self.copy_blob(blob).await?;
            }
            let digest: Digest = descriptor.digest.parse()?;
            let size = body.len() as u64;
            let last = i + 1 == count;
            let written = if last && is_root {
                self.sink.put_root(&descriptor, body).await?
            } else if self.sink.has_manifest(&digest).await? {
                false
            } else {
                self.sink.put_manifest(&descriptor, body).await?;
                true
            };
            if written {
                self.manifests.copied += 1;
                self.bytes += size;
                info!(%digest, media_type = %parsed.media_type, size, "copied manifest");
            } else {
                self.manifests.present += 1;
                debug!(%digest, "target has the manifest");
            }
            top_written = written;
            self.subjects.push_back((digest, depth));
        }
        Ok(top_written)
    }

    async fn copy_blob(&mut self, descriptor: &Descriptor) -> Result<()> {
        let digest: Digest = descriptor.digest.parse()?;
        if !self.seen_blobs.insert(digest.clone()) {
            return Ok(());
        }
        if self.sink.has_blob(&digest).await? {
            self.blobs.present += 1;
            debug!(%digest, "target has the blob");
            return Ok(());
        }
        let data = self
            .source
            .blob(descriptor, self.options.max_blob_bytes)
            .await?;
        let size = data.len() as u64;
        self.sink.put_blob(descriptor, data).await?;
        self.blobs.copied += 1;
        self.bytes += size;
        info!(%digest, media_type = %descriptor.media_type, size, "copied blob");
        Ok(())
    }

    /// Lists the referrers of every queued manifest and copies them, queueing each copied manifest in
    /// turn: referrers of referrers, up to the depth limit.
    async fn copy_referrers(&mut self) -> Result<()> {
        while let Some((subject, depth)) = self.subjects.pop_front() {
            for entry in self.source.referrers(&subject).await? {
                let digest: Digest = entry.digest.parse()?;
                if !self.seen_manifests.insert(digest.clone()) {
                    continue;
                }
                self.check_manifest_budget()?;
                if depth >= self.options.max_referrer_depth {
                    return Err(Error::CopyLimit {
                        image: self.source.name(),
                        what: "levels of referrers of referrers",
                        limit: self.options.max_referrer_depth,
                    });
                }
                let body = self.source.manifest(&entry).await?;
                let parsed = parse_manifest(&body).map_err(|reason| {
                    self.source.invalid(
                        format!("referrer {digest}"),
                        "image manifest or index",
                        reason,
                    )
                })?;
                // A listing is only a claim: the manifest itself must name the subject.
                if parsed.subject.as_ref() != Some(&subject) {
                    return Err(self.source.invalid(
                        format!("referrer {digest}"),
                        "referrer of the listed subject",
                        format!(
                            "it is listed as a referrer of {subject}, but its subject is {}",
                            parsed
                                .subject
                                .as_ref()
                                .map_or_else(|| "absent".to_owned(), Digest::to_string)
                        ),
                    ));
                }
                let listing = parsed.entry(&digest, body.len() as u64);
                let stored = self.copy_tree(entry, body, depth + 1, false).await?;
                let listed = self.sink.add_referrer(&subject, &listing).await?;
                info!(%subject, referrer = %digest, artifact_type = listing.artifact_type.as_deref().unwrap_or("-"), copied = stored || listed, "referrer");
                self.referrers.push(CopiedReferrer {
                    subject: subject.clone(),
                    descriptor: listing,
                    copied: stored || listed,
                });
            }
        }
        Ok(())
    }
}

/// A repository of a registry as the source; `reference` names the image.
pub(crate) struct RegistrySource<'a> {
    pub client: &'a Client,
    pub reference: Reference,
}

fn accept_manifests() -> String {
    MANIFEST_MEDIA_TYPES.join(", ")
}

/// The manifest's media type from its `mediaType`, else from its shape.
fn media_type_of(body: &[u8]) -> Option<String> {
    parse_manifest(body).ok().map(|p| p.media_type)
}

impl Source for RegistrySource<'_> {
    fn name(&self) -> String {
        self.reference.to_string()
    }

    async fn root(&self) -> Result<(Descriptor, Vec<u8>)> {
        let r = &self.reference;
        let op = Operation::Resolve;
        let (body, digest) = self
            .client
            .get_manifest(r, op, &accept_manifests())
            .await?
            .ok_or_else(|| Error::NotFound {
                site: Client::site(r, op),
                reference: r.manifest_ref(),
            })?;
        let media_type = media_type_of(&body).ok_or_else(|| {
            self.invalid(
                format!("manifest {}", r.manifest_ref()),
                "image manifest or index",
                parse_manifest(&body).err().unwrap_or_default(),
            )
        })?;
        let descriptor = Descriptor {
            media_type,
            digest: digest.to_string(),
            size: body.len() as u64,
            artifact_type: None,
            annotations: BTreeMap::new(),
        };
        Ok((descriptor, body))
    }

    async fn manifest(&self, descriptor: &Descriptor) -> Result<Vec<u8>> {
        let op = Operation::PullArtifact;
        let digest: Digest = descriptor.digest.parse()?;
        let r = self.reference.at_digest(digest.clone());
        let accept = format!("{}, {}", descriptor.media_type, accept_manifests());
        // get_manifest checks the bytes against the digest and the manifest size limit.
        let (body, _) = self
            .client
            .get_manifest(&r, op, &accept)
            .await?
            .ok_or_else(|| Error::NotFound {
                site: Client::site(&r, op),
                reference: digest.to_string(),
            })?;
        if body.len() as u64 != descriptor.size {
            return Err(Error::SizeMismatch {
                site: Client::site(&r, op),
                what: format!("manifest {digest}"),
                expected: descriptor.size,
                actual: body.len() as u64,
            });
        }
        Ok(body)
    }

    async fn blob(&self, descriptor: &Descriptor, limit: u64) -> Result<Vec<u8>> {
        let op = Operation::PullArtifact;
        let r = &self.reference;
        let site = Client::site(r, op);
        let digest: Digest = descriptor.digest.parse()?;
        if descriptor.size > limit {
            return Err(Error::TooLarge {
                site,
                what: format!("blob {digest} ({} bytes)", descriptor.size),
                limit,
            });
        }
        let url = format!("{}/blobs/{digest}", self.client.base_url(r));
        // Reading stops at the declared size: a registry cannot make us buffer more.
        let what = format!("blob {digest} (larger than the size its descriptor declares)");
        let data = self
            .client
            .get_bounded(&site, &url, "*/*", descriptor.size, &what)
            .await?
            .ok_or_else(|| Error::NotFound {
                site: site.clone(),
                reference: digest.to_string(),
            })?;
        let actual = Digest::of(&data);
        if actual != digest {
            return Err(Error::DigestMismatch {
                site,
                what: format!("blob {digest}"),
                expected: digest.to_string(),
                actual: actual.to_string(),
            });
        }
        if data.len() as u64 != descriptor.size {
            return Err(Error::SizeMismatch {
                site,
                what: format!("blob {digest}"),
                expected: descriptor.size,
                actual: data.len() as u64,
            });
        }
        Ok(data)
    }

    async fn referrers(&self, subject: &Digest) -> Result<Vec<Descriptor>> {
        self.client
            .list_referrers(
                &self.reference.at_digest(subject.clone()),
                &ReferrerFilter::default(),
            )
            .await
    }

    fn invalid(&self, what: String, expected: &'static str, reason: String) -> Error {
        Error::InvalidManifest {
            site: Client::site(&self.reference, Operation::PullArtifact),
            what,
            expected,
            reason,
        }
    }
}

/// A repository of a registry as the target; a tag in `reference` is set to the image. Every
/// request, reads included, uses the push credentials.
pub(crate) struct RegistrySink<'a> {
    client: &'a Client,
    reference: Reference,
    mode: Option<ReferrersMode>,
    /// Referrers the target lists, per subject, read once before the first addition.
    listed: BTreeMap<Digest, BTreeSet<String>>,
}

impl<'a> RegistrySink<'a> {
    pub(crate) fn new(client: &'a Client, reference: Reference) -> Self {
        Self {
            client,
            reference,
            mode: None,
            listed: BTreeMap::new(),
        }
    }

    fn site(&self) -> Box<crate::error::Site> {
        Client::site(&self.reference, Operation::PushArtifact)
    }
}

impl Sink for RegistrySink<'_> {
    fn name(&self) -> String {
        self.reference.to_string()
    }

    async fn has_blob(&mut self, digest: &Digest) -> Result<bool> {
        self.client
            .blob_exists(&self.reference, &self.site(), digest)
            .await
    }

    async fn put_blob(&mut self, descriptor: &Descriptor, data: Vec<u8>) -> Result<()> {
        let digest: Digest = descriptor.digest.parse()?;
        self.client
            .push_blob(&self.reference, &self.site(), Bytes::from(data), &digest)
            .await
    }

    async fn has_manifest(&mut self, digest: &Digest) -> Result<bool> {
        let r = self.reference.at_digest(digest.clone());
        Ok(self
            .client
            .get_manifest(&r, Operation::PushArtifact, &accept_manifests())
            .await?
            .is_some())
    }

    async fn put_manifest(&mut self, descriptor: &Descriptor, body: Vec<u8>) -> Result<()> {
        let target = self.reference.at_digest(descriptor.digest.parse()?);
        let site = Client::site(&target, Operation::PushArtifact);
        self.client
            .push_manifest(&target, &site, Bytes::from(body), &descriptor.media_type)
            .await
            .map(drop)
    }

    async fn put_root(&mut self, descriptor: &Descriptor, body: Vec<u8>) -> Result<bool> {
        let digest: Digest = descriptor.digest.parse()?;
        if let Some(wanted) = self.reference.digest().filter(|d| **d != digest) {
            return Err(Error::InvalidManifest {
                site: Client::site(&self.reference, Operation::PushArtifact),
                what: format!("target {}", self.reference),
                expected: "reference to the copied image",
                reason: format!("it names {wanted}, but the image is {digest}"),
            });
        }
        let Some(tag) = self.reference.tag().map(str::to_owned) else {
            if self.has_manifest(&digest).await? {
                return Ok(false);
            }
            self.put_manifest(descriptor, body).await?;
            return Ok(true);
        };
        let tagged = self.reference.at_tag(&tag);
        let current = self
            .client
            .get_manifest(&tagged, Operation::PushArtifact, &accept_manifests())
            .await?;
        if current.is_some_and(|(_, d)| d == digest) {
            return Ok(false);
        }
        let site = Client::site(&tagged, Operation::PushArtifact);
        self.client
            .push_manifest(&tagged, &site, Bytes::from(body), &descriptor.media_type)
            .await?;
        Ok(true)
    }

    async fn referrers_mode(&mut self, image: &Digest) -> Result<Option<ReferrersMode>> {
        let mode = self.client.referrers_mode(&self.reference, image).await?;
        self.mode = Some(mode);
        Ok(Some(mode))
    }

    async fn add_referrer(&mut self, subject: &Digest, entry: &Descriptor) -> Result<bool> {
        // With the referrers API the registry lists a manifest by its subject as soon as it is stored.
        if self.mode != Some(ReferrersMode::FallbackTag) {
            return Ok(false);
        }
        let subject_ref = self.reference.at_digest(subject.clone());
        if !self.listed.contains_key(subject) {
            let listed = self
                .client
                .list_referrers(&subject_ref, &ReferrerFilter::default())
                .await?
                .into_iter()
                .map(|d| d.digest)
                .collect();
            self.listed.insert(subject.clone(), listed);
        }
        if self
            .listed
            .get(subject)
            .is_some_and(|l| l.contains(&entry.digest))
        {
            return Ok(false);
        }
        self.client
            .add_to_fallback_index(&subject_ref, subject, entry)
            .await?;
        if let Some(l) = self.listed.get_mut(subject) {
            l.insert(entry.digest.clone());
        }
        info!(%subject, referrer = %entry.digest, tag = %subject.fallback_tag(), "added to the referrers fallback index");
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(s: &str) -> String {
        Digest::of(s.as_bytes()).to_string()
    }

    #[test]
    fn parses_index_and_manifest_with_their_content() {
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [{"mediaType": OCI_MANIFEST, "digest": digest("a"), "size": 1,
                           "platform": {"architecture": "amd64", "os": "linux"}}],
        });
        let p = parse_manifest(&serde_json::to_vec(&index).unwrap()).unwrap();
        assert_eq!(p.media_type, OCI_INDEX);
        assert_eq!(p.children.len(), 1);
        assert!(p.blobs.is_empty());

        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "artifactType": "application/x.report",
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": digest("{}"), "size": 2},
            "layers": [{"mediaType": "application/json", "digest": digest("l"), "size": 1}],
            "subject": {"mediaType": OCI_MANIFEST, "digest": digest("s"), "size": 3},
            "annotations": {"k": "v"},
        });
        let p = parse_manifest(&serde_json::to_vec(&manifest).unwrap()).unwrap();
        // No mediaType: an OCI image manifest by its shape.
        assert_eq!(p.media_type, OCI_MANIFEST);
        assert_eq!(p.blobs.len(), 2);
        assert_eq!(
            p.subject.as_ref().map(Digest::as_str),
            Some(digest("s").as_str())
        );
        let entry = p.entry(&Digest::of(b"m"), 10);
        assert_eq!(entry.artifact_type.as_deref(), Some("application/x.report"));
        assert_eq!(entry.annotations["k"], "v");
    }

    #[test]
    fn refuses_what_is_not_a_manifest() {
        for bad in [
            serde_json::json!({"schemaVersion": 1, "config": {}}),
            serde_json::json!({"schemaVersion": 2}),
            serde_json::json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "manifests": []}),
            serde_json::json!({"schemaVersion": 2, "mediaType": "text/plain",
                               "config": {"mediaType": "a", "digest": digest("c"), "size": 1}}),
            serde_json::json!({"schemaVersion": 2,
                               "config": {"mediaType": "a", "digest": "sha512:00", "size": 1}}),
            serde_json::json!({"schemaVersion": 2, "manifests": [
                {"mediaType": "application/octet-stream", "digest": digest("x"), "size": 1}]}),
        ] {
            assert!(
                parse_manifest(&serde_json::to_vec(&bad).unwrap()).is_err(),
                "{bad}"
            );
        }
        assert!(parse_manifest(b"not json").is_err());
    }
}
