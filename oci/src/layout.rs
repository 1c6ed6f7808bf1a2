// SPDX-License-Identifier: Apache-2.0
//! OCI image layouts as tar archives: the bundle that carries an image and its referrers (function
//! maps, signed reports, their signatures) across an air gap.
//!
//! The layout follows image-spec `image-layout.md`: an `oci-layout` file, `index.json`, and every blob
//! and manifest under `blobs/sha256/<hex>`. `index.json` lists the image with the annotation
//! `org.opencontainers.image.ref.name` (its reference at export time) and every referrer manifest
//! (without that annotation); a referrer's subject is read from its manifest. docs/contracts/bundle.md
//! describes the format with an example.
//!
//! An archive is untrusted input: unpacking refuses links, paths outside the layout, entries that are
//! not part of a layout, oversized entries and blobs whose content does not hash to their name, and the
//! unpacked layout must be complete (every blob a manifest names present, with its size) before
//! anything is read from it.

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{self, BufRead as _, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use sha2::{Digest as _, Sha256};
use tracing::{debug, info};

use crate::client::{Artifact, Client};
use crate::copy::{
    self, CopyOptions, CopySummary, Parsed, RegistrySink, RegistrySource, Sink, Source,
};
use crate::error::{Error, Result};
use crate::manifest::{Descriptor, ImageIndex, ImageManifest, OCI_INDEX, OCI_MANIFEST};
use crate::reference::{Digest, Reference};
use crate::referrers::ReferrersMode;

/// The `imageLayoutVersion` written to and required in `oci-layout`.
pub const LAYOUT_VERSION: &str = "1.0.0";
/// The annotation naming the image in `index.json` (image-spec annotations.md).
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";

/// Whether an exported archive is gzip-compressed. Import detects it by the gzip magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar.
    None,
    /// A gzip-compressed tar.
    Gzip,
}

/// Limits applied while unpacking and reading an archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayoutLimits {
    /// Largest blob entry, in bytes.
    pub max_blob_bytes: u64,
    /// Largest `index.json`, `oci-layout` or manifest, in bytes.
    pub max_manifest_bytes: u64,
    /// Largest sum of entry sizes (and bound on the decompressed stream), in bytes.
    pub max_total_bytes: u64,
    /// Most entries.
    pub max_entries: usize,
}

impl Default for LayoutLimits {
    /// 1 GiB per blob, 4 MiB per manifest, 4 GiB in all, 100,000 entries.
    fn default() -> Self {
        Self {
            max_blob_bytes: copy::DEFAULT_MAX_BLOB_BYTES,
            max_manifest_bytes: crate::client::DEFAULT_MAX_MANIFEST_BYTES,
            max_total_bytes: 4 * 1024 * 1024 * 1024,
            max_entries: 100_000,
        }
    }
}

