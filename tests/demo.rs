// SPDX-License-Identifier: Apache-2.0
//! `ci/demo`, the README's first command, end to end with the binary under test: a real app image, its
//! SBOM and function map, the app chrooted in its own mount namespace making HTTPS requests while
//! `linkguard observe` counts its functions with uprobes, verification, signing, and two independent
//! verifiers. Needs root (uprobes); see `privileged`.

use std::process::Command;

use linkguard_integration_tests::{can_run, linkguard_bin, missing_capability, workspace_root};
use serde_json::Value;

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

#[test]
fn the_demo_observes_verifies_and_signs_a_real_app() {
    if !privileged("the_demo_observes_verifies_and_signs_a_real_app") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let out = Command::new("bash")
        .arg(workspace_root().join("ci/demo"))
        .arg(work.path())
        .env("LINKGUARD_BIN", linkguard_bin())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "ci/demo failed\n{stdout}\n{stderr}");
    for step in [
        "1. app image",
        "2. SBOM",
        "3. function map",
        "4. observe",
        "5. sign",
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

    // The report is about the image and rests on real uprobe counts of the chrooted app.
    let report: Value =
        serde_json::from_slice(&std::fs::read(work.path().join("report.json")).unwrap()).unwrap();
    let digest = report["subject"][0]["digest"]["sha256"].as_str().unwrap();
    assert!(
        stdout.contains(&format!("demo-curl@sha256:{digest}")),
        "{stdout}"
    );
    let rate = &report["predicate"]["observationRate"];
    let observed = rate["observed"].as_u64().unwrap();
    assert!(observed > 0, "no path observed: {rate}");
    let observed_paths: Vec<&Value> = report["predicate"]["paths"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["status"] == "observed")
        .collect();
    assert_eq!(observed_paths.len() as u64, observed);
    // A TLS client handshake cannot happen without libssl's SSL_connect or SSL_do_handshake.
    assert!(
        observed_paths.iter().any(|p| {
            let id = p["id"].as_str().unwrap_or_default();
            id.starts_with("curl:SSL_connect@") || id.starts_with("curl:SSL_do_handshake@")
        }),
        "no TLS handshake path observed"
    );
    let records = std::fs::read_to_string(work.path().join("observations.ndjson")).unwrap();
    assert!(
        records
            .lines()
            .filter(|l| l.contains("\"kind\":\"call\""))
            .all(|l| l.contains("\"exe\":\"/usr/bin/curl\"")),
        "call records must name the entrypoint as the app sees it"
    );
}
