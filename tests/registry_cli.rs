// SPDX-License-Identifier: Apache-2.0
//! `linkguard map push|pull` and `linkguard reports list|pull` through the binary, against
//! ferro-oci-server in-process (referrers API) and, when installed, Debian's docker-registry
//! (distribution 2.8, no referrers API: tag-schema fallback) as a child process.
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test harness: a failed setup step is a failed test"
)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use linkguard_integration_tests::{fixture, interop_required, linkguard};
use linkguard_oci::{Client, ClientConfig, Digest, Layer, OCI_MANIFEST, Reference, RegistryAuth};
use reqwest::header::HeaderValue;

#[path = "../oci/tests/support/registries.rs"]
mod registries;
use registries::{docker_registry, start_distribution, start_ferro};

const BUNDLE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
const MAP: &str = "application/vnd.stellaops.function-map.v1+json";
/// The digest the curl-tls fixture map is bound to.
const FIXTURE_HEX: &str = "4d6f6a1fbbd5cd3ba8e6b7ea5f4bb5a4b1a0a1e3e2f6c3d1b0a9f8e7d6c5b4a3";

/// Pushes a small OCI image tagged `v1` to `<addr>/<repo>`; returns `addr/repo:v1` and its digest.
async fn push_image(addr: &str, repo: &str, flavour: &str) -> (String, Digest) {
    let oci = oci_client::Client::new(oci_client::client::ClientConfig {
        protocol: oci_client::client::ClientProtocol::Http,
        ..Default::default()
    });
    let r = oci_client::Reference::with_tag(addr.to_owned(), repo.to_owned(), "v1".into());
    oci.store_auth_if_needed(addr, &RegistryAuth::Anonymous)
        .await;
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let layer = format!("not really a tarball: {flavour}").into_bytes();
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
                    "digest": Digest::of(&layer).as_str(), "size": layer.len()}],
    });
    let body = serde_json::to_vec(&manifest).unwrap();
    let digest = Digest::of(&body);
    oci.push_manifest_raw(&r, body, HeaderValue::from_static(OCI_MANIFEST))
        .await
        .unwrap();
    (format!("{addr}/{repo}:v1"), digest)
}

/// Pushes a report bundle referrer through the library.
async fn push_report(image: &str, i: usize) -> String {
    let bundle = serde_json::json!({"mediaType": BUNDLE, "replica": i});
    push_bundle(image, serde_json::to_vec(&bundle).unwrap(), i).await
}

