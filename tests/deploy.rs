// SPDX-License-Identifier: Apache-2.0
//! The deployment files (Dockerfile, examples/compose, examples/k8s) validated statically with the real
//! schemas and parsers (ci/validate-deploy: kubernetes-validate, kustomize in the kubectl wheel, the
//! prometheus-operator API types, Prometheus' PromQL parser, the Compose specification, BuildKit's
//! Dockerfile parser, hadolint), and the configs they embed checked by `linkguard sidecar --check`.
//! Every check is also shown to fail on a broken copy of the examples.
#![expect(clippy::unwrap_used, reason = "tests: a failed step is a test failure")]

mod validate_deploy;

use std::path::{Path, PathBuf};

use linkguard_integration_tests::{linkguard, workspace_root};
use serde_yaml_ng::Value;
use validate_deploy::{assert_caught, assert_valid, copy_of_examples, edit, validator};

fn root(path: &str) -> PathBuf {
    workspace_root().join(path)
}

/// Every YAML file under `dir`, recursively, sorted.
fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The manifests of examples/k8s that are whole objects: not kustomization files, not the patches
/// they list (partial objects, validated through the kustomize build), not the sidecar config.
fn k8s_manifests(k8s: &Path) -> Vec<PathBuf> {
    let files = yaml_files(k8s);
    let mut partial = Vec::new();
    for file in files.iter().filter(|f| f.ends_with("kustomization.yaml")) {
        let k: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
        for patch in k["patches"].as_sequence().into_iter().flatten() {
            partial.push(file.parent().unwrap().join(patch["path"].as_str().unwrap()));
        }
        for generator in k["configMapGenerator"].as_sequence().into_iter().flatten() {
            for f in generator["files"].as_sequence().into_iter().flatten() {
                partial.push(file.parent().unwrap().join(f.as_str().unwrap()));
            }
        }
    }
    files
        .into_iter()
        .filter(|f| !f.ends_with("kustomization.yaml") && !partial.contains(f))
        .collect()
}

#[test]
fn dockerfile_parses_and_follows_the_image_policy() {
    let Some(v) = validator("dockerfile_parses_and_follows_the_image_policy") else {
        return;
    };
    let toolchain = root("rust-toolchain.toml");
    let Some(out) = v.run(
        "dockerfile",
        &[
            "dockerfile".as_ref(),
            root("Dockerfile").as_os_str(),
            "--min-stages".as_ref(),
            "2".as_ref(),
            "--rust-toolchain".as_ref(),
            toolchain.as_os_str(),
        ],
    ) else {
        return;
    };
    assert_valid("Dockerfile", &out);
    let app = root("examples/compose/app/Dockerfile");
    let Some(out) = v.run(
        "dockerfile",
        &[
            "dockerfile".as_ref(),
            app.as_os_str(),
            "--run-stage".as_ref(),
            "app".as_ref(),
        ],
    ) else {
        return;
    };
    assert_valid("examples/compose/app/Dockerfile", &out);

    // What the image promises, read from the Dockerfile itself.
    let text = std::fs::read_to_string(root("Dockerfile")).unwrap();
    for needed in [
        "USER 65532:65532",
        "ENTRYPOINT [\"linkguard\"]",
        "CMD [\"sidecar\", \"--config\", \"/etc/linkguard/linkguard.yaml\"]",
        "cap_bpf,cap_perfmon,cap_sys_ptrace=p",
        "cargo build --release --locked -p linkguard",
        "org.opencontainers.image.source",
        "org.opencontainers.image.licenses=\"Apache-2.0\"",
    ] {
        assert!(text.contains(needed), "Dockerfile lacks {needed:?}");
    }
}

