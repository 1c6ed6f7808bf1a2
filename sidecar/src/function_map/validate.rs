// SPDX-License-Identifier: Apache-2.0
//! Semantic validation of a parsed function map. Every problem is collected (not just the first) and
//! named by its JSON field path, so a user fixes a generated or hand-written map in one pass.

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::path::PathBuf;

use super::{BinaryRef, Call};
use super::{FunctionMap, PREDICATE_TYPE, PREDICATE_TYPE_ALIAS, SCHEMA_VERSION};

/// Reading a map failed.
#[derive(Debug, thiserror::Error)]
pub enum MapError {
    #[error("cannot read function map {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "function map {source_name} is not valid JSON of the function-map schema: {source} (see docs/contracts/function-map.md)"
    )]
    Parse {
        source_name: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("function map {source_name} is invalid:\n{source}")]
    Invalid {
        source_name: String,
        #[source]
        source: ValidationError,
    },
}

/// One problem: the JSON path of the field and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationIssue {
    pub field: String,
    pub problem: String,
}

/// All problems found in one map.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ValidationError {
    pub issues: Vec<ValidationIssue>,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, issue) in self.issues.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "  - {}: {}", issue.field, issue.problem)?;
        }
        Ok(())
    }
}

#[derive(Default)]
struct Issues(Vec<ValidationIssue>);

impl Issues {
    fn push(&mut self, field: impl Into<String>, problem: impl Into<String>) {
        self.0.push(ValidationIssue {
            field: field.into(),
            problem: problem.into(),
        });
    }
}

fn is_lower_hex(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && is_lower_hex(s)
}

fn check_rate(issues: &mut Issues, field: &str, rate: f64) {
    if !(0.0..=1.0).contains(&rate) {
        issues.push(
            field,
            format!("{rate} is outside 0..1 (a fraction, e.g. 0.95)"),
        );
    }
}

fn check_binary(issues: &mut Issues, field: &str, binary: &BinaryRef) {
    check_binary_identity(issues, field, binary, true);
}

/// `identity_required` is false only for the binary of an unresolved call: a library missing from
/// the image has no build-id or digest to record.
fn check_binary_identity(
    issues: &mut Issues,
    field: &str,
    binary: &BinaryRef,
    identity_required: bool,
) {
    if binary.path.is_empty() {
        issues.push(
            format!("{field}.path"),
            "is empty: every call needs the file that defines it",
        );
    } else if !binary.path.starts_with('/') {
        issues.push(
            format!("{field}.path"),
            format!("{:?} is not an absolute path inside the image", binary.path),
        );
    }
    match (&binary.build_id, &binary.sha256) {
        (None, None) if !identity_required => {}
        (None, None) => issues.push(
            field,
            "has neither buildId nor sha256: the sidecar must be able to check the file before probing it",
        ),
        (Some(id), _) if !is_lower_hex(id) || id.len() % 2 != 0 => {
            issues.push(format!("{field}.buildId"), format!("{id:?} is not lowercase hex"))
        }
        (_, Some(sha)) if !is_sha256_hex(sha) => {
            issues.push(format!("{field}.sha256"), format!("{sha:?} is not 64 lowercase hex digits"))
        }
        _ => {}
    }
}

fn check_call(issues: &mut Issues, field: &str, call: &Call) {
    if call.symbol.is_empty() {
        issues.push(format!("{field}.symbol"), "is empty");
    }
    check_binary_identity(
        issues,
        &format!("{field}.binary"),
        &call.binary,
        call.unresolved.is_none(),
    );
    if let Some(caller) = &call.caller {
        check_binary(issues, &format!("{field}.caller"), caller);
    }
    if call.offset.is_some() && call.binary.build_id.is_none() && call.binary.sha256.is_none() {
        issues.push(
            format!("{field}.offset"),
            "an offset is only safe with the binary's buildId or sha256",
        );
    }
}

