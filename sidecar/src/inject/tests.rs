// SPDX-License-Identifier: Apache-2.0

use super::*;

const IMAGE: &str = "registry.example.com/linkguard/linkguard:0.1.0";

fn options() -> Options {
    Options::new(IMAGE)
}

fn run(input: &str) -> Injected {
    inject(input, "test.yaml", &options()).unwrap()
}

fn docs(yaml: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(yaml)
        .map(|d| <Value as serde::Deserialize>::deserialize(d).unwrap())
        .collect()
}

fn get<'v>(value: &'v Value, path: &str) -> &'v Value {
    path.split('.')
        .fold(value, |v, key| match key.parse::<usize>() {
            Ok(i) => &v[i],
            Err(_) => &v[key],
        })
}

const DEPLOYMENT: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
spec:
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: app
          image: registry.example.com/team/app:1.4.2
        - name: cache
          image: registry.example.com/team/cache:2
";

const SERVICE: &str = "\
# The web service.   (comments and odd spacing survive)
apiVersion: v1
kind:   Service
metadata: {name: web,   namespace: shop}
spec:
  ports: [{port: 80}]
";

fn sidecar(pod_spec: &Value) -> &Value {
    let init = pod_spec["initContainers"].as_sequence().unwrap();
    init.iter().find(|c| c["name"] == "linkguard").unwrap()
}

#[test]
fn splits_at_document_markers_only() {
    let input = "# head\n---\na: 1\n--- # second\nb: |\n  ----\n  text\n---\n...\n----\nc: 3";
    let chunks = split_documents(input);
    let texts: Vec<&str> = chunks.iter().map(|c| c.text).collect();
    assert_eq!(
        texts,
        [
            "# head\n",
            "---\na: 1\n",
            "--- # second\nb: |\n  ----\n  text\n",
            "---\n...\n----\nc: 3"
        ]
    );
    assert_eq!(
        chunks.iter().map(|c| c.line).collect::<Vec<_>>(),
        [1, 2, 4, 8]
    );
    assert!(!chunks[0].has_marker && chunks[1].has_marker);
    assert!(split_documents("").is_empty());
}

