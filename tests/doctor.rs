// SPDX-License-Identifier: Apache-2.0
//! `linkguard doctor` on the real kernel: as root it attaches a real uprobe to its own binary and counts
//! exactly; with fewer privileges (dropped with `setpriv`) it exits 1 and names what is missing and the
//! fix. The privileged tests need root (to run doctor with all, some and no capabilities): otherwise they
//! print `SKIP <test>: <reason>`, or fail under `LINKGUARD_REQUIRE_PRIVILEGED=1`.
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests: a failed step is a test failure"
)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use object::{Object as _, ObjectSegment as _, ObjectSymbol as _};
use serde_json::Value;

use linkguard_integration_tests::{can_run, linkguard, linkguard_bin, missing_capability};

/// The calls doctor makes and must count (linkguard::doctor::TEST_CALLS).
const TEST_CALLS: u64 = 1000;
const TARGET_FUNCTION: &str = "linkguard_doctor_probe_target";
const CAP_FIX: &str =
    "add CAP_BPF and CAP_PERFMON to the container's securityContext.capabilities.add";

/// Whether this process may run doctor as root and drop privileges for it. Otherwise prints
/// `SKIP <test>: <reason>` (to the real stderr), or panics under `LINKGUARD_REQUIRE_PRIVILEGED=1`.
fn privileged(test: &str) -> bool {
    can_run(test, missing_privilege())
}

fn missing_privilege() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| status.lines().find_map(|l| l.strip_prefix(name));
    let euid = field("Uid:")
        .and_then(|ids| ids.split_whitespace().nth(1))
        .unwrap_or("unknown");
    if euid != "0" {
        return Some(format!("needs root (effective uid {euid})"));
    }
    // setgid/setuid/setpcap for setpriv; perfmon + bpf for the test attach.
    if let Some(reason) = missing_capability(&[
        (6, "CAP_SETGID"),
        (7, "CAP_SETUID"),
        (8, "CAP_SETPCAP"),
        (38, "CAP_PERFMON"),
        (39, "CAP_BPF"),
    ]) {
        return Some(reason);
    }
    let setpriv = Command::new("setpriv").arg("--version").output();
    if !setpriv.is_ok_and(|o| o.status.success()) {
        return Some("setpriv not found (apt-get install util-linux)".into());
    }
    None
}

/// The linkguard binary, at a path uid 65534 can read and execute: the build's own when it can, else a
/// copy in a world-readable temporary directory (held by the returned guard).
fn binary_for_nobody() -> (PathBuf, Option<tempfile::TempDir>) {
    let bin = linkguard_bin();
    let readable = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .args(["sh", "-c", r#"test -r "$0" && test -x "$0""#])
        .arg(bin)
        .status()
        .expect("spawn setpriv");
    if readable.success() {
        return (bin.to_path_buf(), None);
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let copy = dir.path().join("linkguard");
    std::fs::copy(bin, &copy).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    (copy, Some(dir))
}

/// `setpriv <setpriv_args> --inh-caps=-all <linkguard> doctor <args>`.
fn doctor_with(setpriv_args: &[&str], args: &[&str]) -> Output {
    let (bin, _guard) = binary_for_nobody();
    Command::new("setpriv")
        .args(setpriv_args)
        .arg("--inh-caps=-all")
        .arg(&bin)
        .arg("doctor")
        .args(args)
        .output()
        .expect("spawn setpriv")
}

/// A user without any capability: the documented unprivileged run.
const NOBODY: &[&str] = &[
    "--reuid=65534",
    "--regid=65534",
    "--clear-groups",
    "--bounding-set=-all",
];

fn json_of(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "doctor did not print JSON ({e}): stdout {} stderr {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {report:#}"))
}

fn failed(report: &Value) -> Vec<&str> {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "fail")
        .map(|c| c["name"].as_str().unwrap())
        .collect()
}

