// SPDX-License-Identifier: Apache-2.0
//! Unit tests of the spool: durability, recovery, order, the size cap and the publisher's failure path.

use std::time::Duration;

use linkguard_oci::{Client, Digest, OCI_MANIFEST, Reference, ReferrerFilter};

use super::*;
use crate::attest::{SigningKey, sign_statement};
use crate::chain::{FreshReason, STATE_FILE};

/// A signed report bundle with the chain fields of `link` for pod `pod` (name only).
pub(crate) fn bundle(key: &SigningKey, pod: &str, link: &ChainLink, minute: u32) -> Vec<u8> {
    let mut predicate = serde_json::json!({
        "verdict": "pass",
        "pod": {"name": pod},
        "sequence": link.sequence,
        "generatedAt": format!("2026-03-01T10:{minute:02}:00Z"),
    });
    if let Some(p) = &link.previous {
        predicate["previous"] = serde_json::json!({ "sha256": p });
    }
    if link.chain_start {
        predicate["chainStart"] = true.into();
    }
    let statement = serde_json::json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "app", "digest": {"sha256": "ab".repeat(32)}}],
        "predicateType": REPORT_PREDICATE_TYPE,
        "predicate": predicate,
    });
    sign_statement(&serde_json::to_vec(&statement).unwrap(), key)
        .unwrap()
        .to_json_pretty()
}

/// Produces and enqueues the next report of `chain`.
pub(crate) fn produce(
    spool: &Spool,
    chain: &mut Chain,
    key: &SigningKey,
) -> Result<SpoolEntry, SpoolError> {
    let link = chain.next_link();
    let b = bundle(key, chain.pod(), &link, link.sequence as u32);
    spool.enqueue(chain, &link, &b)
}

#[test]
fn entries_are_durable_named_by_sequence_and_recovered_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate();
    let (spool, recovery) = Spool::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
    assert_eq!(recovery, Recovery::default());
    let (mut chain, how) = spool.open_chain("pod").unwrap();
    assert_eq!(how, Resumption::Fresh(FreshReason::NoState));
    let mut digests = Vec::new();
    for _ in 0..12 {
        let e = produce(&spool, &mut chain, &key).unwrap();
        assert!(e.path.exists());
        assert_eq!(
            chain::bundle_digest(&std::fs::read(&e.path).unwrap()),
            e.digest
        );
        digests.push(e.digest);
    }
    let names: Vec<String> = spool
        .pending()
        .iter()
        .map(|e| e.path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 12);
    assert!(names[9].starts_with("00000000000000000010-"), "{names:?}");
    let stats = spool.stats();
    assert_eq!(stats.entries, 12);
    assert!(!stats.full);
    // No temporary file is left behind.
    let leftovers = std::fs::read_dir(dir.path().join(PENDING_DIR))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with('.')
        })
        .count();
    assert_eq!(leftovers, 0);
    drop((spool, chain));

    // Reopened: the same entries in sequence order (10 after 9, not after 1), and the chain continues.
    let (spool, recovery) = Spool::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
    assert_eq!(recovery.recovered, 12);
    let seqs: Vec<u64> = spool.pending().iter().map(|e| e.sequence).collect();
    assert_eq!(seqs, (1..=12).collect::<Vec<_>>());
    let got: Vec<String> = spool.pending().into_iter().map(|e| e.digest).collect();
    assert_eq!(got, digests);
    assert_eq!(spool.stats().bytes, stats.bytes);
    let (chain, how) = spool.open_chain("pod").unwrap();
    assert_eq!(how, Resumption::Resumed { sequence: 12 });
    let link = chain.next_link();
    assert_eq!(link.sequence, 13);
    assert_eq!(link.previous.as_deref(), Some(digests[11].as_str()));
    assert!(link.chain_resumed);
}

