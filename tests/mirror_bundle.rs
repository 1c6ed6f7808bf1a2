// SPDX-License-Identifier: Apache-2.0
//! `linkguard mirror`, `linkguard bundle export|import` and `linkguard reports verify --bundle` through the
//! binary, between ferro-oci-server in-process (referrers API) and Debian's docker-registry (distribution
//! 2.8, no referrers API: tag-schema fallback) as a child process, in both directions.
//!
//! The source holds a two-platform image index, a signed function map, two signed reports and a referrer
//! of a report. After each round trip every digest is the same and `reports list` / `reports verify` /
//! `map pull` agree on both sides; the bundle verifies offline, and is refused when a report blob is
//! altered or the key is wrong.
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test harness: a failed setup step is a failed test"
)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;

use linkguard_integration_tests::{fixture, interop_required, linkguard};
use linkguard_oci::{
    Client, ClientConfig, Digest, Layer, OCI_INDEX, OCI_MANIFEST, Reference, RegistryAuth,
};
use reqwest::header::HeaderValue;

#[path = "../oci/tests/support/registries.rs"]
mod registries;
use registries::{Registry, docker_registry, start_distribution, start_ferro};

const BUNDLE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
const SIGNATURE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
const PREDICATE: &str = "https://linkguard.dev/attestations/verification-report/v1";
/// The digest the curl-tls fixture map is bound to.
const FIXTURE_HEX: &str = "4d6f6a1fbbd5cd3ba8e6b7ea5f4bb5a4b1a0a1e3e2f6c3d1b0a9f8e7d6c5b4a3";

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
fn fails(args: &[&str], code: i32, needle: &str) -> Output {
    let out = linkguard(args);
    assert_eq!(
        out.status.code(),
        Some(code),
        "linkguard {args:?} should exit {code}: {}\n{}",
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

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", stdout(out)))
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A two-platform OCI image index tagged `v1` in `<addr>/<repo>`; returns `addr/repo:v1` and its digest.
async fn push_index(addr: &str, repo: &str) -> (String, Digest) {
    let oci = oci_client::Client::new(oci_client::client::ClientConfig {
        protocol: oci_client::client::ClientProtocol::Http,
        ..Default::default()
    });
    let r = oci_client::Reference::with_tag(addr.to_owned(), repo.to_owned(), "v1".into());
    oci.store_auth_if_needed(addr, &RegistryAuth::Anonymous)
        .await;
    let mut entries = Vec::new();
    for arch in ["amd64", "arm64"] {
        let config = format!(
            r#"{{"architecture":"{arch}","os":"linux","rootfs":{{"type":"layers","diff_ids":[]}}}}"#
        )
        .into_bytes();
        let layer = format!("{arch} layer, not really a tarball").into_bytes();
        for blob in [&config, &layer] {
            oci.push_blob(&r, blob.clone(), Digest::of(blob).as_str())
                .await
                .unwrap();
        }
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": Digest::of(&config).as_str(), "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": Digest::of(&layer).as_str(), "size": layer.len()}],
        });
        let body = serde_json::to_vec(&manifest).unwrap();
        let digest = Digest::of(&body);
        let by_digest = oci_client::Reference::with_digest(
            addr.to_owned(),
            repo.to_owned(),
            digest.to_string(),
        );
        oci.push_manifest_raw(
            &by_digest,
            body.clone(),
            HeaderValue::from_static(OCI_MANIFEST),
        )
        .await
        .unwrap();
        entries.push(serde_json::json!({
            "mediaType": OCI_MANIFEST, "digest": digest.as_str(), "size": body.len(),
            "platform": {"architecture": arch, "os": "linux"},
        }));
    }
    let index =
        serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries});
    let body = serde_json::to_vec_pretty(&index).unwrap();
    let digest = Digest::of(&body);
    oci.push_manifest_raw(&r, body, HeaderValue::from_static(OCI_INDEX))
        .await
        .unwrap();
    (format!("{addr}/{repo}:v1"), digest)
}

