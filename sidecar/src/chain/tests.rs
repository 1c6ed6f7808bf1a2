// SPDX-License-Identifier: Apache-2.0
//! Unit tests of the chain state and of `verify_chain`.

use chrono::{DateTime, Duration, TimeZone as _, Utc};

use super::*;

// ---- producer state ----

#[test]
fn fresh_chain_starts_at_one_then_resumes_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (mut chain, how) = Chain::open(dir.path(), "ns/pod").unwrap();
    assert_eq!(how, Resumption::Fresh(FreshReason::NoState));
    let link = chain.next_link();
    assert_eq!(
        link,
        ChainLink {
            sequence: 1,
            previous: None,
            chain_start: true,
            chain_resumed: false,
            missed_reports: 0
        }
    );
    let d1 = chain.record(&link, b"bundle one").unwrap();
    assert_eq!(d1, bundle_digest(b"bundle one"));
    let link = chain.next_link();
    assert_eq!(link.sequence, 2);
    assert_eq!(link.previous.as_deref(), Some(d1.as_str()));
    assert!(!link.chain_start && !link.chain_resumed);
    let d2 = chain.record(&link, b"bundle two").unwrap();
    drop(chain);

    // A restart continues from the persisted state and says so once.
    let (mut chain, how) = Chain::open(dir.path(), "ns/pod").unwrap();
    assert_eq!(how, Resumption::Resumed { sequence: 2 });
    let link = chain.next_link();
    assert_eq!(link.sequence, 3);
    assert_eq!(link.previous.as_deref(), Some(d2.as_str()));
    assert!(link.chain_resumed && !link.chain_start);
    chain.record(&link, b"bundle three").unwrap();
    assert!(!chain.next_link().chain_resumed);
    assert_eq!(chain.last().map(|(s, _)| s), Some(3));
}