#[test]
fn partial_and_unreadable_files_are_quarantined_and_good_entries_kept() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate();
    let (spool, _) = Spool::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
    let (mut chain, _) = spool.open_chain("pod").unwrap();
    let first = produce(&spool, &mut chain, &key).unwrap();
    let second = produce(&spool, &mut chain, &key).unwrap();
    drop((spool, chain));
    let pending = dir.path().join(PENDING_DIR);
    // A write interrupted before its rename, a file that is not a report, a damaged entry, and an
    // entry whose name disagrees with its sequence.
    std::fs::write(pending.join(".tmp-a1b2c3"), b"{\"mediaType\": \"applic").unwrap();
    std::fs::write(pending.join("garbage.txt"), b"hello").unwrap();
    let mut damaged = std::fs::read(&second.path).unwrap();
    damaged[10] ^= 1;
    std::fs::write(&second.path, &damaged).unwrap();
    let first_bytes = std::fs::read(&first.path).unwrap();
    let renamed = format!("{:020}-{}.bundle", 7, &first.digest[..12]);
    std::fs::write(pending.join(&renamed), &first_bytes).unwrap();

    let (spool, recovery) = Spool::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
    assert_eq!(recovery.recovered, 1, "{recovery:?}");
    assert_eq!(recovery.quarantined.len(), 4, "{recovery:?}");
    assert_eq!(spool.pending(), vec![first.clone()]);
    // Nothing was deleted: every quarantined file is in quarantine/ with its bytes.
    let quarantine = dir.path().join(chain::QUARANTINE_DIR);
    for moved in &recovery.quarantined {
        assert!(moved.starts_with(&quarantine), "{}", moved.display());
        assert!(moved.exists());
    }
    assert!(
        recovery
            .quarantined
            .iter()
            .any(|p| std::fs::read(p).unwrap() == damaged)
    );
    assert_eq!(std::fs::read(&first.path).unwrap(), first_bytes);
}

#[test]
fn a_full_spool_refuses_the_new_report_keeps_the_old_and_declares_the_gap() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate();
    let size = {
        let link = ChainLink {
            sequence: 1,
            previous: None,
            chain_start: true,
            chain_resumed: false,
            missed_reports: 0,
        };
        bundle(&key, "pod", &link, 1).len() as u64
    };
    // Room for two reports, not three.
    let max = size * 2 + size / 2;
    let (spool, _) = Spool::open(dir.path(), max).unwrap();
    let (mut chain, _) = spool.open_chain("pod").unwrap();
    let one = produce(&spool, &mut chain, &key).unwrap();
    let two = produce(&spool, &mut chain, &key).unwrap();
    let err = produce(&spool, &mut chain, &key).unwrap_err();
    assert!(err.is_full(), "{err}");
    assert!(
        matches!(err, SpoolError::Full { max: m, .. } if m == max),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("is full") && text.contains("spool.maxBytes"),
        "{text}"
    );
    // Old reports untouched, the chain did not advance, the refusal is counted.
    assert_eq!(spool.pending(), vec![one.clone(), two.clone()]);
    let stats = spool.stats();
    assert!(stats.full);
    assert_eq!(stats.refused, 1);
    let link = chain.next_link();
    assert_eq!((link.sequence, link.missed_reports), (3, 1));
    assert_eq!(link.previous.as_deref(), Some(two.digest.as_str()));
    // The refusal survives a restart.
    drop((spool, chain));
    let (spool, _) = Spool::open(dir.path(), max).unwrap();
    let (mut chain, _) = spool.open_chain("pod").unwrap();
    assert_eq!(chain.next_link().missed_reports, 1);
    // Room again after a push: the next report carries the count, then it is cleared.
    spool.remove(&one).unwrap();
    assert!(!spool.stats().full);
    let three = produce(&spool, &mut chain, &key).unwrap();
    assert_eq!(three.sequence, 3);
    assert_eq!(chain.next_link().missed_reports, 0);
    assert!(!one.path.exists());
}

#[test]
fn enqueue_refuses_a_bundle_that_does_not_match_the_link() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate();
    let (spool, _) = Spool::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
    let (mut chain, _) = spool.open_chain("pod").unwrap();
    let link = chain.next_link();
    let mut other = link.clone();
    other.sequence = 5;
    let wrong = bundle(&key, "pod", &other, 1);
    let err = spool.enqueue(&mut chain, &link, &wrong).unwrap_err();
    assert!(matches!(err, SpoolError::NotAReport { .. }), "{err}");
    let err = spool.enqueue(&mut chain, &link, b"not json").unwrap_err();
    assert!(matches!(err, SpoolError::NotAReport { .. }), "{err}");
    let err = spool
        .enqueue(&mut chain, &other, &bundle(&key, "pod", &other, 1))
        .unwrap_err();
    assert!(matches!(err, SpoolError::Chain(_)), "{err}");
    assert!(spool.pending().is_empty());
    assert_eq!(chain.next_link().sequence, 1);
    assert_eq!(chain.next_link().missed_reports, 0);
}