#[test]
fn dockerfile_policy_violations_are_caught() {
    let Some(v) = validator("dockerfile_policy_violations_are_caught") else {
        return;
    };
    let cases: [(&str, &str, &str); 8] = [
        (
            "RUSTUP_TOOLCHAIN=1.98.0",
            "RUSTUP_TOOLCHAIN=1.97.0",
            "RUSTUP_TOOLCHAIN=1.97.0, but",
        ),
        ("USER 65532:65532\n", "", "no USER"),
        ("USER 65532:65532\n", "USER root\n", "is root"),
        (
            "FROM rust:1.98.0-bookworm AS builder",
            "FROM rust:latest AS builder",
            "is not pinned",
        ),
        (
            "FROM rust:1.98.0-bookworm AS builder",
            "FROM rust:1.97.0-bookworm AS builder",
            "rust-toolchain.toml",
        ),
        (
            "COPY --from=builder /out/root/ /",
            "COPY --from=docker.io/library/busybox:1.36 /bin/busybox /bin/\nCOPY --from=builder /out/root/ /",
            "not an earlier stage",
        ),
        (
            "COPY --from=builder /out/root/ /",
            "ADD https://example.com/tool.tar.gz /opt/\nCOPY --from=builder /out/root/ /",
            "ADD of a URL",
        ),
        (
            "ENTRYPOINT [\"linkguard\"]",
            "ENTRYPOINT linkguard",
            "shell form",
        ),
    ];
    for (old, new, expected) in cases {
        let dir = copy_of_examples();
        let dockerfile = dir.path().join("Dockerfile");
        edit(&dockerfile, old, new);
        let toolchain = dir.path().join("rust-toolchain.toml");
        let Some(out) = v.run(
            "dockerfile",
            &[
                "dockerfile".as_ref(),
                dockerfile.as_os_str(),
                "--min-stages".as_ref(),
                "2".as_ref(),
                "--rust-toolchain".as_ref(),
                toolchain.as_os_str(),
            ],
        ) else {
            return;
        };
        assert_caught(&format!("Dockerfile with {new:?}"), &out, expected);
    }
    // hadolint runs too: `cd` in a RUN (DL3003).
    let dir = copy_of_examples();
    let dockerfile = dir.path().join("Dockerfile");
    edit(
        &dockerfile,
        "WORKDIR /src\n",
        "RUN cd /tmp && ls\nWORKDIR /src\n",
    );
    let Some(out) = v.run(
        "dockerfile",
        &["dockerfile".as_ref(), dockerfile.as_os_str()],
    ) else {
        return;
    };
    assert_caught("Dockerfile with RUN cd", &out, "DL3003");
}

#[test]
fn kubernetes_manifests_validate_against_the_api_schemas() {
    let Some(v) = validator("kubernetes_manifests_validate_against_the_api_schemas") else {
        return;
    };
    let files = k8s_manifests(&root("examples/k8s"));
    let names: Vec<String> = files
        .iter()
        .map(|f| {
            f.strip_prefix(workspace_root())
                .unwrap()
                .display()
                .to_string()
        })
        .collect();
    for expected in [
        "examples/k8s/base/deployment.yaml",
        "examples/k8s/base/secrets.example.yaml",
        "examples/k8s/monitoring/podmonitor.yaml",
        "examples/k8s/monitoring/prometheusrule.yaml",
        "examples/k8s/overlays/production/namespace.yaml",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} not among {names:?}"
        );
    }
    let mut args: Vec<&std::ffi::OsStr> = vec!["k8s".as_ref()];
    args.extend(files.iter().map(|f| f.as_os_str()));
    let Some(out) = v.run("k8s", &args) else {
        return;
    };
    assert_valid("examples/k8s manifests", &out);
}

#[test]
fn kustomize_base_and_overlay_build_and_validate() {
    let Some(v) = validator("kustomize_base_and_overlay_build_and_validate") else {
        return;
    };
    let Some(out) = v.run(
        "kustomize",
        &[
            "kustomize".as_ref(),
            root("examples/k8s/base").as_os_str(),
            root("examples/k8s/overlays/production").as_os_str(),
        ],
    ) else {
        return;
    };
    assert_valid("kustomize builds", &out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("kustomize built 5 objects"), "{stderr}");
}

#[test]
fn kubernetes_mistakes_are_caught() {
    let Some(v) = validator("kubernetes_mistakes_are_caught") else {
        return;
    };
    // (file under examples/k8s, old, new, mode, what the validator must say)
    let cases = [
        (
            "base/deployment.yaml",
            "          restartPolicy: Always\n",
            "          restartPolicyy: Always\n",
            "k8s",
            "restartPolicyy",
        ),
        (
            "base/deployment.yaml",
            "- name: linkguard-spool\n              mountPath",
            "- name: linkguard-spol\n              mountPath",
            "k8s",
            "names no volume",
        ),
        (
            "base/deployment.yaml",
            "      containers:\n        - name: app\n",
            "      containers:\n        - name: app\n          restartPolicy: Always\n",
            "k8s",
            "only allowed on init containers",
        ),
        (
            "base/deployment.yaml",
            "port: linkguard-http",
            "port: linkguard-htp",
            "k8s",
            "not a port name",
        ),
        (
            "monitoring/podmonitor.yaml",
            "scrapeTimeout: 10s",
            "scrapeTimeOut: 10s",
            "k8s",
            "scrapeTimeOut: unknown field",
        ),
        (
            "monitoring/prometheusrule.yaml",
            "expr: linkguard_observation_rate < 0.80",
            "expr: linkguard_observation_rate < < 0.80",
            "k8s",
            "syntax error",
        ),
        (
            "monitoring/prometheusrule.yaml",
            "for: 30m",
            "for: 30",
            "k8s",
            "must be string",
        ),
        // The overlay without its replacement: the sidecar would verify the old release.
        (
            "overlays/production/kustomization.yaml",
            "          - spec.template.spec.initContainers.[name=linkguard].env.[name=LINKGUARD_APP_IMAGE].value\n",
            "          - spec.template.spec.containers.[name=app].image\n",
            "kustomize",
            "LINKGUARD_APP_IMAGE",
        ),
        (
            "base/deployment.yaml",
            "configMap:\n            name: linkguard-config\n",
            "configMap:\n            name: linkguard-confg\n",
            "kustomize",
            "not in the build",
        ),
        // The config in the ConfigMap is checked by `linkguard sidecar --check`.
        (
            "base/linkguard.yaml",
            "  intervalSeconds: 300",
            "  intervalSeconds: 0",
            "kustomize",
            "verify.intervalSeconds",
        ),
    ];
    for (file, old, new, mode, expected) in cases {
        let dir = copy_of_examples();
        let k8s = dir.path().join("examples/k8s");
        edit(&k8s.join(file), old, new);
        let out = if mode == "k8s" {
            let mut args: Vec<std::ffi::OsString> = vec!["k8s".into()];
            args.extend(k8s_manifests(&k8s).into_iter().map(Into::into));
            v.run("k8s", &args)
        } else {
            v.run(
                "kustomize",
                &[
                    "kustomize".into(),
                    k8s.join("overlays/production").into_os_string(),
                ],
            )
        };
        let Some(out) = out else { return };
        assert_caught(&format!("{file} with {new:?}"), &out, expected);
    }
}

