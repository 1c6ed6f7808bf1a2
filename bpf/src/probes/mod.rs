// SPDX-License-Identifier: Apache-2.0
//! Loading the program and attaching it to function offsets (links); reading what it counted is in
//! [`counts`].

mod counts;
mod segments;

use std::{
    collections::{HashMap, HashSet},
    fmt,
    num::NonZeroU32,
    path::{Path, PathBuf},
    time::Instant,
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, Map, MapData, PerCpuArray, RingBuf},
    programs::{
        ProgramError, UProbe,
        uprobe::{UProbeAttachLocation, UProbeAttachPoint, UProbeLinkId, UProbeScope},
    },
};
use tracing::{debug, warn};

pub use self::counts::{FirstSeen, ProbeStats};
use crate::{
    abi,
    error::{BpfError, Result, attach_hint},
    system::{PidNamespace, raise_memlock_best_effort},
};

/// The default [`LoadOptions::internal_call_budget`]: at ~5-8 us per trap on the project's VM, at most
/// ~2 ms of traps per watched function and window.
pub const DEFAULT_INTERNAL_CALL_BUDGET: u32 = 256;

/// Largest `max_probes`: 1 Mi counters (8 MiB per possible CPU), also the kernel's cap on offsets per
/// uprobe.multi link (`MAX_UPROBE_MULTI_CNT`).
pub const MAX_PROBES_LIMIT: u32 = 1 << 20;

/// How the program is loaded. Fixed for the life of a [`Probes`]: the values are `.rodata` constants
/// the verifier specialises the program on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadOptions {
    /// Number of counters; every cookie must be below it. Memory: `8 * max_probes` bytes per possible CPU.
    pub max_probes: u32,
    /// Count (and report) only calls from tasks whose active pid namespace is this one. Lets
    /// [`Scope::AllProcesses`] be restricted in the kernel to the app's pid namespace; processes outside
    /// still take the trap (a uprobe is per inode), they are only not counted (see [`ProbeStats::filtered`]).
    pub pid_namespace: Option<PidNamespace>,
    /// Report the first call of each cookie through the ring buffer ([`Probes::drain_first_seen`]).
    pub first_seen_events: bool,
    /// Ring buffer size in bytes (rounded up by aya to a power-of-two number of pages). 32 bytes per
    /// record plus an 8-byte header.
    pub ring_buffer_bytes: u32,
    /// Wake an epoll consumer of [`Probes::first_seen_fd`] only on every Nth record; the others are
    /// submitted with `BPF_RB_NO_WAKEUP`. Consumers must also drain on a timer.
    pub wakeup_every: u32,
    /// With `first_seen_events`: an [`AttachPoint::external_callers_only`] point that is called this many
    /// times from inside its own object since its last [`Probes::reset_first_seen`] is reported by a
    /// [`FirstSeen`] with [`internal_budget_reached`](FirstSeen::internal_budget_reached) set (once, and
    /// only if no counted call was reported first). Such calls are never counted, so without this a
    /// function its own library calls all the time would trap on every call for the whole coverage window;
    /// a consumer that stops trapping it on this event bounds that cost to this many traps per window, at
    /// the price of not seeing its external calls for the rest of the window. 0: never reported.
    pub internal_call_budget: u32,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            max_probes: 16 * 1024,
            pid_namespace: None,
            first_seen_events: false,
            ring_buffer_bytes: 256 * 1024,
            wakeup_every: 64,
            internal_call_budget: DEFAULT_INTERNAL_CALL_BUDGET,
        }
    }
}

/// Which processes a link fires in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Only this process (all its threads). The pid is as seen from the calling process's pid namespace
    /// (the kernel resolves it with `find_vpid`). The breakpoint is installed only in that process's memory,
    /// so other processes mapping the same file pay nothing; a process that starts later is not covered.
    OneProcess(u32),
    /// Every process that maps the file, now or later (a uprobe belongs to the inode). Combine with
    /// [`LoadOptions::pid_namespace`] to count only one pid namespace.
    AllProcesses,
}

/// One function to probe: where it starts in the file, and the counter it increments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AttachPoint {
    /// FILE offset of the function's first instruction (not its virtual address): symbol value - PT_LOAD
    /// `p_vaddr` + `p_offset`. A wrong offset is accepted by the kernel and crashes the target with
    /// SIGSEGV/SIGILL: check the file's build-id against the function map before attaching.
    pub offset: u64,
    /// The counter index (BPF cookie); below [`LoadOptions::max_probes`]. May carry the flag
    /// [`AttachPoint::EXTERNAL_CALLERS_ONLY`]; [`counter`](Self::counter) is the index without it.
    pub cookie: u32,
}

