// SPDX-License-Identifier: Apache-2.0
//! Registry clients and trusted map keys, built once at startup from the configuration.

use std::path::PathBuf;
use std::time::Duration;

use tracing::info;

use linkguard_oci::auth::{
    AuthConfig, CredentialSources, PULL_ENV_PREFIX, PUSH_ENV_PREFIX, process_env,
};
use linkguard_oci::{Client, ClientConfig};

use crate::attest::VerifyingKey;
use crate::daemon::config::{TrustedKey, Validated};

use super::DaemonError;

pub(super) fn load_trusted_keys(keys: &[TrustedKey]) -> Result<Vec<VerifyingKey>, DaemonError> {
    keys.iter()
        .enumerate()
        .map(|(index, key)| match key {
            TrustedKey::Inline(key) => Ok(key.clone()),
            TrustedKey::File(path) => {
                VerifyingKey::from_pem_file(path).map_err(|source| DaemonError::TrustedKey {
                    index,
                    path: path.clone(),
                    source,
                })
            }
        })
        .collect()
}

/// Pull and push clients (pull secrets rarely grant push: they are resolved separately).
pub(super) struct Registry {
    pub(super) pull: Client,
    /// Taken by the publisher.
    pub(super) push: Option<Client>,
    pub(super) timeout: Duration,
}

impl Registry {
    pub(super) fn new(settings: &Validated) -> Result<Self, DaemonError> {
        let registry = &settings.config.registry;
        let sources = |file: Option<&PathBuf>, prefix: &str| CredentialSources {
            env_prefix: Some(prefix.to_owned()),
            docker_config: file.cloned(),
            default_docker_config: file.is_none(),
            ..CredentialSources::default()
        };
        let push_file = registry
            .push_docker_config
            .as_ref()
            .or(registry.docker_config.as_ref());
        let auth = AuthConfig {
            pull: sources(registry.docker_config.as_ref(), PULL_ENV_PREFIX),
            push: sources(push_file, PUSH_ENV_PREFIX),
            push_falls_back_to_pull: false,
        };
        let creds = auth
            .resolve(settings.image.registry(), &process_env)
            .map_err(|source| DaemonError::Credentials { source })?;
        info!(pull = %creds.pull, push = %creds.push, "registry credentials");
        let timeout = settings.registry_timeout();
        let mut config = ClientConfig {
            insecure: settings.insecure.clone(),
            connect_timeout: timeout,
            read_timeout: timeout,
            ..ClientConfig::default()
        };
        // The client's own retries stay within one operation's budget; the sidecar retries beyond it.
        config.retry.max_total = config.retry.max_total.min(timeout);
        let client = || {
            Client::with_credential_sets(config.clone(), [creds.clone()])
                .map_err(|source| DaemonError::Client { source })
        };
        Ok(Self {
            pull: client()?,
            push: Some(client()?),
            timeout,
        })
    }
}