/// Independent of linkguard's ELF code: the file offset of `symbol` in the ELF file at `path`.
fn file_offset_of(path: &Path, symbol: &str) -> u64 {
    let data = std::fs::read(path).unwrap();
    let file = object::File::parse(&*data).unwrap();
    let address = file
        .symbols()
        .find(|s| s.name() == Ok(symbol))
        .unwrap_or_else(|| panic!("{symbol} not in {}", path.display()))
        .address();
    file.segments()
        .find_map(|seg| {
            let (offset, size) = seg.file_range();
            (address >= seg.address() && address - seg.address() < size)
                .then(|| offset + (address - seg.address()))
        })
        .unwrap()
}

/// A successful run's test attach: exact count, clean detach, at the function's real file offset.
fn assert_counted_exactly(report: &Value) {
    let attach = &report["testAttach"];
    assert_eq!(attach["function"], TARGET_FUNCTION, "{report:#}");
    assert_eq!(attach["calls"], TEST_CALLS, "{report:#}");
    assert_eq!(attach["counted"], TEST_CALLS, "{report:#}");
    assert_eq!(attach["countedAfterDetach"], 0, "{report:#}");
    assert_eq!(
        attach["offset"],
        file_offset_of(linkguard_bin(), TARGET_FUNCTION),
        "{report:#}"
    );
    assert_eq!(check(report, "test_attach")["status"], "ok", "{report:#}");
}

#[test]
fn doctor_as_root_attaches_to_itself_and_counts_every_call() {
    if !privileged("doctor_as_root_attaches_to_itself_and_counts_every_call") {
        return;
    }
    let output = linkguard(&["doctor", "--format", "json"]);
    let report = json_of(&output);
    assert_eq!(output.status.code(), Some(0), "{report:#}");
    assert_eq!(report["canProbe"], true);
    assert!(failed(&report).is_empty(), "{report:#}");
    assert_eq!(report["capabilities"]["missing"], serde_json::json!([]));
    assert_counted_exactly(&report);

    let output = linkguard(&["doctor"]);
    let text = String::from_utf8(output.stdout).unwrap();
    assert_eq!(output.status.code(), Some(0), "{text}");
    assert!(
        text.starts_with("linkguard doctor: probing can work\n"),
        "{text}"
    );
    let row = text
        .lines()
        .find(|l| l.starts_with("test_attach "))
        .unwrap();
    let mut words = row.split_whitespace();
    assert_eq!(words.nth(1), Some("ok"), "{row}");
    assert_eq!(words.next(), Some("1000/1000"), "{row}");
}

/// PLATFORM.md: uprobe.multi needs CAP_BPF + CAP_PERFMON and nothing else (not CAP_SYS_ADMIN).
#[test]
fn doctor_with_only_cap_bpf_and_cap_perfmon_can_probe() {
    if !privileged("doctor_with_only_cap_bpf_and_cap_perfmon_can_probe") {
        return;
    }
    let output = doctor_with(
        &["--bounding-set=-all,+bpf,+perfmon"],
        &["--format", "json"],
    );
    let report = json_of(&output);
    assert_eq!(output.status.code(), Some(0), "{report:#}");
    assert_eq!(
        report["capabilities"]["held"],
        serde_json::json!(["CAP_BPF", "CAP_PERFMON"])
    );
    assert_eq!(check(&report, "cap_sys_admin")["status"], "ok");
    // Without CAP_SYS_PTRACE: a warning naming the limit, not a failure.
    assert_eq!(check(&report, "cap_sys_ptrace")["status"], "warn");
    assert_counted_exactly(&report);
}

