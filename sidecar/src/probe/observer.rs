// SPDX-License-Identifier: Apache-2.0
//! Following the app: each [`Observer::poll`] finds new, exited and re-executed processes, scans the maps
//! of the followed ones for files of the function map (libraries loaded later with dlopen included), checks
//! each new file against the map and attaches it. Polling every 100-250 ms probes a new process within
//! 1 s of its exec; a process that lives shorter than that is covered only when linkguard starts it
//! ([`Observer::hold`], `observe -- CMD`).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::sync::Arc;

use tracing::{debug, info};

use crate::discover::{
    AppProcess, Discovery, FileId, MappedFile, ProcFs, Unopenable, mapped_files,
};
use crate::observation::Record;

use super::ProbeError;
use super::backend::ProbeBackend;
use super::records::{Interval, Origin};
use super::resolve::{FilePlan, plan_file};
use super::session::{AttachOutcome, Mode, ProcessRef, Session};
use super::targets::{TargetIndex, Targets};

/// The observer's settings.
#[derive(Debug, Clone, Default)]
pub struct ObserverConfig {
    pub mode: Mode,
    pub origin: Origin,
    /// Bound of the in-memory record buffer between flushes.
    pub max_records: usize,
}

/// What one poll changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PollStats {
    pub followed: usize,
    pub started: usize,
    pub exited: usize,
    pub attached_files: usize,
}

/// A plan depends on the file's content (identity by inode and change time) and on the map's file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct PlanKey {
    file: FileId,
    size: u64,
    ctime: (i64, i64),
    target: TargetIndex,
}

/// Discovery + probe session + plan cache.
#[derive(Debug)]
pub struct Observer<B: ProbeBackend> {
    discovery: Discovery,
    session: Session<B>,
    wanted: BTreeSet<String>,
    plans: HashMap<PlanKey, Arc<FilePlan>>,
    exe_ids: HashMap<u32, Option<FileId>>,
    /// Mapped files that are not in the map, per pid (not looked at again).
    others: HashMap<u32, HashSet<FileId>>,
    /// Processes attached before their exec: pid -> the executable they had then.
    held: HashMap<u32, Option<FileId>>,
}

impl<B: ProbeBackend> Observer<B> {
    pub fn new(backend: B, targets: Targets, discovery: Discovery, config: ObserverConfig) -> Self {
        let wanted = targets.paths();
        let session = Session::new(
            backend,
            Arc::new(targets),
            config.mode,
            config.origin,
            config.max_records,
        );
        Self {
            discovery,
            session,
            wanted,
            plans: HashMap::new(),
            exe_ids: HashMap::new(),
            others: HashMap::new(),
            held: HashMap::new(),
        }
    }

    pub fn session(&self) -> &Session<B> {
        &self.session
    }

    fn proc(&self) -> &ProcFs {
        self.discovery.proc()
    }

    /// Number of followed processes.
    pub fn followed(&self) -> usize {
        self.session.processes().count()
    }

    /// Attaches to a process that has not exec'd its command yet (`observe -- CMD`): every file of the map
    /// that exists in its root (which is ours: it is our child) is probed for it now, so the first call
    /// after the exec is already counted. `exe` is the command's path.
    pub fn hold(&mut self, pid: u32, exe: &str) -> Result<usize, ProbeError> {
        let proc = self.proc().clone();
        let unreadable = |source| ProbeError::ProcessUnreadable { pid, source };
        let start_time = proc.stat(pid).map_err(unreadable)?.start_time;
        let ns_pid = proc.ns_pid(pid).map_err(unreadable)?;
        self.session.add_process(&ProcessRef {
            pid,
            ns_pid,
            start_time,
            exe: exe.to_owned(),
        });
        self.held.insert(pid, proc.exe_id(pid).ok());
        self.discovery.select_pid(pid);
        let targets = Arc::clone(self.session.targets());
        let mut attached = 0;
        for (index, file) in targets.files().iter().enumerate() {
            let open = proc.in_root(pid, &file.binary.path);
            let Ok(id) = FileId::of_path(&open) else {
                continue;
            };
            let mapped = MappedFile {
                image_path: file.binary.path.clone(),
                mapped_path: file.binary.path.clone(),
                file: id,
                open: Ok(open),
            };
            if self.attach_mapped(pid, start_time, index, &mapped) {
                attached += 1;
            }
        }
        info!(pid, files = attached, "probes attached before exec");
        Ok(attached)
    }

