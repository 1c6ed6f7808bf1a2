// SPDX-License-Identifier: Apache-2.0
//! The crate's error type: every registry failure names the registry, the repository and the operation.

use std::fmt;

/// What the client was doing when a registry failed; part of every registry error message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Resolving a tag to a manifest digest.
    Resolve,
    /// Uploading a blob or a manifest of an artifact.
    PushArtifact,
    /// Probing `GET /v2/<name>/referrers/<digest>` for referrers API support.
    ProbeReferrersApi,
    /// Reading or writing the `sha256-<hex>` referrers fallback tag.
    UpdateFallbackIndex,
    /// Listing the referrers of a subject.
    ListReferrers,
    /// Pulling a manifest or blob of an artifact.
    PullArtifact,
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Resolve => "resolve",
            Self::PushArtifact => "push artifact",
            Self::ProbeReferrersApi => "probe referrers API",
            Self::UpdateFallbackIndex => "update referrers fallback tag",
            Self::ListReferrers => "list referrers",
            Self::PullArtifact => "pull artifact",
        })
    }
}

/// Where a registry error happened: registry host, repository and operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    /// Registry host, with port when one was given (`127.0.0.1:5000`).
    pub registry: String,
    /// Repository name inside the registry (`team/app`).
    pub repository: String,
    /// The operation that failed.
    pub operation: Operation,
}

impl fmt::Display for Site {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} on {}/{}",
            self.operation, self.registry, self.repository
        )
    }
}

/// Errors of linkguard-oci.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The text is not an image reference this crate accepts.
    #[error(
        "invalid image reference `{input}`: {reason} (expected registry/repository:tag or registry/repository@sha256:<hex>)"
    )]
    InvalidReference {
        /// The rejected text.
        input: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// The text is not a `sha256:<64 lowercase hex>` digest.
    #[error("invalid digest `{input}`: expected sha256:<64 lowercase hex digits>")]
    InvalidDigest {
        /// The rejected text.
        input: String,
    },
    /// The HTTP client could not be built (TLS backend or proxy configuration).
    #[error("cannot build the HTTP client: {source}")]
    HttpClient {
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// oci-client's HTTP client could not be built.
    #[error("cannot build oci-client's HTTP client: {source}")]
    OciClient {
        /// The cause.
        #[source]
        source: oci_client::errors::OciDistributionError,
    },
    /// oci-client reported a failure.
    #[error("{site}: {source}")]
    Registry {
        /// Where it failed.
        site: Box<Site>,
        /// oci-client's error.
        #[source]
        source: oci_client::errors::OciDistributionError,
    },
    /// A request could not be sent or its answer not read (connection refused, reset, timeout).
    #[error("{site}: request to {url} failed; check that the registry is reachable: {source}")]
    Http {
        /// Where it failed.
        site: Box<Site>,
        /// The URL requested.
        url: String,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// The registry answered with an HTTP status the operation cannot use.
    #[error("{site}: {url} answered HTTP {status}")]
    UnexpectedStatus {
        /// Where it failed.
        site: Box<Site>,
        /// The URL requested.
        url: String,
        /// The HTTP status code.
        status: u16,
    },
    /// The manifest or blob does not exist.
    #[error("{site}: `{reference}` not found")]
    NotFound {
        /// Where it failed.
        site: Box<Site>,
        /// The tag or digest looked up.
        reference: String,
    },
    /// A reply was larger than the configured limit; nothing beyond the limit was read.
    #[error("{site}: {what} exceeds the limit of {limit} bytes; refusing it")]
    TooLarge {
        /// Where it failed.
        site: Box<Site>,
        /// What was being read (`manifest sha256:...`, `blob sha256:...`).
        what: String,
        /// The limit in bytes.
        limit: u64,
    },
    /// Content did not hash to the digest that names it (a corrupt or hostile registry).
    #[error("{site}: content of {what} hashes to {actual}, expected {expected}; refusing it")]
    DigestMismatch {
        /// Where it failed.
        site: Box<Site>,
        /// What was being read.
        what: String,
        /// The digest that was requested.
        expected: String,
        /// The digest of the bytes received.
        actual: String,
    },
    /// A blob's length differs from the size its descriptor declares.
    #[error("{site}: {what} is {actual} bytes, its descriptor says {expected}; refusing it")]
    SizeMismatch {
        /// Where it failed.
        site: Box<Site>,
        /// What was being read.
        what: String,
        /// The declared size.
        expected: u64,
        /// The size received.
        actual: u64,
    },
    /// A manifest or index is not what the OCI image spec requires here.
    #[error("{site}: {what} is not a valid {expected}: {reason}")]
    InvalidManifest {
        /// Where it failed.
        site: Box<Site>,
        /// What was being read.
        what: String,
        /// What was expected (`OCI image manifest`, `OCI image index`).
        expected: &'static str,
        /// Why it was rejected.
        reason: String,
    },
    /// The referrers fallback tag could not be updated without losing the new entry.
    #[error(
        "{site}: the entry {digest} did not stay in the fallback tag {tag} after {attempts} attempts (concurrent writers); retry the push"
    )]
    FallbackIndexLost {
        /// Where it failed.
        site: Box<Site>,
        /// The fallback tag (`sha256-<hex>`).
        tag: String,
        /// The artifact manifest digest that should be listed.
        digest: String,
        /// How many read-modify-write rounds were tried.
        attempts: u32,
    },
    /// An OCI image layout (a bundle archive or its unpacked content) was refused.
    #[error(transparent)]
    Layout(#[from] crate::layout::LayoutError),
    /// A copy reached one of its limits (`CopyOptions`).
    #[error("copying {image}: more than {limit} {what}; refusing to continue")]
    CopyLimit {
        /// The image being copied.
        image: String,
        /// What was counted.
        what: &'static str,
        /// The limit.
        limit: usize,
    },
    /// Credentials could not be resolved, or the registry refused them; names the credential
    /// source that was tried.
    #[error("{site}: {source}")]
    Auth {
        /// Where it failed.
        site: Box<Site>,
        /// Which credentials, from where, and what the user can do.
        #[source]
        source: crate::auth::AuthError,
    },
    /// The registry refused a request for a reason it stated (an error envelope such as
    /// `MANIFEST_BLOB_UNKNOWN`, or the start of its reply).
    #[error("{site}: {url} answered HTTP {status}: {detail}")]
    Rejected {
        /// Where it failed.
        site: Box<Site>,
        /// The URL requested.
        url: String,
        /// The HTTP status code.
        status: u16,
        /// The registry's error codes and messages.
        detail: String,
        /// The registry's `Retry-After`, when it sent one.
        retry_after: Option<std::time::Duration>,
    },
    /// A reply that breaks the distribution protocol (no upload `Location`, a token answer without a
    /// token), or a server this client will not send credentials to.
    #[error("{site}: {url}: {detail}")]
    Protocol {
        /// Where it failed.
        site: Box<Site>,
        /// The URL concerned.
        url: String,
        /// What is wrong.
        detail: String,
    },
    /// A transient failure (network error, 429, 5xx) persisted through every attempt the retry
    /// policy allows.
    #[error("{source} (gave up after {attempts} attempts in {:.1} s)", elapsed.as_secs_f64())]
    RetriesExhausted {
        /// How many attempts were made, the first included.
        attempts: u32,
        /// Time from the first attempt to giving up.
        elapsed: std::time::Duration,
        /// The last attempt's failure (it names the registry, repository and operation).
        #[source]
        source: Box<Error>,
    },
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
