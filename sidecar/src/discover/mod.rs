// SPDX-License-Identifier: Apache-2.0
//! Finding the app's processes and the files of the function map they run.
//!
//! The sidecar shares the pod's PID namespace, so every container's processes are in its /proc. A process
//! belongs to the app when it is not linkguard itself nor the pause process, passes the optional cgroup
//! filter, and is selected: by explicit pid, as a child of a followed process, or because its executable is
//! one of the map's entrypoints as seen inside ITS root (the link text of `/proc/<pid>/exe`, or the same
//! inode as `/proc/<pid>/root/<entrypoint>`). Files are opened through the process (see [`files`]); pids are
//! reported as the app sees them (`NSpid`).

pub mod files;
pub mod procfs;

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;

use tracing::debug;

pub use files::{MappedFile, MappedScan, Unopenable, mapped_files};
pub use procfs::{FileId, Mapping, ProcFs};

/// Discovery failed as a whole (single processes that vanish are skipped, not errors).
#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    #[error(
        "cannot list processes in {path}: {source}; linkguard needs /proc of the app's PID namespace (share \
         the pod's process namespace with the sidecar: shareProcessNamespace: true)"
    )]
    ListProcesses {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The pause container's executable in a Kubernetes pod (it owns the shared namespaces, runs no app code).
pub const PAUSE_EXE: &str = "/pause";

/// Which processes are the app's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    /// Explicitly chosen processes (pids as seen by linkguard).
    pub pids: BTreeSet<u32>,
    /// Follow the children of followed processes (`observe -- CMD`: the command's own subprocesses).
    pub follow_children: bool,
    /// Select processes running one of the map's entrypoints (`--all`).
    pub entrypoints: bool,
    /// Only processes whose `/proc/<pid>/cgroup` contains this text (a container id or cgroup path). Alone,
    /// it selects every process of that cgroup.
    pub cgroup: Option<String>,
}

/// One process of the app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppProcess {
    /// Pid as seen by linkguard (what the kernel interfaces here take).
    pub pid: u32,
    /// Pid as the app sees it, in its own pid namespace (what records report).
    pub ns_pid: u32,
    /// Start time in clock ticks since boot: `(pid, start_time)` survives pid reuse.
    pub start_time: u64,
    /// The main executable, as a path inside the process's root.
    pub exe: String,
    /// The running executable's inode (changes on exec of another or a replaced binary).
    pub exe_id: Option<FileId>,
}

#[derive(Debug, Clone)]
struct Decision {
    start_time: u64,
    /// The link text of /proc/<pid>/exe (what the cache is keyed by).
    exe: String,
    /// The executable as the app sees it: the map's entrypoint when the process runs one (the link text
    /// is resolved against linkguard's root, so a chroot or another mount namespace shows a host path).
    app_exe: String,
    ppid: u32,
    /// Selected for its own sake (pid, entrypoint or cgroup), independent of its parent.
    selected: bool,
    ns_pid: Option<u32>,
}

/// Finds the app's processes; remembers per-process decisions so a poll costs two small reads per process.
#[derive(Debug)]
pub struct Discovery {
    proc: ProcFs,
    selector: Selector,
    entrypoints: BTreeSet<String>,
    self_pid: u32,
    decisions: HashMap<u32, Decision>,
}

impl Discovery {
    /// `entrypoints` are the map's entrypoint paths (inside the image).
    pub fn new(
        proc: ProcFs,
        selector: Selector,
        entrypoints: impl IntoIterator<Item = String>,
    ) -> Self {
        Self {
            proc,
            selector,
            entrypoints: entrypoints.into_iter().collect(),
            self_pid: std::process::id(),
            decisions: HashMap::new(),
        }
    }

    pub fn proc(&self) -> &ProcFs {
        &self.proc
    }

    pub fn selector(&self) -> &Selector {
        &self.selector
    }

    /// Adds an explicitly chosen pid (e.g. the command `observe` started).
    pub fn select_pid(&mut self, pid: u32) {
        self.selector.pids.insert(pid);
        self.decisions.remove(&pid);
    }

