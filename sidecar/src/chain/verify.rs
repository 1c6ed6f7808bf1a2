// SPDX-License-Identifier: Apache-2.0
//! [`verify_chain`]: finds missing, altered, duplicated and reordered reports in the chains of verified
//! reports, per pod, and names each report at fault.
//!
//! Reports are grouped by pod ([`super::pod_key`]). Within a pod, each report saying `chainStart`
//! begins a new chain (the sidecar had lost its state); every other report belongs to the chain whose
//! start is the latest one generated at or before it. Within a chain, reports are ordered by sequence,
//! and each pair of neighbours is checked: consecutive sequences, the successor's `previous` equal to
//! the predecessor's bundle digest, and `generatedAt` increasing.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value};

/// A report as the chain verifier sees it: already signature-checked by the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainEntry {
    /// The referrer's manifest digest (`sha256:<hex>`), how `reports list` names it.
    pub manifest: String,
    /// sha256 hex of the bundle bytes (the layer digest): what the successor's `previous` names.
    pub bundle: String,
    /// The chain fields of its predicate.
    pub fields: ChainFields,
}

/// The chain fields of a report's predicate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChainFields {
    /// [`super::pod_key`] of `predicate.pod`.
    pub pod: String,
    /// `predicate.sequence`; `None` for a report not made by the sidecar.
    pub sequence: Option<u64>,
    /// `predicate.previous.sha256`.
    pub previous: Option<String>,
    /// `predicate.generatedAt`.
    pub generated_at: Option<DateTime<Utc>>,
    /// `predicate.chainStart`.
    pub chain_start: bool,
    /// `predicate.chainResumed`.
    pub chain_resumed: bool,
    /// `predicate.missedReports`.
    pub missed_reports: u64,
}

impl ChainFields {
    /// Reads the chain fields of a report predicate (`verification-report/v1`). Fields of the wrong
    /// type are an error (the report is then rejected, not silently unchained).
    pub fn from_predicate(predicate: &Map<String, Value>) -> Result<Self, String> {
        let get = |name: &str| predicate.get(name).filter(|v| !v.is_null());
        let text = |v: Option<&Value>, name: &str| -> Result<Option<String>, String> {
            v.map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| format!("{name} is not a string"))
            })
            .transpose()
        };
        let pod = match get("pod") {
            None => None,
            Some(Value::Object(p)) => Some(crate::report::PodIdentity {
                name: text(p.get("name"), "pod.name")?,
                namespace: text(p.get("namespace"), "pod.namespace")?,
                node: None,
                container: None,
            }),
            Some(_) => return Err("pod is not an object".to_owned()),
        };
        let sequence = match get("sequence") {
            None => None,
            Some(v) => Some(
                v.as_u64()
                    .ok_or_else(|| format!("sequence {v} is not a non-negative integer"))?,
            ),
        };
        let previous = match get("previous") {
            None => None,
            Some(v) => {
                let hex = v
                    .get("sha256")
                    .and_then(Value::as_str)
                    .filter(|h| super::is_sha256_hex(h))
                    .ok_or_else(|| format!("previous {v} is not {{\"sha256\": <64 hex>}}"))?;
                Some(hex.to_owned())
            }
        };
        let generated_at = match text(get("generatedAt"), "generatedAt")? {
            None => None,
            Some(t) => Some(
                DateTime::parse_from_rfc3339(&t)
                    .map_err(|e| format!("generatedAt {t:?} is not RFC 3339: {e}"))?
                    .with_timezone(&Utc),
            ),
        };
        let flag = |name: &str| match get(name) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(v) => Err(format!("{name} {v} is not a boolean")),
        };
        let missed_reports = match get("missedReports") {
            None => 0,
            Some(v) => v
                .as_u64()
                .ok_or_else(|| format!("missedReports {v} is not a non-negative integer"))?,
        };
        Ok(Self {
            pod: super::pod_key(pod.as_ref()),
            sequence,
            previous,
            generated_at,
            chain_start: flag("chainStart")?,
            chain_resumed: flag("chainResumed")?,
            missed_reports,
        })
    }
}

