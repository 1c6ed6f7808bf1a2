// SPDX-License-Identifier: Apache-2.0
//! Registry credentials: where they come from, and which one was used.
//!
//! For one registry host, [`CredentialSources::resolve`] tries, in order: explicit credentials
//! (command-line flags), environment variables, a docker `config.json`, a Kubernetes
//! `dockerconfigjson` secret file. The first source that has credentials for the host wins; if none
//! has any, access is anonymous and says so. Pull and push credentials are resolved separately
//! ([`AuthConfig`]): pull secrets rarely grant push, so push reuses the pull credentials only when
//! the user asks for it.
//!
//! The result is an oci-client [`RegistryAuth`]; oci-client itself answers the registry's
//! `WWW-Authenticate` challenge (HTTP basic, or the bearer-token flow with these credentials sent
//! to the token realm). Note that an `oci_client::Client` remembers the first credentials it was
//! given per registry, so pull and push with different credentials need two clients.

pub mod challenge;
pub mod dockerconfig;

use std::fmt;
use std::path::{Path, PathBuf};

use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;

use dockerconfig::{DockerConfig, EntryCredentials, FileKind, normalize_registry};

/// Errors of credential resolution and of registry access refused for those credentials.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// A credentials file named by the user (or the default one, when present) could not be read.
    #[error("cannot read registry credentials file {path}: {source}")]
    ReadConfig {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A docker config or Kubernetes secret file is not what it should be.
    #[error("malformed registry credentials file {path}: {problem}; fix or remove the entry")]
    MalformedConfig {
        /// The file.
        path: PathBuf,
        /// What is wrong with it, naming the entry.
        problem: String,
    },
    /// The file delegates this registry to a docker credential helper, which linkguard does not run.
    #[error(
        "{path} delegates credentials for {registry} to the docker credential helper \"{helper}\", which linkguard \
         does not run; put the credentials inline (\"auth\") or pass them with flags or environment variables"
    )]
    CredentialHelperUnsupported {
        /// The file.
        path: PathBuf,
        /// The registry asked for.
        registry: String,
        /// The helper name (`docker-credential-<helper>`).
        helper: String,
    },
    /// The entry holds an OAuth2 refresh token, which oci-client cannot exchange for an access token.
    #[error(
        "{path} holds an identity token (OAuth2 refresh token) for {registry} (entry \"{entry}\"), which linkguard \
         cannot use; log in with a username and password or access token instead"
    )]
    IdentityTokenUnsupported {
        /// The file.
        path: PathBuf,
        /// The registry asked for.
        registry: String,
        /// The `auths` key.
        entry: String,
    },
    /// Only some of the environment variables of one credential were set.
    #[error(
        "incomplete registry credentials in the environment: {set} is set but {missing} is not"
    )]
    IncompleteEnvironment {
        /// The variable that is set.
        set: String,
        /// The variable that is missing.
        missing: String,
    },
    /// An insecure-registry entry is not a registry address.
    #[error("invalid insecure registry \"{entry}\": expected host, host:port or [ipv6]:port")]
    InvalidRegistry {
        /// The entry as given.
        entry: String,
    },
    /// The registry refused the credentials (401/403 or a failed token exchange).
    #[error("{operation} of {registry}/{repository} failed: {credentials} were refused{hint}")]
    Refused {
        /// What was attempted.
        operation: Access,
        /// The registry host.
        registry: String,
        /// The repository.
        repository: String,
        /// Which credentials, from which source (see [`ResolvedCredentials`]'s `Display`).
        credentials: String,
        /// What the user can do.
        hint: &'static str,
        /// oci-client's error.
        #[source]
        source: Box<OciDistributionError>,
    },
}

/// A registry operation, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// Reading manifests and blobs.
    Pull,
    /// Writing manifests and blobs.
    Push,
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Pull => "pull",
            Self::Push => "push",
        })
    }
}

/// Registry credentials. `Debug` never shows a password or token.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// No credentials.
    Anonymous,
    /// HTTP basic credentials, also sent to a bearer-token realm.
    Basic {
        /// User name.
        username: String,
        /// Password or access token.
        password: String,
    },
    /// A registry bearer token, sent as is.
    Bearer {
        /// The token.
        token: String,
    },
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Anonymous => f.write_str("Anonymous"),
            Self::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            Self::Bearer { .. } => f
                .debug_struct("Bearer")
                .field("token", &"<redacted>")
                .finish(),
        }
    }
}

