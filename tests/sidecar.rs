// SPDX-License-Identifier: Apache-2.0
//! `linkguard sidecar` as users run it: a real registry (ferro-oci-server in-process), a real image and a
//! signed function map pushed to it, a C target probed with real uprobes (root needed; the same privilege
//! gate as tests/observe.rs), reports verified with `linkguard reports verify`. Also the failures a user
//! meets first: a bad config (`--check`, exit 2 naming the key), an unreadable signing key, an untrusted map.
//! Every process started here is killed by pid when dropped; every wait is bounded.
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "tests: a failed step is a test failure"
)]

#[path = "observe_harness.rs"]
mod harness;
#[path = "../oci/tests/support/registries.rs"]
mod registries;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use linkguard_integration_tests::{linkguard, linkguard_bin};
use linkguard_oci::{Digest, OCI_MANIFEST, RegistryAuth};
use reqwest::header::HeaderValue;
use serde_json::Value;

use harness::{ElfFacts, MapCall, TIMEOUT, Target, elf_facts, gcc, privileged, write_map};
use registries::start_ferro;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Pushes a small OCI image tagged `v1` to `<addr>/<repo>`; returns `addr/repo:v1` and its digest.
async fn push_image(addr: &str, repo: &str) -> (String, Digest) {
    let oci = oci_client::Client::new(oci_client::client::ClientConfig {
        protocol: oci_client::client::ClientProtocol::Http,
        ..Default::default()
    });
    let r = oci_client::Reference::with_tag(addr.to_owned(), repo.to_owned(), "v1".into());
    oci.store_auth_if_needed(addr, &RegistryAuth::Anonymous)
        .await;
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let layer = format!("not really a tarball: {repo}").into_bytes();
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
                    "digest": Digest::of(&layer).as_str(), "size": layer.len()}],
    });
    let body = serde_json::to_vec(&manifest).unwrap();
    let digest = Digest::of(&body);
    oci.push_manifest_raw(&r, body, HeaderValue::from_static(OCI_MANIFEST))
        .await
        .unwrap();
    (format!("{addr}/{repo}:v1"), digest)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[track_caller]
fn ok(args: &[&str]) -> Output {
    let out = linkguard(args);
    assert!(
        out.status.success(),
        "linkguard {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    out
}

/// A key pair in `dir`: (private, public).
fn keygen(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let key = dir.join(format!("{name}.pem"));
    let public = dir.join(format!("{name}.pub"));
    ok(&[
        "attest",
        "keygen",
        "--output-key",
        s(&key),
        "--output-pub",
        s(&public),
    ]);
    (key, public)
}

/// The test map of the target (one path per function), bound to the image's digest.
fn bound_map(dir: &Path, app: &Path, facts: &ElfFacts, addr: &str, digest: &Digest) -> PathBuf {
    let calls: Vec<MapCall> = ["lg_hot", "lg_cold", "lg_never"]
        .iter()
        .map(|symbol| MapCall::new(symbol, app, facts))
        .collect();
    let path = write_map(dir, app, &calls);
    let mut map: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    map["subject"] = serde_json::json!({
        "name": format!("{addr}/app"),
        "purl": format!("pkg:oci/app@{digest}"),
        "digest": { "sha256": digest.hex() },
    });
    std::fs::write(&path, serde_json::to_vec_pretty(&map).unwrap()).unwrap();
    path
}

/// A free port on 127.0.0.1 (bound and released: the sidecar binds it next).
fn free_addr() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

/// A plain HTTP/1.1 GET: (status, body); `None` when nothing listens yet.
fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split(' ').nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((status, body))
}

/// The value of an unlabelled metric in Prometheus text.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// A running `linkguard --log-format json sidecar --config FILE` with its JSON log events collected.
struct Sidecar {
    child: Child,
    events: Arc<Mutex<Vec<Value>>>,
    stderr: Arc<Mutex<String>>,
    listen: String,
}

