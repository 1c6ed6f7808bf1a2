// SPDX-License-Identifier: Apache-2.0
//! The decisions of `linkguard doctor`: parsing what the kernel reports (release, `/proc/self/status`)
//! and turning each fact into a [`Check`]. Nothing here touches the kernel.

use std::{fmt, io};

use linkguard_bpf::{BpfError, KernelSupport};

use super::{Check, SelfTestError, SelfTestOutcome, TARGET_FUNCTION, self_test};

/// Kernel BTF; linkguard's program uses no CO-RE relocations, so it loads without it.
pub(super) const BTF_VMLINUX: &str = "/sys/kernel/btf/vmlinux";

// Capability numbers, include/uapi/linux/capability.h.
const CAP_SYS_PTRACE: u32 = 19;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// The capabilities doctor reports, in the order it reports them.
const REPORTED: [(u32, &str); 4] = [
    (CAP_BPF, "CAP_BPF"),
    (CAP_PERFMON, "CAP_PERFMON"),
    (CAP_SYS_PTRACE, "CAP_SYS_PTRACE"),
    (CAP_SYS_ADMIN, "CAP_SYS_ADMIN"),
];

/// What uprobe.multi probing needs (CAP_SYS_ADMIN covers both).
pub(super) const NEEDED: [&str; 2] = ["CAP_BPF", "CAP_PERFMON"];

/// The first kernel with `BPF_TRACE_UPROBE_MULTI` links (Linux 6.6, "bpf: Add multi uprobe link").
pub(super) const UPROBE_MULTI_SINCE: KernelVersion = KernelVersion {
    major: 6,
    minor: 6,
    patch: 0,
};

const KERNEL_FIX: &str = "kernel 6.6+ needed for uprobe.multi (with CONFIG_UPROBES=y and CONFIG_BPF_EVENTS=y): \
                          run the workload on nodes with a newer kernel";
const BUG_FIX: &str = "this is a linkguard bug: report it with the output of `linkguard doctor --format json` \
                       and `uname -a`";

/// A kernel release's leading `MAJOR.MINOR.PATCH`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KernelVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl KernelVersion {
    /// Parses `6.18.44-fc-v769`, `5.15.0-91-generic`, `6.6`, `6.8.0-rc1+`: the leading digits of up to three
    /// dot-separated parts; a missing patch level is 0. `None` when major or minor is not a number.
    pub fn parse(release: &str) -> Option<Self> {
        let mut parts = release.trim().splitn(3, '.');
        let number = |part: Option<&str>| -> Option<u32> {
            let part = part?;
            let end = part
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(part.len());
            part.get(..end)?.parse().ok()
        };
        let major = number(parts.next())?;
        let minor = number(parts.next())?;
        let patch = number(parts.next()).unwrap_or(0);
        Some(Self {
            major,
            minor,
            patch,
        })
    }
}

impl fmt::Display for KernelVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// The lines of `/proc/self/status` doctor reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProcessStatus {
    /// `CapEff`: the effective capability set, one bit per capability number.
    pub cap_eff: Option<u64>,
    /// The effective uid (second field of `Uid:`).
    pub euid: Option<u32>,
}

impl ProcessStatus {
    /// Parses the text of `/proc/<pid>/status` (fs/proc/array.c: `CapEff:\t%016llx`, `Uid:\t%u\t%u\t%u\t%u`).
    pub fn parse(text: &str) -> Self {
        let mut status = Self::default();
        for line in text.lines() {
            if let Some(hex) = line.strip_prefix("CapEff:") {
                status.cap_eff = u64::from_str_radix(hex.trim(), 16).ok();
            } else if let Some(ids) = line.strip_prefix("Uid:") {
                status.euid = ids.split_whitespace().nth(1).and_then(|s| s.parse().ok());
            }
        }
        status
    }
}

/// An effective capability set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities(pub u64);

impl Capabilities {
    fn has(self, cap: u32) -> bool {
        cap < 64 && self.0 & (1u64 << cap) != 0
    }

