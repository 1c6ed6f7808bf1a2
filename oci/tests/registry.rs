// SPDX-License-Identifier: Apache-2.0
//! linkguard-oci against real registries: ferro-oci-server in-process (referrers API) and Debian's
//! docker-registry (CNCF distribution 2.8, no referrers API: tag-schema fallback) as a child process.
//! Every test runs on both; when docker-registry is missing it prints `SKIP` and runs on ferro only,
//! unless LINKGUARD_REQUIRE_INTEROP=1 makes that a failure.
#![expect(
    clippy::unwrap_used,
    reason = "test harness helpers: a failed setup step is a failed test"
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use linkguard_oci::{
    Client, ClientConfig, Digest, Error, Layer, OCI_EMPTY, OCI_MANIFEST, Reference, ReferrerFilter,
    ReferrersMode, RegistryAuth,
};
use reqwest::header::HeaderValue;

#[path = "support/registries.rs"]
mod registries;
use registries::{Kind, Registry, docker_registry, start_distribution, start_ferro};

const BUNDLE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
const MAP: &str = "application/vnd.stellaops.function-map.v1+json";

/// The registries every test runs against: ferro always, docker-registry when installed.
async fn registries(test: &str) -> Vec<Registry> {
    let mut all = vec![start_ferro().await];
    let bin = docker_registry();
    if bin.exists() {
        all.push(start_distribution());
    } else if std::env::var("LINKGUARD_REQUIRE_INTEROP").is_ok_and(|v| v == "1") {
        panic!(
            "{test}: {} is missing and LINKGUARD_REQUIRE_INTEROP=1 (apt-get install docker-registry)",
            bin.display()
        );
    } else {
        println!(
            "SKIP {test} on docker-registry: {} is not installed",
            bin.display()
        );
    }
    all
}

fn client(config: ClientConfig) -> Client {
    Client::new(config, RegistryAuth::Anonymous).unwrap()
}

/// Pushes a small OCI image tagged `v1` to `<addr>/app` and returns its tag reference and the digest
/// of the manifest bytes.
async fn push_app_image(reg: &Registry) -> (Reference, Digest) {
    let oci = oci_client::Client::new(oci_client::client::ClientConfig {
        protocol: oci_client::client::ClientProtocol::Http,
        ..Default::default()
    });
    let r = oci_client::Reference::with_tag(reg.addr.clone(), "app".into(), "v1".into());
    oci.store_auth_if_needed(&reg.addr, &RegistryAuth::Anonymous)
        .await;
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let layer = b"not really a tarball";
    for blob in [&config[..], &layer[..]] {
        oci.push_blob(&r, blob.to_vec(), Digest::of(blob).as_str())
            .await
            .unwrap();
    }
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": Digest::of(config).as_str(), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": Digest::of(layer).as_str(), "size": layer.len()}],
    });
    let body = serde_json::to_vec(&manifest).unwrap();
    let digest = Digest::of(&body);
    oci.push_manifest_raw(&r, body, HeaderValue::from_static(OCI_MANIFEST))
        .await
        .unwrap();
    (format!("{}/app:v1", reg.addr).parse().unwrap(), digest)
}

fn report(i: usize) -> (Vec<Layer>, BTreeMap<String, String>) {
    let bundle = serde_json::json!({"mediaType": BUNDLE, "replica": i, "verdict": "pass"});
    let layers = vec![Layer {
        media_type: BUNDLE.to_owned(),
        data: serde_json::to_vec(&bundle).unwrap(),
    }];
    let annotations = BTreeMap::from([
        (
            "dev.sigstore.bundle.predicateType".to_owned(),
            "https://linkguard.dev/report/v1".to_owned(),
        ),
        (
            "org.opencontainers.image.created".to_owned(),
            format!("2026-11-22T04:{:02}:00Z", i % 60),
        ),
    ]);
    (layers, annotations)
}

