// SPDX-License-Identifier: Apache-2.0
//! Sections 1 to 6 of docs/contracts/verification.md: which records count, and the status of each call and path.

use super::*;

#[test]
fn window_counts_only_records_entirely_inside() {
    let m = two_ssl_paths();
    let inside_at_bounds = with_interval(
        call(LIBSSL, SSL_ID, "SSL_connect", 1),
        "2026-01-01T00:00:00Z",
        "2026-01-01T00:30:00Z",
    );
    let crosses_from = with_interval(
        call(LIBSSL, SSL_ID, "SSL_read", 5),
        "2025-12-31T23:59:59Z",
        "2026-01-01T00:00:10Z",
    );
    let crosses_to = with_interval(
        call(LIBSSL, SSL_ID, "SSL_read", 5),
        "2026-01-01T00:29:59Z",
        "2026-01-01T00:30:01Z",
    );
    let r = run(&m, window(), &[inside_at_bounds, crosses_from, crosses_to]);
    assert_eq!(
        status_of(&r, "curl:SSL_connect"),
        PathStatus::Observed,
        "bounds are inclusive"
    );
    assert_eq!(
        status_of(&r, "curl:SSL_read"),
        PathStatus::Unobserved,
        "partly outside is not counted"
    );
    assert_eq!((r.observations.records, r.observations.ignored), (3, 2));
    assert!(codes(&r.warnings).contains(&"records-ignored"));
    // Unbounded windows count everything.
    let r = run(
        &m,
        Window::default(),
        &[with_interval(
            call(LIBSSL, SSL_ID, "SSL_read", 1),
            "1999-01-01T00:00:00Z",
            "2099-01-01T00:00:00Z",
        )],
    );
    assert_eq!(status_of(&r, "curl:SSL_read"), PathStatus::Observed);
}

#[test]
fn end_before_start_is_bad_input() {
    let m = two_ssl_paths();
    let mut v = Verifier::new(&m, window());
    let bad = with_interval(
        call(LIBSSL, SSL_ID, "SSL_read", 1),
        "2026-01-01T00:10:00Z",
        "2026-01-01T00:09:59Z",
    );
    let err = v.add(&bad).expect_err("end before start");
    assert!(
        matches!(err, VerifyError::Record(RecordError::EndBeforeStart { .. })),
        "{err}"
    );
}

#[test]
fn exe_must_be_the_paths_entrypoint() {
    let m = map(
        &[
            P(
                "curl:SSL_connect",
                CURL,
                &[(LIBSSL, SSL_ID, "SSL_connect")],
                &[],
                false,
            ),
            P(
                "wget:SSL_connect",
                WGET,
                &[(LIBSSL, SSL_ID, "SSL_connect")],
                &[],
                false,
            ),
        ],
        json!({}),
    );
    let r = run(
        &m,
        window(),
        &[with_exe(
            call(LIBSSL, SSL_ID, "SSL_connect", 3),
            "/usr/bin/python3",
        )],
    );
    assert_eq!(
        status_of(&r, "curl:SSL_connect"),
        PathStatus::Unobserved,
        "another program does not prove the path"
    );
    assert_eq!(status_of(&r, "wget:SSL_connect"), PathStatus::Unobserved);
    assert!(
        r.unexpected_symbols.is_empty(),
        "a mapped call from another exe is not unexpected"
    );
    let detail = r.paths[0].calls[0].detail.as_deref().unwrap_or_default();
    assert_eq!(detail, "called only by programs other than /usr/bin/curl");

    let r = run(
        &m,
        window(),
        &[with_exe(call(LIBSSL, SSL_ID, "SSL_connect", 3), CURL)],
    );
    assert_eq!(status_of(&r, "curl:SSL_connect"), PathStatus::Observed);
    assert_eq!(status_of(&r, "wget:SSL_connect"), PathStatus::Unobserved);
    assert_eq!(r.paths[0].calls[0].count, 3);

    let r = run(&m, window(), &[call(LIBSSL, SSL_ID, "SSL_connect", 2)]);
    assert_eq!(
        status_of(&r, "curl:SSL_connect"),
        PathStatus::Observed,
        "no exe counts for every path"
    );
    assert_eq!(status_of(&r, "wget:SSL_connect"), PathStatus::Observed);
}

