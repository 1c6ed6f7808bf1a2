// SPDX-License-Identifier: Apache-2.0
//! `linkguard inject` through the binary: its output validates against the Kubernetes API schemas
//! (ci/validate-deploy), injecting twice gives the same bytes, stdin/stdout work, malformed input is
//! refused naming the document and line, and the Kubernetes example is exactly what inject makes.
#![expect(clippy::unwrap_used, reason = "tests: a failed step is a test failure")]

mod validate_deploy;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use linkguard_integration_tests::{linkguard, linkguard_bin, workspace_root};
use serde_yaml_ng::Value;
use validate_deploy::{assert_valid, validator};

const SIDECAR_IMAGE: &str = "registry.example.com/mirror/linkguard:0.1.0";

fn root(path: &str) -> PathBuf {
    workspace_root().join(path)
}

/// `linkguard inject ARGS` with `stdin` on its standard input.
fn inject_stdin(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(linkguard_bin())
        .arg("inject")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// The non-empty documents of a YAML stream (split at its `---` lines).
fn documents(yaml: &str) -> Vec<Value> {
    let mut docs = vec![String::new()];
    for line in yaml.lines() {
        if line == "---" || line.starts_with("--- ") {
            docs.push(String::new());
        } else if let Some(doc) = docs.last_mut() {
            doc.push_str(line);
            doc.push('\n');
        }
    }
    docs.iter()
        .map(|d| serde_yaml_ng::from_str::<Value>(d).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

fn pod_template(containers: &str) -> String {
    format!("    metadata:\n      labels: {{app: w}}\n    spec:\n      containers:\n{containers}")
}

/// One of each kind inject handles, a List, and objects it must leave alone.
fn workloads() -> String {
    let app = "        - name: app\n          image: registry.example.com/team/app:1.4.2\n";
    let template = pod_template(app);
    let mut docs = vec![
        "# A Service: passes through, comment and all.\napiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  \
         selector: {app: w}\n  ports: [{port: 443, targetPort: 8443}]\n"
            .to_owned(),
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: single\nspec:\n  containers:\n  - name: app\n    image: \
         registry.example.com/team/app:1.4.2\n"
            .to_owned(),
    ];
    for (api, kind, extra) in [
        (
            "apps/v1",
            "Deployment",
            "  selector: {matchLabels: {app: w}}\n",
        ),
        (
            "apps/v1",
            "StatefulSet",
            "  serviceName: web\n  selector: {matchLabels: {app: w}}\n",
        ),
        (
            "apps/v1",
            "DaemonSet",
            "  selector: {matchLabels: {app: w}}\n",
        ),
        (
            "apps/v1",
            "ReplicaSet",
            "  selector: {matchLabels: {app: w}}\n",
        ),
        ("batch/v1", "Job", ""),
    ] {
        let template = if kind == "Job" {
            template.replace("    spec:\n", "    spec:\n      restartPolicy: Never\n")
        } else {
            template.clone()
        };
        docs.push(format!(
            "apiVersion: {api}\nkind: {kind}\nmetadata:\n  name: {}\nspec:\n{extra}  template:\n{template}",
            kind.to_lowercase()
        ));
    }
    docs.push(
        "apiVersion: batch/v1\nkind: CronJob\nmetadata:\n  name: nightly\nspec:\n  schedule: \"0 3 * * *\"\n  jobTemplate:\n    \
         spec:\n      template:\n        spec:\n          restartPolicy: OnFailure\n          containers:\n          - name: app\n            \
         image: registry.example.com/team/app:1.4.2\n"
            .to_owned(),
    );
    docs.push(
        "apiVersion: v1\nkind: List\nitems:\n- apiVersion: apps/v1\n  kind: Deployment\n  metadata:\n    name: listed\n  spec:\n    \
         selector: {matchLabels: {app: w}}\n    template:\n      metadata:\n        labels: {app: w}\n      spec:\n        \
         containers:\n        - name: app\n          image: registry.example.com/team/app:1.4.2\n"
            .to_owned(),
    );
    docs.join("---\n")
}

#[test]
fn injected_manifests_validate_against_the_kubernetes_schemas() {
    let config = root("examples/k8s/base/linkguard.yaml");
    let out = inject_stdin(
        &[
            "-f",
            "-",
            "--image",
            SIDECAR_IMAGE,
            "--config",
            config.to_str().unwrap(),
        ],
        &workloads(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let yaml = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    for object in [
        "pod/single injected",
        "deployment/deployment injected",
        "statefulset/statefulset injected",
        "daemonset/daemonset injected",
        "replicaset/replicaset injected",
        "job/job injected",
        "cronjob/nightly injected",
        "deployment/listed injected",
        "configmap/linkguard-config added",
    ] {
        assert!(stderr.contains(object), "{object} not in:\n{stderr}");
    }
    let docs = documents(&yaml);
    assert_eq!(docs.len(), 10, "{yaml}");
    // The List's item got the sidecar too.
    let list = docs.iter().find(|d| d["kind"] == "List").unwrap();
    assert_eq!(
        list["items"][0]["spec"]["template"]["spec"]["shareProcessNamespace"],
        true
    );

    let Some(v) = validator("injected_manifests_validate_against_the_kubernetes_schemas") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("injected.yaml");
    std::fs::write(&file, &yaml).unwrap();
    let Some(out) = v.run("k8s", &["k8s".as_ref(), file.as_os_str()]) else {
        return;
    };
    assert_valid("inject output", &out);
}

#[test]
fn injecting_twice_gives_the_same_bytes() {
    let config = root("examples/k8s/base/linkguard.yaml");
    let args = [
        "-f",
        "-",
        "--image",
        SIDECAR_IMAGE,
        "--config",
        config.to_str().unwrap(),
    ];
    let once = inject_stdin(&args, &workloads());
    assert!(once.status.success());
    let twice = inject_stdin(&args, std::str::from_utf8(&once.stdout).unwrap());
    assert!(twice.status.success());
    assert_eq!(
        String::from_utf8_lossy(&twice.stdout),
        String::from_utf8_lossy(&once.stdout)
    );
    assert!(
        String::from_utf8_lossy(&twice.stderr)
            .contains("deployment/deployment already injected, unchanged")
    );

    // Without --config too, and through files (--output).
    let dir = tempfile::tempdir().unwrap();
    let (input, first, second) = (
        dir.path().join("in.yaml"),
        dir.path().join("once.yaml"),
        dir.path().join("twice.yaml"),
    );
    std::fs::write(&input, workloads()).unwrap();
    for (from, to) in [(&input, &first), (&first, &second)] {
        let out = linkguard(&[
            "inject",
            "-f",
            from.to_str().unwrap(),
            "--output",
            to.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.stdout.is_empty());
    }
    assert_eq!(
        std::fs::read(&first).unwrap(),
        std::fs::read(&second).unwrap()
    );
}

#[test]
fn other_objects_pass_through_byte_for_byte() {
    let input = "# comments stay\napiVersion: v1\nkind: Service\nmetadata: {name: web}   # odd spacing too\nspec:\n  ports: [{port: 80}]\n\
                 ---\napiVersion: example.com/v1\nkind: Deployment\nmetadata: {name: custom}\n";
    let out = inject_stdin(&["-f", "-"], input);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), input);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no workload to inject"));
}

#[test]
fn malformed_yaml_is_refused_naming_the_document_and_line() {
    let input = format!(
        "{}---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: [oops\n",
        workloads()
    );
    // The `---` line that opens the bad document.
    let lines: Vec<&str> = input.lines().collect();
    let first_line_of_bad = lines.iter().rposition(|l| *l == "---").unwrap() + 1;
    let out = inject_stdin(&["-f", "-"], &input);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        out.stdout.is_empty(),
        "nothing is written when a document fails"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "<stdin>: document 10 (from line {first_line_of_bad}) is not valid YAML"
        )),
        "{stderr}"
    );

    let out = linkguard(&["inject", "-f", "/nonexistent/app.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/app.yaml"));

    let out = inject_stdin(&["-f", "-", "--image", "linkguard"], &workloads());
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--image linkguard"));
}

/// examples/k8s/base/deployment.yaml is what inject makes of the same Deployment without the sidecar.
#[test]
fn the_kubernetes_example_is_what_inject_makes() {
    let example_text = std::fs::read_to_string(root("examples/k8s/base/deployment.yaml")).unwrap();
    let example: Value = serde_yaml_ng::from_str(&example_text).unwrap();
    let image = example["spec"]["template"]["spec"]["initContainers"][0]["image"]
        .as_str()
        .unwrap()
        .to_owned();

    // The app's own Deployment: the example without what inject adds.
    let mut app = example.clone();
    let spec = app["spec"]["template"]["spec"].as_mapping_mut().unwrap();
    spec.remove("shareProcessNamespace");
    spec.remove("initContainers");
    spec.remove("volumes");
    let app_yaml = serde_yaml_ng::to_string(&app).unwrap();

    let config = root("examples/k8s/base/linkguard.yaml");
    let out = inject_stdin(
        &[
            "-f",
            "-",
            "--image",
            &image,
            "--config",
            config.to_str().unwrap(),
        ],
        &app_yaml,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let docs = documents(&String::from_utf8(out.stdout).unwrap());
    let injected = docs.iter().find(|d| d["kind"] == "Deployment").unwrap();
    assert_eq!(
        injected,
        &example,
        "examples/k8s/base/deployment.yaml differs from `linkguard inject` output:\n{}",
        serde_yaml_ng::to_string(injected).unwrap()
    );
    // The ConfigMap inject adds holds the config file verbatim.
    let config_map = docs.iter().find(|d| d["kind"] == "ConfigMap").unwrap();
    assert_eq!(
        config_map["data"]["linkguard.yaml"].as_str().unwrap(),
        std::fs::read_to_string(&config).unwrap()
    );
}