#[test]
fn a_stop_between_the_spool_write_and_the_state_write_is_recovered() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate();
    let (spool, _) = Spool::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
    let (mut chain, _) = spool.open_chain("pod").unwrap();
    produce(&spool, &mut chain, &key).unwrap();
    let state_after_one = std::fs::read(dir.path().join(STATE_FILE)).unwrap();
    let two = produce(&spool, &mut chain, &key).unwrap();
    drop((spool, chain));
    // The state on disk is as if the process stopped right after writing entry 2.
    std::fs::write(dir.path().join(STATE_FILE), state_after_one).unwrap();
    let (spool, _) = Spool::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
    let (chain, how) = spool.open_chain("pod").unwrap();
    assert_eq!(how, Resumption::Resumed { sequence: 2 });
    let link = chain.next_link();
    assert_eq!(link.sequence, 3);
    assert_eq!(link.previous.as_deref(), Some(two.digest.as_str()));
}

#[test]
fn disk_full_errors_are_recognized() {
    assert!(is_disk_full(&std::io::Error::from_raw_os_error(
        libc::ENOSPC
    )));
    assert!(is_disk_full(&std::io::Error::from_raw_os_error(
        libc::EDQUOT
    )));
    assert!(!is_disk_full(&std::io::Error::from_raw_os_error(
        libc::EACCES
    )));
}

#[test]
fn backoff_grows_exponentially_with_jitter_and_is_capped() {
    let p = BackoffPolicy {
        initial: Duration::from_secs(1),
        max: Duration::from_secs(60),
    };
    assert_eq!(p.delay(0, 123), Duration::ZERO);
    for failures in 1..40 {
        let cap = Duration::from_secs(1u64.checked_shl(failures - 1).unwrap_or(u64::MAX).min(60));
        let low = p.delay(failures, 0);
        let high = p.delay(failures, u64::MAX - 1);
        assert_eq!(low, cap / 2, "failures {failures}");
        assert!(high <= cap && high >= low, "failures {failures}: {high:?}");
    }
    // Different random numbers spread the delays.
    let spread: std::collections::BTreeSet<_> =
        (0..20u64).map(|r| p.delay(3, r * 7_919_000_001)).collect();
    assert!(spread.len() > 10);
}

#[test]
fn a_failed_drain_keeps_everything_and_backs_off() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate();
    let (spool, _) = Spool::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
    let (mut chain, _) = spool.open_chain("pod").unwrap();
    for _ in 0..3 {
        produce(&spool, &mut chain, &key).unwrap();
    }
    // A port nothing listens on: bind, note the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let subject: Reference = format!("127.0.0.1:{port}/app@sha256:{}", "ab".repeat(32))
        .parse()
        .unwrap();
    // No retries inside the client: the publisher's rounds are what is tested.
    let config = linkguard_oci::ClientConfig {
        retry: linkguard_oci::transport::RetryPolicy {
            max_attempts: 1,
            ..Default::default()
        },
        ..Default::default()
    };
    let client = Client::new(config, linkguard_oci::RegistryAuth::Anonymous).unwrap();
    let policy = BackoffPolicy {
        initial: Duration::from_millis(10),
        max: Duration::from_millis(40),
    };
    let mut publisher = Publisher::new(client, subject, policy);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let out = rt.block_on(publisher.drain(&spool));
    assert!(out.pushed.is_empty());
    assert_eq!(out.remaining, 3);
    let err = out.last_error.unwrap();
    assert!(
        matches!(&err, SpoolError::Push { sequence: 1, .. }),
        "{err}"
    );
    assert!(err.registry_error().is_some());
    assert_eq!(publisher.failures(), 1);
    assert!(publisher.retry_delay() >= Duration::from_millis(5));
    // drain_until gives up at the deadline, keeping every entry.
    let deadline = tokio::time::Instant::now() + Duration::from_millis(300);
    let out = rt.block_on(publisher.drain_until(&spool, deadline));
    assert_eq!(out.remaining, 3);
    assert!(out.last_error.is_some());
    assert!(publisher.failures() >= 2);
    assert_eq!(spool.pending().len(), 3);
}

#[test]
fn one_process_per_spool_directory() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
    let err = Spool::open(dir.path(), DEFAULT_MAX_BYTES).unwrap_err();
    assert!(matches!(err, SpoolError::Locked { .. }), "{err}");
    assert!(err.to_string().contains("its own spool.directory"), "{err}");
    // Clones share the lock; it is released with the last one.
    let clone = spool.clone();
    drop(spool);
    assert!(Spool::open(dir.path(), DEFAULT_MAX_BYTES).is_err());
    drop(clone);
    Spool::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
}

/// A client that gives up at once on a failed request (the publisher's rounds are what is tested).
fn one_attempt_client() -> Client {
    let config = linkguard_oci::ClientConfig {
        retry: linkguard_oci::transport::RetryPolicy {
            max_attempts: 1,
            ..Default::default()
        },
        ..Default::default()
    };
    Client::new(config, linkguard_oci::RegistryAuth::Anonymous).unwrap()
}

