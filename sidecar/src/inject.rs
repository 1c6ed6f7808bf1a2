// SPDX-License-Identifier: Apache-2.0
//! `linkguard inject`: adds the linkguard sidecar to the pods of Kubernetes workloads, the way
//! `linkerd inject` adds its proxy.
//!
//! Input is a multi-document YAML stream (`kubectl get -o yaml` output, a kustomize build, hand-written
//! manifests). For every Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, Job and CronJob (and such
//! items of a `kind: List`) the pod spec gets:
//!
//! - `shareProcessNamespace: true`, so the sidecar sees the app's processes;
//! - the `linkguard` container as a native sidecar: an init container with `restartPolicy: Always`
//!   (Kubernetes 1.29+), started before the app containers and stopped after them;
//! - its volumes: the config (ConfigMap `linkguard-config`), the signing key (Secret
//!   `linkguard-signing-key`), registry credentials (dockerconfigjson Secret `linkguard-registry`,
//!   optional), and emptyDirs for the observations and the report spool;
//! - its environment: POD_NAME, POD_NAMESPACE and NODE_NAME from the downward API, and the observed
//!   container's name and image (LINKGUARD_CONTAINER_NAME, LINKGUARD_APP_IMAGE).
//!
//! With a sidecar config ([`SidecarConfig::from_yaml`]), the mounts and the HTTP port follow it, and a
//! ConfigMap holding it is added for each namespace that has an injected workload (or the one in the
//! input is updated).
//!
//! Injection is idempotent: the sidecar, its volumes and the ConfigMap are replaced by name, and a
//! document that injection leaves equal is written back byte for byte, so injecting twice gives the
//! same bytes. Documents of other kinds pass through byte for byte (comments included); injected
//! documents are re-serialized, which drops their comments.

mod pod;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde_yaml_ng::{Mapping, Value};

use crate::daemon::config::{Config, ConfigError};

pub use pod::{SIDECAR_NAME, default_image};

/// Name of the ConfigMap holding the sidecar config.
pub const CONFIG_MAP_NAME: &str = "linkguard-config";
/// Key of the config file in that ConfigMap.
pub const CONFIG_KEY: &str = "linkguard.yaml";
/// Where the ConfigMap is mounted.
pub const CONFIG_DIR: &str = "/etc/linkguard/config";
/// Secret with the report signing key (`key.pem`, and `password` for a cosign encrypted key).
pub const SIGNING_SECRET_NAME: &str = "linkguard-signing-key";
/// Where the signing key Secret is mounted.
pub const SIGNING_DIR: &str = "/etc/linkguard/signing";
/// `kubernetes.io/dockerconfigjson` Secret with registry credentials (optional).
pub const REGISTRY_SECRET_NAME: &str = "linkguard-registry";
/// Where the registry Secret is mounted.
pub const REGISTRY_DIR: &str = "/etc/linkguard/registry";
/// Annotation that opts a workload (or its pod template) out: `linkguard.dev/inject: disabled`.
pub const INJECT_ANNOTATION: &str = "linkguard.dev/inject";

/// What injection does to a workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// The linkguard container image.
    pub image: String,
    /// The observed container; `None`: the first container of each pod.
    pub container: Option<String>,
    /// The sidecar config the manifests must agree with.
    pub config: SidecarConfig,
}

impl Options {
    /// Injection with the default config and image.
    pub fn new(image: impl Into<String>) -> Self {
        Self {
            image: image.into(),
            container: None,
            config: SidecarConfig::default(),
        }
    }
}

/// The parts of the sidecar config that the pod spec must agree with, and (when it came from a file)
/// the file's text for the ConfigMap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SidecarConfig {
    /// The config file's text, put into the ConfigMap; `None`: no ConfigMap is written or changed.
    pub text: Option<String>,
    /// `http.listen`'s port: the container port and the probes' target.
    pub port: u16,
    /// `observations.directory`, an emptyDir.
    pub observations_dir: PathBuf,
    /// `spool.directory`, an emptyDir.
    pub spool_dir: PathBuf,
    /// emptyDir size limits, from the rotation and spool sizes (with headroom).
    pub observations_limit_mib: u64,
    pub spool_limit_mib: u64,
    /// `signing.passwordEnv`: filled from the signing Secret's optional `password` key.
    pub password_env: String,
}