impl AttachPoint {
    /// Flag bit of [`cookie`](Self::cookie): count a call only when it comes from outside the object that
    /// defines the function, i.e. when the call's return address (x86-64: the word on top of the stack at
    /// entry) lies outside the executable segment of the function's file as loaded in the calling process.
    /// Calls a library makes to its own exported functions are then not counted, only summed in
    /// [`ProbeStats::internal_calls`]. [`Probes::attach`] reads the segment from the file's program
    /// headers; in the kernel the check is one read of the user stack and a comparison, on flagged points
    /// only. A call from another copy of the same file (`dlmopen`) counts as external.
    ///
    /// The bit is above every valid counter index ([`MAX_PROBES_LIMIT`]); methods that take cookies
    /// ([`Probes::take_counts`], [`Probes::relink_without`]...) ignore it, and [`FirstSeen::cookie`] never
    /// carries it.
    pub const EXTERNAL_CALLERS_ONLY: u32 = 1 << 31;

    /// A point whose calls count only from outside the function's own object
    /// ([`EXTERNAL_CALLERS_ONLY`](Self::EXTERNAL_CALLERS_ONLY)).
    pub const fn external_callers_only(offset: u64, cookie: u32) -> Self {
        Self {
            offset,
            cookie: cookie | Self::EXTERNAL_CALLERS_ONLY,
        }
    }

    /// The counter index: the cookie without flags.
    pub const fn counter(&self) -> u32 {
        self.cookie & !Self::EXTERNAL_CALLERS_ONLY
    }

    /// Whether only calls from outside the function's own object are counted.
    pub const fn counts_external_callers_only(&self) -> bool {
        self.cookie & Self::EXTERNAL_CALLERS_ONLY != 0
    }

    /// The 64-bit BPF cookie: the counter index, and the flags in the high half (`linkguard.h`).
    fn bpf_cookie(&self) -> u64 {
        let flags = if self.counts_external_callers_only() {
            abi::COOKIE_EXTERNAL_ONLY
        } else {
            0
        };
        u64::from(self.counter()) | (u64::from(flags) << 32)
    }
}

/// One uprobe.multi link: the file, its points and scope. Pass it back to [`Probes::detach`] or
/// [`Probes::relink_without`]. Dropping it without detaching keeps the link until the `Probes` is dropped.
#[derive(Debug)]
pub struct LinkHandle {
    id: UProbeLinkId,
    target: PathBuf,
    points: Vec<AttachPoint>,
    scope: Scope,
}

impl LinkHandle {
    /// The path the file was opened by.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// The probed points.
    pub fn points(&self) -> &[AttachPoint] {
        &self.points
    }

    /// The scope the link was attached with.
    pub fn scope(&self) -> Scope {
        self.scope
    }
}

/// linkguard's loaded BPF program and maps. One per sidecar; links are attached and detached on it.
///
/// Dropping it closes the links still attached one after the other, each waiting for a grace period
/// (~25-75 ms here); call [`Probes::detach_all`] first for a fast shutdown.
pub struct Probes {
    ebpf: Ebpf,
    counters: PerCpuArray<MapData, u64>,
    seen: Array<MapData, u32>,
    stats: PerCpuArray<MapData, u64>,
    events: Option<RingBuf<MapData>>,
    /// Per-cookie internal calls of the window, when the internal-call budget is in use.
    internal: Option<Array<MapData, u32>>,
    /// Per cookie, the CPU-summed counter value at the last `take_counts` (the kernel counters never go back).
    taken: Vec<u64>,
    max_probes: u32,
    /// Where each external-callers-only point's function lies in its file's executable segment.
    segments: Array<MapData, u64>,
    /// Per cookie, the value last written to `segments` (re-links rewrite nothing).
    segments_written: Vec<u64>,
}

impl fmt::Debug for Probes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Probes")
            .field("max_probes", &self.max_probes)
            .field("first_seen_events", &self.events.is_some())
            .finish_non_exhaustive()
    }
}

