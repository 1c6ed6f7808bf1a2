// SPDX-License-Identifier: Apache-2.0
//! Shared helpers of the integration tests: locating (and if needed building) the linkguard binary,
//! running it, and finding fixtures and third-party tools.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

/// `tests/fixtures/<name>`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(name)
}

/// The linkguard binary of this build profile, built once per test process if it is missing.
///
/// Integration tests live in their own crate (tests/), so cargo does not provide
/// `CARGO_BIN_EXE_linkguard`; the binary sits next to the test executable's `deps/` folder.
#[allow(clippy::panic, clippy::expect_used, reason = "test helper: a missing binary is a test failure")]
pub fn linkguard_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().expect("current_exe");
        let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile>").to_path_buf();
        let bin = profile_dir.join("linkguard");
        if !bin.exists() {
            let release = profile_dir.file_name().is_some_and(|n| n == "release");
            let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
            cmd.args(["build", "-p", "linkguard", "--bin", "linkguard"]).current_dir(workspace_root());
            if release {
                cmd.arg("--release");
            }
            let status = cmd.status().expect("run cargo build");
            assert!(status.success(), "cargo build -p linkguard failed");
        }
        bin
    })
}

/// Runs linkguard with `args`, returning its output.
#[allow(clippy::expect_used, reason = "test helper")]
pub fn linkguard(args: &[&str]) -> Output {
    Command::new(linkguard_bin()).args(args).output().expect("spawn linkguard")
}

/// Whether tests that need third-party tools (Python venv, npm packages) must fail instead of skip.
/// ci/test sets `LINKGUARD_REQUIRE_INTEROP=1` after installing them.
pub fn interop_required() -> bool {
    std::env::var("LINKGUARD_REQUIRE_INTEROP").is_ok_and(|v| v == "1")
}
