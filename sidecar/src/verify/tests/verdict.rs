// SPDX-License-Identifier: Apache-2.0
//! Sections 7 to 10 and the window flags: rates, unexpected symbols, warnings and the verdict.

use super::*;

#[test]
fn optional_paths_are_reported_but_do_not_count() {
    let m = map(
        &[
            P(
                "req",
                CURL,
                &[(LIBSSL, SSL_ID, "SSL_connect")],
                &["tls"],
                false,
            ),
            P(
                "opt",
                CURL,
                &[(LIBSSL, SSL_ID, "SSL_read")],
                &["tls", "extra"],
                true,
            ),
        ],
        json!({ "minObservationRate": 1.0 }),
    );
    let r = run(&m, window(), &[call(LIBSSL, SSL_ID, "SSL_connect", 1)]);
    assert_eq!(status_of(&r, "opt"), PathStatus::Unobserved);
    assert_eq!(
        (r.observation_rate.observed, r.observation_rate.total),
        (1, 1)
    );
    assert_eq!(r.verdict, Verdict::Pass);
    assert_eq!(
        r.per_tag["extra"].total, 0,
        "a tag carried only by optional paths has no rate"
    );
    assert_eq!(r.per_tag["extra"].rate, None);
    // Observing the optional path does not raise the rate of anything either.
    let r = run(&m, window(), &[call(LIBSSL, SSL_ID, "SSL_read", 1)]);
    assert_eq!(status_of(&r, "opt"), PathStatus::Observed);
    assert_eq!(r.observation_rate.observed, 0);
    assert_eq!(r.verdict, Verdict::Fail);
}

#[test]
fn per_tag_minimum_fails_the_verdict() {
    let m = map(
        &[
            P(
                "tls1",
                CURL,
                &[(LIBSSL, SSL_ID, "SSL_connect")],
                &["tls", "crypto"],
                false,
            ),
            P(
                "tls2",
                CURL,
                &[(LIBSSL, SSL_ID, "SSL_read")],
                &["tls"],
                false,
            ),
            P("net1", CURL, &[(LIBC, LIBC_ID, "connect")], &["net"], false),
            P("net2", CURL, &[(LIBC, LIBC_ID, "send")], &["net"], false),
        ],
        json!({ "minObservationRate": 0.75, "perTag": { "tls": 1.0, "net": 0.5 } }),
    );
    let r = run(
        &m,
        window(),
        &[
            call(LIBSSL, SSL_ID, "SSL_connect", 1),
            call(LIBC, LIBC_ID, "connect", 1),
            call(LIBC, LIBC_ID, "send", 1),
        ],
    );
    assert_eq!(r.observation_rate.pass, Some(true), "3/4 meets 0.75");
    assert_eq!(r.per_tag["tls"].pass, Some(false));
    assert_eq!(r.per_tag["net"].pass, Some(true));
    assert_eq!(r.per_tag["crypto"].pass, None, "no minimum for crypto");
    assert_eq!(
        (r.per_tag["crypto"].observed, r.per_tag["crypto"].total),
        (1, 1)
    );
    assert_eq!(r.verdict, Verdict::Fail);
    assert_eq!(codes(&r.reasons), vec!["tag-rate-below-min"]);
    assert!(
        r.reasons[0]
            .message
            .contains("tag tls: observation rate 1/2 (50.00%)"),
        "{}",
        r.reasons[0].message
    );
}

#[test]
fn unexpected_symbols_fail_only_with_fail_on_unexpected() {
    let paths = [P("a", CURL, &[(LIBSSL, SSL_ID, "SSL_connect")], &[], false)];
    let records = [
        call(LIBSSL, SSL_ID, "SSL_connect", 1),
        call(LIBSSL, SSL_ID, "SSL_write", 2),
        with_exe(call(LIBSSL, SSL_ID, "SSL_write", 3), WGET),
        call(LIBC, "", "system", 1),
        call(LIBSSL, SSL_ID, "MD5_Init", 1),
    ];
    let r = run(
        &map(&paths, json!({ "failOnUnexpected": true })),
        window(),
        &records,
    );
    assert_eq!(r.verdict, Verdict::Fail);
    assert_eq!(codes(&r.reasons), vec!["unexpected-symbols"]);
    let listed: Vec<(&str, Option<&str>, &str, u64, u64)> = r
        .unexpected_symbols
        .iter()
        .map(|u| {
            (
                u.binary.as_str(),
                u.build_id.as_deref(),
                u.symbol.as_str(),
                u.count,
                u.records,
            )
        })
        .collect();
    assert_eq!(
        listed,
        vec![
            (LIBC, None, "system", 1, 1),
            (LIBSSL, Some(SSL_ID), "MD5_Init", 1, 1),
            (LIBSSL, Some(SSL_ID), "SSL_write", 5, 2),
        ],
        "summed per (binary, buildId, symbol), sorted"
    );
    let r = run(
        &map(&paths, json!({ "failOnUnexpected": false })),
        window(),
        &records,
    );
    assert_eq!(r.verdict, Verdict::Pass);
    assert_eq!(codes(&r.warnings), vec!["unexpected-symbols"]);
}

