// SPDX-License-Identifier: Apache-2.0
//! Registry credentials through the binary: `--registry-config`, `--push-registry-config`, the
//! `LINKGUARD_*REGISTRY_*` variables and `--insecure-registry`, against Debian's docker-registry
//! with htpasswd basic auth and with token auth (a token server granting one user pull only).
//!
//! When docker-registry, htpasswd or openssl is missing the tests print `SKIP <test>: <reason>`, and
//! fail instead when LINKGUARD_REQUIRE_INTEROP=1.
#![expect(
    clippy::unwrap_used,
    reason = "test harness: a failed setup step is a failed test"
)]

use std::path::Path;
use std::process::{Command, Output};

use base64::Engine as _;
use linkguard_integration_tests::{fixture, interop_required, linkguard_bin};
use linkguard_oci::{Digest, OCI_MANIFEST, RegistryAuth};
use reqwest::header::HeaderValue;

#[path = "../oci/tests/support/auth_registry.rs"]
mod auth_registry;
use auth_registry::{READER, User, WRITER, missing_tools, start_htpasswd, start_token};

/// The digest the curl-tls fixture map is bound to.
const FIXTURE_HEX: &str = "4d6f6a1fbbd5cd3ba8e6b7ea5f4bb5a4b1a0a1e3e2f6c3d1b0a9f8e7d6c5b4a3";

const CREDENTIAL_VARS: [&str; 8] = [
    "LINKGUARD_REGISTRY_USERNAME",
    "LINKGUARD_REGISTRY_PASSWORD",
    "LINKGUARD_REGISTRY_TOKEN",
    "LINKGUARD_REGISTRY_HOST",
    "LINKGUARD_PUSH_REGISTRY_USERNAME",
    "LINKGUARD_PUSH_REGISTRY_PASSWORD",
    "LINKGUARD_PUSH_REGISTRY_TOKEN",
    "LINKGUARD_PUSH_REGISTRY_HOST",
];

fn can_run(test: &str, token: bool) -> bool {
    let Some(reason) = missing_tools(token) else {
        return true;
    };
    assert!(
        !interop_required(),
        "{test}: {reason}, and LINKGUARD_REQUIRE_INTEROP=1"
    );
    println!("SKIP {test}: {reason}");
    false
}

/// Runs linkguard with only `env` as credentials: HOME is an empty directory (no default docker
/// config), and the caller's credential variables are removed.
fn run(home: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(linkguard_bin());
    cmd.args(args).env("HOME", home).env_remove("DOCKER_CONFIG");
    for var in CREDENTIAL_VARS {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied()).output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[track_caller]
fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "expected success: {}\n{}",
        stderr(out),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asserts exit 2 (bad input or registry error) and that stderr contains every needle.
#[track_caller]
fn fails(out: &Output, needles: &[&str]) -> String {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(2), "expected exit 2: {err}");
    for needle in needles {
        assert!(err.contains(needle), "{needle:?} not in: {err}");
    }
    err
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Pushes a small image tagged `v1` to `<addr>/app` with oci-client as `user`; returns its
/// reference and digest.
async fn push_image(addr: &str, user: User) -> (String, Digest) {
    let oci = oci_client::Client::new(oci_client::client::ClientConfig {
        protocol: oci_client::client::ClientProtocol::Http,
        ..Default::default()
    });
    let r = oci_client::Reference::with_tag(addr.to_owned(), "app".into(), "v1".into());
    let auth = RegistryAuth::Basic(user.name.to_owned(), user.password.to_owned());
    oci.store_auth_if_needed(addr, &auth).await;
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let layer = b"not really a tarball";
    for blob in [&config[..], &layer[..]] {
        oci.push_blob(&r, blob.to_vec(), Digest::of(blob).as_str())
            .await
            .unwrap();
    }
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": Digest::of(config).as_str(), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": Digest::of(layer).as_str(), "size": layer.len()}],
    });
    let body = serde_json::to_vec(&manifest).unwrap();
    let digest = Digest::of(&body);
    oci.push_manifest_raw(&r, body, HeaderValue::from_static(OCI_MANIFEST))
        .await
        .unwrap();
    (format!("{addr}/app:v1"), digest)
}

