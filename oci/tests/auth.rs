// SPDX-License-Identifier: Apache-2.0
//! Credentials against a real registry: Debian's docker-registry (CNCF distribution 2.8) with
//! htpasswd basic auth, run as a child process on 127.0.0.1.
//!
//! When docker-registry or htpasswd is missing the test prints `SKIP <test>: <reason>`, and fails
//! instead when LINKGUARD_REQUIRE_INTEROP=1.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a failed setup step is a test failure"
)]

use std::io::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use linkguard_oci::auth::{
    Access, AuthConfig, CredentialSource, CredentialSources, Credentials, PUSH_ENV_PREFIX,
};
use linkguard_oci::transport::{RetryPolicy, TransportConfig};
use oci_client::client::{Config, ImageLayer};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

const USER: &str = "linkguard";
const PASSWORD: &str = "s3cret:with-colon";
const REPO: &str = "linkguard/auth-test";
const LAYER_TYPE: &str = "application/vnd.linkguard.test.layer";

/// A docker-registry child process; killed by pid when dropped.
struct Registry {
    child: Child,
    addr: String,
    dir: tempfile::TempDir,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Registry {
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }
}

fn missing_tool(name: &str, package: &str) -> Option<String> {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(name).is_file()))
        .unwrap_or(false);
    (!found).then(|| format!("{name} is not installed (apt-get install {package})"))
}

/// Starts docker-registry with htpasswd auth, or returns None after printing SKIP.
async fn start_registry(test: &str) -> Option<Registry> {
    start_registry_with(test, None).await
}