impl Sidecar {
    fn start(config: &Path, listen: &str) -> Self {
        let mut command = Command::new(linkguard_bin());
        command
            .args(["--log-format", "json", "sidecar", "--config"])
            .arg(config);
        Self::spawn(command, listen)
    }

    fn spawn(mut command: Command, listen: &str) -> Self {
        let mut child = command
            .env_remove("LINKGUARD_LOG")
            .env_remove("LINKGUARD_APP_IMAGE")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let events = Arc::new(Mutex::new(Vec::new()));
        let text = Arc::new(Mutex::new(String::new()));
        let (e, t) = (Arc::clone(&events), Arc::clone(&text));
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(event) = serde_json::from_str::<Value>(&line) {
                    e.lock().unwrap().push(event);
                }
                let mut text = t.lock().unwrap();
                text.push_str(&line);
                text.push('\n');
            }
        });
        Self {
            child,
            events,
            stderr: text,
            listen: listen.to_owned(),
        }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn events(&self) -> Vec<Value> {
        self.events.lock().unwrap().clone()
    }

    /// Waits for a log event (from index `from` on) whose `fields` satisfy `matches`; returns its index.
    fn wait_for(
        &mut self,
        from: usize,
        what: &str,
        matches: impl Fn(&Value) -> bool,
    ) -> (usize, Value) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let found = self
                .events()
                .into_iter()
                .enumerate()
                .skip(from)
                .find(|(_, e)| matches(&e["fields"]))
                .map(|(i, e)| (i, e["fields"].clone()));
            if let Some(found) = found {
                return found;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "the sidecar exited ({status}) before {what}; stderr:\n{}",
                    self.stderr()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no {what} within {TIMEOUT:?}; stderr:\n{}",
                self.stderr()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn get(&self, path: &str) -> Option<(u16, String)> {
        http_get(&self.listen, path)
    }

    /// Waits until `path` answers `status`; returns the body.
    fn wait_http(&mut self, path: &str, status: u16) -> String {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some((code, body)) = self.get(path)
                && code == status
            {
                return body;
            }
            if let Some(exit) = self.child.try_wait().unwrap() {
                panic!(
                    "the sidecar exited ({exit}) before {path} answered {status}; stderr:\n{}",
                    self.stderr()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{path} did not answer {status} within {TIMEOUT:?} (last: {:?}); stderr:\n{}",
                self.get(path),
                self.stderr()
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the metric `name` has `value`; returns the metrics text.
    fn wait_metric(&mut self, name: &str, value: f64) -> String {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let text = self.wait_http("/metrics", 200);
            if metric(&text, name) == Some(value) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "{name} is not {value} within {TIMEOUT:?}: {text}"
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until `path` answers at all; returns the status and body.
    fn wait_http_any(&mut self, path: &str) -> (u16, String) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(answer) = self.get(path) {
                return answer;
            }
            assert!(
                Instant::now() < deadline,
                "{path} did not answer within {TIMEOUT:?}; stderr:\n{}",
                self.stderr()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Resident set size of the sidecar, in KiB.
    fn rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// SIGTERM, then waits (bounded) for the exit.
    fn terminate(&mut self) -> ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        self.wait_exit()
    }

    fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Let the reader thread take the last lines.
                thread::sleep(Duration::from_millis(200));
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the sidecar did not exit within {TIMEOUT:?}; stderr:\n{}",
                self.stderr()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A config file for the sidecar; `extra` is appended (YAML).
fn write_config(dir: &Path, image: &str, key: &Path, listen: &str, extra: &str) -> PathBuf {
    let path = dir.join("linkguard.yaml");
    let state = dir.join("state");
    std::fs::write(
        &path,
        format!(
            "image: {image}\n\
             pod: {{ name: web-0, namespace: shop, container: app }}\n\
             probe: {{ pollIntervalMs: 100 }}\n\
             observations: {{ directory: {obs}, flushIntervalSeconds: 1 }}\n\
             verify: {{ intervalSeconds: 2 }}\n\
             signing: {{ key: {key} }}\n\
             spool: {{ directory: {spool} }}\n\
             shutdown: {{ deadlineSeconds: 10 }}\n\
             http: {{ listen: \"{listen}\" }}\n\
             {extra}",
            obs = state.join("observations").display(),
            spool = state.join("spool").display(),
            key = key.display(),
        ),
    )
    .unwrap();
    path
}

/// The statement inside a Sigstore bundle (not verified: `reports verify` does that).
fn statement_of(bundle: &[u8]) -> Value {
    let bundle: Value = serde_json::from_slice(bundle).unwrap();
    let payload = STANDARD
        .decode(bundle["dsseEnvelope"]["payload"].as_str().unwrap())
        .unwrap();
    serde_json::from_slice(&payload).unwrap()
}

fn path_status(statement: &Value, symbol: &str) -> String {
    statement["predicate"]["paths"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"].as_str().unwrap().ends_with(&format!(":{symbol}")))
        .map(|p| p["status"].as_str().unwrap().to_owned())
        .unwrap_or_else(|| panic!("no path of {symbol} in {statement}"))
}

#[test]
fn the_sidecar_probes_the_app_and_pushes_signed_reports_until_sigterm() {
    let test = "the_sidecar_probes_the_app_and_pushes_signed_reports_until_sigterm";
    if !privileged(test) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let app = gcc("observe_target.c", &dir.path().join("app"), &[]);
    let facts = elf_facts(&app);
    let rt = runtime();
    let registry = rt.block_on(start_ferro());
    let (image, digest) = rt.block_on(push_image(&registry.addr, "app"));
    let map = bound_map(dir.path(), &app, &facts, &registry.addr, &digest);
    let (sign_key, sign_pub) = keygen(dir.path(), "signing");
    let (map_key, map_pub) = keygen(dir.path(), "map");
    ok(&[
        "map",
        "push",
        "--image",
        &image,
        "--key",
        s(&map_key),
        s(&map),
    ]);

    let mut target = Target::program(&app);
    let listen = free_addr();
    let config = write_config(
        dir.path(),
        &image,
        &sign_key,
        &listen,
        &format!("functionMap: {{ trustedKeys: [{}] }}\n", map_pub.display()),
    );
    let mut sidecar = Sidecar::start(&config, &listen);

    // Ready only once the target's functions are probed.
    let (attached_at, _) = sidecar.wait_for(0, "the attach", |f| {
        f["message"] == "attached" && f["pid"] == target.pid
    });
    sidecar.wait_http("/readyz", 200);
    let loaded = sidecar
        .events()
        .iter()
        .position(|e| e["fields"]["message"] == "function map loaded")
        .unwrap();
    assert!(
        loaded < attached_at,
        "the map is loaded before anything is probed"
    );
    let metrics = sidecar.get("/metrics").unwrap().1;
    let attached = metric(&metrics, "linkguard_probes_attached").unwrap();
    assert!(attached >= 3.0, "3 functions of one process: {metrics}");
    assert_eq!(metric(&metrics, "linkguard_ready"), Some(1.0), "{metrics}");

    // Calls after the attach; the next report pushed after them shows them.
    target.hot(1000);
    target.cmd("c");
    let called = sidecar.events().len();
    let (_, signed) = sidecar.wait_for(called, "a report signed after the calls", |f| {
        f["message"] == "report signed" && f["observed"] == 2
    });
    let sequence = signed["sequence"].as_u64().unwrap();
    sidecar.wait_for(called, "its push", |f| {
        f["message"] == "report pushed" && f["sequence"] == sequence
    });
    let rss = sidecar.rss_kib();

    // A client of the registry finds it, checks the signature and that it is about this image.
    let out = ok(&[
        "reports",
        "verify",
        "--image",
        &image,
        "--key",
        s(&sign_pub),
    ]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.contains(&digest.to_string()), "{text}");
    let bundle = dir.path().join("report.json");
    ok(&[
        "reports",
        "pull",
        "--image",
        &image,
        "--latest",
        "--output",
        s(&bundle),
    ]);
    let statement = statement_of(&std::fs::read(&bundle).unwrap());
    assert_eq!(statement["subject"][0]["digest"]["sha256"], digest.hex());
    assert!(statement["predicate"]["sequence"].as_u64().unwrap() >= sequence);
    assert_eq!(statement["predicate"]["pod"]["name"], "web-0");
    assert_eq!(statement["predicate"]["pod"]["namespace"], "shop");
    assert_eq!(path_status(&statement, "lg_hot"), "observed");
    assert_eq!(path_status(&statement, "lg_cold"), "observed");
    assert_eq!(path_status(&statement, "lg_never"), "unobserved");
    // /report/latest serves a signed report of the same chain.
    let (code, latest) = sidecar.get("/report/latest").unwrap();
    assert_eq!(code, 200);
    assert_eq!(
        statement_of(latest.as_bytes())["subject"],
        statement["subject"]
    );

    // SIGTERM: a final report, pushed, exit 0.
    let before_signal = sidecar.events().len();
    let status = sidecar.terminate();
    assert!(status.success(), "{status}; stderr:\n{}", sidecar.stderr());
    let events: Vec<Value> = sidecar.events()[before_signal..]
        .iter()
        .map(|e| e["fields"].clone())
        .collect();
    let last = events
        .iter()
        .filter(|f| f["message"] == "report signed")
        .filter_map(|f| f["sequence"].as_u64())
        .max()
        .unwrap_or_else(|| panic!("no final report; stderr:\n{}", sidecar.stderr()));
    assert!(
        events
            .iter()
            .any(|f| f["message"] == "report pushed" && f["sequence"] == last),
        "the final report {last} was not pushed; stderr:\n{}",
        sidecar.stderr()
    );
    let list = ok(&["reports", "list", "--image", &image, "--format", "json"]);
    let listed: Vec<Value> = serde_json::from_slice(&list.stdout).unwrap();
    let pushed: Vec<u64> = sidecar
        .events()
        .iter()
        .filter(|e| e["fields"]["message"] == "report pushed")
        .filter_map(|e| e["fields"]["sequence"].as_u64())
        .collect();
    assert_eq!(
        pushed,
        (1..=last).collect::<Vec<_>>(),
        "pushed in chain order"
    );
    assert_eq!(listed.len(), pushed.len(), "{listed:?}");
    let latest_file = dir
        .path()
        .join("state")
        .join("observations")
        .join("latest-report.json");
    assert_eq!(
        statement_of(&std::fs::read(&latest_file).unwrap())["predicate"]["sequence"],
        last
    );

    // Measured, not asserted (PLAN: no timed assertions): verify tick -> signed -> in the registry.
    let timings: Vec<String> = sidecar
        .events()
        .iter()
        .map(|e| &e["fields"])
        .filter(|f| f["message"] == "report signed" || f["message"] == "report pushed")
        .map(|f| {
            format!(
                "{} {}: tick_to_signed_ms={} signed_to_pushed_ms={}",
                f["message"], f["sequence"], f["tick_to_signed_ms"], f["signed_to_pushed_ms"]
            )
        })
        .collect();
    eprintln!(
        "sidecar RSS {rss} KiB with a 3-function map\n{}",
        timings.join("\n")
    );

    // A restart continues the chain from the spool directory and says so; the chain verifies.
    let mut restarted = Sidecar::start(&config, &listen);
    let (code, _) = restarted.wait_http_any("/report/latest");
    assert_eq!(
        code, 200,
        "the previous run's latest report is served at once"
    );
    let (_, resumed) = restarted.wait_for(0, "the first report after the restart", |f| {
        f["message"] == "report pushed"
    });
    assert_eq!(resumed["sequence"].as_u64(), Some(last + 1), "{resumed}");
    ok(&[
        "reports",
        "pull",
        "--image",
        &image,
        "--latest",
        "--output",
        s(&bundle),
    ]);
    let statement = statement_of(&std::fs::read(&bundle).unwrap());
    assert_eq!(statement["predicate"]["chainResumed"], true, "{statement}");
    assert!(restarted.terminate().success());
    ok(&[
        "reports",
        "verify-chain",
        "--image",
        &image,
        "--key",
        s(&sign_pub),
        "--pod",
        "shop/web-0",
    ]);
    drop(target);
    drop(registry);
}

#[test]
fn check_validates_the_config_and_names_the_bad_key() {
    let dir = tempfile::tempdir().unwrap();
    let example = linkguard_integration_tests::workspace_root().join("examples/linkguard.yaml");
    let out = ok(&["sidecar", "--config", s(&example), "--check"]);
    let effective = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(effective.contains("intervalSeconds: 300"), "{effective}");
    // The flag overrides the file.
    let out = ok(&[
        "sidecar",
        "--config",
        s(&example),
        "--check",
        "--image",
        "127.0.0.1:5000/x:y",
    ]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("image: 127.0.0.1:5000/x:y"));

    let cases = [
        (
            "verify: { intervalSeconds: 0 }\n",
            "verify.intervalSeconds: must be > 0",
        ),
        (
            "probe: { mode: fast }\n",
            "probe.mode: unknown variant `fast`",
        ),
        (
            "observations: { flushIntervals: 3 }\n",
            "observations: unknown field `flushIntervals`",
        ),
        ("http: { listen: nowhere }\n", "http.listen"),
        (
            "functionMap: { pullRetrySeconds: 0 }\n",
            "functionMap.pullRetrySeconds: must be > 0",
        ),
    ];
    for (yaml, expected) in cases {
        let path = dir.path().join("bad.yaml");
        std::fs::write(&path, format!("image: 127.0.0.1:5000/app:v1\n{yaml}")).unwrap();
        let out = linkguard(&["sidecar", "--config", s(&path), "--check"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{yaml}: {stderr}");
        assert!(
            stderr.contains(expected),
            "{yaml}: {expected:?} not in {stderr}"
        );
    }
    // No image anywhere.
    let path = dir.path().join("empty.yaml");
    std::fs::write(&path, "").unwrap();
    let out = Command::new(linkguard_bin())
        .args(["sidecar", "--config", s(&path), "--check"])
        .env_remove("LINKGUARD_APP_IMAGE")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("image: required"));
}

#[test]
fn an_unreadable_signing_key_stops_the_sidecar_with_status_2() {
    let dir = tempfile::tempdir().unwrap();
    let listen = free_addr();
    let missing = dir.path().join("no-such-key.pem");
    let config = write_config(dir.path(), "127.0.0.1:5000/app:v1", &missing, &listen, "");
    let out = Command::new(linkguard_bin())
        .args(["sidecar", "--config", s(&config)])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("signing.key") && stderr.contains("no-such-key.pem"),
        "{stderr}"
    );
}

#[test]
fn an_unsigned_map_is_refused_when_keys_are_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let registry = rt.block_on(start_ferro());
    let (image, digest) = rt.block_on(push_image(&registry.addr, "app"));
    let facts = ElfFacts {
        build_id: "ab".repeat(20),
        offsets: Default::default(),
        has_symtab: true,
    };
    let map = bound_map(
        dir.path(),
        Path::new("/app"),
        &facts,
        &registry.addr,
        &digest,
    );
    ok(&["map", "push", "--image", &image, s(&map)]);
    let (sign_key, _) = keygen(dir.path(), "signing");
    let (_, map_pub) = keygen(dir.path(), "map");
    let listen = free_addr();
    let config = write_config(
        dir.path(),
        &image,
        &sign_key,
        &listen,
        &format!(
            "functionMap: {{ trustedKeys: [{}], pullRetrySeconds: 1 }}\n",
            map_pub.display()
        ),
    );
    let mut sidecar = Sidecar::start(&config, &listen);
    let (_, refusal) = sidecar.wait_for(0, "the refusal", |f| {
        f["condition"] == "function-map-unavailable"
    });
    assert!(
        refusal["message"].as_str().unwrap().contains("not signed"),
        "{refusal}"
    );
    let body = sidecar.wait_http("/readyz", 503);
    assert!(body.contains("not signed"), "{body}");
    // Retried, but logged once.
    thread::sleep(Duration::from_secs(3));
    let refusals = sidecar
        .events()
        .iter()
        .filter(|e| e["fields"]["condition"] == "function-map-unavailable")
        .count();
    assert_eq!(refusals, 1, "{}", sidecar.stderr());
    let metrics = sidecar.get("/metrics").unwrap().1;
    assert_eq!(metric(&metrics, "linkguard_ready"), Some(0.0), "{metrics}");
    let status = sidecar.terminate();
    assert!(status.success(), "{status}: {}", sidecar.stderr());
    drop(registry);
}

#[test]
fn a_full_observation_disk_is_logged_once_and_nothing_counted_is_lost() {
    let test = "a_full_observation_disk_is_logged_once_and_nothing_counted_is_lost";
    if !privileged(test) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let app = gcc("observe_target.c", &dir.path().join("app"), &[]);
    let facts = elf_facts(&app);
    let digest = Digest::of(b"not pushed anywhere");
    let map = bound_map(dir.path(), &app, &facts, "127.0.0.1:9", &digest);
    let (sign_key, _) = keygen(dir.path(), "signing");
    let mut target = Target::program(&app);
    let listen = free_addr();
    let obs = dir.path().join("state").join("observations");
    std::fs::create_dir_all(&obs).unwrap();
    let config = write_config(
        dir.path(),
        &format!("127.0.0.1:9/app@{digest}"),
        &sign_key,
        &listen,
        &format!(
            "functionMap: {{ file: {} }}\nregistry: {{ pushReports: false }}\n",
            map.display()
        ),
    );
    // The observations live on a 64 KiB tmpfs mounted in the sidecar's own mount namespace (it goes away
    // with the sidecar); the test fills it through /proc/<pid>/root.
    let mut command = Command::new("unshare");
    command
        .args(["-m", "--propagation", "private", "sh", "-c"])
        .arg(r#"mount -t tmpfs -o size=64k tmpfs "$1" && shift && exec "$@""#)
        .args(["sh", s(&obs)])
        .arg(linkguard_bin())
        .args(["--log-format", "json", "sidecar", "--config"])
        .arg(&config);
    let mut sidecar = Sidecar::spawn(command, &listen);
    sidecar.wait_http("/readyz", 200);
    let filler = PathBuf::from(format!("/proc/{}/root", sidecar.child.id()))
        .join(obs.strip_prefix("/").unwrap())
        .join("filler");
    {
        let mut file = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 4096];
        while file
            .write_all(&chunk)
            .and_then(|()| file.sync_all())
            .is_ok()
        {}
    }
    let full_at = sidecar.events().len();
    target.cmd("c");
    let (_, failing) = sidecar.wait_for(full_at, "the write failure", |f| {
        f["condition"] == "observation-write-failing"
    });
    assert!(
        failing["message"]
            .as_str()
            .unwrap()
            .contains("No space left"),
        "{failing}"
    );
    let metrics = sidecar.wait_metric("linkguard_observation_buffer_full", 1.0);
    assert_eq!(
        metric(&metrics, "linkguard_ready"),
        Some(1.0),
        "the probes stay: {metrics}"
    );
    // Several flushes fail; the condition is logged once.
    thread::sleep(Duration::from_secs(3));
    let episodes = sidecar.events()[full_at..]
        .iter()
        .filter(|e| e["fields"]["condition"] == "observation-write-failing")
        .count();
    assert_eq!(episodes, 1, "{}", sidecar.stderr());

    std::fs::remove_file(&filler).unwrap();
    let freed = sidecar.events().len();
    sidecar.wait_for(freed, "the recovery", |f| {
        f["message"] == "observation-write-failing resolved"
    });
    sidecar.wait_metric("linkguard_observation_buffer_full", 0.0);
    // The call counted while the disk was full reaches a report.
    let (_, report) = sidecar.wait_for(freed, "a report with the call", |f| {
        f["message"] == "report signed" && f["observed"] == 1
    });
    assert_eq!(report["expected"], 3, "{report}");
    assert!(sidecar.terminate().success());
}