impl Probes {
    /// Loads the program and creates its maps. Does not attach anything.
    ///
    /// RLIMIT_MEMLOCK is raised if possible and otherwise ignored: kernels >= 5.11 account BPF memory to
    /// the memory cgroup instead (Linux 5.11, "bpf: eliminate rlimit-based memory accounting"), and some
    /// sandboxes, this project's VM included, forbid raising it.
    pub fn load(opts: &LoadOptions) -> Result<Self> {
        if opts.max_probes == 0 || opts.max_probes > MAX_PROBES_LIMIT {
            return Err(BpfError::InvalidMaxProbes {
                max_probes: opts.max_probes,
                limit: MAX_PROBES_LIMIT,
            });
        }
        if opts.wakeup_every == 0 {
            return Err(BpfError::InvalidWakeupEvery);
        }
        let object = crate::bpf_object();
        if object.is_empty() {
            return Err(BpfError::StubObject);
        }
        raise_memlock_best_effort();

        let mut flags = 0u32;
        let (dev, ino) = match opts.pid_namespace {
            Some(ns) => {
                flags |= abi::FLAG_PIDNS_FILTER;
                (ns.dev, ns.ino)
            }
            None => (0, 0),
        };
        if opts.first_seen_events {
            flags |= abi::FLAG_FIRST_SEEN;
        }
        // The per-cookie internal-call tally exists only for the budget; else one unused entry.
        let budget_in_use = opts.first_seen_events && opts.internal_call_budget > 0;
        let internal_entries = if budget_in_use { opts.max_probes } else { 1 };
        // Without events the ring buffer is never written; keep it at the one-page minimum.
        let ring_bytes = if opts.first_seen_events {
            opts.ring_buffer_bytes.max(1)
        } else {
            1
        };

        let mut ebpf = EbpfLoader::new()
            .override_global(abi::GLOBAL_FLAGS, &flags, true)
            .override_global(abi::GLOBAL_PIDNS_DEV, &dev, true)
            .override_global(abi::GLOBAL_PIDNS_INO, &ino, true)
            .override_global(abi::GLOBAL_MAX_PROBES, &opts.max_probes, true)
            .override_global(abi::GLOBAL_WAKEUP_EVERY, &opts.wakeup_every, true)
            .override_global(
                abi::GLOBAL_INTERNAL_BUDGET,
                &opts.internal_call_budget,
                true,
            )
            .map_max_entries(abi::MAP_COUNTERS, opts.max_probes)
            .map_max_entries(abi::MAP_SEEN, opts.max_probes)
            .map_max_entries(abi::MAP_INTERNAL, internal_entries)
            .map_max_entries(abi::MAP_SEGMENTS, opts.max_probes)
            .map_max_entries(abi::MAP_EVENTS, ring_bytes)
            .load(object)
            .map_err(|source| BpfError::ObjectLoad {
                source: Box::new(source),
            })?;

        uprobe(&mut ebpf)?
            .load()
            .map_err(|source| BpfError::ProgramRejected {
                program: abi::PROGRAM,
                verifier_log: match &source {
                    ProgramError::LoadError { verifier_log, .. } => verifier_log.to_string(),
                    _ => String::new(),
                },
                source: Box::new(source),
            })?;

        let counters =
            PerCpuArray::try_from(take_map(&mut ebpf, abi::MAP_COUNTERS)?).map_err(|source| {
                BpfError::MapAccess {
                    map: abi::MAP_COUNTERS,
                    operation: "open",
                    source: Box::new(source),
                }
            })?;
        let seen = Array::try_from(take_map(&mut ebpf, abi::MAP_SEEN)?).map_err(|source| {
            BpfError::MapAccess {
                map: abi::MAP_SEEN,
                operation: "open",
                source: Box::new(source),
            }
        })?;
        let stats =
            PerCpuArray::try_from(take_map(&mut ebpf, abi::MAP_STATS)?).map_err(|source| {
                BpfError::MapAccess {
                    map: abi::MAP_STATS,
                    operation: "open",
                    source: Box::new(source),
                }
            })?;
        let events = if opts.first_seen_events {
            Some(
                RingBuf::try_from(take_map(&mut ebpf, abi::MAP_EVENTS)?).map_err(|source| {
                    BpfError::MapAccess {
                        map: abi::MAP_EVENTS,
                        operation: "open",
                        source: Box::new(source),
                    }
                })?,
            )
        } else {
            None
        };
        let segments =
            Array::try_from(take_map(&mut ebpf, abi::MAP_SEGMENTS)?).map_err(|source| {
                BpfError::MapAccess {
                    map: abi::MAP_SEGMENTS,
                    operation: "open",
                    source: Box::new(source),
                }
            })?;
        let internal = if budget_in_use {
            Some(
                Array::try_from(take_map(&mut ebpf, abi::MAP_INTERNAL)?).map_err(|source| {
                    BpfError::MapAccess {
                        map: abi::MAP_INTERNAL,
                        operation: "open",
                        source: Box::new(source),
                    }
                })?,
            )
        } else {
            None
        };
        debug!(
            max_probes = opts.max_probes,
            flags, "linkguard BPF program loaded"
        );
        Ok(Self {
            ebpf,
            counters,
            seen,
            stats,
            events,
            internal,
            segments,
            segments_written: vec![0; opts.max_probes as usize],
            taken: vec![0; opts.max_probes as usize],
            max_probes: opts.max_probes,
        })
    }

