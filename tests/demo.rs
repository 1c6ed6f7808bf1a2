// SPDX-License-Identifier: Apache-2.0
//! `ci/demo`, the README's first command, end to end with the binary under test: a real app image pushed
//! to a real registry (Debian's docker-registry) by skopeo, its SBOM and signed function map pushed as a
//! referrer, the app chrooted in its own mount namespace and `linkguard sidecar` beside it, reports pushed
//! as referrers, pulled by oras-py and checked by securesystemslib and @sigstore/verify, the registry
//! stopped and restarted (the report in between is spooled, then arrives), and a final report on SIGTERM.
//! The script asserts each step itself; this test re-checks what it leaves in its work directory, from
//! the raw bytes. Needs root (uprobes, mount namespaces); see `privileged`.
#![expect(clippy::unwrap_used, reason = "tests: a failed step is a test failure")]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use base64::Engine as _;
use linkguard_integration_tests::{
    can_run, linkguard, linkguard_bin, missing_capability, workspace_root,
};
use serde_json::Value;
use sha2::Digest as _;

/// Root capabilities for uprobes (CAP_BPF, CAP_PERFMON) and for unshare -m + chroot (CAP_SYS_ADMIN,
/// CAP_SYS_CHROOT).
fn privileged(test: &str) -> bool {
    can_run(
        test,
        missing_capability(&[
            (18, "CAP_SYS_CHROOT"),
            (21, "CAP_SYS_ADMIN"),
            (38, "CAP_PERFMON"),
            (39, "CAP_BPF"),
        ]),
    )
}

fn json_file(path: &Path) -> Value {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The in-toto Statement inside a Sigstore bundle (the DSSE payload), decoded without linkguard.
fn statement(bundle: &[u8]) -> Value {
    let bundle: Value = serde_json::from_slice(bundle).unwrap();
    let payload = base64::engine::general_purpose::STANDARD
        .decode(bundle["dsseEnvelope"]["payload"].as_str().unwrap())
        .unwrap();
    serde_json::from_slice(&payload).unwrap()
}

/// A Prometheus sample without labels.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

fn list_len(path: &Path) -> usize {
    json_file(path).as_array().map_or(0, Vec::len)
}

#[test]
fn the_demo_runs_the_sidecar_against_a_real_registry_end_to_end() {
    if !privileged("the_demo_runs_the_sidecar_against_a_real_registry_end_to_end") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let out = Command::new("bash")
        .arg(workspace_root().join("ci/demo"))
        .arg(w)
        .env("LINKGUARD_BIN", linkguard_bin())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "ci/demo failed\n{stdout}\n{stderr}");
    for step in [
        "1. app image",
        "2. registry",
        "3. SBOM",
        "4. function map",
        "5. the app",
        "6. the report in the registry",
        "7. registry stopped",
        "8. registry back",
        "9. SIGTERM",
        "10. the final report",
        "done",
    ] {
        assert!(stdout.contains(step), "step {step:?} missing:\n{stdout}");
    }
    assert!(
        stdout.contains("securesystemslib verified the envelope"),
        "{stdout}"
    );
    assert!(
        stdout.contains("@sigstore/verify verified the bundle"),
        "{stdout}"
    );

    // The report oras-py pulled is about the image skopeo pushed, and rests on real uprobe counts of the
    // chrooted app: a TLS client handshake cannot happen without SSL_connect or SSL_do_handshake.
    let image_digest = stdout
        .split("demo-curl@sha256:")
        .nth(1)
        .and_then(|s| s.get(..64))
        .expect("the image digest in the demo's output");
    let report = statement(&std::fs::read(w.join("pulled/report.bundle.json")).unwrap());
    assert_eq!(report["subject"][0]["digest"]["sha256"], image_digest);
    let predicate = &report["predicate"];
    assert_eq!(
        predicate["pod"]["name"], "demo-curl-0",
        "{}",
        predicate["pod"]
    );
    let paths = predicate["paths"].as_array().unwrap();
    let with_status = |status: &'static str| paths.iter().filter(move |p| p["status"] == status);
    let observed: Vec<&str> = with_status("observed")
        .filter_map(|p| p["id"].as_str())
        .collect();
    assert_eq!(
        observed.len() as u64,
        predicate["observationRate"]["observed"].as_u64().unwrap()
    );
    assert!(
        observed
            .iter()
            .any(|id| id.starts_with("curl:SSL_connect@")
                || id.starts_with("curl:SSL_do_handshake@")),
        "no TLS handshake path observed: {observed:?}"
    );
    assert!(
        with_status("unobserved").count() > 0,
        "a few seconds of HTTPS cannot exercise every linked crypto function"
    );

    // With the registry down the sidecar spooled a report; after its return the spool drained and the
    // registry gained reports; SIGTERM added the final one.
    let down = std::fs::read_to_string(w.join("metrics-registry-down.txt")).unwrap();
    assert!(
        metric(&down, "linkguard_reports_spooled").is_some_and(|v| v >= 1.0),
        "{down}"
    );
    assert!(
        metric(
            &down,
            "linkguard_registry_errors_total{operation=\"push_report\"}"
        )
        .is_some_and(|v| v >= 1.0),
        "{down}"
    );
    let (first, after_restart, last) = (
        list_len(&w.join("reports-1.json")),
        list_len(&w.join("reports-2.json")),
        list_len(&w.join("reports-final.json")),
    );
    assert!(
        first >= 2 && after_restart > first && last > after_restart,
        "{first} {after_restart} {last}"
    );

    // Every report oras-py pulled at the end: signed by the sidecar's key, and one chain without a gap -
    // sequence 1..n, each `previous` the SHA-256 of the previous bundle's bytes.
    let mut chain = BTreeMap::new();
    for entry in std::fs::read_dir(w.join("reports")).unwrap() {
        let path = entry.unwrap().path();
        if !path.to_string_lossy().ends_with(".bundle.json") {
            continue;
        }
        let verified = linkguard(&[
            "attest",
            "verify",
            "--input",
            path.to_str().unwrap(),
            "--key",
            w.join("sidecar.pub").to_str().unwrap(),
        ]);
        assert!(
            verified.status.success(),
            "{}: {verified:?}",
            path.display()
        );
        let bytes = std::fs::read(&path).unwrap();
        let predicate = statement(&bytes)["predicate"].clone();
        let sequence = predicate["sequence"].as_u64().expect("a sequence number");
        let digest = format!("{:x}", sha2::Sha256::digest(&bytes));
        assert!(
            chain.insert(sequence, (digest, predicate)).is_none(),
            "sequence {sequence} twice"
        );
    }
    assert_eq!(chain.len(), last, "oras-py pulled every listed report");
    let sequences: Vec<u64> = chain.keys().copied().collect();
    assert_eq!(sequences, (1..=last as u64).collect::<Vec<_>>());
    for (seq, (_, predicate)) in chain.iter().skip(1) {
        let (previous_digest, _) = &chain[&(seq - 1)];
        assert_eq!(
            predicate["previous"]["sha256"],
            previous_digest.as_str(),
            "report {seq} must name report {} as previous",
            seq - 1
        );
    }
}
