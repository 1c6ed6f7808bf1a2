// SPDX-License-Identifier: Apache-2.0
//! The sidecar's configuration: one YAML file (camelCase keys, unknown keys refused), then the environment
//! Kubernetes fills through the downward API, then command-line flags. Every key is optional except the
//! app image; the defaults are the ones documented in examples/linkguard.yaml.
//!
//! Invalid configuration is fatal (the sidecar is a verifier and fails closed): [`Config::validate`]
//! returns every problem, each naming its key path (`verify.intervalSeconds: must be > 0`).

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use linkguard_oci::Reference;
use linkguard_oci::transport::InsecurePolicy;

use crate::attest::VerifyingKey;

/// Environment variable naming the app image (`image`).
pub const ENV_IMAGE: &str = "LINKGUARD_APP_IMAGE";
/// Downward API: the pod's name (`pod.name`).
pub const ENV_POD_NAME: &str = "POD_NAME";
/// Downward API: the pod's namespace (`pod.namespace`).
pub const ENV_POD_NAMESPACE: &str = "POD_NAMESPACE";
/// Downward API: the node's name (`pod.node`).
pub const ENV_NODE_NAME: &str = "NODE_NAME";
/// The app container's name (`pod.container`).
pub const ENV_CONTAINER_NAME: &str = "LINKGUARD_CONTAINER_NAME";

/// The whole configuration. `Default` is the documented default of every key.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Config {
    /// The app image (`registry/repository:tag` or `...@sha256:<hex>`). Required.
    pub image: Option<String>,
    pub pod: PodConfig,
    pub function_map: FunctionMapConfig,
    pub probe: ProbeConfig,
    pub observations: ObservationsConfig,
    pub verify: VerifyConfig,
    pub signing: SigningConfig,
    pub registry: RegistryConfig,
    pub spool: SpoolConfig,
    pub shutdown: ShutdownConfig,
    pub http: HttpConfig,
}

/// Where the app runs; written into records and reports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct PodConfig {
    pub name: Option<String>,
    pub namespace: Option<String>,
    pub node: Option<String>,
    pub container: Option<String>,
}

/// Where the function map comes from and whom to trust for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct FunctionMapConfig {
    /// A local map file instead of the image's newest map referrer.
    pub file: Option<PathBuf>,
    /// Public keys (SPKI PEM): a file path, or the PEM text itself. When any is given, a map that is not
    /// signed by one of them is refused.
    pub trusted_keys: Vec<String>,
    /// Longest wait between two attempts to pull a map that is missing or refused.
    pub pull_retry_seconds: u64,
}

impl Default for FunctionMapConfig {
    fn default() -> Self {
        Self {
            file: None,
            trusted_keys: Vec::new(),
            pull_retry_seconds: 30,
        }
    }
}

/// How calls are counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ProbeMode {
    /// First call per window; near-zero steady-state cost.
    #[default]
    Coverage,
    /// Exact counts; every call traps.
    Count,
}

/// The uprobes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ProbeConfig {
    pub mode: ProbeMode,
    /// Counters to allocate (one per function and process).
    pub max_probes: u32,
    /// How long the app may take to show up before its absence is reported (the sidecar keeps looking).
    pub attach_timeout_seconds: u64,
    /// How often to look for new and exited processes.
    pub poll_interval_ms: u64,
    /// Only processes whose `/proc/<pid>/cgroup` contains this text.
    pub cgroup: Option<String>,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        Self {
            mode: ProbeMode::Coverage,
            max_probes: 10_000,
            attach_timeout_seconds: 30,
            poll_interval_ms: 200,
            cgroup: None,
        }
    }
}

/// Observation file format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ObservationFormat {
    #[default]
    Ndjson,
    NdjsonGzip,
}

/// The observation store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ObservationsConfig {
    pub directory: PathBuf,
    pub format: ObservationFormat,
    pub flush_interval_seconds: u64,
    pub rotate_size_bytes: u64,
    /// Rotated files kept besides the current one.
    pub retain: usize,
}

impl Default for ObservationsConfig {
    fn default() -> Self {
        Self {
            directory: PathBuf::from("/var/lib/linkguard/observations"),
            format: ObservationFormat::Ndjson,
            flush_interval_seconds: 10,
            rotate_size_bytes: 64 * 1024 * 1024,
            retain: 5,
        }
    }
}

