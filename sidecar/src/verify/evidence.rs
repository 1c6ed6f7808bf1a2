// SPDX-License-Identifier: Apache-2.0
//! What the records showed so far (sections 3, 4, 5, 8, 9 of docs/contracts/verification.md), kept per
//! call of the map, per file of the map, and in two bounded lists. Several `Evidence` values built from
//! different parts of the input merge into the one a single pass would have built: sums and flags are
//! order-free, and "the first detail" is decided by the record's position in reading order.

use std::fmt::Write as _;

use super::Window;
use super::index::{MapIndex, Slot};
use super::result::ObservationStats;
use super::tally::{self, BoundedTally};
use crate::observation::{BodyView, ProbeStatus, RecordView};

/// At most this many distinct unexpected symbols and probe failure entries are kept (sections 8, 9).
pub const MAX_LISTED: usize = 10_000;

/// Where a record is in reading order: chunk (or batch) number, then line index.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Pos {
    pub(super) seq: u64,
    pub(super) line: u64,
}

/// A detail and where it was first seen; merging keeps the earliest.
pub(super) type First = Option<(Pos, String)>;

/// Records `make()` at `pos` unless something was recorded earlier.
fn note(first: &mut First, pos: Pos, make: impl FnOnce() -> String) {
    if first.as_ref().is_none_or(|(seen, _)| pos < *seen) {
        *first = Some((pos, make()));
    }
}

fn earliest(a: First, b: First) -> First {
    match (a, b) {
        (Some(a), Some(b)) => Some(if b.0 < a.0 { b } else { a }),
        (a, None) => a,
        (None, b) => b,
    }
}

/// Per-call counters, one per (path, call) of the map.
#[derive(Debug, Default, Clone)]
pub(super) struct CallState {
    pub(super) count: u64,
    pub(super) lower_bound: bool,
    pub(super) attach_failed: bool,
    /// Counting records were seen, but only from executables other than the path's entrypoint.
    pub(super) other_exe: bool,
    /// Why the call is unresolvable according to a probe record (the first detail seen).
    pub(super) unresolvable: First,
}

/// Per-file state, one per binary path of the map.
#[derive(Debug, Default, Clone)]
pub(super) struct BinaryState {
    /// Evidence that the running file is not the map's (section 5), the first seen.
    pub(super) mismatch: First,
}

/// The parts of a call record that decide where it counts.
struct Call<'r> {
    exe: Option<&'r str>,
    build_id: Option<&'r str>,
    count: u64,
    lower_bound: bool,
}

/// A probe record's fields.
#[derive(Clone, Copy)]
struct Probe<'r> {
    binary: &'r str,
    build_id: Option<&'r str>,
    symbol: Option<&'r str>,
    status: ProbeStatus,
    detail: Option<&'r str>,
}

/// Sums of unexpected calls of one (binary, buildId, symbol).
#[derive(Debug, Default)]
pub(super) struct UnexpectedSum {
    pub(super) records: u64,
    pub(super) calls: u64,
}

impl tally::Weight for UnexpectedSum {
    fn records(&self) -> u64 {
        self.records
    }
    fn total(&self) -> u64 {
        self.calls
    }
    fn merge(&mut self, other: Self) {
        self.records += other.records;
        self.calls = self.calls.saturating_add(other.calls);
    }
}

/// Probe records of one (binary, buildId, symbol, status).
#[derive(Debug)]
pub(super) struct ProbeSum {
    pub(super) records: u64,
    pub(super) status: ProbeStatus,
    /// Position of the first record, whose detail is kept.
    pub(super) first: Pos,
    pub(super) detail: Option<String>,
}

impl tally::Weight for ProbeSum {
    fn records(&self) -> u64 {
        self.records
    }
    fn total(&self) -> u64 {
        self.records
    }
    fn merge(&mut self, other: Self) {
        self.records += other.records;
        if other.first < self.first {
            self.first = other.first;
            self.detail = other.detail;
        }
    }
}

