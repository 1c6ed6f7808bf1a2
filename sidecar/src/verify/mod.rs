// SPDX-License-Identifier: Apache-2.0
//! Verification of observations against a function map.
//!
//! The semantics are specified in docs/contracts/verification.md (section numbers below refer to it);
//! this module implements exactly that. [`Verifier`] consumes records one at a time with O(1) work and
//! no allocation per record, so `linkguard verify` streams files and the sidecar feeds records from
//! memory; memory is bounded by the map.

mod index;
mod rate;
mod result;
mod tally;
#[cfg(test)]
mod tests;

pub use result::{
    CallResult, Finding, ObservationStats, Omitted, PathResult, PathStatus, ProbeFailure,
    RateResult, UnexpectedSymbol, Verdict, VerificationResult,
};

use std::fmt::Write as _;
use std::path::PathBuf;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::function_map::FunctionMap;
use crate::observation::{
    BodyView, ObservationReader, ProbeStatus, ReadError, Record, RecordError, RecordView,
};

use index::{MapIndex, Slot};
use tally::BoundedTally;

/// At most this many distinct unexpected symbols and probe failure entries are kept (sections 8, 9).
pub const MAX_LISTED: usize = 10_000;

/// A closed interval of UTC instants; a missing bound is unbounded on that side (section 1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    #[serde(with = "opt_time")]
    pub from: Option<DateTime<Utc>>,
    #[serde(with = "opt_time")]
    pub to: Option<DateTime<Utc>>,
}

impl Window {
    /// Whether the whole interval `[start, end]` lies inside the window.
    pub fn contains(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> bool {
        self.from.is_none_or(|from| from <= start) && self.to.is_none_or(|to| end <= to)
    }
}

/// Window bounds as RFC 3339 strings (`null` when unbounded), in the canonical record form.
mod opt_time {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_str(&crate::observation::format_time(*t)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| {
                DateTime::parse_from_rfc3339(&s)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(serde::de::Error::custom)
            })
            .transpose()
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

/// Per-call counters, one per (path, call) of the map.
#[derive(Debug, Default, Clone)]
struct CallState {
    count: u64,
    lower_bound: bool,
    attach_failed: bool,
    /// Counting records were seen, but only from executables other than the path's entrypoint.
    other_exe: bool,
    /// Why the call is unresolvable according to a probe record (the first detail seen).
    unresolvable: Option<String>,
}

/// Per-file state, one per binary path of the map.
#[derive(Debug, Default, Clone)]
struct BinaryState {
    /// Evidence that the running file is not the map's (section 5), the first seen.
    mismatch: Option<String>,
}

/// The parts of a call record that decide where it counts.
struct Call<'r> {
    exe: Option<&'r str>,
    build_id: Option<&'r str>,
    count: u64,
    lower_bound: bool,
}

/// Sums of unexpected calls of one (binary, buildId, symbol).
#[derive(Debug, Default)]
struct UnexpectedSum {
    records: u64,
    calls: u64,
}

impl tally::Weight for UnexpectedSum {
    fn records(&self) -> u64 {
        self.records
    }
    fn total(&self) -> u64 {
        self.calls
    }
}

/// Probe records of one (binary, buildId, symbol, status).
#[derive(Debug)]
struct ProbeSum {
    records: u64,
    status: ProbeStatus,
    detail: Option<String>,
}

impl tally::Weight for ProbeSum {
    fn records(&self) -> u64 {
        self.records
    }
    fn total(&self) -> u64 {
        self.records
    }
}

/// Everything learnt from the records so far: per-call and per-file state, the bounded lists, counts.
#[derive(Debug)]
struct Evidence {
    calls: Vec<CallState>,
    binaries: Vec<BinaryState>,
    unexpected: BoundedTally<UnexpectedSum>,
    probes: BoundedTally<ProbeSum>,
    stats: ObservationStats,
    /// Reused to build tally keys without allocating per record.
    key: String,
}

/// Streams records against one map; see the module documentation.
#[derive(Debug)]
pub struct Verifier<'m> {
    map: &'m FunctionMap,
    window: Window,
    index: MapIndex<'m>,
    evidence: Evidence,
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
        self.evidence.add(&self.index, &self.window, record);
    }

    /// Decides statuses, rates and the verdict (sections 6, 7, 10).
    pub fn finish(self) -> VerificationResult {
        result::finish(self)
    }
}

impl Evidence {
    fn new(index: &MapIndex<'_>) -> Self {
        Self {
            calls: vec![CallState::default(); index.call_count()],
            binaries: vec![BinaryState::default(); index.binary_count()],
            unexpected: BoundedTally::new(MAX_LISTED),
            probes: BoundedTally::new(MAX_LISTED),
            stats: ObservationStats::default(),
            key: String::with_capacity(256),
        }
    }

