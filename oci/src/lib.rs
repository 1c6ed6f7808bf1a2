// SPDX-License-Identifier: Apache-2.0
//! linkguard's registry client (its own HTTP requests; oci-client for credential and error types):
//! resolve references, push artifacts as OCI referrers (with the `sha256-<hex>` tag-schema fallback for
//! registries without the referrers API), list and pull them with every digest checked and every read
//! bounded.
//!
//! Async and runtime-agnostic in the sense that it never starts a runtime: call it from tokio.
//! Credentials are per registry, with separate pull and push credentials ([`auth`]); transient
//! failures are retried with backoff and jitter, honouring `Retry-After` ([`transport`]).

pub mod auth;
mod client;
mod copy;
mod error;
pub mod layout;
mod manifest;
mod reference;
mod referrers;
pub mod transport;

pub use client::{
    Artifact, Client, ClientConfig, DEFAULT_MAX_LAYER_BYTES, DEFAULT_MAX_MANIFEST_BYTES,
};
pub use copy::{
    CopiedReferrer, CopyOptions, CopySummary, DEFAULT_MAX_BLOB_BYTES, Tally, copy_image,
};
pub use error::{Error, Operation, Result, Site};
pub use manifest::{
    Descriptor, ImageIndex, ImageManifest, Layer, OCI_EMPTY, OCI_INDEX, OCI_MANIFEST,
};
pub use oci_client::secrets::RegistryAuth;
pub use reference::{Digest, Reference};
pub use referrers::{Pushed, ReferrerFilter, ReferrersMode};