#[test]
fn calls_of_optional_paths_are_not_unexpected() {
    let m = map(
        &[
            P("a", CURL, &[(LIBSSL, SSL_ID, "SSL_connect")], &[], false),
            P("o", CURL, &[(LIBSSL, SSL_ID, "SSL_read")], &[], true),
        ],
        json!({ "failOnUnexpected": true }),
    );
    let r = run(
        &m,
        window(),
        &[
            call(LIBSSL, SSL_ID, "SSL_connect", 1),
            call(LIBSSL, SSL_ID, "SSL_read", 1),
        ],
    );
    assert!(r.unexpected_symbols.is_empty());
    assert_eq!(r.verdict, Verdict::Pass);
}

#[test]
fn unexpected_list_is_bounded_and_counts_what_it_leaves_out() {
    let m = map(
        &[P("a", CURL, &[(LIBSSL, SSL_ID, "SSL_connect")], &[], false)],
        json!({ "failOnUnexpected": true }),
    );
    let mut v = Verifier::new(&m, window());
    v.add(&call(LIBSSL, SSL_ID, "SSL_connect", 1))
        .expect("record");
    for i in (0..MAX_LISTED + 5).rev() {
        v.add(&call(LIBC, "", &format!("fn{i:06}"), 2))
            .expect("record");
    }
    let r = v.finish();
    assert_eq!(r.unexpected_symbols.len(), MAX_LISTED);
    assert_eq!(
        r.unexpected_symbols[0].symbol, "fn000000",
        "the smallest keys are kept"
    );
    assert_eq!(
        r.unexpected_omitted,
        Some(Omitted {
            records: 5,
            calls: 10
        })
    );
    assert_eq!(r.verdict, Verdict::Fail);
}

#[test]
fn boundary_19_of_20_meets_095() {
    let paths: Vec<(String, String)> = (0..20)
        .map(|i| (format!("p{i}"), format!("fn{i}")))
        .collect();
    let calls: Vec<[(&str, &str, &str); 1]> = paths
        .iter()
        .map(|(_, s)| [(LIBSSL, SSL_ID, s.as_str())])
        .collect();
    let ps: Vec<P<'_>> = paths
        .iter()
        .zip(&calls)
        .map(|((id, _), c)| P(id, CURL, c, &[], false))
        .collect();
    let m = map(&ps, json!({ "minObservationRate": 0.95 }));
    let observe = |n: usize| -> Vec<Record> {
        paths[..n]
            .iter()
            .map(|(_, s)| call(LIBSSL, SSL_ID, s, 1))
            .collect()
    };
    let r = run(&m, window(), &observe(19));
    assert_eq!(
        (r.observation_rate.observed, r.observation_rate.total),
        (19, 20)
    );
    assert_eq!(r.verdict, Verdict::Pass);
    let r = run(&m, window(), &observe(18));
    assert_eq!(r.verdict, Verdict::Fail);
    assert_eq!(
        r.reasons[0].message,
        "observation rate 18/20 (90.00%) is below the minimum 0.95"
    );
}

#[test]
fn no_observations_is_rate_zero_and_fail() {
    let m = two_ssl_paths();
    let r = run(&m, window(), &[]);
    assert_eq!(r.observation_rate.rate, Some(0.0));
    assert_eq!(r.verdict, Verdict::Fail);
    assert_eq!(codes(&r.reasons), vec!["observation-rate-below-min"]);
    assert!(r.paths.iter().all(|p| p.status == PathStatus::Unobserved));
}