    /// The reported capabilities this set holds.
    pub fn held(self) -> Vec<&'static str> {
        REPORTED
            .iter()
            .filter(|(cap, _)| self.has(*cap))
            .map(|(_, name)| *name)
            .collect()
    }

    /// The needed capabilities neither held nor covered by CAP_SYS_ADMIN (`bpf_capable()` and
    /// `perfmon_capable()` accept it in their place).
    pub fn missing(self) -> Vec<&'static str> {
        if self.has(CAP_SYS_ADMIN) {
            return Vec::new();
        }
        [(CAP_BPF, NEEDED[0]), (CAP_PERFMON, NEEDED[1])]
            .iter()
            .filter(|(cap, _)| !self.has(*cap))
            .map(|(_, name)| *name)
            .collect()
    }
}

/// The fix for missing capabilities, `None` when nothing is missing. A non-root user does not get
/// capabilities added to its container in its effective set (Kubernetes has no ambient capabilities), so
/// then the fix says how to run with them.
pub(super) fn capability_fix(missing: &[&str], euid: Option<u32>) -> Option<String> {
    if missing.is_empty() {
        return None;
    }
    let short: Vec<&str> = missing
        .iter()
        .map(|m| m.strip_prefix("CAP_").unwrap_or(m))
        .collect();
    let mut fix = format!(
        "add {} to the container's securityContext.capabilities.add (Kubernetes: add: [{}]; docker run: {})",
        missing.join(" and "),
        short
            .iter()
            .map(|s| format!("\"{s}\""))
            .collect::<Vec<_>>()
            .join(", "),
        short
            .iter()
            .map(|s| format!("--cap-add {s}"))
            .collect::<Vec<_>>()
            .join(" "),
    );
    if let Some(uid) = euid.filter(|&uid| uid != 0) {
        fix.push_str(&format!(
            "; linkguard runs as uid {uid}, and added capabilities are not effective for a non-root user: \
             run it as uid 0 (runAsUser: 0) or give the binary file capabilities (setcap {}+ep <binary>)",
            short
                .iter()
                .map(|s| format!("cap_{}", s.to_ascii_lowercase()))
                .collect::<Vec<_>>()
                .join(",")
        ));
    }
    Some(fix)
}

/// `kernel`: the release, against the 6.6 that uprobe.multi needs. A feature probe that found
/// uprobe.multi on an older release (a backport) wins over the number.
pub(super) fn kernel(release: &io::Result<String>, support: Option<&KernelSupport>) -> Check {
    const NAME: &str = "kernel";
    const DECIDES: &str = "nothing to do if the test attach passes: it is the real test";
    let release = match release {
        Ok(release) => release,
        Err(err) => {
            return Check::warn(
                NAME,
                format!("cannot read /proc/sys/kernel/osrelease: {err}"),
                DECIDES,
            );
        }
    };
    match KernelVersion::parse(release) {
        None => Check::warn(
            NAME,
            format!("Linux {release}: release not recognised"),
            DECIDES,
        ),
        Some(version) if version >= UPROBE_MULTI_SINCE => {
            Check::ok(NAME, format!("Linux {release} (uprobe.multi needs 6.6+)"))
        }
        Some(_) if support.is_some_and(|s| s.uprobe_multi) => Check::ok(
            NAME,
            format!("Linux {release}: older than 6.6, but uprobe.multi links work (backported)"),
        ),
        Some(_) => Check::fail(
            NAME,
            format!("Linux {release} is older than 6.6: no uprobe.multi links"),
            KERNEL_FIX,
        ),
    }
}

/// `btf`: kernel BTF is not needed by linkguard's program (no CO-RE) but by the tools used to debug it.
pub(super) fn btf(present: &io::Result<bool>) -> Check {
    const NAME: &str = "btf";
    const FIX: &str = "build the kernel with CONFIG_DEBUG_INFO_BTF=y (bpftool and bpftrace need it to debug probes)";
    match present {
        Ok(true) => Check::ok(NAME, format!("{BTF_VMLINUX} present")),
        Ok(false) => Check::warn(
            NAME,
            format!("{BTF_VMLINUX} absent: linkguard's program does not need it (no CO-RE)"),
            FIX,
        ),
        Err(err) => Check::warn(NAME, format!("cannot check {BTF_VMLINUX}: {err}"), FIX),
    }
}

