// SPDX-License-Identifier: Apache-2.0
//! Unit tests of the spool: durability, recovery, order, the size cap and the publisher's failure path.

use std::time::Duration;

use linkguard_oci::{Client, Reference};

use super::*;
use crate::attest::{SigningKey, sign_statement};
use crate::chain::{FreshReason, STATE_FILE};

/// A signed report bundle with the chain fields of `link` for pod `pod` (name only).
fn bundle(key: &SigningKey, pod: &str, link: &ChainLink, minute: u32) -> Vec<u8> {
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
fn produce(spool: &Spool, chain: &mut Chain, key: &SigningKey) -> Result<SpoolEntry, SpoolError> {
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
