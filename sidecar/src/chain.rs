// SPDX-License-Identifier: Apache-2.0
//! The chain of reports of one pod: each report carries its `sequence` (from 1) and `previous`, the
//! sha256 of the previous report's signed bundle bytes (the OCI layer digest as pushed), so that a
//! verifier finds a missing, altered, duplicated or reordered report and names it
//! (docs/contracts/report.md, "Chain").
//!
//! Two halves:
//! - [`Chain`]: the producer's state, persisted as `chain.json` in the spool directory (written
//!   atomically and fsync'd). A restarted sidecar continues from it and marks its next report
//!   `chainResumed`; without state (empty directory, another pod's state, an unreadable file) the chain
//!   starts anew at 1 and the report says `chainStart`, so a verifier can tell a fresh chain from a gap.
//!   A report that could not be kept (spool full, disk full) does not advance the chain: the next kept
//!   report counts it in `missedReports`.
//! - [`verify_chain`]: a pure function over verified reports grouped by pod.

mod verify;

pub use verify::{
    ChainEntry, ChainFields, ChainNotice, ChainProblem, ChainReport, PodChain, Rejected, ReportId,
    verify_chain,
};

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::report::{PodIdentity, ReportContext};

/// The chain state file inside the spool directory.
pub const STATE_FILE: &str = "chain.json";
/// Where unreadable state and spool files are moved (never deleted), inside the spool directory.
pub const QUARANTINE_DIR: &str = "quarantine";

/// Errors of the chain state.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// Reading or writing the state failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done ("writing the chain state").
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// [`Chain::record`] was given a link that is not the chain's next one (a caller bug: a link is
    /// used once, right after [`Chain::next_link`]).
    #[error("chain of pod {pod:?}: recorded sequence {got}, but the next one is {expected}")]
    OutOfOrder {
        /// The chain's pod key.
        pod: String,
        /// The sequence the chain expected.
        expected: u64,
        /// The sequence recorded.
        got: u64,
    },
}

/// The key reports are grouped by: `namespace/name`, `name`, or `""` when the report names no pod.
pub fn pod_key(pod: Option<&PodIdentity>) -> String {
    match pod {
        Some(PodIdentity {
            name: Some(name),
            namespace: Some(ns),
            ..
        }) => format!("{ns}/{name}"),
        Some(PodIdentity {
            name: Some(name), ..
        }) => name.clone(),
        _ => String::new(),
    }
}