#[test]
fn compose_file_validates_against_the_compose_spec() {
    let Some(v) = validator("compose_file_validates_against_the_compose_spec") else {
        return;
    };
    let compose = root("examples/compose/compose.yaml");
    let Some(out) = v.run(
        "compose",
        &[
            "compose".as_ref(),
            compose.as_os_str(),
            "--created-by-readme".as_ref(),
            "./keys/".as_ref(),
        ],
    ) else {
        return;
    };
    assert_valid("examples/compose/compose.yaml", &out);
}

#[test]
fn compose_mistakes_are_caught() {
    let Some(v) = validator("compose_mistakes_are_caught") else {
        return;
    };
    let cases = [
        (
            "compose.yaml",
            "    read_only: true\n    environment:",
            "    read_onli: true\n    environment:",
            "read_onli",
        ),
        (
            "compose.yaml",
            "pid: \"service:app\"",
            "pid: \"service:ap\"",
            "names no service",
        ),
        (
            "compose.yaml",
            "- spool:/var/lib/linkguard/spool",
            "- spol:/var/lib/linkguard/spool",
            "not declared",
        ),
        (
            "compose.yaml",
            "- ./keys/report-signing.key:/etc/linkguard/signing/key.pem:ro",
            "- ./keys/report-signing.key:/etc/linkguard/key.pem:ro",
            "signing.key /etc/linkguard/signing/key.pem is not mounted",
        ),
        (
            "compose.yaml",
            "\"127.0.0.1:9464:9464\"",
            "\"127.0.0.1:9465:9465\"",
            "is not published",
        ),
        (
            "linkguard.yaml",
            "  intervalSeconds: 60",
            "  intervalSeconds: 0",
            "verify.intervalSeconds",
        ),
        ("linkguard.yaml", "probe:\n", "probes:\n", "probes"),
    ];
    for (file, old, new, expected) in cases {
        let dir = copy_of_examples();
        let compose_dir = dir.path().join("examples/compose");
        edit(&compose_dir.join(file), old, new);
        let compose = compose_dir.join("compose.yaml");
        let Some(out) = v.run(
            "compose",
            &[
                "compose".as_ref(),
                compose.as_os_str(),
                "--created-by-readme".as_ref(),
                "./keys/".as_ref(),
            ],
        ) else {
            return;
        };
        assert_caught(&format!("{file} with {new:?}"), &out, expected);
    }
}

