// SPDX-License-Identifier: Apache-2.0
//! `linkguard doctor`: can this process probe functions with eBPF uprobes here, and if not, what to change.
//!
//! Each check reads one fact (kernel release, `CapEff`, BTF, a kernel feature probe) and decides ok,
//! warn or fail; the last one, `test_attach`, does what `observe` does on a real target: it loads
//! linkguard's BPF program, attaches a uprobe.multi link to [`linkguard_doctor_probe_target`] in
//! linkguard's own binary (`/proc/self/exe`, at the file offset our ELF code computes), calls the
//! function [`TEST_CALLS`] times, checks the counter says exactly that, detaches, and checks that calls
//! after the detach are no longer counted. Probing can work ([`Report::can_probe`]) when no check
//! failed; warnings name limits that do not stop probing.
//!
//! What is needed, and why (each measured on the project's machine kind; `tests/doctor.rs` re-checks the first two):
//! - Linux 6.6+ for `BPF_TRACE_UPROBE_MULTI` links (one link per file, BPF cookie = function index);
//! - CAP_BPF (maps, program load) and CAP_PERFMON (tracing program types, uprobe links); CAP_SYS_ADMIN
//!   covers both (`bpf_capable()` / `perfmon_capable()` in include/linux/capability.h);
//! - CAP_SYS_PTRACE to open `/proc/<pid>/root` of another user's process (`ptrace_may_access`);
//! - CAP_SYS_ADMIN is not needed: only per-function perf-event uprobes, which linkguard does not use,
//!   need it on the project's kernel.
//!
//! The kernel-touching parts sit behind [`System`], so the decisions are unit-tested without privileges.
//!
//! # JSON (`linkguard doctor --format json`), report version 1
//!
//! One object (here from a root process limited to CAP_BPF + CAP_PERFMON; `checks` abridged). Fields are
//! added, never renamed or removed, within a report version.
//!
//! ```json
//! {
//!   "reportVersion": 1,
//!   "linkguardVersion": "0.1.0",
//!   "canProbe": true,
//!   "kernel": { "release": "6.18.44-fc-v769", "version": "6.18.44" },
//!   "capabilities": {
//!     "capEff": "0x000000c000000000",
//!     "euid": 0,
//!     "held": ["CAP_BPF", "CAP_PERFMON"],
//!     "needed": ["CAP_BPF", "CAP_PERFMON"],
//!     "missing": []
//!   },
//!   "testAttach": {
//!     "function": "linkguard_doctor_probe_target",
//!     "target": "/proc/self/exe",
//!     "offset": 8132976,
//!     "offsetSource": "symtab",
//!     "calls": 1000,
//!     "counted": 1000,
//!     "countedAfterDetach": 0,
//!     "attachMicros": 9643,
//!     "detachMicros": 23352
//!   },
//!   "checks": [
//!     { "name": "kernel", "status": "ok", "detail": "Linux 6.18.44-fc-v769 (uprobe.multi needs 6.6+)" },
//!     { "name": "cap_sys_ptrace", "status": "warn", "detail": "missing: only processes of uid 0 can be probed",
//!       "fix": "add CAP_SYS_PTRACE to the container's securityContext.capabilities.add if ..." },
//!     { "name": "test_attach", "status": "ok",
//!       "detail": "1000/1000 calls counted, 0 after detach; linkguard_doctor_probe_target at ..." }
//!   ]
//! }
//! ```
//!
//! - `kernel.release` is `null` when unreadable, `kernel.version` (`MAJOR.MINOR.PATCH`) when unparsable.
//! - `capabilities.capEff` is `null` (and `held` empty) when `/proc/self/status` is unreadable; `held` lists
//!   only the four capabilities doctor looks at; `missing` lists the `needed` ones not covered (CAP_SYS_ADMIN
//!   covers both).
//! - `testAttach` is `null` when the test attach did not get as far as counting (its check says why);
//!   `offsetSource` is `symtab` or `dynsym` (our ELF code) or `proc-maps` (a stripped binary: the offset
//!   of the function's address in `/proc/self/maps`). `offset` is a file offset in bytes.
//! - `checks[].name` is one of `kernel`, `btf`, `cap_bpf`, `cap_perfmon`, `cap_sys_ptrace`, `cap_sys_admin`,
//!   `uprobe_multi`, `uprobe_multi_pid_scope`, `bpf_cookie`, `ns_current_pid_tgid`, `test_attach`, in that
//!   order; `status` is `ok`, `warn` or `fail`; `fix` is present for `warn` and `fail` only.