/// sha256 hex of `bytes`: a bundle's digest as its successor names it.
pub fn bundle_digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The persisted state (`chain.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChainState {
    /// The pod key ([`pod_key`]) the chain belongs to.
    pub pod: String,
    /// The last recorded report's sequence; 0 before the first.
    pub sequence: u64,
    /// sha256 hex of the last recorded report's bundle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<String>,
    /// Reports refused since the last recorded one.
    #[serde(default)]
    pub missed: u64,
}

/// Why a chain starts anew.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FreshReason {
    /// No state file: a new pod, or the spool directory was lost.
    NoState,
    /// The state belongs to another pod (a reused spool directory).
    OtherPod {
        /// The pod key found in the state.
        found: String,
    },
    /// The state file was unreadable; it was moved to `quarantine/`.
    Unreadable {
        /// Where it was moved.
        moved_to: PathBuf,
        /// Why it was unreadable.
        reason: String,
    },
}

/// How [`Chain::open`] found the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resumption {
    /// A new chain: the next report has sequence 1 and `chainStart`.
    Fresh(FreshReason),
    /// The persisted chain continues: the next report has `sequence` + 1 and `chainResumed`.
    Resumed {
        /// The last report recorded before the restart.
        sequence: u64,
    },
}

/// The chain fields of the next report; apply them to its [`ReportContext`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainLink {
    /// The report's sequence.
    pub sequence: u64,
    /// sha256 hex of the previous report's bundle; `None` for sequence 1.
    pub previous: Option<String>,
    /// The first report of a new chain.
    pub chain_start: bool,
    /// The first report after a restart that continued the chain.
    pub chain_resumed: bool,
    /// Reports refused (not kept) since the previous one.
    pub missed_reports: u64,
}

impl ChainLink {
    /// Sets `sequence`, `previous`, `chain_start`, `chain_resumed` and `missed_reports` of `ctx`.
    pub fn apply(&self, ctx: &mut ReportContext) {
        ctx.sequence = Some(self.sequence);
        ctx.previous = self
            .previous
            .as_ref()
            .map(|hex| BTreeMap::from([("sha256".to_owned(), hex.clone())]));
        ctx.chain_start = self.chain_start;
        ctx.chain_resumed = self.chain_resumed;
        ctx.missed_reports = self.missed_reports;
    }
}

/// The producer side of one pod's chain, persisted in a directory (the spool directory).
///
/// Use: [`Chain::next_link`] -> build and sign the report -> keep it (spool) -> [`Chain::record`] with
/// the signed bundle bytes, or [`Chain::record_missed`] when it could not be kept.
/// `crate::daemon::spool::Spool::enqueue` does the last two steps.
#[derive(Debug)]
pub struct Chain {
    dir: PathBuf,
    state: ChainState,
    /// The next report is the first after a restart that continued the chain.
    resumed: bool,
}

impl Chain {
    /// Opens the chain of `pod` (a [`pod_key`]) in `dir`, creating `dir` when missing.
    ///
    /// An unreadable state file is moved to `dir/quarantine/` (logged) and the chain starts anew:
    /// the sidecar keeps producing reports, and the next one says `chainStart`.
    pub fn open(dir: &Path, pod: &str) -> Result<(Self, Resumption), ChainError> {
        create_private_dir(dir)?;
        let path = dir.join(STATE_FILE);
        let fresh = |reason| {
            let chain = Self {
                dir: dir.to_path_buf(),
                state: ChainState {
                    pod: pod.to_owned(),
                    sequence: 0,
                    previous: None,
                    missed: 0,
                },
                resumed: false,
            };
            Ok((chain, Resumption::Fresh(reason)))
        };
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return fresh(FreshReason::NoState);
            }
            Err(source) => {
                return Err(ChainError::Io {
                    action: "reading the chain state",
                    path,
                    source,
                });
            }
        };
        let state = match parse_state(&bytes) {
            Ok(state) => state,
            Err(reason) => {
                let moved_to = quarantine(dir, &path)?;
                tracing::warn!(path = %path.display(), moved_to = %moved_to.display(), %reason,
                    "chain state unreadable; starting a new chain");
                return fresh(FreshReason::Unreadable { moved_to, reason });
            }
        };
        if state.pod != pod {
            tracing::info!(found = %state.pod, pod, "chain state belongs to another pod; starting a new chain");
            return fresh(FreshReason::OtherPod { found: state.pod });
        }
        if state.sequence == 0 {
            // Only refusals were recorded: the chain has not started yet.
            let missed = state.missed;
            let (mut chain, resumption) = fresh(FreshReason::NoState)?;
            chain.state.missed = missed;
            return Ok((chain, resumption));
        }
        let sequence = state.sequence;
        Ok((
            Self {
                dir: dir.to_path_buf(),
                state,
                resumed: true,
            },
            Resumption::Resumed { sequence },
        ))
    }

    /// The pod key of this chain.
    pub fn pod(&self) -> &str {
        &self.state.pod
    }

    /// The last recorded report: sequence and bundle digest.
    pub fn last(&self) -> Option<(u64, &str)> {
        match (self.state.sequence, &self.state.previous) {
            (0, _) | (_, None) => None,
            (sequence, Some(digest)) => Some((sequence, digest)),
        }
    }

    /// The persisted state.
    pub fn state(&self) -> &ChainState {
        &self.state
    }

    /// The chain fields of the next report.
    pub fn next_link(&self) -> ChainLink {
        let started = self.state.sequence > 0;
        ChainLink {
            sequence: self.state.sequence + 1,
            previous: if started {
                self.state.previous.clone()
            } else {
                None
            },
            chain_start: !started,
            chain_resumed: started && self.resumed,
            missed_reports: self.state.missed,
        }
    }

    /// Records that the report built with `link` was kept, its signed bundle being `bundle`; persists
    /// the state. Returns the bundle's sha256 hex (the next report's `previous`).
    pub fn record(&mut self, link: &ChainLink, bundle: &[u8]) -> Result<String, ChainError> {
        self.record_digest(link, bundle_digest(bundle))
    }

    /// [`Chain::record`] with the bundle's digest already computed.
    ///
    /// The chain advances in memory even when persisting the state fails (the error then says the
    /// state file is behind; [`Chain::adopt`] catches up from the spool at the next start), so that the
    /// next report never reuses a sequence.
    pub fn record_digest(
        &mut self,
        link: &ChainLink,
        digest: String,
    ) -> Result<String, ChainError> {
        self.check_next(link)?;
        self.state = ChainState {
            pod: self.state.pod.clone(),
            sequence: link.sequence,
            previous: Some(digest.clone()),
            missed: 0,
        };
        self.resumed = false;
        self.persist()?;
        Ok(digest)
    }

    /// Fails unless `link` is the chain's next link.
    pub fn check_next(&self, link: &ChainLink) -> Result<(), ChainError> {
        let expected = self.state.sequence + 1;
        if link.sequence == expected {
            Ok(())
        } else {
            Err(ChainError::OutOfOrder {
                pod: self.state.pod.clone(),
                expected,
                got: link.sequence,
            })
        }
    }

    /// Records that the next report could not be kept: the chain does not advance, and the next kept
    /// report counts it in `missedReports`. Counted in memory even when persisting fails (a full disk).
    pub fn record_missed(&mut self) -> Result<(), ChainError> {
        self.state.missed += 1;
        self.persist()
    }

    /// Adopts a report kept in the spool but not recorded in the state (the process stopped between
    /// the two writes): when `sequence` is past the state's, the chain continues from it.
    pub fn adopt(&mut self, sequence: u64, digest: &str) -> Result<bool, ChainError> {
        if sequence <= self.state.sequence {
            return Ok(false);
        }
        tracing::info!(pod = %self.state.pod, sequence, "chain continues from a spooled report newer than its state");
        self.state = ChainState {
            pod: self.state.pod.clone(),
            sequence,
            previous: Some(digest.to_owned()),
            missed: 0,
        };
        self.resumed = true;
        self.persist()?;
        Ok(true)
    }

    fn persist(&self) -> Result<(), ChainError> {
        let mut bytes = serde_json::to_vec_pretty(&self.state).unwrap_or_default();
        bytes.push(b'\n');
        write_durably(&self.dir.join(STATE_FILE), &bytes).map_err(|(action, path, source)| {
            ChainError::Io {
                action,
                path,
                source,
            }
        })
    }
}

fn parse_state(bytes: &[u8]) -> Result<ChainState, String> {
    let state: ChainState = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    match (&state.previous, state.sequence) {
        (None, 0) => {}
        (Some(hex), s) if s > 0 && is_sha256_hex(hex) => {}
        _ => {
            return Err(format!(
                "sequence {} with previous {:?} is inconsistent",
                state.sequence, state.previous
            ));
        }
    }
    Ok(state)
}

/// 64 lowercase hex digits.
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Creates `dir` (mode 0700) and its parents.
pub(crate) fn create_private_dir(dir: &Path) -> Result<(), ChainError> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| ChainError::Io {
            action: "creating the directory",
            path: dir.to_path_buf(),
            source,
        })
}

/// Moves `path` into `dir/quarantine/` under a unique name; returns the new path.
pub(crate) fn quarantine(dir: &Path, path: &Path) -> Result<PathBuf, ChainError> {
    let qdir = dir.join(QUARANTINE_DIR);
    create_private_dir(&qdir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "entry".to_owned());
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.6fZ");
    let target = qdir.join(format!("{name}.{stamp}"));
    std::fs::rename(path, &target).map_err(|source| ChainError::Io {
        action: "moving an unreadable file to quarantine",
        path: path.to_path_buf(),
        source,
    })?;
    Ok(target)
}

/// Writes `bytes` to `path` durably: a temporary file in the same directory (named `.tmp-*`),
/// fsync'd, renamed over `path`, then the directory fsync'd so that the rename survives a crash.
pub(crate) fn write_durably(
    path: &Path,
    bytes: &[u8],
) -> Result<(), (&'static str, PathBuf, std::io::Error)> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(|e| ("creating a temporary file in", dir.to_path_buf(), e))?;
    let tmp_path = tmp.path().to_path_buf();
    tmp.write_all(bytes)
        .map_err(|e| ("writing", tmp_path.clone(), e))?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| ("syncing", tmp_path.clone(), e))?;
    tmp.persist(path)
        .map_err(|e| ("renaming a temporary file to", path.to_path_buf(), e.error))?;
    sync_dir(dir).map_err(|e| ("syncing the directory", dir.to_path_buf(), e))
}

/// fsync of a directory: makes a rename or unlink in it durable.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests;