#[test]
fn deployment_gets_a_native_sidecar_with_the_app_identity() {
    let out = run(DEPLOYMENT);
    let docs = docs(&out.yaml);
    assert_eq!(docs.len(), 1);
    let spec = get(&docs[0], "spec.template.spec");
    assert_eq!(spec["shareProcessNamespace"], true);
    let sidecar = sidecar(spec);
    assert_eq!(sidecar["image"], IMAGE);
    assert_eq!(sidecar["restartPolicy"], "Always");
    assert_eq!(
        sidecar["args"],
        serde_yaml_ng::from_str::<Value>(
            "[sidecar, --config, /etc/linkguard/config/linkguard.yaml]"
        )
        .unwrap()
    );
    let env: Vec<(String, String)> = sidecar["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|e| {
            let value = e["value"]
                .as_str()
                .map(str::to_owned)
                .or_else(|| {
                    e["valueFrom"]["fieldRef"]["fieldPath"]
                        .as_str()
                        .map(|f| format!("field:{f}"))
                })
                .unwrap_or_else(|| "secret".to_owned());
            (e["name"].as_str().unwrap().to_owned(), value)
        })
        .collect();
    let env: Vec<(&str, &str)> = env.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    assert_eq!(
        env,
        [
            ("POD_NAME", "field:metadata.name"),
            ("POD_NAMESPACE", "field:metadata.namespace"),
            ("NODE_NAME", "field:spec.nodeName"),
            ("LINKGUARD_CONTAINER_NAME", "app"),
            ("LINKGUARD_APP_IMAGE", "registry.example.com/team/app:1.4.2"),
            ("LINKGUARD_LOG_FORMAT", "json"),
            ("LINKGUARD_KEY_PASSWORD", "secret"),
        ]
    );
    let caps = &sidecar["securityContext"]["capabilities"];
    assert_eq!(
        caps["drop"],
        serde_yaml_ng::from_str::<Value>("[ALL]").unwrap()
    );
    assert_eq!(
        caps["add"],
        serde_yaml_ng::from_str::<Value>("[BPF, PERFMON, SYS_PTRACE]").unwrap()
    );
    assert_eq!(sidecar["ports"][0]["containerPort"], 9464);
    assert_eq!(sidecar["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(sidecar["livenessProbe"]["httpGet"]["path"], "/healthz");
    let volumes: Vec<&str> = spec["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        volumes,
        [
            "linkguard-config",
            "linkguard-signing-key",
            "linkguard-registry",
            "linkguard-observations",
            "linkguard-spool"
        ]
    );
    // The registry Secret is required: registry.dockerConfig names a file in it, and a configured
    // credentials file that is missing stops the sidecar at startup.
    assert_eq!(
        spec["volumes"][2]["secret"],
        serde_yaml_ng::from_str::<Value>("{secretName: linkguard-registry}").unwrap()
    );
    // Every mount names a volume of the pod.
    for m in sidecar["volumeMounts"].as_sequence().unwrap() {
        assert!(volumes.contains(&m["name"].as_str().unwrap()), "{m:?}");
    }
    // The app containers are untouched.
    assert_eq!(
        spec["containers"],
        get(&docs_of(DEPLOYMENT), "spec.template.spec.containers").clone()
    );
    assert_eq!(
        out.changes,
        [Change {
            object: "deployment/web".into(),
            namespace: Some("shop".into()),
            action: Action::Injected
        }]
    );
}

fn docs_of(yaml: &str) -> Value {
    serde_yaml_ng::from_str(yaml).unwrap()
}

#[test]
fn every_workload_kind_is_injected_at_its_pod_spec() {
    let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: a, image: r.example/a:1}]\n";
    let template = "  template:\n    spec:\n      containers: [{name: a, image: r.example/a:1}]\n";
    let mut input = String::from(pod);
    for (api, kind) in [
        ("apps/v1", "Deployment"),
        ("apps/v1", "StatefulSet"),
        ("apps/v1", "DaemonSet"),
        ("apps/v1", "ReplicaSet"),
        ("batch/v1", "Job"),
    ] {
        input.push_str(&format!(
            "---\napiVersion: {api}\nkind: {kind}\nmetadata: {{name: w}}\nspec:\n{template}"
        ));
    }
    input.push_str(
        "---\napiVersion: batch/v1\nkind: CronJob\nmetadata: {name: c}\nspec:\n  schedule: '* * * * *'\n  \
         jobTemplate:\n    spec:\n      template:\n        spec:\n          containers: [{name: a, image: \
         r.example/a:1}]\n",
    );
    let out = run(&input);
    let docs = docs(&out.yaml);
    assert_eq!(docs.len(), 7);
    let paths = [
        "spec",
        "spec.template.spec",
        "spec.template.spec",
        "spec.template.spec",
        "spec.template.spec",
        "spec.template.spec",
        "spec.jobTemplate.spec.template.spec",
    ];
    for (doc, path) in docs.iter().zip(paths) {
        let spec = get(doc, path);
        assert_eq!(spec["shareProcessNamespace"], true, "{path}");
        assert_eq!(sidecar(spec)["env"][4]["value"], "r.example/a:1");
    }
    assert!(out.changes.iter().all(|c| c.action == Action::Injected));
    assert_eq!(out.changes.len(), 7);
}

#[test]
fn a_second_injection_gives_the_same_bytes() {
    let list = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: apps/v1\n  kind: DaemonSet\n  metadata: {name: d}\n  \
                spec:\n    template:\n      spec:\n        containers: [{name: a, image: r.example/a:1}]\n";
    let input = format!("{SERVICE}---\n{DEPLOYMENT}---\n{list}");
    let once = run(&input);
    let twice = run(&once.yaml);
    assert_eq!(twice.yaml, once.yaml);
    assert!(
        twice.changes.iter().all(|c| c.action == Action::Unchanged),
        "{:?}",
        twice.changes
    );

    let config = SidecarConfig::from_yaml("http:\n  listen: 0.0.0.0:9000\n", "c.yaml").unwrap();
    let options = Options {
        config,
        ..options()
    };
    let once = inject(&input, "in.yaml", &options).unwrap();
    let twice = inject(&once.yaml, "in.yaml", &options).unwrap();
    assert_eq!(twice.yaml, once.yaml);
}

#[test]
fn other_documents_pass_through_byte_for_byte() {
    let crd = "apiVersion: example.com/v1\nkind: Deployment   # not apps/v1\nmetadata: {name: x}\n";
    let old = "apiVersion: extensions/v1beta1\nkind: Deployment\nmetadata: {name: y}\n";
    let input = format!(
        "# leading comment\n---\n{SERVICE}---\n{crd}--- # marker comment\n{old}---\n\n...\n"
    );
    let out = run(&input);
    assert_eq!(out.yaml, input);
    assert!(out.changes.is_empty());
    assert_eq!(run("").yaml, "");
    assert_eq!(run("# only a comment\n").yaml, "# only a comment\n");
}

