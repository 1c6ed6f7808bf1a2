// SPDX-License-Identifier: Apache-2.0
//! `Client` with per-registry pull and push credentials against Debian's docker-registry: htpasswd
//! basic auth, and distribution's token auth with a token server that grants some users pull only.
//! Reads use the pull credentials, writes the push ones; a refusal names the registry, repository,
//! operation and the credential source that was tried.
//!
//! When docker-registry, htpasswd or openssl is missing the tests print `SKIP <test>: <reason>`, and
//! fail instead when LINKGUARD_REQUIRE_INTEROP=1.
#![expect(
    clippy::unwrap_used,
    reason = "test harness: a failed setup step is a failed test"
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use linkguard_oci::auth::{AuthConfig, CredentialSource, CredentialSources};
use linkguard_oci::{
    Client, ClientConfig, Digest, Error, Layer, OCI_MANIFEST, Reference, ReferrerFilter,
    RegistryAuth,
};
use reqwest::header::HeaderValue;

#[path = "support/auth_registry.rs"]
mod auth_registry;
use auth_registry::{READER, User, WRITER, missing_tools, start_htpasswd, start_token};

const BUNDLE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";

fn can_run(test: &str, token: bool) -> bool {
    let Some(reason) = missing_tools(token) else {
        return true;
    };
    assert!(
        std::env::var("LINKGUARD_REQUIRE_INTEROP").as_deref() != Ok("1"),
        "{test}: {reason}, and LINKGUARD_REQUIRE_INTEROP=1"
    );
    println!("SKIP {test}: {reason}");
    false
}

/// Pushes a small image tagged `v1` to `<addr>/app` with oci-client (an independent client) as
/// `user`; returns its tag reference and digest.
async fn push_image(addr: &str, user: User) -> (Reference, Digest) {
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
    (format!("{addr}/app:v1").parse().unwrap(), digest)
}

fn config_file(dir: &Path, name: &str, registry: &str, user: &str, password: &str) -> PathBuf {
    let path = dir.join(name);
    auth_registry::write_docker_config(&path, registry, user, password);
    path
}

/// A client whose pull and push credentials come from these docker config files (no environment,
/// no default docker config).
fn client(pull: Option<&Path>, push: Option<&Path>) -> Client {
    let sources = |file: Option<&Path>| CredentialSources {
        docker_config: file.map(Path::to_path_buf),
        ..CredentialSources::default()
    };
    let auth = AuthConfig {
        pull: sources(pull),
        push: sources(push),
        push_falls_back_to_pull: false,
    };
    Client::with_credentials_env(ClientConfig::default(), auth, |_| None).unwrap()
}