impl ObservationsConfig {
    /// The current observation file (rotated ones are `<name>.1`, ... before any `.gz`).
    pub fn current_file(&self) -> PathBuf {
        self.directory.join(match self.format {
            ObservationFormat::Ndjson => "observations.ndjson",
            ObservationFormat::NdjsonGzip => "observations.ndjson.gz",
        })
    }
}

/// The verification cycle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct VerifyConfig {
    pub interval_seconds: u64,
    /// The window verified at each tick; `None`: the map's `coverage.windowSeconds`.
    pub window_seconds: Option<u64>,
}

impl Default for VerifyConfig {
    fn default() -> Self {
        Self {
            interval_seconds: 300,
            window_seconds: None,
        }
    }
}

/// The report signing key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct SigningConfig {
    /// PEM PKCS#8 / SEC1 EC private key, or a cosign encrypted key.
    pub key: PathBuf,
    /// Environment variable holding the password of an encrypted key.
    pub password_env: String,
}

impl Default for SigningConfig {
    fn default() -> Self {
        Self {
            key: PathBuf::from("/etc/linkguard/signing/key.pem"),
            password_env: "LINKGUARD_KEY_PASSWORD".to_owned(),
        }
    }
}

/// Registry access.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct RegistryConfig {
    /// Push signed reports as referrers of the app image (else they are only kept locally and served).
    pub push_reports: bool,
    /// Registries reached over plain HTTP (loopback always is).
    pub insecure: Vec<String>,
    /// Pull credentials: a docker config.json or a Kubernetes `.dockerconfigjson` file.
    pub docker_config: Option<PathBuf>,
    /// Push credentials; defaults to `dockerConfig`.
    pub push_docker_config: Option<PathBuf>,
    pub timeout_seconds: u64,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            push_reports: true,
            insecure: Vec::new(),
            docker_config: None,
            push_docker_config: None,
            timeout_seconds: 30,
        }
    }
}

/// Where signed reports wait for the registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct SpoolConfig {
    pub directory: PathBuf,
    pub max_bytes: u64,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        Self {
            directory: PathBuf::from("/var/lib/linkguard/spool"),
            max_bytes: 256 * 1024 * 1024,
        }
    }
}

/// SIGTERM handling.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ShutdownConfig {
    /// Time for the last flush, report and push; what is not pushed by then stays in the spool.
    pub deadline_seconds: u64,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self {
            deadline_seconds: 20,
        }
    }
}

/// The HTTP endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct HttpConfig {
    pub listen: String,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:9464".to_owned(),
        }
    }
}

/// Flag values that override the file and the environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    pub image: Option<String>,
    pub listen: Option<String>,
}

/// One problem with one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// The key path, e.g. `verify.intervalSeconds`.
    pub key: String,
    pub reason: String,
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.reason)
    }
}

/// The configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// YAML syntax, a wrong type or an unknown key; the message names the key path and the line.
    #[error("invalid config {source_name}: {message}")]
    Parse {
        source_name: String,
        message: String,
    },
    #[error("invalid config: {}", join(.issues))]
    Invalid { issues: Vec<Issue> },
}

