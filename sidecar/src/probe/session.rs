// SPDX-License-Identifier: Apache-2.0
//! The probes of the app's processes: one uprobe.multi link per (process, file), scoped to that process
//! (others mapping the same file pay nothing, PLATFORM.md), one cookie per function start.
//!
//! Modes:
//! - [`Mode::Count`]: every function stays attached; counts are exact.
//! - [`Mode::Coverage`]: a function seen in the current window stops trapping (its file's link is re-linked
//!   without it) and everything is re-armed by [`Session::rearm`] when the next window starts, so hot
//!   functions cost nothing in steady state. Counts are lower bounds (`lowerBound: true`).
//!
//! A function start that only a watch scope asks for (no expected path declares any symbol there) in a
//! library is attached [`AttachPoint::external_callers_only`]: the kernel does not count the calls the
//! library makes to its own exported functions, so what is counted there is a call from another object,
//! which is what an unexpected symbol means (docs/contracts/verification.md, section 8). Declared starts
//! count every call, as before. In coverage mode such a start that its own library keeps calling is
//! reported after [`linkguard_bpf::LoadOptions::internal_call_budget`] internal calls and stops trapping
//! until the next window, like a function seen.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tracing::{debug, info, warn};

use crate::discover::FileId;
use crate::observation::{ProbeStatus, Record};

use super::ProbeError;
use super::backend::{AttachPoint, BpfError, ProbeBackend, Scope};
use super::bisect;
use super::cookies::CookieTable;
use super::records::{Aggregator, CallKey, Interval, Origin, ProbeKey, ProcessKey};
use super::resolve::FilePlan;
use super::targets::{TargetFile, TargetIndex, Targets};

/// How calls are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Exact counts; every probed function traps on every call.
    Count,
    /// First call per window; counts are lower bounds.
    #[default]
    Coverage,
}

/// A process to probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessRef {
    /// Pid as seen by linkguard.
    pub pid: u32,
    /// Pid as the app sees it.
    pub ns_pid: u32,
    pub start_time: u64,
    /// Executable path inside the app's root.
    pub exe: String,
}

/// What [`Session::attach_file`] did.
#[derive(Debug)]
pub enum AttachOutcome {
    /// A link with this many function starts is in place.
    Attached { points: usize },
    /// Nothing to attach (every function failed to resolve, or the file is already handled).
    Nothing,
    /// Not the map's build: nothing attached, reported.
    Mismatch,
    /// The kernel refused. Nothing is recorded yet: if the process is gone call
    /// [`Session::remove_process`], else [`Session::record_attach_failure`].
    Failed(BpfError),
}

#[derive(Debug)]
struct FileState<L> {
    target: TargetIndex,
    open_path: PathBuf,
    build_id: Option<Arc<str>>,
    /// Every function start of the file, with its cookie (flagged
    /// [`AttachPoint::EXTERNAL_CALLERS_ONLY`] for watch-only starts; maps below are keyed by
    /// [`AttachPoint::counter`]).
    points: Vec<AttachPoint>,
    /// Cookie -> indexes into the target's symbols (aliases share one start).
    symbols: HashMap<u32, Vec<usize>>,
    /// The points in the current link (coverage mode removes the seen ones).
    armed: Vec<AttachPoint>,
    /// The current links: one, or several after `bisect` left the refused functions out (coverage mode
    /// merges them at its next re-link).
    links: Vec<L>,
}

#[derive(Debug)]
struct ProcessState<L> {
    key: ProcessKey,
    start_time: u64,
    files: HashMap<FileId, FileState<L>>,
    /// Probe failures of this process, repeated in every interval while it lives.
    failures: Vec<ProbeKey>,
}

/// The probes of all followed processes, their cookies and the counts of the current interval.
#[derive(Debug)]
pub struct Session<B: ProbeBackend> {
    backend: B,
    targets: Arc<Targets>,
    mode: Mode,
    origin: Origin,
    cookies: CookieTable,
    owners: HashMap<u32, (u32, FileId)>,
    processes: BTreeMap<u32, ProcessState<B::Link>>,
    aggregator: Aggregator,
}

