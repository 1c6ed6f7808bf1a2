// SPDX-License-Identifier: Apache-2.0
//! Interop with registry clients linkguard did not write, through the linkguard binary, against
//! ferro-oci-server in-process (referrers API) and Debian's docker-registry as a child process
//! (distribution 2.8: no referrers API, the `sha256-<hex>` tag-schema fallback):
//!
//! - skopeo sees what linkguard pushes: `list-tags` shows the fallback tag where one is needed (and only
//!   there), `inspect --raw` serves the exact manifest bytes, `copy` by digest to another repository and to a
//!   directory keeps every digest and the signature.
//! - oras-py pulls what linkguard pushes, by digest: the bytes are the signed bundle (or DSSE envelope), and
//!   linkguard verifies them.
//! - What oras-py pushes as a referrer, `linkguard reports list` finds and `reports verify` accepts. oras-py
//!   does not maintain the fallback index: on docker-registry its referrer is found once its pusher has added
//!   it to the index (tests/interop/oras_client.py --update-fallback-index), not before.
//! - What @sigstore/oci pushes as a referrer (it maintains the fallback index itself) is found on both, and
//!   neither client loses the other's entries in a shared fallback index.
//!
//! The clients: skopeo (Debian), oras-py (PyPI `oras`, in .venv) and @sigstore/oci (npm, in
//! tests/interop/node_modules); ci/setup installs them. A missing one skips its tests, or fails them under
//! `LINKGUARD_REQUIRE_INTEROP=1`. Run `cargo build --bins` first: the tests call the built binary.
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test harness: a failed setup step is a failed test"
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use linkguard_integration_tests::{fixture, interop_required, linkguard, workspace_root};
use linkguard_oci::{
    Client, ClientConfig, Digest, Layer, OCI_INDEX, OCI_MANIFEST, Reference, ReferrersMode,
    RegistryAuth,
};
use reqwest::header::HeaderValue;
use serde_json::{Value, json};
use tempfile::TempDir;

#[path = "../oci/tests/support/registries.rs"]
mod registries;
use registries::{Kind, Registry, docker_registry, start_distribution, start_ferro};

const BUNDLE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
const MAP: &str = "application/vnd.stellaops.function-map.v1+json";
const DSSE: &str = "application/vnd.dsse.envelope.v1+json";
const PREDICATE_TYPE_ANNOTATION: &str = "dev.sigstore.bundle.predicateType";
const CREATED_ANNOTATION: &str = "org.opencontainers.image.created";
const REPORT_PREDICATE: &str = "https://linkguard.dev/attestations/verification-report/v1";
/// The digest the curl-tls fixture map is bound to.
const FIXTURE_HEX: &str = "4d6f6a1fbbd5cd3ba8e6b7ea5f4bb5a4b1a0a1e3e2f6c3d1b0a9f8e7d6c5b4a3";
const INSTALL_HINT: &str = "run ci/setup (apt: skopeo docker-registry; .venv: ci/requirements.txt; \
     npm ci --prefix tests/interop)";

// ---- tools and gates ----------------------------------------------------------------------------------

/// Skips (prints `SKIP`) or, when interop is required, fails.
#[track_caller]
fn unavailable(test: &str, reason: &str) {
    if interop_required() {
        panic!(
            "{test}: {reason}; LINKGUARD_REQUIRE_INTEROP=1 makes this a failure: {INSTALL_HINT}"
        );
    }
    println!("SKIP {test}: {reason} ({INSTALL_HINT})");
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `skopeo`, if it runs; its version line.
fn skopeo() -> Result<String, String> {
    let out = Command::new("skopeo")
        .arg("--version")
        .output()
        .map_err(|e| format!("cannot run skopeo: {e}"))?;
    if !out.status.success() {
        return Err(format!("skopeo --version failed: {}", text(&out.stderr)));
    }
    Ok(text(&out.stdout).trim().to_owned())
}

/// The Python with oras-py: `$LINKGUARD_PYTHON`, else `<workspace>/.venv/bin/python3`.
fn python_with_oras() -> Result<PathBuf, String> {
    let python = std::env::var_os("LINKGUARD_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv/bin/python3"));
    let probe = Command::new(&python)
        .args([
            "-c",
            "import oras.provider, oras.version; print(oras.version.__version__)",
        ])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
    if !probe.status.success() {
        return Err(format!(
            "{} cannot import oras (oras-py): {}",
            python.display(),
            text(&probe.stderr).trim()
        ));
    }
    println!("oras-py {}", text(&probe.stdout).trim());
    Ok(python)
}