impl Default for SidecarConfig {
    fn default() -> Self {
        Self::from_config(&Config::default(), None, 9464)
    }
}

impl SidecarConfig {
    fn from_config(config: &Config, text: Option<String>, port: u16) -> Self {
        const MIB: u64 = 1024 * 1024;
        let obs = &config.observations;
        // The current file plus `retain` rotated ones, one more for the file being rotated, and 16 MiB.
        let observations_bytes = obs
            .rotate_size_bytes
            .saturating_mul((obs.retain as u64).saturating_add(2));
        Self {
            text,
            port,
            observations_dir: obs.directory.clone(),
            spool_dir: config.spool.directory.clone(),
            observations_limit_mib: observations_bytes.div_ceil(MIB).saturating_add(16),
            spool_limit_mib: config.spool.max_bytes.div_ceil(MIB).saturating_add(16),
            password_env: config.signing.password_env.clone(),
        }
    }

    /// Parses and checks a sidecar config for injection: everything `linkguard sidecar --check` checks
    /// (except `image`, which each pod gets from LINKGUARD_APP_IMAGE), and that every file it names is
    /// in a volume that injection mounts and that the HTTP endpoints are reachable from the kubelet.
    pub fn from_yaml(text: &str, source_name: &str) -> Result<Self, InjectError> {
        let config = Config::from_yaml(text, source_name).map_err(|e| InjectError::Config {
            source_name: source_name.to_owned(),
            message: e.to_string(),
        })?;
        let mut issues: Vec<String> = match config.clone().validate() {
            Ok(_) => Vec::new(),
            Err(ConfigError::Invalid { issues }) => issues
                .into_iter()
                // The image comes from each pod's LINKGUARD_APP_IMAGE, which injection sets.
                .filter(|i| !(i.key == "image" && config.image.is_none()))
                .map(|i| i.to_string())
                .collect(),
            Err(other) => vec![other.to_string()],
        };
        let read_only = [CONFIG_DIR, SIGNING_DIR, REGISTRY_DIR];
        let mut files: Vec<(String, &Path)> = vec![("signing.key".to_owned(), &config.signing.key)];
        if let Some(file) = &config.function_map.file {
            files.push(("functionMap.file".to_owned(), file));
        }
        for (i, key) in config.function_map.trusted_keys.iter().enumerate() {
            if !key.trim_start().starts_with("-----BEGIN") {
                files.push((
                    format!("functionMap.trustedKeys[{i}]"),
                    Path::new(key.trim()),
                ));
            }
        }
        if let Some(file) = &config.registry.docker_config {
            files.push(("registry.dockerConfig".to_owned(), file));
        }
        if let Some(file) = &config.registry.push_docker_config {
            files.push(("registry.pushDockerConfig".to_owned(), file));
        }
        for (key, file) in files {
            if !read_only
                .iter()
                .any(|dir| is_strictly_under(file, Path::new(dir)))
            {
                issues.push(format!(
                    "{key}: {} is not in a volume that linkguard inject mounts; put it in {CONFIG_DIR}/ \
                     (ConfigMap {CONFIG_MAP_NAME}), {SIGNING_DIR}/ (Secret {SIGNING_SECRET_NAME}) or \
                     {REGISTRY_DIR}/ (Secret {REGISTRY_SECRET_NAME})",
                    file.display()
                ));
            }
        }
        for (key, dir) in [
            ("observations.directory", &config.observations.directory),
            ("spool.directory", &config.spool.directory),
        ] {
            if !dir.is_absolute() {
                issues.push(format!(
                    "{key}: {} must be an absolute path (it becomes an emptyDir mount)",
                    dir.display()
                ));
            } else if read_only.iter().any(|ro| dir.starts_with(ro)) {
                issues.push(format!(
                    "{key}: {} is inside a read-only mount; use a directory under /var/lib/linkguard",
                    dir.display()
                ));
            }
        }
        let port = match config.http.listen.trim().parse::<SocketAddr>() {
            Ok(addr) if addr.ip().is_loopback() => {
                issues.push(format!(
                    "http.listen: {addr} accepts connections from inside the pod only, but the kubelet's \
                     probes and Prometheus connect to the pod IP; use 0.0.0.0:{}",
                    addr.port()
                ));
                0
            }
            Ok(addr) => addr.port(),
            Err(_) => 0, // validate() has named the problem
        };
        if !issues.is_empty() {
            return Err(InjectError::Config {
                source_name: source_name.to_owned(),
                message: issues.join("; "),
            });
        }
        Ok(Self::from_config(&config, Some(text.to_owned()), port))
    }
}

