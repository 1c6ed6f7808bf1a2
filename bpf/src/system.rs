// SPDX-License-Identifier: Apache-2.0
//! What this crate asks of the system outside BPF: pid namespace identities, the memlock rlimit, and
//! kernel feature probes (for `linkguard doctor`).

use std::{os::unix::fs::MetadataExt as _, path::PathBuf};

use aya::{
    programs::ProgramType,
    sys::{BpfHelper, UProbeMultiFeature, is_helper_supported, is_uprobe_multi_supported},
};
use tracing::debug;

use crate::error::{BpfError, Result};

/// A pid namespace, identified the way `bpf_get_ns_current_pid_tgid` expects: the device and inode of
/// its nsfs file (`/proc/<pid>/ns/pid`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PidNamespace {
    /// The nsfs device, in the kernel's internal `dev_t` encoding (`MKDEV(major, minor)`).
    pub dev: u64,
    /// The namespace's inode number.
    pub ino: u64,
}

impl PidNamespace {
    /// The pid namespace `pid` (as seen from this process) lives in.
    pub fn of_process(pid: u32) -> Result<Self> {
        Self::of_path(PathBuf::from(format!("/proc/{pid}/ns/pid")))
    }

    /// This process's own pid namespace.
    pub fn of_self() -> Result<Self> {
        Self::of_path(PathBuf::from("/proc/self/ns/pid"))
    }

    fn of_path(path: PathBuf) -> Result<Self> {
        let metadata = std::fs::metadata(&path)
            .map_err(|source| BpfError::PidNamespaceUnreadable { path, source })?;
        Ok(Self {
            dev: kernel_dev(metadata.dev()),
            ino: metadata.ino(),
        })
    }
}

/// stat(2) reports `st_dev` in the userspace encoding (`new_encode_dev`); the helper compares against the
/// superblock's internal `s_dev` (`MKDEV(major, minor)`, 20 minor bits, kernel/bpf/helpers.c `ns_match`).
/// The two agree for the small anonymous minors nsfs gets in practice; converting keeps it exact.
fn kernel_dev(st_dev: u64) -> u64 {
    let major = u64::from(libc::major(st_dev));
    let minor = u64::from(libc::minor(st_dev));
    (major << 20) | minor
}

/// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK; newer ones use the memory cgroup and some
/// sandboxes forbid raising the limit, so a failure here is only logged.
pub(crate) fn raise_memlock_best_effort() {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit reads one valid, initialised rlimit struct and has no other memory effects.
    let ret = unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) };
    if ret != 0 {
        debug!(error = %std::io::Error::last_os_error(), "RLIMIT_MEMLOCK not raised (not needed on Linux >= 5.11)");
    }
}

/// What the running kernel offers this crate; each field is a live probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelSupport {
    /// `BPF_TRACE_UPROBE_MULTI` links can be created (Linux >= 6.6).
    pub uprobe_multi: bool,
    /// A pid given to a uprobe.multi link selects the whole process, not one thread (the kernel fix
    /// aya probes for); needed for correct [`Scope::OneProcess`](crate::Scope::OneProcess) counts.
    pub uprobe_multi_process_scope: bool,
    /// `bpf_get_attach_cookie` is available to uprobe programs (Linux >= 5.15).
    pub attach_cookie: bool,
    /// `bpf_get_ns_current_pid_tgid` is available to uprobe programs (the pid namespace filter).
    pub ns_current_pid_tgid: bool,
}

impl KernelSupport {
    /// Probes the running kernel (needs the same privileges as loading: CAP_BPF + CAP_PERFMON).
    pub fn probe() -> Result<Self> {
        let multi = |feature, name| {
            is_uprobe_multi_supported(feature).map_err(|source| BpfError::FeatureProbe {
                feature: name,
                source,
            })
        };
        let helper = |helper, name| {
            is_helper_supported(ProgramType::KProbe, helper).map_err(|error| {
                BpfError::FeatureProbe {
                    feature: name,
                    source: std::io::Error::other(error),
                }
            })
        };
        Ok(Self {
            uprobe_multi: multi(UProbeMultiFeature::LinkCreation, "uprobe.multi links")?,
            uprobe_multi_process_scope: multi(
                UProbeMultiFeature::ProcessScopedPidFilter,
                "process-scoped uprobe.multi pid filter",
            )?,
            attach_cookie: helper(
                BpfHelper::BPF_FUNC_get_attach_cookie,
                "bpf_get_attach_cookie",
            )?,
            ns_current_pid_tgid: helper(
                BpfHelper::BPF_FUNC_get_ns_current_pid_tgid,
                "bpf_get_ns_current_pid_tgid",
            )?,
        })
    }

    /// Everything [`Probes`](crate::Probes) relies on is there.
    pub fn is_complete(&self) -> bool {
        self.uprobe_multi
            && self.uprobe_multi_process_scope
            && self.attach_cookie
            && self.ns_current_pid_tgid
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn st_dev_is_converted_to_the_kernel_encoding() {
        // Userspace makedev(0, 21) == 21 == MKDEV(0, 21): small anonymous minors are encoded the same.
        assert_eq!(kernel_dev(libc::makedev(0, 21)), 21);
        // Above 255 the encodings diverge: userspace splits the minor, the kernel keeps 20 contiguous bits.
        assert_eq!(kernel_dev(libc::makedev(0, 0x1234)), 0x1234);
        assert_eq!(kernel_dev(libc::makedev(8, 1)), (8 << 20) | 1);
    }

    #[test]
    fn own_pid_namespace_matches_proc_self() {
        let ns = PidNamespace::of_self().unwrap();
        let same = PidNamespace::of_process(std::process::id()).unwrap();
        assert_eq!(ns, same);
        assert_ne!(ns.ino, 0);
    }

    #[test]
    fn missing_process_is_a_clear_error() {
        // Pid numbers are capped by /proc/sys/kernel/pid_max (<= 4 Mi), so this one cannot exist.
        let err = PidNamespace::of_process(u32::MAX).unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("/proc/{}/ns/pid", u32::MAX)),
            "{err}"
        );
    }
}