/// Why an archive or layout was refused. Every variant names the archive and the entry or blob.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LayoutError {
    /// The archive or the unpacked layout could not be read or written.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done (`read`, `write`, `create`).
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The file is not a (gzip-compressed) tar archive.
    #[error(
        "{}: not a readable tar archive: {reason}; expected an OCI image layout tar (from `linkguard bundle export`)",
        archive.display()
    )]
    NotATar {
        /// The archive.
        archive: PathBuf,
        /// What the tar reader reported.
        reason: String,
    },
    /// An entry that could write outside the layout or is not a plain file or directory.
    #[error("{}: entry `{entry}` {reason}; refusing the archive", archive.display())]
    UnsafeEntry {
        /// The archive.
        archive: PathBuf,
        /// The entry's path as stored.
        entry: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An entry that is not part of an OCI image layout.
    #[error(
        "{}: entry `{entry}` is not part of an OCI image layout (oci-layout, index.json, blobs/sha256/<64 hex>); refusing the archive",
        archive.display()
    )]
    UnexpectedEntry {
        /// The archive.
        archive: PathBuf,
        /// The entry's path as stored.
        entry: String,
    },
    /// The same path twice: which copy counts would be ambiguous.
    #[error("{}: entry `{entry}` appears twice; refusing the archive", archive.display())]
    DuplicateEntry {
        /// The archive.
        archive: PathBuf,
        /// The entry's path.
        entry: String,
    },
    /// An entry over its size limit; nothing of it was read.
    #[error("{}: entry `{entry}` is {size} bytes, over the limit of {limit}; refusing the archive", archive.display())]
    EntryTooLarge {
        /// The archive.
        archive: PathBuf,
        /// The entry's path.
        entry: String,
        /// Its declared size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The archive as a whole is over a limit.
    #[error("{}: more than {limit} {what}; refusing the archive", archive.display())]
    ArchiveTooLarge {
        /// The archive.
        archive: PathBuf,
        /// `bytes` or `entries`.
        what: &'static str,
        /// The limit.
        limit: u64,
    },
    /// A blob's content does not hash to the digest in its name: altered or corrupted.
    #[error(
        "{}: blob `{entry}` hashes to {actual}: its content was altered or corrupted; refusing the archive",
        archive.display()
    )]
    DigestMismatch {
        /// The archive.
        archive: PathBuf,
        /// The entry's path.
        entry: String,
        /// The digest of its content.
        actual: String,
    },
    /// A blob a manifest (or index.json) names is not in the archive.
    #[error("{}: blob {digest} is missing (named by {needed_by}); the layout is incomplete", archive.display())]
    MissingBlob {
        /// The archive.
        archive: PathBuf,
        /// The missing digest.
        digest: String,
        /// What names it.
        needed_by: String,
    },
    /// A blob's size differs from its descriptor's.
    #[error("{}: blob {digest} is {actual} bytes, but {needed_by} declares {expected}", archive.display())]
    SizeMismatch {
        /// The archive.
        archive: PathBuf,
        /// The blob's digest.
        digest: String,
        /// What declares the size.
        needed_by: String,
        /// The declared size.
        expected: u64,
        /// The blob's size.
        actual: u64,
    },
    /// `oci-layout`, `index.json` or a manifest is not what the image spec requires.
    #[error("{}: {what} is not a valid {expected}: {reason}", archive.display())]
    Invalid {
        /// The archive.
        archive: PathBuf,
        /// What was read.
        what: String,
        /// What it must be.
        expected: &'static str,
        /// Why it was refused.
        reason: String,
    },
}

type LayoutResult<T> = std::result::Result<T, LayoutError>;

/// Exports `image` from `source`'s registry with its blobs, child manifests and referrers
/// (recursively) as an OCI image layout tar written to `out`; returns what was written and `out`.
///
/// The archive is complete only when this returns `Ok`: write to a temporary file and keep it then.
pub async fn export_layout<W: Write>(
    source: &Client,
    image: &Reference,
    out: W,
    compression: Compression,
    options: &CopyOptions,
) -> Result<(CopySummary, W)> {
    let from = RegistrySource {
        client: source,
        reference: image.clone(),
    };
    let mut sink = TarSink::new(out, compression, image.to_string())?;
    let summary = copy::run(&from, &mut sink, options).await?;
    let out = sink.finish()?;
    Ok((summary, out))
}

/// Pushes the image of `layout` with its referrers to `to` in `target`'s registry (a tag in `to` is
/// set to the image; a digest must be the image's), maintaining the fallback index when the registry
/// has no referrers API. Idempotent like [`copy::copy_image`].
pub async fn import_layout(
    layout: &OciLayout,
    target: &Client,
    to: &Reference,
    options: &CopyOptions,
) -> Result<CopySummary> {
    let mut sink = RegistrySink::new(target, to.clone());
    copy::run(layout, &mut sink, options).await
}