/// A registry that accepts connections and never answers (held until the runtime ends).
async fn hanging_registry() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    addr
}

#[test]
fn a_hanging_push_times_out_on_its_own_and_keeps_the_entry() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate();
    let (spool, _) = Spool::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
    let (mut chain, _) = spool.open_chain("pod").unwrap();
    for _ in 0..3 {
        produce(&spool, &mut chain, &key).unwrap();
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let addr = rt.block_on(hanging_registry());
    let subject: Reference = format!("{addr}/app@sha256:{}", "ab".repeat(32))
        .parse()
        .unwrap();
    let timeout = Duration::from_millis(300);
    let policy = BackoffPolicy {
        initial: Duration::from_millis(10),
        max: Duration::from_millis(40),
    };
    let mut publisher =
        Publisher::new(one_attempt_client(), subject, policy).with_push_timeout(timeout);
    let out = rt.block_on(publisher.drain(&spool));
    assert!(out.pushed.is_empty());
    assert_eq!(out.remaining, 3);
    assert!(!out.deadline_reached);
    let err = out.last_error.unwrap();
    assert!(
        matches!(&err, SpoolError::PushTimedOut { sequence: 1, timeout: t, .. } if *t == timeout),
        "{err}"
    );
    assert!(err.is_push_failure());
    let text = err.to_string();
    assert!(
        text.contains("timed out after 0.3s") && text.contains("registry.timeoutSeconds"),
        "{text}"
    );
    assert_eq!(publisher.failures(), 1);
    // A shutdown deadline nearer than the push timeout ends the push at the deadline: not a registry
    // failure, and everything stays spooled.
    let deadline = tokio::time::Instant::now() + Duration::from_millis(100);
    let out = rt.block_on(publisher.drain_until(&spool, deadline));
    assert!(out.deadline_reached);
    assert!(out.last_error.is_none(), "{:?}", out.last_error);
    assert_eq!(publisher.failures(), 1);
    assert_eq!(spool.pending().len(), 3);
}

/// Debian's docker-registry on 127.0.0.1 (no referrers API: every push also rewrites the fallback
/// index, so a push takes a few hundred milliseconds), stopped on drop.
struct DockerRegistry {
    addr: String,
    child: std::process::Child,
    _storage: tempfile::TempDir,
}

impl Drop for DockerRegistry {
    fn drop(&mut self) {
        // Child::kill signals exactly this pid.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl DockerRegistry {
    /// `None` with a SKIP line when docker-registry is not installed (a failure under
    /// LINKGUARD_REQUIRE_INTEROP=1).
    fn start(test: &str) -> Option<Self> {
        let bin = std::env::var_os("LINKGUARD_DOCKER_REGISTRY").map_or_else(
            || std::path::PathBuf::from("/usr/bin/docker-registry"),
            std::path::PathBuf::from,
        );
        if !bin.exists() {
            let reason = format!(
                "{} is not installed (apt-get install docker-registry)",
                bin.display()
            );
            assert!(
                !std::env::var("LINKGUARD_REQUIRE_INTEROP").is_ok_and(|v| v == "1"),
                "LINKGUARD_REQUIRE_INTEROP=1 but {reason}"
            );
            println!("SKIP {test}: {reason}");
            return None;
        }
        let storage = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let config = storage.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
                 http:\n  addr: {addr}\n",
                storage.path().join("data").display()
            ),
        )
        .unwrap();
        let child = std::process::Command::new(&bin)
            .arg("serve")
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut registry = Self {
            addr,
            child,
            _storage: storage,
        };
        // Bounded wait for the listener: 100 x 50 ms.
        for _ in 0..100 {
            if std::net::TcpStream::connect(&registry.addr).is_ok() {
                return Some(registry);
            }
            if let Some(status) = registry.child.try_wait().unwrap() {
                panic!("docker-registry exited with {status} before listening");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "docker-registry did not listen on {} within 5 s",
            registry.addr
        );
    }

