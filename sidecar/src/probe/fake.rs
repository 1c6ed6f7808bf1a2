// SPDX-License-Identifier: Apache-2.0
//! An in-memory [`ProbeBackend`] for unit tests of the session logic (test builds only).
//!
//! It is a test double of OUR trait, with the kernel's semantics where the session relies on them: a call
//! counts once per link whose file, offset and scope match; counters are monotonic and `take_counts`
//! returns increments; a first-seen event is sent once per cookie until re-armed; an external-callers-only
//! point does not count calls from its own object and reports its internal-call budget once. The real kernel
//! path is tested as root in tests/observe.rs and bpf/tests/caller_filter.rs.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};

use super::backend::{AttachPoint, BpfError, FirstSeen, ProbeBackend, Scope};

#[derive(Debug, Clone)]
pub struct FakeLink {
    pub target: PathBuf,
    pub points: Vec<AttachPoint>,
    pub scope: Scope,
}

#[derive(Debug)]
pub struct FakeKernel {
    pub links: BTreeMap<u64, FakeLink>,
    next_link: u64,
    totals: Vec<u64>,
    taken: Vec<u64>,
    seen: Vec<bool>,
    internal: Vec<u32>,
    /// `LoadOptions::internal_call_budget` (0: never reported).
    pub internal_budget: u32,
    events: VecDeque<FirstSeen>,
    /// Attach to these targets fails as if the process had exited.
    pub refuse: BTreeSet<PathBuf>,
    /// After this many attach calls, attach to this target fails as if the process had exited.
    pub refuse_after: Option<(usize, PathBuf)>,
    /// A link with one of these offsets is refused as a whole (like ENOTSUPP for an instruction the
    /// kernel cannot probe).
    pub unprobeable: BTreeSet<u64>,
    pub attaches: usize,
    pub detaches: usize,
}

impl FakeKernel {
    pub fn new(max_probes: u32) -> Self {
        let n = max_probes as usize;
        Self {
            links: BTreeMap::new(),
            next_link: 0,
            totals: vec![0; n],
            taken: vec![0; n],
            seen: vec![false; n],
            internal: vec![0; n],
            internal_budget: 0,
            events: VecDeque::new(),
            refuse: BTreeSet::new(),
            unprobeable: BTreeSet::new(),
            refuse_after: None,
            attaches: 0,
            detaches: 0,
        }
    }

    /// `n` calls by process `pid`, from another file, of the function at `offset` of the file opened as
    /// `target`. Returns how many of them trapped (were counted by some link).
    pub fn call(&mut self, target: &Path, pid: u32, offset: u64, n: u64) -> u64 {
        self.calls(target, pid, offset, n, false)
    }

    /// Like [`call`](Self::call), but made from code of the function's own object: external-callers-only
    /// points do not count them. Returns how many trapped (counted or not).
    pub fn call_internal(&mut self, target: &Path, pid: u32, offset: u64, n: u64) -> u64 {
        self.calls(target, pid, offset, n, true)
    }

    fn calls(&mut self, target: &Path, pid: u32, offset: u64, n: u64, internal: bool) -> u64 {
        let mut trapped = 0;
        let hits: Vec<AttachPoint> = self
            .links
            .values()
            .filter(|link| link.target == target)
            .filter(|link| {
                matches!(link.scope, Scope::AllProcesses) || link.scope == Scope::OneProcess(pid)
            })
            .flat_map(|link| link.points.iter().filter(|p| p.offset == offset).copied())
            .collect();
        for point in hits {
            let cookie = point.counter();
            let index = cookie as usize;
            trapped = n;
            if internal && point.counts_external_callers_only() {
                let before = self.internal[index];
                self.internal[index] = before.saturating_add(n.try_into().unwrap_or(u32::MAX));
                let budget = self.internal_budget;
                if budget > 0
                    && before < budget
                    && self.internal[index] >= budget
                    && !self.seen[index]
                {
                    self.seen[index] = true;
                    self.events.push_back(FirstSeen {
                        pid,
                        tid: pid,
                        host_pid: pid,
                        cookie,
                        ktime_ns: 0,
                        internal_budget_reached: true,
                    });
                }
                continue;
            }
            self.totals[index] += n;
            if n > 0 && !self.seen[index] {
                self.seen[index] = true;
                self.events.push_back(FirstSeen {
                    pid,
                    tid: pid,
                    host_pid: pid,
                    cookie,
                    ktime_ns: 0,
                    internal_budget_reached: false,
                });
            }
        }
        trapped
    }

