// SPDX-License-Identifier: Apache-2.0
//! One test per rule of docs/contracts/verification.md, on small maps built in code.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

mod files;
mod status;
mod verdict;

use super::*;
use crate::function_map::FunctionMap;
use crate::observation::{ProbeStatus, Record, RecordBody};

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