impl<B: ProbeBackend> Session<B> {
    /// `max_records`: bound of the in-memory record buffer between flushes.
    pub fn new(
        backend: B,
        targets: Arc<Targets>,
        mode: Mode,
        origin: Origin,
        max_records: usize,
    ) -> Self {
        let cookies = CookieTable::new(backend.max_probes());
        Self {
            backend,
            targets,
            mode,
            origin,
            cookies,
            owners: HashMap::new(),
            processes: BTreeMap::new(),
            aggregator: Aggregator::new(max_records),
        }
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn targets(&self) -> &Arc<Targets> {
        &self.targets
    }

    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// Starts following a process (no-op when it is followed already).
    pub fn add_process(&mut self, process: &ProcessRef) {
        self.processes
            .entry(process.pid)
            .or_insert_with(|| ProcessState {
                key: ProcessKey {
                    pid: process.ns_pid,
                    exe: process.exe.as_str().into(),
                },
                start_time: process.start_time,
                files: HashMap::new(),
                failures: Vec::new(),
            });
    }

    /// Records the executable a followed process now runs (after the exec of a held command).
    pub fn set_exe(&mut self, pid: u32, exe: &str) {
        if let Some(process) = self.processes.get_mut(&pid) {
            process.key.exe = exe.into();
        }
    }

    /// Followed pids with their start times.
    pub fn processes(&self) -> impl Iterator<Item = (u32, u64)> + '_ {
        self.processes.iter().map(|(pid, p)| (*pid, p.start_time))
    }

    pub fn is_followed(&self, pid: u32) -> bool {
        self.processes.contains_key(&pid)
    }

    /// Whether `file` of `pid` was already planned (attached, mismatched or failed).
    pub fn has_file(&self, pid: u32, file: &FileId) -> bool {
        self.processes
            .get(&pid)
            .is_some_and(|p| p.files.contains_key(file))
    }

    /// Function starts attached right now over all processes.
    pub fn armed_points(&self) -> usize {
        self.processes
            .values()
            .flat_map(|p| p.files.values())
            .map(|f| if f.links.is_empty() { 0 } else { f.armed.len() })
            .sum()
    }

    /// Attaches the planned functions of `file` (the map's file `target`, opened by `open_path`) for `pid`.
    pub fn attach_file(
        &mut self,
        pid: u32,
        file: FileId,
        target: TargetIndex,
        open_path: &Path,
        plan: &FilePlan,
    ) -> AttachOutcome {
        let targets = Arc::clone(&self.targets);
        let (Some(target_file), Some(process)) =
            (targets.file(target), self.processes.get_mut(&pid))
        else {
            return AttachOutcome::Nothing;
        };
        if process.files.contains_key(&file) {
            return AttachOutcome::Nothing;
        }
        let mut state = FileState {
            target,
            open_path: open_path.to_path_buf(),
            build_id: plan.build_id().map(Arc::from),
            points: Vec::new(),
            symbols: HashMap::new(),
            armed: Vec::new(),
            links: Vec::new(),
        };
        let (planned, failures) = match plan {
            FilePlan::Mismatch { detail, .. } => {
                warn!(pid, binary = %target_file.binary.path, %detail, "binary mismatch: nothing attached");
                let keys = failure_keys(
                    &process.key,
                    target_file,
                    &state.build_id,
                    all_symbols(target_file),
                    ProbeStatus::BinaryMismatch,
                    detail,
                );
                report(&mut self.aggregator, process, keys);
                process.files.insert(file, state);
                return AttachOutcome::Mismatch;
            }
            FilePlan::Probe {
                points, failures, ..
            } => (points, failures),
        };
        for failure in failures {
            let keys = failure_keys(
                &process.key,
                target_file,
                &state.build_id,
                vec![failure.symbol],
                failure.status,
                &failure.detail,
            );
            report(&mut self.aggregator, process, keys);
        }
        if planned.is_empty() {
            process.files.insert(file, state);
            return AttachOutcome::Nothing;
        }
        let Some(cookies) = self.cookies.alloc(planned.len()) else {
            let detail = format!(
                "probe table full (all {} in use, {} more needed): raise the maximum \
                 (`observe --max-probes`, sidecar `probe.maxProbes`)",
                self.cookies.capacity(),
                planned.len()
            );
            tracing::warn!(
                pid = process.key.pid,
                file = %target_file.binary.path,
                needed = planned.len(),
                capacity = self.cookies.capacity(),
                "{detail}"
            );
            let keys = vec![whole_file_key(
                &process.key,
                target_file,
                &state.build_id,
                &detail,
            )];
            report(&mut self.aggregator, process, keys);
            process.files.insert(file, state);
            return AttachOutcome::Nothing;
        };
        // In a library, a start no path declares is only watched: count calls from other objects only.
        // An executable's own watched functions (static and Go binaries) have no other object calling
        // them, so there every call counts.
        let library = !targets.entrypoints().contains(&target_file.binary.path);
        for (point, cookie) in planned.iter().zip(&cookies) {
            let watched_only = !point
                .symbols
                .iter()
                .any(|&i| target_file.symbols.get(i).is_some_and(|s| s.declared));
            state.points.push(if library && watched_only {
                AttachPoint::external_callers_only(point.offset, *cookie)
            } else {
                AttachPoint {
                    offset: point.offset,
                    cookie: *cookie,
                }
            });
            state.symbols.insert(*cookie, point.symbols.clone());
        }
        if let Err(err) = self.backend.reset_first_seen(&cookies) {
            warn!(%err, "re-arming first-seen events of reused cookies failed");
        }
        let scope = Scope::OneProcess(pid);
        let attached = match self.backend.attach(open_path, &state.points, scope) {
            Err(refusal) if bisect::is_point_specific(&refusal) => {
                // Some functions cannot be probed: find them, attach the rest (see `bisect`).
                match bisect::split_unprobeable(
                    &mut self.backend,
                    open_path,
                    &state.points,
                    scope,
                    &refusal,
                ) {
                    Ok((links, good, bad)) => {
                        let failed: Vec<u32> = bad.iter().map(|(p, _)| p.counter()).collect();
                        let keys = unprobeable_keys(&process.key, target_file, &state, &bad);
                        warn!(pid, binary = %target_file.binary.path, functions = bad.len(), "functions the kernel cannot probe");
                        report(&mut self.aggregator, process, keys);
                        state.points = good;
                        for cookie in &failed {
                            state.symbols.remove(cookie);
                        }
                        self.cookies.free(failed);
                        if state.points.is_empty() {
                            process.files.insert(file, state);
                            return AttachOutcome::Nothing;
                        }
                        Ok(links)
                    }
                    Err(error) => Err(error),
                }
            }
            other => other.map(|link| vec![link]),
        };
        match attached {
            Ok(links) => {
                info!(pid = process.key.pid, binary = %target_file.binary.path, functions = state.points.len(), path = %open_path.display(), "attached");
                for point in &state.points {
                    self.owners.insert(point.counter(), (pid, file));
                }
                state.armed = state.points.clone();
                state.links = links;
                let points = state.points.len();
                process.files.insert(file, state);
                AttachOutcome::Attached { points }
            }
            Err(err) => {
                self.cookies
                    .free(state.points.iter().map(AttachPoint::counter));
                AttachOutcome::Failed(err)
            }
        }
    }

