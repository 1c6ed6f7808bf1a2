// SPDX-License-Identifier: Apache-2.0
//! CycloneDX JSON SBOMs, every spec version (1.2 to 1.7 and whatever comes next: real generators write 1.6 and
//! 1.7, and the fields read here have not changed since 1.2), and the question map generation asks of them:
//! which package (purl) ships this file?
//!
//! The model is deliberately small and tolerant: only the fields below are read, unknown fields are ignored,
//! but a field that is read and has the wrong type is an error naming it (a verifier fails closed).

mod purl;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::dpkg::{DebPackage, DpkgDb};
use crate::rootfs::{RootFs, normalize_lexically};
use purl::{Purl, deb_versions_match};

/// Reading an SBOM failed.
#[derive(Debug, thiserror::Error)]
pub enum SbomError {
    #[error("cannot read SBOM {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("SBOM {source_name} is not valid JSON ({source}); give a CycloneDX JSON SBOM")]
    NotJson {
        source_name: String,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "SBOM {source_name} is an SPDX document: SPDX is not supported, give a CycloneDX JSON SBOM"
    )]
    Spdx { source_name: String },
    #[error(
        "SBOM {source_name} is XML: only CycloneDX JSON is supported, give a CycloneDX JSON SBOM"
    )]
    Xml { source_name: String },
    #[error(
        "SBOM {source_name} is not a CycloneDX document: {problem}; give a CycloneDX JSON SBOM"
    )]
    NotCycloneDx {
        source_name: String,
        problem: String,
    },
    #[error("SBOM {source_name}: {field}: {problem}")]
    Invalid {
        source_name: String,
        field: String,
        problem: String,
    },
}

/// One component of the SBOM (nested components are flattened into [`Sbom::components`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Component {
    pub bom_ref: Option<String>,
    /// CycloneDX `type`: library, application, file, operating-system...
    pub kind: Option<String>,
    pub name: String,
    pub version: Option<String>,
    pub purl: Option<String>,
    /// In-root paths (normalized, absolute) this component's own evidence names: `evidence.occurrences[].
    /// location`, `syft:location:<n>:path` and `aquasecurity:trivy:FilePath` properties, and the name of a
    /// `file`-type component.
    pub files: Vec<String>,
}

/// Where a purl came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum PurlSource {
    /// The SBOM's own purl: from its file evidence, or from the SBOM component that matches the file's dpkg
    /// package.
    Sbom,
    /// The SBOM lists the file's package, but without a purl: the purl is derived from the dpkg database.
    SbomComponentDpkgPurl,
    /// The SBOM does not list the file's package; the dpkg database owns the file.
    Dpkg,
}

/// The package that ships a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurlMatch {
    pub purl: String,
    pub source: PurlSource,
}

/// A parsed CycloneDX SBOM.
#[derive(Debug, Clone)]
pub struct Sbom {
    pub spec_version: Option<String>,
    pub serial_number: Option<String>,
    /// SHA-256 of the SBOM's bytes (lower-case hex), for `generatedFrom`.
    pub sha256: String,
    /// All components, nested ones included, in document order (depth first).
    pub components: Vec<Component>,
    /// Index of each component's enclosing component.
    parents: Vec<Option<usize>>,
    /// File name -> (normalized path, component index), from the components' files.
    files_by_name: HashMap<String, Vec<(String, usize)>>,
    /// Package name (component name, and the name in its purl) -> component indices, document order.
    by_name: HashMap<String, Vec<usize>>,
}

