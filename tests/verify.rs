// SPDX-License-Identifier: Apache-2.0
//! `linkguard verify` through the binary: exit codes, text and JSON output, input formats, errors.
#![expect(
    clippy::expect_used,
    reason = "test helpers: a failed expectation is a test failure"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use linkguard_integration_tests::{fixture, linkguard};
use serde_json::Value;

fn s(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

fn map() -> PathBuf {
    fixture("maps/curl-tls.json")
}

fn obs(name: &str) -> PathBuf {
    fixture(&format!("observations/{name}"))
}

fn verify(extra: &[&str]) -> Output {
    let map = map();
    let mut args = vec!["verify", "--function-map", s(&map)];
    args.extend_from_slice(extra);
    linkguard(&args)
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", stdout(out)))
}

/// The table row of a path in the text output.
fn row<'a>(text: &'a str, path_id: &str) -> &'a str {
    text.lines()
        .find(|l| l.split_whitespace().nth(1) == Some(path_id))
        .unwrap_or_else(|| panic!("no row for {path_id}:\n{text}"))
}

fn status_of(report: &Value, path_id: &str) -> String {
    report["predicate"]["paths"]
        .as_array()
        .and_then(|paths| paths.iter().find(|p| p["id"] == path_id))
        .map(|p| p["status"].as_str().unwrap_or_default().to_owned())
        .unwrap_or_else(|| panic!("no path {path_id}"))
}

/// The report without what legitimately differs between runs.
fn stable(mut report: Value) -> Value {
    let p = &mut report["predicate"];
    p["generatedAt"] = Value::Null;
    p["observations"]["files"] = Value::Null;
    report
}

/// Compresses with the gzip tool itself (Debian's `gzip` is Essential), not with our own code.
fn gzip_to(src: &Path, dst: &Path) {
    let out = Command::new("gzip")
        .arg("-c")
        .arg(src)
        .output()
        .expect("run gzip");
    assert!(out.status.success(), "gzip failed");
    std::fs::write(dst, out.stdout).expect("write");
}

#[test]
fn pass_exits_0_with_a_readable_table() {
    let out = verify(&["--observations", s(&obs("curl-pass.ndjson"))]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with("PASS  curl-demo: 5 of 5 required paths observed\n"),
        "{text}"
    );
    assert!(
        text.contains("rate        5/5 (100.00%)  min 0.8  ok"),
        "{text}"
    );
    assert!(
        text.contains("tag tls     3/3 (100.00%)  min 1  ok"),
        "{text}"
    );
    assert!(
        row(&text, "curl:SSL_read@libssl.so.3").starts_with("observed "),
        "{text}"
    );
    // 14 + 5 calls in the window; the 9 from an hour earlier are outside it.
    assert_eq!(
        row(&text, "curl:SSL_read@libssl.so.3")
            .split_whitespace()
            .nth(3),
        Some("19")
    );
    assert!(
        row(&text, "curl:SSL_write@libssl.so.3").contains(" 2"),
        "{text}"
    );
    assert!(
        text.contains("unobserved  curl:EVP_DigestInit_ex@libcrypto.so.3 (optional)"),
        "{text}"
    );
    assert!(text.contains("attach-failed  EVP_DigestInit_ex"), "{text}");
    assert!(
        text.contains(
            "observations: 9 records, 1 outside the window, 0 without build-id, 3 events dropped"
        ),
        "{text}"
    );
}

#[test]
fn fail_exits_1_and_lists_every_reason() {
    let out = verify(&["--observations", s(&obs("curl-fail.ndjson"))]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with("FAIL  curl-demo: 2 of 5 required paths observed\n"),
        "{text}"
    );
    for reason in [
        "observation rate 2/5 (40.00%) is below the minimum 0.8 [observation-rate-below-min]",
        "tag tls: observation rate 2/3 (66.66%) is below the minimum 1 [tag-rate-below-min]",
        "1 unexpected symbol was called (1 records) [unexpected-symbols]",
    ] {
        assert!(text.contains(reason), "missing {reason:?} in\n{text}");
    }
    assert!(
        row(&text, "curl:connect@libc.so.6").starts_with("binary-mismatch "),
        "{text}"
    );
    assert!(
        row(&text, "curl:SSL_write@libssl.so.3")
            .contains("called only by programs other than /usr/bin/curl"),
        "{text}"
    );
    assert!(text.contains("SSL_get_peer_certificate"), "{text}");

    let report = json(&verify(&[
        "--observations",
        s(&obs("curl-fail.ndjson")),
        "--format",
        "json",
    ]));
    let p = &report["predicate"];
    assert_eq!(p["verdict"], "fail");
    assert_eq!(
        status_of(&report, "curl:connect@libc.so.6"),
        "binary-mismatch"
    );
    assert_eq!(
        status_of(&report, "curl:getaddrinfo@libc.so.6"),
        "binary-mismatch"
    );
    assert_eq!(
        status_of(&report, "curl:SSL_write@libssl.so.3"),
        "unobserved"
    );
    assert_eq!(
        status_of(&report, "curl:SSL_connect@libssl.so.3"),
        "observed"
    );
    assert_eq!(
        p["unexpectedSymbols"][0]["symbol"],
        "SSL_get_peer_certificate"
    );
    assert_eq!(p["reasons"].as_array().map(Vec::len), Some(3));
}

