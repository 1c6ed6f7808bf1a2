// SPDX-License-Identifier: Apache-2.0
//! Referrers-list entries without `artifactType`: a fallback index copied by a tool that drops the
//! field (skopeo copies the `sha256-<hex>` tag as a plain index) must still list the reports when
//! filtering by artifact type. Per image-spec v1.1 the artifact type of such an entry is its manifest's
//! `artifactType`, else its config's media type. Against Debian's docker-registry (CNCF distribution
//! 2.8, no referrers API: the fallback tag is what is listed); SKIP when it is not installed, a failure
//! under LINKGUARD_REQUIRE_INTEROP=1.
#![expect(
    clippy::unwrap_used,
    reason = "test harness helpers: a failed setup step is a failed test"
)]

use std::collections::BTreeMap;

use linkguard_oci::{
    Client, ClientConfig, Descriptor, Digest, ImageIndex, Layer, OCI_INDEX, OCI_MANIFEST,
    Reference, ReferrerFilter, ReferrersMode, RegistryAuth,
};

#[path = "support/registries.rs"]
mod registries;
use registries::{Registry, docker_registry, start_distribution};

const BUNDLE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
const PREDICATE_TYPE: &str = "dev.sigstore.bundle.predicateType";
/// The config media type of an artifact pushed the pre-1.1 way (no `artifactType`).
const SBOM_CONFIG: &str = "application/vnd.example.sbom.config.v1+json";

/// docker-registry, or `None` after a SKIP line.
fn distribution(test: &str) -> Option<Registry> {
    let bin = docker_registry();
    if bin.exists() {
        return Some(start_distribution());
    }
    assert!(
        !std::env::var("LINKGUARD_REQUIRE_INTEROP").is_ok_and(|v| v == "1"),
        "{test}: {} is missing and LINKGUARD_REQUIRE_INTEROP=1 (apt-get install docker-registry)",
        bin.display()
    );
    println!("SKIP {test}: {} is not installed", bin.display());
    None
}

/// Raw distribution-API calls on `<addr>/app`, for what the client under test must not do itself.
struct Raw {
    http: reqwest::Client,
    base: String,
}

impl Raw {
    fn new(reg: &Registry) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: format!("http://{}/v2/app", reg.addr),
        }
    }

    async fn put_blob(&self, blob: &[u8]) -> Digest {
        let digest = Digest::of(blob);
        let started = self
            .http
            .post(format!("{}/blobs/uploads/", self.base))
            .send()
            .await
            .unwrap();
        assert_eq!(started.status(), 202);
        let location = started.headers()["location"].to_str().unwrap().to_owned();
        let location = if location.starts_with('/') {
            let origin = self.base.trim_end_matches("/v2/app");
            format!("{origin}{location}")
        } else {
            location
        };
        let sep = if location.contains('?') { '&' } else { '?' };
        let done = self
            .http
            .put(format!("{location}{sep}digest={}", digest.as_str()))
            .header("content-type", "application/octet-stream")
            .body(blob.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(done.status(), 201);
        digest
    }

    /// PUTs `body` as `reference` (a tag or a digest) with `media_type`; its descriptor.
    async fn put_manifest(&self, reference: &str, media_type: &str, body: Vec<u8>) -> Descriptor {
        let digest = Digest::of(&body);
        let size = body.len() as u64;
        let put = self
            .http
            .put(format!("{}/manifests/{reference}", self.base))
            .header("content-type", media_type)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(put.status(), 201, "{}", put.text().await.unwrap());
        Descriptor {
            media_type: media_type.to_owned(),
            digest: digest.to_string(),
            size,
            artifact_type: None,
            annotations: BTreeMap::new(),
        }
    }

    async fn get_index(&self, tag: &str) -> ImageIndex {
        let got = self
            .http
            .get(format!("{}/manifests/{tag}", self.base))
            .header("accept", OCI_INDEX)
            .send()
            .await
            .unwrap();
        assert_eq!(got.status(), 200);
        serde_json::from_slice(&got.bytes().await.unwrap()).unwrap()
    }

    /// Replaces the fallback index of `subject` with `entries`, as a copy that keeps only each
    /// entry's mediaType, digest, size and annotations would.
    async fn put_fallback_index(&self, subject: &Digest, entries: Vec<Descriptor>) {
        let mut index = ImageIndex::empty();
        index.manifests = entries;
        let body = serde_json::to_vec(&index).unwrap();
        assert!(!String::from_utf8_lossy(&body).contains("artifactType"));
        self.put_manifest(&subject.fallback_tag(), OCI_INDEX, body)
            .await;
    }

    /// A small image tagged `v1`; its tag reference and descriptor.
    async fn push_app_image(&self, reg: &Registry) -> (Reference, Descriptor) {
        let config =
            br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
        let layer = b"not really a tarball";
        self.put_blob(config).await;
        self.put_blob(layer).await;
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": Digest::of(config).as_str(), "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": Digest::of(layer).as_str(), "size": layer.len()}],
        });
        let body = serde_json::to_vec(&manifest).unwrap();
        let descriptor = self.put_manifest("v1", OCI_MANIFEST, body).await;
        (format!("{}/app:v1", reg.addr).parse().unwrap(), descriptor)
    }

    /// An artifact of `subject` without `artifactType` (config media type [`SBOM_CONFIG`]), PUT by
    /// digest and not added to any index; `n` makes each one distinct.
    async fn push_untyped_artifact(&self, subject: &Descriptor, n: usize) -> Descriptor {
        let config = br#"{"sbom":true}"#;
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": SBOM_CONFIG, "digest": Digest::of(config).as_str(),
                       "size": config.len()},
            "layers": [],
            "subject": subject,
            "annotations": {"n": n.to_string()},
        });
        if n == 0 {
            self.put_blob(config).await;
        }
        let body = serde_json::to_vec(&manifest).unwrap();
        let digest = Digest::of(&body);
        self.put_manifest(digest.as_str(), OCI_MANIFEST, body).await
    }
}