/// `cap_bpf`, `cap_perfmon`, `cap_sys_ptrace`, `cap_sys_admin`: which the process holds, which it needs.
pub(super) fn capabilities(caps: Option<Capabilities>, euid: Option<u32>) -> Vec<Check> {
    let needed_for = [
        (
            "cap_bpf",
            CAP_BPF,
            "creates the BPF maps and loads the program",
        ),
        (
            "cap_perfmon",
            CAP_PERFMON,
            "loads a tracing program and attaches uprobe links",
        ),
    ];
    let Some(caps) = caps else {
        return ["cap_bpf", "cap_perfmon", "cap_sys_ptrace", "cap_sys_admin"]
            .into_iter()
            .map(|name| {
                Check::warn(
                    name,
                    "unknown: no CapEff line in /proc/self/status",
                    "nothing to do if the test attach passes: it is the real test",
                )
            })
            .collect();
    };
    let fix = capability_fix(&caps.missing(), euid);
    let mut checks: Vec<Check> = needed_for
        .into_iter()
        .map(|(name, cap, what)| {
            if caps.has(cap) {
                Check::ok(name, format!("held ({what})"))
            } else if caps.has(CAP_SYS_ADMIN) {
                Check::ok(name, format!("not held; CAP_SYS_ADMIN covers it ({what})"))
            } else {
                Check::fail(
                    name,
                    format!("missing (it {what})"),
                    fix.clone().unwrap_or_default(),
                )
            }
        })
        .collect();
    checks.push(if caps.has(CAP_SYS_PTRACE) {
        Check::ok(
            "cap_sys_ptrace",
            "held (it opens /proc/<pid>/root of another user's process)",
        )
    } else {
        let who = euid.map_or_else(|| "this user".to_owned(), |uid| format!("uid {uid}"));
        Check::warn(
            "cap_sys_ptrace",
            format!("missing: only processes of {who} can be probed"),
            "add CAP_SYS_PTRACE to the container's securityContext.capabilities.add if the app runs as another \
             user than linkguard",
        )
    });
    // Per-function perf-event uprobes would need it on the project's kernel; linkguard does not use them.
    let why = "not needed by uprobe.multi links (only per-function perf-event uprobes need it)";
    checks.push(Check::ok(
        "cap_sys_admin",
        if caps.has(CAP_SYS_ADMIN) {
            format!("held; {why}")
        } else {
            format!("not held; {why}")
        },
    ));
    checks
}

/// `uprobe_multi`, `uprobe_multi_pid_scope`, `bpf_cookie`, `ns_current_pid_tgid` from the feature probes.
pub(super) fn features(
    support: &Result<KernelSupport, BpfError>,
    cap_fix: Option<&str>,
) -> Vec<Check> {
    let names = [
        "uprobe_multi",
        "uprobe_multi_pid_scope",
        "bpf_cookie",
        "ns_current_pid_tgid",
    ];
    let support = match support {
        Ok(support) => support,
        Err(err) => {
            let fix = cap_fix.unwrap_or(
                "nothing to do if the test attach passes; otherwise run doctor as root to see which feature is missing",
            );
            // One error stops all four probes: say it once.
            return names
                .into_iter()
                .enumerate()
                .map(|(i, name)| {
                    let detail = if i == 0 {
                        format!("not probed: {err}")
                    } else {
                        format!("not probed (see {})", names[0])
                    };
                    Check::warn(name, detail, fix)
                })
                .collect();
        }
    };
    vec![
        if support.uprobe_multi {
            Check::ok(names[0], "BPF_TRACE_UPROBE_MULTI links can be created")
        } else {
            Check::fail(
                names[0],
                "the kernel refuses BPF_TRACE_UPROBE_MULTI links",
                KERNEL_FIX,
            )
        },
        if support.uprobe_multi_process_scope {
            Check::ok(
                names[1],
                "a pid given to a link selects every thread of the process",
            )
        } else {
            Check::warn(
                names[1],
                "a pid given to a link selects only the thread with that id: `observe --pid` misses calls of \
                 other threads",
                "use `observe --all`, or a kernel with commit 46ba0e49b (\"bpf: fix multi-uprobe PID filtering \
                 logic\")",
            )
        },
        if support.attach_cookie {
            Check::ok(
                names[2],
                "bpf_get_attach_cookie available to uprobe programs",
            )
        } else {
            Check::fail(
                names[2],
                "bpf_get_attach_cookie not available to uprobe programs: calls cannot be told apart by function",
                KERNEL_FIX,
            )
        },
        if support.ns_current_pid_tgid {
            Check::ok(
                names[3],
                "available: counts can be limited to one pid namespace in the kernel",
            )
        } else {
            Check::warn(
                names[3],
                "not available to uprobe programs: no in-kernel pid namespace filter, so all-process probes \
                 also count other containers mapping the same files",
                "probe with `observe --pid`, or use a kernel with bpf_get_ns_current_pid_tgid for tracing programs",
            )
        },
    ]
}