    /// Offsets currently trapping for `target` in process `pid`.
    pub fn armed(&self, target: &Path, pid: u32) -> BTreeSet<u64> {
        self.links
            .values()
            .filter(|l| {
                l.target == target
                    && (l.scope == Scope::OneProcess(pid) || l.scope == Scope::AllProcesses)
            })
            .flat_map(|l| l.points.iter().map(|p| p.offset))
            .collect()
    }

    fn check(&self, cookie: u32) -> Result<usize, BpfError> {
        let cookie = cookie & !AttachPoint::EXTERNAL_CALLERS_ONLY;
        let max_probes = self.totals.len() as u32;
        if cookie >= max_probes {
            return Err(BpfError::CookieOutOfRange { cookie, max_probes });
        }
        Ok(cookie as usize)
    }
}

impl ProbeBackend for FakeKernel {
    type Link = u64;

    fn attach(
        &mut self,
        target: &Path,
        points: &[AttachPoint],
        scope: Scope,
    ) -> Result<u64, BpfError> {
        if self.refuse.contains(target) {
            return Err(BpfError::TargetUnreadable {
                path: target.to_path_buf(),
                source: std::io::Error::from_raw_os_error(libc::ENOENT),
            });
        }
        if points.is_empty() {
            return Err(BpfError::NoAttachPoints {
                path: target.to_path_buf(),
            });
        }
        self.attaches += 1;
        if let Some((after, path)) = &self.refuse_after
            && self.attaches > *after
            && path == target
        {
            self.refuse.insert(path.clone());
            return self.attach(target, points, scope);
        }
        for point in points {
            self.check(point.counter())?;
            if self.unprobeable.contains(&point.offset) {
                return Err(BpfError::OffsetBeyondFile {
                    path: target.to_path_buf(),
                    offset: point.offset,
                    cookie: point.cookie,
                    size: 0,
                });
            }
        }
        self.next_link += 1;
        self.links.insert(
            self.next_link,
            FakeLink {
                target: target.to_path_buf(),
                points: points.to_vec(),
                scope,
            },
        );
        Ok(self.next_link)
    }

    fn detach(&mut self, link: u64) -> Result<(), BpfError> {
        self.detaches += 1;
        self.links.remove(&link);
        Ok(())
    }

    fn read_counts(&self, cookies: &[u32]) -> Result<Vec<u64>, BpfError> {
        cookies
            .iter()
            .map(|&c| self.check(c).map(|i| self.totals[i] - self.taken[i]))
            .collect()
    }

    fn take_counts(&mut self, cookies: &[u32]) -> Result<Vec<u64>, BpfError> {
        cookies
            .iter()
            .map(|&c| {
                let i = self.check(c)?;
                let delta = self.totals[i] - self.taken[i];
                self.taken[i] = self.totals[i];
                Ok(delta)
            })
            .collect()
    }

    fn drain_first_seen(&mut self, max: usize) -> Vec<FirstSeen> {
        let n = max.min(self.events.len());
        self.events.drain(..n).collect()
    }

    fn reset_first_seen(&mut self, cookies: &[u32]) -> Result<(), BpfError> {
        for &cookie in cookies {
            let i = self.check(cookie)?;
            self.seen[i] = false;
            self.internal[i] = 0;
        }
        Ok(())
    }

    fn max_probes(&self) -> u32 {
        self.totals.len() as u32
    }
}
