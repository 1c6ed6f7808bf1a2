// SPDX-License-Identifier: Apache-2.0
//! Unit tests of the sidecar configuration: parsing, defaults, precedence, every validation error.

use super::*;

fn no_env(_: &str) -> Option<String> {
    None
}

fn parse(yaml: &str) -> Config {
    Config::from_yaml(yaml, "test.yaml").unwrap()
}

fn issues(yaml: &str) -> Vec<String> {
    match parse(yaml).validate() {
        Ok(_) => Vec::new(),
        Err(ConfigError::Invalid { issues }) => issues.iter().map(Issue::to_string).collect(),
        Err(other) => panic!("{other}"),
    }
}

fn parse_error(yaml: &str) -> String {
    Config::from_yaml(yaml, "test.yaml")
        .unwrap_err()
        .to_string()
}

const IMAGE: &str = "image: 127.0.0.1:5000/team/app:v1\n";

#[test]
fn defaults_are_the_documented_ones() {
    let c = Config::default();
    assert_eq!(c.image, None);
    assert_eq!(c.pod, PodConfig::default());
    assert_eq!(c.function_map.file, None);
    assert!(c.function_map.trusted_keys.is_empty());
    assert_eq!(c.function_map.pull_retry_seconds, 30);
    assert_eq!(c.probe.mode, ProbeMode::Coverage);
    assert_eq!(c.probe.max_probes, 10_000);
    assert_eq!(c.probe.attach_timeout_seconds, 30);
    assert_eq!(c.probe.poll_interval_ms, 200);
    assert_eq!(c.probe.cgroup, None);
    assert_eq!(
        c.observations.directory,
        Path::new("/var/lib/linkguard/observations")
    );
    assert_eq!(c.observations.format, ObservationFormat::Ndjson);
    assert_eq!(c.observations.flush_interval_seconds, 10);
    assert_eq!(c.observations.rotate_size_bytes, 67_108_864);
    assert_eq!(c.observations.retain, 5);
    assert_eq!(c.verify.interval_seconds, 300);
    assert_eq!(c.verify.window_seconds, None);
    assert_eq!(c.signing.key, Path::new("/etc/linkguard/signing/key.pem"));
    assert_eq!(c.signing.password_env, "LINKGUARD_KEY_PASSWORD");
    assert!(c.registry.push_reports);
    assert!(c.registry.insecure.is_empty());
    assert_eq!(c.registry.docker_config, None);
    assert_eq!(c.registry.push_docker_config, None);
    assert_eq!(c.registry.timeout_seconds, 30);
    assert_eq!(c.spool.directory, Path::new("/var/lib/linkguard/spool"));
    assert_eq!(c.spool.max_bytes, 268_435_456);
    assert_eq!(c.shutdown.deadline_seconds, 20);
    assert_eq!(c.http.listen, "0.0.0.0:9464");
    // An empty file and a file with only the image are the defaults too.
    assert_eq!(parse(""), Config::default());
    assert_eq!(parse("# nothing\n"), Config::default());
    assert_eq!(
        parse(IMAGE),
        Config {
            image: Some("127.0.0.1:5000/team/app:v1".into()),
            ..Config::default()
        }
    );
}

#[test]
fn the_example_file_lists_every_default() {
    // examples/linkguard.yaml documents every key with its default value (only the image is set).
    let example = include_str!("../../../examples/linkguard.yaml");
    let parsed = parse(example);
    assert_eq!(
        parsed,
        Config {
            image: Some("registry.example.com/team/app:1.4.2".into()),
            ..Config::default()
        }
    );
    let keys = |v: &serde_yaml_ng::Value| -> Vec<String> {
        let mut out = Vec::new();
        if let serde_yaml_ng::Value::Mapping(m) = v {
            for (k, v) in m {
                let k = k.as_str().unwrap_or_default().to_owned();
                match v {
                    serde_yaml_ng::Value::Mapping(inner) => {
                        out.extend(
                            inner
                                .keys()
                                .map(|i| format!("{k}.{}", i.as_str().unwrap_or_default())),
                        );
                    }
                    _ => out.push(k),
                }
            }
        }
        out
    };
    let in_example = keys(&serde_yaml_ng::from_str(example).unwrap());
    let all = keys(&serde_yaml_ng::to_value(Config::default()).unwrap());
    assert_eq!(in_example, all, "every key, in the order of the struct");
}