    /// Reports a file of a live process that could not be attached (the kernel refused, or the file could
    /// not be opened): `attach-failed` for each of its functions, and the file is not tried again.
    pub fn record_attach_failure(
        &mut self,
        pid: u32,
        file: FileId,
        target: TargetIndex,
        open_path: &Path,
        plan: Option<&FilePlan>,
        detail: &str,
    ) {
        let targets = Arc::clone(&self.targets);
        let (Some(target_file), Some(process)) =
            (targets.file(target), self.processes.get_mut(&pid))
        else {
            return;
        };
        let build_id = plan.and_then(FilePlan::build_id).map(Arc::from);
        warn!(pid, binary = %target_file.binary.path, %detail, "attach failed");
        // Nothing of the file is attached: one whole-file record, which verification applies to every
        // path of the file (listing each function would repeat thousands of watched ones every flush).
        let keys = vec![whole_file_key(&process.key, target_file, &build_id, detail)];
        report(&mut self.aggregator, process, keys);
        let state = FileState {
            target,
            open_path: open_path.to_path_buf(),
            build_id,
            points: Vec::new(),
            symbols: HashMap::new(),
            armed: Vec::new(),
            links: Vec::new(),
        };
        process.files.insert(file, state);
    }

    /// Stops following `pid`: detaches its links, keeps what they counted for the next flush, frees the
    /// cookies.
    pub fn remove_process(&mut self, pid: u32) {
        // Events already in the ring may name this process's cookies: handle them before the cookies go.
        self.handle_first_seen();
        let Some(mut process) = self.processes.remove(&pid) else {
            return;
        };
        for state in process.files.values_mut() {
            for link in state.links.drain(..) {
                if let Err(err) = self.backend.detach(link) {
                    warn!(pid, %err, "detach failed");
                }
            }
        }
        let cookies: Vec<u32> = process
            .files
            .values()
            .flat_map(|f| f.points.iter().map(AttachPoint::counter))
            .collect();
        match self.backend.take_counts(&cookies) {
            Ok(counts) => {
                for (cookie, count) in cookies.iter().zip(counts) {
                    account(
                        &mut self.aggregator,
                        &self.targets,
                        &process,
                        &self.owners,
                        *cookie,
                        count,
                    );
                }
            }
            Err(err) => warn!(pid, %err, "the last counts of an exited process could not be read"),
        }
        for cookie in &cookies {
            self.owners.remove(cookie);
        }
        self.cookies.free(cookies);
        // Its failures held until the exit: the interval of the exit reports them too.
        for key in process.failures {
            self.aggregator.add_probe(key);
        }
        debug!(pid, "process no longer followed");
    }