/// Runs without the Python validators: the binary alone.
#[test]
fn every_example_config_passes_sidecar_check() {
    for (config, image) in [
        ("examples/linkguard.yaml", None),
        ("examples/compose/linkguard.yaml", None),
        (
            "examples/k8s/base/linkguard.yaml",
            Some("registry.example.com/team/app:1.4.2"),
        ),
    ] {
        let path = root(config);
        let mut args = vec!["sidecar", "--config", path.to_str().unwrap(), "--check"];
        if let Some(image) = image {
            args.extend(["--image", image]);
        }
        let out = linkguard(&args);
        assert!(
            out.status.success(),
            "{config}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // And the check can fail: an unknown key.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    let text = std::fs::read_to_string(root("examples/compose/linkguard.yaml")).unwrap();
    std::fs::write(&bad, text.replace("probe:\n", "probes:\n")).unwrap();
    let out = linkguard(&["sidecar", "--config", bad.to_str().unwrap(), "--check"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("probes"));
}

/// The alerts of the PrometheusRule: the runbook's thresholds, on metrics the sidecar exports, each
/// with a runbook section.
#[test]
fn alert_rules_use_exported_metrics_and_link_the_runbook() {
    let rule: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(root("examples/k8s/monitoring/prometheusrule.yaml")).unwrap(),
    )
    .unwrap();
    let metrics_source = std::fs::read_to_string(root("sidecar/src/daemon/metrics.rs")).unwrap();
    let runbook = std::fs::read_to_string(root("docs/runbook.md")).unwrap();
    let anchors: Vec<String> = runbook
        .lines()
        .filter(|l| l.starts_with('#'))
        .map(|l| {
            l.trim_start_matches('#')
                .trim()
                .to_lowercase()
                .chars()
                .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
                .collect::<String>()
                .replace(' ', "-")
        })
        .collect();
    let mut exprs = std::collections::BTreeMap::new();
    for rule in rule["spec"]["groups"][0]["rules"].as_sequence().unwrap() {
        let alert = rule["alert"].as_str().unwrap().to_owned();
        let expr = rule["expr"]
            .as_str()
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        for word in expr.split(|c: char| !(c.is_alphanumeric() || c == '_')) {
            if word.starts_with("linkguard_") {
                assert!(
                    metrics_source.contains(&format!("\"{word}\"")),
                    "{alert}: {word} is not a metric of sidecar/src/daemon/metrics.rs"
                );
            }
        }
        let url = rule["annotations"]["runbook_url"].as_str().unwrap();
        let anchor = url.rsplit_once('#').unwrap().1;
        assert!(
            anchors.iter().any(|a| a == anchor),
            "{alert}: no runbook section #{anchor}"
        );
        exprs.insert(alert, expr);
    }
    assert_eq!(
        exprs["LinkguardObservationRateLow"],
        "linkguard_observation_rate < 0.80"
    );
    assert_eq!(
        exprs["LinkguardObservationRateCritical"],
        "linkguard_observation_rate < 0.50"
    );
    assert_eq!(
        exprs["LinkguardUnexpectedSymbols"],
        "linkguard_unexpected_symbols_count > 0"
    );
    assert_eq!(
        exprs["LinkguardProbeAttachFailures"],
        "linkguard_probe_attach_failures / (linkguard_probes_attached + linkguard_probe_attach_failures) > 0.05"
    );
    assert_eq!(
        exprs["LinkguardObservationBufferFull"],
        "linkguard_observation_buffer_full == 1"
    );
}

#[test]
fn dockerignore_keeps_the_build_context_small_and_complete() {
    let text = std::fs::read_to_string(root(".dockerignore")).unwrap();
    let patterns: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    for excluded in ["target", ".git", ".venv", "**/node_modules"] {
        assert!(
            patterns.contains(&excluded),
            ".dockerignore should exclude {excluded}"
        );
    }
    // What `cargo build --locked -p linkguard` reads must stay in the context.
    for needed in [
        "Cargo.toml",
        "Cargo.lock",
        "rust-toolchain.toml",
        "sidecar",
        "bpf",
        "oci",
        "tests",
    ] {
        assert!(
            !patterns
                .iter()
                .any(|p| p.trim_start_matches("**/") == needed),
            ".dockerignore excludes {needed}, which the build needs"
        );
    }
}

#[test]
fn the_healthcheck_the_compose_file_runs_is_a_real_command() {
    let compose: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(root("examples/compose/compose.yaml")).unwrap(),
    )
    .unwrap();
    let test: Vec<&str> = compose["services"]["linkguard"]["healthcheck"]["test"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(&test[..2], ["CMD", "linkguard"]);
    // Against a port nothing listens on: the arguments are accepted (not 2) and the check fails (1).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let mut args: Vec<String> = test[2..].iter().map(|s| s.to_string()).collect();
    let url = args.iter().position(|a| a == "--url").unwrap() + 1;
    args[url] = args[url].replace("9464", &port.to_string());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = linkguard(&args);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // And it passes against an endpoint that answers 200.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/healthz", listener.local_addr().unwrap());
    let server = std::thread::spawn(move || {
        use std::io::{Read as _, Write as _};
        let (mut conn, _) = listener.accept().unwrap();
        // Read the whole request head before answering, as a real server does.
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).unwrap() == 1 {
            head.push(byte[0]);
        }
        assert!(head.starts_with(b"GET /healthz HTTP/1.1\r\n"));
        conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            .unwrap();
    });
    let out = linkguard(&["healthcheck", "--url", &url]);
    server.join().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
