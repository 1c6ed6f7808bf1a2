// SPDX-License-Identifier: Apache-2.0
//! Debian's docker-registry (CNCF distribution 2.8) on 127.0.0.1 with authentication, for tests:
//! htpasswd basic auth (every valid user may pull and push), or distribution's `auth: token` with a
//! token server that grants each user only the actions it lists (so pull-only credentials exist).
//! Included with `#[path]` by oci/tests/client_auth.rs and tests/registry_auth_cli.rs.
#![allow(dead_code, reason = "shared by two test crates; each uses a part")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test harness: a failed setup step is a failed test"
)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

/// A user of the test registry and the actions (`pull`, `push`) it is granted.
#[derive(Debug, Clone, Copy)]
pub struct User {
    pub name: &'static str,
    pub password: &'static str,
    pub actions: &'static [&'static str],
}

pub const WRITER: User = User {
    name: "writer",
    password: "w-s3cret:colon",
    actions: &["pull", "push"],
};
pub const READER: User = User {
    name: "reader",
    password: "r-s3cret",
    actions: &["pull"],
};

/// docker-registry with auth; the process is killed by pid and the token server stopped on drop.
pub struct AuthRegistry {
    child: Child,
    pub addr: String,
    pub dir: tempfile::TempDir,
    token_server: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for AuthRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(task) = &self.token_server {
            task.abort();
        }
    }
}

impl AuthRegistry {
    /// What docker-registry logged, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }
}

/// Why the auth registries cannot run here (a missing tool), or `None`.
pub fn missing_tools(token: bool) -> Option<String> {
    let mut tools = vec![
        ("docker-registry", "docker-registry"),
        ("htpasswd", "apache2-utils"),
    ];
    if token {
        tools.push(("openssl", "openssl"));
    }
    tools.into_iter().find_map(|(name, package)| {
        let found = std::env::var_os("PATH")
            .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(name).is_file()));
        (!found).then(|| format!("{name} is not installed (apt-get install {package})"))
    })
}

/// `{"auths": {registry: {"auth": base64(user:password)}}}` at `path`.
pub fn write_docker_config(path: &Path, registry: &str, user: &str, password: &str) {
    let auth = STANDARD.encode(format!("{user}:{password}"));
    std::fs::write(
        path,
        serde_json::json!({"auths": {registry: {"auth": auth}}}).to_string(),
    )
    .unwrap();
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// docker-registry with htpasswd basic auth for `users`.
pub async fn start_htpasswd(users: &[User]) -> AuthRegistry {
    let dir = tempfile::tempdir().unwrap();
    let mut htpasswd = Vec::new();
    for user in users {
        let out = Command::new("htpasswd")
            .args(["-Bbn", user.name, user.password])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "htpasswd: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        htpasswd.extend_from_slice(out.stdout.trim_ascii_end());
        htpasswd.push(b'\n');
    }
    let path = dir.path().join("htpasswd");
    std::fs::write(&path, htpasswd).unwrap();
    let auth = format!(
        "auth:\n  htpasswd:\n    realm: linkguard-test\n    path: {}\n",
        path.display()
    );
    start(dir, &auth, None).await
}

/// docker-registry with `auth: token`, and a token server on 127.0.0.1 that grants each of
/// `users` the intersection of what it asks for and its `actions` (anonymous requests get no
/// access at all).
pub async fn start_token(users: &[User]) -> AuthRegistry {
    use p256::pkcs8::DecodePrivateKey as _;
    let dir = tempfile::tempdir().unwrap();
    let (key, cert) = (dir.path().join("token.key"), dir.path().join("token.crt"));
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
        .args(["-subj", "/CN=linkguard-test-token", "-keyout"])
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
    let state = Arc::new(TokenState {
        key: p256::ecdsa::SigningKey::from_pkcs8_pem(&std::fs::read_to_string(&key).unwrap())
            .unwrap(),
        cert_der_b64: STANDARD.encode(&der.stdout),
        users: users.to_vec(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let realm = format!("http://{}/token", listener.local_addr().unwrap());
    let router = axum::Router::new()
        .route("/token", axum::routing::get(issue_token))
        .with_state(state);
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    let auth = format!(
        "auth:\n  token:\n    realm: {realm}\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {}\n",
        cert.display()
    );
    start(dir, &auth, Some(task)).await
}

async fn start(
    dir: tempfile::TempDir,
    auth: &str,
    token_server: Option<tokio::task::JoinHandle<()>>,
) -> AuthRegistry {
    let addr = format!("127.0.0.1:{}", free_port());
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
             http:\n  addr: {addr}\n{auth}",
            dir.path().join("data").display()
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
    let mut registry = AuthRegistry {
        child,
        addr,
        dir,
        token_server,
    };
    // Bounded readiness loop: /v2/ answers 401 once the registry listens.
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
            assert_eq!(resp.status().as_u16(), 401, "auth must be on");
            return registry;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "docker-registry did not answer on {} within 10 s: {}",
        registry.addr,
        registry.log()
    );
}

const SERVICE: &str = "linkguard-test-registry";
const ISSUER: &str = "linkguard-test-issuer";

struct TokenState {
    key: p256::ecdsa::SigningKey,
    cert_der_b64: String,
    users: Vec<User>,
}

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

/// The user named by a `Basic` authorization with the right password; `Err` for wrong ones,
/// `Ok(None)` for anonymous requests.
fn authenticate(state: &TokenState, authorization: Option<&str>) -> Result<Option<User>, ()> {
    let Some(encoded) = authorization else {
        return Ok(None);
    };
    let decoded = encoded
        .strip_prefix("Basic ")
        .and_then(|b| STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or(())?;
    let (name, password) = decoded.split_once(':').ok_or(())?;
    state
        .users
        .iter()
        .find(|u| u.name == name && u.password == password)
        .copied()
        .map(Some)
        .ok_or(())
}

async fn issue_token(
    axum::extract::State(state): axum::extract::State<Arc<TokenState>>,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
) -> (axum::http::StatusCode, String) {
    use p256::ecdsa::signature::Signer as _;
    let authorization = headers.get("authorization").and_then(|v| v.to_str().ok());
    let Ok(user) = authenticate(&state, authorization) else {
        return (
            axum::http::StatusCode::UNAUTHORIZED,
            r#"{"details":"invalid credentials"}"#.to_owned(),
        );
    };
    let granted = |actions: &str| -> Vec<String> {
        actions
            .split(',')
            .filter(|a| user.is_some_and(|u| u.actions.contains(a)))
            .map(str::to_owned)
            .collect()
    };
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
            let (kind, name, actions) = (parts.next()?, parts.next()?, parts.next()?);
            Some(serde_json::json!({"type": kind, "name": name, "actions": granted(actions)}))
        })
        .collect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = serde_json::json!({"alg": "ES256", "typ": "JWT", "x5c": [state.cert_der_b64]});
    let claims = serde_json::json!({
        "iss": ISSUER, "sub": user.map_or("anonymous", |u| u.name), "aud": SERVICE,
        "exp": now + 300, "nbf": now - 10, "iat": now - 10,
        "jti": format!("{now}-{}", fastrand_u64()), "access": access,
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

/// A unique-enough token id without another dependency.
fn fastrand_u64() -> u64 {
    use std::hash::{BuildHasher as _, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}
