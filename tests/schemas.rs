// SPDX-License-Identifier: Apache-2.0
//! The JSON Schemas of docs/contracts/ against what linkguard reads and writes: every fixture and every
//! example in the documents validates, every invalid example is rejected by the schema *and* by
//! linkguard, and the report `linkguard verify --format json` prints validates.
#![expect(
    clippy::expect_used,
    reason = "test helpers: a failed expectation is a test failure"
)]

use std::path::{Path, PathBuf};
use std::process::Command;

use jsonschema::{Draft, Validator};
use linkguard_integration_tests::{fixture, linkguard, linkguard_bin, workspace_root};
use serde_json::{Value, json};

fn contract(name: &str) -> PathBuf {
    workspace_root().join("docs/contracts").join(name)
}

fn schema(name: &str) -> Validator {
    let text = std::fs::read_to_string(contract(name)).expect("schema file");
    let schema: Value = serde_json::from_str(&text).expect("schema is JSON");
    jsonschema::options()
        .with_draft(Draft::Draft202012)
        .should_validate_formats(true)
        .build(&schema)
        .unwrap_or_else(|e| panic!("{name} is not a valid draft 2020-12 schema: {e}"))
}

fn problems(validator: &Validator, instance: &Value) -> Vec<String> {
    validator
        .iter_errors(instance)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

fn assert_valid(validator: &Validator, instance: &Value, what: &str) {
    let problems = problems(validator, instance);
    assert!(
        problems.is_empty(),
        "{what} does not match its schema:\n  {}",
        problems.join("\n  ")
    );
}

fn json_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no fixtures in {}", dir.display());
    files
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).expect("read"))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .expect("read")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

/// Fenced code blocks of a contract document with the given info string.
fn examples(doc: &str, lang: &str) -> Vec<String> {
    let text = std::fs::read_to_string(contract(doc)).expect("contract document");
    let fence = format!("```{lang}\n");
    let mut blocks = Vec::new();
    let mut rest = text.as_str();
    while let Some(start) = rest.find(&fence) {
        let body = &rest[start + fence.len()..];
        let end = body.find("```").expect("closed fence");
        blocks.push(body[..end].to_owned());
        rest = &body[end..];
    }
    assert!(!blocks.is_empty(), "{doc} has no ```{lang} example");
    blocks
}

#[test]
fn fixture_maps_and_documented_examples_match_the_function_map_schema() {
    let validator = schema("function-map.schema.json");
    for path in json_files(&fixture("maps")) {
        assert_valid(&validator, &read_json(&path), &path.display().to_string());
    }
    for example in examples("function-map.md", "json") {
        let doc: Value = serde_json::from_str(&example).expect("example is JSON");
        assert_valid(&validator, &doc, "the example in function-map.md");
    }
}

#[test]
fn invalid_maps_are_rejected_by_the_schema_and_by_linkguard() {
    let validator = schema("function-map.schema.json");
    let observations = fixture("observations/curl-pass.ndjson");
    for path in json_files(&fixture("maps/invalid")) {
        let map = read_json(&path);
        assert!(
            !validator.is_valid(&map),
            "the schema accepts {}",
            path.display()
        );
        let out = linkguard(&[
            "verify",
            "--function-map",
            path.to_str().expect("utf-8"),
            "--observations",
            observations.to_str().expect("utf-8"),
        ]);
        assert_eq!(
            out.status.code(),
            Some(2),
            "linkguard accepts {}",
            path.display()
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&*path.display().to_string()),
            "the error names the map: {stderr}"
        );
    }
}

#[test]
fn fixture_records_and_documented_examples_match_the_observation_schema() {
    let validator = schema("observation.schema.json");
    for name in ["curl-pass.ndjson", "curl-fail.ndjson"] {
        for line in lines(&fixture(&format!("observations/{name}"))) {
            assert_valid(
                &validator,
                &serde_json::from_str(&line).expect("JSON line"),
                &format!("{name}: {line}"),
            );
        }
    }
    for example in examples("observations.md", "ndjson") {
        for line in example.lines().filter(|l| !l.trim().is_empty()) {
            assert_valid(
                &validator,
                &serde_json::from_str(line).expect("JSON line"),
                &format!("observations.md: {line}"),
            );
        }
    }
}