/// Writes `archive`'s layout into the empty directory `into` after checking every entry, and opens it.
/// Gzip compression is detected by its magic bytes.
pub fn unpack_layout(
    archive: &Path,
    into: &Path,
    limits: &LayoutLimits,
) -> LayoutResult<OciLayout> {
    let io_err = |action, path: &Path| {
        let path = path.to_path_buf();
        move |source| LayoutError::Io {
            action,
            path,
            source,
        }
    };
    let file = File::open(archive).map_err(io_err("open", archive))?;
    let mut reader = BufReader::new(file);
    let gzip = reader
        .fill_buf()
        .map_err(io_err("read", archive))?
        .starts_with(&[0x1f, 0x8b]);
    let stream: Box<dyn Read> = if gzip {
        Box::new(flate2::read::MultiGzDecoder::new(reader))
    } else {
        Box::new(reader)
    };
    // Bounds the (decompressed) stream: entry contents plus a header and padding per entry, and the
    // end-of-archive blocks. A gzip bomb stops here instead of filling the disk.
    let overhead = 1024 * (limits.max_entries as u64 + 16) + 10240;
    let exceeded = Rc::new(Cell::new(false));
    let capped = Capped {
        inner: stream,
        left: limits.max_total_bytes.saturating_add(overhead),
        exceeded: Rc::clone(&exceeded),
    };
    let blobs_dir = into.join("blobs").join("sha256");
    std::fs::create_dir_all(&blobs_dir).map_err(io_err("create", &blobs_dir))?;

    let mut unpacker = Unpacker {
        archive: archive.to_path_buf(),
        into: into.to_path_buf(),
        limits: limits.clone(),
        seen: BTreeSet::new(),
        entries: 0,
        total: 0,
    };
    let mut tar = tar::Archive::new(capped);
    let not_a_tar = |e: io::Error| {
        if exceeded.get() {
            LayoutError::ArchiveTooLarge {
                archive: archive.to_path_buf(),
                what: "bytes (decompressed)",
                limit: limits.max_total_bytes,
            }
        } else {
            LayoutError::NotATar {
                archive: archive.to_path_buf(),
                reason: format!("{}{e}", if gzip { "(gzip) " } else { "" }),
            }
        }
    };
    for entry in tar.entries().map_err(not_a_tar)? {
        let entry = entry.map_err(not_a_tar)?;
        unpacker.entry(entry).map_err(|e| match e {
            UnpackError::Layout(e) => e,
            UnpackError::Read(e) => not_a_tar(e),
        })?;
    }
    if unpacker.entries == 0 {
        return Err(LayoutError::NotATar {
            archive: archive.to_path_buf(),
            reason: "it holds no entries".to_owned(),
        });
    }
    let layout = OciLayout::open(into, archive, limits)?;
    info!(archive = %archive.display(), image = %layout.image.digest, entries = unpacker.entries, bytes = unpacker.total, "unpacked and checked the layout");
    Ok(layout)
}