#[test]
fn injected_documents_keep_their_place_among_the_others() {
    let input = format!("{SERVICE}---\n{DEPLOYMENT}---\n{SERVICE}");
    let out = run(&input);
    assert!(out.yaml.starts_with(SERVICE), "{}", out.yaml);
    assert!(
        out.yaml.ends_with(&format!("---\n{SERVICE}")),
        "{}",
        out.yaml
    );
    assert_eq!(docs(&out.yaml).len(), 3);
}

#[test]
fn list_items_are_injected() {
    let input = format!(
        "apiVersion: v1\nkind: List\nitems:\n{}",
        [DEPLOYMENT, SERVICE]
            .iter()
            .map(|d| {
                let doc: Value = serde_yaml_ng::from_str(d).unwrap();
                serde_yaml_ng::to_string(&vec![doc]).unwrap()
            })
            .collect::<String>()
    );
    let out = run(&input);
    let list = docs_of(&out.yaml);
    assert_eq!(
        get(&list, "items.0.spec.template.spec.shareProcessNamespace"),
        &Value::Bool(true)
    );
    assert_eq!(get(&list, "items.1.kind"), "Service");
}

#[test]
fn an_existing_sidecar_is_replaced_in_place_and_other_init_containers_kept() {
    let input = DEPLOYMENT.replace(
        "      containers:\n",
        "      initContainers:\n        - name: migrate\n          image: r.example/m:1\n        - name: linkguard\n          \
         image: old.example/linkguard:0.0.1\n        - name: last\n          image: r.example/l:1\n      containers:\n",
    );
    let out = run(&input);
    let doc = docs_of(&out.yaml);
    let init = get(&doc, "spec.template.spec.initContainers")
        .as_sequence()
        .unwrap();
    let names: Vec<&str> = init.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["migrate", "linkguard", "last"]);
    assert_eq!(init[1]["image"], IMAGE);
}

#[test]
fn the_observed_container_can_be_chosen() {
    let options = Options {
        container: Some("cache".into()),
        ..options()
    };
    let out = inject(DEPLOYMENT, "d.yaml", &options).unwrap();
    let doc = docs_of(&out.yaml);
    let sidecar = sidecar(get(&doc, "spec.template.spec"));
    assert_eq!(sidecar["env"][3]["value"], "cache");
    assert_eq!(
        sidecar["env"][4]["value"],
        "registry.example.com/team/cache:2"
    );

    let missing = Options {
        container: Some("nope".into()),
        ..self::options()
    };
    let err = inject(DEPLOYMENT, "d.yaml", &missing)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no container named \"nope\"") && err.contains("app, cache"),
        "{err}"
    );
}

#[test]
fn opted_out_workloads_are_left_alone() {
    let input = DEPLOYMENT.replace(
        "  namespace: shop\n",
        "  namespace: shop\n  annotations:\n    linkguard.dev/inject: disabled\n",
    );
    let out = run(&input);
    assert_eq!(out.yaml, input);
    assert_eq!(out.changes[0].action, Action::Disabled);
    let input = DEPLOYMENT.replace(
        "      labels: {app: web}\n",
        "      labels: {app: web}\n      annotations: {linkguard.dev/inject: Disabled}\n",
    );
    assert_eq!(run(&input).yaml, input);
}

#[test]
fn malformed_yaml_names_the_document_and_the_line() {
    let input = format!("{SERVICE}---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: [unclosed\n");
    let err = inject(&input, "bad.yaml", &options()).unwrap_err();
    let InjectError::Yaml {
        document,
        line,
        ref message,
        ..
    } = err
    else {
        panic!("{err}");
    };
    assert_eq!((document, line), (2, 7));
    // The parser's own location is in stream lines too (the error is at line 11 or at the end).
    assert!(message.contains("line 1"), "{message}");
    let text = err.to_string();
    assert!(
        text.starts_with("bad.yaml: document 2 (from line 7) is not valid YAML:"),
        "{text}"
    );

    let err = inject("a: [1\n", "x.yaml", &options())
        .unwrap_err()
        .to_string();
    assert!(err.contains("document 1 (from line 1)"), "{err}");
}