#[test]
fn doctor_without_privileges_fails_naming_the_missing_capabilities_and_the_fix() {
    if !privileged("doctor_without_privileges_fails_naming_the_missing_capabilities_and_the_fix") {
        return;
    }
    let output = doctor_with(NOBODY, &[]);
    let text = String::from_utf8(output.stdout).unwrap();
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        text.starts_with("linkguard doctor: probing CANNOT work (3 checks failed)\n"),
        "{text}"
    );
    for name in ["cap_bpf", "cap_perfmon", "test_attach"] {
        let row = text
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap();
        assert_eq!(row.split_whitespace().nth(1), Some("fail"), "{row}");
    }
    let fix = text
        .lines()
        .find(|l| l.starts_with("  [fail] "))
        .unwrap_or_else(|| panic!("no fix printed: {text}"));
    assert!(fix.contains(CAP_FIX), "{fix}");
    assert!(fix.contains("uid 65534"), "{fix}");

    let output = doctor_with(NOBODY, &["--format", "json"]);
    let report = json_of(&output);
    assert_eq!(output.status.code(), Some(1), "{report:#}");
    assert_eq!(report["canProbe"], false);
    assert_eq!(report["capabilities"]["euid"], 65534);
    assert_eq!(
        report["capabilities"]["missing"],
        serde_json::json!(["CAP_BPF", "CAP_PERFMON"])
    );
    assert_eq!(
        failed(&report),
        ["cap_bpf", "cap_perfmon", "test_attach"],
        "{report:#}"
    );
    assert_eq!(report["testAttach"], Value::Null);
    // The kernel really refused (EPERM), and the fix is the capability one, not the errno.
    let attach = check(&report, "test_attach");
    assert!(
        attach["detail"]
            .as_str()
            .unwrap()
            .contains("Operation not permitted"),
        "{attach}"
    );
    assert!(
        attach["fix"].as_str().unwrap().starts_with(CAP_FIX),
        "{attach}"
    );
}

#[test]
fn doctor_missing_only_cap_perfmon_names_it_alone() {
    if !privileged("doctor_missing_only_cap_perfmon_names_it_alone") {
        return;
    }
    let output = doctor_with(&["--bounding-set=-all,+bpf"], &["--format", "json"]);
    let report = json_of(&output);
    assert_eq!(output.status.code(), Some(1), "{report:#}");
    assert_eq!(
        report["capabilities"]["missing"],
        serde_json::json!(["CAP_PERFMON"])
    );
    assert_eq!(
        failed(&report),
        ["cap_perfmon", "test_attach"],
        "{report:#}"
    );
    let fix = check(&report, "cap_perfmon")["fix"].as_str().unwrap();
    assert!(
        fix.starts_with("add CAP_PERFMON to the container's securityContext.capabilities.add"),
        "{fix}"
    );
}

/// Images ship stripped binaries: without `.symtab` the offset comes from where the kernel mapped the
/// function, and the test attach still counts exactly.
#[test]
fn a_stripped_linkguard_still_attaches_at_the_right_offset() {
    let test = "a_stripped_linkguard_still_attaches_at_the_right_offset";
    if !privileged(test) {
        return;
    }
    let strip = Command::new("strip").arg("--version").output();
    if !can_run(
        test,
        (!strip.is_ok_and(|o| o.status.success()))
            .then(|| "strip not found (apt-get install binutils)".to_owned()),
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let stripped = dir.path().join("linkguard");
    let status = Command::new("strip")
        .arg("-o")
        .arg(&stripped)
        .arg(linkguard_bin())
        .status()
        .unwrap();
    assert!(status.success());
    let data = std::fs::read(&stripped).unwrap();
    let file = object::File::parse(&*data).unwrap();
    assert!(
        file.symbols().next().is_none(),
        "strip left a .symtab in {}",
        stripped.display()
    );

    let output = Command::new(&stripped)
        .args(["doctor", "--format", "json"])
        .output()
        .unwrap();
    let report = json_of(&output);
    assert_eq!(output.status.code(), Some(0), "{report:#}");
    assert_eq!(
        report["testAttach"]["offsetSource"], "proc-maps",
        "{report:#}"
    );
    // strip keeps the loadable layout: the offset is the function's offset in the unstripped build.
    assert_counted_exactly(&report);
}

#[test]
fn doctor_rejects_bad_flags_with_exit_2() {
    for args in [
        &["doctor", "--format", "yaml"][..],
        &["doctor", "--no-such-flag"][..],
    ] {
        let output = linkguard(args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(output.stdout.is_empty(), "{args:?}");
    }
    let stderr = String::from_utf8(linkguard(&["doctor", "--format", "yaml"]).stderr).unwrap();
    assert!(stderr.contains("[possible values: text, json]"), "{stderr}");
}
