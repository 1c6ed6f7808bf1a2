// SPDX-License-Identifier: Apache-2.0
//! The crate's one error type. Variants are named for what failed; messages name the input (file,
//! offset, cookie, pid) and what the user can do about it.

use std::{io, path::PathBuf};

use aya::{
    EbpfError,
    maps::MapError,
    programs::{ProgramError, uprobe::UProbeError},
};

/// The result type of this crate.
pub type Result<T, E = BpfError> = std::result::Result<T, E>;

/// Everything that can go wrong loading, attaching, detaching and reading linkguard's BPF program.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BpfError {
    /// The crate was built with `LINKGUARD_BPF_STUB=1`: the embedded object is empty.
    #[error(
        "this build embeds a stub BPF object (LINKGUARD_BPF_STUB=1 at build time); rebuild with clang-19 and \
         libbpf-dev installed"
    )]
    StubObject,

    /// `LoadOptions::max_probes` is 0 or larger than the crate supports.
    #[error("invalid load options: max_probes must be between 1 and {limit}, got {max_probes}")]
    InvalidMaxProbes {
        /// The requested value.
        max_probes: u32,
        /// The largest accepted value.
        limit: u32,
    },

    /// `LoadOptions::wakeup_every` is 0.
    #[error("invalid load options: wakeup_every must be at least 1")]
    InvalidWakeupEvery,

    /// Creating the maps or parsing the embedded object failed (before the verifier ran).
    #[error(
        "loading linkguard's BPF object failed: {source}; linkguard needs CAP_BPF and CAP_PERFMON (or \
         CAP_SYS_ADMIN) and a kernel with BTF"
    )]
    ObjectLoad {
        /// aya's error.
        #[source]
        source: Box<EbpfError>,
    },

    /// The kernel's verifier rejected the program; its log is kept.
    #[error("the kernel rejected BPF program {program} ({source}); verifier log:\n{verifier_log}")]
    ProgramRejected {
        /// The program's name.
        program: &'static str,
        /// The verifier's log (may be empty when the failure happened before verification).
        verifier_log: String,
        /// aya's error.
        #[source]
        source: Box<ProgramError>,
    },

    /// The embedded object lacks a program or map this crate expects: the object and the crate disagree.
    #[error(
        "the embedded BPF object has no {kind} named {name}; the object does not match this crate"
    )]
    ObjectMismatch {
        /// "program" or "map".
        kind: &'static str,
        /// The missing name.
        name: &'static str,
    },

    /// Reading or writing a BPF map failed.
    #[error("BPF map {map}: {operation} failed: {source}")]
    MapAccess {
        /// The map's name.
        map: &'static str,
        /// What was done.
        operation: &'static str,
        /// aya's error.
        #[source]
        source: Box<MapError>,
    },

    /// The attach target is not an absolute path.
    #[error(
        "attach target {path} is not an absolute path; pass /proc/<pid>/root/<path>, /proc/<pid>/exe or \
         /proc/<pid>/map_files/<range>"
    )]
    TargetNotAbsolute {
        /// The path given.
        path: PathBuf,
    },

    /// The attach target cannot be opened (stat) by this process.
    #[error(
        "attach target {path} cannot be opened: {source}; a file of another container must be opened through \
         /proc/<pid>/root/<path>, /proc/<pid>/exe or /proc/<pid>/map_files/<range> (CAP_SYS_PTRACE for another \
         user's process)"
    )]
    TargetUnreadable {
        /// The path given.
        path: PathBuf,
        /// The error of stat(2).
        #[source]
        source: io::Error,
    },

    /// The attach target is a directory, device, socket...: uprobes need a regular file.
    #[error("attach target {path} is not a regular file")]
    TargetNotRegularFile {
        /// The path given.
        path: PathBuf,
    },

    /// `attach` was called with no points.
    #[error("no attach points given for {path}")]
    NoAttachPoints {
        /// The path given.
        path: PathBuf,
    },

    /// An offset lies past the end of the file: it belongs to another build of the file.
    #[error(
        "offset {offset:#x} (cookie {cookie}) is beyond the end of {path} ({size} bytes): the offset is stale or \
         for a different build of the file"
    )]
    OffsetBeyondFile {
        /// The file.
        path: PathBuf,
        /// The offending offset.
        offset: u64,
        /// Its cookie.
        cookie: u32,
        /// The file's size.
        size: u64,
    },

    /// The same offset appears twice in one attach: every call would be counted twice.
    #[error(
        "offset {offset:#x} of {path} is given twice (cookies {first_cookie} and {second_cookie}); every call \
         would be counted twice"
    )]
    DuplicateOffset {
        /// The file.
        path: PathBuf,
        /// The repeated offset.
        offset: u64,
        /// The cookie of its first occurrence.
        first_cookie: u32,
        /// The cookie of its second occurrence.
        second_cookie: u32,
    },

    /// A cookie is not below `max_probes`: the BPF program would drop its calls.
    #[error(
        "cookie {cookie} is out of range: these probes were loaded with max_probes = {max_probes}"
    )]
    CookieOutOfRange {
        /// The cookie.
        cookie: u32,
        /// The configured number of counters.
        max_probes: u32,
    },

    /// `Scope::OneProcess(0)`.
    #[error(
        "pid 0 is not a process; use Scope::AllProcesses to probe every process mapping the file"
    )]
    InvalidPid,

    /// The kernel refused the uprobe.multi link.
    #[error("attaching {points} uprobe(s) to {path} failed{}: {hint}", errno_suffix(*.errno))]
    AttachFailed {
        /// The file.
        path: PathBuf,
        /// How many offsets were in the link.
        points: usize,
        /// The errno of bpf(BPF_LINK_CREATE), when there is one.
        errno: Option<i32>,
        /// What the errno usually means here and what to do.
        hint: &'static str,
        /// aya's error.
        #[source]
        source: Box<ProgramError>,
    },

    /// Closing the link failed (the handle was not from this `Probes`, or the kernel refused).
    #[error("detaching the uprobe link on {path} failed: {source}")]
    DetachFailed {
        /// The file of the link.
        path: PathBuf,
        /// aya's error.
        #[source]
        source: Box<ProgramError>,
    },

    /// `/proc/<pid>/ns/pid` could not be read.
    #[error(
        "cannot read the pid namespace of {path}: {source}; is the process alive and visible from here?"
    )]
    PidNamespaceUnreadable {
        /// The nsfs path.
        path: PathBuf,
        /// The error of stat(2).
        #[source]
        source: io::Error,
    },

    /// A kernel feature probe failed (permissions, most of the time).
    #[error("probing the kernel for {feature} failed: {source}")]
    FeatureProbe {
        /// What was probed.
        feature: &'static str,
        /// The error.
        #[source]
        source: io::Error,
    },
}

