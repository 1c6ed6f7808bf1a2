// SPDX-License-Identifier: Apache-2.0
//! Copying an image with its referrers between real registries - ferro-oci-server in-process (referrers
//! API) and Debian's docker-registry as a child process (tag-schema fallback) - and through OCI image
//! layout archives, including archives built to attack the importer.
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test harness helpers: a failed setup step is a failed test"
)]

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::Path;

use linkguard_oci::layout::{self, Compression, LayoutError, LayoutLimits};
use linkguard_oci::{
    Client, ClientConfig, CopyOptions, Digest, Error, Layer, OCI_INDEX, OCI_MANIFEST, Reference,
    ReferrerFilter, ReferrersMode, RegistryAuth, copy_image,
};
use reqwest::header::HeaderValue;

#[path = "support/registries.rs"]
mod registries;
use registries::{Kind, Registry, docker_registry, start_distribution, start_ferro};

const BUNDLE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
const MAP: &str = "application/vnd.stellaops.function-map.v1+json";
const SIGNATURE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
const SBOM: &str = "application/vnd.cyclonedx+json";

fn docker_registry_available(test: &str) -> bool {
    let bin = docker_registry();
    if bin.exists() {
        return true;
    }
    assert!(
        !std::env::var("LINKGUARD_REQUIRE_INTEROP").is_ok_and(|v| v == "1"),
        "{test}: {} is missing and LINKGUARD_REQUIRE_INTEROP=1 (apt-get install docker-registry)",
        bin.display()
    );
    println!("SKIP {test}: {} is not installed", bin.display());
    false
}

fn client() -> Client {
    Client::new(ClientConfig::default(), RegistryAuth::Anonymous).unwrap()
}

fn oci() -> oci_client::Client {
    oci_client::Client::new(oci_client::client::ClientConfig {
        protocol: oci_client::client::ClientProtocol::Http,
        ..Default::default()
    })
}

/// What the source holds: a two-platform image index and its referrers, recursively.
struct Fixture {
    image: Reference,
    index: Digest,
    children: Vec<Digest>,
    map: Digest,
    reports: Vec<Digest>,
    /// A signature of the first report (a referrer of a referrer).
    signature: Digest,
    /// An SBOM of the amd64 manifest (a referrer of a child manifest).
    sbom: Digest,
}

impl Fixture {
    /// Every manifest digest of the fixture.
    fn manifests(&self) -> Vec<Digest> {
        let mut all = vec![self.index.clone(), self.map.clone()];
        all.extend(self.children.iter().cloned());
        all.extend(self.reports.iter().cloned());
        all.extend([self.signature.clone(), self.sbom.clone()]);
        all
    }
}

/// A two-platform OCI image index tagged `v1` in `<addr>/<repo>`.
async fn push_index(addr: &str, repo: &str) -> (Reference, Digest, Vec<Digest>) {
    let oci = oci();
    let r = oci_client::Reference::with_tag(addr.to_owned(), repo.to_owned(), "v1".into());
    oci.store_auth_if_needed(addr, &RegistryAuth::Anonymous)
        .await;
    let mut entries = Vec::new();
    let mut children = Vec::new();
    for arch in ["amd64", "arm64"] {
        let config = format!(
            r#"{{"architecture":"{arch}","os":"linux","rootfs":{{"type":"layers","diff_ids":[]}}}}"#
        )
        .into_bytes();
        let layer = format!("layer of the {arch} image, not really a tarball").into_bytes();
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
        children.push(digest);
    }
    // Pretty-printed on purpose: a copy that re-serialized it would change the digest.
    let index =
        serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries});
    let body = serde_json::to_vec_pretty(&index).unwrap();
    let digest = Digest::of(&body);
    oci.push_manifest_raw(&r, body, HeaderValue::from_static(OCI_INDEX))
        .await
        .unwrap();
    (
        format!("{addr}/{repo}:v1").parse().unwrap(),
        digest,
        children,
    )
}

