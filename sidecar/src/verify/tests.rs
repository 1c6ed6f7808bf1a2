// SPDX-License-Identifier: Apache-2.0
//! One test per rule of docs/contracts/verification.md, on small maps built in code.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::*;
use crate::function_map::FunctionMap;
use crate::observation::{Record, RecordBody};

const LIBSSL: &str = "/usr/lib/x86_64-linux-gnu/libssl.so.3";
const LIBC: &str = "/usr/lib/x86_64-linux-gnu/libc.so.6";
const SSL_ID: &str = "aa11";
const LIBC_ID: &str = "cc33";
const CURL: &str = "/usr/bin/curl";
const WGET: &str = "/usr/bin/wget";

/// A path description: id, entrypoint, calls as (binary, build-id, symbol), tags, optional.
struct P<'a>(
    &'a str,
    &'a str,
    &'a [(&'a str, &'a str, &'a str)],
    &'a [&'a str],
    bool,
);

fn path_json(p: &P<'_>) -> Value {
    let calls: Vec<Value> =
        p.2.iter()
            .map(|(binary, id, symbol)| {
                let mut b = json!({ "path": binary });
                if id.is_empty() {
                    b["sha256"] = json!("ab".repeat(32));
                } else {
                    b["buildId"] = json!(id);
                }
                json!({ "symbol": symbol, "binary": b })
            })
            .collect();
    json!({ "id": p.0, "entrypoint": p.1, "calls": calls, "tags": p.3, "optional": p.4 })
}

fn map_with(paths: &[P<'_>], coverage: Value, edit: impl FnOnce(&mut Value)) -> FunctionMap {
    let mut doc = json!({
        "_type": "https://stella.ops/predicates/function-map/v1",
        "subject": { "purl": format!("pkg:oci/app@sha256:{}", "0".repeat(64)), "digest": { "sha256": "0".repeat(64) } },
        "predicate": {
            "schemaVersion": "1.0.0",
            "service": "app",
            "expectedPaths": paths.iter().map(path_json).collect::<Vec<_>>(),
            "coverage": coverage,
            "generatedAt": "2026-01-01T00:00:00Z"
        }
    });
    edit(&mut doc);
    let bytes = serde_json::to_vec(&doc).expect("json");
    FunctionMap::from_slice(&bytes, "test map").expect("valid test map")
}

fn map(paths: &[P<'_>], coverage: Value) -> FunctionMap {
    map_with(paths, coverage, |_| {})
}

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("time")
        .with_timezone(&Utc)
}

/// The window of most tests: [00:00, 00:30].
fn window() -> Window {
    Window {
        from: Some(t("2026-01-01T00:00:00Z")),
        to: Some(t("2026-01-01T00:30:00Z")),
    }
}

fn record(body: RecordBody) -> Record {
    Record {
        v: 1,
        start: "2026-01-01T00:10:00Z".into(),
        end: "2026-01-01T00:10:10Z".into(),
        pod: None,
        container: None,
        pid: Some(42),
        exe: None,
        body,
    }
}

fn call(binary: &str, build_id: &str, symbol: &str, count: u64) -> Record {
    record(RecordBody::Call {
        binary: binary.into(),
        build_id: (!build_id.is_empty()).then(|| build_id.into()),
        symbol: symbol.into(),
        count,
        lower_bound: false,
    })
}

fn probe(
    binary: &str,
    build_id: Option<&str>,
    symbol: Option<&str>,
    status: ProbeStatus,
) -> Record {
    record(RecordBody::Probe {
        binary: binary.into(),
        build_id: build_id.map(Into::into),
        symbol: symbol.map(Into::into),
        status,
        detail: Some("from the test".into()),
    })
}

fn with_exe(mut r: Record, exe: &str) -> Record {
    r.exe = Some(exe.into());
    r
}

fn with_interval(mut r: Record, start: &str, end: &str) -> Record {
    r.start = start.into();
    r.end = end.into();
    r
}

fn run(map: &FunctionMap, window: Window, records: &[Record]) -> VerificationResult {
    let mut v = Verifier::new(map, window);
    for r in records {
        v.add(r).expect("valid record");
    }
    v.finish()
}

fn status_of(result: &VerificationResult, id: &str) -> PathStatus {
    result
        .paths
        .iter()
        .find(|p| p.id == id)
        .map(|p| p.status)
        .expect("path in result")
}

fn codes(findings: &[Finding]) -> Vec<&str> {
    findings.iter().map(|f| f.code.as_str()).collect()
}

fn two_ssl_paths() -> FunctionMap {
    map(
        &[
            P(
                "curl:SSL_connect",
                CURL,
                &[(LIBSSL, SSL_ID, "SSL_connect")],
                &["tls"],
                false,
            ),
            P(
                "curl:SSL_read",
                CURL,
                &[(LIBSSL, SSL_ID, "SSL_read")],
                &["tls"],
                false,
            ),
        ],
        json!({ "minObservationRate": 1.0 }),
    )
}

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