#[test]
fn build_id_mismatch_beats_observed() {
    let m = two_ssl_paths();
    // Observed with the right build-id, and the same file also seen with another one: fail closed.
    let r = run(
        &m,
        window(),
        &[
            call(LIBSSL, SSL_ID, "SSL_connect", 5),
            call(LIBSSL, "ffff", "SSL_read", 5),
        ],
    );
    assert_eq!(
        status_of(&r, "curl:SSL_connect"),
        PathStatus::BinaryMismatch
    );
    assert_eq!(status_of(&r, "curl:SSL_read"), PathStatus::BinaryMismatch);
    assert_eq!(
        r.paths[1].calls[0].count, 0,
        "the other file's calls are not counted"
    );
    let detail = r.paths[0].calls[0].detail.as_deref().unwrap_or_default();
    assert!(
        detail.contains("ffff") && detail.contains(SSL_ID),
        "{detail}"
    );
    assert_eq!(r.verdict, Verdict::Fail);

    // A binary-mismatch probe record marks the whole file, whatever the symbol.
    let r = run(
        &m,
        window(),
        &[
            call(LIBSSL, SSL_ID, "SSL_connect", 5),
            probe(LIBSSL, None, Some("SSL_read"), ProbeStatus::BinaryMismatch),
        ],
    );
    assert_eq!(
        status_of(&r, "curl:SSL_connect"),
        PathStatus::BinaryMismatch
    );

    // Another build-id on a symbol the map does not expect is still evidence about the file.
    let r = run(
        &m,
        window(),
        &[
            call(LIBSSL, SSL_ID, "SSL_connect", 5),
            call(LIBSSL, "ffff", "SSL_write", 1),
        ],
    );
    assert_eq!(
        status_of(&r, "curl:SSL_connect"),
        PathStatus::BinaryMismatch
    );

    // Mismatch evidence outside the window does not count.
    let old = with_interval(
        call(LIBSSL, "ffff", "SSL_read", 5),
        "2025-01-01T00:00:00Z",
        "2025-01-01T00:00:10Z",
    );
    let r = run(&m, window(), &[call(LIBSSL, SSL_ID, "SSL_connect", 5), old]);
    assert_eq!(status_of(&r, "curl:SSL_connect"), PathStatus::Observed);
}

#[test]
fn records_without_build_id_are_not_counted_for_files_with_one() {
    let m = two_ssl_paths();
    let r = run(&m, window(), &[call(LIBSSL, "", "SSL_connect", 5)]);
    assert_eq!(status_of(&r, "curl:SSL_connect"), PathStatus::Unobserved);
    assert_eq!(r.observations.unidentified, 1);
    assert!(codes(&r.warnings).contains(&"unidentified-records"));
    // A file identified by sha256 only: the record's build-id is not compared.
    let m = map(
        &[P("p", CURL, &[(LIBC, "", "connect")], &[], false)],
        json!({}),
    );
    let r = run(
        &m,
        window(),
        &[
            call(LIBC, "", "connect", 1),
            call(LIBC, "dead", "connect", 1),
        ],
    );
    assert_eq!(status_of(&r, "p"), PathStatus::Observed);
    assert_eq!(r.paths[0].count, 2);
}

#[test]
fn unresolvable_from_map_or_probe_and_observed_wins() {
    let m = map_with(
        &[
            P("a", CURL, &[(LIBSSL, SSL_ID, "SSL_connect")], &[], false),
            P("b", CURL, &[(LIBSSL, SSL_ID, "SSL_read")], &[], false),
            P("c", CURL, &[(LIBC, LIBC_ID, "connect")], &[], false),
            P("d", CURL, &[(LIBC, LIBC_ID, "send")], &[], false),
        ],
        json!({}),
        |doc| {
            doc["predicate"]["expectedPaths"][0]["calls"][0]["unresolved"] = json!("not in .dynsym")
        },
    );
    let r = run(
        &m,
        window(),
        &[
            probe(
                LIBSSL,
                Some(SSL_ID),
                Some("SSL_read"),
                ProbeStatus::Unresolvable,
            ),
            probe(LIBC, None, None, ProbeStatus::Unresolvable),
            call(LIBC, LIBC_ID, "send", 1),
        ],
    );
    assert_eq!(
        status_of(&r, "a"),
        PathStatus::Unresolvable,
        "unresolved in the map"
    );
    assert_eq!(
        status_of(&r, "b"),
        PathStatus::Unresolvable,
        "probe record for the symbol"
    );
    assert_eq!(
        status_of(&r, "c"),
        PathStatus::Unresolvable,
        "probe record without symbol covers the file"
    );
    assert_eq!(
        status_of(&r, "d"),
        PathStatus::Observed,
        "observed beats unresolvable"
    );
    assert_eq!(r.observation_rate.observed, 1);
    assert_eq!(
        r.observation_rate.total, 4,
        "unresolvable paths stay in the denominator"
    );
}