/// `node`, if it runs and tests/interop/node_modules has @sigstore/oci.
fn node_with_sigstore_oci() -> Result<PathBuf, String> {
    let package = workspace_root().join("tests/interop/node_modules/@sigstore/oci/package.json");
    let manifest = std::fs::read(&package)
        .map_err(|e| format!("{} is not installed: {e}", package.display()))?;
    let version = serde_json::from_slice::<Value>(&manifest)
        .ok()
        .and_then(|v| v["version"].as_str().map(str::to_owned))
        .unwrap_or_default();
    let node = PathBuf::from("node");
    let probe = Command::new(&node)
        .arg("--version")
        .output()
        .map_err(|e| format!("cannot run node: {e}"))?;
    if !probe.status.success() {
        return Err("node --version failed".into());
    }
    println!(
        "@sigstore/oci {version} on node {}",
        text(&probe.stdout).trim()
    );
    Ok(node)
}

fn interop_script(name: &str) -> PathBuf {
    workspace_root().join("tests/interop").join(name)
}

/// Runs `cmd`, which must succeed.
#[track_caller]
fn run(cmd: &mut Command, what: &str) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    out
}

#[track_caller]
fn ok(args: &[&str]) -> Output {
    let out = linkguard(args);
    assert!(
        out.status.success(),
        "linkguard {args:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    out
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

// ---- registries and what linkguard pushes ---------------------------------------------------------------

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A started registry of `kind`, or `None` (after SKIP, or a failure when interop is required) when
/// docker-registry is not installed.
fn start(rt: &tokio::runtime::Runtime, kind: Kind, test: &str) -> Option<Registry> {
    match kind {
        Kind::Ferro => Some(rt.block_on(start_ferro())),
        Kind::Distribution => {
            let bin = docker_registry();
            if !bin.exists() {
                unavailable(test, &format!("{} is not installed", bin.display()));
                return None;
            }
            Some(start_distribution())
        }
    }
}

/// Pushes a small OCI image tagged `v1` to `<addr>/<repo>`; returns `addr/repo:v1` and its digest.
async fn push_image(addr: &str, repo: &str) -> (String, Digest) {
    let oci = oci_client::Client::new(oci_client::client::ClientConfig {
        protocol: oci_client::client::ClientProtocol::Http,
        ..Default::default()
    });
    let r = oci_client::Reference::with_tag(addr.to_owned(), repo.to_owned(), "v1".into());
    oci.store_auth_if_needed(addr, &RegistryAuth::Anonymous)
        .await;
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let layer = format!("not really a tarball: {repo}").into_bytes();
    for blob in [&config[..], &layer[..]] {
        oci.push_blob(&r, blob.to_vec(), Digest::of(blob).as_str())
            .await
            .unwrap();
    }
    let manifest = json!({
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

/// Pushes `bundle` as a report referrer of `image` the way linkguard pushes reports (linkguard-oci's
/// push_artifact: artifactType and layer of the bundle media type, predicateType and created annotations).
async fn push_report(image: &str, bundle: Vec<u8>, created: &str) -> (Digest, ReferrersMode) {
    let client = Client::new(ClientConfig::default(), RegistryAuth::Anonymous).unwrap();
    let annotations = BTreeMap::from([
        (
            PREDICATE_TYPE_ANNOTATION.to_owned(),
            REPORT_PREDICATE.to_owned(),
        ),
        (CREATED_ANNOTATION.to_owned(), created.to_owned()),
    ]);
    let subject: Reference = image.parse().unwrap();
    let pushed = client
        .push_artifact(
            &subject,
            BUNDLE,
            vec![Layer {
                media_type: BUNDLE.to_owned(),
                data: bundle,
            }],
            annotations,
        )
        .await
        .unwrap();
    (pushed.descriptor.digest.parse().unwrap(), pushed.mode)
}

/// An image with what linkguard pushes next to it: a signed function map (`linkguard map push --key`) and a
/// signed report (a Sigstore bundle from `linkguard attest sign`).
struct Scene {
    dir: TempDir,
    kind: Kind,
    addr: String,
    /// `addr/app:v1`
    image: String,
    digest: Digest,
    key: PathBuf,
    pubkey: PathBuf,
    /// The bound map (plain JSON) and the digest of its signed referrer.
    map: Vec<u8>,
    map_referrer: Digest,
    /// The signed report bundle and the digest of its referrer.
    bundle: Vec<u8>,
    report: Digest,
}

impl Scene {
    fn new(rt: &tokio::runtime::Runtime, registry: &Registry) -> Self {
        let dir = TempDir::new().unwrap();
        let addr = registry.addr.clone();
        let (image, digest) = rt.block_on(push_image(&addr, "app"));
        let key = dir.path().join("k.pem");
        let pubkey = dir.path().join("k.pub");
        ok(&[
            "attest",
            "keygen",
            "--output-key",
            s(&key),
            "--output-pub",
            s(&pubkey),
        ]);
        let map = std::fs::read_to_string(fixture("maps/curl-tls.json"))
            .unwrap()
            .replace(FIXTURE_HEX, digest.hex())
            .into_bytes();
        let map_path = dir.path().join("map.json");
        std::fs::write(&map_path, &map).unwrap();
        let out = ok(&[
            "map",
            "push",
            "--image",
            &image,
            s(&map_path),
            "--key",
            s(&key),
        ]);
        let map_referrer: Digest = text(&out.stdout).trim().parse().unwrap();
        let mut scene = Self {
            dir,
            kind: registry.kind,
            addr,
            image,
            digest,
            key,
            pubkey,
            map,
            map_referrer,
            bundle: Vec::new(),
            report: Digest::of(b""),
        };
        scene.bundle = scene.sign("report", "pass");
        let (report, mode) = rt.block_on(push_report(
            &scene.image,
            scene.bundle.clone(),
            "2025-06-01T00:00:00Z",
        ));
        let expected_mode = match scene.kind {
            Kind::Ferro => ReferrersMode::Api,
            Kind::Distribution => ReferrersMode::FallbackTag,
        };
        assert_eq!(mode, expected_mode, "{:?}", scene.kind);
        scene.report = report;
        scene
    }

    /// A Sigstore bundle, signed with the scene's key by `linkguard attest sign`, of a report about the image.
    fn sign(&self, name: &str, verdict: &str) -> Vec<u8> {
        let statement = self.dir.path().join(format!("{name}.statement.json"));
        let body = json!({
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{"name": format!("{}/app", self.addr), "digest": {"sha256": self.digest.hex()}}],
            "predicateType": REPORT_PREDICATE,
            "predicate": {"verdict": verdict, "report": name}
        });
        std::fs::write(&statement, serde_json::to_vec(&body).unwrap()).unwrap();
        let bundle = self.path(&format!("{name}.bundle.json"));
        ok(&[
            "attest",
            "sign",
            "--input",
            s(&statement),
            "--key",
            s(&self.key),
            "--output",
            s(&bundle),
        ]);
        std::fs::read(&bundle).unwrap()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `sha256-<hex>` of the image.
    fn fallback_tag(&self) -> String {
        format!("sha256-{}", self.digest.hex())
    }

    /// `linkguard reports list --format json`: the digests, newest first.
    fn reports(&self, image: &str) -> Vec<String> {
        let out = ok(&["reports", "list", "--image", image, "--format", "json"]);
        let list: Value = serde_json::from_slice(&out.stdout).unwrap();
        list.as_array()
            .unwrap()
            .iter()
            .map(|e| e["digest"].as_str().unwrap().to_owned())
            .collect()
    }

    /// `linkguard reports verify --digest D` with the scene's key must pass and name `d`.
    #[track_caller]
    fn verify_report(&self, image: &str, d: &str) {
        let out = ok(&[
            "reports",
            "verify",
            "--image",
            image,
            "--key",
            s(&self.pubkey),
            "--digest",
            d,
        ]);
        assert!(
            text(&out.stdout).contains(&format!("OK: report {d}")),
            "{}",
            text(&out.stdout)
        );
    }

    /// `linkguard reports pull --digest D`: the bundle bytes.
    fn pull_report(&self, d: &str) -> Vec<u8> {
        let out = self.path(&format!("pulled-{}.json", &d[7..19]));
        ok(&[
            "reports",
            "pull",
            "--image",
            &self.image,
            "--digest",
            d,
            "--output",
            s(&out),
        ]);
        std::fs::read(&out).unwrap()
    }

    /// `linkguard attest verify` of a bundle file with the scene's key must pass.
    #[track_caller]
    fn attest_verify(&self, bundle: &Path) {
        ok(&[
            "attest",
            "verify",
            "--input",
            s(bundle),
            "--key",
            s(&self.pubkey),
        ]);
    }

    /// The manifest (or index) `reference` of `repo`, as served, through the registry HTTP API.
    fn raw_manifest(
        &self,
        rt: &tokio::runtime::Runtime,
        repo: &str,
        reference: &str,
    ) -> Option<Vec<u8>> {
        let url = format!("http://{}/v2/{repo}/manifests/{reference}", self.addr);
        rt.block_on(async {
            let response = reqwest::Client::new()
                .get(&url)
                .header("Accept", format!("{OCI_MANIFEST}, {OCI_INDEX}"))
                .send()
                .await
                .unwrap();
            match response.status().as_u16() {
                200 => Some(response.bytes().await.unwrap().to_vec()),
                404 => None,
                status => panic!("GET {url}: HTTP {status}"),
            }
        })
    }
}

/// The digests listed in an OCI image index, with their artifactType.
fn index_entries(body: &[u8]) -> Vec<(String, Option<String>)> {
    let index: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(index["mediaType"], OCI_INDEX, "{index}");
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["digest"].as_str().unwrap().to_owned(),
                m["artifactType"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

// ---- skopeo -------------------------------------------------------------------------------------------

fn skopeo_cmd(scene: &Scene) -> Command {
    // An explicit policy: the copy must not depend on this machine's /etc/containers/policy.json.
    let policy = scene.path("policy.json");
    if !policy.exists() {
        std::fs::write(
            &policy,
            br#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
        )
        .unwrap();
    }
    let mut cmd = Command::new("skopeo");
    cmd.arg("--policy").arg(policy);
    cmd
}

/// `skopeo inspect --raw`: the manifest bytes as the registry serves them.
fn skopeo_raw(scene: &Scene, reference: &str) -> Vec<u8> {
    run(
        skopeo_cmd(scene).args([
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{}/{reference}", scene.addr),
        ]),
        &format!("skopeo inspect --raw {reference}"),
    )
    .stdout
}

fn skopeo_tags(scene: &Scene, repo: &str) -> Vec<String> {
    let out = run(
        skopeo_cmd(scene).args([
            "list-tags",
            "--tls-verify=false",
            &format!("docker://{}/{repo}", scene.addr),
        ]),
        &format!("skopeo list-tags {repo}"),
    );
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    list["Tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect()
}

fn skopeo_copy(scene: &Scene, from: &str, to: &str, extra: &[&str]) {
    run(
        skopeo_cmd(scene)
            .args(["copy", "--src-tls-verify=false", "--dest-tls-verify=false"])
            .args(extra)
            .args([from, to]),
        &format!("skopeo copy {from} {to}"),
    );
}

fn skopeo_sees_what_linkguard_pushes(kind: Kind, test: &str) {
    let version = match skopeo() {
        Ok(v) => v,
        Err(reason) => return unavailable(test, &reason),
    };
    println!("{version}");
    let rt = runtime();
    let Some(registry) = start(&rt, kind, test) else {
        return;
    };
    let scene = Scene::new(&rt, &registry);
    let app = format!("{}/app", scene.addr);

    // list-tags: the fallback tag exists exactly where the registry has no referrers API.
    let tags = skopeo_tags(&scene, "app");
    assert!(tags.contains(&"v1".to_owned()), "{tags:?}");
    match kind {
        Kind::Distribution => assert!(tags.contains(&scene.fallback_tag()), "{tags:?}"),
        Kind::Ferro => assert!(!tags.contains(&scene.fallback_tag()), "{tags:?}"),
    }
    // linkguard's referrers never get a tag of their own.
    assert_eq!(
        tags.len(),
        if kind == Kind::Distribution { 2 } else { 1 },
        "{tags:?}"
    );

    // inspect --raw: the exact manifest bytes linkguard pushed (their digest is the one it printed).
    for (digest, artifact_type, layer_type) in [
        (&scene.map_referrer, MAP, DSSE),
        (&scene.report, BUNDLE, BUNDLE),
    ] {
        let raw = skopeo_raw(&scene, &format!("app@{digest}"));
        assert_eq!(Digest::of(&raw), *digest);
        let manifest: Value = serde_json::from_slice(&raw).unwrap();
        assert_eq!(manifest["mediaType"], OCI_MANIFEST, "{manifest}");
        assert_eq!(manifest["artifactType"], artifact_type, "{manifest}");
        assert_eq!(
            manifest["config"]["mediaType"],
            "application/vnd.oci.empty.v1+json"
        );
        assert_eq!(manifest["layers"][0]["mediaType"], layer_type, "{manifest}");
        assert_eq!(
            manifest["subject"]["digest"],
            scene.digest.as_str(),
            "{manifest}"
        );
    }
    if kind == Kind::Distribution {
        let raw = skopeo_raw(&scene, &format!("app:{}", scene.fallback_tag()));
        let entries = index_entries(&raw);
        assert_eq!(
            entries,
            [
                (scene.map_referrer.to_string(), Some(MAP.to_owned())),
                (scene.report.to_string(), Some(BUNDLE.to_owned())),
            ]
        );
    }

    // copy by digest to another repository, the image with its report: every digest is preserved, and the
    // copied report still verifies against the copied image.
    let copied = format!("{}/copied", scene.addr);
    skopeo_copy(
        &scene,
        &format!("docker://{app}@{}", scene.digest),
        &format!("docker://{copied}:v1"),
        &["--preserve-digests"],
    );
    skopeo_copy(
        &scene,
        &format!("docker://{app}@{}", scene.report),
        &format!("docker://{copied}:report"),
        &["--preserve-digests"],
    );
    let raw = skopeo_raw(&scene, &format!("copied@{}", scene.report));
    assert_eq!(Digest::of(&raw), scene.report);
    let copied_image = format!("{copied}:v1");
    scene.verify_report(&copied_image, scene.report.as_str());
    match kind {
        // The registry indexes the copied manifest's subject on PUT: linkguard lists it.
        Kind::Ferro => assert_eq!(scene.reports(&copied_image), [scene.report.to_string()]),
        // skopeo does not maintain the fallback index, so the copy is not listed; `--digest` still finds it.
        Kind::Distribution => assert!(scene.reports(&copied_image).is_empty()),
    }
    if kind == Kind::Distribution {
        // Copying the fallback index itself (skopeo copy --all) copies every referrer, but skopeo 1.9 rewrites
        // the index (it refuses --preserve-digests for it) and may drop the entries' artifactType; linkguard
        // then takes an entry's type from its manifest (image-spec 1.1), so the report is listed either way.
        let tag = scene.fallback_tag();
        skopeo_copy(
            &scene,
            &format!("docker://{app}:{tag}"),
            &format!("docker://{copied}:{tag}"),
            &["--all"],
        );
        let entries = index_entries(&skopeo_raw(&scene, &format!("copied:{tag}")));
        let digests: Vec<&str> = entries.iter().map(|(d, _)| d.as_str()).collect();
        assert_eq!(
            digests,
            [scene.map_referrer.as_str(), scene.report.as_str()]
        );
        let kept = entries
            .iter()
            .any(|(d, t)| d == scene.report.as_str() && t.as_deref() == Some(BUNDLE));
        println!("skopeo copy --all kept the artifactType of the fallback index entries: {kept}");
        assert_eq!(scene.reports(&copied_image), [scene.report.to_string()]);
    }

    // copy by digest to a directory: manifest.json is the exact manifest, the layer file the signed bundle.
    let out = scene.path("skopeo-dir");
    skopeo_copy(
        &scene,
        &format!("docker://{app}@{}", scene.report),
        &format!("dir:{}", out.display()),
        &[],
    );
    assert_eq!(
        Digest::of(&std::fs::read(out.join("manifest.json")).unwrap()),
        scene.report
    );
    let layer = out.join(Digest::of(&scene.bundle).hex());
    assert_eq!(std::fs::read(&layer).unwrap(), scene.bundle);
    scene.attest_verify(&layer);
    drop(registry);
}

#[test]
fn skopeo_sees_what_linkguard_pushes_on_ferro() {
    skopeo_sees_what_linkguard_pushes(Kind::Ferro, "skopeo_sees_what_linkguard_pushes_on_ferro");
}

#[test]
fn skopeo_sees_what_linkguard_pushes_on_docker_registry() {
    skopeo_sees_what_linkguard_pushes(
        Kind::Distribution,
        "skopeo_sees_what_linkguard_pushes_on_docker_registry",
    );
}

// ---- oras-py ------------------------------------------------------------------------------------------

/// Runs tests/interop/oras_client.py; its JSON output.
fn oras(python: &Path, args: &[&str]) -> Value {
    let out = run(
        Command::new(python)
            .arg(interop_script("oras_client.py"))
            .args(args),
        &format!("oras_client.py {args:?}"),
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn oras_py_pulls_what_linkguard_pushes(kind: Kind, test: &str) {
    let python = match python_with_oras() {
        Ok(p) => p,
        Err(reason) => return unavailable(test, &reason),
    };
    let rt = runtime();
    let Some(registry) = start(&rt, kind, test) else {
        return;
    };
    let scene = Scene::new(&rt, &registry);

    // The report, by digest: one file, the signed bundle byte for byte; linkguard verifies it.
    let outdir = scene.path("oras-report");
    let pulled = oras(
        &python,
        &[
            "pull",
            &scene.addr,
            "app",
            scene.report.as_str(),
            s(&outdir),
        ],
    );
    assert_eq!(pulled["manifest"]["artifactType"], BUNDLE, "{pulled}");
    assert_eq!(
        pulled["manifest"]["subject"]["digest"],
        scene.digest.as_str()
    );
    let files = pulled["files"].as_array().unwrap();
    assert_eq!(files.len(), 1, "{pulled}");
    assert_eq!(files[0]["mediaType"], BUNDLE);
    let file = PathBuf::from(files[0]["path"].as_str().unwrap());
    assert_eq!(std::fs::read(&file).unwrap(), scene.bundle);
    scene.attest_verify(&file);
    scene.verify_report(&scene.image, scene.report.as_str());

    // The signed map, by digest: the DSSE envelope linkguard wrote, whose payload is the map.
    let outdir = scene.path("oras-map");
    let pulled = oras(
        &python,
        &[
            "pull",
            &scene.addr,
            "app",
            scene.map_referrer.as_str(),
            s(&outdir),
        ],
    );
    assert_eq!(pulled["manifest"]["artifactType"], MAP, "{pulled}");
    let files = pulled["files"].as_array().unwrap();
    assert_eq!(files.len(), 1, "{pulled}");
    assert_eq!(files[0]["mediaType"], DSSE);
    let envelope: Value =
        serde_json::from_slice(&std::fs::read(files[0]["path"].as_str().unwrap()).unwrap())
            .unwrap();
    assert_eq!(envelope["payloadType"], MAP);
    use base64::Engine as _;
    let payload = base64::engine::general_purpose::STANDARD
        .decode(envelope["payload"].as_str().unwrap())
        .unwrap();
    assert_eq!(payload, scene.map);
    assert_eq!(envelope["signatures"].as_array().unwrap().len(), 1);
    // And linkguard accepts that very referrer as the image's signed map.
    let out = ok(&[
        "map",
        "pull",
        "--image",
        &scene.image,
        "--key",
        s(&scene.pubkey),
    ]);
    assert_eq!(out.stdout, scene.map);
    drop(registry);
}

#[test]
fn oras_py_pulls_what_linkguard_pushes_on_ferro() {
    oras_py_pulls_what_linkguard_pushes(
        Kind::Ferro,
        "oras_py_pulls_what_linkguard_pushes_on_ferro",
    );
}

#[test]
fn oras_py_pulls_what_linkguard_pushes_on_docker_registry() {
    oras_py_pulls_what_linkguard_pushes(
        Kind::Distribution,
        "oras_py_pulls_what_linkguard_pushes_on_docker_registry",
    );
}

/// oras_client.py push-referrer of `bundle` (written to a file) as a referrer of the scene's image.
fn oras_push(
    python: &Path,
    scene: &Scene,
    bundle: &[u8],
    style: &str,
    tag: &str,
    created: &str,
    update_fallback_index: bool,
) -> Value {
    let file = scene.path(&format!("{tag}.bundle.json"));
    std::fs::write(&file, bundle).unwrap();
    let predicate = format!("{PREDICATE_TYPE_ANNOTATION}={REPORT_PREDICATE}");
    let created = format!("{CREATED_ANNOTATION}={created}");
    let mut args = vec![
        "push-referrer",
        &scene.addr,
        "app",
        "--subject",
        scene.digest.as_str(),
        "--file",
        s(&file),
        "--media-type",
        BUNDLE,
        "--tag",
        tag,
        "--style",
        style,
        "--annotation",
        &predicate,
        "--annotation",
        &created,
    ];
    if update_fallback_index {
        args.push("--update-fallback-index");
    }
    oras(python, &args)
}

fn linkguard_finds_what_oras_py_pushes(kind: Kind, test: &str) {
    let python = match python_with_oras() {
        Ok(p) => p,
        Err(reason) => return unavailable(test, &reason),
    };
    let rt = runtime();
    let Some(registry) = start(&rt, kind, test) else {
        return;
    };
    let scene = Scene::new(&rt, &registry);
    let ours = scene.report.to_string();

    // An image-spec 1.1 artifact (artifactType + empty config) pushed by oras-py with a subject.
    let bundle = scene.sign("oras-artifact", "pass");
    let pushed = oras_push(
        &python,
        &scene,
        &bundle,
        "artifact-type",
        "oras-artifact",
        "2025-06-02T00:00:00Z",
        false,
    );
    let theirs = pushed["digest"].as_str().unwrap().to_owned();
    assert_eq!(pushed["artifactType"], BUNDLE);
    match kind {
        Kind::Ferro => {
            // The registry indexed the subject itself (and said so): found at once.
            assert_eq!(pushed["ociSubject"], scene.digest.as_str(), "{pushed}");
            assert_eq!(scene.reports(&scene.image), [theirs.clone(), ours.clone()]);
        }
        Kind::Distribution => {
            // No referrers API and oras-py does not maintain the fallback index: nothing makes the manifest
            // discoverable, so linkguard lists only its own report (it is still there, by digest).
            assert!(pushed["ociSubject"].is_null(), "{pushed}");
            assert_eq!(scene.reports(&scene.image), std::slice::from_ref(&ours));
            scene.verify_report(&scene.image, &theirs);
            // Once its pusher adds it to the fallback index (the spec's client duty, done through oras-py's
            // session), linkguard finds it, next to its own entries. Pushing again is idempotent.
            let again = oras_push(
                &python,
                &scene,
                &bundle,
                "artifact-type",
                "oras-artifact",
                "2025-06-02T00:00:00Z",
                true,
            );
            assert_eq!(again["digest"].as_str(), Some(theirs.as_str()), "{again}");
            assert_eq!(again["fallbackIndex"], "updated");
            assert_eq!(scene.reports(&scene.image), [theirs.clone(), ours.clone()]);
        }
    }
    scene.verify_report(&scene.image, &theirs);
    // Newest first: the latest report is oras-py's.
    let out = ok(&[
        "reports",
        "verify",
        "--image",
        &scene.image,
        "--key",
        s(&scene.pubkey),
    ]);
    assert!(
        text(&out.stdout).contains(&format!("OK: report {theirs}")),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(scene.pull_report(&theirs), bundle);

    // linkguard's next push keeps oras-py's entry in a shared fallback index.
    let later = scene.sign("later", "pass");
    let (newest, _) = rt.block_on(push_report(&scene.image, later, "2025-06-03T00:00:00Z"));
    assert_eq!(
        scene.reports(&scene.image),
        [newest.to_string(), theirs.clone(), ours.clone()]
    );

    // oras-py's high-level push(): no artifactType, the type is the config's mediaType, which the referrers
    // API (and the fallback index entry) report as the artifactType. linkguard must treat it as a report.
    let bundle = scene.sign("oras-config", "pass");
    let pushed = oras_push(
        &python,
        &scene,
        &bundle,
        "config-media-type",
        "oras-config",
        "2025-06-04T00:00:00Z",
        kind == Kind::Distribution,
    );
    let config_style = pushed["digest"].as_str().unwrap().to_owned();
    let raw = scene.raw_manifest(&rt, "app", &config_style).unwrap();
    let manifest: Value = serde_json::from_slice(&raw).unwrap();
    assert!(manifest.get("artifactType").is_none(), "{manifest}");
    assert_eq!(manifest["config"]["mediaType"], BUNDLE, "{manifest}");
    assert_eq!(scene.reports(&scene.image)[0], config_style);
    scene.verify_report(&scene.image, &config_style);
    assert_eq!(scene.pull_report(&config_style), bundle);
    drop(registry);
}

#[test]
fn linkguard_finds_what_oras_py_pushes_on_ferro() {
    linkguard_finds_what_oras_py_pushes(
        Kind::Ferro,
        "linkguard_finds_what_oras_py_pushes_on_ferro",
    );
}

#[test]
fn linkguard_finds_what_oras_py_pushes_on_docker_registry() {
    linkguard_finds_what_oras_py_pushes(
        Kind::Distribution,
        "linkguard_finds_what_oras_py_pushes_on_docker_registry",
    );
}

// ---- @sigstore/oci ------------------------------------------------------------------------------------

fn linkguard_finds_what_sigstore_oci_pushes(kind: Kind, test: &str) {
    let node = match node_with_sigstore_oci() {
        Ok(n) => n,
        Err(reason) => return unavailable(test, &reason),
    };
    let rt = runtime();
    let Some(registry) = start(&rt, kind, test) else {
        return;
    };
    let scene = Scene::new(&rt, &registry);
    let ours = scene.report.to_string();

    let bundle = scene.sign("sigstore-oci", "pass");
    let file = scene.path("sigstore-oci.bundle.json");
    std::fs::write(&file, &bundle).unwrap();
    let out = run(
        Command::new(&node)
            .arg(interop_script("sigstore_oci_attach.mjs"))
            .arg(format!("{}/app", scene.addr))
            .arg(scene.digest.as_str())
            .arg(&file)
            .arg(BUNDLE)
            .arg(format!("{PREDICATE_TYPE_ANNOTATION}={REPORT_PREDICATE}")),
        "sigstore_oci_attach.mjs",
    );
    let descriptor: Value = serde_json::from_slice(&out.stdout).unwrap();
    let theirs = descriptor["digest"].as_str().unwrap().to_owned();
    let raw = scene.raw_manifest(&rt, "app", &theirs).unwrap();
    assert_eq!(Digest::of(&raw).as_str(), theirs);
    let manifest: Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(manifest["artifactType"], BUNDLE, "{manifest}");
    assert_eq!(
        manifest["subject"]["digest"],
        scene.digest.as_str(),
        "{manifest}"
    );

    let fallback = scene.raw_manifest(&rt, "app", &scene.fallback_tag());
    match kind {
        // The registry has the referrers API and said so: @sigstore/oci wrote no fallback index.
        Kind::Ferro => assert!(fallback.is_none()),
        // It updated the fallback index linkguard had created, keeping linkguard's entries.
        Kind::Distribution => {
            let digests: Vec<String> = index_entries(&fallback.unwrap())
                .into_iter()
                .map(|(d, _)| d)
                .collect();
            assert_eq!(
                digests,
                [scene.map_referrer.to_string(), ours.clone(), theirs.clone()]
            );
        }
    }
    // Its created annotation is the push time: newer than linkguard's report.
    assert_eq!(scene.reports(&scene.image), [theirs.clone(), ours.clone()]);
    scene.verify_report(&scene.image, &theirs);
    let out = ok(&[
        "reports",
        "verify",
        "--image",
        &scene.image,
        "--key",
        s(&scene.pubkey),
    ]);
    assert!(
        text(&out.stdout).contains(&format!("OK: report {theirs}")),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(scene.pull_report(&theirs), bundle);

    // linkguard's next push keeps @sigstore/oci's entry.
    let later = scene.sign("later", "pass");
    let (newest, _) = rt.block_on(push_report(&scene.image, later, "2099-01-01T00:00:00Z"));
    assert_eq!(
        scene.reports(&scene.image),
        [newest.to_string(), theirs.clone(), ours]
    );
    scene.verify_report(&scene.image, &theirs);
    drop(registry);
}

#[test]
fn linkguard_finds_what_sigstore_oci_pushes_on_ferro() {
    linkguard_finds_what_sigstore_oci_pushes(
        Kind::Ferro,
        "linkguard_finds_what_sigstore_oci_pushes_on_ferro",
    );
}

#[test]
fn linkguard_finds_what_sigstore_oci_pushes_on_docker_registry() {
    linkguard_finds_what_sigstore_oci_pushes(
        Kind::Distribution,
        "linkguard_finds_what_sigstore_oci_pushes_on_docker_registry",
    );
}