#[test]
fn json_report_is_an_in_toto_statement_about_the_image() {
    let out = verify(&[
        "--observations",
        s(&obs("curl-pass.ndjson")),
        "--format",
        "json",
        "--offline",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report = json(&out);
    assert_eq!(report["_type"], "https://in-toto.io/Statement/v1");
    assert_eq!(
        report["predicateType"],
        "https://linkguard.dev/attestations/verification-report/v1"
    );
    assert_eq!(report["subject"][0]["name"], "registry.example/curl-demo");
    assert_eq!(
        report["subject"][0]["digest"]["sha256"],
        "4d6f6a1fbbd5cd3ba8e6b7ea5f4bb5a4b1a0a1e3e2f6c3d1b0a9f8e7d6c5b4a3"
    );
    let p = &report["predicate"];
    // The map digest is the sha256 of the file's bytes: check it with an independent tool.
    let sha = Command::new("sha256sum")
        .arg(map())
        .output()
        .expect("sha256sum");
    let expected = String::from_utf8_lossy(&sha.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(p["functionMap"]["digest"]["sha256"], expected.as_str());
    assert_eq!(p["window"]["from"], "2026-03-01T09:50:10Z");
    assert_eq!(p["window"]["to"], "2026-03-01T10:20:10Z");
    assert_eq!(p["observationRate"]["observed"], 5);
    assert_eq!(p["perTag"]["tls"]["min"], 1.0);
    assert_eq!(p["observations"]["ignored"], 1);
    assert_eq!(p["observations"]["dropped"], 3);
    assert_eq!(p["sidecar"]["name"], "linkguard");
}

#[test]
fn output_file_gets_the_json_report_while_stdout_gets_text() {
    let dir = tempfile::tempdir().expect("tempdir");
    let report_path = dir.path().join("report.json");
    let out = verify(&[
        "--observations",
        s(&obs("curl-fail.ndjson")),
        "--output",
        s(&report_path),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).starts_with("FAIL "));
    let report: Value =
        serde_json::from_slice(&std::fs::read(&report_path).expect("report written"))
            .expect("JSON");
    assert_eq!(report["predicate"]["verdict"], "fail");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .expect("dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .collect();
    assert_eq!(
        leftovers.len(),
        1,
        "no temporary file left behind: {leftovers:?}"
    );
    // With --format json, stdout and the file carry the same bytes.
    let out = verify(&[
        "--observations",
        s(&obs("curl-fail.ndjson")),
        "--output",
        s(&report_path),
        "--format",
        "json",
    ]);
    assert_eq!(out.stdout, std::fs::read(&report_path).expect("report"));
}

#[test]
fn gzip_and_split_files_give_the_same_report() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plain = verify(&[
        "--observations",
        s(&obs("curl-pass.ndjson")),
        "--format",
        "json",
    ]);
    // Named .ndjson on purpose: gzip is recognised by content.
    let gz = dir.path().join("observations.ndjson");
    gzip_to(&obs("curl-pass.ndjson"), &gz);
    let zipped = verify(&["--observations", s(&gz), "--format", "json"]);
    assert_eq!(zipped.status.code(), Some(0), "{}", stderr(&zipped));
    assert_eq!(stable(json(&zipped)), stable(json(&plain)));

    let text = std::fs::read_to_string(obs("curl-pass.ndjson")).expect("read");
    let lines: Vec<&str> = text.lines().collect();
    let (a, b) = (dir.path().join("a.ndjson"), dir.path().join("b.ndjson.gz"));
    std::fs::write(&a, lines[..4].join("\n")).expect("write");
    let b_plain = dir.path().join("b.plain");
    std::fs::write(&b_plain, lines[4..].join("\n")).expect("write");
    gzip_to(&b_plain, &b);
    let split = verify(&[
        "--observations",
        s(&b),
        "--observations",
        s(&a),
        "--format",
        "json",
    ]);
    assert_eq!(split.status.code(), Some(0), "{}", stderr(&split));
    let split = json(&split);
    assert_eq!(
        split["predicate"]["observations"]["files"][0],
        s(&b),
        "files are listed in reading order"
    );
    assert_eq!(stable(split), stable(json(&plain)));
}

#[test]
fn explicit_window_selects_the_records() {
    // Only the record from an hour earlier lies in this window.
    let out = verify(&[
        "--observations",
        s(&obs("curl-pass.ndjson")),
        "--from",
        "2026-03-01T09:00:00Z",
        "--to",
        "2026-03-01T09:30:00Z",
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let report = json(&out);
    assert_eq!(report["predicate"]["observationRate"]["observed"], 1);
    assert_eq!(status_of(&report, "curl:SSL_write@libssl.so.3"), "observed");
    assert_eq!(report["predicate"]["observations"]["ignored"], 8);
    // --to alone: the window is the map's 1800 s before it.
    let out = verify(&[
        "--observations",
        s(&obs("curl-pass.ndjson")),
        "--to",
        "2026-03-01T10:30:00+01:00",
        "--format",
        "json",
    ]);
    let report = json(&out);
    assert_eq!(
        report["predicate"]["window"]["from"],
        "2026-03-01T09:00:00Z"
    );
    assert_eq!(report["predicate"]["window"]["to"], "2026-03-01T09:30:00Z");
}

#[test]
fn bad_input_exits_2_naming_the_file_and_line() {
    let out = verify(&["--observations", s(&obs("bad-field.ndjson"))]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("bad-field.ndjson:3:"), "{err}");
    assert!(err.contains("unknown field `cnt`"), "{err}");
    assert!(stdout(&out).is_empty(), "no verdict on bad input");

    let dir = tempfile::tempdir().expect("tempdir");
    let gz = dir.path().join("cut.gz");
    gzip_to(&obs("curl-pass.ndjson"), &gz);
    let bytes = std::fs::read(&gz).expect("read");
    std::fs::write(&gz, &bytes[..bytes.len() - 10]).expect("truncate");
    let out = verify(&["--observations", s(&gz)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("truncated or corrupt"),
        "{}",
        stderr(&out)
    );

    let backwards = dir.path().join("backwards.ndjson");
    let line = std::fs::read_to_string(obs("curl-pass.ndjson"))
        .expect("read")
        .lines()
        .nth(1)
        .expect("line")
        .replace("10:05:10Z", "10:04:00Z");
    std::fs::write(&backwards, format!("\n{line}\n")).expect("write");
    let out = verify(&["--observations", s(&backwards)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("backwards.ndjson:2: end 2026-03-01T10:04:00Z is before start"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn bad_files_and_flags_exit_2() {
    let missing = obs("does-not-exist.ndjson");
    let out = verify(&["--observations", s(&missing)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("does-not-exist.ndjson"),
        "{}",
        stderr(&out)
    );

    let out = linkguard(&[
        "verify",
        "--function-map",
        "/nonexistent/map.json",
        "--observations",
        s(&obs("curl-pass.ndjson")),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("/nonexistent/map.json"),
        "{}",
        stderr(&out)
    );

    let pass = obs("curl-pass.ndjson");
    for flags in [
        vec!["--observations", s(&pass), "--format", "xml"],
        vec!["--observations", s(&pass), "--from", "yesterday"],
        vec![
            "--observations",
            s(&pass),
            "--from",
            "2026-03-01T10:00:00Z",
            "--to",
            "2026-03-01T09:00:00Z",
        ],
        vec![],
    ] {
        let out = verify(&flags);
        assert_eq!(out.status.code(), Some(2), "{flags:?}: {}", stderr(&out));
    }
}

#[test]
fn empty_observations_fail_with_rate_zero() {
    let dir = tempfile::tempdir().expect("tempdir");
    let empty = dir.path().join("empty.ndjson");
    std::fs::write(&empty, "").expect("write");
    let out = verify(&["--observations", s(&empty), "--format", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let report = json(&out);
    assert_eq!(report["predicate"]["observationRate"]["rate"], 0.0);
    assert_eq!(report["predicate"]["window"]["from"], Value::Null);
}