#[test]
fn a_link_is_recorded_once_and_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (mut chain, _) = Chain::open(dir.path(), "p").unwrap();
    let link = chain.next_link();
    chain.record(&link, b"a").unwrap();
    let err = chain.record(&link, b"b").unwrap_err();
    assert!(
        matches!(
            err,
            ChainError::OutOfOrder {
                expected: 2,
                got: 1,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn refused_reports_do_not_advance_the_chain_and_are_counted_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let (mut chain, _) = Chain::open(dir.path(), "p").unwrap();
    // Refused before the first report: the chain still starts at 1 and counts it.
    chain.record_missed().unwrap();
    let (mut chain, how) = Chain::open(dir.path(), "p").unwrap();
    assert!(matches!(how, Resumption::Fresh(_)), "{how:?}");
    let link = chain.next_link();
    assert_eq!((link.sequence, link.missed_reports), (1, 1));
    assert!(link.chain_start);
    chain.record(&link, b"one").unwrap();
    chain.record_missed().unwrap();
    chain.record_missed().unwrap();
    let (chain, _) = Chain::open(dir.path(), "p").unwrap();
    let link = chain.next_link();
    assert_eq!((link.sequence, link.missed_reports), (2, 2));
    let mut chain = chain;
    chain.record(&link, b"two").unwrap();
    assert_eq!(chain.next_link().missed_reports, 0);
}

#[test]
fn state_of_another_pod_or_unreadable_state_starts_a_new_chain() {
    let dir = tempfile::tempdir().unwrap();
    let (mut chain, _) = Chain::open(dir.path(), "old").unwrap();
    let link = chain.next_link();
    chain.record(&link, b"x").unwrap();
    let (chain, how) = Chain::open(dir.path(), "new").unwrap();
    assert_eq!(
        how,
        Resumption::Fresh(FreshReason::OtherPod {
            found: "old".into()
        })
    );
    assert!(chain.next_link().chain_start);

    std::fs::write(dir.path().join(STATE_FILE), b"{\"pod\": 5").unwrap();
    let (chain, how) = Chain::open(dir.path(), "old").unwrap();
    let Resumption::Fresh(FreshReason::Unreadable { moved_to, .. }) = how else {
        panic!("{how:?}");
    };
    assert!(moved_to.starts_with(dir.path().join(QUARANTINE_DIR)));
    assert_eq!(std::fs::read(&moved_to).unwrap(), b"{\"pod\": 5");
    assert!(!dir.path().join(STATE_FILE).exists());
    assert_eq!(chain.next_link().sequence, 1);

    // Inconsistent content is unreadable too.
    std::fs::write(
        dir.path().join(STATE_FILE),
        br#"{"pod":"old","sequence":3}"#,
    )
    .unwrap();
    let (_, how) = Chain::open(dir.path(), "old").unwrap();
    assert!(
        matches!(how, Resumption::Fresh(FreshReason::Unreadable { .. })),
        "{how:?}"
    );
}

#[test]
fn adopt_catches_up_with_a_spooled_report() {
    let dir = tempfile::tempdir().unwrap();
    let (mut chain, _) = Chain::open(dir.path(), "p").unwrap();
    let digest = "ab".repeat(32);
    assert!(chain.adopt(1, &digest).unwrap());
    assert!(!chain.adopt(1, &digest).unwrap());
    let link = chain.next_link();
    assert_eq!(link.sequence, 2);
    assert_eq!(link.previous.as_deref(), Some(digest.as_str()));
    assert!(link.chain_resumed);
}

#[test]
fn link_applies_to_the_report_context() {
    let mut ctx = crate::report::ReportContext::now();
    ChainLink {
        sequence: 1,
        previous: None,
        chain_start: true,
        chain_resumed: false,
        missed_reports: 2,
    }
    .apply(&mut ctx);
    assert_eq!(ctx.sequence, Some(1));
    assert!(ctx.chain_start);
    assert_eq!(ctx.missed_reports, 2);
    let d = "cd".repeat(32);
    ChainLink {
        sequence: 7,
        previous: Some(d.clone()),
        chain_start: false,
        chain_resumed: true,
        missed_reports: 0,
    }
    .apply(&mut ctx);
    assert_eq!(
        ctx.previous.as_ref().and_then(|p| p.get("sha256")),
        Some(&d)
    );
    assert!(!ctx.chain_start && ctx.chain_resumed);
}

#[test]
fn pod_keys() {
    use crate::report::PodIdentity;
    let pod = |name: Option<&str>, ns: Option<&str>| PodIdentity {
        name: name.map(Into::into),
        namespace: ns.map(Into::into),
        node: Some("n".into()),
        container: None,
    };
    assert_eq!(pod_key(Some(&pod(Some("a"), Some("ns")))), "ns/a");
    assert_eq!(pod_key(Some(&pod(Some("a"), None))), "a");
    assert_eq!(pod_key(Some(&pod(None, Some("ns")))), "");
    assert_eq!(pod_key(None), "");
}

// ---- verify_chain ----

fn t(minute: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 10, 0, 0).unwrap() + Duration::minutes(minute)
}

fn hex(tag: &str) -> String {
    bundle_digest(tag.as_bytes())
}

/// Report `seq` of `pod`, honestly linked to `seq - 1`, generated at minute `seq`.
fn report(pod: &str, seq: u64) -> ChainEntry {
    ChainEntry {
        manifest: format!("sha256:{}", hex(&format!("manifest {pod} {seq}"))),
        bundle: hex(&format!("bundle {pod} {seq}")),
        fields: ChainFields {
            pod: pod.to_owned(),
            sequence: Some(seq),
            previous: (seq > 1).then(|| hex(&format!("bundle {pod} {}", seq - 1))),
            generated_at: Some(t(seq as i64)),
            chain_start: seq == 1,
            chain_resumed: false,
            missed_reports: 0,
        },
    }
}

fn chain_of(pod: &str, seqs: impl IntoIterator<Item = u64>) -> Vec<ChainEntry> {
    seqs.into_iter().map(|s| report(pod, s)).collect()
}

fn only_chain(report: &ChainReport) -> &PodChain {
    assert_eq!(report.chains.len(), 1, "{report:#?}");
    &report.chains[0]
}

#[test]
fn an_intact_chain_passes() {
    let mut entries = chain_of("ns/p", 1..=6);
    entries.reverse(); // listing order does not matter
    let r = verify_chain(entries, Vec::new());
    assert!(r.intact(), "{r:#?}");
    let c = only_chain(&r);
    assert_eq!((c.first, c.last, c.count, c.started), (1, 6, 6, true));
    assert!(c.notices.is_empty());
}

#[test]
fn missing_reports_are_named_with_their_neighbours() {
    let r = verify_chain(chain_of("p", [1, 2, 3, 6, 7]), Vec::new());
    let c = only_chain(&r);
    assert_eq!(c.problems.len(), 1, "{c:#?}");
    let ChainProblem::Missing {
        from,
        to,
        after,
        before,
    } = &c.problems[0]
    else {
        panic!("{c:#?}");
    };
    assert_eq!((*from, *to), (4, 5));
    assert_eq!(after.as_ref().map(|a| a.sequence), Some(3));
    assert_eq!(before.sequence, 6);
    let text = c.problems[0].to_string();
    assert!(
        text.starts_with("missing: 4-5 between seq 3 (sha256:"),
        "{text}"
    );
    assert!(!r.intact());

    // A single one.
    let r = verify_chain(chain_of("p", [1, 2, 4]), Vec::new());
    assert!(
        only_chain(&r).problems[0]
            .to_string()
            .starts_with("missing: 3 between")
    );
}

#[test]
fn a_missing_head_is_a_gap_but_a_declared_start_is_not() {
    let r = verify_chain(chain_of("p", 3..=5), Vec::new());
    let c = only_chain(&r);
    assert!(
        matches!(
            &c.problems[..],
            [ChainProblem::Missing {
                from: 1,
                to: 2,
                after: None,
                ..
            }]
        ),
        "{c:#?}"
    );
    assert!(!c.started);
}

#[test]
fn an_altered_report_is_named() {
    // Report 3 re-signed with another previous (and so another bundle digest): both its links break.
    let mut entries = chain_of("p", 1..=5);
    entries[2].bundle = hex("forged 3");
    entries[2].manifest = "sha256:forged".into();
    entries[2].fields.previous = Some(hex("something else"));
    let r = verify_chain(entries, Vec::new());
    let c = only_chain(&r);
    assert_eq!(c.problems.len(), 1, "{c:#?}");
    let ChainProblem::Altered {
        report,
        claimed,
        predecessor,
        successor,
    } = &c.problems[0]
    else {
        panic!("{c:#?}");
    };
    assert_eq!(report.manifest, "sha256:forged");
    assert_eq!(claimed.as_deref(), Some(hex("something else").as_str()));
    assert_eq!(predecessor.sequence, 2);
    assert_eq!(successor.as_ref().map(|s| s.sequence), Some(4));
    let text = c.problems[0].to_string();
    assert!(
        text.contains("seq 3 (sha256:forged) was altered or replaced"),
        "{text}"
    );
}

#[test]
fn a_single_broken_link_names_both_ends() {
    // Report 4's content replaced but its previous kept: the link 4 -> 5 breaks.
    let mut entries = chain_of("p", 1..=5);
    entries[3].bundle = hex("replaced 4");
    let r = verify_chain(entries, Vec::new());
    let c = only_chain(&r);
    assert!(
        matches!(
            &c.problems[..],
            [ChainProblem::Altered { report, predecessor, successor: None, .. }]
                if report.sequence == 5 && predecessor.sequence == 4
        ),
        "{c:#?}"
    );
    assert!(c.problems[0].to_string().contains("one of the two"));
}

#[test]
fn a_report_without_previous_in_the_middle_is_altered() {
    let mut entries = chain_of("p", 1..=3);
    entries[1].fields.previous = None;
    let r = verify_chain(entries, Vec::new());
    let c = only_chain(&r);
    assert!(
        matches!(
            &c.problems[..],
            [ChainProblem::Altered { claimed: None, .. }]
        ),
        "{c:#?}"
    );
    assert!(c.problems[0].to_string().contains("previous=(none)"));
}

#[test]
fn reordered_reports_are_named() {
    let mut entries = chain_of("p", 1..=4);
    entries[2].fields.generated_at = Some(t(10)); // 3 generated after 4
    let r = verify_chain(entries, Vec::new());
    let c = only_chain(&r);
    assert!(
        matches!(
            &c.problems[..],
            [ChainProblem::Reordered { report, predecessor, .. }]
                if report.sequence == 4 && predecessor.sequence == 3
        ),
        "{c:#?}"
    );
    assert!(
        c.problems[0]
            .to_string()
            .starts_with("reordered: report seq 4")
    );
}

#[test]
fn duplicates_are_named_and_the_linked_one_kept() {
    let mut entries = chain_of("p", 1..=4);
    let mut fork = report("p", 3);
    fork.bundle = hex("fork 3");
    fork.manifest = "sha256:0000fork".into();
    entries.push(fork);
    let r = verify_chain(entries, Vec::new());
    let c = only_chain(&r);
    // The fork sorts first by digest, but report 4 names the original: only the duplicate is reported.
    assert_eq!(c.problems.len(), 1, "{c:#?}");
    let ChainProblem::Duplicate { sequence, reports } = &c.problems[0] else {
        panic!("{c:#?}");
    };
    assert_eq!(*sequence, 3);
    assert_eq!(reports.len(), 2);
    assert_eq!(c.count, 5);
}

#[test]
fn the_same_report_pushed_twice_is_one_report() {
    let mut entries = chain_of("p", 1..=3);
    let mut again = report("p", 2);
    again.manifest = "sha256:ffff".into();
    entries.push(again);
    let r = verify_chain(entries, Vec::new());
    assert!(r.intact(), "{r:#?}");
    assert_eq!(only_chain(&r).count, 3);
}

#[test]
fn a_resumed_chain_and_missed_reports_are_notices() {
    let mut entries = chain_of("p", 1..=4);
    entries[2].fields.chain_resumed = true;
    entries[3].fields.missed_reports = 2;
    let r = verify_chain(entries, Vec::new());
    assert!(r.intact(), "{r:#?}");
    let c = only_chain(&r);
    assert!(
        matches!(
            &c.notices[..],
            [
                ChainNotice::Resumed { report: a },
                ChainNotice::MissedReports { report: b, count: 2 }
            ] if a.sequence == 3 && b.sequence == 4
        ),
        "{c:#?}"
    );
    assert!(c.notices[0].to_string().starts_with("resumed:"));
}

#[test]
fn a_new_chain_after_lost_state_is_a_separate_chain_not_a_gap() {
    // Pod p: chain 1..3, then the state was lost and a new chain 1..2 started later.
    let mut entries = chain_of("p", 1..=3);
    for mut e in chain_of("p", 1..=2) {
        e.bundle = hex(&format!("second {}", e.bundle));
        e.manifest = format!("{}-2", e.manifest);
        e.fields.generated_at = e.fields.generated_at.map(|g| g + Duration::hours(1));
        entries.push(e);
    }
    entries[4].fields.previous = Some(entries[3].bundle.clone());
    let r = verify_chain(entries, Vec::new());
    assert!(r.intact(), "{r:#?}");
    assert_eq!(r.chains.len(), 2);
    assert_eq!((r.chains[0].first, r.chains[0].last), (1, 3));
    assert_eq!((r.chains[1].first, r.chains[1].last), (1, 2));
    assert!(
        matches!(
            &r.chains[1].notices[..],
            [ChainNotice::Restarted { report, previous_chain_last }]
                if report.sequence == 1 && previous_chain_last.sequence == 3
        ),
        "{r:#?}"
    );
}

#[test]
fn pods_are_separate_and_filtered_reports_are_kept_apart() {
    let mut entries = chain_of("ns/a", 1..=3);
    entries.extend(chain_of("ns/b", 1..=2));
    let mut unchained = report("ns/a", 9);
    unchained.fields.sequence = None;
    unchained.manifest = "sha256:plain".into();
    entries.push(unchained);
    let rejected = vec![Rejected {
        manifest: "sha256:bad".into(),
        reason: "signature does not verify".into(),
    }];
    let r = verify_chain(entries, rejected);
    assert_eq!(r.chains.len(), 2);
    assert_eq!(r.chains[0].pod, "ns/a");
    assert_eq!(r.chains[1].pod, "ns/b");
    assert!(r.chains.iter().all(|c| c.problems.is_empty()));
    assert_eq!(r.unchained, ["sha256:plain"]);
    assert_eq!(r.problems(), 1);
    assert!(!r.intact());
}

#[test]
fn contradictory_chain_fields_are_malformed() {
    let mut entries = chain_of("p", 1..=3);
    entries[1].fields.chain_start = true; // chainStart on sequence 2
    let r = verify_chain(entries, Vec::new());
    assert!(
        r.chains
            .iter()
            .flat_map(|c| &c.problems)
            .any(|p| matches!(p, ChainProblem::Malformed { report, .. } if report.sequence == 2)),
        "{r:#?}"
    );
}

#[test]
fn chain_fields_are_read_from_a_predicate_and_wrong_types_refused() {
    let d = "ef".repeat(32);
    let predicate = serde_json::json!({
        "verdict": "pass",
        "pod": {"name": "p", "namespace": "ns", "node": "n"},
        "sequence": 4,
        "previous": {"sha256": d},
        "chainResumed": true,
        "missedReports": 1,
        "generatedAt": "2026-03-01T10:05:12Z"
    });
    let f = ChainFields::from_predicate(predicate.as_object().unwrap()).unwrap();
    assert_eq!(f.pod, "ns/p");
    assert_eq!(f.sequence, Some(4));
    assert_eq!(f.previous.as_deref(), Some(d.as_str()));
    assert!(f.chain_resumed && !f.chain_start);
    assert_eq!(f.missed_reports, 1);
    assert_eq!(f.generated_at, Some(t(5) + Duration::seconds(12)));

    for bad in [
        serde_json::json!({"sequence": -1}),
        serde_json::json!({"sequence": "4"}),
        serde_json::json!({"previous": {"sha256": "xyz"}}),
        serde_json::json!({"chainStart": "yes"}),
        serde_json::json!({"generatedAt": "yesterday"}),
        serde_json::json!({"pod": "p"}),
    ] {
        assert!(
            ChainFields::from_predicate(bad.as_object().unwrap()).is_err(),
            "{bad}"
        );
    }
    let plain =
        ChainFields::from_predicate(serde_json::json!({"verdict": "pass"}).as_object().unwrap())
            .unwrap();
    assert_eq!(plain, ChainFields::default());
}

#[test]
fn a_chain_whose_start_was_deleted_is_not_mixed_with_the_next_one() {
    // Chain one lost its first report; chain two started later in the same pod.
    let mut entries = chain_of("p", 2..=3);
    for mut e in chain_of("p", 1..=2) {
        e.bundle = hex(&format!("second {}", e.bundle));
        e.manifest = format!("{}-2", e.manifest);
        e.fields.generated_at = e.fields.generated_at.map(|g| g + Duration::hours(1));
        entries.push(e);
    }
    entries[3].fields.previous = Some(entries[2].bundle.clone());
    let r = verify_chain(entries, Vec::new());
    assert_eq!(r.chains.len(), 2, "{r:#?}");
    assert!(
        matches!(
            &r.chains[0].problems[..],
            [ChainProblem::Missing {
                from: 1,
                to: 1,
                after: None,
                ..
            }]
        ),
        "{r:#?}"
    );
    assert!(r.chains[1].problems.is_empty(), "{r:#?}");
    assert_eq!(r.problems(), 1);
}
