// SPDX-License-Identifier: Apache-2.0
//! The report chain and the spool against real registries: ferro-oci-server in-process (referrers API)
//! and, when installed, Debian's docker-registry (tag-schema fallback) as a child process.
//!
//! Reports are real `linkguard verify` output, stamped with chain links by the sidecar's own chain and
//! spool (linkguard::chain, linkguard::daemon::spool), signed, spooled and pushed by its publisher;
//! `linkguard reports verify-chain` (the binary) must pass an intact chain and name the report at fault
//! in a missing, altered, reordered or badly signed one. The spool test takes the registry away (its
//! port closed) while reports accumulate, brings it back, and checks they arrive in order.
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test harness: a failed setup step is a failed test"
)]

use std::path::Path;
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeZone as _, Utc};
use linkguard::attest::{SigningKey, sign_statement};
use linkguard::chain::{Chain, ChainLink};
use linkguard::daemon::spool::{BackoffPolicy, Publisher, Spool, SpoolEntry, push_report};
use linkguard::report::{PodIdentity, ReportContext, Statement};
use linkguard_integration_tests::{fixture, interop_required, linkguard};
use linkguard_oci::transport::RetryPolicy;
use linkguard_oci::{Client, ClientConfig, Digest, OCI_MANIFEST, Reference, RegistryAuth};
use reqwest::header::HeaderValue;

#[path = "../oci/tests/support/registries.rs"]
mod registries;
use registries::{docker_registry, start_distribution, start_ferro};