/// `test_attach`: the real thing. Exact counts and a clean detach, or why not and what to change.
pub(super) fn test_attach(
    result: &Result<SelfTestOutcome, SelfTestError>,
    calls: u64,
    cap_fix: Option<&str>,
    support: Option<&KernelSupport>,
) -> Check {
    const NAME: &str = "test_attach";
    let outcome = match result {
        Ok(outcome) => outcome,
        Err(err) => return Check::fail(NAME, err.describe(), self_test_fix(err, cap_fix, support)),
    };
    let place = format!(
        "{TARGET_FUNCTION} at {}+{:#x} ({})",
        self_test::TARGET,
        outcome.offset,
        outcome.offset_source.as_str()
    );
    if outcome.calls != calls || outcome.counted != calls {
        return Check::fail(
            NAME,
            format!(
                "{}/{} calls counted (must be exact); {place}",
                outcome.counted, outcome.calls
            ),
            BUG_FIX,
        );
    }
    if outcome.counted_after_detach != 0 {
        return Check::fail(
            NAME,
            format!(
                "{}/{calls} calls counted, but {} more after detach; {place}",
                outcome.counted, outcome.counted_after_detach
            ),
            BUG_FIX,
        );
    }
    Check::ok(
        NAME,
        format!(
            "{}/{calls} calls counted, 0 after detach; {place}; attach {} ms, detach {} ms",
            outcome.counted,
            outcome.attach.as_millis(),
            outcome.detach.as_millis()
        ),
    )
}

/// The most likely fix for a failed test attach: what the other checks found wins over the error.
fn self_test_fix(
    err: &SelfTestError,
    cap_fix: Option<&str>,
    support: Option<&KernelSupport>,
) -> String {
    let SelfTestError::Bpf { source, .. } = err else {
        // Locating the function in our own binary failed: nothing the user configured.
        return BUG_FIX.to_owned();
    };
    if matches!(source, BpfError::StubObject) {
        return "this linkguard binary embeds no BPF program (built with LINKGUARD_BPF_STUB=1): rebuild it \
                with clang-19 and libbpf-dev installed"
            .to_owned();
    }
    if let Some(fix) = cap_fix {
        return fix.to_owned();
    }
    if support.is_some_and(|s| !s.uprobe_multi) {
        return KERNEL_FIX.to_owned();
    }
    if let BpfError::AttachFailed { hint, .. } = source
        && !hint.starts_with("see ")
    {
        return (*hint).to_owned();
    }
    "capabilities and kernel features look fine, so something else refuses: a seccomp profile, an LSM \
     (AppArmor, SELinux) or kernel lockdown can block bpf() and perf_event_open(); allow them for the \
     container (try seccompProfile: Unconfined to confirm)"
        .to_owned()
}
