// SPDX-License-Identifier: Apache-2.0
//! Verifying files on several threads gives what adding the records one by one gives: the same counts,
//! the same "first" details, and the same (first) error.

use std::path::PathBuf;

use super::*;
use crate::observation::{Compression, ObservationReader, RecordWriter};

/// ~3,000 records of every kind, with details that differ by position, written to a plain and a gzip
/// file (with blank lines, which count for line numbers).
fn mixed_input(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut records = Vec::new();
    for i in 0..3000u64 {
        let minute = 1 + (i % 40); // some records fall outside the 30-minute window
        let start = format!("2026-01-01T00:{minute:02}:00Z");
        let end = format!("2026-01-01T00:{minute:02}:05Z");
        let record = match i % 9 {
            0 => call(LIBSSL, SSL_ID, "SSL_connect", i % 3),
            1 => with_exe(
                call(LIBSSL, SSL_ID, "SSL_read", 1),
                if i % 2 == 0 { CURL } else { WGET },
            ),
            2 => call(LIBC, LIBC_ID, &format!("unexpected_{}", i % 17), 2),
            3 => {
                let mut r = probe(
                    LIBC,
                    Some(LIBC_ID),
                    Some("connect"),
                    ProbeStatus::Unresolvable,
                );
                if let RecordBody::Probe { detail, .. } = &mut r.body {
                    *detail = Some(format!("detail of record {i}"));
                }
                r
            }
            4 => probe(LIBSSL, None, Some("SSL_write"), ProbeStatus::AttachFailed),
            5 => record(RecordBody::Drop { dropped: i }),
            6 if i > 2000 => call(LIBC, &format!("{:04x}", i), "send", 1), // late mismatches, first one wins
            7 => call(LIBSSL, "", "SSL_connect", 1),
            _ => call(LIBC, LIBC_ID, "send", 1),
        };
        records.push(with_interval(record, &start, &end));
    }
    let (plain, gz) = (dir.join("a.ndjson"), dir.join("b.ndjson"));
    let mut w = RecordWriter::append(&plain, Compression::None).expect("writer");
    for r in &records[..1500] {
        w.write(r).expect("write");
    }
    w.finish().expect("finish");
    let mut w = RecordWriter::append(&gz, Compression::Gzip).expect("writer");
    for r in &records[1500..] {
        w.write(r).expect("write");
    }
    w.finish().expect("finish");
    // Blank lines in the middle of the plain file.
    let text = std::fs::read_to_string(&plain).expect("read");
    let mut lines: Vec<&str> = text.lines().collect();
    lines.insert(700, "");
    lines.insert(10, "   ");
    std::fs::write(&plain, lines.join("\n") + "\n").expect("write");
    vec![plain, gz]
}

fn mixed_map() -> FunctionMap {
    map(
        &[
            P(
                "c",
                CURL,
                &[(LIBSSL, SSL_ID, "SSL_connect")],
                &["tls"],
                false,
            ),
            P("r", CURL, &[(LIBSSL, SSL_ID, "SSL_read")], &["tls"], false),
            P("w", CURL, &[(LIBSSL, SSL_ID, "SSL_write")], &["tls"], false),
            P(
                "n",
                CURL,
                &[(LIBC, LIBC_ID, "connect"), (LIBC, LIBC_ID, "send")],
                &["net"],
                true,
            ),
        ],
        json!({ "failOnUnexpected": true }),
    )
}

fn one_by_one(map: &FunctionMap, files: &[PathBuf]) -> VerificationResult {
    let mut v = Verifier::new(map, window());
    for record in ObservationReader::new(files.iter().cloned()).records() {
        v.add(&record.expect("valid")).expect("add");
    }
    v.finish()
}

#[test]
fn files_on_all_cores_equal_records_one_by_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let files = mixed_input(dir.path());
    let m = mixed_map();
    let expected = one_by_one(&m, &files);
    // The input exercises what merging must get right.
    assert!(expected.observations.ignored > 0 && expected.observations.unidentified > 0);
    assert_eq!(status_of(&expected, "n"), PathStatus::BinaryMismatch);
    let detail = expected.paths[3].calls[0]
        .detail
        .as_deref()
        .unwrap_or_default();
    assert!(
        detail.contains("shows build-id 07d4"),
        "the first mismatch (record 2004): {detail}"
    );
    assert_eq!(
        expected.probe_failures[0].detail.as_deref(),
        Some("detail of record 3")
    );
    for chunk_bytes in [1, 97, 4096, CHUNK_BYTES] {
        let mut v = Verifier::new(&m, window());
        v.add_files_in_chunks(&files, chunk_bytes).expect("verify");
        assert_eq!(v.finish(), expected, "chunks of {chunk_bytes} bytes");
    }
    let mut result = verify_files(&m, &files, window()).expect("verify");
    assert_eq!(result.observations.files.len(), 2);
    result.observations.files.clear();
    assert_eq!(result, expected);
}

