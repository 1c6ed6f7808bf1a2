// SPDX-License-Identifier: Apache-2.0
//! The decisions of `linkguard doctor` against a fake [`System`], and the offset of the probe target in
//! this test binary against the kernel's own mapping of it (no privileges needed).

use std::{io, os::unix::fs::FileExt as _, time::Duration};

use linkguard_bpf::{BpfError, KernelSupport};
use serde_json::Value;

use super::self_test::{choose_offset, locate, maps_offset};
use super::*;

const ROOT_CAP_EFF: u64 = 0x0000_01ff_ffff_ffff;
/// Docker's default capability set: chown, dac_override, ..., setfcap; none of the four doctor reports.
const DOCKER_DEFAULT_CAP_EFF: u64 = 0x0000_0000_a804_25fb;

fn status_text(cap_eff: u64, uid: u32) -> String {
    format!(
        "Name:\tlinkguard\nUmask:\t0022\nState:\tR (running)\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\n\
         Gid:\t0\t0\t0\t0\nCapInh:\t0000000000000000\nCapPrm:\t{cap_eff:016x}\nCapEff:\t{cap_eff:016x}\n\
         CapBnd:\t000001ffffffffff\nCapAmb:\t0000000000000000\nNoNewPrivs:\t0\n"
    )
}

const FULL_SUPPORT: KernelSupport = KernelSupport {
    uprobe_multi: true,
    uprobe_multi_process_scope: true,
    attach_cookie: true,
    ns_current_pid_tgid: true,
};

fn counted(calls: u64, counted: u64, after_detach: u64) -> SelfTestOutcome {
    SelfTestOutcome {
        offset: 0x7c_1970,
        offset_source: OffsetSource::Symtab,
        calls,
        counted,
        counted_after_detach: after_detach,
        attach: Duration::from_millis(3),
        detach: Duration::from_millis(30),
    }
}

fn eperm() -> io::Error {
    io::Error::from_raw_os_error(libc::EPERM)
}

/// A machine described by its facts; errors are rebuilt on every call (BpfError is not Clone).
struct Fake {
    release: Option<&'static str>,
    status: String,
    btf: bool,
    support: fn() -> Result<KernelSupport, BpfError>,
    self_test: fn(u64) -> Result<SelfTestOutcome, SelfTestError>,
}

impl Fake {
    /// Root on the project's VM: everything works.
    fn root() -> Self {
        Self {
            release: Some("6.18.44-fc-v769"),
            status: status_text(ROOT_CAP_EFF, 0),
            btf: true,
            support: || Ok(FULL_SUPPORT),
            self_test: |calls| Ok(counted(calls, calls, 0)),
        }
    }

    /// `setpriv --reuid=65534 --inh-caps=-all --bounding-set=-all`: every bpf() call gets EPERM.
    fn nobody() -> Self {
        Self {
            status: status_text(0, 65534),
            support: || {
                Err(BpfError::FeatureProbe {
                    feature: "uprobe.multi links",
                    source: eperm(),
                })
            },
            self_test: |_| {
                Err(SelfTestError::Bpf {
                    step: "loading linkguard's BPF program",
                    source: BpfError::TargetUnreadable {
                        path: "/proc/self/exe".into(),
                        source: eperm(),
                    },
                })
            },
            ..Self::root()
        }
    }
}

impl System for Fake {
    fn kernel_release(&self) -> io::Result<String> {
        self.release
            .map(str::to_owned)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }
    fn process_status(&self) -> io::Result<String> {
        Ok(self.status.clone())
    }
    fn btf_vmlinux(&self) -> io::Result<bool> {
        Ok(self.btf)
    }
    fn kernel_support(&self) -> Result<KernelSupport, BpfError> {
        (self.support)()
    }
    fn self_test(&self, calls: u64) -> Result<SelfTestOutcome, SelfTestError> {
        (self.self_test)(calls)
    }
}

fn check<'a>(report: &'a Report, name: &str) -> &'a Check {
    report
        .checks
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no check {name} in {report:#?}"))
}

fn failed(report: &Report) -> Vec<&'static str> {
    report.failures().map(|c| c.name).collect()
}

