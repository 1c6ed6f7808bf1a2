// SPDX-License-Identifier: Apache-2.0
//! `linkguard map generate`: a function map from an SBOM, a root filesystem and entrypoints.
//!
//! # Semantics (docs/contracts/function-map.md describes the result)
//!
//! - **Entrypoints** are paths inside the rootfs, canonicalized through [`RootFs`] (symlinks resolve
//!   inside the root, as in a chroot). Each is parsed as ELF; an entrypoint that is not a usable ELF
//!   file is an error.
//! - **Closure**: from each entrypoint, DT_NEEDED is walked breadth-first with
//!   [`RootFs::find_library`], using the RPATH/RUNPATH/`$ORIGIN` of the *needing* object (RPATH of
//!   the loader chain too, unless the needing object has RUNPATH), and accepting only objects of the
//!   entrypoint's class, byte order and machine. A missing or unreadable library is a diagnostic
//!   naming the library and who needs it; generation goes on without it.
//! - **Expected paths = the linkage**: for every object O of the closure and every function S that O
//!   imports, the definer D is the first object in load order that defines S with an acceptable
//!   version (glibc `check_match`: a versioned import binds that exact version, default or hidden,
//!   or an unversioned definition; an unversioned import binds an unversioned definition or the
//!   default version). When the selector tags S in D (`tags_for` non-empty), one path is emitted
//!   per (entrypoint, D, definition of S): a single [`Call`](crate::function_map::Call) with the symbol, D's version, D
//!   (canonical path + build-id, sha256 when there is no build-id), the caller (the entrypoint when
//!   it imports S itself, else the first importer in load order), D's purl and the file offset of S
//!   in D. IFUNC definitions keep their path without an offset and are reported in diagnostics (a
//!   probe on the resolver counts bindings, not calls). A hot import that no object defines keeps
//!   its path with `unresolved` set (it verifies as unresolvable); its binary is the library named
//!   by the import's version requirement or the importer's missing DT_NEEDED library.
//! - **Static and Go binaries** (no interpreter and no DT_NEEDED, or built by Go): their own
//!   functions (`.symtab`; for a stripped Go binary the runtime's `.gopclntab`; else `.dynsym`) that
//!   the selector tags become paths whose binary is the entrypoint itself, without a caller. A
//!   dynamically linked Go binary gets both kinds of paths. A binary without a GNU build-id (Go
//!   binaries often have only Go's own) is identified by its sha256.
//! - **Path ids**: `<entrypoint file name>:<symbol>@<definer file name>` (file names of the canonical
//!   paths, e.g. `curl:curl_easy_perform@libcurl.so.4.8.0`); when two paths share an id
//!   (versioned duplicates, two entrypoints with one file name) the later ones in a stable order get
//!   `#2`, `#3`... Paths are sorted by id.
//! - **Watch scopes**: for each library of every closure (and each static or Go entrypoint), every
//!   function it defines whose `watch_tags_for` is non-empty; only objects with at least one.
//! - **Coverage**: `minObservationRate` (default 0.95), `windowSeconds` (default 1800), per-tag
//!   minimums (each tag must be carried by a path), `failOnUnexpected`.
//! - **Subject**: `--subject NAME@sha256:HEX` binds the map to an image (`pkg:oci/NAME@sha256:HEX`);
//!   without it the map is *unbound*: purl `pkg:oci/<service>`, empty digest, name = service.
//! - **Deterministic**: the same inputs give byte-identical output (everything sorted; `generatedAt`
//!   fixed by the option). The map is validated before it is returned: an invalid result is a bug.

mod assemble;
mod closure;
mod paths;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::PathBuf;

use crate::catalog::{Catalog, CatalogError, HotSelector};
use crate::dpkg::{DpkgDb, DpkgError};
use crate::elf::ElfError;
use crate::function_map::{
    FunctionMap, GeneratedFrom, Generator, PREDICATE_TYPE, Predicate, SCHEMA_VERSION, SbomRef,
    Subject, ValidationError,
};
use crate::rootfs::{RootFs, RootFsError};
use crate::sbom::{Sbom, SbomError};

use assemble::{PurlCache, assign_ids, coverage, expected_path, summarize, watch_scopes};
use closure::ObjectStore;

/// The `staticAnalysis` recorded in `generatedFrom`.
pub const STATIC_ANALYSIS: &str = "elf-linkage";

