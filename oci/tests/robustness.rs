// SPDX-License-Identifier: Apache-2.0
//! linkguard-oci when registries misbehave, against real registries:
//! - Debian's docker-registry killed (by pid) while a large layer is being uploaded, then restarted
//!   on the same storage and port: the push fails with an error naming the registry and the
//!   operation, nothing stored before is damaged, and the push succeeds when tried again;
//! - hostile replies, injected by a small proxy on 127.0.0.1 in front of ferro-oci-server (or
//!   stored in a real registry): a manifest served as another media type, an image index where a
//!   manifest was expected, referrers entries of the wrong media type, a referrers list that is not
//!   an OCI index, a manifest whose bytes do not match its digest, an endless manifest;
//! - 429 with `Retry-After` and 503 replies: retried and then successful, and a bounded number of
//!   attempts before giving up with an error that says how many were made; 4xx never retried.
//!
//! Tests needing docker-registry print `SKIP` when it is missing, unless LINKGUARD_REQUIRE_INTEROP=1.
#![expect(
    clippy::unwrap_used,
    reason = "test harness: a failed setup step is a failed test"
)]

use std::collections::BTreeMap;
use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use linkguard_oci::transport::RetryPolicy;
use linkguard_oci::{
    Client, ClientConfig, Digest, Error, ImageIndex, Layer, OCI_INDEX, OCI_MANIFEST, Reference,
    ReferrerFilter, RegistryAuth,
};
use reqwest::header::HeaderValue;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

#[path = "support/registries.rs"]
mod registries;
use registries::{docker_registry, start_ferro};

const BUNDLE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";

/// Retries quick enough for tests: 3 attempts, 50 ms doubling to 200 ms.
fn quick_retries() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        initial_delay: Duration::from_millis(50),
        max_delay: Duration::from_millis(200),
        max_total: Duration::from_secs(20),
    }
}

fn client(retry: RetryPolicy) -> Client {
    Client::new(
        ClientConfig {
            retry,
            ..ClientConfig::default()
        },
        RegistryAuth::Anonymous,
    )
    .unwrap()
}

fn distribution_available(test: &str) -> bool {
    let bin = docker_registry();
    if bin.exists() {
        return true;
    }
    assert!(
        std::env::var("LINKGUARD_REQUIRE_INTEROP").as_deref() != Ok("1"),
        "{test}: {} is missing and LINKGUARD_REQUIRE_INTEROP=1",
        bin.display()
    );
    println!("SKIP {test}: {} is not installed", bin.display());
    false
}

/// Pushes a small OCI image tagged `v1` to `<addr>/app` (with oci-client, an independent client).
async fn push_app_image(addr: &str) -> (Reference, Digest) {
    let oci = oci_client::Client::new(oci_client::client::ClientConfig {
        protocol: oci_client::client::ClientProtocol::Http,
        ..Default::default()
    });
    let r = oci_client::Reference::with_tag(addr.to_owned(), "app".into(), "v1".into());
    oci.store_auth_if_needed(addr, &RegistryAuth::Anonymous)
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
    (format!("{addr}/app:v1").parse().unwrap(), digest)
}

fn report(i: usize, data: Vec<u8>) -> (Vec<Layer>, BTreeMap<String, String>) {
    let layers = vec![Layer {
        media_type: BUNDLE.to_owned(),
        data,
    }];
    let annotations = BTreeMap::from([(
        "org.opencontainers.image.created".to_owned(),
        format!("2026-11-22T04:{i:02}:00Z"),
    )]);
    (layers, annotations)
}

