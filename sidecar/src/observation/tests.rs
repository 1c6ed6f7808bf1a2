// SPDX-License-Identifier: Apache-2.0
//! Reading and writing observation files: formats, errors with locations, equivalence of the parsers.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use super::*;

const CALL: &str = r#"{"v":1,"start":"2026-01-01T00:00:00Z","end":"2026-01-01T00:00:10Z","pid":7,"exe":"/usr/bin/curl","kind":"call","binary":"/usr/lib/libssl.so.3","buildId":"ab12","symbol":"SSL_connect","count":3}"#;
const PROBE: &str = r#"{"v":1,"start":"2026-01-01T00:00:00Z","end":"2026-01-01T00:00:10Z","kind":"probe","binary":"/usr/lib/libssl.so.3","symbol":"SSL_read","status":"attach-failed","detail":"EPERM"}"#;
const DROP: &str = r#"{"v":1,"start":"2026-01-01T00:00:00Z","end":"2026-01-01T00:00:10Z","kind":"drop","dropped":4}"#;

fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write fixture");
    path
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).expect("compress");
    enc.finish().expect("finish")
}

fn read_all(files: &[PathBuf]) -> Result<Vec<Record>, ReadError> {
    ObservationReader::new(files.iter().cloned())
        .records()
        .collect()
}

fn first_error(files: &[PathBuf]) -> ReadError {
    read_all(files).expect_err("an error")
}

#[test]
fn plain_and_gzip_read_the_same_records_in_file_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = format!("{CALL}\n\n   \n{PROBE}\n{DROP}");
    // The gzip file is named .ndjson and the plain one .gz: detection is by content.
    let gz = write_file(dir.path(), "a.ndjson", &gzip(text.as_bytes()));
    let plain = write_file(dir.path(), "b.gz", text.as_bytes());
    let records = read_all(&[gz.clone(), plain.clone()]).expect("read");
    assert_eq!(
        records.len(),
        6,
        "blank lines are skipped, last line needs no newline"
    );
    assert_eq!(records[..3], records[3..]);
    assert!(matches!(records[0].body, RecordBody::Call { count: 3, .. }));
    assert!(matches!(records[2].body, RecordBody::Drop { dropped: 4 }));
    let mut reader = ObservationReader::new([gz, plain]);
    let mut lines = Vec::new();
    while let Some(view) = reader.next_view() {
        view.expect("view");
        let (path, line) = reader.location().expect("location");
        lines.push((
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            line,
        ));
    }
    let expected = [
        ("a.ndjson", 1),
        ("a.ndjson", 4),
        ("a.ndjson", 5),
        ("b.gz", 1),
        ("b.gz", 4),
        ("b.gz", 5),
    ];
    assert_eq!(lines, expected.map(|(f, l)| (f.to_owned(), l)).to_vec());
}

#[test]
fn concatenated_gzip_members_read_as_one_stream() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("obs.ndjson.gz");
    let record: Record = serde_json::from_str(CALL).expect("record");
    for _ in 0..2 {
        let mut w = RecordWriter::append(&path, Compression::Gzip).expect("writer");
        w.write(&record).expect("write");
        w.write(&record).expect("write");
        assert_eq!(w.written(), 2);
        w.finish().expect("finish");
    }
    assert_eq!(read_all(&[path]).expect("read"), vec![record; 4]);
}

#[test]
fn truncated_gzip_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let full = gzip(format!("{CALL}\n{CALL}\n").as_bytes());
    for cut in [full.len() - 4, full.len() / 2] {
        let path = write_file(dir.path(), "cut.gz", &full[..cut]);
        let err = first_error(&[path]);
        assert!(matches!(err, ReadError::Gzip { .. }), "{err}");
        assert!(err.to_string().contains("cut.gz:"), "{err}");
        assert!(err.to_string().contains("truncated or corrupt"), "{err}");
    }
    // An unfinished writer (no gzip trailer yet) reads as truncated too.
    let path = dir.path().join("open.gz");
    let mut w = RecordWriter::append(&path, Compression::Gzip).expect("writer");
    w.write(&serde_json::from_str(CALL).expect("record"))
        .expect("write");
    w.flush().expect("flush");
    assert!(matches!(
        first_error(std::slice::from_ref(&path)),
        ReadError::Gzip { .. }
    ));
    w.finish().expect("finish");
    assert_eq!(read_all(&[path]).expect("read").len(), 1);
}

