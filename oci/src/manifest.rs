// SPDX-License-Identifier: Apache-2.0
//! The OCI image-spec documents this crate writes and reads: descriptors, image manifests (artifacts)
//! and image indexes (referrers lists). Own types rather than oci-client's, because oci-client's
//! builder leaves `mediaType` empty and an index without `mediaType` is pushed as a Docker list.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::reference::Digest;

/// `application/vnd.oci.image.manifest.v1+json`
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// `application/vnd.oci.image.index.v1+json`
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// The empty config descriptor's media type (image-spec "Guidelines for Artifact Usage").
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
/// The content of the empty config blob.
pub const EMPTY_CONFIG: &[u8] = b"{}";
/// Manifest media types a subject may have (OCI and Docker image manifests and lists).
pub const MANIFEST_MEDIA_TYPES: &[&str] = &[
    OCI_MANIFEST,
    OCI_INDEX,
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// An OCI content descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type of the referenced content.
    pub media_type: String,
    /// Digest of the referenced content.
    pub digest: String,
    /// Size in bytes of the referenced content.
    pub size: u64,
    /// Artifact type, set on referrers-list entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// An OCI image manifest; for linkguard, an artifact manifest with a subject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    /// Always 2.
    pub schema_version: u32,
    /// `application/vnd.oci.image.manifest.v1+json`.
    #[serde(default)]
    pub media_type: Option<String>,
    /// The artifact's type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// The config descriptor (the empty descriptor for artifacts).
    pub config: Descriptor,
    /// The layers (blobs) of the artifact.
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    /// The manifest this artifact refers to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// An OCI image index; for linkguard, a referrers list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageIndex {
    /// Always 2.
    pub schema_version: u32,
    /// `application/vnd.oci.image.index.v1+json`.
    #[serde(default)]
    pub media_type: Option<String>,
    /// The entries.
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl ImageIndex {
    /// An empty OCI image index.
    pub fn empty() -> Self {
        Self {
            schema_version: 2,
            media_type: Some(OCI_INDEX.to_owned()),
            manifests: Vec::new(),
            annotations: BTreeMap::new(),
        }
    }
}

/// One layer of an artifact to push: its media type and content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    /// Media type of the content.
    pub media_type: String,
    /// The content.
    pub data: Vec<u8>,
}

/// The artifact manifest for `layers` referring to `subject`, with the empty config descriptor.
pub(crate) fn artifact_manifest(
    subject: Descriptor,
    artifact_type: &str,
    layers: &[Layer],
    annotations: BTreeMap<String, String>,
) -> ImageManifest {
    ImageManifest {
        schema_version: 2,
        media_type: Some(OCI_MANIFEST.to_owned()),
        artifact_type: Some(artifact_type.to_owned()),
        config: Descriptor {
            media_type: OCI_EMPTY.to_owned(),
            digest: Digest::of(EMPTY_CONFIG).to_string(),
            size: EMPTY_CONFIG.len() as u64,
            artifact_type: None,
            annotations: BTreeMap::new(),
        },
        layers: layers
            .iter()
            .map(|l| Descriptor {
                media_type: l.media_type.clone(),
                digest: Digest::of(&l.data).to_string(),
                size: l.data.len() as u64,
                artifact_type: None,
                annotations: BTreeMap::new(),
            })
            .collect(),
        subject: Some(subject),
        annotations,
    }
}

/// The referrers-list entry describing an artifact manifest (image-spec: the entry carries the
/// manifest's artifactType, or its config media type, and its annotations).
pub(crate) fn referrer_entry(manifest: &ImageManifest, digest: &Digest, size: u64) -> Descriptor {
    Descriptor {
        media_type: OCI_MANIFEST.to_owned(),
        digest: digest.to_string(),
        size,
        artifact_type: manifest
            .artifact_type
            .clone()
            .or_else(|| Some(manifest.config.media_type.clone())),
        annotations: manifest.annotations.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifact_manifest_has_every_field_the_spec_requires() {
        let subject = Descriptor {
            media_type: OCI_MANIFEST.to_owned(),
            digest: Digest::of(b"image").to_string(),
            size: 5,
            artifact_type: None,
            annotations: BTreeMap::new(),
        };
        let layers = [Layer {
            media_type: "application/json".to_owned(),
            data: b"[1]".to_vec(),
        }];
        let annotations = BTreeMap::from([("k".to_owned(), "v".to_owned())]);
        let m = artifact_manifest(subject.clone(), "application/x.test", &layers, annotations);
        let json: serde_json::Value = serde_json::to_value(&m).unwrap();
        assert_eq!(json["schemaVersion"], 2);
        assert_eq!(json["mediaType"], OCI_MANIFEST);
        assert_eq!(json["artifactType"], "application/x.test");
        assert_eq!(json["config"]["mediaType"], OCI_EMPTY);
        assert_eq!(json["config"]["size"], 2);
        assert_eq!(
            json["config"]["digest"],
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        assert_eq!(json["layers"][0]["digest"], Digest::of(b"[1]").as_str());
        assert_eq!(json["layers"][0]["size"], 3);
        assert_eq!(json["subject"]["digest"], subject.digest.as_str());
        assert_eq!(json["annotations"]["k"], "v");
    }
}
