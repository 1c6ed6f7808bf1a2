// SPDX-License-Identifier: Apache-2.0
//! Time to list the referrers of an image with 1,000 of them and pull the newest report, on
//! ferro-oci-server (referrers API) and on Debian's docker-registry (distribution 2.8: the
//! `sha256-<hex>` fallback index), each against a baseline measured in the same run: the same
//! list + pull for an image with one referrer on the same registry. Runs are interleaved (one
//! 1,000-referrer run, one baseline run, ...) so that load from elsewhere hits both alike.
//!
//! What is timed is what `linkguard reports pull --latest` does after resolving the tag: list the
//! referrers filtered by artifact type (validated, deduplicated), pick the newest by its created
//! annotation, pull it (manifest, subject check, layer digest check). One warm client per case.
//!
//! `cargo bench -p linkguard-oci --bench referrers` (LINKGUARD_BENCH_RUNS, default 21;
//! LINKGUARD_BENCH_REFERRERS, default 1000).
#![expect(
    clippy::unwrap_used,
    reason = "bench harness: a failed setup step aborts the run"
)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use linkguard_oci::{
    Client, ClientConfig, Descriptor, Digest, OCI_EMPTY, OCI_INDEX, OCI_MANIFEST, Reference,
    ReferrerFilter, RegistryAuth,
};

#[path = "../tests/support/registries.rs"]
mod registries;

const BUNDLE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
const CREATED: &str = "org.opencontainers.image.created";
const PREDICATE: &str = "dev.sigstore.bundle.predicateType";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Uploads `data` as a blob of `repo` (POST, then PUT with the digest).
async fn upload_blob(http: &reqwest::Client, addr: &str, repo: &str, data: &[u8]) -> Digest {
    let digest = Digest::of(data);
    let base = format!("http://{addr}/v2/{repo}/blobs/uploads/");
    let resp = http.post(&base).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 202, "POST {base}");
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    let mut url = reqwest::Url::parse(&base).unwrap().join(&location).unwrap();
    url.query_pairs_mut().append_pair("digest", digest.as_str());
    let resp = http.put(url).body(data.to_vec()).send().await.unwrap();
    assert!(resp.status().is_success(), "PUT blob: {}", resp.status());
    digest
}

async fn put_manifest(
    http: &reqwest::Client,
    addr: &str,
    repo: &str,
    reference: &str,
    media_type: &str,
    body: Vec<u8>,
) {
    let resp = http
        .put(format!("http://{addr}/v2/{repo}/manifests/{reference}"))
        .header("content-type", media_type)
        .body(body)
        .send()
        .await
        .unwrap();
    assert!(
        resp.status().is_success(),
        "PUT manifest {reference}: {}",
        resp.status()
    );
}

fn descriptor(media_type: &str, digest: &Digest, size: usize) -> serde_json::Value {
    serde_json::json!({"mediaType": media_type, "digest": digest.as_str(), "size": size})
}

/// An image `repo:v1` with `count` report referrers, created one second apart; on a registry
/// without the referrers API, the fallback index listing them all (what pushing them one by one
/// would have left). Returns the image reference and the newest report's layer.
async fn populate(
    http: &reqwest::Client,
    addr: &str,
    repo: &str,
    count: usize,
    fallback: bool,
) -> (Reference, Vec<u8>) {
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let layer = format!("image layer of {repo}").into_bytes();
    let config_digest = upload_blob(http, addr, repo, config).await;
    let layer_digest = upload_blob(http, addr, repo, &layer).await;
    let image = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": descriptor("application/vnd.oci.image.config.v1+json", &config_digest, config.len()),
        "layers": [descriptor("application/vnd.oci.image.layer.v1.tar", &layer_digest, layer.len())],
    }))
    .unwrap();
    let image_digest = Digest::of(&image);
    put_manifest(http, addr, repo, "v1", OCI_MANIFEST, image.clone()).await;
    let empty = upload_blob(http, addr, repo, b"{}").await;

    let subject = descriptor(OCI_MANIFEST, &image_digest, image.len());
    // Eight pushes in flight at a time.
    let mut tasks = tokio::task::JoinSet::new();
    let mut pushed = Vec::with_capacity(count);
    for i in 0..count {
        if tasks.len() >= 8 {
            pushed.push(tasks.join_next().await.unwrap().unwrap());
        }
        let (http, addr, repo) = (http.clone(), addr.to_owned(), repo.to_owned());
        let (subject, empty) = (subject.clone(), empty.clone());
        tasks.spawn(async move { push_report(&http, &addr, &repo, i, subject, &empty).await });
    }
    while let Some(done) = tasks.join_next().await {
        pushed.push(done.unwrap());
    }
    pushed.sort_by_key(|(i, _, _)| *i);
    let newest = pushed.last().map(|(_, _, bundle)| bundle.clone()).unwrap();
    let entries: Vec<_> = pushed.into_iter().map(|(_, entry, _)| entry).collect();
    if fallback {
        let index = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries,
        }))
        .unwrap();
        println!(
            "  {repo}: fallback index of {count} entries, {} bytes",
            index.len()
        );
        put_manifest(
            http,
            addr,
            repo,
            &image_digest.fallback_tag(),
            OCI_INDEX,
            index,
        )
        .await;
    }
    (format!("{addr}/{repo}:v1").parse().unwrap(), newest)
}