    /// The app's processes now. `followed(pid)` tells whether a pid is already followed, for
    /// [`Selector::follow_children`]. Processes that vanish while being read are skipped.
    pub fn scan(
        &mut self,
        followed: &dyn Fn(u32) -> bool,
    ) -> Result<Vec<AppProcess>, DiscoverError> {
        let pids = self
            .proc
            .pids()
            .map_err(|source| DiscoverError::ListProcesses {
                path: self.proc.root().to_path_buf(),
                source,
            })?;
        let live: BTreeSet<u32> = pids.iter().copied().collect();
        self.decisions.retain(|pid, _| live.contains(pid));
        let mut found = Vec::new();
        for pid in pids {
            if pid == self.self_pid {
                continue;
            }
            if let Some(process) = self.check(pid, followed) {
                found.push(process);
            }
        }
        Ok(found)
    }

    fn check(&mut self, pid: u32, followed: &dyn Fn(u32) -> bool) -> Option<AppProcess> {
        let stat = self.proc.stat(pid).ok()?;
        // Kernel threads have no exe; a process may exit between the two reads.
        let (exe, _deleted) = self.proc.exe(pid).ok()?;
        let cached = self
            .decisions
            .get(&pid)
            .filter(|d| d.start_time == stat.start_time && d.exe == exe)
            .cloned();
        let mut decision = match cached {
            Some(decision) => decision,
            None => {
                let (selected, entrypoint) = self.decide(pid, &exe);
                Decision {
                    start_time: stat.start_time,
                    app_exe: entrypoint.unwrap_or_else(|| exe.clone()),
                    exe: exe.clone(),
                    ppid: stat.ppid,
                    selected,
                    ns_pid: None,
                }
            }
        };
        // The parent can be re-parented (to a subreaper) but a child of a followed process stays followed
        // through its own pid, which the caller follows from then on.
        let child_of_followed = self.selector.follow_children
            && self.candidate(pid, &decision.exe)
            && (followed(decision.ppid) || followed(pid));
        let result = if decision.selected || child_of_followed {
            if decision.ns_pid.is_none() {
                decision.ns_pid = self.proc.ns_pid(pid).ok();
            }
            decision.ns_pid.map(|ns_pid| AppProcess {
                pid,
                ns_pid,
                start_time: stat.start_time,
                exe: decision.app_exe.clone(),
                exe_id: self.proc.exe_id(pid).ok(),
            })
        } else {
            None
        };
        self.decisions.insert(pid, decision);
        result
    }

    /// Not linkguard, not pause, in the cgroup.
    fn candidate(&self, pid: u32, exe: &str) -> bool {
        if exe == PAUSE_EXE {
            return false;
        }
        match &self.selector.cgroup {
            Some(filter) => self
                .proc
                .cgroup(pid)
                .is_ok_and(|text| text.contains(filter.as_str())),
            None => true,
        }
    }

    /// Whether the process is selected, and the map entrypoint it runs (if any).
    fn decide(&self, pid: u32, exe: &str) -> (bool, Option<String>) {
        if !self.candidate(pid, exe) {
            return (false, None);
        }
        let selector = &self.selector;
        let entrypoint = self.runs_entrypoint(pid, exe);
        let selected = selector.pids.contains(&pid)
            || (selector.entrypoints && entrypoint.is_some())
            || (selector.cgroup.is_some() && !selector.entrypoints && selector.pids.is_empty());
        if selected {
            debug!(pid, exe, ?entrypoint, "app process selected");
        }
        (selected, entrypoint)
    }