#[test]
fn attach_failures_are_listed_and_leave_paths_unobserved() {
    let m = two_ssl_paths();
    let mut failed = probe(
        LIBSSL,
        Some(SSL_ID),
        Some("SSL_read"),
        ProbeStatus::AttachFailed,
    );
    let r = run(
        &m,
        window(),
        &[
            failed.clone(),
            failed.clone(),
            call(LIBSSL, SSL_ID, "SSL_connect", 1),
        ],
    );
    assert_eq!(status_of(&r, "curl:SSL_read"), PathStatus::Unobserved);
    assert!(r.paths[1].calls[0].attach_failed);
    assert_eq!(r.probe_failures.len(), 1);
    assert_eq!(r.probe_failures[0].records, 2);
    assert_eq!(r.probe_failures[0].status, ProbeStatus::AttachFailed);
    assert_eq!(r.probe_failures[0].detail.as_deref(), Some("from the test"));
    assert!(codes(&r.warnings).contains(&"attach-failed"));
    // An attach failure does not hide an observation.
    failed.body = RecordBody::Probe {
        binary: LIBSSL.into(),
        build_id: None,
        symbol: Some("SSL_connect".into()),
        status: ProbeStatus::AttachFailed,
        detail: None,
    };
    let r = run(
        &m,
        window(),
        &[failed, call(LIBSSL, SSL_ID, "SSL_connect", 1)],
    );
    assert_eq!(status_of(&r, "curl:SSL_connect"), PathStatus::Observed);
}

#[test]
fn a_path_needs_every_call() {
    let m = map(
        &[P(
            "chain",
            CURL,
            &[(LIBSSL, SSL_ID, "SSL_connect"), (LIBC, LIBC_ID, "connect")],
            &[],
            false,
        )],
        json!({}),
    );
    let r = run(&m, window(), &[call(LIBSSL, SSL_ID, "SSL_connect", 4)]);
    assert_eq!(status_of(&r, "chain"), PathStatus::Unobserved);
    assert_eq!(r.paths[0].count, 0, "the smallest call count");
    let r = run(
        &m,
        window(),
        &[
            call(LIBSSL, SSL_ID, "SSL_connect", 4),
            call(LIBC, LIBC_ID, "connect", 2),
        ],
    );
    assert_eq!(status_of(&r, "chain"), PathStatus::Observed);
    assert_eq!(r.paths[0].count, 2);
}

#[test]
fn zero_counts_are_neither_observations_nor_unexpected() {
    let m = two_ssl_paths();
    let r = run(
        &m,
        window(),
        &[
            call(LIBSSL, SSL_ID, "SSL_connect", 0),
            call(LIBSSL, SSL_ID, "SSL_write", 0),
        ],
    );
    assert_eq!(status_of(&r, "curl:SSL_connect"), PathStatus::Unobserved);
    assert!(r.unexpected_symbols.is_empty());
}

#[test]
fn lower_bound_counts_are_marked() {
    let m = two_ssl_paths();
    let mut r1 = call(LIBSSL, SSL_ID, "SSL_connect", 1);
    if let RecordBody::Call { lower_bound, .. } = &mut r1.body {
        *lower_bound = true;
    }
    let r = run(&m, window(), &[r1]);
    assert_eq!(status_of(&r, "curl:SSL_connect"), PathStatus::Observed);
    assert!(r.paths[0].calls[0].lower_bound);
}
