// SPDX-License-Identifier: Apache-2.0
//! Resolution order, environment handling and error wording.

use std::collections::HashMap;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::*;

const REG: &str = "127.0.0.1:5000";

fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |name| map.get(name).cloned()
}

fn write_config(dir: &Path, name: &str, user: &str, pass: &str) -> PathBuf {
    let path = dir.join(name);
    let auth = STANDARD.encode(format!("{user}:{pass}"));
    std::fs::write(
        &path,
        format!(r#"{{"auths":{{"{REG}":{{"auth":"{auth}"}}}}}}"#),
    )
    .unwrap();
    path
}

fn basic(u: &str, p: &str) -> Credentials {
    Credentials::Basic {
        username: u.into(),
        password: p.into(),
    }
}

#[test]
fn order_is_flags_then_env_then_docker_config_then_secret() {
    let dir = tempfile::tempdir().unwrap();
    let docker = write_config(dir.path(), "config.json", "docker", "d");
    let secret = write_config(dir.path(), ".dockerconfigjson", "secret", "s");
    let env = env_of(&[
        ("LINKGUARD_REGISTRY_USERNAME", "envuser"),
        ("LINKGUARD_REGISTRY_PASSWORD", "e"),
    ]);
    let mut sources = CredentialSources {
        explicit: Some(basic("flag", "f")),
        env_prefix: Some(PULL_ENV_PREFIX.into()),
        docker_config: Some(docker.clone()),
        default_docker_config: false,
        kubernetes_secret: Some(secret.clone()),
    };
    let got = sources.resolve(REG, &env).unwrap().unwrap();
    assert_eq!(
        (got.credentials, got.source),
        (basic("flag", "f"), CredentialSource::Explicit)
    );

    sources.explicit = None;
    let got = sources.resolve(REG, &env).unwrap().unwrap();
    assert_eq!(got.credentials, basic("envuser", "e"));
    assert_eq!(
        got.to_string(),
        format!(
            "basic credentials from environment LINKGUARD_REGISTRY_USERNAME/LINKGUARD_REGISTRY_PASSWORD for {REG}"
        )
    );

    let got = sources.resolve(REG, &env_of(&[])).unwrap().unwrap();
    assert_eq!(got.credentials, basic("docker", "d"));
    assert_eq!(
        got.to_string(),
        format!(
            "basic credentials from {} (entry \"{REG}\") for {REG}",
            docker.display()
        )
    );

    sources.docker_config = None;
    let got = sources.resolve(REG, &env_of(&[])).unwrap().unwrap();
    assert_eq!(got.credentials, basic("secret", "s"));
    assert_eq!(
        got.source,
        CredentialSource::KubernetesSecret {
            path: secret,
            entry: REG.into()
        }
    );

    sources.kubernetes_secret = None;
    assert_eq!(sources.resolve(REG, &env_of(&[])).unwrap(), None);
}

#[test]
fn docker_config_without_entry_falls_through_to_secret() {
    let dir = tempfile::tempdir().unwrap();
    let docker = dir.path().join("config.json");
    std::fs::write(&docker, r#"{"auths":{"other.example":{"auth":"dTpw"}}}"#).unwrap();
    let secret = write_config(dir.path(), "secret", "k8s", "s");
    let sources = CredentialSources {
        docker_config: Some(docker),
        kubernetes_secret: Some(secret),
        ..CredentialSources::default()
    };
    assert_eq!(
        sources
            .resolve(REG, &env_of(&[]))
            .unwrap()
            .unwrap()
            .credentials,
        basic("k8s", "s")
    );
}

#[test]
fn default_docker_config_follows_docker_config_and_home() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join(".docker")).unwrap();
    write_config(&dir.path().join(".docker"), "config.json", "home", "h");
    let home = dir.path().to_str().unwrap();
    let sources = CredentialSources::with_env_prefix(PULL_ENV_PREFIX);
    let got = sources
        .resolve(REG, &env_of(&[("HOME", home)]))
        .unwrap()
        .unwrap();
    assert_eq!(got.credentials, basic("home", "h"));

    let alt = tempfile::tempdir().unwrap();
    write_config(alt.path(), "config.json", "alt", "a");
    let env = env_of(&[
        ("HOME", home),
        ("DOCKER_CONFIG", alt.path().to_str().unwrap()),
    ]);
    assert_eq!(
        sources.resolve(REG, &env).unwrap().unwrap().credentials,
        basic("alt", "a")
    );

    // A missing default file is not an error: there is simply nothing configured.
    let empty = tempfile::tempdir().unwrap();
    assert_eq!(
        sources
            .resolve(REG, &env_of(&[("HOME", empty.path().to_str().unwrap())]))
            .unwrap(),
        None
    );
}

#[test]
fn a_named_file_must_exist_and_parse() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.json");
    let sources = CredentialSources {
        docker_config: Some(missing.clone()),
        ..CredentialSources::default()
    };
    let err = sources.resolve(REG, &env_of(&[])).unwrap_err().to_string();
    assert!(err.contains(&missing.display().to_string()), "{err}");

    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        format!(
            r#"{{"auths":{{"{REG}":{{"auth":"{}"}}}}}}"#,
            STANDARD.encode("nocolon")
        ),
    )
    .unwrap();
    let sources = CredentialSources {
        kubernetes_secret: Some(bad.clone()),
        ..CredentialSources::default()
    };
    let err = sources.resolve(REG, &env_of(&[])).unwrap_err().to_string();
    assert!(
        err.contains(&bad.display().to_string()) && err.contains("colon"),
        "{err}"
    );
}