/// A report that could not take part in the chain (bad signature, wrong subject, not a report).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// The referrer's manifest digest.
    pub manifest: String,
    /// Why.
    pub reason: String,
}

/// Names one report: its sequence and manifest digest (and bundle digest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportId {
    /// The report's sequence.
    pub sequence: u64,
    /// The referrer's manifest digest.
    pub manifest: String,
    /// sha256 hex of its bundle.
    pub bundle: String,
}

impl fmt::Display for ReportId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "seq {} ({})", self.sequence, self.manifest)
    }
}

/// Something wrong in a chain; each names the report(s) at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainProblem {
    /// Sequences `from..=to` are absent.
    Missing {
        /// First missing sequence.
        from: u64,
        /// Last missing sequence.
        to: u64,
        /// The report before the gap (none when the chain's head is missing).
        after: Option<ReportId>,
        /// The report after the gap.
        before: ReportId,
    },
    /// `report`'s `previous` is not the bundle digest of its predecessor. When `successor` is set, the
    /// successor does not name `report` either: `report` itself was altered or replaced. Otherwise
    /// one of the two was.
    Altered {
        /// The report whose link is broken.
        report: ReportId,
        /// Its `previous` (none: it has no `previous` but is not a chain start).
        claimed: Option<String>,
        /// The report with the preceding sequence.
        predecessor: ReportId,
        /// The next report, whose `previous` does not name `report` either.
        successor: Option<ReportId>,
    },
    /// `report` has a higher sequence than `predecessor` but was generated before it.
    Reordered {
        /// The report out of order.
        report: ReportId,
        /// Its `generatedAt`.
        generated_at: DateTime<Utc>,
        /// The report with the preceding sequence.
        predecessor: ReportId,
        /// The predecessor's `generatedAt`.
        predecessor_generated_at: DateTime<Utc>,
    },
    /// Different reports with the same sequence in one chain.
    Duplicate {
        /// The sequence.
        sequence: u64,
        /// Every report carrying it.
        reports: Vec<ReportId>,
    },
    /// The chain fields contradict each other (`chainStart` with a sequence other than 1 or with a
    /// `previous`, sequence 0).
    Malformed {
        /// The report.
        report: ReportId,
        /// What is wrong.
        reason: String,
    },
}

fn short(hex: Option<&str>) -> String {
    hex.map_or_else(|| "(none)".to_owned(), |h| format!("sha256:{h}"))
}

impl fmt::Display for ChainProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing {
                from,
                to,
                after,
                before,
            } => {
                let range = if from == to {
                    format!("{from}")
                } else {
                    format!("{from}-{to}")
                };
                match after {
                    Some(after) => write!(f, "missing: {range} between {after} and {before}"),
                    None => write!(
                        f,
                        "missing: {range} before {before}, the first report present (no chainStart)"
                    ),
                }
            }
            Self::Altered {
                report,
                claimed,
                predecessor,
                successor: Some(successor),
            } => write!(
                f,
                "altered: report {report} says previous={} but its predecessor {predecessor} is \
                 sha256:{}, and its successor {successor} does not name it either: {report} was \
                 altered or replaced",
                short(claimed.as_deref()),
                predecessor.bundle,
            ),
            Self::Altered {
                report,
                claimed,
                predecessor,
                successor: None,
            } => write!(
                f,
                "altered: report {report} says previous={} but its predecessor {predecessor} is \
                 sha256:{}: one of the two was altered or replaced",
                short(claimed.as_deref()),
                predecessor.bundle
            ),
            Self::Reordered {
                report,
                generated_at,
                predecessor,
                predecessor_generated_at,
            } => write!(
                f,
                "reordered: report {report} was generated at {} before its predecessor {predecessor} \
                 ({})",
                generated_at.to_rfc3339_opts(SecondsFormat::Millis, true),
                predecessor_generated_at.to_rfc3339_opts(SecondsFormat::Millis, true)
            ),
            Self::Duplicate { sequence, reports } => {
                write!(
                    f,
                    "duplicate: sequence {sequence} is carried by {} different reports:",
                    reports.len()
                )?;
                for r in reports {
                    write!(f, " {} (bundle sha256:{})", r.manifest, r.bundle)?;
                }
                Ok(())
            }
            Self::Malformed { report, reason } => write!(f, "malformed: report {report}: {reason}"),
        }
    }
}