impl Sbom {
    /// Reads and parses a CycloneDX JSON SBOM; errors name the file and the problem.
    pub fn from_file(path: &Path) -> Result<Self, SbomError> {
        let bytes = std::fs::read(path).map_err(|source| SbomError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_slice(&bytes, &path.display().to_string())
    }

    /// Parses a CycloneDX JSON SBOM; `source_name` names it in errors.
    pub fn from_slice(bytes: &[u8], source_name: &str) -> Result<Self, SbomError> {
        let sha256 = hex::encode(Sha256::digest(bytes));
        let invalid = |field: &str, problem: &str| SbomError::Invalid {
            source_name: source_name.to_owned(),
            field: field.to_owned(),
            problem: problem.to_owned(),
        };
        detect_other_formats(bytes, source_name)?;
        let value: Value = serde_json::from_slice(bytes).map_err(|source| SbomError::NotJson {
            source_name: source_name.to_owned(),
            source,
        })?;
        let not_cdx = |problem: String| SbomError::NotCycloneDx {
            source_name: source_name.to_owned(),
            problem,
        };
        let Value::Object(doc) = &value else {
            return Err(not_cdx("the top level is not a JSON object".to_owned()));
        };
        if doc.contains_key("spdxVersion") || doc.contains_key("SPDXID") {
            return Err(SbomError::Spdx {
                source_name: source_name.to_owned(),
            });
        }
        match doc.get("bomFormat") {
            Some(Value::String(format)) if format.eq_ignore_ascii_case("CycloneDX") => {}
            Some(other) => {
                return Err(not_cdx(format!(
                    "bomFormat is {other}, expected \"CycloneDX\""
                )));
            }
            None => return Err(not_cdx("bomFormat is missing".to_owned())),
        }
        // Any spec version is accepted: the fields read here exist unchanged in 1.2 to 1.7.
        let spec_version = match doc.get("specVersion") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(_) => return Err(invalid("specVersion", "must be a string such as \"1.6\"")),
        };
        let serial_number = optional_string(doc, "serialNumber", "serialNumber", &invalid)?;

        let mut sbom = Sbom {
            spec_version,
            serial_number,
            sha256,
            components: Vec::new(),
            parents: Vec::new(),
            files_by_name: HashMap::new(),
            by_name: HashMap::new(),
        };
        // Depth-first, document order, with an explicit stack (no recursion on hostile nesting).
        let mut stack: Vec<(&Value, String, Option<usize>)> = Vec::new();
        push_children(
            doc.get("components"),
            "components",
            None,
            &mut stack,
            &invalid,
        )?;
        // The metadata component describes the SBOM's subject; its nested components are real parts of it.
        if let Some(Value::Object(metadata)) = doc.get("metadata")
            && let Some(Value::Object(main)) = metadata.get("component")
        {
            push_children(
                main.get("components"),
                "metadata.component.components",
                None,
                &mut stack,
                &invalid,
            )?;
        }
        while let Some((value, field, parent)) = stack.pop() {
            let Value::Object(object) = value else {
                return Err(invalid(&field, "a component must be a JSON object"));
            };
            let component = parse_component(object, &field, &invalid)?;
            let index = sbom.components.len();
            sbom.add(component, parent);
            push_children(
                object.get("components"),
                &format!("{field}.components"),
                Some(index),
                &mut stack,
                &invalid,
            )?;
        }
        Ok(sbom)
    }

    fn add(&mut self, component: Component, parent: Option<usize>) {
        let index = self.components.len();
        for file in &component.files {
            let name = file.rsplit('/').next().unwrap_or(file).to_owned();
            self.files_by_name
                .entry(name)
                .or_default()
                .push((file.clone(), index));
        }
        let mut names = vec![component.name.clone()];
        if let Some(purl) = component.purl.as_deref().and_then(Purl::parse)
            && purl.name != component.name
        {
            names.push(purl.name);
        }
        for name in names.into_iter().filter(|n| !n.is_empty()) {
            self.by_name.entry(name).or_default().push(index);
        }
        self.components.push(component);
        self.parents.push(parent);
    }

