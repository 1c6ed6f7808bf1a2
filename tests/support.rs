// SPDX-License-Identifier: Apache-2.0
//! Shared helpers of the integration tests: locating (and if needed building) the linkguard binary,
//! running it, and finding fixtures and third-party tools.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// `tests/fixtures/<name>`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

/// The linkguard binary of this build profile.
///
/// Integration tests live in their own crate (tests/), so cargo does not provide
/// `CARGO_BIN_EXE_linkguard`; the binary sits next to the test executable's `deps/` folder. It is not built
/// here (a nested cargo would wait on the build lock the running `cargo test` holds): ci/test builds it
/// first. A missing binary, or one older than a source file of the sidecar crate, fails the test instead of
/// silently testing stale code.
#[allow(
    clippy::panic,
    clippy::expect_used,
    reason = "test helper: a missing binary is a test failure"
)]
pub fn linkguard_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().expect("current_exe");
        let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile>").to_path_buf();
        let bin = profile_dir.join("linkguard");
        let built = std::fs::metadata(&bin).and_then(|m| m.modified()).unwrap_or_else(|_| {
            panic!("{} is missing: run `cargo build -p linkguard` before the integration tests", bin.display())
        });
        // What the binary is built from: the sidecar's and the bpf crate's sources and manifests (not benches).
        let root = workspace_root();
        let newest_source = ["sidecar/src", "sidecar/Cargo.toml", "bpf/src", "bpf/include", "bpf/build.rs"]
            .iter()
            .map(|p| newest_mtime(&root.join(p)))
            .max()
            .unwrap_or(std::time::SystemTime::UNIX_EPOCH);
        assert!(
            newest_source <= built,
            "{} is older than the sidecar sources: run `cargo build -p linkguard` before the integration tests",
            bin.display()
        );
        bin
    })
}

/// The newest modification time of `path`, or of the files below it when it is a directory.
fn newest_mtime(path: &Path) -> std::time::SystemTime {
    let mut newest = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .unwrap_or(std::time::SystemTime::UNIX_EPOCH);
    let dir = path;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(modified) = entry.metadata().and_then(|m| m.modified()) {
                newest = newest.max(modified);
            }
        }
    }
    newest
}

/// Runs linkguard with `args`, returning its output.
#[allow(clippy::expect_used, reason = "test helper")]
pub fn linkguard(args: &[&str]) -> Output {
    Command::new(linkguard_bin())
        .args(args)
        .output()
        .expect("spawn linkguard")
}

/// Whether tests that need third-party tools (Python venv, npm packages) must fail instead of skip.
/// ci/test sets `LINKGUARD_REQUIRE_INTEROP=1` after installing them.
pub fn interop_required() -> bool {
    std::env::var("LINKGUARD_REQUIRE_INTEROP").is_ok_and(|v| v == "1")
}

/// Whether a test that needs privileges may run: `reason` (why it cannot, or `None`) decides. When it cannot,
/// prints `SKIP <test>: <reason>` to stderr and returns false; with `LINKGUARD_REQUIRE_PRIVILEGED=1` (set by
/// ci/test as root) it panics instead, so a privileged test never skips silently in CI.
#[allow(
    clippy::panic,
    reason = "test helper: a missing privilege under CI is a test failure"
)]
pub fn can_run(test: &str, reason: Option<String>) -> bool {
    let Some(reason) = reason else {
        return true;
    };
    if std::env::var_os("LINKGUARD_REQUIRE_PRIVILEGED").is_some_and(|v| v == "1") {
        panic!("{test}: LINKGUARD_REQUIRE_PRIVILEGED=1 but {reason}");
    }
    eprintln!("SKIP {test}: {reason}");
    false
}

/// The first of `caps` (capability bit, name) missing from this process's effective set, as a reason.
pub fn missing_capability(caps: &[(u32, &str)]) -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let cap_eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0);
    caps.iter()
        .find(|(bit, _)| cap_eff & (1u64 << bit) == 0)
        .map(|(_, name)| format!("needs {name} (CapEff={cap_eff:#x}); run as root"))
}