/// A reader that fails once more than `left` bytes were read.
struct Capped<R> {
    inner: R,
    left: u64,
    exceeded: Rc<Cell<bool>>,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n as u64 > self.left {
            self.exceeded.set(true);
            return Err(io::Error::other("archive over the size limit"));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

enum UnpackError {
    Layout(LayoutError),
    /// Reading the entry's content failed: a truncated or corrupt archive.
    Read(io::Error),
}

impl From<LayoutError> for UnpackError {
    fn from(e: LayoutError) -> Self {
        Self::Layout(e)
    }
}

/// What an entry's path names inside a layout.
#[derive(Debug, PartialEq, Eq)]
enum EntryName {
    Dir,
    OciLayout,
    IndexJson,
    Blob(String),
}

/// Classifies a stored path; `Err(None)` when it is not part of a layout, `Err(Some(reason))` when it
/// is unsafe.
fn classify(name: &str) -> std::result::Result<EntryName, Option<&'static str>> {
    if name.starts_with('/') {
        return Err(Some("has an absolute path"));
    }
    if name.split('/').any(|c| c == "..") {
        return Err(Some("escapes the layout (path traversal with `..`)"));
    }
    let mut rest = name;
    while let Some(r) = rest.strip_prefix("./") {
        rest = r;
    }
    let rest = rest.trim_end_matches('/');
    match rest {
        "" | "." | "blobs" | "blobs/sha256" => Ok(EntryName::Dir),
        "oci-layout" => Ok(EntryName::OciLayout),
        "index.json" => Ok(EntryName::IndexJson),
        _ => match rest.strip_prefix("blobs/sha256/") {
            Some(hex) if format!("sha256:{hex}").parse::<Digest>().is_ok() => {
                Ok(EntryName::Blob(hex.to_owned()))
            }
            _ => Err(None),
        },
    }
}

struct Unpacker {
    archive: PathBuf,
    into: PathBuf,
    limits: LayoutLimits,
    seen: BTreeSet<String>,
    entries: usize,
    total: u64,
}

impl Unpacker {
    fn entry<R: Read>(
        &mut self,
        mut entry: tar::Entry<'_, R>,
    ) -> std::result::Result<(), UnpackError> {
        let kind = entry.header().entry_type();
        let stored = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        // Global PAX headers carry metadata only; the tar reader applies none of it to paths.
        if kind.is_pax_global_extensions() {
            return Ok(());
        }
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(LayoutError::ArchiveTooLarge {
                archive: self.archive.clone(),
                what: "entries",
                limit: self.limits.max_entries as u64,
            }
            .into());
        }
        let unsafe_entry = |reason| LayoutError::UnsafeEntry {
            archive: self.archive.clone(),
            entry: stored.clone(),
            reason,
        };
        if kind.is_symlink() {
            return Err(unsafe_entry("is a symbolic link").into());
        }
        if kind.is_hard_link() {
            return Err(unsafe_entry("is a hard link").into());
        }
        if !(kind.is_file() || kind.is_dir()) {
            return Err(unsafe_entry("is not a regular file or directory").into());
        }
        let name = classify(&stored).map_err(|reason| match reason {
            Some(reason) => unsafe_entry(reason),
            None => LayoutError::UnexpectedEntry {
                archive: self.archive.clone(),
                entry: stored.clone(),
            },
        })?;
        if (name == EntryName::Dir) != kind.is_dir() {
            return Err(LayoutError::UnexpectedEntry {
                archive: self.archive.clone(),
                entry: stored.clone(),
            }
            .into());
        }
        if name == EntryName::Dir {
            return Ok(());
        }
        let size = entry.size();
        let limit = match name {
            EntryName::Blob(_) => self.limits.max_blob_bytes,
            _ => self.limits.max_manifest_bytes,
        };
        if size > limit {
            return Err(LayoutError::EntryTooLarge {
                archive: self.archive.clone(),
                entry: stored,
                size,
                limit,
            }
            .into());
        }
        self.total = self.total.saturating_add(size);
        if self.total > self.limits.max_total_bytes {
            return Err(LayoutError::ArchiveTooLarge {
                archive: self.archive.clone(),
                what: "bytes",
                limit: self.limits.max_total_bytes,
            }
            .into());
        }
        let relative = match &name {
            EntryName::Blob(hex) => format!("blobs/sha256/{hex}"),
            EntryName::OciLayout => "oci-layout".to_owned(),
            _ => "index.json".to_owned(),
        };
        if !self.seen.insert(relative.clone()) {
            return Err(LayoutError::DuplicateEntry {
                archive: self.archive.clone(),
                entry: stored,
            }
            .into());
        }
        let path = self.into.join(&relative);
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|source| LayoutError::Io {
                action: "create",
                path: path.clone(),
                source,
            })?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut read = 0u64;
        let mut limited = (&mut entry).take(size);
        loop {
            let n = limited.read(&mut buf).map_err(UnpackError::Read)?;
            if n == 0 {
                break;
            }
            let chunk = buf.get(..n).unwrap_or_default();
            hasher.update(chunk);
            out.write_all(chunk).map_err(|source| LayoutError::Io {
                action: "write",
                path: path.clone(),
                source,
            })?;
            read += n as u64;
        }
        if read != size {
            return Err(UnpackError::Read(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("entry `{stored}` is truncated ({read} of {size} bytes)"),
            )));
        }
        if let EntryName::Blob(hex) = &name {
            let actual = hex::encode(hasher.finalize());
            if actual != *hex {
                return Err(LayoutError::DigestMismatch {
                    archive: self.archive.clone(),
                    entry: stored,
                    actual: format!("sha256:{actual}"),
                }
                .into());
            }
        }
        debug!(entry = %relative, size, "unpacked");
        Ok(())
    }
}

/// A referrer manifest listed in `index.json`.
#[derive(Debug, Clone)]
struct Listed {
    /// Its referrers-list entry, built from the manifest itself (not from index.json's claims).
    entry: Descriptor,
    subject: Option<Digest>,
}

/// An unpacked, checked OCI image layout: the image `index.json` names and the referrers it lists.
#[derive(Debug)]
pub struct OciLayout {
    dir: PathBuf,
    archive: PathBuf,
    limits: LayoutLimits,
    image: Descriptor,
    ref_name: String,
    listed: Vec<Listed>,
}