async fn attach(
    c: &Client,
    image: &Reference,
    subject: &Digest,
    artifact_type: &str,
    data: &[u8],
    minute: usize,
) -> Digest {
    let annotations = BTreeMap::from([(
        "org.opencontainers.image.created".to_owned(),
        format!("2026-11-22T04:{minute:02}:00Z"),
    )]);
    let layers = vec![Layer {
        media_type: artifact_type.to_owned(),
        data: data.to_vec(),
    }];
    c.push_artifact(
        &image.at_digest(subject.clone()),
        artifact_type,
        layers,
        annotations,
    )
    .await
    .unwrap()
    .descriptor
    .digest
    .parse()
    .unwrap()
}

async fn push_fixture(reg: &Registry, repo: &str) -> Fixture {
    let c = client();
    let (image, index, children) = push_index(&reg.addr, repo).await;
    let map = attach(&c, &image, &index, MAP, b"{\"_type\":\"map\"}", 1).await;
    let mut reports = Vec::new();
    for i in 0..2 {
        let bundle = format!("{{\"mediaType\":\"{BUNDLE}\",\"report\":{i}}}");
        reports.push(attach(&c, &image, &index, BUNDLE, bundle.as_bytes(), 2 + i).await);
    }
    let signature = attach(
        &c,
        &image,
        &reports[0],
        SIGNATURE,
        b"signature of report 0",
        5,
    )
    .await;
    let sbom = attach(
        &c,
        &image,
        &children[0],
        SBOM,
        b"{\"bomFormat\":\"CycloneDX\"}",
        6,
    )
    .await;
    Fixture {
        image,
        index,
        children,
        map,
        reports,
        signature,
        sbom,
    }
}

/// The raw bytes `GET /v2/<repo>/<kind>/<reference>` returns, or `None` on 404.
async fn raw(addr: &str, repo: &str, kind: &str, reference: &str) -> Option<Vec<u8>> {
    let url = format!("http://{addr}/v2/{repo}/{kind}/{reference}");
    let resp = reqwest::Client::new()
        .get(&url)
        .header(
            "Accept",
            format!("{OCI_MANIFEST}, {OCI_INDEX}, application/octet-stream"),
        )
        .send()
        .await
        .unwrap();
    if resp.status() == 404 {
        return None;
    }
    assert!(resp.status().is_success(), "{url}: {}", resp.status());
    Some(resp.bytes().await.unwrap().to_vec())
}