/// Something a verifier should know that is not evidence of tampering: each was declared by the
/// signed report itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainNotice {
    /// The sidecar restarted and continued the chain at this report (`chainResumed`).
    Resumed {
        /// The first report after the restart.
        report: ReportId,
    },
    /// A new chain began in a pod that already had one (`chainStart`): the sidecar lost its state, and
    /// reports waiting in its spool at that moment may have been lost with it.
    Restarted {
        /// The first report of the new chain.
        report: ReportId,
        /// The last report of the previous chain.
        previous_chain_last: ReportId,
    },
    /// The sidecar could not keep `count` reports before `report` (spool or disk full).
    MissedReports {
        /// The report declaring them.
        report: ReportId,
        /// How many.
        count: u64,
    },
}

impl fmt::Display for ChainNotice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Resumed { report } => write!(
                f,
                "resumed: the sidecar restarted and continued the chain at {report}"
            ),
            Self::Restarted {
                report,
                previous_chain_last,
            } => write!(
                f,
                "restarted: a new chain starts at {report} after a chain ending at {previous_chain_last}; \
                 the sidecar lost its state, and reports it had not pushed may be lost"
            ),
            Self::MissedReports { report, count } => write!(
                f,
                "missed: {count} report(s) before {report} were not kept by the sidecar (spool or disk full)"
            ),
        }
    }
}

/// One chain of one pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodChain {
    /// The pod key.
    pub pod: String,
    /// Lowest sequence present.
    pub first: u64,
    /// Highest sequence present.
    pub last: u64,
    /// Distinct reports in the chain.
    pub count: usize,
    /// Whether the chain's first report says `chainStart`.
    pub started: bool,
    /// Problems found.
    pub problems: Vec<ChainProblem>,
    /// Notices.
    pub notices: Vec<ChainNotice>,
}

/// The outcome of [`verify_chain`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChainReport {
    /// Chains, by pod then start time.
    pub chains: Vec<PodChain>,
    /// Reports without chain fields (manifest digests).
    pub unchained: Vec<String>,
    /// Reports refused before chain verification.
    pub rejected: Vec<Rejected>,
}

impl ChainReport {
    /// Number of problems, rejected reports included.
    pub fn problems(&self) -> usize {
        self.rejected.len() + self.chains.iter().map(|c| c.problems.len()).sum::<usize>()
    }

    /// No problem and no rejected report.
    pub fn intact(&self) -> bool {
        self.problems() == 0
    }
}

#[derive(Debug, Clone)]
struct Node {
    id: ReportId,
    fields: ChainFields,
}