impl OciLayout {
    /// Checks `oci-layout` and `index.json` in `dir` and that every blob reachable from index.json is
    /// present with its declared size.
    fn open(dir: &Path, archive: &Path, limits: &LayoutLimits) -> LayoutResult<Self> {
        let invalid = |what: &str, expected, reason: String| LayoutError::Invalid {
            archive: archive.to_path_buf(),
            what: what.to_owned(),
            expected,
            reason,
        };
        let read_small = |name: &str| -> LayoutResult<Vec<u8>> {
            let path = dir.join(name);
            if !path.exists() {
                return Err(invalid(
                    name,
                    "OCI image layout",
                    format!("the archive has no `{name}` entry"),
                ));
            }
            std::fs::read(&path).map_err(|source| LayoutError::Io {
                action: "read",
                path,
                source,
            })
        };
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Marker {
            image_layout_version: String,
        }
        let marker: Marker = serde_json::from_slice(&read_small("oci-layout")?)
            .map_err(|e| invalid("oci-layout", "OCI layout marker", e.to_string()))?;
        if marker.image_layout_version != LAYOUT_VERSION {
            return Err(invalid(
                "oci-layout",
                "OCI layout marker",
                format!(
                    "imageLayoutVersion is {:?}, not {LAYOUT_VERSION:?}",
                    marker.image_layout_version
                ),
            ));
        }
        let index: ImageIndex = serde_json::from_slice(&read_small("index.json")?)
            .map_err(|e| invalid("index.json", "OCI image index", e.to_string()))?;
        if index.schema_version != 2 || index.media_type.as_deref().is_some_and(|t| t != OCI_INDEX)
        {
            return Err(invalid(
                "index.json",
                "OCI image index",
                format!(
                    "schemaVersion {} mediaType {:?}",
                    index.schema_version, index.media_type
                ),
            ));
        }
        let named: Vec<&Descriptor> = index
            .manifests
            .iter()
            .filter(|d| d.annotations.contains_key(REF_NAME_ANNOTATION))
            .collect();
        let image = match named.as_slice() {
            [one] => (*one).clone(),
            [] => {
                return Err(invalid(
                    "index.json",
                    "linkguard bundle",
                    format!(
                        "no entry has the annotation {REF_NAME_ANNOTATION}, so it names no image"
                    ),
                ));
            }
            many => {
                let names: Vec<&str> = many
                    .iter()
                    .filter_map(|d| d.annotations.get(REF_NAME_ANNOTATION).map(String::as_str))
                    .collect();
                return Err(invalid(
                    "index.json",
                    "linkguard bundle",
                    format!(
                        "it names {} images ({}); a bundle holds one",
                        names.len(),
                        names.join(", ")
                    ),
                ));
            }
        };
        let ref_name = image
            .annotations
            .get(REF_NAME_ANNOTATION)
            .cloned()
            .unwrap_or_default();
        let mut layout = Self {
            dir: dir.to_path_buf(),
            archive: archive.to_path_buf(),
            limits: limits.clone(),
            image: Descriptor {
                annotations: BTreeMap::new(),
                artifact_type: None,
                ..image
            },
            ref_name,
            listed: Vec::new(),
        };
        layout.check_complete(&index)?;
        Ok(layout)
    }

    /// Walks every manifest reachable from index.json: each must be present, hash to its digest and
    /// parse; each blob it names must be present with its size. Records the referrers (every entry
    /// but the image) with their subjects, as their manifests state them.
    fn check_complete(&mut self, index: &ImageIndex) -> LayoutResult<()> {
        for descriptor in &index.manifests {
            if descriptor.digest == self.image.digest {
                continue;
            }
            let body = self.read_blob(descriptor, self.limits.max_manifest_bytes, "index.json")?;
            let parsed = self.parse(&descriptor.digest, &body)?;
            let digest = self.digest(&descriptor.digest)?;
            self.listed.push(Listed {
                entry: parsed.entry(&digest, body.len() as u64),
                subject: parsed.subject,
            });
        }
        let mut visited = BTreeSet::new();
        let mut stack: Vec<(Descriptor, String)> = index
            .manifests
            .iter()
            .map(|d| (d.clone(), "index.json".to_owned()))
            .collect();
        while let Some((descriptor, needed_by)) = stack.pop() {
            if !visited.insert(descriptor.digest.clone()) {
                continue;
            }
            let body = self.read_blob(&descriptor, self.limits.max_manifest_bytes, &needed_by)?;
            let parsed = self.parse(&descriptor.digest, &body)?;
            let here = format!("manifest {}", descriptor.digest);
            for child in &parsed.children {
                stack.push((child.clone(), here.clone()));
            }
            for blob in &parsed.blobs {
                self.check_present(blob, &here)?;
            }
        }
        Ok(())
    }

    fn digest(&self, text: &str) -> LayoutResult<Digest> {
        text.parse().map_err(|_| LayoutError::Invalid {
            archive: self.archive.clone(),
            what: format!("descriptor digest `{text}`"),
            expected: "sha256 digest",
            reason: "only sha256:<64 lowercase hex> is supported".to_owned(),
        })
    }

