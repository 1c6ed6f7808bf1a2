// SPDX-License-Identifier: Apache-2.0
//! The function map: which functions of an image are expected to run, and how much of them must be seen.
//!
//! The on-disk contract is docs/contracts/function-map.md (JSON Schema beside it). The map is an in-toto
//! style document: `_type`, `subject` (the app image), `predicate`. Both the camelCase schema form and
//! the documented snake_case form are read; only camelCase is written.

mod model;
mod validate;

pub use model::*;
pub use validate::{MapError, ValidationError, ValidationIssue};

use std::path::Path;

/// The `_type` written into every map.
pub const PREDICATE_TYPE: &str = "https://stella.ops/predicates/function-map/v1";
/// The documented alias of [`PREDICATE_TYPE`], accepted on read.
pub const PREDICATE_TYPE_ALIAS: &str = "stella.ops/functionMap@v1";
/// DSSE payload type and OCI artifactType of a function map.
pub const MEDIA_TYPE: &str = "application/vnd.stellaops.function-map.v1+json";
/// The only `schemaVersion` this build understands.
pub const SCHEMA_VERSION: &str = "1.0.0";

impl FunctionMap {
    /// Parses and validates a map from JSON bytes. `source` names the input in errors.
    pub fn from_slice(bytes: &[u8], source: &str) -> Result<Self, MapError> {
        let map: FunctionMap = serde_json::from_slice(bytes).map_err(|e| MapError::Parse {
            source_name: source.to_owned(),
            source: e,
        })?;
        map.validate().map_err(|e| MapError::Invalid {
            source_name: source.to_owned(),
            source: e,
        })?;
        Ok(map)
    }

    /// Reads, parses and validates a map file.
    pub fn from_file(path: &Path) -> Result<Self, MapError> {
        let bytes = std::fs::read(path).map_err(|e| MapError::Read {
            path: path.to_owned(),
            source: e,
        })?;
        Self::from_slice(&bytes, &path.display().to_string())
    }

    /// The canonical JSON form: camelCase, two-space indented, trailing newline. Deterministic for a
    /// given map (field order is the struct order; maps are `BTreeMap`s).
    pub fn to_canonical_json(&self) -> Vec<u8> {
        // Serializing plain structs, strings, numbers and BTreeMaps cannot fail.
        let mut out = serde_json::to_vec_pretty(self).unwrap_or_default();
        out.push(b'\n');
        out
    }

    /// Whether the map names an image digest. A map generated without `--subject` is unbound: its
    /// subject is `pkg:oci/<service>` with an empty digest, to be bound to an image later.
    pub fn is_bound(&self) -> bool {
        self.subject.digest.contains_key("sha256")
    }

    /// All expected paths that count towards the observation rate (not optional).
    pub fn required_paths(&self) -> impl Iterator<Item = &ExpectedPath> {
        self.predicate.expected_paths.iter().filter(|p| !p.optional)
    }
}