    /// The purl of the package that ships `canonical_path` (a canonical in-root path): first from the SBOM's
    /// own file evidence (a component whose files name this file, directly or through symlinks of the root;
    /// a component without a purl takes its nearest enclosing component's), else through the dpkg database:
    /// the owning package matched to an SBOM component by purl (type deb, name, version, arch when given), or
    /// by name (+ version when given) for components without a purl, whose purl is then the dpkg-derived one;
    /// a package the SBOM does not list gets the dpkg-derived purl too. None when nothing owns the file.
    pub fn purl_for_file(
        &self,
        canonical_path: &str,
        root: &RootFs,
        dpkg: Option<&DpkgDb>,
    ) -> Option<PurlMatch> {
        if let Some(purl) = self.purl_from_evidence(canonical_path, root) {
            return Some(PurlMatch {
                purl,
                source: PurlSource::Sbom,
            });
        }
        let package = dpkg?.owner(canonical_path)?;
        Some(match self.component_for_package(package) {
            Some(component) => match &component.purl {
                Some(purl) => PurlMatch {
                    purl: purl.clone(),
                    source: PurlSource::Sbom,
                },
                None => PurlMatch {
                    purl: package.purl.clone(),
                    source: PurlSource::SbomComponentDpkgPurl,
                },
            },
            None => PurlMatch {
                purl: package.purl.clone(),
                source: PurlSource::Dpkg,
            },
        })
    }

    fn purl_from_evidence(&self, canonical_path: &str, root: &RootFs) -> Option<String> {
        let name = canonical_path.rsplit('/').next()?;
        let candidates = self.files_by_name.get(name)?;
        candidates
            .iter()
            .filter(|(path, _)| {
                path == canonical_path || root.canonicalize(path).is_ok_and(|c| c == canonical_path)
            })
            .find_map(|&(_, index)| self.purl_of_or_enclosing(index))
    }

    fn purl_of_or_enclosing(&self, mut index: usize) -> Option<String> {
        loop {
            if let Some(purl) = &self.components[index].purl {
                return Some(purl.clone());
            }
            index = self.parents[index]?;
        }
    }

    /// The SBOM component describing an installed Debian package: one whose deb purl names it (version with
    /// epoch, arch when the purl has one) first, else one without a purl with the same name (and version, when
    /// it has one). Document order breaks ties.
    pub fn component_for_package(&self, package: &DebPackage) -> Option<&Component> {
        let candidates = self.by_name.get(&package.name)?;
        let by_purl = candidates.iter().map(|&i| &self.components[i]).find(|c| {
            c.purl.as_deref().and_then(Purl::parse).is_some_and(|p| {
                p.ty == "deb"
                    && p.name == package.name
                    && p.deb_version()
                        .is_some_and(|v| deb_versions_match(&v, &package.version))
                    && p.qualifier("arch")
                        .is_none_or(|a| a == package.architecture)
            })
        });
        by_purl.or_else(|| {
            candidates.iter().map(|&i| &self.components[i]).find(|c| {
                c.purl.is_none()
                    && c.name == package.name
                    && c.version
                        .as_deref()
                        .is_none_or(|v| deb_versions_match(v, &package.version))
            })
        })
    }
}

/// Rejects SPDX tag-value and XML documents with a useful message before JSON parsing calls them "not JSON".
fn detect_other_formats(bytes: &[u8], source_name: &str) -> Result<(), SbomError> {
    let head = &bytes[..bytes.len().min(4096)];
    let head = String::from_utf8_lossy(head);
    let head = head.trim_start_matches('\u{feff}').trim_start();
    if head.starts_with('<') {
        if head.contains("spdx") && !head.contains("cyclonedx") {
            return Err(SbomError::Spdx {
                source_name: source_name.to_owned(),
            });
        }
        return Err(SbomError::Xml {
            source_name: source_name.to_owned(),
        });
    }
    if head.starts_with("SPDXVersion:")
        || head
            .lines()
            .any(|l| l.trim_start().starts_with("SPDXVersion:"))
    {
        return Err(SbomError::Spdx {
            source_name: source_name.to_owned(),
        });
    }
    Ok(())
}