mod checks;
mod self_test;
#[cfg(test)]
mod tests;

use std::{fmt::Write as _, io, path::Path};

use linkguard_bpf::{BpfError, KernelSupport};
use serde::Serialize;

pub use self::checks::{Capabilities, KernelVersion, ProcessStatus};
pub use self::self_test::{
    OffsetSource, SelfTestError, SelfTestOutcome, TARGET_FUNCTION, TEST_CALLS,
    linkguard_doctor_probe_target,
};

/// The version of the JSON report's shape.
pub const REPORT_VERSION: u32 = 1;

/// How one check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Fine.
    Ok,
    /// Probing works, with a limit worth fixing.
    Warn,
    /// Probing cannot work until this is fixed.
    Fail,
}

impl Status {
    /// The word printed and serialized.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Warn => "warn",
            Self::Fail => "fail",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Stable identifier (see the module doc).
    pub name: &'static str,
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// What to change; set for `warn` and `fail`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    fn ok(name: &'static str, detail: impl Into<String>) -> Self {
        Self {
            name,
            status: Status::Ok,
            detail: detail.into(),
            fix: None,
        }
    }

    fn warn(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            name,
            status: Status::Warn,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }

    fn fail(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            name,
            status: Status::Fail,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

/// The kernel as reported by `/proc/sys/kernel/osrelease`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KernelFacts {
    pub release: Option<String>,
    /// `MAJOR.MINOR.PATCH` parsed from the release.
    pub version: Option<String>,
}

/// The capabilities doctor looks at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CapabilityFacts {
    /// `CapEff` of `/proc/self/status`, `0x` and 16 hex digits.
    pub cap_eff: Option<String>,
    pub euid: Option<u32>,
    pub held: Vec<&'static str>,
    pub needed: Vec<&'static str>,
    pub missing: Vec<&'static str>,
}

/// What the test attach measured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TestAttachFacts {
    pub function: &'static str,
    pub target: String,
    pub offset: u64,
    pub offset_source: OffsetSource,
    pub calls: u64,
    pub counted: u64,
    pub counted_after_detach: u64,
    pub attach_micros: u64,
    pub detach_micros: u64,
}

/// The whole answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub report_version: u32,
    pub linkguard_version: &'static str,
    /// No check failed.
    pub can_probe: bool,
    pub kernel: KernelFacts,
    pub capabilities: CapabilityFacts,
    pub test_attach: Option<TestAttachFacts>,
    pub checks: Vec<Check>,
}

impl Report {
    /// The report as pretty JSON, newline-terminated.
    pub fn to_json(&self) -> String {
        // Serializing plain structs with string keys cannot fail; fall back to an empty object regardless.
        let mut json = serde_json::to_string_pretty(self).unwrap_or_else(|_| "{}".to_owned());
        json.push('\n');
        json
    }

    /// The checks that failed.
    pub fn failures(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| c.status == Status::Fail)
    }
}

/// Where the facts come from: the running kernel ([`LiveSystem`]) or a test double.
pub trait System {
    /// `/proc/sys/kernel/osrelease`, trimmed.
    fn kernel_release(&self) -> io::Result<String>;
    /// The text of `/proc/self/status`.
    fn process_status(&self) -> io::Result<String>;
    /// Whether `/sys/kernel/btf/vmlinux` exists.
    fn btf_vmlinux(&self) -> io::Result<bool>;
    /// The kernel feature probes of linkguard-bpf.
    fn kernel_support(&self) -> Result<KernelSupport, BpfError>;
    /// The real load, attach, call, count, detach on this process.
    fn self_test(&self, calls: u64) -> Result<SelfTestOutcome, SelfTestError>;
}

/// The running kernel and this process.
#[derive(Debug, Clone, Copy, Default)]
pub struct LiveSystem;

impl System for LiveSystem {
    fn kernel_release(&self) -> io::Result<String> {
        std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_owned())
    }

    fn process_status(&self) -> io::Result<String> {
        std::fs::read_to_string("/proc/self/status")
    }

    fn btf_vmlinux(&self) -> io::Result<bool> {
        Path::new(checks::BTF_VMLINUX).try_exists()
    }

    fn kernel_support(&self) -> Result<KernelSupport, BpfError> {
        KernelSupport::probe()
    }

    fn self_test(&self, calls: u64) -> Result<SelfTestOutcome, SelfTestError> {
        self_test::run(calls)
    }
}