    fn parse(&self, digest: &str, body: &[u8]) -> LayoutResult<Parsed> {
        copy::parse_manifest(body).map_err(|reason| LayoutError::Invalid {
            archive: self.archive.clone(),
            what: format!("manifest {digest}"),
            expected: "image manifest or index",
            reason,
        })
    }

    fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.dir.join("blobs").join("sha256").join(digest.hex())
    }

    fn check_present(&self, descriptor: &Descriptor, needed_by: &str) -> LayoutResult<()> {
        let digest = self.digest(&descriptor.digest)?;
        let path = self.blob_path(&digest);
        let Ok(meta) = std::fs::metadata(&path) else {
            return Err(LayoutError::MissingBlob {
                archive: self.archive.clone(),
                digest: digest.to_string(),
                needed_by: needed_by.to_owned(),
            });
        };
        if meta.len() != descriptor.size {
            return Err(LayoutError::SizeMismatch {
                archive: self.archive.clone(),
                digest: digest.to_string(),
                needed_by: needed_by.to_owned(),
                expected: descriptor.size,
                actual: meta.len(),
            });
        }
        Ok(())
    }

    /// The blob `descriptor` names, checked against its size, `limit` and digest.
    fn read_blob(
        &self,
        descriptor: &Descriptor,
        limit: u64,
        needed_by: &str,
    ) -> LayoutResult<Vec<u8>> {
        self.check_present(descriptor, needed_by)?;
        let digest = self.digest(&descriptor.digest)?;
        let entry = format!("blobs/sha256/{}", digest.hex());
        if descriptor.size > limit {
            return Err(LayoutError::EntryTooLarge {
                archive: self.archive.clone(),
                entry,
                size: descriptor.size,
                limit,
            });
        }
        let path = self.blob_path(&digest);
        let data = std::fs::read(&path).map_err(|source| LayoutError::Io {
            action: "read",
            path,
            source,
        })?;
        let actual = Digest::of(&data);
        if actual != digest || data.len() as u64 != descriptor.size {
            return Err(LayoutError::DigestMismatch {
                archive: self.archive.clone(),
                entry,
                actual: actual.to_string(),
            });
        }
        Ok(data)
    }

    /// The image's manifest (or index) descriptor: media type, digest, size.
    pub fn image(&self) -> &Descriptor {
        &self.image
    }

    /// The image's digest.
    pub fn image_digest(&self) -> LayoutResult<Digest> {
        self.digest(&self.image.digest)
    }

    /// The image's reference at export time (`org.opencontainers.image.ref.name`).
    pub fn ref_name(&self) -> &str {
        &self.ref_name
    }

    /// The archive this layout was unpacked from.
    pub fn archive(&self) -> &Path {
        &self.archive
    }

    /// The image manifests listed in index.json whose manifest names `subject`, as referrers-list
    /// entries built from the manifests themselves, deduplicated, in index.json order.
    pub fn referrers(&self, subject: &Digest) -> Vec<Descriptor> {
        let mut seen = BTreeSet::new();
        self.listed
            .iter()
            .filter(|l| l.subject.as_ref() == Some(subject))
            .filter(|l| seen.insert(l.entry.digest.clone()))
            .map(|l| l.entry.clone())
            .collect()
    }

    /// The artifact manifest `digest` (an OCI image manifest in this layout) and its layers, every
    /// one checked against its digest and size.
    pub fn read_artifact(&self, digest: &Digest) -> LayoutResult<Artifact> {
        let what = format!("manifest {digest}");
        let path = self.blob_path(digest);
        let size = std::fs::metadata(&path)
            .map_err(|_| LayoutError::MissingBlob {
                archive: self.archive.clone(),
                digest: digest.to_string(),
                needed_by: "the request".to_owned(),
            })?
            .len();
        let descriptor = Descriptor {
            media_type: OCI_MANIFEST.to_owned(),
            digest: digest.to_string(),
            size,
            artifact_type: None,
            annotations: BTreeMap::new(),
        };
        let body = self.read_blob(&descriptor, self.limits.max_manifest_bytes, &what)?;
        let manifest: ImageManifest =
            serde_json::from_slice(&body).map_err(|e| LayoutError::Invalid {
                archive: self.archive.clone(),
                what: what.clone(),
                expected: "OCI image manifest",
                reason: e.to_string(),
            })?;
        if manifest.media_type.as_deref() != Some(OCI_MANIFEST) {
            return Err(LayoutError::Invalid {
                archive: self.archive.clone(),
                what,
                expected: "OCI image manifest",
                reason: format!("mediaType is {:?}", manifest.media_type),
            });
        }
        let mut layers = Vec::with_capacity(manifest.layers.len());
        for layer in &manifest.layers {
            let data = self.read_blob(layer, self.limits.max_blob_bytes, &what)?;
            layers.push((layer.clone(), data));
        }
        Ok(Artifact {
            digest: digest.clone(),
            manifest,
            layers,
        })
    }
}