/// Verifies the chains formed by `entries` (verified reports) grouped by pod; `rejected` are carried
/// into the report as problems. Entries with the same bundle digest are one report pushed twice.
pub fn verify_chain(entries: Vec<ChainEntry>, rejected: Vec<Rejected>) -> ChainReport {
    let mut unchained = Vec::new();
    let mut by_pod: BTreeMap<String, BTreeMap<String, Node>> = BTreeMap::new();
    for e in entries {
        let Some(sequence) = e.fields.sequence else {
            unchained.push(e.manifest);
            continue;
        };
        let node = Node {
            id: ReportId {
                sequence,
                manifest: e.manifest,
                bundle: e.bundle.clone(),
            },
            fields: e.fields,
        };
        // Same bundle bytes: the same report (pushed twice); keep the smallest manifest digest.
        let pod = by_pod.entry(node.fields.pod.clone()).or_default();
        match pod.get(&e.bundle) {
            Some(kept) if kept.id.manifest <= node.id.manifest => {}
            _ => {
                pod.insert(e.bundle, node);
            }
        }
    }
    let mut chains = Vec::new();
    for (pod, nodes) in by_pod {
        let nodes: Vec<Node> = nodes.into_values().collect();
        let mut previous_last: Option<ReportId> = None;
        for segment in segments(nodes) {
            let chain = verify_segment(&pod, segment, previous_last.as_ref());
            previous_last = chain.1;
            chains.push(chain.0);
        }
    }
    unchained.sort();
    ChainReport {
        chains,
        unchained,
        rejected,
    }
}

/// Splits a pod's reports into chains: each `chainStart` report opens one, ordered by generation time;
/// the others join the latest chain opened at or before their `generatedAt` (the first chain when
/// there is none, or when they have no `generatedAt`).
fn segments(mut nodes: Vec<Node>) -> Vec<Vec<Node>> {
    let key = |n: &Node| (n.fields.generated_at, n.id.sequence, n.id.bundle.clone());
    nodes.sort_by_key(key);
    let mut starts: Vec<Option<DateTime<Utc>>> = nodes
        .iter()
        .filter(|n| n.fields.chain_start)
        .map(|n| n.fields.generated_at)
        .collect();
    starts.dedup();
    if starts.is_empty() {
        return vec![nodes];
    }
    // Reports generated before the first start form a chain of their own (its head is missing).
    let before_first = nodes.iter().any(|n| {
        !n.fields.chain_start
            && n.fields.generated_at.is_some()
            && n.fields.generated_at < starts[0]
    });
    let offset = usize::from(before_first);
    let mut out: Vec<Vec<Node>> = vec![Vec::new(); starts.len() + offset];
    for n in nodes {
        let at = n.fields.generated_at;
        let index = if n.fields.chain_start {
            starts
                .iter()
                .position(|s| *s == at)
                .map_or(0, |i| i + offset)
        } else if at.is_none() {
            offset
        } else {
            match starts.iter().rposition(|s| *s <= at) {
                Some(i) => i + offset,
                None => 0,
            }
        };
        out[index].push(n);
    }
    out.retain(|s| !s.is_empty());
    out
}

