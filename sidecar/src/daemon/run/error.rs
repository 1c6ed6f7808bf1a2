// SPDX-License-Identifier: Apache-2.0
//! What stops the sidecar, and with which exit status.

use std::path::PathBuf;

use linkguard_oci::auth::AuthError;

use crate::attest::AttestError;
use crate::daemon::spool::SpoolError;
use crate::probe::OutputError;

/// The daemon could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(
        "cannot use the signing key (signing.key {}): {source}; mount the key there or set signing.key \
         (and signing.passwordEnv for a cosign encrypted key)",
        path.display()
    )]
    SigningKey {
        path: PathBuf,
        #[source]
        source: AttestError,
    },
    #[error("cannot use functionMap.trustedKeys[{index}] ({}): {source}", path.display())]
    TrustedKey {
        index: usize,
        path: PathBuf,
        #[source]
        source: AttestError,
    },
    #[error("functionMap.file {}: {reason}", path.display())]
    MapFile { path: PathBuf, reason: String },
    #[error("{key} {}: cannot create the directory: {source}", path.display())]
    Directory {
        key: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("registry credentials (registry.dockerConfig / registry.pushDockerConfig): {source}")]
    Credentials {
        #[source]
        source: AuthError,
    },
    #[error("cannot build the registry client: {source}")]
    Client {
        #[source]
        source: linkguard_oci::Error,
    },
    #[error("http.listen: {source}")]
    Listen {
        #[source]
        source: std::io::Error,
    },
    #[error(
        "loading the BPF probes failed: {source}; the sidecar needs root, or CAP_BPF + CAP_PERFMON + \
         CAP_SYS_PTRACE (run `linkguard doctor` in the sidecar's container)"
    )]
    Probes {
        #[source]
        source: linkguard_bpf::BpfError,
    },
    #[error("observations.directory: {source}")]
    Output {
        #[source]
        source: OutputError,
    },
    #[error("spool.directory: {source}")]
    Spool {
        #[source]
        source: SpoolError,
    },
    #[error("installing the SIGTERM/SIGINT handlers: {source}")]
    Signals {
        #[source]
        source: std::io::Error,
    },
    #[error("the probe thread stopped unexpectedly")]
    ProbeThread,
}

impl DaemonError {
    /// Whether the configuration or an input file is at fault (exit status 2).
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            Self::SigningKey { .. }
                | Self::TrustedKey { .. }
                | Self::MapFile { .. }
                | Self::Directory { .. }
                | Self::Credentials { .. }
        )
    }
}