/// Runs every check against the running kernel and this process.
pub fn run_checks() -> Report {
    run_checks_with(&LiveSystem)
}

/// Runs every check against `system`.
pub fn run_checks_with(system: &dyn System) -> Report {
    let release = system.kernel_release();
    let status = system.process_status().ok();
    let status = status.as_deref().map(ProcessStatus::parse);
    let caps = status.as_ref().and_then(|s| s.cap_eff).map(Capabilities);
    let euid = status.as_ref().and_then(|s| s.euid);
    let support = system.kernel_support();
    let self_test = system.self_test(TEST_CALLS);

    let version = release.as_deref().ok().and_then(KernelVersion::parse);
    let cap_fix = caps.and_then(|c| checks::capability_fix(&c.missing(), euid));

    let mut checks = vec![
        checks::kernel(&release, support.as_ref().ok()),
        checks::btf(&system.btf_vmlinux()),
    ];
    checks.extend(checks::capabilities(caps, euid));
    checks.extend(checks::features(&support, cap_fix.as_deref()));
    checks.push(checks::test_attach(
        &self_test,
        TEST_CALLS,
        cap_fix.as_deref(),
        support.as_ref().ok(),
    ));

    Report {
        report_version: REPORT_VERSION,
        linkguard_version: crate::VERSION,
        can_probe: checks.iter().all(|c| c.status != Status::Fail),
        kernel: KernelFacts {
            release: release.ok(),
            version: version.map(|v| v.to_string()),
        },
        capabilities: CapabilityFacts {
            cap_eff: caps.map(|c| format!("{:#018x}", c.0)),
            euid,
            held: caps.map(|c| c.held()).unwrap_or_default(),
            needed: checks::NEEDED.to_vec(),
            missing: caps.map(|c| c.missing()).unwrap_or_default(),
        },
        test_attach: self_test.ok().map(|o| TestAttachFacts {
            function: TARGET_FUNCTION,
            target: self_test::TARGET.to_owned(),
            offset: o.offset,
            offset_source: o.offset_source,
            calls: o.calls,
            counted: o.counted,
            counted_after_detach: o.counted_after_detach,
            attach_micros: o.attach.as_micros().try_into().unwrap_or(u64::MAX),
            detach_micros: o.detach.as_micros().try_into().unwrap_or(u64::MAX),
        }),
        checks,
    }
}

/// The report for people: a verdict line, an aligned table, then each distinct fix once with the
/// checks that need it.
pub fn render_text(report: &Report) -> String {
    let mut out = String::new();
    let failed = report.failures().count();
    let _ = if report.can_probe {
        writeln!(out, "linkguard doctor: probing can work")
    } else {
        writeln!(
            out,
            "linkguard doctor: probing CANNOT work ({failed} check{} failed)",
            if failed == 1 { "" } else { "s" }
        )
    };
    let width = report
        .checks
        .iter()
        .map(|c| c.name.len())
        .max()
        .unwrap_or(0)
        .max("CHECK".len());
    let _ = writeln!(out, "{:width$}  STATUS  DETAIL", "CHECK");
    for check in &report.checks {
        let _ = writeln!(
            out,
            "{:width$}  {:6}  {}",
            check.name,
            check.status.as_str(),
            check.detail
        );
    }
    // One fix often serves several checks (missing capabilities fail cap_*, stop the feature probes and
    // the test attach): print it once with the checks it fixes, those fixing a failure first.
    let mut fixes: Vec<(Status, &str, Vec<&str>)> = Vec::new();
    for check in report.checks.iter().filter(|c| c.status != Status::Ok) {
        let Some(fix) = check.fix.as_deref() else {
            continue;
        };
        match fixes.iter_mut().find(|(_, f, _)| *f == fix) {
            Some((status, _, names)) => {
                names.push(check.name);
                if check.status == Status::Fail {
                    *status = Status::Fail;
                }
            }
            None => fixes.push((check.status, fix, vec![check.name])),
        }
    }
    fixes.sort_by_key(|(status, _, _)| *status != Status::Fail);
    if !fixes.is_empty() {
        let _ = writeln!(out, "\nto fix:");
        for (status, fix, names) in fixes {
            let _ = writeln!(out, "  [{}] {}: {fix}", status.as_str(), names.join(", "));
        }
    }
    out
}