impl Credentials {
    /// The oci-client equivalent.
    pub fn to_registry_auth(&self) -> RegistryAuth {
        match self {
            Self::Anonymous => RegistryAuth::Anonymous,
            Self::Basic { username, password } => {
                RegistryAuth::Basic(username.clone(), password.clone())
            }
            Self::Bearer { token } => RegistryAuth::Bearer(token.clone()),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Self::Anonymous => "anonymous",
            Self::Basic { .. } => "basic",
            Self::Bearer { .. } => "bearer-token",
        }
    }
}

/// Where credentials came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialSource {
    /// Command-line flags.
    Explicit,
    /// Environment variables (names listed).
    Environment {
        /// The variables read, e.g. `LINKGUARD_REGISTRY_USERNAME/LINKGUARD_REGISTRY_PASSWORD`.
        variables: String,
    },
    /// A docker config file entry.
    DockerConfig {
        /// The file.
        path: PathBuf,
        /// The `auths` key that matched.
        entry: String,
    },
    /// A Kubernetes dockerconfigjson secret file entry.
    KubernetesSecret {
        /// The file.
        path: PathBuf,
        /// The `auths` key that matched.
        entry: String,
    },
    /// Push reuses the pull credentials because the user allowed it.
    ReusedPull(Box<CredentialSource>),
    /// Given to the client by the program (`Client::new`), for every registry.
    Programmatic,
    /// No source had credentials for the registry.
    NoneConfigured,
}

impl fmt::Display for CredentialSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Explicit => f.write_str("command-line flags"),
            Self::Environment { variables } => write!(f, "environment {variables}"),
            Self::DockerConfig { path, entry } | Self::KubernetesSecret { path, entry } => {
                write!(f, "{} (entry \"{entry}\")", path.display())
            }
            Self::ReusedPull(inner) => write!(f, "{inner}, the pull credentials reused for push"),
            Self::Programmatic => f.write_str("the program's client configuration"),
            Self::NoneConfigured => f.write_str("no configured source"),
        }
    }
}

/// Credentials chosen for one registry, with their source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedCredentials {
    /// The registry host they are for.
    pub registry: String,
    /// The credentials.
    pub credentials: Credentials,
    /// Where they came from.
    pub source: CredentialSource,
}

impl fmt::Display for ResolvedCredentials {
    /// E.g. `basic credentials from /root/.docker/config.json (entry "127.0.0.1:5000") for 127.0.0.1:5000`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.credentials, &self.source) {
            (Credentials::Anonymous, CredentialSource::NoneConfigured) => {
                write!(
                    f,
                    "anonymous access (no credentials configured) for {}",
                    self.registry
                )
            }
            (credentials, source) => write!(
                f,
                "{} credentials from {source} for {}",
                credentials.kind(),
                self.registry
            ),
        }
    }
}

impl ResolvedCredentials {
    /// The oci-client equivalent.
    pub fn registry_auth(&self) -> RegistryAuth {
        self.credentials.to_registry_auth()
    }

    /// Turns oci-client's error into one naming the registry, repository, operation and credential
    /// source when the registry refused the credentials; other errors come back unchanged.
    pub fn explain(
        &self,
        operation: Access,
        repository: &str,
        error: OciDistributionError,
    ) -> Result<OciDistributionError, AuthError> {
        if !is_auth_refusal(&error) {
            return Ok(error);
        }
        let hint = match self.credentials {
            Credentials::Anonymous if operation == Access::Push => {
                "; configure push credentials (LINKGUARD_PUSH_REGISTRY_USERNAME/PASSWORD, or a docker config.json \
                 or dockerconfigjson secret for pushing)"
            }
            Credentials::Anonymous => {
                "; configure credentials (flags, LINKGUARD_REGISTRY_USERNAME/PASSWORD, a docker config.json or a \
                 dockerconfigjson secret)"
            }
            _ if operation == Access::Push => {
                "; check that they are valid and grant push to this repository"
            }
            _ => "; check that they are valid and grant pull to this repository",
        };
        Err(AuthError::Refused {
            operation,
            registry: self.registry.clone(),
            repository: repository.to_owned(),
            credentials: self.to_string(),
            hint,
            source: Box::new(error),
        })
    }
}

