// SPDX-License-Identifier: Apache-2.0
//! The pod spec changes of `linkguard inject`: which kinds carry a pod template where, and the
//! sidecar container, volumes and settings that go into it.

use serde_yaml_ng::{Mapping, Sequence, Value};

use super::{
    Action, CONFIG_DIR, CONFIG_KEY, CONFIG_MAP_NAME, INJECT_ANNOTATION, Options, REGISTRY_DIR,
    REGISTRY_SECRET_NAME, SIGNING_DIR, SIGNING_SECRET_NAME, SidecarConfig,
};
use crate::daemon::config::{
    ENV_CONTAINER_NAME, ENV_IMAGE, ENV_NODE_NAME, ENV_POD_NAME, ENV_POD_NAMESPACE,
};

/// Name of the sidecar container.
pub const SIDECAR_NAME: &str = "linkguard";
/// Name of its HTTP port (at most 15 characters: an IANA service name).
const PORT_NAME: &str = "linkguard-http";
/// The uid and gid the image runs as (the distroless `nonroot` user); see the Dockerfile.
const RUN_AS: i64 = 65532;

const VOLUME_CONFIG: &str = "linkguard-config";
const VOLUME_SIGNING: &str = "linkguard-signing-key";
const VOLUME_REGISTRY: &str = "linkguard-registry";
const VOLUME_OBSERVATIONS: &str = "linkguard-observations";
const VOLUME_SPOOL: &str = "linkguard-spool";

/// The default sidecar image: this version of linkguard, built from the repository's Dockerfile.
pub fn default_image() -> String {
    format!("ghcr.io/linkguard/linkguard:{}", crate::VERSION)
}

/// Where a workload kind keeps its pod spec (`None`: not a workload; it passes through).
fn pod_spec_path(api_version: &str, kind: &str) -> Option<&'static [&'static str]> {
    match (api_version, kind) {
        ("v1", "Pod") => Some(&["spec"]),
        ("apps/v1", "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet")
        | ("batch/v1", "Job") => Some(&["spec", "template", "spec"]),
        ("batch/v1", "CronJob") => Some(&["spec", "jobTemplate", "spec", "template", "spec"]),
        _ => None,
    }
}

/// A mapping built from `(key, value)` pairs, in order.
fn map<const N: usize>(entries: [(&str, Value); N]) -> Value {
    Value::Mapping(
        entries
            .into_iter()
            .map(|(k, v)| (Value::from(k), v))
            .collect::<Mapping>(),
    )
}

fn seq<const N: usize>(items: [Value; N]) -> Value {
    Value::Sequence(items.into_iter().collect())
}

fn s(text: &str) -> Value {
    Value::from(text)
}

fn disabled(metadata: Option<&Value>) -> bool {
    metadata
        .and_then(|m| m.get("annotations"))
        .and_then(|a| a.get(INJECT_ANNOTATION))
        .and_then(Value::as_str)
        .is_some_and(|v| v.eq_ignore_ascii_case("disabled"))
}

/// Injects the sidecar into `object` if it is a workload: `Ok(None)` for other kinds, the action for
/// workloads, and the reason when its pod spec cannot take the sidecar.
pub(super) fn inject_object(
    object: &mut Value,
    options: &Options,
) -> Result<Option<Action>, String> {
    let (Some(api_version), Some(kind)) = (
        object.get("apiVersion").and_then(Value::as_str),
        object.get("kind").and_then(Value::as_str),
    ) else {
        return Ok(None);
    };
    let Some(path) = pod_spec_path(api_version, kind) else {
        return Ok(None);
    };
    if disabled(object.get("metadata")) {
        return Ok(Some(Action::Disabled));
    }
    // The pod template's metadata sits next to its spec.
    let (template_path, _) = path.split_at(path.len() - 1);
    let template = template_path
        .iter()
        .try_fold(&*object, |v, key| v.get(*key));
    if !template_path.is_empty() && disabled(template.and_then(|t| t.get("metadata"))) {
        return Ok(Some(Action::Disabled));
    }
    let mut spec = &mut *object;
    for (depth, key) in path.iter().enumerate() {
        spec = spec
            .get_mut(*key)
            .filter(|v| v.is_mapping())
            .ok_or_else(|| format!("{} is missing or not a mapping", path[..=depth].join(".")))?;
    }
    let Value::Mapping(spec) = spec else {
        return Err(format!("{} is not a mapping", path.join(".")));
    };
    let before = spec.clone();
    inject_pod_spec(spec, options).map_err(|reason| format!("{}: {reason}", path.join(".")))?;
    Ok(Some(if *spec == before {
        Action::Unchanged
    } else {
        Action::Injected
    }))
}

