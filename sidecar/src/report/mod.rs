// SPDX-License-Identifier: Apache-2.0
//! The verification report: an in-toto Statement v1 whose predicate is the verdict.
//!
//! Contract: docs/contracts/report.md (JSON Schema beside it). Statement layout per the in-toto
//! attestation framework, spec v1 (`_type`, `subject`, `predicateType`, `predicate`); the predicate is
//! ours, identified by [`REPORT_PREDICATE_TYPE`].

mod text;

pub use text::render_text;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::function_map::FunctionMap;
use crate::verify::{
    Finding, ObservationStats, Omitted, PathResult, ProbeFailure, RateResult, UnexpectedSymbol,
    Verdict, VerificationResult, Window,
};

/// `_type` of an in-toto Statement v1.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// The predicate type of linkguard verification reports.
pub const REPORT_PREDICATE_TYPE: &str = "https://linkguard.dev/attestations/verification-report/v1";
/// DSSE payload type of a statement.
pub const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

/// An in-toto Statement v1 carrying a verification report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Statement {
    #[serde(rename = "_type")]
    pub type_: String,
    pub subject: Vec<ResourceDescriptor>,
    pub predicate_type: String,
    pub predicate: ReportPredicate,
}

/// An in-toto ResourceDescriptor restricted to what a subject needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceDescriptor {
    pub name: String,
    /// `{ "sha256": "<hex>" }`; empty when the map is not bound to an image digest (see report.md).
    pub digest: BTreeMap<String, String>,
}

/// The map the verdict was computed against.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FunctionMapRef {
    /// sha256 of the map file's bytes, as read.
    pub digest: BTreeMap<String, String>,
    pub service: String,
    /// The map's `subject.purl`.
    pub subject: String,
    pub min_observation_rate: f64,
    pub window_seconds: u64,
    pub fail_on_unexpected: bool,
}

/// Who produced the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Producer {
    pub name: String,
    pub version: String,
}

impl Default for Producer {
    fn default() -> Self {
        Self {
            name: "linkguard".to_owned(),
            version: crate::VERSION.to_owned(),
        }
    }
}

/// Where the observed workload ran (filled by the sidecar).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PodIdentity {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
}

/// `observations` of the predicate: counts over the input.
pub type ObservationSummary = ObservationStats;

/// The predicate: the verdict and everything it was decided from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReportPredicate {
    pub verdict: Verdict,
    pub reasons: Vec<Finding>,
    pub warnings: Vec<Finding>,
    pub window: Window,
    pub function_map: FunctionMapRef,
    pub observation_rate: RateResult,
    pub per_tag: BTreeMap<String, RateResult>,
    pub paths: Vec<PathResult>,
    pub unexpected_symbols: Vec<UnexpectedSymbol>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unexpected_omitted: Option<Omitted>,
    pub probe_failures: Vec<ProbeFailure>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_failures_omitted: Option<Omitted>,
    pub observations: ObservationSummary,
    pub sidecar: Producer,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<PodIdentity>,
    /// Position in the sidecar's chain of reports for this pod, from 1 (absent from `linkguard verify`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence: Option<u64>,
    /// `{"sha256": hex}` of the previous report's signed bundle bytes (the OCI layer digest as pushed);
    /// absent on the first report of a chain. See [`crate::chain`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<BTreeMap<String, String>>,
    /// The first report of a new chain (sequence 1): the sidecar found no chain state for this pod.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub chain_start: bool,
    /// The first report after the sidecar restarted and continued the chain from its persisted state.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub chain_resumed: bool,
    /// Reports produced since the previous one in the chain that could not be kept (spool full or disk
    /// full) and are therefore in no chain.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub missed_reports: u64,
    #[serde(with = "crate::observation::time_serde::required")]
    pub generated_at: DateTime<Utc>,
}

/// What the report says about its producer and place, beyond the verification itself.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportContext {
    pub sidecar: Producer,
    pub pod: Option<PodIdentity>,
    pub sequence: Option<u64>,
    pub previous: Option<BTreeMap<String, String>>,
    /// See [`ReportPredicate::chain_start`]; set by [`crate::chain::ChainLink::apply`].
    pub chain_start: bool,
    /// See [`ReportPredicate::chain_resumed`].
    pub chain_resumed: bool,
    /// See [`ReportPredicate::missed_reports`].
    pub missed_reports: u64,
    pub generated_at: DateTime<Utc>,
}

impl ReportContext {
    /// linkguard itself, now, no pod, no chain.
    pub fn now() -> Self {
        Self {
            sidecar: Producer::default(),
            pod: None,
            sequence: None,
            previous: None,
            chain_start: false,
            chain_resumed: false,
            missed_reports: 0,
            generated_at: Utc::now(),
        }
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The subject of a report: the map's image (its `name`, else its purl) and manifest digest.
pub fn subject_of(map: &FunctionMap) -> ResourceDescriptor {
    ResourceDescriptor {
        name: map
            .subject
            .name
            .clone()
            .unwrap_or_else(|| map.subject.purl.clone()),
        digest: map.subject.digest.clone(),
    }
}

/// Builds the statement for `result`, computed against `map` whose file bytes hash to `map_sha256`.
pub fn build_statement(
    map: &FunctionMap,
    map_sha256: &str,
    result: &VerificationResult,
    ctx: &ReportContext,
) -> Statement {
    let coverage = &map.predicate.coverage;
    let result = result.clone();
    Statement {
        type_: STATEMENT_TYPE.to_owned(),
        subject: vec![subject_of(map)],
        predicate_type: REPORT_PREDICATE_TYPE.to_owned(),
        predicate: ReportPredicate {
            verdict: result.verdict,
            reasons: result.reasons,
            warnings: result.warnings,
            window: result.window,
            function_map: FunctionMapRef {
                digest: BTreeMap::from([("sha256".to_owned(), map_sha256.to_owned())]),
                service: map.predicate.service.clone(),
                subject: map.subject.purl.clone(),
                min_observation_rate: coverage.min_observation_rate,
                window_seconds: coverage.window_seconds,
                fail_on_unexpected: coverage.fail_on_unexpected,
            },
            observation_rate: result.observation_rate,
            per_tag: result.per_tag,
            paths: result.paths,
            unexpected_symbols: result.unexpected_symbols,
            unexpected_omitted: result.unexpected_omitted,
            probe_failures: result.probe_failures,
            probe_failures_omitted: result.probe_failures_omitted,
            observations: result.observations,
            sidecar: ctx.sidecar.clone(),
            pod: ctx.pod.clone(),
            sequence: ctx.sequence,
            previous: ctx.previous.clone(),
            chain_start: ctx.chain_start,
            chain_resumed: ctx.chain_resumed,
            missed_reports: ctx.missed_reports,
            generated_at: ctx.generated_at,
        },
    }
}

impl Statement {
    /// Pretty JSON with a trailing newline: the bytes written by `linkguard verify --format json` and
    /// signed by `linkguard attest sign`.
    pub fn to_json(&self) -> Vec<u8> {
        // Plain structs, strings, numbers and BTreeMaps: serialization cannot fail.
        let mut out = serde_json::to_vec_pretty(self).unwrap_or_default();
        out.push(b'\n');
        out
    }
}