/// `path` is below `dir` (not `dir` itself), with no `..` to climb out.
fn is_strictly_under(path: &Path, dir: &Path) -> bool {
    path.starts_with(dir)
        && path != dir
        && !path
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
}

/// Why a stream could not be injected. Nothing is written when any document fails.
#[derive(Debug, thiserror::Error)]
pub enum InjectError {
    #[error("{source_name}: document {document} (from line {line}) is not valid YAML: {message}")]
    Yaml {
        source_name: String,
        /// 1-based, in stream order.
        document: usize,
        /// The document's first line (1-based).
        line: usize,
        /// The parser's message, with line and column in the whole stream.
        message: String,
    },
    #[error("{source_name}: document {document} (from line {line}), {kind} {name:?}: {reason}")]
    Workload {
        source_name: String,
        document: usize,
        line: usize,
        kind: String,
        name: String,
        reason: String,
    },
    #[error("sidecar config {source_name}: {message}")]
    Config {
        source_name: String,
        message: String,
    },
}

/// What happened to one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// `deployment/web`, `configmap/linkguard-config`.
    pub object: String,
    pub namespace: Option<String>,
    pub action: Action,
}

/// See [`Change`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The sidecar was added or updated.
    Injected,
    /// It was already there exactly as injection makes it.
    Unchanged,
    /// Opted out with the `linkguard.dev/inject: disabled` annotation.
    Disabled,
    /// A ConfigMap with the sidecar config was added to the stream.
    ConfigMapAdded,
    /// The stream's ConfigMap now holds the sidecar config.
    ConfigMapUpdated,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self.action {
            Action::Injected => "injected",
            Action::Unchanged => "already injected, unchanged",
            Action::Disabled => "skipped (linkguard.dev/inject: disabled)",
            Action::ConfigMapAdded => "added",
            Action::ConfigMapUpdated => "updated",
        };
        match &self.namespace {
            Some(ns) => write!(f, "{} (namespace {ns}) {what}", self.object),
            None => write!(f, "{} {what}", self.object),
        }
    }
}

/// The injected stream and what was done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Injected {
    pub yaml: String,
    pub changes: Vec<Change>,
}

/// One document of the stream: its text, including the `---` line that opens it.
#[derive(Debug)]
struct Chunk<'a> {
    text: &'a str,
    has_marker: bool,
    /// 1-based line of the chunk's first line.
    line: usize,
}

/// Splits a YAML stream at its `---` document markers. YAML forbids a line starting with `---` (or
/// `...`) followed by a space or the line end inside any node (the spec's `c-forbidden`), so a marker
/// line always starts a document.
fn split_documents(input: &str) -> Vec<Chunk<'_>> {
    let mut chunks = Vec::new();
    let mut start = 0;
    let mut start_line = 1;
    let mut has_marker = false;
    let mut offset = 0;
    for (i, line) in input.split_inclusive('\n').enumerate() {
        let is_marker = line
            .strip_prefix("---")
            .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\r', '\n']));
        if is_marker && (offset > start || has_marker) {
            chunks.push(Chunk {
                text: &input[start..offset],
                has_marker,
                line: start_line,
            });
        }
        if is_marker {
            start = offset;
            start_line = i + 1;
            has_marker = true;
        }
        offset += line.len();
    }
    if offset > start || has_marker {
        chunks.push(Chunk {
            text: &input[start..],
            has_marker,
            line: start_line,
        });
    }
    chunks
}