fn inject_pod_spec(spec: &mut Mapping, options: &Options) -> Result<(), String> {
    if spec.get("hostPID").and_then(Value::as_bool) == Some(true) {
        return Err(
            "hostPID is true, and Kubernetes refuses it together with the shareProcessNamespace that \
             linkguard needs; remove hostPID (or opt the workload out with the annotation \
             linkguard.dev/inject: disabled)"
                .to_owned(),
        );
    }
    let containers = spec
        .get("containers")
        .and_then(Value::as_sequence)
        .filter(|c| !c.is_empty())
        .ok_or("containers is missing or empty")?;
    if containers
        .iter()
        .any(|c| c.get("name").and_then(Value::as_str) == Some(SIDECAR_NAME))
    {
        return Err(format!(
            "a container is already named {SIDECAR_NAME:?}; rename it (container names are unique in a pod)"
        ));
    }
    let app = match &options.container {
        Some(name) => containers
            .iter()
            .find(|c| c.get("name").and_then(Value::as_str) == Some(name.as_str()))
            .ok_or_else(|| {
                let names: Vec<&str> = containers
                    .iter()
                    .filter_map(|c| c.get("name").and_then(Value::as_str))
                    .collect();
                format!(
                    "no container named {name:?} (--container); containers: {}",
                    names.join(", ")
                )
            })?,
        None => &containers[0],
    };
    let app_name = app
        .get("name")
        .and_then(Value::as_str)
        .ok_or("the observed container has no name")?
        .to_owned();
    let app_image = app
        .get("image")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("container {app_name:?} has no image"))?
        .to_owned();
    if let Err(err) = app_image.parse::<linkguard_oci::Reference>() {
        return Err(format!(
            "container {app_name:?}: the sidecar verifies image {app_image:?} in its registry and needs a \
             full reference with the registry host (e.g. docker.io/library/nginx:1.27): {err}"
        ));
    }
    let sidecar = sidecar_container(options, &app_name, &app_image);

    upsert_named(spec, "initContainers", sidecar)?;
    for volume in volumes(&options.config) {
        upsert_named(spec, "volumes", volume)?;
    }
    spec.insert("shareProcessNamespace".into(), Value::Bool(true));
    Ok(())
}

/// Replaces the item of `spec[list]` with the same `name` as `item`, or appends it.
fn upsert_named(spec: &mut Mapping, list: &str, item: Value) -> Result<(), String> {
    let name = item.get("name").cloned();
    let entry = spec
        .entry(list.into())
        .or_insert_with(|| Value::Sequence(Sequence::new()));
    if entry.is_null() {
        // `initContainers:` with nothing after it is an empty list.
        *entry = Value::Sequence(Sequence::new());
    }
    let Value::Sequence(items) = entry else {
        return Err(format!("{list} is not a list"));
    };
    match items.iter_mut().find(|i| i.get("name") == name.as_ref()) {
        Some(existing) => *existing = item,
        None => items.push(item),
    }
    Ok(())
}

fn field_env(name: &str, field: &str) -> Value {
    map([
        ("name", s(name)),
        (
            "valueFrom",
            map([("fieldRef", map([("fieldPath", s(field))]))]),
        ),
    ])
}

fn value_env(name: &str, value: &str) -> Value {
    map([("name", s(name)), ("value", s(value))])
}

fn mount(name: &str, path: &str, read_only: bool) -> Value {
    if read_only {
        map([
            ("name", s(name)),
            ("mountPath", s(path)),
            ("readOnly", Value::Bool(true)),
        ])
    } else {
        map([("name", s(name)), ("mountPath", s(path))])
    }
}

fn http_probe(path: &str, period: u64, failures: u64) -> Value {
    map([
        ("httpGet", map([("path", s(path)), ("port", s(PORT_NAME))])),
        ("periodSeconds", period.into()),
        ("timeoutSeconds", 2.into()),
        ("failureThreshold", failures.into()),
    ])
}