#[test]
fn every_key_parses() {
    let c = parse(
        r#"
image: registry.example.com/team/app:1.4.2
pod: { name: web-0, namespace: shop, node: n1, container: app }
functionMap:
  file: /maps/app.json
  trustedKeys: [/keys/a.pub]
  pullRetrySeconds: 5
probe: { mode: count, maxProbes: 100, attachTimeoutSeconds: 3, pollIntervalMs: 50, cgroup: abc }
observations:
  directory: /obs
  format: ndjson-gzip
  flushIntervalSeconds: 2
  rotateSizeBytes: 1000
  retain: 0
verify: { intervalSeconds: 3, windowSeconds: 60 }
signing: { key: /k.pem, passwordEnv: PW }
registry:
  pushReports: false
  insecure: [registry.local:5000]
  dockerConfig: /d.json
  pushDockerConfig: /p.json
  timeoutSeconds: 7
spool: { directory: /spool, maxBytes: 10 }
shutdown: { deadlineSeconds: 4 }
http: { listen: "127.0.0.1:1234" }
"#,
    );
    assert_eq!(c.pod.container.as_deref(), Some("app"));
    assert_eq!(c.function_map.trusted_keys, ["/keys/a.pub"]);
    assert_eq!(c.probe.mode, ProbeMode::Count);
    assert_eq!(c.observations.format, ObservationFormat::NdjsonGzip);
    assert_eq!(
        c.observations.current_file(),
        Path::new("/obs/observations.ndjson.gz")
    );
    assert_eq!(c.observations.retain, 0);
    assert_eq!(c.verify.window_seconds, Some(60));
    assert!(!c.registry.push_reports);
    let v = c.validate().unwrap();
    assert_eq!(v.listen, "127.0.0.1:1234".parse().unwrap());
    assert_eq!(v.image.registry(), "registry.example.com");
    assert!(v.insecure.allows_plain_http("registry.local:5000"));
    assert_eq!(v.trusted_keys, [TrustedKey::File("/keys/a.pub".into())]);
    assert_eq!(v.verify_interval(), Duration::from_secs(3));
}

#[test]
fn the_effective_config_round_trips_through_yaml() {
    let mut c = parse(IMAGE);
    c.pod.name = Some("web-0".into());
    let again = parse(&c.to_yaml());
    assert_eq!(again, c);
    assert!(
        c.to_yaml().contains("intervalSeconds: 300"),
        "{}",
        c.to_yaml()
    );
}

#[test]
fn env_overrides_the_file_and_flags_override_both() {
    let mut c = parse(
        "image: 127.0.0.1:5000/a:file\npod: { name: from-file, node: n-file }\nhttp: { listen: '127.0.0.1:1' }\n",
    );
    let env = |name: &str| match name {
        ENV_IMAGE => Some("127.0.0.1:5000/a:env".to_owned()),
        ENV_POD_NAME => Some("web-0".to_owned()),
        ENV_POD_NAMESPACE => Some("shop".to_owned()),
        ENV_CONTAINER_NAME => Some("app".to_owned()),
        // Empty: as if unset (the file's value stays).
        ENV_NODE_NAME => Some(String::new()),
        _ => None,
    };
    c.apply_env(&env);
    assert_eq!(c.image.as_deref(), Some("127.0.0.1:5000/a:env"));
    assert_eq!(
        c.pod,
        PodConfig {
            name: Some("web-0".into()),
            namespace: Some("shop".into()),
            node: Some("n-file".into()),
            container: Some("app".into()),
        }
    );
    c.apply_overrides(&Overrides {
        image: Some("127.0.0.1:5000/a:flag".into()),
        listen: Some("127.0.0.1:2".into()),
    });
    assert_eq!(c.image.as_deref(), Some("127.0.0.1:5000/a:flag"));
    assert_eq!(c.http.listen, "127.0.0.1:2");
    // Without flags nothing else changes.
    let before = c.clone();
    c.apply_overrides(&Overrides::default());
    assert_eq!(c, before);
    c.apply_env(&no_env);
    assert_eq!(c, before);
}

#[test]
fn load_reads_the_file_then_env_then_flags() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    std::fs::write(&path, "verify: { intervalSeconds: 2 }\n").unwrap();
    let env = |name: &str| (name == ENV_IMAGE).then(|| "127.0.0.1:5000/a:env".to_owned());
    let v = Config::load(&path, &env, &Overrides::default()).unwrap();
    assert_eq!(v.image.tag(), Some("env"));
    assert_eq!(v.config.verify.interval_seconds, 2);
    let missing = Config::load(&dir.path().join("nope.yaml"), &env, &Overrides::default())
        .unwrap_err()
        .to_string();
    assert!(
        missing.contains("cannot read the config file") && missing.contains("nope.yaml"),
        "{missing}"
    );
}

#[test]
fn unknown_keys_and_wrong_types_name_the_key() {
    let e = parse_error("verify: { intervalSecs: 3 }\n");
    assert!(e.contains("verify") && e.contains("intervalSecs"), "{e}");
    assert!(e.contains("test.yaml"), "{e}");
    let e = parse_error("imagee: x\n");
    assert!(e.contains("imagee"), "{e}");
    let e = parse_error("probe:\n  mode: fast\n");
    assert!(e.contains("probe.mode") && e.contains("fast"), "{e}");
    let e = parse_error("verify:\n  intervalSeconds: -1\n");
    assert!(e.contains("verify.intervalSeconds"), "{e}");
    let e = parse_error("observations:\n  format: json\n");
    assert!(e.contains("observations.format"), "{e}");
    let e = parse_error("registry: { insecure: x }\n");
    assert!(e.contains("registry.insecure"), "{e}");
    let e = parse_error("image: [\n");
    assert!(e.contains("test.yaml"), "{e}");
}

