// SPDX-License-Identifier: Apache-2.0
//! The outcome of a verification: statuses (section 6), rates (section 7), lists (sections 8, 9) and the
//! verdict (section 10). These types serialize as the corresponding parts of the report predicate
//! (docs/contracts/report.md).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::evidence::{ProbeSum, UnexpectedSum};
use super::rate::{meets, ratio};
use super::{Verifier, Window};
use crate::function_map::ExpectedPath;
use crate::observation::ProbeStatus;

/// Pass or fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Pass,
    Fail,
}

/// Status of a path or of one of its calls, in precedence order (section 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PathStatus {
    BinaryMismatch,
    Observed,
    Unresolvable,
    Unobserved,
}

impl PathStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BinaryMismatch => "binary-mismatch",
            Self::Observed => "observed",
            Self::Unresolvable => "unresolvable",
            Self::Unobserved => "unobserved",
        }
    }
}

/// A reason for a fail, or a warning: a stable code and a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub code: String,
    pub message: String,
}

impl Finding {
    fn new(code: &str, message: String) -> Self {
        Self {
            code: code.to_owned(),
            message,
        }
    }
}

/// `observed` of `total` required paths, against an optional minimum.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RateResult {
    /// `observed / total`, for people; `null` when `total` is 0. The verdict uses the integers.
    pub rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    pub observed: u64,
    pub total: u64,
    /// Whether the rate meets `min` (exact comparison); absent without a minimum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pass: Option<bool>,
}

impl RateResult {
    fn new(observed: u64, total: u64, min: Option<f64>) -> Self {
        Self {
            rate: ratio(observed, total),
            min,
            observed,
            total,
            pass: min.map(|m| meets(observed, total, m)),
        }
    }