/// Starts docker-registry with htpasswd auth, or with `auth_yaml` (the `auth:` section) when given.
async fn start_registry_with(test: &str, auth_yaml: Option<String>) -> Option<Registry> {
    if let Some(reason) = missing_tool("docker-registry", "docker-registry")
        .or_else(|| missing_tool("htpasswd", "apache2-utils"))
    {
        assert!(
            std::env::var("LINKGUARD_REQUIRE_INTEROP").as_deref() != Ok("1"),
            "{test}: {reason}, and LINKGUARD_REQUIRE_INTEROP=1"
        );
        println!("SKIP {test}: {reason}");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    let out = Command::new("htpasswd")
        .args(["-Bbn", USER, PASSWORD])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "htpasswd: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(&htpasswd, &out.stdout).unwrap();

    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {root}\nhttp:\n  addr: {addr}\n{auth}",
            root = dir.path().join("data").display(),
            auth = auth_yaml.unwrap_or_else(|| format!(
                "auth:\n  htpasswd:\n    realm: linkguard-test\n    path: {}\n",
                htpasswd.display()
            )),
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut registry = Registry { child, addr, dir };

    // Bounded readiness loop: /v2/ answers (401 here) once the registry listens.
    let http = reqwest::Client::new();
    for _ in 0..100 {
        if let Some(status) = registry.child.try_wait().unwrap() {
            panic!("docker-registry exited with {status}: {}", registry.log());
        }
        if let Ok(resp) = http
            .get(format!("http://{}/v2/", registry.addr))
            .send()
            .await
        {
            assert_eq!(resp.status().as_u16(), 401, "htpasswd auth must be on");
            return Some(registry);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "docker-registry did not answer on {} within 10 s: {}",
        registry.addr,
        registry.log()
    );
}

fn write_docker_config(path: &Path, registry_key: &str, user: &str, password: &str) {
    let auth = STANDARD.encode(format!("{user}:{password}"));
    let mut file = std::fs::File::create(path).unwrap();
    write!(
        file,
        r#"{{"auths":{{"{registry_key}":{{"auth":"{auth}"}}}},"psFormat":"table"}}"#
    )
    .unwrap();
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn client(registry: &Registry) -> Client {
    Client::new(TransportConfig::default().client_config(&[registry.addr.as_str()]))
}

fn reference(registry: &Registry, tag: &str) -> Reference {
    format!("{}/{REPO}:{tag}", registry.addr).parse().unwrap()
}

async fn push(
    client: &Client,
    reference: &Reference,
    auth: &RegistryAuth,
    data: &[u8],
) -> oci_client::errors::Result<()> {
    let layers = [ImageLayer::new(data.to_vec(), LAYER_TYPE.to_owned(), None)];
    let config = Config::new(
        b"{}".to_vec(),
        "application/vnd.oci.image.config.v1+json".to_owned(),
        None,
    );
    RetryPolicy::default()
        .retry("push test artifact", || {
            client.push(reference, &layers, config.clone(), auth, None)
        })
        .await
        .map(|_| ())
}

#[tokio::test]
async fn docker_config_credentials_push_and_pull_through_htpasswd() {
    let Some(registry) =
        start_registry("docker_config_credentials_push_and_pull_through_htpasswd").await
    else {
        return;
    };
    let creds_dir = tempfile::tempdir().unwrap();
    // Push credentials from a docker config.json written the way `docker login` writes URL keys;
    // pull credentials from a Kubernetes secret file: separate sources, both resolved by host.
    let docker_config = creds_dir.path().join("config.json");
    write_docker_config(
        &docker_config,
        &format!("http://{}/v1/", registry.addr),
        USER,
        PASSWORD,
    );
    let secret = creds_dir.path().join(".dockerconfigjson");
    write_docker_config(&secret, &registry.addr, USER, PASSWORD);
    let auth = AuthConfig {
        pull: CredentialSources {
            kubernetes_secret: Some(secret.clone()),
            ..CredentialSources::default()
        },
        push: CredentialSources {
            docker_config: Some(docker_config.clone()),
            ..CredentialSources::with_env_prefix(PUSH_ENV_PREFIX)
        },
        push_falls_back_to_pull: false,
    };
    let set = auth.resolve(&registry.addr, &no_env).unwrap();
    assert!(
        matches!(&set.push.source, CredentialSource::DockerConfig { path, .. } if *path == docker_config)
    );
    assert!(
        matches!(&set.pull.source, CredentialSource::KubernetesSecret { path, .. } if *path == secret)
    );

    let image = reference(&registry, "v1");
    let payload = b"linkguard auth test payload";
    push(
        &client(&registry),
        &image,
        &set.push.registry_auth(),
        payload,
    )
    .await
    .unwrap_or_else(|e| {
        panic!(
            "push with {}: {e}; registry log: {}",
            set.push,
            registry.log()
        )
    });

    let pulled = client(&registry)
        .pull(&image, &set.pull.registry_auth(), vec![LAYER_TYPE])
        .await
        .unwrap_or_else(|e| panic!("pull with {}: {e}", set.pull));
    assert_eq!(pulled.layers.len(), 1);
    assert_eq!(pulled.layers[0].data.as_ref(), payload);
}

#[tokio::test]
async fn wrong_credentials_error_names_registry_and_source() {
    let Some(registry) = start_registry("wrong_credentials_error_names_registry_and_source").await
    else {
        return;
    };
    let creds_dir = tempfile::tempdir().unwrap();
    let docker_config: PathBuf = creds_dir.path().join("config.json");
    write_docker_config(&docker_config, &registry.addr, USER, "wrong-password");
    let sources = CredentialSources {
        docker_config: Some(docker_config.clone()),
        ..CredentialSources::default()
    };
    let resolved = sources.resolve(&registry.addr, &no_env).unwrap().unwrap();
    assert!(matches!(resolved.credentials, Credentials::Basic { .. }));

    let err = push(
        &client(&registry),
        &reference(&registry, "v1"),
        &resolved.registry_auth(),
        b"x",
    )
    .await
    .expect_err("the registry must refuse a wrong password");
    let err = resolved
        .explain(Access::Push, REPO, err)
        .expect_err("a 401 is a refusal")
        .to_string();
    let expected = format!(
        "push of {addr}/{REPO} failed: basic credentials from {path} (entry \"{addr}\") for {addr} were refused",
        addr = registry.addr,
        path = docker_config.display()
    );
    println!("{err}");
    assert!(err.starts_with(&expected), "{err}");
}

#[tokio::test]
async fn anonymous_access_is_refused_and_says_so() {
    let Some(registry) = start_registry("anonymous_access_is_refused_and_says_so").await else {
        return;
    };
    // Nothing configured anywhere (HOME points at an empty directory): anonymous, and reported so.
    let home = tempfile::tempdir().unwrap();
    let home_str = home.path().to_str().unwrap().to_owned();
    let env = move |name: &str| (name == "HOME").then(|| home_str.clone());
    let set = AuthConfig::default().resolve(&registry.addr, &env).unwrap();
    assert_eq!(set.pull.credentials, Credentials::Anonymous);
    assert_eq!(set.pull.source, CredentialSource::NoneConfigured);

    let err = client(&registry)
        .pull(
            &reference(&registry, "v1"),
            &set.pull.registry_auth(),
            vec![LAYER_TYPE],
        )
        .await
        .err()
        .expect("anonymous pull must be refused");
    let err = set
        .pull
        .explain(Access::Pull, REPO, err)
        .expect_err("a 401 is a refusal")
        .to_string();
    assert!(
        err.contains(&format!(
            "anonymous access (no credentials configured) for {}",
            registry.addr
        )),
        "{err}"
    );
    assert!(err.contains("configure credentials"), "{err}");
}

/// A token server in front of docker-registry (distribution's `auth: token`): checks basic
/// credentials and issues ES256 JWTs whose `x5c` certificate the registry trusts.
struct TokenServer {
    realm: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct TokenState {
    key: p256::ecdsa::SigningKey,
    cert_der_b64: String,
    expected_authorization: String,
}

const SERVICE: &str = "linkguard-test-registry";
const ISSUER: &str = "linkguard-test-issuer";

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

async fn issue_token(
    axum::extract::State(state): axum::extract::State<std::sync::Arc<TokenState>>,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
) -> (axum::http::StatusCode, String) {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use p256::ecdsa::signature::Signer as _;

    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if authorization != state.expected_authorization {
        return (
            axum::http::StatusCode::UNAUTHORIZED,
            r#"{"details":"invalid credentials"}"#.to_owned(),
        );
    }
    // scope=repository:<name>:<actions>, possibly several.
    let access: Vec<serde_json::Value> = uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .filter(|(k, _)| *k == "scope")
        .filter_map(|(_, v)| {
            let scope = percent_decode(v);
            let mut parts = scope.splitn(3, ':');
            let (kind, name, actions) = (parts.next()?.to_owned(), parts.next()?.to_owned(), parts.next()?.to_owned());
            Some(serde_json::json!({"type": kind, "name": name, "actions": actions.split(',').collect::<Vec<_>>()}))
        })
        .collect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = serde_json::json!({"alg": "ES256", "typ": "JWT", "x5c": [state.cert_der_b64]});
    let claims = serde_json::json!({
        "iss": ISSUER, "sub": USER, "aud": SERVICE, "exp": now + 300, "nbf": now - 10, "iat": now - 10,
        "jti": format!("{now}-{}", access.len()), "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature: p256::ecdsa::Signature = state.key.sign(signing_input.as_bytes());
    let jwt = format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(signature.to_bytes())
    );
    (
        axum::http::StatusCode::OK,
        serde_json::json!({"token": jwt, "expires_in": 300}).to_string(),
    )
}

/// Makes a self-signed P-256 certificate, starts the token server, and returns it with the
/// registry's `auth:` section.
async fn start_token_server(dir: &Path) -> (TokenServer, String) {
    use p256::pkcs8::DecodePrivateKey as _;
    let (key, cert) = (dir.join("token-key.pem"), dir.join("token-cert.pem"));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
        ])
        .args(["-subj", "/CN=linkguard-test-token"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl req: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let der = Command::new("openssl")
        .args(["x509", "-outform", "DER", "-in"])
        .arg(&cert)
        .output()
        .unwrap();
    assert!(der.status.success());
    let state = std::sync::Arc::new(TokenState {
        key: p256::ecdsa::SigningKey::from_pkcs8_pem(&std::fs::read_to_string(&key).unwrap())
            .unwrap(),
        cert_der_b64: STANDARD.encode(&der.stdout),
        expected_authorization: format!("Basic {}", STANDARD.encode(format!("{USER}:{PASSWORD}"))),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let realm = format!("http://{}/token", listener.local_addr().unwrap());
    let router = axum::Router::new()
        .route("/token", axum::routing::get(issue_token))
        .with_state(state);
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    let auth_yaml = format!(
        "auth:\n  token:\n    realm: {realm}\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {}\n",
        cert.display()
    );
    (TokenServer { realm, task }, auth_yaml)
}

#[tokio::test]
async fn bearer_token_flow_with_docker_config_credentials() {
    const TEST: &str = "bearer_token_flow_with_docker_config_credentials";
    if let Some(reason) = missing_tool("openssl", "openssl") {
        assert!(
            std::env::var("LINKGUARD_REQUIRE_INTEROP").as_deref() != Ok("1"),
            "{TEST}: {reason}"
        );
        println!("SKIP {TEST}: {reason}");
        return;
    }
    let keys = tempfile::tempdir().unwrap();
    let (token_server, auth_yaml) = start_token_server(keys.path()).await;
    let Some(registry) = start_registry_with(TEST, Some(auth_yaml)).await else {
        return;
    };
    let www_authenticate = reqwest::get(format!("http://{}/v2/", registry.addr))
        .await
        .unwrap();
    let challenge = www_authenticate.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        challenge.starts_with("Bearer ") && challenge.contains(&token_server.realm),
        "{challenge}"
    );

    // Good credentials: oci-client exchanges them for a token at the realm, push and pull work.
    let creds_dir = tempfile::tempdir().unwrap();
    let good = creds_dir.path().join("good.json");
    write_docker_config(&good, &registry.addr, USER, PASSWORD);
    let sources = |path: &Path| CredentialSources {
        docker_config: Some(path.to_owned()),
        ..CredentialSources::default()
    };
    let resolved = sources(&good)
        .resolve(&registry.addr, &no_env)
        .unwrap()
        .unwrap();
    let image = reference(&registry, "bearer");
    push(
        &client(&registry),
        &image,
        &resolved.registry_auth(),
        b"bearer payload",
    )
    .await
    .unwrap_or_else(|e| {
        panic!(
            "push with {resolved}: {e}; registry log: {}",
            registry.log()
        )
    });
    let pulled = client(&registry)
        .pull(&image, &resolved.registry_auth(), vec![LAYER_TYPE])
        .await
        .unwrap_or_else(|e| panic!("pull with {resolved}: {e}"));
    assert_eq!(pulled.layers[0].data.as_ref(), b"bearer payload");

    // Wrong password: the token server refuses it, and the error names registry and source.
    let bad = creds_dir.path().join("bad.json");
    write_docker_config(&bad, &registry.addr, USER, "wrong");
    let resolved = sources(&bad)
        .resolve(&registry.addr, &no_env)
        .unwrap()
        .unwrap();
    let err = client(&registry)
        .pull(&image, &resolved.registry_auth(), vec![LAYER_TYPE])
        .await
        .err()
        .expect("a wrong password must be refused by the token server");
    let err = resolved
        .explain(Access::Pull, REPO, err)
        .expect_err("refusal")
        .to_string();
    assert!(
        err.contains(&format!(
            "basic credentials from {} (entry \"{}\")",
            bad.display(),
            registry.addr
        )),
        "{err}"
    );

    // A `registrytoken` entry is used as a bearer token as is.
    let token: serde_json::Value = reqwest::Client::new()
        .get(format!(
            "{}?scope=repository:{REPO}:pull&service={SERVICE}",
            token_server.realm
        ))
        .basic_auth(USER, Some(PASSWORD))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token_file = creds_dir.path().join("token.json");
    std::fs::write(
        &token_file,
        serde_json::json!({"auths": {registry.addr.clone(): {"registrytoken": token["token"]}}})
            .to_string(),
    )
    .unwrap();
    let resolved = sources(&token_file)
        .resolve(&registry.addr, &no_env)
        .unwrap()
        .unwrap();
    assert!(
        matches!(resolved.credentials, Credentials::Bearer { .. }),
        "{resolved}"
    );
    let pulled = client(&registry)
        .pull(&image, &resolved.registry_auth(), vec![LAYER_TYPE])
        .await
        .unwrap_or_else(|e| panic!("pull with {resolved}: {e}"));
    assert_eq!(pulled.layers[0].data.as_ref(), b"bearer payload");
    drop(token_server);
}