/// Text with no content: blank lines and comments only.
fn is_blank(text: &str) -> bool {
    text.lines().all(|l| {
        let l = l.trim();
        l.is_empty() || l.starts_with('#')
    })
}

/// A parsed document of the stream.
#[derive(Debug)]
struct Document<'a> {
    chunk: Chunk<'a>,
    /// 1-based document number (chunks before the first marker that hold only comments do not count).
    number: usize,
    value: Value,
}

fn parse<'a>(input: &'a str, source_name: &str) -> Result<Vec<Document<'a>>, InjectError> {
    let mut documents = Vec::new();
    let mut number = 0;
    for chunk in split_documents(input) {
        if chunk.has_marker || !is_blank(chunk.text) {
            number += 1;
        }
        // Parsed after as many newlines as the chunk's first line number, so the parser's locations
        // are those of the whole stream.
        let padded = format!("{}{}", "\n".repeat(chunk.line - 1), chunk.text);
        let value = serde_yaml_ng::from_str::<Value>(&padded).map_err(|e| InjectError::Yaml {
            source_name: source_name.to_owned(),
            document: number.max(1),
            line: chunk.line,
            message: e.to_string(),
        })?;
        documents.push(Document {
            chunk,
            number,
            value,
        });
    }
    Ok(documents)
}

fn str_at<'v>(value: &'v Value, path: &[&str]) -> Option<&'v str> {
    path.iter()
        .try_fold(value, |v, key| v.get(*key))
        .and_then(Value::as_str)
}

/// `kind/name` in lower case, like kubectl prints it.
fn object_name(value: &Value) -> String {
    format!(
        "{}/{}",
        str_at(value, &["kind"])
            .unwrap_or("unknown")
            .to_ascii_lowercase(),
        str_at(value, &["metadata", "name"]).unwrap_or("<unnamed>")
    )
}

fn namespace(value: &Value) -> Option<String> {
    str_at(value, &["metadata", "namespace"]).map(str::to_owned)
}

fn is_config_map(value: &Value) -> bool {
    str_at(value, &["apiVersion"]) == Some("v1")
        && str_at(value, &["kind"]) == Some("ConfigMap")
        && str_at(value, &["metadata", "name"]) == Some(CONFIG_MAP_NAME)
}

fn is_list(value: &Value) -> bool {
    str_at(value, &["apiVersion"]) == Some("v1") && str_at(value, &["kind"]) == Some("List")
}

/// The objects of a document: itself, or the items of a `kind: List`.
fn objects_mut(value: &mut Value) -> Vec<&mut Value> {
    if is_list(value) {
        match value.get_mut("items").and_then(Value::as_sequence_mut) {
            Some(items) => items.iter_mut().collect(),
            None => Vec::new(),
        }
    } else {
        vec![value]
    }
}

fn config_map(namespace: Option<&str>, text: &str) -> Value {
    let mut metadata = Mapping::new();
    metadata.insert("name".into(), CONFIG_MAP_NAME.into());
    if let Some(ns) = namespace {
        metadata.insert("namespace".into(), ns.into());
    }
    let mut labels = Mapping::new();
    labels.insert("app.kubernetes.io/name".into(), "linkguard".into());
    labels.insert("app.kubernetes.io/component".into(), "config".into());
    metadata.insert("labels".into(), Value::Mapping(labels));
    let mut data = Mapping::new();
    data.insert(CONFIG_KEY.into(), text.into());
    let mut map = Mapping::new();
    map.insert("apiVersion".into(), "v1".into());
    map.insert("kind".into(), "ConfigMap".into());
    map.insert("metadata".into(), Value::Mapping(metadata));
    map.insert("data".into(), Value::Mapping(data));
    Value::Mapping(map)
}