    /// Coverage mode: stops trapping the functions whose first call was reported since the last tick.
    pub fn tick(&mut self) {
        if self.mode == Mode::Coverage {
            self.handle_first_seen();
        }
    }

    fn handle_first_seen(&mut self) {
        let events = self.backend.drain_first_seen(usize::MAX);
        // A watch-only start its own library keeps calling is disarmed like a seen one (see the module doc).
        let budget = events.iter().filter(|e| e.internal_budget_reached).count();
        if budget > 0 {
            debug!(
                functions = budget,
                "watched functions called only from inside their own library: not trapped until the next window"
            );
        }
        let seen: BTreeSet<u32> = events.into_iter().map(|e| e.cookie).collect();
        if !seen.is_empty() && self.mode == Mode::Coverage {
            self.stop_trapping(&seen);
        }
    }

    /// Re-links each file of the given cookies without them.
    fn stop_trapping(&mut self, seen: &BTreeSet<u32>) {
        let mut by_file: BTreeMap<(u32, FileId), BTreeSet<u32>> = BTreeMap::new();
        for cookie in seen {
            if let Some(owner) = self.owners.get(cookie) {
                by_file.entry(*owner).or_default().insert(*cookie);
            }
        }
        for ((pid, file), cookies) in by_file {
            let Some(state) = self
                .processes
                .get_mut(&pid)
                .and_then(|p| p.files.get_mut(&file))
            else {
                continue;
            };
            let before = state.armed.len();
            state.armed.retain(|p| !cookies.contains(&p.counter()));
            if state.armed.len() == before {
                continue;
            }
            relink(&mut self.backend, pid, state);
            debug!(pid, path = %state.open_path.display(), seen = before - state.armed.len(), armed = state.armed.len(), "stopped trapping functions seen in this window");
        }
    }

    /// Coverage mode: the next window starts, every function traps again until seen (no-op in count mode).
    pub fn rearm(&mut self) {
        if self.mode != Mode::Coverage {
            return;
        }
        let backend = &mut self.backend;
        for (pid, process) in &mut self.processes {
            for state in process.files.values_mut().filter(|s| !s.points.is_empty()) {
                let cookies: Vec<u32> = state.points.iter().map(AttachPoint::counter).collect();
                if let Err(err) = backend.reset_first_seen(&cookies) {
                    warn!(pid, %err, "re-arming first-seen events failed");
                }
                if state.armed.len() != state.points.len() || state.links.len() != 1 {
                    state.armed = state.points.clone();
                    relink(backend, *pid, state);
                }
            }
        }
    }

    /// Takes the counts of the interval and returns its records.
    pub fn flush(&mut self, interval: Interval) -> Result<Vec<Record>, ProbeError> {
        self.tick();
        let cookies: Vec<u32> = self.owners.keys().copied().collect();
        let counts = self
            .backend
            .take_counts(&cookies)
            .map_err(|source| ProbeError::ReadCounts { source })?;
        let mut hit = BTreeSet::new();
        for (cookie, count) in cookies.iter().zip(counts) {
            let Some((pid, _)) = self.owners.get(cookie) else {
                continue;
            };
            let Some(process) = self.processes.get(pid) else {
                continue;
            };
            account(
                &mut self.aggregator,
                &self.targets,
                process,
                &self.owners,
                *cookie,
                count,
            );
            if count > 0 {
                hit.insert(*cookie);
            }
        }
        // A first-seen event lost to a full ring still shows up as a count: stop trapping those as well.
        if self.mode == Mode::Coverage {
            self.stop_trapping(&hit);
        }
        // The contract (docs/contracts/observations.md): probe records are written for every interval in
        // which the condition holds, so that every verification window sees them.
        for process in self.processes.values() {
            for key in &process.failures {
                self.aggregator.add_probe(key.clone());
            }
        }
        Ok(self
            .aggregator
            .drain(interval, &self.origin, self.mode == Mode::Coverage))
    }

    /// Detaches everything (the counts stay readable for the last flush).
    pub fn detach_all(&mut self) {
        for (pid, process) in &mut self.processes {
            for state in process.files.values_mut() {
                for link in state.links.drain(..) {
                    if let Err(err) = self.backend.detach(link) {
                        warn!(pid, %err, "detach failed");
                    }
                }
            }
        }
    }