    fn add(&mut self, index: &MapIndex<'_>, window: &Window, record: &RecordView<'_>) {
        self.stats.records += 1;
        if !window.contains(record.start, record.end) {
            self.stats.ignored += 1;
            return;
        }
        match &record.body {
            BodyView::Call {
                binary,
                build_id,
                symbol,
                count,
                lower_bound,
            } => {
                let build_id = build_id.as_deref();
                match index.calls_of(binary, symbol) {
                    Some(key) => {
                        self.check_build_id(index, key.binary, build_id, || "a call record");
                        if *count > 0 {
                            let call = Call {
                                exe: record.exe.as_deref(),
                                build_id,
                                count: *count,
                                lower_bound: *lower_bound,
                            };
                            self.count_call(&key.slots, &call);
                        }
                    }
                    None => {
                        if let Some(b) = index.binary(binary) {
                            self.check_build_id(index, b, build_id, || "a call record");
                        }
                        if *count > 0 {
                            self.tally_unexpected(binary, build_id, symbol, *count);
                        }
                    }
                }
            }
            BodyView::Probe {
                binary,
                build_id,
                symbol,
                status,
                detail,
            } => {
                if let Some(b) = index.binary(binary) {
                    self.check_build_id(index, b, build_id.as_deref(), || "a probe record");
                }
                self.add_probe(
                    index,
                    binary,
                    build_id.as_deref(),
                    symbol.as_deref(),
                    *status,
                    detail.as_deref(),
                );
            }
            BodyView::Drop { dropped } => {
                self.stats.dropped = self.stats.dropped.saturating_add(*dropped)
            }
        }
    }

    /// Section 5: a record carrying a build-id other than the map's marks the file as mismatched.
    fn check_build_id(
        &mut self,
        index: &MapIndex<'_>,
        b: usize,
        build_id: Option<&str>,
        what: impl FnOnce() -> &'static str,
    ) {
        let Some(found) = build_id else {
            return;
        };
        let expected = index.build_ids(b);
        if !expected.is_empty() && !expected.contains(&found) {
            let state = &mut self.binaries[b];
            if state.mismatch.is_none() {
                state.mismatch = Some(format!(
                    "{} shows build-id {found}, the map expects {}",
                    what(),
                    expected.join(" or ")
                ));
            }
        }
    }

    /// Section 3: adds a call record to the calls of the paths it counts for.
    fn count_call(&mut self, slots: &[Slot<'_>], call: &Call<'_>) {
        let mut unidentified = false;
        for slot in slots {
            if call.exe.is_some_and(|exe| exe != slot.entrypoint) {
                self.calls[slot.call].other_exe = true;
                continue;
            }
            match (slot.build_id, call.build_id) {
                (Some(expected), Some(found)) if expected != found => continue,
                (Some(_), None) => {
                    unidentified = true;
                    continue;
                }
                _ => {}
            }
            let state = &mut self.calls[slot.call];
            state.count = state.count.saturating_add(call.count);
            state.lower_bound |= call.lower_bound;
        }
        if unidentified {
            self.stats.unidentified += 1;
        }
    }

    /// Section 8.
    fn tally_unexpected(&mut self, binary: &str, build_id: Option<&str>, symbol: &str, count: u64) {
        self.key.clear();
        let _ = write!(self.key, "{binary}\0{}\0{symbol}", build_id.unwrap_or(""));
        match self.unexpected.entry(&self.key, UnexpectedSum::default) {
            Some(sum) => {
                sum.records += 1;
                sum.calls = sum.calls.saturating_add(count);
            }
            None => self.unexpected.omit(count),
        }
    }

    /// Sections 4, 5 and 9.
    fn add_probe(
        &mut self,
        index: &MapIndex<'_>,
        binary: &str,
        build_id: Option<&str>,
        symbol: Option<&str>,
        status: ProbeStatus,
        detail: Option<&str>,
    ) {
        let binary_index = index.binary(binary);
        match status {
            ProbeStatus::BinaryMismatch => {
                if let Some(b) = binary_index {
                    let state = &mut self.binaries[b];
                    if state.mismatch.is_none() {
                        state.mismatch = Some(format!(
                            "a probe record reports binary-mismatch: {}",
                            detail.unwrap_or("no detail")
                        ));
                    }
                }
            }
            ProbeStatus::Unresolvable | ProbeStatus::AttachFailed => {
                let mark = |state: &mut CallState| {
                    if status == ProbeStatus::AttachFailed {
                        state.attach_failed = true;
                    } else if state.unresolvable.is_none() {
                        state.unresolvable = Some(format!(
                            "a probe record reports unresolvable: {}",
                            detail.unwrap_or("no detail")
                        ));
                    }
                };
                // Without a symbol the record is about the whole file.
                match (symbol, binary_index) {
                    (Some(symbol), _) => {
                        for slot in index.calls_of(binary, symbol).map_or(&[][..], |k| &k.slots) {
                            mark(&mut self.calls[slot.call]);
                        }
                    }
                    (None, Some(b)) => {
                        for &call in index.calls_in_binary(b) {
                            mark(&mut self.calls[call]);
                        }
                    }
                    (None, None) => {}
                }
            }
        }
        self.key.clear();
        let _ = write!(
            self.key,
            "{binary}\0{}\0{}\0{}",
            build_id.unwrap_or(""),
            symbol.unwrap_or(""),
            status.as_str()
        );
        match self.probes.entry(&self.key, || ProbeSum {
            records: 0,
            status,
            detail: detail.map(str::to_owned),
        }) {
            Some(sum) => sum.records += 1,
            None => self.probes.omit(1),
        }
    }
}

/// Streams `files` (plain or gzip, in order) into a [`Verifier`]. Stops at the first bad record.
pub fn verify_files(
    map: &FunctionMap,
    files: &[PathBuf],
    window: Window,
) -> Result<VerificationResult, VerifyError> {
    let span = tracing::info_span!("verify", service = %map.predicate.service, files = files.len());
    let _enter = span.enter();
    let mut verifier = Verifier::new(map, window);
    let mut reader = ObservationReader::new(files.iter().cloned());
    while let Some(record) = reader.next_view() {
        verifier.add_view(&record?);
    }
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