#[test]
fn bad_lines_name_file_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let unknown = CALL.replace("\"count\"", "\"cnt\"");
    let path = write_file(
        dir.path(),
        "observations.ndjson",
        format!("{CALL}\n{PROBE}\n\n{unknown}\n").as_bytes(),
    );
    let err = first_error(&[path]);
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "{}:4:",
            dir.path().join("observations.ndjson").display()
        )),
        "{text}"
    );
    assert!(text.contains("unknown field `cnt`"), "{text}");
    assert!(
        !text.contains("at line 1"),
        "serde's own position is replaced: {text}"
    );

    let cases: [(String, &str); 9] = [
        (
            CALL.replace("\"v\":1", "\"v\":2"),
            "record version 2 is not supported (this build reads version 1)",
        ),
        // A newer format with new fields: still named as a version problem.
        (
            CALL.replace("\"v\":1", "\"v\":2,\"newField\":true"),
            "record version 2 is not supported",
        ),
        (
            CALL.replace("2026-01-01T00:00:10Z", "yesterday"),
            "end \"yesterday\" is not an RFC 3339 timestamp",
        ),
        (
            CALL.replace("00:00:10Z", "00:00:00Z").replace(
                "\"start\":\"2026-01-01T00:00:00Z\"",
                "\"start\":\"2026-01-01T00:00:05Z\"",
            ),
            "end 2026-01-01T00:00:00Z is before start",
        ),
        (
            CALL.replace(",\"count\":3", ""),
            "a \"call\" record needs the field \"count\"",
        ),
        (
            PROBE.replace("\"detail\"", "\"count\":1,\"detail\""),
            "the field \"count\" does not belong in a \"probe\" record",
        ),
        (
            CALL.replace("ab12", "AB12"),
            "buildId \"AB12\" is not lowercase hex",
        ),
        (
            CALL.replace("/usr/lib/libssl.so.3", "libssl.so.3"),
            "binary \"libssl.so.3\" is not an absolute path",
        ),
        ("{\"v\":1,".to_owned(), "EOF while parsing"),
    ];
    for (line, expected) in cases {
        let path = write_file(
            dir.path(),
            "bad.ndjson",
            format!("{CALL}\n{line}\n").as_bytes(),
        );
        let text = first_error(&[path]).to_string();
        assert!(text.contains("bad.ndjson:2:"), "{text}");
        assert!(text.contains(expected), "{text}\n  expected: {expected}");
    }
}

#[test]
fn overlong_lines_and_missing_files_are_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let long = format!("{CALL}\n{}\n{CALL}\n", "x".repeat(MAX_LINE_BYTES + 1));
    let path = write_file(dir.path(), "long.ndjson", long.as_bytes());
    let mut reader = ObservationReader::new([path]);
    assert!(reader.next_record().expect("first").is_ok());
    let err = reader.next_record().expect("second").expect_err("too long");
    assert!(
        matches!(err, ReadError::LineTooLong { line: 2, .. }),
        "{err}"
    );
    // The reader resumes at the next line.
    assert!(reader.next_record().expect("third").is_ok());
    assert!(reader.next_record().is_none());
    // Exactly at the limit is fine (it fails as JSON, not as too long).
    let at_limit = write_file(
        dir.path(),
        "limit.ndjson",
        format!("{}\n", "x".repeat(MAX_LINE_BYTES)).as_bytes(),
    );
    assert!(matches!(
        first_error(&[at_limit]),
        ReadError::Json { line: 1, .. }
    ));

    let err = first_error(&[dir.path().join("missing.ndjson")]);
    assert!(matches!(err, ReadError::Open { .. }), "{err}");
    assert!(err.to_string().contains("missing.ndjson"), "{err}");
}

#[test]
fn record_and_view_accept_exactly_the_same_lines() {
    let lines = [
        CALL.to_owned(),
        PROBE.to_owned(),
        DROP.to_owned(),
        CALL.replace(
            "\"pid\":7",
            "\"pod\":\"ns/web-1\",\"container\":\"app\",\"pid\":7",
        ),
        CALL.replace("\"count\":3", "\"count\":3,\"lowerBound\":true"),
        CALL.replace("SSL_connect", "SSL_\\u0063onnect"),
        CALL.replace("\"count\":3", "\"cnt\":3"),
        CALL.replace("\"kind\":\"call\"", "\"kind\":\"calls\""),
        DROP.replace("\"dropped\":4", "\"dropped\":4,\"symbol\":\"x\""),
        CALL.replace("\"v\":1", "\"v\":3"),
        CALL.replace("/usr/bin/curl", "curl"),
        CALL.replace("SSL_connect", "SSL\\u0000connect"),
        CALL.replace("2026-01-01T00:00:10Z", "2026-01-01T01:00:10+01:00"),
    ];
    for line in lines {
        let owned = serde_json::from_str::<Record>(&line);
        let raw: Result<view::RawRecord<'_>, _> = serde_json::from_str(&line);
        let viewed = raw
            .map_err(|e| e.to_string())
            .and_then(|r| RecordView::try_from(r).map_err(|e| e.to_string()));
        assert_eq!(
            owned.is_ok(),
            viewed.is_ok(),
            "{line}: {owned:?} vs {viewed:?}"
        );
        if let (Ok(record), Ok(view)) = (owned, viewed) {
            assert_eq!(
                RecordView::from_record(&record).as_ref(),
                Ok(&view),
                "{line}"
            );
            // Serializing gives back an equivalent line.
            let again: Record =
                serde_json::from_str(&serde_json::to_string(&record).expect("json"))
                    .expect("reparse");
            assert_eq!(again, record, "{line}");
        }
    }
}