/// Opens the next document of `out`: a `---` line, unless it is the first.
fn start_document(out: &mut String) {
    if !out.is_empty() {
        if !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str("---\n");
    }
}

fn to_yaml(value: &Value) -> String {
    // A Value built from parsed YAML and strings always serializes.
    serde_yaml_ng::to_string(value).unwrap_or_default()
}

/// Injects the sidecar into every workload of the YAML stream `input` (`source_name` names it in
/// errors). See the module documentation.
pub fn inject(input: &str, source_name: &str, options: &Options) -> Result<Injected, InjectError> {
    let mut documents = parse(input, source_name)?;
    let mut changes = Vec::new();
    // Namespaces with a ConfigMap in the stream, and those needing one (with the document to put it
    // before).
    let mut have_config_map: Vec<Option<String>> = Vec::new();
    let mut need_config_map: Vec<(Option<String>, usize)> = Vec::new();
    let mut changed = vec![false; documents.len()];

    for (index, doc) in documents.iter_mut().enumerate() {
        let before = doc.value.clone();
        for object in objects_mut(&mut doc.value) {
            if is_config_map(object) {
                let ns = namespace(object);
                if let (Some(text), Value::Mapping(map)) = (&options.config.text, &mut *object) {
                    let name = format!("configmap/{CONFIG_MAP_NAME}");
                    let data = map
                        .entry("data".into())
                        .or_insert_with(|| Value::Mapping(Mapping::new()));
                    if !data.is_mapping() {
                        *data = Value::Mapping(Mapping::new());
                    }
                    if data.get(CONFIG_KEY).and_then(Value::as_str) != Some(text.as_str())
                        && let Value::Mapping(data) = data
                    {
                        data.insert(CONFIG_KEY.into(), text.as_str().into());
                        changes.push(Change {
                            object: name,
                            namespace: ns.clone(),
                            action: Action::ConfigMapUpdated,
                        });
                    }
                }
                have_config_map.push(ns);
                continue;
            }
            let outcome =
                pod::inject_object(object, options).map_err(|reason| InjectError::Workload {
                    source_name: source_name.to_owned(),
                    document: doc.number,
                    line: doc.chunk.line,
                    kind: str_at(object, &["kind"]).unwrap_or_default().to_owned(),
                    name: str_at(object, &["metadata", "name"])
                        .unwrap_or("<unnamed>")
                        .to_owned(),
                    reason,
                })?;
            let Some(action) = outcome else { continue };
            let ns = namespace(object);
            if action != Action::Disabled && !need_config_map.iter().any(|(n, _)| *n == ns) {
                need_config_map.push((ns.clone(), index));
            }
            changes.push(Change {
                object: object_name(object),
                namespace: ns,
                action,
            });
        }
        changed[index] = doc.value != before;
    }

    let mut added: Vec<(usize, Value)> = Vec::new();
    if let Some(text) = &options.config.text {
        for (ns, index) in need_config_map {
            if !have_config_map.contains(&ns) {
                changes.push(Change {
                    object: format!("configmap/{CONFIG_MAP_NAME}"),
                    namespace: ns.clone(),
                    action: Action::ConfigMapAdded,
                });
                added.push((index, config_map(ns.as_deref(), text)));
            }
        }
    }

    let mut out = String::with_capacity(input.len() + 4096);
    for (index, doc) in documents.iter().enumerate() {
        for (_, value) in added.iter().filter(|(i, _)| *i == index) {
            start_document(&mut out);
            out.push_str(&to_yaml(value));
        }
        if !changed[index] {
            if !doc.chunk.has_marker && !out.is_empty() {
                start_document(&mut out);
            }
            out.push_str(doc.chunk.text);
        } else {
            start_document(&mut out);
            if out.is_empty() && doc.chunk.has_marker {
                out.push_str("---\n");
            }
            out.push_str(&to_yaml(&doc.value));
        }
    }
    Ok(Injected { yaml: out, changes })
}