/// Pushes `data` as a referrer of `subject` (an image reference at a digest), created at minute `i`.
async fn attach(subject: &str, artifact_type: &str, data: Vec<u8>, i: usize) -> String {
    let client = Client::new(ClientConfig::default(), RegistryAuth::Anonymous).unwrap();
    let mut annotations = BTreeMap::from([(
        "org.opencontainers.image.created".to_owned(),
        format!("2026-11-22T04:{i:02}:00Z"),
    )]);
    if artifact_type == BUNDLE {
        annotations.insert(
            "dev.sigstore.bundle.predicateType".to_owned(),
            PREDICATE.to_owned(),
        );
    }
    let layers = vec![Layer {
        media_type: artifact_type.to_owned(),
        data,
    }];
    let subject: Reference = subject.parse().unwrap();
    client
        .push_artifact(&subject, artifact_type, layers, annotations)
        .await
        .unwrap()
        .descriptor
        .digest
}

/// What the source holds.
struct Source {
    image: String,
    index: Digest,
    reports: Vec<String>,
    /// Each report's bundle bytes, in `reports` order.
    bundles: Vec<Vec<u8>>,
    map_file: std::path::PathBuf,
}

/// The image, a signed map, two signed reports (newest last) and a signature of the first report.
fn populate(rt: &tokio::runtime::Runtime, addr: &str, dir: &Path) -> Source {
    let (image, index) = rt.block_on(push_index(addr, "app"));
    let key = fixture("keys/pkcs8.key");
    let map = std::fs::read_to_string(fixture("maps/curl-tls.json")).unwrap();
    let map_file = dir.join("map.json");
    std::fs::write(&map_file, map.replace(FIXTURE_HEX, index.hex())).unwrap();
    ok(&[
        "map",
        "push",
        "--image",
        &image,
        s(&map_file),
        "--key",
        s(&key),
    ]);
    let mut reports = Vec::new();
    let mut bundles = Vec::new();
    for (i, verdict) in [(1, "fail"), (2, "pass")] {
        let statement = dir.join(format!("statement-{i}.json"));
        let statement_json = serde_json::json!({
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{"name": "app", "digest": {"sha256": index.hex()}}],
            "predicateType": PREDICATE,
            "predicate": {"verdict": verdict, "report": i}
        });
        std::fs::write(&statement, serde_json::to_vec(&statement_json).unwrap()).unwrap();
        let bundle = dir.join(format!("report-{i}.bundle.json"));
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
        let bytes = std::fs::read(&bundle).unwrap();
        let subject = format!("{addr}/app@{index}");
        reports.push(rt.block_on(attach(&subject, BUNDLE, bytes.clone(), 10 + i)));
        bundles.push(bytes);
    }
    let signed = format!("{addr}/app@{}", reports[0]);
    rt.block_on(attach(
        &signed,
        SIGNATURE,
        b"a signature of report 1".to_vec(),
        20,
    ));
    Source {
        image,
        index,
        reports,
        bundles,
        map_file,
    }
}

/// `reports list --format json` of `image`.
fn list(image: &str) -> serde_json::Value {
    json(&ok(&[
        "reports", "list", "--image", image, "--format", "json",
    ]))
}