    /// Whether [`AttachPoint::external_callers_only`] points can tell internal calls apart: x86-64 only
    /// (elsewhere the return address is not on the stack at function entry). When false they count every
    /// call, and each counted call adds to [`ProbeStats::caller_unknown`].
    pub fn filters_internal_calls(&self) -> bool {
        cfg!(target_arch = "x86_64")
    }

    /// The number of counters (valid cookies are `0..max_probes`).
    pub fn max_probes(&self) -> u32 {
        self.max_probes
    }

    /// Attaches one uprobe.multi link for many functions of ONE file.
    ///
    /// `target` is the path to open the file by, resolved by the kernel in this process's mount
    /// namespace: for a file of another container pass `/proc/<pid>/root/<path>`, `/proc/<pid>/exe` or
    /// `/proc/<pid>/map_files/<range>`, never the host path (it is another inode and silently counts 0).
    /// Offsets are FILE offsets; cookies index the counters (a point may count external callers only,
    /// [`AttachPoint::EXTERNAL_CALLERS_ONLY`]). The points are validated first (absolute regular file,
    /// offsets inside it, no duplicate offset, cookies in range) so the common mistakes get a precise
    /// error instead of an errno.
    pub fn attach(
        &mut self,
        target: &Path,
        points: &[AttachPoint],
        scope: Scope,
    ) -> Result<LinkHandle> {
        self.validate(target, points)?;
        self.record_segments(target, points)?;
        let uprobe_scope = match scope {
            Scope::OneProcess(pid) => {
                UProbeScope::OneProcess(NonZeroU32::new(pid).ok_or(BpfError::InvalidPid)?)
            }
            Scope::AllProcesses => UProbeScope::AllProcesses,
        };
        let started = Instant::now();
        let aya_points = points.iter().map(|p| UProbeAttachPoint {
            location: UProbeAttachLocation::AbsoluteOffset(p.offset),
            cookie: Some(p.bpf_cookie()),
        });
        let id = uprobe(&mut self.ebpf)?
            .attach(aya_points, target, uprobe_scope)
            .map_err(|source| {
                let (errno, hint) = attach_hint(&source);
                BpfError::AttachFailed {
                    path: target.to_path_buf(),
                    points: points.len(),
                    errno,
                    hint,
                    source: Box::new(source),
                }
            })?;
        debug!(
            target = %target.display(),
            points = points.len(),
            ?scope,
            elapsed_us = started.elapsed().as_micros() as u64,
            "uprobe.multi link attached"
        );
        Ok(LinkHandle {
            id,
            target: target.to_path_buf(),
            points: points.to_vec(),
            scope,
        })
    }

    /// Closes the link. When this returns, the kernel has unregistered every uprobe of the link
    /// (`bpf_uprobe_multi_link_release` unregisters synchronously): later calls are not counted and the
    /// breakpoints are gone from the processes' text.
    pub fn detach(&mut self, link: LinkHandle) -> Result<()> {
        let started = Instant::now();
        uprobe(&mut self.ebpf)?
            .detach(link.id)
            .map_err(|source| BpfError::DetachFailed {
                path: link.target.clone(),
                source: Box::new(source),
            })?;
        debug!(
            target = %link.target.display(),
            points = link.points.len(),
            elapsed_us = started.elapsed().as_micros() as u64,
            "uprobe.multi link detached"
        );
        Ok(())
    }