/// Verifies one chain; returns it and its last report.
fn verify_segment(
    pod: &str,
    nodes: Vec<Node>,
    previous_last: Option<&ReportId>,
) -> (PodChain, Option<ReportId>) {
    let mut problems = Vec::new();
    let mut notices = Vec::new();
    let mut by_seq: BTreeMap<u64, Vec<Node>> = BTreeMap::new();
    for n in nodes {
        by_seq.entry(n.id.sequence).or_default().push(n);
    }
    let count = by_seq.values().map(Vec::len).sum();
    // One report per sequence: when several, the one the successor names (else the first by digest);
    // the others are reported as duplicates.
    let sequences: Vec<u64> = by_seq.keys().copied().collect();
    let mut chosen: Vec<Node> = Vec::new();
    for (i, seq) in sequences.iter().enumerate() {
        let mut group = by_seq.remove(seq).unwrap_or_default();
        group.sort_by(|a, b| a.id.manifest.cmp(&b.id.manifest));
        if group.len() > 1 {
            problems.push(ChainProblem::Duplicate {
                sequence: *seq,
                reports: group.iter().map(|n| n.id.clone()).collect(),
            });
            let named = sequences
                .get(i + 1)
                .filter(|next| **next == seq + 1)
                .and_then(|next| {
                    by_seq.get(next).and_then(|succ| {
                        group.iter().position(|n| {
                            succ.iter()
                                .any(|s| s.fields.previous.as_deref() == Some(n.id.bundle.as_str()))
                        })
                    })
                });
            let keep = named.unwrap_or(0);
            chosen.push(group.swap_remove(keep));
        } else if let Some(n) = group.pop() {
            chosen.push(n);
        }
    }
    for n in &chosen {
        let reason = if n.id.sequence == 0 {
            Some("sequence 0 (sequences start at 1)".to_owned())
        } else if n.fields.chain_start && n.id.sequence != 1 {
            Some(format!(
                "chainStart on sequence {} (a chain starts at 1)",
                n.id.sequence
            ))
        } else if n.fields.chain_start && n.fields.previous.is_some() {
            Some("chainStart with a previous digest".to_owned())
        } else if n.fields.chain_start && n.fields.chain_resumed {
            Some("both chainStart and chainResumed".to_owned())
        } else {
            None
        };
        if let Some(reason) = reason {
            problems.push(ChainProblem::Malformed {
                report: n.id.clone(),
                reason,
            });
        }
        if n.fields.chain_resumed {
            notices.push(ChainNotice::Resumed {
                report: n.id.clone(),
            });
        }
        if n.fields.missed_reports > 0 {
            notices.push(ChainNotice::MissedReports {
                report: n.id.clone(),
                count: n.fields.missed_reports,
            });
        }
    }
    let Some(head) = chosen.first() else {
        return (
            PodChain {
                pod: pod.to_owned(),
                first: 0,
                last: 0,
                count: 0,
                started: false,
                problems,
                notices,
            },
            None,
        );
    };
    let started = head.fields.chain_start;
    if started && let Some(prev) = previous_last {
        notices.insert(
            0,
            ChainNotice::Restarted {
                report: head.id.clone(),
                previous_chain_last: prev.clone(),
            },
        );
    }
    if !started && head.id.sequence > 1 {
        problems.push(ChainProblem::Missing {
            from: 1,
            to: head.id.sequence - 1,
            after: None,
            before: head.id.clone(),
        });
    } else if !started && head.id.sequence == 1 && head.fields.previous.is_none() {
        // A first report without the marker (older producers): accepted, it cannot be linked anyway.
    }
    // Links: which pairs of neighbours are broken.
    let mut broken = vec![false; chosen.len()]; // broken[i]: link (i-1 -> i) broken
    for i in 1..chosen.len() {
        let (a, b) = (&chosen[i - 1], &chosen[i]);
        if b.id.sequence > a.id.sequence + 1 {
            problems.push(ChainProblem::Missing {
                from: a.id.sequence + 1,
                to: b.id.sequence - 1,
                after: Some(a.id.clone()),
                before: b.id.clone(),
            });
        } else if b.fields.previous.as_deref() != Some(a.id.bundle.as_str()) {
            broken[i] = true;
        }
        if let (Some(ta), Some(tb)) = (a.fields.generated_at, b.fields.generated_at)
            && tb < ta
        {
            problems.push(ChainProblem::Reordered {
                report: b.id.clone(),
                generated_at: tb,
                predecessor: a.id.clone(),
                predecessor_generated_at: ta,
            });
        }
    }
    let mut i = 1;
    while i < chosen.len() {
        if broken[i] {
            let both = broken.get(i + 1).copied().unwrap_or(false);
            problems.push(ChainProblem::Altered {
                report: chosen[i].id.clone(),
                claimed: chosen[i].fields.previous.clone(),
                predecessor: chosen[i - 1].id.clone(),
                successor: both.then(|| chosen[i + 1].id.clone()),
            });
            // The successor's broken link is explained by this report.
            i += if both { 2 } else { 1 };
        } else {
            i += 1;
        }
    }
    let last = chosen.last().map(|n| n.id.clone());
    (
        PodChain {
            pod: pod.to_owned(),
            first: head.id.sequence,
            last: last.as_ref().map_or(0, |l| l.sequence),
            count,
            started,
            problems,
            notices,
        },
        last,
    )
}