#[test]
fn env_credentials_can_be_scoped_to_one_registry() {
    let sources = CredentialSources {
        env_prefix: Some(PULL_ENV_PREFIX.into()),
        ..CredentialSources::default()
    };
    let env = env_of(&[
        ("LINKGUARD_REGISTRY_USERNAME", "u"),
        ("LINKGUARD_REGISTRY_PASSWORD", "p"),
        ("LINKGUARD_REGISTRY_HOST", "https://index.docker.io/v1/"),
    ]);
    assert_eq!(sources.resolve(REG, &env).unwrap(), None);
    let got = sources
        .resolve("registry-1.docker.io", &env)
        .unwrap()
        .unwrap();
    assert_eq!(got.credentials, basic("u", "p"));
    assert!(
        got.to_string()
            .contains("scoped by LINKGUARD_REGISTRY_HOST"),
        "{got}"
    );
}

#[test]
fn env_token_and_incomplete_env() {
    let sources = CredentialSources {
        env_prefix: Some(PUSH_ENV_PREFIX.into()),
        ..CredentialSources::default()
    };
    let got = sources
        .resolve(REG, &env_of(&[("LINKGUARD_PUSH_REGISTRY_TOKEN", "t")]))
        .unwrap()
        .unwrap();
    assert_eq!(got.credentials, Credentials::Bearer { token: "t".into() });
    assert!(matches!(got.registry_auth(), RegistryAuth::Bearer(t) if t == "t"));

    let err = sources
        .resolve(REG, &env_of(&[("LINKGUARD_PUSH_REGISTRY_USERNAME", "u")]))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "incomplete registry credentials in the environment: LINKGUARD_PUSH_REGISTRY_USERNAME is set but \
         LINKGUARD_PUSH_REGISTRY_PASSWORD is not"
    );
}

#[test]
fn helpers_and_identity_tokens_are_errors_not_anonymous() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    std::fs::write(
        &path,
        format!(r#"{{"auths":{{"{REG}":{{}},"id.example":{{"identitytoken":"r"}}}},"credsStore":"desktop"}}"#),
    )
    .unwrap();
    let sources = CredentialSources {
        docker_config: Some(path),
        ..CredentialSources::default()
    };
    let err = sources.resolve(REG, &env_of(&[])).unwrap_err().to_string();
    assert!(
        err.contains("docker credential helper \"desktop\"") && err.contains(REG),
        "{err}"
    );
    let err = sources
        .resolve("id.example", &env_of(&[]))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("identity token") && err.contains("id.example"),
        "{err}"
    );
}

#[test]
fn push_falls_back_to_pull_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let pull_file = write_config(dir.path(), "pull.json", "puller", "p");
    let mut config = AuthConfig {
        pull: CredentialSources {
            kubernetes_secret: Some(pull_file),
            ..CredentialSources::default()
        },
        push: CredentialSources::with_env_prefix(PUSH_ENV_PREFIX),
        push_falls_back_to_pull: false,
    };
    let set = config.resolve(REG, &env_of(&[])).unwrap();
    assert_eq!(set.pull.credentials, basic("puller", "p"));
    assert_eq!(set.push.credentials, Credentials::Anonymous);
    assert_eq!(
        set.push.to_string(),
        format!("anonymous access (no credentials configured) for {REG}")
    );

    config.push_falls_back_to_pull = true;
    let set = config.resolve(REG, &env_of(&[])).unwrap();
    assert_eq!(set.push.credentials, basic("puller", "p"));
    assert!(
        set.push
            .to_string()
            .contains("the pull credentials reused for push"),
        "{}",
        set.push
    );

    let env = env_of(&[
        ("LINKGUARD_PUSH_REGISTRY_USERNAME", "pusher"),
        ("LINKGUARD_PUSH_REGISTRY_PASSWORD", "q"),
    ]);
    let set = config.resolve(REG, &env).unwrap();
    assert_eq!(
        set.pull.credentials,
        basic("puller", "p"),
        "push variables do not leak into pull"
    );
    assert_eq!(set.push.credentials, basic("pusher", "q"));
}

#[test]
fn refusal_names_operation_registry_repository_and_source() {
    let resolved = ResolvedCredentials {
        registry: REG.into(),
        credentials: basic("u", "p"),
        source: CredentialSource::DockerConfig {
            path: "/root/.docker/config.json".into(),
            entry: REG.into(),
        },
    };
    let refused = OciDistributionError::UnauthorizedError {
        url: format!("http://{REG}/v2/app/blobs/uploads/"),
    };
    let err = resolved
        .explain(Access::Push, "app", refused)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(&format!(
            "push of {REG}/app failed: basic credentials from /root/.docker/config.json (entry \"{REG}\") for {REG} were refused"
        )),
        "{err}"
    );
    let other = OciDistributionError::ServerError {
        code: 500,
        url: String::new(),
        message: String::new(),
    };
    assert!(
        resolved.explain(Access::Pull, "app", other).is_ok(),
        "a 500 is not a credentials problem"
    );
    let forbidden = OciDistributionError::ServerError {
        code: 403,
        url: String::new(),
        message: String::new(),
    };
    assert!(is_auth_refusal(&forbidden));
}

#[test]
fn debug_never_shows_secrets() {
    let shown = format!(
        "{:?} {:?}",
        basic("alice", "hunter2"),
        Credentials::Bearer {
            token: "tok123".into()
        }
    );
    assert!(
        shown.contains("alice") && !shown.contains("hunter2") && !shown.contains("tok123"),
        "{shown}"
    );
}
