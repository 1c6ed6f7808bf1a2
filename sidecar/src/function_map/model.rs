// SPDX-License-Identifier: Apache-2.0
//! serde types of the function map. Field names follow docs/contracts/function-map.md.
//!
//! Every field that the documented snake_case form spells differently carries a serde `alias`, so both
//! forms deserialize into the same value and serialization always produces camelCase.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A whole function map document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionMap {
    #[serde(rename = "_type", alias = "type")]
    pub type_: String,
    pub subject: Subject,
    pub predicate: Predicate,
}

/// The app image the map describes: its OCI manifest digest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subject {
    /// `pkg:oci/<name>@sha256:<hex>`.
    pub purl: String,
    /// `{ "sha256": "<hex>" }`.
    pub digest: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Predicate {
    #[serde(alias = "schema_version")]
    pub schema_version: String,
    pub service: String,
    #[serde(default, alias = "build_id", skip_serializing_if = "Option::is_none")]
    pub build_id: Option<String>,
    #[serde(alias = "expected_paths")]
    pub expected_paths: Vec<ExpectedPath>,
    /// Where unexpected symbols are looked for: every function of the hot categories in each library.
    #[serde(default, alias = "watch_scopes", skip_serializing_if = "Vec::is_empty")]
    pub watch_scopes: Vec<WatchScope>,
    #[serde(default)]
    pub coverage: Coverage,
    #[serde(alias = "generated_at")]
    pub generated_at: String,
    #[serde(
        default,
        alias = "generated_from",
        skip_serializing_if = "Option::is_none"
    )]
    pub generated_from: Option<GeneratedFrom>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator: Option<Generator>,
}

/// What counts as "verified".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Coverage {
    /// Fraction of required paths that must be observed in a window, 0..=1.
    #[serde(default = "default_min_rate", alias = "min_observation_rate")]
    pub min_observation_rate: f64,
    /// The verification window.
    #[serde(default = "default_window", alias = "window_seconds")]
    pub window_seconds: u64,
    /// Whether a call to a watched but undeclared function fails the verdict.
    #[serde(default, alias = "fail_on_unexpected")]
    pub fail_on_unexpected: bool,
    /// Per-tag minimum observation rates, e.g. `{ "crypto": 1.0 }`.
    #[serde(default, alias = "per_tag", skip_serializing_if = "BTreeMap::is_empty")]
    pub per_tag: BTreeMap<String, f64>,
}

pub const DEFAULT_MIN_OBSERVATION_RATE: f64 = 0.95;
pub const DEFAULT_WINDOW_SECONDS: u64 = 1800;

fn default_min_rate() -> f64 {
    DEFAULT_MIN_OBSERVATION_RATE
}
fn default_window() -> u64 {
    DEFAULT_WINDOW_SECONDS
}

impl Default for Coverage {
    fn default() -> Self {
        Self {
            min_observation_rate: DEFAULT_MIN_OBSERVATION_RATE,
            window_seconds: DEFAULT_WINDOW_SECONDS,
            fail_on_unexpected: false,
            per_tag: BTreeMap::new(),
        }
    }
}

/// One expected call chain, from an entrypoint binary to the function that must run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExpectedPath {
    /// Stable identifier, unique in the map (e.g. `curl:SSL_connect@libssl.so.3`).
    pub id: String,
    /// The executable the chain starts from, as a path inside the image.
    pub entrypoint: String,
    /// The hops of the chain, caller first. The last hop is the probed function; the path is observed
    /// when every hop was observed.
    pub calls: Vec<Call>,
    /// Categories such as `crypto`, `tls`, `net`, `auth`, `file`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Optional paths are reported but never count towards the observation rate.
    #[serde(default)]
    pub optional: bool,
}

/// One function call of a path: who calls it, what is called and where it is defined.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Call {
    /// The function symbol (ELF symbol name without version, or a Go/C++ symbol as in the binary).
    pub symbol: String,
    /// The ELF symbol version (`GLIBC_2.34`, `OPENSSL_3.0.0`) when the symbol is versioned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The object that defines (and so is probed for) the function.
    pub binary: BinaryRef,
    /// The object whose code makes the call; absent for functions called inside their own object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller: Option<BinaryRef>,
    /// The package (purl from the SBOM) that ships `binary`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purl: Option<String>,
    /// File offset of the function's first instruction in `binary` (the uprobe attach point), recorded
    /// so that a binary stripped of symbols can still be probed. Only valid for `binary.build_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// Set when the generator could not resolve the symbol to an address (the path is unresolvable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unresolved: Option<String>,
}

/// A file inside the image, identified by path and ELF build-id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BinaryRef {
    /// Absolute path inside the image's root filesystem.
    pub path: String,
    /// Lowercase hex GNU build-id; absent when the file has none (then the sha256 is required).
    #[serde(default, alias = "build_id", skip_serializing_if = "Option::is_none")]
    pub build_id: Option<String>,
    /// Lowercase hex sha256 of the file, for files without a build-id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// All functions of one library that belong to hot categories: probed to find unexpected calls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WatchScope {
    pub binary: BinaryRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purl: Option<String>,
    pub tags: Vec<String>,
    /// The exported function symbols of `binary` in the scope, sorted.
    pub symbols: Vec<String>,
}

/// What the map was generated from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GeneratedFrom {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sbom: Option<SbomRef>,
    /// The entrypoints analysed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entrypoints: Vec<String>,
    /// The patterns asked for (`crypto/*`, `SSL_*`).
    #[serde(
        default,
        alias = "hot_functions",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub hot_functions: Vec<String>,
    /// Static analysis performed, e.g. `elf-linkage`.
    #[serde(
        default,
        alias = "static_analysis",
        skip_serializing_if = "Option::is_none"
    )]
    pub static_analysis: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SbomRef {
    /// `CycloneDX`.
    pub format: String,
    #[serde(
        default,
        alias = "spec_version",
        skip_serializing_if = "Option::is_none"
    )]
    pub spec_version: Option<String>,
    pub digest: BTreeMap<String, String>,
    /// The SBOM's serialNumber when present.
    #[serde(
        default,
        alias = "serial_number",
        skip_serializing_if = "Option::is_none"
    )]
    pub serial_number: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Generator {
    pub name: String,
    pub version: String,
}