/// The digest the curl-tls fixture map is bound to.
const FIXTURE_HEX: &str = "4d6f6a1fbbd5cd3ba8e6b7ea5f4bb5a4b1a0a1e3e2f6c3d1b0a9f8e7d6c5b4a3";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A client that gives up at once on a refused connection (the publisher's rounds do the retrying).
fn client() -> Client {
    let config = ClientConfig {
        retry: RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        },
        ..ClientConfig::default()
    };
    Client::new(config, RegistryAuth::Anonymous).unwrap()
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

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A real report about `digest`: `linkguard verify` of the curl-tls fixture map bound to it.
fn base_statement(dir: &Path, digest: &Digest) -> Statement {
    let map = std::fs::read_to_string(fixture("maps/curl-tls.json")).unwrap();
    let bound = dir.join(format!("map-{}.json", &digest.hex()[..12]));
    std::fs::write(&bound, map.replace(FIXTURE_HEX, digest.hex())).unwrap();
    let out = linkguard(&[
        "verify",
        "--function-map",
        s(&bound),
        "--observations",
        s(&fixture("observations/curl-pass.ndjson")),
        "--format",
        "json",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn minute(m: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 10, 0, 0).unwrap() + chrono::Duration::minutes(m)
}

/// The pod `demo/<name>`.
fn pod(name: &str) -> PodIdentity {
    PodIdentity {
        name: Some(name.to_owned()),
        namespace: Some("demo".to_owned()),
        node: Some("worker-1".to_owned()),
        container: Some("app".to_owned()),
    }
}

/// `base` stamped as the sidecar does (pod, chain link, generation time) and signed.
fn signed(
    base: &Statement,
    pod: &PodIdentity,
    link: &ChainLink,
    at: DateTime<Utc>,
    key: &SigningKey,
) -> Vec<u8> {
    let statement = stamped(base, pod, link, at);
    sign_statement(&statement.to_json(), key)
        .unwrap()
        .to_json_pretty()
}

/// `base` with the pod, the chain link and the generation time, through the report context.
fn stamped(base: &Statement, pod: &PodIdentity, link: &ChainLink, at: DateTime<Utc>) -> Statement {
    let mut ctx = ReportContext::now();
    ctx.pod = Some(pod.clone());
    ctx.generated_at = at;
    link.apply(&mut ctx);
    let mut statement = base.clone();
    let p = &mut statement.predicate;
    p.pod = ctx.pod;
    p.sequence = ctx.sequence;
    p.previous = ctx.previous;
    p.chain_start = ctx.chain_start;
    p.chain_resumed = ctx.chain_resumed;
    p.missed_reports = ctx.missed_reports;
    p.generated_at = ctx.generated_at;
    statement
}

/// A sidecar's producing half: its chain and spool in `dir`.
struct Producer {
    spool: Spool,
    chain: Chain,
    pod: PodIdentity,
    base: Statement,
}

impl Producer {
    fn open(dir: &Path, pod: PodIdentity, base: &Statement) -> Self {
        let (spool, _) = Spool::open(dir, 1 << 20).unwrap();
        let key = linkguard::chain::pod_key(Some(&pod));
        let (chain, _) = spool.open_chain(&key).unwrap();
        Self {
            spool,
            chain,
            pod,
            base: base.clone(),
        }
    }

    /// Signs and spools the next report, generated at minute `at`.
    fn produce(&mut self, key: &SigningKey, at: i64) -> SpoolEntry {
        let link = self.chain.next_link();
        let bundle = signed(&self.base, &self.pod, &link, minute(at), key);
        self.spool.enqueue(&mut self.chain, &link, &bundle).unwrap()
    }
}

/// Pushes what `spool` holds in order; panics unless everything went.
async fn publish(spool: &Spool, subject: &Reference) -> Vec<String> {
    let mut publisher = Publisher::new(client(), subject.clone(), BackoffPolicy::default());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let out = publisher.drain_until(spool, deadline).await;
    assert!(out.last_error.is_none(), "{:?}", out.last_error);
    assert_eq!(out.remaining, 0);
    out.pushed.into_iter().map(|p| p.manifest).collect()
}

/// Pushes the spooled `entries` (a chosen subset, in the given order) without removing them.
async fn push_entries(spool: &Spool, subject: &Reference, entries: &[&SpoolEntry]) -> Vec<String> {
    let client = client();
    let mut manifests = Vec::new();
    for e in entries {
        let bytes = spool.read(e).unwrap();
        let pushed = push_report(&client, subject, bytes, e.generated_at)
            .await
            .unwrap();
        manifests.push(pushed.descriptor.digest);
    }
    manifests
}

fn verify_chain(image: &str, pubkey: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "reports",
        "verify-chain",
        "--image",
        image,
        "--key",
        s(pubkey),
    ];
    args.extend_from_slice(extra);
    linkguard(&args)
}

#[track_caller]
fn expect(out: &Output, code: i32, needles: &[&str]) {
    let text = stdout(out);
    assert_eq!(
        out.status.code(),
        Some(code),
        "exit status; stdout:\n{text}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in needles {
        assert!(text.contains(needle), "{needle:?} not in:\n{text}");
    }
}

/// Every verify-chain case against the registry at `addr`, each on its own repository.
fn chain_scenarios(rt: &tokio::runtime::Runtime, addr: &str) {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate();
    let pubkey = dir.path().join("k.pub");
    std::fs::write(&pubkey, key.verifying_key().to_spki_pem()).unwrap();
    let other_key = SigningKey::generate();
    let setup = |repo: &str| {
        let (image, digest) = rt.block_on(push_image(addr, repo));
        let subject: Reference = format!("{addr}/{repo}@{digest}").parse().unwrap();
        let base = base_statement(dir.path(), &digest);
        (image, subject, base)
    };

    // Intact: five reports of one pod, spooled and published by the sidecar's publisher.
    let (image, subject, base) = setup("intact");
    let mut p = Producer::open(&dir.path().join("intact"), pod("app-1"), &base);
    for m in 1..=5 {
        p.produce(&key, m);
    }
    let pushed = rt.block_on(publish(&p.spool, &subject));
    assert_eq!(pushed.len(), 5);
    let out = verify_chain(&image, &pubkey, &[]);
    expect(
        &out,
        0,
        &[
            "pod demo/app-1: sequences 1..5, 5 report(s), chain starts at 1, intact",
            "OK: every chain is intact",
        ],
    );
    // The pod filter, by name and by namespace/name; an unknown pod has nothing to verify.
    expect(
        &verify_chain(&image, &pubkey, &["--pod", "app-1"]),
        0,
        &["OK"],
    );
    expect(
        &verify_chain(&image, &pubkey, &["--pod", "demo/app-1"]),
        0,
        &["OK"],
    );
    expect(
        &verify_chain(&image, &pubkey, &["--pod", "app-2"]),
        1,
        &["FAIL: no chained report of pod app-2"],
    );
    // Another key: every report is rejected, by digest.
    let wrong_pub = dir.path().join("w.pub");
    std::fs::write(&wrong_pub, other_key.verifying_key().to_spki_pem()).unwrap();
    expect(
        &verify_chain(&image, &wrong_pub, &[]),
        1,
        &[
            &format!("rejected: report {}: bad signature", pushed[0]),
            "FAIL: 5 problem(s)",
        ],
    );

    // Missing: reports 1, 2, 4 and 5 reach the registry, 3 does not.
    let (image, subject, base) = setup("gap");
    let mut p = Producer::open(&dir.path().join("gap"), pod("app-1"), &base);
    let e: Vec<SpoolEntry> = (1..=5).map(|m| p.produce(&key, m)).collect();
    let m = rt.block_on(push_entries(
        &p.spool,
        &subject,
        &[&e[0], &e[1], &e[3], &e[4]],
    ));
    expect(
        &verify_chain(&image, &pubkey, &[]),
        1,
        &[
            &format!("missing: 3 between seq 2 ({}) and seq 4 ({})", m[1], m[2]),
            "FAIL: 1 problem(s)",
        ],
    );

    // Altered: report 3 re-signed (valid signature) with another previous.
    let (image, subject, base) = setup("altered");
    let mut p = Producer::open(&dir.path().join("altered"), pod("app-1"), &base);
    let e: Vec<SpoolEntry> = (1..=4).map(|m| p.produce(&key, m)).collect();
    let forged_link = ChainLink {
        sequence: 3,
        previous: Some("00".repeat(32)),
        chain_start: false,
        chain_resumed: false,
        missed_reports: 0,
    };
    let forged = signed(&base, &pod("app-1"), &forged_link, minute(3), &key);
    let m = rt.block_on(push_entries(&p.spool, &subject, &[&e[0], &e[1], &e[3]]));
    let forged_manifest = rt
        .block_on(push_report(&client(), &subject, forged, minute(3)))
        .unwrap()
        .descriptor
        .digest;
    expect(
        &verify_chain(&image, &pubkey, &[]),
        1,
        &[
            &format!(
                "altered: report seq 3 ({forged_manifest}) says previous=sha256:{} but its predecessor seq 2 ({})",
                "00".repeat(32),
                m[1]
            ),
            &format!("its successor seq 4 ({}) does not name it either", m[2]),
            &format!("seq 3 ({forged_manifest}) was altered or replaced"),
        ],
    );

    // Reordered: report 3 claims to be generated before report 2 (honestly linked otherwise).
    let (image, subject, base) = setup("reordered");
    let mut p = Producer::open(&dir.path().join("reordered"), pod("app-1"), &base);
    p.produce(&key, 1);
    p.produce(&key, 5);
    p.produce(&key, 3);
    let m = rt.block_on(publish(&p.spool, &subject));
    expect(
        &verify_chain(&image, &pubkey, &[]),
        1,
        &[
            &format!(
                "reordered: report seq 3 ({}) was generated at 2026-03-01T10:03:00.000Z before its \
                 predecessor seq 2 ({}) (2026-03-01T10:05:00.000Z)",
                m[2], m[1]
            ),
            "FAIL: 1 problem(s)",
        ],
    );

    // Restart: the sidecar stops after 2 reports and continues from its spool directory; later its state
    // is lost and a new chain starts. Both are notices, not problems; the first report after the
    // restart says chainResumed.
    let (image, subject, base) = setup("restart");
    let spool_dir = dir.path().join("restart");
    let mut p = Producer::open(&spool_dir, pod("app-1"), &base);
    p.produce(&key, 1);
    p.produce(&key, 2);
    rt.block_on(publish(&p.spool, &subject));
    drop(p);
    let mut p = Producer::open(&spool_dir, pod("app-1"), &base);
    let resumed = p.produce(&key, 3);
    p.produce(&key, 4);
    let m = rt.block_on(publish(&p.spool, &subject));
    assert_eq!(resumed.sequence, 3);
    let out = verify_chain(&image, &pubkey, &[]);
    expect(
        &out,
        0,
        &[
            "pod demo/app-1: sequences 1..4, 4 report(s), chain starts at 1, intact",
            &format!(
                "notice: resumed: the sidecar restarted and continued the chain at seq 3 ({})",
                m[0]
            ),
        ],
    );
    let mut lost = Producer::open(&dir.path().join("restart-lost"), pod("app-1"), &base);
    lost.produce(&key, 10);
    lost.produce(&key, 11);
    let m = rt.block_on(publish(&lost.spool, &subject));
    let out = verify_chain(&image, &pubkey, &[]);
    expect(
        &out,
        0,
        &[
            "pod demo/app-1 (chain 2): sequences 1..2, 2 report(s), chain starts at 1, intact",
            &format!("notice: restarted: a new chain starts at seq 1 ({})", m[0]),
            "OK: every chain is intact",
        ],
    );

    // Two pods on one image: a gap in one is reported for it only; --pod selects.
    let (image, subject, base) = setup("pods");
    let mut a = Producer::open(&dir.path().join("pods-a"), pod("app-a"), &base);
    let mut b = Producer::open(&dir.path().join("pods-b"), pod("app-b"), &base);
    for m in 1..=3 {
        a.produce(&key, m);
    }
    let eb: Vec<SpoolEntry> = (1..=3).map(|m| b.produce(&key, m)).collect();
    rt.block_on(publish(&a.spool, &subject));
    rt.block_on(push_entries(&b.spool, &subject, &[&eb[0], &eb[2]]));
    let out = verify_chain(&image, &pubkey, &[]);
    expect(
        &out,
        1,
        &[
            "pod demo/app-a: sequences 1..3, 3 report(s), chain starts at 1, intact",
            "pod demo/app-b: sequences 1..3, 2 report(s), chain starts at 1",
            "missing: 2 between seq 1",
        ],
    );
    expect(
        &verify_chain(&image, &pubkey, &["--pod", "app-a"]),
        0,
        &["OK"],
    );
    expect(
        &verify_chain(&image, &pubkey, &["--pod", "demo/app-b"]),
        1,
        &["missing: 2"],
    );

    // Bad input: exit 2.
    let out = verify_chain(&image, &dir.path().join("nope.pub"), &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    let out = verify_chain("not a reference", &pubkey, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
}

#[test]
fn verify_chain_on_ferro() {
    let rt = runtime();
    let registry = rt.block_on(start_ferro());
    chain_scenarios(&rt, &registry.addr);
    drop(registry);
}

#[test]
fn verify_chain_on_docker_registry() {
    let Some(registry) = distribution("verify_chain_on_docker_registry") else {
        return;
    };
    let rt = runtime();
    chain_scenarios(&rt, &registry.addr);
    drop(registry);
}

/// docker-registry, or a SKIP line when it is not installed (a failure under LINKGUARD_REQUIRE_INTEROP=1).
fn distribution(test: &str) -> Option<registries::Registry> {
    let bin = docker_registry();
    if !bin.exists() {
        assert!(
            !interop_required(),
            "{} is missing and LINKGUARD_REQUIRE_INTEROP=1 (apt-get install docker-registry)",
            bin.display()
        );
        println!("SKIP {test}: {} is not installed", bin.display());
        return None;
    }
    Some(start_distribution())
}

/// A TCP forwarder on 127.0.0.1 in front of a registry, which the test can take down (its port then
/// refuses connections, as a stopped registry's would) and bring back on the same port.
struct Gate {
    port: u16,
    target: String,
    tasks: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Gate {
    fn new(target: &str) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Self {
            port,
            target: target.to_owned(),
            tasks: Arc::new(Mutex::new(Vec::new())),
        }
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts forwarding (binds the port).
    async fn up(&self) {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        socket
            .bind(format!("127.0.0.1:{}", self.port).parse().unwrap())
            .unwrap();
        let listener = socket.listen(64).unwrap();
        let target = self.target.clone();
        let tasks = Arc::clone(&self.tasks);
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                let target = target.clone();
                let conn = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                tasks.lock().unwrap().push(conn.abort_handle());
            }
        });
        self.tasks.lock().unwrap().push(accept.abort_handle());
    }

    /// Stops forwarding: closes the listener and every forwarded connection.
    async fn down(&self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
        // Let the aborted tasks drop their sockets.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reports spooled while the registry is unreachable are pushed, in order, once it is back.
fn spool_survives_an_outage(rt: &tokio::runtime::Runtime, registry_addr: &str) {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate();
    let pubkey = dir.path().join("k.pub");
    std::fs::write(&pubkey, key.verifying_key().to_spki_pem()).unwrap();
    let gate = Gate::new(registry_addr);
    rt.block_on(gate.up());
    let addr = gate.addr();
    let (image, digest) = rt.block_on(push_image(&addr, "outage"));
    let subject: Reference = format!("{addr}/outage@{digest}").parse().unwrap();
    let base = base_statement(dir.path(), &digest);
    let spool_dir = dir.path().join("spool");
    let mut p = Producer::open(&spool_dir, pod("app-1"), &base);
    let policy = BackoffPolicy {
        initial: Duration::from_millis(100),
        max: Duration::from_millis(400),
    };
    let mut publisher = Publisher::new(client(), subject.clone(), policy);

    // Report 1 goes out while the registry is up.
    p.produce(&key, 1);
    let out = rt.block_on(publisher.drain(&p.spool));
    assert_eq!(out.pushed.len(), 1, "{:?}", out.last_error);

    // The registry goes away: reports 2..4 stay in the spool, in order, and each round fails at 2.
    rt.block_on(gate.down());
    for m in 2..=4 {
        p.produce(&key, m);
        let out = rt.block_on(publisher.drain(&p.spool));
        assert!(out.pushed.is_empty());
        let err = out.last_error.unwrap();
        assert!(err.registry_error().is_some(), "{err}");
        assert!(err.to_string().contains("spooled report 2"), "{err}");
        assert_eq!(out.remaining, m as usize - 1);
    }
    assert_eq!(publisher.failures(), 3);
    assert!(publisher.retry_delay() >= Duration::from_millis(200));
    let waiting: Vec<u64> = p.spool.pending().iter().map(|e| e.sequence).collect();
    assert_eq!(waiting, [2, 3, 4]);

    // A restart while the registry is down: the spool and the chain survive it.
    drop(p);
    let mut p = Producer::open(&spool_dir, pod("app-1"), &base);
    assert_eq!(p.spool.pending().len(), 3);
    let fifth = p.produce(&key, 5);
    assert_eq!(fifth.sequence, 5);

    // Back up (same port): the next rounds push 2, 3, 4, 5 in that order and empty the spool.
    rt.block_on(gate.up());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let out = rt.block_on(publisher.drain_until(&p.spool, deadline));
    assert!(out.last_error.is_none(), "{:?}", out.last_error);
    let order: Vec<u64> = out.pushed.iter().map(|r| r.sequence).collect();
    assert_eq!(order, [2, 3, 4, 5]);
    assert_eq!(out.remaining, 0);
    assert!(p.spool.pending().is_empty());
    assert_eq!(publisher.failures(), 0);
    let out = verify_chain(&image, &pubkey, &[]);
    expect(
        &out,
        0,
        &[
            "pod demo/app-1: sequences 1..5, 5 report(s), chain starts at 1, intact",
            "notice: resumed: the sidecar restarted and continued the chain at seq 5",
        ],
    );
    rt.block_on(gate.down());
}

#[test]
fn spool_drains_in_order_after_an_outage_on_ferro() {
    let rt = runtime();
    let registry = rt.block_on(start_ferro());
    spool_survives_an_outage(&rt, &registry.addr);
    drop(registry);
}

#[test]
fn spool_drains_in_order_after_an_outage_on_docker_registry() {
    let Some(registry) = distribution("spool_drains_in_order_after_an_outage_on_docker_registry")
    else {
        return;
    };
    let rt = runtime();
    spool_survives_an_outage(&rt, &registry.addr);
    drop(registry);
}

/// The chain markers as the sidecar writes them validate against docs/contracts/report.schema.json;
/// contradictory ones do not.
#[test]
fn chain_fields_match_the_report_schema() {
    let text = std::fs::read_to_string(
        linkguard_integration_tests::workspace_root().join("docs/contracts/report.schema.json"),
    )
    .unwrap();
    let schema: serde_json::Value = serde_json::from_str(&text).unwrap();
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .build(&schema)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let digest = Digest::of(b"image");
    let base = base_statement(dir.path(), &digest);
    let link = |sequence: u64, previous: bool, start: bool, resumed: bool, missed: u64| ChainLink {
        sequence,
        previous: previous.then(|| "ab".repeat(32)),
        chain_start: start,
        chain_resumed: resumed,
        missed_reports: missed,
    };
    let json = |l: &ChainLink| -> serde_json::Value {
        serde_json::from_slice(&stamped(&base, &pod("app-1"), l, minute(1)).to_json()).unwrap()
    };
    let start = json(&link(1, false, true, false, 0));
    assert_eq!(start["predicate"]["chainStart"], true);
    assert!(start["predicate"].get("chainResumed").is_none());
    assert!(start["predicate"].get("missedReports").is_none());
    let resumed = json(&link(7, true, false, true, 2));
    assert_eq!(resumed["predicate"]["chainResumed"], true);
    assert_eq!(resumed["predicate"]["missedReports"], 2);
    assert_eq!(resumed["predicate"]["previous"]["sha256"], "ab".repeat(32));
    for good in [&start, &resumed, &json(&link(2, true, false, false, 0))] {
        let errors: Vec<String> = validator.iter_errors(good).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{errors:?}\n{good}");
    }
    for (what, bad) in [
        ("chainStart on sequence 2", link(2, false, true, false, 0)),
        ("chainStart with previous", link(1, true, true, false, 0)),
        ("chainStart and chainResumed", link(1, false, true, true, 0)),
        (
            "chainResumed without previous",
            link(3, false, false, true, 0),
        ),
        ("sequence 0", link(0, false, false, false, 0)),
    ] {
        assert!(!validator.is_valid(&json(&bad)), "{what} should be refused");
    }
    let mut zero_missed = resumed.clone();
    zero_missed["predicate"]["missedReports"] = 0.into();
    assert!(!validator.is_valid(&zero_missed));
}