    /// `observed/total (percent)`, the percentage rounded down so that a failing rate never reads as
    /// its minimum.
    pub fn describe(&self) -> String {
        if self.total == 0 {
            return "0/0 (no required path)".to_owned();
        }
        let hundredths = u128::from(self.observed) * 10_000 / u128::from(self.total);
        format!(
            "{}/{} ({}.{:02}%)",
            self.observed,
            self.total,
            hundredths / 100,
            hundredths % 100
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallResult {
    pub symbol: String,
    pub binary: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_id: Option<String>,
    pub status: PathStatus,
    /// Sum of the counts of the records that count for this call of this path (section 3).
    pub count: u64,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub lower_bound: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub attach_failed: bool,
    /// Why the status is not `observed`, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PathResult {
    pub id: String,
    pub status: PathStatus,
    pub tags: Vec<String>,
    pub optional: bool,
    pub entrypoint: String,
    /// The smallest count among the path's calls.
    pub count: u64,
    pub calls: Vec<CallResult>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UnexpectedSymbol {
    pub binary: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_id: Option<String>,
    pub symbol: String,
    /// Sum of the records' counts.
    pub count: u64,
    pub records: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProbeFailure {
    pub binary: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symbol: Option<String>,
    pub status: ProbeStatus,
    pub records: u64,
    /// The detail of the first record in reading order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// What a bounded list left out (sections 8, 9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Omitted {
    pub records: u64,
    pub calls: u64,
}

/// Counts over the input.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObservationStats {
    /// Records read (every kind).
    pub records: u64,
    /// Records outside the window (section 1).
    pub ignored: u64,
    /// Call records not counted because they carry no build-id for a file the map identifies by one.
    pub unidentified: u64,
    /// Events lost, summed over the drop records in the window.
    pub dropped: u64,
    /// The observation files, in reading order (absent for records fed from memory).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<String>,
}

/// Everything verification decided.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerificationResult {
    pub verdict: Verdict,
    /// Every reason for a `fail`; empty on `pass`.
    pub reasons: Vec<Finding>,
    pub warnings: Vec<Finding>,
    pub window: Window,
    pub observation_rate: RateResult,
    /// Every tag of the map.
    pub per_tag: BTreeMap<String, RateResult>,
    /// Every path of the map, in map order.
    pub paths: Vec<PathResult>,
    pub unexpected_symbols: Vec<UnexpectedSymbol>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unexpected_omitted: Option<Omitted>,
    pub probe_failures: Vec<ProbeFailure>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_failures_omitted: Option<Omitted>,
    pub observations: ObservationStats,
}

fn call_results(v: &Verifier<'_>, path_index: usize, path: &ExpectedPath) -> Vec<CallResult> {
    path.calls
        .iter()
        .enumerate()
        .map(|(j, call)| {
            let state = &v.evidence.calls[v.index.call_index(path_index, j)];
            let mismatch = v
                .index
                .binary(&call.binary.path)
                .and_then(|b| v.evidence.binaries[b].mismatch.as_ref().map(|(_, m)| m));
            let (status, detail) = if let Some(evidence) = mismatch {
                (PathStatus::BinaryMismatch, Some(evidence.clone()))
            } else if state.count > 0 {
                (PathStatus::Observed, None)
            } else if let Some(reason) = &call.unresolved {
                (
                    PathStatus::Unresolvable,
                    Some(format!("the map marks the call unresolved: {reason}")),
                )
            } else if let Some((_, reason)) = &state.unresolvable {
                (PathStatus::Unresolvable, Some(reason.clone()))
            } else if state.attach_failed {
                (
                    PathStatus::Unobserved,
                    Some("the probe could not be attached".to_owned()),
                )
            } else if state.other_exe {
                (
                    PathStatus::Unobserved,
                    Some(format!(
                        "called only by programs other than {}",
                        path.entrypoint
                    )),
                )
            } else {
                (PathStatus::Unobserved, None)
            };
            CallResult {
                symbol: call.symbol.clone(),
                binary: call.binary.path.clone(),
                build_id: call.binary.build_id.clone(),
                status,
                count: state.count,
                lower_bound: state.lower_bound,
                attach_failed: state.attach_failed,
                detail,
            }
        })
        .collect()
}

/// Section 6: a path takes the first status in precedence order that one of its calls forces.
fn path_status(calls: &[CallResult]) -> PathStatus {
    let any = |s| calls.iter().any(|c| c.status == s);
    if any(PathStatus::BinaryMismatch) {
        PathStatus::BinaryMismatch
    } else if !calls.is_empty() && calls.iter().all(|c| c.status == PathStatus::Observed) {
        PathStatus::Observed
    } else if any(PathStatus::Unresolvable) {
        PathStatus::Unresolvable
    } else {
        PathStatus::Unobserved
    }
}

fn rate_over<'p>(paths: impl Iterator<Item = &'p PathResult>, min: Option<f64>) -> RateResult {
    let (mut observed, mut total) = (0, 0);
    for path in paths.filter(|p| !p.optional) {
        total += 1;
        observed += u64::from(path.status == PathStatus::Observed);
    }
    RateResult::new(observed, total, min)
}

fn split_key<const N: usize>(key: &str) -> [&str; N] {
    let mut parts = key.splitn(N, '\0');
    std::array::from_fn(|_| parts.next().unwrap_or(""))
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

pub(super) fn finish(v: Verifier<'_>) -> VerificationResult {
    let predicate = &v.map.predicate;
    let coverage = &predicate.coverage;
    let paths: Vec<PathResult> = predicate
        .expected_paths
        .iter()
        .enumerate()
        .map(|(i, path)| {
            let calls = call_results(&v, i, path);
            PathResult {
                id: path.id.clone(),
                status: path_status(&calls),
                tags: path.tags.clone(),
                optional: path.optional,
                entrypoint: path.entrypoint.clone(),
                count: calls.iter().map(|c| c.count).min().unwrap_or(0),
                calls,
            }
        })
        .collect();

    let overall = rate_over(paths.iter(), Some(coverage.min_observation_rate));
    let tags: BTreeSet<&str> = paths
        .iter()
        .flat_map(|p| p.tags.iter().map(String::as_str))
        .chain(coverage.per_tag.keys().map(String::as_str))
        .collect();
    let per_tag: BTreeMap<String, RateResult> = tags
        .into_iter()
        .map(|tag| {
            let carrying = paths.iter().filter(|p| p.tags.iter().any(|t| t == tag));
            (
                tag.to_owned(),
                rate_over(carrying, coverage.per_tag.get(tag).copied()),
            )
        })
        .collect();

    let (unexpected, unexpected_omitted) = v.evidence.unexpected.into_parts();
    let unexpected_symbols: Vec<UnexpectedSymbol> = unexpected
        .into_iter()
        .map(|(key, UnexpectedSum { records, calls })| {
            let [binary, build_id, symbol] = split_key(&key);
            UnexpectedSymbol {
                binary: binary.to_owned(),
                build_id: non_empty(build_id),
                symbol: symbol.to_owned(),
                count: calls,
                records,
            }
        })
        .collect();
    let unexpected_omitted = unexpected_omitted.map(|o| Omitted {
        records: o.records,
        calls: o.total,
    });
    let (probes, probes_omitted) = v.evidence.probes.into_parts();
    let probe_failures: Vec<ProbeFailure> = probes
        .into_iter()
        .map(
            |(
                key,
                ProbeSum {
                    records,
                    status,
                    detail,
                    ..
                },
            )| {
                let [binary, build_id, symbol, _status] = split_key(&key);
                ProbeFailure {
                    binary: binary.to_owned(),
                    build_id: non_empty(build_id),
                    symbol: non_empty(symbol),
                    status,
                    records,
                    detail,
                }
            },
        )
        .collect();
    let probe_failures_omitted = probes_omitted.map(|o| Omitted {
        records: o.records,
        calls: 0,
    });

    let mut reasons = Vec::new();
    if overall.total == 0 {
        reasons.push(Finding::new(
            "no-required-paths",
            "the map has no required path: nothing can be verified".into(),
        ));
    } else if overall.pass == Some(false) {
        reasons.push(Finding::new(
            "observation-rate-below-min",
            format!(
                "observation rate {} is below the minimum {}",
                overall.describe(),
                coverage.min_observation_rate
            ),
        ));
    }
    for (tag, rate) in &per_tag {
        match (rate.min, rate.pass) {
            (Some(min), Some(false)) if rate.total == 0 => reasons.push(Finding::new(
                "tag-rate-below-min",
                format!("tag {tag}: no required path carries the tag, so its minimum {min} cannot be met"),
            )),
            (Some(min), Some(false)) => reasons.push(Finding::new(
                "tag-rate-below-min",
                format!("tag {tag}: observation rate {} is below the minimum {min}", rate.describe()),
            )),
            _ => {}
        }
    }
    let unexpected_records = unexpected_symbols.iter().map(|u| u.records).sum::<u64>()
        + unexpected_omitted.map_or(0, |o| o.records);
    let mut warnings = Vec::new();
    if unexpected_records > 0 {
        let listed = unexpected_symbols.len();
        let finding = Finding::new(
            "unexpected-symbols",
            format!(
                "{listed} unexpected symbol{} called ({unexpected_records} records{}){}",
                if listed == 1 { " was" } else { "s were" },
                if unexpected_omitted.is_some() {
                    ", more symbols than listed"
                } else {
                    ""
                },
                if coverage.fail_on_unexpected {
                    ""
                } else {
                    "; failOnUnexpected is false"
                },
            ),
        );
        if coverage.fail_on_unexpected {
            reasons.push(finding)
        } else {
            warnings.push(finding)
        }
    }
    let stats = v.evidence.stats;
    if stats.dropped > 0 {
        warnings.push(Finding::new(
            "events-dropped",
            format!(
                "{} events were lost by the sidecar in the window: counts are lower bounds",
                stats.dropped
            ),
        ));
    }
    let attach_failed: u64 = probe_failures
        .iter()
        .filter(|p| p.status == ProbeStatus::AttachFailed)
        .map(|p| p.records)
        .sum();
    if attach_failed > 0 {
        warnings.push(Finding::new(
            "attach-failed",
            format!("{attach_failed} probe records report functions that could not be attached"),
        ));
    }
    if stats.unidentified > 0 {
        warnings.push(Finding::new(
            "unidentified-records",
            format!("{} call records carry no build-id for a file the map identifies by one: not counted", stats.unidentified),
        ));
    }
    if stats.ignored > 0 {
        warnings.push(Finding::new(
            "records-ignored",
            format!(
                "{} of {} records lie outside the window and were ignored",
                stats.ignored, stats.records
            ),
        ));
    }

    VerificationResult {
        verdict: if reasons.is_empty() {
            Verdict::Pass
        } else {
            Verdict::Fail
        },
        reasons,
        warnings,
        window: v.window,
        observation_rate: overall,
        per_tag,
        paths,
        unexpected_symbols,
        unexpected_omitted,
        probe_failures,
        probe_failures_omitted,
        observations: stats,
    }
}