async fn tags(reg: &Registry) -> Vec<String> {
    let url = format!("http://{}/v2/app/tags/list", reg.addr);
    let body: serde_json::Value =
        serde_json::from_slice(&reqwest::get(&url).await.unwrap().bytes().await.unwrap()).unwrap();
    body["tags"]
        .as_array()
        .map(|t| {
            t.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Files under `root` whose content is exactly `content`.
fn files_with(root: &Path, content: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if std::fs::read(&path).is_ok_and(|c| c == content) {
                found.push(path);
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_list_filter_pull_round_trip() {
    for reg in registries("push_list_filter_pull_round_trip").await {
        let c = client(ClientConfig::default());
        let (app, app_digest) = push_app_image(&reg).await;
        assert_eq!(c.resolve(&app).await.unwrap(), app_digest, "{:?}", reg.kind);
        let by_digest = app.at_digest(app_digest.clone());
        assert_eq!(c.resolve(&by_digest).await.unwrap(), app_digest);

        let (layers, annotations) = report(1);
        let pushed = c
            .push_artifact(&app, BUNDLE, layers.clone(), annotations.clone())
            .await
            .unwrap();
        assert_eq!(pushed.subject, app_digest);
        let expected_mode = if reg.kind == Kind::Ferro {
            ReferrersMode::Api
        } else {
            ReferrersMode::FallbackTag
        };
        assert_eq!(pushed.mode, expected_mode, "{:?}", reg.kind);
        // Pushing the same bytes again must not list the artifact twice (ferro stores a re-PUT twice).
        let again = c
            .push_artifact(&app, BUNDLE, layers.clone(), annotations.clone())
            .await
            .unwrap();
        assert_eq!(again.descriptor.digest, pushed.descriptor.digest);
        let map_layers = vec![Layer {
            media_type: MAP.to_owned(),
            data: b"{\"_type\":\"map\"}".to_vec(),
        }];
        let map = c
            .push_artifact(&by_digest, MAP, map_layers, BTreeMap::new())
            .await
            .unwrap();

        let all = c
            .list_referrers(&app, &ReferrerFilter::default())
            .await
            .unwrap();
        let mut digests: Vec<_> = all.iter().map(|d| d.digest.clone()).collect();
        digests.sort();
        let mut expected = vec![
            pushed.descriptor.digest.clone(),
            map.descriptor.digest.clone(),
        ];
        expected.sort();
        assert_eq!(digests, expected, "{:?}", reg.kind);

        let only_reports = ReferrerFilter {
            artifact_type: Some(BUNDLE.to_owned()),
            annotations: BTreeMap::new(),
        };
        let reports = c.list_referrers(&by_digest, &only_reports).await.unwrap();
        assert_eq!(reports.len(), 1, "{:?}", reg.kind);
        assert_eq!(reports[0].digest, pushed.descriptor.digest);
        assert_eq!(reports[0].artifact_type.as_deref(), Some(BUNDLE));
        assert_eq!(reports[0].annotations, annotations);
        let by_annotation = ReferrerFilter {
            artifact_type: None,
            annotations: annotations.clone(),
        };
        assert_eq!(
            c.list_referrers(&app, &by_annotation).await.unwrap().len(),
            1
        );
        let other_day = BTreeMap::from([(
            "org.opencontainers.image.created".to_owned(),
            "1999-01-01T00:00:00Z".to_owned(),
        )]);
        let none = ReferrerFilter {
            artifact_type: None,
            annotations: other_day,
        };
        assert!(c.list_referrers(&app, &none).await.unwrap().is_empty());

        let digest: Digest = pushed.descriptor.digest.parse().unwrap();
        let artifact = c.pull_referrer(&app, &digest).await.unwrap();
        assert_eq!(artifact.layers.len(), 1);
        assert_eq!(artifact.layers[0].1, layers[0].data, "{:?}", reg.kind);
        assert_eq!(artifact.manifest.media_type.as_deref(), Some(OCI_MANIFEST));
        assert_eq!(artifact.manifest.artifact_type.as_deref(), Some(BUNDLE));
        assert_eq!(artifact.manifest.config.media_type, OCI_EMPTY);
        assert_eq!(
            artifact
                .manifest
                .subject
                .as_ref()
                .map(|s| s.digest.as_str()),
            Some(app_digest.as_str())
        );
        assert_eq!(artifact.manifest.annotations, annotations);

        // The artifact is untagged: only the app's tag, and on distribution the fallback tag.
        let mut tags = tags(&reg).await;
        tags.sort();
        let fallback = app_digest.fallback_tag();
        match reg.kind {
            Kind::Ferro => assert_eq!(tags, vec!["v1".to_owned()]),
            Kind::Distribution => assert_eq!(tags, vec![fallback, "v1".to_owned()]),
        }

        // A referrer of another subject is refused when pulled as a referrer of this one.
        let (other_layers, _) = report(2);
        let map_digest: Digest = map.descriptor.digest.parse().unwrap();
        let not_ours = c
            .push_artifact(
                &app.at_digest(map_digest.clone()),
                BUNDLE,
                other_layers,
                BTreeMap::new(),
            )
            .await
            .unwrap();
        let wrong = c
            .pull_referrer(&app, &not_ours.descriptor.digest.parse().unwrap())
            .await;
        assert!(
            matches!(wrong, Err(Error::InvalidManifest { .. })),
            "{:?}: {wrong:?}",
            reg.kind
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_concurrent_pushes_are_all_listed() {
    for reg in registries("ten_concurrent_pushes_are_all_listed").await {
        let (app, app_digest) = push_app_image(&reg).await;
        // Ten replicas, each with its own client, push a report for the same image at once.
        let tasks: Vec<_> = (0..10)
            .map(|i| {
                let app = app.clone();
                tokio::spawn(async move {
                    let c = client(ClientConfig::default());
                    let (layers, annotations) = report(i);
                    c.push_artifact(&app, BUNDLE, layers, annotations).await
                })
            })
            .collect();
        let mut pushed = Vec::new();
        for t in tasks {
            pushed.push(t.await.unwrap().unwrap().descriptor.digest);
        }
        pushed.sort();
        pushed.dedup();
        assert_eq!(pushed.len(), 10);
        let c = client(ClientConfig::default());
        let mut listed: Vec<_> = c
            .list_referrers(&app.at_digest(app_digest), &ReferrerFilter::default())
            .await
            .unwrap()
            .into_iter()
            .map(|d| d.digest)
            .collect();
        listed.sort();
        assert_eq!(
            listed, pushed,
            "{:?}: every replica's report must be listed",
            reg.kind
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_replies_are_refused() {
    for reg in registries("hostile_replies_are_refused").await {
        let c = client(ClientConfig::default());
        let (app, _) = push_app_image(&reg).await;
        let secret = b"{\"verdict\":\"pass\",\"padding\":\"0123456789abcdef\"}".to_vec();
        let layers = vec![Layer {
            media_type: BUNDLE.to_owned(),
            data: secret.clone(),
        }];
        let long = BTreeMap::from([("note".to_owned(), "x".repeat(600))]);
        let pushed = c.push_artifact(&app, BUNDLE, layers, long).await.unwrap();
        let digest: Digest = pushed.descriptor.digest.parse().unwrap();
        assert_eq!(
            c.pull_artifact(&app, &digest).await.unwrap().layers[0].1,
            secret
        );

        // A manifest over the limit is refused before it is parsed.
        let small = client(ClientConfig {
            max_manifest_bytes: 512,
            ..ClientConfig::default()
        });
        let err = small.pull_artifact(&app, &digest).await.unwrap_err();
        assert!(
            matches!(err, Error::TooLarge { limit: 512, .. }),
            "{:?}: {err}",
            reg.kind
        );
        // So is a layer over the layer limit.
        let tiny = client(ClientConfig {
            max_layer_bytes: 16,
            ..ClientConfig::default()
        });
        let err = tiny.pull_artifact(&app, &digest).await.unwrap_err();
        assert!(
            matches!(err, Error::TooLarge { limit: 16, .. }),
            "{:?}: {err}",
            reg.kind
        );

        // The registry's storage now serves other bytes for the layer's digest.
        let files = files_with(reg.storage.path(), &secret);
        assert_eq!(
            files.len(),
            1,
            "{:?}: the layer blob is one file in storage",
            reg.kind
        );
        let mut forged = secret.clone();
        forged[12..16].copy_from_slice(b"FAIL");
        std::fs::write(&files[0], &forged).unwrap();
        let err = c.pull_artifact(&app, &digest).await.unwrap_err();
        assert!(
            matches!(err, Error::DigestMismatch { .. }),
            "{:?}: {err}",
            reg.kind
        );
        assert!(
            err.to_string().contains(&reg.addr),
            "the error names the registry: {err}"
        );

        // A blob longer than its descriptor declares is cut off at the declared size.
        std::fs::write(&files[0], [secret.as_slice(), b"and then some"].concat()).unwrap();
        let err = c.pull_artifact(&app, &digest).await.unwrap_err();
        assert!(
            matches!(err, Error::TooLarge { .. } | Error::DigestMismatch { .. }),
            "{:?}: {err}",
            reg.kind
        );
    }
}