#[test]
fn cap_eff_and_euid_are_read_from_proc_status() {
    let status = ProcessStatus::parse(&status_text(DOCKER_DEFAULT_CAP_EFF, 65534));
    assert_eq!(status.cap_eff, Some(DOCKER_DEFAULT_CAP_EFF));
    assert_eq!(status.euid, Some(65534));
    // Real, effective, saved, fs: the effective one counts.
    let status = ProcessStatus::parse("Uid:\t1000\t0\t0\t0\nCapEff:\t000001ffffffffff\n");
    assert_eq!(status.euid, Some(0));
    assert_eq!(status.cap_eff, Some(ROOT_CAP_EFF));
    assert_eq!(ProcessStatus::parse("Name:\tx\n"), ProcessStatus::default());
}

#[test]
fn capability_bits_decode_to_names_and_what_is_missing() {
    let root = Capabilities(ROOT_CAP_EFF);
    assert_eq!(
        root.held(),
        ["CAP_BPF", "CAP_PERFMON", "CAP_SYS_PTRACE", "CAP_SYS_ADMIN"]
    );
    assert!(root.missing().is_empty());

    let docker = Capabilities(DOCKER_DEFAULT_CAP_EFF);
    assert!(docker.held().is_empty(), "{:?}", docker.held());
    assert_eq!(docker.missing(), ["CAP_BPF", "CAP_PERFMON"]);

    // --cap-add BPF --cap-add PERFMON: bits 39 and 38.
    let added = Capabilities(DOCKER_DEFAULT_CAP_EFF | 0xc0_0000_0000);
    assert_eq!(added.held(), ["CAP_BPF", "CAP_PERFMON"]);
    assert!(added.missing().is_empty());

    // CAP_SYS_ADMIN (bit 21) alone passes bpf_capable() and perfmon_capable().
    assert!(Capabilities(1 << 21).missing().is_empty());
    assert_eq!(Capabilities(1 << 39).missing(), ["CAP_PERFMON"]);
    assert_eq!(Capabilities(1 << 19).held(), ["CAP_SYS_PTRACE"]);
}

#[test]
fn kernel_releases_parse_and_compare() {
    let v = |s| KernelVersion::parse(s);
    assert_eq!(
        v("6.18.44-fc-v769"),
        Some(KernelVersion {
            major: 6,
            minor: 18,
            patch: 44
        })
    );
    assert_eq!(
        v("5.15.0-91-generic").map(|k| k.to_string()).as_deref(),
        Some("5.15.0")
    );
    assert_eq!(v("6.6").map(|k| k.to_string()).as_deref(), Some("6.6.0"));
    assert_eq!(
        v("6.8.0-rc1+").map(|k| k.to_string()).as_deref(),
        Some("6.8.0")
    );
    assert_eq!(v("6.10").map(|k| k.to_string()).as_deref(), Some("6.10.0"));
    assert_eq!(v("6"), None);
    assert_eq!(v("linux"), None);
    // Numeric, not lexical: 6.10 is newer than 6.6, 6.5.13 older.
    let since = checks::UPROBE_MULTI_SINCE;
    assert!(v("6.10.1").unwrap() > since);
    assert!(v("6.5.13").unwrap() < since);
    assert!(v("6.6.0").unwrap() >= since);
}

#[test]
fn root_on_a_recent_kernel_can_probe() {
    let report = run_checks_with(&Fake::root());
    assert!(report.can_probe, "{report:#?}");
    assert!(
        report
            .checks
            .iter()
            .all(|c| c.status == Status::Ok && c.fix.is_none()),
        "{report:#?}"
    );
    let attach = report.test_attach.as_ref().unwrap();
    assert_eq!((attach.calls, attach.counted), (TEST_CALLS, TEST_CALLS));
    assert!(
        check(&report, "test_attach")
            .detail
            .starts_with("1000/1000 calls counted")
    );
    assert_eq!(report.kernel.version.as_deref(), Some("6.18.44"));
    assert_eq!(
        report.capabilities.cap_eff.as_deref(),
        Some("0x000001ffffffffff")
    );
}