/// Whether oci-client's error means the registry refused the credentials (401, 403, a failed
/// token exchange, or an UNAUTHORIZED/DENIED error envelope).
pub fn is_auth_refusal(error: &OciDistributionError) -> bool {
    use oci_client::errors::OciErrorCode;
    match error {
        OciDistributionError::UnauthorizedError { .. }
        | OciDistributionError::AuthenticationFailure(_) => true,
        OciDistributionError::ServerError { code, .. } => matches!(code, 401 | 403),
        OciDistributionError::RegistryError { envelope, .. } => envelope
            .errors
            .iter()
            .any(|e| matches!(e.code, OciErrorCode::Unauthorized | OciErrorCode::Denied)),
        OciDistributionError::RequestError(e) => {
            e.status().is_some_and(|s| matches!(s.as_u16(), 401 | 403))
        }
        _ => false,
    }
}

/// Where to look for the credentials of one operation (pull or push).
#[derive(Debug, Clone, Default)]
pub struct CredentialSources {
    /// Credentials from flags; used for every registry of the command.
    pub explicit: Option<Credentials>,
    /// Prefix of the environment variables: `<prefix>_USERNAME`, `<prefix>_PASSWORD`,
    /// `<prefix>_TOKEN`, and `<prefix>_HOST` which, when set, limits them to that registry.
    /// `None` disables the environment source.
    pub env_prefix: Option<String>,
    /// A docker config.json named by the user: must exist.
    pub docker_config: Option<PathBuf>,
    /// Also look at `$DOCKER_CONFIG/config.json`, else `$HOME/.docker/config.json`, when present.
    pub default_docker_config: bool,
    /// A Kubernetes dockerconfigjson secret file (mounted `.dockerconfigjson`, or the Secret JSON).
    pub kubernetes_secret: Option<PathBuf>,
}

/// The environment variable prefix for pull credentials.
pub const PULL_ENV_PREFIX: &str = "LINKGUARD_REGISTRY";
/// The environment variable prefix for push credentials.
pub const PUSH_ENV_PREFIX: &str = "LINKGUARD_PUSH_REGISTRY";

impl CredentialSources {
    /// Flags and the given environment prefix, then the default docker config.
    pub fn with_env_prefix(prefix: &str) -> Self {
        Self {
            env_prefix: Some(prefix.to_owned()),
            default_docker_config: true,
            ..Self::default()
        }
    }