    /// The map entrypoint the process runs, by path inside the process's root or by inode (an entrypoint
    /// given as a symlink, `/usr/bin/python3` -> `python3.11`; or a process in a chroot or another mount
    /// namespace, whose exe link text is a path from linkguard's root).
    fn runs_entrypoint(&self, pid: u32, exe: &str) -> Option<String> {
        if let Some(entrypoint) = self.entrypoints.get(exe) {
            return Some(entrypoint.clone());
        }
        let running = self.proc.exe_id(pid).ok()?;
        self.entrypoints
            .iter()
            .find(|entrypoint| {
                FileId::of_path(&self.proc.in_root(pid, entrypoint)).is_ok_and(|id| id == running)
            })
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use std::process::{Command, Stdio};

    use super::*;

    struct Sleeper(std::process::Child);
    impl Drop for Sleeper {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn sleeper() -> Sleeper {
        Sleeper(
            Command::new("sleep")
                .arg("30")
                .stdin(Stdio::null())
                .spawn()
                .unwrap(),
        )
    }

    fn exe_of(pid: u32) -> String {
        ProcFs::default().exe(pid).unwrap().0
    }

    #[test]
    fn explicit_pid_is_selected_and_reported_with_its_namespace_pid() {
        let child = sleeper();
        let pid = child.0.id();
        let selector = Selector {
            pids: [pid].into(),
            ..Selector::default()
        };
        let mut discovery = Discovery::new(ProcFs::default(), selector, []);
        let found = discovery.scan(&|_| false).unwrap();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].pid, pid);
        assert_eq!(found[0].ns_pid, pid, "same pid namespace here");
        assert_eq!(found[0].exe, exe_of(pid));
        assert!(found[0].exe_id.is_some());
    }

    #[test]
    fn entrypoint_selection_finds_processes_of_that_executable_and_never_linkguard_itself() {
        let a = sleeper();
        let b = sleeper();
        let exe = exe_of(a.0.id());
        let selector = Selector {
            entrypoints: true,
            ..Selector::default()
        };
        // Our own executable is also an entrypoint here: it must still be excluded.
        let own = exe_of(std::process::id());
        let mut discovery = Discovery::new(ProcFs::default(), selector, [exe, own]);
        let pids: BTreeSet<u32> = discovery
            .scan(&|_| false)
            .unwrap()
            .iter()
            .map(|p| p.pid)
            .collect();
        assert!(
            pids.contains(&a.0.id()) && pids.contains(&b.0.id()),
            "{pids:?}"
        );
        assert!(!pids.contains(&std::process::id()));
    }

    #[test]
    fn cgroup_filter_excludes_processes_of_other_cgroups() {
        let a = sleeper();
        let exe = exe_of(a.0.id());
        let selector = Selector {
            entrypoints: true,
            cgroup: Some("no-such-container-3f9a".into()),
            ..Selector::default()
        };
        let mut discovery = Discovery::new(ProcFs::default(), selector, [exe]);
        assert!(discovery.scan(&|_| false).unwrap().is_empty());

        // Our cgroup's own line selects the sleeper (a child stays in its parent's cgroup).
        let own = ProcFs::default().cgroup(std::process::id()).unwrap();
        let path = own
            .lines()
            .next()
            .unwrap()
            .rsplit(':')
            .next()
            .unwrap()
            .to_owned();
        let selector = Selector {
            cgroup: Some(path),
            ..Selector::default()
        };
        let mut discovery = Discovery::new(ProcFs::default(), selector, []);
        let pids: Vec<u32> = discovery
            .scan(&|_| false)
            .unwrap()
            .iter()
            .map(|p| p.pid)
            .collect();
        assert!(pids.contains(&a.0.id()), "{pids:?}");
    }

    #[test]
    fn children_of_followed_processes_are_followed() {
        // sh runs sleep as a child (two commands, so sh cannot exec the last one in place).
        let mut sh = Command::new("sh")
            .args(["-c", "sleep 30; true"])
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let sh_pid = sh.id();
        let selector = Selector {
            pids: [sh_pid].into(),
            follow_children: true,
            ..Selector::default()
        };
        let mut discovery = Discovery::new(ProcFs::default(), selector, []);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut pids = Vec::new();
        while std::time::Instant::now() < deadline {
            pids = discovery
                .scan(&|pid| pid == sh_pid)
                .unwrap()
                .iter()
                .map(|p| p.pid)
                .collect();
            if pids.len() >= 2 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        // Kill sh's children by pid (from the kernel's list), then sh.
        let children = std::fs::read_to_string(format!("/proc/{sh_pid}/task/{sh_pid}/children"))
            .unwrap_or_default();
        for child in children
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
        {
            // SAFETY: kill(2) with a pid we started (sh's own child) and a valid signal number.
            unsafe { libc::kill(child, libc::SIGKILL) };
        }
        let _ = sh.kill();
        let _ = sh.wait();
        assert!(
            pids.contains(&sh_pid) && pids.len() == 2,
            "sh and its sleep child: {pids:?}"
        );
    }
}