#[test]
fn records_added_before_and_after_files_keep_reading_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let files = mixed_input(dir.path());
    let m = mixed_map();
    let mut early = probe(
        LIBC,
        Some(LIBC_ID),
        Some("connect"),
        ProbeStatus::Unresolvable,
    );
    if let RecordBody::Probe { detail, .. } = &mut early.body {
        *detail = Some("added before the files".into());
    }
    let mut v = Verifier::new(&m, window());
    v.add(&early).expect("add");
    v.add_files_in_chunks(&files, 512).expect("verify");
    v.add(&call(LIBC, "ffff", "connect", 1)).expect("add");
    let r = v.finish();
    assert_eq!(
        r.probe_failures[0].detail.as_deref(),
        Some("added before the files")
    );
    let detail = r.paths[3].calls[0].detail.as_deref().unwrap_or_default();
    assert!(
        detail.contains("07d4"),
        "a record added after the files is later: {detail}"
    );
}

#[test]
fn the_first_error_in_reading_order_is_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = serde_json::to_string(&call(LIBSSL, SSL_ID, "SSL_connect", 1)).expect("json");
    let mut lines = vec![good.clone(); 400];
    lines[150] = good.replace("\"count\"", "\"cnt\"");
    lines[300] = good.replace("\"v\":1", "\"v\":9");
    let first = dir.join_lines("first.ndjson", &lines);
    let second = dir.join_lines(
        "second.ndjson",
        &[good.replace("\"kind\":\"call\"", "\"kind\":\"?\"")],
    );
    let m = mixed_map();
    for chunk_bytes in [1, 333, CHUNK_BYTES] {
        let mut v = Verifier::new(&m, window());
        let err = v
            .add_files_in_chunks(&[first.clone(), second.clone()], chunk_bytes)
            .expect_err("bad");
        assert!(
            err.to_string().contains("first.ndjson:151:"),
            "{chunk_bytes}: {err}"
        );
        // Nothing was added.
        assert_eq!(v.finish().observations.records, 0);
        let mut v = Verifier::new(&m, window());
        let err = v
            .add_files_in_chunks(&[second.clone(), first.clone()], chunk_bytes)
            .expect_err("bad");
        assert!(
            err.to_string().contains("second.ndjson:1:"),
            "{chunk_bytes}: {err}"
        );
    }
}

#[test]
fn long_lines_truncated_gzip_and_missing_files_through_chunks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = serde_json::to_string(&call(LIBSSL, SSL_ID, "SSL_connect", 1)).expect("json");
    let long = "x".repeat(crate::observation::MAX_LINE_BYTES + 1);
    let file = dir.join_lines(
        "long.ndjson",
        &[good.clone(), String::new(), long, good.clone()],
    );
    let m = mixed_map();
    for chunk_bytes in [1, 100, CHUNK_BYTES] {
        let err = Verifier::new(&m, window())
            .add_files_in_chunks(std::slice::from_ref(&file), chunk_bytes)
            .expect_err("long");
        assert!(
            matches!(
                err,
                VerifyError::Read(ReadError::LineTooLong { line: 3, .. })
            ),
            "{chunk_bytes}: {err}"
        );
    }
    let gz = dir.path().join("cut.gz");
    let mut w = RecordWriter::append(&gz, Compression::Gzip).expect("writer");
    for _ in 0..200 {
        w.write(&call(LIBSSL, SSL_ID, "SSL_connect", 1))
            .expect("write");
    }
    w.finish().expect("finish");
    let bytes = std::fs::read(&gz).expect("read");
    std::fs::write(&gz, &bytes[..bytes.len() - 6]).expect("truncate");
    let err = Verifier::new(&m, window())
        .add_files(&[file.clone(), gz])
        .expect_err("gzip");
    // The long line comes first in reading order.
    assert!(
        matches!(err, VerifyError::Read(ReadError::LineTooLong { .. })),
        "{err}"
    );
    let gz_only = dir.path().join("cut.gz");
    let err = Verifier::new(&m, window())
        .add_files(&[gz_only])
        .expect_err("gzip");
    assert!(
        matches!(err, VerifyError::Read(ReadError::Gzip { .. })),
        "{err}"
    );
    let err = Verifier::new(&m, window())
        .add_files(&[dir.path().join("missing")])
        .expect_err("missing");
    assert!(
        matches!(err, VerifyError::Read(ReadError::Open { .. })),
        "{err}"
    );
}

trait JoinLines {
    fn join_lines(&self, name: &str, lines: &[String]) -> PathBuf;
}

impl JoinLines for tempfile::TempDir {
    fn join_lines(&self, name: &str, lines: &[String]) -> PathBuf {
        let path = self.path().join(name);
        std::fs::write(&path, lines.join("\n") + "\n").expect("write");
        path
    }
}