    /// Records buffered and dropped so far in this interval.
    pub fn pending(&self) -> (usize, u64) {
        (self.aggregator.len(), self.aggregator.dropped())
    }
}

/// Detaches the file's current link and attaches its armed points (nothing when none is armed).
fn relink<B: ProbeBackend>(backend: &mut B, pid: u32, state: &mut FileState<B::Link>) {
    for link in state.links.drain(..) {
        if let Err(err) = backend.detach(link) {
            warn!(pid, %err, path = %state.open_path.display(), "detach failed");
        }
    }
    if state.armed.is_empty() {
        return;
    }
    match backend.attach(&state.open_path, &state.armed, Scope::OneProcess(pid)) {
        Ok(link) => state.links.push(link),
        // Most often the process just exited (the next poll removes it); else the next window retries.
        Err(err) => warn!(pid, %err, path = %state.open_path.display(), "re-linking failed"),
    }
}

/// Adds `count` calls of `cookie` to the records of every symbol starting there.
fn account<L>(
    aggregator: &mut Aggregator,
    targets: &Targets,
    process: &ProcessState<L>,
    owners: &HashMap<u32, (u32, FileId)>,
    cookie: u32,
    count: u64,
) {
    if count == 0 {
        return;
    }
    let Some((_, file)) = owners.get(&cookie) else {
        return;
    };
    let Some(state) = process.files.get(file) else {
        return;
    };
    let (Some(target), Some(symbols)) = (targets.file(state.target), state.symbols.get(&cookie))
    else {
        return;
    };
    let binary: Arc<str> = target.binary.path.as_str().into();
    for &index in symbols {
        if let Some(symbol) = target.symbols.get(index) {
            let key = CallKey {
                process: process.key.clone(),
                binary: Arc::clone(&binary),
                build_id: state.build_id.clone(),
                symbol: symbol.name.as_str().into(),
            };
            aggregator.add_call(key, count);
        }
    }
}

fn all_symbols(target: &TargetFile) -> Vec<usize> {
    (0..target.symbols.len()).collect()
}

/// Probe keys for the declared symbols among `symbols`; a whole-file key when none is declared (a watch
/// scope's file: its unexpected calls cannot be seen).
fn failure_keys(
    process: &ProcessKey,
    target: &TargetFile,
    build_id: &Option<Arc<str>>,
    symbols: Vec<usize>,
    status: ProbeStatus,
    detail: &str,
) -> Vec<ProbeKey> {
    let detail: Option<Arc<str>> = Some(detail.into());
    let key = |symbol: Option<Arc<str>>| ProbeKey {
        process: process.clone(),
        binary: target.binary.path.as_str().into(),
        build_id: build_id.clone(),
        symbol,
        status,
        detail: detail.clone(),
    };
    // One key per function. Watched (undeclared) functions are named only when the kernel refused them:
    // they are expected nowhere, and a library exports many that have no address to probe (IFUNCs).
    symbols
        .iter()
        .filter_map(|&i| target.symbols.get(i))
        .filter(|s| s.declared || status == ProbeStatus::AttachFailed)
        .map(|s| key(Some(s.name.as_str().into())))
        .collect()
}

/// One `attach-failed` key for a file of which nothing could be attached: verification applies it to
/// every path of that file.
fn whole_file_key(
    process: &ProcessKey,
    target: &TargetFile,
    build_id: &Option<Arc<str>>,
    detail: &str,
) -> ProbeKey {
    ProbeKey {
        process: process.clone(),
        binary: target.binary.path.as_str().into(),
        build_id: build_id.clone(),
        symbol: None,
        status: ProbeStatus::AttachFailed,
        detail: Some(detail.into()),
    }
}

/// `attach-failed` keys for functions the kernel refused, one per function (declared or watched): a
/// record without a symbol would mean the whole file failed, which verification applies to every path of
/// that file (docs/contracts/observations.md).
fn unprobeable_keys<L>(
    process: &ProcessKey,
    target: &TargetFile,
    state: &FileState<L>,
    bad: &[(AttachPoint, String)],
) -> Vec<ProbeKey> {
    bad.iter()
        .flat_map(|(point, detail)| {
            let symbols = state
                .symbols
                .get(&point.counter())
                .cloned()
                .unwrap_or_default();
            failure_keys(
                process,
                target,
                &state.build_id,
                symbols,
                ProbeStatus::AttachFailed,
                detail,
            )
        })
        .collect()
}

fn report<L>(aggregator: &mut Aggregator, process: &mut ProcessState<L>, keys: Vec<ProbeKey>) {
    for key in keys {
        aggregator.add_probe(key.clone());
        process.failures.push(key);
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