#[test]
fn without_capabilities_probing_fails_naming_them_and_the_fix() {
    let report = run_checks_with(&Fake::nobody());
    assert!(!report.can_probe);
    assert_eq!(failed(&report), ["cap_bpf", "cap_perfmon", "test_attach"]);
    assert_eq!(report.capabilities.missing, ["CAP_BPF", "CAP_PERFMON"]);
    assert!(report.capabilities.held.is_empty());
    assert_eq!(report.test_attach, None);

    let fix = check(&report, "cap_bpf").fix.as_deref().unwrap();
    assert!(
        fix.starts_with(
            "add CAP_BPF and CAP_PERFMON to the container's securityContext.capabilities.add"
        ),
        "{fix}"
    );
    assert!(fix.contains("--cap-add BPF --cap-add PERFMON"), "{fix}");
    // A non-root user does not get added capabilities: the fix says how to run with them.
    assert!(fix.contains("uid 65534"), "{fix}");
    assert!(fix.contains("setcap cap_bpf,cap_perfmon+ep"), "{fix}");
    // The test attach failed for the same reason, so it gets the same fix rather than the raw errno.
    assert_eq!(check(&report, "test_attach").fix.as_deref(), Some(fix));
    assert!(
        check(&report, "test_attach")
            .detail
            .contains("Operation not permitted")
    );
    // Feature probes could not run: a warning, the capabilities carry the failure.
    assert_eq!(check(&report, "uprobe_multi").status, Status::Warn);
    assert!(
        check(&report, "uprobe_multi")
            .detail
            .starts_with("not probed: ")
    );
    assert_eq!(check(&report, "cap_sys_ptrace").status, Status::Warn);
    assert_eq!(check(&report, "cap_sys_admin").status, Status::Ok);
}

#[test]
fn cap_sys_admin_covers_bpf_and_perfmon() {
    let fake = Fake {
        status: status_text(1 << 21, 0),
        ..Fake::root()
    };
    let report = run_checks_with(&fake);
    assert!(report.can_probe, "{report:#?}");
    assert!(
        check(&report, "cap_bpf")
            .detail
            .contains("CAP_SYS_ADMIN covers it")
    );
    assert_eq!(check(&report, "cap_sys_ptrace").status, Status::Warn);
}

#[test]
fn one_missing_capability_is_named_alone_and_root_gets_no_uid_advice() {
    let fake = Fake {
        status: status_text(ROOT_CAP_EFF & !(1 << 38) & !(1 << 21), 0),
        ..Fake::nobody()
    };
    let report = run_checks_with(&fake);
    assert_eq!(failed(&report), ["cap_perfmon", "test_attach"]);
    let fix = check(&report, "cap_perfmon").fix.as_deref().unwrap();
    assert!(
        fix.starts_with("add CAP_PERFMON to the container's securityContext.capabilities.add"),
        "{fix}"
    );
    assert!(!fix.contains("uid"), "{fix}");
}

#[test]
fn an_old_kernel_fails_with_the_kernel_fix() {
    let fake = Fake {
        release: Some("5.15.0-91-generic"),
        support: || {
            Ok(KernelSupport {
                uprobe_multi: false,
                uprobe_multi_process_scope: false,
                ..FULL_SUPPORT
            })
        },
        self_test: |_| {
            Err(SelfTestError::Bpf {
                step: "attaching a uprobe.multi link",
                source: BpfError::InvalidPid,
            })
        },
        ..Fake::root()
    };
    let report = run_checks_with(&fake);
    assert_eq!(failed(&report), ["kernel", "uprobe_multi", "test_attach"]);
    for name in failed(&report) {
        let fix = check(&report, name).fix.as_deref().unwrap();
        assert!(
            fix.starts_with("kernel 6.6+ needed for uprobe.multi"),
            "{name}: {fix}"
        );
    }
}

#[test]
fn a_backported_uprobe_multi_passes_on_an_old_release() {
    let fake = Fake {
        release: Some("5.14.0-427.el9.x86_64"),
        ..Fake::root()
    };
    let report = run_checks_with(&fake);
    assert!(report.can_probe, "{report:#?}");
    assert!(check(&report, "kernel").detail.contains("backported"));
}

#[test]
fn limits_that_do_not_stop_probing_are_warnings() {
    let fake = Fake {
        btf: false,
        support: || {
            Ok(KernelSupport {
                uprobe_multi_process_scope: false,
                ns_current_pid_tgid: false,
                ..FULL_SUPPORT
            })
        },
        ..Fake::root()
    };
    let report = run_checks_with(&fake);
    assert!(report.can_probe, "{report:#?}");
    let warned: Vec<_> = report
        .checks
        .iter()
        .filter(|c| c.status == Status::Warn)
        .map(|c| c.name)
        .collect();
    assert_eq!(
        warned,
        ["btf", "uprobe_multi_pid_scope", "ns_current_pid_tgid"]
    );
    assert!(
        check(&report, "uprobe_multi_pid_scope")
            .fix
            .as_deref()
            .unwrap()
            .contains("observe --all")
    );
}