/// Everything `map generate` takes. Mirrors the command-line flags.
#[derive(Debug, Clone, Default)]
pub struct GenerateOptions {
    /// CycloneDX JSON SBOM of the image.
    pub sbom: PathBuf,
    /// The image's root filesystem on this machine.
    pub rootfs: PathBuf,
    pub service: String,
    /// Executables, as paths inside the rootfs.
    pub entrypoints: Vec<String>,
    /// `category/glob` patterns or plain symbol globs.
    pub hot_functions: Vec<String>,
    /// Catalog extension files.
    pub catalog_files: Vec<PathBuf>,
    pub min_rate: Option<f64>,
    pub window_seconds: Option<u64>,
    pub per_tag: BTreeMap<String, f64>,
    pub fail_on_unexpected: bool,
    pub build_id: Option<String>,
    /// `NAME@sha256:HEX`.
    pub subject: Option<String>,
    /// Fixes `generatedAt` (RFC 3339) for reproducible output.
    pub generated_at: Option<String>,
}

/// The generated map and what the user should know about it.
#[derive(Debug, Clone)]
pub struct Generated {
    pub map: FunctionMap,
    /// Warnings: missing libraries, files without purl, IFUNCs, unresolved imports...
    pub diagnostics: Vec<Diagnostic>,
    /// Per entrypoint, the objects of its closure in load order.
    pub closures: Vec<ClosureSummary>,
}

/// The closure of one entrypoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClosureSummary {
    pub entrypoint: String,
    /// Canonical paths of the loaded libraries, in load order (the entrypoint excluded).
    pub libraries: Vec<String>,
    /// DT_NEEDED names that could not be loaded.
    pub missing: Vec<String>,
}

/// A warning about the generated map.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Diagnostic {
    pub kind: DiagnosticKind,
    pub message: String,
}

/// What a [`Diagnostic`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DiagnosticKind {
    /// A DT_NEEDED library is not in the rootfs.
    MissingLibrary,
    /// A DT_NEEDED library was found but is not a usable ELF file.
    UnreadableLibrary,
    /// Imports that no object of the closure defines.
    UnresolvedSymbol,
    /// A hot function is a GNU IFUNC (no offset recorded).
    Ifunc,
    /// A hot function's address is outside every PT_LOAD segment.
    NoOffset,
    /// A static or Go entrypoint without symbols to select from.
    NoSymbols,
    /// A file of a path or watch scope has no purl in the SBOM or package database.
    NoPurl,
}

impl Diagnostic {
    pub fn new(kind: DiagnosticKind, message: String) -> Self {
        Self { kind, message }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Generation failed. Messages name the input and, for options, the command-line flag. Causes from
/// other modules are boxed: their errors are large and every `Result` here would carry their size.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("no --entrypoint given: name at least one executable inside the rootfs")]
    NoEntrypoints,
    #[error("no --hot-functions given: name at least one pattern such as crypto/* or SSL_*")]
    NoHotFunctions,
    #[error("--service is empty: name the service the map is for")]
    NoService,
    #[error(
        "--service {0:?} contains '@' or whitespace: it becomes part of the subject purl pkg:oci/<service>"
    )]
    BadService(String),
    #[error("{flag} {value} is outside 0..1 (a fraction, e.g. 0.95)")]
    RateOutOfRange { flag: String, value: f64 },
    #[error("--window must be at least 1 second")]
    ZeroWindow,
    #[error("--generated-at {value:?} is not an RFC 3339 timestamp (e.g. 2026-01-01T00:00:00Z)")]
    BadTimestamp {
        value: String,
        #[source]
        source: chrono::ParseError,
    },
    #[error(
        "--subject {value:?} is not NAME@sha256:HEX (HEX = 64 hex digits of the image manifest digest): {problem}"
    )]
    BadSubject {
        value: String,
        problem: &'static str,
    },
    #[error("cannot use rootfs {path}")]
    RootFs {
        path: PathBuf,
        #[source]
        source: Box<RootFsError>,
    },
    #[error("cannot use SBOM {path}")]
    Sbom {
        path: PathBuf,
        #[source]
        source: Box<SbomError>,
    },
    #[error("cannot read the package database of rootfs {path}")]
    Dpkg {
        path: PathBuf,
        #[source]
        source: Box<DpkgError>,
    },
    #[error("cannot load catalog extension {path}")]
    CatalogFile {
        path: PathBuf,
        #[source]
        source: Box<CatalogError>,
    },
    #[error("invalid --hot-functions")]
    Patterns {
        #[source]
        source: Box<CatalogError>,
    },
    #[error("entrypoint {entrypoint} cannot be resolved inside rootfs {rootfs}")]
    EntrypointPath {
        entrypoint: String,
        rootfs: PathBuf,
        #[source]
        source: Box<RootFsError>,
    },
    #[error("entrypoint {entrypoint} is not a usable ELF file")]
    EntrypointElf {
        entrypoint: String,
        #[source]
        source: Box<ElfError>,
    },
    #[error(
        "no hot function found: the patterns {patterns:?} match no function that {entrypoints:?} or their \
         libraries call (check the patterns with `linkguard map catalog`, or the entrypoints){}",
        notes.iter().map(|n| format!("\n  note: {n}")).collect::<String>()
    )]
    NoPaths {
        patterns: Vec<String>,
        entrypoints: Vec<String>,
        notes: Vec<Diagnostic>,
    },
    #[error(
        "--tag-min {tag}: no expected path carries the tag {tag:?} (tags of this map: {available:?})"
    )]
    TagWithoutPaths { tag: String, available: Vec<String> },
    // The issues are part of the message (a list), so they are not also a `source`.
    #[error("bug: the generated map is invalid (please report it):\n{issues}")]
    InvalidMap { issues: ValidationError },
}