    /// Pushes a small image as `app:v1` through the distribution API; its manifest digest.
    async fn push_image(&self) -> Digest {
        let http = reqwest::Client::new();
        let base = format!("http://{}/v2/app", self.addr);
        let config =
            br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
        let layer = b"not really a tarball";
        for blob in [&config[..], &layer[..]] {
            let started = http
                .post(format!("{base}/blobs/uploads/"))
                .send()
                .await
                .unwrap();
            assert_eq!(started.status(), 202);
            let location = started.headers()["location"].to_str().unwrap().to_owned();
            let location = if location.starts_with('/') {
                format!("http://{}{location}", self.addr)
            } else {
                location
            };
            let sep = if location.contains('?') { '&' } else { '?' };
            let done = http
                .put(format!(
                    "{location}{sep}digest={}",
                    Digest::of(blob).as_str()
                ))
                .header("content-type", "application/octet-stream")
                .body(blob.to_vec())
                .send()
                .await
                .unwrap();
            assert_eq!(done.status(), 201);
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
        let put = http
            .put(format!("{base}/manifests/v1"))
            .header("content-type", OCI_MANIFEST)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(put.status(), 201);
        Digest::of(&body)
    }
}

/// After an outage the backlog takes longer to push than the push timeout; it drains in one round, in
/// order, without a timeout, because the timeout bounds each push and not the round.
#[test]
fn a_backlog_longer_than_the_push_timeout_drains_in_one_round() {
    let test = "a_backlog_longer_than_the_push_timeout_drains_in_one_round";
    let Some(registry) = DockerRegistry::start(test) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate();
    let (spool, _) = Spool::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
    let (mut chain, _) = spool.open_chain("pod").unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let digest = rt.block_on(registry.push_image());
    let subject: Reference = format!("{}/app@{}", registry.addr, digest.as_str())
        .parse()
        .unwrap();
    let timeout = Duration::from_secs(2);
    let mut publisher = Publisher::new(
        one_attempt_client(),
        subject.clone(),
        BackoffPolicy::default(),
    )
    .with_push_timeout(timeout);
    // How long one push takes here, to make a backlog that takes about twice the timeout.
    for _ in 0..2 {
        produce(&spool, &mut chain, &key).unwrap();
    }
    let started = std::time::Instant::now();
    let out = rt.block_on(publisher.drain(&spool));
    assert!(out.last_error.is_none(), "{:?}", out.last_error);
    assert_eq!(out.pushed.len(), 2);
    let per_push = started.elapsed() / 2;
    let backlog =
        ((2.0 * timeout.as_secs_f64() / per_push.as_secs_f64()).ceil() as usize + 1).clamp(3, 60);
    for _ in 0..backlog {
        produce(&spool, &mut chain, &key).unwrap();
    }
    let started = std::time::Instant::now();
    let out = rt.block_on(publisher.drain(&spool));
    println!(
        "{backlog} spooled reports pushed in {:?} ({per_push:?} per push measured first) with a \
         {timeout:?} push timeout",
        started.elapsed()
    );
    assert!(out.last_error.is_none(), "{:?}", out.last_error);
    assert!(!out.deadline_reached);
    let sequences: Vec<u64> = out.pushed.iter().map(|p| p.sequence).collect();
    assert_eq!(sequences, (3..3 + backlog as u64).collect::<Vec<_>>());
    assert_eq!(out.remaining, 0);
    assert!(spool.pending().is_empty());
    assert_eq!(publisher.failures(), 0);
    // Every report is listed as a referrer of the image (through the fallback tag).
    let filter = ReferrerFilter {
        artifact_type: Some(BUNDLE_MEDIA_TYPE.to_owned()),
        ..ReferrerFilter::default()
    };
    let listed = rt
        .block_on(one_attempt_client().list_referrers(&subject, &filter))
        .unwrap();
    assert_eq!(listed.len(), backlog + 2);
}

/// An entry that vanished from the spool (or cannot be read) is set aside: the reports after it are
/// still pushed, in order, and the gap it leaves is the chain's to name.
#[test]
fn an_unreadable_entry_does_not_hold_back_the_ones_after_it() {
    let test = "an_unreadable_entry_does_not_hold_back_the_ones_after_it";
    let Some(registry) = DockerRegistry::start(test) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate();
    let (spool, _) = Spool::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
    let (mut chain, _) = spool.open_chain("pod").unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let digest = rt.block_on(registry.push_image());
    let subject: Reference = format!("{}/app@{}", registry.addr, digest.as_str())
        .parse()
        .unwrap();
    for _ in 0..3 {
        produce(&spool, &mut chain, &key).unwrap();
    }
    let pending = spool.pending();
    assert_eq!(pending.len(), 3);
    std::fs::remove_file(&pending[0].path).unwrap();
    let mut publisher = Publisher::new(one_attempt_client(), subject, BackoffPolicy::default());
    let out = rt.block_on(publisher.drain(&spool));
    assert!(out.last_error.is_none(), "{:?}", out.last_error);
    let sequences: Vec<u64> = out.pushed.iter().map(|p| p.sequence).collect();
    assert_eq!(sequences, [2, 3]);
    assert!(spool.pending().is_empty());
}