fn join(issues: &[Issue]) -> String {
    issues
        .iter()
        .map(Issue::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// A trusted map signing key, from a file or inline PEM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustedKey {
    File(PathBuf),
    Inline(VerifyingKey),
}

/// The checked configuration: the values that need parsing, parsed.
#[derive(Debug, Clone)]
pub struct Validated {
    pub config: Config,
    /// The app image.
    pub image: Reference,
    pub listen: SocketAddr,
    pub insecure: InsecurePolicy,
    pub trusted_keys: Vec<TrustedKey>,
}

impl Config {
    /// Parses YAML text; `source_name` names it in errors. Empty text is the default configuration.
    pub fn from_yaml(text: &str, source_name: &str) -> Result<Self, ConfigError> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        serde_yaml_ng::from_str(text).map_err(|e| ConfigError::Parse {
            source_name: source_name.to_owned(),
            message: e.to_string(),
        })
    }

    /// Reads and parses a config file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_yaml(&text, &path.display().to_string())
    }

    /// Applies the environment (`env` looks a variable up; empty values count as unset).
    pub fn apply_env(&mut self, env: &dyn Fn(&str) -> Option<String>) {
        let get = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        let set = |slot: &mut Option<String>, name: &str| {
            if let Some(value) = get(name) {
                *slot = Some(value);
            }
        };
        set(&mut self.image, ENV_IMAGE);
        set(&mut self.pod.name, ENV_POD_NAME);
        set(&mut self.pod.namespace, ENV_POD_NAMESPACE);
        set(&mut self.pod.node, ENV_NODE_NAME);
        set(&mut self.pod.container, ENV_CONTAINER_NAME);
    }

    /// Applies the command-line flags.
    pub fn apply_overrides(&mut self, overrides: &Overrides) {
        if let Some(image) = &overrides.image {
            self.image = Some(image.clone());
        }
        if let Some(listen) = &overrides.listen {
            self.http.listen = listen.clone();
        }
    }

    /// The file, then the environment, then the flags, validated.
    pub fn load(
        path: &Path,
        env: &dyn Fn(&str) -> Option<String>,
        overrides: &Overrides,
    ) -> Result<Validated, ConfigError> {
        let mut config = Self::from_file(path)?;
        config.apply_env(env);
        config.apply_overrides(overrides);
        config.validate()
    }

    /// The effective configuration as YAML (what `--check` prints).
    pub fn to_yaml(&self) -> String {
        // Strings, numbers, paths and options: serialization cannot fail.
        serde_yaml_ng::to_string(self).unwrap_or_default()
    }

    /// Checks every key; all problems are returned, each naming its key.
    pub fn validate(self) -> Result<Validated, ConfigError> {
        let mut issues = Vec::new();
        let mut issue = |key: &str, reason: String| {
            issues.push(Issue {
                key: key.to_owned(),
                reason,
            });
        };
        let image = match self.image.as_deref().map(str::trim) {
            None | Some("") => {
                issue(
                    "image",
                    format!(
                        "required: the app image reference (registry/repository:tag or @sha256:<hex>); set it \
                         in the config, in {ENV_IMAGE} or with --image"
                    ),
                );
                None
            }
            Some(text) => match text.parse::<Reference>() {
                Ok(reference) => Some(reference),
                Err(err) => {
                    issue("image", err.to_string());
                    None
                }
            },
        };
        for (key, value) in [
            ("pod.name", &self.pod.name),
            ("pod.namespace", &self.pod.namespace),
            ("pod.node", &self.pod.node),
            ("pod.container", &self.pod.container),
            ("probe.cgroup", &self.probe.cgroup),
        ] {
            if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
                issue(
                    key,
                    "must not be empty (use null or leave it out)".to_owned(),
                );
            }
        }
        if self
            .function_map
            .file
            .as_ref()
            .is_some_and(|f| f.as_os_str().is_empty())
        {
            issue(
                "functionMap.file",
                "must not be empty (use null to pull the map from the registry)".to_owned(),
            );
        }
        let mut trusted_keys = Vec::new();
        for (i, entry) in self.function_map.trusted_keys.iter().enumerate() {
            let key = format!("functionMap.trustedKeys[{i}]");
            let entry = entry.trim();
            if entry.is_empty() {
                issue(&key, "must not be empty".to_owned());
            } else if entry.starts_with("-----BEGIN") {
                match VerifyingKey::from_pem(entry) {
                    Ok(k) => trusted_keys.push(TrustedKey::Inline(k)),
                    Err(err) => issue(&key, format!("not a P-256 public key (SPKI PEM): {err}")),
                }
            } else {
                trusted_keys.push(TrustedKey::File(PathBuf::from(entry)));
            }
        }
        let positive = [
            (
                "functionMap.pullRetrySeconds",
                self.function_map.pull_retry_seconds,
            ),
            ("probe.maxProbes", u64::from(self.probe.max_probes)),
            (
                "probe.attachTimeoutSeconds",
                self.probe.attach_timeout_seconds,
            ),
            ("probe.pollIntervalMs", self.probe.poll_interval_ms),
            (
                "observations.flushIntervalSeconds",
                self.observations.flush_interval_seconds,
            ),
            (
                "observations.rotateSizeBytes",
                self.observations.rotate_size_bytes,
            ),
            ("verify.intervalSeconds", self.verify.interval_seconds),
            (
                "verify.windowSeconds",
                self.verify.window_seconds.unwrap_or(1),
            ),
            ("registry.timeoutSeconds", self.registry.timeout_seconds),
            ("spool.maxBytes", self.spool.max_bytes),
            ("shutdown.deadlineSeconds", self.shutdown.deadline_seconds),
        ];
        for (key, value) in positive {
            if value == 0 {
                issue(key, "must be > 0".to_owned());
            }
        }
        if self.probe.max_probes > linkguard_bpf::MAX_PROBES_LIMIT {
            issue(
                "probe.maxProbes",
                format!("must be <= {}", linkguard_bpf::MAX_PROBES_LIMIT),
            );
        }
        // Bounds that keep a typo from turning into a busy loop or a timer that never fires.
        let at_most = [
            ("probe.pollIntervalMs", self.probe.poll_interval_ms, 60_000),
            (
                "observations.flushIntervalSeconds",
                self.observations.flush_interval_seconds,
                86_400,
            ),
            (
                "verify.intervalSeconds",
                self.verify.interval_seconds,
                86_400 * 7,
            ),
            (
                "verify.windowSeconds",
                self.verify.window_seconds.unwrap_or(0),
                86_400 * 31,
            ),
            (
                "shutdown.deadlineSeconds",
                self.shutdown.deadline_seconds,
                3_600,
            ),
            // These become Durations added to Instants: unbounded, they would overflow (panic).
            (
                "registry.timeoutSeconds",
                self.registry.timeout_seconds,
                3_600,
            ),
            (
                "probe.attachTimeoutSeconds",
                self.probe.attach_timeout_seconds,
                86_400,
            ),
            (
                "functionMap.pullRetrySeconds",
                self.function_map.pull_retry_seconds,
                86_400,
            ),
        ];
        for (key, value, max) in at_most {
            if value > max {
                issue(key, format!("must be <= {max}"));
            }
        }
        for (key, dir) in [
            ("observations.directory", &self.observations.directory),
            ("spool.directory", &self.spool.directory),
            ("signing.key", &self.signing.key),
        ] {
            if dir.as_os_str().is_empty() {
                issue(key, "must not be empty".to_owned());
            }
        }
        if self.observations.directory == self.spool.directory
            && !self.spool.directory.as_os_str().is_empty()
        {
            issue(
                "spool.directory",
                "must differ from observations.directory".to_owned(),
            );
        }
        if self.signing.password_env.trim().is_empty() {
            issue(
                "signing.passwordEnv",
                "must name an environment variable".to_owned(),
            );
        }
        for (key, file) in [
            ("registry.dockerConfig", &self.registry.docker_config),
            (
                "registry.pushDockerConfig",
                &self.registry.push_docker_config,
            ),
        ] {
            if file.as_ref().is_some_and(|f| f.as_os_str().is_empty()) {
                issue(key, "must not be empty (use null)".to_owned());
            }
        }
        let insecure = match InsecurePolicy::new(&self.registry.insecure) {
            Ok(policy) => Some(policy),
            Err(err) => {
                issue("registry.insecure", err.to_string());
                None
            }
        };
        let listen = match self.http.listen.trim().parse::<SocketAddr>() {
            Ok(addr) => Some(addr),
            Err(_) => {
                issue(
                    "http.listen",
                    format!(
                        "{:?} is not an address: expected IP:PORT, e.g. 0.0.0.0:9464 or 127.0.0.1:9464",
                        self.http.listen
                    ),
                );
                None
            }
        };
        match (image, listen, insecure) {
            (Some(image), Some(listen), Some(insecure)) if issues.is_empty() => Ok(Validated {
                config: self,
                image,
                listen,
                insecure,
                trusted_keys,
            }),
            _ => Err(ConfigError::Invalid { issues }),
        }
    }
}

impl Validated {
    pub fn flush_interval(&self) -> Duration {
        Duration::from_secs(self.config.observations.flush_interval_seconds)
    }

    pub fn verify_interval(&self) -> Duration {
        Duration::from_secs(self.config.verify.interval_seconds)
    }

    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.config.probe.poll_interval_ms)
    }

    pub fn pull_retry(&self) -> Duration {
        Duration::from_secs(self.config.function_map.pull_retry_seconds)
    }

    pub fn shutdown_deadline(&self) -> Duration {
        Duration::from_secs(self.config.shutdown.deadline_seconds)
    }

    pub fn registry_timeout(&self) -> Duration {
        Duration::from_secs(self.config.registry.timeout_seconds)
    }

    pub fn attach_timeout(&self) -> Duration {
        Duration::from_secs(self.config.probe.attach_timeout_seconds)
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