/// Every manifest and blob of `fx` is in `target` (a repository reference) with the same bytes, the
/// tag names the index, and the target lists each referrer under its subject.
async fn assert_same_content(fx: &Fixture, source: &Registry, target: &Registry, to: &Reference) {
    let src_repo = fx.image.repository();
    let dst_repo = to.repository();
    let c = client();
    assert_eq!(c.resolve(to).await.unwrap(), fx.index, "{:?}", target.kind);
    for digest in fx.manifests() {
        let theirs = raw(&source.addr, src_repo, "manifests", digest.as_str()).await;
        let ours = raw(&target.addr, dst_repo, "manifests", digest.as_str()).await;
        assert!(ours.is_some(), "{:?} lacks manifest {digest}", target.kind);
        assert_eq!(ours, theirs, "manifest {digest} differs");
        let parsed: serde_json::Value = serde_json::from_slice(&ours.unwrap()).unwrap();
        let blobs = parsed["layers"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .chain(parsed.get("config").cloned());
        for blob in blobs {
            let d = blob["digest"].as_str().unwrap();
            let theirs = raw(&source.addr, src_repo, "blobs", d).await;
            assert!(theirs.is_some());
            assert_eq!(
                raw(&target.addr, dst_repo, "blobs", d).await,
                theirs,
                "blob {d}"
            );
        }
    }
    let listed = |subject: &Digest| {
        let r = to.at_digest(subject.clone());
        let c = &c;
        async move {
            let mut d: Vec<String> = c
                .list_referrers(&r, &ReferrerFilter::default())
                .await
                .unwrap()
                .into_iter()
                .map(|d| d.digest)
                .collect();
            d.sort();
            d
        }
    };
    let mut on_index = vec![
        fx.map.to_string(),
        fx.reports[0].to_string(),
        fx.reports[1].to_string(),
    ];
    on_index.sort();
    assert_eq!(listed(&fx.index).await, on_index, "{:?}", target.kind);
    assert_eq!(listed(&fx.reports[0]).await, vec![fx.signature.to_string()]);
    assert_eq!(listed(&fx.children[0]).await, vec![fx.sbom.to_string()]);
    assert!(listed(&fx.children[1]).await.is_empty());
    // The referrers pull as referrers of the copied image, with their annotations.
    let report = c
        .pull_referrer(&to.at_digest(fx.index.clone()), &fx.reports[1])
        .await
        .unwrap();
    assert_eq!(
        report.layers[0].1,
        format!("{{\"mediaType\":\"{BUNDLE}\",\"report\":1}}").into_bytes()
    );
    assert_eq!(
        report.manifest.annotations["org.opencontainers.image.created"],
        "2026-11-22T04:03:00Z"
    );
}

fn mode(kind: Kind) -> ReferrersMode {
    match kind {
        Kind::Ferro => ReferrersMode::Api,
        Kind::Distribution => ReferrersMode::FallbackTag,
    }
}

async fn mirror_and_check(source: &Registry, target: &Registry) {
    let fx = push_fixture(source, "app").await;
    let to: Reference = format!("{}/mirrored/app:v1", target.addr).parse().unwrap();
    let options = CopyOptions::default();
    let summary = copy_image(&client(), &fx.image, &client(), &to, &options)
        .await
        .unwrap();
    assert_eq!(summary.image.digest, fx.index.as_str());
    assert_eq!(summary.image.media_type, OCI_INDEX);
    // Index + 2 platform manifests + map + 2 reports + signature + SBOM.
    assert_eq!(summary.manifests.copied, 8, "{summary:?}");
    // 2 configs, 2 layers, the empty config, 5 artifact layers; ferro reports the empty config
    // (`{}`, image-spec's well-known empty descriptor) present in every repository.
    assert_eq!(
        summary.blobs.copied + summary.blobs.present,
        10,
        "{summary:?}"
    );
    assert!(summary.blobs.copied >= 9, "{summary:?}");
    assert_eq!(summary.referrers.len(), 5);
    assert_eq!(summary.referrers_copied(), 5);
    assert_eq!(summary.referrers_mode, Some(mode(target.kind)));
    let sig = summary
        .referrers
        .iter()
        .find(|r| r.descriptor.digest == fx.signature.as_str())
        .unwrap();
    assert_eq!(sig.subject, fx.reports[0]);
    assert_eq!(sig.descriptor.artifact_type.as_deref(), Some(SIGNATURE));
    assert_same_content(&fx, source, target, &to).await;

    // A second run finds everything there and writes nothing.
    let again = copy_image(&client(), &fx.image, &client(), &to, &options)
        .await
        .unwrap();
    assert_eq!(
        (
            again.manifests.copied,
            again.blobs.copied,
            again.referrers_copied(),
            again.bytes_copied
        ),
        (0, 0, 0, 0),
        "{again:?}"
    );
    assert_eq!(again.manifests.present, 8);
    assert_eq!(again.referrers.len(), 5);
    // ferro lists a manifest PUT twice twice; nothing was PUT again, so nothing is listed twice.
    assert_same_content(&fx, source, target, &to).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_ferro_to_docker_registry_and_back() {
    if !docker_registry_available("mirror_ferro_to_docker_registry_and_back") {
        return;
    }
    let ferro = start_ferro().await;
    let distribution = start_distribution();
    mirror_and_check(&ferro, &distribution).await;
    // A fresh ferro: ferro's blob store is shared by its repositories, so the first one already holds
    // every blob.
    let ferro = start_ferro().await;
    mirror_and_check(&distribution, &ferro).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_within_ferro_to_a_digest_reference() {
    let ferro = start_ferro().await;
    let fx = push_fixture(&ferro, "app").await;
    // A digest target must be the image's; the copy is then untagged.
    let wrong: Reference = format!("{}/copy@{}", ferro.addr, fx.map).parse().unwrap();
    let err = copy_image(
        &client(),
        &fx.image,
        &client(),
        &wrong,
        &CopyOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("but the image is"), "{err}");
    let to: Reference = format!("{}/copy@{}", ferro.addr, fx.index).parse().unwrap();
    let summary = copy_image(
        &client(),
        &fx.image,
        &client(),
        &to,
        &CopyOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(summary.referrers.len(), 5);
    assert_eq!(client().resolve(&to).await.unwrap(), fx.index);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_source_or_a_limit_stops_the_copy() {
    let ferro = start_ferro().await;
    let fx = push_fixture(&ferro, "app").await;
    // Each copy goes to a fresh registry: it has none of the blobs, so every one is read.
    let copy_to_fresh = async |options: CopyOptions| {
        let target = start_ferro().await;
        let to: Reference = format!("{}/copy:v1", target.addr).parse().unwrap();
        copy_image(&client(), &fx.image, &client(), &to, &options).await
    };
    // Blobs over the limit are refused before they are read.
    let err = copy_to_fresh(CopyOptions {
        max_blob_bytes: 8,
        ..CopyOptions::default()
    })
    .await
    .unwrap_err();
    assert!(matches!(err, Error::TooLarge { limit: 8, .. }), "{err}");
    let err = copy_to_fresh(CopyOptions {
        max_manifests: 4,
        ..CopyOptions::default()
    })
    .await
    .unwrap_err();
    assert!(matches!(err, Error::CopyLimit { limit: 4, .. }), "{err}");
    let err = copy_to_fresh(CopyOptions {
        max_referrer_depth: 1,
        ..CopyOptions::default()
    })
    .await
    .unwrap_err();
    assert!(err.to_string().contains("referrers of referrers"), "{err}");

    // The source's storage now serves other bytes for a report's layer.
    let data = format!("{{\"mediaType\":\"{BUNDLE}\",\"report\":1}}").into_bytes();
    let files = files_with(ferro.storage.path(), &data);
    assert_eq!(files.len(), 1);
    let mut forged = data.clone();
    forged[2] ^= 1;
    std::fs::write(&files[0], &forged).unwrap();
    let err = copy_to_fresh(CopyOptions::default()).await.unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
    assert!(
        err.to_string().contains(&ferro.addr),
        "names the source: {err}"
    );
}

fn files_with(root: &Path, content: &[u8]) -> Vec<std::path::PathBuf> {
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

async fn export(fx: &Fixture, compression: Compression) -> Vec<u8> {
    let (summary, out) = layout::export_layout(
        &client(),
        &fx.image,
        Vec::new(),
        compression,
        &CopyOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(summary.manifests.copied, 8);
    assert_eq!(summary.referrers.len(), 5);
    assert_eq!(summary.referrers_mode, None);
    out
}

/// The entries of a plain tar: path and content, in order.
fn entries(tar: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut archive = tar::Archive::new(tar);
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let path = String::from_utf8(e.path_bytes().to_vec()).unwrap();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            (path, data)
        })
        .collect()
}

/// A tar of `entries`, each a regular file unless its path ends in `/`. Paths are written into the
/// header as they are (the tar crate's path setter refuses `..`, which is what these tests need).
fn tar_of(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in entries {
        let mut h = tar::Header::new_ustar();
        if path.ends_with('/') {
            h.set_entry_type(tar::EntryType::Directory);
        }
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        let name = &mut h.as_old_mut().name;
        name.fill(0);
        name[..path.len()].copy_from_slice(path.as_bytes());
        h.set_cksum();
        b.append(&h, data.as_slice()).unwrap();
    }
    b.into_inner().unwrap()
}

/// Unpacks `bytes` as an archive into a temporary directory (kept while the first value lives).
fn unpack(
    bytes: &[u8],
    limits: &LayoutLimits,
) -> (tempfile::TempDir, Result<layout::OciLayout, LayoutError>) {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("bundle.tar");
    std::fs::write(&archive, bytes).unwrap();
    let into = dir.path().join("layout");
    std::fs::create_dir(&into).unwrap();
    let layout = layout::unpack_layout(&archive, &into, limits);
    (dir, layout)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundle_round_trip_between_both_kinds() {
    let ferro = start_ferro().await;
    let fx = push_fixture(&ferro, "app").await;
    let plain = export(&fx, Compression::None).await;
    // The same content gives the same archive.
    assert_eq!(plain, export(&fx, Compression::None).await);
    let names: Vec<String> = entries(&plain).into_iter().map(|(p, _)| p).collect();
    assert_eq!(names[0], "oci-layout");
    assert_eq!(names.last().map(String::as_str), Some("index.json"));
    let index: serde_json::Value =
        serde_json::from_slice(&entries(&plain).last().unwrap().1).unwrap();
    assert_eq!(index["manifests"][0]["digest"], fx.index.as_str());
    assert_eq!(
        index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
        fx.image.to_string()
    );
    assert_eq!(index["manifests"].as_array().unwrap().len(), 6);

    let gz = export(&fx, Compression::Gzip).await;
    assert_eq!(&gz[..2], &[0x1f, 0x8b]);
    for (bytes, name) in [(&plain, "plain"), (&gz, "gzip")] {
        let (_dir, layout) = unpack(bytes, &LayoutLimits::default());
        let layout = layout.unwrap();
        assert_eq!(layout.image_digest().unwrap(), fx.index);
        assert_eq!(layout.ref_name(), fx.image.to_string());
        let mut reports: Vec<String> = layout
            .referrers(&fx.index)
            .into_iter()
            .filter(|d| d.artifact_type.as_deref() == Some(BUNDLE))
            .map(|d| d.digest)
            .collect();
        reports.sort();
        let mut expected: Vec<String> = fx.reports.iter().map(ToString::to_string).collect();
        expected.sort();
        assert_eq!(reports, expected);
        let artifact = layout.read_artifact(&fx.signature).unwrap();
        assert_eq!(artifact.layers[0].1, b"signature of report 0");

        // Into the other kind of registry (and into ferro itself when docker-registry is missing).
        let target = if docker_registry_available("bundle_round_trip_between_both_kinds") {
            start_distribution()
        } else {
            start_ferro().await
        };
        let to: Reference = format!("{}/imported/{name}:v1", target.addr)
            .parse()
            .unwrap();
        let summary = layout::import_layout(&layout, &client(), &to, &CopyOptions::default())
            .await
            .unwrap();
        assert_eq!(summary.manifests.copied, 8);
        assert_eq!(summary.referrers_mode, Some(mode(target.kind)));
        assert_same_content(&fx, &ferro, &target, &to).await;
        let again = layout::import_layout(&layout, &client(), &to, &CopyOptions::default())
            .await
            .unwrap();
        assert_eq!(
            (
                again.manifests.copied,
                again.blobs.copied,
                again.referrers_copied()
            ),
            (0, 0, 0)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_archives_are_refused_naming_the_entry() {
    let ferro = start_ferro().await;
    let fx = push_fixture(&ferro, "app").await;
    let good = entries(&export(&fx, Compression::None).await);
    let report_layer = format!("{{\"mediaType\":\"{BUNDLE}\",\"report\":0}}").into_bytes();
    let report_entry = format!("blobs/sha256/{}", Digest::of(&report_layer).hex());
    assert!(good.iter().any(|(p, _)| *p == report_entry));
    let limits = LayoutLimits::default();
    let with = |extra: (&str, &[u8])| {
        let mut e = good.clone();
        e.insert(1, (extra.0.to_owned(), extra.1.to_vec()));
        tar_of(&e)
    };
    let check = |bytes: Vec<u8>, limits: &LayoutLimits, needle: &str| {
        let err = unpack(&bytes, limits).1.unwrap_err();
        assert!(err.to_string().contains(needle), "{needle:?} not in: {err}");
        err
    };

    // The untouched entries unpack (so each failure below is caused by its change).
    unpack(&tar_of(&good), &limits).1.unwrap();

    let err = check(with(("../escape", b"x")), &limits, "`../escape`");
    assert!(matches!(err, LayoutError::UnsafeEntry { .. }), "{err}");
    let err = check(
        with(("blobs/sha256/../../../etc/x", b"x")),
        &limits,
        "path traversal",
    );
    assert!(matches!(err, LayoutError::UnsafeEntry { .. }), "{err}");
    let err = check(with(("/etc/passwd", b"x")), &limits, "absolute path");
    assert!(matches!(err, LayoutError::UnsafeEntry { .. }), "{err}");
    let err = check(
        with(("README.md", b"x")),
        &limits,
        "`README.md` is not part of",
    );
    assert!(matches!(err, LayoutError::UnexpectedEntry { .. }), "{err}");

    // A symbolic link and a hard link, even with a layout name.
    for (kind, needle) in [
        (tar::EntryType::Symlink, "symbolic link"),
        (tar::EntryType::Link, "hard link"),
    ] {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_size(0);
        b.append_link(&mut h, "oci-layout", "/etc/passwd").unwrap();
        for (path, data) in &good {
            let mut h = tar::Header::new_ustar();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, path, data.as_slice()).unwrap();
        }
        let err = check(b.into_inner().unwrap(), &limits, needle);
        assert!(err.to_string().contains("`oci-layout`"), "{err}");
    }

    // A report blob with one byte flipped.
    let tampered: Vec<_> = good
        .iter()
        .map(|(p, d)| {
            let mut d = d.clone();
            if *p == report_entry {
                d[3] ^= 0x20;
            }
            (p.clone(), d)
        })
        .collect();
    let err = check(tar_of(&tampered), &limits, &report_entry);
    assert!(matches!(err, LayoutError::DigestMismatch { .. }), "{err}");

    // The same report blob missing.
    let missing: Vec<_> = good
        .iter()
        .filter(|(p, _)| *p != report_entry)
        .cloned()
        .collect();
    let err = check(
        tar_of(&missing),
        &limits,
        Digest::of(&report_layer).as_str(),
    );
    assert!(matches!(err, LayoutError::MissingBlob { .. }), "{err}");

    // Twice the same entry.
    let mut twice = good.clone();
    twice.push((report_entry.clone(), report_layer.clone()));
    let err = check(tar_of(&twice), &limits, "appears twice");
    assert!(matches!(err, LayoutError::DuplicateEntry { .. }), "{err}");

    // An entry over the blob limit, and an archive over the total limit.
    let small = LayoutLimits {
        max_blob_bytes: 40,
        ..LayoutLimits::default()
    };
    let err = check(tar_of(&good), &small, "over the limit of 40");
    assert!(matches!(err, LayoutError::EntryTooLarge { .. }), "{err}");
    let total = LayoutLimits {
        max_total_bytes: 1000,
        ..LayoutLimits::default()
    };
    let err = check(tar_of(&good), &total, "more than 1000");
    assert!(matches!(err, LayoutError::ArchiveTooLarge { .. }), "{err}");

    // Not a tar: text, an empty tar, gzip of text, a truncated archive.
    let err = check(
        b"this is not an archive".repeat(40),
        &limits,
        "not a readable tar",
    );
    assert!(matches!(err, LayoutError::NotATar { .. }), "{err}");
    check(vec![0; 1024], &limits, "holds no entries");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &b"not a tar either".repeat(64)).unwrap();
    check(gz.finish().unwrap(), &limits, "(gzip)");
    let whole = tar_of(&good);
    // Cut inside a block, so the reader sees a short header or short content.
    check(
        whole[..whole.len() / 2 + 100].to_vec(),
        &limits,
        "not a readable tar",
    );

    // A layout without index.json, or naming no image.
    let no_index: Vec<_> = good
        .iter()
        .filter(|(p, _)| p != "index.json")
        .cloned()
        .collect();
    check(tar_of(&no_index), &limits, "no `index.json` entry");
    let unnamed: Vec<_> = good
        .iter()
        .map(|(p, d)| {
            let d = if p == "index.json" {
                String::from_utf8(d.clone())
                    .unwrap()
                    .replace("org.opencontainers.image.ref.name", "x.other")
                    .into_bytes()
            } else {
                d.clone()
            };
            (p.clone(), d)
        })
        .collect();
    check(tar_of(&unnamed), &limits, "names no image");
}

#[test]
fn a_missing_archive_is_an_io_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let err = layout::unpack_layout(
        &dir.path().join("nope.tar"),
        dir.path(),
        &LayoutLimits::default(),
    )
    .unwrap_err();
    assert!(matches!(err, LayoutError::Io { .. }), "{err}");
    assert!(err.to_string().contains("nope.tar"), "{err}");
}