fn report() -> (Vec<Layer>, BTreeMap<String, String>) {
    let layers = vec![Layer {
        media_type: BUNDLE.to_owned(),
        data: br#"{"verdict":"pass"}"#.to_vec(),
    }];
    let annotations = BTreeMap::from([(
        "org.opencontainers.image.created".to_owned(),
        "2026-11-22T04:00:00Z".to_owned(),
    )]);
    (layers, annotations)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn htpasswd_credentials_from_docker_config_per_registry() {
    const TEST: &str = "htpasswd_credentials_from_docker_config_per_registry";
    if !can_run(TEST, false) {
        return;
    }
    let registry = start_htpasswd(&[WRITER]).await;
    let addr = registry.addr.as_str();
    let (image, digest) = push_image(addr, WRITER).await;
    let dir = tempfile::tempdir().unwrap();
    let good = config_file(dir.path(), "good.json", addr, WRITER.name, WRITER.password);
    let bad = config_file(dir.path(), "bad.json", addr, WRITER.name, "wrong");
    // Credentials for another registry only: this one is reached anonymously.
    let elsewhere = config_file(
        dir.path(),
        "elsewhere.json",
        "127.0.0.1:1",
        WRITER.name,
        WRITER.password,
    );

    let c = client(Some(&good), Some(&good));
    let set = c.credentials(addr).unwrap();
    assert!(
        matches!(&set.pull.source, CredentialSource::DockerConfig { path, .. } if *path == good),
        "{}",
        set.pull
    );
    let (layers, annotations) = report();
    let pushed = c
        .push_artifact(&image, BUNDLE, layers.clone(), annotations)
        .await
        .unwrap_or_else(|e| panic!("push with {}: {e}; log: {}", set.push, registry.log()));
    assert_eq!(pushed.subject, digest);
    let listed = c
        .list_referrers(&image, &ReferrerFilter::default())
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    let pulled = c
        .pull_referrer(&image, &pushed.descriptor.digest.parse().unwrap())
        .await
        .unwrap();
    assert_eq!(pulled.layers[0].1, layers[0].data);

    // A wrong password: refused, naming the operation, registry, repository and the file tried.
    let err = client(Some(&bad), Some(&bad))
        .list_referrers(&image, &ReferrerFilter::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Auth { .. }), "{err:?}");
    let message = err.to_string();
    println!("{message}");
    assert!(
        message.starts_with(&format!("resolve on {addr}/app: pull of {addr}/app failed: basic credentials from {} (entry \"{addr}\") for {addr} were refused", bad.display())),
        "{message}"
    );

    // No credentials for this registry: anonymous, refused, and said so.
    let err = client(Some(&elsewhere), Some(&elsewhere))
        .resolve(&image)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!(
            "anonymous access (no credentials configured) for {addr}"
        )),
        "{err}"
    );

    // Pull credentials only: reads work, the push is refused with the push hint.
    let pull_only = client(Some(&good), None);
    assert_eq!(pull_only.resolve(&image).await.unwrap(), digest);
    let (layers, _) = report();
    let err = pull_only
        .push_artifact(&image, BUNDLE, layers, BTreeMap::new())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(&format!(
            "push artifact on {addr}/app: push of {addr}/app failed: anonymous access"
        )),
        "{err}"
    );
    assert!(err.contains("configure push credentials"), "{err}");

    // Fixed credential sets: one registry with credentials, the rest anonymous.
    let sets = AuthConfig {
        pull: CredentialSources {
            docker_config: Some(good.clone()),
            ..CredentialSources::default()
        },
        push: CredentialSources {
            docker_config: Some(good.clone()),
            ..CredentialSources::default()
        },
        push_falls_back_to_pull: false,
    }
    .resolve(addr, &|_| None)
    .unwrap();
    let fixed = Client::with_credential_sets(ClientConfig::default(), [sets]).unwrap();
    assert_eq!(fixed.resolve(&image).await.unwrap(), digest);
    // Client::new keeps working: one credential for everything.
    let legacy = Client::new(
        ClientConfig::default(),
        RegistryAuth::Basic(WRITER.name.into(), WRITER.password.into()),
    )
    .unwrap();
    assert_eq!(
        legacy
            .list_referrers(&image, &ReferrerFilter::default())
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_auth_separates_pull_and_push_credentials() {
    const TEST: &str = "token_auth_separates_pull_and_push_credentials";
    if !can_run(TEST, true) {
        return;
    }
    let registry = start_token(&[WRITER, READER]).await;
    let addr = registry.addr.as_str();
    let (image, digest) = push_image(addr, WRITER).await;
    let dir = tempfile::tempdir().unwrap();
    let reader = config_file(
        dir.path(),
        "reader.json",
        addr,
        READER.name,
        READER.password,
    );
    let writer = config_file(
        dir.path(),
        "writer.json",
        addr,
        WRITER.name,
        WRITER.password,
    );

    // The reader's token grants pull only: reads work, a push is refused naming the file.
    let read_only = client(Some(&reader), Some(&reader));
    assert_eq!(read_only.resolve(&image).await.unwrap(), digest);
    assert!(
        read_only
            .list_referrers(&image, &ReferrerFilter::default())
            .await
            .unwrap()
            .is_empty()
    );
    let (layers, annotations) = report();
    let err = read_only
        .push_artifact(&image, BUNDLE, layers.clone(), annotations.clone())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Auth { .. }), "{err:?}");
    let message = err.to_string();
    println!("{message}");
    assert!(
        message.starts_with(&format!(
            "push artifact on {addr}/app: push of {addr}/app failed: basic credentials from {} (entry \"{addr}\") for {addr} were refused; check that they are valid and grant push",
            reader.display()
        )),
        "{message}"
    );

    // Reader for pulls, writer for pushes: the push works, and the reader lists it.
    let split = client(Some(&reader), Some(&writer));
    let pushed = split
        .push_artifact(&image, BUNDLE, layers, annotations)
        .await
        .unwrap_or_else(|e| panic!("push as writer: {e}; log: {}", registry.log()));
    let listed = read_only
        .list_referrers(&image, &ReferrerFilter::default())
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].digest, pushed.descriptor.digest);
    read_only
        .pull_referrer(&image, &pushed.descriptor.digest.parse().unwrap())
        .await
        .unwrap();

    // Anonymous: the token server issues a token without access; the registry refuses it.
    let err = client(None, None)
        .resolve(&image)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!(
            "anonymous access (no credentials configured) for {addr} were refused"
        )),
        "{err}"
    );
    // A wrong password: the token server refuses it, and the error names the file.
    let bad = config_file(dir.path(), "bad.json", addr, READER.name, "wrong");
    let err = client(Some(&bad), None)
        .resolve(&image)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&bad.display().to_string()) && err.contains("were refused"),
        "{err}"
    );
}