#[test]
fn inexact_counts_or_a_probe_left_after_detach_fail() {
    let fake = Fake {
        self_test: |calls| Ok(counted(calls, calls - 1, 0)),
        ..Fake::root()
    };
    let report = run_checks_with(&fake);
    assert_eq!(failed(&report), ["test_attach"]);
    assert!(
        check(&report, "test_attach")
            .detail
            .starts_with("999/1000 calls counted")
    );

    let fake = Fake {
        self_test: |calls| Ok(counted(calls, calls, calls)),
        ..Fake::root()
    };
    let report = run_checks_with(&fake);
    assert_eq!(failed(&report), ["test_attach"]);
    assert!(
        check(&report, "test_attach")
            .detail
            .contains("1000 more after detach")
    );
}

#[test]
fn a_stub_build_is_told_to_rebuild_even_without_capabilities() {
    let fake = Fake {
        self_test: |_| {
            Err(SelfTestError::Bpf {
                step: "loading linkguard's BPF program",
                source: BpfError::StubObject,
            })
        },
        ..Fake::nobody()
    };
    let report = run_checks_with(&fake);
    let fix = check(&report, "test_attach").fix.as_deref().unwrap();
    assert!(fix.contains("LINKGUARD_BPF_STUB=1"), "{fix}");
}

#[test]
fn a_refusal_with_capabilities_and_features_points_at_seccomp_and_lsms() {
    let fake = Fake {
        self_test: |_| {
            Err(SelfTestError::Bpf {
                step: "loading linkguard's BPF program",
                source: BpfError::TargetUnreadable {
                    path: "/proc/self/exe".into(),
                    source: eperm(),
                },
            })
        },
        ..Fake::root()
    };
    let report = run_checks_with(&fake);
    let fix = check(&report, "test_attach").fix.as_deref().unwrap();
    assert!(fix.contains("seccomp"), "{fix}");
}

#[test]
fn json_has_the_documented_shape() {
    let json: Value = serde_json::from_str(&run_checks_with(&Fake::nobody()).to_json()).unwrap();
    // (serde_json's Value sorts keys; the printed order is the struct's, shown in the module doc.)
    let keys: Vec<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "canProbe",
            "capabilities",
            "checks",
            "kernel",
            "linkguardVersion",
            "reportVersion",
            "testAttach"
        ]
    );
    assert_eq!(json["reportVersion"], 1);
    assert_eq!(json["canProbe"], false);
    assert_eq!(json["testAttach"], Value::Null);
    assert_eq!(json["capabilities"]["capEff"], "0x0000000000000000");
    assert_eq!(json["capabilities"]["euid"], 65534);
    assert_eq!(
        json["capabilities"]["missing"],
        serde_json::json!(["CAP_BPF", "CAP_PERFMON"])
    );
    let names: Vec<&str> = json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "kernel",
            "btf",
            "cap_bpf",
            "cap_perfmon",
            "cap_sys_ptrace",
            "cap_sys_admin",
            "uprobe_multi",
            "uprobe_multi_pid_scope",
            "bpf_cookie",
            "ns_current_pid_tgid",
            "test_attach"
        ]
    );
    for c in json["checks"].as_array().unwrap() {
        assert_eq!(c["fix"].is_string(), c["status"] != "ok", "{c}");
    }

    let json: Value = serde_json::from_str(&run_checks_with(&Fake::root()).to_json()).unwrap();
    let attach = &json["testAttach"];
    assert_eq!(attach["function"], "linkguard_doctor_probe_target");
    assert_eq!(attach["offsetSource"], "symtab");
    assert_eq!(attach["calls"], 1000);
    assert_eq!(attach["counted"], 1000);
    assert_eq!(attach["countedAfterDetach"], 0);
    assert_eq!(attach["detachMicros"], 30_000);
}