    /// One round of discovery and attaching, then (coverage mode) stops trapping what was seen.
    pub fn poll(&mut self) -> Result<PollStats, ProbeError> {
        let mut stats = PollStats::default();
        let found = {
            let session = &self.session;
            self.discovery.scan(&|pid| session.is_followed(pid))?
        };
        let found: HashMap<u32, AppProcess> = found.into_iter().map(|p| (p.pid, p)).collect();

        // Exits (and pid reuse), then executables replaced by an exec.
        let followed: Vec<(u32, u64)> = self.session.processes().collect();
        for (pid, start_time) in followed {
            let Some(process) = found.get(&pid).filter(|p| p.start_time == start_time) else {
                self.forget(pid);
                stats.exited += 1;
                continue;
            };
            if let Some(before) = self.held.get(&pid) {
                if process.exe_id == *before {
                    continue; // still waiting to exec
                }
                self.held.remove(&pid);
                self.session.set_exe(pid, &process.exe);
                self.exe_ids.insert(pid, process.exe_id);
            } else if let (Some(Some(before)), Some(now)) = (self.exe_ids.get(&pid), process.exe_id)
                && *before != now
            {
                // A new image: exec of another (or a replaced) binary. Unreadable ids never count as a change.
                debug!(pid, exe = %process.exe, "process exec'd another executable: re-planning");
                self.forget(pid);
                stats.exited += 1;
            } else if matches!(self.exe_ids.get(&pid), Some(None)) {
                self.exe_ids.insert(pid, process.exe_id);
            }
        }
        for process in found.values() {
            if !self.session.is_followed(process.pid) {
                self.session.add_process(&ProcessRef {
                    pid: process.pid,
                    ns_pid: process.ns_pid,
                    start_time: process.start_time,
                    exe: process.exe.clone(),
                });
                self.exe_ids.insert(process.pid, process.exe_id);
                stats.started += 1;
                info!(pid = process.ns_pid, exe = %process.exe, "following process");
            }
        }
        let mut pids: Vec<&AppProcess> = found
            .values()
            .filter(|p| !self.held.contains_key(&p.pid))
            .collect();
        pids.sort_by_key(|p| p.pid);
        for process in pids {
            stats.attached_files += self.attach_new_files(process.pid, process.start_time);
        }
        self.session.tick();
        stats.followed = self.followed();
        Ok(stats)
    }

    fn forget(&mut self, pid: u32) {
        self.session.remove_process(pid);
        self.exe_ids.remove(&pid);
        self.others.remove(&pid);
        self.held.remove(&pid);
    }

    /// Scans the process's maps for files of the map not handled yet and attaches them.
    fn attach_new_files(&mut self, pid: u32, start_time: u64) -> usize {
        let scan = {
            let session = &self.session;
            let others = self.others.get(&pid);
            let known =
                |id: &FileId| session.has_file(pid, id) || others.is_some_and(|o| o.contains(id));
            // The process may be gone already: the next poll forgets it.
            match mapped_files(self.discovery.proc(), pid, &self.wanted, &known) {
                Ok(scan) => scan,
                Err(_) => return 0,
            }
        };
        self.others.entry(pid).or_default().extend(scan.others);
        let targets = Arc::clone(self.session.targets());
        let mut attached = 0;
        for mapped in scan.targets {
            let Some(index) = targets.index_of(&mapped.image_path) else {
                continue;
            };
            if self.attach_mapped(pid, start_time, index, &mapped) {
                attached += 1;
            }
        }
        attached
    }

    /// Plans and attaches one mapped file; true when a link was created.
    fn attach_mapped(
        &mut self,
        pid: u32,
        start_time: u64,
        target: TargetIndex,
        mapped: &MappedFile,
    ) -> bool {
        let open = match &mapped.open {
            Ok(open) => open.clone(),
            Err(Unopenable::Replaced) if !self.alive(pid, start_time) => {
                // Nothing under /proc/<pid> opens any more because the process is gone, not replaced.
                debug!(pid, "process exited while its files were looked up");
                self.forget(pid);
                return false;
            }
            Err(Unopenable::Replaced) => {
                let detail = format!(
                    "{} was replaced on disk after process {pid} mapped it and /proc/{pid}/map_files is not \
                     readable: give linkguard CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE, or restart the process",
                    mapped.mapped_path
                );
                let path = self.proc().in_root(pid, &mapped.mapped_path);
                self.session
                    .record_attach_failure(pid, mapped.file, target, &path, None, &detail);
                return false;
            }
        };
        let Some(plan) = self.plan(target, &open) else {
            // Unreadable now: most likely the process just exited.
            return false;
        };
        match self
            .session
            .attach_file(pid, mapped.file, target, &open, &plan)
        {
            AttachOutcome::Attached { .. } => true,
            AttachOutcome::Nothing | AttachOutcome::Mismatch => false,
            AttachOutcome::Failed(error) => {
                if self.alive(pid, start_time) {
                    self.session.record_attach_failure(
                        pid,
                        mapped.file,
                        target,
                        &open,
                        Some(&plan),
                        &error.to_string(),
                    );
                } else {
                    debug!(pid, %error, "process exited during attach");
                    self.forget(pid);
                }
                false
            }
        }
    }

    fn alive(&self, pid: u32, start_time: u64) -> bool {
        self.proc()
            .stat(pid)
            .is_ok_and(|s| s.start_time == start_time && !s.exited())
    }

    /// The plan of a file, cached by inode and change time (a replaced file is planned again).
    fn plan(&mut self, target: TargetIndex, open: &Path) -> Option<Arc<FilePlan>> {
        let meta = std::fs::metadata(open).ok()?;
        let key = PlanKey {
            file: FileId {
                dev: meta.dev(),
                ino: meta.ino(),
            },
            size: meta.size(),
            ctime: (meta.ctime(), meta.ctime_nsec()),
            target,
        };
        if let Some(plan) = self.plans.get(&key) {
            return Some(Arc::clone(plan));
        }
        let bytes = std::fs::read(open).ok()?;
        let file = self.session.targets().file(target)?;
        let plan = Arc::new(plan_file(file, &bytes, &file.binary.path));
        self.plans.insert(key, Arc::clone(&plan));
        Some(plan)
    }

    /// Takes the interval's counts; returns its records.
    pub fn flush(&mut self, interval: Interval) -> Result<Vec<Record>, ProbeError> {
        self.session.flush(interval)
    }

    /// Starts a new coverage window: every function traps again until seen.
    pub fn rearm(&mut self) {
        self.session.rearm();
    }

    /// Detaches every probe; counts stay readable for the last flush.
    pub fn detach_all(&mut self) {
        self.session.detach_all();
    }
}