/// The target agrees with the source: same index digest, same reports list, the newest report verifies,
/// the signed map pulls with the same bytes.
fn assert_agrees(src: &Source, target: &str, dir: &Path) {
    let pubkey = fixture("keys/pkcs8.pub");
    assert_eq!(list(target), list(&src.image), "reports list differs");
    let listed: Vec<String> = list(target)
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["digest"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed, [src.reports[1].clone(), src.reports[0].clone()]);
    let verified = ok(&["reports", "verify", "--image", target, "--key", s(&pubkey)]);
    assert!(
        stdout(&verified).contains(&format!("OK: report {}", src.reports[1])),
        "{}",
        stdout(&verified)
    );
    assert!(stdout(&verified).contains(src.index.as_str()));
    let pulled = dir.join("pulled-map.json");
    ok(&[
        "map",
        "pull",
        "--image",
        target,
        "--key",
        s(&pubkey),
        "--output",
        s(&pulled),
    ]);
    assert_eq!(
        std::fs::read(&pulled).unwrap(),
        std::fs::read(&src.map_file).unwrap()
    );
    let out = ok(&[
        "reports",
        "pull",
        "--image",
        target,
        "--digest",
        &src.reports[0],
        "--output",
        s(&dir.join("r0")),
    ]);
    drop(out);
    assert_eq!(std::fs::read(dir.join("r0")).unwrap(), src.bundles[0]);
}