impl Source for OciLayout {
    fn name(&self) -> String {
        self.archive.display().to_string()
    }

    async fn root(&self) -> Result<(Descriptor, Vec<u8>)> {
        let body = self.read_blob(&self.image, self.limits.max_manifest_bytes, "index.json")?;
        Ok((self.image.clone(), body))
    }

    async fn manifest(&self, descriptor: &Descriptor) -> Result<Vec<u8>> {
        Ok(self.read_blob(descriptor, self.limits.max_manifest_bytes, "a manifest")?)
    }

    async fn blob(&self, descriptor: &Descriptor, limit: u64) -> Result<Vec<u8>> {
        let limit = limit.min(self.limits.max_blob_bytes);
        Ok(self.read_blob(descriptor, limit, "a manifest")?)
    }

    async fn referrers(&self, subject: &Digest) -> Result<Vec<Descriptor>> {
        Ok(OciLayout::referrers(self, subject))
    }

    fn invalid(&self, what: String, expected: &'static str, reason: String) -> Error {
        Error::Layout(LayoutError::Invalid {
            archive: self.archive.clone(),
            what,
            expected,
            reason,
        })
    }
}

/// The archive's byte stream, compressed or not.
enum Output<W: Write> {
    Plain(W),
    Gzip(flate2::write::GzEncoder<W>),
}

impl<W: Write> Write for Output<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Plain(w) => w.write(buf),
            Self::Gzip(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Plain(w) => w.flush(),
            Self::Gzip(w) => w.flush(),
        }
    }
}

/// Writes a layout as a tar: `oci-layout` and the directories first, blobs as they are copied,
/// `index.json` last. Headers are normalized (mode 0644/0755, uid/gid 0, mtime 0) so the same content
/// gives the same archive.
struct TarSink<W: Write> {
    builder: tar::Builder<Output<W>>,
    name: String,
    written: BTreeSet<Digest>,
    image: Option<Descriptor>,
    ref_name: String,
    referrers: Vec<Descriptor>,
}

impl<W: Write> TarSink<W> {
    fn new(out: W, compression: Compression, ref_name: String) -> Result<Self> {
        let out = match compression {
            Compression::None => Output::Plain(out),
            Compression::Gzip => Output::Gzip(flate2::write::GzEncoder::new(
                out,
                flate2::Compression::default(),
            )),
        };
        let mut sink = Self {
            builder: tar::Builder::new(out),
            name: "the bundle archive".to_owned(),
            written: BTreeSet::new(),
            image: None,
            ref_name,
            referrers: Vec::new(),
        };
        let marker = serde_json::json!({ "imageLayoutVersion": LAYOUT_VERSION }).to_string();
        sink.append("oci-layout", marker.as_bytes())?;
        sink.append_dir("blobs/")?;
        sink.append_dir("blobs/sha256/")?;
        Ok(sink)
    }

    fn write_error(&self, source: io::Error) -> Error {
        Error::Layout(LayoutError::Io {
            action: "write",
            path: PathBuf::from(&self.name),
            source,
        })
    }

    fn header(kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(kind);
        header.set_size(size);
        header.set_mode(mode);
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        header
    }

    fn append(&mut self, path: &str, data: &[u8]) -> Result<()> {
        let mut header = Self::header(tar::EntryType::Regular, data.len() as u64, 0o644);
        let appended = self.builder.append_data(&mut header, path, data);
        appended.map_err(|e| self.write_error(e))
    }

    fn append_dir(&mut self, path: &str) -> Result<()> {
        let mut header = Self::header(tar::EntryType::Directory, 0, 0o755);
        let appended = self.builder.append_data(&mut header, path, io::empty());
        appended.map_err(|e| self.write_error(e))
    }