    /// Resolves the credentials for `registry` (as oci-client's `Reference::resolve_registry`
    /// gives it). `env` looks up an environment variable ([`process_env`] outside tests).
    pub fn resolve(
        &self,
        registry: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<ResolvedCredentials>, AuthError> {
        let found = |credentials: Credentials, source: CredentialSource| ResolvedCredentials {
            registry: registry.to_owned(),
            credentials,
            source,
        };
        if let Some(credentials) = &self.explicit {
            return Ok(Some(found(credentials.clone(), CredentialSource::Explicit)));
        }
        if let Some(prefix) = &self.env_prefix
            && let Some((credentials, source)) = from_env(prefix, registry, env)?
        {
            return Ok(Some(found(credentials, source)));
        }
        let mut files: Vec<(PathBuf, FileKind, bool)> = Vec::new();
        if let Some(path) = &self.docker_config {
            files.push((path.clone(), FileKind::DockerConfig, true));
        } else if self.default_docker_config
            && let Some(path) = default_docker_config_path(env)
        {
            files.push((path, FileKind::DockerConfig, false));
        }
        if let Some(path) = &self.kubernetes_secret {
            files.push((path.clone(), FileKind::KubernetesSecret, true));
        }
        for (path, kind, required) in files {
            if !required && !path.exists() {
                continue;
            }
            let config = DockerConfig::load(&path, kind)?;
            if let Some((credentials, source)) = from_file(&config, registry)? {
                return Ok(Some(found(credentials, source)));
            }
        }
        Ok(None)
    }
}

fn from_env(
    prefix: &str,
    registry: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<(Credentials, CredentialSource)>, AuthError> {
    let var = |suffix: &str| {
        let name = format!("{prefix}_{suffix}");
        let value = env(&name).filter(|v| !v.is_empty());
        (name, value)
    };
    let (host_var, host) = var("HOST");
    if let Some(host) = host
        && normalize_registry(&host) != normalize_registry(registry)
    {
        tracing::debug!(%host_var, %host, registry, "environment credentials are scoped to another registry");
        return Ok(None);
    }
    let scoped = |names: String| {
        if env(&host_var).is_some_and(|v| !v.is_empty()) {
            format!("{names} (scoped by {host_var})")
        } else {
            names
        }
    };
    let (user_var, user) = var("USERNAME");
    let (pass_var, pass) = var("PASSWORD");
    let (token_var, token) = var("TOKEN");
    match (user, pass, token) {
        (Some(username), Some(password), _) => Ok(Some((
            Credentials::Basic { username, password },
            CredentialSource::Environment {
                variables: scoped(format!("{user_var}/{pass_var}")),
            },
        ))),
        (Some(_), None, _) => Err(AuthError::IncompleteEnvironment {
            set: user_var,
            missing: pass_var,
        }),
        (None, Some(_), _) => Err(AuthError::IncompleteEnvironment {
            set: pass_var,
            missing: user_var,
        }),
        (None, None, Some(token)) => Ok(Some((
            Credentials::Bearer { token },
            CredentialSource::Environment {
                variables: scoped(token_var),
            },
        ))),
        (None, None, None) => Ok(None),
    }
}

fn from_file(
    config: &DockerConfig,
    registry: &str,
) -> Result<Option<(Credentials, CredentialSource)>, AuthError> {
    let source = |entry: &str| {
        let (path, entry) = (config.path.clone(), entry.to_owned());
        match config.kind {
            FileKind::DockerConfig => CredentialSource::DockerConfig { path, entry },
            FileKind::KubernetesSecret => CredentialSource::KubernetesSecret { path, entry },
        }
    };
    if let Some(helper) = config.helper_for(registry) {
        return Err(AuthError::CredentialHelperUnsupported {
            path: config.path.clone(),
            registry: registry.to_owned(),
            helper: helper.to_owned(),
        });
    }
    let Some(entry) = config.find(registry) else {
        return Ok(None);
    };
    match &entry.credentials {
        EntryCredentials::Usable(credentials) => {
            Ok(Some((credentials.clone(), source(&entry.key))))
        }
        EntryCredentials::IdentityToken => Err(AuthError::IdentityTokenUnsupported {
            path: config.path.clone(),
            registry: registry.to_owned(),
            entry: entry.key.clone(),
        }),
        // An empty entry without a credential helper: docker treats it as "no credentials".
        EntryCredentials::Empty => Ok(None),
    }
}

/// `$DOCKER_CONFIG/config.json`, else `$HOME/.docker/config.json` (docker/cli `config.Dir`).
pub fn default_docker_config_path(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    if let Some(dir) = env("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Some(Path::new(&dir).join("config.json"));
    }
    env("HOME")
        .filter(|h| !h.is_empty())
        .map(|home| Path::new(&home).join(".docker").join("config.json"))
}

/// Reads the process environment.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Pull and push credential sources.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// Sources for pulling.
    pub pull: CredentialSources,
    /// Sources for pushing.
    pub push: CredentialSources,
    /// Push with the pull credentials when no push source has any.
    pub push_falls_back_to_pull: bool,
}

impl Default for AuthConfig {
    /// `LINKGUARD_REGISTRY_*` for pull, `LINKGUARD_PUSH_REGISTRY_*` for push, the default docker
    /// config for both, no fallback.
    fn default() -> Self {
        Self {
            pull: CredentialSources::with_env_prefix(PULL_ENV_PREFIX),
            push: CredentialSources::with_env_prefix(PUSH_ENV_PREFIX),
            push_falls_back_to_pull: false,
        }
    }
}

/// The credentials for pulling from and pushing to one registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialSet {
    /// For pulls.
    pub pull: ResolvedCredentials,
    /// For pushes.
    pub push: ResolvedCredentials,
}

impl AuthConfig {
    /// Resolves pull and push credentials for `registry`.
    pub fn resolve(
        &self,
        registry: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<CredentialSet, AuthError> {
        let anonymous = || ResolvedCredentials {
            registry: registry.to_owned(),
            credentials: Credentials::Anonymous,
            source: CredentialSource::NoneConfigured,
        };
        let pull = self.pull.resolve(registry, env)?.unwrap_or_else(anonymous);
        let push = match self.push.resolve(registry, env)? {
            Some(push) => push,
            None if self.push_falls_back_to_pull
                && pull.source != CredentialSource::NoneConfigured =>
            {
                ResolvedCredentials {
                    source: CredentialSource::ReusedPull(Box::new(pull.source.clone())),
                    ..pull.clone()
                }
            }
            None => anonymous(),
        };
        tracing::debug!(registry, pull = %pull, push = %push, "resolved registry credentials");
        Ok(CredentialSet { pull, push })
    }
}

#[cfg(test)]
mod tests;