#[test]
fn text_is_an_aligned_table_with_each_fix_once() {
    let text = render_text(&run_checks_with(&Fake::nobody()));
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("linkguard doctor: probing CANNOT work (3 checks failed)")
    );
    let header = lines.next().unwrap();
    let status_column = header.find("STATUS").unwrap();
    let rows: Vec<&str> = lines.by_ref().take_while(|l| !l.is_empty()).collect();
    assert_eq!(rows.len(), 11, "{text}");
    for row in &rows {
        let status = row.get(status_column..).unwrap();
        assert!(
            ["ok ", "warn ", "fail "]
                .iter()
                .any(|s| status.starts_with(s)),
            "misaligned: {row}"
        );
    }
    assert_eq!(lines.next(), Some("to fix:"));
    let fixes: Vec<&str> = lines.collect();
    assert_eq!(fixes.len(), 2, "{text}");
    assert!(fixes[0].starts_with(
        "  [fail] cap_bpf, cap_perfmon, uprobe_multi, uprobe_multi_pid_scope, bpf_cookie, \
         ns_current_pid_tgid, test_attach: add CAP_BPF and CAP_PERFMON"
    ));
    assert!(fixes[1].starts_with("  [warn] cap_sys_ptrace: add CAP_SYS_PTRACE"));

    let text = render_text(&run_checks_with(&Fake::root()));
    assert!(text.starts_with("linkguard doctor: probing can work\n"));
    assert!(!text.contains("to fix:"));
}

#[test]
fn maps_lines_give_file_offsets_of_executable_file_mappings() {
    let maps = "\
5581a0e00000-5581a0f00000 r--p 00000000 fd:01 1311 /usr/bin/linkguard
5581a0f00000-5581a1500000 r-xp 000ff000 fd:01 1311 /usr/bin/linkguard
7ffd1c000000-7ffd1c021000 rw-p 00000000 00:00 0                  [stack]
7ffd1c100000-7ffd1c102000 r-xp 00000000 00:00 0                  [vdso]
";
    assert_eq!(maps_offset(maps, 0x5581_a0f0_1234), Some(0xff000 + 0x1234));
    // Not executable, anonymous, or outside every mapping: no offset.
    assert_eq!(maps_offset(maps, 0x5581_a0e0_0010), None);
    assert_eq!(maps_offset(maps, 0x7ffd_1c10_0010), None);
    assert_eq!(maps_offset(maps, 0x1000), None);
}

#[test]
fn elf_and_maps_offsets_must_agree() {
    let elf = Ok((0x1000, OffsetSource::Symtab));
    assert_eq!(
        choose_offset(elf.clone(), Ok(0x1000)).unwrap(),
        (0x1000, OffsetSource::Symtab)
    );
    let err = choose_offset(elf.clone(), Ok(0x2000)).unwrap_err();
    assert!(matches!(
        err,
        SelfTestError::OffsetMismatch {
            elf: 0x1000,
            maps: 0x2000
        }
    ));
    assert!(err.to_string().contains("nothing attached"), "{err}");
    assert_eq!(
        choose_offset(elf, Err("no maps".into())).unwrap(),
        (0x1000, OffsetSource::Symtab)
    );
    assert_eq!(
        choose_offset(Err("stripped".into()), Ok(0x2000)).unwrap(),
        (0x2000, OffsetSource::ProcMaps)
    );
    let err = choose_offset(Err("stripped".into()), Err("no maps".into())).unwrap_err();
    assert!(err.to_string().contains("stripped; no maps"), "{err}");
}

/// The real offset resolution on this test binary (which links the same target function): our ELF code
/// finds it in `.symtab`, agrees with the kernel's mapping, and the file's bytes at that offset are the
/// function's instructions in memory.
#[test]
fn the_probe_target_offset_is_where_the_function_is_mapped_from() {
    let (offset, source) = locate().unwrap();
    assert_eq!(source, OffsetSource::Symtab);
    let target: extern "C" fn(u64) -> u64 = linkguard_doctor_probe_target;
    // SAFETY: reads the first 8 bytes of a function: mapped, readable text of this process (r-x), which
    // nothing writes (no uprobe is attached here, so no breakpoint byte differs from the file).
    let in_memory = unsafe { std::slice::from_raw_parts(target as usize as *const u8, 8) };
    let mut in_file = [0u8; 8];
    std::fs::File::open("/proc/self/exe")
        .unwrap()
        .read_exact_at(&mut in_file, offset)
        .unwrap();
    assert_eq!(in_memory, in_file);
}