    fn put(&mut self, digest: &str, data: &[u8]) -> Result<()> {
        let digest: Digest = digest.parse()?;
        if self.written.contains(&digest) {
            return Ok(());
        }
        self.append(&format!("blobs/sha256/{}", digest.hex()), data)?;
        self.written.insert(digest);
        Ok(())
    }

    /// Writes index.json and ends the archive.
    fn finish(mut self) -> Result<W> {
        let Some(mut image) = self.image.take() else {
            return Err(self.write_error(io::Error::other("the image was never written")));
        };
        image
            .annotations
            .insert(REF_NAME_ANNOTATION.to_owned(), self.ref_name.clone());
        let mut index = ImageIndex::empty();
        index.manifests.push(image);
        index.manifests.append(&mut self.referrers);
        let body =
            serde_json::to_vec_pretty(&index).map_err(|e| self.write_error(io::Error::other(e)))?;
        self.append("index.json", &body)?;
        let out = self.builder.into_inner().map_err(|e| {
            Error::Layout(LayoutError::Io {
                action: "write",
                path: PathBuf::from("the bundle archive"),
                source: e,
            })
        })?;
        let out = match out {
            Output::Plain(w) => w,
            Output::Gzip(gz) => gz.finish().map_err(|e| {
                Error::Layout(LayoutError::Io {
                    action: "write",
                    path: PathBuf::from("the bundle archive"),
                    source: e,
                })
            })?,
        };
        Ok(out)
    }
}

impl<W: Write> Sink for TarSink<W> {
    fn name(&self) -> String {
        format!("OCI layout of {}", self.ref_name)
    }

    async fn has_blob(&mut self, digest: &Digest) -> Result<bool> {
        Ok(self.written.contains(digest))
    }

    async fn put_blob(&mut self, descriptor: &Descriptor, data: Vec<u8>) -> Result<()> {
        self.put(&descriptor.digest, &data)
    }

    async fn has_manifest(&mut self, digest: &Digest) -> Result<bool> {
        Ok(self.written.contains(digest))
    }

    async fn put_manifest(&mut self, descriptor: &Descriptor, body: Vec<u8>) -> Result<()> {
        self.put(&descriptor.digest, &body)
    }

    async fn put_root(&mut self, descriptor: &Descriptor, body: Vec<u8>) -> Result<bool> {
        self.put(&descriptor.digest, &body)?;
        self.image = Some(Descriptor {
            media_type: descriptor.media_type.clone(),
            digest: descriptor.digest.clone(),
            size: descriptor.size,
            artifact_type: None,
            annotations: BTreeMap::new(),
        });
        Ok(true)
    }

    async fn referrers_mode(&mut self, _image: &Digest) -> Result<Option<ReferrersMode>> {
        Ok(None)
    }

    async fn add_referrer(&mut self, _subject: &Digest, entry: &Descriptor) -> Result<bool> {
        if self.referrers.iter().any(|r| r.digest == entry.digest) {
            return Ok(false);
        }
        self.referrers.push(entry.clone());
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_names_are_classified_and_traversal_refused() {
        let hex = "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";
        assert_eq!(classify("oci-layout"), Ok(EntryName::OciLayout));
        assert_eq!(classify("./index.json"), Ok(EntryName::IndexJson));
        assert_eq!(classify("blobs/sha256/"), Ok(EntryName::Dir));
        assert_eq!(
            classify(&format!("blobs/sha256/{hex}")),
            Ok(EntryName::Blob(hex.to_owned()))
        );
        assert_eq!(classify("/etc/passwd").map_err(|e| e.is_some()), Err(true));
        assert_eq!(
            classify(&format!("blobs/sha256/../../{hex}")).map_err(|e| e.is_some()),
            Err(true)
        );
        assert_eq!(classify("../x").map_err(|e| e.is_some()), Err(true));
        for other in [
            "blobs/sha512/00",
            "blobs/sha256/ABC",
            "README",
            "blobs/sha256/x/y",
        ] {
            assert_eq!(classify(other), Err(None), "{other}");
        }
    }

    #[test]
    fn capped_reader_stops_at_the_limit() {
        let exceeded = Rc::new(Cell::new(false));
        let mut r = Capped {
            inner: &[0u8; 100][..],
            left: 10,
            exceeded: Rc::clone(&exceeded),
        };
        let mut buf = Vec::new();
        assert!(r.read_to_end(&mut buf).is_err());
        assert!(exceeded.get());
    }
}
