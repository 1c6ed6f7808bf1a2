// SPDX-License-Identifier: Apache-2.0
//! linkguard's registry client, on oci-client: resolve references, push artifacts as OCI referrers
//! (with the `sha256-<hex>` tag-schema fallback for registries without the referrers API), list and
//! pull them with every digest checked and every read bounded.
//!
//! Async and runtime-agnostic in the sense that it never starts a runtime: call it from tokio.
//! Auth per registry and retries arrive with the auth/transport module; for now a single
//! [`RegistryAuth`] is used for every request.

pub mod auth;
mod client;
mod error;
mod manifest;
mod reference;
mod referrers;
pub mod transport;

pub use client::{
    Artifact, Client, ClientConfig, DEFAULT_MAX_LAYER_BYTES, DEFAULT_MAX_MANIFEST_BYTES,
};
pub use error::{Error, Operation, Result, Site};
pub use manifest::{
    Descriptor, ImageIndex, ImageManifest, Layer, OCI_EMPTY, OCI_INDEX, OCI_MANIFEST,
};
pub use oci_client::secrets::RegistryAuth;
pub use reference::{Digest, Reference};
pub use referrers::{Pushed, ReferrerFilter, ReferrersMode};