fn client() -> Client {
    Client::new(ClientConfig::default(), RegistryAuth::Anonymous).unwrap()
}

fn of_type(artifact_type: &str) -> ReferrerFilter {
    ReferrerFilter {
        artifact_type: Some(artifact_type.to_owned()),
        annotations: BTreeMap::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fallback_index_without_artifact_types_still_lists_the_report() {
    let test = "a_fallback_index_without_artifact_types_still_lists_the_report";
    let Some(reg) = distribution(test) else {
        return;
    };
    let raw = Raw::new(&reg);
    let c = client();
    let (app, app_manifest) = raw.push_app_image(&reg).await;
    let app_digest: Digest = app_manifest.digest.parse().unwrap();
    let annotations = BTreeMap::from([(
        PREDICATE_TYPE.to_owned(),
        "https://linkguard.dev/report/v1".to_owned(),
    )]);
    let layers = vec![Layer {
        media_type: BUNDLE.to_owned(),
        data: br#"{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json"}"#.to_vec(),
    }];
    let report = c
        .push_artifact(&app, BUNDLE, layers, annotations.clone())
        .await
        .unwrap();
    assert_eq!(report.mode, ReferrersMode::FallbackTag);
    let sbom = raw.push_untyped_artifact(&app_manifest, 0).await;

    // The copy: every entry loses artifactType (annotations kept), plus the pre-1.1 artifact.
    let mut entries = raw.get_index(&app_digest.fallback_tag()).await.manifests;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].artifact_type.as_deref(), Some(BUNDLE));
    for e in &mut entries {
        e.artifact_type = None;
    }
    entries.push(sbom.clone());
    raw.put_fallback_index(&app_digest, entries).await;

    // Filtering by type lists the report, typed from its manifest's artifactType.
    let reports = c.list_referrers(&app, &of_type(BUNDLE)).await.unwrap();
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(reports[0].digest, report.descriptor.digest);
    assert_eq!(reports[0].artifact_type.as_deref(), Some(BUNDLE));
    assert_eq!(reports[0].annotations, annotations);
    // Type and annotations together, as `reports list` asks.
    let filter = ReferrerFilter {
        artifact_type: Some(BUNDLE.to_owned()),
        annotations: annotations.clone(),
    };
    assert_eq!(c.list_referrers(&app, &filter).await.unwrap(), reports);
    // A manifest without artifactType has its config's media type.
    let sboms = c.list_referrers(&app, &of_type(SBOM_CONFIG)).await.unwrap();
    assert_eq!(sboms.len(), 1, "{sboms:?}");
    assert_eq!(sboms[0].digest, sbom.digest);
    assert_eq!(sboms[0].annotations.get("n").map(String::as_str), Some("0"));
    // Nothing matches another type; without a type filter nothing is fetched (entries as listed).
    assert!(
        c.list_referrers(&app, &of_type("application/x.other"))
            .await
            .unwrap()
            .is_empty()
    );
    let all = c
        .list_referrers(&app, &ReferrerFilter::default())
        .await
        .unwrap();
    assert_eq!(all.len(), 2);
    assert!(all.iter().all(|d| d.artifact_type.is_none()));
    // The listed report pulls as a referrer of the image.
    let pulled = c
        .pull_referrer(&app, &reports[0].digest.parse().unwrap())
        .await
        .unwrap();
    assert_eq!(pulled.manifest.artifact_type.as_deref(), Some(BUNDLE));
}

/// At most 256 manifests are fetched per listing: a hostile or huge index of untyped entries costs
/// a bounded number of requests, and the entries beyond the bound are left out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untyped_entries_are_fetched_at_most_256_times_per_listing() {
    let test = "untyped_entries_are_fetched_at_most_256_times_per_listing";
    let Some(reg) = distribution(test) else {
        return;
    };
    let raw = Raw::new(&reg);
    let c = client();
    let (app, app_manifest) = raw.push_app_image(&reg).await;
    let app_digest: Digest = app_manifest.digest.parse().unwrap();
    let mut entries = Vec::new();
    for n in 0..260 {
        entries.push(raw.push_untyped_artifact(&app_manifest, n).await);
    }
    raw.put_fallback_index(&app_digest, entries.clone()).await;
    let listed = c.list_referrers(&app, &of_type(SBOM_CONFIG)).await.unwrap();
    assert_eq!(listed.len(), 256);
    let first: Vec<&str> = entries[..256].iter().map(|d| d.digest.as_str()).collect();
    let got: Vec<&str> = listed.iter().map(|d| d.digest.as_str()).collect();
    assert_eq!(got, first);
}