#[test]
fn escaped_strings_are_read_correctly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_file(
        dir.path(),
        "esc.ndjson",
        CALL.replace("SSL_connect", "SSL_\\u0063onnect").as_bytes(),
    );
    let records = read_all(&[path]).expect("read");
    assert!(matches!(&records[0].body, RecordBody::Call { symbol, .. } if symbol == "SSL_connect"));
}

#[test]
fn writer_output_is_what_the_reader_reads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("w.ndjson");
    let records: Vec<Record> = [CALL, PROBE, DROP]
        .iter()
        .map(|l| serde_json::from_str(l).expect("record"))
        .collect();
    let mut w = RecordWriter::append(&path, Compression::None).expect("writer");
    for r in &records {
        w.write(r).expect("write");
    }
    w.finish().expect("finish");
    let text = std::fs::read_to_string(&path).expect("read");
    assert_eq!(text.lines().count(), 3);
    assert!(text.ends_with('\n'));
    assert_eq!(
        text.lines().next(),
        Some(CALL),
        "field order and spelling of the contract"
    );
    assert_eq!(read_all(&[path]).expect("read"), records);
}

#[test]
fn latest_end_takes_the_shortcut_only_where_it_is_exact() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lines = [
        // Spacing defeats the shortcut: parsed in full.
        DROP.replace(
            "\"end\":\"2026-01-01T00:00:10Z\"",
            "\"end\" : \"2026-01-01T03:00:00Z\"",
        ),
        // An escaped key: parsed in full.
        DROP.replace(
            "\"end\":\"2026-01-01T00:00:10Z\"",
            "\"\\u0065nd\":\"2026-01-01T02:00:00Z\"",
        ),
        // `"end":"` inside a string value is escaped, so it cannot be mistaken for the key.
        CALL.replace("SSL_connect", "weird\\\"end\\\":\\\"2099-01-01T00:00:00Z"),
        PROBE.to_owned(),
    ];
    let path = write_file(dir.path(), "ends.ndjson", lines.join("\n").as_bytes());
    let latest = ObservationReader::new([path.clone()])
        .latest_end()
        .expect("latest end");
    let expected = chrono::DateTime::parse_from_rfc3339("2026-01-01T03:00:00Z").expect("time");
    assert_eq!(latest, Some(expected.with_timezone(&chrono::Utc)));
    // It agrees with the full reader.
    let full = read_all(&[path]).expect("valid records");
    let full_latest = full
        .iter()
        .map(|r| RecordView::from_record(r).expect("view").end)
        .max();
    assert_eq!(full_latest, latest);
    // A bad timestamp is an error with its location, not a skipped line.
    let bad = write_file(
        dir.path(),
        "bad-end.ndjson",
        format!("{CALL}\n{}\n", DROP.replace("00:00:10Z", "soon")).as_bytes(),
    );
    let err = ObservationReader::new([bad])
        .latest_end()
        .expect_err("bad end");
    assert!(
        err.to_string()
            .contains("bad-end.ndjson:2: end \"2026-01-01Tsoon\""),
        "{err}"
    );
}

#[test]
fn chunks_hold_whole_lines_with_their_numbers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = format!("{CALL}\n\n{PROBE}\n  \n{DROP}\n{CALL}");
    let plain = write_file(dir.path(), "a.ndjson", text.as_bytes());
    let gz = write_file(dir.path(), "b.ndjson", &gzip(text.as_bytes()));
    let expected: Vec<(usize, u64, &str)> = [(1, CALL), (3, PROBE), (5, DROP), (6, CALL)]
        .into_iter()
        .flat_map(|(n, l)| [(0, n, l), (1, n, l)])
        .collect();
    for chunk_bytes in [1, 2, 50, 300, CHUNK_BYTES] {
        let mut reader = ChunkReader::new(&[plain.clone(), gz.clone()], 7, chunk_bytes);
        let mut seen = Vec::new();
        let mut seqs = Vec::new();
        while let Some(chunk) = reader.next_chunk() {
            let chunk = chunk.expect("chunk");
            seqs.push(chunk.seq);
            for line in chunk.lines() {
                seen.push((
                    chunk.file,
                    line.number,
                    std::str::from_utf8(line.text).expect("utf-8").to_owned(),
                ));
            }
        }
        let mut want: Vec<(usize, u64, String)> = expected
            .iter()
            .map(|(f, n, l)| (*f, *n, (*l).to_owned()))
            .collect();
        want.sort();
        seen.sort();
        assert_eq!(seen, want, "chunks of {chunk_bytes} bytes");
        assert_eq!(seqs.first(), Some(&7));
        assert!(
            seqs.windows(2).all(|w| w[1] == w[0] + 1),
            "numbered in reading order"
        );
        assert_eq!(reader.next_seq(), 7 + seqs.len() as u64);
    }
}
