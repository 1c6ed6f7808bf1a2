// SPDX-License-Identifier: Apache-2.0
//! Verification of observations against a function map.
//!
//! The semantics are specified in docs/contracts/verification.md (section numbers below refer to it);
//! this module implements exactly that. [`Verifier`] takes records one at a time with O(1) work and no
//! allocation per record (the sidecar feeds it from memory), or whole files parsed on all cores
//! ([`Verifier::add_files`], [`verify_files`]); memory is bounded by the map, not by the input.

mod evidence;
mod index;
mod parallel;
mod rate;
mod result;
mod tally;
#[cfg(test)]
mod tests;

pub use result::{
    CallResult, Finding, ObservationStats, Omitted, PathResult, PathStatus, ProbeFailure,
    RateResult, UnexpectedSymbol, Verdict, VerificationResult,
};

use std::path::PathBuf;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::function_map::FunctionMap;
use crate::observation::{
    CHUNK_BYTES, ObservationReader, ReadError, Record, RecordError, RecordView,
};

pub use evidence::MAX_LISTED;
use evidence::{Evidence, Pos};
use index::MapIndex;

/// A closed interval of UTC instants; a missing bound is unbounded on that side (section 1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    #[serde(with = "crate::observation::time_serde::optional")]
    pub from: Option<DateTime<Utc>>,
    #[serde(with = "crate::observation::time_serde::optional")]
    pub to: Option<DateTime<Utc>>,
}

impl Window {
    /// Whether the whole interval `[start, end]` lies inside the window.
    pub fn contains(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> bool {
        self.from.is_none_or(|from| from <= start) && self.to.is_none_or(|to| end <= to)
    }
}

/// Verification could not be carried out: the input is bad (exit code 2), the verdict is not decided.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("invalid observation record: {0}")]
    Record(#[from] RecordError),
    #[error("the window starts ({from}) after it ends ({to})")]
    Window { from: String, to: String },
}

/// Streams records against one map; see the module documentation.
#[derive(Debug)]
pub struct Verifier<'m> {
    map: &'m FunctionMap,
    window: Window,
    index: MapIndex<'m>,
    evidence: Evidence,
    /// Position of the next record in reading order (records added one by one share a batch number;
    /// files get fresh chunk numbers after it).
    next: Pos,
}

impl<'m> Verifier<'m> {
    /// A verifier for `map` over `window`. A window whose `from` is after its `to` counts nothing.
    pub fn new(map: &'m FunctionMap, window: Window) -> Self {
        let index = MapIndex::new(map);
        let evidence = Evidence::new(&index);
        Self {
            map,
            window,
            index,
            evidence,
            next: Pos::default(),
        }
    }

    /// Adds one in-memory record. It is checked exactly as a line read from a file would be.
    pub fn add(&mut self, record: &Record) -> Result<(), VerifyError> {
        let view = RecordView::from_record(record)?;
        self.add_view(&view);
        Ok(())
    }

    /// Adds one checked record (as produced by [`ObservationReader::next_view`]).
    pub fn add_view(&mut self, record: &RecordView<'_>) {
        self.evidence
            .add(&self.index, &self.window, record, self.next);
        self.next.line += 1;
    }

    /// Adds every record of `files` (plain or gzip, read in order), parsing on all cores. The result is
    /// the same as adding the records one by one; on bad input nothing is added and the error is the
    /// first one in reading order.
    pub fn add_files(&mut self, files: &[PathBuf]) -> Result<(), VerifyError> {
        self.add_files_in_chunks(files, CHUNK_BYTES)
    }

    fn add_files_in_chunks(
        &mut self,
        files: &[PathBuf],
        chunk_bytes: usize,
    ) -> Result<(), VerifyError> {
        let first_seq = self.next.seq + 1;
        let (evidence, next_seq) =
            parallel::read_files(&self.index, &self.window, files, first_seq, chunk_bytes)?;
        self.evidence.merge(evidence);
        self.next = Pos {
            seq: next_seq,
            line: 0,
        };
        Ok(())
    }

    /// Decides statuses, rates and the verdict (sections 6, 7, 10).
    pub fn finish(self) -> VerificationResult {
        result::finish(self)
    }
}

/// Verifies `files` (plain or gzip, in order) with [`Verifier::add_files`]. Stops at the first bad record.
pub fn verify_files(
    map: &FunctionMap,
    files: &[PathBuf],
    window: Window,
) -> Result<VerificationResult, VerifyError> {
    let span = tracing::info_span!("verify", service = %map.predicate.service, files = files.len());
    let _enter = span.enter();
    let mut verifier = Verifier::new(map, window);
    verifier.add_files(files)?;
    let mut result = verifier.finish();
    result.observations.files = files.iter().map(|f| f.display().to_string()).collect();
    tracing::debug!(records = result.observations.records, verdict = ?result.verdict, "verified");
    Ok(result)
}

/// The latest `end` of all records in `files`, `None` when there is no record (a fast pre-pass: see
/// [`ObservationReader::latest_end`]).
pub fn latest_end(files: &[PathBuf]) -> Result<Option<DateTime<Utc>>, VerifyError> {
    Ok(ObservationReader::new(files.iter().cloned()).latest_end()?)
}

/// Resolves the window of `linkguard verify` from its flags (section 1). Only when neither bound is
/// given are the files read (for the latest record end).
pub fn resolve_window(
    map: &FunctionMap,
    files: &[PathBuf],
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
) -> Result<Window, VerifyError> {
    let length = i64::try_from(map.predicate.coverage.window_seconds)
        .ok()
        .and_then(TimeDelta::try_seconds);
    let before = |t: DateTime<Utc>| length.and_then(|d| t.checked_sub_signed(d));
    let after = |t: DateTime<Utc>| length.and_then(|d| t.checked_add_signed(d));
    let window = match (from, to) {
        (Some(from), Some(to)) => Window {
            from: Some(from),
            to: Some(to),
        },
        (None, Some(to)) => Window {
            from: before(to),
            to: Some(to),
        },
        (Some(from), None) => Window {
            from: Some(from),
            to: after(from),
        },
        (None, None) => match latest_end(files)? {
            Some(to) => Window {
                from: before(to),
                to: Some(to),
            },
            None => Window::default(),
        },
    };
    if let (Some(from), Some(to)) = (window.from, window.to)
        && from > to
    {
        return Err(VerifyError::Window {
            from: crate::observation::format_time(from),
            to: crate::observation::format_time(to),
        });
    }
    Ok(window)
}
