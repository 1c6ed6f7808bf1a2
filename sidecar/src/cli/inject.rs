// SPDX-License-Identifier: Apache-2.0
//! `linkguard inject`: adds the linkguard sidecar to Kubernetes manifests (see `linkguard::inject`).

use std::io::{Read as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use linkguard::inject::{Options, SidecarConfig, default_image, inject};

use super::EXIT_OK;

/// Exit status: 0 injected (or nothing to inject), 2 bad input (malformed YAML, a workload that cannot
/// take the sidecar, an invalid sidecar config).
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  linkguard inject -f deployment.yaml | kubectl apply -f -
  kubectl get deploy web -o yaml | linkguard inject -f - --config linkguard.yaml | kubectl apply -f -
  kustomize build overlays/prod | linkguard inject -f - --image registry.example.com/linkguard:0.1.0

Adds to every Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, Job and CronJob (also as items of a
List): shareProcessNamespace, the `linkguard` native sidecar (an init container with restartPolicy
Always, Kubernetes 1.29+), its volumes (ConfigMap linkguard-config, Secrets linkguard-signing-key and
linkguard-registry, emptyDirs for observations and the spool) and its environment. Other objects pass
through byte for byte. Injecting again changes nothing. A workload annotated
`linkguard.dev/inject: disabled` is left alone.

Exit status: 0 success, 2 bad input. See docs/runbook.md.")]
pub struct InjectArgs {
    /// Manifests to inject (multi-document YAML), or - for standard input.
    #[arg(short = 'f', long = "filename", value_name = "FILE|-")]
    filename: String,
    /// The sidecar config (linkguard.yaml, see examples/linkguard.yaml). It is checked like `linkguard
    /// sidecar --check` does, its paths and port go into the pod spec, and it is written into a ConfigMap
    /// linkguard-config per namespace (or into the one already in the input). Without it the pods
    /// expect a ConfigMap holding a config with the default paths and port.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The linkguard container image (built from the repository's Dockerfile).
    #[arg(long, value_name = "REF", default_value_t = default_image())]
    image: String,
    /// The container whose processes are observed. Default: the first container of each pod.
    #[arg(long, value_name = "NAME")]
    container: Option<String>,
    /// Write the result to FILE (atomically) instead of standard output.
    #[arg(long, value_name = "FILE")]
    output: Option<PathBuf>,
}

pub fn run(args: InjectArgs) -> anyhow::Result<ExitCode> {
    if let Err(err) = args.image.parse::<linkguard_oci::Reference>() {
        anyhow::bail!("--image {}: {err}", args.image);
    }
    let (input, source_name) = if args.filename == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the manifests from standard input")?;
        (text, "<stdin>".to_owned())
    } else {
        let text = std::fs::read_to_string(&args.filename)
            .with_context(|| format!("cannot read the manifests {}", args.filename))?;
        (text, args.filename.clone())
    };
    let config = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the sidecar config {}", path.display()))?;
            SidecarConfig::from_yaml(&text, &path.display().to_string())?
        }
        None => SidecarConfig::default(),
    };
    let options = Options {
        image: args.image,
        container: args.container,
        config,
    };
    let injected = inject(&input, &source_name, &options)?;
    match &args.output {
        Some(path) => super::write_atomically(path, injected.yaml.as_bytes(), 0o644, true)
            .context("cannot write the injected manifests")?,
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(injected.yaml.as_bytes())
                .and_then(|()| out.flush())
                .context("cannot write to standard output")?;
        }
    }
    for change in &injected.changes {
        eprintln!("{change}");
    }
    if injected.changes.is_empty() {
        eprintln!("{source_name}: no workload to inject");
    }
    Ok(EXIT_OK)
}