fn push_children<'a>(
    value: Option<&'a Value>,
    field: &str,
    parent: Option<usize>,
    stack: &mut Vec<(&'a Value, String, Option<usize>)>,
    invalid: &dyn Fn(&str, &str) -> SbomError,
) -> Result<(), SbomError> {
    match value {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Array(items)) => {
            stack.extend(
                items
                    .iter()
                    .enumerate()
                    .rev()
                    .map(|(i, v)| (v, format!("{field}[{i}]"), parent)),
            );
            Ok(())
        }
        Some(_) => Err(invalid(field, "must be an array of components")),
    }
}

fn optional_string(
    object: &Map<String, Value>,
    key: &str,
    field: &str,
    invalid: &dyn Fn(&str, &str) -> SbomError,
) -> Result<Option<String>, SbomError> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(invalid(field, "must be a string")),
    }
}

fn parse_component(
    object: &Map<String, Value>,
    field: &str,
    invalid: &dyn Fn(&str, &str) -> SbomError,
) -> Result<Component, SbomError> {
    let get = |key: &str| optional_string(object, key, &format!("{field}.{key}"), invalid);
    let kind = get("type")?;
    // `name` is required by the spec; a component without one is kept (it can still carry a purl or files).
    let name = get("name")?.unwrap_or_default();
    let mut files = Vec::new();
    if kind.as_deref() == Some("file") && !name.is_empty() {
        files.push(normalize_sbom_path(&name));
    }
    match object.get("evidence") {
        None | Some(Value::Null) => {}
        Some(Value::Object(evidence)) => match evidence.get("occurrences") {
            None | Some(Value::Null) => {}
            Some(Value::Array(occurrences)) => {
                for (i, occurrence) in occurrences.iter().enumerate() {
                    let at = format!("{field}.evidence.occurrences[{i}]");
                    let Value::Object(occurrence) = occurrence else {
                        return Err(invalid(&at, "must be an object"));
                    };
                    if let Some(location) =
                        optional_string(occurrence, "location", &format!("{at}.location"), invalid)?
                    {
                        files.push(normalize_sbom_path(&location));
                    }
                }
            }
            Some(_) => {
                return Err(invalid(
                    &format!("{field}.evidence.occurrences"),
                    "must be an array",
                ));
            }
        },
        Some(_) => return Err(invalid(&format!("{field}.evidence"), "must be an object")),
    }
    match object.get("properties") {
        None | Some(Value::Null) => {}
        Some(Value::Array(properties)) => {
            for (i, property) in properties.iter().enumerate() {
                let at = format!("{field}.properties[{i}]");
                let Value::Object(property) = property else {
                    return Err(invalid(&at, "must be an object"));
                };
                let name = optional_string(property, "name", &format!("{at}.name"), invalid)?
                    .unwrap_or_default();
                if is_file_property(&name)
                    && let Some(value) =
                        optional_string(property, "value", &format!("{at}.value"), invalid)?
                {
                    files.push(normalize_sbom_path(&value));
                }
            }
        }
        Some(_) => return Err(invalid(&format!("{field}.properties"), "must be an array")),
    }
    files.dedup();
    Ok(Component {
        bom_ref: get("bom-ref")?,
        kind,
        name,
        version: get("version")?,
        purl: get("purl")?,
        files,
    })
}

/// Properties that real generators use for "this package was found at this path": syft's
/// `syft:location:<n>:path` and trivy's `aquasecurity:trivy:FilePath`.
fn is_file_property(name: &str) -> bool {
    name == "aquasecurity:trivy:FilePath"
        || name
            .strip_prefix("syft:location:")
            .and_then(|rest| rest.strip_suffix(":path"))
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// SBOM paths come absolute (syft), relative to the image root (trivy: `usr/bin/app`), or as file URLs.
fn normalize_sbom_path(path: &str) -> String {
    let path = path.strip_prefix("file://").unwrap_or(path);
    normalize_lexically(path)
}

#[cfg(test)]
mod tests;