#[test]
fn invalid_records_are_rejected_by_the_schema_and_by_linkguard() {
    let validator = schema("observation.schema.json");
    let dir = tempfile::tempdir().expect("tempdir");
    let map = fixture("maps/curl-tls.json");
    let invalid = lines(&fixture("observations/invalid-records.ndjson"));
    assert!(invalid.len() >= 10);
    for (i, line) in invalid.iter().enumerate() {
        let value: Value = serde_json::from_str(line).expect("still JSON");
        assert!(
            !validator.is_valid(&value),
            "the schema accepts invalid record {}: {line}",
            i + 1
        );
        let file = dir.path().join(format!("invalid-{i}.ndjson"));
        std::fs::write(&file, format!("{line}\n")).expect("write");
        let out = linkguard(&[
            "verify",
            "--function-map",
            map.to_str().expect("utf-8"),
            "--observations",
            file.to_str().expect("utf-8"),
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(2),
            "linkguard accepts invalid record {}: {line}\n{stderr}",
            i + 1
        );
        assert!(
            stderr.contains(&format!("invalid-{i}.ndjson:1")),
            "{stderr}"
        );
    }
}

/// Runs `linkguard verify --format json` on a fixture pair; returns the parsed report.
fn report(map: &str, observations: &str) -> Value {
    let out = linkguard(&[
        "verify",
        "--function-map",
        fixture(map).to_str().expect("utf-8"),
        "--observations",
        fixture(observations).to_str().expect("utf-8"),
        "--format",
        "json",
    ]);
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stdout is JSON")
}

#[test]
fn verify_json_output_matches_the_report_schema() {
    let validator = schema("report.schema.json");
    for observations in [
        "observations/curl-pass.ndjson",
        "observations/curl-fail.ndjson",
    ] {
        let report = report("maps/curl-tls.json", observations);
        assert_valid(&validator, &report, observations);
    }
    for example in examples("report.md", "json") {
        let doc: Value = serde_json::from_str(&example).expect("example is JSON");
        assert_valid(&validator, &doc, "the example in report.md");
    }
}

#[test]
fn the_report_schema_rejects_broken_reports() {
    let validator = schema("report.schema.json");
    let good = report("maps/curl-tls.json", "observations/curl-fail.ndjson");
    assert_valid(&validator, &good, "the fail report");
    type Edit = fn(&mut Value);
    let edits: [(&str, Edit); 9] = [
        ("unknown verdict", |r| {
            r["predicate"]["verdict"] = json!("maybe")
        }),
        ("fail without a reason", |r| {
            r["predicate"]["reasons"] = json!([])
        }),
        ("pass with a reason", |r| {
            r["predicate"]["verdict"] = json!("pass")
        }),
        ("another predicate type", |r| {
            r["predicateType"] = json!("https://example.com/other")
        }),
        ("unknown path status", |r| {
            r["predicate"]["paths"][0]["status"] = json!("seen")
        }),
        ("missing paths", |r| {
            r["predicate"].as_object_mut().map(|p| p.remove("paths"));
        }),
        ("extra field", |r| r["predicate"]["score"] = json!(1)),
        ("rate above 1", |r| {
            r["predicate"]["observationRate"]["rate"] = json!(1.5)
        }),
        ("local time", |r| {
            r["predicate"]["generatedAt"] = json!("2026-01-01T10:00:00+02:00")
        }),
    ];
    for (what, edit) in edits {
        let mut bad = good.clone();
        edit(&mut bad);
        assert!(
            !validator.is_valid(&bad),
            "the schema accepts a report with {what}"
        );
    }
}

/// Maps made by `linkguard map generate` (when that command and an SBOM fixture exist) match the schema.
#[test]
fn generated_maps_match_the_function_map_schema() {
    let validator = schema("function-map.schema.json");
    let help = Command::new(linkguard_bin())
        .args(["map", "generate", "--help"])
        .output()
        .expect("spawn");
    if !help.status.success() {
        println!(
            "SKIP generated_maps_match_the_function_map_schema: this build has no `map generate`"
        );
        return;
    }
    // CycloneDX SBOMs of curl (by content: the directory also holds SPDX documents).
    let mut sboms: Vec<PathBuf> = std::fs::read_dir(fixture("sbom"))
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    sboms.retain(|p| {
        p.file_name()
            .is_some_and(|n| n.to_string_lossy().contains("curl"))
            && std::fs::read(p)
                .ok()
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                .is_some_and(|v| v["bomFormat"] == "CycloneDX")
    });
    sboms.sort();
    let Some(sbom) = sboms.first() else {
        println!(
            "SKIP generated_maps_match_the_function_map_schema: no CycloneDX SBOM of curl under tests/fixtures/sbom/"
        );
        return;
    };
    if !Path::new("/usr/bin/curl").exists() {
        println!(
            "SKIP generated_maps_match_the_function_map_schema: /usr/bin/curl is not installed"
        );
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let output = dir.path().join("curl.map.json");
    let out = linkguard(&[
        "map",
        "generate",
        "--sbom",
        sbom.to_str().expect("utf-8"),
        "--rootfs",
        "/",
        "--service",
        "curl",
        "--entrypoint",
        "/usr/bin/curl",
        "--hot-functions",
        "crypto/*",
        "--hot-functions",
        "net/*",
        "--output",
        output.to_str().expect("utf-8"),
    ]);
    assert!(
        out.status.success(),
        "map generate failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_valid(
        &validator,
        &read_json(&output),
        "the map generated for /usr/bin/curl",
    );
}