#[test]
fn every_reason_is_listed() {
    let m = map(
        &[
            P(
                "a",
                CURL,
                &[(LIBSSL, SSL_ID, "SSL_connect")],
                &["tls"],
                false,
            ),
            P("b", CURL, &[(LIBC, LIBC_ID, "connect")], &["net"], false),
        ],
        json!({ "minObservationRate": 1.0, "perTag": { "tls": 1.0, "net": 1.0 }, "failOnUnexpected": true }),
    );
    let r = run(&m, window(), &[call(LIBC, LIBC_ID, "system", 1)]);
    assert_eq!(
        codes(&r.reasons),
        vec![
            "observation-rate-below-min",
            "tag-rate-below-min",
            "tag-rate-below-min",
            "unexpected-symbols"
        ]
    );
}

#[test]
fn dropped_events_warn_but_do_not_fail() {
    let m = two_ssl_paths();
    let drop = |n| record(RecordBody::Drop { dropped: n });
    let r = run(
        &m,
        window(),
        &[
            call(LIBSSL, SSL_ID, "SSL_connect", 1),
            call(LIBSSL, SSL_ID, "SSL_read", 1),
            drop(7),
            drop(3),
        ],
    );
    assert_eq!(r.verdict, Verdict::Pass);
    assert_eq!(r.observations.dropped, 10);
    assert_eq!(codes(&r.warnings), vec!["events-dropped"]);
}

#[test]
fn result_does_not_depend_on_record_order() {
    let m = two_ssl_paths();
    let mut records = vec![
        call(LIBSSL, SSL_ID, "SSL_connect", 1),
        call(LIBC, "", "b", 1),
        call(LIBC, "", "a", 4),
        probe(
            LIBSSL,
            Some(SSL_ID),
            Some("SSL_read"),
            ProbeStatus::Unresolvable,
        ),
        record(RecordBody::Drop { dropped: 2 }),
    ];
    let forward = run(&m, window(), &records);
    records.reverse();
    assert_eq!(run(&m, window(), &records), forward);
}

#[test]
fn window_defaults_follow_the_flags() {
    let m = map(
        &[P("a", CURL, &[(LIBSSL, SSL_ID, "SSL_connect")], &[], false)],
        json!({ "windowSeconds": 600 }),
    );
    let to = t("2026-01-01T01:00:00Z");
    let w = resolve_window(&m, &[], None, Some(to)).expect("window");
    assert_eq!(
        w,
        Window {
            from: Some(t("2026-01-01T00:50:00Z")),
            to: Some(to)
        }
    );
    let w = resolve_window(&m, &[], Some(to), None).expect("window");
    assert_eq!(
        w,
        Window {
            from: Some(to),
            to: Some(t("2026-01-01T01:10:00Z"))
        }
    );
    let err = resolve_window(&m, &[], Some(to), Some(t("2026-01-01T00:00:00Z")))
        .expect_err("from after to");
    assert!(err.to_string().contains("after it ends"), "{err}");
    // Neither flag: the window ends at the latest record end of the files.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("obs.ndjson");
    let mut w =
        crate::observation::RecordWriter::append(&file, crate::observation::Compression::None)
            .expect("writer");
    w.write(&with_interval(
        call(LIBSSL, SSL_ID, "SSL_connect", 1),
        "2026-01-01T02:00:00Z",
        "2026-01-01T02:00:10Z",
    ))
    .expect("write");
    w.write(&with_interval(
        call(LIBSSL, SSL_ID, "SSL_connect", 1),
        "2026-01-01T01:00:00Z",
        "2026-01-01T01:00:10Z",
    ))
    .expect("write");
    w.finish().expect("finish");
    let w = resolve_window(&m, std::slice::from_ref(&file), None, None).expect("window");
    assert_eq!(
        w,
        Window {
            from: Some(t("2026-01-01T01:50:10Z")),
            to: Some(t("2026-01-01T02:00:10Z"))
        }
    );
    let r = verify_files(&m, &[file], w).expect("verify");
    assert_eq!((r.observations.records, r.observations.ignored), (2, 1));
    assert_eq!(r.paths[0].count, 1);
    // No record at all: no bound.
    let empty = dir.path().join("empty.ndjson");
    std::fs::write(&empty, "\n\n").expect("write");
    assert_eq!(
        resolve_window(&m, &[empty], None, None).expect("window"),
        Window::default()
    );
}