/// Pushes `bundle` as a report referrer of `image`, created at minute `i`.
async fn push_bundle(image: &str, bundle: Vec<u8>, i: usize) -> String {
    let client = Client::new(ClientConfig::default(), RegistryAuth::Anonymous).unwrap();
    let layers = vec![Layer {
        media_type: BUNDLE.to_owned(),
        data: bundle,
    }];
    let annotations = BTreeMap::from([
        (
            "dev.sigstore.bundle.predicateType".to_owned(),
            "https://linkguard.dev/attestations/verification-report/v1".to_owned(),
        ),
        (
            "org.opencontainers.image.created".to_owned(),
            format!("2026-11-22T04:{:02}:00Z", i),
        ),
    ]);
    let subject: Reference = image.parse().unwrap();
    client
        .push_artifact(&subject, BUNDLE, layers, annotations)
        .await
        .unwrap()
        .descriptor
        .digest
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[track_caller]
fn ok(args: &[&str]) -> Output {
    let out = linkguard(args);
    assert!(
        out.status.success(),
        "linkguard {args:?} failed: {}\n{}",
        stderr(&out),
        stdout(&out)
    );
    out
}

#[track_caller]
fn refused(args: &[&str], needle: &str) -> Output {
    let out = linkguard(args);
    assert_eq!(
        out.status.code(),
        Some(1),
        "linkguard {args:?} should be refused with exit 1: {}\n{}",
        stderr(&out),
        stdout(&out)
    );
    assert!(
        stderr(&out).contains(needle),
        "linkguard {args:?}: {needle:?} not in stderr: {}",
        stderr(&out)
    );
    out
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The whole map push/pull and reports flow against the registry at `addr`.
fn scenario(rt: &tokio::runtime::Runtime, addr: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (image, digest) = rt.block_on(push_image(addr, "app", "app"));
    let (other, _) = rt.block_on(push_image(addr, "other", "other"));

    // A map bound to the image, one bound to another digest, an unbound one.
    let fixture_map = std::fs::read_to_string(fixture("maps/curl-tls.json")).unwrap();
    let bound = dir.path().join("bound.json");
    std::fs::write(&bound, fixture_map.replace(FIXTURE_HEX, digest.hex())).unwrap();
    let foreign = fixture("maps/curl-tls.json");
    let unbound = fixture("maps/unbound.json");

    let key = dir.path().join("k.pem");
    let pubkey = dir.path().join("k.pub");
    let wrong_key = dir.path().join("w.pem");
    let wrong_pub = dir.path().join("w.pub");
    ok(&[
        "attest",
        "keygen",
        "--output-key",
        s(&key),
        "--output-pub",
        s(&pubkey),
    ]);
    ok(&[
        "attest",
        "keygen",
        "--output-key",
        s(&wrong_key),
        "--output-pub",
        s(&wrong_pub),
    ]);

    // No map yet: refused.
    refused(&["map", "pull", "--image", &image], "has no function map");

    // Push refuses a map for another digest and an unbound map (naming the digest to bind).
    refused(
        &["map", "push", "--image", &image, s(&foreign)],
        &format!("but {image} is {digest}"),
    );
    refused(
        &["map", "push", "--image", &image, s(&unbound)],
        &format!("regenerate with --subject {addr}/app@{digest}"),
    );
    refused(
        &["map", "push", "--image", &other, s(&bound)],
        "describes sha256:",
    );

    // Unsigned push; pull without --key gets the same bytes, with --key it is refused.
    let out = ok(&["map", "push", "--image", &image, s(&bound)]);
    let pushed: Digest = stdout(&out).trim().parse().unwrap();
    let pulled = dir.path().join("pulled.json");
    ok(&["map", "pull", "--image", &image, "--output", s(&pulled)]);
    assert_eq!(
        std::fs::read(&pulled).unwrap(),
        std::fs::read(&bound).unwrap()
    );
    let out = ok(&["map", "pull", "--image", &image]);
    assert_eq!(out.stdout, std::fs::read(&bound).unwrap());
    refused(
        &["map", "pull", "--image", &image, "--key", s(&pubkey)],
        "is not signed",
    );

    // The map artifact: artifactType, one plain layer, created annotation.
    let client = Client::new(ClientConfig::default(), RegistryAuth::Anonymous).unwrap();
    let subject: Reference = format!("{addr}/app@{digest}").parse().unwrap();
    let artifact = rt
        .block_on(client.pull_referrer(&subject, &pushed))
        .unwrap();
    assert_eq!(artifact.manifest.artifact_type.as_deref(), Some(MAP));
    assert_eq!(artifact.layers.len(), 1);
    assert_eq!(artifact.layers[0].0.media_type, MAP);
    assert!(
        artifact
            .manifest
            .annotations
            .contains_key("org.opencontainers.image.created")
    );

    // Signed push (a DSSE envelope layer); the newest map wins.
    std::thread::sleep(Duration::from_millis(20));
    let out = ok(&[
        "map",
        "push",
        "--image",
        &image,
        s(&bound),
        "--key",
        s(&key),
    ]);
    let signed: Digest = stdout(&out).trim().parse().unwrap();
    assert_ne!(signed, pushed);
    let artifact = rt
        .block_on(client.pull_referrer(&subject, &signed))
        .unwrap();
    assert_eq!(artifact.manifest.artifact_type.as_deref(), Some(MAP));
    assert_eq!(
        artifact.layers[0].0.media_type,
        "application/vnd.dsse.envelope.v1+json"
    );
    let envelope: serde_json::Value = serde_json::from_slice(&artifact.layers[0].1).unwrap();
    assert_eq!(envelope["payloadType"], MAP);

    let verified = dir.path().join("verified.json");
    let out = ok(&[
        "map",
        "pull",
        "--image",
        &image,
        "--key",
        s(&pubkey),
        "--output",
        s(&verified),
    ]);
    assert!(
        stderr(&out).contains("signature verified"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read(&verified).unwrap(),
        std::fs::read(&bound).unwrap()
    );
    // Without --key a signed map is accepted with a warning.
    let out = ok(&["map", "pull", "--image", &image]);
    assert_eq!(out.stdout, std::fs::read(&bound).unwrap());
    assert!(stderr(&out).contains("not checked"), "{}", stderr(&out));
    refused(
        &["map", "pull", "--image", &image, "--key", s(&wrong_pub)],
        "signature does not verify",
    );
    // By digest reference too.
    ok(&[
        "map",
        "pull",
        "--image",
        &format!("{addr}/app@{digest}"),
        "--key",
        s(&pubkey),
    ]);

    // Reports: none, then three pushed through the library, listed newest first.
    let out = ok(&["reports", "list", "--image", &image, "--format", "json"]);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap(),
        serde_json::json!([])
    );
    refused(
        &[
            "reports",
            "pull",
            "--image",
            &image,
            "--latest",
            "--output",
            s(&dir.path().join("none")),
        ],
        "has no reports",
    );
    let r1 = rt.block_on(push_report(&image, 1));
    let r3 = rt.block_on(push_report(&image, 3));
    let r2 = rt.block_on(push_report(&image, 2));
    let out = ok(&["reports", "list", "--image", &image, "--format", "json"]);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let digests: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["digest"].as_str().unwrap())
        .collect();
    assert_eq!(digests, [r3.as_str(), r2.as_str(), r1.as_str()], "{list}");
    assert_eq!(list[0]["created"], "2026-11-22T04:03:00Z");
    assert_eq!(
        list[0]["predicateType"],
        "https://linkguard.dev/attestations/verification-report/v1"
    );
    let out = ok(&["reports", "list", "--image", &image]);
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].starts_with(&r3), "{text}");

    let latest = dir.path().join("latest.json");
    ok(&[
        "reports",
        "pull",
        "--image",
        &image,
        "--latest",
        "--output",
        s(&latest),
    ]);
    let bundle: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&latest).unwrap()).unwrap();
    assert_eq!(bundle["replica"], 3);
    let first = dir.path().join("first.json");
    ok(&[
        "reports",
        "pull",
        "--image",
        &image,
        "--digest",
        &r1,
        "--output",
        s(&first),
    ]);
    let bundle: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&first).unwrap()).unwrap();
    assert_eq!(bundle["replica"], 1);
    // A map digest is not a report.
    let out = linkguard(&[
        "reports",
        "pull",
        "--image",
        &image,
        "--digest",
        signed.as_str(),
        "--output",
        s(&dir.path().join("map-as-report")),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("is not a report"), "{}", stderr(&out));
    // --latest or --digest is required.
    let out = linkguard(&["reports", "pull", "--image", &image, "--output", s(&first)]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    // reports verify: a report signed by the key and about this image's digest passes; a wrong key, or a
    // correctly signed report about another digest, is refused.
    let sign = |about_hex: &str, name: &str| {
        let statement = dir.path().join(format!("{name}.json"));
        let statement_json = serde_json::json!({
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{"name": "app", "digest": {"sha256": about_hex}}],
            "predicateType": "https://linkguard.dev/attestations/verification-report/v1",
            "predicate": {"verdict": "pass"}
        });
        std::fs::write(&statement, serde_json::to_vec(&statement_json).unwrap()).unwrap();
        let bundle = dir.path().join(format!("{name}.bundle.json"));
        ok(&[
            "attest",
            "sign",
            "--input",
            s(&statement),
            "--key",
            s(&key),
            "--output",
            s(&bundle),
        ]);
        std::fs::read(&bundle).unwrap()
    };
    let good = rt.block_on(push_bundle(&image, sign(digest.hex(), "good"), 10));
    let out = ok(&["reports", "verify", "--image", &image, "--key", s(&pubkey)]);
    assert!(
        stdout(&out).contains(&format!("OK: report {good}")),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains("verdict:       pass"),
        "{}",
        stdout(&out)
    );
    refused(
        &[
            "reports",
            "verify",
            "--image",
            &image,
            "--key",
            s(&wrong_pub),
        ],
        "report",
    );
    let elsewhere = rt.block_on(push_bundle(&image, sign(&"ab".repeat(32), "elsewhere"), 11));
    refused(
        &["reports", "verify", "--image", &image, "--key", s(&pubkey)],
        "is about",
    );
    ok(&[
        "reports",
        "verify",
        "--image",
        &image,
        "--key",
        s(&pubkey),
        "--digest",
        &good,
    ]);
    refused(
        &[
            "reports",
            "verify",
            "--image",
            &image,
            "--key",
            s(&pubkey),
            "--digest",
            &elsewhere,
        ],
        "is about",
    );
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn map_and_reports_on_ferro() {
    let rt = runtime();
    let registry = rt.block_on(start_ferro());
    scenario(&rt, &registry.addr);
    drop(registry);
}

#[test]
fn map_and_reports_on_docker_registry() {
    let bin = docker_registry();
    if !bin.exists() {
        assert!(
            !interop_required(),
            "{} is missing and LINKGUARD_REQUIRE_INTEROP=1 (apt-get install docker-registry)",
            bin.display()
        );
        println!(
            "SKIP on docker-registry: {} is not installed",
            bin.display()
        );
        return;
    }
    let rt = runtime();
    let registry = start_distribution();
    scenario(&rt, &registry.addr);
    drop(registry);
}