fn errno_suffix(errno: Option<i32>) -> String {
    match errno {
        Some(errno) => format!(" ({})", io::Error::from_raw_os_error(errno)),
        None => String::new(),
    }
}

/// The errno inside an attach error and what it means for a uprobe.multi link on a file offset
/// (kernel/trace/bpf_trace.c `bpf_uprobe_multi_link_attach` and kernel/events/uprobes.c).
pub(crate) fn attach_hint(error: &ProgramError) -> (Option<i32>, &'static str) {
    let errno = match error {
        ProgramError::SyscallError(syscall) => syscall.io_error.raw_os_error(),
        ProgramError::IOError(io_error) => io_error.raw_os_error(),
        ProgramError::UProbeError(UProbeError::MultiLinkNotSupported) => {
            return (
                None,
                "this kernel has no uprobe.multi links (Linux >= 6.6 with CONFIG_UPROBES and CONFIG_BPF_EVENTS)",
            );
        }
        ProgramError::UProbeError(UProbeError::FileError { io_error, .. }) => {
            io_error.raw_os_error()
        }
        _ => None,
    };
    let hint = match errno {
        Some(libc::EPERM | libc::EACCES) => {
            "permission denied: uprobe.multi links need CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN), and \
             CAP_SYS_PTRACE to open /proc/<pid>/root of another user's process"
        }
        Some(libc::ENOENT | libc::ENOTDIR) => {
            "the file does not exist in this mount namespace: open a container's file through \
             /proc/<pid>/root/<path>, /proc/<pid>/exe or /proc/<pid>/map_files/<range>"
        }
        Some(libc::EINVAL) => {
            "the kernel rejected an offset or the file: offsets must be FILE offsets of instructions (symbol \
             address - PT_LOAD p_vaddr + p_offset) inside a regular file"
        }
        Some(libc::ESRCH) => {
            "no such process: it exited, or the pid is not from this process's pid namespace (the kernel resolves \
             it with find_vpid)"
        }
        Some(libc::E2BIG) => {
            "too many offsets in one link: split the points into several attach calls"
        }
        Some(libc::EOPNOTSUPP) => {
            "this kernel has no uprobe.multi links (Linux >= 6.6 with CONFIG_UPROBES and CONFIG_BPF_EVENTS)"
        }
        _ => "see the kernel's error above",
    };
    (errno, hint)
}

#[cfg(test)]
mod tests {
    use aya::sys::SyscallError;

    use super::*;

    fn syscall_error(errno: i32) -> ProgramError {
        ProgramError::SyscallError(SyscallError {
            call: "bpf_link_create",
            io_error: io::Error::from_raw_os_error(errno),
        })
    }

    #[test]
    fn attach_errnos_get_a_hint_that_names_the_fix() {
        let (errno, hint) = attach_hint(&syscall_error(libc::EPERM));
        assert_eq!(errno, Some(libc::EPERM));
        assert!(hint.contains("CAP_BPF"), "{hint}");
        assert!(
            attach_hint(&syscall_error(libc::ENOENT))
                .1
                .contains("/proc/<pid>/root")
        );
        assert!(
            attach_hint(&syscall_error(libc::EINVAL))
                .1
                .contains("FILE offsets")
        );
        assert!(
            attach_hint(&syscall_error(libc::ESRCH))
                .1
                .contains("no such process")
        );
    }

    #[test]
    fn attach_failed_message_names_file_errno_and_hint() {
        let source = syscall_error(libc::ENOENT);
        let (errno, hint) = attach_hint(&source);
        let error = BpfError::AttachFailed {
            path: "/proc/1/root/app".into(),
            points: 3,
            errno,
            hint,
            source: Box::new(source),
        };
        let message = error.to_string();
        assert!(
            message.starts_with("attaching 3 uprobe(s) to /proc/1/root/app failed (No such file"),
            "{message}"
        );
        assert!(message.contains("/proc/<pid>/root/<path>"), "{message}");
    }
}