/// Everything learnt from the records so far: per-call and per-file state, the bounded lists, counts.
#[derive(Debug)]
pub(super) struct Evidence {
    pub(super) calls: Vec<CallState>,
    pub(super) binaries: Vec<BinaryState>,
    pub(super) unexpected: BoundedTally<UnexpectedSum>,
    pub(super) probes: BoundedTally<ProbeSum>,
    pub(super) stats: ObservationStats,
    /// Reused to build tally keys without allocating per record.
    key: String,
}

impl Evidence {
    pub(super) fn new(index: &MapIndex<'_>) -> Self {
        Self {
            calls: vec![CallState::default(); index.call_count()],
            binaries: vec![BinaryState::default(); index.binary_count()],
            unexpected: BoundedTally::new(MAX_LISTED),
            probes: BoundedTally::new(MAX_LISTED),
            stats: ObservationStats::default(),
            key: String::with_capacity(256),
        }
    }

    pub(super) fn add(
        &mut self,
        index: &MapIndex<'_>,
        window: &Window,
        record: &RecordView<'_>,
        pos: Pos,
    ) {
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
                        self.check_build_id(index, key.binary, build_id, pos, || "a call record");
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
                            self.check_build_id(index, b, build_id, pos, || "a call record");
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
                    self.check_build_id(index, b, build_id.as_deref(), pos, || "a probe record");
                }
                let probe = Probe {
                    binary,
                    build_id: build_id.as_deref(),
                    symbol: symbol.as_deref(),
                    status: *status,
                    detail: detail.as_deref(),
                };
                self.add_probe(index, probe, pos);
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
        pos: Pos,
        what: impl FnOnce() -> &'static str,
    ) {
        let Some(found) = build_id else {
            return;
        };
        let expected = index.build_ids(b);
        if !expected.is_empty() && !expected.contains(&found) {
            note(&mut self.binaries[b].mismatch, pos, || {
                format!(
                    "{} shows build-id {found}, the map expects {}",
                    what(),
                    expected.join(" or ")
                )
            });
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
    fn add_probe(&mut self, index: &MapIndex<'_>, probe: Probe<'_>, pos: Pos) {
        let Probe {
            binary,
            build_id,
            symbol,
            status,
            detail,
        } = probe;
        let binary_index = index.binary(binary);
        match status {
            ProbeStatus::BinaryMismatch => {
                if let Some(b) = binary_index {
                    note(&mut self.binaries[b].mismatch, pos, || {
                        format!(
                            "a probe record reports binary-mismatch: {}",
                            detail.unwrap_or("no detail")
                        )
                    });
                }
            }
            ProbeStatus::Unresolvable | ProbeStatus::AttachFailed => {
                let mark = |state: &mut CallState| {
                    if status == ProbeStatus::AttachFailed {
                        state.attach_failed = true;
                    } else {
                        note(&mut state.unresolvable, pos, || {
                            format!(
                                "a probe record reports unresolvable: {}",
                                detail.unwrap_or("no detail")
                            )
                        });
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
            first: pos,
            detail: detail.map(str::to_owned),
        }) {
            Some(sum) => {
                sum.records += 1;
                if pos < sum.first {
                    sum.first = pos;
                    sum.detail = detail.map(str::to_owned);
                }
            }
            None => self.probes.omit(1),
        }
    }

    /// Adds what `other` learnt from another part of the input.
    pub(super) fn merge(&mut self, other: Evidence) {
        for (mine, theirs) in self.calls.iter_mut().zip(other.calls) {
            mine.count = mine.count.saturating_add(theirs.count);
            mine.lower_bound |= theirs.lower_bound;
            mine.attach_failed |= theirs.attach_failed;
            mine.other_exe |= theirs.other_exe;
            mine.unresolvable = earliest(mine.unresolvable.take(), theirs.unresolvable);
        }
        for (mine, theirs) in self.binaries.iter_mut().zip(other.binaries) {
            mine.mismatch = earliest(mine.mismatch.take(), theirs.mismatch);
        }
        self.unexpected.merge(other.unexpected);
        self.probes.merge(other.probes);
        let (s, o) = (&mut self.stats, other.stats);
        s.records += o.records;
        s.ignored += o.ignored;
        s.unidentified += o.unidentified;
        s.dropped = s.dropped.saturating_add(o.dropped);
    }
}