#[test]
fn workloads_that_cannot_take_the_sidecar_are_refused_with_the_reason() {
    let cases = [
        (
            DEPLOYMENT.replace(
                "      containers:\n",
                "      hostPID: true\n      containers:\n",
            ),
            "hostPID",
        ),
        (
            DEPLOYMENT.replace("- name: cache", "- name: linkguard"),
            "already named \"linkguard\"",
        ),
        (
            DEPLOYMENT.replace("registry.example.com/team/app:1.4.2", "nginx:1.27"),
            "docker.io/library/nginx",
        ),
        (
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: e}\nspec: {}\n".to_owned(),
            "spec.template is missing",
        ),
        (
            "apiVersion: v1\nkind: Pod\nmetadata: {name: e}\nspec: {containers: []}\n".to_owned(),
            "containers is missing or empty",
        ),
        (
            DEPLOYMENT.replace(
                "      containers:\n",
                "      volumes: {a: 1}\n      containers:\n",
            ),
            "spec.template.spec: volumes is not a list",
        ),
    ];
    for (input, expected) in cases {
        let input = format!("{SERVICE}---\n{input}");
        let err = inject(&input, "w.yaml", &options())
            .unwrap_err()
            .to_string();
        assert!(err.contains(expected), "{err}");
        assert!(
            err.starts_with("w.yaml: document 2 (from line 7), "),
            "{err}"
        );
    }
}

#[test]
fn a_config_adds_one_config_map_per_namespace_and_sets_the_port() {
    let text =
        "# mine\nhttp:\n  listen: 0.0.0.0:9100\nspool:\n  directory: /var/lib/linkguard/outbox\n";
    let options = Options {
        config: SidecarConfig::from_yaml(text, "lg.yaml").unwrap(),
        ..options()
    };
    let other_ns = DEPLOYMENT.replace("namespace: shop", "namespace: blog");
    let input = format!("{SERVICE}---\n{DEPLOYMENT}---\n{DEPLOYMENT}---\n{other_ns}");
    let out = inject(&input, "in.yaml", &options).unwrap();
    let docs = docs(&out.yaml);
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "Service",
            "ConfigMap",
            "Deployment",
            "Deployment",
            "ConfigMap",
            "Deployment"
        ]
    );
    assert_eq!(docs[1]["metadata"]["namespace"], "shop");
    assert_eq!(docs[4]["metadata"]["namespace"], "blog");
    assert_eq!(docs[1]["data"]["linkguard.yaml"], text);
    let sidecar = sidecar(get(&docs[2], "spec.template.spec"));
    assert_eq!(sidecar["ports"][0]["containerPort"], 9100);
    let spool_mount = sidecar["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "linkguard-spool")
        .unwrap();
    assert_eq!(spool_mount["mountPath"], "/var/lib/linkguard/outbox");

    // A ConfigMap already in the stream is updated, not duplicated.
    let existing = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: linkguard-config, namespace: shop}\ndata: {linkguard.yaml: old}\n";
    let out = inject(&format!("{existing}---\n{DEPLOYMENT}"), "in.yaml", &options).unwrap();
    let docs = self::docs(&out.yaml);
    assert_eq!(docs.len(), 2);
    assert_eq!(docs[0]["data"]["linkguard.yaml"], text);
    assert_eq!(out.changes[0].action, Action::ConfigMapUpdated);
}

#[test]
fn configs_that_the_pod_spec_cannot_serve_are_refused() {
    let cases = [
        (
            "http: {listen: 127.0.0.1:9464}\n",
            "http.listen: 127.0.0.1:9464",
        ),
        (
            "signing: {key: /keys/key.pem}\n",
            "signing.key: /keys/key.pem is not in a volume",
        ),
        (
            "registry: {dockerConfig: /root/.docker/config.json}\n",
            "registry.dockerConfig",
        ),
        (
            "functionMap: {file: /etc/linkguard/config/../../map.json}\n",
            "functionMap.file",
        ),
        (
            "spool: {directory: /etc/linkguard/config/spool}\n",
            "inside a read-only mount",
        ),
        (
            "verify: {intervalSeconds: 0}\n",
            "verify.intervalSeconds: must be > 0",
        ),
        ("nope: 1\n", "nope"),
    ];
    for (text, expected) in cases {
        let err = SidecarConfig::from_yaml(text, "lg.yaml")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("sidecar config lg.yaml: "), "{err}");
        assert!(err.contains(expected), "{text}: {err}");
    }
    // The documented example config is accepted as it is.
    let example = include_str!("../../../examples/linkguard.yaml");
    SidecarConfig::from_yaml(example, "examples/linkguard.yaml").unwrap();
    // Functions maps and registry credentials inside the mounted volumes are fine.
    SidecarConfig::from_yaml(
        "functionMap: {file: /etc/linkguard/config/map.json}\nregistry: {dockerConfig: \
         /etc/linkguard/registry/.dockerconfigjson}\n",
        "lg.yaml",
    )
    .unwrap();
}