/// The fixture map bound to `digest`, written to `dir/bound.json`.
fn bound_map(dir: &Path, digest: &Digest) -> std::path::PathBuf {
    let map = std::fs::read_to_string(fixture("maps/curl-tls.json")).unwrap();
    let path = dir.join("bound.json");
    std::fs::write(&path, map.replace(FIXTURE_HEX, digest.hex())).unwrap();
    path
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn help_states_the_credential_resolution_order() {
    let home = tempfile::tempdir().unwrap();
    for command in [
        &["reports", "list", "--help"][..],
        &["reports", "pull", "--help"],
        &["reports", "verify", "--help"],
        &["map", "push", "--help"],
        &["map", "pull", "--help"],
    ] {
        let help = ok(&run(home.path(), command, &[]));
        for needle in [
            "Registry access:",
            "--registry-config <FILE>",
            "--push-registry-config <FILE>",
            "--insecure-registry <HOST[:PORT]>",
            "--registry-timeout <SECS>",
            "first source that has some wins",
            "LINKGUARD_REGISTRY_USERNAME + LINKGUARD_REGISTRY_PASSWORD",
            "LINKGUARD_PUSH_REGISTRY_USERNAME",
            "~/.docker/config.json",
            "default: this file",
        ] {
            assert!(
                help.contains(needle),
                "{command:?}: {needle:?} not in:\n{help}"
            );
        }
    }
    let out = run(
        home.path(),
        &[
            "reports",
            "list",
            "--image",
            "reg.example/app:v1",
            "--insecure-registry",
            "a b",
        ],
        &[],
    );
    fails(&out, &["--insecure-registry", "\"a b\""]);
    let out = run(
        home.path(),
        &[
            "reports",
            "list",
            "--image",
            "reg.example/app:v1",
            "--registry-timeout",
            "0",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn htpasswd_registry_with_config_files_and_environment() {
    const TEST: &str = "htpasswd_registry_with_config_files_and_environment";
    if !can_run(TEST, false) {
        return;
    }
    let rt = runtime();
    let registry = rt.block_on(start_htpasswd(&[WRITER]));
    let addr = registry.addr.clone();
    let (image, digest) = rt.block_on(push_image(&addr, WRITER));
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.json");
    auth_registry::write_docker_config(&good, &addr, WRITER.name, WRITER.password);
    let bad = dir.path().join("bad.json");
    auth_registry::write_docker_config(&bad, &addr, WRITER.name, "wrong");
    let map = bound_map(dir.path(), &digest);
    let list = |extra: &[&str], env: &[(&str, &str)]| {
        let mut args = vec!["reports", "list", "--image", &image, "--format", "json"];
        args.extend_from_slice(extra);
        run(home.path(), &args, env)
    };

    // Right credentials from a docker config file.
    assert_eq!(
        ok(&list(&["--registry-config", s(&good)], &[])).trim(),
        "[]"
    );
    // Wrong ones: refused, naming the registry, repository, operation and the file tried.
    let err = fails(
        &list(&["--registry-config", s(&bad)], &[]),
        &[
            &format!(
                "pull of {addr}/app failed: basic credentials from {}",
                bad.display()
            ),
            &format!("(entry \"{addr}\")"),
            "were refused",
        ],
    );
    println!("wrong password: {err}");
    // None at all: anonymous, refused, and said so.
    fails(
        &list(&[], &[]),
        &[
            "anonymous access (no credentials configured)",
            "configure credentials",
        ],
    );
    // A credentials file that does not exist is named.
    let missing = dir.path().join("missing.json");
    fails(
        &list(&["--registry-config", s(&missing)], &[]),
        &["cannot read registry credentials file", s(&missing)],
    );
    // The environment, and a Kubernetes dockerconfigjson Secret manifest.
    let env_pull = [
        ("LINKGUARD_REGISTRY_USERNAME", WRITER.name),
        ("LINKGUARD_REGISTRY_PASSWORD", WRITER.password),
    ];
    ok(&list(&[], &env_pull));
    let secret = dir.path().join("secret.json");
    let inner = std::fs::read(&good).unwrap();
    std::fs::write(
        &secret,
        serde_json::json!({
            "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
            "data": {".dockerconfigjson": base64::engine::general_purpose::STANDARD.encode(inner)}
        })
        .to_string(),
    )
    .unwrap();
    ok(&list(&["--registry-config", s(&secret)], &[]));

    // Pull credentials from the environment are not used for pushing.
    let push = |extra: &[&str], env: &[(&str, &str)]| {
        let mut args = vec!["map", "push", "--image", &image, s(&map)];
        args.extend_from_slice(extra);
        run(home.path(), &args, env)
    };
    let err = fails(
        &push(&[], &env_pull),
        &[
            &format!("push of {addr}/app failed: anonymous access"),
            "configure push credentials",
        ],
    );
    println!("push without push credentials: {err}");
    // Push credentials from the environment, or the --registry-config file (push defaults to it).
    let env_push = [
        ("LINKGUARD_PUSH_REGISTRY_USERNAME", WRITER.name),
        ("LINKGUARD_PUSH_REGISTRY_PASSWORD", WRITER.password),
    ];
    let first: Digest = ok(&push(
        &[],
        &[env_pull[0], env_pull[1], env_push[0], env_push[1]],
    ))
    .trim()
    .parse()
    .unwrap();
    ok(&push(&["--registry-config", s(&good)], &[]));
    let pulled = ok(&run(
        home.path(),
        &[
            "map",
            "pull",
            "--image",
            &image,
            "--registry-config",
            s(&good),
        ],
        &[],
    ));
    assert_eq!(pulled.as_bytes(), std::fs::read(&map).unwrap());
    assert!(first.as_str().starts_with("sha256:"));
    drop(registry);
}

#[test]
fn pull_only_credentials_refuse_push_with_a_clear_message() {
    const TEST: &str = "pull_only_credentials_refuse_push_with_a_clear_message";
    if !can_run(TEST, true) {
        return;
    }
    let rt = runtime();
    let registry = rt.block_on(start_token(&[WRITER, READER]));
    let addr = registry.addr.clone();
    let (image, digest) = rt.block_on(push_image(&addr, WRITER));
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let reader = dir.path().join("reader.json");
    auth_registry::write_docker_config(&reader, &addr, READER.name, READER.password);
    let writer = dir.path().join("writer.json");
    auth_registry::write_docker_config(&writer, &addr, WRITER.name, WRITER.password);
    let map = bound_map(dir.path(), &digest);

    // The reader's token grants pull only: the push is refused, naming the file and the fix.
    let out = run(
        home.path(),
        &[
            "map",
            "push",
            "--image",
            &image,
            s(&map),
            "--registry-config",
            s(&reader),
        ],
        &[],
    );
    let err = fails(
        &out,
        &[
            &format!(
                "push artifact on {addr}/app: push of {addr}/app failed: basic credentials from {} (entry \"{addr}\") for {addr} were refused",
                reader.display()
            ),
            "grant push to this repository",
        ],
    );
    println!("pull-only credentials: {err}");
    // Separate push credentials: the push works, and the reader pulls and lists it.
    let out = run(
        home.path(),
        &[
            "map",
            "push",
            "--image",
            &image,
            s(&map),
            "--registry-config",
            s(&reader),
            "--push-registry-config",
            s(&writer),
        ],
        &[],
    );
    let pushed = ok(&out);
    assert!(pushed.trim().starts_with("sha256:"), "{pushed}");
    let pulled = ok(&run(
        home.path(),
        &[
            "map",
            "pull",
            "--image",
            &image,
            "--registry-config",
            s(&reader),
        ],
        &[],
    ));
    assert_eq!(pulled.as_bytes(), std::fs::read(&map).unwrap());
    drop(registry);
}