/// Mirrors `source` to `target` and back-checks; exports a bundle from `source`, imports it into `target`,
/// verifies it offline, and checks that an altered bundle or a wrong key is refused.
fn round_trip(rt: &tokio::runtime::Runtime, source: &Registry, target: &Registry, gzip: bool) {
    let dir = tempfile::tempdir().unwrap();
    let src = populate(rt, &source.addr, dir.path());

    // mirror, twice: the second run copies nothing.
    let to = format!("{}/mirrored/app:v1", target.addr);
    let out = ok(&[
        "mirror", "--from", &src.image, "--to", &to, "--format", "json",
    ]);
    let summary = json(&out);
    assert_eq!(summary["image"]["digest"], src.index.as_str(), "{summary}");
    // index, 2 platform manifests, map, 2 reports, the report's signature.
    assert_eq!(summary["manifests"]["copied"], 7, "{summary}");
    assert_eq!(
        summary["referrers"].as_array().unwrap().len(),
        4,
        "{summary}"
    );
    assert_eq!(summary["referrersCopied"], 4, "{summary}");
    assert!(summary["bytesCopied"].as_u64().unwrap() > 0);
    let signature = summary["referrers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["artifactType"] == SIGNATURE)
        .unwrap();
    assert_eq!(signature["subject"], src.reports[0].as_str());
    let again = json(&ok(&[
        "mirror", "--from", &src.image, "--to", &to, "--format", "json",
    ]));
    assert_eq!(again["manifests"]["copied"], 0, "{again}");
    assert_eq!(again["blobs"]["copied"], 0, "{again}");
    assert_eq!(again["referrersCopied"], 0, "{again}");
    assert_eq!(again["bytesCopied"], 0, "{again}");
    let text = stdout(&ok(&["mirror", "--from", &src.image, "--to", &to]));
    assert!(
        text.contains("manifests  0 copied, 7 already there"),
        "{text}"
    );
    assert_agrees(&src, &to, dir.path());

    // bundle export from the source, import into the target.
    let tar = dir.path().join(if gzip { "app.tar.gz" } else { "app.tar" });
    let mut export = vec![
        "bundle",
        "export",
        "--image",
        &src.image,
        "--output",
        s(&tar),
    ];
    if gzip {
        export.push("--gzip");
    }
    ok(&export);
    let bytes = std::fs::read(&tar).unwrap();
    assert_eq!(bytes.starts_with(&[0x1f, 0x8b]), gzip);
    fails(&export, 2, "already exists");
    let imported = format!("{}/imported/app:v1", target.addr);
    let out = json(&ok(&[
        "bundle",
        "import",
        "--input",
        s(&tar),
        "--to",
        &imported,
        "--format",
        "json",
    ]));
    assert_eq!(out["image"]["digest"], src.index.as_str(), "{out}");
    assert_eq!(out["referrers"].as_array().unwrap().len(), 4, "{out}");
    assert_agrees(&src, &imported, dir.path());

    // Offline: the newest report verifies, so does the older one by digest; a wrong key is refused.
    let pubkey = fixture("keys/pkcs8.pub");
    let out = ok(&[
        "reports",
        "verify",
        "--bundle",
        s(&tar),
        "--key",
        s(&pubkey),
    ]);
    let text = stdout(&out);
    assert!(
        text.contains(&format!("OK: report {}", src.reports[1])),
        "{text}"
    );
    assert!(
        text.contains(&src.image) && text.contains(src.index.as_str()),
        "{text}"
    );
    assert!(text.contains("verdict:       pass"), "{text}");
    let out = ok(&[
        "reports",
        "verify",
        "--bundle",
        s(&tar),
        "--key",
        s(&pubkey),
        "--digest",
        &src.reports[0],
    ]);
    assert!(
        stdout(&out).contains("verdict:       fail"),
        "{}",
        stdout(&out)
    );
    fails(
        &[
            "reports",
            "verify",
            "--bundle",
            s(&tar),
            "--key",
            s(&fixture("keys/sec1.pub")),
        ],
        1,
        &format!("report {}", src.reports[1]),
    );
    let map_digest = list_map_digest(rt, &src.image);
    fails(
        &[
            "reports",
            "verify",
            "--bundle",
            s(&tar),
            "--key",
            s(&pubkey),
            "--digest",
            &map_digest,
        ],
        1,
        "is not a report",
    );
    // Unpinned, it still verifies, but warns that the image is only what the bundle names.
    assert!(
        stderr(&out_unpinned(&tar, &pubkey)).contains("warning: the image was not pinned"),
        "no warning without --image"
    );
    // Pinned with --image: the right digest (or the exact ref.name) passes, without the warning.
    let pinned_ref = format!("{}/app@{}", source.addr, src.index);
    for image in [pinned_ref.as_str(), src.image.as_str()] {
        let out = ok(&[
            "reports",
            "verify",
            "--bundle",
            s(&tar),
            "--image",
            image,
            "--key",
            s(&pubkey),
        ]);
        assert!(
            stdout(&out).contains(&format!("OK: report {}", src.reports[1])),
            "{}",
            stdout(&out)
        );
        assert!(!stderr(&out).contains("not pinned"), "{}", stderr(&out));
    }
    // Another image's digest, or another name, is refused (exit 1) naming both.
    let other = Digest::of(b"another image");
    let other_ref = format!("{}/app@{other}", source.addr);
    fails(
        &[
            "reports",
            "verify",
            "--bundle",
            s(&tar),
            "--image",
            &other_ref,
            "--key",
            s(&pubkey),
        ],
        1,
        &format!(
            "pins {other}, but the bundle {} is of {}",
            s(&tar),
            src.image
        ),
    );
    let other_name = format!("{}/other:v1", source.addr);
    fails(
        &[
            "reports",
            "verify",
            "--bundle",
            s(&tar),
            "--image",
            &other_name,
            "--key",
            s(&pubkey),
        ],
        1,
        &format!("--image {other_name}, but the bundle"),
    );
}

/// `reports verify --bundle TAR --key PUB`, without --image; must succeed.
fn out_unpinned(tar: &Path, pubkey: &Path) -> Output {
    ok(&["reports", "verify", "--bundle", s(tar), "--key", s(pubkey)])
}

/// The digest of the map referrer, through the library (the CLI prints maps, not their digests).
fn list_map_digest(rt: &tokio::runtime::Runtime, image: &str) -> String {
    rt.block_on(async {
        let client = Client::new(ClientConfig::default(), RegistryAuth::Anonymous).unwrap();
        let r: Reference = image.parse().unwrap();
        let filter = linkguard_oci::ReferrerFilter {
            artifact_type: Some("application/vnd.stellaops.function-map.v1+json".to_owned()),
            ..Default::default()
        };
        client.list_referrers(&r, &filter).await.unwrap()[0]
            .digest
            .clone()
    })
}

/// A bundle with one byte of a report blob flipped is refused offline (exit 1) and by import (exit 2),
/// both naming the blob.
fn tampered_bundle_is_refused(rt: &tokio::runtime::Runtime, source: &Registry, target: &Registry) {
    let dir = tempfile::tempdir().unwrap();
    let src = populate(rt, &source.addr, dir.path());
    let tar = dir.path().join("app.tar");
    ok(&[
        "bundle",
        "export",
        "--image",
        &src.image,
        "--output",
        s(&tar),
    ]);
    let mut bytes = std::fs::read(&tar).unwrap();
    let at = bytes
        .windows(src.bundles[1].len())
        .position(|w| w == src.bundles[1].as_slice())
        .unwrap_or_else(|| panic!("the newest report's bundle is not stored as is in the tar"));
    // A byte inside the signature's base64: still JSON, but not what was signed.
    let offset = at + src.bundles[1].len() / 2;
    bytes[offset] = if bytes[offset] == b'A' { b'B' } else { b'A' };
    let tampered = dir.path().join("tampered.tar");
    std::fs::write(&tampered, &bytes).unwrap();
    let pubkey = fixture("keys/pkcs8.pub");
    let blob = format!("blobs/sha256/{}", Digest::of(&src.bundles[1]).hex());
    let out = fails(
        &[
            "reports",
            "verify",
            "--bundle",
            s(&tampered),
            "--key",
            s(&pubkey),
        ],
        1,
        &blob,
    );
    assert!(
        stderr(&out).contains("altered or corrupted"),
        "{}",
        stderr(&out)
    );
    fails(
        &[
            "bundle",
            "import",
            "--input",
            s(&tampered),
            "--to",
            &format!("{}/tampered:v1", target.addr),
        ],
        2,
        &blob,
    );
    // Nothing was pushed: the archive is checked before the first request.
    let out = linkguard(&[
        "reports",
        "list",
        "--image",
        &format!("{}/tampered:v1", target.addr),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    // Not a tar at all.
    let text = dir.path().join("notes.tar");
    std::fs::write(&text, b"these are notes, not an archive\n".repeat(32)).unwrap();
    fails(
        &[
            "bundle",
            "import",
            "--input",
            s(&text),
            "--to",
            &format!("{}/x:v1", target.addr),
        ],
        2,
        "not a readable tar archive",
    );
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn docker_registry_installed(test: &str) -> bool {
    let bin = docker_registry();
    if bin.exists() {
        return true;
    }
    assert!(
        !interop_required(),
        "{test}: {} is missing and LINKGUARD_REQUIRE_INTEROP=1 (apt-get install docker-registry)",
        bin.display()
    );
    println!("SKIP {test}: {} is not installed", bin.display());
    false
}

#[test]
fn ferro_to_docker_registry() {
    if !docker_registry_installed("ferro_to_docker_registry") {
        return;
    }
    let rt = runtime();
    let ferro = rt.block_on(start_ferro());
    let distribution = start_distribution();
    round_trip(&rt, &ferro, &distribution, false);
}

#[test]
fn docker_registry_to_ferro() {
    if !docker_registry_installed("docker_registry_to_ferro") {
        return;
    }
    let rt = runtime();
    let ferro = rt.block_on(start_ferro());
    let distribution = start_distribution();
    round_trip(&rt, &distribution, &ferro, true);
}

#[test]
fn altered_bundles_are_refused() {
    let rt = runtime();
    let source = rt.block_on(start_ferro());
    let target = rt.block_on(start_ferro());
    tampered_bundle_is_refused(&rt, &source, &target);
}

#[test]
fn help_shows_examples() {
    for args in [
        &["mirror", "--help"][..],
        &["bundle", "export", "--help"],
        &["bundle", "import", "--help"],
        &["reports", "verify", "--help"],
    ] {
        let out = ok(args);
        assert!(
            stdout(&out).contains("Examples:"),
            "{args:?}: {}",
            stdout(&out)
        );
    }
}