/// Pushes report `i` of the image `subject`: its bundle layer and its manifest. Returns `i`, its
/// referrers-list entry and the bundle.
async fn push_report(
    http: &reqwest::Client,
    addr: &str,
    repo: &str,
    i: usize,
    subject: serde_json::Value,
    empty: &Digest,
) -> (usize, serde_json::Value, Vec<u8>) {
    let bundle = serde_json::to_vec(&serde_json::json!({
        "mediaType": BUNDLE, "report": i, "verdict": "pass", "padding": "x".repeat(1024),
    }))
    .unwrap();
    let bundle_digest = upload_blob(http, addr, repo, &bundle).await;
    let created = format!(
        "2026-11-22T{:02}:{:02}:{:02}Z",
        i / 3600,
        (i / 60) % 60,
        i % 60
    );
    let annotations = BTreeMap::from([
        (CREATED.to_owned(), created),
        (
            PREDICATE.to_owned(),
            "https://linkguard.dev/attestations/verification-report/v1".to_owned(),
        ),
    ]);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": BUNDLE,
        "config": descriptor(OCI_EMPTY, empty, 2),
        "layers": [descriptor(BUNDLE, &bundle_digest, bundle.len())],
        "subject": subject, "annotations": annotations,
    }))
    .unwrap();
    let digest = Digest::of(&manifest);
    let size = manifest.len();
    put_manifest(http, addr, repo, digest.as_str(), OCI_MANIFEST, manifest).await;
    let entry = serde_json::json!({
        "mediaType": OCI_MANIFEST, "digest": digest.as_str(), "size": size,
        "artifactType": BUNDLE, "annotations": annotations,
    });
    (i, entry, bundle)
}

/// List, pick the newest by its created annotation, pull it: what `reports pull --latest` does.
async fn list_and_pull_newest(client: &Client, image: &Reference) -> (Duration, Duration, Vec<u8>) {
    let started = Instant::now();
    let filter = ReferrerFilter {
        artifact_type: Some(BUNDLE.to_owned()),
        ..ReferrerFilter::default()
    };
    let entries = client.list_referrers(image, &filter).await.unwrap();
    let listed = started.elapsed();
    let created = |d: &Descriptor| d.annotations.get(CREATED).cloned().unwrap_or_default();
    let newest = entries
        .iter()
        .max_by(|a, b| {
            created(a)
                .cmp(&created(b))
                .then_with(|| a.digest.cmp(&b.digest))
        })
        .unwrap();
    let artifact = client
        .pull_referrer(image, &newest.digest.parse().unwrap())
        .await
        .unwrap();
    (listed, started.elapsed(), artifact.layers[0].1.clone())
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

struct Row {
    registry: &'static str,
    referrers: usize,
    list: Duration,
    total: Duration,
    spread: (Duration, Duration),
    base_list: Duration,
    base_total: Duration,
}

async fn bench(
    registry: &'static str,
    addr: &str,
    fallback: bool,
    count: usize,
    runs: usize,
) -> Row {
    let http = reqwest::Client::new();
    let started = Instant::now();
    let (image, newest) = populate(&http, addr, "app", count, fallback).await;
    let (base, base_newest) = populate(&http, addr, "base", 1, fallback).await;
    println!(
        "  {registry}: {count} referrers pushed in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let client = Client::new(ClientConfig::default(), RegistryAuth::Anonymous).unwrap();
    let baseline = Client::new(ClientConfig::default(), RegistryAuth::Anonymous).unwrap();
    // Warm-up, and a check that the right report comes back.
    for _ in 0..2 {
        assert_eq!(list_and_pull_newest(&client, &image).await.2, newest);
        assert_eq!(list_and_pull_newest(&baseline, &base).await.2, base_newest);
    }
    let (mut list, mut total, mut base_list, mut base_total) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        let (l, t, _) = list_and_pull_newest(&client, &image).await;
        list.push(l);
        total.push(t);
        let (l, t, _) = list_and_pull_newest(&baseline, &base).await;
        base_list.push(l);
        base_total.push(t);
    }
    let spread = (*total.iter().min().unwrap(), *total.iter().max().unwrap());
    Row {
        registry,
        referrers: count,
        list: median(&mut list),
        total: median(&mut total),
        spread,
        base_list: median(&mut base_list),
        base_total: median(&mut base_total),
    }
}

fn main() {
    let runs = env_usize("LINKGUARD_BENCH_RUNS", 21).max(1);
    let count = env_usize("LINKGUARD_BENCH_REFERRERS", 1000).max(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let rows = rt.block_on(async {
        let mut rows = Vec::new();
        let ferro = registries::start_ferro().await;
        rows.push(
            bench(
                "ferro-oci-server (referrers API)",
                &ferro.addr,
                false,
                count,
                runs,
            )
            .await,
        );
        let bin = registries::docker_registry();
        if bin.exists() {
            let distribution = registries::start_distribution();
            rows.push(
                bench(
                    "docker-registry 2.8 (fallback tag)",
                    &distribution.addr,
                    true,
                    count,
                    runs,
                )
                .await,
            );
        } else {
            println!("SKIP docker-registry: {} is not installed", bin.display());
        }
        rows
    });
    println!("\nlist + pull the newest report: median of {runs} interleaved runs");
    println!(
        "| registry | referrers | list | list + pull newest (min-max) | baseline: 1 referrer, list + pull | ratio |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for r in rows {
        println!(
            "| {} | {} | {} | {} ({}-{}) | {} (list {}) | {:.1}x |",
            r.registry,
            r.referrers,
            ms(r.list),
            ms(r.total),
            ms(r.spread.0),
            ms(r.spread.1),
            ms(r.base_total),
            ms(r.base_list),
            r.total.as_secs_f64() / r.base_total.as_secs_f64()
        );
    }
}