    /// Detaches several links at once. Closing a uprobe.multi link waits in the kernel for an RCU grace
    /// period (`uprobe_unregister_sync`, so no handler still runs on the freed consumers): 25-75 ms here,
    /// whatever the link's size. Closing the links from concurrent threads lets them share grace periods
    /// (8 links: ~340 ms one by one, ~80-100 ms together). When this returns, every link is gone. The first
    /// error is returned after all links were tried.
    pub fn detach_all(&mut self, links: Vec<LinkHandle>) -> Result<()> {
        let started = Instant::now();
        let count = links.len();
        let program = uprobe(&mut self.ebpf)?;
        let mut owned = Vec::with_capacity(links.len());
        let mut first_error = None;
        for link in links {
            match program.take_link(link.id) {
                Ok(owned_link) => owned.push(owned_link),
                Err(source) => {
                    first_error.get_or_insert(BpfError::DetachFailed {
                        path: link.target,
                        source: Box::new(source),
                    });
                }
            }
        }
        // Dropping an owned link closes its fd; the kernel unregisters and waits for the grace period.
        std::thread::scope(|scope| {
            for link in owned {
                scope.spawn(move || drop(link));
            }
        });
        debug!(
            links = count,
            elapsed_us = started.elapsed().as_micros() as u64,
            "uprobe.multi links detached"
        );
        first_error.map_or(Ok(()), Err)
    }

    /// Re-links `link` without the points whose counter is in `remove` (coverage mode: a function seen in
    /// this window stops trapping; flags of the cookies are ignored). Returns the new link, or `None` when no point is left.
    ///
    /// A uprobe.multi link cannot be edited, so this is detach, then attach. Detaching first means calls
    /// in the gap (the detach's grace period plus the attach: tens of ms) are not counted, so counts stay
    /// lower bounds; attaching first would count calls in the overlap twice. On error the old link is already gone: nothing of
    /// it is attached any more.
    pub fn relink_without(
        &mut self,
        link: LinkHandle,
        remove: &[u32],
    ) -> Result<Option<LinkHandle>> {
        let remove: HashSet<u32> = remove.iter().map(|&c| counter_of(c)).collect();
        let remaining: Vec<AttachPoint> = link
            .points
            .iter()
            .copied()
            .filter(|p| !remove.contains(&p.counter()))
            .collect();
        if remaining.len() == link.points.len() {
            return Ok(Some(link));
        }
        let target = link.target.clone();
        let scope = link.scope;
        self.detach(link)?;
        if remaining.is_empty() {
            return Ok(None);
        }
        self.attach(&target, &remaining, scope).map(Some)
    }

    /// [`relink_without`](Self::relink_without) for several links (one per file) at once: the links that
    /// lose points are detached together ([`detach_all`](Self::detach_all): one shared grace period instead
    /// of one per link), then re-attached with their remaining points. Returns the links attached now
    /// (unchanged ones included, emptied ones dropped) and the errors of links that could not be re-attached
    /// (their points are no longer probed).
    pub fn relink_all_without(
        &mut self,
        links: Vec<LinkHandle>,
        remove: &[u32],
    ) -> (Vec<LinkHandle>, Vec<BpfError>) {
        let remove: HashSet<u32> = remove.iter().map(|&c| counter_of(c)).collect();
        let (changed, mut kept): (Vec<LinkHandle>, Vec<LinkHandle>) = links
            .into_iter()
            .partition(|link| link.points.iter().any(|p| remove.contains(&p.counter())));
        let plans: Vec<(PathBuf, Scope, Vec<AttachPoint>)> = changed
            .iter()
            .map(|link| {
                let remaining = link
                    .points
                    .iter()
                    .copied()
                    .filter(|p| !remove.contains(&p.counter()))
                    .collect();
                (link.target.clone(), link.scope, remaining)
            })
            .collect();
        let mut errors = Vec::new();
        if let Err(error) = self.detach_all(changed) {
            errors.push(error);
        }
        for (target, scope, remaining) in plans {
            if remaining.is_empty() {
                continue;
            }
            match self.attach(&target, &remaining, scope) {
                Ok(link) => kept.push(link),
                Err(error) => errors.push(error),
            }
        }
        (kept, errors)
    }