/// Generates a function map; see the module documentation for the semantics.
pub fn generate(opts: &GenerateOptions) -> Result<Generated, GenerateError> {
    check_options(opts)?;
    let subject = match &opts.subject {
        Some(value) => parse_subject(value)?,
        None => unbound_subject(&opts.service),
    };
    let generated_at = match &opts.generated_at {
        Some(value) => {
            chrono::DateTime::parse_from_rfc3339(value).map_err(|source| {
                GenerateError::BadTimestamp {
                    value: value.clone(),
                    source,
                }
            })?;
            value.clone()
        }
        None => chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    };
    let root = RootFs::new(&opts.rootfs).map_err(|source| GenerateError::RootFs {
        path: opts.rootfs.clone(),
        source: Box::new(source),
    })?;
    let sbom = Sbom::from_file(&opts.sbom).map_err(|source| GenerateError::Sbom {
        path: opts.sbom.clone(),
        source: Box::new(source),
    })?;
    let dpkg = DpkgDb::load(&root).map_err(|source| GenerateError::Dpkg {
        path: opts.rootfs.clone(),
        source: Box::new(source),
    })?;
    let selector = load_selector(opts)?;

    let mut diagnostics = Vec::new();
    let mut store = ObjectStore::default();
    let mut entrypoints = Vec::new();
    for entrypoint in &opts.entrypoints {
        let canonical =
            root.canonicalize(entrypoint)
                .map_err(|source| GenerateError::EntrypointPath {
                    entrypoint: entrypoint.clone(),
                    rootfs: opts.rootfs.clone(),
                    source: Box::new(source),
                })?;
        let id = store
            .load(&root, &canonical)
            .map_err(|source| GenerateError::EntrypointElf {
                entrypoint: entrypoint.clone(),
                source: Box::new(source),
            })?;
        if !entrypoints.contains(&id) {
            entrypoints.push(id);
        }
    }
    let mut closures = Vec::new();
    let mut drafts = Vec::new();
    for &entrypoint in &entrypoints {
        let closure = closure::walk(&mut store, &root, entrypoint, &mut diagnostics);
        tracing::debug!(
            entrypoint = %store.get(entrypoint).path,
            objects = closure.order.len(),
            missing = closure.missing.len(),
            "closure walked"
        );
        drafts.extend(paths::linkage_paths(
            &store,
            &closure,
            &selector,
            &mut diagnostics,
        ));
        let info = &store.get(entrypoint).info;
        if info.is_static || info.is_go {
            drafts.extend(paths::own_function_paths(
                &store,
                entrypoint,
                &selector,
                &mut diagnostics,
            ));
        }
        closures.push(closure);
    }

    let mut purls = PurlCache {
        sbom: &sbom,
        root: &root,
        dpkg: dpkg.as_ref(),
        cache: HashMap::new(),
    };
    let expected_paths = assign_ids(
        drafts
            .into_iter()
            .map(|d| expected_path(&store, &mut purls, d))
            .collect(),
    );
    let watch_scopes = watch_scopes(&store, &closures, &selector, &mut purls);
    diagnostics.extend(purls.diagnostics());
    diagnostics.sort();
    diagnostics.dedup();

    let entrypoint_paths: Vec<String> = entrypoints
        .iter()
        .map(|&id| store.get(id).path.clone())
        .collect();
    if expected_paths.is_empty() {
        return Err(GenerateError::NoPaths {
            patterns: opts.hot_functions.clone(),
            entrypoints: entrypoint_paths,
            notes: diagnostics,
        });
    }
    let coverage = coverage(opts, &expected_paths)?;
    let map = FunctionMap {
        type_: PREDICATE_TYPE.to_owned(),
        subject,
        predicate: Predicate {
            schema_version: SCHEMA_VERSION.to_owned(),
            service: opts.service.clone(),
            build_id: opts.build_id.clone(),
            expected_paths,
            watch_scopes,
            coverage,
            generated_at,
            generated_from: Some(GeneratedFrom {
                sbom: Some(SbomRef {
                    format: "CycloneDX".to_owned(),
                    spec_version: sbom.spec_version.clone(),
                    digest: BTreeMap::from([("sha256".to_owned(), sbom.sha256.clone())]),
                    serial_number: sbom.serial_number.clone(),
                }),
                entrypoints: entrypoint_paths,
                hot_functions: opts.hot_functions.clone(),
                static_analysis: Some(STATIC_ANALYSIS.to_owned()),
            }),
            generator: Some(Generator {
                name: "linkguard".to_owned(),
                version: crate::VERSION.to_owned(),
            }),
        },
    };
    map.validate()
        .map_err(|issues| GenerateError::InvalidMap { issues })?;
    tracing::debug!(
        service = %opts.service,
        paths = map.predicate.expected_paths.len(),
        watch_scopes = map.predicate.watch_scopes.len(),
        diagnostics = diagnostics.len(),
        "function map generated"
    );
    let closures = closures.iter().map(|c| summarize(&store, c)).collect();
    Ok(Generated {
        map,
        diagnostics,
        closures,
    })
}