fn small_report(i: usize) -> (Vec<Layer>, BTreeMap<String, String>) {
    report(i, format!(r#"{{"replica":{i}}}"#).into_bytes())
}

// ---------------------------------------------------------------------------------------------
// A registry killed mid-push.

/// docker-registry as a child process that can be killed and started again on the same storage
/// root and port.
struct Distribution {
    child: Option<Child>,
    addr: String,
    dir: tempfile::TempDir,
}

impl Drop for Distribution {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Distribution {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = StdListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        std::fs::write(
            dir.path().join("config.yml"),
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
                 http:\n  addr: {addr}\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let mut registry = Self {
            child: None,
            addr,
            dir,
        };
        registry.spawn();
        registry
    }

    /// Starts docker-registry with the same configuration; waits (bounded) until it listens.
    fn spawn(&mut self) {
        let child = Command::new(docker_registry())
            .arg("serve")
            .arg(self.dir.path().join("config.yml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        for _ in 0..200 {
            if std::net::TcpStream::connect(&self.addr).is_ok() {
                return;
            }
            if let Some(Some(status)) = self.child.as_mut().map(|c| c.try_wait().unwrap()) {
                panic!(
                    "docker-registry exited with {status} before listening on {}",
                    self.addr
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "docker-registry did not listen on {} within 10 s",
            self.addr
        );
    }

    /// SIGKILL to exactly this pid (`Child::kill`), then reaps it.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn uploads(&self) -> PathBuf {
        self.dir
            .path()
            .join("data/docker/registry/v2/repositories/app/_uploads")
    }
}

/// The largest `data` file of an upload in progress under `uploads`.
fn upload_in_flight(uploads: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(uploads) else {
        return 0;
    };
    entries
        .flatten()
        .filter_map(|e| std::fs::metadata(e.path().join("data")).ok())
        .map(|m| m.len())
        .max()
        .unwrap_or(0)
}

/// Reads the `sha256-<hex>` fallback tag directly (not through the client under test).
async fn fallback_index(addr: &str, subject: &Digest) -> ImageIndex {
    let resp = reqwest::Client::new()
        .get(format!(
            "http://{addr}/v2/app/manifests/{}",
            subject.fallback_tag()
        ))
        .header("accept", OCI_INDEX)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200, "the fallback tag must exist");
    serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_killed_mid_push_then_restarted() {
    const TEST: &str = "registry_killed_mid_push_then_restarted";
    if !distribution_available(TEST) {
        return;
    }
    let mut registry = Distribution::start();
    let addr = registry.addr.clone();
    let (app, app_digest) = push_app_image(&addr).await;
    let c = Arc::new(client(quick_retries()));
    let mut earlier = Vec::new();
    for i in 0..2 {
        let (layers, annotations) = small_report(i);
        let pushed = c
            .push_artifact(&app, BUNDLE, layers, annotations)
            .await
            .unwrap();
        earlier.push(pushed.descriptor.digest);
    }

    // A report with a 48 MiB layer (incompressible bytes, so no layer of the stack shortens it).
    let mut big = vec![0u8; 48 << 20];
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for chunk in big.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    let big_digest = Digest::of(&big);
    let (layers, annotations) = report(9, big);
    let push = {
        let (c, app, layers, annotations) =
            (c.clone(), app.clone(), layers.clone(), annotations.clone());
        tokio::spawn(async move { c.push_artifact(&app, BUNDLE, layers, annotations).await })
    };

    // Kill the registry once the upload has reached its storage, before it is complete: bounded
    // wait of 30 s, polling every millisecond.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = 0;
    while Instant::now() < deadline && !push.is_finished() {
        seen = upload_in_flight(&registry.uploads());
        if seen >= 1 << 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert!(
        seen >= 1 << 20 && !push.is_finished(),
        "the upload was not caught in flight (largest upload file: {seen} bytes)"
    );
    registry.kill();
    let killed_at = Instant::now();
    println!(
        "killed docker-registry with {seen} of {} bytes uploaded",
        48 << 20
    );

    // The push fails (a hang guard of 120 s, not a timing assertion) with an error naming the
    // registry, the repository and the operation, after the bounded retries.
    let result = tokio::time::timeout(Duration::from_secs(120), push)
        .await
        .expect("the push must end after the retry policy gives up")
        .unwrap();
    let err = result.expect_err("the push cannot succeed: the registry is gone");
    let message = err.to_string();
    println!(
        "push to a killed registry: {message} ({:?} after the kill)",
        killed_at.elapsed()
    );
    assert!(
        matches!(err, Error::RetriesExhausted { attempts: 3, .. }),
        "{err:?}"
    );
    assert!(
        message.contains(&format!("push artifact on {addr}/app")),
        "{message}"
    );
    assert!(message.contains("gave up after 3 attempts"), "{message}");

    // Same storage, same port: what was stored before is intact.
    registry.spawn();
    let index = fallback_index(&addr, &app_digest).await;
    assert_eq!(index.media_type.as_deref(), Some(OCI_INDEX));
    let mut in_index: Vec<_> = index.manifests.iter().map(|d| d.digest.clone()).collect();
    in_index.sort();
    let mut expected = earlier.clone();
    expected.sort();
    assert_eq!(
        in_index, expected,
        "the fallback index keeps the earlier entries"
    );
    let mut listed: Vec<_> = c
        .list_referrers(&app, &ReferrerFilter::default())
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.digest)
        .collect();
    listed.sort();
    assert_eq!(listed, expected);
    for digest in &earlier {
        c.pull_referrer(&app, &digest.parse().unwrap())
            .await
            .unwrap();
    }
    let head = reqwest::Client::new()
        .head(format!("http://{addr}/v2/app/blobs/{big_digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        head.status().as_u16(),
        404,
        "the interrupted upload left no blob"
    );

    // The same push again succeeds and is listed; its layer comes back intact.
    let pushed = c
        .push_artifact(&app, BUNDLE, layers.clone(), annotations)
        .await
        .unwrap();
    let listed = c
        .list_referrers(&app, &ReferrerFilter::default())
        .await
        .unwrap();
    assert_eq!(listed.len(), 3);
    assert!(listed.iter().any(|d| d.digest == pushed.descriptor.digest));
    let artifact = c
        .pull_referrer(&app, &pushed.descriptor.digest.parse().unwrap())
        .await
        .unwrap();
    assert_eq!(Digest::of(&artifact.layers[0].1), big_digest);
}

// ---------------------------------------------------------------------------------------------
// A proxy that forwards to a real registry and rewrites chosen replies.

/// A reply, forwarded from the registry or made up.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn new(status: u16, headers: &[(&str, &str)], body: &[u8]) -> Self {
        Self {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            body: body.to_vec(),
        }
    }

    fn set_header(&mut self, name: &str, value: &str) {
        self.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        self.headers.push((name.to_owned(), value.to_owned()));
    }
}

/// What the proxy does with one request.
enum Plan {
    Forward,
    Respond(Reply),
    Rewrite(Box<dyn FnOnce(&mut Reply) + Send>),
}

type Rules = dyn Fn(&str, &str) -> Plan + Send + Sync;

#[derive(Clone)]
struct ProxyState {
    upstream: String,
    http: reqwest::Client,
    rules: Arc<Mutex<Arc<Rules>>>,
    seen: Arc<Mutex<Vec<(String, String, Instant)>>>,
}

/// The proxy: `addr` to use as the registry, `seen` the requests (method, path, time).
struct Proxy {
    addr: String,
    state: ProxyState,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Proxy {
    async fn start(upstream: &str) -> Self {
        let state = ProxyState {
            upstream: upstream.to_owned(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            rules: Arc::new(Mutex::new(Arc::new(|_: &str, _: &str| Plan::Forward))),
            seen: Arc::new(Mutex::new(Vec::new())),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let app = axum::Router::new()
            .fallback(proxy_handler)
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, state, task }
    }

    /// Replaces the rules: `rules(method, path_and_query)` decides each request.
    fn rules(&self, rules: impl Fn(&str, &str) -> Plan + Send + Sync + 'static) {
        *self.state.rules.lock().unwrap() = Arc::new(rules);
        self.state.seen.lock().unwrap().clear();
    }

    /// Requests seen since the rules were set, matching `method` and containing `path`.
    fn seen(&self, method: &str, path: &str) -> Vec<Instant> {
        self.state
            .seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(m, p, _)| m == method && p.contains(path))
            .map(|(_, _, at)| *at)
            .collect()
    }
}

async fn proxy_handler(
    axum::extract::State(state): axum::extract::State<ProxyState>,
    request: axum::extract::Request,
) -> axum::response::Response {
    let method = request.method().as_str().to_owned();
    let path = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    state
        .seen
        .lock()
        .unwrap()
        .push((method.clone(), path.clone(), Instant::now()));
    let rules = state.rules.lock().unwrap().clone();
    let plan = rules(&method, &path);
    let reply = match plan {
        Plan::Respond(reply) => reply,
        Plan::Forward | Plan::Rewrite(_) => {
            let mut reply = forward(&state, request, &path).await;
            if let Plan::Rewrite(rewrite) = plan {
                rewrite(&mut reply);
            }
            reply
        }
    };
    let mut response = axum::response::Response::builder().status(reply.status);
    for (name, value) in &reply.headers {
        response = response.header(name, value);
    }
    response.body(axum::body::Body::from(reply.body)).unwrap()
}

async fn forward(state: &ProxyState, request: axum::extract::Request, path: &str) -> Reply {
    let method = request.method().clone();
    let headers = request.headers().clone();
    let body = axum::body::to_bytes(request.into_body(), usize::MAX)
        .await
        .unwrap();
    let mut upstream = state
        .http
        .request(method, format!("http://{}{path}", state.upstream))
        .body(body);
    for (name, value) in &headers {
        if !matches!(
            name.as_str(),
            "host" | "content-length" | "transfer-encoding"
        ) {
            upstream = upstream.header(name, value);
        }
    }
    let resp = upstream.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .filter(|(name, _)| {
            !matches!(
                name.as_str(),
                "content-length" | "transfer-encoding" | "connection"
            )
        })
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let body = resp.bytes().await.unwrap().to_vec();
    Reply {
        status,
        headers,
        body,
    }
}

fn json_mut(body: &mut Vec<u8>, edit: impl FnOnce(&mut serde_json::Value)) {
    let mut value: serde_json::Value = serde_json::from_slice(body).unwrap();
    edit(&mut value);
    *body = serde_json::to_vec(&value).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_replies_through_a_proxy_are_refused() {
    let ferro = start_ferro().await;
    let proxy = Proxy::start(&ferro.addr).await;
    let c = client(quick_retries());
    let (app, _) = push_app_image(&proxy.addr).await;
    let (layers, annotations) = small_report(1);
    let pushed = c
        .push_artifact(&app, BUNDLE, layers, annotations)
        .await
        .unwrap();
    let digest: Digest = pushed.descriptor.digest.parse().unwrap();
    c.pull_referrer(&app, &digest).await.unwrap();
    let manifest_path = format!("/v2/app/manifests/{digest}");

    // The artifact manifest served with an image index Content-Type.
    let path = manifest_path.clone();
    proxy.rules(move |method, p| {
        if method == "GET" && p == path {
            Plan::Rewrite(Box::new(|r| r.set_header("content-type", OCI_INDEX)))
        } else {
            Plan::Forward
        }
    });
    let err = c.pull_referrer(&app, &digest).await.unwrap_err();
    assert!(matches!(err, Error::InvalidManifest { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains(&format!(
            "the registry served it as {OCI_INDEX}, but {OCI_MANIFEST} was requested"
        )),
        "{message}"
    );
    assert!(
        message.contains(&format!("pull artifact on {}/app", proxy.addr)),
        "{message}"
    );

    // Bytes that do not hash to the digest they were asked by (one annotation changed).
    let path = manifest_path.clone();
    proxy.rules(move |method, p| {
        if method == "GET" && p == path {
            Plan::Rewrite(Box::new(|r| {
                json_mut(&mut r.body, |v| {
                    v["annotations"]["org.opencontainers.image.created"] =
                        "1999-01-01T00:00:00Z".into();
                });
            }))
        } else {
            Plan::Forward
        }
    });
    let err = c.pull_referrer(&app, &digest).await.unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err:?}");

    // The referrers list as a Docker manifest list, not an OCI index: the listing is refused.
    proxy.rules(|method, p| {
        if method == "GET" && p.contains("/referrers/") {
            Plan::Rewrite(Box::new(|r| {
                json_mut(&mut r.body, |v| {
                    v["mediaType"] =
                        "application/vnd.docker.distribution.manifest.list.v2+json".into();
                });
            }))
        } else {
            Plan::Forward
        }
    });
    let err = c
        .list_referrers(&app, &ReferrerFilter::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidManifest { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("its mediaType is application/vnd.docker.distribution.manifest.list.v2+json, but application/vnd.oci.image.index.v1+json was requested"),
        "{err}"
    );

    // Entries of the wrong media type are not listed (nor, then, pulled by callers of the list).
    proxy.rules(|method, p| {
        if method == "GET" && p.contains("/referrers/") {
            Plan::Rewrite(Box::new(|r| {
                json_mut(&mut r.body, |v| {
                    for entry in v["manifests"].as_array_mut().unwrap() {
                        entry["mediaType"] = OCI_INDEX.into();
                    }
                });
            }))
        } else {
            Plan::Forward
        }
    });
    let listed = c
        .list_referrers(&app, &ReferrerFilter::default())
        .await
        .unwrap();
    assert!(listed.is_empty(), "{listed:?}");
    proxy.rules(|_, _| Plan::Forward);
    assert_eq!(
        c.list_referrers(&app, &ReferrerFilter::default())
            .await
            .unwrap()
            .len(),
        1
    );

    // A paginated referrers list (RFC 8288 `Link: <...>; rel="next"`) is read to its end.
    let (layers, annotations) = small_report(2);
    let second = c
        .push_artifact(&app, BUNDLE, layers, annotations)
        .await
        .unwrap();
    proxy.rules(|method, p| {
        if method != "GET" || !p.contains("/referrers/") {
            return Plan::Forward;
        }
        let first_page = !p.contains("page=2");
        let link = format!(
            "<{}{}page=2>; rel=\"next\"",
            p,
            if p.contains('?') { "&" } else { "?" }
        );
        Plan::Rewrite(Box::new(move |r| {
            json_mut(&mut r.body, |v| {
                let all = v["manifests"].as_array().unwrap().clone();
                v["manifests"] = if first_page {
                    all[..1].to_vec()
                } else {
                    all[1..].to_vec()
                }
                .into();
            });
            if first_page {
                r.set_header("link", &link);
            }
        }))
    });
    let mut listed: Vec<_> = c
        .list_referrers(&app, &ReferrerFilter::default())
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.digest)
        .collect();
    listed.sort();
    let mut expected = vec![
        pushed.descriptor.digest.clone(),
        second.descriptor.digest.clone(),
    ];
    expected.sort();
    assert_eq!(listed, expected);
    assert_eq!(proxy.seen("GET", "/referrers/").len(), 2, "two pages");

    // A list whose next page is always itself is refused after a bounded number of pages.
    proxy.rules(|method, p| {
        if method == "GET" && p.contains("/referrers/") {
            let link = format!("<{p}>; rel=\"next\"");
            Plan::Rewrite(Box::new(move |r| r.set_header("link", &link)))
        } else {
            Plan::Forward
        }
    });
    let err = c
        .list_referrers(&app, &ReferrerFilter::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Protocol { .. }), "{err:?}");
    assert!(err.to_string().contains("more than 64 pages"), "{err}");
    assert_eq!(proxy.seen("GET", "/referrers/").len(), 64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_index_is_not_accepted_as_a_referrer_manifest() {
    const TEST: &str = "an_image_index_is_not_accepted_as_a_referrer_manifest";
    let ferro = start_ferro().await;
    let distribution = distribution_available(TEST).then(registries::start_distribution);
    let mut registries = vec![("ferro", ferro.addr.clone())];
    if let Some(d) = &distribution {
        registries.push(("docker-registry", d.addr.clone()));
    }
    for (kind, addr) in &registries {
        let c = client(quick_retries());
        let (app, app_digest) = push_app_image(addr).await;
        // An OCI image index with the image as its subject: a valid document, but not an artifact.
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "artifactType": BUNDLE,
            "manifests": [],
            "subject": {"mediaType": OCI_MANIFEST, "digest": app_digest.as_str(), "size": 1},
        });
        let body = serde_json::to_vec(&index).unwrap();
        let index_digest = Digest::of(&body);
        let put = reqwest::Client::new()
            .put(format!("http://{addr}/v2/app/manifests/{index_digest}"))
            .header("content-type", OCI_INDEX)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert!(put.status().is_success(), "{kind}: {}", put.status());
        if *kind == "docker-registry" {
            // The fallback index, written by a careless client, lists it as a manifest.
            let fallback = serde_json::json!({
                "schemaVersion": 2, "mediaType": OCI_INDEX,
                "manifests": [{"mediaType": OCI_MANIFEST, "digest": index_digest.as_str(),
                               "size": body.len(), "artifactType": BUNDLE}],
            });
            let put = reqwest::Client::new()
                .put(format!(
                    "http://{addr}/v2/app/manifests/{}",
                    app_digest.fallback_tag()
                ))
                .header("content-type", OCI_INDEX)
                .body(serde_json::to_vec(&fallback).unwrap())
                .send()
                .await
                .unwrap();
            assert!(put.status().is_success());
        } else {
            // ferro lists it with its true media type, which is not an image manifest: not listed.
            let listed = c
                .list_referrers(&app, &ReferrerFilter::default())
                .await
                .unwrap();
            assert!(listed.is_empty(), "{kind}: {listed:?}");
        }
        // ferro serves the index anyway and the client refuses it; distribution itself refuses to
        // serve an index to a client that accepts only image manifests.
        let err = c.pull_referrer(&app, &index_digest).await.unwrap_err();
        let message = err.to_string();
        println!("{kind}: {message}");
        match (*kind, &err) {
            ("ferro", Error::InvalidManifest { .. }) => {
                assert!(
                    message.contains(&format!("served it as {OCI_INDEX}")),
                    "{message}"
                );
            }
            ("docker-registry", Error::NotFound { .. }) => {}
            _ => panic!("{kind}: {err:?}"),
        }
        assert!(
            message.contains(&format!("pull artifact on {addr}/app")),
            "{kind}: {message}"
        );
        assert!(message.contains(index_digest.as_str()), "{kind}: {message}");
    }
    drop(distribution);
}

/// A server that answers every request with an endless chunked manifest (no Content-Length).
async fn endless_manifest_server() -> (String, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let written = Arc::new(AtomicUsize::new(0));
    let counter = written.clone();
    let task = tokio::spawn(async move {
        // Bounded: a handful of connections, 64 MiB each at most.
        for _ in 0..8 {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let mut request = vec![0u8; 16 * 1024];
            let _ = socket.read(&mut request).await;
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: {OCI_MANIFEST}\r\ntransfer-encoding: chunked\r\n\r\n"
            );
            if socket.write_all(head.as_bytes()).await.is_err() {
                continue;
            }
            let chunk = vec![b' '; 64 * 1024];
            for _ in 0..1024 {
                let frame = [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat();
                if socket.write_all(&frame).await.is_err() {
                    break;
                }
                counter.fetch_add(chunk.len(), Ordering::Relaxed);
            }
        }
    });
    (addr, written, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_manifest_is_cut_off_at_the_limit() {
    let (addr, written, task) = endless_manifest_server().await;
    let c = client(quick_retries());
    let app: Reference = format!("{addr}/app@{}", Digest::of(b"x")).parse().unwrap();
    let err = c.pull_artifact(&app, &Digest::of(b"x")).await.unwrap_err();
    assert!(
        matches!(err, Error::TooLarge { limit, .. } if limit == linkguard_oci::DEFAULT_MAX_MANIFEST_BYTES),
        "{err:?}"
    );
    println!(
        "server wrote {} bytes before the client hung up",
        written.load(Ordering::Relaxed)
    );
    task.abort();
}

// ---------------------------------------------------------------------------------------------
// 429, 503 and retries.

const TOO_MANY: &[u8] = br#"{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}"#;
const UNAVAILABLE: &[u8] = br#"{"errors":[{"code":"UNAVAILABLE","message":"try later"}]}"#;

/// The first `n` requests matching `method` and `path` get `reply()`, the others are forwarded.
fn first_n(
    n: usize,
    method: &'static str,
    path: String,
    reply: impl Fn() -> Reply + Send + Sync + 'static,
) -> impl Fn(&str, &str) -> Plan + Send + Sync + 'static {
    let count = AtomicUsize::new(0);
    move |m, p| {
        if m == method && p.contains(&path) && count.fetch_add(1, Ordering::SeqCst) < n {
            Plan::Respond(reply())
        } else {
            Plan::Forward
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_and_unavailable_registries_are_retried_within_bounds() {
    let ferro = start_ferro().await;
    let proxy = Proxy::start(&ferro.addr).await;
    let c = client(quick_retries());
    let (app, app_digest) = push_app_image(&proxy.addr).await;

    // 429 with Retry-After: 1 twice, then the real answer: resolved, and each retry waited the
    // second the registry asked for (far longer than the 50-200 ms backoff would).
    proxy.rules(first_n(2, "GET", "/v2/app/manifests/v1".into(), || {
        Reply::new(
            429,
            &[("retry-after", "1"), ("content-type", "application/json")],
            TOO_MANY,
        )
    }));
    assert_eq!(c.resolve(&app).await.unwrap(), app_digest);
    let seen = proxy.seen("GET", "/v2/app/manifests/v1");
    assert_eq!(seen.len(), 3, "two throttled attempts and a good one");
    for pair in seen.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= Duration::from_millis(950),
            "Retry-After ignored: {gap:?}"
        );
    }

    // 503 on the upload start, then the real registry: the push succeeds.
    proxy.rules(first_n(1, "POST", "/blobs/uploads/".into(), || {
        Reply::new(503, &[("content-type", "application/json")], UNAVAILABLE)
    }));
    let (layers, annotations) = small_report(1);
    let pushed = c
        .push_artifact(&app, BUNDLE, layers, annotations)
        .await
        .unwrap();
    // Every blob upload is a POST and a PUT; the refused POST is the one extra.
    assert_eq!(
        proxy.seen("POST", "/blobs/uploads/").len(),
        proxy.seen("PUT", "/blobs/uploads/").len() + 1,
        "the refused upload start was tried again"
    );
    let listed = c
        .list_referrers(&app, &ReferrerFilter::default())
        .await
        .unwrap();
    assert_eq!(listed[0].digest, pushed.descriptor.digest);

    // 503 forever: the client gives up after the policy's 3 attempts and says so.
    proxy.rules(first_n(
        usize::MAX,
        "GET",
        "/v2/app/manifests/v1".into(),
        || Reply::new(503, &[("content-type", "application/json")], UNAVAILABLE),
    ));
    let err = c.resolve(&app).await.unwrap_err();
    let message = err.to_string();
    println!("{message}");
    assert!(
        matches!(err, Error::RetriesExhausted { attempts: 3, .. }),
        "{err:?}"
    );
    assert_eq!(proxy.seen("GET", "/v2/app/manifests/v1").len(), 3);
    assert!(
        message.contains(&format!("resolve on {}/app", proxy.addr)),
        "{message}"
    );
    assert!(
        message.contains("HTTP 503: UNAVAILABLE: try later"),
        "{message}"
    );
    assert!(message.contains("gave up after 3 attempts"), "{message}");

    // 429 with a Retry-After past the policy's total budget: no pointless wait, one attempt.
    let patient = client(RetryPolicy {
        max_total: Duration::from_secs(5),
        ..quick_retries()
    });
    proxy.rules(first_n(
        usize::MAX,
        "GET",
        "/v2/app/manifests/v1".into(),
        || Reply::new(429, &[("retry-after", "3600")], TOO_MANY),
    ));
    let started = Instant::now();
    let err = patient.resolve(&app).await.unwrap_err();
    assert!(
        matches!(err, Error::Rejected { status: 429, .. }),
        "{err:?}"
    );
    assert_eq!(proxy.seen("GET", "/v2/app/manifests/v1").len(), 1);
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "it must not wait an hour"
    );

    // 4xx are never retried: a missing tag, a refusal, a bad request.
    proxy.rules(|_, _| Plan::Forward);
    let missing: Reference = format!("{}/app:nope", proxy.addr).parse().unwrap();
    assert!(matches!(
        c.resolve(&missing).await.unwrap_err(),
        Error::NotFound { .. }
    ));
    assert_eq!(proxy.seen("GET", "/v2/app/manifests/nope").len(), 1);
    for status in [401u16, 403, 400] {
        proxy.rules(first_n(
            usize::MAX,
            "GET",
            "/v2/app/manifests/v1".into(),
            move || Reply::new(status, &[], b""),
        ));
        let err = c.resolve(&app).await.unwrap_err();
        assert_eq!(
            proxy.seen("GET", "/v2/app/manifests/v1").len(),
            1,
            "HTTP {status} must not be retried: {err}"
        );
        if status != 400 {
            assert!(matches!(err, Error::Auth { .. }), "{status}: {err:?}");
            assert!(
                err.to_string()
                    .contains("anonymous access (no credentials configured)"),
                "{err}"
            );
        }
    }
}