    /// Writes, for the external-callers-only points, where their functions lie in the file's executable
    /// segment (see [`segments`]), before the first call can trap. A file whose program headers cannot be
    /// read gets no entry: its points then count every call (as [`ProbeStats::caller_unknown`]).
    fn record_segments(&mut self, target: &Path, points: &[AttachPoint]) -> Result<()> {
        if !points.iter().any(AttachPoint::counts_external_callers_only) {
            return Ok(());
        }
        let segments = segments::executable_segments(target).unwrap_or_else(|error| {
            warn!(target = %target.display(), %error, "no executable segments: calls from the file itself will be counted");
            Vec::new()
        });
        for point in points.iter().filter(|p| p.counts_external_callers_only()) {
            let counter = point.counter();
            let value = segments::packed_distances(&segments, point.offset);
            let Some(written) = self.segments_written.get_mut(counter as usize) else {
                continue; // out of range: validate() has refused it already
            };
            if *written == value {
                continue;
            }
            self.segments
                .set(counter, &value, 0)
                .map_err(|source| BpfError::MapAccess {
                    map: abi::MAP_SEGMENTS,
                    operation: "write",
                    source: Box::new(source),
                })?;
            *written = value;
        }
        Ok(())
    }

    fn validate(&self, target: &Path, points: &[AttachPoint]) -> Result<()> {
        if !target.is_absolute() {
            // A bare name would also make aya search ld.so.cache and the host's libraries.
            return Err(BpfError::TargetNotAbsolute {
                path: target.to_path_buf(),
            });
        }
        if points.is_empty() {
            return Err(BpfError::NoAttachPoints {
                path: target.to_path_buf(),
            });
        }
        // stat follows /proc/<pid>/exe and map_files magic links the same way the kernel's kern_path does.
        let metadata = std::fs::metadata(target).map_err(|source| BpfError::TargetUnreadable {
            path: target.to_path_buf(),
            source,
        })?;
        if !metadata.is_file() {
            return Err(BpfError::TargetNotRegularFile {
                path: target.to_path_buf(),
            });
        }
        let size = metadata.len();
        let mut by_offset: HashMap<u64, u32> = HashMap::with_capacity(points.len());
        for point in points {
            self.check_cookie(point.counter())?;
            if point.offset >= size {
                return Err(BpfError::OffsetBeyondFile {
                    path: target.to_path_buf(),
                    offset: point.offset,
                    cookie: point.cookie,
                    size,
                });
            }
            if let Some(first_cookie) = by_offset.insert(point.offset, point.cookie) {
                return Err(BpfError::DuplicateOffset {
                    path: target.to_path_buf(),
                    offset: point.offset,
                    first_cookie,
                    second_cookie: point.cookie,
                });
            }
        }
        Ok(())
    }
}

/// A cookie as given to a method that takes cookies: its counter index, flags dropped.
pub(crate) fn counter_of(cookie: u32) -> u32 {
    cookie & !AttachPoint::EXTERNAL_CALLERS_ONLY
}

fn uprobe(ebpf: &mut Ebpf) -> Result<&mut UProbe> {
    ebpf.program_mut(abi::PROGRAM)
        .and_then(|program| <&mut UProbe>::try_from(program).ok())
        .ok_or(BpfError::ObjectMismatch {
            kind: "uprobe program",
            name: abi::PROGRAM,
        })
}

fn take_map(ebpf: &mut Ebpf, name: &'static str) -> Result<Map> {
    ebpf.take_map(name)
        .ok_or(BpfError::ObjectMismatch { kind: "map", name })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_can_move_to_another_thread() {
        // The sidecar owns the probes in its own task; they must be Send (not necessarily Sync).
        fn assert_send<T: Send>() {}
        assert_send::<Probes>();
        assert_send::<LinkHandle>();
    }

    #[test]
    fn invalid_options_are_rejected_before_touching_the_kernel() {
        let err = Probes::load(&LoadOptions {
            max_probes: 0,
            ..LoadOptions::default()
        })
        .unwrap_err();
        assert!(
            matches!(err, BpfError::InvalidMaxProbes { max_probes: 0, .. }),
            "{err}"
        );
        let err = Probes::load(&LoadOptions {
            max_probes: MAX_PROBES_LIMIT + 1,
            ..LoadOptions::default()
        })
        .unwrap_err();
        assert!(matches!(err, BpfError::InvalidMaxProbes { .. }), "{err}");
        let err = Probes::load(&LoadOptions {
            wakeup_every: 0,
            ..LoadOptions::default()
        })
        .unwrap_err();
        assert!(matches!(err, BpfError::InvalidWakeupEvery), "{err}");
    }
}