fn check_options(opts: &GenerateOptions) -> Result<(), GenerateError> {
    if opts.entrypoints.is_empty() {
        return Err(GenerateError::NoEntrypoints);
    }
    if opts.hot_functions.is_empty() {
        return Err(GenerateError::NoHotFunctions);
    }
    if opts.service.trim().is_empty() {
        return Err(GenerateError::NoService);
    }
    if opts.service.chars().any(|c| c == '@' || c.is_whitespace()) {
        return Err(GenerateError::BadService(opts.service.clone()));
    }
    let rates = opts.min_rate.map(|r| ("--min-rate".to_owned(), r));
    let tag_rates = opts
        .per_tag
        .iter()
        .map(|(tag, &r)| (format!("--tag-min {tag}="), r));
    for (flag, value) in rates.into_iter().chain(tag_rates) {
        if !(0.0..=1.0).contains(&value) {
            return Err(GenerateError::RateOutOfRange { flag, value });
        }
    }
    if opts.window_seconds == Some(0) {
        return Err(GenerateError::ZeroWindow);
    }
    Ok(())
}

fn load_selector(opts: &GenerateOptions) -> Result<HotSelector, GenerateError> {
    let mut catalog = Catalog::builtin();
    for path in &opts.catalog_files {
        catalog
            .load_extension(path)
            .map_err(|source| GenerateError::CatalogFile {
                path: path.clone(),
                source: Box::new(source),
            })?;
    }
    catalog
        .compile(&opts.hot_functions)
        .map_err(|source| GenerateError::Patterns {
            source: Box::new(source),
        })
}

/// Parses `NAME@sha256:HEX` into the map subject (`pkg:oci/NAME@sha256:HEX`).
pub fn parse_subject(value: &str) -> Result<Subject, GenerateError> {
    let bad = |problem| GenerateError::BadSubject {
        value: value.to_owned(),
        problem,
    };
    let (name, digest) = value
        .rsplit_once('@')
        .ok_or_else(|| bad("no '@' between name and digest"))?;
    let hex = digest
        .strip_prefix("sha256:")
        .ok_or_else(|| bad("the digest must start with sha256:"))?;
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c == '@') {
        return Err(bad("the name is empty or contains whitespace or '@'"));
    }
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad("the digest is not 64 hex digits"));
    }
    let hex = hex.to_ascii_lowercase();
    Ok(Subject {
        purl: format!("pkg:oci/{name}@sha256:{hex}"),
        digest: BTreeMap::from([("sha256".to_owned(), hex)]),
        name: Some(name.to_owned()),
    })
}

/// The subject of a map not (yet) bound to an image digest.
pub fn unbound_subject(service: &str) -> Subject {
    Subject {
        purl: format!("pkg:oci/{service}"),
        digest: BTreeMap::new(),
        name: Some(service.to_owned()),
    }
}