#[test]
fn the_image_is_required_and_must_be_a_reference() {
    let e = issues("");
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with("image: required") && e[0].contains(ENV_IMAGE),
        "{e:?}"
    );
    let e = issues("image: 'Not A Reference!'\n");
    assert!(e[0].starts_with("image: invalid image reference"), "{e:?}");
    assert!(issues(IMAGE).is_empty());
}

#[test]
fn every_validation_error_names_its_key() {
    let cases: &[(&str, &str)] = &[
        (
            "functionMap: { pullRetrySeconds: 0 }",
            "functionMap.pullRetrySeconds: must be > 0",
        ),
        (
            "functionMap: { file: '' }",
            "functionMap.file: must not be empty",
        ),
        (
            "functionMap: { trustedKeys: [''] }",
            "functionMap.trustedKeys[0]: must not be empty",
        ),
        (
            "functionMap: { trustedKeys: [a.pub, \"-----BEGIN PUBLIC KEY-----\\nAAAA\\n-----END PUBLIC KEY-----\"] }",
            "functionMap.trustedKeys[1]: not a P-256 public key",
        ),
        ("probe: { maxProbes: 0 }", "probe.maxProbes: must be > 0"),
        (
            "probe: { maxProbes: 2000000 }",
            "probe.maxProbes: must be <= 1048576",
        ),
        (
            "probe: { attachTimeoutSeconds: 0 }",
            "probe.attachTimeoutSeconds: must be > 0",
        ),
        (
            "probe: { pollIntervalMs: 0 }",
            "probe.pollIntervalMs: must be > 0",
        ),
        (
            "probe: { pollIntervalMs: 600000 }",
            "probe.pollIntervalMs: must be <= 60000",
        ),
        ("probe: { cgroup: '' }", "probe.cgroup: must not be empty"),
        ("pod: { name: ' ' }", "pod.name: must not be empty"),
        (
            "observations: { directory: '' }",
            "observations.directory: must not be empty",
        ),
        (
            "observations: { flushIntervalSeconds: 0 }",
            "observations.flushIntervalSeconds: must be > 0",
        ),
        (
            "observations: { rotateSizeBytes: 0 }",
            "observations.rotateSizeBytes: must be > 0",
        ),
        (
            "verify: { intervalSeconds: 0 }",
            "verify.intervalSeconds: must be > 0",
        ),
        (
            "verify: { intervalSeconds: 99999999 }",
            "verify.intervalSeconds: must be <= 604800",
        ),
        (
            "verify: { windowSeconds: 0 }",
            "verify.windowSeconds: must be > 0",
        ),
        (
            "registry: { timeoutSeconds: 18446744073709551615 }",
            "registry.timeoutSeconds: must be <= 3600",
        ),
        (
            "probe: { attachTimeoutSeconds: 86401 }",
            "probe.attachTimeoutSeconds: must be <= 86400",
        ),
        (
            "functionMap: { pullRetrySeconds: 86401 }",
            "functionMap.pullRetrySeconds: must be <= 86400",
        ),
        ("signing: { key: '' }", "signing.key: must not be empty"),
        (
            "signing: { passwordEnv: '' }",
            "signing.passwordEnv: must name an environment variable",
        ),
        (
            "registry: { insecure: ['bad host:x'] }",
            "registry.insecure: invalid insecure registry",
        ),
        (
            "registry: { dockerConfig: '' }",
            "registry.dockerConfig: must not be empty",
        ),
        (
            "registry: { timeoutSeconds: 0 }",
            "registry.timeoutSeconds: must be > 0",
        ),
        ("spool: { maxBytes: 0 }", "spool.maxBytes: must be > 0"),
        (
            "spool: { directory: /x }\nobservations: { directory: /x }",
            "spool.directory: must differ",
        ),
        (
            "shutdown: { deadlineSeconds: 0 }",
            "shutdown.deadlineSeconds: must be > 0",
        ),
        (
            "http: { listen: 'localhost' }",
            "http.listen: \"localhost\" is not an address",
        ),
    ];
    for (yaml, expected) in cases {
        let found = issues(&format!("{IMAGE}{yaml}\n"));
        assert_eq!(found.len(), 1, "{yaml}: {found:?}");
        assert!(found[0].starts_with(expected), "{yaml}: {found:?}");
    }
    // Every problem is reported at once, in a message that names each key.
    let err = parse("verify: { intervalSeconds: 0 }\nhttp: { listen: x }\n")
        .validate()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("image: required")
            && err.contains("verify.intervalSeconds: must be > 0")
            && err.contains("http.listen"),
        "{err}"
    );
}

#[test]
fn inline_trusted_keys_are_parsed() {
    let key = crate::attest::SigningKey::generate().verifying_key();
    let yaml = format!(
        "{IMAGE}functionMap:\n  trustedKeys:\n    - |\n{}",
        key.to_spki_pem()
            .lines()
            .map(|l| format!("      {l}\n"))
            .collect::<String>()
    );
    let v = parse(&yaml).validate().unwrap();
    assert_eq!(v.trusted_keys, [TrustedKey::Inline(key)]);
}