impl FunctionMap {
    /// Checks everything serde cannot: identifiers, ranges, references between fields.
    pub fn validate(&self) -> Result<(), ValidationError> {
        let mut issues = Issues::default();
        if self.type_ != PREDICATE_TYPE && self.type_ != PREDICATE_TYPE_ALIAS {
            issues.push(
                "_type",
                format!(
                    "{:?} is not {PREDICATE_TYPE:?} (or {PREDICATE_TYPE_ALIAS:?})",
                    self.type_
                ),
            );
        }
        match self.subject.digest.get("sha256") {
            // An unbound map (generated without --subject): no digest and a purl without a version.
            None if self.subject.digest.is_empty() && !self.subject.purl.contains('@') => {
                if !self.subject.purl.starts_with("pkg:oci/") {
                    issues.push(
                        "subject.purl",
                        format!("{:?} is not pkg:oci/<name>", self.subject.purl),
                    );
                }
            }
            None => issues.push(
                "subject.digest.sha256",
                "is missing: the map must name the app image's manifest digest",
            ),
            Some(hex) if !is_sha256_hex(hex) => issues.push(
                "subject.digest.sha256",
                format!("{hex:?} is not 64 lowercase hex digits"),
            ),
            Some(hex) => {
                let suffix = format!("@sha256:{hex}");
                if !self.subject.purl.starts_with("pkg:oci/")
                    || !self.subject.purl.ends_with(&suffix)
                {
                    issues.push(
                        "subject.purl",
                        format!("{:?} is not pkg:oci/<name>{suffix}", self.subject.purl),
                    );
                }
            }
        }
        let p = &self.predicate;
        if p.schema_version != SCHEMA_VERSION {
            issues.push(
                "predicate.schemaVersion",
                format!(
                    "{:?} is not supported (this build reads {SCHEMA_VERSION:?})",
                    p.schema_version
                ),
            );
        }
        if p.service.trim().is_empty() {
            issues.push("predicate.service", "is empty");
        }
        if chrono::DateTime::parse_from_rfc3339(&p.generated_at).is_err() {
            issues.push(
                "predicate.generatedAt",
                format!("{:?} is not an RFC 3339 timestamp", p.generated_at),
            );
        }
        check_rate(
            &mut issues,
            "predicate.coverage.minObservationRate",
            p.coverage.min_observation_rate,
        );
        if p.coverage.window_seconds == 0 {
            issues.push("predicate.coverage.windowSeconds", "must be at least 1");
        }
        if p.expected_paths.is_empty() {
            issues.push(
                "predicate.expectedPaths",
                "is empty: a map must expect at least one path",
            );
        } else if !p.expected_paths.iter().any(|e| !e.optional) {
            issues.push(
                "predicate.expectedPaths",
                "every path is optional: at least one required path is needed to compute an observation rate",
            );
        }
        let mut ids = HashSet::new();
        let mut tags = BTreeSet::new();
        for (i, path) in p.expected_paths.iter().enumerate() {
            let field = format!("predicate.expectedPaths[{i}]");
            if path.id.is_empty() {
                issues.push(format!("{field}.id"), "is empty");
            } else if !ids.insert(path.id.as_str()) {
                issues.push(
                    format!("{field}.id"),
                    format!("duplicate path id {:?}", path.id),
                );
            }
            if path.entrypoint.is_empty() {
                issues.push(
                    format!("{field}.entrypoint"),
                    "is empty: a path starts from an entrypoint binary",
                );
            }
            if path.calls.is_empty() {
                issues.push(
                    format!("{field}.calls"),
                    "is empty: a path needs at least one call",
                );
            }
            for (j, call) in path.calls.iter().enumerate() {
                check_call(&mut issues, &format!("{field}.calls[{j}]"), call);
            }
            tags.extend(path.tags.iter().map(String::as_str));
        }
        for (tag, rate) in &p.coverage.per_tag {
            let field = format!("predicate.coverage.perTag.{tag}");
            check_rate(&mut issues, &field, *rate);
            if !tags.contains(tag.as_str()) {
                issues.push(field, format!("no expected path carries the tag {tag:?}"));
            }
        }
        for (i, scope) in p.watch_scopes.iter().enumerate() {
            check_binary(
                &mut issues,
                &format!("predicate.watchScopes[{i}].binary"),
                &scope.binary,
            );
        }
        if issues.0.is_empty() {
            Ok(())
        } else {
            Err(ValidationError { issues: issues.0 })
        }
    }
}