fn sidecar_container(options: &Options, app_name: &str, app_image: &str) -> Value {
    let config = &options.config;
    let observations = config.observations_dir.display().to_string();
    let spool = config.spool_dir.display().to_string();
    map([
        ("name", s(SIDECAR_NAME)),
        ("image", s(&options.image)),
        // A native sidecar (Kubernetes 1.29+): started before the app containers, kept running, and
        // stopped after them; Jobs complete when their app containers do.
        ("restartPolicy", s("Always")),
        (
            "args",
            seq([
                s("sidecar"),
                s("--config"),
                s(&format!("{CONFIG_DIR}/{CONFIG_KEY}")),
            ]),
        ),
        (
            "env",
            seq([
                field_env(ENV_POD_NAME, "metadata.name"),
                field_env(ENV_POD_NAMESPACE, "metadata.namespace"),
                field_env(ENV_NODE_NAME, "spec.nodeName"),
                value_env(ENV_CONTAINER_NAME, app_name),
                value_env(ENV_IMAGE, app_image),
                value_env("LINKGUARD_LOG_FORMAT", "json"),
                map([
                    ("name", s(&config.password_env)),
                    (
                        "valueFrom",
                        map([(
                            "secretKeyRef",
                            map([
                                ("name", s(SIGNING_SECRET_NAME)),
                                ("key", s("password")),
                                ("optional", Value::Bool(true)),
                            ]),
                        )]),
                    ),
                ]),
            ]),
        ),
        (
            "ports",
            seq([map([
                ("name", s(PORT_NAME)),
                ("containerPort", u64::from(config.port).into()),
                ("protocol", s("TCP")),
            ])]),
        ),
        ("livenessProbe", http_probe("/healthz", 10, 3)),
        ("readinessProbe", http_probe("/readyz", 5, 2)),
        (
            "resources",
            map([
                ("requests", map([("cpu", s("20m")), ("memory", s("48Mi"))])),
                ("limits", map([("memory", s("128Mi"))])),
            ]),
        ),
        (
            "securityContext",
            map([
                ("runAsUser", RUN_AS.into()),
                ("runAsGroup", RUN_AS.into()),
                ("runAsNonRoot", Value::Bool(true)),
                ("readOnlyRootFilesystem", Value::Bool(true)),
                // The image's binary carries file capabilities (cap_bpf, cap_perfmon, cap_sys_ptrace=p):
                // they are granted at exec only without no_new_privs, within the bounding set below.
                ("allowPrivilegeEscalation", Value::Bool(true)),
                (
                    "capabilities",
                    map([
                        ("drop", seq([s("ALL")])),
                        ("add", seq([s("BPF"), s("PERFMON"), s("SYS_PTRACE")])),
                    ]),
                ),
                // containerd's RuntimeDefault profile allows bpf() and perf_event_open() only with
                // CAP_SYS_ADMIN; see docs/runbook.md for a Localhost profile instead.
                ("seccompProfile", map([("type", s("Unconfined"))])),
            ]),
        ),
        (
            "volumeMounts",
            seq([
                mount(VOLUME_CONFIG, CONFIG_DIR, true),
                mount(VOLUME_SIGNING, SIGNING_DIR, true),
                mount(VOLUME_REGISTRY, REGISTRY_DIR, true),
                mount(VOLUME_OBSERVATIONS, &observations, false),
                mount(VOLUME_SPOOL, &spool, false),
            ]),
        ),
    ])
}

fn volumes(config: &SidecarConfig) -> [Value; 5] {
    let empty_dir = |mib: u64| map([("emptyDir", map([("sizeLimit", s(&format!("{mib}Mi")))]))]);
    let named = |name: &str, source: Value| {
        let mut volume = Mapping::new();
        volume.insert("name".into(), name.into());
        if let Value::Mapping(source) = source {
            volume.extend(source);
        }
        Value::Mapping(volume)
    };
    [
        named(
            VOLUME_CONFIG,
            map([("configMap", map([("name", s(CONFIG_MAP_NAME))]))]),
        ),
        named(
            VOLUME_SIGNING,
            map([("secret", map([("secretName", s(SIGNING_SECRET_NAME))]))]),
        ),
        // Required: `registry.dockerConfig` names a file in it, and a configured credentials file
        // that is missing stops the sidecar at startup. A registry without auth uses a Secret holding
        // `{"auths":{}}`.
        named(
            VOLUME_REGISTRY,
            map([("secret", map([("secretName", s(REGISTRY_SECRET_NAME))]))]),
        ),
        named(
            VOLUME_OBSERVATIONS,
            empty_dir(config.observations_limit_mib),
        ),
        named(VOLUME_SPOOL, empty_dir(config.spool_limit_mib)),
    ]
}
